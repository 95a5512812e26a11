//! smsmta's ESME side beside Kannel's bearerbox, against the same SMSC: Kannel's own fake SMSC
//! `drive_smpp` (Debian kannel-extras). drive_smpp sends N texts from 456 to 123 as deliver_sm
//! and waits for an answer to each as submit_sm (at most 500 unanswered); it says when the
//! last answer came. The round trip is timed from the gateway's start to that line, so start-up
//! and bind count for both.
//!
//! - Kannel: bearerbox binds to drive_smpp (transmitter and receiver, as drive_smpp.conf
//!   does), its file store on; smsbox answers each text ("hello world", a default
//!   sms-service).
//! - smsmta: `smsmta serve` binds as a transmitter and a receiver (`bind = "pair"`); each text
//!   is stored (journal, fsync) before its deliver_sm_resp, delivered over SIP to a fake BTS
//!   handset, which answers 456 by SIP MESSAGE; that answer is stored before its 202 and leaves
//!   through the default `[[smpp.route]]` as submit_sm. Two durable commits a round trip.
//!
//! drive_smpp also connects to 127.0.0.1:13001 as an smsbox (a fixed port in its code):
//! bearerbox listens there; for smsmta the bench holds the port.
//!
//! Run: `cargo bench --bench upstream_rate`. Needs drive_smpp, bearerbox and smsbox
//! (tests/run-all.sh installs them).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/peers/mod.rs"]
mod peers;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DRIVE: &str = "/usr/lib/kannel/test/drive_smpp";
const N: usize = 5_000;

fn drive(port: u16) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut c = Command::new(DRIVE)
        .args(["-v", "1", "-p", &port.to_string(), "-m", &N.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drive_smpp (Debian kannel-extras) is missing");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = c.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    (c, rx)
}

fn wait_done(rx: &std::sync::mpsc::Receiver<String>, t0: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("drive_smpp got every answer within 300 s");
        if l.contains("ESME has submitted all messages to SMSC") {
            return t0.elapsed();
        }
    }
}

fn spawn(bin: &str, conf: &std::path::Path) -> Child {
    Command::new(bin)
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} (Debian kannel) is missing: {e}"))
}

fn kannel() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let (mut d, rx) = drive(port);
    let smsc = |which: &str| {
        format!(
            "group = smsc\nsmsc = smpp\nsmsc-id = drive\nhost = 127.0.0.1\n{which} = {port}\nsystem-type = \"VMA\"\nsmsc-username = \"foo\"\nsmsc-password = \"bar\"\n\n"
        )
    };
    let conf = format!(
        "group = core\nadmin-port = {admin}\nsmsbox-port = 13001\nadmin-password = bar\nlog-file = \"{dir}/bb.log\"\nlog-level = 2\n\
         box-allow-ip = \"127.0.0.1\"\nstore-type = file\nstore-location = \"{dir}/kannel.store\"\n\n{tx}{rx}\
         group = smsbox\nbearerbox-host = 127.0.0.1\nsendsms-port = {sendsms}\nlog-file = \"{dir}/sb.log\"\nlog-level = 2\n\n\
         group = sms-service\nkeyword = default\ntext = \"hello world\"\n",
        admin = common::free_port(),
        sendsms = common::free_port(),
        dir = dir.path().display(),
        tx = smsc("port"),
        rx = smsc("receive-port"),
    );
    let path = dir.path().join("kannel.conf");
    std::fs::write(&path, conf).unwrap();
    let t0 = Instant::now();
    let mut bb = spawn("bearerbox", &path);
    std::thread::sleep(Duration::from_millis(300));
    let mut sb = spawn("smsbox", &path);
    let took = wait_done(&rx, t0);
    for c in [&mut sb, &mut bb, &mut d] {
        let _ = c.kill();
        let _ = c.wait();
    }
    took
}

async fn smsmta() -> Duration {
    let hold = std::net::TcpListener::bind("127.0.0.1:13001").expect("127.0.0.1:13001 is free");
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in hold.incoming().flatten() {
            keep.push(s);
        }
    });
    let port = common::free_port();
    let (mut d, rx) = drive(port);
    let mut handset = peers::SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!(
            "{}[smpp]\n[[smpp.upstream]]\nname = \"drive\"\naddress = \"127.0.0.1:{port}\"\nsystem_id = \"foo\"\npassword = \"bar\"\nbind = \"pair\"\nwindow = 100\n[[smpp.route]]\nprefix = \"\"\nupstream = \"drive\"\n[delivery]\nbts = \"{}\"\n",
            common::LOOPBACK,
            handset.addr
        ),
    );
    common::add_subscriber(&cfg, "123", "001010000000123");
    let t0 = Instant::now();
    let serve = common::Serve::start(&cfg);
    let sip = serve.sip;
    // The handset answers every text to 456, from its own IMSI.
    let answering = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = sock.local_addr().unwrap();
        let mut n = 0u64;
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                r = handset.rx.recv() => {
                    if r.is_none() { return; }
                    n += 1;
                    let body = "hello world";
                    let req = format!(
                        "MESSAGE sip:smsc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-b{n}\r\nMax-Forwards: 70\r\n\
                         From: <sip:IMSI001010000000123@127.0.0.1>;tag=b{n}\r\nTo: <sip:456@127.0.0.1>\r\nCall-ID: bench-{n}\r\n\
                         CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.send_to(req.as_bytes(), sip).await;
                }
                _ = sock.recv_from(&mut buf) => {}
            }
        }
    });
    let took = tokio::task::spawn_blocking(move || wait_done(&rx, t0))
        .await
        .unwrap();
    answering.abort();
    drop(serve);
    let _ = d.kill();
    let _ = d.wait();
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("drive_smpp round trips (deliver_sm in, submit_sm answer out), N = {N}");
    let k = tokio::task::spawn_blocking(kannel).await.unwrap();
    let s = smsmta().await;
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "kannel bearerbox+smsbox (file store): {:>8.0} round trips/s ({:.2} s)",
        rate(k),
        k.as_secs_f64()
    );
    println!(
        "smsmta (journal, SIP handset):        {:>8.0} round trips/s ({:.2} s)",
        rate(s),
        s.as_secs_f64()
    );
    println!("ratio smsmta / kannel: {:.2}", rate(s) / rate(k));
}
