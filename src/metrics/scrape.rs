//! The `/metrics` page: the occurrences' counters, and what is read at scrape time
//! (device health from the registry, queue depths and outbox lag from the store, the
//! journal's health, the ILS link).

use std::sync::atomic::{AtomicU64, Ordering};

use rfidgw_driver::LineCounters;

use super::events::FAMILIES;
use super::exposition::{Exposition, Kind};
use crate::northbound::delivery::DeliveryMetrics;
use crate::northbound::mqtt::MqttMetrics;
use crate::northbound::webhook::WebhookMetrics;
use crate::pipeline::JournalHealth;
use crate::registry::{DeviceState, Registry};
use crate::status::PeerStatus;
use crate::store::{OwedState, Store, StoreError};

/// The `Content-Type` of the page (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the scrape-time values come from: the parts of a running daemon the status API
/// already holds (`ApiState` has each of them).
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The store: queue depths, outbox cursors.
    pub store: &'a Store,
    /// Device states and line counters.
    pub registry: &'a Registry,
    /// The journal's backlog and state.
    pub journal: &'a JournalHealth,
    /// The peers (the ILS) and their link state.
    pub peers: &'a [PeerStatus],
    /// The northbound consumers' counters (MQTT, webhooks).
    pub delivery: &'a DeliveryMetrics,
}

/// The page: every metric, in the Prometheus text format 0.0.4 (serve it with
/// [`CONTENT_TYPE`]). A store that cannot be read leaves its gauges out and sets
/// `rfidgw_store_readable` to 0; the rest is still served.
pub async fn render(sources: Sources<'_>) -> String {
    let mut out = Exposition::default();
    out.family(
        "rfidgw_build_info",
        "The running version (always 1).",
        Kind::Gauge,
    );
    out.sample(
        "rfidgw_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1_u64,
    );
    devices(&mut out, sources.registry);
    peers(&mut out, sources.peers);
    journal(&mut out, sources.journal);
    delivery(&mut out, sources.delivery);
    let readable = match store(&mut out, sources.store).await {
        Ok(()) => true,
        Err(error) => {
            tracing::debug!(%error, "metrics: the store could not be read");
            false
        }
    };
    out.single(
        "rfidgw_store_readable",
        "Whether the store answered this scrape (0: its gauges are left out).",
        Kind::Gauge,
        readable,
    );
    for family in FAMILIES {
        family.render(&mut out);
    }
    out.finish()
}

type DeliveryCounter<M> = (&'static str, &'static str, fn(&M) -> &AtomicU64);

/// The MQTT publisher's counters (present only when `[mqtt]` is enabled).
const MQTT_COUNTERS: [DeliveryCounter<MqttMetrics>; 5] = [
    (
        "rfidgw_mqtt_connects_total",
        "Connections the MQTT broker accepted (more than one: reconnects).",
        |m| &m.connects,
    ),
    (
        "rfidgw_mqtt_failures_total",
        "MQTT connection attempts that failed and connections lost.",
        |m| &m.failures,
    ),
    (
        "rfidgw_mqtt_published_total",
        "Events published to the broker (a republished event counts again).",
        |m| &m.published,
    ),
    (
        "rfidgw_mqtt_delivered_total",
        "Events the broker acknowledged (PUBACK), their cursor moved past.",
        |m| &m.delivered,
    ),
    (
        "rfidgw_mqtt_truncated_total",
        "Events published with their data truncated (too big for a message).",
        |m| &m.truncated,
    ),
];

/// Each webhook's counters, labelled `hook`.
const WEBHOOK_COUNTERS: [DeliveryCounter<WebhookMetrics>; 4] = [
    (
        "rfidgw_webhook_requests_total",
        "Webhook requests made (retries count again).",
        |m| &m.requests,
    ),
    (
        "rfidgw_webhook_failures_total",
        "Webhook requests that failed (not 2xx, or no answer in time).",
        |m| &m.failures,
    ),
    (
        "rfidgw_webhook_delivered_total",
        "Events a webhook receiver took (2xx).",
        |m| &m.delivered,
    ),
    (
        "rfidgw_webhook_skipped_total",
        "Events a webhook's filters passed over.",
        |m| &m.skipped,
    ),
];

