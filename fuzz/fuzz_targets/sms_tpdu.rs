//! TPDUs: SUBMIT, DELIVER and STATUS-REPORT decoders never panic; a decoded SUBMIT or DELIVER
//! re-encodes to a PDU that decodes to the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::sms::{Deliver, StatusReport, Submit, tpdu};

fuzz_target!(|data: &[u8]| {
    let _ = tpdu::mo_type(data);
    if let Ok(s) = Submit::decode(data)
        && let Ok(bytes) = s.encode()
    {
        let again = Submit::decode(&bytes).expect("re-encoded SUBMIT decodes");
        assert_eq!(again.user_data.body.text(), s.user_data.body.text());
    }
    if let Ok(d) = Deliver::decode(data)
        && let Ok(bytes) = d.encode()
    {
        let again = Deliver::decode(&bytes).expect("re-encoded DELIVER decodes");
        assert_eq!(again.user_data.body.text(), d.user_data.body.text());
    }
    let _ = StatusReport::decode(data);
});
