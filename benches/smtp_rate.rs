//! SMTP intake rate: Postfix's smtp-source (10 sessions, 400-byte messages, 10,000 messages)
//! against `smsmta serve` and, in the same run, against a loopback Postfix with its normal
//! durable queue (every message fsynced by cleanup before 250, then discarded by discard(8)).
//!
//! smsmta runs twice: intake only (`[delivery] enabled = false`: every message gets a queue
//! file and stays queued), and as deployed, delivering to a sipp UAS that plays the BTS and
//! answers 200 (messages delivered from memory right after their journal flush need no queue
//! file, docs/decisions/0003), which is what Postfix does too (queue, then hand to discard(8)).
//!
//! After each round the bench waits until that server has finished the work the round left
//! (Postfix: queue empty; smsmta: journal written out, and when delivering, queues empty), so
//! that no round is measured while another server still uses the same cores and disk.
//!
//! Run: `cargo bench --bench smtp_rate` as root (Postfix's master drops privileges), with the
//! Debian packages postfix (smtp-source) and sip-tester (sipp) installed. Three rounds each, alternating; reported:
//! accepted messages a second (min / median / max) and the ratio of the medians. Each side is
//! run with a new connection per message (smtp-source's default) and with persistent sessions
//! (`-d`). Both smsmta servers run with their metrics endpoint on, scraped once a second as
//! Prometheus would.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: u32 = 10_000;

fn smtp_source(target: SocketAddr, persistent: bool) -> f64 {
    let t = Instant::now();
    let mut cmd = Command::new("smtp-source");
    cmd.args([
        "-s",
        "10",
        "-m",
        &MESSAGES.to_string(),
        "-l",
        "400",
        "-f",
        "sender@example.org",
        "-t",
        "15551234567@sms.test",
    ]);
    if persistent {
        cmd.arg("-d");
    }
    let st = cmd
        .arg(target.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("smtp-source (Debian package postfix) is needed");
    assert!(st.success(), "smtp-source failed against {target}");
    f64::from(MESSAGES) / t.elapsed().as_secs_f64()
}

/// Files under `dir`, recursively (Postfix hashes some queues into subdirectories).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => count_files(&e.path()),
                Ok(_) => 1,
                Err(_) => 0,
            })
            .sum()
    })
}

