//! The pipeline: device reports become bus events, and bus events become journal rows.
//!
//! Two tasks. [`run_devices`] takes every [`DeviceReport`] from the device tasks, keeps
//! the registry current, decodes tag memory and forwards an [`Event`]. [`run_journal`]
//! commits events to the store in batches (group commit: one fsync for many events) and
//! then publishes them. Both end when their input channel closes, after draining it,
//! which is how a graceful shutdown flushes everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rfidgw_driver::{DeviceEvent, DeviceReport, LinkState};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::bus::Event;
use crate::registry::Registry;
use crate::store::Store;

/// Turns a tag read into the decoder's JSON, for the journal and observers.
pub type TagDecoder = Arc<dyn Fn(&rfidgw_driver::TagRead) -> serde_json::Value + Send + Sync>;

/// The site's tag decoder: every model `rfidgw-tag` knows, under the `[tags]` rules.
pub fn site_decoder(site: rfidgw_tag::SiteConfig) -> TagDecoder {
    Arc::new(move |read: &rfidgw_driver::TagRead| {
        let hints = rfidgw_tag::TagHints {
            uid: Some(read.uid.as_bytes().to_vec()),
            afi: read.afi,
            dsfid: read.dsfid,
            eas: read.eas,
            ..rfidgw_tag::TagHints::default()
        };
        let memory = read.memory.as_deref().unwrap_or_default();
        let decoded = rfidgw_tag::decode(memory, &hints, &site);
        serde_json::to_value(&decoded)
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("unserialisable: {e}") }))
    })
}

