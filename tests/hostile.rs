//! What a hostile handset, mail client or datagram sends, over loopback against the real
//! server, with 127.0.0.2 and up as the other hosts: each attack is refused or defused, and an
//! ordinary text is still delivered afterwards.
//!
//! Covered so far (issue 11, in part): handset names that once panicked the queue manager;
//! senders and REGISTER users with multi-byte characters; REGISTER bindings to contacts outside
//! the trusted networks, and REGISTER turned off; SIP responses forged from another host; mail
//! that borrows a local number as its From or forges status-report headers.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use common::Env;
use peers::SipPeer;
use smsmta::sip::message::{self, Message, Parsed, Response};
use tokio::net::UdpSocket;

const A: &str = "15551230000";
const A_IMSI: &str = "001010000000001";
const B: &str = "15551234567";
const B_IMSI: &str = "001010000000002";

async fn env(bts: SocketAddr, extra: &str) -> Env {
    let e = Env::start(&format!(
        "[delivery]\nbts = \"{bts}\"\nhandset_backoff_min = \"1s\"\nhandset_backoff_max = \"1s\"\n{extra}"
    ))
    .await;
    e.add_subscriber(A, A_IMSI).await;
    e.add_subscriber(B, B_IMSI).await;
    e
}

/// Sends `req(local)` from a fresh socket and returns the status line of the answer.
async fn transact(server: SocketAddr, req: impl Fn(SocketAddr) -> String) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(req(local).as_bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn message(server: SocketAddr, local: SocketAddr, from_user: &str, to: &str, text: &str) -> String {
    let call = format!("h{}{}", local.port(), text.len());
    format!(
        "MESSAGE sip:{to}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call}\r\nFrom: <sip:{from_user}@127.0.0.1>;tag={call}\r\nTo: <sip:{to}@{server}>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
}

fn register(server: SocketAddr, local: SocketAddr, aor: &str, contact: &str) -> String {
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKr{}\r\nFrom: <sip:{aor}@{server}>;tag=r1\r\nTo: <sip:{aor}@{server}>\r\nCall-ID: reg-{}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>;expires=3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    )
}

async fn ordinary_text_still_arrives(e: &Env, bts: &mut SipPeer) {
    let s = transact(e.udp(), |l| {
        message(e.udp(), l, &format!("IMSI{A_IMSI}"), B, "still here")
    })
    .await;
    assert!(s.starts_with("SIP/2.0 202"), "{s}");
    loop {
        let r = bts.next(10).await;
        if r.deliver
            .as_ref()
            .is_some_and(|d| d.user_data.body.text() == "still here")
        {
            assert!(r.uri.contains(B_IMSI));
            return;
        }
    }
}

#[tokio::test]
async fn a_text_to_a_multibyte_name_in_our_domain_does_not_stop_delivery() {
    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "").await;
    // Once: queued for our own domain, then `local[..4]` in the middle of 'é' killed the
    // queue manager while the doors went on answering 202.
    for text in [
        "abc\u{e9}@sms.test hi",
        "IMS\u{e9}1@sms.test hi",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}@sms.test x",
    ] {
        let s = transact(e.udp(), |l| {
            message(e.udp(), l, &format!("IMSI{A_IMSI}"), "smsc", text)
        })
        .await;
        assert!(s.starts_with("SIP/2.0 "), "{s}");
    }
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;
}

#[tokio::test]
async fn senders_and_registrations_with_multibyte_names_are_refused_not_panicked_on() {
    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "").await;
    for user in [
        "IMS\u{e9}001010000000001",
        "abc\u{e9}",
        "IMSI\u{e9}",
        "+\u{e9}",
    ] {
        let s = transact(e.udp(), |l| message(e.udp(), l, user, B, "x")).await;
        assert!(s.starts_with("SIP/2.0 403"), "{user}: {s}");
        let s = transact(e.udp(), |l| {
            register(e.udp(), l, user, "sip:x@127.0.0.1:5070")
        })
        .await;
        assert!(s.starts_with("SIP/2.0 404"), "{user}: {s}");
    }
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;
}

