//! The server started on sockets handed in (`app::start_with`), as a supervisor or socket
//! activation would: it answers on those sockets, whatever the configuration's addresses say.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use smsmta::app::{self, Sockets};
use smsmta::config::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[tokio::test]
async fn a_server_started_on_sockets_handed_in_answers_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "domains = [\"sms.test\"]\nhostname = \"mta.test\"\nspool_dir = \"{}\"\nshutdown_timeout = \"5s\"\n\
         [sip]\nlisten = \"127.0.0.1:9\"\n[smtp]\nlisten = \"127.0.0.1:9\"\n[delivery]\nenabled = false\n",
        dir.path().join("spool").display()
    );
    let cfg = Config::parse(&toml, "test.toml").unwrap();
    // Sockets of the test's own, on other loopback addresses than the configuration names.
    let udp = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let tcp = TcpListener::bind(udp.local_addr().unwrap()).await.unwrap();
    let smtp = TcpListener::bind("127.0.0.3:0").await.unwrap();
    let (sip_addr, smtp_addr) = (udp.local_addr().unwrap(), smtp.local_addr().unwrap());
    let running = app::start_with(
        cfg,
        Sockets {
            sip_udp: udp,
            sip_tcp: tcp,
            smtp,
            submission: None,
            smpp: None,
            metrics: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(running.sip_udp, sip_addr);
    assert_eq!(running.smtp, smtp_addr);

    let c = TcpStream::connect(smtp_addr).await.unwrap();
    let (r, mut w) = c.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(line.starts_with("220 mta.test"), "{line}");
    w.write_all(b"QUIT\r\n").await.unwrap();

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = client.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:mta.test SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKapp1\r\n\
         From: <sip:t@test>;tag=1\r\nTo: <sip:mta.test>\r\nCall-ID: app-1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    client.send_to(options.as_bytes(), sip_addr).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, sip_addr);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 "), "{answer}");
    running.shutdown().await;
}
