//! The settings of a `driver = "feig"` device (`[devices.settings]` in the config).
//!
//! The same four tables as every HF reader (`rfidgw_3m810::settings` has them too):
//! `transport`, `poll` (the shared read loop, [`ReadLoopConfig`]), `driver` (FEIG's own
//! keys) and `simulator` (the virtual reader used with `transport.kind = "simulator"`).
//!
//! ```toml
//! [[devices]]
//! id = "gate-1"
//! driver = "feig"
//! [devices.settings.transport]
//! kind = "serial"                 # or "tcp", or "simulator"
//! path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A9XYZ-if00-port0"
//! # baud 38400, 8E1 by default (PROTOCOLS.md §4.2)
//! [devices.settings.poll]         # the shared read loop (rfidgw_driver::read_loop)
//! mode = "poll"                   # or "notify": B0 01 NTFC, the reader answers on arrival
//! notify_wait_ms = 2000           # notify: reader holds a request this long (100–25500)
//! poll_interval_ms = 100
//! memory_blocks = 8
//! inventory_afi = "07"            # gate: only secured items answer (optional)
//! [devices.settings.driver]
//! address = "FF"                  # COM-ADR; FF always reaches the reader
//! poll_inputs = true              # light barriers on the digital inputs
//! [[devices.settings.simulator.tags]]   # only with kind = "simulator"
//! uid = "E004010031269117"
//! afi = "07"
//! memory = "11010000 …"
//! at_ms = 0
//! stay_ms = 3000
//! ```

use std::time::Duration;

use rfidgw_driver::read_loop::ReadLoopConfig;
use rfidgw_driver::transport::{LineDefaults, Parity, TransportConfig};
use rfidgw_driver::{Uid, hex_serde};
use serde::{Deserialize, Serialize};

use crate::driver::Timing;
use crate::sim::{ScriptedTag, VirtualTag};

pub use rfidgw_driver::sim_script::{SimTagSettings, SimulatorSettings};

/// FEIG's serial defaults: 38400 baud, 8 data bits, even parity, 1 stop bit (PROTOCOLS.md §4.2).
pub const LINE_DEFAULTS: LineDefaults = LineDefaults {
    baud: 38_400,
    parity: Parity::Even,
    data_bits: 8,
    stop_bits: 1,
};

/// PSST ceiling: FEIG allows at most 5 ms of silence before a request (PROTOCOLS.md §4.2).
const MAX_PSST_MS: u64 = 5;

/// Settings of one FEIG reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeigSettings {
    /// How the reader is attached.
    pub transport: TransportConfig,
    /// Polling and per-tag reads of the shared read loop.
    #[serde(default)]
    pub poll: ReadLoopConfig,
    /// FEIG's own addressing, inputs and timing.
    #[serde(default)]
    pub driver: DriverSettings,
    /// The virtual reader used with `transport.kind = "simulator"`.
    #[serde(default)]
    pub simulator: SimulatorSettings,
}

/// FEIG-specific settings, in config units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverSettings {
    /// COM-ADR of the reader (`FF` always reaches it).
    #[serde(with = "hex_serde::byte")]
    pub address: u8,
    /// Read the digital inputs (`[74]`, gate light barriers) after each inventory and
    /// report changes.
    pub poll_inputs: bool,
    /// How long to wait for a reply, in milliseconds.
    pub reply_timeout_ms: u64,
    /// Silence before each request after a reply (PSST, 0–5 ms).
    pub psst_ms: u64,
    /// Drop a partial frame after this gap between characters; default 12 ms on serial
    /// lines, off on TCP and the simulator (0 turns it off).
    pub inter_char_timeout_ms: Option<u64>,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            address: crate::frame::BROADCAST_ADDRESS,
            poll_inputs: false,
            reply_timeout_ms: 1000,
            psst_ms: MAX_PSST_MS,
            inter_char_timeout_ms: None,
        }
    }
}

/// Why settings cannot work, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The settings key, e.g. `driver.psst_ms`.
    pub key: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl SettingsError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// FEIG's virtual tags from the shared `simulator` table.
pub trait SimulatorScript {
    /// The script, checked: every tag starts outside the field unless it enters at 0 ms.
    fn script(&self) -> Result<Vec<ScriptedTag>, SettingsError>;
}

impl SimulatorScript for SimulatorSettings {
    fn script(&self) -> Result<Vec<ScriptedTag>, SettingsError> {
        let entries = self
            .entries()
            .map_err(|e| SettingsError::new(e.key, e.message))?;
        Ok(entries
            .into_iter()
            .map(|entry| ScriptedTag {
                tag: VirtualTag {
                    afi: entry.afi,
                    dsfid: entry.dsfid,
                    eas: entry.eas,
                    memory: entry.memory,
                    in_field: entry.at.is_zero(),
                    ..VirtualTag::new(Uid::new(entry.uid))
                },
                at: entry.at,
                stay: entry.stay,
            })
            .collect())
    }
}

