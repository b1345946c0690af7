//! The occurrences: each is one type whose `emit()` logs it and counts it, in one place.
//!
//! A call site builds the occurrence from what it has at hand and emits it, instead of
//! logging: the log line and the counter cannot drift apart, and a new label or field
//! is added in one place. Each log line keeps the `tracing` target of the module where it
//! happens (`rfidgw::station`, `rfidgw::supervisor`, …), so `RUST_LOG` filters work as
//! before. Fields, not formatted strings; never a patron id, PIN or password.

use std::time::Duration;

use rfidgw_driver::LinkState;
use rfidgw_tag::{DecodedTag, TagModel};

use super::exposition::{CounterVec, Family, HistogramVec};
use crate::bus::GateAlarm;

/// Upper bounds of the ILS latency buckets, in seconds: a SIP2 round trip on a LAN takes
/// milliseconds, a busy ILS seconds; the client's own timeouts end at tens of seconds.
const ILS_SECONDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static TAG_READS: CounterVec<2> = CounterVec::new(
    "rfidgw_tag_reads_total",
    "Tag arrivals reported by a device, by what decoding made of the tag (item, no_item, blank, unknown, ambiguous, failed).",
    ["device", "result"],
);
static LINK_CHANGES: CounterVec<2> = CounterVec::new(
    "rfidgw_device_link_changes_total",
    "Changes of a device's link state as its driver reports them (link=connected counts reconnects).",
    ["device", "link"],
);
static DEVICE_FAILURES: CounterVec<1> = CounterVec::new(
    "rfidgw_device_failures_total",
    "Device task runs that failed (line broken, driver error or panic); each is followed by a restart after a backoff.",
    ["device"],
);
static DEVICE_RESTARTS: CounterVec<1> = CounterVec::new(
    "rfidgw_device_restarts_total",
    "Device tasks started again after a failure.",
    ["device"],
);
static GATE_DECISIONS: CounterVec<3> = CounterVec::new(
    "rfidgw_gate_decisions_total",
    "Gate decisions on a new passage of an item (reads continuing a passage already decided are not counted again).",
    ["station", "verdict", "reason"],
);
static GATE_ALARMS: CounterVec<2> = CounterVec::new(
    "rfidgw_gate_alarms_total",
    "Gate alarms raised (also while the gate is silenced), by reason.",
    ["station", "reason"],
);
static ALARM_OUTPUT_FAILURES: CounterVec<2> = CounterVec::new(
    "rfidgw_gate_alarm_output_failures_total",
    "Alarm outputs (lamp, beeper, relay) a device did not carry out.",
    ["station", "device"],
);
static STATION_REPORTS_DROPPED: CounterVec<1> = CounterVec::new(
    "rfidgw_station_reports_dropped_total",
    "Device reports a return or self-check station did not take because its queue was full (the journal still has them).",
    ["device"],
);
static RETURNS: CounterVec<2> = CounterVec::new(
    "rfidgw_returns_total",
    "Items returned at a return station, by outcome (checked_in, rejected, queued_offline, outcome_unknown).",
    ["station", "outcome"],
);
static RETURN_REFUSALS: CounterVec<2> = CounterVec::new(
    "rfidgw_return_refusals_total",
    "Returns refused before a transaction, by reason (one_item_at_a_time, intake_stopped, unreadable, store_failed, offline_returns_off).",
    ["station", "reason"],
);
static DIVERTS: CounterVec<2> = CounterVec::new(
    "rfidgw_diverts_total",
    "Sorter diverts of returned items (result=done or failed; a failed divert goes on the staff worklist).",
    ["station", "result"],
);
static LOANS: CounterVec<2> = CounterVec::new(
    "rfidgw_loans_total",
    "Items handled at a self-check station, by outcome (checked_out, renewed, refused, queued_offline, outcome_unknown).",
    ["station", "outcome"],
);
static PATRON_REFUSALS: CounterVec<2> = CounterVec::new(
    "rfidgw_patron_refusals_total",
    "Patrons not accepted at a self-check station, by reason (unknown, wrong_pin, blocked, offline_checkout_off, ils_error).",
    ["station", "reason"],
);
static SESSIONS_STARTED: CounterVec<2> = CounterVec::new(
    "rfidgw_selfcheck_sessions_started_total",
    "Self-check sessions started (mode=online or offline).",
    ["station", "mode"],
);
static SESSIONS_ENDED: CounterVec<2> = CounterVec::new(
    "rfidgw_selfcheck_sessions_ended_total",
    "Self-check sessions ended, by how (finished, idle, next_patron, device_stopped).",
    ["station", "ended"],
);
static OFFLINE_QUEUED: CounterVec<2> = CounterVec::new(
    "rfidgw_offline_queued_total",
    "Transactions taken while the ILS was offline and queued for replay (transaction=checkin or checkout).",
    ["station", "transaction"],
);
static OFFLINE_REPLAYS: CounterVec<2> = CounterVec::new(
    "rfidgw_offline_replays_total",
    "Replay steps of queued offline transactions, by outcome (done, already_done, failed, outcome_unknown: checked again before any resend).",
    ["transaction", "outcome"],
);
static OWED_WRITES: CounterVec<2> = CounterVec::new(
    "rfidgw_owed_writes_total",
    "Tag security writes that became owed, were completed later, were raised to staff, or were left unfinished by a stop (state).",
    ["station", "state"],
);
static ILS_REQUESTS: CounterVec<2> = CounterVec::new(
    "rfidgw_ils_requests_total",
    "ILS requests by message and result (ok, said_no, offline, outcome_unknown, failed).",
    ["message", "result"],
);
static ILS_SECONDS_HISTOGRAM: HistogramVec<1> = HistogramVec::new(
    "rfidgw_ils_request_duration_seconds",
    "Time from an ILS request to its answer or error, by message.",
    ["message"],
    &ILS_SECONDS,
);

