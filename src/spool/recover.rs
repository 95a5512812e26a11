//! Start-up recovery: bring the spool back to a consistent state after a crash.
//!
//! Run once by `smsmta serve` before it accepts anything, in this order:
//! 1. remove leftovers in `tmp/` (files that were never acknowledged);
//! 2. replay the write-ahead journal ([`super::journal::replay`]): acknowledged messages that
//!    had not been written out as queue files go to `incoming/`;
//! 3. move everything in `active/` back to `incoming/` (a delivery was in flight; it is tried
//!    again: at worst a duplicate, never a loss);
//! 4. count what is queued. Files are *not* decoded here: with 100,000 queued messages that
//!    alone took 8 s with a cold cache. The queue manager reads each envelope when it builds its
//!    schedule, and a delivery decodes the whole file (checksum included) when it claims it; a
//!    file that does not decode then goes to `corrupt/`, never deleted, never delivered.
//!    [`verify`] does the full check on demand (the crash tests use it).
//!
//! **Trust.** Everything on disk is treated as possibly damaged.

use std::fs;

use tracing::{info, warn};

use super::journal::{self, ReplayReport};
use super::{Queue, Spool, SpoolError};

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files removed from `tmp/`.
    pub tmp_removed: usize,
    /// What the journal replay did.
    pub journal: ReplayReport,
    /// Messages moved from `active/` back to `incoming/`.
    pub requeued: usize,
    /// Files moved to `corrupt/`.
    pub corrupt: usize,
    /// Messages found intact in `incoming/`, `deferred/` and `hold/`.
    pub queued: usize,
}

/// Runs recovery (see the module docs).
///
/// # Errors
/// [`SpoolError::Io`] when a directory cannot be read or a rename fails; the server must not
/// start then.
pub fn recover(spool: &Spool) -> Result<Report, SpoolError> {
    let mut report = Report::default();
    let tmp = Queue::Tmp.dir(spool.root());
    for entry in fs::read_dir(&tmp).map_err(SpoolError::io("read directory", &tmp))? {
        let entry = entry.map_err(SpoolError::io("read directory", &tmp))?;
        let p = entry.path();
        match fs::remove_file(&p) {
            Ok(()) => report.tmp_removed += 1,
            Err(e) => warn!("cannot remove {}: {e}", p.display()),
        }
    }
    if report.tmp_removed > 0 {
        spool.sync_dir(Queue::Tmp)?;
    }

    report.journal = journal::replay(spool)?;

    for id in spool.list(Queue::Active)? {
        match spool.move_to(id, Queue::Active, Queue::Incoming) {
            Ok(()) => {
                report.requeued += 1;
                info!(queue_id = %id, "{id}: requeued from active after restart");
            }
            Err(SpoolError::Exists(_)) => {
                // Both copies exist (should not happen): keep the one in active for inspection.
                warn!(queue_id = %id, "{id}: in both active and another queue; moving active copy to corrupt");
                spool.move_to(id, Queue::Active, Queue::Corrupt).ok();
                report.corrupt += 1;
            }
            Err(e) => return Err(e),
        }
    }

    for q in [Queue::Incoming, Queue::Deferred, Queue::Hold] {
        report.queued += spool.list(q)?.len();
    }
    info!(
        "spool recovery: {} queued, {} replayed from journal, {} requeued from active, {} tmp files removed, {} corrupt",
        report.queued, report.journal.replayed, report.requeued, report.tmp_removed, report.corrupt
    );
    Ok(report)
}

/// Decodes every file in `incoming/`, `deferred/` and `hold/`; a file that does not decode goes
/// to `corrupt/` with a warning. Returns (intact, moved to corrupt).
///
/// # Errors
/// [`SpoolError::Io`] when a directory cannot be read.
pub fn verify(spool: &Spool) -> Result<(usize, usize), SpoolError> {
    let (mut intact, mut corrupt) = (0, 0);
    for q in [Queue::Incoming, Queue::Deferred, Queue::Hold] {
        for id in spool.list(q)? {
            match spool.read(q, id) {
                Ok(_) => intact += 1,
                Err(SpoolError::Corrupt { reason, .. }) => {
                    warn!(queue_id = %id, "{id}: corrupt queue file in {q} ({reason}); moved to corrupt");
                    match spool.move_to(id, q, Queue::Corrupt) {
                        Ok(()) => corrupt += 1,
                        Err(e) => warn!(queue_id = %id, "{id}: cannot quarantine: {e}"),
                    }
                }
                Err(SpoolError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((intact, corrupt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Origin, OriginKind};

    #[test]
    fn recovery_cleans_tmp_and_requeues_active_and_verify_quarantines_damage() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let origin = Origin {
            kind: OriginKind::Local,
            peer: "t".into(),
            sender_number: None,
        };
        let a = spool.new_message("", &["1@x".into()], b"a".to_vec(), origin.clone(), 60);
        let b = spool.new_message("", &["1@x".into()], b"b".to_vec(), origin.clone(), 60);
        let c = spool.new_message("", &["1@x".into()], b"c".to_vec(), origin, 60);
        for f in [&a, &b, &c] {
            spool.commit_direct(f).unwrap();
        }
        spool
            .move_to(a.id(), Queue::Incoming, Queue::Active)
            .unwrap();
        spool
            .move_to(b.id(), Queue::Incoming, Queue::Deferred)
            .unwrap();
        // Damage c: cut it short.
        let cp = spool.path(Queue::Incoming, c.id());
        let bytes = fs::read(&cp).unwrap();
        fs::write(&cp, &bytes[..bytes.len() - 3]).unwrap();
        fs::write(dir.path().join("tmp").join("leftover"), b"partial").unwrap();

        let r = recover(&spool).unwrap();
        assert_eq!(r.tmp_removed, 1);
        assert_eq!(r.requeued, 1);
        assert_eq!(r.queued, 3);
        assert_eq!(verify(&spool).unwrap(), (2, 1));
        assert_eq!(spool.find(a.id()), Some(Queue::Incoming));
        assert_eq!(spool.find(b.id()), Some(Queue::Deferred));
        assert_eq!(spool.find(c.id()), Some(Queue::Corrupt));
        // The damaged file is kept byte for byte.
        assert_eq!(
            fs::read(spool.path(Queue::Corrupt, c.id())).unwrap(),
            &bytes[..bytes.len() - 3]
        );
        assert!(spool.list(Queue::Tmp).unwrap().is_empty());
    }
}
