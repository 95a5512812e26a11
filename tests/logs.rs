//! Logs as an operator reads them: `smsmta serve` with stderr to a file (not a terminal)
//! writes plain lines, no colour escapes, with the queue ID on every message line; with
//! `[log] format = "json"` every line is one JSON object carrying the queue ID as a field. The
//! ready line says what listens where.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` with stderr into `log`; the log once `until` holds for it (at most 20 s).
fn serve(config: &Path, log: &Path) -> Killed {
    let file = std::fs::File::create(log).unwrap();
    Killed(
        Command::new(common::BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap(),
    )
}

fn wait_for(log: &Path, until: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let s = std::fs::read_to_string(log).unwrap_or_default();
        if until(&s) {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "log so far:\n{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address after `key` in the ready line.
fn after(line: &str, key: &str) -> SocketAddr {
    common::addr_after(line, key).unwrap().parse().unwrap()
}

fn setup(format: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        dir.path(),
        &format!("{}[delivery]\nenabled = false\n", common::LOOPBACK),
    );
    let c = std::fs::read_to_string(&cfg).unwrap();
    let c = c.replacen("[log]\n", &format!("[log]\nformat = \"{format}\"\n"), 1);
    assert!(
        c.contains("format = "),
        "the test config has a [log] table:\n{c}"
    );
    std::fs::write(&cfg, c).unwrap();
    common::add_subscriber_quietly(&cfg, "15551234567", "001010000000001");
    (dir, cfg)
}

async fn send_one(smtp: SocketAddr) -> String {
    let reply = common::smtp_transaction(
        smtp,
        "alice@example.org",
        "15551234567@sms.test",
        "Subject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    // "250 2.0.0 Ok: queued as <ID>"
    reply.split_whitespace().last().unwrap().trim().to_string()
}

#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_and_every_message_line_names_its_queue_id() {
    let (dir, cfg) = setup("text");
    let log = dir.path().join("serve.log");
    let _s = serve(&cfg, &log);
    let ready = wait_for(&log, |s| s.contains("smsmta ready"));
    let line = ready
        .lines()
        .find(|l| l.contains("smsmta ready"))
        .unwrap()
        .to_string();
    for what in ["spool ", "sip udp ", "smtp ", "smpp ", "delivery "] {
        assert!(line.contains(what), "the ready line names {what:?}: {line}");
    }
    let id = send_one(after(&line, "smtp ")).await;
    let s = wait_for(&log, |s| s.contains(&format!("{id}: from=<")));
    assert!(!s.contains('\u{1b}'), "no ANSI escapes in a file:\n{s}");
    let mine: Vec<&str> = s.lines().filter(|l| l.contains(&id)).collect();
    assert!(
        mine.iter()
            .any(|l| l.contains(&format!("{id}: from=<alice@example.org>"))),
        "{s}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_queue_id_as_a_field() {
    let (dir, cfg) = setup("json");
    let log = dir.path().join("serve.log");
    let _s = serve(&cfg, &log);
    let ready = wait_for(&log, |s| s.contains("smsmta ready"));
    let objects = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let msg = |o: &serde_json::Value| o["fields"]["message"].as_str().unwrap_or("").to_string();
    let line = objects(&ready)
        .iter()
        .map(msg)
        .find(|m| m.contains("smsmta ready"))
        .unwrap();
    let id = send_one(after(&line, "smtp ")).await;
    let s = wait_for(&log, |s| s.contains(&format!("{id}: from=<")));
    assert!(!s.contains('\u{1b}'), "{s}");
    let all = objects(&s);
    let queued = all
        .iter()
        .find(|o| msg(o).starts_with(&format!("{id}: from=<")))
        .unwrap_or_else(|| panic!("{s}"));
    assert_eq!(queued["level"], "INFO");
    let field = queued["fields"]["queue_id"]
        .as_str()
        .or_else(|| queued["span"]["queue_id"].as_str());
    assert_eq!(field, Some(id.as_str()), "{queued}");
    assert!(
        queued["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{queued}"
    );
}