/// Every family the occurrences count into, in the order the page lists them.
pub(super) static FAMILIES: [&dyn Family; 20] = [
    &TAG_READS,
    &LINK_CHANGES,
    &DEVICE_FAILURES,
    &DEVICE_RESTARTS,
    &GATE_DECISIONS,
    &GATE_ALARMS,
    &ALARM_OUTPUT_FAILURES,
    &STATION_REPORTS_DROPPED,
    &RETURNS,
    &RETURN_REFUSALS,
    &DIVERTS,
    &LOANS,
    &PATRON_REFUSALS,
    &SESSIONS_STARTED,
    &SESSIONS_ENDED,
    &OFFLINE_QUEUED,
    &OFFLINE_REPLAYS,
    &OWED_WRITES,
    &ILS_REQUESTS,
    &ILS_SECONDS_HISTOGRAM,
];

/// A tag arrived at a device (the pipeline). Logged at trace level: the journal records
/// every read.
#[derive(Clone, Copy, Debug)]
pub struct TagReadSeen<'a> {
    /// The device.
    pub device: &'a str,
    /// The tag as decoded.
    pub decoded: &'a DecodedTag,
}

impl TagReadSeen<'_> {
    /// What decoding made of the tag, as the `result` label says it.
    pub fn result(&self) -> &'static str {
        let tag = self.decoded;
        match tag.model {
            TagModel::Ambiguous => "ambiguous",
            TagModel::Blank => "blank",
            TagModel::Unknown => "unknown",
            _ if tag.error.is_some() => "failed",
            _ if tag.item.is_some() => "item",
            _ => "no_item",
        }
    }

    /// Logs and counts it.
    pub fn emit(self) {
        let result = self.result();
        tracing::trace!(target: "rfidgw::pipeline", device = %self.device, result, "tag read");
        TAG_READS.inc([self.device, result]);
    }
}

/// A driver reported a new link state (the pipeline; repeated health reports with the
/// same state are not changes).
#[derive(Clone, Copy, Debug)]
pub struct LinkChanged<'a> {
    /// The device.
    pub device: &'a str,
    /// The new state.
    pub link: LinkState,
}

impl LinkChanged<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let link = match self.link {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
        };
        if self.link == LinkState::Disconnected {
            tracing::warn!(target: "rfidgw::pipeline", device = %self.device, link, "device link changed");
        } else {
            tracing::info!(target: "rfidgw::pipeline", device = %self.device, link, "device link changed");
        }
        LINK_CHANGES.inc([self.device, link]);
    }
}

/// A device task started (the supervisor); `restarts` > 0 is a restart after a failure.
#[derive(Clone, Copy, Debug)]
pub struct DeviceStarted<'a> {
    /// The device.
    pub device: &'a str,
    /// Restarts so far.
    pub restarts: u32,
}

impl DeviceStarted<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::supervisor", device = %self.device, restarts = self.restarts, "device task started");
        if self.restarts > 0 {
            DEVICE_RESTARTS.inc([self.device]);
        }
    }
}

/// A device task run failed and will be restarted after `restart_in` (the supervisor).
#[derive(Clone, Copy, Debug)]
pub struct DeviceFailed<'a> {
    /// The device.
    pub device: &'a str,
    /// Why.
    pub error: &'a str,
    /// The pause before the restart.
    pub restart_in: Duration,
}

