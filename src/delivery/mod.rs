//! Delivery: the worker that turns spooled mail into SIP MESSAGEs to handsets and mail to peer
//! MTAs, retrying until delivered or expired.
//!
//! Pure core: [`route`] (where each recipient goes), [`text`] (mail to SMS text),
//! [`notice`] (DSNs, notices, status reports), [`outcome`] (every result classified once:
//! delivered, retry, bounce), [`schedule`] (backoff and lifetimes) and [`scheduler`] (the
//! in-memory schedule). I/O shell: [`manager`] (the queue manager task and the delivery job),
//! [`sip_agent`] and [`smtp_agent`]. docs/architecture.md describes the design.

pub mod dns;
pub mod manager;
pub mod notice;
pub mod outcome;
pub mod route;
pub mod schedule;
pub mod scheduler;
pub mod sip_agent;
pub mod smtp_agent;
pub mod text;
