//! Concatenation: splitting text into SMS segments, and reassembling received parts.
//!
//! Pure. Splitting picks GSM 7-bit when every character fits and UCS-2 otherwise, with the
//! limits of TS 23.040 (single: 160 septets / 70 UTF-16 units / 140 octets; with an 8-bit
//! reference header: 153 / 67 / 134; with a 16-bit reference: 152 / 66 / 133). An escape pair
//! (extension characters) and a surrogate pair are never split. Beyond `max_segments` the text
//! is cut and the cut is marked ("..." in GSM 7-bit, "…" in UCS-2).
//!
//! Reassembly ([`Partial`]) takes parts in any order, ignores duplicates and parts that do not
//! belong, and joins the raw units of neighbouring parts before decoding them. It is
//! serialisable so that the SIP side can keep it on disk until every part has arrived.
//!
//! Standards: 3GPP TS 23.040 9.2.3.24.1 (concatenation), TS 23.038 6.1.2.1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::address::Address;
use super::tpdu::{Alphabet, Body, Deliver, Timestamp, UserData};
use super::udh::Concat;
use super::{SmsError, gsm7, ucs2};

/// Marks a cut in GSM 7-bit text.
pub const CUT_MARK_GSM7: &str = "...";
/// Marks a cut in UCS-2 text.
pub const CUT_MARK_UCS2: &str = "…";

/// How to split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Most segments per message (1..=255); the text is cut beyond them.
    pub max_segments: u8,
    /// Use the 16-bit reference element (IEI 0x08) instead of the 8-bit one.
    pub wide_reference: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            max_segments: 10,
            wide_reference: false,
        }
    }
}

/// The result of splitting a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// The alphabet of every part.
    pub alphabet: Alphabet,
    /// The parts, in order.
    pub parts: Vec<Body>,
    /// Whether the text was cut at `max_segments`.
    pub truncated: bool,
}

/// Capacity of one part in units (septets or UTF-16 units).
pub fn capacity(alphabet: Alphabet, concatenated: bool, wide: bool) -> usize {
    match (alphabet, concatenated, wide) {
        (Alphabet::Gsm7, false, _) => 160,
        (Alphabet::Gsm7, true, false) => 153,
        (Alphabet::Gsm7, true, true) => 152,
        (Alphabet::Ucs2, false, _) => 70,
        (Alphabet::Ucs2, true, false) => 67,
        (Alphabet::Ucs2, true, true) => 66,
        (Alphabet::EightBit, false, _) => 140,
        (Alphabet::EightBit, true, false) => 134,
        (Alphabet::EightBit, true, true) => 133,
    }
}

fn cost(alphabet: Alphabet, c: char) -> usize {
    match alphabet {
        Alphabet::Gsm7 => gsm7::char_cost(c).unwrap_or(1),
        _ => c.len_utf16(),
    }
}

fn body(alphabet: Alphabet, s: &str) -> Body {
    match alphabet {
        Alphabet::Gsm7 => Body::Gsm7(gsm7::encode(s).unwrap_or_default()),
        _ => Body::Ucs2(ucs2::encode(s)),
    }
}

/// Splits `chars` greedily into runs of at most `limit` units; returns the char index ranges.
fn fill(chars: &[(char, usize)], limit: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, (_, c)) in chars.iter().enumerate() {
        if used + c > limit {
            out.push((start, i));
            start = i;
            used = 0;
        }
        used += c;
    }
    if start < chars.len() || out.is_empty() {
        out.push((start, chars.len()));
    }
    out
}

