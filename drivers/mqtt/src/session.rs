//! The gateway's side of one MQTT device as a plain state machine, without I/O: commands in
//! flight matched to replies by id, tags present, the last inputs and sorter state, and the
//! device's presence. The run loop ([`crate::device`]) feeds it what the broker delivers
//! and what the mailbox holds, and sends what it returns; the tests drive it directly.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rfidgw_driver::command::Envelope;
use rfidgw_driver::{
    CommandError, DeviceCommand, DeviceEvent, LineCounters, LineStats, LinkState, SorterState, Uid,
};
use tokio::time::Instant;

use crate::protocol::{
    self, Channel, DeviceMessage, Presence, Problem, Reply, Topics, encode_command,
};
use crate::settings::Role;

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The command's id (to fail it if the publish cannot be queued).
    pub id: String,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
}

struct InFlight {
    envelope: Envelope,
    /// When the gateway stops waiting: the caller's deadline or the reply timeout.
    deadline: Instant,
}

/// A malformed payload is logged at `warn` at most this often per device; those in between
/// are logged at `debug` and counted, so a device spewing garbage cannot flood the log.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A payload the gateway could not use: logged and counted in one place (STYLE.md).
#[derive(Debug)]
pub struct MalformedPayload<'a> {
    /// The device.
    pub device: &'a str,
    /// The topic it came on.
    pub topic: &'a str,
    /// What is wrong with it.
    pub problem: &'a Problem,
}

impl MalformedPayload<'_> {
    /// Counts the payload as a bad frame and logs its problem: at `warn` unless one was
    /// warned about within [`WARN_EVERY`] (`last_warned`), then at `debug`.
    pub fn emit(&self, stats: &LineStats, last_warned: &mut Option<std::time::Instant>) {
        stats.bad_frame();
        let bad_frames = stats.snapshot().bad_frames;
        let now = std::time::Instant::now();
        if last_warned.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            tracing::debug!(
                device = self.device,
                topic = self.topic,
                problem = %self.problem,
                bad_frames,
                "malformed MQTT payload ignored"
            );
        } else {
            *last_warned = Some(now);
            tracing::warn!(
                device = self.device,
                topic = self.topic,
                problem = %self.problem,
                bad_frames,
                "malformed MQTT payload ignored"
            );
        }
    }
}

/// The gateway's state for one device during one run.
pub struct Session {
    device: String,
    topics: Topics,
    role: Role,
    reply_timeout: Duration,
    /// Prefix of this run's command ids, so a late reply to an earlier run's command never
    /// matches one of this run's.
    run_tag: String,
    next_id: u64,
    in_flight: HashMap<String, InFlight>,
    present: BTreeSet<Uid>,
    inputs: Option<u8>,
    sorter: Option<SorterState>,
    presence: Option<Presence>,
    stats: LineStats,
    last_warned: Option<std::time::Instant>,
}

impl Session {
    /// A session for `device` under `topics`; `run_tag` makes this run's command ids unique,
    /// `stats` counts good and malformed messages and replies that never came.
    pub fn new(
        device: &str,
        topics: Topics,
        role: Role,
        reply_timeout: Duration,
        run_tag: String,
        stats: LineStats,
    ) -> Self {
        Self {
            device: device.to_owned(),
            topics,
            role,
            reply_timeout,
            run_tag,
            next_id: 0,
            in_flight: HashMap::new(),
            present: BTreeSet::new(),
            inputs: None,
            sorter: None,
            presence: None,
            stats,
            last_warned: None,
        }
    }

    /// The line counters: good messages, malformed ones, commands that got no reply.
    pub fn counters(&self) -> LineCounters {
        self.stats.snapshot()
    }

    /// The link as the health report shows it: connected once the device said it is online
    /// (or sent anything), disconnected while its status says offline.
    pub fn link(&self) -> LinkState {
        match self.presence {
            None => LinkState::Connecting,
            Some(Presence::Online) => LinkState::Connected,
            Some(Presence::Offline) => LinkState::Disconnected,
        }
    }

