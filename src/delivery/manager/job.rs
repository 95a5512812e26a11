//! The delivery job: one message, from memory or claimed into `active/`, taken through the
//! decisions for each due recipient (route, then the agent, then outcome, schedule and
//! notice), its notices committed first, then its new state saved. A job that fails (a panic)
//! sets its message aside in `hold/` with the reason.

use super::*;
use crate::mail::facts::SmsFacts;
use crate::spool::Taken;

/// The Postfix-style delay: seconds since the message was accepted (its queue ID holds the
/// microsecond it was created, just before the commit), three decimals.
pub(super) fn delay(id: QueueId) -> String {
    format!("{:.3}", delay_secs(id))
}

/// Seconds since `id` arrived (its queue ID holds the arrival, in microseconds).
fn delay_secs(id: QueueId) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    now.saturating_sub(id.micros()) as f64 / 1e6
}

/// One delivery job: claim (or take from memory), attempt every due recipient, notify,
/// update the queue.
pub(super) async fn deliver(
    ctx: Arc<Ctx>,
    ready: Ready,
    held: Option<QueueFile>,
) -> (QueueId, Finished) {
    let id = ready.id;
    let (file, source) = match held {
        Some(f) => (f, Taken::Memory),
        None => {
            let spool = Arc::clone(&ctx.spool);
            match tokio::task::spawn_blocking(move || spool.take(id)).await {
                Ok(Ok(Some(f))) => (f, Taken::Active),
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
    // Boxed: the job's state is several kilobytes, which spawning would otherwise copy.
    let ran = tokio::spawn(Box::pin(
        async move {
            let mut job = Job::new(&job_ctx, file, source);
            job.run(forced).await
        }
        .instrument(span),
    ))
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
            match tokio::task::spawn_blocking(move || spool.hold(copy, source, &why)).await {
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

pub(super) struct Job<'a> {
    pub(super) ctx: &'a Ctx,
    /// The configuration in force when the job began (a reload changes the next job).
    pub(super) cfg: Arc<Config>,
    pub(super) file: QueueFile,
    source: Taken,
    pub(super) content: Option<SmsContent>,
    /// The message's SMS facts (its `X-SMS-*` headers), read once per job.
    pub(super) facts: std::sync::OnceLock<SmsFacts>,
    outbound: Option<Vec<u8>>,
    /// Recipients whose report waits for an upstream SMSC's receipt.
    pub(super) awaited: Vec<String>,
    /// Whether the last attempt went to an upstream SMSC (its number is then no handset).
    pub(super) went_upstream: bool,
}

/// What one job's attempts add up to.
#[derive(Default)]
struct Tally {
    finished: Finished,
    /// Failed for good in this job.
    failures: Vec<Failure>,
    /// Their indexes in the envelope.
    failed_now: Vec<usize>,
    /// Status reports owed: recipient and TP-ST.
    reports: Vec<(String, u8)>,
}

impl<'a> Job<'a> {
    /// A job for `file`, taken from `source`.
    pub(super) fn new(ctx: &'a Ctx, file: QueueFile, source: Taken) -> Job<'a> {
        Job {
            cfg: ctx.cfg(),
            ctx,
            file,
            source,
            content: None,
            facts: std::sync::OnceLock::new(),
            outbound: None,
            awaited: Vec::new(),
            went_upstream: false,
        }
    }

    fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// The message's SMS facts (parsed at the first call of the job).
    pub(super) fn facts(&self) -> &SmsFacts {
        self.facts
            .get_or_init(|| SmsFacts::from_mail(&self.file.message))
    }

    async fn run(&mut self, forced: bool) -> Finished {
        crate::fault::panic_if_marked(crate::fault::Point::Delivery, &self.file.message);
        let now = now_unix();
        let mut tally = Tally::default();
        for i in 0..self.file.envelope.recipients.len() {
            let r = &self.file.envelope.recipients[i];
            if r.state == RcptState::Pending && (forced || r.next_attempt <= now) {
                self.recipient(i, now, &mut tally).await;
            }
        }
        let was_warned = self.file.envelope.warned;
        for n in self.notices(&tally, now) {
            let (id, nid) = (self.file.id(), n.id());
            if let Err(e) = self.ctx.writer.commit(n).await {
                // Keep the original as it was: the notice is retried with it.
                error!("{id}: cannot queue notice {nid}: {e}; will retry");
                return self.put_back(now, &tally.failed_now, was_warned).await;
            }
            info!(queue_id = %id, "{id}: sender notice: {nid}");
        }
        self.save(now, tally.finished).await
    }

    /// One attempt for recipient `i`: route, deliver (or expire), classify, record the new
    /// state in the envelope and the log.
    async fn recipient(&mut self, i: usize, now: u64, tally: &mut Tally) {
        let id = self.file.id();
        let r = &self.file.envelope.recipients[i];
        let address = r.address.clone();
        let attempts = r.attempts + 1;
        let dest = route::classify(&address, &self.cfg().domains);
        self.went_upstream = false;
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
        // A number that went to an upstream is no handset: not serialised, not backed off
        // as one (the scheduler learns it).
        let key = match &dest {
            Some(Dest::Handset(k)) if self.went_upstream => {
                tally.finished.not_handsets.push(k.to_string());
                None
            }
            Some(Dest::Handset(k)) => Some(k.to_string()),
            _ => None,
        };
        let backoff =
            Backoff::configured(&self.cfg().delivery, matches!(dest, Some(Dest::Handset(_))));
        let env = &mut self.file.envelope;
        let (arrival, expires, seed) = (env.arrival, env.expires, env.id.0.micros() / 1_000_000);
        let rcpt = &mut env.recipients[i];
        rcpt.attempts = attempts;
        let (status, reason) = match &outcome {
            Outcome::Delivered => {
                rcpt.state = RcptState::Delivered;
                rcpt.last_reply = Some(format!("delivered via {relay}"));
                tally.finished.delivered_keys.extend(key);
                ("sent", "delivered".to_string())
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                let next = schedule::retry_at(arrival, expires, now, backoff, *retry_after, seed);
                rcpt.next_attempt = next;
                rcpt.last_reply = Some(reason.clone());
                tally.finished.deferred_keys.extend(key.map(|k| (k, next)));
                ("deferred", reason.clone())
            }
            Outcome::Bounce { reason, status } => {
                rcpt.state = RcptState::Failed;
                rcpt.last_reply = Some(reason.clone());
                tally.failed_now.push(i);
                tally.failures.push(Failure {
                    recipient: address.clone(),
                    status: status.to_string(),
                    reason: reason.clone(),
                });
                ("bounced", reason.clone())
            }
        };
        if !self.awaited.contains(&address) {
            tally
                .reports
                .extend(notice::report_status(&outcome).map(|st| (address.clone(), st)));
        }
        use crate::metrics::{Agent, Status};
        let agent = match &dest {
            _ if relay == "none" => Agent::Local,
            Some(Dest::Mail { .. }) => Agent::Smtp,
            Some(Dest::Esme { .. }) => Agent::Smpp,
            Some(Dest::Handset(_)) if self.went_upstream => Agent::Upstream,
            Some(Dest::Handset(_)) if relay.starts_with("smpp:") => Agent::Smpp,
            Some(Dest::Handset(_)) => Agent::Sip,
            None => Agent::Local,
        };
        let (st, delay_secs) = match &outcome {
            Outcome::Delivered => (Status::Sent, Some(delay_secs(env.id.0))),
            Outcome::Retry { .. } => (Status::Deferred, None),
            Outcome::Bounce { status, .. } if *status == outcome::EXPIRED => {
                (Status::Expired, None)
            }
            Outcome::Bounce { .. } => (Status::Bounced, None),
        };
        crate::metrics::get().delivery(agent, st, delay_secs);
        info!(
            queue_id = %id,
            "{id}: to=<{address}>, relay={relay}, delay={}, attempts={attempts}, status={status} ({reason})",
            delay(env.id.0)
        );
    }

    /// What the sender is told after this job: a failure notice, a delay warning, status
    /// reports.
    fn notices(&mut self, tally: &Tally, now: u64) -> Vec<QueueFile> {
        let mut notices: Vec<QueueFile> = Vec::new();
        // Whether the sender is told of failures and delays (read from the headers only when
        // there is something to tell).
        let notify = (!tally.failures.is_empty() || self.delay_warning_due(now))
            && notice::should_notify(
                &self.file.envelope.sender,
                &self.file.envelope.origin,
                &self.file.message,
                &self.cfg().domains,
            );
        if notify && !tally.failures.is_empty() {
            notices.push(self.notice(DsnKind::Failed, &tally.failures, now));
        }
        if let Some(w) = self.delay_warning(notify, now) {
            notices.push(w);
        }
        notices.extend(self.status_reports(&tally.reports, now));
        notices.extend(self.esme_receipts(&tally.reports, now));
        notices
    }

    /// A text for an ESME's service number, as deliver_sm over one of its binds.
    async fn esme(&mut self, system_id: String, key: &HandsetKey) -> (Outcome, String) {
        let (content, _) = sms_text(self.ctx, &self.file);
        let sm =
            crate::smpp::agent::deliver_sm(&content.originator, &key.to_string(), &content.text);
        self.via_smpp(&system_id, sm).await
    }

    /// A delivery receipt for an ESME, as deliver_sm over one of its binds.
    async fn receipt(&mut self, system_id: &str) -> (Outcome, String) {
        let facts = self.facts();
        let (Some(report), Some(id)) = (facts.report.clone(), facts.receipted_id.clone()) else {
            let why = "a receipt without its report facts".to_string();
            return (outcome::local(Local::BadEnvelope(why)), "none".into());
        };
        let source = self
            .file
            .envelope
            .origin
            .sender_number
            .clone()
            .unwrap_or_default();
        let sm = crate::smpp::agent::receipt_sm(&id, &report, &source);
        self.via_smpp(system_id, sm).await
    }

    /// Sends a deliver_sm to one of `system_id`'s binds and classifies the answer (waiting at
    /// most `[smpp] idle_timeout`, 30 s at the most).
    async fn via_smpp(&self, system_id: &str, sm: crate::smpp::pdu::Sm) -> (Outcome, String) {
        let timeout = self.cfg().smpp.idle_timeout.0.min(Duration::from_secs(30));
        let answer = self.ctx.smpp.deliver(system_id, sm, timeout).await;
        (outcome::smpp(answer), format!("smpp:{system_id}"))
    }

    /// Delivery receipts owed to the ESME that submitted this message and asked for them: a
    /// message each, to `esme=<system_id>@<sms domain>`, carrying the report facts.
    pub(super) fn esme_receipts(&self, reports: &[(String, u8)], now: u64) -> Vec<QueueFile> {
        let env = &self.file.envelope;
        if reports.is_empty() || env.origin.kind != OriginKind::Smpp {
            return Vec::new();
        }
        let facts = self.facts();
        let Some(esme) = facts
            .esme
            .clone()
            .filter(|_| facts.status_report_request == Some(true))
        else {
            return Vec::new();
        };
        let cfg = self.cfg();
        let id = env.id.0.to_string();
        let to = route::esme_address(&esme, cfg.sms_domain());
        reports
            .iter()
            .map(|(rcpt, st)| {
                let number = Msisdn::in_address(rcpt, &cfg.domains)
                    .map(|m| m.digits().to_string())
                    .unwrap_or_default();
                let receipt = SmsFacts {
                    report: Some(ReportFacts {
                        message_ref: 0,
                        recipient: number,
                        status: *st,
                        submitted: env.arrival,
                        discharged: now,
                    }),
                    receipted_id: Some(id.clone()),
                    ..SmsFacts::default()
                };
                let mut b = mail_builder::MessageBuilder::new()
                    .from(mail_builder::headers::address::Address::new_address(
                        None::<&str>,
                        format!("{}@{}", cfg.delivery.notice_sender, cfg.sms_domain()),
                    ))
                    .to(mail_builder::headers::address::Address::new_address(
                        None::<&str>,
                        to.clone(),
                    ))
                    .date(now as i64)
                    .header(
                        "Auto-Submitted",
                        mail_builder::headers::raw::Raw::new("auto-replied"),
                    );
                for (name, value) in receipt.pairs() {
                    b = b.header(name.header(), mail_builder::headers::raw::Raw::new(value));
                }
                let raw = b
                    .text_body(format!("Receipt for {id}"))
                    .write_to_vec()
                    .unwrap_or_default();
                self.ctx.spool.new_message(
                    "",
                    std::slice::from_ref(&to),
                    raw,
                    Origin {
                        kind: OriginKind::Internal,
                        peer: format!("receipt for {id}"),
                        sender_number: env.origin.sender_number.clone(),
                    },
                    cfg.queue.sms_lifetime.0.as_secs(),
                )
            })
            .collect()
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
        // Most messages are delivered from memory before the materializer writes them:
        // settled here, without a hand-off to a blocking thread.
        let res = if self.ctx.spool.settle_in_memory(&self.file, self.source) {
            Ok(Ok(()))
        } else {
            let spool = Arc::clone(&self.ctx.spool);
            let file = self.file.clone();
            let source = self.source;
            tokio::task::spawn_blocking(move || spool.settle(&file, source)).await
        };
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
            Some(Dest::Handset(key)) => self.handset(key, address, attempts).await,
            Some(Dest::Esme { system_id }) => self.receipt(system_id).await,
        }
    }

    async fn handset(
        &mut self,
        key: &HandsetKey,
        address: &str,
        attempts: u32,
    ) -> (Outcome, String) {
        if let Some(esme) = route::esme_service(key, &self.cfg().smpp.esme) {
            return self.esme(esme.system_id.clone(), key).await;
        }
        let bts_port = self.cfg().delivery.bts.port();
        let found = self.ctx.registry.whereabouts(key, bts_port).await;
        let crate::registry::Whereabouts {
            subscriber: sub,
            bindings,
            location,
        } = match found {
            Ok(x) => x,
            Err(e) => {
                return (
                    outcome::local(Local::Registry(e.to_string())),
                    "none".into(),
                );
            }
        };
        let cfg = Arc::clone(&self.cfg);
        let d = &cfg.delivery;
        let bts = Bts {
            addr: d.bts,
            transport: d.bts_transport,
        };
        let r = match route::handset(key, sub.as_ref(), &bindings, location, bts, d.email_mode) {
            Ok(r) => r,
            Err(route::NoRoute::Unknown(n)) => {
                let upstream = match key {
                    HandsetKey::Number(m) => route::upstream(m.digits(), &cfg.smpp.route),
                    HandsetKey::Imsi(_) => None,
                };
                return match upstream {
                    Some(name) => self.upstream(name, key, address).await,
                    None => (
                        outcome::local(Local::NoRoute(route::NoRoute::Unknown(n))),
                        "none".into(),
                    ),
                };
            }
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
                self.cfg().queue.mail_lifetime.0.as_secs(),
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
            ctx,
            file,
            content,
            facts,
            ..
        } = self;
        let content = text_once(ctx, file, content, facts);
        let out = ctx.sip.deliver(&target, content, reference).await;
        (out, format!("{}[{}]", target.uri, target.addr))
    }

    /// A notice to the sender: an SMS for a handset sender, a DSN for an e-mail sender.
    pub(super) fn notice(&self, kind: DsnKind, failures: &[Failure], now: u64) -> QueueFile {
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
    /// Whether a delay warning is due now, the sender's wishes aside.
    fn delay_warning_due(&self, now: u64) -> bool {
        let after = self.cfg().delivery.delay_warning.0.as_secs();
        let env = &self.file.envelope;
        after != 0 && !env.warned && now.saturating_sub(env.arrival) >= after
    }

    fn delay_warning(&mut self, notify: bool, now: u64) -> Option<QueueFile> {
        if !notify || !self.delay_warning_due(now) {
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
    pub(super) fn status_reports(&self, reports: &[(String, u8)], now: u64) -> Vec<QueueFile> {
        let cfg = self.cfg();
        let env = &self.file.envelope;
        if reports.is_empty()
            || env.origin.kind != OriginKind::Sip
            || Msisdn::in_address(&env.sender, &cfg.domains).is_none()
        {
            return Vec::new();
        }
        let Some((mr, sent_to)) = self.facts().report_request() else {
            return Vec::new();
        };
        let sent_to = sent_to.map(|n| n.to_string());
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

/// The job's text, computed at the first call ([`sms_text`]); the SMS facts read in the same
/// parse are kept in `facts`. (Free of `Job` so that the caller can borrow its other fields.)
pub(super) fn text_once<'c>(
    ctx: &Ctx,
    file: &QueueFile,
    content: &'c mut Option<SmsContent>,
    facts: &std::sync::OnceLock<SmsFacts>,
) -> &'c SmsContent {
    content.get_or_insert_with(|| {
        let (c, f) = sms_text(ctx, file);
        let _ = facts.set(f);
        c
    })
}

/// What a handset sees of the message (computed once per job), and the message's SMS facts
/// (read in the same parse).
pub(super) fn sms_text(ctx: &Ctx, file: &QueueFile) -> (SmsContent, SmsFacts) {
    let d = &ctx.cfg().delivery;
    let opts = TextOptions {
        local_domains: &ctx.cfg().domains,
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
    text::sms_content_and_facts(&file.message, &file.envelope.sender, &opts)
}

/// The message as it leaves for another domain (computed once per job): our Received line on
/// top, and nothing that names the handset's IMSI, its RP-DATA or the BTS
/// ([`crate::mail::provenance::for_outside`]).
pub(super) fn with_received(ctx: &Ctx, file: &QueueFile) -> Vec<u8> {
    let mut out = format!(
        "Received: by {} (smsmta) id {};\r\n\t{}\r\n",
        ctx.cfg().hostname,
        file.envelope.id.0,
        rfc5322_date(now_unix())
    )
    .into_bytes();
    out.extend_from_slice(&crate::mail::provenance::for_outside(&file.message));
    out
}

pub(super) fn expired_outcome() -> Outcome {
    outcome::local(Local::Expired)
}
