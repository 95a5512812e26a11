//! SIP body decoding (binary, hex, base64) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::sms::body;

fuzz_target!(|data: &[u8]| {
    let _ = body::decode_body(data, None);
    let _ = body::decode_body(data, Some("base64"));
    let _ = body::hex_decode(data);
});
