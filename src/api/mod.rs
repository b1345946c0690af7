//! The HTTP API (axum) under `/api/v1`: health, version and status; stations, devices and
//! people counts; events (paged, and live as Server-Sent Events) in the public event
//! format; gate alarms; the staff and kiosk side of returns and self-check (offline queue,
//! owed tag writes, worklist, patron sessions, sort plans); device actions; the SIP2 ⇄
//! JSON bridge; `/metrics`; and the OpenAPI 3.1 document, generated from the handlers
//! below (`/api/v1/openapi.json`).
//!
//! Every route but `/healthz`, `/api/v1/health`, the landing answer at `/api/v1` and the
//! OpenAPI document needs a bearer token of the role its documentation names ([`auth`]). Errors map to responses in one
//! place ([`error::ApiError`]), one JSON shape with a stable code for every route; bad
//! query strings, paths and bodies are answered there too, naming the parameter or
//! field. A PIN is never logged nor echoed, not even in an error.

pub mod auth;
pub mod bridge;
pub mod dashboard;
pub mod devices;
pub mod error;
pub mod events;
pub mod openapi;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use rfidgw_driver::DeviceHandle;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::auth::{Auth, Caller};
pub use self::error::ApiError;
use crate::bus::{Event, StationControl};
use crate::ils::connector::IlsConnector;
use crate::northbound::outbox::Outbox;
use crate::pipeline::{JournalHealth, JournalHealthSnapshot};
use crate::registry::{DeviceStatus, Registry};
use crate::station::loans::LoansCache;
use crate::station::returns::ReturnStatus;
use crate::station::selfcheck::SelfCheckStatus;
use crate::station::transaction::StationInput;
use crate::station::{GateStatus, StationsStatus};
use crate::store::{JournalRow, OwedRow, OwedState, QueueState, Store, WorkRow};

/// Renders the Prometheus text exposition of the daemon's metrics.
pub type MetricsRender = Arc<dyn Fn() -> futures::future::BoxFuture<'static, String> + Send + Sync>;

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
    /// Events to journal (acknowledgements, device actions, bridge transactions). Weak, so
    /// that the API never keeps the journal writer from draining and stopping at shutdown.
    pub events: mpsc::WeakSender<Event>,
    /// Events as committed (to answer only once an acknowledgement is durable).
    pub published: broadcast::Sender<Arc<Event>>,
    /// The gate's loans cache.
    pub loans: LoansCache,
    /// The journal as public events (the events listing and the live stream).
    pub outbox: Outbox,
    /// The library system, for the bridge (`None` without `[ils]`).
    pub ils: Option<Arc<dyn IlsConnector>>,
    /// Every device's command handle, for device actions.
    pub handles: Arc<HashMap<String, DeviceHandle>>,
    /// The site's tag security (mode and AFI pair), for securing and unsecuring tags.
    pub security: rfidgw_tag::SecurityConfig,
    /// How long a device command may take (`circulation.command_deadline_ms`).
    pub command_within: Duration,
    /// The tokens.
    pub auth: Arc<Auth>,
    /// The metrics' text, when the daemon keeps metrics.
    pub metrics: Option<MetricsRender>,
    /// Fires when the daemon stops: live streams end.
    pub stop: CancellationToken,
    /// Slots for live streams.
    pub streams: Arc<Semaphore>,
    /// The largest request body read (`api.max_body_bytes`).
    pub max_body_bytes: usize,
}

pub use crate::status::PeerStatus;

/// Every route with its documentation; the OpenAPI document is made from the same list.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(landing))
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .routes(routes!(version))
        .routes(routes!(metrics))
        .routes(routes!(whoami))
        .routes(routes!(tokens))
        .routes(routes!(status))
        .routes(routes!(journal))
        .routes(routes!(events::events))
        .routes(routes!(events::stream))
        .routes(routes!(events::people))
        .routes(routes!(stations))
        .routes(routes!(devices::devices))
        .routes(routes!(devices::secure))
        .routes(routes!(devices::unsecure))
        .routes(routes!(devices::outputs))
        .routes(routes!(silence, unsilence))
        .routes(routes!(alarms))
        .routes(routes!(acknowledge))
        .routes(routes!(loan))
        .routes(routes!(offline_queue))
        .routes(routes!(owed_writes))
        .routes(routes!(worklist))
        .routes(routes!(resolve_work))
        .routes(routes!(patron))
        .routes(routes!(finish))
        .routes(routes!(sort_plan))
        .routes(routes!(bridge::checkout))
        .routes(routes!(bridge::checkin))
        .routes(routes!(bridge::renew))
        .routes(routes!(bridge::item))
        .routes(routes!(bridge::validate_patron))
        .routes(routes!(bridge::patron_account))
        .routes(routes!(dashboard::stats))
        .routes(routes!(dashboard::borrowed_together))
}

