//! `rfidgw journal`: the journal as public events, from the running daemon's API (live
//! with `--follow`, over the SSE stream, resuming with `Last-Event-ID` when the daemon
//! restarts) or, while no daemon runs, from the store directly (read-only).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::circulation::{DaemonArgs, answered, local_offset, query_escape};
use crate::config::Config;
use crate::northbound::event::{PublicEvent, Publishing, rfc3339};
use crate::store::{JournalSelect, Store};

/// Arguments of `rfidgw journal`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rfidgw journal --since 2h --kind gate_alarm\n  \
    rfidgw journal --follow --station main-exit\n  \
    rfidgw journal --since 2026-12-01T08:00:00+01:00 --limit 500 --json > events.jsonl"
)]
pub struct JournalArgs {
    /// Keep printing events as they are journaled (Ctrl-C stops); waits for a stopped
    /// daemon and goes on after the last event shown.
    #[arg(long, short)]
    pub follow: bool,
    /// Only events of this kind (`gate_alarm`, `item_returned`, …); repeat for several.
    #[arg(long = "kind", short = 'k', value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Only events of this station.
    #[arg(long, short)]
    pub station: Option<String>,
    /// Only events at or after this time: RFC 3339 (`2026-12-01T08:00:00Z`) or how long ago
    /// (`30s`, `10m`, `2h`, `1d`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// How many of the newest events to show (1–1000) [default: 50; 10 with --follow].
    #[arg(long, short = 'n')]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Runs `rfidgw journal`.
pub fn run(args: &JournalArgs) -> anyhow::Result<ExitCode> {
    // The local offset is read while this process has one thread (`time` refuses later).
    let offset = local_offset();
    let now_ms = crate::store::millis_now();
    let since_ms = args
        .since
        .as_deref()
        .map(|text| parse_since(text, now_ms))
        .transpose()?;
    let limit = args.limit.unwrap_or(if args.follow { 10 } else { 50 });
    if !(1..=1000).contains(&limit) {
        bail!("--limit must be between 1 and 1000, got {limit}");
    }
    let printer = Printer {
        json: args.daemon.json,
        offset,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut last_id = match listing(args, since_ms, limit) {
        Ok(Listing::Api(page)) => {
            for event in &page.events {
                printer.print(event);
            }
            page.next
        }
        Ok(Listing::NotRunning(why)) => {
            let (events, last) = runtime.block_on(from_store(args, since_ms, limit))?;
            eprintln!("rfidgw: {why}; showing the store");
            for event in &events {
                printer.print(event);
            }
            last
        }
        Err(error) => return Err(error),
    };
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let addr = args.daemon.addr()?;
    let token = args.daemon.token()?;
    let mut path = String::from("/api/v1/events/stream?");
    if let [kind] = args.kinds.as_slice() {
        let _ = write!(path, "kind={}&", query_escape(kind));
    }
    if let Some(station) = &args.station {
        let _ = write!(path, "station={}&", query_escape(station));
    }
    let path = path.trim_end_matches(['?', '&']).to_owned();
    runtime.block_on(async {
        let mut waiting = false;
        loop {
            match stream_once(addr, token.as_deref(), &path, &mut last_id, &mut |event| {
                if wanted(args, event) {
                    printer.print(event);
                }
            })
            .await
            {
                Ok(()) => waiting = false,
                Err(Stream::Refused(message)) => bail!("{message}"),
                Err(Stream::Gone(why)) => {
                    if !waiting {
                        eprintln!(
                            "rfidgw: the daemon is not reachable ({why}); waiting for it, to go on after event {last_id}"
                        );
                        waiting = true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// The first listing: from the API, or why not.
enum Listing {
    /// The API answered.
    Api(Page),
    /// No daemon answers (the reason, for the reader).
    NotRunning(String),
}

/// Events and the cursor after them.
struct Page {
    events: Vec<PublicEvent>,
    next: i64,
}

/// Lists through the API: one request per kind when several are asked for (the API takes
/// one), merged by id, the newest `limit` kept.
fn listing(args: &JournalArgs, since_ms: Option<i64>, limit: u32) -> anyhow::Result<Listing> {
    let kinds: Vec<Option<&str>> = if args.kinds.is_empty() {
        vec![None]
    } else {
        args.kinds.iter().map(|k| Some(k.as_str())).collect()
    };
    let mut events: Vec<PublicEvent> = Vec::new();
    let mut next = 0;
    for kind in kinds {
        let mut path = format!("/api/v1/events?limit={limit}");
        if let Some(kind) = kind {
            let _ = write!(path, "&kind={}", query_escape(kind));
        }
        if let Some(station) = &args.daemon_station() {
            let _ = write!(path, "&station={}", query_escape(station));
        }
        if let Some(since) = since_ms {
            let _ = write!(path, "&since={}", query_escape(&rfc3339(since)));
        }
        let answer = match args.daemon.call("GET", &path, None) {
            Ok(answer) => answer,
            Err(error) if is_not_running(&error) => {
                return Ok(Listing::NotRunning(format!(
                    "no daemon answers ({error:#})"
                )));
            }
            Err(error) => return Err(error),
        };
        let page = answered(&answer)?;
        next = next.max(page["next"].as_i64().unwrap_or(0));
        let listed: Vec<PublicEvent> = serde_json::from_value(page["events"].clone())
            .context("the daemon's events are not public events v1")?;
        events.extend(listed);
    }
    events.sort_by_key(|e| e.id);
    events.dedup_by_key(|e| e.id);
    let skip = events.len().saturating_sub(limit as usize);
    events.drain(..skip);
    Ok(Listing::Api(Page { events, next }))
}

impl JournalArgs {
    fn daemon_station(&self) -> Option<String> {
        self.station.clone()
    }
}

/// Whether a failed call means nothing listens (as opposed to a daemon that refused).
pub(super) fn is_not_running(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            )
        })
    }) || error.to_string().contains("did not answer")
        || error.to_string().contains("api.enabled is false")
}

/// The newest `limit` events from the store (read-only) and the journal's newest id.
async fn from_store(
    args: &JournalArgs,
    since_ms: Option<i64>,
    limit: u32,
) -> anyhow::Result<(Vec<PublicEvent>, i64)> {
    let (config, store) = open_store(&args.daemon).await?;
    let select = JournalSelect {
        kinds: args.kinds.clone(),
        station: args.station.clone(),
        since_ms,
        after: None,
    };
    let rows = store.journal_select(&select, i64::from(limit)).await?;
    let last = store.journal_last_id().await?.unwrap_or(0);
    store.close_read_only().await;
    let publishing = publishing(&config);
    Ok((
        rows.iter()
            .map(|row| PublicEvent::from_row(row, &publishing))
            .collect(),
        last,
    ))
}

/// The config (`--config`, `RFIDGW_CONFIG` or the default) and its store, read-only.
pub(super) async fn open_store(daemon: &DaemonArgs) -> anyhow::Result<(Config, Store)> {
    let path = daemon.config.path();
    let config = Config::load(&path)?;
    let store_path = config.store_path();
    if !store_path.exists() {
        bail!(
            "there is no store at {} (the daemon has not run with {} yet)",
            store_path.display(),
            path.display()
        );
    }
    let store = Store::open_read_only(&store_path).await?;
    Ok((config, store))
}

/// What the site lets out, as the API would apply it.
pub(super) fn publishing(config: &Config) -> Publishing {
    Publishing {
        site: config.northbound.site.clone(),
        patron_ids: config.northbound.patron_ids,
    }
}

fn wanted(args: &JournalArgs, event: &PublicEvent) -> bool {
    (args.kinds.is_empty() || args.kinds.contains(&event.kind))
        && args
            .station
            .as_ref()
            .is_none_or(|s| event.station.as_ref() == Some(s))
}

/// How events are printed.
#[derive(Clone, Copy)]
pub(super) struct Printer {
    /// One public-event JSON per line.
    pub(super) json: bool,
    /// The local time zone, for people.
    pub(super) offset: UtcOffset,
}

impl Printer {
    pub(super) fn print(self, event: &PublicEvent) {
        if self.json {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        } else {
            println!("{}", self.line(event));
        }
    }

    /// `TIME KIND STATION DEVICE ITEM reason=… outcome=…`, `-` for what is missing.
    pub(super) fn line(self, event: &PublicEvent) -> String {
        let time = OffsetDateTime::parse(&event.time, &Rfc3339).map_or_else(
            |_| event.time.clone(),
            |at| {
                at.to_offset(self.offset)
                    .format(LOCAL_MS)
                    .unwrap_or_default()
            },
        );
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut line = format!(
            "{time} {:<20} {:<12} {:<14} {}",
            event.kind,
            dash(&event.station),
            dash(&event.device),
            dash(&event.item)
        );
        if let Some(reason) = &event.reason {
            let _ = write!(line, " reason={reason}");
        }
        if let Some(outcome) = &event.outcome {
            let _ = write!(line, " outcome={outcome}");
        }
        line.trim_end().to_owned()
    }
}

/// RFC 3339 with milliseconds and the numeric offset (`+00:00` in UTC): every line the
/// same width, so the columns after it line up.
const LOCAL_MS: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
);

/// ms since the Unix epoch as RFC 3339 in the local zone, to the second.
/// A time as the API writes it (RFC 3339), or ms since the Unix epoch; ms.
pub(super) fn json_time(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(crate::rfc3339::parse))
}

pub(super) fn local_time(ms: i64, offset: UtcOffset) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).map_or_else(
        |_| ms.to_string(),
        |at| at.to_offset(offset).format(&Rfc3339).unwrap_or_default(),
    )
}

