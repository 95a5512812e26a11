//! Texts that leave through an upstream SMSC, and what comes back from it.
//!
//! **Out.** A text for a number that is none of our subscribers goes to the upstream the
//! `[[smpp.route]]` table names ([`route::upstream`]), as one submit_sm or several (the
//! upstream's `long_texts`). The recipient is done only when every part got submit_sm_resp OK;
//! any other answer is classified once ([`outcome::upstream`]), and a retry resends every part
//! (the SMSC may then carry a part twice: never none). When the sender asked for a report
//! (TP-SRR, or registered_delivery of an ESME), the SMSC's message_ids are written to the
//! [`Store`] with the original queue file *before* the message leaves the spool; the report is
//! then owed when the receipt comes, not at submission.
//!
//! **In.** [`inbound`] handles every deliver_sm an upstream sends: a receipt is matched by
//! (upstream, message_id) and becomes the sender's status report (or failure notice, or ESME
//! receipt), committed before deliver_sm_resp; one that matches nothing is logged, counted and
//! answered OK (never an error to the SMSC). A text for one of our subscribers is stored like
//! any SMPP text (answer after the commit); a part of a longer text is kept in the store until
//! the whole text is there; a deliver_sm stored already within `[sip] dedup_window` (the SMSC
//! resending after a lost response) is answered OK and not stored again.
//!
//! **Trust.** The SMSC's PDUs are decoded by `smpp::pdu` and read by `smpp::esme`; a
//! destination that is none of our subscribers is ESME_RINVDSTADR; nothing it sends names a
//! recipient outside our subscribers.
//!
//! Standards: SMPP 3.4 (4.4 submit_sm, 4.6 deliver_sm, Appendix B), TS 23.040 9.2.2.3
//! (SMS-STATUS-REPORT).

use super::*;
use crate::mail::facts::SmsFacts;
use crate::smpp::client::Inbound;
use crate::smpp::esme::{self, Fate};
use crate::smpp::pdu::{Sm, status as smpp_status};
use crate::spool::Taken;

impl Job<'_> {
    /// A text for `key` through upstream `name`.
    pub(super) async fn upstream(
        &mut self,
        name: &str,
        key: &HandsetKey,
        address: &str,
    ) -> (Outcome, String) {
        self.went_upstream = true;
        let relay = format!("smpp:{name}");
        let cfg = Arc::clone(&self.cfg);
        let Some(up) = cfg.smpp.upstream.iter().find(|u| u.name == name) else {
            let why = format!("route to unknown upstream {name}");
            return (outcome::local(Local::BadEnvelope(why)), relay);
        };
        let Job {
            ctx,
            file,
            content,
            facts,
            ..
        } = self;
        let content = text_once(ctx, file, content, facts);
        let receipt = facts
            .get_or_init(|| SmsFacts::from_mail(&file.message))
            .status_report_request
            == Some(true);
        let reference = (file.id().micros() & 0xFF) as u8;
        let parts = esme::submits(
            &content.originator,
            &key.to_string(),
            &content.text,
            up.long_texts,
            reference,
            receipt,
        );
        let timeout = up.response_timeout.0 + Duration::from_secs(5);
        let mut ids = Vec::with_capacity(parts.len());
        for sm in parts {
            match ctx.upstreams.submit(name, sm, timeout).await {
                Ok((0, id)) => ids.push(id),
                Ok((st, _)) => return (outcome::upstream(Ok(st)), relay),
                Err(e) => return (outcome::upstream(Err(e)), relay),
            }
        }
        if receipt {
            self.await_receipt(name, &ids, address).await;
        }
        (
            Outcome::Delivered,
            format!("{relay} (message_id {})", ids.join(",")),
        )
    }

    /// Records the receipts owed for `address`; the report then waits for them.
    async fn await_receipt(&mut self, name: &str, ids: &[String], address: &str) {
        let id = self.file.id();
        let bytes = match self.file.encode() {
            Ok(b) => b,
            Err(e) => {
                error!("{id}: no report will follow for <{address}>: {e}");
                return;
            }
        };
        let (store, name_s, ids_v, qid, addr) = (
            Arc::clone(&self.ctx.store),
            name.to_string(),
            ids.to_vec(),
            id.to_string(),
            address.to_string(),
        );
        let expires = self.file.envelope.expires.max(now_unix() + 86_400);
        let r = tokio::task::spawn_blocking(move || {
            store.await_receipts(&name_s, &ids_v, &qid, &addr, &bytes, expires)
        })
        .await;
        match r {
            Ok(Ok(())) => self.awaited.push(address.to_string()),
            Ok(Err(e)) => error!("{id}: no report will follow for <{address}>: {e}"),
            Err(e) => error!("{id}: no report will follow for <{address}>: {e}"),
        }
    }

    /// The notices a receipt owes: the status report or ESME receipt, and a failure notice
    /// when the text failed and the sender is told of failures.
    fn after_receipt(&mut self, address: &str, fate: Fate, now: u64) -> Vec<QueueFile> {
        let outcome = match fate {
            Fate::Delivered => Outcome::Delivered,
            Fate::Expired => Outcome::Bounce {
                reason: "the SMSC says: expired".into(),
                status: outcome::EXPIRED,
            },
            Fate::Failed | Fate::Pending => Outcome::Bounce {
                reason: "the SMSC says: undeliverable".into(),
                status: "5.1.1",
            },
        };
        let reports: Vec<(String, u8)> = notice::report_status(&outcome)
            .map(|st| (address.to_string(), st))
            .into_iter()
            .collect();
        let mut out = self.status_reports(&reports, now);
        out.extend(self.esme_receipts(&reports, now));
        if let Outcome::Bounce { reason, status } = &outcome {
            let notify = notice::should_notify(
                &self.file.envelope.sender,
                &self.file.envelope.origin,
                &self.file.message,
                &self.ctx.cfg().domains,
            );
            if notify {
                let f = Failure {
                    recipient: address.to_string(),
                    status: status.to_string(),
                    reason: reason.clone(),
                };
                out.push(self.notice(DsnKind::Failed, &[f], now));
            }
        }
        out
    }
}

