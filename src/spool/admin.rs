//! Queue administration: what `smsmta queue list|show|hold|release|delete|flush` do.
//!
//! Modelled on Postfix's `postqueue -p` (mailq), `postcat -q`, `postsuper -h|-H|-d` and
//! `postqueue -f`. Every operation is a rename or an atomic rewrite, so it is safe while
//! `smsmta serve` runs: the server sees a message in its old place or its new one.
//! Messages in `active/` belong to the delivery worker: they can be listed, shown and deleted
//! (the worker notices the file is gone), but not held, released or flushed.

use serde::Serialize;

use super::{Queue, QueueFile, QueueId, RcptState, Recipient, Spool, SpoolError};

use crate::clock::{format_time, now_unix};

/// One message as `queue list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The queue ID.
    pub id: String,
    /// The queue it is in.
    pub queue: String,
    /// Size of the message in octets.
    pub size: usize,
    /// Arrival time, seconds since the Unix epoch.
    pub arrival: u64,
    /// The reverse-path (empty for bounces).
    pub sender: String,
    /// Recipients with their state.
    pub recipients: Vec<Recipient>,
    /// For a file in `corrupt/` or one that does not decode: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every message in every queue, in queue order, then arrival order.
///
/// # Errors
/// [`SpoolError::Io`] when a queue directory cannot be read.
pub fn list(spool: &Spool) -> Result<Vec<Entry>, SpoolError> {
    let mut out = Vec::new();
    for q in Queue::MESSAGE_QUEUES {
        for id in spool.list(q)? {
            match spool.read(q, id) {
                Ok(f) => out.push(entry(q, &f)),
                // Moved on while we looked: it is listed where it went, or it is gone.
                Err(SpoolError::NotFound(_)) => {}
                Err(e) => out.push(Entry {
                    id: id.to_string(),
                    queue: q.to_string(),
                    size: std::fs::metadata(spool.path(q, id))
                        .map(|m| m.len() as usize)
                        .unwrap_or(0),
                    arrival: id.micros() / 1_000_000,
                    sender: String::new(),
                    recipients: Vec::new(),
                    error: Some(e.to_string()),
                }),
            }
        }
    }
    Ok(out)
}

fn entry(q: Queue, f: &QueueFile) -> Entry {
    Entry {
        id: f.id().to_string(),
        queue: q.to_string(),
        size: f.message.len(),
        arrival: f.envelope.arrival,
        sender: f.envelope.sender.clone(),
        recipients: f.envelope.recipients.clone(),
        error: None,
    }
}

