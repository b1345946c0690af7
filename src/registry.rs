//! The device registry: what every configured device is doing right now.
//!
//! Written by the supervisor (task started, failed, restarting) and the pipeline (link
//! state, counters, last event); read by the status API and systemd's `STATUS=` line.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rfidgw_driver::{LineCounters, LinkState};
use serde::Serialize;

use crate::config::Config;
use crate::devices::DriverKind;

/// The state of one device task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// The task is starting or the reader has not answered yet.
    Starting,
    /// The reader answers.
    Connected,
    /// The driver reports the line is down but is still running.
    Disconnected,
    /// The task failed and waits to be restarted.
    Restarting,
    /// The task ended at shutdown.
    Stopped,
}

/// What the registry knows about one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    /// The device id.
    pub id: String,
    /// The driver.
    pub driver: DriverKind,
    /// The station it belongs to.
    pub station: Option<String>,
    /// Current state.
    pub state: DeviceState,
    /// Restarts since the daemon started.
    pub restarts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When the device last reported anything, in ms since the Unix epoch (RFC 3339
    /// `last_event` in JSON).
    #[serde(rename = "last_event", serialize_with = "crate::rfc3339::opt_ms_u64")]
    pub last_event_ms: Option<u64>,
    /// When the reader last sent a good frame, in ms since the Unix epoch (kept across
    /// restarts of the device task, so a dead reader shows when it was last heard; RFC 3339
    /// `last_frame` in JSON).
    #[serde(rename = "last_frame", serialize_with = "crate::rfc3339::opt_ms_u64")]
    pub last_frame_ms: Option<u64>,
    /// Line counters the driver reported last.
    pub counters: LineCounters,
    /// Tags in the field now.
    pub tags_present: usize,
}

/// Shared, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    devices: Arc<RwLock<BTreeMap<String, DeviceStatus>>>,
}

fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Registry {
    /// A registry with every configured device in the `Starting` state.
    pub fn from_config(config: &Config) -> Self {
        let devices = config
            .devices
            .iter()
            .map(|d| {
                let status = DeviceStatus {
                    id: d.id.clone(),
                    driver: d.driver,
                    station: config.station_of(&d.id).map(|s| s.id.clone()),
                    state: DeviceState::Starting,
                    restarts: 0,
                    last_error: None,
                    last_event_ms: None,
                    last_frame_ms: None,
                    counters: LineCounters::default(),
                    tags_present: 0,
                };
                (d.id.clone(), status)
            })
            .collect();
        Self {
            devices: Arc::new(RwLock::new(devices)),
        }
    }

    /// A copy of every device's status, ordered by id.
    pub fn snapshot(&self) -> Vec<DeviceStatus> {
        self.read(|m| m.values().cloned().collect())
    }

    /// The station of a device.
    pub fn station_of(&self, device: &str) -> Option<String> {
        self.read(|m| m.get(device).and_then(|d| d.station.clone()))
    }

    /// Applies `change` to one device's status; unknown ids are ignored.
    pub fn update(&self, device: &str, change: impl FnOnce(&mut DeviceStatus)) {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still usable.
        let mut map = self
            .devices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(status) = map.get_mut(device) {
            change(status);
        }
    }

    /// Records that a device reported something now.
    pub fn touch(&self, device: &str, change: impl FnOnce(&mut DeviceStatus)) {
        self.update(device, |s| {
            s.last_event_ms = Some(now_ms());
            change(s);
        });
    }

    /// Sets the state from a driver's link report.
    pub fn set_link(&self, device: &str, link: LinkState, counters: LineCounters) {
        self.touch(device, |s| {
            // A restarted driver counts afresh and has no frame yet: keep the last one seen.
            if let Some(at) = counters.last_frame {
                s.last_frame_ms = Some(epoch_ms(at));
            }
            s.counters = counters;
            s.state = match link {
                LinkState::Connecting => DeviceState::Starting,
                LinkState::Connected => DeviceState::Connected,
                LinkState::Disconnected => DeviceState::Disconnected,
            };
        });
    }

    /// One line for systemd's `STATUS=`: `devices 2/3 connected (pad: restarting)`.
    pub fn status_line(&self) -> String {
        self.read(|m| {
            let connected = m
                .values()
                .filter(|d| d.state == DeviceState::Connected)
                .count();
            let troubled: Vec<String> = m
                .values()
                .filter(|d| !matches!(d.state, DeviceState::Connected | DeviceState::Stopped))
                .map(|d| format!("{}: {}", d.id, state_word(d.state)))
                .collect();
            if troubled.is_empty() {
                format!("devices {connected}/{} connected", m.len())
            } else {
                format!(
                    "devices {connected}/{} connected ({})",
                    m.len(),
                    troubled.join(", ")
                )
            }
        })
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<String, DeviceStatus>) -> T) -> T {
        f(&self
            .devices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

fn state_word(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Starting => "starting",
        DeviceState::Connected => "connected",
        DeviceState::Disconnected => "disconnected",
        DeviceState::Restarting => "restarting",
        DeviceState::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let config: Config = toml::from_str(
            r#"
            [[devices]]
            id = "gate"
            driver = "sim"
            settings = { round_ms = 10 }
            [[devices]]
            id = "pad"
            driver = "sim"
            settings = { round_ms = 10 }
            [[stations]]
            id = "exit"
            kind = "gate"
            devices = ["gate"]
            "#,
        )
        .unwrap();
        Registry::from_config(&config)
    }

    #[test]
    fn devices_start_in_starting_state_with_their_station() {
        let r = registry();
        let snapshot = r.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert!(snapshot.iter().all(|d| d.state == DeviceState::Starting));
        assert_eq!(r.station_of("gate").as_deref(), Some("exit"));
        assert_eq!(r.station_of("pad"), None);
    }

    #[test]
    fn status_line_counts_connected_devices_and_names_the_others() {
        let r = registry();
        r.set_link("gate", LinkState::Connected, LineCounters::default());
        r.update("pad", |s| s.state = DeviceState::Restarting);
        assert_eq!(r.status_line(), "devices 1/2 connected (pad: restarting)");
        r.set_link("pad", LinkState::Connected, LineCounters::default());
        assert_eq!(r.status_line(), "devices 2/2 connected");
    }

    #[test]
    fn the_last_frame_time_is_kept_in_ms_shows_as_rfc3339_and_survives_a_restarted_driver() {
        let r = registry();
        let last = |r: &Registry| r.snapshot()[0].last_frame_ms;
        assert_eq!(last(&r), None, "no frame before the driver reports one");
        r.set_link("gate", LinkState::Connecting, LineCounters::default());
        assert_eq!(last(&r), None);
        let heard = UNIX_EPOCH + std::time::Duration::from_millis(1_764_410_000_123);
        let counters = LineCounters {
            frames_ok: 4,
            last_frame: Some(heard),
            ..LineCounters::default()
        };
        r.set_link("gate", LinkState::Connected, counters);
        assert_eq!(last(&r), Some(1_764_410_000_123));
        // The restarted driver's fresh counters have no frame yet.
        r.set_link("gate", LinkState::Disconnected, LineCounters::default());
        assert_eq!(last(&r), Some(1_764_410_000_123));
        assert_eq!(r.snapshot()[0].counters.frames_ok, 0);
        let json = serde_json::to_value(&r.snapshot()[0]).unwrap();
        assert_eq!(
            json["last_frame"], "2025-11-29T09:53:20.123Z",
            "RFC 3339 in JSON"
        );
    }
}
