//! The relay layer (TS 24.011 7.3): RP-DATA, RP-ACK, RP-ERROR, RP-SMMA, in both directions.
//!
//! Pure and total. The MTI's direction bit is kept so that a message can be re-encoded exactly.
//! RP-DATA carries the TPDU as a plain length-value field; RP-ACK and RP-ERROR carry it in an
//! optional RP-User-Data element (IEI 0x41).
//!
//! Standards: 3GPP TS 24.011 7.3 (messages), 8.2 (fields), 8.2.5.4 (cause values).

use serde::{Deserialize, Serialize};

use super::SmsError;
use super::address::{self, Address};

const IEI_USER_DATA: u8 = 0x41;
/// Longest TPDU an RP message carries (TS 24.011 8.2.5.3: RP-User-Data up to 233 octets).
pub const MAX_TPDU: usize = 233;

/// An RP message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpMessage {
    /// RP-DATA.
    Data(RpData),
    /// RP-ACK.
    Ack(RpAck),
    /// RP-ERROR.
    Error(RpError),
    /// RP-SMMA (mobile has memory available again), mobile to network only.
    Smma {
        /// RP-Message Reference.
        message_ref: u8,
    },
}

/// RP-DATA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpData {
    /// True for mobile -> network (MTI 0), false for network -> mobile (MTI 1).
    pub to_network: bool,
    /// RP-Message Reference.
    pub message_ref: u8,
    /// RP-Originator Address (the SMSC for MT; empty for MO).
    pub originator: Option<Address>,
    /// RP-Destination Address (the SMSC for MO; empty for MT).
    pub destination: Option<Address>,
    /// The TPDU (SMS-SUBMIT for MO, SMS-DELIVER or SMS-STATUS-REPORT for MT).
    pub tpdu: Vec<u8>,
}

/// RP-ACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpAck {
    /// True for mobile -> network (MTI 2), false for network -> mobile (MTI 3).
    pub to_network: bool,
    /// RP-Message Reference of the RP-DATA acknowledged.
    pub message_ref: u8,
    /// Optional TPDU (SMS-DELIVER-REPORT / SMS-SUBMIT-REPORT).
    pub tpdu: Option<Vec<u8>>,
}

/// RP-ERROR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpError {
    /// True for mobile -> network (MTI 4), false for network -> mobile (MTI 5).
    pub to_network: bool,
    /// RP-Message Reference.
    pub message_ref: u8,
    /// RP-Cause value (7 bits).
    pub cause: u8,
    /// Diagnostic octet, if present.
    pub diagnostic: Option<u8>,
    /// Optional TPDU (an error report).
    pub tpdu: Option<Vec<u8>>,
}

/// The text of an RP-Cause value (TS 24.011 8.2.5.4, table 8.4).
pub fn cause_text(cause: u8) -> &'static str {
    match cause {
        1 => "unassigned (unallocated) number",
        8 => "operator determined barring",
        10 => "call barred",
        11 => "reserved",
        21 => "short message transfer rejected",
        22 => "memory capacity exceeded",
        27 => "destination out of order",
        28 => "unidentified subscriber",
        29 => "facility rejected",
        30 => "unknown subscriber",
        38 => "network out of order",
        41 => "temporary failure",
        42 => "congestion",
        47 => "resources unavailable, unspecified",
        50 => "requested facility not subscribed",
        69 => "requested facility not implemented",
        81 => "invalid short message transfer reference value",
        95 => "semantically incorrect message",
        96 => "invalid mandatory information",
        97 => "message type non-existent or not implemented",
        98 => "message not compatible with short message protocol state",
        99 => "information element non-existent or not implemented",
        111 => "protocol error, unspecified",
        127 => "interworking, unspecified",
        _ => "unknown cause",
    }
}

fn truncated() -> SmsError {
    SmsError::Truncated("RP message")
}

fn optional_user_data(b: &[u8]) -> Result<Option<Vec<u8>>, SmsError> {
    match b.first() {
        None => Ok(None),
        Some(&IEI_USER_DATA) => {
            let len = usize::from(*b.get(1).ok_or(truncated())?);
            let data = b.get(2..2 + len).ok_or(truncated())?;
            Ok(Some(data.to_vec()))
        }
        // Unknown optional elements are ignored (TS 24.011 9.3.4 comprehension rules).
        Some(_) => Ok(None),
    }
}

