//! Conversions between SMS and mail, in one room. Pure.
//!
//! [`from_sms`]: a text becomes an RFC 5322 mail; [`to_sms`]: a queued mail becomes what a
//! handset sees; [`facts`]: the SMS facts a queued mail carries, and their one header codec;
//! [`provenance`]: what mail from outside may not carry, and what leaves.

pub mod facts;
pub mod from_sms;
pub mod provenance;
pub mod to_sms;

/// A parser that reads only what smsmta looks at: the MIME headers (to find the text and tell
/// a DSN) and, with `addresses`, Date, Subject and the address headers; every other header
/// (Received above all, the costly one) is kept raw, for `header_raw`.
pub fn parser(addresses: bool) -> mail_parser::MessageParser {
    let p = mail_parser::MessageParser::new();
    let p = if addresses {
        p.with_minimal_headers()
    } else {
        p.with_mime_headers()
    };
    p.default_header_raw()
}
