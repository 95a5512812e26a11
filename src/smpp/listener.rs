//! The SMPP server's I/O: accept, PDU framing, the window, timeouts, bind checks and commits;
//! and, on a bind that receives, the deliver_sm the SMPP agent queues ([`super::agent`]),
//! matched to their deliver_sm_resp by sequence_number.
//!
//! **Limits.** At most `[smpp] max_connections` open connections, `max_connections_per_client`
//! from one address: one more is closed at once.
//! A connection that has not bound within `bind_timeout`, or a bound one silent for
//! `idle_timeout`, is closed. A command_length below the header or above `max_pdu_size` gets
//! generic_nack and the connection closes (the framing is lost). At most `window` submit_sm are
//! outstanding: the next PDU is not read until one is answered. A bind's `max_rate` caps
//! submit_sm a second (ESME_RTHROTTLED above it). Every write waits at most `idle_timeout`.
//!
//! **Trust.** A bind is accepted only for a configured account, from one of its networks,
//! with its password (checked as SMTP AUTH is, [`crate::auth`]): nothing else of a stranger
//! is kept. A submit_sm is answered OK, with the queue ID as message_id, only after the
//! message is durable ([`crate::spool::Writer::commit`]); a full disk or a failed commit is
//! ESME_RMSGQFUL, which ESMEs retry.
//!
//! **Reload.** Each connection takes the [`SmppServer`] in force when it is accepted (the
//! accounts, the limits; [`SmppServer::renewed`]) and keeps it while bound.
//!
//! Standards: SMPP 3.4 (2.3 sessions, 2.8 windowing, 4.1 bind, 4.4 submit_sm, 4.6
//! deliver_sm, 5.1.3 command_status).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::agent::{Binds, Outbound};
use super::pdu::{self, BindKind, status};
use super::session::{self, Account, Session, SessionConfig, Step, Submission};
use crate::auth::Passwords;
use crate::config::{self, Config, EsmeAccount, Live};
use crate::limits::{PerClient, write_within};
use crate::mail::facts::SmsFacts;
use crate::metrics::{Door, Reason, Role};
use crate::registry::Registry;
use crate::spool::Writer;

/// What every SMPP connection shares.
pub struct SmppServer {
    cfg: Arc<Config>,
    writer: Writer,
    registry: Registry,
    passwords: Passwords,
    accounts: HashMap<String, EsmeAccount>,
    binds: Arc<Binds>,
    reachable: tokio::sync::broadcast::Sender<crate::registry::Reachable>,
    store: Arc<super::store::Store>,
}

impl std::fmt::Debug for SmppServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmppServer")
    }
}

impl SmppServer {
    /// The server for `cfg`'s `[smpp]` accounts.
    /// `reachable`: where a receiving bind announces its service numbers, whose texts are
    /// then due at once (as a REGISTER makes a handset's).
    pub fn new(
        cfg: Arc<Config>,
        writer: Writer,
        registry: Registry,
        binds: Arc<Binds>,
        reachable: tokio::sync::broadcast::Sender<crate::registry::Reachable>,
        store: Arc<super::store::Store>,
    ) -> SmppServer {
        let accounts: HashMap<String, EsmeAccount> = cfg
            .smpp
            .esme
            .iter()
            .map(|a| (a.system_id.clone(), a.clone()))
            .collect();
        let passwords = Passwords::new(
            accounts
                .values()
                .map(|a| (a.system_id.clone(), a.password_hash.clone())),
        );
        SmppServer {
            cfg,
            writer,
            registry,
            passwords,
            accounts,
            binds,
            reachable,
            store,
        }
    }

    /// The state for a reloaded configuration: accounts (credentials, networks, sources,
    /// service numbers) and limits from `cfg`; the binds, the store and the failed-bind
    /// delays carried over. Binds already made keep the account they were made with.
    pub fn renewed(&self, cfg: Arc<Config>) -> SmppServer {
        let next = SmppServer::new(
            cfg,
            self.writer.clone(),
            self.registry.clone(),
            Arc::clone(&self.binds),
            self.reachable.clone(),
            Arc::clone(&self.store),
        );
        SmppServer {
            passwords: next.passwords.keeping_failures(&self.passwords),
            ..next
        }
    }

