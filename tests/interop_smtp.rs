//! Interop with swaks (Debian package swaks; tests/run-all.sh installs it) against
//! `smsmta serve`: plain SMTP, STARTTLS, and AUTH (PLAIN and LOGIN, under TLS only) on the
//! main listener and on the submission listener; relaying only after AUTH when the client is
//! not in a trusted network.
//!
//! Ignored by plain `cargo test`; without swaks (or openssl, which makes the test certificate)
//! these tests fail, naming the peer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, Serve};
use smsmta::spool::{Queue, Spool};

const PEER: &str = "swaks (Debian package swaks; tests/run-all.sh installs it)";

fn swaks(server: SocketAddr, args: &[&str]) -> Output {
    Command::new("swaks")
        .args([
            "--server",
            &server.to_string(),
            "--from",
            "alice@example.org",
            "--timeout",
            "20",
        ])
        .args(["--header", "Subject: from swaks"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("peer missing: {PEER}: {e}"))
}

fn ok(o: &Output) -> String {
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "swaks failed ({}):\n{text}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

fn cert(dir: &Path) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mta.test",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap_or_else(|e| panic!("peer missing: openssl (to make a test certificate): {e}"));
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn hash(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

#[test]
#[ignore = "interop: needs swaks and openssl; run by tests/run-all.sh"]
fn swaks_plain_starttls_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    cert(dir.path());
    let extra = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\nsubmission_listen = \"127.0.0.1:0\"\ntrusted_networks = []\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[[smtp.users]]\nname = \"alice\"\npassword_hash = \"{}\"\nsenders = [\"alice@example.org\"]\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display(),
        hash("correct horse")
    );
    let config = common::config(dir.path(), &extra);
    let serve = Serve::start(&config);
    let sub = serve.submission.expect("submission listener");

    // Plain SMTP to a number: accepted from anyone.
    let out = ok(&swaks(serve.smtp, &["--to", "15551234567@sms.test"]));
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // STARTTLS.
    let out = ok(&swaks(
        serve.smtp,
        &["--to", "15551234568@sms.test", "--tls"],
    ));
    assert!(out.contains("220 2.0.0 Ready to start TLS"), "{out}");
    // Relay without AUTH from an untrusted client: refused.
    let o = swaks(serve.smtp, &["--to", "bob@other.example"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("554 5.7.1"));
    // AUTH without TLS: refused (538), the password never travels in the clear.
    let o = swaks(
        serve.smtp,
        &[
            "--to",
            "bob@other.example",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "correct horse",
        ],
    );
    assert!(!o.status.success());
    // AUTH PLAIN and LOGIN under TLS: relaying allowed.
    for mech in ["PLAIN", "LOGIN"] {
        let out = ok(&swaks(
            serve.smtp,
            &[
                "--to",
                "bob@other.example",
                "--tls",
                "--auth",
                mech,
                "--auth-user",
                "alice",
                "--auth-password",
                "correct horse",
            ],
        ));
        assert!(out.contains("235 2.7.0"), "{out}");
    }
    // A wrong password fails.
    let o = swaks(
        serve.smtp,
        &[
            "--to",
            "bob@other.example",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "wrong",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("535 5.7.8"));
    // Submission: AUTH required before MAIL, even to a number.
    let o = swaks(sub, &["--to", "15551234567@sms.test"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("530 5.7.0"));
    let out = ok(&swaks(
        sub,
        &[
            "--to",
            "15551234567@sms.test",
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "correct horse",
        ],
    ));
    assert!(out.contains("queued as"), "{out}");
    let _ = serve.stop();

    let spool = Spool::open(dir.path().join("spool"), 1 << 24).unwrap();
    let files: Vec<_> = spool
        .list(Queue::Incoming)
        .unwrap()
        .into_iter()
        .map(|id| spool.read(Queue::Incoming, id).unwrap())
        .collect();
    assert_eq!(
        files.len(),
        5,
        "plain, STARTTLS, two relayed after AUTH, one submission"
    );
    let protocols: Vec<String> = files
        .iter()
        .map(|f| {
            let m = String::from_utf8_lossy(&f.message).into_owned();
            m.split(" with ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        protocols,
        ["ESMTP", "ESMTPS", "ESMTPSA", "ESMTPSA", "ESMTPSA"]
    );
}

#[test]
#[ignore = "interop: needs Postfix and swaks; run by tests/run-all.sh"]
fn postfix_relays_mail_for_the_sms_domain_into_smsmta() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), common::LOOPBACK);
    let serve = Serve::start(&config);
    let pf_dir = dir.path().join("postfix");
    let pf_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _postfix = common::Postfix::start(&pf_dir, pf_port, "relay", Some(serve.smtp.port()));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // A user's mail reaches Postfix, whose transport map sends the SMS domain to smsmta.
    let out = ok(&swaks(
        SocketAddr::from(([127, 0, 0, 1], pf_port)),
        &[
            "--to",
            "15551234567@sms.test",
            "--body",
            "relayed by postfix",
        ],
    ));
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let spool = Spool::open(dir.path().join("spool"), 1 << 24).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let files = loop {
        let ids = spool.list(Queue::Incoming).unwrap();
        if !ids.is_empty() || std::time::Instant::now() > deadline {
            break ids;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        files.len(),
        1,
        "postfix delivered into smsmta: {}",
        std::fs::read_to_string(pf_dir.join("maillog")).unwrap_or_default()
    );
    let f = spool.read(Queue::Incoming, files[0]).unwrap();
    assert_eq!(f.envelope.recipients[0].address, "15551234567@sms.test");
    assert_eq!(f.envelope.sender, "alice@example.org");
    let m = String::from_utf8_lossy(&f.message);
    assert!(
        m.contains("by postfix.test (Postfix)"),
        "Postfix's own Received line is kept: {m}"
    );
    assert!(m.contains("relayed by postfix"));
    let log = std::fs::read_to_string(pf_dir.join("maillog")).unwrap_or_default();
    assert!(
        log.contains("status=sent (250 2.0.0 Ok: queued as"),
        "{log}"
    );
    let _ = serve.stop();
}
