//! The demo config runs: every station's simulated reader delivers decoded, journaled reads.
//!
//! This keeps the README's first command true. It runs `config/demo.toml` in process with
//! two overrides only (a temporary state directory and API port 0), exactly as a user's
//! `RFIDGW__…` environment would.

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
    daemon.shutdown("test").await.unwrap();
}
