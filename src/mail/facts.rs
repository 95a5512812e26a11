//! The SMS facts a queued mail carries, as one typed struct, and the one codec that writes
//! them to and reads them from the queue file's `X-SMS-*` header fields.
//!
//! Pure. Intake fills [`SmsFacts`] from the SMS-SUBMIT and the SIP request; the mail builders
//! write it with [`SmsFacts::pairs`]; delivery reads it back with [`SmsFacts::from_mail`]. The
//! header names are written once, in [`Name`].
//!
//! **Trust.** Writing is total: values are ASCII by construction (numbers, digits, hex). Reading
//! is lenient: a field that does not parse is as if absent, never an error, since a mail from
//! outside may carry anything (mail that came in over SMTP has its `X-SMS-*` fields removed at
//! intake, [`super::provenance`], so what is read here was written by smsmta).
//!
//! Standards: TS 23.040 9.2.3 (the TP fields named), TS 24.011 7.3 (RP-MR, RP-DATA),
//! RFC 6648 (the `X-` prefix is kept for compatibility with queue files already on disk).

use crate::identity::Msisdn;
use crate::sms::body::{hex_decode, hex_encode};

/// The prefix of every SMS fact header.
pub const PREFIX: &str = "X-SMS-";

/// A status report to send instead of a text (`X-SMS-Report-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFacts {
    /// TP-MR of the SUBMIT reported on.
    pub message_ref: u8,
    /// Its recipient.
    pub recipient: String,
    /// TP-ST (0 = delivered).
    pub status: u8,
    /// When the SUBMIT arrived (Unix seconds).
    pub submitted: u64,
    /// When it was delivered or finally failed.
    pub discharged: u64,
}

/// What is known of the SMS a mail came from, or of the report a mail stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmsFacts {
    /// The sending handset's IMSI (digits).
    pub imsi: Option<String>,
    /// RP-Message Reference.
    pub rp_mr: Option<u8>,
    /// The RP destination (SMSC) address the handset named.
    pub smsc: Option<String>,
    /// TP-Message-Reference of the SMS-SUBMIT.
    pub tp_mr: Option<u8>,
    /// The number the handset sent to (TP-DA, or the SIP user), when it was a number.
    pub tp_da: Option<Msisdn>,
    /// TP-Protocol-Identifier.
    pub tp_pid: Option<u8>,
    /// TP-Data-Coding-Scheme, as sent.
    pub tp_dcs: Option<u8>,
    /// The message class from the DCS.
    pub class: Option<u8>,
    /// TP-Status-Report-Request; `None` when the text came as text/plain.
    pub status_report_request: Option<bool>,
    /// TP-Validity-Period, in seconds.
    pub validity: Option<u64>,
    /// The RP-DATA as received (one-part texts only).
    pub rp_data: Option<Vec<u8>>,
    /// A concatenated text: parts received and parts announced.
    pub parts: Option<(usize, u8)>,
    /// A concatenated text sent with gaps: which parts were missing.
    pub missing: Option<Vec<u8>>,
    /// This mail is a status report for a handset, or a receipt for an ESME.
    pub report: Option<ReportFacts>,
    /// The ESME (system_id) that submitted it over SMPP and asked for a delivery receipt.
    pub esme: Option<String>,
    /// A receipt for an ESME: the queue ID (its message_id) of the message reported on.
    pub receipted_id: Option<String>,
}

/// Every fact header, without the prefix. The one list of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `X-SMS-IMSI`
    Imsi,
    /// `X-SMS-RP-MR`
    RpMr,
    /// `X-SMS-SMSC`
    Smsc,
    /// `X-SMS-TP-MR`
    TpMr,
    /// `X-SMS-TP-DA`
    TpDa,
    /// `X-SMS-TP-PID`
    TpPid,
    /// `X-SMS-TP-DCS`
    TpDcs,
    /// `X-SMS-Class`
    Class,
    /// `X-SMS-Status-Report-Request`
    StatusReportRequest,
    /// `X-SMS-Validity`
    Validity,
    /// `X-SMS-RP-DATA`
    RpData,
    /// `X-SMS-Parts`
    Parts,
    /// `X-SMS-Incomplete`
    Incomplete,
    /// `X-SMS-Report-MR`
    ReportMr,
    /// `X-SMS-Report-Recipient`
    ReportRecipient,
    /// `X-SMS-Report-Status`
    ReportStatus,
    /// `X-SMS-Report-Submitted`
    ReportSubmitted,
    /// `X-SMS-Report-Discharged`
    ReportDischarged,
    /// `X-SMS-ESME`
    Esme,
    /// `X-SMS-Receipted-ID`
    ReceiptedId,
}

