//! The supervisor: wires the store, the pipeline, the API and the device tasks into one
//! task tree, reports readiness and health to systemd, and shuts down in order.
//!
//! Start-up order: store opened and migrated, API listener bound, pipeline running, then
//! `READY=1` — never waiting for hardware or the ILS (they come and go; the daemon must
//! serve regardless). Shutdown order is the reverse of the data flow: devices stop first,
//! then the pipeline drains, then the journal commits what is left, then the store closes.
//! Nothing that was handed to the journal is dropped on a graceful stop.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use rfidgw_driver::{CommandMailbox, DeviceHandle};

use crate::api::{self, ApiState};
use crate::bus::{ALARM_KINDS, Event, StationControl};
use crate::config::Config;
use crate::ils::{Ils, IlsError};
use crate::notify;
use crate::pipeline::{self, DevicePipeline, JournalHealth, Progress};
use crate::registry::Registry;
use crate::station::loans::LoansCache;
use crate::station::{StationContext, StationRunner, StationsStatus};
use crate::status::PeerStatus;
use crate::store::{Store, StoreError};
use crate::supervisor::{self, DeviceTaskContext};

/// Capacity of the channels between stages: enough to ride out a slow fsync, small
/// enough that back-pressure reaches the drivers before memory grows.
const CHANNEL_CAPACITY: usize = 1024;

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API address could not be bound.
    #[error("cannot listen on {addr} (api.listen): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The ILS side could not start.
    #[error(transparent)]
    Ils(#[from] IlsError),
    /// Tasks did not finish within `daemon.shutdown_timeout_ms`.
    #[error("shutdown took longer than {0:?}; some tasks were abandoned")]
    ShutdownTimeout(Duration),
}

/// A running daemon. Dropping it without [`Daemon::shutdown`] abandons its tasks.
pub struct Daemon {
    config: Config,
    store: Store,
    registry: Registry,
    published: broadcast::Sender<Arc<Event>>,
    events: mpsc::Sender<Event>,
    reports: mpsc::Sender<rfidgw_driver::DeviceReport>,
    devices: TaskTracker,
    devices_cancel: CancellationToken,
    ils: Ils,
    ils_tasks: TaskTracker,
    ils_cancel: CancellationToken,
    background_cancel: CancellationToken,
    pipeline: JoinHandle<()>,
    journal: JoinHandle<()>,
    background: TaskTracker,
    api_addr: Option<SocketAddr>,
    handles: HashMap<String, DeviceHandle>,
    stations: StationsStatus,
    controls: mpsc::Sender<StationControl>,
    loans: LoansCache,
}

