//! The shared polling loop over any [`HfReader`]: inventory every `poll_interval`, track
//! presence, read each tag's details once per presence, report health, and carry out tag
//! commands (AFI/EAS/block writes) between polls.
//!
//! The presence bookkeeping is the plain [`Presence`] struct (no I/O, tested table-driven);
//! [`run`] is the thin async shell around it. Time goes through `tokio::time`, so the loop
//! runs under paused time in tests.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    DeviceError, DeviceEvent, DeviceEventSink, HfReader, InventoryEntry, LinkState, ReaderRefusal,
    TagOutcome, TagRead, Uid,
};

/// How the loop polls and what it reads per tag. Drivers fill it from their settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadLoopConfig {
    /// Time between inventories, in milliseconds.
    pub poll_interval_ms: u64,
    /// A tag departs after it was missing from this many inventories in a row (at least 1).
    pub depart_after_polls: u32,
    /// 4-byte blocks of user memory to read per presence, from block 0 (0 = none).
    pub memory_blocks: u8,
    /// Inventory only tags with this AFI (PROTOCOLS.md §3.2), e.g. `07` at a gate.
    #[serde(with = "crate::hex_serde::opt_byte")]
    pub inventory_afi: Option<u8>,
    /// Read each tag's AFI once per presence.
    pub read_afi: bool,
    /// Check each tag's NXP EAS bit once per presence.
    pub read_eas: bool,
    /// Time between `Health` events, in milliseconds.
    pub health_interval_ms: u64,
}

impl Default for ReadLoopConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 200,
            depart_after_polls: 3,
            memory_blocks: 8,
            inventory_afi: None,
            read_afi: true,
            read_eas: false,
            health_interval_ms: 10_000,
        }
    }
}

/// What one inventory changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceChange {
    /// Tags seen now that were not present before, in inventory order.
    pub arrived: Vec<InventoryEntry>,
    /// Tags that were missing for `depart_after` polls, in UID order.
    pub departed: Vec<Uid>,
}

/// Presence tracking: which tags are in the field, with debouncing of missed polls.
///
/// A tag arrives the first time an inventory lists it and departs after it was absent from
/// `depart_after` inventories in a row, so one missed anticollision round does not make a
/// book "leave" and "arrive" again.
#[derive(Clone, Debug)]
pub struct Presence {
    depart_after: u32,
    /// Present tags and how many inventories in a row each has been missing from.
    missed: HashMap<Uid, u32>,
}

impl Presence {
    /// Empty field; `depart_after` below 1 counts as 1.
    pub fn new(depart_after: u32) -> Self {
        Self {
            depart_after: depart_after.max(1),
            missed: HashMap::new(),
        }
    }

    /// Feeds one inventory's result.
    pub fn observe(&mut self, seen: &[InventoryEntry]) -> PresenceChange {
        let mut change = PresenceChange::default();
        let mut this_round: Vec<&Uid> = Vec::with_capacity(seen.len());
        for entry in seen {
            if this_round.contains(&&entry.uid) {
                continue;
            }
            this_round.push(&entry.uid);
            match self.missed.entry(entry.uid.clone()) {
                Entry::Occupied(mut present) => *present.get_mut() = 0,
                Entry::Vacant(absent) => {
                    absent.insert(0);
                    change.arrived.push(entry.clone());
                }
            }
        }
        for (uid, missed) in &mut self.missed {
            if !this_round.contains(&uid) {
                *missed = missed.saturating_add(1);
                if *missed >= self.depart_after {
                    change.departed.push(uid.clone());
                }
            }
        }
        for uid in &change.departed {
            self.missed.remove(uid);
        }
        change.departed.sort();
        change
    }

    /// Forgets a tag without a departure (its arrival read failed; try again next poll).
    pub fn forget(&mut self, uid: &Uid) {
        self.missed.remove(uid);
    }

    /// Whether the tag is present.
    pub fn is_present(&self, uid: &Uid) -> bool {
        self.missed.contains_key(uid)
    }

    /// How many tags are present.
    pub fn len(&self) -> usize {
        self.missed.len()
    }

    /// Whether the field is empty.
    pub fn is_empty(&self) -> bool {
        self.missed.is_empty()
    }
}

