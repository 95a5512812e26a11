//! smsmta's ESME side beside Kannel's bearerbox, against the same SMSC: Kannel's own fake SMSC
//! `drive_smpp` (Debian kannel-extras). drive_smpp sends N texts from 456 to 123 as deliver_sm
//! and waits for an answer to each as submit_sm (at most 500 unanswered); it says when the
//! last answer came. The round trip is timed from the gateway's start to that line, so start-up
//! and bind count for both.
//!
//! - Kannel: bearerbox binds to drive_smpp (transmitter and receiver, as drive_smpp.conf
//!   does), its file store on; smsbox answers each text ("hello world", a default
//!   sms-service). Against the load SMSC, bearerbox keeps its access log (a line per text each
//!   way), as an operator would: smsmta logs each text too.
//! - smsmta: `smsmta serve` (its log, at info, to a file, as Kannel's) binds as a transmitter
//!   and a receiver (`bind = "pair"`); each text is stored (journal, fsync) before its deliver_sm_resp, delivered over SIP to a fake BTS
//!   handset, which answers 456 by SIP MESSAGE; that answer is stored before its 202 and leaves
//!   through the default `[[smpp.route]]` as submit_sm. Two durable commits a round trip.
//!
//! drive_smpp also connects to 127.0.0.1:13001 as an smsbox (a fixed port in its code):
//! bearerbox listens there; for smsmta the bench holds the port.
//!
//! Second part, without drive_smpp's ceiling: the bench's own SMSC ([`LoadSmsc`], tokio, the
//! smsmta PDU codec) keeps `window` deliver_sm unanswered on the receiver bind and answers
//! every submit_sm on the transmitter bind at once; it times from its first deliver_sm to the
//! Nth submit_sm. Its ceiling is measured against a gateway that stores nothing (the bench's
//! own null ESME, answering each deliver_sm with a submit_sm in memory); then Kannel and smsmta
//! against it, the same N, the same window, in `ROUNDS` rounds that alternate which goes
//! first (this machine's speed drifts by a third from one second to the next); the medians
//! and their ratio are the result.
//!
//! Run: `cargo bench --bench upstream_rate`. Needs drive_smpp, bearerbox and smsbox
//! (tests/run-all.sh installs them).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/peers/mod.rs"]
mod peers;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use smsmta::smpp::pdu::{self, Address, Bind, BindKind, Body, Pdu, Sm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};

const DRIVE: &str = "/usr/lib/kannel/test/drive_smpp";
const N: usize = 5_000;

fn drive(port: u16) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut c = Command::new(DRIVE)
        .args(["-v", "1", "-p", &port.to_string(), "-m", &N.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drive_smpp (Debian kannel-extras) is missing");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = c.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    (c, rx)
}

fn wait_done(rx: &std::sync::mpsc::Receiver<String>, t0: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("drive_smpp got every answer within 300 s");
        if l.contains("ESME has submitted all messages to SMSC") {
            return t0.elapsed();
        }
    }
}

fn spawn(bin: &str, conf: &std::path::Path) -> Child {
    Command::new(bin)
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} (Debian kannel) is missing: {e}"))
}

fn kannel() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let (mut d, rx) = drive(port);
    // drive_smpp connects to 13001 as an smsbox: bearerbox listens there.
    let conf = kannel_conf(dir.path(), port, 100, 13001);
    let path = dir.path().join("kannel.conf");
    std::fs::write(&path, conf).unwrap();
    let t0 = Instant::now();
    let mut bb = spawn("bearerbox", &path);
    std::thread::sleep(Duration::from_millis(300));
    let mut sb = spawn("smsbox", &path);
    let took = wait_done(&rx, t0);
    for c in [&mut sb, &mut bb, &mut d] {
        let _ = c.kill();
        let _ = c.wait();
    }
    took
}

