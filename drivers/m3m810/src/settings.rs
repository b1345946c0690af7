//! The settings table of a `3m810` device, and the device task built from it.
//!
//! ```toml
//! [[devices]]
//! id = "staff-pad"
//! driver = "3m810"
//! [devices.settings.transport]
//! kind = "serial"                 # or "tcp", or "simulator"
//! path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1B2C3-if00-port0"
//! # baud 19200, 8N1 by default (PROTOCOLS.md §4.3)
//! [devices.settings.poll]         # the shared read loop (rfidgw_driver::read_loop)
//! poll_interval_ms = 200
//! memory_blocks = 8
//! [devices.settings.driver]
//! command_timeout_ms = 1500
//! write_attempts = 10
//! [[devices.settings.simulator.tags]]   # only with kind = "simulator"
//! uid = "E004010031269117"
//! afi = "07"
//! memory = "11010000 …"
//! at_ms = 0
//! stay_ms = 3000
//! ```

use std::time::Duration;

use rfidgw_driver::hex_serde;
use rfidgw_driver::read_loop::{self, ReadLoopConfig};
use rfidgw_driver::transport::{self, BoxTransport, LineDefaults, Parity, TransportConfig};
use rfidgw_driver::{
    CommandLease, Device, DeviceError, DeviceEvent, DeviceEventSink, DeviceFuture, LinkState,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::driver::{DriverConfig, M3m810Reader};
use crate::sim::{ScriptedTag, SimPad, VirtualTag};

pub use rfidgw_driver::sim_script::{SimTagSettings, SimulatorSettings};

/// The 3M 810's serial line: 19200 baud, 8N1, no handshake (PROTOCOLS.md §4.3).
pub const LINE_DEFAULTS: LineDefaults = LineDefaults {
    baud: 19_200,
    parity: Parity::None,
    data_bits: 8,
    stop_bits: 1,
};

/// Settings of a `3m810` device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct M3m810Settings {
    /// How the pad is attached.
    pub transport: TransportConfig,
    /// Polling and per-tag reads of the shared read loop.
    #[serde(default)]
    pub poll: ReadLoopConfig,
    /// Timing and retries of the driver.
    #[serde(default)]
    pub driver: DriverSettings,
    /// The virtual pad used with `transport.kind = "simulator"`.
    #[serde(default)]
    pub simulator: SimulatorSettings,
}

/// The driver's timing and retries, in config units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverSettings {
    /// Time to wait for one complete reply, in milliseconds.
    pub command_timeout_ms: u64,
    /// Write attempts (write + read-back each) before a write is given up (1 to 100).
    pub write_attempts: u32,
    /// Pause between write attempts, in milliseconds.
    pub retry_pause_ms: u64,
    /// Options byte of the inventory (`05` as 3M software sends; `07` also asks DSFIDs).
    #[serde(with = "hex_serde::byte")]
    pub inventory_options: u8,
    /// Blocks per read multiblock command (1 to 32).
    pub blocks_per_read: u8,
}

impl Default for DriverSettings {
    fn default() -> Self {
        let d = DriverConfig::default();
        Self {
            command_timeout_ms: u64::try_from(d.command_timeout.as_millis()).unwrap_or(u64::MAX),
            write_attempts: d.write_attempts,
            retry_pause_ms: u64::try_from(d.retry_pause.as_millis()).unwrap_or(u64::MAX),
            inventory_options: d.inventory_options,
            blocks_per_read: d.blocks_per_read,
        }
    }
}

