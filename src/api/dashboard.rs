//! The web dashboard (issue 13): three static files embedded in the binary and served at
//! `/`, and the two routes only it needed — statistics from the journal's hourly rollups
//! and "borrowed together" from its self-check sessions.
//!
//! The page itself holds no data and is public, like the OpenAPI document: it asks for a
//! token and sends it as `Authorization: Bearer` on every API call, the live stream
//! included (read with `fetch()`, not `EventSource`, which cannot set headers), so a token
//! never appears in a URL, a log line or the browser's history. It stays in the tab's
//! `sessionStorage` only.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::{ApiState, Params, PathParam};
use crate::store::{HOUR_MS, StatsRow};

/// The dashboard's page.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// Its style sheet.
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
/// Its script (no framework; charts are SVG drawn by it).
pub const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// What the browser may do with the page: only this origin's script, style and API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's files at `/`, `/dashboard.css` and `/dashboard.js` (public, outside
/// the OpenAPI document: they hold no data).
pub fn pages() -> Router<ApiState> {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard.css",
            get(|| async { page(DASHBOARD_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/dashboard.js",
            get(|| async { page(DASHBOARD_JS, "text/javascript; charset=utf-8") }),
        )
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on each load, so an upgraded daemon's page is never mixed with old files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Query of `GET /api/v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The first bucket holds this time (RFC 3339; default: 24 hours or 30 days before
    /// `to`). At most 5000 buckets are answered, the newest: an earlier `from` moves up.
    /// After `to`: no bucket.
    #[param(format = DateTime)]
    from: Option<String>,
    /// The last bucket ends at or after this time (RFC 3339; default: now).
    #[param(format = DateTime)]
    to: Option<String>,
    /// `hour` (default) or `day`.
    #[param(pattern = "^(hour|day)$")]
    bucket: Option<String>,
    /// The UTC offset days start at and times are shown in, like `+01:00` (default `Z`).
    /// A fixed offset: a range across a daylight saving change keeps one.
    #[param(pattern = r"^(Z|[+-][0-9]{2}:[0-9]{2})$")]
    utc_offset: Option<String>,
}

/// One bucket's figures.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct StatsBucket {
    /// When the bucket starts (RFC 3339, in the asked offset).
    #[schema(format = DateTime)]
    start: String,
    /// Items lent (checked out, renewed, queued offline), at stations and SIP2 kiosks.
    loans: i64,
    /// Items taken back (checked in, queued offline).
    returns: i64,
    /// Gate alarms.
    alarms: i64,
    /// People in, as the gates counted them.
    people_in: i64,
    /// People out.
    people_out: i64,
    /// Counting intervals the gates closed.
    people_intervals: i64,
    /// Calls the library system answered (returns, kiosks' transactions).
    ils_calls: i64,
    /// Their mean time, in ms (`null` without calls).
    ils_mean_ms: Option<f64>,
    /// Their longest time, in ms (`null` without calls).
    ils_max_ms: Option<f64>,
    /// The library system went offline, or an outcome was unknown or failed.
    ils_errors: i64,
}

/// Items a return station sent to one sort bin within the range.
#[derive(Debug, Serialize, ToSchema)]
pub struct BinFill {
    /// The return station.
    station: String,
    /// The bin's name.
    bin: String,
    /// Items sent to it.
    items: i64,
}

/// Statistics over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    /// The first bucket's start (RFC 3339): `from` rounded down to a bucket's edge (or
    /// moved up to keep within 5000 buckets).
    #[schema(format = DateTime)]
    from: String,
    /// The end of the last bucket (RFC 3339).
    #[schema(format = DateTime)]
    to: String,
    /// `hour` or `day`.
    bucket: String,
    /// The offset of the times and days (`Z` or `+01:00`).
    utc_offset: String,
    /// Every bucket of the range, oldest first (empty ones too).
    buckets: Vec<StatsBucket>,
    /// Sort-bin fill over the whole range, by station and bin.
    bins: Vec<BinFill>,
}

/// The most buckets one answer holds (five years of days; 208 days of hours).
pub const MAX_BUCKETS: i64 = 5000;

/// The `utc_offset` parameter, in seconds east of UTC.
fn parse_offset(text: Option<&str>) -> Result<UtcOffset, ApiError> {
    let bad = |text: &str| {
        ApiError::BadRequest(format!(
            "utc_offset must be `Z` or like `+01:00` or `-05:00` (at most ±23:59), got `{text}`"
        ))
    };
    let Some(text) = text.filter(|t| *t != "Z") else {
        return Ok(UtcOffset::UTC);
    };
    let bytes = text.as_bytes();
    if bytes.len() != 6 || !matches!(bytes[0], b'+' | b'-') || bytes[3] != b':' {
        return Err(bad(text));
    }
    let number = |range: std::ops::Range<usize>| {
        text.get(range)
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<i8>().ok())
    };
    let (Some(hours), Some(minutes)) = (number(1..3), number(4..6)) else {
        return Err(bad(text));
    };
    if hours > 23 || minutes > 59 {
        return Err(bad(text));
    }
    let sign = if bytes[0] == b'-' { -1 } else { 1 };
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad(text))
}

