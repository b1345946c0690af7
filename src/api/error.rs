//! Every way a request can fail, mapped to a status code and one JSON shape here only:
//! `{"error": {"code": "<stable code>", "message": "<what was wrong and what to do>"}}`,
//! with `reason` added when a station or the ILS refused for a typed reason.
//!
//! The `code` is the contract (clients branch on it); the message is for people and may
//! change. The codes and their status are listed in [`ApiError::code`] and in
//! `docs/api.md`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ils::connector::IlsCallError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `uri_too_long`,
    /// `unprocessable`, `refused`, `rate_limited`, `ils_failed`, `unavailable`,
    /// `store_unavailable`, `ils_offline`, `ils_not_configured`, `device_unavailable`,
    /// `ils_outcome_unknown`, `device_timeout`.
    pub code: &'static str,
    /// For people: what was wrong, where, and what to do.
    pub message: String,
    /// A station's reason for a refusal (`wrong_pin`, `blocked`, …), when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request was wrong (query string, path, not JSON).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one the daemon does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// What the request names is not in a state (or of a kind) to do it.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `api.max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request line is longer than the API reads.
    #[error("{0}")]
    UriTooLong(String),
    /// The request was understood but not accepted: a body of the wrong shape.
    #[error("{0}")]
    Unprocessable(String),
    /// A station refused, with its reason (`wrong_pin`, `no plan …`).
    #[error("{message}")]
    Refused {
        /// For people.
        message: String,
        /// The station's own reason.
        reason: String,
    },
    /// The token used up its request budget (`api.rate_limit`).
    #[error("{message}")]
    RateLimited {
        /// For people.
        message: String,
        /// Seconds until a request will be accepted again.
        retry_after_s: u64,
    },
    /// The daemon cannot do it now (stopping, journal failing).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The library system could not be asked.
    #[error(transparent)]
    Ils(#[from] IlsCallError),
    /// No library system is configured (`[ils]`).
    #[error("no library system is configured ([ils.sip2] in the config)")]
    IlsNotConfigured,
    /// The device is not running or its line broke.
    #[error("{0}")]
    DeviceUnavailable(String),
    /// The device did not answer in time.
    #[error("{0}")]
    DeviceTimeout(String),
}

impl ApiError {
    /// The status code and the stable `code` of the JSON body.
    pub fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            // A bad request (400) with a code of its own: what is wrong is the request
            // line's length, whatever its parameters say.
            Self::UriTooLong(_) => (StatusCode::BAD_REQUEST, "uri_too_long"),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            // A business "no" (patron blocked, no such plan): the request was fine, the
            // station's state does not allow it.
            Self::Refused { .. } => (StatusCode::CONFLICT, "refused"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            // Nothing was done: safe to retry later (503).
            Self::Ils(IlsCallError::Offline(_)) => (StatusCode::SERVICE_UNAVAILABLE, "ils_offline"),
            // The request went out and its answer was lost: it may have happened. A gateway
            // timeout (504), never to be retried blindly.
            Self::Ils(IlsCallError::OutcomeUnknown(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, "ils_outcome_unknown")
            }
            // The ILS answered something unreadable: a bad gateway (502).
            Self::Ils(IlsCallError::Failed(_)) => (StatusCode::BAD_GATEWAY, "ils_failed"),
            Self::IlsNotConfigured => (StatusCode::SERVICE_UNAVAILABLE, "ils_not_configured"),
            Self::DeviceUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "device_unavailable"),
            Self::DeviceTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "device_timeout"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        if status.is_server_error() {
            tracing::warn!(error = %self, code, "API request failed");
        }
        let retry_after = match &self {
            Self::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        };
        let unauthorized = matches!(self, Self::Unauthorized(_));
        let reason = match &self {
            Self::Refused { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                reason,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if unauthorized {
            // RFC 6750 §3: the scheme a client should use.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rfidgw\""),
            );
        }
        response
    }
}

/// The answer for a route that does not exist.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; the API's routes are listed at /api/v1/openapi.json".into())
}

/// The answer for a route called with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed(
        "this route does not take this method; see /api/v1/openapi.json".into(),
    )
}
