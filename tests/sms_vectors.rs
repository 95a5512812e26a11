//! Every SMS vector in tests/fixtures/vectors (copied from shared/vectors, each naming its
//! public source) decodes to what its file states, and the encoders reproduce the literal
//! bytes wherever a file gives them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use smsmta::sms::body::{self, BodyEncoding, hex_decode};
use smsmta::sms::tpdu::{Alphabet, Validity, status};
use smsmta::sms::{
    self, Deliver, Partial, RpMessage, StatusReport, Submit, Timestamp, rp, segment,
};

fn vectors(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    hex_decode(s.as_bytes()).unwrap()
}

/// AT-style PDU: SMSC information (length octet, then that many octets) before the TPDU.
fn strip_smsc(pdu: &[u8]) -> (&[u8], &[u8]) {
    let n = usize::from(pdu[0]);
    (&pdu[1..1 + n], &pdu[1 + n..])
}

fn ts(t: &Timestamp) -> String {
    t.to_string()
}

#[test]
fn vector_02_openbts_mo_hex_body_decodes_to_test_for_555() {
    let v = vectors("02-sip-openbts-to-smqueue-mo-literal.json");
    let wire = v["wire_body_ascii_hex"].as_str().unwrap();
    let (rp_bytes, enc) = body::decode_body(wire.as_bytes(), None).unwrap();
    assert_eq!(enc, BodyEncoding::Hex);
    let mo = sms::decode_mo(&rp_bytes).unwrap();
    assert_eq!(mo.rp_message_ref, 0x54);
    assert_eq!(mo.smsc.as_ref().unwrap().to_string(), "+8613010911500");
    assert_eq!(mo.smsc.as_ref().unwrap().toa(), 0x91);
    let s = &mo.submit;
    assert_eq!(s.message_ref, 0x54);
    assert_eq!(s.destination.value, "555");
    assert_eq!(s.destination.toa(), 0x81);
    assert_eq!(s.pid, 0);
    assert_eq!(s.dcs.raw, 0);
    assert_eq!(s.validity, Some(Validity::Relative(0xFF)));
    assert_eq!(s.validity.unwrap().duration_secs(0), Some(63 * 7 * 86_400));
    assert!(!s.status_report_request && !s.reject_duplicates && !s.reply_path);
    assert_eq!(s.user_data.body.text(), "Test");
    // The TPDU and the whole RP-DATA re-encode to the literal bytes.
    assert_eq!(
        body::hex_encode(&s.encode().unwrap()),
        v["decoded_verified"]["tpdu_hex"].as_str().unwrap()
    );
    match RpMessage::decode(&rp_bytes).unwrap() {
        m @ RpMessage::Data(_) => assert_eq!(body::hex_encode(&m.encode().unwrap()), wire),
        other => panic!("{other:?}"),
    }
    // Yate's base64 of the hex text (padding missing) decodes to the same characters.
    let (b64, enc) = body::decode_body(
        v["yate_body_base64_as_given"].as_str().unwrap().as_bytes(),
        Some("base64"),
    )
    .unwrap();
    assert_eq!(enc, BodyEncoding::Base64);
    assert_eq!(b64, wire.as_bytes());
}

#[test]
fn vector_04_smqueue_mt_body_is_reproduced_by_our_encoders() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/vectors/04-sip-smqueue-202-and-mt-reconstructed.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let body_hex = text
        .lines()
        .find(|l| l.starts_with("012a03a1"))
        .unwrap()
        .trim();
    let bytes = hex(body_hex);
    let RpMessage::Data(d) = RpMessage::decode(&bytes).unwrap() else {
        panic!("not RP-DATA")
    };
    assert!(!d.to_network);
    assert_eq!(d.message_ref, 0x2a);
    let smsc = d.originator.clone().unwrap();
    assert_eq!((smsc.value.as_str(), smsc.toa()), ("0000", 0xA1));
    assert_eq!(d.destination, None);
    let deliver = Deliver::decode(&d.tpdu).unwrap();
    assert!(!deliver.more_messages, "TP-MMS=1: no more messages");
    assert_eq!(deliver.originator.value, "2222222");
    assert_eq!(deliver.originator.toa(), 0xA1);
    assert_eq!(ts(&deliver.scts), "2014-01-01 12:00:00 +00:00");
    assert_eq!(deliver.user_data.body.text(), "Test");

    // Build it from scratch and get the same 29 octets.
    let built = Deliver::new(
        deliver.originator.clone(),
        Timestamp::from_unix(1_388_577_600, 0),
        sms::UserData::text("Test"),
    );
    let mt = sms::encode_mt(0x2a, &smsc, built.encode().unwrap()).unwrap();
    assert_eq!(body::hex_encode(&mt), body_hex);
}

