//! A simulated 3M pad on a real pty delivers tag reads into the daemon's event bus: the
//! device is built from its config entry (`DeviceConfig` → `build()`), run as the daemon
//! runs it (`Device::run` with a `DeviceEventSink` over the bus channel), and opened by a
//! stable symlink the way `/dev/serial/by-id/…` names a USB-serial adapter.
//!
//! Real I/O on a pty: real time, no sleeps, every wait bounded by `within`.

use std::path::Path;
use std::time::Duration;

use rfidgw::devices::DeviceConfig;
use rfidgw_3m810::{M3m810Device, M3m810Settings, SimPad, VirtualTag};
use rfidgw_driver::{
    DeviceError, DeviceEvent, DeviceEventSink, DeviceReport, LineCounters, LinkState, TagRead, Uid,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

/// Bounds every wait: a hung test fails with a message instead of hanging CI.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn book() -> VirtualTag {
    VirtualTag {
        afi: 0x07,
        dsfid: 0x3E,
        memory: (0u8..112).collect(),
        ..VirtualTag::new(UID)
    }
}

/// Serves `pad` on a new pty and points the stable name `link` at its slave.
fn plug_in(pad: &SimPad, link: &Path) {
    let slave = pad.serve_on_pty().expect("pty pair");
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(slave, link).expect("symlink");
}

fn config(link: &Path) -> DeviceConfig {
    let text = format!(
        r#"
        id = "staff-pad"
        driver = "3m810"
        [settings.transport]
        kind = "serial"
        path = "{}"
        [settings.poll]
        poll_interval_ms = 20
        health_interval_ms = 40
        memory_blocks = 4
        [settings.driver]
        command_timeout_ms = 2000
        retry_pause_ms = 1
        "#,
        link.display()
    );
    toml::from_str(&text).expect("device config")
}

type Bus = mpsc::Receiver<DeviceReport>;

fn start(
    device: Box<dyn rfidgw_driver::Device>,
) -> (Bus, CancellationToken, JoinHandle<Result<(), DeviceError>>) {
    let (tx, rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(device.run(DeviceEventSink::new("staff-pad", tx), cancel.clone()));
    (rx, cancel, task)
}

async fn next_arrival(bus: &mut Bus) -> TagRead {
    within("a tag arrival", async {
        loop {
            let report = bus.recv().await.expect("bus open");
            assert_eq!(report.device, "staff-pad");
            if let DeviceEvent::TagArrived(read) = report.event {
                return read;
            }
        }
    })
    .await
}

async fn health_until(bus: &mut Bus, what: &str, done: impl Fn(LinkState, &LineCounters) -> bool) {
    within(what, async {
        loop {
            let report = bus.recv().await.expect("bus open");
            if let DeviceEvent::Health { link, counters } = report.event
                && done(link, &counters)
            {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_simulated_3m_pad_on_a_pty_delivers_tag_reads_with_afi_and_memory_into_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-3M_810-if00-port0");
    let pad = SimPad::new();
    pad.place(book());
    plug_in(&pad, &link);

    let (mut bus, cancel, task) = start(config(&link).build().unwrap());
    let read = next_arrival(&mut bus).await;
    assert_eq!(read.uid, Uid::new(UID));
    assert_eq!(read.afi, Some(0x07));
    assert_eq!(
        read.memory.as_deref(),
        Some(&(0u8..16).collect::<Vec<_>>()[..])
    );

    pad.remove(&UID);
    within("the departure", async {
        loop {
            if let DeviceEvent::TagDeparted { uid } = bus.recv().await.unwrap().event {
                assert_eq!(uid, Uid::new(UID));
                return;
            }
        }
    })
    .await;
    cancel.cancel();
    within("the device to stop", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn garbage_on_the_line_is_skipped_and_counted_in_the_health_report() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-3M_810-if00-port0");
    let pad = SimPad::new();
    pad.place(book());
    plug_in(&pad, &link);

    let (mut bus, cancel, task) = start(config(&link).build().unwrap());
    next_arrival(&mut bus).await;
    pad.inject_garbage(&[0x00, 0x55, 0xAA, 0xD6, 0xFF]);
    health_until(
        &mut bus,
        "the skipped bytes in a health report",
        |link, c| link == LinkState::Connected && c.bytes_skipped == 5,
    )
    .await;
    cancel.cancel();
    within("the device to stop", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn unplugging_ends_the_run_with_an_error_and_plugging_back_reconnects_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-3M_810-if00-port0");
    let config = config(&link);
    let pad = SimPad::new();
    pad.place(book());
    plug_in(&pad, &link);

    let (mut bus, _cancel, task) = start(config.build().unwrap());
    next_arrival(&mut bus).await;

    pad.unplug();
    let ended = within("the run to fail", task).await.unwrap();
    assert!(
        matches!(
            ended,
            Err(DeviceError::Transport(_) | DeviceError::Timeout(_))
        ),
        "{ended:?}"
    );
    health_until(&mut bus, "the disconnected report", |link, _| {
        link == LinkState::Disconnected
    })
    .await;

    // The adapter comes back (as another pty, like another ttyUSBn) under the same stable
    // name; the supervisor builds the device again from the same config.
    let pad = SimPad::new();
    pad.place(book());
    plug_in(&pad, &link);
    let (mut bus, cancel, task) = start(config.build().unwrap());
    let read = next_arrival(&mut bus).await;
    assert_eq!(read.uid, Uid::new(UID));
    cancel.cancel();
    within("the device to stop", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn afi_and_eas_writes_through_the_device_handle_reach_the_tag_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-3M_810-if00-port0");
    let pad = SimPad::new();
    pad.place(book());
    plug_in(&pad, &link);

    let settings: M3m810Settings = toml::Value::Table(config(&link).settings)
        .try_into()
        .unwrap();
    let mut device = M3m810Device::new(settings).unwrap();
    let mailbox = rfidgw_driver::CommandMailbox::new("staff-pad");
    assert!(mailbox.attach(&mut device).await, "the pad takes commands");
    let handle = mailbox.handle();
    let (mut bus, cancel, task) = start(Box::new(device));
    next_arrival(&mut bus).await;

    let uid = Uid::new(UID);
    pad.fail_next_writes(2);
    let written = within(
        "write AFI",
        handle.write_afi(&uid, 0xC2, std::time::Duration::from_secs(20)),
    )
    .await;
    assert!(
        matches!(&written, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed()),
        "{written:?}"
    );
    assert_eq!(pad.tag(&UID).unwrap().afi, 0xC2);
    assert_eq!(
        within(
            "read AFI",
            handle.read_afi(&uid, std::time::Duration::from_secs(20))
        )
        .await
        .unwrap(),
        Ok(0xC2)
    );

    pad.fail_next_writes(1);
    let written = within(
        "set EAS",
        handle.write_eas(&uid, true, std::time::Duration::from_secs(20)),
    )
    .await;
    assert!(
        matches!(&written, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed()),
        "{written:?}"
    );
    assert!(pad.tag(&UID).unwrap().eas);
    assert_eq!(
        within(
            "check EAS",
            handle.read_eas(&uid, std::time::Duration::from_secs(20))
        )
        .await
        .unwrap(),
        Ok(true)
    );
    assert_eq!(pad.writes_refused(), 3, "each transient 06 was retried");
    cancel.cancel();
    within("the device to stop", task).await.unwrap().unwrap();
}