async fn smsmta() -> Duration {
    let hold = std::net::TcpListener::bind("127.0.0.1:13001").expect("127.0.0.1:13001 is free");
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in hold.incoming().flatten() {
            keep.push(s);
        }
    });
    let port = common::free_port();
    let (mut d, rx) = drive(port);
    let handset = peers::SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!(
            "{}[smpp]\n[[smpp.upstream]]\nname = \"drive\"\naddress = \"127.0.0.1:{port}\"\nsystem_id = \"foo\"\npassword = \"bar\"\nbind = \"pair\"\nwindow = 100\n[[smpp.route]]\nprefix = \"\"\nupstream = \"drive\"\n[delivery]\nbts = \"{}\"\n",
            common::LOOPBACK,
            handset.addr
        ),
    );
    common::add_subscriber(&cfg, "123", "001010000000123");
    let t0 = Instant::now();
    let serve = common::Serve::start_logging_to(&cfg, &dir.path().join("smsmta.log"));
    let answering = answer_every_text(handset, serve.sip);
    let took = tokio::task::spawn_blocking(move || wait_done(&rx, t0))
        .await
        .unwrap();
    answering.abort();
    drop(serve);
    let _ = d.kill();
    let _ = d.wait();
    took
}

/// Texts per run against the load SMSC.
const LOAD_N: u32 = 10_000;
/// Rounds per window against the load SMSC (each gateway once a round).
const ROUNDS: usize = 5;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
/// The load goes to this many subscribers, numbers from SUBSCRIBER_BASE (a handset takes one
/// text at a time, so one handset would measure its radio, not the gateway).
const SUBSCRIBERS: u32 = 100;
const SUBSCRIBER_BASE: u32 = 5550000;

/// The bench's SMSC: see the module docs.
struct LoadSmsc {
    n: u32,
    window: usize,
    /// submit_sm received.
    got: AtomicU32,
    /// deliver_sm answered.
    acked: AtomicU32,
    /// Whether a receiving bind took the load already.
    loading: AtomicBool,
    started: std::sync::OnceLock<Instant>,
    done: Notify,
}

impl LoadSmsc {
    /// Listens on `listener` until `n` submit_sm came; the time from the first deliver_sm.
    async fn run(listener: TcpListener, n: u32, window: usize) -> Duration {
        let me = Arc::new(LoadSmsc {
            n,
            window,
            got: AtomicU32::new(0),
            acked: AtomicU32::new(0),
            loading: AtomicBool::new(false),
            started: std::sync::OnceLock::new(),
            done: Notify::new(),
        });
        let acceptor = {
            let me = Arc::clone(&me);
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(Arc::clone(&me).conn(s));
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(300), me.done.notified())
            .await
            .expect("every submit_sm within 300 s");
        acceptor.abort();
        me.started.get().expect("a deliver_sm was sent").elapsed()
    }

    async fn conn(self: Arc<Self>, s: TcpStream) {
        let (mut rd, mut wr) = s.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4096);
        let writer = tokio::spawn(async move {
            while let Some(mut b) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    b.extend(more);
                }
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
        let permits = Arc::new(Semaphore::new(0));
        let mut buf = Vec::with_capacity(1 << 16);
        let mut loader = None;
        loop {
            while let Ok(Some(len)) = pdu::frame_length(&buf, 1 << 16) {
                if buf.len() < len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..len).collect();
                let Ok(p) = pdu::decode(&frame) else { continue };
                let answer = |body: Body| {
                    pdu::encode(&Pdu {
                        status: 0,
                        sequence: p.sequence,
                        body,
                    })
                };
                match &p.body {
                    Body::Bind(kind, _) => {
                        let _ = tx.send(answer(Body::BindResp(*kind, "LOAD".into()))).await;
                        if kind.receives() && !self.loading.swap(true, Ordering::SeqCst) {
                            permits.add_permits(self.window);
                            loader = Some(tokio::spawn(
                                Arc::clone(&self).load(tx.clone(), Arc::clone(&permits)),
                            ));
                        }
                    }
                    Body::DeliverSmResp => {
                        permits.add_permits(1);
                        if self.acked.fetch_add(1, Ordering::SeqCst) + 1 == self.n
                            && let Some(t) = self.started.get()
                        {
                            eprintln!(
                                "  all deliver_sm answered after {:.2} s",
                                t.elapsed().as_secs_f64()
                            );
                        }
                    }
                    Body::SubmitSm(_) => {
                        let id = self.got.fetch_add(1, Ordering::SeqCst) + 1;
                        let _ = tx.send(answer(Body::SubmitSmResp(format!("L{id}")))).await;
                        if id == self.n {
                            self.done.notify_one();
                        }
                    }
                    Body::EnquireLink => {
                        let _ = tx.send(answer(Body::EnquireLinkResp)).await;
                    }
                    Body::Unbind => {
                        let _ = tx.send(answer(Body::UnbindResp)).await;
                    }
                    _ => {}
                }
            }
            buf.reserve(1 << 15);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Some(l) = loader {
            l.abort();
        }
        writer.abort();
    }

