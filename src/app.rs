//! The server: recovery, the spool writer, and (as later parts land) the listeners and the
//! delivery worker, with a graceful shutdown.
//!
//! `serve` takes the spool's lock (one server per spool), runs start-up recovery, starts the
//! journal, then runs until `shutdown` completes; it then stops accepting, lets the journal
//! commit and write out what it holds within `shutdown_timeout`, and returns.

use std::fs::OpenOptions;
use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use tracing::info;

use crate::config::Config;
use crate::spool::{Spool, SpoolError, Writer, journal, recover};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The spool could not be opened or recovered.
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    /// Another server holds the spool's lock.
    #[error("{0}: another smsmta server is running on this spool")]
    Locked(String),
    /// A task failed unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

/// How long a message may wait for delivery before it is returned (RFC 5321 4.5.4.1 asks for
/// 4-5 days; Postfix's `maximal_queue_lifetime` is 5d). Later configuration refines this.
pub const DEFAULT_LIFETIME_SECS: u64 = 5 * 86_400;

/// A running server's handles.
pub struct Server {
    writer: Writer,
    journal: Option<journal::Journal>,
    _lock: std::fs::File,
}

impl Server {
    /// Opens the spool, takes its lock, recovers it and starts the journal.
    ///
    /// # Errors
    /// [`AppError`] when the spool cannot be used.
    pub fn start(config: &Config) -> Result<Server, AppError> {
        let spool = Arc::new(Spool::open(
            &config.spool_dir,
            config.spool.max_message_size.0,
        )?);
        let lock_path = config.spool_dir.join("master.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(SpoolError::io("open", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(AppError::Locked(lock_path.display().to_string()));
        }
        recover::recover(&spool)?;
        let (writer, journal) = if config.spool.journal {
            let j = journal::start(
                Arc::clone(&spool),
                journal::Options {
                    segment_size: config.spool.journal_segment_size.0,
                    max_batch: config.spool.max_batch,
                },
            )?;
            (Writer::journaled(Arc::clone(&spool), j.handle()), Some(j))
        } else {
            (Writer::direct(Arc::clone(&spool)), None)
        };
        Ok(Server {
            writer,
            journal,
            _lock: lock,
        })
    }

    /// The writer listeners commit through.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Stops the journal, waiting at most `timeout`.
    pub fn stop(self, timeout: std::time::Duration) {
        drop(self.writer);
        if let Some(j) = self.journal {
            j.shutdown(timeout);
        }
    }
}

/// Runs the server until `shutdown` completes.
///
/// # Errors
/// [`AppError`] when start-up fails.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let cfg = config.clone();
    let server = tokio::task::spawn_blocking(move || Server::start(&cfg))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    info!(
        "smsmta ready: spool {}, journal {}, domains {:?}",
        config.spool_dir.display(),
        if config.spool.journal { "on" } else { "off" },
        config.domains
    );
    shutdown.await;
    info!("shutting down");
    let timeout = config.shutdown_timeout.0;
    tokio::task::spawn_blocking(move || server.stop(timeout))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    info!("stopped");
    Ok(())
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