/// The OpenAPI 3.1 document of every route (JSON), as served at `/api/v1/openapi.json`.
pub fn openapi_document() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| openapi::finish(&routes().into_openapi()))
}

/// The daemon's routes, each behind the token check its documentation names.
pub fn router(state: ApiState) -> Router {
    let (routes, _) = routes().split_for_parts();
    let guard = Arc::new(auth::Guard::new(state.auth.clone(), openapi_document()));
    routes
        .route_layer(axum::middleware::from_fn_with_state(guard, auth::authorize))
        // The dashboard's static files: public, outside the OpenAPI document and its guard.
        .merge(dashboard::pages())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Liveness for load balancers and systemd checks: plain `ok`, no token.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "The daemon answers", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The answer at `/api/v1`: what this is and every route, from the OpenAPI document.
#[derive(Serialize, ToSchema)]
struct LandingBody {
    /// `rfidgw`.
    name: &'static str,
    /// The daemon's version.
    version: &'static str,
    /// The API's version (the path prefix).
    api: &'static str,
    /// Where the full OpenAPI 3.1 document is.
    openapi: &'static str,
    /// Every route: method, path, the role it needs, what it does.
    routes: Vec<RouteView>,
}

/// One route as the landing answer lists it.
#[derive(Clone, Serialize, ToSchema)]
struct RouteView {
    /// `GET`, `POST`, `PUT`, `DELETE`.
    method: String,
    /// The path, with `{parameters}`.
    path: String,
    /// The role a token needs (`read`, `operate`, `admin`), or `public`.
    role: String,
    /// What it does (the first line of its documentation).
    summary: String,
}

/// Every route of the OpenAPI document, by path then method.
fn route_list() -> &'static [RouteView] {
    static ROUTES: std::sync::OnceLock<Vec<RouteView>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let document = openapi_document();
        let mut routes = Vec::new();
        let paths = document["paths"].as_object().into_iter().flatten();
        for (path, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let role = operation["security"][0]["bearer"][0]
                    .as_str()
                    .unwrap_or("public");
                // The first sentence of its documentation (which may span lines).
                let text = [&operation["summary"], &operation["description"]]
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let summary = text.find(". ").map_or(text.as_str(), |end| &text[..=end]);
                routes.push(RouteView {
                    method: method.to_ascii_uppercase(),
                    path: path.clone(),
                    role: role.to_owned(),
                    summary: summary.to_owned(),
                });
            }
        }
        routes
    })
}

/// This API at a glance: the daemon's version and every route with the role it needs. No
/// token: like the OpenAPI document it lists, it holds no secret and tells a newcomer
/// where to start.
#[utoipa::path(get, path = "/api/v1", tag = "meta", security(()),
    responses((status = 200, description = "The API and its routes", body = LandingBody)))]
async fn landing() -> Json<LandingBody> {
    Json(LandingBody {
        name: "rfidgw",
        version: env!("CARGO_PKG_VERSION"),
        api: "v1",
        openapi: "/api/v1/openapi.json",
        routes: route_list().to_vec(),
    })
}

/// Health as JSON, no token.
#[derive(Serialize, ToSchema)]
struct HealthBody {
    /// `ok` while the daemon serves.
    status: &'static str,
    /// The daemon's version.
    version: &'static str,
}

/// Liveness as JSON: no token.
#[utoipa::path(get, path = "/api/v1/health", tag = "meta", security(()),
    responses((status = 200, description = "The daemon answers", body = HealthBody)))]
async fn health() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// This document: OpenAPI 3.1, generated from the code. Public (it holds no secret), so
/// that tools can read it before they have a token.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Json<&'static serde_json::Value> {
    Json(openapi_document())
}

/// What this gateway runs.
#[derive(Serialize, ToSchema)]
struct VersionBody {
    /// The daemon's version.
    version: &'static str,
    /// The API's version (the path prefix).
    api: &'static str,
    /// The public event format's version.
    event_format: u8,
}

/// The daemon's, the API's and the event format's versions.
#[utoipa::path(get, path = "/api/v1/version", tag = "meta",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "Versions", body = VersionBody)))]
async fn version() -> Json<VersionBody> {
    Json(VersionBody {
        version: env!("CARGO_PKG_VERSION"),
        api: "v1",
        event_format: crate::northbound::event::VERSION,
    })
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let render = state
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this daemon keeps no metrics".into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render().await,
    ))
}

