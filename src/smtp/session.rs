//! The SMTP session state machine, pure: lines in, replies and actions out.
//!
//! The connection ([`super::listener`]) frames lines, enforces timeouts, commits messages and
//! looks subscribers up; everything the protocol decides is here, tested without sockets.
//! Commands are parsed by smtp-proto (Stalwart's sans-I/O parser: the null reverse-path, SIZE,
//! BODY, SMTPUTF8 parameters).
//!
//! **Limits.** Command lines over 512 octets and text lines over 1,000 get 500 5.5.2 (the
//! session goes on); a message over `[smtp] max_message_size` gets 552 5.3.4 after its end;
//! more than `[smtp] max_recipients` get 452 4.5.3; after `[smtp] max_errors` errors, 421.
//!
//! **DATA.** Dot-unstuffing; only `CRLF . CRLF` ends the data. A bare LF inside the data is
//! normalised to CRLF and never ends it (no SMTP smuggling); a line of a single dot ended by a
//! bare LF is data. More than 50 Received headers is a loop: 554 5.4.6. A header section that
//! mail-parser cannot read as header fields is refused with 554 5.6.0.
//!
//! Standards: RFC 5321 (4.1 commands, 4.2 replies, 4.5.3 limits, 4.5.2 transparency, 6.3
//! loops), RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 2034 (enhanced
//! status codes), RFC 6531 (SMTPUTF8).

use crate::metrics::Reason;
use std::net::IpAddr;

use smtp_proto::Request;

use super::policy::{self, NumberRules, Verdict};
use crate::identity::Msisdn;

/// Longest command line (RFC 5321 4.5.3.1.4), CRLF included.
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest text line (RFC 5321 4.5.3.1.6), CRLF included.
pub const MAX_TEXT_LINE: usize = 1000;
/// More Received headers than this is a mail loop (Postfix: hopcount_limit).
pub const MAX_HOPS: usize = 50;

/// What the session needs to know about its server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our host name (greeting, EHLO, Received).
    pub hostname: String,
    /// Our SMS domains.
    pub domains: Vec<String>,
    /// Whether this client may relay (trusted network).
    pub trusted: bool,
    /// Largest message.
    pub max_message_size: usize,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Errors before the session is closed.
    pub max_errors: u32,
    /// Number normalisation.
    pub rules: NumberRules,
    /// Whether unknown subscribers are refused at RCPT (the registry is authoritative).
    pub registry_authoritative: bool,
    /// Whether STARTTLS is offered (a certificate is configured).
    pub tls_available: bool,
    /// Whether AUTH is offered under TLS (users are configured).
    pub auth_available: bool,
    /// Submission: MAIL needs AUTH first.
    pub auth_required: bool,
    /// The users, for the senders each may use after AUTH.
    pub users: std::sync::Arc<Vec<crate::config::SmtpUser>>,
}

/// What the connection must do after a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this reply (may be empty: nothing to send) and read on.
    Reply(String),
    /// Send this reply and close the connection.
    Close(String),
    /// Look `msisdn` up in the registry, then call [`Session::recipient_checked`].
    CheckSubscriber {
        /// The recipient address to add if the subscriber exists.
        address: String,
        /// The number to look up.
        msisdn: String,
    },
    /// The message is complete and acceptable: commit it, then call [`Session::committed`].
    Commit(Accepted),
    /// Send this reply, then start TLS and call [`Session::tls_started`]; octets the client
    /// sent after the command are discarded (RFC 3207 5).
    StartTls(String),
    /// Check these credentials, then call [`Session::auth_result`].
    Authenticate {
        /// Login name.
        user: String,
        /// Password.
        password: String,
    },
}

/// A message ready for the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The reverse-path ("" for the null sender).
    pub sender: String,
    /// The recipients, normalised.
    pub recipients: Vec<String>,
    /// The message as received (dot-unstuffed, CRLF line ends), without our Received header.
    pub data: Vec<u8>,
    /// The HELO/EHLO name.
    pub helo: String,
    /// `SMTP` or `ESMTP`.
    pub protocol: &'static str,
    /// The number the authenticated user may send texts as, when MAIL FROM named it.
    pub sender_number: Option<Msisdn>,
}

