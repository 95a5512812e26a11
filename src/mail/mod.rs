//! E-mail <-> SMS translation. Pure.

pub mod from_sms;
pub mod provenance;
