//! The SMTP side, both directions: a tokio listener on smtp-proto for `<number>@<sms-domain>`
//! without becoming an open relay, and the delivery agent for mail to other domains.
//!
//! Pure: [`policy`] (recipient rules), [`session`] (the state machine), [`dns`]'s codec. I/O:
//! [`listener`], [`agent`] (lettre, to the smarthost or the MX hosts), [`dns`]'s exchange.

pub mod agent;
pub mod dns;
pub mod listener;
pub mod policy;
pub mod session;
