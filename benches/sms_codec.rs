//! SMS codec throughput (criterion): segment + encode to SMS-DELIVER TPDUs, and decode +
//! reassemble, for a 160-character GSM 7-bit text (one segment) and a 300-character UCS-2 text
//! (five segments).
//!
//! Run: `cargo bench --bench sms_codec`. Figures: docs/benchmarks.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use smsmta::sms::segment::{self, Partial, SegmentOptions};
use smsmta::sms::{Address, Deliver, Timestamp};

fn texts() -> [(&'static str, String); 2] {
    let gsm: String = "The quick brown fox jumps over the lazy dog 0123456789 @£$¥ ÄÖÑÜ§ "
        .chars()
        .cycle()
        .take(160)
        .collect();
    let ucs2: String = "Съешь же ещё этих мягких французских булок, да выпей чаю. 中文 "
        .chars()
        .cycle()
        .take(300)
        .collect();
    [("gsm7_160", gsm), ("ucs2_300", ucs2)]
}

fn encode(text: &str) -> Vec<Vec<u8>> {
    segment::deliver_tpdus(
        text,
        &Address::parse("+15551234567"),
        Timestamp::from_unix(1_764_088_254, 4),
        42,
        &SegmentOptions::default(),
    )
    .unwrap()
}

fn decode(pdus: &[Vec<u8>]) -> String {
    let ds: Vec<Deliver> = pdus.iter().map(|p| Deliver::decode(p).unwrap()).collect();
    match ds[0].user_data.concat() {
        None => ds[0].user_data.body.text(),
        Some(c) => {
            let mut p = Partial::new(&c);
            for d in &ds {
                p.add(&d.user_data.concat().unwrap(), d.user_data.body.clone());
            }
            p.text("")
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sms");
    g.throughput(Throughput::Elements(1));
    for (name, text) in texts() {
        let pdus = encode(&text);
        assert_eq!(decode(&pdus), text);
        eprintln!("{name}: {} segment(s)", pdus.len());
        g.bench_function(format!("segment_encode/{name}"), |b| {
            b.iter(|| encode(black_box(&text)))
        });
        g.bench_function(format!("decode_reassemble/{name}"), |b| {
            b.iter(|| decode(black_box(&pdus)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
