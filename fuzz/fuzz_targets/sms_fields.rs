//! Field decoders: addresses, user-data headers, GSM 7-bit and UCS-2 text, and the segmenter
//! on arbitrary text: none panics; segment -> join gives the text back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::sms::{address, gsm7, segment, ucs2, udh};

fuzz_target!(|data: &[u8]| {
    let _ = address::decode_tp(data);
    let _ = address::decode_rp(data);
    let _ = udh::parse(data).map(|e| udh::concat(&e));
    let _ = gsm7::decode(data);
    let _ = gsm7::unpack(data, usize::from(data.first().copied().unwrap_or(0) % 8), data.len());
    let _ = ucs2::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let s = segment::segment(text, &segment::SegmentOptions { max_segments: 255, wide_reference: false });
        if !s.truncated {
            let joined: String = s.parts.iter().map(|b| b.text()).collect();
            assert_eq!(joined, text);
        }
    }
});
