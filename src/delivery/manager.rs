//! The queue manager: one task that decides what is delivered when, and starts a delivery job
//! (`manager/job.rs`) for each message. The I/O shell around [`super::scheduler`].
//!
//! **Schedule.** At start the manager lists `incoming/` and `deferred/` once and reads each
//! envelope (the head of each file only, on every core) into the in-memory schedule. Then it
//! wakes on: new mail (the spool's publish hook sends a hint with the envelope; if the hint
//! channel is full it falls back to a rescan), REGISTER notifications (that handset's
//! messages are due at once), finished jobs, the next due time, and a periodic rescan (the
//! safety net that also notices `queue release/flush/delete` made by an administrator).
//!
//! **Job.** A message is *claimed* by renaming it into `active/` (Postfix's discipline:
//! exactly one worker owns it). Its due recipients are routed and attempted (the SIP agent for
//! handsets, the SMTP agent for mail, the SMPP agents for ESMEs' service numbers and, for
//! numbers that are none of ours, the upstream SMSC of the route: `manager/upstream.rs`); each result is classified once
//! ([`super::outcome`]) and logged in one Postfix-style line. Then, durably: notices and
//! status reports are committed as new messages *before* the original is updated; a message
//! with recipients left is rewritten and renamed into `deferred/`; a finished one is unlinked.
//! A crash anywhere in a job leaves the message in `active/` or where it was; start-up
//! recovery returns `active/` to `incoming/`, so it is retried: delivered twice at worst,
//! never lost.
//!
//! **Limits.** `[delivery] max_jobs` messages at once; `max_sip` and `max_smtp` transactions
//! at once (the agents' semaphores); one MESSAGE outstanding per handset (the scheduler).
//!
//! Standards: RFC 5321 4.5.4 (retries), 4.5.5 (no bounce to a bounce), RFC 3464 (DSN),
//! RFC 3428 (one MESSAGE at a time per handset), TS 23.040 (status reports).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use super::notice::{self, DsnKind, Failure};
use super::outcome::{self, Local, Outcome};
use super::route::{self, Bts, Dest};
use super::schedule::{self, Backoff};
use super::scheduler::{Finished, Ready, Schedule};
use crate::clock::now_unix;
use crate::clock::rfc5322_date;
use crate::config::Config;
use crate::identity::{HandsetKey, Msisdn};
use crate::mail::to_sms::{self as text, ReportFacts, SmsContent, TextOptions};
use crate::registry::Reachable;
use crate::registry::Registry;
use crate::sip::agent::SipAgent;
use crate::smtp::agent::SmtpAgent;
use crate::spool::{
    Envelope, Origin, OriginKind, Queue, QueueFile, QueueId, RcptState, Spool, SpoolError, Writer,
};

mod job;
mod upstream;

pub use upstream::{inbound, sweep};

use job::*;

const HINT_QUEUE: usize = 65_536;
/// Threads that read envelopes at start-up.
const SCAN_THREADS: usize = 16;

/// A new message, as the spool's hooks report it.
#[derive(Debug, Clone)]
pub enum Hint {
    /// A queue file appeared in `incoming/`: when it is due and for which handsets.
    Published {
        /// The message.
        id: QueueId,
        /// Its earliest pending recipient's next attempt.
        due: u64,
        /// Its handsets.
        keys: Vec<String>,
    },
    /// A journaled message held for delivery from memory (spool::claims); the manager decodes
    /// it once and hands it to its job.
    Held {
        /// The message.
        id: QueueId,
        /// The encoded queue file.
        bytes: Vec<u8>,
    },
}

