//! The gate's hot path per tag read (issue 8): how long the pure decision takes, and with it
//! the gate's presence bookkeeping and the tag decoder, for a secured item of ours, a
//! borrowed item of ours and a foreign (interlibrary loan) item, all ISO 28560-3 tags from
//! `tests/vectors/tags.tsv` in AFI security mode.
//!
//! * `decide/…`: `station::gate::decide` on an already decoded tag.
//! * `gate_arrived/…`: `Gate::arrived` for a new presence on a gate that already has a
//!   dozen tags in it (about what 2,000 reads/s over 32 gates leave in each); the alarm
//!   case builds its alarm record and output command too.
//! * `gate_reread`: the same tag seen by the gate's second pedestal (no new presence).
//! * `decode_decide/…`: `rfidgw_tag::decode` of the tag memory, then `decide`.
//! * `decode_decide_arrived/…`: the whole per-read work of a gate before any I/O.
//!
//! Run: `cargo bench --bench gate -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};
use rfidgw::station::gate::{
    AlarmConfig, AlarmOutput, AlarmReason, Gate, GateConfig, GatePolicy, PassReason, Sighting,
    Verdict, decide,
};
use rfidgw_driver::{Signal, Uid};
use rfidgw_tag::{DecodedTag, SiteConfig, TagHints};
use tokio::time::Instant;

const VECTORS: &str = include_str!("../tests/vectors/tags.tsv");

/// One item class of the benchmark: the tag as the reader hands it over.
struct Case {
    name: &'static str,
    memory: Vec<u8>,
    hints: TagHints,
}

/// The tag memory of a `tags.tsv` row, by its id.
fn vector(id: &str) -> Vec<u8> {
    let row = VECTORS
        .lines()
        .find(|line| line.split('\t').next() == Some(id))
        .unwrap_or_else(|| panic!("no row `{id}` in tests/vectors/tags.tsv"));
    let hex = row.split('\t').nth(2).expect("a hex column");
    rfidgw_tag::parse_hex(hex).expect("the vector's hex")
}

fn cases() -> Vec<Case> {
    let uid = |n: u8| vec![0xE0, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, n];
    let hints = |n: u8, afi: u8| TagHints {
        uid: Some(uid(n)),
        afi: Some(afi),
        dsfid: Some(0),
        ..TagHints::default()
    };
    vec![
        // DE/705 is ours (site below); AFI 07 = secured, C2 = on loan (the defaults).
        Case {
            name: "secured",
            memory: vector("ddm-libdanrfid"),
            hints: hints(1, 0x07),
        },
        Case {
            name: "borrowed",
            memory: vector("ddm-libdanrfid"),
            hints: hints(2, 0xC2),
        },
        // DK/715700 is another library's item, secured at its home: the default foreign
        // policy lets it pass.
        Case {
            name: "foreign",
            memory: vector("ddm-synthetic-dk"),
            hints: hints(3, 0x07),
        },
    ]
}

fn site() -> SiteConfig {
    toml::from_str("[owners]\nlibraries = [{ country = \"DE\", library = \"705\" }]")
        .expect("a valid [tags] section")
}

fn gate_config() -> GateConfig {
    GateConfig {
        alarm: AlarmConfig {
            outputs: vec![AlarmOutput {
                device: "gate-left".into(),
                beeper: Signal::Flash,
                red: Signal::On,
                green: Signal::Off,
                signal_ms: 2_000,
                relay_ms: 1_500,
            }],
            ..Default::default()
        },
        ..GateConfig::default()
    }
}

/// A gate with `present` tags in it, each of its own item.
fn busy_gate(present: u32, now: Instant) -> Gate {
    let mut gate = Gate::new(gate_config(), now);
    let pass = Verdict::Pass(PassReason::Unsecured);
    for n in 0..present {
        let mut bytes = vec![0xE0, 0x04, 0x02, 0x00];
        bytes.extend_from_slice(&n.to_be_bytes());
        let item = format!("9{n:09}");
        gate.arrived("gate-left", &Uid::new(bytes), pass, Some(&item), now);
    }
    gate
}

/// What the gate knows of a tag seen with no loans cache and no owed write.
fn on_shelf(tag: &DecodedTag) -> Sighting<'_> {
    Sighting {
        tag,
        on_loan: None,
        loan_write_owed: false,
    }
}

fn gate(c: &mut Criterion) {
    let site = site();
    let policy = GatePolicy::default();
    let security = site.security;
    let owners = true;
    let now = Instant::now();

    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    for case in cases() {
        let tag = rfidgw_tag::decode(&case.memory, &case.hints, &site);
        group.bench_function(case.name, |b| {
            b.iter(|| {
                let sighting = on_shelf(black_box(&tag));
                decide(sighting, &security, &policy, owners)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("gate_arrived");
    group.throughput(Throughput::Elements(1));
    for case in cases() {
        let tag = rfidgw_tag::decode(&case.memory, &case.hints, &site);
        let verdict = decide(on_shelf(&tag), &security, &policy, owners);
        let uid = Uid::new(case.hints.uid.clone().expect("a UID"));
        let item = tag.item.as_ref().map(|i| i.primary_item_id.clone());
        group.bench_function(case.name, |b| {
            b.iter_batched_ref(
                || busy_gate(12, now),
                |gate| {
                    gate.arrived("gate-left", &uid, verdict, item.as_deref(), now)
                        .1
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    let uid = Uid::new(vec![0xE0, 0x04, 0x01, 0, 0, 0, 0, 9]);
    let alarm = Verdict::Alarm(AlarmReason::Secured);
    c.bench_function("gate_reread", |b| {
        b.iter_batched_ref(
            || {
                let mut gate = busy_gate(12, now);
                gate.arrived("gate-left", &uid, alarm, Some("11223344"), now);
                gate
            },
            |gate| {
                gate.arrived("gate-right", &uid, alarm, Some("11223344"), now)
                    .1
            },
            BatchSize::SmallInput,
        );
    });

    let mut group = c.benchmark_group("decode_decide");
    group.throughput(Throughput::Elements(1));
    for case in cases() {
        group.bench_function(case.name, |b| {
            b.iter(|| {
                let tag = rfidgw_tag::decode(black_box(&case.memory), &case.hints, &site);
                let sighting = on_shelf(&tag);
                decide(sighting, &security, &policy, owners)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode_decide_arrived");
    group.throughput(Throughput::Elements(1));
    for case in cases() {
        let uid = Uid::new(case.hints.uid.clone().expect("a UID"));
        group.bench_function(case.name, |b| {
            b.iter_batched_ref(
                || busy_gate(12, now),
                |gate| {
                    let tag = rfidgw_tag::decode(black_box(&case.memory), &case.hints, &site);
                    let item = tag.item.as_ref().map(|i| i.primary_item_id.as_str());
                    let sighting = on_shelf(&tag);
                    let verdict = decide(sighting, &security, &policy, owners);
                    gate.arrived("gate-left", &uid, verdict, item, now).1
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    gate(&mut c);
    c.final_summary();
}
