//! The SMPP server session (smsmta as SMSC), pure: frames in, PDUs and actions out.
//!
//! The connection ([`super::listener`]) frames PDUs, keeps the window and the timeouts,
//! checks passwords and commits; everything the protocol decides is here, tested without
//! sockets, in the shape of `smtp::session`: each PDU gives a [`Step`], and the listener
//! reports back what it did ([`Session::bound`], [`Session::submitted`]).
//!
//! **States.** Open (only a bind is accepted, anything else gets ESME_RINVBNDSTS), Bound
//! (transmitter, receiver or transceiver: submit_sm only on a bind that transmits), Closed
//! (after unbind). enquire_link is answered in every state.
//!
//! **Hostile peers.** A frame that does not decode is answered with generic_nack (the status
//! says why) and counted; after `max_errors` the session ends. A submit_sm is checked here
//! before anything is stored: a source address the account may not use is ESME_RINVSRCADR,
//! a destination that is no number is ESME_RINVDSTADR, a binary coding ESME_RINVDCS, a UDH
//! that names no place in a concatenated text ESME_RINVESMCLASS. A part (UDH or SAR) is
//! handed to the listener with its place and body, to be kept until the text is whole.
//!
//! Standards: SMPP 3.4 (2.3 session states, 4.1 bind, 4.3 generic_nack, 4.4 submit_sm, 4.11
//! enquire_link, 4.12 unbind, 5.1.3 command_status).

use super::pdu::{self, Address, Bind, BindKind, Body, Pdu, Sm, status, tag};
use super::text;
use crate::identity::Msisdn;
use crate::sms::tpdu::Body as SmsBody;
use crate::sms::udh::Concat;

/// What the session knows of its server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our system_id (in bind responses).
    pub system_id: String,
    /// Frames that did not decode before the session ends.
    pub max_errors: u32,
}

/// An ESME account, as the listener found it for a bind (password and network checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// Its system_id.
    pub system_id: String,
    /// The source addresses it may use: exact, or a prefix ending in `*`.
    pub sources: Vec<String>,
}

impl Account {
    /// Whether the account may send from `addr`.
    pub fn may_send_as(&self, addr: &str) -> bool {
        self.sources.iter().any(|s| match s.strip_suffix('*') {
            Some(prefix) => addr.starts_with(prefix),
            None => s == addr,
        })
    }
}

/// A text the ESME submitted, checked, to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// sequence_number of the submit_sm (its response carries it).
    pub sequence: u32,
    /// The originator as the ESME sent it (a number, or an alphanumeric name).
    pub source: String,
    /// The recipient's number.
    pub dest: Msisdn,
    /// The text (empty for a part: see `part`).
    pub text: String,
    /// A delivery receipt was asked for (registered_delivery bits 0-1).
    pub receipt: bool,
    /// When this is one part of a longer text (UDH, or the sar_* TLVs): its place and its
    /// body, kept until every part is there.
    pub part: Option<(Concat, SmsBody)>,
}

/// What the listener is to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this PDU.
    Send(Pdu),
    /// Nothing to send (a response smsmta does not wait for).
    Nothing,
    /// Send this PDU, then close the connection.
    Close(Pdu),
    /// Check the bind's credentials and network; then [`Session::bound`].
    Authenticate {
        /// Its sequence_number.
        sequence: u32,
        /// The kind of bind.
        kind: BindKind,
        /// What it carried.
        bind: Bind,
    },
    /// Check the recipient and store the text; then [`Session::submitted`].
    Submit(Submission),
    /// The ESME answered a deliver_sm smsmta sent.
    Delivered {
        /// The deliver_sm's sequence_number.
        sequence: u32,
        /// Its command_status.
        status: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Bound(BindKind, Account),
    Closed,
}

/// One SMPP connection's state.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    errors: u32,
}

fn resp(body: Body, status: u32, sequence: u32) -> Pdu {
    Pdu {
        status,
        sequence,
        body,
    }
}

/// generic_nack with `status` for `sequence`.
pub fn nack(status: u32, sequence: u32) -> Pdu {
    resp(Body::GenericNack, status, sequence)
}

/// The response a request is answered with, with no body beyond what an error carries.
fn error_resp(request: &Body, status: u32, sequence: u32) -> Pdu {
    let body = match request {
        Body::Bind(k, _) => Body::BindResp(*k, String::new()),
        Body::SubmitSm(_) => Body::SubmitSmResp(String::new()),
        Body::DeliverSm(_) => Body::DeliverSmResp,
        Body::Unbind => Body::UnbindResp,
        Body::EnquireLink => Body::EnquireLinkResp,
        _ => Body::GenericNack,
    };
    resp(body, status, sequence)
}

