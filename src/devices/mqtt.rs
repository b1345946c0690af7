//! The `mqtt` driver: a gate controller or sorter that speaks rfidgw's MQTT device protocol
//! through a broker, or the simulated one (see `rfidgw_mqtt`'s README for the topics and
//! payloads, and `rfidgw_mqtt::settings` for every key).

use rfidgw_driver::{Device, DeviceError};
use rfidgw_mqtt::{MqttDevice, MqttSettings};

use super::{DeviceConfig, DeviceConfigError};

/// Builds the device; a bad key or value names the device and the key.
pub(super) fn build(config: &DeviceConfig) -> Result<Box<dyn Device>, DeviceConfigError> {
    let settings: MqttSettings = config.settings()?;
    let device = MqttDevice::new(&config.id, &settings).map_err(|e| DeviceConfigError {
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

    /// A gate controller on the library's broker, every key set and explained (the example
    /// config's entry).
    const PRODUCTION_GATE: &str = r#"
[[devices]]
id = "gate-north"               # unique name: logs, journal, status API; a gate station names it
driver = "mqtt"                 # a device that speaks rfidgw's MQTT device protocol

[devices.settings]
role = "gate"                   # "gate": publishes tags and inputs, takes outputs and tag writes; "sorter": takes diverts, reports full bins
topic_prefix = "library/north-gate"   # its topics are <prefix>/tags, /inputs, /status, /cmd, /cmd/reply; default rfidgw/devices/<id>
qos = 1                         # 0, 1 or 2 for its topics and the commands (default 1)
reply_timeout_ms = 2000         # longest wait for a command's reply; a caller's shorter deadline wins (default 2000)
health_interval_ms = 10000      # time between health reports (default 10000)

[devices.settings.broker]
host = "broker.library.example" # the broker (default 127.0.0.1)
port = 8883                     # default 1883, or 8883 with [broker.tls]
client_id = "rfidgw-gate-north" # unique on the broker; default rfidgw-<id>-<random>
username = "rfidgw"             # if the broker wants a login
password = "change-me"          # never logged
keepalive_s = 30                # a dead connection is noticed after 1.5 times this (default 30)
connect_timeout_ms = 5000       # time to wait for the broker's CONNACK (default 5000)

[devices.settings.broker.tls]   # leave the table out for plain TCP
ca_file = "/etc/rfidgw/broker-ca.pem"  # the broker's CA; default: the system's CA roots
"#;

    /// The simulated sorter on a local broker, as a demo would run it.
    const DEMO_SORTER: &str = r#"
[[devices]]
id = "mqtt-sorter"
driver = "mqtt"
[devices.settings]
role = "sorter"
[devices.settings.simulator]    # the driver starts a simulated sorter on the same broker and topics
bins = 4                        # bins 1 to 4 (default 6)
capacity = 5                    # items a bin takes before it reports full (default 20)
empty_after_ms = 30000          # staff empty a full bin this long after it filled; 0 = never (default 0)
"#;

    #[derive(serde::Deserialize)]
    struct Doc {
        devices: Vec<DeviceConfig>,
    }

    fn device(doc: &str) -> DeviceConfig {
        let mut doc: Doc = toml::from_str(doc).unwrap_or_else(|e| panic!("{e}"));
        doc.devices.remove(0)
    }

    #[test]
    fn the_documented_gate_and_demo_sorter_build() {
        for config in [device(PRODUCTION_GATE), device(DEMO_SORTER)] {
            config
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", config.id));
            assert_eq!(config.reads_eas(), None);
        }
    }

    #[test]
    fn a_bad_mqtt_setting_names_the_device_and_the_key() {
        let cases = [
            (
                "role = \"reader\"",
                "devices.gate.settings.role: unknown variant `reader`",
            ),
            // (mod.rs writes a missing top-level key as `settings.missing field …`)
            ("qos = 1", "devices.gate.settings.missing field `role`"),
            (
                "role = \"gate\"\nqos = 5",
                "devices.gate.settings.qos: 5 is not an MQTT QoS",
            ),
            (
                "role = \"gate\"\ntopic_prefix = \"a/#\"",
                "devices.gate.settings.topic_prefix: `a/#` contains the wildcard `#`",
            ),
            (
                "role = \"gate\"\n[settings.broker]\nport = 0",
                "devices.gate.settings.broker.port: 0 is no port",
            ),
            (
                "role = \"gate\"\n[settings.broker]\npassword = \"s3cret\"",
                "devices.gate.settings.broker.password: needs broker.username too",
            ),
            (
                "role = \"gate\"\n[settings.broker]\nhostname = \"x\"",
                "devices.gate.settings.broker.hostname: unknown field `hostname`",
            ),
            (
                "role = \"sorter\"\n[settings.simulator]\ncapacity = 0",
                "devices.gate.settings.simulator.capacity: 0 would make every bin full",
            ),
        ];
        for (settings, needle) in cases {
            let text = format!("id = \"gate\"\ndriver = \"mqtt\"\n[settings]\n{settings}");
            let config: DeviceConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(needle), "{settings}\n  got: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
