//! Figures for the SIP2 face (issue 11): transactions per second through the face to the
//! ACS simulator with 1, 16 and 128 concurrent kiosks, and the latency the face adds over
//! talking to the simulator directly.
//!
//! ```text
//! cargo run --release --example sip2_face_figures [-- SECONDS POOL]
//! ```
//!
//! Starts the in-project ACS simulator (the demo library plus one free item per kiosk)
//! and a daemon on a temporary store whose face (account `kiosk1`, counting as a
//! self-check station) relays to it through the ILS connector's pool of POOL connections
//! (default 8). Then, for 1, 16 and 128 kiosks, each kiosk its own TCP connection and
//! login, every kiosk borrows and returns its own item back to back (checkout + checkin
//! pairs, lock-step as kiosks are) for SECONDS (default 5):
//!
//! 1. **direct**: the kiosks talk to the simulator itself;
//! 2. **face**: the same client and frames, through the face (relay, journal, loans cache).
//!
//! Printed per run: transactions per second (each request-answer exchange is one), p50
//! and p99 of the exchange latency, and the difference face − direct. Everything runs in
//! one process on 127.0.0.1 (client, face and simulator share the machine's cores) and
//! stops by itself. Each answer is checked (121 / 101), so a figure never counts refusals.
//!
//! Measured 2026-12-02 (2 shared cores, the workspace tests running beside; defaults),
//! before and after the loans cache got one writer task (each change had been its own
//! SQLite commit racing the journal writer for the write lock; the losers slept in
//! SQLite's busy handler, which made the face's p99 tail):
//!
//! ```text
//!  kiosks | direct tx/s p50 p99 ms |   face tx/s p50 p99 ms |  added p50 p99 ms
//! before
//!       1 |   51381   0.02    0.06 |    1716   0.05    0.69 |     0.03     0.63
//!      16 |   74315   0.18    0.76 |    2045   0.73  138.59 |     0.54   137.82
//!     128 |   67775   1.56    6.61 |    1402  13.29  586.78 |    11.73   580.17
//! after
//!       1 |   49124   0.02    0.07 |    8339   0.05    0.68 |     0.03     0.61
//!      16 |   71312   0.19    0.81 |    8531   0.64   29.28 |     0.46    28.47
//!     128 |   76197   1.38    6.06 |    6866  12.44   84.34 |    11.06    78.28
//! ```
//!
//! The tail left at 16 and 128 kiosks (tens of ms) was not looked into further; the
//! face journals every transaction, the direct path writes nothing.

// Sample counts and percentiles: the casts stay far inside the exact range.
#![allow(clippy::cast_precision_loss)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rfidgw::app::Daemon;
use rfidgw::config::Config;
use rfidgw_sip2::AcsSimulator;
use rfidgw_sip2::acs_sim::{SimConfig, SimItem};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

/// Concurrent kiosks per run.
const KIOSK_COUNTS: [usize; 3] = [1, 16, 128];

/// One kiosk: a TCP connection, logged in, lock-step.
struct Kiosk {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    answer: Vec<u8>,
}

impl Kiosk {
    async fn login(addr: SocketAddr, user: &str, password: &str) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (read, writer) = tcp.into_split();
        let mut kiosk = Self {
            reader: BufReader::new(read),
            writer,
            answer: Vec::new(),
        };
        kiosk
            .exchange(format!("9300CN{user}|CO{password}|\r").as_bytes())
            .await;
        assert_eq!(kiosk.answer, b"941\r", "login as {user}");
        kiosk
    }

    /// Sends one frame and reads its answer into `self.answer`.
    async fn exchange(&mut self, frame: &[u8]) {
        self.writer.write_all(frame).await.expect("send");
        self.answer.clear();
        let n = self
            .reader
            .read_until(b'\r', &mut self.answer)
            .await
            .expect("answer");
        assert!(n > 0, "the peer closed the connection");
    }
}

fn item(n: usize) -> String {
    format!("B{n:04}")
}

/// The demo library with one free item per kiosk.
fn library(kiosks: usize) -> SimConfig {
    let mut library = SimConfig::demo();
    for n in 0..kiosks {
        library.items.push(SimItem {
            id: item(n),
            title: "Benchmark copy".into(),
            media_type: "001".into(),
            location: "Main Library".into(),
            bin: None,
            charged_to: None,
            hold_for: None,
            transit_to: None,
            fee_cents: 0,
            properties: String::new(),
            missing: false,
        });
    }
    library
}

