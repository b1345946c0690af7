//! Metrics: an occurrence is logged and counted in one place (once each), and the page of
//! a running daemon counts its reads, decisions, alarms, ILS requests and device restarts,
//! shows device health, queue depths and outbox lag, and is well-formed text format 0.0.4,
//! also as served at `/metrics`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::eventually;
use rfidgw::app::Daemon;
use rfidgw::config::{Config, StationConfig};
use rfidgw::metrics::counts;
use rfidgw::pipeline::{Stations, site_decoder};
use rfidgw::station::loans::LoansCache;
use rfidgw::station::{StationContext, StationRunner, StationsStatus};
use rfidgw_driver::{DeviceEvent, DeviceReport, TagRead, Uid};
use rfidgw_tag::SecurityConfig;

/// ISO 28560-3 user memory of item 11223344 (DE-705), as the gate tests use it.
const MEMORY: &str = "11010131313232333334340000000000000000513E4445373035000000000000";

/// The scraper's API token (role `read`).
const TOKEN: &str = "scrape-token";

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }
}

fn arrival(device: &str, uid: u8, afi: u8) -> (DeviceReport, rfidgw_tag::DecodedTag) {
    let read = TagRead {
        afi: Some(afi),
        memory: Some(hex::decode(MEMORY).unwrap()),
        ..TagRead::uid_only(Uid::new([0xE0, 0x04, uid]))
    };
    let mut decoded = site_decoder(rfidgw_tag::SiteConfig::default())(&read);
    // One item per UID: the gate alarms once per item and passage.
    decoded.item.as_mut().unwrap().primary_item_id = format!("1122334{uid}");
    let report = DeviceReport {
        device: device.into(),
        at: SystemTime::now(),
        event: DeviceEvent::TagArrived(read),
    };
    (report, decoded)
}

#[tokio::test]
async fn a_gate_alarm_is_logged_once_and_counted_once() {
    let station: StationConfig = toml::from_str(
        "id = \"metrics-exit\"\nkind = \"gate\"\ndevices = [\"left\", \"right\"]\n\
         [gate]\nenter_window_ms = 0",
    )
    .unwrap();
    let (events, _journal) = tokio::sync::mpsc::channel(16);
    let mut runner = StationRunner::new(
        &[station],
        StationContext {
            security: SecurityConfig::default(),
            site_has_owners: false,
            handles: HashMap::new(),
            loans: LoansCache::default(),
            ils: None,
            events,
            status: StationsStatus::default(),
            circulation: None,
        },
    );
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .finish();
    let alarms_before = counts::gate_alarms("metrics-exit", "secured");
    let passes_before = counts::gate_decisions("metrics-exit", "pass", "unsecured");
    tracing::subscriber::with_default(subscriber, || {
        // (device, uid, AFI): two secured items, the first seen again by the second
        // pedestal (the same passage: no second alarm), and one item on loan.
        for (device, uid, afi) in [
            ("left", 1, 0x07),
            ("right", 1, 0x07),
            ("left", 2, 0x07),
            ("left", 3, 0xC2),
        ] {
            let (report, tag) = arrival(device, uid, afi);
            runner.on_report(&report, Some(&Arc::new(tag)));
        }
    });
    let alarms = counts::gate_alarms("metrics-exit", "secured") - alarms_before;
    assert_eq!(alarms, 2, "one alarm per item per passage");
    assert_eq!(
        log.lines_with("gate alarm"),
        2,
        "one log line per alarm: {}",
        String::from_utf8_lossy(&log.0.lock().unwrap())
    );
    assert_eq!(
        counts::gate_decisions("metrics-exit", "pass", "unsecured") - passes_before,
        1
    );
    assert_eq!(
        log.lines_with("gate decision"),
        3,
        "two alarms and one pass"
    );
}

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{}"
        [api]
        listen = "127.0.0.1:0"
        [[api.tokens]]
        name = "prometheus"
        role = "read"
        token = "{TOKEN}"
        [ils.simulator]
        listen = "127.0.0.1:0"
        [ils.sip2]
        addr = "simulator"
        user = "demo"
        password = "demo"
        institution = "DEMO"

        [[devices]]
        id = "gate-sim"
        driver = "sim"
        [devices.settings]
        round_ms = 1000
        repeat = false
        [[devices.settings.tags]]
        uid = "E004010031269117"
        afi = "07"
        memory = "{MEMORY}"
        at_ms = 100
        stay_ms = 100

        [[devices]]
        id = "flaky"
        driver = "sim"
        [devices.settings]
        round_ms = 1000
        fail_after_ms = 20

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-sim"]
        [stations.gate]
        leave_window_ms = 50
        enter_window_ms = 0
        "#,
        dir.display()
    );
    Config::parse("metrics.toml", &text, std::iter::empty()).unwrap()
}

