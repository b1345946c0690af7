//! Outbox cursors: how far each northbound consumer has delivered the journal.

use std::time::SystemTime;

use serde::Serialize;
use sqlx::Row;

use super::journal::{journal_row, millis};
use super::{JournalRow, Store, StoreError};

/// One consumer's cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CursorRow {
    /// The consumer (`mqtt`, `webhook:<name>`).
    pub consumer: String,
    /// The id of the last event it delivered.
    pub last_id: i64,
    /// When it last moved, ms since the Unix epoch (RFC 3339 `updated` in JSON).
    #[serde(rename = "updated", serialize_with = "crate::rfc3339::ms")]
    pub updated_ms: i64,
    /// Events it skipped because it lagged more than `northbound.max_lag_events`.
    pub skipped: i64,
}

impl Store {
    /// A consumer's cursor; created at `start` when it has none yet.
    pub async fn cursor_or_create(&self, consumer: &str, start: i64) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO outbox_cursors (consumer, last_id, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer) DO NOTHING",
        )
        .bind(consumer)
        .bind(start)
        .bind(millis(SystemTime::now()))
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT last_id FROM outbox_cursors WHERE consumer = $1")
            .bind(consumer)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("last_id")?)
    }

    /// Moves a consumer's cursor forward to `last_id` (never back); committed on return.
    pub async fn advance_cursor(&self, consumer: &str, last_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox_cursors SET last_id = MAX(last_id, $2), updated_ms = $3 WHERE consumer = $1",
        )
        .bind(consumer)
        .bind(last_id)
        .bind(millis(SystemTime::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every cursor.
    pub async fn cursors(&self) -> Result<Vec<CursorRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT consumer, last_id, updated_ms, skipped FROM outbox_cursors ORDER BY consumer",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CursorRow {
                    consumer: row.try_get("consumer")?,
                    last_id: row.try_get("last_id")?,
                    updated_ms: row.try_get("updated_ms")?,
                    skipped: row.try_get("skipped")?,
                })
            })
            .collect()
    }

    /// Removes a consumer that is no longer configured (it holds pruning back otherwise).
    pub async fn drop_cursor(&self, consumer: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox_cursors WHERE consumer = $1")
            .bind(consumer)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Journal rows with an id above `after`, oldest first, at most `limit`, optionally of
    /// one kind, one station, and at or after / before times (ms since the epoch).
    pub async fn journal_after(
        &self,
        after: i64,
        limit: i64,
        filter: &JournalFilter<'_>,
    ) -> Result<Vec<JournalRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, device, station, payload FROM journal \
             WHERE id > $1 AND ($3 IS NULL OR kind = $3) AND ($4 IS NULL OR station = $4) \
             AND ($5 IS NULL OR at_ms >= $5) AND ($6 IS NULL OR at_ms < $6) \
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .bind(filter.kind)
        .bind(filter.station)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(journal_row).collect()
    }

    /// The newest `limit` journal rows that pass `filter`, oldest first (the API's events
    /// listing without a cursor: "what happened lately", then follow with
    /// [`Store::journal_after`]).
    pub async fn journal_tail(
        &self,
        limit: i64,
        filter: &JournalFilter<'_>,
    ) -> Result<Vec<JournalRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, device, station, payload FROM journal \
             WHERE ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR station = $3) \
             AND ($4 IS NULL OR at_ms >= $4) AND ($5 IS NULL OR at_ms < $5) \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .bind(filter.kind)
        .bind(filter.station)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .fetch_all(self.pool())
        .await?;
        let mut rows = rows
            .iter()
            .map(journal_row)
            .collect::<Result<Vec<_>, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// Consumers more than `max_lag` events behind the journal's newest id skip their
    /// oldest events (so a dead consumer cannot hold the whole journal); returns each
    /// skipped consumer with how many events it lost.
    pub async fn trim_lagging_cursors(
        &self,
        max_lag: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let newest = self.journal_last_id().await?.unwrap_or(0);
        let floor = newest.saturating_sub(max_lag);
        let mut trimmed = Vec::new();
        for cursor in self.cursors().await? {
            if cursor.last_id < floor {
                let skipped = floor - cursor.last_id;
                sqlx::query(
                    "UPDATE outbox_cursors SET last_id = $2, skipped = skipped + $3, updated_ms = $4 \
                     WHERE consumer = $1",
                )
                .bind(&cursor.consumer)
                .bind(floor)
                .bind(skipped)
                .bind(millis(SystemTime::now()))
                .execute(self.pool())
                .await?;
                trimmed.push((cursor.consumer, skipped));
            }
        }
        Ok(trimmed)
    }
}

