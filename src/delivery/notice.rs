//! Notices to senders: RFC 3464 delivery status notifications for e-mail senders, short
//! "not delivered" texts for handset senders, and SMS status reports (TP-SRR). Pure.
//!
//! Every notice is itself a message queued from the null sender, so it is never bounced
//! (RFC 5321 4.5.5); [`should_notify`] also refuses to answer bounces, notices and
//! auto-replies (RFC 3834: Auto-Submitted, Precedence bulk/junk/list), and tells only senders
//! smsmta can vouch for: a handset (a sender in our SMS domains) only when the message came
//! from it over SIP (the BTS vouched for it) or from an authenticated SMTP user allowed that
//! number, never because a mail's MAIL FROM names a local number. E-mail senders get DSNs as from any MTA.
//!
//! Standards: RFC 3464 (DSN), RFC 3462 (multipart/report), RFC 3463 (status codes),
//! RFC 3834 (auto-replies), TS 23.040 9.2.2.3 (SMS-STATUS-REPORT facts).

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;

use crate::clock::rfc5322_date;
use crate::mail::facts::{ReportFacts, SmsFacts};
use crate::mail::to_sms::is_dsn;
use crate::spool::{Origin, OriginKind};

/// One recipient that a notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient.
    pub recipient: String,
    /// RFC 3463 status (`5.1.1`, `4.4.7`).
    pub status: String,
    /// The reply or reason.
    pub reason: String,
}

/// The TP-ST an SMS-STATUS-REPORT carries for a recipient's final outcome (TS 23.040
/// 9.2.3.15): delivered, validity expired, or not obtainable; `None` while it is retried.
pub fn report_status(outcome: &super::outcome::Outcome) -> Option<u8> {
    use super::outcome::{EXPIRED, Outcome};
    use crate::sms::tpdu::status;
    match outcome {
        Outcome::Delivered => Some(status::DELIVERED),
        Outcome::Retry { .. } => None,
        Outcome::Bounce { status: s, .. } if *s == EXPIRED => Some(status::VALIDITY_EXPIRED),
        Outcome::Bounce { .. } => Some(status::NOT_OBTAINABLE),
    }
}

/// Whether a sender should be told about a failure of this message.
pub fn should_notify(
    envelope_sender: &str,
    origin: &Origin,
    raw: &[u8],
    local_domains: &[String],
) -> bool {
    if envelope_sender.is_empty() || origin.kind == OriginKind::Internal {
        return false;
    }
    let handset = envelope_sender
        .rsplit_once('@')
        .is_some_and(|(_, d)| local_domains.iter().any(|l| l.eq_ignore_ascii_case(d)));
    // A handset is vouched for by its BTS (SIP), or by an authenticated user allowed that
    // number ([`Origin::sender_number`]).
    if handset && origin.kind != OriginKind::Sip && origin.sender_number.is_none() {
        return false;
    }
    let Some(m) = crate::mail::parser(false).parse_headers(raw) else {
        return true;
    };
    let auto = m
        .header_raw("Auto-Submitted")
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| !v.is_empty() && !v.starts_with("no"));
    let bulk = m
        .header_raw("Precedence")
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "list"));
    !(auto || bulk || is_dsn(&m))
}

/// The header section of a message (up to the blank line).
pub fn header_section(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// What a DSN is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    /// Given up (Action: failed).
    Failed,
    /// Still trying (Action: delayed).
    Delayed,
}

/// The facts of a DSN.
#[derive(Debug, Clone)]
pub struct Dsn<'a> {
    /// This host (Reporting-MTA, the From domain).
    pub hostname: &'a str,
    /// The queue ID of the original message.
    pub queue_id: &'a str,
    /// Its arrival time.
    pub arrival: u64,
    /// Now.
    pub now: u64,
    /// When the original expires (Will-Retry-Until of a delay notice).
    pub expires: u64,
    /// The original sender (the DSN's recipient).
    pub to: &'a str,
    /// Failed or delayed.
    pub kind: DsnKind,
    /// The recipients concerned.
    pub failures: &'a [Failure],
    /// The original message (its headers are quoted).
    pub original: &'a [u8],
}

