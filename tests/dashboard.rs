//! The dashboard (issue 13): its statistics from hand-made journals with known answers
//! (the SQL rollups, by hour and by local day), "borrowed together" from self-check
//! sessions, and the routes of a running daemon — the static files (public, with their
//! security headers), the new API routes behind the read role, their errors, and their
//! place in the OpenAPI document. The page in a browser: tests/browser/dashboard.py.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::store::{BinRow, HOUR_MS, JournalEntry, StatsRow, Store};
use serde_json::{Value, json};

const READ: &str = "screen-token";
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2026-03-02T00:00:00Z: the hand-made journals' day.
const DAY0: i64 = 1_772_409_600_000;

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap())
}

fn entry(ms: i64, kind: &str, station: Option<&str>, payload: Value) -> JournalEntry {
    JournalEntry {
        at: at(ms),
        kind: kind.into(),
        device: None,
        station: station.map(Into::into),
        payload,
    }
}

/// A bucket's figures: `fields` as `(name, value)` on top of zeros.
fn row(bucket_ms: i64, fields: &[(&str, i64)]) -> StatsRow {
    let mut row = StatsRow {
        bucket_ms,
        ..StatsRow::default()
    };
    for (name, value) in fields {
        let field = match *name {
            "loans" => &mut row.loans,
            "returns" => &mut row.returns,
            "alarms" => &mut row.alarms,
            "people_in" => &mut row.people_in,
            "people_out" => &mut row.people_out,
            "people_intervals" => &mut row.people_intervals,
            "ils_calls" => &mut row.ils_calls,
            "ils_us" => &mut row.ils_us,
            "ils_peak_us" => &mut row.ils_peak_us,
            "ils_errors" => &mut row.ils_errors,
            other => panic!("no figure {other}"),
        };
        *field = *value;
    }
    row
}

fn bin(station: &str, bin: &str, items: i64) -> BinRow {
    BinRow {
        station: station.into(),
        bin: bin.into(),
        items,
    }
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("dash.db")).await.unwrap();
    (dir, store)
}

fn loan(ms: i64, session: &str, item: &str, outcome: &str) -> JournalEntry {
    entry(
        ms,
        "item_loan",
        Some("selfcheck-1"),
        json!({"kind": "item_loan", "station": "selfcheck-1", "session": session, "item": item,
               "title": format!("Title of {item}"), "outcome": outcome, "uids": ["E0"]}),
    )
}

fn returned(
    ms: i64,
    outcome: &str,
    bin: Option<&str>,
    diverted: bool,
    ils_us: u64,
) -> JournalEntry {
    entry(
        ms,
        "item_returned",
        Some("book-return"),
        json!({"kind": "item_returned", "item": "I1", "outcome": outcome, "bin_name": bin,
               "diverted": diverted, "timing": {"ils_us": ils_us, "total_us": ils_us + 10}}),
    )
}

fn kiosk(ms: i64, message: &str, outcome: &str, took_us: u64) -> JournalEntry {
    entry(
        ms,
        "kiosk_transaction",
        Some("selfcheck-1"),
        json!({"kind": "kiosk_transaction", "message": message, "item": "I9",
               "outcome": outcome, "took_us": took_us}),
    )
}

