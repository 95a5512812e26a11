//! Cross-check of the SMS codec against an independent implementation: python-gsmmodem-new
//! (`gsmmodem.pdu`, installed from PyPI by tests/run-all.sh), through
//! tests/interop/pdu_crosscheck.py.
//!
//! 1. Several hundred random SMS-DELIVER encodings of ours (GSM 7-bit with and without
//!    extension characters, UCS-2 with CJK and emoji, concatenated, international, national and
//!    alphanumeric senders, time zones east and west) are decoded by gsmmodem; text, sender,
//!    time stamp and concatenation header must agree.
//! 2. gsmmodem's SMS-SUBMIT encodings of random texts are decoded by ours; destination, text
//!    (after reassembly), reference, validity and status-report request must agree.
//!
//! Ignored by plain `cargo test` (it needs the peer); run by tests/run-all.sh with
//! `--ignored`. Without the peer it fails, naming it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use smsmta::sms::body::{hex_decode, hex_encode};
use smsmta::sms::segment::{self, Partial, SegmentOptions};
use smsmta::sms::tpdu::Validity;
use smsmta::sms::{Address, Deliver, Submit, Timestamp};

const PEER: &str =
    "python3 with gsmmodem (PyPI package python-gsmmodem-new; tests/run-all.sh installs it)";

fn peer(request: &Value) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/pdu_crosscheck.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("peer missing: {PEER}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "peer failed ({PEER}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const GSM_WORDS: &[&str] = &[
    "hello",
    "Hölä",
    "BÄRÇA",
    "äñ@",
    "price",
    "£5",
    "$",
    "¥",
    "_",
    "ΔΦΓ",
    "¿qué?",
    "¡sí!",
    "Ñandú",
    "100%",
    "a+b=c",
    "x<y>z",
    "#tag",
    "line\nbreak",
    "ok.",
];
const EXT_WORDS: &[&str] = &["€", "[x]", "{y}", "a|b", "~", "^", "back\\slash"];
const UCS2_WORDS: &[&str] = &[
    "中兴通讯",
    "あ叶葉",
    "Русский",
    "ελληνικά",
    "🙂",
    "👍🏽",
    "עברית",
    "नमस्ते",
    "ü",
    "ж",
];

fn random_text(rng: &mut Rng, kind: usize) -> String {
    let words = 1 + rng.below(match kind % 3 {
        0 => 12,
        1 => 90, // long enough to need several segments
        _ => 40,
    });
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        let w = match kind % 3 {
            0 => rng.pick(GSM_WORDS),
            1 if rng.below(4) == 0 => rng.pick(EXT_WORDS),
            1 => rng.pick(GSM_WORDS),
            _ if rng.below(3) == 0 => rng.pick(GSM_WORDS),
            _ => rng.pick(UCS2_WORDS),
        };
        s.push_str(w);
    }
    s
}

fn random_sender(rng: &mut Rng) -> Address {
    match rng.below(3) {
        0 => Address::parse(&format!("+1555{:07}", rng.below(10_000_000))),
        1 => Address::parse(&format!("0{:9}", 100_000_000 + rng.below(899_999_999))),
        _ => Address::parse(["Bank", "SMSMTA", "Info-Line", "Alerts"][rng.below(4)]),
    }
}

#[test]
#[ignore = "interop: needs python3 + gsmmodem (python-gsmmodem-new); run by tests/run-all.sh"]
fn our_sms_deliver_pdus_decode_with_gsmmodem() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut cases = Vec::new(); // (text, sender, unix, tz, pdus)
    let opts = SegmentOptions {
        max_segments: 255,
        wide_reference: false,
    };
    for i in 0..300 {
        let text = random_text(&mut rng, i);
        let sender = random_sender(&mut rng);
        let unix = 1_000_000_000 + (rng.next() % 1_500_000_000) as i64;
        let tz = (rng.below(97) as i8) - 48; // -12h..+12h in quarters
        let scts = Timestamp::from_unix(unix, tz);
        let reference = rng.below(256) as u16;
        let pdus = segment::deliver_tpdus(&text, &sender, scts, reference, &opts).unwrap();
        cases.push((text, sender, unix, tz, reference, pdus));
    }
    let all: Vec<String> = cases
        .iter()
        .flat_map(|c| c.5.iter().map(|p| format!("00{}", hex_encode(p))))
        .collect();
    let total = all.len();
    let reply = peer(&json!({ "decode": all }));
    let decoded = reply["decoded"].as_array().unwrap();
    assert_eq!(decoded.len(), total);
    let mut k = 0;
    let (mut multi, mut ucs2) = (0, 0);
    for (text, sender, unix, tz, reference, pdus) in &cases {
        let mut joined = String::new();
        if pdus.len() > 1 {
            multi += 1;
        }
        if !smsmta::sms::gsm7::is_gsm7(text) {
            ucs2 += 1;
        }
        for (seq, _) in pdus.iter().enumerate() {
            let d = &decoded[k];
            k += 1;
            assert_eq!(d["type"], "SMS-DELIVER");
            assert_eq!(
                d["number"].as_str().unwrap(),
                sender.to_string(),
                "sender of {text:?}"
            );
            assert_eq!(d["utc"].as_i64().unwrap(), *unix, "time of {text:?}");
            assert_eq!(d["offset_minutes"].as_i64().unwrap(), i64::from(*tz) * 15);
            if pdus.len() > 1 {
                assert_eq!(
                    d["concat"]["reference"].as_u64().unwrap(),
                    u64::from(*reference)
                );
                assert_eq!(d["concat"]["total"].as_u64().unwrap(), pdus.len() as u64);
                assert_eq!(d["concat"]["seq"].as_u64().unwrap(), seq as u64 + 1);
            } else {
                assert!(d["concat"].is_null());
            }
            joined.push_str(d["text"].as_str().unwrap());
        }
        assert_eq!(&joined, text, "gsmmodem read a different text");
    }
    assert!(
        multi >= 50 && ucs2 >= 50,
        "too few concatenated ({multi}) or UCS-2 ({ucs2}) cases"
    );
    eprintln!(
        "gsmmodem decoded {total} SMS-DELIVER PDUs of ours ({} messages, {multi} concatenated, {ucs2} UCS-2)",
        cases.len()
    );
}

