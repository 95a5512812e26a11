//! End-to-end tests of the `smsmta` command on a temporary spool: `check-config`, `inject`,
//! and `queue list|show|hold|release|flush|delete`, alone and while `serve` runs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_smsmta");

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    spool: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = dir.path().join("smsmta.toml");
    std::fs::write(
        &config,
        format!(
            "domains = [\"sms.example.org\"]\nspool_dir = \"{}\"\nshutdown_timeout = \"5s\"\n[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"info\"\n[delivery]\nenabled = false\n",
            spool.display()
        ),
    )
    .unwrap();
    Env {
        _dir: dir,
        config,
        spool,
    }
}

fn run(env: &Env, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(env: &Env, args: &[&str], stdin: &[u8]) -> String {
    let out = run(env, args, stdin);
    assert!(
        out.status.success(),
        "smsmta {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const MAIL: &[u8] = b"From: Alice <alice@example.org>\nTo: 15551234567@sms.example.org\nCc: bob@example.net\nBcc: carol@example.com\nSubject: hi\n\nhello there\n";

fn inject(env: &Env, args: &[&str]) -> String {
    let mut a = vec!["inject"];
    a.extend_from_slice(args);
    ok(env, &a, MAIL).trim().to_string()
}

fn json_list(env: &Env) -> serde_json::Value {
    serde_json::from_str(&ok(env, &["queue", "list", "--json"], b"")).unwrap()
}

#[test]
fn check_config_prints_effective_values_and_rejects_unknown_keys() {
    let env = env();
    let out = ok(&env, &["check-config"], b"");
    assert!(out.contains("listen = \"127.0.0.1:0\""), "{out}");
    assert!(out.contains("smsc_name = \"smsc\""), "{out}");
    assert!(out.contains("sms.example.org"));
    assert!(out.contains("registry.sqlite"));
    // The embedded default, with no --config at all.
    let out = Command::new(BIN).arg("check-config").output().unwrap();
    assert!(out.status.success());
    let default = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        default.contains("sms.localhost") && default.contains("listen = \"127.0.0.1:5063\""),
        "{default}"
    );

    std::fs::write(
        &env.config,
        "[smtp]\nlisten = \"127.0.0.1:25\"\nrelay_everything = true\n",
    )
    .unwrap();
    let out = run(&env, &["check-config"], b"");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("smsmta.toml") && err.contains("relay_everything"),
        "{err}"
    );
}

#[test]
fn inject_commits_and_queue_list_and_show_describe_it() {
    let env = env();
    let id = inject(
        &env,
        &[
            "--from",
            "alice@example.org",
            "--to",
            "15551234567@sms.example.org",
        ],
    );
    assert_eq!(id.len(), 20);
    assert!(env.spool.join("incoming").join(&id).exists());

    let list = ok(&env, &["queue", "list"], b"");
    assert!(
        list.contains(&id) && list.contains("alice@example.org"),
        "{list}"
    );
    assert!(
        list.contains("15551234567@sms.example.org [pending, 0 attempt(s)]"),
        "{list}"
    );

    let v = json_list(&env);
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["queue"], "incoming");
    assert_eq!(v[0]["recipients"][0]["state"], "pending");

    let shown = ok(&env, &["queue", "show", &id], b"");
    assert!(
        shown.contains("\"sender\": \"alice@example.org\""),
        "{shown}"
    );
    // Stored as RFC 5322 with CRLF line ends.
    assert!(shown.contains("Subject: hi\r\n"), "{shown}");
}

#[test]
fn inject_dash_t_takes_recipients_from_headers_and_drops_bcc() {
    let env = env();
    let id = inject(&env, &["-f", "alice@example.org", "-t"]);
    let v = json_list(&env);
    let rcpts: Vec<&str> = v[0]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        rcpts,
        [
            "15551234567@sms.example.org",
            "bob@example.net",
            "carol@example.com"
        ]
    );
    let shown = ok(&env, &["queue", "show", &id], b"");
    assert!(!shown.contains("Bcc:"), "{shown}");
}

#[test]
fn inject_without_recipients_or_with_bad_ones_fails_and_queues_nothing() {
    let env = env();
    assert_eq!(
        run(&env, &["inject", "-f", "a@b.c"], MAIL).status.code(),
        Some(64)
    );
    assert_eq!(
        run(&env, &["inject", "--to", "bad address@x"], MAIL)
            .status
            .code(),
        Some(65)
    );
    let list = ok(&env, &["queue", "list"], b"");
    assert!(list.contains("Mail queue is empty"), "{list}");
}

