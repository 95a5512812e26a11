//! Logging: tracing to stderr, filtered by `[log] level` (or `RUST_LOG` when set), as text
//! or JSON (`[log] format`).
//!
//! Message state changes are logged one line each, keyed by queue ID, in Postfix's shape
//! (`ID: from=<...>, size=..., nrcpt=...`; `ID: to=<...>, relay=..., status=...`), so that
//! `grep ID` over the log tells a message's whole story. Lines carry their span's fields (the
//! queue ID, the peer) in both formats.
//!
//! The level can change at run time ([`set_level`], on a reload); `RUST_LOG`, when set, wins
//! over the file at start and at every reload.
//!
//! Text has colour only when stderr is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>): a log file or journald gets plain lines.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

/// The installed subscriber's filter, once [`init`] has run.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter_for(level: &str) -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(level: &str, format: LogFormat) {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(lines.with_ansi(colour()))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(lines.json().with_current_span(true).with_span_list(false))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Puts `level` (a `[log] level` value) in force, unless `RUST_LOG` is set, which wins.
///
/// # Errors
/// When `level` is not a filter, or no subscriber of ours is installed.
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and wins over [log] level".into());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(h) => h.reload(filter).map_err(|e| e.to_string()),
        None => Err("no log subscriber installed".into()),
    }
}

/// Whether text lines may carry colour: stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
