//! `[delivery]`: each key's type, default and bounds.

use super::*;

/// `[delivery]`: the queue manager and the SIP and SMTP agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Run the delivery worker (false: only accept and store, as `postfix stop` of qmgr).
    pub enabled: bool,
    /// Where texts go for a handset without a registration: the BTS (OpenBTS listens on 5062);
    /// the Request-URI is `sip:IMSI<imsi>@<bts>`.
    pub bts: SocketAddr,
    /// Transport to the BTS: `udp` or `tcp`.
    pub bts_transport: crate::sip::Transport,
    /// The MESSAGE body to handsets: `hex` (OpenBTS: application/vnd.3gpp.sms as ASCII hex),
    /// `binary` (TS 24.341) or `text` (text/plain, one MESSAGE, no segmentation).
    pub body: MtBody,
    /// The SMTP relay for mail to e-mail recipients (`host:port`); empty: MX lookup.
    pub smarthost: String,
    /// For a subscriber with an e-mail address: `copy` (the handset and the mailbox) or
    /// `forward` (the mailbox only).
    pub email_mode: EmailMode,
    /// Originator shown on texts that came from e-mail addresses (a short code or up to 11
    /// letters); the sender's address starts the text.
    pub email_sender: String,
    /// Originator of notices ("Message to ... not delivered") and the RP originator address.
    pub notice_sender: String,
    /// Put a mail's Subject on the first line of the text.
    pub subject_line: bool,
    /// Strip quoted replies and signatures from mail before it becomes a text.
    pub strip_quotes: bool,
    /// Most SMS segments per text; longer texts are cut with a mark.
    pub max_segments: u8,
    /// Messages being delivered at once.
    pub max_jobs: usize,
    /// MESSAGE transactions at once.
    pub max_sip: usize,
    /// SMTP transactions at once.
    pub max_smtp: usize,
    /// Shortest and longest wait between attempts to a handset.
    pub handset_backoff_min: Dur,
    /// See `handset_backoff_min`.
    pub handset_backoff_max: Dur,
    /// Shortest and longest wait between attempts to a mail server.
    pub mail_backoff_min: Dur,
    /// See `mail_backoff_min`.
    pub mail_backoff_max: Dur,
    /// Send a "delayed" notice once a message has waited this long; 0 for never.
    pub delay_warning: Dur,
    /// Full rescan of the spool, the safety net under the in-memory schedule.
    pub rescan_interval: Dur,
    /// Timeout of each SMTP command and of connecting.
    pub smtp_timeout: Dur,
    /// TLS towards MX hosts: `may` (STARTTLS when offered, certificate not checked, plain
    /// when it fails: Postfix's `smtp_tls_security_level = may`) or `none`.
    pub mx_tls: SmtpTls,
    /// TLS towards the smarthost: `none`, `may`, `encrypt` (STARTTLS required, certificate not
    /// checked) or `verify` (required, certificate checked against the system's roots and
    /// `smarthost_ca`, name = the smarthost's host).
    pub smarthost_tls: SmtpTls,
    /// A PEM file of extra trusted roots for `smarthost_tls = "verify"`; empty for none.
    pub smarthost_ca: PathBuf,
}

/// How an outbound SMTP connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Never.
    None,
    /// When offered; unverified; in the clear when the handshake fails.
    May,
    /// Required; unverified.
    Encrypt,
    /// Required and verified.
    Verify,
}

/// The body of a mobile-terminated MESSAGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtBody {
    /// RP-DATA as ASCII hex (OpenBTS).
    Hex,
    /// RP-DATA as octets (TS 24.341).
    Binary,
    /// text/plain.
    Text,
}

/// What happens to texts for a subscriber with an e-mail address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailMode {
    /// To the handset and, as mail, to the address.
    Copy,
    /// Only as mail to the address.
    Forward,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            enabled: true,
            bts: SocketAddr::from(([127, 0, 0, 1], 5062)),
            bts_transport: crate::sip::Transport::Udp,
            body: MtBody::Hex,
            smarthost: String::new(),
            email_mode: EmailMode::Copy,
            email_sender: "Email".into(),
            notice_sender: "101".into(),
            subject_line: true,
            strip_quotes: true,
            max_segments: 10,
            max_jobs: 256,
            max_sip: 128,
            max_smtp: 20,
            handset_backoff_min: Dur(Duration::from_secs(60)),
            handset_backoff_max: Dur(Duration::from_secs(1800)),
            mail_backoff_min: Dur(Duration::from_secs(300)),
            mail_backoff_max: Dur(Duration::from_secs(4000)),
            delay_warning: Dur(Duration::ZERO),
            rescan_interval: Dur(Duration::from_secs(60)),
            smtp_timeout: Dur(Duration::from_secs(60)),
            mx_tls: SmtpTls::May,
            smarthost_tls: SmtpTls::May,
            smarthost_ca: PathBuf::new(),
        }
    }
}

impl DeliveryConfig {
    /// Checks this section's bounds (`all`: the whole file, for bounds across sections).
    /// Returns the key and the reason of the first violation.
    pub(super) fn check(&self, _all: &Config) -> Result<(), (&'static str, String)> {
        let d = self;
        check_bounds(&[
            Bound::Num("delivery.max_segments", u64::from(d.max_segments), 1, 255),
            Bound::Num("delivery.max_jobs", d.max_jobs as u64, 1, 100_000),
            Bound::Num("delivery.max_sip", d.max_sip as u64, 1, 100_000),
            Bound::Num("delivery.max_smtp", d.max_smtp as u64, 1, 10_000),
        ])?;
        for (key, min, max) in [
            (
                "delivery.handset_backoff_min",
                d.handset_backoff_min,
                d.handset_backoff_max,
            ),
            (
                "delivery.mail_backoff_min",
                d.mail_backoff_min,
                d.mail_backoff_max,
            ),
        ] {
            check_bounds(&[
                Bound::secs(key, min.0, 1, 86_400),
                Bound::Time(key, max.0, min.0, Duration::from_secs(86_400)),
            ])?;
        }
        check_bounds(&[
            Bound::Time(
                "delivery.delay_warning",
                d.delay_warning.0,
                Duration::ZERO,
                Duration::from_secs(30 * 86_400),
            ),
            Bound::secs("delivery.rescan_interval", d.rescan_interval.0, 1, 86_400),
            Bound::secs("delivery.smtp_timeout", d.smtp_timeout.0, 1, 3600),
        ])?;
        let sender_ok = |s: &str| {
            let a = crate::sms::Address::parse(s);
            !s.is_empty()
                && crate::sms::address::encode_tp(&a).is_ok()
                && s.chars().count() <= crate::sms::address::MAX_ALPHANUMERIC
        };
        if !sender_ok(&d.email_sender) {
            return Err((
                "delivery.email_sender",
                "must be a short code or 1 to 11 GSM characters".into(),
            ));
        }
        if d.notice_sender.is_empty()
            || d.notice_sender.len() > 20
            || !d.notice_sender.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(("delivery.notice_sender", "must be 1 to 20 digits".into()));
        }
        if !matches!(d.mx_tls, SmtpTls::None | SmtpTls::May) {
            return Err((
                "delivery.mx_tls",
                "\"none\" or \"may\" (MX hosts have no name to verify without DANE)".into(),
            ));
        }
        if !d.smarthost.is_empty() && split_host_port(&d.smarthost).is_none() {
            return Err((
                "delivery.smarthost",
                format!("{:?} is not host:port", d.smarthost),
            ));
        }
        Ok(())
    }
}