/// A tag operation asked of a running reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HfRequest {
    /// Read `count` blocks from `first` (reader byte order).
    ReadBlocks {
        /// The tag.
        uid: Uid,
        /// First block.
        first: u8,
        /// Number of blocks.
        count: u8,
    },
    /// Write whole blocks from `first` (reader byte order).
    WriteBlocks {
        /// The tag.
        uid: Uid,
        /// First block.
        first: u8,
        /// Block data, a multiple of 4 bytes.
        data: Vec<u8>,
    },
    /// Read the AFI.
    ReadAfi {
        /// The tag.
        uid: Uid,
    },
    /// Write the AFI.
    WriteAfi {
        /// The tag.
        uid: Uid,
        /// The new AFI.
        afi: u8,
    },
    /// Read the NXP EAS bit.
    ReadEas {
        /// The tag.
        uid: Uid,
    },
    /// Set or reset the NXP EAS bit.
    WriteEas {
        /// The tag.
        uid: Uid,
        /// `true` sets, `false` resets.
        on: bool,
    },
}

/// What a tag operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HfResponse {
    /// Block data.
    Blocks(Vec<u8>),
    /// The AFI.
    Afi(u8),
    /// The EAS bit.
    Eas(bool),
    /// A write completed.
    Done,
}

/// Why a command got no reader answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HfCommandError {
    /// The device task is not running (restarting or stopped).
    #[error("the reader is not running")]
    NotRunning,
    /// The line broke while the command ran; the device task restarts.
    #[error("the line broke: {0}")]
    Line(String),
}

/// A request plus where its answer goes.
#[derive(Debug)]
pub struct HfCommand {
    /// What to do.
    pub request: HfRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<TagOutcome<HfResponse>, HfCommandError>>,
}

/// A cheap, cloneable handle to send tag commands into a running read loop.
#[derive(Clone, Debug)]
pub struct HfHandle {
    tx: mpsc::Sender<HfCommand>,
}

