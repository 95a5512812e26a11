//! smsmta as an ESME, the pure part: the submit_sm for a text (one or several parts, as the
//! upstream wants long texts), the parts and receipts in a deliver_sm from an SMSC, and the
//! pace of submissions (a throughput cap that halves while the SMSC throttles).
//!
//! **Trust.** Everything read here comes from an upstream SMSC, which is a peer like any
//! other: a receipt's text is parsed field by field within its length, a UDH within the
//! short_message, a SAR TLV by its exact length; what does not parse is `None`, never a panic.
//!
//! Standards: SMPP 3.4 (4.4 submit_sm, 4.6 deliver_sm, 5.2.12 esm_class, 5.3.2.22-24 sar_*,
//! 5.3.2.32 message_payload, Appendix B receipt text), SMPP 5.0 (receipted_message_id,
//! message_state), TS 23.040 9.2.3.24.1 (concatenation UDH).

use std::time::{Duration, Instant};

use super::pdu::{Address, Sm, max, tag};
use crate::config::LongTexts;
use crate::sms::segment::{self, SegmentOptions};
use crate::sms::tpdu::{Alphabet, Body};
use crate::sms::udh::{self, Concat};

/// esm_class bit: a UDH leads short_message.
pub const UDHI: u8 = 0x40;

/// The address of `a` as an SMSC expects it: an international number (TON 1, NPI 1) when it
/// is all digits, else alphanumeric (TON 5).
pub fn address(a: &str) -> Address {
    let digits = a.trim_start_matches('+');
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Address {
            ton: 1,
            npi: 1,
            addr: digits.to_string(),
        }
    } else {
        Address {
            ton: 5,
            npi: 0,
            addr: a.chars().take(max::ADDR - 1).collect(),
        }
    }
}

fn coding(alphabet: Alphabet) -> u8 {
    match alphabet {
        Alphabet::Gsm7 => 0x00,
        Alphabet::Ucs2 => 0x08,
        Alphabet::EightBit => 0x04,
    }
}

fn octets(body: &Body) -> &[u8] {
    match body {
        Body::Gsm7(o) | Body::Ucs2(o) | Body::Data(o) => o,
    }
}

/// The submit_sm PDUs for `text` from `source` to `dest`: GSM 03.38 (unpacked) when the
/// alphabet holds it, else UCS-2; a text longer than one SMS as `mode` says, with concatenation
/// reference `reference`. `receipt` asks the SMSC for a delivery receipt (registered_delivery
/// 1) on every part.
pub fn submits(
    source: &str,
    dest: &str,
    text: &str,
    mode: LongTexts,
    reference: u8,
    receipt: bool,
) -> Vec<Sm> {
    let base = Sm {
        source: address(source),
        dest: address(dest),
        registered_delivery: u8::from(receipt),
        ..Sm::default()
    };
    let segments = segment::segment(
        text,
        &SegmentOptions {
            max_segments: 10,
            wide_reference: false,
        },
    );
    let data_coding = coding(segments.alphabet);
    let total = segments.parts.len();
    if total == 1 || mode == LongTexts::Payload {
        let all: Vec<u8> = segments
            .parts
            .iter()
            .flat_map(|b| octets(b).iter().copied())
            .collect();
        let (short_message, tlvs) = if total == 1 {
            (all, Vec::new())
        } else {
            (Vec::new(), vec![(tag::MESSAGE_PAYLOAD, all)])
        };
        return vec![Sm {
            data_coding,
            short_message,
            tlvs,
            ..base
        }];
    }
    let total = u8::try_from(total).unwrap_or(u8::MAX);
    segments
        .parts
        .iter()
        .zip(1u8..)
        .map(|(body, seq)| {
            let mut sm = Sm {
                data_coding,
                ..base.clone()
            };
            match mode {
                LongTexts::Udh => {
                    let c = Concat {
                        reference: u16::from(reference),
                        total,
                        seq,
                        wide: false,
                    };
                    let header = udh::build(&[c.to_element()]);
                    sm.esm_class = UDHI;
                    sm.short_message = header;
                    sm.short_message.extend_from_slice(octets(body));
                }
                LongTexts::Sar | LongTexts::Payload => {
                    sm.short_message = octets(body).to_vec();
                    sm.tlvs = vec![
                        (
                            tag::SAR_MSG_REF_NUM,
                            u16::from(reference).to_be_bytes().to_vec(),
                        ),
                        (tag::SAR_TOTAL_SEGMENTS, vec![total]),
                        (tag::SAR_SEGMENT_SEQNUM, vec![seq]),
                    ];
                }
            }
            sm
        })
        .collect()
}

