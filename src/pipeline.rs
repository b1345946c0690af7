//! The pipeline: device reports become station decisions and bus events, and bus events
//! become journal rows.
//!
//! Two tasks. [`DevicePipeline::run`] takes every [`DeviceReport`] from the device tasks,
//! keeps the registry and each device's presence set current, decodes tag memory into the
//! typed [`DecodedTag`], hands the report to the stations **before the disk** (a gate
//! decides and drives its outputs here), and only then forwards events to the journal.
//! [`run_journal`] commits events to the store in batches (group commit: one fsync for many
//! events) and then publishes them. Both end when their input channel closes, after
//! draining it, which is how a graceful shutdown flushes everything.
//!
//! The hand-off to the journal never blocks the stations: when the journal falls behind
//! (a slow or failing store), events wait in a bounded backlog here and the gates keep
//! deciding; the backlog, anything dropped past its bound and the store's state show in
//! [`JournalHealth`] (status API, logs).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rfidgw_driver::{DeviceEvent, DeviceReport, LinkState, TagRead, Uid};
use rfidgw_tag::DecodedTag;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::bus::{Decision, Event, StationControl};
use crate::registry::Registry;
use crate::store::Store;

/// Turns a tag read into the typed decoded tag.
pub type TagDecoder = Arc<dyn Fn(&TagRead) -> DecodedTag + Send + Sync>;

/// The site's tag decoder: every model `rfidgw-tag` knows, under the `[tags]` rules.
pub fn site_decoder(site: rfidgw_tag::SiteConfig) -> TagDecoder {
    Arc::new(move |read: &TagRead| {
        let hints = rfidgw_tag::TagHints {
            uid: Some(read.uid.as_bytes().to_vec()),
            afi: read.afi,
            dsfid: read.dsfid,
            eas: read.eas,
            ..rfidgw_tag::TagHints::default()
        };
        let memory = read.memory.as_deref().unwrap_or_default();
        rfidgw_tag::decode(memory, &hints, &site)
    })
}

/// What the stations made of one report.
#[derive(Debug, Default)]
pub struct StationResponse {
    /// The decision on the read, journaled with it.
    pub decision: Option<Decision>,
    /// Events to journal after the read (alarms, notices).
    pub events: Vec<Event>,
}

/// What the pipeline asks of the stations. Implemented by the station runner; the pipeline
/// sits below the stations and knows them only through this.
pub trait Stations: Send {
    /// A device report, before it is journaled; returns the decision and the events to
    /// journal after it.
    fn on_report(
        &mut self,
        report: &DeviceReport,
        decoded: Option<&Arc<DecodedTag>>,
    ) -> StationResponse;
    /// Time passes (about every [`TICK`]).
    fn tick(&mut self) -> Vec<Event>;
    /// A request from staff.
    fn control(&mut self, control: StationControl) -> Vec<Event>;
}

/// No stations (tests, a daemon that only journals).
#[derive(Debug, Default)]
pub struct NoStations;

impl Stations for NoStations {
    fn on_report(&mut self, _: &DeviceReport, _: Option<&Arc<DecodedTag>>) -> StationResponse {
        StationResponse::default()
    }
    fn tick(&mut self) -> Vec<Event> {
        Vec::new()
    }
    fn control(&mut self, control: StationControl) -> Vec<Event> {
        match control {
            StationControl::Silence { reply, station, .. } => {
                let _ = reply.send(Err(format!("no gate station `{station}`")));
            }
            StationControl::Desk { .. } => {}
        }
        Vec::new()
    }
}

/// How often stations are ticked (presence windows, counting intervals).
pub const TICK: Duration = Duration::from_millis(100);

/// Events the journal may fall behind by before the oldest are dropped (about a minute of
/// a very busy site; the drop is counted and logged, and the gates keep working).
pub const BACKLOG_MAX: usize = 100_000;

/// The journal's health as the status API shows it. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct JournalHealth {
    inner: Arc<HealthInner>,
}

