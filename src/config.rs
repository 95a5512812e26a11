//! Configuration: a TOML file, typed, with a default and bounds for every key.
//!
//! Pure except for [`Config::load`], which reads one file. Unknown keys are refused (a typo
//! must not silently fall back to a default); every error names the file, the key and the
//! reason. Durations carry units (`"90s"`, `"5m"`, `"3d"`), sizes too (`"64KiB"`, `"10MB"`).
//! The default configuration is `config/smsmta.toml`, embedded in the binary; it listens on
//! loopback only and keeps the spool in `./spool`.
//!
//! Every key is documented in `docs/configuration.md`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::identity::Msisdn;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The embedded default configuration file (`config/smsmta.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/smsmta.toml");

/// A configuration error, naming the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    /// The file the configuration came from (`<embedded>` for the default).
    pub file: String,
    /// The offending key, dotted (`sip.listen`), or a position when the TOML does not parse.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Local SMS domains: mail to `<number>@<domain>` is a text for a handset. The first one
    /// names the senders of texts that become mail.
    pub domains: Vec<String>,
    /// This host's name, for Received lines, Message-IDs and the SMTP greeting.
    pub hostname: String,
    /// The spool root; relative paths are taken from the working directory.
    pub spool_dir: PathBuf,
    /// How long `serve` waits for work in flight at shutdown.
    pub shutdown_timeout: Dur,
    /// Threads running the listeners and delivery (the async runtime); 0: one fewer than the
    /// CPUs, at least one, leaving a CPU to the spool's own two threads (journal commit and
    /// materialization).
    pub worker_threads: usize,
    /// Spool tuning.
    pub spool: SpoolConfig,
    /// Message lifetimes.
    pub queue: QueueConfig,
    /// The SIP side.
    pub sip: SipConfig,
    /// The SMTP side.
    pub smtp: SmtpConfig,
    /// The subscriber registry.
    pub registry: RegistryConfig,
    /// The delivery worker.
    pub delivery: DeliveryConfig,
    /// Logging.
    pub log: LogConfig,
    /// Short codes handsets can text (smqueue's 101, 411, 2337); `[]` for none.
    pub short_codes: Vec<ShortCode>,
}

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

fn yes() -> bool {
    true
}
fn seven() -> usize {
    7
}
fn ten() -> usize {
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

/// `[spool]`: the write-ahead journal and queue files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Acknowledge from the write-ahead journal (group commit). When false every commit
    /// writes its own queue file (tmp, fsync, rename, directory fsync) before it returns.
    pub journal: bool,
    /// Size at which the journal moves to a new segment file.
    pub journal_segment_size: Size,
    /// Most messages covered by one journal flush.
    pub max_batch: usize,
    /// Largest message the spool takes.
    pub max_message_size: Size,
    /// Free space kept on the spool's file system: below it new mail is refused temporarily
    /// (SMTP 452 4.3.1, SIP 503) while what is queued goes on being delivered; 0 for none.
    pub min_free: Size,
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
    /// `accept` (the sender becomes IMSI<digits>@domain).
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

/// What to do with a MESSAGE from an unknown IMSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownImsi {
    /// Answer 403.
    Reject,
    /// Accept it as IMSI<digits>@domain.
    Accept,
}

/// `[queue]`: message lifetimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// How long an SMS for a handset is kept trying (shortened by its validity period).
    pub sms_lifetime: Dur,
    /// How long mail for an e-mail recipient is kept trying.
    pub mail_lifetime: Dur,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            sms_lifetime: Dur(Duration::from_secs(3 * 86_400)),
            mail_lifetime: Dur(Duration::from_secs(5 * 86_400)),
        }
    }
}

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Clients allowed to relay to domains that are not ours.
    pub trusted_networks: Vec<Cidr>,
    /// Largest message (advertised with SIZE; 552 5.3.4 beyond).
    pub max_message_size: Size,
    /// Most recipients per message (452 4.5.3 beyond).
    pub max_recipients: usize,
    /// Errors per session before 421 and close.
    pub max_errors: u32,
    /// Connections at once (421 beyond).
    pub max_connections: usize,
    /// Idle and command timeout.
    pub idle_timeout: Dur,
    /// Connections at once from one address outside the trusted networks (0: no limit).
    pub max_connections_per_client: usize,
    /// The longest a whole session may last, however busy.
    pub session_timeout: Dur,
    /// The longest the DATA phase of one message may last.
    pub data_timeout: Dur,
    /// Messages an hour per client address (450 4.7.1 beyond); 0 = no limit.
    pub rate_limit: u32,
    /// Country code for national numbers in local parts (`"1"`); empty: none.
    pub country_code: String,
    /// National prefix replaced by the country code (`"0"`).
    pub national_prefix: String,
    /// Refuse recipients whose number is not a subscriber in the registry (550 5.1.1).
    pub registry_authoritative: bool,
    /// PEM certificate chain for STARTTLS; empty: no TLS (and so no AUTH).
    pub tls_cert: PathBuf,
    /// PEM private key for STARTTLS.
    pub tls_key: PathBuf,
    /// A second listener for submission (port 587 style: AUTH required before MAIL); empty
    /// for none.
    pub submission_listen: String,
    /// Users who may authenticate (AUTH PLAIN/LOGIN, under TLS only).
    pub users: Vec<SmtpUser>,
}

