//! Test peers for delivery: a SIP UAS that plays a handset behind a BTS (it decodes every
//! RP-DATA it receives back into text and answers with the status the test chooses), and an
//! SMTP sink that records every mail and can refuse recipients. Both on 127.0.0.1 port 0.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smsmta::sip::message::{self, Message, Parsed, Response};
use smsmta::sms::rp::RpMessage;
use smsmta::sms::{Deliver, Partial, StatusReport, body};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// One MESSAGE as the handset saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub uri: String,
    pub from: String,
    pub content_type: String,
    pub call_id: String,
    pub via: String,
    pub contact: String,
    pub deliver: Option<Deliver>,
    pub report: Option<StatusReport>,
    pub plain: Option<String>,
    pub status: u16,
    pub at: Instant,
}

type Chooser = Box<dyn FnMut(&Received) -> u16 + Send>;

/// A SIP UAS on 127.0.0.1.
pub struct SipPeer {
    pub addr: SocketAddr,
    pub rx: mpsc::UnboundedReceiver<Received>,
}

impl SipPeer {
    /// Starts a peer that answers each new MESSAGE with `choose(&received)`.
    pub async fn start(choose: Chooser) -> SipPeer {
        SipPeer::start_at("127.0.0.1:0", choose).await
    }

    /// As [`SipPeer::start`], bound to `bind` (another loopback address plays another host).
    pub async fn start_at(bind: &str, mut choose: Chooser) -> SipPeer {
        let sock = UdpSocket::bind(bind).await.unwrap();
        let addr = sock.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut answered: HashMap<String, u16> = HashMap::new();
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(Parsed::Complete(Message::Request(req), _)) =
                    message::parse(&buf[..n], true, 65_535)
                else {
                    continue;
                };
                let key = req.headers.get("Via").unwrap_or_default().to_string();
                if let Some(status) = answered.get(&key) {
                    let r = Response::to(&req, *status, "Again", "peer");
                    let _ = sock.send_to(&r.to_bytes(), from).await;
                    continue;
                }
                let ctype = req.headers.get("Content-Type").unwrap_or("").to_string();
                let mut rec = Received {
                    uri: req.uri.clone(),
                    from: req.headers.get("From").unwrap_or("").to_string(),
                    content_type: ctype.clone(),
                    call_id: req.headers.get("Call-ID").unwrap_or("").to_string(),
                    via: req.headers.get("Via").unwrap_or("").to_string(),
                    contact: req.headers.get("Contact").unwrap_or("").to_string(),
                    deliver: None,
                    report: None,
                    plain: None,
                    status: 0,
                    at: Instant::now(),
                };
                if ctype.starts_with("application/vnd.3gpp.sms") {
                    let (rp, _) = body::decode_body(&req.body, None).unwrap();
                    let RpMessage::Data(d) = RpMessage::decode(&rp).unwrap() else {
                        panic!("not RP-DATA");
                    };
                    assert!(!d.to_network, "network-to-mobile RP-DATA");
                    if d.tpdu.first().is_some_and(|b| b & 0x03 == 0x02) {
                        rec.report = Some(StatusReport::decode(&d.tpdu).unwrap());
                    } else {
                        rec.deliver = Some(Deliver::decode(&d.tpdu).unwrap());
                    }
                } else {
                    rec.plain = Some(String::from_utf8_lossy(&req.body).into_owned());
                }
                let status = if req.method == "MESSAGE" {
                    choose(&rec)
                } else {
                    200
                };
                rec.status = status;
                answered.insert(key, status);
                let reason = match status {
                    200 => "OK",
                    404 => "Not Found",
                    480 => "Temporarily Unavailable",
                    _ => "Whatever",
                };
                let r = Response::to(&req, status, reason, "peer");
                let _ = sock.send_to(&r.to_bytes(), from).await;
                let _ = tx.send(rec);
            }
        });
        SipPeer { addr, rx }
    }

    /// A peer that answers 200 to everything.
    pub async fn ok() -> SipPeer {
        SipPeer::start(Box::new(|_| 200)).await
    }

    /// The next MESSAGE, within `secs`.
    pub async fn next(&mut self, secs: u64) -> Received {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .expect("no MESSAGE in time")
            .expect("peer stopped")
    }

    /// The next complete text (reassembling concatenated parts), with its parts.
    pub async fn next_text(&mut self, secs: u64) -> (String, Vec<Received>) {
        let mut parts = Vec::new();
        let mut partial: Option<Partial> = None;
        loop {
            let r = self.next(secs).await;
            if let Some(p) = &r.plain {
                let t = p.clone();
                parts.push(r);
                return (t, parts);
            }
            let d = r.deliver.clone().expect("an SMS-DELIVER");
            parts.push(r);
            match d.user_data.concat() {
                None => return (d.user_data.body.text(), parts),
                Some(c) => {
                    let p = partial.get_or_insert_with(|| Partial::new(&c));
                    p.add(&c, d.user_data.body.clone());
                    if p.is_complete() {
                        return (p.text("[gap]"), parts);
                    }
                }
            }
        }
    }
}

