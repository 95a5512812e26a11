//! Provenance of the SMS control headers. `X-SMS-*` fields carry facts only smsmta itself may
//! state (the handset's IMSI, the RP-DATA, a status report's reference and status); mail that
//! arrives over SMTP may carry any header its sender likes, so intake removes these before the
//! message is queued. The delivery side trusts them, and a local number in `From`, only in
//! messages that came in over SIP or that smsmta generated (docs/security.md).
//!
//! Pure; never panics on any bytes. RFC 5322 2.2 (header fields, folding).

/// The prefix of the control fields (matched without regard to case).
pub const CONTROL_PREFIX: &str = "X-SMS-";

/// `raw` without its `X-SMS-*` header fields (folded continuation lines included). The body,
/// and a message that has no header section end, are left as they are past the headers.
pub fn strip_control_headers(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut dropping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // The end of the header section: the rest is the body.
            out.extend_from_slice(rest);
            return out;
        }
        let folded = matches!(content.first(), Some(b' ' | b'\t'));
        if !folded {
            dropping = content
                .get(..CONTROL_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(CONTROL_PREFIX.as_bytes()));
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_fields_go_and_everything_else_stays() {
        let raw = b"From: a@example.org\r\nX-SMS-Report-Status: 0\r\nx-sms-imsi: 001\r\n folded on\r\nSubject: hi\r\n\r\nX-SMS-Body: stays in the body\r\n";
        assert_eq!(
            strip_control_headers(raw),
            b"From: a@example.org\r\nSubject: hi\r\n\r\nX-SMS-Body: stays in the body\r\n".to_vec()
        );
        assert_eq!(strip_control_headers(b"X-SMS-A: 1\n"), b"".to_vec());
        assert_eq!(strip_control_headers(b""), b"".to_vec());
    }

    proptest! {
        #[test]
        fn stripping_never_panics_and_never_grows(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
            let out = strip_control_headers(&raw);
            prop_assert!(out.len() <= raw.len());
            // Idempotent.
            prop_assert_eq!(strip_control_headers(&out), out.clone());
        }
    }
}
