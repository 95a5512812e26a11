//! The Postfix-style spool: queue directories on disk, the only hand-off between the front
//! doors (SIP, SMTP, `inject`) and delivery.
//!
//! **Durability.** A message is *committed* when [`Writer::commit`] returns `Ok`; only then may
//! a listener acknowledge it (SMTP 250, SIP 202). There are two commit paths:
//!
//! * *direct* ([`Spool::commit_direct`]): write `tmp/ID`, `fsync` it, `rename` it to
//!   `incoming/ID`, `fsync` the `incoming` directory. One file creation per message; this is
//!   what `smsmta inject` uses, and the server when `[spool] journal = false`.
//! * *journal* ([`journal`]): append the encoded queue file to a write-ahead journal with group
//!   commit (one `fdatasync` covers every message that arrived while the previous flush ran),
//!   acknowledge, then write the queue file into `incoming/` in the background and advance a
//!   checkpoint. Start-up recovery replays what the checkpoint does not cover.
//!   docs/decisions/0002-journal-group-commit.md has the measurements behind this.
//!
//! Either way nothing partial is ever visible in a message queue: files are complete and
//! synced in `tmp/` before the rename. Per-recipient state updates ([`Spool::rewrite`]) also
//! write a new file and rename it over the old one, so a crash leaves the old state or the new.
//!
//! **Trust.** Queue files are decoded with [`queue_file::QueueFile::decode`], which detects
//! truncation and damage; a file that fails goes to `corrupt/`. IDs from the command line are
//! validated by [`QueueId::parse`] before they become paths.
//!
//! **Errors.** Every disk error comes back as [`SpoolError`]; [`SpoolError::is_temporary`] tells
//! listeners to answer with a temporary refusal (SMTP 451 4.3.0, SIP 503 + Retry-After).
//!
//! **Concurrency.** The server and the `queue`/`inject` commands may work on the spool at the
//! same time: every change is a rename or an atomic rewrite, and a command that races with the
//! server sees either the old or the new place of a message.

pub mod admin;
pub mod claims;
pub mod delivering;
pub mod inject;
pub mod journal;
pub mod layout;
pub mod queue_file;
pub mod queue_id;
pub mod recover;
pub mod shape;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::info;

use crate::clock::now_unix;

mod error;
mod writer;

pub use delivering::Taken;
pub use error::SpoolError;
pub use layout::Queue;
pub use queue_file::{Envelope, Origin, OriginKind, QueueFile, RcptState, Recipient};
pub use queue_id::QueueId;
pub use writer::Writer;

/// Called with every message that becomes visible in `incoming/` (the queue manager's
/// "new mail" hint); it must not block.
pub type PublishHook = Box<dyn Fn(QueueId, &[u8]) + Send + Sync>;

/// Called by the journal with every message just flushed (its encoded bytes), after the
/// acknowledgement, before the materializer sees it; it must not block.
pub type CommitHook = Box<dyn Fn(QueueId, Vec<u8>) + Send + Sync>;

/// Room beyond `max_message_size` for the header lines smsmta adds itself.
pub const OWN_HEADROOM: u64 = 64 << 10;

/// Most messages delivery may hold in memory at once ([`claims`]).
const CLAIM_COUNT: usize = 8192;
/// Most bytes delivery may hold in memory at once.
const CLAIM_BYTES: usize = 64 << 20;

/// The spool: a root directory with one directory per queue.
pub struct Spool {
    root: PathBuf,
    ids: queue_id::IdGenerator,
    max_message_size: u64,
    hook: std::sync::OnceLock<PublishHook>,
    commit_hook: std::sync::OnceLock<CommitHook>,
    claims: claims::Claims,
    space: Space,
}

