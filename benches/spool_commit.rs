#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
//! Spool commit throughput, beside this disk's raw limits, in one run.
//!
//! Run: `cargo bench --bench spool_commit` (add `-- --quick` for one round).
//! Measures, for 400-byte messages, in rounds (min / median / max over rounds):
//! (a) raw: create + write + fsync + rename + directory fsync of a 400-byte file, one thread;
//! (b) raw: append 400 bytes + fdatasync to one file, one thread;
//! direct commit (one queue file per message) with 1 and 16 committers;
//! journal commit (group commit) with 1 and 16 committers, with messages per flush, and the
//! time the materializer then needs to write every queue file.
//! Every commit counted here returned Ok, i.e. was durable.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use smsmta::spool::{Origin, OriginKind, Queue, Spool, Writer, journal};

const MSG: usize = 400;
const LIMIT: Duration = Duration::from_secs(10);

fn message(spool: &Spool) -> smsmta::spool::QueueFile {
    spool.new_message(
        "sender@example.org",
        &["15551234567@sms.localhost".into()],
        vec![b'x'; MSG],
        Origin {
            kind: OriginKind::Smtp,
            peer: "127.0.0.1:1".into(),
            sender_number: None,
        },
        86_400,
    )
}

fn raw_file_per_op(dir: &Path, n: usize) -> f64 {
    let tmp = dir.join("tmp");
    let new = dir.join("new");
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&new).unwrap();
    let buf = [b'x'; MSG];
    let start = Instant::now();
    let mut done = 0;
    for i in 0..n {
        let t = tmp.join(format!("{i}"));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&t)
            .unwrap();
        f.write_all(&buf).unwrap();
        f.sync_all().unwrap();
        fs::rename(&t, new.join(format!("{i}"))).unwrap();
        File::open(&new).unwrap().sync_all().unwrap();
        done += 1;
        if start.elapsed() > LIMIT {
            break;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn raw_append(dir: &Path, n: usize) -> f64 {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("append.log"))
        .unwrap();
    let buf = [b'x'; MSG];
    let start = Instant::now();
    let mut done = 0;
    for _ in 0..n {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        done += 1;
        if start.elapsed() > LIMIT {
            break;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Runs `per_thread` commits on each of `threads` threads; returns commits a second.
fn committers(writer: &Writer, threads: usize, per_thread: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let w = writer.clone();
            std::thread::spawn(move || {
                let mut ok = 0usize;
                for _ in 0..per_thread {
                    let f = message(w.spool());
                    w.commit_blocking(f).unwrap();
                    ok += 1;
                    if start.elapsed() > LIMIT {
                        break;
                    }
                }
                ok
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

struct Row {
    name: &'static str,
    values: Vec<f64>,
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn main() {
    // `cargo bench` passes --bench; without it (`cargo test --benches`) run one small round
    // as a smoke test.
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let quick = smoke || args.iter().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 3 };
    let scale = if smoke { 20 } else { 1 };
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spool-bench");
    let mut rows: Vec<Row> = [
        "(a) raw file: create+write+fsync+rename+dir fsync, 1 thread",
        "(b) raw append 400 B + fdatasync, 1 thread",
        "direct commit, 1 committer",
        "direct commit, 16 committers",
        "journal commit, 1 committer",
        "journal commit, 16 committers",
        "journal, 16 committers: messages per flush",
        "journal, 16 committers: queue files written/s afterwards",
    ]
    .into_iter()
    .map(|name| Row {
        name,
        values: Vec::new(),
    })
    .collect();

    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        rows[0]
            .values
            .push(raw_file_per_op(&fresh(&base, "raw-a"), 2000));
        rows[1]
            .values
            .push(raw_append(&fresh(&base, "raw-b"), 5000));

        let spool = Arc::new(Spool::open(fresh(&base, "direct1"), 1 << 20).unwrap());
        rows[2]
            .values
            .push(committers(&Writer::direct(spool), 1, 2000));
        let spool = Arc::new(Spool::open(fresh(&base, "direct16"), 1 << 20).unwrap());
        rows[3]
            .values
            .push(committers(&Writer::direct(spool), 16, 200));

        for (row, threads, per) in [(4usize, 1usize, 4000usize), (5, 16, 1000)] {
            let spool = Arc::new(Spool::open(fresh(&base, "journal"), 1 << 20).unwrap());
            let j = journal::start(
                Arc::clone(&spool),
                journal::Options {
                    segment_size: 16 << 20,
                    max_batch: 512,
                },
            )
            .unwrap();
            let h = j.handle();
            let writer = Writer::journaled(Arc::clone(&spool), h.clone());
            let rate = committers(&writer, threads, per / scale);
            rows[row].values.push(rate);
            let stats = Arc::clone(h.stats());
            let committed = stats.committed.load(Ordering::Relaxed);
            if threads == 16 {
                rows[6]
                    .values
                    .push(committed as f64 / stats.flushes.load(Ordering::Relaxed).max(1) as f64);
                let t = Instant::now();
                let before = stats.materialized.load(Ordering::Relaxed);
                while stats.materialized.load(Ordering::Relaxed) < committed
                    && t.elapsed() < Duration::from_secs(60)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let after = stats.materialized.load(Ordering::Relaxed);
                rows[7]
                    .values
                    .push((after - before) as f64 / t.elapsed().as_secs_f64().max(1e-3));
            }
            drop(writer);
            drop(h);
            j.shutdown(Duration::from_secs(60));
            assert_eq!(spool.list(Queue::Incoming).unwrap().len() as u64, committed);
        }
    }

    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() / 2]
    };
    let a = median(&rows[0].values);
    let b = median(&rows[1].values);
    println!(
        "| measurement (400-byte messages) | min | median | max | median / (a) | median / (b) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let mut s = r.values.clone();
        s.sort_by(|x, y| x.total_cmp(y));
        let m = median(&s);
        let ratio = |x: f64| {
            if r.name.contains("per flush") {
                "-".to_string()
            } else {
                format!("{:.2}x", m / x)
            }
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} |",
            r.name,
            s[0],
            m,
            s[s.len() - 1],
            ratio(a),
            ratio(b)
        );
    }
    let _ = fs::remove_dir_all(&base);
}
