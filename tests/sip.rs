//! The SIP front door over real sockets on 127.0.0.1 (port 0): the MESSAGEs of the vectors
//! become spooled mail, retransmissions and resends become one message, untrusted sources and
//! bad bodies are refused with the right codes, REGISTER binds and notifies, and a three-part
//! concatenated SMS becomes one mail.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
mod common;

use common::Env;
use smsmta::sms::body::hex_encode;
use smsmta::sms::{Address, RpData, RpMessage};
use smsmta::spool::QueueFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

struct Msg<'a> {
    method: &'a str,
    ruri: &'a str,
    from_user: &'a str,
    to_user: &'a str,
    call_id: &'a str,
    branch: &'a str,
    content_type: Option<&'a str>,
    extra: &'a str,
    body: &'a [u8],
}

impl Default for Msg<'_> {
    fn default() -> Self {
        Msg {
            method: "MESSAGE",
            ruri: "sip:smsc@127.0.0.1",
            from_user: "IMSI001010000000001",
            to_user: "15551234567",
            call_id: "call-1@127.0.0.1",
            branch: "z9hG4bK-1",
            content_type: Some("text/plain"),
            extra: "",
            body: b"hello",
        }
    }
}

fn request(m: &Msg<'_>) -> Vec<u8> {
    let mut s = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=ft1\r\nTo: <sip:{to}@127.0.0.1>\r\nCall-ID: {cid}\r\nCSeq: 1 {method}\r\n{extra}",
        method = m.method,
        ruri = m.ruri,
        branch = m.branch,
        from = m.from_user,
        to = m.to_user,
        cid = m.call_id,
        extra = m.extra,
    );
    if let Some(ct) = m.content_type {
        s.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n", m.body.len()));
    let mut out = s.into_bytes();
    out.extend_from_slice(m.body);
    out
}

async fn udp_exchange(server: SocketAddr, datagram: &[u8]) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(datagram, server).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("no SIP response")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn status(resp: &str) -> u16 {
    resp.split(' ').nth(1).unwrap().parse().unwrap()
}

fn mail_of(f: &QueueFile) -> (String, String, String) {
    let m = MessageParser::default().parse(&f.message).unwrap();
    (
        m.from()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_string(),
        m.to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_string(),
        m.body_text(0).unwrap().trim_end().to_string(),
    )
}

/// The OpenBTS MO MESSAGE of vector 02 (hex RP-DATA body, no Content-Transfer-Encoding).
const VECTOR_02_BODY: &str = "0054000891683110901105f00e1154038155f50000ff04d4f29c0e";

#[tokio::test]
async fn openbts_vector_message_becomes_mail_from_the_msisdn_to_the_tp_da() {
    let env = Env::start("").await;
    env.add_subscriber("15550001111", "460010018073482").await;
    let req = request(&Msg {
        from_user: "IMSI460010018073482",
        content_type: Some("application/vnd.3gpp.sms"),
        body: VECTOR_02_BODY.as_bytes(),
        ..Msg::default()
    });
    let resp = udp_exchange(env.udp(), &req).await;
    assert_eq!(status(&resp), 202, "{resp}");
    assert!(resp.contains("Call-ID: call-1@127.0.0.1\r\n"));
    let files = env.spooled(1).await;
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f.envelope.sender, "15550001111@sms.test");
    assert_eq!(f.envelope.recipients[0].address, "555@sms.test");
    assert_eq!(f.original, req, "the SIP request is kept in the queue file");
    let (from, to, text) = mail_of(f);
    assert_eq!(
        (from.as_str(), to.as_str(), text.as_str()),
        ("15550001111@sms.test", "555@sms.test", "Test")
    );
    let raw = String::from_utf8_lossy(&f.message);
    assert!(raw.contains("X-SMS-IMSI: 460010018073482"));
    assert!(raw.contains("X-SMS-TP-MR: 84"));
    assert!(raw.contains(&format!("X-SMS-RP-DATA: {VECTOR_02_BODY}")));
    assert!(raw.starts_with("Received: from 127.0.0.1:"));
    // Validity 0xFF (63 weeks) does not extend the 3-day SMS lifetime.
    assert_eq!(f.envelope.expires - f.envelope.arrival, 3 * 86_400);
    env.stop().await;
}