    /// A bind's verdict: the account, or the status to refuse it with. The password is
    /// checked even for a network the account may not use, so that the answer's time tells
    /// nothing; the status then says only "bind failed".
    async fn authenticate(&self, bind: &pdu::Bind, peer: SocketAddr) -> Result<Account, u32> {
        let ok = self
            .passwords
            .check(&bind.system_id, bind.password.clone(), peer.ip())
            .await;
        let account = self.accounts.get(&bind.system_id);
        match account {
            Some(a) if ok && config::trusted(&a.networks, peer.ip()) => Ok(Account {
                system_id: a.system_id.clone(),
                sources: a.sources.clone(),
            }),
            Some(_) if ok => Err(status::BINDFAIL),
            Some(_) => Err(status::INVPASWD),
            None => Err(status::INVSYSID),
        }
    }

    /// Stores a checked submission (see [`super::intake::store`]); the account that submitted
    /// is kept when it asked for a receipt.
    async fn store(
        &self,
        account: &Account,
        sub: Submission,
        peer: SocketAddr,
    ) -> Result<String, u32> {
        let joined;
        let text = match &sub.part {
            None => &sub.text,
            Some((c, body)) => {
                // The originator is checked before a part is kept, as for a whole text.
                super::intake::originator(&sub.source).ok_or(status::INVSRCADR)?;
                let key = format!(
                    "esme:{}|{}|{}|{}",
                    account.system_id,
                    sub.source,
                    sub.dest.digits(),
                    c.reference
                );
                let now = crate::clock::now_unix();
                match super::intake::keep_part(&self.store, key, *c, body, now).await? {
                    // Kept: the ESME gets an ID of its own for this part (no receipt names it).
                    None => return Ok(format!("P{:016X}", crate::random::u64())),
                    Some(t) => {
                        joined = t;
                        &joined
                    }
                }
            }
        };
        let text = super::intake::Text {
            source: &sub.source,
            dest: sub.dest.digits(),
            text,
            facts: SmsFacts {
                status_report_request: Some(sub.receipt),
                esme: sub.receipt.then(|| account.system_id.clone()),
                ..SmsFacts::default()
            },
            peer: peer.to_string(),
            via: format!("system_id={}", account.system_id),
            door: crate::metrics::Door::Smpp,
        };
        super::intake::store(&self.cfg, &self.writer, &self.registry, text).await
    }
}

/// Runs the SMPP listener until `shutdown` is cancelled, then waits for its connections.
/// Each connection takes the server state in force when it is accepted (`live`: a reload
/// swaps it) and keeps it to the end.
pub async fn run(
    listener: TcpListener,
    live: impl Into<Live<SmppServer>>,
    shutdown: CancellationToken,
) {
    let live = live.into();
    let first = live.get();
    let limit = Arc::new(Semaphore::new(first.cfg.smpp.max_connections));
    let per_client = PerClient::new(first.cfg.smpp.max_connections_per_client);
    drop(first);
    let mut tasks = JoinSet::new();
    loop {
        let Some((stream, peer)) = crate::limits::accept(&listener, &shutdown, "smpp").await else {
            break;
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            crate::metrics::get().rejected(Door::Smpp, Reason::Limit);
            debug!(%peer, "smpp: too many connections; closing a new one");
            drop(stream);
            continue;
        };
        let Some(slot) = per_client.try_acquire(peer.ip()) else {
            crate::metrics::get().rejected(Door::Smpp, Reason::Limit);
            debug!(%peer, "smpp: too many connections from this address; closing a new one");
            drop(stream);
            continue;
        };
        let server = live.get();
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("smpp", %peer);
        let open = crate::metrics::get().connection(Door::Smpp);
        tasks.spawn(
            async move {
                let _open = open;
                if let Err(e) = connection(stream, peer, server, shutdown).await {
                    debug!("smpp connection: {e}");
                }
                drop(slot);
                drop(permit);
            }
            .instrument(span),
        );
    }
    while tasks.join_next().await.is_some() {}
}

