//! Staff work on a running gate, through the API and the CLI against the real binary:
//! list alarms, acknowledge one (answered only once committed), silence the gate (alarms
//! keep being recorded, marked silenced), and seed the loans cache from a file.

mod common;

use std::process::Command;

use common::eventually;
use rfidgw::app::Daemon;
use rfidgw::config::Config;

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{}"
        [api]
        listen = "127.0.0.1:0"
        [[api.tokens]]
        name = "desk"
        role = "operate"
        token = "desk-token"
        [[api.tokens]]
        name = "screen"
        role = "read"
        sha256 = "{screen}"
        [tags.owners]
        libraries = [{{ country = "DE", library = "705" }}]

        [[devices]]
        id = "gate-sim"
        driver = "sim"
        [devices.settings]
        round_ms = 400
        [[devices.settings.tags]]
        uid = "E004010031269117"
        afi = "07"
        memory = "11010131313232333334340000000000000000513E4445373035000000000000"
        at_ms = 0
        stay_ms = 100

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-sim"]
        [stations.gate]
        leave_window_ms = 50
        enter_window_ms = 0
        "#,
        dir.display(),
        screen = hex_sha256("screen-token"),
    );
    Config::parse("gate-api.toml", &text, std::iter::empty()).unwrap()
}

/// The SHA-256 of a token in hex, as `rfidgw token hash` prints it.
fn hex_sha256(token: &str) -> String {
    hex::encode(rfidgw::api::auth::token_digest(token))
}

/// Runs the real binary (blocking, so off the runtime) and returns exit success and stdout;
/// the desk's token comes from RFIDGW_TOKEN unless the arguments give one.
async fn rfidgw(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_rfidgw"))
            .args(&args)
            .env("RFIDGW_TOKEN", "desk-token")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), format!("{stdout}{stderr}"))
    })
    .await
    .unwrap()
}

async fn alarms(api: &str) -> Vec<serde_json::Value> {
    let (ok, out) = rfidgw(vec![
        "alarms".into(),
        "list".into(),
        "--json".into(),
        "--api".into(),
        api.into(),
    ])
    .await;
    assert!(ok, "{out}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
async fn staff_list_acknowledge_and_silence_gate_alarms_through_the_api_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path())).await.unwrap();
    let api = daemon.api_addr().unwrap().to_string();

    let first = eventually("an alarm", async || alarms(&api).await.into_iter().last()).await;
    assert_eq!(first["reason"], "secured");
    assert_eq!(first["item"], "11223344");
    assert_eq!(first["acknowledged"], false);
    let id = first["alarm_id"].as_str().unwrap().to_owned();

    let ack = vec![
        "alarms".into(),
        "ack".into(),
        id.clone(),
        "--by".into(),
        "JS".into(),
        "--api".into(),
        api.clone(),
    ];
    let (ok, out) = rfidgw(ack).await;
    assert!(ok, "{out}");
    // Answered only after the commit: the acknowledgement is already in the journal.
    let acks = daemon
        .store()
        .recent(10, Some("alarm_acknowledged"))
        .await
        .unwrap();
    assert_eq!(acks[0].payload["alarm_id"], id.as_str());
    let listed = alarms(&api).await;
    let acked = listed
        .iter()
        .find(|a| a["alarm_id"] == id.as_str())
        .unwrap();
    assert_eq!(
        (
            acked["acknowledged"].as_bool(),
            acked["acknowledged_by"].as_str()
        ),
        (Some(true), Some("JS"))
    );

    // A read token lists but may not acknowledge; the CLI says so.
    let (ok, out) = rfidgw(vec![
        "alarms".into(),
        "ack".into(),
        id.clone(),
        "--token".into(),
        "screen-token".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(
        !ok && out.contains("needs `operate`") && out.contains("403"),
        "{out}"
    );
    let (ok, out) = rfidgw(vec![
        "alarms".into(),
        "list".into(),
        "--token".into(),
        "screen-token".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(ok && out.contains(&id), "{out}");

    let unknown = vec![
        "alarms".into(),
        "ack".into(),
        "A0-0".into(),
        "--api".into(),
        api.clone(),
    ];
    let (ok, out) = rfidgw(unknown).await;
    assert!(
        !ok && out.contains("no alarm `A0-0`") && out.contains("404"),
        "{out}"
    );

    // Silenced: alarms go on being recorded, marked silenced.
    let (ok, out) = rfidgw(vec![
        "gate".into(),
        "silence".into(),
        "main-exit".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(ok && out.contains("silenced_until_ms"), "{out}");
    assert!(
        daemon.stations().gates()["main-exit"]
            .silenced_until_ms
            .is_some()
    );
    eventually("a silenced alarm", async || {
        alarms(&api)
            .await
            .into_iter()
            .find(|a| a["silenced"] == true)
    })
    .await;
    let (ok, out) = rfidgw(vec![
        "gate".into(),
        "silence".into(),
        "main-exit".into(),
        "--off".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        daemon.stations().gates()["main-exit"].silenced_until_ms,
        None
    );
    let (ok, out) = rfidgw(vec![
        "gate".into(),
        "silence".into(),
        "nowhere".into(),
        "--api".into(),
        api.clone(),
    ])
    .await;
    assert!(!ok && out.contains("no gate station `nowhere`"), "{out}");
    daemon.shutdown("test").await.unwrap();
}

#[tokio::test]
async fn loans_import_seeds_the_cache_the_daemon_loads_and_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("rfidgw.toml");
    std::fs::write(
        &config_file,
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[api]\nenabled = false\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let loans = dir.path().join("loans.csv");
    std::fs::write(&loans, "item_id,on_loan\n11223344,1\n55667788,0\n").unwrap();
    let import = |file: &std::path::Path| {
        vec![
            "loans".into(),
            "import".into(),
            file.display().to_string(),
            "--config".into(),
            config_file.display().to_string(),
        ]
    };
    let (ok, out) = rfidgw(import(&loans)).await;
    assert!(ok && out.contains("imported 2 items"), "{out}");

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "11223344,maybe\n").unwrap();
    let (ok, out) = rfidgw(import(&bad)).await;
    assert!(
        !ok && out.contains("bad.csv: line 1: on_loan must be"),
        "{out}"
    );

    let config = Config::load(&config_file).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    assert_eq!(daemon.loans().on_loan("11223344"), Some(true));
    assert_eq!(daemon.loans().on_loan("55667788"), Some(false));
    assert_eq!(daemon.loans().on_loan("99999999"), None);
    daemon.shutdown("test").await.unwrap();
}
