//! Interop with Kannel's fake SMSC `drive_smpp` (Debian package `kannel-extras`;
//! tests/run-all.sh installs it) as the upstream of smsmta's ESME side: smsmta binds to it as a
//! transmitter and a receiver (drive_smpp knows no transceiver); drive_smpp sends texts from
//! 456 to our subscriber 123 as deliver_sm, which reach the fake BTS handset through the
//! spool and SIP; the handset answers each to 456 (not one of ours), and the `[[smpp.route]]`
//! default sends the answer to drive_smpp as submit_sm. drive_smpp stops sending after 500
//! unanswered texts and says when every answer came, which the test waits for.
//!
//! drive_smpp also connects to 127.0.0.1:13001 as Kannel's smsbox would (a fixed port in its
//! code): the test holds that port open for it.
//!
//! Ignored by plain `cargo test`; without drive_smpp the test fails, naming the peer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Serve;
use peers::SipPeer;

const PEER: &str = "Kannel's drive_smpp (Debian package kannel-extras: /usr/lib/kannel/test/drive_smpp; tests/run-all.sh installs it)";
const DRIVE: &str = "/usr/lib/kannel/test/drive_smpp";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs drive_smpp (Debian kannel-extras); run by tests/run-all.sh"]
async fn texts_from_an_upstream_smsc_reach_the_handset_and_its_answers_go_back_upstream() {
    assert!(std::path::Path::new(DRIVE).exists(), "{PEER} is missing");
    const N: usize = 30;
    // drive_smpp's smsbox side: accepted and left idle.
    let smsbox = std::net::TcpListener::bind("127.0.0.1:13001")
        .unwrap_or_else(|e| panic!("127.0.0.1:13001 is taken ({e}); drive_smpp needs it"));
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in smsbox.incoming().flatten() {
            keep.push(s);
        }
    });
    let port = common::free_port();
    let mut drive = Command::new(DRIVE)
        .args(["-v", "1", "-p", &port.to_string(), "-m", &N.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{PEER} is missing ({e})"));
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let stderr = drive.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(l);
        }
    });

    let mut handset = SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!(
            "{}[smpp]\n[[smpp.upstream]]\nname = \"drive\"\naddress = \"127.0.0.1:{port}\"\nsystem_id = \"smsmta\"\npassword = \"pw\"\nbind = \"pair\"\nwindow = 50\nreconnect_min = \"200ms\"\n[[smpp.route]]\nprefix = \"\"\nupstream = \"drive\"\n[delivery]\nbts = \"{}\"\n",
            common::LOOPBACK,
            handset.addr
        ),
    );
    common::add_subscriber(&cfg, "123", "001010000000123");
    let serve = Serve::start(&cfg);

    let sip = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sip.local_addr().unwrap();
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while got.len() < N {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} texts from drive_smpp reached the handset",
            got.len()
        );
        let (text, parts) = handset.next_text(60).await;
        let from = parts[0]
            .deliver
            .as_ref()
            .map(|d| d.originator.value.clone());
        assert_eq!(from.as_deref(), Some("456"), "{text}");
        let n: usize = text.trim().parse().unwrap_or_else(|_| panic!("{text:?}"));
        if !got.insert(n) {
            continue;
        }
        // The handset answers 456, which is none of our subscribers: out through drive_smpp.
        let body = format!("answer {n}");
        let req = format!(
            "MESSAGE sip:smsc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-d{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:IMSI001010000000123@127.0.0.1>;tag=d{n}\r\nTo: <sip:456@127.0.0.1>\r\nCall-ID: drive-{n}\r\n\
             CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sip.send_to(req.as_bytes(), serve.sip).unwrap();
    }
    assert_eq!(got, (1..=N).collect(), "every text, once");
    // drive_smpp says so when every answer came as submit_sm.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match line_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.contains("ESME has submitted all messages to SMSC") => break,
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "drive_smpp did not get all {N} answers; it said:\n{}",
                seen.join("\n")
            ),
        }
    }
    let _ = drive.kill();
    let _ = drive.wait();
    drop(serve);
}
