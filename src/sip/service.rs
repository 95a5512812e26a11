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
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::message::{self, Message, NameAddr, Parsed, Request, Response, Uri};
use super::short_code;
use super::transaction::{self, DedupKey, Seen, ServerTable};
use crate::config::{self, Config, ShortCode, ShortService, UnknownImsi};
use crate::identity::{HandsetKey, Msisdn};
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
/// The methods defined by RFC 3261 and its extensions: another gets 501, one of these that
/// smsmta does not serve 405.
const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "UPDATE",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];
const ALLOW_NO_REGISTER: &str = "MESSAGE, OPTIONS";
const ACCEPT: &str = "text/plain, application/vnd.3gpp.sms";
const GAP_MARK: &str = "[...]";
/// MESSAGEs waiting to enter the durable duplicate window, at most.
const SEEN_QUEUE: usize = 8192;

fn seen_row((k, until): (DedupKey, u64)) -> (String, u32, String, u64) {
    let (c, n, t) = k.parts();
    (c.to_string(), n, t.to_string(), until)
}

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
    seen_tx: mpsc::Sender<(DedupKey, u64)>,
    seen_rx: Mutex<Option<mpsc::Receiver<(DedupKey, u64)>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sip::Service")
    }
}

struct Sender {
    address: String,
    imsi: Option<String>,
    /// The sender's number, when it has one.
    number: Option<String>,
    /// An IMSI the registry does not know, with `unknown_imsi = "reject"`: refused unless
    /// it texts the registration short code.
    unknown: bool,
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
        let tag = format!("{:016x}", crate::sip::client::random_u64());
        let (seen_tx, seen_rx) = mpsc::channel(SEEN_QUEUE);
        Service {
            cfg,
            writer,
            registry,
            reachable,
            table: Mutex::new(table),
            tag,
            seen_tx,
            seen_rx: Mutex::new(Some(seen_rx)),
        }
    }

    /// Puts the MESSAGEs accepted before a restart back into the duplicate window (from the
    /// registry's `seen_messages`), so that a BTS resending one after the restart gets 202
    /// and not a second SMS. Call before the listeners start.
    pub async fn restore_seen(&self) {
        let now = now_unix();
        match self.registry.call(move |db| db.seen(now)).await {
            Ok(rows) => {
                let n = rows.len();
                let at = Instant::now();
                let mut t = self.table();
                for (call_id, cseq, from_tag, expires) in rows {
                    let left = std::time::Duration::from_secs(expires.saturating_sub(now));
                    t.restore(DedupKey::new(call_id, cseq, from_tag), left, at);
                }
                if n > 0 {
                    info!(
                        "sip: {n} MESSAGE(s) accepted before the restart are in the duplicate window"
                    );
                }
            }
            Err(e) => warn!("sip: cannot restore the duplicate window: {e}"),
        }
    }

    /// Writes the MESSAGEs answered 2xx to the registry in batches (at most every 50 ms), so the
    /// duplicate window outlives a restart. Runs until `shutdown`, then writes what is left.
    pub async fn persist_seen(&self, shutdown: CancellationToken) {
        let taken = match self.seen_rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(mut rx) = taken else {
            return;
        };
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => None,
                m = rx.recv() => m,
            };
            let mut batch: Vec<(String, u32, String, u64)> = Vec::new();
            let stopping = first.is_none();
            if let Some(m) = first {
                batch.push(seen_row(m));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            while batch.len() < SEEN_QUEUE {
                match rx.try_recv() {
                    Ok(m) => batch.push(seen_row(m)),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                let now = now_unix();
                if let Err(e) = self
                    .registry
                    .call(move |db| db.save_seen(&batch, now))
                    .await
                {
                    warn!("sip: cannot record the duplicate window: {e}");
                }
            }
            if stopping {
                return;
            }
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

    fn allow(&self) -> &'static str {
        if self.cfg.sip.register {
            ALLOW
        } else {
            ALLOW_NO_REGISTER
        }
    }

    /// Whether `ip` is inside `[sip] trusted_networks`.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        config::trusted(&self.cfg.sip.trusted_networks, ip)
    }

    /// TCP connections allowed from one address.
    pub fn max_connections_per_client(&self) -> usize {
        self.cfg.sip.max_connections_per_client
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

    /// The answers given without any state (RFC 3261 8.2.1-8.2.2): 403 to a source outside
    /// the trusted networks (before the transaction table, so strangers leave nothing behind),
    /// 501 to a method nobody defined, 400 to a Request-URI in angle brackets, 416 to one that
    /// is not SIP, 420 to a Require naming extensions (smsmta supports none).
    fn stateless(&self, req: &Request, peer: SocketAddr) -> Option<Response> {
        if !config::trusted(&self.cfg.sip.trusted_networks, peer.ip()) {
            tracing::debug!(%peer, "403 to {} from outside the trusted networks", req.method);
            return Some(self.response(req, 403, "Forbidden"));
        }
        if !KNOWN_METHODS.contains(&req.method.as_str()) {
            let mut r = self.response(req, 501, "Not Implemented");
            r.headers.push("Allow", self.allow());
            return Some(r);
        }
        if req.uri.contains(['<', '>', '"']) {
            // A Request-URI in <> (RFC 4475 3.1.2.7) is not guessed at.
            return Some(self.response(req, 400, "Malformed Request-URI"));
        }
        let scheme = req.uri.split_once(':').map(|(s, _)| s).unwrap_or("");
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Some(self.response(req, 416, "Unsupported URI Scheme"));
        }
        if req.method != "CANCEL" {
            let required: Vec<String> = req
                .headers
                .get_all("Require")
                .iter()
                .flat_map(|v| v.split(','))
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .take(16)
                .collect();
            if !required.is_empty() {
                let mut r = self.response(req, 420, "Bad Extension");
                r.headers.push("Unsupported", required.join(", "));
                return Some(r);
            }
        }
        None
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
                let (code, reason) = match e.reason {
                    "body too large" => (413, "Request Entity Too Large"),
                    message::UNSUPPORTED_VERSION => (505, "Version Not Supported"),
                    r => (400, r),
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
        if req.top_via().is_none() {
            warn!(%peer, "dropping SIP request without a usable Via");
            return None;
        }
        // Trust, method and scheme first: a stranger learns nothing more than 403, and an
        // unknown method is 501 whatever else is wrong with it (RFC 4475 3.1.2.16).
        if let Some(resp) = self.stateless(&req, peer) {
            return Some(resp.to_bytes());
        }
        if let Err(reason) = req.check_mandatory() {
            return Some(self.response(&req, 400, reason).to_bytes());
        }
        let (tx, dedup) = transaction::keys(&req)?;
        let now = Instant::now();
        match self.table().check(&tx, dedup.as_ref(), now) {
            Seen::New => {}
            Seen::InProgress => return None,
            Seen::Answered(bytes) => return Some(bytes),
            Seen::Accepted => {
                info!(%peer, "MESSAGE accepted before the restart sent again: answered, not queued twice");
                return Some(self.response(&req, 202, "Accepted").to_bytes());
            }
        }
        let resp = match req.method.as_str() {
            "MESSAGE" => self.message(&req, data, peer, transport).await,
            "REGISTER" if self.cfg.sip.register => self.register(&req, peer).await,
            "OPTIONS" => {
                let mut r = self.response(&req, 200, "OK");
                r.headers.push("Allow", self.allow());
                r.headers.push("Accept", ACCEPT);
                r
            }
            _ => {
                let mut r = self.response(&req, 405, "Method Not Allowed");
                r.headers.push("Allow", self.allow());
                r
            }
        };
        let bytes = resp.to_bytes();
        let durable = (200..300).contains(&resp.status) && req.method == "MESSAGE";
        self.table().answered(
            &tx,
            dedup.as_ref(),
            resp.status,
            bytes.clone(),
            Instant::now(),
        );
        if durable && let Some(d) = dedup {
            let until = now_unix() + self.cfg.sip.dedup_window.0.as_secs();
            // Best effort under overload: a full queue loses only the restart protection.
            let _ = self.seen_tx.try_send((d, until));
        }
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
        let key = HandsetKey::parse(&user).or_else(|_| refuse(403, "Forbidden (bad sender)"))?;
        if let HandsetKey::Imsi(imsi) = key {
            let imsi = imsi.digits().to_string();
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
        if self.writer.spool().low_on_space() {
            // Never a 5xx that is final for a full disk: the BTS tries again later.
            return refuse(503, "Service Unavailable (low on disk space)");
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
        // The number the handset sent to: a status report names it, also when the text went
        // on to an e-mail address (smqueue's "address first" convention).
        if let Ok(n) = Msisdn::parse(&dest) {
            facts.push(("TP-DA".into(), n.to_string()));
        }
        let code = match &text_or_part {
            Ok(text) if !starts_with_email(text) => short_code::find(&self.cfg.short_codes, &dest),
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

    /// Answers a text to a short code with a reply text to the sender, queued (durably)
    /// before the 202.
    #[allow(clippy::too_many_arguments)]
    async fn short_code(
        &self,
        code: &ShortCode,
        sender: &Sender,
        text: &str,
        lifetime: u64,
        raw: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Result<(), Refusal> {
        let unavailable =
            |e: crate::registry::RegistryError| (503, format!("Service Unavailable ({e})"));
        let imsi = sender.imsi.clone().unwrap_or_default();
        let mut number = sender.number.clone().unwrap_or_default();
        let claim = if code.service == ShortService::Register {
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
            let claim = match &sender.imsi {
                Some(_) => short_code::decide(claimed, sender.number.clone(), taken),
                None => short_code::Claim::Error,
            };
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
        let time = crate::spool::admin::format_time(now_unix());
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
            Some(short_code::Claim::Welcome(m)) => format!("{m}@{}", self.cfg.sms_domain()),
            _ => sender.address.clone(),
        };
        let from = format!("{}@{}", code.code, self.cfg.sms_domain());
        let id = self
            .spool_mail(
                &from,
                &to,
                &reply,
                &[],
                lifetime,
                raw.to_vec(),
                peer,
                transport.name(),
            )
            .await?;
        info!(queue_id = %id, "{id}: short code {} from=<{}>, reply to=<{to}>", code.code, sender.address);
        Ok(())
    }

    /// Messages in the queue files now (those the journal has not yet written out are not
    /// counted: an estimate, as smqueue's was).
    async fn queued(&self) -> usize {
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
    fn recipient(&self, dest: &str, text: &str) -> Result<(String, String), Refusal> {
        if let Some((first, rest)) = text.split_once(' ')
            && is_email(first)
        {
            return Ok((first.to_string(), rest.to_string()));
        }
        let Ok(number) = Msisdn::parse(dest) else {
            return refuse(484, "Address Incomplete");
        };
        Ok((
            format!("{number}@{}", self.cfg.sms_domain()),
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
                sender_number: None,
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
        // An address-of-record that names no handset is not ours (RFC 3261 10.3 step 3).
        let key = HandsetKey::parse(&aor).or_else(|_| refuse(404, "Not Found"))?;
        let aor = key.to_string();
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
                // A binding steers a handset's texts: only to a host inside the trusted
                // networks (a BTS), never to an address the registering party chose freely.
                let inside = crate::delivery::route::contact_target(&na.uri)
                    .is_some_and(|t| config::trusted(&self.cfg.sip.trusted_networks, t.addr.ip()));
                if !inside {
                    return refuse(403, "Forbidden (Contact outside the trusted networks)");
                }
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
            let msisdn = if let HandsetKey::Imsi(imsi) = &key {
                let i = imsi.digits().to_string();
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
        "TP-DA" => "TP-DA",
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
