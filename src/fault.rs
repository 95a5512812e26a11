//! Fault injection for tests, and the text of a caught panic.
//!
//! Debug builds only (release builds compile [`panic_if_marked`] to nothing): when the
//! environment variable a [`Point`] names holds a mark and the message being handled there
//! contains it, that step panics. Tests use it to show what a poisoned message does to the
//! queue manager and the journal threads: it is set aside or retried, the rest goes on, and
//! nothing acknowledged is lost.
//!
//! Trusts: the environment of the process (an operator's, or a test's).
//! Standards: none.

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A delivery job (`SMSMTA_FAULT_PANIC_ON`).
    Delivery,
    /// The journal committer, before a batch is written (`SMSMTA_FAULT_COMMIT_PANIC_ON`).
    Commit,
    /// The journal materializer, while writing a range out (`SMSMTA_FAULT_MATERIALIZE_PANIC_ON`).
    Materialize,
}

impl Point {
    /// The environment variable that arms this point.
    pub fn variable(self) -> &'static str {
        match self {
            Point::Delivery => "SMSMTA_FAULT_PANIC_ON",
            Point::Commit => "SMSMTA_FAULT_COMMIT_PANIC_ON",
            Point::Materialize => "SMSMTA_FAULT_MATERIALIZE_PANIC_ON",
        }
    }
}

/// Panics when `point` is armed with a mark that `message` contains (debug builds only).
#[cfg(debug_assertions)]
pub fn panic_if_marked(point: Point, message: &[u8]) {
    if let Ok(mark) = std::env::var(point.variable())
        && !mark.is_empty()
        && message.windows(mark.len()).any(|w| w == mark.as_bytes())
    {
        panic!("fault injection at {point:?}: message contains {mark:?}");
    }
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn panic_if_marked(_point: Point, _message: &[u8]) {}

/// The text of a panic payload, at most 200 characters.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_read_as_text() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_text(p.as_ref()), "boom 1");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_text(p.as_ref()), "panic");
    }

    #[test]
    fn an_unarmed_point_never_panics() {
        // No test sets the materializer's variable to this.
        panic_if_marked(Point::Materialize, b"never-armed-mark-3f1c");
    }
}
