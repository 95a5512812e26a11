//! SMS -> RFC 5322 mail (mail-builder): the mail that a text from a handset becomes.
//!
//! Pure. The text goes in a `text/plain; charset="utf-8"` body (quoted-printable when it is not
//! ASCII, so no peer needs 8BITMIME); the SMS facts that mail has no field for go in `X-SMS-*`
//! headers; a `Received` line names the SIP or SMPP hop.
//!
//! Standards: RFC 5322 3.6 (Date, From, To, Message-ID), RFC 5321 4.4 (Received),
//! RFC 2045/2047 (MIME, encoded words, via mail-builder).

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;

use super::facts::SmsFacts;
use crate::clock::rfc5322_date;

/// What a mail made from an SMS says.
#[derive(Debug, Clone)]
pub struct SmsMail<'a> {
    /// Queue ID: the Message-ID's left part and the Received line's id.
    pub queue_id: &'a str,
    /// Sender address (`15551230000@sms.example.org`).
    pub from: &'a str,
    /// Recipient address.
    pub to: &'a str,
    /// The text.
    pub text: &'a str,
    /// A Subject, if configured.
    pub subject: Option<&'a str>,
    /// Arrival time, seconds since the epoch.
    pub date: u64,
    /// This host's name.
    pub hostname: &'a str,
    /// The SIP peer, `ip:port`.
    pub peer: &'a str,
    /// The protocol it came in, `SIP` or `SMPP`.
    pub protocol: &'a str,
    /// The transport, `UDP` or `TCP`.
    pub transport: &'a str,
    /// The SMS facts, written as `X-SMS-*` headers ([`super::facts`]).
    pub facts: &'a SmsFacts,
}

fn clean(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Builds the mail.
pub fn build(m: &SmsMail<'_>) -> Vec<u8> {
    let domain = m
        .from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(m.hostname);
    let mut b = MessageBuilder::new()
        .from(Address::new_address(None::<&str>, m.from.to_string()))
        .to(Address::new_address(None::<&str>, m.to.to_string()))
        .date(m.date as i64)
        .message_id(format!("{}@{}", m.queue_id, domain));
    if let Some(s) = m.subject {
        b = b.subject(s.to_string());
    }
    for (name, value) in m.facts.pairs() {
        b = b.header(name.header(), Raw::new(clean(&value)));
    }
    let body = b
        .text_body(m.text.to_string())
        .write_to_vec()
        .unwrap_or_default();
    let received = format!(
        "Received: from {peer} by {host} (smsmta) with {proto}/{tr} id {id};\r\n\t{date}\r\n",
        peer = clean(m.peer),
        host = m.hostname,
        proto = m.protocol,
        tr = m.transport,
        id = m.queue_id,
        date = rfc5322_date(m.date)
    );
    let mut out = received.into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_627_454),
            "Wed, 25 Nov 2026 17:24:14 +0000"
        );
    }

    #[test]
    fn mail_round_trips_through_mail_parser() {
        let raw = build(&SmsMail {
            queue_id: "0644C2A1B3C4D5A1B2C3",
            from: "15551230000@sms.example.org",
            to: "15551234567@sms.example.org",
            text: "Grüße 🙂 – line\nnext",
            subject: None,
            date: 1_795_627_454,
            hostname: "mta.example.org",
            peer: "127.0.0.1:5062",
            protocol: "SIP",
            transport: "UDP",
            facts: &SmsFacts {
                imsi: Some("001010000000001".into()),
                tp_mr: Some(84),
                ..SmsFacts::default()
            },
        });
        assert!(raw.is_ascii(), "quoted-printable keeps the mail 7-bit");
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            m.from().unwrap().first().unwrap().address(),
            Some("15551230000@sms.example.org")
        );
        assert_eq!(
            m.to().unwrap().first().unwrap().address(),
            Some("15551234567@sms.example.org")
        );
        assert_eq!(m.body_text(0).unwrap().trim_end(), "Grüße 🙂 – line\nnext");
        assert_eq!(m.message_id(), Some("0644C2A1B3C4D5A1B2C3@sms.example.org"));
        assert_eq!(m.subject(), None);
        assert_eq!(
            m.header_raw("X-SMS-IMSI").map(str::trim),
            Some("001010000000001")
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("Received: from 127.0.0.1:5062 by mta.example.org (smsmta) with SIP/UDP id 0644C2A1B3C4D5A1B2C3;\r\n"));
    }
}