impl DeviceFailed<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(target: "rfidgw::supervisor", device = %self.device, error = %self.error,
            restart_in_ms = self.restart_in.as_millis(), "device task failed");
        DEVICE_FAILURES.inc([self.device]);
    }
}

/// A gate decided on a new passage (the station runner).
#[derive(Clone, Copy, Debug)]
pub struct GateDecided<'a> {
    /// The gate.
    pub station: &'a str,
    /// The device that read the tag.
    pub device: &'a str,
    /// `alarm`, `pass` or `notice`.
    pub verdict: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl GateDecided<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::debug!(target: "rfidgw::station", station = %self.station, device = %self.device,
            verdict = self.verdict, reason = self.reason, "gate decision");
        GATE_DECISIONS.inc([self.station, self.verdict, self.reason]);
    }
}

/// A gate raised an alarm (the station runner).
#[derive(Clone, Copy, Debug)]
pub struct AlarmRaised<'a>(pub &'a GateAlarm);

impl AlarmRaised<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let alarm = self.0;
        tracing::warn!(
            target: "rfidgw::station",
            station = %alarm.station, alarm = %alarm.alarm_id, uid = %alarm.uid,
            item = alarm.item.as_deref().unwrap_or("-"), reason = alarm.reason,
            silenced = alarm.silenced, "gate alarm"
        );
        GATE_ALARMS.inc([&alarm.station, alarm.reason]);
    }
}

/// A device did not carry out an alarm output (the station runner).
#[derive(Clone, Copy, Debug)]
pub struct AlarmOutputFailed<'a> {
    /// The gate.
    pub station: &'a str,
    /// The device.
    pub device: &'a str,
    /// Why.
    pub error: &'a str,
}

impl AlarmOutputFailed<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(target: "rfidgw::station", station = %self.station, device = %self.device,
            error = %self.error, "alarm output not done");
        ALARM_OUTPUT_FAILURES.inc([self.station, self.device]);
    }
}

/// A return or self-check station's queue was full; the report was not taken.
#[derive(Clone, Copy, Debug)]
pub struct StationReportDropped<'a> {
    /// The device whose report it was.
    pub device: &'a str,
}

impl StationReportDropped<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(target: "rfidgw::station", device = %self.device, "station queue full; report not taken");
        STATION_REPORTS_DROPPED.inc([self.device]);
    }
}

/// An item was returned (a return station), whatever the outcome.
#[derive(Clone, Copy, Debug)]
pub struct ItemReturned<'a> {
    /// The station.
    pub station: &'a str,
    /// The item.
    pub item: &'a str,
    /// `checked_in`, `rejected`, `queued_offline`, `outcome_unknown`.
    pub outcome: &'static str,
    /// The sort bin, when sorted.
    pub bin: Option<u16>,
}

impl ItemReturned<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::station::returns", station = %self.station, item = self.item,
            outcome = self.outcome, bin = ?self.bin, "item returned");
        RETURNS.inc([self.station, self.outcome]);
    }
}

/// A return was refused before any transaction (a return station).
#[derive(Clone, Copy, Debug)]
pub struct ReturnRefused<'a> {
    /// The station.
    pub station: &'a str,
    /// `one_item_at_a_time`, `intake_stopped`, `unreadable`, `store_failed`,
    /// `offline_returns_off`.
    pub reason: &'static str,
    /// More about it (why intake stopped, the store's error).
    pub detail: Option<&'a str>,
}

impl ReturnRefused<'_> {
    /// Logs and counts it: the gateway's own trouble at error level, a stopped intake or
    /// an offline ILS at warning level, a patron's mistake as information.
    pub fn emit(self) {
        let (station, reason, detail) = (self.station, self.reason, self.detail.unwrap_or("-"));
        match reason {
            "store_failed" => {
                tracing::error!(target: "rfidgw::station::returns", %station, reason, detail, "return refused");
            }
            "intake_stopped" | "offline_returns_off" => {
                tracing::warn!(target: "rfidgw::station::returns", %station, reason, detail, "return refused");
            }
            _ => {
                tracing::info!(target: "rfidgw::station::returns", %station, reason, detail, "return refused");
            }
        }
        RETURN_REFUSALS.inc([station, reason]);
    }
}

