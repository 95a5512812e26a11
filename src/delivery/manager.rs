//! The queue manager: one task that decides what is delivered when, and the delivery job that
//! runs for each message it starts. The I/O shell around [`super::scheduler`].
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
//! handsets, the SMTP agent for mail); each result is classified once
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

use std::collections::HashSet;
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
use crate::identity::{HandsetKey, Imsi, Msisdn};
use crate::mail::to_sms::{self as text, ReportFacts, SmsContent, TextOptions};
use crate::registry::Reachable;
use crate::registry::{Binding, Registry, Subscriber};
use crate::sip::agent::SipAgent;
use crate::smtp::agent::SmtpAgent;
use crate::spool::{
    Envelope, Origin, OriginKind, Queue, QueueFile, QueueId, RcptState, Spool, SpoolError, Writer,
};

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
    /// A journaled message held for delivery from memory (spool::claims); the manager reads
    /// its envelope.
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
    // than a table insert and a channel send; the manager reads the envelope.
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
    cfg: Arc<Config>,
    spool: Arc<Spool>,
    writer: Writer,
    registry: Registry,
    sip: SipAgent,
    smtp: SmtpAgent,
}

impl Ctx {
    /// The delivery context; binds the SIP agent's socket.
    ///
    /// # Errors
    /// When the SIP agent's socket cannot be bound.
    pub async fn new(cfg: Arc<Config>, writer: Writer, registry: Registry) -> std::io::Result<Ctx> {
        let sip = SipAgent::bind(&cfg).await?;
        let smtp = SmtpAgent::new(&cfg);
        Ok(Ctx {
            spool: Arc::clone(writer.spool()),
            cfg,
            writer,
            registry,
            sip,
            smtp,
        })
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
    let domains = ctx.cfg.domains.clone();
    let started = std::time::Instant::now();
    let mut sched = Schedule::new();
    rescan(&ctx, &domains, &mut sched, &HashSet::new()).await;
    info!(
        "queue manager: {} messages scheduled in {:.3}s",
        sched.len(),
        started.elapsed().as_secs_f64()
    );
    let max_jobs = ctx.cfg.delivery.max_jobs;
    let rescan_every = ctx.cfg.delivery.rescan_interval.0;
    let mut next_rescan = tokio::time::Instant::now() + rescan_every;
    let mut jobs: JoinSet<(QueueId, Finished)> = JoinSet::new();
    // Messages held in memory (spool::claims) until their job takes them.
    let mut mem: std::collections::HashMap<QueueId, Vec<u8>> = std::collections::HashMap::new();
    let mut running: std::collections::HashMap<tokio::task::Id, QueueId> =
        std::collections::HashMap::new();
    loop {
        let now = now_unix();
        while jobs.len() < max_jobs {
            let Some(ready) = sched.next_ready(now) else {
                break;
            };
            let h = jobs.spawn(deliver(Arc::clone(&ctx), ready, mem.remove(&ready.id)));
            running.insert(h.id(), ready.id);
        }
        let wake = match sched.next_due() {
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
                    match h {
                        Hint::Published { id, due, keys } => sched.upsert(id, due, keys),
                        Hint::Held { id, bytes } => {
                            // Due when its first pending recipient is (a message that does
                            // not peek is left to the job's full decode).
                            let (due, keys) = QueueFile::peek_envelope(&bytes)
                                .map(|env| schedule_facts(&env, &domains))
                                .unwrap_or_default();
                            mem.insert(id, bytes);
                            sched.upsert(id, due.unwrap_or(0), keys);
                        }
                    }
                    next = hints.rx.try_recv().ok();
                }
            }
            r = reachable.recv() => match r {
                Ok(r) => {
                    let now = now_unix();
                    let mut n = match HandsetKey::parse(&r.aor) {
                        Ok(k) => sched.make_due(&k.to_string(), now),
                        Err(_) => 0,
                    };
                    if let Some(m) = &r.msisdn {
                        n += sched.make_due(m, now);
                    }
                    if n > 0 {
                        info!("queue manager: {} registered, {n} message(s) due now", r.aor);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    warn!("queue manager: {k} REGISTER notifications missed; rescanning");
                    next_rescan = tokio::time::Instant::now();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    reachable = broadcast::channel(1).1;
                }
            },
            Some(done) = jobs.join_next_with_id(), if !jobs.is_empty() => match done {
                Ok((tid, (id, finished))) => {
                    running.remove(&tid);
                    sched.finish(id, finished);
                }
                Err(e) => {
                    if let Some(id) = running.remove(&e.id()) {
                        error!("{id}: delivery job failed: {e}; retried after a restart");
                        sched.finish(id, Finished::default());
                    }
                }
            },
            _ = hints.notify.notified() => {
                if hints.overflow.swap(false, Ordering::Relaxed) {
                    next_rescan = tokio::time::Instant::now();
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if tokio::time::Instant::now() >= next_rescan {
            next_rescan = tokio::time::Instant::now() + rescan_every;
            let held: HashSet<QueueId> = mem.keys().copied().collect();
            rescan(&ctx, &domains, &mut sched, &held).await;
        }
    }
    let grace = ctx.cfg.shutdown_timeout.0 / 2;
    if tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!(
            "queue manager: {} deliveries still running at shutdown; they are retried after restart",
            jobs.len()
        );
        jobs.abort_all();
    }
    info!("queue manager stopped");
}

/// How long until the start of Unix second `t`.
fn until_second(t: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(t).saturating_sub(now)
}

/// Claims `id` into `active/` and reads it. `Ok(None)`: it is gone (delivered, deleted,
/// held) or corrupt (moved to `corrupt/`).
fn claim(spool: &Spool, id: QueueId) -> Result<Option<QueueFile>, SpoolError> {
    let mut claimed = false;
    for q in [Queue::Incoming, Queue::Deferred] {
        match spool.claim(id, q, Queue::Active) {
            Ok(()) => {
                claimed = true;
                break;
            }
            Err(SpoolError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    if !claimed && std::fs::symlink_metadata(spool.path(Queue::Active, id)).is_err() {
        return Ok(None);
    }
    match spool.read(Queue::Active, id) {
        Ok(f) => Ok(Some(f)),
        Err(SpoolError::NotFound(_)) => Ok(None),
        Err(e @ SpoolError::Corrupt { .. }) => {
            error!("{id}: {e}; moved to corrupt/");
            let _ = spool.move_to(id, Queue::Active, Queue::Corrupt);
            Ok(None)
        }
        Err(e) => {
            let _ = spool.claim(id, Queue::Active, Queue::Incoming);
            Err(e)
        }
    }
}

/// The Postfix-style delay: seconds since the message was accepted (its queue ID holds the
/// microsecond it was created, just before the commit), three decimals.
fn delay(id: QueueId) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    format!("{:.3}", now.saturating_sub(id.micros()) as f64 / 1e6)
}

/// One delivery job: claim (or take from memory), attempt every due recipient, notify,
/// update the queue.
async fn deliver(ctx: Arc<Ctx>, ready: Ready, held: Option<Vec<u8>>) -> (QueueId, Finished) {
    let id = ready.id;
    let from_memory = held.and_then(|b| match QueueFile::decode(&b) {
        Ok(f) if f.id() == id => Some(f),
        Ok(_) | Err(_) => {
            error!("{id}: held copy does not decode; delivering from the queue file");
            None
        }
    });
    let (file, source) = match from_memory {
        Some(f) => (f, Source::Memory),
        None => {
            let spool = Arc::clone(&ctx.spool);
            match tokio::task::spawn_blocking(move || claim(&spool, id)).await {
                Ok(Ok(Some(f))) => (f, Source::Active),
                Ok(Ok(None)) => return (id, Finished::default()),
                Ok(Err(e)) => {
                    error!("{id}: cannot claim: {e}");
                    return (id, Finished::default());
                }
                Err(e) => {
                    error!("{id}: claim failed: {e}");
                    return (id, Finished::default());
                }
            }
        }
    };
    // The job runs as a task of its own, so that a failure in it (a panic, should one
    // remain) ends that job only; the message is then set aside in hold/ with the reason.
    let copy = file.clone();
    let job_ctx = Arc::clone(&ctx);
    let forced = ready.forced;
    // One span per message: every line logged inside names its queue ID.
    let span = tracing::info_span!("delivery", queue_id = %ready.id);
    let ran = tokio::spawn(
        async move {
            let mut job = Job {
                ctx: &job_ctx,
                file,
                source,
                content: None,
                outbound: None,
            };
            job.run(forced).await
        }
        .instrument(span),
    )
    .await;
    match ran {
        Ok(finished) => (id, finished),
        Err(e) => {
            let reason = match e.try_into_panic() {
                Ok(p) => crate::fault::panic_text(p.as_ref()),
                Err(e) => e.to_string(),
            };
            let spool = Arc::clone(&ctx.spool);
            let why = reason.clone();
            match tokio::task::spawn_blocking(move || set_aside(&spool, copy, source, &why)).await {
                Ok(Ok(())) => error!(
                    queue_id = %id,
                    "{id}: status=held (delivery failed: {reason}); set aside, everything else goes on"
                ),
                Ok(Err(e)) => {
                    error!(queue_id = %id, "{id}: delivery failed: {reason}; cannot set it aside: {e}; retried after a restart")
                }
                Err(e) => {
                    error!(queue_id = %id, "{id}: delivery failed: {reason}; set-aside failed: {e}")
                }
            }
            (id, Finished::default())
        }
    }
}

/// Puts a message whose handling failed into hold/, with the reason as each pending
/// recipient's last reply (shown by `queue list` and `queue show`). It stays there until an
/// administrator releases or deletes it.
fn set_aside(
    spool: &Spool,
    mut file: QueueFile,
    source: Source,
    reason: &str,
) -> Result<(), SpoolError> {
    let id = file.id();
    for r in file
        .envelope
        .recipients
        .iter_mut()
        .filter(|r| r.state == RcptState::Pending)
    {
        r.last_reply = Some(format!("held: delivery failed: {reason}"));
    }
    match source {
        Source::Active => {
            spool.rewrite(Queue::Active, &file)?;
            spool.move_to(id, Queue::Active, Queue::Hold)
        }
        Source::Memory => {
            spool.write_new(Queue::Hold, &file)?;
            if spool.claims().finish(id) {
                spool.remove_delivered(Queue::Active, id)?;
            }
            Ok(())
        }
    }
}

/// Where a job's message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Claimed into `active/`.
    Active,
    /// Held in memory; the journal has it, the materializer may write it into `active/`.
    Memory,
}

struct Job<'a> {
    ctx: &'a Ctx,
    file: QueueFile,
    source: Source,
    content: Option<SmsContent>,
    outbound: Option<Vec<u8>>,
}

impl Job<'_> {
    fn cfg(&self) -> &Config {
        &self.ctx.cfg
    }

    async fn run(&mut self, forced: bool) -> Finished {
        let id = self.file.id();
        crate::fault::panic_if_marked(crate::fault::Point::Delivery, &self.file.message);
        let now = now_unix();
        let mut finished = Finished::default();
        let mut failures: Vec<Failure> = Vec::new();
        let mut failed_now: Vec<usize> = Vec::new();
        let mut reports: Vec<(String, u8)> = Vec::new();
        let domains = self.cfg().domains.clone();
        for i in 0..self.file.envelope.recipients.len() {
            let r = &self.file.envelope.recipients[i];
            if r.state != RcptState::Pending || !(forced || r.next_attempt <= now) {
                continue;
            }
            let address = r.address.clone();
            let attempts = r.attempts + 1;
            let dest = route::classify(&address, &domains);
            let (outcome, relay) = if schedule::expired(self.file.envelope.expires, now) {
                (expired_outcome(), "none".to_string())
            } else {
                self.attempt(&address, dest.as_ref(), attempts).await
            };
            let outcome = match outcome {
                Outcome::Retry { .. } if schedule::expired(self.file.envelope.expires, now) => {
                    expired_outcome()
                }
                o => o,
            };
            let key = match &dest {
                Some(Dest::Handset(k)) => Some(k.to_string()),
                _ => None,
            };
            let env = &mut self.file.envelope;
            let rcpt = &mut env.recipients[i];
            rcpt.attempts = attempts;
            let (status, reason) = match &outcome {
                Outcome::Delivered => {
                    rcpt.state = RcptState::Delivered;
                    rcpt.last_reply = Some(format!("delivered via {relay}"));
                    if let Some(k) = key {
                        finished.delivered_keys.push(k);
                    }
                    reports.extend(notice::report_status(&outcome).map(|st| (address.clone(), st)));
                    ("sent", "delivered".to_string())
                }
                Outcome::Retry {
                    reason,
                    retry_after,
                } => {
                    let handset = matches!(dest, Some(Dest::Handset(_)));
                    let next = schedule::retry_at(
                        env.arrival,
                        env.expires,
                        now,
                        Backoff::configured(&self.ctx.cfg.delivery, handset),
                        *retry_after,
                        env.id.0.micros() / 1_000_000,
                    );
                    rcpt.next_attempt = next;
                    rcpt.last_reply = Some(reason.clone());
                    if let Some(k) = key {
                        finished.deferred_keys.push((k, next));
                    }
                    ("deferred", reason.clone())
                }
                Outcome::Bounce { reason, status } => {
                    rcpt.state = RcptState::Failed;
                    rcpt.last_reply = Some(reason.clone());
                    failed_now.push(i);
                    failures.push(Failure {
                        recipient: address.clone(),
                        status: status.to_string(),
                        reason: reason.clone(),
                    });
                    reports.extend(notice::report_status(&outcome).map(|st| (address.clone(), st)));
                    ("bounced", reason.clone())
                }
            };
            info!(
                queue_id = %id,
                "{id}: to=<{address}>, relay={relay}, delay={}, attempts={attempts}, status={status} ({reason})",
                delay(env.id.0)
            );
        }
        let mut notices: Vec<QueueFile> = Vec::new();
        let notify = notice::should_notify(
            &self.file.envelope.sender,
            &self.file.envelope.origin,
            &self.file.message,
            &self.ctx.cfg.domains,
        );
        if notify && !failures.is_empty() {
            notices.push(self.notice(DsnKind::Failed, &failures, now));
        }
        let was_warned = self.file.envelope.warned;
        if let Some(w) = self.delay_warning(notify, now) {
            notices.push(w);
        }
        notices.extend(self.status_reports(&reports, now));
        for n in notices {
            let nid = n.id();
            if let Err(e) = self.ctx.writer.commit(n).await {
                // Keep the original as it was: the notice is retried with it.
                error!("{id}: cannot queue notice {nid}: {e}; will retry");
                return self.put_back(now, &failed_now, was_warned).await;
            }
            info!(queue_id = %id, "{id}: sender notice: {nid}");
        }
        self.save(now, finished).await
    }

    /// After a failure to queue its notices: the recipients that failed in this job become
    /// pending again (so that their notice is not lost), the delay warning is owed again, and
    /// the message is retried in a minute.
    async fn put_back(&mut self, now: u64, failed_now: &[usize], was_warned: bool) -> Finished {
        let env = &mut self.file.envelope;
        env.warned = was_warned;
        for &i in failed_now {
            env.recipients[i].state = RcptState::Pending;
        }
        for r in &mut env.recipients {
            if r.state == RcptState::Pending {
                r.next_attempt = now + schedule::NOTICE_RETRY.as_secs();
            }
        }
        self.save(now, Finished::default()).await
    }

    /// Writes the new state: unlink when done, else rewrite and move to `deferred/`.
    async fn save(&mut self, now: u64, mut finished: Finished) -> Finished {
        let id = self.file.id();
        let domains = self.cfg().domains.clone();
        let (due, keys) = schedule_facts(&self.file.envelope, &domains);
        let spool = Arc::clone(&self.ctx.spool);
        let file = self.file.clone();
        let source = self.source;
        let res = tokio::task::spawn_blocking(move || {
            let done = file.pending().next().is_none();
            match (source, done) {
                (Source::Active, true) => spool.remove_delivered(Queue::Active, id),
                (Source::Active, false) => spool
                    .rewrite(Queue::Active, &file)
                    .and_then(|()| spool.move_to(id, Queue::Active, Queue::Deferred)),
                (Source::Memory, done) => {
                    if !done {
                        spool.write_new(Queue::Deferred, &file)?;
                    }
                    // The result is durable: the materializer may forget the message.
                    if spool.claims().finish(id) {
                        spool.remove_delivered(Queue::Active, id)?;
                    }
                    Ok(())
                }
            }
        })
        .await;
        match res {
            Ok(Ok(())) => {
                if let Some(due) = due {
                    finished.next = Some((due.max(now), keys));
                } else {
                    info!(queue_id = %id, "{id}: removed");
                }
            }
            Ok(Err(e)) => {
                error!("{id}: cannot update the queue file: {e}; left in active/ until restart")
            }
            Err(e) => error!("{id}: queue update failed: {e}"),
        }
        finished
    }

    async fn attempt(
        &mut self,
        address: &str,
        dest: Option<&Dest>,
        attempts: u32,
    ) -> (Outcome, String) {
        match dest {
            None => (
                outcome::local(Local::BadAddress(address.to_string())),
                "none".into(),
            ),
            Some(Dest::Mail { domain }) => {
                let Job {
                    ctx,
                    file,
                    outbound,
                    ..
                } = self;
                let msg = outbound.get_or_insert_with(|| with_received(ctx, file));
                let sent = ctx
                    .smtp
                    .send(&file.envelope.sender, address, domain, msg)
                    .await;
                (sent.outcome, sent.relay)
            }
            Some(Dest::Handset(key)) => self.handset(key, attempts).await,
        }
    }

    async fn handset(&mut self, key: &HandsetKey, attempts: u32) -> (Outcome, String) {
        let k = key.clone();
        let bts_port = self.ctx.cfg.delivery.bts.port();
        let found = self
            .ctx
            .registry
            .call(move |db| lookup(db, &k, bts_port, now_unix()))
            .await;
        let (sub, bindings, location) = match found {
            Ok(x) => x,
            Err(e) => {
                return (
                    outcome::local(Local::Registry(e.to_string())),
                    "none".into(),
                );
            }
        };
        let d = &self.ctx.cfg.delivery;
        let bts = Bts {
            addr: d.bts,
            transport: d.bts_transport,
        };
        let r = match route::handset(key, sub.as_ref(), &bindings, location, bts, d.email_mode) {
            Ok(r) => r,
            Err(e) => {
                return (outcome::local(Local::NoRoute(e)), "none".into());
            }
        };
        if let Some(email) = &r.email
            && attempts == 1
        {
            // The mailbox copy is a message of its own, with its own retries.
            let env = &self.file.envelope;
            let mut copy = self.ctx.spool.new_message(
                &env.sender,
                std::slice::from_ref(email),
                self.file.message.clone(),
                env.origin.clone(),
                self.ctx.cfg.queue.mail_lifetime.0.as_secs(),
            );
            copy.original = Vec::new();
            let cid = copy.id();
            if let Err(e) = self.ctx.writer.commit(copy).await {
                return (
                    outcome::local(Local::Spool(format!(
                        "cannot queue the copy to {email}: {e}"
                    ))),
                    "none".into(),
                );
            }
            info!(queue_id = %self.file.id(), "{}: copy to <{email}> queued as {cid}", self.file.id());
        }
        let Some(target) = r.sip else {
            let email = r.email.unwrap_or_default();
            return (Outcome::Delivered, format!("forwarded to <{email}>"));
        };
        let reference = (self.file.id().micros() & 0xFFFF) as u16;
        let Job {
            ctx, file, content, ..
        } = self;
        let content = content.get_or_insert_with(|| sms_text(ctx, file));
        let out = ctx.sip.deliver(&target, content, reference).await;
        (out, format!("{}[{}]", target.uri, target.addr))
    }

    /// A notice to the sender: an SMS for a handset sender, a DSN for an e-mail sender.
    fn notice(&self, kind: DsnKind, failures: &[Failure], now: u64) -> QueueFile {
        let cfg = self.cfg();
        let env = &self.file.envelope;
        let id = env.id.0.to_string();
        let handset = Msisdn::in_address(&env.sender, &cfg.domains).is_some();
        let (message, lifetime) = if handset {
            let from = format!("{}@{}", cfg.delivery.notice_sender, cfg.sms_domain());
            let t = notice::notice_text(kind, failures, &cfg.domains);
            (
                notice::sms_notice(&from, &env.sender, &t, &id, &cfg.hostname, now),
                cfg.queue.sms_lifetime.0,
            )
        } else {
            (
                notice::dsn(&notice::Dsn {
                    hostname: &cfg.hostname,
                    queue_id: &id,
                    arrival: env.arrival,
                    now,
                    expires: env.expires,
                    to: &env.sender,
                    kind,
                    failures,
                    original: &self.file.message,
                }),
                cfg.queue.mail_lifetime.0,
            )
        };
        self.ctx.spool.new_message(
            "",
            std::slice::from_ref(&env.sender),
            message,
            Origin {
                kind: OriginKind::Internal,
                peer: format!("notice for {id}"),
                sender_number: None,
            },
            lifetime.as_secs(),
        )
    }

    /// The optional "delayed" notice, once per message.
    fn delay_warning(&mut self, notify: bool, now: u64) -> Option<QueueFile> {
        let after = self.cfg().delivery.delay_warning.0.as_secs();
        let env = &self.file.envelope;
        if after == 0 || !notify || env.warned || now.saturating_sub(env.arrival) < after {
            return None;
        }
        let delayed: Vec<Failure> = self
            .file
            .pending()
            .map(|r| Failure {
                recipient: r.address.clone(),
                status: "4.4.1".into(),
                reason: r
                    .last_reply
                    .clone()
                    .unwrap_or_else(|| "not yet delivered".into()),
            })
            .collect();
        if delayed.is_empty() {
            return None;
        }
        let n = self.notice(DsnKind::Delayed, &delayed, now);
        self.file.envelope.warned = true;
        Some(n)
    }

    /// SMS-STATUS-REPORTs for a handset sender that asked for them (TP-SRR).
    fn status_reports(&self, reports: &[(String, u8)], now: u64) -> Vec<QueueFile> {
        let cfg = self.cfg();
        let env = &self.file.envelope;
        if reports.is_empty()
            || env.origin.kind != OriginKind::Sip
            || Msisdn::in_address(&env.sender, &cfg.domains).is_none()
        {
            return Vec::new();
        }
        let Some((mr, sent_to)) = notice::report_request(&self.file.message) else {
            return Vec::new();
        };
        let from = format!("{}@{}", cfg.delivery.notice_sender, cfg.sms_domain());
        let id = env.id.0.to_string();
        reports
            .iter()
            .filter_map(|(rcpt, st)| {
                // The report names the number the handset sent to: the recipient's number,
                // or for a text that went on to an e-mail address the gateway number it was
                // sent to (an e-mail address fits no SMS address field).
                let recipient = Msisdn::in_address(rcpt, &cfg.domains).map(|m| m.digits().to_string()).or_else(|| sent_to.clone());
                let Some(recipient) = recipient else {
                    info!(queue_id = %env.id.0, "{}: no status report for <{rcpt}>: no number to name", env.id.0);
                    return None;
                };
                Some((recipient, st))
            })
            .map(|(recipient, st)| {
                let facts = ReportFacts {
                    message_ref: mr,
                    recipient,
                    status: *st,
                    submitted: env.arrival,
                    discharged: now,
                };
                self.ctx.spool.new_message(
                    "",
                    std::slice::from_ref(&env.sender),
                    notice::status_report(&from, &env.sender, &facts, &id, &cfg.hostname),
                    Origin {
                        kind: OriginKind::Internal,
                        peer: format!("status report for {id}"),
                        sender_number: None,
                    },
                    cfg.queue.sms_lifetime.0.as_secs(),
                )
            })
            .collect()
    }
}

/// What a handset sees of the message (computed once per job).
fn sms_text(ctx: &Ctx, file: &QueueFile) -> SmsContent {
    let d = &ctx.cfg.delivery;
    let opts = TextOptions {
        local_domains: &ctx.cfg.domains,
        email_sender: &d.email_sender,
        notice_sender: &d.notice_sender,
        subject_line: d.subject_line,
        strip_quotes: d.strip_quotes,
        trusted: matches!(
            file.envelope.origin.kind,
            OriginKind::Sip | OriginKind::Internal
        ),
        sender_number: file.envelope.origin.sender_number.as_deref(),
    };
    text::sms_content(&file.message, &file.envelope.sender, &opts)
}

/// The message as it leaves for another domain (computed once per job): our Received line on
/// top, and nothing that names the handset's IMSI, its RP-DATA or the BTS
/// ([`crate::mail::provenance::for_outside`]).
fn with_received(ctx: &Ctx, file: &QueueFile) -> Vec<u8> {
    let mut out = format!(
        "Received: by {} (smsmta) id {};\r\n\t{}\r\n",
        ctx.cfg.hostname,
        file.envelope.id.0,
        rfc5322_date(now_unix())
    )
    .into_bytes();
    out.extend_from_slice(&crate::mail::provenance::for_outside(&file.message));
    out
}

fn expired_outcome() -> Outcome {
    outcome::local(Local::Expired)
}

/// What the registry knows of a handset.
type Found = (
    Option<Subscriber>,
    Vec<Binding>,
    Option<std::net::SocketAddr>,
);

/// The subscriber behind a handset key, the live bindings of its addresses of record
/// (`IMSI<imsi>` and the number), newest first, and the BTS it last registered at (OpenBTS
/// registry).
fn lookup(
    db: &mut crate::registry::Db,
    key: &HandsetKey,
    bts_port: u16,
    now: u64,
) -> Result<Found, crate::registry::RegistryError> {
    let sub = match key {
        HandsetKey::Imsi(imsi) => db.by_imsi(imsi.digits())?,
        HandsetKey::Number(n) => db.by_msisdn(n.digits())?,
    };
    let imsi = match (key, &sub) {
        (HandsetKey::Imsi(i), _) => Some(i.clone()),
        (_, Some(s)) => s.imsi.as_deref().and_then(|i| Imsi::parse(i).ok()),
        _ => None,
    };
    let location = match &imsi {
        Some(i) => db.openbts_location(i, bts_port)?,
        None => None,
    };
    let mut aors = vec![key.to_string()];
    if let Some(s) = &sub {
        aors.push(s.msisdn.clone());
        if let Some(i) = &s.imsi {
            aors.push(format!("IMSI{i}"));
        }
    }
    aors.sort_unstable();
    aors.dedup();
    let mut bindings = Vec::new();
    for a in aors {
        bindings.extend(db.bindings(&a, now)?);
    }
    bindings.sort_by_key(|b| std::cmp::Reverse(b.expires));
    Ok((sub, bindings, location))
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