fn config(dir: &std::path::Path, acs: SocketAddr, pool: usize, kiosks: usize) -> Config {
    let hash = rfidgw_sip2::server::Credential::hash_password(
        &rfidgw_sip2::Secret::new("kiosk1"),
        std::num::NonZeroU32::new(1000).expect("iterations"),
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
        pool_size = {pool}

        [[devices]]
        id = "pad"
        driver = "sim"
        settings = {{ round_ms = 100000 }}
        [[stations]]
        id = "selfcheck-1"
        kind = "self-check"
        devices = ["pad"]
        [stations.offline]
        mode = "checkin-checkout"

        [sip2_server]
        listen = "127.0.0.1:0"
        max_connections = {max}
        [[sip2_server.accounts]]
        login = "kiosk1"
        password_hash = "{hash}"
        station = "selfcheck-1"
        "#,
        data = dir.display(),
        max = kiosks + 16,
    );
    Config::parse("sip2-face-figures.toml", &text, std::iter::empty()).expect("config")
}

/// What one run measured.
struct Run {
    exchanges: usize,
    elapsed: Duration,
    samples: Vec<Duration>,
}

/// `kiosks` kiosks log in to `addr` and borrow and return their items for `length`.
async fn run(addr: SocketAddr, login: (&str, &str), kiosks: usize, length: Duration) -> Run {
    let start = Arc::new(Barrier::new(kiosks + 1));
    let mut tasks = Vec::new();
    for n in 0..kiosks {
        let start = start.clone();
        let (user, password) = (login.0.to_owned(), login.1.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut kiosk = Kiosk::login(addr, &user, &password).await;
            let item = item(n);
            let checkout =
                format!("11YN20240101    120000                  AODEMO|AAP1001|AB{item}|AC|\r");
            let checkin =
                format!("09N20240101    12000020240101    120000AP|AODEMO|AB{item}|AC|\r");
            let mut samples = Vec::new();
            start.wait().await;
            let until = Instant::now() + length;
            while Instant::now() < until {
                for (frame, ok) in [(&checkout, b"121"), (&checkin, b"101")] {
                    let sent = Instant::now();
                    kiosk.exchange(frame.as_bytes()).await;
                    samples.push(sent.elapsed());
                    assert!(
                        kiosk.answer.starts_with(ok),
                        "{item}: {}",
                        String::from_utf8_lossy(&kiosk.answer)
                    );
                }
            }
            samples
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("kiosk"));
    }
    let elapsed = began.elapsed();
    samples.sort();
    Run {
        exchanges: samples.len(),
        elapsed,
        samples,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil();
    // A rank within 1..=len (the clamp makes the cast exact).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = rank.clamp(1.0, sorted.len() as f64) as usize;
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Run {
    fn rate(&self) -> f64 {
        self.exchanges as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, p: f64) -> Duration {
        percentile(&self.samples, p)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(5);
    let pool = usize::try_from(args.get(1).copied().unwrap_or(8)).expect("pool size");
    let length = Duration::from_secs(seconds);
    let most = KIOSK_COUNTS.iter().copied().max().unwrap_or(1);

    let stop = CancellationToken::new();
    let (acs, serve) = AcsSimulator::new(library(most))
        .bind("127.0.0.1:0", stop.clone())
        .await
        .expect("simulator");
    tokio::spawn(serve);
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(config(dir.path(), acs, pool, most))
        .await
        .expect("daemon");
    let face = daemon.sip2_face().expect("face").addr;
    let upstream = daemon.ils().pool().expect("ILS").clone();
    tokio::time::timeout(Duration::from_secs(30), upstream.wait_online())
        .await
        .expect("the ILS online");

    println!(
        "SIP2 face figures: checkout + checkin pairs, {seconds} s per run, face -> ACS simulator \
         through a pool of {pool} connections; {} CPUs",
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    );
    println!(
        "{:>7} | {:>22} | {:>22} | {:>17}",
        "kiosks", "direct tx/s p50 p99 ms", "face tx/s p50 p99 ms", "added p50 p99 ms"
    );
    for kiosks in KIOSK_COUNTS {
        let direct = run(acs, ("demo", "demo"), kiosks, length).await;
        let through = run(face, ("kiosk1", "kiosk1"), kiosks, length).await;
        println!(
            "{kiosks:>7} | {:>7.0} {:>6.2} {:>7.2} | {:>7.0} {:>6.2} {:>7.2} | {:>8.2} {:>8.2}",
            direct.rate(),
            ms(direct.p(50.0)),
            ms(direct.p(99.0)),
            through.rate(),
            ms(through.p(50.0)),
            ms(through.p(99.0)),
            ms(through.p(50.0)) - ms(direct.p(50.0)),
            ms(through.p(99.0)) - ms(direct.p(99.0)),
        );
    }
    daemon.shutdown("figures done").await.expect("shutdown");
    stop.cancel();
}
