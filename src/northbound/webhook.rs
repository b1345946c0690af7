//! Webhooks: each `[[webhooks]]` entry is an outbox consumer `webhook:<name>` that POSTs
//! public events to a URL, **one event per request** (the body is the event's JSON, exactly
//! as in `docs/events.md`), in journal order.
//!
//! One event per request keeps the receiver simple: one signature per event, the
//! `X-Rfidgw-Event-Id` header is the natural de-duplication key, and a failing event
//! blocks only itself. A library's event rate (a few per second at the busiest gate) is far
//! below what one HTTP/1.1 connection, kept alive between requests, carries.
//!
//! A request succeeds on a 2xx answer; anything else (another status, a redirect, a
//! refused or broken connection, no answer within `timeout_ms`) is retried with capped
//! exponential backoff, forever: the cursor never passes an event the receiver has not
//! taken, so delivery is at least once and in order. Events the hook's filters leave out
//! are passed over (the cursor moves past them).
//!
//! With a secret, `X-Rfidgw-Signature: sha256=<hex>` carries HMAC-SHA256 of the exact body
//! under the secret; a receiver recomputes it over the bytes it received.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::delivery::{Backoff, Secret, SetupError, Streak, tls_client_config};
use super::event::PublicEvent;
use super::outbox::Consumer;

/// The prefix of a webhook's outbox consumer name: `webhook:<name>`.
pub const WEBHOOK_CONSUMER_PREFIX: &str = "webhook:";
/// `sha256=<hex>`: HMAC-SHA256 of the body under the hook's secret.
pub const SIGNATURE_HEADER: &str = "x-rfidgw-signature";
/// The event's id (the journal id): a receiver's de-duplication key.
pub const EVENT_ID_HEADER: &str = "x-rfidgw-event-id";
/// The event's kind, for receivers that route without parsing the body.
pub const EVENT_KIND_HEADER: &str = "x-rfidgw-event-kind";

/// How many events a hook reads from the outbox at once (it still posts them one by one).
const READ_AHEAD: u32 = 100;
/// The most of a response body read (and thrown away) to keep the connection usable.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// One `[[webhooks]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name: letters, digits, `-` and `_` (in logs and the consumer name).
    pub name: String,
    /// Where events are POSTed: `http://…` or `https://…`.
    pub url: String,
    /// The signing secret (prefer `secret_file`); without one, no signature header.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A file holding the signing secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Only these kinds (empty: every kind).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only events of these stations (empty: every event, with or without a station).
    #[serde(default)]
    pub stations: Vec<String>,
    /// How long one request may take, connecting included, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest pause between attempts, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// For `https`: the receiver's CA certificate(s), PEM; default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_backoff_max_ms() -> u64 {
    60_000
}

impl WebhookConfig {
    /// The hook's outbox consumer: `webhook:<name>`.
    pub fn consumer(&self) -> String {
        format!("{WEBHOOK_CONSUMER_PREFIX}{}", self.name)
    }

    /// Files named in the entry are found relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for file in [&mut self.secret_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            *file = base.join(&*file);
        }
    }

    /// The key and problem of an unusable entry.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.name.is_empty() || !self.name.chars().all(name_ok) {
            return Err((
                "webhooks.name".into(),
                format!(
                    "`{}` is not a usable name: letters, digits, `-` and `_` only",
                    self.name
                ),
            ));
        }
        let key = |field: &str| format!("webhooks.{}.{field}", self.name);
        let target = Target::parse(&self.url).map_err(|problem| (key("url"), problem))?;
        if self.secret.is_some() && self.secret_file.is_some() {
            return Err((
                key("secret_file"),
                "give the secret or a secret_file, not both".into(),
            ));
        }
        if self.ca_file.is_some() && !target.https {
            return Err((
                key("ca_file"),
                "a CA file belongs to an https:// URL".into(),
            ));
        }
        if self.timeout_ms == 0 {
            return Err((key("timeout_ms"), "must be at least 1".into()));
        }
        if self.backoff_max_ms == 0 {
            return Err((key("backoff_max_ms"), "must be at least 1".into()));
        }
        if self
            .kinds
            .iter()
            .chain(&self.stations)
            .any(String::is_empty)
        {
            return Err((
                key("kinds"),
                "kinds and stations hold names; leave a list empty to take everything".into(),
            ));
        }
        Ok(())
    }
}

/// Checks every entry and that names are unique.
pub fn validate_webhooks(hooks: &[WebhookConfig]) -> Result<(), (String, String)> {
    let mut names = HashSet::new();
    for hook in hooks {
        hook.validate()?;
        if !names.insert(hook.name.as_str()) {
            return Err((
                format!("webhooks.{}", hook.name),
                "two webhooks have this name; names must be unique".into(),
            ));
        }
    }
    Ok(())
}

