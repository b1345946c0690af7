//! Decode throughput per model: one `decode` call per iteration (`Throughput::Elements(1)`,
//! so criterion reports decodes per second).
//!
//! Run: `cargo bench -p rfidgw-tag --bench decode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rfidgw_tag::uhf::EpcLayout;
use rfidgw_tag::{SiteConfig, TagHints, decode, parse_hex};

fn cases() -> Vec<(&'static str, Vec<u8>, TagHints)> {
    let hex = |s: &str| parse_hex(s).unwrap_or_default();
    let hf = TagHints {
        uhf: Some(false),
        afi: Some(0x07),
        ..TagHints::default()
    };
    let uhf = TagHints {
        uhf: Some(true),
        ..TagHints::default()
    };
    vec![
        (
            "iso28560-3",
            hex("11010131313232333334340000000000000000513E4445373035000000000000"),
            hf.clone(),
        ),
        (
            "iso28560-3-block-reversed",
            hex("31010111333232310034343300000000510000003745443E0000353000000000"),
            hf.clone(),
        ),
        (
            "iso28560-2",
            hex("9100051CBE991A140201D0140204B34607441CB6E2E335D6830207ACC09EBAA06F6B0000"),
            hf.clone(),
        ),
        (
            "rfid501",
            hex("0411000032303039303130313031323300000000FFFFFFFF7FFFFFFF00000000"),
            hf.clone(),
        ),
        ("epc-sgtin96", hex("3074257BF7194E4000001A85"), uhf.clone()),
        (
            "epc-site-de290",
            hex("19E9F871000000000012D687AABBCC01"),
            uhf,
        ),
        (
            "unknown",
            hex("1101013131323233333434000000000000000000004445373035000000000000"),
            hf,
        ),
    ]
}

fn bench_decode(c: &mut Criterion) {
    let site = SiteConfig {
        epc_layouts: vec![EpcLayout::de290()],
        ..SiteConfig::default()
    };
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, memory, hints) in cases() {
        group.bench_function(name, |b| {
            b.iter(|| decode(black_box(&memory), black_box(&hints), &site));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
