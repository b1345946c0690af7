//! Offline store-and-forward: what a station may do while the library system is away, and
//! the replayer that hands the queued transactions to it, in order and never twice, when
//! it is back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use crate::bus::Event;
use crate::ils::connector::{Circulation, IlsCallError, IlsConnector, Learned};
use crate::store::{NewWork, QueueState, QueuedKind, QueuedRow, Store, StoreError};

/// Which transactions a station takes while the ILS is offline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OfflineMode {
    /// None: the station tells patrons to come back or see staff.
    #[default]
    Off,
    /// Returns only.
    Checkin,
    /// Returns, and loans within the limits.
    CheckinCheckout,
}

/// A station's offline policy (`[stations.offline]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflinePolicy {
    /// `off`, `checkin` or `checkin-checkout`.
    pub mode: OfflineMode,
    /// Offline loans one patron may have waiting for replay (checkin-checkout only).
    pub max_items_per_patron: u32,
    /// The due date given for an offline loan: this many days after the loan.
    pub loan_days: u32,
}

impl Default for OfflinePolicy {
    fn default() -> Self {
        Self {
            mode: OfflineMode::Off,
            max_items_per_patron: 5,
            loan_days: 14,
        }
    }
}

impl OfflinePolicy {
    /// Whether returns are taken offline.
    pub const fn takes_checkins(&self) -> bool {
        !matches!(self.mode, OfflineMode::Off)
    }

    /// Whether loans are taken offline.
    pub const fn takes_checkouts(&self) -> bool {
        matches!(self.mode, OfflineMode::CheckinCheckout)
    }

    /// The due date of an offline loan made `at`.
    pub fn due(&self, at: SystemTime) -> SystemTime {
        at + Duration::from_hours(u64::from(self.loan_days) * 24)
    }
}

/// How many times a transaction whose outcome stays unknown is tried before staff get it.
const MAX_ATTEMPTS: i64 = 5;

/// What the replayer needs.
pub struct Replayer {
    /// The queue.
    pub store: Store,
    /// The library system.
    pub ils: Arc<dyn IlsConnector>,
    /// Where outcomes are journaled.
    pub events: mpsc::Sender<Event>,
    /// Rung when a transaction is queued (so replay starts without waiting for the pause).
    pub wake: Arc<Notify>,
    /// How long to wait while the ILS is offline or the queue empty.
    pub pause: Duration,
}

/// What became of one replay step.
enum Step {
    /// A row was finished; go on at once.
    Finished,
    /// Nothing to do, or the ILS is away: wait.
    Wait,
}

