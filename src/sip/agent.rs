//! The SIP agent: a text (or status report) to a handset as SIP MESSAGE requests.
//!
//! The text is split by the SMS codec; each segment is an SMS-DELIVER inside a network-to-
//! mobile RP-DATA, sent in order, one MESSAGE at a time, in the body the route asks for:
//! `application/vnd.3gpp.sms` as ASCII hex (OpenBTS) or octets (TS 24.341), or the whole text
//! as `text/plain` in one MESSAGE. The first segment that is not answered 2xx ends the attempt
//! with its outcome; the next attempt starts again from the first segment (a handset drops
//! parts it already has: reassembly is by reference and sequence number).
//!
//! **Trust.** Responses are parsed by the client transaction; only the status, the reason and
//! Retry-After are used.
//!
//! Standards: RFC 3428 (MESSAGE), RFC 3261 17.1.2 (client transaction), TS 24.341 (SMS over
//! IP), TS 24.011 7.3.1 (RP-DATA), TS 23.040 9.2.2.1 / 9.2.2.3 (DELIVER, STATUS-REPORT).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::{Config, MtBody};
use crate::delivery::outcome::{self, Local, Outcome, TransportFailure};
use crate::delivery::route::SipTarget;
use crate::mail::to_sms::SmsContent;
use crate::sip::client::{ClientError, SipClient, message_request};
use crate::sip::transaction::ClientTimers;
use crate::sms::segment::{SegmentOptions, deliver_tpdus};
use crate::sms::{self, Address, StatusReport, Timestamp, body};

/// The SIP agent.
#[derive(Debug)]
pub struct SipAgent {
    client: SipClient,
    limit: Semaphore,
    body: MtBody,
    smsc: Address,
    domain: String,
    segments: SegmentOptions,
    rp_ref: AtomicU8,
}

/// The MESSAGE bodies of one text, in order, with their content type.
///
/// # Errors
/// [`sms::SmsError`] when the originator or recipient cannot be encoded.
pub fn bodies(
    content: &SmsContent,
    kind: MtBody,
    smsc: &Address,
    reference: u16,
    opts: &SegmentOptions,
    now: u64,
    rp_ref: &mut dyn FnMut() -> u8,
) -> Result<Vec<(&'static str, Vec<u8>)>, sms::SmsError> {
    if kind == MtBody::Text {
        return Ok(vec![(
            "text/plain; charset=utf-8",
            content.text.as_bytes().to_vec(),
        )]);
    }
    let originator = originator_address(&content.originator);
    let tpdus = match &content.report {
        Some(r) => vec![
            StatusReport {
                more_messages: false,
                about_command: false,
                message_ref: r.message_ref,
                recipient: originator_address(&r.recipient),
                scts: Timestamp::from_unix(r.submitted as i64, 0),
                discharge: Timestamp::from_unix(r.discharged as i64, 0),
                status: r.status,
            }
            .encode()?,
        ],
        None => deliver_tpdus(
            &content.text,
            &originator,
            Timestamp::from_unix(now as i64, 0),
            reference,
            opts,
        )?,
    };
    tpdus
        .into_iter()
        .map(|tpdu| {
            let rp = sms::encode_mt(rp_ref(), smsc, tpdu)?;
            Ok(match kind {
                MtBody::Binary => ("application/vnd.3gpp.sms", rp),
                MtBody::Hex | MtBody::Text => (
                    "application/vnd.3gpp.sms",
                    body::hex_encode(&rp).into_bytes(),
                ),
            })
        })
        .collect()
}

/// The TP address of an originator: a number of 8 or more digits is international (E.164,
/// as the SMTP side normalises numbers), a shorter one a short code, anything else letters.
pub fn originator_address(s: &str) -> Address {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.len() >= 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Address::parse(&format!("+{digits}"));
    }
    Address::parse(s)
}

impl SipAgent {
    /// Binds the agent's UDP socket on the SIP listener's address (port chosen by the system).
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn bind(cfg: &Config) -> std::io::Result<SipAgent> {
        let d = &cfg.delivery;
        let timers = ClientTimers {
            t1: cfg.sip.t1.0,
            t2: Duration::from_secs(4).max(cfg.sip.t1.0),
            timer_f: cfg.sip.timer_f.0,
        };
        let client = SipClient::bind_advertising(
            SocketAddr::new(cfg.sip.listen.ip(), 0),
            timers,
            cfg.sip.advertise,
        )
        .await?;
        Ok(SipAgent {
            client,
            limit: Semaphore::new(d.max_sip),
            body: d.body,
            smsc: Address::parse(&d.notice_sender),
            domain: cfg.sms_domain().to_string(),
            segments: SegmentOptions {
                max_segments: d.max_segments,
                wide_reference: false,
            },
            rp_ref: AtomicU8::new(0),
        })
    }

