//! Events as the world outside sees them ([`PublicEvent`], format v1): a listing paged by
//! journal id, the live stream (Server-Sent Events), and people counts.
//!
//! Both read the journal through the outbox, so they show what is committed, in id order.
//! Ids are stable across restarts (the journal is durable), which is what lets a client
//! resume: `GET /api/v1/events?after=<next>` for polling, `Last-Event-ID` for the stream.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::{ApiState, Params, check_limit};
use crate::northbound::event::{PublicEvent, rfc3339};
use crate::northbound::outbox::Consumer;
use crate::store::JournalFilter;

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with an id above this (a previous page's `next`), oldest first. Without it:
    /// the newest `limit` events, oldest first.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// How many events (1–1000, default 100). More is a 400, not a clamp.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only events of this kind (`gate_alarm`, `item_returned`, …).
    kind: Option<String>,
    /// Only events of this station.
    station: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// The events, oldest first.
    events: Vec<PublicEvent>,
    /// The cursor for the next page: `after=<next>` (the last event's id; when the page
    /// is empty, the `after` given or the journal's newest id).
    next: i64,
}

/// An RFC 3339 time as ms since the Unix epoch; `param` names it in the error.
fn parse_time(text: Option<&str>, param: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "{param} must be an RFC 3339 time like 2026-12-01T08:00:00Z: {e}"
            ))
        })?;
    Ok(Some(
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    ))
}

fn check_cursor(after: Option<i64>, param: &str) -> Result<Option<i64>, ApiError> {
    match after {
        Some(id) if id < 0 => Err(ApiError::BadRequest(format!(
            "{param} must be a journal id (0 or more), got {id}"
        ))),
        other => Ok(other),
    }
}

/// Events, paged by journal id (oldest first), with a cursor for the next page.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    security(("bearer" = ["read"])),
    params(EventsQuery),
    responses((status = 200, description = "A page of events", body = EventsPage)))]
pub(super) async fn events(
    State(state): State<ApiState>,
    Params(query): Params<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    let limit = i64::from(check_limit(query.limit, 100)?);
    let after = check_cursor(query.after, "after")?;
    let since_ms = parse_time(query.since.as_deref(), "since")?;
    let until_ms = parse_time(query.until.as_deref(), "until")?;
    let filter = JournalFilter {
        kind: query.kind.as_deref(),
        station: query.station.as_deref(),
        since_ms,
        until_ms,
    };
    let rows = match after {
        Some(after) => state.store.journal_after(after, limit, &filter).await?,
        None => state.store.journal_tail(limit, &filter).await?,
    };
    let publishing = state.outbox.publishing();
    let events: Vec<PublicEvent> = rows
        .iter()
        .map(|row| PublicEvent::from_row(row, publishing))
        .collect();
    let next = match (events.last(), after) {
        (Some(last), _) => last.id,
        (None, Some(after)) => after,
        (None, None) => state.store.journal_last_id().await?.unwrap_or(0),
    };
    Ok(Json(EventsPage { events, next }))
}

/// Query of `GET /api/v1/events/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this journal id (a `Last-Event-ID` header wins over it). Without
    /// either, the stream starts with the next event.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Only events of this kind.
    kind: Option<String>,
    /// Only events of this station.
    station: Option<String>,
}

/// How many live streams may be open at once (each holds a journal reader).
pub const MAX_STREAMS: usize = 64;

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many events a stream reads from the journal at a time.
const BATCH: u32 = 256;

/// The live streams' shared limit.
pub fn stream_slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_STREAMS))
}

struct Live {
    reader: Consumer,
    buffer: VecDeque<PublicEvent>,
    kind: Option<String>,
    station: Option<String>,
    stop: CancellationToken,
    draining: bool,
    _slot: OwnedSemaphorePermit,
}

impl Live {
    fn wanted(&self, event: &PublicEvent) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == event.kind)
            && self
                .station
                .as_ref()
                .is_none_or(|s| event.station.as_ref() == Some(s))
    }
}

fn sse_event(event: &PublicEvent) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event(&event.kind)
        .data(serde_json::to_string(event).unwrap_or_default())
}

/// Live events as Server-Sent Events: `id:` the journal id, `event:` the kind, `data:` the
/// public event (JSON). Reconnect with `Last-Event-ID` (browsers do) and the stream goes
/// on after that event: no gap, no duplicate, across daemon restarts. A comment every
/// 15 s keeps idle connections open. At most 64 streams at once.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    security(("bearer" = ["read"])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the stream goes on after it"),
    ),
    responses((status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String)))]
