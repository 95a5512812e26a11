//! Replay at start-up, before new commits: every record past the checkpoint whose message is
//! in no queue is written to `incoming/` (a record that fails is set aside in `corrupt/`); then
//! every segment is deleted and the checkpoint moves to a fresh segment number.

use super::*;

/// Replays one segment's records; should that fail with a panic, record by record, setting
/// aside in `corrupt/` each record that fails on its own, so that start-up always finishes.
pub(super) fn replay_records(
    spool: &Spool,
    seq: u64,
    records: &[(QueueId, &[u8])],
) -> Result<usize, SpoolError> {
    let whole = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        materialize(spool, records, Guard::Replay)
    }));
    let p = match whole {
        Ok(done) => return done,
        Err(p) => p,
    };
    warn!(
        "journal replay: segment {seq:016X} failed ({}); replaying it record by record",
        crate::fault::panic_text(p.as_ref())
    );
    let mut written = 0;
    for rec in records {
        let one = std::slice::from_ref(rec);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            materialize(spool, one, Guard::Replay)
        })) {
            Ok(n) => written += n?,
            Err(p) => {
                let (id, payload) = rec;
                error!(
                    "{id}: journal replay failed ({}); the record is set aside in corrupt/",
                    crate::fault::panic_text(p.as_ref())
                );
                let (tmp, _) = spool.write_tmp_file(*id, payload, false)?;
                match spool.publish(&tmp, *id, Queue::Corrupt) {
                    Ok(()) | Err(SpoolError::Exists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(written)
}

/// Journal octets acknowledged but not yet written out as queue files (read-only; safe while
/// the server runs). 0 when the materializer has caught up.
///
/// # Errors
/// [`SpoolError::Io`] when the journal directory cannot be listed.
pub fn backlog(spool: &Spool) -> Result<u64, SpoolError> {
    let dir = layout::journal_dir(spool.root());
    let (cp_seq, cp_off) = fs::read(dir.join(CHECKPOINT))
        .map(|b| parse_checkpoint(&b))
        .unwrap_or((0, 0));
    let mut pending = 0;
    for (seq, path) in segments(&dir)? {
        if seq < cp_seq {
            continue;
        }
        // Segments end in zeros written ahead: count the records.
        let bytes = fs::read(&path).unwrap_or_default();
        let from = if seq == cp_seq {
            usize::try_from(cp_off)
                .unwrap_or(usize::MAX)
                .min(bytes.len())
        } else {
            0
        };
        pending += parse_records(&bytes, from)
            .0
            .iter()
            .map(|(_, p)| (REC_HEAD + p.len()) as u64)
            .sum::<u64>();
    }
    Ok(pending)
}

/// What [`replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records written out to `incoming/`.
    pub replayed: usize,
    /// Records whose message was already in a queue.
    pub already_present: usize,
    /// Damaged regions skipped (a torn, unacknowledged tail counts as one).
    pub damaged: usize,
    /// The segment number the next journal starts with.
    pub next_seq: u64,
}

/// Writes out every journal record that the checkpoint does not cover and whose message is in
/// no queue, then removes all segments. Run before any new commit (at start-up).
///
/// # Errors
/// [`SpoolError::Io`]; the journal is left as it was for the next try.
pub fn replay(spool: &Spool) -> Result<ReplayReport, SpoolError> {
    let dir = layout::journal_dir(spool.root());
    let checkpoint = Checkpoint::open(&dir)?;
    let (cp_seq, cp_off) = checkpoint.read();
    let segs = segments(&dir)?;
    let mut report = ReplayReport::default();
    for (seq, path) in &segs {
        if *seq < cp_seq {
            continue;
        }
        let bytes = fs::read(path).map_err(SpoolError::io("read", path))?;
        let from = if *seq == cp_seq {
            usize::try_from(cp_off)
                .unwrap_or(usize::MAX)
                .min(bytes.len())
        } else {
            0
        };
        let (records, damaged) = parse_records(&bytes, from);
        report.damaged += damaged;
        let total = records.len();
        let written = replay_records(spool, *seq, &records)?;
        report.replayed += written;
        report.already_present += total - written;
        if damaged > 0 {
            warn!(
                "journal segment {seq:016X}: skipped {damaged} damaged region(s) (an unacknowledged torn tail after a crash is normal)"
            );
        }
    }
    let max_seq = segs.iter().map(|(s, _)| *s).max().unwrap_or(0).max(cp_seq);
    report.next_seq = max_seq + 1;
    checkpoint.write(report.next_seq, 0)?;
    for (_, path) in &segs {
        fs::remove_file(path).map_err(SpoolError::io("unlink", path))?;
    }
    if !segs.is_empty() {
        sync_dir(&dir)?;
    }
    if report.replayed > 0 {
        info!(
            "journal replay: {} message(s) written to incoming, {} already queued",
            report.replayed, report.already_present
        );
    }
    Ok(report)
}
