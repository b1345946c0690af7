//! The daemon's internal event bus: typed events, journaled, then published.
//!
//! Producers (device tasks through the pipeline, the supervisor) send [`Event`]s into one
//! mpsc channel. The journal writer commits them to the store and only then publishes
//! them on a broadcast channel, so every observer (API, tests, later MQTT) sees only
//! events that are already durable.

use std::sync::Arc;
use std::time::SystemTime;

use rfidgw_driver::{DeviceEvent, DeviceReport, LinkState};
use serde::Serialize;
use serde_json::json;

use crate::store::JournalEntry;

/// Something that happened in the daemon.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The daemon is up (config valid, store open, listeners bound).
    DaemonStarted {
        /// The daemon's version.
        version: String,
    },
    /// The daemon received a stop signal and is shutting down.
    DaemonStopping {
        /// The signal or reason.
        reason: String,
    },
    /// A device task (re)started.
    DeviceStarted {
        /// The device id.
        device: String,
        /// How many times it has been restarted before.
        restarts: u32,
    },
    /// A device task failed and will be restarted after a pause.
    DeviceFailed {
        /// The device id.
        device: String,
        /// What went wrong.
        error: String,
        /// How long until the restart, in milliseconds.
        restart_in_ms: u64,
    },
    /// A peer (the ILS) changed state.
    PeerChanged {
        /// The peer's name (`ils`).
        peer: String,
        /// `online`, `connecting` or `offline`.
        state: String,
        /// The last error, without secrets.
        detail: Option<String>,
    },
    /// A device reported something (a tag, a card, inputs, a link change).
    Device {
        /// The station the device belongs to, if any.
        station: Option<String>,
        /// The device's report.
        report: DeviceReport,
        /// What the tag decoder made of a tag's memory (`tag_arrived` only), typed; JSON is
        /// made only at the edge ([`Event::to_journal`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        decoded: Option<Arc<rfidgw_tag::DecodedTag>>,
        /// Why a presence ended when the tag did not leave by itself (the device stopped).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// What the station decided on this read (made before the read was journaled).
        #[serde(skip_serializing_if = "Option::is_none")]
        decision: Option<Decision>,
    },
    /// A gate raised an alarm (decided before the disk; journaled right after). No patron
    /// data is ever part of it.
    GateAlarm(GateAlarm),
    /// A gate let an item pass under a `log` policy: the reason it looked suspicious.
    GateNotice {
        /// The gate.
        station: String,
        /// The reader.
        device: String,
        /// The tag.
        uid: String,
        /// The item id, when readable.
        item: Option<String>,
        /// `unreadable`, `unknown_state`, `foreign`, `no_owner`.
        reason: &'static str,
    },
    /// An alarm's output command did not get done (device down, refused, too late).
    AlarmOutputFailed {
        /// The alarm.
        alarm_id: String,
        /// The gate.
        station: String,
        /// The device whose outputs were to be driven.
        device: String,
        /// Why.
        error: String,
    },
    /// The title of an alarmed item, looked up from the ILS after the alarm.
    AlarmTitle {
        /// The alarm.
        alarm_id: String,
        /// The gate.
        station: String,
        /// The item.
        item: String,
        /// Its title.
        title: String,
    },
    /// Staff acknowledged an alarm.
    AlarmAcknowledged {
        /// The alarm.
        alarm_id: String,
        /// Who (the API caller or CLI user, as they gave it).
        by: String,
    },
    /// Staff silenced a gate's outputs until a time, or ended a silence (`until_ms: None`).
    GateSilenced {
        /// The gate.
        station: String,
        /// Until when, ms since the Unix epoch; `None` ends the silence.
        until_ms: Option<u64>,
    },
    /// A gate's people-counting interval closed.
    PeopleCounted {
        /// The gate.
        station: String,
        /// People in during the interval.
        entered: u64,
        /// People out during the interval.
        left: u64,
        /// The interval's length in seconds.
        interval_s: u64,
    },
    /// A checkout, checkin or renewal through the REST bridge (`/api/v1/ils/…`). No patron
    /// id or PIN is part of it.
    BridgeTransaction {
        /// `checkout`, `checkin` or `renew`.
        message: &'static str,
        /// The item.
        item: String,
        /// `accepted`, `refused` (the ILS said no), `ils_offline`, `ils_outcome_unknown`,
        /// `ils_failed`.
        outcome: &'static str,
        /// What the ILS said to show.
        screen_message: Vec<String>,
        /// The API token's name.
        by: String,
    },
    /// Staff drove a device through the API: a tag's security written (and read back), or
    /// its outputs.
    DeviceAction {
        /// The device.
        device: String,
        /// Its station, if any.
        station: Option<String>,
        /// `secure`, `unsecure` or `outputs`.
        action: &'static str,
        /// The tag, for a security write.
        uid: Option<String>,
        /// `confirmed`, `not_confirmed` (written, read back otherwise or not at all),
        /// `refused` (by the reader), `done` (outputs), `failed` (no answer).
        outcome: &'static str,
        /// The read-back or the reason, when there is one.
        detail: Option<String>,
        /// The API token's name.
        by: String,
    },
    /// A return or self-check station, the owed-write book or the replayer did something.
    /// Journaled with its own kind (`item_returned`, `item_loan`, …).
    #[serde(untagged)]
    Station(crate::station::activity::Activity),
}