/// A token as the gateway knows it (never the token or its digest).
#[derive(Serialize, ToSchema)]
struct TokenView {
    /// The token's name.
    name: String,
    /// Its role.
    role: auth::Role,
}

/// The token the request came with: its name and role.
#[utoipa::path(get, path = "/api/v1/auth/whoami", tag = "meta",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "The caller's token", body = TokenView)))]
async fn whoami(Extension(caller): Extension<Caller>) -> Json<TokenView> {
    Json(TokenView {
        name: caller.name,
        role: caller.role,
    })
}

/// The configured tokens' names and roles (`admin`: part of the gateway's configuration).
#[utoipa::path(get, path = "/api/v1/auth/tokens", tag = "meta",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "Every token", body = Vec<TokenView>)))]
async fn tokens(State(state): State<ApiState>) -> Json<Vec<TokenView>> {
    Json(
        state
            .auth
            .list()
            .into_iter()
            .map(|(name, role)| TokenView { name, role })
            .collect(),
    )
}

#[derive(Serialize)]
struct StatusBody {
    version: &'static str,
    uptime_s: u64,
    devices: Vec<DeviceStatus>,
    peers: Vec<PeerStatus>,
    journal_events: i64,
    journal: JournalHealthSnapshot,
    stations: StationsBody,
    circulation: CirculationBody,
}

/// Every station's live state, by kind and station id.
#[derive(Serialize)]
struct StationsBody {
    gates: BTreeMap<String, GateStatus>,
    returns: BTreeMap<String, ReturnStatus>,
    selfchecks: BTreeMap<String, SelfCheckStatus>,
}

impl StationsBody {
    fn of(status: &StationsStatus) -> Self {
        Self {
            gates: status.gates(),
            returns: status.returns(),
            selfchecks: status.selfchecks(),
        }
    }
}

/// What returns and self-check have left to do.
#[derive(Serialize)]
struct CirculationBody {
    /// Offline transactions waiting for the library system (`queued` or `replaying`).
    offline_queue: u64,
    /// Tag writes owed (`owed` or `raised`).
    owed_writes: u64,
    /// Open staff worklist entries.
    worklist_open: u64,
}

/// The daemon at a glance: devices, peers, journal, stations, what circulation has left.
#[utoipa::path(get, path = "/api/v1/status", tag = "stations",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "Status", body = Object)))]
async fn status(State(state): State<ApiState>) -> Result<Json<StatusBody>, ApiError> {
    let store = &state.store;
    Ok(Json(StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        devices: state.registry.snapshot(),
        peers: (state.peers)(),
        journal_events: store.journal_len().await?,
        journal: state.journal_health.snapshot(),
        stations: StationsBody::of(&state.stations),
        circulation: CirculationBody {
            offline_queue: store.queue_len().await?,
            owed_writes: store
                .owed_write_count(&[OwedState::Owed, OwedState::Raised])
                .await?,
            worklist_open: store.worklist_open().await?,
        },
    }))
}

/// Every station's live state: `gates`, `returns` and `selfchecks`, by station id.
#[utoipa::path(get, path = "/api/v1/stations", tag = "stations",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "Stations by kind", body = Object)))]
async fn stations(State(state): State<ApiState>) -> Json<StationsBody> {
    Json(StationsBody::of(&state.stations))
}

/// A gate's silence.
#[derive(Serialize, ToSchema)]
struct SilenceBody {
    /// The gate.
    station: String,
    /// Until when its outputs are muted (ms since the Unix epoch); `null`: not muted.
    silenced_until_ms: Option<u64>,
    /// The same time as RFC 3339 UTC; `null`: not muted.
    #[schema(format = DateTime)]
    silenced_until: Option<String>,
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
        silenced_until: until
            .map(|ms| crate::rfc3339::format(i64::try_from(ms).unwrap_or(i64::MAX))),
    }))
}

/// Mutes the gate's outputs for its configured `alarm.silence_ms` (alarms are still
/// recorded).
#[utoipa::path(post, path = "/api/v1/stations/{station}/silence", tag = "stations",
    security(("bearer" = ["operate"])),
    params(("station" = String, Path, description = "The gate")),
    responses((status = 200, description = "Silenced", body = SilenceBody)))]
async fn silence(
    State(state): State<ApiState>,
    PathParam(station): PathParam<String>,
) -> Result<Json<SilenceBody>, ApiError> {
    set_silence(&state, station, true).await
}

