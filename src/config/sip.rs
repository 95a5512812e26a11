//! `[sip]` and `[[short_codes]]`: each key's type, default and bounds.

use super::*;

/// What a short code does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShortService {
    /// Self-provisioning: the text is the number the handset wants; it is written to our
    /// registry for the sender's IMSI when free (smqueue's 101).
    Register,
    /// A status line: queued messages, the sender's IMSI and number, the time (smqueue's 411).
    Info,
    /// "N queued." (smqueue's 2337).
    Queued,
}

/// `[[short_codes]]`: one code and its service. Replies are templates: `{number}`, `{imsi}`,
/// `{queued}`, `{time}`, `{text}`; an empty one means the built-in text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortCode {
    /// The number handsets text (digits).
    pub code: String,
    /// What it does.
    pub service: ShortService,
    /// Off: the code is an ordinary destination.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The reply (info, queued), or the welcome (register).
    #[serde(default)]
    pub reply: String,
    /// register: the sender already has a number.
    #[serde(default)]
    pub already: String,
    /// register: the number belongs to another subscriber.
    #[serde(default)]
    pub taken: String,
    /// register: the text is not an acceptable number.
    #[serde(default)]
    pub error: String,
    /// register: the fewest digits a claimed number may have.
    #[serde(default = "seven")]
    pub min_digits: usize,
    /// register: the most digits a claimed number may have.
    #[serde(default = "ten")]
    pub max_digits: usize,
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn seven() -> usize {
    7
}

pub(super) fn ten() -> usize {
    10
}

impl ShortCode {
    /// A code with the built-in replies.
    pub fn new(code: &str, service: ShortService) -> ShortCode {
        ShortCode {
            code: code.into(),
            service,
            enabled: true,
            reply: String::new(),
            already: String::new(),
            taken: String::new(),
            error: String::new(),
            min_digits: seven(),
            max_digits: ten(),
        }
    }
}

/// smqueue's codes: 101 register, 411 info, 2337 queued.
pub fn default_short_codes() -> Vec<ShortCode> {
    vec![
        ShortCode::new("101", ShortService::Register),
        ShortCode::new("411", ShortService::Info),
        ShortCode::new("2337", ShortService::Queued),
    ]
}

/// `[sip]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address.
    pub listen: SocketAddr,
    /// The address outgoing requests name in Via and Contact when `listen` is a wildcard
    /// (`0.0.0.0`, `::`); unset: the source address the kernel picks towards each peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<IpAddr>,
    /// Whether REGISTER is served (OpenBTS never sends one to its SMS server).
    pub register: bool,
    /// Sources allowed to send MESSAGE and REGISTER.
    pub trusted_networks: Vec<Cidr>,
    /// The Request-URI user that means "the SMSC": the destination is then inside the SMS.
    pub smsc_name: String,
    /// Largest MESSAGE body accepted (413 beyond).
    pub max_message_size: Size,
    /// What to do with a MESSAGE from an IMSI the registry does not know: `reject` (403) or
    /// `accept` (the sender becomes `IMSI<digits>@domain`).
    pub unknown_imsi: UnknownImsi,
    /// Requests processed at once per listener; beyond it, 503 with Retry-After.
    pub max_in_flight: usize,
    /// TCP connections at once.
    pub max_connections: usize,
    /// TCP connections at once from one address (0: no limit).
    pub max_connections_per_client: usize,
    /// Retry-After sent with 503.
    pub retry_after: Dur,
    /// How long a MESSAGE answered 2xx is remembered by Call-ID, CSeq and From tag.
    pub dedup_window: Dur,
    /// T1, the round-trip estimate (RFC 3261: 500ms); transactions live 64*T1.
    pub t1: Dur,
    /// Client transaction timeout (Timer F); OpenBTS may take 40s to page a handset.
    pub timer_f: Dur,
    /// How long the parts of a concatenated SMS wait for the rest before going out with the
    /// gap marked.
    pub concat_timeout: Dur,
    /// A Subject for mail made from SMS; empty for none.
    pub subject: String,
    /// Idle timeout of TCP connections.
    pub tcp_idle_timeout: Dur,
}

