//! The loans cache table: item id → on loan or not, with where that was learned.

use std::time::SystemTime;

use sqlx::Row;

use super::{Store, StoreError, journal::millis};

/// One cached loan state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoanRow {
    /// The item's id (barcode).
    pub item_id: String,
    /// Whether it is on loan.
    pub on_loan: bool,
    /// When this was learned, ms since the Unix epoch.
    pub updated_ms: i64,
    /// Where it was learned (`ils`, `import`, `checkout`, `checkin`).
    pub source: String,
}

impl Store {
    /// Records (or replaces) the loan state of items in one transaction.
    pub async fn upsert_loans(
        &self,
        rows: &[(String, bool)],
        source: &str,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        let updated_ms = millis(at);
        let rows: Vec<LoanRow> = rows
            .iter()
            .map(|(item, on_loan)| LoanRow {
                item_id: item.clone(),
                on_loan: *on_loan,
                updated_ms,
                source: source.to_owned(),
            })
            .collect();
        self.save_loans(&rows).await
    }

    /// Records (or replaces) loan states, each with its own time and source, in one
    /// transaction.
    pub async fn save_loans(&self, rows: &[LoanRow]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO loans_cache (item_id, on_loan, updated_ms, source) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (item_id) DO UPDATE SET on_loan = excluded.on_loan, \
                 updated_ms = excluded.updated_ms, source = excluded.source",
            )
            .bind(&row.item_id)
            .bind(i64::from(row.on_loan))
            .bind(row.updated_ms)
            .bind(&row.source)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every cached loan state (loaded once at start into the gate's memory).
    pub async fn loans(&self) -> Result<Vec<LoanRow>, StoreError> {
        let rows = sqlx::query("SELECT item_id, on_loan, updated_ms, source FROM loans_cache")
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(LoanRow {
                    item_id: row.try_get("item_id")?,
                    on_loan: row.try_get::<i64, _>("on_loan")? != 0,
                    updated_ms: row.try_get("updated_ms")?,
                    source: row.try_get("source")?,
                })
            })
            .collect()
    }

    /// Deletes journal rows of the given kinds older than `cutoff` (alarm retention, which
    /// may be shorter than the journal's); returns how many went.
    pub async fn prune_kinds(&self, kinds: &[&str], cutoff: SystemTime) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for kind in kinds {
            let done = sqlx::query("DELETE FROM journal WHERE kind = $1 AND at_ms < $2")
                .bind(kind)
                .bind(millis(cutoff))
                .execute(self.pool())
                .await?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loans_are_upserted_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).await.unwrap();
        let now = SystemTime::now();
        store
            .upsert_loans(
                &[("1001".into(), true), ("1002".into(), false)],
                "import",
                now,
            )
            .await
            .unwrap();
        store
            .upsert_loans(&[("1001".into(), false)], "ils", now)
            .await
            .unwrap();
        let mut rows = store.loans().await.unwrap();
        rows.sort_by(|a, b| a.item_id.cmp(&b.item_id));
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.item_id.as_str(), r.on_loan, r.source.as_str()))
            .collect();
        assert_eq!(got, [("1001", false, "ils"), ("1002", false, "import")]);
        store.close().await;
    }
}
