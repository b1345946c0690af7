//! The public event, format version 1: what every northbound consumer (API, SSE, MQTT,
//! webhooks) receives, made from a journal row. Documented with examples in `docs/events.md`.
//!
//! The journal keeps the daemon's internal shapes; this is the stable contract. The common
//! fields (`item`, `uid`, `reason`, `outcome`) are lifted from wherever the kind keeps them,
//! so a consumer can filter without knowing every kind; `data` carries the rest of the
//! kind's details. Patron names, PINs and passwords are never part of it; patron ids only
//! when `[northbound] patron_ids = true`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::JournalRow;

/// The format version of [`PublicEvent`].
pub const VERSION: u8 = 1;

/// Keys that may carry a patron's identity or secrets; removed from `data` at any depth.
const SECRET_KEYS: [&str; 5] = [
    "pin",
    "password",
    "patron_password",
    "patron_name",
    "name_of_patron",
];
/// Keys that carry a patron id; removed unless the site allows patron ids.
const PATRON_KEYS: [&str; 3] = ["patron", "patron_id", "hold_patron"];

/// One event as the world outside the gateway sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicEvent {
    /// The format version: `1`.
    pub v: u8,
    /// The journal id: increasing, gap-free within a store; SSE's event id, the cursor of
    /// every consumer.
    pub id: i64,
    /// When it happened, RFC 3339 in UTC with milliseconds.
    #[schema(format = DateTime)]
    pub time: String,
    /// What happened (`tag_arrived`, `gate_alarm`, `item_returned`, `item_loan`, …).
    pub kind: String,
    /// The site (`[northbound] site`).
    pub site: String,
    /// The station, when the event belongs to one.
    pub station: Option<String>,
    /// The device, when one was involved.
    pub device: Option<String>,
    /// The library item (barcode), when one was involved.
    pub item: Option<String>,
    /// The tag's UID (hex), when one was involved.
    pub uid: Option<String>,
    /// Why (`secured`, `not_on_loan`, `one_item_at_a_time`, …), when the kind says.
    pub reason: Option<String>,
    /// How it ended (`alarm`, `pass`, `checked_in`, `queued_offline`, `done`, …), when the
    /// kind says.
    pub outcome: Option<String>,
    /// The kind's own details (scrubbed of patron data).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// What a site lets out in public events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publishing {
    /// The site's name.
    pub site: String,
    /// Whether patron ids may leave.
    pub patron_ids: bool,
}

impl PublicEvent {
    /// The public form of a journal row.
    pub fn from_row(row: &JournalRow, publishing: &Publishing) -> Self {
        let payload = &row.payload;
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let pick = |paths: &[&[&str]]| {
            paths.iter().find_map(|path| {
                let mut value = payload;
                for key in *path {
                    value = value.get(key)?;
                }
                text(value).filter(|t| !t.is_empty())
            })
        };
        let item = pick(&[&["item"], &["decoded", "primary_item_id"], &["item_id"]]);
        let uid =
            pick(&[&["uid"]]).or_else(|| payload.get("uids").and_then(|u| u.get(0)).and_then(text));
        let reason = pick(&[&["decision", "reason"], &["reason"]]);
        let outcome = pick(&[&["outcome"], &["decision", "verdict"], &["state"]]);
        let mut data = payload.clone();
        if let Value::Object(map) = &mut data {
            map.remove("kind");
            // A card read's number is the patron's card.
            if row.kind == "card_read" && !publishing.patron_ids {
                map.remove("number");
            }
        }
        scrub(&mut data, publishing.patron_ids);
        Self {
            v: VERSION,
            id: row.id,
            time: rfc3339(row.at_ms),
            kind: row.kind.clone(),
            site: publishing.site.clone(),
            station: row.station.clone(),
            device: row.device.clone(),
            item,
            uid,
            reason,
            outcome,
            data,
        }
    }
}

