//! The `3m810` driver: a 3M 810 staff pad / Model 210 reader (PROTOCOLS.md §4.3) from its
//! settings table (see `rfidgw_3m810::settings` for every key).

use rfidgw_3m810::{M3m810Device, M3m810Settings};
use rfidgw_driver::Device;

use super::{DeviceConfig, DeviceConfigError};

/// Builds the device; a bad key or value names the device and the key.
pub(super) fn build(config: &DeviceConfig) -> Result<Box<dyn Device>, DeviceConfigError> {
    let settings: M3m810Settings = config.settings()?;
    let device = M3m810Device::new(settings).map_err(|e| DeviceConfigError {
        device: config.id.clone(),
        message: e.to_string(),
    })?;
    Ok(Box::new(device))
}
