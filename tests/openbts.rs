//! smsmta in place of smqueue beside a stock OpenBTS, over loopback: the OpenBTS subscriber
//! registry is a real sqlite file with the schema sipauthserve writes (`sip_buddies`,
//! `dialdata_table`), each "BTS" is a test SIP peer on its own loopback address (127.0.0.2,
//! 127.0.0.3), and smsmta is never sent a REGISTER.
//!
//! Pinned here: each text goes to the BTS its handset last registered at; a handset that was
//! away gets its texts within 2 s of its registry row changing; a locked registry gives
//! retries (503, deferral), never 403 or a bounce; outgoing Via and Contact carry a routable
//! address on a wildcard listener; the duplicate window survives a restart; short codes.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Env;
use peers::SipPeer;
use rusqlite::Connection;
use smsmta::spool::{Queue, Spool};
use tokio::net::UdpSocket;

const A: &str = "5550001";
const A_IMSI: &str = "001010000000001";
const B: &str = "5550002";
const B_IMSI: &str = "001010000000002";

/// An OpenBTS registry with sipauthserve's columns (those smsmta reads, and a few more).
fn openbts_db(path: &Path, rows: &[(&str, &str, SocketAddr)]) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS DIALDATA_TABLE (id INTEGER PRIMARY KEY, exten VARCHAR(40) NOT NULL DEFAULT '', dial VARCHAR(128) NOT NULL DEFAULT '');
         CREATE TABLE IF NOT EXISTS SIP_BUDDIES (id integer primary key, name VARCHAR(80) not null, context VARCHAR(80),
            host VARCHAR(31) default '' not null, type VARCHAR(10) DEFAULT 'friend' not null, callerid VARCHAR(80),
            ipaddr VARCHAR(45), port int(5) DEFAULT 0, username VARCHAR(80), regseconds int(11) DEFAULT 0 not null,
            RRLPSupported int(1) default 1 not null, hardware VARCHAR(20), regTime INTEGER default 0 NOT NULL);",
    )
    .unwrap();
    for (imsi, number, at) in rows {
        c.execute(
            "INSERT INTO sip_buddies (name, username, context, host, callerid, ipaddr, port, regTime) VALUES (?1, ?1, 'phones', 'dynamic', ?2, ?3, ?4, 1)",
            rusqlite::params![format!("IMSI{imsi}"), number, at.ip().to_string(), at.port()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO dialdata_table (exten, dial) VALUES (?1, ?2)",
            rusqlite::params![number, format!("IMSI{imsi}")],
        )
        .unwrap();
    }
}

/// What sipauthserve does when OpenBTS registers a handset: its row rewritten.
fn registered(path: &Path, imsi: &str, at: SocketAddr) {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute(
        "UPDATE sip_buddies SET ipaddr = ?2, port = ?3, regTime = regTime + 1 WHERE name = ?1",
        rusqlite::params![format!("IMSI{imsi}"), at.ip().to_string(), at.port()],
    )
    .unwrap();
}

async fn env_with(obts: &Path, bts: SocketAddr, extra: &str) -> Env {
    Env::start(&format!(
        "[registry]\nopenbts_path = \"{}\"\nopenbts_poll = \"100ms\"\nopenbts_busy_timeout = \"200ms\"\n\
         [delivery]\nbts = \"{bts}\"\nhandset_backoff_min = \"1s\"\nhandset_backoff_max = \"1s\"\n{extra}",
        obts.display()
    ))
    .await
}

/// Sends `req` (with `{local}` the sending socket's address) and returns the first line of
/// the response.
async fn transact(server: SocketAddr, req: impl Fn(SocketAddr) -> String) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(req(local).as_bytes(), server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
    resp.lines().next().unwrap_or_default().to_string()
}