    /// Sends `content` to `target`. `reference` numbers the concatenated parts.
    pub async fn deliver(
        &self,
        target: &SipTarget,
        content: &SmsContent,
        reference: u16,
    ) -> Outcome {
        let mut next_ref = || self.rp_ref.fetch_add(1, Ordering::Relaxed);
        let parts = match bodies(
            content,
            self.body,
            &self.smsc,
            reference,
            &self.segments,
            crate::clock::now_unix(),
            &mut next_ref,
        ) {
            Ok(p) => p,
            Err(e) => {
                return outcome::local(Local::Unencodable(e.to_string()));
            }
        };
        let Ok(_permit) = self.limit.acquire().await else {
            return outcome::transport(TransportFailure::Unreachable, "SIP agent stopped");
        };
        let transport = target.transport;
        let from = format!("sip:{}@{}", content.originator, self.domain);
        for (ctype, body) in parts {
            let call_id = self.client.call_id();
            let tag = self.client.from_tag();
            let req = message_request(
                &target.uri,
                &from,
                &tag,
                &target.uri,
                &call_id,
                1,
                ctype,
                body,
            );
            let out = match self.client.send(req, target.addr, transport).await {
                Ok(resp) => {
                    let retry_after = resp
                        .headers
                        .get("Retry-After")
                        .and_then(|v| v.split(['(', ';']).next())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    outcome::sip(resp.status, &resp.reason, retry_after)
                }
                Err(ClientError::Timeout(t)) => outcome::transport(
                    TransportFailure::Timeout,
                    &format!("no answer from {} within {t:?}", target.addr),
                ),
                Err(ClientError::Io(e)) => outcome::transport(
                    TransportFailure::Unreachable,
                    &format!("{}: {e}", target.addr),
                ),
                Err(ClientError::BadResponse(why)) => {
                    outcome::transport(TransportFailure::ProtocolError, why)
                }
            };
            if out != Outcome::Delivered {
                return out;
            }
        }
        Outcome::Delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::to_sms::ReportFacts;
    use crate::sms::{Deliver, RpMessage};

    fn decode_text(parts: &[(&str, Vec<u8>)]) -> String {
        let mut partial: Option<sms::Partial> = None;
        let mut single = String::new();
        for (_, hex) in parts {
            let (rp, _) = body::decode_body(hex, None).unwrap();
            let RpMessage::Data(d) = RpMessage::decode(&rp).unwrap() else {
                panic!("not RP-DATA")
            };
            assert!(!d.to_network);
            let deliver = Deliver::decode(&d.tpdu).unwrap();
            match deliver.user_data.concat() {
                Some(c) => {
                    let p = partial.get_or_insert_with(|| sms::Partial::new(&c));
                    p.add(&c, deliver.user_data.body);
                }
                None => single = deliver.user_data.body.text(),
            }
        }
        partial.map_or(single, |p| p.text("[gap]"))
    }

    fn content(text: &str) -> SmsContent {
        SmsContent {
            originator: "15551230000".into(),
            text: text.into(),
            report: None,
        }
    }

    #[test]
    fn ucs2_text_of_300_characters_is_five_segments_that_reassemble() {
        let text: String = "Привет, мир! ".chars().cycle().take(300).collect();
        let mut n = 0u8;
        let parts = bodies(
            &content(&text),
            MtBody::Hex,
            &Address::parse("101"),
            7,
            &SegmentOptions::default(),
            1_764_000_000,
            &mut || {
                n += 1;
                n
            },
        )
        .unwrap();
        assert_eq!(parts.len(), 5);
        assert!(parts.iter().all(|(t, _)| *t == "application/vnd.3gpp.sms"));
        assert_eq!(decode_text(&parts), text);
    }

    #[test]
    fn text_body_is_one_message() {
        let parts = bodies(
            &content("hello"),
            MtBody::Text,
            &Address::parse("101"),
            1,
            &SegmentOptions::default(),
            0,
            &mut || 0,
        )
        .unwrap();
        assert_eq!(
            parts,
            vec![("text/plain; charset=utf-8", b"hello".to_vec())]
        );
    }

    #[test]
    fn status_report_is_an_sms_status_report() {
        let c = SmsContent {
            originator: "101".into(),
            text: "Message to 15551234567 delivered".into(),
            report: Some(ReportFacts {
                message_ref: 84,
                recipient: "15551234567".into(),
                status: 0,
                submitted: 1_764_000_000,
                discharged: 1_764_000_060,
            }),
        };
        let parts = bodies(
            &c,
            MtBody::Binary,
            &Address::parse("101"),
            1,
            &SegmentOptions::default(),
            0,
            &mut || 3,
        )
        .unwrap();
        assert_eq!(parts.len(), 1);
        let RpMessage::Data(d) = RpMessage::decode(&parts[0].1).unwrap() else {
            panic!()
        };
        let r = StatusReport::decode(&d.tpdu).unwrap();
        assert_eq!(r.message_ref, 84);
        assert_eq!(r.status, 0);
        assert_eq!(r.recipient.value, "15551234567");
    }

    #[test]
    fn originators_are_international_short_or_alphanumeric() {
        assert_eq!(originator_address("15551230000").ton, 1);
        assert_eq!(originator_address("101").ton, 0);
        assert_eq!(originator_address("Email").ton, 5);
    }
}
