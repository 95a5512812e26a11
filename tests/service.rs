//! smsmta under a service manager: the unit in contrib/ passes `systemd-analyze verify` with no
//! warning (skipped, saying why, where systemd is not installed), and `serve` speaks the
//! sd_notify protocol its `Type=notify` relies on: READY=1 once it answers, STOPPING=1 when
//! SIGTERM comes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_unit_in_contrib_passes_systemd_analyze_verify_without_a_warning() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (Debian package systemd; tests/run-all.sh installs it)"
        );
        return;
    };
    assert!(v.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/smsmta.service"
    ))
    .unwrap();
    assert!(unit.contains("\nType=notify\n"), "readiness by sd_notify");
    assert!(unit.contains(
        "\nExecStartPre=/usr/local/bin/smsmta --config /etc/smsmta/smsmta.toml check-config\n"
    ));
    for hardening in [
        "User=smsmta",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/spool/smsmta",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    // verify checks that the binaries exist: point the copy at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smsmta.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/smsmta", common::BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "systemd-analyze warns:\n{err}");
}

#[test]
fn serve_says_ready_once_it_answers_and_stopping_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cfg = common::config(dir.path(), common::LOOPBACK);
    let mut child = Command::new(common::BIN)
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means answering: the ready line was written before, and SMTP takes a connection.
    let ready = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(5)).ok())
        .find(|l| l.contains("smsmta ready"))
        .expect("the ready line is written before READY=1");
    let smtp: std::net::SocketAddr = common::addr_after(&ready, "smtp ")
        .unwrap()
        .parse()
        .unwrap();
    std::net::TcpStream::connect(smtp).expect("SMTP answers once READY=1 is sent");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = sock.recv(&mut buf).expect("STOPPING=1 at SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}");
}
