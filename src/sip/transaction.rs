//! Transactions, pure: the server side absorbs retransmissions and resends, the client side
//! computes the retransmission schedule.
//!
//! **Server (RFC 3261 17.2.2, 17.2.3).** A request whose top Via branch, sent-by and method
//! match one seen before is a retransmission: it gets the stored final response again (for
//! 64*T1) and is not processed again. Branches without the RFC 3261 magic cookie (OpenBTS and
//! smqueue send `branch=1`, `branch=123`) are matched RFC 2543-style, with Call-ID, CSeq and
//! the From tag added to the key. Beyond that, a MESSAGE that was answered 2xx is remembered by
//! Call-ID + CSeq + From tag for a longer window (5 minutes by default): a resend after a lost
//! 202, even with a new branch, gets the same answer and does not become a second SMS.
//!
//! **Client (RFC 3261 17.1.2).** Over UDP, Timer E retransmits at T1, doubling up to T2; a
//! provisional response moves retransmissions to T2; Timer F ends the transaction.
//!
//! Time is passed in: nothing here reads a clock or touches a socket.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::message::Request;

const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    branch: String,
    sent_by: String,
    method: String,
    /// For branches without the magic cookie: Call-ID, CSeq number, From tag.
    legacy: Option<(String, u32, String)>,
}

/// Identifies a MESSAGE across retransmissions with different branches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    call_id: String,
    cseq: u32,
    from_tag: String,
}

impl DedupKey {
    /// A key from its parts (as kept in the registry's `seen_messages` table).
    pub fn new(call_id: String, cseq: u32, from_tag: String) -> DedupKey {
        DedupKey {
            call_id,
            cseq,
            from_tag,
        }
    }

    /// Call-ID, CSeq number and From tag.
    pub fn parts(&self) -> (&str, u32, &str) {
        (&self.call_id, self.cseq, &self.from_tag)
    }
}

/// What the table knows about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not seen: process it (the table now holds it as in progress).
    New,
    /// A retransmission of a request still being processed: ignore it.
    InProgress,
    /// A retransmission or resend of a request already answered: send these bytes again.
    Answered(Vec<u8>),
    /// A resend of a MESSAGE accepted before a restart (its response was not kept): answer
    /// it 2xx again without processing it.
    Accepted,
}

/// Keys for `req`; `None` when the request lacks what matching needs.
pub fn keys(req: &Request) -> Option<(TxKey, Option<DedupKey>)> {
    let via = req.top_via()?;
    let branch = via.branch.clone().unwrap_or_default();
    let call_id = req.call_id()?.trim().to_string();
    let (cseq, _) = req.cseq()?;
    let from_tag = req
        .from()
        .and_then(|f| f.param("tag").map(str::to_string))
        .unwrap_or_default();
    let legacy = if branch.starts_with(MAGIC_COOKIE) {
        None
    } else {
        Some((call_id.clone(), cseq, from_tag.clone()))
    };
    let tx = TxKey {
        branch,
        sent_by: via.sent_by.to_ascii_lowercase(),
        method: req.method.clone(),
        legacy,
    };
    let dedup = (req.method == "MESSAGE").then_some(DedupKey {
        call_id,
        cseq,
        from_tag,
    });
    Some((tx, dedup))
}

#[derive(Debug)]
enum Slot {
    InProgress,
    Answered(Vec<u8>),
}

#[derive(Debug)]
enum Expiring {
    Tx(TxKey),
    Dedup(DedupKey),
}

/// The server transaction table with the duplicate window.
#[derive(Debug)]
pub struct ServerTable {
    txs: HashMap<TxKey, (Slot, Instant)>,
    dedup: HashMap<DedupKey, (Vec<u8>, Instant)>,
    expiry: VecDeque<(Instant, Expiring)>,
    tx_lifetime: Duration,
    dedup_window: Duration,
    capacity: usize,
}

impl ServerTable {
    /// A table keeping answered transactions for `tx_lifetime` (64*T1) and 2xx-answered
    /// MESSAGEs for `dedup_window`, with at most `capacity` entries of each kind (the oldest go
    /// first).
    pub fn new(tx_lifetime: Duration, dedup_window: Duration, capacity: usize) -> Self {
        ServerTable {
            txs: HashMap::new(),
            dedup: HashMap::new(),
            expiry: VecDeque::new(),
            tx_lifetime,
            dedup_window,
            capacity: capacity.max(1),
        }
    }

