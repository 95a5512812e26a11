//! The user-data header (TS 23.040 9.2.3.24): information elements, and concatenation
//! (IEI 0x00 with an 8-bit reference, IEI 0x08 with a 16-bit reference).
//!
//! Pure and total. A concatenation element with total 0, sequence 0 or sequence > total is
//! ignored, as receivers do (TS 23.040 9.2.3.24.1; Android's SmsHeader).

use serde::{Deserialize, Serialize};

use super::SmsError;

/// IEI of the concatenation element with an 8-bit reference.
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI of the concatenation element with a 16-bit reference.
pub const IEI_CONCAT_16: u8 = 0x08;

/// One information element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformationElement {
    /// The identifier.
    pub iei: u8,
    /// The data.
    pub data: Vec<u8>,
}

/// Concatenation facts from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Concat {
    /// The reference shared by every part of the message.
    pub reference: u16,
    /// How many parts the message has (1..=255).
    pub total: u8,
    /// This part's number (1..=total).
    pub seq: u8,
    /// Whether the 16-bit reference element (IEI 0x08) carried it.
    pub wide: bool,
}

impl Concat {
    /// The information element for this part.
    pub fn to_element(&self) -> InformationElement {
        if self.wide {
            let [hi, lo] = self.reference.to_be_bytes();
            InformationElement {
                iei: IEI_CONCAT_16,
                data: vec![hi, lo, self.total, self.seq],
            }
        } else {
            InformationElement {
                iei: IEI_CONCAT_8,
                data: vec![(self.reference & 0xFF) as u8, self.total, self.seq],
            }
        }
    }
}

/// Parses the elements of a header (the octets after UDHL).
///
/// # Errors
/// [`SmsError::Truncated`] when an element runs past the end.
pub fn parse(b: &[u8]) -> Result<Vec<InformationElement>, SmsError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let iei = b[i];
        let len = usize::from(
            *b.get(i + 1)
                .ok_or(SmsError::Truncated("user data header"))?,
        );
        let data = b
            .get(i + 2..i + 2 + len)
            .ok_or(SmsError::Truncated("user data header"))?;
        out.push(InformationElement {
            iei,
            data: data.to_vec(),
        });
        i += 2 + len;
    }
    Ok(out)
}

/// Builds a header: UDHL, then the elements.
pub fn build(elements: &[InformationElement]) -> Vec<u8> {
    let mut out = vec![0u8];
    for e in elements {
        out.push(e.iei);
        out.push(e.data.len() as u8);
        out.extend_from_slice(&e.data);
    }
    out[0] = (out.len() - 1) as u8;
    out
}

/// The concatenation element of a header, if there is a valid one.
pub fn concat(elements: &[InformationElement]) -> Option<Concat> {
    elements.iter().find_map(|e| {
        let c = match (e.iei, e.data.as_slice()) {
            (IEI_CONCAT_8, [r, t, s]) => Concat {
                reference: u16::from(*r),
                total: *t,
                seq: *s,
                wide: false,
            },
            (IEI_CONCAT_16, [r1, r2, t, s]) => Concat {
                reference: u16::from_be_bytes([*r1, *r2]),
                total: *t,
                seq: *s,
                wide: true,
            },
            _ => return None,
        };
        (c.total >= 1 && c.seq >= 1 && c.seq <= c.total).then_some(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn eight_and_sixteen_bit_concat_headers() {
        let c = Concat {
            reference: 0x19,
            total: 2,
            seq: 1,
            wide: false,
        };
        assert_eq!(
            build(&[c.to_element()]),
            vec![0x05, 0x00, 0x03, 0x19, 0x02, 0x01]
        );
        let w = Concat {
            reference: 0x1234,
            total: 3,
            seq: 3,
            wide: true,
        };
        assert_eq!(
            build(&[w.to_element()]),
            vec![0x06, 0x08, 0x04, 0x12, 0x34, 0x03, 0x03]
        );
        assert_eq!(
            concat(&parse(&[0x08, 0x04, 0x12, 0x34, 0x03, 0x03]).unwrap()),
            Some(w)
        );
    }

    #[test]
    fn invalid_concat_elements_are_ignored() {
        for data in [[1, 0, 1], [1, 2, 0], [1, 2, 3]] {
            let e = InformationElement {
                iei: IEI_CONCAT_8,
                data: data.to_vec(),
            };
            assert_eq!(concat(&[e]), None);
        }
    }

    #[test]
    fn truncated_element_is_an_error() {
        assert!(parse(&[0x00, 0x03, 0x01]).is_err());
        assert!(parse(&[0x00]).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(els) = parse(&b) {
                prop_assert_eq!(&build(&els)[1..], &b[..]);
            }
        }
    }
}
