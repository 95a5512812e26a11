//! The SMTP front door over real sockets on 127.0.0.1 (port 0): lettre as the client, raw
//! sockets for the edges (pipelining, null sender, SIZE, long lines, bare LF, dot-stuffing,
//! 1,001 recipients, relay tricks, loops, rate limits, connection limits, shutdown).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
mod common;

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Client { s, buf: Vec::new() };
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    async fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).await.unwrap();
    }

    /// One whole reply (all lines of a multi-line reply).
    async fn reply(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A reply ends with a line "DDD text\r\n" (space after the code).
            let mut start = 0;
            while let Some(p) = self.buf[start..].windows(2).position(|w| w == b"\r\n") {
                let line = &self.buf[start..start + p];
                if line.len() >= 4 && line[3] == b' ' || line.len() == 3 {
                    let end = start + p + 2;
                    let r = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end);
                    return r;
                }
                start += p + 2;
            }
            let mut chunk = vec![0u8; 65536];
            let n = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.s.read(&mut chunk),
            )
            .await
            .expect("reply timed out")
            .unwrap();
            if n == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn cmd(&mut self, text: &str) -> String {
        self.send(&format!("{text}\r\n")).await;
        self.reply().await
    }
}

fn code(r: &str) -> u16 {
    r.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The server with the registry not consulted at RCPT: these tests pin the door's framing
/// and limits for any number (the RCPT check itself is tested in tests/hostile.rs).
async fn front_door(extra: &str) -> Env {
    Env::start_with(extra, |c| c.smtp.registry_authoritative = false).await
}

#[tokio::test]
async fn lettre_sends_a_text_to_a_number_and_250_comes_after_the_commit() {
    let env = front_door("").await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(env.smtp().port())
        .build();
    let msg = Message::builder()
        .from("Alice <alice@example.org>".parse().unwrap())
        .to("15551234567@sms.test".parse().unwrap())
        .subject("hi")
        .body("See you at 8".to_string())
        .unwrap();
    let resp = mailer.send(msg).await.unwrap();
    assert_eq!(resp.code().to_string(), "250");
    let text = resp.message().collect::<Vec<_>>().join(" ");
    assert!(text.contains("queued as"), "{text}");
    let id = text.rsplit(' ').next().unwrap().to_string();
    let files = env.spooled(1).await;
    assert_eq!(files[0].id().to_string(), id);
    assert_eq!(files[0].envelope.sender, "alice@example.org");
    assert_eq!(
        files[0].envelope.recipients[0].address,
        "15551234567@sms.test"
    );
    let raw = String::from_utf8_lossy(&files[0].message);
    assert!(raw.starts_with("Received: from "), "{raw}");
    assert!(raw.contains(&format!("by mta.test (smsmta) with ESMTP id {id}")));
    assert!(raw.contains("See you at 8"));
    env.stop().await;
}

#[tokio::test]
async fn pipelined_transaction_with_null_sender_gets_replies_in_order() {
    let env = front_door("").await;
    let mut c = Client::connect(env.smtp()).await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(
        ehlo.contains("PIPELINING") && ehlo.contains("SIZE 10485760"),
        "{ehlo}"
    );
    c.send("MAIL FROM:<>\r\nRCPT TO:<15551234567@sms.test>\r\nRCPT TO:<+15557654321@SMS.TEST.>\r\nDATA\r\n").await;
    assert_eq!(code(&c.reply().await), 250);
    assert_eq!(code(&c.reply().await), 250);
    assert_eq!(code(&c.reply().await), 250);
    assert_eq!(code(&c.reply().await), 354);
    c.send("From: MAILER-DAEMON@example.org\r\nSubject: bounce\r\n\r\n..starts with a dot\r\nbare\nlf\r\n.\r\nQUIT\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(code(&c.reply().await), 221);
    let f = &env.spooled(1).await[0];
    assert_eq!(f.envelope.sender, "");
    let rcpts: Vec<&str> = f
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(rcpts, ["15551234567@sms.test", "15557654321@sms.test"]);
    let raw = String::from_utf8_lossy(&f.message);
    // Dot-unstuffed, and the bare LF normalised to CRLF.
    assert!(
        raw.ends_with("\r\n\r\n.starts with a dot\r\nbare\r\nlf\r\n"),
        "{raw:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn bare_lf_dot_does_not_end_the_data() {
    let env = front_door("").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("HELO x").await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<15551234567@sms.test>").await;
    assert_eq!(code(&c.cmd("DATA").await), 354);
    // "\n.\n" (smuggling attempt) is data; only CRLF.CRLF ends it.
    c.send("Subject: x\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n")
        .await;
    assert_eq!(code(&c.reply().await), 250);
    let f = &env.spooled(1).await[0];
    let raw = String::from_utf8_lossy(&f.message);
    assert!(
        raw.contains("first\r\n.\r\nMAIL FROM:<evil@example.org>\r\n"),
        "{raw:?}"
    );
    assert_eq!(env.spooled(1).await.len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn size_limits_and_long_lines() {
    let env = front_door("[smtp]\nmax_message_size = \"2KiB\"\n").await;
    let mut c = Client::connect(env.smtp()).await;
    assert!(c.cmd("EHLO x").await.contains("SIZE 2048"));
    assert_eq!(
        code(&c.cmd("MAIL FROM:<a@example.org> SIZE=5000").await),
        552
    );
    // A command line over 512 octets: 500 5.5.2, and the session goes on.
    let r = c.cmd(&format!("NOOP {}", "x".repeat(600))).await;
    assert!(r.starts_with("500 5.5.2"), "{r}");
    assert_eq!(code(&c.cmd("NOOP").await), 250);
    // A message over the limit: read to its end, then 552 5.3.4.
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<15551234567@sms.test>").await;
    c.cmd("DATA").await;
    c.send(&format!(
        "Subject: big\r\n\r\n{}\r\n.\r\n",
        "y\r\n".repeat(2000)
    ))
    .await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // A text line over 1,000 octets: 500 5.5.2 at the end of the data.
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<15551234567@sms.test>").await;
    c.cmd("DATA").await;
    c.send(&format!(
        "Subject: long\r\n\r\n{}\r\n.\r\n",
        "z".repeat(1500)
    ))
    .await;
    let r = c.reply().await;
    assert!(r.starts_with("500 5.5.2"), "{r}");
    assert_eq!(code(&c.cmd("NOOP").await), 250);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.spooled(0).await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn a_line_far_longer_than_one_read_gets_500_and_the_session_goes_on() {
    let env = front_door("").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("EHLO x").await;
    // 200 KB without a line end, sent in pieces, so that it spans many reads; then a line
    // pipelined right behind it in the same write as its end.
    for _ in 0..20 {
        c.send(&"x".repeat(10_000)).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.send("xyz\r\nNOOP\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("500 5.5.2"), "{r}");
    assert_eq!(code(&c.reply().await), 250, "the pipelined NOOP");
    // A whole transaction afterwards is unaffected.
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<15551234567@sms.test>").await;
    c.cmd("DATA").await;
    let r = c.cmd("Subject: after\r\n\r\nok\r\n.").await;
    assert_eq!(code(&r), 250, "{r}");
    let files = env.spooled(1).await;
    assert_eq!(files.len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn a_message_of_many_short_lines_in_few_writes_is_spooled_intact() {
    let env = front_door("").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("EHLO x").await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<15551234567@sms.test>").await;
    c.cmd("DATA").await;
    // 40,000 lines (about 1 MB), with dot-stuffed lines among them, in 64 KiB writes.
    let mut body = String::from("Subject: many\r\n\r\n");
    for i in 0..40_000 {
        if i % 1000 == 0 {
            body.push_str("..stuffed\r\n");
        } else {
            body.push_str(&format!("line {i:05} of the body\r\n"));
        }
    }
    body.push_str(".\r\n");
    for piece in body.as_bytes().chunks(65_536) {
        c.s.write_all(piece).await.unwrap();
    }
    let r = c.reply().await;
    assert_eq!(code(&r), 250, "{r}");
    let files = env.spooled(1).await;
    assert_eq!(files.len(), 1);
    let text = String::from_utf8_lossy(&files[0].message).into_owned();
    assert!(text.contains("\r\nline 39999 of the body\r\n"));
    assert_eq!(
        text.matches("\r\n.stuffed\r\n").count(),
        40,
        "dot-unstuffed"
    );
    assert_eq!(text.matches(" of the body\r\n").count(), 39_960);
    env.stop().await;
}

#[tokio::test]
async fn one_thousand_and_one_recipients() {
    let env = front_door("").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("EHLO x").await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    let mut batch = String::new();
    for i in 0..1001 {
        batch.push_str(&format!("RCPT TO:<1555{i:07}@sms.test>\r\n"));
    }
    c.send(&batch).await;
    let mut codes = Vec::new();
    for _ in 0..1001 {
        codes.push(code(&c.reply().await));
    }
    assert!(codes[..1000].iter().all(|c| *c == 250));
    assert_eq!(codes[1000], 452);
    assert_eq!(code(&c.cmd("DATA").await), 354);
    c.send("Subject: many\r\n\r\nhi\r\n.\r\n").await;
    assert_eq!(code(&c.reply().await), 250);
    let f = &env.spooled(1).await[0];
    assert_eq!(
        f.envelope.recipients.len(),
        1000,
        "one queue file, a state per recipient"
    );
    env.stop().await;
}

#[tokio::test]
async fn relay_tricks_from_an_untrusted_address_are_refused() {
    let env = front_door("[smtp]\ntrusted_networks = []\nmax_errors = 100\n").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("EHLO x").await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    let cases = [
        ("bob@other.example", 554),
        ("bob@other.example.", 554),
        ("BOB@OTHER.EXAMPLE", 554),
        ("1555%other.example@sms.test", 550),
        ("\"bob@other.example\"@sms.test", 550),
        ("other.example!bob@sms.test", 550),
        ("@sms.test:bob@other.example", 554),
        ("15551234567@sms.test.other.example", 554),
        ("bob@sms.test", 550),
    ];
    for (rcpt, want) in cases {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(code(&r), want, "{rcpt}: {r}");
    }
    // Our SMS domain, any case, a trailing dot: accepted from anyone.
    assert_eq!(code(&c.cmd("RCPT TO:<15551234567@SMS.Test.>").await), 250);
    env.stop().await;
}

#[tokio::test]
async fn trusted_clients_may_relay_and_loops_are_refused() {
    let env = front_door("").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("EHLO x").await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    assert_eq!(code(&c.cmd("RCPT TO:<bob@other.example>").await), 250);
    c.cmd("DATA").await;
    let mut hops = String::new();
    for i in 0..51 {
        hops.push_str(&format!(
            "Received: from hop{i}.example by x; Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        ));
    }
    c.send(&format!(
        "{hops}Subject: loop\r\n\r\nround and round\r\n.\r\n"
    ))
    .await;
    let r = c.reply().await;
    assert!(r.starts_with("554 5.4.6"), "{r}");
    env.stop().await;
}

#[tokio::test]
async fn rate_limit_gives_450_after_the_allowance() {
    let env = front_door("[smtp]\nrate_limit = 2\n").await;
    let mut c = Client::connect(env.smtp()).await;
    c.cmd("EHLO x").await;
    for _ in 0..2 {
        c.cmd("MAIL FROM:<a@example.org>").await;
        c.cmd("RCPT TO:<15551234567@sms.test>").await;
        c.cmd("DATA").await;
        c.send("Subject: x\r\n\r\nhi\r\n.\r\n").await;
        assert_eq!(code(&c.reply().await), 250);
    }
    let r = c.cmd("MAIL FROM:<a@example.org>").await;
    assert!(r.starts_with("450 4.7.1"), "{r}");
    env.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_421_and_shutdown_says_421() {
    let env = front_door("[smtp]\nmax_connections = 2\n").await;
    let mut a = Client::connect(env.smtp()).await;
    let _b = Client::connect(env.smtp()).await;
    let mut s = TcpStream::connect(env.smtp()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("421 4.3.2"));
    assert_eq!(code(&a.cmd("NOOP").await), 250);
    let stop = tokio::spawn(env.stop());
    let r = a.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    stop.await.unwrap();
}
