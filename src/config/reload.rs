//! What a reload (SIGHUP) may change: the new file's values for the keys that can change at
//! run time, the running values for the rest. Pure: two configurations in, one out, with the
//! list of what was applied and what waits for a restart.
//!
//! Trusts nothing of the new file: the merged configuration is validated as a whole
//! ([`Config::parse`]) before anything is applied, so a bad file changes nothing. Keys are
//! compared as the effective configuration prints them (`smsmta check-config`); an array
//! (networks, users, routes, accounts) is one value.

use super::{Config, ConfigError};

/// The keys (or whole sections and arrays, by prefix) a running server takes from a new file.
/// Everything else (listen addresses, the spool, connection caps, upstream binds, the
/// delivery agents' sockets) is fixed by what was bound or started, and needs a restart.
pub const RELOADABLE: &[&str] = &[
    "log.level",
    "queue.",
    "short_codes",
    "sip.trusted_networks",
    "sip.max_message_size",
    "sip.unknown_imsi",
    "sip.retry_after",
    "sip.subject",
    "smtp.trusted_networks",
    "smtp.max_message_size",
    "smtp.max_recipients",
    "smtp.max_errors",
    "smtp.idle_timeout",
    "smtp.session_timeout",
    "smtp.data_timeout",
    "smtp.rate_limit",
    "smtp.country_code",
    "smtp.national_prefix",
    "smtp.registry_authoritative",
    "smtp.tls_cert",
    "smtp.tls_key",
    "smtp.users",
    "smpp.esme",
    "smpp.route",
    "smpp.window",
    "smpp.max_pdu_size",
    "smpp.bind_timeout",
    "smpp.idle_timeout",
    "smpp.max_errors",
    "delivery.handset_backoff_min",
    "delivery.handset_backoff_max",
    "delivery.mail_backoff_min",
    "delivery.mail_backoff_max",
    "delivery.delay_warning",
    "delivery.notice_sender",
];

/// Whether the dotted `key` may change at run time.
pub fn reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| match r.strip_suffix('.') {
        Some(section) => key
            .strip_prefix(section)
            .is_some_and(|k| k.starts_with('.')),
        None => key == *r,
    })
}

/// The outcome of a reload.
#[derive(Debug)]
pub struct Reload {
    /// What the server runs with from now on.
    pub config: Config,
    /// Keys that changed and are applied.
    pub applied: Vec<String>,
    /// Keys that changed in the file but keep their running value until a restart.
    pub kept: Vec<String>,
}

/// Merges `new` (just read) into `running`: the reloadable keys from `new`, the others from
/// `running`.
///
/// # Errors
/// [`ConfigError`] when the merged configuration is not valid (a route naming an upstream
/// that exists only in the new file, say); nothing is applied then.
pub fn merge(running: &Config, new: &Config, file: &str) -> Result<Reload, ConfigError> {
    let err = |e: String| ConfigError {
        file: file.into(),
        key: "(reload)".into(),
        reason: e,
    };
    let old = toml::Value::try_from(running).map_err(|e| err(e.to_string()))?;
    let mut merged = toml::Value::try_from(new).map_err(|e| err(e.to_string()))?;
    let mut changed = Vec::new();
    differing(&old, &merged, "", &mut changed);
    let (applied, kept): (Vec<String>, Vec<String>) =
        changed.into_iter().partition(|k| reloadable(k));
    for key in &kept {
        put(&mut merged, key, lookup(&old, key));
    }
    let text = toml::to_string(&merged).map_err(|e| err(e.to_string()))?;
    let config = Config::parse(&text, file)?;
    Ok(Reload {
        config,
        applied,
        kept,
    })
}

/// Dotted paths of the leaves (non-table values, arrays included) that differ between `a`
/// and `b`, present in either.
fn differing(a: &toml::Value, b: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => differing(x, y, &path, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

/// Sets (or, for `None`, removes) the value at dotted `key`; tables on the way exist in both
/// configurations, which share one shape.
fn put(v: &mut toml::Value, key: &str, value: Option<&toml::Value>) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut at = v;
    for p in parts {
        match at.get_mut(p) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let toml::Value::Table(t) = at {
        match value {
            Some(x) => {
                t.insert(last.to_string(), x.clone());
            }
            None => {
                t.remove(last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        Config::parse(s, "test").unwrap()
    }

    #[test]
    fn a_changed_trusted_network_is_applied_and_a_changed_listen_address_is_kept() {
        let running = parse("");
        let new =
            parse("[smtp]\ntrusted_networks = [\"10.0.0.0/8\"]\nlisten = \"127.0.0.1:2626\"\n");
        let r = merge(&running, &new, "f").unwrap();
        assert_eq!(r.applied, vec!["smtp.trusted_networks".to_string()]);
        assert_eq!(r.kept, vec!["smtp.listen".to_string()]);
        assert_eq!(r.config.smtp.trusted_networks, new.smtp.trusted_networks);
        assert_eq!(r.config.smtp.listen, running.smtp.listen);
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let running = parse("[smtp]\nmax_recipients = 7\n");
        let r = merge(&running, &running.clone(), "f").unwrap();
        assert!(r.applied.is_empty() && r.kept.is_empty());
        assert_eq!(r.config, running);
    }

    #[test]
    fn the_spool_the_upstreams_and_the_domains_wait_for_a_restart() {
        let running = parse("");
        let new = parse(
            "domains = [\"other.example\"]\nspool_dir = \"/elsewhere\"\n\
             [[smpp.upstream]]\nname = \"agg\"\naddress = \"127.0.0.2:2775\"\nsystem_id = \"x\"\n\
             password = \"y\"\n",
        );
        let r = merge(&running, &new, "f").unwrap();
        assert!(r.applied.is_empty(), "{:?}", r.applied);
        assert_eq!(r.config, running);
        assert!(
            r.kept.contains(&"smpp.upstream".to_string()),
            "{:?}",
            r.kept
        );
        assert!(r.kept.contains(&"spool_dir".to_string()));
        assert!(r.kept.contains(&"domains".to_string()));
    }

    #[test]
    fn a_route_to_an_upstream_only_the_new_file_has_is_refused_whole() {
        let running = parse("[smtp]\nmax_recipients = 7\n");
        let new = parse(
            "[smtp]\nmax_recipients = 9\n[[smpp.upstream]]\nname = \"agg\"\n\
             address = \"127.0.0.2:2775\"\nsystem_id = \"x\"\npassword = \"y\"\n\
             [[smpp.route]]\nprefix = \"44\"\nupstream = \"agg\"\n",
        );
        let e = merge(&running, &new, "f").unwrap_err();
        assert!(e.to_string().contains("smpp"), "{e}");
    }

    #[test]
    fn section_prefixes_match_whole_names_only() {
        assert!(reloadable("queue.sms_lifetime"));
        assert!(!reloadable("queue"));
        assert!(!reloadable("queuex.y"));
        assert!(reloadable("smtp.users"));
        assert!(!reloadable("smtp.listen"));
    }
}