impl Name {
    /// All names, in the order they are written.
    pub const ALL: [Name; 20] = [
        Name::Imsi,
        Name::RpMr,
        Name::Smsc,
        Name::TpMr,
        Name::TpDa,
        Name::TpPid,
        Name::TpDcs,
        Name::Class,
        Name::StatusReportRequest,
        Name::Validity,
        Name::RpData,
        Name::Parts,
        Name::Incomplete,
        Name::ReportMr,
        Name::ReportRecipient,
        Name::ReportStatus,
        Name::ReportSubmitted,
        Name::ReportDischarged,
        Name::Esme,
        Name::ReceiptedId,
    ];

    /// The header name without [`PREFIX`].
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Imsi => "IMSI",
            Name::RpMr => "RP-MR",
            Name::Smsc => "SMSC",
            Name::TpMr => "TP-MR",
            Name::TpDa => "TP-DA",
            Name::TpPid => "TP-PID",
            Name::TpDcs => "TP-DCS",
            Name::Class => "Class",
            Name::StatusReportRequest => "Status-Report-Request",
            Name::Validity => "Validity",
            Name::RpData => "RP-DATA",
            Name::Parts => "Parts",
            Name::Incomplete => "Incomplete",
            Name::ReportMr => "Report-MR",
            Name::ReportRecipient => "Report-Recipient",
            Name::ReportStatus => "Report-Status",
            Name::ReportSubmitted => "Report-Submitted",
            Name::ReportDischarged => "Report-Discharged",
            Name::Esme => "ESME",
            Name::ReceiptedId => "Receipted-ID",
        }
    }

    /// The name for `s` (without the prefix, any case).
    pub fn parse(s: &str) -> Option<Name> {
        Name::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(s))
    }

    /// The full header name, `X-SMS-...`.
    pub fn header(self) -> String {
        format!("{PREFIX}{}", self.as_str())
    }
}

fn hex_u8(s: &str) -> Option<u8> {
    u8::from_str_radix(s, 16).ok()
}

impl SmsFacts {
    /// The facts as `(name, value)` pairs, names without the prefix, in [`Name::ALL`] order.
    pub fn pairs(&self) -> Vec<(Name, String)> {
        let mut out = Vec::new();
        let mut put = |n: Name, v: Option<String>| {
            if let Some(v) = v {
                out.push((n, v));
            }
        };
        put(Name::Imsi, self.imsi.clone());
        put(Name::RpMr, self.rp_mr.map(|v| v.to_string()));
        put(Name::Smsc, self.smsc.clone());
        put(Name::TpMr, self.tp_mr.map(|v| v.to_string()));
        put(Name::TpDa, self.tp_da.as_ref().map(|v| v.to_string()));
        put(Name::TpPid, self.tp_pid.map(|v| format!("{v:02X}")));
        put(Name::TpDcs, self.tp_dcs.map(|v| format!("{v:02X}")));
        put(Name::Class, self.class.map(|v| v.to_string()));
        put(
            Name::StatusReportRequest,
            self.status_report_request
                .map(|v| if v { "yes" } else { "no" }.to_string()),
        );
        put(Name::Validity, self.validity.map(|v| v.to_string()));
        put(Name::RpData, self.rp_data.as_deref().map(hex_encode));
        put(Name::Parts, self.parts.map(|(n, t)| format!("{n}/{t}")));
        put(
            Name::Incomplete,
            self.missing.as_ref().map(|m| {
                let list: Vec<String> = m.iter().map(u8::to_string).collect();
                format!("missing parts {}", list.join(","))
            }),
        );
        if let Some(r) = &self.report {
            put(Name::ReportMr, Some(r.message_ref.to_string()));
            put(Name::ReportRecipient, Some(r.recipient.clone()));
            put(Name::ReportStatus, Some(r.status.to_string()));
            put(Name::ReportSubmitted, Some(r.submitted.to_string()));
            put(Name::ReportDischarged, Some(r.discharged.to_string()));
        }
        put(Name::Esme, self.esme.clone());
        put(Name::ReceiptedId, self.receipted_id.clone());
        out
    }

