//! The offline queue: transactions accepted while the library system was away, replayed in
//! order when it is back. Each write here commits (WAL, `synchronous=FULL`) before it
//! returns, so a caller may tell the patron "done" once it has.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, journal::millis};

/// What kind of transaction was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuedKind {
    /// A return.
    Checkin,
    /// A loan.
    Checkout,
}

impl QueuedKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Checkin => "checkin",
            Self::Checkout => "checkout",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "checkin" => Some(Self::Checkin),
            "checkout" => Some(Self::Checkout),
            _ => None,
        }
    }
}

/// Where a queued transaction is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Waiting for the library system.
    Queued,
    /// Sent (or about to be); the answer is not recorded yet.
    Replaying,
    /// The library system has it.
    Done,
    /// The library system refused it, or its outcome could not be learned: on the worklist.
    Failed,
    /// Staff dealt with it.
    Resolved,
}

impl QueueState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Replaying => "replaying",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Resolved => "resolved",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Replaying,
            Self::Done,
            Self::Failed,
            Self::Resolved,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A transaction to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewQueued {
    /// The station that took it.
    pub station: String,
    /// Return or loan.
    pub kind: QueuedKind,
    /// The item.
    pub item_id: String,
    /// The borrower (loans only).
    pub patron: Option<String>,
    /// When the patron did it.
    pub at: SystemTime,
    /// The due date the patron was given (loans only).
    pub due: Option<SystemTime>,
}

/// One queued transaction as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedRow {
    /// Its id: the replay order.
    pub id: i64,
    /// The station that took it.
    pub station: String,
    /// Return or loan.
    pub kind: QueuedKind,
    /// The item.
    pub item_id: String,
    /// The borrower (loans only). Shown to staff only; never journaled.
    #[serde(skip)]
    pub patron: Option<String>,
    /// When the patron did it, ms since the Unix epoch (RFC 3339 `time` in JSON).
    #[serde(rename = "time", serialize_with = "crate::rfc3339::ms")]
    pub at_ms: i64,
    /// The due date given (loans only), ms since the Unix epoch (RFC 3339 `due` in JSON).
    #[serde(rename = "due", serialize_with = "crate::rfc3339::opt_ms")]
    pub due_ms: Option<i64>,
    /// Where it is in its life.
    pub state: QueueState,
    /// How many times a replay was tried.
    pub attempts: i64,
    /// The replay's outcome (JSON text), once known.
    pub outcome: Option<String>,
}

impl QueuedRow {
    /// When the patron did it.
    pub fn at(&self) -> SystemTime {
        from_millis(self.at_ms)
    }

    /// The due date given, for a loan.
    pub fn due(&self) -> Option<SystemTime> {
        self.due_ms.map(from_millis)
    }
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn queued_row(row: &SqliteRow) -> Result<QueuedRow, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let id: i64 = row.try_get("id")?;
    let bad = |what: &str, value: &str| {
        StoreError::Query(sqlx::Error::Decode(
            format!("offline_queue row {id}: unknown {what} `{value}`").into(),
        ))
    };
    Ok(QueuedRow {
        id,
        station: row.try_get("station")?,
        kind: QueuedKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
        item_id: row.try_get("item_id")?,
        patron: row.try_get("patron")?,
        at_ms: row.try_get("at_ms")?,
        due_ms: row.try_get("due_ms")?,
        state: QueueState::parse(&state).ok_or_else(|| bad("state", &state))?,
        attempts: row.try_get("attempts")?,
        outcome: row.try_get("outcome")?,
    })
}

macro_rules! columns {
    () => {
        "id, station, kind, item_id, patron, at_ms, due_ms, state, attempts, outcome"
    };
}

