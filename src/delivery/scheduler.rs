//! The in-memory schedule of the queue manager. Pure: time is passed in, nothing is read.
//!
//! Every queued message (incoming or deferred) has an entry: when it is next due and the
//! handsets it is for (its *keys*). The schedule answers "what may start now?" in logarithmic
//! time per event, never by rescanning:
//!
//! * due messages come out in (due time, queue ID) order; queue IDs grow with arrival time,
//!   so messages due together go in arrival order;
//! * one MESSAGE outstanding per handset (RFC 3428): a message whose handset is busy waits
//!   behind it and is released, in order, when that delivery finishes;
//! * a handset that just failed (not reachable) is backed off as a whole: its other messages
//!   wait for the same time instead of paging it again and again (`defer_key`);
//! * a REGISTER makes every message for that handset due at once and lifts its backoff
//!   (`make_due`); such an attempt is *forced*, so recipients not yet due are tried too;
//! * a number a job found to be no handset (it went to an upstream SMSC) is *free*: its
//!   messages are neither serialised nor backed off together (an SMSC takes many at once);
//!   what waited behind it is released at once. A job that reaches it as a handset again
//!   makes it a handset key again. At most [`MAX_FREE`] numbers are kept free.
//!
//! Trust: none needed; the manager feeds it envelopes it has read.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::spool::QueueId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Blocked,
    Running,
}

/// Numbers known to be no handset, at most (past it, the set starts again empty).
pub const MAX_FREE: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    due: u64,
    keys: Vec<String>,
    /// The keys it holds busy while running (its keys that were not free then).
    took: Vec<String>,
    state: State,
    forced: bool,
}

/// A message that may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The message.
    pub id: QueueId,
    /// Made due by a REGISTER: try every pending recipient, due or not.
    pub forced: bool,
}

/// How a delivery job ended, for [`Schedule::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// When it is next due and for which handsets; `None` when it left the queue.
    pub next: Option<(u64, Vec<String>)>,
    /// Handsets that failed temporarily, and until when to leave them alone.
    pub deferred_keys: Vec<(String, u64)>,
    /// Handsets that took a message (their backoff is lifted).
    pub delivered_keys: Vec<String>,
    /// Keys that turned out to be no handset (the text went to an upstream SMSC).
    pub not_handsets: Vec<String>,
}

