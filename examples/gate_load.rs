//! Issue 8's load figure: many gates at a sustained read rate, measuring how long a read
//! takes to become an output command at the gate's device, and the process RSS meanwhile.
//!
//! The daemon's real device side is built as `rfidgw::app::Daemon::start` builds it: a
//! `DevicePipeline` (registry, tag decoder, presence book) feeding a `StationRunner` with
//! one gate station per simulated reader, before the journal, and the real `run_journal`
//! writer committing every event to a real SQLite store in a temporary directory (so the
//! disk is part of the picture). What is simulated:
//!
//! * the readers: one task stands in for every driver and hands `DeviceReport`s to the
//!   pipeline's channel at the given total rate, round robin over the gates, each arrival
//!   followed by its departure `--dwell-ms` later. Every arrival is a distinct item
//!   (a freshly encoded ISO 28560-3 tag): about half are secured items of ours (AFI 07:
//!   they alarm), a quarter borrowed items of ours (AFI C2) and a quarter foreign items
//!   (DK-715700, secured at home: passed under the default policy);
//! * the output side: each gate's alarm output goes to its reader's `CommandMailbox`,
//!   whose lease a small task serves, timestamping every `Envelope` as it is received and
//!   answering `Done` at once.
//!
//! Latency is from just before the report is handed to the pipeline's channel to the
//! moment the output command is taken from the device's mailbox. An `OutputCommand`
//! carries no UID, so each alarm is matched to its read in order per gate: every secured
//! arrival alarms exactly once (items are distinct), and one gate's reads are
//! `gates / rate` apart (16 ms at the defaults), far more than the latencies measured, so
//! the order cannot change in between.
//!
//! Run: `cargo run --release --example gate_load -- --duration-s 20 --rate 2000 --gates 32`

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use clap::Parser;
use rfidgw::bus::Event;
use rfidgw::config::Config;
use rfidgw::pipeline::{self, DevicePipeline, JournalHealth, Progress};
use rfidgw::registry::Registry;
use rfidgw::station::loans::LoansCache;
use rfidgw::station::{StationContext, StationRunner, StationsStatus};
use rfidgw::store::Store;
use rfidgw_driver::{
    CommandAnswer, CommandMailbox, DeviceEvent, DeviceHandle, DeviceReport, TagRead, Uid,
};
use rfidgw_tag::iso28560_3::DdmTag;
use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// As `rfidgw::app` (its `CHANNEL_CAPACITY`): the capacity of the channels between stages.
const CHANNEL_CAPACITY: usize = 1024;

/// ISO 28560-3, item 11223344 of DE/705 (ours), from tests/vectors/tags.tsv.
const OURS: &str = "11010131313232333334340000000000000000513E4445373035000000000000";
/// ISO 28560-3, item 1234567890 of DK/715700 (foreign), from tests/vectors/tags.tsv.
const FOREIGN: &str = "11010131323334353637383930000000000000D203444B3731353730300000000000";

#[derive(Debug, Parser)]
#[command(about = "Gate stations under a sustained read load: read-to-output latency and RSS")]
struct Args {
    /// How long to measure, in seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Warm-up before measuring, in seconds (samples from it are dropped).
    #[arg(long, default_value_t = 2)]
    warmup_s: u64,
    /// Tag arrivals per second, over all gates together.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Gate stations, each with one simulated reader.
    #[arg(long, default_value_t = 32)]
    gates: usize,
    /// How long each tag stays in its gate's field, in milliseconds.
    #[arg(long, default_value_t = 300)]
    dwell_ms: u64,
    /// Logging: `sink` formats every event as the daemon does (JSON, info) but writes it
    /// nowhere, `off` installs no subscriber, `stderr` logs like the daemon.
    #[arg(long, default_value = "sink")]
    log: String,
    /// Print RSS, journal backlog and reports waiting every second (stderr).
    #[arg(long)]
    progress: bool,
}

/// What an arriving item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Ours, AFI 07: alarms.
    Secured,
    /// Ours, AFI C2: passes.
    Borrowed,
    /// DK-715700's, AFI 07: passes (foreign policy `ignore`).
    Foreign,
}

