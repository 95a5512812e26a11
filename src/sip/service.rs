//! What each SIP request does: MESSAGE becomes a spooled mail, REGISTER binds a contact,
//! OPTIONS answers 200. The listeners hand every datagram or TCP frame to [`Service::handle`],
//! which returns the bytes to send back, if any.
//!
//! **MESSAGE (RFC 3428).** Only from `[sip] trusted_networks` (else 403). Bodies:
//! `text/plain` (charset parameter, default UTF-8) and `application/vnd.3gpp.sms` (binary,
//! ASCII hex or base64; an RP-DATA with an SMS-SUBMIT); others get 415 with Accept, an empty
//! body 400, a body over `[sip] max_message_size` 413. The sender is the From user; an
//! `IMSI...` user is mapped to its MSISDN through the registry (unknown: 403, or accepted as
//! IMSI@domain when configured). The destination is the TP-DA when the Request-URI user is
//! `[sip] smsc_name` (the To user for text/plain), else the Request-URI user; a text that
//! starts with an e-mail address and a space goes to that address (smqueue's convention).
//! Parts of a concatenated SMS are stored durably in the registry until all have arrived (or
//! `[sip] concat_timeout` passes), then become one mail. **202 goes back only after the commit**
//! (spool, or registry for a part); a failed commit gets 503 with Retry-After.
//!
//! **REGISTER (RFC 3261 10.3).** Only from trusted networks. Binds the To user (the address of
//! record) to each Contact for its expiry (Contact `expires` parameter, else the Expires
//! header, else `[registry] default_expires`, at most `max_expires`); `*` with Expires 0
//! removes all. Answers 200 with the current bindings and publishes "subscriber reachable".
//!
//! **Retransmissions** are absorbed by [`super::transaction::ServerTable`].
//!
//! **Trust.** Everything in a request is untrusted and parsed by pure code that never panics.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{info, warn};

use super::message::{self, Message, NameAddr, Parsed, Request, Response, Uri};
use super::transaction::{self, Seen, ServerTable};
use crate::config::{self, Config, UnknownImsi};
use crate::mail::from_sms::{self, SmsMail};
use crate::registry::{self, Registry};
use crate::sms::rp::RpMessage;
use crate::sms::segment::{Added, Partial};
use crate::sms::tpdu::Body;
use crate::sms::udh::Concat;
use crate::sms::{self, Submit, body};
use crate::spool::{Origin, OriginKind, QueueId, Writer, now_unix};

/// The transport a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// "Subscriber X is reachable": published after each REGISTER that binds a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    /// The address-of-record user (`IMSI001010000000001` or digits).
    pub aor: String,
    /// The subscriber's MSISDN, when the registry knows it.
    pub msisdn: Option<String>,
    /// The contacts now bound.
    pub contacts: Vec<String>,
}

const ALLOW: &str = "MESSAGE, REGISTER, OPTIONS";
const ACCEPT: &str = "text/plain, application/vnd.3gpp.sms";
const GAP_MARK: &str = "[...]";

/// A refusal: status and reason phrase.
type Refusal = (u16, String);

fn refuse<T>(status: u16, reason: impl Into<String>) -> Result<T, Refusal> {
    Err((status, reason.into()))
}

/// One part of a concatenated SMS, as stored in the registry until the rest arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPart {
    body: Body,
    sender: String,
    dest: String,
    lifetime: u64,
    facts: Vec<(String, String)>,
    peer: String,
    transport: String,
    original_b64: String,
    concat: Concat,
}

/// The SIP request handler.
pub struct Service {
    cfg: Arc<Config>,
    writer: Writer,
    registry: Registry,
    reachable: broadcast::Sender<Reachable>,
    table: Mutex<ServerTable>,
    tag: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sip::Service")
    }
}

struct Sender {
    address: String,
    imsi: Option<String>,
}

