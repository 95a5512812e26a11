//! Journal records: `"SMJ1" | payload length (u32 BE) | CRC-32 of id+payload (u32 BE) | queue
//! ID (20 octets) | payload (an encoded queue file)`. Pure.
//!
//! **Trust.** [`parse_records`] reads bytes from disk that a crash may have torn: a record
//! that fails its length or checksum is skipped, and parsing resynchronises on the next magic
//! so that one damaged record does not hide later ones. Never panics.

use super::*;

pub(super) const REC_MAGIC: &[u8; 4] = b"SMJ1";

pub(super) const REC_HEAD: usize = 4 + 4 + 4 + crate::spool::queue_id::LEN;

pub(super) fn encode_record(out: &mut Vec<u8>, id: QueueId, payload: &[u8]) {
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
pub(super) fn parse_records(buf: &[u8], mut pos: usize) -> (Vec<(QueueId, &[u8])>, usize) {
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

pub(super) fn parse_one(buf: &[u8], pos: usize) -> Option<(QueueId, &[u8], usize)> {
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
