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

const REC_MAGIC: &[u8; 4] = b"SMJ1";
const REC_HEAD: usize = 4 + 4 + 4 + super::queue_id::LEN;
const CHECKPOINT: &str = "checkpoint";
/// Requests waiting for the committer; beyond this, callers wait (back-pressure).
const REQUEST_QUEUE: usize = 8192;
/// Flushed ranges waiting for the materializer; beyond this the committer waits, so the
/// backlog on disk stays bounded too.
const MATERIALIZE_QUEUE: usize = 4096;
/// The materializer waits for this long a pause in the journal's flushes before it writes...
const MATERIALIZE_IDLE: Duration = Duration::from_millis(50);
/// ...but never keeps an acknowledged message waiting longer than this for its file.
const MATERIALIZE_DELAY: Duration = Duration::from_millis(250);
/// The materializer thread's nice value (background work; 0 is the default).
const MATERIALIZER_NICE: i32 = 10;

/// Tuning for [`start`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Size at which a new segment is started.
    pub segment_size: u64,
    /// Most requests covered by one flush.
    pub max_batch: usize,
}

/// Counters, for benchmarks and `queue` statistics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Flushes (`fdatasync` calls) that succeeded.
    pub flushes: AtomicU64,
    /// Messages committed through the journal.
    pub committed: AtomicU64,
    /// Messages written out as queue files.
    pub materialized: AtomicU64,
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

/// One journal segment being appended to.
struct Segment {
    seq: u64,
    file: File,
    /// End of the records.
    len: u64,
    /// End of the file: records, then zeros written ahead (see [`Segment::append`]).
    zeroed: u64,
    path: PathBuf,
}

/// The journal file grows in zero-filled steps of this size.
const ZERO_AHEAD: u64 = 1 << 20;

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016X}.wal"))
}

impl Segment {
    fn create(dir: &Path, seq: u64) -> Result<Segment, SpoolError> {
        let path = segment_path(dir, seq);
        // Not create_new: a segment left by a crash with this number was replayed and removed
        // already; opening without truncation also lets tests substitute a failing device.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(SpoolError::io("create journal segment", &path))?;
        sync_dir(dir)?;
        Ok(Segment {
            seq,
            file,
            len: 0,
            zeroed: 0,
            path,
        })
    }

    /// Writes `buf` after the records and flushes. The file is grown ahead of the records
    /// with zeros, `ZERO_AHEAD` at a time (in the same flush), so that most flushes overwrite
    /// blocks that are allocated and inside the file's size: `fdatasync` then writes the data
    /// and flushes the device, without also writing the inode.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.len + buf.len() as u64;
        if end > self.zeroed {
            let target = end.div_ceil(ZERO_AHEAD) * ZERO_AHEAD;
            let zeros = vec![0u8; (target - self.zeroed).min(ZERO_AHEAD) as usize];
            let mut at = self.zeroed;
            while at < target {
                let n = (target - at).min(zeros.len() as u64);
                self.file.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
            self.zeroed = target;
        }
        self.file.write_all_at(buf, self.len)?;
        self.file.sync_data()?;
        self.len = end;
        Ok(())
    }

    /// Cuts the file back to `len` (an unacknowledged tail) and syncs.
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.zeroed = len;
        self.file.set_len(len)?;
        self.file.sync_data()
    }
}

