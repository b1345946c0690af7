//! MQTT northbound against Mosquitto: events on their topics in order, the retained status
//! and the last will, and the outbox across a daemon SIGKILL (the real binary) and a 30 s
//! broker outage (a private `mosquitto` on a free port, stopped and started again).
//!
//! "No event lost and none duplicated beyond QoS 1 redelivery" is checked on what a
//! subscriber receives: every journal id arrives; an id arrives twice only when it lay
//! right after the cursor saved when the connection ended: in flight (published, not
//! acknowledged), or, after a crash, acknowledged but not yet saved (the cursor is saved
//! once per batch).
//!
//! Without a broker on 127.0.0.1:1883 (or a `mosquitto` binary for the outage test) the
//! tests print a SKIP line and pass, unless `RFIDGW_REQUIRE_INTEROP=1` is set (as in
//! `.ci/run`): then they fail. Each test has its own site, so its own topics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/outbox_journal.rs"]
mod outbox_journal;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use outbox_journal::Journal;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::northbound::event::PublicEvent;
use rfidgw::northbound::mqtt::{MqttConfig, MqttPublisher};
use rfidgw::northbound::outbox::Start;
use rfidgw::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SHARED: u16 = 1883;
/// Bound on one wait; only reached when something hangs.
const HANG_GUARD: Duration = Duration::from_mins(1);
/// How long the broker stays away in the outage test.
const OUTAGE: Duration = Duration::from_secs(30);

fn skip_or_fail(test: &str, reason: &str) {
    assert!(
        std::env::var("RFIDGW_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "Mosquitto is required (RFIDGW_REQUIRE_INTEROP=1) but {reason}"
    );
    println!("SKIP {test}: {reason} (apt-get install mosquitto; it listens on 127.0.0.1:1883)");
}

/// Whether the shared Mosquitto answers on 127.0.0.1:1883.
fn shared_broker(test: &str) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], SHARED));
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(test, &format!("no MQTT broker on {addr} ({e})"));
            false
        }
    }
}

/// A site name of its own per test and run.
fn unique_site(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t{}-{nanos}-{test}", std::process::id())
}

/// One message a subscriber got.
#[derive(Clone, Debug)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// A QoS 1 subscriber that reconnects by itself (and, with a client id, keeps its session
/// across a broker restart).
struct Subscriber {
    messages: mpsc::UnboundedReceiver<Message>,
    got: Vec<Message>,
    task: JoinHandle<()>,
}

impl Subscriber {
    async fn start(port: u16, filter: &str, session: Option<&str>) -> Self {
        let id = session.map_or_else(|| format!("sub-{}", unique_site("s")), str::to_owned);
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(session.is_none())
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, messages) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let filter = filter.to_owned();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client.try_subscribe(&filter, QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(ready) = ready_tx.take() {
                            let _ = ready.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Message {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    // The next poll reconnects.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(HANG_GUARD, ready)
            .await
            .expect("the subscription was acknowledged")
            .unwrap();
        Self {
            messages,
            got: Vec::new(),
            task,
        }
    }

    /// Receives until `done` holds for what was received so far.
    async fn until(&mut self, what: &str, done: impl Fn(&[Message]) -> bool) {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        while !done(&self.got) {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(message)) => self.got.push(message),
                _ => panic!(
                    "gave up waiting for {what}; got {} messages, the last: {:?}",
                    self.got.len(),
                    self.got.last()
                ),
            }
        }
    }

    /// The events received, in order (status messages left out).
    fn events(&self) -> Vec<(String, PublicEvent)> {
        self.got
            .iter()
            .filter(|m| !m.topic.ends_with("/status"))
            .map(|m| {
                let event = serde_json::from_slice(&m.payload)
                    .unwrap_or_else(|e| panic!("{}: not a public event: {e}", m.topic));
                (m.topic.clone(), event)
            })
            .collect()
    }

    fn ids(&self) -> Vec<i64> {
        self.events().iter().map(|(_, e)| e.id).collect()
    }

