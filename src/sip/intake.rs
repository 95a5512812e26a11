//! MO intake: a handset's MESSAGE (RFC 3428) becomes a spooled mail.
//!
//! Only from `[sip] trusted_networks` (the service answered strangers already). Bodies:
//! `text/plain` (charset parameter, default UTF-8) and `application/vnd.3gpp.sms` (binary,
//! ASCII hex or base64; an RP-DATA with an SMS-SUBMIT); others get 415 with Accept, an empty
//! body 400, a body over `[sip] max_message_size` 413. The sender is the From user; an
//! `IMSI...` user is mapped to its MSISDN through the registry (unknown: 403, or accepted as
//! IMSI@domain when configured). The destination is the TP-DA when the Request-URI user is
//! `[sip] smsc_name` (the To user for text/plain), else the Request-URI user; a text that
//! starts with an e-mail address and a space goes to that address (smqueue's convention).
//! Short codes ([`super::short_code`]) are answered here. **202 goes back only after the
//! commit**; a failed commit gets 503 with Retry-After.
//!
//! **Trust.** Everything in the request is untrusted and parsed by pure code that never panics.
//!
//! Standards: RFC 3428, 3GPP TS 24.341 (SMS over IP), TS 23.040 (the SMS-SUBMIT inside).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use tracing::{info, warn};

use super::Transport;
use super::message::{self, Request, Response, Uri};
use super::short_code;
use crate::clock::now_unix;
use crate::config::{self, ShortCode, ShortService, UnknownImsi};
use crate::identity::{HandsetKey, Msisdn};
use crate::mail::facts::SmsFacts;
use crate::mail::from_sms::{self, SmsMail};
use crate::registry::{self};
use crate::sms::rp::RpMessage;
use crate::sms::{self, Submit, body};
use crate::spool::{Origin, OriginKind, QueueId};

use super::parts::StoredPart;
use super::service::{ACCEPT, Refusal, Service, refuse};
use crate::sms::tpdu::Body;
use crate::sms::udh::Concat;

pub(super) struct Sender {
    address: String,
    imsi: Option<String>,
    /// The sender's number, when it has one.
    number: Option<String>,
    /// An IMSI the registry does not know, with `unknown_imsi = "reject"`: refused unless
    /// it texts the registration short code.
    unknown: bool,
}

