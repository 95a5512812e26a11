//! The SMPP doors' commit: a text from an ESME (submit_sm) or an upstream SMSC (deliver_sm),
//! already checked by its session, becomes a mail in the spool, durable before the caller
//! answers OK.
//!
//! A part of a longer text (UDH or SAR, from either role) is kept in `smpp.sqlite` by
//! [`keep_part`] until every part is there, answered OK once kept; the last part stores the
//! whole text. (The sweep stores texts whose parts did not all come, with a gap mark.)
//!
//! **Trust.** The originator must be a number or a short alphanumeric name ([`originator`],
//! else ESME_RINVSRCADR); the recipient must be an enabled subscriber (else ESME_RINVDSTADR); the text
//! becomes a mail from `<source>@<sms domain>` with a null envelope sender (no bounce goes
//! back to an SMPP peer as a text). A full disk or a failed commit is ESME_RMSGQFUL, which
//! every SMPP peer retries.
//!
//! Standards: SMPP 3.4 5.1.3 (command_status), RFC 5322 (the mail, by `mail::from_sms`).

use tracing::{info, warn};

use super::pdu::status;
use super::store::Store;
use crate::config::Config;
use crate::identity::HandsetKey;
use crate::mail::facts::SmsFacts;
use crate::mail::from_sms::{self, SmsMail};
use crate::registry::Registry;
use crate::sms::tpdu::Body;
use crate::sms::udh::Concat;
use crate::spool::{Origin, OriginKind, Writer};

/// A checked text to store.
#[derive(Debug, Clone)]
pub struct Text<'a> {
    /// The originator as the peer sent it (a number, or an alphanumeric name).
    pub source: &'a str,
    /// The recipient's number (digits).
    pub dest: &'a str,
    /// The text.
    pub text: &'a str,
    /// The SMS facts to keep with it.
    pub facts: SmsFacts,
    /// The peer's address.
    pub peer: String,
    /// Who sent it, for the log line (`system_id=app`, `upstream=agg`).
    pub via: String,
    /// The door it came in by (an ESME's submit_sm, an upstream's deliver_sm), for the metrics.
    pub door: crate::metrics::Door,
}

/// The originator as it goes into the mail address: a number's digits (1-15, a `+` dropped),
/// or an alphanumeric name of at most 11 letters, digits, `.`, `_` or `-` (TS 23.040's
/// alphanumeric TP-OA); `None` for anything else (it would not make a mail address).
pub fn originator(source: &str) -> Option<String> {
    if let Ok(n) = crate::identity::Msisdn::parse(source)
        && !source.bytes().any(|b| b.is_ascii_whitespace())
    {
        return Some(n.digits().to_string());
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    (!source.is_empty() && source.len() <= 11 && source.bytes().all(ok)).then(|| source.to_string())
}

/// Keeps part `c` (its body `body`) of the text `key` names in `store`, durably; the whole
/// text once every part is there (`None` until then). The key names the peer, the
/// originator, the recipient and the reference, so parts of different texts never mix.
///
/// # Errors
/// ESME_RMSGQFUL when the store cannot keep it (the peer resends), ESME_RSYSERR when the body
/// does not serialise.
pub async fn keep_part(
    store: &std::sync::Arc<Store>,
    key: String,
    c: Concat,
    body: &Body,
    now: u64,
) -> Result<Option<String>, u32> {
    let json = serde_json::to_string(body).map_err(|_| status::SYSERR)?;
    let s = std::sync::Arc::clone(store);
    let r = tokio::task::spawn_blocking(move || s.add_part(&key, c.seq, c.total, &json, now)).await;
    match r {
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(parts))) => {
            let numbered: Vec<(u8, String)> = (1u8..).zip(parts).collect();
            Ok(Some(join_parts(&numbered, c.total)))
        }
        Ok(Err(e)) => {
            warn!("{e}");
            Err(status::MSGQFUL)
        }
        Err(e) => {
            warn!("smpp store: {e}");
            Err(status::MSGQFUL)
        }
    }
}

