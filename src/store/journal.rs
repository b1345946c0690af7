//! The event journal: an append-only table of everything the daemon handled.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// An event on its way into the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalEntry {
    /// When it happened.
    pub at: SystemTime,
    /// What kind of event (`tag_arrived`, `device_failed`, …).
    pub kind: String,
    /// The device it came from, if any.
    pub device: Option<String>,
    /// The station that device belongs to, if any.
    pub station: Option<String>,
    /// The event's data.
    pub payload: serde_json::Value,
}

impl JournalEntry {
    /// An entry of `kind` happening now, from no particular device.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            at: SystemTime::now(),
            kind: kind.into(),
            device: None,
            station: None,
            payload,
        }
    }
}

/// A journal row as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalRow {
    /// Row id, increasing.
    pub id: i64,
    /// Milliseconds since the Unix epoch (RFC 3339 `time` in JSON, as in public events).
    #[serde(rename = "time", serialize_with = "crate::rfc3339::ms")]
    pub at_ms: i64,
    /// What kind of event.
    pub kind: String,
    /// The device, if any.
    pub device: Option<String>,
    /// The station, if any.
    pub station: Option<String>,
    /// The event's data.
    pub payload: serde_json::Value,
}

pub(crate) fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Store {
    /// Appends `entries` in one transaction and returns the id of the last one.
    ///
    /// When this returns `Ok`, the entries are on disk (`synchronous=FULL`).
    pub async fn append(&self, entries: &[JournalEntry]) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut last = None;
        for entry in entries {
            let row = sqlx::query(
                "INSERT INTO journal (at_ms, kind, device, station, payload) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(millis(entry.at))
            .bind(&entry.kind)
            .bind(&entry.device)
            .bind(&entry.station)
            .bind(entry.payload.to_string())
            .fetch_one(&mut *tx)
            .await?;
            last = Some(row.try_get::<i64, _>(0)?);
        }
        tx.commit().await?;
        Ok(last)
    }

    /// The newest `limit` rows, newest first, optionally only of one `kind`.
    pub async fn recent(
        &self,
        limit: i64,
        kind: Option<&str>,
    ) -> Result<Vec<JournalRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, device, station, payload FROM journal \
             WHERE ($1 IS NULL OR kind = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(kind)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(journal_row).collect()
    }

    /// Rows of the given kinds with an id above `after`, oldest first (at most 10000).
    pub async fn since(&self, after: i64, kinds: &[&str]) -> Result<Vec<JournalRow>, StoreError> {
        let mut found = Vec::new();
        for kind in kinds {
            let rows = sqlx::query(
                "SELECT id, at_ms, kind, device, station, payload FROM journal \
                 WHERE kind = $1 AND id > $2 ORDER BY id LIMIT 10000",
            )
            .bind(kind)
            .bind(after)
            .fetch_all(self.pool())
            .await?;
            for row in rows {
                found.push(journal_row(&row)?);
            }
        }
        found.sort_by_key(|r| r.id);
        Ok(found)
    }

    /// Whether a gate alarm with this id is in the journal.
    pub async fn alarm_exists(&self, alarm_id: &str) -> Result<bool, StoreError> {
        // JSON lookup: SQLite's json_extract (PostgreSQL would use `payload::json ->>`).
        let row = sqlx::query(
            "SELECT COUNT(*) FROM journal WHERE kind = 'gate_alarm' \
             AND json_extract(payload, '$.alarm_id') = $1",
        )
        .bind(alarm_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// The id of the newest row, if any.
    pub async fn journal_last_id(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(id) FROM journal")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Deletes rows older than `cutoff` that every outbox consumer has delivered; returns
    /// how many went. Run boundaries (`daemon_started`, `daemon_stopped`) stay: the next
    /// start tells a clean stop from an unclean one by them, however long a run lasted.
    pub async fn prune_journal(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM journal WHERE at_ms < $1 \
             AND kind NOT IN ('daemon_started', 'daemon_stopped') \
             AND id <= COALESCE((SELECT MIN(last_id) FROM outbox_cursors), 9223372036854775807)",
        )
        .bind(millis(cutoff))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// How many rows the journal holds.
    pub async fn journal_len(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM journal")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }
}

pub(crate) fn journal_row(row: &sqlx::sqlite::SqliteRow) -> Result<JournalRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let payload: String = row.try_get("payload")?;
    let kind: String = row.try_get("kind")?;
    let mut payload: serde_json::Value =
        serde_json::from_str(&payload).map_err(|source| StoreError::Payload { id, source })?;
    // Rows written before kinds were unified carry a device event's own tag (`card`,
    // `health`) in the payload: the row's kind is the one name.
    if let Some(map) = payload.as_object_mut()
        && map.contains_key("kind")
    {
        map.insert("kind".into(), serde_json::Value::String(kind.clone()));
    }
    Ok(JournalRow {
        id,
        at_ms: row.try_get("at_ms")?,
        kind,
        device: row.try_get("device")?,
        station: row.try_get("station")?,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn appended_entries_come_back_newest_first_with_their_fields() {
        let (_dir, store) = store().await;
        let mut tag = JournalEntry::new("tag_arrived", json!({"uid": "E004"}));
        tag.device = Some("gate-1".into());
        tag.station = Some("exit".into());
        let last = store
            .append(&[JournalEntry::new("daemon_started", json!({})), tag])
            .await
            .unwrap();
        assert_eq!(last, Some(2));
        let rows = store.recent(10, None).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kind, "tag_arrived");
        assert_eq!(rows[0].device.as_deref(), Some("gate-1"));
        assert_eq!(rows[0].station.as_deref(), Some("exit"));
        assert_eq!(rows[0].payload, json!({"uid": "E004"}));
        assert_eq!(rows[1].kind, "daemon_started");
        let only_tags = store.recent(10, Some("tag_arrived")).await.unwrap();
        assert_eq!(only_tags.len(), 1);
        store.close().await;
    }

    #[tokio::test]
    async fn pruning_deletes_only_rows_older_than_the_cutoff() {
        let (_dir, store) = store().await;
        let day = std::time::Duration::from_hours(24);
        let now = SystemTime::now();
        let mut old = JournalEntry::new("old", json!({}));
        old.at = now - 10 * day;
        let mut recent = JournalEntry::new("recent", json!({}));
        recent.at = now - day;
        store.append(&[old, recent]).await.unwrap();
        assert_eq!(store.prune_journal(now - 5 * day).await.unwrap(), 1);
        let kinds: Vec<_> = store
            .recent(10, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(kinds, ["recent"]);
        store.close().await;
    }

    #[tokio::test]
    async fn an_older_rows_payload_kind_reads_as_the_rows_kind_and_times_as_rfc3339() {
        let (_dir, store) = store().await;
        let mut card = JournalEntry::new("card_read", json!({"kind": "card", "number": "P1"}));
        card.at = UNIX_EPOCH + std::time::Duration::from_millis(1_796_175_269_788);
        store
            .append(&[card, JournalEntry::new("tag_arrived", json!({"uid": "E0"}))])
            .await
            .unwrap();
        let rows = store.recent(10, None).await.unwrap();
        assert_eq!(rows[1].payload["kind"], "card_read");
        assert_eq!(rows[0].payload, json!({"uid": "E0"}), "no kind is added");
        let shown = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(shown["time"], "2026-12-02T01:34:29.788Z");
        assert!(shown.get("at_ms").is_none(), "{shown}");
        store.close().await;
    }

    #[tokio::test]
    async fn an_empty_batch_writes_nothing() {
        let (_dir, store) = store().await;
        assert_eq!(store.append(&[]).await.unwrap(), None);
        assert_eq!(store.journal_len().await.unwrap(), 0);
        store.close().await;
    }
}