/// Why settings cannot work, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The settings key, e.g. `driver.write_attempts`.
    pub key: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl DriverSettings {
    /// The driver configuration, checked.
    pub fn to_config(&self) -> Result<DriverConfig, SettingsError> {
        if !(1..=60_000).contains(&self.command_timeout_ms) {
            return Err(SettingsError {
                key: "driver.command_timeout_ms".into(),
                message: format!(
                    "{} is not 1 to 60000 ms; 1500 is the default",
                    self.command_timeout_ms
                ),
            });
        }
        if self.retry_pause_ms > 10_000 {
            return Err(SettingsError {
                key: "driver.retry_pause_ms".into(),
                message: format!("{} is more than 10000 ms", self.retry_pause_ms),
            });
        }
        if !(1..=100).contains(&self.write_attempts) {
            return Err(SettingsError {
                key: "driver.write_attempts".into(),
                message: format!("{} is not 1 to 100", self.write_attempts),
            });
        }
        if !(1..=32).contains(&self.blocks_per_read) {
            return Err(SettingsError {
                key: "driver.blocks_per_read".into(),
                message: format!("{} is not 1 to 32", self.blocks_per_read),
            });
        }
        Ok(DriverConfig {
            command_timeout: Duration::from_millis(self.command_timeout_ms),
            write_attempts: self.write_attempts,
            retry_pause: Duration::from_millis(self.retry_pause_ms),
            inventory_options: self.inventory_options,
            blocks_per_read: self.blocks_per_read,
        })
    }
}

/// The 3M 810's virtual tags from the shared `simulator` table.
pub trait SimulatorScript {
    /// The script, checked.
    fn script(&self) -> Result<Vec<ScriptedTag>, SettingsError>;
}

impl SimulatorScript for SimulatorSettings {
    fn script(&self) -> Result<Vec<ScriptedTag>, SettingsError> {
        let entries = self.entries().map_err(|e| SettingsError {
            key: e.key,
            message: e.message,
        })?;
        Ok(entries
            .into_iter()
            .map(|entry| ScriptedTag {
                tag: VirtualTag {
                    afi: entry.afi,
                    dsfid: entry.dsfid,
                    eas: entry.eas,
                    memory: entry.memory,
                    ..VirtualTag::new(entry.uid)
                },
                at: entry.at,
                stay: entry.stay,
            })
            .collect())
    }
}

/// A `3m810` device: opens its transport, runs the shared read loop over the driver.
pub struct M3m810Device {
    settings: M3m810Settings,
    config: DriverConfig,
    script: Vec<ScriptedTag>,
    commands: Option<CommandLease>,
    pad: SimPad,
}

impl std::fmt::Debug for M3m810Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M3m810Device")
            .field("transport", &self.settings.transport.to_string())
            .finish_non_exhaustive()
    }
}

impl M3m810Device {
    /// A device from checked settings.
    pub fn new(settings: M3m810Settings) -> Result<Self, SettingsError> {
        // The 810 has no notification inventory: `poll.mode = "notify"` is refused here.
        settings.poll.validate(None).map_err(|e| SettingsError {
            key: format!("poll.{}", e.key),
            message: e.message,
        })?;
        let config = settings.driver.to_config()?;
        if !settings.simulator.inputs.is_empty() {
            return Err(SettingsError {
                key: "simulator.inputs".into(),
                message: "the 3M pad has no digital inputs; scripted inputs are for FEIG gates"
                    .into(),
            });
        }
        let script = settings.simulator.script()?;
        Ok(Self {
            settings,
            config,
            script,
            commands: None,
            pad: SimPad::new(),
        })
    }

    /// With `transport.kind = "simulator"`: the virtual pad `run` serves, to put tags on it,
    /// take them off and ask for faults (tests, demo).
    pub fn simulator(&self) -> SimPad {
        self.pad.clone()
    }

    fn start_simulator(&self) -> BoxTransport {
        let pad = self.pad.clone();
        let (host, pad_end) = tokio::io::duplex(8 * 1024);
        let script = self.script.clone();
        let round = Duration::from_millis(self.settings.simulator.round_ms);
        let repeat = self.settings.simulator.round_ms > 0;
        tokio::spawn(async move {
            // The script plays while the pad is served; both end when the host end closes.
            tokio::select! {
                result = pad.serve(pad_end) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "3M sim: stream ended");
                    }
                }
                () = async {
                    pad.play(&script, round, repeat).await;
                    std::future::pending::<()>().await;
                } => {}
            }
        });
        Box::new(host)
    }
}

