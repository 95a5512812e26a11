//! The SMPP server over real sockets on loopback: a bound ESME's submit_sm is durable before
//! its submit_sm_resp names the queue ID, and what a hostile peer sends (bad credentials,
//! forged sources, unknown recipients, garbage, silence) gets a clear status, never a panic,
//! and stores nothing.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::time::Duration;

use smsmta::smpp::pdu::{self, Address, Bind, BindKind, Body, Pdu, Sm, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hash(password: &str) -> String {
    let p = sha_crypt::Sha512Params::new(5_000).unwrap();
    sha_crypt::sha512_simple(password, &p).unwrap()
}

async fn env() -> common::Env {
    let extra = format!(
        "[smpp]\nlisten = \"127.0.0.1:0\"\nbind_timeout = \"1s\"\nmax_errors = 3\n\
         [[smpp.esme]]\nsystem_id = \"app\"\npassword_hash = \"{}\"\nsources = [\"2337\", \"INFO\"]\n\
         [[smpp.esme]]\nsystem_id = \"far\"\npassword_hash = \"{}\"\nnetworks = [\"192.0.2.0/24\"]\nsources = [\"2337\"]\n",
        hash("secret"),
        hash("secret")
    );
    let env = common::Env::start(&extra).await;
    env.add_subscriber("15551234567", "001010000000001").await;
    env
}

fn addr(env: &common::Env) -> std::net::SocketAddr {
    env.running.as_ref().unwrap().smpp.unwrap()
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(env: &common::Env) -> Client {
        Client {
            s: TcpStream::connect(addr(env)).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, body: Body, seq: u32) {
        let b = pdu::encode(&Pdu {
            status: 0,
            sequence: seq,
            body,
        });
        self.s.write_all(&b).await.unwrap();
    }

    /// The next PDU, or `None` when the server closed the connection.
    async fn recv(&mut self) -> Option<Pdu> {
        loop {
            if let Ok(Some(n)) = pdu::frame_length(&self.buf, 1 << 16)
                && self.buf.len() >= n
            {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                return Some(pdu::decode(&frame).unwrap());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
                .await
                .expect("the server answered in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn bind(&mut self, id: &str, password: &str) -> Pdu {
        let bind = Bind {
            system_id: id.into(),
            password: password.into(),
            interface_version: 0x34,
            ..Bind::default()
        };
        self.send(Body::Bind(BindKind::Transceiver, bind), 1).await;
        self.recv().await.unwrap()
    }
}

fn submit(src: &str, dst: &str, text: &str) -> Body {
    Body::SubmitSm(Box::new(Sm {
        source: Address {
            ton: 5,
            npi: 0,
            addr: src.into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: dst.into(),
        },
        data_coding: 0,
        short_message: text.as_bytes().to_vec(),
        ..Sm::default()
    }))
}

#[tokio::test]
async fn a_submit_sm_is_durable_before_its_response_names_the_queue_id() {
    let env = env().await;
    let mut c = Client::connect(&env).await;
    let b = c.bind("app", "secret").await;
    assert_eq!(b.status, status::OK);
    assert_eq!(
        b.body,
        Body::BindResp(BindKind::Transceiver, "smsmta".into())
    );
    c.send(submit("2337", "15551234567", "Your code is 1234"), 2)
        .await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.status, r.sequence), (status::OK, 2));
    let Body::SubmitSmResp(id) = r.body else {
        panic!("{r:?}")
    };
    let queued = env.spooled(1).await;
    assert_eq!(queued.len(), 1);
    let f = &queued[0];
    assert_eq!(f.id().to_string(), id, "message_id is the queue ID");
    assert_eq!(f.envelope.recipients[0].address, "15551234567@sms.test");
    assert_eq!(f.envelope.sender, "", "no bounce goes to an ESME's number");
    assert_eq!(f.envelope.origin.sender_number.as_deref(), Some("2337"));
    let m = mail_parser::MessageParser::default()
        .parse(&f.message)
        .unwrap();
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some("2337@sms.test")
    );
    assert_eq!(m.body_text(0).unwrap().trim_end(), "Your code is 1234");
    assert!(String::from_utf8_lossy(&f.message).contains("with SMPP/TCP id"));
    // enquire_link is answered, unbind ends the session with its response.
    c.send(Body::EnquireLink, 3).await;
    assert_eq!(c.recv().await.unwrap().body, Body::EnquireLinkResp);
    c.send(Body::Unbind, 4).await;
    assert_eq!(c.recv().await.unwrap().body, Body::UnbindResp);
    assert!(c.recv().await.is_none(), "closed after unbind");
    env.stop().await;
}

#[tokio::test]
async fn bad_credentials_and_foreign_networks_are_refused_and_the_connection_closed() {
    let env = env().await;
    for (id, pw, want) in [
        ("app", "wrong", status::INVPASWD),
        ("nobody", "secret", status::INVSYSID),
        ("far", "secret", status::BINDFAIL),
    ] {
        let mut c = Client::connect(&env).await;
        let b = c.bind(id, pw).await;
        assert_eq!(b.status, want, "{id}");
        assert!(c.recv().await.is_none(), "{id}: closed after the refusal");
    }
    env.stop().await;
}

#[tokio::test]
async fn forged_sources_unknown_recipients_and_unbound_submits_store_nothing() {
    let env = env().await;
    let mut c = Client::connect(&env).await;
    c.send(submit("2337", "15551234567", "before bind"), 1)
        .await;
    assert_eq!(c.recv().await.unwrap().status, status::INVBNDSTS);
    assert_eq!(c.bind("app", "secret").await.status, status::OK);
    for (seq, (src, dst, want)) in [
        ("15551234567", "15551234567", status::INVSRCADR),
        ("2337", "15559999999", status::INVDSTADR),
        ("2337", "not a number", status::INVDSTADR),
    ]
    .into_iter()
    .enumerate()
    {
        c.send(submit(src, dst, "x"), 10 + seq as u32).await;
        let r = c.recv().await.unwrap();
        assert_eq!(
            (r.status, r.sequence),
            (want, 10 + seq as u32),
            "{src} -> {dst}"
        );
    }
    assert!(env.spooled(0).await.is_empty(), "nothing was stored");
    env.stop().await;
}

#[tokio::test]
async fn garbage_gets_generic_nack_and_a_bad_length_or_too_much_garbage_closes() {
    let env = env().await;
    // A body that does not decode: generic_nack, the session goes on.
    let mut c = Client::connect(&env).await;
    assert_eq!(c.bind("app", "secret").await.status, status::OK);
    let mut bad = pdu::encode(&Pdu {
        status: 0,
        sequence: 5,
        body: submit("2337", "15551234567", "hello"),
    });
    bad.truncate(30);
    bad[..4].copy_from_slice(&30u32.to_be_bytes());
    c.s.write_all(&bad).await.unwrap();
    let r = c.recv().await.unwrap();
    assert_eq!(
        (r.body, r.status, r.sequence),
        (Body::GenericNack, status::INVMSGLEN, 5)
    );
    c.send(Body::Other(0x0000_0103), 6).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.body, r.status), (Body::GenericNack, status::INVCMDID));
    c.send(Body::EnquireLink, 7).await;
    assert_eq!(c.recv().await.unwrap().body, Body::EnquireLinkResp);
    // The third undecodable PDU ends it (max_errors = 3).
    c.s.write_all(&bad).await.unwrap();
    c.s.write_all(&bad).await.unwrap();
    assert_eq!(c.recv().await.unwrap().body, Body::GenericNack);
    assert_eq!(c.recv().await.unwrap().body, Body::GenericNack);
    assert!(c.recv().await.is_none());
    // A command_length of 4 GiB: generic_nack, closed, nothing buffered for it.
    let mut c = Client::connect(&env).await;
    c.s.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9])
        .await
        .unwrap();
    let r = c.recv().await.unwrap();
    assert_eq!((r.body, r.status), (Body::GenericNack, status::INVCMDLEN));
    assert!(c.recv().await.is_none());
    // Silence: closed after bind_timeout (1 s).
    let mut c = Client::connect(&env).await;
    let t = std::time::Instant::now();
    assert!(c.recv().await.is_none());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(env.spooled(0).await.is_empty(), "nothing was stored");
    env.stop().await;
}

