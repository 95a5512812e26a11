//! Password checks for the doors that authenticate (SMTP AUTH, SMPP bind): SHA-512 crypt
//! hashes (`$6$`, as `smsmta hash-password` or `openssl passwd -6` print), checked off the
//! async threads, with the same cost for unknown names and a back-off per client address.
//!
//! **Trust.** Names and passwords come from the peer; the hashes from the configuration. An
//! unknown user is checked against a dummy hash of the same cost, so that names cannot be told
//! from passwords by the time the answer takes. A client address that has failed before waits
//! before each further try: 1 s after two failures, doubling up to 16 s, for 15 minutes after
//! its last failure. The table of failures is bounded.
//!
//! Standards: the SHA-crypt specification (Drepper, 2007), as implemented by `sha-crypt`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Users and their hashes, and the failures seen.
#[derive(Debug, Default)]
pub struct Passwords {
    users: HashMap<String, String>,
    dummy_hash: String,
    failures: Arc<AuthFailures>,
}

impl Passwords {
    /// The users, as `(name, hash)`.
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Passwords {
        let users: HashMap<String, String> = users.into_iter().collect();
        // The cost of the users' hashes (`smsmta hash-password` uses 100,000 rounds).
        let rounds = users
            .values()
            .next()
            .and_then(|h| h.strip_prefix("$6$rounds="))
            .and_then(|r| r.split('$').next()?.parse().ok())
            .unwrap_or(5_000);
        let dummy_hash = if users.is_empty() {
            String::new()
        } else {
            sha_crypt::Sha512Params::new(rounds)
                .ok()
                .and_then(|p| sha_crypt::sha512_simple("no such user", &p).ok())
                .unwrap_or_default()
        };
        Passwords {
            users,
            dummy_hash,
            failures: Arc::default(),
        }
    }

    /// These users with `other`'s record of failed tries (a reload must not reset the delays
    /// an address has earned).
    pub fn keeping_failures(mut self, other: &Passwords) -> Passwords {
        self.failures = Arc::clone(&other.failures);
        self
    }

    /// Whether no user is configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s, from `peer` (see the module header for the timing).
    pub async fn check(&self, user: &str, password: String, peer: IpAddr) -> bool {
        let prior = self.failures.failures(peer);
        if prior >= 2 {
            let wait = Duration::from_secs(1 << (prior - 2).min(4));
            tokio::time::sleep(wait).await;
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let ok =
            tokio::task::spawn_blocking(move || sha_crypt::sha512_check(&password, &hash).is_ok())
                .await
                .unwrap_or(false)
                && known;
        if ok {
            self.failures.clear(peer);
        } else {
            self.failures.fail(peer);
        }
        ok
    }
}

/// Failed AUTH attempts per client address, for the back-off; bounded.
#[derive(Debug, Default)]
struct AuthFailures {
    map: Mutex<HashMap<IpAddr, (u32, std::time::Instant)>>,
}

impl AuthFailures {
    const KEEP: Duration = Duration::from_secs(15 * 60);
    const ENTRIES: usize = 10_000;

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, std::time::Instant)>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn failures(&self, ip: IpAddr) -> u32 {
        match self.map().get(&ip) {
            Some((n, at)) if at.elapsed() < Self::KEEP => *n,
            _ => 0,
        }
    }

    fn fail(&self, ip: IpAddr) {
        let mut m = self.map();
        if m.len() >= Self::ENTRIES && !m.contains_key(&ip) {
            m.retain(|_, (_, at)| at.elapsed() < Self::KEEP);
            if m.len() >= Self::ENTRIES {
                m.clear();
            }
        }
        let e = m.entry(ip).or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= Self::KEEP {
            e.0 = 0;
        }
        *e = (e.0.saturating_add(1), std::time::Instant::now());
    }

    fn clear(&self, ip: IpAddr) {
        self.map().remove(&ip);
    }
}