    fn statuses(&self) -> Vec<String> {
        self.got
            .iter()
            .filter(|m| m.topic.ends_with("/status"))
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether every id in `1..=last` was received.
fn has_all(messages: &[Message], last: i64) -> bool {
    let mut seen = vec![false; usize::try_from(last).unwrap() + 1];
    for m in messages.iter().filter(|m| !m.topic.ends_with("/status")) {
        if let Ok(event) = serde_json::from_slice::<PublicEvent>(&m.payload)
            && let Ok(id) = usize::try_from(event.id)
            && id < seen.len()
        {
            seen[id] = true;
        }
    }
    seen.iter().skip(1).all(|s| *s)
}

/// What a newcomer finds on the status topic: the retained message.
async fn retained_status(port: u16, site: &str) -> Message {
    let mut sub = Subscriber::start(port, &format!("rfidgw/{site}/status"), None).await;
    sub.until("the retained status", |got| !got.is_empty())
        .await;
    sub.got[0].clone()
}

/// Removes the test's retained status from the shared broker.
async fn clear_status(port: u16, site: &str) {
    let options = MqttOptions::new(format!("clean-{site}"), "127.0.0.1", port);
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    client
        .publish(format!("rfidgw/{site}/status"), QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = eventloop.poll().await {
                return;
            }
        }
    })
    .await;
}

/// Ids received more than once, with their counts.
fn duplicates(ids: &[i64]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(*id).or_insert(0) += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// How often the id sequence starts over (a resend after a reconnect or a restart).
fn restarts(ids: &[i64]) -> usize {
    ids.windows(2).filter(|w| w[1] <= w[0]).count()
}

impl Journal {
    async fn cursor(&self) -> i64 {
        cursor_of(&self.store).await
    }

    async fn start(&self, config: &MqttConfig, site: &str) -> (JoinHandle<()>, CancellationToken) {
        let consumer = self.outbox.consumer("mqtt", Start::Now).await.unwrap();
        let publisher = MqttPublisher::new(config, site).unwrap();
        let cancel = CancellationToken::new();
        (
            tokio::spawn(publisher.run(self.outbox.clone(), consumer, cancel.clone())),
            cancel,
        )
    }
}

async fn cursor_of(store: &Store) -> i64 {
    store
        .cursors()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.consumer == "mqtt")
        .map_or(-1, |c| c.last_id)
}

fn mqtt(port: u16, batch: u16) -> MqttConfig {
    MqttConfig {
        enabled: true,
        port: Some(port),
        batch,
        backoff_max_ms: 1_000,
        keepalive_s: 5,
        ..MqttConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_on_their_topics_in_order_with_a_retained_status() {
    if !shared_broker("MQTT topics") {
        return;
    }
    let site = unique_site("topics");
    let mut sub = Subscriber::start(SHARED, &format!("rfidgw/{site}/#"), None).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("o.db"), &site).await;
    // Batches of 4: ten events take three.
    let (task, cancel) = journal.start(&mqtt(SHARED, 4), &site).await;
    let script: [(&str, Option<&str>); 10] = [
        ("daemon_started", None),
        ("tag_arrived", Some("main-exit")),
        ("gate_alarm", Some("main-exit")),
        ("tag_departed", Some("main-exit")),
        ("item_returned", Some("book-return")),
        ("peer_changed", None),
        ("session_started", Some("selfcheck-1")),
        ("item_loan", Some("selfcheck-1")),
        ("session_ended", Some("selfcheck-1")),
        ("daemon_stopping", None),
    ];
    journal.append(&script[..3]).await;
    journal.append(&script[3..]).await;
    sub.until("ten events", |got| has_all(got, 10)).await;

    let events = sub.events();
    assert_eq!(
        sub.ids(),
        (1..=10).collect::<Vec<_>>(),
        "each once, in order"
    );
    for ((topic, event), (kind, station)) in events.iter().zip(script) {
        assert_eq!(
            topic,
            &format!("rfidgw/{site}/{}/{kind}", station.unwrap_or("_"))
        );
        assert_eq!(
            (
                event.kind.as_str(),
                event.station.as_deref(),
                event.site.as_str(),
                event.v
            ),
            (kind, station, site.as_str(), 1)
        );
        assert_eq!(event.item.as_deref(), Some("I0001"));
    }
    assert_eq!(sub.statuses().first().map(String::as_str), Some("online"));
    wait_until(
        || async { journal.cursor().await == 10 },
        "the cursor at 10",
    )
    .await;

    let status = retained_status(SHARED, &site).await;
    assert_eq!(
        (status.payload.as_slice(), status.retain),
        (&b"online"[..], true)
    );
    cancel.cancel();
    task.await.unwrap();
    let status = retained_status(SHARED, &site).await;
    assert_eq!(
        (status.payload.as_slice(), status.retain),
        (&b"offline"[..], true),
        "a clean stop says offline, retained"
    );
    clear_status(SHARED, &site).await;
}

async fn wait_until<F, Fut>(probe: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + HANG_GUARD;
    while !probe().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- The real binary, killed -------------------------------------------------------------

/// Kills the daemon when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.0.id().try_into().unwrap()), signal).unwrap();
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the daemon did not exit within {HANG_GUARD:?}");
    }
}

