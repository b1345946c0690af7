//! [`MqttDevice`]: a configured MQTT device as a daemon task.
//!
//! `run` connects to the broker (with the gateway's last will on `<prefix>/gateway`),
//! subscribes to the device's topics, says the gateway is online, and then serves: what the
//! device publishes becomes [`rfidgw_driver::DeviceEvent`]s, commands from the mailbox go
//! out on `<prefix>/cmd` and are answered by the device's replies (or expire). When the
//! broker connection ends the run ends with an error and the supervisor builds the device
//! again after its backoff; on shutdown the gateway says it is offline and disconnects.

use std::future::pending;
use std::time::Duration;

use rfidgw_driver::command::Envelope;
use rfidgw_driver::{
    CommandError, CommandLease, Device, DeviceError, DeviceEvent, DeviceEventSink, DeviceFuture,
    LineCounters, LineStats, LinkState,
};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::link::{self, BrokerAddress, LinkEvent};
use crate::protocol::{Channel, Presence, Topics, encode_presence};
use crate::session::Session;
use crate::settings::{Checked, MqttSettings};
use crate::sim::{SimHandle, SimulatedDevice};

/// How long a clean shutdown waits for the broker to take the gateway's goodbye.
const GOODBYE: Duration = Duration::from_secs(1);

/// An MQTT device built from its settings.
#[derive(Debug)]
pub struct MqttDevice {
    checked: Checked,
    commands: Option<CommandLease>,
    simulator: Option<SimHandle>,
}

impl MqttDevice {
    /// A device `device` from its settings; a [`DeviceError::Config`] names the key
    /// (`broker.port: …`).
    pub fn new(device: &str, settings: &MqttSettings) -> Result<Self, DeviceError> {
        let checked = settings
            .check(device)
            .map_err(|e| DeviceError::Config(e.to_string()))?;
        Ok(Self {
            checked,
            commands: None,
            simulator: None,
        })
    }

    /// The device's topics.
    pub fn topics(&self) -> &Topics {
        &self.checked.topics
    }

    /// The broker as this device reaches it (the simulated device uses it too).
    pub fn broker(&self) -> BrokerAddress {
        broker_address(&self.checked, self.checked.client_id.clone())
    }

    /// For `[devices.settings.simulator]`: the remote control of the simulated device that
    /// `run` starts on the same broker and topics.
    pub fn simulator(&mut self) -> SimHandle {
        self.simulator
            .get_or_insert_with(SimHandle::default)
            .clone()
    }
}

fn broker_address(checked: &Checked, client_id: String) -> BrokerAddress {
    let broker = &checked.settings.broker;
    BrokerAddress {
        host: broker.host.clone(),
        port: checked.port,
        client_id,
        credentials: broker
            .username
            .clone()
            .map(|user| (user, broker.password.clone().unwrap_or_default())),
        keepalive: checked.keepalive(),
        tls: broker.tls.clone(),
    }
}

impl Device for MqttDevice {
    /// Commands are published to the device and answered by its replies.
    fn lend_commands(&mut self, lease: CommandLease) -> Option<CommandLease> {
        self.commands = Some(lease);
        None
    }

    fn run(self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture {
        Box::pin(async move {
            let this = *self;
            // The simulated device stops with this run, so a restart does not leave it behind.
            let this_run = cancel.child_token();
            let _stop_simulator = this_run.clone().drop_guard();
            if let Some(settings) = this.checked.settings.simulator.clone() {
                let simulated = SimulatedDevice::with_handle(
                    this.simulator.clone().unwrap_or_default(),
                    this.checked.settings.role,
                    this.checked.topics.clone(),
                    broker_address(&this.checked, format!("{}-sim", this.checked.client_id)),
                    settings,
                );
                let device = sink.device().to_owned();
                let stop = this_run.clone();
                tokio::spawn(async move {
                    if let Err(error) = simulated.run(stop).await {
                        tracing::warn!(device, %error, "the simulated MQTT device stopped");
                    }
                });
            }
            let mut commands = this.commands;
            let stats = LineStats::new();
            let result = serve(
                &this.checked,
                &sink,
                &cancel,
                commands.as_deref_mut(),
                &stats,
            )
            .await;
            if let Err(error) = &result
                && !matches!(error, DeviceError::SinkClosed(_))
            {
                // Best effort: the bus may be gone too.
                let _ = sink
                    .send(DeviceEvent::Health {
                        link: LinkState::Disconnected,
                        counters: stats.snapshot(),
                    })
                    .await;
            }
            result
        })
    }
}

fn line_broke(checked: &Checked, why: &str) -> DeviceError {
    DeviceError::Transport(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        format!(
            "MQTT broker {}:{}: {why}",
            checked.settings.broker.host, checked.port
        ),
    ))
}

