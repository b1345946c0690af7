//! The daemon's runs as the journal records them, for an honest start after an unclean
//! stop, and read-only access for the operator commands while no daemon runs.
//!
//! A run begins with `daemon_started` and, when it stops cleanly, ends with
//! `daemon_stopped` (written after the journal's last commit). A `daemon_started` with no
//! `daemon_stopped` after it is a run that was killed, lost power or crashed: the next start
//! says so and closes what that run left open.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::journal::journal_row;
use super::{JournalRow, Store, StoreError};

/// The last run-boundary row: a start or a clean stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMark {
    /// Its journal id.
    pub id: i64,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// `daemon_started` or `daemon_stopped`.
    pub kind: String,
}

/// A tag presence a run opened and never closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenPresence {
    /// The reader.
    pub device: Option<String>,
    /// Its station.
    pub station: Option<String>,
    /// The tag.
    pub uid: String,
}

/// A self-check session a run began and never ended.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenSession {
    /// The station.
    pub station: Option<String>,
    /// The session.
    pub session: String,
    /// Whether it ran offline.
    pub offline: bool,
    /// Its `item_loan` rows so far (the receipt the patron did not get).
    pub loans: Vec<JournalRow>,
}

/// Which journal rows an operator asked for.
#[derive(Clone, Debug, Default)]
pub struct JournalSelect {
    /// Only these kinds (any when empty).
    pub kinds: Vec<String>,
    /// Only this station.
    pub station: Option<String>,
    /// Only rows at or after this time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Only rows with an id above this.
    pub after: Option<i64>,
}