#[tokio::test]
async fn a_register_cannot_steer_texts_outside_the_trusted_networks() {
    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "[sip]\ntrusted_networks = [\"127.0.0.1/32\"]\n").await;
    for contact in [
        "sip:thief@127.0.0.66:5060",
        "sip:thief@evil.example:5060",
        "sip:thief@[::1]:5060",
    ] {
        let s = transact(e.udp(), |l| {
            register(e.udp(), l, &format!("IMSI{B_IMSI}"), contact)
        })
        .await;
        assert!(s.starts_with("SIP/2.0 403"), "{contact}: {s}");
    }
    // The text for B still goes to the BTS, not to a thief.
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;

    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "[sip]\nregister = false\n").await;
    let s = transact(e.udp(), |l| {
        register(e.udp(), l, &format!("IMSI{B_IMSI}"), "sip:x@127.0.0.1:5070")
    })
    .await;
    assert!(s.starts_with("SIP/2.0 405"), "{s}");
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;
}

#[tokio::test]
async fn a_response_forged_from_another_host_is_not_believed() {
    // The BTS at 127.0.0.2 answers 480 (away) after a moment; 127.0.0.5 races it with a 200
    // carrying the right branch. Believing the forgery would drop the text as delivered.
    let bts = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let bts_addr = bts.local_addr().unwrap();
    let forger = UdpSocket::bind("127.0.0.5:0").await.unwrap();
    let e = env(bts_addr, "").await;
    let s = transact(e.udp(), |l| {
        message(e.udp(), l, &format!("IMSI{A_IMSI}"), B, "for B only")
    })
    .await;
    assert!(s.starts_with("SIP/2.0 202"), "{s}");
    let mut buf = vec![0u8; 65_535];
    let mut attempts = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while attempts.len() < 2 {
        let (n, from) = tokio::time::timeout_at(deadline, bts.recv_from(&mut buf))
            .await
            .expect("the text was not tried again: a forged 200 was believed")
            .unwrap();
        let Ok(Parsed::Complete(Message::Request(req), _)) =
            message::parse(&buf[..n], true, 65_535)
        else {
            continue;
        };
        let branch = req.headers.get("Via").unwrap_or_default().to_string();
        if !attempts.insert(branch) {
            continue;
        }
        let forged = Response::to(&req, 200, "OK", "forged");
        forger.send_to(&forged.to_bytes(), from).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let real = Response::to(&req, 480, "Temporarily Unavailable", "bts");
        bts.send_to(&real.to_bytes(), from).await.unwrap();
    }
    e.stop().await;
}

#[tokio::test]
async fn mail_cannot_send_as_one_of_our_numbers_or_forge_a_status_report() {
    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "").await;
    let data = format!(
        "From: <{A}@sms.test>\r\nX-SMS-Report-MR: 1\r\nX-SMS-Report-Recipient: {B}\r\nX-SMS-Report-Status: 0\r\nX-SMS-Report-Submitted: 1\r\nX-SMS-Report-Discharged: 2\r\nSubject: x\r\n\r\nsend me your PIN\r\n"
    );
    let reply = common::smtp_transaction(
        e.smtp(),
        "mallory@evil.example",
        &format!("{B}@sms.test"),
        &data,
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let r = bts.next(10).await;
    assert!(r.report.is_none(), "a forged status report went out");
    let d = r.deliver.expect("a text");
    assert_ne!(d.originator.value, A, "the mail borrowed A's number");
    assert!(d.user_data.body.text().contains("send me your PIN"));
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;
}

/// Reads one SMTP reply (all its lines) and returns its last line.
async fn smtp_reply(r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return line;
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line;
        }
    }
}

