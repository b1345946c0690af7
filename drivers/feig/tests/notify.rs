//! Notification mode (`B0 01` MODE NTFC, PROTOCOLS.md §4.2): the frames, the driver against
//! the simulator holding the request, and the shared read loop in `mode = "notify"`, all
//! under paused time.

use std::time::Duration;

use rfidgw_driver::read_loop::{self, ReadLoopConfig, ReadMode};
use rfidgw_driver::{
    DeviceError, DeviceEvent, DeviceEventSink, DeviceReport, HfReader, LineStats, LinkState,
    ReaderRefusal, Uid,
};
use rfidgw_feig::driver::{MAX_NOTIFY_WAIT, Timing};
use rfidgw_feig::frame::{NTFC_TIME_UNIT, NtfcTime, RawFrame, Request};
use rfidgw_feig::{FeigReader, FeigSimulator, SimHandle, VirtualTag};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BOOK: &str = "E004010031269117";
const OTHER: &str = "E004010031269118";

fn uid(text: &str) -> Uid {
    Uid::from_hex(text).unwrap()
}

fn absent(text: &str) -> VirtualTag {
    VirtualTag {
        in_field: false,
        ..VirtualTag::new(uid(text))
    }
}

/// A reader whose usual reply timeout (300 ms) is far below the notification waits used.
fn reader_with(tags: Vec<VirtualTag>) -> (FeigReader<DuplexStream>, SimHandle) {
    let sim = FeigSimulator::new(tags);
    let handle = sim.handle();
    let timing = Timing {
        reply_timeout: Duration::from_millis(300),
        psst: Duration::from_millis(5),
        inter_char_gap: None,
    };
    let reader = FeigReader::new(sim.spawn_duplex(), 0xFF, timing, LineStats::new());
    (reader, handle)
}

#[test]
fn notification_inventories_set_ntfc_and_carry_ntfc_time_after_mode() {
    /// more, afi, NTFC_TIME, request body after CMD
    type Row = (bool, Option<u8>, Option<u8>, &'static [u8]);
    let rows: &[Row] = &[
        (false, None, None, &[0x01, 0x00]),
        (false, None, Some(20), &[0x01, 0x40, 20]),
        (false, Some(0x07), Some(20), &[0x01, 0x50, 20, 0x07]),
        (true, None, Some(1), &[0x01, 0xC0, 1]),
        (false, Some(0x07), None, &[0x01, 0x10, 0x07]),
    ];
    for &(more, afi, ntfc, body) in rows {
        let request = Request::Inventory {
            more,
            afi,
            notify: ntfc.map(NtfcTime),
        };
        let raw = request.to_raw(0xFF);
        assert_eq!(raw.body, body, "{request:?}");
        let parsed = RawFrame::parse(&raw.to_bytes()).unwrap();
        assert_eq!(Request::from_raw(&parsed).unwrap(), request);
    }
    // NTFC set but the frame ends before NTFC_TIME: an error naming the field.
    let truncated = RawFrame {
        advanced: false,
        address: 0xFF,
        command: 0xB0,
        body: vec![0x01, 0x40],
    };
    let err = Request::from_raw(&truncated).unwrap_err().to_string();
    assert!(err.contains("NTFC_TIME"), "{err}");
}

#[test]
fn ntfc_time_rounds_a_wait_up_to_whole_steps_and_caps_it() {
    let rows = [
        (0, 0),
        (1, 1),
        (100, 1),
        (101, 2),
        (2_000, 20),
        (25_500, 255),
        (60_000, 255),
    ];
    for (wait_ms, steps) in rows {
        let time = NtfcTime::at_least(Duration::from_millis(wait_ms));
        assert_eq!(time, NtfcTime(steps), "{wait_ms} ms");
        assert!(time.wait() >= Duration::from_millis(wait_ms).min(MAX_NOTIFY_WAIT));
    }
    assert_eq!(NtfcTime(20).wait(), NTFC_TIME_UNIT * 20);
    assert_eq!(NtfcTime::MAX.wait(), MAX_NOTIFY_WAIT);
}

#[tokio::test(start_paused = true)]
async fn a_held_notification_inventory_answers_when_a_tag_enters_the_field() {
    let (mut reader, sim) = reader_with(vec![absent(BOOK)]);
    assert_eq!(reader.max_notify_wait(), Some(MAX_NOTIFY_WAIT));
    let mover = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        mover.set_in_field(&uid(BOOK), true);
    });
    let wait = Duration::from_secs(2);
    let started = Instant::now();
    let seen = reader.notify_inventory(None, wait).await.unwrap().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uid, uid(BOOK));
    assert!(
        started.elapsed() < wait,
        "answered on arrival, not after the wait"
    );
    assert_eq!(sim.requests(), 1, "one held request, no polling");
}

