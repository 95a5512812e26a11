//! Delivery end to end, over loopback sockets with the real server: handset to handset, handset
//! to e-mail, SMTP in to SIP out, a handset that answers 480 until it registers, a 404 that
//! becomes a notice SMS, expiry that becomes a DSN, a smarthost 5xx that becomes a DSN, a
//! 300-character UCS-2 mail in five segments, a status report, and a copy to the mailbox.
//!
//! The test SIP peer plays the BTS (and the handset behind it): it decodes every RP-DATA back
//! to text. The test SMTP sink plays the smarthost. Timing: waits are for events, bounded;
//! the schedule itself is tested with injected time in `delivery::scheduler`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Env;
use peers::{SipPeer, SmtpSink};
use smsmta::registry::Subscriber;
use smsmta::spool::{Origin, OriginKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

const A: &str = "15551230000";
const A_IMSI: &str = "001010000000001";
const B: &str = "15551234567";
const B_IMSI: &str = "001010000000002";

async fn env(peer: &SipPeer, sink: Option<&SmtpSink>, extra: &str) -> Env {
    let smarthost = sink.map_or(String::new(), |s| format!("smarthost = \"{}\"\n", s.addr));
    let e = Env::start(&format!(
        "[delivery]\nbts = \"{}\"\n{smarthost}handset_backoff_min = \"3s\"\nhandset_backoff_max = \"3s\"\nmail_backoff_min = \"3s\"\nmail_backoff_max = \"3s\"\n{extra}",
        peer.addr
    ))
    .await;
    e.add_subscriber(A, A_IMSI).await;
    e.add_subscriber(B, B_IMSI).await;
    e
}

/// Sends one request from a fresh UDP socket (`{local}` in `req` becomes its address) and
/// returns the response's status line.
async fn transact(server: SocketAddr, req: impl Fn(SocketAddr) -> Vec<u8>) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(&req(local), server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
    resp.lines().next().unwrap_or_default().to_string()
}

/// A MESSAGE from handset IMSI `from_imsi` to the SMSC (To: `to`); waits for 202.
async fn send_message(server: SocketAddr, from_imsi: &str, to: &str, ctype: &str, body: &[u8]) {
    let status = transact(server, |local| {
        let call = format!("c{}", local.port());
        let mut r = format!(
            "MESSAGE sip:smsc@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call}\r\nFrom: <sip:IMSI{from_imsi}@{server}>;tag=t{call}\r\nTo: <sip:{to}@{server}>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    })
    .await;
    assert!(status.starts_with("SIP/2.0 202"), "{status}");
}

/// A text/plain MESSAGE from handset IMSI `from_imsi` to the SMSC for `to`; waits for 202.
async fn send_sms(server: SocketAddr, from_imsi: &str, to: &str, text: &str) {
    send_message(server, from_imsi, to, "text/plain", text.as_bytes()).await;
}

/// An SMS-SUBMIT in RP-DATA (hex), with TP-SRR set when `report` is true.
async fn send_submit(server: SocketAddr, from_imsi: &str, to: &str, text: &str, report: bool) {
    let hex = common::sms_submit_hex(to, text, report);
    send_message(
        server,
        from_imsi,
        "smsc",
        "application/vnd.3gpp.sms",
        hex.as_bytes(),
    )
    .await;
}

/// A REGISTER for IMSI `imsi` with `contact`; waits for 200.
async fn register(server: SocketAddr, imsi: &str, contact: SocketAddr) {
    let status = transact(server, |local| {
        format!(
            "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{}\r\nFrom: <sip:IMSI{imsi}@{server}>;tag=r1\r\nTo: <sip:IMSI{imsi}@{server}>\r\nCall-ID: reg-{imsi}\r\nCSeq: 1 REGISTER\r\nContact: <sip:IMSI{imsi}@{contact}>;expires=3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            local.port()
        )
        .into_bytes()
    })
    .await;
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
}

/// One SMTP transaction; returns the final reply to DATA.
async fn smtp_send(server: SocketAddr, from: &str, to: &str, data: &str) -> String {
    let s = TcpStream::connect(server).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut reply = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| -> String {
        let mut all = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    };
    assert!(reply(&mut r).await.starts_with("220"));
    for cmd in [
        "EHLO client.test\r\n".to_string(),
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{to}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        let rep = reply(&mut r).await;
        assert!(rep.starts_with('2') || rep.starts_with('3'), "{cmd}: {rep}");
    }
    w.write_all(data.replace('\n', "\r\n").as_bytes())
        .await
        .unwrap();
    w.write_all(b"\r\n.\r\n").await.unwrap();
    let rep = reply(&mut r).await;
    w.write_all(b"QUIT\r\n").await.unwrap();
    rep
}

#[tokio::test]
async fn handset_to_handset_arrives_as_the_same_text() {
    let mut peer = SipPeer::ok().await;
    let e = env(&peer, None, "").await;
    send_sms(e.udp(), A_IMSI, B, "Hello B, see you at 5?").await;
    let (text, parts) = peer.next_text(10).await;
    assert_eq!(text, "Hello B, see you at 5?");
    let p = &parts[0];
    assert_eq!(
        p.uri,
        format!("sip:IMSI{B_IMSI}@{}", peer.addr),
        "to the BTS by IMSI"
    );
    assert_eq!(p.content_type, "application/vnd.3gpp.sms");
    let d = p.deliver.as_ref().unwrap();
    assert_eq!(d.originator.value, A, "the sender's number");
    assert_eq!(d.originator.ton, 1, "international");
    e.stop().await;
}

#[tokio::test]
async fn handset_to_email_goes_to_the_smarthost() {
    let peer = SipPeer::ok().await;
    let mut sink = SmtpSink::start(|_| None).await;
    let e = env(&peer, Some(&sink), "").await;
    send_sms(e.udp(), A_IMSI, "smsc", "bob@example.org Lunch at noon?").await;
    let m = sink.next(10).await;
    assert_eq!(m.from, format!("{A}@sms.test"));
    assert_eq!(m.rcpts, vec!["bob@example.org".to_string()]);
    assert!(
        m.data.starts_with("Received: by mta.test (smsmta) id "),
        "{}",
        m.data
    );
    assert!(m.data.contains("Lunch at noon?"), "{}", m.data);
    e.stop().await;
}

#[tokio::test]
async fn mail_in_becomes_a_text_from_the_email_sender() {
    let mut peer = SipPeer::ok().await;
    let e = env(&peer, None, "").await;
    let rep = smtp_send(
        e.running.as_ref().unwrap().smtp,
        "alice@example.org",
        &format!("{B}@sms.test"),
        "From: Alice <alice@example.org>\nTo: {B}@sms.test\nSubject: Dinner\n\nAt 8, the usual place.\n\nOn Monday Bob wrote:\n> old\n-- \nAlice\n",
    )
    .await;
    assert!(rep.starts_with("250"), "{rep}");
    let (text, parts) = peer.next_text(10).await;
    assert_eq!(text, "alice@example.org: Dinner\nAt 8, the usual place.");
    let d = parts[0].deliver.as_ref().unwrap();
    assert_eq!(d.originator.value, "Email");
    assert!(d.originator.is_alphanumeric());
    e.stop().await;
}

#[tokio::test]
async fn ucs2_mail_of_300_characters_arrives_in_five_segments_that_reassemble_exactly() {
    let mut peer = SipPeer::ok().await;
    let e = env(&peer, None, "").await;
    let text: String = "Съешь же ещё этих мягких французских булок, да выпей чаю. "
        .chars()
        .cycle()
        .take(300)
        .collect::<String>()
        .trim()
        .to_string();
    let mail = format!(
        "From: {A}@sms.test\nTo: {B}@sms.test\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{text}\n"
    );
    let rep = smtp_send(
        e.running.as_ref().unwrap().smtp,
        &format!("{A}@sms.test"),
        &format!("{B}@sms.test"),
        &mail,
    )
    .await;
    assert!(rep.starts_with("250"), "{rep}");
    let (got, parts) = peer.next_text(10).await;
    assert_eq!(parts.len(), 5);
    // Mail over SMTP never borrows a local number: it names its sender in the text.
    assert_eq!(got, format!("{A}@sms.test: {text}"));
    e.stop().await;
}

#[tokio::test]
async fn unreachable_handset_is_retried_and_delivered_at_once_when_it_registers() {
    let mut peer = SipPeer::start(Box::new({
        let mut n = 0;
        move |_| {
            n += 1;
            if n <= 3 { 480 } else { 200 }
        }
    }))
    .await;
    let e = env(&peer, None, "").await;
    send_sms(e.udp(), A_IMSI, B, "are you there?").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = peer.next(15).await;
        assert_eq!(r.status, 480);
        seen.push(r.at);
    }
    // The backoff is 3 s (configured; the schedule counts whole seconds): the attempts are
    // spaced by it, never hammered.
    for w in seen.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(1900),
            "{:?}",
            w[1] - w[0]
        );
    }
    // The handset registers (its contact is the same peer): delivered at once, not after the
    // next backoff.
    let before = Instant::now();
    register(e.udp(), B_IMSI, peer.addr).await;
    let r = peer.next(10).await;
    assert_eq!(r.status, 200);
    assert!(
        r.at.duration_since(before) < Duration::from_millis(1500),
        "delivered {:?} after REGISTER",
        r.at.duration_since(before)
    );
    assert_eq!(r.uri, format!("sip:IMSI{B_IMSI}@{}", peer.addr));
    assert_eq!(r.deliver.unwrap().user_data.body.text(), "are you there?");
    e.stop().await;
}

#[tokio::test]
async fn not_found_becomes_a_notice_sms_to_the_sender() {
    let b_uri = format!("IMSI{B_IMSI}");
    let mut peer = SipPeer::start(Box::new(
        move |r| {
            if r.uri.contains(&b_uri) { 404 } else { 200 }
        },
    ))
    .await;
    let e = env(&peer, None, "").await;
    send_sms(e.udp(), A_IMSI, B, "hello?").await;
    let first = peer.next(10).await;
    assert_eq!(first.status, 404);
    let (text, parts) = peer.next_text(10).await;
    assert_eq!(parts[0].uri, format!("sip:IMSI{A_IMSI}@{}", peer.addr));
    assert_eq!(parts[0].deliver.as_ref().unwrap().originator.value, "101");
    assert_eq!(text, format!("Message to {B} not delivered: 404 Not Found"));
    e.stop().await;
}

#[tokio::test]
async fn status_report_requested_by_the_sender_follows_delivery() {
    let mut peer = SipPeer::ok().await;
    let e = env(&peer, None, "").await;
    send_submit(e.udp(), A_IMSI, B, "report please", true).await;
    let first = peer.next(10).await;
    assert!(first.uri.contains(B_IMSI));
    let rep = peer.next(10).await;
    assert!(rep.uri.contains(A_IMSI), "{}", rep.uri);
    let r = rep.report.expect("an SMS-STATUS-REPORT");
    assert_eq!(r.message_ref, 42);
    assert_eq!(r.status, 0);
    assert_eq!(r.recipient.value, B);
    e.stop().await;
}

#[tokio::test]
async fn expired_message_is_bounced_to_the_email_sender() {
    let peer = SipPeer::ok().await;
    let mut sink = SmtpSink::start(|_| None).await;
    let e = env(&peer, Some(&sink), "").await;
    let running = e.running.as_ref().unwrap();
    let spool = running.writer.spool();
    let mut f = spool.new_message(
        "alice@example.org",
        &[format!("{B}@sms.test")],
        b"From: alice@example.org\r\nTo: 15551234567@sms.test\r\nSubject: late\r\n\r\ntoo late\r\n"
            .to_vec(),
        Origin {
            kind: OriginKind::Smtp,
            peer: "127.0.0.1:1".into(),
            sender_number: None,
        },
        60,
    );
    f.envelope.expires = f.envelope.arrival - 1;
    running.writer.commit(f).await.unwrap();
    let m = sink.next(10).await;
    assert_eq!(m.from, "", "a DSN comes from the null sender");
    assert_eq!(m.rcpts, vec!["alice@example.org".to_string()]);
    assert!(m.data.contains("report-type=delivery-status"), "{}", m.data);
    assert!(
        m.data
            .contains(&format!("Final-Recipient: rfc822; {B}@sms.test"))
    );
    assert!(m.data.contains("Status: 4.4.7"));
    assert!(m.data.contains("Subject: late"), "original headers quoted");
    e.stop().await;
}

#[tokio::test]
async fn smarthost_refusal_becomes_a_dsn_to_the_original_sender() {
    let peer = SipPeer::ok().await;
    let mut sink = SmtpSink::start(|rcpt| {
        (rcpt == "carol@example.net").then(|| "550 5.1.1 <carol@example.net>: no such user".into())
    })
    .await;
    let e = env(&peer, Some(&sink), "").await;
    let rep = smtp_send(
        e.running.as_ref().unwrap().smtp,
        "alice@example.org",
        "carol@example.net",
        "From: alice@example.org\nTo: carol@example.net\nSubject: hi carol\n\nhello\n",
    )
    .await;
    assert!(rep.starts_with("250"), "{rep}");
    let m = sink.next(10).await;
    assert_eq!(m.from, "");
    assert_eq!(m.rcpts, vec!["alice@example.org".to_string()]);
    assert!(
        m.data
            .contains("Final-Recipient: rfc822; carol@example.net")
    );
    assert!(
        m.data.contains("Action: failed\r\nStatus: 5.1.1"),
        "{}",
        m.data
    );
    assert!(m.data.contains("no such user"));
    assert!(m.data.contains("Subject: hi carol"));
    e.stop().await;
}

#[tokio::test]
async fn subscriber_with_email_gets_the_text_on_the_handset_and_by_mail() {
    let mut peer = SipPeer::ok().await;
    let mut sink = SmtpSink::start(|_| None).await;
    let e = env(&peer, Some(&sink), "").await;
    let s = Subscriber {
        msisdn: B.into(),
        imsi: Some(B_IMSI.into()),
        email: Some("b@example.org".into()),
        enabled: true,
    };
    e.upsert_subscriber(s).await;
    send_sms(e.udp(), A_IMSI, B, "copy me").await;
    let (text, _) = peer.next_text(10).await;
    assert_eq!(text, "copy me");
    let m = sink.next(10).await;
    assert_eq!(m.rcpts, vec!["b@example.org".to_string()]);
    assert_eq!(m.from, format!("{A}@sms.test"));
    assert!(m.data.contains("copy me"));
    e.stop().await;
}

#[tokio::test]
async fn unknown_number_is_refused_at_delivery_with_a_notice() {
    let mut peer = SipPeer::ok().await;
    let e = env(&peer, None, "").await;
    send_sms(e.udp(), A_IMSI, "15559999999", "anyone?").await;
    let (text, parts) = peer.next_text(10).await;
    assert!(parts[0].uri.contains(A_IMSI));
    assert_eq!(
        text,
        "Message to 15559999999 not delivered: unknown subscriber 15559999999"
    );
    e.stop().await;
}

#[tokio::test]
async fn delay_warning_goes_once_to_the_email_sender_while_retries_go_on() {
    let mut peer = SipPeer::start(Box::new(|_| 480)).await;
    let mut sink = SmtpSink::start(|_| None).await;
    let e = env(&peer, Some(&sink), "delay_warning = \"1s\"\n").await;
    let rep = smtp_send(
        e.running.as_ref().unwrap().smtp,
        "alice@example.org",
        &format!("{B}@sms.test"),
        &format!("From: alice@example.org\nTo: {B}@sms.test\nSubject: later\n\nping\n"),
    )
    .await;
    assert!(rep.starts_with("250"), "{rep}");
    assert_eq!(peer.next(10).await.status, 480);
    assert_eq!(peer.next(10).await.status, 480, "retried after the backoff");
    let m = sink.next(10).await;
    assert_eq!(m.from, "");
    assert_eq!(m.rcpts, vec!["alice@example.org".to_string()]);
    assert!(
        m.data
            .contains("Subject: Delayed Mail (still being retried)")
    );
    assert!(m.data.contains("Action: delayed"), "{}", m.data);
    assert!(m.data.contains("480 Temporarily Unavailable"));
    // The next retry does not warn again.
    assert_eq!(peer.next(10).await.status, 480);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sink.rx.recv())
            .await
            .is_err(),
        "one warning only"
    );
    e.stop().await;
}

