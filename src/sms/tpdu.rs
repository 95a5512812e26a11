//! Transfer-layer PDUs (TS 23.040 9.2): SMS-SUBMIT (decode and encode), SMS-DELIVER (encode and
//! decode), SMS-STATUS-REPORT (encode and decode), with their fields: data coding scheme,
//! validity period, service-centre time stamp, user data with its header.
//!
//! Pure and total: every decoder takes arbitrary bytes and returns a value or an [`SmsError`].
//! Compressed user data (TS 23.042) is refused with [`SmsError::Compressed`].
//!
//! Standards: 3GPP TS 23.040 9.2.2 (PDU layouts), 9.2.3 (fields); TS 23.038 4 (DCS).

use serde::{Deserialize, Serialize};

use super::address::{self, Address};
use super::udh::{self, Concat, InformationElement};
use super::{SmsError, gsm7, ucs2};

use crate::clock::{Civil, days_from_civil};

/// The character set of user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet.
    Gsm7,
    /// 8-bit data.
    EightBit,
    /// UCS-2 (UTF-16BE in practice).
    Ucs2,
}

/// A decoded data coding scheme (TS 23.038 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dcs {
    /// The octet as sent.
    pub raw: u8,
    /// The alphabet.
    pub alphabet: Alphabet,
    /// The message class (0 flash, 1 ME, 2 SIM, 3 TE), when given.
    pub class: Option<u8>,
    /// Whether the text is compressed (TS 23.042; not supported).
    pub compressed: bool,
}

impl Dcs {
    /// Interprets a DCS octet. Reserved codings count as the GSM 7-bit default alphabet, as
    /// TS 23.038 4 requires.
    pub fn parse(b: u8) -> Dcs {
        let general = |b: u8| {
            let alphabet = match (b >> 2) & 0x03 {
                1 => Alphabet::EightBit,
                2 => Alphabet::Ucs2,
                _ => Alphabet::Gsm7,
            };
            Dcs {
                raw: b,
                alphabet,
                class: (b & 0x10 != 0).then_some(b & 0x03),
                compressed: b & 0x20 != 0,
            }
        };
        match b >> 4 {
            // 00xx: general data coding; 01xx: the same, marked for automatic deletion.
            0x0..=0x7 => general(b),
            // 1100 and 1101: message waiting, discard / store, GSM 7-bit.
            0xC | 0xD => Dcs {
                raw: b,
                alphabet: Alphabet::Gsm7,
                class: None,
                compressed: false,
            },
            // 1110: message waiting, store, UCS-2.
            0xE => Dcs {
                raw: b,
                alphabet: Alphabet::Ucs2,
                class: None,
                compressed: false,
            },
            // 1111: data coding / message class.
            0xF => Dcs {
                raw: b,
                alphabet: if b & 0x04 != 0 {
                    Alphabet::EightBit
                } else {
                    Alphabet::Gsm7
                },
                class: Some(b & 0x03),
                compressed: false,
            },
            // 1000-1011: reserved.
            _ => Dcs {
                raw: b,
                alphabet: Alphabet::Gsm7,
                class: None,
                compressed: false,
            },
        }
    }

    /// The general-group DCS octet for an alphabet and an optional class.
    pub fn octet(alphabet: Alphabet, class: Option<u8>) -> u8 {
        let a = match alphabet {
            Alphabet::Gsm7 => 0x00,
            Alphabet::EightBit => 0x04,
            Alphabet::Ucs2 => 0x08,
        };
        match class {
            Some(c) => a | 0x10 | (c & 0x03),
            None => a,
        }
    }
}

/// A service-centre time stamp (TS 23.040 9.2.3.11): local time and its offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Year (1970-2069: two digits, 70-99 read as 19xx).
    pub year: u16,
    /// Month 1-12.
    pub month: u8,
    /// Day 1-31.
    pub day: u8,
    /// Hour 0-23.
    pub hour: u8,
    /// Minute 0-59.
    pub minute: u8,
    /// Second 0-59.
    pub second: u8,
    /// Offset from UTC in quarters of an hour (-79..=79).
    pub tz_quarters: i8,
    /// The sign bit as sent: kept so that "-00:00" (seen from real service centres)
    /// re-encodes to the same octet. Always true when `tz_quarters` is negative.
    pub tz_negative: bool,
}