#[tokio::test(start_paused = true)]
async fn a_held_inventory_with_an_afi_ignores_tags_of_another_afi() {
    let on_loan = VirtualTag {
        afi: 0xC2,
        ..absent(OTHER)
    };
    let (mut reader, sim) = reader_with(vec![absent(BOOK), on_loan]);
    let mover = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        mover.set_in_field(&uid(OTHER), true);
        tokio::time::sleep(Duration::from_millis(400)).await;
        mover.set_in_field(&uid(BOOK), true);
    });
    let seen = reader
        .notify_inventory(Some(0x07), Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    let uids: Vec<String> = seen.iter().map(|e| e.uid.to_string()).collect();
    assert_eq!(uids, [BOOK], "the secured book, not the loaned one");
}

#[tokio::test(start_paused = true)]
async fn an_empty_field_answers_no_transponder_after_the_wait_not_a_timeout() {
    let (mut reader, sim) = reader_with(vec![absent(BOOK)]);
    let wait = Duration::from_millis(1_500);
    let started = Instant::now();
    let answer = reader.notify_inventory(None, wait).await.unwrap();
    assert_eq!(answer, Err(ReaderRefusal::NoTransponder));
    assert!(started.elapsed() >= wait, "the reader held the request");
    assert_eq!(
        reader.line_counters().timeouts,
        0,
        "the reply timeout covers the wait"
    );
    assert_eq!(sim.requests(), 1);
    // With a tag already there, the answer comes at once, like a plain inventory.
    sim.set_in_field(&uid(BOOK), true);
    let started = Instant::now();
    assert_eq!(
        reader
            .notify_inventory(None, wait)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    assert!(started.elapsed() < wait);
}

fn notify_config(wait_ms: u64) -> ReadLoopConfig {
    ReadLoopConfig {
        mode: ReadMode::Notify,
        notify_wait_ms: wait_ms,
        depart_after_polls: 2,
        memory_blocks: 2,
        read_afi: true,
        ..ReadLoopConfig::default()
    }
}

struct Loop {
    rx: mpsc::Receiver<DeviceReport>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), DeviceError>>,
}

fn start_loop(
    mut reader: FeigReader<DuplexStream>,
    config: ReadLoopConfig,
    commands: Option<rfidgw_driver::CommandLease>,
) -> Loop {
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let sink = DeviceEventSink::new("gate-1", tx);
        let mut commands = commands;
        read_loop::run(&mut reader, &config, &sink, &stop, commands.as_deref_mut()).await
    });
    Loop { rx, cancel, task }
}

