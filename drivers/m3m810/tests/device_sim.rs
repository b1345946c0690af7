//! The `3m810` device with `transport.kind = "simulator"` (the demo's setup): the scripted
//! virtual pad delivers arrivals with AFI and memory, then departures, under paused time.

use rfidgw_3m810::{M3m810Device, M3m810Settings};
use rfidgw_driver::{Device, DeviceEvent, DeviceEventSink, DeviceReport, TagRead, Uid};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SETTINGS: &str = r#"
[transport]
kind = "simulator"
[poll]
poll_interval_ms = 100
memory_blocks = 2
read_eas = true
[simulator]
round_ms = 0
[[simulator.tags]]
uid = "E004010031269117"
afi = "07"
eas = true
memory = "11010203 04050607"
at_ms = 250
stay_ms = 1000
[[simulator.tags]]
uid = "E004010031269118"
afi = "C2"
at_ms = 500
"#;

#[tokio::test(start_paused = true)]
async fn the_scripted_virtual_pad_delivers_arrivals_and_departures_in_script_order() {
    let settings: M3m810Settings = toml::from_str(SETTINGS).unwrap();
    let device = Box::new(M3m810Device::new(settings).unwrap());
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(device.run(DeviceEventSink::new("demo-pad", tx), cancel.clone()));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match rx.recv().await.unwrap().event {
            DeviceEvent::TagArrived(read) => {
                if read.uid == Uid::from_hex("E004010031269117").unwrap() {
                    assert_eq!(read.afi, Some(0x07));
                    assert_eq!(read.eas, Some(true));
                    assert_eq!(
                        read.memory.as_deref(),
                        Some(&[0x11, 1, 2, 3, 4, 5, 6, 7][..])
                    );
                } else {
                    assert_eq!(read.afi, Some(0xC2));
                    assert_eq!(read.eas, Some(false));
                }
                seen.push(format!("+{}", read.uid));
            }
            DeviceEvent::TagDeparted { uid } => seen.push(format!("-{uid}")),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "+E004010031269117",
            "+E004010031269118",
            "-E004010031269117"
        ]
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_pad_served_over_tcp_on_loopback_delivers_its_tag() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pad = rfidgw_3m810::SimPad::new();
    pad.place(rfidgw_3m810::VirtualTag {
        afi: 0x07,
        ..rfidgw_3m810::VirtualTag::new([0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17])
    });
    let sim = pad.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = sim.serve(stream).await;
    });
    let settings: M3m810Settings = toml::from_str(&format!(
        "[transport]\nkind = \"tcp\"\naddr = \"{addr}\"\n[poll]\npoll_interval_ms = 10"
    ))
    .unwrap();
    let device = Box::new(M3m810Device::new(settings).unwrap());
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(device.run(DeviceEventSink::new("tcp-pad", tx), cancel.clone()));
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let DeviceEvent::TagArrived(read) = rx.recv().await.unwrap().event {
                return read;
            }
        }
    })
    .await
    .expect("an arrival within 10 s");
    assert_eq!(read.uid, Uid::from_hex("E004010031269117").unwrap());
    assert_eq!(read.afi, Some(0x07));
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_device_handle_writes_afi_and_eas_on_the_simulated_pad_with_retries() {
    let settings: M3m810Settings =
        toml::from_str("[transport]\nkind = \"simulator\"\n[poll]\npoll_interval_ms = 50").unwrap();
    let mut device = M3m810Device::new(settings).unwrap();
    let mailbox = rfidgw_driver::CommandMailbox::new("pad");
    assert!(
        mailbox.attach(&mut device).await,
        "the device takes commands"
    );
    let handle = mailbox.handle();
    let pad = device.simulator();
    let uid = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];
    pad.place(rfidgw_3m810::VirtualTag::new(uid));
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(device).run(DeviceEventSink::new("pad", tx), cancel.clone()));
    while !matches!(rx.recv().await.unwrap().event, DeviceEvent::TagArrived(_)) {}

    pad.fail_next_writes(3);
    let uid = Uid::new(uid);
    assert!(
        matches!(handle.write_afi(&uid, 0xDA, std::time::Duration::from_secs(5)).await, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed())
    );
    assert!(
        matches!(handle.write_eas(&uid, true, std::time::Duration::from_secs(5)).await, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed())
    );
    let tag = pad
        .tag(&[0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17])
        .unwrap();
    assert_eq!((tag.afi, tag.eas), (0xDA, true));
    assert_eq!(pad.writes_refused(), 3);
    assert_eq!(
        handle
            .read_afi(&uid, std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        Ok(0xDA)
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_does_not_answer_the_version_fails_the_run_with_a_timeout() {
    let settings: M3m810Settings = toml::from_str("[transport]\nkind = \"simulator\"").unwrap();
    let device = M3m810Device::new(settings).unwrap();
    device.simulator().leave_unanswered(1);
    let (tx, mut rx) = mpsc::channel(64);
    let result = Box::new(device)
        .run(DeviceEventSink::new("pad", tx), CancellationToken::new())
        .await;
    assert!(
        matches!(result, Err(rfidgw_driver::DeviceError::Timeout(_))),
        "{result:?}"
    );
    let report = rx.recv().await.unwrap();
    let DeviceEvent::Health { link, counters } = report.event else {
        panic!("{report:?}")
    };
    assert_eq!(link, rfidgw_driver::LinkState::Disconnected);
    assert_eq!(counters.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pad_whose_check_eas_reply_has_no_eas_byte_keeps_running_and_reports_secured_tags() {
    let settings: M3m810Settings = toml::from_str(
        "[transport]\nkind = \"simulator\"\n[poll]\npoll_interval_ms = 50\nread_eas = true",
    )
    .unwrap();
    let device = M3m810Device::new(settings).unwrap();
    let pad = device.simulator();
    pad.set_check_eas_form(rfidgw_3m810::CheckEasForm::UidOnly);
    let first = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];
    let second = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x18];
    pad.place(rfidgw_3m810::VirtualTag {
        eas: true,
        ..rfidgw_3m810::VirtualTag::new(first)
    });
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(device).run(DeviceEventSink::new("pad", tx), cancel.clone()));
    let read = next_arrival(&mut rx).await;
    assert_eq!((read.uid, read.eas), (Uid::new(first), Some(true)));
    // Many polls later the device is still running and reads a newcomer, secured or not.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !task.is_finished(),
        "the device must not fail on the UID-only form"
    );
    pad.place(rfidgw_3m810::VirtualTag::new(second));
    let read = next_arrival(&mut rx).await;
    assert_eq!((read.uid, read.eas), (Uid::new(second), Some(false)));
    cancel.cancel();
    task.await.unwrap().unwrap();
}

async fn next_arrival(rx: &mut mpsc::Receiver<DeviceReport>) -> TagRead {
    loop {
        if let DeviceEvent::TagArrived(read) = rx.recv().await.unwrap().event {
            return read;
        }
    }
}
