//! Helpers shared by the integration tests: the server in-process ([`Env`]) or as the real
//! `smsmta serve` binary ([`Serve`]), always on loopback.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use smsmta::app::{self, Running};
use smsmta::config::Config;
use smsmta::registry::Subscriber;
use smsmta::spool::{Queue, QueueFile, Spool};

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
    /// SMPP, when configured.
    pub smpp: Option<SocketAddr>,
    /// The metrics endpoint, when enabled.
    pub metrics: Option<SocketAddr>,
    /// The log lines about delivery (`status=`), the queue manager and reloads, as they come.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The word after `key` in a log line (`smtp 127.0.0.1:2525, ...` -> the address).
pub fn addr_after(line: &str, key: &str) -> Option<String> {
    line.split(key)
        .nth(1)?
        .split([' ', ','])
        .next()
        .map(str::to_string)
}

impl Serve {
    /// Starts `smsmta --config CONFIG serve` and waits for its ready line (log level info).
    pub fn start(config: &Path) -> Serve {
        Serve::start_env(config, &[])
    }

    /// As [`Serve::start`], with `env` set for the server.
    pub fn start_env(config: &Path, env: &[(&str, &str)]) -> Serve {
        let mut child = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .envs(env.iter().copied())
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
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            while let Ok(l) = rx.recv() {
                if l.contains("status=") || l.contains("queue manager") || l.contains("reload") {
                    keep.lock().unwrap().push(l);
                }
            }
        });
        Serve::ready(child, &line, log)
    }

    /// Starts `smsmta --config CONFIG serve` with its log (stderr) appended to the file
    /// `log_file`, as an operator's log file or journald would take it (the benches: no pipe
    /// to this process); waits for the ready line there. [`Serve::log`] stays empty.
    pub fn start_logging_to(config: &Path, log_file: &Path) -> Serve {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .unwrap();
        let child = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stderr(file)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let text = std::fs::read_to_string(log_file).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains("smsmta ready")) {
                break l.to_string();
            }
            assert!(Instant::now() < deadline, "serve did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        };
        Serve::ready(child, &line, std::sync::Arc::default())
    }

    fn ready(
        child: Child,
        line: &str,
        log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Serve {
        Serve {
            log,
            child,
            sip: addr_after(line, "sip udp ").unwrap().parse().unwrap(),
            smtp: addr_after(line, "smtp ").unwrap().parse().unwrap(),
            submission: addr_after(line, "submission ").and_then(|a| a.parse().ok()),
            smpp: addr_after(line, "smpp ").and_then(|a| a.parse().ok()),
            metrics: addr_after(line, "metrics ").and_then(|a| a.parse().ok()),
        }
    }

    /// SIGTERM, then waits (at most 20 s) for the exit; returns its status and how long the
    /// shutdown took.
    pub fn stop(mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Serve {
    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the server dies at once, wherever it is.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config for a temporary spool in `dir`, logging at info, with `extra` TOML
/// appended; returns its path.
pub fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    config_logging(dir, "info", extra)
}

/// As [`config`], with a log filter (it must let `smsmta::app=info` through: [`Serve`] waits
/// for the ready line). Delivery is off (front-door tests count what stays in the spool)
/// unless `extra` has a `[delivery]` table.
pub fn config_logging(dir: &Path, level: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("smsmta.toml");
    let extra = if extra.contains("[delivery]") {
        extra.to_string()
    } else {
        format!("{extra}\n[delivery]\nenabled = false\n")
    };
    std::fs::write(
        &path,
        format!(
            "domains = [\"sms.test\"]\nhostname = \"mta.test\"\nspool_dir = \"{}\"\n[log]\nlevel = \"{level}\"\n{extra}\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

/// Adds a subscriber with `smsmta subscriber add`.
pub fn add_subscriber(config: &Path, msisdn: &str, imsi: &str) {
    add_subscriber_with(config, msisdn, imsi, false);
}

/// [`add_subscriber`], its "saved" line not shown.
pub fn add_subscriber_quietly(config: &Path, msisdn: &str, imsi: &str) {
    add_subscriber_with(config, msisdn, imsi, true);
}

fn add_subscriber_with(config: &Path, msisdn: &str, imsi: &str, quiet: bool) {
    let out = || {
        if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        }
    };
    let st = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "subscriber",
            "add",
            "--msisdn",
            msisdn,
            "--imsi",
            imsi,
        ])
        .stdout(out())
        .stderr(out())
        .status()
        .unwrap();
    assert!(st.success());
}

/// The `[sip]` and `[smtp]` listen lines for port 0 (append the rest of each table after).
pub const LOOPBACK: &str = "[sip]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\n";

/// The metrics endpoint on, on a port of its own (append to a config's extra TOML; the
/// benches run with it, scraped by [`Scraper`]).
pub const METRICS_ON: &str = "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n";

/// Scrapes `/metrics` once a second, as Prometheus would, until dropped; says how many
/// scrapes answered 200.
pub struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Scraper {
    /// Starts scraping `addr` (the server's metrics address).
    pub fn start(addr: SocketAddr) -> Scraper {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut ok = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if http_get(addr, "/metrics").0 == 200 {
                    ok += 1;
                }
                for _ in 0..10 {
                    if s.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            ok
        });
        Scraper {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; the number of scrapes that answered 200.
    pub fn finish(mut self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

/// The whole server in-process on a temporary spool, every listener on 127.0.0.1 port 0.
pub struct Env {
    _dir: tempfile::TempDir,
    /// The spool root.
    pub spool_dir: std::path::PathBuf,
    /// The running server (taken by `stop`).
    pub running: Option<Running>,
}

impl Env {
    /// Starts it with `extra` TOML after the basics. Delivery is off (front-door tests count
    /// what stays in the spool) unless `extra` has a `[delivery]` table.
    pub async fn start(extra: &str) -> Env {
        Env::start_with(extra, |_| {}).await
    }

    /// As [`Env::start`], with `adjust` applied to the configuration last.
    pub async fn start_with(extra: &str, adjust: impl FnOnce(&mut Config)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let toml = format!(
            "domains = [\"sms.test\"]\nhostname = \"mta.test\"\nspool_dir = \"{}\"\nshutdown_timeout = \"5s\"\n{extra}\n",
            spool_dir.display()
        );
        let mut cfg = Config::parse(&toml, "test.toml").unwrap();
        cfg.sip.listen = "127.0.0.1:0".parse().unwrap();
        cfg.smtp.listen = "127.0.0.1:0".parse().unwrap();
        if !extra.contains("[delivery]") {
            cfg.delivery.enabled = false;
        }
        adjust(&mut cfg);
        let running = app::start(cfg).await.unwrap();
        Env {
            _dir: dir,
            spool_dir,
            running: Some(running),
        }
    }

    /// SIP UDP.
    pub fn udp(&self) -> SocketAddr {
        self.running.as_ref().unwrap().sip_udp
    }

    /// SIP TCP.
    pub fn tcp(&self) -> SocketAddr {
        self.running.as_ref().unwrap().sip_tcp
    }

    /// Adds a subscriber to the registry.
    pub async fn add_subscriber(&self, msisdn: &str, imsi: &str) {
        self.upsert_subscriber(Subscriber {
            msisdn: msisdn.into(),
            imsi: Some(imsi.into()),
            email: None,
            enabled: true,
        })
        .await;
    }

    /// Adds or replaces a subscriber in the running server's registry.
    pub async fn upsert_subscriber(&self, s: Subscriber) {
        self.running
            .as_ref()
            .unwrap()
            .registry
            .call(move |db| db.upsert(&s))
            .await
            .unwrap();
    }

    /// Waits until `n` messages are in incoming/ and returns them, oldest first.
    pub async fn spooled(&self, n: usize) -> Vec<QueueFile> {
        let spool = Spool::open(&self.spool_dir, 1 << 24).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ids = spool.list(Queue::Incoming).unwrap();
            if ids.len() >= n || Instant::now() > deadline {
                return ids
                    .into_iter()
                    .map(|id| spool.read(Queue::Incoming, id).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Shuts it down.
    pub async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await;
    }
}

impl Env {
    /// SMTP.
    pub fn smtp(&self) -> SocketAddr {
        self.running.as_ref().unwrap().smtp
    }
}

/// A port free on 127.0.0.1 when asked (UDP; TCP on the same number is nearly always free).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of a sipp scenario in tests/interop/sipp.
pub fn sipp_scenario(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop/sipp")
        .join(name)
}

/// A sipp UAS playing the BTS on 127.0.0.1:`port`: answers every MESSAGE with 200
/// (tests/interop/sipp/uas-message.xml); ends after `calls` when given.
pub fn sipp_uas(port: u16, calls: Option<usize>) -> Child {
    let scenario = sipp_scenario("uas-message.xml");
    let port = port.to_string();
    let calls = calls.map(|c| c.to_string());
    let mut args = vec![
        "-sf",
        scenario.to_str().unwrap(),
        "-i",
        "127.0.0.1",
        "-p",
        &port,
    ];
    if let Some(c) = &calls {
        args.extend(["-m", c]);
    }
    args.push("-nostdin");
    Command::new("sipp")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester) is needed")
}

/// A private Postfix instance, stopped on drop.
pub struct Postfix {
    dir: std::path::PathBuf,
}

impl Postfix {
    /// Starts it in `dir` listening on 127.0.0.1:`port`; `mode` `relay` (the SMS domain to
    /// 127.0.0.1:`relay`) or `discard` (tests/interop/postfix/start-instance.sh). Needs root.
    pub fn start(dir: &Path, port: u16, mode: &str, relay: Option<u16>) -> Postfix {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/postfix/start-instance.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg(dir).arg(port.to_string()).arg(mode);
        if let Some(r) = relay {
            cmd.arg(r.to_string());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "peer missing or failed: Postfix (Debian package postfix; tests/run-all.sh installs it): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Postfix {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("stop")
            .output();
    }
}

/// One SMTP transaction on a new connection (EHLO, MAIL, RCPT, DATA; `data` ends with CRLF);
/// returns the last line of the reply to the end of DATA.
pub async fn smtp_transaction(server: SocketAddr, from: &str, to: &str, data: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = tokio::net::TcpStream::connect(server).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut last = String::new();
    for cmd in [
        None,
        Some("EHLO client.test\r\n".to_string()),
        Some(format!("MAIL FROM:<{from}>\r\n")),
        Some(format!("RCPT TO:<{to}>\r\n")),
        Some("DATA\r\n".to_string()),
        Some(format!("{data}.\r\n")),
    ] {
        if let Some(c) = cmd {
            w.write_all(c.as_bytes()).await.unwrap();
        }
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                last = line;
                break;
            }
        }
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
    last
}

/// The hex body of an RP-DATA carrying an SMS-SUBMIT (TP-MR 42, RP-MR 7, SMSC 101) to `to`,
/// as a handset sends it in `application/vnd.3gpp.sms`; `report` sets TP-SRR.
pub fn sms_submit_hex(to: &str, text: &str, report: bool) -> String {
    use smsmta::sms::{Address, RpData, RpMessage, Submit, UserData};
    let submit = Submit {
        reject_duplicates: false,
        reply_path: false,
        status_report_request: report,
        message_ref: 42,
        destination: Address::parse(to),
        pid: 0,
        dcs: smsmta::sms::tpdu::Dcs::parse(0),
        validity: None,
        user_data: UserData::text(text),
    };
    let rp = RpMessage::Data(RpData {
        to_network: true,
        message_ref: 7,
        originator: None,
        destination: Some(Address::parse("101")),
        tpdu: submit.encode().unwrap(),
    })
    .encode()
    .unwrap();
    smsmta::sms::body::hex_encode(&rp)
}

/// Sends, as handset `imsi` over UDP, an SMS-SUBMIT to `to` asking for a status report
/// (TP-MR 42; [`sms_submit_hex`]); asserts the 202.
pub async fn submit_with_report(server: SocketAddr, imsi: &str, to: &str, text: &str) {
    let body = sms_submit_hex(to, text, true);
    let answer = sip_udp_request(server, |local| format!(
        "MESSAGE sip:smsc@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKup1\r\nFrom: <sip:IMSI{imsi}@{server}>;tag=up1\r\nTo: <sip:smsc@{server}>\r\nCall-ID: up1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: application/vnd.3gpp.sms\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert!(answer.starts_with("SIP/2.0 202"), "{answer}");
}

/// A GET of `path` on `addr` (HTTP/1.1, one request): (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

/// The value of the sample `name` (with its labels, as written: `a_total{x="y"}`) in a
/// Prometheus text exposition; 0 when absent.
pub fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// One SIP request over UDP from a fresh socket on 127.0.0.1: `make` gets that socket's
/// address (for Via) and returns the request; the first answer within 5 s, as text.
pub async fn sip_udp_request(
    server: SocketAddr,
    make: impl FnOnce(SocketAddr) -> String,
) -> String {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = make(sock.local_addr().unwrap());
    sock.send_to(req.as_bytes(), server).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