/// The body of a deliver_sm as raw units in its alphabet, and its concatenation facts when it
/// is one part of several (UDH with esm_class 0x40, or the sar_* TLVs). `None`: a binary or
/// unknown coding, or a UDH that does not parse.
pub fn part(sm: &Sm) -> Option<(Option<Concat>, Body)> {
    let payload = sm.payload();
    let (concat, data) = if sm.esm_class & UDHI != 0 {
        let (&len, rest) = payload.split_first()?;
        let header = rest.get(..usize::from(len))?;
        let data = rest.get(usize::from(len)..)?;
        (udh::concat(&udh::parse(header).ok()?), data)
    } else {
        (sar(sm), payload)
    };
    let body = match sm.data_coding {
        0x08 => Body::Ucs2(data.to_vec()),
        0x00 => Body::Gsm7(
            data.iter()
                .map(|b| if *b < 0x80 { *b } else { 0x3F })
                .collect(),
        ),
        d if d & 0xF4 == 0xF0 => Body::Gsm7(
            data.iter()
                .map(|b| if *b < 0x80 { *b } else { 0x3F })
                .collect(),
        ),
        d => {
            return super::text::decode(d, data)
                .ok()
                .map(|t| (concat, latin(&t)));
        }
    };
    Some((concat, body))
}

/// A text read in another coding, kept as UCS-2 units (so that parts still join).
fn latin(t: &str) -> Body {
    Body::Ucs2(crate::sms::ucs2::encode(t))
}

fn sar(sm: &Sm) -> Option<Concat> {
    let reference = match sm.tlv(tag::SAR_MSG_REF_NUM)? {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]),
        _ => return None,
    };
    let total = *sm.tlv(tag::SAR_TOTAL_SEGMENTS)?.first()?;
    let seq = *sm.tlv(tag::SAR_SEGMENT_SEQNUM)?.first()?;
    (total >= 1 && seq >= 1 && seq <= total).then_some(Concat {
        reference,
        total,
        seq,
        wide: true,
    })
}

/// What a receipt says became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to the handset (DELIVRD, message_state 2).
    Delivered,
    /// Expired in the SMSC (EXPIRED, 3).
    Expired,
    /// Failed for good (UNDELIV, REJECTD, DELETED: 5, 8, 4).
    Failed,
    /// Still on its way (ENROUTE, ACCEPTD, UNKNOWN): not final.
    Pending,
}

/// A delivery receipt from an SMSC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The SMSC's message_id of the message it is about.
    pub id: String,
    /// What became of it.
    pub fate: Fate,
    /// The stat: word (or the message_state) as the SMSC wrote it, for the log.
    pub stat: String,
}

/// The receipt in `sm`, when it is one (esm_class message type 0x04 or 0x08). The TLVs
/// receipted_message_id and message_state win over the Appendix B text, which is read when
/// they are absent.
pub fn receipt(sm: &Sm) -> Option<Receipt> {
    if sm.esm_class & 0x3C != 0x04 && sm.esm_class & 0x3C != 0x08 {
        return None;
    }
    let text = String::from_utf8_lossy(sm.payload());
    let field = |name: &str| -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let at = lower.find(&format!("{name}:"))? + name.len() + 1;
        let rest = text.get(at..)?;
        Some(rest.split_whitespace().next().unwrap_or("").to_string())
    };
    let id = sm
        .tlv(tag::RECEIPTED_MESSAGE_ID)
        .map(|v| String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| field("id"))
        .filter(|s| !s.is_empty() && s.len() < max::MESSAGE_ID)?;
    let (fate, stat) = match sm.tlv(tag::MESSAGE_STATE) {
        Some([state]) => (state_fate(*state), format!("message_state={state}")),
        _ => {
            let stat = field("stat").unwrap_or_default();
            (stat_fate(&stat), stat)
        }
    };
    Some(Receipt { id, fate, stat })
}

