//! Local submission helpers for `smsmta inject` (sendmail(1) style): line-ending repair,
//! recipients from headers (`-t`), Bcc removal, address sanity.
//!
//! Pure, except [`uid_hint`] (reads `/proc/self`). **Trust:** the message on stdin comes from a local user and is parsed with
//! mail-parser, which never panics; addresses are checked for what would break an SMTP
//! envelope (CR, LF, NUL, angle brackets, spaces, over 254 octets).
//!
//! Standards: RFC 5322 3.6.3 (To, Cc, Bcc), RFC 5321 4.5.3.1 (path length).

use mail_parser::{Address, HeaderName, MessageParser};

/// Why an address cannot be used in the envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Longer than RFC 5321's 254-octet path limit (256 with the brackets).
    #[error("longer than 254 octets")]
    TooLong,
    /// Contains CR, LF, NUL, a space or an angle bracket.
    #[error("contains a character not allowed in an envelope address")]
    BadCharacter,
    /// No `@domain` part.
    #[error("needs a domain (local@domain)")]
    NoDomain,
}

/// Checks an envelope address.
///
/// # Errors
/// [`AddressError`].
pub fn check_address(a: &str) -> Result<(), AddressError> {
    if a.len() > 254 {
        return Err(AddressError::TooLong);
    }
    if a.chars()
        .any(|c| matches!(c, '\r' | '\n' | '\0' | ' ' | '\t' | '<' | '>'))
    {
        return Err(AddressError::BadCharacter);
    }
    match a.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() => Ok(()),
        _ => Err(AddressError::NoDomain),
    }
}

/// Turns bare LF (and bare CR) line ends into CRLF, as sendmail does for local input.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Why `-t` found nothing usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The header section does not parse as RFC 5322.
    #[error("the message headers do not parse")]
    Unparsable,
}

/// Addresses from the To, Cc and Bcc headers.
///
/// # Errors
/// [`HeaderError`] when the headers do not parse at all.
pub fn header_recipients(message: &[u8]) -> Result<Vec<String>, HeaderError> {
    let parsed = MessageParser::new()
        .parse_headers(message)
        .ok_or(HeaderError::Unparsable)?;
    let mut out = Vec::new();
    for h in parsed.headers() {
        if matches!(h.name, HeaderName::To | HeaderName::Cc | HeaderName::Bcc)
            && let Some(addr) = h.value.as_address()
        {
            collect(addr, &mut out);
        }
    }
    Ok(out)
}

fn collect(addr: &Address<'_>, out: &mut Vec<String>) {
    for a in addr.iter() {
        if let Some(email) = a.address() {
            out.push(email.to_string());
        }
    }
}

/// Removes Bcc header fields (with their continuation lines) from the header section.
pub fn strip_bcc(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut in_headers = true;
    let mut skipping = false;
    for line in message.split_inclusive(|b| *b == b'\n') {
        if in_headers {
            if line == b"\r\n" || line == b"\n" {
                in_headers = false;
                out.extend_from_slice(line);
                continue;
            }
            let continuation = matches!(line.first(), Some(b' ' | b'\t'));
            if !continuation {
                skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
            }
            if skipping {
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// The submitting user's uid, for the origin of a locally injected message.
pub fn uid_hint() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds_become_crlf_and_crlf_stays() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    }

    #[test]
    fn recipients_come_from_to_cc_and_bcc() {
        let m = b"From: a@b.c\r\nTo: Bob <15551234567@sms.localhost>, c@d.e\r\nCc: f@g.h\r\nBcc: secret@x.y\r\nSubject: s\r\n\r\nBcc: not a header\r\n";
        let r = header_recipients(m).unwrap();
        assert_eq!(
            r,
            vec!["15551234567@sms.localhost", "c@d.e", "f@g.h", "secret@x.y"]
        );
        let stripped = strip_bcc(m);
        let s = String::from_utf8(stripped).unwrap();
        assert!(!s.contains("secret@x.y"));
        assert!(s.contains("\r\n\r\nBcc: not a header\r\n"));
    }

    #[test]
    fn folded_bcc_is_removed_whole() {
        let m = b"To: a@b\r\nBcc: x@y,\r\n  z@w\r\nSubject: s\r\n\r\nbody";
        assert_eq!(strip_bcc(m), b"To: a@b\r\nSubject: s\r\n\r\nbody");
    }

    #[test]
    fn envelope_addresses_are_checked() {
        assert!(check_address("15551234567@sms.localhost").is_ok());
        assert_eq!(check_address("a b@c"), Err(AddressError::BadCharacter));
        assert_eq!(
            check_address("a@b\r\nRCPT TO:<x@y>"),
            Err(AddressError::BadCharacter)
        );
        assert_eq!(check_address("nobody"), Err(AddressError::NoDomain));
        assert_eq!(check_address(&"x".repeat(300)), Err(AddressError::TooLong));
    }
}
