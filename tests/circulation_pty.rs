//! Issue 9 end to end: the daemon runs a return station (a FEIG reader on a real pty, a
//! Modbus sorter that is the simulated sorter on a loopback port) and a self-check pad (a
//! second FEIG reader on a pty) against the ACS simulator. Returns are checked in, sorted by
//! the plan, re-secured and diverted; loans unsecure only after the ILS said yes; a tag
//! pulled away early becomes an owed write that completes when it comes back; with the ILS
//! away, returns and loans are queued and replayed exactly once, with SIP2's offline fields.

mod common;

use std::path::Path;
use std::time::Duration;

use common::eventually;
use rfidgw::app::Daemon;
use rfidgw::bus::StationControl;
use rfidgw::config::Config;
use rfidgw::station::transaction::StationInput;
use rfidgw_driver::Uid;
use rfidgw_driver::transport::PtyPair;
use rfidgw_feig::{FeigSimulator, SimHandle, VirtualTag};
use rfidgw_modbus::map::MapSettings;
use rfidgw_modbus::{Framing, RegisterMap, SorterSimulator};
use rfidgw_sip2::acs_sim::{Fault, SimControl};
use rfidgw_sip2::{AcsSimulator, Command, Secret};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// ISO 28560-3, item 11223344 of DE/705; other items are made from it.
const TEMPLATE: &str = "11010131313232333334340000000000000000513E4445373035000000000000";
const SECURED: u8 = 0x07;
const UNSECURED: u8 = 0xC2;

const PLAN: &str = r#"
version = 1
exception_bin = 3
[bins]
1 = "Holds"
2 = "Shelving"
3 = "Exceptions"
4 = "Offline returns"
[[rules]]
name = "ILS rejections"
ok = false
bin = 3
[[rules]]
name = "Holds for this library"
alert_type = "01"
bin = 1
[[rules]]
name = "Everything else the ILS took"
ok = true
bin = 2
[[rules]]
name = "Offline returns"
bin = 4
"#;

/// Tag memory of item `item` (ISO 28560-3, DE/705).
fn memory(item: &str) -> String {
    use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
    let site = SiteConfig::default();
    let template = rfidgw_tag::parse_hex(TEMPLATE).unwrap();
    let Some(TagData::Iso28560_3(mut ddm)) =
        rfidgw_tag::decode(&template, &TagHints::default(), &site).data
    else {
        panic!("the template is ISO 28560-3");
    };
    item.clone_into(&mut ddm.basic.primary_item_id);
    let encoded = rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, &site).unwrap();
    hex::encode_upper(encoded)
}

/// A simulated FEIG reader on the far end of a pty, reachable at `link`.
fn reader(link: &Path) -> SimHandle {
    let sim = SimHandle::default();
    let pty = PtyPair::open().unwrap();
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(pty.slave_path(), link).unwrap();
    tokio::spawn(FeigSimulator::from_handle(sim.clone()).serve_pty(pty));
    sim
}

/// Puts item `item` on `sim` as tag `uid` with `afi`, outside the field.
fn tag(sim: &SimHandle, uid: &str, item: &str, afi: u8) -> Uid {
    let uid = Uid::from_hex(uid).unwrap();
    sim.insert_tag(VirtualTag {
        afi,
        memory: rfidgw_tag::parse_hex(&memory(item)).unwrap(),
        ..VirtualTag::new(uid.clone())
    });
    sim.set_in_field(&uid, false);
    uid
}

fn afi(sim: &SimHandle, uid: &Uid) -> u8 {
    sim.tag(uid).unwrap().afi
}

struct Site {
    _dir: tempfile::TempDir,
    daemon: Daemon,
    returns: SimHandle,
    pad: SimHandle,
    /// The exit gate's reader.
    gate: SimHandle,
    sorter: rfidgw_modbus::SimHandle,
    acs: SimControl,
    stop: CancellationToken,
}

const MAP: &str =
    "bins = 4\nbin_full = [0, 1, 2, 3]\njam = 8\ndivert = { kind = \"register\", register = 100 }";

