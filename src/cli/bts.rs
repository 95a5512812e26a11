//! `smsmta bts`: a BTS with handsets on loopback, to try smsmta without a radio.
//!
//! `smsmta bts` listens where the configuration's `[delivery] bts` points (OpenBTS's
//! 127.0.0.1:5062) and plays the handsets behind it: it answers each MESSAGE 200 (480 for the
//! handsets named with `--absent`, as a BTS answers for a handset that does not page), and
//! prints each text it receives decoded, one line each (`IMSI... <- 15551234567: text`), long
//! texts joined from their parts. `smsmta bts send` sends a text as a handset, the way OpenBTS
//! does: a MESSAGE to `sip:smsc@...` from `sip:IMSI...@...` whose body is RP-DATA carrying
//! an SMS-SUBMIT in hex (`application/vnd.3gpp.sms`); it prints smsmta's answer.
//!
//! **Trust.** It is a test tool, but it reads datagrams from anyone who reaches its port:
//! what does not parse as SIP, or whose body is not an SMS, is answered or reported, never a
//! panic; it keeps at most [`REMEMBERED`] answered transactions and [`PARTS_HELD`] long texts
//! being joined. Standards: RFC 3428 (pager-mode MESSAGE), RFC 3261 (transactions, Timer A/B
//! for `send`), TS 24.011 (RP), TS 23.040 (TPDUs), TS 23.038 (alphabets).

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::*;
use crate::sip::message::{self, Message, Parsed, Request, Response};
use crate::sms::rp::RpMessage;
use crate::sms::{Address, Deliver, Partial, RpData, StatusReport, Submit, body, segment};

/// Answered transactions remembered, to answer a retransmission the same way.
pub const REMEMBERED: usize = 1024;
/// Long texts being joined at once (the oldest is dropped beyond).
pub const PARTS_HELD: usize = 256;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Args)]
pub(super) struct BtsArgs {
    /// Where to listen (default: the configuration's `[delivery] bts`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Handsets (IMSI, with or without the IMSI prefix) that answer 480, as absent ones do.
    #[arg(long, value_name = "IMSI")]
    absent: Vec<String>,
    /// Exit after this many texts (whole, long ones joined) are printed.
    #[arg(long)]
    count: Option<usize>,
    #[command(subcommand)]
    op: Option<BtsOp>,
}

#[derive(Subcommand)]
enum BtsOp {
    /// Send a text as a handset, as OpenBTS does (RP-DATA / SMS-SUBMIT in a MESSAGE).
    Send {
        /// The sending handset's IMSI.
        #[arg(long)]
        imsi: String,
        /// The number (or short code) it texts.
        #[arg(long)]
        to: String,
        /// Where smsmta listens for SIP (default: the configuration's `[sip] listen`).
        #[arg(long)]
        smsc: Option<SocketAddr>,
        /// Ask for a status report (TP-SRR).
        #[arg(long)]
        report: bool,
        /// The text.
        #[arg(required = true)]
        text: Vec<String>,
    },
}

pub(super) fn bts(config: &Config, args: BtsArgs) -> ExitCode {
    match args.op {
        Some(BtsOp::Send {
            imsi,
            to,
            smsc,
            report,
            text,
        }) => {
            let smsc = smsc.unwrap_or(config.sip.listen);
            send(&imsi, &to, &text.join(" "), report, smsc)
        }
        None => {
            let listen = args.listen.unwrap_or(config.delivery.bts);
            let absent: Vec<String> = args.absent.iter().map(|i| imsi_name(i)).collect();
            serve(listen, &absent, args.count)
        }
    }
}

/// `IMSI` followed by the digits, whichever way it was written.
fn imsi_name(s: &str) -> String {
    let digits = s.strip_prefix("IMSI").unwrap_or(s);
    format!("IMSI{digits}")
}

