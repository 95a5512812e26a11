//! The SMPP delivery agent: texts for an ESME's service number go to it as deliver_sm over one
//! of its bound receiver or transceiver sessions, and the deliver_sm_resp is the answer.
//!
//! [`Binds`] is the table of bound sessions that can receive, by system_id, shared by the
//! listener (which registers a session when its bind is accepted and removes it when the
//! connection ends) and the queue manager. Each session takes its deliver_sm through a bounded
//! channel; the agent waits for the response at most `timeout`. An ESME that is not bound, a
//! full channel, a connection that ends first or no answer in time are what the agent reports:
//! [`crate::delivery::outcome::smpp`] classifies them (temporary: the text is retried while the
//! ESME is away, within the queue lifetime).
//!
//! Trust: the ESME's answers are classified, never believed beyond their status.
//!
//! Standards: SMPP 3.4 4.6 (deliver_sm), 5.2.12 (esm_class).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::pdu::{Address, Sm, tag};
use super::text;

/// deliver_sm queued for one session at most.
const SESSION_QUEUE: usize = 256;

/// A deliver_sm for a session to send, and where its response's status goes.
#[derive(Debug)]
pub struct Outbound {
    /// The body.
    pub sm: Sm,
    /// The deliver_sm_resp's command_status.
    pub reply: oneshot::Sender<u32>,
}

/// Why a deliver_sm got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No session of the ESME can receive.
    #[error("ESME not bound")]
    NotBound,
    /// Its sessions have too much queued.
    #[error("ESME busy")]
    Busy,
    /// The connection ended before the answer.
    #[error("connection closed before deliver_sm_resp")]
    Closed,
    /// No answer in time.
    #[error("no deliver_sm_resp in time")]
    Timeout,
}

/// The sessions of each system_id: a handle and the channel to each.
type Sessions = HashMap<String, Vec<(u64, mpsc::Sender<Outbound>)>>;

/// Bound sessions that can receive, by system_id.
#[derive(Debug, Default)]
pub struct Binds {
    map: Mutex<Sessions>,
    next: AtomicU64,
}

impl Binds {
    fn map(&self) -> std::sync::MutexGuard<'_, Sessions> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Registers a session of `system_id`; its handle (for [`Binds::remove`]) and the channel
    /// its deliver_sm arrive on.
    pub fn add(&self, system_id: &str) -> (u64, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map()
            .entry(system_id.to_string())
            .or_default()
            .push((id, tx));
        (id, rx)
    }

    /// Forgets a session.
    pub fn remove(&self, system_id: &str, id: u64) {
        let mut m = self.map();
        if let Some(v) = m.get_mut(system_id) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                m.remove(system_id);
            }
        }
    }

    /// Whether `system_id` has a session that can receive.
    pub fn is_bound(&self, system_id: &str) -> bool {
        self.map().contains_key(system_id)
    }

    /// Sends `sm` to one of `system_id`'s sessions (the first with room) and waits at most
    /// `timeout` for the deliver_sm_resp; its command_status.
    ///
    /// # Errors
    /// [`AgentError`] when nothing answered.
    pub async fn deliver(
        &self,
        system_id: &str,
        sm: Sm,
        timeout: Duration,
    ) -> Result<u32, AgentError> {
        let (reply, answer) = oneshot::channel();
        let mut out = Outbound { sm, reply };
        {
            let m = self.map();
            let sessions = m.get(system_id).ok_or(AgentError::NotBound)?;
            let mut sent = false;
            for (_, tx) in sessions {
                match tx.try_send(out) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(
                        mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o),
                    ) => out = o,
                }
            }
            if !sent {
                return Err(AgentError::Busy);
            }
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_)) => Err(AgentError::Closed),
            Err(_) => Err(AgentError::Timeout),
        }
    }
}

/// An SMPP address for `a`: a full number (8 digits or more) international (TON 1, E.164),
/// a shorter one (a short code) of unknown type with E.164 numbering, letters alphanumeric.
fn address(a: &str) -> Address {
    let (ton, npi) = if !a.bytes().all(|b| b.is_ascii_digit()) {
        (5, 0)
    } else if a.len() >= 8 {
        (1, 1)
    } else {
        (0, 1)
    };
    Address {
        ton,
        npi,
        addr: a.to_string(),
    }
}

/// The deliver_sm for a text from `source` to the ESME's `service` number: GSM 03.38 when the
/// alphabet holds it, else UCS-2; in message_payload when it is longer than short_message can
/// carry.
pub fn deliver_sm(source: &str, service: &str, body: &str) -> Sm {
    let (data_coding, octets) = text::encode(body);
    let (short_message, tlvs) = if octets.len() > super::pdu::max::SHORT_MESSAGE {
        (Vec::new(), vec![(tag::MESSAGE_PAYLOAD, octets)])
    } else {
        (octets, Vec::new())
    };
    Sm {
        source: address(source),
        dest: address(service),
        data_coding,
        short_message,
        tlvs,
        ..Sm::default()
    }
}