    /// The facts from `(name, value)` pairs (names with or without the prefix); what does not
    /// parse is left out.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> SmsFacts {
        let mut f = SmsFacts::default();
        let mut report = [None::<&str>; 5];
        for (name, value) in pairs {
            let bare = name
                .get(..PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(PREFIX))
                .and_then(|_| name.get(PREFIX.len()..))
                .unwrap_or(name);
            let Some(n) = Name::parse(bare) else {
                continue;
            };
            let v = value.trim();
            match n {
                Name::Imsi => f.imsi = Some(v.to_string()),
                Name::RpMr => f.rp_mr = v.parse().ok(),
                Name::Smsc => f.smsc = Some(v.to_string()),
                Name::TpMr => f.tp_mr = v.parse().ok(),
                Name::TpDa => f.tp_da = Msisdn::parse(v).ok(),
                Name::TpPid => f.tp_pid = hex_u8(v),
                Name::TpDcs => f.tp_dcs = hex_u8(v),
                Name::Class => f.class = v.parse().ok(),
                Name::StatusReportRequest => {
                    f.status_report_request = Some(v.eq_ignore_ascii_case("yes"))
                }
                Name::Validity => f.validity = v.parse().ok(),
                Name::RpData => f.rp_data = hex_decode(v.as_bytes()).ok(),
                Name::Parts => {
                    f.parts = v
                        .split_once('/')
                        .and_then(|(n, t)| Some((n.parse().ok()?, t.parse().ok()?)))
                }
                Name::Incomplete => {
                    f.missing = v.strip_prefix("missing parts ").map(|l| {
                        l.split(|c: char| !c.is_ascii_digit())
                            .filter_map(|d| d.parse().ok())
                            .collect()
                    })
                }
                Name::ReportMr => report[0] = Some(v),
                Name::ReportRecipient => report[1] = Some(v),
                Name::ReportStatus => report[2] = Some(v),
                Name::ReportSubmitted => report[3] = Some(v),
                Name::ReportDischarged => report[4] = Some(v),
                Name::Esme => f.esme = Some(v.to_string()),
                Name::ReceiptedId => f.receipted_id = Some(v.to_string()),
            }
        }
        f.report = (|| {
            Some(ReportFacts {
                message_ref: report[0]?.parse().ok()?,
                recipient: report[1]?.to_string(),
                status: report[2]?.parse().ok()?,
                submitted: report[3]?.parse().ok()?,
                discharged: report[4]?.parse().ok()?,
            })
        })();
        f
    }

    /// The facts in a parsed mail's header.
    pub fn from_message(m: &mail_parser::Message<'_>) -> SmsFacts {
        let fields: Vec<(Name, String)> = Name::ALL
            .into_iter()
            .filter_map(|n| m.header_raw(n.header()).map(|v| (n, v.to_string())))
            .collect();
        SmsFacts::from_pairs(fields.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// The facts in a raw mail's header (none when it does not parse).
    pub fn from_mail(raw: &[u8]) -> SmsFacts {
        super::parser(false)
            .parse_headers(raw)
            .map(|m| SmsFacts::from_message(&m))
            .unwrap_or_default()
    }

    /// The TP-MR and the number sent to, when the sender asked for a status report.
    pub fn report_request(&self) -> Option<(u8, Option<Msisdn>)> {
        if self.status_report_request != Some(true) {
            return None;
        }
        Some((self.tp_mr?, self.tp_da.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full() -> SmsFacts {
        SmsFacts {
            imsi: Some("001010000000001".into()),
            rp_mr: Some(7),
            smsc: Some("15550000000".into()),
            tp_mr: Some(84),
            tp_da: Msisdn::parse("15551234567").ok(),
            tp_pid: Some(0),
            tp_dcs: Some(0x08),
            class: Some(1),
            status_report_request: Some(true),
            validity: Some(86_400),
            rp_data: Some(vec![0x00, 0x07, 0xff]),
            parts: Some((2, 3)),
            missing: Some(vec![2]),
            report: Some(ReportFacts {
                message_ref: 84,
                recipient: "15551234567".into(),
                status: 0,
                submitted: 1,
                discharged: 2,
            }),
            esme: Some("app".into()),
            receipted_id: Some("0644C2A1B3C4D5A1B2C3".into()),
        }
    }

    fn round_trip(f: &SmsFacts) -> SmsFacts {
        let pairs = f.pairs();
        let mut mail = String::new();
        for (n, v) in &pairs {
            mail.push_str(&format!("{}: {v}\r\n", n.header()));
        }
        mail.push_str("\r\nbody\r\n");
        SmsFacts::from_mail(mail.as_bytes())
    }

    #[test]
    fn every_fact_survives_the_queue_file_header() {
        assert_eq!(round_trip(&full()), full());
        assert_eq!(round_trip(&SmsFacts::default()), SmsFacts::default());
    }

    #[test]
    fn the_header_names_are_those_of_queue_files_already_on_disk() {
        let written: Vec<String> = full().pairs().iter().map(|(n, _)| n.header()).collect();
        assert_eq!(
            written,
            [
                "X-SMS-IMSI",
                "X-SMS-RP-MR",
                "X-SMS-SMSC",
                "X-SMS-TP-MR",
                "X-SMS-TP-DA",
                "X-SMS-TP-PID",
                "X-SMS-TP-DCS",
                "X-SMS-Class",
                "X-SMS-Status-Report-Request",
                "X-SMS-Validity",
                "X-SMS-RP-DATA",
                "X-SMS-Parts",
                "X-SMS-Incomplete",
                "X-SMS-Report-MR",
                "X-SMS-Report-Recipient",
                "X-SMS-Report-Status",
                "X-SMS-Report-Submitted",
                "X-SMS-Report-Discharged",
                "X-SMS-ESME",
                "X-SMS-Receipted-ID",
            ]
        );
        // Values as the code before this struct wrote them.
        let old = "X-SMS-TP-PID: 00\r\nX-SMS-TP-DCS: 08\r\nX-SMS-Status-Report-Request: yes\r\nX-SMS-TP-MR: 84\r\nX-SMS-Parts: 2/3\r\nX-SMS-Incomplete: missing parts [2]\r\n\r\n";
        let f = SmsFacts::from_mail(old.as_bytes());
        assert_eq!(f.tp_dcs, Some(8));
        assert_eq!(f.parts, Some((2, 3)));
        assert_eq!(f.missing, Some(vec![2]));
        assert_eq!(f.report_request(), Some((84, None)));
    }

    #[test]
    fn a_report_needs_every_report_field() {
        let f = SmsFacts::from_pairs([
            ("Report-MR", "1"),
            ("Report-Recipient", "1555"),
            ("Report-Status", "0"),
            ("Report-Submitted", "1"),
        ]);
        assert_eq!(f.report, None);
    }

    #[test]
    fn a_report_request_needs_the_flag_and_a_reference() {
        let mut f = full();
        assert!(f.report_request().is_some());
        f.status_report_request = Some(false);
        assert_eq!(f.report_request(), None);
        f.status_report_request = Some(true);
        f.tp_mr = None;
        assert_eq!(f.report_request(), None);
    }

    proptest! {
        #[test]
        fn reading_any_header_values_never_panics(
            vals in proptest::collection::vec(("[A-Za-z-]{0,24}", "\\PC{0,40}"), 0..20)
        ) {
            let _ = SmsFacts::from_pairs(vals.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        }

        #[test]
        fn numeric_facts_round_trip(mr in any::<u8>(), dcs in any::<u8>(), v in any::<u64>(),
                                    data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let f = SmsFacts { tp_mr: Some(mr), tp_dcs: Some(dcs), validity: Some(v),
                               rp_data: Some(data), ..SmsFacts::default() };
            prop_assert_eq!(round_trip(&f), f);
        }
    }
}