/// Filters of [`Store::journal_after`]; `None` matches everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournalFilter<'a> {
    /// Only this kind.
    pub kind: Option<&'a str>,
    /// Only this station.
    pub station: Option<&'a str>,
    /// At or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Before this time (ms since the epoch).
    pub until_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JournalEntry;

    #[tokio::test]
    async fn cursors_only_move_forward_and_hold_back_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("o.db")).await.unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let entries: Vec<JournalEntry> = (0..5)
            .map(|n| JournalEntry {
                at: old,
                ..JournalEntry::new("test", serde_json::json!({ "n": n }))
            })
            .collect();
        store.append(&entries).await.unwrap();
        assert_eq!(store.cursor_or_create("mqtt", 2).await.unwrap(), 2);
        assert_eq!(
            store.cursor_or_create("mqtt", 0).await.unwrap(),
            2,
            "an existing cursor stays"
        );
        store.advance_cursor("mqtt", 1).await.unwrap();
        assert_eq!(store.cursors().await.unwrap()[0].last_id, 2, "never back");
        // Everything is old, but rows after the cursor are not delivered yet: kept.
        assert_eq!(store.prune_journal(SystemTime::now()).await.unwrap(), 2);
        let left = store
            .journal_after(0, 10, &JournalFilter::default())
            .await
            .unwrap();
        assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4, 5]);
        // A consumer 3 behind with a cap of 1 skips 2.
        assert_eq!(
            store.trim_lagging_cursors(1).await.unwrap(),
            [("mqtt".to_owned(), 2)]
        );
        assert_eq!(store.cursors().await.unwrap()[0].skipped, 2);
        store.drop_cursor("mqtt").await.unwrap();
        assert_eq!(store.prune_journal(SystemTime::now()).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn journal_after_filters_by_kind_station_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.db")).await.unwrap();
        let at = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let entry = |kind: &str, station: Option<&str>, s| JournalEntry {
            at: at(s),
            station: station.map(str::to_owned),
            ..JournalEntry::new(kind, serde_json::json!({}))
        };
        store
            .append(&[
                entry("gate_alarm", Some("exit"), 10),
                entry("tag_arrived", Some("exit"), 20),
                entry("gate_alarm", Some("side"), 30),
                entry("gate_alarm", Some("exit"), 40),
            ])
            .await
            .unwrap();
        let ids = |rows: Vec<JournalRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        let filter = JournalFilter {
            kind: Some("gate_alarm"),
            station: Some("exit"),
            ..JournalFilter::default()
        };
        assert_eq!(
            ids(store.journal_after(0, 10, &filter).await.unwrap()),
            [1, 4]
        );
        assert_eq!(ids(store.journal_after(1, 10, &filter).await.unwrap()), [4]);
        let window = JournalFilter {
            since_ms: Some(20_000),
            until_ms: Some(40_000),
            ..JournalFilter::default()
        };
        assert_eq!(
            ids(store.journal_after(0, 10, &window).await.unwrap()),
            [2, 3]
        );
        assert_eq!(ids(store.journal_tail(1, &filter).await.unwrap()), [4]);
        assert_eq!(
            ids(store
                .journal_tail(3, &JournalFilter::default())
                .await
                .unwrap()),
            [2, 3, 4]
        );
        assert_eq!(
            ids(store
                .journal_after(0, 1, &JournalFilter::default())
                .await
                .unwrap()),
            [1]
        );
    }
}
