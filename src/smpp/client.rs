//! smsmta as an ESME, the I/O: one task per bind to each `[[smpp.upstream]]` SMSC (a
//! transceiver, or a transmitter and a receiver), which connects, binds, keeps the link alive
//! with enquire_link, reconnects with backoff, sends the submit_sm the delivery job hands it
//! (at most `window` outstanding, at the [`Pace`] the SMSC allows) and passes every deliver_sm
//! it receives to the [`Inbound`] handler, answering deliver_sm_resp with the status that
//! handler returns (only after the text is durable: a crash before makes the SMSC resend).
//!
//! **Limits.** Every read waits at most `enquire_link + response_timeout` (an SMSC that says
//! nothing to an enquire_link is dropped), every write `response_timeout`; a PDU longer than
//! `[smpp] max_pdu_size` ends the connection; at most [`INBOUND_WINDOW`] deliver_sm are
//! handled at once (the next is not read until one is answered). A request with no response
//! in `response_timeout` fails, temporarily.
//!
//! **TLS.** With `tls`, the connection is TLS from the first byte (rustls); the SMSC's
//! certificate must verify against `tls_ca` or the system's roots for `tls_name`, or the
//! connection is dropped and retried: never carried on in clear.
//!
//! **Trust.** The SMSC is a peer like any other: its PDUs are decoded by [`super::pdu`], its
//! answers classified by [`crate::delivery::outcome::upstream`], its deliver_sm checked by the
//! handler (a number that is none of ours is refused).
//!
//! Standards: SMPP 3.4 (2.3 sessions, 2.8 windowing, 4.1 bind, 4.4 submit_sm, 4.6
//! deliver_sm, 4.11 enquire_link, 4.12 unbind).

use std::collections::HashMap;

use crate::metrics::{Door, Open, Role};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::agent::AgentError;
use super::esme::Pace;
use super::pdu::{self, Address, Bind, BindKind, Body, Pdu, Sm, status};
use crate::config::{Upstream, UpstreamBind};
use crate::limits::write_within;

/// deliver_sm from one SMSC handled at once, at most.
pub const INBOUND_WINDOW: usize = 64;
/// submit_sm waiting for a bind's turn, at most, per upstream.
const QUEUE: usize = 1024;

/// What a deliver_sm from upstream `name` becomes: the deliver_sm_resp's command_status.
pub type Inbound =
    Arc<dyn Fn(String, Sm) -> Pin<Box<dyn Future<Output = u32> + Send>> + Send + Sync>;

/// A submit_sm to send, and where its submit_sm_resp (status, message_id) goes.
#[derive(Debug)]
struct Request {
    sm: Sm,
    reply: oneshot::Sender<(u32, String)>,
}

/// One upstream: its configuration, the queue its transmitting bind takes submit_sm from, and
/// how many of its binds that transmit are up.
struct Link {
    cfg: Upstream,
    tx: mpsc::Sender<Request>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Request>>,
    transmitting: AtomicUsize,
}

/// The upstream SMSCs, by name.
#[derive(Clone, Default)]
pub struct Upstreams {
    links: HashMap<String, Arc<Link>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.links.keys()).finish()
    }
}

