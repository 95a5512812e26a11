//! What an upstream SMSC sends smsmta's ESME side: any octets, framed and decoded as the
//! client does, and every deliver_sm read for its parts and its receipt, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::smpp::{esme, pdu};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(n)) = pdu::frame_length(rest, 4096) {
        let Some(frame) = rest.get(..n) else { break };
        if let Ok(pdu::Pdu { body: pdu::Body::DeliverSm(sm), .. }) = pdu::decode(frame) {
            let _ = esme::part(&sm);
            let _ = esme::receipt(&sm);
        }
        rest = rest.get(n..).unwrap_or_default();
    }
});