#[test]
fn hold_release_flush_delete_move_the_message() {
    let env = env();
    let a = inject(&env, &["--to", "15551234567@sms.example.org"]);
    let b = inject(&env, &["--to", "15551234568@sms.example.org"]);
    ok(&env, &["queue", "hold", &a, &b], b"");
    assert!(env.spool.join("hold").join(&a).exists());
    assert!(env.spool.join("hold").join(&b).exists());
    ok(&env, &["queue", "release", "--all"], b"");
    assert!(env.spool.join("deferred").join(&a).exists());
    ok(&env, &["queue", "flush", &a], b"");
    assert!(env.spool.join("incoming").join(&a).exists());
    ok(&env, &["queue", "delete", &a], b"");
    assert!(!env.spool.join("incoming").join(&a).exists());
    let v = json_list(&env);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], b.as_str());

    // Unknown and malformed IDs fail with a message and a sysexits code.
    let out = run(&env, &["queue", "delete", &a], b"");
    assert_eq!(out.status.code(), Some(66));
    let out = run(&env, &["queue", "show", "../../etc/passwd"], b"");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn queue_commands_work_while_serve_runs_and_serve_stops_on_sigterm() {
    let env = env();
    let before = inject(&env, &["--to", "15551234567@sms.example.org"]);
    // Leftovers a crash would leave: a tmp file and a message in active/.
    std::fs::write(env.spool.join("tmp").join("partial"), b"half a message").unwrap();
    std::fs::rename(
        env.spool.join("incoming").join(&before),
        env.spool.join("active").join(&before),
    )
    .unwrap();

    let server = common::Serve::start(&env.config);
    // Recovery ran before "ready".
    assert!(!env.spool.join("tmp").join("partial").exists());
    assert!(env.spool.join("incoming").join(&before).exists());

    // A second server on the same spool is refused.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&env.config)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another smsmta server"));

    let during = inject(&env, &["--to", "15551234569@sms.example.org"]);
    ok(&env, &["queue", "hold", &during], b"");
    let v = json_list(&env);
    let queues: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["queue"].as_str().unwrap()))
        .collect();
    assert!(
        queues.contains(&(before.as_str(), "incoming")),
        "{queues:?}"
    );
    assert!(queues.contains(&(during.as_str(), "hold")), "{queues:?}");
    ok(&env, &["queue", "release", &during], b"");
    ok(&env, &["queue", "delete", &before], b"");

    let (status, took) = server.stop();
    assert!(status.success(), "serve exited with {status}");
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert!(env.spool.join("deferred").join(&during).exists());
}

#[test]
fn queue_stats_counts_what_waits_by_destination_and_age_as_qshape_does() {
    use smsmta::spool::{Origin, OriginKind, Queue, RcptState, Spool};
    let env = env();
    ok(&env, &["queue", "list"], b""); // creates the spool
    let spool = Spool::open(&env.spool, 1 << 20).unwrap();
    let now = smsmta::clock::now_unix();
    let origin = Origin {
        kind: OriginKind::Smtp,
        peer: "test".into(),
        sender_number: None,
    };
    // (queue, age in minutes, recipients)
    let put = |q: Queue, minutes: u64, rcpts: &[&str]| {
        let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
        let mut f = spool.new_message(
            "a@example.net",
            &rcpts,
            b"x".to_vec(),
            origin.clone(),
            86_400,
        );
        f.envelope.arrival = now - minutes * 60;
        f.envelope
            .recipients
            .iter_mut()
            .filter(|r| r.address.starts_with("done"))
            .for_each(|r| r.state = RcptState::Delivered);
        spool.write_new(q, &f).unwrap();
    };
    put(Queue::Incoming, 1, &["15551234567@sms.example.org"]);
    put(
        Queue::Deferred,
        7,
        &[
            "15551234567@sms.example.org",
            "bob@example.com",
            "done@example.com",
        ],
    );
    put(
        Queue::Deferred,
        50,
        &["IMSI001010000000001@sms.example.org"],
    );
    put(Queue::Deferred, 3000, &["bob@example.com"]);
    put(Queue::Hold, 15, &["carol@example.org"]);

    let out = ok(&env, &["queue", "stats"], b"");
    let section = |name: &str| -> Vec<Vec<String>> {
        out.split("\n\n")
            .find(|s| s.starts_with(&format!("{name}\n")))
            .unwrap_or_else(|| panic!("no {name} table:\n{out}"))
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let row =
        |cells: &str| -> Vec<String> { cells.split_whitespace().map(str::to_string).collect() };
    //             T 5 10 20 40 80 160 320 640 1280 1280+
    assert_eq!(
        section("deferred"),
        vec![
            row("TOTAL       4 0 2 0 0 1 0 0 0 0 1"),
            row("example.com 2 0 1 0 0 0 0 0 0 0 1"),
            row("handsets    2 0 1 0 0 1 0 0 0 0 0"),
        ],
        "{out}"
    );
    assert_eq!(
        section("incoming")[1],
        row("handsets 1 1 0 0 0 0 0 0 0 0 0")
    );
    assert_eq!(section("hold")[1], row("example.org 1 0 0 1 0 0 0 0 0 0 0"));

    let j: serde_json::Value =
        serde_json::from_str(&ok(&env, &["queue", "stats", "--json"], b"")).unwrap();
    assert_eq!(
        j["buckets_minutes"],
        serde_json::json!([5, 10, 20, 40, 80, 160, 320, 640, 1280])
    );
    let deferred = j["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "deferred")
        .unwrap();
    assert_eq!(
        deferred["total"],
        serde_json::json!([4, 0, 2, 0, 0, 1, 0, 0, 0, 0, 1])
    );
    assert_eq!(deferred["destinations"][0][0], "example.com");
}