/// The schedule.
#[derive(Debug, Default)]
pub struct Schedule {
    due: BTreeSet<(u64, QueueId)>,
    entries: HashMap<QueueId, Entry>,
    by_key: HashMap<String, BTreeSet<QueueId>>,
    busy: HashSet<String>,
    blocked: HashMap<String, VecDeque<QueueId>>,
    key_backoff: HashMap<String, u64>,
    free: HashSet<String>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Schedule::default()
    }

    /// Messages known (waiting, blocked or running).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: QueueId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Every message known.
    pub fn ids(&self) -> impl Iterator<Item = QueueId> + '_ {
        self.entries.keys().copied()
    }

    /// Whether `id` is being delivered now.
    pub fn is_running(&self, id: QueueId) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| e.state == State::Running)
    }

    /// Messages being delivered now.
    pub fn running(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.state == State::Running)
            .count()
    }

    /// Adds a message, or moves a waiting one to a new due time. A running or blocked
    /// message is left alone (its job or its handset will reschedule it).
    pub fn upsert(&mut self, id: QueueId, due: u64, keys: Vec<String>) {
        if let Some(e) = self.entries.get_mut(&id) {
            if e.state == State::Waiting && e.due != due {
                self.due.remove(&(e.due, id));
                e.due = due;
                self.due.insert((due, id));
            }
            return;
        }
        for k in &keys {
            self.by_key.entry(k.clone()).or_default().insert(id);
        }
        self.entries.insert(
            id,
            Entry {
                due,
                keys,
                took: Vec::new(),
                state: State::Waiting,
                forced: false,
            },
        );
        self.due.insert((due, id));
    }

    /// Forgets a message that is not running (deleted or held by an administrator).
    pub fn remove_waiting(&mut self, id: QueueId) {
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        match e.state {
            State::Running => {}
            State::Waiting | State::Blocked => {
                if let Some(e) = self.entries.remove(&id) {
                    self.due.remove(&(e.due, id));
                    for k in &e.keys {
                        if let Some(w) = self.blocked.get_mut(k) {
                            w.retain(|x| *x != id);
                        }
                    }
                    self.unindex(id, &e.keys);
                }
            }
        }
    }

    /// A REGISTER from handset `key`: its messages are due at `now`, forced, and its backoff
    /// is lifted. Returns how many messages that concerns.
    pub fn make_due(&mut self, key: &str, now: u64) -> usize {
        self.key_backoff.remove(key);
        let ids: Vec<QueueId> = self
            .by_key
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for id in &ids {
            if let Some(e) = self.entries.get_mut(id) {
                e.forced = true;
                if e.state == State::Waiting && e.due > now {
                    self.due.remove(&(e.due, *id));
                    e.due = now;
                    self.due.insert((now, *id));
                }
            }
        }
        ids.len()
    }

    /// The next message that may start at `now`, if any; it is then running until
    /// [`Schedule::finish`].
    pub fn next_ready(&mut self, now: u64) -> Option<Ready> {
        loop {
            let &(due, id) = self.due.first()?;
            if due > now {
                return None;
            }
            self.due.pop_first();
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if !e.forced {
                let until = e
                    .keys
                    .iter()
                    .filter(|k| !self.free.contains(*k))
                    .filter_map(|k| self.key_backoff.get(k).copied())
                    .filter(|u| *u > now)
                    .max();
                if let Some(until) = until {
                    e.due = until;
                    self.due.insert((until, id));
                    continue;
                }
            }
            let free = &self.free;
            if let Some(k) = e
                .keys
                .iter()
                .find(|k| !free.contains(*k) && self.busy.contains(*k))
                .cloned()
            {
                e.state = State::Blocked;
                let others: Vec<String> = e.keys.iter().filter(|x| **x != k).cloned().collect();
                self.blocked.entry(k).or_default().push_back(id);
                // This message may have been the one released for another of its handsets:
                // give that handset's next waiter its turn.
                for o in others {
                    self.release(&o);
                }
                continue;
            }
            e.took = e
                .keys
                .iter()
                .filter(|k| !self.free.contains(*k))
                .cloned()
                .collect();
            for k in &e.took {
                self.busy.insert(k.clone());
            }
            e.state = State::Running;
            let forced = std::mem::take(&mut e.forced);
            return Some(Ready { id, forced });
        }
    }

    /// The earliest due time of a waiting message.
    pub fn next_due(&self) -> Option<u64> {
        self.due.first().map(|(d, _)| *d)
    }

    /// A delivery job ended: frees its handsets (releasing what waited behind them) and
    /// reschedules the message if it is still queued.
    pub fn finish(&mut self, id: QueueId, f: Finished) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        if e.state == State::Running {
            for k in &e.took {
                self.busy.remove(k);
            }
        }
        self.unindex(id, &e.keys);
        for k in f
            .delivered_keys
            .iter()
            .chain(f.deferred_keys.iter().map(|(k, _)| k))
        {
            self.free.remove(k);
        }
        for k in f.not_handsets {
            if self.free.len() >= MAX_FREE {
                self.free.clear();
            }
            self.key_backoff.remove(&k);
            self.free.insert(k.clone());
            self.release_all(&k);
        }
        // A REGISTER that came while this job ran: the handset is back, so the message is due
        // again at once instead of after the backoff this attempt asked for.
        let registered_meanwhile = e.forced;
        for k in f.delivered_keys {
            self.key_backoff.remove(&k);
        }
        if !registered_meanwhile {
            for (k, until) in f.deferred_keys {
                let u = self.key_backoff.entry(k).or_insert(until);
                *u = (*u).max(until);
            }
        }
        if let Some((due, keys)) = f.next {
            self.upsert(id, if registered_meanwhile { 0 } else { due }, keys);
            if let Some(n) = self.entries.get_mut(&id) {
                n.forced = registered_meanwhile;
            }
        }
        for k in &e.keys {
            self.release(k);
        }
    }

    /// The handset is free: its first waiter (in arrival order) becomes due again. Only one:
    /// releasing all of them would re-block all but one, at a cost that grows with the
    /// queue for every delivery (quadratic for a handset with thousands waiting).
    fn release(&mut self, key: &str) {
        if self.busy.contains(key) {
            return;
        }
        let Some(waiting) = self.blocked.get_mut(key) else {
            return;
        };
        while let Some(id) = waiting.pop_front() {
            if let Some(e) = self.entries.get_mut(&id)
                && e.state == State::Blocked
            {
                e.state = State::Waiting;
                self.due.insert((e.due, id));
                break;
            }
        }
        if waiting.is_empty() {
            self.blocked.remove(key);
        }
    }

    /// `key` is free: everything that waited behind it is due again.
    fn release_all(&mut self, key: &str) {
        let Some(waiting) = self.blocked.remove(key) else {
            return;
        };
        for id in waiting {
            if let Some(e) = self.entries.get_mut(&id)
                && e.state == State::Blocked
            {
                e.state = State::Waiting;
                self.due.insert((e.due, id));
            }
        }
    }

    fn unindex(&mut self, id: QueueId, keys: &[String]) {
        for k in keys {
            if let Some(s) = self.by_key.get_mut(k) {
                s.remove(&id);
                if s.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
    }

    /// Forgets every message that is not running and not in `seen` (a rescan found it in no
    /// queue: delivered elsewhere, deleted or held by an administrator).
    pub fn retain_seen(&mut self, seen: &HashSet<QueueId>) {
        let gone: Vec<QueueId> = self
            .entries
            .iter()
            .filter(|(id, e)| e.state != State::Running && !seen.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove_waiting(id);
        }
    }

    /// Drops handset backoffs that ended before `now` (bounded memory).
    pub fn prune(&mut self, now: u64) {
        self.key_backoff.retain(|_, u| *u > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> QueueId {
        QueueId::from_parts(1_764_000_000_000_000 + n, 1)
    }

    fn k(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    fn drain(s: &mut Schedule, now: u64) -> Vec<QueueId> {
        std::iter::from_fn(|| s.next_ready(now).map(|r| r.id)).collect()
    }

    #[test]
    fn due_messages_come_out_in_due_then_arrival_order() {
        let mut s = Schedule::new();
        s.upsert(id(3), 10, vec![]);
        s.upsert(id(1), 20, vec![]);
        s.upsert(id(2), 10, vec![]);
        assert_eq!(s.next_ready(5), None);
        assert_eq!(s.next_due(), Some(10));
        assert_eq!(drain(&mut s, 10), vec![id(2), id(3)]);
        assert_eq!(drain(&mut s, 100), vec![id(1)]);
        assert_eq!(s.running(), 3);
    }

    #[test]
    fn one_message_per_handset_at_a_time_in_arrival_order() {
        let mut s = Schedule::new();
        for n in 1..=3 {
            s.upsert(id(n), 0, k("1555"));
        }
        s.upsert(id(9), 0, k("1666"));
        assert_eq!(drain(&mut s, 0), vec![id(1), id(9)]);
        s.finish(id(1), Finished::default());
        assert_eq!(drain(&mut s, 0), vec![id(2)]);
        s.finish(id(2), Finished::default());
        assert_eq!(drain(&mut s, 0), vec![id(3)]);
        s.finish(id(3), Finished::default());
        s.finish(id(9), Finished::default());
        assert!(s.is_empty());
        assert_eq!(s.running(), 0);
    }

    #[test]
    fn unreachable_handset_defers_its_other_messages_too() {
        let mut s = Schedule::new();
        s.upsert(id(1), 0, k("1555"));
        s.upsert(id(2), 0, k("1555"));
        assert_eq!(drain(&mut s, 0), vec![id(1)]);
        s.finish(
            id(1),
            Finished {
                next: Some((60, k("1555"))),
                deferred_keys: vec![("1555".into(), 60)],
                delivered_keys: vec![],
                not_handsets: vec![],
            },
        );
        assert_eq!(drain(&mut s, 1), vec![], "message 2 waits for the backoff");
        assert_eq!(s.next_due(), Some(60));
        assert_eq!(drain(&mut s, 60), vec![id(1)], "then in arrival order");
    }

    #[test]
    fn register_makes_messages_due_at_once_and_forced() {
        let mut s = Schedule::new();
        s.upsert(id(1), 1000, k("1555"));
        s.upsert(id(2), 1800, k("1555"));
        s.upsert(id(3), 1000, k("1666"));
        assert_eq!(s.make_due("1555", 5), 2);
        let r = s.next_ready(5).unwrap();
        assert_eq!(
            r,
            Ready {
                id: id(1),
                forced: true
            }
        );
        assert_eq!(s.next_ready(5), None, "one at a time for the handset");
        s.finish(id(1), Finished::default());
        assert_eq!(
            s.next_ready(5),
            Some(Ready {
                id: id(2),
                forced: true
            })
        );
        assert_eq!(s.next_ready(5), None, "the other handset is not due");
    }

    #[test]
    fn register_during_a_failing_attempt_makes_the_message_due_at_once() {
        let mut s = Schedule::new();
        s.upsert(id(1), 0, k("1555"));
        assert!(s.next_ready(0).is_some());
        s.make_due("1555", 1);
        s.finish(
            id(1),
            Finished {
                next: Some((61, k("1555"))),
                deferred_keys: vec![("1555".into(), 61)],
                delivered_keys: vec![],
                not_handsets: vec![],
            },
        );
        assert_eq!(
            s.next_ready(1),
            Some(Ready {
                id: id(1),
                forced: true
            })
        );
    }

    #[test]
    fn register_lifts_a_handset_backoff() {
        let mut s = Schedule::new();
        s.upsert(id(1), 0, k("1555"));
        assert!(s.next_ready(0).is_some());
        s.finish(
            id(1),
            Finished {
                next: Some((1800, k("1555"))),
                deferred_keys: vec![("1555".into(), 1800)],
                delivered_keys: vec![],
                not_handsets: vec![],
            },
        );
        s.upsert(id(2), 10, k("1555"));
        assert_eq!(drain(&mut s, 10), vec![]);
        s.make_due("1555", 11);
        assert_eq!(drain(&mut s, 11), vec![id(1)]);
    }

    #[test]
    fn a_number_found_to_go_upstream_is_not_serialised_until_it_is_a_handset_again() {
        let mut s = Schedule::new();
        for n in 1..=4 {
            s.upsert(id(n), 0, k("456"));
        }
        assert_eq!(
            drain(&mut s, 0),
            vec![id(1)],
            "not known yet: one at a time"
        );
        s.finish(
            id(1),
            Finished {
                not_handsets: k("456"),
                deferred_keys: vec![],
                ..Finished::default()
            },
        );
        assert_eq!(
            drain(&mut s, 0),
            vec![id(2), id(3), id(4)],
            "all that waited behind it, at once"
        );
        // A deferral of one is not a backoff for the others.
        s.upsert(id(5), 0, k("456"));
        s.finish(
            id(2),
            Finished {
                next: Some((50, k("456"))),
                not_handsets: k("456"),
                ..Finished::default()
            },
        );
        assert_eq!(drain(&mut s, 0), vec![id(5)]);
        // It became a subscriber's: a delivery to it as a handset makes it serialised again.
        s.finish(
            id(3),
            Finished {
                delivered_keys: k("456"),
                ..Finished::default()
            },
        );
        s.finish(id(4), Finished::default());
        s.finish(id(5), Finished::default());
        s.upsert(id(6), 0, k("456"));
        s.upsert(id(7), 0, k("456"));
        assert_eq!(drain(&mut s, 60), vec![id(6)], "one at a time again");
    }

    #[test]
    fn upsert_moves_a_waiting_message_and_ignores_a_running_one() {
        let mut s = Schedule::new();
        s.upsert(id(1), 100, vec![]);
        s.upsert(id(1), 5, vec![]);
        assert_eq!(s.len(), 1);
        assert_eq!(drain(&mut s, 5), vec![id(1)]);
        s.upsert(id(1), 0, vec![]);
        assert!(s.is_running(id(1)));
        assert_eq!(s.next_ready(1000), None);
    }

    #[test]
    fn removed_messages_are_never_started() {
        let mut s = Schedule::new();
        s.upsert(id(1), 0, k("a"));
        s.upsert(id(2), 0, k("a"));
        assert_eq!(drain(&mut s, 0), vec![id(1)]);
        s.remove_waiting(id(2));
        s.finish(id(1), Finished::default());
        assert_eq!(drain(&mut s, 0), vec![]);
        assert!(s.is_empty());
    }

    #[test]
    fn multi_handset_message_waits_for_every_handset() {
        let mut s = Schedule::new();
        s.upsert(id(1), 0, k("a"));
        s.upsert(id(2), 0, vec!["a".into(), "b".into()]);
        s.upsert(id(3), 0, k("b"));
        assert_eq!(drain(&mut s, 0), vec![id(1), id(3)]);
        s.finish(id(1), Finished::default());
        assert_eq!(drain(&mut s, 0), vec![], "b is still busy");
        s.finish(id(3), Finished::default());
        assert_eq!(drain(&mut s, 0), vec![id(2)]);
    }

    #[test]
    fn a_long_queue_for_one_handset_drains_in_order_and_linear_time() {
        let mut s = Schedule::new();
        let n = 20_000u64;
        for i in 0..n {
            s.upsert(id(i), 0, k("1555"));
        }
        for i in 0..n {
            let r = s.next_ready(0).unwrap();
            assert_eq!(r.id, id(i));
            assert_eq!(s.next_ready(0), None);
            s.finish(r.id, Finished::default());
        }
        assert!(s.is_empty());
    }

    #[test]
    fn a_large_schedule_stays_consistent() {
        let mut s = Schedule::new();
        for n in 0..10_000u64 {
            s.upsert(id(n), n % 100, k(&format!("h{}", n % 50)));
        }
        let mut started = 0;
        let mut now = 0;
        while !s.is_empty() && now < 1000 {
            let batch = drain(&mut s, now);
            started += batch.len();
            assert!(batch.len() <= 50, "one per handset");
            for i in batch {
                s.finish(i, Finished::default());
            }
            now += 1;
        }
        assert_eq!(started, 10_000);
        assert!(s.is_empty());
        assert_eq!(s.running(), 0);
    }
}