#[tokio::test]
async fn smtest_text_plain_template_goes_to_the_to_user() {
    let env = Env::start("").await;
    // smqueue's smtest: bare LF everywhere, destination in To:, text/plain, From a number.
    let req = "MESSAGE sip:smsc@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1;branch=5f3a\nMax-Forwards: 2\nFrom: 2222222 <sip:2222222@127.0.0.1:5070>;tag=1234\nTo: sip:3333333@127.0.0.1\nCall-ID: 77ab@127.0.0.1:5070\nCSeq: 1 MESSAGE\nContent-Type: text/plain\nContent-Length: 11\n\nhello world\n";
    let resp = udp_exchange(env.udp(), req.as_bytes()).await;
    assert_eq!(status(&resp), 202, "{resp}");
    let f = &env.spooled(1).await[0];
    let (from, to, text) = mail_of(f);
    assert_eq!(
        (from.as_str(), to.as_str(), text.as_str()),
        ("2222222@sms.test", "3333333@sms.test", "hello world")
    );
    env.stop().await;
}

#[tokio::test]
async fn retransmission_and_resend_after_lost_202_make_one_message() {
    let env = Env::start("").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let req = request(&Msg::default());
    let r1 = udp_exchange(env.udp(), &req).await;
    let r2 = udp_exchange(env.udp(), &req).await;
    assert_eq!(status(&r1), 202);
    assert_eq!(r1, r2, "a retransmission gets the same response");
    // The same MESSAGE again with a new branch (the client lost the 202 and resent it).
    let resend = request(&Msg {
        branch: "z9hG4bK-2",
        ..Msg::default()
    });
    assert_eq!(status(&udp_exchange(env.udp(), &resend).await), 202);
    // A different message (new Call-ID) is a new SMS.
    let other = request(&Msg {
        branch: "z9hG4bK-3",
        call_id: "call-2@127.0.0.1",
        ..Msg::default()
    });
    assert_eq!(status(&udp_exchange(env.udp(), &other).await), 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.spooled(2).await.len(), 2);
    env.stop().await;
}