fn encode_record(out: &mut Vec<u8>, id: QueueId, payload: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(id.as_str().as_bytes());
    h.update(payload);
    out.extend_from_slice(REC_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out.extend_from_slice(id.as_str().as_bytes());
    out.extend_from_slice(payload);
}

/// Parses the records of `buf` from `pos`. Returns the records and how many damaged regions
/// were skipped (a torn tail counts as one).
fn parse_records(buf: &[u8], mut pos: usize) -> (Vec<(QueueId, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut damaged = 0;
    let resync = |from: usize| -> Option<usize> {
        buf.get(from..)?
            .windows(REC_MAGIC.len())
            .position(|w| w == REC_MAGIC)
            .map(|p| from + p)
    };
    while pos < buf.len() {
        let rec = parse_one(buf, pos);
        match rec {
            Some((id, payload, next)) => {
                out.push((id, payload));
                pos = next;
            }
            // The zeros a segment is grown with: the end of the records, not damage.
            None if buf[pos..].iter().all(|b| *b == 0) => break,
            None => {
                damaged += 1;
                match resync(pos + 1) {
                    Some(p) => pos = p,
                    None => break,
                }
            }
        }
    }
    (out, damaged)
}

fn parse_one(buf: &[u8], pos: usize) -> Option<(QueueId, &[u8], usize)> {
    let head = buf.get(pos..pos.checked_add(REC_HEAD)?)?;
    if &head[..4] != REC_MAGIC {
        return None;
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let crc = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let id_bytes = &head[12..REC_HEAD];
    let end = pos.checked_add(REC_HEAD)?.checked_add(len)?;
    let payload = buf.get(pos + REC_HEAD..end)?;
    let mut h = crc32fast::Hasher::new();
    h.update(id_bytes);
    h.update(payload);
    if h.finalize() != crc {
        return None;
    }
    let id = QueueId::parse(std::str::from_utf8(id_bytes).ok()?).ok()?;
    Some((id, payload, end))
}

fn run_committer(
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
fn commit_batch(
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
    match seg.append(buf) {
        Ok(()) => {
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

/// `journal/checkpoint`: the segment and offset up to which every record is materialized.
/// Decodes the checkpoint record `segment (u64 BE) | offset (u64 BE) | CRC-32 of both`;
/// (0, 0) when short or damaged.
fn parse_checkpoint(b: &[u8]) -> (u64, u64) {
    let (Some(seg), Some(off), Some(crc)) = (b.get(..8), b.get(8..16), b.get(16..20)) else {
        return (0, 0);
    };
    let be = |x: &[u8]| x.iter().fold(0u64, |a, d| a << 8 | u64::from(*d));
    if be(crc) != u64::from(crc32fast::hash(&b[..16])) {
        return (0, 0);
    }
    (be(seg), be(off))
}

struct Checkpoint {
    file: File,
    path: PathBuf,
}

impl Checkpoint {
    fn open(dir: &Path) -> Result<Checkpoint, SpoolError> {
        let path = dir.join(CHECKPOINT);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(SpoolError::io("open", &path))?;
        if !existed {
            sync_dir(dir)?;
        }
        Ok(Checkpoint { file, path })
    }

    /// (segment, offset); (0, 0) when absent or damaged, which makes replay look at everything.
    fn read(&self) -> (u64, u64) {
        let mut b = [0u8; 20];
        if self.file.read_exact_at(&mut b, 0).is_err() {
            return (0, 0);
        }
        parse_checkpoint(&b)
    }

    /// Overwrites the 20-byte record in place (within one sector) and syncs it.
    fn write(&self, seq: u64, offset: u64) -> Result<(), SpoolError> {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&seq.to_be_bytes());
        b[8..16].copy_from_slice(&offset.to_be_bytes());
        let crc = crc32fast::hash(&b[..16]);
        b[16..].copy_from_slice(&crc.to_be_bytes());
        self.file
            .write_all_at(&b, 0)
            .and_then(|()| self.file.sync_data())
            .map_err(SpoolError::io("write", &self.path))
    }
}

fn run_materializer(
    spool: &Spool,
    rx: std_mpsc::Receiver<MatMsg>,
    checkpoint: Checkpoint,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let dir = layout::journal_dir(spool.root());
    // Background work: under CPU contention the acknowledgement path goes first. (Best
    // effort; the bounded queue from the committer keeps this thread from falling behind
    // without limit.)
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), MATERIALIZER_NICE)
    {
        warn!("cannot lower the materializer's priority: {e}");
    }
    let mut open: HashMap<u64, File> = HashMap::new();
    // The first segment with a range that failed, if any.
    let mut stuck: Option<u64> = None;
    while let Ok(first) = rx.recv() {
        // Write out while the journal is quiet: wait until no flush has come for
        // `MATERIALIZE_IDLE`, or until the oldest range waiting is `MATERIALIZE_DELAY` old.
        // One syncfs, directory fsync and checkpoint write then cover the whole burst, and
        // messages delivered from memory meanwhile need no file at all (docs/decisions/0004).
        let oldest = std::time::Instant::now();
        let mut msgs = vec![first];
        while msgs.len() < MATERIALIZE_QUEUE {
            let left = MATERIALIZE_DELAY.saturating_sub(oldest.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(MATERIALIZE_IDLE.min(left)) {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut i = 0;
        while i < msgs.len() {
            match msgs[i] {
                MatMsg::Durable { seq, start, .. } => {
                    // Extend over consecutive ranges of the same segment.
                    let mut end = start;
                    while let Some(MatMsg::Durable { seq: s, end: e, .. }) = msgs.get(i) {
                        if *s != seq {
                            break;
                        }
                        end = *e;
                        i += 1;
                    }
                    let file = match open.entry(seq) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            match File::open(segment_path(&dir, seq)) {
                                Ok(f) => v.insert(f),
                                Err(e) => {
                                    error!(
                                        "cannot read journal segment {seq:016X}: {e}; replay at next start"
                                    );
                                    continue;
                                }
                            }
                        }
                    };
                    let mut buf = vec![0u8; (end - start) as usize];
                    if let Err(e) = file.read_exact_at(&mut buf, start) {
                        error!("cannot read journal segment {seq:016X}: {e}; replay at next start");
                        continue;
                    }
                    let (records, damaged) = parse_records(&buf, 0);
                    if damaged > 0 {
                        error!("journal segment {seq:016X} reads back damaged at {start}..{end}");
                    }
                    let mut done = HashSet::new();
                    // After a range failed (a panic), the checkpoint stays before it and its
                    // segment stays on disk, so that the next start-up replays it; later
                    // ranges are still written out (replay skips what is queued).
                    let hold_checkpoint = stuck.is_some();
                    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        retry_until_done(stop, "materialize", || {
                            materialize(spool, &records, Guard::Live(&mut done))?;
                            if hold_checkpoint {
                                Ok(())
                            } else {
                                checkpoint.write(seq, end)
                            }
                        });
                    }));
                    match attempt {
                        Ok(()) => {
                            stats
                                .materialized
                                .fetch_add(records.len() as u64, Ordering::Relaxed);
                        }
                        Err(p) => {
                            warn!(
                                "journal materializer: segment {seq:016X} {start}..{end} failed ({}); writing it out record by record",
                                crate::fault::panic_text(p.as_ref())
                            );
                            stuck.get_or_insert(seq);
                            for rec in &records {
                                let one = std::slice::from_ref(rec);
                                let attempt =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        retry_until_done(stop, "materialize", || {
                                            materialize(spool, one, Guard::Live(&mut done))
                                                .map(|_| ())
                                        });
                                    }));
                                match attempt {
                                    Ok(()) => {
                                        stats.materialized.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(p) => error!(
                                        "{}: writing out from the journal failed ({}); it stays in the journal for the next start-up; the materializer goes on",
                                        rec.0,
                                        crate::fault::panic_text(p.as_ref())
                                    ),
                                }
                            }
                        }
                    }
                }
                MatMsg::Sealed { seq } => {
                    i += 1;
                    open.remove(&seq);
                    if stuck.is_some_and(|s| seq >= s) {
                        // Kept for replay (see above).
                        continue;
                    }
                    let p = segment_path(&dir, seq);
                    retry_until_done(stop, "remove journal segment", || {
                        match fs::remove_file(&p) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(SpoolError::io("unlink", &p)(e)),
                        }
                        sync_dir(&dir)
                    });
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Runs `f` until it succeeds, pausing between tries; gives up only when `stop` is set (the
/// journal keeps the records for replay).
fn retry_until_done(stop: &AtomicBool, what: &str, mut f: impl FnMut() -> Result<(), SpoolError>) {
    let mut pause = Duration::from_millis(50);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) => {
                warn!("{what}: {e}; retrying in {pause:?}");
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How [`materialize`] makes sure a message is written out at most once.
enum Guard<'a> {
    /// Replay at start-up: a message already in any queue is skipped (five lookups each, once).
    Replay,
    /// The live materializer: the IDs an earlier failed try of the same records published
    /// (they are skipped; the rescan finds them), and a rename that refuses to replace.
    Live(&'a mut HashSet<QueueId>),
}

/// Files staged at once: each stays open until it is named, so a batch is taken in chunks
/// of this many (one sync each) to stay far below the descriptor limit.
const MATERIALIZE_CHUNK: usize = 256;

/// A written, not yet published queue file.
enum Staged {
    /// An unnamed file (`O_TMPFILE`), named by `linkat`.
    Unnamed(File),
    /// A file in `tmp/`, renamed into place (file systems without `O_TMPFILE`).
    Named(PathBuf, Option<File>),
}

impl Staged {
    fn file(&self) -> Option<&File> {
        match self {
            Staged::Unnamed(f) | Staged::Named(_, Some(f)) => Some(f),
            Staged::Named(_, None) => None,
        }
    }

    fn discard(self) {
        if let Staged::Named(p, _) = self {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes records out as queue files in `incoming/` (or `active/` for messages delivery
/// holds), then publishes them; returns how many were written.
///
/// Each chunk of the batch is written as unnamed files, made durable with one `syncfs` (one
/// device flush for the chunk instead of one per file, docs/decisions/0004), then named in
/// its queue; a last `syncfs` makes the names durable.
fn materialize(
    spool: &Spool,
    records: &[(QueueId, &[u8])],
    mut guard: Guard<'_>,
) -> Result<usize, SpoolError> {
    let mut written = Vec::new();
    let mut to_active = false;
    for chunk in records.chunks(MATERIALIZE_CHUNK) {
        let mut staged: Vec<(QueueId, &[u8], Queue, Staged)> = Vec::with_capacity(chunk.len());
        let discard = |staged: Vec<(QueueId, &[u8], Queue, Staged)>| {
            for (.., s) in staged {
                s.discard();
            }
        };
        for (id, payload) in chunk {
            crate::fault::panic_if_marked(crate::fault::Point::Materialize, payload);
            if let Guard::Live(done) = &guard
                && done.contains(id)
            {
                continue;
            }
            let dest = match spool.claims().before_write(*id) {
                Write::Normal => Queue::Incoming,
                Write::ToActive => Queue::Active,
                Write::Skip => continue,
            };
            let file = match spool.write_unnamed(dest, payload) {
                Ok(Some(f)) => Ok(Staged::Unnamed(f)),
                Ok(None) => spool
                    .write_tmp_file(*id, payload, false)
                    .map(|(p, f)| Staged::Named(p, staged.is_empty().then_some(f))),
                Err(e) => Err(e),
            };
            match file {
                Ok(f) => staged.push((*id, *payload, dest, f)),
                Err(e) => {
                    discard(staged);
                    return Err(e);
                }
            }
        }
        let synced = match staged.as_slice() {
            [(.., s)] => s
                .file()
                .map_or(Ok(()), File::sync_all)
                .map_err(SpoolError::io("fsync", spool.root())),
            [(.., s), ..] => s.file().map_or(Ok(()), |f| {
                rustix::fs::syncfs(f).map_err(|e| SpoolError::io("syncfs", spool.root())(e.into()))
            }),
            [] => Ok(()),
        };
        if let Err(e) = synced {
            discard(staged);
            return Err(e);
        }
        for (id, payload, dest, file) in staged {
            let replay = matches!(guard, Guard::Replay);
            let published = match &file {
                Staged::Named(tmp, _) if replay => spool.publish(tmp, id, dest),
                Staged::Named(tmp, _) => spool.publish_new(tmp, id, dest),
                Staged::Unnamed(_) if replay && spool.find(id).is_some() => {
                    Err(SpoolError::Exists(id))
                }
                Staged::Unnamed(f) => spool.link_new(f, id, dest),
            };
            if let (Ok(()), Guard::Live(done)) = (&published, &mut guard) {
                done.insert(id);
            }
            match published {
                Ok(()) if dest == Queue::Active => {
                    to_active = true;
                    if spool.claims().after_write(id) {
                        // Delivery finished while this was written: its result is durable.
                        let _ = fs::remove_file(spool.path(Queue::Active, id));
                    }
                }
                Ok(()) => written.push((id, payload)),
                // Already queued (replay); nothing is left behind.
                Err(SpoolError::Exists(_)) => file.discard(),
                Err(e) => {
                    file.discard();
                    return Err(e);
                }
            }
        }
    }
    if to_active || !written.is_empty() {
        // One more syncfs makes the names durable, and with them the link counts of the
        // unnamed files (a directory fsync alone would not write those inodes again).
        let dir = Queue::Incoming.dir(spool.root());
        File::open(&dir)
            .and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from))
            .map_err(SpoolError::io("syncfs", &dir))?;
    }
    for (id, payload) in &written {
        spool.published(*id, payload);
    }
    Ok(written.len())
}

/// Replays one segment's records; should that fail with a panic, record by record, setting
/// aside in `corrupt/` each record that fails on its own, so that start-up always finishes.
fn replay_records(
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

/// The journal's segments, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(SpoolError::io("read directory", dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let seq = u64::from_str_radix(name.strip_suffix(".wal")?, 16).ok()?;
            Some((seq, e.path()))
        })
        .collect();
    segs.sort_unstable();
    Ok(segs)
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