/// A text/plain MESSAGE from handset `imsi` to `to`, as OpenBTS sends it; `call` names the
/// transaction (Call-ID, From tag).
fn message(
    server: SocketAddr,
    local: SocketAddr,
    imsi: &str,
    to: &str,
    call: &str,
    text: &str,
) -> String {
    format!(
        "MESSAGE sip:{to}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call}{}\r\nFrom: IMSI{imsi} <sip:IMSI{imsi}@127.0.0.1>;tag={call}\r\nTo: <sip:{to}@{server}>\r\nCall-ID: {call}@127.0.0.1\r\nCSeq: 7 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
        local.port(),
        text.len()
    )
}

async fn send_text(server: SocketAddr, imsi: &str, to: &str, text: &str) -> String {
    let call = format!("c{}", std::process::id() ^ rand_u32());
    transact(server, |local| {
        message(server, local, imsi, to, &call, text)
    })
    .await
}

fn rand_u32() -> u32 {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(2_654_435_761)
}

fn tempdb() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sqlite3.db");
    (d, p)
}

#[tokio::test]
async fn each_text_goes_to_the_bts_its_handset_last_registered_at() {
    let mut bts2 = SipPeer::start_at("127.0.0.2:0", Box::new(|_| 200)).await;
    let mut bts3 = SipPeer::start_at("127.0.0.3:0", Box::new(|_| 200)).await;
    let mut default = SipPeer::ok().await;
    let (_d, obts) = tempdb();
    openbts_db(&obts, &[(A_IMSI, A, bts2.addr), (B_IMSI, B, bts3.addr)]);
    let e = env_with(&obts, default.addr, "").await;

    // Handset A texts B and B texts A; both are known only to the OpenBTS registry.
    assert!(
        send_text(e.udp(), A_IMSI, B, "to B at .3")
            .await
            .starts_with("SIP/2.0 202")
    );
    assert!(
        send_text(e.udp(), B_IMSI, A, "to A at .2")
            .await
            .starts_with("SIP/2.0 202")
    );

    let at3 = bts3.next(10).await;
    assert_eq!(at3.plain.as_deref(), None);
    assert_eq!(at3.deliver.unwrap().user_data.body.text(), "to B at .3");
    assert!(
        at3.uri.starts_with(&format!("sip:IMSI{B_IMSI}@127.0.0.3:")),
        "{}",
        at3.uri
    );
    let at2 = bts2.next(10).await;
    assert_eq!(at2.deliver.unwrap().user_data.body.text(), "to A at .2");
    assert!(
        at2.uri.starts_with(&format!("sip:IMSI{A_IMSI}@127.0.0.2:")),
        "{}",
        at2.uri
    );
    // The sender is the caller ID from sip_buddies.
    assert!(at2.from.contains(B), "{}", at2.from);

    // The configured BTS got nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), default.rx.recv())
            .await
            .is_err()
    );
    e.stop().await;
}

#[tokio::test]
async fn away_handset_gets_its_texts_within_2s_of_its_registry_row_changing() {
    let back = Arc::new(AtomicBool::new(false));
    let b = Arc::clone(&back);
    let mut bts = SipPeer::start_at(
        "127.0.0.2:0",
        Box::new(move |_| if b.load(Ordering::SeqCst) { 200 } else { 480 }),
    )
    .await;
    let (_d, obts) = tempdb();
    openbts_db(&obts, &[(A_IMSI, A, bts.addr), (B_IMSI, B, bts.addr)]);
    // Backoff of 10 minutes: only the registry watch can bring the text out in time.
    let e = Env::start(&format!(
        "[registry]\nopenbts_path = \"{}\"\nopenbts_poll = \"100ms\"\n\
         [delivery]\nbts = \"{}\"\nhandset_backoff_min = \"10m\"\nhandset_backoff_max = \"10m\"\n",
        obts.display(),
        bts.addr
    ))
    .await;
    assert!(
        send_text(e.udp(), B_IMSI, A, "while you were away")
            .await
            .starts_with("SIP/2.0 202")
    );
    let first = bts.next(10).await;
    assert_eq!(first.status, 480);

    // The handset attaches again: OpenBTS registers it with sipauthserve, never with smsmta.
    tokio::time::sleep(Duration::from_millis(300)).await;
    back.store(true, Ordering::SeqCst);
    let t = Instant::now();
    registered(&obts, A_IMSI, bts.addr);
    let again = bts.next(5).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.deliver.unwrap().user_data.body.text(),
        "while you were away"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    e.stop().await;
}

