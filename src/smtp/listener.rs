//! The SMTP listener: accepts each connection, then takes a slot for it (beyond
//! `[smtp] max_connections`, or the per-client cap, the client gets 421 and is closed), frames
//! lines with length limits, runs the [`Session`], commits accepted messages and answers 250
//! only after the commit.
//!
//! **Pipelining.** Every complete line already received is handled before the replies are
//! written, in order (RFC 2920).
//!
//! **Rate limits.** Messages an hour per client address (`[smtp] rate_limit`, 0 = off):
//! beyond it MAIL gets 450 4.7.1, because every mail to a number costs airtime.
//!
//! **Shutdown.** On cancel, an idle session (or one between transactions) gets
//! `421 4.3.2` and is closed; a session inside DATA is let finish its transaction.
//!
//! **Reload.** Each connection takes the [`SmtpServer`] in force when it is accepted (users,
//! trusted networks, limits, certificate; a reload swaps it, [`SmtpServer::renewed`]) and
//! keeps it to the end. Refusals are counted by reason (`smsmta_rejections_total`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use tracing::{Instrument, debug, info, warn};

use super::policy::NumberRules;
use super::session::{self, Accepted, CommitError, Session, SessionConfig, Step};
use crate::auth::Passwords;
use crate::clock::rfc5322_date;
use crate::config::{self, Config, Live};
use crate::limits::{PerClient, write_within};
use crate::metrics::{Door, Reason};
use crate::registry::Registry;
use crate::spool::{Origin, OriginKind, SpoolError, Writer};

/// Counts messages per client and hour.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// Messages an hour per client (0: unlimited); a reload may change it.
    per_hour: std::sync::atomic::AtomicU32,
    seen: Mutex<HashMap<String, (u64, u32)>>,
}

/// Clients the rate limiter holds at most.
const LIMITER_ENTRIES: usize = 100_000;

/// Rate limits count per authenticated user, else per client address.
fn limit_key(session: &Session, peer: SocketAddr) -> String {
    match session.user() {
        Some(u) => format!("user:{u}"),
        None => format!("ip:{}", peer.ip()),
    }
}

impl RateLimiter {
    /// A limiter allowing `per_hour` messages an hour per client (0: unlimited).
    pub fn new(per_hour: u32) -> Self {
        RateLimiter {
            per_hour: std::sync::atomic::AtomicU32::new(per_hour),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn per_hour(&self) -> u32 {
        self.per_hour.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u32)>> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether `who` has used its allowance for the hour `now / 3600`. When the table is
    /// full of this hour's clients, a client it does not hold is refused too (temporarily):
    /// the table stays bounded, and a flood of new addresses cannot reset anyone's count.
    pub fn exceeded(&self, who: &str, now: u64) -> bool {
        let per_hour = self.per_hour();
        if per_hour == 0 {
            return false;
        }
        let hour = now / 3600;
        let mut m = self.map();
        match m.get(who) {
            Some((h, n)) if *h == hour => *n >= per_hour,
            Some(_) => false,
            None => {
                if m.len() >= LIMITER_ENTRIES {
                    m.retain(|_, (h, _)| *h == hour);
                }
                m.len() >= LIMITER_ENTRIES
            }
        }
    }

    /// Counts one accepted message for `recipients` recipients (spam is counted by the
    /// texts it makes, not by the transactions).
    pub fn record(&self, who: &str, recipients: usize, now: u64) {
        if self.per_hour() == 0 {
            return;
        }
        let hour = now / 3600;
        let mut m = self.map();
        if m.len() >= LIMITER_ENTRIES && !m.contains_key(who) {
            m.retain(|_, (h, _)| *h == hour);
            if m.len() >= LIMITER_ENTRIES {
                return;
            }
        }
        let e = m.entry(who.to_string()).or_insert((hour, 0));
        if e.0 != hour {
            *e = (hour, 0);
        }
        e.1 =
            e.1.saturating_add(u32::try_from(recipients).unwrap_or(u32::MAX));
    }
}

/// Shared state of the SMTP listeners.
pub struct SmtpServer {
    cfg: Arc<Config>,
    writer: Writer,
    registry: Registry,
    /// Kept across reloads: a reload must not hand a spammer a fresh hour.
    limiter: Arc<RateLimiter>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    passwords: Passwords,
    user_list: Arc<Vec<crate::config::SmtpUser>>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

/// Loads the STARTTLS certificate chain and key (PEM) with rustls and its aws-lc-rs provider
/// (the one crypto backend in the build).
///
/// # Errors
/// [`TlsError`] when the files do not load or do not match.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

enum Outcome {
    Closed,
    StartTls,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpServer")
    }
}

impl SmtpServer {
    /// The listeners' shared state.
    ///
    /// # Errors
    /// [`TlsError`] when a configured certificate does not load.
    pub fn new(
        cfg: Arc<Config>,
        writer: Writer,
        registry: Registry,
    ) -> Result<SmtpServer, TlsError> {
        let limiter = Arc::new(RateLimiter::new(cfg.smtp.rate_limit));
        let tls = if cfg.smtp.tls_cert.as_os_str().is_empty() {
            None
        } else {
            Some(tls_acceptor(&cfg.smtp.tls_cert, &cfg.smtp.tls_key)?)
        };
        let passwords = Passwords::new(
            cfg.smtp
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone())),
        );
        Ok(SmtpServer {
            user_list: Arc::new(cfg.smtp.users.clone()),
            cfg,
            writer,
            registry,
            limiter,
            tls,
            passwords,
        })
    }

