//! Journal throughput: events committed per second (each commit is durable,
//! `synchronous=FULL`), by batch size. Every event the daemon handles goes through here.
//!
//! Run: `cargo bench --bench journal -- --warm-up-time 1 --measurement-time 5`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rfidgw::store::{JournalEntry, Store};
use serde_json::json;

fn entries(n: usize) -> Vec<JournalEntry> {
    (0..n)
        .map(|i| {
            let mut entry = JournalEntry::new(
                "tag_arrived",
                json!({"uid": format!("E0040100{i:08X}"), "afi": 7, "memory": "1101013131"}),
            );
            entry.device = Some("gate-reader".into());
            entry.station = Some("main-exit".into());
            entry
        })
        .collect()
}

fn journal_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime
        .block_on(Store::open(&dir.path().join("bench.db")))
        .unwrap();
    let mut group = c.benchmark_group("journal_append");
    for batch in [1usize, 16, 256] {
        let batch_entries = entries(batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch),
            &batch_entries,
            |b, e| {
                b.iter(|| runtime.block_on(store.append(e)).unwrap());
            },
        );
    }
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, journal_append);
criterion_main!(benches);
