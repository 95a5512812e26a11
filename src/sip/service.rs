//! What each SIP request does. The listeners hand every datagram or TCP frame to
//! [`Service::handle`], which returns the bytes to send back, if any: stateless answers first
//! (403 to strangers before any state, 501, 400, 416, 420), then the transaction table
//! (retransmissions absorbed by [`super::transaction::ServerTable`], the duplicate window kept
//! durably), then the method: MESSAGE (`intake.rs`, with `parts.rs` for concatenated
//! texts), REGISTER (`registrar.rs`), OPTIONS (200).
//!
//! **Trust.** Everything in a request is untrusted and parsed by pure code that never panics.
//!
//! The configuration is read per request ([`Service::cfg`]): a reload's trusted networks and
//! limits hold from the next request on.
//!
//! Standards: RFC 3261 8.2 (UAS behaviour), 17.2 (server transactions), RFC 3428.

use crate::metrics::{Door, Reason};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Transport;
use super::message::{self, Message, Parsed, Request, Response};
use super::transaction::{self, DedupKey, Seen, ServerTable};
use crate::clock::now_unix;
use crate::config::{self, Config};
use crate::registry::{Reachable, Registry};
use crate::spool::Writer;

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
pub(super) const ACCEPT: &str = "text/plain, application/vnd.3gpp.sms";
/// MESSAGEs waiting to enter the durable duplicate window, at most.
const SEEN_QUEUE: usize = 8192;

fn seen_row((k, until): (DedupKey, u64)) -> (String, u32, String, u64) {
    let (c, n, t) = k.parts();
    (c.to_string(), n, t.to_string(), until)
}

/// A refusal: status and reason phrase.
pub(super) type Refusal = (u16, String);

pub(super) fn refuse<T>(status: u16, reason: impl Into<String>) -> Result<T, Refusal> {
    Err((status, reason.into()))
}

/// The SIP request handler.
pub struct Service {
    pub(super) cfg: crate::config::Live<Config>,
    pub(super) writer: Writer,
    pub(super) registry: Registry,
    pub(super) reachable: broadcast::Sender<Reachable>,
    pub(super) table: Mutex<ServerTable>,
    pub(super) tag: String,
    pub(super) seen_tx: mpsc::Sender<(DedupKey, u64)>,
    pub(super) seen_rx: Mutex<Option<mpsc::Receiver<(DedupKey, u64)>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sip::Service")
    }
}

impl Service {
    /// A handler committing through `writer`, looking subscribers up in `registry`, and
    /// publishing REGISTERs on `reachable`.
    pub fn new(
        cfg: impl Into<crate::config::Live<Config>>,
        writer: Writer,
        registry: Registry,
        reachable: broadcast::Sender<Reachable>,
    ) -> Service {
        let cfg = cfg.into();
        let now = cfg.get();
        let t1 = now.sip.t1.0;
        let table = ServerTable::new(t1 * 64, now.sip.dedup_window.0, 200_000);
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

    /// The configuration in force (a reload changes what the next request sees).
    pub(super) fn cfg(&self) -> Arc<Config> {
        self.cfg.get()
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

    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, ServerTable> {
        match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(super) fn response(&self, req: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::to(req, status, reason, &self.tag);
        r.headers.push("Server", "smsmta");
        r
    }

    pub(super) fn allow(&self) -> &'static str {
        if self.cfg().sip.register {
            ALLOW
        } else {
            ALLOW_NO_REGISTER
        }
    }

    /// Whether `ip` is inside `[sip] trusted_networks`.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        config::trusted(&self.cfg().sip.trusted_networks, ip)
    }

    /// TCP connections allowed from one address.
    pub fn max_connections_per_client(&self) -> usize {
        self.cfg().sip.max_connections_per_client
    }

    /// The largest body accepted.
    pub fn max_body(&self) -> usize {
        self.cfg().sip.max_message_size.0 as usize
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
        crate::metrics::get().rejected(Door::Sip, Reason::Limit);
        let mut r = self.response(&req, 503, "Service Unavailable");
        r.headers.push(
            "Retry-After",
            self.cfg().sip.retry_after.0.as_secs().to_string(),
        );
        Some(r.to_bytes())
    }

    /// The answers given without any state (RFC 3261 8.2.1-8.2.2): 403 to a source outside
    /// the trusted networks (before the transaction table, so strangers leave nothing behind),
    /// 501 to a method nobody defined, 400 to a Request-URI in angle brackets, 416 to one that
    /// is not SIP, 420 to a Require naming extensions (smsmta supports none).
    pub(super) fn stateless(&self, req: &Request, peer: SocketAddr) -> Option<Response> {
        if !config::trusted(&self.cfg().sip.trusted_networks, peer.ip()) {
            tracing::debug!(%peer, "403 to {} from outside the trusted networks", req.method);
            crate::metrics::get().rejected(Door::Sip, Reason::Trust);
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

    /// The answer to a request that did not parse: 400 with the reason (413 for a body too
    /// large, 505 for another SIP version) when its head can be addressed, else nothing.
    fn malformed(&self, e: message::ParseError, peer: SocketAddr) -> Option<Vec<u8>> {
        let Some(head) = e.head else {
            warn!(%peer, "dropping malformed SIP message: {}", e.reason);
            return None;
        };
        let (code, reason) = match e.reason {
            "body too large" => {
                crate::metrics::get().rejected(Door::Sip, Reason::Size);
                (413, "Request Entity Too Large")
            }
            message::UNSUPPORTED_VERSION => (505, "Version Not Supported"),
            r => (400, r),
        };
        if head.top_via().is_none() {
            warn!(%peer, "dropping malformed SIP request: {}", e.reason);
            return None;
        }
        warn!(%peer, "{code} to malformed request: {}", e.reason);
        Some(self.response(&head, code, reason).to_bytes())
    }

    /// Handles one request (a datagram, or one frame from a TCP stream); returns the response
    /// to send, or `None` (responses, ACKs, retransmissions still in progress, garbage).
    pub async fn handle(
        &self,
        data: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let max = self.cfg().sip.max_message_size.0 as usize;
        let req = match message::parse(data, transport == Transport::Udp, max) {
            Ok(Parsed::Complete(Message::Request(r), _)) => r,
            Ok(Parsed::Complete(Message::Response(_), _)) | Ok(Parsed::Incomplete) => return None,
            Err(e) => return self.malformed(e, peer),
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
            "REGISTER" if self.cfg().sip.register => self.register(&req, peer).await,
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
            let until = now_unix() + self.cfg().sip.dedup_window.0.as_secs();
            // Best effort under overload: a full queue loses only the restart protection.
            let _ = self.seen_tx.try_send((d, until));
        }
        Some(bytes)
    }
}