impl Session {
    /// A new connection.
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            state: State::Open,
            errors: 0,
        }
    }

    /// The bound account, if any.
    pub fn account(&self) -> Option<&Account> {
        match &self.state {
            State::Bound(_, a) => Some(a),
            State::Open | State::Closed => None,
        }
    }

    /// The kind of the accepted bind, if any.
    pub fn bind_kind(&self) -> Option<BindKind> {
        match &self.state {
            State::Bound(k, _) => Some(*k),
            State::Open | State::Closed => None,
        }
    }

    /// Whether a bind has been accepted.
    pub fn is_bound(&self) -> bool {
        matches!(self.state, State::Bound(..))
    }

    /// One whole frame from the peer.
    pub fn frame(&mut self, frame: &[u8]) -> Step {
        match pdu::decode(frame) {
            Ok(p) => self.pdu(p),
            Err(e) => {
                self.errors += 1;
                let seq = pdu::header(frame).map_or(0, |(_, s)| s);
                let n = nack(e.status(), seq);
                if self.errors >= self.cfg.max_errors {
                    Step::Close(n)
                } else {
                    Step::Send(n)
                }
            }
        }
    }

    fn pdu(&mut self, p: Pdu) -> Step {
        let seq = p.sequence;
        match (&self.state, p.body) {
            (_, Body::EnquireLink) => Step::Send(resp(Body::EnquireLinkResp, status::OK, seq)),
            (_, Body::EnquireLinkResp | Body::GenericNack) => Step::Nothing,
            (_, Body::DeliverSmResp) => Step::Delivered {
                sequence: seq,
                status: p.status,
            },
            (State::Open, Body::Bind(kind, bind)) => Step::Authenticate {
                sequence: seq,
                kind,
                bind,
            },
            (State::Bound(..), b @ Body::Bind(..)) => {
                Step::Send(error_resp(&b, status::ALYBND, seq))
            }
            (State::Bound(..), Body::Unbind) => {
                self.state = State::Closed;
                Step::Close(resp(Body::UnbindResp, status::OK, seq))
            }
            (State::Bound(kind, account), Body::SubmitSm(sm)) => {
                if !kind.transmits() {
                    return Step::Send(error_resp(&Body::SubmitSm(sm), status::INVBNDSTS, seq));
                }
                match check_submit(account, &sm, seq) {
                    Ok(s) => Step::Submit(s),
                    Err(st) => Step::Send(resp(Body::SubmitSmResp(String::new()), st, seq)),
                }
            }
            (State::Open | State::Closed, b @ (Body::SubmitSm(_) | Body::Unbind)) => {
                Step::Send(error_resp(&b, status::INVBNDSTS, seq))
            }
            (State::Closed, b @ Body::Bind(..)) => {
                Step::Send(error_resp(&b, status::INVBNDSTS, seq))
            }
            // deliver_sm is the SMSC's to send, and responses smsmta never asked for: nack.
            (_, Body::DeliverSm(_)) => Step::Send(nack(status::INVCMDID, seq)),
            (_, Body::BindResp(..) | Body::SubmitSmResp(_) | Body::UnbindResp | Body::Other(_)) => {
                Step::Send(nack(status::INVCMDID, seq))
            }
        }
    }

    /// The listener's verdict on a bind: the account when the credentials and the network
    /// passed, else the status to refuse with (the connection then closes).
    pub fn bound(&mut self, sequence: u32, kind: BindKind, verdict: Result<Account, u32>) -> Step {
        match verdict {
            Ok(account) => {
                self.state = State::Bound(kind, account);
                Step::Send(resp(
                    Body::BindResp(kind, self.cfg.system_id.clone()),
                    status::OK,
                    sequence,
                ))
            }
            Err(st) => Step::Close(resp(Body::BindResp(kind, String::new()), st, sequence)),
        }
    }

    /// The listener's result for a submission: the queue ID once it is durable (the
    /// message_id), or the status to refuse with.
    pub fn submitted(&self, sequence: u32, result: Result<String, u32>) -> Pdu {
        match result {
            Ok(id) => resp(Body::SubmitSmResp(id), status::OK, sequence),
            Err(st) => resp(Body::SubmitSmResp(String::new()), st, sequence),
        }
    }
}

