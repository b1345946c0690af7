//! MQTT northbound: every public event, read from the durable outbox as the consumer
//! `mqtt`, published at QoS 1 on `<prefix>/<site>/<station or _>/<kind>` with the event's
//! JSON as the payload; a retained `<prefix>/<site>/status` says `online`, or `offline`
//! (the last will, or said on a clean stop). Topics and payloads: `docs/events.md`.
//!
//! Delivery is at least once. Up to `batch` publishes are in flight; the cursor moves only
//! over events the broker acknowledged (PUBACK), in publish order ([`InFlight`] keeps that
//! bookkeeping, without I/O), and is saved once per batch. Each
//! connection is a fresh rumqttc event loop in a task of its own that reports what the
//! broker said; after any failure the loop is dropped, the publisher waits a capped,
//! jittered backoff (rumqttc alone would reconnect at once) and resumes from the cursor,
//! so an event the broker may have received without acknowledging it is published again
//! (a QoS 1 duplicate) and none is lost.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::delivery::{Backoff, Secret, SetupError, Streak, tls_client_config};
use super::event::PublicEvent;
use super::outbox::{Consumer, Outbox};

/// The outbox consumer name of the MQTT publisher.
pub const MQTT_CONSUMER: &str = "mqtt";

/// The payload of the retained status topic while the gateway is connected.
pub const ONLINE: &str = "online";
/// The payload of the retained status topic after a clean stop, and the last will.
pub const OFFLINE: &str = "offline";

/// The largest packet published. An event whose JSON would not fit is published with its
/// `data` replaced by `{"truncated": true}` (the broker would refuse it, and the cursor
/// would never pass it).
pub const MAX_PACKET: usize = 256 * 1024;

/// At a clean stop, how long the publisher may still take to finish what is in flight,
/// publish what the journal committed last, and say `offline`. Within the daemon's
/// `shutdown_timeout_ms` (default 5 s); whatever is left goes out after the next start.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// A connection the broker closes sooner than this after accepting it did not really
/// work: the outage goes on and the backoff keeps growing. (A broker drops a client at once
/// when another one connects with the same client id; two gateways sharing one would
/// otherwise take turns every half second forever.)
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// After this many such connections in a row, the publisher says what is probably wrong.
const DROPPED_WARN_AFTER: u32 = 3;

/// `[mqtt]`: the broker the gateway publishes its events to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Publish at all.
    pub enabled: bool,
    /// The broker's host name or address.
    pub host: String,
    /// The broker's port; default 1883, or 8883 with TLS.
    pub port: Option<u16>,
    /// The MQTT client id; default `rfidgw-<site>`. Each gateway needs its own.
    pub client_id: Option<String>,
    /// User name, when the broker wants one.
    pub username: Option<String>,
    /// Password (prefer `password_file`, or `RFIDGW__MQTT__PASSWORD`).
    pub password: Option<Secret>,
    /// A file holding the password (its first line break and what follows is ignored).
    pub password_file: Option<PathBuf>,
    /// TLS: `[mqtt.tls]`, present means on.
    pub tls: Option<MqttTlsConfig>,
    /// MQTT keep-alive in seconds: how soon the broker notices a dead gateway (and says
    /// `offline` for it) is 1.5 times this.
    pub keepalive_s: u64,
    /// How long a connection attempt may take, in milliseconds (rounded up to seconds).
    pub connect_timeout_ms: u64,
    /// The first topic level(s): `<topic_prefix>/<site>/…`.
    pub topic_prefix: String,
    /// Most events in flight (published, not yet acknowledged); the cursor is saved at
    /// least once per this many acknowledged events. After a lost connection at most this
    /// many events go out twice, after a crash at most twice this many.
    pub batch: u16,
    /// Longest pause between reconnection attempts, in milliseconds.
    pub backoff_max_ms: u64,
}

/// `[mqtt.tls]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsConfig {
    /// The broker's CA certificate(s), PEM; default: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: None,
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            tls: None,
            keepalive_s: 30,
            connect_timeout_ms: 5_000,
            topic_prefix: "rfidgw".into(),
            batch: 100,
            backoff_max_ms: 30_000,
        }
    }
}