fn bcd_pair(o: u8) -> Option<u8> {
    let (lo, hi) = (o & 0x0F, o >> 4);
    (lo <= 9 && hi <= 9).then_some(lo * 10 + hi)
}

fn swap_bcd(v: u8) -> u8 {
    ((v % 10) << 4) | (v / 10 % 10)
}

impl Timestamp {
    /// The time stamp for a UTC instant, written in the zone `tz_quarters` east of UTC.
    pub fn from_unix(secs: i64, tz_quarters: i8) -> Timestamp {
        let c = Civil::from_unix(secs + i64::from(tz_quarters) * 900);
        Timestamp {
            year: c.year.clamp(0, 9999) as u16,
            month: c.month,
            day: c.day,
            hour: c.hour,
            minute: c.minute,
            second: c.second,
            tz_quarters,
            tz_negative: tz_quarters < 0,
        }
    }

    /// The UTC instant, seconds since the Unix epoch.
    pub fn to_unix(&self) -> i64 {
        let days = days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.tz_quarters) * 900
    }

    /// Decodes the 7 octets.
    ///
    /// # Errors
    /// [`SmsError::Invalid`] for non-BCD digits or out-of-range fields.
    pub fn decode(b: &[u8; 7]) -> Result<Timestamp, SmsError> {
        let bad = SmsError::Invalid {
            field: "time stamp",
            reason: "not a valid date and time",
        };
        let f: Vec<u8> = b[..6]
            .iter()
            .map(|o| bcd_pair(*o))
            .collect::<Option<_>>()
            .ok_or(bad.clone())?;
        let tz_octet = b[6];
        let q = (tz_octet & 0x07) * 10 + (tz_octet >> 4);
        if tz_octet >> 4 > 9 || q > 79 {
            return Err(bad);
        }
        let tz = if tz_octet & 0x08 != 0 {
            -(q as i8)
        } else {
            q as i8
        };
        let year = if f[0] >= 70 {
            1900 + u16::from(f[0])
        } else {
            2000 + u16::from(f[0])
        };
        let t = Timestamp {
            year,
            month: f[1],
            day: f[2],
            hour: f[3],
            minute: f[4],
            second: f[5],
            tz_quarters: tz,
            tz_negative: tz_octet & 0x08 != 0,
        };
        if !(1..=12).contains(&t.month)
            || !(1..=31).contains(&t.day)
            || t.hour > 23
            || t.minute > 59
            || t.second > 59
        {
            return Err(bad);
        }
        Ok(t)
    }

    /// Encodes the 7 octets.
    pub fn encode(&self) -> [u8; 7] {
        let q = self.tz_quarters.unsigned_abs().min(79);
        let mut tz = swap_bcd(q);
        if self.tz_quarters < 0 || self.tz_negative {
            tz |= 0x08;
        }
        [
            swap_bcd((self.year % 100) as u8),
            swap_bcd(self.month),
            swap_bcd(self.day),
            swap_bcd(self.hour),
            swap_bcd(self.minute),
            swap_bcd(self.second),
            tz,
        ]
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = i32::from(self.tz_quarters) * 15;
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            if m < 0 || self.tz_negative { '-' } else { '+' },
            m.abs() / 60,
            m.abs() % 60
        )
    }
}

/// TP-VP (TS 23.040 9.2.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Validity {
    /// Relative format, one octet.
    Relative(u8),
    /// Enhanced format, seven octets.
    Enhanced([u8; 7]),
    /// Absolute format: an expiry time.
    Absolute(Timestamp),
}

