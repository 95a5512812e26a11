//! Queue IDs: unique, sortable by arrival, safe as file names, never reused.
//!
//! An ID is 20 characters from `[0-9A-F]`: 14 hexadecimal digits of the arrival time in
//! microseconds since the Unix epoch (good until the year 10,000), followed by 6 hexadecimal
//! digits that keep IDs from different processes apart (a per-process random tag, mixed with a
//! sequence counter). Lexical order is arrival order, to the microsecond.
//!
//! **Uniqueness.** Within a process the generator never issues the same microsecond twice: when
//! the clock has not moved on (or went backwards) it uses the last value plus one. Between
//! processes (the server and `smsmta inject` at the same time, or a restart after the clock was
//! set back) the random tag separates them, and the spool's publish step refuses to overwrite an
//! existing file, so a collision is an error, never a lost message.
//!
//! **Trust.** [`QueueId::parse`] takes untrusted text (command-line arguments, directory
//! entries) and accepts only the exact shape above, so an ID can never name a path outside
//! its queue directory.
//!
//! Standards: none; the shape follows Postfix's long queue IDs (time first, then a
//! uniqueness suffix), in hexadecimal so that every file system sorts it the same way.

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Number of characters in a queue ID.
pub const LEN: usize = 20;
const TIME_DIGITS: usize = 14;

/// A validated queue ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId([u8; LEN]);

/// Why a string is not a queue ID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The text is not exactly [`LEN`] characters long.
    #[error("queue id must be {LEN} characters, got {0}")]
    Length(usize),
    /// The text holds a character outside `[0-9A-F]`.
    #[error("queue id may hold only 0-9 and A-F")]
    Character,
}

impl QueueId {
    /// Parses an ID, accepting only the canonical shape (upper-case hexadecimal, [`LEN`] long).
    ///
    /// # Errors
    /// [`ParseIdError`] when the length or a character is wrong.
    pub fn parse(s: &str) -> Result<Self, ParseIdError> {
        let b = s.as_bytes();
        if b.len() != LEN {
            return Err(ParseIdError::Length(b.len()));
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
        {
            return Err(ParseIdError::Character);
        }
        let mut out = [0u8; LEN];
        out.copy_from_slice(b);
        Ok(QueueId(out))
    }

    /// Builds an ID from its two parts (microseconds since the epoch, uniqueness suffix).
    /// Parts are truncated to their widths.
    pub fn from_parts(micros: u64, suffix: u32) -> Self {
        let s = format!(
            "{:014X}{:06X}",
            micros & 0x00FF_FFFF_FFFF_FFFF,
            suffix & 0x00FF_FFFF
        );
        let mut out = [b'0'; LEN];
        out.copy_from_slice(&s.as_bytes()[..LEN]);
        QueueId(out)
    }

    /// The arrival time encoded in the ID, in microseconds since the Unix epoch.
    pub fn micros(&self) -> u64 {
        self.as_str()
            .get(..TIME_DIGITS)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({})", self.as_str())
    }
}

impl std::str::FromStr for QueueId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueId::parse(s)
    }
}

/// Issues queue IDs for one process.
#[derive(Debug)]
pub struct IdGenerator {
    state: Mutex<GenState>,
}

#[derive(Debug)]
struct GenState {
    last_micros: u64,
    tag: u32,
    seq: u32,
}

impl IdGenerator {
    /// A generator with a fresh per-process tag.
    pub fn new() -> Self {
        Self::with_tag(process_tag())
    }

    /// A generator with a given tag (tests).
    pub fn with_tag(tag: u32) -> Self {
        IdGenerator {
            state: Mutex::new(GenState {
                last_micros: 0,
                tag: tag & 0x00FF_FFFF,
                seq: 0,
            }),
        }
    }

    /// The next ID: strictly greater than every ID this generator issued before.
    pub fn next_id(&self) -> QueueId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let micros = if now > st.last_micros {
            now
        } else {
            st.last_micros + 1
        };
        st.last_micros = micros;
        st.seq = st.seq.wrapping_add(1);
        // The tag keeps processes apart; the low bits of the sequence make two IDs of this
        // process differ in the suffix as well, which helps when reading logs.
        let suffix = st.tag ^ (st.seq & 0xF);
        QueueId::from_parts(micros, suffix)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// A 24-bit tag that differs between processes: the pid mixed with the start time and the
/// address of a stack value (randomised by ASLR). Not cryptographic; it only has to make two
/// processes that start in the same microsecond unlikely to collide.
fn process_tag() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let local = 0u8;
    let addr = std::ptr::addr_of!(local) as usize as u64;
    let mut x = u64::from(std::process::id()) ^ (u64::from(nanos) << 20) ^ addr.rotate_left(17);
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x as u32) & 0x00FF_FFF0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_from_one_generator_strictly_increase() {
        let g = IdGenerator::with_tag(0x123450);
        let mut last = g.next_id();
        for _ in 0..10_000 {
            let id = g.next_id();
            assert!(id > last, "{id} <= {last}");
            last = id;
        }
    }

    #[test]
    fn id_is_twenty_upper_hex_characters() {
        let id = IdGenerator::new().next_id();
        assert_eq!(id.as_str().len(), LEN);
        assert!(QueueId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn parse_rejects_paths_and_lower_case() {
        assert_eq!(
            QueueId::parse("../../etc/passwd"),
            Err(ParseIdError::Length(16))
        );
        assert_eq!(
            QueueId::parse("0000000000000a000000"),
            Err(ParseIdError::Character)
        );
        assert_eq!(
            QueueId::parse("00000000000000/00000"),
            Err(ParseIdError::Character)
        );
    }

    #[test]
    fn micros_round_trip() {
        let id = QueueId::from_parts(1_764_000_000_123_456, 0xABCDEF);
        assert_eq!(id.micros(), 1_764_000_000_123_456);
        assert_eq!(id.as_str(), "06445941642240ABCDEF");
    }

    proptest! {
        #[test]
        fn parse_of_display_is_identity(micros in 0u64..(1u64 << 56), suffix in 0u32..(1 << 24)) {
            let id = QueueId::from_parts(micros, suffix);
            prop_assert_eq!(QueueId::parse(&id.to_string()), Ok(id));
            prop_assert_eq!(id.micros(), micros);
        }

        #[test]
        fn order_of_ids_is_order_of_time(a in 0u64..(1u64 << 56), b in 0u64..(1u64 << 56), sa in 0u32..(1 << 24), sb in 0u32..(1 << 24)) {
            prop_assume!(a != b);
            let (ia, ib) = (QueueId::from_parts(a, sa), QueueId::from_parts(b, sb));
            prop_assert_eq!(ia < ib, a < b);
            prop_assert_eq!(ia.as_str() < ib.as_str(), a < b);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = QueueId::parse(&s);
        }
    }
}
