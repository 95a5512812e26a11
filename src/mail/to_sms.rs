//! Mail -> SMS: what a handset sees of a queued mail. Pure.
//!
//! * The text: the text/plain part (mail-parser decodes any charset and transfer encoding),
//!   else the HTML part turned into text; quoted replies and signatures stripped when
//!   configured; the Subject as a first line for mail from e-mail addresses, when configured.
//! * The originator: the sender's number for mail from a handset (a local SMS domain); for
//!   mail from an e-mail address, the configured short code or alphanumeric sender, and the
//!   address starts the text (`alice@example.org: hello`) so that the handset can reply by
//!   starting its text with the address (smqueue's convention, which the SIP front door
//!   follows).
//! * A delivery status notification (multipart/report; report-type=delivery-status) becomes
//!   one short line naming the failed recipient and the reason, from the notice sender.
//! * A status report that smsmta queued for a handset (`X-SMS-Report-*` headers) is returned
//!   as such, for the SIP agent to send as SMS-STATUS-REPORT.
//!
//! **Trust.** The mail is untrusted: parsing never panics, missing parts give an empty text.
//!
//! Standards: RFC 5322, RFC 2045-2049 (MIME), RFC 3464 (DSN), RFC 3462 (multipart/report),
//! RFC 3834 (auto-replies).

use mail_parser::{Message, MimeHeaders};

pub use super::facts::ReportFacts;
use super::facts::SmsFacts;

/// How to turn mail into a text.
#[derive(Debug, Clone)]
pub struct TextOptions<'a> {
    /// Our SMS domains.
    pub local_domains: &'a [String],
    /// Originator for mail from e-mail addresses.
    pub email_sender: &'a str,
    /// Originator of notices.
    pub notice_sender: &'a str,
    /// Subject as the first line (mail from e-mail addresses only).
    pub subject_line: bool,
    /// Strip quoted replies and signatures.
    pub strip_quotes: bool,
    /// The message came in over SIP or smsmta made it: its `X-SMS-*` facts (status reports),
    /// DSN form and a local number in `From` are believed. Otherwise (SMTP, local submission)
    /// the text goes out from `email_sender` with the sender's address in it.
    pub trusted: bool,
    /// The number an authenticated SMTP user was allowed to send as (`[[smtp.users]]`
    /// `numbers`): the text goes out from it, as a handset's would, whatever `From` says.
    pub sender_number: Option<&'a str>,
}

/// What the SIP agent sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsContent {
    /// The originator (TP-OA): digits, or letters for an alphanumeric sender.
    pub originator: String,
    /// The text.
    pub text: String,
    /// Set when this is a status report, not a text.
    pub report: Option<ReportFacts>,
}

/// Converts a queued mail (with its envelope sender) into what a handset gets.
pub fn sms_content(raw: &[u8], envelope_sender: &str, opts: &TextOptions<'_>) -> SmsContent {
    sms_content_and_facts(raw, envelope_sender, opts).0
}

/// As [`sms_content`], with the mail's SMS facts read in the same parse.
pub fn sms_content_and_facts(
    raw: &[u8],
    envelope_sender: &str,
    opts: &TextOptions<'_>,
) -> (SmsContent, SmsFacts) {
    let Some(m) = super::parser(true).parse(raw) else {
        let content = SmsContent {
            originator: opts.email_sender.to_string(),
            text: String::from_utf8_lossy(raw).trim().to_string(),
            report: None,
        };
        return (content, SmsFacts::default());
    };
    let facts = SmsFacts::from_message(&m);
    (content_of(&m, &facts, envelope_sender, opts), facts)
}

fn content_of(
    m: &Message<'_>,
    facts: &SmsFacts,
    envelope_sender: &str,
    opts: &TextOptions<'_>,
) -> SmsContent {
    if let Some(r) = facts.report.clone().filter(|_| opts.trusted) {
        return SmsContent {
            originator: opts.notice_sender.to_string(),
            text: format!(
                "Message to {} {}",
                r.recipient,
                if r.status == 0 {
                    "delivered"
                } else {
                    "not delivered"
                }
            ),
            report: Some(r),
        };
    }
    if let Some(summary) = dsn_summary(m).filter(|_| opts.trusted) {
        return SmsContent {
            originator: opts.notice_sender.to_string(),
            text: summary,
            report: None,
        };
    }
    let from = m
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_string)
        .unwrap_or_else(|| envelope_sender.to_string());
    let mut body = m.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
    body = body.replace("\r\n", "\n");
    if opts.strip_quotes {
        body = strip_quotes(&body);
    }
    let body = body.trim().to_string();
    let number = match opts.sender_number {
        Some(n) => Some(n.to_string()),
        None => crate::identity::Msisdn::in_address(&from, opts.local_domains)
            .map(|m| m.digits().to_string())
            .filter(|_| opts.trusted),
    };
    if let Some(number) = number {
        return SmsContent {
            originator: number,
            text: body,
            report: None,
        };
    }
    let mut text = String::new();
    if !from.is_empty() {
        text.push_str(&from);
        text.push_str(": ");
    }
    if opts.subject_line
        && let Some(s) = m.subject().map(str::trim).filter(|s| !s.is_empty())
    {
        text.push_str(s);
        if !body.is_empty() {
            text.push('\n');
        }
    }
    text.push_str(&body);
    SmsContent {
        originator: if from.is_empty() {
            opts.notice_sender.to_string()
        } else {
            opts.email_sender.to_string()
        },
        text,
        report: None,
    }
}

