//! Interop with Kannel (Debian package `kannel`; tests/run-all.sh installs it): its bearerbox
//! binds as an ESME (transceiver) to smsmta's SMPP server, and a text sent through Kannel's
//! sendsms HTTP interface (smsbox) reaches a fake BTS handset as an SMS-DELIVER, through
//! `smsmta serve`'s spool and SIP delivery, and the receipt smsmta sends back (Kannel asked with
//! dlr-mask) makes smsbox call its dlr-url with "delivered"; and a handset's SIP MESSAGE to the ESME's service
//! number reaches Kannel as deliver_sm, whose smsbox calls a URL served by the test. Everything
//! on loopback, every file in a temporary directory (tests/interop/kannel/kannel.conf.in).
//!
//! Ignored by plain `cargo test`; without Kannel the test fails, naming the peer.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Serve;
use peers::SipPeer;

const PEER: &str =
    "Kannel (Debian package kannel: bearerbox, smsbox; tests/run-all.sh installs it)";

/// A Kannel box, stopped on drop.
struct Box_(Child);

impl Drop for Box_ {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_box(bin: &str, conf: &Path) -> Box_ {
    Box_(
        Command::new(bin)
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{PEER} is missing ({bin}: {e})")),
    )
}

/// One HTTP GET on loopback; the status line and body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kannel (Debian kannel); run by tests/run-all.sh"]
async fn kannel_sends_through_smsmta_gets_its_receipt_and_receives_a_handsets_reply() {
    assert!(
        Command::new("bearerbox").arg("--version").output().is_ok(),
        "{PEER} is missing"
    );
    let mut handset = SipPeer::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let hash =
        sha_crypt::sha512_simple("kpw1", &sha_crypt::Sha512Params::new(5_000).unwrap()).unwrap();
    let smpp_port = common::free_port();
    let cfg = common::config(
        dir.path(),
        &format!(
            "{}[smpp]\nlisten = \"127.0.0.1:{smpp_port}\"\n[[smpp.esme]]\nsystem_id = \"kannel\"\npassword_hash = \"{hash}\"\nsources = [\"2337\"]\nservice_numbers = [\"7777\"]\n[delivery]\nbts = \"{}\"\n",
            common::LOOPBACK,
            handset.addr
        ),
    );
    common::add_subscriber(&cfg, "15551234567", "001010000000002");
    let serve = Serve::start(&cfg);
    assert_eq!(serve.smpp.map(|a| a.port()), Some(smpp_port));

    let kdir = dir.path().join("kannel");
    std::fs::create_dir_all(&kdir).unwrap();
    let (admin, smsbox, sendsms) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    // The URL smsbox calls for each text it receives: one request, its query line sent back.
    let mo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mo_port = mo.local_addr().unwrap().port();
    let (mo_tx, mo_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for mut s in mo.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let _ = s.write_all(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
            );
            let _ = mo_tx.send(req);
        }
    });
    let conf = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kannel/kannel.conf.in"),
    )
    .unwrap()
    .replace("@DIR@", kdir.to_str().unwrap())
    .replace("@ADMIN_PORT@", &admin.to_string())
    .replace("@SMSBOX_PORT@", &smsbox.to_string())
    .replace("@SENDSMS_PORT@", &sendsms.to_string())
    .replace("@SMPP_PORT@", &smpp_port.to_string())
    .replace("@MO_PORT@", &mo_port.to_string());
    let conf_path = kdir.join("kannel.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _bearerbox = start_box("bearerbox", &conf_path);
    std::thread::sleep(Duration::from_millis(500));
    let _smsbox = start_box("smsbox", &conf_path);

    // Wait until Kannel reports the SMPP link online (its status page), then send.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http_get(admin, "/status.txt?password=status").unwrap_or_default();
        if status.contains("online") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Kannel's SMPP link to smsmta did not come online:\n{status}\n{}",
            std::fs::read_to_string(kdir.join("bearerbox.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        if let Some(r) = http_get(
            sendsms,
            &format!(
                "/cgi-bin/sendsms?username=tester&password=foobar&from=2337&to=15551234567&text=Hello+from+Kannel\
                 &dlr-mask=3&dlr-url=http%3A%2F%2F127.0.0.1%3A{mo_port}%2Fdlr%3Fstatus%3D%25d"
            ),
        ) {
            break r;
        }
        assert!(Instant::now() < deadline, "smsbox's sendsms did not answer");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        reply.contains("Accepted") || reply.contains("Sent"),
        "{reply}"
    );

    let got = tokio::time::timeout(Duration::from_secs(30), handset.rx.recv())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no text reached the handset; bearerbox log:\n{}",
                std::fs::read_to_string(kdir.join("bearerbox.log")).unwrap_or_default()
            )
        })
        .unwrap();
    let deliver = got.deliver.unwrap();
    assert!(
        deliver.user_data.body.text().contains("Hello from Kannel"),
        "{:?}",
        deliver.user_data.body.text()
    );
    assert_eq!(deliver.originator.value, "2337");

    // The handset answers the service number: SIP MESSAGE -> smsmta -> deliver_sm -> Kannel.
    let sip = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = "STOP please";
    let req = format!(
        "MESSAGE sip:smsc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-k1\r\nMax-Forwards: 70\r\n\
         From: <sip:IMSI001010000000002@127.0.0.1>;tag=k1\r\nTo: <sip:7777@127.0.0.1>\r\nCall-ID: kannel-mo-1\r\n\
         CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        me = sip.local_addr().unwrap()
    );
    sip.send_to(req.as_bytes(), serve.sip).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sip.recv_from(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("SIP/2.0 202"), "{answer}");
    // The receipt smsmta sent for Kannel's submit_sm (registered_delivery from dlr-mask)
    // reached smsbox, which calls the dlr-url with status 1 (delivered to the phone).
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| l.starts_with("GET /dlr?status=1")) {
        match mo_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "no delivery report reached Kannel's dlr-url; seen {seen:?}; bearerbox log:\n{}",
                std::fs::read_to_string(kdir.join("bearerbox.log")).unwrap_or_default()
            ),
        }
    }
    let early = seen.iter().find(|l| l.starts_with("GET /mo")).cloned();
    let got = early
        .map_or_else(|| mo_rx.recv_timeout(Duration::from_secs(30)), Ok)
        .unwrap_or_else(|_| {
            panic!(
                "smsbox did not call the MO URL; smsbox log:\n{}",
                std::fs::read_to_string(kdir.join("smsbox.log")).unwrap_or_default()
            )
        });
    assert!(got.contains("to=7777&"), "a short code, not +7777: {got}");
    assert!(
        got.contains("from=15551234567") || got.contains("from=%2B15551234567"),
        "{got}"
    );
    assert!(got.contains("STOP"), "{got}");
    drop(serve);
}