/// The delivery receipt for the message `id` an ESME submitted (SMPP 3.4 Appendix B text, and
/// the 5.0 TLVs receipted_message_id and message_state): esm_class 0x04, from the number the
/// text went to, to the source the ESME submitted from. `st` is the TP-ST of the outcome.
pub fn receipt_sm(id: &str, report: &crate::mail::facts::ReportFacts, esme_source: &str) -> Sm {
    use crate::sms::tpdu::status;
    let (stat, state) = match report.status {
        status::DELIVERED => ("DELIVRD", 2u8),
        status::VALIDITY_EXPIRED => ("EXPIRED", 3),
        _ => ("UNDELIV", 5),
    };
    let date = |t: u64| {
        let c = crate::clock::Civil::from_unix(i64::try_from(t).unwrap_or(i64::MAX));
        format!(
            "{:02}{:02}{:02}{:02}{:02}",
            c.year.rem_euclid(100),
            c.month,
            c.day,
            c.hour,
            c.minute
        )
    };
    let text = format!(
        "id:{id} sub:001 dlvrd:{} submit date:{} done date:{} stat:{stat} err:000 text:",
        if state == 2 { "001" } else { "000" },
        date(report.submitted),
        date(report.discharged)
    );
    let mut id_tlv = id.as_bytes().to_vec();
    id_tlv.push(0);
    Sm {
        source: address(&report.recipient),
        dest: address(esme_source),
        esm_class: 0x04,
        short_message: text.into_bytes(),
        tlvs: vec![
            (tag::RECEIPTED_MESSAGE_ID, id_tlv),
            (tag::MESSAGE_STATE, vec![state]),
        ],
        ..Sm::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deliver_sm_goes_to_a_bound_session_and_its_status_comes_back() {
        let b = Binds::default();
        assert_eq!(
            b.deliver("app", Sm::default(), Duration::from_secs(1))
                .await,
            Err(AgentError::NotBound)
        );
        let (id, mut rx) = b.add("app");
        assert!(b.is_bound("app"));
        let answer = tokio::spawn(async move {
            let o = rx.recv().await.unwrap();
            assert_eq!(o.sm.dest.addr, "2337");
            o.reply.send(0).unwrap();
            rx
        });
        let sm = deliver_sm("15551234567", "2337", "hi");
        assert_eq!(b.deliver("app", sm, Duration::from_secs(5)).await, Ok(0));
        let rx = answer.await.unwrap();
        drop(rx);
        assert_eq!(
            b.deliver("app", Sm::default(), Duration::from_secs(1))
                .await,
            Err(AgentError::Busy),
            "a session whose connection ended takes nothing"
        );
        b.remove("app", id);
        assert!(!b.is_bound("app"));
    }

    #[test]
    fn a_receipt_says_what_became_of_the_message_as_smpp_appendix_b_writes_it() {
        let r = crate::mail::facts::ReportFacts {
            message_ref: 0,
            recipient: "15551234567".into(),
            status: crate::sms::tpdu::status::DELIVERED,
            submitted: 1_795_627_454,
            discharged: 1_795_627_514,
        };
        let sm = receipt_sm("0644C2A1B3C4D5A1B2C3", &r, "2337");
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!(
            String::from_utf8(sm.short_message.clone()).unwrap(),
            "id:0644C2A1B3C4D5A1B2C3 sub:001 dlvrd:001 submit date:2611251724 done date:2611251725 stat:DELIVRD err:000 text:"
        );
        assert_eq!(sm.tlv(tag::MESSAGE_STATE), Some(&[2u8][..]));
        assert_eq!(
            sm.tlv(tag::RECEIPTED_MESSAGE_ID),
            Some(&b"0644C2A1B3C4D5A1B2C3\0"[..])
        );
        assert_eq!(
            (sm.source.addr.as_str(), sm.dest.addr.as_str()),
            ("15551234567", "2337")
        );
        let r = crate::mail::facts::ReportFacts {
            status: crate::sms::tpdu::status::NOT_OBTAINABLE,
            ..r
        };
        assert!(
            String::from_utf8(receipt_sm("x", &r, "2337").short_message)
                .unwrap()
                .contains("stat:UNDELIV")
        );
    }

    #[test]
    fn long_and_non_gsm_texts_choose_their_field_and_coding() {
        let sm = deliver_sm("15551234567", "2337", "hi");
        assert_eq!(
            (sm.data_coding, sm.short_message.as_slice(), sm.source.ton),
            (0, &b"hi"[..], 1)
        );
        let long = deliver_sm("INFO", "2337", &"x".repeat(300));
        assert!(long.short_message.is_empty());
        assert_eq!(long.tlv(tag::MESSAGE_PAYLOAD).map(<[u8]>::len), Some(300));
        assert_eq!(long.source.ton, 5);
        assert_eq!(deliver_sm("1", "2", "Пр").data_coding, 8);
    }
}
