//! The `hid` driver: a USB HID keyboard-wedge card reader (PROTOCOLS.md §4.5) from its
//! settings table (see `rfidgw_hid::device` for every key).

use rfidgw_driver::Device;
use rfidgw_hid::{HidCardReader, HidSettings};

use super::{DeviceConfig, DeviceConfigError};

/// Builds the device; a bad key or value names the device and the key.
pub(super) fn build(config: &DeviceConfig) -> Result<Box<dyn Device>, DeviceConfigError> {
    let settings: HidSettings = config.settings()?;
    let reader = HidCardReader::from_settings(&settings).map_err(|e| DeviceConfigError {
        device: config.id.clone(),
        message: e.to_string(),
    })?;
    Ok(Box::new(reader))
}