    /// The state for a reloaded configuration: users, trusted networks, limits and the
    /// certificate from `cfg`; the hourly counts and the failed-login delays carried over.
    ///
    /// # Errors
    /// [`TlsError`] when the new certificate does not load (the running one stays).
    pub fn renewed(&self, cfg: Arc<Config>) -> Result<SmtpServer, TlsError> {
        let mut next = SmtpServer::new(cfg, self.writer.clone(), self.registry.clone())?;
        self.limiter.per_hour.store(
            next.cfg.smtp.rate_limit,
            std::sync::atomic::Ordering::Relaxed,
        );
        next.limiter = Arc::clone(&self.limiter);
        next.passwords = next.passwords.keeping_failures(&self.passwords);
        Ok(next)
    }

    /// Whether `msisdn` (a recipient's local part) is an enabled subscriber. An IMSI-only
    /// handset is one when a subscriber has that IMSI, or when the operator lets unknown IMSIs
    /// text (`[sip] unknown_imsi = "accept"`): replies to their texts must arrive.
    async fn is_subscriber(&self, msisdn: &str) -> Result<bool, crate::registry::RegistryError> {
        let any_imsi = self.cfg.sip.unknown_imsi == crate::config::UnknownImsi::Accept
            && msisdn.starts_with("IMSI");
        match crate::identity::HandsetKey::parse(msisdn) {
            // An ESME's service number takes texts as a handset does.
            Ok(key)
                if crate::delivery::route::esme_service(&key, &self.cfg.smpp.esme).is_some() =>
            {
                Ok(true)
            }
            Ok(key) => Ok(match self.registry.subscriber(&key).await? {
                Some(s) => s.enabled,
                None => any_imsi,
            }),
            Err(_) => Ok(false),
        }
    }

    /// Checks a password against the user's SHA-512 crypt hash (off the async threads: the
    /// hash is deliberately slow).
    ///
    /// An unknown user is checked against a dummy hash of the same cost, so that names cannot
    /// be told from passwords by the time the answer takes. A client address that has failed
    /// before waits before each further try: 1 s after two failures, doubling up to 16 s, for
    /// 15 minutes after its last failure.
    async fn check_password(&self, user: &str, password: String, peer: IpAddr) -> bool {
        self.passwords.check(user, password, peer).await
    }

    fn session_config(&self, peer: IpAddr, submission: bool) -> SessionConfig {
        let s = &self.cfg.smtp;
        SessionConfig {
            hostname: self.cfg.hostname.clone(),
            domains: self.cfg.domains.clone(),
            trusted: config::trusted(&s.trusted_networks, peer),
            max_message_size: s.max_message_size.0 as usize,
            max_recipients: s.max_recipients,
            max_errors: s.max_errors,
            rules: NumberRules {
                country_code: s.country_code.clone(),
                national_prefix: s.national_prefix.clone(),
            },
            registry_authoritative: s.registry_authoritative,
            tls_available: self.tls.is_some(),
            auth_available: self.tls.is_some() && !self.passwords.is_empty(),
            auth_required: submission,
            users: Arc::clone(&self.user_list),
        }
    }

