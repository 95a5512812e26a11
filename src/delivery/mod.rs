//! Delivery: the queue manager that takes spooled messages to their agents (SIP to handsets,
//! SMTP to peer MTAs), retrying until delivered or expired.
//!
//! Pure core, the decisions: [`route`] (where each recipient goes), [`outcome`] (every result
//! classified once: delivered, retry, bounce), [`schedule`] (backoff and lifetimes),
//! [`notice`] (who is told what: DSNs, notice texts, status reports), and [`scheduler`] (the
//! in-memory schedule). I/O shell: [`manager`] (the queue manager task and the delivery job).
//! The agents live with their protocols ([`crate::sip::agent`], [`crate::smtp::agent`]); the
//! conversions between mail and texts in [`crate::mail`]. docs/architecture.md describes the
//! design.

pub mod manager;
pub mod notice;
pub mod outcome;
pub mod route;
pub mod schedule;
pub mod scheduler;