impl Upstreams {
    /// The upstreams of `cfgs` (not connected until [`Upstreams::spawn`]).
    pub fn new(cfgs: &[Upstream]) -> Upstreams {
        let links = cfgs
            .iter()
            .map(|c| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let link = Link {
                    cfg: c.clone(),
                    tx,
                    rx: tokio::sync::Mutex::new(rx),
                    transmitting: AtomicUsize::new(0),
                };
                (c.name.clone(), Arc::new(link))
            })
            .collect();
        Upstreams { links }
    }

    /// Starts every bind: each task runs until `shutdown`.
    pub fn spawn(
        &self,
        tasks: &mut JoinSet<()>,
        inbound: &Inbound,
        max_pdu: usize,
        shutdown: &CancellationToken,
    ) {
        for link in self.links.values() {
            let kinds: &[BindKind] = match link.cfg.bind {
                UpstreamBind::Transceiver => &[BindKind::Transceiver],
                UpstreamBind::Pair => &[BindKind::Transmitter, BindKind::Receiver],
            };
            for &kind in kinds {
                let (link, inbound, shutdown) =
                    (Arc::clone(link), Arc::clone(inbound), shutdown.clone());
                let span = tracing::info_span!("smpp-upstream", upstream = %link.cfg.name);
                tasks.spawn(
                    async move { keep_bound(link, kind, inbound, max_pdu, shutdown).await }
                        .instrument(span),
                );
            }
        }
    }

    /// Whether `name` has a bind up that can take submit_sm.
    pub fn is_bound(&self, name: &str) -> bool {
        self.links
            .get(name)
            .is_some_and(|l| l.transmitting.load(Ordering::Relaxed) > 0)
    }

    /// Sends `sm` to upstream `name` and waits at most `timeout` for its submit_sm_resp:
    /// (command_status, message_id).
    ///
    /// # Errors
    /// [`AgentError`] when no bind is up, its queue is full, or nothing answered.
    pub async fn submit(
        &self,
        name: &str,
        sm: Sm,
        timeout: Duration,
    ) -> Result<(u32, String), AgentError> {
        let link = self.links.get(name).ok_or(AgentError::NotBound)?;
        if link.transmitting.load(Ordering::Relaxed) == 0 {
            return Err(AgentError::NotBound);
        }
        let (reply, answer) = oneshot::channel();
        link.tx
            .try_send(Request { sm, reply })
            .map_err(|_| AgentError::Busy)?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err(AgentError::Closed),
            Err(_) => Err(AgentError::Timeout),
        }
    }
}

/// Connects and binds, serves until the link fails, waits (doubling from `reconnect_min` to
/// `reconnect_max`, reset by a bind that worked) and starts again, until `shutdown`.
async fn keep_bound(
    link: Arc<Link>,
    kind: BindKind,
    inbound: Inbound,
    max_pdu: usize,
    shutdown: CancellationToken,
) {
    let cfg = &link.cfg;
    let mut wait = cfg.reconnect_min.0;
    let mut tls = None;
    loop {
        let bound = match connect(cfg, &mut tls).await {
            Ok(Stream::Plain(stream)) => {
                let mut conn = Conn::new(&link, kind, stream, &inbound, max_pdu);
                conn.run(&shutdown).await
            }
            Ok(Stream::Tls(stream)) => {
                let mut conn = Conn::new(&link, kind, *stream, &inbound, max_pdu);
                conn.run(&shutdown).await
            }
            Err(e) => {
                warn!(
                    "smpp upstream {}: cannot connect to {}: {e}",
                    cfg.name, cfg.address
                );
                false
            }
        };
        if bound {
            wait = cfg.reconnect_min.0;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).clamp(Duration::from_millis(100), cfg.reconnect_max.0);
    }
}