/// Seconds of a relative validity octet (TS 23.040 9.2.3.12.1).
pub fn relative_validity_secs(vp: u8) -> u64 {
    let v = u64::from(vp);
    match vp {
        0..=143 => (v + 1) * 300,
        144..=167 => 12 * 3600 + (v - 143) * 1800,
        168..=196 => (v - 166) * 86_400,
        _ => (v - 192) * 7 * 86_400,
    }
}

impl Validity {
    /// How long the message is valid from `submitted` (Unix seconds), if the format says.
    pub fn duration_secs(&self, submitted: i64) -> Option<u64> {
        match self {
            Validity::Relative(v) => Some(relative_validity_secs(*v)),
            Validity::Absolute(t) => Some(u64::try_from(t.to_unix() - submitted).unwrap_or(0)),
            Validity::Enhanced(b) => match b[0] & 0x07 {
                1 => Some(relative_validity_secs(b[1])),
                2 => Some(u64::from(b[1])),
                3 => {
                    let h = u64::from(bcd_pair(b[1])?);
                    let m = u64::from(bcd_pair(b[2])?);
                    let s = u64::from(bcd_pair(b[3])?);
                    Some(h * 3600 + m * 60 + s)
                }
                _ => None,
            },
        }
    }
}

/// User data: the header elements (when TP-UDHI is set) and the body in its alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserData {
    /// Header elements; empty when there is no header.
    pub header: Vec<InformationElement>,
    /// The body.
    pub body: Body,
}

/// A user-data body, kept in its raw units so that parts can be joined before decoding (an
/// escape or a surrogate pair split by a careless sender is then rejoined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// GSM 7-bit septet values, one per byte.
    Gsm7(Vec<u8>),
    /// UCS-2 / UTF-16BE octets.
    Ucs2(Vec<u8>),
    /// 8-bit data.
    Data(Vec<u8>),
}

impl Body {
    /// The body as text (8-bit data is read as Latin-1).
    pub fn text(&self) -> String {
        match self {
            Body::Gsm7(s) => gsm7::decode(s),
            Body::Ucs2(o) => ucs2::decode(o),
            Body::Data(d) => d.iter().map(|b| char::from(*b)).collect(),
        }
    }

    /// The alphabet.
    pub fn alphabet(&self) -> Alphabet {
        match self {
            Body::Gsm7(_) => Alphabet::Gsm7,
            Body::Ucs2(_) => Alphabet::Ucs2,
            Body::Data(_) => Alphabet::EightBit,
        }
    }