fn state_fate(state: u8) -> Fate {
    match state {
        2 => Fate::Delivered,
        3 => Fate::Expired,
        4 | 5 | 8 => Fate::Failed,
        _ => Fate::Pending,
    }
}

fn stat_fate(stat: &str) -> Fate {
    match stat.to_ascii_uppercase().as_str() {
        "DELIVRD" | "DELIVERED" => Fate::Delivered,
        "EXPIRED" => Fate::Expired,
        "UNDELIV" | "REJECTD" | "DELETED" | "UNDELIVERABLE" | "REJECTED" => Fate::Failed,
        _ => Fate::Pending,
    }
}

/// The pace of submissions to one upstream: at most `cap` a second (0: none); an
/// ESME_RTHROTTLED halves the cap in use (to 1 a second at the least) and a quiet second
/// raises it back by a tenth of the configured cap, so that smsmta backs off as the SMSC asks
/// and recovers without hammering it.
#[derive(Debug, Clone)]
pub struct Pace {
    configured: u32,
    current: f64,
    /// When the next submission may go.
    next: Option<Instant>,
    /// The last throttle answer.
    throttled_at: Option<Instant>,
}

impl Pace {
    /// A pace for `cap` a second (0: no cap).
    pub fn new(cap: u32) -> Pace {
        Pace {
            configured: cap,
            current: f64::from(cap),
            next: None,
            throttled_at: None,
        }
    }

    /// The cap in use, submissions a second (`None`: no cap).
    pub fn cap(&self) -> Option<f64> {
        (self.current > 0.0).then_some(self.current)
    }

    /// How long to wait before the next submission at `now` (zero: send now). Sending is
    /// then recorded with [`Pace::sent`].
    pub fn wait(&self, now: Instant) -> Duration {
        match self.next {
            Some(n) if n > now => n - now,
            _ => Duration::ZERO,
        }
    }