fn parse_time(text: Option<&str>, param: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::BadRequest(format!(
            "{param} must be an RFC 3339 time like 2026-12-01T08:00:00Z: {e}"
        ))
    })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("{param} is out of range")))
}

/// `at_ms` as RFC 3339 in `offset` (whole seconds: buckets start on hours).
pub fn rfc3339_at(at_ms: i64, offset: UtcOffset) -> String {
    OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000))
        .map(|at| at.to_offset(offset))
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The range's bucket edges: `from` rounded down and `to` rounded up to a bucket edge of
/// `offset`.
fn edges(from_ms: i64, to_ms: i64, bucket_ms: i64, offset_ms: i64) -> (i64, i64) {
    let down = |at: i64| (at + offset_ms).div_euclid(bucket_ms) * bucket_ms - offset_ms;
    let from = down(from_ms);
    let to = if down(to_ms) == to_ms {
        to_ms
    } else {
        down(to_ms) + bucket_ms
    };
    (from, to.max(from + bucket_ms))
}

/// Every bucket of `from..to`, with the store's figures where it has some.
pub fn fold_stats(
    rows: &[StatsRow],
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    offset: UtcOffset,
) -> Vec<StatsBucket> {
    let count = usize::try_from((to_ms - from_ms) / bucket_ms).unwrap_or(0);
    let mut buckets: Vec<StatsBucket> = (0..count)
        .map(|n| StatsBucket {
            start: rfc3339_at(from_ms + i64::try_from(n).unwrap_or(0) * bucket_ms, offset),
            ..StatsBucket::default()
        })
        .collect();
    let ms = |us: i64| {
        #[allow(clippy::cast_precision_loss)] // µs far below 2^52
        let us = us as f64;
        (us / 10.0).round() / 100.0
    };
    for row in rows {
        let Some(bucket) = usize::try_from((row.bucket_ms - from_ms) / bucket_ms)
            .ok()
            .filter(|_| row.bucket_ms >= from_ms)
            .and_then(|index| buckets.get_mut(index))
        else {
            continue;
        };
        bucket.loans = row.loans;
        bucket.returns = row.returns;
        bucket.alarms = row.alarms;
        bucket.people_in = row.people_in;
        bucket.people_out = row.people_out;
        bucket.people_intervals = row.people_intervals;
        bucket.ils_calls = row.ils_calls;
        bucket.ils_errors = row.ils_errors;
        if row.ils_calls > 0 {
            bucket.ils_mean_ms = Some(ms(row.ils_us / row.ils_calls));
            bucket.ils_max_ms = Some(ms(row.ils_peak_us));
        }
    }
    buckets
}

/// Loans, returns and alarms, people in and out, ILS time and errors per hour or per
/// local day, and sort-bin fill: from hourly rollups of the journal (kept by the store
/// beside it, and beyond the journal's pruning), so a year answers as fast as a day.
#[utoipa::path(get, path = "/api/v1/stats", tag = "events",
    security(("bearer" = ["read"])),
    params(StatsQuery),
    responses((status = 200, description = "Figures per bucket, and bin fill", body = StatsBody)))]
pub(super) async fn stats(
    State(state): State<ApiState>,
    Params(query): Params<StatsQuery>,
) -> Result<Json<StatsBody>, ApiError> {
    let (bucket, bucket_ms, default_span) = match query.bucket.as_deref() {
        None | Some("hour") => ("hour", HOUR_MS, 24),
        Some("day") => ("day", 24 * HOUR_MS, 30),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "bucket must be `hour` or `day`, got `{other}`"
            )));
        }
    };
    let offset = parse_offset(query.utc_offset.as_deref())?;
    let offset_ms = i64::from(offset.whole_seconds()) * 1000;
    let to_ms = parse_time(query.to.as_deref(), "to")?.unwrap_or_else(crate::store::millis_now);
    let from_ms = parse_time(query.from.as_deref(), "from")?
        .unwrap_or_else(|| to_ms.saturating_sub(default_span * bucket_ms - 1));
    // Nothing lies between a `from` after `to`: no bucket (a schema-valid question gets an
    // answer, not an error).
    let (from_ms, to_ms) = if from_ms > to_ms {
        let (from, _) = edges(from_ms, from_ms, bucket_ms, offset_ms);
        (from, from)
    } else {
        let (from, to) = edges(from_ms, to_ms, bucket_ms, offset_ms);
        // At most MAX_BUCKETS, the newest: an earlier `from` moves up (the answer's `from`
        // says where it starts).
        (from.max(to - MAX_BUCKETS * bucket_ms), to)
    };
    let rows = state
        .store
        .stats(from_ms, to_ms, bucket_ms, offset_ms)
        .await?;
    let buckets = fold_stats(&rows, from_ms, to_ms, bucket_ms, offset);
    let bins = state.store.bin_fill(from_ms, to_ms).await?;
    Ok(Json(StatsBody {
        from: rfc3339_at(from_ms, offset),
        to: rfc3339_at(to_ms, offset),
        bucket: bucket.to_owned(),
        utc_offset: if offset.is_utc() {
            "Z".to_owned()
        } else {
            rfc3339_at(0, offset)[19..].to_owned()
        },
        buckets,
        bins: bins
            .into_iter()
            .map(|b| BinFill {
                station: b.station,
                bin: b.bin,
                items: b.items,
            })
            .collect(),
    }))
}

