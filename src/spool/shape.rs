//! The shape of the queues, as Postfix's qshape(1) shows it: for each queue, the recipients
//! still to be delivered by destination against the age of their message, in buckets that
//! double (5, 10, 20 ... 1280 minutes, and older). What `smsmta queue stats` prints. Pure:
//! it reads the entries [`super::admin::list`] made and the time it is given.
//!
//! A destination is the domain of a mail recipient, `handsets` for texts to our subscribers'
//! numbers or IMSIs (the BTS side), `esme:<system_id>` for receipts owed to an ESME, and
//! `(unroutable)` for an address that names none of these. Delivered and failed recipients
//! are not counted (they are done); a message whose file does not decode counts once, as
//! `(undecodable)`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::RcptState;
use super::admin::Entry;
use crate::delivery::route::{Dest, classify};

/// The upper bounds of the age buckets, in minutes; a last bucket holds everything older.
pub const BUCKETS: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// Counts for one destination: the total, then one per bucket (`BUCKETS.len() + 1`).
pub type Counts = Vec<u64>;

/// One queue's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueShape {
    /// The queue (`incoming`, `active`, `deferred`, `hold`, `corrupt`).
    pub queue: String,
    /// Every destination together.
    pub total: Counts,
    /// By destination, most first (ties by name).
    pub destinations: Vec<(String, Counts)>,
}

/// The shape of every queue that has entries, in the order the entries come (queue order).
pub fn shape(entries: &[Entry], now: u64, local_domains: &[String]) -> Vec<QueueShape> {
    let mut queues: Vec<(String, BTreeMap<String, Counts>)> = Vec::new();
    for e in entries {
        let at = match queues.iter().position(|(q, _)| *q == e.queue) {
            Some(i) => i,
            None => {
                queues.push((e.queue.clone(), BTreeMap::new()));
                queues.len() - 1
            }
        };
        let bucket = bucket(now.saturating_sub(e.arrival) / 60);
        let dests = &mut queues[at].1;
        let mut count = |d: String| {
            let c = dests.entry(d).or_insert_with(|| vec![0; BUCKETS.len() + 2]);
            c[0] += 1;
            c[bucket + 1] += 1;
        };
        if e.error.is_some() {
            count("(undecodable)".into());
            continue;
        }
        for r in e
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
        {
            count(destination(&r.address, local_domains));
        }
    }
    queues
        .into_iter()
        .map(|(queue, dests)| {
            let mut total = vec![0; BUCKETS.len() + 2];
            for c in dests.values() {
                for (t, n) in total.iter_mut().zip(c) {
                    *t += n;
                }
            }
            let mut destinations: Vec<(String, Counts)> = dests.into_iter().collect();
            destinations.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then_with(|| a.0.cmp(&b.0)));
            QueueShape {
                queue,
                total,
                destinations,
            }
        })
        .collect()
}

/// The bucket of an age in minutes (0-based; `BUCKETS.len()` is "older").
fn bucket(minutes: u64) -> usize {
    BUCKETS
        .iter()
        .position(|b| minutes < *b)
        .unwrap_or(BUCKETS.len())
}

fn destination(address: &str, local_domains: &[String]) -> String {
    match classify(address, local_domains) {
        Some(Dest::Handset(_)) => "handsets".into(),
        Some(Dest::Mail { domain }) => domain,
        Some(Dest::Esme { system_id }) => format!("esme:{system_id}"),
        None => "(unroutable)".into(),
    }
}

/// Renders the shapes as qshape does: one table a queue, `T` then the buckets.
pub fn format(shapes: &[QueueShape]) -> String {
    use std::fmt::Write;
    if shapes.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let width = shapes
        .iter()
        .flat_map(|s| s.destinations.iter().map(|(d, _)| d.len()))
        .chain([5])
        .max()
        .unwrap_or(5)
        .min(40);
    let mut out = String::new();
    for s in shapes {
        let _ = write!(out, "{}\n{:>width$} {:>6}", s.queue, "", "T");
        for b in BUCKETS {
            let _ = write!(out, " {b:>5}");
        }
        let _ = writeln!(out, " {:>5}", format!("{}+", BUCKETS[BUCKETS.len() - 1]));
        let mut row = |name: &str, c: &Counts| {
            let name: String = name.chars().take(width).collect();
            let _ = write!(out, "{name:>width$} {:>6}", c[0]);
            for n in &c[1..] {
                let _ = write!(out, " {n:>5}");
            }
            out.push('\n');
        };
        row("TOTAL", &s.total);
        for (d, c) in &s.destinations {
            row(d, c);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Recipient;

    fn entry(queue: &str, age_minutes: u64, rcpts: &[(&str, RcptState)]) -> Entry {
        Entry {
            id: "X".into(),
            queue: queue.into(),
            size: 1,
            arrival: 1_000_000 - age_minutes * 60,
            sender: String::new(),
            recipients: rcpts
                .iter()
                .map(|(a, s)| Recipient {
                    state: *s,
                    ..Recipient::new(*a, 0)
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn pending_recipients_are_counted_by_destination_and_age_bucket() {
        use RcptState::{Delivered, Pending};
        let d = vec!["sms.example.org".to_string()];
        let entries = vec![
            entry("incoming", 0, &[("15551234567@sms.example.org", Pending)]),
            entry(
                "deferred",
                7,
                &[
                    ("15551234567@sms.example.org", Pending),
                    ("bob@Example.COM", Pending),
                    ("done@example.com", Delivered),
                ],
            ),
            entry(
                "deferred",
                30,
                &[("IMSI001010000000001@sms.example.org", Pending)],
            ),
            entry("deferred", 5000, &[("bob@example.com", Pending)]),
            entry("deferred", 5000, &[("esme=app@sms.example.org", Pending)]),
        ];
        let s = shape(&entries, 1_000_000, &d);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].queue, "incoming");
        assert_eq!(s[0].total, vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let deferred = &s[1];
        assert_eq!(deferred.total[0], 5, "the delivered one is not counted");
        assert_eq!(
            deferred.destinations,
            vec![
                (
                    "example.com".to_string(),
                    vec![2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
                ),
                (
                    "handsets".to_string(),
                    vec![2, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]
                ),
                (
                    "esme:app".to_string(),
                    vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
                ),
            ]
        );
        let text = format(&s);
        assert!(text.starts_with("incoming\n"), "{text}");
        assert!(text.contains("1280+"), "{text}");
        let row = text
            .lines()
            .skip_while(|l| *l != "deferred")
            .find(|l| l.trim_start().starts_with("handsets"))
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "handsets", "2", "0", "1", "0", "1", "0", "0", "0", "0", "0", "0"
            ]
        );
    }

    #[test]
    fn bucket_edges_are_those_of_qshape() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(4), 0);
        assert_eq!(bucket(5), 1);
        assert_eq!(bucket(1279), 8);
        assert_eq!(bucket(1280), 9);
        assert_eq!(bucket(u64::MAX / 60), 9);
        assert_eq!(format(&[]), "Mail queue is empty\n");
    }
}
