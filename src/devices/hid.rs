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

#[cfg(test)]
mod tests {
    use super::super::DeviceConfig;

    fn entry(settings: &str) -> DeviceConfig {
        toml::from_str(&format!(
            "id = \"card\"\ndriver = \"hid\"\n[settings]\n{settings}"
        ))
        .unwrap()
    }

    #[test]
    fn a_hid_entry_with_usb_ids_builds_without_touching_usb() {
        assert!(
            entry("vid = \"08FF\"\npid = \"0009\"\nlayout = \"fr\"")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn the_demo_entry_for_a_recorded_patron_card_reader_builds() {
        let config: DeviceConfig = toml::from_str(
            r#"
            id = "patron-card"
            driver = "hid"
            [settings]
            vid = "08FF"
            pid = "0009"
            layout = "us"
            [settings.recorded]
            cards = ["23000000001234"]
            card_interval_ms = 15000
            repeat = true
            "#,
        )
        .unwrap();
        assert!(config.build().is_ok());
    }

    #[test]
    fn a_bad_hid_setting_names_the_device_and_the_key() {
        let cases = [
            ("vid = 1\npid = 2\nlayout = \"azerty\"", "layout"),
            ("vid = 1", "pid"),
            (
                "vid = 1\npid = 2\n[settings.recorded]\ncards = [\"1€\"]",
                "devices.card.settings.recorded.cards[0]",
            ),
        ];
        for (text, needle) in cases {
            let err = entry(text).build().err().expect("refused").to_string();
            assert!(err.starts_with("devices.card.settings"), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