/// A connection to an SMSC, in clear or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects to `cfg`'s SMSC within `response_timeout`, with TLS when `cfg.tls` (the connector
/// made once, in `tls`, and made again after a failure to load its roots).
async fn connect(
    cfg: &Upstream,
    tls: &mut Option<tokio_rustls::TlsConnector>,
) -> std::io::Result<Stream> {
    let timeout = cfg.response_timeout.0;
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
    let connector = if cfg.tls {
        if tls.is_none() {
            *tls = Some(tls_connector(cfg).map_err(std::io::Error::other)?);
        }
        tls.clone()
    } else {
        None
    };
    let s = tokio::time::timeout(timeout, TcpStream::connect(cfg.address.as_str()))
        .await
        .map_err(|_| timed_out())??;
    let _ = s.set_nodelay(true);
    let Some(connector) = connector else {
        return Ok(Stream::Plain(s));
    };
    let name = rustls_pki_types::ServerName::try_from(tls_name(cfg).to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let s = tokio::time::timeout(timeout, connector.connect(name, s))
        .await
        .map_err(|_| timed_out())??;
    Ok(Stream::Tls(Box::new(s)))
}

/// The name the SMSC's certificate must carry: `tls_name`, or the host of `address`.
fn tls_name(cfg: &Upstream) -> &str {
    if !cfg.tls_name.is_empty() {
        return &cfg.tls_name;
    }
    let host = cfg
        .address
        .rsplit_once(':')
        .map_or(&*cfg.address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The TLS client for `cfg`: rustls with the aws-lc-rs provider (the build's one crypto
/// backend), trusting the roots in `tls_ca` or, when it is empty, the system's.
///
/// # Errors
/// Why the roots do not load, or none is usable.
pub fn tls_connector(cfg: &Upstream) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = if cfg.tls_ca.as_os_str().is_empty() {
        rustls_native_certs::load_native_certs().certs
    } else {
        let path = cfg.tls_ca.display();
        CertificateDer::pem_file_iter(&cfg.tls_ca)
            .map_err(|e| format!("tls_ca {path}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls_ca {path}: {e}"))?
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(if cfg.tls_ca.as_os_str().is_empty() {
            "tls: the system has no root certificates; set tls_ca".to_string()
        } else {
            format!("tls_ca {}: no certificate in it", cfg.tls_ca.display())
        });
    }
    rustls_pki_types::ServerName::try_from(tls_name(cfg).to_string())
        .map_err(|e| format!("tls_name {:?}: {e}", tls_name(cfg)))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A submit_sm sent: its deadline, where its answer goes (status, message_id), and its
/// place in `smsmta_smpp_window_used`.
type Waiting = (Instant, oneshot::Sender<(u32, String)>, Open);

/// One bound connection.
struct Conn<'a, S> {
    link: &'a Link,
    kind: BindKind,
    stream: S,
    inbound: &'a Inbound,
    max_pdu: usize,
    buf: Vec<u8>,
    next_seq: u32,
    /// submit_sm sent: by sequence_number, with their deadline.
    /// Each counted in `smsmta_smpp_window_used` while it waits.
    waiting: HashMap<u32, Waiting>,
    /// deliver_sm being handled: (sequence_number, status).
    handling: JoinSet<(u32, u32)>,
    pace: Pace,
    /// An enquire_link sent and not answered yet: when.
    enquiring: Option<Instant>,
    last_heard: Instant,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Conn<'a, S> {
    fn new(
        link: &'a Link,
        kind: BindKind,
        stream: S,
        inbound: &'a Inbound,
        max_pdu: usize,
    ) -> Self {
        Conn {
            link,
            kind,
            stream,
            inbound,
            max_pdu,
            buf: Vec::with_capacity(4096),
            next_seq: 1,
            waiting: HashMap::new(),
            handling: JoinSet::new(),
            pace: Pace::new(link.cfg.max_rate),
            enquiring: None,
            last_heard: Instant::now(),
        }
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = if s >= 0x7FFF_FFFE { 1 } else { s + 1 };
        s
    }

    async fn send(&mut self, p: &Pdu) -> std::io::Result<()> {
        write_within(
            &mut self.stream,
            &pdu::encode(p),
            self.link.cfg.response_timeout.0,
        )
        .await
    }

    /// The next whole PDU, waiting at most `limit`; `None` at end of stream or timeout.
    async fn read_pdu(&mut self, limit: Duration) -> std::io::Result<Option<Pdu>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(p) = self.take_frame()? {
                return Ok(Some(p));
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(None),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// A whole frame from the buffer, decoded.
    fn take_frame(&mut self) -> std::io::Result<Option<Pdu>> {
        let bad =
            |e: pdu::PduError| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
        match pdu::frame_length(&self.buf, self.max_pdu).map_err(bad)? {
            Some(n) if self.buf.len() >= n => {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                self.last_heard = Instant::now();
                match pdu::decode(&frame) {
                    Ok(p) => Ok(Some(p)),
                    Err(e) => {
                        // Answer what cannot be read, and go on: the framing is intact.
                        let seq = pdu::header(&frame).map_or(0, |(_, s)| s);
                        debug!("smpp upstream: undecodable PDU: {e}");
                        Ok(Some(Pdu {
                            status: e.status(),
                            sequence: seq,
                            body: Body::Other(u32::MAX),
                        }))
                    }
                }
            }
            _ => Ok(None),
        }
    }

    /// Binds; `true` when the SMSC accepted.
    async fn bind(&mut self) -> std::io::Result<bool> {
        let cfg = &self.link.cfg;
        let b = Bind {
            system_id: cfg.system_id.clone(),
            password: cfg.password.clone(),
            system_type: cfg.system_type.clone(),
            interface_version: 0x34,
            range: Address::default(),
        };
        let seq = self.seq();
        let req = Pdu {
            status: 0,
            sequence: seq,
            body: Body::Bind(self.kind, b),
        };
        self.send(&req).await?;
        let limit = self.link.cfg.response_timeout.0;
        while let Some(p) = self.read_pdu(limit).await? {
            match p.body {
                Body::BindResp(_, ref sid) if p.sequence == seq => {
                    let ok = p.status == status::OK;
                    info!(
                        "smpp upstream {}: bind {:?} as {}: {}",
                        self.link.cfg.name,
                        self.kind,
                        self.link.cfg.system_id,
                        if ok {
                            format!("ok (SMSC {sid:?})")
                        } else {
                            format!("refused 0x{:08X}", p.status)
                        }
                    );
                    return Ok(ok);
                }
                Body::GenericNack if p.sequence == seq => {
                    warn!(
                        "smpp upstream {}: bind answered generic_nack 0x{:08X}",
                        self.link.cfg.name, p.status
                    );
                    return Ok(false);
                }
                Body::EnquireLink => self.answer(&p, Body::EnquireLinkResp).await?,
                _ => {}
            }
        }
        warn!("smpp upstream {}: no bind response", self.link.cfg.name);
        Ok(false)
    }

    async fn answer(&mut self, req: &Pdu, body: Body) -> std::io::Result<()> {
        let p = Pdu {
            status: 0,
            sequence: req.sequence,
            body,
        };
        self.send(&p).await
    }

    /// Binds and serves; `true` when the bind had been accepted.
    async fn run(&mut self, shutdown: &CancellationToken) -> bool {
        match self.bind().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return false,
        }
        let m = crate::metrics::get();
        let _up = (m.bind(Role::Upstream), m.connection(Door::Upstream));
        let transmits = self.kind.transmits();
        if transmits {
            self.link.transmitting.fetch_add(1, Ordering::Relaxed);
        }
        let result = self.serve(shutdown).await;
        if transmits {
            self.link.transmitting.fetch_sub(1, Ordering::Relaxed);
        }
        if let Err(e) = result {
            warn!("smpp upstream {}: link lost: {e}", self.link.cfg.name);
        }
        for (_, (_, reply, _)) in self.waiting.drain() {
            drop(reply);
        }
        // A deliver_sm being stored is answered if the link still takes it; if not, the SMSC
        // resends it and the duplicate is suppressed.
        while let Some(Ok((seq, st))) = self.handling.join_next().await {
            let _ = self
                .send(&Pdu {
                    status: st,
                    sequence: seq,
                    body: Body::DeliverSmResp,
                })
                .await;
        }
        true
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> std::io::Result<()> {
        let cfg = self.link.cfg.clone();
        let mut requests = if self.kind.transmits() {
            Some(self.link.rx.lock().await)
        } else {
            None
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            while let Some(p) = self.take_frame()? {
                if self.on_pdu(p).await? {
                    return Ok(());
                }
            }
            let now = Instant::now();
            let pace_wait = self.pace.wait(now.into_std());
            let room = self.waiting.len() < cfg.window;
            let can_send = requests.is_some() && room && pace_wait.is_zero();
            let can_read = self.handling.len() < INBOUND_WINDOW;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let seq = self.seq();
                    let _ = self.send(&Pdu { status: 0, sequence: seq, body: Body::Unbind }).await;
                    return Ok(());
                }
                Some(req) = async {
                    match requests.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                }, if can_send => {
                    let seq = self.seq();
                    self.pace.sent(Instant::now().into_std());
                    self.send(&Pdu { status: 0, sequence: seq, body: Body::SubmitSm(Box::new(req.sm)) }).await?;
                    let deadline = Instant::now() + cfg.response_timeout.0;
                    let counted = crate::metrics::get().window(Role::Upstream);
                    self.waiting.insert(seq, (deadline, req.reply, counted));
                }
                Some(done) = self.handling.join_next(), if !self.handling.is_empty() => {
                    if let Ok((seq, st)) = done {
                        self.send(&Pdu { status: st, sequence: seq, body: Body::DeliverSmResp }).await?;
                    }
                }
                r = async {
                    self.buf.reserve(4096);
                    self.stream.read_buf(&mut self.buf).await
                }, if can_read => match r {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                },
                _ = tokio::time::sleep(pace_wait), if !pace_wait.is_zero() => {}
                _ = tick.tick() => {
                    if !self.housekeeping(&cfg).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Timeouts and keep-alive; `false` when the link is dead.
    async fn housekeeping(&mut self, cfg: &Upstream) -> std::io::Result<bool> {
        let now = Instant::now();
        let expired: Vec<u32> = self
            .waiting
            .iter()
            .filter(|(_, (d, _, _))| *d <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            // Dropping the sender tells the job "no answer" (temporary).
            self.waiting.remove(&s);
        }
        if let Some(at) = self.enquiring
            && now.duration_since(at) > cfg.response_timeout.0
        {
            warn!(
                "smpp upstream {}: no enquire_link_resp; reconnecting",
                cfg.name
            );
            return Ok(false);
        }
        if self.enquiring.is_none() && now.duration_since(self.last_heard) >= cfg.enquire_link.0 {
            let seq = self.seq();
            self.send(&Pdu {
                status: 0,
                sequence: seq,
                body: Body::EnquireLink,
            })
            .await?;
            self.enquiring = Some(now);
        }
        Ok(true)
    }

    /// Handles one PDU from the SMSC; `true` when the link is to close.
    async fn on_pdu(&mut self, p: Pdu) -> std::io::Result<bool> {
        match p.body {
            Body::SubmitSmResp(id) => {
                if p.status == status::THROTTLED {
                    self.pace.throttled(Instant::now().into_std());
                }
                if let Some((_, reply, _)) = self.waiting.remove(&p.sequence) {
                    let _ = reply.send((p.status, id));
                }
            }
            Body::GenericNack => {
                if let Some((_, reply, _)) = self.waiting.remove(&p.sequence) {
                    let _ = reply.send((p.status, String::new()));
                }
            }
            Body::DeliverSm(sm) => {
                if self.kind.receives() {
                    let handler = Arc::clone(self.inbound);
                    let name = self.link.cfg.name.clone();
                    let seq = p.sequence;
                    let busy = crate::metrics::get().in_flight(Door::Upstream);
                    self.handling.spawn(async move {
                        let _busy = busy;
                        (seq, handler(name, *sm).await)
                    });
                } else {
                    self.send(&session_nack(status::INVBNDSTS, p.sequence))
                        .await?;
                }
            }
            Body::EnquireLink => self.answer(&p, Body::EnquireLinkResp).await?,
            Body::EnquireLinkResp => self.enquiring = None,
            Body::Unbind => {
                info!("smpp upstream {}: the SMSC unbinds", self.link.cfg.name);
                self.answer(&p, Body::UnbindResp).await?;
                return Ok(true);
            }
            Body::UnbindResp => return Ok(true),
            Body::DeliverSmResp | Body::BindResp(..) => {}
            Body::Other(u32::MAX) => self.send(&session_nack(p.status, p.sequence)).await?,
            Body::Bind(..) | Body::SubmitSm(_) | Body::Other(_) => {
                self.send(&session_nack(status::INVCMDID, p.sequence))
                    .await?;
            }
        }
        Ok(false)
    }
}

fn session_nack(st: u32, seq: u32) -> Pdu {
    super::session::nack(st, seq)
}