pub(super) async fn stream(
    State(state): State<ApiState>,
    Params(query): Params<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Last-Event-ID must be a journal id (0 or more), as sent in `id:`".into(),
                    )
                })?,
        ),
    };
    let after = match last_event_id.or(check_cursor(query.after, "after")?) {
        Some(after) => after,
        None => state.store.journal_last_id().await?.unwrap_or(0),
    };
    let slot = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable(format!(
            "{MAX_STREAMS} live streams are open already; close one or poll /api/v1/events"
        ))
    })?;
    let live = Live {
        reader: state.outbox.reader(after),
        buffer: VecDeque::new(),
        kind: query.kind,
        station: query.station,
        stop: state.stop.clone(),
        draining: false,
        _slot: slot,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(event) = live.buffer.pop_front() {
                return Some((Ok(sse_event(&event)), live));
            }
            match live.reader.next(BATCH, &live.stop).await {
                Ok(Some(batch)) => {
                    let last = batch.last().map(|e| e.id);
                    let wanted: Vec<PublicEvent> =
                        batch.into_iter().filter(|e| live.wanted(e)).collect();
                    live.buffer.extend(wanted);
                    if let Some(last) = last {
                        // A reader's cursor is in memory only; this cannot fail.
                        let _ = live.reader.delivered(last).await;
                    }
                }
                // The daemon is stopping. The stop may have won the race with the wake-up
                // of the journal's last commits: read once more (a stopped reader reads
                // before it waits), then end; clients reconnect and resume.
                Ok(None) if !live.draining => live.draining = true,
                Ok(None) => return None,
                Err(error) => {
                    tracing::warn!(%error, "live event stream ended: the journal could not be read");
                    return None;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Query of `GET /api/v1/people`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeopleQuery {
    /// Count recorded intervals that closed at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// … and before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// A gate's people counts.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PeopleCounts {
    /// The gate.
    station: String,
    /// Live counts since the daemon started (`null` when the gate does not count now).
    live: Option<LivePeople>,
    /// The journal's closed intervals (`people_counted`) within `since`/`until`.
    recorded: RecordedPeople,
}

/// Live counts.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct LivePeople {
    /// In since the daemon started.
    entered_total: u64,
    /// Out since the daemon started.
    left_total: u64,
    /// In during the interval running now.
    entered_interval: u64,
    /// Out during the interval running now.
    left_interval: u64,
}

/// Counts of closed intervals, from the journal.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RecordedPeople {
    /// People in.
    entered: u64,
    /// People out.
    left: u64,
    /// Intervals counted.
    intervals: u64,
    /// When the first interval closed (RFC 3339).
    first: Option<String>,
    /// When the last interval closed (RFC 3339).
    last: Option<String>,
}

/// People counts by gate: live, and recorded in the journal (which keeps them for
/// `store.journal_keep_days`).
#[utoipa::path(get, path = "/api/v1/people", tag = "stations",
    security(("bearer" = ["read"])),
    params(PeopleQuery),
    responses((status = 200, description = "Counts by gate", body = Vec<PeopleCounts>)))]
pub(super) async fn people(
    State(state): State<ApiState>,
    Params(query): Params<PeopleQuery>,
) -> Result<Json<Vec<PeopleCounts>>, ApiError> {
    let filter = JournalFilter {
        kind: Some("people_counted"),
        station: None,
        since_ms: parse_time(query.since.as_deref(), "since")?,
        until_ms: parse_time(query.until.as_deref(), "until")?,
    };
    let mut by_gate: BTreeMap<String, PeopleCounts> = BTreeMap::new();
    for (station, gate) in state.stations.gates() {
        if let Some(people) = gate.people {
            by_gate.entry(station.clone()).or_default().live = Some(LivePeople {
                entered_total: people.entered_total,
                left_total: people.left_total,
                entered_interval: people.entered_interval,
                left_interval: people.left_interval,
            });
        }
    }
    let mut after = 0;
    loop {
        let rows = state.store.journal_after(after, 1000, &filter).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            let Some(station) = &row.station else {
                continue;
            };
            let recorded = &mut by_gate.entry(station.clone()).or_default().recorded;
            recorded.entered += row.payload["entered"].as_u64().unwrap_or(0);
            recorded.left += row.payload["left"].as_u64().unwrap_or(0);
            recorded.intervals += 1;
            let at = rfc3339(row.at_ms);
            recorded.first.get_or_insert_with(|| at.clone());
            recorded.last = Some(at);
        }
    }
    Ok(Json(
        by_gate
            .into_iter()
            .map(|(station, counts)| PeopleCounts { station, ..counts })
            .collect(),
    ))
}
