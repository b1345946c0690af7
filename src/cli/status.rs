//! `rfidgw status`: the daemon at a glance, like `systemctl status`. From the running
//! daemon's API; while none runs, from the store (read-only): how the last run ended, what
//! is left in the queues, the last events and alarms. Exit 0 running, 3 not running.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::Value;
use time::UtcOffset;

use super::circulation::{DaemonArgs, answered, local_offset, table, text};
use super::journal::{Printer, is_not_running, local_time, open_store, publishing};
use crate::northbound::event::PublicEvent;
use crate::store::{JournalSelect, OwedState};

/// `systemctl status`'s exit code for a unit that is not running.
const NOT_RUNNING: u8 = 3;

/// Arguments of `rfidgw status`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rfidgw status\n  rfidgw status --config config/demo.toml --token \"$TOKEN\"\n  \
    rfidgw status --json     # the API's /api/v1/status\n\n\
    Exit status: 0 when the daemon runs, 3 when it does not (as systemctl status)."
)]
pub struct StatusArgs {
    /// How many of the last alarms (and, while stopped, events) to show.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub lines: u32,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Runs `rfidgw status`.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let offset = local_offset();
    let now_ms = crate::store::millis_now();
    let status = match args.daemon.call("GET", "/api/v1/status", None) {
        Ok(answer) => {
            if args.daemon.json {
                answered(&answer)?;
                println!("{}", answer.body.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            answered(&answer)?
        }
        Err(error) if is_not_running(&error) => return stopped(args, &error, offset),
        Err(error) => return Err(error),
    };
    let alarms = args
        .daemon
        .call(
            "GET",
            &format!("/api/v1/alarms?limit={}", args.lines.clamp(1, 1000)),
            None,
        )
        .and_then(|answer| answered(&answer))
        .unwrap_or(Value::Null);
    print!(
        "{}",
        running(&status, &alarms, now_ms, offset, &args.daemon)
    );
    Ok(ExitCode::SUCCESS)
}

/// The running daemon's status as text.
fn running(
    status: &Value,
    alarms: &Value,
    now_ms: i64,
    offset: UtcOffset,
    daemon: &DaemonArgs,
) -> String {
    let uptime_ms = status["uptime_s"].as_i64().unwrap_or(0) * 1000;
    let mut out = format!("● rfidgw {} — running\n", text(&status["version"]));
    let _ = writeln!(
        out,
        "     Active: running since {}; {} ago",
        local_time(now_ms - uptime_ms, offset),
        ago(uptime_ms)
    );
    if let Ok(addr) = daemon.addr() {
        let _ = writeln!(out, "        API: http://{addr}");
    }
    let _ = writeln!(
        out,
        "    Journal: {} events",
        text(&status["journal_events"])
    );
    let circulation = &status["circulation"];
    let _ = writeln!(
        out,
        "     Queues: offline queue {}, staff worklist {} open, owed tag writes {}",
        text(&circulation["offline_queue"]),
        text(&circulation["worklist_open"]),
        text(&circulation["owed_writes"])
    );
    let peers: Vec<Vec<String>> = status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| vec![text(&p["name"]), text(&p["state"]), text(&p["detail"])])
        .collect();
    out.push_str("\nLibrary system:\n");
    if peers.is_empty() {
        out.push_str("  none configured\n");
    } else {
        out.push_str(&indent(&table(&["PEER", "STATE", "DETAIL"], &peers)));
    }
    let devices: Vec<Vec<String>> = status["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let frame = super::journal::json_time(&d["last_frame"]).map_or_else(
                || "never".into(),
                |ms| format!("{} ({} ago)", local_time(ms, offset), ago(now_ms - ms)),
            );
            vec![
                text(&d["id"]),
                text(&d["station"]),
                text(&d["driver"]),
                text(&d["state"]),
                frame,
                text(&d["last_error"]),
            ]
        })
        .collect();
    out.push_str("\nDevices:\n");
    if devices.is_empty() {
        out.push_str("  none configured\n");
    } else {
        out.push_str(&indent(&table(
            &[
                "DEVICE",
                "STATION",
                "DRIVER",
                "STATE",
                "LAST FRAME",
                "LAST ERROR",
            ],
            &devices,
        )));
    }
    out.push_str("\nStations:\n");
    let stations = station_lines(&status["stations"], offset);
    if stations.is_empty() {
        out.push_str("  none configured\n");
    } else {
        out.push_str(&indent(&table(&["STATION", "KIND", "STATE"], &stations)));
    }
    out.push_str("\nLast alarms:\n");
    match alarms.as_array() {
        Some(rows) if !rows.is_empty() => {
            out.push_str(&indent(&super::gate::alarm_table(rows, offset)));
        }
        Some(_) => out.push_str("  none\n"),
        None => out.push_str("  (not readable with this token)\n"),
    }
    out
}

