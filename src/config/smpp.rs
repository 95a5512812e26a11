//! `[smpp]` and `[[smpp.esme]]`: each key's type, default and bounds.

use super::*;

/// `[smpp]`: smsmta as an SMSC for ESMEs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    /// Where the SMPP server listens (`127.0.0.1:2775`); empty: no SMPP server.
    pub listen: String,
    /// Our system_id, in bind responses.
    pub system_id: String,
    /// Open connections at most (binds and connections not yet bound).
    pub max_connections: usize,
    /// Open connections from one address at most.
    pub max_connections_per_client: usize,
    /// submit_sm a bind may have outstanding (read, not yet answered); the next is not read
    /// until one is answered.
    pub window: usize,
    /// The largest PDU read; a longer command_length ends the connection.
    pub max_pdu_size: Size,
    /// How long a new connection has to bind.
    pub bind_timeout: Dur,
    /// A bound connection with no PDU for this long (enquire_link included) is closed.
    pub idle_timeout: Dur,
    /// PDUs that do not decode before the connection is closed.
    pub max_errors: u32,
    /// The accounts that may bind.
    pub esme: Vec<EsmeAccount>,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            listen: String::new(),
            system_id: "smsmta".into(),
            max_connections: 64,
            max_connections_per_client: 16,
            window: 100,
            max_pdu_size: Size(4 << 10),
            bind_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(120)),
            max_errors: 10,
            esme: Vec::new(),
        }
    }
}

/// An ESME that may bind to smsmta's SMPP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsmeAccount {
    /// Its system_id (at most 15 characters).
    pub system_id: String,
    /// SHA-512 crypt hash of its password (`smsmta hash-password`); SMPP passwords are at
    /// most 8 characters.
    pub password_hash: String,
    /// The networks it may bind from (default: loopback only).
    #[serde(default = "loopback")]
    pub networks: Vec<Cidr>,
    /// The source addresses it may use in submit_sm: exact, or a prefix ending in `*`.
    pub sources: Vec<String>,
    /// submit_sm accepted a second at most on one bind (0: no cap); above it ESME_RTHROTTLED.
    #[serde(default)]
    pub max_rate: u32,
    /// Numbers whose texts (from handsets, or mail) go to this ESME as deliver_sm, while one
    /// of its receiver or transceiver binds is up (retried while it is not).
    #[serde(default)]
    pub service_numbers: Vec<String>,
}

impl SmppConfig {
    /// Checks this section's bounds. Returns the key and the reason of the first violation.
    pub(super) fn check(&self, _all: &Config) -> Result<(), (&'static str, String)> {
        let s = self;
        if !s.listen.is_empty() && s.listen.parse::<SocketAddr>().is_err() {
            return Err((
                "smpp.listen",
                format!("{:?} is not a socket address", s.listen),
            ));
        }
        if s.system_id.is_empty() || s.system_id.len() > 15 || !s.system_id.is_ascii() {
            return Err(("smpp.system_id", "must be 1 to 15 ASCII characters".into()));
        }
        check_bounds(&[
            Bound::Num("smpp.max_connections", s.max_connections as u64, 1, 65_536),
            Bound::Num(
                "smpp.max_connections_per_client",
                s.max_connections_per_client as u64,
                1,
                65_536,
            ),
            Bound::Num("smpp.window", s.window as u64, 1, 10_000),
            Bound::Num("smpp.max_pdu_size", s.max_pdu_size.0, 256, 1 << 20),
            Bound::secs("smpp.bind_timeout", s.bind_timeout.0, 1, 300),
            Bound::secs("smpp.idle_timeout", s.idle_timeout.0, 1, 86_400),
            Bound::Num("smpp.max_errors", u64::from(s.max_errors), 1, 1000),
        ])?;
        s.esme.iter().try_for_each(EsmeAccount::check)
    }
}

impl EsmeAccount {
    fn check(&self) -> Result<(), (&'static str, String)> {
        let id = &self.system_id;
        if id.is_empty() || id.len() > 15 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(("smpp.esme", format!("bad system_id {id:?}")));
        }
        if !self.password_hash.starts_with("$6$") {
            return Err((
                "smpp.esme",
                format!(
                    "{id:?}: password_hash must be a SHA-512 crypt hash ($6$...), never a plain password"
                ),
            ));
        }
        if let Some(bad) = self
            .service_numbers
            .iter()
            .find(|n| crate::identity::Msisdn::parse(n).is_err())
        {
            return Err(("smpp.esme", format!("{id:?}: {bad:?} is not a number")));
        }
        if let Some(bad) = self
            .sources
            .iter()
            .find(|s| s.is_empty() || s.len() > 20 || !s.is_ascii())
        {
            return Err(("smpp.esme", format!("{id:?}: bad source {bad:?}")));
        }
        Ok(())
    }
}
