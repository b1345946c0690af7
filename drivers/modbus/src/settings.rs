//! The settings of a `driver = "modbus"` device (`[devices.settings]` in the config).
//!
//! Four tables: `transport` (shared with every driver), `map` (the sorter's register map,
//! [`crate::map`]), `driver` (unit id, framing, timers) and `simulator` (the simulated
//! sorter used with `transport.kind = "simulator"`).
//!
//! ```toml
//! [[devices]]
//! id = "sorter"
//! driver = "modbus"
//! [devices.settings.transport]
//! kind = "serial"                 # RTU; or "tcp" (Modbus TCP, port 502), or "simulator"
//! path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1B2C3-if00-port0"
//! # 19200 baud, 8E1 by default (Modbus over Serial Line)
//! [devices.settings.map]
//! bins = 6
//! bin_full = [0, 1, 2, 3, 4, 5]   # discrete input per bin, bin 1 first
//! jam = 8                         # discrete input
//! divert = { kind = "register", register = 100 }   # or { kind = "coils", coils = [...] }
//! [devices.settings.driver]
//! unit = 1
//! ```

use std::time::Duration;

use rfidgw_driver::transport::{LineDefaults, Parity, TransportConfig};
use serde::{Deserialize, Serialize};

use crate::link::{Framing, LinkTiming, rtu_frame_gap};
use crate::map::{MapSettings, RegisterMap};

/// Modbus RTU's serial defaults: 19200 baud, 8 data bits, even parity, 1 stop bit (Modbus
/// over Serial Line V1.02 §2.5.1: 19200 and even parity are the required defaults).
pub const LINE_DEFAULTS: LineDefaults = LineDefaults {
    baud: 19_200,
    parity: Parity::Even,
    data_bits: 8,
    stop_bits: 1,
};

/// Settings of one Modbus sorter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusSettings {
    /// How the PLC is attached.
    pub transport: TransportConfig,
    /// The sorter's register map.
    pub map: MapSettings,
    /// Unit id, framing and timers.
    #[serde(default)]
    pub driver: DriverSettings,
    /// The simulated sorter used with `transport.kind = "simulator"`.
    #[serde(default)]
    pub simulator: SimulatorSettings,
}

/// The driver's own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriverSettings {
    /// The PLC's unit id (RTU slave address).
    pub unit: u8,
    /// `"rtu"` or `"tcp"`; by default RTU on a serial line, Modbus TCP on TCP and the
    /// simulator. `"rtu"` on a TCP transport talks through a transparent serial server.
    pub framing: Option<Framing>,
    /// How long to wait for each reply, in milliseconds.
    pub reply_timeout_ms: u64,
    /// Time between two reads of the bin-full and jam inputs, in milliseconds.
    pub poll_interval_ms: u64,
    /// Time between two health reports, in milliseconds.
    pub health_interval_ms: u64,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            unit: 1,
            framing: None,
            reply_timeout_ms: 1000,
            poll_interval_ms: 200,
            health_interval_ms: 10_000,
        }
    }
}

/// The simulated sorter: bins that fill up, a jam now and then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorSettings {
    /// Items a bin takes before its bin-full input goes on.
    pub capacity: u32,
    /// A full bin is emptied (by staff) this long after it filled, in milliseconds; 0 =
    /// never (tests and the API empty it).
    pub empty_after_ms: u64,
    /// Every this many diverts the conveyor jams; 0 = never.
    pub jam_every: u32,
    /// A jam clears itself after this long, in milliseconds; 0 = it stays until cleared.
    pub jam_clear_ms: u64,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            capacity: 20,
            empty_after_ms: 0,
            jam_every: 0,
            jam_clear_ms: 5000,
        }
    }
}

/// Why settings cannot work, naming the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The settings key, e.g. `map.divert.coils`.
    pub key: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl SettingsError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The run loop's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopTiming {
    /// Time between two input reads.
    pub poll_interval: Duration,
    /// Time between two health reports.
    pub health_interval: Duration,
}