    /// Length in its units (septets or octets).
    pub fn len(&self) -> usize {
        match self {
            Body::Gsm7(v) | Body::Ucs2(v) | Body::Data(v) => v.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UserData {
    /// Plain text without a header: GSM 7-bit when every character fits, else UCS-2.
    pub fn text(text: &str) -> UserData {
        UserData {
            header: Vec::new(),
            body: match gsm7::encode(text) {
                Some(s) => Body::Gsm7(s),
                None => Body::Ucs2(ucs2::encode(text)),
            },
        }
    }

    /// The concatenation facts, if the header has a valid concatenation element.
    pub fn concat(&self) -> Option<Concat> {
        udh::concat(&self.header)
    }

    /// Encodes to (TP-UDL, TP-UD).
    ///
    /// # Errors
    /// [`SmsError::TooLong`] beyond 160 septets or 140 octets.
    pub fn encode(&self) -> Result<(u8, Vec<u8>), SmsError> {
        let header = if self.header.is_empty() {
            Vec::new()
        } else {
            udh::build(&self.header)
        };
        match &self.body {
            Body::Gsm7(septets) => {
                let header_septets = (header.len() * 8).div_ceil(7);
                let udl = header_septets + septets.len();
                if udl > 160 {
                    return Err(SmsError::TooLong);
                }
                // The header takes whole septets (header_septets * 7 >= its bits), so the
                // packed buffer always has room for it in front; the fill bits stay zero.
                let mut ud = gsm7::pack(septets, header_septets * 7);
                ud[..header.len()].copy_from_slice(&header);
                Ok((udl as u8, ud))
            }
            Body::Ucs2(o) | Body::Data(o) => {
                let udl = header.len() + o.len();
                if udl > 140 {
                    return Err(SmsError::TooLong);
                }
                let mut ud = header;
                ud.extend_from_slice(o);
                Ok((udl as u8, ud))
            }
        }
    }

    /// Decodes TP-UD of `udl` units in `alphabet`, with a header when `udhi`.
    ///
    /// # Errors
    /// [`SmsError::Truncated`] / [`SmsError::Invalid`].
    pub fn decode(
        alphabet: Alphabet,
        udhi: bool,
        udl: u8,
        ud: &[u8],
    ) -> Result<UserData, SmsError> {
        let udl = usize::from(udl);
        let header_octets = if udhi {
            1 + usize::from(*ud.first().ok_or(SmsError::Truncated("user data header"))?)
        } else {
            0
        };
        let header = if udhi {
            udh::parse(
                ud.get(1..header_octets)
                    .ok_or(SmsError::Truncated("user data header"))?,
            )?
        } else {
            Vec::new()
        };
        let body = match alphabet {
            Alphabet::Gsm7 => {
                if udl > 160 {
                    return Err(SmsError::Invalid {
                        field: "TP-UDL",
                        reason: "more than 160 septets",
                    });
                }
                let needed = (udl * 7).div_ceil(8);
                if ud.len() < needed {
                    return Err(SmsError::Truncated("user data"));
                }
                let header_septets = (header_octets * 8).div_ceil(7);
                let count = udl.checked_sub(header_septets).ok_or(SmsError::Invalid {
                    field: "TP-UDL",
                    reason: "shorter than the user data header",
                })?;
                Body::Gsm7(gsm7::unpack(ud, header_septets * 7, count))
            }
            Alphabet::Ucs2 | Alphabet::EightBit => {
                if udl > 140 {
                    return Err(SmsError::Invalid {
                        field: "TP-UDL",
                        reason: "more than 140 octets",
                    });
                }
                if udl < header_octets {
                    return Err(SmsError::Invalid {
                        field: "TP-UDL",
                        reason: "shorter than the user data header",
                    });
                }
                let data = ud
                    .get(header_octets..udl)
                    .ok_or(SmsError::Truncated("user data"))?;
                if alphabet == Alphabet::Ucs2 {
                    Body::Ucs2(data.to_vec())
                } else {
                    Body::Data(data.to_vec())
                }
            }
        };
        Ok(UserData { header, body })
    }
}

/// An SMS-SUBMIT (mobile to service centre).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// TP-RD: reject duplicates.
    pub reject_duplicates: bool,
    /// TP-RP: reply path requested.
    pub reply_path: bool,
    /// TP-SRR: status report requested.
    pub status_report_request: bool,
    /// TP-MR.
    pub message_ref: u8,
    /// TP-DA.
    pub destination: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-VP, when present.
    pub validity: Option<Validity>,
    /// TP-UD.
    pub user_data: UserData,
}

fn get(b: &[u8], i: usize, what: &'static str) -> Result<u8, SmsError> {
    b.get(i).copied().ok_or(SmsError::Truncated(what))
}

fn get7(b: &[u8], i: usize, what: &'static str) -> Result<[u8; 7], SmsError> {
    let s = b.get(i..i + 7).ok_or(SmsError::Truncated(what))?;
    let mut a = [0u8; 7];
    a.copy_from_slice(s);
    Ok(a)
}

fn check_alphabet(dcs: &Dcs) -> Result<(), SmsError> {
    if dcs.compressed {
        Err(SmsError::Compressed)
    } else {
        Ok(())
    }
}

/// The message type indicator of a TPDU's first octet, read in the direction mobile -> network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoType {
    /// SMS-DELIVER-REPORT (MTI 00).
    DeliverReport,
    /// SMS-SUBMIT (MTI 01).
    Submit,
    /// SMS-COMMAND (MTI 10).
    Command,
    /// Reserved (MTI 11).
    Reserved,
}

/// The type of a mobile-originated TPDU.
///
/// # Errors
/// [`SmsError::Truncated`] for an empty TPDU.
pub fn mo_type(tpdu: &[u8]) -> Result<MoType, SmsError> {
    Ok(match get(tpdu, 0, "TPDU")? & 0x03 {
        0 => MoType::DeliverReport,
        1 => MoType::Submit,
        2 => MoType::Command,
        _ => MoType::Reserved,
    })
}

impl Submit {
    /// Decodes an SMS-SUBMIT.
    ///
    /// # Errors
    /// [`SmsError`]: truncated, not a SUBMIT, compressed, or bad fields.
    pub fn decode(b: &[u8]) -> Result<Submit, SmsError> {
        let fo = get(b, 0, "SMS-SUBMIT")?;
        if fo & 0x03 != 0x01 {
            return Err(SmsError::Invalid {
                field: "TP-MTI",
                reason: "not an SMS-SUBMIT",
            });
        }
        let message_ref = get(b, 1, "TP-MR")?;
        let (destination, used) = address::decode_tp(b.get(2..).unwrap_or(&[]))?;
        let mut i = 2 + used;
        let pid = get(b, i, "TP-PID")?;
        let dcs = Dcs::parse(get(b, i + 1, "TP-DCS")?);
        i += 2;
        let validity = match (fo >> 3) & 0x03 {
            0 => None,
            2 => {
                i += 1;
                Some(Validity::Relative(get(b, i - 1, "TP-VP")?))
            }
            1 => {
                i += 7;
                Some(Validity::Enhanced(get7(b, i - 7, "TP-VP")?))
            }
            _ => {
                i += 7;
                Some(Validity::Absolute(Timestamp::decode(&get7(
                    b,
                    i - 7,
                    "TP-VP",
                )?)?))
            }
        };
        let udl = get(b, i, "TP-UDL")?;
        check_alphabet(&dcs)?;
        let user_data = UserData::decode(dcs.alphabet, fo & 0x40 != 0, udl, &b[i + 1..])?;
        Ok(Submit {
            reject_duplicates: fo & 0x04 != 0,
            reply_path: fo & 0x80 != 0,
            status_report_request: fo & 0x20 != 0,
            message_ref,
            destination,
            pid,
            dcs,
            validity,
            user_data,
        })
    }