/// Which events a hook takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    kinds: HashSet<String>,
    stations: HashSet<String>,
}

impl Filter {
    /// A filter on kinds and stations (empty: no condition).
    pub fn new(kinds: &[String], stations: &[String]) -> Self {
        Self {
            kinds: kinds.iter().cloned().collect(),
            stations: stations.iter().cloned().collect(),
        }
    }

    /// Whether the hook takes `event`.
    pub fn matches(&self, event: &PublicEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && (self.stations.is_empty()
                || event
                    .station
                    .as_ref()
                    .is_some_and(|s| self.stations.contains(s)))
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// Where requests go, from the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    /// Host to connect to (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// Path and query.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{url}` must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` names no host"))?;
        if authority.as_str().contains('@') {
            return Err(
                "user names and passwords do not belong in the URL; the receiver can check the signature".into(),
            );
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        Ok(Self {
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// `https://host:port`, for logs (a URL's path may hold a token; it is never logged).
    fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[source] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[source] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One receiver over one kept-alive HTTP/1.1 connection (opened again when it broke).
struct Endpoint {
    target: Target,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Endpoint {
    fn new(target: Target, ca_file: Option<&Path>, key: &str) -> Result<Self, SetupError> {
        let tls = if target.https {
            let mut config = tls_client_config(ca_file, key)?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| SetupError::new(key, format!("{}: {e}", target.host)))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            target,
            tls,
            connection: None,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, PostError> {
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(PostError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(PostError::Tls)?;
                handshake(tls).await
            }
            None => handshake(tcp).await,
        }
    }

    /// POSTs `body`; the status the receiver answered.
    async fn post(
        &mut self,
        body: Bytes,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<StatusCode, PostError> {
        // Taken out: a request that fails or times out leaves no connection behind.
        let reused = self.connection.is_some();
        let mut sender = match self.connection.take() {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        if sender.ready().await.is_err() {
            if !reused {
                return Err(PostError::Connect(
                    std::io::ErrorKind::ConnectionReset.into(),
                ));
            }
            // The receiver closed the idle connection: open another one.
            sender = self.connect().await?;
            sender.ready().await.map_err(PostError::Http)?;
        }
        let mut request = Request::post(self.target.path.as_str())
            .header(HOST, self.target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("rfidgw/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(PostError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(PostError::Http)?;
        let status = response.status();
        // Read the answer (to a limit) so the connection can carry the next request.
        if Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .is_ok()
        {
            self.connection = Some(sender);
        }
        Ok(status)
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, PostError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(PostError::Http)?;
    // Ends when the sender is dropped or the connection breaks.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Counters of one webhook.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    /// Requests made (retries count again).
    pub requests: AtomicU64,
    /// Requests that failed (non-2xx or no answer).
    pub failures: AtomicU64,
    /// Events delivered (a 2xx answer).
    pub delivered: AtomicU64,
    /// Events the hook's filters left out.
    pub skipped: AtomicU64,
    /// The cursor: the id of the last event delivered or left out.
    pub cursor: AtomicU64,
}

/// What a webhook logs and counts, in one place.
enum Occurrence<'a> {
    Delivered {
        hook: &'a str,
        id: i64,
        status: StatusCode,
    },
    Failed {
        hook: &'a str,
        target: &'a str,
        id: i64,
        error: &'a str,
        first: bool,
        retry_in: Duration,
    },
    Recovered {
        hook: &'a str,
        after_failures: u64,
    },
    Skipped(u64),
    Cursor(i64),
    StoreFailed {
        hook: &'a str,
        error: &'a str,
    },
}

impl Occurrence<'_> {
    fn emit(&self, metrics: &WebhookMetrics) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        match self {
            Self::Delivered { hook, id, status } => {
                add(&metrics.requests, 1);
                add(&metrics.delivered, 1);
                tracing::trace!(webhook = %hook, id, status = status.as_u16(), "webhook delivered");
            }
            Self::Failed {
                hook,
                target,
                id,
                error,
                first,
                retry_in,
            } => {
                add(&metrics.requests, 1);
                add(&metrics.failures, 1);
                let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                if *first {
                    tracing::warn!(webhook = %hook, target = %target, id, error = %error, retry_in_ms, "webhook failed; retrying with backoff (further failures are logged at debug level)");
                } else {
                    tracing::debug!(webhook = %hook, target = %target, id, error = %error, retry_in_ms, "webhook failed again");
                }
            }
            Self::Recovered {
                hook,
                after_failures,
            } => {
                tracing::info!(webhook = %hook, after_failures, "webhook delivers again");
            }
            Self::Skipped(n) => add(&metrics.skipped, *n),
            Self::Cursor(id) => metrics
                .cursor
                .store(u64::try_from(*id).unwrap_or(0), Ordering::Relaxed),
            Self::StoreFailed { hook, error } => {
                tracing::warn!(webhook = %hook, error = %error, "webhook: the outbox could not be read or its cursor saved; retrying");
            }
        }
    }
}

/// One webhook: settings checked, secret read; [`Webhook::run`] is its task.
pub struct Webhook {
    name: String,
    endpoint: Endpoint,
    origin: String,
    secret: Option<Secret>,
    filter: Filter,
    timeout: Duration,
    backoff_max: Duration,
    metrics: Arc<WebhookMetrics>,
}

impl Webhook {
    /// The hook for `config`: reads its secret file and CA file.
    pub fn new(config: &WebhookConfig) -> Result<Self, SetupError> {
        let key = |field: &str| format!("webhooks.{}.{field}", config.name);
        let target = Target::parse(&config.url).map_err(|p| SetupError::new(&key("url"), p))?;
        let origin = target.origin();
        Ok(Self {
            name: config.name.clone(),
            endpoint: Endpoint::new(target, config.ca_file.as_deref(), &key("ca_file"))?,
            origin,
            secret: Secret::resolve(
                config.secret.as_ref(),
                config.secret_file.as_deref(),
                &key("secret_file"),
            )?,
            filter: Filter::new(&config.kinds, &config.stations),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            backoff_max: Duration::from_millis(config.backoff_max_ms.max(1)),
            metrics: Arc::default(),
        })
    }

    /// The hook's counters.
    pub fn metrics(&self) -> Arc<WebhookMetrics> {
        self.metrics.clone()
    }

    /// Delivers from `consumer` until `cancel` fires. A request under way when it fires is
    /// abandoned; its event is posted again after the next start.
    pub async fn run(mut self, mut consumer: Consumer, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.backoff_max);
        let mut streak = Streak::default();
        Occurrence::Cursor(consumer.cursor()).emit(&self.metrics);
        loop {
            let events = match consumer.next(READ_AHEAD, &cancel).await {
                Ok(Some(events)) => events,
                Ok(None) => return,
                Err(error) => {
                    self.store_failed(&error.to_string());
                    if sleep_or_cancel(backoff.next_delay(), &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let mut skipped = 0;
            for event in &events {
                if !self.filter.matches(event) {
                    skipped += 1;
                    continue;
                }
                if !self
                    .deliver(event, &mut backoff, &mut streak, &cancel)
                    .await
                {
                    return;
                }
                self.delivered(&mut consumer, event.id).await;
            }
            Occurrence::Skipped(skipped).emit(&self.metrics);
            // Events left out at the end of the batch are passed over too.
            if let Some(last) = events.last() {
                self.delivered(&mut consumer, last.id).await;
            }
        }
    }

    /// Posts `event` until the receiver answers 2xx; false when cancelled first.
    async fn deliver(
        &mut self,
        event: &PublicEvent,
        backoff: &mut Backoff,
        streak: &mut Streak,
        cancel: &CancellationToken,
    ) -> bool {
        let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
        let mut headers = vec![
            (EVENT_ID_HEADER, HeaderValue::from(event.id)),
            (
                EVENT_KIND_HEADER,
                HeaderValue::from_str(&event.kind)
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            ),
        ];
        if let Some(secret) = &self.secret {
            let signed = signature(secret.expose().as_bytes(), &body);
            if let Ok(value) = HeaderValue::from_str(&signed) {
                headers.push((SIGNATURE_HEADER, value));
            }
        }
        loop {
            let attempt =
                tokio::time::timeout(self.timeout, self.endpoint.post(body.clone(), &headers));
            let outcome = tokio::select! {
                () = cancel.cancelled() => return false,
                outcome = attempt => outcome.unwrap_or(Err(PostError::Timeout(self.timeout))),
            };
            let error = match outcome {
                Ok(status) if status.is_success() => {
                    backoff.reset();
                    let after_failures = streak.recover();
                    if after_failures > 0 {
                        Occurrence::Recovered {
                            hook: &self.name,
                            after_failures,
                        }
                        .emit(&self.metrics);
                    }
                    Occurrence::Delivered {
                        hook: &self.name,
                        id: event.id,
                        status,
                    }
                    .emit(&self.metrics);
                    return true;
                }
                Ok(status) => format!("the receiver answered {status}"),
                Err(error) => error.to_string(),
            };
            let retry_in = backoff.next_delay();
            Occurrence::Failed {
                hook: &self.name,
                target: &self.origin,
                id: event.id,
                error: &error,
                first: streak.fail(),
                retry_in,
            }
            .emit(&self.metrics);
            if sleep_or_cancel(retry_in, cancel).await {
                return false;
            }
        }
    }

    async fn delivered(&self, consumer: &mut Consumer, id: i64) {
        match consumer.delivered(id).await {
            Ok(()) => Occurrence::Cursor(consumer.cursor()).emit(&self.metrics),
            // Not saved: the event is posted again after a restart (a duplicate, no loss).
            Err(error) => self.store_failed(&error.to_string()),
        }
    }

    fn store_failed(&self, error: &str) {
        Occurrence::StoreFailed {
            hook: &self.name,
            error,
        }
        .emit(&self.metrics);
    }
}

/// Sleeps `pause`; true when `cancel` fired first.
async fn sleep_or_cancel(pause: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, url: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            secret: None,
            secret_file: None,
            kinds: Vec::new(),
            stations: Vec::new(),
            timeout_ms: default_timeout_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            ca_file: None,
        }
    }

    fn event(kind: &str, station: Option<&str>) -> PublicEvent {
        PublicEvent {
            v: 1,
            id: 1,
            time: String::new(),
            kind: kind.into(),
            site: "s".into(),
            station: station.map(str::to_owned),
            device: None,
            item: None,
            uid: None,
            reason: None,
            outcome: None,
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// (kinds, stations, event kind, event station, taken)
    type FilterRow<'a> = (&'a [&'a str], &'a [&'a str], &'a str, Option<&'a str>, bool);

    #[test]
    fn filters_take_kinds_and_stations_and_empty_means_everything() {
        let strings = |s: &[&str]| s.iter().map(|&x| x.to_owned()).collect::<Vec<_>>();
        let table: [FilterRow; 7] = [
            (&[], &[], "tag_arrived", None, true),
            (&["gate_alarm"], &[], "gate_alarm", Some("exit"), true),
            (&["gate_alarm"], &[], "tag_arrived", Some("exit"), false),
            (&[], &["exit"], "tag_arrived", Some("exit"), true),
            (&[], &["exit"], "tag_arrived", Some("return"), false),
            (&[], &["exit"], "daemon_started", None, false),
            (
                &["gate_alarm"],
                &["exit"],
                "gate_alarm",
                Some("side"),
                false,
            ),
        ];
        for (kinds, stations, kind, station, taken) in table {
            let filter = Filter::new(&strings(kinds), &strings(stations));
            assert_eq!(
                filter.matches(&event(kind, station)),
                taken,
                "{kinds:?} {stations:?} {kind} {station:?}"
            );
        }
    }

    #[test]
    fn urls_give_host_port_and_path() {
        let t = Target::parse("https://hooks.example.org/rfid/in?token=abc").unwrap();
        assert_eq!(
            (
                t.https,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            (
                true,
                "hooks.example.org",
                443,
                "hooks.example.org",
                "/rfid/in?token=abc"
            )
        );
        assert_eq!(t.origin(), "https://hooks.example.org", "no token in logs");
        let t = Target::parse("http://[::1]:8081").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8081, "/")
        );
        for bad in ["ftp://x/", "/relative", "http://user:pw@host/", "not a url"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_name_the_key_that_is_wrong() {
        let ok = hook("crm", "http://127.0.0.1:9/hook");
        assert_eq!(validate_webhooks(std::slice::from_ref(&ok)), Ok(()));
        let cases = [
            (hook("a b", "http://x/"), "webhooks.name"),
            (hook("crm", "mailto:x"), "webhooks.crm.url"),
            (
                WebhookConfig {
                    secret: Some(Secret::new("s")),
                    secret_file: Some("f".into()),
                    ..ok.clone()
                },
                "webhooks.crm.secret_file",
            ),
            (
                WebhookConfig {
                    ca_file: Some("ca.pem".into()),
                    ..ok.clone()
                },
                "webhooks.crm.ca_file",
            ),
            (
                WebhookConfig {
                    timeout_ms: 0,
                    ..ok.clone()
                },
                "webhooks.crm.timeout_ms",
            ),
        ];
        for (config, key) in cases {
            let (found, problem) = validate_webhooks(&[config]).unwrap_err();
            assert_eq!(found, key, "{problem}");
        }
        let (key, _) = validate_webhooks(&[ok.clone(), ok]).unwrap_err();
        assert_eq!(key, "webhooks.crm");
    }
}
