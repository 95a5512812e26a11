//! SMPP PDUs: the frame, the operations smsmta speaks, and their encoding. Pure.
//!
//! **Trust.** Every octet comes from a peer that may be hostile. [`frame_length`] checks the
//! command_length before anything is buffered for it (at least the 16-octet header, at most the
//! caller's limit); [`decode`] reads only within the frame, every C-Octet String up to its
//! maximum length, every TLV within the body. Nothing here panics or allocates more than the
//! frame holds. An operation smsmta does not speak decodes as [`Body::Other`], so the session
//! can answer it with generic_nack.
//!
//! Standards: SMPP 3.4 (2.2 the PDU format; 3.1 field types; 4.1 bind, 4.2 outbind, 4.3
//! generic_nack, 4.4 submit_sm, 4.6 deliver_sm, 4.11 enquire_link, 4.12 unbind; 5.1.3
//! command_status; 5.3 TLVs), with the SMPP 5.0 TLVs smsmta reads (message_payload,
//! sar_*, receipted_message_id, message_state).

/// The 16-octet header.
pub const HEADER: usize = 16;

/// command_id values (SMPP 3.4 5.1.2.1).
pub mod id {
    /// generic_nack
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    /// bind_receiver
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    /// bind_transmitter
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    /// submit_sm
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    /// deliver_sm
    pub const DELIVER_SM: u32 = 0x0000_0005;
    /// unbind
    pub const UNBIND: u32 = 0x0000_0006;
    /// bind_transceiver
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    /// enquire_link
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    /// The bit that makes a request's id its response's.
    pub const RESP: u32 = 0x8000_0000;
}

/// command_status values smsmta sends or reads (SMPP 3.4 5.1.3).
pub mod status {
    /// No error.
    pub const OK: u32 = 0x0000_0000;
    /// Message length is invalid.
    pub const INVMSGLEN: u32 = 0x0000_0001;
    /// Command length is invalid.
    pub const INVCMDLEN: u32 = 0x0000_0002;
    /// Invalid command ID.
    pub const INVCMDID: u32 = 0x0000_0003;
    /// Incorrect bind status for the command.
    pub const INVBNDSTS: u32 = 0x0000_0004;
    /// ESME already in bound state.
    pub const ALYBND: u32 = 0x0000_0005;
    /// System error.
    pub const SYSERR: u32 = 0x0000_0008;
    /// Invalid source address.
    pub const INVSRCADR: u32 = 0x0000_000A;
    /// Invalid destination address.
    pub const INVDSTADR: u32 = 0x0000_000B;
    /// Bind failed.
    pub const BINDFAIL: u32 = 0x0000_000D;
    /// Invalid password.
    pub const INVPASWD: u32 = 0x0000_000E;
    /// Invalid system ID.
    pub const INVSYSID: u32 = 0x0000_000F;
    /// Message queue full.
    pub const MSGQFUL: u32 = 0x0000_0014;
    /// Invalid esm_class.
    pub const INVESMCLASS: u32 = 0x0000_0043;
    /// Submit failed.
    pub const SUBMITFAIL: u32 = 0x0000_0045;
    /// Throttling error: the ESME exceeded its allowed message limits.
    pub const THROTTLED: u32 = 0x0000_0058;
    /// Invalid data coding scheme.
    pub const INVDCS: u32 = 0x0000_0104;
    /// Optional parameter not allowed / delivery failure (5.0: 0xFE).
    pub const DELIVERYFAILURE: u32 = 0x0000_00FE;
}

/// TLV tags smsmta reads or writes (SMPP 3.4 5.3.2).
pub mod tag {
    /// sar_msg_ref_num
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    /// sar_total_segments
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    /// sar_segment_seqnum
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    /// receipted_message_id
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    /// message_payload
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    /// message_state
    pub const MESSAGE_STATE: u16 = 0x0427;
}

/// Maximum lengths of the C-Octet String fields, terminating NUL included (SMPP 3.4 4.1).
pub mod max {
    /// system_id
    pub const SYSTEM_ID: usize = 16;
    /// password
    pub const PASSWORD: usize = 9;
    /// system_type
    pub const SYSTEM_TYPE: usize = 13;
    /// address_range
    pub const ADDRESS_RANGE: usize = 41;
    /// service_type
    pub const SERVICE_TYPE: usize = 6;
    /// source_addr and destination_addr (SMPP 3.4 4.4.1: 21)
    pub const ADDR: usize = 21;
    /// schedule_delivery_time and validity_period
    pub const TIME: usize = 17;
    /// message_id
    pub const MESSAGE_ID: usize = 65;
    /// short_message (sm_length is one octet)
    pub const SHORT_MESSAGE: usize = 254;
}

