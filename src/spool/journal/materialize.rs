//! The materializer thread (off the acknowledgement path, at nice 10): writes journaled
//! records out as queue files (unnamed files, one `syncfs` per chunk, named with `linkat`
//! never replacing), then moves the checkpoint and deletes finished segments
//! (docs/decisions/0004). A range that fails is written record by record; a record that fails
//! holds the checkpoint before it, so that replay writes it at the next start.

use super::*;

/// The materializer waits for this long a pause in the journal's flushes before it writes...
pub(super) const MATERIALIZE_IDLE: Duration = Duration::from_millis(50);

/// ...but never keeps an acknowledged message waiting longer than this for its file.
pub(super) const MATERIALIZE_DELAY: Duration = Duration::from_millis(250);

/// The materializer thread's nice value (background work; 0 is the default).
pub(super) const MATERIALIZER_NICE: i32 = 10;

pub(super) fn run_materializer(
    spool: &Spool,
    rx: std_mpsc::Receiver<MatMsg>,
    checkpoint: Checkpoint,
    stats: &Stats,
    stop: &AtomicBool,
) {
    // Background work: under CPU contention the acknowledgement path goes first. (Best
    // effort; the bounded queue from the committer keeps this thread from falling behind
    // without limit.)
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), MATERIALIZER_NICE)
    {
        warn!("cannot lower the materializer's priority: {e}");
    }
    let mut m = Materializer {
        spool,
        dir: layout::journal_dir(spool.root()),
        checkpoint,
        stats,
        stop,
        open: HashMap::new(),
        stuck: None,
    };
    while let Ok(first) = rx.recv() {
        let msgs = gather(&rx, first);
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
                    m.write_range(seq, start, end);
                }
                MatMsg::Sealed { seq } => {
                    i += 1;
                    m.remove_segment(seq);
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Waits while the journal is busy: until no flush has come for `MATERIALIZE_IDLE`, or until
/// the oldest range waiting is `MATERIALIZE_DELAY` old. One syncfs, directory fsync and
/// checkpoint write then cover the whole burst, and messages delivered from memory meanwhile
/// need no file at all (docs/decisions/0004).
///
/// It sleeps and then takes what came, rather than waiting on the channel: the committer's
/// sends then find nobody to wake, so a busy journal costs no thread switch per flush.
fn gather(rx: &std_mpsc::Receiver<MatMsg>, first: MatMsg) -> Vec<MatMsg> {
    let oldest = std::time::Instant::now();
    let mut msgs = vec![first];
    while msgs.len() < MATERIALIZE_QUEUE {
        let left = MATERIALIZE_DELAY.saturating_sub(oldest.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(MATERIALIZE_IDLE.min(left));
        let before = msgs.len();
        let mut closed = false;
        while msgs.len() < MATERIALIZE_QUEUE {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // Quiet for a whole pause (or shutting down): write now.
        if closed || msgs.len() == before {
            break;
        }
    }
    msgs
}

/// The materializer thread's state.
struct Materializer<'a> {
    spool: &'a Spool,
    dir: PathBuf,
    checkpoint: Checkpoint,
    stats: &'a Stats,
    stop: &'a AtomicBool,
    /// Segments being read.
    open: HashMap<u64, File>,
    /// The first segment with a range that failed, if any: from it on, the checkpoint stays
    /// put and segments stay on disk, so that the next start-up replays them.
    stuck: Option<u64>,
}

impl Materializer<'_> {
    /// Reads `start..end` of segment `seq` back and writes its records out.
    fn write_range(&mut self, seq: u64, start: u64, end: u64) {
        let Some(buf) = self.read_range(seq, start, end) else {
            return;
        };
        let (records, damaged) = parse_records(&buf, 0);
        if damaged > 0 {
            error!("journal segment {seq:016X} reads back damaged at {start}..{end}");
        }
        let mut done = HashSet::new();
        // After a range failed (a panic), the checkpoint stays before it; later ranges are
        // still written out (replay skips what is queued).
        let hold_checkpoint = self.stuck.is_some();
        let (spool, stop, checkpoint) = (self.spool, self.stop, &self.checkpoint);
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
                self.stats
                    .materialized
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(p) => {
                warn!(
                    "journal materializer: segment {seq:016X} {start}..{end} failed ({}); writing it out record by record",
                    crate::fault::panic_text(p.as_ref())
                );
                self.stuck.get_or_insert(seq);
                self.write_one_by_one(&records, &mut done);
            }
        }
    }

    fn read_range(&mut self, seq: u64, start: u64, end: u64) -> Option<Vec<u8>> {
        let file = match self.open.entry(seq) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match File::open(segment_path(&self.dir, seq)) {
                    Ok(f) => v.insert(f),
                    Err(e) => {
                        error!("cannot read journal segment {seq:016X}: {e}; replay at next start");
                        return None;
                    }
                }
            }
        };
        let mut buf = vec![0u8; usize::try_from(end - start).ok()?];
        if let Err(e) = file.read_exact_at(&mut buf, start) {
            error!("cannot read journal segment {seq:016X}: {e}; replay at next start");
            return None;
        }
        Some(buf)
    }

    /// After a range failed: each record on its own, so that one that fails again stays in
    /// the journal and the rest are written.
    fn write_one_by_one(&self, records: &[(QueueId, &[u8])], done: &mut HashSet<QueueId>) {
        for rec in records {
            let one = std::slice::from_ref(rec);
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                retry_until_done(self.stop, "materialize", || {
                    materialize(self.spool, one, Guard::Live(&mut *done)).map(|_| ())
                });
            }));
            match attempt {
                Ok(()) => {
                    self.stats.materialized.fetch_add(1, Ordering::Relaxed);
                }
                Err(p) => error!(
                    "{}: writing out from the journal failed ({}); it stays in the journal for the next start-up; the materializer goes on",
                    rec.0,
                    crate::fault::panic_text(p.as_ref())
                ),
            }
        }
    }

    /// A sealed segment is complete and written out: delete it (unless kept for replay).
    fn remove_segment(&mut self, seq: u64) {
        self.open.remove(&seq);
        if self.stuck.is_some_and(|s| seq >= s) {
            return;
        }
        let p = segment_path(&self.dir, seq);
        let dir = &self.dir;
        retry_until_done(self.stop, "remove journal segment", || {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io("unlink", &p)(e)),
            }
            sync_dir(dir)
        });
    }
}

