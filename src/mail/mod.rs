//! Conversions between SMS and mail, in one room. Pure.
//!
//! [`from_sms`]: a text becomes an RFC 5322 mail; [`to_sms`]: a queued mail becomes what a
//! handset sees; [`facts`]: the SMS facts a queued mail carries, and their one header codec;
//! [`provenance`]: what mail from outside may not carry, and what leaves.

pub mod facts;
pub mod from_sms;
pub mod provenance;
pub mod to_sms;
