//! Configuration: a TOML file, typed, with a default and bounds for every key.
//!
//! Pure except for [`Config::load`], which reads one file. Unknown keys are refused (a typo
//! must not silently fall back to a default); every error names the file, the key and the
//! reason. Durations carry units (`"90s"`, `"5m"`, `"3d"`), sizes too (`"64KiB"`, `"10MB"`).
//! The default configuration is `config/smsmta.toml`, embedded in the binary; it listens on
//! loopback only and keeps the spool in `./spool`.
//!
//! Each section's keys (type, default, bounds) live together in the file named for it:
//! `spool.rs` (`[spool]`, `[queue]`), `sip.rs` (`[sip]`, `[[short_codes]]`), `smtp.rs`,
//! `registry.rs`, `delivery.rs`; the value types (durations, sizes, networks) in `values.rs`.
//! Every key is documented in `docs/configuration.md`, and a test fails when the code,
//! `config/smsmta.toml` and that page disagree.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::identity::Msisdn;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod delivery;
mod live;
mod registry;
pub mod reload;
mod sip;
mod smpp;
mod smtp;
mod spool;
mod values;

pub use delivery::*;
pub use live::Live;
pub use registry::*;
pub use sip::*;
pub use smpp::*;
pub use smtp::*;
pub use spool::*;
pub use values::*;

/// The embedded default configuration file (`config/smsmta.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../config/smsmta.toml");

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
    /// The SMPP side (smsmta as SMSC).
    pub smpp: SmppConfig,
    /// The subscriber registry.
    pub registry: RegistryConfig,
    /// The delivery worker.
    pub delivery: DeliveryConfig,
    /// Logging.
    pub log: LogConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Short codes handsets can text (smqueue's 101, 411, 2337); `[]` for none.
    pub short_codes: Vec<ShortCode>,
}

/// `[metrics]`: the Prometheus endpoint (`/metrics`, `/healthz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve it (off by default).
    pub enabled: bool,
    /// Where (loopback by default; anyone who reaches it sees the queue's shape).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    pub level: String,
    /// `"text"` (one line an event, Postfix-style) or `"json"` (one JSON object a line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Plain lines; colour only when stderr is a terminal (and `NO_COLOR` is unset).
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, fields (queue_id, peer...), message.
    Json,
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
            smpp: SmppConfig::default(),
            registry: RegistryConfig::default(),
            delivery: DeliveryConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            short_codes: default_short_codes(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
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
        check_short_codes(&self.short_codes)?;
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
        check_bounds(&[
            Bound::Time(
                "shutdown_timeout",
                self.shutdown_timeout.0,
                Duration::from_millis(100),
                Duration::from_secs(600),
            ),
            Bound::Num("worker_threads", self.worker_threads as u64, 0, 1024),
            Bound::Num(
                "spool.journal_segment_size",
                self.spool.journal_segment_size.0,
                64 << 10,
                1 << 30,
            ),
            Bound::Num("spool.max_batch", self.spool.max_batch as u64, 1, 65_536),
            Bound::Num(
                "spool.max_message_size",
                self.spool.max_message_size.0,
                1 << 10,
                crate::spool::queue_file::MAX_SECTION as u64 - crate::spool::OWN_HEADROOM,
            ),
        ])?;
        if !is_domain(&self.hostname) {
            return Err((
                "hostname",
                format!("{:?} is not a host name", self.hostname),
            ));
        }
        self.queue.check(self)?;
        self.sip.check(self)?;
        self.smtp.check(self)?;
        self.registry.check(self)?;
        self.smpp.check(self)?;
        self.delivery.check(self)?;
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

    #[test]
    fn upstream_tls_is_refused_without_roots_that_load_and_its_options_without_tls() {
        let up = |extra: &str| {
            format!(
                "[[smpp.upstream]]\nname = \"agg\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"s\"\npassword = \"p\"\n{extra}\n"
            )
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("none.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
        for (extra, says) in [
            (
                format!("tls = true\ntls_ca = {:?}", missing.display().to_string()),
                "none.pem",
            ),
            (
                format!("tls = true\ntls_ca = {:?}", empty.display().to_string()),
                "no certificate",
            ),
            ("tls_ca = \"/x.pem\"".to_string(), "need tls = true"),
            ("tls_name = \"smsc\"".to_string(), "need tls = true"),
            (
                "tls = true\ntls_name = \"bad name!\"\ntls_ca = \"tests/fixtures/tls/ca.pem\""
                    .to_string(),
                "tls_name",
            ),
        ] {
            let e = Config::parse(&up(&extra), "u.toml")
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.key, "smpp.upstream", "{extra}: {}", e.reason);
            assert!(e.reason.contains(says), "{extra}: {}", e.reason);
        }
        let ok = up("tls = true\ntls_ca = \"tests/fixtures/tls/ca.pem\"");
        assert!(Config::parse(&ok, "u.toml").is_ok());
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