    fn purge(&mut self, now: Instant) {
        while let Some((when, _)) = self.expiry.front() {
            let over = self.txs.len() > self.capacity || self.dedup.len() > self.capacity;
            if *when > now && !over {
                break;
            }
            let Some((when, key)) = self.expiry.pop_front() else {
                break;
            };
            match key {
                Expiring::Tx(k) => {
                    if self.txs.get(&k).is_some_and(|(_, exp)| *exp <= when) {
                        self.txs.remove(&k);
                    }
                }
                Expiring::Dedup(k) => {
                    if self.dedup.get(&k).is_some_and(|(_, exp)| *exp <= when) {
                        self.dedup.remove(&k);
                    }
                }
            }
        }
    }

    /// Looks `req` up; a new request is recorded as in progress.
    pub fn check(&mut self, tx: &TxKey, dedup: Option<&DedupKey>, now: Instant) -> Seen {
        self.purge(now);
        if let Some((slot, _)) = self.txs.get(tx) {
            return match slot {
                Slot::InProgress => Seen::InProgress,
                Slot::Answered(b) => Seen::Answered(b.clone()),
            };
        }
        if let Some(d) = dedup
            && let Some((b, _)) = self.dedup.get(d)
        {
            if b.is_empty() {
                return Seen::Accepted;
            }
            return Seen::Answered(b.clone());
        }
        // In progress for at most the transaction lifetime (a handler that never answers
        // must not pin the entry).
        let exp = now + self.tx_lifetime;
        self.txs.insert(tx.clone(), (Slot::InProgress, exp));
        self.expiry.push_back((exp, Expiring::Tx(tx.clone())));
        Seen::New
    }

    /// Records the final response sent for a request. A 2xx to a MESSAGE also enters the
    /// duplicate window; other answers do not, so a resend after a 503 is processed again.
    pub fn answered(
        &mut self,
        tx: &TxKey,
        dedup: Option<&DedupKey>,
        status: u16,
        response: Vec<u8>,
        now: Instant,
    ) {
        let exp = now + self.tx_lifetime;
        if let (Some(d), true) = (dedup, (200..300).contains(&status)) {
            let dexp = now + self.dedup_window;
            self.dedup.insert(d.clone(), (response.clone(), dexp));
            self.expiry.push_back((dexp, Expiring::Dedup(d.clone())));
        }
        self.txs.insert(tx.clone(), (Slot::Answered(response), exp));
        self.expiry.push_back((exp, Expiring::Tx(tx.clone())));
        self.purge(now);
    }

    /// Enters a MESSAGE accepted before a restart into the duplicate window for `remaining`.
    pub fn restore(&mut self, key: DedupKey, remaining: Duration, now: Instant) {
        let exp = now + remaining.min(self.dedup_window);
        self.dedup.insert(key.clone(), (Vec::new(), exp));
        self.expiry.push_back((exp, Expiring::Dedup(key)));
        self.purge(now);
    }

    /// Forgets a request that got no answer (dropped), so that its retransmission is processed.
    pub fn forget(&mut self, tx: &TxKey) {
        self.txs.remove(tx);
    }

    /// Entries held (transactions, duplicate window).
    pub fn len(&self) -> (usize, usize) {
        (self.txs.len(), self.dedup.len())
    }

    /// Whether both maps are empty.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty() && self.dedup.is_empty()
    }
}

/// The non-INVITE client transaction's timers (RFC 3261 17.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimers {
    /// T1, the RTT estimate (500 ms).
    pub t1: Duration,
    /// T2, the longest retransmission interval (4 s).
    pub t2: Duration,
    /// Timer F, the transaction timeout (64*T1 = 32 s by default).
    pub timer_f: Duration,
}

impl Default for ClientTimers {
    fn default() -> Self {
        ClientTimers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            timer_f: Duration::from_secs(32),
        }
    }
}