#[tokio::test]
async fn untrusted_source_gets_403_and_nothing_is_queued() {
    let env = Env::start("[sip]\ntrusted_networks = [\"10.0.0.0/8\"]\n").await;
    let resp = udp_exchange(env.udp(), &request(&Msg::default())).await;
    assert_eq!(status(&resp), 403, "{resp}");
    let reg = request(&Msg {
        method: "REGISTER",
        ruri: "sip:127.0.0.1",
        to_user: "IMSI001010000000001",
        content_type: None,
        extra: "Contact: <sip:IMSI001010000000001@127.0.0.1:5062>\r\n",
        body: b"",
        ..Msg::default()
    });
    assert_eq!(status(&udp_exchange(env.udp(), &reg).await), 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.spooled(0).await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_413_415_and_unknown_imsi_403() {
    let env = Env::start("[sip]\nmax_message_size = \"1KiB\"\n").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let cases: Vec<(Msg<'_>, u16, &str)> = vec![
        (
            Msg {
                body: b"",
                branch: "z9hG4bK-a",
                call_id: "a",
                ..Msg::default()
            },
            400,
            "empty",
        ),
        (
            Msg {
                body: &[b'x'; 2000],
                branch: "z9hG4bK-b",
                call_id: "b",
                ..Msg::default()
            },
            413,
            "too large",
        ),
        (
            Msg {
                content_type: Some("image/png"),
                branch: "z9hG4bK-c",
                call_id: "c",
                ..Msg::default()
            },
            415,
            "type",
        ),
        (
            Msg {
                content_type: Some("application/vnd.3gpp.sms"),
                body: b"zz-not-an-sms",
                branch: "z9hG4bK-d",
                call_id: "d",
                ..Msg::default()
            },
            400,
            "garbage sms",
        ),
        (
            Msg {
                content_type: Some("application/vnd.3gpp.sms"),
                body: b"0054",
                branch: "z9hG4bK-e",
                call_id: "e",
                ..Msg::default()
            },
            400,
            "truncated rp",
        ),
        (
            Msg {
                from_user: "IMSI999990000000009",
                branch: "z9hG4bK-f",
                call_id: "f",
                ..Msg::default()
            },
            403,
            "unknown imsi",
        ),
    ];
    for (m, want, what) in &cases {
        let resp = udp_exchange(env.udp(), &request(m)).await;
        assert_eq!(status(&resp), *want, "{what}: {resp}");
        if *want == 415 {
            assert!(resp.contains("Accept: text/plain, application/vnd.3gpp.sms"));
        }
    }
    // Garbage with no usable head is dropped without an answer; the server stays up.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x00\x01garbage\r\n\r\n", env.udp())
        .await
        .unwrap();
    let opt = request(&Msg {
        method: "OPTIONS",
        content_type: None,
        body: b"",
        branch: "z9hG4bK-g",
        call_id: "g",
        ..Msg::default()
    });
    let resp = udp_exchange(env.udp(), &opt).await;
    assert_eq!(status(&resp), 200);
    assert!(resp.contains("Allow: MESSAGE, REGISTER, OPTIONS"));
    let info = request(&Msg {
        method: "INFO",
        content_type: None,
        body: b"",
        branch: "z9hG4bK-h",
        call_id: "h",
        ..Msg::default()
    });
    let resp = udp_exchange(env.udp(), &info).await;
    assert_eq!(status(&resp), 405);
    assert!(resp.contains("Allow: "));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.spooled(0).await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn register_binds_the_contact_and_publishes_reachability() {
    let env = Env::start("").await;
    env.add_subscriber("15551234567", "001010000000001").await;
    let mut notes = env.running.as_ref().unwrap().reachable.subscribe();
    let reg = request(&Msg {
        method: "REGISTER",
        ruri: "sip:127.0.0.1",
        from_user: "IMSI001010000000001",
        to_user: "IMSI001010000000001",
        content_type: None,
        extra: "Contact: <sip:IMSI001010000000001@127.0.0.1:5062>;expires=600\r\n",
        body: b"",
        ..Msg::default()
    });
    let resp = udp_exchange(env.udp(), &reg).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(
        resp.contains("Contact: <sip:IMSI001010000000001@127.0.0.1:5062>;expires=600"),
        "{resp}"
    );
    let note = tokio::time::timeout(Duration::from_secs(2), notes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.aor, "IMSI001010000000001");
    assert_eq!(note.msisdn.as_deref(), Some("15551234567"));
    let bindings = env
        .running
        .as_ref()
        .unwrap()
        .registry
        .call(|db| db.bindings("IMSI001010000000001", smsmta::clock::now_unix()))
        .await
        .unwrap();
    assert_eq!(bindings.len(), 1);
    // Contact * with Expires: 0 removes every binding.
    let unreg = request(&Msg {
        method: "REGISTER",
        ruri: "sip:127.0.0.1",
        to_user: "IMSI001010000000001",
        branch: "z9hG4bK-r2",
        call_id: "r2",
        content_type: None,
        extra: "Contact: *\r\nExpires: 0\r\n",
        body: b"",
        ..Msg::default()
    });
    let resp = udp_exchange(env.udp(), &unreg).await;
    assert_eq!(status(&resp), 200);
    assert!(!resp.contains("Contact:"), "{resp}");
    env.stop().await;
}

/// RP-DATA (MO) around a TPDU, as hex.
fn rp_hex(tpdu: Vec<u8>, mr: u8) -> String {
    hex_encode(
        &RpMessage::Data(RpData {
            to_network: true,
            message_ref: mr,
            originator: None,
            destination: Some(Address::parse("+15550000000")),
            tpdu,
        })
        .encode()
        .unwrap(),
    )
}

#[tokio::test]
async fn three_part_concatenated_sms_becomes_one_mail_with_the_whole_text() {
    let env = Env::start("").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    // The 3-part SUBMIT of vector 07 (reference 136), sent out of order: 3, 1, 2.
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vectors/07-python-messaging-sms-submit.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let case = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("concatenated"))
        .unwrap();
    let pdus: Vec<Vec<u8>> = case["pdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let b = smsmta::sms::body::hex_decode(p.as_str().unwrap().as_bytes()).unwrap();
            b[1..].to_vec() // no SMSC prefix ("00")
        })
        .collect();
    for (n, i) in [2usize, 0, 1].into_iter().enumerate() {
        let body = rp_hex(pdus[i].clone(), i as u8);
        let branch = format!("z9hG4bK-p{i}");
        let call_id = format!("part-{i}");
        let req = request(&Msg {
            content_type: Some("application/vnd.3gpp.sms"),
            body: body.as_bytes(),
            branch: &branch,
            call_id: &call_id,
            ..Msg::default()
        });
        let resp = udp_exchange(env.udp(), &req).await;
        assert_eq!(status(&resp), 202, "part {i}: {resp}");
        if n < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                env.spooled(0).await.is_empty(),
                "no mail before the last part"
            );
        }
    }
    let files = env.spooled(1).await;
    assert_eq!(files.len(), 1);
    let (from, to, text) = mail_of(&files[0]);
    assert_eq!(from, "15550001111@sms.test");
    assert_eq!(to, "655345678@sms.test");
    assert_eq!(text, case["text"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&files[0].message).contains("X-SMS-Parts: 3/3"));
    env.stop().await;
}