/// Connects, subscribes to the device's topics and says the gateway is online; `None` when
/// cancelled first.
async fn connect(
    checked: &Checked,
    sink: &DeviceEventSink,
    cancel: &CancellationToken,
    stop_link: CancellationToken,
) -> Result<Option<(AsyncClient, mpsc::Receiver<LinkEvent>)>, DeviceError> {
    let topics = &checked.topics;
    let gateway = topics.topic(Channel::Gateway);
    let options = broker_address(checked, checked.client_id.clone())
        .options(link::will(
            gateway.clone(),
            encode_presence(Presence::Offline),
        ))
        .map_err(|e| DeviceError::Config(e.to_string()))?;
    let (client, mut events, _task) = link::spawn(options, checked.connect_timeout(), stop_link);
    sink.send(DeviceEvent::Health {
        link: LinkState::Connecting,
        counters: LineCounters::default(),
    })
    .await?;
    let connected = tokio::time::timeout(checked.connect_timeout(), events.recv());
    tokio::select! {
        () = cancel.cancelled() => return Ok(None),
        first = connected => match first {
            Ok(Some(LinkEvent::Connected)) => {}
            Ok(Some(LinkEvent::Closed(why))) => return Err(line_broke(checked, &why)),
            Ok(Some(LinkEvent::Publish { .. }) | None) => {
                return Err(line_broke(checked, "the connection ended before CONNACK"));
            }
            Err(_) => {
                let waited = checked.connect_timeout();
                return Err(line_broke(checked, &format!("no CONNACK within {waited:?}")));
            }
        },
    }
    for channel in Channel::FROM_DEVICE {
        client
            .try_subscribe(topics.topic(channel), checked.qos)
            .map_err(|e| line_broke(checked, &e.to_string()))?;
    }
    client
        .try_publish(
            gateway,
            QoS::AtLeastOnce,
            true,
            encode_presence(Presence::Online),
        )
        .map_err(|e| line_broke(checked, &e.to_string()))?;
    tracing::info!(
        device = sink.device(),
        broker = %format!("{}:{}", checked.settings.broker.host, checked.port),
        tls = checked.settings.broker.tls.is_some(),
        client_id = checked.client_id,
        prefix = topics.prefix(),
        role = ?checked.settings.role,
        "MQTT device connected through the broker"
    );
    Ok(Some((client, events)))
}

async fn serve(
    checked: &Checked,
    sink: &DeviceEventSink,
    cancel: &CancellationToken,
    mut commands: Option<&mut mpsc::Receiver<Envelope>>,
    stats: &LineStats,
) -> Result<(), DeviceError> {
    let stop_link = CancellationToken::new();
    let _stop_link = stop_link.clone().drop_guard();
    let Some((client, mut events)) = connect(checked, sink, cancel, stop_link).await? else {
        return Ok(());
    };
    let topics = &checked.topics;
    let gateway = topics.topic(Channel::Gateway);
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let mut session = Session::new(
        sink.device(),
        topics.clone(),
        checked.settings.role,
        checked.reply_timeout(),
        run_tag,
        stats.clone(),
    );
    let start = Instant::now();
    let mut health = interval_at(start + checked.health_interval(), checked.health_interval());
    health.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline = session.next_deadline();
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                session.close(&CommandError::NotRunning);
                goodbye(&client, gateway, &mut events).await;
                return Ok(());
            }
            event = events.recv() => match event {
                Some(LinkEvent::Publish { topic, payload }) => {
                    for event in session.on_publish(&topic, &payload) {
                        sink.send(event).await?;
                    }
                }
                Some(LinkEvent::Connected) => {}
                Some(LinkEvent::Closed(why)) => {
                    session.close(&CommandError::Line(why.clone()));
                    return Err(line_broke(checked, &why));
                }
                None => {
                    session.close(&CommandError::Line("the broker connection ended".into()));
                    return Err(line_broke(checked, "the connection task ended"));
                }
            },
            () = sleep_until_some(deadline) => session.expire(Instant::now()),
            envelope = next_command(&mut commands) => {
                if let Some(out) = session.command(envelope, Instant::now())
                    && let Err(error) = client.try_publish(out.topic, checked.qos, false, out.payload)
                {
                    session.publish_failed(&out.id, &error.to_string());
                }
            }
            _ = health.tick() => {
                sink.send(DeviceEvent::Health {
                    link: session.link(),
                    counters: session.counters(),
                })
                .await?;
            }
        }
    }
}

/// Says the gateway is offline (retained) and disconnects, waiting a moment for the broker
/// to take it: a clean goodbye instead of the last will a moment later.
async fn goodbye(client: &AsyncClient, gateway: String, events: &mut mpsc::Receiver<LinkEvent>) {
    let offline = encode_presence(Presence::Offline);
    if client
        .try_publish(gateway, QoS::AtLeastOnce, true, offline)
        .is_err()
        || client.try_disconnect().is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(GOODBYE, async {
        while let Some(event) = events.recv().await {
            if matches!(event, LinkEvent::Closed(_)) {
                return;
            }
        }
    })
    .await;
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

/// The next command; never ready once every handle is gone (or with no mailbox).
async fn next_command(commands: &mut Option<&mut mpsc::Receiver<Envelope>>) -> Envelope {
    loop {
        let Some(rx) = commands.as_deref_mut() else {
            return pending().await;
        };
        match rx.recv().await {
            Some(envelope) => return envelope,
            None => *commands = None,
        }
    }
}
