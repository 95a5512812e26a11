//! Mail to SMS text (MIME parsing, DSN summaries, status-report headers, quote stripping) and
//! the notice rules never panic on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::delivery::notice;
use smsmta::mail::to_sms as text;
use smsmta::spool::{Origin, OriginKind};

fuzz_target!(|data: &[u8]| {
    let domains = vec!["sms.test".to_string()];
    let opts = text::TextOptions {
        local_domains: &domains,
        email_sender: "Email",
        notice_sender: "101",
        subject_line: true,
        strip_quotes: true,
        trusted: data.first().is_some_and(|b| b & 1 == 1),
        sender_number: data.first().is_some_and(|b| b & 2 == 2).then_some("2337"),
    };
    let c = text::sms_content(data, "a@example.org", &opts);
    let _ = smsmta::sms::segment::segment(&c.text, &Default::default());
    let _ = notice::should_notify("a@example.org", &Origin { kind: OriginKind::Smtp, peer: String::new(), sender_number: None }, data, &domains);
    let _ = notice::report_request(data);
});
