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
        "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\nsubmission_listen = \"127.0.0.1:0\"\ntrusted_networks = []\nregistry_authoritative = false\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[[smtp.users]]\nname = \"alice\"\npassword_hash = \"{}\"\nsenders = [\"alice@example.org\"]\nnumbers = [\"2337\"]\n",
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
    // A listed number may be the sender (the text will come from it); any other is refused.
    let login = [
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "correct horse",
    ];
    let o = swaks(
        sub,
        &[
            &[
                "--to",
                "15551234567@sms.test",
                "--from",
                "15551230000@sms.test",
            ][..],
            &login,
        ]
        .concat(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("553 5.7.1"));
    let out = ok(&swaks(
        sub,
        &[
            &["--to", "15551234567@sms.test", "--from", "2337@sms.test"][..],
            &login,
        ]
        .concat(),
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
        6,
        "plain, STARTTLS, two relayed after AUTH, two submissions"
    );
    let numbered: Vec<_> = files
        .iter()
        .filter_map(|f| f.envelope.origin.sender_number.clone())
        .collect();
    assert_eq!(numbered, ["2337"], "only the listed number is vouched for");
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
        [
            "ESMTP", "ESMTPS", "ESMTPSA", "ESMTPSA", "ESMTPSA", "ESMTPSA"
        ]
    );
}

#[test]
#[ignore = "interop: needs Postfix and swaks; run by tests/run-all.sh"]
fn postfix_relays_mail_for_the_sms_domain_into_smsmta() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), common::LOOPBACK);
    // The number is a subscriber: smsmta refuses unknown numbers at RCPT.
    common::add_subscriber(&config, "15551234567", "001010000000002");
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

/// A test CA (ca.pem) and a certificate it signed for `localhost` and 127.0.0.1 (cert.pem,
/// key.pem) in `dir`.
fn localhost_cert(dir: &Path) {
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("peer missing: openssl (to make a test certificate): {e}"));
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=smsmta test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
}

fn incoming(spool: &Path) -> Vec<String> {
    let s = Spool::open(spool, 1 << 24).unwrap();
    s.list(Queue::Incoming)
        .unwrap()
        .into_iter()
        .map(|id| {
            String::from_utf8_lossy(&s.read(Queue::Incoming, id).unwrap().message).into_owned()
        })
        .collect()
}

#[test]
#[ignore = "interop: needs swaks and openssl; run by tests/run-all.sh"]
fn outbound_mail_uses_starttls_and_verify_refuses_an_unknown_certificate() {
    // B: the smarthost, offering STARTTLS with a certificate for localhost.
    let bdir = tempfile::tempdir().unwrap();
    localhost_cert(bdir.path());
    let b_cfg = common::config(
        bdir.path(),
        &format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            bdir.path().join("cert.pem").display(),
            bdir.path().join("key.pem").display()
        ),
    );
    let b = Serve::start(&b_cfg);
    let a_with = |dir: &Path, tls: &str, ca: &str| {
        common::config(
            dir,
            &format!(
                "{}[delivery]\nsmarthost = \"localhost:{}\"\nsmarthost_tls = \"{tls}\"\nsmarthost_ca = \"{ca}\"\nmail_backoff_min = \"1s\"\nmail_backoff_max = \"1s\"\n",
                common::LOOPBACK,
                b.smtp.port()
            ),
        )
    };
    // A verifies B's certificate against the test CA: the mail arrives over TLS.
    let adir = tempfile::tempdir().unwrap();
    let ca = bdir.path().join("ca.pem").display().to_string();
    let a = Serve::start(&a_with(adir.path(), "verify", &ca));
    ok(&swaks(
        a.smtp,
        &["--to", "bob@example.org", "--body", "over TLS"],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let got = loop {
        let m = incoming(&bdir.path().join("spool"));
        if !m.is_empty() || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        got.len(),
        1,
        "the smarthost did not get the mail: {:?}",
        a.log.lock().unwrap()
    );
    assert!(got[0].contains("with ESMTPS"), "not over TLS: {}", got[0]);
    drop(a);

    // Verify without the CA: the certificate is refused, nothing goes in the clear, the mail
    // waits.
    let adir2 = tempfile::tempdir().unwrap();
    let a2 = Serve::start(&a_with(adir2.path(), "verify", ""));
    ok(&swaks(
        a2.smtp,
        &["--to", "carol@example.org", "--body", "never in the clear"],
    ));
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        incoming(&bdir.path().join("spool")).len(),
        1,
        "sent without verified TLS"
    );
    let waiting = Spool::open(adir2.path().join("spool"), 1 << 24).unwrap();
    let queued: usize = Queue::MESSAGE_QUEUES
        .iter()
        .map(|q| waiting.list(*q).unwrap().len())
        .sum();
    assert_eq!(queued, 1, "the mail was dropped instead of waiting");
}
