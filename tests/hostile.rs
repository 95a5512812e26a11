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
        assert!(s.starts_with("SIP/2.0 400"), "{user}: {s}");
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
    let reply = smtp(
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

/// One SMTP transaction; returns the reply to the end of DATA.
async fn smtp(server: SocketAddr, from: &str, to: &str, data: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = tokio::net::TcpStream::connect(server).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut last = String::new();
    for cmd in [
        None,
        Some("EHLO client.test\r\n".to_string()),
        Some(format!("MAIL FROM:<{from}>\r\n")),
        Some(format!("RCPT TO:<{to}>\r\n")),
        Some("DATA\r\n".to_string()),
        Some(format!("{data}.\r\n")),
    ] {
        if let Some(c) = cmd {
            w.write_all(c.as_bytes()).await.unwrap();
        }
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                last = line;
                break;
            }
        }
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    last
}
