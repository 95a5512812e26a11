//! Helpers shared by the interop tests: the real `smsmta serve` binary on loopback.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The smsmta binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_smsmta");

/// `smsmta serve` running as a child process, with the addresses it reported.
pub struct Serve {
    child: Child,
    /// SIP UDP.
    pub sip: SocketAddr,
    /// SMTP.
    pub smtp: SocketAddr,
    /// Submission, when configured.
    pub submission: Option<SocketAddr>,
}

fn addr_after(line: &str, key: &str) -> Option<String> {
    line.split(key)
        .nth(1)?
        .split([' ', ','])
        .next()
        .map(str::to_string)
}

impl Serve {
    /// Starts `smsmta --config CONFIG serve` and waits for its ready line (log level info).
    pub fn start(config: &Path) -> Serve {
        let mut child = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("serve did not become ready");
            if line.contains("smsmta ready") {
                break line;
            }
        };
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Serve {
            child,
            sip: addr_after(&line, "sip udp ").unwrap().parse().unwrap(),
            smtp: addr_after(&line, "smtp ").unwrap().parse().unwrap(),
            submission: addr_after(&line, "submission ").and_then(|a| a.parse().ok()),
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config for a temporary spool in `dir`, listening on loopback port 0 everywhere,
/// with `extra` TOML appended; returns its path.
pub fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("smsmta.toml");
    std::fs::write(
        &path,
        format!(
            "domains = [\"sms.test\"]\nhostname = \"mta.test\"\nspool_dir = \"{}\"\n[log]\nlevel = \"info\"\n{extra}\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

/// The `[sip]` and `[smtp]` listen lines for port 0 (append the rest of each table after).
pub const LOOPBACK: &str = "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n";