#[derive(Debug, Default)]
struct HealthInner {
    failing: AtomicBool,
    backlog: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`JournalHealth`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalHealthSnapshot {
    /// `ok`, or `failing` while commits fail (they are retried; nothing is lost yet).
    pub state: &'static str,
    /// The last commit error, while failing.
    pub error: Option<String>,
    /// Events waiting for the journal.
    pub backlog: u64,
    /// Events dropped because the backlog was full (a long store outage).
    pub dropped: u64,
}

impl JournalHealth {
    /// The state now.
    pub fn snapshot(&self) -> JournalHealthSnapshot {
        let failing = self.inner.failing.load(Ordering::Relaxed);
        JournalHealthSnapshot {
            state: if failing { "failing" } else { "ok" },
            error: if failing {
                self.inner
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            } else {
                None
            },
            backlog: self.inner.backlog.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }

    fn commit_failed(&self, error: String) {
        self.inner.failing.store(true, Ordering::Relaxed);
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
    }

    fn commit_ok(&self) {
        self.inner.failing.store(false, Ordering::Relaxed);
    }
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

/// The device side of the pipeline (see the module docs).
pub struct DevicePipeline {
    /// Device states for the status API.
    pub registry: Registry,
    /// The tag decoder.
    pub decoder: TagDecoder,
    /// The stations, fed before the journal.
    pub stations: Box<dyn Stations>,
    /// Where events go to be journaled.
    pub journal: mpsc::Sender<Event>,
    /// The journal's health, shown by the status API.
    pub health: JournalHealth,
}

/// Per device, the tags present now: an arrival of a present tag is not a second
/// presence, and a device that stops ends every presence it had.
#[derive(Debug, Default)]
struct PresenceBook {
    present: HashMap<String, HashSet<Uid>>,
}

impl DevicePipeline {
    /// Runs until every device sender is gone, then hands what is left to the journal.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<DeviceReport>,
        mut controls: mpsc::Receiver<StationControl>,
    ) {
        let mut book = PresenceBook::default();
        // Drivers report health periodically; only a change of link state is an event.
        let mut last_link: HashMap<String, LinkState> = HashMap::new();
        let mut backlog: VecDeque<Event> = VecDeque::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut controls_open = true;
        let journal = self.journal.clone();
        loop {
            let mut produced = Vec::new();
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => self.handle(report, &mut book, &mut last_link, &mut produced),
                    None => break,
                },
                control = controls.recv(), if controls_open => match control {
                    Some(control) => produced = self.stations.control(control),
                    None => controls_open = false,
                },
                _ = tick.tick() => produced = self.stations.tick(),
                permit = journal.reserve(), if !backlog.is_empty() => {
                    let Ok(permit) = permit else {
                        tracing::error!("journal writer is gone; events are no longer recorded");
                        return;
                    };
                    if let Some(event) = backlog.pop_front() {
                        permit.send(event);
                    }
                }
            }
            self.hand_off(produced, &mut backlog);
        }
        // Shutdown: every device has stopped; the rest goes to the journal in order.
        for event in backlog {
            if self.journal.send(event).await.is_err() {
                break;
            }
        }
        self.health.inner.backlog.store(0, Ordering::Relaxed);
    }

