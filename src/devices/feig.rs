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
    use rfidgw_driver::{DeviceEvent, DeviceEventSink};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::super::DeviceConfig;

    /// A production gate on a serial line, every key set and explained (the README's and
    /// the example config's entry).
    const PRODUCTION_GATE: &str = r#"
[[devices]]
id = "gate-1"                   # unique name: logs, journal, status API
driver = "feig"                 # FEIG OBID ISO-Host reader (CPR, MR, LR, PR series)

[devices.settings.transport]
kind = "serial"                 # "serial", "tcp" (network readers, port 10001) or "simulator"
# The stable by-id name survives re-plugging; /dev/ttyUSB0 may come back as ttyUSB1.
path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A9XYZ-if00-port0"
baud = 38400                    # FEIG default 38400; must match the reader's setting
parity = "even"                 # "none", "odd" or "even"; FEIG default even (8E1)
data_bits = 8                   # 5 to 8; FEIG default 8
stop_bits = 1                   # 1 or 2; FEIG default 1

[devices.settings.poll]         # the shared read loop: the same keys for every HF reader
poll_interval_ms = 100          # time between inventories (default 200)
depart_after_polls = 3          # a tag leaves after missing this many inventories in a row (default 3)
memory_blocks = 8               # 4-byte blocks of user memory read once per presence, 0 = none (default 8)
inventory_afi = "07"            # only tags with this AFI answer: secured items at a gate (default: all tags)
read_afi = true                 # read each tag's AFI once per presence (default true)
read_eas = false                # read each tag's NXP EAS bit once per presence; needs B1 support (default false)
health_interval_ms = 10000      # time between health reports (default 10000)

[devices.settings.driver]       # FEIG's own keys
address = "FF"                  # COM-ADR of the reader, hex; FF always reaches it (default FF)
poll_inputs = true              # read the light barriers ([74]) after each inventory, report changes (default false)
reply_timeout_ms = 1000         # time to wait for a reply (default 1000)
psst_ms = 5                     # silence before each request after a reply, 0 to 5 (default 5)
inter_char_timeout_ms = 12      # drop a partial frame after this gap; 0 = off (default 12 on serial, off otherwise)
"#;

    /// A demo gate on the built-in simulator: one secured ISO 28560-3 item that passes
    /// every 6 seconds.
    const DEMO_GATE: &str = r#"
[[devices]]
id = "demo-gate"
driver = "feig"

[devices.settings.transport]
kind = "simulator"              # FEIG's own virtual reader, no hardware

[devices.settings.poll]
inventory_afi = "07"            # like a real gate: only secured items answer

[devices.settings.simulator]
round_ms = 6000                 # the script repeats every 6 s (0 = play once)

[[devices.settings.simulator.tags]]
uid = "E004010031269117"
afi = "07"                      # secured (on the shelf)
memory = "11010131313232333334340000000000000000513E4445373035000000000000"
at_ms = 1000                    # enters the field 1 s into each round
stay_ms = 800                   # and leaves 0.8 s later
"#;

    #[derive(serde::Deserialize)]
    struct Doc {
        devices: Vec<DeviceConfig>,
    }

    fn device(doc: &str) -> DeviceConfig {
        let mut doc: Doc = toml::from_str(doc).unwrap_or_else(|e| panic!("{e}"));
        doc.devices.remove(0)
    }

    fn entry(text: &str) -> DeviceConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_documented_production_demo_and_tcp_entries_build() {
        for config in [
            device(PRODUCTION_GATE),
            device(DEMO_GATE),
            entry(
                "id = \"gate-2\"\ndriver = \"feig\"\n[settings.transport]\nkind = \"tcp\"\naddr = \"192.0.2.10:10001\"",
            ),
        ] {
            config
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", config.id));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_demo_gate_sees_its_secured_item_pass_through() {
        let config = device(DEMO_GATE);
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(
            config
                .build()
                .unwrap()
                .run(DeviceEventSink::new(config.id.clone(), tx), cancel.clone()),
        );
        let decode = crate::pipeline::site_decoder(rfidgw_tag::SiteConfig::default());
        let mut events = Vec::new();
        while events.len() < 2 {
            let report = rx.recv().await.expect("the device stopped");
            match report.event {
                DeviceEvent::TagArrived(read) => {
                    let decoded = serde_json::to_string(&decode(&read)).unwrap();
                    events.push(("arrived", read.uid, read.afi));
                    assert!(decoded.contains("\"11223344\""), "{decoded}");
                }
                DeviceEvent::TagDeparted { uid } => events.push(("departed", uid, None)),
                _ => {}
            }
        }
        cancel.cancel();
        task.await.unwrap().unwrap();
        let uid = rfidgw_driver::Uid::from_hex("E004010031269117").unwrap();
        assert_eq!(
            events,
            [
                ("arrived", uid.clone(), Some(0x07)),
                ("departed", uid, None)
            ]
        );
    }

    #[test]
    fn a_bad_feig_setting_names_the_device_and_the_key() {
        let cases = [
            (
                "[settings.driver]\npsst_ms = 9",
                "devices.gate-1.settings.driver.psst_ms: 9 is above",
            ),
            ("[settings.poll]\npoll_ms = 9", "poll_ms"),
            ("[settings]\npoll_interval_ms = 9", "poll_interval_ms"),
            ("[settings.driver]\naddress = \"1FF\"", "driver.address"),
            (
                "[settings.poll]\nmode = \"notify\"\nnotify_wait_ms = 50",
                "devices.gate-1.settings.poll.notify_wait_ms: 50 is not 100 to 25500 ms",
            ),
            ("[settings.poll]\nmode = \"push\"", "push"),
            (
                "[[settings.simulator.tags]]\nuid = \"E004\"",
                "devices.gate-1.settings.simulator.tags[0].uid",
            ),
        ];
        for (settings, needle) in cases {
            let config = entry(&format!(
                "id = \"gate-1\"\ndriver = \"feig\"\n{settings}\n[settings.transport]\nkind = \"simulator\""
            ));
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("gate-1") && err.contains(needle), "{err}");
        }
    }
}
