//! The server: the spool (recovery, journal), the registry, the SIP and SMTP listeners and the
//! delivery worker (queue manager), with a graceful shutdown.
//!
//! [`start`] takes the spool's lock (one server per spool), runs start-up recovery, starts the
//! journal and the registry, binds the listeners ([`Sockets`]; port 0 allowed: [`Running`]
//! tells the addresses), starts each listener on its bound socket, and returns;
//! [`start_with`] does the same on sockets handed in. [`Running::shutdown`] stops the listeners, lets requests in flight
//! finish, then stops the journal within `shutdown_timeout`. [`Running::reload`] (SIGHUP in
//! [`serve`]) puts a re-read configuration in force (`reload.rs`).

use std::fs::OpenOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, Live};
use crate::delivery::manager;
use crate::registry::Reachable;
use crate::registry::{Registry, RegistryError};
use crate::sip::listener;
use crate::sip::service::Service;
use crate::smpp::listener::{self as smpp_listener, SmppServer};
use crate::smtp::listener::{self as smtp_listener, SmtpServer};
use crate::spool::{Spool, SpoolError, Writer, journal, recover};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The spool could not be opened or recovered.
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    /// The registry could not be opened.
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// Another server holds the spool's lock.
    #[error("{0}: another smsmta server is running on this spool")]
    Locked(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A task failed unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

pub mod reload;

/// How long a message may wait for delivery before it is returned (RFC 5321 4.5.4.1 asks for
/// 4-5 days; Postfix's `maximal_queue_lifetime` is 5d), for local submissions.
pub const DEFAULT_LIFETIME_SECS: u64 = 5 * 86_400;

/// The spool side of a running server: lock, writer, journal.
pub struct Server {
    writer: Writer,
    journal: Option<journal::Journal>,
    _lock: std::fs::File,
}

impl Server {
    /// Opens the spool, takes its lock, recovers it and starts the journal.
    ///
    /// # Errors
    /// [`AppError`] when the spool cannot be used.
    pub fn start(config: &Config) -> Result<Server, AppError> {
        let spool = Arc::new(Spool::open(
            &config.spool_dir,
            config.spool.max_message_size.0,
        )?);
        spool.set_min_free(config.spool.min_free.0);
        let lock_path = config.spool_dir.join("master.lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(SpoolError::io("open", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(AppError::Locked(lock_path.display().to_string()));
        }
        recover::recover(&spool)?;
        let (writer, journal) = if config.spool.journal {
            let j = journal::start(
                Arc::clone(&spool),
                journal::Options {
                    segment_size: config.spool.journal_segment_size.0,
                    max_batch: config.spool.max_batch,
                },
            )?;
            (Writer::journaled(Arc::clone(&spool), j.handle()), Some(j))
        } else {
            (Writer::direct(Arc::clone(&spool)), None)
        };
        Ok(Server {
            writer,
            journal,
            _lock: lock,
        })
    }

    /// The writer listeners commit through.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Stops the journal, waiting at most `timeout`.
    pub fn stop(self, timeout: Duration) {
        drop(self.writer);
        if let Some(j) = self.journal {
            j.shutdown(timeout);
        }
    }
}

/// A running server.
pub struct Running {
    /// What a reload swaps ([`Running::reload`]).
    pub doors: reload::Doors,
    /// The SIP UDP address actually bound.
    pub sip_udp: SocketAddr,
    /// The SIP TCP address actually bound.
    pub sip_tcp: SocketAddr,
    /// The SMTP address actually bound.
    pub smtp: SocketAddr,
    /// The submission address actually bound, if configured.
    pub submission: Option<SocketAddr>,
    /// The SMPP address actually bound, if configured.
    pub smpp: Option<SocketAddr>,
    /// The metrics endpoint's address, if enabled.
    pub metrics: Option<SocketAddr>,
    /// The registry.
    pub registry: Registry,
    /// REGISTER notifications.
    pub reachable: broadcast::Sender<Reachable>,
    /// The spool writer.
    pub writer: Writer,
    server: Server,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    timeout: Duration,
}

async fn bind_sip(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), AppError> {
    // With port 0, UDP picks the port and TCP must get the same one; retry if it is taken.
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| AppError::Bind { addr, source })?;
        let bound = udp
            .local_addr()
            .map_err(|source| AppError::Bind { addr, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if addr.port() != 0 => {
                return Err(AppError::Bind {
                    addr: bound,
                    source,
                });
            }
            Err(_) => continue,
        }
    }
    Err(AppError::Internal(format!(
        "no free port for SIP UDP and TCP on {}",
        addr.ip()
    )))
}

