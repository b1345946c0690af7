//! Issue 9's figures, measured on the whole stack:
//!
//! 1. **Sort decision latency**: a return station (`Daemon::start` on a config) with a FEIG
//!    reader that is the FEIG simulator on a real pty and a Modbus sorter that is the
//!    simulated PLC on a loopback port (real Modbus TCP), against the ACS simulator.
//!    `--returns N` items are dropped in one after another; each `item_returned` row carries
//!    the station's timing (`ils_us`, `tag_us`, `divert_us`, `total_us`). The sort decision
//!    latency with the ILS excluded is `total_us - ils_us`: from taking the item (after
//!    `settle_ms`) through the pending-write commit, the re-secure with read-back, the plan's
//!    decision and the divert command until the PLC answered.
//! 2. **Replay throughput**: `--replays M` offline checkins queued in a fresh store, then
//!    replayed by the daemon's replayer through the SIP2 pool (one connection) to the ACS
//!    simulator on loopback: transactions per second until the queue is empty.
//!
//! Run: `cargo run --release --example circulation_figures -- --returns 200 --replays 2000`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::ils::connector::IlsConnector;
use rfidgw::ils::sip2::Sip2Connector;
use rfidgw::station::offline::Replayer;
use rfidgw::store::{NewQueued, QueuedKind, Store};
use rfidgw_driver::Uid;
use rfidgw_driver::transport::PtyPair;
use rfidgw_feig::{FeigSimulator, SimHandle, VirtualTag};
use rfidgw_sip2::acs_sim::{SimConfig, SimItem, SimLogin};
use rfidgw_sip2::{AcsSimulator, Secret, Sip2PeerConfig, Sip2Pool};
use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
use tokio_util::sync::CancellationToken;

/// ISO 28560-3, item 11223344 of DE/705: the template of every item here.
const TEMPLATE: &str = "11010131313232333334340000000000000000513E4445373035000000000000";

const PLAN: &str = "version = 1\nexception_bin = 3\n[bins]\n1 = \"Holds\"\n2 = \"Shelving\"\n3 = \"Exceptions\"\n\
[[rules]]\nname = \"ILS rejections\"\nok = false\nbin = 3\n\
[[rules]]\nname = \"Holds\"\nalert_type = \"01\"\nbin = 1\n\
[[rules]]\nname = \"Everything else\"\nok = true\nbin = 2\n";

const MAP: &str =
    "bins = 3\nbin_full = [0, 1, 2]\njam = 8\ndivert = { kind = \"register\", register = 100 }";

#[derive(Parser)]
struct Args {
    /// Items returned one after another.
    #[arg(long, default_value_t = 100)]
    returns: usize,
    /// Offline checkins queued, then replayed.
    #[arg(long, default_value_t = 1000)]
    replays: usize,
}

fn item_id(n: usize) -> String {
    format!("B{n:05}")
}

/// An ACS with `n` items, all on loan to P1001.
fn acs(n: usize) -> AcsSimulator {
    let items = (0..n)
        .map(|i| SimItem {
            id: item_id(i),
            title: format!("Book {i}"),
            media_type: "001".into(),
            location: "Main".into(),
            bin: None,
            charged_to: Some("P1001".into()),
            hold_for: None,
            transit_to: None,
            fee_cents: 0,
            properties: String::new(),
            missing: false,
        })
        .collect();
    AcsSimulator::new(SimConfig {
        login: Some(SimLogin {
            user: "demo".into(),
            password: Secret::new("demo"),
        }),
        items,
        ..SimConfig::demo()
    })
}

fn memory(item: &str) -> Vec<u8> {
    let site = SiteConfig::default();
    let template = rfidgw_tag::parse_hex(TEMPLATE).unwrap();
    let Some(TagData::Iso28560_3(mut ddm)) =
        rfidgw_tag::decode(&template, &TagHints::default(), &site).data
    else {
        panic!("the template is ISO 28560-3");
    };
    item.clone_into(&mut ddm.basic.primary_item_id);
    rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, &site).unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn row(name: &str, mut values: Vec<u64>) {
    values.sort_unstable();
    println!(
        "{name:<34} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        ms(percentile(&values, 0.5)),
        ms(percentile(&values, 0.99)),
        ms(values.last().copied().unwrap_or(0)),
    );
}

#[allow(clippy::cast_precision_loss)]
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn config(dir: &Path, acs: std::net::SocketAddr, sorter: std::net::SocketAddr) -> Config {
    std::fs::write(dir.join("plan.toml"), PLAN).unwrap();
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        log_level = "warn"
        [api]
        enabled = false
        [ils.sip2]
        addr = "{acs}"
        user = "demo"
        password = "demo"
        institution = "DEMO"
        pool_size = 1
        [[devices]]
        id = "reader"
        driver = "feig"
        [devices.settings.transport]
        kind = "serial"
        path = "{data}/reader"
        [devices.settings.poll]
        poll_interval_ms = 20
        depart_after_polls = 2
        memory_blocks = 8
        [[devices]]
        id = "sorter"
        driver = "modbus"
        [devices.settings.transport]
        kind = "tcp"
        addr = "{sorter}"
        [devices.settings.map]
        {MAP}
        [[stations]]
        id = "returns"
        kind = "return"
        devices = ["reader", "sorter"]
        [stations.returns]
        sorter = "sorter"
        sort_plan = "{data}/plan.toml"
        settle_ms = 50
        "#,
        data = dir.display(),
    );
    Config::parse("figures.toml", &text, std::iter::empty()).unwrap()
}