/// Heartbeat of the pipeline, read by the watchdog: the journal writer beats after every
/// commit and on every idle tick, so a stuck store or a dead writer stops the beats.
#[derive(Clone, Debug)]
pub struct Progress {
    origin: Instant,
    last_beat_ms: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_beat_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Progress {
    /// Records that the pipeline made progress now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the pipeline last made progress.
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// How often an idle journal writer still beats.
pub const IDLE_BEAT: Duration = Duration::from_secs(1);

/// Forwards device reports as events until every device sender is gone.
pub async fn run_devices(
    mut reports: mpsc::Receiver<DeviceReport>,
    events: mpsc::Sender<Event>,
    registry: Registry,
    decoder: Option<TagDecoder>,
) {
    // Drivers report health periodically; only a change of link state is an event.
    let mut last_link: HashMap<String, LinkState> = HashMap::new();
    while let Some(report) = reports.recv().await {
        let device = report.device.clone();
        let mut decoded_item = None;
        match &report.event {
            DeviceEvent::Health { link, counters } => {
                registry.set_link(&device, *link, *counters);
                if last_link.insert(device.clone(), *link) == Some(*link) {
                    continue;
                }
            }
            DeviceEvent::TagArrived(read) => {
                registry.touch(&device, |s| s.tags_present += 1);
                decoded_item = decoder.as_ref().map(|decode| decode(read));
            }
            DeviceEvent::TagDeparted { .. } => {
                registry.touch(&device, |s| {
                    s.tags_present = s.tags_present.saturating_sub(1);
                });
            }
            DeviceEvent::Card(_) | DeviceEvent::Inputs(_) => registry.touch(&device, |_| {}),
        }
        let event = Event::Device {
            station: registry.station_of(&device),
            report,
            decoded: decoded_item,
        };
        if events.send(event).await.is_err() {
            tracing::error!("journal writer is gone; device reports are no longer recorded");
            return;
        }
    }
}

/// Commits events in batches of at most `batch_max`, publishing each after its commit.
///
/// A failed commit is retried with a pause (the events stay in memory meanwhile and the
/// watchdog stops being fed, so systemd notices a store that stays broken).
pub async fn run_journal(
    mut events: mpsc::Receiver<Event>,
    store: Store,
    published: broadcast::Sender<Arc<Event>>,
    progress: Progress,
    batch_max: usize,
) {
    let mut batch: Vec<Event> = Vec::with_capacity(batch_max);
    let mut idle = tokio::time::interval(IDLE_BEAT);
    loop {
        tokio::select! {
            received = events.recv_many(&mut batch, batch_max) => {
                if received == 0 {
                    break; // every sender gone and the channel drained
                }
            }
            _ = idle.tick() => {
                progress.beat();
                continue;
            }
        }
        commit(&store, &batch, &published).await;
        batch.clear();
        progress.beat();
    }
    tracing::debug!("journal writer drained and stopped");
}

async fn commit(store: &Store, batch: &[Event], published: &broadcast::Sender<Arc<Event>>) {
    let entries: Vec<_> = batch.iter().map(Event::to_journal).collect();
    let mut pause = Duration::from_millis(100);
    loop {
        match store.append(&entries).await {
            Ok(_) => break,
            Err(error) => {
                tracing::error!(%error, events = entries.len(), "journal write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
    for event in batch {
        // No subscriber is fine: the journal is the record, the broadcast a courtesy.
        let _ = published.send(Arc::new(event.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rfidgw_driver::{LineCounters, TagRead, Uid};
    use std::time::SystemTime;

    fn config() -> Config {
        toml::from_str(
            r#"
            [[devices]]
            id = "gate"
            driver = "sim"
            settings = { round_ms = 10 }
            [[stations]]
            id = "exit"
            kind = "gate"
            devices = ["gate"]
            "#,
        )
        .unwrap()
    }

    fn report(event: DeviceEvent) -> DeviceReport {
        DeviceReport {
            device: "gate".into(),
            at: SystemTime::now(),
            event,
        }
    }

    #[tokio::test]
    async fn device_reports_are_decoded_journaled_and_published_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).await.unwrap();
        let registry = Registry::from_config(&config());
        let (report_tx, report_rx) = mpsc::channel(16);
        let (event_tx, event_rx) = mpsc::channel(16);
        let (published, mut subscriber) = broadcast::channel(16);
        let decoder: TagDecoder =
            Arc::new(|read| serde_json::json!({"uid_len": read.uid.as_bytes().len()}));
        let devices = tokio::spawn(run_devices(
            report_rx,
            event_tx,
            registry.clone(),
            Some(decoder),
        ));
        let journal = tokio::spawn(run_journal(
            event_rx,
            store.clone(),
            published,
            Progress::default(),
            8,
        ));

        let uid = Uid::new([0xE0, 0x04, 0x01]);
        let health = DeviceEvent::Health {
            link: LinkState::Connected,
            counters: LineCounters::default(),
        };
        report_tx.send(report(health.clone())).await.unwrap();
        report_tx.send(report(health)).await.unwrap(); // unchanged link: not an event
        report_tx
            .send(report(DeviceEvent::TagArrived(TagRead::uid_only(
                uid.clone(),
            ))))
            .await
            .unwrap();
        report_tx
            .send(report(DeviceEvent::TagDeparted { uid }))
            .await
            .unwrap();
        drop(report_tx);
        devices.await.unwrap();
        journal.await.unwrap();

        let kinds: Vec<String> = store
            .recent(10, None)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds, ["device_connected", "tag_arrived", "tag_departed"]);
        let arrived = store
            .recent(1, Some("tag_arrived"))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(arrived.station.as_deref(), Some("exit"));
        assert_eq!(arrived.payload["decoded"]["uid_len"], 3);

        let mut published_kinds = Vec::new();
        while let Ok(event) = subscriber.try_recv() {
            published_kinds.push(event.kind());
        }
        assert_eq!(
            published_kinds,
            ["device_connected", "tag_arrived", "tag_departed"]
        );
        let status = &registry.snapshot()[0];
        assert_eq!(status.tags_present, 0);
        assert_eq!(status.state, crate::registry::DeviceState::Connected);
        store.close().await;
    }

    #[tokio::test]
    async fn an_idle_journal_writer_keeps_beating() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).await.unwrap();
        // Paused only after the store is open: the SQLite worker is an OS thread, and
        // auto-advancing time while it works would fire the pool's acquire timeout.
        tokio::time::pause();
        let (_event_tx, event_rx) = mpsc::channel::<Event>(1);
        let (published, _) = broadcast::channel(1);
        let progress = Progress::default();
        let journal = tokio::spawn(run_journal(event_rx, store, published, progress.clone(), 8));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            progress.since_last_beat() <= IDLE_BEAT,
            "{:?}",
            progress.since_last_beat()
        );
        journal.abort();
    }
}
