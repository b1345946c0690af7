//! Issue 8's patron figure: from a tag entering a gate's field to the `[71]` output command
//! arriving at the reader, with the whole daemon (`Daemon::start` on a config) driving a
//! FEIG reader that is the FEIG simulator on the other end of a real pty, as in
//! `tests/gate_pty.rs`. FEIG's PSST stays at its 5 ms default; the pty moves bytes without
//! a baud rate, so the serial line's own transfer time (38400 baud, 8E1) is not in these
//! figures.
//!
//! For each mode (poll with a few `poll_interval_ms`, FEIG notification mode), `--reps`
//! passages of distinct secured items of ours (each alarms once): after a pseudo-random
//! pause (so entries fall anywhere in the poll cycle) the item enters the field, stays
//! until the `[71]` frame has arrived, then leaves and the daemon sees it leave.
//!
//! The simulator keeps no timestamp per output frame, so this thread polls
//! `SimHandle::outputs()` (and the registry's `tags_present`, for the moment the pipeline
//! has the arrival) in a tight loop with a short sleep; the mean loop period is printed as
//! the resolution.
//!
//! Run: `cargo run --release --example gate_field_latency -- --reps 40`
//! Modes: `--modes poll:20,poll:50,poll:100,notify:2000`; after a mode, `:afi` adds
//! `inventory_afi = "07"` and `:inputs` adds `poll_inputs = true` (a gate that counts
//! people, as the demo gate does), e.g. `poll:20:inputs`.
//!
//! `--stay-ms 25` takes every item out of the field 25 ms after it entered, whether the
//! `[71]` frame came or not: the table then counts passages the gate saw (and alarmed on)
//! whose frame never reached the reader ("silent").

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw::registry::DeviceState;
use rfidgw_driver::Uid;
use rfidgw_driver::transport::PtyPair;
use rfidgw_feig::{FeigSimulator, SimHandle, VirtualTag};
use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints};

/// ISO 28560-3, item 11223344 of DE/705 (ours), from tests/vectors/tags.tsv.
const OURS: &str = "11010131313232333334340000000000000000513E4445373035000000000000";

/// Longest wait for anything (start, an output, a departure) before giving up on it.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(about = "Time from a tag entering a simulated FEIG gate's field to the [71] frame")]
struct Args {
    /// Passages per mode.
    #[arg(long, default_value_t = 40)]
    reps: usize,
    /// Modes: `poll:<poll_interval_ms>` or `notify:<notify_wait_ms>`, comma separated;
    /// append `:afi` for `inventory_afi = "07"`, `:inputs` for `poll_inputs = true`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "poll:20,poll:50,poll:100,notify:2000"
    )]
    modes: Vec<String>,
    /// Sleep between two looks at the simulator, in microseconds.
    #[arg(long, default_value_t = 100)]
    look_every_us: u64,
    /// Print every passage's figures (stderr).
    #[arg(long)]
    raw: bool,
    /// Take each item out of the field this long after it entered, in milliseconds, even
    /// if no `[71]` frame came yet (a quick patron, a reader that sees a tag only briefly).
    /// Without it, an item stays until its `[71]` frame arrived.
    #[arg(long)]
    stay_ms: Option<u64>,
}

/// One way to run the gate's reader.
#[derive(Clone, Debug)]
struct Mode {
    label: String,
    notify: bool,
    /// poll_interval_ms (poll) or notify_wait_ms (notify).
    ms: u64,
    /// `inventory_afi = "07"` (only secured items answer an inventory).
    afi_filter: bool,
    /// `poll_inputs = true`: a `[74]` after every inventory (people counting).
    inputs: bool,
}

impl Mode {
    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let kind = parts.next().unwrap_or_default();
        let ms = parts
            .next()
            .and_then(|ms| ms.parse().ok())
            .ok_or_else(|| format!("`{text}`: give milliseconds, e.g. poll:20"))?;
        let (mut afi_filter, mut inputs) = (false, false);
        for option in parts {
            match option {
                "afi" => afi_filter = true,
                "inputs" => inputs = true,
                other => return Err(format!("`{text}`: unknown option `{other}`")),
            }
        }
        let notify = match kind {
            "poll" => false,
            "notify" => true,
            other => return Err(format!("`{text}`: `{other}` is not poll or notify")),
        };
        Ok(Self {
            label: text.to_owned(),
            notify,
            ms,
            afi_filter,
            inputs,
        })
    }

    /// The `[devices.settings.poll]` table for this mode.
    fn poll_table(&self) -> String {
        let afi = if self.afi_filter {
            "inventory_afi = \"07\"\n"
        } else {
            ""
        };
        if self.notify {
            format!(
                "mode = \"notify\"\nnotify_wait_ms = {}\npoll_interval_ms = 20\n\
                 depart_after_polls = 1\nmemory_blocks = 8\n{afi}",
                self.ms
            )
        } else {
            format!(
                "mode = \"poll\"\npoll_interval_ms = {}\ndepart_after_polls = 2\n\
                 memory_blocks = 8\n{afi}",
                self.ms
            )
        }
    }
}