impl Service {
    pub(super) async fn message(
        &self,
        req: &Request,
        raw: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Response {
        let r = self.accept_message(req, raw, peer, transport).await;
        let m = crate::metrics::get();
        m.received(crate::metrics::Door::Sip, r.is_ok());
        if let Err((status, _)) = &r
            && let Some(reason) = refusal_reason(*status)
        {
            m.rejected(crate::metrics::Door::Sip, reason);
        }
        match r {
            Ok(()) => self.response(req, 202, "Accepted"),
            Err((status, reason)) => {
                let mut r = self.response(req, status, &reason);
                match status {
                    415 => r.headers.push("Accept", ACCEPT),
                    503 => r.headers.push(
                        "Retry-After",
                        self.cfg().sip.retry_after.0.as_secs().to_string(),
                    ),
                    _ => {}
                }
                info!(%peer, "MESSAGE refused: {status} {reason}");
                r
            }
        }
    }

    pub(super) async fn sender(&self, req: &Request) -> Result<Sender, Refusal> {
        let from = req.from().and_then(|f| Uri::parse(&f.uri));
        let Some(user) = from.map(|u| u.user).filter(|u| !u.is_empty()) else {
            return refuse(403, "Forbidden (no sender)");
        };
        let cfg = self.cfg();
        let domain = cfg.sms_domain();
        let key = HandsetKey::parse(&user).or_else(|_| refuse(403, "Forbidden (bad sender)"))?;
        if let HandsetKey::Imsi(i) = &key {
            let imsi = i.digits().to_string();
            // Through the registry's cache of known subscribers (5 s): a sender is looked
            // up for every text.
            let sub = self
                .registry
                .subscriber(&key)
                .await
                .or_else(|e| refuse(503, format!("Service Unavailable ({e})")))?;
            return match (sub, self.cfg().sip.unknown_imsi) {
                (Some(s), _) if s.enabled => Ok(Sender {
                    address: format!("{}@{domain}", s.msisdn),
                    imsi: Some(imsi),
                    number: Some(s.msisdn),
                    unknown: false,
                }),
                (Some(_), _) => refuse(403, "Forbidden (subscriber disabled)"),
                (None, policy) => Ok(Sender {
                    address: format!("IMSI{imsi}@{domain}"),
                    imsi: Some(imsi),
                    number: None,
                    unknown: policy == UnknownImsi::Reject,
                }),
            };
        }
        Ok(Sender {
            address: format!("{key}@{domain}"),
            imsi: None,
            number: Some(key.to_string()),
            unknown: false,
        })
    }

    pub(super) async fn accept_message(
        &self,
        req: &Request,
        raw: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Result<(), Refusal> {
        if !config::trusted(&self.cfg().sip.trusted_networks, peer.ip()) {
            return refuse(403, "Forbidden");
        }
        if self.writer.spool().low_on_space() {
            // Never a 5xx that is final for a full disk: the BTS tries again later.
            return refuse(503, "Service Unavailable (low on disk space)");
        }
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return refuse(400, "Empty body");
        }
        let sender = self.sender(req).await?;
        let mut facts = SmsFacts {
            imsi: sender.imsi.clone(),
            ..SmsFacts::default()
        };
        let Some((dest, text_or_part)) = self.payload(req, &mut facts)? else {
            // A delivery report or memory-available from the handset (TS 24.341 flows):
            // acknowledged, nothing to store.
            info!(%peer, sender = %sender.address, "RP report from handset");
            return Ok(());
        };
        let lifetime = self.lifetime(req, &facts);
        // The number the handset sent to: a status report names it, also when the text went
        // on to an e-mail address (smqueue's "address first" convention).
        facts.tp_da = Msisdn::parse(&dest).ok();
        let cfg = self.cfg();
        let code = match &text_or_part {
            Ok(text) if !starts_with_email(text) => short_code::find(&cfg.short_codes, &dest),
            _ => None,
        };
        if sender.unknown && code.is_none_or(|c| c.service != ShortService::Register) {
            return refuse(403, "Forbidden (unknown subscriber)");
        }
        if let (Some(code), Ok(text)) = (code, &text_or_part) {
            return self
                .short_code(code, &sender, text, lifetime, raw, peer, transport)
                .await;
        }
        match text_or_part {
            Ok(text) => {
                let (rcpt, text) = self.recipient(&dest, &text)?;
                let id = self
                    .spool_mail(
                        &sender.address,
                        &rcpt,
                        &text,
                        &facts,
                        lifetime,
                        raw.to_vec(),
                        peer,
                        transport.name(),
                    )
                    .await?;
                info!(queue_id = %id, "{id}: sip from=<{}>, to=<{rcpt}>, peer={peer}", sender.address);
                Ok(())
            }
            Err((concat, body)) => {
                self.store_part(StoredPart {
                    body,
                    sender: sender.address,
                    dest,
                    lifetime,
                    facts,
                    peer: peer.to_string(),
                    transport: transport.name().into(),
                    original_b64: base64::engine::general_purpose::STANDARD.encode(raw),
                    concat,
                })
                .await
            }
        }
    }

    /// What the MESSAGE carries, by its content type: the destination and the text or part,
    /// its SMS facts added to `facts`; `None` for an RP report from the handset.
    fn payload(
        &self,
        req: &Request,
        facts: &mut SmsFacts,
    ) -> Result<Option<(String, Payload)>, Refusal> {
        let ctype = req.headers.get("Content-Type").unwrap_or("");
        let (media, params) = ctype.split_once(';').unwrap_or((ctype, ""));
        let params = message::parse_params(params);
        let ruri_user = Uri::parse(&req.uri).map(|u| u.user).unwrap_or_default();
        let to_smsc = ruri_user.eq_ignore_ascii_case(&self.cfg().sip.smsc_name);
        match media.trim().to_ascii_lowercase().as_str() {
            "text/plain" => Ok(Some(plain_text(req, &params, to_smsc, &ruri_user))),
            "application/vnd.3gpp.sms" => sms_submit(req, to_smsc, &ruri_user, now_unix(), facts),
            _ => refuse(415, "Unsupported Media Type"),
        }
    }

    /// The queue lifetime of a text: `[queue] sms_lifetime`, shortened by the SMS validity
    /// period or the request's Expires ([`crate::delivery::schedule::sms_lifetime`]).
    fn lifetime(&self, req: &Request, facts: &SmsFacts) -> u64 {
        let expires = req
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok());
        crate::delivery::schedule::sms_lifetime(
            self.cfg().queue.sms_lifetime.0,
            facts.validity.map(Duration::from_secs),
            expires.map(Duration::from_secs),
        )
        .as_secs()
    }

