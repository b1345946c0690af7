//! Issue 8 end to end: the daemon (`Daemon::start` from a config) runs an exit gate on a
//! FEIG reader that is the FEIG simulator on the other end of a real pty. A secured item
//! makes the daemon write the `[71]` output frame to the reader and journal the alarm with
//! its reason; a borrowed item, a foreign item and repeated reads of one item do not alarm
//! (or not twice); with the ACS stopped the gate still alarms; commands sent while the
//! reader restarts each get an answer by their deadline.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{PATIENCE, eventually};
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw_driver::transport::PtyPair;
use rfidgw_driver::{CommandAnswer, CommandError, OutputCommand, Signal, Uid};
use rfidgw_feig::{FeigSimulator, SimHandle, VirtualTag};
use rfidgw_sip2::AcsSimulator;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// ISO 28560-3, item 11223344 of DE/705 (ours in the config below).
const OURS: &str = "11010131313232333334340000000000000000513E4445373035000000000000";
/// ISO 28560-3, item 1234567890 of DK/715700 (an interlibrary loan: foreign).
const FOREIGN: &str = "11010131323334353637383930000000000000D203444B3731353730300000000000";

fn plug(link: &Path, sim: &SimHandle) -> JoinHandle<std::io::Result<()>> {
    let pty = PtyPair::open().unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(pty.slave_path(), link).unwrap();
    tokio::spawn(FeigSimulator::from_handle(sim.clone()).serve_pty(pty))
}

/// Tag memory of another of our items: `OURS` with its item id replaced.
fn ours(item: &str) -> String {
    use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
    let site = SiteConfig::default();
    let memory = rfidgw_tag::parse_hex(OURS).unwrap();
    let Some(TagData::Iso28560_3(mut ddm)) =
        rfidgw_tag::decode(&memory, &TagHints::default(), &site).data
    else {
        panic!("OURS is ISO 28560-3");
    };
    item.clone_into(&mut ddm.basic.primary_item_id);
    let encoded = rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, &site).unwrap();
    hex::encode_upper(encoded)
}

/// Puts a tag on the simulated reader, outside its field until a test moves it in.
fn insert(sim: &SimHandle, uid: &str, afi: u8, memory: &str) {
    let uid = Uid::from_hex(uid).unwrap();
    sim.insert_tag(VirtualTag {
        afi,
        memory: rfidgw_tag::parse_hex(memory).unwrap(),
        ..VirtualTag::new(uid.clone())
    });
    sim.set_in_field(&uid, false);
}

fn config(dir: &Path, link: &Path, ils: &str) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        [api]
        enabled = false
        [tags.owners]
        libraries = [{{ country = "DE", library = "705" }}]
        {ils}

        [[devices]]
        id = "gate-left"
        driver = "feig"
        [devices.settings.transport]
        kind = "serial"
        path = "{link}"
        [devices.settings.poll]
        poll_interval_ms = 20
        depart_after_polls = 2
        memory_blocks = 8
        [devices.settings.driver]
        reply_timeout_ms = 500

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-left"]
        [stations.gate]
        leave_window_ms = 300
        enter_window_ms = 60000
        [[stations.gate.alarm.outputs]]
        device = "gate-left"
        beeper = "flash"
        red = "on"
        green = "off"
        signal_ms = 2000
        relay_ms = 1500
        "#,
        data = dir.display(),
        link = link.display(),
    );
    Config::parse("gate-test.toml", &text, std::iter::empty()).unwrap()
}

async fn journal(daemon: &Daemon, kind: &str) -> Vec<serde_json::Value> {
    let rows = daemon.store().recent(100, Some(kind)).await.unwrap();
    rows.into_iter().rev().map(|r| r.payload).collect()
}

/// Moves `uid` into the field until the daemon has journaled its arrival, then out again
/// until it has journaled the departure.
async fn pass_through(daemon: &Daemon, sim: &SimHandle, uid: &str) {
    let uid = Uid::from_hex(uid).unwrap();
    let arrived_before = count_for(daemon, "tag_arrived", &uid).await;
    sim.set_in_field(&uid, true);
    eventually("the arrival", async || {
        (count_for(daemon, "tag_arrived", &uid).await > arrived_before).then_some(())
    })
    .await;
    let departed_before = count_for(daemon, "tag_departed", &uid).await;
    sim.set_in_field(&uid, false);
    eventually("the departure", async || {
        (count_for(daemon, "tag_departed", &uid).await > departed_before).then_some(())
    })
    .await;
}

/// The gate's decision on the newest read of `uid`: verdict, reason, whether it acted.
async fn decision(daemon: &Daemon, uid: &str) -> (String, String, bool) {
    let row = journal(daemon, "tag_arrived")
        .await
        .into_iter()
        .rev()
        .find(|p| p["uid"] == uid)
        .expect("a read of the tag");
    let d = &row["decision"];
    (
        d["verdict"].as_str().unwrap_or_default().to_owned(),
        d["reason"].as_str().unwrap_or_default().to_owned(),
        d["acted"].as_bool().unwrap_or_default(),
    )
}