impl Class {
    /// A deterministic, well-spread mix: half secured, a quarter each of the others.
    fn of(n: u64) -> Self {
        // splitmix64, so the class does not follow the round robin over the gates.
        let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        match (z ^ (z >> 31)) % 4 {
            0 | 1 => Self::Secured,
            2 => Self::Borrowed,
            _ => Self::Foreign,
        }
    }
}

/// Per gate: when each alarming read was handed over, oldest first.
type Pending = Arc<Vec<Mutex<VecDeque<Instant>>>>;
/// (handed over, output received) per alarm.
type Samples = Arc<Mutex<Vec<(Instant, Instant)>>>;

fn config_text(data_dir: &std::path::Path, gates: usize) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "[daemon]\ndata_dir = \"{}\"\n[api]\nenabled = false\n\
         [tags.owners]\nlibraries = [{{ country = \"DE\", library = \"705\" }}]\n",
        data_dir.display()
    );
    for g in 0..gates {
        // The simulated reader's own settings are never used: no device task runs here.
        let _ = write!(
            text,
            r#"
[[devices]]
id = "gate-{g:02}"
driver = "sim"
settings = {{ round_ms = 10000 }}
[[stations]]
id = "exit-{g:02}"
kind = "gate"
devices = ["gate-{g:02}"]
[[stations.gate.alarm.outputs]]
device = "gate-{g:02}"
beeper = "flash"
red = "on"
green = "off"
signal_ms = 2000
relay_ms = 1500
"#
        );
    }
    text
}

fn template(hex: &str, site: &SiteConfig) -> DdmTag {
    let memory = rfidgw_tag::parse_hex(hex).expect("vector hex");
    match rfidgw_tag::decode(&memory, &TagHints::default(), site).data {
        Some(TagData::Iso28560_3(ddm)) => ddm,
        other => panic!("not an ISO 28560-3 vector: {other:?}"),
    }
}

/// The memory of a distinct item: `template` with item id `n`.
fn memory_of(template: &DdmTag, n: u64, site: &SiteConfig) -> Vec<u8> {
    let mut ddm = template.clone();
    ddm.basic.primary_item_id = format!("{n:010}");
    rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, site).expect("encodable")
}

fn uid_of(n: u64) -> Uid {
    let mut bytes = vec![0xE0, 0x04, 0x01, 0x00];
    bytes.extend_from_slice(&(n as u32).to_be_bytes());
    Uid::new(bytes)
}

/// A `/proc/self/status` field in kB (`VmRSS`, `VmHWM`).
fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn install_logging(log: &str) {
    match log {
        "off" => {}
        "stderr" => rfidgw::logging::init("info", rfidgw::config::LogFormat::Json),
        _ => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .json()
                .flatten_event(true)
                .with_writer(std::io::sink)
                .try_init();
        }
    }
}

/// Nearest-rank percentile of sorted samples, in per mille (500 = p50, 999 = p99.9).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let rank = (sorted.len() * per_mille).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn serve_outputs(
    mut lease: rfidgw_driver::CommandLease,
    gate: usize,
    pending: Pending,
    samples: Samples,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(envelope) = lease.recv().await {
            let received = Instant::now();
            let handed = pending[gate]
                .lock()
                .expect("pending lock")
                .pop_front()
                .expect("an output without an alarming read");
            samples
                .lock()
                .expect("samples lock")
                .push((handed, received));
            envelope.answer(Ok(Ok(CommandAnswer::Done)));
        }
    })
}

struct Feed {
    gates: usize,
    rate: u64,
    dwell: Duration,
    until: Instant,
}

