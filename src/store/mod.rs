//! The local store: SQLite through sqlx, with embedded migrations.
//!
//! Durability first (DESIGN.md principle 3): WAL journal, `synchronous=FULL`, so a
//! transaction that returned from `commit` survives a power cut. Queries are runtime
//! `query`/`query_as` with portable SQL, so a PostgreSQL backend can follow.

mod journal;
mod loans;
mod outbox;
mod owed;
mod queue;
mod runs;
mod stats;
mod worklist;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use journal::{JournalEntry, JournalRow};
pub use loans::LoanRow;
pub use outbox::{CursorRow, JournalFilter};
pub use owed::{OwedRow, OwedState};
pub use queue::{NewQueued, QueueState, QueuedKind, QueuedRow};
pub use runs::{JournalSelect, OpenPresence, OpenSession, RunMark};
pub use stats::{BinRow, HOUR_MS, StatsRow, Together};
pub use worklist::{NewWork, WorkRow};

/// `at` in ms since the Unix epoch, as the store keeps times.
pub fn millis_of(at: std::time::SystemTime) -> i64 {
    journal::millis(at)
}

/// Now, in ms since the Unix epoch.
pub fn millis_now() -> i64 {
    journal::millis(std::time::SystemTime::now())
}

/// What went wrong with the store. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The lock that serialises migrations could not be taken.
    #[error("cannot lock {path} to migrate the store: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the store {path}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored payload is not the JSON it should be.
    #[error("journal row {id} has a payload that is not JSON: {source}")]
    Payload {
        /// The row.
        id: i64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Takes the exclusive lock on `<database>.migrate-lock`, held while a store is opened
/// and migrated, waiting for another process (or another open in this one) that holds
/// it; released when the returned file is dropped.
async fn migration_lock(database: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".migrate-lock");
    let path = PathBuf::from(name);
    let lock_error = |source| StoreError::Lock {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|join| lock_error(std::io::Error::other(join)))?
        .map_err(lock_error)
}

/// The daemon's store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if missing) the SQLite file at `path` and runs the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // sqlx cannot lock an SQLite database while it migrates, and switching a fresh file
        // to WAL needs it alone: two processes opening a fresh store at once (the daemon
        // starting while `rfidgw journal` reads) would both apply the same migration, or
        // fail "database is locked". A lock file beside the database serialises opening.
        let lock = migration_lock(path).await?;
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // One writer is all SQLite allows; a few more connections serve readers (API).
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let migrated = sqlx::migrate!("./migrations/sqlite").run(&pool).await;
        drop(lock);
        migrated.map_err(|source| StoreError::Migrate {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpoints the WAL into the main file and closes every connection.
    pub async fn close(&self) {
        // A failed checkpoint loses nothing (the WAL stays and is replayed on open).
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint at shutdown failed; it will run at next start");
        }
        self.pool.close().await;
    }

    /// SQLite's own consistency check: `"ok"` or the list of problems it found.
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?;
        Ok(verdict)
    }

    /// The pool, for the modules that own tables.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Wanted states as `,a,b,` (`''` for all), matched in SQL with
/// `$n = '' OR instr($n, ',' || state || ',') > 0`: one static query for any set.
fn state_list<'a>(states: impl Iterator<Item = &'a str>) -> String {
    states.fold(String::new(), |mut list, state| {
        list.push(',');
        list.push_str(state);
        list.push(',');
        list
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_creates_the_file_and_directories_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state/rfidgw.db");
        let store = Store::open(&path).await.unwrap();
        assert!(path.is_file());
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL (2)");
        let (migrations,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(migrations >= 1);
        store.close().await;
    }

    #[tokio::test]
    async fn reopening_an_existing_store_keeps_its_data_and_does_not_remigrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rfidgw.db");
        let store = Store::open(&path).await.unwrap();
        store
            .append(&[JournalEntry::new("test", serde_json::json!({"n": 1}))])
            .await
            .unwrap();
        store.close().await;
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.journal_len().await.unwrap(), 1);
        store.close().await;
    }

    /// The daemon starting while an operator command opens the same fresh store: both
    /// migrate, and neither may trip over the other's half-applied migration.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_opened_at_once_on_a_fresh_file_all_migrate() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("rfidgw.db");
            let opens: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    tokio::spawn(async move { Store::open(&path).await })
                })
                .collect();
            for open in opens {
                let store = open.await.unwrap().unwrap();
                assert_eq!(store.journal_len().await.unwrap(), 0);
                store.close().await;
            }
        }
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_gives_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(
            &path,
            b"this is not sqlite, just some text that is long enough",
        )
        .unwrap();
        let error = Store::open(&path).await.unwrap_err().to_string();
        assert!(error.contains("garbage.db"), "{error}");
    }
}