/// Ends a gate's silence early.
#[utoipa::path(delete, path = "/api/v1/stations/{station}/silence", tag = "stations",
    security(("bearer" = ["operate"])),
    params(("station" = String, Path, description = "The gate")),
    responses((status = 200, description = "No longer silenced", body = SilenceBody)))]
async fn unsilence(
    State(state): State<ApiState>,
    PathParam(station): PathParam<String>,
) -> Result<Json<SilenceBody>, ApiError> {
    set_silence(&state, station, false).await
}

/// Query of `GET /api/v1/alarms`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AlarmsQuery {
    /// How many alarms, newest first (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One alarm with what was learned after it.
#[derive(Serialize)]
struct AlarmView {
    id: i64,
    #[serde(rename = "time", serialize_with = "crate::rfc3339::ms")]
    at_ms: i64,
    #[serde(flatten)]
    alarm: serde_json::Value,
    title: Option<String>,
    acknowledged: bool,
    acknowledged_by: Option<String>,
}

/// The newest gate alarms, with title and acknowledgement.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "stations",
    security(("bearer" = ["read"])),
    params(AlarmsQuery),
    responses((status = 200, description = "Alarms, newest first", body = Vec<Object>)))]
async fn alarms(
    State(state): State<ApiState>,
    Params(query): Params<AlarmsQuery>,
) -> Result<Json<Vec<AlarmView>>, ApiError> {
    let limit = i64::from(check_limit(query.limit, 50)?);
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// Who acknowledges (a name or initials; the token's name when not given).
    by: Option<String>,
}

/// An acknowledgement, committed.
#[derive(Serialize, ToSchema)]
struct AckAnswer {
    /// The alarm.
    alarm_id: String,
    /// Who acknowledged it.
    acknowledged_by: String,
}

/// How long an acknowledgement may wait for its journal commit.
const ACK_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Acknowledges an alarm; answered once the acknowledgement is committed.
#[utoipa::path(post, path = "/api/v1/alarms/{alarm_id}/ack", tag = "stations",
    security(("bearer" = ["operate"])),
    params(("alarm_id" = String, Path, description = "The alarm, as listed")),
    request_body(content = Option<AckBody>, description = "Optional: who acknowledges"),
    responses((status = 200, description = "Acknowledged (committed)", body = AckAnswer)))]
async fn acknowledge(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    PathParam(alarm_id): PathParam<String>,
    JsonBody(body): JsonBody<Option<AckBody>>,
) -> Result<Json<AckAnswer>, ApiError> {
    if !state.store.alarm_exists(&alarm_id).await? {
        return Err(ApiError::NotFound(format!("no alarm `{alarm_id}`")));
    }
    let by = body
        .and_then(|b| b.by)
        .filter(|by| !by.trim().is_empty())
        .unwrap_or(caller.name);
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
        Ok(Ok(())) => Ok(Json(AckAnswer {
            alarm_id,
            acknowledged_by: by,
        })),
        _ => Err(ApiError::Unavailable(
            "the acknowledgement was not committed in time; the journal is failing".into(),
        )),
    }
}

/// What the gate's loans cache says about an item.
#[derive(Serialize, ToSchema)]
struct LoanAnswer {
    /// The item.
    item: String,
    /// Whether it is on loan.
    on_loan: bool,
}

/// Whether the gate's loans cache has an item on loan (database security mode).
#[utoipa::path(get, path = "/api/v1/loans/{item}", tag = "stations",
    security(("bearer" = ["read"])),
    params(("item" = String, Path, description = "The item")),
    responses((status = 200, description = "Known to the cache", body = LoanAnswer)))]
async fn loan(
    State(state): State<ApiState>,
    PathParam(item): PathParam<String>,
) -> Result<Json<LoanAnswer>, ApiError> {
    match state.loans.on_loan(&item) {
        Some(on_loan) => Ok(Json(LoanAnswer { item, on_loan })),
        None => Err(ApiError::NotFound(format!(
            "the loans cache does not know item `{item}`"
        ))),
    }
}

/// Query of `GET /api/v1/journal`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct JournalQuery {
    /// How many rows, newest first (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only rows of this kind.
    kind: Option<String>,
}

/// The raw journal, newest first (the daemon's internal shapes; integrations should read
/// `/api/v1/events`, the stable public format).
#[utoipa::path(get, path = "/api/v1/journal", tag = "events",
    security(("bearer" = ["read"])),
    params(JournalQuery),
    responses((status = 200, description = "Journal rows, newest first", body = Vec<Object>)))]