    /// Encodes an SMS-SUBMIT (used by tests, the fuzzers and the cross-check).
    ///
    /// # Errors
    /// [`SmsError`] when a field does not fit.
    pub fn encode(&self) -> Result<Vec<u8>, SmsError> {
        let vpf = match self.validity {
            None => 0,
            Some(Validity::Relative(_)) => 2,
            Some(Validity::Enhanced(_)) => 1,
            Some(Validity::Absolute(_)) => 3,
        };
        let mut fo = 0x01 | (vpf << 3);
        if self.reject_duplicates {
            fo |= 0x04;
        }
        if self.status_report_request {
            fo |= 0x20;
        }
        if !self.user_data.header.is_empty() {
            fo |= 0x40;
        }
        if self.reply_path {
            fo |= 0x80;
        }
        let mut out = vec![fo, self.message_ref];
        out.extend(address::encode_tp(&self.destination)?);
        out.push(self.pid);
        out.push(self.dcs.raw);
        match &self.validity {
            None => {}
            Some(Validity::Relative(v)) => out.push(*v),
            Some(Validity::Enhanced(e)) => out.extend_from_slice(e),
            Some(Validity::Absolute(t)) => out.extend_from_slice(&t.encode()),
        }
        let (udl, ud) = self.user_data.encode()?;
        out.push(udl);
        out.extend(ud);
        Ok(out)
    }
}

/// An SMS-DELIVER (service centre to mobile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    /// More messages are waiting (TP-MMS is 0 when true: the bit is inverted on the wire).
    pub more_messages: bool,
    /// TP-RP.
    pub reply_path: bool,
    /// TP-SRI: a status report will be returned to the originator.
    pub status_report_indication: bool,
    /// TP-OA.
    pub originator: Address,
    /// TP-PID.
    pub pid: u8,
    /// TP-DCS.
    pub dcs: Dcs,
    /// TP-SCTS.
    pub scts: Timestamp,
    /// TP-UD.
    pub user_data: UserData,
}

