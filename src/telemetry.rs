//! Logging: tracing to stderr, filtered by `[log] level` (or `RUST_LOG` when set), as text
//! or JSON (`[log] format`).
//!
//! Message state changes are logged one line each, keyed by queue ID, in Postfix's shape
//! (`ID: from=<...>, size=..., nrcpt=...`; `ID: to=<...>, relay=..., status=...`), so that
//! `grep ID` over the log tells a message's whole story. Lines carry their span's fields (the
//! queue ID, the peer) in both formats.
//!
//! Text has colour only when stderr is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>): a log file or journald gets plain lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(level: &str, format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Whether text lines may carry colour: stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
