//! The SMTP side: a tokio listener on smtp-proto for `<number>@<sms-domain>`, without
//! becoming an open relay.
//!
//! Pure: [`policy`] (recipient rules), [`session`] (the state machine). I/O: [`listener`].

pub mod listener;
pub mod policy;
pub mod session;
