//! The gate's loans cache for database security mode (PROTOCOLS.md §3.4): item id → on
//! loan or not, in memory so a gate decides without touching the disk or the network.
//!
//! It is kept current by the daemon's own transactions (later issues call
//! [`LoansCache::record`]), by ILS item-information lookups done in the background when a
//! gate sees an item the cache does not know or knows only from long ago, and by
//! `rfidgw loans import`. Every change is also written to the store, so it survives a
//! restart; the decision itself only ever reads memory.
//!
//! The store writes go through one writer task that takes every change recorded since
//! its last commit in a single transaction (the newest state per item). A commit per
//! change, each racing the journal writer for SQLite's one write lock, made a busy SIP2
//! face stall for hundreds of milliseconds in SQLite's busy-wait sleeps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use tokio::sync::Notify;

use crate::ils::connector::{Circulation, IlsConnector};
use crate::store::{LoanRow, Store, StoreError, millis_of};

/// The `[loans]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoansConfig {
    /// Ask the ILS (SIP2 item information) in the background when a gate sees an item the
    /// cache does not know, or knows only from longer ago than `refresh_s` (default true).
    pub lookup: bool,
    /// How old a cached state may be before a sighting refreshes it, in seconds (default
    /// 3600). The gate still decides from the old state at once.
    pub refresh_s: u64,
}

