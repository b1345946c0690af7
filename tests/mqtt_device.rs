//! MQTT devices through a real broker (issue 10): the MQTT device round trip through
//! Mosquitto on 127.0.0.1:1883.
//!
//! The daemon (`Daemon::start` from a config) runs an exit gate whose reader is an MQTT gate
//! controller, and an MQTT sorter; the other end of each is the simulated MQTT device on the
//! same broker. A secured tag published by the gate makes the daemon alarm and send the
//! output command, which the device receives and answers; a divert reaches the sorter and
//! its bin-full report reaches the daemon. The driver on its own: commands to a device
//! that stays silent expire, refusals come back as the device's "no", malformed payloads
//! are counted, and the device's last will ends its tags.
//!
//! Without a broker on 127.0.0.1:1883 the tests print a SKIP line and pass, unless
//! `RFIDGW_REQUIRE_INTEROP=1` is set (as in `.ci/run`): then they fail. Each test uses its
//! own random topic prefix, as the broker is shared.

mod common;

use std::time::Duration;

use common::eventually;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::registry::DeviceState;
use rfidgw_driver::Device;
use rfidgw_driver::{
    CommandAnswer, CommandError, CommandMailbox, DeviceCommand, DeviceEvent, DeviceEventSink,
    LinkState, OutputCommand, ReaderRefusal, Signal, TagRead, Uid,
};
use rfidgw_mqtt::link::BrokerAddress;
use rfidgw_mqtt::protocol::RefusalCode;
use rfidgw_mqtt::settings::SimulatorSettings;
use rfidgw_mqtt::{
    Behaviour, Channel, MqttDevice, MqttSettings, Role, SimHandle, SimulatedDevice, Topics,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BROKER: &str = "127.0.0.1:1883";

/// ISO 28560-3, item 11223344 of DE/705 (ours in the config below).
const OURS: &str = "11010131313232333334340000000000000000513E4445373035000000000000";

/// Whether Mosquitto answers; prints SKIP (or fails under `RFIDGW_REQUIRE_INTEROP=1`).
async fn broker_up() -> bool {
    let connect = tokio::net::TcpStream::connect(BROKER);
    let reason = match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => return true,
        Ok(Err(e)) => format!("nothing listens on {BROKER} ({e})"),
        Err(_) => format!("{BROKER} did not answer within 2 s"),
    };
    assert!(
        std::env::var("RFIDGW_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "the Mosquitto round trip is required (RFIDGW_REQUIRE_INTEROP=1) but {reason}"
    );
    println!(
        "SKIP MQTT device round trip: no MQTT broker: {reason} (apt-get install mosquitto; it listens on {BROKER})"
    );
    false
}

/// A topic prefix of its own for this test run: the broker is shared.
fn prefix(name: &str) -> String {
    format!("rfidgw-test/{:016x}/{name}", rand::random::<u64>())
}

fn address(client_id: &str) -> BrokerAddress {
    BrokerAddress {
        host: "127.0.0.1".into(),
        port: 1883,
        client_id: format!("{client_id}-{:08x}", rand::random::<u32>()),
        credentials: None,
        keepalive: Duration::from_secs(5),
        tls: None,
    }
}

/// Starts the simulated device under `prefix` and waits until it is on the broker.
async fn simulated(
    role: Role,
    prefix: &str,
    settings: SimulatorSettings,
    stop: &CancellationToken,
) -> SimHandle {
    let device = SimulatedDevice::new(role, Topics::new(prefix).unwrap(), address("sim"), settings);
    let handle = device.handle();
    tokio::spawn(device.run(stop.clone()));
    eventually("the simulated device on the broker", async || {
        handle.is_connected().then_some(())
    })
    .await;
    handle
}

/// Removes what the test left retained on the shared broker.
async fn clear_retained(prefix: &str) {
    let topics = Topics::new(prefix).unwrap();
    if let Err(error) = rfidgw_mqtt::sim::clear_retained(&address("cleanup"), &topics).await {
        println!("retained messages under {prefix} left on the broker: {error}");
    }
}

fn config(dir: &std::path::Path, gate_prefix: &str, sorter_prefix: &str) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        [api]
        enabled = false
        [tags.owners]
        libraries = [{{ country = "DE", library = "705" }}]

        [[devices]]
        id = "gate-mqtt"
        driver = "mqtt"
        [devices.settings]
        role = "gate"
        topic_prefix = "{gate_prefix}"
        reply_timeout_ms = 1000
        health_interval_ms = 200

        [[devices]]
        id = "sorter-mqtt"
        driver = "mqtt"
        [devices.settings]
        role = "sorter"
        topic_prefix = "{sorter_prefix}"
        health_interval_ms = 200

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-mqtt"]
        [stations.gate]
        leave_window_ms = 300
        enter_window_ms = 60000
        [[stations.gate.alarm.outputs]]
        device = "gate-mqtt"
        beeper = "flash"
        red = "on"
        green = "off"
        signal_ms = 2000
        relay_ms = 1500
        "#,
        data = dir.display(),
    );
    Config::parse("mqtt-device-test.toml", &text, std::iter::empty()).unwrap()
}

