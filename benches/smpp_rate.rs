//! SMPP intake rate: submit_sm accepted a second by `smsmta serve`'s SMPP server (every
//! submit_sm_resp OK sent after the message is durable in the journal), with window 10 and
//! 100, on one bind and on four; beside the load tool's own ceiling, the same client against
//! a server in this process that answers every submit_sm OK and stores nothing.
//!
//! The client is this bench's own (tokio, smsmta's PDU codec): each bind keeps `window`
//! submit_sm outstanding, 160-character GSM texts to one subscriber, 20,000 messages a round.
//!
//! Two servers run side by side, one with its metrics endpoint on and scraped every second,
//! one with it off (the counters themselves are always kept); rounds alternate between them.
//!
//! Run: `cargo bench --bench smpp_rate`. Reported: messages a second (median of three rounds),
//! scraped / off, and the ratio smsmta / ceiling.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smsmta::smpp::pdu::{self, Address, Bind, BindKind, Body, Pdu, Sm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES: usize = 20_000;

fn frame(body: Body, seq: u32) -> Vec<u8> {
    pdu::encode(&Pdu {
        status: 0,
        sequence: seq,
        body,
    })
}

fn submit(seq: u32) -> Vec<u8> {
    frame(
        Body::SubmitSm(Box::new(Sm {
            source: Address {
                ton: 5,
                npi: 0,
                addr: "BENCH".into(),
            },
            dest: Address {
                ton: 1,
                npi: 1,
                addr: "15551234567".into(),
            },
            short_message: vec![b'x'; 160],
            ..Sm::default()
        })),
        seq,
    )
}

/// Reads PDUs from `s` into `buf`; returns those decoded.
async fn read_pdus(s: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut Vec<u8>) -> Vec<Pdu> {
    let mut chunk = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
        .await
        .expect("answers in time")
        .unwrap();
    assert!(n > 0, "server closed");
    buf.extend_from_slice(&chunk[..n]);
    let mut out = Vec::new();
    while let Ok(Some(len)) = pdu::frame_length(buf, 1 << 16) {
        if buf.len() < len {
            break;
        }
        let f: Vec<u8> = buf.drain(..len).collect();
        out.push(pdu::decode(&f).unwrap());
    }
    out
}

/// One bind sending `count` submit_sm with `window` outstanding; returns OKs.
async fn one_bind(addr: SocketAddr, count: usize, window: usize) -> usize {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = s.into_split();
    let bind = Bind {
        system_id: "bench".into(),
        password: "pw".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    w.write_all(&frame(Body::Bind(BindKind::Transceiver, bind), 1))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let got = read_pdus(&mut r, &mut buf).await;
    assert_eq!(got[0].status, 0, "bind refused");
    let (mut sent, mut answered, mut ok) = (0usize, 0usize, 0usize);
    while answered < count {
        let mut out = Vec::new();
        while sent < count && sent - answered < window {
            out.extend_from_slice(&submit(2 + sent as u32));
            sent += 1;
        }
        if !out.is_empty() {
            w.write_all(&out).await.unwrap();
        }
        for p in read_pdus(&mut r, &mut buf).await {
            if let Body::SubmitSmResp(_) = p.body {
                answered += 1;
                ok += usize::from(p.status == 0);
            }
        }
    }
    ok
}

async fn round(addr: SocketAddr, binds: usize, window: usize) -> f64 {
    let t = Instant::now();
    let per = MESSAGES / binds;
    let tasks: Vec<_> = (0..binds)
        .map(|_| tokio::spawn(one_bind(addr, per, window)))
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, per * binds, "every submit_sm answered OK");
    ok as f64 / t.elapsed().as_secs_f64()
}

/// A server that answers bind and every submit_sm OK and stores nothing: the client's ceiling.
async fn null_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let Ok(n) = r.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let mut out = Vec::new();
                    while let Ok(Some(len)) = pdu::frame_length(&buf, 1 << 16) {
                        if buf.len() < len {
                            break;
                        }
                        let f: Vec<u8> = buf.drain(..len).collect();
                        let p = pdu::decode(&f).unwrap();
                        let body = match p.body {
                            Body::Bind(k, _) => Body::BindResp(k, "null".into()),
                            _ => Body::SubmitSmResp("0".into()),
                        };
                        out.extend_from_slice(&frame(body, p.sequence));
                    }
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `smsmta serve` with the bench account, its metrics endpoint on or off.
fn start(dir: &std::path::Path, metrics: bool) -> common::Serve {
    let p = sha_crypt::Sha512Params::new(5_000).unwrap();
    let extra = format!(
        "{}[metrics]\nenabled = {metrics}\nlisten = \"127.0.0.1:0\"\n[smpp]\nlisten = \"127.0.0.1:0\"\nmax_connections = 16\n[[smpp.esme]]\nsystem_id = \"bench\"\npassword_hash = \"{}\"\nsources = [\"BENCH\"]\n",
        common::LOOPBACK,
        sha_crypt::sha512_simple("pw", &p).unwrap()
    );
    let config = common::config_logging(dir, "warn,smsmta::app=info", &extra);
    common::add_subscriber_quietly(&config, "15551234567", "001010000000002");
    common::Serve::start(&config)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (dir_on, dir_off) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = start(dir_on.path(), true);
    let plain = start(dir_off.path(), false);
    let smsmta = server.smpp.expect("the SMPP listener");
    let smsmta_off = plain.smpp.expect("the SMPP listener");
    // Metrics on, and scraped every second for the whole run, as Prometheus would.
    let m = server.metrics.expect("the metrics endpoint");
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let scraper = {
        let on = std::sync::Arc::clone(&scraping);
        std::thread::spawn(move || {
            let mut n = 0u32;
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(common::http_get(m, "/metrics").0, 200);
                n += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            n
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let null = rt.block_on(null_server());
    println!(
        "| binds | window | smsmta serve, metrics scraped (durable) msg/s | smsmta serve, endpoint off msg/s | scraped / off | ceiling (stores nothing) msg/s | ratio (scraped) to the ceiling |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (binds, window) in [(1, 10), (1, 100), (4, 10), (4, 100)] {
        let (mut a, mut off, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            a.push(rt.block_on(round(smsmta, binds, window)));
            off.push(rt.block_on(round(smsmta_off, binds, window)));
            b.push(rt.block_on(round(null, binds, window)));
        }
        let (a, off, b) = (median(a), median(off), median(b));
        println!(
            "| {binds} | {window} | {a:.0} | {off:.0} | {:.2} | {b:.0} | {:.2} |",
            a / off,
            a / b
        );
    }
    let (_, last) = common::http_get(m, "/metrics");
    scraping.store(false, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    println!(
        "metrics on: {scrapes} scrapes of /metrics during the run; smsmta_messages_received_total{{door=\"smpp\",result=\"accepted\"}} = {}",
        common::sample(
            &last,
            "smsmta_messages_received_total{door=\"smpp\",result=\"accepted\"}"
        )
    );
    for s in [server, plain] {
        let (st, _) = s.stop();
        assert!(st.success());
    }
}
