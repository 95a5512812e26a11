//! Journal segment files (`journal/<seq>.wal`, appended with `fdatasync`, grown in zero-filled
//! steps) and the checkpoint (`journal/checkpoint`: how far the journal is materialized).
//!
//! **Trust.** The checkpoint is read back with a checksum; a damaged one reads as (0, 0), which
//! makes replay look at everything.

use super::*;

pub(super) const CHECKPOINT: &str = "checkpoint";

/// One journal segment being appended to.
pub(super) struct Segment {
    pub(super) seq: u64,
    pub(super) file: File,
    /// End of the records.
    pub(super) len: u64,
    /// End of the file: records, then zeros written ahead (see [`Segment::append`]).
    pub(super) zeroed: u64,
    pub(super) path: PathBuf,
}

/// The journal file grows in zero-filled steps of this size.
pub(super) const ZERO_AHEAD: u64 = 1 << 20;

pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016X}.wal"))
}

/// Opens `path` for reading and writing, creating it (mode 0600) but never truncating it.
fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

impl Segment {
    pub(super) fn create(dir: &Path, seq: u64) -> Result<Segment, SpoolError> {
        let path = segment_path(dir, seq);
        // Not create_new: a segment left by a crash with this number was replayed and removed
        // already; opening without truncation also lets tests substitute a failing device.
        let file = open_rw(&path).map_err(SpoolError::io("create journal segment", &path))?;
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
    pub(super) fn append(&mut self, buf: &[u8]) -> io::Result<()> {
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
    pub(super) fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.zeroed = len;
        self.file.set_len(len)?;
        self.file.sync_data()
    }
}

/// `journal/checkpoint`: the segment and offset up to which every record is materialized.
/// Decodes the checkpoint record `segment (u64 BE) | offset (u64 BE) | CRC-32 of both`;
/// (0, 0) when short or damaged.
pub(super) fn parse_checkpoint(b: &[u8]) -> (u64, u64) {
    let (Some(seg), Some(off), Some(crc)) = (b.get(..8), b.get(8..16), b.get(16..20)) else {
        return (0, 0);
    };
    let be = |x: &[u8]| x.iter().fold(0u64, |a, d| a << 8 | u64::from(*d));
    if be(crc) != u64::from(crc32fast::hash(&b[..16])) {
        return (0, 0);
    }
    (be(seg), be(off))
}

pub(super) struct Checkpoint {
    pub(super) file: File,
    pub(super) path: PathBuf,
}

impl Checkpoint {
    pub(super) fn open(dir: &Path) -> Result<Checkpoint, SpoolError> {
        let path = dir.join(CHECKPOINT);
        let existed = path.exists();
        let file = open_rw(&path).map_err(SpoolError::io("open", &path))?;
        if !existed {
            sync_dir(dir)?;
        }
        Ok(Checkpoint { file, path })
    }

    /// (segment, offset); (0, 0) when absent or damaged, which makes replay look at everything.
    pub(super) fn read(&self) -> (u64, u64) {
        let mut b = [0u8; 20];
        if self.file.read_exact_at(&mut b, 0).is_err() {
            return (0, 0);
        }
        parse_checkpoint(&b)
    }

    /// Overwrites the 20-byte record in place (within one sector) and syncs it.
    pub(super) fn write(&self, seq: u64, offset: u64) -> Result<(), SpoolError> {
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

/// The journal's segments, oldest first.
pub(super) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
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