    /// deliver_sm 456 -> the subscribers in turn, a text of its own each, `window` unanswered
    /// at most.
    async fn load(self: Arc<Self>, tx: mpsc::Sender<Vec<u8>>, permits: Arc<Semaphore>) {
        let _ = self.started.set(Instant::now());
        for i in 0..self.n {
            match permits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            let sm = Sm {
                source: Address {
                    ton: 1,
                    npi: 1,
                    addr: "456".into(),
                },
                dest: Address {
                    ton: 1,
                    npi: 1,
                    addr: (SUBSCRIBER_BASE + i % SUBSCRIBERS).to_string(),
                },
                short_message: format!("load text {i}").into_bytes(),
                ..Sm::default()
            };
            let b = pdu::encode(&Pdu {
                status: 0,
                sequence: i + 1,
                body: Body::DeliverSm(Box::new(sm)),
            });
            if tx.send(b).await.is_err() {
                return;
            }
        }
    }
}

/// A gateway that stores nothing: binds as a receiver and a transmitter and answers each
/// deliver_sm at once with a submit_sm (window `window`), for the load SMSC's own ceiling.
async fn null_esme(addr: std::net::SocketAddr, window: usize) {
    async fn bind(addr: std::net::SocketAddr, kind: BindKind) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let b = Bind {
            system_id: "null".into(),
            password: "x".into(),
            system_type: String::new(),
            interface_version: 0x34,
            range: Address::default(),
        };
        s.write_all(&pdu::encode(&Pdu {
            status: 0,
            sequence: 1,
            body: Body::Bind(kind, b),
        }))
        .await
        .unwrap();
        s
    }
    let (texts_tx, mut texts) = mpsc::channel::<()>(1 << 16);
    let rxs = bind(addr, BindKind::Receiver).await;
    let txs = bind(addr, BindKind::Transmitter).await;
    tokio::spawn(async move {
        let (mut rd, mut wr) = rxs.into_split();
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            let mut out = Vec::new();
            while let Ok(Some(len)) = pdu::frame_length(&buf, 1 << 16) {
                if buf.len() < len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..len).collect();
                if let Ok(p) = pdu::decode(&frame)
                    && let Body::DeliverSm(_) = p.body
                {
                    out.extend(pdu::encode(&Pdu {
                        status: 0,
                        sequence: p.sequence,
                        body: Body::DeliverSmResp,
                    }));
                    let _ = texts_tx.send(()).await;
                }
            }
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                return;
            }
            buf.reserve(1 << 15);
            if matches!(rd.read_buf(&mut buf).await, Ok(0) | Err(_)) {
                return;
            }
        }
    });
    let (mut rd, mut wr) = txs.into_split();
    let window = Arc::new(Semaphore::new(window));
    let w = Arc::clone(&window);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            while let Ok(Some(len)) = pdu::frame_length(&buf, 1 << 16) {
                if buf.len() < len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..len).collect();
                if let Ok(p) = pdu::decode(&frame)
                    && let Body::SubmitSmResp(_) = p.body
                {
                    w.add_permits(1);
                }
            }
            buf.reserve(1 << 15);
            if matches!(rd.read_buf(&mut buf).await, Ok(0) | Err(_)) {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut seq = 2u32;
        while texts.recv().await.is_some() {
            match window.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return,
            }
            seq += 1;
            let sm = Sm {
                source: Address {
                    ton: 1,
                    npi: 1,
                    addr: "123".into(),
                },
                dest: Address {
                    ton: 1,
                    npi: 1,
                    addr: "456".into(),
                },
                short_message: b"hello world".to_vec(),
                ..Sm::default()
            };
            let b = pdu::encode(&Pdu {
                status: 0,
                sequence: seq,
                body: Body::SubmitSm(Box::new(sm)),
            });
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
}

