//! The driver without a broker: a refused connection ends the run with an error that names
//! the broker (the supervisor then restarts it after its backoff), after reporting the link
//! down; a TLS CA file that cannot be read is a configuration error naming its key.

use std::time::Duration;

use rfidgw_driver::{Device, DeviceError, DeviceEvent, DeviceEventSink, LinkState};
use rfidgw_mqtt::{MqttDevice, MqttSettings};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn run(settings: &str) -> (Result<(), DeviceError>, Vec<DeviceEvent>) {
    let settings: MqttSettings = toml::from_str(settings).unwrap();
    let device = MqttDevice::new("gate-1", &settings).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let run = Box::new(device).run(DeviceEventSink::new("gate-1", tx), CancellationToken::new());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run ends by itself");
    let mut events = Vec::new();
    while let Ok(report) = rx.try_recv() {
        events.push(report.event);
    }
    (result, events)
}

#[tokio::test]
async fn a_refused_connection_ends_the_run_with_the_broker_named_and_the_link_down() {
    // Port 1 on loopback: nothing listens there.
    let (result, events) = run("role = \"gate\"\n[broker]\nport = 1").await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("MQTT broker 127.0.0.1:1"), "{error}");
    let links: Vec<LinkState> = events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Health { link, .. } => Some(*link),
            _ => None,
        })
        .collect();
    assert_eq!(links, [LinkState::Connecting, LinkState::Disconnected]);
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_configuration_error_naming_the_key() {
    let (result, _) = run(
        "role = \"gate\"\n[broker]\nport = 1\n[broker.tls]\nca_file = \"/nonexistent/broker-ca.pem\"",
    )
    .await;
    match result {
        Err(DeviceError::Config(message)) => {
            assert!(
                message.starts_with("broker.tls.ca_file: /nonexistent/broker-ca.pem"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}
