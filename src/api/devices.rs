//! Devices: their live status, and what staff may make them do — secure or unsecure a tag
//! (the site's security mode: an AFI or EAS write, always read back) and drive outputs
//! (lamps, beeper, relay). Every action is journaled (`device_action`) with who did it.
//!
//! A reader's "no" (no transponder, a status code) is a normal answer: 200 with
//! `confirmed: false` and the reader's reason. A device that is down is a 503
//! `device_unavailable`; one that does not answer in time a 504 `device_timeout`.

use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use rfidgw_driver::{
    CommandAnswer, CommandError, DeviceHandle, OutputCommand, ReadBack, Signal, Uid, WriteReport,
};
use rfidgw_tag::SecurityMode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::{ApiState, JsonBody, PathParam};
use crate::bus::Event;
use crate::northbound::event::rfc3339;

/// One device as the registry sees it now.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// The device id.
    id: String,
    /// The driver (`feig`, `3m810`, `hid`, `modbus`, `sim`, …).
    driver: String,
    /// The station it belongs to.
    station: Option<String>,
    /// `starting`, `connected`, `disconnected`, `restarting`, `stopped`.
    state: String,
    /// Whether it takes commands now.
    accepts_commands: bool,
    /// Restarts since the daemon started.
    restarts: u32,
    /// The last failure, if any.
    last_error: Option<String>,
    /// When it last reported anything (RFC 3339).
    last_event: Option<String>,
    /// When the reader last sent a good frame (RFC 3339; kept across restarts).
    last_frame: Option<String>,
    /// Tags in its field now.
    tags_present: usize,
    /// Line counters the driver reported last.
    #[schema(value_type = Object)]
    counters: serde_json::Value,
}

fn text_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn time_of(ms: Option<u64>) -> Option<String> {
    ms.and_then(|ms| i64::try_from(ms).ok()).map(rfc3339)
}

/// Every configured device: state, last frame, counters.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    security(("bearer" = ["read"])),
    responses((status = 200, description = "Every device, by id", body = Vec<DeviceView>)))]
pub(super) async fn devices(State(state): State<ApiState>) -> Json<Vec<DeviceView>> {
    Json(
        state
            .registry
            .snapshot()
            .into_iter()
            .map(|d| DeviceView {
                accepts_commands: state
                    .handles
                    .get(&d.id)
                    .is_some_and(DeviceHandle::is_running),
                driver: text_of(&d.driver),
                state: text_of(&d.state),
                last_event: time_of(d.last_event_ms),
                last_frame: time_of(d.last_frame_ms),
                counters: serde_json::to_value(d.counters).unwrap_or_default(),
                id: d.id,
                station: d.station,
                restarts: d.restarts,
                last_error: d.last_error,
                tags_present: d.tags_present,
            })
            .collect(),
    )
}

/// How a write was read back.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadBackView {
    /// `confirmed`, `differs` or `not_read`.
    result: &'static str,
    /// For `differs`: what the tag holds instead.
    found: Option<String>,
    /// For `not_read`: why.
    reason: Option<String>,
}

/// The answer to a security write.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagSecurityAnswer {
    /// The device.
    device: String,
    /// The tag.
    uid: String,
    /// `secure` or `unsecure`.
    action: &'static str,
    /// The site's security mode: `afi` or `eas`.
    mode: &'static str,
    /// What was written: the AFI (hex) or the EAS bit (`true`/`false`).
    written: String,
    /// Whether the tag holds it now (read back).
    confirmed: bool,
    /// The read-back, when the reader took the write.
    read_back: Option<ReadBackView>,
    /// Write attempts made.
    attempts: u32,
    /// The reader's refusal (`no transponder`, a status code), when it refused.
    refused: Option<String>,
}

impl TagSecurityAnswer {
    /// Takes in a write's read-back: the journal's outcome and detail.
    fn read_back(&mut self, report: WriteReport) -> (&'static str, Option<String>) {
        self.confirmed = report.confirmed();
        self.attempts = report.attempts;
        let view = match report.read_back {
            ReadBack::Confirmed => ReadBackView {
                result: "confirmed",
                found: None,
                reason: None,
            },
            ReadBack::Differs { found } => ReadBackView {
                result: "differs",
                found: Some(found),
                reason: None,
            },
            ReadBack::NotRead { reason } => ReadBackView {
                result: "not_read",
                found: None,
                reason: Some(reason),
            },
        };
        let detail = view.found.clone().or_else(|| view.reason.clone());
        self.read_back = Some(view);
        let outcome = if self.confirmed {
            "confirmed"
        } else {
            "not_confirmed"
        };
        (outcome, detail)
    }
}

/// The device a path names, or 404.
fn handle<'a>(state: &'a ApiState, device: &str) -> Result<&'a DeviceHandle, ApiError> {
    state
        .handles
        .get(device)
        .ok_or_else(|| ApiError::NotFound(format!("no device `{device}`")))
}