fn config(dir: &Path, link: &Path, mode: &Mode) -> Config {
    // The gate of tests/gate_pty.rs; only the read mode changes. PSST: default (5 ms).
    let text = format!(
        r#"
        [daemon]
        data_dir = "{data}"
        [api]
        enabled = false
        [tags.owners]
        libraries = [{{ country = "DE", library = "705" }}]

        [[devices]]
        id = "gate-left"
        driver = "feig"
        [devices.settings.transport]
        kind = "serial"
        path = "{link}"
        [devices.settings.poll]
        {poll}
        [devices.settings.driver]
        reply_timeout_ms = 500
        poll_inputs = {inputs}

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-left"]
        [stations.gate]
        leave_window_ms = 300
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
        poll = mode.poll_table(),
        inputs = mode.inputs,
    );
    Config::parse("gate-field-latency.toml", &text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Tag memory of our item `item`: `OURS` with its item id replaced.
fn ours(item: &str, site: &SiteConfig) -> Vec<u8> {
    let memory = rfidgw_tag::parse_hex(OURS).expect("vector hex");
    let Some(TagData::Iso28560_3(mut ddm)) =
        rfidgw_tag::decode(&memory, &TagHints::default(), site).data
    else {
        panic!("OURS is ISO 28560-3");
    };
    item.clone_into(&mut ddm.basic.primary_item_id);
    rfidgw_tag::encode(&TagData::Iso28560_3(ddm), ByteOrder::AsRead, site).expect("encodable")
}

/// Polls `probe` every `every` until it holds or `PATIENCE` passed; returns when it held
/// and how many looks it took.
fn wait_for(every: Duration, mut probe: impl FnMut() -> bool) -> Option<(Instant, u64)> {
    let started = Instant::now();
    let mut looks = 0;
    loop {
        looks += 1;
        if probe() {
            return Some((Instant::now(), looks));
        }
        if started.elapsed() >= PATIENCE {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// The figures of one mode.
struct Figures {
    /// Field entry → `[71]` frame at the reader.
    to_output: Vec<Duration>,
    /// Field entry → the arrival in the pipeline (registry `tags_present`).
    to_pipeline: Vec<Duration>,
    /// The arrival in the pipeline → `[71]` frame at the reader (decision, command path,
    /// the read loop's next chance to send it, PSST, the frame).
    after_pipeline: Vec<Duration>,
    /// Passages without a `[71]` frame within `PATIENCE`.
    missed: usize,
    /// Of those, passages whose arrival the pipeline had (so the gate alarmed) but whose
    /// `[71]` frame never reached the reader.
    silent: usize,
    /// Mean time between two looks at the simulator.
    look_period: Duration,
}

fn tags_present(daemon: &Daemon) -> usize {
    daemon
        .registry()
        .snapshot()
        .iter()
        .find(|d| d.id == "gate-left")
        .map_or(0, |d| d.tags_present)
}

/// The simulated reader with `reps` distinct secured items of ours, out of its field.
fn reader_with_items(reps: usize) -> (SimHandle, Vec<Uid>) {
    let sim = SimHandle::default();
    let site: SiteConfig =
        toml::from_str("[owners]\nlibraries = [{ country = \"DE\", library = \"705\" }]")
            .expect("a valid [tags] section");
    let uids: Vec<Uid> = (0..reps)
        .map(|n| {
            let uid = Uid::new(vec![0xE0, 0x04, 0x01, 0x00, 0x00, 0x00, 0x10, n as u8]);
            sim.insert_tag(VirtualTag {
                afi: 0x07,
                memory: ours(&format!("{:08}", 50_000_000 + n), &site),
                ..VirtualTag::new(uid.clone())
            });
            sim.set_in_field(&uid, false);
            uid
        })
        .collect();
    (sim, uids)
}

fn run_mode(rt: &tokio::runtime::Runtime, mode: &Mode, reps: usize, args: &Args) -> Figures {
    let every = Duration::from_micros(args.look_every_us);
    let stay = args.stay_ms.map(Duration::from_millis);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let link = dir.path().join("usb-FEIG_ID_CPR-if00-port0");
    let (sim, uids) = reader_with_items(reps);
    let reader = {
        let _runtime = rt.enter();
        let pty = PtyPair::open().expect("a pty");
        std::os::unix::fs::symlink(pty.slave_path(), &link).expect("a symlink to the pty");
        rt.spawn(FeigSimulator::from_handle(sim.clone()).serve_pty(pty))
    };
    let daemon = rt
        .block_on(Daemon::start(config(dir.path(), &link, mode)))
        .expect("the daemon starts");
    let connected = || {
        daemon
            .registry()
            .snapshot()
            .iter()
            .any(|d| d.id == "gate-left" && d.state == DeviceState::Connected)
            && daemon.handles()["gate-left"].is_running()
    };
    wait_for(Duration::from_millis(10), connected).expect("the reader connects");

    // Entry times spread over a poll cycle (and more), from a fixed-seed LCG.
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut jitter = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Duration::from_micros((seed >> 33) % 200_000)
    };
    let mut figures = Figures {
        to_output: Vec::with_capacity(reps),
        to_pipeline: Vec::with_capacity(reps),
        after_pipeline: Vec::with_capacity(reps),
        missed: 0,
        silent: 0,
        look_period: Duration::ZERO,
    };
    let (mut looks, mut looking) = (0u64, Duration::ZERO);
    for uid in &uids {
        std::thread::sleep(jitter());
        let before = sim.outputs().len();
        let mut in_pipeline = None;
        let entered = Instant::now();
        sim.set_in_field(uid, true);
        let mut in_field = true;
        let output = wait_for(every, || {
            if in_pipeline.is_none() && tags_present(&daemon) > 0 {
                in_pipeline = Some(Instant::now());
            }
            if in_field && stay.is_some_and(|stay| entered.elapsed() >= stay) {
                sim.set_in_field(uid, false);
                in_field = false;
            }
            sim.outputs().len() > before
        });
        if let Some((at, n)) = output {
            figures.to_output.push(at - entered);
            looks += n;
            looking += at - entered;
        } else {
            figures.missed += 1;
            figures.silent += usize::from(in_pipeline.is_some());
        }
        if let Some(at) = in_pipeline {
            figures.to_pipeline.push(at - entered);
        }
        if let (Some(pipeline), Some((output, _))) = (in_pipeline, output) {
            figures
                .after_pipeline
                .push(output.saturating_duration_since(pipeline));
        }
        if args.raw {
            let since = |at: Option<Instant>| at.map_or(f64::NAN, |at| ms(at - entered));
            eprintln!(
                "{} {uid}: field->pipeline {:.1} ms, field->[71] {:.1} ms",
                mode.label,
                since(in_pipeline),
                since(output.map(|(at, _)| at)),
            );
        }
        sim.set_in_field(uid, false);
        wait_for(Duration::from_millis(2), || tags_present(&daemon) == 0).expect("the departure");
    }
    figures.look_period = looking / u32::try_from(looks.max(1)).unwrap_or(u32::MAX);
    rt.block_on(async {
        daemon.shutdown("done").await.expect("a clean shutdown");
        sim.unplug();
        let _ = reader.await;
    });
    figures
}

/// Nearest-rank percentile of sorted samples, in per mille (500 = p50, 990 = p99).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let rank = (sorted.len() * per_mille).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn main() {
    let args = Args::parse();
    let modes: Vec<Mode> = args
        .modes
        .iter()
        .map(|m| Mode::parse(m).unwrap_or_else(|e| panic!("--modes: {e}")))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut rows = Vec::new();
    for mode in &modes {
        eprintln!("{}: {} passages…", mode.label, args.reps);
        let mut figures = run_mode(&rt, mode, args.reps, &args);
        figures.to_output.sort();
        figures.to_pipeline.sort();
        figures.after_pipeline.sort();
        rows.push((mode, figures));
    }
    println!();
    println!(
        "field -> [71] at the reader, FEIG simulator over a pty, PSST 5 ms, {} passages per mode",
        args.reps
    );
    println!(
        "| mode | field->pipeline p50 | pipeline->[71] p50 | field->[71] p50 | p90 | p99 | max | over 500 ms | missed (seen, silent) | resolution |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (mode, f) in rows {
        if f.to_output.is_empty() {
            println!(
                "| {} | - | - | - | - | - | - | - | {} ({}) | - |",
                mode.label, f.missed, f.silent
            );
            continue;
        }
        let p50 = |samples: &[Duration]| {
            if samples.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1} ms", ms(percentile(samples, 500)))
            }
        };
        let over = f
            .to_output
            .iter()
            .filter(|d| **d > Duration::from_millis(500))
            .count();
        println!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} ({}) | {:.2} ms |",
            mode.label,
            p50(&f.to_pipeline),
            p50(&f.after_pipeline),
            ms(percentile(&f.to_output, 500)),
            ms(percentile(&f.to_output, 900)),
            ms(percentile(&f.to_output, 990)),
            ms(*f.to_output.last().expect("samples")),
            over,
            f.missed,
            f.silent,
            ms(f.look_period),
        );
    }
}
