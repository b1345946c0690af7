//! The settings of a `driver = "feig"` device (`[devices.settings]` in the config).
//!
//! ```toml
//! [[devices]]
//! id = "gate-1"
//! driver = "feig"
//! [devices.settings]
//! address = "FF"             # COM-ADR; FF always reaches the reader
//! poll_interval_ms = 100
//! memory_blocks = 8
//! inventory_afi = "07"       # gate: only secured items answer (optional)
//! [devices.settings.transport]
//! kind = "serial"
//! path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A9XYZ-if00-port0"
//! ```

use std::time::Duration;

use rfidgw_driver::Uid;
use rfidgw_driver::read_loop::ReadLoopConfig;
use rfidgw_driver::transport::{LineDefaults, Parity, TransportConfig};
use serde::{Deserialize, Serialize};

use crate::driver::Timing;
use crate::sim::VirtualTag;

/// FEIG's serial defaults: 38400 baud, 8 data bits, even parity, 1 stop bit (PROTOCOLS.md §4.2).
pub const LINE_DEFAULTS: LineDefaults = LineDefaults {
    baud: 38_400,
    parity: Parity::Even,
    data_bits: 8,
    stop_bits: 1,
};

/// Settings of one FEIG reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeigSettings {
    /// How the reader is attached.
    pub transport: TransportConfig,
    /// COM-ADR of the reader (`FF` always reaches it).
    #[serde(default = "default_address", with = "rfidgw_driver::hex_serde::byte")]
    pub address: u8,
    /// Time between inventories, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// A tag departs after missing this many inventories in a row.
    #[serde(default = "default_depart_after_polls")]
    pub depart_after_polls: u32,
    /// 4-byte blocks of user memory to read once per presence (0 = none).
    #[serde(default = "default_memory_blocks")]
    pub memory_blocks: u8,
    /// Inventory only tags with this AFI (PROTOCOLS.md §3.2).
    #[serde(default, with = "rfidgw_driver::hex_serde::opt_byte")]
    pub inventory_afi: Option<u8>,
    /// Read each tag's AFI once per presence.
    #[serde(default = "default_true")]
    pub read_afi: bool,
    /// Check each tag's NXP EAS bit once per presence (needs `B1` support on the reader).
    #[serde(default)]
    pub read_eas: bool,
    /// Read the digital inputs (`[74]`, gate light barriers) after each inventory and
    /// report changes.
    #[serde(default)]
    pub poll_inputs: bool,
    /// Time between health reports, in milliseconds.
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// How long to wait for a reply, in milliseconds.
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    /// Silence before each request after a reply (PSST, 0–5 ms).
    #[serde(default = "default_psst_ms")]
    pub psst_ms: u64,
    /// Drop a partial frame after this gap between characters; default 12 ms on serial
    /// lines, off on TCP and the simulator (0 turns it off).
    #[serde(default)]
    pub inter_char_timeout_ms: Option<u64>,
    /// For `transport.kind = "simulator"`: the tags in the virtual reader's field.
    #[serde(default)]
    pub tags: Vec<SimTagSettings>,
    /// For `transport.kind = "simulator"`: the script repeats every `round_ms`.
    #[serde(default = "default_round_ms")]
    pub round_ms: u64,
}

/// One tag of the simulated reader, optionally scripted to enter and leave the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTagSettings {
    /// UID, MSB first (`E004…`).
    pub uid: Uid,
    /// AFI (default `07`).
    #[serde(default = "default_afi", with = "rfidgw_driver::hex_serde::byte")]
    pub afi: u8,
    /// DSFID.
    #[serde(default, with = "rfidgw_driver::hex_serde::byte")]
    pub dsfid: u8,
    /// NXP EAS bit.
    #[serde(default)]
    pub eas: bool,
    /// User memory in tag order, hex (default: 28 empty blocks).
    #[serde(default, with = "rfidgw_driver::hex_serde::opt_bytes")]
    pub memory: Option<Vec<u8>>,
    /// Enters the field this long after the start of each round (absent: always there).
    #[serde(default)]
    pub at_ms: Option<u64>,
    /// Stays this long in the field.
    #[serde(default)]
    pub stay_ms: Option<u64>,
}

impl SimTagSettings {
    /// The virtual tag these settings describe (in the field unless scripted).
    pub fn virtual_tag(&self) -> VirtualTag {
        let mut tag = VirtualTag::new(self.uid.clone());
        tag.afi = self.afi;
        tag.dsfid = self.dsfid;
        tag.eas = self.eas;
        if let Some(memory) = &self.memory {
            let mut memory = memory.clone();
            memory.resize(memory.len().div_ceil(4) * 4, 0);
            tag.memory = memory;
        }
        tag.in_field = self.at_ms.is_none();
        tag
    }
}

fn default_afi() -> u8 {
    0x07
}

fn default_address() -> u8 {
    crate::frame::BROADCAST_ADDRESS
}
fn default_poll_interval_ms() -> u64 {
    200
}
fn default_depart_after_polls() -> u32 {
    3
}
fn default_memory_blocks() -> u8 {
    8
}
fn default_true() -> bool {
    true
}
fn default_health_interval_ms() -> u64 {
    10_000
}
fn default_reply_timeout_ms() -> u64 {
    1000
}
fn default_psst_ms() -> u64 {
    5
}
fn default_round_ms() -> u64 {
    10_000
}

