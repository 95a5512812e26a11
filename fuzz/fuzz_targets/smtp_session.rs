//! The SMTP session, fed arbitrary bytes cut into lines, never panics; commits, TLS and AUTH
//! steps are answered as the listener would.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::smtp::policy::NumberRules;
use smsmta::smtp::session::{Session, SessionConfig, Step};

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let cfg = SessionConfig {
        hostname: "mta.test".into(),
        domains: vec!["sms.test".into()],
        trusted: flags & 1 == 1,
        max_message_size: 4096,
        max_recipients: 5,
        max_errors: 20,
        rules: NumberRules { country_code: "1".into(), national_prefix: "0".into() },
        registry_authoritative: flags & 2 == 2,
        tls_available: flags & 4 == 4,
        auth_available: flags & 8 == 8,
        auth_required: flags & 16 == 16,
        users: std::sync::Arc::new(Vec::new()),
    };
    let mut s = Session::new(cfg, "192.0.2.1".parse().unwrap());
    let _ = s.greeting();
    for (i, raw) in data.split(|b| *b == b'\n').enumerate() {
        let bare_lf = !raw.ends_with(b"\r");
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let step = s.line(line, line.len() > 2000, bare_lf);
        match step {
            Step::Commit(_) => { let _ = s.committed(if i % 2 == 0 { Ok("ID".into()) } else { Err(smsmta::smtp::session::CommitError::Failed) }); }
            Step::CheckSubscriber { address, .. } => { let _ = s.recipient_checked(address, i % 2 == 0); }
            Step::StartTls(_) => s.tls_started(),
            Step::Authenticate { user, .. } => { let _ = s.auth_result(user, i % 3 == 0); }
            Step::Close(_) => break,
            Step::Reply(_) => {}
        }
    }
});