/// The free-space reserve (`[spool] min_free`, Postfix's `queue_minfree`): checked with
/// statvfs at most once a second, read lock-free on every commit. Between two checks the bytes
/// admitted are counted against the space last seen, twice (a message is written to the
/// journal, then to its queue file before the journal's copy is freed), so a fast burst
/// cannot run past the reserve in the second a check is old.
#[derive(Debug, Default)]
struct Space {
    min_free: std::sync::atomic::AtomicU64,
    checked_ms: std::sync::atomic::AtomicU64,
    /// Free bytes at the last check.
    avail: AtomicU64,
    /// Bytes admitted since then (each counted twice).
    admitted: AtomicU64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spool({})", self.root.display())
    }
}

impl Spool {
    /// Opens (and creates, mode 0700) the spool at `root`.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when a directory cannot be created.
    pub fn open(root: impl Into<PathBuf>, max_message_size: u64) -> Result<Spool, SpoolError> {
        let root = root.into();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(&root)
            .map_err(SpoolError::io("create directory", &root))?;
        for q in Queue::ALL {
            let d = q.dir(&root);
            builder
                .create(&d)
                .map_err(SpoolError::io("create directory", &d))?;
        }
        let j = layout::journal_dir(&root);
        builder
            .create(&j)
            .map_err(SpoolError::io("create directory", &j))?;
        Ok(Spool {
            root,
            ids: queue_id::IdGenerator::new(),
            max_message_size,
            hook: std::sync::OnceLock::new(),
            commit_hook: std::sync::OnceLock::new(),
            claims: claims::Claims::new(CLAIM_COUNT, CLAIM_BYTES),
            space: Space::default(),
        })
    }

    /// Sets the hook told about every message published to `incoming/` (once; later calls
    /// are ignored).
    pub fn set_publish_hook(&self, hook: PublishHook) {
        let _ = self.hook.set(hook);
    }

    /// Sets the hook told about every journaled commit (once; later calls are ignored).
    pub fn set_commit_hook(&self, hook: CommitHook) {
        let _ = self.commit_hook.set(hook);
    }

    /// Tells the commit hook that `id` (encoded as `bytes`) is durable in the journal.
    pub(crate) fn committed(&self, id: QueueId, bytes: Vec<u8>) {
        if let Some(h) = self.commit_hook.get() {
            h(id, bytes);
        }
    }

    /// Messages that delivery holds in memory ([`claims`]).
    pub fn claims(&self) -> &claims::Claims {
        &self.claims
    }

    /// Writes a complete file for `id` straight into `queue` (tmp, fsync, rename, directory
    /// fsync), replacing nothing: for a message delivery held in memory and now defers.
    ///
    /// # Errors
    /// [`SpoolError`]; nothing is left in `queue` on error.
    pub fn write_new(&self, queue: Queue, file: &QueueFile) -> Result<(), SpoolError> {
        self.replace_file(queue, file, "new")
    }