/// A user who may authenticate over SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpUser {
    /// Login name.
    pub name: String,
    /// SHA-512 crypt hash (`$6$...`, as `openssl passwd -6` or `smsmta hash-password` print).
    pub password_hash: String,
    /// The MAIL FROM addresses this user may use once authenticated: addresses, or `@domain`
    /// for any address in a domain. Empty: only the login name itself (Postfix's
    /// `reject_sender_login_mismatch`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub senders: Vec<String>,
    /// Numbers this user may send texts as, with MAIL FROM `<number>@<an SMS domain>`: such a
    /// text reaches handsets from that number (an application that owns a short code, say).
    /// Empty: texts from this user come from `delivery.email_sender`, like any mail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<String>,
}

impl SmtpUser {
    /// The number `sender` names in our SMS domains, when this user may send texts as it.
    pub fn number_for(&self, sender: &str, local_domains: &[String]) -> Option<Msisdn> {
        let n = Msisdn::in_address(sender, local_domains)?;
        self.numbers
            .iter()
            .any(|m| Msisdn::parse(m).is_ok_and(|m| m == n))
            .then_some(n)
    }

    /// Whether this user may send as `sender` (ASCII case ignored; the null sender never).
    pub fn may_send_as(&self, sender: &str) -> bool {
        if sender.is_empty() {
            return false;
        }
        if self.senders.is_empty() {
            return sender.eq_ignore_ascii_case(&self.name);
        }
        self.senders.iter().any(|s| match s.strip_prefix('@') {
            Some(domain) => sender
                .rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)),
            None => s.eq_ignore_ascii_case(sender),
        })
    }
}

/// `[registry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// The sqlite database; empty means `<spool_dir>/registry.sqlite`.
    pub path: PathBuf,
    /// An OpenBTS subscriber registry (sqlite with `sip_buddies` and `dialdata_table`), read
    /// only, consulted after ours; empty for none.
    pub openbts_path: PathBuf,
    /// How long a REGISTER binding lasts when the request names no expiry.
    pub default_expires: Dur,
    /// The longest binding granted.
    pub max_expires: Dur,
    /// How long a lookup waits for the OpenBTS database while sipauthserve writes it; past
    /// that the lookup is a temporary failure (SIP 503, delivery retried).
    pub openbts_busy_timeout: Dur,
    /// How often the OpenBTS registry is checked for handsets that registered (their
    /// `sip_buddies` row changed), whose texts are then due at once; 0 turns it off.
    pub openbts_poll: Dur,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    pub level: String,
}

fn loopback() -> Vec<Cidr> {
    vec![
        Cidr {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            prefix: 128,
        },
    ]
}

