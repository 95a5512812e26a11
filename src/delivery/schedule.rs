//! When to try again, and when to give up. Pure.
//!
//! Exponential backoff between a minimum and a maximum per route class, Postfix-style: the
//! delay is the message's age, clamped (so it roughly doubles each time). Handsets: 60 s to
//! 30 min by default (do not hammer a BTS that is paging); mail: 300 s to 4,000 s (Postfix's
//! minimal/maximal_backoff_time). A peer's Retry-After is honoured within the same bounds.
//! A small deterministic spread (up to 10%, from the queue ID) keeps a queue that became due
//! at once from retrying in lock step (QSHAPE_README's warning).
//!
//! Standards: RFC 5321 4.5.4.1 (retry strategy); RFC 3261 20.33 (Retry-After).

use std::time::Duration;

/// Backoff bounds for one route class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Shortest wait.
    pub min: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Backoff {
    /// Handsets: 60 s to 30 min.
    pub const HANDSET: Backoff = Backoff {
        min: Duration::from_secs(60),
        max: Duration::from_secs(1800),
    };
    /// Mail to peer MTAs: 300 s to 4,000 s (Postfix).
    pub const MAIL: Backoff = Backoff {
        min: Duration::from_secs(300),
        max: Duration::from_secs(4000),
    };
}

/// The next attempt time (Unix seconds) after a temporary failure at `now`, for a message that
/// arrived at `arrival`; `retry_after` is the peer's hint; `spread_seed` spreads retries (use
/// the queue ID's time part).
pub fn next_attempt(
    arrival: u64,
    now: u64,
    backoff: Backoff,
    retry_after: Option<Duration>,
    spread_seed: u64,
) -> u64 {
    let age = Duration::from_secs(now.saturating_sub(arrival));
    let base = retry_after.unwrap_or(age).clamp(backoff.min, backoff.max);
    let tenth = base.as_secs() / 10;
    let spread = if tenth == 0 {
        0
    } else {
        spread_seed % (tenth + 1)
    };
    now + base.as_secs() + spread
}

impl Backoff {
    /// The configured bounds for handsets (`handset = true`) or for mail.
    pub fn configured(d: &crate::config::DeliveryConfig, handset: bool) -> Backoff {
        if handset {
            Backoff {
                min: d.handset_backoff_min.0,
                max: d.handset_backoff_max.0,
            }
        } else {
            Backoff {
                min: d.mail_backoff_min.0,
                max: d.mail_backoff_max.0,
            }
        }
    }
}

/// When a recipient that failed temporarily at `now` is tried again: [`next_attempt`] with the
/// message's spread, never past its expiry (the attempt then is the one that expires it), and
/// always after `now`.
pub fn retry_at(
    arrival: u64,
    expires: u64,
    now: u64,
    backoff: Backoff,
    retry_after: Option<Duration>,
    spread_seed: u64,
) -> u64 {
    next_attempt(arrival, now, backoff, retry_after, spread_seed).min(expires.max(now + 1))
}

/// How long a message waits after its notices could not be queued (the spool refused them):
/// the notice is retried with the message.
pub const NOTICE_RETRY: Duration = Duration::from_secs(60);

/// Whether a message that expires at `expires` should be given up at `now`.
pub fn expired(expires: u64, now: u64) -> bool {
    now >= expires
}

/// The shortest lifetime a validity period or SIP Expires can give a text: less would expire
/// it before the first attempt to a handset that is paging.
pub const MIN_SMS_LIFETIME: Duration = Duration::from_secs(60);

/// The lifetime of an SMS (used by SIP intake): the configured lifetime, shortened by its
/// validity period (TP-VP) or a SIP Expires value, neither counting for less than
/// [`MIN_SMS_LIFETIME`].
pub fn sms_lifetime(
    configured: Duration,
    validity: Option<Duration>,
    sip_expires: Option<Duration>,
) -> Duration {
    [validity, sip_expires]
        .into_iter()
        .flatten()
        .map(|d| d.max(MIN_SMS_LIFETIME))
        .fold(configured, Duration::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_roughly_doubles_between_the_bounds() {
        let b = Backoff::MAIL;
        let arrival = 1_000_000;
        let mut now = arrival;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let next = next_attempt(arrival, now, b, None, 0);
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits, vec![300, 300, 600, 1200, 2400, 4000, 4000]);
    }

    #[test]
    fn handset_backoff_and_retry_after_are_clamped() {
        let b = Backoff::HANDSET;
        assert_eq!(next_attempt(0, 0, b, None, 0), 60);
        assert_eq!(next_attempt(0, 10_000, b, None, 0), 10_000 + 1800);
        assert_eq!(next_attempt(0, 0, b, Some(Duration::from_secs(5)), 0), 60);
        assert_eq!(
            next_attempt(0, 0, b, Some(Duration::from_secs(600)), 0),
            600
        );
        assert_eq!(
            next_attempt(0, 0, b, Some(Duration::from_secs(99_999)), 0),
            1800
        );
    }

    #[test]
    fn a_retry_is_never_set_past_the_expiry_nor_before_now() {
        let b = Backoff::MAIL;
        assert_eq!(retry_at(0, 10_000, 100, b, None, 0), 100 + 300);
        assert_eq!(retry_at(0, 250, 100, b, None, 0), 250);
        assert_eq!(retry_at(0, 50, 100, b, None, 0), 101);
        let d = crate::config::DeliveryConfig::default();
        assert_eq!(Backoff::configured(&d, true), Backoff::HANDSET);
        assert_eq!(Backoff::configured(&d, false), Backoff::MAIL);
    }

    #[test]
    fn spread_stays_within_ten_percent() {
        for seed in 0..1000u64 {
            let n = next_attempt(0, 3000, Backoff::MAIL, None, seed);
            assert!((3000 + 3000..=3000 + 3300).contains(&n), "{n}");
        }
    }

    #[test]
    fn lifetimes_shorten_and_expire() {
        let three_days = Duration::from_secs(3 * 86_400);
        assert_eq!(sms_lifetime(three_days, None, None), three_days);
        assert_eq!(
            sms_lifetime(three_days, Some(Duration::from_secs(3600)), None),
            Duration::from_secs(3600)
        );
        assert_eq!(
            sms_lifetime(
                three_days,
                Some(Duration::from_secs(9_999_999)),
                Some(Duration::from_secs(60))
            ),
            Duration::from_secs(60)
        );
        // A validity or Expires under a minute counts as a minute.
        assert_eq!(
            sms_lifetime(
                three_days,
                Some(Duration::from_secs(5)),
                Some(Duration::ZERO)
            ),
            MIN_SMS_LIFETIME
        );
        assert!(expired(100, 100));
        assert!(!expired(100, 99));
    }
}
