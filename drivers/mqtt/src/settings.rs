//! The settings of a `driver = "mqtt"` device (`[devices.settings]` in the config).
//!
//! ```toml
//! [[devices]]
//! id = "gate-north"
//! driver = "mqtt"
//! [devices.settings]
//! role = "gate"                   # "gate" (tags, inputs, outputs) or "sorter" (divert, bin-full)
//! topic_prefix = "library/north-gate"   # default rfidgw/devices/<device id>
//! qos = 1                         # 0, 1 or 2 for subscriptions and commands (default 1)
//! reply_timeout_ms = 2000         # longest wait for a command's reply (default 2000)
//! health_interval_ms = 10000      # time between health reports (default 10000)
//! [devices.settings.broker]
//! host = "127.0.0.1"
//! port = 1883                     # default 1883, or 8883 with [broker.tls]
//! username = "rfidgw"
//! password = "secret"             # never logged
//! keepalive_s = 30
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rfidgw_driver::DeviceCommand;
use rfidgw_driver::sim_script::{SimInputStep, SimTagSettings};
use rumqttc::QoS;
use serde::{Deserialize, Deserializer};

use crate::protocol::Topics;

/// What the device is: which commands it takes (others are answered "unsupported" without
/// reaching it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A gate controller or reader: publishes tags and inputs; takes outputs (alarm lamp,
    /// beeper, relay) and tag reads and writes (AFI, EAS, blocks).
    Gate,
    /// A sorter: takes divert commands; reports full bins and jams.
    Sorter,
}

impl Role {
    /// `Ok` when a device of this role takes `command`, else why not.
    pub fn accepts(self, command: &DeviceCommand) -> Result<(), String> {
        match (self, command) {
            (Self::Sorter, DeviceCommand::Divert { .. })
            | (
                Self::Gate,
                DeviceCommand::Output(_)
                | DeviceCommand::ReadAfi { .. }
                | DeviceCommand::WriteAfi { .. }
                | DeviceCommand::ReadEas { .. }
                | DeviceCommand::WriteEas { .. }
                | DeviceCommand::ReadBlocks { .. }
                | DeviceCommand::WriteBlocks { .. },
            ) => Ok(()),
            (Self::Sorter, other) => Err(format!("{}: an MQTT sorter only diverts", other.name())),
            (Self::Gate, other) => Err(format!(
                "{}: an MQTT gate takes outputs and tag reads and writes; a sorter diverts",
                other.name()
            )),
        }
    }
}

/// A password that never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Password {
    /// The password itself, for the broker's CONNECT only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl From<&str> for Password {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

/// Settings of one MQTT device.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    /// What the device is.
    pub role: Role,
    /// The prefix of the device's topics; default `rfidgw/devices/<device id>`.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// QoS for the subscriptions and the commands (0, 1 or 2; default 1).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// The longest wait for a command's reply, in milliseconds (a caller's shorter deadline
    /// wins). Default 2000.
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    /// Time between two health reports, in milliseconds. Default 10000.
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// The broker.
    #[serde(default)]
    pub broker: BrokerSettings,
    /// A simulated device the driver starts on the same broker and topics for each run
    /// (the demo); absent in production.
    #[serde(default)]
    pub simulator: Option<SimulatorSettings>,
}

fn default_qos() -> u8 {
    1
}
fn default_reply_timeout_ms() -> u64 {
    2000
}
fn default_health_interval_ms() -> u64 {
    10_000
}

/// Where the broker is and how to log in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Host name or address. Default `127.0.0.1`.
    pub host: String,
    /// TCP port; default 1883, or 8883 with TLS.
    pub port: Option<u16>,
    /// The MQTT client id; default `rfidgw-<device id>-<random>` (a broker drops the older
    /// of two connections with one id, so each must be unique).
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password (with `username`); never logged.
    pub password: Option<Password>,
    /// Keep-alive interval in seconds: a dead connection is noticed after 1.5 times this.
    /// Default 30.
    pub keepalive_s: u64,
    /// How long to wait for the broker's CONNACK, in milliseconds. Default 5000.
    pub connect_timeout_ms: u64,
    /// TLS to the broker (rustls); absent = plain TCP.
    pub tls: Option<TlsSettings>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: None,
            client_id: None,
            username: None,
            password: None,
            keepalive_s: 30,
            connect_timeout_ms: 5000,
            tls: None,
        }
    }
}

