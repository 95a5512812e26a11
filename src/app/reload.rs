//! Reload (SIGHUP): re-reads the configuration file and puts in force what may change at run
//! time, without dropping a connection or a queued message.
//!
//! What may change is decided by [`crate::config::reload`] (pure); this file builds the new
//! state of each door from it and swaps it in ([`crate::config::Live`]). Every step that can
//! fail (the file, the merged configuration, the new STARTTLS certificate) runs before
//! anything is swapped, so a refused reload leaves the running server exactly as it was.
//! Sessions already open keep the state they began with; the next connection, transaction
//! or delivery job sees the new one. Trusts the file no more than at start: it is validated
//! whole, as `check-config` does.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::reload::{self, Reload};
use crate::config::{Config, ConfigError, Live};
use crate::smpp::listener::SmppServer;
use crate::smtp::listener::{SmtpServer, TlsError};

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file does not read, parse or validate, alone or merged with the running one.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new STARTTLS certificate does not load.
    #[error("smtp.tls_cert: {0}")]
    Tls(#[from] TlsError),
}

/// What a reload swaps: the configuration and the doors' states built from it.
#[derive(Debug, Clone)]
pub struct Doors {
    /// The configuration the SIP door and delivery read per request and per job.
    pub cfg: Live<Config>,
    /// The SMTP listeners' state.
    pub smtp: Live<SmtpServer>,
    /// The SMPP server's state, when it listens.
    pub smpp: Option<Live<SmppServer>>,
}

impl Doors {
    /// Reads `file` (the embedded default when `None`) and applies it.
    ///
    /// # Errors
    /// [`ReloadError`]; nothing is changed then.
    pub fn reload(&self, file: Option<&Path>) -> Result<Reload, ReloadError> {
        let new = match file {
            Some(p) => Config::load(p)?,
            None => Config::embedded()?,
        };
        let name = file.map_or("<embedded>".to_string(), |p| p.display().to_string());
        self.apply(&new, &name)
    }

    /// [`Doors::reload`], then its outcome logged ([`report`]).
    ///
    /// # Errors
    /// [`ReloadError`]; nothing is changed then.
    pub fn reload_and_report(&self, file: Option<&Path>) -> Result<Reload, ReloadError> {
        let name = file.map_or("<embedded>".to_string(), |p| p.display().to_string());
        let r = self.reload(file);
        report(&name, &r);
        r
    }

    /// Applies `new`: the reloadable keys from it, the rest as running.
    ///
    /// # Errors
    /// [`ReloadError`]; nothing is changed then.
    pub fn apply(&self, new: &Config, file: &str) -> Result<Reload, ReloadError> {
        let running = self.cfg.get();
        let r = reload::merge(&running, new, file)?;
        let cfg = Arc::new(r.config.clone());
        let smtp = self.smtp.get().renewed(Arc::clone(&cfg))?;
        let smpp = self
            .smpp
            .as_ref()
            .map(|l| (l, l.get().renewed(Arc::clone(&cfg))));
        if r.applied.iter().any(|k| k == "log.level")
            && let Err(e) = crate::telemetry::set_level(&cfg.log.level)
        {
            warn!("reload: log.level not changed: {e}");
        }
        self.cfg.set(cfg);
        self.smtp.set(Arc::new(smtp));
        if let Some((live, next)) = smpp {
            live.set(Arc::new(next));
        }
        Ok(r)
    }
}

/// Logs a reload's outcome, one line for what was applied and one for what waits.
pub fn report(file: &str, result: &Result<Reload, ReloadError>) {
    match result {
        Ok(r) if r.applied.is_empty() && r.kept.is_empty() => {
            info!("reload: {file}: no change");
        }
        Ok(r) => {
            if !r.applied.is_empty() {
                info!("reload: {file}: applied {}", r.applied.join(", "));
            }
            if !r.kept.is_empty() {
                warn!(
                    "reload: {file}: changed but needing a restart, kept as running: {}",
                    r.kept.join(", ")
                );
            }
        }
        Err(e) => warn!("reload refused, the running configuration stays: {e}"),
    }
}