    /// Commands waiting for their reply.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes a command from the mailbox: returns what to publish, or answers it at once
    /// (expired, not for this role, the device offline).
    pub fn command(&mut self, envelope: Envelope, now: Instant) -> Option<Outbound> {
        if envelope.expired() {
            envelope.answer(Err(CommandError::Expired));
            return None;
        }
        if let Err(refusal) = self.role.accepts(&envelope.command) {
            envelope.answer(Err(CommandError::Unsupported(refusal)));
            return None;
        }
        if self.presence == Some(Presence::Offline) {
            envelope.answer(Err(CommandError::NotRunning));
            return None;
        }
        self.next_id += 1;
        let id = format!("{}-{}", self.run_tag, self.next_id);
        let deadline = envelope.deadline.min(now + self.reply_timeout);
        let payload = encode_command(&id, &envelope.command, deadline - now);
        self.in_flight
            .insert(id.clone(), InFlight { envelope, deadline });
        Some(Outbound {
            id,
            topic: self.topics.topic(Channel::Command),
            payload,
        })
    }

    /// The command `id` could not be published: answers it with a broken line.
    pub fn publish_failed(&mut self, id: &str, why: &str) {
        if let Some(flight) = self.in_flight.remove(id) {
            flight
                .envelope
                .answer(Err(CommandError::Line(format!("not sent: {why}"))));
        }
    }

