//! The whole SIP door: arbitrary bytes as a datagram (from a trusted or an untrusted source,
//! by the first byte) through `sip::Service::handle` (parser, trust, transactions, MESSAGE
//! intake, REGISTER, short codes) into the spool, then every spooled message through
//! routing and mail-to-text as delivery would read it. Asserts no panic; every request that
//! gets an answer gets a parseable SIP response.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use smsmta::config::Config;
use smsmta::delivery::route;
use smsmta::mail::to_sms as text;
use smsmta::registry::{Registry, Subscriber};
use smsmta::sip::message::{self, Message, Parsed};
use smsmta::sip::Transport;
use smsmta::sip::service::Service;
use smsmta::spool::{Queue, Spool, Writer};

struct Door {
    rt: tokio::runtime::Runtime,
    service: Service,
    spool: Arc<Spool>,
    cfg: Arc<Config>,
    _dir: tempfile::TempDir,
}

fn door() -> &'static Door {
    static DOOR: OnceLock<Door> = OnceLock::new();
    DOOR.get_or_init(|| {
        // On tmpfs when there is one: the commits' fsyncs cost nothing there.
        let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
        let dir = tempfile::tempdir_in(base).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut cfg = Config::default();
        cfg.spool_dir = dir.path().join("spool");
        cfg.domains = vec!["sms.test".into()];
        let cfg = Arc::new(cfg);
        let spool = Arc::new(Spool::open(&cfg.spool_dir, cfg.spool.max_message_size.0).unwrap());
        let registry = Registry::open(dir.path().join("r.sqlite"), None).unwrap();
        let service = rt.block_on(async {
            registry
                .call(|db| {
                    db.upsert(&Subscriber {
                        msisdn: "15551230000".into(),
                        imsi: Some("001010000000001".into()),
                        email: None,
                        enabled: true,
                    })
                })
                .await
                .unwrap();
            let (tx, _) = tokio::sync::broadcast::channel(16);
            Service::new(Arc::clone(&cfg), Writer::direct(Arc::clone(&spool)), registry, tx)
        });
        Door { rt, service, spool, cfg, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let d = door();
    let (flags, req) = data.split_first().unwrap_or((&0, &[]));
    let peer = if flags & 1 == 0 { "127.0.0.1:5062" } else { "192.0.2.9:5062" };
    let transport = if flags & 2 == 0 { Transport::Udp } else { Transport::Tcp };
    let answer = d.rt.block_on(d.service.handle(req, peer.parse().unwrap(), transport));
    if let Some(a) = answer {
        match message::parse(&a, true, 1 << 20) {
            Ok(Parsed::Complete(Message::Response(_), _)) => {}
            other => panic!("the door answered something that is not a response: {other:?}"),
        }
    }
    // Whatever was queued goes through routing and mail-to-text, then away.
    for id in d.spool.list(Queue::Incoming).unwrap_or_default() {
        if let Ok(f) = d.spool.read(Queue::Incoming, id) {
            for r in &f.envelope.recipients {
                if let Some(route::Dest::Handset(k)) = route::classify(&r.address, &d.cfg.domains) {
                    let _ = route::handset(&k, None, &[], None, route::Bts { addr: "127.0.0.1:5062".parse().unwrap(), transport: smsmta::sip::Transport::Udp }, smsmta::config::EmailMode::Copy);
                }
            }
            let opts = text::TextOptions {
                local_domains: &d.cfg.domains,
                email_sender: "Email",
                notice_sender: "101",
                subject_line: true,
                strip_quotes: true,
                trusted: true,
                sender_number: None,
            };
            let c = text::sms_content(&f.message, &f.envelope.sender, &opts);
            let _ = smsmta::sms::segment::segment(&c.text, &Default::default());
            let _ = smsmta::mail::provenance::for_outside(&f.message);
        }
        let _ = d.spool.remove(Queue::Incoming, id);
    }
});