fn serve(listen: SocketAddr, absent: &[String], count: Option<usize>) -> ExitCode {
    let sock = match UdpSocket::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smsmta bts: cannot listen on {listen}: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let bound = sock.local_addr().map_or(listen, |a| a);
    println!("bts listening on {bound} (udp); absent handsets: {absent:?}");
    let mut handsets = Handsets::new(absent);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut printed = 0usize;
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("smsmta bts: {e}");
                return ExitCode::from(EX_TEMPFAIL);
            }
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        let (answer, lines) = handsets.take(datagram);
        if let Some(a) = answer
            && let Err(e) = sock.send_to(&a, from)
        {
            eprintln!("smsmta bts: cannot answer {from}: {e}");
        }
        for line in lines {
            println!("{line}");
            if line.contains(" <- ") {
                printed += 1;
            }
        }
        if count.is_some_and(|c| printed >= c) {
            return ExitCode::SUCCESS;
        }
    }
}

/// The handsets behind the simulated BTS: what they answered, the long texts being joined.
/// Pure: a datagram in, the answer and the lines to print out.
pub struct Handsets {
    absent: Vec<String>,
    answered: VecDeque<(String, u16)>,
    parts: VecDeque<((String, String, u16), Partial)>,
}

impl Handsets {
    /// Handsets that answer 200, but those in `absent` (`IMSI...`), which answer 480.
    pub fn new(absent: &[String]) -> Handsets {
        Handsets {
            absent: absent.to_vec(),
            answered: VecDeque::new(),
            parts: VecDeque::new(),
        }
    }

    /// Handles one datagram: the answer to send back (none for what is not a request) and
    /// the lines to print (`IMSI <- sender: text` for each whole text).
    pub fn take(&mut self, datagram: &[u8]) -> (Option<Vec<u8>>, Vec<String>) {
        let req = match message::parse(datagram, true, MAX_DATAGRAM) {
            Ok(Parsed::Complete(Message::Request(r), _)) => r,
            Ok(_) => return (None, Vec::new()),
            Err(e) => return (None, vec![format!("(not SIP: {e})")]),
        };
        let key = format!(
            "{} {}",
            req.headers.get("Via").unwrap_or_default(),
            req.headers.get("CSeq").unwrap_or_default()
        );
        if let Some((_, status)) = self.answered.iter().find(|(k, _)| *k == key) {
            return (Some(answer(&req, *status)), Vec::new());
        }
        let handset = handset_of(&req.uri);
        let status = match req.method.as_str() {
            "MESSAGE" if self.absent.iter().any(|a| Some(a) == handset.as_ref()) => 480,
            "MESSAGE" | "OPTIONS" => 200,
            _ => 405,
        };
        let mut lines = Vec::new();
        let who = handset.unwrap_or_else(|| printable(&req.uri));
        if req.method == "MESSAGE" {
            if status == 480 {
                lines.push(format!("{who}: absent, answered 480"));
            } else {
                lines.extend(self.read(&req, &who));
            }
        }
        if self.answered.len() >= REMEMBERED {
            self.answered.pop_front();
        }
        self.answered.push_back((key, status));
        (Some(answer(&req, status)), lines)
    }

