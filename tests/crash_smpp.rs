//! Crash test for the SMPP door: 2,000 submit_sm (window 20) SMPP in -> SIP out while the
//! server (the real `smsmta serve` binary) is killed with SIGKILL and restarted 10 times.
//! Every message answered submit_sm_resp OK must reach the test handset at least once;
//! duplicates (expected only for messages in flight at a kill) are counted and reported.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Serve;
use peers::SipPeer;
use smsmta::smpp::pdu::{self, Address, Bind, BindKind, Body, Pdu, Sm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOTAL: usize = 2_000;
const KILLS: usize = 10;
const B: &str = "15551234567";
const WINDOW: usize = 20;

fn frame(body: Body, seq: u32) -> Vec<u8> {
    pdu::encode(&Pdu {
        status: 0,
        sequence: seq,
        body,
    })
}

/// Sends submit_sm for the numbers in `todo` (sequence number = message number + 2) on one
/// bind until the server dies or `stop_after` passes; returns the numbers answered OK.
async fn send_until_killed(smpp: SocketAddr, todo: Vec<usize>, stop_after: Duration) -> Vec<usize> {
    let mut acked = Vec::new();
    let Ok(s) = TcpStream::connect(smpp).await else {
        return acked;
    };
    let (mut r, mut w) = s.into_split();
    let bind = Bind {
        system_id: "crash".into(),
        password: "pw".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    if w.write_all(&frame(Body::Bind(BindKind::Transceiver, bind), 1))
        .await
        .is_err()
    {
        return acked;
    }
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let (mut sent, mut answered, mut bound) = (0usize, 0usize, false);
    loop {
        while bound && sent < todo.len() && sent - answered < WINDOW && start.elapsed() < stop_after
        {
            let i = todo[sent];
            let sm = Sm {
                source: Address {
                    ton: 5,
                    npi: 0,
                    addr: "2337".into(),
                },
                dest: Address {
                    ton: 1,
                    npi: 1,
                    addr: B.into(),
                },
                short_message: format!("crash test {i}").into_bytes(),
                ..Sm::default()
            };
            if w.write_all(&frame(Body::SubmitSm(Box::new(sm)), i as u32 + 2))
                .await
                .is_err()
            {
                return acked;
            }
            sent += 1;
        }
        if bound && sent == answered && (sent == todo.len() || start.elapsed() >= stop_after) {
            return acked;
        }
        let n = match tokio::time::timeout(Duration::from_secs(10), r.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return acked,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(len)) = pdu::frame_length(&buf, 1 << 16) {
            if buf.len() < len {
                break;
            }
            let f: Vec<u8> = buf.drain(..len).collect();
            let Ok(p) = pdu::decode(&f) else { return acked };
            match p.body {
                Body::BindResp(..) => bound = p.status == 0,
                Body::SubmitSmResp(_) => {
                    answered += 1;
                    if p.status == 0 {
                        acked.push(p.sequence as usize - 2);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The numbers not acknowledged yet.
fn todo(acked: &HashSet<usize>) -> Vec<usize> {
    (0..TOTAL).filter(|i| !acked.contains(i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_submit_sm_resp_ok_is_delivered_across_ten_sigkills() {
    let mut peer = SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n[smpp]\nlisten = \"127.0.0.1:0\"\n[[smpp.esme]]\nsystem_id = \"crash\"\npassword_hash = \"{}\"\nsources = [\"2337\"]\n[delivery]\nbts = \"{}\"\nhandset_backoff_min = \"1s\"\nhandset_backoff_max = \"1s\"\n",
            sha_crypt::sha512_simple("pw", &sha_crypt::Sha512Params::new(5_000).unwrap()).unwrap(),
            peer.addr
        ),
    );
    common::add_subscriber(&cfg, B, "001010000000002");
    let started = Instant::now();
    let mut acked: HashSet<usize> = HashSet::new();
    for kill in 0..KILLS {
        let serve = Serve::start(&cfg);
        // Kill at a different moment each round: 150-600 ms of traffic.
        let window = Duration::from_millis(150 + (kill as u64 * 53) % 450);
        let smpp = serve.smpp.unwrap();
        let sender = tokio::spawn(send_until_killed(
            smpp,
            todo(&acked),
            Duration::from_secs(30),
        ));
        tokio::time::sleep(window).await;
        tokio::task::spawn_blocking(move || serve.kill())
            .await
            .unwrap();
        let got = sender.await.unwrap();
        acked.extend(got);
    }
    // The last start sends the rest and stays up until everything is delivered.
    let serve = Serve::start(&cfg);
    let got = send_until_killed(serve.smpp.unwrap(), todo(&acked), Duration::from_secs(60)).await;
    acked.extend(got);
    let seen = peers::count_crash_texts(&mut peer, &acked).await;
    drop(serve);
    let lost: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|i| !seen.contains_key(i))
        .collect();
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    println!(
        "crash_smpp: {} acknowledged, {} delivered, {} lost, {duplicates} duplicate deliveries, {KILLS} SIGKILLs, {:.1}s",
        acked.len(),
        seen.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        acked.len(),
        TOTAL,
        "every message was acknowledged in the end"
    );
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
}