#[derive(Debug)]
enum State {
    Command,
    Data(DataState),
    /// AUTH PLAIN without an initial response: waiting for it.
    AuthPlain,
    /// AUTH LOGIN: waiting for the user name, then the password.
    AuthLoginUser,
    AuthLoginPassword(String),
}

#[derive(Debug, Default)]
struct DataState {
    buf: Vec<u8>,
    too_big: bool,
    long_line: bool,
    in_headers: bool,
    hops: usize,
}

#[derive(Debug)]
struct Transaction {
    sender: String,
    sender_number: Option<Msisdn>,
    recipients: Vec<String>,
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    peer: IpAddr,
    helo: Option<(String, bool)>,
    tx: Option<Transaction>,
    state: State,
    errors: u32,
    tls: bool,
    user: Option<String>,
    /// Why the last refusal was made, for the listener's count (taken once).
    refused: Option<Reason>,
}

fn reply(code: u16, enhanced: &str, text: &str) -> String {
    format!("{code} {enhanced} {text}\r\n")
}

impl Session {
    /// A session for a client at `peer`.
    pub fn new(cfg: SessionConfig, peer: IpAddr) -> Session {
        Session {
            cfg,
            peer,
            helo: None,
            tx: None,
            state: State::Command,
            errors: 0,
            refused: None,
            tls: false,
            user: None,
        }
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// TLS is up: the session starts over (RFC 3207 4.2: forget EHLO and any transaction).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.state = State::Command;
    }

    /// The verdict on credentials from a [`Step::Authenticate`].
    pub fn auth_result(&mut self, user: String, ok: bool) -> Step {
        if ok {
            self.user = Some(user);
            Step::Reply(reply(235, "2.7.0", "Authentication successful"))
        } else {
            self.refuse(
                Reason::Auth,
                reply(535, "5.7.8", "Error: authentication failed"),
            )
        }
    }