/// What to do with a MESSAGE from an unknown IMSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownImsi {
    /// Answer 403.
    Reject,
    /// Accept it as `IMSI<digits>@domain`.
    Accept,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5063)),
            advertise: None,
            register: true,
            trusted_networks: loopback(),
            smsc_name: "smsc".into(),
            max_message_size: Size(64 << 10),
            unknown_imsi: UnknownImsi::Reject,
            max_in_flight: 4096,
            max_connections: 256,
            max_connections_per_client: 50,
            retry_after: Dur(Duration::from_secs(5)),
            dedup_window: Dur(Duration::from_secs(300)),
            t1: Dur(Duration::from_millis(500)),
            timer_f: Dur(Duration::from_secs(60)),
            concat_timeout: Dur(Duration::from_secs(1800)),
            subject: String::new(),
            tcp_idle_timeout: Dur(Duration::from_secs(300)),
        }
    }
}

impl SipConfig {
    /// Checks this section's bounds (`all`: the whole file, for bounds across sections).
    /// Returns the key and the reason of the first violation.
    pub(super) fn check(&self, all: &Config) -> Result<(), (&'static str, String)> {
        let sip = self;
        if sip.smsc_name.is_empty()
            || !sip
                .smsc_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        {
            return Err(("sip.smsc_name", "must be a non-empty SIP user name".into()));
        }
        check_bounds(&[
            Bound::Num("sip.max_message_size", sip.max_message_size.0, 256, 1 << 20),
            Bound::Num("sip.max_in_flight", sip.max_in_flight as u64, 1, 1 << 20),
            Bound::Num("sip.max_connections", sip.max_connections as u64, 1, 65_536),
            Bound::Num(
                "sip.max_connections_per_client",
                sip.max_connections_per_client as u64,
                0,
                65_536,
            ),
            Bound::secs("sip.retry_after", sip.retry_after.0, 1, 3600),
            Bound::secs("sip.dedup_window", sip.dedup_window.0, 1, 86_400),
            Bound::Time(
                "sip.t1",
                sip.t1.0,
                Duration::from_millis(50),
                Duration::from_secs(5),
            ),
            Bound::secs("sip.timer_f", sip.timer_f.0, 1, 90),
            Bound::Time(
                "registry.openbts_busy_timeout",
                all.registry.openbts_busy_timeout.0,
                Duration::from_millis(10),
                Duration::from_secs(30),
            ),
        ])?;
        if !all.registry.openbts_poll.0.is_zero() {
            check_bounds(&[Bound::Time(
                "registry.openbts_poll",
                all.registry.openbts_poll.0,
                Duration::from_millis(50),
                Duration::from_secs(3600),
            )])?;
        }
        check_bounds(&[
            Bound::secs("sip.concat_timeout", sip.concat_timeout.0, 10, 86_400),
            Bound::secs("sip.tcp_idle_timeout", sip.tcp_idle_timeout.0, 1, 3600),
        ])?;
        if sip.subject.contains(['\r', '\n']) {
            return Err(("sip.subject", "must be one line".into()));
        }
        Ok(())
    }
}

/// Checks the short-code table: digits, each code once, sane digit bounds and replies.
pub(super) fn check_short_codes(codes_list: &[ShortCode]) -> Result<(), (&'static str, String)> {
    let mut codes = std::collections::HashSet::new();
    for c in codes_list {
        if crate::identity::Msisdn::parse(&c.code)
            .map(|m| m.digits() != c.code)
            .unwrap_or(true)
        {
            return Err((
                "short_codes.code",
                format!("{:?} is not a number (digits only)", c.code),
            ));
        }
        if !codes.insert(c.code.as_str()) {
            return Err(("short_codes.code", format!("{} is listed twice", c.code)));
        }
        if c.min_digits == 0 || c.min_digits > c.max_digits || c.max_digits > 15 {
            return Err((
                "short_codes.min_digits",
                "needs 1 <= min_digits <= max_digits <= 15".into(),
            ));
        }
        for t in [&c.reply, &c.already, &c.taken, &c.error] {
            if t.chars().count() > 480 || t.contains(['\r', '\0']) {
                return Err((
                    "short_codes.reply",
                    "replies are at most 480 characters, no CR".into(),
                ));
            }
        }
    }
    Ok(())
}