impl MqttConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }

    /// The client id to connect with.
    pub fn client_id(&self, site: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("rfidgw-{site}"))
    }

    /// Files named in the section are found relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(file) = &mut self.password_file {
            *file = base.join(&*file);
        }
        if let Some(file) = self.tls.as_mut().and_then(|t| t.ca_file.as_mut()) {
            *file = base.join(&*file);
        }
    }

    /// The key and problem of an unusable setting.
    pub fn validate(&self, site: &str) -> Result<(), (String, String)> {
        let error = |key: &str, problem: &str| Err((format!("mqtt.{key}"), problem.to_owned()));
        if self.host.trim().is_empty() {
            return error("host", "must name the broker (a host name or address)");
        }
        if self.port == Some(0) {
            return error("port", "must be a TCP port (1-65535)");
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            return error(
                "client_id",
                "must not be empty; leave it out for rfidgw-<site>",
            );
        }
        if self.password.is_some() && self.password_file.is_some() {
            return error(
                "password_file",
                "give the password or a password_file, not both",
            );
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return error("username", "a password needs a username");
        }
        if !(1..=65_535).contains(&self.keepalive_s) {
            return error("keepalive_s", "must be 1 to 65535 (seconds)");
        }
        if self.connect_timeout_ms == 0 {
            return error("connect_timeout_ms", "must be at least 1");
        }
        if !(1..=1000).contains(&self.batch) {
            return error("batch", "must be 1 to 1000");
        }
        if self.backoff_max_ms == 0 {
            return error("backoff_max_ms", "must be at least 1");
        }
        if let Err(problem) = check_prefix(&self.topic_prefix) {
            return error("topic_prefix", &problem);
        }
        if self.enabled && self.topic_prefix == "rfidgw" && site == "devices" {
            return Err((
                "northbound.site".into(),
                "\"devices\" would put events under rfidgw/devices/…, where MQTT devices live; choose another site name or another mqtt.topic_prefix".into(),
            ));
        }
        Ok(())
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.split('/').any(str::is_empty) {
        return Err(format!(
            "`{prefix}` has an empty topic level; write levels separated by single `/` (e.g. \"rfidgw\" or \"library/rfidgw\")"
        ));
    }
    if prefix.contains(['+', '#', '\0']) || prefix.starts_with('$') {
        return Err(format!(
            "`{prefix}` may not hold `+`, `#` or start with `$` (wildcards and broker topics)"
        ));
    }
    Ok(())
}

/// The topics of one site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    /// Topics under `<prefix>/<site>`.
    pub fn new(prefix: &str, site: &str) -> Self {
        Self {
            base: format!("{prefix}/{}", level(site)),
        }
    }

    /// `<prefix>/<site>/<station or _>/<kind>`.
    pub fn event(&self, event: &PublicEvent) -> String {
        let station = event.station.as_deref().unwrap_or("_");
        format!("{}/{}/{}", self.base, level(station), level(&event.kind))
    }

    /// `<prefix>/<site>/status`: `online` or `offline`, retained.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
}

/// One topic level: a name with `/`, `+`, `#` or NUL would split or break the topic, so
/// those become `_` (as does an empty name).
fn level(name: &str) -> Cow<'_, str> {
    if name.is_empty() {
        return Cow::Borrowed("_");
    }
    if name.contains(['/', '+', '#', '\0']) {
        return Cow::Owned(name.replace(['/', '+', '#', '\0'], "_"));
    }
    Cow::Borrowed(name)
}

/// The payload of an event: its JSON; with `data` replaced by `{"truncated": true}` when
/// the packet would be larger than [`MAX_PACKET`].
pub fn payload(event: &PublicEvent, topic: &str) -> (Vec<u8>, bool) {
    // Topic, fixed header and packet id: a few bytes beyond the topic.
    let room = MAX_PACKET.saturating_sub(topic.len() + 16);
    let json = serde_json::to_vec(event).unwrap_or_default();
    if json.len() <= room {
        return (json, false);
    }
    let mut short = event.clone();
    short.data = serde_json::json!({ "truncated": true });
    (serde_json::to_vec(&short).unwrap_or_default(), true)
}

/// Which publishes the broker acknowledged, in publish order: the bookkeeping behind "the
/// cursor moves only over acknowledged events", free of I/O.
///
/// rumqttc numbers a QoS 1 publish when it writes it (reported as an outgoing publish with
/// its packet id); publishes are written in the order they were queued, so the n-th id
/// reported belongs to the n-th publish queued. A PUBACK names a packet id.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Queued publishes, oldest first: the event id (`None`: the status message) and
    /// whether the broker acknowledged it.
    entries: VecDeque<(Option<i64>, bool)>,
    /// Sequence number of `entries[0]`.
    first: u64,
    /// Sequence number of the first queued publish without a packet id yet.
    unsent: u64,
    /// Packet id → sequence number, while unacknowledged.
    by_packet: HashMap<u16, u64>,
    /// The last event of the acknowledged prefix not yet taken.
    acked_through: Option<i64>,
}