impl Loop {
    /// The next tag event and when it came, skipping health reports. Gives up after a
    /// minute of (paused) time, so a loop that never reports fails instead of spinning.
    async fn next_tag_event(&mut self) -> (DeviceEvent, Instant) {
        let next = async {
            loop {
                let report = self.rx.recv().await.expect("the loop stopped");
                if !matches!(report.event, DeviceEvent::Health { .. }) {
                    return (report.event, Instant::now());
                }
            }
        };
        tokio::time::timeout(Duration::from_mins(1), next)
            .await
            .expect("no tag event within a minute")
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_notify_loop_reports_a_tag_when_it_enters_during_a_held_request_and_its_departure_after_the_wait()
 {
    let (reader, sim) = reader_with(vec![absent(BOOK)]);
    let mut run = start_loop(reader, notify_config(2_000), None);
    let start = Instant::now();
    let mover = sim.clone();
    tokio::spawn(async move {
        // Mid-way through the second held request (0–2 s, 2–4 s).
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        mover.set_in_field(&uid(BOOK), true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        mover.set_in_field(&uid(BOOK), false);
    });
    let (event, at) = run.next_tag_event().await;
    let DeviceEvent::TagArrived(read) = event else {
        panic!("expected an arrival, got {event:?}");
    };
    assert_eq!(read.uid, uid(BOOK));
    assert_eq!(read.afi, Some(0x07));
    assert_eq!(read.memory.as_ref().map(Vec::len), Some(8));
    assert!(
        at - start < Duration::from_secs(3),
        "reported on arrival (2.5 s), not when the held request's wait ended (4 s)"
    );
    let (event, at) = run.next_tag_event().await;
    assert_eq!(event, DeviceEvent::TagDeparted { uid: uid(BOOK) });
    // It left at 3.5 s; the field is empty, so the held request answers 01 after the wait
    // and everything departs at once, without waiting for more empty answers.
    assert!(
        at - start < Duration::from_millis(3_500 + 2 * 2_000),
        "{:?}",
        at - start
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_another_tag_present_a_missing_tag_departs_after_the_missed_answers() {
    let (reader, sim) = reader_with(vec![
        VirtualTag::new(uid(BOOK)),
        VirtualTag::new(uid(OTHER)),
    ]);
    let mut run = start_loop(reader, notify_config(5_000), None);
    let mut arrived = Vec::new();
    for _ in 0..2 {
        let (DeviceEvent::TagArrived(read), _) = run.next_tag_event().await else {
            panic!("expected two arrivals");
        };
        arrived.push(read.uid.to_string());
    }
    arrived.sort();
    assert_eq!(arrived, [BOOK, OTHER]);
    let left = Instant::now();
    let before = sim.requests();
    sim.set_in_field(&uid(OTHER), false);
    let (event, at) = run.next_tag_event().await;
    assert_eq!(event, DeviceEvent::TagDeparted { uid: uid(OTHER) });
    // BOOK keeps the reader answering at once, so OTHER's two missed answers come long
    // before one notification wait.
    assert!(at - left < Duration::from_secs(5), "{:?}", at - left);
    assert!(
        sim.requests() - before >= 2,
        "departed after the missed answers"
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_empty_field_in_notify_mode_costs_one_inventory_per_wait_not_per_poll() {
    let (reader, sim) = reader_with(vec![absent(BOOK)]);
    let mut run = start_loop(reader, notify_config(2_000), None);
    // Connected on the first answer, which comes after one full wait.
    loop {
        let report = run.rx.recv().await.unwrap();
        if let DeviceEvent::Health {
            link: LinkState::Connected,
            counters,
        } = report.event
        {
            assert!(counters.last_frame.is_some(), "the answer was a frame");
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    // 12 s with 2 s waits: about 6 requests; polling every 200 ms would be 60.
    let requests = sim.requests();
    assert!((5..=8).contains(&requests), "{requests} requests");
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn commands_are_served_between_notification_inventories() {
    let (reader, sim) = reader_with(vec![VirtualTag::new(uid(BOOK))]);
    let mailbox = rfidgw_driver::CommandMailbox::new("gate-1");
    mailbox.set_running(true);
    let handle = mailbox.handle();
    let mut run = start_loop(reader, notify_config(2_000), Some(mailbox.lend().await));
    let (DeviceEvent::TagArrived(_), _) = run.next_tag_event().await else {
        panic!("expected the arrival");
    };
    let within = Duration::from_secs(5);
    let written = handle.write_afi(&uid(BOOK), 0xC2, within).await;
    assert!(
        matches!(&written, Ok(Ok(rfidgw_driver::CommandAnswer::Written(r))) if r.confirmed()),
        "{written:?}"
    );
    assert_eq!(sim.tag(&uid(BOOK)).unwrap().afi, 0xC2);
    assert_eq!(handle.read_afi(&uid(BOOK), within).await.unwrap(), Ok(0xC2));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_notify_wait_beyond_what_ntfc_time_can_say_is_a_configuration_error() {
    let (mut reader, sim) = reader_with(vec![VirtualTag::new(uid(BOOK))]);
    let (tx, _rx) = mpsc::channel(8);
    let sink = DeviceEventSink::new("gate-1", tx);
    for (wait_ms, key) in [(30_000, "notify_wait_ms"), (50, "notify_wait_ms")] {
        let result = read_loop::run(
            &mut reader,
            &notify_config(wait_ms),
            &sink,
            &CancellationToken::new(),
            None,
        )
        .await;
        let Err(DeviceError::Config(message)) = result else {
            panic!("{wait_ms} ms: expected a configuration error, got {result:?}");
        };
        assert!(
            message.starts_with(&format!("poll.{key}: {wait_ms} is not")),
            "{message}"
        );
    }
    assert_eq!(sim.requests(), 0, "refused before any request");
}

#[tokio::test(start_paused = true)]
async fn a_gate_configured_for_notify_mode_reports_a_book_carried_through() {
    let settings: rfidgw_feig::FeigSettings = toml::from_str(
        r#"
        transport = { kind = "simulator" }
        [poll]
        mode = "notify"
        notify_wait_ms = 3000
        inventory_afi = "07"
        memory_blocks = 2
        [[simulator.tags]]
        uid = "E004010031269117"
        afi = "07"
        memory = "11010000 31323334"
        at_ms = 4500
        stay_ms = 800
        "#,
    )
    .unwrap();
    settings.validate().unwrap();
    let device = rfidgw_feig::FeigDevice::new(settings).unwrap();
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(rfidgw_driver::Device::run(
        Box::new(device),
        DeviceEventSink::new("gate-1", tx),
        cancel.clone(),
    ));
    let mut run = Loop { rx, cancel, task };
    let start = Instant::now();
    let (event, at) = run.next_tag_event().await;
    let DeviceEvent::TagArrived(read) = event else {
        panic!("expected the book, got {event:?}");
    };
    assert_eq!(read.uid, uid(BOOK));
    assert_eq!(read.memory.as_ref().map(Vec::len), Some(8));
    assert!(
        at - start < Duration::from_secs(6),
        "held request woken at 4.5 s"
    );
    let (event, _) = run.next_tag_event().await;
    assert_eq!(event, DeviceEvent::TagDeparted { uid: uid(BOOK) });
    run.stop().await;
}
