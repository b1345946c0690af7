//! Stations: pure workflows (the gate first; return/sort and self-check follow) and one
//! thin runner that feeds them and carries out what they decide.
//!
//! Two timing rules live here and in the transactions that follow:
//!
//! * **Decide before the disk.** [`StationRunner`] is called by the pipeline with each
//!   device report *before* the report goes to the journal. A gate decides from the tag and
//!   the in-memory loans cache, sends its output commands without waiting for them, and only
//!   then are the read and the decision journaled. An alarm never waits for an fsync or the
//!   network; slow work (the title from the ILS, a loans-cache refresh) runs afterwards in
//!   tasks of its own.
//! * **Durable before acknowledged.** A loan, a return, an offline transaction or an owed
//!   tag write (later issues) is committed to the store before a patron, kiosk or peer is
//!   told it is done. The gate has nothing to acknowledge to anyone, so it only follows the
//!   first rule; staff acknowledgements of alarms are committed before the API answers.

pub mod activity;
pub mod counting;
pub mod gate;
pub mod loans;
pub mod offline;
pub mod owed;
pub mod returns;
pub mod selfcheck;
pub mod sortplan;
pub mod transaction;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rfidgw_driver::{DeviceEvent, DeviceHandle, DeviceReport};
use rfidgw_tag::{DecodedTag, SecurityConfig, SecurityMode};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bus::{Decision, Event, GateAlarm, StationControl};
use crate::config::{StationConfig, StationKind};
use crate::ils::connector::IlsConnector;
use crate::pipeline::{StationResponse, Stations};
use gate::{Gate, GateAction, Sighting};
use loans::LoansCache;
use transaction::StationInput;

/// What the status API shows of one gate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GateStatus {
    /// Tags in the gate now.
    pub present: usize,
    /// Alarms since the daemon started.
    pub alarms: u64,
    /// The newest alarm.
    pub last_alarm: Option<GateAlarm>,
    /// Until when the outputs are silenced (ms since the Unix epoch; RFC 3339
    /// `silenced_until` in JSON), if they are.
    #[serde(
        rename = "silenced_until",
        serialize_with = "crate::rfc3339::opt_ms_u64"
    )]
    pub silenced_until_ms: Option<u64>,
    /// People counting, when the gate counts.
    pub people: Option<PeopleStatus>,
}

/// Live people counts of a gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeopleStatus {
    /// In since the daemon started.
    pub entered_total: u64,
    /// Out since the daemon started.
    pub left_total: u64,
    /// In during the interval running now.
    pub entered_interval: u64,
    /// Out during the interval running now.
    pub left_interval: u64,
}

/// The stations' live state, shared with the status API. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StationsStatus {
    gates: Arc<RwLock<BTreeMap<String, GateStatus>>>,
    returns: Arc<RwLock<BTreeMap<String, returns::ReturnStatus>>>,
    selfchecks: Arc<RwLock<BTreeMap<String, selfcheck::SelfCheckStatus>>>,
}

