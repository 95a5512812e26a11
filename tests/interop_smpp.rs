//! Interop with smpplib (PyPI `smpplib`, an independent pure-Python SMPP client; tests/run-all.sh
//! installs it) against smsmta's SMPP server on loopback: bind_transceiver, submit_sm in the
//! default alphabet (with escaped characters) and in UCS-2, a long text in UDH parts (joined
//! into one), enquire_link, unbind. Every submit_sm_resp OK for a whole text names a message
//! that is in the spool with the text smpplib sent.
//!
//! Ignored by plain `cargo test`; without smpplib the test fails, naming the peer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

const PEER: &str = "smpplib (PyPI smpplib==2.2.4; tests/run-all.sh installs it)";

#[tokio::test]
#[ignore = "needs smpplib (PyPI); run by tests/run-all.sh"]
async fn smpplib_binds_submits_and_every_ok_is_in_the_spool() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import smpplib"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(have, "{PEER} is missing");
    let p = sha_crypt::Sha512Params::new(5_000).unwrap();
    let extra = format!(
        "[smpp]\nlisten = \"127.0.0.1:0\"\n[[smpp.esme]]\nsystem_id = \"smpplib\"\npassword_hash = \"{}\"\nsources = [\"INFO\"]\n",
        sha_crypt::sha512_simple("pw1", &p).unwrap()
    );
    let env = common::Env::start(&extra).await;
    env.add_subscriber("15551234567", "001010000000001").await;
    let addr = env.running.as_ref().unwrap().smpp.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/smpp/smpplib_client.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args([
                addr.ip().to_string(),
                addr.port().to_string(),
                "smpplib".into(),
                "pw1".into(),
                "INFO".into(),
                "15551234567".into(),
            ])
            .output()
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("smpplib finished in time")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("unbound"), "{stdout}");
    let all: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("resp "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f[1], "0", "submit_sm_resp status: {l}");
            f[2].to_string()
        })
        .collect();
    // Every part is answered OK; a part kept for later gets an ID of its own ("P..."), the
    // part that makes a text whole gets its queue ID.
    let ids: Vec<String> = all
        .iter()
        .filter(|i| !i.starts_with('P'))
        .cloned()
        .collect();
    assert_eq!((all.len(), ids.len()), (5, 4), "{stdout}");
    let queued = env.spooled(4).await;
    let mut texts = Vec::new();
    for id in &ids {
        let f = queued
            .iter()
            .find(|f| &f.id().to_string() == id)
            .unwrap_or_else(|| panic!("{id} was acknowledged and is not in the spool"));
        let m = mail_parser::MessageParser::default()
            .parse(&f.message)
            .unwrap();
        texts.push(m.body_text(0).unwrap().trim_end().to_string());
    }
    texts.sort();
    let long =
        "This text is longer than one SMS can carry, so smpplib sends it in parts. ".repeat(3);
    let mut want = vec![
        "Hello from smpplib",
        "at @ and {braces}",
        "Привет 🙂",
        long.trim_end(),
    ];
    want.sort();
    assert_eq!(texts, want);
    env.stop().await;
}