/// A returned item was sent to a sorter bin, or could not be (a return station).
#[derive(Clone, Copy, Debug)]
pub struct Diverted<'a> {
    /// The station.
    pub station: &'a str,
    /// The item.
    pub item: &'a str,
    /// The bin.
    pub bin: u16,
    /// Why not, when it failed.
    pub error: Option<&'a str>,
}

impl Diverted<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let (station, item, bin) = (self.station, self.item, self.bin);
        let result = match self.error {
            None => {
                tracing::debug!(target: "rfidgw::station::returns", %station, item, bin, "diverted");
                "done"
            }
            Some(error) => {
                tracing::warn!(target: "rfidgw::station::returns", %station, item, bin, %error, "divert not done; on the worklist");
                "failed"
            }
        };
        DIVERTS.inc([station, result]);
    }
}

/// A self-check station lent an item, or did not (outcome).
#[derive(Clone, Copy, Debug)]
pub struct ItemLoan<'a> {
    /// The station.
    pub station: &'a str,
    /// The session.
    pub session: &'a str,
    /// The item.
    pub item: &'a str,
    /// `checked_out`, `renewed`, `refused`, `queued_offline`, `outcome_unknown`.
    pub outcome: &'static str,
}

impl ItemLoan<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::station::selfcheck", station = %self.station, session = %self.session,
            item = self.item, outcome = self.outcome, "self-check item");
        LOANS.inc([self.station, self.outcome]);
    }
}

/// A self-check station did not accept a patron.
#[derive(Clone, Copy, Debug)]
pub struct PatronRefused<'a> {
    /// The station.
    pub station: &'a str,
    /// Why (`blocked: …` lists the blocks; the label keeps `blocked`).
    pub reason: &'a str,
}

impl PatronRefused<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::station::selfcheck", station = %self.station, reason = %self.reason, "patron not accepted");
        let class = self.reason.split(':').next().unwrap_or_default();
        PATRON_REFUSALS.inc([self.station, class]);
    }
}

/// A self-check session started.
#[derive(Clone, Copy, Debug)]
pub struct SessionStarted<'a> {
    /// The station.
    pub station: &'a str,
    /// The session.
    pub session: &'a str,
    /// Whether it runs offline.
    pub offline: bool,
}

impl SessionStarted<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::station::selfcheck", station = %self.station, session = %self.session,
            offline = self.offline, "self-check session started");
        let mode = if self.offline { "offline" } else { "online" };
        SESSIONS_STARTED.inc([self.station, mode]);
    }
}

/// A self-check session ended.
#[derive(Clone, Copy, Debug)]
pub struct SessionEnded<'a> {
    /// The station.
    pub station: &'a str,
    /// The session.
    pub session: &'a str,
    /// How: `finished`, `idle`, `next_patron`, `device_stopped`.
    pub ended: &'static str,
    /// Items lent.
    pub borrowed: usize,
    /// Items refused.
    pub failed: usize,
}

impl SessionEnded<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::station::selfcheck", station = %self.station, session = %self.session,
            ended = self.ended, borrowed = self.borrowed, failed = self.failed, "self-check session ended");
        SESSIONS_ENDED.inc([self.station, self.ended]);
    }
}

/// A transaction was queued for replay while the ILS is offline.
#[derive(Clone, Copy, Debug)]
pub struct OfflineQueued<'a> {
    /// The station.
    pub station: &'a str,
    /// The queue row.
    pub queue_id: i64,
    /// `checkin` or `checkout`.
    pub transaction: &'static str,
    /// The item.
    pub item: &'a str,
}

impl OfflineQueued<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(target: "rfidgw::station::offline", station = %self.station, queue_id = self.queue_id,
            transaction = self.transaction, item = self.item, "transaction queued offline");
        OFFLINE_QUEUED.inc([self.station, self.transaction]);
    }
}

/// One replay step of a queued offline transaction.
#[derive(Clone, Copy, Debug)]
pub struct Replayed<'a> {
    /// The queue row.
    pub queue_id: i64,
    /// `checkin` or `checkout`.
    pub transaction: &'static str,
    /// The item.
    pub item: &'a str,
    /// `done`, `already_done`, `failed` (on the staff worklist) or `outcome_unknown`
    /// (left to be checked before any resend).
    pub outcome: &'static str,
    /// The ILS's answer or why it failed.
    pub detail: &'a str,
}