async fn load_null(window: usize) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let run = tokio::spawn(LoadSmsc::run(l, LOAD_N, window));
    null_esme(addr, window).await;
    run.await.unwrap()
}

fn kannel_conf(dir: &std::path::Path, port: u16, window: usize, smsbox_port: u16) -> String {
    let smsc = |which: &str| {
        format!(
            "group = smsc\nsmsc = smpp\nsmsc-id = drive\nhost = 127.0.0.1\n{which} = {port}\nsystem-type = \"VMA\"\nsmsc-username = \"foo\"\nsmsc-password = \"bar\"\nmax-pending-submits = {window}\n\n"
        )
    };
    format!(
        "group = core\nadmin-port = {admin}\nsmsbox-port = {smsbox_port}\nadmin-password = bar\nlog-file = \"{dir}/bb.log\"\nlog-level = 2\n\
         box-allow-ip = \"127.0.0.1\"\naccess-log = \"{dir}/access.log\"\nstore-type = file\nstore-location = \"{dir}/kannel.store\"\n\n{tx}{rx}\
         group = smsbox\nbearerbox-host = 127.0.0.1\nbearerbox-port = {smsbox_port}\nsendsms-port = {sendsms}\nlog-file = \"{dir}/sb.log\"\nlog-level = 2\n\n\
         group = sms-service\nkeyword = default\ntext = \"hello world\"\n",
        admin = common::free_port(),
        sendsms = common::free_port(),
        dir = dir.display(),
        tx = smsc("port"),
        rx = smsc("receive-port"),
    )
}

async fn load_kannel(window: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let path = dir.path().join("kannel.conf");
    std::fs::write(
        &path,
        kannel_conf(dir.path(), port, window, common::free_port()),
    )
    .unwrap();
    let mut bb = spawn("bearerbox", &path);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sb = spawn("smsbox", &path);
    let took = LoadSmsc::run(l, LOAD_N, window).await;
    for c in [&mut sb, &mut bb] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let lines =
        std::fs::read_to_string(dir.path().join("access.log")).map_or(0, |t| t.lines().count());
    eprintln!(
        "  kannel access log: {lines} lines ({:.1} a round trip)",
        f64::from(u32::try_from(lines).unwrap_or(u32::MAX)) / f64::from(LOAD_N)
    );
    took
}

/// The fake handset's answers: every text it gets is answered to 456 by SIP MESSAGE.
fn answer_every_text(
    mut handset: peers::SipPeer,
    sip: std::net::SocketAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = sock.local_addr().unwrap();
        let mut n = 0u64;
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                r = handset.rx.recv() => {
                    let Some(r) = r else { return };
                    n += 1;
                    let body = "hello world";
                    // Answered from the handset it reached: sip:IMSI<digits>@...
                    let imsi: String = r.uri.trim_start_matches("sip:").chars().take_while(|c| *c != '@').collect();
                    let req = format!(
                        "MESSAGE sip:smsc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-b{n}\r\nMax-Forwards: 70\r\n\
                         From: <sip:{imsi}@127.0.0.1>;tag=b{n}\r\nTo: <sip:456@127.0.0.1>\r\nCall-ID: bench-{n}\r\n\
                         CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.send_to(req.as_bytes(), sip).await;
                }
                _ = sock.recv_from(&mut buf) => {}
            }
        }
    })
}