/// Watches the OpenBTS registry and publishes each handset whose `sip_buddies` row changed
/// (sipauthserve rewrites it when the handset registers) as reachable: its texts are due now.
async fn watch_openbts(
    path: std::path::PathBuf,
    every: Duration,
    reachable: broadcast::Sender<Reachable>,
    shutdown: CancellationToken,
) {
    let p = path.clone();
    let opened = tokio::task::spawn_blocking(move || crate::registry::Watcher::open(&p)).await;
    let mut watcher = match opened {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            warn!("OpenBTS registry watch off: {e}");
            return;
        }
        Err(e) => {
            warn!("OpenBTS registry watch off: {e}");
            return;
        }
    };
    info!(
        "watching the OpenBTS registry {} every {every:?}",
        path.display()
    );
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let polled = tokio::task::spawn_blocking(move || {
            let r = watcher.poll();
            (watcher, r)
        })
        .await;
        let (w, result) = match polled {
            Ok(x) => x,
            Err(e) => {
                warn!("OpenBTS registry watch stopped: {e}");
                return;
            }
        };
        watcher = w;
        match result {
            Ok(attached) => {
                failing = false;
                for a in attached {
                    let msisdn = a.msisdn.map(|m| m.digits().to_string());
                    info!(
                        "OpenBTS registry: {} ({}) registered",
                        a.imsi.name(),
                        msisdn.as_deref().unwrap_or("no number")
                    );
                    let _ = reachable.send(Reachable {
                        aor: a.imsi.name(),
                        msisdn,
                        contacts: Vec::new(),
                    });
                }
            }
            Err(e) if !failing => {
                failing = true;
                warn!("OpenBTS registry watch: {e}; retrying every {every:?}");
            }
            Err(_) => {}
        }
    }
}

/// The listening sockets, bound before the server starts, so that tests and a supervisor can
/// hand in sockets of their own ([`start_with`]).
#[derive(Debug)]
pub struct Sockets {
    /// SIP over UDP.
    pub sip_udp: UdpSocket,
    /// SIP over TCP.
    pub sip_tcp: TcpListener,
    /// SMTP (port 25 role: relay for our domains).
    pub smtp: TcpListener,
    /// Submission (port 587 role: authenticated users), if configured.
    pub submission: Option<TcpListener>,
    /// The SMPP server, if configured.
    pub smpp: Option<TcpListener>,
    /// The metrics endpoint, if enabled.
    pub metrics: Option<TcpListener>,
}

