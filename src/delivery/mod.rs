//! Delivery: the worker that turns spooled mail into SIP MESSAGEs to handsets and mail to peer
//! MTAs, retrying until delivered or expired.
//!
//! Built so far: the pure core that the queue manager and agents will use.
//! [`outcome`] classifies every delivery result once, in one exhaustive match, as delivered,
//! temporary (retry) or permanent (bounce), where unknown means temporary. [`schedule`]
//! computes the next attempt (exponential backoff per route class, lifetimes, Retry-After).
//! The queue manager, the agents, bounces and DSNs come with issue 6.

pub mod outcome;
pub mod schedule;