/// The northbound consumers' counters. They live in the consumers (which log and count each
/// occurrence in one place) and count from the daemon's start.
fn delivery(out: &mut Exposition, delivery: &DeliveryMetrics) {
    if let Some(mqtt) = &delivery.mqtt {
        for (name, help, counter) in MQTT_COUNTERS {
            out.single(
                name,
                help,
                Kind::Counter,
                counter(mqtt).load(Ordering::Relaxed),
            );
        }
    }
    if delivery.webhooks.is_empty() {
        return;
    }
    for (name, help, counter) in WEBHOOK_COUNTERS {
        out.family(name, help, Kind::Counter);
        for (hook, metrics) in &delivery.webhooks {
            out.sample(
                name,
                &[("hook", hook.as_str())],
                counter(metrics).load(Ordering::Relaxed),
            );
        }
    }
}

const STATES: [(DeviceState, &str); 5] = [
    (DeviceState::Starting, "starting"),
    (DeviceState::Connected, "connected"),
    (DeviceState::Disconnected, "disconnected"),
    (DeviceState::Restarting, "restarting"),
    (DeviceState::Stopped, "stopped"),
];

type LineCounter = (&'static str, &'static str, fn(&LineCounters) -> u64);

/// The driver's line counters: they count from the device task's start (a restart begins
/// again at 0, which Prometheus reads as a counter reset).
const LINE_COUNTERS: [LineCounter; 5] = [
    (
        "rfidgw_device_frames_total",
        "Frames from the reader that decoded and checked, since the device task started.",
        |c| c.frames_ok,
    ),
    (
        "rfidgw_device_bad_frames_total",
        "Frames with a bad CRC or length, since the device task started.",
        |c| c.bad_frames,
    ),
    (
        "rfidgw_device_bytes_skipped_total",
        "Bytes dropped while resynchronising on garbage, since the device task started.",
        |c| c.bytes_skipped,
    ),
    (
        "rfidgw_device_timeouts_total",
        "Requests the reader did not answer in time, since the device task started.",
        |c| c.timeouts,
    ),
    (
        "rfidgw_device_attributes_unknown_total",
        "Optional tag attributes (memory, AFI, EAS) reported unknown because the reader's answer could not be read.",
        |c| c.attributes_unknown,
    ),
];

fn devices(out: &mut Exposition, registry: &Registry) {
    let devices = registry.snapshot();
    out.family(
        "rfidgw_device_up",
        "Whether the device's reader answers (its state is connected).",
        Kind::Gauge,
    );
    for d in &devices {
        let driver = serde_json::to_value(d.driver)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let labels = [
            ("device", d.id.as_str()),
            ("driver", driver.as_str()),
            ("station", d.station.as_deref().unwrap_or("")),
        ];
        out.sample(
            "rfidgw_device_up",
            &labels,
            d.state == DeviceState::Connected,
        );
    }
    out.family(
        "rfidgw_device_state",
        "The device task's state: 1 for the state it is in, 0 for the others.",
        Kind::Gauge,
    );
    for d in &devices {
        for (state, name) in STATES {
            let labels = [("device", d.id.as_str()), ("state", name)];
            out.sample("rfidgw_device_state", &labels, d.state == state);
        }
    }
    out.family(
        "rfidgw_device_tags_present",
        "Tags in the device's field now.",
        Kind::Gauge,
    );
    for d in &devices {
        out.sample(
            "rfidgw_device_tags_present",
            &[("device", d.id.as_str())],
            d.tags_present as u64,
        );
    }
    for (name, help, count) in LINE_COUNTERS {
        out.family(name, help, Kind::Counter);
        for d in &devices {
            out.sample(name, &[("device", d.id.as_str())], count(&d.counters));
        }
    }
    out.family(
        "rfidgw_device_last_frame_timestamp_seconds",
        "When the reader last sent a good frame (Unix time; kept across restarts of the device task).",
        Kind::Gauge,
    );
    for d in &devices {
        if let Some(ms) = d.last_frame_ms {
            #[allow(clippy::cast_precision_loss)] // ms since 1970 fit a double exactly
            let seconds = ms as f64 / 1000.0;
            out.sample(
                "rfidgw_device_last_frame_timestamp_seconds",
                &[("device", d.id.as_str())],
                seconds,
            );
        }
    }
}

