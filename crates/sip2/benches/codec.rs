//! Messages decoded and encoded per second by the SIP2 codec (issue 4 closing note).
//!
//! `cargo bench -p rfidgw-sip2 --bench codec`; criterion prints elements/s = messages/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rfidgw_sip2::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use rfidgw_sip2::frame::{Message, WireFormat};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/sip2-good.tsv"
));

fn frames() -> Vec<Vec<u8>> {
    VECTORS
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split('\t').nth(3))
        .map(|f| {
            let mut bytes = f.as_bytes().to_vec();
            bytes.push(b'\r');
            bytes
        })
        .collect()
}

fn codec_benches(c: &mut Criterion) {
    let frames = frames();
    let stream: Vec<u8> = frames.concat();
    let count = frames.len() as u64;
    let messages: Vec<Message> = frames
        .iter()
        .map(|f| {
            Message::decode(&f[..f.len() - 1], &WireFormat::default())
                .expect("good vector")
                .message
        })
        .collect();

    let mut group = c.benchmark_group("sip2_codec");
    group.throughput(Throughput::Elements(count));
    group.bench_function("decode_20_vectors", |b| {
        let mut codec = Sip2Codec::new(
            WireFormat::default(),
            Terminator::Cr,
            ChecksumPolicy::Strict,
        );
        b.iter(|| {
            let mut buf = BytesMut::from(stream.as_slice());
            let mut n = 0;
            while let Some(item) = codec.decode(&mut buf).expect("no I/O") {
                black_box(item.expect("good frame"));
                n += 1;
            }
            assert_eq!(n, count);
        });
    });
    group.bench_function("encode_20_vectors", |b| {
        let mut codec = Sip2Codec::new(
            WireFormat::default(),
            Terminator::Cr,
            ChecksumPolicy::Strict,
        );
        let mut buf = BytesMut::with_capacity(stream.len() * 2);
        b.iter(|| {
            buf.clear();
            for m in &messages {
                codec.encode(black_box(m), &mut buf).expect("encodable");
            }
            black_box(&buf);
        });
    });
    group.finish();
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