impl Config {
    /// The async runtime's worker threads: `worker_threads`, or when 0 one fewer than
    /// `cpus`, at least one.
    pub fn runtime_threads(&self, cpus: usize) -> usize {
        match self.worker_threads {
            0 => cpus.saturating_sub(1).max(1),
            n => n,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domains: vec!["sms.localhost".into()],
            hostname: "localhost".into(),
            spool_dir: PathBuf::from("./spool"),
            shutdown_timeout: Dur(Duration::from_secs(10)),
            worker_threads: 0,
            spool: SpoolConfig::default(),
            queue: QueueConfig::default(),
            sip: SipConfig::default(),
            smtp: SmtpConfig::default(),
            registry: RegistryConfig::default(),
            delivery: DeliveryConfig::default(),
            log: LogConfig::default(),
            short_codes: default_short_codes(),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            journal: true,
            journal_segment_size: Size(16 << 20),
            max_batch: 512,
            max_message_size: Size(10 << 20),
            min_free: Size(64 << 20),
        }
    }
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

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            trusted_networks: loopback(),
            max_message_size: Size(10 << 20),
            max_recipients: 1000,
            max_errors: 10,
            max_connections: 256,
            idle_timeout: Dur(Duration::from_secs(300)),
            max_connections_per_client: 50,
            session_timeout: Dur(Duration::from_secs(1800)),
            data_timeout: Dur(Duration::from_secs(600)),
            rate_limit: 0,
            country_code: String::new(),
            national_prefix: "0".into(),
            registry_authoritative: true,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            submission_listen: String::new(),
            users: Vec::new(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            path: PathBuf::new(),
            openbts_path: PathBuf::new(),
            default_expires: Dur(Duration::from_secs(3600)),
            max_expires: Dur(Duration::from_secs(86_400)),
            openbts_busy_timeout: Dur(Duration::from_secs(1)),
            openbts_poll: Dur(Duration::from_millis(500)),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read, does not parse, has an unknown key, or a
    /// value is out of bounds.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            key: "(file)".into(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The embedded default configuration.
    ///
    /// # Errors
    /// Only if the embedded file is broken, which a unit test rules out.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(DEFAULT_TOML, "<embedded config/smsmta.toml>")
    }