    /// The text (or report) a MESSAGE carries, once whole.
    fn read(&mut self, req: &Request, who: &str) -> Vec<String> {
        let ctype = req.headers.get("Content-Type").unwrap_or_default();
        if !ctype.starts_with("application/vnd.3gpp.sms") {
            let text = String::from_utf8_lossy(&req.body);
            let from = req.from().map_or_else(String::new, |f| f.uri.clone());
            return vec![format!(
                "{who} <- {}: {}",
                printable(&from),
                printable(&text)
            )];
        }
        let cte = req.headers.get("Content-Transfer-Encoding");
        let rp = match body::decode_body(&req.body, cte) {
            Ok((rp, _)) => rp,
            Err(e) => return vec![format!("{who}: undecodable body ({e})")],
        };
        let data = match RpMessage::decode(&rp) {
            Ok(RpMessage::Data(d)) => d,
            Ok(other) => return vec![format!("{who}: {other:?}")],
            Err(e) => return vec![format!("{who}: bad RP ({e})")],
        };
        if data.tpdu.first().is_some_and(|b| b & 0x03 == 0x02) {
            return match StatusReport::decode(&data.tpdu) {
                Ok(r) => vec![format!(
                    "{who} <- status report for TP-MR {} to {}: TP-ST {:#04x} ({})",
                    r.message_ref,
                    r.recipient.value,
                    r.status,
                    if r.status == 0 {
                        "delivered"
                    } else {
                        "not delivered"
                    }
                )],
                Err(e) => vec![format!("{who}: bad status report ({e})")],
            };
        }
        let d = match Deliver::decode(&data.tpdu) {
            Ok(d) => d,
            Err(e) => return vec![format!("{who}: bad SMS-DELIVER ({e})")],
        };
        let from = printable(&d.originator.value);
        let Some(c) = d.user_data.concat() else {
            return vec![format!(
                "{who} <- {from}: {}",
                printable(&d.user_data.body.text())
            )];
        };
        let key = (who.to_string(), from.clone(), c.reference);
        let at = match self.parts.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                if self.parts.len() >= PARTS_HELD {
                    self.parts.pop_front();
                }
                self.parts.push_back((key, Partial::new(&c)));
                self.parts.len() - 1
            }
        };
        let Some((_, partial)) = self.parts.get_mut(at) else {
            return Vec::new();
        };
        partial.add(&c, d.user_data.body.clone());
        let mut lines = vec![format!("{who}: part {}/{} from {from}", c.seq, c.total)];
        if partial.is_complete() {
            lines.push(format!(
                "{who} <- {from}: {}",
                printable(&partial.text("[...]"))
            ));
            self.parts.remove(at);
        }
        lines
    }
}

/// `s` with control characters (a newline, an escape sequence) written as escapes: a text
/// is one line of output, and a peer cannot drive the operator's terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The handset a Request-URI names (`sip:IMSI001010000000001@host` -> `IMSI0010...`).
fn handset_of(uri: &str) -> Option<String> {
    let u = message::Uri::parse(uri)?;
    u.user.starts_with("IMSI").then_some(u.user)
}

fn answer(req: &Request, status: u16) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        480 => "Temporarily Unavailable",
        _ => "Method Not Allowed",
    };
    Response::to(req, status, reason, "bts").to_bytes()
}

/// The RP-DATA bodies (hex) of a text from a handset: one SMS-SUBMIT per segment, with
/// concatenation headers when it takes more than one. `mr` numbers the first one.
pub fn submit_bodies(to: &str, text: &str, report: bool, mr: u8) -> Result<Vec<String>, String> {
    let segs = segment::segment(text, &segment::SegmentOptions::default());
    let dcs = crate::sms::tpdu::Dcs::octet(segs.alphabet, None);
    segment::user_data(&segs, u16::from(mr), false)
        .into_iter()
        .zip(0u8..)
        .map(|(ud, i)| {
            let submit = Submit {
                reject_duplicates: false,
                reply_path: false,
                status_report_request: report,
                message_ref: mr.wrapping_add(i),
                destination: Address::parse(to),
                pid: 0,
                dcs: crate::sms::tpdu::Dcs::parse(dcs),
                validity: None,
                user_data: ud,
            };
            let tpdu = submit.encode().map_err(|e| e.to_string())?;
            let rp = RpMessage::Data(RpData {
                to_network: true,
                message_ref: mr.wrapping_add(i),
                originator: None,
                destination: Some(Address::parse("101")),
                tpdu,
            })
            .encode()
            .map_err(|e| e.to_string())?;
            Ok(body::hex_encode(&rp))
        })
        .collect()
}

/// The MESSAGE OpenBTS sends for a handset's text: to `sip:smsc@SMSC`, from the IMSI at the
/// BTS's address `local`, the RP-DATA in hex.
pub fn mo_request(imsi: &str, smsc: SocketAddr, local: SocketAddr, id: u64, hex: &str) -> String {
    format!(
        "MESSAGE sip:smsc@{smsc} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{id:016x}\r\n\
         Max-Forwards: 70\r\n\
         From: {imsi} <sip:{imsi}@{ip}>;tag={id:x}\r\n\
         To: smsc <sip:smsc@{smsc}>\r\n\
         Call-ID: {id:016x}@{ip}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: application/vnd.3gpp.sms\r\n\
         User-Agent: smsmta bts\r\n\
         Content-Length: {}\r\n\r\n{hex}",
        hex.len(),
        ip = local.ip(),
    )
}