/// The receiving end of the publish hints.
#[derive(Debug)]
pub struct Hints {
    rx: mpsc::Receiver<Hint>,
    overflow: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

/// Installs the spool's publish and commit hooks and returns the hints they send.
pub fn hints(spool: &Arc<Spool>, domains: Vec<String>) -> Hints {
    let (tx, rx) = mpsc::channel(HINT_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(Notify::new());
    let (o, n) = (Arc::clone(&overflow), Arc::clone(&notify));
    let publish_tx = tx.clone();
    spool.set_publish_hook(Box::new(move |id, bytes| {
        let Ok(env) = QueueFile::peek_envelope(bytes) else {
            return;
        };
        let (due, keys) = schedule_facts(&env, &domains);
        if let Some(due) = due
            && publish_tx
                .try_send(Hint::Published { id, due, keys })
                .is_err()
        {
            o.store(true, Ordering::Relaxed);
            n.notify_one();
        }
    }));
    // Journaled commits: hold every message and deliver it from memory, so that most never
    // need a queue file (spool::claims). This runs on the journal's commit thread: no more
    // than a table insert and a channel send; the manager decodes the message.
    let spool_claims = Arc::clone(spool);
    spool.set_commit_hook(Box::new(move |id, bytes| {
        if !spool_claims.claims().try_hold(id, bytes.len()) {
            return;
        }
        if tx.try_send(Hint::Held { id, bytes }).is_err() {
            spool_claims.claims().release(id);
        }
    }));
    Hints {
        rx,
        overflow,
        notify,
    }
}

/// When a message is next due (its earliest pending recipient) and its handsets.
fn schedule_facts(env: &Envelope, domains: &[String]) -> (Option<u64>, Vec<String>) {
    let pending = env
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Pending);
    let due = pending.clone().map(|r| r.next_attempt).min();
    let mut keys: Vec<String> = pending
        .filter_map(|r| route::serial_key(&r.address, domains))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    (due, keys)
}

/// What a delivery job needs.
#[derive(Debug)]
pub struct Ctx {
    cfg: crate::config::Live<Config>,
    spool: Arc<Spool>,
    writer: Writer,
    registry: Registry,
    sip: SipAgent,
    smtp: SmtpAgent,
    smpp: Arc<crate::smpp::agent::Binds>,
    upstreams: crate::smpp::client::Upstreams,
    store: Arc<crate::smpp::store::Store>,
}

impl Ctx {
    /// The delivery context; binds the SIP agent's socket.
    ///
    /// # Errors
    /// When the SIP agent's socket cannot be bound.
    pub async fn new(
        cfg: impl Into<crate::config::Live<Config>>,
        writer: Writer,
        registry: Registry,
        smpp: Arc<crate::smpp::agent::Binds>,
        upstreams: crate::smpp::client::Upstreams,
        store: Arc<crate::smpp::store::Store>,
    ) -> std::io::Result<Ctx> {
        let cfg = cfg.into();
        let sip = SipAgent::bind(&cfg.get()).await?;
        let smtp = SmtpAgent::new(&cfg.get());
        Ok(Ctx {
            spool: Arc::clone(writer.spool()),
            cfg,
            writer,
            registry,
            sip,
            smtp,
            smpp,
            upstreams,
            store,
        })
    }
}

impl Ctx {
    /// The configuration in force (a reload changes what the next job sees).
    pub(super) fn cfg(&self) -> Arc<Config> {
        self.cfg.get()
    }
}

/// What a scan of the spool found.
#[derive(Debug, Default)]
struct Scanned {
    /// Messages whose envelope was read: (ID, due, handsets).
    read: Vec<(QueueId, u64, Vec<String>)>,
    /// Messages in `deferred/` that the schedule already knows: present, not read again.
    known: Vec<QueueId>,
}

/// Lists `incoming/` and `deferred/` and reads the envelopes (in parallel) of every message in
/// `incoming/` (new, or released or flushed by an administrator) and of those in `deferred/`
/// that are not in `known` (the schedule already has the rest).
fn scan(spool: &Spool, domains: &[String], known: &HashSet<QueueId>) -> Scanned {
    let mut ids = Vec::new();
    let mut present = Vec::new();
    for q in [Queue::Incoming, Queue::Deferred] {
        match spool.list(q) {
            Ok(l) => {
                for id in l {
                    if q == Queue::Deferred && known.contains(&id) {
                        present.push(id);
                    } else {
                        ids.push((q, id));
                    }
                }
            }
            Err(e) => error!("queue manager: cannot list {q}: {e}"),
        }
    }
    // Reading envelopes is I/O-bound when the cache is cold (after a reboot): many readers
    // keep the disk's queue full. Measured in docs/benchmarks.md.
    let threads = if ids.len() < 1000 { 1 } else { SCAN_THREADS };
    let chunk = ids.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(q, id)| {
                            // One message that cannot be read never stops the scan.
                            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                spool.peek(*q, *id).map(|env| schedule_facts(&env, domains))
                            }));
                            match read {
                                Ok(Ok((due, keys))) => Some((*id, due.unwrap_or(0), keys)),
                                Ok(Err(SpoolError::NotFound(_))) => None,
                                Ok(Err(e)) => {
                                    // Claimed later, the full decode sends it to corrupt/.
                                    warn!("queue manager: {e}");
                                    Some((*id, 0, Vec::new()))
                                }
                                Err(_) => {
                                    error!(queue_id = %id, "{id}: reading its envelope failed; its delivery job sets it aside");
                                    Some((*id, 0, Vec::new()))
                                }
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        Scanned {
            read: handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect(),
            known: present,
        }
    })
}