impl Default for LoansConfig {
    fn default() -> Self {
        Self {
            lookup: true,
            refresh_s: 3_600,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    on_loan: bool,
    updated: SystemTime,
}

/// The in-memory loans cache. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LoansCache {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    store: Option<Store>,
    unsaved: Arc<Unsaved>,
    config: Arc<LoansConfigShared>,
}

/// Changes recorded in memory and not yet written to the store: the newest per item.
#[derive(Debug, Default)]
struct Unsaved {
    rows: Mutex<HashMap<String, LoanRow>>,
    /// Wakes the writer task after a change.
    changed: Notify,
    /// Taken by whoever writes, so a flush waits for the writer's commit under way.
    writing: tokio::sync::Mutex<()>,
}

impl Unsaved {
    /// Writes everything unsaved in one transaction; on failure the rows stay unsaved
    /// (unless a newer state of the item arrived meanwhile) for the next try.
    async fn write(&self, store: &Store) {
        let _writing = self.writing.lock().await;
        let rows: Vec<LoanRow> = std::mem::take(&mut *self.lock()).into_values().collect();
        if rows.is_empty() {
            return;
        }
        if let Err(error) = store.save_loans(&rows).await {
            tracing::warn!(%error, items = rows.len(), "loans cache not saved; kept in memory, tried again with the next change");
            let mut unsaved = self.lock();
            for row in rows {
                unsaved.entry(row.item_id.clone()).or_insert(row);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LoanRow>> {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer task: one transaction for whatever was recorded while the last one ran.
/// Ends when every handle to the cache is gone.
async fn write_unsaved(unsaved: std::sync::Weak<Unsaved>, store: Store) {
    loop {
        let Some(current) = unsaved.upgrade() else {
            return;
        };
        // Wait with a timeout so that a cache whose handles are all dropped lets the task
        // end (nothing else would wake it).
        let _ = tokio::time::timeout(Duration::from_secs(1), current.changed.notified()).await;
        current.write(&store).await;
    }
}

#[derive(Debug, Default)]
struct LoansConfigShared {
    lookup: bool,
    refresh: Duration,
}

impl LoansCache {
    /// Loads the cache from the store.
    pub async fn load(store: Store, config: &LoansConfig) -> Result<Self, StoreError> {
        let rows = store.loans().await?;
        let entries = rows
            .into_iter()
            .map(|row| {
                let updated = SystemTime::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(row.updated_ms).unwrap_or(0));
                (
                    row.item_id,
                    Entry {
                        on_loan: row.on_loan,
                        updated,
                    },
                )
            })
            .collect();
        let unsaved = Arc::<Unsaved>::default();
        tokio::spawn(write_unsaved(Arc::downgrade(&unsaved), store.clone()));
        Ok(Self {
            entries: Arc::new(RwLock::new(entries)),
            in_flight: Arc::default(),
            store: Some(store),
            unsaved,
            config: Arc::new(LoansConfigShared {
                lookup: config.lookup,
                refresh: Duration::from_secs(config.refresh_s),
            }),
        })
    }

    /// Whether the item is on loan, if the cache knows.
    pub fn on_loan(&self, item: &str) -> Option<bool> {
        self.read().get(item).map(|e| e.on_loan)
    }

    /// How many items the cache knows.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Records an item's state now (memory at once; the store in the background).
    pub fn record(&self, item: &str, on_loan: bool, source: &'static str) {
        let updated = SystemTime::now();
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(item.to_owned(), Entry { on_loan, updated });
        if self.store.is_some() {
            let row = LoanRow {
                item_id: item.to_owned(),
                on_loan,
                updated_ms: millis_of(updated),
                source: source.to_owned(),
            };
            self.unsaved.lock().insert(row.item_id.clone(), row);
            self.unsaved.changed.notify_one();
        }
    }

    /// Writes every recorded change not yet in the store, waiting for a write under way:
    /// the daemon's last step before it closes the store.
    pub async fn flush(&self) {
        if let Some(store) = &self.store {
            self.unsaved.write(store).await;
        }
    }

    /// Starts a background ILS lookup when the item is unknown or its state is old. Never
    /// waits: the caller decides from what the cache holds now.
    pub fn refresh_if_stale(&self, item: &str, ils: Option<&Arc<dyn IlsConnector>>) {
        let Some(ils) = ils.filter(|_| self.config.lookup) else {
            return;
        };
        let fresh = self.read().get(item).is_some_and(|e| {
            e.updated
                .elapsed()
                .is_ok_and(|age| age < self.config.refresh)
        });
        if fresh {
            return;
        }
        {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !in_flight.insert(item.to_owned()) {
                return;
            }
        }
        let cache = self.clone();
        let ils = ils.clone();
        let item = item.to_owned();
        tokio::spawn(async move {
            match ils.item_information(&item).await {
                Ok(info) => match info.circulation {
                    Circulation::OnLoan => cache.record(&item, true, "ils"),
                    Circulation::Available | Circulation::OnHoldShelf | Circulation::InTransit => {
                        cache.record(&item, false, "ils");
                    }
                    Circulation::Other(code) => tracing::debug!(
                        %item, code,
                        "ILS circulation status says nothing about a loan; cache unchanged"
                    ),
                },
                Err(error) => tracing::debug!(%item, %error, "loans cache lookup failed"),
            }
            cache
                .in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&item);
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Parses an import file: one `item_id,on_loan` per line (`on_loan`: `1`/`0`,
/// `true`/`false`, `yes`/`no`); blank lines and `#` comments are skipped; a header line
/// `item_id,on_loan` is allowed. An error names the line.
pub fn parse_import(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("item_id")) {
            continue;
        }
        let (item, flag) = line
            .split_once(',')
            .ok_or_else(|| format!("line {}: expected `item_id,on_loan`", n + 1))?;
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("line {}: the item id is empty", n + 1));
        }
        let on_loan = match flag.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" => false,
            other => {
                return Err(format!(
                    "line {}: on_loan must be 1/0, true/false or yes/no, not `{other}`",
                    n + 1
                ));
            }
        };
        rows.push((item.to_owned(), on_loan));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_parse_or_name_the_bad_line() {
        let rows =
            parse_import("item_id,on_loan\n# comment\n1001,1\n 1002 , no \n\n1003,TRUE\n").unwrap();
        assert_eq!(
            rows,
            [
                ("1001".into(), true),
                ("1002".into(), false),
                ("1003".into(), true)
            ]
        );
        let cases = [
            ("1001", "line 1: expected"),
            ("x,1\n,1", "line 2: the item id is empty"),
            ("1,maybe", "line 1: on_loan must be"),
        ];
        for (text, want) in cases {
            let err = parse_import(text).unwrap_err();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    async fn cache_in_a_fresh_store() -> (tempfile::TempDir, Store, LoansCache) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("loans.db")).await.unwrap();
        let cache = LoansCache::load(store.clone(), &LoansConfig::default())
            .await
            .unwrap();
        (dir, store, cache)
    }

    #[tokio::test]
    async fn recorded_states_are_read_at_once_and_survive_a_reload() {
        let (_dir, store, cache) = cache_in_a_fresh_store().await;
        assert_eq!(cache.on_loan("1001"), None);
        cache.record("1001", true, "checkout");
        assert_eq!(cache.on_loan("1001"), Some(true));
        cache.flush().await;
        let again = LoansCache::load(store.clone(), &LoansConfig::default())
            .await
            .unwrap();
        assert_eq!(again.on_loan("1001"), Some(true));
        assert_eq!(again.len(), 1);
        store.close().await;
    }

    /// Many changes from many tasks at once (a busy SIP2 face) end in the store with each
    /// item's newest state, through the one writer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_changes_is_saved_with_each_items_newest_state() {
        let (_dir, store, cache) = cache_in_a_fresh_store().await;
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    for round in 0..100 {
                        // Even rounds lend a task's own item, odd rounds return it; the
                        // last round (99) returns it.
                        let item = format!("item-{task}");
                        cache.record(&item, round % 2 == 0, "checkout");
                        cache.record(&format!("shared-{}", round % 10), true, "checkout");
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        cache.flush().await;
        let mut saved: Vec<(String, bool)> = store
            .loans()
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.item_id, row.on_loan))
            .collect();
        saved.sort();
        let mut want: Vec<(String, bool)> = (0..8)
            .map(|task| (format!("item-{task}"), false))
            .chain((0..10).map(|n| (format!("shared-{n}"), true)))
            .collect();
        want.sort();
        assert_eq!(saved, want);
        store.close().await;
    }
}
