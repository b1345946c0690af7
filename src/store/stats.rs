//! The dashboard's statistics and "borrowed together", read from rollups that triggers keep
//! beside the journal (migration `0005_dashboard_stats.sql`): answering costs the number of
//! hours asked for, not the number of events journaled.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// One bucket's figures, summed from the hourly rollups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsRow {
    /// The bucket's start, ms since the Unix epoch.
    pub bucket_ms: i64,
    /// Items lent (checked out, renewed, queued offline), at stations and SIP2 kiosks.
    pub loans: i64,
    /// Items taken back (checked in, queued offline).
    pub returns: i64,
    /// Gate alarms.
    pub alarms: i64,
    /// People counted in.
    pub people_in: i64,
    /// People counted out.
    pub people_out: i64,
    /// Counting intervals closed.
    pub people_intervals: i64,
    /// Calls the library system answered.
    pub ils_calls: i64,
    /// Their time, summed (µs).
    pub ils_us: i64,
    /// The longest (µs).
    pub ils_peak_us: i64,
    /// The ILS went offline, or an outcome was unknown or failed.
    pub ils_errors: i64,
}

/// Items a return station sent to one bin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BinRow {
    /// The return station.
    pub station: String,
    /// The bin's name.
    pub bin: String,
    /// Items sent to it.
    pub items: i64,
}

/// An item borrowed in the same self-check sessions as another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Together {
    /// The item.
    pub item: String,
    /// Its title, as the ILS last gave it.
    pub title: Option<String>,
    /// In how many sessions both were borrowed.
    pub sessions: i64,
}

/// One hour, the rollups' grain.
pub const HOUR_MS: i64 = 3_600_000;

