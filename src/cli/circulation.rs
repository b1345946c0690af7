//! `rfidgw worklist`, `rfidgw queue` and `rfidgw owed`: the staff side of returns and
//! self-check.
//!
//! They talk to the running daemon's API (found from `api.listen` of `--config`, or given
//! with `--api`): the daemon owns the offline queue, the owed tag writes and the worklist,
//! and a resolution is answered only once it is committed. Tables for people by default,
//! the API's JSON with `--json`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

use super::gate::{Answer, call_api};
use super::opts::ConfigArg;
use crate::config::{ApiConfig, Config};

/// How the commands reach the daemon, and how they print.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's config file: the commands go to its `api.listen`.
    #[command(flatten)]
    pub config: ConfigArg,
    /// The daemon's API address, instead of the config's `api.listen` [default: 127.0.0.1:8080]
    /// (the config still gives the store and a token file).
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// An API token (`[[api.tokens]]`; `read` lists, `operate` resolves). Without it, the
    /// token file of `--config`'s strongest readable token is used.
    #[arg(long, env = "RFIDGW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl DaemonArgs {
    /// The token: `--token` / `RFIDGW_TOKEN`, else the most capable `token_file` of
    /// `--config` that this user can read.
    pub(super) fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.clone()));
        }
        let Some(file) = self.config.optional() else {
            return Ok(None);
        };
        let config = Config::load(&file)?;
        let mut tokens: Vec<_> = config.api.tokens.iter().collect();
        tokens.sort_by_key(|t| std::cmp::Reverse(t.role));
        Ok(tokens.iter().find_map(|t| {
            let text = std::fs::read_to_string(t.token_file.as_ref()?).ok()?;
            Some(text.trim().to_owned()).filter(|t| !t.is_empty())
        }))
    }

    /// Calls the daemon's API.
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Answer> {
        call_api(self.addr()?, self.token()?.as_deref(), method, path, body)
    }

    /// Where the daemon's API is.
    pub(super) fn addr(&self) -> anyhow::Result<SocketAddr> {
        if let Some(addr) = self.api {
            return Ok(addr);
        }
        let Some(file) = self.config.optional() else {
            return Ok(ApiConfig::default().listen);
        };
        let config = Config::load(&file)?;
        if !config.api.enabled {
            bail!(
                "{}: api.enabled is false; these commands talk to the running daemon through its API",
                file.display()
            );
        }
        let mut addr = config.api.listen;
        if addr.port() == 0 {
            bail!(
                "{}: api.listen has port 0 (the daemon picks a free port); give its address with --api",
                file.display()
            );
        }
        // A daemon listening on every address is reached on the loopback one.
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        Ok(addr)
    }
}

