//! Issue 10's figure: events per second through the outbox to Mosquitto.
//!
//! `--events N` events (each a realistic `tag_arrived` row with its decoded tag and gate
//! decision, about 700 bytes of JSON) are appended to a fresh store; then the MQTT
//! publisher (`MqttPublisher::run` on the consumer `mqtt` from the beginning) reads them
//! from the journal, turns each into a public event, publishes it at QoS 1 with up to
//! `batch` in flight and saves its cursor over the PUBACKed prefix (once per batch). The clock runs from the publisher's start
//! until the cursor in the store is at the last event, once per `--batch` size. A
//! subscriber on the same broker counts what arrives, so the figure is also end to end.
//!
//! Run (a broker on 127.0.0.1:1883):
//! `cargo run --release --example outbox_mqtt -- --events 20000 --batch 1 --batch 10 --batch 100 --batch 1000`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rfidgw::bus::Event;
use rfidgw::northbound::event::Publishing;
use rfidgw::northbound::mqtt::{MqttConfig, MqttPublisher};
use rfidgw::northbound::outbox::{Outbox, Start};
use rfidgw::store::{JournalEntry, Store};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// `[mqtt] batch` sizes to measure (one run each).
    #[arg(long = "batch", default_values_t = [100u16])]
    batches: Vec<u16>,
    /// The broker's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "outbox -> MQTT QoS 1 ({}:{}), {} events per run",
        args.host, args.port, args.events
    );
    for batch in &args.batches {
        run(&args, *batch).await?;
    }
    Ok(())
}

async fn run(args: &Args, batch: u16) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("bench.db")).await?;
    fill(&store, args.events).await?;
    let last = store.journal_last_id().await?.unwrap_or(0);

    let site = format!("bench{}", std::process::id());
    let received = Arc::new(AtomicU64::new(0));
    let subscriber = subscribe(args, &site, received.clone()).await?;

    let (wake, _) = broadcast::channel::<Arc<Event>>(16);
    let outbox = Outbox::new(
        store.clone(),
        wake,
        Publishing {
            site: site.clone(),
            patron_ids: false,
        },
    );
    let consumer = outbox.consumer("mqtt", Start::Beginning).await?;
    let config = MqttConfig {
        enabled: true,
        host: args.host.clone(),
        port: Some(args.port),
        batch,
        ..MqttConfig::default()
    };
    let publisher = MqttPublisher::new(&config, &site)?;
    let metrics = publisher.metrics();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(publisher.run(outbox.clone(), consumer, cancel.clone()));
    // The publisher's own view of its cursor, updated after each save (no store polling).
    let mut progress = (0, Instant::now());
    while metrics.cursor.load(Ordering::Relaxed) < u64::try_from(last)? {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let cursor = metrics.cursor.load(Ordering::Relaxed);
        if cursor != progress.0 {
            progress = (cursor, Instant::now());
        }
        anyhow::ensure!(
            progress.1.elapsed() < Duration::from_secs(30),
            "no progress for 30 s at cursor {cursor} (connects {}, failures {}, published {}); is a broker on {}:{}?",
            metrics.connects.load(Ordering::Relaxed),
            metrics.failures.load(Ordering::Relaxed),
            metrics.published.load(Ordering::Relaxed),
            args.host,
            args.port
        );
    }
    let acked = started.elapsed();
    // End to end, best effort: the subscriber is only a witness.
    let expected = u64::try_from(args.events)?;
    let waited = Instant::now();
    while received.load(Ordering::Relaxed) < expected && waited.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let arrived = started.elapsed();
    cancel.cancel();
    task.await?;
    subscriber.abort();
    let saved = store
        .cursors()
        .await?
        .into_iter()
        .find(|c| c.consumer == "mqtt")
        .map_or(0, |c| c.last_id);
    anyhow::ensure!(saved == last, "cursor {saved}, expected {last}");
    #[allow(clippy::cast_precision_loss)]
    let rate = |d: Duration| args.events as f64 / d.as_secs_f64();
    println!(
        "batch {batch:>4}: all PUBACKed and saved in {:>7.1} ms = {:>7.0} events/s; {} of {} at the subscriber after {:>7.1} ms",
        acked.as_secs_f64() * 1e3,
        rate(acked),
        received.load(Ordering::Relaxed),
        args.events,
        arrived.as_secs_f64() * 1e3,
    );
    store.close().await;
    // The retained status of this throwaway site goes away.
    clear_status(args, &site).await;
    Ok(())
}

/// Appends `events` gate reads to `store`, 1000 per transaction.
async fn fill(store: &Store, events: usize) -> anyhow::Result<()> {
    let payload = serde_json::json!({
        "uid": "E0040100AABB0001",
        "afi": 7,
        "dsfid": 6,
        "decoded": {"primary_item_id": "11223344", "owner": "DE-705", "format": "iso28560-3",
                    "set": {"part": 1, "of": 1}, "byte_order": "normal", "foreign": false},
        "decision": {"verdict": "alarm", "reason": "secured", "acted": true},
        "reader": {"antenna": 1, "rssi": -48},
        "timing": {"decode_us": 12, "decide_us": 3}
    });
    let chunk: Vec<JournalEntry> = (0..1000)
        .map(|_| JournalEntry {
            station: Some("main-exit".into()),
            device: Some("gate-reader".into()),
            ..JournalEntry::new("tag_arrived", payload.clone())
        })
        .collect();
    let mut appended = 0;
    while appended < events {
        let n = (events - appended).min(chunk.len());
        store.append(&chunk[..n]).await?;
        appended += n;
    }
    Ok(())
}

/// Counts events arriving on the site's topics (status left out); subscribes again after
/// a reconnect (a witness, best effort: what arrives while it is away is not counted).
async fn subscribe(
    args: &Args,
    site: &str,
    received: Arc<AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut options = MqttOptions::new(format!("{site}-count"), args.host.clone(), args.port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let filter = format!("rfidgw/{site}/+/+");
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(&filter, QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(_))) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("subscriber: {error}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed).await??;
    Ok(task)
}

async fn clear_status(args: &Args, site: &str) {
    let options = MqttOptions::new(format!("{site}-clear"), args.host.clone(), args.port);
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    if client
        .publish(format!("rfidgw/{site}/status"), QoS::AtLeastOnce, true, "")
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !matches!(
                eventloop.poll().await,
                Ok(rumqttc::Event::Incoming(Packet::PubAck(_))) | Err(_)
            ) {}
        })
        .await;
    }
}
