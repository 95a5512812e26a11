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
    strip_fields(raw, is_control)
}

/// A mail made from a text, as it may leave for another domain: without the `X-SMS-*` facts
/// (the handset's IMSI, its RP-DATA) and without smsmta's Received line for the SIP hop
/// (which names the BTS). What the text said, its sender and date stay.
pub fn for_outside(raw: &[u8]) -> Vec<u8> {
    strip_fields(raw, |field| is_control(field) || is_sip_hop(field))
}

fn is_control(field: &[u8]) -> bool {
    field
        .get(..CONTROL_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(CONTROL_PREFIX.as_bytes()))
}

/// smsmta's own Received line for a SIP hop: `Received: from <bts> by <host> (smsmta) with SIP/...`.
fn is_sip_hop(field: &[u8]) -> bool {
    field
        .get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"Received:"))
        && field.windows(17).any(|w| w == b"(smsmta) with SIP")
}

/// `raw` without the header fields (first line with the rest of its folded lines, as one
/// slice for `drop`) that `drop` picks.
fn strip_fields(raw: &[u8], drop: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let content = rest[..end].strip_suffix(b"\n").unwrap_or(&rest[..end]);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // The end of the header section: the rest is the body.
            out.extend_from_slice(rest);
            return out;
        }
        // The field: this line and the folded lines after it.
        let mut field_end = end;
        while let Some(&b) = rest.get(field_end)
            && (b == b' ' || b == b'\t')
        {
            field_end = rest[field_end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| field_end + i + 1);
        }
        let (field, tail) = rest.split_at(field_end);
        if !drop(field) {
            out.extend_from_slice(field);
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

    #[test]
    fn mail_leaving_for_outside_names_no_bts_and_no_imsi() {
        let raw = b"Received: from 10.0.0.7:5062 by mta.test (smsmta) with SIP/UDP id 1;\r\n\tMon, 1 Dec 2026\r\nFrom: 1555@sms.test\r\nX-SMS-IMSI: 001010000000001\r\nX-SMS-RP-DATA: 00ff\r\nReceived: from mx.example by relay.example\r\n\r\nhi\r\n";
        assert_eq!(
            for_outside(raw),
            b"From: 1555@sms.test\r\nReceived: from mx.example by relay.example\r\n\r\nhi\r\n"
                .to_vec()
        );
    }

    proptest! {
        #[test]
        fn stripping_never_panics_and_never_grows(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
            let out = strip_control_headers(&raw);
            prop_assert!(out.len() <= raw.len());
            // Idempotent.
            prop_assert_eq!(strip_control_headers(&out), out.clone());
            let outside = for_outside(&raw);
            prop_assert!(outside.len() <= raw.len());
        }
    }
}