/// TLS to the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file with the CA certificate(s) the broker's certificate is checked against;
    /// default: the system's CA roots.
    pub ca_file: Option<PathBuf>,
}

/// The simulated device (`[devices.settings.simulator]`): a gate that plays a script of
/// tags and inputs, or a sorter whose bins fill up.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorSettings {
    /// Gate: length of the script's round in milliseconds (0 = play once).
    pub round_ms: u64,
    /// Gate: the scripted tags (the same keys as the FEIG and 3M simulators).
    pub tags: Vec<SimTagSettings>,
    /// Gate: input levels over the round.
    pub inputs: Vec<SimInputStep>,
    /// Sorter: its bins, numbered from 1.
    pub bins: u16,
    /// Sorter: items a bin takes before it reports full.
    pub capacity: u32,
    /// Sorter: a full bin is emptied this long after it filled, in milliseconds; 0 = never.
    pub empty_after_ms: u64,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            round_ms: 0,
            tags: Vec::new(),
            inputs: Vec::new(),
            bins: 6,
            capacity: 20,
            empty_after_ms: 0,
        }
    }
}

/// Why settings cannot work, naming the key below `devices.<id>.settings`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The key, e.g. `broker.port`.
    pub key: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl SettingsError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// The settings, checked, with the defaults that depend on the device id filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The device id.
    pub device: String,
    /// The settings as given.
    pub settings: MqttSettings,
    /// The device's topics.
    pub topics: Topics,
    /// The QoS.
    pub qos: QoS,
    /// The port in use.
    pub port: u16,
    /// The client id in use.
    pub client_id: String,
}

impl MqttSettings {
    /// Checks what serde cannot, for the device `device`.
    pub fn check(&self, device: &str) -> Result<Checked, SettingsError> {
        let prefix = self
            .topic_prefix
            .clone()
            .unwrap_or_else(|| Topics::default_prefix(device));
        let topics = Topics::new(&prefix).map_err(|e| {
            let origin = if self.topic_prefix.is_some() {
                ""
            } else {
                " (the default, from the device id; give one)"
            };
            SettingsError::new(
                "topic_prefix",
                format!("`{}`{origin} {e}", crate::protocol::shorten(&prefix, 64)),
            )
        })?;
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => {
                return Err(SettingsError::new(
                    "qos",
                    format!("{other} is not an MQTT QoS; 0, 1 or 2 (default 1)"),
                ));
            }
        };
        self.check_timers()?;
        let port = self.broker.check()?;
        let client_id = match &self.broker.client_id {
            Some(id) if id.is_empty() || id.len() > 256 => {
                return Err(SettingsError::new(
                    "broker.client_id",
                    "1 to 256 characters; leave it out for rfidgw-<device id>-<random>",
                ));
            }
            Some(id) => id.clone(),
            None => format!("rfidgw-{device}-{:08x}", rand::random::<u32>()),
        };
        if let Some(simulator) = &self.simulator {
            simulator.check(self.role)?;
        }
        Ok(Checked {
            device: device.to_owned(),
            settings: self.clone(),
            topics,
            qos,
            port,
            client_id,
        })
    }

    fn check_timers(&self) -> Result<(), SettingsError> {
        for (key, value, what) in [
            (
                "reply_timeout_ms",
                self.reply_timeout_ms,
                "would give every command up at once; 2000 is the default",
            ),
            (
                "health_interval_ms",
                self.health_interval_ms,
                "would report health without a pause; 10000 is the default",
            ),
            (
                "broker.keepalive_s",
                self.broker.keepalive_s,
                "would leave a dead broker connection unnoticed; 30 is the default",
            ),
            (
                "broker.connect_timeout_ms",
                self.broker.connect_timeout_ms,
                "would give up every connection at once; 5000 is the default",
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::new(key, format!("0 {what}")));
            }
        }
        for (key, value, max) in [
            ("reply_timeout_ms", self.reply_timeout_ms, 3_600_000),
            ("health_interval_ms", self.health_interval_ms, 86_400_000),
            (
                "broker.connect_timeout_ms",
                self.broker.connect_timeout_ms,
                600_000,
            ),
        ] {
            if value > max {
                return Err(SettingsError::new(
                    key,
                    format!("{value} is more than the {max} this allows"),
                ));
            }
        }
        if self.broker.keepalive_s > u64::from(u16::MAX) {
            return Err(SettingsError::new(
                "broker.keepalive_s",
                "at most 65535 (MQTT 3.1.1 §3.1.2.10)",
            ));
        }
        Ok(())
    }
}