/// The checks of a submit_sm that need nothing but the PDU and the account.
fn check_submit(account: &Account, sm: &Sm, sequence: u32) -> Result<Submission, u32> {
    if !account.may_send_as(&sm.source.addr) {
        return Err(status::INVSRCADR);
    }
    let dest = dest_number(&sm.dest).ok_or(status::INVDSTADR)?;
    let concatenated = sm.esm_class & 0x40 != 0 || sm.tlv(tag::SAR_MSG_REF_NUM).is_some();
    let (text, part) = if concatenated {
        // A part: its UDH or SAR facts must read, and name a place in a text of two or more.
        match super::esme::part(sm) {
            Some((Some(c), body)) => (String::new(), Some((c, body))),
            Some((None, _)) => return Err(status::INVESMCLASS),
            // A binary or unknown coding, or a UDH that does not read.
            None if text::decode(sm.data_coding, &[]).is_err() => return Err(status::INVDCS),
            None => return Err(status::INVESMCLASS),
        }
    } else {
        let t = text::decode(sm.data_coding, sm.payload()).map_err(|_| status::INVDCS)?;
        (t, None)
    };
    Ok(Submission {
        sequence,
        source: sm.source.addr.clone(),
        dest,
        text,
        receipt: sm.registered_delivery & 0x03 != 0,
        part,
    })
}

