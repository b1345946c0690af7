//! The daemon's internal event bus: typed events, journaled, then published.
//!
//! Producers (device tasks through the pipeline, the supervisor) send [`Event`]s into one
//! mpsc channel. The journal writer commits them to the store and only then publishes
//! them on a broadcast channel, so every observer (API, tests, later MQTT) sees only
//! events that are already durable.

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
        /// What the tag decoder made of a tag's memory (`tag_arrived` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        decoded: Option<serde_json::Value>,
    },
}

impl Event {
    /// The journal's `kind` for this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DaemonStarted { .. } => "daemon_started",
            Self::DaemonStopping { .. } => "daemon_stopping",
            Self::DeviceStarted { .. } => "device_started",
            Self::DeviceFailed { .. } => "device_failed",
            Self::PeerChanged { .. } => "peer_changed",
            Self::Device { report, .. } => match &report.event {
                DeviceEvent::TagArrived(_) => "tag_arrived",
                DeviceEvent::TagDeparted { .. } => "tag_departed",
                DeviceEvent::Card(_) => "card_read",
                DeviceEvent::Inputs(_) => "inputs_changed",
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

    /// The journal row for this event.
    pub fn to_journal(&self) -> JournalEntry {
        let (at, device, station, payload) = match self {
            Self::Device {
                station,
                report,
                decoded,
            } => {
                let mut payload = serde_json::to_value(&report.event)
                    .unwrap_or_else(|e| json!({ "unserialisable": e.to_string() }));
                if let (Some(decoded), Some(map)) = (decoded, payload.as_object_mut()) {
                    map.insert("decoded".into(), decoded.clone());
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
            Self::DaemonStarted { .. } | Self::DaemonStopping { .. } | Self::PeerChanged { .. } => {
                (
                    SystemTime::now(),
                    None,
                    None,
                    serde_json::to_value(self).unwrap_or_default(),
                )
            }
        };
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
        let event = Event::Device {
            station: Some("exit".into()),
            report,
            decoded: Some(json!({"primary_item_id": "1234"})),
        };
        let entry = event.to_journal();
        assert_eq!(entry.kind, "tag_arrived");
        assert_eq!(entry.device.as_deref(), Some("gate-reader"));
        assert_eq!(entry.station.as_deref(), Some("exit"));
        assert_eq!(entry.at, SystemTime::UNIX_EPOCH);
        assert_eq!(entry.payload["uid"], "E004");
        assert_eq!(entry.payload["decoded"]["primary_item_id"], "1234");
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
