//! A simulated MQTT device: the device side of the protocol on a real broker, for the tests
//! and the demo.
//!
//! As a **gate** it publishes tag arrivals and departures (from a [`SimHandle`] or a
//! script) and input changes, and carries out outputs and tag reads and writes on its
//! virtual tags. As a **sorter** it takes diverts, fills its bins and reports a bin full
//! once it has taken `capacity` items (emptied by [`SimHandle::empty_bin`] or after
//! `empty_after_ms`). It says it is online on `<prefix>/status` (retained) with
//! `{"state":"offline"}` as its last will, as a real device should.
//!
//! Every command it receives is recorded ([`SimHandle::commands`]); it can be told to
//! refuse or to ignore commands ([`Behaviour`]) and to publish any raw payload, so tests
//! can drive the gateway through refusals, timeouts and malformed input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rfidgw_driver::sim_script::{SimulatorSettings as Script, play_timeline};
use rfidgw_driver::{
    DeviceCommand, DeviceError, OutputCommand, ReadBack, SorterState, TagRead, Uid,
};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::link::{self, BrokerAddress, LinkEvent};
use crate::protocol::{
    self, Channel, CommandMessage, Presence, RefusalCode, Reply, ReplyData, ReplyOutcome, Topics,
};
use crate::settings::{Role, SimulatorSettings};

/// How the simulated device answers commands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Carries each command out and answers it.
    #[default]
    Answer,
    /// Refuses each command with this code and text.
    Refuse {
        /// The kind of refusal.
        code: RefusalCode,
        /// The text.
        error: String,
    },
    /// Records each command and never answers (the gateway's deadline runs out).
    Ignore,
}

/// The remote control of a simulated device. Cheap to clone; made before the device runs
/// and valid across its runs.
#[derive(Clone, Debug, Default)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<SimState>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct SimState {
    /// Messages waiting to be published: channel, payload, retained.
    outbox: VecDeque<(Channel, Vec<u8>, bool)>,
    /// Every tag the device knows, with its current attributes.
    tags: BTreeMap<Uid, TagRead>,
    /// The tags in its field now.
    in_field: BTreeSet<Uid>,
    inputs: u8,
    commands: Vec<CommandMessage>,
    behaviour: Behaviour,
    sorter: SorterState,
    /// Items taken per bin since it was last emptied.
    fill: BTreeMap<u16, u32>,
    connected: bool,
}

impl SimHandle {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A test that panicked while holding the lock leaves plain data behind: use it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue(&self, channel: Channel, payload: Vec<u8>, retain: bool) {
        self.lock().outbox.push_back((channel, payload, retain));
        self.shared.wake.notify_one();
    }

    /// A tag enters the field: the device reports it arrived.
    pub fn put_tag(&self, read: TagRead) {
        let payload = protocol::encode_arrived(&read);
        {
            let mut state = self.lock();
            state.in_field.insert(read.uid.clone());
            state.tags.insert(read.uid.clone(), read);
        }
        self.queue(Channel::Tags, payload, false);
    }

    /// A tag leaves the field: the device reports it departed.
    pub fn remove_tag(&self, uid: &Uid) {
        self.lock().in_field.remove(uid);
        self.queue(Channel::Tags, protocol::encode_departed(uid), false);
    }

    /// The tag as the device knows it now (after the gateway's writes).
    pub fn tag(&self, uid: &Uid) -> Option<TagRead> {
        self.lock().tags.get(uid).cloned()
    }

    /// The inputs change to `levels`.
    pub fn set_inputs(&self, levels: u8) {
        let changed = {
            let mut state = self.lock();
            let changed = state.inputs ^ levels;
            state.inputs = levels;
            changed
        };
        self.queue(
            Channel::Inputs,
            protocol::encode_inputs(levels, changed),
            false,
        );
    }

    /// Staff empty `bin`: it takes `capacity` items again.
    pub fn empty_bin(&self, bin: u16) {
        let payload = {
            let mut state = self.lock();
            state.fill.remove(&bin);
            state.sorter.bins_full.retain(|b| *b != bin);
            protocol::encode_sorter(&state.sorter)
        };
        self.queue(Channel::Sorter, payload, true);
    }

    /// The conveyor jams (`true`) or runs again.
    pub fn set_jam(&self, jam: bool) {
        let payload = {
            let mut state = self.lock();
            state.sorter.jam = jam;
            protocol::encode_sorter(&state.sorter)
        };
        self.queue(Channel::Sorter, payload, true);
    }