    /// One report: registry, presence, decode, stations (before the disk), then events.
    fn handle(
        &mut self,
        report: DeviceReport,
        book: &mut PresenceBook,
        last_link: &mut HashMap<String, LinkState>,
        out: &mut Vec<Event>,
    ) {
        let device = report.device.clone();
        let station = self.registry.station_of(&device);
        let present = book.present.entry(device.clone()).or_default();
        match &report.event {
            DeviceEvent::Health { link, counters } => {
                self.registry.set_link(&device, *link, *counters);
                if last_link.insert(device.clone(), *link) == Some(*link) {
                    return;
                }
                crate::metrics::LinkChanged {
                    device: &device,
                    link: *link,
                }
                .emit();
            }
            DeviceEvent::TagArrived(read) => {
                present.insert(read.uid.clone());
            }
            DeviceEvent::TagDeparted { uid } => {
                present.remove(uid);
            }
            DeviceEvent::Stopped { reason } => {
                // Every presence on the device ends here, each journaled with the reason.
                let mut gone: Vec<Uid> = present.drain().collect();
                gone.sort();
                for uid in gone {
                    let departure = DeviceReport {
                        device: device.clone(),
                        at: report.at,
                        event: DeviceEvent::TagDeparted { uid },
                    };
                    let response = self.stations.on_report(&departure, None);
                    out.push(Event::Device {
                        station: station.clone(),
                        report: departure,
                        decoded: None,
                        reason: Some(format!("device stopped: {reason}")),
                        decision: response.decision,
                    });
                    out.extend(response.events);
                }
                last_link.remove(&device);
            }
            DeviceEvent::Card(_) | DeviceEvent::Inputs(_) | DeviceEvent::Sorter(_) => {}
        }
        let tags_present = present.len();
        self.registry
            .touch(&device, |s| s.tags_present = tags_present);
        let decoded = match &report.event {
            DeviceEvent::TagArrived(read) => Some(Arc::new((self.decoder)(read))),
            _ => None,
        };
        if let Some(tag) = &decoded {
            crate::metrics::TagReadSeen {
                device: &device,
                decoded: tag,
            }
            .emit();
        }
        // Decide before the disk: the stations act now, the journal follows.
        let response = self.stations.on_report(&report, decoded.as_ref());
        out.push(Event::Device {
            station,
            report,
            decoded,
            reason: None,
            decision: response.decision,
        });
        out.extend(response.events);
    }

    /// Passes events to the journal without ever waiting: what does not fit now waits in
    /// the backlog, in order, and the oldest go when it is full.
    fn hand_off(&self, events: Vec<Event>, backlog: &mut VecDeque<Event>) {
        for event in events {
            if backlog.is_empty() {
                match self.journal.try_send(event) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(event)) => backlog.push_back(event),
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            } else {
                backlog.push_back(event);
            }
            if backlog.len() > BACKLOG_MAX {
                backlog.pop_front();
                let dropped = self.health.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::error!(dropped, "journal backlog full; oldest events dropped");
                }
            }
        }
        self.health
            .inner
            .backlog
            .store(backlog.len() as u64, Ordering::Relaxed);
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
    health: JournalHealth,
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
        commit(&store, &batch, &published, &health).await;
        batch.clear();
        progress.beat();
    }
    tracing::debug!("journal writer drained and stopped");
}