/// One line per station: its kind and what its live state says.
fn station_lines(stations: &Value, offset: UtcOffset) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    for (group, kind) in [
        ("gates", "gate"),
        ("returns", "return"),
        ("selfchecks", "self-check"),
    ] {
        let Some(map) = stations[group].as_object() else {
            continue;
        };
        for (id, state) in map {
            let summary = match kind {
                "gate" => {
                    let mut s = format!(
                        "{} tags present, {} alarms",
                        text(&state["present"]),
                        text(&state["alarms"])
                    );
                    if let Some(until) = super::journal::json_time(&state["silenced_until"]) {
                        let _ = write!(s, ", silenced until {}", local_time(until, offset));
                    }
                    if let Some(people) = state["people"].as_object() {
                        let _ = write!(
                            s,
                            ", people in {} out {}",
                            text(&people["entered_total"]),
                            text(&people["left_total"])
                        );
                    }
                    s
                }
                _ => compact(state),
            };
            lines.push(vec![id.clone(), kind.to_owned(), summary]);
        }
    }
    lines
}

/// A station state's plain fields as `key value`, for kinds without their own summary.
fn compact(state: &Value) -> String {
    state
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array() && !v.is_null())
                .map(|(k, v)| format!("{} {}", k.replace('_', " "), text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// What the store knows while no daemon runs; exit 3.
fn stopped(args: &StatusArgs, why: &anyhow::Error, offset: UtcOffset) -> anyhow::Result<ExitCode> {
    println!("○ rfidgw — not running");
    println!("     Reason: no daemon answers ({why:#})");
    let path = args.daemon.config.path();
    println!("     Config: {}", path.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shown = runtime.block_on(async {
        let (config, store) = match open_store(&args.daemon).await {
            Ok(opened) => opened,
            Err(error) => {
                println!("      Store: {error:#}");
                return anyhow::Ok(());
            }
        };
        println!(
            "      Store: {} ({} events)",
            store.path().display(),
            store.journal_len().await?
        );
        let last = store.last_run_mark().await?;
        let newest = store.journal_select(&JournalSelect::default(), 1).await?;
        match last {
            Some(mark) if mark.kind == "daemon_stopped" => println!(
                "   Last run: stopped cleanly at {}",
                local_time(mark.at_ms, offset)
            ),
            Some(mark) => println!(
                "   Last run: started {}, ended without a clean stop (last event {}); the next \
                 start records it and closes what it left open",
                local_time(mark.at_ms, offset),
                newest
                    .first()
                    .map_or_else(|| "-".into(), |r| local_time(r.at_ms, offset))
            ),
            None => println!("   Last run: none recorded"),
        }
        println!(
            "     Queues: offline queue {}, staff worklist {} open, owed tag writes {}",
            store.queue_len().await?,
            store.worklist_open().await?,
            store
                .owed_write_count(&[OwedState::Owed, OwedState::Raised])
                .await?
        );
        let printer = Printer {
            json: false,
            offset,
        };
        let publishing = publishing(&config);
        let limit = i64::from(args.lines.max(1));
        println!("\nLast alarms:");
        let alarms = store
            .journal_select(
                &JournalSelect {
                    kinds: vec!["gate_alarm".into()],
                    ..JournalSelect::default()
                },
                limit,
            )
            .await?;
        if alarms.is_empty() {
            println!("  none");
        }
        for row in &alarms {
            println!(
                "  {}",
                printer.line(&PublicEvent::from_row(row, &publishing))
            );
        }
        println!("\nLast events:");
        for row in &store
            .journal_select(&JournalSelect::default(), limit)
            .await?
        {
            println!(
                "  {}",
                printer.line(&PublicEvent::from_row(row, &publishing))
            );
        }
        store.close_read_only().await;
        anyhow::Ok(())
    });
    shown?;
    Ok(ExitCode::from(NOT_RUNNING))
}

/// A duration in ms as `3 days 2 h`, `2 h 5 min`, `4 min 10 s` or `12 s`.
fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} days {h} h"),
    }
}

fn indent(text: &str) -> String {
    text.lines().fold(String::new(), |mut out, line| {
        let _ = writeln!(out, "  {line}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_systemctl() {
        assert_eq!(ago(12_000), "12 s");
        assert_eq!(ago(250_000), "4 min 10 s");
        assert_eq!(ago(7_500_000), "2 h 5 min");
        assert_eq!(ago(3 * 86_400_000 + 7_200_000), "3 days 2 h");
    }
}
