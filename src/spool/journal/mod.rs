//! The write-ahead journal: group commit on the acknowledgement path.
//!
//! Creating a file costs about a millisecond on this project's disks once they have churned
//! (docs/benchmarks.md), so a spool that creates one file per message before it acknowledges
//! is held near 1,000 messages a second, whatever it does with fsync. Appending to one file
//! with `fdatasync` is several times cheaper, and one flush can cover many messages. So:
//!
//! 1. **Commit** (the committer thread): take every request waiting (up to `max_batch`),
//!    append them as records to the current segment `journal/<seq>.wal` in one write,
//!    `fdatasync`, then answer each request `Ok`. The caller acknowledges only now.
//! 2. **Materialize** (the materializer thread, off the acknowledgement path, at nice 10):
//!    once the journal has been quiet for 50 ms or the oldest unwritten range is 250 ms old,
//!    read the new records back, write each as an unnamed queue file (`O_TMPFILE`) in its
//!    queue, `syncfs` once per chunk, name the files with `linkat` (never replacing), `syncfs`
//!    again, then record in `journal/checkpoint` how far the journal is materialized. A
//!    segment that is complete and fully materialized is deleted (docs/decisions/0004).
//! 3. **Replay** ([`replay`], at start-up, before new commits): every record past the
//!    checkpoint whose message is in no queue is written to `incoming/`; then every segment is
//!    deleted and the checkpoint moves to a fresh segment number.
//!
//! Records: `"SMJ1" | payload length (u32 BE) | CRC-32 of id+payload (u32 BE) | queue ID (20
//! octets) | payload (an encoded queue file)`. A torn tail (a crash during a write that was
//! never acknowledged) fails its length or checksum and is skipped; replay resynchronises on
//! the next magic so that one damaged record does not hide later ones.
//!
//! The roles, one file each: `record.rs` (the record codec), `segment.rs` (segment files and the
//! checkpoint), `commit.rs` (the committer thread), `materialize.rs` (the materializer
//! thread), `replay.rs` (start-up). This file holds the handle, the start and the shutdown.
//!
//! **Guarantee.** A message answered `Ok` is in a synced journal segment or a synced queue
//! file, and replay turns the first into the second. **Limitation:** a message materialized,
//! then delivered and removed, in the moment before the checkpoint covering it was written,
//! comes back at replay after a crash: a duplicate, never a loss (the same trade as Postfix's
//! active queue).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::claims::Write;
use super::{Queue, QueueFile, QueueId, Spool, SpoolError, layout, log_queued, sync_dir};

mod commit;
mod materialize;
mod record;
mod replay;
mod segment;

use commit::*;
use materialize::*;
use record::*;
pub use replay::{ReplayReport, backlog, replay};
use segment::*;

/// Requests waiting for the committer; beyond this, callers wait (back-pressure).
const REQUEST_QUEUE: usize = 8192;
/// Flushed ranges waiting for the materializer; beyond this the committer waits, so the
/// backlog on disk stays bounded too.
const MATERIALIZE_QUEUE: usize = 4096;
/// Tuning for [`start`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Size at which a new segment is started.
    pub segment_size: u64,
    /// Most requests covered by one flush.
    pub max_batch: usize,
}

/// Counters (read by benches/spool_commit.rs and the journal tests; metrics later).
#[derive(Debug, Default)]
pub struct Stats {
    /// Flushes (`fdatasync` calls) that succeeded.
    pub flushes: AtomicU64,
    /// Messages committed through the journal.
    pub committed: AtomicU64,
    /// Messages written out as queue files.
    pub materialized: AtomicU64,
    /// Whether the last flush failed (cleared by the next one that works).
    pub failing: AtomicBool,
}

struct Request {
    id: QueueId,
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<(), SpoolError>>,
}

enum Msg {
    Commit(Request),
    Stop,
}

enum MatMsg {
    Durable { seq: u64, start: u64, end: u64 },
    Sealed { seq: u64 },
}

/// A handle for committing through the journal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Commit(r) => write!(f, "Commit({})", r.id),
            Msg::Stop => f.write_str("Stop"),
        }
    }
}

