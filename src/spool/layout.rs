//! The queue directories under the spool root, and the path of a message in each.
//!
//! Pure. A message is in exactly one queue directory at a time; `rename(2)` from one to another
//! is the only state change (Postfix's discipline). `tmp` holds files being written (never a
//! message); `journal` holds the write-ahead journal (docs/spool-format.md).

use std::path::{Path, PathBuf};

use super::queue_id::QueueId;

/// A queue directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// Files being written; removed at start-up.
    Tmp,
    /// New messages, due at once.
    Incoming,
    /// Messages claimed by the delivery worker; moved back to incoming at start-up.
    Active,
    /// Messages waiting for their next attempt.
    Deferred,
    /// Messages parked by an administrator; never tried and never expired while held.
    Hold,
    /// Files that do not decode; kept for inspection, never delivered, never deleted.
    Corrupt,
}

impl Queue {
    /// Every queue that holds messages (all but `tmp`), in the order `queue list` shows them.
    pub const MESSAGE_QUEUES: [Queue; 5] = [
        Queue::Active,
        Queue::Incoming,
        Queue::Deferred,
        Queue::Hold,
        Queue::Corrupt,
    ];

    /// Every queue directory.
    pub const ALL: [Queue; 6] = [
        Queue::Tmp,
        Queue::Incoming,
        Queue::Active,
        Queue::Deferred,
        Queue::Hold,
        Queue::Corrupt,
    ];

    /// The directory name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Queue::Tmp => "tmp",
            Queue::Incoming => "incoming",
            Queue::Active => "active",
            Queue::Deferred => "deferred",
            Queue::Hold => "hold",
            Queue::Corrupt => "corrupt",
        }
    }

    /// The directory of this queue under `root`.
    pub fn dir(self, root: &Path) -> PathBuf {
        root.join(self.dir_name())
    }

    /// The path of message `id` in this queue under `root`.
    pub fn path(self, root: &Path, id: QueueId) -> PathBuf {
        self.dir(root).join(id.as_str())
    }
}

impl std::fmt::Display for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The journal directory under `root`.
pub fn journal_dir(root: &Path) -> PathBuf {
    root.join("journal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_has_a_distinct_directory() {
        let mut names: Vec<_> = Queue::ALL.iter().map(|q| q.dir_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Queue::ALL.len());
        assert!(!names.contains(&"journal"));
    }

    #[test]
    fn message_path_is_inside_the_queue_directory() {
        let id = QueueId::from_parts(1, 2);
        let p = Queue::Deferred.path(Path::new("/s"), id);
        assert_eq!(p, PathBuf::from(format!("/s/deferred/{id}")));
    }
}