#[tokio::test]
async fn incomplete_concatenation_goes_out_with_the_gap_marked_after_the_timeout() {
    let env = Env::start("[sip]\nconcat_timeout = \"10s\"\n").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let text = "a".repeat(400);
    let segs = smsmta::sms::segment::segment(&text, &Default::default());
    let uds = smsmta::sms::segment::user_data(&segs, 9, false);
    // Send parts 1 and 3 only.
    for i in [0usize, 2] {
        let s = smsmta::sms::Submit {
            reject_duplicates: false,
            reply_path: false,
            status_report_request: false,
            message_ref: i as u8,
            destination: Address::parse("15559990000"),
            pid: 0,
            dcs: smsmta::sms::tpdu::Dcs::parse(0),
            validity: None,
            user_data: uds[i].clone(),
        };
        let body = rp_hex(s.encode().unwrap(), i as u8);
        let (branch, cid) = (format!("z9hG4bK-g{i}"), format!("gap-{i}"));
        let req = request(&Msg {
            content_type: Some("application/vnd.3gpp.sms"),
            body: body.as_bytes(),
            branch: &branch,
            call_id: &cid,
            ..Msg::default()
        });
        assert_eq!(status(&udp_exchange(env.udp(), &req).await), 202);
    }
    // The sweep runs every 2.5 s here; the parts are 10 s old after about 10 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let files = loop {
        let f = env.spooled(0).await;
        if !f.is_empty() || Instant::now() > deadline {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(files.len(), 1, "the incomplete message went out");
    let (_, to, body) = mail_of(&files[0]);
    assert_eq!(to, "15559990000@sms.test");
    assert_eq!(body, format!("{}[...]{}", "a".repeat(153), "a".repeat(94)));
    env.stop().await;
}

#[tokio::test]
async fn smqueue_address_first_convention_sends_to_the_email_address() {
    let env = Env::start("").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let req = request(&Msg {
        body: b"alice@example.org see you at 8",
        ..Msg::default()
    });
    assert_eq!(status(&udp_exchange(env.udp(), &req).await), 202);
    let (_, to, text) = mail_of(&env.spooled(1).await[0]);
    assert_eq!(
        (to.as_str(), text.as_str()),
        ("alice@example.org", "see you at 8")
    );
    env.stop().await;
}

#[tokio::test]
async fn message_over_tcp_is_framed_by_content_length() {
    let env = Env::start("").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let mut s = TcpStream::connect(env.tcp()).await.unwrap();
    let a = request(&Msg {
        branch: "z9hG4bK-t1",
        call_id: "t1",
        body: b"first",
        ..Msg::default()
    });
    let b = request(&Msg {
        branch: "z9hG4bK-t2",
        call_id: "t2",
        body: b"second",
        ..Msg::default()
    });
    // Both in one write: two frames, two answers.
    s.write_all(&[a, b].concat()).await.unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.matches("SIP/2.0 202").count() < 2 && Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(got.matches("SIP/2.0 202 Accepted").count(), 2, "{got}");
    let texts: Vec<String> = env.spooled(2).await.iter().map(|f| mail_of(f).2).collect();
    assert!(texts.contains(&"first".to_string()) && texts.contains(&"second".to_string()));
    env.stop().await;
}

#[tokio::test]
async fn spool_failure_gets_503_with_retry_after() {
    let env = Env::start("[spool]\njournal = false\n").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    // Break the spool: tmp/ becomes a plain file, so every commit fails.
    let tmp = env.spool_dir.join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"").unwrap();
    let resp = udp_exchange(env.udp(), &request(&Msg::default())).await;
    assert_eq!(status(&resp), 503, "{resp}");
    assert!(resp.contains("Retry-After: 5"));
    // Repaired, the client's retransmission with a new branch is accepted.
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let again = request(&Msg {
        branch: "z9hG4bK-again",
        ..Msg::default()
    });
    assert_eq!(status(&udp_exchange(env.udp(), &again).await), 202);
    env.stop().await;
}

