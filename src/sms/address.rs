//! Addresses: TP addresses (TS 23.040 9.1.2.5: length in digits) and RP addresses (TS 24.011
//! 8.2.5.1/8.2.5.2: length in octets), in swapped BCD with F padding, and alphanumeric TP
//! addresses (type of number 5, GSM 7-bit packed).
//!
//! Pure and total: decoders take any bytes and return an error or a value.
//!
//! Standards: 3GPP TS 23.040 9.1.2.5, TS 24.008 10.5.4.7 (BCD digit values), TS 24.011 8.2.5.

use serde::{Deserialize, Serialize};

use super::{SmsError, gsm7};

/// Type of number: international (E.164 with a `+`).
pub const TON_INTERNATIONAL: u8 = 1;
/// Type of number: national.
pub const TON_NATIONAL: u8 = 2;
/// Type of number: alphanumeric (GSM 7-bit text).
pub const TON_ALPHANUMERIC: u8 = 5;
/// Numbering plan: ISDN/telephony (E.164).
pub const NPI_ISDN: u8 = 1;
/// Most digits in a TP or RP address (10 BCD octets).
pub const MAX_DIGITS: usize = 20;
/// Most characters in an alphanumeric address (11 septets fit in 10 octets).
pub const MAX_ALPHANUMERIC: usize = 11;

/// A TP or RP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// Type of number (3 bits).
    pub ton: u8,
    /// Numbering plan identification (4 bits).
    pub npi: u8,
    /// The digits (`0-9 * # a b c`), without a `+`; for TON 5, the text.
    pub value: String,
}

impl Address {
    /// Reads an address as people write it: `+15551234567` is international E.164; a string of
    /// digits (and `* #`) is type unknown, ISDN plan (TOA 0x81); anything else is alphanumeric.
    pub fn parse(s: &str) -> Address {
        if let Some(d) = s.strip_prefix('+')
            && !d.is_empty()
            && d.bytes().all(|b| b.is_ascii_digit())
        {
            return Address {
                ton: TON_INTERNATIONAL,
                npi: NPI_ISDN,
                value: d.to_string(),
            };
        }
        if !s.is_empty() && s.chars().all(|c| bcd_value(c).is_some()) {
            return Address {
                ton: 0,
                npi: NPI_ISDN,
                value: s.to_string(),
            };
        }
        Address {
            ton: TON_ALPHANUMERIC,
            npi: 0,
            value: s.to_string(),
        }
    }

    /// The type-of-address octet: `1 TON NPI`.
    pub fn toa(&self) -> u8 {
        0x80 | ((self.ton & 0x07) << 4) | (self.npi & 0x0F)
    }

    /// Whether this is an alphanumeric (TON 5) address.
    pub fn is_alphanumeric(&self) -> bool {
        self.ton == TON_ALPHANUMERIC
    }

    fn from_toa(toa: u8, value: String) -> Address {
        Address {
            ton: (toa >> 4) & 0x07,
            npi: toa & 0x0F,
            value,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ton == TON_INTERNATIONAL {
            write!(f, "+{}", self.value)
        } else {
            f.write_str(&self.value)
        }
    }
}

fn bcd_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(0x0A),
        '#' => Some(0x0B),
        'a' => Some(0x0C),
        'b' => Some(0x0D),
        'c' => Some(0x0E),
        _ => None,
    }
}

fn bcd_char(n: u8) -> Option<char> {
    match n {
        0..=9 => Some((b'0' + n) as char),
        0x0A => Some('*'),
        0x0B => Some('#'),
        0x0C => Some('a'),
        0x0D => Some('b'),
        0x0E => Some('c'),
        _ => None,
    }
}