/// Scans the spool into the schedule and forgets what is in no queue any more (messages held
/// in memory, in `held`, count as present).
async fn rescan(ctx: &Ctx, domains: &[String], sched: &mut Schedule, held: &HashSet<QueueId>) {
    let known: HashSet<QueueId> = sched.ids().collect();
    let spool = Arc::clone(&ctx.spool);
    let d = domains.to_vec();
    let found = tokio::task::spawn_blocking(move || scan(&spool, &d, &known))
        .await
        .unwrap_or_default();
    let mut seen: HashSet<QueueId> = held.clone();
    seen.extend(found.known);
    for (id, due, keys) in found.read {
        seen.insert(id);
        sched.upsert(id, due, keys);
    }
    sched.retain_seen(&seen);
    sched.prune(now_unix());
}

/// Runs the queue manager until `shutdown`, and starts it again (after a second, with a log
/// line) should it ever fail: the schedule is rebuilt from the spool, nothing is lost.
pub async fn supervise(
    ctx: Arc<Ctx>,
    hints: Hints,
    reachable: broadcast::Sender<Reachable>,
    shutdown: CancellationToken,
) {
    let hints = Arc::new(tokio::sync::Mutex::new(hints));
    loop {
        let task = tokio::spawn(run(
            Arc::clone(&ctx),
            Arc::clone(&hints),
            reachable.subscribe(),
            shutdown.clone(),
        ));
        match task.await {
            Ok(()) => return,
            Err(e) => {
                error!("queue manager failed ({e}); restarting it in 1s");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Runs the queue manager until `shutdown`.
pub async fn run(
    ctx: Arc<Ctx>,
    hints: Arc<tokio::sync::Mutex<Hints>>,
    mut reachable: broadcast::Receiver<Reachable>,
    shutdown: CancellationToken,
) {
    // Held for the manager's life; a restarted manager (see [`supervise`]) takes it again.
    let mut guard = hints.lock_owned().await;
    let hints = &mut *guard;
    let mut m = Manager::new(ctx);
    let started = std::time::Instant::now();
    rescan(&m.ctx, &m.domains, &mut m.sched, &HashSet::new()).await;
    info!(
        "queue manager: {} messages scheduled in {:.3}s",
        m.sched.len(),
        started.elapsed().as_secs_f64()
    );
    let rescan_every = m.ctx.cfg().delivery.rescan_interval.0;
    let mut next_rescan = tokio::time::Instant::now() + rescan_every;
    loop {
        let now = now_unix();
        m.start_due(now);
        let wake = match m.sched.next_due() {
            Some(d) if d > now => until_second(d),
            _ => rescan_every,
        };
        let wake = tokio::time::Instant::now() + wake.min(rescan_every);
        let wake = wake.min(next_rescan);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(h) = hints.rx.recv() => {
                let mut next = Some(h);
                // Take what else is waiting without a pass through the loop for each.
                while let Some(h) = next {
                    m.hint(h);
                    next = hints.rx.try_recv().ok();
                }
            }
            r = reachable.recv() => match r {
                Ok(r) => m.reachable(&r),
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    warn!("queue manager: {k} REGISTER notifications missed; rescanning");
                    next_rescan = tokio::time::Instant::now();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    reachable = broadcast::channel(1).1;
                }
            },
            Some(done) = m.jobs.join_next_with_id(), if !m.jobs.is_empty() => m.finished(done),
            _ = hints.notify.notified() => {
                if hints.overflow.swap(false, Ordering::Relaxed) {
                    next_rescan = tokio::time::Instant::now();
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if tokio::time::Instant::now() >= next_rescan {
            next_rescan = tokio::time::Instant::now() + rescan_every;
            let held: HashSet<QueueId> = m.mem.keys().copied().collect();
            rescan(&m.ctx, &m.domains, &mut m.sched, &held).await;
        }
    }
    m.drain().await;
    info!("queue manager stopped");
}

type JobResult = Result<(tokio::task::Id, (QueueId, Finished)), tokio::task::JoinError>;

/// The queue manager's state: the schedule, the jobs running, the messages held in memory.
struct Manager {
    ctx: Arc<Ctx>,
    domains: Vec<String>,
    sched: Schedule,
    jobs: JoinSet<(QueueId, Finished)>,
    /// Messages held in memory (spool::claims) until their job takes them.
    mem: HashMap<QueueId, QueueFile>,
    running: HashMap<tokio::task::Id, QueueId>,
}

impl Manager {
    fn new(ctx: Arc<Ctx>) -> Manager {
        Manager {
            domains: ctx.cfg().domains.clone(),
            ctx,
            sched: Schedule::new(),
            jobs: JoinSet::new(),
            mem: HashMap::new(),
            running: HashMap::new(),
        }
    }

    /// Starts a job for each message due, up to `max_jobs` running.
    fn start_due(&mut self, now: u64) {
        while self.jobs.len() < self.ctx.cfg().delivery.max_jobs {
            let Some(ready) = self.sched.next_ready(now) else {
                break;
            };
            let held = self.mem.remove(&ready.id);
            // Boxed: spawning copies a future by value, and this one is kilobytes.
            let h = self
                .jobs
                .spawn(Box::pin(deliver(Arc::clone(&self.ctx), ready, held)));
            self.running.insert(h.id(), ready.id);
        }
    }

    /// A message published to the queue, or handed over in memory.
    fn hint(&mut self, h: Hint) {
        match h {
            Hint::Published { id, due, keys } => self.sched.upsert(id, due, keys),
            Hint::Held { id, bytes } => {
                // Decoded once, here; due when its first pending recipient is. A copy that
                // does not decode is left to the job, which reads the queue file instead.
                let (due, keys) = match QueueFile::decode(&bytes) {
                    Ok(f) if f.id() == id => {
                        let facts = schedule_facts(&f.envelope, &self.domains);
                        self.mem.insert(id, f);
                        facts
                    }
                    Ok(_) | Err(_) => {
                        error!("{id}: held copy does not decode; delivering from the queue file");
                        (None, Vec::new())
                    }
                };
                self.sched.upsert(id, due.unwrap_or(0), keys);
            }
        }
    }

    /// A handset registered: its messages are due now, and where handsets are is read again.
    fn reachable(&mut self, r: &Reachable) {
        self.ctx.registry.forget_whereabouts();
        let now = now_unix();
        let mut n = match HandsetKey::parse(&r.aor) {
            Ok(k) => self.sched.make_due(&k.to_string(), now),
            Err(_) => 0,
        };
        if let Some(m) = &r.msisdn {
            n += self.sched.make_due(m, now);
        }
        if n > 0 {
            info!(
                "queue manager: {} registered, {n} message(s) due now",
                r.aor
            );
        }
    }

    /// A job ended; one that failed leaves its message to the next scan.
    fn finished(&mut self, done: JobResult) {
        match done {
            Ok((tid, (id, finished))) => {
                self.running.remove(&tid);
                self.sched.finish(id, finished);
            }
            Err(e) => {
                if let Some(id) = self.running.remove(&e.id()) {
                    error!("{id}: delivery job failed: {e}; retried after a restart");
                    self.sched.finish(id, Finished::default());
                }
            }
        }
    }

    /// Lets running jobs finish within half the shutdown timeout, then stops them.
    async fn drain(&mut self) {
        let grace = self.ctx.cfg().shutdown_timeout.0 / 2;
        let jobs = &mut self.jobs;
        if tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            warn!(
                "queue manager: {} deliveries still running at shutdown; they are retried after restart",
                self.jobs.len()
            );
            self.jobs.abort_all();
        }
    }
}

/// How long until the start of Unix second `t`.
fn until_second(t: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(t).saturating_sub(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Origin, Recipient};

    #[test]
    fn schedule_facts_take_the_earliest_pending_recipient_and_its_handsets() {
        let domains = vec!["sms.test".to_string()];
        let mut env = Envelope {
            id: crate::spool::queue_file::QueueIdField(QueueId::from_parts(1, 1)),
            sender: String::new(),
            recipients: vec![
                Recipient::new("1555@sms.test", 50),
                Recipient::new("a@example.org", 20),
                Recipient::new("1666@sms.test", 10),
            ],
            arrival: 0,
            expires: 100,
            origin: Origin {
                kind: OriginKind::Smtp,
                peer: String::new(),
                sender_number: None,
            },
            warned: false,
        };
        env.recipients[2].state = RcptState::Delivered;
        assert_eq!(
            schedule_facts(&env, &domains),
            (Some(20), vec!["1555".to_string()])
        );
        for r in &mut env.recipients {
            r.state = RcptState::Failed;
        }
        assert_eq!(schedule_facts(&env, &domains), (None, vec![]));
    }
}