fn config_text(
    dir: &Path,
    acs_addr: std::net::SocketAddr,
    sorter_addr: std::net::SocketAddr,
) -> String {
    format!(
        r#"
        [daemon]
        data_dir = "{data}"
        [api]
        enabled = false
        [tags.owners]
        libraries = [{{ country = "DE", library = "705" }}]
        [ils.sip2]
        addr = "{acs_addr}"
        user = "demo"
        password = "demo"
        institution = "DEMO"
        pool_size = 1
        [circulation]
        replay_pause_ms = 200

        [[devices]]
        id = "return-reader"
        driver = "feig"
        [devices.settings.transport]
        kind = "serial"
        path = "{data}/return-reader"
        [devices.settings.poll]
        poll_interval_ms = 20
        depart_after_polls = 2
        memory_blocks = 8

        [[devices]]
        id = "pad"
        driver = "feig"
        [devices.settings.transport]
        kind = "serial"
        path = "{data}/pad"
        [devices.settings.poll]
        poll_interval_ms = 20
        depart_after_polls = 2
        memory_blocks = 8

        [[devices]]
        id = "gate-reader"
        driver = "feig"
        [devices.settings.transport]
        kind = "serial"
        path = "{data}/gate-reader"
        [devices.settings.poll]
        poll_interval_ms = 20
        depart_after_polls = 2
        memory_blocks = 8

        [[devices]]
        id = "sorter"
        driver = "modbus"
        [devices.settings.transport]
        kind = "tcp"
        addr = "{sorter_addr}"
        [devices.settings.map]
        {MAP}

        [[stations]]
        id = "returns"
        kind = "return"
        devices = ["return-reader", "sorter"]
        [stations.returns]
        sorter = "sorter"
        sort_plan = "{data}/plan.toml"
        settle_ms = 100
        [stations.offline]
        mode = "checkin"

        [[stations]]
        id = "exit"
        kind = "gate"
        devices = ["gate-reader"]

        [[stations]]
        id = "selfcheck"
        kind = "self-check"
        devices = ["pad"]
        [stations.selfcheck]
        idle_end_ms = 60000
        set_wait_ms = 300
        [stations.offline]
        mode = "checkin-checkout"
        max_items_per_patron = 2
        "#,
        data = dir.display(),
    )
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let returns = reader(&dir.path().join("return-reader"));
    let pad = reader(&dir.path().join("pad"));
    let gate = reader(&dir.path().join("gate-reader"));
    let map_settings: MapSettings = toml::from_str(MAP).unwrap();
    let simulator = SorterSimulator::new(
        RegisterMap::new(&map_settings).unwrap(),
        1,
        rfidgw_modbus::settings::SimulatorSettings::default(),
    );
    let sorter = simulator.handle();
    let sorter_addr = simulator
        .spawn_loopback(Framing::Tcp, stop.clone())
        .await
        .unwrap();
    let simulator = AcsSimulator::demo();
    let acs = simulator.control();
    let (acs_addr, serve) = simulator.bind("127.0.0.1:0", stop.clone()).await.unwrap();
    tokio::spawn(serve);
    std::fs::write(dir.path().join("plan.toml"), PLAN).unwrap();
    let text = config_text(dir.path(), acs_addr, sorter_addr);
    let config_path = dir.path().join("rfidgw.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = Config::load_with_env(&config_path, std::iter::empty()).unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let pool = daemon.ils().pool().unwrap().clone();
    tokio::time::timeout(common::PATIENCE, pool.wait_online())
        .await
        .unwrap();
    Site {
        _dir: dir,
        daemon,
        returns,
        pad,
        gate,
        sorter,
        acs,
        stop,
    }
}

impl Site {
    async fn journal(&self, kind: &str) -> Vec<Value> {
        let rows = self.daemon.store().recent(500, Some(kind)).await.unwrap();
        rows.into_iter().rev().map(|r| r.payload).collect()
    }

    /// The newest `kind` record about `item`, once there is one more than `before`.
    async fn next(&self, kind: &str, item: &str, before: usize) -> Value {
        eventually(&format!("{kind} of {item}"), async || {
            let rows: Vec<Value> = self
                .journal(kind)
                .await
                .into_iter()
                .filter(|r| r["item"] == item)
                .collect();
            (rows.len() > before)
                .then(|| rows.last().cloned())
                .flatten()
        })
        .await
    }

    async fn count(&self, kind: &str, item: &str) -> usize {
        self.journal(kind)
            .await
            .iter()
            .filter(|r| r["item"] == item)
            .count()
    }

    /// Drops `item` (tag `uid`) into the return box: in, taken, out.
    async fn return_item(&self, uid: &Uid, item: &str) -> Value {
        let before = self.count("item_returned", item).await;
        self.returns.set_in_field(uid, true);
        let record = self.next("item_returned", item, before).await;
        self.returns.set_in_field(uid, false);
        record
    }

    async fn desk(&self, input: impl FnOnce() -> StationInput) {
        self.daemon
            .controls()
            .send(StationControl::Desk {
                station: "selfcheck".into(),
                input: input(),
            })
            .await
            .unwrap();
    }

    async fn patron(&self, patron: &str, pin: &str) -> Result<String, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.desk(|| StationInput::Patron {
            patron: patron.into(),
            pin: Some(Secret::new(pin)),
            reply,
        })
        .await;
        answer.await.unwrap()
    }

    async fn finish(&self, presented: u32) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.desk(|| StationInput::Finish {
            presented: Some(presented),
            reply,
        })
        .await;
        answer.await.unwrap().unwrap();
    }

    async fn shutdown(self) {
        self.daemon.shutdown("test over").await.unwrap();
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_go_to_their_bins_resecured_and_loans_unsecure_only_when_the_ils_says_yes() {
    let site = site().await;

    // A loan coming back: checked in, re-secured, to the shelving bin.
    let dune = tag(&site.returns, "E004010000000004", "I0004", UNSECURED);
    let record = site.return_item(&dune, "I0004").await;
    assert_eq!(record["outcome"], "checked_in", "{record}");
    assert_eq!(record["bin"], 2, "{record}");
    assert_eq!(
        record["rule"], "rule 3 \"Everything else the ILS took\"",
        "{record}"
    );
    assert_eq!(record["security"]["tag"], "confirmed", "{record}");
    assert_eq!(record["diverted"], true, "{record}");
    assert_eq!(afi(&site.returns, &dune), SECURED);
    assert_eq!(site.acs.charged_to("I0004"), None);

    // A hold: to the holds bin.
    let hobbit = tag(&site.returns, "E004010000000005", "I0005", SECURED);
    let record = site.return_item(&hobbit, "I0005").await;
    assert_eq!(record["bin"], 1, "{record}");

    // An item the ILS does not know: the exception bin, with the ILS's reason.
    let stranger = tag(&site.returns, "E004010000000099", "X0099", UNSECURED);
    let record = site.return_item(&stranger, "X0099").await;
    assert_eq!(record["outcome"], "rejected", "{record}");
    assert_eq!(record["bin"], 3, "{record}");
    assert!(
        record["sort_reason"]
            .as_str()
            .unwrap()
            .contains("ILS rejected the checkin"),
        "{record}"
    );
    // Even a refused return is in the library now: it is secured.
    assert_eq!(afi(&site.returns, &stranger), SECURED);
    eventually("three diverts", async || {
        (site.sorter.diverts() == [2, 1, 3]).then_some(())
    })
    .await;

    // Self-check: Alice borrows a book; a book on hold for someone else is refused and
    // stays secured.
    let session = site.patron("P1001", "1234").await.unwrap();
    let rust = tag(&site.pad, "E004010000000001", "I0001", SECURED);
    site.pad.set_in_field(&rust, true);
    let loan = site.next("item_loan", "I0001", 0).await;
    assert_eq!(loan["outcome"], "checked_out", "{loan}");
    assert_eq!(loan["session"], session.as_str());
    assert_eq!(loan["security"][0]["tag"], "confirmed", "{loan}");
    assert_eq!(afi(&site.pad, &rust), UNSECURED);
    assert_eq!(site.acs.charged_to("I0001").as_deref(), Some("P1001"));
    let hold = tag(&site.pad, "E004010000000015", "I0005", SECURED);
    site.pad.set_in_field(&hold, true);
    let refused = site.next("item_loan", "I0005", 0).await;
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(refused["security"][0]["tag"], "unchanged", "{refused}");
    assert_eq!(afi(&site.pad, &hold), SECURED);
    site.finish(2).await;
    let summary = eventually("the receipt", async || {
        site.journal("session_ended").await.pop()
    })
    .await;
    assert_eq!(summary["borrowed"][0]["item"], "I0001", "{summary}");
    assert_eq!(summary["failed"][0]["item"], "I0005", "{summary}");
    assert_eq!(summary["stack_mismatch"], false, "{summary}");
    assert!(
        summary.get("patron").is_none(),
        "no patron id on the receipt record"
    );

    // A blocked patron gets no session.
    assert!(
        site.patron("P1002", "")
            .await
            .unwrap_err()
            .starts_with("blocked")
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_pulled_away_early_is_owed_and_completed_on_another_reader() {
    let site = site().await;
    let moby = tag(&site.returns, "E004010000000002", "I0002", UNSECURED);
    // The ILS answers slowly; the patron's hand takes the item away before the re-secure.
    site.acs.inject(
        Some(Command::Checkin),
        Fault::Delay(Duration::from_millis(1500)),
    );
    site.returns.set_in_field(&moby, true);
    eventually("the checkin at the ILS", async || {
        site.acs
            .transactions()
            .iter()
            .any(|t| t.item == "I0002")
            .then_some(())
    })
    .await;
    site.returns.set_in_field(&moby, false);
    let record = site.next("item_returned", "I0002", 0).await;
    assert_eq!(record["security"]["tag"], "owed", "{record}");
    let owed_id = record["security"]["owed_id"].as_i64().unwrap();
    assert_eq!(afi(&site.returns, &moby), UNSECURED);

    // The item turns up on the self-check pad (no session there): the write is done there.
    let state = site.returns.tag(&moby).unwrap();
    site.pad.insert_tag(VirtualTag {
        in_field: true,
        ..state
    });
    let done = eventually("the owed write done", async || {
        site.journal("owed_write")
            .await
            .into_iter()
            .find(|r| r["owed_id"] == owed_id && r["state"] == "done")
    })
    .await;
    assert_eq!(done["detail"], "completed on pad", "{done}");
    assert_eq!(afi(&site.pad, &moby), SECURED);
    let open = site
        .daemon
        .store()
        .owed_writes(&[rfidgw::store::OwedState::Owed], 10)
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_whose_unsecure_is_owed_passes_the_gate_and_the_gate_reader_writes_it() {
    let site = site().await;
    site.patron("P1001", "1234").await.unwrap();
    let rust = tag(&site.pad, "E004010000000001", "I0001", SECURED);
    // The ILS answers slowly; the patron takes the book off the pad before the un-secure.
    site.acs.inject(
        Some(Command::Checkout),
        Fault::Delay(Duration::from_millis(1500)),
    );
    site.pad.set_in_field(&rust, true);
    eventually("the checkout at the ILS", async || {
        site.acs
            .transactions()
            .iter()
            .any(|t| t.item == "I0001")
            .then_some(())
    })
    .await;
    site.pad.set_in_field(&rust, false);
    let loan = site.next("item_loan", "I0001", 0).await;
    assert_eq!(loan["outcome"], "checked_out", "{loan}");
    assert_eq!(loan["security"][0]["tag"], "owed", "{loan}");
    assert_eq!(afi(&site.pad, &rust), SECURED);

    // The patron walks out through the gate with the book: no alarm, and the gate's
    // reader writes the owed un-secure.
    let state = site.pad.tag(&rust).unwrap();
    site.gate.insert_tag(VirtualTag {
        in_field: true,
        ..state
    });
    let read = eventually("the gate's decision", async || {
        site.journal("tag_arrived")
            .await
            .into_iter()
            .find(|r| r["uid"] == "E004010000000001" && !r["decision"].is_null())
    })
    .await;
    assert_eq!(read["decision"]["verdict"], "pass", "{read}");
    assert_eq!(read["decision"]["reason"], "loan_write_owed", "{read}");
    let done = eventually("the owed write done", async || {
        site.journal("owed_write")
            .await
            .into_iter()
            .find(|r| r["item"] == "I0001" && r["state"] == "done")
    })
    .await;
    assert_eq!(done["detail"], "completed on gate-reader", "{done}");
    assert_eq!(afi(&site.gate, &rust), UNSECURED);
    assert!(site.journal("gate_alarm").await.is_empty());
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_returns_and_loans_are_queued_then_replayed_once_with_their_dates() {
    let site = site().await;
    site.acs.set_available(false);
    let pool = site.daemon.ils().pool().unwrap().clone();
    eventually("the ILS offline", async || {
        (!site.daemon.ils().connector().unwrap().is_online()).then_some(())
    })
    .await;

    // A return while offline: queued, re-secured, sorted by the rules that need no ILS.
    let dune = tag(&site.returns, "E004010000000004", "I0004", UNSECURED);
    let record = site.return_item(&dune, "I0004").await;
    assert_eq!(record["outcome"], "queued_offline", "{record}");
    assert_eq!(record["bin"], 4, "{record}");
    assert_eq!(afi(&site.returns, &dune), SECURED);

    // A loan while offline, within the policy's limit.
    let session = site.patron("P1003", "").await.unwrap();
    let rust = tag(&site.pad, "E004010000000001", "I0001", SECURED);
    site.pad.set_in_field(&rust, true);
    let loan = site.next("item_loan", "I0001", 0).await;
    assert_eq!(loan["outcome"], "queued_offline", "{loan}");
    assert_eq!(loan["session"], session.as_str());
    assert!(loan["due_date"].is_string(), "{loan}");
    assert_eq!(afi(&site.pad, &rust), UNSECURED);
    site.finish(1).await;
    let queued = site.daemon.store().queued(&[], 10).await.unwrap();
    assert_eq!(
        site.daemon.store().queue_len().await.unwrap(),
        2,
        "{queued:?}"
    );
    assert!(site.acs.transactions().is_empty());

    // The ILS is back: both replay, in order, once each, marked as offline transactions.
    site.acs.set_available(true);
    tokio::time::timeout(common::PATIENCE, pool.wait_online())
        .await
        .unwrap();
    eventually("the queue replayed", async || {
        (site.daemon.store().queue_len().await.unwrap() == 0).then_some(())
    })
    .await;
    let sent = site.acs.transactions();
    let sent: Vec<(Command, &str, bool)> = sent
        .iter()
        .map(|t| (t.command, t.item.as_str(), t.no_block))
        .collect();
    assert_eq!(
        sent,
        [
            (Command::Checkin, "I0004", true),
            (Command::Checkout, "I0001", true)
        ]
    );
    assert_eq!(site.acs.charged_to("I0001").as_deref(), Some("P1003"));
    assert_eq!(site.acs.charged_to("I0004"), None);
    let replayed = eventually("both replays journaled", async || {
        let rows = site.journal("replayed").await;
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert!(
        replayed.iter().all(|r| r["outcome"] == "done"),
        "{replayed:?}"
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_stops_for_a_second_item_a_jam_and_a_full_bin_and_resumes() {
    let site = site().await;

    // Two items at once: neither is taken; the patron is asked for one at a time.
    let dune = tag(&site.returns, "E004010000000004", "I0004", UNSECURED);
    let moby = tag(&site.returns, "E004010000000002", "I0002", UNSECURED);
    site.returns.set_in_field(&dune, true);
    site.returns.set_in_field(&moby, true);
    let refused = eventually("one item at a time", async || {
        site.journal("return_refused").await.pop()
    })
    .await;
    assert_eq!(refused["reason"], "one_item_at_a_time", "{refused}");
    assert_eq!(refused["uids"].as_array().unwrap().len(), 2, "{refused}");
    // One taken away: the other, alone now, is taken.
    site.returns.set_in_field(&moby, false);
    let record = site.next("item_returned", "I0004", 0).await;
    assert_eq!(record["outcome"], "checked_in", "{record}");
    assert_eq!(site.count("item_returned", "I0002").await, 0);
    site.returns.set_in_field(&dune, false);

    // The sorter jams: intake stops (journaled), an item is refused, nothing is diverted.
    site.sorter.set_jam(true);
    let stopped = eventually("intake stopped", async || {
        site.journal("intake_changed")
            .await
            .pop()
            .filter(|r| r["open"] == false)
    })
    .await;
    assert_eq!(stopped["reason"], "the sorter is jammed", "{stopped}");
    assert!(!site.daemon.stations().returns()["returns"].intake_open);
    let diverts = site.sorter.diverts().len();
    site.returns.set_in_field(&moby, true);
    let refused = eventually("intake_stopped refusal", async || {
        site.journal("return_refused")
            .await
            .into_iter()
            .find(|r| r["reason"] == "intake_stopped")
    })
    .await;
    assert_eq!(refused["uids"][0], "E004010000000002", "{refused}");
    assert_eq!(site.sorter.diverts().len(), diverts);
    assert_eq!(site.count("item_returned", "I0002").await, 0);

    // Cleared: intake opens again, and the item still lying in the field is taken without
    // the patron lifting it off and putting it back.
    site.sorter.set_jam(false);
    let record = site.next("item_returned", "I0002", 0).await;
    assert_eq!(record["diverted"], true, "{record}");
    site.returns.set_in_field(&moby, false);

    // A full bin stops intake too, and says which.
    site.sorter.fill_bin(2);
    let stopped = eventually("bin full", async || {
        site.journal("intake_changed")
            .await
            .pop()
            .filter(|r| r["open"] == false && r["reason"] == "bin 2 full")
    })
    .await;
    assert_eq!(
        site.daemon.stations().returns()["returns"].bins_full,
        [2],
        "{stopped}"
    );
    site.sorter.empty_bin(2);
    eventually("intake open after emptying", async || {
        site.daemon.stations().returns()["returns"]
            .intake_open
            .then_some(())
    })
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_lent_only_whole() {
    let site = site().await;
    site.patron("P1001", "1234").await.unwrap();
    let set = |part: u8| {
        use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
        let template = rfidgw_tag::parse_hex(TEMPLATE).unwrap();
        let site_config = SiteConfig::default();
        let Some(TagData::Iso28560_3(mut ddm)) =
            rfidgw_tag::decode(&template, &TagHints::default(), &site_config).data
        else {
            panic!("the template is ISO 28560-3");
        };
        "I0003".clone_into(&mut ddm.basic.primary_item_id);
        ddm.basic.parts_in_item = 3;
        ddm.basic.part_number = part;
        rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, &site_config).unwrap()
    };
    // Two discs of three: refused after the set wait, with what is missing; still secured.
    let mut uids = Vec::new();
    for part in 1..=2u8 {
        let uid = Uid::new([0xE0, 0x04, 0, 0, 0, 0, 0x33, part]);
        site.pad.insert_tag(VirtualTag {
            afi: SECURED,
            memory: set(part),
            ..VirtualTag::new(uid.clone())
        });
        uids.push(uid);
    }
    let refused = site.next("item_loan", "I0003", 0).await;
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(
        refused["reason"], "set incomplete: 2 of 3 parts here (missing part 3)",
        "{refused}"
    );
    assert!(uids.iter().all(|uid| afi(&site.pad, uid) == SECURED));
    assert_eq!(site.acs.charged_to("I0003"), None);
    site.finish(1).await;

    // All three in a new session: lent, every disc unsecured.
    site.patron("P1001", "1234").await.unwrap();
    let third = Uid::new([0xE0, 0x04, 0, 0, 0, 0, 0x33, 3]);
    site.pad.insert_tag(VirtualTag {
        afi: SECURED,
        memory: set(3),
        ..VirtualTag::new(third.clone())
    });
    uids.push(third);
    let lent = site.next("item_loan", "I0003", 1).await;
    assert_eq!(lent["outcome"], "checked_out", "{lent}");
    assert_eq!(lent["uids"].as_array().unwrap().len(), 3, "{lent}");
    assert!(uids.iter().all(|uid| afi(&site.pad, uid) == UNSECURED));
    site.shutdown().await;
}
