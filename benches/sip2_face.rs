//! One kiosk's round trip through the SIP2 face (issue 11) against the same exchange
//! straight to the ACS simulator: the latency the face adds to a relayed request.
//!
//! * `sip2_face_round_trip/direct`: a logged-in kiosk connection to the simulator sends
//!   item information (17) and reads the 18.
//! * `sip2_face_round_trip/face`: the same frame through the daemon's face (account
//!   `kiosk1`), which relays it through the ILS connector's pool to the same simulator,
//!   learns from the answer and journals the transaction.
//!
//! Throughput with 1, 16 and 128 concurrent kiosks and the p50/p99 difference are the
//! example's (`cargo run --release --example sip2_face_figures`): criterion times one
//! sequential routine, not many connections at once.
//!
//! Run: `cargo bench --bench sip2_face -- --warm-up-time 1 --measurement-time 5`
//!
//! Measured 2026-12-02 (2 shared cores, `--measurement-time 3`): direct 58.5 µs
//! [52.2, 64.9], face 326 µs [292, 360] per item-information round trip.

use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw_sip2::AcsSimulator;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const ITEM_INFORMATION: &[u8] = b"1720240101    120000AODEMO|ABI0004|AC|\r";

struct Kiosk {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    answer: Vec<u8>,
}

impl Kiosk {
    async fn login(addr: SocketAddr, user: &str, password: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (read, writer) = tcp.into_split();
        let mut kiosk = Self {
            reader: BufReader::new(read),
            writer,
            answer: Vec::new(),
        };
        kiosk
            .exchange(format!("9300CN{user}|CO{password}|\r").as_bytes())
            .await;
        assert_eq!(kiosk.answer, b"941\r");
        kiosk
    }

    async fn exchange(&mut self, frame: &[u8]) {
        self.writer.write_all(frame).await.unwrap();
        self.answer.clear();
        self.reader
            .read_until(b'\r', &mut self.answer)
            .await
            .unwrap();
    }
}

fn config(dir: &std::path::Path, acs: SocketAddr) -> Config {
    let hash = rfidgw_sip2::server::Credential::hash_password(
        &rfidgw_sip2::Secret::new("kiosk1"),
        std::num::NonZeroU32::new(1000).unwrap(),
    );
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
        [[devices]]
        id = "pad"
        driver = "sim"
        settings = {{ round_ms = 100000 }}
        [[stations]]
        id = "selfcheck-1"
        kind = "self-check"
        devices = ["pad"]
        [sip2_server]
        listen = "127.0.0.1:0"
        [[sip2_server.accounts]]
        login = "kiosk1"
        password_hash = "{hash}"
        station = "selfcheck-1"
        "#,
        data = dir.display(),
    );
    Config::parse("sip2-face-bench.toml", &text, std::iter::empty()).unwrap()
}

fn round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let (daemon, mut direct, mut face) = runtime.block_on(async {
        let (acs, serve) = AcsSimulator::demo()
            .bind("127.0.0.1:0", stop.clone())
            .await
            .unwrap();
        tokio::spawn(serve);
        let daemon = Daemon::start(config(dir.path(), acs)).await.unwrap();
        let pool = daemon.ils().pool().unwrap().clone();
        tokio::time::timeout(Duration::from_secs(30), pool.wait_online())
            .await
            .unwrap();
        let direct = Kiosk::login(acs, "demo", "demo").await;
        let face = Kiosk::login(daemon.sip2_face().unwrap().addr, "kiosk1", "kiosk1").await;
        (daemon, direct, face)
    });
    let mut group = c.benchmark_group("sip2_face_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("direct", |b| {
        b.iter(|| runtime.block_on(direct.exchange(ITEM_INFORMATION)));
        assert!(direct.answer.starts_with(b"1804"));
    });
    group.bench_function("face", |b| {
        b.iter(|| runtime.block_on(face.exchange(ITEM_INFORMATION)));
        assert!(face.answer.starts_with(b"1804"));
    });
    group.finish();
    runtime.block_on(daemon.shutdown("bench done")).unwrap();
    stop.cancel();
}

criterion::criterion_group!(benches, round_trip);
criterion::criterion_main!(benches);
