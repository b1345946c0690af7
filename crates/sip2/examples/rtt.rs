//! Round-trip latency the SIP2 client adds over a raw socket, against the local ACS
//! simulator (issue 4 closing note).
//!
//! `cargo run --release -p rfidgw-sip2 --example rtt [-- ITERATIONS]`
//!
//! Both paths send the same 17 Item Information to the same simulator over loopback TCP,
//! interleaved: "raw" writes pre-encoded bytes and reads up to the CR; "client" goes through
//! the pool handle (mpsc + oneshot to the connection task, encode, AY/AZ, decode, typed
//! response). Reported: p50/p90/p99 of each and the difference at p50 and p99.

use std::time::{Duration, Instant};

use rfidgw_sip2::acs_sim::AcsSimulator;
use rfidgw_sip2::client::{Connector, Sip2Pool};
use rfidgw_sip2::dialect::Sip2PeerConfig;
use rfidgw_sip2::frame::{Trailer, WireFormat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[Duration], permille: usize) -> Duration {
    let index = sorted.len().saturating_sub(1) * permille / 1000;
    sorted.get(index).copied().unwrap_or_default()
}

fn report(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p50 = percentile(&samples, 500);
    let p99 = percentile(&samples, 990);
    println!(
        "{name:>6}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        p50,
        percentile(&samples, 900),
        p99,
        samples.last().copied().unwrap_or_default()
    );
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args().nth(1).map_or(Ok(5_000), |a| a.parse())?;
    let token = CancellationToken::new();
    let (addr, serve) = AcsSimulator::demo()
        .bind("127.0.0.1:0", token.clone())
        .await?;
    tokio::spawn(serve);
    let mut config = Sip2PeerConfig::new(addr.to_string(), "demo", "demo");
    config.institution = "DEMO".into();
    config.pool_size = Some(1);

    // Raw socket (the demo ACS does not insist on a login): the same pre-encoded 17 frame.
    let connector = Connector::new(config.clone())?;
    let mut request = connector.requests().item_information("I0004");
    request.trailer = Trailer::Sequence(1);
    let mut frame = request.encode(&WireFormat::default())?;
    frame.push(b'\r');
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut buf = vec![0u8; 4096];
    let pool = Sip2Pool::start(config, token.clone())?;
    pool.wait_online().await;

    // Interleaved, so background load hits both paths alike.
    let mut raw = Vec::with_capacity(iterations);
    let mut client = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        tcp.write_all(&frame).await?;
        let mut n = 0;
        loop {
            n += tcp.read(&mut buf[n..]).await?;
            if buf[..n].ends_with(b"\r") {
                break;
            }
        }
        raw.push(start.elapsed());

        let start = Instant::now();
        let info = pool.item_information("I0004").await?;
        client.push(start.elapsed());
        assert_eq!(info.circulation_status, 4);
    }
    let (raw_p50, raw_p99) = report("raw", raw);
    let (client_p50, client_p99) = report("client", client);
    println!(
        "client adds: p50 {:?}, p99 {:?}",
        client_p50.saturating_sub(raw_p50),
        client_p99.saturating_sub(raw_p99)
    );
    token.cancel();
    Ok(())
}