    /// Publishes `payload` as it is on `channel` (malformed input for tests).
    pub fn publish_raw(&self, channel: Channel, payload: impl Into<Vec<u8>>) {
        self.queue(channel, payload.into(), false);
    }

    /// How commands are answered from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    /// Every command received so far, in order.
    pub fn commands(&self) -> Vec<CommandMessage> {
        self.lock().commands.clone()
    }

    /// The output commands received so far.
    pub fn outputs(&self) -> Vec<OutputCommand> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c.command {
                DeviceCommand::Output(output) => Some(output),
                _ => None,
            })
            .collect()
    }

    /// The bins diverted to so far.
    pub fn diverts(&self) -> Vec<u16> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c.command {
                DeviceCommand::Divert { bin } => Some(bin),
                _ => None,
            })
            .collect()
    }

    /// The sorter's state now.
    pub fn sorter(&self) -> SorterState {
        self.lock().sorter.clone()
    }

    /// Whether the device is connected and subscribed.
    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }
}

/// A simulated device on a broker.
#[derive(Debug)]
pub struct SimulatedDevice {
    handle: SimHandle,
    role: Role,
    topics: Topics,
    broker: BrokerAddress,
    settings: SimulatorSettings,
}

impl SimulatedDevice {
    /// A device of `role` under `topics` on `broker`, with a fresh handle.
    pub fn new(
        role: Role,
        topics: Topics,
        broker: BrokerAddress,
        settings: SimulatorSettings,
    ) -> Self {
        Self::with_handle(SimHandle::default(), role, topics, broker, settings)
    }

    /// The same, controlled through `handle`.
    pub fn with_handle(
        handle: SimHandle,
        role: Role,
        topics: Topics,
        broker: BrokerAddress,
        settings: SimulatorSettings,
    ) -> Self {
        Self {
            handle,
            role,
            topics,
            broker,
            settings,
        }
    }