impl Handle {
    /// The journal's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn request(
        spool: &Spool,
        file: &QueueFile,
    ) -> Result<(Msg, oneshot::Receiver<Result<(), SpoolError>>), SpoolError> {
        let bytes = spool.encode(file)?;
        let (reply, rx) = oneshot::channel();
        Ok((
            Msg::Commit(Request {
                id: file.id(),
                bytes,
                reply,
            }),
            rx,
        ))
    }

    /// Commits `file`; returns once the flush covering it has completed.
    ///
    /// # Errors
    /// [`SpoolError`]; nothing was accepted.
    pub async fn commit(&self, spool: &Spool, file: QueueFile) -> Result<QueueId, SpoolError> {
        let (msg, rx) = Self::request(spool, &file)?;
        self.tx.send(msg).await.map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)??;
        log_queued(&file, file.message.len());
        Ok(file.id())
    }

    /// As [`Handle::commit`], from a thread outside the async runtime.
    ///
    /// # Errors
    /// [`SpoolError`]; nothing was accepted.
    pub fn commit_blocking(&self, spool: &Spool, file: QueueFile) -> Result<QueueId, SpoolError> {
        let (msg, rx) = Self::request(spool, &file)?;
        self.tx.blocking_send(msg).map_err(|_| SpoolError::Closed)?;
        rx.blocking_recv().map_err(|_| SpoolError::Closed)??;
        log_queued(&file, file.message.len());
        Ok(file.id())
    }
}

/// A running journal: its handle and its two threads.
#[derive(Debug)]
pub struct Journal {
    handle: Handle,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Journal {
    /// A handle for committing.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the journal: requests already queued are committed, then both threads finish
    /// (the materializer writes out everything flushed). Waits at most `timeout`; whatever is
    /// not materialized by then stays in the journal for the next start-up's replay.
    pub fn shutdown(self, timeout: Duration) {
        let _ = self.handle.tx.blocking_send(Msg::Stop);
        let (done_tx, done_rx) = std_mpsc::channel();
        let stop = Arc::clone(&self.stop);
        let threads = self.threads;
        std::thread::spawn(move || {
            for t in threads {
                let _ = t.join();
            }
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(timeout).is_err() {
            stop.store(true, Ordering::SeqCst);
            warn!(
                "journal did not finish within {timeout:?}; the rest is replayed at the next start"
            );
        }
    }
}

/// Replays the journal (see the module docs) and starts the committer and materializer.
///
/// # Errors
/// [`SpoolError::Io`] when replay fails or the first segment cannot be created.
pub fn start(spool: Arc<Spool>, opts: Options) -> Result<Journal, SpoolError> {
    let report = replay(&spool)?;
    start_at(spool, report.next_seq, opts)
}

/// Starts the threads with a first segment numbered `seq`; [`replay`] must have run.
fn start_at(spool: Arc<Spool>, seq: u64, opts: Options) -> Result<Journal, SpoolError> {
    let dir = layout::journal_dir(spool.root());
    let seg = Segment::create(&dir, seq)?;
    let checkpoint = Checkpoint::open(&dir)?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let (mat_tx, mat_rx) = std_mpsc::sync_channel(MATERIALIZE_QUEUE);

    let committer = {
        let stats = Arc::clone(&stats);
        let seg_dir = dir.clone();
        let spool = Arc::clone(&spool);
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run_committer(&spool, rx, seg, seg_dir, opts, mat_tx, &stats))
            .map_err(SpoolError::io("spawn committer for", &dir))?
    };
    let materializer = {
        let stats = Arc::clone(&stats);
        let stop = Arc::clone(&stop);
        let spool = Arc::clone(&spool);
        std::thread::Builder::new()
            .name("spool-materialize".into())
            .spawn(move || run_materializer(&spool, mat_rx, checkpoint, &stats, &stop))
            .map_err(SpoolError::io("spawn materializer for", &dir))?
    };
    Ok(Journal {
        handle: Handle { tx, stats },
        stop,
        threads: vec![committer, materializer],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Origin, OriginKind};
    use proptest::prelude::*;

    fn origin() -> Origin {
        Origin {
            kind: OriginKind::Smtp,
            peer: "127.0.0.1:1".into(),
            sender_number: None,
        }
    }

    fn opts() -> Options {
        Options {
            segment_size: 64 << 10,
            max_batch: 64,
        }
    }

    /// Journal records (ID, encoded file) for `files`, whose encodings are `bytes`.
    fn as_records<'a>(files: &[QueueFile], bytes: &'a [Vec<u8>]) -> Vec<(QueueId, &'a [u8])> {
        files
            .iter()
            .zip(bytes)
            .map(|(f, b)| (f.id(), b.as_slice()))
            .collect()
    }

    fn wait_materialized(j: &Journal, n: u64) {
        for _ in 0..500 {
            if j.handle.stats.materialized.load(Ordering::Relaxed) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("not materialized");
    }

    #[test]
    fn committed_messages_reach_incoming_and_the_journal_empties_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).unwrap());
        let j = start(Arc::clone(&spool), opts()).unwrap();
        let h = j.handle();
        let mut ids = Vec::new();
        for i in 0..300 {
            let f = spool.new_message(
                "",
                &["1@sms.localhost".into()],
                vec![b'x'; 400 + i],
                origin(),
                60,
            );
            ids.push(h.commit_blocking(&spool, f).unwrap());
        }
        wait_materialized(&j, 300);
        drop(h);
        j.shutdown(Duration::from_secs(5));
        for id in &ids {
            assert_eq!(spool.find(*id), Some(Queue::Incoming));
            spool.read(Queue::Incoming, *id).unwrap();
        }
        // Segments rotated (64 KiB) and every sealed one was removed; replay finds nothing new.
        let r = replay(&spool).unwrap();
        assert_eq!(r.replayed, 0);
    }