    /// Answers a text to a short code with a reply text to the sender, queued (durably)
    /// before the 202.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn short_code(
        &self,
        code: &ShortCode,
        sender: &Sender,
        text: &str,
        lifetime: u64,
        raw: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Result<(), Refusal> {
        let imsi = sender.imsi.clone().unwrap_or_default();
        let mut number = sender.number.clone().unwrap_or_default();
        let claim = if code.service == ShortService::Register {
            let claim = self.register_claim(code, sender, text, peer).await?;
            match &claim {
                short_code::Claim::Welcome(m) | short_code::Claim::Taken(m) => {
                    number = m.to_string()
                }
                short_code::Claim::Already(n) => number = n.clone(),
                short_code::Claim::Error => {}
            }
            Some(claim)
        } else {
            None
        };
        let queued = self.queued().await;
        let time = crate::clock::format_time(now_unix());
        let reply = short_code::render(
            short_code::template(code, claim.as_ref()),
            &[
                ("number", if number.is_empty() { "none" } else { &number }),
                ("imsi", if imsi.is_empty() { "none" } else { &imsi }),
                ("queued", &queued.to_string()),
                ("time", &time),
                ("text", &text.chars().take(60).collect::<String>()),
            ],
        );
        // The reply goes to where the sender can be reached: its number once it has one.
        let to = match &claim {
            Some(short_code::Claim::Welcome(m)) => format!("{m}@{}", self.cfg().sms_domain()),
            _ => sender.address.clone(),
        };
        let from = format!("{}@{}", code.code, self.cfg().sms_domain());
        let id = self
            .spool_mail(
                &from,
                &to,
                &reply,
                &SmsFacts::default(),
                lifetime,
                raw.to_vec(),
                peer,
                transport.name(),
            )
            .await?;
        info!(queue_id = %id, "{id}: short code {} from=<{}>, reply to=<{to}>", code.code, sender.address);
        Ok(())
    }

    /// A text to the register short code: the number claimed, checked against the registry
    /// and, when it is free, given to the sender's IMSI.
    async fn register_claim(
        &self,
        code: &ShortCode,
        sender: &Sender,
        text: &str,
        peer: SocketAddr,
    ) -> Result<short_code::Claim, Refusal> {
        let unavailable =
            |e: crate::registry::RegistryError| (503, format!("Service Unavailable ({e})"));
        let claimed = short_code::claimed_number(text, code.min_digits, code.max_digits);
        let taken = match &claimed {
            Some(m) => {
                let d = m.digits().to_string();
                self.registry
                    .call(move |db| db.by_msisdn(&d))
                    .await
                    .map_err(unavailable)?
                    .is_some()
            }
            None => false,
        };
        let Some(imsi) = &sender.imsi else {
            return Ok(short_code::Claim::Error);
        };
        let claim = short_code::decide(claimed, sender.number.clone(), taken);
        if let short_code::Claim::Welcome(m) = &claim {
            let sub = registry::Subscriber {
                msisdn: m.digits().to_string(),
                imsi: Some(imsi.clone()),
                email: None,
                enabled: true,
            };
            self.registry
                .call(move |db| db.upsert(&sub))
                .await
                .map_err(unavailable)?;
            info!(%peer, "short code {}: IMSI{imsi} registered as {m}", code.code);
        }
        Ok(claim)
    }

