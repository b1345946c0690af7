//! `rfidgw alarms`, `rfidgw gate` and `rfidgw loans`: the staff side of the exit gate.
//!
//! `alarms` and `gate` talk to the running daemon's API (the daemon owns the gate's state;
//! an acknowledgement is answered only once it is committed). `loans import` writes the
//! loans cache into the store directly; a running daemon reads it at its next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::circulation::{DaemonArgs, answered, local_offset, query_escape, table, text};
use super::opts::ConfigArg;
use crate::config::Config;
use crate::station::loans::parse_import;
use crate::store::Store;

/// `rfidgw alarms …`
#[derive(Debug, clap::Subcommand)]
pub enum AlarmsCommand {
    /// List the newest gate alarms, with title and acknowledgement (a table; the API's
    /// JSON with `--json`).
    #[command(
        after_help = "Examples:\n  rfidgw alarms list\n  rfidgw alarms list --limit 5 --json -c /etc/rfidgw/rfidgw.toml"
    )]
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Acknowledge an alarm; answered once the acknowledgement is in the journal.
    #[command(after_help = "Example:\n  rfidgw alarms ack A1764410000123-7 --by JS")]
    Ack {
        /// The alarm id, as listed.
        id: String,
        /// Who acknowledges (initials; the token's name when not given).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// `rfidgw gate …`
#[derive(Debug, clap::Subcommand)]
pub enum GateCommand {
    /// Mute a gate's alarm outputs for its configured `alarm.silence_ms` (alarms are still
    /// recorded); `--off` ends the silence early.
    #[command(
        after_help = "Examples:\n  rfidgw gate silence main-exit\n  rfidgw gate silence main-exit --off"
    )]
    Silence {
        /// The gate station's id.
        station: String,
        /// End the silence instead.
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

/// `rfidgw loans …`
#[derive(Debug, clap::Subcommand)]
pub enum LoansCommand {
    /// Seed the gate's loans cache (database security mode) from a file of
    /// `item_id,on_loan` lines (`1`/`0`, `true`/`false`, `yes`/`no`).
    Import {
        /// The file to import.
        file: PathBuf,
        /// The daemon's config (for the store's location).
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Runs `rfidgw alarms …`.
pub fn alarms(command: AlarmsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlarmsCommand::List { limit, daemon } => {
            let offset = local_offset();
            let answer = daemon.call("GET", &format!("/api/v1/alarms?limit={limit}"), None)?;
            let rows = answered(&answer)?;
            if daemon.json {
                println!("{}", answer.body.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            let rows = rows.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no gate alarms");
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", alarm_table(&rows, offset));
            Ok(ExitCode::SUCCESS)
        }
        AlarmsCommand::Ack { id, by, daemon } => {
            let body = by.map(|by| serde_json::json!({ "by": by }).to_string());
            let path = format!("/api/v1/alarms/{}/ack", query_escape(&id));
            let answer = daemon.call("POST", &path, body.as_deref())?;
            let done = answered(&answer)?;
            if daemon.json {
                println!("{}", answer.body.trim_end());
            } else {
                println!(
                    "alarm {} acknowledged by {}",
                    text(&done["alarm_id"]),
                    text(&done["acknowledged_by"])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Alarms (as the API lists them) as a table, oldest last as listed.
pub(super) fn alarm_table(rows: &[serde_json::Value], offset: time::UtcOffset) -> String {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|a| {
            vec![
                text(&a["alarm_id"]),
                super::journal::json_time(&a["time"])
                    .map_or_else(|| "-".into(), |ms| super::journal::local_time(ms, offset)),
                text(&a["station"]),
                text(&a["item"]),
                text(&a["reason"]),
                match a["acknowledged_by"].as_str() {
                    Some(by) => format!("yes ({by})"),
                    None => "no".into(),
                },
                text(&a["title"]),
            ]
        })
        .collect();
    table(
        &["ALARM", "TIME", "STATION", "ITEM", "REASON", "ACK", "TITLE"],
        &lines,
    )
}

/// Runs `rfidgw gate …`.
pub fn gate(command: GateCommand) -> anyhow::Result<ExitCode> {
    let GateCommand::Silence {
        station,
        off,
        daemon,
    } = command;
    let method = if off { "DELETE" } else { "POST" };
    let path = format!("/api/v1/stations/{}/silence", query_escape(&station));
    let answer = daemon.call(method, &path, None)?;
    answered(&answer)?;
    println!("{}", answer.body.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// Runs `rfidgw loans …`.
pub fn loans(command: LoansCommand) -> anyhow::Result<ExitCode> {
    let LoansCommand::Import { file, config } = command;
    let config = Config::load(&config.path())?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let rows = parse_import(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&config.store_path()).await?;
        store
            .upsert_loans(&rows, "import", SystemTime::now())
            .await?;
        store.close().await;
        anyhow::Ok(())
    })?;
    println!(
        "imported {} items into {} (a running daemon reads them at its next start)",
        rows.len(),
        config.store_path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// An HTTP answer: status code and body.
pub(super) struct Answer {
    /// The status code.
    pub(super) status: u16,
    /// The body.
    pub(super) body: String,
}

/// One HTTP/1.1 request to the local API with a bearer token (a tiny client: the daemon's
/// API is plain HTTP on 127.0.0.1 and these commands need no more; behind `[api.tls]`, use
/// curl).
pub(super) fn call_api(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Answer> {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.trim()))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let connect = tokio::net::TcpStream::connect(addr);
        let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| anyhow::anyhow!("the daemon's API at {addr} did not answer"))?
            .with_context(|| {
                format!("cannot reach the daemon's API at {addr} (is it running? see --api)")
            })?;
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{authorization}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut raw))
            .await
            .map_err(|_| {
                anyhow::anyhow!("the daemon's API at {addr} did not finish its answer")
            })??;
        parse_answer(&raw)
    })
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("the API's answer has no header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the API's answer has no status"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Answer { status, body })
}

/// Joins a chunked body (size line, data, CRLF, … until the 0 chunk).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_plain_and_chunked() {
        let plain = parse_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (404, "{}"));
        let chunked = parse_answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((chunked.status, chunked.body.as_str()), (200, "[1,2,3]"));
        assert!(parse_answer(b"garbage").is_err());
    }
}