/// Removes quoted lines (`>`), the attribution line before them (`... wrote:`), and everything
/// from a signature delimiter (`-- `) on.
pub fn strip_quotes(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for line in text.lines() {
        let t = line.trim_end();
        if t == "--" || line == "-- " {
            break;
        }
        if t.trim_start().starts_with('>') {
            while out.last().is_some_and(|l| l.trim().is_empty()) {
                out.pop();
            }
            if out.last().is_some_and(|l| l.trim_end().ends_with("wrote:")) {
                out.pop();
            }
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

/// Whether the mail is a delivery status notification (RFC 3464).
pub fn is_dsn(m: &Message<'_>) -> bool {
    m.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    })
}

/// One line for a DSN: "Mail to bob@example.org not delivered: 550 5.1.1 no such user".
fn dsn_summary(m: &Message<'_>) -> Option<String> {
    if !is_dsn(m) {
        return None;
    }
    let status_part = m.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
        })
    });
    let fields = status_part
        .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
        .unwrap_or_default();
    let mut lines = Vec::new();
    for r in parse_dsn_fields(&fields) {
        let verb = match r.action.to_ascii_lowercase().as_str() {
            "delayed" => "delayed",
            "delivered" | "relayed" | "expanded" => "delivered",
            _ => "not delivered",
        };
        let why = if !r.diagnostic.is_empty() {
            r.diagnostic
        } else {
            r.status
        };
        lines.push(if why.is_empty() {
            format!("Mail to {} {verb}", r.recipient)
        } else {
            format!("Mail to {} {verb}: {why}", r.recipient)
        });
    }
    if lines.is_empty() {
        lines.push(format!(
            "Mail not delivered: {}",
            m.subject().unwrap_or("delivery failure")
        ));
    }
    Some(lines.join("\n"))
}

/// Per-recipient facts from a message/delivery-status body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct DsnRecipient {
    recipient: String,
    action: String,
    status: String,
    diagnostic: String,
}