    /// Parses and validates TOML text; `file` names its origin in errors.
    ///
    /// # Errors
    /// [`ConfigError`] as for [`Config::load`].
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let key = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                }
                None => "(toml)".into(),
            };
            ConfigError {
                file: file.into(),
                key,
                reason: e.message().trim().to_string(),
            }
        })?;
        cfg.validate().map_err(|(key, reason)| ConfigError {
            file: file.into(),
            key: key.into(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Checks every bound. Returns the key and the reason of the first violation.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let mut codes = std::collections::HashSet::new();
        for c in &self.short_codes {
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
        if self.domains.is_empty() {
            return Err(("domains", "at least one local SMS domain is needed".into()));
        }
        for d in &self.domains {
            if !is_domain(d) {
                return Err(("domains", format!("{d:?} is not a domain name")));
            }
        }
        if self.spool_dir.as_os_str().is_empty() {
            return Err(("spool_dir", "must not be empty".into()));
        }
        bound(
            "shutdown_timeout",
            self.shutdown_timeout.0,
            Duration::from_millis(100),
            Duration::from_secs(600),
        )?;
        bound_num("worker_threads", self.worker_threads as u64, 0, 1024)?;
        bound_num(
            "spool.journal_segment_size",
            self.spool.journal_segment_size.0,
            64 << 10,
            1 << 30,
        )?;
        bound_num("spool.max_batch", self.spool.max_batch as u64, 1, 65_536)?;
        bound_num(
            "spool.max_message_size",
            self.spool.max_message_size.0,
            1 << 10,
            crate::spool::queue_file::MAX_SECTION as u64 - crate::spool::OWN_HEADROOM,
        )?;
        if !is_domain(&self.hostname) {
            return Err((
                "hostname",
                format!("{:?} is not a host name", self.hostname),
            ));
        }
        let q = &self.queue;
        bound(
            "queue.sms_lifetime",
            q.sms_lifetime.0,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        )?;
        bound(
            "queue.mail_lifetime",
            q.mail_lifetime.0,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        )?;
        let sip = &self.sip;
        if sip.smsc_name.is_empty()
            || !sip
                .smsc_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        {
            return Err(("sip.smsc_name", "must be a non-empty SIP user name".into()));
        }
        bound_num("sip.max_message_size", sip.max_message_size.0, 256, 1 << 20)?;
        bound_num("sip.max_in_flight", sip.max_in_flight as u64, 1, 1 << 20)?;
        bound_num("sip.max_connections", sip.max_connections as u64, 1, 65_536)?;
        bound_num(
            "sip.max_connections_per_client",
            sip.max_connections_per_client as u64,
            0,
            65_536,
        )?;
        bound(
            "sip.retry_after",
            sip.retry_after.0,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        bound(
            "sip.dedup_window",
            sip.dedup_window.0,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?;
        bound(
            "sip.t1",
            sip.t1.0,
            Duration::from_millis(50),
            Duration::from_secs(5),
        )?;
        bound(
            "sip.timer_f",
            sip.timer_f.0,
            Duration::from_secs(1),
            Duration::from_secs(90),
        )?;
        bound(
            "registry.openbts_busy_timeout",
            self.registry.openbts_busy_timeout.0,
            Duration::from_millis(10),
            Duration::from_secs(30),
        )?;
        if !self.registry.openbts_poll.0.is_zero() {
            bound(
                "registry.openbts_poll",
                self.registry.openbts_poll.0,
                Duration::from_millis(50),
                Duration::from_secs(3600),
            )?;
        }
        bound(
            "sip.concat_timeout",
            sip.concat_timeout.0,
            Duration::from_secs(10),
            Duration::from_secs(86_400),
        )?;
        bound(
            "sip.tcp_idle_timeout",
            sip.tcp_idle_timeout.0,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        if sip.subject.contains(['\r', '\n']) {
            return Err(("sip.subject", "must be one line".into()));
        }
        let smtp = &self.smtp;
        bound_num(
            "smtp.max_message_size",
            smtp.max_message_size.0,
            1 << 10,
            self.spool.max_message_size.0,
        )?;
        bound_num(
            "smtp.max_recipients",
            smtp.max_recipients as u64,
            1,
            100_000,
        )?;
        bound_num("smtp.max_errors", u64::from(smtp.max_errors), 1, 1000)?;
        bound_num(
            "smtp.max_connections",
            smtp.max_connections as u64,
            1,
            65_536,
        )?;
        bound(
            "smtp.idle_timeout",
            smtp.idle_timeout.0,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        bound_num(
            "smtp.max_connections_per_client",
            smtp.max_connections_per_client as u64,
            0,
            65_536,
        )?;
        bound(
            "smtp.session_timeout",
            smtp.session_timeout.0,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?;
        bound(
            "smtp.data_timeout",
            smtp.data_timeout.0,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?;
        if !smtp.country_code.bytes().all(|b| b.is_ascii_digit()) || smtp.country_code.len() > 3 {
            return Err((
                "smtp.country_code",
                "must be 1 to 3 digits, or empty".into(),
            ));
        }
        if !smtp.national_prefix.bytes().all(|b| b.is_ascii_digit())
            || smtp.national_prefix.len() > 2
        {
            return Err(("smtp.national_prefix", "must be up to 2 digits".into()));
        }
        if smtp.tls_cert.as_os_str().is_empty() != smtp.tls_key.as_os_str().is_empty() {
            return Err(("smtp.tls_cert", "tls_cert and tls_key go together".into()));
        }
        if !smtp.submission_listen.is_empty()
            && smtp.submission_listen.parse::<SocketAddr>().is_err()
        {
            return Err((
                "smtp.submission_listen",
                format!("{:?} is not a socket address", smtp.submission_listen),
            ));
        }
        for u in &smtp.users {
            if u.name.is_empty() || u.name.contains(['\0', ' ']) {
                return Err(("smtp.users", format!("bad user name {:?}", u.name)));
            }
            if !u.password_hash.starts_with("$6$") {
                return Err((
                    "smtp.users",
                    format!(
                        "user {:?}: password_hash must be a SHA-512 crypt hash ($6$...), never a plain password",
                        u.name
                    ),
                ));
            }
            if let Some(bad) = u.numbers.iter().find(|n| Msisdn::parse(n).is_err()) {
                return Err((
                    "smtp.users",
                    format!("user {:?}: {bad:?} is not a number (1-15 digits)", u.name),
                ));
            }
        }
        let r = &self.registry;
        bound(
            "registry.default_expires",
            r.default_expires.0,
            Duration::from_secs(10),
            Duration::from_secs(7 * 86_400),
        )?;
        bound(
            "registry.max_expires",
            r.max_expires.0,
            Duration::from_secs(10),
            Duration::from_secs(7 * 86_400),
        )?;
        let d = &self.delivery;
        bound_num("delivery.max_segments", u64::from(d.max_segments), 1, 255)?;
        bound_num("delivery.max_jobs", d.max_jobs as u64, 1, 100_000)?;
        bound_num("delivery.max_sip", d.max_sip as u64, 1, 100_000)?;
        bound_num("delivery.max_smtp", d.max_smtp as u64, 1, 10_000)?;
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
            bound(
                key,
                min.0,
                Duration::from_secs(1),
                Duration::from_secs(86_400),
            )?;
            bound(key, max.0, min.0, Duration::from_secs(86_400))?;
        }
        bound(
            "delivery.delay_warning",
            d.delay_warning.0,
            Duration::ZERO,
            Duration::from_secs(30 * 86_400),
        )?;
        bound(
            "delivery.rescan_interval",
            d.rescan_interval.0,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?;
        bound(
            "delivery.smtp_timeout",
            d.smtp_timeout.0,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
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
        if self.log.level.trim().is_empty() {
            return Err(("log.level", "must not be empty".into()));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ("log.level", e.to_string()))?;
        Ok(())
    }

    /// The registry database path, with the default applied.
    pub fn registry_path(&self) -> PathBuf {
        if self.registry.path.as_os_str().is_empty() {
            self.spool_dir.join("registry.sqlite")
        } else {
            self.registry.path.clone()
        }
    }

    /// The OpenBTS registry path, if configured.
    pub fn openbts_path(&self) -> Option<PathBuf> {
        (!self.registry.openbts_path.as_os_str().is_empty())
            .then(|| self.registry.openbts_path.clone())
    }

    /// The domain that names senders of texts that become mail (the first of `domains`).
    pub fn sms_domain(&self) -> &str {
        self.domains
            .first()
            .map(String::as_str)
            .unwrap_or("sms.localhost")
    }

    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        let mut effective = self.clone();
        effective.registry.path = self.registry_path();
        toml::to_string_pretty(&effective).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// Whether `domain` (any case, with or without a trailing dot) is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.strip_suffix('.').unwrap_or(domain);
        self.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }
}

fn bound(
    key: &'static str,
    v: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), (&'static str, String)> {
    if v < min || v > max {
        return Err((
            key,
            format!("{} is out of bounds ({} to {})", Dur(v), Dur(min), Dur(max)),
        ));
    }
    Ok(())
}

fn bound_num(key: &'static str, v: u64, min: u64, max: u64) -> Result<(), (&'static str, String)> {
    if v < min || v > max {
        return Err((key, format!("{v} is out of bounds ({min} to {max})")));
    }
    Ok(())
}

/// Splits `host:port` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        s.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A duration written with a unit: `ms`, `s`, `m`, `h`, `d` (e.g. `"90s"`, `"5m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?} has no unit (use ms, s, m, h or d)"))?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} does not start with a whole number"))?;
        let ms = match unit.trim() {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" | "min" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
        }
        .ok_or_else(|| format!("{s:?} is too large"))?;
        Ok(Dur(Duration::from_millis(ms)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (n, u) in units {
            if ms >= n && ms.is_multiple_of(n) {
                return write!(f, "{}{u}", ms / n);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written with a unit: `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} does not start with a whole number"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{u}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// An address block, `192.0.2.0/24` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this block. IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether any block in `nets` holds `ip`.
pub fn trusted(nets: &[Cidr], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_default_leaves_a_cpu_to_the_spool_threads() {
        let c = Config::default();
        assert_eq!(c.runtime_threads(1), 1);
        assert_eq!(c.runtime_threads(2), 1);
        assert_eq!(c.runtime_threads(8), 7);
        let c = Config::parse("worker_threads = 3\n", "w.toml").unwrap();
        assert_eq!(c.runtime_threads(2), 3);
        let e = Config::parse("worker_threads = 5000\n", "w.toml").unwrap_err();
        assert_eq!(e.key, "worker_threads");
    }

    #[test]
    fn embedded_default_is_valid_and_equals_the_code_defaults() {
        let cfg = Config::embedded().unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.sip.listen, "127.0.0.1:5063".parse().unwrap());
        assert_eq!(cfg.smtp.listen, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(cfg.domains, vec!["sms.localhost".to_string()]);
        assert_eq!(
            cfg.registry_path(),
            PathBuf::from("./spool/registry.sqlite")
        );
    }

    /// The dotted names of a TOML value's leaves (an array is a leaf: `smtp.users`).
    fn leaf_keys(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaf_keys(v, &name, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }

    #[test]
    fn the_code_the_embedded_file_and_the_docs_name_the_same_keys() {
        let mut code = std::collections::BTreeSet::new();
        // Every optional key set, so that it is serialized too.
        let mut all = Config::default();
        all.sip.advertise = Some("192.0.2.1".parse().unwrap());
        let v = toml::Value::try_from(all).unwrap();
        leaf_keys(&v, "", &mut code);
        let mut file = std::collections::BTreeSet::new();
        leaf_keys(
            &toml::Value::Table(toml::from_str::<toml::Table>(DEFAULT_TOML).unwrap()),
            "",
            &mut file,
        );
        let docs_text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
        )
        .unwrap();
        // The main table; the fields of a `[[short_codes]]` entry follow in their own.
        let main = docs_text
            .split("\n`[[short_codes]]` is a table")
            .next()
            .unwrap_or("");
        let docs: std::collections::BTreeSet<String> = main
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once(" |").map(|(first, _)| first))
            // A row may name several keys: `a`, `b`.
            .flat_map(|first| first.split("`, `").map(|k| k.trim_matches('`').to_string()))
            .collect();
        let missing = |a: &std::collections::BTreeSet<String>,
                       b: &std::collections::BTreeSet<String>| {
            a.difference(b).cloned().collect::<Vec<_>>()
        };
        // An optional key is a comment in the file.
        file.insert("sip.advertise".into());
        assert!(
            missing(&code, &file).is_empty(),
            "not in config/smsmta.toml: {:?}",
            missing(&code, &file)
        );
        assert!(
            missing(&file, &code).is_empty(),
            "in config/smsmta.toml only: {:?}",
            missing(&file, &code)
        );
        assert!(
            missing(&code, &docs).is_empty(),
            "not in docs/configuration.md: {:?}",
            missing(&code, &docs)
        );
        assert!(
            missing(&docs, &code).is_empty(),
            "in docs/configuration.md only: {:?}",
            missing(&docs, &code)
        );
    }

    #[test]
    fn empty_file_gives_every_default() {
        assert_eq!(Config::parse("", "x.toml").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_refused_with_file_and_key() {
        let e =
            Config::parse("[sip]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", "a.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("a.toml: line 3:"), "{s}");
        assert!(s.contains("lisen"), "{s}");
    }

    #[test]
    fn out_of_bounds_value_names_the_key() {
        let e = Config::parse("[spool]\nmax_batch = 0\n", "b.toml").unwrap_err();
        assert_eq!(e.key, "spool.max_batch");
        assert_eq!(e.file, "b.toml");
        let e = Config::parse("shutdown_timeout = \"2h\"\n", "b.toml").unwrap_err();
        assert_eq!(e.key, "shutdown_timeout");
    }

    #[test]
    fn bad_domain_and_bad_network_are_refused() {
        assert_eq!(
            Config::parse("domains = [\"a b\"]", "c").unwrap_err().key,
            "domains"
        );
        let e = Config::parse("[smtp]\ntrusted_networks = [\"10.0.0.0/33\"]", "c").unwrap_err();
        assert!(e.reason.contains("prefix"), "{e}");
        assert!(Config::parse("domains = []", "c").is_err());
    }

    #[test]
    fn durations_and_sizes_need_units() {
        assert_eq!("90s".parse::<Dur>().unwrap().0, Duration::from_secs(90));
        assert_eq!("3d".parse::<Dur>().unwrap().0, Duration::from_secs(259_200));
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert!("90".parse::<Dur>().is_err());
        assert!("5 weeks".parse::<Dur>().is_err());
        assert_eq!("64KiB".parse::<Size>().unwrap().0, 65_536);
        assert_eq!("10MB".parse::<Size>().unwrap().0, 10_000_000);
        assert!("3 parsecs".parse::<Size>().is_err());
        assert_eq!(Dur(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(Size(65_536).to_string(), "64KiB");
    }

    #[test]
    fn cidr_matching() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.5".parse().unwrap()));
        let v6: Cidr = "::1".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
        assert!(!v6.contains("127.0.0.1".parse().unwrap()));
        assert!(trusted(
            &Config::default().smtp.trusted_networks,
            "127.0.0.1".parse().unwrap()
        ));
        assert!(!trusted(
            &Config::default().smtp.trusted_networks,
            "192.0.2.1".parse().unwrap()
        ));
    }

    #[test]
    fn local_domains_ignore_case_and_trailing_dot() {
        let c = Config::default();
        assert!(c.is_local_domain("SMS.LocalHost."));
        assert!(!c.is_local_domain("localhost"));
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::default();
        let text = c.to_toml();
        let back = Config::parse(&text, "printed").unwrap();
        assert_eq!(back.registry_path(), c.registry_path());
        assert_eq!(back.sip, c.sip);
    }
}