/// A station's decision on one read, journaled with the read (`payload.decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `alarm`, `pass` or `notice`.
    pub verdict: &'static str,
    /// Why: `secured`, `not_on_loan`, `unsecured`, `policy`, `foreign`, `unreadable` …
    pub reason: &'static str,
    /// `false` when the read continued a passage already decided (second pedestal, the same
    /// item back within the gate's windows): nothing new was done.
    pub acted: bool,
}

/// A gate alarm as journaled and shown by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateAlarm {
    /// The alarm's id (`A` + ms since the epoch + `-` + a sequence number), for acknowledging.
    pub alarm_id: String,
    /// The gate.
    pub station: String,
    /// The reader that saw the item first.
    pub device: String,
    /// The tag.
    pub uid: String,
    /// The item id, when the tag could be read.
    pub item: Option<String>,
    /// `secured`, `not_on_loan`, `unreadable`, `unknown_state`, `foreign`, `no_owner`.
    pub reason: &'static str,
    /// Whether the gate was silenced (no outputs driven).
    pub silenced: bool,
}

/// A request from staff (through the API) to a station, answered on `reply`.
#[derive(Debug)]
pub enum StationControl {
    /// A request for a return or self-check station (patron, finish, sort plan).
    Desk {
        /// The station.
        station: String,
        /// The request, with its reply channel.
        input: crate::station::transaction::StationInput,
    },
    /// Silence a gate's outputs for its configured time (`on`), or end a silence.
    Silence {
        /// The gate.
        station: String,
        /// `true` silences, `false` ends the silence.
        on: bool,
        /// Until when (ms since the epoch; `None` when ended), or why not.
        reply: tokio::sync::oneshot::Sender<Result<Option<u64>, String>>,
    },
}

/// The journal kinds that are alarm records (kept for `stations.alarm_keep_days`).
pub const ALARM_KINDS: [&str; 4] = [
    "gate_alarm",
    "alarm_title",
    "alarm_acknowledged",
    "alarm_output_failed",
];

