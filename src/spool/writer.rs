//! The one commit entry point for the doors ([`Writer::commit`]): through the journal (group
//! commit) or directly (a queue file, fsynced). Its `Ok` is what allows a 2xx.

use super::*;

/// How callers commit: directly, or through the journal's group commit. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    spool: Arc<Spool>,
    journal: Option<journal::Handle>,
}

impl Writer {
    /// A writer that commits every message with its own file ([`Spool::commit_direct`]).
    pub fn direct(spool: Arc<Spool>) -> Self {
        Writer {
            spool,
            journal: None,
        }
    }

    /// A writer that commits through a running journal.
    pub fn journaled(spool: Arc<Spool>, journal: journal::Handle) -> Self {
        Writer {
            spool,
            journal: Some(journal),
        }
    }

    /// The spool.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Whether the journal's last flush failed (`false` without a journal).
    pub fn journal_failing(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.stats().failing.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Messages durable in the journal whose queue files the materializer has not yet
    /// written (0 without a journal).
    pub fn journal_backlog(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        self.journal.as_ref().map_or(0, |j| {
            let s = j.stats();
            let backlog = s
                .committed
                .load(Relaxed)
                .saturating_sub(s.materialized.load(Relaxed));
            usize::try_from(backlog).unwrap_or(usize::MAX)
        })
    }

    /// Commits `file`; returns once it is durable. Only then may the caller acknowledge.
    ///
    /// # Errors
    /// [`SpoolError`]: nothing was accepted.
    pub async fn commit(&self, file: QueueFile) -> Result<QueueId, SpoolError> {
        match &self.journal {
            Some(j) => j.commit(&self.spool, file).await,
            None => {
                let spool = Arc::clone(&self.spool);
                tokio::task::spawn_blocking(move || spool.commit_direct(&file))
                    .await
                    .map_err(|_| SpoolError::Closed)?
            }
        }
    }

    /// As [`Writer::commit`], for threads outside the async runtime.
    ///
    /// # Errors
    /// [`SpoolError`]: nothing was accepted.
    pub fn commit_blocking(&self, file: QueueFile) -> Result<QueueId, SpoolError> {
        match &self.journal {
            Some(j) => j.commit_blocking(&self.spool, file),
            None => self.spool.commit_direct(&file),
        }
    }
}