impl Store {
    /// Queues a transaction; committed when this returns. Returns its id.
    pub async fn enqueue(&self, new: &NewQueued) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO offline_queue (station, kind, item_id, patron, at_ms, due_ms, state, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7) RETURNING id",
        )
        .bind(&new.station)
        .bind(new.kind.as_str())
        .bind(&new.item_id)
        .bind(&new.patron)
        .bind(millis(new.at))
        .bind(new.due.map(millis))
        .bind(millis(SystemTime::now()))
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("id")?)
    }

    /// The oldest transaction still to replay (`queued` or `replaying`), if any.
    pub async fn next_to_replay(&self) -> Result<Option<QueuedRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM offline_queue WHERE state IN ('queued', 'replaying') \
             ORDER BY id LIMIT 1"
        ))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(queued_row).transpose()
    }

    /// Marks a transaction as being sent, counting the attempt; committed before the send,
    /// so a restart knows it may have reached the library system.
    pub async fn mark_replaying(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE offline_queue SET state = 'replaying', attempts = attempts + 1, updated_ms = $2 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(millis(SystemTime::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a transaction's final state and outcome (JSON text).
    pub async fn finish_queued(
        &self,
        id: i64,
        state: QueueState,
        outcome: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE offline_queue SET state = $2, outcome = $3, updated_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(outcome)
        .bind(millis(SystemTime::now()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Puts a `replaying` transaction back to `queued` (the library system went away before
    /// the request was sent).
    pub async fn requeue(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE offline_queue SET state = 'queued', updated_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(millis(SystemTime::now()))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Transactions in `states` (all when empty), oldest first, at most `limit`.
    pub async fn queued(
        &self,
        states: &[QueueState],
        limit: u32,
    ) -> Result<Vec<QueuedRow>, StoreError> {
        let wanted = super::state_list(states.iter().map(|s| s.as_str()));
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM offline_queue WHERE ($2 = '' OR instr($2, ',' || state || ',') > 0) ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .bind(wanted)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(queued_row).collect()
    }

    /// One transaction by id.
    pub async fn queued_by_id(&self, id: i64) -> Result<Option<QueuedRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM offline_queue WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(queued_row).transpose()
    }

    /// Loans queued offline for `patron` and not yet replayed (the offline per-patron limit).
    pub async fn offline_loans_of(&self, patron: &str) -> Result<u32, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM offline_queue WHERE kind = 'checkout' AND patron = $1 \
             AND state IN ('queued', 'replaying')",
        )
        .bind(patron)
        .fetch_one(self.pool())
        .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// How many transactions wait to be replayed.
    pub async fn queue_len(&self) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM offline_queue WHERE state IN ('queued', 'replaying')",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db")).await.unwrap();
        (dir, store)
    }

    fn checkin(item: &str) -> NewQueued {
        NewQueued {
            station: "returns".into(),
            kind: QueuedKind::Checkin,
            item_id: item.into(),
            patron: None,
            at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            due: None,
        }
    }

    #[tokio::test]
    async fn queued_transactions_replay_in_order_and_leave_the_queue_when_finished() {
        let (_dir, store) = store().await;
        let first = store.enqueue(&checkin("I1")).await.unwrap();
        let second = store.enqueue(&checkin("I2")).await.unwrap();
        assert!(first < second);
        assert_eq!(store.queue_len().await.unwrap(), 2);
        let next = store.next_to_replay().await.unwrap().unwrap();
        assert_eq!((next.id, next.state), (first, QueueState::Queued));
        assert_eq!(next.at(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        store.mark_replaying(first).await.unwrap();
        let again = store.next_to_replay().await.unwrap().unwrap();
        assert_eq!(
            (again.id, again.state, again.attempts),
            (first, QueueState::Replaying, 1)
        );
        store
            .finish_queued(first, QueueState::Done, "{}")
            .await
            .unwrap();
        assert_eq!(store.next_to_replay().await.unwrap().unwrap().id, second);
        store
            .finish_queued(second, QueueState::Failed, "{\"ok\":false}")
            .await
            .unwrap();
        assert!(store.next_to_replay().await.unwrap().is_none());
        let failed = store.queued(&[QueueState::Failed], 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].outcome.as_deref(), Some("{\"ok\":false}"));
    }

    #[tokio::test]
    async fn offline_loans_are_counted_per_patron_until_replayed() {
        let (_dir, store) = store().await;
        let loan = |item: &str, patron: &str| NewQueued {
            kind: QueuedKind::Checkout,
            patron: Some(patron.into()),
            due: Some(SystemTime::now()),
            ..checkin(item)
        };
        let a = store.enqueue(&loan("I1", "P1")).await.unwrap();
        store.enqueue(&loan("I2", "P1")).await.unwrap();
        store.enqueue(&loan("I3", "P2")).await.unwrap();
        assert_eq!(store.offline_loans_of("P1").await.unwrap(), 2);
        store
            .finish_queued(a, QueueState::Done, "{}")
            .await
            .unwrap();
        assert_eq!(store.offline_loans_of("P1").await.unwrap(), 1);
        assert_eq!(store.offline_loans_of("P3").await.unwrap(), 0);
    }
}