impl FeigSettings {
    /// Settings for this transport with every default.
    pub fn new(transport: TransportConfig) -> Self {
        Self {
            transport,
            address: default_address(),
            poll_interval_ms: default_poll_interval_ms(),
            depart_after_polls: default_depart_after_polls(),
            memory_blocks: default_memory_blocks(),
            inventory_afi: None,
            read_afi: true,
            read_eas: false,
            poll_inputs: false,
            health_interval_ms: default_health_interval_ms(),
            reply_timeout_ms: default_reply_timeout_ms(),
            psst_ms: default_psst_ms(),
            inter_char_timeout_ms: None,
            tags: Vec::new(),
            round_ms: default_round_ms(),
        }
    }

    /// Checks what serde cannot: the values that only make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.psst_ms > 5 {
            return Err(format!(
                "psst_ms: {} is above the 5 ms FEIG allows",
                self.psst_ms
            ));
        }
        if self.reply_timeout_ms == 0 {
            return Err("reply_timeout_ms: 0 would time out every request".into());
        }
        if !self.tags.is_empty() && !matches!(self.transport, TransportConfig::Simulator {}) {
            return Err("tags: only used with transport.kind = \"simulator\"".into());
        }
        for (n, tag) in self.tags.iter().enumerate() {
            if tag.uid.as_bytes().len() != 8 {
                return Err(format!(
                    "tags[{n}].uid: {} is not 8 bytes (ISO 15693)",
                    tag.uid
                ));
            }
            if tag.stay_ms.is_some() && tag.at_ms.is_none() {
                return Err(format!("tags[{n}]: stay_ms needs at_ms"));
            }
        }
        Ok(())
    }

    /// The shared read loop's part of these settings.
    pub fn read_loop(&self) -> ReadLoopConfig {
        ReadLoopConfig {
            poll_interval_ms: self.poll_interval_ms,
            depart_after_polls: self.depart_after_polls,
            memory_blocks: self.memory_blocks,
            inventory_afi: self.inventory_afi,
            read_afi: self.read_afi,
            read_eas: self.read_eas,
            health_interval_ms: self.health_interval_ms,
        }
    }

    /// The driver's timers.
    pub fn timing(&self) -> Timing {
        let gap = match (self.inter_char_timeout_ms, &self.transport) {
            (Some(0), _) => None,
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, TransportConfig::Serial(_)) => Some(crate::codec::INTER_CHARACTER_GAP),
            (None, _) => None,
        };
        Timing {
            reply_timeout: Duration::from_millis(self.reply_timeout_ms),
            psst: Duration::from_millis(self.psst_ms),
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
            inventory_afi = "07"
            [transport]
            kind = "serial"
            path = "/dev/serial/by-id/usb-FTDI-if00-port0"
            "#,
        )
        .unwrap();
        assert_eq!(settings.address, 0xFF);
        assert_eq!(settings.inventory_afi, Some(0x07));
        assert_eq!(
            settings.timing().inter_char_gap,
            Some(Duration::from_millis(12))
        );
        assert_eq!(settings.timing().psst, Duration::from_millis(5));
        settings.validate().unwrap();
    }

    #[test]
    fn simulator_tags_parse_with_hex_memory_and_a_script() {
        let settings: FeigSettings = toml::from_str(
            r#"
            transport = { kind = "simulator" }
            [[tags]]
            uid = "E004010031269117"
            afi = "C2"
            eas = true
            memory = "11010000"
            at_ms = 1000
            stay_ms = 3000
            "#,
        )
        .unwrap();
        settings.validate().unwrap();
        let tag = settings.tags[0].virtual_tag();
        assert_eq!(tag.afi, 0xC2);
        assert!(tag.eas);
        assert!(!tag.in_field, "a scripted tag starts outside the field");
        assert_eq!(tag.memory, [0x11, 0x01, 0, 0]);
        let tag = &settings.tags[0];
        assert_eq!((tag.at_ms, tag.stay_ms), (Some(1000), Some(3000)));
        assert_eq!(settings.timing().inter_char_gap, None);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (
                "transport = { kind = \"simulator\" }\npoll_ms = 3",
                "poll_ms",
            ),
            (
                "transport = { kind = \"simulator\" }\naddress = \"1FF\"",
                "1FF",
            ),
            (
                "transport = { kind = \"simulator\" }\n[[tags]]\nuid = \"E0\"\ncolour = 1",
                "colour",
            ),
        ];
        for (text, needle) in cases {
            let err = toml::from_str::<FeigSettings>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let mut settings = FeigSettings::new(TransportConfig::Simulator {});
        settings.psst_ms = 9;
        assert!(settings.validate().unwrap_err().contains("psst_ms"));
        let short_uid: FeigSettings =
            toml::from_str("transport = { kind = \"simulator\" }\n[[tags]]\nuid = \"E004\"")
                .unwrap();
        assert!(short_uid.validate().unwrap_err().contains("tags[0].uid"));
    }
}
