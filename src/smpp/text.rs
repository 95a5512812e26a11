//! The text of a submit_sm or deliver_sm by its data_coding, and back. Pure.
//!
//! **Trust.** The octets are the peer's: every coding decodes any octets (a septet or unit
//! that is not a character becomes `?` or U+FFFD), never panics. Binary codings are refused:
//! smsmta stores texts.
//!
//! Standards: SMPP 3.4 5.2.19 (data_coding: 0 SMSC default alphabet, taken as GSM 03.38
//! unpacked as Kannel and smpplib send it; 1 IA5; 3 Latin-1; 8 UCS-2), TS 23.038 4 (the
//! 0xF0 group: bit 2 clear is the GSM 7-bit alphabet).

use crate::sms::{gsm7, ucs2};

/// Why a message has no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Binary, or a coding smsmta does not read.
    #[error("data_coding 0x{0:02X} is not a text coding smsmta reads")]
    Coding(u8),
}

/// The text of `octets` in `data_coding`.
///
/// # Errors
/// [`TextError::Coding`] for binary and unknown codings.
pub fn decode(data_coding: u8, octets: &[u8]) -> Result<String, TextError> {
    match data_coding {
        0x00 => Ok(gsm7::decode(&septets(octets))),
        0x01 => Ok(octets
            .iter()
            .map(|b| if b.is_ascii() { char::from(*b) } else { '?' })
            .collect()),
        0x03 => Ok(octets.iter().map(|b| char::from(*b)).collect()),
        0x08 => Ok(ucs2::decode(octets)),
        d if d & 0xF4 == 0xF0 => Ok(gsm7::decode(&septets(octets))),
        d => Err(TextError::Coding(d)),
    }
}

/// GSM 03.38 unpacked: one septet an octet; an octet with its top bit set is not one.
fn septets(octets: &[u8]) -> Vec<u8> {
    octets
        .iter()
        .map(|b| if *b < 0x80 { *b } else { 0x3F })
        .collect()
}

/// `text` as data_coding 0 (GSM 03.38 unpacked) when the alphabet has it, else 8 (UCS-2).
pub fn encode(text: &str) -> (u8, Vec<u8>) {
    match gsm7::encode(text) {
        Some(s) => (0x00, s),
        None => (0x08, ucs2::encode(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_text_coding_reads_as_kannel_and_smpplib_send_it() {
        assert_eq!(decode(0, b"Hello 1").unwrap(), "Hello 1");
        assert_eq!(decode(0, &[0x40]).unwrap(), "\u{a1}");
        assert_eq!(decode(0, &[0x00, 0x02]).unwrap(), "@$");
        assert_eq!(decode(1, b"plain").unwrap(), "plain");
        assert_eq!(decode(3, &[0x47, 0x72, 0xFC, 0xDF]).unwrap(), "Grüß");
        assert_eq!(decode(8, &[0x04, 0x1F, 0x04, 0x40]).unwrap(), "Пр");
        assert_eq!(decode(0xF1, b"abc").unwrap(), "abc");
        assert_eq!(decode(4, b"x"), Err(TextError::Coding(4)));
        assert_eq!(decode(0xF4, b"x"), Err(TextError::Coding(0xF4)));
    }

    #[test]
    fn texts_go_out_in_the_smallest_coding_that_holds_them() {
        assert_eq!(encode("hi @"), (0, vec![0x68, 0x69, 0x20, 0x00]));
        assert_eq!(encode("Пр").0, 8);
        assert_eq!(decode(8, &encode("Пр 🙂").1).unwrap(), "Пр 🙂");
    }

    proptest! {
        #[test]
        fn any_octets_in_any_coding_never_panic(dcs in any::<u8>(), o in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(dcs, &o);
        }
    }
}