/// A report from the broker that does not fit what was published.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unexpected {
    /// A packet id was reported with nothing queued.
    #[error("packet id {0} written with nothing queued")]
    NothingQueued(u16),
    /// A PUBACK for a packet id that is not in flight.
    #[error("PUBACK for packet id {0}, which is not in flight")]
    UnknownAck(u16),
}

impl InFlight {
    /// A publish was queued: of event `event`, or of the status (`None`).
    pub fn queued(&mut self, event: Option<i64>) {
        self.entries.push_back((event, false));
    }

    /// The next queued publish was written with packet id `packet`.
    pub fn sent(&mut self, packet: u16) -> Result<(), Unexpected> {
        if self.unsent >= self.first + self.entries.len() as u64 {
            return Err(Unexpected::NothingQueued(packet));
        }
        self.by_packet.insert(packet, self.unsent);
        self.unsent += 1;
        Ok(())
    }

    /// The broker acknowledged packet id `packet`.
    pub fn acked(&mut self, packet: u16) -> Result<(), Unexpected> {
        let seq = self
            .by_packet
            .remove(&packet)
            .ok_or(Unexpected::UnknownAck(packet))?;
        let index = usize::try_from(seq - self.first).unwrap_or(usize::MAX);
        if let Some(entry) = self.entries.get_mut(index) {
            entry.1 = true;
        }
        while let Some(&(event, true)) = self.entries.front() {
            self.entries.pop_front();
            self.first += 1;
            if event.is_some() {
                self.acked_through = event;
            }
        }
        Ok(())
    }

    /// Nothing queued is waiting for the broker.
    pub fn is_idle(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many publishes wait for their acknowledgement.
    pub fn waiting(&self) -> usize {
        self.entries.len()
    }

    /// The last event of the acknowledged prefix not yet taken, without taking it.
    pub fn acked_through(&self) -> Option<i64> {
        self.acked_through
    }

    /// The last event of the acknowledged prefix since the previous call: everything up to
    /// it may be marked delivered.
    pub fn take_acked(&mut self) -> Option<i64> {
        self.acked_through.take()
    }
}

/// Counters of the MQTT publisher.
#[derive(Debug, Default)]
pub struct MqttMetrics {
    /// Connections the broker accepted.
    pub connects: AtomicU64,
    /// Connection attempts that failed and connections lost.
    pub failures: AtomicU64,
    /// Events published (a republished event counts again).
    pub published: AtomicU64,
    /// Events acknowledged and marked delivered.
    pub delivered: AtomicU64,
    /// Events whose `data` was too big and published truncated.
    pub truncated: AtomicU64,
    /// The cursor: the id of the last event delivered.
    pub cursor: AtomicU64,
}

/// What the MQTT publisher logs and counts, in one place.
enum Occurrence<'a> {
    Connected {
        broker: &'a str,
        after_failures: u64,
        /// The broker has been dropping this client right after accepting it.
        flapping: bool,
    },
    /// The broker closed connections right after accepting them, `times` in a row.
    Dropped {
        broker: &'a str,
        client_id: &'a str,
        times: u32,
    },
    Failed {
        broker: &'a str,
        error: &'a str,
        first: bool,
        retry_in: Duration,
    },
    Published(usize),
    Delivered {
        through: i64,
        count: u64,
    },
    Truncated(i64),
    StoreFailed(&'a str),
}

impl Occurrence<'_> {
    fn emit(&self, metrics: &MqttMetrics) {
        let add = |counter: &AtomicU64, n: u64| {
            counter.fetch_add(n, Ordering::Relaxed);
        };
        match self {
            Self::Connected {
                broker,
                after_failures,
                flapping,
            } => {
                add(&metrics.connects, 1);
                if *flapping {
                    tracing::debug!(broker = %broker, after_failures, "MQTT northbound connected again");
                } else {
                    tracing::info!(broker = %broker, after_failures, "MQTT northbound connected");
                }
            }
            Self::Dropped {
                broker,
                client_id,
                times,
            } => {
                tracing::warn!(broker = %broker, client_id = %client_id, times, "MQTT northbound: the broker keeps closing the connection right after accepting it; is another client using the same client id? (each gateway on a broker needs its own [mqtt] client_id)");
            }
            Self::Failed {
                broker,
                error,
                first,
                retry_in,
            } => {
                add(&metrics.failures, 1);
                let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                if *first {
                    tracing::warn!(broker = %broker, error = %error, retry_in_ms, "MQTT northbound: no broker connection; events wait in the outbox (further attempts are logged at debug level)");
                } else {
                    tracing::debug!(broker = %broker, error = %error, retry_in_ms, "MQTT northbound: still no broker connection");
                }
            }
            Self::Published(n) => add(&metrics.published, *n as u64),
            Self::Delivered { through, count } => {
                add(&metrics.delivered, *count);
                metrics
                    .cursor
                    .store(u64::try_from(*through).unwrap_or(0), Ordering::Relaxed);
                tracing::trace!(through, count, "MQTT northbound: acknowledged");
            }
            Self::Truncated(id) => {
                add(&metrics.truncated, 1);
                tracing::warn!(
                    id,
                    max_packet = MAX_PACKET,
                    "MQTT northbound: event too large, published with its data truncated"
                );
            }
            Self::StoreFailed(error) => {
                tracing::warn!(error = %error, "MQTT northbound: the outbox could not be read or its cursor saved; retrying");
            }
        }
    }
}

