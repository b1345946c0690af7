//! Staff and kiosks work with returns and self-check through the running daemon's API and
//! the CLI: the offline queue (never showing a patron), owed tag writes and the worklist
//! (a resolution also resolves the queue row or owed write it is about, and is answered
//! once committed); a kiosk identifies patrons against the ACS simulator and ends sessions;
//! staff switch a return station's sort plan. Every route's mistakes are 4xx with a reason.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use common::eventually;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::store::{NewQueued, NewWork, OwedState, QueueState, QueuedKind, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A patron id that must never leave the store through the API or the CLI.
const PATRON: &str = "P-SECRET-4711";

const PLAN: &str = r#"
version = 1
exception_bin = 2
[bins]
1 = "Shelving"
2 = "Exceptions"
[[rules]]
name = "Everything the ILS took"
ok = true
bin = 1
[plans.evening]
[[plans.evening.rules]]
name = "All to exceptions"
bin = 2
"#;

/// A return station and a self-check station on simulated readers, with the ACS simulator
/// when `ils` (else no library system at all: nothing is replayed behind the test's back).
fn config(dir: &Path, ils: bool) -> Config {
    std::fs::write(dir.join("plan.toml"), PLAN).unwrap();
    let ils = if ils {
        r#"
        [ils.simulator]
        listen = "127.0.0.1:0"
        [ils.sip2]
        addr = "simulator"
        user = "demo"
        password = "demo"
        institution = "DEMO"
        pool_size = 1
        "#
    } else {
        ""
    };
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        [api]
        listen = "127.0.0.1:0"
        [[api.tokens]]
        name = "staff"
        role = "operate"
        token = "{STAFF}"
        {ils}

        [[devices]]
        id = "drop"
        driver = "sim"
        settings = {{ round_ms = 1000 }}

        [[devices]]
        id = "pad"
        driver = "sim"
        settings = {{ round_ms = 1000 }}

        [[stations]]
        id = "returns"
        kind = "return"
        devices = ["drop"]
        [stations.returns]
        sort_plan = "{data}/plan.toml"

        [[stations]]
        id = "selfcheck"
        kind = "self-check"
        devices = ["pad"]
        "#,
        data = dir.display(),
    );
    Config::parse("circulation-api.toml", &text, std::iter::empty()).unwrap()
}

/// The staff's API token (`operate`).
const STAFF: &str = "staff-token-9f3";