    /// Its remote control.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Connects and plays the device until `cancel` fires (then says offline and
    /// disconnects) or the broker connection ends (`Err`).
    pub async fn run(self, cancel: CancellationToken) -> Result<(), DeviceError> {
        let status = self.topics.topic(Channel::Status);
        let options = self
            .broker
            .options(link::will(
                status.clone(),
                protocol::encode_presence(Presence::Offline),
            ))
            .map_err(|e| DeviceError::Config(e.to_string()))?;
        let stop_link = CancellationToken::new();
        let _stop_link = stop_link.clone().drop_guard();
        let (client, mut events, _task) =
            link::spawn(options, Duration::from_secs(5), stop_link.clone());
        let broken = |why: String| {
            DeviceError::Transport(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                why,
            ))
        };
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            first = events.recv() => match first {
                Some(LinkEvent::Connected) => {}
                Some(LinkEvent::Closed(why)) => return Err(broken(why)),
                _ => return Err(broken("no CONNACK".into())),
            },
        }
        let publish = |channel: Channel, payload: Vec<u8>, retain: bool| {
            client
                .try_publish(
                    self.topics.topic(channel),
                    QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .map_err(|e| broken(e.to_string()))
        };
        client
            .try_subscribe(self.topics.topic(Channel::Command), QoS::AtLeastOnce)
            .map_err(|e| broken(e.to_string()))?;
        publish(
            Channel::Status,
            protocol::encode_presence(Presence::Online),
            true,
        )?;
        if self.role == Role::Sorter {
            publish(
                Channel::Sorter,
                protocol::encode_sorter(&self.handle.sorter()),
                true,
            )?;
        }
        self.handle.lock().connected = true;
        let script = self.play_script(cancel.child_token());
        let _stop_script = script.drop_guard();
        let result = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    let _ = publish(Channel::Status, protocol::encode_presence(Presence::Offline), true);
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(event) = events.recv().await {
                            if matches!(event, LinkEvent::Closed(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    break Ok(());
                }
                event = events.recv() => match event {
                    Some(LinkEvent::Publish { topic, payload }) => {
                        if self.topics.channel(&topic) == Some(Channel::Command) {
                            self.on_command(&client, &payload, &cancel);
                        }
                    }
                    Some(LinkEvent::Connected) => {}
                    Some(LinkEvent::Closed(why)) => break Err(broken(why)),
                    None => break Err(broken("the connection task ended".into())),
                },
                () = self.handle.shared.wake.notified() => {
                    let queued: Vec<_> = self.handle.lock().outbox.drain(..).collect();
                    for (channel, payload, retain) in queued {
                        publish(channel, payload, retain)?;
                    }
                }
            }
        };
        self.handle.lock().connected = false;
        result
    }

    /// Starts the gate's script of tags and inputs, if there is one; returns its stop token.
    fn play_script(&self, stop: CancellationToken) -> CancellationToken {
        let script = Script {
            round_ms: self.settings.round_ms,
            tags: self.settings.tags.clone(),
            inputs: self.settings.inputs.clone(),
        };
        let Ok(entries) = script.entries() else {
            return stop; // checked with the settings; nothing to play
        };
        if entries.is_empty() && script.inputs.is_empty() {
            return stop;
        }
        let reads: Vec<TagRead> = entries
            .iter()
            .map(|e| TagRead {
                uid: Uid::new(e.uid),
                afi: Some(e.afi),
                dsfid: Some(e.dsfid),
                eas: Some(e.eas),
                memory: Some(e.memory.clone()),
                antenna: None,
            })
            .collect();
        let timeline: Vec<_> = entries.iter().map(|e| (e.at, e.stay)).collect();
        let round = Duration::from_millis(script.round_ms);
        let repeat = script.round_ms > 0;
        let handle = self.handle.clone();
        let tags = async move {
            play_timeline(&timeline, round, repeat, |index, entered| {
                // A tag the gateway rewrote keeps its new attributes in the next round.
                let read = handle
                    .tag(&reads[index].uid)
                    .unwrap_or_else(|| reads[index].clone());
                if entered {
                    handle.put_tag(read);
                } else {
                    handle.remove_tag(&read.uid);
                }
            })
            .await;
        };
        let steps = script.inputs.clone();
        let handle = self.handle.clone();
        let inputs = async move {
            if steps.is_empty() {
                return;
            }
            let timeline: Vec<_> = steps
                .iter()
                .map(|s| (Duration::from_millis(s.at_ms), None))
                .collect();
            play_timeline(&timeline, round, repeat, |index, _| {
                handle.set_inputs(steps[index].levels);
            })
            .await;
        };
        let token = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = async { tokio::join!(tags, inputs); } => {}
            }
        });
        stop
    }

    fn on_command(&self, client: &AsyncClient, payload: &[u8], cancel: &CancellationToken) {
        let message = match protocol::parse_command(payload) {
            Ok(message) => message,
            Err(problem) => {
                tracing::warn!(%problem, "simulated MQTT device: malformed command ignored");
                return;
            }
        };
        let outcome = {
            let mut state = self.handle.lock();
            state.commands.push(message.clone());
            match state.behaviour.clone() {
                Behaviour::Ignore => return,
                Behaviour::Refuse { code, error } => ReplyOutcome::Refused {
                    code,
                    error,
                    status: None,
                },
                Behaviour::Answer => self.carry_out(&mut state, &message.command, cancel),
            }
        };
        let reply = protocol::encode_reply(&Reply {
            id: message.id,
            outcome,
        });
        if let Err(error) = client.try_publish(
            self.topics.topic(Channel::Reply),
            QoS::AtLeastOnce,
            false,
            reply,
        ) {
            tracing::warn!(%error, "simulated MQTT device: reply not sent");
        }
    }

    /// Carries `command` out on the virtual device.
    fn carry_out(
        &self,
        state: &mut SimState,
        command: &DeviceCommand,
        cancel: &CancellationToken,
    ) -> ReplyOutcome {
        if let Err(why) = self.role.accepts(command) {
            return refused(RefusalCode::Unsupported, why);
        }
        let done = |data: ReplyData| ReplyOutcome::Done(data);
        let written = || {
            done(ReplyData {
                read_back: Some(ReadBack::Confirmed),
                attempts: Some(1),
                ..ReplyData::default()
            })
        };
        match command {
            DeviceCommand::Output(_) => done(ReplyData::default()),
            DeviceCommand::Divert { bin } => self.divert(state, *bin, cancel),
            DeviceCommand::ReadAfi { uid }
            | DeviceCommand::WriteAfi { uid, .. }
            | DeviceCommand::ReadEas { uid }
            | DeviceCommand::WriteEas { uid, .. }
            | DeviceCommand::ReadBlocks { uid, .. }
            | DeviceCommand::WriteBlocks { uid, .. } => {
                if !state.in_field.contains(uid) {
                    return refused(
                        RefusalCode::NoTransponder,
                        format!("{uid} is not in the field"),
                    );
                }
                let Some(tag) = state.tags.get_mut(uid) else {
                    return refused(RefusalCode::NoTransponder, format!("{uid} is unknown"));
                };
                let memory = tag.memory.get_or_insert_with(Vec::new);
                match command {
                    DeviceCommand::ReadAfi { .. } => done(ReplyData {
                        afi: Some(tag.afi.unwrap_or(0)),
                        ..ReplyData::default()
                    }),
                    DeviceCommand::WriteAfi { afi, .. } => {
                        tag.afi = Some(*afi);
                        written()
                    }
                    DeviceCommand::ReadEas { .. } => done(ReplyData {
                        eas: Some(tag.eas.unwrap_or(false)),
                        ..ReplyData::default()
                    }),
                    DeviceCommand::WriteEas { on, .. } => {
                        tag.eas = Some(*on);
                        written()
                    }
                    DeviceCommand::ReadBlocks { first, count, .. } => {
                        let from = usize::from(*first) * 4;
                        let to = from + usize::from(*count) * 4;
                        match memory.get(from..to) {
                            Some(data) => done(ReplyData {
                                data: Some(data.to_vec()),
                                ..ReplyData::default()
                            }),
                            None => refused(RefusalCode::Refused, "blocks beyond the memory"),
                        }
                    }
                    DeviceCommand::WriteBlocks { first, data, .. } => {
                        let from = usize::from(*first) * 4;
                        match memory.get_mut(from..from + data.len()) {
                            Some(blocks) => {
                                blocks.copy_from_slice(data);
                                written()
                            }
                            None => refused(RefusalCode::Refused, "blocks beyond the memory"),
                        }
                    }
                    DeviceCommand::Output(_) | DeviceCommand::Divert { .. } => {
                        unreachable!("matched above")
                    }
                }
            }
        }
    }

    fn divert(&self, state: &mut SimState, bin: u16, cancel: &CancellationToken) -> ReplyOutcome {
        if bin == 0 || bin > self.settings.bins {
            return refused(
                RefusalCode::Refused,
                format!("no bin {bin}; bins are 1 to {}", self.settings.bins),
            );
        }
        let fill = state.fill.entry(bin).or_insert(0);
        *fill += 1;
        if *fill >= self.settings.capacity && !state.sorter.bins_full.contains(&bin) {
            state.sorter.bins_full.push(bin);
            state.sorter.bins_full.sort_unstable();
            let payload = protocol::encode_sorter(&state.sorter);
            state.outbox.push_back((Channel::Sorter, payload, true));
            self.handle.shared.wake.notify_one();
            if self.settings.empty_after_ms > 0 {
                let handle = self.handle.clone();
                let after = Duration::from_millis(self.settings.empty_after_ms);
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(after) => handle.empty_bin(bin),
                    }
                });
            }
        }
        ReplyOutcome::Done(ReplyData::default())
    }
}

