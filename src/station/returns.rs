//! The return station: a drop box or a sorter's induction point. One item at a time: the
//! checkin, the sort decision, the re-secure, the divert, the patron's screen message.
//!
//! An item is taken once it has been alone in the field for `settle_ms` (a second item in
//! that time stops intake and asks for one item). Bin full, a jam or a stopped sorter stop
//! intake; an item already taken is finished (its divert fails visibly onto the worklist
//! rather than being lost).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rfidgw_driver::{CommandAnswer, DeviceCommand, DeviceEvent, LinkState, SorterState, Uid};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, ReturnRecord, ReturnTiming, SecurityOutcome};
use super::offline::OfflinePolicy;
use super::sortplan::{CheckinFacts, IlsFacts, PlanSelection, SortPlan, TagFacts};
use super::transaction::{
    Circulation, Field, Present, StationInput, local_now, set_complete, sleep_until,
};
use crate::ils::connector::{CheckinOutcome, IlsCallError, Learned};
use crate::store::{NewQueued, NewWork, QueuedKind};

/// What item information showed after a lost answer that was never applied.
const NOT_APPLIED: &str = "item information shows it was not applied";

/// `[stations.returns]`: a return station's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReturnConfig {
    /// The sorter device (one of the station's devices), when items are sorted.
    pub sorter: Option<String>,
    /// The sort plan file; a relative path is read from the config file's directory.
    /// Required with a sorter.
    pub sort_plan: Option<PathBuf>,
    /// How long an item must be alone in the field before it is taken (a second item in
    /// that time stops intake and asks for one item).
    pub settle_ms: u64,
}

impl Default for ReturnConfig {
    fn default() -> Self {
        Self {
            sorter: None,
            sort_plan: None,
            settle_ms: 300,
        }
    }
}

/// What the status API shows of a return station.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReturnStatus {
    /// Whether items are taken now.
    pub intake_open: bool,
    /// Why not, when closed.
    pub intake_stopped: Option<String>,
    /// The sort plan selection in force (`schedule` or a plan's name).
    pub plan: Option<String>,
    /// Items taken since the daemon started.
    pub returned: u64,
    /// Bins the sorter reports full.
    pub bins_full: Vec<u16>,
    /// Whether the sorter reports a jam.
    pub jam: bool,
}

/// One return station's task.
pub struct ReturnStation {
    id: String,
    config: ReturnConfig,
    offline: OfflinePolicy,
    plan: Option<Arc<SortPlan>>,
    selection: PlanSelection,
    circulation: Circulation,
    field: Field,
    /// Tags already dealt with (taken or refused) while they stay in the field.
    handled: HashSet<Uid>,
    /// Of those, the tags refused because intake was stopped: taken after all when intake
    /// opens again while they still lie in the field.
    paused: HashSet<Uid>,
    /// The group of tags last asked to be presented one at a time (asked once).
    asked: Option<Vec<Uid>>,
    sorter: SorterState,
    sorter_down: bool,
    returned: u64,
}

impl ReturnStation {
    /// A station; `plan` is the loaded sort plan (required with a sorter).
    pub fn new(
        id: String,
        config: ReturnConfig,
        offline: OfflinePolicy,
        plan: Option<Arc<SortPlan>>,
        circulation: Circulation,
    ) -> Self {
        let station = Self {
            id,
            config,
            offline,
            plan,
            selection: PlanSelection::Schedule,
            circulation,
            field: Field::default(),
            handled: HashSet::new(),
            paused: HashSet::new(),
            asked: None,
            sorter: SorterState::default(),
            sorter_down: false,
            returned: 0,
        };
        station.show();
        station
    }

