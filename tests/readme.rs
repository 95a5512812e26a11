//! The README's "Five minutes with smsmta", walked as written: its shell blocks run in order in
//! one bash, in a fresh directory holding `config/try.toml` and the binary under test at
//! `./target/release/smsmta` (the one line not run is `cargo build --release`, whose product
//! that is). The peers are the ones the section names: swaks, aiosmtpd (the mail sink) and
//! curl; the test fails naming one that is missing (tests/run-all.sh installs them). The ports
//! are the section's fixed ones (2525, 5062, 5063, 2526, 9464), all on 127.0.0.1.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The ```sh blocks of the README section `title`, in order.
fn blocks(readme: &str, title: &str) -> Vec<String> {
    let start = readme.find(title).expect("the section is in the README");
    let rest = &readme[start + title.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut out = Vec::new();
    let mut it = section.split("```sh\n").skip(1);
    for b in &mut it {
        out.push(b.split("```").next().unwrap().to_string());
    }
    out
}

fn need(cmd: &str, check: &[&str], what: &str) {
    let ok = Command::new(cmd)
        .args(check)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "peer missing: {what} (tests/run-all.sh installs it)");
}

#[test]
#[ignore = "interop: needs swaks, aiosmtpd and curl (tests/run-all.sh installs them)"]
fn the_five_minute_walk_in_the_readme_works_as_written() {
    need("swaks", &["--version"], "swaks (Debian package swaks)");
    need("python3", &["-c", "import aiosmtpd"], "aiosmtpd (PyPI)");
    need("curl", &["--version"], "curl (Debian package curl)");
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let blocks = blocks(&readme, "## Five minutes with smsmta");
    assert_eq!(blocks.len(), 5, "the walk has five blocks");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::fs::copy(
        format!("{root}/config/try.toml"),
        dir.path().join("config/try.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(common::BIN, dir.path().join("target/release/smsmta")).unwrap();

    let mut script = String::from("set -e\n");
    for (i, b) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '=== block {i}'\n"));
        for line in b.lines() {
            if !line.starts_with("cargo build") {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    script.push_str("echo '=== done'\nwait\n");

    let t = Instant::now();
    // Its own process group: whatever the walk leaves running is killed with it.
    let mut child = Command::new("setsid")
        .args(["bash", "-c", &script])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = child.id();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            panic!("the walk did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(dir.path().join("smsmta.log")).unwrap_or_default();
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}\nsmsmta.log:\n{log}");
    assert!(out.status.success(), "{ctx}");
    assert!(stdout.contains("=== done"), "{ctx}");
    eprintln!("the walk took {:?}", t.elapsed());

    let block = |i: usize| {
        let from = stdout.find(&format!("=== block {i}")).unwrap();
        let to = stdout[from..]
            .find(&format!("=== block {}", i + 1))
            .map_or(stdout.len(), |n| from + n);
        stdout[from..to].to_string()
    };
    // Mail in, the handset off: the text waits, and the queue says why.
    let wait = block(1);
    assert!(wait.contains("250 2.0.0 Ok: queued as"), "{ctx}");
    assert!(wait.contains("480 Temporarily Unavailable"), "{ctx}");
    assert!(
        wait.lines()
            .any(|l| l.starts_with("handsets") && l.contains(" 1 ")),
        "{ctx}"
    );
    // The handset on: the retry delivers it, and the BTS prints it decoded.
    let on = block(2);
    assert!(
        on.contains("IMSI001010000000001 <- Email: you@example.org")
            && on.contains("Hello from e-mail"),
        "{ctx}"
    );
    assert!(on.contains("Mail queue is empty"), "{ctx}");
    // The reply: accepted from the handset, relayed as mail to the sink, counted.
    let reply = block(3);
    assert!(reply.contains("202 Accepted"), "{ctx}");
    assert!(reply.contains("From: <15551234567@sms.localhost>"), "{ctx}");
    let sink = std::fs::read_to_string(dir.path().join("sink.log")).unwrap();
    assert!(sink.contains("Hi back from the handset"), "{sink}");
    assert!(
        reply.contains(r#"smsmta_deliveries_total{agent="sip",status="sent"} 1"#),
        "{ctx}"
    );
    assert!(
        reply.contains(r#"smsmta_deliveries_total{agent="smtp",status="sent"} 1"#),
        "{ctx}"
    );
}
