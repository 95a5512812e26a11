//! Mail to SMS text (MIME parsing, DSN summaries, status-report headers, quote stripping) and
//! the notice rules never panic on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use smsmta::delivery::{notice, text};
use smsmta::spool::OriginKind;

fuzz_target!(|data: &[u8]| {
    let domains = vec!["sms.test".to_string()];
    let opts = text::TextOptions {
        local_domains: &domains,
        email_sender: "Email",
        notice_sender: "101",
        subject_line: true,
        strip_quotes: true,
        trusted: data.first().is_some_and(|b| b & 1 == 1),
    };
    let c = text::sms_content(data, "a@example.org", &opts);
    let _ = smsmta::sms::segment::segment(&c.text, &Default::default());
    let _ = notice::should_notify("a@example.org", &OriginKind::Smtp, data, &domains);
    let _ = notice::report_request(data);
});