async fn load_smsmta(window: usize) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let handset = peers::SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!(
            "{}[smpp]\n[[smpp.upstream]]\nname = \"load\"\naddress = \"127.0.0.1:{port}\"\nsystem_id = \"foo\"\npassword = \"bar\"\nbind = \"pair\"\nwindow = {window}\n[[smpp.route]]\nprefix = \"\"\nupstream = \"load\"\n[delivery]\nbts = \"{}\"\n",
            common::LOOPBACK,
            handset.addr
        ),
    );
    for k in 0..SUBSCRIBERS {
        let n = SUBSCRIBER_BASE + k;
        common::add_subscriber_quietly(&cfg, &n.to_string(), &format!("0010100{n:08}"));
    }
    let log = dir.path().join("smsmta.log");
    let serve = common::Serve::start_logging_to(&cfg, &log);
    let answering = answer_every_text(handset, serve.sip);
    let took = LoadSmsc::run(l, LOAD_N, window).await;
    answering.abort();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", serve.pid())) {
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
        eprintln!(
            "  smsmta cpu: user {:.2} s, system {:.2} s",
            ticks(11),
            ticks(12)
        );
    }
    // Stopped cleanly, so that the log lines still in its memory are written, then counted
    // (the round trip took every line already: the log is not what is timed).
    let _ = tokio::task::spawn_blocking(move || serve.stop()).await;
    let lines = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    eprintln!(
        "  smsmta log: {lines} lines ({:.1} a round trip)",
        f64::from(u32::try_from(lines).unwrap_or(u32::MAX)) / f64::from(LOAD_N)
    );
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = |d: Duration| f64::from(LOAD_N) / d.as_secs_f64();
    println!("load SMSC round trips (deliver_sm in, submit_sm answer out), N = {LOAD_N}");
    // UPSTREAM_BENCH=smsmta: only smsmta against the load SMSC, once (for profiling it).
    let only_smsmta = std::env::var("UPSTREAM_BENCH").is_ok_and(|v| v == "smsmta");
    // UPSTREAM_WINDOW=N: that window only.
    let windows: Vec<usize> = match std::env::var("UPSTREAM_WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        Some(w) => vec![w],
        None => vec![10, 100],
    };
    for window in windows {
        if only_smsmta {
            let s = load_smsmta(window).await;
            println!(
                "window {window:>3}: smsmta {:>6.0}/s ({:.2} s)",
                rate(s),
                s.as_secs_f64()
            );
            continue;
        }
        // Rounds alternate which gateway goes first (the machine drifts); the medians and
        // their ratio are the figures.
        let c = load_null(window).await;
        let (mut ks, mut ss) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (k, s) = if round % 2 == 0 {
                let k = load_kannel(window).await;
                (k, load_smsmta(window).await)
            } else {
                let s = load_smsmta(window).await;
                (load_kannel(window).await, s)
            };
            println!(
                "window {window:>3} round {}: kannel {:>6.0}/s ({:.2} s) | smsmta {:>6.0}/s ({:.2} s) | smsmta/kannel {:.2}",
                round + 1,
                rate(k),
                k.as_secs_f64(),
                rate(s),
                s.as_secs_f64(),
                rate(s) / rate(k)
            );
            ks.push(rate(k));
            ss.push(rate(s));
        }
        let (k, s) = (median(&mut ks), median(&mut ss));
        println!(
            "window {window:>3}: ceiling (null ESME) {:>7.0}/s | median of {ROUNDS}: kannel {k:>6.0}/s | smsmta {s:>6.0}/s | smsmta/kannel {:.2}",
            rate(c),
            s / k
        );
    }

    if only_smsmta {
        return;
    }
    println!("drive_smpp round trips (deliver_sm in, submit_sm answer out), N = {N}");
    let k = tokio::task::spawn_blocking(kannel).await.unwrap();
    let s = smsmta().await;
    let rate = |d: Duration| N as f64 / d.as_secs_f64();
    println!(
        "kannel bearerbox+smsbox (file store): {:>8.0} round trips/s ({:.2} s)",
        rate(k),
        k.as_secs_f64()
    );
    println!(
        "smsmta (journal, SIP handset):        {:>8.0} round trips/s ({:.2} s)",
        rate(s),
        s.as_secs_f64()
    );
    println!("ratio smsmta / kannel: {:.2}", rate(s) / rate(k));
}