/// Why a PDU could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// command_length is below the header or above the limit.
    #[error("command_length {0} out of bounds")]
    Length(u32),
    /// The body ends before a field does.
    #[error("{0} runs past the end of the PDU")]
    Truncated(&'static str),
    /// A C-Octet String has no NUL within its maximum length.
    #[error("{0} is longer than its maximum")]
    TooLong(&'static str),
}

impl PduError {
    /// The command_status a response to the PDU carries.
    pub fn status(&self) -> u32 {
        match self {
            PduError::Length(_) => status::INVCMDLEN,
            PduError::Truncated(_) | PduError::TooLong(_) => status::INVMSGLEN,
        }
    }
}

/// An SMPP address: type of number, numbering plan, digits or text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// addr_ton (1 international, 2 national, 5 alphanumeric...).
    pub ton: u8,
    /// addr_npi (1 E.164...).
    pub npi: u8,
    /// The address.
    pub addr: String,
}

/// A bind request (the same body for the three kinds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    /// system_id
    pub system_id: String,
    /// password
    pub password: String,
    /// system_type
    pub system_type: String,
    /// interface_version (0x34 for 3.4)
    pub interface_version: u8,
    /// addr_ton, addr_npi, address_range
    pub range: Address,
}

/// The three bind kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// May submit.
    Transmitter,
    /// May receive.
    Receiver,
    /// Both.
    Transceiver,
}

impl BindKind {
    fn id(self) -> u32 {
        match self {
            BindKind::Transmitter => id::BIND_TRANSMITTER,
            BindKind::Receiver => id::BIND_RECEIVER,
            BindKind::Transceiver => id::BIND_TRANSCEIVER,
        }
    }

    /// Whether a bind of this kind may send submit_sm.
    pub fn transmits(self) -> bool {
        matches!(self, BindKind::Transmitter | BindKind::Transceiver)
    }

    /// Whether a bind of this kind may receive deliver_sm.
    pub fn receives(self) -> bool {
        matches!(self, BindKind::Receiver | BindKind::Transceiver)
    }
}

/// A submit_sm or deliver_sm body (the same fields, SMPP 3.4 4.4.1 and 4.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sm {
    /// service_type
    pub service_type: String,
    /// source_addr_ton, source_addr_npi, source_addr
    pub source: Address,
    /// dest_addr_ton, dest_addr_npi, destination_addr
    pub dest: Address,
    /// esm_class (0x40: UDH present; 0x04: a delivery receipt in deliver_sm)
    pub esm_class: u8,
    /// protocol_id
    pub protocol_id: u8,
    /// priority_flag
    pub priority: u8,
    /// schedule_delivery_time
    pub schedule_delivery_time: String,
    /// validity_period
    pub validity_period: String,
    /// registered_delivery (bits 0-1: receipt requested)
    pub registered_delivery: u8,
    /// replace_if_present_flag
    pub replace_if_present: u8,
    /// data_coding
    pub data_coding: u8,
    /// sm_default_msg_id
    pub sm_default_msg_id: u8,
    /// short_message
    pub short_message: Vec<u8>,
    /// Optional parameters, in the order received.
    pub tlvs: Vec<(u16, Vec<u8>)>,
}

impl Sm {
    /// The value of TLV `tag`, if present.
    pub fn tlv(&self, tag: u16) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    }

    /// The message: short_message, or message_payload when short_message is empty.
    pub fn payload(&self) -> &[u8] {
        match self.tlv(tag::MESSAGE_PAYLOAD) {
            Some(p) if self.short_message.is_empty() => p,
            _ => &self.short_message,
        }
    }
}