#[tokio::test]
async fn a_locked_openbts_registry_gives_retries_never_403_or_a_bounce() {
    let mut bts = SipPeer::ok().await;
    let (_d, obts) = tempdb();
    openbts_db(&obts, &[(A_IMSI, A, bts.addr), (B_IMSI, B, bts.addr)]);
    // RCPT does not consult the registry here, so that the mail below reaches delivery while
    // the registry is locked (with the check, RCPT would answer 451: also temporary).
    let e = env_with(&obts, bts.addr, "[smtp]\nregistry_authoritative = false\n").await;

    // Another writer (sipauthserve) holds the database for 3 s.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let p = obts.clone();
    let writer = std::thread::spawn(move || {
        let c = Connection::open(&p).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        c.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let t = Instant::now();

    // MO while locked: a temporary refusal (OpenBTS tells the handset to try again), not 403.
    let status = send_text(e.udp(), A_IMSI, B, "sent while locked").await;
    assert!(status.starts_with("SIP/2.0 503"), "{status}");

    // MT while locked: accepted by SMTP, deferred by delivery, delivered after the lock.
    let reply = common::smtp_transaction(
        e.smtp(),
        "alice@example.org",
        &format!("{A}@sms.test"),
        "Subject: hi\r\n\r\nmail while locked\r\n",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = bts.next(15).await;
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "delivered while the registry was locked?"
    );
    assert!(got.uri.contains(A_IMSI), "{}", got.uri);
    assert!(
        got.deliver
            .unwrap()
            .user_data
            .body
            .text()
            .contains("mail while locked")
    );
    writer.join().unwrap();

    // After the lock the same MO goes through, and nothing was bounced.
    let status = send_text(e.udp(), A_IMSI, B, "sent after the lock").await;
    assert!(status.starts_with("SIP/2.0 202"), "{status}");
    let next = bts.next(10).await;
    assert_eq!(
        next.deliver.unwrap().user_data.body.text(),
        "sent after the lock"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), bts.rx.recv())
            .await
            .is_err(),
        "a notice or bounce was sent"
    );
    e.stop().await;
}

async fn via_and_contact_towards(
    listen: &str,
    peer_bind: &str,
    advertise: Option<&str>,
) -> (String, String) {
    let mut bts = SipPeer::start_at(peer_bind, Box::new(|_| 200)).await;
    let listen: SocketAddr = listen.parse().unwrap();
    let adv = advertise.map(|a| a.parse().unwrap());
    let e = Env::start_with(
        &format!("[delivery]\nbts = \"{}\"\n", bts.addr),
        move |cfg| {
            cfg.sip.listen = listen;
            cfg.sip.advertise = adv;
        },
    )
    .await;
    e.add_subscriber(A, A_IMSI).await;
    let reply = common::smtp_transaction(
        e.smtp(),
        "bob@example.org",
        &format!("{A}@sms.test"),
        "Subject: hi\r\n\r\nhello\r\n",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = bts.next(10).await;
    e.stop().await;
    (got.via, got.contact)
}

#[tokio::test]
async fn wildcard_listener_names_a_routable_address_in_via_and_contact() {
    // 0.0.0.0: the kernel's source address towards the BTS at 127.0.0.2.
    let (via, contact) = via_and_contact_towards("0.0.0.0:0", "127.0.0.2:0", None).await;
    assert!(
        via.starts_with("SIP/2.0/UDP 127.0.0.") && !via.contains("0.0.0.0"),
        "{via}"
    );
    assert!(
        contact.contains("@127.0.0.") && !contact.contains("0.0.0.0"),
        "{contact}"
    );
    // [sip] advertise wins.
    let (via, contact) =
        via_and_contact_towards("0.0.0.0:0", "127.0.0.1:0", Some("127.0.0.9")).await;
    assert!(via.starts_with("SIP/2.0/UDP 127.0.0.9:"), "{via}");
    assert!(contact.contains("@127.0.0.9:"), "{contact}");
    // ::, towards a BTS on ::1.
    let (via, contact) = via_and_contact_towards("[::]:0", "[::1]:0", None).await;
    assert!(via.starts_with("SIP/2.0/UDP [::1]:"), "{via}");
    assert!(contact.contains("@[::1]:"), "{contact}");
}

#[test]
fn the_same_message_before_and_after_a_restart_makes_one_sms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(dir.path(), common::LOOPBACK);
    common::add_subscriber(&cfg, A, A_IMSI);
    common::add_subscriber(&cfg, B, B_IMSI);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |server: SocketAddr| {
        rt.block_on(transact(server, |local| {
            message(server, local, A_IMSI, B, "resent-1", "only once")
        }))
    };
    let s = common::Serve::start(&cfg);
    assert!(send(s.sip).starts_with("SIP/2.0 202"));
    // The duplicate window is written within 50 ms of the answer; then the server dies.
    std::thread::sleep(Duration::from_millis(500));
    s.kill();
    let s = common::Serve::start(&cfg);
    let again = send(s.sip);
    assert!(again.starts_with("SIP/2.0 202"), "{again}");
    let (st, _) = s.stop();
    assert!(st.success());
    let spool = Spool::open(dir.path().join("spool"), 1 << 24).unwrap();
    let n: usize = Queue::MESSAGE_QUEUES
        .iter()
        .map(|q| spool.list(*q).unwrap().len())
        .sum();
    assert_eq!(n, 1, "the resend after the restart was queued again");
}

