//! Queue file decoding never panics; whatever decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::spool::QueueFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = QueueFile::decode(data) {
        let bytes = f.encode().expect("a decoded file encodes");
        assert_eq!(QueueFile::decode(&bytes).ok(), Some(f));
    }
});