/// The simulated readers: arrivals at `rate` over all gates, each departing after `dwell`.
/// Returns (arrivals, alarming arrivals).
async fn feed(
    feed: Feed,
    reports: mpsc::Sender<DeviceReport>,
    pending: Pending,
    site: SiteConfig,
) -> (u64, u64) {
    let ours = template(OURS, &site);
    let foreign = template(FOREIGN, &site);
    let devices: Vec<String> = (0..feed.gates).map(|g| format!("gate-{g:02}")).collect();
    let mut departures: VecDeque<(Instant, usize, Uid)> = VecDeque::new();
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut alarming: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= feed.until {
            break;
        }
        while departures.front().is_some_and(|(due, ..)| *due <= now) {
            let (_, gate, uid) = departures.pop_front().expect("a departure");
            let report = DeviceReport {
                device: devices[gate].clone(),
                at: SystemTime::now(),
                event: DeviceEvent::TagDeparted { uid },
            };
            if reports.send(report).await.is_err() {
                return (n, alarming);
            }
        }
        let due = u64::try_from((now - start).as_nanos() * u128::from(feed.rate) / 1_000_000_000)
            .unwrap_or(u64::MAX);
        while n < due {
            let gate = (n % feed.gates as u64) as usize;
            let class = Class::of(n);
            let (template, afi) = match class {
                Class::Secured => (&ours, 0x07),
                Class::Borrowed => (&ours, 0xC2),
                Class::Foreign => (&foreign, 0x07),
            };
            let uid = uid_of(n);
            let read = TagRead {
                afi: Some(afi),
                dsfid: Some(0),
                memory: Some(memory_of(template, n, &site)),
                ..TagRead::uid_only(uid.clone())
            };
            let report = DeviceReport {
                device: devices[gate].clone(),
                at: SystemTime::now(),
                event: DeviceEvent::TagArrived(read),
            };
            let handed = Instant::now();
            if class == Class::Secured {
                alarming += 1;
                pending[gate]
                    .lock()
                    .expect("pending lock")
                    .push_back(handed);
            }
            if reports.send(report).await.is_err() {
                return (n, alarming);
            }
            departures.push_back((handed + feed.dwell, gate, uid));
            n += 1;
        }
        // Tokio's timer has 1 ms resolution: about two arrivals per wake at 2,000/s.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    (n, alarming)
}