impl FeigSettings {
    /// Settings for this transport with every default.
    pub fn new(transport: TransportConfig) -> Self {
        Self {
            transport,
            poll: ReadLoopConfig::default(),
            driver: DriverSettings::default(),
            simulator: SimulatorSettings::default(),
        }
    }

    /// Checks what serde cannot: values out of range and keys that only make sense together.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.driver.psst_ms > MAX_PSST_MS {
            return Err(SettingsError::new(
                "driver.psst_ms",
                format!(
                    "{} is above the {MAX_PSST_MS} ms FEIG allows",
                    self.driver.psst_ms
                ),
            ));
        }
        // FEIG readers have a notification inventory (MODE NTFC): `poll.mode = "notify"`
        // works, with NTFC_TIME limiting the wait.
        self.poll
            .validate(Some(crate::driver::MAX_NOTIFY_WAIT))
            .map_err(|e| SettingsError::new(format!("poll.{}", e.key), e.message))?;
        if self.driver.reply_timeout_ms == 0 {
            return Err(SettingsError::new(
                "driver.reply_timeout_ms",
                "0 would time out every request; 1000 is the default",
            ));
        }
        let simulated = matches!(self.transport, TransportConfig::Simulator {});
        for (key, used) in [
            ("simulator.tags", !self.simulator.tags.is_empty()),
            ("simulator.inputs", !self.simulator.inputs.is_empty()),
        ] {
            if used && !simulated {
                return Err(SettingsError::new(
                    key,
                    "only used with transport.kind = \"simulator\"",
                ));
            }
        }
        if self.simulator.inputs.iter().any(|step| step.levels > 0x07) {
            return Err(SettingsError::new(
                "simulator.inputs",
                "levels has bits 0-2 for inputs 1-3 (0 to 7)",
            ));
        }
        self.simulator.script().map(drop)
    }

    /// The driver's timers.
    pub fn timing(&self) -> Timing {
        let gap = match (self.driver.inter_char_timeout_ms, &self.transport) {
            (Some(0), _) => None,
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, TransportConfig::Serial(_)) => Some(crate::codec::INTER_CHARACTER_GAP),
            (None, _) => None,
        };
        Timing {
            reply_timeout: Duration::from_millis(self.driver.reply_timeout_ms),
            psst: Duration::from_millis(self.driver.psst_ms),
            inter_char_gap: gap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_gate_config_parses_with_feig_defaults() {
        let settings: FeigSettings = toml::from_str(
            r#"
            [transport]
            kind = "serial"
            path = "/dev/serial/by-id/usb-FTDI-if00-port0"
            [poll]
            inventory_afi = "07"
            "#,
        )
        .unwrap();
        assert_eq!(settings.driver, DriverSettings::default());
        assert_eq!(settings.driver.address, 0xFF);
        assert_eq!(settings.poll.inventory_afi, Some(0x07));
        assert_eq!(
            settings.poll,
            ReadLoopConfig {
                inventory_afi: Some(0x07),
                ..ReadLoopConfig::default()
            }
        );
        assert_eq!(
            settings.timing().inter_char_gap,
            Some(Duration::from_millis(12))
        );
        assert_eq!(settings.timing().psst, Duration::from_millis(5));
        assert_eq!(settings.timing().reply_timeout, Duration::from_secs(1));
        settings.validate().unwrap();
    }

    #[test]
    fn every_table_is_read_from_its_own_name() {
        let settings: FeigSettings = toml::from_str(
            r#"
            [transport]
            kind = "tcp"
            addr = "192.0.2.10:10001"
            [poll]
            poll_interval_ms = 100
            depart_after_polls = 2
            memory_blocks = 4
            read_afi = false
            read_eas = true
            health_interval_ms = 5000
            [driver]
            address = "01"
            poll_inputs = true
            reply_timeout_ms = 300
            psst_ms = 2
            inter_char_timeout_ms = 20
            "#,
        )
        .unwrap();
        assert_eq!(
            settings.poll,
            ReadLoopConfig {
                poll_interval_ms: 100,
                depart_after_polls: 2,
                memory_blocks: 4,
                inventory_afi: None,
                read_afi: false,
                read_eas: true,
                health_interval_ms: 5000,
                ..ReadLoopConfig::default()
            }
        );
        assert_eq!(
            settings.driver,
            DriverSettings {
                address: 0x01,
                poll_inputs: true,
                reply_timeout_ms: 300,
                psst_ms: 2,
                inter_char_timeout_ms: Some(20),
            }
        );
        assert_eq!(
            settings.timing(),
            Timing {
                reply_timeout: Duration::from_millis(300),
                psst: Duration::from_millis(2),
                inter_char_gap: Some(Duration::from_millis(20)),
            }
        );
    }

    #[test]
    fn simulator_tags_have_the_3m_simulators_keys_and_defaults() {
        let settings: FeigSettings = toml::from_str(
            r#"
            transport = { kind = "simulator" }
            [simulator]
            round_ms = 6000
            [[simulator.tags]]
            uid = "E004010031269117"
            afi = "C2"
            eas = true
            memory = "11010000"
            at_ms = 1000
            stay_ms = 3000
            [[simulator.tags]]
            uid = "E004010031269118"
            "#,
        )
        .unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.simulator.round_ms, 6000);
        let script = settings.simulator.script().unwrap();
        let scripted = &script[0];
        assert_eq!(scripted.tag.afi, 0xC2);
        assert!(scripted.tag.eas);
        assert!(
            !scripted.tag.in_field,
            "a tag entering later starts outside"
        );
        assert_eq!(scripted.tag.memory.len(), 28 * 4, "padded to 28 blocks");
        assert_eq!(scripted.tag.memory[..4], [0x11, 0x01, 0, 0]);
        assert_eq!(
            (scripted.at, scripted.stay),
            (Duration::from_secs(1), Some(Duration::from_secs(3)))
        );
        // Only a UID: AFI 00, no EAS, 28 empty blocks, in the field from 0 ms for good.
        let plain = &script[1];
        assert_eq!(
            (plain.tag.afi, plain.tag.dsfid, plain.tag.eas),
            (0, 0, false)
        );
        assert_eq!(plain.tag.memory, vec![0; 28 * 4]);
        assert!(plain.tag.in_field);
        assert_eq!((plain.at, plain.stay), (Duration::ZERO, None));
        assert_eq!(settings.timing().inter_char_gap, None);
        assert_eq!(SimulatorSettings::default().round_ms, 0, "0 = play once");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let cases = [
            (
                "transport = { kind = \"simulator\" }\npoll_interval_ms = 3",
                "poll_interval_ms",
            ),
            (
                "transport = { kind = \"simulator\" }\n[poll]\npoll_ms = 3",
                "poll_ms",
            ),
            (
                "transport = { kind = \"simulator\" }\n[driver]\naddress = \"1FF\"",
                "1FF",
            ),
            (
                "transport = { kind = \"simulator\" }\n[driver]\nmemory_blocks = 2",
                "memory_blocks",
            ),
            (
                "transport = { kind = \"simulator\" }\nround_ms = 100",
                "round_ms",
            ),
            (
                "transport = { kind = \"simulator\" }\n[simulator]\nround = 100",
                "round",
            ),
            (
                "transport = { kind = \"simulator\" }\n[[simulator.tags]]\nuid = \"E0\"\ncolour = 1",
                "colour",
            ),
            (
                "transport = { kind = \"simulator\" }\n[[simulator.tags]]\nuid = \"E0\"\nmemory = \"0\"",
                "not hex bytes",
            ),
        ];
        for (text, needle) in cases {
            let err = toml::from_str::<FeigSettings>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn checked_settings_name_the_key_that_cannot_work() {
        let long_memory = format!("\"{}\"", "00".repeat(256 * 4));
        let cases = [
            (
                "kind = \"simulator\"\n[driver]\npsst_ms = 9".to_owned(),
                "driver.psst_ms: 9 is above the 5 ms",
            ),
            (
                "kind = \"simulator\"\n[driver]\nreply_timeout_ms = 0".to_owned(),
                "driver.reply_timeout_ms: 0",
            ),
            (
                "kind = \"simulator\"\n[poll]\nmode = \"notify\"\nnotify_wait_ms = 30000".to_owned(),
                "poll.notify_wait_ms: 30000 is not 100 to 25500 ms",
            ),
            (
                "kind = \"simulator\"\n[[simulator.tags]]\nuid = \"E004\"".to_owned(),
                "simulator.tags[0].uid: E004 is not 8 bytes",
            ),
            (
                format!(
                    "kind = \"simulator\"\n[[simulator.tags]]\nuid = \"E004010031269117\"\nmemory = {long_memory}"
                ),
                "simulator.tags[0].memory: 1024 bytes are more than 255 blocks",
            ),
            (
                "kind = \"tcp\"\naddr = \"192.0.2.10:10001\"\n[[simulator.tags]]\nuid = \"E004010031269117\"".to_owned(),
                "simulator.tags: only used with transport.kind = \"simulator\"",
            ),
        ];
        for (text, needle) in cases {
            let text = format!("[transport]\n{text}");
            let settings: FeigSettings = toml::from_str(&text).unwrap();
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn settings_written_back_out_read_in_the_same() {
        let mut settings = FeigSettings::new(TransportConfig::Simulator {});
        settings.poll.inventory_afi = Some(0x07);
        settings.driver.inter_char_timeout_ms = Some(0);
        settings.simulator.tags.push(SimTagSettings {
            uid: Uid::from_hex("E004010031269117").unwrap(),
            afi: 0x07,
            dsfid: 0,
            eas: true,
            memory: vec![0x11, 0x01],
            at_ms: 1000,
            stay_ms: Some(800),
        });
        let text = toml::to_string(&settings).unwrap();
        assert_eq!(toml::from_str::<FeigSettings>(&text).unwrap(), settings);
        assert_eq!(settings.timing().inter_char_gap, None, "0 turns it off");
    }
}
