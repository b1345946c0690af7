//! Issue 5's device checks through the daemon's own entry point: a `[[devices]]` config
//! entry → `DeviceConfig::build()` → `run(sink, cancel)`, with the sink over an mpsc
//! channel (the daemon's event bus entry), a simulated FEIG gate on a real pty pair opened
//! through a `/dev/serial/by-id`-style symlink.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rfidgw::devices::DeviceConfig;
use rfidgw_driver::transport::{self, PtyPair};
use rfidgw_driver::{
    DeviceError, DeviceEvent, DeviceEventSink, DeviceReport, HfReader, LineStats, Uid,
};
use rfidgw_feig::sim::Fault;
use rfidgw_feig::{FeigReader, FeigSettings, FeigSimulator, SimHandle, VirtualTag};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BOOK: &str = "E004010031269117";
/// Bound on one wait on a loaded CI machine; not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(20);

fn plug(link: &Path, sim: &SimHandle) -> JoinHandle<std::io::Result<()>> {
    let pty = PtyPair::open().unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(pty.slave_path(), link).unwrap();
    tokio::spawn(FeigSimulator::from_handle(sim.clone()).serve_pty(pty))
}

fn config(link: &Path) -> DeviceConfig {
    toml::from_str(&format!(
        r#"
        id = "gate-1"
        driver = "feig"
        [settings.transport]
        kind = "serial"
        path = "{}"
        [settings.poll]
        poll_interval_ms = 30
        depart_after_polls = 2
        memory_blocks = 2
        read_eas = true
        health_interval_ms = 100
        [settings.driver]
        reply_timeout_ms = 500
        "#,
        link.display()
    ))
    .unwrap()
}

fn start(
    config: &DeviceConfig,
    tx: mpsc::Sender<DeviceReport>,
    cancel: &CancellationToken,
) -> JoinHandle<Result<(), DeviceError>> {
    let device = config.build().unwrap();
    tokio::spawn(device.run(DeviceEventSink::new(config.id.clone(), tx), cancel.clone()))
}

async fn next_matching(
    rx: &mut mpsc::Receiver<DeviceReport>,
    want: impl Fn(&DeviceEvent) -> bool,
) -> DeviceReport {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let report = rx.recv().await.expect("the device stopped sending");
            if want(&report.event) {
                return report;
            }
        }
    })
    .await
    .expect("no such event in time")
}

fn arrival(e: &DeviceEvent) -> bool {
    matches!(e, DeviceEvent::TagArrived(_))
}

fn setup() -> (tempfile::TempDir, PathBuf, SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir
        .path()
        .join("usb-FEIG_ELECTRONIC_ID_ISC.MR101-if00-port0");
    let sim = SimHandle::default();
    let mut tag = VirtualTag::new(Uid::from_hex(BOOK).unwrap());
    tag.memory[..4].copy_from_slice(&[0x11, 0x01, 0x00, 0x00]);
    sim.insert_tag(tag);
    (dir, link, sim)
}

#[tokio::test]
async fn a_simulated_feig_gate_on_a_pty_delivers_tag_reads_into_the_event_bus() {
    let (_dir, link, sim) = setup();
    let _line = plug(&link, &sim);
    let config = config(&link);
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task = start(&config, tx, &cancel);

    let report = next_matching(&mut rx, arrival).await;
    assert_eq!(report.device, "gate-1");
    let DeviceEvent::TagArrived(read) = report.event else {
        unreachable!()
    };
    assert_eq!(read.uid.to_string(), BOOK);
    assert_eq!(read.afi, Some(0x07));
    assert_eq!(read.memory.as_deref().map(<[u8]>::len), Some(8));

    sim.remove_tag(&read.uid);
    let gone = next_matching(&mut rx, |e| matches!(e, DeviceEvent::TagDeparted { .. })).await;
    assert!(matches!(gone.event, DeviceEvent::TagDeparted { uid } if uid == read.uid));
    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}