fn refused(code: RefusalCode, error: impl Into<String>) -> ReplyOutcome {
    ReplyOutcome::Refused {
        code,
        error: error.into(),
        status: None,
    }
}

/// Removes the retained messages under `topics` (the device's status and sorter state, the
/// gateway's status) by publishing empty retained payloads: tidying a shared broker after a
/// test or a trial.
pub async fn clear_retained(broker: &BrokerAddress, topics: &Topics) -> Result<(), DeviceError> {
    let failed =
        |why: String| DeviceError::Transport(std::io::Error::other(format!("clearing: {why}")));
    // No last will to leave behind: the will goes to a topic that is cleared with the rest.
    let options = broker
        .options(link::will(topics.topic(Channel::Gateway), Vec::new()))
        .map_err(|e| DeviceError::Config(e.to_string()))?;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (client, mut events, _task) = link::spawn(options, Duration::from_secs(5), stop.clone());
    match events.recv().await {
        Some(LinkEvent::Connected) => {}
        Some(LinkEvent::Closed(why)) => return Err(failed(why)),
        _ => return Err(failed("no CONNACK".into())),
    }
    for channel in [Channel::Status, Channel::Sorter, Channel::Gateway] {
        client
            .try_publish(topics.topic(channel), QoS::AtLeastOnce, true, Vec::new())
            .map_err(|e| failed(e.to_string()))?;
    }
    client.try_disconnect().map_err(|e| failed(e.to_string()))?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(event) = events.recv().await {
            if matches!(event, LinkEvent::Closed(_)) {
                break;
            }
        }
    })
    .await;
    Ok(())
}
