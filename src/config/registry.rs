//! `[registry]`: each key's type, default and bounds.

use super::*;

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

impl RegistryConfig {
    /// Checks this section's bounds (`all`: the whole file, for bounds across sections).
    /// Returns the key and the reason of the first violation.
    pub(super) fn check(&self, _all: &Config) -> Result<(), (&'static str, String)> {
        let r = self;
        check_bounds(&[
            Bound::secs(
                "registry.default_expires",
                r.default_expires.0,
                10,
                7 * 86_400,
            ),
            Bound::secs("registry.max_expires", r.max_expires.0, 10, 7 * 86_400),
        ])?;
        Ok(())
    }
}