impl Event {
    /// The journal's `kind` for this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DaemonStarted { .. } => "daemon_started",
            Self::DaemonStopping { .. } => "daemon_stopping",
            Self::DeviceStarted { .. } => "device_started",
            Self::DeviceFailed { .. } => "device_failed",
            Self::PeerChanged { .. } => "peer_changed",
            Self::GateAlarm(_) => "gate_alarm",
            Self::GateNotice { .. } => "gate_notice",
            Self::AlarmOutputFailed { .. } => "alarm_output_failed",
            Self::AlarmTitle { .. } => "alarm_title",
            Self::AlarmAcknowledged { .. } => "alarm_acknowledged",
            Self::GateSilenced { .. } => "gate_silenced",
            Self::PeopleCounted { .. } => "people_counted",
            Self::BridgeTransaction { .. } => "bridge_transaction",
            Self::DeviceAction { .. } => "device_action",
            Self::Station(activity) => activity.kind(),
            Self::Device { report, .. } => match &report.event {
                DeviceEvent::TagArrived(_) => "tag_arrived",
                DeviceEvent::TagDeparted { .. } => "tag_departed",
                DeviceEvent::Card(_) => "card_read",
                DeviceEvent::Inputs(_) => "inputs_changed",
                DeviceEvent::Stopped { .. } => "device_stopped",
                DeviceEvent::Sorter(_) => "sorter_changed",
                DeviceEvent::Health {
                    link: LinkState::Connected,
                    ..
                } => "device_connected",
                DeviceEvent::Health {
                    link: LinkState::Connecting,
                    ..
                } => "device_connecting",
                DeviceEvent::Health {
                    link: LinkState::Disconnected,
                    ..
                } => "device_disconnected",
            },
        }
    }

    /// Makes a payload read as people expect: the row's kind as its `kind`, times as
    /// RFC 3339 beside the milliseconds.
    fn unify(&self, payload: &mut serde_json::Value) {
        if let Some(map) = payload.as_object_mut() {
            // One name per kind: a device event's own tag (`card`, `health`) gives way to the
            // row's kind (`card_read`, `device_connected`), so row and payload agree.
            map.insert("kind".into(), json!(self.kind()));
            if let Self::GateSilenced {
                until_ms: Some(until),
                ..
            } = self
            {
                let until = i64::try_from(*until).unwrap_or(i64::MAX);
                map.insert("until".into(), json!(crate::rfc3339::format(until)));
            }
        }
    }

    /// The journal row for this event.
    pub fn to_journal(&self) -> JournalEntry {
        let (at, device, station, payload) = match self {
            Self::Device {
                station,
                report,
                decoded,
                reason,
                decision,
            } => {
                let mut payload = serde_json::to_value(&report.event)
                    .unwrap_or_else(|e| json!({ "unserialisable": e.to_string() }));
                if let Some(map) = payload.as_object_mut() {
                    if let Some(decoded) = decoded {
                        map.insert(
                            "decoded".into(),
                            serde_json::to_value(&**decoded).unwrap_or_default(),
                        );
                    }
                    if let Some(reason) = reason {
                        map.insert("reason".into(), json!(reason));
                    }
                    if let Some(decision) = decision {
                        map.insert("decision".into(), json!(decision));
                    }
                }
                (
                    report.at,
                    Some(report.device.clone()),
                    station.clone(),
                    payload,
                )
            }
            Self::DeviceStarted { device, .. } | Self::DeviceFailed { device, .. } => (
                SystemTime::now(),
                Some(device.clone()),
                None,
                serde_json::to_value(self).unwrap_or_default(),
            ),
            Self::GateAlarm(GateAlarm {
                station, device, ..
            })
            | Self::GateNotice {
                station, device, ..
            }
            | Self::AlarmOutputFailed {
                station, device, ..
            } => (
                SystemTime::now(),
                Some(device.clone()),
                Some(station.clone()),
                serde_json::to_value(self).unwrap_or_default(),
            ),
            Self::AlarmTitle { station, .. }
            | Self::GateSilenced { station, .. }
            | Self::PeopleCounted { station, .. } => (
                SystemTime::now(),
                None,
                Some(station.clone()),
                serde_json::to_value(self).unwrap_or_default(),
            ),
            Self::DeviceAction {
                device, station, ..
            } => (
                SystemTime::now(),
                Some(device.clone()),
                station.clone(),
                serde_json::to_value(self).unwrap_or_default(),
            ),
            Self::Station(activity) => (
                SystemTime::now(),
                activity.device().map(str::to_owned),
                Some(activity.station().to_owned()),
                serde_json::to_value(activity).unwrap_or_default(),
            ),
            Self::DaemonStarted { .. }
            | Self::DaemonStopping { .. }
            | Self::PeerChanged { .. }
            | Self::BridgeTransaction { .. }
            | Self::AlarmAcknowledged { .. } => (
                SystemTime::now(),
                None,
                None,
                serde_json::to_value(self).unwrap_or_default(),
            ),
        };
        let mut payload = payload;
        self.unify(&mut payload);
        JournalEntry {
            at,
            kind: self.kind().to_owned(),
            device,
            station,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfidgw_driver::{TagRead, Uid};

    #[test]
    fn a_tag_arrival_is_journaled_with_device_station_and_decoded_item() {
        let report = DeviceReport {
            device: "gate-reader".into(),
            at: SystemTime::UNIX_EPOCH,
            event: DeviceEvent::TagArrived(TagRead::uid_only(Uid::new([0xE0, 0x04]))),
        };
        let decoded = rfidgw_tag::decode(
            &rfidgw_tag::parse_hex(
                "11010131313232333334340000000000000000513E4445373035000000000000",
            )
            .unwrap(),
            &rfidgw_tag::TagHints::default(),
            &rfidgw_tag::SiteConfig::default(),
        );
        let event = Event::Device {
            station: Some("exit".into()),
            report,
            decoded: Some(Arc::new(decoded)),
            reason: None,
            decision: Some(Decision {
                verdict: "alarm",
                reason: "secured",
                acted: true,
            }),
        };
        let entry = event.to_journal();
        assert_eq!(entry.kind, "tag_arrived");
        assert_eq!(entry.device.as_deref(), Some("gate-reader"));
        assert_eq!(entry.station.as_deref(), Some("exit"));
        assert_eq!(entry.at, SystemTime::UNIX_EPOCH);
        assert_eq!(entry.payload["uid"], "E004");
        assert_eq!(entry.payload["decoded"]["primary_item_id"], "11223344");
        assert_eq!(entry.payload["decision"]["verdict"], "alarm");
        assert_eq!(entry.payload["decision"]["reason"], "secured");
    }

    #[test]
    fn a_rows_kind_and_its_payloads_kind_are_one_name() {
        let report = |event| Event::Device {
            station: None,
            report: DeviceReport {
                device: "pad".into(),
                at: SystemTime::UNIX_EPOCH,
                event,
            },
            decoded: None,
            reason: None,
            decision: None,
        };
        let events = [
            report(DeviceEvent::TagArrived(TagRead::uid_only(Uid::new([0xE0])))),
            report(DeviceEvent::TagDeparted {
                uid: Uid::new([0xE0]),
            }),
            report(DeviceEvent::Card(rfidgw_driver::CardRead {
                number: "P1".into(),
            })),
            report(DeviceEvent::Stopped {
                reason: "shutdown".into(),
            }),
            report(DeviceEvent::Health {
                link: LinkState::Connected,
                counters: rfidgw_driver::LineCounters::default(),
            }),
            Event::DaemonStarted {
                version: "1".into(),
            },
            Event::GateSilenced {
                station: "exit".into(),
                until_ms: Some(1_796_175_269_788),
            },
            Event::AlarmAcknowledged {
                alarm_id: "A1-1".into(),
                by: "anna".into(),
            },
        ];
        for event in events {
            let entry = event.to_journal();
            assert_eq!(entry.payload["kind"], entry.kind, "{entry:?}");
        }
        let silenced = Event::GateSilenced {
            station: "exit".into(),
            until_ms: Some(1_796_175_269_788),
        }
        .to_journal();
        assert_eq!(silenced.payload["until"], "2026-12-02T01:34:29.788Z");
    }

    #[test]
    fn supervisor_events_carry_their_fields_in_the_payload() {
        let entry = Event::DeviceFailed {
            device: "pad".into(),
            error: "transport: gone".into(),
            restart_in_ms: 500,
        }
        .to_journal();
        assert_eq!(entry.kind, "device_failed");
        assert_eq!(entry.device.as_deref(), Some("pad"));
        assert_eq!(entry.payload["restart_in_ms"], 500);
        assert_eq!(entry.payload["error"], "transport: gone");
    }
}
