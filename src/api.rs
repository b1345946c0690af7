//! The HTTP status API (axum): health, device and peer status, the recent journal.
//!
//! Read-only for now; later capabilities add their routes here. Errors map to responses
//! in one place ([`ApiError`]).

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::registry::{DeviceStatus, Registry};
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
}

/// A peer's state as the status API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The peer's name (`ils`).
    pub name: String,
    /// `online`, `connecting`, `offline`, …
    pub state: String,
    /// The last problem, without secrets.
    pub detail: Option<String>,
}

/// The daemon's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/journal", get(journal))
        .with_state(state)
}

#[derive(Serialize)]
struct StatusBody {
    version: &'static str,
    uptime_s: u64,
    devices: Vec<DeviceStatus>,
    peers: Vec<PeerStatus>,
    journal_events: i64,
}

async fn status(State(state): State<ApiState>) -> Result<Json<StatusBody>, ApiError> {
    Ok(Json(StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        devices: state.registry.snapshot(),
        peers: (state.peers)(),
        journal_events: state.store.journal_len().await?,
    }))
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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
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