/// A PDU body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// bind_transmitter, bind_receiver or bind_transceiver.
    Bind(BindKind, Bind),
    /// Its response: our system_id.
    BindResp(BindKind, String),
    /// submit_sm.
    SubmitSm(Box<Sm>),
    /// submit_sm_resp: the message_id (empty on error).
    SubmitSmResp(String),
    /// deliver_sm.
    DeliverSm(Box<Sm>),
    /// deliver_sm_resp.
    DeliverSmResp,
    /// enquire_link.
    EnquireLink,
    /// enquire_link_resp.
    EnquireLinkResp,
    /// unbind.
    Unbind,
    /// unbind_resp.
    UnbindResp,
    /// generic_nack.
    GenericNack,
    /// Any other command_id: the id (its body is not read).
    Other(u32),
}

/// A whole PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// command_status.
    pub status: u32,
    /// sequence_number.
    pub sequence: u32,
    /// What it is.
    pub body: Body,
}

impl Body {
    /// The command_id.
    pub fn command_id(&self) -> u32 {
        match self {
            Body::Bind(k, _) => k.id(),
            Body::BindResp(k, _) => k.id() | id::RESP,
            Body::SubmitSm(_) => id::SUBMIT_SM,
            Body::SubmitSmResp(_) => id::SUBMIT_SM | id::RESP,
            Body::DeliverSm(_) => id::DELIVER_SM,
            Body::DeliverSmResp => id::DELIVER_SM | id::RESP,
            Body::EnquireLink => id::ENQUIRE_LINK,
            Body::EnquireLinkResp => id::ENQUIRE_LINK | id::RESP,
            Body::Unbind => id::UNBIND,
            Body::UnbindResp => id::UNBIND | id::RESP,
            Body::GenericNack => id::GENERIC_NACK,
            Body::Other(i) => *i,
        }
    }
}

/// The length of the PDU at the start of `buf`, once its first four octets are there:
/// `Ok(None)` until then, an error when it is below the header or above `max`.
///
/// # Errors
/// [`PduError::Length`].
pub fn frame_length(buf: &[u8], max: usize) -> Result<Option<usize>, PduError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let size = n as usize;
    if size < HEADER || size > max {
        return Err(PduError::Length(n));
    }
    Ok(Some(size))
}

/// The sequence number and command_id of a frame whose header is complete (for the answer to
/// a PDU whose body does not decode).
pub fn header(frame: &[u8]) -> Option<(u32, u32)> {
    let h = frame.get(..HEADER)?;
    let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    Some((word(4), word(12)))
}