#[test]
fn vector_05_osmo_msc_rp_data_and_rp_ack() {
    let v = vectors("05-osmo-msc-mt-rpdata-deliver-and-rpack.json");
    let vs = v["vectors"].as_array().unwrap();
    let rp_hex = vs[0]["rp_data_hex"].as_str().unwrap();
    // The CP layer (09 01 58) wraps the RP-DATA.
    assert!(vs[0]["hex"].as_str().unwrap().ends_with(rp_hex));
    let RpMessage::Data(d) = RpMessage::decode(&hex(rp_hex)).unwrap() else {
        panic!()
    };
    assert!(!d.to_network);
    assert_eq!(d.message_ref, 0);
    assert_eq!(d.originator.as_ref().unwrap().to_string(), "+447785016005");
    assert_eq!(d.tpdu.len(), 76);
    assert_eq!(
        body::hex_encode(&d.tpdu),
        vs[0]["tpdu_hex"].as_str().unwrap()
    );
    let deliver = Deliver::decode(&d.tpdu).unwrap();
    assert!(deliver.more_messages, "TP-MMS=0: more messages waiting");
    assert_eq!(deliver.originator.value, "46071");
    assert_eq!(deliver.originator.toa(), 0x80);
    assert_eq!(ts(&deliver.scts), "1970-01-01 00:00:00 +00:00");
    assert_eq!(deliver.user_data.body.len(), 68);
    assert_eq!(
        deliver.user_data.body.text(),
        vs[0]["tpdu"]["text"].as_str().unwrap()
    );
    assert_eq!(
        body::hex_encode(&deliver.encode().unwrap()),
        vs[0]["tpdu_hex"].as_str().unwrap()
    );
    assert_eq!(
        body::hex_encode(&RpMessage::Data(d).encode().unwrap()),
        rp_hex
    );

    // MS->network CP-DATA (89 01 06) carrying RP-ACK with an SMS-DELIVER-REPORT.
    let ack_cp = hex(vs[2]["hex"].as_str().unwrap());
    let ack = RpMessage::decode(&ack_cp[3..]).unwrap();
    assert_eq!(
        ack,
        RpMessage::Ack(rp::RpAck {
            to_network: true,
            message_ref: 0,
            tpdu: Some(vec![0, 0]),
        })
    );
    assert_eq!(ack.encode().unwrap(), &ack_cp[3..]);
}