fn parse_dsn_fields(body: &str) -> Vec<DsnRecipient> {
    // Unfold continuation lines, then read "Name: type; value" fields; a per-recipient group
    // starts at Final-Recipient or Original-Recipient.
    let mut unfolded: Vec<String> = Vec::new();
    for line in body.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = unfolded.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            unfolded.push(line.trim_end().to_string());
        }
    }
    let mut out: Vec<DsnRecipient> = Vec::new();
    for line in unfolded {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let typed = value
            .split_once(';')
            .map_or(value, |(_, v)| v.trim())
            .to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "final-recipient" => out.push(DsnRecipient {
                recipient: typed,
                ..DsnRecipient::default()
            }),
            "original-recipient" if out.last().is_none_or(|r| !r.recipient.is_empty()) => {
                out.push(DsnRecipient {
                    recipient: typed,
                    ..DsnRecipient::default()
                })
            }
            "action" => {
                if let Some(r) = out.last_mut() {
                    r.action = value.to_string();
                }
            }
            "status" => {
                if let Some(r) = out.last_mut() {
                    r.status = value.to_string();
                }
            }
            "diagnostic-code" => {
                if let Some(r) = out.last_mut() {
                    r.diagnostic = typed;
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(domains: &[String]) -> TextOptions<'_> {
        TextOptions {
            local_domains: domains,
            email_sender: "Email",
            notice_sender: "101",
            subject_line: true,
            strip_quotes: true,
            trusted: true,
            sender_number: None,
        }
    }

    fn d() -> Vec<String> {
        vec!["sms.example.org".into()]
    }

    #[test]
    fn mail_from_outside_cannot_borrow_a_local_number_or_forge_a_report() {
        let raw = b"From: 15551230000@sms.example.org\r\nTo: 15551234567@sms.example.org\r\nX-SMS-Report-MR: 1\r\nX-SMS-Report-Recipient: 15551234567\r\nX-SMS-Report-Status: 0\r\nX-SMS-Report-Submitted: 1\r\nX-SMS-Report-Discharged: 2\r\nSubject: SMS\r\n\r\nsend me your PIN\r\n";
        let domains = d();
        let mut o = opts(&domains);
        o.trusted = false;
        let c = sms_content(raw, "mallory@evil.example", &o);
        assert_eq!(c.originator, "Email");
        assert!(c.report.is_none());
        assert!(c.text.contains("15551230000@sms.example.org"), "{}", c.text);
        assert!(c.text.contains("send me your PIN"), "{}", c.text);
        // The same message made by smsmta (trusted) is a report.
        assert!(sms_content(raw, "", &opts(&d())).report.is_some());
    }

    #[test]
    fn an_authenticated_user_allowed_a_number_sends_from_it() {
        let raw = b"From: Alerts <ops@example.org>\r\nTo: 15551234567@sms.example.org\r\nX-SMS-Report-MR: 1\r\n\r\nBackup done\r\n";
        let domains = d();
        let mut o = opts(&domains);
        o.trusted = false;
        o.sender_number = Some("2337");
        let c = sms_content(raw, "2337@sms.example.org", &o);
        assert_eq!(c.originator, "2337");
        assert_eq!(c.text, "Backup done");
        assert!(c.report.is_none());
    }

    #[test]
    fn mail_from_a_handset_keeps_its_number_and_text() {
        let raw = b"From: 15551230000@sms.example.org\r\nTo: 15551234567@sms.example.org\r\nSubject: SMS\r\n\r\nhello there\r\n";
        let c = sms_content(raw, "15551230000@sms.example.org", &opts(&d()));
        assert_eq!(c.originator, "15551230000");
        assert_eq!(c.text, "hello there");
        assert_eq!(c.report, None);
    }

    #[test]
    fn mail_from_an_address_starts_with_it_and_its_subject() {
        let raw = b"From: Alice <alice@example.org>\r\nSubject: Lunch?\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nAt 12 in the caf=E9.\r\n\r\nOn Monday Bob wrote:\r\n> old text\r\n> more\r\n\r\n-- \r\nAlice\r\n";
        let c = sms_content(raw, "alice@example.org", &opts(&d()));
        assert_eq!(c.originator, "Email");
        assert_eq!(c.text, "alice@example.org: Lunch?\nAt 12 in the café.");
    }

    #[test]
    fn html_only_mail_becomes_text() {
        let raw = b"From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hi <b>there</b></p></body></html>\r\n";
        let domains = d();
        let mut o = opts(&domains);
        o.subject_line = false;
        let c = sms_content(raw, "a@example.org", &o);
        assert!(c.text.starts_with("a@example.org: "), "{}", c.text);
        assert!(c.text.contains("Hi there"), "{}", c.text);
        assert!(!c.text.contains('<'), "{}", c.text);
    }

    #[test]
    fn dsn_becomes_one_short_line_from_the_notice_sender() {
        let raw = b"From: MAILER-DAEMON@mx.example.org\r\nTo: 15551234567@sms.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nA long human explanation that must not be sent as SMS.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@example.org>:\r\n  user unknown\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n--B--\r\n";
        let c = sms_content(raw, "", &opts(&d()));
        assert_eq!(c.originator, "101");
        assert_eq!(
            c.text,
            "Mail to bob@example.org not delivered: 550 5.1.1 <bob@example.org>: user unknown"
        );
    }

    #[test]
    fn queued_status_report_is_recognised() {
        let raw = b"From: 101@sms.example.org\r\nX-SMS-Report-MR: 84\r\nX-SMS-Report-Recipient: 15551234567\r\nX-SMS-Report-Status: 0\r\nX-SMS-Report-Submitted: 1764000000\r\nX-SMS-Report-Discharged: 1764000060\r\n\r\nMessage to 15551234567 delivered\r\n";
        let c = sms_content(raw, "", &opts(&d()));
        assert_eq!(
            c.report,
            Some(ReportFacts {
                message_ref: 84,
                recipient: "15551234567".into(),
                status: 0,
                submitted: 1_764_000_000,
                discharged: 1_764_000_060,
            })
        );
    }

    #[test]
    fn quotes_and_signatures_are_stripped() {
        let table = [
            ("ok\n> q\n", "ok"),
            ("top\n\nOn Tue, X wrote:\n> q\n> r\n", "top"),
            ("a\n-- \nsig\n", "a"),
            ("a\n--\nsig\n", "a"),
            ("x > y stays\n", "x > y stays"),
        ];
        for (input, want) in table {
            assert_eq!(strip_quotes(input).trim(), want, "{input:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_mail_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = sms_content(&raw, "x@y", &opts(&d()));
        }
    }
}
