//! Webhooks against a local receiver (axum on 127.0.0.1:0): retries after failures and
//! timeouts, the signature over the exact body, filters, the cursor across a restart, and
//! the daemon's wiring (stale cursors dropped at start).
//!
//! Waits are bounded only to turn a hang into a failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
#[path = "common/outbox_journal.rs"]
mod outbox_journal;

use outbox_journal::Journal;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::northbound::delivery::Secret;
use rfidgw::northbound::event::PublicEvent;
use rfidgw::northbound::outbox::Start;
use rfidgw::northbound::webhook::{Webhook, WebhookConfig};
use rfidgw::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HANG_GUARD: Duration = Duration::from_secs(30);
const SECRET: &str = "webhook-test-secret";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Every request's event id header, in arrival order.
    attempts: Vec<i64>,
    /// Events taken (answered 2xx), in order.
    taken: Vec<PublicEvent>,
    /// Requests whose signature did not verify.
    bad_signatures: usize,
    /// Requests whose id or kind header did not match the body.
    bad_headers: usize,
}

/// How the receiver misbehaves: the first `fail` requests get a 500, the `hang` requests
/// after them get no answer for longer than the hook's timeout.
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    fail: usize,
    hang: usize,
}

async fn take(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let signature = header("x-rfidgw-signature");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let verified = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|tag| ring::hmac::verify(&key, &body, &tag).is_ok());
    let event: PublicEvent = serde_json::from_slice(&body).expect("the body is a public event");
    let id: i64 = header("x-rfidgw-event-id").parse().unwrap_or(-1);
    // Decided on arrival: a hung request must not make its retry hang too.
    let n = {
        let mut seen = receiver.seen.lock().unwrap();
        if !verified {
            seen.bad_signatures += 1;
        }
        if id != event.id
            || header("x-rfidgw-event-kind") != event.kind
            || header("content-type") != "application/json"
        {
            seen.bad_headers += 1;
        }
        seen.attempts.push(id);
        seen.attempts.len() - 1
    };
    if n < receiver.fail {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if n < receiver.fail + receiver.hang {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return StatusCode::OK;
    }
    receiver.seen.lock().unwrap().taken.push(event);
    StatusCode::NO_CONTENT
}

/// Serves the receiver on 127.0.0.1:0; its URL.
async fn serve(receiver: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(take))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

fn receiver(fail: usize, hang: usize) -> Receiver {
    Receiver {
        seen: Arc::default(),
        fail,
        hang,
    }
}

fn hook(name: &str, url: &str) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url: url.into(),
        secret: Some(Secret::new(SECRET)),
        secret_file: None,
        kinds: Vec::new(),
        stations: Vec::new(),
        timeout_ms: 500,
        backoff_max_ms: 50,
        ca_file: None,
    }
}

impl Journal {
    /// Starts the hook as its consumer; its task and the token that stops it.
    async fn start(&self, config: &WebhookConfig) -> (JoinHandle<()>, CancellationToken) {
        let consumer = self
            .outbox
            .consumer(&config.consumer(), Start::Now)
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Webhook::new(config).unwrap().run(consumer, cancel.clone()));
        (task, cancel)
    }

    async fn cursor(&self, consumer: &str) -> Option<i64> {
        self.store
            .cursors()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.consumer == consumer)
            .map(|c| c.last_id)
    }

    async fn wait_for_cursor(&self, consumer: &str, id: i64) {
        let deadline = Instant::now() + HANG_GUARD;
        while self.cursor(consumer).await != Some(id) {
            assert!(
                Instant::now() < deadline,
                "{consumer} did not reach {id} (at {:?})",
                self.cursor(consumer).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn ids(events: &[PublicEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn a_failing_receiver_gets_every_event_retried_in_order_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("hooks.db"), "hooks").await;
    // Three 500s, then one answer that comes too late (timeout 500 ms), then 2xx.
    let receiver = receiver(3, 1);
    let url = serve(receiver.clone()).await;
    let config = hook("crm", &url);
    let (task, cancel) = journal.start(&config).await;
    journal
        .append(&[
            ("gate_alarm", Some("exit")),
            ("tag_arrived", Some("exit")),
            ("daemon_started", None),
        ])
        .await;
    journal.wait_for_cursor("webhook:crm", 3).await;
    cancel.cancel();
    task.await.unwrap();

    let seen = receiver.seen.lock().unwrap();
    assert_eq!(ids(&seen.taken), [1, 2, 3], "each event once, in order");
    assert_eq!(
        seen.attempts,
        [1, 1, 1, 1, 1, 2, 3],
        "three refusals and one timeout for event 1, retried until taken; nothing overtakes it"
    );
    assert_eq!(
        seen.bad_signatures, 0,
        "every request is signed over its body"
    );
    assert_eq!(seen.bad_headers, 0, "id and kind headers match the body");
    assert_eq!(seen.taken[0].kind, "gate_alarm");
    assert_eq!(seen.taken[0].station.as_deref(), Some("exit"));
}

#[tokio::test]
async fn filters_pass_over_what_a_hook_does_not_take_and_the_cursor_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("hooks.db"), "hooks").await;
    let receiver = receiver(0, 0);
    let url = serve(receiver.clone()).await;
    let config = WebhookConfig {
        kinds: vec!["gate_alarm".into(), "item_returned".into()],
        stations: vec!["exit".into()],
        ..hook("alarms", &url)
    };
    let (task, cancel) = journal.start(&config).await;
    journal
        .append(&[
            ("gate_alarm", Some("exit")),    // 1 taken
            ("tag_arrived", Some("exit")),   // 2 kind left out
            ("gate_alarm", Some("side")),    // 3 station left out
            ("gate_alarm", None),            // 4 no station: left out
            ("item_returned", Some("exit")), // 5 taken
            ("tag_departed", Some("exit")),  // 6 left out, last
        ])
        .await;
    journal.wait_for_cursor("webhook:alarms", 6).await;
    cancel.cancel();
    task.await.unwrap();
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(ids(&seen.taken), [1, 5]);
    assert_eq!(seen.attempts.len(), 2, "nothing left out was posted");
}

#[tokio::test]
async fn delivery_resumes_from_the_cursor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.db");
    let receiver = receiver(0, 0);
    let url = serve(receiver.clone()).await;
    let config = hook("resume", &url);
    {
        let journal = Journal::open(&path, "hooks").await;
        let (task, cancel) = journal.start(&config).await;
        journal
            .append(&[("one", None), ("two", None), ("three", None)])
            .await;
        journal.wait_for_cursor("webhook:resume", 3).await;
        cancel.cancel();
        task.await.unwrap();
        // Journaled while the hook is not running.
        journal.append(&[("four", None), ("five", None)]).await;
        journal.store.close().await;
    }
    let journal = Journal::open(&path, "hooks").await;
    let (task, cancel) = journal.start(&config).await;
    journal.append(&[("six", None)]).await;
    journal.wait_for_cursor("webhook:resume", 6).await;
    cancel.cancel();
    task.await.unwrap();
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(
        ids(&seen.taken),
        [1, 2, 3, 4, 5, 6],
        "after the restart: what was missed, once, then new events"
    );
}

