//! Interop with an SMSC made with node-smpp (npm `smpp` 0.5.1, an SMPP 3.4 implementation
//! independent of smsmta's; tests/interop/node-smpp/smsc.js, installed by tests/run-all.sh with
//! `npm ci`) as the upstream of smsmta's ESME side, over a transceiver bind: a text from the
//! SMSC reaches the fake BTS handset; the handset's text to a UK number leaves by the `44`
//! route as submit_sm asking for a receipt (TP-SRR); the SMSC's delivery receipt comes back
//! as deliver_sm and reaches the handset as an SMS-STATUS-REPORT. Kannel's drive_smpp, the
//! other SMSC the issue names, sends no receipts; this one does.
//!
//! Ignored by plain `cargo test`; without node or the package the test fails, naming them.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PEER: &str =
    "node-smpp (Node.js and `npm ci` in tests/interop/node-smpp; tests/run-all.sh installs it)";

/// The SMSC's JSON event lines, as they come.
struct Smsc {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Smsc {
    fn start(port: u16) -> Smsc {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/node-smpp");
        assert!(
            std::path::Path::new(dir).join("node_modules/smpp").exists(),
            "{PEER} is missing"
        );
        let mut child = Command::new("node")
            .current_dir(dir)
            .args([
                "smsc.js",
                &port.to_string(),
                "smsmta",
                "pw",
                "447700900123",
                "15551234567",
                "hello from node-smpp",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{PEER}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut s = Smsc { child, events: rx };
        s.wait_for("listening", 10);
        s
    }

    /// The next event named `name` within `secs` (others on the way are skipped).
    fn wait_for(&mut self, name: &str, secs: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the SMSC reported no {name} within {secs} s"));
            if v["event"] == name {
                return v;
            }
        }
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs node-smpp; run by tests/run-all.sh"]
async fn a_node_smpp_smsc_carries_texts_both_ways_and_its_receipt_becomes_a_status_report() {
    let port = common::free_port();
    let mut smsc = tokio::task::spawn_blocking(move || Smsc::start(port))
        .await
        .unwrap();
    let mut handset = peers::SipPeer::ok().await;
    let extra = format!(
        "[smpp]\n[[smpp.upstream]]\nname = \"node\"\naddress = \"127.0.0.1:{port}\"\nsystem_id = \"smsmta\"\npassword = \"pw\"\n\
         [[smpp.route]]\nprefix = \"44\"\nupstream = \"node\"\n[delivery]\nbts = \"{}\"\n",
        handset.addr
    );
    let env = common::Env::start(&extra).await;
    env.add_subscriber("15551234567", "001010000000001").await;

    // In: the SMSC's text reaches the handset; its deliver_sm was answered OK.
    let (smsc, bind) = tokio::task::spawn_blocking(move || {
        let b = smsc.wait_for("bind_transceiver", 20);
        (smsc, b)
    })
    .await
    .unwrap();
    assert_eq!(bind["ok"], true, "{bind}");
    let (t, parts) = handset.next_text(20).await;
    assert_eq!(t, "hello from node-smpp");
    assert_eq!(
        parts[0].deliver.as_ref().unwrap().originator.value,
        "447700900123"
    );
    let (mut smsc, resp) = tokio::task::spawn_blocking(move || {
        let mut smsc = smsc;
        let r = smsc.wait_for("deliver_sm_resp", 10);
        (smsc, r)
    })
    .await
    .unwrap();
    assert_eq!(resp["command_status"], 0, "{resp}");

    // Out: the handset's text leaves by the 44 route, asking for a receipt.
    common::submit_with_report(env.udp(), "001010000000001", "447700900123", "see you at 8").await;
    let (smsc2, sub) = tokio::task::spawn_blocking(move || {
        let s = smsc.wait_for("submit_sm", 20);
        (smsc, s)
    })
    .await
    .unwrap();
    smsc = smsc2;
    assert_eq!(sub["dest"], "447700900123", "{sub}");
    assert_eq!(sub["source"], "15551234567", "{sub}");
    assert_eq!(sub["text"], "see you at 8", "{sub}");
    assert_eq!(sub["registered_delivery"], 1, "{sub}");

    // The SMSC's receipt: answered OK, and the handset gets its status report (TP-MR 42).
    let r = handset.next(20).await;
    let report = r.report.expect("an SMS-STATUS-REPORT");
    assert_eq!(report.status, smsmta::sms::tpdu::status::DELIVERED);
    assert_eq!(report.message_ref, 42);
    assert_eq!(report.recipient.value, "447700900123");
    let receipt = tokio::task::spawn_blocking(move || smsc.wait_for("receipt_resp", 10))
        .await
        .unwrap();
    assert_eq!(receipt["command_status"], 0, "{receipt}");
    assert_eq!(receipt["id"], sub["id"]);
    env.stop().await;
}