    async fn commit(&self, a: Accepted, peer: SocketAddr) -> Result<String, CommitError> {
        let spool = self.writer.spool();
        if spool.low_on_space() {
            warn!(%peer, "smtp: spool below its free-space reserve; 452 to the client");
            return Err(CommitError::NoSpace);
        }
        let all_local = a.recipients.iter().all(|r| {
            r.rsplit_once('@')
                .is_some_and(|(_, d)| self.cfg.is_local_domain(d))
        });
        let lifetime = if all_local {
            self.cfg.queue.sms_lifetime.0.as_secs()
        } else {
            self.cfg.queue.mail_lifetime.0.as_secs()
        };
        let mut file = spool.new_message(
            &a.sender,
            &a.recipients,
            Vec::new(),
            Origin {
                kind: OriginKind::Smtp,
                peer: peer.to_string(),
                sender_number: a.sender_number.as_ref().map(|n| n.digits().to_string()),
            },
            lifetime,
        );
        let id = file.id().to_string();
        let received = session::received_header(
            &a,
            peer.ip(),
            &self.cfg.hostname,
            &id,
            &rfc5322_date(file.envelope.arrival),
        );
        let mut message = received.into_bytes();
        // Control headers are smsmta's own: none from the outside world (forged reports).
        message.extend_from_slice(&crate::mail::provenance::strip_control_headers(&a.data));
        file.message = message;
        match self.writer.commit(file).await {
            Ok(id) => {
                info!(queue_id = %id, "{id}: client=[{}], helo={}, from=<{}>, nrcpt={}", peer.ip(), a.helo, a.sender, a.recipients.len());
                Ok(id.to_string())
            }
            Err(e) => {
                warn!("smtp commit failed: {e}");
                Err(match &e {
                    SpoolError::TooLarge { .. } => CommitError::TooLarge,
                    _ if e.io_kind() == Some(std::io::ErrorKind::StorageFull) => {
                        CommitError::NoSpace
                    }
                    _ => CommitError::Failed,
                })
            }
        }
    }
}

/// Accepts connections until `shutdown` is cancelled, then waits for the sessions.
/// `submission`: every session must authenticate before MAIL.
/// Each connection takes the server state in force when it is accepted (`live`: a reload
/// swaps it) and keeps it to the end.
pub async fn run(
    listener: TcpListener,
    live: impl Into<Live<SmtpServer>>,
    submission: bool,
    shutdown: CancellationToken,
) {
    let live = live.into();
    let first = live.get();
    let limit = Arc::new(Semaphore::new(first.cfg.smtp.max_connections));
    let per_client = PerClient::new(first.cfg.smtp.max_connections_per_client);
    drop(first);
    let mut tasks = JoinSet::new();
    loop {
        let Some((stream, peer)) = crate::limits::accept(&listener, &shutdown, "smtp").await else {
            break;
        };
        while tasks.try_join_next().is_some() {}
        let server = live.get();
        // Refusals never wait on the client: one try to write, then the socket is closed.
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            crate::metrics::get().rejected(Door::Smtp, Reason::Limit);
            let _ = stream.try_write(b"421 4.3.2 Too many connections, try again later\r\n");
            continue;
        };
        let slot = if crate::config::trusted(&server.cfg.smtp.trusted_networks, peer.ip()) {
            None
        } else {
            match per_client.try_acquire(peer.ip()) {
                Some(s) => Some(s),
                None => {
                    crate::metrics::get().rejected(Door::Smtp, Reason::Limit);
                    debug!(%peer, "smtp: too many connections from this address");
                    let _ = stream
                        .try_write(b"421 4.7.0 Error: too many connections from your address\r\n");
                    continue;
                }
            }
        };
        let shutdown = shutdown.clone();
        // One span per connection: every line logged inside names the peer.
        let span = tracing::info_span!("smtp", %peer);
        let open = crate::metrics::get().connection(Door::Smtp);
        tasks.spawn(
            async move {
                let _open = open;
                if let Err(e) = connection(stream, peer, &server, submission, shutdown).await {
                    debug!(%peer, "smtp connection: {e}");
                }
                drop(slot);
                drop(permit);
            }
            .instrument(span),
        );
    }
    while tasks.join_next().await.is_some() {}
}