/// What a journal should make: its figures and bins.
type Case = (&'static str, Vec<JournalEntry>, Vec<StatsRow>, Vec<BinRow>);

/// Each journal, the figures it makes within its hour (DAY0 + 1 h) and the bins it fills,
/// as the store sums them.
#[tokio::test]
#[allow(clippy::too_many_lines)] // a table of cases, read top to bottom
async fn each_kind_of_event_counts_for_its_figure_and_nothing_else() {
    let h = DAY0 + HOUR_MS;
    let cases: Vec<Case> = vec![
        (
            "lent, renewed and queued offline are loans; refused is not",
            vec![
                loan(h + 1, "S1", "I1", "checked_out"),
                loan(h + 2, "S1", "I2", "renewed"),
                loan(h + 3, "S1", "I3", "queued_offline"),
                loan(h + 4, "S1", "I4", "refused"),
            ],
            vec![row(h, &[("loans", 3)])],
            vec![],
        ),
        (
            "a return: checked in, its ILS time and its bin; a refused one only its time and bin",
            vec![
                returned(h + 1, "checked_in", Some("Shelving"), true, 2000),
                returned(h + 2, "rejected", Some("Exceptions"), true, 6000),
                returned(h + 3, "queued_offline", Some("Shelving"), false, 0),
                returned(h + 4, "checked_in", None, false, 1000),
            ],
            vec![row(
                h,
                &[
                    ("returns", 3),
                    ("ils_calls", 3),
                    ("ils_us", 9000),
                    ("ils_peak_us", 6000),
                ],
            )],
            vec![
                bin("book-return", "Exceptions", 1),
                bin("book-return", "Shelving", 1),
            ],
        ),
        (
            "a SIP2 kiosk's checkout and checkin; its failure is an ILS error",
            vec![
                kiosk(h + 1, "checkout", "accepted", 3000),
                kiosk(h + 2, "checkin", "queued_offline", 5),
                kiosk(h + 3, "renew", "failed", 9),
                kiosk(h + 4, "patron_status", "answered", 1000),
            ],
            vec![row(
                h,
                &[
                    ("loans", 1),
                    ("returns", 1),
                    ("ils_calls", 2),
                    ("ils_us", 4000),
                    ("ils_peak_us", 3000),
                    ("ils_errors", 1),
                ],
            )],
            vec![],
        ),
        (
            "alarms, people, the ILS going offline; tag reads count for nothing",
            vec![
                entry(
                    h + 1,
                    "gate_alarm",
                    Some("main-exit"),
                    json!({"reason": "secured"}),
                ),
                entry(
                    h + 2,
                    "gate_alarm",
                    Some("main-exit"),
                    json!({"reason": "secured"}),
                ),
                entry(
                    h + 3,
                    "people_counted",
                    Some("main-exit"),
                    json!({"entered": 3, "left": 2}),
                ),
                entry(
                    h + 4,
                    "people_counted",
                    Some("main-exit"),
                    json!({"entered": 4, "left": 0}),
                ),
                entry(
                    h + 5,
                    "peer_changed",
                    None,
                    json!({"peer": "ils", "state": "offline"}),
                ),
                entry(
                    h + 6,
                    "peer_changed",
                    None,
                    json!({"peer": "ils", "state": "online"}),
                ),
                entry(
                    h + 7,
                    "tag_arrived",
                    Some("main-exit"),
                    json!({"uid": "E0", "afi": 7}),
                ),
            ],
            vec![row(
                h,
                &[
                    ("alarms", 2),
                    ("people_in", 7),
                    ("people_out", 2),
                    ("people_intervals", 2),
                    ("ils_errors", 1),
                ],
            )],
            vec![],
        ),
        (
            "only tag reads: no figures at all",
            vec![entry(h, "tag_arrived", None, json!({"uid": "E0"}))],
            vec![],
            vec![],
        ),
    ];
    for (what, journal, expected, bins) in cases {
        let (_dir, store) = store().await;
        store.append(&journal).await.unwrap();
        let rows = store.stats(DAY0, DAY0 + DAY_MS, HOUR_MS, 0).await.unwrap();
        assert_eq!(rows, expected, "{what}");
        let fill = store.bin_fill(DAY0, DAY0 + DAY_MS).await.unwrap();
        assert_eq!(fill, bins, "{what}");
        store.close().await;
    }
}

#[tokio::test]
async fn hours_sum_into_local_days_and_the_range_is_half_open() {
    let (_dir, store) = store().await;
    store
        .append(&[
            // 22:30 and 23:30 UTC on DAY0: the same UTC day, but 23:30 is the next day at +01:00.
            entry(
                DAY0 + 22 * HOUR_MS + 1_800_000,
                "gate_alarm",
                None,
                json!({}),
            ),
            entry(
                DAY0 + 23 * HOUR_MS + 1_800_000,
                "gate_alarm",
                None,
                json!({}),
            ),
            // The next UTC day: outside [DAY0, DAY0 + 1 day).
            entry(DAY0 + DAY_MS, "gate_alarm", None, json!({})),
        ])
        .await
        .unwrap();
    // (from, to, bucket, offset) → rows
    let cases = [
        (
            (DAY0, DAY0 + DAY_MS, DAY_MS, 0),
            vec![row(DAY0, &[("alarms", 2)])],
        ),
        (
            (DAY0 - HOUR_MS, DAY0 + 2 * DAY_MS, DAY_MS, HOUR_MS),
            vec![
                row(DAY0 - HOUR_MS, &[("alarms", 1)]),
                row(DAY0 + DAY_MS - HOUR_MS, &[("alarms", 2)]),
            ],
        ),
        (
            (DAY0, DAY0 + DAY_MS, HOUR_MS, 0),
            vec![
                row(DAY0 + 22 * HOUR_MS, &[("alarms", 1)]),
                row(DAY0 + 23 * HOUR_MS, &[("alarms", 1)]),
            ],
        ),
        ((DAY0, DAY0 + 22 * HOUR_MS, HOUR_MS, 0), vec![]),
    ];
    for ((from, to, bucket, offset), expected) in cases {
        assert_eq!(
            store.stats(from, to, bucket, offset).await.unwrap(),
            expected,
            "from {from} to {to}, bucket {bucket}, offset {offset}"
        );
    }
    store.close().await;
}

#[tokio::test]
async fn borrowed_together_counts_sessions_per_station_and_only_items_lent() {
    let (_dir, store) = store().await;
    let mut other_station = loan(DAY0 + 9, "S1", "I4", "checked_out");
    other_station.station = Some("selfcheck-2".into());
    let mut other_station_first = loan(DAY0 + 8, "S1", "I1", "checked_out");
    other_station_first.station = Some("selfcheck-2".into());
    store
        .append(&[
            loan(DAY0 + 1, "S1", "I1", "checked_out"),
            loan(DAY0 + 2, "S1", "I2", "checked_out"),
            loan(DAY0 + 3, "S1", "I3", "renewed"),
            loan(DAY0 + 4, "S2", "I1", "queued_offline"),
            loan(DAY0 + 5, "S2", "I2", "checked_out"),
            loan(DAY0 + 6, "S2", "I5", "refused"),
            // The same session id at another station is another session.
            other_station_first,
            other_station,
            // The same item twice in a session counts once.
            loan(DAY0 + 10, "S2", "I2", "renewed"),
        ])
        .await
        .unwrap();
    let (sessions, together) = store.borrowed_together("I1", 10).await.unwrap();
    assert_eq!(sessions, 3);
    let found: Vec<(&str, i64, Option<&str>)> = together
        .iter()
        .map(|t| (t.item.as_str(), t.sessions, t.title.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("I2", 2, Some("Title of I2")),
            ("I3", 1, Some("Title of I3")),
            ("I4", 1, Some("Title of I4")),
        ]
    );
    assert_eq!(store.borrowed_together("I1", 1).await.unwrap().1.len(), 1);
    let (sessions, together) = store.borrowed_together("I5", 10).await.unwrap();
    assert_eq!(
        (sessions, together.len()),
        (0, 0),
        "a refused item was not borrowed"
    );
    store.close().await;
}

fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{}"
        [api]
        listen = "127.0.0.1:0"
        [api.rate_limit]
        per_second = 1000.0
        burst = 1000
        [[api.tokens]]
        name = "screen"
        role = "read"
        token = "{READ}"
        "#,
        dir.display()
    );
    Config::parse("dashboard.toml", &text, std::iter::empty()).unwrap()
}