async fn journal(
    State(state): State<ApiState>,
    Params(query): Params<JournalQuery>,
) -> Result<Json<Vec<JournalRow>>, ApiError> {
    let limit = i64::from(check_limit(query.limit, 50)?);
    Ok(Json(
        state.store.recent(limit, query.kind.as_deref()).await?,
    ))
}

/// The most rows a listing returns.
const MAX_LIMIT: i64 = 1000;

/// `limit` of a listing: `default` when absent, else 1–[`MAX_LIMIT`] (more is a 400, not a
/// clamp: a client that asked for more should learn it gets less).
fn check_limit(limit: Option<i64>, default: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default),
        Some(limit) => u32::try_from(limit)
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(&i64::from(*l)))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be between 1 and {MAX_LIMIT}, got {limit}"
                ))
            }),
    }
}

/// `state` of a listing: one state or several with commas, `all` for every state (an
/// empty list, which the store reads as "all"); `default` when absent.
fn parse_states<S: Copy>(
    param: Option<&str>,
    known: &[S],
    name: impl Fn(S) -> &'static str,
    default: &[S],
) -> Result<Vec<S>, ApiError> {
    let Some(param) = param else {
        return Ok(default.to_vec());
    };
    if param == "all" {
        return Ok(Vec::new());
    }
    param
        .split(',')
        .map(|word| {
            known
                .iter()
                .copied()
                .find(|s| name(*s) == word.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = known.iter().map(|s| name(*s)).collect();
                    ApiError::BadRequest(format!(
                        "state must be one of {} or `all` (several with commas), got `{word}`",
                        names.join(", ")
                    ))
                })
        })
        .collect()
}

/// Query of `GET /api/v1/offline-queue`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct QueueQuery {
    /// Which states: one, several with commas, or `all`.
    #[param(
        pattern = "^(all|(queued|replaying|done|failed|resolved)(,(queued|replaying|done|failed|resolved))*)$"
    )]
    state: Option<String>,
    /// How many rows, oldest first (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Query of `GET /api/v1/owed-writes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OwedQuery {
    /// Which states: one, several with commas, or `all`.
    #[param(
        pattern = "^(all|(pending|owed|raised|done|cancelled|resolved)(,(pending|owed|raised|done|cancelled|resolved))*)$"
    )]
    state: Option<String>,
    /// How many rows, oldest first (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Transactions taken while the library system was away (default: those still to
/// replay; states `queued`, `replaying`, `done`, `failed`, `resolved`). Never shows the
/// patron.
#[utoipa::path(get, path = "/api/v1/offline-queue", tag = "circulation",
    security(("bearer" = ["read"])),
    params(QueueQuery),
    responses((status = 200, description = "Queue rows, oldest first", body = Vec<Object>)))]
async fn offline_queue(
    State(state): State<ApiState>,
    Params(query): Params<QueueQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    const STATES: [QueueState; 5] = [
        QueueState::Queued,
        QueueState::Replaying,
        QueueState::Done,
        QueueState::Failed,
        QueueState::Resolved,
    ];
    let limit = check_limit(query.limit, 100)?;
    let states = parse_states(
        query.state.as_deref(),
        &STATES,
        QueueState::as_str,
        &[QueueState::Queued, QueueState::Replaying],
    )?;
    let rows = state.store.queued(&states, limit).await?;
    // QueuedRow's own serialisation leaves the patron out; the outcome (JSON text as
    // stored) is shown as JSON.
    let views = rows
        .iter()
        .map(|row| {
            let mut view = serde_json::to_value(row).unwrap_or_default();
            if let Some(outcome) = row
                .outcome
                .as_deref()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            {
                view["outcome"] = outcome;
            }
            view
        })
        .collect();
    Ok(Json(views))
}

/// Tag security writes the daemon owes (default: `owed` and `raised`; also `pending`,
/// `done`, `cancelled`, `resolved`).
#[utoipa::path(get, path = "/api/v1/owed-writes", tag = "circulation",
    security(("bearer" = ["read"])),
    params(OwedQuery),
    responses((status = 200, description = "Owed writes, oldest first", body = Vec<Object>)))]
async fn owed_writes(
    State(state): State<ApiState>,
    Params(query): Params<OwedQuery>,
) -> Result<Json<Vec<OwedRow>>, ApiError> {
    const STATES: [OwedState; 6] = [
        OwedState::Pending,
        OwedState::Owed,
        OwedState::Raised,
        OwedState::Done,
        OwedState::Cancelled,
        OwedState::Resolved,
    ];
    let limit = check_limit(query.limit, 100)?;
    let states = parse_states(
        query.state.as_deref(),
        &STATES,
        OwedState::as_str,
        &[OwedState::Owed, OwedState::Raised],
    )?;
    Ok(Json(state.store.owed_writes(&states, limit).await?))
}

