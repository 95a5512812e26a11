//! # smsmta: a mail transfer agent for SMS
//!
//! Handsets send SMS as SIP MESSAGE (RFC 3428 pager mode), through OpenBTS or any RFC 3428
//! client; people and peer MTAs send mail to `<number>@<sms-domain>` over SMTP. smsmta stores
//! every accepted message durably in a Postfix-style spool before it acknowledges it, and a
//! delivery worker forwards it (as SIP MESSAGE to the handset, or as mail to a peer MTA),
//! retrying until it is delivered or expires.
//!
//! ```text
//!  handset --SIP MESSAGE--> sip listener --+
//!                                          +--> spool (journal -> incoming/) --> delivery --> SIP / SMTP out
//!  peer MTA ----SMTP------> smtp listener -+        ack (202 / 250) only after commit
//! ```
//!
//! Pure modules (no I/O): [`config`] parsing, [`spool::queue_file`], [`spool::queue_id`],
//! [`spool::layout`], [`sms`]. The I/O shell: [`spool`] (files), [`app`] (the server).
//! docs/architecture.md has the whole picture.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod fault;
pub mod identity;
pub mod limits;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod random;
pub mod registry;
pub mod sip;
pub mod smpp;
pub mod sms;
pub mod smtp;
pub mod spool;
pub mod telemetry;

pub use config::Config;
