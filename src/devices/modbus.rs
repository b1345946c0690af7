//! The `modbus` driver: a sorter's PLC over Modbus RTU or TCP (PROTOCOLS.md §4.6), or the
//! simulated sorter, from its settings table (see `rfidgw_modbus::settings` for every key).

use rfidgw_driver::{Device, DeviceError};
use rfidgw_modbus::{ModbusDevice, ModbusSettings};

use super::{DeviceConfig, DeviceConfigError};

/// Builds the device; a bad key or value names the device and the key.
pub(super) fn build(config: &DeviceConfig) -> Result<Box<dyn Device>, DeviceConfigError> {
    let settings: ModbusSettings = config.settings()?;
    let device = ModbusDevice::new(settings).map_err(|e| DeviceConfigError {
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
    use std::time::Duration;

    use rfidgw_driver::{
        CommandAnswer, CommandMailbox, DeviceCommand, DeviceEvent, DeviceEventSink, SorterState,
    };
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::super::DeviceConfig;

    /// A production sorter on an RS-485 line, every key set and explained (the README's and
    /// the example config's entry).
    const PRODUCTION_SORTER: &str = r#"
[[devices]]
id = "sorter"                   # unique name: logs, journal, status API; the return station names it
driver = "modbus"               # a sorter's PLC over Modbus RTU or TCP

[devices.settings.transport]
kind = "serial"                 # "serial" (Modbus RTU), "tcp" (Modbus TCP, port 502) or "simulator"
# The stable by-id name survives re-plugging; /dev/ttyUSB0 may come back as ttyUSB1.
path = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1B2C3D4-if00-port0"
baud = 19200                    # Modbus default 19200; must match the PLC
parity = "even"                 # "none", "odd" or "even"; Modbus default even (8E1)
data_bits = 8                   # Modbus RTU uses 8 (default 8)
stop_bits = 1                   # 1 or 2; the Modbus serial spec wants 2 with parity "none" (default 1)

# The sorter's register map. Addresses are the PDU addresses on the wire, counted from 0:
# a PLC manual's input 10001 is 0 here, holding register 40101 is 100.
[devices.settings.map]
bins = 6                        # bins 1 to 6, as the sort plan numbers them
bin_full = [0, 1, 2, 3, 4, 5]   # discrete input (function 02) of each bin's "full" signal, bin 1 first; leave out if none
jam = 8                         # discrete input that is on while the sorter is jammed; leave out if none
active_low = false              # true: fail-safe wiring, 1 = not full / not jammed (default false)

[devices.settings.map.divert]   # how a divert to a bin is written
kind = "register"               # "register": the bin number into one holding register; "coils": a coil per bin
register = 100                  # the holding register (function 06) that takes the bin number
clear_after_ms = 0              # write 0 this long after each divert; 0 = leave it, the PLC clears it (default 0)
# kind = "coils"                # instead: one coil (function 05) per bin, pulsed on
# coils = [16, 17, 18, 19, 20, 21]  # the coil of each bin, bin 1 first
# pulse_ms = 300                # how long a coil stays on, 1 to 10000 (default 300)

[devices.settings.driver]       # Modbus's own keys
unit = 1                        # the PLC's unit id (RTU slave address): 1 to 247 on a serial line (default 1)
framing = "rtu"                 # "rtu" or "tcp"; default rtu on serial, tcp otherwise; "rtu" with kind "tcp" talks through a transparent serial server
reply_timeout_ms = 1000         # time to wait for each reply; no reply restarts the device (default 1000)
poll_interval_ms = 200          # time between two reads of the bin-full and jam inputs (default 200)
health_interval_ms = 10000      # time between health reports (default 10000)
"#;

    /// A network PLC pulsing one coil per bin.
    const TCP_SORTER: &str = r#"
[[devices]]
id = "sorter-2"
driver = "modbus"

[devices.settings.transport]
kind = "tcp"
addr = "192.0.2.20:502"         # Modbus TCP's port is 502
connect_timeout_ms = 3000

[devices.settings.map]
bins = 4
bin_full = [0, 1, 2, 3]
divert = { kind = "coils", coils = [16, 17, 18, 19], pulse_ms = 300 }
"#;

    /// The demo's sorter: the simulated sorter, whose bins fill up and which jams now and
    /// then, so the demo shows bin-full and jam handling.
    const DEMO_SORTER: &str = r#"
[[devices]]
id = "demo-sorter"
driver = "modbus"

[devices.settings.transport]
kind = "simulator"              # the built-in simulated sorter: a Modbus server on a loopback port

[devices.settings.map]
bins = 3
bin_full = [0, 1, 2]
jam = 3
divert = { kind = "register", register = 100 }

[devices.settings.simulator]    # only with kind = "simulator"
capacity = 5                    # items a bin takes before it reports full (default 20)
empty_after_ms = 30000          # staff empty a full bin this long after it filled; 0 = never (default 0)
jam_every = 7                   # every 7th divert jams the conveyor; 0 = never (default 0)
jam_clear_ms = 4000             # a jam clears itself after this long; 0 = it stays (default 5000)
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
    fn the_documented_production_tcp_and_demo_entries_build() {
        for config in [
            device(PRODUCTION_SORTER),
            device(TCP_SORTER),
            device(DEMO_SORTER),
        ] {
            config
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}", config.id));
            assert_eq!(config.reads_eas(), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_demo_sorter_takes_diverts_and_reports_a_full_bin() {
        let config = device(DEMO_SORTER);
        let mut sorter = config.build().unwrap();
        let mailbox = CommandMailbox::new(config.id.clone());
        assert!(mailbox.attach(sorter.as_mut()).await);
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task =
            tokio::spawn(sorter.run(DeviceEventSink::new(config.id.clone(), tx), cancel.clone()));
        let handle = mailbox.handle();
        for _ in 0..5 {
            let answer = handle
                .call(DeviceCommand::Divert { bin: 2 }, Duration::from_secs(1))
                .await;
            assert_eq!(answer, Ok(Ok(CommandAnswer::Done)));
        }
        let mut states = Vec::new();
        while states
            .last()
            .is_none_or(|s: &SorterState| s.bins_full.is_empty())
        {
            if let DeviceEvent::Sorter(state) = rx.recv().await.expect("the sorter stopped").event {
                states.push(state);
            }
        }
        assert_eq!(
            states,
            [
                SorterState::default(),
                SorterState {
                    bins_full: vec![2],
                    jam: false
                }
            ]
        );
        cancel.cancel();
        task.await.unwrap().unwrap();
    }

    #[test]
    fn a_bad_modbus_setting_names_the_device_and_the_key() {
        let map = "[settings.map]\nbins = 2\ndivert = { kind = \"register\", register = 1 }";
        let cases = [
            (
                "[settings.map]\nbins = 2\ndivert = { kind = \"coils\", coils = [1] }".to_owned(),
                "devices.sorter.settings.map.divert.coils: 1 coils for 2 bins",
            ),
            (
                "[settings.map]\nbins = 2\nbin_full = [0, 0]\ndivert = { kind = \"register\", register = 1 }".to_owned(),
                "devices.sorter.settings.map.bin_full: input 0 is given for bins 1 and 2",
            ),
            (
                format!("{map}\n[settings.driver]\nunit = 0"),
                "devices.sorter.settings.driver.unit: 0 is the broadcast address",
            ),
            (
                format!("{map}\n[settings.driver]\nunit = 300"),
                "devices.sorter.settings.driver.unit",
            ),
            (
                format!("{map}\n[settings.driver]\nslave = 1"),
                "slave",
            ),
            (
                "[settings.map]\nbins = 2\ndivert = { kind = \"relay\" }".to_owned(),
                "devices.sorter.settings.map.divert",
            ),
            (
                "[settings.map]\nbins = 2".to_owned(),
                "devices.sorter.settings.map: missing field `divert`",
            ),
        ];
        for (settings, needle) in cases {
            let text = format!(
                "id = \"sorter\"\ndriver = \"modbus\"\n{settings}\n[settings.transport]\nkind = \"serial\"\npath = \"/dev/ttyUSB0\""
            );
            let config: DeviceConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{settings}\n{err}");
        }
    }
}