/// One request to the API with the staff's token; the status code and the JSON body
/// (`Null` when not JSON).
async fn call(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\
         Authorization: Bearer {STAFF}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn get(api: SocketAddr, path: &str) -> (u16, Value) {
    call(api, "GET", path, "").await
}

/// What the worklist, queue and owed-write routes list, put straight into the store: two
/// transactions still queued (one a loan of [`PATRON`]), one whose replay failed, an owed
/// write raised to staff, and an item the sorter did not divert. Returns the worklist ids
/// (replay failed, owed write overdue, not diverted) and the failed queue and owed rows.
async fn seed(store: &Store) -> ([i64; 3], i64, i64) {
    let at = SystemTime::now();
    let queued = |kind, item: &str, patron: Option<&str>| NewQueued {
        station: if kind == QueuedKind::Checkin {
            "returns".into()
        } else {
            "selfcheck".into()
        },
        kind,
        item_id: item.into(),
        patron: patron.map(str::to_owned),
        at,
        due: patron.map(|_| at),
    };
    store
        .enqueue(&queued(QueuedKind::Checkin, "I0001", None))
        .await
        .unwrap();
    store
        .enqueue(&queued(QueuedKind::Checkout, "I0002", Some(PATRON)))
        .await
        .unwrap();
    let failed = store
        .enqueue(&queued(QueuedKind::Checkout, "I0004", Some(PATRON)))
        .await
        .unwrap();
    store
        .finish_queued(
            failed,
            QueueState::Failed,
            &json!({ "failed": "the ILS refused it: item charged" }).to_string(),
        )
        .await
        .unwrap();
    let owed = store
        .owe_pending("returns", "E004010031269117", Some("I0003"), true, "return")
        .await
        .unwrap();
    store
        .set_owed_state(owed, OwedState::Raised, Some("secure not confirmed: gone"))
        .await
        .unwrap();
    let work = |kind, item: &str, ref_id| NewWork {
        kind,
        station: "returns".into(),
        item_id: Some(item.into()),
        uid: None,
        reason: format!("{kind} for the test"),
        ref_id,
    };
    let ids = [
        store
            .add_work(&work("replay_failed", "I0004", Some(failed)))
            .await
            .unwrap(),
        store
            .add_work(&work("owed_write_overdue", "I0003", Some(owed)))
            .await
            .unwrap(),
        store
            .add_work(&work("not_diverted", "I0005", None))
            .await
            .unwrap(),
    ];
    (ids, failed, owed)
}

fn ids(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

fn says(body: &Value, words: &str) -> bool {
    body["error"]["message"]
        .as_str()
        .is_some_and(|e| e.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_list_the_offline_queue_without_patrons_and_the_owed_writes_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), false)).await.unwrap();
    let api = daemon.api_addr().unwrap();
    let store = daemon.store().clone();
    let (_, failed, owed) = seed(&store).await;

    let (code, status) = get(api, "/api/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(
        status["circulation"],
        json!({ "offline_queue": 2, "owed_writes": 1, "worklist_open": 3 })
    );
    let (code, stations) = get(api, "/api/v1/stations").await;
    assert_eq!(code, 200);
    assert_eq!(stations["gates"], json!({}));
    assert_eq!(stations["returns"]["returns"]["plan"], "schedule");
    assert_eq!(stations["selfchecks"]["selfcheck"]["session"], Value::Null);
    assert_eq!(status["stations"], stations);

    // The queue: open transactions by default, any state on request, never the patron.
    let (code, open) = get(api, "/api/v1/offline-queue").await;
    assert_eq!(code, 200);
    assert_eq!(open.as_array().unwrap().len(), 2);
    assert_eq!(open[1]["kind"], "checkout");
    assert_eq!(open[1]["item_id"], "I0002");
    let (_, all) = get(api, "/api/v1/offline-queue?state=all").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, failures) = get(api, "/api/v1/offline-queue?state=failed&limit=1").await;
    assert_eq!(ids(&failures), [failed]);
    assert_eq!(
        failures[0]["outcome"]["failed"],
        "the ILS refused it: item charged"
    );
    for body in [&open, &all, &failures] {
        assert!(!body.to_string().contains(PATRON), "{body}");
    }

    let (code, owed_rows) = get(api, "/api/v1/owed-writes").await;
    assert_eq!(code, 200);
    assert_eq!(ids(&owed_rows), [owed]);
    assert_eq!(
        (&owed_rows[0]["state"], &owed_rows[0]["secure"]),
        (&json!("raised"), &json!(true))
    );
    let (_, done) = get(api, "/api/v1/owed-writes?state=done").await;
    assert_eq!(done, json!([]));

    // Bad parameters: 400, naming the parameter.
    for (path, parameter) in [
        ("/api/v1/offline-queue?state=lost", "state"),
        ("/api/v1/offline-queue?limit=100000", "limit"),
        ("/api/v1/owed-writes?state=owed,gone", "state"),
        ("/api/v1/owed-writes?limit=0", "limit"),
        ("/api/v1/worklist?limit=1001", "limit"),
        ("/api/v1/worklist?all=maybe", "all"),
        ("/api/v1/worklist?al=true", "al"),
    ] {
        let (code, body) = get(api, path).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(says(&body, parameter), "{path}: {body}");
    }
    daemon.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_a_worklist_entry_resolves_what_it_is_about_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), false)).await.unwrap();
    let api = daemon.api_addr().unwrap();
    let store = daemon.store().clone();
    let ([replay_work, owed_work, divert_work], failed, owed) = seed(&store).await;

    let (code, work) = get(api, "/api/v1/worklist").await;
    assert_eq!(code, 200);
    assert_eq!(ids(&work), [replay_work, owed_work, divert_work]);
    assert_eq!(work[0]["ref_id"], failed);

    // Malformed bodies, unknown entries.
    let resolve = |id: i64| format!("/api/v1/worklist/{id}/resolve");
    for (body, code, words) in [
        ("{\"by\": \"anna\"", 400, "not JSON"),
        ("", 400, "JSON body"),
        (r#"{"by": "anna"}"#, 422, "resolution"),
        (r#"{"by": "anna", "resolution": "x", "why": 1}"#, 422, "why"),
    ] {
        let (got, answer) = call(api, "POST", &resolve(replay_work), body).await;
        assert_eq!(got, code, "{body}: {answer}");
        assert!(says(&answer, words), "{body}: {answer}");
    }
    let anna = r#"{"by": "anna", "resolution": "checked in by hand"}"#;
    let (code, body) = call(api, "POST", &resolve(999), anna).await;
    assert_eq!(code, 404);
    assert!(says(&body, "no open worklist entry 999"), "{body}");
    let (code, _) = call(api, "POST", "/api/v1/worklist/first/resolve", anna).await;
    assert_eq!(code, 400);

    // A failed replay: the entry and its queue row, committed before the answer.
    let (code, row) = call(api, "POST", &resolve(replay_work), anna).await;
    assert_eq!(code, 200, "{row}");
    assert_eq!(
        (&row["id"], &row["resolved_by"], &row["resolution"]),
        (
            &json!(replay_work),
            &json!("anna"),
            &json!("checked in by hand")
        )
    );
    let queue_row = store.queued_by_id(failed).await.unwrap().unwrap();
    assert_eq!(queue_row.state, QueueState::Resolved);
    assert!(queue_row.outcome.unwrap().contains("item charged"));
    let (code, _) = call(api, "POST", &resolve(replay_work), anna).await;
    assert_eq!(code, 404, "resolved only once");

    // An overdue owed write: the entry and the write.
    let bob = r#"{"by": "bob", "resolution": "secured at the staff pad"}"#;
    let (code, _) = call(api, "POST", &resolve(owed_work), bob).await;
    assert_eq!(code, 200);
    let (_, owed_rows) = get(api, "/api/v1/owed-writes?state=resolved").await;
    assert_eq!(ids(&owed_rows), [owed]);

    let (_, open) = get(api, "/api/v1/worklist").await;
    assert_eq!(ids(&open), [divert_work]);
    let (_, all) = get(api, "/api/v1/worklist?all=true&limit=10").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[1]["resolved_by"], "bob");
    let (_, status) = get(api, "/api/v1/status").await;
    assert_eq!(
        status["circulation"],
        json!({ "offline_queue": 2, "owed_writes": 0, "worklist_open": 1 })
    );

    // Each resolution is journaled: who said so, how, and with which token.
    let mut journaled = Vec::new();
    for _ in 0..200 {
        journaled = store.recent(10, Some("work_resolved")).await.unwrap();
        if journaled.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let records: Vec<_> = journaled
        .iter()
        .rev()
        .map(|r| {
            let p = &r.payload;
            (
                p["work_id"].as_i64(),
                p["work"].clone(),
                p["by"].clone(),
                p["token"].clone(),
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            (
                Some(replay_work),
                json!("replay_failed"),
                json!("anna"),
                json!("staff")
            ),
            (
                Some(owed_work),
                json!("owed_write_overdue"),
                json!("bob"),
                json!("staff")
            ),
        ]
    );
    daemon.shutdown("test").await.unwrap();
}

/// Runs the real binary (blocking, so off the runtime): exit success and stdout + stderr.
async fn rfidgw(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        // With `--api`, the token comes from RFIDGW_TOKEN; with `-c`, from the config's
        // token file.
        let mut command = Command::new(env!("CARGO_BIN_EXE_rfidgw"));
        command.args(&args).env_remove("RFIDGW_TOKEN");
        if args.iter().any(|a| a == "--api") {
            command.env("RFIDGW_TOKEN", STAFF);
        }
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), format!("{stdout}{stderr}"))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_use_the_worklist_queue_and_owed_commands_against_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), false)).await.unwrap();
    let api = daemon.api_addr().unwrap().to_string();
    let ([replay_work, _, divert_work], _, _) = seed(daemon.store()).await;
    // The commands find the daemon through its config's `api.listen`.
    let config_file = dir.path().join("rfidgw.toml");
    std::fs::write(
        &config_file,
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[api]\nlisten = \"{api}\"\n\
             [[api.tokens]]\nname = \"staff\"\nrole = \"operate\"\ntoken_file = \"staff.token\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("staff.token"), format!("{STAFF}\n")).unwrap();
    let config_file = config_file.to_str().unwrap();

    let (ok, out) = rfidgw(&["queue", "list", "--api", &api]).await;
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("OUTCOME"),
        "{out}"
    );
    assert!(
        lines[1].contains("I0001") && lines[2].contains("I0002"),
        "{out}"
    );
    assert!(!out.contains(PATRON), "{out}");
    let (ok, out) = rfidgw(&[
        "queue",
        "list",
        "--state",
        "failed",
        "--json",
        "-c",
        config_file,
    ])
    .await;
    assert!(ok, "{out}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["item_id"], "I0004");
    assert!(!out.contains(PATRON), "{out}");
    let (ok, out) = rfidgw(&["queue", "list", "--state", "lost", "--api", &api]).await;
    assert!(
        !ok && out.contains("state must be one of") && out.contains("400"),
        "{out}"
    );

    let (ok, out) = rfidgw(&["owed", "list", "-c", config_file]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("E004010031269117") && out.contains("secure") && out.contains("raised"),
        "{out}"
    );
    let (ok, out) = rfidgw(&["owed", "list", "--state", "done", "-c", config_file]).await;
    assert!(ok && out.contains("no owed tag writes"), "{out}");

    let (ok, out) = rfidgw(&["worklist", "list", "-c", config_file]).await;
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.contains("replay_failed") && out.contains("not_diverted"),
        "{out}"
    );
    let id = replay_work.to_string();
    let resolve = [
        "worklist",
        "resolve",
        &id,
        "--by",
        "anna",
        "--note",
        "checked in by hand",
    ];
    let (ok, out) = rfidgw(&[&resolve[..], &["-c", config_file]].concat()).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("resolved worklist entry {id}")) && out.contains("anna"),
        "{out}"
    );
    let (ok, out) = rfidgw(&[&resolve[..], &["--api", &api]].concat()).await;
    assert!(
        !ok && out.contains(&format!("no open worklist entry {id}")) && out.contains("404"),
        "{out}"
    );
    let (ok, out) = rfidgw(&["worklist", "list", "--all", "--json", "--api", &api]).await;
    assert!(ok, "{out}");
    let all: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(all[0]["resolved_by"], "anna");
    let (ok, out) = rfidgw(&["worklist", "list", "--all", "--api", &api]).await;
    assert!(
        ok && out.contains("anna: checked in by hand") && out.contains("open"),
        "{out}"
    );
    assert!(out.contains(&divert_work.to_string()), "{out}");

    let (ok, out) = rfidgw(&["worklist", "list", "--api", "127.0.0.1:1"]).await;
    assert!(
        !ok && out.contains("cannot reach the daemon's API"),
        "{out}"
    );
    daemon.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_opens_self_check_sessions_against_the_acs_simulator_and_hears_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), true)).await.unwrap();
    let api = daemon.api_addr().unwrap();
    eventually("the ILS online", async || {
        let (_, status) = get(api, "/api/v1/status").await;
        status["peers"][0]["state"]
            .as_str()
            .filter(|s| s.starts_with("online"))
            .map(str::to_owned)
    })
    .await;

    let patron = "/api/v1/stations/selfcheck/patron";
    let (code, body) = call(api, "POST", patron, r#"{"patron": "P1001", "pin": "1234"}"#).await;
    assert_eq!(code, 200, "{body}");
    let session = body["session"].as_str().unwrap().to_owned();
    assert!(session.starts_with('S'), "{body}");
    assert_eq!(
        daemon.stations().selfchecks()["selfcheck"]
            .session
            .as_deref(),
        Some(session.as_str())
    );
    let (code, body) = call(
        api,
        "POST",
        "/api/v1/stations/selfcheck/finish",
        r#"{"presented": 0}"#,
    )
    .await;
    assert_eq!((code, &body["finished"]), (200, &json!(true)), "{body}");
    let (code, body) = call(api, "POST", "/api/v1/stations/selfcheck/finish", "").await;
    assert_eq!(code, 409, "{body}");
    assert!(says(&body, "no session"), "{body}");

    // Refusals are 409 `refused` with the station's reason; a PIN is never echoed.
    let (code, body) = call(api, "POST", patron, r#"{"patron": "P1002"}"#).await;
    assert_eq!(code, 409, "{body}");
    assert!(says(&body, "blocked"), "{body}");
    let (code, body) = call(api, "POST", patron, r#"{"patron": "P1001", "pin": "9999"}"#).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        says(&body, "wrong_pin") && !body.to_string().contains("9999"),
        "{body}"
    );
    let (code, body) = call(api, "POST", patron, r#"{"patron": "P1001", "pin": 31337}"#).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        says(&body, "pin") && !body.to_string().contains("31337"),
        "{body}"
    );
    for (path, body, want) in [
        ("/api/v1/stations/selfcheck/patron", "{\"patron\": ", 400),
        (
            "/api/v1/stations/selfcheck/patron",
            r#"{"card": "P1001"}"#,
            422,
        ),
        (
            "/api/v1/stations/nowhere/patron",
            r#"{"patron": "P1001"}"#,
            404,
        ),
        (
            "/api/v1/stations/returns/patron",
            r#"{"patron": "P1001"}"#,
            409,
        ),
        ("/api/v1/stations/nowhere/finish", "", 404),
        (
            "/api/v1/stations/selfcheck/finish",
            r#"{"presented": -1}"#,
            422,
        ),
    ] {
        let (code, answer) = call(api, "POST", path, body).await;
        assert_eq!(code, want, "{path} {body}: {answer}");
        assert!(
            answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
            "{path} {body}: {answer}"
        );
    }

    daemon.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_switch_a_return_stations_sort_plan_and_back_to_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), false)).await.unwrap();
    let api = daemon.api_addr().unwrap();
    // A named plan until the next change, then the schedule again.
    let sort_plan = "/api/v1/stations/returns/sort-plan";
    let (code, body) = call(api, "PUT", sort_plan, r#"{"plan": "evening"}"#).await;
    assert_eq!((code, &body["plan"]), (200, &json!("evening")), "{body}");
    assert_eq!(
        daemon.stations().returns()["returns"].plan.as_deref(),
        Some("evening")
    );
    let (code, body) = call(api, "PUT", sort_plan, r#"{"plan": null}"#).await;
    assert_eq!(
        (code, &body["plan"], &body["selection"]),
        (200, &json!("default"), &json!("schedule")),
        "{body}"
    );
    for (path, body, want) in [
        (sort_plan, r#"{"plan": "summer"}"#, 409),
        (sort_plan, "{}", 422),
        (sort_plan, "[", 400),
        (
            "/api/v1/stations/selfcheck/sort-plan",
            r#"{"plan": null}"#,
            409,
        ),
        (
            "/api/v1/stations/nowhere/sort-plan",
            r#"{"plan": null}"#,
            404,
        ),
    ] {
        let (code, answer) = call(api, "PUT", path, body).await;
        assert_eq!(code, want, "{path} {body}: {answer}");
    }
    let (_, body) = call(api, "PUT", sort_plan, r#"{"plan": "summer"}"#).await;
    assert!(says(&body, "summer"), "{body}");
    daemon.shutdown("test").await.unwrap();
}