/// What the connection task reports.
#[derive(Debug)]
enum LinkEvent {
    /// The broker accepted the connection.
    Connected,
    /// A QoS 1 publish was written with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The connection is over (refused, broken, or disconnected by us).
    Closed(String),
}

/// One connection: rumqttc's client and its event loop in a task of its own (polled
/// without interruption), ended when this is dropped.
struct Link {
    client: AsyncClient,
    events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Link {
    fn open(options: MqttOptions, connect_timeout_s: u64, capacity: usize) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, capacity);
        let mut network = eventloop.network_options();
        network.set_connection_timeout(connect_timeout_s);
        // Without it, a batch's second publish waits for the TCP ACK of the first, which
        // the broker delays by up to 40 ms (Nagle against delayed ACK): 250 events/s.
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, events) = mpsc::channel(capacity.max(16) * 2);
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEvent::Connected,
                    Ok(Event::Incoming(Packet::PubAck(ack))) => LinkEvent::Acked(ack.pkid),
                    Ok(Event::Outgoing(Outgoing::Publish(packet))) => LinkEvent::Sent(packet),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                        LinkEvent::Closed("disconnected".into())
                    }
                    Ok(_) => continue,
                    Err(error) => LinkEvent::Closed(error.to_string()),
                };
                let closed = matches!(event, LinkEvent::Closed(_));
                if tx.send(event).await.is_err() || closed {
                    return;
                }
            }
        });
        Self {
            client,
            events,
            task,
        }
    }

    async fn next(&mut self) -> LinkEvent {
        self.events
            .recv()
            .await
            .unwrap_or_else(|| LinkEvent::Closed("the connection task ended".into()))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a connection ended.
enum Ended {
    /// Stopped on request.
    Stopped,
    /// Refused, broken or never made.
    Failed(String),
}

/// The MQTT publisher: settings checked, files read; [`MqttPublisher::run`] is its task.
pub struct MqttPublisher {
    options: MqttOptions,
    broker: String,
    client_id: String,
    topics: Topics,
    batch: u16,
    connect_timeout_s: u64,
    backoff_max: Duration,
    metrics: Arc<MqttMetrics>,
}

impl MqttPublisher {
    /// The publisher for `config` on `site`: reads the password file and the CA file.
    pub fn new(config: &MqttConfig, site: &str) -> Result<Self, SetupError> {
        let topics = Topics::new(&config.topic_prefix, site);
        let port = config.port();
        let mut options = MqttOptions::new(config.client_id(site), config.host.clone(), port);
        options
            .set_keep_alive(Duration::from_secs(config.keepalive_s.max(1)))
            .set_clean_session(true)
            .set_last_will(LastWill::new(
                topics.status(),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ))
            .set_inflight(config.batch.saturating_add(1))
            .set_max_packet_size(64 * 1024, MAX_PACKET)
            .set_request_channel_capacity(usize::from(config.batch) + 4);
        let password = Secret::resolve(
            config.password.as_ref(),
            config.password_file.as_deref(),
            "mqtt.password_file",
        )?;
        if let Some(username) = &config.username {
            let password = password.as_ref().map_or("", Secret::expose);
            options.set_credentials(username.clone(), password);
        }
        if let Some(tls) = &config.tls {
            let client = tls_client_config(tls.ca_file.as_deref(), "mqtt.tls.ca_file")?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(client),
            )));
        }
        Ok(Self {
            options,
            broker: format!(
                "{}://{}:{port}",
                if config.tls.is_some() {
                    "mqtts"
                } else {
                    "mqtt"
                },
                config.host
            ),
            client_id: config.client_id(site),
            topics,
            batch: config.batch.max(1),
            connect_timeout_s: config.connect_timeout_ms.div_ceil(1000).max(1),
            backoff_max: Duration::from_millis(config.backoff_max_ms.max(1)),
            metrics: Arc::default(),
        })
    }

    /// The publisher's counters.
    pub fn metrics(&self) -> Arc<MqttMetrics> {
        self.metrics.clone()
    }

    /// Publishes from `consumer` until `cancel` fires: connects, publishes, reconnects
    /// after a backoff, forever. Reads ahead of the consumer's cursor with readers from
    /// `outbox`. On a clean stop it finishes what is in flight, publishes what the journal
    /// committed last and says `offline`, within [`STOP_GRACE`].
    pub async fn run(self, outbox: Outbox, consumer: Consumer, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.backoff_max);
        let mut streak = Streak::default();
        self.metrics.cursor.store(
            u64::try_from(consumer.cursor()).unwrap_or(0),
            Ordering::Relaxed,
        );
        let mut position = Position {
            read: outbox.reader(consumer.cursor()),
            saved: consumer,
            outbox,
        };
        // Connections the broker closed within STABLE_AFTER of accepting them, in a row.
        let mut dropped = 0;
        loop {
            let mut accepted = None;
            let why = match self
                .connection(&mut position, &cancel, &mut accepted, dropped > 0, &streak)
                .await
            {
                Ended::Stopped => return,
                Ended::Failed(why) => why,
            };
            match accepted {
                // It worked for a while: the next failure is a new outage.
                Some(at) if at.elapsed() >= STABLE_AFTER => {
                    backoff.reset();
                    streak.recover();
                    dropped = 0;
                }
                // Accepted, then closed at once (typically another client taking over the
                // client id): the outage goes on, the backoff keeps growing.
                Some(_) => {
                    dropped += 1;
                    if dropped == DROPPED_WARN_AFTER {
                        Occurrence::Dropped {
                            broker: &self.broker,
                            client_id: &self.client_id,
                            times: dropped,
                        }
                        .emit(&self.metrics);
                    }
                }
                None => {}
            }
            let retry_in = backoff.next_delay();
            Occurrence::Failed {
                broker: &self.broker,
                error: &why,
                first: streak.fail(),
                retry_in,
            }
            .emit(&self.metrics);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    /// One connection, from connecting to its end.
    async fn connection(
        &self,
        position: &mut Position,
        cancel: &CancellationToken,
        accepted: &mut Option<Instant>,
        flapping: bool,
        streak: &Streak,
    ) -> Ended {
        let mut link = Link::open(
            self.options.clone(),
            self.connect_timeout_s,
            usize::from(self.batch) + 4,
        );
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ended::Stopped,
                event = link.next() => match event {
                    LinkEvent::Connected => break,
                    LinkEvent::Closed(why) => return Ended::Failed(why),
                    LinkEvent::Sent(_) | LinkEvent::Acked(_) => {}
                },
            }
        }
        *accepted = Some(Instant::now());
        Occurrence::Connected {
            broker: &self.broker,
            after_failures: streak.failures(),
            flapping,
        }
        .emit(&self.metrics);
        // Everything after the saved cursor goes out (again) on this connection.
        position.read = position.outbox.reader(position.saved.cursor());
        let mut flight = InFlight::default();
        if let Err(why) = self.status(&link, &mut flight, ONLINE).await {
            return Ended::Failed(why);
        }
        let ended = self.publish(&mut link, &mut flight, position, cancel).await;
        // Whatever the broker acknowledged stays delivered, however the connection ended.
        self.save(flight.take_acked(), &mut position.saved).await;
        match ended {
            Ended::Stopped => {
                self.stop(&mut link, &mut flight, position).await;
                Ended::Stopped
            }
            failed @ Ended::Failed(_) => failed,
        }
    }

    /// Publishes from the outbox while the connection lasts, keeping up to `batch`
    /// publishes in flight: a free place is filled at once, so the connection never idles
    /// while the broker holds back acknowledgements (Mosquitto, by default, delays small
    /// writes until the client's TCP ACK, which a client with nothing to send delays by
    /// up to 40 ms).
    async fn publish(
        &self,
        link: &mut Link,
        flight: &mut InFlight,
        position: &mut Position,
        cancel: &CancellationToken,
    ) -> Ended {
        let window = usize::from(self.batch);
        loop {
            // One store commit per batch: when everything is acknowledged, or a batch more.
            if let Some(through) = flight.acked_through()
                && (flight.is_idle() || through - position.saved.cursor() >= i64::from(self.batch))
            {
                self.save(flight.take_acked(), &mut position.saved).await;
            }
            let room = u32::try_from(window.saturating_sub(flight.waiting())).unwrap_or(0);
            tokio::select! {
                () = cancel.cancelled() => return Ended::Stopped,
                event = link.next() => if let Err(why) = Self::on_link(event, flight) {
                    return Ended::Failed(why);
                },
                read = position.read.next(room, cancel), if room > 0 => match read {
                    Ok(Some(events)) => if let Err(why) = self.send(link, flight, position, &events).await {
                        return Ended::Failed(why);
                    },
                    Ok(None) => return Ended::Stopped,
                    Err(error) => return Ended::Failed(format!("outbox: {error}")),
                },
            }
        }
    }

    /// Queues `events` for publishing, in order; the reader moves past them.
    async fn send(
        &self,
        link: &Link,
        flight: &mut InFlight,
        position: &mut Position,
        events: &[PublicEvent],
    ) -> Result<(), String> {
        for event in events {
            let topic = self.topics.event(event);
            let (payload, truncated) = payload(event, &topic);
            if truncated {
                Occurrence::Truncated(event.id).emit(&self.metrics);
            }
            link.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| format!("queueing a publish: {e}"))?;
            flight.queued(Some(event.id));
        }
        if let Some(last) = events.last() {
            // A reader's cursor is not persisted: this cannot fail.
            let _ = position.read.delivered(last.id).await;
        }
        Occurrence::Published(events.len()).emit(&self.metrics);
        Ok(())
    }

    /// Publishes the retained status.
    async fn status(&self, link: &Link, flight: &mut InFlight, state: &str) -> Result<(), String> {
        link.client
            .publish(self.topics.status(), QoS::AtLeastOnce, true, state)
            .await
            .map_err(|e| format!("queueing the status: {e}"))?;
        flight.queued(None);
        Ok(())
    }

    /// Applies what the connection task reported; `Err` when the connection is over.
    fn on_link(event: LinkEvent, flight: &mut InFlight) -> Result<(), String> {
        let applied = match event {
            LinkEvent::Sent(packet) => flight.sent(packet),
            LinkEvent::Acked(packet) => flight.acked(packet),
            LinkEvent::Connected => Ok(()),
            LinkEvent::Closed(why) => return Err(why),
        };
        // A broker that acknowledges what was never sent is not one to trust with the
        // cursor: start over from it.
        applied.map_err(|e| e.to_string())
    }

    /// Moves the saved cursor to `through` (the end of an acknowledged prefix).
    async fn save(&self, through: Option<i64>, saved: &mut Consumer) {
        let Some(through) = through else {
            return;
        };
        let before = saved.cursor();
        match saved.delivered(through).await {
            Ok(()) => Occurrence::Delivered {
                through,
                count: u64::try_from(through - before).unwrap_or(0),
            }
            .emit(&self.metrics),
            // Not saved: these events go out again after a restart (duplicates, no loss).
            Err(error) => Occurrence::StoreFailed(&error.to_string()).emit(&self.metrics),
        }
    }

    /// A clean stop: finish what is in flight, publish what the journal committed last,
    /// say `offline`, disconnect; all within [`STOP_GRACE`].
    async fn stop(&self, link: &mut Link, flight: &mut InFlight, position: &mut Position) {
        let deadline = Instant::now() + STOP_GRACE;
        // Already cancelled: `next` returns what is there without waiting.
        let stopped = CancellationToken::new();
        stopped.cancel();
        loop {
            let settled = self.settle(link, flight, deadline).await;
            self.save(flight.take_acked(), &mut position.saved).await;
            if !settled {
                return;
            }
            match position.read.next(u32::from(self.batch), &stopped).await {
                Ok(Some(events)) => {
                    if self.send(link, flight, position, &events).await.is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        if self.status(link, flight, OFFLINE).await.is_err()
            || !self.settle(link, flight, deadline).await
        {
            return;
        }
        if link.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout_at(deadline, async {
                while !matches!(link.next().await, LinkEvent::Closed(_)) {}
            })
            .await;
        }
    }

    /// Waits until everything in flight is acknowledged; false when the connection ended
    /// or the deadline passed first.
    async fn settle(&self, link: &mut Link, flight: &mut InFlight, deadline: Instant) -> bool {
        while !flight.is_idle() {
            match tokio::time::timeout_at(deadline, link.next()).await {
                Ok(event) => {
                    if Self::on_link(event, flight).is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }
}

/// Where the publisher stands in the journal.
struct Position {
    /// The durable consumer `mqtt`: its cursor moves over acknowledged events only.
    saved: Consumer,
    /// Reads ahead of it, past what was published on this connection (not persisted).
    read: Consumer,
    /// Gives a new reader at each connection, starting after the saved cursor.
    outbox: Outbox,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, station: Option<&str>, kind: &str) -> PublicEvent {
        PublicEvent {
            v: 1,
            id,
            time: "2026-12-02T01:34:29.788Z".into(),
            kind: kind.into(),
            site: "branch-1".into(),
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
    fn topics_name_the_site_the_station_and_the_kind() {
        let topics = Topics::new("rfidgw", "branch-1");
        assert_eq!(
            topics.event(&event(1, Some("main-exit"), "gate_alarm")),
            "rfidgw/branch-1/main-exit/gate_alarm"
        );
        assert_eq!(
            topics.event(&event(2, None, "daemon_started")),
            "rfidgw/branch-1/_/daemon_started"
        );
        assert_eq!(
            topics.event(&event(3, Some("a/b+#"), "x")),
            "rfidgw/branch-1/a_b__/x",
            "a name never adds a level or a wildcard"
        );
        assert_eq!(topics.status(), "rfidgw/branch-1/status");
        assert_eq!(
            Topics::new("library/rfidgw", "b").status(),
            "library/rfidgw/b/status"
        );
    }

    #[test]
    fn an_oversized_event_is_published_with_its_data_truncated() {
        let mut big = event(7, None, "session_ended");
        big.data = serde_json::json!({ "blob": "x".repeat(MAX_PACKET) });
        let (bytes, truncated) = payload(&big, "t");
        assert!(truncated);
        let back: PublicEvent = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (back.id, back.data),
            (7, serde_json::json!({"truncated": true}))
        );
        let (bytes, truncated) = payload(&event(8, None, "k"), "t");
        assert!(!truncated);
        assert_eq!(serde_json::from_slice::<PublicEvent>(&bytes).unwrap().id, 8);
    }

    #[test]
    fn the_cursor_moves_only_over_the_acknowledged_prefix() {
        // (step, expected take_acked after it)
        enum Step {
            Queue(Option<i64>),
            Sent(u16),
            Ack(u16),
        }
        use Step::{Ack, Queue, Sent};
        let steps = [
            (Queue(None), None), // the status
            (Queue(Some(10)), None),
            (Queue(Some(11)), None),
            (Queue(Some(12)), None),
            (Sent(1), None),
            (Sent(2), None),
            (Sent(3), None),
            (Sent(4), None),
            // 11 acknowledged before 10 and the status: nothing moves yet.
            (Ack(3), None),
            (Ack(2), None),
            (Ack(1), Some(11)),
            (Ack(4), Some(12)),
        ];
        let mut flight = InFlight::default();
        for (n, (step, expected)) in steps.into_iter().enumerate() {
            match step {
                Queue(event) => flight.queued(event),
                Sent(packet) => flight.sent(packet).unwrap(),
                Ack(packet) => flight.acked(packet).unwrap(),
            }
            assert_eq!(flight.take_acked(), expected, "step {n}");
        }
        assert!(flight.is_idle());
    }

    #[test]
    fn packet_ids_are_reused_after_their_ack_and_surprises_are_errors() {
        let mut flight = InFlight::default();
        assert_eq!(flight.sent(1), Err(Unexpected::NothingQueued(1)));
        flight.queued(Some(1));
        flight.queued(Some(2));
        flight.sent(1).unwrap();
        flight.acked(1).unwrap();
        flight.sent(1).unwrap(); // rumqttc wraps its packet ids
        assert_eq!(flight.acked(2), Err(Unexpected::UnknownAck(2)));
        assert!(!flight.is_idle());
        flight.acked(1).unwrap();
        assert_eq!(flight.take_acked(), Some(2));
        assert!(flight.is_idle());
        assert_eq!(flight.take_acked(), None);
    }

    #[test]
    fn a_status_only_prefix_moves_nothing() {
        let mut flight = InFlight::default();
        flight.queued(None);
        flight.sent(1).unwrap();
        flight.acked(1).unwrap();
        assert!(flight.is_idle());
        assert_eq!(flight.take_acked(), None);
    }

    #[test]
    fn the_acknowledged_prefix_can_be_looked_at_before_it_is_taken() {
        let mut flight = InFlight::default();
        for id in 1..=3 {
            flight.queued(Some(id));
        }
        for packet in 1..=3 {
            flight.sent(packet).unwrap();
        }
        assert_eq!(flight.waiting(), 3);
        flight.acked(1).unwrap();
        flight.acked(2).unwrap();
        assert_eq!(flight.acked_through(), Some(2));
        assert_eq!(flight.waiting(), 1);
        assert_eq!(flight.acked_through(), Some(2), "looking does not take");
        assert_eq!(flight.take_acked(), Some(2));
        assert_eq!(flight.acked_through(), None);
    }

    #[test]
    fn settings_name_the_key_that_is_wrong() {
        let ok = MqttConfig {
            enabled: true,
            ..MqttConfig::default()
        };
        assert_eq!(ok.validate("branch"), Ok(()));
        assert_eq!(ok.port(), 1883);
        assert_eq!(ok.client_id("branch"), "rfidgw-branch");
        let tls = MqttConfig {
            tls: Some(MqttTlsConfig::default()),
            ..ok.clone()
        };
        assert_eq!(tls.port(), 8883);
        let cases: Vec<(MqttConfig, &str, &str)> = vec![
            (
                MqttConfig {
                    host: " ".into(),
                    ..ok.clone()
                },
                "branch",
                "mqtt.host",
            ),
            (
                MqttConfig {
                    password: Some(Secret::new("x")),
                    ..ok.clone()
                },
                "branch",
                "mqtt.username",
            ),
            (
                MqttConfig {
                    username: Some("u".into()),
                    password: Some(Secret::new("x")),
                    password_file: Some("p".into()),
                    ..ok.clone()
                },
                "branch",
                "mqtt.password_file",
            ),
            (
                MqttConfig {
                    topic_prefix: "a//b".into(),
                    ..ok.clone()
                },
                "branch",
                "mqtt.topic_prefix",
            ),
            (
                MqttConfig {
                    topic_prefix: "a/#".into(),
                    ..ok.clone()
                },
                "branch",
                "mqtt.topic_prefix",
            ),
            (
                MqttConfig {
                    batch: 0,
                    ..ok.clone()
                },
                "branch",
                "mqtt.batch",
            ),
            (
                MqttConfig {
                    keepalive_s: 0,
                    ..ok.clone()
                },
                "branch",
                "mqtt.keepalive_s",
            ),
            (ok.clone(), "devices", "northbound.site"),
        ];
        for (config, site, key) in cases {
            let (found, problem) = config.validate(site).unwrap_err();
            assert_eq!(found, key, "{problem}");
        }
    }

    #[test]
    fn a_password_file_is_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mqtt.pw");
        std::fs::write(&file, "pa55word\n").unwrap();
        let config = MqttConfig {
            enabled: true,
            username: Some("gw".into()),
            password_file: Some(file),
            ..MqttConfig::default()
        };
        let publisher = MqttPublisher::new(&config, "b").unwrap();
        let login = publisher.options.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("gw", "pa55word")
        );
        assert!(!format!("{config:?}").contains("pa55word"));
        let missing = MqttConfig {
            password_file: Some(dir.path().join("nope")),
            ..config
        };
        let error = MqttPublisher::new(&missing, "b").err().unwrap();
        assert_eq!(error.key, "mqtt.password_file");
    }
}
