//! Logging setup: `tracing` with a format that suits where the output goes.
//!
//! Human-readable on a terminal; plain lines without timestamps under systemd (journald
//! stamps them itself and `JOURNAL_STREAM` tells us it is listening); JSON lines
//! otherwise, for log shippers. `RUST_LOG` overrides the configured level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The format `auto` resolves to in this process.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// Installs the global subscriber, writing to stderr. Safe to call more than once (later
/// calls are ignored), which keeps tests that start the daemon twice simple.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match resolve(format) {
        LogFormat::Human | LogFormat::Auto => builder.try_init(),
        LogFormat::Journald => builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