/// Query of `GET /api/v1/worklist`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WorklistQuery {
    /// Resolved entries too.
    all: Option<bool>,
    /// How many entries, oldest first (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// What the daemon could not finish by itself (open entries; all with `all=true`).
#[utoipa::path(get, path = "/api/v1/worklist", tag = "circulation",
    security(("bearer" = ["read"])),
    params(WorklistQuery),
    responses((status = 200, description = "Entries, oldest first", body = Vec<Object>)))]
async fn worklist(
    State(state): State<ApiState>,
    Params(query): Params<WorklistQuery>,
) -> Result<Json<Vec<WorkRow>>, ApiError> {
    let limit = check_limit(query.limit, 100)?;
    Ok(Json(
        state
            .store
            .worklist(query.all.unwrap_or(false), limit)
            .await?,
    ))
}

/// Body of `POST /api/v1/worklist/{id}/resolve`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    /// Who dealt with it (a name or initials; not blank).
    #[schema(pattern = r"\S")]
    by: String,
    /// How (not blank).
    #[schema(pattern = r"\S")]
    resolution: String,
}

/// Staff dealt with an entry. The queue row or owed write it is about is resolved in the
/// same store transaction; the answer comes once that is committed.
#[utoipa::path(post, path = "/api/v1/worklist/{id}/resolve", tag = "circulation",
    security(("bearer" = ["operate"])),
    params(("id" = i64, Path, description = "The entry's id, as listed")),
    request_body = ResolveBody,
    responses((status = 200, description = "The resolved entry", body = Object)))]
async fn resolve_work(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<WorkRow>, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "the worklist id is a number (as listed), got `{id}`"
        ))
    })?;
    let (by, resolution) = (body.by.trim(), body.resolution.trim());
    if by.is_empty() || resolution.is_empty() {
        return Err(ApiError::Unprocessable(
            "`by` (who) and `resolution` (how) must not be empty".into(),
        ));
    }
    let row = state
        .store
        .resolve_work_and_ref(id, by, resolution)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no open worklist entry {id}")))?;
    tracing::info!(work = id, kind = %row.kind, station = %row.station, by, "worklist entry resolved by staff");
    // The resolution is committed; the journal record follows it (an owed write resolved
    // here is also dropped from the owed book when its tag is next seen).
    if let Some(events) = state.events.upgrade() {
        let _ = events.try_send(Event::Station(
            crate::station::activity::Activity::WorkResolved {
                station: row.station.clone(),
                work_id: row.id,
                work: row.kind.clone(),
                item: row.item_id.clone(),
                by: by.to_owned(),
                resolution: resolution.to_owned(),
                token: caller.name,
            },
        ));
    }
    Ok(Json(row))
}

/// How long a station may take to answer a kiosk or staff request (a patron check waits
/// for the library system).
const DESK_WAIT: Duration = Duration::from_secs(30);

/// What kind of transaction station an id names.
enum Desk {
    /// A return station; whether it has a sort plan.
    Return { sort_plan: bool },
    /// A self-check station.
    SelfCheck,
}

fn desk(state: &ApiState, station: &str) -> Result<Desk, ApiError> {
    if let Some(status) = state.stations.returns().get(station) {
        return Ok(Desk::Return {
            sort_plan: status.plan.is_some(),
        });
    }
    if state.stations.selfchecks().contains_key(station) {
        return Ok(Desk::SelfCheck);
    }
    if state.stations.gates().contains_key(station) {
        return Err(ApiError::Conflict(format!(
            "`{station}` is a gate, not a return or self-check station"
        )));
    }
    Err(ApiError::NotFound(format!(
        "no return or self-check station `{station}`"
    )))
}

/// Hands a request to a station's task and waits (at most [`DESK_WAIT`]) for its answer:
/// `Ok(Err(reason))` when the station said no.
async fn ask_desk<T>(
    state: &ApiState,
    station: &str,
    input: impl FnOnce(oneshot::Sender<Result<T, String>>) -> StationInput,
) -> Result<Result<T, String>, ApiError> {
    let (reply, answer) = oneshot::channel();
    let control = StationControl::Desk {
        station: station.to_owned(),
        input: input(reply),
    };
    let stopping = || ApiError::Unavailable("the daemon is stopping".into());
    let asked = async {
        state.controls.send(control).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())
    };
    tokio::time::timeout(DESK_WAIT, asked).await.map_err(|_| {
        ApiError::Unavailable(format!(
            "station `{station}` did not answer within {} s",
            DESK_WAIT.as_secs()
        ))
    })?
}