impl Replayed<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let (queue_id, transaction, item, detail) =
            (self.queue_id, self.transaction, self.item, self.detail);
        match self.outcome {
            "failed" => {
                tracing::warn!(target: "rfidgw::station::offline", queue_id, transaction, item, reason = %detail,
                "offline transaction failed on replay; on the staff worklist");
            }
            "outcome_unknown" => {
                tracing::warn!(target: "rfidgw::station::offline", queue_id, transaction, item, reason = %detail,
                "replay outcome unknown; will check");
            }
            outcome => {
                tracing::info!(target: "rfidgw::station::offline", queue_id, transaction, item, outcome, detail,
                "offline transaction replayed");
            }
        }
        OFFLINE_REPLAYS.inc([transaction, self.outcome]);
    }
}

/// A tag security write changed state in the owed-write book.
#[derive(Clone, Copy, Debug)]
pub struct OwedWrite<'a> {
    /// The station that owes it.
    pub station: &'a str,
    /// The tag.
    pub uid: &'a str,
    /// The item, when known.
    pub item: Option<&'a str>,
    /// `owed` (not confirmed; kept for the next sighting), `done` (completed on a later
    /// sighting), `raised` (to staff after the grace period), `unfinished` (left pending by
    /// a stop and settled at start).
    pub state: &'static str,
    /// Why, or where it completed.
    pub detail: &'a str,
}

impl OwedWrite<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let (station, uid, item, detail) = (
            self.station,
            self.uid,
            self.item.unwrap_or("-"),
            self.detail,
        );
        match self.state {
            "done" => {
                tracing::info!(target: "rfidgw::station::owed", station, uid, item, detail, "owed tag write completed");
            }
            "raised" => {
                tracing::warn!(target: "rfidgw::station::owed", station, uid, item, detail, "owed tag write raised to staff");
            }
            "unfinished" => {
                tracing::warn!(target: "rfidgw::station::owed", station, uid, item, detail, "tag write left unfinished by a stop");
            }
            _ => {
                tracing::warn!(target: "rfidgw::station::owed", station, uid, item, reason = detail, "tag write owed");
            }
        }
        OWED_WRITES.inc([station, self.state]);
    }
}

/// One ILS request and how it ended (the ILS connector).
#[derive(Clone, Copy, Debug)]
pub struct IlsCall<'a> {
    /// `checkout`, `checkin`, `checkout_offline`, `checkin_offline`, `renew`,
    /// `item_information`, `validate_patron`, `patron_account`; `relay_<command>` for a
    /// request of the SIP2 face relayed as it came (`relay_checkout`, …).
    pub message: &'a str,
    /// `ok`, `said_no`, `offline`, `outcome_unknown`, `failed`.
    pub result: &'static str,
    /// From the request to its answer or error.
    pub took: Duration,
    /// The error, when there was one.
    pub error: Option<&'a str>,
}

impl IlsCall<'_> {
    /// Logs and counts it: answers at trace level, an ILS that cannot be reached at debug
    /// level (its link state is logged once by the ILS watcher), an unknown outcome or a
    /// failure as a warning.
    pub fn emit(self) {
        let (message, result, took_ms) = (self.message, self.result, self.took.as_millis());
        let error = self.error.unwrap_or("-");
        match result {
            "ok" | "said_no" => {
                tracing::trace!(target: "rfidgw::ils", message, result, took_ms, "ILS request");
            }
            "offline" => {
                tracing::debug!(target: "rfidgw::ils", message, result, took_ms, error, "ILS request not sent");
            }
            _ => {
                tracing::warn!(target: "rfidgw::ils", message, result, took_ms, error, "ILS request failed");
            }
        }
        ILS_REQUESTS.inc([message, result]);
        ILS_SECONDS_HISTOGRAM.observe([message], self.took.as_secs_f64());
    }
}

/// Counts of occurrences as they stand, for tests of the call sites.
pub mod counts {
    use super::{GATE_ALARMS, GATE_DECISIONS, ILS_REQUESTS, ILS_SECONDS_HISTOGRAM, TAG_READS};

    /// Alarms raised at a gate for a reason.
    pub fn gate_alarms(station: &str, reason: &str) -> u64 {
        GATE_ALARMS.get([station, reason])
    }

    /// Decisions of a gate.
    pub fn gate_decisions(station: &str, verdict: &str, reason: &str) -> u64 {
        GATE_DECISIONS.get([station, verdict, reason])
    }

    /// Tag reads of a device with a decode result.
    pub fn tag_reads(device: &str, result: &str) -> u64 {
        TAG_READS.get([device, result])
    }

    /// ILS requests of a message with a result, and the latency observations of the
    /// message.
    pub fn ils_requests(message: &str, result: &str) -> (u64, u64) {
        (
            ILS_REQUESTS.get([message, result]),
            ILS_SECONDS_HISTOGRAM.count([message]),
        )
    }
}