async fn commit(
    store: &Store,
    batch: &[Event],
    published: &broadcast::Sender<Arc<Event>>,
    health: &JournalHealth,
) {
    let entries: Vec<_> = batch.iter().map(Event::to_journal).collect();
    let mut pause = Duration::from_millis(100);
    loop {
        match store.append(&entries).await {
            Ok(_) => {
                health.commit_ok();
                break;
            }
            Err(error) => {
                health.commit_failed(error.to_string());
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
        let (_controls_tx, controls_rx) = mpsc::channel(1);
        let devices = tokio::spawn(pipeline(&registry, event_tx).run(report_rx, controls_rx));
        let journal = tokio::spawn(run_journal(
            event_rx,
            store.clone(),
            published,
            Progress::default(),
            8,
            JournalHealth::default(),
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
        assert_eq!(arrived.payload["decoded"]["model"], "unknown");

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

    fn pipeline(registry: &Registry, journal: mpsc::Sender<Event>) -> DevicePipeline {
        DevicePipeline {
            registry: registry.clone(),
            decoder: site_decoder(rfidgw_tag::SiteConfig::default()),
            stations: Box::new(NoStations),
            journal,
            health: JournalHealth::default(),
        }
    }

    /// Issue 8: a 3M pad that went away and came back doubled `tags_present` and never
    /// journaled a departure. Now the stop ends every presence, each with its reason.
    #[tokio::test]
    async fn a_stopped_device_ends_its_presences_and_the_count_never_drifts() {
        let registry = Registry::from_config(&config());
        let (report_tx, report_rx) = mpsc::channel(16);
        let (event_tx, mut event_rx) = mpsc::channel(64);
        let (_controls_tx, controls_rx) = mpsc::channel(1);
        let task = tokio::spawn(pipeline(&registry, event_tx).run(report_rx, controls_rx));
        let a = Uid::new([0xE0, 0x0A]);
        let b = Uid::new([0xE0, 0x0B]);
        let arrive = |uid: &Uid| report(DeviceEvent::TagArrived(TagRead::uid_only(uid.clone())));
        for event in [
            arrive(&a),
            arrive(&b),
            arrive(&a), // a driver that re-reports a tag: still one presence
            report(DeviceEvent::Stopped {
                reason: "line closed".into(),
            }),
            arrive(&a), // the pad came back and sees the tag again
        ] {
            report_tx.send(event).await.unwrap();
        }
        drop(report_tx);
        task.await.unwrap();
        let mut rows = Vec::new();
        while let Ok(event) = event_rx.try_recv() {
            let entry = event.to_journal();
            let uid = entry.payload["uid"].as_str().unwrap_or_default().to_owned();
            let reason = entry.payload["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            rows.push((entry.kind, uid, reason));
        }
        let want: Vec<(&str, &str, &str)> = vec![
            ("tag_arrived", "E00A", ""),
            ("tag_arrived", "E00B", ""),
            ("tag_arrived", "E00A", ""),
            ("tag_departed", "E00A", "device stopped: line closed"),
            ("tag_departed", "E00B", "device stopped: line closed"),
            ("device_stopped", "", "line closed"),
            ("tag_arrived", "E00A", ""),
        ];
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|(k, u, r)| (k.as_str(), u.as_str(), r.as_str()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(registry.snapshot()[0].tags_present, 1);
    }

    /// The gates keep deciding while the journal is stuck: nothing waits on it, the
    /// backlog shows in the health, and everything arrives in order once it moves again.
    #[tokio::test]
    async fn a_stuck_journal_never_blocks_the_pipeline_and_the_backlog_drains_in_order() {
        let registry = Registry::from_config(&config());
        let (report_tx, report_rx) = mpsc::channel(256);
        let (event_tx, mut event_rx) = mpsc::channel(2); // a journal that takes only two
        let (_controls_tx, controls_rx) = mpsc::channel(1);
        let pipe = pipeline(&registry, event_tx);
        let health = pipe.health.clone();
        let task = tokio::spawn(pipe.run(report_rx, controls_rx));
        for n in 0..100u8 {
            let read = TagRead::uid_only(Uid::new([0xE0, n]));
            report_tx
                .send(report(DeviceEvent::TagArrived(read)))
                .await
                .unwrap();
        }
        // Every report was taken although the journal holds only two: wait for the
        // pipeline to have taken them all (the channel empties), then look at the backlog.
        while report_tx.capacity() < 256 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(health.snapshot().backlog >= 90, "{:?}", health.snapshot());
        drop(report_tx);
        let mut seen = Vec::new();
        while let Some(event) = event_rx.recv().await {
            seen.push(
                event.to_journal().payload["uid"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        task.await.unwrap();
        let want: Vec<String> = (0..100u8).map(|n| format!("E0{n:02X}")).collect();
        assert_eq!(seen, want);
        assert_eq!(health.snapshot().dropped, 0);
    }

    /// A failing store is visible (status API, logs) while the writer keeps retrying, and
    /// nothing handed to it is published before it is committed.
    #[tokio::test]
    async fn a_failing_store_shows_in_the_journal_health_and_nothing_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).await.unwrap();
        store.close().await; // every commit now fails
        let (event_tx, event_rx) = mpsc::channel(4);
        let (published, mut subscriber) = broadcast::channel(4);
        let health = JournalHealth::default();
        let journal = tokio::spawn(run_journal(
            event_rx,
            store,
            published,
            Progress::default(),
            8,
            health.clone(),
        ));
        event_tx
            .send(Event::DaemonStopping {
                reason: "test".into(),
            })
            .await
            .unwrap();
        while health.snapshot().state != "failing" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let snapshot = health.snapshot();
        assert!(
            snapshot.error.unwrap().contains("closed"),
            "the error says why"
        );
        assert!(
            subscriber.try_recv().is_err(),
            "nothing uncommitted is published"
        );
        journal.abort();
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
        let journal = tokio::spawn(run_journal(
            event_rx,
            store,
            published,
            progress.clone(),
            8,
            JournalHealth::default(),
        ));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            progress.since_last_beat() <= IDLE_BEAT,
            "{:?}",
            progress.since_last_beat()
        );
        journal.abort();
    }
}