    /// Messages in the queue files now (those the journal has not yet written out are not
    /// counted: an estimate, as smqueue's was).
    pub(super) async fn queued(&self) -> usize {
        let spool = std::sync::Arc::clone(self.writer.spool());
        tokio::task::spawn_blocking(move || {
            [
                crate::spool::Queue::Incoming,
                crate::spool::Queue::Active,
                crate::spool::Queue::Deferred,
            ]
            .iter()
            .map(|q| spool.list(*q).map_or(0, |l| l.len()))
            .sum()
        })
        .await
        .unwrap_or(0)
    }

    /// The recipient address and the text to send: smqueue's "address first" convention, or
    /// the number at our SMS domain.
    pub(super) fn recipient(&self, dest: &str, text: &str) -> Result<(String, String), Refusal> {
        if let Some((first, rest)) = text.split_once(' ')
            && is_email(first)
        {
            return Ok((first.to_string(), rest.to_string()));
        }
        let Ok(number) = Msisdn::parse(dest) else {
            return refuse(484, "Address Incomplete");
        };
        Ok((
            format!("{number}@{}", self.cfg().sms_domain()),
            text.to_string(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn spool_mail(
        &self,
        sender: &str,
        rcpt: &str,
        text: &str,
        facts: &SmsFacts,
        lifetime: u64,
        original: Vec<u8>,
        peer: SocketAddr,
        transport: &str,
    ) -> Result<QueueId, Refusal> {
        let spool = self.writer.spool();
        let mut file = spool.new_message(
            sender,
            &[rcpt.to_string()],
            Vec::new(),
            Origin {
                kind: OriginKind::Sip,
                peer: peer.to_string(),
                sender_number: None,
            },
            lifetime,
        );
        let id = file.id().to_string();
        let subject = self.cfg().sip.subject.clone();
        file.message = from_sms::build(&SmsMail {
            queue_id: &id,
            from: sender,
            to: rcpt,
            text,
            subject: (!subject.is_empty()).then_some(subject.as_str()),
            date: file.envelope.arrival,
            hostname: &self.cfg().hostname,
            peer: &peer.to_string(),
            protocol: "SIP",
            transport,
            facts,
        });
        file.original = original;
        self.writer.commit(file).await.map_err(|e| {
            warn!("spool commit failed: {e}");
            (503, "Service Unavailable (queue write error)".to_string())
        })
    }
}

/// What a MESSAGE carried: a whole text, or one part of a concatenated one.
type Payload = Result<String, (Concat, Body)>;

/// A `text/plain` MESSAGE: the destination (the To user when sent to the SMSC name, else the
/// Request-URI user) and the text in its charset, without a final line end.
fn plain_text(
    req: &Request,
    params: &[(String, Option<String>)],
    to_smsc: bool,
    ruri_user: &str,
) -> (String, Payload) {
    let charset = params
        .iter()
        .find(|(n, _)| n == "charset")
        .and_then(|(_, v)| v.clone())
        .unwrap_or_else(|| "utf-8".into());
    let text = decode_charset(&req.body, &charset);
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text)
        .to_string();
    let dest = if to_smsc {
        req.to()
            .and_then(|t| Uri::parse(&t.uri))
            .map(|u| u.user)
            .unwrap_or_default()
    } else {
        ruri_user.to_string()
    };
    (dest, Ok(text))
}

/// An `application/vnd.3gpp.sms` MESSAGE: the RP-DATA's SMS-SUBMIT, its facts (validity period
/// included) added to `facts`; the destination is the TP-DA when
/// sent to the SMSC name. `None` for an RP-ACK, RP-ERROR or RP-SMMA from the handset.
fn sms_submit(
    req: &Request,
    to_smsc: bool,
    ruri_user: &str,
    now: u64,
    facts: &mut SmsFacts,
) -> Result<Option<(String, Payload)>, Refusal> {
    let cte = req.headers.get("Content-Transfer-Encoding");
    let (rp_bytes, _) = body::decode_body(&req.body, cte)
        .or_else(|e| refuse(400, format!("Bad SMS body ({e})")))?;
    let rp =
        RpMessage::decode(&rp_bytes).or_else(|e| refuse(400, format!("Bad RP message ({e})")))?;
    let data = match rp {
        RpMessage::Data(d) if d.to_network => d,
        RpMessage::Ack(_) | RpMessage::Error(_) | RpMessage::Smma { .. } => return Ok(None),
        RpMessage::Data(_) => {
            return refuse(400, "RP-DATA in the network-to-mobile direction");
        }
    };
    let submit = match Submit::decode(&data.tpdu) {
        Ok(s) => s,
        Err(sms::SmsError::Compressed) => {
            return refuse(415, "Compressed SMS not supported");
        }
        Err(e) => return refuse(400, format!("Bad SMS-SUBMIT ({e})")),
    };
    facts.rp_mr = Some(data.message_ref);
    facts.smsc = data.destination.as_ref().map(ToString::to_string);
    facts.tp_mr = Some(submit.message_ref);
    facts.tp_pid = Some(submit.pid);
    facts.tp_dcs = Some(submit.dcs.raw);
    facts.class = submit.dcs.class;
    facts.status_report_request = Some(submit.status_report_request);
    facts.validity = submit.validity.and_then(|v| v.duration_secs(now as i64));
    facts.rp_data = Some(rp_bytes);
    let dest = if to_smsc {
        submit.destination.to_string()
    } else {
        ruri_user.to_string()
    };
    Ok(Some(match submit.user_data.concat() {
        Some(c) => (dest, Err((c, submit.user_data.body))),
        None => (dest, Ok(submit.user_data.body.text())),
    }))
}

/// What a refusal of a MESSAGE counts as: 403 (a sender the registry does not let text)
/// auth, 404/484 recipient, 413 size, 503 (no room, registry down) limit.
fn refusal_reason(status: u16) -> Option<crate::metrics::Reason> {
    use crate::metrics::Reason;
    match status {
        403 => Some(Reason::Auth),
        404 | 484 => Some(Reason::Recipient),
        413 => Some(Reason::Size),
        503 => Some(Reason::Limit),
        _ => None,
    }
}

/// Whether a text starts with an e-mail address and a space (smqueue's convention).
fn starts_with_email(text: &str) -> bool {
    text.split_once(' ')
        .is_some_and(|(first, _)| is_email(first))
}

fn is_email(s: &str) -> bool {
    crate::spool::inject::check_address(s).is_ok()
        && s.rsplit_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
}

/// Decodes a text/plain body in `charset` (any charset mail-parser knows; UTF-8 otherwise).
fn decode_charset(body: &[u8], charset: &str) -> String {
    let cs = charset.trim().to_ascii_lowercase();
    if cs == "utf-8" || cs == "utf8" || cs == "us-ascii" {
        return String::from_utf8_lossy(body).into_owned();
    }
    match mail_parser::decoders::charsets::map::charset_decoder(cs.as_bytes()) {
        Some(decode) => decode(body),
        None => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_detection_for_smqueue_convention() {
        assert!(is_email("alice@example.org"));
        assert!(!is_email("hello"));
        assert!(!is_email("a@b"));
        assert!(!is_email("@example.org"));
    }

    #[test]
    fn charsets() {
        assert_eq!(decode_charset(b"caf\xe9", "iso-8859-1"), "café");
        assert_eq!(decode_charset("café".as_bytes(), "UTF-8"), "café");
        assert_eq!(decode_charset(b"abc", "x-unknown"), "abc");
    }
}