/// What a connection is waiting for.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<SmppServer>,
    session: Session,
    /// Commits in flight: (sequence, result).
    commits: JoinSet<(u32, Result<String, u32>)>,
    /// submit_sm this second, and which second.
    rate: (u64, u32),
    /// Registered in [`Binds`] (a bind that receives): the handle and the deliver_sm to send.
    receiving: Option<(String, u64, tokio::sync::mpsc::Receiver<Outbound>)>,
    /// deliver_sm sent, waiting for their response: by sequence_number.
    waiting: HashMap<u32, tokio::sync::oneshot::Sender<u32>>,
    /// The next sequence_number of a PDU smsmta sends.
    next_seq: u32,
    /// Counted in `smsmta_smpp_binds` while bound.
    bound: Option<crate::metrics::Open>,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    server: Arc<SmppServer>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let session = Session::new(SessionConfig {
        system_id: server.cfg.smpp.system_id.clone(),
        max_errors: server.cfg.smpp.max_errors,
    });
    let mut c = Conn {
        stream,
        peer,
        server,
        session,
        commits: JoinSet::new(),
        rate: (0, 0),
        receiving: None,
        waiting: HashMap::new(),
        next_seq: 1,
        bound: None,
    };
    let result = c.serve(&shutdown).await;
    if let Some((system_id, id, _)) = c.receiving.take() {
        c.server.binds.remove(&system_id, id);
    }
    // Answer what was committed before the end: an acknowledged message is durable, and the
    // ESME learns its ID.
    while let Some(Ok((seq, r))) = c.commits.join_next().await {
        let pdu = c.session.submitted(seq, r);
        let _ = c.send(&pdu).await;
    }
    result
}

