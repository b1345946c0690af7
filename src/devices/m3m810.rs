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

#[cfg(test)]
mod tests {
    use super::super::DeviceConfig;

    fn entry(settings: &str) -> DeviceConfig {
        toml::from_str(&format!("id = \"pad\"\ndriver = \"3m810\"\n{settings}")).unwrap()
    }

    #[test]
    fn a_3m810_entry_with_a_simulator_transport_builds() {
        let config = entry("[settings.transport]\nkind = \"simulator\"");
        assert!(config.build().is_ok());
    }

    #[test]
    fn the_demo_entry_for_a_simulated_staff_pad_builds() {
        let config: DeviceConfig = toml::from_str(
            r#"
            id = "staff-pad"
            driver = "3m810"
            [settings.transport]
            kind = "simulator"
            [settings.poll]
            poll_interval_ms = 250
            memory_blocks = 8
            read_eas = true
            [settings.simulator]
            round_ms = 12000
            [[settings.simulator.tags]]
            uid = "E0040100EEFF0001"
            afi = "07"
            eas = true
            memory = "11010131323334353637383930000000000000D203444B3731353730300000000000"
            at_ms = 2000
            stay_ms = 5000
            "#,
        )
        .unwrap();
        assert!(config.build().is_ok());
    }

    #[test]
    fn a_bad_3m810_setting_names_the_device_and_the_key() {
        let cases = [
            (
                "[settings.transport]\nkind = \"simulator\"\n[settings.driver]\nretries = 1",
                "retries",
            ),
            (
                "[settings.transport]\nkind = \"simulator\"\n[settings.driver]\nwrite_attempts = 0",
                "devices.pad.settings.driver.write_attempts: 0 is not 1 to 100",
            ),
            ("[settings]\npoll = {}", "transport"),
        ];
        for (text, needle) in cases {
            let err = entry(text).build().err().expect("refused").to_string();
            assert!(err.starts_with("devices.pad.settings"), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