impl Deliver {
    /// A DELIVER of `user_data` from `originator`, DCS chosen from the body's alphabet.
    pub fn new(originator: Address, scts: Timestamp, user_data: UserData) -> Deliver {
        Deliver {
            more_messages: false,
            reply_path: false,
            status_report_indication: false,
            originator,
            pid: 0,
            dcs: Dcs::parse(Dcs::octet(user_data.body.alphabet(), None)),
            scts,
            user_data,
        }
    }

    /// Encodes an SMS-DELIVER.
    ///
    /// # Errors
    /// [`SmsError`] when a field does not fit.
    pub fn encode(&self) -> Result<Vec<u8>, SmsError> {
        let mut fo = 0x00;
        if !self.more_messages {
            fo |= 0x04;
        }
        if self.status_report_indication {
            fo |= 0x20;
        }
        if !self.user_data.header.is_empty() {
            fo |= 0x40;
        }
        if self.reply_path {
            fo |= 0x80;
        }
        let mut out = vec![fo];
        out.extend(address::encode_tp(&self.originator)?);
        out.push(self.pid);
        out.push(self.dcs.raw);
        out.extend_from_slice(&self.scts.encode());
        let (udl, ud) = self.user_data.encode()?;
        out.push(udl);
        out.extend(ud);
        Ok(out)
    }

    /// Decodes an SMS-DELIVER.
    ///
    /// # Errors
    /// [`SmsError`]: truncated, not a DELIVER, compressed, or bad fields.
    pub fn decode(b: &[u8]) -> Result<Deliver, SmsError> {
        let fo = get(b, 0, "SMS-DELIVER")?;
        if fo & 0x03 != 0x00 {
            return Err(SmsError::Invalid {
                field: "TP-MTI",
                reason: "not an SMS-DELIVER",
            });
        }
        let (originator, used) = address::decode_tp(b.get(1..).unwrap_or(&[]))?;
        let i = 1 + used;
        let pid = get(b, i, "TP-PID")?;
        let dcs = Dcs::parse(get(b, i + 1, "TP-DCS")?);
        let scts = Timestamp::decode(&get7(b, i + 2, "TP-SCTS")?)?;
        let udl = get(b, i + 9, "TP-UDL")?;
        check_alphabet(&dcs)?;
        let user_data = UserData::decode(dcs.alphabet, fo & 0x40 != 0, udl, &b[i + 10..])?;
        Ok(Deliver {
            more_messages: fo & 0x04 == 0,
            reply_path: fo & 0x80 != 0,
            status_report_indication: fo & 0x20 != 0,
            originator,
            pid,
            dcs,
            scts,
            user_data,
        })
    }
}

/// TP-ST values used by smsmta (TS 23.040 9.2.3.15).
pub mod status {
    /// Short message received by the SME.
    pub const DELIVERED: u8 = 0x00;
    /// Permanent error: remote procedure error.
    pub const REMOTE_PROCEDURE_ERROR: u8 = 0x40;
    /// Permanent error: SME not obtainable (unknown subscriber).
    pub const NOT_OBTAINABLE: u8 = 0x43;
    /// Permanent error: validity period expired.
    pub const VALIDITY_EXPIRED: u8 = 0x46;
    /// Permanent error: deleted by the service-centre administration.
    pub const DELETED_BY_ADMIN: u8 = 0x48;
}