impl ModbusSettings {
    /// Checks what serde cannot and returns the checked register map.
    pub fn validate(&self) -> Result<RegisterMap, SettingsError> {
        let map = RegisterMap::new(&self.map)?;
        let driver = &self.driver;
        let framing = self.framing();
        if matches!(self.transport, TransportConfig::Usb(_)) {
            return Err(SettingsError::new(
                "transport.kind",
                "a Modbus sorter is on \"serial\" (RTU) or \"tcp\", or the \"simulator\"",
            ));
        }
        if driver.framing == Some(Framing::Tcp)
            && matches!(self.transport, TransportConfig::Serial(_))
        {
            return Err(SettingsError::new(
                "driver.framing",
                "\"tcp\" (MBAP) does not run on a serial line; leave it out for RTU",
            ));
        }
        match (driver.unit, framing) {
            (0, _) => {
                return Err(SettingsError::new(
                    "driver.unit",
                    "0 is the broadcast address, which no PLC answers; give the PLC's unit id (1 to 247)",
                ));
            }
            (unit @ 248.., Framing::Rtu) => {
                return Err(SettingsError::new(
                    "driver.unit",
                    format!("{unit} is reserved on a serial line; RTU units are 1 to 247"),
                ));
            }
            _ => {}
        }
        for (key, value, what) in [
            (
                "driver.reply_timeout_ms",
                driver.reply_timeout_ms,
                "would time out every request; 1000 is the default",
            ),
            (
                "driver.poll_interval_ms",
                driver.poll_interval_ms,
                "would read the inputs without a pause; 200 is the default",
            ),
            (
                "driver.health_interval_ms",
                driver.health_interval_ms,
                "would report health without a pause; 10000 is the default",
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::new(key, format!("0 {what}")));
            }
        }
        let simulated = matches!(self.transport, TransportConfig::Simulator {});
        if !simulated && self.simulator != SimulatorSettings::default() {
            return Err(SettingsError::new(
                "simulator",
                "only used with transport.kind = \"simulator\"",
            ));
        }
        if self.simulator.capacity == 0 {
            return Err(SettingsError::new(
                "simulator.capacity",
                "0 would make every bin full from the start; 1 or more",
            ));
        }
        Ok(map)
    }

    /// The framing in use: as configured, else RTU on a serial line and TCP otherwise.
    pub fn framing(&self) -> Framing {
        match (self.driver.framing, &self.transport) {
            (Some(framing), _) => framing,
            (None, TransportConfig::Serial(_)) => Framing::Rtu,
            (None, _) => Framing::Tcp,
        }
    }

    /// The link's timers; the RTU silent interval follows the serial line's baud rate.
    pub fn link_timing(&self) -> LinkTiming {
        let frame_gap = match (&self.transport, self.framing()) {
            (TransportConfig::Serial(serial), Framing::Rtu) => {
                Some(rtu_frame_gap(serial.baud.unwrap_or(LINE_DEFAULTS.baud)))
            }
            _ => None,
        };
        LinkTiming {
            reply_timeout: Duration::from_millis(self.driver.reply_timeout_ms),
            frame_gap,
        }
    }

    /// The run loop's timers.
    pub fn loop_timing(&self) -> LoopTiming {
        LoopTiming {
            poll_interval: Duration::from_millis(self.driver.poll_interval_ms),
            health_interval: Duration::from_millis(self.driver.health_interval_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::DivertSettings;

    const SERIAL: &str = r#"
        [transport]
        kind = "serial"
        path = "/dev/serial/by-id/usb-FTDI-if00-port0"
        [map]
        bins = 3
        bin_full = [0, 1, 2]
        jam = 3
        divert = { kind = "register", register = 100 }
    "#;

    fn parse(text: &str) -> ModbusSettings {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_serial_sorter_parses_with_rtu_defaults() {
        let settings = parse(SERIAL);
        assert_eq!(settings.driver, DriverSettings::default());
        assert_eq!(settings.framing(), Framing::Rtu);
        assert_eq!(
            settings.link_timing(),
            LinkTiming {
                reply_timeout: Duration::from_secs(1),
                frame_gap: Some(Duration::from_micros(2006)),
            }
        );
        assert_eq!(
            settings.loop_timing(),
            LoopTiming {
                poll_interval: Duration::from_millis(200),
                health_interval: Duration::from_secs(10),
            }
        );
        let map = settings.validate().unwrap();
        assert_eq!(map.bins(), 3);
        assert_eq!(
            settings.map.divert,
            DivertSettings::Register {
                register: 100,
                clear_after_ms: 0
            }
        );
    }

    #[test]
    fn the_framing_follows_the_transport_unless_given() {
        let with = |transport: &str, framing: &str| {
            parse(&format!(
                "transport = {transport}\n[map]\nbins = 1\ndivert = {{ kind = \"register\", register = 1 }}\n[driver]\n{framing}"
            ))
        };
        let tcp = "{ kind = \"tcp\", addr = \"192.0.2.20:502\" }";
        let serial = "{ kind = \"serial\", path = \"/dev/ttyUSB0\", baud = 9600 }";
        let sim = "{ kind = \"simulator\" }";
        for (transport, framing, expected, gap) in [
            (tcp, "", Framing::Tcp, None),
            (tcp, "framing = \"rtu\"", Framing::Rtu, None),
            (sim, "", Framing::Tcp, None),
            (sim, "framing = \"rtu\"", Framing::Rtu, None),
            (serial, "", Framing::Rtu, Some(Duration::from_micros(4011))),
            (
                serial,
                "framing = \"rtu\"",
                Framing::Rtu,
                Some(Duration::from_micros(4011)),
            ),
        ] {
            let settings = with(transport, framing);
            settings.validate().unwrap();
            assert_eq!(settings.framing(), expected, "{transport} {framing}");
            assert_eq!(
                settings.link_timing().frame_gap,
                gap,
                "{transport} {framing}"
            );
        }
    }

    #[test]
    fn settings_that_cannot_work_name_the_key() {
        let cases = [
            (
                "[driver]\nunit = 0",
                "driver.unit: 0 is the broadcast address",
            ),
            (
                "[driver]\nunit = 248",
                "driver.unit: 248 is reserved on a serial line",
            ),
            (
                "[driver]\nframing = \"tcp\"",
                "driver.framing: \"tcp\" (MBAP) does not run",
            ),
            (
                "[driver]\nreply_timeout_ms = 0",
                "driver.reply_timeout_ms: 0 would",
            ),
            (
                "[driver]\npoll_interval_ms = 0",
                "driver.poll_interval_ms: 0 would",
            ),
            (
                "[driver]\nhealth_interval_ms = 0",
                "driver.health_interval_ms: 0 would",
            ),
            (
                "[simulator]\ncapacity = 5",
                "simulator: only used with transport.kind",
            ),
        ];
        for (extra, needle) in cases {
            let text = format!("{SERIAL}\n{extra}");
            let err = parse(&text).validate().unwrap_err().to_string();
            assert!(err.starts_with(needle), "{extra}: {err}");
        }
        let sim = "transport = { kind = \"simulator\" }\n[map]\nbins = 1\ndivert = { kind = \"register\", register = 1 }\n";
        let err = parse(&format!("{sim}[simulator]\ncapacity = 0"))
            .validate()
            .unwrap_err();
        assert_eq!(err.key, "simulator.capacity");
        parse(&format!(
            "{sim}[driver]\nunit = 255\n[simulator]\ncapacity = 2"
        ))
        .validate()
        .unwrap();
        let usb = "transport = { kind = \"usb\", vendor_id = 1, product_id = 2, endpoint_in = \"81\", endpoint_out = \"02\" }\n[map]\nbins = 1\ndivert = { kind = \"register\", register = 1 }\n";
        assert_eq!(parse(usb).validate().unwrap_err().key, "transport.kind");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, needle) in [
            (format!("{SERIAL}\n[driver]\naddress = 1"), "address"),
            (format!("{SERIAL}\n[simulator]\nbins = 1"), "bins"),
            (
                format!("{SERIAL}\npoll_interval_ms = 1"),
                "poll_interval_ms",
            ),
            (format!("{SERIAL}\n[driver]\nframing = \"ascii\""), "ascii"),
            (format!("{SERIAL}\n[driver]\nunit = 256"), "256"),
        ] {
            let err = toml::from_str::<ModbusSettings>(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let err = toml::from_str::<ModbusSettings>("[transport]\nkind = \"simulator\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("map"), "{err}");
    }

    #[test]
    fn settings_written_back_out_read_in_the_same() {
        let mut settings = parse(SERIAL);
        settings.driver.framing = Some(Framing::Rtu);
        settings.map.divert = DivertSettings::Coils {
            coils: vec![16, 17, 18],
            pulse_ms: 250,
        };
        let text = toml::to_string(&settings).unwrap();
        assert_eq!(toml::from_str::<ModbusSettings>(&text).unwrap(), settings);
    }
}