/// A station's refusal, with its reason as the error's `reason` (409: the station's state
/// — the patron, the plans it has — does not allow it).
fn refused(station: &str, reason: String) -> ApiError {
    ApiError::Refused {
        message: format!("station `{station}` said no: {reason}"),
        reason,
    }
}

/// A kiosk session.
#[derive(Serialize, ToSchema)]
struct SessionAnswer {
    /// The station.
    station: String,
    /// The session's id.
    session: String,
}

/// A kiosk identified a patron (card number typed or scanned, PIN when the site asks): a
/// session starts, or 409 `refused` with the station's reason (`unknown`, `wrong_pin`,
/// `blocked`, borrowing not possible offline).
#[utoipa::path(post, path = "/api/v1/stations/{station}/patron", tag = "circulation",
    security(("bearer" = ["operate"])),
    params(("station" = String, Path, description = "The self-check station")),
    request_body = bridge::PatronRequest,
    responses((status = 200, description = "A session started", body = SessionAnswer)))]
async fn patron(
    State(state): State<ApiState>,
    PathParam(station): PathParam<String>,
    JsonBody(body): JsonBody<bridge::PatronRequest>,
) -> Result<Json<SessionAnswer>, ApiError> {
    if let Desk::Return { .. } = desk(&state, &station)? {
        return Err(ApiError::Conflict(format!(
            "`{station}` is a return station; patrons identify at self-check stations"
        )));
    }
    let (patron, pin) = body.into_parts()?;
    match ask_desk(&state, &station, |reply| StationInput::Patron {
        patron,
        pin,
        reply,
    })
    .await?
    {
        Ok(session) => Ok(Json(SessionAnswer { station, session })),
        Err(reason) => Err(refused(&station, reason)),
    }
}

/// Body of `POST /api/v1/stations/{station}/finish` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FinishBody {
    /// How many items the patron says they presented (the stack count).
    #[serde(default, deserialize_with = "whole_u32")]
    presented: Option<u32>,
}

/// A session's end.
#[derive(Serialize, ToSchema)]
struct FinishAnswer {
    /// The station.
    station: String,
    /// Always `true`.
    finished: bool,
}

/// The patron is done; the session ends with its receipt (journaled). 409 when no
/// session is open.
#[utoipa::path(post, path = "/api/v1/stations/{station}/finish", tag = "circulation",
    security(("bearer" = ["operate"])),
    params(("station" = String, Path, description = "The self-check station")),
    request_body(content = Option<FinishBody>, description = "Optional: the stack count"),
    responses((status = 200, description = "The session ended", body = FinishAnswer)))]
async fn finish(
    State(state): State<ApiState>,
    PathParam(station): PathParam<String>,
    JsonBody(body): JsonBody<Option<FinishBody>>,
) -> Result<Json<FinishAnswer>, ApiError> {
    if let Desk::Return { .. } = desk(&state, &station)? {
        return Err(ApiError::Conflict(format!(
            "`{station}` is a return station; sessions are at self-check stations"
        )));
    }
    let presented = body.unwrap_or_default().presented;
    match ask_desk(&state, &station, |reply| StationInput::Finish {
        presented,
        reply,
    })
    .await?
    {
        Ok(()) => Ok(Json(FinishAnswer {
            station,
            finished: true,
        })),
        Err(reason) => Err(ApiError::Conflict(reason)),
    }
}

/// Body of `PUT /api/v1/stations/{station}/sort-plan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SortPlanBody {
    /// A plan's name, or `null` for the schedule (required either way).
    #[schema(value_type = Option<String>, required = true)]
    plan: serde_json::Value,
}

/// The plan in force after a switch.
#[derive(Serialize, ToSchema)]
struct SortPlanAnswer {
    /// The station.
    station: String,
    /// What was asked: the plan's name, or `schedule`.
    selection: String,
    /// The plan in force now.
    plan: String,
}

/// Follow a named plan until the next change, or (`null`) the schedule again. Answers
/// with the plan in force now.
#[utoipa::path(put, path = "/api/v1/stations/{station}/sort-plan", tag = "circulation",
    security(("bearer" = ["operate"])),
    params(("station" = String, Path, description = "The return station")),
    request_body = SortPlanBody,
    responses((status = 200, description = "The plan in force", body = SortPlanAnswer)))]
