//! Figures for the REST API (issue 10): latency of `GET /api/v1/events` under load, and
//! the live stream's delivery lag (journal commit → SSE client).
//!
//! ```text
//! cargo run --release --example api_figures [-- CLIENTS SECONDS EVENTS]
//! ```
//!
//! Starts a daemon on a temporary store with a simulated gate (a steady stream of reads),
//! then
//! 1. runs CLIENTS keep-alive HTTP/1.1 clients (default 8) for SECONDS (default 10), each
//!    asking `GET /api/v1/events?limit=100` back to back, and prints the latency
//!    percentiles and the request rate;
//! 2. opens `GET /api/v1/events/stream?kind=gate_silenced` and journals EVENTS (default
//!    500) silence changes through the API, 10 ms apart; each event's `time` is taken in
//!    the journal writer right before its commit, so receive time − `time` is the lag from
//!    commit to client (to the millisecond the format carries).
//!
//! Everything runs on 127.0.0.1 and stops by itself.

// Sample counts and percentiles: the casts stay far inside the exact range.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rfidgw::app::Daemon;
use rfidgw::config::Config;

const TOKEN: &str = "figures-token";

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{}"
        log_level = "warn"
        [api]
        listen = "127.0.0.1:0"
        [[api.tokens]]
        name = "figures"
        role = "operate"
        token = "{TOKEN}"
        rate_limit = {{ per_second = 1000000.0, burst = 1000000 }}

        [[devices]]
        id = "gate-sim"
        driver = "sim"
        [devices.settings]
        round_ms = 100
        [[devices.settings.tags]]
        uid = "E004010031269117"
        afi = "C2"
        memory = "11010131313232333334340000000000000000513E4445373035000000000000"
        at_ms = 0
        stay_ms = 40

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-sim"]
        "#,
        dir.display()
    );
    Config::parse("api-figures.toml", &text, std::iter::empty()).expect("config")
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

fn request(method: &str, path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .expect("request")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn show(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(samples.last().copied().unwrap_or_default()),
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(8);
    let seconds = args.get(1).copied().unwrap_or(10);
    let events = args.get(2).copied().unwrap_or(500);
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(config(dir.path())).await.expect("daemon");
    let addr = daemon.api_addr().expect("API address");
    // Some history for the listing to page through.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. The events listing under load.
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut took = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let response = sender
                    .send_request(request("GET", "/api/v1/events?limit=100"))
                    .await
                    .expect("answer");
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.expect("body");
                took.push(started.elapsed());
            }
            took
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("client"));
    }
    let rate = samples.len() as f64 / seconds as f64;
    println!(
        "GET /api/v1/events?limit=100, {clients} keep-alive clients for {seconds} s: {rate:.0} requests/s"
    );
    show("  latency", samples);

    // 2. The live stream's lag, commit to client.
    let mut stream = connect(addr).await;
    let response = stream
        .send_request(request("GET", "/api/v1/events/stream?kind=gate_silenced"))
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let reader = tokio::spawn(async move {
        let mut buffer = String::new();
        let mut lags = Vec::new();
        while lags.len() < usize::try_from(events).unwrap_or(usize::MAX) {
            let Some(Ok(frame)) = body.frame().await else {
                break;
            };
            let received = SystemTime::now();
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let Some(json) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let event: serde_json::Value = serde_json::from_str(json).expect("event");
                let at = time::OffsetDateTime::parse(
                    event["time"].as_str().expect("time"),
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("RFC 3339");
                let at = SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0));
                lags.push(received.duration_since(at).unwrap_or_default());
            }
        }
        lags
    });
    let mut control = connect(addr).await;
    for n in 0..events {
        let method = if n % 2 == 0 { "POST" } else { "DELETE" };
        let response = control
            .send_request(request(method, "/api/v1/stations/main-exit/silence"))
            .await
            .expect("silence");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("body");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lags = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("every event arrives")
        .expect("reader");
    println!("SSE delivery lag (journal commit → client), {events} events 10 ms apart:");
    show("  lag", lags);
    daemon.shutdown("figures done").await.expect("shutdown");
}