#[tokio::test]
async fn mail_to_an_esmes_service_number_goes_to_it_as_deliver_sm_until_it_answers() {
    let extra = format!(
        "[smpp]\nlisten = \"127.0.0.1:0\"\n[[smpp.esme]]\nsystem_id = \"app\"\npassword_hash = \"{}\"\nsources = [\"7777\"]\nservice_numbers = [\"7777\"]\n\
         [delivery]\nbts = \"127.0.0.1:9\"\nhandset_backoff_min = \"60s\"\nhandset_backoff_max = \"60s\"\n",
        hash("secret")
    );
    let env = common::Env::start(&extra).await;
    // A mail to the service number while the ESME is not bound: accepted, kept.
    let s = TcpStream::connect(env.smtp()).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    let mut reply = async |r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>| {
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return line.clone();
            }
        }
    };
    reply(&mut r).await;
    for cmd in [
        "EHLO t\r\n",
        "MAIL FROM:<alice@example.org>\r\n",
        "RCPT TO:<7777@sms.test>\r\n",
        "DATA\r\n",
        "From: alice@example.org\r\nTo: 7777@sms.test\r\n\r\nSTOP\r\n.\r\n",
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        let got = reply(&mut r).await;
        assert!(
            got.starts_with('2') || got.starts_with('3'),
            "{cmd:?}: {got}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The ESME binds as a receiver: the text arrives as deliver_sm at once (its bind makes
    // the service number's texts due, as a REGISTER does a handset's; the retry is 60 s away).
    let mut c = Client::connect(&env).await;
    let bind = Bind {
        system_id: "app".into(),
        password: "secret".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    c.send(Body::Bind(BindKind::Receiver, bind), 1).await;
    assert_eq!(c.recv().await.unwrap().status, status::OK);
    let d = loop {
        let p = c.recv().await.expect("a deliver_sm");
        if let Body::DeliverSm(sm) = p.body {
            break (p.sequence, sm);
        }
    };
    let (seq, sm) = d;
    assert_eq!(sm.dest.addr, "7777");
    let text = smsmta::smpp::text::decode(sm.data_coding, sm.payload()).unwrap();
    assert!(text.contains("STOP"), "{text}");
    assert!(
        text.contains("alice@example.org"),
        "mail names its sender: {text}"
    );
    c.s.write_all(&pdu::encode(&Pdu {
        status: 0,
        sequence: seq,
        body: Body::DeliverSmResp,
    }))
    .await
    .unwrap();
    // Delivered: the message leaves the queue.
    let spool = smsmta::spool::Spool::open(&env.spool_dir, 1 << 20).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: usize = smsmta::spool::Queue::MESSAGE_QUEUES
            .iter()
            .map(|q| spool.list(*q).unwrap().len())
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} messages still queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_address_and_multibyte_names_are_refused_and_texts_still_go_through() {
    let extra = format!(
        "[smpp]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_client = 4\n\
         [[smpp.esme]]\nsystem_id = \"app\"\npassword_hash = \"{}\"\nsources = [\"2337\"]\n",
        hash("secret")
    );
    let env = common::Env::start(&extra).await;
    env.add_subscriber("15551234567", "001010000000001").await;
    // Names and passwords with multi-byte characters (as octets on the wire): refused, no panic.
    let mut c = Client::connect(&env).await;
    let mut b = pdu::encode(&Pdu {
        status: 0,
        sequence: 1,
        body: Body::Bind(BindKind::Transceiver, Bind::default()),
    });
    b.splice(16..16, "ßñ🙂".bytes());
    let n = b.len() as u32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    c.s.write_all(&b).await.unwrap();
    let r = c.recv().await.unwrap();
    assert_eq!(r.status, status::INVSYSID);
    // Four connections from one address are let in; the fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(Client::connect(&env).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = Client::connect(&env).await;
    assert!(
        fifth.recv().await.is_none(),
        "the fifth connection is closed"
    );
    // One of the four binds and submits: texts still go through.
    let c = &mut held[0];
    assert_eq!(c.bind("app", "secret").await.status, status::OK);
    c.send(submit("2337", "15551234567", "still here"), 2).await;
    assert_eq!(c.recv().await.unwrap().status, status::OK);
    assert_eq!(env.spooled(1).await.len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn a_receipt_asked_for_comes_back_as_deliver_sm_once_the_handset_has_the_text() {
    let mut handset = peers::SipPeer::ok().await;
    let extra = format!(
        "[smpp]\nlisten = \"127.0.0.1:0\"\n[[smpp.esme]]\nsystem_id = \"app\"\npassword_hash = \"{}\"\nsources = [\"2337\"]\n\
         [delivery]\nbts = \"{}\"\n",
        hash("secret"),
        handset.addr
    );
    let env = common::Env::start(&extra).await;
    env.add_subscriber("15551234567", "001010000000001").await;
    let mut c = Client::connect(&env).await;
    assert_eq!(c.bind("app", "secret").await.status, status::OK);
    let Body::SubmitSm(mut sm) = submit("2337", "15551234567", "with a receipt") else {
        panic!()
    };
    sm.registered_delivery = 1;
    c.send(Body::SubmitSm(sm), 2).await;
    let r = c.recv().await.unwrap();
    let Body::SubmitSmResp(id) = r.body else {
        panic!("{r:?}")
    };
    let got = tokio::time::timeout(Duration::from_secs(10), handset.rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.deliver
            .unwrap()
            .user_data
            .body
            .text()
            .contains("with a receipt")
    );
    let (seq, receipt) = loop {
        let p = c.recv().await.expect("a receipt");
        if let Body::DeliverSm(sm) = p.body {
            break (p.sequence, sm);
        }
    };
    assert_eq!(receipt.esm_class, 0x04, "a delivery receipt");
    let text = String::from_utf8(receipt.short_message.clone()).unwrap();
    assert!(text.starts_with(&format!("id:{id} ")), "{text}");
    assert!(text.contains("stat:DELIVRD"), "{text}");
    assert_eq!(receipt.dest.addr, "2337");
    assert_eq!(receipt.source.addr, "15551234567");
    c.s.write_all(&pdu::encode(&Pdu {
        status: 0,
        sequence: seq,
        body: Body::DeliverSmResp,
    }))
    .await
    .unwrap();
    // Without registered_delivery, no receipt.
    c.send(submit("2337", "15551234567", "no receipt"), 3).await;
    assert_eq!(c.recv().await.unwrap().status, status::OK);
    let _ = tokio::time::timeout(Duration::from_secs(10), handset.rx.recv())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(Body::EnquireLink, 4).await;
    let next = c.recv().await.unwrap();
    assert_eq!(
        next.body,
        Body::EnquireLinkResp,
        "no deliver_sm for a text that asked for none"
    );
    // Nobody outside can address a receipt to an ESME: SMTP refuses the address at RCPT.
    use tokio::io::AsyncBufReadExt;
    let s = TcpStream::connect(env.smtp()).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut last = String::new();
    for cmd in [
        "",
        "EHLO t\r\n",
        "MAIL FROM:<alice@example.org>\r\n",
        "RCPT TO:<esme=app@sms.test>\r\n",
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        loop {
            last.clear();
            r.read_line(&mut last).await.unwrap();
            if last.len() < 4 || last.as_bytes()[3] == b' ' {
                break;
            }
        }
    }
    assert!(
        last.starts_with('5'),
        "RCPT to an ESME's receipt address: {last}"
    );
    env.stop().await;
}

#[tokio::test]
async fn concatenated_parts_from_an_esme_are_kept_until_whole_and_stored_as_one_text() {
    let env = env().await;
    let mut c = Client::connect(&env).await;
    assert_eq!(c.bind("app", "secret").await.status, status::OK);
    let part = |seq: u8, text: &str| {
        let Body::SubmitSm(mut sm) = submit("2337", "15551234567", "") else {
            panic!()
        };
        sm.esm_class = 0x40;
        sm.short_message = [&[5, 0, 3, 0x2A, 2, seq][..], text.as_bytes()].concat();
        Body::SubmitSm(sm)
    };
    // The second part first: kept, answered OK with an ID of its own, nothing queued yet.
    c.send(part(2, "and the rest."), 2).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.status, r.sequence), (status::OK, 2));
    let Body::SubmitSmResp(part_id) = r.body else {
        panic!("{r:?}")
    };
    assert!(part_id.starts_with('P'), "{part_id}");
    // The same part again (a resend) changes nothing.
    c.send(part(2, "and the rest."), 3).await;
    assert_eq!(c.recv().await.unwrap().status, status::OK);
    // The first: the text is whole, stored once, and its ID is the queue ID.
    c.send(part(1, "The first half "), 4).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.status, r.sequence), (status::OK, 4));
    let Body::SubmitSmResp(id) = r.body else {
        panic!("{r:?}")
    };
    let queued = env.spooled(1).await;
    assert_eq!(queued.len(), 1, "one text, not three");
    assert_eq!(queued[0].id().to_string(), id);
    let m = mail_parser::MessageParser::default()
        .parse(&queued[0].message)
        .unwrap();
    assert_eq!(
        m.body_text(0).unwrap().trim_end(),
        "The first half and the rest."
    );
    // A part from a source the account may not use is refused before it is kept.
    let Body::SubmitSm(mut forged) = part(1, "x") else {
        panic!()
    };
    forged.source.addr = "15559999999".into();
    c.send(Body::SubmitSm(forged), 5).await;
    assert_eq!(c.recv().await.unwrap().status, status::INVSRCADR);
    env.stop().await;
}
