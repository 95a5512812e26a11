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
    /// The SMSCs smsmta binds to as an ESME.
    pub upstream: Vec<Upstream>,
    /// Which upstream takes a text for a number that is not one of ours: the longest
    /// matching prefix wins; an empty prefix is the default route.
    pub route: Vec<SmppRoute>,
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
            upstream: Vec::new(),
            route: Vec::new(),
        }
    }
}

/// How an upstream session binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamBind {
    /// One bind_transceiver.
    Transceiver,
    /// A bind_transmitter and a bind_receiver, on two connections.
    Pair,
}

/// How a text longer than one short_message goes to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongTexts {
    /// One submit_sm a part, each with a concatenation UDH (esm_class 0x40).
    Udh,
    /// One submit_sm a part, with the sar_* TLVs.
    Sar,
    /// One submit_sm, the whole text in message_payload.
    Payload,
}

/// An SMSC (or aggregator) smsmta binds to as an ESME.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Its name, for routes and log lines.
    pub name: String,
    /// `host:port` (an IP literal or a host name).
    pub address: String,
    /// The system_id to bind with (at most 15 characters).
    pub system_id: String,
    /// The password (at most 8 characters): the SMSC needs it in clear, so it is kept here.
    pub password: String,
    /// system_type, if the SMSC wants one.
    #[serde(default)]
    pub system_type: String,
    /// `"transceiver"` or `"pair"` (a transmitter and a receiver).
    #[serde(default = "transceiver")]
    pub bind: UpstreamBind,
    /// submit_sm outstanding at most.
    #[serde(default = "ten")]
    pub window: usize,
    /// submit_sm a second at most (0: no cap); halved while the SMSC answers ESME_RTHROTTLED.
    #[serde(default)]
    pub max_rate: u32,
    /// enquire_link this often while the bind is quiet.
    #[serde(default = "thirty_secs")]
    pub enquire_link: Dur,
    /// A request with no response in this long fails (temporarily).
    #[serde(default = "thirty_secs")]
    pub response_timeout: Dur,
    /// The first wait before a reconnect; doubled after each failure, up to reconnect_max.
    #[serde(default = "one_sec")]
    pub reconnect_min: Dur,
    /// The longest wait before a reconnect.
    #[serde(default = "one_min")]
    pub reconnect_max: Dur,
    /// TLS to the SMSC (from the first byte, as SMPP over TLS is run on its own port): the
    /// certificate must verify against `tls_ca`, or the system's roots, for `tls_name`.
    #[serde(default)]
    pub tls: bool,
    /// A PEM file of the roots the SMSC's certificate must chain to; empty: the system's.
    #[serde(default)]
    pub tls_ca: std::path::PathBuf,
    /// The name the SMSC's certificate must carry; empty: the host of `address`.
    #[serde(default)]
    pub tls_name: String,
    /// `"udh"`, `"sar"` or `"payload"`.
    #[serde(default = "udh")]
    pub long_texts: LongTexts,
}

fn transceiver() -> UpstreamBind {
    UpstreamBind::Transceiver
}
fn ten() -> usize {
    10
}
fn thirty_secs() -> Dur {
    Dur(Duration::from_secs(30))
}
fn one_sec() -> Dur {
    Dur(Duration::from_secs(1))
}
fn one_min() -> Dur {
    Dur(Duration::from_secs(60))
}
fn udh() -> LongTexts {
    LongTexts::Udh
}

/// A route: numbers starting with `prefix` (digits; empty: any) go to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppRoute {
    /// Leading digits of the destination number; empty is the default route.
    pub prefix: String,
    /// The `[[smpp.upstream]]` name.
    pub upstream: String,
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
        s.esme.iter().try_for_each(EsmeAccount::check)?;
        s.upstream.iter().try_for_each(Upstream::check)?;
        for (i, u) in s.upstream.iter().enumerate() {
            if s.upstream[..i].iter().any(|o| o.name == u.name) {
                return Err(("smpp.upstream", format!("{:?} is named twice", u.name)));
            }
        }
        for r in &s.route {
            if !r.prefix.bytes().all(|b| b.is_ascii_digit()) || r.prefix.len() > 20 {
                return Err((
                    "smpp.route",
                    format!("{:?} is not a digit prefix", r.prefix),
                ));
            }
            if !s.upstream.iter().any(|u| u.name == r.upstream) {
                return Err((
                    "smpp.route",
                    format!("{:?} names no [[smpp.upstream]]", r.upstream),
                ));
            }
        }
        Ok(())
    }
}

impl Upstream {
    fn check(&self) -> Result<(), (&'static str, String)> {
        let n = &self.name;
        if n.is_empty() || n.len() > 32 || !n.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(("smpp.upstream", format!("bad name {n:?}")));
        }
        let printable =
            |v: &str, max: usize| v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic());
        if self.system_id.is_empty() || !printable(&self.system_id, 15) {
            return Err(("smpp.upstream", format!("{n:?}: bad system_id")));
        }
        if !printable(&self.password, 8) || !printable(&self.system_type, 12) {
            return Err((
                "smpp.upstream",
                format!("{n:?}: password is at most 8 and system_type 12 characters"),
            ));
        }
        match self.address.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return Err(("smpp.upstream", format!("{n:?}: address must be host:port"))),
        }
        if !self.tls && (!self.tls_ca.as_os_str().is_empty() || !self.tls_name.is_empty()) {
            return Err((
                "smpp.upstream",
                format!("{n:?}: tls_ca and tls_name need tls = true"),
            ));
        }
        if self.tls {
            crate::smpp::client::tls_connector(self)
                .map_err(|e| ("smpp.upstream", format!("{n:?}: {e}")))?;
        }
        check_bounds(&[
            Bound::Num("smpp.upstream.window", self.window as u64, 1, 1000),
            Bound::Num(
                "smpp.upstream.max_rate",
                u64::from(self.max_rate),
                0,
                100_000,
            ),
            Bound::secs("smpp.upstream.enquire_link", self.enquire_link.0, 1, 3600),
            Bound::secs(
                "smpp.upstream.response_timeout",
                self.response_timeout.0,
                1,
                300,
            ),
            Bound::secs("smpp.upstream.reconnect_min", self.reconnect_min.0, 0, 3600),
            Bound::secs(
                "smpp.upstream.reconnect_max",
                self.reconnect_max.0,
                1,
                86_400,
            ),
        ])
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