/// Runs `f` until it succeeds, pausing between tries; gives up only when `stop` is set (the
/// journal keeps the records for replay).
pub(super) fn retry_until_done(
    stop: &AtomicBool,
    what: &str,
    mut f: impl FnMut() -> Result<(), SpoolError>,
) {
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
pub(super) enum Guard<'a> {
    /// Replay at start-up: a message already in any queue is skipped (five lookups each, once).
    Replay,
    /// The live materializer: the IDs an earlier failed try of the same records published
    /// (they are skipped; the rescan finds them), and a rename that refuses to replace.
    Live(&'a mut HashSet<QueueId>),
}

/// Files staged at once: each stays open until it is named, so a batch is taken in chunks
/// of this many (one sync each) to stay far below the descriptor limit.
pub(super) const MATERIALIZE_CHUNK: usize = 256;

/// A written, not yet published queue file.
pub(super) enum Staged {
    /// An unnamed file (`O_TMPFILE`), named by `linkat`.
    Unnamed(File),
    /// A file in `tmp/`, renamed into place (file systems without `O_TMPFILE`).
    Named(PathBuf, Option<File>),
}

impl Staged {
    pub(super) fn file(&self) -> Option<&File> {
        match self {
            Staged::Unnamed(f) | Staged::Named(_, Some(f)) => Some(f),
            Staged::Named(_, None) => None,
        }
    }

    pub(super) fn discard(self) {
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
pub(super) fn materialize(
    spool: &Spool,
    records: &[(QueueId, &[u8])],
    mut guard: Guard<'_>,
) -> Result<usize, SpoolError> {
    let mut written = Vec::new();
    let mut to_active = false;
    for chunk in records.chunks(MATERIALIZE_CHUNK) {
        let staged = stage(spool, chunk, &guard)?;
        if let Err(e) = sync(spool, &staged) {
            discard(staged);
            return Err(e);
        }
        for (id, payload, dest, file) in staged {
            if publish(spool, id, dest, file, &mut guard)? {
                if dest == Queue::Active {
                    to_active = true;
                } else {
                    written.push((id, payload));
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

/// A record written to a file not yet named in its queue.
type Pending<'a> = (QueueId, &'a [u8], Queue, Staged);

fn discard(staged: Vec<Pending<'_>>) {
    for (.., s) in staged {
        s.discard();
    }
}

/// Writes each record of `chunk` the guard and the claims table do not skip to a file of its
/// own, unsynced and unnamed (or in tmp/ where the file system has no O_TMPFILE).
fn stage<'a>(
    spool: &Spool,
    chunk: &[(QueueId, &'a [u8])],
    guard: &Guard<'_>,
) -> Result<Vec<Pending<'a>>, SpoolError> {
    let mut staged: Vec<Pending<'a>> = Vec::with_capacity(chunk.len());
    for (id, payload) in chunk {
        crate::fault::panic_if_marked(crate::fault::Point::Materialize, payload);
        if let Guard::Live(done) = guard
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
    Ok(staged)
}

/// Makes the staged files' data durable: an fsync for one, a syncfs for more.
fn sync(spool: &Spool, staged: &[Pending<'_>]) -> Result<(), SpoolError> {
    match staged {
        [(.., s)] => s
            .file()
            .map_or(Ok(()), File::sync_all)
            .map_err(SpoolError::io("fsync", spool.root())),
        [(.., s), ..] => s.file().map_or(Ok(()), |f| {
            rustix::fs::syncfs(f).map_err(|e| SpoolError::io("syncfs", spool.root())(e.into()))
        }),
        [] => Ok(()),
    }
}

/// Names a staged file in its queue. `Ok(true)` when it is there now; `Ok(false)` when it
/// already was (replay) and the copy is dropped.
fn publish(
    spool: &Spool,
    id: QueueId,
    dest: Queue,
    file: Staged,
    guard: &mut Guard<'_>,
) -> Result<bool, SpoolError> {
    let replay = matches!(guard, Guard::Replay);
    let published = match &file {
        Staged::Named(tmp, _) if replay => spool.publish(tmp, id, dest),
        Staged::Named(tmp, _) => spool.publish_new(tmp, id, dest),
        Staged::Unnamed(_) if replay && spool.find(id).is_some() => Err(SpoolError::Exists(id)),
        Staged::Unnamed(f) => spool.link_new(f, id, dest),
    };
    if let (Ok(()), Guard::Live(done)) = (&published, guard) {
        done.insert(id);
    }
    match published {
        Ok(()) => {
            if dest == Queue::Active && spool.claims().after_write(id) {
                // Delivery finished while this was written: its result is durable.
                let _ = fs::remove_file(spool.path(Queue::Active, id));
            }
            Ok(true)
        }
        // Already queued (replay); nothing is left behind.
        Err(SpoolError::Exists(_)) => {
            file.discard();
            Ok(false)
        }
        Err(e) => {
            file.discard();
            Err(e)
        }
    }
}