impl Store {
    /// The figures of the hours from `from_ms` (inclusive) to `to_ms` (exclusive), summed
    /// into buckets of `bucket_ms` whose edges fall on multiples of `bucket_ms` shifted by
    /// `offset_ms` (a local day starts at midnight of a UTC offset), oldest first; buckets
    /// without any event are left out. `bucket_ms` is a whole number of hours (the
    /// rollups' grain).
    pub async fn stats(
        &self,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
        offset_ms: i64,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let bucket_ms = bucket_ms.max(HOUR_MS);
        // Shifted so that the division never sees a negative number (times before 1970).
        let shift = offset_ms.rem_euclid(bucket_ms);
        let rows = sqlx::query(
            "SELECT ((hour_ms + $3) / $4) * $4 - $3 AS bucket, SUM(loans) AS loans, \
                    SUM(returns) AS returns, SUM(alarms) AS alarms, \
                    SUM(people_in) AS people_in, SUM(people_out) AS people_out, \
                    SUM(people_intervals) AS people_intervals, SUM(ils_calls) AS ils_calls, \
                    SUM(ils_us) AS ils_us, MAX(ils_peak_us) AS ils_peak_us, \
                    SUM(ils_errors) AS ils_errors \
             FROM stats_hourly WHERE hour_ms >= $1 AND hour_ms < $2 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(shift)
        .bind(bucket_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StatsRow {
                    bucket_ms: row.try_get("bucket")?,
                    loans: row.try_get("loans")?,
                    returns: row.try_get("returns")?,
                    alarms: row.try_get("alarms")?,
                    people_in: row.try_get("people_in")?,
                    people_out: row.try_get("people_out")?,
                    people_intervals: row.try_get("people_intervals")?,
                    ils_calls: row.try_get("ils_calls")?,
                    ils_us: row.try_get("ils_us")?,
                    ils_peak_us: row.try_get("ils_peak_us")?,
                    ils_errors: row.try_get("ils_errors")?,
                })
            })
            .collect()
    }

    /// Items sent to each sort bin from `from_ms` (inclusive) to `to_ms` (exclusive), by
    /// station and bin.
    pub async fn bin_fill(&self, from_ms: i64, to_ms: i64) -> Result<Vec<BinRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT station, bin, SUM(items) AS items FROM stats_bins_hourly \
             WHERE hour_ms >= $1 AND hour_ms < $2 GROUP BY station, bin ORDER BY station, bin",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BinRow {
                    station: row.try_get("station")?,
                    bin: row.try_get("bin")?,
                    items: row.try_get("items")?,
                })
            })
            .collect()
    }

    /// In how many self-check sessions `item` was borrowed, and the items most often
    /// borrowed in those same sessions (most sessions first, then by item), at most
    /// `limit`.
    pub async fn borrowed_together(
        &self,
        item: &str,
        limit: u32,
    ) -> Result<(i64, Vec<Together>), StoreError> {
        let sessions: i64 = sqlx::query("SELECT COUNT(*) FROM loan_sessions WHERE item = $1")
            .bind(item)
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        let rows = sqlx::query(
            "SELECT other.item AS item, COUNT(*) AS sessions, \
                    (SELECT title FROM loan_sessions t WHERE t.item = other.item \
                     AND t.title IS NOT NULL ORDER BY t.at_ms DESC LIMIT 1) AS title \
             FROM loan_sessions this \
             JOIN loan_sessions other ON other.station = this.station \
                  AND other.session = this.session AND other.item <> this.item \
             WHERE this.item = $1 \
             GROUP BY other.item ORDER BY sessions DESC, other.item LIMIT $2",
        )
        .bind(item)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let together = rows
            .iter()
            .map(|row| {
                Ok(Together {
                    item: row.try_get("item")?,
                    title: row.try_get("title")?,
                    sessions: row.try_get("sessions")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((sessions, together))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JournalEntry;
    use serde_json::json;

    /// The rollups and sessions as JSON text, to compare two stores.
    async fn dump(pool: &sqlx::SqlitePool) -> Vec<String> {
        let mut out = Vec::new();
        for query in [
            "SELECT json_group_array(json_array(hour_ms, loans, returns, alarms, people_in, \
             people_out, people_intervals, ils_calls, ils_us, ils_peak_us, ils_errors)) \
             FROM (SELECT * FROM stats_hourly ORDER BY hour_ms)",
            "SELECT json_group_array(json_array(hour_ms, station, bin, items)) \
             FROM (SELECT * FROM stats_bins_hourly ORDER BY 1, 2, 3)",
            "SELECT json_group_array(json_array(station, session, item, title, at_ms)) \
             FROM (SELECT * FROM loan_sessions ORDER BY 1, 2, 3)",
        ] {
            out.push(sqlx::query_scalar(query).fetch_one(pool).await.unwrap());
        }
        out
    }

    fn journal() -> Vec<JournalEntry> {
        let at = |ms: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        let rows = [
            (
                1_000,
                "item_loan",
                json!({"session": "S1", "item": "I1", "title": "One", "outcome": "checked_out"}),
            ),
            (
                2_000,
                "item_loan",
                json!({"session": "S1", "item": "I2", "outcome": "renewed"}),
            ),
            (
                3_000,
                "item_loan",
                json!({"session": "S1", "item": "I3", "outcome": "refused"}),
            ),
            (
                3_600_000,
                "item_returned",
                json!({"item": "I1", "outcome": "checked_in", "bin_name": "Holds", "timing": {"ils_us": 1500}}),
            ),
            (
                3_600_001,
                "item_returned",
                json!({"item": "I9", "outcome": "rejected", "bin_name": "Exceptions", "diverted": true, "timing": {"ils_us": 900}}),
            ),
            (
                3_600_002,
                "kiosk_transaction",
                json!({"message": "checkout", "outcome": "accepted", "took_us": 4000}),
            ),
            (7_200_000, "gate_alarm", json!({"reason": "secured"})),
            (
                7_200_001,
                "people_counted",
                json!({"entered": 5, "left": 1}),
            ),
            (7_200_002, "peer_changed", json!({"state": "offline"})),
            (7_200_003, "tag_arrived", json!({"uid": "E0"})),
        ];
        rows.into_iter()
            .map(|(ms, kind, payload)| JournalEntry {
                at: at(ms),
                kind: kind.into(),
                device: None,
                station: Some("st".into()),
                payload,
            })
            .collect()
    }

    /// A store migrated before any event (the triggers count each) and one whose journal
    /// was written before migration 0005 (its backfill counts them) hold the same figures.
    #[tokio::test]
    async fn the_backfill_of_an_existing_journal_agrees_with_the_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("triggers.db")).await.unwrap();
        store.append(&journal()).await.unwrap();
        let by_triggers = dump(store.pool()).await;
        store.close().await;

        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("backfill.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        for sql in [
            include_str!("../../migrations/sqlite/0001_journal.sql"),
            include_str!("../../migrations/sqlite/0002_loans_cache.sql"),
            include_str!("../../migrations/sqlite/0003_circulation.sql"),
            include_str!("../../migrations/sqlite/0004_outbox.sql"),
        ] {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        for entry in journal() {
            sqlx::query(
                "INSERT INTO journal (at_ms, kind, device, station, payload) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(crate::store::millis_of(entry.at))
            .bind(&entry.kind)
            .bind(&entry.device)
            .bind(&entry.station)
            .bind(entry.payload.to_string())
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::raw_sql(include_str!(
            "../../migrations/sqlite/0005_dashboard_stats.sql"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let by_backfill = dump(&pool).await;
        pool.close().await;

        assert_eq!(by_backfill, by_triggers);
        // Not empty: every table has rows (3 hours, 2 bins, 2 lent items).
        assert!(
            by_triggers[0].contains("[7200000,0,0,1,5,1,1,0,0,0,1]"),
            "{by_triggers:?}"
        );
        assert!(by_triggers[1].contains("Exceptions") && by_triggers[1].contains("Holds"));
        assert!(by_triggers[2].contains("I2") && !by_triggers[2].contains("I3"));
    }
}
