//! The HTTP status API (axum): health, device and peer status, the recent journal.
//!
//! Read-only for now; later capabilities add their routes here. Errors map to responses
//! in one place ([`ApiError`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::bus::{Event, StationControl};
use crate::pipeline::{JournalHealth, JournalHealthSnapshot};
use crate::registry::{DeviceStatus, Registry};
use crate::station::loans::LoansCache;
use crate::station::{GateStatus, StationsStatus};
use crate::store::{JournalRow, Store};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Device states.
    pub registry: Registry,
    /// The store, for the journal.
    pub store: Store,
    /// When the daemon started.
    pub started: Instant,
    /// One line per peer (the ILS), for the status page.
    pub peers: std::sync::Arc<dyn Fn() -> Vec<PeerStatus> + Send + Sync>,
    /// The stations' live state (gates: presence, alarms, silence, people counts).
    pub stations: StationsStatus,
    /// The journal's health.
    pub journal_health: JournalHealth,
    /// Staff requests to stations.
    pub controls: mpsc::Sender<StationControl>,
    /// Events to journal (acknowledgements). Weak, so that the API never keeps the journal
    /// writer from draining and stopping at shutdown.
    pub events: mpsc::WeakSender<Event>,
    /// Events as committed (to answer only once an acknowledgement is durable).
    pub published: broadcast::Sender<Arc<Event>>,
    /// The gate's loans cache.
    pub loans: LoansCache,
}

pub use crate::status::PeerStatus;

/// The daemon's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/journal", get(journal))
        .route("/api/v1/stations", get(stations))
        .route(
            "/api/v1/stations/{station}/silence",
            post(silence).delete(unsilence),
        )
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/alarms/{alarm_id}/ack", post(acknowledge))
        .route("/api/v1/loans/{item}", get(loan))
        .with_state(state)
}

#[derive(Serialize)]
struct StatusBody {
    version: &'static str,
    uptime_s: u64,
    devices: Vec<DeviceStatus>,
    peers: Vec<PeerStatus>,
    journal_events: i64,
    journal: JournalHealthSnapshot,
    stations: BTreeMap<String, GateStatus>,
}

async fn status(State(state): State<ApiState>) -> Result<Json<StatusBody>, ApiError> {
    Ok(Json(StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        devices: state.registry.snapshot(),
        peers: (state.peers)(),
        journal_events: state.store.journal_len().await?,
        journal: state.journal_health.snapshot(),
        stations: state.stations.gates(),
    }))
}

async fn stations(State(state): State<ApiState>) -> Json<BTreeMap<String, GateStatus>> {
    Json(state.stations.gates())
}

#[derive(Serialize)]
struct SilenceBody {
    station: String,
    silenced_until_ms: Option<u64>,
}

async fn set_silence(
    state: &ApiState,
    station: String,
    on: bool,
) -> Result<Json<SilenceBody>, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .controls
        .send(StationControl::Silence {
            station: station.clone(),
            on,
            reply,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the daemon is stopping".into()))?;
    let until = answer
        .await
        .map_err(|_| ApiError::Unavailable("the daemon is stopping".into()))?
        .map_err(ApiError::NotFound)?;
    Ok(Json(SilenceBody {
        station,
        silenced_until_ms: until,
    }))
}

/// `POST /api/v1/stations/{station}/silence`: mutes the gate's outputs for its
/// configured `alarm.silence_ms` (alarms are still recorded).
async fn silence(
    State(state): State<ApiState>,
    Path(station): Path<String>,
) -> Result<Json<SilenceBody>, ApiError> {
    set_silence(&state, station, true).await
}

/// `DELETE /api/v1/stations/{station}/silence`: ends a silence early.
async fn unsilence(
    State(state): State<ApiState>,
    Path(station): Path<String>,
) -> Result<Json<SilenceBody>, ApiError> {
    set_silence(&state, station, false).await
}

/// Query of `GET /api/v1/alarms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmsQuery {
    /// How many alarms, newest first (1–1000, default 50).
    limit: Option<i64>,
}

/// One alarm with what was learned after it.
#[derive(Serialize)]
struct AlarmView {
    id: i64,
    at_ms: i64,
    #[serde(flatten)]
    alarm: serde_json::Value,
    title: Option<String>,
    acknowledged: bool,
    acknowledged_by: Option<String>,
}

async fn alarms(
    State(state): State<ApiState>,
    Query(query): Query<AlarmsQuery>,
) -> Result<Json<Vec<AlarmView>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let rows = state.store.recent(limit, Some("gate_alarm")).await?;
    let oldest = rows.last().map_or(0, |r| r.id);
    let later = state
        .store
        .since(oldest, &["alarm_title", "alarm_acknowledged"])
        .await?;
    let by_alarm = |kind: &str, id: &serde_json::Value, field: &str| {
        later
            .iter()
            .find(|r| r.kind == kind && &r.payload["alarm_id"] == id)
            .and_then(|r| r.payload[field].as_str().map(str::to_owned))
    };
    Ok(Json(
        rows.into_iter()
            .map(|row| {
                let id = &row.payload["alarm_id"];
                let acknowledged_by = by_alarm("alarm_acknowledged", id, "by");
                AlarmView {
                    id: row.id,
                    at_ms: row.at_ms,
                    title: by_alarm("alarm_title", id, "title"),
                    acknowledged: acknowledged_by.is_some(),
                    acknowledged_by,
                    alarm: row.payload,
                }
            })
            .collect(),
    ))
}

