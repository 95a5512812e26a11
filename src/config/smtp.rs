//! `[smtp]` and `[[smtp.users]]`: each key's type, default and bounds.

use super::*;

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

impl SmtpConfig {
    /// Checks this section's bounds (`all`: the whole file, for bounds across sections).
    /// Returns the key and the reason of the first violation.
    pub(super) fn check(&self, all: &Config) -> Result<(), (&'static str, String)> {
        let smtp = self;
        check_bounds(&[
            Bound::Num(
                "smtp.max_message_size",
                smtp.max_message_size.0,
                1 << 10,
                all.spool.max_message_size.0,
            ),
            Bound::Num(
                "smtp.max_recipients",
                smtp.max_recipients as u64,
                1,
                100_000,
            ),
            Bound::Num("smtp.max_errors", u64::from(smtp.max_errors), 1, 1000),
            Bound::Num(
                "smtp.max_connections",
                smtp.max_connections as u64,
                1,
                65_536,
            ),
            Bound::secs("smtp.idle_timeout", smtp.idle_timeout.0, 1, 3600),
            Bound::Num(
                "smtp.max_connections_per_client",
                smtp.max_connections_per_client as u64,
                0,
                65_536,
            ),
            Bound::secs("smtp.session_timeout", smtp.session_timeout.0, 1, 86_400),
            Bound::secs("smtp.data_timeout", smtp.data_timeout.0, 1, 86_400),
        ])?;
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
        smtp.users.iter().try_for_each(SmtpUser::check)
    }
}

impl SmtpUser {
    /// A `[[smtp.users]]` entry: a name, a crypt hash (never a password), numbers.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let u = self;
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
        Ok(())
    }
}
