//! A simulated FEIG gate on a real pty pair, opened by a `/dev/serial/by-id`-style symlink
//! through the `serial` transport (the real tokio-serial code path): reads reach the bus,
//! AFI and EAS writes reach the tag and read back, garbage is skipped and counted, and an
//! unplugged and re-plugged reader is found again by a rebuilt device.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rfidgw_driver::transport::PtyPair;
use rfidgw_driver::{Device, DeviceError, DeviceEvent, DeviceEventSink, DeviceReport, Uid};
use rfidgw_feig::sim::Fault;
use rfidgw_feig::{FeigDevice, FeigSettings, FeigSimulator, SimHandle, VirtualTag};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BOOK: &str = "E004010031269117";
/// Generous bound for one wait on a loaded CI machine; not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

/// Plugs a simulated reader in: a new pty pair, the by-id link pointed at its slave.
fn plug(link: &Path, sim: &SimHandle) -> JoinHandle<std::io::Result<()>> {
    let pty = PtyPair::open().unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(pty.slave_path(), link).unwrap();
    tokio::spawn(FeigSimulator::from_handle(sim.clone()).serve_pty(pty))
}

fn settings(link: &Path) -> FeigSettings {
    toml::from_str(&format!(
        r#"
        [transport]
        kind = "serial"
        path = "{}"
        baud = 38400
        [poll]
        poll_interval_ms = 30
        depart_after_polls = 2
        memory_blocks = 2
        read_eas = true
        health_interval_ms = 100
        [driver]
        reply_timeout_ms = 500
        "#,
        link.display()
    ))
    .unwrap()
}

fn book() -> VirtualTag {
    let mut tag = VirtualTag::new(Uid::from_hex(BOOK).unwrap());
    tag.memory[..4].copy_from_slice(&[0x11, 0x01, 0x00, 0x00]);
    tag
}

async fn next_matching(
    rx: &mut mpsc::Receiver<DeviceReport>,
    want: impl Fn(&DeviceEvent) -> bool,
) -> DeviceEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let report = rx.recv().await.expect("the device stopped sending");
            if want(&report.event) {
                return report.event;
            }
        }
    })
    .await
    .expect("no such event in time")
}

fn by_id_link() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FEIG_ID_ISC.MR101-if00-port0");
    (dir, link)
}

#[tokio::test]
async fn a_pty_gate_delivers_reads_and_afi_and_eas_writes_read_back() {
    let (_dir, link) = by_id_link();
    let sim = SimHandle::default();
    sim.insert_tag(book());
    let _reader = plug(&link, &sim);

    let mut device = FeigDevice::new(settings(&link)).unwrap();
    let mailbox = rfidgw_driver::CommandMailbox::new("gate-1");
    assert!(
        mailbox.attach(&mut device).await,
        "the device takes commands"
    );
    let handle = mailbox.handle();
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("gate-1", tx), cancel.clone()));

    let DeviceEvent::TagArrived(read) =
        next_matching(&mut rx, |e| matches!(e, DeviceEvent::TagArrived(_))).await
    else {
        unreachable!()
    };
    assert_eq!(read.uid.to_string(), BOOK);
    assert_eq!(read.afi, Some(0x07));
    assert_eq!(read.eas, Some(false));
    assert_eq!(
        read.memory.as_deref().map(|m| &m[..4]),
        Some(&[0x00, 0x00, 0x01, 0x11][..])
    );

    let uid = Uid::from_hex(BOOK).unwrap();
    assert!(
        matches!(handle.write_afi(&uid, 0xC2, std::time::Duration::from_secs(5)).await, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed())
    );
    assert_eq!(sim.tag(&uid).unwrap().afi, 0xC2);
    assert_eq!(
        handle
            .read_afi(&uid, std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        Ok(0xC2)
    );
    assert!(
        matches!(handle.write_eas(&uid, true, std::time::Duration::from_secs(5)).await, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed())
    );
    assert!(sim.tag(&uid).unwrap().eas);
    assert_eq!(
        handle
            .read_eas(&uid, std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        Ok(true)
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}

#[tokio::test]
async fn garbage_on_the_pty_is_skipped_and_counted() {
    let (_dir, link) = by_id_link();
    let sim = SimHandle::default();
    sim.insert_tag(book());
    let _reader = plug(&link, &sim);
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(
        Box::new(FeigDevice::new(settings(&link)).unwrap())
            .run(DeviceEventSink::new("gate-1", tx), cancel.clone()),
    );
    next_matching(&mut rx, |e| matches!(e, DeviceEvent::TagArrived(_))).await;
    sim.inject(Fault::Garbage(vec![0xA5, 0x5A, 0x00, 0x01]));
    let DeviceEvent::Health { counters, .. } = next_matching(
        &mut rx,
        |e| matches!(e, DeviceEvent::Health { counters, .. } if counters.bytes_skipped > 0),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(counters.bytes_skipped, 4);
    // The line kept working: the tag is still present, no departure was reported.
    while let Ok(report) = rx.try_recv() {
        assert!(
            !matches!(report.event, DeviceEvent::TagDeparted { .. }),
            "{report:?}"
        );
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}

#[tokio::test]
async fn an_unplugged_reader_ends_run_and_a_rebuilt_device_finds_it_again_by_its_by_id_path() {
    let (_dir, link) = by_id_link();
    let sim = SimHandle::default();
    sim.insert_tag(book());
    let first_line = plug(&link, &sim);
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    // What the daemon's supervisor does on every (re)start: a fresh device from the settings.
    let run = |tx| {
        tokio::spawn(
            Box::new(FeigDevice::new(settings(&link)).unwrap())
                .run(DeviceEventSink::new("gate-1", tx), cancel.clone()),
        )
    };
    let task = run(tx.clone());
    next_matching(&mut rx, |e| matches!(e, DeviceEvent::TagArrived(_))).await;

    sim.unplug();
    first_line.await.unwrap().unwrap();
    let ended = tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert!(
        matches!(
            ended,
            Err(DeviceError::Transport(_) | DeviceError::Timeout(_))
        ),
        "{ended:?}"
    );

    // Plugged back in: a new pty (a new /dev/pts/N) behind the same by-id name.
    let _second_line = plug(&link, &sim);
    let task = run(tx);
    let DeviceEvent::TagArrived(read) =
        next_matching(&mut rx, |e| matches!(e, DeviceEvent::TagArrived(_))).await
    else {
        unreachable!()
    };
    assert_eq!(read.uid.to_string(), BOOK);
    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}
