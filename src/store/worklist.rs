//! The staff worklist: what the daemon could not finish by itself. Entries are never
//! dropped; staff resolve them.

use std::time::SystemTime;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, journal::millis};

/// A worklist entry to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWork {
    /// `replay_failed`, `owed_write_overdue`, `not_diverted`, `outcome_unknown`, …
    pub kind: &'static str,
    /// The station it concerns.
    pub station: String,
    /// The item, when known.
    pub item_id: Option<String>,
    /// The tag, when known.
    pub uid: Option<String>,
    /// What staff need to know.
    pub reason: String,
    /// The `offline_queue` or `owed_writes` row it is about.
    pub ref_id: Option<i64>,
}

/// One worklist entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkRow {
    /// Its id.
    pub id: i64,
    /// What kind of problem.
    pub kind: String,
    /// The station it concerns.
    pub station: String,
    /// The item.
    pub item_id: Option<String>,
    /// The tag.
    pub uid: Option<String>,
    /// What staff need to know.
    pub reason: String,
    /// The queue or owed-write row it is about.
    pub ref_id: Option<i64>,
    /// When it was added, ms since the Unix epoch (RFC 3339 `created` in JSON).
    #[serde(rename = "created", serialize_with = "crate::rfc3339::ms")]
    pub created_ms: i64,
    /// When it was resolved, if it was (RFC 3339 `resolved` in JSON).
    #[serde(rename = "resolved", serialize_with = "crate::rfc3339::opt_ms")]
    pub resolved_ms: Option<i64>,
    /// Who resolved it (`auto` when the daemon finished the work itself).
    pub resolved_by: Option<String>,
    /// How.
    pub resolution: Option<String>,
}

fn work_row(row: &SqliteRow) -> Result<WorkRow, StoreError> {
    Ok(WorkRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        station: row.try_get("station")?,
        item_id: row.try_get("item_id")?,
        uid: row.try_get("uid")?,
        reason: row.try_get("reason")?,
        ref_id: row.try_get("ref_id")?,
        created_ms: row.try_get("created_ms")?,
        resolved_ms: row.try_get("resolved_ms")?,
        resolved_by: row.try_get("resolved_by")?,
        resolution: row.try_get("resolution")?,
    })
}

macro_rules! columns {
    () => {
        "id, kind, station, item_id, uid, reason, ref_id, created_ms, resolved_ms, resolved_by, resolution"
    };
}

impl Store {
    /// Adds an entry; committed when this returns. Returns its id.
    pub async fn add_work(&self, work: &NewWork) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO worklist (kind, station, item_id, uid, reason, ref_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(work.kind)
        .bind(&work.station)
        .bind(&work.item_id)
        .bind(&work.uid)
        .bind(&work.reason)
        .bind(work.ref_id)
        .bind(millis(SystemTime::now()))
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Open entries (or every entry with `all`), oldest first, at most `limit`.
    pub async fn worklist(&self, all: bool, limit: u32) -> Result<Vec<WorkRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM worklist WHERE ($2 OR resolved_ms IS NULL) ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .bind(all)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(work_row).collect()
    }