/// The text of the parts there are, by sequence (bodies as [`keep_part`] kept them); each
/// run of missing parts is marked `[...]` (as SIP marks them).
pub fn join_parts(parts: &[(u8, String)], total: u8) -> String {
    let c = Concat {
        reference: 0,
        total,
        seq: 1,
        wide: true,
    };
    let mut whole = crate::sms::segment::Partial::new(&c);
    for (seq, p) in parts {
        if let Ok(body) = serde_json::from_str(p) {
            whole.add(&Concat { seq: *seq, ..c }, body);
        }
    }
    whole.text(crate::sip::GAP_MARK)
}

/// Stores `t`; its queue ID once durable, or the command_status to answer with.
///
/// # Errors
/// The SMPP status: ESME_RINVSRCADR for an originator that is neither a number nor an
/// alphanumeric name ([`originator`]), ESME_RINVDSTADR for a recipient that is no enabled subscriber,
/// ESME_RMSGQFUL when the spool cannot take it now.
pub async fn store(
    cfg: &Config,
    writer: &Writer,
    registry: &Registry,
    t: Text<'_>,
) -> Result<String, u32> {
    let door = t.door;
    let r = store_checked(cfg, writer, registry, t).await;
    crate::metrics::get().received(door, r.is_ok());
    r
}

async fn store_checked(
    cfg: &Config,
    writer: &Writer,
    registry: &Registry,
    t: Text<'_>,
) -> Result<String, u32> {
    if writer.spool().low_on_space() {
        return Err(status::MSGQFUL);
    }
    let key = HandsetKey::parse(t.dest).map_err(|_| status::INVDSTADR)?;
    match registry.subscriber(&key).await {
        Ok(Some(s)) if s.enabled => {}
        Ok(_) => return Err(status::INVDSTADR),
        Err(e) => {
            warn!(peer = %t.peer, "smpp registry lookup: {e}");
            return Err(status::MSGQFUL);
        }
    }
    let source = originator(t.source).ok_or(status::INVSRCADR)?;
    let domain = cfg.sms_domain();
    let from = format!("{source}@{domain}");
    let to = format!("{}@{domain}", t.dest);
    let mut file = writer.spool().new_message(
        "",
        std::slice::from_ref(&to),
        Vec::new(),
        Origin {
            kind: OriginKind::Smpp,
            peer: t.peer.clone(),
            sender_number: Some(source.clone()),
        },
        cfg.queue.sms_lifetime.0.as_secs(),
    );
    let id = file.id().to_string();
    file.message = from_sms::build(&SmsMail {
        queue_id: &id,
        from: &from,
        to: &to,
        text: t.text,
        subject: None,
        date: file.envelope.arrival,
        hostname: &cfg.hostname,
        peer: &t.peer,
        protocol: "SMPP",
        transport: "TCP",
        facts: &t.facts,
    });
    match writer.commit(file).await {
        Ok(id) => {
            info!(queue_id = %id, "{id}: smpp {}, from=<{from}>, to=<{to}>, peer={}", t.via, t.peer);
            Ok(id.to_string())
        }
        Err(e) => {
            warn!(peer = %t.peer, "smpp commit failed: {e}");
            Err(status::MSGQFUL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::originator;

    #[test]
    fn an_originator_is_a_number_or_a_short_alphanumeric_name_and_nothing_else() {
        assert_eq!(originator("+447700900123").as_deref(), Some("447700900123"));
        assert_eq!(originator("INFO").as_deref(), Some("INFO"));
        assert_eq!(originator("Bank-Alert1").as_deref(), Some("Bank-Alert1"));
        for bad in [
            "",
            " 4477",
            "4477 ",
            "4477\n",
            "a@b",
            "x>\r\nBcc: y",
            "caf\u{e9}",
            "TwelveLetter",
            "<>",
            "1 2",
        ] {
            assert_eq!(originator(bad), None, "{bad:?}");
        }
    }
}