impl BrokerSettings {
    /// Checks the broker keys; returns the port in use.
    fn check(&self) -> Result<u16, SettingsError> {
        if self.host.trim().is_empty() {
            return Err(SettingsError::new(
                "broker.host",
                "is empty; the broker's host name or address (default 127.0.0.1)",
            ));
        }
        let port = match self.port {
            Some(0) => {
                return Err(SettingsError::new(
                    "broker.port",
                    "0 is no port; 1883 (plain) or 8883 (TLS) are MQTT's",
                ));
            }
            Some(port) => port,
            None if self.tls.is_some() => 8883,
            None => 1883,
        };
        if self.password.is_some() && self.username.is_none() {
            return Err(SettingsError::new(
                "broker.password",
                "needs broker.username too (MQTT 3.1.1 §3.1.2.9)",
            ));
        }
        Ok(port)
    }
}

impl SimulatorSettings {
    fn check(&self, role: Role) -> Result<(), SettingsError> {
        let script = rfidgw_driver::sim_script::SimulatorSettings {
            round_ms: self.round_ms,
            tags: self.tags.clone(),
            inputs: self.inputs.clone(),
        };
        script
            .entries()
            .map_err(|e| SettingsError::new(&e.key, e.message))?;
        match role {
            Role::Sorter if !self.tags.is_empty() || !self.inputs.is_empty() => {
                Err(SettingsError::new(
                    "simulator.tags",
                    "a simulated sorter plays no tags or inputs; those are for role = \"gate\"",
                ))
            }
            Role::Sorter if self.bins == 0 => Err(SettingsError::new(
                "simulator.bins",
                "0 bins leaves nowhere to divert to; 1 or more (default 6)",
            )),
            Role::Sorter if self.capacity == 0 => Err(SettingsError::new(
                "simulator.capacity",
                "0 would make every bin full from the start; 1 or more (default 20)",
            )),
            _ => Ok(()),
        }
    }
}