    /// Runs until `cancel` (between items: an item being taken is finished first).
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<StationInput>,
        cancel: CancellationToken,
    ) {
        loop {
            let wake = self.next_deadline();
            tokio::select! {
                () = cancel.cancelled() => return,
                input = inputs.recv() => match input {
                    Some(input) => self.apply(input).await,
                    None => return,
                },
                () = sleep_until(wake) => {}
            }
            while let Ok(input) = inputs.try_recv() {
                self.apply(input).await;
            }
            self.take_next().await;
        }
    }

    fn intake_stopped(&self) -> Option<String> {
        if self.sorter_down {
            return Some("the sorter is not connected".into());
        }
        if self.sorter.jam {
            return Some("the sorter is jammed".into());
        }
        if !self.sorter.bins_full.is_empty() {
            let bins: Vec<String> = self.sorter.bins_full.iter().map(u16::to_string).collect();
            return Some(format!("bin {} full", bins.join(", ")));
        }
        None
    }

    fn show(&self) {
        let stopped = self.intake_stopped();
        let status = ReturnStatus {
            intake_open: stopped.is_none(),
            intake_stopped: stopped,
            plan: self.plan.as_ref().map(|_| match &self.selection {
                PlanSelection::Schedule => "schedule".to_owned(),
                PlanSelection::Named(name) => name.clone(),
            }),
            returned: self.returned,
            bins_full: self.sorter.bins_full.clone(),
            jam: self.sorter.jam,
        };
        self.circulation.status.set_return(&self.id, status);
    }

    async fn apply(&mut self, input: StationInput) {
        match input {
            StationInput::Report(report, decoded) => {
                let is_sorter = self.config.sorter.as_deref() == Some(report.device.as_str());
                match report.event {
                    DeviceEvent::TagArrived(read) if !is_sorter => {
                        self.field.arrived(Present {
                            device: report.device,
                            uid: read.uid,
                            tag: decoded,
                            since: Instant::now(),
                        });
                    }
                    DeviceEvent::TagDeparted { uid } => {
                        self.field.departed(&uid);
                        self.handled.remove(&uid);
                        self.paused.remove(&uid);
                    }
                    DeviceEvent::Stopped { .. } if is_sorter => {
                        self.set_sorter(self.sorter.clone(), true).await;
                    }
                    DeviceEvent::Stopped { .. } => self.field.device_stopped(&report.device),
                    DeviceEvent::Health { link, .. } if is_sorter => {
                        self.set_sorter(self.sorter.clone(), link != LinkState::Connected)
                            .await;
                    }
                    DeviceEvent::Sorter(state) if is_sorter => {
                        self.set_sorter(state, false).await;
                    }
                    _ => {}
                }
            }
            StationInput::SortPlan { plan, reply } => {
                let _ = reply.send(self.select_plan(plan).await);
            }
            StationInput::Patron { reply, .. } => {
                let _ = reply.send(Err(format!("`{}` is a return station", self.id)));
            }
            StationInput::Finish { reply, .. } => {
                let _ = reply.send(Err(format!("`{}` is a return station", self.id)));
            }
        }
    }

    async fn select_plan(&mut self, plan: Option<String>) -> Result<String, String> {
        let Some(sort_plan) = &self.plan else {
            return Err(format!("return station `{}` has no sort plan", self.id));
        };
        self.selection = match plan {
            None => PlanSelection::Schedule,
            Some(name) => sort_plan.select(&name).map_err(|e| e.to_string())?,
        };
        let now = sort_plan
            .active_plan(&self.selection, local_now())
            .to_owned();
        let shown = match &self.selection {
            PlanSelection::Schedule => "schedule".to_owned(),
            PlanSelection::Named(name) => name.clone(),
        };
        tracing::info!(station = %self.id, selection = %shown, plan = %now, "sort plan selection changed");
        self.circulation
            .journal(Activity::SortPlanChanged {
                station: self.id.clone(),
                plan: shown,
            })
            .await;
        self.show();
        Ok(now)
    }

    async fn set_sorter(&mut self, state: SorterState, down: bool) {
        let before = self.intake_stopped();
        self.sorter = state;
        self.sorter_down = down;
        let after = self.intake_stopped();
        if before != after {
            let (open, reason) = match &after {
                Some(reason) => (false, reason.clone()),
                None => (true, "the sorter is ready".to_owned()),
            };
            if open {
                tracing::info!(station = %self.id, "return intake open again");
                // Items refused while intake was stopped and still in the field are taken
                // now (the next `take_next`), without the patron lifting them off first.
                for uid in self.paused.drain() {
                    self.handled.remove(&uid);
                }
            } else {
                tracing::warn!(station = %self.id, %reason, "return intake stopped");
            }
            self.circulation
                .journal(Activity::IntakeChanged {
                    station: self.id.clone(),
                    open,
                    reason,
                })
                .await;
        }
        self.show();
    }

    /// When the oldest waiting item will have settled.
    fn next_deadline(&self) -> Option<Instant> {
        self.waiting()
            .map(|p| p.since + Duration::from_millis(self.config.settle_ms))
            .min()
    }

    fn waiting(&self) -> impl Iterator<Item = &Present> {
        self.field.tags().filter(|p| !self.handled.contains(&p.uid))
    }

    /// Takes the waiting item if it is alone and settled, or asks for one item.
    async fn take_next(&mut self) {
        let waiting: Vec<Present> = self.waiting().cloned().collect();
        if waiting.is_empty() {
            self.asked = None;
            return;
        }
        // Tags of one item (the parts of a set) count as one.
        let mut items: Vec<Option<&str>> = waiting.iter().map(Present::item).collect();
        items.sort_unstable();
        items.dedup();
        let uids: Vec<Uid> = waiting.iter().map(|p| p.uid.clone()).collect();
        if items.len() > 1 || items == [None] && waiting.len() > 1 {
            if self.asked.as_ref() != Some(&uids) {
                self.asked = Some(uids.clone());
                self.refuse(
                    &waiting,
                    "one_item_at_a_time",
                    "Please return one item at a time.",
                    None,
                )
                .await;
            }
            return;
        }
        let settle = Duration::from_millis(self.config.settle_ms);
        if waiting.iter().any(|p| p.since.elapsed() < settle) {
            return;
        }
        self.asked = None;
        if let Some(reason) = self.intake_stopped() {
            self.paused.extend(uids.iter().cloned());
            self.handled.extend(uids);
            self.refuse(
                &waiting,
                "intake_stopped",
                "Returns are paused. Please try again shortly or see staff.",
                Some(&reason),
            )
            .await;
            return;
        }
        let Some(item) = items[0].map(str::to_owned) else {
            self.handled.extend(uids);
            self.refuse(
                &waiting,
                "unreadable",
                "This item could not be read. Please hand it to staff.",
                None,
            )
            .await;
            return;
        };
        self.handled
            .extend(self.field.parts_of(&item).iter().map(|p| p.uid.clone()));
        let parts = self.field.parts_of(&item);
        self.take(&item, &parts).await;
    }

    async fn refuse(
        &self,
        waiting: &[Present],
        reason: &'static str,
        message: &str,
        detail: Option<&str>,
    ) {
        crate::metrics::ReturnRefused {
            station: &self.id,
            reason,
            detail,
        }
        .emit();
        self.circulation
            .journal(Activity::ReturnRefused {
                station: self.id.clone(),
                device: waiting[0].device.clone(),
                uids: waiting.iter().map(|p| p.uid.to_string()).collect(),
                reason,
                screen_message: message.to_owned(),
            })
            .await;
    }

    /// One item: pending re-secure committed → checkin (or the offline queue) → re-secure
    /// with read-back → sort → divert → journal.
    async fn take(&mut self, item: &str, parts: &[Present]) {
        let started = Instant::now();
        let c = self.circulation.clone();
        let device = parts[0].device.clone();
        let Some(pending) = self.owe_pending(item, parts).await else {
            return;
        };
        let ils_started = Instant::now();
        let (outcome, facts, screen_message, title, queue_id, resecure) = match set_complete(parts)
        {
            Err(missing) => (
                "rejected",
                rejected(&missing),
                vec![format!("Please return all parts together ({missing}).")],
                None,
                None,
                true,
            ),
            Ok(()) => self.checkin(item).await,
        };
        if outcome == "refused_offline" {
            for (id, _) in &pending {
                c.owed.cancel(*id).await;
            }
            self.refuse(
                parts,
                "offline_returns_off",
                &screen_message.join(" "),
                None,
            )
            .await;
            return;
        }
        let ils_us = micros(ils_started.elapsed());
        let tag_started = Instant::now();
        let security = self.resecure(&pending, &device, item, resecure).await;
        let tag_us = micros(tag_started.elapsed());
        let tag_facts = parts
            .iter()
            .find_map(|p| p.tag.as_deref())
            .map(TagFacts::from_tag)
            .unwrap_or_default();
        let mut record = ReturnRecord {
            station: self.id.clone(),
            device,
            uid: parts[0].uid.to_string(),
            item: item.to_owned(),
            title,
            outcome,
            screen_message,
            queue_id,
            security,
            bin: None,
            bin_name: None,
            rule: None,
            sort_reason: None,
            diverted: None,
            divert_error: None,
            timing: ReturnTiming {
                ils_us,
                tag_us,
                ..ReturnTiming::default()
            },
        };
        let divert_started = Instant::now();
        self.sort(&mut record, &facts, &tag_facts).await;
        record.timing.divert_us = micros(divert_started.elapsed());
        record.timing.total_us = micros(started.elapsed());
        self.returned += 1;
        crate::metrics::ItemReturned {
            station: &self.id,
            item,
            outcome,
            bin: record.bin,
        }
        .emit();
        c.journal(Activity::ItemReturned(record)).await;
        self.show();
    }

    /// Commits a pending re-secure for every tag of the item (before the ILS call, so a
    /// crash cannot leave it returned but unsecured); `None` (refused) when the store fails.
    async fn owe_pending(&self, item: &str, parts: &[Present]) -> Option<Vec<(i64, Uid)>> {
        let mut pending = Vec::new();
        for part in parts {
            let uid = part.uid.to_string();
            match self
                .circulation
                .store
                .owe_pending(&self.id, &uid, Some(item), true, "return")
                .await
            {
                Ok(id) => pending.push((id, part.uid.clone())),
                Err(e) => {
                    for (id, _) in pending {
                        self.circulation.owed.cancel(id).await;
                    }
                    self.refuse(
                        parts,
                        "store_failed",
                        "Returns are not possible right now. Please see staff.",
                        Some(&e.to_string()),
                    )
                    .await;
                    return None;
                }
            }
        }
        Some(pending)
    }

    /// Re-secures every tag of the item (or cancels the pending writes); the worst outcome
    /// of the parts, so an owed write shows.
    async fn resecure(
        &self,
        pending: &[(i64, Uid)],
        device: &str,
        item: &str,
        secure: bool,
    ) -> SecurityOutcome {
        let c = &self.circulation;
        let mut outcomes = Vec::new();
        for (id, uid) in pending {
            outcomes.push(if secure {
                c.owed
                    .settle(
                        *id,
                        c.handles.get(device),
                        (&self.id, uid, Some(item)),
                        true,
                    )
                    .await
            } else {
                c.owed.cancel(*id).await;
                SecurityOutcome::Unchanged
            });
        }
        outcomes
            .iter()
            .find(|s| matches!(s, SecurityOutcome::Owed { .. }))
            .or_else(|| outcomes.first())
            .cloned()
            .unwrap_or(SecurityOutcome::Unchanged)
    }

    /// The checkin: `(outcome, facts for sorting, screen message, title, queue id, re-secure)`.
    async fn checkin(
        &self,
        item: &str,
    ) -> (
        &'static str,
        CheckinFacts,
        Vec<String>,
        Option<String>,
        Option<i64>,
        bool,
    ) {
        let c = &self.circulation;
        let answer = match &c.ils {
            Some(ils) => ils.checkin(item).await,
            None => Err(IlsCallError::Offline("no library system configured".into())),
        };
        // A lost answer that item information shows was never applied: the ILS did not
        // say no, it never got the checkin. That is "not sent" (queued under the policy).
        let answer = match answer {
            Ok(outcome) if !outcome.ok && outcome.learned == Learned::Recovered => Err(
                IlsCallError::Offline(format!("the checkin's answer was lost; {NOT_APPLIED}")),
            ),
            other => other,
        };
        match answer {
            Ok(outcome) => {
                if outcome.ok {
                    c.loans.record(item, false, "checkin");
                }
                // The item is in the library now: secure it, unless the ILS took it and
                // said not to (a rejected checkin's flag is no instruction).
                let resecure = !outcome.ok || outcome.resensitize != Some(false);
                (
                    if outcome.ok { "checked_in" } else { "rejected" },
                    facts_of(&outcome),
                    outcome.screen_message.clone(),
                    outcome.title.clone(),
                    None,
                    resecure,
                )
            }
            Err(IlsCallError::Offline(_)) => {
                if !self.offline.takes_checkins() {
                    return (
                        "refused_offline",
                        CheckinFacts::offline(),
                        vec!["Returns are not possible right now. Please try again later or see staff.".into()],
                        None,
                        None,
                        false,
                    );
                }
                let queued = c
                    .store
                    .enqueue(&NewQueued {
                        station: self.id.clone(),
                        kind: QueuedKind::Checkin,
                        item_id: item.to_owned(),
                        patron: None,
                        at: SystemTime::now(),
                        due: None,
                    })
                    .await;
                match queued {
                    Ok(queue_id) => {
                        crate::metrics::OfflineQueued {
                            station: &self.id,
                            queue_id,
                            transaction: "checkin",
                            item,
                        }
                        .emit();
                        c.loans.record(item, false, "checkin");
                        c.replay.notify_one();
                        c.journal(Activity::OfflineQueued {
                            station: self.id.clone(),
                            queue_id,
                            transaction: "checkin",
                            item: item.to_owned(),
                        })
                        .await;
                        (
                            "queued_offline",
                            CheckinFacts::offline(),
                            vec![
                                "Thank you. Your return is recorded and will be updated shortly."
                                    .into(),
                            ],
                            None,
                            Some(queue_id),
                            true,
                        )
                    }
                    Err(e) => {
                        tracing::error!(station = %self.id, item, error = %e, "offline return not queued");
                        self.unknown(item, format!("not queued: {e}")).await
                    }
                }
            }
            Err(IlsCallError::OutcomeUnknown(reason) | IlsCallError::Failed(reason)) => {
                self.unknown(item, reason).await
            }
        }
    }

    /// The ILS may or may not have the return: staff check it; the item goes to the
    /// exception bin, secured.
    async fn unknown(
        &self,
        item: &str,
        reason: String,
    ) -> (
        &'static str,
        CheckinFacts,
        Vec<String>,
        Option<String>,
        Option<i64>,
        bool,
    ) {
        let work = NewWork {
            kind: "outcome_unknown",
            station: self.id.clone(),
            item_id: Some(item.to_owned()),
            uid: None,
            reason: format!("checkin outcome unknown: {reason}"),
            ref_id: None,
        };
        if let Err(e) = self.circulation.store.add_work(&work).await {
            tracing::error!(station = %self.id, item, error = %e, "cannot add to the worklist");
        }
        (
            "outcome_unknown",
            rejected(&format!("checkin outcome unknown: {reason}")),
            vec!["Thank you. Staff will check this return.".into()],
            None,
            None,
            true,
        )
    }

    /// Sort decision and divert, recorded in `record`.
    async fn sort(&self, record: &mut ReturnRecord, facts: &CheckinFacts, tag: &TagFacts) {
        let (Some(plan), Some(sorter)) = (&self.plan, &self.config.sorter) else {
            return;
        };
        let decision = plan.decide_with(&self.selection, facts, tag, local_now());
        record.bin = Some(decision.bin);
        record.bin_name = Some(decision.bin_name.clone());
        record.rule = decision.rule.as_ref().map(ToString::to_string);
        record.sort_reason = Some(decision.reason.clone());
        let result = match self.circulation.handles.get(sorter) {
            Some(handle) => handle
                .call(
                    DeviceCommand::Divert { bin: decision.bin },
                    self.circulation.command_within,
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|answer| match answer {
                    Ok(CommandAnswer::Done) => Ok(()),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(refusal) => Err(refusal.to_string()),
                }),
            None => Err(format!("no device `{sorter}`")),
        };
        record.diverted = Some(result.is_ok());
        crate::metrics::Diverted {
            station: &self.id,
            item: &record.item,
            bin: decision.bin,
            error: result.as_ref().err().map(String::as_str),
        }
        .emit();
        if let Err(error) = result {
            let work = NewWork {
                kind: "not_diverted",
                station: self.id.clone(),
                item_id: Some(record.item.clone()),
                uid: Some(record.uid.clone()),
                reason: format!(
                    "returned item not sent to bin {} ({}): {error}",
                    decision.bin, decision.bin_name
                ),
                ref_id: None,
            };
            if let Err(e) = self.circulation.store.add_work(&work).await {
                tracing::error!(station = %self.id, error = %e, "cannot add to the worklist");
            }
            record.divert_error = Some(error);
        }
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// A checkin that did not happen, for sorting: the plan's rejected-checkin rules (or the
/// exception bin) take it, with `reason` recorded.
fn rejected(reason: &str) -> CheckinFacts {
    CheckinFacts {
        ils: Some(IlsFacts {
            ok: false,
            screen_message: vec![reason.to_owned()],
            ..IlsFacts::default()
        }),
    }
}

/// The sorting facts of a checkin outcome: the response as received, or (recovered) what
/// the outcome carries.
fn facts_of(outcome: &CheckinOutcome) -> CheckinFacts {
    if let Some(response) = &outcome.response {
        return CheckinFacts::from_response(response);
    }
    CheckinFacts {
        ils: Some(IlsFacts {
            ok: outcome.ok,
            alert: outcome.alert,
            alert_type: outcome.alert_type.clone(),
            sort_bin: outcome.sort_bin.clone(),
            media_type: outcome.media_type.clone(),
            permanent_location: outcome.permanent_location.clone(),
            destination: outcome.destination.clone(),
            screen_message: outcome.screen_message.clone(),
            ..IlsFacts::default()
        }),
    }
}
