//! RP messages and the MO path: decode never panics; whatever decodes re-encodes and decodes
//! to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::sms::{self, RpMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = RpMessage::decode(data)
        && let Ok(bytes) = m.encode()
    {
        assert_eq!(RpMessage::decode(&bytes).ok(), Some(m));
    }
    let _ = sms::decode_mo(data);
});