    /// Records a submission at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.recover(now);
        if let Some(cap) = self.cap() {
            let gap = Duration::from_secs_f64(1.0 / cap);
            let from = self.next.filter(|n| *n > now).unwrap_or(now);
            self.next = Some(from + gap);
        }
    }

    /// The SMSC answered ESME_RTHROTTLED at `now`.
    pub fn throttled(&mut self, now: Instant) {
        let base = if self.current > 0.0 {
            self.current
        } else {
            // No configured cap: start from a hundred a second.
            200.0
        };
        self.current = (base / 2.0).max(1.0);
        self.throttled_at = Some(now);
        self.next = Some(now + Duration::from_secs(1));
    }

    fn recover(&mut self, now: Instant) {
        let Some(at) = self.throttled_at else {
            return;
        };
        if now.duration_since(at) < Duration::from_secs(1) {
            return;
        }
        if self.configured == 0 {
            self.current *= 1.1;
            if self.current > 100_000.0 {
                self.current = 0.0;
                self.throttled_at = None;
            }
        } else {
            let max = f64::from(self.configured);
            self.current = (self.current + max / 10.0).min(max);
            if self.current >= max {
                self.throttled_at = None;
            }
        }
        if self.throttled_at.is_some() {
            self.throttled_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_short_text_is_one_submit_sm_in_the_smallest_coding() {
        let s = submits(
            "15551234567",
            "447700900123",
            "hi @",
            LongTexts::Udh,
            1,
            true,
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].data_coding, 0);
        assert_eq!(s[0].short_message, vec![0x68, 0x69, 0x20, 0x00]);
        assert_eq!(s[0].registered_delivery, 1);
        assert_eq!((s[0].dest.ton, s[0].dest.npi), (1, 1));
        let u = submits("1", "2", "Привет", LongTexts::Udh, 1, false);
        assert_eq!((u[0].data_coding, u[0].short_message.len()), (8, 12));
    }

    #[test]
    fn a_long_text_goes_as_each_upstream_wants_it_and_reads_back_whole() {
        let text: String = "0123456789".repeat(40);
        for mode in [LongTexts::Udh, LongTexts::Sar] {
            let parts = submits("1", "2", &text, mode, 7, false);
            assert_eq!(parts.len(), 3, "{mode:?}");
            let mut partial: Option<crate::sms::segment::Partial> = None;
            for p in &parts {
                let (c, body) = part(p).unwrap();
                let c = c.unwrap();
                assert_eq!((c.total, c.reference & 0xFF), (3, 7));
                let pa = partial.get_or_insert_with(|| crate::sms::segment::Partial::new(&c));
                pa.add(&c, body);
            }
            assert_eq!(partial.unwrap().text("[...]"), text);
        }
        let one = submits("1", "2", &text, LongTexts::Payload, 7, false);
        assert_eq!(one.len(), 1);
        assert!(one[0].short_message.is_empty());
        assert_eq!(
            part(&one[0]).unwrap(),
            (None, Body::Gsm7(text.into_bytes()))
        );
    }

    #[test]
    fn receipts_are_read_from_tlvs_first_then_from_the_appendix_b_text() {
        let mut sm = Sm {
            esm_class: 0x04,
            short_message: b"id:AB12 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD err:000 text:hi".to_vec(),
            ..Sm::default()
        };
        let r = receipt(&sm).unwrap();
        assert_eq!((r.id.as_str(), r.fate), ("AB12", Fate::Delivered));
        sm.tlvs = vec![
            (tag::RECEIPTED_MESSAGE_ID, b"ff01\0".to_vec()),
            (tag::MESSAGE_STATE, vec![5]),
        ];
        let r = receipt(&sm).unwrap();
        assert_eq!((r.id.as_str(), r.fate), ("ff01", Fate::Failed));
        sm.esm_class = 0;
        assert_eq!(receipt(&sm), None, "a text is no receipt");
        let enroute = Sm {
            esm_class: 0x04,
            short_message: b"id:9 stat:ENROUTE".to_vec(),
            ..Sm::default()
        };
        assert_eq!(receipt(&enroute).unwrap().fate, Fate::Pending);
        let no_id = Sm {
            esm_class: 0x04,
            short_message: b"stat:DELIVRD".to_vec(),
            ..Sm::default()
        };
        assert_eq!(receipt(&no_id), None);
    }

    #[test]
    fn throttling_halves_the_pace_and_quiet_seconds_bring_it_back() {
        let t0 = Instant::now();
        let mut p = Pace::new(100);
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.sent(t0);
        assert_eq!(p.wait(t0), Duration::from_millis(10));
        p.throttled(t0);
        assert_eq!(p.cap(), Some(50.0));
        assert_eq!(p.wait(t0), Duration::from_secs(1));
        let mut t = t0;
        for _ in 0..10 {
            t += Duration::from_secs(2);
            p.sent(t);
        }
        assert_eq!(p.cap(), Some(100.0));
        let mut free = Pace::new(0);
        free.sent(t0);
        assert_eq!(free.wait(t0), Duration::ZERO, "no cap: no wait");
        free.throttled(t0);
        assert_eq!(free.cap(), Some(100.0));
    }

    proptest! {
        #[test]
        fn any_deliver_sm_body_never_panics(esm in any::<u8>(), dcs in any::<u8>(),
                sm in proptest::collection::vec(any::<u8>(), 0..300),
                tlvs in proptest::collection::vec((0x0200u16..0x0210, proptest::collection::vec(any::<u8>(), 0..4)), 0..4)) {
            let sm = Sm { esm_class: esm, data_coding: dcs, short_message: sm, tlvs, ..Sm::default() };
            let _ = part(&sm);
            let _ = receipt(&sm);
        }

        #[test]
        fn any_text_split_for_an_upstream_reads_back(text in "\\PC{0,400}") {
            let parts = submits("1", "2", &text, LongTexts::Udh, 3, false);
            let mut out = String::new();
            let mut partial: Option<crate::sms::segment::Partial> = None;
            for p in &parts {
                let (c, body) = part(p).unwrap();
                match c {
                    None => out = body.text(),
                    Some(c) => { partial.get_or_insert_with(|| crate::sms::segment::Partial::new(&c)).add(&c, body); }
                }
            }
            if let Some(p) = partial { out = p.text("[...]"); }
            if parts.len() < 10 { prop_assert_eq!(out, text); }
        }
    }
}