impl Sockets {
    /// Binds what the configuration names (port 0 allowed; SIP UDP and TCP share a port).
    ///
    /// # Errors
    /// [`AppError::Bind`] when an address cannot be bound.
    pub async fn bind(cfg: &Config) -> Result<Sockets, AppError> {
        let (sip_udp, sip_tcp) = bind_sip(cfg.sip.listen).await?;
        let smtp = bind_tcp(cfg.smtp.listen).await?;
        let submission = if cfg.smtp.submission_listen.is_empty() {
            None
        } else {
            let addr: SocketAddr = cfg
                .smtp
                .submission_listen
                .parse()
                .map_err(|e| AppError::Internal(format!("smtp.submission_listen: {e}")))?;
            Some(bind_tcp(addr).await?)
        };
        let smpp = if cfg.smpp.listen.is_empty() {
            None
        } else {
            let addr: SocketAddr = cfg
                .smpp
                .listen
                .parse()
                .map_err(|e| AppError::Internal(format!("smpp.listen: {e}")))?;
            Some(bind_tcp(addr).await?)
        };
        let metrics = if cfg.metrics.enabled {
            Some(bind_tcp(cfg.metrics.listen).await?)
        } else {
            None
        };
        Ok(Sockets {
            sip_udp,
            sip_tcp,
            smtp,
            submission,
            smpp,
            metrics,
        })
    }
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

fn local<T>(r: std::io::Result<T>) -> Result<T, AppError> {
    r.map_err(|e| AppError::Internal(e.to_string()))
}

/// Starts the server on the sockets the configuration names.
///
/// # Errors
/// [`AppError`] when the spool, the registry or a listener cannot be set up.
pub async fn start(config: Config) -> Result<Running, AppError> {
    let cfg = Arc::new(config);
    let server = start_spool(&cfg).await?;
    let sockets = Sockets::bind(&cfg).await?;
    run(cfg, server, sockets).await
}

/// Starts the server on sockets already bound (their addresses win over the configuration's).
///
/// # Errors
/// [`AppError`] when the spool or the registry cannot be set up.
pub async fn start_with(config: Config, sockets: Sockets) -> Result<Running, AppError> {
    let cfg = Arc::new(config);
    let server = start_spool(&cfg).await?;
    run(cfg, server, sockets).await
}

async fn start_spool(cfg: &Arc<Config>) -> Result<Server, AppError> {
    let c = Arc::clone(cfg);
    tokio::task::spawn_blocking(move || Server::start(&c))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
}

/// What the listeners and the queue manager share.
struct Shared {
    /// The configuration at start (what only a restart changes is read from here).
    cfg: Arc<Config>,
    /// The configuration in force (a reload swaps it).
    live: Live<Config>,
    writer: Writer,
    registry: Registry,
    /// smpp.sqlite: receipts awaited, parts held, duplicate digests (both SMPP roles).
    store: Arc<crate::smpp::store::Store>,
    reachable: broadcast::Sender<Reachable>,
    shutdown: CancellationToken,
}

async fn run(cfg: Arc<Config>, server: Server, sockets: Sockets) -> Result<Running, AppError> {
    let busy = cfg.registry.openbts_busy_timeout.0;
    let registry = Registry::open_with(cfg.registry_path(), cfg.openbts_path(), busy)?;
    // On disk when an SMPP door is configured, or was (receipts or parts may be held).
    let path = cfg.spool_dir.join("smpp.sqlite");
    let store = if cfg.smpp.upstream.is_empty() && sockets.smpp.is_none() && !path.exists() {
        crate::smpp::store::Store::in_memory()
    } else {
        crate::smpp::store::Store::open(&path)
    }
    .map_err(|e| AppError::Internal(e.to_string()))?;
    let sh = Shared {
        writer: server.writer().clone(),
        registry,
        store: Arc::new(store),
        reachable: broadcast::channel(1024).0,
        shutdown: CancellationToken::new(),
        live: Live::from(Arc::clone(&cfg)),
        cfg,
    };
    let mut tasks = JoinSet::new();
    let addr = |l: &TcpListener| local(l.local_addr());
    let (sip_udp, sip_tcp) = (
        local(sockets.sip_udp.local_addr())?,
        addr(&sockets.sip_tcp)?,
    );
    let smtp = addr(&sockets.smtp)?;
    let submission = sockets.submission.as_ref().map(addr).transpose()?;
    let smpp = sockets.smpp.as_ref().map(addr).transpose()?;
    let metrics = sockets.metrics.as_ref().map(addr).transpose()?;
    if let Some(l) = sockets.metrics {
        tasks.spawn(crate::metrics::endpoint::run(
            l,
            sh.writer.clone(),
            sh.shutdown.clone(),
        ));
    }
    let smtp_live = spawn_smtp(&mut tasks, &sh, sockets.smtp, sockets.submission)?;
    let binds = Arc::new(crate::smpp::agent::Binds::default());
    let smpp_live = sockets.smpp.map(|l| {
        let server = SmppServer::new(
            Arc::clone(&sh.cfg),
            sh.writer.clone(),
            sh.registry.clone(),
            Arc::clone(&binds),
            sh.reachable.clone(),
            Arc::clone(&sh.store),
        );
        let live = Live::new(server);
        tasks.spawn(smpp_listener::run(l, live.clone(), sh.shutdown.clone()));
        live
    });
    spawn_sip(&mut tasks, &sh, sockets.sip_udp, sockets.sip_tcp).await;
    if let Some(path) = sh.cfg.openbts_path()
        && !sh.cfg.registry.openbts_poll.0.is_zero()
    {
        let (every, r, s) = (
            sh.cfg.registry.openbts_poll.0,
            sh.reachable.clone(),
            sh.shutdown.clone(),
        );
        tasks.spawn(watch_openbts(path, every, r, s));
    }
    if sh.cfg.delivery.enabled {
        spawn_delivery(&mut tasks, &sh, binds).await?;
    }
    let ready = ready_line(&sh.cfg, sip_udp, sip_tcp, smtp, submission, smpp, metrics);
    info!("{ready}");
    Ok(Running {
        doors: reload::Doors {
            cfg: sh.live.clone(),
            smtp: smtp_live,
            smpp: smpp_live,
        },
        sip_udp,
        sip_tcp,
        smtp,
        submission,
        smpp,
        metrics,
        registry: sh.registry,
        reachable: sh.reachable,
        writer: sh.writer,
        server,
        shutdown: sh.shutdown,
        tasks,
        timeout: sh.cfg.shutdown_timeout.0,
    })
}

/// The SMTP listener, and the submission listener when configured, sharing one server
/// state (which a reload swaps).
fn spawn_smtp(
    tasks: &mut JoinSet<()>,
    sh: &Shared,
    smtp: TcpListener,
    submission: Option<TcpListener>,
) -> Result<Live<SmtpServer>, AppError> {
    let server = SmtpServer::new(Arc::clone(&sh.cfg), sh.writer.clone(), sh.registry.clone())
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let live = Live::new(server);
    if let Some(l) = submission {
        tasks.spawn(smtp_listener::run(
            l,
            live.clone(),
            true,
            sh.shutdown.clone(),
        ));
    }
    tasks.spawn(smtp_listener::run(
        smtp,
        live.clone(),
        false,
        sh.shutdown.clone(),
    ));
    Ok(live)
}

/// The SIP service (its duplicate window restored) and listeners, the persistence of the
/// duplicate window and the sweep of parts held past `concat_timeout`.
async fn spawn_sip(tasks: &mut JoinSet<()>, sh: &Shared, udp: UdpSocket, tcp: TcpListener) {
    let cfg = &sh.cfg;
    let service = Service::new(
        sh.live.clone(),
        sh.writer.clone(),
        sh.registry.clone(),
        sh.reachable.clone(),
    );
    let service = Arc::new(service);
    service.restore_seen().await;
    {
        let (service, shutdown) = (Arc::clone(&service), sh.shutdown.clone());
        tasks.spawn(async move { service.persist_seen(shutdown).await });
    }
    tasks.spawn(listener::run_udp(
        Arc::new(udp),
        Arc::clone(&service),
        cfg.sip.max_in_flight,
        sh.shutdown.clone(),
    ));
    tasks.spawn(listener::run_tcp(
        tcp,
        Arc::clone(&service),
        cfg.sip.max_connections,
        cfg.sip.tcp_idle_timeout.0,
        sh.shutdown.clone(),
    ));
    let shutdown = sh.shutdown.clone();
    let every =
        (cfg.sip.concat_timeout.0 / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => service.sweep_parts().await,
            }
        }
    });
}