/// Body of `POST /api/v1/alarms/{alarm_id}/ack` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges (a name or initials; never required).
    by: Option<String>,
}

/// How long an acknowledgement may wait for its journal commit.
const ACK_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Journals the acknowledgement and answers only once it is committed (durable before
/// acknowledged).
async fn acknowledge(
    State(state): State<ApiState>,
    Path(alarm_id): Path<String>,
    body: Option<Json<AckBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.store.alarm_exists(&alarm_id).await? {
        return Err(ApiError::NotFound(format!("no alarm `{alarm_id}`")));
    }
    let by = body
        .and_then(|Json(b)| b.by)
        .unwrap_or_else(|| "api".to_owned());
    let mut committed = state.published.subscribe();
    let event = Event::AlarmAcknowledged {
        alarm_id: alarm_id.clone(),
        by: by.clone(),
    };
    let stopping = || ApiError::Unavailable("the daemon is stopping".into());
    let events = state.events.upgrade().ok_or_else(stopping)?;
    events.send(event.clone()).await.map_err(|_| stopping())?;
    drop(events);
    let wait = async {
        loop {
            match committed.recv().await {
                Ok(done) if *done == event => return Ok(()),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(()),
            }
        }
    };
    match tokio::time::timeout(ACK_COMMIT_WAIT, wait).await {
        Ok(Ok(())) => Ok(Json(
            serde_json::json!({ "alarm_id": alarm_id, "acknowledged_by": by }),
        )),
        _ => Err(ApiError::Unavailable(
            "the acknowledgement was not committed in time; the journal is failing".into(),
        )),
    }
}

async fn loan(
    State(state): State<ApiState>,
    Path(item): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.loans.on_loan(&item) {
        Some(on_loan) => Ok(Json(
            serde_json::json!({ "item": item, "on_loan": on_loan }),
        )),
        None => Err(ApiError::NotFound(format!(
            "the loans cache does not know item `{item}`"
        ))),
    }
}

/// Query of `GET /api/v1/journal`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalQuery {
    /// How many rows, newest first (1–1000, default 50).
    limit: Option<i64>,
    /// Only rows of this kind.
    kind: Option<String>,
}

async fn journal(
    State(state): State<ApiState>,
    Query(query): Query<JournalQuery>,
) -> Result<Json<Vec<JournalRow>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    Ok(Json(
        state.store.recent(limit, query.kind.as_deref()).await?,
    ))
}

/// Every way a request can fail, mapped to a status code and a JSON body here only.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was wrong.
    #[error("{0}")]
    BadRequest(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The daemon cannot do it now (stopping, journal failing).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if code.is_server_error() {
            tracing::error!(error = %self, "API request failed");
        }
        (code, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn state() -> (tempfile::TempDir, ApiState) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("api.db")).await.unwrap();
        store
            .append(&[
                crate::store::JournalEntry::new("daemon_started", serde_json::json!({})),
                crate::store::JournalEntry::new("tag_arrived", serde_json::json!({"uid": "E0"})),
            ])
            .await
            .unwrap();
        let config: crate::config::Config = toml::from_str(
            "[[devices]]\nid = \"gate\"\ndriver = \"sim\"\nsettings = { round_ms = 5 }",
        )
        .unwrap();
        let (controls, _) = mpsc::channel(1);
        let (events, _) = mpsc::channel::<Event>(1);
        let events = events.downgrade();
        let state = ApiState {
            registry: Registry::from_config(&config),
            store,
            started: Instant::now(),
            peers: std::sync::Arc::new(|| {
                vec![PeerStatus {
                    name: "ils".into(),
                    state: "online".into(),
                    detail: None,
                }]
            }),
            stations: StationsStatus::default(),
            journal_health: JournalHealth::default(),
            controls,
            events,
            published: broadcast::channel(1).0,
            loans: LoansCache::default(),
        };
        (dir, state)
    }

    async fn get(state: ApiState, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = router(state)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            code,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn status_lists_devices_peers_and_the_journal_size() {
        let (_dir, state) = state().await;
        let (code, body) = get(state, "/api/v1/status").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["devices"][0]["id"], "gate");
        assert_eq!(body["devices"][0]["state"], "starting");
        assert_eq!(body["peers"][0]["state"], "online");
        assert_eq!(body["journal_events"], 2);
    }

    #[tokio::test]
    async fn journal_returns_newest_rows_filtered_by_kind() {
        let (_dir, state) = state().await;
        let (code, body) = get(state.clone(), "/api/v1/journal?limit=1").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body.as_array().unwrap().len(), 1);
        assert_eq!(body[0]["kind"], "tag_arrived");
        let (_, body) = get(state, "/api/v1/journal?kind=daemon_started").await;
        assert_eq!(body[0]["kind"], "daemon_started");
    }

    #[tokio::test]
    async fn a_bad_limit_or_unknown_parameter_is_a_400_that_says_why() {
        let (_dir, state) = state().await;
        let (code, body) = get(state.clone(), "/api/v1/journal?limit=0").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
        let (code, _) = get(state, "/api/v1/journal?limt=5").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
    }
}