#[allow(clippy::too_many_lines)] // one linear script: build, load, measure, print
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    install_logging(&args.log);
    let dir = tempfile::tempdir()?;
    let config = Config::parse(
        "gate-load.toml",
        &config_text(dir.path(), args.gates),
        std::iter::empty(),
    )?;
    let rss_idle_kb = proc_status_kb("VmRSS:").unwrap_or(0);

    // Wired as Daemon::start wires it (src/app.rs), minus the API, ILS and device tasks.
    let store = Store::open(&config.store_path()).await?;
    let registry = Registry::from_config(&config);
    let (published, _) = broadcast::channel(CHANNEL_CAPACITY);
    let (events, events_rx) = mpsc::channel::<Event>(CHANNEL_CAPACITY);
    let (reports, reports_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let health = JournalHealth::default();
    let journal = tokio::spawn(pipeline::run_journal(
        events_rx,
        store.clone(),
        published,
        Progress::default(),
        config.store.batch_max,
        health.clone(),
    ));

    let pending: Pending = Arc::new((0..args.gates).map(|_| Mutex::default()).collect());
    let samples: Samples = Arc::default();
    let mut mailboxes = Vec::new();
    let mut servers = Vec::new();
    let mut handles = std::collections::HashMap::<String, DeviceHandle>::new();
    for (gate, device) in config.devices.iter().enumerate() {
        let mailbox = CommandMailbox::new(device.id.clone());
        handles.insert(device.id.clone(), mailbox.handle());
        servers.push(serve_outputs(
            mailbox.lend().await,
            gate,
            pending.clone(),
            samples.clone(),
        ));
        mailbox.set_running(true);
        mailboxes.push(mailbox);
    }
    let loans = LoansCache::load(store.clone(), &config.loans).await?;
    let stations = StationsStatus::default();
    let runner = StationRunner::new(
        &config.stations,
        StationContext {
            security: config.tags.security,
            site_has_owners: !config.tags.owners.is_empty(),
            handles,
            loans,
            ils: None,
            events: events.clone(),
            status: stations.clone(),
            circulation: None,
        },
    );
    let (controls, controls_rx) = mpsc::channel(16);
    let device_pipeline = tokio::spawn(
        DevicePipeline {
            registry: registry.clone(),
            decoder: pipeline::site_decoder(config.tags.clone()),
            stations: Box::new(runner),
            journal: events.clone(),
            health: health.clone(),
        }
        .run(reports_rx, controls_rx),
    );

    let warmup = Duration::from_secs(args.warmup_s);
    let measure = Duration::from_secs(args.duration_s);
    let started = Instant::now();
    let measure_from = started + warmup;
    let until = measure_from + measure;
    let feeder = tokio::spawn(feed(
        Feed {
            gates: args.gates,
            rate: args.rate,
            dwell: Duration::from_millis(args.dwell_ms),
            until,
        },
        reports.clone(),
        pending.clone(),
        config.tags.clone(),
    ));

    // RSS, journal backlog and reports waiting, sampled while the load runs.
    let mut rss_kb = Vec::new();
    let mut backlog_max = 0;
    let mut reports_waiting_max = 0;
    tokio::time::sleep_until(measure_from).await;
    let cpu_from = cpu_time();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut looks = 0u32;
    while Instant::now() < until {
        tick.tick().await;
        let rss = proc_status_kb("VmRSS:");
        rss_kb.extend(rss);
        let backlog = health.snapshot().backlog;
        let waiting = CHANNEL_CAPACITY - reports.capacity();
        backlog_max = backlog_max.max(backlog);
        reports_waiting_max = reports_waiting_max.max(waiting);
        looks += 1;
        if args.progress && looks.is_multiple_of(4) {
            eprintln!(
                "{:>5.1} s: RSS {:.1} MiB, journal backlog {backlog}, reports waiting {waiting}",
                (Instant::now() - measure_from).as_secs_f64(),
                mib(rss.unwrap_or(0)),
            );
        }
    }
    let cpu = cpu_time().saturating_sub(cpu_from);
    let (arrivals, alarming) = feeder.await?;

    // Graceful stop as Daemon::shutdown does it: reports, then the pipeline, then journal.
    drop(reports);
    drop(controls);
    device_pipeline.await?;
    drop(events);
    journal.await?;
    let journal_rows = store.journal_len().await?;
    let journal_health = health.snapshot();
    store.close().await;
    drop(mailboxes);
    for server in servers {
        server.abort();
    }
    let rss_hwm_kb = proc_status_kb("VmHWM:").unwrap_or(0);

    let samples = samples.lock().expect("samples lock").clone();
    let mut latencies: Vec<Duration> = samples
        .iter()
        .filter(|(handed, _)| *handed >= measure_from)
        .map(|(handed, received)| *received - *handed)
        .collect();
    latencies.sort();
    let alarms: u64 = stations.gates().values().map(|g| g.alarms).sum();
    let measured_s = measure.as_secs_f64();
    let measured_arrivals = latencies.len();

    println!();
    println!(
        "gate_load: {} gates, {} arrivals/s offered ({} in {:.0} s + {} s warm-up), dwell {} ms, log {}",
        args.gates, args.rate, arrivals, measured_s, args.warmup_s, args.dwell_ms, args.log
    );
    println!(
        "  alarming reads {alarming}, gate alarms {alarms}, output commands received {}",
        samples.len()
    );
    println!(
        "  journal rows {journal_rows}, backlog max {backlog_max}, dropped {}, state {}",
        journal_health.dropped, journal_health.state
    );
    println!("  reports waiting in the pipeline channel, max sampled: {reports_waiting_max}");
    println!();
    println!("| read -> output command ({measured_arrivals} alarms) | value |");
    println!("|---|---|");
    if !latencies.is_empty() {
        for (name, per_mille) in [("p50", 500), ("p99", 990), ("p99.9", 999)] {
            println!(
                "| {name} | {:.3} ms |",
                ms(percentile(&latencies, per_mille))
            );
        }
        println!(
            "| max | {:.3} ms |",
            ms(*latencies.last().expect("samples"))
        );
    }
    let rss_max = rss_kb.iter().copied().max().unwrap_or(0);
    let rss_last = rss_kb.last().copied().unwrap_or(0);
    println!("| RSS before start | {:.1} MiB |", mib(rss_idle_kb));
    println!(
        "| RSS under load (last / max sampled) | {:.1} / {:.1} MiB |",
        mib(rss_last),
        mib(rss_max)
    );
    println!(
        "| RSS high-water mark (VmHWM) | {:.1} MiB |",
        mib(rss_hwm_kb)
    );
    println!(
        "| CPU under load (whole process, incl. the simulated readers) | {:.0} % of one core |",
        100.0 * cpu.as_secs_f64() / measured_s
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn mib(kb: u64) -> f64 {
    f64::from(u32::try_from(kb).unwrap_or(u32::MAX)) / 1024.0
}
