//! UCS-2 user data as UTF-16 big-endian (TS 23.038 6.2.3), surrogate pairs kept together.
//!
//! Pure and total. Handsets send UTF-16 in practice (emoji as surrogate pairs), so decoding
//! accepts pairs; an unpaired surrogate or an odd trailing octet becomes U+FFFD.
//!
//! Standards: 3GPP TS 23.038 6.2.3; RFC 2781 (UTF-16BE).

/// Encodes text as UTF-16BE octets.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// The UTF-16 code units of `text`.
pub fn units(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// Decodes UTF-16BE octets; bad sequences become U+FFFD.
pub fn decode(octets: &[u8]) -> String {
    let units: Vec<u16> = octets
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let mut s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if !octets.len().is_multiple_of(2) {
        s.push(char::REPLACEMENT_CHARACTER);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cjk_and_emoji() {
        assert_eq!(encode("中兴"), vec![0x4E, 0x2D, 0x51, 0x74]);
        assert_eq!(encode("🙂"), vec![0xD8, 0x3D, 0xDE, 0x42]);
        assert_eq!(decode(&[0xD8, 0x3D, 0xDE, 0x42]), "🙂");
    }

    #[test]
    fn broken_input_is_replaced_not_refused() {
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
    }

    proptest! {
        #[test]
        fn round_trip(s in "\\PC{0,80}") {
            prop_assert_eq!(decode(&encode(&s)), s);
        }
    }
}