/// Query of `GET /api/v1/items/{item}/borrowed-together`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TogetherQuery {
    /// How many items (1–100, default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// An item borrowed with the asked one.
#[derive(Debug, Serialize, ToSchema)]
pub struct TogetherItem {
    /// The item.
    item: String,
    /// Its title, as the library system last gave it.
    title: Option<String>,
    /// Self-check sessions in which both were borrowed.
    sessions: i64,
}

/// What was borrowed with an item.
#[derive(Debug, Serialize, ToSchema)]
pub struct TogetherBody {
    /// The item asked about.
    item: String,
    /// Self-check sessions in which it was borrowed.
    sessions: i64,
    /// The items most often borrowed in the same sessions, most first.
    together: Vec<TogetherItem>,
}

/// The items most often borrowed in the same self-check session as this one (from the
/// journal's own sessions: no patron is known or kept) — what a recommendation shelf
/// needs. An item never borrowed has no sessions and an empty list.
#[utoipa::path(get, path = "/api/v1/items/{item}/borrowed-together", tag = "circulation",
    security(("bearer" = ["read"])),
    params(("item" = String, Path, description = "The item (barcode)"), TogetherQuery),
    responses((status = 200, description = "Items borrowed with it", body = TogetherBody)))]
pub(super) async fn borrowed_together(
    State(state): State<ApiState>,
    PathParam(item): PathParam<String>,
    Params(query): Params<TogetherQuery>,
) -> Result<Json<TogetherBody>, ApiError> {
    let limit = match query.limit {
        None => 10,
        Some(limit @ 1..=100) => u32::try_from(limit).unwrap_or(10),
        Some(limit) => {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and 100, got {limit}"
            )));
        }
    };
    let (sessions, together) = state.store.borrowed_together(&item, limit).await?;
    Ok(Json(TogetherBody {
        item,
        sessions,
        together: together
            .into_iter()
            .map(|t| TogetherItem {
                item: t.item,
                title: t.title,
                sessions: t.sessions,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_bad_ones_name_the_parameter() {
        for (text, seconds) in [
            (None, 0),
            (Some("Z"), 0),
            (Some("+01:00"), 3600),
            (Some("-05:30"), -19800),
            (Some("+00:00"), 0),
        ] {
            assert_eq!(
                parse_offset(text).unwrap().whole_seconds(),
                seconds,
                "{text:?}"
            );
        }
        for bad in [
            "1", "+1:00", "+24:00", "+01:60", "01:00+", "+0a:00", "+01-00",
        ] {
            let error = parse_offset(Some(bad)).unwrap_err().to_string();
            assert!(
                error.contains("utc_offset") && error.contains(bad),
                "{error}"
            );
        }
    }

    #[test]
    fn ranges_snap_to_bucket_edges_of_the_offset() {
        const DAY: i64 = 24 * HOUR_MS;
        // (from, to, bucket, offset) → (from, to)
        for (given, edges_of) in [
            (
                (HOUR_MS + 5, 3 * HOUR_MS - 1, HOUR_MS, 0),
                (HOUR_MS, 3 * HOUR_MS),
            ),
            ((HOUR_MS, 3 * HOUR_MS, HOUR_MS, 0), (HOUR_MS, 3 * HOUR_MS)),
            ((5, 5, HOUR_MS, 0), (0, HOUR_MS)),
            // A day of +01:00 starts at 23:00 UTC the day before.
            (
                (DAY + 1, DAY + 2, DAY, HOUR_MS),
                (DAY - HOUR_MS, 2 * DAY - HOUR_MS),
            ),
            (
                (DAY - HOUR_MS + 1, DAY, DAY, HOUR_MS),
                (DAY - HOUR_MS, 2 * DAY - HOUR_MS),
            ),
        ] {
            let (from, to, bucket, offset) = given;
            assert_eq!(edges(from, to, bucket, offset), edges_of, "{given:?}");
        }
    }

    #[test]
    fn times_are_shown_in_the_asked_offset() {
        let plus_one = UtcOffset::from_hms(1, 0, 0).unwrap();
        assert_eq!(rfc3339_at(0, UtcOffset::UTC), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_at(0, plus_one), "1970-01-01T01:00:00+01:00");
    }
}
