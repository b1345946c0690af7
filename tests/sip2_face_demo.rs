//! Issue 11, "what must show": a user points `rfidgw sip2 --addr 127.0.0.1:<face port> …
//! checkout …` at the demo and gets the loan from the demo library.
//!
//! `config/demo.toml` runs in process with the overrides `tests/demo.rs` uses (a temporary
//! state directory, the API and the face on port 0, as a user's `RFIDGW__…` environment
//! would); the client is the built `rfidgw` binary, run with the README's command line.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rfidgw::app::Daemon;
use rfidgw::config::Config;
use serde_json::Value;

/// Runs `rfidgw sip2 --addr <face> --user kiosk1 --pass kiosk1 --institution DEMO <rest>`
/// and reads its one JSON object.
async fn kiosk_cli(face: &str, rest: &[&str]) -> Value {
    let args: Vec<String> = [
        "sip2",
        "--addr",
        face,
        "--user",
        "kiosk1",
        "--pass",
        "kiosk1",
        "--institution",
        "DEMO",
    ]
    .iter()
    .chain(rest)
    .map(|s| (*s).to_owned())
    .collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rfidgw"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_borrows_from_the_demo_library_through_the_face() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = Config::load_with_env(
        &demo,
        [
            (
                "RFIDGW__DAEMON__DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
            ("RFIDGW__API__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "RFIDGW__SIP2_SERVER__LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
        ],
    )
    .unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let face = daemon.sip2_face().expect("the demo has the face").addr;
    let face = face.to_string();
    let pool = daemon.ils().pool().expect("the demo has an ILS");
    tokio::time::timeout(
        Duration::from_mins(1),
        pool.wait_for(rfidgw_sip2::PeerState::Online),
    )
    .await
    .expect("the ILS comes online");

    // I0007 (a documentary DVD with a rental fee, acknowledged) is the one demo item no
    // simulated station touches.
    let loan = kiosk_cli(&face, &["checkout", "P1001", "I0007", "--fee-ack"]).await;
    assert_eq!(loan["command"], "12", "{loan}");
    assert_eq!(
        loan["fixed"]["ok"], "1",
        "the demo library lends it: {loan}"
    );
    assert_eq!(loan["fields"]["AB item_identifier"], "I0007", "{loan}");
    let due = loan["fields"]["AH due_date"].as_str().unwrap_or_default();
    assert!(!due.trim().is_empty(), "the library's due date: {loan}");

    // The gateway learned the loan (the gate's loans cache, the journal), and the library
    // system has it: item information through the face says charged.
    let loans = daemon.loans().clone();
    tokio::time::timeout(Duration::from_mins(1), async {
        while loans.on_loan("I0007") != Some(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the loans cache learns the loan");
    let journaled = tokio::time::timeout(Duration::from_mins(1), async {
        loop {
            let rows = daemon
                .store()
                .recent(50, Some("kiosk_transaction"))
                .await
                .unwrap();
            if let Some(row) = rows.into_iter().find(|r| r.payload["item"] == "I0007") {
                return row.payload;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the loan is journaled");
    assert_eq!(journaled["station"], "selfcheck-1", "{journaled}");
    assert_eq!(journaled["outcome"], "accepted", "{journaled}");
    let item = kiosk_cli(&face, &["item", "I0007"]).await;
    assert_eq!(item["fixed"]["circulation_status"], "04", "{item}");

    // And back, so the demo library is as it was.
    let back = kiosk_cli(&face, &["checkin", "I0007"]).await;
    assert_eq!(back["fixed"]["ok"], "1", "{back}");
    daemon.shutdown("test").await.unwrap();
}