impl Store {
    /// Opens an existing store for reading only, without migrating: what the operator
    /// commands do while no daemon runs (they never change the store behind its back).
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_error)?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// Closes a store opened with [`Store::open_read_only`] (no checkpoint: it cannot
    /// write).
    pub async fn close_read_only(&self) {
        self.pool.close().await;
    }

    /// The newest `daemon_started` or `daemon_stopped` row.
    pub async fn last_run_mark(&self) -> Result<Option<RunMark>, StoreError> {
        let row = sqlx::query(
            "SELECT id, at_ms, kind FROM journal \
             WHERE kind IN ('daemon_started', 'daemon_stopped') ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(RunMark {
                id: row.try_get("id")?,
                at_ms: row.try_get("at_ms")?,
                kind: row.try_get("kind")?,
            })
        })
        .transpose()
    }

    /// Whether any run ever recorded a clean stop (stores written before the marker
    /// existed have none).
    pub async fn has_clean_stops(&self) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT EXISTS (SELECT 1 FROM journal WHERE kind = 'daemon_stopped')")
                .fetch_one(self.pool())
                .await?;
        Ok(row.try_get::<bool, _>(0)?)
    }

    /// The newest row of one of `kinds` after `after`, if any.
    pub async fn last_of_kinds(
        &self,
        after: i64,
        kinds: &[&str],
    ) -> Result<Option<JournalRow>, StoreError> {
        let mut newest: Option<JournalRow> = None;
        for kind in kinds {
            let row = sqlx::query(
                "SELECT id, at_ms, kind, device, station, payload FROM journal \
                 WHERE kind = $1 AND id > $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(kind)
            .bind(after)
            .fetch_optional(self.pool())
            .await?;
            if let Some(row) = row {
                let row = journal_row(&row)?;
                if newest.as_ref().is_none_or(|n| n.id < row.id) {
                    newest = Some(row);
                }
            }
        }
        Ok(newest)
    }

    /// Tags that arrived after journal id `after` and never departed (per reader).
    pub async fn open_presences(&self, after: i64) -> Result<Vec<OpenPresence>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, station, uid, kind FROM ( \
               SELECT device, station, kind, json_extract(payload, '$.uid') AS uid, \
                 ROW_NUMBER() OVER (PARTITION BY device, json_extract(payload, '$.uid') \
                                    ORDER BY id DESC) AS newest \
               FROM journal WHERE id > $1 AND kind IN ('tag_arrived', 'tag_departed')) \
             WHERE newest = 1 AND kind = 'tag_arrived' AND uid IS NOT NULL \
             ORDER BY device, uid",
        )
        .bind(after)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OpenPresence {
                    device: row.try_get("device")?,
                    station: row.try_get("station")?,
                    uid: row.try_get("uid")?,
                })
            })
            .collect()
    }

    /// Self-check sessions begun after journal id `after` that never ended, each with its
    /// loans so far.
    pub async fn open_sessions(&self, after: i64) -> Result<Vec<OpenSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.station AS station, json_extract(s.payload, '$.session') AS session, \
               COALESCE(json_extract(s.payload, '$.offline'), 0) AS offline \
             FROM journal s WHERE s.id > $1 AND s.kind = 'session_started' \
             AND NOT EXISTS (SELECT 1 FROM journal e WHERE e.id > s.id \
               AND e.kind = 'session_ended' \
               AND json_extract(e.payload, '$.session') = json_extract(s.payload, '$.session')) \
             ORDER BY s.id",
        )
        .bind(after)
        .fetch_all(self.pool())
        .await?;
        let mut open = Vec::new();
        for row in rows {
            let session: String = row.try_get("session")?;
            let loans = sqlx::query(
                "SELECT id, at_ms, kind, device, station, payload FROM journal \
                 WHERE id > $1 AND kind = 'item_loan' AND json_extract(payload, '$.session') = $2 \
                 ORDER BY id",
            )
            .bind(after)
            .bind(&session)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(journal_row)
            .collect::<Result<Vec<_>, _>>()?;
            open.push(OpenSession {
                station: row.try_get("station")?,
                offline: row.try_get::<i64, _>("offline")? != 0,
                session,
                loans,
            });
        }
        Ok(open)
    }

    /// The newest `limit` rows matching `select`, oldest first.
    pub async fn journal_select(
        &self,
        select: &JournalSelect,
        limit: i64,
    ) -> Result<Vec<JournalRow>, StoreError> {
        let kinds = serde_json::to_string(&select.kinds).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, device, station, payload FROM journal \
             WHERE ($1 = '[]' OR kind IN (SELECT value FROM json_each($1))) \
             AND ($2 IS NULL OR station = $2) AND ($3 IS NULL OR at_ms >= $3) \
             AND ($4 IS NULL OR id > $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(kinds)
        .bind(&select.station)
        .bind(select.since_ms)
        .bind(select.after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut found = rows
            .iter()
            .map(journal_row)
            .collect::<Result<Vec<_>, _>>()?;
        found.reverse();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JournalEntry;
    use serde_json::json;

    fn at(kind: &str, device: Option<&str>, payload: serde_json::Value) -> JournalEntry {
        let mut entry = JournalEntry::new(kind, payload);
        entry.device = device.map(str::to_owned);
        entry.station = Some("exit".into());
        entry
    }

    #[tokio::test]
    async fn presences_and_sessions_left_open_are_found_after_a_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.db")).await.unwrap();
        store
            .append(&[
                at("tag_arrived", Some("r1"), json!({"uid": "E001"})),
                at("daemon_stopped", None, json!({})),
                at("daemon_started", None, json!({})),
                at("tag_arrived", Some("r1"), json!({"uid": "E002"})),
                at("tag_arrived", Some("r1"), json!({"uid": "E003"})),
                at("tag_departed", Some("r1"), json!({"uid": "E003"})),
                at("tag_arrived", Some("r2"), json!({"uid": "E003"})),
                at(
                    "session_started",
                    None,
                    json!({"session": "S1", "offline": false}),
                ),
                at(
                    "item_loan",
                    Some("r2"),
                    json!({"session": "S1", "item": "I1", "outcome": "checked_out"}),
                ),
                at(
                    "session_started",
                    None,
                    json!({"session": "S2", "offline": true}),
                ),
                at("session_ended", None, json!({"session": "S2"})),
            ])
            .await
            .unwrap();
        let mark = store.last_run_mark().await.unwrap().unwrap();
        assert_eq!((mark.id, mark.kind.as_str()), (3, "daemon_started"));
        let open = store.open_presences(mark.id).await.unwrap();
        let uids: Vec<_> = open
            .iter()
            .map(|p| (p.device.as_deref().unwrap(), p.uid.as_str()))
            .collect();
        assert_eq!(uids, [("r1", "E002"), ("r2", "E003")]);
        let sessions = store.open_sessions(mark.id).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].session, "S1");
        assert_eq!(sessions[0].loans[0].payload["item"], "I1");
        let select = JournalSelect {
            kinds: vec!["tag_departed".into(), "session_ended".into()],
            ..JournalSelect::default()
        };
        let rows = store.journal_select(&select, 10).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [6, 11]);
        assert!(store.has_clean_stops().await.unwrap());
        store.close().await;
        let read_only = Store::open_read_only(&dir.path().join("r.db"))
            .await
            .unwrap();
        assert_eq!(read_only.journal_len().await.unwrap(), 11);
        assert!(read_only.append(&[at("x", None, json!({}))]).await.is_err());
    }
}