/// Largest buffer kept for one line: longer lines are cut and flagged.
const LINE_BUF: usize = 4096;
/// Room made in the buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    server: &SmtpServer,
    submission: bool,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(server.session_config(peer.ip(), submission), peer.ip());
    let idle = server.cfg.smtp.idle_timeout.0;
    write_within(&mut stream, session.greeting().as_bytes(), idle).await?;
    let deadline = tokio::time::Instant::now() + server.cfg.smtp.session_timeout.0;
    match serve(&mut stream, &mut session, peer, server, &shutdown, deadline).await? {
        Outcome::Closed => Ok(()),
        Outcome::StartTls => {
            let Some(acceptor) = server.tls.clone() else {
                return Ok(());
            };
            let mut tls = match tokio::time::timeout(
                Duration::from_secs(30),
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    debug!(%peer, "smtp TLS handshake: {e}");
                    return Ok(());
                }
                Err(_) => return Ok(()),
            };
            session.tls_started();
            serve(&mut tls, &mut session, peer, server, &shutdown, deadline).await?;
            let _ = tls.shutdown().await;
            Ok(())
        }
    }
}

/// The first step for one line: the rate limit and the disk reserve are asked before MAIL,
/// the session decides the rest.
fn first_step(
    session: &mut Session,
    line: &[u8],
    too_long: bool,
    bare_lf: bool,
    peer: SocketAddr,
    server: &SmtpServer,
) -> Step {
    let is_mail = !session.in_data()
        && line
            .get(..4)
            .is_some_and(|c| c.eq_ignore_ascii_case(b"MAIL"));
    if is_mail
        && server
            .limiter
            .exceeded(&limit_key(session, peer), crate::clock::now_unix())
    {
        crate::metrics::get().rejected(Door::Smtp, Reason::Rate);
        Step::Reply(
            "450 4.7.1 Error: too many messages from this client, try again later\r\n".into(),
        )
    } else if is_mail && server.writer.spool().low_on_space() {
        Step::Reply("452 4.3.1 Error: insufficient system storage\r\n".into())
    } else {
        session.line(line, too_long, bare_lf)
    }
}

/// Carries out `step` and those it leads to (AUTH checks, subscriber lookups, commits) until
/// a reply; the replies collect in `out`. `Some` when the session ends or asks for TLS (what
/// is in `out` is then written).
async fn run_step<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    mut step: Step,
    peer: SocketAddr,
    server: &SmtpServer,
    out: &mut String,
) -> std::io::Result<Option<Outcome>> {
    let idle = server.cfg.smtp.idle_timeout.0;
    loop {
        if let Some(reason) = session.take_refusal() {
            crate::metrics::get().rejected(Door::Smtp, reason);
        }
        match step {
            Step::Reply(r) => {
                out.push_str(&r);
                return Ok(None);
            }
            Step::Close(r) => {
                out.push_str(&r);
                write_within(stream, out.as_bytes(), idle).await?;
                return Ok(Some(Outcome::Closed));
            }
            Step::StartTls(r) => {
                out.push_str(&r);
                write_within(stream, out.as_bytes(), idle).await?;
                tokio::time::timeout(idle, stream.flush())
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                // Anything pipelined after STARTTLS is dropped (RFC 3207 5).
                return Ok(Some(Outcome::StartTls));
            }
            Step::Authenticate { user, password } => {
                let ok = server.check_password(&user, password, peer.ip()).await;
                info!(%peer, "smtp AUTH {user}: {}", if ok { "ok" } else { "failed" });
                step = session.auth_result(user, ok);
            }
            Step::CheckSubscriber { address, msisdn } => {
                step = match server.is_subscriber(&msisdn).await {
                    Ok(k) => session.recipient_checked(address, k),
                    Err(e) => {
                        warn!("smtp registry lookup: {e}");
                        Step::Reply("451 4.3.0 Error: subscriber lookup failed\r\n".into())
                    }
                };
            }
            Step::Commit(accepted) => {
                let n = accepted.recipients.len();
                let busy = crate::metrics::get().in_flight(Door::Smtp);
                let r = server.commit(accepted, peer).await;
                drop(busy);
                crate::metrics::get().received(Door::Smtp, r.is_ok());
                if r.is_ok() {
                    server
                        .limiter
                        .record(&limit_key(session, peer), n, crate::clock::now_unix());
                }
                step = session.committed(r);
            }
        }
    }
}