impl Service {
    /// A handler committing through `writer`, looking subscribers up in `registry`, and
    /// publishing REGISTERs on `reachable`.
    pub fn new(
        cfg: Arc<Config>,
        writer: Writer,
        registry: Registry,
        reachable: broadcast::Sender<Reachable>,
    ) -> Service {
        let t1 = cfg.sip.t1.0;
        let table = ServerTable::new(t1 * 64, cfg.sip.dedup_window.0, 200_000);
        let tag = format!("smsmta{:x}", std::process::id());
        Service {
            cfg,
            writer,
            registry,
            reachable,
            table: Mutex::new(table),
            tag,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ServerTable> {
        match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn response(&self, req: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::to(req, status, reason, &self.tag);
        r.headers.push("Server", "smsmta");
        r
    }

    /// The largest body accepted.
    pub fn max_body(&self) -> usize {
        self.cfg.sip.max_message_size.0 as usize
    }

    /// The answer to send when the listener is saturated: 503 with Retry-After, if the
    /// datagram parses far enough to answer.
    pub fn overloaded(&self, data: &[u8]) -> Option<Vec<u8>> {
        let req = match message::parse(data, true, usize::MAX) {
            Ok(Parsed::Complete(Message::Request(r), _)) => r,
            Err(e) => *e.head?,
            _ => return None,
        };
        if req.method == "ACK" {
            return None;
        }
        let mut r = self.response(&req, 503, "Service Unavailable");
        r.headers.push(
            "Retry-After",
            self.cfg.sip.retry_after.0.as_secs().to_string(),
        );
        Some(r.to_bytes())
    }

    /// Handles one request (a datagram, or one frame from a TCP stream); returns the response
    /// to send, or `None` (responses, ACKs, retransmissions still in progress, garbage).
    pub async fn handle(
        &self,
        data: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let max = self.cfg.sip.max_message_size.0 as usize;
        let req = match message::parse(data, transport == Transport::Udp, max) {
            Ok(Parsed::Complete(Message::Request(r), _)) => r,
            Ok(Parsed::Complete(Message::Response(_), _)) | Ok(Parsed::Incomplete) => return None,
            Err(e) => {
                let Some(head) = e.head else {
                    warn!(%peer, "dropping malformed SIP message: {}", e.reason);
                    return None;
                };
                let (code, reason) = if e.reason == "body too large" {
                    (413, "Request Entity Too Large")
                } else {
                    (400, e.reason)
                };
                if head.top_via().is_none() {
                    warn!(%peer, "dropping malformed SIP request: {}", e.reason);
                    return None;
                }
                warn!(%peer, "{code} to malformed request: {}", e.reason);
                return Some(self.response(&head, code, reason).to_bytes());
            }
        };
        if req.method == "ACK" {
            return None;
        }
        if let Err(reason) = req.check_mandatory() {
            if req.top_via().is_none() {
                warn!(%peer, "dropping SIP request: {reason}");
                return None;
            }
            return Some(self.response(&req, 400, reason).to_bytes());
        }
        let (tx, dedup) = transaction::keys(&req)?;
        let now = Instant::now();
        match self.table().check(&tx, dedup.as_ref(), now) {
            Seen::New => {}
            Seen::InProgress => return None,
            Seen::Answered(bytes) => return Some(bytes),
        }
        let resp = match req.method.as_str() {
            "MESSAGE" => self.message(&req, data, peer, transport).await,
            "REGISTER" => self.register(&req, peer).await,
            "OPTIONS" => {
                let mut r = self.response(&req, 200, "OK");
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", ACCEPT);
                r
            }
            _ => {
                let mut r = self.response(&req, 405, "Method Not Allowed");
                r.headers.push("Allow", ALLOW);
                r
            }
        };
        let bytes = resp.to_bytes();
        self.table().answered(
            &tx,
            dedup.as_ref(),
            resp.status,
            bytes.clone(),
            Instant::now(),
        );
        Some(bytes)
    }

    async fn message(
        &self,
        req: &Request,
        raw: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Response {
        match self.accept_message(req, raw, peer, transport).await {
            Ok(()) => self.response(req, 202, "Accepted"),
            Err((status, reason)) => {
                let mut r = self.response(req, status, &reason);
                match status {
                    415 => r.headers.push("Accept", ACCEPT),
                    503 => r.headers.push(
                        "Retry-After",
                        self.cfg.sip.retry_after.0.as_secs().to_string(),
                    ),
                    _ => {}
                }
                info!(%peer, "MESSAGE refused: {status} {reason}");
                r
            }
        }
    }

    async fn sender(&self, req: &Request) -> Result<Sender, Refusal> {
        let from = req.from().and_then(|f| Uri::parse(&f.uri));
        let Some(user) = from.map(|u| u.user).filter(|u| !u.is_empty()) else {
            return refuse(403, "Forbidden (no sender)");
        };
        let domain = self.cfg.sms_domain();
        if user.len() > 4 && user[..4].eq_ignore_ascii_case("IMSI") {
            let imsi =
                registry::normalize_imsi(&user).or_else(|_| refuse(403, "Forbidden (bad IMSI)"))?;
            let i2 = imsi.clone();
            let sub = self
                .registry
                .call(move |db| db.by_imsi(&i2))
                .await
                .or_else(|e| refuse(503, format!("Service Unavailable ({e})")))?;
            return match (sub, self.cfg.sip.unknown_imsi) {
                (Some(s), _) if s.enabled => Ok(Sender {
                    address: format!("{}@{domain}", s.msisdn),
                    imsi: Some(imsi),
                }),
                (Some(_), _) => refuse(403, "Forbidden (subscriber disabled)"),
                (None, UnknownImsi::Accept) => Ok(Sender {
                    address: format!("IMSI{imsi}@{domain}"),
                    imsi: Some(imsi),
                }),
                (None, UnknownImsi::Reject) => refuse(403, "Forbidden (unknown subscriber)"),
            };
        }
        let local = user.strip_prefix('+').unwrap_or(&user);
        if local.is_empty()
            || local.len() > 64
            || !local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        {
            return refuse(403, "Forbidden (bad sender)");
        }
        Ok(Sender {
            address: format!("{local}@{domain}"),
            imsi: None,
        })
    }

    async fn accept_message(
        &self,
        req: &Request,
        raw: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Result<(), Refusal> {
        if !config::trusted(&self.cfg.sip.trusted_networks, peer.ip()) {
            return refuse(403, "Forbidden");
        }
        let ctype = req.headers.get("Content-Type").unwrap_or("");
        let mut parts = ctype.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = message::parse_params(&ctype[ctype.find(';').unwrap_or(ctype.len())..]);
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return refuse(400, "Empty body");
        }
        let ruri_user = Uri::parse(&req.uri).map(|u| u.user).unwrap_or_default();
        let to_smsc = ruri_user.eq_ignore_ascii_case(&self.cfg.sip.smsc_name);
        let sender = self.sender(req).await?;
        let mut facts: Vec<(String, String)> = Vec::new();
        if let Some(i) = &sender.imsi {
            facts.push(("IMSI".into(), i.clone()));
        }
        let now = now_unix();
        let mut lifetime = self.cfg.queue.sms_lifetime.0.as_secs();
        if let Some(e) = req
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            lifetime = lifetime.min(e.max(60));
        }
        let (dest, text_or_part) = match media.as_str() {
            "text/plain" => {
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
                    ruri_user.clone()
                };
                (dest, Ok(text))
            }
            "application/vnd.3gpp.sms" => {
                let cte = req.headers.get("Content-Transfer-Encoding");
                let (rp_bytes, _) = body::decode_body(&req.body, cte)
                    .or_else(|e| refuse(400, format!("Bad SMS body ({e})")))?;
                let rp = RpMessage::decode(&rp_bytes)
                    .or_else(|e| refuse(400, format!("Bad RP message ({e})")))?;
                let data = match rp {
                    RpMessage::Data(d) if d.to_network => d,
                    RpMessage::Ack(_) | RpMessage::Error(_) | RpMessage::Smma { .. } => {
                        // A delivery report or memory-available from the handset (TS 24.341
                        // flows): acknowledged, nothing to store.
                        info!(%peer, sender = %sender.address, "RP report from handset: {rp:?}");
                        return Ok(());
                    }
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
                facts.push(("RP-MR".into(), data.message_ref.to_string()));
                if let Some(smsc) = &data.destination {
                    facts.push(("SMSC".into(), smsc.to_string()));
                }
                facts.push(("TP-MR".into(), submit.message_ref.to_string()));
                facts.push(("TP-PID".into(), format!("{:02X}", submit.pid)));
                facts.push(("TP-DCS".into(), format!("{:02X}", submit.dcs.raw)));
                if let Some(c) = submit.dcs.class {
                    facts.push(("Class".into(), c.to_string()));
                }
                facts.push((
                    "Status-Report-Request".into(),
                    if submit.status_report_request {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                ));
                if let Some(v) = submit.validity.and_then(|v| v.duration_secs(now as i64)) {
                    facts.push(("Validity".into(), v.to_string()));
                    lifetime = lifetime.min(v.max(60));
                }
                facts.push(("RP-DATA".into(), body::hex_encode(&rp_bytes)));
                let dest = if to_smsc {
                    submit.destination.to_string()
                } else {
                    ruri_user.clone()
                };
                match submit.user_data.concat() {
                    Some(c) => (dest, Err((c, submit.user_data.body))),
                    None => (dest, Ok(submit.user_data.body.text())),
                }
            }
            _ => return refuse(415, "Unsupported Media Type"),
        };
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

    /// The recipient address and the text to send: smqueue's "address first" convention, or
    /// the number at our SMS domain.
    fn recipient(&self, dest: &str, text: &str) -> Result<(String, String), Refusal> {
        if let Some((first, rest)) = text.split_once(' ')
            && is_email(first)
        {
            return Ok((first.to_string(), rest.to_string()));
        }
        let digits = dest.trim().strip_prefix('+').unwrap_or(dest.trim());
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return refuse(484, "Address Incomplete");
        }
        Ok((
            format!("{digits}@{}", self.cfg.sms_domain()),
            text.to_string(),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn spool_mail(
        &self,
        sender: &str,
        rcpt: &str,
        text: &str,
        facts: &[(String, String)],
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
            },
            lifetime,
        );
        let id = file.id().to_string();
        let subject = self.cfg.sip.subject.clone();
        file.message = from_sms::build(&SmsMail {
            queue_id: &id,
            from: sender,
            to: rcpt,
            text,
            subject: (!subject.is_empty()).then_some(subject.as_str()),
            date: file.envelope.arrival,
            hostname: &self.cfg.hostname,
            peer: &peer.to_string(),
            transport,
            facts: facts
                .iter()
                .filter_map(|(k, v)| fact_name(k).map(|n| (n, v.clone())))
                .collect(),
        });
        file.original = original;
        self.writer.commit(file).await.map_err(|e| {
            warn!("spool commit failed: {e}");
            (503, "Service Unavailable (queue write error)".to_string())
        })
    }

    fn part_key(p: &StoredPart) -> String {
        format!(
            "{}|{}|{}|{}",
            p.sender, p.dest, p.concat.reference, p.concat.total
        )
    }

    /// Stores a part durably; when it completes its message, spools the whole message.
    async fn store_part(&self, part: StoredPart) -> Result<(), Refusal> {
        let key = Self::part_key(&part);
        let json = serde_json::to_string(&part)
            .or_else(|e| refuse(500, format!("Server Internal Error ({e})")))?;
        let (k, seq, total) = (key.clone(), part.concat.seq, part.concat.total);
        let stored = self
            .registry
            .call(move |db| db.save_part(&k, seq, total, &json, now_unix()))
            .await
            .or_else(|e| refuse(503, format!("Service Unavailable ({e})")))?;
        if stored.len() < usize::from(total) {
            info!(
                "sip part {seq}/{total} of {key} stored ({} of {total} held)",
                stored.len()
            );
            return Ok(());
        }
        self.complete_parts(&key, stored, false).await
    }

    /// Spools the message of `key` from its stored parts (gaps marked when `incomplete`), then
    /// forgets the parts.
    async fn complete_parts(
        &self,
        key: &str,
        stored: Vec<(u8, String)>,
        incomplete: bool,
    ) -> Result<(), Refusal> {
        let parts: Vec<StoredPart> = stored
            .iter()
            .filter_map(|(_, j)| serde_json::from_str(j).ok())
            .collect();
        let Some(first) = parts.first().cloned() else {
            return Ok(());
        };
        let mut partial = Partial::new(&first.concat);
        let mut original = Vec::new();
        for p in &parts {
            if partial.add(&p.concat, p.body.clone()) == Added::New {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(&p.original_b64)
                    .unwrap_or_default();
                original.extend_from_slice(&raw);
            }
        }
        let text = partial.text(GAP_MARK);
        let (rcpt, text) = match self.recipient(&first.dest, &text) {
            Ok(r) => r,
            Err((status, reason)) => {
                // The destination was already accepted part by part; a bad one can only be
                // dropped now, loudly.
                warn!("concatenated SMS {key}: {status} {reason}; parts discarded");
                let k = key.to_string();
                let _ = self.registry.call(move |db| db.delete_parts(&k)).await;
                return Ok(());
            }
        };
        let mut facts = first.facts.clone();
        facts.retain(|(k, _)| k != "RP-DATA");
        facts.push((
            "Parts".into(),
            format!("{}/{}", parts.len(), first.concat.total),
        ));
        if incomplete {
            facts.push((
                "Incomplete".into(),
                format!("missing parts {:?}", partial.missing()),
            ));
        }
        let peer: SocketAddr = first
            .peer
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let id = self
            .spool_mail(
                &first.sender,
                &rcpt,
                &text,
                &facts,
                first.lifetime,
                original,
                peer,
                &first.transport,
            )
            .await?;
        info!(queue_id = %id, "{id}: sip from=<{}>, to=<{rcpt}>, parts={}/{}", first.sender, parts.len(), first.concat.total);
        let k = key.to_string();
        if let Err(e) = self.registry.call(move |db| db.delete_parts(&k)).await {
            // The message is queued; the parts would only be sent again after a restart.
            warn!(queue_id = %id, "cannot forget the parts of {key}: {e}");
        }
        Ok(())
    }

    /// Sends out, with the gaps marked, every concatenated SMS whose first part is older than
    /// `[sip] concat_timeout`. Run periodically.
    pub async fn sweep_parts(&self) {
        let cutoff = now_unix().saturating_sub(self.cfg.sip.concat_timeout.0.as_secs());
        let keys = match self
            .registry
            .call(move |db| db.stale_part_keys(cutoff))
            .await
        {
            Ok(k) => k,
            Err(e) => {
                warn!("concatenation sweep: {e}");
                return;
            }
        };
        for key in keys {
            let k = key.clone();
            match self.registry.call(move |db| db.parts(&k)).await {
                Ok(stored) => {
                    warn!(
                        "concatenated SMS {key}: timed out with {} part(s); sending what arrived",
                        stored.len()
                    );
                    if let Err((s, r)) = self.complete_parts(&key, stored, true).await {
                        warn!("concatenated SMS {key}: {s} {r}; retrying at the next sweep");
                    }
                }
                Err(e) => warn!("concatenation sweep: {e}"),
            }
        }
    }

    async fn register(&self, req: &Request, peer: SocketAddr) -> Response {
        match self.do_register(req, peer).await {
            Ok(bindings) => {
                let mut r = self.response(req, 200, "OK");
                let now = now_unix();
                for b in &bindings {
                    r.headers.push(
                        "Contact",
                        format!("<{}>;expires={}", b.contact, b.expires.saturating_sub(now)),
                    );
                }
                r.headers
                    .push("Date", from_sms::rfc5322_date(now).replace("+0000", "GMT"));
                r
            }
            Err((status, reason)) => self.response(req, status, &reason),
        }
    }

    async fn do_register(
        &self,
        req: &Request,
        peer: SocketAddr,
    ) -> Result<Vec<registry::Binding>, Refusal> {
        if !config::trusted(&self.cfg.sip.trusted_networks, peer.ip()) {
            return refuse(403, "Forbidden");
        }
        let aor = req
            .to()
            .and_then(|t| Uri::parse(&t.uri))
            .map(|u| u.user)
            .filter(|u| !u.is_empty())
            .ok_or((400, "Bad To".to_string()))?;
        let aor = if aor.len() > 4 && aor[..4].eq_ignore_ascii_case("IMSI") {
            format!(
                "IMSI{}",
                registry::normalize_imsi(&aor).or_else(|_| refuse(400, "Bad IMSI"))?
            )
        } else {
            aor.strip_prefix('+').unwrap_or(&aor).to_string()
        };
        let max = self.cfg.registry.max_expires.0.as_secs();
        let header_expires = req
            .headers
            .get("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let default = header_expires.unwrap_or(self.cfg.registry.default_expires.0.as_secs());
        let values = req.headers.get_all("Contact");
        let remove_all = values.iter().any(|v| v.trim() == "*");
        if remove_all && (values.len() != 1 || header_expires != Some(0)) {
            return refuse(400, "Contact * needs Expires: 0 and no other Contact");
        }
        let mut contacts = Vec::new();
        if !remove_all {
            for v in &values {
                let na = NameAddr::parse(v).ok_or((400, "Bad Contact".to_string()))?;
                let exp = na
                    .param("expires")
                    .and_then(|e| e.parse::<u64>().ok())
                    .unwrap_or(default)
                    .min(max);
                contacts.push((na.uri, exp));
            }
        }
        let (a, c, src) = (aor.clone(), contacts.clone(), peer.to_string());
        let bindings = self
            .registry
            .call(move |db| db.register(&a, &c, remove_all, &src, now_unix()))
            .await
            .or_else(|e| refuse(503, format!("Service Unavailable ({e})")))?;
        info!(%peer, "REGISTER {aor}: {} binding(s)", bindings.len());
        if contacts.iter().any(|(_, e)| *e > 0) {
            let msisdn = if let Some(imsi) = aor.strip_prefix("IMSI") {
                let i = imsi.to_string();
                self.registry
                    .call(move |db| db.by_imsi(&i))
                    .await
                    .ok()
                    .flatten()
                    .map(|s| s.msisdn)
            } else {
                Some(aor.clone())
            };
            let _ = self.reachable.send(Reachable {
                aor,
                msisdn,
                contacts: bindings.iter().map(|b| b.contact.clone()).collect(),
            });
        }
        Ok(bindings)
    }
}

fn fact_name(k: &str) -> Option<&'static str> {
    Some(match k {
        "IMSI" => "IMSI",
        "RP-MR" => "RP-MR",
        "SMSC" => "SMSC",
        "TP-MR" => "TP-MR",
        "TP-PID" => "TP-PID",
        "TP-DCS" => "TP-DCS",
        "Class" => "Class",
        "Status-Report-Request" => "Status-Report-Request",
        "Validity" => "Validity",
        "RP-DATA" => "RP-DATA",
        "Parts" => "Parts",
        "Incomplete" => "Incomplete",
        _ => return None,
    })
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