    /// When the next command in flight runs out of time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.in_flight.values().map(|f| f.deadline).min()
    }

    /// Answers every command whose time is up with [`CommandError::Expired`].
    pub fn expire(&mut self, now: Instant) {
        let due: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now || f.envelope.expired())
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(flight) = self.in_flight.remove(&id) {
                self.stats.timeout();
                tracing::warn!(
                    device = self.device,
                    id,
                    command = flight.envelope.command.name(),
                    "the device did not answer in time"
                );
                flight.envelope.answer(Err(CommandError::Expired));
            }
        }
    }

    /// Answers every command in flight with `error` (the run is ending).
    pub fn close(&mut self, error: &CommandError) {
        for (_, flight) in self.in_flight.drain() {
            flight.envelope.answer(Err(error.clone()));
        }
    }

    /// Takes one message the broker delivered and returns what to report. A malformed
    /// payload is logged and counted, never an error.
    pub fn on_publish(&mut self, topic: &str, payload: &[u8]) -> Vec<DeviceEvent> {
        let Some(channel) = self.topics.channel(topic) else {
            return Vec::new();
        };
        if matches!(channel, Channel::Command | Channel::Gateway) {
            return Vec::new(); // our own messages, if the broker echoes them
        }
        let message = match protocol::parse_device_message(channel, payload) {
            Ok(message) => message,
            Err(problem) => {
                MalformedPayload {
                    device: &self.device,
                    topic,
                    problem: &problem,
                }
                .emit(&self.stats, &mut self.last_warned);
                return Vec::new();
            }
        };
        self.stats.frame_ok();
        let mut events = Vec::new();
        if !matches!(message, DeviceMessage::Status(_) | DeviceMessage::Cleared) {
            // Anything else from the device shows it is there.
            self.set_presence(Presence::Online, &mut events);
        }
        match message {
            DeviceMessage::Cleared => {}
            DeviceMessage::Status(presence) => self.set_presence(presence, &mut events),
            DeviceMessage::Arrived(read) => {
                self.present.insert(read.uid.clone());
                events.push(DeviceEvent::TagArrived(read));
            }
            DeviceMessage::Departed(uid) => {
                // A departure of a tag this run never saw arrive means nothing here.
                if self.present.remove(&uid) {
                    events.push(DeviceEvent::TagDeparted { uid });
                }
            }
            DeviceMessage::Inputs { levels, changed } => {
                let changed = changed.unwrap_or_else(|| self.inputs.map_or(0, |l| l ^ levels));
                self.inputs = Some(levels);
                events.push(DeviceEvent::Inputs(rfidgw_driver::InputState {
                    levels,
                    changed,
                }));
            }
            DeviceMessage::Sorter(state) => {
                if self.sorter.as_ref() != Some(&state) {
                    tracing::info!(
                        device = self.device,
                        bins_full = ?state.bins_full,
                        jam = state.jam,
                        "sorter state"
                    );
                    self.sorter = Some(state.clone());
                    events.push(DeviceEvent::Sorter(state));
                }
            }
            DeviceMessage::Reply(reply) => self.on_reply(topic, &reply),
        }
        events
    }

    fn on_reply(&mut self, topic: &str, reply: &Reply) {
        let Some(flight) = self.in_flight.remove(&reply.id) else {
            // Late (already answered "expired") or another gateway's: nothing waits for it.
            tracing::debug!(
                device = self.device,
                id = reply.id,
                "reply to no command in flight"
            );
            return;
        };
        let result = match reply.result_for(&flight.envelope.command) {
            Ok(result) => result,
            Err(why) => {
                let problem = Problem::Field {
                    field: ".".into(),
                    message: why.clone(),
                };
                MalformedPayload {
                    device: &self.device,
                    topic,
                    problem: &problem,
                }
                .emit(&self.stats, &mut self.last_warned);
                Err(CommandError::Line(why))
            }
        };
        flight.envelope.answer(result);
    }

    fn set_presence(&mut self, presence: Presence, events: &mut Vec<DeviceEvent>) {
        if self.presence == Some(presence) {
            return;
        }
        self.presence = Some(presence);
        tracing::info!(device = self.device, ?presence, "MQTT device presence");
        if presence == Presence::Offline {
            // The device is gone: so are its tags, and nothing will answer the commands.
            for uid in std::mem::take(&mut self.present) {
                events.push(DeviceEvent::TagDeparted { uid });
            }
            self.close(&CommandError::Line("the device went offline".into()));
        }
        events.push(DeviceEvent::Health {
            link: self.link(),
            counters: self.counters(),
        });
    }

    /// Whether `command` is one this device's role takes.
    pub fn accepts(&self, command: &DeviceCommand) -> bool {
        self.role.accepts(command).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use rfidgw_driver::{
        CommandAnswer, CommandMailbox, CommandResult, DeviceHandle, OutputCommand, ReaderRefusal,
        Signal, TagRead,
    };
    use tokio::task::JoinHandle;

    use super::*;

    const PREFIX: &str = "site/gate-1";

    fn session(role: Role) -> Session {
        Session::new(
            "gate-1",
            Topics::new(PREFIX).unwrap(),
            role,
            Duration::from_secs(2),
            "r1".into(),
            LineStats::new(),
        )
    }

    fn topic(suffix: &str) -> String {
        format!("{PREFIX}/{suffix}")
    }

    fn alarm() -> DeviceCommand {
        DeviceCommand::Output(OutputCommand {
            beeper: Signal::Flash,
            red: Signal::On,
            green: Signal::Off,
            signal_for: Some(Duration::from_secs(2)),
            relay_for: None,
        })
    }

    /// Sends `command` through a real mailbox and hands its envelope to the session.
    async fn send(
        session: &mut Session,
        mailbox: &CommandMailbox,
        command: DeviceCommand,
        within: Duration,
    ) -> (Option<Outbound>, JoinHandle<CommandResult>) {
        let handle: DeviceHandle = mailbox.handle();
        let call = tokio::spawn(async move { handle.call(command, within).await });
        let envelope = mailbox.lend().await.recv().await.unwrap();
        (session.command(envelope, Instant::now()), call)
    }

    fn mailbox() -> CommandMailbox {
        let mailbox = CommandMailbox::new("gate-1");
        mailbox.set_running(true);
        mailbox
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_is_published_with_an_id_and_answered_by_the_reply_with_that_id() {
        let mut session = session(Role::Gate);
        let mailbox = mailbox();
        let (out, call) = send(&mut session, &mailbox, alarm(), Duration::from_millis(500)).await;
        let out = out.unwrap();
        assert_eq!(out.topic, topic("cmd"));
        assert_eq!(out.id, "r1-1");
        let sent: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"id": "r1-1", "command": "output", "beeper": "flash",
                "red": "on", "green": "off", "signal_ms": 2000, "deadline_ms": 500})
        );
        // Another device's reply, and a reply to an id not in flight, change nothing.
        session.on_publish(
            "site/gate-2/cmd/reply",
            br#"{"id":"r1-1","ok":false,"error":"x"}"#,
        );
        let events = session.on_publish(&topic("cmd/reply"), br#"{"id":"r0-1","ok":true}"#);
        assert_eq!(session.in_flight(), 1);
        // ... though it shows the device is there.
        assert!(matches!(
            events[..],
            [DeviceEvent::Health {
                link: LinkState::Connected,
                ..
            }]
        ));
        let events = session.on_publish(&topic("cmd/reply"), br#"{"id":"r1-1","ok":true}"#);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(call.await.unwrap(), Ok(Ok(CommandAnswer::Done)));
        assert_eq!(session.in_flight(), 0);
        assert_eq!(
            session.counters().frames_ok,
            2,
            "the other device's reply is not ours"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_come_back_as_the_devices_no_and_a_reply_that_does_not_fit_as_a_broken_line() {
        let uid = Uid::from_hex("E004010000000001").unwrap();
        let cases: [(DeviceCommand, &str, CommandResult); 5] = [
            (
                DeviceCommand::WriteAfi {
                    uid: uid.clone(),
                    afi: 0xC2,
                },
                r#"{"ok":false,"error":"tag gone","code":"no_transponder"}"#,
                Ok(Err(ReaderRefusal::NoTransponder)),
            ),
            (
                DeviceCommand::ReadEas { uid: uid.clone() },
                r#"{"ok":false,"error":"locked","status":"0F"}"#,
                Ok(Err(ReaderRefusal::Status {
                    code: 0x0F,
                    meaning: "locked".into(),
                })),
            ),
            (
                DeviceCommand::ReadAfi { uid: uid.clone() },
                r#"{"ok":false,"error":"no afi here","code":"unsupported"}"#,
                Err(CommandError::Unsupported("no afi here".into())),
            ),
            (
                DeviceCommand::ReadAfi { uid: uid.clone() },
                r#"{"ok":true,"afi":"07"}"#,
                Ok(Ok(CommandAnswer::Afi { afi: 0x07 })),
            ),
            (
                DeviceCommand::ReadAfi { uid: uid.clone() },
                r#"{"ok":true}"#,
                Err(CommandError::Line(
                    "the reply to read_afi has \"ok\":true but no `afi`".into(),
                )),
            ),
        ];
        let mut session = session(Role::Gate);
        let mailbox = mailbox();
        for (i, (command, reply, expected)) in cases.into_iter().enumerate() {
            let (out, call) = send(&mut session, &mailbox, command, Duration::from_secs(1)).await;
            let id = out.unwrap().id;
            let reply = reply.replacen('{', &format!("{{\"id\":\"{id}\","), 1);
            session.on_publish(&topic("cmd/reply"), reply.as_bytes());
            assert_eq!(call.await.unwrap(), expected, "case {i}");
        }
        assert_eq!(session.counters().bad_frames, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_without_a_reply_expires_at_the_reply_timeout_and_counts() {
        let mut session = session(Role::Sorter);
        let mailbox = mailbox();
        let started = Instant::now();
        let (out, call) = send(
            &mut session,
            &mailbox,
            DeviceCommand::Divert { bin: 3 },
            Duration::from_secs(30),
        )
        .await;
        let sent: serde_json::Value = serde_json::from_slice(&out.unwrap().payload).unwrap();
        assert_eq!(sent["deadline_ms"], 2000, "the reply timeout caps the wait");
        assert_eq!(
            session.next_deadline(),
            Some(started + Duration::from_secs(2))
        );
        tokio::time::sleep_until(started + Duration::from_secs(2)).await;
        session.expire(Instant::now());
        assert_eq!(call.await.unwrap(), Err(CommandError::Expired));
        assert_eq!(session.counters().timeouts, 1);
        assert_eq!(session.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn commands_the_role_does_not_take_are_unsupported_without_reaching_the_device() {
        let mailbox = mailbox();
        let mut gate = session(Role::Gate);
        let (out, call) = send(
            &mut gate,
            &mailbox,
            DeviceCommand::Divert { bin: 1 },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(out, None);
        assert!(matches!(
            call.await.unwrap(),
            Err(CommandError::Unsupported(_))
        ));
        let mut sorter = session(Role::Sorter);
        let (out, call) = send(&mut sorter, &mailbox, alarm(), Duration::from_secs(1)).await;
        assert_eq!(out, None);
        assert!(matches!(
            call.await.unwrap(),
            Err(CommandError::Unsupported(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_offline_device_loses_its_tags_and_commands_and_refuses_new_ones() {
        let mut session = session(Role::Gate);
        let mailbox = mailbox();
        assert_eq!(session.link(), LinkState::Connecting);
        let events = session.on_publish(&topic("status"), br#"{"state":"online"}"#);
        assert!(matches!(
            events[..],
            [DeviceEvent::Health {
                link: LinkState::Connected,
                ..
            }]
        ));
        let read = br#"{"event":"arrived","uid":"E004010000000001","afi":"07"}"#;
        let events = session.on_publish(&topic("tags"), read);
        let expected = TagRead {
            afi: Some(0x07),
            ..TagRead::uid_only(Uid::from_hex("E004010000000001").unwrap())
        };
        assert_eq!(events, [DeviceEvent::TagArrived(expected)]);
        let (_, call) = send(&mut session, &mailbox, alarm(), Duration::from_secs(1)).await;

        // The device's last will.
        let events = session.on_publish(&topic("status"), b"offline");
        assert_eq!(
            events[0],
            DeviceEvent::TagDeparted {
                uid: Uid::from_hex("E004010000000001").unwrap()
            }
        );
        assert!(matches!(
            events[1],
            DeviceEvent::Health {
                link: LinkState::Disconnected,
                ..
            }
        ));
        assert_eq!(
            call.await.unwrap(),
            Err(CommandError::Line("the device went offline".into()))
        );
        let (out, call) = send(&mut session, &mailbox, alarm(), Duration::from_secs(1)).await;
        assert_eq!(out, None);
        assert_eq!(call.await.unwrap(), Err(CommandError::NotRunning));
        // A departure it never reported arriving is not passed on.
        let gone = br#"{"event":"departed","uid":"E004010000000009"}"#;
        let events = session.on_publish(&topic("tags"), gone);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, DeviceEvent::TagDeparted { .. })),
            "{events:?}"
        );
        assert_eq!(
            session.link(),
            LinkState::Connected,
            "it spoke, so it is back"
        );
    }

    #[test]
    fn inputs_work_out_what_changed_and_sorter_states_are_reported_on_change() {
        let mut session = session(Role::Sorter);
        session.on_publish(&topic("status"), b"online");
        let inputs =
            |s: &mut Session, payload: &str| s.on_publish(&topic("inputs"), payload.as_bytes());
        assert_eq!(
            inputs(&mut session, r#"{"levels":1}"#),
            [DeviceEvent::Inputs(rfidgw_driver::InputState {
                levels: 1,
                changed: 0
            })]
        );
        assert_eq!(
            inputs(&mut session, r#"{"levels":3}"#),
            [DeviceEvent::Inputs(rfidgw_driver::InputState {
                levels: 3,
                changed: 2
            })]
        );
        assert_eq!(
            inputs(&mut session, r#"{"levels":3,"changed":1}"#),
            [DeviceEvent::Inputs(rfidgw_driver::InputState {
                levels: 3,
                changed: 1
            })]
        );
        let state = |bins: &[u16], jam| {
            vec![DeviceEvent::Sorter(SorterState {
                bins_full: bins.to_vec(),
                jam,
            })]
        };
        let sorter =
            |s: &mut Session, payload: &str| s.on_publish(&topic("sorter"), payload.as_bytes());
        assert_eq!(
            sorter(&mut session, r#"{"bins_full":[3,2,3],"jam":false}"#),
            state(&[2, 3], false)
        );
        assert!(sorter(&mut session, r#"{"bins_full":[2,3],"jam":false}"#).is_empty());
        assert!(
            sorter(&mut session, "").is_empty(),
            "a cleared retained message"
        );
        assert_eq!(
            sorter(&mut session, r#"{"bins_full":[],"jam":true}"#),
            state(&[], true)
        );
    }

    #[test]
    fn malformed_payloads_are_counted_and_ignored() {
        let mut session = session(Role::Gate);
        for (suffix, payload) in [
            ("tags", &b"{\"event\":\"arrived\"}"[..]),
            ("tags", b"\xff\xfe"),
            ("inputs", b"{\"levels\":300}"),
            ("sorter", b"{\"bins_full\":[0],\"jam\":false}"),
            ("status", b"maybe"),
            ("cmd/reply", b"[]"),
            ("tags", b""),
        ] {
            assert!(
                session.on_publish(&topic(suffix), payload).is_empty(),
                "{suffix}"
            );
        }
        // Not ours at all: neither counted nor reported.
        session.on_publish("elsewhere/tags", b"garbage");
        session.on_publish(&topic("cmd"), b"garbage");
        let counters = session.counters();
        assert_eq!((counters.bad_frames, counters.frames_ok), (7, 0));
        assert_eq!(session.link(), LinkState::Connecting);
    }
}