    #[test]
    fn concurrent_committers_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).unwrap());
        let j = start(Arc::clone(&spool), opts()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let h = j.handle();
                let spool = Arc::clone(&spool);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let f =
                            spool.new_message("", &["1@x".into()], vec![b'y'; 400], origin(), 60);
                        h.commit_blocking(&spool, f).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = Arc::clone(j.handle.stats());
        assert_eq!(stats.committed.load(Ordering::Relaxed), 400);
        assert!(stats.flushes.load(Ordering::Relaxed) <= 400);
        wait_materialized(&j, 400);
        j.shutdown(Duration::from_secs(5));
        assert_eq!(spool.list(Queue::Incoming).unwrap().len(), 400);
    }

    #[test]
    fn replay_writes_out_records_past_the_checkpoint_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let jdir = layout::journal_dir(dir.path());
        let mut buf = Vec::new();
        let mut files = Vec::new();
        for _ in 0..5 {
            let f = spool.new_message("s@x", &["1@x".into()], b"body".to_vec(), origin(), 60);
            encode_record(&mut buf, f.id(), &f.encode().unwrap());
            files.push(f);
        }
        // A torn record at the tail, as a crash mid-write leaves it.
        let mut torn = Vec::new();
        let g = spool.new_message("s@x", &["1@x".into()], b"torn".to_vec(), origin(), 60);
        encode_record(&mut torn, g.id(), &g.encode().unwrap());
        buf.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(segment_path(&jdir, 7), &buf).unwrap();
        // One of them had been materialized already.
        spool.commit_direct(&files[0]).unwrap();

        let r = replay(&spool).unwrap();
        assert_eq!(r.replayed, 4);
        assert_eq!(r.already_present, 1);
        assert_eq!(r.damaged, 1);
        assert_eq!(r.next_seq, 8);
        for f in &files {
            assert_eq!(spool.read(Queue::Incoming, f.id()).unwrap(), *f);
        }
        assert_eq!(spool.find(g.id()), None);
        assert!(!segment_path(&jdir, 7).exists());
        assert_eq!(replay(&spool).unwrap().replayed, 0);
    }

    #[test]
    fn a_retry_after_a_partial_failure_writes_nothing_twice_and_nothing_over_a_queued_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let files: Vec<_> = (0..4)
            .map(|i| spool.new_message("s@x", &["1@x".into()], vec![b'a' + i; 10], origin(), 60))
            .collect();
        let bytes: Vec<_> = files.iter().map(|f| f.encode().unwrap()).collect();
        let records = as_records(&files, &bytes);
        // A first try published the first two; delivery has since taken the first away.
        let mut done = HashSet::new();
        assert_eq!(
            materialize(&spool, &records[..2], Guard::Live(&mut done)).unwrap(),
            2
        );
        fs::remove_file(spool.path(Queue::Incoming, files[0].id())).unwrap();
        // A stray file already holds the fourth's name: linkat/renameat2 must not replace it.
        fs::write(spool.path(Queue::Incoming, files[3].id()), b"other").unwrap();
        assert_eq!(
            materialize(&spool, &records, Guard::Live(&mut done)).unwrap(),
            1
        );
        assert_eq!(spool.find(files[0].id()), None, "not written twice");
        for f in &files[1..3] {
            assert_eq!(spool.read(Queue::Incoming, f.id()).unwrap(), *f);
        }
        assert_eq!(
            fs::read(spool.path(Queue::Incoming, files[3].id())).unwrap(),
            b"other"
        );
        // Nothing left behind in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn batches_larger_than_a_chunk_are_written_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let files: Vec<_> = (0..MATERIALIZE_CHUNK * 2 + 3)
            .map(|_| spool.new_message("s@x", &["1@x".into()], b"b".to_vec(), origin(), 60))
            .collect();
        let bytes: Vec<_> = files.iter().map(|f| f.encode().unwrap()).collect();
        let records = as_records(&files, &bytes);
        let n = materialize(&spool, &records, Guard::Live(&mut HashSet::new())).unwrap();
        assert_eq!(n, files.len());
        assert_eq!(spool.list(Queue::Incoming).unwrap().len(), files.len());
        for f in &files {
            assert_eq!(spool.read(Queue::Incoming, f.id()).unwrap(), *f);
        }
    }

    #[test]
    fn backlog_counts_journal_octets_not_yet_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).unwrap());
        assert_eq!(backlog(&spool).unwrap(), 0);
        // Records past the checkpoint, as a crash leaves them.
        let jdir = layout::journal_dir(dir.path());
        let f = spool.new_message("s@x", &["1@x".into()], b"body".to_vec(), origin(), 60);
        let mut buf = Vec::new();
        encode_record(&mut buf, f.id(), &f.encode().unwrap());
        fs::write(segment_path(&jdir, 3), &buf).unwrap();
        assert_eq!(backlog(&spool).unwrap(), buf.len() as u64);
        // Start-up replays it; then live commits are written out and the backlog drains.
        let j = start(Arc::clone(&spool), opts()).unwrap();
        assert_eq!(backlog(&spool).unwrap(), 0);
        let h = j.handle();
        for _ in 0..20 {
            let m = spool.new_message("s@x", &["1@x".into()], b"b".to_vec(), origin(), 60);
            h.commit_blocking(&spool, m).unwrap();
        }
        wait_materialized(&j, 20);
        assert_eq!(backlog(&spool).unwrap(), 0);
        drop(h);
        j.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn journal_write_error_is_a_temporary_failure_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).unwrap());
        let jdir = layout::journal_dir(dir.path());
        let r = replay(&spool).unwrap();
        // The segment the committer appends to is the full device: every write is ENOSPC.
        std::os::unix::fs::symlink("/dev/full", segment_path(&jdir, r.next_seq)).unwrap();
        let j = start_at(Arc::clone(&spool), r.next_seq, opts()).unwrap();
        let f = spool.new_message("", &["1@x".into()], b"m".to_vec(), origin(), 60);
        let e = j.handle().commit_blocking(&spool, f.clone()).unwrap_err();
        assert!(e.is_temporary());
        assert_eq!(e.io_kind(), Some(io::ErrorKind::StorageFull), "{e}");
        assert!(spool.list(Queue::Incoming).unwrap().is_empty());
        j.shutdown(Duration::from_secs(2));
    }

    proptest! {
        #[test]
        fn record_parser_never_panics_and_finds_intact_records(
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            n in 0usize..4,
        ) {
            let mut buf = junk.clone();
            let mut ids = Vec::new();
            for i in 0..n {
                let id = QueueId::from_parts(1000 + i as u64, 1);
                encode_record(&mut buf, id, format!("payload {i}").as_bytes());
                ids.push(id);
            }
            let (recs, _) = parse_records(&buf, 0);
            let found: Vec<_> = recs.iter().map(|(id, _)| *id).collect();
            for id in &ids {
                prop_assert!(found.contains(id));
            }
            let _ = parse_records(&junk, 0);
        }
    }
}