    /// Resolves an open entry; `Ok(None)` when there is no such open entry.
    pub async fn resolve_work(
        &self,
        id: i64,
        by: &str,
        resolution: &str,
    ) -> Result<Option<WorkRow>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE worklist SET resolved_ms = $2, resolved_by = $3, resolution = $4 \
             WHERE id = $1 AND resolved_ms IS NULL RETURNING ",
            columns!(),
            ""
        ))
        .bind(id)
        .bind(millis(SystemTime::now()))
        .bind(by)
        .bind(resolution)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(work_row).transpose()
    }

    /// Resolves an open entry as [`Store::resolve_work`] does and, in the same transaction,
    /// the row it is about: a `replay_failed` entry's offline-queue row goes from `failed` to
    /// `resolved` (its outcome kept), an `owed_write_overdue` entry's owed write from `owed`
    /// or `raised` to `resolved`. `Ok(None)` when there is no such open entry.
    pub async fn resolve_work_and_ref(
        &self,
        id: i64,
        by: &str,
        resolution: &str,
    ) -> Result<Option<WorkRow>, StoreError> {
        let now = millis(SystemTime::now());
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE worklist SET resolved_ms = $2, resolved_by = $3, resolution = $4 \
             WHERE id = $1 AND resolved_ms IS NULL RETURNING ",
            columns!(),
            ""
        ))
        .bind(id)
        .bind(now)
        .bind(by)
        .bind(resolution)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row.as_ref().map(work_row).transpose()? else {
            return Ok(None);
        };
        let about = match row.kind.as_str() {
            "replay_failed" => Some(
                "UPDATE offline_queue SET state = 'resolved', updated_ms = $2 \
                 WHERE id = $1 AND state = 'failed'",
            ),
            "owed_write_overdue" => Some(
                "UPDATE owed_writes SET state = 'resolved', updated_ms = $2 \
                 WHERE id = $1 AND state IN ('owed', 'raised')",
            ),
            _ => None,
        };
        if let (Some(sql), Some(ref_id)) = (about, row.ref_id) {
            sqlx::query(sql)
                .bind(ref_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Resolves every open entry about `ref_id` of `kind` (the daemon finished the work).
    pub async fn resolve_work_about(
        &self,
        kind: &str,
        ref_id: i64,
        resolution: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE worklist SET resolved_ms = $3, resolved_by = 'auto', resolution = $4 \
             WHERE kind = $1 AND ref_id = $2 AND resolved_ms IS NULL",
        )
        .bind(kind)
        .bind(ref_id)
        .bind(millis(SystemTime::now()))
        .bind(resolution)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// How many entries are open.
    pub async fn worklist_open(&self) -> Result<u64, StoreError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM worklist WHERE resolved_ms IS NULL")
                .fetch_one(self.pool())
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_stay_until_resolved_and_resolve_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).await.unwrap();
        let work = |ref_id| NewWork {
            kind: "replay_failed",
            station: "returns".into(),
            item_id: Some("I1".into()),
            uid: None,
            reason: "ILS refused".into(),
            ref_id: Some(ref_id),
        };
        let a = store.add_work(&work(1)).await.unwrap();
        store.add_work(&work(2)).await.unwrap();
        assert_eq!(store.worklist_open().await.unwrap(), 2);
        let resolved = store
            .resolve_work(a, "anna", "checked in by hand")
            .await
            .unwrap();
        assert_eq!(resolved.unwrap().resolved_by.as_deref(), Some("anna"));
        assert!(
            store
                .resolve_work(a, "bob", "again")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store
                .resolve_work_about("replay_failed", 2, "replayed")
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.worklist_open().await.unwrap(), 0);
        assert_eq!(store.worklist(true, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn resolving_an_entry_resolves_the_failed_replay_or_owed_write_it_is_about() {
        use crate::store::{NewQueued, OwedState, QueueState, QueuedKind};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).await.unwrap();
        let queued = store
            .enqueue(&NewQueued {
                station: "returns".into(),
                kind: QueuedKind::Checkin,
                item_id: "I1".into(),
                patron: None,
                at: SystemTime::now(),
                due: None,
            })
            .await
            .unwrap();
        store
            .finish_queued(queued, QueueState::Failed, "{\"failed\":\"no\"}")
            .await
            .unwrap();
        let owed = store
            .owe_pending("returns", "E001", Some("I2"), true, "return")
            .await
            .unwrap();
        store
            .set_owed_state(owed, OwedState::Raised, None)
            .await
            .unwrap();
        let work = |kind, ref_id| NewWork {
            kind,
            station: "returns".into(),
            item_id: None,
            uid: None,
            reason: "staff, please".into(),
            ref_id: Some(ref_id),
        };
        let replay = store
            .add_work(&work("replay_failed", queued))
            .await
            .unwrap();
        let overdue = store
            .add_work(&work("owed_write_overdue", owed))
            .await
            .unwrap();
        for id in [replay, overdue] {
            let row = store.resolve_work_and_ref(id, "anna", "by hand").await;
            assert_eq!(row.unwrap().unwrap().resolved_by.as_deref(), Some("anna"));
        }
        let row = store.queued_by_id(queued).await.unwrap().unwrap();
        assert_eq!(row.state, QueueState::Resolved);
        assert_eq!(row.outcome.as_deref(), Some("{\"failed\":\"no\"}"));
        assert_eq!(
            store.owed_writes(&[OwedState::Resolved], 10).await.unwrap()[0].id,
            owed
        );
        assert!(
            store
                .resolve_work_and_ref(replay, "bob", "again")
                .await
                .unwrap()
                .is_none()
        );
    }
}