/// A device that gave no answer: down (503) or too slow (504); one that cannot do it (409).
fn no_answer(device: &str, error: &CommandError) -> ApiError {
    match error {
        CommandError::NotRunning | CommandError::Line(_) => {
            ApiError::DeviceUnavailable(format!("device `{device}`: {error}"))
        }
        CommandError::Expired => ApiError::DeviceTimeout(format!("device `{device}`: {error}")),
        CommandError::Unsupported(_) => ApiError::Conflict(format!("device `{device}`: {error}")),
    }
}

fn journal(state: &ApiState, event: Event) {
    if let Some(events) = state.events.upgrade() {
        let _ = events.try_send(event);
    }
}

async fn write_security(
    state: &ApiState,
    caller: &Caller,
    (device, uid): (String, String),
    secure: bool,
) -> Result<Json<TagSecurityAnswer>, ApiError> {
    let handle = handle(state, &device)?;
    let tag = Uid::from_hex(&uid)
        .ok()
        .filter(|t| t.as_bytes().len() <= 64)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("`{uid}` is not a tag UID (hex, at most 64 bytes)"))
        })?;
    let security = state.security;
    let (mode, written) = match security.mode {
        SecurityMode::Afi => (
            "afi",
            rfidgw_driver::hex_serde::show(if secure {
                security.secured_afi
            } else {
                security.unsecured_afi
            }),
        ),
        SecurityMode::Eas => ("eas", secure.to_string()),
        other => {
            return Err(ApiError::Conflict(format!(
                "the site's security mode ({}) keeps the state off the tag; tags.security.mode must be \"afi\" or \"eas\" for this",
                text_of(&other)
            )));
        }
    };
    let command = crate::station::owed::security_command(&security, &tag, secure)
        .ok_or_else(|| ApiError::Conflict("the site's security mode writes no tag".into()))?;
    let action = if secure { "secure" } else { "unsecure" };
    let result = handle.call(command, state.command_within).await;
    let mut answer = TagSecurityAnswer {
        device: device.clone(),
        uid: tag.to_string(),
        action,
        mode,
        written,
        confirmed: false,
        read_back: None,
        attempts: 0,
        refused: None,
    };
    let (outcome, detail) = match result {
        Ok(Ok(CommandAnswer::Written(report))) => answer.read_back(report),
        Ok(Ok(other)) => (
            "not_confirmed",
            Some(format!("unexpected answer {other:?}")),
        ),
        Ok(Err(refusal)) => {
            answer.refused = Some(refusal.to_string());
            ("refused", answer.refused.clone())
        }
        Err(error) => {
            journal(
                state,
                Event::DeviceAction {
                    station: state.registry.station_of(&device),
                    device: device.clone(),
                    action,
                    uid: Some(answer.uid.clone()),
                    outcome: "failed",
                    detail: Some(error.to_string()),
                    by: caller.name.clone(),
                },
            );
            return Err(no_answer(&device, &error));
        }
    };
    tracing::info!(device = %device, uid = %answer.uid, action, outcome, by = %caller.name, "tag security written through the API");
    journal(
        state,
        Event::DeviceAction {
            station: state.registry.station_of(&device),
            device,
            action,
            uid: Some(answer.uid.clone()),
            outcome,
            detail,
            by: caller.name.clone(),
        },
    );
    Ok(Json(answer))
}

/// Secures a tag on a reader (AFI or EAS per `tags.security.mode`), read back.
#[utoipa::path(post, path = "/api/v1/devices/{device}/tags/{uid}/secure", tag = "devices",
    security(("bearer" = ["operate"])),
    params(
        ("device" = String, Path, description = "The reader's id"),
        ("uid" = String, Path, description = "The tag's UID in hex (`E004…`)", pattern = "^([0-9A-Fa-f]{2}){1,64}$"),
    ),
    responses((status = 200, description = "The reader answered (see `confirmed`)", body = TagSecurityAnswer)))]
pub(super) async fn secure(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    PathParam(ids): PathParam<(String, String)>,
) -> Result<Json<TagSecurityAnswer>, ApiError> {
    write_security(&state, &caller, ids, true).await
}

/// Unsecures a tag on a reader (AFI or EAS per `tags.security.mode`), read back.
#[utoipa::path(post, path = "/api/v1/devices/{device}/tags/{uid}/unsecure", tag = "devices",
    security(("bearer" = ["operate"])),
    params(
        ("device" = String, Path, description = "The reader's id"),
        ("uid" = String, Path, description = "The tag's UID in hex (`E004…`)", pattern = "^([0-9A-Fa-f]{2}){1,64}$"),
    ),
    responses((status = 200, description = "The reader answered (see `confirmed`)", body = TagSecurityAnswer)))]
