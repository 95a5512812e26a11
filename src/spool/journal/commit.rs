//! The committer thread: takes every commit request waiting (up to `max_batch`), appends them
//! to the current segment in one write, `fdatasync`s, and only then answers each `Ok`, which
//! is what lets a door send its 2xx. A batch that fails (even by a panic) gets a temporary
//! error and the next batch goes on.

use super::*;

pub(super) fn run_committer(
    spool: &Spool,
    mut rx: mpsc::Receiver<Msg>,
    mut seg: Segment,
    dir: PathBuf,
    opts: Options,
    mat_tx: std_mpsc::SyncSender<MatMsg>,
    stats: &Stats,
) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut batch: Vec<Request> = Vec::with_capacity(opts.max_batch);
    loop {
        batch.clear();
        let first = match rx.blocking_recv() {
            Some(Msg::Commit(r)) => Some(r),
            Some(Msg::Stop) => {
                rx.close();
                None
            }
            None => break,
        };
        batch.extend(first);
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(Msg::Commit(r)) => batch.push(r),
                Ok(Msg::Stop) => rx.close(),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            // A Stop closed the channel; what was queued before it is drained next.
            continue;
        }
        // A failure (a panic) while committing one batch never stops the committer: that
        // batch's senders get a temporary error (their reply channels close), whatever of it
        // reached the journal is written out like any other range (a message that was not
        // acknowledged may then still arrive: never lost, at worst twice), and the next
        // batch goes on.
        let before = (seg.seq, seg.len);
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_batch(
                spool, &mut seg, &dir, &opts, &mat_tx, stats, &mut buf, &mut batch,
            );
        }));
        if let Err(p) = attempt {
            error!(
                "journal committer: a batch of {} failed ({}); its senders got a temporary error; committing goes on",
                batch.len(),
                crate::fault::panic_text(p.as_ref())
            );
            let from = if seg.seq == before.0 { before.1 } else { 0 };
            if seg.len > from {
                let _ = mat_tx.send(MatMsg::Durable {
                    seq: seg.seq,
                    start: from,
                    end: seg.len,
                });
            }
        }
    }
    let _ = mat_tx.send(MatMsg::Sealed { seq: seg.seq });
}

/// Writes one batch to the journal, flushes it, answers its senders and tells the
/// materializer; on a write error the batch gets the error and the tail is cut.
#[allow(clippy::too_many_arguments)]
pub(super) fn commit_batch(
    spool: &Spool,
    seg: &mut Segment,
    dir: &Path,
    opts: &Options,
    mat_tx: &std_mpsc::SyncSender<MatMsg>,
    stats: &Stats,
    buf: &mut Vec<u8>,
    batch: &mut Vec<Request>,
) {
    for r in batch.iter() {
        crate::fault::panic_if_marked(crate::fault::Point::Commit, &r.bytes);
    }
    buf.clear();
    for r in batch.iter() {
        encode_record(buf, r.id, &r.bytes);
    }
    if seg.len > 0 && seg.len + buf.len() as u64 > opts.segment_size {
        match Segment::create(dir, seg.seq + 1) {
            Ok(next) => {
                let old = std::mem::replace(seg, next);
                let _ = mat_tx.send(MatMsg::Sealed { seq: old.seq });
            }
            Err(e) => warn!("cannot start a new journal segment, continuing the old one: {e}"),
        }
    }
    let start = seg.len;
    let t = std::time::Instant::now();
    match seg.append(buf) {
        Ok(()) => {
            crate::metrics::get().journal_flush(batch.len(), t.elapsed().as_secs_f64());
            stats.failing.store(false, Ordering::Relaxed);
            stats.flushes.fetch_add(1, Ordering::Relaxed);
            stats
                .committed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for r in batch.drain(..) {
                let _ = r.reply.send(Ok(()));
                // Delivery may take it from memory now (claims.rs); before the
                // materializer hears of this range.
                spool.committed(r.id, r.bytes);
            }
            if mat_tx
                .send(MatMsg::Durable {
                    seq: seg.seq,
                    start,
                    end: seg.len,
                })
                .is_err()
            {
                error!("journal materializer has stopped; records stay in the journal for replay");
            }
        }
        Err(e) => {
            stats.failing.store(true, Ordering::Relaxed);
            warn!("journal write to {} failed: {e}", seg.path.display());
            for r in batch.drain(..) {
                let _ = r.reply.send(Err(SpoolError::Io {
                    op: "append to journal",
                    path: seg.path.clone(),
                    source: io::Error::new(e.kind(), e.to_string()),
                }));
            }
            // Cut the unacknowledged tail; if even that fails, leave this segment behind.
            if seg.truncate(start).is_err()
                && let Ok(next) = Segment::create(dir, seg.seq + 1)
            {
                let old = std::mem::replace(seg, next);
                let _ = mat_tx.send(MatMsg::Sealed { seq: old.seq });
            }
        }
    }
}