/// Builds an RFC 3464 DSN (multipart/report) for an e-mail sender.
pub fn dsn(d: &Dsn<'_>) -> Vec<u8> {
    let boundary = format!("{}.{}/{}", d.queue_id, d.now, d.hostname);
    let (subject, intro, action) = match d.kind {
        DsnKind::Failed => (
            "Undelivered Mail Returned to Sender",
            "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.",
            "failed",
        ),
        DsnKind::Delayed => (
            "Delayed Mail (still being retried)",
            "Your message could not be delivered yet. It will be retried until it\r\nexpires; you do not need to send it again.",
            "delayed",
        ),
    };
    let mut s = String::new();
    s.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{h}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}.{now}.dsn@{h}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n",
        h = d.hostname,
        to = d.to,
        date = rfc5322_date(d.now),
        id = d.queue_id,
        now = d.now,
    ));
    s.push_str(&format!(
        "--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThis is the mail system at host {}.\r\n\r\n{intro}\r\n\r\n",
        d.hostname
    ));
    for f in d.failures {
        s.push_str(&format!("<{}>: {}\r\n", f.recipient, one_line(&f.reason)));
    }
    s.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {h}\r\nX-Smsmta-Queue-ID: {id}\r\nArrival-Date: {arr}\r\n",
        h = d.hostname,
        id = d.queue_id,
        arr = rfc5322_date(d.arrival)
    ));
    for f in d.failures {
        s.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {}\r\nDiagnostic-Code: {}; {}\r\n",
            f.recipient,
            f.status,
            if f.reason.starts_with("SIP/") || f.reason.contains(" SIP ") {
                "X-SIP"
            } else {
                "smtp"
            },
            one_line(&f.reason)
        ));
        if d.kind == DsnKind::Delayed {
            s.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                rfc5322_date(d.expires)
            ));
        }
    }
    s.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = s.into_bytes();
    out.extend_from_slice(header_section(d.original));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of a notice to a handset sender.
pub fn notice_text(kind: DsnKind, failures: &[Failure], local_domains: &[String]) -> String {
    let mut lines = Vec::new();
    for f in failures {
        let who = crate::identity::Msisdn::in_address(&f.recipient, local_domains)
            .map(|m| m.digits().to_string())
            .unwrap_or_else(|| f.recipient.clone());
        lines.push(match kind {
            DsnKind::Failed => format!("Message to {who} not delivered: {}", one_line(&f.reason)),
            DsnKind::Delayed => format!("Message to {who} delayed: {}", one_line(&f.reason)),
        });
    }
    lines.join("\n")
}

/// A short mail from the notice sender to a handset (the SIP agent turns it into a text).
pub fn sms_notice(
    from: &str,
    to: &str,
    text: &str,
    queue_id: &str,
    hostname: &str,
    now: u64,
) -> Vec<u8> {
    MessageBuilder::new()
        .from(Address::new_address(None::<&str>, from.to_string()))
        .to(Address::new_address(None::<&str>, to.to_string()))
        .date(now as i64)
        .message_id(format!("{queue_id}.{now}.notice@{hostname}"))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .text_body(text.to_string())
        .write_to_vec()
        .unwrap_or_default()
}

/// A status report for a handset, as a mail carrying the report facts in `X-SMS-Report-*`
/// headers (read back by [`crate::mail::to_sms::sms_content`]).
pub fn status_report(
    from: &str,
    to: &str,
    facts: &ReportFacts,
    queue_id: &str,
    hostname: &str,
) -> Vec<u8> {
    let text = format!(
        "Message to {} {}",
        facts.recipient,
        if facts.status == 0 {
            "delivered"
        } else {
            "not delivered"
        }
    );
    let mut b = MessageBuilder::new()
        .from(Address::new_address(None::<&str>, from.to_string()))
        .to(Address::new_address(None::<&str>, to.to_string()))
        .date(facts.discharged as i64)
        .message_id(format!("{queue_id}.{}.report@{hostname}", facts.discharged))
        .header("Auto-Submitted", Raw::new("auto-replied"));
    let report = SmsFacts {
        report: Some(facts.clone()),
        ..SmsFacts::default()
    };
    for (name, value) in report.pairs() {
        b = b.header(name.header(), Raw::new(value));
    }
    b.text_body(text).write_to_vec().unwrap_or_default()
}