    /// Writes `file` to `tmp/ID.<pid>.<suffix>` (a distinct name: `tmp/ID` may be in use by a
    /// concurrent first commit), fsyncs it, renames it to its place in `queue` (over an old
    /// copy, if any) and fsyncs the directory.
    fn replace_file(&self, queue: Queue, file: &QueueFile, suffix: &str) -> Result<(), SpoolError> {
        let bytes = file.encode()?;
        let id = file.id();
        let tmp = self
            .root
            .join(Queue::Tmp.dir_name())
            .join(format!("{id}.{}.{suffix}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(SpoolError::io("create", &tmp))?;
        let dest = self.path(queue, id);
        let res = f
            .write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(SpoolError::io("write", &tmp))
            .and_then(|()| fs::rename(&tmp, &dest).map_err(SpoolError::io("rename", &dest)));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir(queue)
    }

    /// Tells the hook that `id` (encoded as `bytes`) is now in `incoming/`.
    pub(crate) fn published(&self, id: QueueId, bytes: &[u8]) {
        if let Some(h) = self.hook.get() {
            h(id, bytes);
        }
    }

    /// The spool root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The largest message this spool accepts.
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// A fresh queue ID.
    pub fn new_id(&self) -> QueueId {
        self.ids.next_id()
    }

    /// Builds a queue file for a new message with a fresh ID, every recipient due now.
    pub fn new_message(
        &self,
        sender: &str,
        recipients: &[String],
        message: Vec<u8>,
        origin: Origin,
        lifetime_secs: u64,
    ) -> QueueFile {
        let now = now_unix();
        QueueFile {
            envelope: Envelope {
                id: queue_file::QueueIdField(self.new_id()),
                sender: sender.to_string(),
                recipients: recipients.iter().map(|r| Recipient::new(r, now)).collect(),
                arrival: now,
                expires: now.saturating_add(lifetime_secs),
                origin,
                warned: false,
            },
            message,
            original: Vec::new(),
        }
    }

    /// The path of `id` in `queue`.
    pub fn path(&self, queue: Queue, id: QueueId) -> PathBuf {
        queue.path(&self.root, id)
    }

    /// Keeps `bytes` free on the spool's file system: below it [`Spool::low_on_space`] says so
    /// and the doors refuse new mail temporarily (0: no reserve).
    pub fn set_min_free(&self, bytes: u64) {
        self.space.min_free.store(bytes, Ordering::Relaxed);
        self.space.checked_ms.store(0, Ordering::Relaxed);
    }

    /// Whether the spool's file system has less free space than the reserve (as of the last
    /// check, at most a second old). What is queued is still delivered; only intake stops.
    pub fn low_on_space(&self) -> bool {
        let min = self.space.min_free.load(Ordering::Relaxed);
        if min == 0 {
            return false;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.space.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .space
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let avail = match rustix::fs::statvfs(&self.root) {
                Ok(v) => v.f_bavail.saturating_mul(v.f_frsize),
                Err(_) => u64::MAX,
            };
            self.space.admitted.store(0, Ordering::Relaxed);
            self.space.avail.store(avail, Ordering::Relaxed);
        }
        let avail = self.space.avail.load(Ordering::Relaxed);
        avail.saturating_sub(self.space.admitted.load(Ordering::Relaxed)) < min
    }

    /// Encodes a file for the spool, enforcing the size limit.
    ///
    /// # Errors
    /// [`SpoolError::TooLarge`] or [`SpoolError::Encode`].
    pub fn encode(&self, file: &QueueFile) -> Result<Vec<u8>, SpoolError> {
        // The limit is on what the client sent; our own header lines (Received, X-SMS-*) and
        // a SIP original (bounded by its door) get room beyond it.
        let size = file.message.len() as u64;
        if size > self.max_message_size + OWN_HEADROOM {
            return Err(SpoolError::TooLarge {
                size,
                max: self.max_message_size,
            });
        }
        let bytes = file.encode()?;
        self.space
            .admitted
            .fetch_add(2 * bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Writes `bytes` to a new file in `tmp/` (mode 0600) without syncing it; returns the path
    /// and the open file, so that a batch can be written first and synced after (on ext4 the
    /// first fsync's journal commit carries the others' data, so they cost little).
    /// `exclusive`: fail if the tmp file exists; else a leftover of an earlier failed try is
    /// overwritten (the journal's materializer, which owns its IDs' tmp files).
    pub(crate) fn write_tmp_file(
        &self,
        id: QueueId,
        bytes: &[u8],
        exclusive: bool,
    ) -> Result<(PathBuf, File), SpoolError> {
        let path = self.path(Queue::Tmp, id);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(exclusive)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(SpoolError::io("create", &path))?;
        if let Err(e) = f.write_all(bytes) {
            let _ = fs::remove_file(&path);
            return Err(SpoolError::io("write", &path)(e));
        }
        Ok((path, f))
    }

    /// Renames a synced tmp file into `queue` without replacing an existing message.
    /// The caller fsyncs the directory.
    pub(crate) fn publish(&self, tmp: &Path, id: QueueId, queue: Queue) -> Result<(), SpoolError> {
        if self.find(id).is_some() {
            let _ = fs::remove_file(tmp);
            return Err(SpoolError::Exists(id));
        }
        let dest = self.path(queue, id);
        fs::rename(tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(tmp);
            SpoolError::io("rename", &dest)(e)
        })
    }

    /// Writes `bytes` to a new unnamed file (`O_TMPFILE`) on the file system of `queue`: no
    /// directory entry until [`Spool::link_new`] names it, so a batch costs one directory
    /// insertion a message instead of three (create in `tmp/`, rename out, rename in). A crash
    /// before the link leaves nothing behind. `Ok(None)` where the kernel or file system has
    /// no `O_TMPFILE`: the caller falls back to a named tmp file.
    pub(crate) fn write_unnamed(
        &self,
        queue: Queue,
        bytes: &[u8],
    ) -> Result<Option<File>, SpoolError> {
        use rustix::fs::{Mode, OFlags};
        let dir = queue.dir(&self.root);
        let fd = match rustix::fs::open(
            &dir,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            Err(
                rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::ISDIR
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOENT,
            ) => return Ok(None),
            Err(e) => return Err(SpoolError::io("create unnamed file in", &dir)(e.into())),
        };
        let mut f = File::from(fd);
        f.write_all(bytes)
            .map_err(SpoolError::io("write unnamed file in", &dir))?;
        Ok(Some(f))
    }

    /// Names a synced unnamed file (from [`Spool::write_unnamed`]) as `id` in `queue`, unless
    /// a file of that name is there already ([`SpoolError::Exists`]; `linkat` never
    /// replaces). The caller fsyncs the directory.
    pub(crate) fn link_new(&self, f: &File, id: QueueId, queue: Queue) -> Result<(), SpoolError> {
        use std::os::fd::AsRawFd;
        let dest = self.path(queue, id);
        let by_fd = format!("/proc/self/fd/{}", f.as_raw_fd());
        match rustix::fs::linkat(
            rustix::fs::CWD,
            by_fd.as_str(),
            rustix::fs::CWD,
            &dest,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(SpoolError::Exists(id)),
            Err(e) => Err(SpoolError::io("link", &dest)(e.into())),
        }
    }

    /// Renames a synced tmp file into `queue` unless a file of that name is there already
    /// (one `renameat2(RENAME_NOREPLACE)`; a plain existence check and rename where the file
    /// system lacks it). Unlike [`Spool::publish`] it does not look in the other queues: the
    /// caller knows the message is in none (the journal's materializer, which remembers what
    /// an earlier failed try published). The caller fsyncs the directory.
    pub(crate) fn publish_new(
        &self,
        tmp: &Path,
        id: QueueId,
        queue: Queue,
    ) -> Result<(), SpoolError> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        let dest = self.path(queue, id);
        let fail = |e: io::Error| {
            let _ = fs::remove_file(tmp);
            if e.kind() == io::ErrorKind::AlreadyExists {
                SpoolError::Exists(id)
            } else {
                SpoolError::io("rename", &dest)(e)
            }
        };
        match renameat_with(CWD, tmp, CWD, &dest, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                if fs::symlink_metadata(&dest).is_ok() {
                    return Err(fail(io::ErrorKind::AlreadyExists.into()));
                }
                fs::rename(tmp, &dest).map_err(fail)
            }
            Err(e) => Err(fail(e.into())),
        }
    }

    /// fsyncs a queue directory so that renames into or out of it are durable.
    ///
    /// # Errors
    /// [`SpoolError::Io`].
    pub fn sync_dir(&self, queue: Queue) -> Result<(), SpoolError> {
        sync_dir(&queue.dir(&self.root))
    }

    /// Commits one message by itself: tmp file, fsync, rename into `incoming/`, directory fsync.
    /// Returns only when the message is durable.
    ///
    /// # Errors
    /// [`SpoolError`]; nothing is left in `incoming/` on error.
    pub fn commit_direct(&self, file: &QueueFile) -> Result<QueueId, SpoolError> {
        let bytes = self.encode(file)?;
        let id = file.id();
        let (tmp, f) = self.write_tmp_file(id, &bytes, true)?;
        if let Err(e) = f.sync_all() {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolError::io("fsync", &tmp)(e));
        }
        self.publish(&tmp, id, Queue::Incoming)?;
        self.sync_dir(Queue::Incoming)?;
        log_queued(file, bytes.len());
        self.published(id, &bytes);
        Ok(id)
    }

