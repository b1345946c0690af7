//! The `feig` driver: a FEIG OBID ISO-Host reader (PROTOCOLS.md §4.2) from its settings
//! table (see `rfidgw_feig::settings` for every key).

use rfidgw_driver::{Device, DeviceError};
use rfidgw_feig::{FeigDevice, FeigSettings};

use super::{DeviceConfig, DeviceConfigError};

/// Builds the device; a bad key or value names the device and the key.
pub(super) fn build(config: &DeviceConfig) -> Result<Box<dyn Device>, DeviceConfigError> {
    let settings: FeigSettings = config.settings()?;
    let device = FeigDevice::new(settings).map_err(|e| DeviceConfigError {
        device: config.id.clone(),
        message: match e {
            DeviceError::Config(message) => message,
            other => other.to_string(),
        },
    })?;
    Ok(Box::new(device))
}
