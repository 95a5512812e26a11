//! Claims on journaled messages that delivery takes straight from memory.
//!
//! Creating a queue file is the most expensive thing the spool does (ext4's inode allocator
//! dominates a profile of the materializer: docs/benchmarks.md). A message that is delivered
//! within moments of its commit does not need one: the journal already holds it durably. So,
//! when the journal has flushed a message, the queue manager may *hold* it and deliver it from
//! memory, and the materializer then:
//!
//! * writes a held message into `active/` instead of `incoming/` (durable as before, owned by
//!   the delivery job, returned to `incoming/` by recovery after a crash);
//! * skips a message whose delivery already *finished* (its result is durable elsewhere:
//!   delivered, or rewritten into `deferred/`, with its notices committed).
//!
//! The checkpoint still only moves past a record once it is a file or finished, so a crash at
//! any moment leaves every acknowledged message in the journal or in a queue file. Pure state
//! machine behind a mutex; the callers do the I/O.

use std::collections::HashMap;
use std::sync::Mutex;

use super::QueueId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Held,
    Writing,
    Materialized,
    Finished,
    FinishedDuringWrite,
}

/// What the materializer does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Not held: the normal path into `incoming/`.
    Normal,
    /// Held by delivery: write it into `active/`.
    ToActive,
    /// Delivery has finished with it: write nothing.
    Skip,
}

/// Each held message's state and size, and the total size held.
type Table = (HashMap<QueueId, (Claim, usize)>, usize);

/// The claims table.
#[derive(Debug)]
pub struct Claims {
    inner: Mutex<Table>,
    max_count: usize,
    max_bytes: usize,
}

