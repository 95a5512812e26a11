//! Concatenated SMS at intake: each part of a multi-part text is stored durably in the
//! registry (its 202 waits for that commit) until all have arrived, or `[sip] concat_timeout`
//! passes and the text goes out with the gap marked; then the parts become one mail.
//!
//! **Trust.** Parts come from handsets: their reference, count and sequence numbers are
//! checked by the SMS codec ([`crate::sms::segment`]); a part never overwrites another's text.
//!
//! Standards: TS 23.040 9.2.3.24.1 (concatenation information element).

use std::net::SocketAddr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::clock::now_unix;
use crate::mail::facts::SmsFacts;
use crate::sms::segment::{Added, Partial};
use crate::sms::tpdu::Body;
use crate::sms::udh::Concat;

use super::service::{Refusal, Service, refuse};

/// Marks the parts of a text that never came.
pub const GAP_MARK: &str = "[...]";

/// One part of a concatenated SMS, as stored in the registry until the rest arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredPart {
    pub(super) body: Body,
    pub(super) sender: String,
    pub(super) dest: String,
    pub(super) lifetime: u64,
    /// Stored as the name/value pairs of the queue file's headers, as before the facts were
    /// typed, so parts held across an upgrade still read.
    #[serde(with = "fact_pairs")]
    pub(super) facts: SmsFacts,
    pub(super) peer: String,
    pub(super) transport: String,
    pub(super) original_b64: String,
    pub(super) concat: Concat,
}

/// [`SmsFacts`] as the `(name, value)` pairs of its header codec.
mod fact_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::mail::facts::SmsFacts;

    pub(super) fn serialize<S: Serializer>(f: &SmsFacts, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(&str, String)> = f
            .pairs()
            .into_iter()
            .map(|(n, v)| (n.as_str(), v))
            .collect();
        pairs.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SmsFacts, D::Error> {
        let pairs = Vec::<(String, String)>::deserialize(d)?;
        Ok(SmsFacts::from_pairs(
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        ))
    }
}

impl Service {
    pub(super) fn part_key(p: &StoredPart) -> String {
        format!(
            "{}|{}|{}|{}",
            p.sender, p.dest, p.concat.reference, p.concat.total
        )
    }

    /// Stores a part durably; when it completes its message, spools the whole message.
    pub(super) async fn store_part(&self, part: StoredPart) -> Result<(), Refusal> {
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
    pub(super) async fn complete_parts(
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
        facts.rp_data = None;
        facts.parts = Some((parts.len(), first.concat.total));
        if incomplete {
            facts.missing = Some(partial.missing());
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
        let cutoff = now_unix().saturating_sub(self.cfg().sip.concat_timeout.0.as_secs());
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
}