/// A GET: status, headers (lower-case names) and body.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = get(addr, path, Some(READ)).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_page_publicly_and_its_data_only_to_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path())).await.unwrap();
    let addr = daemon.api_addr().unwrap();

    // The three files: public, typed, with a policy that lets only this origin's files run.
    for (path, content_type, holds) in [
        ("/", "text/html", "dashboard.js"),
        ("/dashboard.css", "text/css", "--accent"),
        ("/dashboard.js", "text/javascript", "/api/v1/events/stream"),
    ] {
        let (status, head, body) = get(addr, path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'"),
            "{path}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{path}");
        assert!(body.contains(holds), "{path} lacks {holds}");
    }
    // What the page loads is what the daemon serves; it loads nothing from elsewhere.
    let index = rfidgw::api::dashboard::INDEX_HTML;
    for needed in ["href=\"dashboard.css\"", "src=\"dashboard.js\""] {
        assert!(index.contains(needed), "{needed}");
    }
    assert!(!index.contains("http://") && !index.contains("https://"));
    // The script never puts the token in a URL: only in the Authorization header.
    let script = rfidgw::api::dashboard::DASHBOARD_JS;
    assert!(script.contains("Authorization: `Bearer ${state.token}`"));
    assert!(!script.contains("?token=") && !script.contains("new EventSource"));

    // The data needs a token.
    for path in ["/api/v1/stats", "/api/v1/items/I1/borrowed-together"] {
        let (status, _, body) = get(addr, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, _, body) = get(addr, path, Some("wrong")).await;
        assert_eq!(status, 401, "{path}: {body}");
    }

    // Mistakes: a 400 in the API's JSON shape, naming the parameter.
    for (path, names) in [
        ("/api/v1/stats?bucket=week", "bucket"),
        ("/api/v1/stats?utc_offset=%2B25:00", "utc_offset"),
        ("/api/v1/stats?from=yesterday", "from"),
        ("/api/v1/stats?colour=red", "colour"),
        ("/api/v1/items/I1/borrowed-together?limit=0", "limit"),
        ("/api/v1/items/I1/borrowed-together?limit=101", "limit"),
    ] {
        let (status, body) = get_json(addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(names),
            "{path}: {body}"
        );
    }

    // Both routes are in the OpenAPI document, for the read role; the page is not.
    let (_, document) = get_json(addr, "/api/v1/openapi.json").await;
    for path in ["/api/v1/stats", "/api/v1/items/{item}/borrowed-together"] {
        assert_eq!(
            document["paths"][path]["get"]["security"],
            json!([{"bearer": ["read"]}]),
            "{path}"
        );
    }
    assert!(document["paths"].get("/").is_none());
    daemon.shutdown("test over").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_borrowed_together_answer_from_the_journal_and_name_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path())).await.unwrap();
    let addr = daemon.api_addr().unwrap();
    daemon
        .store()
        .append(&[
            loan(DAY0 + HOUR_MS, "S1", "I1", "checked_out"),
            loan(DAY0 + HOUR_MS + 1, "S1", "I2", "checked_out"),
            returned(DAY0 + 3 * HOUR_MS, "checked_in", Some("Holds"), true, 4000),
            entry(
                DAY0 + 3 * HOUR_MS,
                "gate_alarm",
                Some("main-exit"),
                json!({}),
            ),
        ])
        .await
        .unwrap();
    let (status, answer) = get_json(
        addr,
        "/api/v1/stats?from=2026-03-02T00:30:00Z&to=2026-03-02T04:00:00Z&bucket=hour",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["from"], "2026-03-02T00:00:00Z");
    assert_eq!(answer["to"], "2026-03-02T04:00:00Z");
    let buckets = answer["buckets"].as_array().unwrap();
    let figures: Vec<(&str, i64, i64, i64, Value)> = buckets
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap(),
                b["loans"].as_i64().unwrap(),
                b["returns"].as_i64().unwrap(),
                b["alarms"].as_i64().unwrap(),
                b["ils_mean_ms"].clone(),
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            ("2026-03-02T00:00:00Z", 0, 0, 0, Value::Null),
            ("2026-03-02T01:00:00Z", 2, 0, 0, Value::Null),
            ("2026-03-02T02:00:00Z", 0, 0, 0, Value::Null),
            ("2026-03-02T03:00:00Z", 0, 1, 1, json!(4.0)),
        ]
    );
    assert_eq!(
        answer["bins"],
        json!([{"station": "book-return", "bin": "Holds", "items": 1}])
    );

    // A local day at +01:00: the day of 2026-03-02 there starts at 23:00 UTC before.
    let (status, answer) = get_json(
        addr,
        "/api/v1/stats?from=2026-03-02T12:00:00%2B01:00&to=2026-03-02T13:00:00%2B01:00&bucket=day&utc_offset=%2B01:00",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["from"], &answer["to"], &answer["utc_offset"]),
        (
            &json!("2026-03-02T00:00:00+01:00"),
            &json!("2026-03-03T00:00:00+01:00"),
            &json!("+01:00")
        )
    );
    assert_eq!(answer["buckets"][0]["loans"], 2);

    let (status, together) = get_json(addr, "/api/v1/items/I1/borrowed-together").await;
    assert_eq!(status, 200, "{together}");
    assert_eq!(
        together,
        json!({"item": "I1", "sessions": 1,
               "together": [{"item": "I2", "title": "Title of I2", "sessions": 1}]})
    );

    // A range of more than 5000 buckets keeps the newest; `from` after `to` holds none.
    let (status, answer) = get_json(
        addr,
        "/api/v1/stats?from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&bucket=hour",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["buckets"].as_array().unwrap().len(), 5000);
    assert_eq!(answer["from"], "2025-06-06T16:00:00Z");
    let (status, answer) = get_json(
        addr,
        "/api/v1/stats?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["buckets"], json!([]));

    daemon.shutdown("test over").await.unwrap();
}