#[tokio::test]
async fn short_code_101_claims_a_number_and_411_answers() {
    const C_IMSI: &str = "001010000000077";
    let mut bts = SipPeer::ok().await;
    let e = Env::start(&format!("[delivery]\nbts = \"{}\"\n", bts.addr)).await;

    // An IMSI nobody knows may text 101 (and nothing else).
    let refused = send_text(e.udp(), C_IMSI, "15551234567", "hello").await;
    assert!(refused.starts_with("SIP/2.0 403"), "{refused}");
    assert!(
        send_text(e.udp(), C_IMSI, "101", "555-7777")
            .await
            .starts_with("SIP/2.0 202")
    );
    let welcome = bts.next(10).await;
    assert!(welcome.uri.contains(C_IMSI), "{}", welcome.uri);
    let text = welcome.deliver.unwrap().user_data.body.text();
    assert!(text.contains("5557777"), "{text}");
    let sub = e
        .running
        .as_ref()
        .unwrap()
        .registry
        .call(|db| db.by_msisdn("5557777"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.imsi.as_deref(), Some(C_IMSI));

    // Now known: a second claim says "already", 411 gives the status line.
    assert!(
        send_text(e.udp(), C_IMSI, "101", "5558888")
            .await
            .starts_with("SIP/2.0 202")
    );
    let already = bts.next(10).await.deliver.unwrap().user_data.body.text();
    assert!(
        already.contains("already") && already.contains("5557777"),
        "{already}"
    );
    assert!(
        send_text(e.udp(), C_IMSI, "411", "status?")
            .await
            .starts_with("SIP/2.0 202")
    );
    let info = bts.next(10).await;
    let info_text = info.deliver.unwrap().user_data.body.text();
    assert!(
        info_text.contains(C_IMSI) && info_text.contains("5557777") && info_text.contains("queued"),
        "{info_text}"
    );
    // The reply comes from the code.
    assert!(info.from.contains("411@"), "{}", info.from);
    e.stop().await;
}

#[tokio::test]
async fn a_short_code_that_is_off_is_an_ordinary_destination() {
    let e = Env::start("[[short_codes]]\ncode = \"2337\"\nservice = \"queued\"\nenabled = false\n")
        .await;
    e.add_subscriber(A, A_IMSI).await;
    assert!(
        send_text(e.udp(), A_IMSI, "2337", "just a number")
            .await
            .starts_with("SIP/2.0 202")
    );
    let files = e.spooled(1).await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].envelope.recipients[0].address, "2337@sms.test");
    e.stop().await;
}