/// One mail the sink took.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server that records mail; `refuse(rcpt)` may return a reply line.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub rx: mpsc::UnboundedReceiver<Mail>,
}

type Refuse = Arc<Mutex<dyn FnMut(&str) -> Option<String> + Send>>;

impl SmtpSink {
    /// Starts a sink.
    pub async fn start(refuse: impl FnMut(&str) -> Option<String> + Send + 'static) -> SmtpSink {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let refuse: Refuse = Arc::new(Mutex::new(refuse));
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let tx = tx.clone();
                let refuse = Arc::clone(&refuse);
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                    let mut mail = Mail {
                        from: String::new(),
                        rcpts: vec![],
                        data: String::new(),
                    };
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let up = line.to_ascii_uppercase();
                        let reply = if up.starts_with("EHLO") {
                            "250-sink\r\n250-8BITMIME\r\n250 PIPELINING\r\n".to_string()
                        } else if up.starts_with("MAIL FROM:") {
                            mail.from = addr_of(&line[10..]);
                            mail.rcpts.clear();
                            "250 ok\r\n".into()
                        } else if up.starts_with("RCPT TO:") {
                            let a = addr_of(&line[8..]);
                            match (refuse.lock().unwrap())(&a) {
                                Some(r) => format!("{r}\r\n"),
                                None => {
                                    mail.rcpts.push(a);
                                    "250 ok\r\n".into()
                                }
                            }
                        } else if up.starts_with("DATA") {
                            w.write_all(b"354 go\r\n").await.unwrap();
                            mail.data.clear();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                mail.data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            }
                            let _ = tx.send(mail.clone());
                            "250 queued\r\n".into()
                        } else if up.starts_with("QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            "250 ok\r\n".into()
                        };
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { addr, rx }
    }

    /// The next mail, within `secs`.
    pub async fn next(&mut self, secs: u64) -> Mail {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .expect("no mail in time")
            .expect("sink stopped")
    }
}

fn addr_of(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or("");
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// Counts the texts `crash test N` the handset receives, by N, until every number in `acked`
/// has arrived (or 90 s pass), then for half a second more (late duplicates). For the crash
/// tests: a number acknowledged and never counted was lost.
pub async fn count_crash_texts(
    peer: &mut SipPeer,
    acked: &std::collections::HashSet<usize>,
) -> HashMap<usize, usize> {
    fn number(r: Received) -> usize {
        let text = r.deliver.unwrap().user_data.body.text();
        // The text may name its sender first ("<address>: crash test N").
        text.rsplit("crash test ")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked.iter().any(|i| !seen.contains_key(i)) && Instant::now() < deadline {
        let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(5), peer.rx.recv()).await else {
            continue;
        };
        *seen.entry(number(r)).or_default() += 1;
    }
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(500), peer.rx.recv()).await {
        *seen.entry(number(r)).or_default() += 1;
    }
    seen
}
