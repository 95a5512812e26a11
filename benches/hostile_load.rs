//! Memory and service under hostile load (issue 11): the server's resident memory before and
//! after 30,000 SIP MESSAGEs from a source outside the trusted networks, and while one address
//! holds 300 idle SMTP connections, whether another address is still served and how fast.
//!
//! Run: `cargo bench --bench hostile_load`. The server is `smsmta serve` (this build) on
//! loopback with `[sip] trusted_networks = ["127.0.0.1/32"]`; 127.0.0.2 plays the attacker,
//! 127.0.0.3 an ordinary client. Bounded: 30,000 requests with at most 256 outstanding, 60 s.
//! The reference is the same server before the load, in the same run (a ratio).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn message(server: SocketAddr, local: SocketAddr, i: usize) -> String {
    let body = "hello from outside";
    format!(
        "MESSAGE sip:smsc@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKatk{i}\r\nFrom: <sip:IMSI001010000000001@127.0.0.2>;tag=t{i}\r\nTo: <sip:15551234567@{server}>\r\nCall-ID: attack-{i}@127.0.0.2\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn flood(server: SocketAddr, total: usize) -> (usize, usize, Duration) {
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    let local = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut sent, mut forbidden, mut other) = (0usize, 0usize, 0usize);
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    while (sent < total || forbidden + other < sent) && Instant::now() < deadline {
        while sent < total && sent - (forbidden + other) < 256 {
            sock.send_to(message(server, local, sent).as_bytes(), server)
                .unwrap();
            sent += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 403") => forbidden += 1,
            Ok(_) => other += 1,
            // A lost datagram: count it as answered so the window moves (reported below).
            Err(_) => other += (sent - forbidden - other).min(256),
        }
    }
    (forbidden, other, start.elapsed())
}

fn smtp_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2_connect(from, to);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn socket2_connect(from: &str, to: SocketAddr) -> TcpStream {
    // std has no bind-before-connect; tokio's TcpSocket does, on a small runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap().into_std().unwrap()
    });
    // into_std leaves the socket non-blocking.
    s.set_nonblocking(false).unwrap();
    s
}

fn first_line(s: &TcpStream) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let _ = r.read_line(&mut line);
    line
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_logging(
        dir.path(),
        "warn,smsmta::app=info",
        &format!(
            "{}trusted_networks = [\"127.0.0.1/32\"]\n",
            common::LOOPBACK.replace(
                "[smtp]\n",
                "trusted_networks = [\"127.0.0.1/32\"]\n[smtp]\n"
            )
        ),
    );
    let serve = common::Serve::start(&cfg);
    let pid = serve.pid();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);

    let (forbidden, other, took) = flood(serve.sip, 30_000);
    std::thread::sleep(Duration::from_millis(500));
    let after_sip = rss_kib(pid);

    // 300 idle connections from one address.
    let mut held = Vec::new();
    let (mut greeted, mut refused) = (0, 0);
    for _ in 0..300 {
        let s = smtp_from("127.0.0.2", serve.smtp);
        let l = first_line(&s);
        if l.starts_with("220") {
            greeted += 1;
        } else if l.starts_with("421") {
            refused += 1;
        }
        held.push(s);
    }
    // Another address: served, and how fast.
    let t = Instant::now();
    let mut other_client = smtp_from("127.0.0.3", serve.smtp);
    let greeting = first_line(&other_client);
    other_client
        .write_all(b"EHLO ordinary.example\r\nQUIT\r\n")
        .unwrap();
    let served_in = t.elapsed();
    let after_smtp = rss_kib(pid);
    drop(held);

    println!("| measurement | value |");
    println!("|---|---|");
    println!("| RSS before | {before} KiB |");
    println!(
        "| 30,000 MESSAGEs from 127.0.0.2 (untrusted) | {forbidden} answered 403, {other} other or lost, in {:.2} s |",
        took.as_secs_f64()
    );
    println!(
        "| RSS after the MESSAGEs | {after_sip} KiB ({:.2}x before) |",
        after_sip as f64 / before as f64
    );
    println!(
        "| 300 SMTP connections from 127.0.0.2 | {greeted} greeted (the cap), {refused} refused 421 |"
    );
    println!(
        "| another address (127.0.0.3) while they are held | {} in {:.1} ms |",
        greeting.trim(),
        served_in.as_secs_f64() * 1000.0
    );
    println!(
        "| RSS with the 300 connections held | {after_smtp} KiB ({:.2}x before) |",
        after_smtp as f64 / before as f64
    );
    assert!(
        greeting.starts_with("220"),
        "another address was not served"
    );
    let _ = serve.stop();
}