/// `--since`: RFC 3339, or a duration ago (`30s`, `10m`, `2h`, `1d`, `1w`); ms since the
/// Unix epoch.
pub(super) fn parse_since(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if unit_ms > 0 => Ok(now_ms - n.saturating_mul(unit_ms)),
        _ => bail!(
            "--since `{text}`: give an RFC 3339 time (2026-12-01T08:00:00Z, \
             2026-12-01T09:00:00+01:00) or how long ago (30s, 10m, 2h, 1d, 1w)"
        ),
    }
}

/// Why a stream ended with an error.
enum Stream {
    /// The daemon answered with a refusal (token, parameters): no point retrying.
    Refused(String),
    /// The connection failed or broke: retry.
    Gone(String),
}

/// One connection to the live stream, from after `last_id`; every event goes to `each`
/// and moves `last_id`. Returns when the daemon ends the stream (it stops).
async fn stream_once(
    addr: SocketAddr,
    token: Option<&str>,
    path: &str,
    last_id: &mut i64,
    each: &mut dyn FnMut(&PublicEvent),
) -> Result<(), Stream> {
    let gone = |e: &dyn std::fmt::Display| Stream::Gone(e.to_string());
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| Stream::Gone(format!("{addr} did not answer")))?
            .map_err(|e| gone(&e))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {}\r\n", t.trim()))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Accept: text/event-stream\r\n\
         Last-Event-ID: {last_id}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| gone(&e))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // The head.
    let head_end = loop {
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buf).await.map_err(|e| gone(&e))?;
        if n == 0 {
            return Err(Stream::Gone("the connection closed".into()));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head.contains("transfer-encoding: chunked");
    let mut body = raw.split_off(head_end + 4);
    if status != 200 {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut body)).await;
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_str::<serde_json::Value>(
            text.split("\r\n")
                .find(|l| l.starts_with('{'))
                .unwrap_or(&text),
        )
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
        return Err(if status == 503 {
            Stream::Gone(message)
        } else {
            Stream::Refused(format!("{message} (the daemon answered {status})"))
        });
    }
    let mut decoder = Dechunker::new(chunked);
    let mut text = String::new();
    loop {
        text.push_str(&String::from_utf8_lossy(&decoder.feed(&body)));
        body.clear();
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if let Some(event) = sse_event(&block) {
                *last_id = event.id;
                each(&event);
            }
        }
        if decoder.done {
            return Ok(());
        }
        let n = stream.read(&mut buf).await.map_err(|e| gone(&e))?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&buf[..n]);
    }
}

