//! The SIP parser never panics on any bytes, as a datagram or a stream; whatever parses as a
//! request prints and parses back to the same request (with Content-Length set).
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::sip::message::{self, Message, Parsed};

fuzz_target!(|data: &[u8]| {
    let _ = message::parse(data, false, 4096);
    if let Ok(Parsed::Complete(Message::Request(r), _)) = message::parse(data, true, 4096) {
        let _ = r.check_mandatory();
        let _ = r.top_via();
        let _ = r.from();
        let _ = smsmta::sip::transaction::keys(&r);
        let printed = r.to_bytes();
        match message::parse(&printed, false, 1 << 20) {
            Ok(Parsed::Complete(Message::Request(back), _)) => {
                assert_eq!(back.method, r.method);
                assert_eq!(back.uri, r.uri);
                assert_eq!(back.body, r.body);
            }
            other => panic!("printed request does not parse back: {other:?}"),
        }
    }
});