#[tokio::test]
async fn status_report_for_a_text_to_email_names_the_number_the_handset_sent_to() {
    let mut peer = SipPeer::ok().await;
    let mut sink = SmtpSink::start(|_| None).await;
    let e = env(&peer, Some(&sink), "").await;
    // smqueue's convention: the handset texts the e-mail gateway number with the address first.
    send_submit(
        e.udp(),
        A_IMSI,
        "6245",
        "bob@example.org report please",
        true,
    )
    .await;
    let m = sink.next(10).await;
    assert_eq!(m.rcpts, vec!["bob@example.org".to_string()]);
    let rep = peer.next(10).await;
    assert!(rep.uri.contains(A_IMSI), "{}", rep.uri);
    let r = rep.report.expect("an SMS-STATUS-REPORT");
    assert_eq!(r.message_ref, 42);
    assert_eq!(r.status, 0);
    assert_eq!(r.recipient.value, "6245");
    e.stop().await;
}

#[tokio::test]
async fn a_reply_to_an_imsi_only_sender_reaches_its_handset() {
    const C_IMSI: &str = "001010000000099";
    let mut peer = SipPeer::ok().await;
    let mut sink = SmtpSink::start(|_| None).await;
    let e = env(
        &peer,
        Some(&sink),
        "[sip]\nunknown_imsi = \"accept\"\n[smtp]\nregistry_authoritative = true\n",
    )
    .await;
    send_sms(e.udp(), C_IMSI, "smsc", "bob@example.org who am I").await;
    let m = sink.next(10).await;
    assert_eq!(m.from, format!("IMSI{C_IMSI}@sms.test"));
    let reply = smtp_send(
        e.smtp(),
        "bob@example.org",
        &format!("IMSI{C_IMSI}@sms.test"),
        "Subject: Re: hi\n\nyou are IMSI-only\n",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let (text, parts) = peer.next_text(10).await;
    assert!(
        parts[0].uri.starts_with(&format!("sip:IMSI{C_IMSI}@")),
        "{}",
        parts[0].uri
    );
    assert!(text.contains("you are IMSI-only"), "{text}");
    e.stop().await;
}