/// Removes secrets (always) and patron ids (unless allowed) at any depth.
fn scrub(value: &mut Value, patron_ids: bool) {
    match value {
        Value::Object(map) => {
            remove_keys(map, &SECRET_KEYS);
            if !patron_ids {
                remove_keys(map, &PATRON_KEYS);
            }
            for child in map.values_mut() {
                scrub(child, patron_ids);
            }
        }
        Value::Array(items) => {
            for child in items {
                scrub(child, patron_ids);
            }
        }
        _ => {}
    }
}

fn remove_keys(map: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        map.remove(*key);
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(at_ms: i64) -> String {
    crate::rfc3339::format(at_ms)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(kind: &str, payload: Value) -> JournalRow {
        JournalRow {
            id: 42,
            at_ms: 1_796_175_269_788,
            kind: kind.into(),
            device: Some("gate-reader".into()),
            station: Some("main-exit".into()),
            payload,
        }
    }

    fn publishing(patron_ids: bool) -> Publishing {
        Publishing {
            site: "branch-1".into(),
            patron_ids,
        }
    }

    #[test]
    fn common_fields_are_lifted_from_where_each_kind_keeps_them() {
        // (kind, payload, item, uid, reason, outcome)
        let rows = [
            (
                "tag_arrived",
                json!({"uid": "E004", "decoded": {"primary_item_id": "1122"}, "decision": {"verdict": "alarm", "reason": "secured", "acted": true}}),
                Some("1122"),
                Some("E004"),
                Some("secured"),
                Some("alarm"),
            ),
            (
                "gate_alarm",
                json!({"kind": "gate_alarm", "alarm_id": "A1-1", "uid": "E004", "item": "1122", "reason": "secured"}),
                Some("1122"),
                Some("E004"),
                Some("secured"),
                None,
            ),
            (
                "item_returned",
                json!({"kind": "item_returned", "item": "I0004", "uid": "E1", "outcome": "checked_in", "bin": 3}),
                Some("I0004"),
                Some("E1"),
                None,
                Some("checked_in"),
            ),
            (
                "return_refused",
                json!({"kind": "return_refused", "uids": ["E1", "E2"], "reason": "one_item_at_a_time"}),
                None,
                Some("E1"),
                Some("one_item_at_a_time"),
                None,
            ),
            (
                "owed_write",
                json!({"kind": "owed_write", "uid": "E1", "item": "I1", "state": "done"}),
                Some("I1"),
                Some("E1"),
                None,
                Some("done"),
            ),
            (
                "daemon_started",
                json!({"kind": "daemon_started", "version": "0.1.0"}),
                None,
                None,
                None,
                None,
            ),
        ];
        for (kind, payload, item, uid, reason, outcome) in rows {
            let event = PublicEvent::from_row(&row(kind, payload), &publishing(false));
            assert_eq!(
                (
                    event.item.as_deref(),
                    event.uid.as_deref(),
                    event.reason.as_deref(),
                    event.outcome.as_deref()
                ),
                (item, uid, reason, outcome),
                "{kind}"
            );
            assert_eq!(
                (event.v, event.id, event.site.as_str()),
                (1, 42, "branch-1")
            );
            assert!(
                event.data.get("kind").is_none(),
                "{kind}: kind is not repeated in data"
            );
        }
    }

    #[test]
    fn patron_data_never_leaves_and_patron_ids_only_when_allowed() {
        let payload = json!({
            "number": "P1001",
            "deep": [{"patron": "P1001", "pin": "1234", "title": "Dune"}],
            "hold_patron": "P1003",
            "password": "x"
        });
        let closed = PublicEvent::from_row(&row("card_read", payload.clone()), &publishing(false));
        let text = serde_json::to_string(&closed).unwrap();
        for secret in ["P1001", "P1003", "1234", "password"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("Dune"));
        let open = PublicEvent::from_row(&row("card_read", payload), &publishing(true));
        let text = serde_json::to_string(&open).unwrap();
        assert!(text.contains("P1001") && text.contains("P1003"), "{text}");
        assert!(
            !text.contains("1234") && !text.contains("\"password\""),
            "{text}"
        );
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_175_269_788), "2026-12-02T01:34:29.788Z");
    }
}