/// The TP-MR of the SMS-SUBMIT a mail came from, and the number it was sent to, when its
/// sender asked for a status report.
pub fn report_request(raw: &[u8]) -> Option<(u8, Option<String>)> {
    SmsFacts::from_mail(raw)
        .report_request()
        .map(|(mr, to)| (mr, to.map(|n| n.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::to_sms::{TextOptions, sms_content};

    fn from(kind: OriginKind) -> Origin {
        Origin {
            kind,
            peer: "127.0.0.1:1".into(),
            sender_number: None,
        }
    }

    const ORIGINAL: &[u8] =
        b"From: alice@example.org\r\nTo: 15551234567@sms.example.org\r\nSubject: hi\r\n\r\nbody text\r\n";

    #[test]
    fn status_reports_say_delivered_expired_or_not_obtainable() {
        use crate::delivery::outcome::{self, Local, Outcome};
        use crate::sms::tpdu::status;
        assert_eq!(report_status(&Outcome::Delivered), Some(status::DELIVERED));
        assert_eq!(
            report_status(&outcome::local(Local::Expired)),
            Some(status::VALIDITY_EXPIRED)
        );
        assert_eq!(
            report_status(&outcome::sip(404, "Not Found", None)),
            Some(status::NOT_OBTAINABLE)
        );
        assert_eq!(report_status(&outcome::sip(480, "Away", None)), None);
    }

    #[test]
    fn a_handset_is_told_only_about_what_it_sent_over_sip() {
        let d = vec!["sms.example.org".to_string()];
        let handset = "15551230000@sms.example.org";
        assert!(should_notify(handset, &from(OriginKind::Sip), ORIGINAL, &d));
        // A mail whose MAIL FROM names one of our numbers: no notice SMS to that handset.
        assert!(!should_notify(
            handset,
            &from(OriginKind::Smtp),
            ORIGINAL,
            &d
        ));
        assert!(!should_notify(
            handset,
            &from(OriginKind::Local),
            ORIGINAL,
            &d
        ));
        // Unless an authenticated user was allowed to send as that number.
        let vouched = Origin {
            sender_number: Some("15551230000".into()),
            ..from(OriginKind::Smtp)
        };
        assert!(should_notify(handset, &vouched, ORIGINAL, &d));
        assert!(should_notify(
            "alice@example.org",
            &from(OriginKind::Smtp),
            ORIGINAL,
            &d
        ));
    }

    #[test]
    fn bounces_notices_and_auto_replies_are_never_answered() {
        assert!(should_notify(
            "alice@example.org",
            &from(OriginKind::Smtp),
            ORIGINAL,
            &[]
        ));
        assert!(!should_notify("", &from(OriginKind::Smtp), ORIGINAL, &[]));
        assert!(!should_notify(
            "a@b",
            &from(OriginKind::Internal),
            ORIGINAL,
            &[]
        ));
        for h in [
            "Auto-Submitted: auto-replied",
            "Auto-Submitted: auto-generated",
            "Precedence: bulk",
            "Precedence: list",
            "Precedence: junk",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=x",
        ] {
            let raw = format!("{h}\r\nFrom: a@b\r\n\r\nx\r\n");
            assert!(
                !should_notify("a@b", &from(OriginKind::Smtp), raw.as_bytes(), &[]),
                "{h}"
            );
        }
        let raw = b"Auto-Submitted: no\r\n\r\nx";
        assert!(should_notify("a@b", &from(OriginKind::Smtp), raw, &[]));
    }

    #[test]
    fn dsn_is_a_multipart_report_that_our_own_reader_summarises() {
        let failures = [Failure {
            recipient: "15551234567@sms.example.org".into(),
            status: "5.1.1".into(),
            reason: "404 Not Found".into(),
        }];
        let raw = dsn(&Dsn {
            hostname: "mta.example.org",
            queue_id: "0644C2A1B3C4D5A1B2C3",
            arrival: 1_764_000_000,
            now: 1_764_000_100,
            expires: 1_764_400_000,
            to: "alice@example.org",
            kind: DsnKind::Failed,
            failures: &failures,
            original: ORIGINAL,
        });
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert!(is_dsn(&m));
        assert_eq!(m.subject(), Some("Undelivered Mail Returned to Sender"));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Final-Recipient: rfc822; 15551234567@sms.example.org\r\n"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.org\r\nTo: 15551234567@sms.example.org\r\nSubject: hi\r\n"));
        assert!(!text.contains("body text"), "only the headers are quoted");
        let domains = vec!["sms.example.org".to_string()];
        let c = sms_content(
            &raw,
            "",
            &TextOptions {
                local_domains: &domains,
                email_sender: "Email",
                notice_sender: "101",
                subject_line: true,
                strip_quotes: true,
                trusted: true,
                sender_number: None,
            },
        );
        assert_eq!(
            c.text,
            "Mail to 15551234567@sms.example.org not delivered: 404 Not Found"
        );
        assert!(!should_notify("", &from(OriginKind::Internal), &raw, &[]));
    }

    #[test]
    fn notice_text_names_the_number() {
        let f = [Failure {
            recipient: "15551234567@sms.example.org".into(),
            status: "5.1.1".into(),
            reason: "404  Not\r\nFound".into(),
        }];
        let d = vec!["sms.example.org".to_string()];
        assert_eq!(
            notice_text(DsnKind::Failed, &f, &d),
            "Message to 15551234567 not delivered: 404 Not Found"
        );
    }

    #[test]
    fn report_request_needs_the_flag_and_a_reference() {
        let yes = b"X-SMS-TP-MR: 84\r\nX-SMS-Status-Report-Request: yes\r\n\r\nx";
        let no = b"X-SMS-TP-MR: 84\r\nX-SMS-Status-Report-Request: no\r\n\r\nx";
        assert_eq!(report_request(yes), Some((84, None)));
        assert_eq!(report_request(no), None);
        assert_eq!(report_request(b"Subject: x\r\n\r\n"), None);
    }

    #[test]
    fn header_section_stops_at_the_blank_line() {
        assert_eq!(header_section(b"A: b\r\n\r\nbody"), b"A: b\r\n");
        assert_eq!(header_section(b"A: b\n\nbody"), b"A: b\n");
        assert_eq!(header_section(b"A: b"), b"A: b");
    }
}
