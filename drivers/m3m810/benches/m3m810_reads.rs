//! 3M 810 benchmarks.
//!
//! * `decode`: inventory replies (3 tags each) decoded per second by the codec.
//! * `sim_duplex`: inventory + 8-block read round trips per second, driver against the
//!   virtual pad over `tokio::io::duplex`.
//! * `sim_pty`: the same round trip over a real pty pair.
//! * after the criterion groups, `pty latency`: a 3M device (shared read loop) on a pty; a
//!   tag is put on the virtual pad, and the time from the last byte of the pad's last reply
//!   (the AFI read that completes the arrival) to the `TagArrived` event on the bus is
//!   measured over many arrivals; p50/p99 and arrivals per second are printed.
//!
//! Run: `cargo bench -p rfidgw-3m810 --bench m3m810_reads`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use rfidgw_3m810::codec::{Decoder, M3m810Codec};
use rfidgw_3m810::frame::{InventoryTag, Reply};
use rfidgw_3m810::{DriverConfig, M3m810Device, M3m810Reader, M3m810Settings, SimPad, VirtualTag};
use rfidgw_driver::{Device, DeviceEvent, DeviceEventSink, HfReader, Uid};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

fn tag(n: u8) -> VirtualTag {
    let mut uid = UID;
    uid[7] = n;
    VirtualTag {
        afi: 0x07,
        memory: (0u8..112).collect(),
        ..VirtualTag::new(uid)
    }
}

fn decode(c: &mut Criterion) {
    const FRAMES: usize = 1000;
    let reply = Reply::Inventory {
        afi: 0,
        options: 0x05,
        tags: (1..=3)
            .map(|n| InventoryTag {
                dsfid: None,
                uid: Some(tag(n).uid),
            })
            .collect(),
    };
    let one = reply.to_frame().to_bytes().unwrap();
    let stream: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * FRAMES)
        .collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("inventory_replies_3_tags", |b| {
        b.iter(|| {
            let mut codec = M3m810Codec::default();
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                black_box(Reply::parse(&frame, rfidgw_3m810::frame::ReadStyle::Old).unwrap());
                n += 1;
            }
            assert_eq!(n, FRAMES);
        });
    });
    group.finish();
}

async fn round_trip<T>(reader: &mut M3m810Reader<T>, uid: &Uid)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let seen = reader.inventory(None).await.unwrap().unwrap();
    assert_eq!(seen.len(), 1);
    let memory = reader.read_blocks(uid, 0, 8).await.unwrap().unwrap();
    assert_eq!(memory.len(), 32);
}

fn sim_round_trips(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let uid = Uid::new(tag(1).uid);
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));

    let pad = SimPad::new();
    pad.place(tag(1));
    let mut reader =
        runtime.block_on(async { M3m810Reader::new(pad.spawn_duplex(), DriverConfig::default()) });
    group.bench_function("inventory_and_read_8_blocks_duplex", |b| {
        b.iter(|| runtime.block_on(round_trip(&mut reader, &uid)));
    });

    let pty_pad = SimPad::new();
    pty_pad.place(tag(1));
    let mut pty_reader = runtime.block_on(async {
        let path = pty_pad.serve_on_pty().unwrap();
        let config = rfidgw_driver::transport::SerialConfig {
            path,
            baud: None,
            parity: None,
            data_bits: None,
            stop_bits: None,
        };
        let stream =
            rfidgw_driver::transport::serial::open(&config, rfidgw_3m810::settings::LINE_DEFAULTS)
                .unwrap();
        M3m810Reader::new(stream, DriverConfig::default())
    });
    group.bench_function("inventory_and_read_8_blocks_pty", |b| {
        b.iter(|| runtime.block_on(round_trip(&mut pty_reader, &uid)));
    });
    group.finish();
}

/// Arrival latency over a pty through the shared read loop, as percentiles.
fn pty_latency() {
    const ARRIVALS: u32 = 400;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pad = SimPad::new();
        let path = pad.serve_on_pty().unwrap();
        let settings: M3m810Settings = toml::from_str(&format!(
            "[transport]\nkind = \"serial\"\npath = \"{}\"\n[poll]\npoll_interval_ms = 1\ndepart_after_polls = 1\nmemory_blocks = 8\nhealth_interval_ms = 60000",
            path.display()
        ))
        .unwrap();
        let device = Box::new(M3m810Device::new(settings).unwrap());
        let (tx, mut bus) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(device.run(DeviceEventSink::new("bench", tx), cancel.clone()));
        let mut latencies = Vec::with_capacity(ARRIVALS as usize);
        let started = Instant::now();
        for i in 0..ARRIVALS {
            let t = tag(u8::try_from(i % 200).unwrap_or(0));
            let uid = t.uid;
            pad.place(t);
            loop {
                if let DeviceEvent::TagArrived(read) = bus.recv().await.unwrap().event {
                    let now = Instant::now();
                    assert_eq!(read.uid.as_bytes(), uid);
                    latencies.push(now - pad.last_reply_at().unwrap());
                    break;
                }
            }
            pad.remove(&uid);
            loop {
                if let DeviceEvent::TagDeparted { .. } = bus.recv().await.unwrap().event {
                    break;
                }
            }
        }
        let elapsed = started.elapsed();
        cancel.cancel();
        let _ = task.await;
        latencies.sort();
        let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        println!(
            "pty latency (last reply byte -> TagArrived on the bus) over {ARRIVALS} arrivals: \
             p50 {:?}, p99 {:?}, max {:?}; {:.0} arrive+depart cycles/s \
             (each: inventory, 2 block reads, AFI read, inventory)",
            pct(50),
            pct(99),
            latencies.last().copied().unwrap_or(Duration::ZERO),
            f64::from(ARRIVALS) / elapsed.as_secs_f64()
        );
    });
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    decode(&mut criterion);
    sim_round_trips(&mut criterion);
    criterion.final_summary();
    // `cargo test --benches` runs benches in test mode with `--test`: skip the long run.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        pty_latency();
    }
}
