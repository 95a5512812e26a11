//! Crash test for the spool: nothing acknowledged is ever lost, nothing partial is ever seen.
//!
//! This file is its own program (`harness = false`). Run without arguments (as `cargo test`
//! does) it is the parent: it starts itself as a child (`crash child SPOOL`), which commits
//! 400-byte messages in a loop through the journal (four committer threads), and also commits
//! directly and rewrites and moves messages (incoming -> deferred) the way delivery will.
//! The child prints each queue ID after its commit returned Ok. The parent kills the child with
//! SIGKILL at a random moment, at least 50 times; after each kill it checks that every file in
//! incoming/ and deferred/ decodes (nothing partial is visible), runs start-up recovery, and
//! checks that every acknowledged ID is present and decodes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smsmta::spool::{
    Origin, OriginKind, Queue, QueueFile, QueueId, Spool, Writer, journal, recover,
};

const KILLS: usize = 60;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(Path::new(&args[2]));
        return;
    }
    // `cargo test` passes harness flags; a filter that does not match "crash" skips the test.
    if let Some(filter) = args.iter().skip(1).find(|a| !a.starts_with('-'))
        && !"crash_kill_recover".contains(filter.as_str())
    {
        return;
    }
    parent();
    println!("test crash_kill_recover ... ok");
}

fn message(spool: &Spool, i: u64) -> QueueFile {
    spool.new_message(
        "sender@example.org",
        &[
            format!("1555{i:07}@sms.localhost"),
            "alice@example.org".into(),
        ],
        vec![b'a' + (i % 26) as u8; 400],
        Origin {
            kind: OriginKind::Smtp,
            peer: "127.0.0.1:1".into(),
            sender_number: None,
        },
        86_400,
    )
}

fn child(root: &Path) {
    let spool = Arc::new(Spool::open(root, 1 << 20).unwrap());
    let j = journal::start(
        Arc::clone(&spool),
        journal::Options {
            segment_size: 64 << 10,
            max_batch: 64,
        },
    )
    .unwrap();
    let writer = Writer::journaled(Arc::clone(&spool), j.handle());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let w = writer.clone();
        let out = Arc::clone(&out);
        threads.push(std::thread::spawn(move || {
            for i in 0.. {
                let id = w
                    .commit_blocking(message(w.spool(), t * 1_000_000 + i))
                    .unwrap();
                {
                    let mut o = out.lock().unwrap();
                    writeln!(o, "{id}").unwrap();
                    o.flush().unwrap();
                }
                // Keep the spool small enough that 60 recoveries stay quick in a debug build.
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // One thread commits directly and plays delivery: it rewrites a recipient's state and moves
    // the message to deferred, and it removes deferred messages as delivered (announcing each
    // on stdout first, so that the parent does not count it as lost).
    {
        let spool = Arc::clone(&spool);
        let out = Arc::clone(&out);
        threads.push(std::thread::spawn(move || {
            for i in 0.. {
                let id = spool
                    .commit_direct(&message(&spool, 9_000_000 + i))
                    .unwrap();
                {
                    let mut o = out.lock().unwrap();
                    writeln!(o, "{id}").unwrap();
                    o.flush().unwrap();
                }
                for victim in spool.list(Queue::Incoming).unwrap().into_iter().take(40) {
                    if let Ok(mut f) = spool.read(Queue::Incoming, victim) {
                        f.envelope.recipients[0].attempts += 1;
                        f.envelope.recipients[0].last_reply =
                            Some("480 Temporarily Unavailable".into());
                        if spool.rewrite(Queue::Incoming, &f).is_ok() {
                            let _ = spool.move_to(victim, Queue::Incoming, Queue::Deferred);
                        }
                    }
                }
                for done in spool.list(Queue::Deferred).unwrap().into_iter().take(40) {
                    {
                        let mut o = out.lock().unwrap();
                        writeln!(o, "D {done}").unwrap();
                        o.flush().unwrap();
                    }
                    let _ = spool.remove(Queue::Deferred, done);
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Every file in incoming/ and deferred/ must decode, and be the message its name says.
fn assert_no_partial_files(spool: &Spool, when: &str) -> usize {
    let mut n = 0;
    for q in [Queue::Incoming, Queue::Deferred] {
        for entry in std::fs::read_dir(q.dir(spool.root())).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let id = QueueId::parse(&name)
                .unwrap_or_else(|e| panic!("{when}: stray file {q}/{name}: {e}"));
            let bytes = std::fs::read(entry.path()).unwrap();
            let f = QueueFile::decode(&bytes)
                .unwrap_or_else(|e| panic!("{when}: partial or damaged {q}/{name}: {e}"));
            assert_eq!(f.id(), id, "{when}: {q}/{name} holds another message");
            n += 1;
        }
    }
    n
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let exe = std::env::current_exe().unwrap();
    let mut rng = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked: HashSet<QueueId> = HashSet::new();
    let mut total_acked = 0usize;
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .arg("child")
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut ids, mut delivered) = (Vec::new(), Vec::new());
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A line cut by the kill is not an acknowledgement we can rely on.
                if let Some(d) = line.strip_prefix("D ") {
                    if let Ok(id) = QueueId::parse(d.trim()) {
                        delivered.push(id);
                    }
                } else if let Ok(id) = QueueId::parse(line.trim()) {
                    ids.push(id);
                }
            }
            (ids, delivered)
        });
        let wait = Duration::from_millis(20 + next() % 250);
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (ids, delivered) = reader.join().unwrap();
        total_acked += ids.len();
        acked.extend(ids);
        for d in delivered {
            acked.remove(&d);
        }

        let spool = Spool::open(&root, 1 << 20).unwrap();
        assert_no_partial_files(&spool, &format!("after kill {kill}, before recovery"));
        recover::recover(&spool).unwrap();
        let (_, corrupt) = recover::verify(&spool).unwrap();
        assert_eq!(corrupt, 0, "kill {kill}: recovery found corrupt files");
        let present =
            assert_no_partial_files(&spool, &format!("after kill {kill}, after recovery"));
        for id in &acked {
            let q = spool
                .find(*id)
                .unwrap_or_else(|| panic!("kill {kill}: acknowledged message {id} is lost"));
            assert!(
                matches!(q, Queue::Incoming | Queue::Deferred),
                "{id} in {q}"
            );
            spool.read(q, *id).unwrap();
        }
        assert!(present >= acked.len());
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "crash test took too long"
        );
    }
    assert!(
        total_acked > 1_000,
        "too few commits to be meaningful: {total_acked}"
    );
    eprintln!(
        "crash test: {KILLS} kills, {total_acked} acknowledged messages ({} still queued) all accounted for after recovery, in {:?}",
        acked.len(),
        started.elapsed()
    );
}
