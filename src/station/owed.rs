//! Tag security writes that stations owe, and the book that completes them.
//!
//! A return must leave its item secured and a loan unsecured. The write follows the ILS's
//! answer (transaction first, tag second). Before the ILS call a `pending` row is committed;
//! if the write is then confirmed the row is `done`, otherwise it is `owed`: the book keeps
//! every open row in memory by UID, and whenever any reader of the site sees that tag again
//! it writes it there and then. After the grace period an owed write is raised to the
//! staff worklist, and still completes if the tag turns up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rfidgw_driver::{CommandAnswer, DeviceCommand, DeviceHandle, Uid};
use rfidgw_tag::{SecurityConfig, SecurityMode};
use tokio::sync::mpsc;

use super::activity::{Activity, SecurityOutcome};
use crate::bus::Event;
use crate::store::{NewWork, OwedRow, OwedState, Store, StoreError};

/// The command that secures (`secure`) or unsecures a tag under the site's security mode;
/// `None` when the mode keeps the state off the tag (database mode).
pub fn security_command(
    security: &SecurityConfig,
    uid: &Uid,
    secure: bool,
) -> Option<DeviceCommand> {
    let uid = uid.clone();
    match security.mode {
        SecurityMode::Afi => Some(DeviceCommand::WriteAfi {
            uid,
            afi: if secure {
                security.secured_afi
            } else {
                security.unsecured_afi
            },
        }),
        SecurityMode::Eas => Some(DeviceCommand::WriteEas { uid, on: secure }),
        // The config check refuses return and self-check stations in epc-bit mode (the HF
        // drivers cannot write a UHF EPC), so only database mode is left.
        SecurityMode::EpcBit | SecurityMode::Database => None,
    }
}

/// Sends a security write and waits for its read-back: `Ok` only when confirmed.
pub async fn write_security(
    handle: &DeviceHandle,
    command: DeviceCommand,
    within: Duration,
) -> Result<(), String> {
    match handle.call(command, within).await {
        Ok(Ok(CommandAnswer::Written(report))) if report.confirmed() => Ok(()),
        Ok(Ok(CommandAnswer::Written(report))) => Err(match report.read_back {
            rfidgw_driver::ReadBack::Differs { found } => {
                format!("read back {found} after {} writes", report.attempts)
            }
            rfidgw_driver::ReadBack::NotRead { reason } => format!("not read back: {reason}"),
            rfidgw_driver::ReadBack::Confirmed => unreachable!("handled above"),
        }),
        Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
        Ok(Err(refusal)) => Err(format!("the reader refused: {refusal}")),
        Err(error) => Err(error.to_string()),
    }
}

/// The open owed writes, by UID, shared by every station and the pipeline.
#[derive(Clone)]
pub struct OwedBook {
    inner: Arc<Mutex<Book>>,
    store: Store,
    security: SecurityConfig,
    handles: Arc<HashMap<String, DeviceHandle>>,
    events: mpsc::Sender<Event>,
    write_within: Duration,
}

#[derive(Default)]
struct Book {
    /// UID (hex) → open owed rows.
    open: HashMap<String, Vec<OwedRow>>,
    /// UIDs with a completion under way (one write at a time per tag).
    writing: HashSet<String>,
}

