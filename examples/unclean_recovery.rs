//! How long a start after an unclean stop spends finding what the killed run left open
//! (issue 13): a store whose last run journaled N tag arrivals and departures (a busy gate,
//! ~100k rows a day) and a few self-check sessions, then the two queries the start runs.
//!
//! `cargo run --release --example unclean_recovery [ROWS]` (default 1,000,000).

use std::time::Instant;

use rfidgw::store::{JournalEntry, Store};
use serde_json::json;

#[tokio::main]
async fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("r.db")).await.unwrap();
    store
        .append(&[JournalEntry::new("daemon_started", json!({}))])
        .await
        .unwrap();
    let filled = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..rows {
        // Pairs of arrival and departure; every 1000th tag never departs.
        let tag = i / 2;
        let kind = if i % 2 == 0 {
            "tag_arrived"
        } else {
            "tag_departed"
        };
        if kind == "tag_departed" && tag % 1000 == 0 {
            continue;
        }
        let mut entry = JournalEntry::new(
            kind,
            json!({ "kind": kind, "uid": format!("E004{tag:012X}") }),
        );
        entry.device = Some(format!("reader-{}", tag % 4));
        entry.station = Some("exit".into());
        batch.push(entry);
        if i % 5000 == 0 {
            batch.push(JournalEntry::new(
                "session_started",
                json!({ "session": format!("S{i}"), "offline": false }),
            ));
        }
        if batch.len() >= 1000 {
            store.append(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.append(&batch).await.unwrap();
    println!(
        "journal: {} rows in {:.1?}",
        store.journal_len().await.unwrap(),
        filled.elapsed()
    );
    let mark = store.last_run_mark().await.unwrap().unwrap();
    let started = Instant::now();
    let presences = store.open_presences(mark.id).await.unwrap();
    let presences_took = started.elapsed();
    let started = Instant::now();
    let sessions = store.open_sessions(mark.id).await.unwrap();
    let sessions_took = started.elapsed();
    println!(
        "open presences: {} found in {presences_took:.1?}; open sessions: {} found in {sessions_took:.1?}",
        presences.len(),
        sessions.len()
    );
    store.close().await;
}