/// Swapped-nibble BCD of the digits, F-padded.
fn encode_bcd(digits: &str) -> Result<Vec<u8>, SmsError> {
    let nibbles: Vec<u8> = digits
        .chars()
        .map(|c| {
            bcd_value(c).ok_or(SmsError::Invalid {
                field: "address",
                reason: "not a digit, *, #, a, b or c",
            })
        })
        .collect::<Result<_, _>>()?;
    if nibbles.len() > MAX_DIGITS {
        return Err(SmsError::Invalid {
            field: "address",
            reason: "more than 20 digits",
        });
    }
    Ok(nibbles
        .chunks(2)
        .map(|p| p[0] | (p.get(1).copied().unwrap_or(0x0F) << 4))
        .collect())
}

/// Reads up to `max_digits` digits from swapped BCD; an F nibble ends the number.
fn decode_bcd(octets: &[u8], max_digits: usize) -> Result<String, SmsError> {
    let mut s = String::with_capacity(octets.len() * 2);
    for o in octets {
        for n in [o & 0x0F, o >> 4] {
            if s.len() == max_digits || n == 0x0F {
                return Ok(s);
            }
            s.push(bcd_char(n).ok_or(SmsError::Invalid {
                field: "address",
                reason: "bad BCD digit",
            })?);
        }
    }
    Ok(s)
}

/// Encodes a TP address: digit count (or semi-octets used, for alphanumeric), TOA, value.
///
/// # Errors
/// [`SmsError::Invalid`] for too many digits or characters, or characters that cannot be
/// encoded.
pub fn encode_tp(a: &Address) -> Result<Vec<u8>, SmsError> {
    let mut out = Vec::with_capacity(12);
    if a.is_alphanumeric() {
        let septets = gsm7::encode(&a.value).ok_or(SmsError::Invalid {
            field: "TP address",
            reason: "alphanumeric address outside the GSM 7-bit alphabet",
        })?;
        if septets.len() > MAX_ALPHANUMERIC {
            return Err(SmsError::Invalid {
                field: "TP address",
                reason: "alphanumeric address longer than 11 septets",
            });
        }
        let packed = gsm7::pack(&septets, 0);
        out.push((septets.len() * 7).div_ceil(4) as u8);
        out.push(a.toa());
        out.extend_from_slice(&packed);
    } else {
        let bcd = encode_bcd(&a.value)?;
        out.push(a.value.chars().count() as u8);
        out.push(a.toa());
        out.extend_from_slice(&bcd);
    }
    Ok(out)
}

/// Decodes a TP address at the start of `b`; returns it and the octets it took.
///
/// # Errors
/// [`SmsError::Truncated`] or [`SmsError::Invalid`].
pub fn decode_tp(b: &[u8]) -> Result<(Address, usize), SmsError> {
    let len = usize::from(*b.first().ok_or(SmsError::Truncated("TP address"))?);
    if len > MAX_DIGITS {
        return Err(SmsError::Invalid {
            field: "TP address",
            reason: "longer than 20 semi-octets",
        });
    }
    let toa = *b.get(1).ok_or(SmsError::Truncated("TP address"))?;
    let octets = len.div_ceil(2);
    let data = b
        .get(2..2 + octets)
        .ok_or(SmsError::Truncated("TP address"))?;
    let value = if (toa >> 4) & 0x07 == TON_ALPHANUMERIC {
        gsm7::decode(&gsm7::unpack(data, 0, len * 4 / 7))
    } else {
        decode_bcd(data, len)?
    };
    Ok((Address::from_toa(toa, value), 2 + octets))
}

/// Encodes an RP address (length in octets, TOA, BCD); `None` is the empty address `00`.
///
/// # Errors
/// [`SmsError::Invalid`] for alphanumeric or over-long addresses.
pub fn encode_rp(a: Option<&Address>) -> Result<Vec<u8>, SmsError> {
    let Some(a) = a else { return Ok(vec![0]) };
    if a.is_alphanumeric() {
        return Err(SmsError::Invalid {
            field: "RP address",
            reason: "must be a number",
        });
    }
    let bcd = encode_bcd(&a.value)?;
    let mut out = Vec::with_capacity(2 + bcd.len());
    out.push(1 + bcd.len() as u8);
    out.push(a.toa());
    out.extend_from_slice(&bcd);
    Ok(out)
}

