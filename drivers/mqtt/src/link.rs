//! One broker connection as a handle plus one task (the rumqttc shape): the task owns
//! rumqttc's event loop and forwards what the broker delivers over a channel; the caller
//! publishes through the cloneable [`AsyncClient`]. Used by the driver and the simulated
//! device alike.
//!
//! rumqttc's `poll()` reconnects at once after an error. Here the task ends instead and
//! reports [`LinkEvent::Closed`]: the driver's run then ends with an error, and the daemon's
//! supervisor restarts it after a capped, jittered backoff, so a dead broker is never
//! hammered.

use std::io::BufReader;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::protocol::MAX_PAYLOAD;
use crate::settings::{Password, TlsSettings};

/// Requests the client may queue before `try_publish` reports the queue full.
pub const REQUEST_CAPACITY: usize = 64;

/// The largest packet read from the broker. Bigger than [`MAX_PAYLOAD`], so an oversized
/// payload is refused as a message (counted, the link stays up); a packet beyond this
/// breaks the connection (rumqttc's limit) and the device restarts.
pub const MAX_INCOMING_PACKET: usize = 16 * MAX_PAYLOAD;

/// What the connection task reports.
#[derive(Debug)]
pub enum LinkEvent {
    /// The broker accepted the connection (CONNACK, success).
    Connected,
    /// A message arrived on a subscribed topic.
    Publish {
        /// The topic.
        topic: String,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The connection ended (broker gone, refused, or a clean disconnect); the task is done.
    Closed(String),
}

/// How to reach a broker.
#[derive(Clone, Debug)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, Password)>,
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// TLS, if used.
    pub tls: Option<TlsSettings>,
}

/// A TLS setting that cannot be used (bad CA file).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TlsError {
    /// The settings key.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl BrokerAddress {
    /// rumqttc's options: a clean session, `will` as the last will.
    pub fn options(&self, will: LastWill) -> Result<MqttOptions, TlsError> {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options
            .set_keep_alive(self.keepalive)
            .set_clean_session(true)
            .set_last_will(will)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.expose());
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(client_config(tls)?),
            )));
        }
        Ok(options)
    }
}

/// A rustls client configuration on ring (the workspace's one crypto library), checking the
/// broker against `ca_file` or the system's roots.
fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &tls.ca_file {
        let error = |message: String| TlsError {
            key: "broker.tls.ca_file",
            message,
        };
        let file =
            std::fs::File::open(path).map_err(|e| error(format!("{}: {e}", path.display())))?;
        let certs = rustls_pemfile::certs(&mut BufReader::new(file))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("{}: not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(error(format!(
                "{}: no CERTIFICATE in the file",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| error(format!("{}: {e}", path.display())))?;
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            return Err(TlsError {
                key: "broker.tls.ca_file",
                message: "the system has no CA roots; give the broker's CA as a PEM file".into(),
            });
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| TlsError {
            key: "broker.tls",
            message: e.to_string(),
        })
}

/// A last will: `payload` retained on `topic` at QoS 1.
pub fn will(topic: String, payload: Vec<u8>) -> LastWill {
    LastWill::new(topic, payload, QoS::AtLeastOnce, true)
}

/// Starts the connection task. It ends on its own when the connection ends (reporting
/// [`LinkEvent::Closed`]) or when `stop` fires.
pub fn spawn(
    options: MqttOptions,
    connect_timeout: Duration,
    stop: CancellationToken,
) -> (AsyncClient, mpsc::Receiver<LinkEvent>, JoinHandle<()>) {
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let mut network = eventloop.network_options();
    network.set_connection_timeout(connect_timeout.as_secs().max(1));
    eventloop.set_network_options(network);
    let (tx, rx) = mpsc::channel(256);
    let task = tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = drive(&mut eventloop, &tx) => {}
        }
    });
    (client, rx, task)
}

async fn drive(eventloop: &mut EventLoop, tx: &mpsc::Sender<LinkEvent>) {
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                LinkEvent::Connected
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                LinkEvent::Closed(format!("the broker refused the connection: {:?}", ack.code))
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => LinkEvent::Publish {
                topic: publish.topic,
                payload: publish.payload.to_vec(),
            },
            Ok(Event::Outgoing(Outgoing::Disconnect)) => LinkEvent::Closed("disconnected".into()),
            Ok(_) => continue,
            Err(error) => LinkEvent::Closed(error.to_string()),
        };
        let closed = matches!(event, LinkEvent::Closed(_));
        if tx.send(event).await.is_err() || closed {
            return;
        }
    }
}
