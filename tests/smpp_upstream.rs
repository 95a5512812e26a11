//! smsmta as an ESME of an upstream SMSC, over real sockets on loopback, the SMSC played by the
//! test: a handset's text to a number that is none of ours leaves as submit_sm through the
//! route and is retried after ESME_RTHROTTLED; the SMSC's receipt becomes the handset's
//! SMS-STATUS-REPORT; a deliver_sm for a subscriber is stored before its deliver_sm_resp,
//! one resent is not stored twice, one for a stranger is refused, SAR parts are joined into
//! one text, and a receipt that matches nothing is answered OK. With `tls`, the SMSC's
//! certificate is verified (a wrong one: no bind). A hostile SMSC (an oversize PDU, commands
//! that do not decode, originators that are not addresses, a flood of deliver_sm) is answered
//! by protocol, dropped and rebound, never stops the door.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use smsmta::smpp::pdu::{self, Address, Body, Pdu, Sm, status, tag};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The SMSC's side of one connection (TCP, or TLS over it).
struct Smsc<S = TcpStream> {
    s: S,
    buf: Vec<u8>,
    seq: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smsc<S> {
    /// Reads the bind and answers it OK.
    async fn bound(s: S) -> Smsc<S> {
        let mut c = Smsc {
            s,
            buf: Vec::new(),
            seq: 100,
        };
        let bind = c.recv(10).await;
        let Body::Bind(kind, _) = &bind.body else {
            panic!("{bind:?}")
        };
        c.send(0, bind.sequence, Body::BindResp(*kind, "AGG".into()))
            .await;
        c
    }

    async fn send(&mut self, status: u32, sequence: u32, body: Body) {
        let b = pdu::encode(&Pdu {
            status,
            sequence,
            body,
        });
        self.s.write_all(&b).await.unwrap();
    }

    /// The next PDU that is not an enquire_link (those are answered).
    async fn recv(&mut self, secs: u64) -> Pdu {
        loop {
            if let Ok(Some(n)) = pdu::frame_length(&self.buf, 1 << 16)
                && self.buf.len() >= n
            {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let p = pdu::decode(&frame).unwrap();
                if p.body == Body::EnquireLink {
                    self.send(0, p.sequence, Body::EnquireLinkResp).await;
                    continue;
                }
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(secs), self.s.read(&mut chunk))
                .await
                .expect("smsmta sent something in time")
                .unwrap();
            assert!(n > 0, "smsmta closed the link");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn deliver(&mut self, sm: Sm) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(0, seq, Body::DeliverSm(Box::new(sm))).await;
        let p = self.recv(10).await;
        assert!(
            p.body == Body::DeliverSmResp && p.sequence == seq,
            "expected deliver_sm_resp, got {p:?}"
        );
        p.status
    }
}

fn text_sm(from: &str, to: &str, text: &str) -> Sm {
    Sm {
        source: Address {
            ton: 1,
            npi: 1,
            addr: from.into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: to.into(),
        },
        short_message: text.as_bytes().to_vec(),
        ..Sm::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_smsc_carries_texts_both_ways_and_its_receipt_becomes_a_status_report() {
    let smsc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smsc_addr = smsc.local_addr().unwrap();
    let mut handset = peers::SipPeer::ok().await;
    let extra = format!(
        "[smpp]\n[[smpp.upstream]]\nname = \"agg\"\naddress = \"{smsc_addr}\"\nsystem_id = \"smsmta\"\npassword = \"pw\"\nreconnect_min = \"100ms\"\n\
         [[smpp.route]]\nprefix = \"44\"\nupstream = \"agg\"\n[delivery]\nbts = \"{}\"\nhandset_backoff_min = \"1s\"\n",
        handset.addr
    );
    let env = common::Env::start(&extra).await;
    env.add_subscriber("15551234567", "001010000000001").await;

    // The bind: a transceiver with our credentials.
    let (s, _) = tokio::time::timeout(Duration::from_secs(10), smsc.accept())
        .await
        .unwrap()
        .unwrap();
    let mut c = Smsc {
        s,
        buf: Vec::new(),
        seq: 100,
    };
    let bind = c.recv(10).await;
    let Body::Bind(kind, b) = &bind.body else {
        panic!("{bind:?}")
    };
    assert_eq!(
        (
            format!("{kind:?}"),
            b.system_id.as_str(),
            b.password.as_str()
        ),
        ("Transceiver".into(), "smsmta", "pw")
    );
    c.send(0, bind.sequence, Body::BindResp(*kind, "AGG".into()))
        .await;

    // In: a text for our subscriber reaches the handset; the same deliver_sm again is answered
    // OK and not stored twice; a stranger is refused.
    assert_eq!(
        c.deliver(text_sm("447700900123", "15551234567", "hello from afar"))
            .await,
        status::OK
    );
    let (t, parts) = handset.next_text(20).await;
    assert_eq!(t, "hello from afar");
    assert_eq!(
        parts[0].deliver.as_ref().unwrap().originator.value,
        "447700900123"
    );
    assert_eq!(
        c.deliver(text_sm("447700900123", "15551234567", "hello from afar"))
            .await,
        status::OK
    );
    assert_eq!(
        c.deliver(text_sm("447700900123", "19999999999", "who?"))
            .await,
        status::INVDSTADR
    );
    // SAR parts, the second first: one text.
    let part = |seq: u8, s: &str| Sm {
        tlvs: vec![
            (tag::SAR_MSG_REF_NUM, vec![0x12, 0x34]),
            (tag::SAR_TOTAL_SEGMENTS, vec![2]),
            (tag::SAR_SEGMENT_SEQNUM, vec![seq]),
        ],
        ..text_sm("447700900124", "15551234567", s)
    };
    assert_eq!(c.deliver(part(2, "second half")).await, status::OK);
    assert_eq!(c.deliver(part(1, "first half, ")).await, status::OK);
    let (t, _) = handset.next_text(20).await;
    assert_eq!(t, "first half, second half");
    // A receipt for nothing smsmta sent: answered OK, nothing else.
    let stray = Sm {
        esm_class: 0x04,
        short_message: b"id:nothing stat:DELIVRD".to_vec(),
        ..text_sm("447700900123", "15551234567", "")
    };
    assert_eq!(c.deliver(stray).await, status::OK);

    // Out: the handset texts a UK number (route "44") and asks for a report.
    common::submit_with_report(env.udp(), "001010000000001", "447700900123", "see you at 8").await;
    let first = c.recv(20).await;
    let Body::SubmitSm(sm) = &first.body else {
        panic!("{first:?}")
    };
    assert_eq!(
        (sm.dest.addr.as_str(), sm.source.addr.as_str()),
        ("447700900123", "15551234567")
    );
    assert_eq!(sm.short_message, b"see you at 8");
    assert_eq!(sm.registered_delivery, 1, "the handset asked for a report");
    // Throttled: smsmta tries again (at the next backoff, at a lower pace).
    c.send(
        status::THROTTLED,
        first.sequence,
        Body::SubmitSmResp(String::new()),
    )
    .await;
    let again = c.recv(30).await;
    assert!(
        matches!(&again.body, Body::SubmitSm(s) if s.short_message == b"see you at 8"),
        "{again:?}"
    );
    c.send(0, again.sequence, Body::SubmitSmResp("M-77".into()))
        .await;
    // No report until the SMSC's receipt; then one, saying delivered.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), handset.rx.recv())
            .await
            .is_err(),
        "no report before the receipt"
    );
    let receipt = Sm {
        esm_class: 0x04,
        short_message: b"id:M-77 sub:001 dlvrd:001 submit date:2612021000 done date:2612021001 stat:DELIVRD err:000 text:see you".to_vec(),
        ..text_sm("447700900123", "15551234567", "")
    };
    assert_eq!(c.deliver(receipt).await, status::OK);
    let r = handset.next(20).await;
    let report = r.report.expect("an SMS-STATUS-REPORT");
    assert_eq!(report.status, smsmta::sms::tpdu::status::DELIVERED);
    assert_eq!(report.message_ref, 42);
}

async fn accept(l: &TcpListener, secs: u64) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(secs), l.accept())
        .await
        .expect("smsmta connected in time")
        .unwrap()
        .0
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn upstream_config(smsc: SocketAddr, handset: SocketAddr, tls: &str) -> String {
    format!(
        "[smpp]\n[[smpp.upstream]]\nname = \"agg\"\naddress = \"{smsc}\"\nsystem_id = \"smsmta\"\npassword = \"pw\"\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n{tls}\n\
         [delivery]\nbts = \"{handset}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_an_upstream_verifies_its_certificate_before_the_bind() {
    let acceptor = smsmta::smtp::listener::tls_acceptor(
        std::path::Path::new(&fixture("cert.pem")),
        std::path::Path::new(&fixture("key.pem")),
    )
    .unwrap();
    let mut handset = peers::SipPeer::ok().await;

    // Roots that signed the SMSC's certificate: the bind and a text come over TLS.
    let smsc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = format!("tls = true\ntls_ca = \"{}\"", fixture("ca.pem"));
    let env = common::Env::start(&upstream_config(
        smsc.local_addr().unwrap(),
        handset.addr,
        &tls,
    ))
    .await;
    env.add_subscriber("15551234567", "001010000000001").await;
    let t = acceptor.accept(accept(&smsc, 10).await).await.unwrap();
    let mut c = Smsc::bound(t).await;
    assert_eq!(
        c.deliver(text_sm("447700900123", "15551234567", "over tls"))
            .await,
        status::OK
    );
    assert_eq!(handset.next_text(20).await.0, "over tls");
    drop(env);

    // Roots that did not: the handshake fails at smsmta's end, nothing is sent in clear, and
    // it tries again later (with the same refusal).
    let smsc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = format!("tls = true\ntls_ca = \"{}\"", fixture("other-ca.pem"));
    let _env = common::Env::start(&upstream_config(
        smsc.local_addr().unwrap(),
        handset.addr,
        &tls,
    ))
    .await;
    for _ in 0..2 {
        let tcp = accept(&smsc, 10).await;
        let r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
            .await
            .expect("the handshake ends in time");
        assert!(
            r.is_err(),
            "smsmta must refuse a certificate its roots did not sign"
        );
    }
}

/// Reads until the SMSC's side sees the end of the stream (smsmta dropped the link).
async fn closed_by_smsmta(s: &mut TcpStream, secs: u64) {
    let mut sink = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("smsmta kept a link that sent an oversize PDU"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_upstream_is_answered_by_protocol_dropped_and_rebound_and_never_stops_the_door() {
    let smsc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut handset = peers::SipPeer::ok().await;
    let env = common::Env::start(&upstream_config(
        smsc.local_addr().unwrap(),
        handset.addr,
        "",
    ))
    .await;
    env.add_subscriber("15551234567", "001010000000001").await;

    // An oversize command_length (2 GiB; max_pdu_size is 4 KiB): the link is dropped at once,
    // without reading (or allocating) the body, and smsmta binds again.
    let mut c = Smsc::bound(accept(&smsc, 10).await).await;
    c.s.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9])
        .await
        .unwrap();
    closed_by_smsmta(&mut c.s, 10).await;
    // A command_length shorter than a header: the same.
    let mut c = Smsc::bound(accept(&smsc, 10).await).await;
    c.s.write_all(&[0, 0, 0, 4]).await.unwrap();
    closed_by_smsmta(&mut c.s, 10).await;

    let mut c = Smsc::bound(accept(&smsc, 10).await).await;
    // A command smsmta does not know: generic_nack ESME_RINVCMDID, and the link goes on.
    c.send(0, 7, Body::Other(0x0000_0999)).await;
    let p = c.recv(10).await;
    assert_eq!(
        (p.body, p.status, p.sequence),
        (Body::GenericNack, status::INVCMDID, 7)
    );
    // A deliver_sm whose body stops half-way (framing intact): generic_nack, not a panic.
    let mut broken = pdu::encode(&Pdu {
        status: 0,
        sequence: 8,
        body: Body::DeliverSm(Box::new(text_sm("447700900123", "15551234567", "x"))),
    });
    broken.truncate(16 + 9);
    broken[..4].copy_from_slice(&25u32.to_be_bytes());
    c.s.write_all(&broken).await.unwrap();
    let p = c.recv(10).await;
    assert_eq!((p.body, p.sequence), (Body::GenericNack, 8));
    assert_ne!(p.status, status::OK);
    // Originators that would not make a mail address (a header's worth of CRLF, Latin-1, a
    // mail address): ESME_RINVSRCADR, nothing stored.
    for bad in ["x>\r\nBcc: y@z", "caf\u{e9}", "a@b.example", "TwelveLetter"] {
        let mut sm = text_sm("447700900123", "15551234567", "forged");
        sm.source.addr = bad.into();
        assert_eq!(c.deliver(sm).await, status::INVSRCADR, "{bad:?}");
    }
    // A flood: 300 deliver_sm written at once, no response read until all are sent. smsmta
    // handles 64 at a time and stops reading beyond; every one is answered OK in the end and
    // every text reaches the handset once.
    const FLOOD: u32 = 300;
    let mut burst = Vec::new();
    for i in 0..FLOOD {
        burst.extend(pdu::encode(&Pdu {
            status: 0,
            sequence: 1000 + i,
            body: Body::DeliverSm(Box::new(text_sm(
                "447700900123",
                "15551234567",
                &format!("flood {i}"),
            ))),
        }));
    }
    c.s.write_all(&burst).await.unwrap();
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < FLOOD as usize {
        let p = c.recv(30).await;
        assert_eq!(
            (p.body.clone(), p.status),
            (Body::DeliverSmResp, status::OK),
            "{p:?}"
        );
        assert!(
            answered.insert(p.sequence),
            "answered twice: {}",
            p.sequence
        );
    }
    let mut texts = std::collections::BTreeSet::new();
    while texts.len() < FLOOD as usize {
        let (t, _) = handset.next_text(30).await;
        assert!(t.starts_with("flood ") && !t.contains("forged"), "{t}");
        assert!(texts.insert(t.clone()), "delivered twice: {t}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), handset.rx.recv())
            .await
            .is_err(),
        "nothing else reached the handset"
    );
}