/// A TCP connection from `from` (another loopback address plays another host).
async fn connect_from(from: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

#[tokio::test]
async fn an_unknown_number_is_refused_at_rcpt_not_bounced_later() {
    let bts = SipPeer::ok().await;
    let e = env(bts.addr, "").await;
    use tokio::io::AsyncWriteExt;
    let (r, mut w) = connect_from("127.0.0.2", e.smtp()).await.into_split();
    let mut r = tokio::io::BufReader::new(r);
    assert!(smtp_reply(&mut r).await.starts_with("220"));
    for (cmd, want) in [
        ("EHLO spammer.example\r\n", "250"),
        ("MAIL FROM:<forged@victim.example>\r\n", "250"),
        ("RCPT TO:<15550009999@sms.test>\r\n", "550 5.1.1"),
        (&format!("RCPT TO:<{B}@sms.test>\r\n") as &str, "250"),
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        let got = smtp_reply(&mut r).await;
        assert!(got.starts_with(want), "{cmd}: {got}");
    }
    e.stop().await;
}

#[tokio::test]
async fn rfc_3261_refusals_are_answered_not_guessed() {
    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "").await;
    let s = e.udp();
    let head = |method: &str, uri: &str, version: &str, extra: &str, l: SocketAddr| {
        format!(
            "{method} {uri} {version}\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKrfc{}\r\nFrom: <sip:IMSI{A_IMSI}@127.0.0.1>;tag=x\r\nTo: <sip:{B}@{s}>\r\nCall-ID: rfc{}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
            l.port(),
            l.port()
        )
    };
    let cases: [(&str, &str, &str, &str, &str); 5] = [
        ("FOO", "sip:x@h", "SIP/2.0", "", "SIP/2.0 501"),
        ("MESSAGE", "tel:+15551234567", "SIP/2.0", "", "SIP/2.0 416"),
        (
            "MESSAGE",
            "sip:smsc@h",
            "SIP/2.0",
            "Require: 100rel, foo\r\n",
            "SIP/2.0 420",
        ),
        ("MESSAGE", "sip:smsc@h", "SIP/3.0", "", "SIP/2.0 505"),
        (
            "MESSAGE",
            "sip:smsc@h",
            "SIP/2.0",
            "Content-Length: 40\r\n",
            "SIP/2.0 400",
        ),
    ];
    for (m, uri, v, extra, want) in cases {
        let got = transact(s, |l| head(m, uri, v, extra, l)).await;
        assert!(got.starts_with(want), "{m} {uri} {v} {extra:?}: {got}");
    }
    // 420 names what is unsupported; 501 says what is allowed.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let l = sock.local_addr().unwrap();
    sock.send_to(
        head("MESSAGE", "sip:smsc@h", "SIP/2.0", "Require: 100rel\r\n", l).as_bytes(),
        s,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("Unsupported: 100rel"));
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;
}

#[tokio::test]
async fn strangers_get_a_stateless_403_and_their_tcp_is_closed() {
    let mut bts = SipPeer::ok().await;
    let e = env(bts.addr, "[sip]\ntrusted_networks = [\"127.0.0.1/32\"]\n").await;
    let s = e.udp();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let l = stranger.local_addr().unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..200 {
        let req = message(s, l, &format!("IMSI{A_IMSI}"), B, &"x".repeat(i + 1));
        stranger.send_to(req.as_bytes(), s).await.unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), stranger.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 403"));
    }
    // TCP from a stranger: closed before anything is read.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut t = connect_from("127.0.0.2", e.tcp()).await;
    let _ = t.write_all(message(s, l, "x", B, "y").as_bytes()).await;
    let n = tokio::time::timeout(Duration::from_secs(5), t.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "a stranger's TCP connection was served");
    ordinary_text_still_arrives(&e, &mut bts).await;
    e.stop().await;
}

#[tokio::test]
async fn one_address_cannot_hold_every_smtp_connection() {
    let e = Env::start(
        "[smtp]\ntrusted_networks = [\"127.0.0.1/32\"]\nmax_connections_per_client = 5\n",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let (r, w) = connect_from("127.0.0.2", e.smtp()).await.into_split();
        let mut r = tokio::io::BufReader::new(r);
        assert!(smtp_reply(&mut r).await.starts_with("220"));
        held.push((r, w));
    }
    let (r, _w) = connect_from("127.0.0.2", e.smtp()).await.into_split();
    let mut r = tokio::io::BufReader::new(r);
    assert!(
        smtp_reply(&mut r).await.starts_with("421"),
        "a sixth connection from one address"
    );
    // Another address is still served.
    let (r, _w) = connect_from("127.0.0.3", e.smtp()).await.into_split();
    let mut r = tokio::io::BufReader::new(r);
    assert!(smtp_reply(&mut r).await.starts_with("220"));
    e.stop().await;
}

#[tokio::test]
async fn a_data_phase_that_never_ends_is_cut_off() {
    let e = Env::start("[smtp]\ndata_timeout = \"1s\"\nidle_timeout = \"30s\"\n").await;
    e.add_subscriber(B, B_IMSI).await;
    use tokio::io::AsyncWriteExt;
    let (r, mut w) = connect_from("127.0.0.2", e.smtp()).await.into_split();
    let mut r = tokio::io::BufReader::new(r);
    smtp_reply(&mut r).await;
    for cmd in [
        "EHLO slow.example\r\n".to_string(),
        "MAIL FROM:<a@slow.example>\r\n".into(),
        format!("RCPT TO:<{B}@sms.test>\r\n"),
        "DATA\r\n".into(),
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        smtp_reply(&mut r).await;
    }
    // A byte every 300 ms: never idle, never done.
    let t = std::time::Instant::now();
    let reply = loop {
        let _ = w.write_all(b"x").await;
        tokio::select! {
            line = smtp_reply(&mut r) => break line,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "DATA went on for ever"
        );
    };
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    e.stop().await;
}