async fn count_for(daemon: &Daemon, kind: &str, uid: &Uid) -> usize {
    let uid = uid.to_string();
    journal(daemon, kind)
        .await
        .iter()
        .filter(|p| p["uid"] == uid.as_str())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_item_drives_the_gate_outputs_and_borrowed_foreign_and_reread_items_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FEIG_ID_CPR-if00-port0");
    let sim = SimHandle::default();
    insert(&sim, "E004010000000001", 0x07, OURS); // secured, ours
    insert(&sim, "E004010000000002", 0xC2, &ours("55667788")); // borrowed
    insert(&sim, "E004010000000003", 0x07, FOREIGN); // foreign, secured at its home
    let _reader = plug(&link, &sim);
    let ils = r#"
        [ils.simulator]
        listen = "127.0.0.1:0"
        [[ils.simulator.library.items]]
        id = "11223344"
        title = "Der Prozess"
        [ils.sip2]
        addr = "simulator"
        user = "demo"
        password = "demo"
        institution = "DEMO"
    "#;
    let daemon = Daemon::start(config(dir.path(), &link, ils)).await.unwrap();

    pass_through(&daemon, &sim, "E004010000000002").await; // borrowed
    pass_through(&daemon, &sim, "E004010000000003").await; // foreign
    assert!(journal(&daemon, "gate_alarm").await.is_empty());
    assert!(sim.outputs().is_empty(), "{:?}", sim.outputs());
    // Each read is journaled with the decision made on it.
    let words = |v: &str, r: &str, a| (v.to_owned(), r.to_owned(), a);
    assert_eq!(
        decision(&daemon, "E004010000000002").await,
        words("pass", "unsecured", true)
    );
    assert_eq!(
        decision(&daemon, "E004010000000003").await,
        words("pass", "policy", true)
    );

    pass_through(&daemon, &sim, "E004010000000001").await; // secured
    let outputs = eventually("the [71] frame", async || {
        let outputs = sim.outputs();
        (!outputs.is_empty()).then_some(outputs)
    })
    .await;
    // OS: beeper flash (11) << 4 | red on (01) << 2 | green off (10); 100 ms units.
    assert_eq!(outputs[0].os, 0b11_01_10);
    assert_eq!((outputs[0].os_time, outputs[0].out_time), (20, 15));
    let alarms = eventually("the alarm row", async || {
        let alarms = journal(&daemon, "gate_alarm").await;
        (!alarms.is_empty()).then_some(alarms)
    })
    .await;
    assert_eq!(alarms[0]["reason"], "secured");
    assert_eq!(alarms[0]["item"], "11223344");
    assert_eq!(alarms[0]["station"], "main-exit");
    assert_eq!(alarms[0]["silenced"], false);
    assert_eq!(
        decision(&daemon, "E004010000000001").await,
        words("alarm", "secured", true)
    );
    // The title comes from the ILS after the alarm, as a row of its own.
    let title = eventually("the title", async || {
        journal(&daemon, "alarm_title").await.into_iter().next()
    })
    .await;
    assert_eq!(title["title"], "Der Prozess");
    assert_eq!(title["alarm_id"], alarms[0]["alarm_id"]);

    // The same item through the gate again within the enter window: no second alarm.
    pass_through(&daemon, &sim, "E004010000000001").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(journal(&daemon, "gate_alarm").await.len(), 1);
    assert_eq!(sim.outputs().len(), 1);
    assert_eq!(
        decision(&daemon, "E004010000000001").await,
        words("alarm", "secured", false)
    );
    assert_eq!(daemon.stations().gates()["main-exit"].alarms, 1);
    daemon.shutdown("test").await.unwrap();
    sim.unplug();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_acs_stopped_the_gate_still_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FEIG_ID_CPR-if00-port0");
    let sim = SimHandle::default();
    insert(&sim, "E004010000000001", 0x07, OURS);
    let _reader = plug(&link, &sim);
    let acs_stop = CancellationToken::new();
    let (acs, serve) = AcsSimulator::demo()
        .bind("127.0.0.1:0", acs_stop.clone())
        .await
        .unwrap();
    let acs_task = tokio::spawn(serve);
    let ils = format!(
        "[ils.sip2]\naddr = \"{acs}\"\nuser = \"demo\"\npassword = \"demo\"\ninstitution = \"DEMO\""
    );
    let daemon = Daemon::start(config(dir.path(), &link, &ils))
        .await
        .unwrap();
    let pool = daemon.ils().pool().unwrap().clone();
    tokio::time::timeout(PATIENCE, pool.wait_online())
        .await
        .unwrap();
    acs_stop.cancel();
    let _ = acs_task.await;

    pass_through(&daemon, &sim, "E004010000000001").await;
    eventually("the [71] frame", async || {
        (!sim.outputs().is_empty()).then_some(())
    })
    .await;
    let alarms = journal(&daemon, "gate_alarm").await;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["reason"], "secured");
    daemon.shutdown("test").await.unwrap();
    sim.unplug();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_while_the_reader_restarts_each_get_an_answer_by_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FEIG_ID_CPR-if00-port0");
    let sim = SimHandle::default();
    let reader = plug(&link, &sim);
    let mut config = config(dir.path(), &link, "");
    config.daemon.restart_backoff_max_ms = 500;
    let daemon = Daemon::start(config).await.unwrap();
    let handle = daemon.handles()["gate-left"].clone();
    let deadline = Duration::from_millis(300);
    let output = OutputCommand {
        green: Signal::On,
        signal_for: Some(Duration::from_millis(100)),
        ..OutputCommand::default()
    };
    eventually("the reader to run", async || {
        handle.is_running().then_some(())
    })
    .await;

    // A station keeps sending while the reader is unplugged and plugged back twice.
    let sender = tokio::spawn({
        let handle = handle.clone();
        async move {
            let mut answers = Vec::new();
            for _ in 0..400 {
                let started = std::time::Instant::now();
                let result = handle.output(output, deadline).await;
                answers.push((result, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answers
        }
    });
    let mut reader = Some(reader);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sim.unplug();
        let _ = reader.take().unwrap().await;
        eventually("the reader to be down", async || {
            (!handle.is_running()).then_some(())
        })
        .await;
        reader = Some(plug(&link, &sim));
        eventually("the reader to run again", async || {
            handle.is_running().then_some(())
        })
        .await;
    }
    let answers = sender.await.unwrap();
    let mut done = 0;
    let mut not_running = 0;
    for (result, took) in &answers {
        match result {
            Ok(Ok(CommandAnswer::Done)) => done += 1,
            Err(CommandError::NotRunning) => not_running += 1,
            Err(CommandError::Expired | CommandError::Line(_)) | Ok(Err(_)) => {}
            other => panic!("unexpected answer {other:?}"),
        }
        // Every call came back; none was parked past its deadline (generous slack for a
        // loaded machine: a parked command would wait for a whole restart pause).
        assert!(
            *took < deadline + Duration::from_secs(2),
            "{result:?} took {took:?}"
        );
    }
    assert!(
        done > 0 && not_running > 0,
        "done {done}, not running {not_running}"
    );
    assert!(!sim.outputs().is_empty());
    daemon.shutdown("test").await.unwrap();
    sim.unplug();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_pedestal_disconnected_the_other_keeps_the_gate_working_and_status_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("usb-FEIG_ID_CPR-if00-port0");
    let dead = dir.path().join("usb-FEIG_ID_CPR-if00-port1"); // nothing plugged in there
    let sim = SimHandle::default();
    insert(&sim, "E004010000000001", 0x07, OURS);
    let _reader = plug(&link, &sim);
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        restart_backoff_max_ms = 1000
        [api]
        enabled = false
        [tags.owners]
        libraries = [{{ country = "DE", library = "705" }}]
        [[devices]]
        id = "gate-left"
        driver = "feig"
        settings.transport = {{ kind = "serial", path = "{link}" }}
        settings.poll = {{ poll_interval_ms = 20, depart_after_polls = 2 }}
        [[devices]]
        id = "gate-right"
        driver = "feig"
        settings.transport = {{ kind = "serial", path = "{dead}" }}
        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-left", "gate-right"]
        [[stations.gate.alarm.outputs]]
        device = "gate-left"
        [[stations.gate.alarm.outputs]]
        device = "gate-right"
        "#,
        data = dir.path().display(),
        link = link.display(),
        dead = dead.display(),
    );
    let config = Config::parse("two-pedestals.toml", &text, std::iter::empty()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    pass_through(&daemon, &sim, "E004010000000001").await;
    eventually("the [71] frame on the working pedestal", async || {
        (!sim.outputs().is_empty()).then_some(())
    })
    .await;
    let alarms = journal(&daemon, "gate_alarm").await;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["device"], "gate-left");
    // The dead pedestal's output could not be driven: that is recorded, not hidden.
    let failed = eventually("the failed output", async || {
        journal(&daemon, "alarm_output_failed")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(failed["device"], "gate-right");
    assert_eq!(failed["alarm_id"], alarms[0]["alarm_id"]);
    let right = daemon
        .registry()
        .snapshot()
        .into_iter()
        .find(|d| d.id == "gate-right")
        .unwrap();
    assert_ne!(right.state, rfidgw::registry::DeviceState::Connected);
    assert!(
        right.last_error.unwrap().contains("port1"),
        "the error names the path"
    );
    daemon.shutdown("test").await.unwrap();
    sim.unplug();
}