/// Splits `text` into segments (see the module docs).
pub fn segment(text: &str, opts: &SegmentOptions) -> Segments {
    let alphabet = if gsm7::is_gsm7(text) {
        Alphabet::Gsm7
    } else {
        Alphabet::Ucs2
    };
    let chars: Vec<(char, usize)> = text.chars().map(|c| (c, cost(alphabet, c))).collect();
    let total: usize = chars.iter().map(|(_, c)| c).sum();
    let single = capacity(alphabet, false, opts.wide_reference);
    let slice = |(a, b): (usize, usize)| -> String { chars[a..b].iter().map(|(c, _)| c).collect() };
    if total <= single {
        return Segments {
            alphabet,
            parts: vec![body(alphabet, text)],
            truncated: false,
        };
    }
    let max = usize::from(opts.max_segments.max(1));
    let mark = if alphabet == Alphabet::Gsm7 {
        CUT_MARK_GSM7
    } else {
        CUT_MARK_UCS2
    };
    let mark_cost: usize = mark.chars().map(|c| cost(alphabet, c)).sum();
    let limit = if max == 1 {
        single
    } else {
        capacity(alphabet, true, opts.wide_reference)
    };
    let ranges = fill(&chars, limit);
    if ranges.len() <= max {
        return Segments {
            alphabet,
            parts: ranges
                .into_iter()
                .map(|r| body(alphabet, &slice(r)))
                .collect(),
            truncated: false,
        };
    }
    // Cut: keep max-1 full parts, then as much as fits before the mark in the last one.
    let mut parts: Vec<Body> = ranges[..max - 1]
        .iter()
        .map(|r| body(alphabet, &slice(*r)))
        .collect();
    let start = ranges[max - 1].0;
    let mut end = start;
    let mut used = 0;
    while end < chars.len() && used + chars[end].1 + mark_cost <= limit {
        used += chars[end].1;
        end += 1;
    }
    let mut last = slice((start, end));
    last.push_str(mark);
    parts.push(body(alphabet, &last));
    Segments {
        alphabet,
        parts,
        truncated: true,
    }
}

/// The user data of each segment, with concatenation headers when there is more than one.
pub fn user_data(segments: &Segments, reference: u16, wide: bool) -> Vec<UserData> {
    let total = segments.parts.len();
    segments
        .parts
        .iter()
        .enumerate()
        .map(|(i, b)| UserData {
            header: if total > 1 {
                vec![
                    Concat {
                        reference: if wide { reference } else { reference & 0xFF },
                        total: total as u8,
                        seq: (i + 1) as u8,
                        wide,
                    }
                    .to_element(),
                ]
            } else {
                Vec::new()
            },
            body: b.clone(),
        })
        .collect()
}

/// Splits `text` and encodes each segment as an SMS-DELIVER TPDU from `originator`. Every part
/// but the last says more messages are waiting (TP-MMS), so the handset keeps the link up.
///
/// # Errors
/// [`SmsError`] when the originator cannot be encoded.
pub fn deliver_tpdus(
    text: &str,
    originator: &Address,
    scts: Timestamp,
    reference: u16,
    opts: &SegmentOptions,
) -> Result<Vec<Vec<u8>>, SmsError> {
    let segs = segment(text, opts);
    let uds = user_data(&segs, reference, opts.wide_reference);
    let n = uds.len();
    uds.into_iter()
        .enumerate()
        .map(|(i, ud)| {
            let mut d = Deliver::new(originator.clone(), scts, ud);
            d.more_messages = i + 1 < n;
            d.encode()
        })
        .collect()
}

/// What [`Partial::add`] did with a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new part was stored.
    New,
    /// This part was already there; ignored.
    Duplicate,
    /// The part does not belong (other reference or total, bad sequence number); ignored.
    Mismatch,
}

/// The parts received so far of one concatenated message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The concatenation reference.
    pub reference: u16,
    /// How many parts there are.
    pub total: u8,
    /// The parts received, by sequence number.
    pub parts: BTreeMap<u8, Body>,
}

impl Partial {
    /// An empty reassembly for the message that `first` belongs to.
    pub fn new(first: &Concat) -> Partial {
        Partial {
            reference: first.reference,
            total: first.total,
            parts: BTreeMap::new(),
        }
    }

    /// Adds a part.
    pub fn add(&mut self, c: &Concat, body: Body) -> Added {
        if c.reference != self.reference
            || c.total != self.total
            || c.seq == 0
            || c.seq > self.total
        {
            return Added::Mismatch;
        }
        if self.parts.contains_key(&c.seq) {
            return Added::Duplicate;
        }
        self.parts.insert(c.seq, body);
        Added::New
    }

    /// Whether every part has arrived.
    pub fn is_complete(&self) -> bool {
        self.parts.len() == usize::from(self.total)
    }