impl ClientTimers {
    /// The send times (offsets from the first send, which is at zero) of every retransmission
    /// over UDP before Timer F, given whether a provisional response arrived and when.
    pub fn retransmissions(&self, provisional_at: Option<Duration>) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut at = Duration::ZERO;
        let mut interval = self.t1;
        loop {
            if let Some(p) = provisional_at
                && at >= p
            {
                interval = self.t2;
            }
            at += interval;
            if at >= self.timer_f {
                return out;
            }
            out.push(at);
            interval = (interval * 2).min(self.t2);
        }
    }

    /// The interval before the next retransmission, after one that waited `last`.
    pub fn next_interval(&self, last: Duration, provisional: bool) -> Duration {
        if provisional {
            self.t2
        } else {
            (last * 2).min(self.t2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Message, Parsed, parse};

    fn req(branch: &str, call_id: &str) -> Request {
        let s = format!(
            "MESSAGE sip:smsc@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch={branch}\r\nFrom: <sip:a@x>;tag=t1\r\nTo: <sip:smsc@x>\r\nCall-ID: {call_id}\r\nCSeq: 7 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(s.as_bytes(), true, 100).unwrap() {
            Parsed::Complete(Message::Request(r), _) => r,
            _ => panic!(),
        }
    }

    fn table() -> ServerTable {
        ServerTable::new(Duration::from_secs(32), Duration::from_secs(300), 1000)
    }

    #[test]
    fn retransmission_gets_the_same_answer_and_is_not_new() {
        let mut t = table();
        let now = Instant::now();
        let r = req("z9hG4bKabc", "c1");
        let (k, d) = keys(&r).unwrap();
        assert_eq!(t.check(&k, d.as_ref(), now), Seen::New);
        assert_eq!(t.check(&k, d.as_ref(), now), Seen::InProgress);
        t.answered(&k, d.as_ref(), 202, b"202".to_vec(), now);
        assert_eq!(
            t.check(&k, d.as_ref(), now + Duration::from_secs(1)),
            Seen::Answered(b"202".to_vec())
        );
    }

    #[test]
    fn resend_with_a_new_branch_is_absorbed_for_the_window_only() {
        let mut t = table();
        let now = Instant::now();
        let (k1, d1) = keys(&req("z9hG4bK1", "c1")).unwrap();
        t.check(&k1, d1.as_ref(), now);
        t.answered(&k1, d1.as_ref(), 202, b"202".to_vec(), now);
        let (k2, d2) = keys(&req("z9hG4bK2", "c1")).unwrap();
        let later = now + Duration::from_secs(100);
        assert_eq!(
            t.check(&k2, d2.as_ref(), later),
            Seen::Answered(b"202".to_vec())
        );
        let much_later = now + Duration::from_secs(301);
        let (k3, d3) = keys(&req("z9hG4bK3", "c1")).unwrap();
        assert_eq!(t.check(&k3, d3.as_ref(), much_later), Seen::New);
    }

    #[test]
    fn failures_do_not_enter_the_window() {
        let mut t = table();
        let now = Instant::now();
        let (k1, d1) = keys(&req("z9hG4bK1", "c1")).unwrap();
        t.check(&k1, d1.as_ref(), now);
        t.answered(&k1, d1.as_ref(), 503, b"503".to_vec(), now);
        let (k2, d2) = keys(&req("z9hG4bK2", "c1")).unwrap();
        assert_eq!(t.check(&k2, d2.as_ref(), now), Seen::New);
    }

    #[test]
    fn legacy_branches_include_call_id() {
        let (a, _) = keys(&req("1", "c1")).unwrap();
        let (b, _) = keys(&req("1", "c2")).unwrap();
        assert_ne!(a, b);
        let (c, _) = keys(&req("z9hG4bK1", "c1")).unwrap();
        let (d, _) = keys(&req("z9hG4bK1", "c2")).unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn transactions_expire_and_capacity_is_bounded() {
        let mut t = ServerTable::new(Duration::from_secs(32), Duration::from_secs(300), 10);
        let now = Instant::now();
        for i in 0..100 {
            let (k, d) = keys(&req(&format!("z9hG4bK{i}"), &format!("c{i}"))).unwrap();
            t.check(&k, d.as_ref(), now);
            t.answered(&k, d.as_ref(), 202, vec![], now);
        }
        let (txs, dd) = t.len();
        assert!(txs <= 11 && dd <= 11, "{txs} {dd}");
        let (k, d) = keys(&req("z9hG4bKnew", "cnew")).unwrap();
        t.check(&k, d.as_ref(), now + Duration::from_secs(400));
        assert!(t.len().0 <= 2);
    }

    #[test]
    fn timer_e_doubles_to_t2_and_timer_f_ends() {
        let t = ClientTimers::default();
        let r = t.retransmissions(None);
        let ms: Vec<u128> = r.iter().map(|d| d.as_millis()).collect();
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert!(*ms.last().unwrap() < 32_000);
        assert_eq!(r.len(), 10);
        let p = t.retransmissions(Some(Duration::from_millis(600)));
        let ms: Vec<u128> = p.iter().map(|d| d.as_millis()).collect();
        assert_eq!(&ms[..3], &[500, 1500, 5500]);
    }
}
