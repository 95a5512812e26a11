//! Logging: tracing to stderr, filtered by `[log] level` (or `RUST_LOG` when set).
//!
//! Message state changes are logged one line each, keyed by queue ID, in Postfix's shape
//! (`ID: from=<...>, size=..., nrcpt=...`; `ID: to=<...>, relay=..., status=...`), so that
//! `grep ID` over the log tells a message's whole story.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