fn peers(out: &mut Exposition, peers: &[PeerStatus]) {
    out.family(
        "rfidgw_peer_up",
        "Whether a peer (the ILS) is online.",
        Kind::Gauge,
    );
    for peer in peers {
        out.sample(
            "rfidgw_peer_up",
            &[("peer", peer.name.as_str())],
            // `online 2/2`: the state, then connections up of the pool's.
            peer.state.split_whitespace().next() == Some("online"),
        );
    }
}

fn journal(out: &mut Exposition, journal: &JournalHealth) {
    let health = journal.snapshot();
    out.single(
        "rfidgw_journal_backlog",
        "Events waiting for the journal (it fell behind; the gates keep deciding).",
        Kind::Gauge,
        health.backlog,
    );
    out.single(
        "rfidgw_journal_dropped_total",
        "Events dropped because the journal's backlog was full (a long store outage).",
        Kind::Counter,
        health.dropped,
    );
    out.single(
        "rfidgw_journal_failing",
        "Whether journal commits fail now (they are retried).",
        Kind::Gauge,
        health.state != "ok",
    );
}

async fn store(out: &mut Exposition, store: &Store) -> Result<(), StoreError> {
    let last_id = store.journal_last_id().await?.unwrap_or(0);
    let cursors = store.cursors().await?;
    let queued = store.queue_len().await?;
    let owed = store.owed_write_count(&[OwedState::Owed]).await?;
    let raised = store.owed_write_count(&[OwedState::Raised]).await?;
    let work = store.worklist_open().await?;
    #[allow(clippy::cast_sign_loss)] // ids and counts are never negative; max(0) says so
    let unsigned = |n: i64| n.max(0) as u64;
    out.single(
        "rfidgw_journal_last_id",
        "The id of the newest journal row.",
        Kind::Gauge,
        unsigned(last_id),
    );
    out.family(
        "rfidgw_outbox_lag_events",
        "Journal events an outbox consumer (mqtt, webhook:<name>, …) has yet to deliver.",
        Kind::Gauge,
    );
    for c in &cursors {
        out.sample(
            "rfidgw_outbox_lag_events",
            &[("consumer", c.consumer.as_str())],
            unsigned(last_id - c.last_id),
        );
    }
    out.family(
        "rfidgw_outbox_skipped_events_total",
        "Events an outbox consumer skipped because it lagged more than northbound.max_lag_events (kept in the store across restarts).",
        Kind::Counter,
    );
    for c in &cursors {
        out.sample(
            "rfidgw_outbox_skipped_events_total",
            &[("consumer", c.consumer.as_str())],
            unsigned(c.skipped),
        );
    }
    out.single(
        "rfidgw_offline_queue_length",
        "Offline transactions waiting to be replayed to the ILS.",
        Kind::Gauge,
        queued,
    );
    out.family(
        "rfidgw_owed_writes_open",
        "Tag security writes still owed (state=owed) or raised to staff (state=raised).",
        Kind::Gauge,
    );
    out.sample("rfidgw_owed_writes_open", &[("state", "owed")], owed);
    out.sample("rfidgw_owed_writes_open", &[("state", "raised")], raised);
    out.single(
        "rfidgw_worklist_open",
        "Open entries on the staff worklist.",
        Kind::Gauge,
        work,
    );
    Ok(())
}