/// The handler of every deliver_sm from the upstreams (see the module docs).
pub fn inbound(ctx: Arc<Ctx>) -> Inbound {
    Arc::new(move |name: String, sm: Sm| {
        let ctx = Arc::clone(&ctx);
        Box::pin(async move { handle(&ctx, &name, sm).await })
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::smpp::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn handle(ctx: &Arc<Ctx>, name: &str, sm: Sm) -> u32 {
    if let Some(r) = esme::receipt(&sm) {
        return receipt(ctx, name, r).await;
    }
    let Some((concat, body)) = esme::part(&sm) else {
        return smpp_status::INVDCS;
    };
    let digest = digest(name, &sm);
    let now = now_unix();
    if ctx.store.seen(&digest, now) {
        info!(
            "smpp upstream {name}: deliver_sm from {} already stored; answered again",
            sm.source.addr
        );
        return smpp_status::OK;
    }
    let text = match concat {
        None => body.text(),
        Some(c) => {
            let key = format!("{name}|{}|{}|{}", sm.source.addr, sm.dest.addr, c.reference);
            match crate::smpp::intake::keep_part(&ctx.store, key, c, &body, now).await {
                Ok(None) => return smpp_status::OK,
                Ok(Some(text)) => text,
                Err(st) => return st,
            }
        }
    };
    let t = crate::smpp::intake::Text {
        source: &sm.source.addr,
        dest: &sm.dest.addr,
        text: &text,
        facts: SmsFacts::default(),
        peer: name.to_string(),
        via: format!("upstream={name}"),
        door: crate::metrics::Door::Upstream,
    };
    match crate::smpp::intake::store(&ctx.cfg(), &ctx.writer, &ctx.registry, t).await {
        Ok(_) => {
            let until = now + ctx.cfg().sip.dedup_window.0.as_secs();
            ctx.store.mark_seen(&digest, until);
            smpp_status::OK
        }
        Err(st) => st,
    }
}

/// Every second: writes the duplicate digests recorded since (see `smpp::store`). Every
/// minute: forgets receipts never received and duplicate digests past their window, and
/// stores the texts whose parts did not all come within `[sip] concat_timeout`, with the gap
/// marked (as SIP does): a part answered OK is never dropped.
pub async fn sweep(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut tick = 0u32;
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        };
        // Every second (and at shutdown): the duplicate digests recorded since.
        let store = Arc::clone(&ctx.store);
        if let Err(e) = blocking(move || store.flush_seen()).await {
            warn!("{e}");
        }
        tick += 1;
        if stop {
            return;
        }
        if !tick.is_multiple_of(60) {
            continue;
        }
        let now = now_unix();
        let store = Arc::clone(&ctx.store);
        match blocking(move || store.sweep(now)).await {
            Ok((0, _)) => {}
            Ok((a, _)) => info!("smpp store: {a} receipt(s) never came"),
            Err(e) => warn!("{e}"),
        }
        let before = now.saturating_sub(ctx.cfg().sip.concat_timeout.0.as_secs());
        let store = Arc::clone(&ctx.store);
        let stale = match blocking(move || store.stale_parts(before)).await {
            Ok(s) => s,
            Err(e) => {
                warn!("{e}");
                continue;
            }
        };
        for (key, total, parts) in stale {
            let mut f = key.splitn(4, '|');
            let (Some(name), Some(source), Some(dest)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let text = crate::smpp::intake::join_parts(&parts, total);
            // Parts from an ESME (`esme:<system_id>`) or from an upstream (its name).
            let via = match name.strip_prefix("esme:") {
                Some(id) => format!("system_id={id}"),
                None => format!("upstream={name}"),
            };
            let t = crate::smpp::intake::Text {
                source,
                dest,
                text: &text,
                facts: SmsFacts::default(),
                peer: name.trim_start_matches("esme:").to_string(),
                via: format!("{via}, {} of {total} parts", parts.len()),
                door: if name.starts_with("esme:") {
                    crate::metrics::Door::Smpp
                } else {
                    crate::metrics::Door::Upstream
                },
            };
            match crate::smpp::intake::store(&ctx.cfg(), &ctx.writer, &ctx.registry, t).await {
                // Stored, or refused for good: the parts go either way.
                Ok(_) | Err(smpp_status::INVDSTADR) => {
                    let store = Arc::clone(&ctx.store);
                    let k = key.clone();
                    if let Err(e) = blocking(move || store.drop_parts(&k)).await {
                        warn!("{e}");
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// What identifies a deliver_sm when the SMSC sends it again (its sequence_number changes).
fn digest(name: &str, sm: &Sm) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(name.as_bytes());
    h.update(&[0]);
    h.update(sm.source.addr.as_bytes());
    h.update(&[0]);
    h.update(sm.dest.addr.as_bytes());
    h.update(&[0, sm.esm_class, sm.data_coding]);
    h.update(sm.payload());
    for (t, v) in &sm.tlvs {
        h.update(&t.to_be_bytes());
        h.update(v);
    }
    let mut h2 = crc32fast::Hasher::new_with_initial(0x5A5A_5A5A);
    h2.update(sm.payload());
    h2.update(sm.source.addr.as_bytes());
    format!(
        "{name}:{:08x}{:08x}:{}",
        h.finalize(),
        h2.finalize(),
        sm.payload().len()
    )
}

async fn receipt(ctx: &Arc<Ctx>, name: &str, r: esme::Receipt) -> u32 {
    if r.fate == Fate::Pending {
        info!(
            "smpp upstream {name}: receipt for {}: {} (not final)",
            r.id, r.stat
        );
        return smpp_status::OK;
    }
    let store = Arc::clone(&ctx.store);
    let (n, id, failed) = (name.to_string(), r.id.clone(), r.fate != Fate::Delivered);
    let matched = match blocking(move || store.settle(&n, &id, failed)).await {
        Ok(m) => m,
        Err(e) => {
            warn!("smpp upstream {name}: {e}");
            return smpp_status::MSGQFUL;
        }
    };
    let Some(m) = matched else {
        let n = crate::metrics::get().unmatched_receipt();
        warn!(
            "smpp upstream {name}: receipt for message_id {} ({}) matches nothing ({n} so far)",
            r.id, r.stat
        );
        return smpp_status::OK;
    };
    if !m.settled {
        return smpp_status::OK;
    }
    let Ok(file) = QueueFile::decode(&m.file) else {
        error!(
            "smpp upstream {name}: the message receipt {} is for does not decode",
            r.id
        );
        finish(ctx, name, &m).await;
        return smpp_status::OK;
    };
    let qid = file.id();
    info!(queue_id = %qid, "{qid}: to=<{}>, relay=smpp:{name}, receipt {} stat={}", m.address, r.id, r.stat);
    let mut job = Job::new(ctx, file, Taken::Memory);
    for n in job.after_receipt(&m.address, r.fate, now_unix()) {
        let nid = n.id();
        if let Err(e) = ctx.writer.commit(n).await {
            error!("{qid}: cannot queue the report {nid}: {e}");
            return smpp_status::MSGQFUL;
        }
        info!(queue_id = %qid, "{qid}: sender notice: {nid}");
    }
    // Only now: a crash before this makes the SMSC resend the receipt (a report twice).
    finish(ctx, name, &m).await;
    smpp_status::OK
}

/// Forgets the receipts `m` settled (its report is committed, or can never be made).
async fn finish(ctx: &Arc<Ctx>, name: &str, m: &crate::smpp::store::Matched) {
    let store = Arc::clone(&ctx.store);
    let (q, a) = (m.queue_id.clone(), m.address.clone());
    if let Err(e) = blocking(move || store.finish(&q, &a)).await {
        warn!("smpp upstream {name}: {e}");
    }
}
