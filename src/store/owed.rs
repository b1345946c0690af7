//! Owed tag writes: the security state a tag must get (secured after a return, unsecured
//! after a loan) and has not been confirmed to have. See `migrations/sqlite/0003`.

use std::time::SystemTime;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, journal::millis};

/// Where an owed write is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwedState {
    /// Recorded before the ILS call: the transaction is under way.
    Pending,
    /// The write is owed: it completes when the tag is seen again.
    Owed,
    /// Owed for longer than the grace period: on the staff worklist (still completes).
    Raised,
    /// The tag was written and read back.
    Done,
    /// No write is owed after all (the ILS said no).
    Cancelled,
    /// Staff dealt with it.
    Resolved,
}

impl OwedState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Owed => "owed",
            Self::Raised => "raised",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
            Self::Resolved => "resolved",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Owed,
            Self::Raised,
            Self::Done,
            Self::Cancelled,
            Self::Resolved,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the write is still to do.
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Owed | Self::Raised)
    }
}

/// One owed write as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwedRow {
    /// Its id.
    pub id: i64,
    /// The station whose transaction owes it.
    pub station: String,
    /// The tag (hex UID).
    pub uid: String,
    /// The item, when known.
    pub item_id: Option<String>,
    /// `true`: the tag must be secured; `false`: unsecured.
    pub secure: bool,
    /// Why it is owed.
    pub reason: String,
    /// Where it is in its life.
    pub state: OwedState,
    /// When it was recorded, ms since the Unix epoch (RFC 3339 `created` in JSON).
    #[serde(rename = "created", serialize_with = "crate::rfc3339::ms")]
    pub created_ms: i64,
    /// When it last changed, ms since the Unix epoch (RFC 3339 `updated` in JSON).
    #[serde(rename = "updated", serialize_with = "crate::rfc3339::ms")]
    pub updated_ms: i64,
}

fn owed_row(row: &SqliteRow) -> Result<OwedRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    Ok(OwedRow {
        id,
        station: row.try_get("station")?,
        uid: row.try_get("uid")?,
        item_id: row.try_get("item_id")?,
        secure: row.try_get::<i64, _>("secure")? != 0,
        reason: row.try_get("reason")?,
        state: OwedState::parse(&state).ok_or_else(|| {
            StoreError::Query(sqlx::Error::Decode(
                format!("owed_writes row {id}: unknown state `{state}`").into(),
            ))
        })?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

macro_rules! columns {
    () => {
        "id, station, uid, item_id, secure, reason, state, created_ms, updated_ms"
    };
}

impl Store {
    /// Records a write as `pending` before the transaction that needs it; committed when
    /// this returns. Returns its id.
    pub async fn owe_pending(
        &self,
        station: &str,
        uid: &str,
        item_id: Option<&str>,
        secure: bool,
        reason: &str,
    ) -> Result<i64, StoreError> {
        let now = millis(SystemTime::now());
        let row = sqlx::query(
            "INSERT INTO owed_writes (station, uid, item_id, secure, reason, state, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) RETURNING id",
        )
        .bind(station)
        .bind(uid)
        .bind(item_id)
        .bind(i64::from(secure))
        .bind(reason)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Moves an owed write to `state`, with a new reason when given.
    pub async fn set_owed_state(
        &self,
        id: i64,
        state: OwedState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE owed_writes SET state = $2, reason = COALESCE($3, reason), updated_ms = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(reason)
        .bind(millis(SystemTime::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// One owed write by id.
    pub async fn owed_write(&self, id: i64) -> Result<Option<OwedRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM owed_writes WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(owed_row).transpose()
    }

    /// Owed writes in `states` (all when empty), oldest first, at most `limit`.
    pub async fn owed_writes(
        &self,
        states: &[OwedState],
        limit: u32,
    ) -> Result<Vec<OwedRow>, StoreError> {
        let wanted = super::state_list(states.iter().map(|s| s.as_str()));
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM owed_writes WHERE ($2 = '' OR instr($2, ',' || state || ',') > 0) ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .bind(wanted)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(owed_row).collect()
    }

    /// How many owed writes are in `states` (all when empty).
    pub async fn owed_write_count(&self, states: &[OwedState]) -> Result<u64, StoreError> {
        let wanted = super::state_list(states.iter().map(|s| s.as_str()));
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM owed_writes WHERE ($1 = '' OR instr($1, ',' || state || ',') > 0)",
        )
        .bind(wanted)
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// At start: a `pending` write belongs to a transaction the daemon did not finish. A
    /// return's re-secure is owed whatever the ILS did (the item is in the library, so
    /// securing it is always right); a loan's unsecure is raised to staff, since the loan
    /// may not have happened. Returns the rows changed, in their new state.
    pub async fn settle_pending_writes(&self) -> Result<Vec<OwedRow>, StoreError> {
        let now = millis(SystemTime::now());
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(concat!(
            "UPDATE owed_writes SET \
               state = CASE secure WHEN 1 THEN 'owed' ELSE 'raised' END, \
               reason = 'the daemon stopped during the transaction', updated_ms = $1 \
             WHERE state = 'pending' RETURNING ",
            columns!(),
            ""
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(owed_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_writes_left_by_a_crash_become_owed_or_raised_by_direction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("o.db")).await.unwrap();
        let ret = store
            .owe_pending("returns", "E001", Some("I1"), true, "return")
            .await
            .unwrap();
        let loan = store
            .owe_pending("pad", "E002", Some("I2"), false, "loan")
            .await
            .unwrap();
        let done = store
            .owe_pending("pad", "E003", Some("I3"), false, "loan")
            .await
            .unwrap();
        store
            .set_owed_state(done, OwedState::Done, None)
            .await
            .unwrap();
        let settled = store.settle_pending_writes().await.unwrap();
        let states: Vec<_> = settled.iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(states, [(ret, OwedState::Owed), (loan, OwedState::Raised)]);
        let open = store
            .owed_writes(&[OwedState::Owed, OwedState::Raised], 10)
            .await
            .unwrap();
        assert_eq!(open.len(), 2);
        assert!(open.iter().all(|r| r.state.is_open()));
        assert!(store.settle_pending_writes().await.unwrap().is_empty());
    }
}