impl OwedBook {
    /// A book over the store's open rows. Call [`OwedBook::load`] once at start.
    pub fn new(
        store: Store,
        security: SecurityConfig,
        handles: Arc<HashMap<String, DeviceHandle>>,
        events: mpsc::Sender<Event>,
        write_within: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Book::default())),
            store,
            security,
            handles,
            events,
            write_within,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Settles what a crash left `pending` and loads every open row. Loans whose unsecure
    /// was pending are raised to staff at once (the loan may not have happened).
    pub async fn load(&self) -> Result<(), StoreError> {
        for row in self.store.settle_pending_writes().await? {
            crate::metrics::OwedWrite {
                station: &row.station,
                uid: &row.uid,
                item: row.item_id.as_deref(),
                state: "unfinished",
                detail: row.state.as_str(),
            }
            .emit();
            if row.state == OwedState::Raised {
                self.raise_to_staff(&row).await?;
            }
        }
        let rows = self
            .store
            .owed_writes(&[OwedState::Owed, OwedState::Raised], u32::MAX)
            .await?;
        let mut book = self.book();
        for row in rows {
            book.open.entry(row.uid.clone()).or_default().push(row);
        }
        Ok(())
    }

    /// Whether the newest open owed write for `uid` is an un-secure: the item was lent and
    /// its tag still says secured. In memory, for the gate's decision.
    pub fn loan_write_owed(&self, uid: &Uid) -> bool {
        self.book()
            .open
            .get(&uid.to_string())
            .and_then(|rows| rows.last())
            .is_some_and(|row| !row.secure)
    }

    /// How many writes are owed.
    pub fn open_count(&self) -> usize {
        self.book().open.values().map(Vec::len).sum()
    }

    /// The tag half of a transaction whose `pending` row is `owed_id`: write `secure` to the
    /// tag through `handle` and read it back; confirmed → `done`, else `owed` (kept in the
    /// book and journaled).
    pub async fn settle(
        &self,
        owed_id: i64,
        handle: Option<&DeviceHandle>,
        (station, uid, item): (&str, &Uid, Option<&str>),
        secure: bool,
    ) -> SecurityOutcome {
        let Some(command) = security_command(&self.security, uid, secure) else {
            let _ = self
                .store
                .set_owed_state(owed_id, OwedState::Done, None)
                .await;
            return SecurityOutcome::NotNeeded;
        };
        let result = match handle {
            Some(handle) => write_security(handle, command, self.write_within).await,
            None => Err("no command path to the reader".into()),
        };
        match result {
            Ok(()) => match self
                .store
                .set_owed_state(owed_id, OwedState::Done, None)
                .await
            {
                Ok(()) => SecurityOutcome::Confirmed,
                // The tag is right; only the record failed. Keep it owed in memory so the
                // next sighting rewrites (harmless) and records it.
                Err(e) => {
                    self.keep_owed(owed_id, station, uid, item, secure, e.to_string())
                        .await
                }
            },
            Err(reason) => {
                self.keep_owed(owed_id, station, uid, item, secure, reason)
                    .await
            }
        }
    }

    async fn keep_owed(
        &self,
        owed_id: i64,
        station: &str,
        uid: &Uid,
        item: Option<&str>,
        secure: bool,
        reason: String,
    ) -> SecurityOutcome {
        let reason = format!(
            "{} not confirmed: {reason}",
            if secure { "secure" } else { "unsecure" }
        );
        if let Err(e) = self
            .store
            .set_owed_state(owed_id, OwedState::Owed, Some(&reason))
            .await
        {
            // The row stays `pending`, which the next start turns into owed or raised.
            tracing::error!(owed_id, error = %e, "cannot record an owed write; it stays pending");
        }
        crate::metrics::OwedWrite {
            station,
            uid: &uid.to_string(),
            item,
            state: "owed",
            detail: &reason,
        }
        .emit();
        let now = crate::store::millis_now();
        let row = OwedRow {
            id: owed_id,
            station: station.to_owned(),
            uid: uid.to_string(),
            item_id: item.map(str::to_owned),
            secure,
            reason: reason.clone(),
            state: OwedState::Owed,
            created_ms: now,
            updated_ms: now,
        };
        self.book()
            .open
            .entry(row.uid.clone())
            .or_default()
            .push(row);
        self.journal(Activity::OwedWrite {
            station: station.to_owned(),
            owed_id,
            uid: uid.to_string(),
            item: item.map(str::to_owned),
            secure,
            state: "owed",
            detail: reason.clone(),
        })
        .await;
        SecurityOutcome::Owed { owed_id, reason }
    }

    /// Cancels a pending write (the ILS said no: the tag keeps its state).
    pub async fn cancel(&self, owed_id: i64) {
        if let Err(e) = self
            .store
            .set_owed_state(owed_id, OwedState::Cancelled, None)
            .await
        {
            tracing::error!(owed_id, error = %e, "cannot cancel a pending tag write");
        }
    }

    /// Any reader saw `uid`: if a write is owed for it, do it there (in a task of its own;
    /// the caller never waits).
    pub fn sighted(&self, device: &str, uid: &Uid) {
        let key = uid.to_string();
        let row = {
            let mut book = self.book();
            let Some(row) = book.open.get(&key).and_then(|rows| rows.last().cloned()) else {
                return;
            };
            if !book.writing.insert(key.clone()) {
                return;
            }
            row
        };
        let Some(handle) = self.handles.get(device).cloned() else {
            self.book().writing.remove(&key);
            return;
        };
        let book = self.clone();
        let uid = uid.clone();
        let device = device.to_owned();
        tokio::spawn(async move {
            book.complete(row, &handle, &uid, &device).await;
            book.book().writing.remove(&key);
        });
    }

    async fn complete(&self, row: OwedRow, handle: &DeviceHandle, uid: &Uid, device: &str) {
        // Staff may have resolved the write through the API since it was booked (secured
        // by hand, item withdrawn): the store decides, and a resolved write is not done.
        match self.store.owed_write(row.id).await {
            Ok(Some(now)) if matches!(now.state, OwedState::Owed | OwedState::Raised) => {}
            Ok(_) => {
                self.forget(&row.uid, row.id);
                tracing::info!(owed_id = row.id, uid = %row.uid, "owed tag write no longer open (resolved by staff): not done");
                return;
            }
            Err(error) => {
                tracing::warn!(owed_id = row.id, %error, "cannot check an owed tag write; tried again when the tag is next seen");
                return;
            }
        }
        let Some(command) = security_command(&self.security, uid, row.secure) else {
            return;
        };
        if let Err(reason) = write_security(handle, command, self.write_within).await {
            tracing::info!(uid = %row.uid, device, %reason, "owed tag write tried again, not confirmed");
            return;
        }
        // The newest row decides the tag's state; every open row of the tag is settled by it.
        let rows = self.book().open.remove(&row.uid).unwrap_or_default();
        for done in &rows {
            if let Err(e) = self
                .store
                .set_owed_state(done.id, OwedState::Done, None)
                .await
            {
                tracing::error!(owed_id = done.id, error = %e, "cannot record a completed owed write");
            }
            let _ = self
                .store
                .resolve_work_about("owed_write_overdue", done.id, "completed automatically")
                .await;
        }
        let detail = format!("completed on {device}");
        crate::metrics::OwedWrite {
            station: &row.station,
            uid: &row.uid,
            item: row.item_id.as_deref(),
            state: "done",
            detail: &detail,
        }
        .emit();
        self.journal(Activity::OwedWrite {
            station: row.station.clone(),
            owed_id: row.id,
            uid: row.uid.clone(),
            item: row.item_id.clone(),
            secure: row.secure,
            state: "done",
            detail,
        })
        .await;
    }

    /// Drops the row `id` of tag `uid` from the book.
    fn forget(&self, uid: &str, id: i64) {
        let mut book = self.book();
        if let Some(rows) = book.open.get_mut(uid) {
            rows.retain(|r| r.id != id);
            if rows.is_empty() {
                book.open.remove(uid);
            }
        }
    }

    /// Raises writes owed for longer than `grace` to the staff worklist.
    pub async fn raise_overdue(&self, grace: Duration) {
        let cutoff = crate::store::millis_of(SystemTime::now() - grace);
        let overdue: Vec<OwedRow> = {
            let mut book = self.book();
            book.open
                .values_mut()
                .flatten()
                .filter(|row| row.state == OwedState::Owed && row.updated_ms < cutoff)
                .map(|row| {
                    row.state = OwedState::Raised;
                    row.clone()
                })
                .collect()
        };
        for row in overdue {
            if let Err(e) = self
                .store
                .set_owed_state(row.id, OwedState::Raised, None)
                .await
            {
                tracing::error!(owed_id = row.id, error = %e, "cannot raise an owed write");
                continue;
            }
            if let Err(e) = self.raise_to_staff(&row).await {
                tracing::error!(owed_id = row.id, error = %e, "cannot add an owed write to the worklist");
            }
        }
    }

    async fn raise_to_staff(&self, row: &OwedRow) -> Result<(), StoreError> {
        let what = if row.secure {
            "returned but not secured"
        } else {
            "lent but still secured"
        };
        self.store
            .add_work(&NewWork {
                kind: "owed_write_overdue",
                station: row.station.clone(),
                item_id: row.item_id.clone(),
                uid: Some(row.uid.clone()),
                reason: format!("{what}: {}", row.reason),
                ref_id: Some(row.id),
            })
            .await?;
        let detail = format!("{what}: {}", row.reason);
        crate::metrics::OwedWrite {
            station: &row.station,
            uid: &row.uid,
            item: row.item_id.as_deref(),
            state: "raised",
            detail: &detail,
        }
        .emit();
        self.journal(Activity::OwedWrite {
            station: row.station.clone(),
            owed_id: row.id,
            uid: row.uid.clone(),
            item: row.item_id.clone(),
            secure: row.secure,
            state: "raised",
            detail,
        })
        .await;
        Ok(())
    }

    async fn journal(&self, activity: Activity) {
        let _ = self.events.send(Event::Station(activity)).await;
    }
}
