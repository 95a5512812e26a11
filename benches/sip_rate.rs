//! SIP intake rate: SIPp at rising rates against `smsmta serve` (every 202 sent after the
//! journal flush that covers its message), and, in the same run, SIPp against a SIPp server
//! that answers 202 and stores nothing (the tool's own ceiling).
//!
//! Run: `cargo bench --bench sip_rate` (needs sipp: Debian package sip-tester). Each step sends
//! `rate * 4` MESSAGEs (vnd.3gpp.sms hex, From an IMSI that the registry maps, as OpenBTS
//! sends them) at `rate` per second. A step passes when no call failed, retransmissions are at
//! most 1% of calls, and the achieved rate is at least 95% of the target. Reported: the
//! highest passing rate of each target, and their ratio. smsmta runs twice, each on a new
//! spool: with its metrics endpoint off, then on and scraped once a second as Prometheus would.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEP_SECS: u32 = 4;

struct Step {
    rate: u32,
    ok: u64,
    failed: u64,
    retrans: u64,
    achieved: f64,
}

impl Step {
    fn passed(&self) -> bool {
        let calls = u64::from(self.rate * STEP_SECS);
        self.failed == 0
            && self.ok == calls
            && self.retrans * 100 <= calls
            && self.achieved >= f64::from(self.rate) * 0.95
    }
}

/// Runs one SIPp client step; counts come from its -trace_stat CSV.
fn step(target: SocketAddr, rate: u32, dir: &Path) -> Step {
    let calls = rate * STEP_SECS;
    let stat = dir.join(format!("stat-{}-{rate}.csv", target.port()));
    let _ = std::fs::remove_file(&stat);
    let t = Instant::now();
    let _ = Command::new("sipp")
        .arg("-sf")
        .arg(common::sipp_scenario("uac-message-3gpp.xml"))
        .args(["-i", "127.0.0.1", "-p", &common::free_port().to_string()])
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "20000",
        ])
        .args([
            "-timeout",
            "40s",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
            "-stf",
        ])
        .arg(&stat)
        .arg(target.to_string())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp (Debian package sip-tester) is needed");
    let elapsed = t.elapsed().as_secs_f64();
    let csv = std::fs::read_to_string(&stat).unwrap_or_default();
    let header: Vec<&str> = csv.lines().next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = csv.lines().last().unwrap_or("").split(';').collect();
    let get = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let ok = get("SuccessfulCall(C)");
    Step {
        rate,
        ok,
        failed: get("FailedCall(C)"),
        retrans: get("Retransmissions(C)"),
        achieved: ok as f64 / elapsed.max(1e-3),
    }
}

fn ladder(name: &str, target: SocketAddr, dir: &Path, rates: &[u32]) -> Option<u32> {
    let mut best = None;
    for &rate in rates {
        let s = step(target, rate, dir);
        println!(
            "{name}: {rate}/s -> ok {} failed {} retrans {} achieved {:.0}/s {}",
            s.ok,
            s.failed,
            s.retrans,
            s.achieved,
            if s.passed() { "PASS" } else { "fail" }
        );
        if s.passed() {
            best = Some(rate);
        } else {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: nothing to check without a timed run.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rates: Vec<u32> = (1..=12).map(|i| i * 2000).collect();

    // smsmta twice, each on a new spool: with its metrics endpoint off, then on and scraped
    // every second as Prometheus would (issue 15).
    let mut results = Vec::new();
    for metrics in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let extra = if metrics {
            format!("{}{}", common::LOOPBACK, common::METRICS_ON)
        } else {
            common::LOOPBACK.to_string()
        };
        let config = common::config_logging(dir.path(), "warn,smsmta::app=info", &extra);
        common::add_subscriber(&config, "15550001111", "001010000000001");
        let server = common::Serve::start(&config);
        let scraper = server.metrics.map(common::Scraper::start);
        let name = if metrics {
            "smsmta (metrics scraped)"
        } else {
            "smsmta (metrics off)"
        };
        let passed = ladder(name, server.sip, dir.path(), &rates);
        let scrapes = scraper.map_or(0, common::Scraper::finish);
        let _ = server.stop();
        let spool = smsmta::spool::Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
        let queued = spool.list(smsmta::spool::Queue::Incoming).unwrap().len();
        results.push((name, passed, queued, scrapes));
    }

    let port = common::free_port();
    let mut uas = Command::new("sipp")
        .arg("-sf")
        .arg(common::sipp_scenario("uas-message-202.xml"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-bind_local",
            "-nostdin",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sipp = ladder(
        "sipp-vs-sipp",
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir.path(),
        &rates,
    );
    let _ = uas.kill();
    let _ = uas.wait();

    println!();
    println!("| target | highest passing rate (MESSAGE/s) | ratio to sipp |");
    println!("|---|---:|---:|");
    let shown = |r: Option<u32>| r.map_or("none".into(), |r| r.to_string());
    for (name, passed, _, _) in &results {
        let ratio = match (passed, sipp) {
            (Some(a), Some(b)) => format!("{:.2}", f64::from(*a) / f64::from(b)),
            _ => "-".into(),
        };
        println!("| {name}, durable 202 | {} | {ratio} |", shown(*passed));
    }
    println!(
        "| sipp UAS (202, stores nothing) | {} | 1.00 |",
        shown(sipp)
    );
    for (name, _, queued, scrapes) in &results {
        println!(
            "{name}: {queued} messages in its spool afterwards; /metrics scraped {scrapes} times"
        );
    }
}
