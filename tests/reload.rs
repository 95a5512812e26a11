//! Reload: `smsmta serve` re-reads its file at SIGHUP. A changed trusted network holds for
//! the next SMTP connection while a session already open goes on with the rules it began
//! with; a key that needs a restart is reported and kept; a broken file is refused, the
//! reason logged, and the running configuration stays.
//! A changed `[sip] trusted_networks` holds from the next MESSAGE on.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Serve;

/// A synchronous SMTP client: one command, the last line of its reply.
struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn open(addr: SocketAddr) -> Smtp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Smtp {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        assert!(c.reply().starts_with("220"));
        assert!(c.say("EHLO client.test").starts_with("250"));
        c
    }

    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line;
            }
        }
    }

    fn say(&mut self, cmd: &str) -> String {
        self.w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// MAIL, then RCPT TO `to`: the RCPT reply; the transaction is reset after it.
    fn rcpt(&mut self, to: &str) -> String {
        assert!(self.say("MAIL FROM:<a@example.org>").starts_with("250"));
        let r = self.say(&format!("RCPT TO:<{to}>"));
        assert!(self.say("RSET").starts_with("250"));
        r
    }
}

fn hup(serve: &Serve) {
    let st = Command::new("kill")
        .args(["-HUP", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Waits (10 s at most) for a log line with `what` that was not there before; returns it.
fn logged(serve: &Serve, what: &str, seen: &mut usize) -> String {
    let t = Instant::now();
    loop {
        {
            let log = serve.log.lock().unwrap();
            if let Some((i, l)) = log
                .iter()
                .enumerate()
                .skip(*seen)
                .find(|(_, l)| l.contains(what))
            {
                *seen = i + 1;
                return l.clone();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no log line with {what:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const FOREIGN: &str = "someone@elsewhere.example";

#[test]
fn sighup_trusts_a_new_network_for_the_next_connection_keeps_open_sessions_and_refuses_a_broken_file()
 {
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.1 is not trusted: it may send to our SMS domain, not relay elsewhere.
    let base = "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n";
    let cfg = common::config(
        dir.path(),
        &format!("{base}trusted_networks = [\"10.9.9.0/24\"]\n"),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    common::add_subscriber_quietly(&cfg, "15551234567", "001010000000001");
    let serve = Serve::start(&cfg);
    let mut seen = 0;

    let mut open = Smtp::open(serve.smtp);
    assert!(
        open.rcpt(FOREIGN).starts_with("554"),
        "relay denied at first"
    );

    // The file now trusts loopback, and names another SMTP port (which needs a restart).
    // It also turns on debug lines for SMTP.
    let trusted = text
        .replace("10.9.9.0/24", "127.0.0.0/8")
        .replace(
            "listen = \"127.0.0.1:0\"\ntrusted",
            "listen = \"127.0.0.1:1\"\ntrusted",
        )
        .replace("level = \"info\"", "level = \"info,smsmta::smtp=debug\"");
    assert_ne!(trusted, text);
    std::fs::write(&cfg, &trusted).unwrap();
    hup(&serve);
    let applied = logged(&serve, "reload:", &mut seen);
    assert!(
        applied.contains("applied log.level, smtp.trusted_networks"),
        "{applied}"
    );
    let kept = logged(&serve, "needing a restart", &mut seen);
    assert!(kept.contains("smtp.listen"), "{kept}");

    // The session opened before the reload goes on, with the rules it began with.
    assert!(
        open.rcpt(FOREIGN).starts_with("554"),
        "an open session keeps its rules"
    );
    assert!(open.say("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(
        open.say("RCPT TO:<15551234567@sms.test>")
            .starts_with("250")
    );
    assert!(open.say("DATA").starts_with("354"));
    let queued = open.say("Subject: before\r\n\r\nsent in the session opened before\r\n.");
    assert!(queued.starts_with("250"), "{queued}");

    // The next connection is trusted: it may relay. The old port still listens.
    let mut next = Smtp::open(serve.smtp);
    assert!(
        next.rcpt(FOREIGN).starts_with("250"),
        "relay allowed after the reload"
    );
    assert!(open.say("QUIT").starts_with("221"));

    // A broken file is refused with its reason; the running configuration stays.
    std::fs::write(&cfg, trusted.replace("127.0.0.0/8", "not-a-network")).unwrap();
    hup(&serve);
    let refused = logged(&serve, "reload refused", &mut seen);
    assert!(refused.contains("not-a-network"), "{refused}");
    let mut after = Smtp::open(serve.smtp);
    assert!(
        after.rcpt(FOREIGN).starts_with("250"),
        "still trusted after a refused reload"
    );
    assert!(next.rcpt(FOREIGN).starts_with("250"));

    let (status, _) = serve.stop();
    assert!(status.success());
}

/// One MESSAGE from handset IMSI001010000000001 over UDP from 127.0.0.1: the status line.
fn sip_text(sip: SocketAddr, n: u32) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let body = format!("text {n}");
    let req = format!(
        "MESSAGE sip:15551234567@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKrl{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:IMSI001010000000001@{sip}>;tag=rl{n}\r\n\
         To: <sip:15551234567@{sip}>\r\nCall-ID: rl{n}\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.send_to(req.as_bytes(), sip).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (k, _) = sock.recv_from(&mut buf).expect("an answer within 5 s");
        let text = String::from_utf8_lossy(&buf[..k]).into_owned();
        let line = text.lines().next().unwrap_or("").to_string();
        if !line.starts_with("SIP/2.0 1") {
            return line;
        }
    }
}

#[test]
fn sighup_changes_who_may_send_sip_from_the_next_request_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        "[sip]\nlisten = \"127.0.0.1:0\"\ntrusted_networks = [\"10.9.9.0/24\"]\n[smtp]\nlisten = \"127.0.0.1:0\"\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    common::add_subscriber_quietly(&cfg, "15551234567", "001010000000001");
    let serve = Serve::start(&cfg);
    let mut seen = 0;
    assert!(
        sip_text(serve.sip, 1).starts_with("SIP/2.0 403"),
        "loopback is not trusted yet"
    );
    std::fs::write(&cfg, text.replace("10.9.9.0/24", "127.0.0.0/8")).unwrap();
    hup(&serve);
    let applied = logged(&serve, "reload:", &mut seen);
    assert!(
        applied.contains("applied sip.trusted_networks"),
        "{applied}"
    );
    assert!(
        sip_text(serve.sip, 2).starts_with("SIP/2.0 202"),
        "trusted after the reload"
    );
    let (status, _) = serve.stop();
    assert!(status.success());
}