impl Checked {
    /// The reply timeout.
    pub fn reply_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.reply_timeout_ms)
    }

    /// The health report interval.
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.settings.health_interval_ms)
    }

    /// The keep-alive interval.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.settings.broker.keepalive_s)
    }

    /// How long to wait for the CONNACK.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.broker.connect_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> MqttSettings {
        toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_gate_needs_only_its_role_and_gets_the_defaults() {
        let checked = parse("role = \"gate\"").check("gate-1").unwrap();
        assert_eq!(checked.topics.prefix(), "rfidgw/devices/gate-1");
        assert_eq!(checked.qos, QoS::AtLeastOnce);
        assert_eq!(checked.port, 1883);
        assert!(
            checked.client_id.starts_with("rfidgw-gate-1-"),
            "{}",
            checked.client_id
        );
        assert_eq!(checked.reply_timeout(), Duration::from_secs(2));
        assert_eq!(checked.keepalive(), Duration::from_secs(30));
        assert_eq!(checked.settings.broker.host, "127.0.0.1");
        let tls = parse("role = \"sorter\"\n[broker.tls]\n")
            .check("s")
            .unwrap();
        assert_eq!(tls.port, 8883);
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let settings =
            parse("role = \"gate\"\n[broker]\nusername = \"rfidgw\"\npassword = \"hunter2\"");
        let shown = format!("{settings:?} {:?}", settings.check("g").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Password(***)"), "{shown}");
        assert_eq!(settings.broker.password.unwrap().expose(), "hunter2");
    }

    #[test]
    fn a_bad_setting_names_its_key() {
        let cases = [
            ("role = \"gate\"\nqos = 3", "qos"),
            ("role = \"gate\"\nreply_timeout_ms = 0", "reply_timeout_ms"),
            (
                "role = \"gate\"\nreply_timeout_ms = 9223372036854775807",
                "reply_timeout_ms",
            ),
            (
                "role = \"gate\"\nhealth_interval_ms = 86400001",
                "health_interval_ms",
            ),
            (
                "role = \"gate\"\nhealth_interval_ms = 0",
                "health_interval_ms",
            ),
            ("role = \"gate\"\ntopic_prefix = \"a/+/b\"", "topic_prefix"),
            ("role = \"gate\"\ntopic_prefix = \"a/b/\"", "topic_prefix"),
            ("role = \"gate\"\ntopic_prefix = \"\"", "topic_prefix"),
            ("role = \"gate\"\n[broker]\nport = 0", "broker.port"),
            ("role = \"gate\"\n[broker]\nhost = \" \"", "broker.host"),
            (
                "role = \"gate\"\n[broker]\nkeepalive_s = 0",
                "broker.keepalive_s",
            ),
            (
                "role = \"gate\"\n[broker]\nkeepalive_s = 70000",
                "broker.keepalive_s",
            ),
            (
                "role = \"gate\"\n[broker]\nconnect_timeout_ms = 0",
                "broker.connect_timeout_ms",
            ),
            (
                "role = \"gate\"\n[broker]\npassword = \"x\"",
                "broker.password",
            ),
            (
                "role = \"gate\"\n[broker]\nclient_id = \"\"",
                "broker.client_id",
            ),
            (
                "role = \"sorter\"\n[simulator]\ncapacity = 0",
                "simulator.capacity",
            ),
            ("role = \"sorter\"\n[simulator]\nbins = 0", "simulator.bins"),
            (
                "role = \"sorter\"\n[[simulator.tags]]\nuid = \"E004010000000001\"",
                "simulator.tags",
            ),
            (
                "role = \"gate\"\n[[simulator.tags]]\nuid = \"E004\"",
                "simulator.tags[0].uid",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).check("gate-1").unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
        let err = parse("role = \"gate\"").check("gate+1").unwrap_err();
        assert_eq!(err.key, "topic_prefix", "{err}");
        assert!(err.message.contains("from the device id"), "{err}");
    }

    #[test]
    fn unknown_keys_and_roles_are_refused_by_name() {
        for (text, needle) in [
            ("role = \"reader\"", "reader"),
            ("role = \"gate\"\nprefix = \"x\"", "prefix"),
            ("role = \"gate\"\n[broker]\naddr = \"x\"", "addr"),
            ("role = \"gate\"\n[broker.tls]\nca = \"x\"", "ca"),
            ("qos = 1", "role"),
        ] {
            let err = toml::from_str::<MqttSettings>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn each_role_takes_its_own_commands() {
        let divert = DeviceCommand::Divert { bin: 1 };
        let output = DeviceCommand::Output(rfidgw_driver::OutputCommand::default());
        assert!(Role::Sorter.accepts(&divert).is_ok());
        assert!(Role::Sorter.accepts(&output).is_err());
        assert!(Role::Gate.accepts(&output).is_ok());
        assert!(Role::Gate.accepts(&divert).is_err());
    }
}