impl Conn {
    async fn send(&mut self, pdu: &pdu::Pdu) -> std::io::Result<()> {
        let idle = self.server.cfg.smpp.idle_timeout.0;
        write_within(&mut self.stream, &pdu::encode(pdu), idle).await
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> std::io::Result<()> {
        let cfg = &self.server.cfg.smpp;
        let (max_pdu, window) = (cfg.max_pdu_size.0 as usize, cfg.window);
        let (bind_timeout, idle) = (cfg.bind_timeout.0, cfg.idle_timeout.0);
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut deadline = tokio::time::Instant::now() + bind_timeout;
        loop {
            // Every whole frame buffered, while the window has room.
            while self.commits.len() < window {
                let len = match pdu::frame_length(&buf, max_pdu) {
                    Ok(Some(n)) if buf.len() >= n => n,
                    Ok(_) => break,
                    Err(e) => {
                        let seq = pdu::header(&buf).map_or(0, |(_, s)| s);
                        warn!("smpp: {e}; closing");
                        if e.status() == status::INVMSGLEN {
                            crate::metrics::get().rejected(Door::Smpp, Reason::Size);
                        }
                        self.send(&session::nack(e.status(), seq)).await?;
                        return Ok(());
                    }
                };
                let frame: Vec<u8> = buf.drain(..len).collect();
                let step = self.session.frame(&frame);
                if self.step(step).await? {
                    return Ok(());
                }
                deadline = tokio::time::Instant::now()
                    + if self.session.is_bound() {
                        idle
                    } else {
                        bind_timeout
                    };
            }
            let room = self.commits.len() < window;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // SMPP 3.4 4.12: the SMSC may unbind too; the ESME answers or not.
                    let unbind = pdu::Pdu { status: 0, sequence: 0x7FFF_FFFF, body: pdu::Body::Unbind };
                    let _ = self.send(&unbind).await;
                    return Ok(());
                }
                Some(out) = async {
                    match self.receiving.as_mut() {
                        Some((_, _, rx)) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let seq = self.next_seq;
                    self.next_seq = if seq >= 0x7FFF_FFFE { 1 } else { seq + 1 };
                    let p = pdu::Pdu { status: 0, sequence: seq, body: pdu::Body::DeliverSm(Box::new(out.sm)) };
                    self.send(&p).await?;
                    self.waiting.insert(seq, out.reply);
                }
                Some(done) = self.commits.join_next(), if !self.commits.is_empty() => {
                    if let Ok((seq, r)) = done {
                        let pdu = self.session.submitted(seq, r);
                        self.send(&pdu).await?;
                    }
                }
                r = tokio::time::timeout_at(deadline, async {
                    buf.reserve(4096);
                    self.stream.read_buf(&mut buf).await
                }), if room => match r {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        debug!("smpp: {} timeout; closing", if self.session.is_bound() { "idle" } else { "bind" });
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Carries out a step; `true` when the connection is to close.
    async fn step(&mut self, step: Step) -> std::io::Result<bool> {
        match step {
            Step::Send(p) => self.send(&p).await.map(|()| false),
            Step::Nothing => Ok(false),
            Step::Close(p) => self.send(&p).await.map(|()| true),
            Step::Authenticate {
                sequence,
                kind,
                bind,
            } => {
                let verdict = self.server.authenticate(&bind, self.peer).await;
                match verdict {
                    Ok(_) => self.bound = Some(crate::metrics::get().bind(Role::Esme)),
                    Err(status::BINDFAIL) => {
                        crate::metrics::get().rejected(Door::Smpp, Reason::Trust);
                    }
                    Err(_) => crate::metrics::get().rejected(Door::Smpp, Reason::Auth),
                }
                info!(
                    "smpp bind {} as {}: {}",
                    kind_name(kind),
                    bind.system_id,
                    if verdict.is_ok() { "ok" } else { "refused" }
                );
                let receiver = verdict
                    .as_ref()
                    .ok()
                    .filter(|_| kind.receives())
                    .map(|a| a.system_id.clone());
                match self.session.bound(sequence, kind, verdict) {
                    Step::Send(p) => {
                        self.send(&p).await?;
                        if let Some(system_id) = receiver {
                            let (id, rx) = self.server.binds.add(&system_id);
                            self.announce(&system_id);
                            self.receiving = Some((system_id, id, rx));
                        }
                        Ok(false)
                    }
                    Step::Close(p) => self.send(&p).await.map(|()| true),
                    _ => Ok(false),
                }
            }
            Step::Delivered { sequence, status } => {
                if let Some(reply) = self.waiting.remove(&sequence) {
                    let _ = reply.send(status);
                }
                Ok(false)
            }
            Step::Submit(sub) => {
                let max_rate = self
                    .session
                    .account()
                    .and_then(|a| self.server.accounts.get(&a.system_id))
                    .map_or(0, |a| a.max_rate);
                if self.throttled(max_rate) {
                    crate::metrics::get().rejected(Door::Smpp, Reason::Rate);
                    let p = self.session.submitted(sub.sequence, Err(status::THROTTLED));
                    return self.send(&p).await.map(|()| false);
                }
                let server = Arc::clone(&self.server);
                let account = self.session.account().cloned().unwrap_or_default();
                let peer = self.peer;
                let m = crate::metrics::get();
                let busy = (m.in_flight(Door::Smpp), m.window(Role::Esme));
                self.commits.spawn(async move {
                    let _busy = busy;
                    let seq = sub.sequence;
                    (seq, server.store(&account, sub, peer).await)
                });
                Ok(false)
            }
        }
    }

    /// Makes the texts waiting for `system_id`'s service numbers due now.
    fn announce(&self, system_id: &str) {
        let numbers = self
            .server
            .accounts
            .get(system_id)
            .map(|a| a.service_numbers.clone())
            .unwrap_or_default();
        for n in numbers {
            let _ = self.server.reachable.send(crate::registry::Reachable {
                aor: n.clone(),
                msisdn: Some(n),
                contacts: Vec::new(),
            });
        }
    }

    /// Counts one submit_sm against `max_rate` a second (0: no cap).
    fn throttled(&mut self, max_rate: u32) -> bool {
        if max_rate == 0 {
            return false;
        }
        let now = crate::clock::now_unix();
        if self.rate.0 != now {
            self.rate = (now, 0);
        }
        self.rate.1 += 1;
        self.rate.1 > max_rate
    }
}

fn kind_name(k: BindKind) -> &'static str {
    match k {
        BindKind::Transmitter => "transmitter",
        BindKind::Receiver => "receiver",
        BindKind::Transceiver => "transceiver",
    }
}
