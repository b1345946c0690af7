//! The live event stream (SSE) and the events listing against a running daemon: resuming
//! with `Last-Event-ID` across a daemon restart on the same store, with no gap and no
//! duplicate; filters; the listing's cursor; TLS.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use common::PATIENCE;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rfidgw::app::Daemon;
use rfidgw::config::Config;
use serde_json::Value;

const TOKEN: &str = "dashboard-token";

fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
        [daemon]
        data_dir = "{}"
        [api]
        listen = "127.0.0.1:0"
        {extra}
        [api.rate_limit]
        per_second = 1000.0
        burst = 1000
        [[api.tokens]]
        name = "dashboard"
        role = "read"
        token = "{TOKEN}"

        [[devices]]
        id = "gate-sim"
        driver = "sim"
        [devices.settings]
        round_ms = 60
        [[devices.settings.tags]]
        uid = "E004010031269117"
        afi = "C2"
        memory = "11010131313232333334340000000000000000513E4445373035000000000000"
        at_ms = 0
        stay_ms = 20

        [[stations]]
        id = "main-exit"
        kind = "gate"
        devices = ["gate-sim"]
        "#,
        dir.display()
    );
    Config::parse("api-events.toml", &text, std::iter::empty()).unwrap()
}

/// One event off the stream.
#[derive(Debug)]
struct Received {
    id: i64,
    kind: String,
    data: Value,
}

/// A Server-Sent Events reader over one HTTP/1.1 connection.
struct Stream {
    body: Incoming,
    buffer: String,
}

impl Stream {
    async fn open(addr: SocketAddr, query: &str, last_event_id: Option<i64>) -> (u16, Self) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = hyper::Request::get(format!("/api/v1/events/stream{query}"))
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {TOKEN}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 200 {
            assert_eq!(response.headers()["content-type"], "text/event-stream");
        }
        (
            status,
            Self {
                body: response.into_body(),
                buffer: String::new(),
            },
        )
    }

    /// The next event; `None` when the stream ended.
    async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("id", v)) => id = v.trim().parse().ok(),
                        Some(("event", v)) => kind = Some(v.trim().to_owned()),
                        Some(("data", v)) => data = serde_json::from_str(v.trim()).ok(),
                        // Comments (keep-alive) and anything else.
                        _ => {}
                    }
                }
                if let (Some(id), Some(kind), Some(data)) = (id, kind, data) {
                    return Some(Received { id, kind, data });
                }
                continue;
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .expect("the stream went silent")?;
            if let Ok(data) = frame.unwrap().into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

/// A GET with the dashboard's token; status and JSON.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_the_stream_across_a_daemon_restart_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), "")).await.unwrap();
    let addr = daemon.api_addr().unwrap();
    // From the beginning of the journal: daemon_started is id 1.
    let (status, mut stream) = Stream::open(addr, "?after=0", None).await;
    assert_eq!(status, 200);
    let mut seen: Vec<i64> = Vec::new();
    while seen.len() < 8 {
        let event = stream.next().await.expect("events while running");
        assert_eq!(event.data["id"], event.id, "id: is the public event's id");
        assert_eq!(event.data["kind"], event.kind.as_str());
        assert_eq!(event.data["v"], 1);
        seen.push(event.id);
    }
    assert_eq!(seen[0], 1);
    // The daemon stops: the stream carries everything up to daemon_stopping, then ends.
    daemon.shutdown("test restart").await.unwrap();
    let mut kinds = Vec::new();
    while let Some(event) = stream.next().await {
        seen.push(event.id);
        kinds.push(event.kind);
    }
    assert!(kinds.iter().any(|k| k == "daemon_stopping"), "{kinds:?}");
    let before_restart = *seen.last().unwrap();

    // Same store, new daemon, new port: resume after the last id received.
    let daemon = Daemon::start(config(dir.path(), "")).await.unwrap();
    let addr = daemon.api_addr().unwrap();
    let (status, mut stream) = Stream::open(addr, "?after=1", Some(before_restart)).await;
    assert_eq!(status, 200, "Last-Event-ID wins over ?after=");
    let first = stream.next().await.unwrap();
    assert_eq!(first.id, before_restart + 1, "no gap");
    assert_eq!(
        first.kind, "daemon_started",
        "the restart is the next event"
    );
    seen.push(first.id);
    for _ in 0..5 {
        seen.push(stream.next().await.unwrap().id);
    }
    // Exactly the journal's ids, each once, in order.
    let newest = *seen.last().unwrap();
    let journal: Vec<i64> = daemon
        .store()
        .journal_after(0, newest, &rfidgw::store::JournalFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .filter(|id| *id <= newest)
        .collect();
    assert_eq!(seen, journal, "no gap, no duplicate");
    assert_eq!(seen, (1..=newest).collect::<Vec<_>>());

    // Filters: only the gate's arrivals.
    let (_, mut arrivals) =
        Stream::open(addr, "?after=0&kind=tag_arrived&station=main-exit", None).await;
    for _ in 0..3 {
        let event = arrivals.next().await.unwrap();
        assert_eq!(
            (event.kind.as_str(), event.data["station"].as_str()),
            ("tag_arrived", Some("main-exit"))
        );
        assert_eq!(event.data["uid"], "E004010031269117");
    }
    // Without a cursor the stream starts with the next event.
    let now = daemon.store().journal_last_id().await.unwrap().unwrap();
    let (_, mut live) = Stream::open(addr, "", None).await;
    assert!(live.next().await.unwrap().id > now);
    // A bad cursor is a 400; no token a 401.
    let (status, _) = Stream::open(addr, "?after=-5", None).await;
    assert_eq!(status, 400);
    daemon.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_listing_follows_the_journal_with_its_cursor_and_people_and_devices_show() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), "")).await.unwrap();
    let addr = daemon.api_addr().unwrap();
    common::eventually("eight events", async || {
        let (_, page) = get(addr, "/api/v1/events?after=0").await;
        (page["events"].as_array()?.len() >= 8).then_some(())
    })
    .await;
    let (_, page) = get(addr, "/api/v1/events?after=0&limit=5").await;
    assert_eq!(page["events"][0]["kind"], "daemon_started");
    assert_eq!(page["next"], 5);
    let (_, more) = get(addr, "/api/v1/events?after=5&limit=3").await;
    assert_eq!(
        (&more["events"][0]["id"], &more["next"]),
        (&6.into(), &8.into()),
        "{more}"
    );
    let (status, body) = get(addr, "/api/v1/events?limit=1001").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &"bad_request".into())
    );
    let (status, devices) = get(addr, "/api/v1/devices").await;
    assert_eq!(status, 200);
    assert_eq!(devices[0]["id"], "gate-sim");
    assert_eq!(devices[0]["station"], "main-exit");
    let (status, people) = get(addr, "/api/v1/people").await;
    assert_eq!((status, people.is_array()), (200, true), "{people}");
    let (status, version) = get(addr, "/api/v1/version").await;
    assert_eq!((status, &version["event_format"]), (200, &1.into()));
    daemon.shutdown("test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("api.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("api.key"), key.serialize_pem()).unwrap();
    let tls = format!(
        "[api.tls]\ncert_file = \"{0}/api.crt\"\nkey_file = \"{0}/api.key\"\n",
        dir.path().display()
    );
    let daemon = Daemon::start(config(dir.path(), &tls)).await.unwrap();
    let addr = daemon.api_addr().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/api/v1/version")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["api"], "v1");
    daemon.shutdown("test").await.unwrap();
}