async fn journal(daemon: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    let rows = daemon.store().recent(200, Some(kind)).await.unwrap();
    rows.into_iter().rev().map(|r| r.payload).collect()
}

async fn connected(daemon: &Daemon, device: &str) {
    eventually(&format!("{device} connected"), async || {
        daemon
            .registry()
            .snapshot()
            .into_iter()
            .find(|d| d.id == device && d.state == DeviceState::Connected)
    })
    .await;
}

/// Tag memory of another of our items: `OURS` with its item id replaced.
fn ours(item: &str) -> Vec<u8> {
    use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
    let site = SiteConfig::default();
    let memory = rfidgw_tag::parse_hex(OURS).unwrap();
    let Some(TagData::Iso28560_3(mut ddm)) =
        rfidgw_tag::decode(&memory, &TagHints::default(), &site).data
    else {
        panic!("OURS is ISO 28560-3");
    };
    item.clone_into(&mut ddm.basic.primary_item_id);
    rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, &site).unwrap()
}

/// A tag as the gate controller reports it: item `item` of ours, with `afi`.
fn tag(uid: &str, item: &str, afi: u8) -> TagRead {
    TagRead {
        afi: Some(afi),
        dsfid: Some(0x00),
        memory: Some(ours(item)),
        ..TagRead::uid_only(Uid::from_hex(uid).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_tag_from_an_mqtt_gate_alarms_and_the_gate_takes_the_output_command() {
    if !broker_up().await {
        return;
    }
    let stop = CancellationToken::new();
    let gate_prefix = prefix("gate");
    let sorter_prefix = prefix("sorter");
    let gate = simulated(
        Role::Gate,
        &gate_prefix,
        SimulatorSettings::default(),
        &stop,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), &gate_prefix, &sorter_prefix))
        .await
        .unwrap();
    connected(&daemon, "gate-mqtt").await;

    // A borrowed item (AFI C2) passes; no command goes to the gate.
    gate.put_tag(tag("E004010000000002", "55667788", 0xC2));
    let decided = eventually("the borrowed read journaled", async || {
        journal(&daemon, "tag_arrived")
            .await
            .into_iter()
            .find(|p| p["uid"] == "E004010000000002")
    })
    .await;
    assert_eq!(decided["decision"]["verdict"], "pass", "{decided}");
    assert!(gate.outputs().is_empty(), "{:?}", gate.commands());

    // A secured item alarms: the gate gets the output command and answers it.
    gate.put_tag(tag("E004010000000001", "11223344", 0x07));
    let outputs = eventually("the output command at the gate", async || {
        let outputs = gate.outputs();
        (!outputs.is_empty()).then_some(outputs)
    })
    .await;
    assert_eq!(
        outputs,
        [OutputCommand {
            beeper: Signal::Flash,
            red: Signal::On,
            green: Signal::Off,
            signal_for: Some(Duration::from_secs(2)),
            relay_for: Some(Duration::from_millis(1500)),
        }]
    );
    let command = &gate.commands()[0];
    assert!(
        command.deadline > Duration::ZERO && command.deadline <= Duration::from_secs(1),
        "{command:?}"
    );
    let alarm = eventually("the alarm row", async || {
        journal(&daemon, "gate_alarm").await.into_iter().next()
    })
    .await;
    assert_eq!(alarm["reason"], "secured");
    assert_eq!(alarm["item"], "11223344");
    assert_eq!(alarm["device"], "gate-mqtt");
    assert_eq!(alarm["station"], "main-exit");
    let read = eventually("the secured read journaled", async || {
        journal(&daemon, "tag_arrived")
            .await
            .into_iter()
            .find(|p| p["uid"] == "E004010000000001")
    })
    .await;
    assert_eq!(read["decision"]["verdict"], "alarm", "{read}");
    assert_eq!(read["decision"]["acted"], true, "{read}");
    // The device answered within the deadline: no failed output is journaled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(journal(&daemon, "alarm_output_failed").await.is_empty());
    assert_eq!(daemon.stations().gates()["main-exit"].alarms, 1);

    // The tag leaves: the daemon hears it.
    gate.remove_tag(&Uid::from_hex("E004010000000001").unwrap());
    eventually("the departure", async || {
        journal(&daemon, "tag_departed")
            .await
            .into_iter()
            .find(|p| p["uid"] == "E004010000000001")
    })
    .await;
    daemon.shutdown("test").await.unwrap();
    stop.cancel();
    clear_retained(&gate_prefix).await;
    clear_retained(&sorter_prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_sorter_takes_a_divert_and_its_full_bin_reaches_the_daemon() {
    if !broker_up().await {
        return;
    }
    let stop = CancellationToken::new();
    let gate_prefix = prefix("gate");
    let sorter_prefix = prefix("sorter");
    let sorter = simulated(
        Role::Sorter,
        &sorter_prefix,
        SimulatorSettings {
            bins: 3,
            capacity: 1,
            ..SimulatorSettings::default()
        },
        &stop,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), &gate_prefix, &sorter_prefix))
        .await
        .unwrap();
    connected(&daemon, "sorter-mqtt").await;
    let handle = daemon.handles()["sorter-mqtt"].clone();
    let within = Duration::from_secs(2);

    // The same device command path as the return station's.
    let answer = handle.call(DeviceCommand::Divert { bin: 2 }, within).await;
    assert_eq!(answer, Ok(Ok(CommandAnswer::Done)));
    assert_eq!(sorter.diverts(), [2]);
    let full = eventually("bin 2 full in the journal", async || {
        journal(&daemon, "sorter_changed")
            .await
            .into_iter()
            .find(|p| p["bins_full"] == serde_json::json!([2]))
    })
    .await;
    assert_eq!(full["jam"], false);

    // The sorter's "no" is the command's answer; a command it does not take never reaches it.
    let answer = handle.call(DeviceCommand::Divert { bin: 9 }, within).await;
    assert!(
        matches!(&answer, Ok(Err(ReaderRefusal::Status { meaning, .. })) if meaning.contains("no bin 9")),
        "{answer:?}"
    );
    let answer = handle.output(OutputCommand::default(), within).await;
    assert!(
        matches!(answer, Err(CommandError::Unsupported(_))),
        "{answer:?}"
    );
    assert_eq!(sorter.commands().len(), 2);

    sorter.empty_bin(2);
    eventually("bin 2 emptied in the journal", async || {
        journal(&daemon, "sorter_changed")
            .await
            .into_iter()
            .last()
            .filter(|p| p["bins_full"] == serde_json::json!([]))
    })
    .await;
    daemon.shutdown("test").await.unwrap();
    stop.cancel();
    clear_retained(&gate_prefix).await;
    clear_retained(&sorter_prefix).await;
}

/// Reads events until one matches `want`.
async fn wait_for<T>(
    rx: &mut mpsc::Receiver<rfidgw_driver::DeviceReport>,
    what: &str,
    mut want: impl FnMut(&DeviceEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(common::PATIENCE, async {
        loop {
            let report = rx.recv().await.expect("the device stopped");
            if let Some(found) = want(&report.event) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}

/// The MQTT driver on its own (outside the daemon) under `prefix`, waited for until the
/// device is online: its mailbox, its events, and how to stop it.
async fn driver(
    prefix: &str,
) -> (
    CommandMailbox,
    mpsc::Receiver<rfidgw_driver::DeviceReport>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), rfidgw_driver::DeviceError>>,
) {
    let settings: MqttSettings = toml::from_str(&format!(
        "role = \"gate\"\ntopic_prefix = \"{prefix}\"\nhealth_interval_ms = 100\nreply_timeout_ms = 5000"
    ))
    .unwrap();
    let mut device = MqttDevice::new("gate-1", &settings).unwrap();
    let mailbox = CommandMailbox::new("gate-1");
    assert!(mailbox.attach(&mut device).await);
    let (tx, mut rx) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let run =
        tokio::spawn(Box::new(device).run(DeviceEventSink::new("gate-1", tx), cancel.clone()));
    wait_for(&mut rx, "the device online", |e| {
        matches!(
            e,
            DeviceEvent::Health {
                link: LinkState::Connected,
                ..
            }
        )
        .then_some(())
    })
    .await;
    (mailbox, rx, cancel, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_refusing_and_garbling_devices_get_clear_answers_and_a_last_will_ends_their_tags() {
    if !broker_up().await {
        return;
    }
    let gate_prefix = prefix("gate");
    let sim_stop = CancellationToken::new();
    let gate = simulated(
        Role::Gate,
        &gate_prefix,
        SimulatorSettings::default(),
        &sim_stop,
    )
    .await;
    let (mailbox, mut rx, cancel, run) = driver(&gate_prefix).await;
    let handle = mailbox.handle();
    let uid = Uid::from_hex("E004010000000001").unwrap();
    gate.put_tag(tag("E004010000000001", "11223344", 0x07));
    wait_for(&mut rx, "the arrival", |e| {
        matches!(e, DeviceEvent::TagArrived(read) if read.uid == uid).then_some(())
    })
    .await;

    // Carried out and read back on the device.
    let answer = handle.write_afi(&uid, 0xC2, Duration::from_secs(2)).await;
    assert!(
        matches!(&answer, Ok(Ok(CommandAnswer::Written(report))) if report.confirmed()),
        "{answer:?}"
    );
    assert_eq!(gate.tag(&uid).unwrap().afi, Some(0xC2));
    assert_eq!(
        handle.read_afi(&uid, Duration::from_secs(2)).await,
        Ok(Ok(0xC2))
    );

    // Silent: the caller's deadline ends the wait, and the timeout is counted.
    gate.set_behaviour(Behaviour::Ignore);
    let started = tokio::time::Instant::now();
    let answer = handle
        .write_eas(&uid, false, Duration::from_millis(300))
        .await;
    assert_eq!(answer, Err(CommandError::Expired));
    assert!(started.elapsed() < Duration::from_secs(2));

    // Refusing: the device's "no" is a normal answer.
    gate.set_behaviour(Behaviour::Refuse {
        code: RefusalCode::NoTransponder,
        error: "the tag left".into(),
    });
    assert_eq!(
        handle.write_eas(&uid, false, Duration::from_secs(2)).await,
        Ok(Err(ReaderRefusal::NoTransponder))
    );

    // Garbled: counted in the line counters, nothing reported, the link stays up.
    gate.publish_raw(Channel::Tags, "{\"event\":\"arrived\",\"uid\":\"XYZ\"}");
    gate.publish_raw(Channel::Sorter, b"\xff\xfe".to_vec());
    let counters = wait_for(
        &mut rx,
        "two bad frames and a timeout counted",
        |e| match e {
            DeviceEvent::Health { counters, .. }
                if counters.bad_frames >= 2 && counters.timeouts >= 1 =>
            {
                Some(*counters)
            }
            DeviceEvent::TagArrived(read) => panic!("a garbled payload was reported: {read:?}"),
            _ => None,
        },
    )
    .await;
    assert_eq!(counters.bad_frames, 2, "{counters:?}");

    // The device goes away: its status says offline, its tags depart, commands are refused.
    sim_stop.cancel();
    wait_for(&mut rx, "the tag departing with its device", |e| {
        matches!(e, DeviceEvent::TagDeparted { uid: gone } if *gone == uid).then_some(())
    })
    .await;
    wait_for(&mut rx, "the device offline", |e| {
        matches!(
            e,
            DeviceEvent::Health {
                link: LinkState::Disconnected,
                ..
            }
        )
        .then_some(())
    })
    .await;
    assert_eq!(
        handle
            .output(OutputCommand::default(), Duration::from_secs(1))
            .await,
        Err(CommandError::NotRunning)
    );
    cancel.cancel();
    run.await.unwrap().unwrap();
    clear_retained(&gate_prefix).await;
}
