//! Crash test for delivery: 2,000 messages SMTP in -> SIP out while the server (the real
//! `smsmta serve` binary) is killed with SIGKILL and restarted 10 times. Every message
//! acknowledged with 250 must reach the test handset at least once; duplicates (expected only
//! for messages in flight at a kill) are counted and reported.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Serve;
use peers::SipPeer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TOTAL: usize = 2_000;
const KILLS: usize = 10;
const B: &str = "15551234567";

/// Sends messages `next..TOTAL` on one session until the server dies or `stop_after` passes;
/// returns the numbers acknowledged with 250.
async fn send_until_killed(smtp: SocketAddr, next: usize, stop_after: Duration) -> Vec<usize> {
    let mut acked = Vec::new();
    let Ok(s) = TcpStream::connect(smtp).await else {
        return acked;
    };
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let start = Instant::now();
    macro_rules! reply {
        () => {{
            loop {
                line.clear();
                match r.read_line(&mut line).await {
                    Ok(0) | Err(_) => return acked,
                    Ok(_) => {}
                }
                if line.len() < 4 || line.as_bytes()[3] == b' ' {
                    break line[..3.min(line.len())].to_string();
                }
            }
        }};
    }
    reply!();
    if w.write_all(b"EHLO crash.test\r\n").await.is_err() {
        return acked;
    }
    reply!();
    for i in next..TOTAL {
        if start.elapsed() > stop_after {
            break;
        }
        let txn = format!("MAIL FROM:<{B}@sms.test>\r\nRCPT TO:<{B}@sms.test>\r\nDATA\r\n");
        if w.write_all(txn.as_bytes()).await.is_err() {
            return acked;
        }
        for _ in 0..3 {
            reply!();
        }
        let data = format!("From: {B}@sms.test\r\nTo: {B}@sms.test\r\n\r\ncrash test {i}\r\n.\r\n");
        if w.write_all(data.as_bytes()).await.is_err() {
            return acked;
        }
        if reply!() == "250" {
            acked.push(i);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_is_delivered_across_ten_sigkills() {
    let mut peer = SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n[delivery]\nbts = \"{}\"\nhandset_backoff_min = \"1s\"\nhandset_backoff_max = \"1s\"\n",
            peer.addr
        ),
    );
    common::add_subscriber(&cfg, B, "001010000000002");
    let started = Instant::now();
    let mut acked: HashSet<usize> = HashSet::new();
    let mut next = 0;
    for kill in 0..KILLS {
        let serve = Serve::start(&cfg);
        // Kill at a different moment each round: 150-600 ms of traffic.
        let window = Duration::from_millis(150 + (kill as u64 * 53) % 450);
        let smtp = serve.smtp;
        let sender = tokio::spawn(send_until_killed(smtp, next, Duration::from_secs(30)));
        tokio::time::sleep(window).await;
        tokio::task::spawn_blocking(move || serve.kill())
            .await
            .unwrap();
        let got = sender.await.unwrap();
        next = got.last().map_or(next, |l| l + 1).max(next);
        acked.extend(got);
    }
    // The last start sends the rest and stays up until everything is delivered.
    let serve = Serve::start(&cfg);
    let got = send_until_killed(serve.smtp, next, Duration::from_secs(60)).await;
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
        "crash_delivery: {} acknowledged, {} delivered, {} lost, {duplicates} duplicate deliveries, {KILLS} SIGKILLs, {:.1}s",
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