fn send(imsi: &str, to: &str, text: &str, report: bool, smsc: SocketAddr) -> ExitCode {
    let imsi = imsi_name(imsi);
    if crate::identity::Imsi::parse(&imsi).is_err() {
        eprintln!("smsmta bts send: {imsi:?} is not an IMSI (15 digits)");
        return ExitCode::from(EX_USAGE);
    }
    let mr = (crate::sip::client::random_u64() & 0xFF) as u8;
    let bodies = match submit_bodies(to, text, report, mr) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("smsmta bts send: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    let bind: SocketAddr = if smsc.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let sock = match UdpSocket::bind(bind).and_then(|s| s.local_addr().map(|a| (s, a))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("smsmta bts send: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let total = bodies.len();
    for (i, hex) in bodies.iter().enumerate() {
        let id = crate::sip::client::random_u64();
        let req = mo_request(&imsi, smsc, sock.1, id, hex);
        match transact(&sock.0, smsc, req.as_bytes()) {
            Ok(status) if (200..300).contains(&status.0) => {
                println!(
                    "{imsi} -> {to} (part {}/{total}): {} {}",
                    i + 1,
                    status.0,
                    status.1
                );
            }
            Ok(status) => {
                eprintln!("smsmta bts send: {} {}", status.0, status.1);
                return ExitCode::from(EX_DATAERR);
            }
            Err(e) => {
                eprintln!("smsmta bts send: {e}");
                return ExitCode::from(EX_TEMPFAIL);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Sends `req` and waits for its final answer, retransmitting as a UAC does over UDP
/// (Timer A from 500 ms, doubling; Timer B 32 s).
fn transact(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Result<(u16, String), String> {
    let start = Instant::now();
    let mut interval = Duration::from_millis(500);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    sock.send_to(req, to).map_err(|e| e.to_string())?;
    let mut next = start + interval;
    while start.elapsed() < Duration::from_secs(32) {
        let wait = next.saturating_duration_since(Instant::now());
        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Some(d) = buf.get(..n) else { continue };
                if let Ok(Parsed::Complete(Message::Response(r), _)) =
                    message::parse(d, true, MAX_DATAGRAM)
                    && r.status >= 200
                {
                    return Ok((r.status, r.reason));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                sock.send_to(req, to).map_err(|e| e.to_string())?;
                interval = (interval * 2).min(Duration::from_secs(4));
                next = Instant::now() + interval;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("no answer from {to} within 32 s (Timer B)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mt(uri: &str, hex: &str, branch: &str) -> Vec<u8> {
        format!(
            "MESSAGE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5063;branch=z9hG4bK{branch}\r\n\
             From: <sip:15551234567@sms.test>;tag=1\r\nTo: <{uri}>\r\nCall-ID: {branch}\r\n\
             CSeq: 1 MESSAGE\r\nContent-Type: application/vnd.3gpp.sms\r\n\
             Content-Length: {}\r\n\r\n{hex}",
            hex.len()
        )
        .into_bytes()
    }

    fn deliver_hex(text: &str) -> Vec<String> {
        let tpdus = segment::deliver_tpdus(
            text,
            &Address::parse("15551234567"),
            crate::sms::tpdu::Timestamp::from_unix(0, 0),
            7,
            &Default::default(),
        )
        .unwrap();
        tpdus
            .into_iter()
            .map(|t| {
                body::hex_encode(&crate::sms::encode_mt(3, &Address::parse("101"), t).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_text_is_printed_decoded_and_answered_200_and_a_retransmission_the_same() {
        let mut h = Handsets::new(&[]);
        let hex = &deliver_hex("Hello from e-mail")[0];
        let dg = mt("sip:IMSI001010000000001@127.0.0.1:5062", hex, "a");
        let (ans, lines) = h.take(&dg);
        assert!(String::from_utf8_lossy(&ans.unwrap()).starts_with("SIP/2.0 200 OK"));
        assert_eq!(
            lines,
            vec!["IMSI001010000000001 <- 15551234567: Hello from e-mail"]
        );
        let (again, lines) = h.take(&dg);
        assert!(String::from_utf8_lossy(&again.unwrap()).starts_with("SIP/2.0 200"));
        assert!(lines.is_empty(), "a retransmission is not a second text");
    }

    #[test]
    fn a_text_with_newlines_and_escape_sequences_prints_as_one_line() {
        let mut h = Handsets::new(&[]);
        let hex = &deliver_hex("two\nlines \u{1b}[2J")[0];
        let (_, lines) = h.take(&mt("sip:IMSI001010000000001@h", hex, "e"));
        assert_eq!(
            lines,
            vec!["IMSI001010000000001 <- 15551234567: two\\nlines \\u{1b}[2J"]
        );
    }

    #[test]
    fn an_absent_handset_answers_480() {
        let mut h = Handsets::new(&["IMSI001010000000002".into()]);
        let hex = &deliver_hex("hi")[0];
        let (ans, lines) = h.take(&mt("sip:IMSI001010000000002@127.0.0.1", hex, "b"));
        assert!(String::from_utf8_lossy(&ans.unwrap()).starts_with("SIP/2.0 480"));
        assert_eq!(lines, vec!["IMSI001010000000002: absent, answered 480"]);
    }

    #[test]
    fn a_long_text_is_printed_once_whole() {
        let mut h = Handsets::new(&[]);
        let text = "x".repeat(300);
        let parts = deliver_hex(&text);
        assert_eq!(parts.len(), 2);
        let (_, first) = h.take(&mt("sip:IMSI001010000000001@h", &parts[1], "c1"));
        assert_eq!(
            first,
            vec!["IMSI001010000000001: part 2/2 from 15551234567"]
        );
        let (_, second) = h.take(&mt("sip:IMSI001010000000001@h", &parts[0], "c2"));
        assert_eq!(
            second.last().unwrap(),
            &format!("IMSI001010000000001 <- 15551234567: {text}")
        );
    }

    #[test]
    fn garbage_bodies_and_datagrams_are_reported_never_a_panic() {
        let mut h = Handsets::new(&[]);
        for hex in ["zz", "00", "0001", "", "01ff00ff", "0500", "\u{1F600}"] {
            let (ans, lines) = h.take(&mt("sip:IMSI001010000000001@h", hex, hex));
            assert!(ans.is_some());
            assert_eq!(lines.len(), 1, "{hex}: {lines:?}");
        }
        let (ans, lines) = h.take(b"\x00\xff garbage");
        assert!(ans.is_none());
        assert_eq!(lines.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_or_body_is_answered_or_dropped_never_a_panic(
            datagram in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            body in "[0-9a-fA-F]{0,400}",
        ) {
            let mut h = Handsets::new(&["IMSI001010000000002".into()]);
            let _ = h.take(&datagram);
            let (ans, _) = h.take(&mt("sip:IMSI001010000000001@h", &body, "p"));
            proptest::prop_assert!(ans.is_some());
        }
    }

    #[test]
    fn what_send_builds_is_a_message_smsmta_parses_as_an_openbts_text() {
        let bodies = submit_bodies("15551234567", &"y".repeat(200), true, 9).unwrap();
        assert_eq!(bodies.len(), 2);
        let smsc: SocketAddr = "127.0.0.1:5063".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let req = mo_request("IMSI001010000000001", smsc, local, 5, &bodies[0]);
        let Ok(Parsed::Complete(Message::Request(r), _)) =
            message::parse(req.as_bytes(), true, 65_535)
        else {
            panic!("not a request");
        };
        let (rp, _) = body::decode_body(&r.body, None).unwrap();
        let mo = crate::sms::decode_mo(&rp).unwrap();
        assert_eq!(mo.submit.destination.value, "15551234567");
        assert!(mo.submit.status_report_request);
        assert_eq!(r.from().unwrap().uri, "sip:IMSI001010000000001@127.0.0.1");
    }
}
