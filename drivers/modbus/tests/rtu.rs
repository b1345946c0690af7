//! The Modbus sorter driver over RTU on a real pty pair, opened by a
//! `/dev/serial/by-id`-style symlink through the `serial` transport (the real tokio-serial
//! code path), against the simulated sorter behind tokio-modbus's RTU server on the master
//! end. Real time: a pty delivers bytes through the kernel's own worker, so paused time
//! would race it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{settings, start, state};
use rfidgw_driver::transport::PtyPair;
use rfidgw_driver::{CommandAnswer, CommandError, DeviceCommand, DeviceError, ReaderRefusal};
use rfidgw_modbus::settings::SimulatorSettings;
use rfidgw_modbus::{Fault, ModbusDevice, ModbusSettings, RegisterMap, SimHandle, SorterSimulator};

const WITHIN: Duration = Duration::from_secs(5);

fn sorter_settings(path: &Path) -> ModbusSettings {
    settings(&format!(
        r#"
        [transport]
        kind = "serial"
        path = "{}"
        baud = 19200
        parity = "even"
        [map]
        bins = 4
        bin_full = [0, 1, 2, 3]
        jam = 7
        divert = {{ kind = "coils", coils = [0, 1, 2, 3], pulse_ms = 50 }}
        [driver]
        unit = 17
        reply_timeout_ms = 1000
        poll_interval_ms = 20
        "#,
        path.display()
    ))
}

/// A pty pair with the simulated sorter on the master end and a by-id link to the slave.
/// The returned file keeps the slave open (a plain open, never read, no lock) so the
/// master does not read EIO before the driver opens the link: tokio-modbus's RTU server
/// would end there.
fn plug(dir: &Path, capacity: u32) -> (SimHandle, std::fs::File, PathBuf) {
    let pty = PtyPair::open().unwrap();
    let keep_open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pty.slave_path())
        .unwrap();
    let link = dir.join("usb-FTDI_FT232R_USB_UART_SORTER-if00-port0");
    std::os::unix::fs::symlink(pty.slave_path(), &link).unwrap();
    let settings = sorter_settings(&link);
    let simulator = SorterSimulator::new(
        RegisterMap::new(&settings.map).unwrap(),
        settings.driver.unit,
        SimulatorSettings {
            capacity,
            ..SimulatorSettings::default()
        },
    );
    let handle = simulator.handle();
    tokio::spawn(simulator.serve_rtu(pty.into_master()));
    (handle, keep_open, link)
}

#[tokio::test]
async fn an_rtu_sorter_on_a_pty_diverts_and_reports_bin_full_and_jam() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _slave, link) = plug(dir.path(), 2);
    let mut sorter = start(ModbusDevice::new(sorter_settings(&link)).unwrap()).await;
    assert_eq!(sorter.next_state().await, state(&[], false));

    for _ in 0..2 {
        let result = sorter
            .handle
            .call(DeviceCommand::Divert { bin: 3 }, WITHIN)
            .await;
        assert_eq!(result, Ok(Ok(CommandAnswer::Done)));
    }
    assert_eq!(sorter.next_state().await, state(&[3], false));
    sim.set_jam(true);
    assert_eq!(sorter.next_state().await, state(&[3], true));
    sim.set_jam(false);
    assert_eq!(sorter.next_state().await, state(&[3], false));
    assert_eq!(sim.diverts(), [3, 3]);

    // The PLC's no is an answer; an unknown bin is refused before anything is sent.
    sim.inject(Fault::RefuseDivert(0x02));
    let refused = sorter
        .handle
        .call(DeviceCommand::Divert { bin: 1 }, WITHIN)
        .await;
    assert!(
        matches!(&refused, Ok(Err(ReaderRefusal::Status { code: 0x02, .. }))),
        "{refused:?}"
    );
    let unknown = sorter
        .handle
        .call(DeviceCommand::Divert { bin: 5 }, WITHIN)
        .await;
    assert!(
        matches!(unknown, Err(CommandError::Unsupported(_))),
        "{unknown:?}"
    );
    assert_eq!(sim.diverts(), [3, 3]);

    // Every coil went on and, after its pulse, off again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let coils: Vec<String> = sim.writes().iter().map(|(_, w)| w.to_string()).collect();
    assert_eq!(
        coils[4..],
        [
            "write coil 2 on",
            "write coil 2 off",
            "write coil 2 on",
            "write coil 2 off"
        ],
        "{coils:?}"
    );
    sorter.stop().await;
}

#[tokio::test]
async fn a_silent_rtu_sorter_ends_the_run_with_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _slave, link) = plug(dir.path(), 20);
    let mut sorter = start(ModbusDevice::new(sorter_settings(&link)).unwrap()).await;
    sorter.next_state().await;
    sim.inject(Fault::NoReply);
    let err = sorter.failure().await;
    assert!(
        matches!(err, DeviceError::Timeout(d) if d == Duration::from_secs(1)),
        "{err}"
    );
}

#[tokio::test]
async fn a_sorter_on_a_missing_port_fails_naming_the_path() {
    let settings = sorter_settings(Path::new("/dev/serial/by-id/no-such-sorter"));
    let mut sorter = start(ModbusDevice::new(settings).unwrap()).await;
    let err = sorter.failure().await;
    assert!(err.to_string().contains("no-such-sorter"), "{err}");
}
