//! What MQTT and webhooks share: secrets that never reach a log, TLS client settings on
//! ring, capped and jittered backoff, a failure streak that warns once, and the start-up
//! that gives each configured consumer its outbox cursor and its task.

use std::collections::HashSet;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::NorthboundConfig;
use super::mqtt::{MQTT_CONSUMER, MqttConfig, MqttMetrics, MqttPublisher};
use super::outbox::{Outbox, Start};
use super::webhook::{WEBHOOK_CONSUMER_PREFIX, Webhook, WebhookConfig, WebhookMetrics};
use crate::store::{Store, StoreError};

/// A password or signing secret from the config. Its `Debug` never shows it, and nothing
/// logs it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret from a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret file (`password_file`, `secret_file`): its content without the
    /// trailing line break.
    pub fn from_file(path: &Path, key: &str) -> Result<Self, SetupError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SetupError::new(
                key,
                format!(
                    "cannot read {}: {e} (the daemon's user needs read access)",
                    path.display()
                ),
            )
        })?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(SetupError::new(key, format!("{} is empty", path.display())));
        }
        Ok(Self(value.to_owned()))
    }

    /// The secret given inline or in a file (at most one of them, checked by validation).
    pub fn resolve(
        inline: Option<&Secret>,
        file: Option<&Path>,
        file_key: &str,
    ) -> Result<Option<Self>, SetupError> {
        match (inline, file) {
            (Some(secret), _) => Ok(Some(secret.clone())),
            (None, Some(path)) => Self::from_file(path, file_key).map(Some),
            (None, None) => Ok(None),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A delivery setting that cannot be used; the message names the config key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SetupError {
    /// The config key (`mqtt.tls.ca_file`, `webhooks.crm.secret_file`).
    pub key: String,
    /// What is wrong and what to do.
    pub problem: String,
}

impl SetupError {
    /// An error at `key`.
    pub fn new(key: &str, problem: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Why northbound delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A setting cannot be used (unreadable secret or CA file).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The store could not give a consumer its cursor.
    #[error("outbox cursors: {0}")]
    Store(#[from] StoreError),
}

/// A rustls client configuration on ring (the workspace's one crypto library) that checks
/// the server against the PEM certificates in `ca_file`, or the system's roots without one.
pub fn tls_client_config(
    ca_file: Option<&Path>,
    key: &str,
) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let file = std::fs::File::open(path)
            .map_err(|e| SetupError::new(key, format!("cannot read {}: {e}", path.display())))?;
        let certs = rustls_pemfile::certs(&mut BufReader::new(file))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SetupError::new(key, format!("{} is not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(SetupError::new(
                key,
                format!("{} holds no CERTIFICATE", path.display()),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| SetupError::new(key, format!("{}: {e}", path.display())))?;
        }
    } else {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            return Err(SetupError::new(
                key,
                "the system has no CA certificates; give the server's CA as a PEM file here",
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::new(key, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Capped exponential backoff with ±20 % jitter: 0.5 s, 1 s, 2 s, … up to `max` (the
/// device supervisor's schedule), never above `max`, so peers that failed together do not
/// retry in lockstep and a dead peer is never hammered.
#[derive(Clone, Debug)]
pub struct Backoff {
    failures: u32,
    max: Duration,
}

impl Backoff {
    /// A backoff capped at `max`.
    pub fn new(max: Duration) -> Self {
        Self { failures: 0, max }
    }

    /// The pause after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let pause = crate::supervisor::backoff(self.failures, self.max);
        pause.mul_f64(rand::random_range(0.8..=1.2)).min(self.max)
    }

    /// The peer works again: the next failure starts from the shortest pause.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A run of failures against one peer: the first is worth a warning, the rest of the same
/// outage only debug lines (a demo without a broker must not fill the log).
#[derive(Debug, Default)]
pub struct Streak {
    failures: u64,
}

impl Streak {
    /// Counts a failure; true when it is the first of an outage (warn about it).
    pub fn fail(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// Failures so far in this outage.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The peer works again; how many failures the outage had.
    pub fn recover(&mut self) -> u64 {
        std::mem::take(&mut self.failures)
    }
}

/// The counters of running northbound consumers, for the status API and metrics.
#[derive(Clone, Debug, Default)]
pub struct DeliveryMetrics {
    /// The MQTT publisher's, when it is enabled.
    pub mqtt: Option<Arc<MqttMetrics>>,
    /// Each webhook's, by name.
    pub webhooks: Vec<(String, Arc<WebhookMetrics>)>,
}

/// Checks what the delivery settings point at (secret and CA files) without starting
/// anything; `rfidgw check-config` and the daemon's start use it.
pub fn check(
    mqtt: &MqttConfig,
    webhooks: &[WebhookConfig],
    northbound: &NorthboundConfig,
) -> Result<(), SetupError> {
    if mqtt.enabled {
        MqttPublisher::new(mqtt, &northbound.site)?;
    }
    for hook in webhooks {
        Webhook::new(hook)?;
    }
    Ok(())
}

/// Drops the cursors of consumers that are no longer configured (they would hold journal
/// pruning back), gives each configured consumer its cursor (a new one starts with the
/// next event) and spawns its task on `tasks`, stopped by `cancel`.
///
/// Only cursors this module owns are dropped: `mqtt` and `webhook:<name>`.
pub async fn start(
    (mqtt, webhooks, northbound): (&MqttConfig, &[WebhookConfig], &NorthboundConfig),
    store: &Store,
    outbox: &Outbox,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Result<DeliveryMetrics, DeliveryError> {
    let mut wanted: HashSet<String> = webhooks.iter().map(WebhookConfig::consumer).collect();
    if mqtt.enabled {
        wanted.insert(MQTT_CONSUMER.to_owned());
    }
    for cursor in store.cursors().await? {
        let ours = cursor.consumer == MQTT_CONSUMER
            || cursor.consumer.starts_with(WEBHOOK_CONSUMER_PREFIX);
        if ours && !wanted.contains(&cursor.consumer) {
            store.drop_cursor(&cursor.consumer).await?;
            tracing::info!(consumer = %cursor.consumer, last_id = cursor.last_id, "outbox consumer no longer configured: its cursor was dropped");
        }
    }
    let mut metrics = DeliveryMetrics::default();
    if mqtt.enabled {
        let publisher = MqttPublisher::new(mqtt, &northbound.site)?;
        metrics.mqtt = Some(publisher.metrics());
        let consumer = outbox.consumer(MQTT_CONSUMER, Start::Now).await?;
        tasks.spawn(publisher.run(outbox.clone(), consumer, cancel.clone()));
    }
    for config in webhooks {
        let hook = Webhook::new(config)?;
        metrics.webhooks.push((config.name.clone(), hook.metrics()));
        let consumer = outbox.consumer(&config.consumer(), Start::Now).await?;
        tasks.spawn(hook.run(consumer, cancel.clone()));
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(<redacted>))");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_secret_file_loses_its_line_break_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::from_file(&path, "k").unwrap().expose(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        let error = Secret::from_file(&path, "mqtt.password_file").unwrap_err();
        assert_eq!(error.key, "mqtt.password_file");
        let missing = Secret::from_file(&dir.path().join("nope"), "k").unwrap_err();
        assert!(missing.problem.contains("cannot read"), "{missing}");
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_starts_over_after_a_reset() {
        let max = Duration::from_secs(4);
        let mut backoff = Backoff::new(max);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(
            delays[0] >= Duration::from_millis(400) && delays[0] <= Duration::from_millis(600),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= max), "{delays:?}");
        assert!(delays[7] >= max.mul_f64(0.8), "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(600));
        let mut tiny = Backoff::new(Duration::from_millis(50));
        assert!(tiny.next_delay() <= Duration::from_millis(50));
    }

    #[test]
    fn a_streak_warns_once_per_outage() {
        let mut streak = Streak::default();
        assert!(streak.fail());
        assert!(!streak.fail());
        assert!(!streak.fail());
        assert_eq!(streak.recover(), 3);
        assert_eq!(streak.recover(), 0);
        assert!(streak.fail(), "a new outage warns again");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = tls_client_config(Some(&path), "mqtt.tls.ca_file").unwrap_err();
        assert_eq!(error.key, "mqtt.tls.ca_file");
        assert!(error.problem.contains("no CERTIFICATE"), "{error}");
    }
}
