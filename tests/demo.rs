//! The demo config runs: every station's simulated reader delivers decoded, journaled reads.
//!
//! This keeps the README's first command true. It runs `config/demo.toml` in process with
//! four overrides only (a temporary state directory, and port 0 for the API, the SIP2 face
//! and the ACS simulator), exactly as a user's `RFIDGW__…` environment would.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rfidgw::app::Daemon;
use rfidgw::bus::Event;
use rfidgw::config::Config;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_config_runs_and_every_station_sees_tags() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = Config::load_with_env(
        &demo,
        [
            (
                "RFIDGW__DAEMON__DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
            ("RFIDGW__API__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            // The demo's kiosk and simulator ports may be taken by a demo running on this
            // machine; the SIP2 pool finds the simulator wherever it listens.
            (
                "RFIDGW__SIP2_SERVER__LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
            (
                "RFIDGW__ILS__SIMULATOR__LISTEN".to_owned(),
                "127.0.0.1:0".to_owned(),
            ),
        ],
    )
    .unwrap();
    let stations: BTreeSet<String> = config.stations.iter().map(|s| s.id.clone()).collect();
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.subscribe();

    let mut seen = BTreeSet::new();
    let guard = tokio::time::timeout(Duration::from_mins(1), async {
        while seen != stations {
            let event = events.recv().await.unwrap();
            if let Event::Device {
                station: Some(station),
                ..
            } = &*event
                && event.kind() == "tag_arrived"
            {
                seen.insert(station.clone());
            }
        }
    });
    guard.await.expect("every demo station reports a tag");

    // The demo gate alarms on its secured item, lets the borrowed and the foreign one pass,
    // and counts the person walking in through its light barriers.
    let gate = tokio::time::timeout(Duration::from_mins(1), async {
        loop {
            let gate = daemon.stations().gates()["main-exit"].clone();
            let people = gate.people.unwrap_or_default();
            if gate.alarms > 0 && people.entered_total > 0 {
                return gate;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the demo gate alarms and counts");
    let alarm = gate.last_alarm.unwrap();
    assert_eq!(
        (alarm.reason, alarm.item.as_deref()),
        ("secured", Some("11223344"))
    );

    // The SIP2 pool logs in to the built-in ACS simulator and says so in the journal.
    let pool = daemon.ils().pool().expect("the demo has an ILS");
    tokio::time::timeout(
        Duration::from_mins(1),
        pool.wait_for(rfidgw_sip2::PeerState::Online),
    )
    .await
    .expect("the ILS comes online");
    let peers = daemon.ils().peers();
    assert_eq!(peers[0].name, "ils");
    assert!(peers[0].state.starts_with("online"), "{peers:?}");
    // A librarian looks every item on the demo's tags up in the demo's library system.
    let simulator = daemon
        .ils()
        .simulator_addr()
        .expect("the demo runs the simulator");
    for item in demo_items() {
        look_up(simulator, item).await;
    }
    let journaled = daemon
        .store()
        .recent(100, Some("tag_arrived"))
        .await
        .unwrap();
    assert!(journaled.len() >= stations.len());
    let decoded = &journaled[0].payload["decoded"];
    assert!(
        decoded["model"].is_string(),
        "tag reads are decoded: {decoded}"
    );

    // Issue 9: a return goes to the bin its plan names, re-secured; a self-check loan is
    // made and un-secured after the ILS said yes. Both are in the journal.
    let store = daemon.store();
    let returned = journaled_payload(store, "item_returned", "I0004").await;
    assert_eq!(returned["outcome"], "checked_in", "{returned}");
    assert_eq!(returned["bin_name"], "Shelving", "{returned}");
    assert_eq!(returned["security"]["tag"], "confirmed", "{returned}");
    let loan = journaled_payload(store, "item_loan", "I0001").await;
    assert_eq!(loan["outcome"], "checked_out", "{loan}");
    assert_eq!(loan["security"][0]["tag"], "confirmed", "{loan}");
    daemon.shutdown("test").await.unwrap();
}

/// Waits (a minute at most) for a journaled `kind` event about `item` and returns its payload.
async fn journaled_payload(
    store: &rfidgw::store::Store,
    kind: &str,
    item: &str,
) -> serde_json::Value {
    tokio::time::timeout(Duration::from_mins(1), async {
        loop {
            let rows = store.recent(50, Some(kind)).await.unwrap();
            if let Some(row) = rows.into_iter().find(|r| r.payload["item"] == item) {
                return row.payload;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the demo journals {kind} for {item}"))
}

/// The demo config as TOML.
fn demo_toml() -> toml::Value {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    toml::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap()
}

/// The item of every tag the demo's simulated readers play.
fn demo_items() -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    for device in demo_toml()["devices"].as_array().unwrap() {
        let tags = device
            .get("settings")
            .and_then(|s| s.get("simulator"))
            .and_then(|s| s.get("tags"))
            .and_then(toml::Value::as_array);
        for tag in tags.into_iter().flatten() {
            let memory = rfidgw_tag::parse_hex(tag["memory"].as_str().unwrap()).unwrap();
            let decoded = rfidgw_tag::decode(
                &memory,
                &rfidgw_tag::TagHints::default(),
                &rfidgw_tag::SiteConfig::default(),
            );
            let item = decoded
                .item
                .unwrap_or_else(|| panic!("a demo tag of {} has no item: {tag}", device["id"]));
            items.insert(item.primary_item_id);
        }
    }
    items
}

#[test]
fn every_item_and_card_of_the_demo_is_known_to_the_demo_library() {
    let library = rfidgw_sip2::SimConfig::demo();
    let known: BTreeSet<&str> = library.items.iter().map(|i| i.id.as_str()).collect();
    let items = demo_items();
    assert!(items.len() >= 8, "{items:?}");
    for item in &items {
        assert!(
            known.contains(item.as_str()),
            "the simulator does not know {item}"
        );
    }
    let patrons: BTreeSet<&str> = library.patrons.iter().map(|p| p.id.as_str()).collect();
    let demo = demo_toml();
    for device in demo["devices"].as_array().unwrap() {
        let cards = device
            .get("settings")
            .and_then(|s| s.get("recorded"))
            .and_then(|r| r.get("cards"))
            .and_then(toml::Value::as_array);
        for card in cards.into_iter().flatten() {
            let card = card.as_str().unwrap();
            assert!(
                patrons.contains(card),
                "the simulator does not know patron {card}"
            );
        }
    }
    // The simulator listens on a fixed, documented port of its own.
    let port = |addr: &toml::Value| {
        addr.as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let simulator = port(&demo["ils"]["simulator"]["listen"]);
    assert_eq!(simulator, "6002");
    assert_ne!(simulator, port(&demo["api"]["listen"]));
    assert_ne!(simulator, port(&demo["sip2_server"]["listen"]));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains("127.0.0.1:6002"),
        "the README shows the simulator's port"
    );
}

/// `rfidgw sip2 item ITEM` against the demo's simulator: the library knows the item.
async fn look_up(simulator: std::net::SocketAddr, item: String) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rfidgw"))
            .args(["sip2", "--addr", &simulator.to_string()])
            .args(["--user", "demo", "--pass", "demo", "--institution", "DEMO"])
            .args(["item", &item])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    assert!(
        answer["fields"]["AJ title_identifier"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "the demo library knows the item: {answer}"
    );
}