/// Waits until a server has finished the work a round left behind, so that no round is
/// measured while another server is still busy on the same two cores and disk: Postfix's
/// queue is empty (everything handed to discard(8)); smsmta's journal is written out as queue
/// files and, when it delivers, its queues are empty. Gives up after a minute, saying so.
fn settle(what: &str, done: impl Fn() -> bool) {
    let t = Instant::now();
    while !done() {
        if t.elapsed() > Duration::from_secs(60) {
            eprintln!("{what} still busy after 60 s; measuring anyway");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn postfix_idle(queue: &Path) -> bool {
    ["maildrop", "incoming", "active", "deferred", "hold"]
        .iter()
        .all(|q| count_files(&queue.join(q)) == 0)
}

fn smsmta_idle(spool: &Path, delivering: bool) -> bool {
    use smsmta::spool::{Queue, Spool, journal};
    let Ok(s) = Spool::open(spool, 1 << 24) else {
        return false;
    };
    journal::backlog(&s).is_ok_and(|b| b == 0)
        && (!delivering
            || [Queue::Incoming, Queue::Active, Queue::Deferred]
                .iter()
                .all(|q| s.list(*q).is_ok_and(|l| l.is_empty())))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // smsmta with its defaults (journal on), logging at warn, delivery off: intake only.
    // Both smsmta servers run with their metrics endpoint on, scraped once a second.
    let extra = format!("{}{}", common::LOOPBACK, common::METRICS_ON);
    let config = common::config_logging(dir.path(), "warn,smsmta::app=info", &extra);
    // The recipient is a subscriber: unknown numbers are refused at RCPT by default.
    common::add_subscriber(&config, "15551234567", "001010000000002");
    let server = common::Serve::start(&config);
    let smsmta = server.smtp;

    // smsmta as deployed: delivering to a sipp UAS (the BTS) that answers 200.
    let dir_d = tempfile::tempdir().unwrap();
    let bts = common::free_port();
    let mut uas = common::sipp_uas(bts, None);
    let config_d = common::config_logging(
        dir_d.path(),
        "warn,smsmta::app=info",
        &format!(
            "{}{}[delivery]\nbts = \"127.0.0.1:{bts}\"\n",
            common::LOOPBACK,
            common::METRICS_ON
        ),
    );
    common::add_subscriber(&config_d, "15551234567", "001010000000002");
    let server_d = common::Serve::start(&config_d);
    let smsmta_d = server_d.smtp;
    let scrapers = [&server, &server_d]
        .map(|s| common::Scraper::start(s.metrics.expect("the metrics endpoint")));

    let pf_dir = dir.path().join("postfix");
    let pf_port = common::free_port();
    let pf = common::Postfix::start(&pf_dir, pf_port, "discard", None);
    std::thread::sleep(Duration::from_secs(1));
    let postfix = SocketAddr::from(([127, 0, 0, 1], pf_port));

    let spool_a = dir.path().join("spool");
    let spool_d = dir_d.path().join("spool");
    let mut rows = Vec::new();
    for persistent in [false, true] {
        let (mut a, mut d, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..3 {
            a.push(smtp_source(smsmta, persistent));
            settle("smsmta (intake only)", || smsmta_idle(&spool_a, false));
            d.push(smtp_source(smsmta_d, persistent));
            settle("smsmta (delivering)", || smsmta_idle(&spool_d, true));
            b.push(smtp_source(postfix, persistent));
            settle("Postfix", || postfix_idle(&pf_dir.join("queue")));
            eprintln!(
                "round {} ({}): smsmta intake only {:.0}/s, smsmta delivering {:.0}/s, postfix {:.0}/s",
                round + 1,
                if persistent { "-d" } else { "conn/msg" },
                a[round],
                d[round],
                b[round]
            );
        }
        rows.push((persistent, a, d, b));
    }
    drop(pf);
    let scrapes: Vec<u32> = scrapers.into_iter().map(common::Scraper::finish).collect();
    println!("/metrics scraped once a second: {scrapes:?} times (intake only, delivering)");
    let _ = server.stop();
    let _ = server_d.stop();
    let _ = uas.kill();
    let _ = uas.wait();
    let spool_d = smsmta::spool::Spool::open(dir_d.path().join("spool"), 1 << 24).unwrap();
    let left: usize = [
        smsmta::spool::Queue::Incoming,
        smsmta::spool::Queue::Active,
        smsmta::spool::Queue::Deferred,
    ]
    .iter()
    .map(|q| spool_d.list(*q).unwrap().len())
    .sum();
    println!(
        "messages left in the delivering smsmta's spool afterwards: {left} (expected 0: all delivered)"
    );
    let spool = smsmta::spool::Spool::open(dir.path().join("spool"), 1 << 24).unwrap();
    let queued = spool.list(smsmta::spool::Queue::Incoming).unwrap().len();

    println!(
        "| smtp-source -s 10 -l 400 -m 10000 | smsmta, intake only (min/median/max msg/s) | smsmta delivering to a sipp BTS (min/median/max) | Postfix durable queue (min/median/max msg/s) | ratio of medians: intake only | ratio: delivering |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (persistent, a, d, b) in &rows {
        let f = |v: &Vec<f64>| {
            let mut s = v.clone();
            s.sort_by(|x, y| x.total_cmp(y));
            format!("{:.0} / {:.0} / {:.0}", s[0], s[1], s[2])
        };
        println!(
            "| {} | {} | {} | {} | {:.1}x | {:.1}x |",
            if *persistent {
                "persistent sessions (-d)"
            } else {
                "new connection per message"
            },
            f(a),
            f(d),
            f(b),
            median(a) / median(b),
            median(d) / median(b)
        );
    }
    println!(
        "messages in smsmta's spool afterwards: {queued} (expected {})",
        6 * MESSAGES
    );
}
