//! SIP body encodings of SMS payloads: raw binary (TS 24.341), ASCII hex as OpenBTS and smqueue
//! send it (either case), and base64 with `Content-Transfer-Encoding: base64` (newer OpenBTS).
//!
//! Pure and total. Binary RP messages start with an MTI octet 0x00-0x06, never an ASCII hex
//! digit, so a body made only of hex digits (and white space) is hex.
//!
//! Standards: 3GPP TS 24.341 7.3 (binary body); RFC 4648 4 (base64); RFC 2045 6 (CTE).

use base64::Engine;

use super::SmsError;

/// How a body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// The RP message octets as they are.
    Binary,
    /// ASCII hexadecimal.
    Hex,
    /// Base64 (Content-Transfer-Encoding: base64).
    Base64,
}

/// Decodes ASCII hex (either case); white space is ignored.
///
/// # Errors
/// [`SmsError::Invalid`] for a non-hex character or an odd number of digits.
pub fn hex_decode(s: &[u8]) -> Result<Vec<u8>, SmsError> {
    let digits: Vec<u8> = s
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(SmsError::Invalid {
                field: "hex body",
                reason: "not a hexadecimal digit",
            }),
        })
        .collect::<Result<_, _>>()?;
    if !digits.len().is_multiple_of(2) {
        return Err(SmsError::Invalid {
            field: "hex body",
            reason: "odd number of hexadecimal digits",
        });
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Lower-case ASCII hex, as OpenBTS writes it.
pub fn hex_encode(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(D[usize::from(x >> 4)]));
        s.push(char::from(D[usize::from(x & 0x0F)]));
    }
    s
}

/// Standard base64 with padding.
pub fn base64_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Decodes an `application/vnd.3gpp.sms` body given its Content-Transfer-Encoding, if any.
///
/// # Errors
/// [`SmsError::Invalid`] for an empty body or bad base64.
pub fn decode_body(body: &[u8], cte: Option<&str>) -> Result<(Vec<u8>, BodyEncoding), SmsError> {
    let cte = cte.map(|c| c.trim().to_ascii_lowercase());
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(SmsError::Invalid {
            field: "body",
            reason: "empty",
        });
    }
    match cte.as_deref() {
        Some("base64") => {
            let clean: Vec<u8> = trimmed
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            // Tolerate missing padding (seen in captures).
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            engine
                .decode(&clean)
                .map(|d| (d, BodyEncoding::Base64))
                .map_err(|_| SmsError::Invalid {
                    field: "base64 body",
                    reason: "not valid base64",
                })
        }
        Some("binary") | Some("8bit") => Ok((body.to_vec(), BodyEncoding::Binary)),
        _ => {
            let looks_hex = trimmed
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
            if looks_hex {
                hex_decode(trimmed).map(|d| (d, BodyEncoding::Hex))
            } else {
                Ok((body.to_vec(), BodyEncoding::Binary))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_in_either_case() {
        assert_eq!(hex_decode(b"0aFf").unwrap(), vec![0x0A, 0xFF]);
        assert_eq!(hex_encode(&[0x0A, 0xFF]), "0aff");
        assert!(hex_decode(b"0g").is_err());
        assert!(hex_decode(b"abc").is_err());
    }

    #[test]
    fn body_encodings_as_openbts_sends_them() {
        let rp = [0x00u8, 0x54, 0x00];
        assert_eq!(
            decode_body(b"005400\r\n", None).unwrap(),
            (rp.to_vec(), BodyEncoding::Hex)
        );
        assert_eq!(
            decode_body(b"005400", Some("7bit")).unwrap().1,
            BodyEncoding::Hex
        );
        assert_eq!(
            decode_body(&rp, None).unwrap(),
            (rp.to_vec(), BodyEncoding::Binary)
        );
        assert_eq!(
            decode_body(b"AFQA", Some("Base64")).unwrap(),
            (rp.to_vec(), BodyEncoding::Base64)
        );
        // The libvbts capture's base64 lacks its padding.
        let (d, _) = decode_body(
            b"MDA1NDAwMDg5MTY4MzExMDkwMTEwNWYwMGUxMTU0MDM4MTU1ZjUwMDAwZmYwNGQ0ZjI5YzBl",
            Some("base64"),
        )
        .unwrap();
        assert_eq!(d, b"0054000891683110901105f00e1154038155f50000ff04d4f29c0e");
        assert!(decode_body(b"  ", None).is_err());
        assert!(decode_body(b"!!!", Some("base64")).is_err());
    }

    proptest! {
        #[test]
        fn every_encoding_round_trips(b in proptest::collection::vec(0u8..7, 1..2).prop_flat_map(|first| {
            proptest::collection::vec(any::<u8>(), 0..100).prop_map(move |rest| { let mut v = first.clone(); v.extend(rest); v })
        })) {
            prop_assert_eq!(decode_body(&b, None).unwrap().0, b.clone());
            prop_assert_eq!(decode_body(hex_encode(&b).as_bytes(), None).unwrap().0, b.clone());
            prop_assert_eq!(decode_body(hex_encode(&b).to_uppercase().as_bytes(), None).unwrap().0, b.clone());
            prop_assert_eq!(decode_body(base64_encode(&b).as_bytes(), Some("base64")).unwrap().0, b);
        }

        #[test]
        fn decode_body_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100), cte in proptest::option::of("[a-zA-Z0-9]{0,8}")) {
            let _ = decode_body(&b, cte.as_deref());
        }
    }
}
