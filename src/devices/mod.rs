//! Devices from config: which driver runs a device, and building a fresh [`Device`] for
//! each (re)start of its task.
//!
//! A device entry names its `driver` and carries a `settings` table that only that driver
//! understands. The table is parsed in a second step into the driver's own typed settings
//! (with unknown keys rejected), so an error names the device and the key.

mod feig;
mod hid;
mod m3m810;
mod modbus;
mod mqtt;
mod sim;

use rfidgw_driver::Device;
use serde::Deserialize;

pub use sim::{SimSettings, SimTag};

/// Which driver runs a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    /// Scripted tag reads, for the demo and tests.
    Sim,
    /// A 3M 810 staff pad / 3M RFID Reader Model 210 (serial, TCP or its simulator).
    #[serde(rename = "3m810")]
    M3m810,
    /// A USB HID keyboard-wedge card reader (patron cards).
    Hid,
    /// A FEIG OBID ISO-Host reader (serial, TCP, USB or its simulator).
    Feig,
    /// A sorter's PLC over Modbus RTU or TCP (or the simulated sorter).
    Modbus,
    /// A gate controller or sorter speaking rfidgw's MQTT device protocol through a broker.
    Mqtt,
}

/// One `[[devices]]` entry of the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique name, used in logs, the journal and the status API.
    pub id: String,
    /// The driver that runs it.
    pub driver: DriverKind,
    /// Driver settings, parsed by the driver (see the documented example config).
    #[serde(default)]
    pub settings: toml::Table,
}

/// A device entry whose settings do not fit its driver.
#[derive(Debug, thiserror::Error)]
#[error("devices.{device}.settings.{message}")]
pub struct DeviceConfigError {
    /// The device id.
    pub device: String,
    /// What is wrong, naming the key.
    pub message: String,
}

impl DeviceConfig {
    /// Checks that the settings parse for this driver, without building anything.
    pub fn validate(&self) -> Result<(), DeviceConfigError> {
        self.build().map(drop)
    }

    /// Builds a fresh device from the settings (called again for every restart).
    pub fn build(&self) -> Result<Box<dyn Device>, DeviceConfigError> {
        match self.driver {
            DriverKind::Sim => Ok(Box::new(sim::SimReader::new(self.settings()?))),
            DriverKind::M3m810 => m3m810::build(self),
            DriverKind::Hid => hid::build(self),
            DriverKind::Feig => feig::build(self),
            DriverKind::Modbus => modbus::build(self),
            DriverKind::Mqtt => mqtt::build(self),
        }
    }

    /// The AFI this device's inventories are limited to (`settings.poll.inventory_afi`),
    /// whether the byte goes in the request or the reader filters by its own configuration.
    pub fn inventory_afi_filter(&self) -> Option<u8> {
        let afi = self.settings.get("poll")?.get("inventory_afi")?.as_str()?;
        u8::from_str_radix(afi.trim(), 16).ok()
    }

    /// Whether this device reads each tag's NXP EAS bit (`settings.poll.read_eas`); `None`
    /// for drivers without the shared HF read loop.
    pub fn reads_eas(&self) -> Option<bool> {
        match self.driver {
            DriverKind::Feig | DriverKind::M3m810 => Some(
                self.settings
                    .get("poll")
                    .and_then(|p| p.get("read_eas"))
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(false),
            ),
            DriverKind::Sim | DriverKind::Hid | DriverKind::Modbus | DriverKind::Mqtt => None,
        }
    }

    fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, DeviceConfigError> {
        // serde_path_to_error names the key inside the table (`tags[0].afi`).
        serde_path_to_error::deserialize(toml::Value::Table(self.settings.clone())).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let path = e.path().to_string();
                let message = e.into_inner().message().to_owned();
                DeviceConfigError {
                    device: self.id.clone(),
                    message: if path == "." {
                        message
                    } else {
                        format!("{path}: {message}")
                    },
                }
            },
        )
    }
}