impl Claims {
    /// A table holding at most `max_count` messages and `max_bytes` bytes at once.
    pub fn new(max_count: usize, max_bytes: usize) -> Claims {
        Claims {
            inner: Mutex::new((HashMap::new(), 0)),
            max_count,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    /// Holds `id` (of `size` bytes) for delivery from memory, if within the limits.
    pub fn try_hold(&self, id: QueueId, size: usize) -> bool {
        let mut g = self.lock();
        let (map, bytes) = &mut *g;
        if map.len() >= self.max_count || *bytes + size > self.max_bytes || map.contains_key(&id) {
            return false;
        }
        map.insert(id, (Claim::Held, size));
        *bytes += size;
        true
    }

    /// Gives up a hold that delivery never used (before the materializer saw the record).
    pub fn release(&self, id: QueueId) {
        let mut g = self.lock();
        let (map, bytes) = &mut *g;
        if let Some((Claim::Held, size)) = map.get(&id).copied() {
            map.remove(&id);
            *bytes -= size;
        }
    }

    fn remove(g: &mut Table, id: QueueId) {
        if let Some((_, size)) = g.0.remove(&id) {
            g.1 -= size;
        }
    }

    /// The materializer is about to write `id`.
    pub fn before_write(&self, id: QueueId) -> Write {
        let mut g = self.lock();
        match g.0.get(&id).map(|c| c.0) {
            None => Write::Normal,
            Some(Claim::Held | Claim::Writing) => {
                if let Some(c) = g.0.get_mut(&id) {
                    c.0 = Claim::Writing;
                }
                Write::ToActive
            }
            Some(Claim::Finished) => {
                Self::remove(&mut g, id);
                Write::Skip
            }
            Some(Claim::Materialized | Claim::FinishedDuringWrite) => Write::Skip,
        }
    }

    /// The materializer has written `id` into `active/`. `true`: delivery finished meanwhile,
    /// so the caller removes the file it just wrote.
    pub fn after_write(&self, id: QueueId) -> bool {
        let mut g = self.lock();
        match g.0.get(&id).map(|c| c.0) {
            Some(Claim::Writing) => {
                if let Some(c) = g.0.get_mut(&id) {
                    c.0 = Claim::Materialized;
                }
                false
            }
            Some(Claim::FinishedDuringWrite) => {
                Self::remove(&mut g, id);
                true
            }
            _ => false,
        }
    }

    /// As [`Claims::finish`] when that needs no I/O (no copy of `id` is in `active/`):
    /// `true` when it finished it; `false` (and nothing changed) when the caller must call
    /// [`Claims::finish`] and remove the copy.
    pub fn finish_unwritten(&self, id: QueueId) -> bool {
        let mut g = self.lock();
        let next = match g.0.get(&id).map(|c| c.0) {
            Some(Claim::Held) => Claim::Finished,
            Some(Claim::Writing) => Claim::FinishedDuringWrite,
            Some(Claim::Finished | Claim::FinishedDuringWrite) | None => return true,
            Some(Claim::Materialized) => return false,
        };
        if let Some(c) = g.0.get_mut(&id) {
            c.0 = next;
        }
        true
    }

    /// Delivery has finished with `id` and its result is durable. `true`: a copy is in
    /// `active/` and the caller removes it.
    pub fn finish(&self, id: QueueId) -> bool {
        let mut g = self.lock();
        match g.0.get(&id).map(|c| c.0) {
            Some(Claim::Held) => {
                if let Some(c) = g.0.get_mut(&id) {
                    c.0 = Claim::Finished;
                }
                false
            }
            Some(Claim::Writing) => {
                if let Some(c) = g.0.get_mut(&id) {
                    c.0 = Claim::FinishedDuringWrite;
                }
                false
            }
            Some(Claim::Materialized) => {
                Self::remove(&mut g, id);
                true
            }
            Some(Claim::Finished | Claim::FinishedDuringWrite) | None => false,
        }
    }

    /// Messages in the table.
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> QueueId {
        QueueId::from_parts(n, 1)
    }

    #[test]
    fn finished_before_the_materializer_is_never_written() {
        let c = Claims::new(10, 1000);
        assert!(c.try_hold(id(1), 10));
        assert!(!c.finish(id(1)));
        assert_eq!(c.before_write(id(1)), Write::Skip);
        assert!(c.is_empty());
    }

    #[test]
    fn held_message_goes_to_active_and_delivery_removes_it() {
        let c = Claims::new(10, 1000);
        assert!(c.try_hold(id(1), 10));
        assert_eq!(c.before_write(id(1)), Write::ToActive);
        assert!(!c.after_write(id(1)));
        assert!(c.finish(id(1)), "the caller unlinks active/ID");
        assert!(c.is_empty());
    }

    #[test]
    fn finish_during_the_write_leaves_the_cleanup_to_the_materializer() {
        let c = Claims::new(10, 1000);
        assert!(c.try_hold(id(1), 10));
        assert_eq!(c.before_write(id(1)), Write::ToActive);
        assert!(!c.finish(id(1)));
        assert!(c.after_write(id(1)), "the materializer unlinks active/ID");
        assert!(c.is_empty());
    }

    #[test]
    fn finishing_without_io_happens_only_when_nothing_was_written() {
        let c = Claims::new(10, 1000);
        assert!(c.try_hold(id(1), 10));
        assert!(c.finish_unwritten(id(1)), "held only: finished in memory");
        assert_eq!(c.before_write(id(1)), Write::Skip);
        assert!(c.is_empty());

        assert!(c.try_hold(id(2), 10));
        assert_eq!(c.before_write(id(2)), Write::ToActive);
        assert!(
            c.finish_unwritten(id(2)),
            "being written: the materializer cleans up"
        );
        assert!(c.after_write(id(2)), "the materializer unlinks active/ID");
        assert!(c.is_empty());

        assert!(c.try_hold(id(3), 10));
        assert_eq!(c.before_write(id(3)), Write::ToActive);
        assert!(!c.after_write(id(3)));
        assert!(
            !c.finish_unwritten(id(3)),
            "written: the caller must remove it"
        );
        assert!(c.finish(id(3)), "and finish() says so, unchanged");
        assert!(c.is_empty());
    }

    #[test]
    fn unheld_messages_take_the_normal_path_and_limits_hold() {
        let c = Claims::new(2, 25);
        assert_eq!(c.before_write(id(9)), Write::Normal);
        assert!(c.try_hold(id(1), 10));
        assert!(!c.try_hold(id(1), 10), "once");
        assert!(c.try_hold(id(2), 10));
        assert!(!c.try_hold(id(3), 1), "count limit");
        c.release(id(2));
        assert!(!c.try_hold(id(3), 20), "byte limit");
        assert!(c.try_hold(id(3), 15));
        assert_eq!(c.len(), 2);
    }
}