/// `rfidgw worklist …`
#[derive(Debug, clap::Subcommand)]
pub enum WorklistCommand {
    /// List what the daemon could not finish by itself (failed offline replays, overdue
    /// tag writes, items not diverted, outcomes unknown), oldest first.
    #[command(after_help = "Example:\n  rfidgw worklist list --config /etc/rfidgw/rfidgw.toml")]
    List {
        /// Resolved entries too.
        #[arg(long)]
        all: bool,
        /// How many entries (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Resolve an open entry, saying who and how. A failed replay's queue row and an
    /// overdue tag write are resolved with it.
    #[command(
        after_help = "Example:\n  rfidgw worklist resolve 12 --by anna --note \"checked in by hand\" -c /etc/rfidgw/rfidgw.toml"
    )]
    Resolve {
        /// The entry's id, as listed.
        id: i64,
        /// Who dealt with it (a name or initials).
        #[arg(long)]
        by: String,
        /// How it was dealt with.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// `rfidgw queue …`
#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// List transactions taken while the library system was away (patrons are not shown).
    #[command(
        after_help = "Example:\n  rfidgw queue list --state failed,resolved -c /etc/rfidgw/rfidgw.toml"
    )]
    List {
        /// Which states: queued, replaying, done, failed, resolved (several with commas), or
        /// all [default: queued,replaying].
        #[arg(long)]
        state: Option<String>,
        /// How many transactions (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// `rfidgw owed …`
#[derive(Debug, clap::Subcommand)]
pub enum OwedCommand {
    /// List tag security writes the daemon owes: each completes by itself when its tag is
    /// seen on any reader.
    #[command(after_help = "Example:\n  rfidgw owed list -c /etc/rfidgw/rfidgw.toml")]
    List {
        /// Which states: pending, owed, raised, done, cancelled, resolved (several with
        /// commas), or all [default: owed,raised].
        #[arg(long)]
        state: Option<String>,
        /// How many writes (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// Runs `rfidgw worklist …`.
pub fn worklist(command: WorklistCommand) -> anyhow::Result<ExitCode> {
    let offset = local_offset();
    match command {
        WorklistCommand::List { all, limit, daemon } => {
            let path = format!("/api/v1/worklist?all={all}&limit={limit}");
            let rows = get(&daemon, &path)?;
            let Some(rows) = rows else {
                return Ok(ExitCode::SUCCESS);
            };
            if rows.is_empty() {
                println!(
                    "{}",
                    if all {
                        "the worklist is empty"
                    } else {
                        "no open worklist entries"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut headers = vec!["ID", "KIND", "STATION", "ITEM", "TAG", "SINCE"];
            if all {
                headers.push("RESOLVED");
            }
            headers.push("REASON");
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    let mut line = vec![
                        text(&row["id"]),
                        text(&row["kind"]),
                        text(&row["station"]),
                        text(&row["item_id"]),
                        text(&row["uid"]),
                        when(&row["created"], offset),
                    ];
                    if all {
                        line.push(match row["resolved_by"].as_str() {
                            Some(by) => clip(&format!("{by}: {}", text(&row["resolution"])), 40),
                            None => "open".into(),
                        });
                    }
                    line.push(text(&row["reason"]));
                    line
                })
                .collect();
            print!("{}", table(&headers, &lines));
            Ok(ExitCode::SUCCESS)
        }
        WorklistCommand::Resolve {
            id,
            by,
            note,
            daemon,
        } => {
            let body = serde_json::json!({ "by": by, "resolution": note }).to_string();
            let answer = daemon.call(
                "POST",
                &format!("/api/v1/worklist/{id}/resolve"),
                Some(&body),
            )?;
            let row = answered(&answer)?;
            if daemon.json {
                println!("{}", answer.body.trim_end());
            } else {
                println!(
                    "resolved worklist entry {} ({} at {}, item {}) by {}: {}",
                    text(&row["id"]),
                    text(&row["kind"]),
                    text(&row["station"]),
                    text(&row["item_id"]),
                    text(&row["resolved_by"]),
                    text(&row["resolution"]),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `rfidgw queue …`.
pub fn queue(command: QueueCommand) -> anyhow::Result<ExitCode> {
    let offset = local_offset();
    let QueueCommand::List {
        state,
        limit,
        daemon,
    } = command;
    let Some(rows) = get(
        &daemon,
        &list_path("offline-queue", state.as_deref(), limit),
    )?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    if rows.is_empty() {
        println!(
            "no offline transactions ({})",
            state.as_deref().unwrap_or("queued,replaying")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let headers = [
        "ID", "STATION", "KIND", "ITEM", "TAKEN", "DUE", "STATE", "TRIES", "OUTCOME",
    ];
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                text(&row["id"]),
                text(&row["station"]),
                text(&row["kind"]),
                text(&row["item_id"]),
                when(&row["time"], offset),
                when(&row["due"], offset),
                text(&row["state"]),
                text(&row["attempts"]),
                clip(&text(&row["outcome"]), 80),
            ]
        })
        .collect();
    print!("{}", table(&headers, &lines));
    Ok(ExitCode::SUCCESS)
}

/// Runs `rfidgw owed …`.
pub fn owed(command: OwedCommand) -> anyhow::Result<ExitCode> {
    let offset = local_offset();
    let OwedCommand::List {
        state,
        limit,
        daemon,
    } = command;
    let Some(rows) = get(&daemon, &list_path("owed-writes", state.as_deref(), limit))? else {
        return Ok(ExitCode::SUCCESS);
    };
    if rows.is_empty() {
        println!(
            "no owed tag writes ({})",
            state.as_deref().unwrap_or("owed,raised")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let headers = [
        "ID", "STATION", "TAG", "ITEM", "WRITE", "STATE", "SINCE", "REASON",
    ];
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                text(&row["id"]),
                text(&row["station"]),
                text(&row["uid"]),
                text(&row["item_id"]),
                if row["secure"] == true {
                    "secure"
                } else {
                    "unsecure"
                }
                .into(),
                text(&row["state"]),
                when(&row["created"], offset),
                text(&row["reason"]),
            ]
        })
        .collect();
    print!("{}", table(&headers, &lines));
    Ok(ExitCode::SUCCESS)
}

fn list_path(route: &str, state: Option<&str>, limit: u32) -> String {
    let mut path = format!("/api/v1/{route}?limit={limit}");
    if let Some(state) = state {
        let _ = write!(path, "&state={}", query_escape(state));
    }
    path
}

/// GETs a listing: `None` once printed as JSON (`--json`), else its rows.
fn get(daemon: &DaemonArgs, path: &str) -> anyhow::Result<Option<Vec<Value>>> {
    let answer = daemon.call("GET", path, None)?;
    let rows = answered(&answer)?;
    if daemon.json {
        println!("{}", answer.body.trim_end());
        return Ok(None);
    }
    match rows {
        Value::Array(rows) => Ok(Some(rows)),
        other => bail!("the daemon answered {other} where a list was expected"),
    }
}

/// The answer's JSON, or an error with the daemon's message and status.
pub(super) fn answered(answer: &Answer) -> anyhow::Result<Value> {
    let body: Option<Value> = serde_json::from_str(&answer.body).ok();
    if (200..300).contains(&answer.status) {
        return body.context("the daemon's answer is not JSON");
    }
    let mut message = body
        .as_ref()
        .and_then(|b| b["error"]["message"].as_str())
        .map_or_else(|| answer.body.trim().to_owned(), str::to_owned);
    if answer.status == 401 {
        message.push_str(" (give an API token with --token or RFIDGW_TOKEN)");
    }
    bail!("{message} (the daemon answered {})", answer.status)
}

/// Percent-encodes everything but letters, digits and `,-_.` in a query value.
pub(super) fn query_escape(value: &str) -> String {
    value.bytes().fold(String::new(), |mut out, byte| {
        if byte.is_ascii_alphanumeric() || b",-_.".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
        out
    })
}

/// The local time zone, read before any thread starts (the `time` crate refuses later).
pub(super) fn local_offset() -> UtcOffset {
    UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
}

/// A time (RFC 3339, or ms since the Unix epoch) as local `YYYY-MM-DD HH:MM` with the
/// offset it is in (`Z` in UTC, `+01:00`), so a table read elsewhere stays unambiguous;
/// `-` for null.
fn when(time: &Value, offset: UtcOffset) -> String {
    // RFC 3339 as the API writes times (ms since the epoch from older daemons).
    let Some(ms) = time
        .as_str()
        .and_then(crate::rfc3339::parse)
        .or_else(|| time.as_i64())
    else {
        return "-".into();
    };
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    let at = at.to_offset(offset);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}{}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        if offset.is_utc() {
            "Z".to_owned()
        } else {
            let (hours, minutes, _) = offset.as_hms();
            format!("{hours:+03}:{:02}", minutes.unsigned_abs())
        }
    )
}

/// A JSON value as a table cell: strings bare, null as `-`, anything else as JSON.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// At most `max` characters, `…` marking a cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[index] - cell.chars().count();
                let _ = write!(line, "{cell}{:pad$}  ", "");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_one_unpadded() {
        let rows = vec![
            vec![
                "1".into(),
                "replay_failed".into(),
                "the ILS refused it".into(),
            ],
            vec!["12".into(), "-".into(), "jam".into()],
        ];
        assert_eq!(
            table(&["ID", "KIND", "REASON"], &rows),
            "ID  KIND           REASON\n\
             1   replay_failed  the ILS refused it\n\
             12  -              jam\n"
        );
    }

    #[test]
    fn cells_show_null_as_a_dash_and_times_in_the_given_zone() {
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(text(&serde_json::json!({"ok": true})), r#"{"ok":true}"#);
        assert_eq!(when(&Value::Null, UtcOffset::UTC), "-");
        let ms = serde_json::json!(1_764_633_600_000_i64); // 2025-12-02 00:00 UTC
        assert_eq!(when(&ms, UtcOffset::UTC), "2025-12-02 00:00Z");
        let cet = UtcOffset::from_hms(1, 0, 0).unwrap();
        assert_eq!(when(&ms, cet), "2025-12-02 01:00+01:00");
        let text = serde_json::json!("2025-12-02T00:00:00.000Z");
        assert_eq!(when(&text, UtcOffset::UTC), "2025-12-02 00:00Z");
        let west = UtcOffset::from_hms(-3, -30, 0).unwrap();
        assert_eq!(when(&text, west), "2025-12-01 20:30-03:30");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(query_escape("failed, done&x"), "failed,%20done%26x");
    }
}