/// Renders `list` like mailq.
pub fn format_list(entries: &[Entry]) -> String {
    use std::fmt::Write;
    if entries.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<9} {:>8} {:<20} Sender/Recipient",
        "Queue ID", "Queue", "Size", "Arrival (UTC)"
    );
    let mut bytes = 0usize;
    for e in entries {
        bytes += e.size;
        let sender = if e.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &e.sender
        };
        let _ = writeln!(
            s,
            "{:<20} {:<9} {:>8} {:<20} {}",
            e.id,
            e.queue,
            e.size,
            format_time(e.arrival),
            sender
        );
        if let Some(err) = &e.error {
            let _ = writeln!(s, "{:61}({err})", "");
        }
        for r in &e.recipients {
            let state = match r.state {
                RcptState::Pending => "pending",
                RcptState::Delivered => "delivered",
                RcptState::Failed => "failed",
            };
            let _ = write!(
                s,
                "{:61}{} [{state}, {} attempt(s)",
                "", r.address, r.attempts
            );
            if r.state == RcptState::Pending && r.attempts > 0 {
                let _ = write!(s, ", next {}", format_time(r.next_attempt));
            }
            let _ = writeln!(s, "]");
            if let Some(reply) = &r.last_reply {
                let _ = writeln!(s, "{:63}({reply})", "");
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "-- {} Kbytes in {} Request{}.",
        bytes.div_ceil(1024),
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    s
}

/// Renders one message: its envelope, then the message itself (like `postcat -q`).
///
/// # Errors
/// As [`Spool::load`].
pub fn show(spool: &Spool, id: QueueId) -> Result<String, SpoolError> {
    let (q, f) = spool.load(id)?;
    let env = serde_json::to_string_pretty(&f.envelope).unwrap_or_default();
    let mut s = format!("*** QUEUE {q} ***\n*** ENVELOPE ***\n{env}\n*** MESSAGE CONTENTS ***\n");
    s.push_str(&String::from_utf8_lossy(&f.message));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    if !f.original.is_empty() {
        s.push_str("*** ORIGINAL REQUEST ***\n");
        s.push_str(&String::from_utf8_lossy(&f.original));
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    s.push_str("*** END ***\n");
    Ok(s)
}

/// Puts a message on hold (from `incoming` or `deferred`). Holding a held message is a no-op.
///
/// # Errors
/// [`SpoolError::NotFound`], [`SpoolError::WrongQueue`] for active or corrupt messages.
pub fn hold(spool: &Spool, id: QueueId) -> Result<(), SpoolError> {
    match spool.find(id).ok_or(SpoolError::NotFound(id))? {
        Queue::Hold => Ok(()),
        q @ (Queue::Incoming | Queue::Deferred) => {
            spool.move_to(id, q, Queue::Hold)?;
            tracing::info!(queue_id = %id, "{id}: held by administrator");
            Ok(())
        }
        queue => Err(SpoolError::WrongQueue {
            id,
            queue,
            op: "hold",
        }),
    }
}

/// Releases a held message into `deferred` (it keeps its schedule; `flush` makes it due now).
///
/// # Errors
/// [`SpoolError::NotFound`], [`SpoolError::WrongQueue`] when it is not held.
pub fn release(spool: &Spool, id: QueueId) -> Result<(), SpoolError> {
    match spool.find(id).ok_or(SpoolError::NotFound(id))? {
        Queue::Hold => {
            spool.move_to(id, Queue::Hold, Queue::Deferred)?;
            tracing::info!(queue_id = %id, "{id}: released from hold");
            Ok(())
        }
        queue => Err(SpoolError::WrongQueue {
            id,
            queue,
            op: "release",
        }),
    }
}

/// Deletes a message from whatever queue holds it.
///
/// # Errors
/// [`SpoolError::NotFound`] or [`SpoolError::Io`].
pub fn delete(spool: &Spool, id: QueueId) -> Result<(), SpoolError> {
    for _ in 0..3 {
        let q = spool.find(id).ok_or(SpoolError::NotFound(id))?;
        match spool.remove(q, id) {
            Ok(()) => {
                tracing::info!(queue_id = %id, "{id}: removed by administrator (from {q})");
                return Ok(());
            }
            // Moved between find and remove: look again.
            Err(SpoolError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SpoolError::NotFound(id))
}

/// Makes a deferred message due now: its pending recipients' next attempt becomes now and it
/// moves to `incoming`. Messages already in `incoming` or `active` are left as they are.
///
/// # Errors
/// [`SpoolError::NotFound`], [`SpoolError::WrongQueue`] for held or corrupt messages.
pub fn flush(spool: &Spool, id: QueueId) -> Result<(), SpoolError> {
    match spool.find(id).ok_or(SpoolError::NotFound(id))? {
        Queue::Incoming | Queue::Active => Ok(()),
        Queue::Deferred => {
            let mut f = spool.read(Queue::Deferred, id)?;
            let now = now_unix();
            for r in &mut f.envelope.recipients {
                if r.state == RcptState::Pending {
                    r.next_attempt = now;
                }
            }
            // Two atomic steps: new schedule in place, then the move.
            spool.rewrite(Queue::Deferred, &f)?;
            spool.move_to(id, Queue::Deferred, Queue::Incoming)?;
            tracing::info!(queue_id = %id, "{id}: flushed by administrator");
            Ok(())
        }
        queue => Err(SpoolError::WrongQueue {
            id,
            queue,
            op: "flush",
        }),
    }
}

/// The IDs an `--all` operation applies to, per operation.
///
/// # Errors
/// [`SpoolError::Io`].
pub fn all_ids(spool: &Spool, queues: &[Queue]) -> Result<Vec<QueueId>, SpoolError> {
    let mut ids = Vec::new();
    for q in queues {
        ids.extend(spool.list(*q)?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Origin, OriginKind};

    fn setup() -> (tempfile::TempDir, Spool, QueueId) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let f = spool.new_message(
            "a@example.org",
            &["15551234567@sms.localhost".into()],
            b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            Origin {
                kind: OriginKind::Local,
                peer: "t".into(),
                sender_number: None,
            },
            60,
        );
        let id = spool.commit_direct(&f).unwrap();
        (dir, spool, id)
    }

    #[test]
    fn hold_then_release_goes_to_deferred() {
        let (_d, spool, id) = setup();
        hold(&spool, id).unwrap();
        assert_eq!(spool.find(id), Some(Queue::Hold));
        hold(&spool, id).unwrap();
        release(&spool, id).unwrap();
        assert_eq!(spool.find(id), Some(Queue::Deferred));
        assert!(matches!(
            release(&spool, id),
            Err(SpoolError::WrongQueue { .. })
        ));
    }

    #[test]
    fn flush_makes_a_deferred_message_due_now() {
        let (_d, spool, id) = setup();
        let mut f = spool.read(Queue::Incoming, id).unwrap();
        f.envelope.recipients[0].next_attempt = now_unix() + 3600;
        f.envelope.recipients[0].attempts = 2;
        spool.rewrite(Queue::Incoming, &f).unwrap();
        spool.move_to(id, Queue::Incoming, Queue::Deferred).unwrap();
        flush(&spool, id).unwrap();
        let f = spool.read(Queue::Incoming, id).unwrap();
        assert!(f.envelope.recipients[0].next_attempt <= now_unix());
        assert_eq!(f.envelope.recipients[0].attempts, 2);
    }

    #[test]
    fn active_messages_cannot_be_held_but_can_be_deleted() {
        let (_d, spool, id) = setup();
        spool.move_to(id, Queue::Incoming, Queue::Active).unwrap();
        assert!(matches!(
            hold(&spool, id),
            Err(SpoolError::WrongQueue { .. })
        ));
        delete(&spool, id).unwrap();
        assert_eq!(spool.find(id), None);
        assert!(matches!(delete(&spool, id), Err(SpoolError::NotFound(_))));
    }

    #[test]
    fn list_and_show_describe_the_message() {
        let (_d, spool, id) = setup();
        let entries = list(&spool).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].sender, "a@example.org");
        let text = format_list(&entries);
        assert!(text.contains(&id.to_string()));
        assert!(text.contains("15551234567@sms.localhost [pending, 0 attempt(s)]"));
        assert!(text.contains("-- 1 Kbytes in 1 Request."));
        let shown = show(&spool, id).unwrap();
        assert!(shown.contains("*** QUEUE incoming ***"));
        assert!(shown.contains("Subject: x"));
    }

    #[test]
    fn time_formatting_is_utc_calendar() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_764_088_254), "2025-11-25 16:30:54");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
    }
}