#[tokio::test]
async fn below_the_free_space_reserve_intake_is_refused_temporarily() {
    let mut bts = SipPeer::ok().await;
    // A reserve larger than any disk: always below it.
    let e = env(bts.addr, "[spool]\nmin_free = \"1000000GiB\"\n").await;
    let s = transact(e.udp(), |l| {
        message(e.udp(), l, &format!("IMSI{A_IMSI}"), B, "no room")
    })
    .await;
    assert!(s.starts_with("SIP/2.0 503"), "{s}");
    use tokio::io::AsyncWriteExt;
    let (r, mut w) = tokio::net::TcpStream::connect(e.smtp())
        .await
        .unwrap()
        .into_split();
    let mut r = tokio::io::BufReader::new(r);
    smtp_reply(&mut r).await;
    w.write_all(b"EHLO x\r\n").await.unwrap();
    smtp_reply(&mut r).await;
    w.write_all(b"MAIL FROM:<a@example.org>\r\n").await.unwrap();
    let got = smtp_reply(&mut r).await;
    assert!(got.starts_with("452 4.3.1"), "{got}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bts.rx.recv())
            .await
            .is_err()
    );
    e.stop().await;
}

#[tokio::test]
async fn mail_leaving_for_another_domain_names_no_imsi_and_no_bts() {
    let bts = SipPeer::ok().await;
    let mut sink = peers::SmtpSink::start(|_| None).await;
    let e = env(bts.addr, &format!("smarthost = \"{}\"\n", sink.addr)).await;
    let s = transact(e.udp(), |l| {
        message(
            e.udp(),
            l,
            &format!("IMSI{A_IMSI}"),
            "smsc",
            "bob@example.org lunch?",
        )
    })
    .await;
    assert!(s.starts_with("SIP/2.0 202"), "{s}");
    let m = sink.next(10).await;
    assert!(m.data.contains("lunch?"), "{}", m.data);
    assert!(!m.data.contains(A_IMSI), "the IMSI left: {}", m.data);
    assert!(
        !m.data.to_ascii_lowercase().contains("x-sms-"),
        "{}",
        m.data
    );
    assert!(!m.data.contains("with SIP"), "the BTS hop left: {}", m.data);
    e.stop().await;
}

