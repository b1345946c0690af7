//! The 810 has no notification inventory: the shared read loop refuses `mode = "notify"`
//! over it with a configuration error instead of hammering the pad with inventories.

use rfidgw_3m810::{DriverConfig, M3m810Reader, SimPad, VirtualTag};
use rfidgw_driver::read_loop::{self, ReadLoopConfig, ReadMode};
use rfidgw_driver::{DeviceError, DeviceEvent, DeviceEventSink, HfReader};
use tokio_util::sync::CancellationToken;

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

#[tokio::test(start_paused = true)]
async fn notify_mode_over_a_3m_pad_is_a_configuration_error_before_any_inventory() {
    let pad = SimPad::new();
    pad.place(VirtualTag::new(UID));
    let mut reader = M3m810Reader::new(pad.spawn_duplex(), DriverConfig::default());
    assert_eq!(reader.max_notify_wait(), None);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let sink = DeviceEventSink::new("pad", tx);
    let config = ReadLoopConfig {
        mode: ReadMode::Notify,
        ..ReadLoopConfig::default()
    };
    let result = read_loop::run(&mut reader, &config, &sink, &CancellationToken::new(), None).await;
    let Err(DeviceError::Config(message)) = result else {
        panic!("expected a configuration error, got {result:?}");
    };
    assert!(
        message.starts_with("poll.mode: \"notify\" needs"),
        "{message}"
    );
    drop(sink);
    // Nothing was reported: the loop never started.
    assert!(rx.recv().await.is_none());
    assert_eq!(
        reader.line_counters().frames_ok,
        0,
        "no frame was exchanged"
    );
}

#[tokio::test(start_paused = true)]
async fn poll_mode_over_a_3m_pad_reports_when_the_last_frame_came() {
    let pad = SimPad::new();
    pad.place(VirtualTag::new(UID));
    let mut reader = M3m810Reader::new(pad.spawn_duplex(), DriverConfig::default());
    assert_eq!(reader.line_counters().last_frame, None);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let sink = DeviceEventSink::new("pad", tx);
    let cancel = CancellationToken::new();
    let config = ReadLoopConfig {
        health_interval_ms: 100,
        ..ReadLoopConfig::default()
    };
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let result = read_loop::run(&mut reader, &config, &sink, &stop, None).await;
        (result, reader)
    });
    loop {
        let report = rx.recv().await.expect("the loop reports");
        if let DeviceEvent::Health { counters, .. } = report.event
            && counters.frames_ok > 0
        {
            let heard = counters
                .last_frame
                .expect("a frame came, so its time is known");
            assert!(heard <= std::time::SystemTime::now());
            break;
        }
    }
    cancel.cancel();
    let (result, _reader) = task.await.unwrap();
    result.unwrap();
}
