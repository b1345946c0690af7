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

#[cfg(test)]
mod tests {
    use super::super::DeviceConfig;

    fn entry(text: &str) -> DeviceConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_documented_serial_tcp_and_simulator_entries_build() {
        let entries = [
            r#"
            id = "gate-1"
            driver = "feig"
            [settings]
            address = "FF"
            poll_interval_ms = 100
            memory_blocks = 8
            inventory_afi = "07"
            read_eas = true
            poll_inputs = true
            [settings.transport]
            kind = "serial"
            path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A9XYZ-if00-port0"
            baud = 38400
            parity = "even"
            "#,
            r#"
            id = "gate-2"
            driver = "feig"
            [settings.transport]
            kind = "tcp"
            addr = "192.0.2.10:10001"
            "#,
            r#"
            id = "demo-gate"
            driver = "feig"
            [settings]
            poll_interval_ms = 200
            round_ms = 20000
            [settings.transport]
            kind = "simulator"
            [[settings.tags]]
            uid = "E004010031269117"
            afi = "07"
            memory = "11010000"
            at_ms = 2000
            stay_ms = 4000
            "#,
        ];
        for text in entries {
            let config = entry(text);
            config.build().unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_bad_feig_setting_names_the_device_and_the_key() {
        let config = entry(
            "id = \"gate-1\"\ndriver = \"feig\"\n[settings]\npsst_ms = 9\n[settings.transport]\nkind = \"simulator\"",
        );
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("gate-1") && err.contains("psst_ms"), "{err}");
        let config = entry(
            "id = \"gate-1\"\ndriver = \"feig\"\n[settings]\npoll_ms = 9\n[settings.transport]\nkind = \"simulator\"",
        );
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("gate-1") && err.contains("poll_ms"), "{err}");
    }
}