/// The daemon binary; through `RFIDGW_TEST_RUNNER` (an emulator) when that is set.
fn daemon(config: &Path) -> Process {
    let binary = env!("CARGO_BIN_EXE_rfidgw");
    let runner = std::env::var("RFIDGW_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    let child = command
        .args(["run", "--config"])
        .arg(config)
        .env_remove("STATE_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

/// A gate whose simulated reader sees 8 tags come and go every 40 ms: a steady stream of
/// events; MQTT on `port`.
fn gate_config(dir: &Path, site: &str, port: u16, batch: u16) -> PathBuf {
    let mut text = format!(
        r#"
[daemon]
data_dir = "{}"
log_format = "json"
shutdown_timeout_ms = 5000
[api]
enabled = false
[northbound]
site = "{site}"
[mqtt]
enabled = true
port = {port}
batch = {batch}
keepalive_s = 5
backoff_max_ms = 500
[[devices]]
id = "gate-reader"
driver = "sim"
[devices.settings]
round_ms = 40
"#,
        dir.join("state").display()
    );
    for i in 0..8 {
        let _ = write!(
            text,
            "[[devices.settings.tags]]\nuid = \"E0040100000000{i:02X}\"\nafi = \"07\"\nat_ms = {i}\nstay_ms = 1\n"
        );
    }
    text.push_str("\n[[stations]]\nid = \"exit\"\nkind = \"gate\"\ndevices = [\"gate-reader\"]\n");
    let path = dir.join("rfidgw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkilled_daemon_leaves_its_last_will_and_loses_no_event() {
    const BATCH: u16 = 20;
    if !shared_broker("MQTT across SIGKILL") {
        return;
    }
    let site = unique_site("kill");
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(dir.path(), &site, SHARED, BATCH);
    let db = dir.path().join("state/rfidgw.db");
    let mut sub = Subscriber::start(SHARED, &format!("rfidgw/{site}/#"), None).await;

    let mut first = daemon(&config);
    sub.until("200 events from the first run", |got| got.len() > 200)
        .await;
    first.signal(Signal::SIGKILL);
    assert_eq!(first.wait().code(), None, "killed by the signal");
    sub.until("the last will", |got| {
        got.iter()
            .any(|m| m.topic.ends_with("/status") && m.payload == b"offline")
    })
    .await;
    let received_before = sub.ids();
    let store = Store::open(&db).await.unwrap();
    let saved = cursor_of(&store).await;
    let committed = store.journal_last_id().await.unwrap().unwrap();
    store.close().await;
    let got_max = received_before.iter().copied().max().unwrap();
    assert!(
        saved <= got_max,
        "the cursor ({saved}) never passes what the broker got ({got_max})"
    );
    assert!(committed >= got_max);

    let mut second = daemon(&config);
    sub.until("every event of the first run, and more", |got| {
        has_all(got, committed + 100)
    })
    .await;
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait().code(), Some(0), "a clean stop");
    let store = Store::open(&db).await.unwrap();
    let last = store.journal_last_id().await.unwrap().unwrap();
    let cursor = cursor_of(&store).await;
    store.close().await;
    assert_eq!(
        cursor, last,
        "a clean stop publishes everything journaled, daemon_stopping included"
    );
    sub.until("everything, and the offline after the clean stop", |got| {
        has_all(got, last)
            && got
                .iter()
                .filter(|m| m.topic.ends_with("/status") && m.payload == b"offline")
                .count()
                == 2
    })
    .await;

    let ids = sub.ids();
    let twice = duplicates(&ids);
    for (id, count) in &twice {
        assert!(
            *count == 2 && *id > saved && *id <= saved + 2 * i64::from(BATCH),
            "event {id} arrived {count} times; only events after the saved cursor {saved}, acknowledged but not yet saved or in flight (two batches at most), may arrive twice: {twice:?}"
        );
    }
    assert!(
        restarts(&ids) <= 1,
        "in order, starting over once at most (the restart)"
    );
    let kinds: Vec<String> = sub.events().iter().map(|(_, e)| e.kind.clone()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "daemon_started").count(), 2);
    assert!(kinds.iter().any(|k| k == "daemon_stopping"), "{kinds:?}");
    println!(
        "{} events, cursor {saved} at the kill, {} published twice",
        last,
        twice.len()
    );
    clear_status(SHARED, &site).await;
}

// --- A private broker, away for 30 s -----------------------------------------------------

fn mosquitto_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A Mosquitto of the test's own, on a fixed port for its life, keeping sessions on disk so
/// a persistent subscriber's queue survives a restart.
struct Broker {
    binary: PathBuf,
    config: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl Broker {
    fn new(binary: PathBuf, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 0\n",
                dir.display()
            ),
        )
        .unwrap();
        Self {
            binary,
            config,
            port,
            process: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.process = Some(child);
        let deadline = Instant::now() + HANG_GUARD;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGTERM: it saves its sessions, as a service stop would).
    fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            kill(
                Pid::from_raw(child.id().try_into().unwrap()),
                Signal::SIGTERM,
            )
            .unwrap();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_30_s_broker_outage_loses_no_event() {
    const BATCH: u16 = 10;
    let Some(binary) = mosquitto_binary() else {
        skip_or_fail(
            "MQTT broker outage",
            "no mosquitto binary in PATH or /usr/sbin",
        );
        return;
    };
    let site = unique_site("outage");
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::new(binary, dir.path());
    broker.start();
    let mut sub = Subscriber::start(
        broker.port,
        &format!("rfidgw/{site}/#"),
        Some(&format!("watch-{site}")),
    )
    .await;
    let journal = Arc::new(Journal::open(&dir.path().join("o.db"), &site).await);
    let (task, cancel) = journal.start(&mqtt(broker.port, BATCH), &site).await;

    // The gateway journals an event every 20 ms throughout.
    let writing = CancellationToken::new();
    let writer = {
        let (journal, writing) = (journal.clone(), writing.clone());
        tokio::spawn(async move {
            while !writing.is_cancelled() {
                journal.append(&[("tag_arrived", Some("main-exit"))]).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    sub.until("50 events before the outage", |got| got.len() > 50)
        .await;

    broker.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // What was acknowledged before the outage is saved; nothing moves while it lasts.
    let saved = journal.cursor().await;
    let before = journal.store.journal_last_id().await.unwrap().unwrap();
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    assert_eq!(
        journal.cursor().await,
        saved,
        "no broker, no acknowledgement"
    );
    let during = journal.store.journal_last_id().await.unwrap().unwrap();
    assert!(
        during > before + 100,
        "events kept being journaled during the outage"
    );

    broker.start();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    writing.cancel();
    writer.await.unwrap();
    let last = journal.store.journal_last_id().await.unwrap().unwrap();
    wait_until(
        || async { journal.cursor().await == last },
        "the cursor to catch up after the outage",
    )
    .await;
    let caught_up = back.elapsed();
    sub.until("every event", |got| has_all(got, last)).await;
    cancel.cancel();
    task.await.unwrap();

    let ids = sub.ids();
    let twice = duplicates(&ids);
    // Twice: the gateway's batch in flight when the broker went (after `saved`), or a
    // message the broker had sent the subscriber without its PUBACK yet (at most
    // Mosquitto's max_inflight_messages, 20, before `saved`).
    for (id, count) in &twice {
        assert!(
            *count == 2 && *id > saved - 40 && *id <= saved + i64::from(BATCH),
            "event {id} arrived {count} times; only QoS 1 redelivery around the cursor {saved} may: {twice:?}"
        );
    }
    assert!(
        restarts(&ids) <= 2,
        "in order, starting over at most once per side of the outage"
    );
    println!(
        "{last} events, {} journaled during a {OUTAGE:?} outage, cursor {saved} when it began, {} published twice, all acknowledged {caught_up:?} after the broker returned",
        during - before,
        twice.len()
    );
}

// --- No broker at all ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn without_a_broker_the_daemon_runs_keeps_its_events_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let site = unique_site("nobroker");
    let path = gate_config(dir.path(), &site, port, 50);
    let config = Config::load_with_env(&path, Vec::new()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    wait_until(
        || async { daemon.store().journal_last_id().await.unwrap().unwrap_or(0) > 20 },
        "events in the journal",
    )
    .await;
    assert_eq!(
        cursor_of(daemon.store()).await,
        0,
        "nothing is delivered without a broker"
    );
    wait_until(
        || async {
            let metrics = daemon.metrics().await;
            metrics.lines().any(|l| {
                l.starts_with("rfidgw_mqtt_failures_total ") && l != "rfidgw_mqtt_failures_total 0"
            })
        },
        "the failed connection counted in /metrics",
    )
    .await;
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("rfidgw_mqtt_connects_total 0\n"),
        "{metrics}"
    );
    // The publisher does not hold the shutdown up: past daemon.shutdown_timeout_ms the
    // shutdown would fail with ShutdownTimeout.
    daemon.shutdown("test").await.unwrap();

    // The events waited in the outbox: a broker that appears gets all of them.
    if !shared_broker("MQTT after no broker") {
        return;
    }
    let mut sub = Subscriber::start(SHARED, &format!("rfidgw/{site}/#"), None).await;
    let store = Store::open(&dir.path().join("state/rfidgw.db"))
        .await
        .unwrap();
    let waiting = store.journal_last_id().await.unwrap().unwrap();
    store.close().await;
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("port = {port}"), &format!("port = {SHARED}"));
    std::fs::write(&path, text).unwrap();
    let config = Config::load_with_env(&path, Vec::new()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    sub.until("the events journaled without a broker", |got| {
        has_all(got, waiting)
    })
    .await;
    daemon.shutdown("test").await.unwrap();
    assert_eq!(sub.ids()[0], 1, "from the first event on");
    clear_status(SHARED, &site).await;
}

/// Log lines, captured (the test's runtime is single-threaded, so every task logs here).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, text: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

/// Two gateways sharing a client id: the broker drops each one as the other connects. Each
/// says once what is probably wrong (and once that it has no connection), instead of
/// warning twice a second for as long as both run.
#[tokio::test]
async fn two_gateways_with_one_client_id_are_told_why_the_broker_drops_them() {
    const TAKEN: &str = "the same client id";
    if !shared_broker("MQTT client id taken") {
        return;
    }
    let logs = Captured::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish(),
    );
    let site = unique_site("twins");
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for name in ["a", "b"] {
        let journal = Journal::open(&dir.path().join(format!("{name}.db")), &site).await;
        let run = journal.start(&mqtt(SHARED, 4), &site).await;
        runs.push((run, journal));
    }
    let deadline = Instant::now() + HANG_GUARD;
    while logs.count(TAKEN) < 2 {
        assert!(Instant::now() < deadline, "no client-id warning from both");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for ((task, cancel), _journal) in runs {
        cancel.cancel();
        task.await.unwrap();
    }
    assert_eq!(logs.count(TAKEN), 2, "once per gateway");
    assert_eq!(
        logs.count("no broker connection"),
        2,
        "one outage warning per gateway, not one per drop"
    );
    clear_status(SHARED, &site).await;
}
