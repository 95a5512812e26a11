//! The SMS codec: GSM 03.38 text, TS 23.040 TPDUs, TS 24.011 RP messages, concatenation, and
//! the SIP body encodings OpenBTS and TS 24.341 use.
//!
//! Pure: no I/O, no panics on any input (property tests and fuzz targets check every decoder),
//! no allocation beyond the message at hand. Everything SMS-shaped in the server goes through
//! this module. What is and is not supported: docs/protocols.md.
//!
//! | module | standard |
//! |---|---|
//! | [`gsm7`] | TS 23.038 6.1.2.1, 6.2.1: default alphabet, extension table, septet packing |
//! | [`ucs2`] | TS 23.038 6.2.3: UCS-2 as UTF-16BE |
//! | [`address`] | TS 23.040 9.1.2.5 (TP), TS 24.011 8.2.5 (RP) |
//! | [`udh`] | TS 23.040 9.2.3.24: user-data header, concatenation |
//! | [`tpdu`] | TS 23.040 9.2: SUBMIT, DELIVER, STATUS-REPORT; DCS, VP, SCTS |
//! | [`rp`] | TS 24.011 7.3: RP-DATA, RP-ACK, RP-ERROR, RP-SMMA |
//! | [`segment`] | splitting and reassembly |
//! | [`body`] | binary, hex and base64 SIP bodies |

pub mod address;
pub mod body;
pub mod gsm7;
pub mod rp;
pub mod segment;
pub mod tpdu;
pub mod ucs2;
pub mod udh;

pub use address::Address;
pub use rp::{RpData, RpMessage};
pub use segment::{Partial, SegmentOptions, Segments};
pub use tpdu::{Alphabet, Body, Deliver, StatusReport, Submit, Timestamp, UserData};

/// Why bytes are not a valid SMS PDU, or a value cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmsError {
    /// The PDU ends inside the named field.
    #[error("{0} is truncated")]
    Truncated(&'static str),
    /// A field has a value the standard does not allow.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The user data is compressed (TS 23.042), which smsmta does not implement.
    #[error("compressed user data (TS 23.042) is not supported")]
    Compressed,
    /// A valid PDU of a kind smsmta does not handle.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// User data longer than one TPDU can carry (160 septets / 140 octets).
    #[error("user data longer than one TPDU can carry")]
    TooLong,
}

/// A mobile-originated SMS as it arrives in a SIP MESSAGE: RP-DATA carrying an SMS-SUBMIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoSms {
    /// RP-Message Reference (the RP-ACK answers with it).
    pub rp_message_ref: u8,
    /// RP-Destination Address: the service centre number the handset used.
    pub smsc: Option<Address>,
    /// The SMS-SUBMIT.
    pub submit: Submit,
}

/// Decodes an MO RP-DATA / SMS-SUBMIT.
///
/// # Errors
/// [`SmsError`]: not an RP-DATA from the mobile, an SMS-COMMAND (unsupported), or a bad PDU.
pub fn decode_mo(rp_bytes: &[u8]) -> Result<MoSms, SmsError> {
    match RpMessage::decode(rp_bytes)? {
        RpMessage::Data(d) if d.to_network => match tpdu::mo_type(&d.tpdu)? {
            tpdu::MoType::Submit => Ok(MoSms {
                rp_message_ref: d.message_ref,
                smsc: d.destination,
                submit: Submit::decode(&d.tpdu)?,
            }),
            tpdu::MoType::Command => Err(SmsError::Unsupported("SMS-COMMAND")),
            tpdu::MoType::DeliverReport | tpdu::MoType::Reserved => Err(SmsError::Invalid {
                field: "TP-MTI",
                reason: "RP-DATA from the mobile must carry an SMS-SUBMIT",
            }),
        },
        RpMessage::Data(_) => Err(SmsError::Invalid {
            field: "RP-MTI",
            reason: "RP-DATA in the network-to-mobile direction",
        }),
        RpMessage::Ack(_) | RpMessage::Error(_) | RpMessage::Smma { .. } => {
            Err(SmsError::Invalid {
                field: "RP-MTI",
                reason: "not an RP-DATA",
            })
        }
    }
}

/// Wraps a TPDU (SMS-DELIVER or SMS-STATUS-REPORT) in a network-to-mobile RP-DATA from `smsc`.
///
/// # Errors
/// [`SmsError`] when the SMSC address or TPDU does not fit.
pub fn encode_mt(message_ref: u8, smsc: &Address, tpdu: Vec<u8>) -> Result<Vec<u8>, SmsError> {
    RpMessage::Data(RpData {
        to_network: false,
        message_ref,
        originator: Some(smsc.clone()),
        destination: None,
        tpdu,
    })
    .encode()
}