#[tokio::test]
async fn a_burst_beyond_max_in_flight_gets_503_with_retry_after_and_nothing_is_lost() {
    // One request at a time, each commit a real fsync (no journal): a burst must overflow.
    let env = Env::start("[spool]\njournal = false\n[sip]\nmax_in_flight = 1\n").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let n = 100;
    for i in 0..n {
        let (branch, cid) = (format!("z9hG4bK-burst{i}"), format!("burst-{i}"));
        let req = request(&Msg {
            branch: &branch,
            call_id: &cid,
            ..Msg::default()
        });
        sock.send_to(&req, env.udp()).await.unwrap();
    }
    let (mut accepted, mut busy) = (0, 0);
    let mut buf = vec![0u8; 65536];
    // UDP may drop datagrams under a burst (socket buffers); count what comes back.
    while accepted + busy < n {
        let Ok(r) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await
        else {
            break;
        };
        let (len, _) = r.unwrap();
        let resp = String::from_utf8_lossy(&buf[..len]).into_owned();
        match status(&resp) {
            202 => accepted += 1,
            503 => {
                assert!(resp.contains("Retry-After: 5"), "{resp}");
                busy += 1;
            }
            other => panic!("unexpected {other}: {resp}"),
        }
    }
    assert!(busy > 0, "the burst never overflowed one in-flight slot");
    assert!(accepted > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.spooled(accepted).await.len(),
        accepted,
        "every 202 is in the spool, no more"
    );
    env.stop().await;
}

/// The answer to one datagram: its status line, or `None` when nothing came back.
async fn udp_status(server: SocketAddr, datagram: &[u8]) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(datagram, server).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Some(text.lines().next().unwrap_or("").to_string())
}

/// The torture messages of RFC 4475 section 3 (tests/fixtures/rfc4475, written after its
/// cases, with MESSAGE versions of those that matter to an SMS server): each gets the answer
/// RFC 3261 asks for, listed in `expected` (`-` for none: a response that matches no
/// transaction is dropped), the server never stops answering, and only the well-formed
/// MESSAGE is queued.
#[tokio::test]
async fn rfc_4475_torture_messages_get_the_answers_rfc_3261_asks_for() {
    let env = Env::start("").await;
    env.add_subscriber("15550001111", "001010000000001").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let expected = std::fs::read_to_string(dir.join("expected")).unwrap();
    let mut wrong = Vec::new();
    let mut seen = 0;
    for line in expected
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut f = line.split_whitespace();
        let (name, want) = (f.next().unwrap(), f.next().unwrap());
        let raw = std::fs::read(dir.join(format!("{name}.sip"))).unwrap();
        let line = udp_status(env.udp(), &raw).await;
        let got = line
            .as_deref()
            .map_or("-".to_string(), |l| status(l).to_string());
        if got != want {
            wrong.push(format!("{name}: expected {want}, got {line:?}"));
        }
        seen += 1;
    }
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sip")
        })
        .count();
    assert_eq!(seen, files, "every message has an expected answer");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Still answering, and only the one well-formed MESSAGE (wsmsg) was queued.
    let resp = udp_exchange(env.udp(), &request(&Msg::default())).await;
    assert_eq!(status(&resp), 202, "{resp}");
    let queued = env.spooled(2).await;
    assert_eq!(queued.len(), 2, "wsmsg and the ordinary MESSAGE");
    let texts: Vec<_> = queued.iter().map(|f| mail_of(f).2).collect();
    assert!(
        texts.iter().any(|t| t.contains("torture survived")),
        "{texts:?}"
    );
    env.stop().await;
}