/// An SMS-STATUS-REPORT (service centre to mobile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// More messages are waiting (TP-MMS inverted).
    pub more_messages: bool,
    /// TP-SRQ: the report is about an SMS-COMMAND (false: about an SMS-SUBMIT).
    pub about_command: bool,
    /// TP-MR of the SUBMIT this reports on.
    pub message_ref: u8,
    /// TP-RA: the recipient of that SUBMIT.
    pub recipient: Address,
    /// TP-SCTS: when the service centre received the SUBMIT.
    pub scts: Timestamp,
    /// TP-DT: when it was delivered or finally failed.
    pub discharge: Timestamp,
    /// TP-ST.
    pub status: u8,
}

impl StatusReport {
    /// Encodes an SMS-STATUS-REPORT (without the optional parameters).
    ///
    /// # Errors
    /// [`SmsError`] when the address does not fit.
    pub fn encode(&self) -> Result<Vec<u8>, SmsError> {
        let mut fo = 0x02;
        if !self.more_messages {
            fo |= 0x04;
        }
        if self.about_command {
            fo |= 0x20;
        }
        let mut out = vec![fo, self.message_ref];
        out.extend(address::encode_tp(&self.recipient)?);
        out.extend_from_slice(&self.scts.encode());
        out.extend_from_slice(&self.discharge.encode());
        out.push(self.status);
        Ok(out)
    }