pub(super) async fn unsecure(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    PathParam(ids): PathParam<(String, String)>,
) -> Result<Json<TagSecurityAnswer>, ApiError> {
    write_security(&state, &caller, ids, false).await
}

/// A signal emitter's state.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalName {
    /// Left as it is.
    #[default]
    Unchanged,
    /// Steadily on.
    On,
    /// Off.
    Off,
    /// Flashing.
    Flash,
}

impl From<SignalName> for Signal {
    fn from(signal: SignalName) -> Self {
        match signal {
            SignalName::Unchanged => Self::Unchanged,
            SignalName::On => Self::On,
            SignalName::Off => Self::Off,
            SignalName::Flash => Self::Flash,
        }
    }
}

/// How long beeper and lamps keep a state when the request does not say.
const DEFAULT_SIGNAL: Duration = Duration::from_secs(3);

/// The longest an output may be driven through the API.
const MAX_OUTPUT_MS: u32 = 60_000;

/// Body of `POST /api/v1/devices/{device}/outputs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputsRequest {
    /// The beeper.
    #[serde(default)]
    beeper: SignalName,
    /// The red lamp.
    #[serde(default)]
    red: SignalName,
    /// The green lamp.
    #[serde(default)]
    green: SignalName,
    /// How long beeper and lamps keep this state, in ms (1–60000; 3000 when one of them
    /// changes and this is not given).
    #[schema(minimum = 1, maximum = 60000)]
    #[serde(default, deserialize_with = "super::whole_u32")]
    signal_ms: Option<u32>,
    /// How long the relay is switched on, in ms (1–60000).
    #[schema(minimum = 1, maximum = 60000)]
    #[serde(default, deserialize_with = "super::whole_u32")]
    relay_ms: Option<u32>,
}

/// The answer to an output command.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputsAnswer {
    /// The device.
    device: String,
    /// Whether the device carried it out.
    done: bool,
    /// The device's refusal, when it refused.
    refused: Option<String>,
}

fn duration(ms: Option<u32>, field: &str) -> Result<Option<Duration>, ApiError> {
    match ms {
        None => Ok(None),
        Some(ms) if (1..=MAX_OUTPUT_MS).contains(&ms) => {
            Ok(Some(Duration::from_millis(u64::from(ms))))
        }
        Some(ms) => Err(ApiError::Unprocessable(format!(
            "`{field}` must be 1–{MAX_OUTPUT_MS} ms, got {ms}"
        ))),
    }
}

/// Drives a device's outputs: lamps and beeper for `signal_ms`, the relay for `relay_ms`.
#[utoipa::path(post, path = "/api/v1/devices/{device}/outputs", tag = "devices",
    security(("bearer" = ["operate"])),
    params(("device" = String, Path, description = "The device's id")),
    request_body = OutputsRequest,
    responses((status = 200, description = "The device answered", body = OutputsAnswer)))]
pub(super) async fn outputs(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    PathParam(device): PathParam<String>,
    JsonBody(body): JsonBody<OutputsRequest>,
) -> Result<Json<OutputsAnswer>, ApiError> {
    let handle = handle(&state, &device)?;
    let command = OutputCommand {
        beeper: body.beeper.into(),
        red: body.red.into(),
        green: body.green.into(),
        signal_for: duration(body.signal_ms, "signal_ms")?,
        relay_for: duration(body.relay_ms, "relay_ms")?,
    };
    let mut command = command;
    let signals = [command.beeper, command.red, command.green];
    let changes = signals.iter().any(|s| *s != Signal::Unchanged);
    if changes && command.signal_for.is_none() {
        command.signal_for = Some(DEFAULT_SIGNAL);
    }
    if !changes && command.relay_for.is_none() {
        // Nothing to change: nothing is sent.
        return Ok(Json(OutputsAnswer {
            device,
            done: true,
            refused: None,
        }));
    }
    let result = handle.output(command, state.command_within).await;
    let (answer, outcome) = match result {
        Ok(Ok(_)) => (
            OutputsAnswer {
                device: device.clone(),
                done: true,
                refused: None,
            },
            "done",
        ),
        Ok(Err(refusal)) => (
            OutputsAnswer {
                device: device.clone(),
                done: false,
                refused: Some(refusal.to_string()),
            },
            "refused",
        ),
        Err(error) => {
            journal(
                &state,
                Event::DeviceAction {
                    station: state.registry.station_of(&device),
                    device: device.clone(),
                    action: "outputs",
                    uid: None,
                    outcome: "failed",
                    detail: Some(error.to_string()),
                    by: caller.name.clone(),
                },
            );
            return Err(no_answer(&device, &error));
        }
    };
    journal(
        &state,
        Event::DeviceAction {
            station: state.registry.station_of(&device),
            device,
            action: "outputs",
            uid: None,
            outcome,
            detail: answer.refused.clone(),
            by: caller.name.clone(),
        },
    );
    Ok(Json(answer))
}