    fn auth_continue(&mut self, line: &[u8]) -> Step {
        use base64::Engine;
        let state = std::mem::replace(&mut self.state, State::Command);
        if line == b"*" {
            return self.error(reply(501, "5.0.0", "Authentication aborted"));
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(line) else {
            return self.error(reply(
                501,
                "5.5.2",
                "Error: malformed authentication response",
            ));
        };
        match state {
            State::AuthPlain => self.plain(&decoded),
            State::AuthLoginUser => {
                self.state =
                    State::AuthLoginPassword(String::from_utf8_lossy(&decoded).into_owned());
                Step::Reply("334 UGFzc3dvcmQ6\r\n".into())
            }
            State::AuthLoginPassword(user) => Step::Authenticate {
                user,
                password: String::from_utf8_lossy(&decoded).into_owned(),
            },
            State::Command | State::Data(_) => Step::Reply(String::new()),
        }
    }

    fn plain(&mut self, decoded: &[u8]) -> Step {
        // authzid NUL authcid NUL password (RFC 4616)
        let mut parts = decoded.split(|b| *b == 0);
        let (Some(_authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(reply(501, "5.5.2", "Error: malformed PLAIN response"));
        };
        Step::Authenticate {
            user: String::from_utf8_lossy(user).into_owned(),
            password: String::from_utf8_lossy(pass).into_owned(),
        }
    }

    /// The greeting.
    pub fn greeting(&self) -> String {
        format!("220 {} ESMTP smsmta\r\n", self.cfg.hostname)
    }

    /// Whether the session is inside DATA (shutdown lets it finish).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    /// Whether a mail transaction is open (MAIL given).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Why the last refusal was made (relay, size, auth, recipient, limit), once.
    pub fn take_refusal(&mut self) -> Option<Reason> {
        self.refused.take()
    }

    /// A refusal for `reason`, counted as an error.
    fn refuse(&mut self, reason: Reason, r: String) -> Step {
        self.refused = Some(reason);
        self.error(r)
    }

    fn error(&mut self, r: String) -> Step {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            return Step::Close(format!(
                "{}421 4.7.0 {} Error: too many errors\r\n",
                r, self.cfg.hostname
            ));
        }
        Step::Reply(r)
    }

    /// Handles one line: the octets before the line end, whether it was cut for length, and
    /// whether it ended with a bare LF.
    pub fn line(&mut self, line: &[u8], too_long: bool, bare_lf: bool) -> Step {
        match &mut self.state {
            State::Data(_) => self.data_line(line, too_long, bare_lf),
            State::Command => self.command(line, too_long),
            State::AuthPlain | State::AuthLoginUser | State::AuthLoginPassword(_) => {
                if too_long {
                    self.state = State::Command;
                    return self.error(reply(500, "5.5.2", "Error: line too long"));
                }
                self.auth_continue(line)
            }
        }
    }

    fn command(&mut self, line: &[u8], too_long: bool) -> Step {
        if too_long || line.len() + 2 > MAX_COMMAND_LINE {
            return self.error(reply(500, "5.5.2", "Error: command line too long"));
        }
        let mut full = line.to_vec();
        full.extend_from_slice(b"\r\n");
        let req = match Request::parse(&mut full.iter()) {
            Ok(r) => r,
            Err(smtp_proto::Error::UnknownCommand) => {
                return self.error(reply(500, "5.5.2", "Error: command not recognized"));
            }
            Err(smtp_proto::Error::InvalidSenderAddress) => {
                return self.error(reply(501, "5.1.7", "Bad sender address syntax"));
            }
            Err(smtp_proto::Error::InvalidRecipientAddress) => {
                return self.error(reply(501, "5.1.3", "Bad recipient address syntax"));
            }
            Err(smtp_proto::Error::UnsupportedParameter { .. })
            | Err(smtp_proto::Error::InvalidParameter { .. }) => {
                return self.error(reply(555, "5.5.4", "Unsupported or invalid parameter"));
            }
            Err(_) => return self.error(reply(501, "5.5.2", "Syntax error")),
        };
        match req {
            Request::Ehlo { host } => self.ehlo(&host),
            Request::Helo { host } | Request::Lhlo { host } => {
                self.helo = Some((host.to_string(), false));
                self.tx = None;
                Step::Reply(format!("250 {}\r\n", self.cfg.hostname))
            }
            Request::Mail { from } => self.mail(from.size, from.address.to_string()),
            Request::Rcpt { to } => self.rcpt(&to.address),
            Request::Data => self.data(),
            Request::Rset => {
                self.tx = None;
                Step::Reply(reply(250, "2.0.0", "Ok"))
            }
            Request::Noop { .. } => Step::Reply(reply(250, "2.0.0", "Ok")),
            Request::Quit => Step::Close(reply(221, "2.0.0", "Bye")),
            Request::Vrfy { .. } => Step::Reply(reply(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message",
            )),
            Request::Help { .. } => Step::Reply(reply(214, "2.0.0", "See RFC 5321")),
            Request::StartTls => {
                if !self.cfg.tls_available {
                    self.error(reply(454, "4.7.0", "TLS not available"))
                } else if self.tls {
                    self.error(reply(503, "5.5.1", "Error: TLS already active"))
                } else {
                    Step::StartTls(reply(220, "2.0.0", "Ready to start TLS"))
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response.to_string()),
            Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error(reply(502, "5.5.1", "Error: command not implemented"))
            }
        }
    }

    fn ehlo(&mut self, host: &str) -> Step {
        self.helo = Some((host.to_string(), true));
        self.tx = None;
        let mut r = format!(
            "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n",
            self.cfg.hostname, self.cfg.max_message_size
        );
        if self.cfg.tls_available && !self.tls {
            r.push_str("250-STARTTLS\r\n");
        }
        if self.cfg.auth_available && self.tls && self.user.is_none() {
            r.push_str("250-AUTH PLAIN LOGIN\r\n");
        }
        r.push_str("250 SMTPUTF8\r\n");
        Step::Reply(r)
    }

    fn mail(&mut self, size: usize, sender: String) -> Step {
        if self.tx.is_some() {
            return self.error(reply(503, "5.5.1", "Error: nested MAIL command"));
        }
        if self.cfg.auth_required && self.user.is_none() {
            return self.refuse(Reason::Auth, reply(530, "5.7.0", "Authentication required"));
        }
        if size > self.cfg.max_message_size {
            let r = reply(552, "5.3.4", "Message size exceeds fixed limit");
            return self.refuse(Reason::Size, r);
        }
        if sender.contains(['\r', '\n', '<', '>']) || sender.len() > 254 {
            return self.error(reply(501, "5.1.7", "Bad sender address syntax"));
        }
        // An authenticated user sends as itself (or the senders and numbers it is given),
        // never as whoever it likes.
        let mut sender_number = None;
        if let Some(user) = &self.user {
            let entry = self.cfg.users.iter().find(|u| &u.name == user);
            sender_number = entry.and_then(|u| u.number_for(&sender, &self.cfg.domains));
            let allowed = sender_number.is_some() || entry.is_some_and(|u| u.may_send_as(&sender));
            if !allowed {
                return self.refuse(
                    Reason::Auth,
                    reply(
                        553,
                        "5.7.1",
                        &format!("<{sender}>: Sender address rejected: not owned by user {user}"),
                    ),
                );
            }
        }
        self.tx = Some(Transaction {
            sender,
            sender_number,
            recipients: Vec::new(),
        });
        Step::Reply(reply(250, "2.1.0", "Ok"))
    }

    fn rcpt(&mut self, to: &str) -> Step {
        let Some(tx) = &self.tx else {
            return self.error(reply(503, "5.5.1", "Error: need MAIL command"));
        };
        if tx.recipients.len() >= self.cfg.max_recipients {
            self.refused = Some(Reason::Limit);
            return Step::Reply(reply(452, "4.5.3", "Error: too many recipients"));
        }
        // Trusted networks and authenticated clients may relay (RFC 5321 7.1).
        let may_relay = self.cfg.trusted || self.user.is_some();
        match policy::judge(to, &self.cfg.domains, may_relay, &self.cfg.rules) {
            Verdict::Local { address, msisdn } => {
                if self.cfg.registry_authoritative {
                    Step::CheckSubscriber { address, msisdn }
                } else {
                    self.add_recipient(address)
                }
            }
            Verdict::Relay { address } => self.add_recipient(address),
            Verdict::NotANumber => self.refuse(
                Reason::Recipient,
                reply(
                    550,
                    "5.1.1",
                    &format!("<{to}>: Recipient address rejected: not a phone number"),
                ),
            ),
            Verdict::RelayDenied => {
                let r = reply(554, "5.7.1", &format!("<{to}>: Relay access denied"));
                self.refuse(Reason::Relay, r)
            }
            Verdict::BadAddress => self.error(reply(501, "5.1.3", "Bad recipient address syntax")),
        }
    }

    fn data(&mut self) -> Step {
        match &self.tx {
            None => return self.error(reply(503, "5.5.1", "Error: need MAIL command")),
            Some(tx) if tx.recipients.is_empty() => {
                return self.error(reply(554, "5.5.1", "Error: no valid recipients"));
            }
            Some(_) => {}
        }
        self.state = State::Data(DataState {
            in_headers: true,
            ..DataState::default()
        });
        Step::Reply("354 End data with <CR><LF>.<CR><LF>\r\n".into())
    }

    fn auth(&mut self, mechanism: u64, initial: String) -> Step {
        use base64::Engine;
        if !self.cfg.auth_available {
            return self.error(reply(503, "5.5.1", "Error: authentication not enabled"));
        }
        if !self.tls {
            return self.error(reply(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        }
        if self.user.is_some() {
            return self.error(reply(503, "5.5.1", "Error: already authenticated"));
        }
        if self.tx.is_some() {
            return self.error(reply(503, "5.5.1", "Error: MAIL transaction in progress"));
        }
        if mechanism == smtp_proto::AUTH_PLAIN {
            if initial.is_empty() {
                self.state = State::AuthPlain;
                return Step::Reply("334 \r\n".into());
            }
            match base64::engine::general_purpose::STANDARD.decode(initial.as_bytes()) {
                Ok(d) => self.plain(&d),
                Err(_) => self.error(reply(
                    501,
                    "5.5.2",
                    "Error: malformed authentication response",
                )),
            }
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            self.state = State::AuthLoginUser;
            if initial.is_empty() {
                return Step::Reply("334 VXNlcm5hbWU6\r\n".into());
            }
            self.auth_continue(initial.as_bytes())
        } else {
            self.error(reply(
                504,
                "5.5.4",
                "Error: unsupported authentication mechanism",
            ))
        }
    }

    fn add_recipient(&mut self, address: String) -> Step {
        match &mut self.tx {
            Some(tx) => {
                if !tx.recipients.contains(&address) {
                    tx.recipients.push(address);
                }
                Step::Reply(reply(250, "2.1.5", "Ok"))
            }
            None => self.error(reply(503, "5.5.1", "Error: need MAIL command")),
        }
    }

    /// The registry's answer for a [`Step::CheckSubscriber`].
    pub fn recipient_checked(&mut self, address: String, known: bool) -> Step {
        if known {
            self.add_recipient(address)
        } else {
            self.refuse(
                Reason::Recipient,
                reply(
                    550,
                    "5.1.1",
                    &format!("<{address}>: Recipient address rejected: unknown subscriber"),
                ),
            )
        }
    }

    fn data_line(&mut self, line: &[u8], too_long: bool, bare_lf: bool) -> Step {
        let State::Data(d) = &mut self.state else {
            return Step::Reply(String::new());
        };
        if line == b"." && !bare_lf {
            return self.end_of_data();
        }
        if too_long || line.len() + 2 > MAX_TEXT_LINE {
            d.long_line = true;
        }
        // Dot-unstuffing (RFC 5321 4.5.2).
        let content = if !bare_lf && line.first() == Some(&b'.') {
            &line[1..]
        } else {
            line
        };
        if d.in_headers {
            if content.is_empty() {
                d.in_headers = false;
            } else if content.len() >= 9 && content[..9].eq_ignore_ascii_case(b"received:") {
                d.hops += 1;
            }
        }
        if !d.too_big {
            if d.buf.len() + content.len() + 2 > self.cfg.max_message_size {
                d.too_big = true;
                d.buf = Vec::new();
            } else {
                d.buf.extend_from_slice(content);
                d.buf.extend_from_slice(b"\r\n");
            }
        }
        Step::Reply(String::new())
    }

    fn end_of_data(&mut self) -> Step {
        let State::Data(d) = std::mem::replace(&mut self.state, State::Command) else {
            return Step::Reply(String::new());
        };
        let tx = self.tx.take();
        if d.too_big {
            self.refused = Some(Reason::Size);
            return Step::Reply(reply(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        if d.long_line {
            return Step::Reply(reply(
                500,
                "5.5.2",
                "Error: message line longer than 1000 octets",
            ));
        }
        if d.hops > MAX_HOPS {
            return Step::Reply(reply(554, "5.4.6", "Too many hops (mail loop)"));
        }
        if !headers_ok(&d.buf) {
            return Step::Reply(reply(554, "5.6.0", "Message headers are malformed"));
        }
        let Some(tx) = tx else {
            return Step::Reply(reply(503, "5.5.1", "Error: need MAIL command"));
        };
        let (helo, esmtp) = self
            .helo
            .clone()
            .unwrap_or_else(|| ("unknown".to_string(), false));
        Step::Commit(Accepted {
            sender: tx.sender,
            sender_number: tx.sender_number,
            recipients: tx.recipients,
            data: d.buf,
            helo,
            // RFC 3848 protocol types.
            protocol: match (esmtp, self.tls, self.user.is_some()) {
                (false, _, _) => "SMTP",
                (true, false, false) => "ESMTP",
                (true, true, false) => "ESMTPS",
                (true, false, true) => "ESMTPA",
                (true, true, true) => "ESMTPSA",
            },
        })
    }

    /// The reply once a [`Step::Commit`] was tried.
    pub fn committed(&mut self, result: Result<String, CommitError>) -> Step {
        match result {
            Ok(id) => Step::Reply(reply(250, "2.0.0", &format!("Ok: queued as {id}"))),
            Err(CommitError::NoSpace) => Step::Reply(reply(
                452,
                "4.3.1",
                "Error: insufficient system storage, try again later",
            )),
            Err(CommitError::TooLarge) => {
                self.refused = Some(Reason::Size);
                Step::Reply(reply(552, "5.3.4", "Message size exceeds fixed limit"))
            }
            Err(CommitError::Failed) => {
                Step::Reply(reply(451, "4.3.0", "Error: queue file write error"))
            }
        }
    }

    /// The client's address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }
}

/// Why a message was not committed, as the client is told (never a path or an OS message:
/// those go to the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitError {
    /// The spool is below its free-space reserve, or the disk is full: 452 4.3.1.
    NoSpace,
    /// Larger than the spool takes: 552 5.3.4.
    TooLarge,
    /// Anything else: 451 4.3.0, try again.
    Failed,
}

/// Whether the message starts with a header section mail-parser reads as header fields.
fn headers_ok(data: &[u8]) -> bool {
    let first = data.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let Some(colon) = first.iter().position(|b| *b == b':') else {
        return false;
    };
    let name = &first[..colon];
    if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
        return false;
    }
    mail_parser::MessageParser::new()
        .parse_headers(data)
        .is_some_and(|m| !m.headers().is_empty())
}

/// The Received header smsmta prepends (RFC 5321 4.4).
pub fn received_header(a: &Accepted, peer: IpAddr, hostname: &str, id: &str, date: &str) -> String {
    let helo: String = a
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    let rcpt = if a.recipients.len() == 1 {
        format!("\r\n\tfor <{}>", a.recipients[0])
    } else {
        String::new()
    };
    format!(
        "Received: from {helo} ([{peer}])\r\n\tby {hostname} (smsmta) with {} id {id}{rcpt};\r\n\t{date}\r\n",
        a.protocol
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(trusted: bool) -> SessionConfig {
        SessionConfig {
            hostname: "mta.test".into(),
            domains: vec!["sms.test".into()],
            trusted,
            max_message_size: 10_000,
            max_recipients: 3,
            max_errors: 5,
            rules: NumberRules {
                country_code: "1".into(),
                national_prefix: "0".into(),
            },
            registry_authoritative: false,
            tls_available: true,
            auth_available: true,
            auth_required: false,
            users: std::sync::Arc::new(vec![
                crate::config::SmtpUser {
                    name: "alice@example.org".into(),
                    password_hash: String::new(),
                    senders: Vec::new(),
                    numbers: Vec::new(),
                },
                crate::config::SmtpUser {
                    name: "alice".into(),
                    password_hash: String::new(),
                    senders: vec!["alice@example.org".into()],
                    numbers: vec!["2337".into()],
                },
            ]),
        }
    }

    fn run(s: &mut Session, lines: &[&str]) -> Vec<Step> {
        lines
            .iter()
            .map(|l| s.line(l.as_bytes(), false, false))
            .collect()
    }

    fn code(step: &Step) -> u16 {
        match step {
            Step::Reply(r) | Step::Close(r) => r.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0),
            Step::Commit(_) => 1,
            Step::CheckSubscriber { .. } => 2,
            Step::StartTls(_) => 3,
            Step::Authenticate { .. } => 4,
        }
    }

    #[test]
    fn an_authenticated_user_sends_only_as_itself() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        s.line(b"EHLO x", false, false);
        s.tls_started();
        assert_eq!(code(&s.auth_result("alice@example.org".into(), true)), 235);
        let steps = run(
            &mut s,
            &[
                "MAIL FROM:<bob@example.org>",
                "MAIL FROM:<>",
                "MAIL FROM:<Alice@Example.org>",
            ],
        );
        assert_eq!(
            steps.iter().map(code).collect::<Vec<_>>(),
            vec![553, 553, 250]
        );
        let u = crate::config::SmtpUser {
            name: "gw".into(),
            password_hash: String::new(),
            senders: vec!["@example.net".into(), "ops@example.org".into()],
            numbers: Vec::new(),
        };
        assert!(u.may_send_as("x@EXAMPLE.net") && u.may_send_as("ops@example.org"));
        assert!(!u.may_send_as("gw") && !u.may_send_as("x@example.org") && !u.may_send_as(""));
    }

    #[test]
    fn a_user_sends_as_a_number_only_when_it_is_listed() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        s.line(b"EHLO x", false, false);
        s.tls_started();
        assert_eq!(code(&s.auth_result("alice".into(), true)), 235);
        let steps = run(
            &mut s,
            &[
                "MAIL FROM:<15551230000@sms.test>",
                "MAIL FROM:<2337@other.test>",
                "MAIL FROM:<+2337@SMS.test>",
                "RCPT TO:<bob@example.net>",
                "DATA",
                "Subject: x",
                "",
                "hi",
                ".",
            ],
        );
        assert_eq!(
            steps.iter().take(5).map(code).collect::<Vec<_>>(),
            vec![553, 553, 250, 250, 354]
        );
        let Some(Step::Commit(a)) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(a.sender_number.as_ref().map(|n| n.digits()), Some("2337"));
        // A user with no numbers never gets one, even for an address it may use.
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        s.line(b"EHLO x", false, false);
        s.tls_started();
        s.auth_result("alice@example.org".into(), true);
        assert_eq!(
            code(&s.line(b"MAIL FROM:<2337@sms.test>", false, false)),
            553
        );
    }

    #[test]
    fn starttls_then_auth_plain_and_login() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        let Step::Reply(r) = s.line(b"EHLO x", false, false) else {
            panic!()
        };
        assert!(r.contains("STARTTLS") && !r.contains("AUTH"), "{r}");
        // AUTH before TLS is refused: credentials never travel in the clear.
        assert_eq!(
            code(&s.line(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", false, false)),
            538
        );
        assert!(
            matches!(s.line(b"STARTTLS", false, false), Step::StartTls(r) if r.starts_with("220"))
        );
        s.tls_started();
        let Step::Reply(r) = s.line(b"EHLO x", false, false) else {
            panic!()
        };
        assert!(
            !r.contains("STARTTLS") && r.contains("AUTH PLAIN LOGIN"),
            "{r}"
        );
        assert_eq!(
            s.line(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", false, false),
            Step::Authenticate {
                user: "alice".into(),
                password: "secret".into()
            }
        );
        assert_eq!(code(&s.auth_result("alice".into(), false)), 535);
        assert_eq!(code(&s.line(b"AUTH LOGIN", false, false)), 334);
        assert_eq!(code(&s.line(b"YWxpY2U=", false, false)), 334);
        assert_eq!(
            s.line(b"c2VjcmV0", false, false),
            Step::Authenticate {
                user: "alice".into(),
                password: "secret".into()
            }
        );
        assert_eq!(code(&s.auth_result("alice".into(), true)), 235);
        assert_eq!(s.user(), Some("alice"));
        // Authenticated: may relay.
        s.line(b"MAIL FROM:<alice@example.org>", false, false);
        assert_eq!(
            code(&s.line(b"RCPT TO:<bob@other.example>", false, false)),
            250
        );
    }

    #[test]
    fn submission_needs_auth_before_mail() {
        let mut c = cfg(false);
        c.auth_required = true;
        let mut s = Session::new(c, "192.0.2.1".parse().unwrap());
        s.line(b"EHLO x", false, false);
        assert_eq!(code(&s.line(b"MAIL FROM:<a@b.c>", false, false)), 530);
    }

    #[test]
    fn a_whole_transaction_reaches_commit() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        let steps = run(
            &mut s,
            &[
                "EHLO client.example",
                "MAIL FROM:<>",
                "RCPT TO:<+15551234567@SMS.test>",
                "DATA",
                "Subject: x",
                "",
                "..hi",
                ".",
            ],
        );
        let codes: Vec<u16> = steps.iter().map(code).collect();
        assert_eq!(codes, vec![250, 250, 250, 354, 0, 0, 0, 1]);
        let Step::Commit(a) = &steps[7] else { panic!() };
        assert_eq!(a.sender, "");
        assert_eq!(a.recipients, vec!["15551234567@sms.test"]);
        assert_eq!(a.data, b"Subject: x\r\n\r\n.hi\r\n");
        assert_eq!(
            s.committed(Ok("ID1".into())),
            Step::Reply("250 2.0.0 Ok: queued as ID1\r\n".into())
        );
    }

    #[test]
    fn ehlo_advertises_the_extensions() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        let Step::Reply(r) = s.line(b"EHLO x", false, false) else {
            panic!()
        };
        for ext in [
            "PIPELINING",
            "SIZE 10000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
        ] {
            assert!(r.contains(ext), "{r}");
        }
    }

    #[test]
    fn limits_and_errors() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        assert_eq!(code(&s.line(&[b'a'; 600], false, false)), 500);
        assert_eq!(
            code(&s.line(b"MAIL FROM:<a@b.c> SIZE=20000", false, false)),
            552
        );
        assert_eq!(code(&s.line(b"RCPT TO:<1@sms.test>", false, false)), 503);
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        run(&mut s, &["HELO x", "MAIL FROM:<a@b.c>"]);
        for i in 0..3 {
            assert_eq!(
                code(&s.line(
                    format!("RCPT TO:<1555000000{i}@sms.test>").as_bytes(),
                    false,
                    false
                )),
                250
            );
        }
        assert_eq!(
            code(&s.line(b"RCPT TO:<15550000009@sms.test>", false, false)),
            452
        );
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        for _ in 0..4 {
            assert!(matches!(s.line(b"BOGUS", false, false), Step::Reply(_)));
        }
        assert!(
            matches!(s.line(b"BOGUS", false, false), Step::Close(r) if r.contains("421 4.7.0"))
        );
    }

    #[test]
    fn data_limits_loops_and_bare_lf() {
        let mut s = Session::new(cfg(false), "192.0.2.1".parse().unwrap());
        let mut lines = vec![
            "HELO x",
            "MAIL FROM:<a@b.c>",
            "RCPT TO:<15551234567@sms.test>",
            "DATA",
        ];
        let hops: Vec<String> = (0..51).map(|i| format!("Received: from h{i}")).collect();
        lines.extend(hops.iter().map(String::as_str));
        lines.extend(["", "body", "."]);
        assert_eq!(code(run(&mut s, &lines).last().unwrap()), 554);

        run(
            &mut s,
            &[
                "MAIL FROM:<a@b.c>",
                "RCPT TO:<15551234567@sms.test>",
                "DATA",
                "Subject: x",
                "",
            ],
        );
        // A dot line ended by a bare LF is data, not the end.
        assert_eq!(s.line(b".", false, true), Step::Reply(String::new()));
        assert!(s.in_data());
        let long = vec![b'x'; 1200];
        s.line(&long, false, false);
        assert_eq!(code(&s.line(b".", false, false)), 500);

        run(
            &mut s,
            &[
                "MAIL FROM:<a@b.c>",
                "RCPT TO:<15551234567@sms.test>",
                "DATA",
            ],
        );
        assert_eq!(code(&s.line(b"this is not a header", false, false)), 0);
        assert_eq!(code(&s.line(b".", false, false)), 554);
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..40), flags in any::<u8>()) {
            let mut s = Session::new(cfg(flags & 1 == 1), "192.0.2.1".parse().unwrap());
            for (i, l) in lines.iter().enumerate() {
                match s.line(l, flags & 2 == 2, i % 3 == 0 && flags & 4 == 4) {
                    Step::Commit(_) => { let _ = s.committed(Ok("X".into())); }
                    Step::CheckSubscriber { address, .. } => { let _ = s.recipient_checked(address, true); }
                    Step::StartTls(_) => s.tls_started(),
                    Step::Authenticate { user, .. } => { let _ = s.auth_result(user, i % 2 == 0); }
                    Step::Reply(_) | Step::Close(_) => {}
                }
            }
        }
    }
}