async fn returns(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let reader = SimHandle::default();
    let pty = PtyPair::open().unwrap();
    std::os::unix::fs::symlink(pty.slave_path(), dir.path().join("reader")).unwrap();
    tokio::spawn(FeigSimulator::from_handle(reader.clone()).serve_pty(pty));
    let map: rfidgw_modbus::map::MapSettings = toml::from_str(MAP).unwrap();
    let sorter = rfidgw_modbus::SorterSimulator::new(
        rfidgw_modbus::RegisterMap::new(&map).unwrap(),
        1,
        rfidgw_modbus::settings::SimulatorSettings {
            capacity: u32::MAX,
            ..Default::default()
        },
    );
    let sorter_addr = sorter
        .spawn_loopback(rfidgw_modbus::Framing::Tcp, stop.clone())
        .await
        .unwrap();
    let (acs_addr, serve) = acs(n).bind("127.0.0.1:0", stop.clone()).await.unwrap();
    tokio::spawn(serve);
    let daemon = Daemon::start(config(dir.path(), acs_addr, sorter_addr))
        .await
        .unwrap();
    daemon.ils().pool().unwrap().wait_online().await;
    let mut station = Vec::new();
    let mut ils = Vec::new();
    let mut total = Vec::new();
    let mut tag = Vec::new();
    let mut divert = Vec::new();
    let mut field = Vec::new();
    for i in 0..n {
        let uid = Uid::new(vec![0xE0, 0x04, 0, 0, 0, 0, (i >> 8) as u8, i as u8]);
        reader.insert_tag(VirtualTag {
            afi: 0xC2,
            memory: memory(&item_id(i)),
            ..VirtualTag::new(uid.clone())
        });
        let entered = Instant::now();
        let record = loop {
            let rows = daemon
                .store()
                .recent(5, Some("item_returned"))
                .await
                .unwrap();
            if let Some(row) = rows.into_iter().find(|r| r.payload["item"] == item_id(i)) {
                break row.payload;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let journaled = entered.elapsed();
        reader.remove_tag(&uid);
        let t = &record["timing"];
        let get = |k: &str| t[k].as_u64().unwrap_or(0);
        station.push(get("total_us") - get("ils_us"));
        ils.push(get("ils_us"));
        total.push(get("total_us"));
        tag.push(get("tag_us"));
        divert.push(get("divert_us"));
        field.push(u64::try_from(journaled.as_micros()).unwrap_or(u64::MAX));
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    println!(
        "returns: {n} items, FEIG on a pty (poll 20 ms, settle 50 ms), Modbus TCP sorter, ACS on loopback"
    );
    row("station share (total - ILS)", station);
    row("  re-secure (write + read-back)", tag);
    row("  divert (until the PLC answered)", divert);
    row("ILS checkin", ils);
    row("total (taken -> PLC answered)", total);
    row("tag in field -> journaled", field);
    daemon.shutdown("figures done").await.unwrap();
    stop.cancel();
}

async fn replays(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (acs_addr, serve) = acs(n).bind("127.0.0.1:0", stop.clone()).await.unwrap();
    tokio::spawn(serve);
    let store = Store::open(&dir.path().join("replay.db")).await.unwrap();
    let at = SystemTime::now();
    for i in 0..n {
        store
            .enqueue(&NewQueued {
                station: "returns".into(),
                kind: QueuedKind::Checkin,
                item_id: item_id(i),
                patron: None,
                at,
                due: None,
            })
            .await
            .unwrap();
    }
    let mut peer = Sip2PeerConfig::new(acs_addr.to_string(), "demo", "demo");
    peer.institution = "DEMO".into();
    peer.pool_size = Some(1);
    let pool = Sip2Pool::start(peer, stop.clone()).unwrap();
    pool.wait_online().await;
    let ils: Arc<dyn IlsConnector> = Arc::new(Sip2Connector::new(pool));
    let (events, mut journal) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while journal.recv().await.is_some() {} });
    let started = Instant::now();
    let replay_stop = CancellationToken::new();
    let task = tokio::spawn(
        Replayer {
            store: store.clone(),
            ils,
            events,
            wake: Arc::new(tokio::sync::Notify::new()),
            pause: Duration::from_millis(10),
        }
        .run(replay_stop.clone()),
    );
    while store.queue_len().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    replay_stop.cancel();
    let _ = task.await;
    #[allow(clippy::cast_precision_loss)]
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "replay: {n} offline checkins in {:.2} s = {rate:.0} transactions/s (one SIP2 connection, loopback, SQLite WAL synchronous=FULL)",
        elapsed.as_secs_f64()
    );
    store.close().await;
    stop.cancel();
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.returns > 0 {
        returns(args.returns).await;
    }
    if args.replays > 0 {
        replays(args.replays).await;
    }
}
