//! Delivery benchmarks, end to end through the real `smsmta serve` binary on loopback:
//!
//! 1. SMTP in -> SIP out: 10 persistent SMTP sessions send 10,000 mails to 100 handsets; a
//!    sipp UAS (the BTS) answers every MESSAGE with 200.
//! 2. SIP in -> SMTP out: a sipp UAC sends 10,000 texts "bob@example.org ..." (smqueue's
//!    address-first convention) at a fixed rate; Postfix's smtp-sink is the smarthost.
//! 3. 100,000 deferred messages (1,000 handsets, 100 each, next attempt in a day) in the
//!    spool: start-up time, resident memory, and the time from one handset's REGISTER until
//!    its 100 messages are delivered (one MESSAGE outstanding per handset, in order).
//!
//! Throughput counts the server's own `status=sent` log lines; the latency from acceptance to
//! delivery is each line's `delay=` (measured from the queue ID's microsecond, taken just
//! before the commit). The reference is the issue's target, printed as a ratio.
//!
//! Run: `cargo bench --bench delivery_rate` with sipp (sip-tester) and smtp-sink (postfix)
//! installed.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smsmta::registry::{Db, Subscriber};
use smsmta::spool::{Origin, OriginKind, Queue, Spool};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const N: usize = 10_000;
const HANDSETS: usize = 100;

fn subscribers(dir: &Path, count: usize) {
    let db = Db::open(&dir.join("spool/registry.sqlite"), None).unwrap();
    for h in 0..count {
        db.upsert(&Subscriber {
            msisdn: format!("1555{h:07}"),
            imsi: Some(format!("00101{h:010}")),
            email: None,
            enabled: true,
        })
        .unwrap();
    }
}

/// (count of status=sent lines, their delays in seconds).
fn sent(serve: &common::Serve) -> (usize, Vec<f64>) {
    let log = serve.log.lock().unwrap();
    let delays: Vec<f64> = log
        .iter()
        .filter(|l| l.contains("status=sent"))
        .filter_map(|l| l.split("delay=").nth(1)?.split(',').next()?.parse().ok())
        .collect();
    (delays.len(), delays)
}

fn wait_sent(serve: &common::Serve, n: usize, limit: Duration) -> Vec<f64> {
    let t = Instant::now();
    loop {
        let (c, d) = sent(serve);
        if c >= n {
            return d;
        }
        if t.elapsed() > limit {
            let log = serve.log.lock().unwrap();
            panic!(
                "only {c} of {n} delivered; last log lines: {:#?}",
                &log[log.len().saturating_sub(5)..]
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pct(d: &[f64], p: f64) -> f64 {
    let mut s = d.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() as f64 - 1.0) * p) as usize]
}

async fn smtp_session(smtp: SocketAddr, ids: Vec<usize>) {
    let s = TcpStream::connect(smtp).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut read_reply = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return line.clone();
        }
    };
    read_reply(&mut r).await;
    w.write_all(b"EHLO bench.test\r\n").await.unwrap();
    read_reply(&mut r).await;
    let body = "x".repeat(60);
    for i in ids {
        let to = format!("1555{:07}@sms.test", i % HANDSETS);
        let txn = format!("MAIL FROM:<sender@example.org>\r\nRCPT TO:<{to}>\r\nDATA\r\n");
        w.write_all(txn.as_bytes()).await.unwrap();
        for _ in 0..3 {
            read_reply(&mut r).await;
        }
        let data = format!(
            "From: sender@example.org\r\nTo: {to}\r\nSubject: bench\r\n\r\nmessage {i} {body}\r\n.\r\n"
        );
        w.write_all(data.as_bytes()).await.unwrap();
        let rep = read_reply(&mut r).await;
        assert!(rep.starts_with("250"), "{rep}");
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
}

