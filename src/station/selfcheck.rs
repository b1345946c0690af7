//! The self-check station: a patron identified by a card reader (or a kiosk, with a PIN
//! when the site asks for one), the items on the pad lent one by one, each unsecured only
//! after the ILS said yes and read back, and a receipt at the end.
//!
//! Sets are lent whole: an item whose tag says it has several parts waits `set_wait_ms` for
//! the others, then is refused with what is missing. Offline, loans follow the station's
//! offline policy (queued durably, with the policy's due date, up to a per-patron limit).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use rfidgw_driver::{DeviceEvent, Uid};
use rfidgw_sip2::Secret;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, LoanRecord, ReceiptLine, SecurityOutcome, SessionSummary};
use super::offline::OfflinePolicy;
use super::transaction::{Circulation, Field, Present, StationInput, set_complete, sleep_until};
use crate::ils::connector::{IlsCallError, Learned, PatronProblem};
use crate::store::{NewQueued, NewWork, QueuedKind};

/// What item information showed after a lost answer that was never applied.
const NOT_APPLIED: &str = "item information shows it was not applied";

/// `[stations.selfcheck]`: a self-check station's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfCheckConfig {
    /// A patron must give a PIN (through the kiosk) before borrowing; a card alone waits.
    pub require_pin: bool,
    /// A session ends after the pad has been empty and nothing happened for this long.
    pub idle_end_ms: u64,
    /// How long an item of several parts waits for its other parts on the pad.
    pub set_wait_ms: u64,
}

impl Default for SelfCheckConfig {
    fn default() -> Self {
        Self {
            require_pin: false,
            idle_end_ms: 20_000,
            set_wait_ms: 1_500,
        }
    }
}

/// What the status API shows of a self-check station (no patron data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SelfCheckStatus {
    /// The session running now.
    pub session: Option<String>,
    /// Whether it runs offline.
    pub offline: bool,
    /// Items lent in it so far.
    pub borrowed: usize,
    /// Items refused in it so far.
    pub failed: usize,
    /// A card was read and the kiosk must send the PIN.
    pub waiting_for_pin: bool,
    /// The patron's fees as the ILS wrote them, for the kiosk's display.
    pub fee_amount: Option<String>,
    /// Holds ready for pick-up (count), for the kiosk's display.
    pub holds_ready: Option<usize>,
    /// Sessions since the daemon started.
    pub sessions: u64,
}

struct Session {
    id: String,
    patron: String,
    pin: Option<Secret>,
    offline: bool,
    borrowed: Vec<ReceiptLine>,
    failed: Vec<ReceiptLine>,
    /// Items dealt with in this session (lent or refused).
    done: HashSet<String>,
    last_activity: Instant,
    /// When it began: items already on the pad wait for their set from here.
    started: Instant,
    fee_amount: Option<String>,
    holds_ready: Option<usize>,
}

/// One self-check station's task.
pub struct SelfCheckStation {
    id: String,
    config: SelfCheckConfig,
    offline: OfflinePolicy,
    circulation: Circulation,
    field: Field,
    session: Option<Session>,
    /// A card read while a PIN is required: waiting for the kiosk.
    card_waiting: Option<String>,
    sessions: u64,
    seq: u64,
}

impl SelfCheckStation {
    /// A station.
    pub fn new(
        id: String,
        config: SelfCheckConfig,
        offline: OfflinePolicy,
        circulation: Circulation,
    ) -> Self {
        let station = Self {
            id,
            config,
            offline,
            circulation,
            field: Field::default(),
            session: None,
            card_waiting: None,
            sessions: 0,
            seq: 0,
        };
        station.show();
        station
    }

