//! The MX response decoder never panics on any bytes, and never loops on compression pointers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::smtp::dns;

fuzz_target!(|data: &[u8]| {
    let id = data.first().copied().unwrap_or(0) as u16;
    let _ = dns::parse_mx_response(data, id, "example.org");
});