/// Runs the session over `stream` until it closes, asks for TLS, or passes `deadline` (the
/// whole session) or `[smtp] data_timeout` (one DATA phase). Every read waits at most
/// `idle_timeout`, every write as long.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    peer: SocketAddr,
    server: &SmtpServer,
    shutdown: &CancellationToken,
    deadline: tokio::time::Instant,
) -> std::io::Result<Outcome> {
    let idle = server.cfg.smtp.idle_timeout.0;
    let mut data_deadline: Option<tokio::time::Instant> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out = String::new();
    let mut discarding = false; // inside an over-long line
    loop {
        // Handle every complete line buffered (pipelining), collecting the replies. `start`
        // walks the buffer; what was handled is dropped once, after the loop.
        let mut start = 0;
        while let Some(rel) = buf[start..].iter().position(|b| *b == b'\n') {
            let pos = start + rel;
            let bare_lf = pos == start || buf[pos - 1] != b'\r';
            let end = if bare_lf { pos } else { pos - 1 };
            let too_long = std::mem::take(&mut discarding) || end - start > LINE_BUF;
            let line = &buf[start..end.min(start + LINE_BUF)];
            start = pos + 1;
            let step = first_step(session, line, too_long, bare_lf, peer, server);
            if let Some(done) = run_step(stream, session, step, peer, server, &mut out).await? {
                return Ok(done);
            }
        }
        buf.drain(..start);
        if buf.len() > LINE_BUF {
            // An over-long line without its end yet: keep only the start, flag it.
            buf.truncate(LINE_BUF);
            discarding = true;
        }
        if !out.is_empty() {
            write_within(stream, out.as_bytes(), idle).await?;
            out.clear();
        }
        let now = tokio::time::Instant::now();
        data_deadline = match (session.in_data(), data_deadline) {
            (true, None) => Some(now + server.cfg.smtp.data_timeout.0),
            (true, d) => d,
            (false, _) => None,
        };
        let until = (now + idle)
            .min(deadline)
            .min(data_deadline.unwrap_or(deadline));
        let read = tokio::select! {
            _ = shutdown.cancelled(), if !session.in_data() => {
                write_within(stream, b"421 4.3.2 Service shutting down, closing connection\r\n", idle).await?;
                return Ok(Outcome::Closed);
            }
            r = async {
                // Read straight into the buffer's spare room (nothing zeroed, nothing copied).
                buf.reserve(READ_CHUNK);
                tokio::time::timeout_at(until, stream.read_buf(&mut buf)).await
            } => r,
        };
        let n = match read {
            Ok(r) => r?,
            Err(_) => {
                write_within(stream, b"421 4.4.2 Error: timeout exceeded\r\n", idle).await?;
                return Ok(Outcome::Closed);
            }
        };
        if n == 0 {
            return Ok(Outcome::Closed);
        }
        if discarding {
            discard_rest(&mut buf, n);
        }
    }
}

/// Drops the rest of an over-long line from the `n` octets just read, up to its end; the LF
/// that is kept ends the truncated line (which the caller flags as too long).
fn discard_rest(buf: &mut Vec<u8>, n: usize) {
    let fresh = buf.len().saturating_sub(n);
    match buf
        .get(fresh..)
        .and_then(|b| b.iter().position(|c| *c == b'\n'))
    {
        Some(p) => {
            buf.drain(fresh..fresh + p);
        }
        None => buf.truncate(fresh),
    }
}
