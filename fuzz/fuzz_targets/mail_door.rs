//! The whole mail door after the SMTP session: arbitrary bytes as a message taken over SMTP
//! (control headers stripped at intake, our Received line on top) through mail-to-text as
//! delivery reads it (untrusted: no local originator, no reports), segmentation, the notice
//! rules, and the copy that would leave for another domain. Asserts no panic, and that
//! nothing smsmta removed at intake comes back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::delivery::{notice, route};
use smsmta::mail::to_sms as text;
use smsmta::mail::provenance;
use smsmta::smtp::policy::{self, NumberRules};
use smsmta::spool::{Origin, OriginKind};

fuzz_target!(|data: &[u8]| {
    let domains = vec!["sms.test".to_string()];
    let stripped = provenance::strip_control_headers(data);
    assert_eq!(provenance::strip_control_headers(&stripped), stripped);
    let mut message = b"Received: from client by mta.test (smsmta) with ESMTP id X;\r\n\tMon, 1 Dec 2026 00:00:00 +0000\r\n".to_vec();
    message.extend_from_slice(&stripped);
    let opts = text::TextOptions {
        local_domains: &domains,
        email_sender: "Email",
        notice_sender: "101",
        subject_line: true,
        strip_quotes: true,
        trusted: false,
        sender_number: None,
    };
    let c = text::sms_content(&message, "a@example.org", &opts);
    assert!(c.report.is_none(), "outside mail became a status report");
    assert_eq!(c.originator, "Email", "outside mail borrowed an originator");
    let _ = smsmta::sms::segment::segment(&c.text, &Default::default());
    let _ = notice::should_notify("15551230000@sms.test", &Origin { kind: OriginKind::Smtp, peer: String::new(), sender_number: None }, &message, &domains);
    let _ = provenance::for_outside(&message);
    // The first line, as a recipient, through the RCPT policy and routing.
    let first = String::from_utf8_lossy(data.split(|b| *b == b'\n').next().unwrap_or_default()).into_owned();
    let rules = NumberRules { country_code: "1".into(), national_prefix: "0".into() };
    let _ = policy::judge(&first, &domains, true, &rules);
    let _ = route::classify(&first, &domains);
});
