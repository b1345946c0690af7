//! Figures for the dashboard's statistics (issue 13): how long `GET /api/v1/stats` takes to
//! answer over a journal of a million events spread over a year.
//!
//! ```text
//! cargo run --release --example stats_figures [-- EVENTS [DIR]]
//! ```
//!
//! Fills a store (in DIR, default a temporary folder) with EVENTS (default 1 000 000)
//! journal rows over the 365 days before now — tag reads, loans in self-check sessions,
//! returns with bins and ILS times, alarms, people counts, ILS outages — through
//! `Store::append` in batches, as the journal writer does (so the rollup triggers run for
//! every row and their cost is part of the fill rate). Then times, best and median of 20
//! runs each:
//! 1. the statistics of the whole year by local day (366 buckets), as the route computes
//!    them (the store's queries over the hourly rollups and bins, then the buckets);
//! 2. the last 7 days by hour (168 buckets);
//! 3. "borrowed together" for the most borrowed item;
//! 4. for comparison, the same year's daily counts straight from the journal (what the
//!    rollups save: a scan of every row and its JSON).

// Counts and durations: the casts stay far inside the exact range.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use std::time::{Duration, Instant, SystemTime};

use rfidgw::api::dashboard::fold_stats;
use rfidgw::store::{HOUR_MS, JournalEntry, Store};
use serde_json::json;
use time::UtcOffset;

const BATCH: usize = 5000;
const RUNS: usize = 20;

/// A small deterministic generator (xorshift), so that runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn event(rng: &mut Rng, at: SystemTime, n: usize) -> JournalEntry {
    let item = format!("I{:05}", rng.below(5000));
    let (kind, station, payload) = match rng.below(100) {
        0..=54 => (
            "tag_arrived",
            "main-exit",
            json!({"uid": format!("E0040100{:08X}", rng.below(1 << 30)), "afi": 7, "dsfid": 0}),
        ),
        55..=69 => (
            "item_loan",
            "selfcheck-1",
            json!({"kind": "item_loan", "station": "selfcheck-1", "session": format!("S{}", n / 3),
                   "item": item, "title": "A title", "outcome": "checked_out", "uids": ["E0"]}),
        ),
        70..=84 => {
            let bins = ["Shelving", "Holds", "Exceptions", "Returns cart"];
            (
                "item_returned",
                "book-return",
                json!({"kind": "item_returned", "item": item, "outcome": "checked_in",
                       "bin_name": bins[rng.below(4) as usize], "diverted": true,
                       "timing": {"ils_us": 1000 + rng.below(20_000), "total_us": 30_000}}),
            )
        }
        85..=89 => (
            "gate_alarm",
            "main-exit",
            json!({"alarm_id": format!("A{n}"), "item": item, "reason": "secured", "silenced": false}),
        ),
        90..=98 => (
            "people_counted",
            "main-exit",
            json!({"entered": rng.below(10), "left": rng.below(10), "interval_s": 60}),
        ),
        _ => (
            "peer_changed",
            "",
            json!({"peer": "ils", "state": "offline"}),
        ),
    };
    JournalEntry {
        at,
        kind: kind.into(),
        device: None,
        station: (!station.is_empty()).then(|| station.into()),
        payload,
    }
}

fn best_and_median(mut runs: Vec<Duration>) -> String {
    runs.sort();
    format!(
        "best {:.2} ms, median {:.2} ms",
        runs[0].as_secs_f64() * 1e3,
        runs[runs.len() / 2].as_secs_f64() * 1e3
    )
}

async fn time_runs<F: AsyncFnMut() -> usize>(mut run: F) -> (String, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        size = run().await;
        times.push(started.elapsed());
    }
    (best_and_median(times), size)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map_or(1_000_000, |n| n.parse().expect("EVENTS is a number"));
    let scratch = tempfile::tempdir().unwrap();
    let dir = args
        .next()
        .map_or_else(|| scratch.path().to_path_buf(), Into::into);
    let store = Store::open(&dir.join("stats-figures.db")).await.unwrap();

    let year = Duration::from_hours(365 * 24);
    let now = SystemTime::now();
    let start = now - year;
    let step = year / u32::try_from(events).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let filling = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for n in 0..events {
        batch.push(event(&mut rng, start + step * u32::try_from(n).unwrap(), n));
        if batch.len() == BATCH || n + 1 == events {
            store.append(&batch).await.unwrap();
            batch.clear();
        }
    }
    let filled = filling.elapsed();
    println!(
        "filled {events} events over 365 days in {:.1} s ({:.0} events/s, rollup triggers included)",
        filled.as_secs_f64(),
        events as f64 / filled.as_secs_f64()
    );

    let now_ms = rfidgw::store::millis_now();
    let plus_one = UtcOffset::from_hms(1, 0, 0).unwrap();
    let day = 24 * HOUR_MS;
    let year_from = (now_ms - 365 * day + HOUR_MS).div_euclid(day) * day - HOUR_MS;
    let year_to = year_from + 366 * day;
    let (figure, buckets) = time_runs(async || {
        let rows = store.stats(year_from, year_to, day, HOUR_MS).await.unwrap();
        let bins = store.bin_fill(year_from, year_to).await.unwrap();
        std::hint::black_box(bins);
        fold_stats(&rows, year_from, year_to, day, plus_one).len()
    })
    .await;
    println!("stats, a year by day ({buckets} buckets): {figure}");

    let week_to = now_ms.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
    let week_from = week_to - 168 * HOUR_MS;
    let (figure, buckets) = time_runs(async || {
        let rows = store.stats(week_from, week_to, HOUR_MS, 0).await.unwrap();
        let bins = store.bin_fill(week_from, week_to).await.unwrap();
        std::hint::black_box(bins);
        fold_stats(&rows, week_from, week_to, HOUR_MS, UtcOffset::UTC).len()
    })
    .await;
    println!("stats, 7 days by hour ({buckets} buckets): {figure}");

    let popular: String = {
        let rows = store.recent(1, Some("item_loan")).await.unwrap();
        rows[0].payload["item"].as_str().unwrap().to_owned()
    };
    let (figure, found) =
        time_runs(async || store.borrowed_together(&popular, 10).await.unwrap().1.len()).await;
    println!("borrowed together for {popular} ({found} items): {figure}");

    // Without the rollups: the year's daily loans, returns and alarms from the journal.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.join("stats-figures.db").display()
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT at_ms / 86400000, kind, COUNT(*) FROM journal \
         WHERE at_ms >= $1 AND kind IN ('item_loan', 'item_returned', 'gate_alarm') \
           AND json_extract(payload, '$.outcome') IS NOT 'refused' \
         GROUP BY 1, 2",
    )
    .bind(year_from)
    .fetch_all(&pool)
    .await
    .unwrap();
    println!(
        "for comparison, a year's daily counts scanned from the journal ({} rows): {:.0} ms",
        rows.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    pool.close().await;
    store.close().await;
}
