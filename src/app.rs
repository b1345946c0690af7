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
use crate::northbound::delivery::{self, DeliveryError, DeliveryMetrics};
use crate::northbound::event::Publishing;
use crate::northbound::outbox::Outbox;
use crate::notify;
use crate::pipeline::{self, DevicePipeline, JournalHealth, Progress};
use crate::registry::Registry;
use crate::station::loans::LoansCache;
use crate::station::offline::Replayer;
use crate::station::owed::OwedBook;
use crate::station::transaction::Circulation;
use crate::station::{CirculationSetup, StationContext, StationRunner, StationsStatus};
use crate::status::PeerStatus;
use crate::store::{JournalEntry, Store, StoreError};
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
    /// The SIP2 face could not start.
    #[error(transparent)]
    SipFace(#[from] crate::sipface::FaceError),
    /// The API's tokens could not be read (`api.tokens`).
    #[error(transparent)]
    ApiAuth(#[from] api::auth::AuthError),
    /// The API's TLS certificate or key could not be used (`api.tls`).
    #[error(transparent)]
    ApiTls(#[from] api::tls::ApiTlsError),
    /// Tasks did not finish within `daemon.shutdown_timeout_ms`.
    #[error("shutdown took longer than {0:?}; some tasks were abandoned")]
    ShutdownTimeout(Duration),
    /// MQTT or webhook delivery could not start.
    #[error(transparent)]
    Northbound(#[from] DeliveryError),
    /// A return station's sort plan cannot be used.
    #[error("{key}: {problem}")]
    SortPlan {
        /// The config key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// A running daemon. Dropping it without [`Daemon::shutdown`] abandons its tasks.
pub struct Daemon {
    config: Config,
    store: Store,
    registry: Registry,
    journal_health: JournalHealth,
    delivery: DeliveryMetrics,
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
    circulation_tasks: TaskTracker,
    circulation_cancel: CancellationToken,
    face: Option<crate::sipface::SipFace>,
    face_tasks: TaskTracker,
    face_cancel: CancellationToken,
}

impl Daemon {
    /// Starts everything and sends `READY=1`.
    // Start-up reads top to bottom in the order things start (the order is the design);
    // the parts that can stand alone are already helpers below.
    #[allow(clippy::too_many_lines)]
    pub async fn start(config: Config) -> Result<Self, AppError> {
        let started = Instant::now();
        let store = Store::open(&config.store_path()).await?;
        // Before this run journals anything: what the previous run left open is closed in
        // the journal, in the order it happened (its events, then their ending).
        recover_unclean_stop(&store).await?;
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
        // MQTT and webhooks deliver from the durable outbox. Their cursors are taken before
        // this run's first event; they stop with the background tasks, after the journal's
        // last commit, so they deliver everything this run journals.
        let outbox = Outbox::new(
            store.clone(),
            published.clone(),
            Publishing {
                site: config.northbound.site.clone(),
                patron_ids: config.northbound.patron_ids,
            },
        );
        let delivery_metrics = delivery::start(
            (&config.mqtt, &config.webhooks, &config.northbound),
            &store,
            &outbox,
            &background,
            &background_cancel,
        )
        .await?;
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
        // The SIP2 face: kiosks log in once the stations' offline queue is there.
        let face_tasks = TaskTracker::new();
        let face_cancel = CancellationToken::new();
        let face = match &config.sip2_server {
            Some(face) => Some(
                crate::sipface::start(
                    face,
                    &config.stations,
                    ils.connector(),
                    crate::sipface::handler::FaceSinks {
                        store: store.clone(),
                        loans: side.loans.clone(),
                        events: events.clone(),
                        replay: side.replay.clone(),
                    },
                    std::path::Path::new(""),
                    (&face_tasks, &face_cancel),
                )
                .await?,
            ),
            None => None,
        };
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
            outbox: outbox.clone(),
            ils: ils.connector(),
            handles: Arc::new(side.handles.clone()),
            security: config.tags.security,
            command_within: Duration::from_millis(config.circulation.command_deadline_ms),
            auth: Arc::new(api::auth::Auth::from_config(
                &config.api.tokens,
                config.api.rate_limit,
            )?),
            metrics: Some(metrics_page(
                &store,
                &registry,
                &health,
                &ils,
                &delivery_metrics,
            )),
            stop: background_cancel.clone(),
            streams: api::events::stream_slots(),
            max_body_bytes: config.api.max_body_bytes,
        };

        let api_addr = if config.api.enabled {
            Some(
                serve_api(
                    (config.api.listen, config.api.tls.as_ref()),
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
            journal_health: health,
            delivery: delivery_metrics,
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
            circulation_tasks: side.circulation_tasks,
            circulation_cancel: side.circulation_cancel,
            face,
            face_tasks,
            face_cancel,
        })
    }

    /// The SIP2 face, when `[sip2_server]` is configured.
    pub fn sip2_face(&self) -> Option<&crate::sipface::SipFace> {
        self.face.as_ref()
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

    /// The `/metrics` page now (Prometheus text format; see [`crate::metrics`]).
    pub async fn metrics(&self) -> String {
        crate::metrics::render(crate::metrics::Sources {
            store: &self.store,
            registry: &self.registry,
            journal: &self.journal_health,
            peers: &self.ils.peers(),
            delivery: &self.delivery,
        })
        .await
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
        // The SIP2 face next: each kiosk's request under way is answered (the ILS and the
        // offline queue are still up), then its connection closes.
        self.face_cancel.cancel();
        self.face_tasks.close();
        self.face_tasks.wait().await;
        // Return and self-check stations finish the transaction under way (the ILS is
        // still up), then stop with the replayer and the owed-write watch.
        self.circulation_cancel.cancel();
        self.circulation_tasks.close();
        self.circulation_tasks.wait().await;
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
        self.loans.flush().await;
        // The clean-stop mark, after the journal's last commit: its absence after a
        // `daemon_started` tells the next start that this run did not get here.
        if let Err(error) = self
            .store
            .append(&[JournalEntry::new(
                "daemon_stopped",
                serde_json::json!({ "reason": reason }),
            )])
            .await
        {
            tracing::warn!(%error, "the clean-stop mark could not be written; the next start will report an unclean stop");
        }
        self.background_cancel.cancel();
        self.background.close();
        self.background.wait().await;
    }
}

/// When the previous run ended without a clean stop (no `daemon_stopped` after its
/// `daemon_started`: killed, power cut, crash), journals `unclean_stop` with that run's
/// start and last journal id, then ends each tag presence it left open (`tag_departed`)
/// and each self-check session (`session_ended` with the loans journaled so far), all with
/// reason `unclean_stop`. Written straight to the store before this run's first event.
async fn recover_unclean_stop(store: &Store) -> Result<(), StoreError> {
    let Some(mark) = store.last_run_mark().await? else {
        return Ok(()); // a new store
    };
    if mark.kind != "daemon_started" {
        return Ok(());
    }
    // Stores from before the clean-stop mark existed: a `daemon_stopping` after the start
    // is the best evidence there is.
    if !store.has_clean_stops().await?
        && store
            .last_of_kinds(mark.id, &["daemon_stopping"])
            .await?
            .is_some()
    {
        return Ok(());
    }
    let last_id = store.journal_last_id().await?.unwrap_or(mark.id);
    let presences = store.open_presences(mark.id).await?;
    let sessions = store.open_sessions(mark.id).await?;
    let mut entries = vec![JournalEntry::new(
        "unclean_stop",
        serde_json::json!({
            "previous_start": crate::northbound::event::rfc3339(mark.at_ms),
            "previous_start_id": mark.id,
            "last_journal_id": last_id,
            "presences_closed": presences.len(),
            "sessions_closed": sessions.len(),
        }),
    )];
    for presence in &presences {
        let mut entry = JournalEntry::new(
            "tag_departed",
            serde_json::json!({ "kind": "tag_departed", "uid": presence.uid, "reason": "unclean_stop" }),
        );
        entry.device.clone_from(&presence.device);
        entry.station.clone_from(&presence.station);
        entries.push(entry);
    }
    for session in &sessions {
        let line = |row: &crate::store::JournalRow| {
            serde_json::json!({
                "item": row.payload["item"],
                "title": row.payload["title"],
                "due_date": row.payload["due_date"],
                "reason": row.payload["reason"],
            })
        };
        let (failed, borrowed): (Vec<_>, Vec<_>) = session
            .loans
            .iter()
            .partition(|row| row.payload["outcome"] == "refused");
        let mut entry = JournalEntry::new(
            "session_ended",
            serde_json::json!({
                "station": session.station,
                "session": session.session,
                "ended": "unclean_stop",
                "reason": "unclean_stop",
                "borrowed": borrowed.into_iter().map(line).collect::<Vec<_>>(),
                "failed": failed.into_iter().map(line).collect::<Vec<_>>(),
                "offline": session.offline,
                "presented": null,
                "decoded": session.loans.len(),
                "stack_mismatch": false,
            }),
        );
        entry.station.clone_from(&session.station);
        entries.push(entry);
    }
    store.append(&entries).await?;
    tracing::warn!(
        previous_start = %crate::northbound::event::rfc3339(mark.at_ms),
        last_journal_id = last_id,
        presences_closed = presences.len(),
        sessions_closed = sessions.len(),
        "the previous run ended without a clean stop (killed, power cut or crash); what it left open was closed in the journal"
    );
    Ok(())
}

/// The device side of a running daemon: mailboxes, the stations and the pipeline task.
struct StationSide {
    mailboxes: HashMap<String, Arc<CommandMailbox>>,
    handles: HashMap<String, DeviceHandle>,
    loans: LoansCache,
    stations: StationsStatus,
    controls: mpsc::Sender<StationControl>,
    pipeline: JoinHandle<()>,
    circulation_tasks: TaskTracker,
    circulation_cancel: CancellationToken,
    /// Wakes the offline replayer (the SIP2 face queues too).
    replay: Arc<tokio::sync::Notify>,
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
    let circulation_tasks = TaskTracker::new();
    let circulation_cancel = CancellationToken::new();
    let circulation = start_circulation(
        config,
        store,
        ils.connector(),
        &handles,
        (&loans, events, &stations),
        (&circulation_tasks, &circulation_cancel),
    )
    .await?;
    let replay = circulation.circulation.replay.clone();
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
            circulation: Some(circulation),
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
        circulation_tasks,
        circulation_cancel,
        replay,
    })
}

/// The owed-write book (loaded, with what a crash left pending settled), the offline
/// replayer and the owed-write watch; the sort plans of return stations.
async fn start_circulation(
    config: &Config,
    store: &Store,
    ils: Option<Arc<dyn crate::ils::connector::IlsConnector>>,
    handles: &HashMap<String, DeviceHandle>,
    (loans, events, status): (&LoansCache, &mpsc::Sender<Event>, &StationsStatus),
    (tasks, cancel): (&TaskTracker, &CancellationToken),
) -> Result<CirculationSetup, AppError> {
    let settings = &config.circulation;
    let within = Duration::from_millis(settings.command_deadline_ms);
    let handles = Arc::new(handles.clone());
    let owed = OwedBook::new(
        store.clone(),
        config.tags.security,
        handles.clone(),
        events.clone(),
        within,
    );
    owed.load().await?;
    let plans = config
        .sort_plans(std::path::Path::new(""))
        .map_err(|(key, problem)| AppError::SortPlan { key, problem })?
        .into_iter()
        .map(|(station, plan)| (station, Arc::new(plan)))
        .collect();
    let replay = Arc::new(tokio::sync::Notify::new());
    if let Some(ils) = &ils {
        tasks.spawn(
            Replayer {
                store: store.clone(),
                ils: ils.clone(),
                events: events.clone(),
                wake: replay.clone(),
                pause: Duration::from_millis(settings.replay_pause_ms),
            }
            .run(cancel.clone()),
        );
    }
    let grace = Duration::from_secs(settings.owed_write_grace_s);
    let watch = owed.clone();
    let watch_cancel = cancel.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(
            grace
                .min(Duration::from_secs(30))
                .max(Duration::from_millis(100)),
        );
        loop {
            tokio::select! {
                () = watch_cancel.cancelled() => return,
                _ = every.tick() => watch.raise_overdue(grace).await,
            }
        }
    });
    Ok(CirculationSetup {
        circulation: Circulation {
            store: store.clone(),
            ils,
            handles,
            owed,
            loans: loans.clone(),
            events: events.clone(),
            replay,
            status: status.clone(),
            command_within: within,
        },
        plans,
        tasks: tasks.clone(),
        cancel: cancel.clone(),
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
    // Also without retention: it keeps lagging outbox consumers within their cap.
    background.spawn(prune_journal(
        store.clone(),
        (config.store.journal_keep_days, config.store.alarm_keep_days),
        config.northbound.max_lag_events,
        background_cancel.clone(),
    ));
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

/// The `/metrics` page, rendered at each scrape.
fn metrics_page(
    store: &Store,
    registry: &Registry,
    health: &JournalHealth,
    ils: &Ils,
    delivery: &DeliveryMetrics,
) -> api::MetricsRender {
    let (store, registry, health, ils, delivery) = (
        store.clone(),
        registry.clone(),
        health.clone(),
        ils.clone(),
        delivery.clone(),
    );
    Arc::new(move || {
        let (store, registry, health, ils, delivery) = (
            store.clone(),
            registry.clone(),
            health.clone(),
            ils.clone(),
            delivery.clone(),
        );
        Box::pin(async move {
            crate::metrics::render(crate::metrics::Sources {
                store: &store,
                registry: &registry,
                journal: &health,
                peers: &ils.peers(),
                delivery: &delivery,
            })
            .await
        })
    })
}

/// Binds the API listener (before READY, so a taken port fails the start) and serves it,
/// over TLS when `[api.tls]` is set, until `stop` fires.
async fn serve_api(
    (listen, tls): (SocketAddr, Option<&api::tls::ApiTlsConfig>),
    state: ApiState,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<SocketAddr, AppError> {
    let bind_error = |source| AppError::Bind {
        addr: listen,
        source,
    };
    let acceptor = tls.map(api::tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let stop = stop.clone();
    let router = api::router(state);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tasks.spawn(async move {
        let stopped = stop.clone();
        let served = match acceptor {
            Some(acceptor) => {
                let listener = api::tls::TlsListener::new(listener, acceptor, stop.clone());
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await
            }
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await
            }
        };
        if let Err(error) = served {
            tracing::error!(%error, "API server failed");
        }
    });
    tracing::info!(%addr, scheme, "API listening");
    Ok(addr)
}

/// Deletes journal rows older than `keep_days` (that every outbox consumer has delivered)
/// and alarm records older than `alarm_keep_days` (0: no limit of its own), and trims
/// consumers lagging more than `max_lag_events`; at start and then hourly.
async fn prune_journal(
    store: Store,
    (keep_days, alarm_keep_days): (u32, u32),
    max_lag_events: u64,
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
        // A consumer that lags too far (a webhook down for weeks) gives up its oldest
        // events rather than the disk; the status API shows what it skipped.
        match store
            .trim_lagging_cursors(i64::try_from(max_lag_events).unwrap_or(i64::MAX))
            .await
        {
            Ok(trimmed) => {
                for (consumer, skipped) in trimmed {
                    tracing::warn!(%consumer, skipped, max_lag_events, "outbox consumer too far behind: its oldest events were skipped");
                }
            }
            Err(error) => tracing::warn!(%error, "outbox lag check failed; will retry in an hour"),
        }
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
