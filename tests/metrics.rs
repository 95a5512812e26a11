//! The Prometheus endpoint over real sockets: counters move by exactly the traffic sent
//! (three mails in, three texts delivered to a fake BTS handset, one MESSAGE refused),
//! `/healthz` says ok, anything else is refused. The interop test (ignored by plain `cargo
//! test`, run by tests/run-all.sh) checks the exposition with `promtool check metrics` and
//! has a real Prometheus server scrape it and answer a query for the delivered count; it fails,
//! naming the peer, when Prometheus (Debian package prometheus) is missing.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PEER: &str =
    "Prometheus and promtool (Debian package prometheus; tests/run-all.sh installs it)";

async fn server(dir: &std::path::Path, handset: SocketAddr) -> common::Serve {
    let cfg = common::config(
        dir,
        &format!(
            "{}[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[delivery]\nbts = \"{handset}\"\n",
            common::LOOPBACK
        ),
    );
    common::add_subscriber_quietly(&cfg, "15551234567", "001010000000001");
    common::Serve::start(&cfg)
}

async fn scrape(addr: SocketAddr) -> String {
    let (code, body) = tokio::task::spawn_blocking(move || common::http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

/// Sends three mails to the subscriber and waits for the three texts at the handset.
async fn traffic(serve: &common::Serve, handset: &mut peers::SipPeer) {
    for i in 0..3 {
        let r = common::smtp_transaction(
            serve.smtp,
            "alice@example.org",
            "15551234567@sms.test",
            &format!("Subject: n{i}\r\n\r\nhello {i}\r\n"),
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
    }
    for _ in 0..3 {
        handset.next(20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_the_traffic_sent_and_healthz_says_ok() {
    let dir = tempfile::tempdir().unwrap();
    let mut handset = peers::SipPeer::ok().await;
    let serve = server(dir.path(), handset.addr).await;
    let m = serve
        .metrics
        .expect("the ready line names the metrics address");
    assert!(m.ip().is_loopback());
    let before = scrape(m).await;
    traffic(&serve, &mut handset).await;
    // A MESSAGE from an IMSI nobody knows, to nobody: refused (and counted as such).
    let sip = serve.sip;
    let answer = common::sip_udp_request(sip, |me| format!(
        "MESSAGE sip:nobody@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:IMSI999990000000001@{sip}>;tag=m1\r\nTo: <sip:nobody@{sip}>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    ))
    .await;
    assert!(!answer.starts_with("SIP/2.0 202"), "{answer}");

    // The delivery lines are written after the SIP 200: wait for the counters, a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let a = scrape(m).await;
        if common::sample(&a, "smsmta_deliveries_total{agent=\"sip\",status=\"sent\"}") >= 3.0
            || Instant::now() > deadline
        {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let moved = |name: &str| common::sample(&after, name) - common::sample(&before, name);
    assert_eq!(
        moved("smsmta_messages_received_total{door=\"smtp\",result=\"accepted\"}"),
        3.0,
        "{after}"
    );
    assert_eq!(
        moved("smsmta_messages_received_total{door=\"sip\",result=\"rejected\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        moved("smsmta_messages_received_total{door=\"sip\",result=\"accepted\"}"),
        0.0
    );
    assert_eq!(
        moved("smsmta_rejections_total{door=\"sip\",reason=\"auth\"}"),
        1.0,
        "an IMSI nobody knows is refused as a sender: {after}"
    );
    assert_eq!(
        moved("smsmta_deliveries_total{agent=\"sip\",status=\"sent\"}"),
        3.0,
        "{after}"
    );
    assert_eq!(
        moved("smsmta_deliveries_total{agent=\"sip\",status=\"deferred\"}"),
        0.0
    );
    assert_eq!(
        moved("smsmta_delivery_delay_seconds_count{agent=\"sip\"}"),
        3.0,
        "{after}"
    );
    assert!(moved("smsmta_journal_flushes_total") >= 1.0, "{after}");
    assert!(
        moved("smsmta_journal_flushes_total") <= 3.0,
        "one flush per mail at most"
    );
    assert!(moved("smsmta_journal_batch_size_sum") == 3.0, "{after}");
    assert!(after.contains("smsmta_build_info{version=\""), "{after}");
    assert!(
        after.contains("smsmta_queue_messages{queue=\"deferred\"} 0"),
        "{after}"
    );
    assert!(
        after.contains("# TYPE smsmta_deliveries_total counter"),
        "without Accept: openmetrics, the Prometheus text format"
    );

    let (code, body) = tokio::task::spawn_blocking(move || common::http_get(m, "/healthz"))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = tokio::task::spawn_blocking(move || common::http_get(m, "/../etc/passwd"))
        .await
        .unwrap();
    assert_eq!(code, 404);
    // A request that never ends its head is cut off (5 s), and the endpoint still answers.
    let mut slow = std::net::TcpStream::connect(m).unwrap();
    std::io::Write::write_all(&mut slow, b"GET /metrics HTTP/1.1\r\n").unwrap();
    let (code, _) = tokio::task::spawn_blocking(move || common::http_get(m, "/healthz"))
        .await
        .unwrap();
    assert_eq!(code, 200, "a slow client does not block the others");
    drop(slow);
}

/// One SMTP command on an open session: the last line of the reply.
fn say(
    r: &mut std::io::BufReader<std::net::TcpStream>,
    w: &mut std::net::TcpStream,
    cmd: &str,
) -> String {
    use std::io::{BufRead, Write};
    if !cmd.is_empty() {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    }
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_count_by_reason_and_the_connection_gauge_follows_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    // Loopback is not trusted for relay here.
    let cfg = common::config(
        dir.path(),
        &format!(
            "{}trusted_networks = [\"10.9.0.0/16\"]\nmax_message_size = \"64KiB\"\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
            common::LOOPBACK
        ),
    );
    common::add_subscriber_quietly(&cfg, "15551234567", "001010000000001");
    let serve = common::Serve::start(&cfg);
    let m = serve.metrics.unwrap();
    let before = scrape(m).await;
    let smtp = serve.smtp;
    let after_open = tokio::task::spawn_blocking(move || {
        let s = std::net::TcpStream::connect(smtp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut r, mut w) = (std::io::BufReader::new(s.try_clone().unwrap()), s);
        assert!(say(&mut r, &mut w, "").starts_with("220"));
        assert!(say(&mut r, &mut w, "EHLO c.test").starts_with("250"));
        assert!(say(&mut r, &mut w, "MAIL FROM:<a@example.org> SIZE=999999").starts_with("552"));
        assert!(say(&mut r, &mut w, "MAIL FROM:<a@example.org>").starts_with("250"));
        assert!(say(&mut r, &mut w, "RCPT TO:<x@elsewhere.example>").starts_with("554"));
        assert!(say(&mut r, &mut w, "RCPT TO:<15550000000@sms.test>").starts_with("550"));
        assert!(say(&mut r, &mut w, "RCPT TO:<15551234567@sms.test>").starts_with("250"));
        // Scraped while this session is open.
        let open = common::http_get(m, "/metrics").1;
        assert!(say(&mut r, &mut w, "QUIT").starts_with("221"));
        open
    })
    .await
    .unwrap();
    let gauge = |text: &str| common::sample(text, "smsmta_connections{door=\"smtp\"}");
    assert_eq!(gauge(&after_open) - gauge(&before), 1.0, "{after_open}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let a = scrape(m).await;
        if gauge(&a) == gauge(&before) || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        gauge(&after),
        gauge(&before),
        "the closed session is no longer counted"
    );
    let moved = |name: &str| common::sample(&after, name) - common::sample(&before, name);
    for (reason, n) in [
        ("size", 1.0),
        ("relay", 1.0),
        ("recipient", 1.0),
        ("auth", 0.0),
    ] {
        assert_eq!(
            moved(&format!(
                "smsmta_rejections_total{{door=\"smtp\",reason=\"{reason}\"}}"
            )),
            n,
            "{reason}: {after}"
        );
    }
    for series in [
        "smsmta_transactions_in_flight{door=\"smtp\"} 0",
        "smsmta_smpp_binds{role=\"esme\"} 0",
        "smsmta_smpp_window_used{role=\"upstream\"} 0",
        "smsmta_journal_unmaterialized ",
    ] {
        assert!(after.contains(series), "{series}: {after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs Prometheus and promtool; run by tests/run-all.sh"]
async fn promtool_accepts_the_exposition_and_a_real_prometheus_scrapes_the_delivered_count() {
    let have = Command::new("promtool").arg("--version").output().is_ok()
        && Command::new("prometheus").arg("--version").output().is_ok();
    assert!(have, "{PEER} is missing");
    let dir = tempfile::tempdir().unwrap();
    let mut handset = peers::SipPeer::ok().await;
    let serve = server(dir.path(), handset.addr).await;
    let m = serve.metrics.unwrap();
    traffic(&serve, &mut handset).await;
    let exposition = scrape(m).await;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A Prometheus server of the test's own, scraping every second.
    let port = common::free_port();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: smsmta\n    static_configs:\n      - targets: ['{m}']\n"
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", conf.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{PEER}: {e}"));
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query =
        "/api/v1/query?query=smsmta_deliveries_total%7Bagent%3D%22sip%22%2Cstatus%3D%22sent%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let got = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect(api)
                .ok()
                .map(|_| common::http_get(api, query))
        })
        .await
        .unwrap();
        if let Some((200, body)) = got {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(s) = v["data"]["result"][0]["value"][1].as_str() {
                break s.to_string();
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never had the series");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(value, "3", "Prometheus answers the delivered count");
}