    /// Which queue holds `id`, if any.
    pub fn find(&self, id: QueueId) -> Option<Queue> {
        Queue::MESSAGE_QUEUES
            .into_iter()
            .find(|q| fs::symlink_metadata(self.path(*q, id)).is_ok())
    }

    /// Reads and decodes `id` from `queue`.
    ///
    /// # Errors
    /// [`SpoolError::NotFound`], [`SpoolError::Io`] or [`SpoolError::Corrupt`].
    pub fn read(&self, queue: Queue, id: QueueId) -> Result<QueueFile, SpoolError> {
        let path = self.path(queue, id);
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SpoolError::NotFound(id)
            } else {
                SpoolError::io("read", &path)(e)
            }
        })?;
        let file =
            QueueFile::decode(&bytes).map_err(|reason| SpoolError::Corrupt { id, reason })?;
        if file.id() != id {
            return Err(SpoolError::Corrupt {
                id,
                reason: queue_file::DecodeError::Envelope(format!(
                    "file holds message {}",
                    file.id()
                )),
            });
        }
        Ok(file)
    }

    /// Finds and reads `id` wherever it is.
    ///
    /// # Errors
    /// As [`Spool::read`].
    pub fn load(&self, id: QueueId) -> Result<(Queue, QueueFile), SpoolError> {
        // A message may move between find and read (the server is running); look twice.
        for _ in 0..3 {
            let q = self.find(id).ok_or(SpoolError::NotFound(id))?;
            match self.read(q, id) {
                Err(SpoolError::NotFound(_)) => continue,
                other => return other.map(|f| (q, f)),
            }
        }
        Err(SpoolError::NotFound(id))
    }

    /// Replaces the file of `id` in `queue` atomically (new file, fsync, rename over, fsync the
    /// directory): a crash leaves the old state or the new one.
    ///
    /// # Errors
    /// [`SpoolError`]; the old file is untouched on error.
    pub fn rewrite(&self, queue: Queue, file: &QueueFile) -> Result<(), SpoolError> {
        if fs::symlink_metadata(self.path(queue, file.id())).is_err() {
            return Err(SpoolError::NotFound(file.id()));
        }
        self.replace_file(queue, file, "rw")
    }

    /// Moves `id` from one queue to another (one rename, then both directories fsynced).
    ///
    /// # Errors
    /// [`SpoolError::NotFound`] when it is not in `from`; [`SpoolError::Io`].
    pub fn move_to(&self, id: QueueId, from: Queue, to: Queue) -> Result<(), SpoolError> {
        if fs::symlink_metadata(self.path(to, id)).is_ok() {
            return Err(SpoolError::Exists(id));
        }
        self.claim(id, from, to)?;
        self.sync_dir(to)?;
        self.sync_dir(from)
    }

    /// Removes `id` from `queue` and fsyncs the directory.
    ///
    /// # Errors
    /// [`SpoolError::NotFound`] or [`SpoolError::Io`].
    pub fn remove(&self, queue: Queue, id: QueueId) -> Result<(), SpoolError> {
        self.remove_delivered(queue, id)?;
        self.sync_dir(queue)
    }

    /// Removes a delivered message from `queue` without syncing the directory: a crash may
    /// bring it back (delivered twice), never lose anything.
    ///
    /// # Errors
    /// [`SpoolError::NotFound`] or [`SpoolError::Io`].
    pub fn remove_delivered(&self, queue: Queue, id: QueueId) -> Result<(), SpoolError> {
        let p = self.path(queue, id);
        fs::remove_file(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SpoolError::NotFound(id)
            } else {
                SpoolError::io("unlink", &p)(e)
            }
        })
    }

    /// Renames `id` from one queue to another without syncing directories (claiming a
    /// message for delivery: a crash leaves it in one place or the other, and start-up
    /// recovery returns `active/` to `incoming/`).
    ///
    /// # Errors
    /// [`SpoolError::NotFound`] when it is not in `from`; [`SpoolError::Io`].
    pub fn claim(&self, id: QueueId, from: Queue, to: Queue) -> Result<(), SpoolError> {
        let src = self.path(from, id);
        let dst = self.path(to, id);
        fs::rename(&src, &dst).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SpoolError::NotFound(id)
            } else {
                SpoolError::io("rename", &dst)(e)
            }
        })
    }

    /// Reads the envelope of `id` in `queue` from the head of its file.
    ///
    /// # Errors
    /// [`SpoolError::NotFound`], [`SpoolError::Io`] or [`SpoolError::Corrupt`].
    pub fn peek(&self, queue: Queue, id: QueueId) -> Result<Envelope, SpoolError> {
        use std::io::Read;
        let path = self.path(queue, id);
        let mut f = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SpoolError::NotFound(id)
            } else {
                SpoolError::io("open", &path)(e)
            }
        })?;
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        loop {
            let want = QueueFile::envelope_extent(&buf[..n]).unwrap_or(9);
            if n >= want {
                break;
            }
            if want > buf.len() {
                if want > queue_file::MAX_SECTION {
                    break;
                }
                buf.resize(want, 0);
            }
            let r = f
                .read(&mut buf[n..])
                .map_err(SpoolError::io("read", &path))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        QueueFile::peek_envelope(&buf[..n]).map_err(|reason| SpoolError::Corrupt { id, reason })
    }

    /// The IDs in `queue`, sorted (= arrival order). Names that are not IDs are skipped.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the directory cannot be read.
    pub fn list(&self, queue: Queue) -> Result<Vec<QueueId>, SpoolError> {
        let dir = queue.dir(&self.root);
        let mut ids: Vec<QueueId> = fs::read_dir(&dir)
            .map_err(SpoolError::io("read directory", &dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| QueueId::parse(n).ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }
}

/// fsyncs a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io("fsync directory", dir))
}