/// Decodes an RP address at the start of `b`; returns it (`None` when empty) and the octets
/// it took.
///
/// # Errors
/// [`SmsError::Truncated`] or [`SmsError::Invalid`].
pub fn decode_rp(b: &[u8]) -> Result<(Option<Address>, usize), SmsError> {
    let len = usize::from(*b.first().ok_or(SmsError::Truncated("RP address"))?);
    if len == 0 {
        return Ok((None, 1));
    }
    if len > 11 {
        return Err(SmsError::Invalid {
            field: "RP address",
            reason: "longer than 11 octets",
        });
    }
    let data = b.get(1..1 + len).ok_or(SmsError::Truncated("RP address"))?;
    let value = decode_bcd(&data[1..], MAX_DIGITS)?;
    Ok((Some(Address::from_toa(data[0], value)), 1 + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn international_number_encodes_as_in_ts_23_040() {
        let a = Address::parse("+15551234567");
        assert_eq!(a.toa(), 0x91);
        assert_eq!(
            encode_tp(&a).unwrap(),
            vec![0x0B, 0x91, 0x51, 0x55, 0x21, 0x43, 0x65, 0xF7]
        );
        let (back, used) = decode_tp(&encode_tp(&a).unwrap()).unwrap();
        assert_eq!((back.to_string(), used), ("+15551234567".to_string(), 8));
    }

    #[test]
    fn alphanumeric_sender_decodes_from_python_messaging_vector() {
        let b = hex("12D0F7FBDD454FB75D693A");
        let (a, used) = decode_tp(&b).unwrap();
        assert_eq!(a.value, "www.tim.it");
        assert_eq!(a.toa(), 0xD0);
        assert_eq!(used, 11);
        assert_eq!(encode_tp(&a).unwrap(), b);
    }

    #[test]
    fn rp_address_lengths_count_octets() {
        let b = hex("0891683110901105F0");
        let (a, used) = decode_rp(&b).unwrap();
        assert_eq!(a.unwrap().to_string(), "+8613010911500");
        assert_eq!(used, 9);
        assert_eq!(decode_rp(&[0]).unwrap(), (None, 1));
        assert_eq!(encode_rp(None).unwrap(), vec![0]);
    }

    #[test]
    fn too_long_or_bad_addresses_are_errors() {
        assert!(encode_tp(&Address::parse("123456789012345678901")).is_err());
        assert!(encode_tp(&Address::parse("A very long sender")).is_err());
        assert!(decode_tp(&[0x15, 0x91]).is_err());
        assert!(decode_tp(&[0x04, 0x91, 0x21]).is_err());
        assert!(encode_rp(Some(&Address::parse("Shop"))).is_err());
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        crate::sms::body::hex_decode(s.as_bytes()).unwrap()
    }

    proptest! {
        #[test]
        fn numeric_round_trip(d in "[0-9*#]{1,20}", intl in any::<bool>()) {
            let a = if intl && d.bytes().all(|b| b.is_ascii_digit()) {
                Address::parse(&format!("+{d}"))
            } else {
                Address::parse(&d)
            };
            let (back, used) = decode_tp(&encode_tp(&a).unwrap()).unwrap();
            prop_assert_eq!(&back, &a);
            prop_assert_eq!(used, encode_tp(&a).unwrap().len());
            let (rp, _) = decode_rp(&encode_rp(Some(&a)).unwrap()).unwrap();
            prop_assert_eq!(rp, Some(a));
        }

        #[test]
        fn alphanumeric_round_trip(s in "[A-Za-z0-9 .]{1,11}") {
            let a = Address { ton: TON_ALPHANUMERIC, npi: 0, value: s };
            let (back, _) = decode_tp(&encode_tp(&a).unwrap()).unwrap();
            // Seven spare bits at the end can read as an extra '@'; never more than one.
            let with_at = format!("{}@", a.value);
            prop_assert!(back.value == a.value || back.value == with_at);
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..30)) {
            let _ = decode_tp(&b);
            let _ = decode_rp(&b);
        }
    }
}