#[tokio::test]
async fn a_receiver_that_is_not_listening_yet_gets_the_event_once_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("hooks.db"), "hooks").await;
    // A port nobody listens on yet.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let config = hook("late", &format!("http://{addr}/hook"));
    let (task, cancel) = journal.start(&config).await;
    journal.append(&[("gate_alarm", Some("exit"))]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        journal.cursor("webhook:late").await,
        Some(0),
        "not delivered while refused"
    );
    let receiver = receiver(0, 0);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let app = Router::new()
        .route("/hook", post(take))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    journal.wait_for_cursor("webhook:late", 1).await;
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(ids(&receiver.seen.lock().unwrap().taken), [1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_delivers_through_its_hooks_and_drops_cursors_no_longer_configured() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // A previous run had MQTT and a hook called `old`.
    let store = Store::open(&state.join("rfidgw.db")).await.unwrap();
    store.cursor_or_create("webhook:old", 0).await.unwrap();
    store.cursor_or_create("mqtt", 0).await.unwrap();
    store.cursor_or_create("someone-else", 0).await.unwrap();
    store.close().await;

    let receiver = receiver(1, 0);
    let url = serve(receiver.clone()).await;
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let text = format!(
        r#"
[daemon]
data_dir = "{}"
shutdown_timeout_ms = 5000
[api]
enabled = false
[northbound]
site = "hooked"
[[webhooks]]
name = "live"
url = "{url}"
secret_file = "hook.secret"
kinds = ["daemon_started"]
backoff_max_ms = 50
"#,
        state.display()
    );
    let config_path = dir.path().join("rfidgw.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = Config::load_with_env(&config_path, Vec::new()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    while receiver.seen.lock().unwrap().taken.is_empty() {
        assert!(Instant::now() < deadline, "daemon_started never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let consumers: Vec<String> = daemon
        .store()
        .cursors()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.consumer)
        .collect();
    // The receiver failed the first request: /metrics shows the retry and the delivery.
    let metrics = daemon.metrics().await;
    daemon.shutdown("test").await.unwrap();
    for line in [
        "rfidgw_webhook_requests_total{hook=\"live\"} 2",
        "rfidgw_webhook_failures_total{hook=\"live\"} 1",
        "rfidgw_webhook_delivered_total{hook=\"live\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("rfidgw_mqtt_"),
        "no MQTT counters without [mqtt]"
    );
    assert_eq!(
        consumers,
        ["someone-else", "webhook:live"],
        "mqtt (disabled) and webhook:old (gone) no longer hold pruning back; other consumers stay"
    );
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.taken.len(), 1);
    assert_eq!(seen.taken[0].kind, "daemon_started");
    assert_eq!(seen.taken[0].site, "hooked");
    assert_eq!(seen.bad_signatures, 0, "the secret came from secret_file");
}
