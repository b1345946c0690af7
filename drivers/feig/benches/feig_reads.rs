//! FEIG driver figures for issue 5's closing note.
//!
//! * `inventory/…` (criterion): one driver's inventory round trips against the simulator
//!   over an in-memory stream, PSST 0, with 1 and 10 tags in the field; tag reads per
//!   second = tags per inventory / time per inventory.
//! * `inventory_pty_10_tags/…` (criterion): the same over a real pty through the serial
//!   transport, with PSST 0 and with FEIG's 5 ms PSST.
//! * `arrival_read` (criterion): the once-per-presence reads of one tag (8 blocks + AFI).
//! * latency (printed after criterion): over a real pty, from the simulator handing the
//!   last reply before an arrival to the pty, to the `TagArrived` event on the bus, p50 and
//!   p99 over many arrivals, with the ISO-Host timing rules on (PSST 5 ms).
//!
//! Run: `cargo bench -p rfidgw-feig --bench feig_reads`.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use rfidgw_driver::transport::{self, PtyPair, SerialConfig, TransportConfig};
use rfidgw_driver::{Device, DeviceEvent, DeviceEventSink, HfReader, LineStats, Uid};
use rfidgw_feig::driver::Timing;
use rfidgw_feig::{FeigDevice, FeigReader, FeigSettings, FeigSimulator, SimHandle, VirtualTag};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn tag(n: u64) -> VirtualTag {
    let mut uid = vec![0xE0, 0x04, 0x01];
    uid.extend_from_slice(&n.to_be_bytes()[3..]);
    VirtualTag::new(Uid::new(uid))
}

fn fast_reader(tags: usize) -> FeigReader<tokio::io::DuplexStream> {
    let sim = FeigSimulator::new((0..tags as u64).map(tag).collect());
    let timing = Timing {
        reply_timeout: Duration::from_secs(1),
        psst: Duration::ZERO,
        inter_char_gap: None,
    };
    FeigReader::new(sim.spawn_duplex(), 0xFF, timing, LineStats::new())
}

async fn pty_reader(tags: usize, psst: Duration) -> FeigReader<transport::BoxTransport> {
    let pty = PtyPair::open().unwrap();
    let config = TransportConfig::Serial(SerialConfig {
        path: pty.slave_path().to_owned(),
        baud: None,
        parity: None,
        data_bits: None,
        stop_bits: None,
    });
    let sim = FeigSimulator::new((0..tags as u64).map(tag).collect());
    tokio::spawn(sim.serve_pty(pty));
    let port = transport::open(&config, rfidgw_feig::settings::LINE_DEFAULTS, || {
        Err(transport::TransportError::NoSimulator)
    })
    .await
    .unwrap();
    let timing = Timing {
        reply_timeout: Duration::from_secs(1),
        psst,
        inter_char_gap: Some(rfidgw_feig::codec::INTER_CHARACTER_GAP),
    };
    FeigReader::new(port, 0xFF, timing, LineStats::new())
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("inventory");
    for tags in [1usize, 10] {
        let mut reader = rt.block_on(async { fast_reader(tags) });
        group.throughput(Throughput::Elements(tags as u64));
        group.bench_function(format!("{tags}_tags"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let seen = reader.inventory(None).await.unwrap().unwrap();
                    assert_eq!(seen.len(), tags);
                });
            });
        });
    }
    group.finish();

    // The same over a real pty through the serial transport, with the ISO-Host timing
    // rules off (the driver's and the pty's own cost) and on (PSST 5 ms, 12 ms gap rule).
    let mut group = c.benchmark_group("inventory_pty_10_tags");
    group.throughput(Throughput::Elements(10));
    for (name, psst) in [
        ("psst_0ms", Duration::ZERO),
        ("psst_5ms", Duration::from_millis(5)),
    ] {
        let mut reader = rt.block_on(async { pty_reader(10, psst).await });
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    assert_eq!(reader.inventory(None).await.unwrap().unwrap().len(), 10);
                });
            });
        });
    }
    group.finish();

    let mut reader = rt.block_on(async { fast_reader(1) });
    let uid = tag(0).uid;
    c.bench_function("arrival_read", |b| {
        b.iter(|| {
            rt.block_on(async {
                reader.read_blocks(&uid, 0, 8).await.unwrap().unwrap();
                reader.read_afi(&uid).await.unwrap().unwrap();
            });
        });
    });
}

/// p50/p99 from the last reader frame before an arrival to the event on the bus, over a pty.
fn latency_over_pty(samples: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("rfidgw-feig-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("usb-FEIG-bench-if00");
        let pty = PtyPair::open().unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(pty.slave_path(), &link).unwrap();
        let sim = SimHandle::default();
        tokio::spawn(FeigSimulator::from_handle(sim.clone()).serve_pty(pty));

        let mut settings = FeigSettings::new(TransportConfig::Serial(SerialConfig {
            path: link.clone(),
            baud: None,
            parity: None,
            data_bits: None,
            stop_bits: None,
        }));
        settings.poll.poll_interval_ms = 20;
        settings.poll.depart_after_polls = 1;
        settings.poll.memory_blocks = 8;
        let (tx, mut rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        let device = Box::new(FeigDevice::new(settings).unwrap());
        let task = tokio::spawn(device.run(DeviceEventSink::new("bench", tx), cancel.clone()));

        let mut latencies = Vec::with_capacity(samples);
        for n in 0..samples {
            let t = tag(n as u64);
            let uid = t.uid.clone();
            sim.insert_tag(t);
            loop {
                let report = rx.recv().await.unwrap();
                if let DeviceEvent::TagArrived(read) = report.event {
                    let at_bus = tokio::time::Instant::now();
                    let last = sim.last_reply_at().unwrap();
                    assert_eq!(read.uid, uid);
                    latencies.push(at_bus - last);
                    break;
                }
            }
            sim.remove_tag(&uid);
            loop {
                if let DeviceEvent::TagDeparted { .. } = rx.recv().await.unwrap().event {
                    break;
                }
            }
        }
        cancel.cancel();
        task.await.unwrap().unwrap();
        sim.unplug();
        let _ = std::fs::remove_dir_all(&dir);

        latencies.sort();
        // Nearest-rank percentile: the `percent`th of every hundred, counted from the start.
        let pick = |percent: usize| latencies[((latencies.len() - 1) * percent).div_ceil(100)];
        println!(
            "latency last reader frame -> TagArrived on the bus over a pty ({} arrivals): p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            pick(50),
            pick(99),
            latencies.last().unwrap()
        );
    });
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
    latency_over_pty(if test_mode { 5 } else { 500 });
}