impl Device for M3m810Device {
    /// Tag commands are served between inventories, one at a time.
    fn lend_commands(&mut self, lease: CommandLease) -> Option<CommandLease> {
        self.commands = Some(lease);
        None
    }

    fn run(mut self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture {
        Box::pin(async move {
            let io = transport::open(&self.settings.transport, LINE_DEFAULTS, || {
                Ok(self.start_simulator())
            })
            .await
            .map_err(DeviceError::from)?;
            let mut reader = M3m810Reader::new(io, self.config.clone());
            // Ask the version first: a wrong port or a dead reader fails here with "did not
            // answer command 11", which says more to a field engineer than a failed poll.
            let version = match reader.version().await {
                Ok(version) => version,
                Err(error) => {
                    // Best effort: the bus may be closing too.
                    let _ = sink
                        .send(DeviceEvent::Health {
                            link: LinkState::Disconnected,
                            counters: reader.stats().snapshot(),
                        })
                        .await;
                    return Err(error.into());
                }
            };
            match version {
                Ok(version) if version[0] == 0x0A => {
                    tracing::info!(device = sink.device(), version = %hex::encode_upper(version), "3M reader answers");
                }
                Ok(version) => tracing::warn!(
                    device = sink.device(),
                    version = %hex::encode_upper(version),
                    "the reader's version does not start with 0A (3M); polling it anyway"
                ),
                Err(refusal) => {
                    tracing::warn!(device = sink.device(), %refusal, "the reader refused the version command");
                }
            }
            let poll = &self.settings.poll;
            let commands = self.commands.as_deref_mut();
            read_loop::run(&mut reader, poll, &sink, &cancel, commands).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_pad_needs_only_its_path() {
        let settings: M3m810Settings = toml::from_str(
            "[transport]\nkind = \"serial\"\npath = \"/dev/serial/by-id/usb-FTDI-if00\"",
        )
        .unwrap();
        assert_eq!(settings.driver, DriverSettings::default());
        assert!(M3m810Device::new(settings).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let cases = [
            (
                "[transport]\nkind = \"simulator\"\n[driver]\nretries = 3",
                "retries",
            ),
            ("[transport]\nkind = \"simulator\"\nspeed = 1", "speed"),
            (
                "[transport]\nkind = \"simulator\"\n[driver]\ninventory_options = \"zz\"",
                "zz",
            ),
            (
                "[transport]\nkind = \"simulator\"\n[[simulator.tags]]\nuid = \"E0\"\nmemory = \"0\"",
                "not hex bytes",
            ),
        ];
        for (text, needle) in cases {
            let err = toml::from_str::<M3m810Settings>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn checked_settings_name_the_key_that_cannot_work() {
        let cases = [
            (
                "[driver]\nwrite_attempts = 0",
                "driver.write_attempts: 0 is not 1 to 100",
            ),
            (
                "[driver]\ncommand_timeout_ms = 0",
                "driver.command_timeout_ms",
            ),
            (
                "[driver]\nblocks_per_read = 40",
                "driver.blocks_per_read: 40",
            ),
            (
                "[[simulator.tags]]\nuid = \"E004\"",
                "simulator.tags[0].uid: E004 is not 8 bytes",
            ),
            (
                "[poll]\nmode = \"notify\"",
                "poll.mode: \"notify\" needs a reader with a notification inventory",
            ),
        ];
        for (text, needle) in cases {
            let text = format!("[transport]\nkind = \"simulator\"\n{text}");
            let settings: M3m810Settings = toml::from_str(&text).unwrap();
            let err = M3m810Device::new(settings).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
