//! The whole device (settings → transport → driver → shared read loop) against its own
//! simulator, under paused time: arrivals once per presence with memory and AFI,
//! departures after the missed polls, health with line counters, and tag commands.

use std::time::Duration;

use rfidgw_driver::{Device, DeviceEvent, DeviceEventSink, DeviceReport, LinkState, Uid};
use rfidgw_feig::sim::Fault;
use rfidgw_feig::{FeigDevice, FeigSettings};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BOOK: &str = "E004010031269117";

fn settings() -> FeigSettings {
    toml::from_str(
        r#"
        transport = { kind = "simulator" }
        [poll]
        poll_interval_ms = 100
        depart_after_polls = 2
        memory_blocks = 2
        read_eas = true
        health_interval_ms = 1000
        [[simulator.tags]]
        uid = "E004010031269117"
        afi = "07"
        memory = "11010000 31323334"
        "#,
    )
    .unwrap()
}

async fn next_tag_event(rx: &mut mpsc::Receiver<DeviceReport>) -> DeviceEvent {
    loop {
        let report = rx.recv().await.expect("device stopped");
        if !matches!(report.event, DeviceEvent::Health { .. }) {
            return report.event;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_tag_arrives_once_with_memory_and_afi_and_departs_after_the_missed_polls() {
    let mut device = FeigDevice::new(settings()).unwrap();
    let sim = device.simulator();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("gate-1", tx), cancel.clone()));

    let first = rx.recv().await.unwrap();
    assert!(matches!(
        first.event,
        DeviceEvent::Health {
            link: LinkState::Connecting,
            ..
        }
    ));
    let DeviceEvent::TagArrived(read) = next_tag_event(&mut rx).await else {
        panic!("expected an arrival");
    };
    assert_eq!(read.uid.to_string(), BOOK);
    assert_eq!(read.afi, Some(0x07));
    assert_eq!(read.dsfid, Some(0x00));
    assert_eq!(read.eas, Some(false));
    // As read: blocks byte-reversed (ISO-Host MSB first).
    assert_eq!(
        read.memory.as_deref(),
        Some(&[0x00, 0x00, 0x01, 0x11, 0x34, 0x33, 0x32, 0x31][..])
    );

    // Many polls later the tag is still there and nothing else was reported about it.
    let requests = sim.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sim.requests() >= requests + 9, "kept polling");
    while let Ok(report) = rx.try_recv() {
        assert!(
            matches!(report.event, DeviceEvent::Health { .. }),
            "{report:?}"
        );
    }

    sim.remove_tag(&Uid::from_hex(BOOK).unwrap());
    let DeviceEvent::TagDeparted { uid } = next_tag_event(&mut rx).await else {
        panic!("expected a departure");
    };
    assert_eq!(uid.to_string(), BOOK);

    sim.set_in_field(&uid, true);
    assert!(
        matches!(next_tag_event(&mut rx).await, DeviceEvent::TagArrived(_)),
        "a new presence"
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn garbage_on_the_line_shows_in_the_health_counters() {
    let mut device = FeigDevice::new(settings()).unwrap();
    let sim = device.simulator();
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("gate-1", tx), cancel.clone()));
    assert!(matches!(
        next_tag_event(&mut rx).await,
        DeviceEvent::TagArrived(_)
    ));
    sim.inject(Fault::Garbage(vec![0x13, 0x00, 0xFF, 0x42, 0x99]));
    loop {
        let report = rx.recv().await.unwrap();
        if let DeviceEvent::Health { link, counters } = report.event
            && counters.bytes_skipped > 0
        {
            assert_eq!(link, LinkState::Connected);
            assert_eq!(counters.bytes_skipped, 5);
            assert!(counters.frames_ok > 10);
            break;
        }
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn afi_and_eas_commands_run_between_polls_and_read_back() {
    let mut device = FeigDevice::new(settings()).unwrap();
    let sim = device.simulator();
    let mailbox = rfidgw_driver::CommandMailbox::new("gate-1");
    assert!(
        mailbox.attach(&mut device).await,
        "the device takes commands"
    );
    let handle = mailbox.handle();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("pad-1", tx), cancel.clone()));
    assert!(matches!(
        next_tag_event(&mut rx).await,
        DeviceEvent::TagArrived(_)
    ));

    let book = Uid::from_hex(BOOK).unwrap();
    assert!(
        matches!(handle.write_afi(&book, 0xC2, std::time::Duration::from_secs(5)).await, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed())
    );
    assert_eq!(sim.tag(&book).unwrap().afi, 0xC2);
    assert_eq!(
        handle
            .read_afi(&book, std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        Ok(0xC2)
    );
    assert!(
        matches!(handle.write_eas(&book, true, std::time::Duration::from_secs(5)).await, Ok(Ok(rfidgw_driver::CommandAnswer::Written(report))) if report.confirmed())
    );
    assert!(sim.tag(&book).unwrap().eas);
    assert_eq!(
        handle
            .read_eas(&book, std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        Ok(true)
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
    assert!(
        handle
            .read_afi(&book, std::time::Duration::from_secs(5))
            .await
            .is_err(),
        "no reader after the task ended"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unplugged_reader_ends_run_with_an_error_after_a_disconnected_health_event() {
    let mut device = FeigDevice::new(settings()).unwrap();
    let sim = device.simulator();
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(
        Box::new(device).run(DeviceEventSink::new("gate-1", tx), CancellationToken::new()),
    );
    assert!(matches!(
        next_tag_event(&mut rx).await,
        DeviceEvent::TagArrived(_)
    ));
    sim.unplug();
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(err, rfidgw_driver::DeviceError::Transport(_)),
        "{err}"
    );
    let mut last = None;
    while let Ok(report) = rx.try_recv() {
        last = Some(report.event);
    }
    assert!(
        matches!(
            last,
            Some(DeviceEvent::Health {
                link: LinkState::Disconnected,
                ..
            })
        ),
        "{last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn light_barrier_changes_are_reported_as_input_events() {
    let mut settings = settings();
    settings.driver.poll_inputs = true;
    let mut device = FeigDevice::new(settings).unwrap();
    let sim = device.simulator();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("gate-1", tx), cancel.clone()));
    assert!(matches!(
        next_tag_event(&mut rx).await,
        DeviceEvent::TagArrived(_)
    ));
    sim.set_inputs(0b010);
    let DeviceEvent::Inputs(inputs) = next_tag_event(&mut rx).await else {
        panic!("expected an input change");
    };
    assert_eq!((inputs.levels, inputs.changed), (0b010, 0b010));
    // No change, no event: the next events are health only until the barrier clears.
    sim.set_inputs(0b000);
    let DeviceEvent::Inputs(cleared) = next_tag_event(&mut rx).await else {
        panic!("expected the barrier to clear");
    };
    assert_eq!((cleared.levels, cleared.changed), (0b000, 0b010));
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_scripted_simulator_tag_enters_and_leaves_on_time() {
    let settings: FeigSettings = toml::from_str(
        r#"
        transport = { kind = "simulator" }
        [poll]
        poll_interval_ms = 50
        depart_after_polls = 1
        memory_blocks = 0
        read_afi = false
        [simulator]
        round_ms = 10000
        [[simulator.tags]]
        uid = "E004010031269117"
        at_ms = 500
        stay_ms = 1000
        "#,
    )
    .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(
        Box::new(FeigDevice::new(settings).unwrap())
            .run(DeviceEventSink::new("demo", tx), cancel.clone()),
    );
    assert!(matches!(
        next_tag_event(&mut rx).await,
        DeviceEvent::TagArrived(_)
    ));
    let arrived = start.elapsed();
    assert!(matches!(
        next_tag_event(&mut rx).await,
        DeviceEvent::TagDeparted { .. }
    ));
    let departed = start.elapsed();
    assert!(
        arrived >= Duration::from_millis(500) && arrived < Duration::from_millis(600),
        "{arrived:?}"
    );
    assert!(
        departed >= Duration::from_millis(1500) && departed < Duration::from_millis(1600),
        "{departed:?}"
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
}