/// The destination as a number (a leading `+` allowed for international ones).
fn dest_number(a: &Address) -> Option<Msisdn> {
    Msisdn::parse(a.addr.strip_prefix('+').unwrap_or(&a.addr)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(SessionConfig {
            system_id: "smsmta".into(),
            max_errors: 3,
        })
    }

    fn frame(body: Body, seq: u32) -> Vec<u8> {
        pdu::encode(&Pdu {
            status: 0,
            sequence: seq,
            body,
        })
    }

    fn account() -> Account {
        Account {
            system_id: "app".into(),
            sources: vec!["1555123*".into(), "INFO".into()],
        }
    }

    fn bound(kind: BindKind) -> Session {
        let mut s = session();
        let Step::Authenticate { sequence, kind, .. } =
            s.frame(&frame(Body::Bind(kind, Bind::default()), 1))
        else {
            panic!()
        };
        assert!(matches!(s.bound(sequence, kind, Ok(account())), Step::Send(p) if p.status == 0));
        s
    }

    fn submit(src: &str, dst: &str, dcs: u8, msg: &[u8]) -> Body {
        Body::SubmitSm(Box::new(Sm {
            source: Address {
                ton: 1,
                npi: 1,
                addr: src.into(),
            },
            dest: Address {
                ton: 1,
                npi: 1,
                addr: dst.into(),
            },
            data_coding: dcs,
            short_message: msg.to_vec(),
            ..Sm::default()
        }))
    }

    fn status_of(step: Step) -> u32 {
        match step {
            Step::Send(p) | Step::Close(p) => p.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_but_a_bind_or_enquire_link_before_the_bind() {
        let mut s = session();
        assert_eq!(
            status_of(s.frame(&frame(submit("15551230000", "15551234567", 0, b"x"), 2))),
            status::INVBNDSTS
        );
        assert_eq!(
            status_of(s.frame(&frame(Body::Unbind, 3))),
            status::INVBNDSTS
        );
        assert_eq!(status_of(s.frame(&frame(Body::EnquireLink, 4))), status::OK);
        assert!(!s.is_bound());
    }

    #[test]
    fn a_refused_bind_closes_with_its_status() {
        let mut s = session();
        let step = s.bound(1, BindKind::Transceiver, Err(status::INVPASWD));
        assert!(matches!(step, Step::Close(p) if p.status == status::INVPASWD && p.sequence == 1));
        assert!(!s.is_bound());
    }

    #[test]
    fn a_checked_submit_goes_to_the_spool_with_its_text() {
        let mut s = bound(BindKind::Transceiver);
        let step = s.frame(&frame(
            submit("15551230000", "+15551234567", 8, &[0, 0x48, 0, 0x69]),
            7,
        ));
        let Step::Submit(sub) = step else {
            panic!("{step:?}")
        };
        assert_eq!(sub.sequence, 7);
        assert_eq!(sub.dest.digits(), "15551234567");
        assert_eq!(sub.text, "Hi");
        let ok = s.submitted(7, Ok("0644C2A1B3C4D5A1B2C3".into()));
        assert_eq!(ok.body, Body::SubmitSmResp("0644C2A1B3C4D5A1B2C3".into()));
        assert_eq!(ok.sequence, 7);
    }

    #[test]
    fn forged_sources_bad_destinations_binary_and_parts_are_refused_before_storing() {
        let mut s = bound(BindKind::Transmitter);
        let st = |s: &mut Session, b| status_of(s.frame(&frame(b, 9)));
        assert_eq!(
            st(&mut s, submit("15559999999", "15551234567", 0, b"x")),
            status::INVSRCADR
        );
        assert_eq!(
            st(&mut s, submit("INFO", "not-a-number", 0, b"x")),
            status::INVDSTADR
        );
        assert_eq!(
            st(&mut s, submit("INFO", "15551234567", 4, b"x")),
            status::INVDCS
        );
        let Body::SubmitSm(mut udh) = submit("INFO", "15551234567", 0, b"x") else {
            panic!()
        };
        udh.esm_class = 0x40;
        assert_eq!(
            st(&mut s, Body::SubmitSm(udh)),
            status::INVESMCLASS,
            "esm_class says UDH, the payload has none"
        );
    }

    #[test]
    fn a_concatenated_part_is_handed_on_with_its_place_and_body() {
        let mut s = bound(BindKind::Transmitter);
        // UDH: IEI 0 (8-bit reference), reference 0x2A, part 2 of 3.
        let Body::SubmitSm(mut sm) =
            submit("INFO", "15551234567", 0, b"\x05\x00\x03\x2A\x03\x02second")
        else {
            panic!()
        };
        sm.esm_class = 0x40;
        let Step::Submit(sub) = s.frame(&frame(Body::SubmitSm(sm.clone()), 9)) else {
            panic!("a part is a submission")
        };
        let (c, body) = sub.part.expect("its place");
        assert_eq!((c.reference, c.total, c.seq), (0x2A, 3, 2));
        assert_eq!(body.text(), "second");
        // SAR: the same, from the TLVs.
        sm.esm_class = 0;
        sm.short_message = b"first ".to_vec();
        sm.tlvs = vec![
            (tag::SAR_MSG_REF_NUM, vec![0, 7]),
            (tag::SAR_TOTAL_SEGMENTS, vec![2]),
            (tag::SAR_SEGMENT_SEQNUM, vec![1]),
        ];
        let Step::Submit(sub) = s.frame(&frame(Body::SubmitSm(sm.clone()), 10)) else {
            panic!()
        };
        let (c, _) = sub.part.expect("its place");
        assert_eq!((c.reference, c.total, c.seq), (7, 2, 1));
        // A part number past the total is no place.
        sm.tlvs[2] = (tag::SAR_SEGMENT_SEQNUM, vec![3]);
        assert_eq!(
            status_of(s.frame(&frame(Body::SubmitSm(sm), 11))),
            status::INVESMCLASS
        );
    }

    #[test]
    fn a_receiver_may_not_submit_and_a_second_bind_is_refused() {
        let mut s = bound(BindKind::Receiver);
        assert_eq!(
            status_of(s.frame(&frame(submit("INFO", "15551234567", 0, b"x"), 2))),
            status::INVBNDSTS
        );
        assert_eq!(
            status_of(s.frame(&frame(
                Body::Bind(BindKind::Transmitter, Bind::default()),
                3
            ))),
            status::ALYBND
        );
    }

    #[test]
    fn garbage_gets_generic_nack_and_too_much_of_it_ends_the_session() {
        let mut s = bound(BindKind::Transceiver);
        let mut bad = frame(submit("INFO", "15551234567", 0, b"hello"), 5);
        bad.truncate(30);
        bad[..4].copy_from_slice(&30u32.to_be_bytes());
        let step = s.frame(&bad);
        assert!(
            matches!(&step, Step::Send(p) if p.body == Body::GenericNack && p.sequence == 5 && p.status == status::INVMSGLEN),
            "{step:?}"
        );
        assert!(
            matches!(s.frame(&frame(Body::Other(0x77), 6)), Step::Send(p) if p.body == Body::GenericNack && p.status == status::INVCMDID)
        );
        assert!(matches!(s.frame(&bad), Step::Send(_)));
        assert!(matches!(s.frame(&bad), Step::Close(_)));
    }

    #[test]
    fn unbind_ends_the_session_with_its_response() {
        let mut s = bound(BindKind::Transceiver);
        assert!(
            matches!(s.frame(&frame(Body::Unbind, 8)), Step::Close(p) if p.body == Body::UnbindResp)
        );
        assert_eq!(
            status_of(s.frame(&frame(submit("INFO", "15551234567", 0, b"x"), 9))),
            status::INVBNDSTS
        );
    }

    #[test]
    fn source_patterns_match_exactly_or_by_prefix() {
        let a = account();
        assert!(a.may_send_as("15551230001"));
        assert!(a.may_send_as("INFO"));
        assert!(!a.may_send_as("INFO2"));
        assert!(!a.may_send_as("1555124"));
    }
}