/// A reader over a PDU body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self, what: &'static str) -> Result<u8, PduError> {
        let b = *self.buf.get(self.pos).ok_or(PduError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PduError> {
        let end = self.pos.checked_add(n).ok_or(PduError::Truncated(what))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or(PduError::Truncated(what))?;
        self.pos = end;
        Ok(b)
    }

    /// A C-Octet String of at most `max` octets, NUL included. Octets that are not ASCII are
    /// kept as Latin-1 (SMPP 3.4 fields are ASCII; a stray octet is not a reason to fail).
    fn cstr(&mut self, max: usize, what: &'static str) -> Result<String, PduError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let window = rest.get(..max.min(rest.len())).unwrap_or_default();
        let Some(nul) = window.iter().position(|b| *b == 0) else {
            return Err(if window.len() >= max {
                PduError::TooLong(what)
            } else {
                PduError::Truncated(what)
            });
        };
        let s = window
            .get(..nul)
            .unwrap_or_default()
            .iter()
            .map(|b| char::from(*b))
            .collect();
        self.pos += nul + 1;
        Ok(s)
    }

    fn address(&mut self, max: usize, what: &'static str) -> Result<Address, PduError> {
        Ok(Address {
            ton: self.u8(what)?,
            npi: self.u8(what)?,
            addr: self.cstr(max, what)?,
        })
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

/// Decodes one whole frame (as [`frame_length`] measured it).
///
/// # Errors
/// [`PduError`] when the frame is shorter than its header or a field does not fit.
pub fn decode(frame: &[u8]) -> Result<Pdu, PduError> {
    let len = frame_length(frame, usize::MAX)?.ok_or(PduError::Truncated("command_length"))?;
    let frame = frame.get(..len).ok_or(PduError::Truncated("body"))?;
    let word = |i: usize| {
        frame
            .get(i..i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or(PduError::Truncated("header"))
    };
    let (command_id, status, sequence) = (word(4)?, word(8)?, word(12)?);
    let mut r = Reader {
        buf: frame.get(HEADER..).unwrap_or_default(),
        pos: 0,
    };
    let kind = |i: u32| match i & !id::RESP {
        id::BIND_TRANSMITTER => Some(BindKind::Transmitter),
        id::BIND_RECEIVER => Some(BindKind::Receiver),
        id::BIND_TRANSCEIVER => Some(BindKind::Transceiver),
        _ => None,
    };
    let body = match (command_id, kind(command_id)) {
        (i, Some(k)) if i & id::RESP == 0 => Body::Bind(k, bind(&mut r)?),
        (_, Some(k)) => {
            // An error response may have no body at all (SMPP 3.4 4.1.2).
            let sid = if r.done() {
                String::new()
            } else {
                r.cstr(max::SYSTEM_ID, "system_id")?
            };
            Body::BindResp(k, sid)
        }
        (id::SUBMIT_SM, _) => Body::SubmitSm(Box::new(sm(&mut r)?)),
        (id::DELIVER_SM, _) => Body::DeliverSm(Box::new(sm(&mut r)?)),
        (SUBMIT_SM_RESP, _) => Body::SubmitSmResp(if r.done() {
            String::new()
        } else {
            r.cstr(max::MESSAGE_ID, "message_id")?
        }),
        (DELIVER_SM_RESP, _) => Body::DeliverSmResp,
        (id::ENQUIRE_LINK, _) => Body::EnquireLink,
        (ENQUIRE_LINK_RESP, _) => Body::EnquireLinkResp,
        (id::UNBIND, _) => Body::Unbind,
        (UNBIND_RESP, _) => Body::UnbindResp,
        (id::GENERIC_NACK, _) => Body::GenericNack,
        (other, None) => Body::Other(other),
    };
    Ok(Pdu {
        status,
        sequence,
        body,
    })
}

const SUBMIT_SM_RESP: u32 = id::SUBMIT_SM | id::RESP;
const DELIVER_SM_RESP: u32 = id::DELIVER_SM | id::RESP;
const ENQUIRE_LINK_RESP: u32 = id::ENQUIRE_LINK | id::RESP;
const UNBIND_RESP: u32 = id::UNBIND | id::RESP;

fn bind(r: &mut Reader<'_>) -> Result<Bind, PduError> {
    Ok(Bind {
        system_id: r.cstr(max::SYSTEM_ID, "system_id")?,
        password: r.cstr(max::PASSWORD, "password")?,
        system_type: r.cstr(max::SYSTEM_TYPE, "system_type")?,
        interface_version: r.u8("interface_version")?,
        range: r.address(max::ADDRESS_RANGE, "address_range")?,
    })
}

fn sm(r: &mut Reader<'_>) -> Result<Sm, PduError> {
    let mut sm = Sm {
        service_type: r.cstr(max::SERVICE_TYPE, "service_type")?,
        source: r.address(max::ADDR, "source_addr")?,
        dest: r.address(max::ADDR, "destination_addr")?,
        esm_class: r.u8("esm_class")?,
        protocol_id: r.u8("protocol_id")?,
        priority: r.u8("priority_flag")?,
        schedule_delivery_time: r.cstr(max::TIME, "schedule_delivery_time")?,
        validity_period: r.cstr(max::TIME, "validity_period")?,
        registered_delivery: r.u8("registered_delivery")?,
        replace_if_present: r.u8("replace_if_present_flag")?,
        data_coding: r.u8("data_coding")?,
        sm_default_msg_id: r.u8("sm_default_msg_id")?,
        ..Sm::default()
    };
    let n = usize::from(r.u8("sm_length")?);
    sm.short_message = r.bytes(n, "short_message")?.to_vec();
    while !r.done() {
        let t = r.bytes(2, "TLV tag")?;
        let tag = u16::from_be_bytes([t[0], t[1]]);
        let l = r.bytes(2, "TLV length")?;
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        sm.tlvs.push((tag, r.bytes(len, "TLV value")?.to_vec()));
    }
    Ok(sm)
}

/// Appends a C-Octet String, cut to its maximum (NUL included).
fn put_cstr(out: &mut Vec<u8>, s: &str, max: usize) {
    let bytes: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .filter(|b| *b != 0)
        .take(max.saturating_sub(1))
        .collect();
    out.extend_from_slice(&bytes);
    out.push(0);
}

fn put_sm(out: &mut Vec<u8>, sm: &Sm) {
    put_cstr(out, &sm.service_type, max::SERVICE_TYPE);
    out.extend_from_slice(&[sm.source.ton, sm.source.npi]);
    put_cstr(out, &sm.source.addr, max::ADDR);
    out.extend_from_slice(&[sm.dest.ton, sm.dest.npi]);
    put_cstr(out, &sm.dest.addr, max::ADDR);
    out.extend_from_slice(&[sm.esm_class, sm.protocol_id, sm.priority]);
    put_cstr(out, &sm.schedule_delivery_time, max::TIME);
    put_cstr(out, &sm.validity_period, max::TIME);
    out.extend_from_slice(&[
        sm.registered_delivery,
        sm.replace_if_present,
        sm.data_coding,
        sm.sm_default_msg_id,
    ]);
    let short = sm
        .short_message
        .get(..sm.short_message.len().min(max::SHORT_MESSAGE))
        .unwrap_or_default();
    out.push(u8::try_from(short.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(short);
    for (tag, value) in &sm.tlvs {
        let value = value
            .get(..value.len().min(usize::from(u16::MAX)))
            .unwrap_or_default();
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(value);
    }
}

/// Encodes a PDU. Fields longer than their maximum are cut (smsmta never makes such).
pub fn encode(pdu: &Pdu) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    out.extend_from_slice(&pdu.body.command_id().to_be_bytes());
    out.extend_from_slice(&pdu.status.to_be_bytes());
    out.extend_from_slice(&pdu.sequence.to_be_bytes());
    match &pdu.body {
        Body::Bind(_, b) => {
            put_cstr(&mut out, &b.system_id, max::SYSTEM_ID);
            put_cstr(&mut out, &b.password, max::PASSWORD);
            put_cstr(&mut out, &b.system_type, max::SYSTEM_TYPE);
            out.extend_from_slice(&[b.interface_version, b.range.ton, b.range.npi]);
            put_cstr(&mut out, &b.range.addr, max::ADDRESS_RANGE);
        }
        Body::BindResp(_, sid) => put_cstr(&mut out, sid, max::SYSTEM_ID),
        Body::SubmitSm(sm) | Body::DeliverSm(sm) => put_sm(&mut out, sm),
        Body::SubmitSmResp(mid) => put_cstr(&mut out, mid, max::MESSAGE_ID),
        // deliver_sm_resp's message_id is unused and NULL (SMPP 3.4 4.6.2).
        Body::DeliverSmResp => out.push(0),
        Body::EnquireLink
        | Body::EnquireLinkResp
        | Body::Unbind
        | Body::UnbindResp
        | Body::GenericNack
        | Body::Other(_) => {}
    }
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(head) = out.get_mut(..4) {
        head.copy_from_slice(&len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round(pdu: &Pdu) -> Pdu {
        decode(&encode(pdu)).unwrap()
    }

    #[test]
    fn the_bind_of_smpp_3_4_section_2_2_decodes() {
        // The sample PDU of the specification's section 2.2.
        let hex = "0000002f000000020000000000000001534d50503354455354007365637265743038005355424d49543100500101 00";
        let bytes: Vec<u8> = hex
            .split_whitespace()
            .collect::<String>()
            .as_bytes()
            .chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect();
        let pdu = decode(&bytes).unwrap();
        assert_eq!(pdu.sequence, 1);
        let Body::Bind(BindKind::Transmitter, b) = pdu.body else {
            panic!("{pdu:?}")
        };
        assert_eq!(
            (
                b.system_id.as_str(),
                b.password.as_str(),
                b.system_type.as_str()
            ),
            ("SMPP3TEST", "secret08", "SUBMIT1")
        );
        assert_eq!(
            (b.interface_version, b.range.ton, b.range.npi),
            (0x50, 1, 1)
        );
        assert_eq!(
            encode(&Pdu {
                status: 0,
                sequence: 1,
                body: Body::Bind(BindKind::Transmitter, b)
            }),
            bytes
        );
    }

    #[test]
    fn every_operation_round_trips() {
        let sm = Sm {
            source: Address {
                ton: 1,
                npi: 1,
                addr: "15551230000".into(),
            },
            dest: Address {
                ton: 1,
                npi: 1,
                addr: "15551234567".into(),
            },
            registered_delivery: 1,
            data_coding: 8,
            short_message: vec![0, 0x48, 0, 0x69],
            tlvs: vec![(tag::SAR_MSG_REF_NUM, vec![0, 7])],
            ..Sm::default()
        };
        for body in [
            Body::Bind(
                BindKind::Transceiver,
                Bind {
                    system_id: "app".into(),
                    password: "pw".into(),
                    interface_version: 0x34,
                    ..Bind::default()
                },
            ),
            Body::BindResp(BindKind::Receiver, "smsmta".into()),
            Body::SubmitSm(Box::new(sm.clone())),
            Body::SubmitSmResp("0644C2A1B3C4D5A1B2C3".into()),
            Body::DeliverSm(Box::new(sm)),
            Body::DeliverSmResp,
            Body::EnquireLink,
            Body::EnquireLinkResp,
            Body::Unbind,
            Body::UnbindResp,
            Body::GenericNack,
        ] {
            let pdu = Pdu {
                status: 0,
                sequence: 42,
                body,
            };
            assert_eq!(round(&pdu), pdu);
        }
    }

    #[test]
    fn a_length_outside_the_header_and_the_limit_is_refused_before_buffering() {
        assert_eq!(frame_length(&[0, 0], 1024), Ok(None));
        assert_eq!(
            frame_length(&[0, 0, 0, 15], 1024),
            Err(PduError::Length(15))
        );
        assert_eq!(
            frame_length(&[0xff, 0xff, 0xff, 0xff], 1024),
            Err(PduError::Length(u32::MAX))
        );
        assert_eq!(frame_length(&[0, 0, 0, 16], 1024), Ok(Some(16)));
    }

    #[test]
    fn a_field_without_its_nul_or_past_the_end_is_an_error_with_a_status() {
        let mut b = encode(&Pdu {
            status: 0,
            sequence: 1,
            body: Body::Bind(BindKind::Transmitter, Bind::default()),
        });
        // A system_id of 16 letters and no NUL.
        b.splice(16..17, std::iter::repeat_n(b'a', 17));
        let n = b.len() as u32;
        b[..4].copy_from_slice(&n.to_be_bytes());
        let e = decode(&b).unwrap_err();
        assert_eq!(e, PduError::TooLong("system_id"));
        assert_eq!(e.status(), status::INVMSGLEN);
        // A submit_sm cut inside short_message.
        let mut s = encode(&Pdu {
            status: 0,
            sequence: 1,
            body: Body::SubmitSm(Box::new(Sm {
                short_message: vec![1; 50],
                ..Sm::default()
            })),
        });
        s.truncate(s.len() - 10);
        let n = s.len() as u32;
        s[..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(decode(&s), Err(PduError::Truncated("short_message")));
    }

    #[test]
    fn an_unknown_operation_decodes_as_other() {
        let b = encode(&Pdu {
            status: 0,
            sequence: 9,
            body: Body::Other(0x0000_0103),
        });
        assert_eq!(decode(&b).unwrap().body, Body::Other(0x0103));
        assert_eq!(header(&b), Some((0x0103, 9)));
    }

    #[test]
    fn message_payload_stands_in_for_an_empty_short_message() {
        let sm = Sm {
            tlvs: vec![(tag::MESSAGE_PAYLOAD, b"long".to_vec())],
            ..Sm::default()
        };
        assert_eq!(sm.payload(), b"long");
    }

    proptest! {
        #[test]
        fn decoding_any_octets_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = frame_length(&data, 4096);
            let _ = decode(&data);
            let _ = header(&data);
        }

        #[test]
        fn any_header_with_a_body_of_garbage_never_panics(
            cmd in prop_oneof![Just(1u32), Just(2), Just(4), Just(5), Just(9), Just(0x8000_0004), Just(0x8000_0009), any::<u32>()],
            body in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let mut b = ((16 + body.len()) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(&cmd.to_be_bytes());
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&body);
            let _ = decode(&b);
        }

        #[test]
        fn submit_sm_round_trips(src in "[0-9]{1,20}", dst in "[0-9]{1,20}", dcs in any::<u8>(),
                                 msg in proptest::collection::vec(any::<u8>(), 0..254), seq in any::<u32>()) {
            let pdu = Pdu { status: 0, sequence: seq, body: Body::SubmitSm(Box::new(Sm {
                source: Address { ton: 1, npi: 1, addr: src },
                dest: Address { ton: 1, npi: 1, addr: dst },
                data_coding: dcs, short_message: msg, ..Sm::default() })) };
            prop_assert_eq!(round(&pdu), pdu);
        }
    }
}