fn read_map<T: Clone>(map: &RwLock<BTreeMap<String, T>>) -> BTreeMap<String, T> {
    map.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write_entry<T>(map: &RwLock<BTreeMap<String, T>>, station: &str, value: T) {
    map.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(station.to_owned(), value);
}

impl StationsStatus {
    /// Every return station's status, by station id.
    pub fn returns(&self) -> BTreeMap<String, returns::ReturnStatus> {
        read_map(&self.returns)
    }

    /// Every self-check station's status, by station id.
    pub fn selfchecks(&self) -> BTreeMap<String, selfcheck::SelfCheckStatus> {
        read_map(&self.selfchecks)
    }

    pub(crate) fn set_return(&self, station: &str, status: returns::ReturnStatus) {
        write_entry(&self.returns, station, status);
    }

    pub(crate) fn set_selfcheck(&self, station: &str, status: selfcheck::SelfCheckStatus) {
        write_entry(&self.selfchecks, station, status);
    }

    /// Every gate's status, by station id.
    pub fn gates(&self) -> BTreeMap<String, GateStatus> {
        self.gates
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn update(&self, station: &str, change: impl FnOnce(&mut GateStatus)) {
        let mut gates = self
            .gates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(gates.entry(station.to_owned()).or_default());
    }
}

/// What the runner needs from the rest of the daemon.
pub struct StationContext {
    /// The site's security rules (`[tags.security]`).
    pub security: SecurityConfig,
    /// Whether the site lists institutions of its own (`[tags.owners]`).
    pub site_has_owners: bool,
    /// Command handles of every device.
    pub handles: HashMap<String, DeviceHandle>,
    /// The loans cache (database security mode).
    pub loans: LoansCache,
    /// The ILS, for titles after an alarm and loans-cache refreshes; `None` without one.
    pub ils: Option<Arc<dyn IlsConnector>>,
    /// Where results that arrive later (output failures, titles) are journaled.
    pub events: mpsc::Sender<Event>,
    /// Where the live state is shown.
    pub status: StationsStatus,
    /// Return and self-check stations: what their transactions need, and where their
    /// tasks run. `None` runs gates only (tests of the gate alone).
    pub circulation: Option<CirculationSetup>,
}

/// What starting return and self-check stations needs.
pub struct CirculationSetup {
    /// The transaction context.
    pub circulation: transaction::Circulation,
    /// Each return station's sort plan, by station id.
    pub plans: HashMap<String, Arc<sortplan::SortPlan>>,
    /// Where the station tasks run (the daemon waits for them at shutdown).
    pub tasks: tokio_util::task::TaskTracker,
    /// Stops them (between transactions).
    pub cancel: tokio_util::sync::CancellationToken,
}

struct GateStation {
    id: String,
    gate: Gate,
}

/// Routes device reports to the stations they belong to and carries out their actions.
pub struct StationRunner {
    /// Device id → index into `gates`, built once at start.
    routes: HashMap<String, usize>,
    gates: Vec<GateStation>,
    /// Device id → the return or self-check station task it feeds.
    feeds: HashMap<String, mpsc::Sender<StationInput>>,
    /// Station id → its task, for requests from staff and kiosks.
    desks: HashMap<String, mpsc::Sender<StationInput>>,
    owed: Option<owed::OwedBook>,
    ctx: StationContext,
    alarm_seq: u64,
}

impl StationRunner {
    /// A runner for the configured stations.
    pub fn new(stations: &[StationConfig], mut ctx: StationContext) -> Self {
        let now = Instant::now();
        let mut feeds = HashMap::new();
        let mut desks = HashMap::new();
        let setup = ctx.circulation.take();
        let owed = setup.as_ref().map(|s| s.circulation.owed.clone());
        if let Some(setup) = setup {
            for station in stations {
                if let Some(sender) = spawn_desk(station, &setup) {
                    for device in &station.devices {
                        feeds.insert(device.clone(), sender.clone());
                    }
                    desks.insert(station.id.clone(), sender);
                }
            }
        }
        let mut routes = HashMap::new();
        let mut gates = Vec::new();
        for station in stations.iter().filter(|s| s.kind == StationKind::Gate) {
            let index = gates.len();
            for device in &station.devices {
                routes.insert(device.clone(), index);
            }
            ctx.status.update(&station.id, |_| {});
            gates.push(GateStation {
                id: station.id.clone(),
                gate: Gate::new(station.gate.clone().unwrap_or_default(), now),
            });
        }
        Self {
            routes,
            gates,
            feeds,
            desks,
            owed,
            ctx,
            alarm_seq: 0,
        }
    }

    /// Hands a request to a return or self-check station's task.
    fn to_desk(&self, station: &str, input: StationInput) {
        match self.desks.get(station) {
            Some(desk) => {
                if let Err(
                    mpsc::error::TrySendError::Full(input)
                    | mpsc::error::TrySendError::Closed(input),
                ) = desk.try_send(input)
                {
                    refuse_input(input, format!("station `{station}` is busy; try again"));
                }
            }
            None => refuse_input(
                input,
                format!("no return or self-check station `{station}`"),
            ),
        }
    }

    fn next_alarm_id(&mut self) -> String {
        self.alarm_seq += 1;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("A{ms}-{}", self.alarm_seq)
    }

    fn carry_out(&mut self, index: usize, actions: Vec<GateAction>) -> Vec<Event> {
        let mut events = Vec::new();
        let mut alarm_id = None;
        for action in actions {
            let station = self.gates[index].id.clone();
            match action {
                GateAction::Alarm(alarm) => {
                    let id = self.next_alarm_id();
                    let record = GateAlarm {
                        alarm_id: id.clone(),
                        station: station.clone(),
                        device: alarm.device,
                        uid: alarm.uid.to_string(),
                        item: alarm.item.clone(),
                        reason: alarm.reason.as_str(),
                        silenced: alarm.silenced,
                    };
                    crate::metrics::AlarmRaised(&record).emit();
                    self.ctx.status.update(&station, |s| {
                        s.alarms += 1;
                        s.last_alarm = Some(record.clone());
                    });
                    if let (Some(item), Some(ils)) = (alarm.item, &self.ctx.ils) {
                        spawn_title_lookup(ils.clone(), &self.ctx.events, &id, &station, item);
                    }
                    alarm_id = Some(id);
                    events.push(Event::GateAlarm(record));
                }
                GateAction::Output { device, command } => {
                    let deadline = Duration::from_millis(
                        self.gates[index].gate.config().alarm.command_deadline_ms,
                    );
                    let failed = |error: String| Event::AlarmOutputFailed {
                        alarm_id: alarm_id.clone().unwrap_or_default(),
                        station: station.clone(),
                        device: device.clone(),
                        error,
                    };
                    match self.ctx.handles.get(&device) {
                        Some(handle) => {
                            let handle = handle.clone();
                            let events = self.ctx.events.clone();
                            let failed = failed(String::new());
                            // Sent now, answered later: the pipeline never waits for a device.
                            tokio::spawn(async move {
                                let error = match handle.output(command, deadline).await {
                                    Ok(Ok(_)) => return,
                                    Ok(Err(refusal)) => refusal.to_string(),
                                    Err(error) => error.to_string(),
                                };
                                if let Event::AlarmOutputFailed {
                                    alarm_id,
                                    station,
                                    device,
                                    ..
                                } = failed
                                {
                                    crate::metrics::AlarmOutputFailed {
                                        station: &station,
                                        device: &device,
                                        error: &error,
                                    }
                                    .emit();
                                    let _ = events.try_send(Event::AlarmOutputFailed {
                                        alarm_id,
                                        station,
                                        device,
                                        error,
                                    });
                                }
                            });
                        }
                        None => events.push(failed(format!("no device `{device}`"))),
                    }
                }
                GateAction::Notice { uid, item, reason } => events.push(Event::GateNotice {
                    station,
                    device: String::new(),
                    uid: uid.to_string(),
                    item,
                    reason: reason.as_str(),
                }),
                GateAction::Counted(count) => events.push(Event::PeopleCounted {
                    station,
                    entered: count.entered,
                    left: count.left,
                    interval_s: count.interval_s,
                }),
            }
        }
        events
    }

    fn show(&self, index: usize, now: Instant) {
        let station = &self.gates[index];
        let present = station.gate.present();
        let silenced_until_ms = station
            .gate
            .silenced_until(now)
            .map(|until| epoch_ms(SystemTime::now() + until.duration_since(now)));
        let people = station.gate.counter().map(|c| {
            let (entered_total, left_total) = c.totals();
            let (entered_interval, left_interval) = c.current();
            PeopleStatus {
                entered_total,
                left_total,
                entered_interval,
                left_interval,
            }
        });
        self.ctx.status.update(&station.id, |s| {
            s.present = present;
            s.silenced_until_ms = silenced_until_ms;
            s.people = people;
        });
    }

    fn gate_of(&self, station: &str) -> Option<usize> {
        self.gates.iter().position(|g| g.id == station)
    }
}

/// Starts the task of a return or self-check station; `None` for other kinds.
fn spawn_desk(
    station: &StationConfig,
    setup: &CirculationSetup,
) -> Option<mpsc::Sender<StationInput>> {
    let (sender, inputs) = mpsc::channel(1024);
    let circulation = setup.circulation.clone();
    let cancel = setup.cancel.clone();
    match station.kind {
        StationKind::Return => {
            let task = returns::ReturnStation::new(
                station.id.clone(),
                station.returns.clone().unwrap_or_default(),
                station.offline.clone(),
                setup.plans.get(&station.id).cloned(),
                circulation,
            );
            setup.tasks.spawn(task.run(inputs, cancel));
        }
        StationKind::SelfCheck => {
            let task = selfcheck::SelfCheckStation::new(
                station.id.clone(),
                station.selfcheck.clone().unwrap_or_default(),
                station.offline.clone(),
                circulation,
            );
            setup.tasks.spawn(task.run(inputs, cancel));
        }
        StationKind::Gate | StationKind::Staff => return None,
    }
    Some(sender)
}

/// Answers a request that cannot be delivered.
fn refuse_input(input: StationInput, why: String) {
    match input {
        StationInput::Patron { reply, .. } | StationInput::SortPlan { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        StationInput::Finish { reply, .. } => {
            let _ = reply.send(Err(why));
        }
        StationInput::Report(..) => {}
    }
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Looks the title up after the alarm (never before it: the alarm must not wait).
fn spawn_title_lookup(
    ils: Arc<dyn IlsConnector>,
    events: &mpsc::Sender<Event>,
    alarm_id: &str,
    station: &str,
    item: String,
) {
    let events = events.clone();
    let alarm_id = alarm_id.to_owned();
    let station = station.to_owned();
    tokio::spawn(async move {
        match ils.item_information(&item).await {
            Ok(info) => {
                if let Some(title) = info.title {
                    let _ = events.try_send(Event::AlarmTitle {
                        alarm_id,
                        station,
                        item,
                        title,
                    });
                }
            }
            Err(error) => tracing::info!(%item, %error, "no title for the alarmed item"),
        }
    });
}

impl Stations for StationRunner {
    fn on_report(
        &mut self,
        report: &DeviceReport,
        decoded: Option<&Arc<DecodedTag>>,
    ) -> StationResponse {
        if let (Some(owed), DeviceEvent::TagArrived(read)) = (&self.owed, &report.event) {
            owed.sighted(&report.device, &read.uid);
        }
        if let Some(feed) = self.feeds.get(&report.device) {
            // The station's task takes it from here; a full queue means it is far behind,
            // which the journal shows (the read is journaled either way).
            if feed
                .try_send(StationInput::Report(report.clone(), decoded.cloned()))
                .is_err()
            {
                crate::metrics::StationReportDropped {
                    device: &report.device,
                }
                .emit();
            }
            return StationResponse::default();
        }
        let Some(&index) = self.routes.get(&report.device) else {
            return StationResponse::default();
        };
        let now = Instant::now();
        let mut decision = None;
        let actions = match &report.event {
            DeviceEvent::TagArrived(read) => {
                let Some(tag) = decoded.map(|t| &**t) else {
                    return StationResponse::default();
                };
                let item = tag.item.as_ref().map(|i| i.primary_item_id.as_str());
                let database = self.ctx.security.mode == SecurityMode::Database;
                let on_loan = match item {
                    Some(item) if database => {
                        self.ctx.loans.refresh_if_stale(item, self.ctx.ils.as_ref());
                        self.ctx.loans.on_loan(item)
                    }
                    _ => None,
                };
                let loan_write_owed = self
                    .owed
                    .as_ref()
                    .is_some_and(|owed| owed.loan_write_owed(&read.uid));
                let verdict = gate::decide(
                    Sighting {
                        tag,
                        on_loan,
                        loan_write_owed,
                    },
                    &self.ctx.security,
                    &self.gates[index].gate.config().policy,
                    self.ctx.site_has_owners,
                );
                let (acted, actions) =
                    self.gates[index]
                        .gate
                        .arrived(&report.device, &read.uid, verdict, item, now);
                let (verdict, reason) = verdict.words();
                if acted {
                    crate::metrics::GateDecided {
                        station: &self.gates[index].id,
                        device: &report.device,
                        verdict,
                        reason,
                    }
                    .emit();
                }
                decision = Some(Decision {
                    verdict,
                    reason,
                    acted,
                });
                actions
            }
            DeviceEvent::TagDeparted { uid } => {
                self.gates[index].gate.departed(&report.device, uid, now);
                Vec::new()
            }
            DeviceEvent::Inputs(inputs) => {
                self.gates[index]
                    .gate
                    .inputs(&report.device, inputs.levels, now);
                Vec::new()
            }
            DeviceEvent::Card(_)
            | DeviceEvent::Health { .. }
            | DeviceEvent::Stopped { .. }
            | DeviceEvent::Sorter(_) => {
                return StationResponse::default();
            }
        };
        let mut events = self.carry_out(index, actions);
        for event in &mut events {
            if let Event::GateNotice { device, .. } = event {
                device.clone_from(&report.device);
            }
        }
        self.show(index, now);
        StationResponse { decision, events }
    }

    fn tick(&mut self) -> Vec<Event> {
        let now = Instant::now();
        let mut events = Vec::new();
        for index in 0..self.gates.len() {
            let actions = self.gates[index].gate.tick(now);
            events.extend(self.carry_out(index, actions));
            self.show(index, now);
        }
        events
    }

    fn control(&mut self, control: StationControl) -> Vec<Event> {
        let now = Instant::now();
        match control {
            StationControl::Desk { station, input } => {
                self.to_desk(&station, input);
                Vec::new()
            }
            StationControl::Silence { station, on, reply } => {
                let Some(index) = self.gate_of(&station) else {
                    let _ = reply.send(Err(format!("no gate station `{station}`")));
                    return Vec::new();
                };
                let until_ms = if on {
                    let until = self.gates[index].gate.silence(now);
                    Some(epoch_ms(SystemTime::now() + until.duration_since(now)))
                } else {
                    self.gates[index].gate.unsilence();
                    None
                };
                self.show(index, now);
                let _ = reply.send(Ok(until_ms));
                tracing::info!(%station, ?until_ms, "gate silence changed by staff");
                vec![Event::GateSilenced { station, until_ms }]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfidgw_driver::{TagRead, Uid};

    fn runner(mode: SecurityMode, loans: LoansCache) -> (StationRunner, mpsc::Receiver<Event>) {
        let station: StationConfig = toml::from_str(
            "id = \"exit\"\nkind = \"gate\"\ndevices = [\"g\"]\n[gate]\nenter_window_ms = 0",
        )
        .unwrap();
        let (events, rx) = mpsc::channel(16);
        let ctx = StationContext {
            security: SecurityConfig {
                mode,
                ..SecurityConfig::default()
            },
            site_has_owners: false,
            handles: HashMap::new(),
            loans,
            ils: None,
            events,
            status: StationsStatus::default(),
            circulation: None,
        };
        (StationRunner::new(&[station], ctx), rx)
    }

    fn arrival(uid: u8, item: &str) -> (DeviceReport, DecodedTag) {
        let memory = rfidgw_tag::parse_hex(
            "11010131313232333334340000000000000000513E4445373035000000000000",
        )
        .unwrap();
        let mut tag = rfidgw_tag::decode(
            &memory,
            &rfidgw_tag::TagHints::default(),
            &rfidgw_tag::SiteConfig::default(),
        );
        if let Some(found) = &mut tag.item {
            found.primary_item_id = item.to_owned();
        }
        let report = DeviceReport {
            device: "g".into(),
            at: SystemTime::now(),
            event: DeviceEvent::TagArrived(TagRead::uid_only(Uid::new([0xE0, uid]))),
        };
        (report, tag)
    }

    #[tokio::test]
    async fn in_database_mode_the_gate_decides_from_the_loans_cache_in_memory() {
        let loans = LoansCache::default();
        loans.record("1001", true, "checkout");
        loans.record("1002", false, "checkin");
        let (mut runner, _events) = runner(SecurityMode::Database, loans);
        // (uid, item, verdict, reason, alarm events)
        let rows = [
            (1, "1001", "pass", "unsecured", 0),
            (2, "1002", "alarm", "not_on_loan", 1),
            (3, "1003", "notice", "unknown_state", 0),
        ];
        for (uid, item, verdict, reason, alarms) in rows {
            let (report, tag) = arrival(uid, item);
            let response = runner.on_report(&report, Some(&Arc::new(tag.clone())));
            let decision = response.decision.unwrap();
            assert_eq!(
                (decision.verdict, decision.reason),
                (verdict, reason),
                "{item}"
            );
            let raised = response
                .events
                .iter()
                .filter(|e| matches!(e, Event::GateAlarm(_)))
                .count();
            assert_eq!(raised, alarms, "{item}");
        }
        let status = &runner.ctx.status.gates()["exit"];
        assert_eq!((status.alarms, status.present), (1, 3));
    }

    #[tokio::test]
    async fn reports_of_devices_outside_any_gate_are_left_alone() {
        let (mut runner, _events) = runner(SecurityMode::Afi, LoansCache::default());
        let (mut report, tag) = arrival(1, "1001");
        report.device = "desk".into();
        let response = runner.on_report(&report, Some(&Arc::new(tag.clone())));
        assert!(response.decision.is_none() && response.events.is_empty());
    }

    #[tokio::test]
    async fn silencing_an_unknown_gate_says_so_and_a_known_one_is_journaled() {
        let (mut runner, _events) = runner(SecurityMode::Afi, LoansCache::default());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let events = runner.control(StationControl::Silence {
            station: "nowhere".into(),
            on: true,
            reply,
        });
        assert!(events.is_empty());
        assert_eq!(
            answer.await.unwrap(),
            Err("no gate station `nowhere`".into())
        );
        let (reply, answer) = tokio::sync::oneshot::channel();
        let events = runner.control(StationControl::Silence {
            station: "exit".into(),
            on: true,
            reply,
        });
        assert!(answer.await.unwrap().unwrap().is_some());
        assert!(matches!(
            &events[..],
            [Event::GateSilenced {
                until_ms: Some(_),
                ..
            }]
        ));
    }
}