    /// Runs until `cancel` (between items), ending the open session with its receipt.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<StationInput>,
        cancel: CancellationToken,
    ) {
        loop {
            let wake = self.next_deadline();
            tokio::select! {
                () = cancel.cancelled() => break,
                input = inputs.recv() => match input {
                    Some(input) => self.apply(input).await,
                    None => break,
                },
                () = sleep_until(wake) => {}
            }
            while let Ok(input) = inputs.try_recv() {
                self.apply(input).await;
            }
            self.lend_waiting().await;
            self.end_if_idle().await;
        }
        self.end("device_stopped", None).await;
    }

    fn show(&self) {
        let status = SelfCheckStatus {
            session: self.session.as_ref().map(|s| s.id.clone()),
            offline: self.session.as_ref().is_some_and(|s| s.offline),
            borrowed: self.session.as_ref().map_or(0, |s| s.borrowed.len()),
            failed: self.session.as_ref().map_or(0, |s| s.failed.len()),
            waiting_for_pin: self.card_waiting.is_some(),
            fee_amount: self.session.as_ref().and_then(|s| s.fee_amount.clone()),
            holds_ready: self.session.as_ref().and_then(|s| s.holds_ready),
            sessions: self.sessions,
        };
        self.circulation.status.set_selfcheck(&self.id, status);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let session = self.session.as_ref()?;
        let set_wait = Duration::from_millis(self.config.set_wait_ms);
        let waiting = self
            .field
            .tags()
            .filter(|p| p.item().is_some_and(|i| !session.done.contains(i)))
            .map(|p| p.since.max(session.started) + set_wait)
            .min();
        let idle = session.last_activity + Duration::from_millis(self.config.idle_end_ms);
        Some(waiting.map_or(idle, |w| w.min(idle)))
    }

    async fn apply(&mut self, input: StationInput) {
        match input {
            StationInput::Report(report, decoded) => match report.event {
                DeviceEvent::TagArrived(read) => {
                    self.field.arrived(Present {
                        device: report.device,
                        uid: read.uid,
                        tag: decoded,
                        since: Instant::now(),
                    });
                    self.touch();
                }
                DeviceEvent::TagDeparted { uid } => {
                    self.field.departed(&uid);
                    self.touch();
                }
                DeviceEvent::Stopped { .. } => self.field.device_stopped(&report.device),
                DeviceEvent::Card(card) => {
                    if self.config.require_pin {
                        // The kiosk asks for the PIN and sends both.
                        self.end("next_patron", None).await;
                        self.card_waiting = Some(card.number);
                        self.show();
                    } else {
                        let _ = self.identify(card.number, None, "card").await;
                    }
                }
                _ => {}
            },
            StationInput::Patron { patron, pin, reply } => {
                if self.config.require_pin && pin.is_none() {
                    let _ = reply.send(Err("this station needs the patron's PIN".into()));
                    return;
                }
                let _ = reply.send(self.identify(patron, pin, "kiosk").await);
            }
            StationInput::Finish { presented, reply } => {
                if self.session.is_none() {
                    let _ = reply.send(Err(format!("no session at `{}`", self.id)));
                    return;
                }
                self.lend_waiting().await;
                self.end("finished", presented).await;
                let _ = reply.send(Ok(()));
            }
            StationInput::SortPlan { reply, .. } => {
                let _ = reply.send(Err(format!("`{}` is a self-check station", self.id)));
            }
        }
    }

    fn touch(&mut self) {
        if let Some(session) = &mut self.session {
            session.last_activity = Instant::now();
        }
    }

    /// Checks the patron with the ILS and opens a session (ending any other).
    async fn identify(
        &mut self,
        patron: String,
        pin: Option<Secret>,
        by: &'static str,
    ) -> Result<String, String> {
        self.end("next_patron", None).await;
        self.card_waiting = None;
        let c = self.circulation.clone();
        let check = match &c.ils {
            Some(ils) => ils.validate_patron(&patron, pin.as_ref()).await,
            None => Err(IlsCallError::Offline("no library system configured".into())),
        };
        let offline = match check {
            Ok(check) => match check.problem {
                None => false,
                Some(problem) => {
                    let reason = match &problem {
                        PatronProblem::Unknown => "unknown".to_owned(),
                        PatronProblem::WrongPin => "wrong_pin".to_owned(),
                        PatronProblem::Blocked { blocks } => format!(
                            "blocked: {}",
                            blocks
                                .iter()
                                .map(|b| format!("{b:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    self.patron_refused(reason.clone(), check.screen_message)
                        .await;
                    return Err(reason);
                }
            },
            Err(IlsCallError::Offline(_)) if self.offline.takes_checkouts() => true,
            Err(error) => {
                let reason = if matches!(error, IlsCallError::Offline(_)) {
                    "offline_checkout_off".to_owned()
                } else {
                    "ils_error".to_owned()
                };
                self.patron_refused(
                    reason.clone(),
                    vec!["Borrowing is not possible right now. Please see staff.".into()],
                )
                .await;
                return Err(format!("{reason}: {error}"));
            }
        };
        let (fee_amount, holds_ready) = match (&c.ils, offline) {
            (Some(ils), false) => match ils.patron_account(&patron, pin.as_ref()).await {
                Ok(account) => (account.fee_amount, Some(account.holds_ready.len())),
                Err(_) => (None, None),
            },
            _ => (None, None),
        };
        self.seq += 1;
        self.sessions += 1;
        let id = format!("S{}-{}", crate::store::millis_now(), self.seq);
        self.session = Some(Session {
            id: id.clone(),
            patron,
            pin,
            offline,
            borrowed: Vec::new(),
            failed: Vec::new(),
            done: HashSet::new(),
            last_activity: Instant::now(),
            started: Instant::now(),
            fee_amount,
            holds_ready,
        });
        crate::metrics::SessionStarted {
            station: &self.id,
            session: &id,
            offline,
        }
        .emit();
        c.journal(Activity::SessionStarted {
            station: self.id.clone(),
            session: id.clone(),
            by,
            offline,
        })
        .await;
        self.show();
        Ok(id)
    }

    async fn patron_refused(&self, reason: String, screen_message: Vec<String>) {
        crate::metrics::PatronRefused {
            station: &self.id,
            reason: &reason,
        }
        .emit();
        self.circulation
            .journal(Activity::PatronRefused {
                station: self.id.clone(),
                reason,
                screen_message,
            })
            .await;
    }

    /// Lends every item on the pad that is whole (or has waited long enough to be refused).
    async fn lend_waiting(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        let mut items: BTreeMap<String, Vec<Present>> = BTreeMap::new();
        for present in self.field.tags() {
            if let Some(item) = present.item().filter(|i| !session.done.contains(*i)) {
                items
                    .entry(item.to_owned())
                    .or_default()
                    .push(present.clone());
            }
        }
        let set_wait = Duration::from_millis(self.config.set_wait_ms);
        let started = session.started;
        for (item, parts) in items {
            let whole = set_complete(&parts);
            let waited = parts
                .iter()
                .map(|p| p.since.max(started))
                .min()
                .is_some_and(|t| t.elapsed() >= set_wait);
            match whole {
                Ok(()) => self.lend(&item, &parts).await,
                Err(missing) if waited => self.refuse(&item, &parts, missing).await,
                Err(_) => {}
            }
        }
        self.show();
    }

    async fn refuse(&mut self, item: &str, parts: &[Present], reason: String) {
        let Some(session) = &mut self.session else {
            return;
        };
        session.done.insert(item.to_owned());
        session.failed.push(ReceiptLine {
            item: item.to_owned(),
            title: None,
            due_date: None,
            reason: Some(reason.clone()),
        });
        let record = LoanRecord {
            station: self.id.clone(),
            session: session.id.clone(),
            device: parts[0].device.clone(),
            uids: parts.iter().map(|p| p.uid.to_string()).collect(),
            item: item.to_owned(),
            title: None,
            outcome: "refused",
            due_date: None,
            reason: Some(reason),
            screen_message: vec!["Please place all parts of this item on the pad.".into()],
            queue_id: None,
            security: vec![SecurityOutcome::Unchanged; parts.len()],
        };
        crate::metrics::ItemLoan {
            station: &self.id,
            session: &record.session,
            item,
            outcome: record.outcome,
        }
        .emit();
        self.circulation.journal(Activity::ItemLoan(record)).await;
    }

    /// One item: pending unsecure committed → checkout (or the offline queue) → unsecure
    /// each part with read-back → journal.
    #[allow(clippy::too_many_lines)] // one transaction, read top to bottom
    async fn lend(&mut self, item: &str, parts: &[Present]) {
        let c = self.circulation.clone();
        let Some(session) = &mut self.session else {
            return;
        };
        session.done.insert(item.to_owned());
        let device = parts[0].device.clone();
        let uids: Vec<Uid> = parts.iter().map(|p| p.uid.clone()).collect();
        let mut pending = Vec::new();
        for uid in &uids {
            match c
                .store
                .owe_pending(&self.id, &uid.to_string(), Some(item), false, "loan")
                .await
            {
                Ok(id) => pending.push(id),
                Err(e) => {
                    tracing::error!(station = %self.id, item, error = %e, "loan refused: the store cannot record it");
                    for id in pending {
                        c.owed.cancel(id).await;
                    }
                    session.failed.push(line(
                        item,
                        None,
                        None,
                        Some("the gateway's store failed".into()),
                    ));
                    return;
                }
            }
        }
        let mut record = LoanRecord {
            station: self.id.clone(),
            session: session.id.clone(),
            device: device.clone(),
            uids: uids.iter().map(ToString::to_string).collect(),
            item: item.to_owned(),
            title: None,
            outcome: "refused",
            due_date: None,
            reason: None,
            screen_message: Vec::new(),
            queue_id: None,
            security: Vec::new(),
        };
        let answer = if session.offline {
            Err(IlsCallError::Offline("the session runs offline".into()))
        } else {
            match &c.ils {
                Some(ils) => {
                    ils.checkout(&session.patron, item, session.pin.as_ref())
                        .await
                }
                None => Err(IlsCallError::Offline("no library system configured".into())),
            }
        };
        // A lost answer that item information shows was never applied: not a refusal, the
        // ILS never got the loan. That is "not sent" (the offline policy decides).
        let answer = match answer {
            Ok(outcome) if !outcome.ok && outcome.learned == Learned::Recovered => Err(
                IlsCallError::Offline(format!("the checkout's answer was lost; {NOT_APPLIED}")),
            ),
            other => other,
        };
        let lent = match answer {
            Ok(outcome) => {
                record.title.clone_from(&outcome.title);
                record.due_date.clone_from(&outcome.due_date);
                record.screen_message.clone_from(&outcome.screen_message);
                if outcome.ok {
                    record.outcome = if outcome.renewal {
                        "renewed"
                    } else {
                        "checked_out"
                    };
                    c.loans.record(item, true, "checkout");
                    true
                } else {
                    record.reason = Some(if outcome.screen_message.is_empty() {
                        "the library system refused the loan".into()
                    } else {
                        outcome.screen_message.join(" / ")
                    });
                    false
                }
            }
            Err(IlsCallError::Offline(reason)) => {
                self.lend_offline(item, &mut record, reason).await
            }
            Err(IlsCallError::OutcomeUnknown(reason) | IlsCallError::Failed(reason)) => {
                record.outcome = "outcome_unknown";
                record.reason = Some(format!("the loan's outcome is unknown: {reason}"));
                let work = NewWork {
                    kind: "outcome_unknown",
                    station: self.id.clone(),
                    item_id: Some(item.to_owned()),
                    uid: Some(record.uids[0].clone()),
                    reason: format!(
                        "checkout outcome unknown (the tag is still secured): {reason}"
                    ),
                    ref_id: None,
                };
                if let Err(e) = c.store.add_work(&work).await {
                    tracing::error!(station = %self.id, error = %e, "cannot add to the worklist");
                }
                false
            }
        };
        for (id, uid) in pending.iter().zip(&uids) {
            record.security.push(if lent {
                c.owed
                    .settle(
                        *id,
                        c.handles.get(&device),
                        (&self.id, uid, Some(item)),
                        false,
                    )
                    .await
            } else {
                c.owed.cancel(*id).await;
                SecurityOutcome::Unchanged
            });
        }
        let Some(session) = &mut self.session else {
            return;
        };
        let receipt = line(
            item,
            record.title.clone(),
            record.due_date.clone(),
            record.reason.clone(),
        );
        if lent {
            session.borrowed.push(receipt);
        } else {
            session.failed.push(receipt);
        }
        crate::metrics::ItemLoan {
            station: &self.id,
            session: &session.id,
            item,
            outcome: record.outcome,
        }
        .emit();
        c.journal(Activity::ItemLoan(record)).await;
    }

    /// An offline loan under the station's policy; `true` when queued.
    async fn lend_offline(&mut self, item: &str, record: &mut LoanRecord, reason: String) -> bool {
        let c = self.circulation.clone();
        let Some(session) = &mut self.session else {
            return false;
        };
        if !self.offline.takes_checkouts() {
            record.reason = Some(format!("the library system is offline: {reason}"));
            record.screen_message =
                vec!["Borrowing is not possible right now. Please see staff.".into()];
            return false;
        }
        session.offline = true;
        match c.store.offline_loans_of(&session.patron).await {
            Ok(count) if count >= self.offline.max_items_per_patron => {
                record.reason = Some(format!(
                    "offline limit reached ({} items per patron)",
                    self.offline.max_items_per_patron
                ));
                record.screen_message =
                    vec!["No more items can be borrowed until the library system is back.".into()];
                return false;
            }
            Ok(_) => {}
            Err(e) => {
                record.reason = Some(format!("the gateway's store failed: {e}"));
                return false;
            }
        }
        let at = SystemTime::now();
        let due = self.offline.due(at);
        let queued = c
            .store
            .enqueue(&NewQueued {
                station: self.id.clone(),
                kind: QueuedKind::Checkout,
                item_id: item.to_owned(),
                patron: Some(session.patron.clone()),
                at,
                due: Some(due),
            })
            .await;
        match queued {
            Ok(queue_id) => {
                crate::metrics::OfflineQueued {
                    station: &self.id,
                    queue_id,
                    transaction: "checkout",
                    item,
                }
                .emit();
                record.outcome = "queued_offline";
                record.queue_id = Some(queue_id);
                record.due_date = Some(due_text(due));
                record.screen_message =
                    vec!["Borrowed offline; your account will be updated shortly.".into()];
                c.loans.record(item, true, "checkout");
                c.replay.notify_one();
                c.journal(Activity::OfflineQueued {
                    station: self.id.clone(),
                    queue_id,
                    transaction: "checkout",
                    item: item.to_owned(),
                })
                .await;
                true
            }
            Err(e) => {
                record.reason = Some(format!("the gateway's store failed: {e}"));
                false
            }
        }
    }

    async fn end_if_idle(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        let idle = Duration::from_millis(self.config.idle_end_ms);
        if session.last_activity.elapsed() >= idle && self.field.is_empty() {
            self.end("idle", None).await;
        }
    }

    /// Ends the session with its receipt.
    async fn end(&mut self, ended: &'static str, presented: Option<u32>) {
        let Some(session) = self.session.take() else {
            return;
        };
        let decoded = u32::try_from(session.done.len()).unwrap_or(u32::MAX);
        let summary = SessionSummary {
            station: self.id.clone(),
            session: session.id.clone(),
            ended,
            borrowed: session.borrowed,
            failed: session.failed,
            offline: session.offline,
            presented,
            decoded,
            stack_mismatch: presented.is_some_and(|n| n != decoded),
        };
        crate::metrics::SessionEnded {
            station: &self.id,
            session: &session.id,
            ended,
            borrowed: summary.borrowed.len(),
            failed: summary.failed.len(),
        }
        .emit();
        self.circulation
            .journal(Activity::SessionEnded(summary))
            .await;
        self.show();
    }
}

fn line(
    item: &str,
    title: Option<String>,
    due_date: Option<String>,
    reason: Option<String>,
) -> ReceiptLine {
    ReceiptLine {
        item: item.to_owned(),
        title,
        due_date,
        reason,
    }
}

/// An offline due date as the receipt shows it (the library's local date).
fn due_text(due: SystemTime) -> String {
    let due = time::OffsetDateTime::from(due);
    let local = time::UtcOffset::current_local_offset().map_or(due, |o| due.to_offset(o));
    format!(
        "{:04}-{:02}-{:02}",
        local.year(),
        u8::from(local.month()),
        local.day()
    )
}