/// The Postfix-style log line for a newly committed message.
pub(crate) fn log_queued(file: &QueueFile, size: usize) {
    let e = &file.envelope;
    info!(
        queue_id = %e.id.0,
        "{}: from=<{}>, size={}, nrcpt={} (queue active), origin={:?} {}",
        e.id.0,
        e.sender,
        size,
        e.recipients.len(),
        e.origin.kind,
        e.origin.peer
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            kind: OriginKind::Local,
            peer: "test".into(),
            sender_number: None,
        }
    }

    #[test]
    fn direct_commit_publishes_a_decodable_file_and_leaves_tmp_empty() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let f = spool.new_message(
            "a@b",
            &["1555@sms.localhost".into()],
            b"hi".to_vec(),
            origin(),
            60,
        );
        let id = spool.commit_direct(&f).unwrap();
        assert_eq!(spool.find(id), Some(Queue::Incoming));
        assert_eq!(spool.read(Queue::Incoming, id).unwrap(), f);
        assert!(spool.list(Queue::Tmp).unwrap().is_empty());
    }

    #[test]
    fn oversized_message_is_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1024).unwrap();
        // Beyond the limit and the room kept for our own header lines.
        let big = 1024 + OWN_HEADROOM as usize + 1;
        let f = spool.new_message("", &["x@y".into()], vec![b'a'; big], origin(), 60);
        let e = spool.commit_direct(&f).unwrap_err();
        assert!(matches!(e, SpoolError::TooLarge { .. }));
        assert!(!e.is_temporary());
        assert!(spool.list(Queue::Incoming).unwrap().is_empty());
    }

    #[test]
    fn a_message_at_the_limit_fits_with_our_received_line() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1024).unwrap();
        let mut body =
            b"Received: by mta.test (smsmta) id x; Mon, 1 Dec 2026 00:00:00 +0000\r\n".to_vec();
        body.extend(vec![b'a'; 1024]);
        let f = spool.new_message("", &["x@y".into()], body, origin(), 60);
        assert!(spool.commit_direct(&f).is_ok());
    }

    #[test]
    fn commit_does_not_overwrite_an_existing_id() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let f = spool.new_message("", &["x@y".into()], b"one".to_vec(), origin(), 60);
        spool.commit_direct(&f).unwrap();
        let mut g = f.clone();
        g.message = b"two".to_vec();
        assert!(matches!(
            spool.commit_direct(&g),
            Err(SpoolError::Exists(_))
        ));
        assert_eq!(spool.read(Queue::Incoming, f.id()).unwrap().message, b"one");
        assert!(spool.list(Queue::Tmp).unwrap().is_empty());
    }

    #[test]
    fn disk_error_is_temporary_and_nothing_reaches_incoming() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        // Replace tmp/ with a plain file: every create fails (ENOTDIR), as on a broken disk.
        fs::remove_dir(dir.path().join("tmp")).unwrap();
        fs::write(dir.path().join("tmp"), b"").unwrap();
        let f = spool.new_message("", &["x@y".into()], b"m".to_vec(), origin(), 60);
        let e = spool.commit_direct(&f).unwrap_err();
        assert!(e.is_temporary(), "{e}");
        assert!(spool.list(Queue::Incoming).unwrap().is_empty());
    }

    #[test]
    fn bytes_admitted_between_two_space_checks_count_against_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 4 << 20).unwrap();
        let v = rustix::fs::statvfs(dir.path()).unwrap();
        let avail = v.f_bavail * v.f_frsize;
        // A reserve 4 MiB below what is free now: not low yet.
        spool.set_min_free(avail.saturating_sub(4 << 20));
        assert!(!spool.low_on_space());
        // 1.5 MiB admitted (3 MiB counted, journal and queue file) stays within it...
        let f = spool.new_message("", &["x@y".into()], vec![b'a'; 3 << 19], origin(), 60);
        spool.encode(&f).unwrap();
        assert!(!spool.low_on_space());
        // ...another 1.5 MiB does not, though the file system was not looked at again.
        spool.encode(&f).unwrap();
        assert!(spool.low_on_space());
    }

    #[test]
    fn rewrite_replaces_state_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let mut f = spool.new_message("", &["x@y".into()], b"m".to_vec(), origin(), 60);
        spool.commit_direct(&f).unwrap();
        f.envelope.recipients[0].state = RcptState::Delivered;
        f.envelope.recipients[0].attempts = 1;
        spool.rewrite(Queue::Incoming, &f).unwrap();
        assert_eq!(spool.read(Queue::Incoming, f.id()).unwrap(), f);
        assert!(
            fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn move_to_changes_the_queue_and_keeps_one_copy() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let f = spool.new_message("", &["x@y".into()], b"m".to_vec(), origin(), 60);
        let id = spool.commit_direct(&f).unwrap();
        spool.move_to(id, Queue::Incoming, Queue::Hold).unwrap();
        assert_eq!(spool.find(id), Some(Queue::Hold));
        assert!(spool.list(Queue::Incoming).unwrap().is_empty());
        assert!(matches!(
            spool.move_to(id, Queue::Incoming, Queue::Hold),
            Err(SpoolError::Exists(_)) | Err(SpoolError::NotFound(_))
        ));
    }
}