#[test]
#[ignore = "interop: needs python3 + gsmmodem (python-gsmmodem-new); run by tests/run-all.sh"]
fn gsmmodem_sms_submit_pdus_decode_with_ours() {
    let mut rng = Rng(0x5EED_9876_0000_0002);
    let mut cases = Vec::new();
    for i in 0..200 {
        let number = if i % 2 == 0 {
            format!("+4477{:08}", rng.below(100_000_000))
        } else {
            format!("{:07}", rng.below(10_000_000))
        };
        let validity = [
            None,
            Some(5u64),
            Some(720),
            Some(4 * 1440),
            Some(3 * 7 * 1440),
        ][rng.below(5)];
        cases.push(json!({
            "number": number,
            "text": random_text(&mut rng, i),
            "reference": rng.below(256),
            "validity_minutes": validity,
            "srr": rng.below(2) == 1,
        }));
    }
    let reply = peer(&json!({ "encode": cases }));
    let encoded = reply["encoded"].as_array().unwrap();
    let mut n = 0;
    for (case, pdus) in cases.iter().zip(encoded) {
        let mut partial: Option<Partial> = None;
        let mut single = None;
        for p in pdus.as_array().unwrap() {
            n += 1;
            let bytes = hex_decode(p.as_str().unwrap().as_bytes()).unwrap();
            assert_eq!(bytes[0], 0, "no SMSC prefix expected");
            let s = Submit::decode(&bytes[1..]).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(s.destination.to_string(), case["number"].as_str().unwrap());
            assert_eq!(s.status_report_request, case["srr"].as_bool().unwrap());
            match case["validity_minutes"].as_u64() {
                None => assert_eq!(s.validity, None),
                Some(m) => {
                    let Some(v @ Validity::Relative(_)) = s.validity else {
                        panic!("{case}: {:?}", s.validity)
                    };
                    assert_eq!(v.duration_secs(0), Some(m * 60), "{case}");
                }
            }
            // The encoding round-trips through ours byte for byte.
            assert_eq!(s.encode().unwrap(), &bytes[1..]);
            match s.user_data.concat() {
                Some(c) => {
                    partial
                        .get_or_insert_with(|| Partial::new(&c))
                        .add(&c, s.user_data.body.clone());
                }
                None => {
                    assert_eq!(
                        u64::from(s.message_ref),
                        case["reference"].as_u64().unwrap()
                    );
                    single = Some(s.user_data.body.text());
                }
            }
        }
        let text = match partial {
            Some(p) => {
                assert!(p.is_complete());
                p.text("")
            }
            None => single.unwrap(),
        };
        assert_eq!(text, case["text"].as_str().unwrap());
    }
    eprintln!(
        "decoded {n} SMS-SUBMIT PDUs from gsmmodem ({} messages)",
        cases.len()
    );
}

#[test]
#[ignore = "interop: needs python3 + gsmmodem (python-gsmmodem-new); run by tests/run-all.sh"]
fn our_deliver_of_the_vector_texts_matches_gsmmodem() {
    // A fixed case beside the random ones: the concatenated Vodafone text from vector 06.
    let text = "Lieber Vodafone-Kunde, mit Ihrer nationalen Tarifoption zahlen Sie in diesem Netz 3,45 € pro MB plus 59 Ct pro Session.";
    let pdus = segment::deliver_tpdus(
        text,
        &Address::parse("12220"),
        Timestamp::from_unix(1_274_893_937, 8),
        25,
        &SegmentOptions::default(),
    )
    .unwrap();
    let reply = peer(
        &json!({ "decode": pdus.iter().map(|p| format!("00{}", hex_encode(p))).collect::<Vec<_>>() }),
    );
    let got: String = reply["decoded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, text);
    let _ = Deliver::decode(&pdus[0]).unwrap();
}