impl Daemon {
    /// Starts everything and sends `READY=1`.
    // Start-up reads top to bottom in the order things start (the order is the design);
    // the parts that can stand alone are already helpers below.
    #[allow(clippy::too_many_lines)]
    pub async fn start(config: Config) -> Result<Self, AppError> {
        let started = Instant::now();
        let store = Store::open(&config.store_path()).await?;
        let registry = Registry::from_config(&config);
        let (published, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (events, events_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (reports, reports_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let progress = Progress::default();
        progress.beat();

        let background = TaskTracker::new();
        let background_cancel = CancellationToken::new();
        let health = JournalHealth::default();
        let journal = tokio::spawn(pipeline::run_journal(
            events_rx,
            store.clone(),
            published.clone(),
            progress.clone(),
            config.store.batch_max,
            health.clone(),
        ));
        let peers_of = |ils: &Ils| -> Arc<dyn Fn() -> Vec<PeerStatus> + Send + Sync> {
            let ils = ils.clone();
            Arc::new(move || ils.peers())
        };

        // The ILS starts connecting in the background; READY never waits for it.
        let ils_tasks = TaskTracker::new();
        let ils_cancel = CancellationToken::new();
        let ils = Ils::start(&config.ils, &ils_tasks, &ils_cancel, events.clone()).await?;
        let peers = peers_of(&ils);

        let side = start_stations(
            &config, &store, &registry, &ils, &events, &health, reports_rx,
        )
        .await?;
        let api_state = ApiState {
            registry: registry.clone(),
            store: store.clone(),
            started,
            peers: peers.clone(),
            stations: side.stations.clone(),
            journal_health: health.clone(),
            controls: side.controls.clone(),
            events: events.downgrade(),
            published: published.clone(),
            loans: side.loans.clone(),
        };

        let api_addr = if config.api.enabled {
            Some(
                serve_api(
                    config.api.listen,
                    api_state,
                    &background,
                    &background_cancel,
                )
                .await?,
            )
        } else {
            None
        };

        let _ = events
            .send(Event::DaemonStarted {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .await;

        let (devices, devices_cancel) = spawn_devices(
            &config,
            &side.mailboxes,
            &DeviceTaskContext {
                reports: reports.clone(),
                events: events.clone(),
                registry: registry.clone(),
                backoff_max: Duration::from_millis(config.daemon.restart_backoff_max_ms),
            },
        );

        spawn_background(
            &config,
            &store,
            &registry,
            peers,
            progress,
            &background,
            &background_cancel,
        );

        notify::ready(&registry.status_line());
        let ready_after_ms = started.elapsed().as_millis();
        let devices_n = config.devices.len();
        tracing::info!(ready_after_ms, store = %store.path().display(), devices = devices_n, "rfidgw ready");
        Ok(Self {
            config,
            store,
            registry,
            published,
            events,
            reports,
            devices,
            devices_cancel,
            ils,
            ils_tasks,
            ils_cancel,
            background_cancel,
            pipeline: side.pipeline,
            journal,
            background,
            api_addr,
            handles: side.handles,
            stations: side.stations,
            controls: side.controls,
            loans: side.loans,
        })
    }

    /// Command handles of every device (valid for the daemon's life, across restarts).
    pub fn handles(&self) -> &HashMap<String, DeviceHandle> {
        &self.handles
    }

    /// The stations' live state.
    pub fn stations(&self) -> &StationsStatus {
        &self.stations
    }

    /// Where staff requests to stations go (the API uses it; so can tests).
    pub fn controls(&self) -> &mpsc::Sender<StationControl> {
        &self.controls
    }

    /// The gate's loans cache.
    pub fn loans(&self) -> &LoansCache {
        &self.loans
    }

    /// The address the API listens on (useful with port 0).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Events as they are committed to the journal.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.published.subscribe()
    }

    /// Device states.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The ILS side (SIP2 pool, simulator).
    pub fn ils(&self) -> &Ils {
        &self.ils
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops in order and flushes everything, within `daemon.shutdown_timeout_ms`.
    pub async fn shutdown(self, reason: &str) -> Result<(), AppError> {
        notify::stopping();
        tracing::info!(reason, "shutting down");
        let limit = Duration::from_millis(self.config.daemon.shutdown_timeout_ms);
        let store = self.store.clone();
        let result = tokio::time::timeout(limit, self.stop_in_order(reason)).await;
        // Close the store even after a timeout: whatever was committed is already safe,
        // and a checkpoint keeps the next start quick.
        store.close().await;
        match result {
            Ok(()) => {
                tracing::info!("stopped cleanly");
                Ok(())
            }
            Err(_) => Err(AppError::ShutdownTimeout(limit)),
        }
    }

    async fn stop_in_order(self, reason: &str) {
        let _ = self
            .events
            .send(Event::DaemonStopping {
                reason: reason.to_owned(),
            })
            .await;
        self.devices_cancel.cancel();
        self.devices.close();
        self.devices.wait().await;
        // The ILS next: its watcher is the last producer of events besides the pipeline.
        self.ils_cancel.cancel();
        self.ils_tasks.close();
        self.ils_tasks.wait().await;
        // Every device task has ended and dropped its senders; dropping ours lets the
        // pipeline drain what is left and end, and then the journal writer.
        drop(self.reports);
        drop(self.controls);
        let _ = self.pipeline.await;
        drop(self.events);
        let _ = self.journal.await;
        self.background_cancel.cancel();
        self.background.close();
        self.background.wait().await;
    }
}

/// The device side of a running daemon: mailboxes, the stations and the pipeline task.
struct StationSide {
    mailboxes: HashMap<String, Arc<CommandMailbox>>,
    handles: HashMap<String, DeviceHandle>,
    loans: LoansCache,
    stations: StationsStatus,
    controls: mpsc::Sender<StationControl>,
    pipeline: JoinHandle<()>,
}

/// Builds every device's mailbox, loads the loans cache, and starts the pipeline with the
/// station runner in it (stations see reports before the journal).
async fn start_stations(
    config: &Config,
    store: &Store,
    registry: &Registry,
    ils: &Ils,
    events: &mpsc::Sender<Event>,
    health: &JournalHealth,
    reports: mpsc::Receiver<rfidgw_driver::DeviceReport>,
) -> Result<StationSide, AppError> {
    let (mailboxes, handles) = mailboxes(config);
    let loans = LoansCache::load(store.clone(), &config.loans).await?;
    let stations = StationsStatus::default();
    let (controls, controls_rx) = mpsc::channel(16);
    let runner = StationRunner::new(
        &config.stations,
        StationContext {
            security: config.tags.security,
            site_has_owners: !config.tags.owners.is_empty(),
            handles: handles.clone(),
            loans: loans.clone(),
            ils: ils.connector(),
            events: events.clone(),
            status: stations.clone(),
        },
    );
    let pipeline = tokio::spawn(
        DevicePipeline {
            registry: registry.clone(),
            decoder: pipeline::site_decoder(config.tags.clone()),
            stations: Box::new(runner),
            journal: events.clone(),
            health: health.clone(),
        }
        .run(reports, controls_rx),
    );
    Ok(StationSide {
        mailboxes,
        handles,
        loans,
        stations,
        controls,
        pipeline,
    })
}

/// Journal pruning and the systemd health reporter.
fn spawn_background(
    config: &Config,
    store: &Store,
    registry: &Registry,
    peers: Arc<dyn Fn() -> Vec<PeerStatus> + Send + Sync>,
    progress: Progress,
    background: &TaskTracker,
    background_cancel: &CancellationToken,
) {
    if config.store.journal_keep_days > 0 || config.store.alarm_keep_days > 0 {
        background.spawn(prune_journal(
            store.clone(),
            config.store.journal_keep_days,
            config.store.alarm_keep_days,
            background_cancel.clone(),
        ));
    }
    background.spawn(report_health(
        registry.clone(),
        peers,
        progress,
        background_cancel.clone(),
    ));
}

/// Every device's command mailbox (owned for the daemon's life) and the handles stations
/// and the API use.
fn mailboxes(
    config: &Config,
) -> (
    HashMap<String, Arc<CommandMailbox>>,
    HashMap<String, DeviceHandle>,
) {
    let mailboxes: HashMap<String, Arc<CommandMailbox>> = config
        .devices
        .iter()
        .map(|d| (d.id.clone(), Arc::new(CommandMailbox::new(d.id.clone()))))
        .collect();
    let handles = mailboxes
        .iter()
        .map(|(id, mailbox)| (id.clone(), mailbox.handle()))
        .collect();
    (mailboxes, handles)
}

/// One supervised task per configured device, each with its life-long mailbox.
fn spawn_devices(
    config: &Config,
    mailboxes: &HashMap<String, Arc<CommandMailbox>>,
    ctx: &DeviceTaskContext,
) -> (TaskTracker, CancellationToken) {
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    for device in &config.devices {
        tasks.spawn(supervisor::run_device(
            device.clone(),
            mailboxes[&device.id].clone(),
            ctx.clone(),
            cancel.clone(),
        ));
    }
    (tasks, cancel)
}

/// Binds the API listener (before READY, so a taken port fails the start) and serves it
/// until `stop` fires.
async fn serve_api(
    listen: SocketAddr,
    state: ApiState,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<SocketAddr, AppError> {
    let bind_error = |source| AppError::Bind {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let stop = stop.clone();
    tasks.spawn(async move {
        let serve = axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(error) = serve.await {
            tracing::error!(%error, "API server failed");
        }
    });
    tracing::info!(%addr, "API listening");
    Ok(addr)
}

/// Deletes journal rows older than `keep_days` and alarm records older than
/// `alarm_keep_days` (0: no limit of its own), at start and then hourly.
async fn prune_journal(
    store: Store,
    keep_days: u32,
    alarm_keep_days: u32,
    cancel: CancellationToken,
) {
    let days = |n: u32| Duration::from_hours(24) * n;
    let mut tick = tokio::time::interval(Duration::from_hours(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = std::time::SystemTime::now();
        if keep_days > 0 {
            match store.prune_journal(now - days(keep_days)).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, keep_days, "pruned old journal rows"),
                Err(error) => {
                    tracing::warn!(%error, "journal pruning failed; will retry in an hour");
                }
            }
        }
        if alarm_keep_days > 0 {
            match store
                .prune_kinds(&ALARM_KINDS, now - days(alarm_keep_days))
                .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, alarm_keep_days, "pruned old alarm records"),
                Err(error) => {
                    tracing::warn!(%error, "alarm pruning failed; will retry in an hour");
                }
            }
        }
    }
}

/// Keeps systemd's `STATUS=` current and feeds its watchdog while the pipeline moves.
async fn report_health(
    registry: Registry,
    peers: Arc<dyn Fn() -> Vec<PeerStatus> + Send + Sync>,
    progress: Progress,
    cancel: CancellationToken,
) {
    let watchdog = notify::watchdog_interval();
    // systemd's advice: ping at half the interval. Without a watchdog, refresh STATUS=.
    let period = watchdog.map_or(Duration::from_secs(2), |w| w / 2);
    let mut tick = tokio::time::interval(period);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut status = registry.status_line();
        for peer in peers() {
            let _ = write!(status, "; {} {}", peer.name, peer.state);
        }
        if status != last_status {
            notify::status(&status);
            last_status = status;
        }
        if let Some(limit) = watchdog {
            let quiet = progress.since_last_beat();
            if quiet < limit {
                notify::watchdog();
            } else {
                tracing::error!(
                    quiet_ms = quiet.as_millis(),
                    "pipeline made no progress; withholding the watchdog ping"
                );
            }
        }
    }
}
