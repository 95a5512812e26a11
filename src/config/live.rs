//! The configuration in force, and every state built from it that a reload may replace: one
//! value, read lock-free on every connection and message, swapped whole by a reload.
//!
//! Readers take a snapshot ([`Live::get`]) and keep it for the unit of work (an SMTP session, a
//! SIP transaction, an SMPP bind, a delivery job): a reload changes what the next one sees,
//! never one already under way. Trusts nothing; holds what [`super::reload`] let through.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// A shared, swappable `T` (the configuration, or a door's server state).
pub struct Live<T>(Arc<ArcSwap<T>>);

impl<T> Live<T> {
    /// A handle holding `value`.
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The value in force now; a snapshot that a later [`Live::set`] does not change.
    pub fn get(&self) -> Arc<T> {
        self.0.load_full()
    }

    /// Puts `value` in force for every later [`Live::get`].
    pub fn set(&self, value: Arc<T>) {
        self.0.store(value);
    }
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(Arc::clone(&self.0))
    }
}

impl<T> From<Arc<T>> for Live<T> {
    fn from(value: Arc<T>) -> Self {
        Live(Arc::new(ArcSwap::new(value)))
    }
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_taken_before_a_set_keeps_the_old_value() {
        let live = Live::new(1);
        let before = live.get();
        let other = live.clone();
        other.set(Arc::new(2));
        assert_eq!(*before, 1);
        assert_eq!(*live.get(), 2);
    }
}
