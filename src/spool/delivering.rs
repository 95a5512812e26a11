//! The spool's side of a delivery: the one narrow interface the queue manager uses to take a
//! message, and to settle or set aside what it did with it, without knowing the spool's states.
//!
//! A message is taken either from memory (the journal handed it over at commit, see
//! [`super::claims`]; the materializer may be writing it into `active/` meanwhile) or by
//! claiming its file into `active/` (a rename, so two managers never hold one message). The
//! result is written before the message is let go: a crash in between repeats the delivery
//! attempt, it never loses the message (at least once, as Postfix's qmgr).
//!
//! Trust: queue files are smsmta's own; a file that does not decode is moved to `corrupt/`.

use tracing::error;

use super::{Queue, QueueFile, QueueId, RcptState, Spool, SpoolError};

/// Where a message being delivered is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Claimed into `active/`.
    Active,
    /// Held in memory; the journal has it, the materializer may write it into `active/`.
    Memory,
}

impl Spool {
    /// Claims `id` into `active/` and reads it. `Ok(None)`: it is gone (delivered, deleted,
    /// held) or corrupt (moved to `corrupt/`).
    ///
    /// # Errors
    /// [`SpoolError`] when the file cannot be renamed or read (it is put back).
    pub fn take(&self, id: QueueId) -> Result<Option<QueueFile>, SpoolError> {
        let mut claimed = false;
        for q in [Queue::Incoming, Queue::Deferred] {
            match self.claim(id, q, Queue::Active) {
                Ok(()) => {
                    claimed = true;
                    break;
                }
                Err(SpoolError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        if !claimed && std::fs::symlink_metadata(self.path(Queue::Active, id)).is_err() {
            return Ok(None);
        }
        match self.read(Queue::Active, id) {
            Ok(f) => Ok(Some(f)),
            Err(SpoolError::NotFound(_)) => Ok(None),
            Err(e @ SpoolError::Corrupt { .. }) => {
                error!("{id}: {e}; moved to corrupt/");
                let _ = self.move_to(id, Queue::Active, Queue::Corrupt);
                Ok(None)
            }
            Err(e) => {
                let _ = self.claim(id, Queue::Active, Queue::Incoming);
                Err(e)
            }
        }
    }

    /// Settles without I/O when none is needed: a message taken from memory, with no
    /// recipient pending, that the materializer has not written out (the journal's
    /// checkpoint then passes it). `false`: call [`Spool::settle`] (off the async threads).
    pub fn settle_in_memory(&self, file: &QueueFile, from: Taken) -> bool {
        from == Taken::Memory
            && file.pending().next().is_none()
            && self.claims().finish_unwritten(file.id())
    }

    /// Writes what a delivery did: the message is removed when no recipient is pending,
    /// else its new state goes to `deferred/`.
    ///
    /// # Errors
    /// [`SpoolError`] when the state cannot be written; the message stays where it was.
    pub fn settle(&self, file: &QueueFile, from: Taken) -> Result<(), SpoolError> {
        let id = file.id();
        let done = file.pending().next().is_none();
        match (from, done) {
            (Taken::Active, true) => self.remove_delivered(Queue::Active, id),
            (Taken::Active, false) => self
                .rewrite(Queue::Active, file)
                .and_then(|()| self.move_to(id, Queue::Active, Queue::Deferred)),
            (Taken::Memory, done) => {
                if !done {
                    self.write_new(Queue::Deferred, file)?;
                }
                self.let_go(id)
            }
        }
    }

    /// Puts a message whose handling failed into `hold/`, with the reason as each pending
    /// recipient's last reply (shown by `queue list` and `queue show`). It stays there until
    /// an administrator releases or deletes it.
    ///
    /// # Errors
    /// [`SpoolError`] when it cannot be written.
    pub fn hold(&self, mut file: QueueFile, from: Taken, reason: &str) -> Result<(), SpoolError> {
        let id = file.id();
        for r in file
            .envelope
            .recipients
            .iter_mut()
            .filter(|r| r.state == RcptState::Pending)
        {
            r.last_reply = Some(format!("held: delivery failed: {reason}"));
        }
        match from {
            Taken::Active => {
                self.rewrite(Queue::Active, &file)?;
                self.move_to(id, Queue::Active, Queue::Hold)
            }
            Taken::Memory => {
                self.write_new(Queue::Hold, &file)?;
                self.let_go(id)
            }
        }
    }

    /// A message taken from memory whose result is durable: the materializer may forget it,
    /// and a copy it wrote into `active/` meanwhile goes.
    fn let_go(&self, id: QueueId) -> Result<(), SpoolError> {
        if self.claims().finish(id) {
            self.remove_delivered(Queue::Active, id)?;
        }
        Ok(())
    }
}
