//! How a time leaves the daemon as text: RFC 3339 in UTC with milliseconds
//! (`2026-12-02T09:15:03.112Z`), in every JSON answer, journal row and public event.
//!
//! The store keeps milliseconds since the Unix epoch (cheap to compare and index); the
//! `serialize_with` helpers here turn them into text at the edge, so that a person reading
//! the API or the journal never has to convert an epoch number.

use serde::Serializer;

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds. A time outside
/// what RFC 3339 can write (before year 0, after 9999) shows as the epoch.
pub fn format(at_ms: i64) -> String {
    let nanos = i128::from(at_ms) * 1_000_000;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .filter(|at| (0..=9999).contains(&at.year()))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Reads an RFC 3339 time (any offset) back into milliseconds since the Unix epoch.
pub fn parse(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `serialize_with` for milliseconds since the epoch (`i64`).
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
pub fn ms<S: Serializer>(at_ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at_ms))
}

/// `serialize_with` for an optional time in milliseconds since the epoch (`i64`).
pub fn opt_ms<S: Serializer>(at_ms: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
    match at_ms {
        Some(at_ms) => serializer.serialize_str(&format(*at_ms)),
        None => serializer.serialize_none(),
    }
}

/// `serialize_with` for an optional time in milliseconds since the epoch (`u64`).
pub fn opt_ms_u64<S: Serializer>(at_ms: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    let at_ms = at_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    opt_ms(&at_ms, serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_with_milliseconds_and_read_back() {
        // (ms since the epoch, as written)
        let table = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_796_175_269_788, "2026-12-02T01:34:29.788Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
        ];
        for (ms, text) in table {
            assert_eq!(format(ms), text);
            assert_eq!(parse(text), Some(ms), "{text}");
        }
        assert_eq!(format(i64::MAX), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse("2026-12-02T02:34:29.788+01:00"),
            Some(1_796_175_269_788)
        );
        assert_eq!(parse("yesterday"), None);
    }

    #[test]
    fn rows_serialize_their_times_as_text() {
        #[derive(serde::Serialize)]
        struct Row {
            #[serde(serialize_with = "ms")]
            at: i64,
            #[serde(serialize_with = "opt_ms")]
            due: Option<i64>,
            #[serde(serialize_with = "opt_ms_u64")]
            until: Option<u64>,
        }
        let row = Row {
            at: 0,
            due: None,
            until: Some(1_796_175_269_788),
        };
        assert_eq!(
            serde_json::to_value(row).unwrap(),
            serde_json::json!({"at": "1970-01-01T00:00:00.000Z", "due": null, "until": "2026-12-02T01:34:29.788Z"})
        );
    }
}