    /// Decodes an SMS-STATUS-REPORT (optional parameters after TP-ST are ignored).
    ///
    /// # Errors
    /// [`SmsError`]: truncated, not a status report, or bad fields.
    pub fn decode(b: &[u8]) -> Result<StatusReport, SmsError> {
        let fo = get(b, 0, "SMS-STATUS-REPORT")?;
        if fo & 0x03 != 0x02 {
            return Err(SmsError::Invalid {
                field: "TP-MTI",
                reason: "not an SMS-STATUS-REPORT",
            });
        }
        let message_ref = get(b, 1, "TP-MR")?;
        let (recipient, used) = address::decode_tp(b.get(2..).unwrap_or(&[]))?;
        let i = 2 + used;
        Ok(StatusReport {
            more_messages: fo & 0x04 == 0,
            about_command: fo & 0x20 != 0,
            message_ref,
            recipient,
            scts: Timestamp::decode(&get7(b, i, "TP-SCTS")?)?,
            discharge: Timestamp::decode(&get7(b, i + 7, "TP-DT")?)?,
            status: get(b, i + 14, "TP-ST")?,
        })
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
    fn dcs_groups() {
        assert_eq!(Dcs::parse(0x00).alphabet, Alphabet::Gsm7);
        assert_eq!(Dcs::parse(0x04).alphabet, Alphabet::EightBit);
        assert_eq!(Dcs::parse(0x08).alphabet, Alphabet::Ucs2);
        assert_eq!(Dcs::parse(0x10).class, Some(0));
        assert_eq!(Dcs::parse(0x13).class, Some(3));
        assert!(Dcs::parse(0x20).compressed);
        assert_eq!(Dcs::parse(0xF1).class, Some(1));
        assert_eq!(Dcs::parse(0xF4).alphabet, Alphabet::EightBit);
        assert_eq!(Dcs::parse(0xE0).alphabet, Alphabet::Ucs2);
        assert_eq!(Dcs::parse(0xC8).alphabet, Alphabet::Gsm7);
        assert_eq!(Dcs::parse(0x0C).alphabet, Alphabet::Gsm7);
        assert_eq!(Dcs::parse(0x48).alphabet, Alphabet::Ucs2);
    }

    #[test]
    fn relative_validity_ranges() {
        assert_eq!(relative_validity_secs(0), 300);
        assert_eq!(relative_validity_secs(143), 12 * 3600);
        assert_eq!(relative_validity_secs(167), 24 * 3600);
        assert_eq!(relative_validity_secs(170), 4 * 86_400);
        assert_eq!(relative_validity_secs(0xFF), 63 * 7 * 86_400);
    }

    #[test]
    fn time_stamp_example_from_the_reference() {
        // 2024-03-05 14:07:09 +01:00 -> 42 30 50 41 70 90 40
        let t = Timestamp::decode(&[0x42, 0x30, 0x50, 0x41, 0x70, 0x90, 0x40]).unwrap();
        assert_eq!(t.to_string(), "2024-03-05 14:07:09 +01:00");
        assert_eq!(t.encode(), [0x42, 0x30, 0x50, 0x41, 0x70, 0x90, 0x40]);
        let neg = Timestamp::decode(&[0x20, 0x80, 0x62, 0x91, 0x73, 0x14, 0x08]).unwrap();
        assert_eq!(neg.tz_quarters, 0);
        assert_eq!(neg.to_string(), "2002-08-26 19:37:41 -00:00");
        assert_eq!(neg.encode()[6], 0x08);
        let west = Timestamp::from_unix(1_764_088_254, -20);
        assert_eq!(west.to_string(), "2025-11-25 11:30:54 -05:00");
        assert_eq!(
            Timestamp::decode(&west.encode()).unwrap().to_unix(),
            1_764_088_254
        );
        // Two-digit years: 70-99 are 19xx, 00-69 are 20xx.
        assert_eq!(Timestamp::from_unix(0, 0).encode()[0], 0x07);
        assert_eq!(
            Timestamp::decode(&Timestamp::from_unix(0, 0).encode())
                .unwrap()
                .year,
            1970
        );
        assert!(Timestamp::decode(&[0x42, 0x31, 0x50, 0x41, 0x70, 0x90, 0x40]).is_err());
    }

    #[test]
    fn compressed_text_is_refused_clearly() {
        let b = hex("01000B914316565811F9002004E8373B0C");
        assert_eq!(Submit::decode(&b), Err(SmsError::Compressed));
        assert!(SmsError::Compressed.to_string().contains("compressed"));
    }

    #[test]
    fn udl_longer_than_data_is_truncation() {
        let b = hex("01000B914316565811F9000009E8373B0C");
        assert_eq!(Submit::decode(&b), Err(SmsError::Truncated("user data")));
    }

    fn arb_ts() -> impl Strategy<Value = Timestamp> {
        (86_400i64..3_155_000_000, -79i8..=79).prop_map(|(s, tz)| Timestamp::from_unix(s, tz))
    }

    proptest! {
        #[test]
        fn timestamp_round_trip(t in arb_ts()) {
            prop_assert_eq!(Timestamp::decode(&t.encode()).unwrap(), t);
        }

        #[test]
        fn deliver_round_trip(text in "\\PC{0,60}", t in arb_ts(), more in any::<bool>(), sri in any::<bool>()) {
            let mut d = Deliver::new(Address::parse("+15551234567"), t, UserData::text(&text));
            d.more_messages = more;
            d.status_report_indication = sri;
            if let Ok(bytes) = d.encode() {
                let back = Deliver::decode(&bytes).unwrap();
                prop_assert_eq!(back.user_data.body.text(), text);
                prop_assert_eq!(back, d);
            }
        }

        #[test]
        fn submit_round_trip(text in "\\PC{0,60}", mr in any::<u8>(), vp in proptest::option::of(any::<u8>()), srr in any::<bool>()) {
            let ud = UserData::text(&text);
            let s = Submit {
                reject_duplicates: false, reply_path: false, status_report_request: srr,
                message_ref: mr, destination: Address::parse("555"), pid: 0,
                dcs: Dcs::parse(Dcs::octet(ud.body.alphabet(), None)),
                validity: vp.map(Validity::Relative), user_data: ud,
            };
            if let Ok(bytes) = s.encode() {
                prop_assert_eq!(Submit::decode(&bytes).unwrap(), s);
            }
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Submit::decode(&b);
            let _ = Deliver::decode(&b);
            let _ = StatusReport::decode(&b);
            let _ = mo_type(&b);
        }
    }
}