fn smtp_in_sip_out(rt: &tokio::runtime::Runtime) -> String {
    let dir = tempfile::tempdir().unwrap();
    let bts = common::free_port();
    let cfg = common::config_logging(
        dir.path(),
        "warn,smsmta::app=info,smsmta::delivery=info",
        &format!(
            "{}{}[delivery]\nbts = \"127.0.0.1:{bts}\"\n",
            common::LOOPBACK,
            common::METRICS_ON
        ),
    );
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    subscribers(dir.path(), HANDSETS);
    let mut uas = common::sipp_uas(bts, Some(N));
    std::thread::sleep(Duration::from_millis(300));
    let serve = common::Serve::start(&cfg);
    // Metrics on, scraped once a second as Prometheus would (issue 15).
    let scraper = common::Scraper::start(serve.metrics.expect("the metrics endpoint"));
    let t = Instant::now();
    let smtp = serve.smtp;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for s in 0..10 {
            let ids: Vec<usize> = (0..N).filter(|i| i % 10 == s).collect();
            tasks.push(tokio::spawn(smtp_session(smtp, ids)));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let accepted = t.elapsed();
    let delays = wait_sent(&serve, N, Duration::from_secs(120));
    let total = t.elapsed();
    let _ = uas.kill();
    let _ = uas.wait();
    let _ = scraper.finish();
    let _ = serve.stop();
    let rate = N as f64 / total.as_secs_f64();
    format!(
        "| SMTP in -> SIP out (10 sessions, {N} mails, 100 handsets, sipp UAS 200) | {rate:.0} | {:.3} | {:.3} | {:.2}x | all accepted in {:.2}s, all delivered in {:.2}s |",
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        rate / 1000.0,
        accepted.as_secs_f64(),
        total.as_secs_f64()
    )
}

fn sip_in_smtp_out(rate: u32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (sink_port, mut sink) = smtp_sink();
    let cfg = common::config_logging(
        dir.path(),
        "warn,smsmta::app=info,smsmta::delivery=info",
        &format!(
            "{}{}[delivery]\nsmarthost = \"127.0.0.1:{sink_port}\"\n",
            common::LOOPBACK,
            common::METRICS_ON
        ),
    );
    std::fs::create_dir_all(dir.path().join("spool")).unwrap();
    {
        let db = Db::open(&dir.path().join("spool/registry.sqlite"), None).unwrap();
        db.upsert(&Subscriber {
            msisdn: "15551230000".into(),
            imsi: Some("001010000000001".into()),
            email: None,
            enabled: true,
        })
        .unwrap();
    }
    let scen = dir.path().join("uac-email.xml");
    let text = std::fs::read_to_string(common::sipp_scenario("uac-message-text.xml"))
        .unwrap()
        .replace(
            "hello from sipp, call [call_number]",
            "bob@example.org hello from sipp, call [call_number]",
        );
    std::fs::write(&scen, text).unwrap();
    let serve = common::Serve::start(&cfg);
    // Metrics on, scraped once a second as Prometheus would (issue 15).
    let scraper = common::Scraper::start(serve.metrics.expect("the metrics endpoint"));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let st = Command::new("sipp")
        .args([
            "-sf",
            scen.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &common::free_port().to_string(),
            "-m",
            &N.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "2000",
            "-nostdin",
            "-timeout",
            "60",
            &serve.sip.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let accepted = t.elapsed();
    let delays = wait_sent(&serve, N, Duration::from_secs(120));
    let total = t.elapsed();
    let _ = sink.kill();
    let _ = sink.wait();
    let _ = scraper.finish();
    let _ = serve.stop();
    let got = N as f64 / total.as_secs_f64();
    format!(
        "| SIP in -> SMTP out (sipp UAC at {rate}/s, {N} texts, smtp-sink smarthost; sipp {}) | {got:.0} | {:.3} | {:.3} | {:.2}x | all accepted in {:.2}s, all delivered in {:.2}s |",
        if st.success() {
            "ok"
        } else {
            "reported failures"
        },
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        got / 1000.0,
        accepted.as_secs_f64(),
        total.as_secs_f64()
    )
}

/// Postfix's smtp-sink on a free loopback port (it refuses to run as root without a user to
/// switch to).
fn smtp_sink() -> (u16, Child) {
    let port = common::free_port();
    let mut sink = Command::new("smtp-sink");
    if is_root() {
        sink.args(["-u", "nobody"]);
    }
    let child = sink
        .args([&format!("127.0.0.1:{port}"), "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (Debian package postfix) is needed");
    (port, child)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The reference in the same run: Postfix relaying the same load end to end (smtp-source ->
/// Postfix with its durable queue -> smtp-sink), counted and timed from Postfix's own log.
fn postfix_relay_reference() -> String {
    let dir = tempfile::tempdir().unwrap();
    let (sink_port, mut sink) = smtp_sink();
    let pf_dir = dir.path().join("postfix");
    let pf_port = common::free_port();
    let postfix = common::Postfix::start(&pf_dir, pf_port, "relay", Some(sink_port));
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let st = Command::new("smtp-source")
        .args([
            "-s",
            "10",
            "-d",
            "-m",
            &N.to_string(),
            "-l",
            "400",
            "-f",
            "sender@example.org",
            "-t",
            "15551234567@sms.test",
            &format!("127.0.0.1:{pf_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let accepted = t.elapsed();
    let log = pf_dir.join("maillog");
    let delays = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let d: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("status=sent") && l.contains("relay=127.0.0.1"))
            .filter_map(|l| l.split("delay=").nth(1)?.split(',').next()?.parse().ok())
            .collect();
        if d.len() >= N {
            break d;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "Postfix delivered {} of {N}",
            d.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = t.elapsed();
    drop(postfix);
    let _ = sink.kill();
    let _ = sink.wait();
    let rate = N as f64 / total.as_secs_f64();
    format!(
        "{rate:.0}||| reference: Postfix relay (smtp-source -s 10 -d, {N} x 400 B -> Postfix durable queue -> smtp-sink) | {rate:.0} | {:.3} | {:.3} | {:.2}x | all accepted in {:.2}s, all delivered in {:.2}s |",
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        rate / 1000.0,
        accepted.as_secs_f64(),
        total.as_secs_f64()
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn big_queue() -> Vec<String> {
    const QUEUED: usize = 100_000;
    const PER: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let cfg = common::config_logging(
        dir.path(),
        "warn,smsmta::app=info,smsmta::delivery=info",
        &format!(
            "{}{}[delivery]\nbts = \"127.0.0.1:1\"\n",
            common::LOOPBACK,
            common::METRICS_ON
        ),
    );
    let spool = Spool::open(dir.path().join("spool"), 1 << 24).unwrap();
    subscribers(dir.path(), QUEUED / PER);
    let later = smsmta::clock::now_unix() + 86_400;
    let t = Instant::now();
    for i in 0..QUEUED {
        let h = i / PER;
        let mut f = spool.new_message(
            "sender@example.org",
            &[format!("1555{h:07}@sms.test")],
            format!("From: sender@example.org\r\nTo: 1555{h:07}@sms.test\r\n\r\nqueued {i}\r\n")
                .into_bytes(),
            Origin {
                kind: OriginKind::Smtp,
                peer: "127.0.0.1:1".into(),
                sender_number: None,
            },
            3 * 86_400,
        );
        f.envelope.recipients[0].next_attempt = later;
        f.envelope.recipients[0].attempts = 1;
        // Setup only: written without fsync (the server is not running yet).
        std::fs::write(spool.path(Queue::Deferred, f.id()), f.encode().unwrap()).unwrap();
    }
    eprintln!(
        "wrote {QUEUED} deferred messages in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Drop the page cache's advantage as far as an unprivileged run can: none; as root, drop it.
    let _ = Command::new("sh")
        .args(["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"])
        .stderr(Stdio::null())
        .status();
    let t = Instant::now();
    let serve = common::Serve::start(&cfg);
    // Metrics on, scraped once a second as Prometheus would (issue 15).
    let scraper = common::Scraper::start(serve.metrics.expect("the metrics endpoint"));
    let ready = t.elapsed();
    let scheduled = loop {
        let line = serve
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("messages scheduled in"))
            .cloned();
        if let Some(l) = line {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no schedule line");
        std::thread::sleep(Duration::from_millis(5));
    };
    let all_scheduled = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_kib(serve.pid());
    // Handset 0 registers (contact: a sipp UAS): its 100 messages are due at once.
    let mut uas = common::sipp_uas(port, Some(PER));
    std::thread::sleep(Duration::from_millis(300));
    let before = sent(&serve).0;
    let t = Instant::now();
    let reg = format!(
        "REGISTER sip:{s} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbench\r\nFrom: <sip:IMSI{imsi}@{s}>;tag=b\r\nTo: <sip:IMSI{imsi}@{s}>\r\nCall-ID: bench-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:IMSI{imsi}@127.0.0.1:{port}>;expires=3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        s = serve.sip,
        imsi = format_args!("00101{:010}", 0)
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(reg.as_bytes(), serve.sip).unwrap();
    let _ = wait_sent(&serve, before + PER, Duration::from_secs(60));
    let drained = t.elapsed();
    let _ = uas.kill();
    let _ = uas.wait();
    let _ = scraper.finish();
    let _ = serve.stop();
    vec![
        format!(
            "| start-up with {QUEUED} deferred messages: ready line | {:.3} s | under 3 s | {:.2}x of the budget |",
            ready.as_secs_f64(),
            ready.as_secs_f64() / 3.0
        ),
        format!(
            "| start-up: whole schedule built (`{}`) | {:.3} s | under 3 s | {:.2}x of the budget |",
            scheduled
                .split("queue manager: ")
                .nth(1)
                .unwrap_or("")
                .trim(),
            all_scheduled.as_secs_f64(),
            all_scheduled.as_secs_f64() / 3.0
        ),
        format!(
            "| resident memory with {QUEUED} scheduled | {:.1} MB | under 150 MB | {:.2}x of the budget |",
            rss as f64 / 1024.0,
            rss as f64 / 1024.0 / 150.0
        ),
        format!(
            "| REGISTER -> its {PER} deferred messages delivered (in order, one at a time) | {:.3} s | | {:.0} msg/s |",
            drained.as_secs_f64(),
            PER as f64 / drained.as_secs_f64()
        ),
    ]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // DELIVERY_BENCH=a|b|c runs one part only (for profiling).
    let only = std::env::var("DELIVERY_BENCH").unwrap_or_default();
    let run = |p: &str| only.is_empty() || only == p;
    let a = if run("a") {
        smtp_in_sip_out(&rt)
    } else {
        String::new()
    };
    let b = if run("b") {
        sip_in_smtp_out(5000)
    } else {
        String::new()
    };
    let c = if run("c") { big_queue() } else { Vec::new() };
    let r = if run("r") {
        postfix_relay_reference()
    } else {
        String::new()
    };
    let (pf_rate, r) = r.split_once("||").unwrap_or(("", ""));
    let pf_rate: f64 = pf_rate.parse().unwrap_or(0.0);
    println!(
        "| path | delivered msg/s | p50 accept->deliver (s) | p99 (s) | ratio to the 1,000/s target | notes |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    println!("{a}");
    println!("{b}");
    println!("{r}");
    let rate_of = |row: &str| -> f64 {
        row.split('|')
            .nth(2)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    if pf_rate > 0.0 {
        println!();
        println!(
            "ratio to Postfix's end-to-end relay in the same run: SMTP in -> SIP out {:.2}x, SIP in -> SMTP out {:.2}x",
            rate_of(&a) / pf_rate,
            rate_of(&b) / pf_rate
        );
    }
    println!();
    println!("| measurement | value | target | ratio |");
    println!("|---|---:|---:|---:|");
    for l in c {
        println!("{l}");
    }
}