/// The page parsed: sample (name with labels) → value; fails the test on any line that
/// is not well-formed text format 0.0.4.
fn parse(page: &str) -> HashMap<String, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut samples = HashMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(helped.insert(name), "HELP twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "sample without TYPE: {line}");
            if typed[family] == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "sample twice: {line}"
            );
        }
    }
    samples
}

/// A GET over plain HTTP/1.1: status, `Content-Type` and body.
async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

fn sum_of(samples: &HashMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_of_a_running_daemon_counts_reads_alarms_ils_requests_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path())).await.unwrap();
    daemon
        .store()
        .cursor_or_create("metrics-test", 0)
        .await
        .unwrap();
    // The alarm, its title lookup at the ILS, and a restart of the flaky device.
    let samples = eventually(
        "the alarm, the title lookup, a restart and the ILS online",
        async || {
            let samples = parse(&daemon.metrics().await);
            let looked_up = sum_of(
                &samples,
                "rfidgw_ils_requests_total{message=\"item_information\"",
            );
            let restarted = samples
                .get("rfidgw_device_restarts_total{device=\"flaky\"}")
                .copied()
                .unwrap_or(0.0);
            let ils_up = samples.get("rfidgw_peer_up{peer=\"ils\"}") == Some(&1.0);
            (looked_up >= 1.0 && restarted >= 1.0 && ils_up).then_some(samples)
        },
    )
    .await;
    let exact = [
        (
            "rfidgw_tag_reads_total{device=\"gate-sim\",result=\"item\"}",
            1.0,
        ),
        (
            "rfidgw_gate_decisions_total{station=\"main-exit\",verdict=\"alarm\",reason=\"secured\"}",
            1.0,
        ),
        (
            "rfidgw_gate_alarms_total{station=\"main-exit\",reason=\"secured\"}",
            1.0,
        ),
        (
            "rfidgw_device_link_changes_total{device=\"gate-sim\",link=\"connected\"}",
            1.0,
        ),
        (
            "rfidgw_device_up{device=\"gate-sim\",driver=\"sim\",station=\"main-exit\"}",
            1.0,
        ),
        (
            "rfidgw_device_state{device=\"gate-sim\",state=\"connected\"}",
            1.0,
        ),
        (
            "rfidgw_device_state{device=\"gate-sim\",state=\"restarting\"}",
            0.0,
        ),
        ("rfidgw_store_readable", 1.0),
        ("rfidgw_offline_queue_length", 0.0),
        ("rfidgw_worklist_open", 0.0),
        ("rfidgw_owed_writes_open{state=\"owed\"}", 0.0),
        ("rfidgw_journal_failing", 0.0),
        (
            "rfidgw_ils_request_duration_seconds_count{message=\"item_information\"}",
            1.0,
        ),
    ];
    for (series, value) in exact {
        assert_eq!(samples.get(series), Some(&value), "{series}");
    }
    let build = format!(
        "rfidgw_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(samples.get(&build), Some(&1.0), "{build}");
    let lookups = sum_of(
        &samples,
        "rfidgw_ils_requests_total{message=\"item_information\"",
    );
    assert_eq!(Some(&lookups), Some(&1.0), "one title lookup, one request");
    assert!(samples["rfidgw_device_failures_total{device=\"flaky\"}"] >= 1.0);
    // The lag of a consumer that has delivered nothing is the whole journal.
    assert_eq!(
        samples.get("rfidgw_outbox_lag_events{consumer=\"metrics-test\"}"),
        samples.get("rfidgw_journal_last_id")
    );
    assert!(samples["rfidgw_journal_last_id"] >= 1.0);

    // The same page at /metrics, to a token that may read.
    let api = daemon.api_addr().unwrap();
    let (status, content_type, body) = get(api, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, rfidgw::metrics::CONTENT_TYPE);
    let served = parse(&body);
    for series in [
        "rfidgw_tag_reads_total{device=\"gate-sim\",result=\"item\"}",
        "rfidgw_gate_alarms_total{station=\"main-exit\",reason=\"secured\"}",
    ] {
        assert_eq!(served.get(series), Some(&1.0), "{series}");
    }
    let (status, _, _) = get(api, "/metrics", None).await;
    assert_eq!(status, 401, "no token, no metrics");
    daemon.shutdown("test").await.unwrap();
}