async fn sort_plan(
    State(state): State<ApiState>,
    PathParam(station): PathParam<String>,
    JsonBody(body): JsonBody<SortPlanBody>,
) -> Result<Json<SortPlanAnswer>, ApiError> {
    match desk(&state, &station)? {
        Desk::Return { sort_plan: true } => {}
        Desk::Return { sort_plan: false } => {
            return Err(ApiError::Conflict(format!(
                "return station `{station}` has no sort plan"
            )));
        }
        Desk::SelfCheck => {
            return Err(ApiError::Conflict(format!(
                "`{station}` is a self-check station; sort plans belong to return stations"
            )));
        }
    }
    let plan = match body.plan {
        serde_json::Value::Null => None,
        serde_json::Value::String(name) if !name.trim().is_empty() => Some(name),
        _ => {
            return Err(ApiError::Unprocessable(
                "`plan` must be a plan's name, or null for the schedule".into(),
            ));
        }
    };
    let selection = plan.clone().unwrap_or_else(|| "schedule".to_owned());
    match ask_desk(&state, &station, |reply| StationInput::SortPlan {
        plan,
        reply,
    })
    .await?
    {
        Ok(now) => Ok(Json(SortPlanAnswer {
            station,
            selection,
            plan: now,
        })),
        Err(reason) => Err(refused(&station, reason)),
    }
}

/// A query string, its mistakes answered by [`ApiError`] (JSON naming the parameter).
struct Params<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| Self(query))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// Path parameters, their mistakes (bad percent-encoding, …) answered by [`ApiError`].
struct PathParam<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(path)| Self(path))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// A JSON body, its mistakes answered by [`ApiError`]: not JSON → 400, JSON of the wrong
/// shape → 422, naming the field; larger than `api.max_body_bytes` → 413. An empty body
/// reads as `null` (so `Option<T>` makes a body optional). The content type is not
/// checked (curl and the CLI need not set it).
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(
                        "the body is larger than this API reads (api.max_body_bytes)".into(),
                    )
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        parse_body(&bytes).map(Self)
    }
}

/// An optional whole number of a body (`deserialize_with`): JSON Schema counts `2.0` as an
/// integer, so a client generated from the OpenAPI document may send one.
#[allow(clippy::cast_sign_loss)] // checked first: whole, from 0 to u32::MAX
fn whole_u32<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Some(value) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{value} is not a whole number from 0 to {}",
                u32::MAX
            ))
        })
}

fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    let value = if empty {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(bytes)
            .map_err(|error| ApiError::BadRequest(format!("the body is not JSON: {error}")))?
    };
    // Every body is an object; serde would also take a struct as an array of its fields.
    if !(value.is_object() || value.is_null()) {
        return Err(ApiError::Unprocessable(
            "the body must be a JSON object".into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        if empty {
            ApiError::BadRequest("the request needs a JSON body".into())
        } else {
            ApiError::Unprocessable(error.to_string())
        }
    })
}

/// The routes that take a JSON body, as [`parse_route_body`] numbers them.
#[doc(hidden)]
pub const BODY_ROUTES: [&str; 11] = [
    "POST /api/v1/ils/checkout",
    "POST /api/v1/ils/checkin",
    "POST /api/v1/ils/renew",
    "POST /api/v1/ils/patrons/validate",
    "POST /api/v1/ils/patrons/account",
    "POST /api/v1/devices/{device}/outputs",
    "POST /api/v1/alarms/{alarm_id}/ack",
    "POST /api/v1/worklist/{id}/resolve",
    "POST /api/v1/stations/{station}/patron",
    "POST /api/v1/stations/{station}/finish",
    "PUT /api/v1/stations/{station}/sort-plan",
];

/// Parses `bytes` as the body of `BODY_ROUTES[route % BODY_ROUTES.len()]`, as that
/// route's extractor does: `Ok` when its handler would get the body, otherwise the error
/// the client would get. For the `api_body` fuzz target (hidden: not an API of the crate).
#[doc(hidden)]
pub fn parse_route_body(route: usize, bytes: &[u8]) -> Result<(), ApiError> {
    match route % BODY_ROUTES.len() {
        0 | 2 => parse_body::<bridge::CheckoutRequest>(bytes).map(drop),
        1 => parse_body::<bridge::CheckinRequest>(bytes).map(drop),
        3 | 4 | 8 => parse_body::<bridge::PatronRequest>(bytes).map(drop),
        5 => parse_body::<devices::OutputsRequest>(bytes).map(drop),
        6 => parse_body::<Option<AckBody>>(bytes).map(drop),
        7 => parse_body::<ResolveBody>(bytes).map(drop),
        9 => parse_body::<Option<FinishBody>>(bytes).map(drop),
        _ => parse_body::<SortPlanBody>(bytes).map(drop),
    }
}

#[cfg(test)]
mod tests;