/// The queue manager, under its supervisor.
async fn spawn_delivery(
    tasks: &mut JoinSet<()>,
    sh: &Shared,
    binds: Arc<crate::smpp::agent::Binds>,
) -> Result<(), AppError> {
    let cfg = &sh.cfg;
    // The hook goes in before the manager's first scan: a message published in between is
    // found by both, which the schedule takes once.
    let hints = manager::hints(sh.writer.spool(), cfg.domains.clone());
    let store = Arc::clone(&sh.store);
    let upstreams = crate::smpp::client::Upstreams::new(&cfg.smpp.upstream);
    let ctx = manager::Ctx::new(
        sh.live.clone(),
        sh.writer.clone(),
        sh.registry.clone(),
        binds,
        upstreams.clone(),
        store,
    )
    .await
    .map_err(|e| AppError::Internal(format!("delivery: cannot bind the SIP client: {e}")))?;
    let ctx = Arc::new(ctx);
    let inbound = manager::inbound(Arc::clone(&ctx));
    let max_pdu = usize::try_from(cfg.smpp.max_pdu_size.0).unwrap_or(usize::MAX);
    upstreams.spawn(tasks, &inbound, max_pdu, &sh.shutdown);
    tasks.spawn(manager::sweep(Arc::clone(&ctx), sh.shutdown.clone()));
    tasks.spawn(manager::supervise(
        ctx,
        hints,
        sh.reachable.clone(),
        sh.shutdown.clone(),
    ));
    Ok(())
}