impl RpMessage {
    /// Decodes an RP message.
    ///
    /// # Errors
    /// [`SmsError`]: truncated, unknown type, or bad fields.
    pub fn decode(b: &[u8]) -> Result<RpMessage, SmsError> {
        let first = *b.first().ok_or(truncated())?;
        // Bits 4-8 are spare and sent as zero; anything else is not an RP message.
        if first > 0x07 {
            return Err(SmsError::Invalid {
                field: "RP-MTI",
                reason: "spare bits set",
            });
        }
        let mti = first;
        let message_ref = *b.get(1).ok_or(truncated())?;
        let rest = b.get(2..).unwrap_or(&[]);
        match mti {
            0 | 1 => {
                let (originator, n1) = address::decode_rp(rest)?;
                let (destination, n2) = address::decode_rp(rest.get(n1..).unwrap_or(&[]))?;
                let ud = rest.get(n1 + n2..).unwrap_or(&[]);
                let len = usize::from(*ud.first().ok_or(truncated())?);
                if len > MAX_TPDU {
                    return Err(SmsError::Invalid {
                        field: "RP-User-Data",
                        reason: "longer than 233 octets",
                    });
                }
                let tpdu = ud.get(1..1 + len).ok_or(truncated())?;
                Ok(RpMessage::Data(RpData {
                    to_network: mti == 0,
                    message_ref,
                    originator,
                    destination,
                    tpdu: tpdu.to_vec(),
                }))
            }
            2 | 3 => Ok(RpMessage::Ack(RpAck {
                to_network: mti == 2,
                message_ref,
                tpdu: optional_user_data(rest)?,
            })),
            4 | 5 => {
                let len = usize::from(*rest.first().ok_or(truncated())?);
                if len == 0 {
                    return Err(SmsError::Invalid {
                        field: "RP-Cause",
                        reason: "empty",
                    });
                }
                let cause = rest.get(1..1 + len).ok_or(truncated())?;
                Ok(RpMessage::Error(RpError {
                    to_network: mti == 4,
                    message_ref,
                    cause: cause[0] & 0x7F,
                    diagnostic: cause.get(1).copied(),
                    tpdu: optional_user_data(&rest[1 + len..])?,
                }))
            }
            6 => Ok(RpMessage::Smma { message_ref }),
            _ => Err(SmsError::Invalid {
                field: "RP-MTI",
                reason: "reserved message type",
            }),
        }
    }

    /// Encodes an RP message.
    ///
    /// # Errors
    /// [`SmsError`] when an address or the TPDU does not fit.
    pub fn encode(&self) -> Result<Vec<u8>, SmsError> {
        let too_long = SmsError::Invalid {
            field: "RP-User-Data",
            reason: "longer than 233 octets",
        };
        let mut out = Vec::with_capacity(200);
        match self {
            RpMessage::Data(d) => {
                out.push(if d.to_network { 0 } else { 1 });
                out.push(d.message_ref);
                out.extend(address::encode_rp(d.originator.as_ref())?);
                out.extend(address::encode_rp(d.destination.as_ref())?);
                if d.tpdu.len() > MAX_TPDU {
                    return Err(too_long);
                }
                out.push(d.tpdu.len() as u8);
                out.extend_from_slice(&d.tpdu);
            }
            RpMessage::Ack(a) => {
                out.push(if a.to_network { 2 } else { 3 });
                out.push(a.message_ref);
                if let Some(t) = &a.tpdu {
                    if t.len() > MAX_TPDU {
                        return Err(too_long);
                    }
                    out.extend([IEI_USER_DATA, t.len() as u8]);
                    out.extend_from_slice(t);
                }
            }
            RpMessage::Error(e) => {
                out.push(if e.to_network { 4 } else { 5 });
                out.push(e.message_ref);
                match e.diagnostic {
                    Some(d) => out.extend([2, e.cause & 0x7F, d]),
                    None => out.extend([1, e.cause & 0x7F]),
                }
                if let Some(t) = &e.tpdu {
                    if t.len() > MAX_TPDU {
                        return Err(too_long);
                    }
                    out.extend([IEI_USER_DATA, t.len() as u8]);
                    out.extend_from_slice(t);
                }
            }
            RpMessage::Smma { message_ref } => out.extend([6, *message_ref]),
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::sms::body::hex_decode(s.as_bytes()).unwrap()
    }

    #[test]
    fn rp_ack_with_deliver_report_from_osmo_msc() {
        let b = hex("0200410200 00".replace(' ', "").as_str());
        let m = RpMessage::decode(&b).unwrap();
        assert_eq!(
            m,
            RpMessage::Ack(RpAck {
                to_network: true,
                message_ref: 0,
                tpdu: Some(vec![0, 0]),
            })
        );
        assert_eq!(m.encode().unwrap(), b);
    }

    #[test]
    fn rp_error_with_cause_and_diagnostic() {
        let m = RpMessage::Error(RpError {
            to_network: true,
            message_ref: 7,
            cause: 22,
            diagnostic: Some(1),
            tpdu: None,
        });
        let b = m.encode().unwrap();
        assert_eq!(b, vec![4, 7, 2, 22, 1]);
        assert_eq!(RpMessage::decode(&b).unwrap(), m);
        assert_eq!(cause_text(22), "memory capacity exceeded");
    }

    #[test]
    fn smma_and_reserved_types() {
        assert_eq!(
            RpMessage::decode(&[6, 9]).unwrap(),
            RpMessage::Smma { message_ref: 9 }
        );
        assert!(RpMessage::decode(&[7, 9]).is_err());
        assert!(RpMessage::decode(&[0]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..260)) {
            if let Ok(m) = RpMessage::decode(&b) {
                // Whatever decodes re-encodes.
                let _ = m.encode();
            }
        }

        #[test]
        fn data_round_trip(mr in any::<u8>(), tpdu in proptest::collection::vec(any::<u8>(), 0..233), mo in any::<bool>()) {
            let smsc = Some(Address::parse("+447785016005"));
            let m = RpMessage::Data(RpData {
                to_network: mo,
                message_ref: mr,
                originator: if mo { None } else { smsc.clone() },
                destination: if mo { smsc } else { None },
                tpdu,
            });
            prop_assert_eq!(RpMessage::decode(&m.encode().unwrap()).unwrap(), m);
        }
    }
}