    /// The sequence numbers still missing.
    pub fn missing(&self) -> Vec<u8> {
        (1..=self.total)
            .filter(|s| !self.parts.contains_key(s))
            .collect()
    }

    /// The text: neighbouring parts of one alphabet are joined before decoding; each run of
    /// missing parts is replaced by `gap_mark`.
    pub fn text(&self, gap_mark: &str) -> String {
        let mut out = String::new();
        let mut run: Option<Body> = None;
        let flush = |run: &mut Option<Body>, out: &mut String| {
            if let Some(b) = run.take() {
                out.push_str(&b.text());
            }
        };
        let mut in_gap = false;
        for seq in 1..=self.total {
            match self.parts.get(&seq) {
                Some(b) => {
                    in_gap = false;
                    match (&mut run, b) {
                        (Some(Body::Gsm7(acc)), Body::Gsm7(s))
                        | (Some(Body::Ucs2(acc)), Body::Ucs2(s))
                        | (Some(Body::Data(acc)), Body::Data(s)) => acc.extend_from_slice(s),
                        _ => {
                            flush(&mut run, &mut out);
                            run = Some(b.clone());
                        }
                    }
                }
                None => {
                    flush(&mut run, &mut out);
                    if !in_gap {
                        out.push_str(gap_mark);
                        in_gap = true;
                    }
                }
            }
        }
        flush(&mut run, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(text: &str) -> usize {
        segment(
            text,
            &SegmentOptions {
                max_segments: 255,
                wide_reference: false,
            },
        )
        .parts
        .len()
    }

    #[test]
    fn gsm7_segment_counts_from_python_messaging() {
        let a = |n| "a".repeat(n);
        assert_eq!(parts(&a(160)), 1);
        assert_eq!(parts(&a(161)), 2);
        assert_eq!(parts(&a(306)), 2);
        assert_eq!(parts(&a(307)), 3);
        assert_eq!(parts(&a(459)), 3);
        assert_eq!(parts(&a(460)), 4);
    }

    #[test]
    fn escape_pairs_count_two_and_are_never_split() {
        let e = |n| "€".repeat(n);
        assert_eq!(parts(&e(80)), 1);
        assert_eq!(parts(&format!("{}a", e(79))), 1);
        assert_eq!(parts(&e(153)), 3);
        assert_eq!(parts(&format!("{}a", e(229))), 4);
        for p in segment(&e(153), &SegmentOptions::default()).parts {
            let Body::Gsm7(s) = p else { panic!() };
            assert_ne!(s.last(), Some(&gsm7::ESC));
        }
    }

    #[test]
    fn ucs2_segment_counts() {
        let u = |n| "ж".repeat(n);
        assert_eq!(parts(&u(70)), 1);
        assert_eq!(parts(&u(71)), 2);
        assert_eq!(parts(&u(134)), 2);
        assert_eq!(parts(&u(135)), 3);
        assert_eq!(parts(&u(201)), 3);
        assert_eq!(parts(&u(202)), 4);
        // 300 UCS-2 characters: 67 per part -> 5 parts.
        assert_eq!(parts(&u(300)), 5);
    }

    #[test]
    fn surrogate_pairs_stay_together() {
        let text = format!("{}{}", "ж".repeat(66), "🙂".repeat(3));
        for p in segment(&text, &SegmentOptions::default()).parts {
            let Body::Ucs2(o) = p else { panic!() };
            assert!(!ucs2::decode(&o).contains('\u{FFFD}'));
        }
    }

    #[test]
    fn text_beyond_max_segments_is_cut_and_marked() {
        let opts = SegmentOptions {
            max_segments: 2,
            wide_reference: false,
        };
        let s = segment(&"b".repeat(400), &opts);
        assert!(s.truncated);
        assert_eq!(s.parts.len(), 2);
        let last = s.parts[1].text();
        assert!(last.ends_with("..."));
        assert_eq!(s.parts[1].len(), 153);
        let one = segment(
            &"ж".repeat(100),
            &SegmentOptions {
                max_segments: 1,
                wide_reference: false,
            },
        );
        assert_eq!(one.parts.len(), 1);
        assert_eq!(one.parts[0].text().chars().count(), 70);
        assert!(one.parts[0].text().ends_with('…'));
    }

    #[test]
    fn sixteen_bit_reference_leaves_one_unit_less() {
        let opts = SegmentOptions {
            max_segments: 255,
            wide_reference: true,
        };
        assert_eq!(segment(&"a".repeat(304), &opts).parts.len(), 2);
        assert_eq!(segment(&"a".repeat(305), &opts).parts.len(), 3);
    }

    #[test]
    fn reassembly_in_any_order_with_duplicates_and_gaps() {
        let text = "x".repeat(400);
        let segs = segment(&text, &SegmentOptions::default());
        let uds = user_data(&segs, 0x42, false);
        let c0 = uds[0].concat().unwrap();
        let mut p = Partial::new(&c0);
        for i in [2usize, 0, 2] {
            p.add(&uds[i].concat().unwrap(), uds[i].body.clone());
        }
        assert!(!p.is_complete());
        assert_eq!(p.missing(), vec![2]);
        assert_eq!(
            p.text("[...]"),
            format!("{}[...]{}", "x".repeat(153), "x".repeat(94))
        );
        assert_eq!(
            p.add(&uds[1].concat().unwrap(), uds[1].body.clone()),
            Added::New
        );
        assert_eq!(
            p.add(&uds[1].concat().unwrap(), uds[1].body.clone()),
            Added::Duplicate
        );
        let stranger = Concat {
            reference: 7,
            total: 3,
            seq: 1,
            wide: false,
        };
        assert_eq!(p.add(&stranger, Body::Gsm7(vec![])), Added::Mismatch);
        assert!(p.is_complete());
        assert_eq!(p.text(""), text);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Partial>(&json).unwrap(), p);
    }

    proptest! {
        #[test]
        fn segment_encode_decode_reassemble_returns_the_text(text in "\\PC{0,700}", wide in any::<bool>(), reference in any::<u16>()) {
            let opts = SegmentOptions { max_segments: 255, wide_reference: wide };
            let pdus = deliver_tpdus(&text, &Address::parse("+15551234567"), Timestamp::from_unix(1_764_000_000, 4), reference, &opts).unwrap();
            let decoded: Vec<Deliver> = pdus.iter().map(|p| Deliver::decode(p).unwrap()).collect();
            if decoded.len() == 1 {
                prop_assert!(decoded[0].user_data.concat().is_none());
                prop_assert_eq!(decoded[0].user_data.body.text(), text);
            } else {
                let first = decoded[0].user_data.concat().unwrap();
                let mut p = Partial::new(&first);
                // Reverse order, to show order does not matter.
                for d in decoded.iter().rev() {
                    prop_assert_eq!(p.add(&d.user_data.concat().unwrap(), d.user_data.body.clone()), Added::New);
                }
                prop_assert!(p.is_complete());
                prop_assert_eq!(p.text(""), text);
            }
        }

        #[test]
        fn segment_counts_follow_the_limits(text in "\\PC{0,900}") {
            let s = segment(&text, &SegmentOptions { max_segments: 255, wide_reference: false });
            let units: usize = match s.alphabet {
                Alphabet::Gsm7 => gsm7::encode(&text).unwrap().len(),
                _ => text.encode_utf16().count(),
            };
            let (single, multi) = match s.alphabet { Alphabet::Gsm7 => (160, 153), _ => (70, 67) };
            if units <= single {
                prop_assert_eq!(s.parts.len(), 1);
            } else {
                // At least ceil(units/multi), at most one more per part for pairs kept whole.
                prop_assert!(s.parts.len() >= units.div_ceil(multi));
                let octets_per_unit = if s.alphabet == Alphabet::Gsm7 { 1 } else { 2 };
                for p in &s.parts { prop_assert!(p.len() <= multi * octets_per_unit); }
            }
        }

        #[test]
        fn max_segments_is_respected(text in "\\PC{0,1200}", max in 1u8..6) {
            let s = segment(&text, &SegmentOptions { max_segments: max, wide_reference: false });
            prop_assert!(s.parts.len() <= usize::from(max));
            let joined: String = s.parts.iter().map(Body::text).collect();
            if !s.truncated { prop_assert_eq!(joined, text); }
        }
    }
}