impl Replayer {
    /// Replays until `cancel`. A store failure is logged and retried after the pause.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let step = if self.ils.is_online() {
                match self.step().await {
                    Ok(step) => step,
                    Err(e) => {
                        tracing::error!(error = %e, "offline queue replay cannot read the store");
                        Step::Wait
                    }
                }
            } else {
                Step::Wait
            };
            if matches!(step, Step::Wait) {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.pause) => {}
                }
            } else if cancel.is_cancelled() {
                return;
            }
        }
    }

    /// Replays the oldest queued transaction, if the ILS takes it.
    async fn step(&self) -> Result<Step, StoreError> {
        let Some(row) = self.store.next_to_replay().await? else {
            return Ok(Step::Wait);
        };
        if row.state == QueueState::Replaying {
            // Sent before a stop or a lost answer: it may have reached the ILS. Look before
            // sending it again, so it never happens twice.
            match self.ils.item_information(&row.item_id).await {
                Ok(info) if already_done(row.kind, info.circulation) => {
                    let detail = format!("the ILS already shows it done ({:?})", info.circulation);
                    self.store
                        .finish_queued(
                            row.id,
                            QueueState::Done,
                            &serde_json::json!({ "already_done": detail }).to_string(),
                        )
                        .await?;
                    self.journal(&row, "already_done", detail).await;
                    return Ok(Step::Finished);
                }
                Ok(_) => {}
                Err(IlsCallError::Failed(reason)) => {
                    return self
                        .fail(&row, format!("item information failed: {reason}"))
                        .await;
                }
                Err(_) => return Ok(Step::Wait),
            }
            if row.attempts >= MAX_ATTEMPTS {
                return self
                    .fail(
                        &row,
                        format!("outcome still unknown after {} attempts", row.attempts),
                    )
                    .await;
            }
        }
        self.store.mark_replaying(row.id).await?;
        let result = match row.kind {
            QueuedKind::Checkin => {
                self.ils
                    .checkin_offline(&row.item_id, row.at())
                    .await
                    .map(|o| {
                        let json = serde_json::to_value(&o);
                        (o.ok, o.learned, o.screen_message, json)
                    })
            }
            QueuedKind::Checkout => {
                let patron = row.patron.clone().unwrap_or_default();
                let due = row.due().unwrap_or_else(|| row.at());
                self.ils
                    .checkout_offline(&patron, &row.item_id, row.at(), due)
                    .await
                    .map(|o| {
                        let json = serde_json::to_value(&o);
                        (o.ok, o.learned, o.screen_message, json)
                    })
            }
        };
        match result {
            Ok((true, _, _, outcome)) => {
                let outcome = outcome.map(|v| v.to_string()).unwrap_or_default();
                self.store
                    .finish_queued(row.id, QueueState::Done, &outcome)
                    .await?;
                self.journal(&row, "done", "accepted by the ILS".into())
                    .await;
                Ok(Step::Finished)
            }
            // The answer was lost and the ILS's view of the item says it did not happen (the
            // request never reached it, or it was refused: a resend will say which). Not a
            // refusal to put on the worklist: left `replaying`, like an unknown outcome, so
            // the next step looks again and resends, at most `MAX_ATTEMPTS` times, never
            // while the ILS shows it done.
            Ok((false, Learned::Recovered, _, _)) => {
                tracing::warn!(queue_id = row.id, item = %row.item_id, "replay answer lost and the ILS shows it not done; will send again");
                Ok(Step::Wait)
            }
            Ok((false, Learned::Answered, screen, _)) => {
                let reason = if screen.is_empty() {
                    "the ILS refused it (no screen message)".to_owned()
                } else {
                    format!("the ILS refused it: {}", screen.join(" / "))
                };
                self.fail(&row, reason).await
            }
            Err(IlsCallError::Offline(_)) => {
                // Not sent: back in the queue, in its place.
                self.store.requeue(row.id).await?;
                Ok(Step::Wait)
            }
            // Left `replaying`: the next step looks before resending.
            Err(IlsCallError::OutcomeUnknown(reason)) => {
                crate::metrics::Replayed {
                    queue_id: row.id,
                    transaction: row.kind.as_str(),
                    item: &row.item_id,
                    outcome: "outcome_unknown",
                    detail: &reason,
                }
                .emit();
                Ok(Step::Wait)
            }
            Err(IlsCallError::Failed(reason)) => self.fail(&row, reason).await,
        }
    }

    async fn fail(&self, row: &QueuedRow, reason: String) -> Result<Step, StoreError> {
        self.store
            .finish_queued(
                row.id,
                QueueState::Failed,
                &serde_json::json!({ "failed": reason }).to_string(),
            )
            .await?;
        self.store
            .add_work(&NewWork {
                kind: "replay_failed",
                station: row.station.clone(),
                item_id: Some(row.item_id.clone()),
                uid: None,
                reason: format!("offline {} not accepted: {reason}", row.kind.as_str()),
                ref_id: Some(row.id),
            })
            .await?;
        self.journal(row, "failed", reason).await;
        Ok(Step::Finished)
    }

    /// Journals (and logs and counts) a replay's final outcome.
    async fn journal(&self, row: &QueuedRow, outcome: &'static str, detail: String) {
        crate::metrics::Replayed {
            queue_id: row.id,
            transaction: row.kind.as_str(),
            item: &row.item_id,
            outcome,
            detail: &detail,
        }
        .emit();
        let _ = self
            .events
            .send(Event::Station(Activity::Replayed {
                station: row.station.clone(),
                queue_id: row.id,
                transaction: row.kind.as_str(),
                item: row.item_id.clone(),
                outcome,
                detail,
            }))
            .await;
    }
}

/// Whether the ILS's view of the item shows the transaction already happened.
fn already_done(kind: QueuedKind, circulation: Circulation) -> bool {
    match kind {
        QueuedKind::Checkin => circulation != Circulation::OnLoan,
        QueuedKind::Checkout => circulation == Circulation::OnLoan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_item_state_says_about_a_transaction_that_may_have_happened() {
        let rows = [
            (QueuedKind::Checkin, Circulation::Available, true),
            (QueuedKind::Checkin, Circulation::OnHoldShelf, true),
            (QueuedKind::Checkin, Circulation::OnLoan, false),
            (QueuedKind::Checkout, Circulation::OnLoan, true),
            (QueuedKind::Checkout, Circulation::Available, false),
        ];
        for (kind, circulation, done) in rows {
            assert_eq!(
                already_done(kind, circulation),
                done,
                "{kind:?} {circulation:?}"
            );
        }
    }

    #[test]
    fn policies_say_what_they_take_and_the_due_date() {
        let policy: OfflinePolicy =
            toml::from_str("mode = \"checkin-checkout\"\nloan_days = 7").unwrap();
        assert!(policy.takes_checkins() && policy.takes_checkouts());
        let at = SystemTime::UNIX_EPOCH;
        assert_eq!(policy.due(at), at + Duration::from_hours(7 * 24));
        let checkin: OfflinePolicy = toml::from_str("mode = \"checkin\"").unwrap();
        assert!(checkin.takes_checkins() && !checkin.takes_checkouts());
        assert!(!OfflinePolicy::default().takes_checkins());
        assert!(toml::from_str::<OfflinePolicy>("mode = \"sometimes\"").is_err());
    }
}
