//! A full disk, on a small file system of the test's own (a loop-mounted ext4 image; needs
//! root, else the test says why and does nothing): refusals are temporary only (SMTP 452/451,
//! SIP 503, never a 5xx), the server answers throughout, every acknowledged message is there
//! after a restart, and mail is accepted again once space is freed.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use smsmta::spool::{Queue, Spool};

/// The loop mount, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mount_small_fs(dir: &Path) -> Mount {
    let img = dir.join("fs.img");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(Command::new("truncate").arg("-s").arg("48M").arg(&img));
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt));
    Mount(mnt)
}

/// One SMTP transaction; returns the reply to MAIL, or to the end of DATA.
fn smtp(server: SocketAddr, to: &str, body: &str) -> String {
    let s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut reply = || loop {
        let mut line = String::new();
        r.read_line(&mut line)
            .expect("the server stopped answering");
        assert!(!line.is_empty(), "connection closed without a reply");
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line;
        }
    };
    reply();
    for cmd in [
        "EHLO disk.test\r\n".to_string(),
        "MAIL FROM:<alice@example.org>\r\n".into(),
    ] {
        w.write_all(cmd.as_bytes()).unwrap();
        let r = reply();
        if !r.starts_with('2') {
            return r;
        }
    }
    w.write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())
        .unwrap();
    assert!(reply().starts_with("250"));
    w.write_all(b"DATA\r\n").unwrap();
    assert!(reply().starts_with("354"));
    w.write_all(format!("Subject: fill\r\n\r\n{body}\r\n.\r\n").as_bytes())
        .unwrap();
    let end = reply();
    let _ = w.write_all(b"QUIT\r\n");
    end
}

fn sip_message(server: SocketAddr, i: usize) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let l = sock.local_addr().unwrap();
    let req = format!(
        "MESSAGE sip:15551234567@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKdisk{i}\r\nFrom: <sip:15551230000@127.0.0.1>;tag=d{i}\r\nTo: <sip:15551234567@{server}>\r\nCall-ID: disk{i}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nfull"
    );
    sock.send_to(req.as_bytes(), server).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("SIP stopped answering");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn queued(spool_dir: &Path) -> Vec<String> {
    let spool = Spool::open(spool_dir, 1 << 24).unwrap();
    Queue::MESSAGE_QUEUES
        .iter()
        .flat_map(|q| spool.list(*q).unwrap())
        .map(|id| id.to_string())
        .collect()
}

#[test]
fn a_full_disk_gives_temporary_refusals_and_loses_nothing_acknowledged() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a small file system of its own needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = mount_small_fs(dir.path());
    let spool_dir = mount.0.join("spool");
    let cfg_dir = dir.path().join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = cfg_dir.join("smsmta.toml");
    std::fs::write(
        &cfg,
        format!(
            "domains = [\"sms.test\"]\nhostname = \"mta.test\"\nspool_dir = \"{}\"\n[log]\nlevel = \"info\"\n\
             [spool]\njournal_segment_size = \"1MiB\"\nmin_free = \"8MiB\"\n{}[delivery]\nenabled = false\n",
            spool_dir.display(),
            common::LOOPBACK.replace("[smtp]\n", "[smtp]\nregistry_authoritative = false\n")
        ),
    )
    .unwrap();
    let s = common::Serve::start(&cfg);
    let to = "15551234567@sms.test";
    // 64 KiB a message, in lines of 64 octets.
    let body = format!("{}\r\n", "0123456789abcdef".repeat(4)).repeat(1000);
    let mut acked = Vec::new();
    let mut refusals = std::collections::BTreeSet::new();
    let t = Instant::now();
    // Fill until the reserve refuses, then past it with a file of our own until ENOSPC.
    let mut filled = false;
    for i in 0..2000 {
        assert!(t.elapsed() < Duration::from_secs(120), "bounded in time");
        let r = smtp(s.smtp, to, &body);
        if let Some(id) = r.strip_prefix("250 2.0.0 Ok: queued as ") {
            acked.push(id.trim().to_string());
            continue;
        }
        assert!(
            r.starts_with('4'),
            "a full disk gave a permanent refusal: {r}"
        );
        refusals.insert(r.get(..9).unwrap_or(&r).to_string());
        let sip = sip_message(s.sip, i);
        assert!(sip.starts_with("SIP/2.0 503"), "{sip}");
        if !filled {
            // Take the rest of the disk.
            let _ = Command::new("dd")
                .args(["if=/dev/zero", "bs=1M"])
                .arg(format!("of={}", mount.0.join("filler").display()))
                .output();
            filled = true;
        } else if i > acked.len() + 5 {
            break;
        }
    }
    assert!(
        !acked.is_empty(),
        "nothing was accepted before the disk filled"
    );
    assert!(
        refusals.iter().any(|r| r.starts_with("452 4.3.1")),
        "{refusals:?}"
    );
    // Space comes back (the filler goes); the server is restarted.
    std::fs::remove_file(mount.0.join("filler")).unwrap();
    let (st, _) = s.stop();
    assert!(st.success());
    let s = common::Serve::start(&cfg);
    let present = queued(&spool_dir);
    for id in &acked {
        assert!(present.contains(id), "{id} was acknowledged and is gone");
    }
    // Freed below the reserve: accepted again.
    let out = Command::new(common::BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "queue",
            "delete",
            "--all",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1100));
    let r = smtp(s.smtp, to, "room again");
    assert!(r.starts_with("250"), "{r}");
    let (st, _) = s.stop();
    assert!(st.success());
    eprintln!(
        "acknowledged {} messages; refusals seen: {refusals:?}",
        acked.len()
    );
}
