//! Interop with SIPp (Debian package sip-tester; tests/run-all.sh installs it):
//!
//! 1. a SIPp client sends 1,000 MESSAGEs (500 text/plain, 500 vnd.3gpp.sms hex as OpenBTS sends
//!    them) to `smsmta serve`: every one gets 202 (SIPp exits 0 only when every call passed)
//!    and the spool holds exactly 1,000 messages;
//! 2. a SIPp server receives MESSAGEs from our client transaction: 20 answered at once, and one
//!    that SIPp ignores twice before answering the third copy.
//!
//! Ignored by plain `cargo test`; without SIPp these tests fail, naming it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::Serve;
use std::time::{Duration, Instant};

use smsmta::sip::Transport;
use smsmta::sip::client::{SipClient, message_request};
use smsmta::sip::transaction::ClientTimers;
use smsmta::spool::{Queue, Spool};

const PEER: &str = "sipp (Debian package sip-tester; tests/run-all.sh installs it)";

fn require_sipp() {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(ok.is_ok(), "peer missing: {PEER}");
}

fn setup(dir: &Path) -> PathBuf {
    let config = common::config(dir, common::LOOPBACK);
    common::add_subscriber(&config, "15550001111", "001010000000001");
    config
}

fn run_sipp(
    scenario_file: &str,
    target: SocketAddr,
    calls: u32,
    rate: u32,
) -> std::process::ExitStatus {
    Command::new("sipp")
        .arg("-sf")
        .arg(common::sipp_scenario(scenario_file))
        .args(["-i", "127.0.0.1", "-p", &common::free_port().to_string()])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "200",
        ])
        .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("peer missing: {PEER}: {e}"))
}

#[test]
#[ignore = "interop: needs sipp (sip-tester); run by tests/run-all.sh"]
fn sipp_client_sends_1000_messages_and_every_one_is_spooled() {
    require_sipp();
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let serve = Serve::start(&config);
    let st = run_sipp("uac-message-text.xml", serve.sip, 500, 250);
    assert!(st.success(), "sipp text/plain run failed: {st}");
    let st = run_sipp("uac-message-3gpp.xml", serve.sip, 500, 250);
    assert!(st.success(), "sipp vnd.3gpp.sms run failed: {st}");
    let _ = serve.stop();
    let spool = Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
    let ids = spool.list(Queue::Incoming).unwrap();
    assert_eq!(
        ids.len(),
        1000,
        "every accepted MESSAGE is in the spool, once"
    );
    let (mut text, mut sms) = (0, 0);
    for id in ids {
        let f = spool.read(Queue::Incoming, id).unwrap();
        assert_eq!(f.envelope.sender, "15550001111@sms.test");
        match f.envelope.recipients[0].address.as_str() {
            "15551234567@sms.test" => text += 1,
            "555@sms.test" => sms += 1,
            other => panic!("unexpected recipient {other}"),
        }
    }
    assert_eq!((text, sms), (500, 500));
}

fn start_uas(scenario_file: &str, calls: u32, stats: &Path) -> (Child, SocketAddr) {
    let port = common::free_port();
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(common::sipp_scenario(scenario_file))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-bind_local"])
        .args(["-m", &calls.to_string(), "-timeout", "60s", "-nostdin"])
        .arg("-trace_counts")
        .current_dir(stats)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("peer missing: {PEER}: {e}"));
    // Give SIPp a moment to bind.
    std::thread::sleep(Duration::from_millis(500));
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sipp did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs sipp (sip-tester); run by tests/run-all.sh"]
async fn our_client_transaction_delivers_to_a_sipp_server() {
    require_sipp();
    let client = SipClient::bind("127.0.0.1:0".parse().unwrap(), ClientTimers::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (uas, addr) = start_uas("uas-message.xml", 20, dir.path());
    for i in 0..20 {
        let req = message_request(
            "sip:IMSI001010000000001@127.0.0.1",
            "sip:15550001111@sms.test",
            &format!("t{i}"),
            "sip:15551234567@sms.test",
            &client.call_id(),
            1,
            "text/plain",
            format!("message {i}").into_bytes(),
        );
        let resp = client.send(req, addr, Transport::Udp).await.unwrap();
        assert_eq!(resp.status, 200, "message {i}");
    }
    assert!(wait_exit(uas).success(), "sipp UAS saw a failed call");

    let (uas, addr) = start_uas("uas-message-ignore-two.xml", 1, dir.path());
    let started = Instant::now();
    let req = message_request(
        "sip:IMSI001010000000001@127.0.0.1",
        "sip:15550001111@sms.test",
        "lossy",
        "sip:15551234567@sms.test",
        &client.call_id(),
        1,
        "text/plain",
        b"third time lucky".to_vec(),
    );
    let resp = client.send(req, addr, Transport::Udp).await.unwrap();
    assert_eq!(resp.status, 200);
    // Answered after the third copy: copies went out at 0, 0.5 and 1.5 s (Timer E).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1700),
        "answered after {took:?}"
    );
    assert!(wait_exit(uas).success());
    // SIPp's own count: two retransmissions of the MESSAGE reached it and went unanswered.
    let counts = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.to_string_lossy().contains("uas-message-ignore-two")
                && p.to_string_lossy().ends_with("_counts.csv")
        })
        .collect::<Vec<_>>();
    let csv = std::fs::read_to_string(counts.last().expect("sipp counts file")).unwrap();
    let last = csv.lines().last().unwrap();
    // Columns: ...;1_MESSAGE_Recv;1_MESSAGE_Retrans;...
    let header: Vec<&str> = csv.lines().next().unwrap().split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let col = header
        .iter()
        .position(|h| h.ends_with("_MESSAGE_Retrans"))
        .expect("retrans column");
    assert_eq!(values[col], "2", "sipp saw two retransmissions: {csv}");
}