/// The public event of one SSE block (`id:`, `event:`, `data:` lines); comments and
/// keep-alives give none.
fn sse_event(block: &str) -> Option<PublicEvent> {
    let data: Vec<&str> = block
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Undoes HTTP/1.1 chunked transfer encoding as bytes arrive.
struct Dechunker {
    chunked: bool,
    pending: Vec<u8>,
    /// Bytes left in the current chunk (data, then its CRLF).
    left: usize,
    done: bool,
}

impl Dechunker {
    fn new(chunked: bool) -> Self {
        Self {
            chunked,
            pending: Vec::new(),
            left: 0,
            done: false,
        }
    }

    /// The body bytes in `input`, as far as they have arrived.
    fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        if !self.chunked {
            return input.to_vec();
        }
        self.pending.extend_from_slice(input);
        let mut out = Vec::new();
        loop {
            if self.left > 0 {
                let take = self.left.min(self.pending.len());
                let data: Vec<u8> = self.pending.drain(..take).collect();
                // The last two bytes of a chunk's span are its CRLF.
                let data_part = take.min(self.left.saturating_sub(2));
                out.extend_from_slice(&data[..data_part]);
                self.left -= take;
                if self.left > 0 {
                    return out;
                }
            }
            let Some(end) = find(&self.pending, b"\r\n") else {
                return out;
            };
            let line = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..end + 2);
            let size =
                usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            if size == 0 {
                self.done = true;
                return out;
            }
            self.left = size + 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_and_durations_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_since("1d", now).unwrap(), now - 86_400_000);
        assert_eq!(
            parse_since("2026-12-01T09:00:00+01:00", now).unwrap(),
            parse_since("2026-12-01T08:00:00Z", now).unwrap()
        );
        let error = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(
            error.contains("RFC 3339") && error.contains("10m"),
            "{error}"
        );
    }

    #[test]
    fn chunks_split_anywhere_come_out_whole() {
        let wire = b"6\r\nid: 1\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Dechunker::new(true);
            let mut out = decoder.feed(&wire[..split]);
            out.extend(decoder.feed(&wire[split..]));
            assert_eq!(out, b"id: 1\nabc", "split at {split}");
            assert!(decoder.done);
        }
    }

    #[test]
    fn an_sse_block_gives_its_public_event_and_a_comment_none() {
        let event = serde_json::json!({"v": 1, "id": 7, "time": "2026-12-01T08:00:00.000Z",
            "kind": "gate_alarm", "site": "s", "station": "exit", "device": "r1", "item": "I1",
            "uid": null, "reason": "secured", "outcome": "alarm", "data": {}});
        let block = format!("id: 7\nevent: gate_alarm\ndata: {event}\n\n");
        let parsed = sse_event(&block).unwrap();
        assert_eq!((parsed.id, parsed.kind.as_str()), (7, "gate_alarm"));
        assert!(sse_event(": keep-alive\n\n").is_none());
        let printer = Printer {
            json: false,
            offset: UtcOffset::from_hms(1, 0, 0).unwrap(),
        };
        assert_eq!(
            printer.line(&parsed),
            "2026-12-01T09:00:00.000+01:00 gate_alarm           exit         r1             I1 reason=secured outcome=alarm"
        );
    }
}