#[test]
fn vector_06_python_messaging_deliver_and_status_reports() {
    let v = vectors("06-python-messaging-sms-deliver.json");
    let vs = v["vectors"].as_array().unwrap();
    let mut partial: Option<Partial> = None;
    for vec in vs {
        let name = vec["name"].as_str().unwrap();
        let pdu = hex(vec["pdu"].as_str().unwrap());
        let (smsc, tpdu) = strip_smsc(&pdu);
        if let Some(t) = vec["tpdu"].as_str() {
            assert_eq!(body::hex_encode(tpdu), t.to_ascii_lowercase(), "{name}");
        }
        if let Some(s) = vec["smsc"].as_str() {
            let (a, _) = sms::address::decode_rp(&pdu).unwrap();
            assert_eq!(a.unwrap().to_string(), s, "{name}");
            assert_eq!(smsc.len() + 1, usize::from(pdu[0]) + 1);
        }
        if name.starts_with("SMS-STATUS-REPORT") {
            let r = StatusReport::decode(tpdu).unwrap();
            assert_eq!(
                u64::from(r.message_ref),
                vec["tp_mr"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(r.recipient.value, vec["recipient"].as_str().unwrap());
            let want = vec["scts"].as_str().unwrap(); // "2010-09-28 14:56:00 +01:00"
            assert_eq!(ts(&r.scts), want, "{name}");
            assert_eq!(ts(&r.discharge), vec["discharge_time"].as_str().unwrap());
            assert_eq!(r.status, status::DELIVERED);
            assert_eq!(
                r.encode().unwrap(),
                tpdu,
                "{name}: encoder reproduces the bytes"
            );
            continue;
        }
        let d = Deliver::decode(tpdu).unwrap();
        assert_eq!(
            d.encode().unwrap(),
            tpdu,
            "{name}: encoder reproduces the bytes"
        );
        if let Some(oa) = vec["oa"].as_str() {
            assert!(
                oa.starts_with(&d.originator.to_string()),
                "{name}: {oa} vs {}",
                d.originator
            );
        }
        match d.user_data.concat() {
            None => assert_eq!(
                d.user_data.body.text(),
                vec["text"].as_str().unwrap(),
                "{name}"
            ),
            Some(c) => {
                assert_eq!((c.reference, c.total), (25, 2), "{name}");
                assert_eq!(d.dcs.class, Some(1));
                assert_eq!(d.pid, 0x39);
                assert_eq!(
                    d.user_data.body.text(),
                    vec["text"].as_str().unwrap(),
                    "{name}"
                );
                let p = partial.get_or_insert_with(|| Partial::new(&c));
                p.add(&c, d.user_data.body.clone());
            }
        }
        match name {
            "7-bit DELIVER" => {
                // TZ octet with the sign bit set and 0 quarters: "-00:00", kept as sent.
                assert_eq!(ts(&d.scts), "2002-08-26 19:37:41 -00:00");
                assert_eq!(d.scts.tz_quarters, 0);
            }
            "UCS2 DELIVER" => {
                assert_eq!(d.dcs.alphabet, Alphabet::Ucs2);
                assert_eq!(ts(&d.scts), "2008-06-24 09:22:04 +02:00");
            }
            "DELIVER with time zone GMT+1" => {
                assert_eq!(ts(&d.scts), "2009-09-01 17:41:32 +01:00");
                // 16:41:32 UTC
                assert_eq!(d.scts.to_unix() % 86_400, 16 * 3600 + 41 * 60 + 32);
            }
            "alphanumeric sender (even length)" => {
                assert_eq!(d.originator.value, "www.tim.it");
                assert_eq!(d.originator.toa(), 0xD0);
            }
            _ => {}
        }
    }
    let p = partial.unwrap();
    assert!(p.is_complete());
    let whole = p.text("");
    assert!(whole.starts_with("Lieber Vodafone-Kunde"));
    assert!(whole.contains("3,45 € pro MB"));
    assert!(whole.ends_with("Viel Spaß im Ausland."));
}

#[test]
fn vector_07_python_messaging_submits() {
    let v = vectors("07-python-messaging-sms-submit.json");
    for vec in v["vectors"].as_array().unwrap() {
        let name = vec["name"].as_str().unwrap();
        let mut pdus: Vec<String> = Vec::new();
        if let Some(p) = vec["pdu"].as_str() {
            pdus.push(p.to_string());
        }
        if let Some(ps) = vec["pdus"].as_array() {
            pdus.extend(ps.iter().map(|p| p.as_str().unwrap().to_string()));
        }
        if pdus.is_empty() {
            continue; // the segment-count rules: tested in sms::segment
        }
        let mut partial: Option<Partial> = None;
        for (i, p) in pdus.iter().enumerate() {
            let pdu = hex(p);
            let (_, tpdu) = strip_smsc(&pdu);
            let s = Submit::decode(tpdu).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                s.encode().unwrap(),
                tpdu,
                "{name}: encoder reproduces the bytes"
            );
            assert_eq!(s.message_ref, 0);
            if let Some(da) = vec["da"].as_str() {
                let da = da.split_whitespace().next().unwrap();
                assert_eq!(s.destination.to_string(), da, "{name}");
            }
            if let Some(c) = s.user_data.concat() {
                assert_eq!((c.reference, c.total, c.seq), (136, 3, (i + 1) as u8));
                partial
                    .get_or_insert_with(|| Partial::new(&c))
                    .add(&c, s.user_data.body.clone());
                continue;
            }
            if let Some(text) = vec["text"].as_str() {
                assert_eq!(s.user_data.body.text(), text, "{name}");
            }
            match name {
                "no validity period" => assert_eq!(s.validity, None),
                "absolute validity" => {
                    let Some(Validity::Absolute(t)) = s.validity else {
                        panic!()
                    };
                    assert_eq!(ts(&t), "2010-07-25 20:15:39 +00:00");
                }
                "relative validity 4 days" => {
                    assert_eq!(s.validity.unwrap().duration_secs(0), Some(4 * 86_400));
                    assert_eq!(tpdu.len(), 18);
                }
                "message class 0/1/2/3" => assert_eq!(s.dcs.class, Some(i as u8)),
                "status report requested" => assert!(s.status_report_request),
                "8-bit data" => {
                    assert_eq!(s.dcs.alphabet, Alphabet::EightBit);
                    assert_eq!(s.user_data.body.text(), "Hi there...");
                    assert_eq!(s.destination.toa(), 0x81);
                }
                "UCS2 Japanese" | "UCS2 Russian, relative VP" => {
                    assert_eq!(s.dcs.alphabet, Alphabet::Ucs2)
                }
                _ => {}
            }
        }
        if let Some(p) = partial {
            assert!(p.is_complete(), "{name}");
            assert_eq!(p.text(""), vec["text"].as_str().unwrap(), "{name}");
            // Our segmenter splits the same text into the same three parts of 153/153/13.
            let segs = segment::segment(
                vec["text"].as_str().unwrap(),
                &segment::SegmentOptions::default(),
            );
            let lens: Vec<usize> = segs.parts.iter().map(|b| b.len()).collect();
            assert_eq!(lens, vec![153, 153, 13]);
            // And the whole TPDUs come out byte for byte (same reference, VP and DA).
            let uds = segment::user_data(&segs, 136, false);
            for (ud, p) in uds.into_iter().zip(&pdus) {
                let pdu = hex(p);
                let (_, tpdu) = strip_smsc(&pdu);
                let mut s = Submit::decode(tpdu).unwrap();
                s.user_data = ud;
                assert_eq!(s.encode().unwrap(), tpdu);
            }
        }
    }
}
