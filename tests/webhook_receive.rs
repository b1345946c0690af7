//! `rfidgw webhook-receive` (the demo's webhook receiver) against the daemon's webhook
//! delivery: the real binary on 127.0.0.1:0, a hook posting from an outbox.
//!
//! Waits are bounded only to turn a hang into a failure.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/outbox_journal.rs"]
mod outbox_journal;

use outbox_journal::Journal;
use rfidgw::northbound::delivery::Secret;
use rfidgw::northbound::outbox::Start;
use rfidgw::northbound::webhook::{Webhook, WebhookConfig};
use tokio_util::sync::CancellationToken;

const HANG_GUARD: Duration = Duration::from_secs(30);

/// Starts the receiver with its secret in a file; the child (stdout piped) and its URL.
fn receiver(dir: &std::path::Path, secret: &str, count: Option<u64>) -> (Child, String) {
    let secret_file = dir.join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfidgw"));
    command
        .args([
            "webhook-receive",
            "--listen",
            "127.0.0.1:0",
            "--secret-file",
        ])
        .arg(&secret_file)
        .env_remove("RFIDGW_WEBHOOK_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(count) = count {
        command.args(["--count", &count.to_string()]);
    }
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    assert!(!first.contains(secret), "the secret is never printed");
    (child, format!("{url}/rfidgw"))
}

fn hook(url: &str, secret: &str) -> WebhookConfig {
    WebhookConfig {
        name: "try".into(),
        url: url.into(),
        secret: Some(Secret::new(secret)),
        secret_file: None,
        kinds: Vec::new(),
        stations: Vec::new(),
        timeout_ms: 2000,
        backoff_max_ms: 50,
        ca_file: None,
    }
}

/// Starts the hook over the journal's outbox; the token that stops it.
async fn start(journal: &Journal, config: &WebhookConfig) -> CancellationToken {
    let consumer = journal
        .outbox
        .consumer(&config.consumer(), Start::Now)
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(Webhook::new(config).unwrap().run(consumer, cancel.clone()));
    cancel
}

async fn cursor(journal: &Journal) -> Option<i64> {
    journal
        .store
        .cursors()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.consumer == "webhook:try")
        .map(|c| c.last_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_receiver_takes_signed_events_in_order_and_stops_after_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = receiver(dir.path(), "shared-secret", Some(3));
    let journal = Journal::open(&dir.path().join("hooks.db"), "branch").await;
    let cancel = start(&journal, &hook(&url, "shared-secret")).await;
    journal
        .append(&[
            ("gate_alarm", Some("exit")),
            ("item_returned", Some("returns")),
            ("item_loan", Some("pad")),
        ])
        .await;
    let output = tokio::time::timeout(
        HANG_GUARD,
        tokio::task::spawn_blocking(|| child.wait_with_output()),
    )
    .await
    .expect("the receiver exits after three events")
    .unwrap()
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for ((line, id), kind) in
        lines
            .iter()
            .zip(1..)
            .zip(["gate_alarm", "item_returned", "item_loan"])
    {
        let head = format!("#{id} {kind} signature ok {{");
        assert!(line.starts_with(&head), "{line:?} starts with {head:?}");
        let event: serde_json::Value =
            serde_json::from_str(&line[head.len() - 1..]).expect("the event's JSON follows");
        assert_eq!(event["id"], id);
        assert_eq!(event["kind"], kind);
    }
    assert!(!stdout.contains("shared-secret"));
    // Every event was answered 2xx, so the hook's cursor moved past all three.
    let deadline = Instant::now() + HANG_GUARD;
    while cursor(&journal).await != Some(3) {
        assert!(
            Instant::now() < deadline,
            "cursor {:?}",
            cursor(&journal).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopped only now: the hook moves its cursor after the answer it got as the receiver
    // exited, and a hook stopped before that would leave the cursor one event behind.
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_signature_is_refused_and_the_event_stays_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = receiver(dir.path(), "the-receivers-secret", None);
    let journal = Journal::open(&dir.path().join("hooks.db"), "branch").await;
    let cancel = start(&journal, &hook(&url, "another-secret")).await;
    journal.append(&[("gate_alarm", Some("exit"))]).await;
    let stdout = child.stdout.take().unwrap();
    let first = tokio::time::timeout(
        HANG_GUARD,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        }),
    )
    .await
    .expect("the receiver prints the refused request")
    .unwrap();
    assert_eq!(
        first.trim_end(),
        "#1 gate_alarm signature MISMATCH: refused (401)"
    );
    assert_eq!(
        cursor(&journal).await,
        Some(0),
        "a refused event is not delivered"
    );
    cancel.cancel();
    child.kill().unwrap();
    child.wait().unwrap();
}