#[tokio::test]
async fn afi_and_eas_writes_over_the_serial_transport_reach_the_tag_and_read_back_on_the_bus() {
    let (_dir, link, sim) = setup();
    let _line = plug(&link, &sim);
    let config = config(&link);
    let uid = Uid::from_hex(BOOK).unwrap();

    // Write the on-loan AFI and set EAS through the serial transport, as a station would.
    let settings: FeigSettings = toml::Value::Table(config.settings.clone())
        .try_into()
        .unwrap();
    let port = transport::open(
        &settings.transport,
        rfidgw_feig::settings::LINE_DEFAULTS,
        || Err(transport::TransportError::NoSimulator),
    )
    .await
    .unwrap();
    let mut reader = FeigReader::new(
        port,
        settings.driver.address,
        settings.timing(),
        LineStats::new(),
    );
    reader.write_afi(&uid, 0xC2).await.unwrap().unwrap();
    reader.write_eas(&uid, true).await.unwrap().unwrap();
    assert_eq!(sim.tag(&uid).unwrap().afi, 0xC2);
    assert!(sim.tag(&uid).unwrap().eas);
    assert_eq!(reader.read_afi(&uid).await.unwrap(), Ok(0xC2));
    assert_eq!(reader.read_eas(&uid).await.unwrap(), Ok(true));
    drop(reader);

    // The daemon's device reads them back and puts them on the bus.
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task = start(&config, tx, &cancel);
    let DeviceEvent::TagArrived(read) = next_matching(&mut rx, arrival).await.event else {
        unreachable!()
    };
    assert_eq!(read.afi, Some(0xC2));
    assert_eq!(read.eas, Some(true));
    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}

#[tokio::test]
async fn unplugging_the_pty_ends_run_and_a_rebuilt_device_reconnects_without_a_restart() {
    let (_dir, link, sim) = setup();
    let reader = plug(&link, &sim);
    let config = config(&link);
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task = start(&config, tx.clone(), &cancel);
    next_matching(&mut rx, arrival).await;

    sim.unplug();
    reader.await.unwrap().unwrap();
    let ended = tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert!(
        matches!(
            ended,
            Err(DeviceError::Transport(_) | DeviceError::Timeout(_))
        ),
        "{ended:?}"
    );
    let down = next_matching(&mut rx, |e| matches!(e, DeviceEvent::Health { link, .. } if *link == rfidgw_driver::LinkState::Disconnected)).await;
    assert_eq!(down.device, "gate-1");

    // While unplugged, a restart fails cleanly (the supervisor backs off and retries).
    std::fs::remove_file(&link).unwrap();
    let refused = start(&config, tx.clone(), &cancel).await.unwrap();
    assert!(
        matches!(refused, Err(DeviceError::Transport(_))),
        "{refused:?}"
    );

    // Plugged back: a new /dev/pts/N behind the same by-id name; the next restart finds it.
    let _line = plug(&link, &sim);
    let task = start(&config, tx, &cancel);
    let DeviceEvent::TagArrived(read) = next_matching(&mut rx, arrival).await.event else {
        unreachable!()
    };
    assert_eq!(read.uid.to_string(), BOOK);
    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}

#[tokio::test]
async fn garbage_on_the_line_is_skipped_and_counted_in_health() {
    let (_dir, link, sim) = setup();
    let _line = plug(&link, &sim);
    let config = config(&link);
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task = start(&config, tx, &cancel);
    next_matching(&mut rx, arrival).await;
    sim.inject(Fault::Garbage(vec![0xDE, 0xAD, 0xBE, 0xEF, 0x00]));
    let report = next_matching(
        &mut rx,
        |e| matches!(e, DeviceEvent::Health { counters, .. } if counters.bytes_skipped > 0),
    )
    .await;
    let DeviceEvent::Health { counters, .. } = report.event else {
        unreachable!()
    };
    assert_eq!(counters.bytes_skipped, 5);
    assert!(counters.frames_ok > 0);
    cancel.cancel();
    task.await.unwrap().unwrap();
    sim.unplug();
}