fn queue_list(cfg: &std::path::Path) -> String {
    let out = std::process::Command::new(common::BIN)
        .args(["--config", cfg.to_str().unwrap(), "queue", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_message_is_set_aside_and_the_rest_delivered_before_and_after_a_restart() {
    let mut bts = SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!("{}[delivery]\nbts = \"{}\"\n", common::LOOPBACK, bts.addr),
    );
    common::add_subscriber(&cfg, B, B_IMSI);
    // Test builds make a job panic on a message holding this mark (fault injection).
    let poison = [("SMSMTA_FAULT_PANIC_ON", "POISON-PILL")];
    let s = common::Serve::start_env(&cfg, &poison);
    let to = format!("{B}@sms.test");
    let r = common::smtp_transaction(
        s.smtp,
        "alice@example.org",
        &to,
        "Subject: x\r\n\r\nPOISON-PILL\r\n",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let r = common::smtp_transaction(
        s.smtp,
        "alice@example.org",
        &to,
        "Subject: x\r\n\r\nordinary one\r\n",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = bts.next(10).await.deliver.unwrap().user_data.body.text();
    assert!(got.contains("ordinary one"), "{got}");
    // The poisoned one is held, with the reason, and shown by queue list.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listing = loop {
        let l = queue_list(&cfg);
        if l.contains("held: delivery failed") || std::time::Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(listing.contains("held: delivery failed"), "{listing}");
    let (st, _) = s.stop();
    assert!(st.success());

    // After a restart: the poison stays aside, the rest flows.
    let s = common::Serve::start_env(&cfg, &poison);
    let r = common::smtp_transaction(
        s.smtp,
        "alice@example.org",
        &to,
        "Subject: x\r\n\r\nordinary two\r\n",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let got = bts.next(10).await.deliver.unwrap().user_data.body.text();
    assert!(got.contains("ordinary two"), "{got}");
    assert!(queue_list(&cfg).contains("held: delivery failed"));
    let (st, _) = s.stop();
    assert!(st.success());
}

/// The messages in incoming/, by their text.
fn incoming_texts(dir: &std::path::Path) -> Vec<String> {
    let spool = smsmta::spool::Spool::open(dir.join("spool"), 1 << 24).unwrap();
    let mut out: Vec<String> = spool
        .list(smsmta::spool::Queue::Incoming)
        .unwrap()
        .into_iter()
        .map(|id| {
            let f = spool.read(smsmta::spool::Queue::Incoming, id).unwrap();
            String::from_utf8_lossy(&f.message).into_owned()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_journal_threads_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(dir.path(), common::LOOPBACK);
    common::add_subscriber(&cfg, B, B_IMSI);
    // Test builds make the committer panic on a batch holding the first mark, and the
    // materializer on a range holding the second (fault injection).
    let faults = [
        ("SMSMTA_FAULT_COMMIT_PANIC_ON", "POISON-COMMIT"),
        ("SMSMTA_FAULT_MATERIALIZE_PANIC_ON", "POISON-WRITE"),
    ];
    let s = common::Serve::start_env(&cfg, &faults);
    let to = format!("{B}@sms.test");
    let send = |body: &'static str| {
        let to = to.clone();
        async move {
            common::smtp_transaction(
                s.smtp,
                "alice@example.org",
                &to,
                &format!("Subject: x\r\n\r\n{body}\r\n"),
            )
            .await
        }
    };
    // The committer fails on this batch: a temporary refusal, never a 250.
    let r = send("POISON-COMMIT").await;
    assert!(r.starts_with('4'), "{r}");
    let r = send("ordinary one").await;
    assert!(r.starts_with("250"), "the committer went on: {r}");
    // The materializer fails on this one after it was acknowledged.
    let r = send("POISON-WRITE").await;
    assert!(r.starts_with("250"), "{r}");
    let r = send("ordinary two").await;
    assert!(r.starts_with("250"), "{r}");
    // The materializer went on: both ordinary messages are written out.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = incoming_texts(dir.path());
        if t.iter().filter(|m| m.contains("ordinary")).count() == 2 {
            assert!(!t.iter().any(|m| m.contains("POISON")), "{t:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = s.stop();
    assert!(st.success());

    // After a restart the acknowledged message the materializer failed on is there; the one
    // refused was never stored.
    let s = common::Serve::start(&cfg);
    let (st, _) = s.stop();
    assert!(st.success());
    let t = incoming_texts(dir.path());
    assert_eq!(t.len(), 3, "{t:?}");
    assert_eq!(t.iter().filter(|m| m.contains("POISON-WRITE")).count(), 1);
    assert!(!t.iter().any(|m| m.contains("POISON-COMMIT")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_record_that_fails_at_replay_is_set_aside_and_start_up_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(dir.path(), common::LOOPBACK);
    common::add_subscriber(&cfg, B, B_IMSI);
    let faults = [("SMSMTA_FAULT_MATERIALIZE_PANIC_ON", "POISON-WRITE")];
    let s = common::Serve::start_env(&cfg, &faults);
    let to = format!("{B}@sms.test");
    for body in ["POISON-WRITE", "ordinary"] {
        let r = common::smtp_transaction(
            s.smtp,
            "alice@example.org",
            &to,
            &format!("Subject: x\r\n\r\n{body}\r\n"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    // Killed: both are in the journal, the poisoned one certainly not written out.
    s.kill();
    // The fault is still armed at start-up: replay sets that record aside and goes on.
    let s = common::Serve::start_env(&cfg, &faults);
    let r = common::smtp_transaction(
        s.smtp,
        "alice@example.org",
        &to,
        "Subject: x\r\n\r\nafter\r\n",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let (st, _) = s.stop();
    assert!(st.success());
    let t = incoming_texts(dir.path());
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t.iter().all(|m| !m.contains("POISON")), "{t:?}");
    let corrupt = std::fs::read_dir(dir.path().join("spool/corrupt"))
        .unwrap()
        .count();
    assert_eq!(corrupt, 1, "the poisoned record is kept in corrupt/");
}
