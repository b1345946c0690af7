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

/// The level names a filter directive may use.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `daemon.log_level` filter more strictly than `tracing` does: a bare word that
/// is not a level (`inof`) is a valid directive to `tracing` (it enables one target that
/// does not exist), so a typo would silence the daemon. A bare word must be a level or one
/// of our own targets (`rfidgw…`); anything else needs `target=level`.
pub fn check_filter(filter: &str) -> Result<(), String> {
    let hint = "give a level (error, warn, info, debug, trace or off) or directives like \
                \"rfidgw=debug,info\"";
    if filter.trim().is_empty() {
        return Err(format!("is empty; {hint}"));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', '{']);
        let word = directive.to_ascii_lowercase();
        if bare && !LEVELS.contains(&word.as_str()) && !word.starts_with("rfidgw") {
            let near = LEVELS
                .iter()
                .find(|level| close(level, &word))
                .map(|level| format!(" (did you mean \"{level}\"?)"))
                .unwrap_or_default();
            return Err(format!("\"{directive}\" is not a level{near}; {hint}"));
        }
        if let Some((_, level)) = directive.rsplit_once('=')
            && !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
            && level.trim().parse::<u8>().is_err()
        {
            return Err(format!(
                "\"{directive}\": \"{}\" is not a level; {hint}",
                level.trim()
            ));
        }
    }
    EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("{e}; {hint}"))
}

/// Whether two words differ by at most one edit or one swap of neighbours (a typo).
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    if a.len() == b.len() {
        let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        return match diffs.as_slice() {
            [] | [_] => true,
            [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
            _ => false,
        };
    }
    let (short, long) = if a.len() < b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let skip = (0..short.len())
        .find(|&i| short[i] != long[i])
        .unwrap_or(short.len());
    short[skip..] == long[skip + 1..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_with_a_typo_are_refused_and_valid_ones_pass() {
        for good in [
            "info",
            "WARN",
            "rfidgw=debug,info",
            "rfidgw",
            "rfidgw::app=trace",
            "sqlx=warn,debug",
        ] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        let typo = check_filter("inof").unwrap_err();
        assert!(
            typo.contains("\"inof\" is not a level") && typo.contains("did you mean \"info\""),
            "{typo}"
        );
        let bad_level = check_filter("rfidgw=verbose").unwrap_err();
        assert!(
            bad_level.contains("\"verbose\" is not a level"),
            "{bad_level}"
        );
        assert!(check_filter("").unwrap_err().contains("is empty"));
        assert!(check_filter("debug,hyper").is_err());
    }
}