/// The start-up line: what listens where.
fn ready_line(
    cfg: &Config,
    sip_udp: SocketAddr,
    sip_tcp: SocketAddr,
    smtp: SocketAddr,
    submission: Option<SocketAddr>,
    smpp: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> String {
    let delivery = if cfg.delivery.enabled {
        let relay = if cfg.delivery.smarthost.is_empty() {
            "none: MX"
        } else {
            cfg.delivery.smarthost.as_str()
        };
        format!("on (bts {}, smarthost {relay})", cfg.delivery.bts)
    } else {
        "off".to_string()
    };
    format!(
        "smsmta ready: spool {}, journal {}, domains {:?}, sip udp {sip_udp} tcp {sip_tcp}, smtp {smtp}, submission {}, smpp {}, metrics {}, delivery {delivery}",
        cfg.spool_dir.display(),
        if cfg.spool.journal { "on" } else { "off" },
        cfg.domains,
        submission.map_or("off".to_string(), |a| a.to_string()),
        smpp.map_or("off".to_string(), |a| a.to_string()),
        metrics.map_or("off".to_string(), |a| a.to_string()),
    )
}

impl Running {
    /// Re-reads `file` (the embedded default when `None`) and puts in force what may change
    /// at run time; logs what was applied, what waits for a restart, or why it was refused.
    ///
    /// # Errors
    /// [`reload::ReloadError`] when the file is refused (the running configuration stays).
    pub fn reload(
        &self,
        file: Option<&std::path::Path>,
    ) -> Result<crate::config::reload::Reload, reload::ReloadError> {
        self.doors.reload_and_report(file)
    }

    /// Stops accepting, lets work in flight finish (within `shutdown_timeout`), stops the
    /// journal.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(self.timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                "listeners did not finish within {:?}; aborting them",
                self.timeout
            );
            self.tasks.abort_all();
        }
        drop(self.writer);
        let server = self.server;
        let timeout = self.timeout;
        let _ = tokio::task::spawn_blocking(move || server.stop(timeout)).await;
        info!("stopped");
    }
}

/// Runs the server until `shutdown` completes; each SIGHUP re-reads `file` (the embedded
/// default when `None`) and applies what may change at run time ([`Running::reload`]).
///
/// # Errors
/// [`AppError`] when start-up fails.
pub async fn serve(
    config: Config,
    file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| AppError::Internal(e.to_string()))?;
    let running = start(config).await?;
    crate::notify::notify("READY=1");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = hup.recv() => {
                crate::notify::reloading();
                // Off the async threads: new password tables hash a dummy password at the
                // users' cost, and the certificate is read from disk.
                let (doors, f) = (running.doors.clone(), file.clone());
                let _ = tokio::task::spawn_blocking(move || doors.reload_and_report(f.as_deref()))
                    .await;
                crate::notify::notify("READY=1");
            }
        }
    }
    info!("shutting down");
    crate::notify::notify("STOPPING=1");
    running.shutdown().await;
    Ok(())
}

/// Resolves when SIGINT or SIGTERM arrives.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// service manager may send SIGTERM the instant it has READY=1, and a signal before the
/// handler exists would take the default action (death without a clean stop).
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {},
                    _ = i.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