impl HfHandle {
    /// A handle and the receiver the read loop takes.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<HfCommand>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Sends one request and waits for its answer.
    pub async fn call(&self, request: HfRequest) -> Result<TagOutcome<HfResponse>, HfCommandError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(HfCommand { request, reply })
            .await
            .map_err(|_| HfCommandError::NotRunning)?;
        answer.await.map_err(|_| HfCommandError::NotRunning)?
    }

    /// Writes the AFI.
    pub async fn write_afi(&self, uid: &Uid, afi: u8) -> Result<TagOutcome<()>, HfCommandError> {
        let outcome = self
            .call(HfRequest::WriteAfi {
                uid: uid.clone(),
                afi,
            })
            .await?;
        Ok(outcome.map(drop))
    }

    /// Reads the AFI.
    pub async fn read_afi(&self, uid: &Uid) -> Result<TagOutcome<u8>, HfCommandError> {
        match self.call(HfRequest::ReadAfi { uid: uid.clone() }).await? {
            Ok(HfResponse::Afi(afi)) => Ok(Ok(afi)),
            Ok(other) => Err(HfCommandError::Line(format!("unexpected answer {other:?}"))),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    /// Sets or resets the EAS bit.
    pub async fn write_eas(&self, uid: &Uid, on: bool) -> Result<TagOutcome<()>, HfCommandError> {
        let outcome = self
            .call(HfRequest::WriteEas {
                uid: uid.clone(),
                on,
            })
            .await?;
        Ok(outcome.map(drop))
    }

    /// Reads the EAS bit.
    pub async fn read_eas(&self, uid: &Uid) -> Result<TagOutcome<bool>, HfCommandError> {
        match self.call(HfRequest::ReadEas { uid: uid.clone() }).await? {
            Ok(HfResponse::Eas(on)) => Ok(Ok(on)),
            Ok(other) => Err(HfCommandError::Line(format!("unexpected answer {other:?}"))),
            Err(refusal) => Ok(Err(refusal)),
        }
    }
}

async fn execute<R: HfReader>(
    reader: &mut R,
    request: HfRequest,
) -> Result<TagOutcome<HfResponse>, DeviceError> {
    Ok(match request {
        HfRequest::ReadBlocks { uid, first, count } => reader
            .read_blocks(&uid, first, count)
            .await?
            .map(HfResponse::Blocks),
        HfRequest::WriteBlocks { uid, first, data } => reader
            .write_blocks(&uid, first, &data)
            .await?
            .map(|()| HfResponse::Done),
        HfRequest::ReadAfi { uid } => reader.read_afi(&uid).await?.map(HfResponse::Afi),
        HfRequest::WriteAfi { uid, afi } => reader
            .write_afi(&uid, afi)
            .await?
            .map(|()| HfResponse::Done),
        HfRequest::ReadEas { uid } => reader.read_eas(&uid).await?.map(HfResponse::Eas),
        HfRequest::WriteEas { uid, on } => {
            reader.write_eas(&uid, on).await?.map(|()| HfResponse::Done)
        }
    })
}

/// Reads a newly arrived tag's details. `Ok(None)` when the tag left during the reads
/// (then it is not reported and is tried again on the next poll).
async fn arrival_read<R: HfReader>(
    reader: &mut R,
    config: &ReadLoopConfig,
    entry: &InventoryEntry,
) -> Result<Option<TagRead>, DeviceError> {
    let mut read = TagRead {
        dsfid: entry.dsfid,
        ..TagRead::uid_only(entry.uid.clone())
    };
    if config.memory_blocks > 0 {
        match reader
            .read_blocks(&entry.uid, 0, config.memory_blocks)
            .await?
        {
            Ok(memory) => read.memory = Some(memory),
            Err(ReaderRefusal::NoTransponder) => return Ok(None),
            Err(refusal) => {
                tracing::debug!(uid = %entry.uid, %refusal, "memory read refused");
            }
        }
    }
    if config.read_afi {
        match reader.read_afi(&entry.uid).await? {
            Ok(afi) => read.afi = Some(afi),
            Err(ReaderRefusal::NoTransponder) => return Ok(None),
            Err(refusal) => tracing::debug!(uid = %entry.uid, %refusal, "AFI read refused"),
        }
    }
    if config.read_eas {
        match reader.read_eas(&entry.uid).await? {
            Ok(on) => read.eas = Some(on),
            Err(refusal) => tracing::debug!(uid = %entry.uid, %refusal, "EAS check refused"),
        }
    }
    Ok(Some(read))
}

/// Runs the polling loop until `cancel` fires (`Ok`) or the line breaks (`Err`).
///
/// Commands from `commands` run between polls, one at a time, so they never interleave
/// with an inventory on a half-duplex line.
pub async fn run<R: HfReader>(
    reader: &mut R,
    config: &ReadLoopConfig,
    sink: &DeviceEventSink,
    cancel: &CancellationToken,
    commands: Option<&mut mpsc::Receiver<HfCommand>>,
) -> Result<(), DeviceError> {
    let result = tokio::select! {
        () = cancel.cancelled() => Ok(()),
        result = poll_forever(reader, config, sink, commands) => result,
    };
    if let Err(error) = &result
        && !matches!(error, DeviceError::SinkClosed(_))
    {
        // Best effort: the bus may be gone too.
        let _ = sink
            .send(DeviceEvent::Health {
                link: LinkState::Disconnected,
                counters: reader.line_counters(),
            })
            .await;
    }
    result
}

async fn poll_forever<R: HfReader>(
    reader: &mut R,
    config: &ReadLoopConfig,
    sink: &DeviceEventSink,
    mut commands: Option<&mut mpsc::Receiver<HfCommand>>,
) -> Result<(), DeviceError> {
    let poll_interval = Duration::from_millis(config.poll_interval_ms.max(1));
    let health_interval = Duration::from_millis(config.health_interval_ms.max(1));
    let mut presence = Presence::new(config.depart_after_polls);
    let mut link = LinkState::Connecting;
    sink.send(DeviceEvent::Health {
        link,
        counters: reader.line_counters(),
    })
    .await?;
    let mut next_poll = Instant::now();
    let mut next_health = Instant::now() + health_interval;
    loop {
        // Between polls: serve commands until it is time to poll again.
        loop {
            let Some(rx) = commands.as_deref_mut() else {
                tokio::time::sleep_until(next_poll).await;
                break;
            };
            let command = tokio::select! {
                () = tokio::time::sleep_until(next_poll) => break,
                command = rx.recv() => command,
            };
            let Some(command) = command else {
                // Every handle is gone: no more commands, just poll.
                commands = None;
                continue;
            };
            match execute(reader, command.request).await {
                Ok(outcome) => {
                    let _ = command.reply.send(Ok(outcome));
                }
                Err(error) => {
                    let _ = command
                        .reply
                        .send(Err(HfCommandError::Line(error.to_string())));
                    return Err(error);
                }
            }
        }
        // Keep the cadence, but never fire a burst of polls after a slow round.
        next_poll = (next_poll + poll_interval).max(Instant::now());

        let seen = match reader.inventory(config.inventory_afi).await? {
            Ok(entries) => Some(entries),
            Err(ReaderRefusal::NoTransponder) => Some(Vec::new()),
            // A reader-side failure (RF error, collision) says nothing about presence.
            Err(refusal) => {
                tracing::debug!(device = sink.device(), %refusal, "inventory refused");
                None
            }
        };
        if link != LinkState::Connected {
            link = LinkState::Connected;
            sink.send(DeviceEvent::Health {
                link,
                counters: reader.line_counters(),
            })
            .await?;
        }
        if let Some(seen) = seen {
            let change = presence.observe(&seen);
            for uid in change.departed {
                sink.send(DeviceEvent::TagDeparted { uid }).await?;
            }
            for entry in change.arrived {
                match arrival_read(reader, config, &entry).await? {
                    Some(read) => sink.send(DeviceEvent::TagArrived(read)).await?,
                    None => presence.forget(&entry.uid),
                }
            }
        }
        for event in reader.poll_extras().await? {
            sink.send(event).await?;
        }
        if Instant::now() >= next_health {
            next_health = Instant::now() + health_interval;
            sink.send(DeviceEvent::Health {
                link,
                counters: reader.line_counters(),
            })
            .await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: &str) -> InventoryEntry {
        InventoryEntry {
            uid: Uid::from_hex(uid).unwrap(),
            dsfid: Some(0),
        }
    }

    fn uids(entries: &[InventoryEntry]) -> Vec<String> {
        entries.iter().map(|e| e.uid.to_string()).collect()
    }

    #[test]
    fn presence_reports_each_arrival_once_and_departs_after_the_missed_polls() {
        // (inventory, arrived, departed) per poll, depart_after = 2.
        let rounds: &[(&[&str], &[&str], &[&str])] = &[
            (&["A1"], &["A1"], &[]),
            (&["A1", "B2"], &["B2"], &[]),
            (&["B2"], &[], &[]),       // A1 missed once: still present
            (&["A1", "B2"], &[], &[]), // A1 back before the limit: no new arrival
            (&["B2"], &[], &[]),
            (&[], &[], &["A1"]), // A1 missed twice: gone; B2 once
            (&[], &[], &["B2"]),
            (&["A1"], &["A1"], &[]), // a new presence of A1 is a new arrival
            (&["A1", "A1"], &[], &[]), // duplicates within one inventory count once
        ];
        let mut presence = Presence::new(2);
        for (n, (seen, arrived, departed)) in rounds.iter().enumerate() {
            let seen: Vec<InventoryEntry> = seen.iter().map(|u| entry(u)).collect();
            let change = presence.observe(&seen);
            assert_eq!(uids(&change.arrived), *arrived, "round {n}");
            let gone: Vec<String> = change.departed.iter().map(ToString::to_string).collect();
            assert_eq!(gone, *departed, "round {n}");
        }
        assert_eq!(presence.len(), 1);
    }

    #[test]
    fn depart_after_zero_still_waits_for_one_missed_poll() {
        let mut presence = Presence::new(0);
        presence.observe(&[entry("A1")]);
        assert!(presence.is_present(&Uid::from_hex("A1").unwrap()));
        let change = presence.observe(&[]);
        assert_eq!(change.departed.len(), 1);
        assert!(presence.is_empty());
    }

    #[test]
    fn a_forgotten_tag_arrives_again_on_the_next_poll() {
        let mut presence = Presence::new(3);
        presence.observe(&[entry("A1")]);
        presence.forget(&Uid::from_hex("A1").unwrap());
        assert_eq!(uids(&presence.observe(&[entry("A1")]).arrived), ["A1"]);
    }

    proptest::proptest! {
        #[test]
        fn presence_never_departs_a_tag_it_did_not_report_arriving(
            rounds in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..6), 0..40),
            depart_after in 0u32..4,
        ) {
            let mut presence = Presence::new(depart_after);
            let mut present = std::collections::BTreeSet::new();
            for round in rounds {
                let seen: Vec<InventoryEntry> =
                    round.iter().map(|n| entry(&format!("E0{n:02X}"))).collect();
                let change = presence.observe(&seen);
                for arrived in &change.arrived {
                    proptest::prop_assert!(present.insert(arrived.uid.clone()), "arrived twice");
                }
                for departed in &change.departed {
                    proptest::prop_assert!(present.remove(departed), "departed unseen");
                    proptest::prop_assert!(!seen.iter().any(|e| &e.uid == departed));
                }
                for entry in &seen {
                    proptest::prop_assert!(present.contains(&entry.uid), "a seen tag is present");
                }
                proptest::prop_assert_eq!(presence.len(), present.len());
            }
        }
    }

    #[test]
    fn read_loop_config_parses_with_defaults_and_refuses_unknown_keys() {
        let cfg: ReadLoopConfig =
            toml::from_str("poll_interval_ms = 50\ninventory_afi = \"07\"").unwrap();
        assert_eq!(cfg.poll_interval_ms, 50);
        assert_eq!(cfg.inventory_afi, Some(0x07));
        assert_eq!(cfg.memory_blocks, ReadLoopConfig::default().memory_blocks);
        let err = toml::from_str::<ReadLoopConfig>("poll_ms = 5").unwrap_err();
        assert!(err.to_string().contains("poll_ms"), "{err}");
    }
}
