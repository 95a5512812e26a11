//! Conversions between SMS and mail, in one room. Pure.
//!
//! [`from_sms`]: a text becomes an RFC 5322 mail; [`to_sms`]: a queued mail becomes what a
//! handset sees; [`provenance`]: what mail from outside may not carry, and what leaves.

pub mod from_sms;
pub mod provenance;
pub mod to_sms;
