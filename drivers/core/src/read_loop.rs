//! The shared read loop over any [`HfReader`]: inventory in polling or notification mode,
//! track presence, read each tag's details once per presence, report health, and carry out
//! tag commands (AFI/EAS/block writes) between inventories.
//!
//! * **Polling** (`mode = "poll"`, the default): an inventory every `poll_interval_ms`.
//! * **Notification** (`mode = "notify"`): the loop issues notification inventories back to
//!   back ([`HfReader::notify_inventory`], FEIG `B0 01` MODE NTFC). The reader holds each
//!   request and answers as soon as a tag is in the field, or with "no transponder" after
//!   `notify_wait_ms`, so the reader paces the loop: a tag is reported the moment it
//!   arrives, without polling an empty field. While tags are present the reader answers at
//!   once, so a tag missing from `depart_after_polls` answers in a row has departed; a "no
//!   transponder" after the full wait means the field was empty all that time, so every
//!   present tag departs at once. Commands wait for the held inventory to end (at most
//!   `notify_wait_ms`; at once while tags are present), because a half-duplex line cannot
//!   interleave them and an abandoned request's late answer would be mistaken for the
//!   command's.
//!
//! The presence bookkeeping is the plain [`Presence`] struct (no I/O, tested table-driven);
//! [`run`] is the thin async shell around it. Time goes through `tokio::time`, so the loop
//! runs under paused time in tests.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::command::{self, CommandAnswer, CommandError, CommandResult, Envelope, ReadBack};
use crate::{
    DeviceCommand, DeviceError, DeviceEvent, DeviceEventSink, HfReader, InventoryEntry,
    LineCounters, LinkState, ReaderRefusal, TagOutcome, TagRead, Uid, WriteReport,
};

/// How the loop finds tags: by polling or by notification inventories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// An inventory every `poll_interval_ms`.
    #[default]
    Poll,
    /// Notification inventories back to back, each held by the reader until a tag is in
    /// the field or `notify_wait_ms` passed (needs [`HfReader::max_notify_wait`]).
    Notify,
}

/// Where an inventory is limited to one AFI (PROTOCOLS.md §3.2). Reader firmware differs:
/// some take the AFI as a byte in the inventory request, others filter by a setting in
/// their own configuration (FEIG: CFG4, set with the vendor's tool) and ignore the byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfiFilter {
    /// The AFI byte goes in every inventory request (the default).
    #[default]
    Request,
    /// The reader is configured to filter; requests carry no AFI. `inventory_afi` still
    /// says which AFI the reader lets through, so the daemon's checks know about it.
    Reader,
}

/// Shortest notification wait accepted, in milliseconds: below it the loop is polling in
/// all but name (and FEIG's NTFC_TIME has 100 ms steps, see the FEIG driver).
pub const MIN_NOTIFY_WAIT_MS: u64 = 100;

/// How the loop finds tags and what it reads per tag. Drivers fill it from their settings
/// and check it with [`ReadLoopConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadLoopConfig {
    /// Polling (`"poll"`, the default) or notification inventories (`"notify"`).
    pub mode: ReadMode,
    /// Time between inventories, in milliseconds. In notify mode, the least time between
    /// two inventories that found no tag sooner than `notify_wait_ms` (a reader ignoring
    /// the notification request is not hammered).
    pub poll_interval_ms: u64,
    /// Notify mode: how long the reader holds an inventory with no tag in the field before
    /// it answers "no transponder", in milliseconds. Also how long a departure from an
    /// emptied field takes to be seen, and the longest a command waits.
    pub notify_wait_ms: u64,
    /// A tag departs after it was missing from this many inventories in a row (at least 1).
    pub depart_after_polls: u32,
    /// 4-byte blocks of user memory to read per presence, from block 0 (0 = none).
    pub memory_blocks: u8,
    /// Inventory only tags with this AFI (PROTOCOLS.md §3.2), e.g. `07` at a gate.
    #[serde(with = "crate::hex_serde::opt_byte")]
    pub inventory_afi: Option<u8>,
    /// Where the AFI limit is applied: `"request"` or `"reader"` (see [`AfiFilter`]).
    pub afi_filter: AfiFilter,
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
            mode: ReadMode::Poll,
            poll_interval_ms: 200,
            notify_wait_ms: 2_000,
            depart_after_polls: 3,
            memory_blocks: 8,
            inventory_afi: None,
            afi_filter: AfiFilter::Request,
            read_afi: true,
            read_eas: false,
            health_interval_ms: 10_000,
        }
    }
}

/// A read-loop setting that cannot work, naming its key (relative to the read-loop table).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ReadLoopConfigError {
    /// The key, e.g. `notify_wait_ms`.
    pub key: &'static str,
    /// What is wrong and what would work.
    pub message: String,
}

impl ReadLoopConfig {
    /// Checks the settings against what the reader can do: `max_notify_wait` is the
    /// driver's [`HfReader::max_notify_wait`] (`None`: no notification mode).
    pub fn validate(&self, max_notify_wait: Option<Duration>) -> Result<(), ReadLoopConfigError> {
        if self.mode != ReadMode::Notify {
            return Ok(());
        }
        let Some(max) = max_notify_wait else {
            return Err(ReadLoopConfigError {
                key: "mode",
                message: "\"notify\" needs a reader with a notification inventory (FEIG \
                          ISO-Host); this driver has none, use \"poll\""
                    .into(),
            });
        };
        let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        if !(MIN_NOTIFY_WAIT_MS..=max_ms).contains(&self.notify_wait_ms) {
            return Err(ReadLoopConfigError {
                key: "notify_wait_ms",
                message: format!(
                    "{} is not {MIN_NOTIFY_WAIT_MS} to {max_ms} ms (this reader's longest \
                     notification wait); 2000 is the default",
                    self.notify_wait_ms
                ),
            });
        }
        Ok(())
    }

    /// The notification wait as a duration.
    pub fn notify_wait(&self) -> Duration {
        Duration::from_millis(self.notify_wait_ms)
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

    /// The field is known to be empty: every present tag departs at once (UID order).
    pub fn clear(&mut self) -> PresenceChange {
        let mut departed: Vec<Uid> = self.missed.drain().map(|(uid, _)| uid).collect();
        departed.sort();
        PresenceChange {
            arrived: Vec::new(),
            departed,
        }
    }

    /// Feeds one inventory answer. "No transponder" is an empty inventory, or, when
    /// `empty_is_settled` (notify mode, after the reader held the request for the whole
    /// wait), proof that the field is empty: everything departs. Any other refusal (RF
    /// error, collision) says nothing about presence: `None`.
    pub fn observe_answer(
        &mut self,
        answer: &TagOutcome<Vec<InventoryEntry>>,
        empty_is_settled: bool,
    ) -> Option<PresenceChange> {
        match answer {
            Ok(seen) => Some(self.observe(seen)),
            Err(ReaderRefusal::NoTransponder) if empty_is_settled => Some(self.clear()),
            Err(ReaderRefusal::NoTransponder) => Some(self.observe(&[])),
            Err(ReaderRefusal::Status { .. }) => None,
        }
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

/// How many times a tag write is tried before its read-back is given up on (PROTOCOLS.md
/// §3.5: bound the retries and re-read). Every driver goes through this one loop, so FEIG
/// and 3M report writes the same way.
pub const WRITE_ATTEMPTS: u32 = 3;

/// A value a write sets and its read-back returns.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TagValue {
    Afi(u8),
    Eas(bool),
    Blocks { first: u8, data: Vec<u8> },
}

impl TagValue {
    /// The value as the journal shows it.
    fn describe(&self) -> String {
        match self {
            Self::Afi(afi) => crate::hex_serde::show(*afi),
            Self::Eas(on) => on.to_string(),
            Self::Blocks { data, .. } => hex::encode_upper(data),
        }
    }

    async fn write<R: HfReader>(
        &self,
        reader: &mut R,
        uid: &Uid,
    ) -> Result<TagOutcome<()>, DeviceError> {
        match self {
            Self::Afi(afi) => reader.write_afi(uid, *afi).await,
            Self::Eas(on) => reader.write_eas(uid, *on).await,
            Self::Blocks { first, data } => reader.write_blocks(uid, *first, data).await,
        }
    }

    async fn read_back<R: HfReader>(
        &self,
        reader: &mut R,
        uid: &Uid,
    ) -> Result<TagOutcome<Self>, DeviceError> {
        Ok(match self {
            Self::Afi(_) => reader.read_afi(uid).await?.map(Self::Afi),
            Self::Eas(_) => reader.read_eas(uid).await?.map(Self::Eas),
            Self::Blocks { first, data } => {
                let count = (data.len() / 4) as u8;
                reader
                    .read_blocks(uid, *first, count)
                    .await?
                    .map(|data| Self::Blocks {
                        first: *first,
                        data,
                    })
            }
        })
    }
}

/// Writes `wanted`, reads it back, and writes again (at most [`WRITE_ATTEMPTS`] times)
/// while the read-back differs. A write the reader refuses outright is a refusal (the tag
/// was not written); everything after a write is a [`WriteReport`].
async fn write_verified<R: HfReader>(
    reader: &mut R,
    uid: &Uid,
    wanted: &TagValue,
) -> Result<TagOutcome<WriteReport>, DeviceError> {
    let mut found = None;
    for attempt in 1..=WRITE_ATTEMPTS {
        if let Err(refusal) = wanted.write(reader, uid).await? {
            if attempt == 1 {
                return Ok(Err(refusal));
            }
            // An earlier write read back wrong and now the tag refuses: report what we saw.
            break;
        }
        match wanted.read_back(reader, uid).await? {
            Ok(value) if &value == wanted => {
                return Ok(Ok(WriteReport {
                    read_back: ReadBack::Confirmed,
                    attempts: attempt,
                }));
            }
            Ok(value) => found = Some(value.describe()),
            Err(refusal) => {
                return Ok(Ok(WriteReport {
                    read_back: command::not_read(&refusal),
                    attempts: attempt,
                }));
            }
        }
    }
    Ok(Ok(WriteReport {
        read_back: ReadBack::Differs {
            found: found.unwrap_or_default(),
        },
        attempts: WRITE_ATTEMPTS,
    }))
}

/// Carries out one command. `Err` is a broken line (the run ends); a reader's "no" and an
/// unsupported command are answers.
async fn execute<R: HfReader>(
    reader: &mut R,
    command: DeviceCommand,
) -> Result<CommandResult, DeviceError> {
    let written = |outcome: TagOutcome<WriteReport>| Ok(outcome.map(CommandAnswer::Written));
    Ok(match command {
        DeviceCommand::ReadBlocks { uid, first, count } => Ok(reader
            .read_blocks(&uid, first, count)
            .await?
            .map(|data| CommandAnswer::Blocks { data })),
        DeviceCommand::ReadAfi { uid } => Ok(reader
            .read_afi(&uid)
            .await?
            .map(|afi| CommandAnswer::Afi { afi })),
        DeviceCommand::ReadEas { uid } => Ok(reader
            .read_eas(&uid)
            .await?
            .map(|on| CommandAnswer::Eas { on })),
        DeviceCommand::WriteAfi { uid, afi } => {
            written(write_verified(reader, &uid, &TagValue::Afi(afi)).await?)
        }
        DeviceCommand::WriteEas { uid, on } => {
            written(write_verified(reader, &uid, &TagValue::Eas(on)).await?)
        }
        DeviceCommand::WriteBlocks { uid, first, data } => {
            if data.is_empty() || !data.len().is_multiple_of(4) || data.len() / 4 > 255 {
                Err(command::unsupported(&format!(
                    "{} bytes are not 1 to 255 whole 4-byte blocks",
                    data.len()
                )))
            } else {
                written(write_verified(reader, &uid, &TagValue::Blocks { first, data }).await?)
            }
        }
        DeviceCommand::Output(output) if reader.has_outputs() => Ok(reader
            .set_output(&output)
            .await?
            .map(|()| CommandAnswer::Done)),
        DeviceCommand::Output(_) => Err(command::unsupported("this reader has no outputs")),
        DeviceCommand::Divert { .. } => Err(command::unsupported("a reader is not a sorter")),
    })
}

/// An optional attribute's answer: the value, "the tag left", or unknown.
enum Attribute<T> {
    Read(T),
    TagLeft,
    Unknown,
}

/// Sorts one optional attribute read: a refusal or an answer the driver could not make
/// sense of leaves the attribute unknown (counted) instead of failing the device, because
/// reply forms differ between firmware versions. A broken line or a timeout still ends
/// the run: those are the line's problems, not the attribute's.
fn attribute<T>(
    what: &str,
    uid: &Uid,
    answer: Result<TagOutcome<T>, DeviceError>,
    unknown: &mut u64,
) -> Result<Attribute<T>, DeviceError> {
    match answer {
        Ok(Ok(value)) => Ok(Attribute::Read(value)),
        Ok(Err(ReaderRefusal::NoTransponder)) => Ok(Attribute::TagLeft),
        Ok(Err(refusal)) => {
            tracing::debug!(%uid, %refusal, "{what} read refused");
            Ok(Attribute::Unknown)
        }
        Err(DeviceError::Protocol(problem)) => {
            *unknown += 1;
            tracing::warn!(%uid, %problem, "{what} answer not understood; reported unknown");
            Ok(Attribute::Unknown)
        }
        Err(error) => Err(error),
    }
}

/// Reads a newly arrived tag's details. `Ok(None)` when the tag left during the reads
/// (then it is not reported and is tried again on the next poll).
async fn arrival_read<R: HfReader>(
    reader: &mut R,
    config: &ReadLoopConfig,
    entry: &InventoryEntry,
    unknown: &mut u64,
) -> Result<Option<TagRead>, DeviceError> {
    let uid = &entry.uid;
    let mut read = TagRead {
        dsfid: entry.dsfid,
        ..TagRead::uid_only(uid.clone())
    };
    if config.memory_blocks > 0 {
        let answer = reader.read_blocks(uid, 0, config.memory_blocks).await;
        match attribute("memory", uid, answer, unknown)? {
            Attribute::Read(memory) => read.memory = Some(memory),
            Attribute::TagLeft => return Ok(None),
            Attribute::Unknown => {}
        }
    }
    if config.read_afi {
        let answer = reader.read_afi(uid).await;
        match attribute("AFI", uid, answer, unknown)? {
            Attribute::Read(afi) => read.afi = Some(afi),
            Attribute::TagLeft => return Ok(None),
            Attribute::Unknown => {}
        }
    }
    if config.read_eas {
        // "No transponder" is how some readers say "EAS off" (PROTOCOLS.md §3.3), so it
        // never means the tag left here.
        let answer = reader.read_eas(uid).await;
        if let Attribute::Read(on) = attribute("EAS", uid, answer, unknown)? {
            read.eas = Some(on);
        }
    }
    Ok(Some(read))
}

/// Runs the read loop until `cancel` fires (`Ok`) or the line breaks (`Err`).
///
/// Commands from `commands` run between inventories, one at a time, so they never
/// interleave with an inventory on a half-duplex line. A `config` that does not fit the
/// reader (notify mode on a reader without it) ends the loop at once with
/// [`DeviceError::Config`]; drivers should have checked it with
/// [`ReadLoopConfig::validate`] when the config was loaded.
pub async fn run<R: HfReader>(
    reader: &mut R,
    config: &ReadLoopConfig,
    sink: &DeviceEventSink,
    cancel: &CancellationToken,
    commands: Option<&mut mpsc::Receiver<Envelope>>,
) -> Result<(), DeviceError> {
    config
        .validate(reader.max_notify_wait())
        .map_err(|e| DeviceError::Config(format!("poll.{e}")))?;
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

/// Runs one command and sends its answer; a broken line ends the loop. A command whose
/// caller stopped waiting is answered "expired" and not carried out: a lamp switched on
/// seconds late, or a write nobody waits for, helps no one.
async fn serve<R: HfReader>(reader: &mut R, envelope: Envelope) -> Result<(), DeviceError> {
    if envelope.expired() {
        envelope.answer(Err(CommandError::Expired));
        return Ok(());
    }
    let command = envelope.command.clone();
    match execute(reader, command).await {
        Ok(result) => {
            envelope.answer(result);
            Ok(())
        }
        Err(error) => {
            envelope.answer(Err(CommandError::Line(error.to_string())));
            Err(error)
        }
    }
}

/// Serves commands until `until`; with no commands channel, just waits.
async fn serve_until<R: HfReader>(
    reader: &mut R,
    commands: &mut Option<&mut mpsc::Receiver<Envelope>>,
    until: Instant,
) -> Result<(), DeviceError> {
    // A deadline that has passed would still wait for the timer's next tick.
    if until <= Instant::now() {
        return Ok(());
    }
    loop {
        let Some(rx) = commands.as_deref_mut() else {
            tokio::time::sleep_until(until).await;
            return Ok(());
        };
        let command = tokio::select! {
            () = tokio::time::sleep_until(until) => return Ok(()),
            command = rx.recv() => command,
        };
        match command {
            Some(envelope) => serve(reader, envelope).await?,
            // Every handle is gone: no more commands, just inventories.
            None => *commands = None,
        }
    }
}

/// Serves the commands already waiting, without waiting for more (notify mode).
async fn serve_pending<R: HfReader>(
    reader: &mut R,
    commands: &mut Option<&mut mpsc::Receiver<Envelope>>,
) -> Result<(), DeviceError> {
    while let Some(rx) = commands.as_deref_mut() {
        match rx.try_recv() {
            Ok(envelope) => serve(reader, envelope).await?,
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => *commands = None,
        }
    }
    Ok(())
}

async fn poll_forever<R: HfReader>(
    reader: &mut R,
    config: &ReadLoopConfig,
    sink: &DeviceEventSink,
    mut commands: Option<&mut mpsc::Receiver<Envelope>>,
) -> Result<(), DeviceError> {
    let poll_interval = Duration::from_millis(config.poll_interval_ms.max(1));
    let health_interval = Duration::from_millis(config.health_interval_ms.max(1));
    let notify_wait = config.notify_wait();
    let request_afi = match config.afi_filter {
        AfiFilter::Request => config.inventory_afi,
        AfiFilter::Reader => None,
    };
    let mut presence = Presence::new(config.depart_after_polls);
    let mut link = LinkState::Connecting;
    let mut unknown_attributes = 0;
    let counters = |reader: &R, unknown: u64| LineCounters {
        attributes_unknown: unknown,
        ..reader.line_counters()
    };
    sink.send(DeviceEvent::Health {
        link,
        counters: counters(reader, unknown_attributes),
    })
    .await?;
    let mut next_poll = Instant::now();
    let mut next_health = Instant::now() + health_interval;
    loop {
        // Between inventories: serve commands until it is time for the next one. In notify
        // mode that is at once, unless the last answer came suspiciously early (below).
        serve_until(reader, &mut commands, next_poll).await?;
        serve_pending(reader, &mut commands).await?;
        let started = Instant::now();
        let (answer, empty_is_settled) = match config.mode {
            ReadMode::Poll => {
                // Keep the cadence, but never fire a burst of polls after a slow round.
                next_poll = (next_poll + poll_interval).max(started);
                (reader.inventory(request_afi).await?, false)
            }
            ReadMode::Notify => {
                let answer = reader.notify_inventory(request_afi, notify_wait).await?;
                let held_full_wait = started.elapsed() >= notify_wait;
                // Tags present: the reader paces the loop, ask again at once. No tag (or
                // a refusal) sooner than the wait: the reader did not hold the request,
                // so pace it like polling instead of hammering it.
                next_poll = if matches!(&answer, Ok(seen) if !seen.is_empty()) || held_full_wait {
                    Instant::now()
                } else {
                    started + poll_interval
                };
                (answer, held_full_wait)
            }
        };
        if let Err(refusal @ ReaderRefusal::Status { .. }) = &answer {
            tracing::debug!(device = sink.device(), %refusal, "inventory refused");
        }
        if link != LinkState::Connected {
            link = LinkState::Connected;
            sink.send(DeviceEvent::Health {
                link,
                counters: counters(reader, unknown_attributes),
            })
            .await?;
        }
        if let Some(change) = presence.observe_answer(&answer, empty_is_settled) {
            for uid in change.departed {
                sink.send(DeviceEvent::TagDeparted { uid }).await?;
            }
            for entry in change.arrived {
                match arrival_read(reader, config, &entry, &mut unknown_attributes).await? {
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
                counters: counters(reader, unknown_attributes),
            })
            .await?;
        }
    }
}

#[cfg(test)]
mod write_tests {
    //! The one write-verify loop every HF driver goes through, against a scripted tag.
    use super::*;

    /// A reader with one tag whose AFI writes can be refused, lost, or whose read-back is
    /// refused, and whose EAS answer its driver may fail to parse (firmware differs).
    #[derive(Default)]
    struct Tag {
        afi: u8,
        refuse_write: bool,
        lose_writes: u32,
        refuse_read: bool,
        writes: u32,
        unparsable_eas: bool,
    }

    impl HfReader for Tag {
        async fn inventory(
            &mut self,
            _: Option<u8>,
        ) -> Result<TagOutcome<Vec<InventoryEntry>>, DeviceError> {
            Ok(Ok(Vec::new()))
        }
        async fn read_blocks(
            &mut self,
            _: &Uid,
            _: u8,
            count: u8,
        ) -> Result<TagOutcome<Vec<u8>>, DeviceError> {
            Ok(Ok(vec![0; usize::from(count) * 4]))
        }
        async fn write_blocks(
            &mut self,
            _: &Uid,
            _: u8,
            _: &[u8],
        ) -> Result<TagOutcome<()>, DeviceError> {
            Ok(Err(ReaderRefusal::NoTransponder))
        }
        async fn read_afi(&mut self, _: &Uid) -> Result<TagOutcome<u8>, DeviceError> {
            if self.refuse_read {
                return Ok(Err(ReaderRefusal::NoTransponder));
            }
            Ok(Ok(self.afi))
        }
        async fn write_afi(&mut self, _: &Uid, afi: u8) -> Result<TagOutcome<()>, DeviceError> {
            self.writes += 1;
            if self.refuse_write {
                return Ok(Err(ReaderRefusal::Status {
                    code: 0x03,
                    meaning: "write error".into(),
                }));
            }
            if self.lose_writes > 0 {
                self.lose_writes -= 1;
            } else {
                self.afi = afi;
            }
            Ok(Ok(()))
        }
        async fn read_eas(&mut self, _: &Uid) -> Result<TagOutcome<bool>, DeviceError> {
            if self.unparsable_eas {
                return Err(DeviceError::Protocol(
                    "check EAS reply: 9 bytes, expected 10".into(),
                ));
            }
            Ok(Ok(false))
        }
        async fn write_eas(&mut self, _: &Uid, _: bool) -> Result<TagOutcome<()>, DeviceError> {
            Ok(Ok(()))
        }
    }

    #[tokio::test]
    async fn every_write_is_read_back_and_the_result_says_how_it_went() {
        let tag = |refuse_write, lose_writes, refuse_read| Tag {
            afi: 0x07,
            refuse_write,
            lose_writes,
            refuse_read,
            ..Tag::default()
        };
        let confirmed = |attempts| {
            Ok(WriteReport {
                read_back: ReadBack::Confirmed,
                attempts,
            })
        };
        // (tag, the answer, writes made)
        let rows: Vec<(Tag, TagOutcome<WriteReport>, u32)> = vec![
            (tag(false, 0, false), confirmed(1), 1),
            (tag(false, 2, false), confirmed(3), 3),
            (
                tag(false, 9, false),
                Ok(WriteReport {
                    read_back: ReadBack::Differs {
                        found: "0x07".into(),
                    },
                    attempts: 3,
                }),
                3,
            ),
            (
                tag(false, 0, true),
                Ok(WriteReport {
                    read_back: ReadBack::NotRead {
                        reason: "no transponder".into(),
                    },
                    attempts: 1,
                }),
                1,
            ),
            (
                tag(true, 0, false),
                Err(ReaderRefusal::Status {
                    code: 0x03,
                    meaning: "write error".into(),
                }),
                1,
            ),
        ];
        for (n, (mut tag, want, writes)) in rows.into_iter().enumerate() {
            let got = write_verified(&mut tag, &Uid::new([0xE0]), &TagValue::Afi(0xC2))
                .await
                .unwrap();
            assert_eq!(got, want, "row {n}");
            assert_eq!(tag.writes, writes, "row {n}");
        }
    }

    #[tokio::test]
    async fn an_attribute_the_driver_cannot_read_is_unknown_and_counted_and_the_tag_reported() {
        let config = ReadLoopConfig {
            read_eas: true,
            memory_blocks: 2,
            ..ReadLoopConfig::default()
        };
        let entry = InventoryEntry {
            uid: Uid::new([0xE0, 1]),
            dsfid: Some(0),
        };
        let mut unknown = 0;
        let read = arrival_read(
            &mut Tag {
                afi: 0x07,
                unparsable_eas: true,
                ..Tag::default()
            },
            &config,
            &entry,
            &mut unknown,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            (read.afi, read.eas, read.memory.map(|m| m.len())),
            (Some(0x07), None, Some(8))
        );
        assert_eq!(unknown, 1);
    }

    #[tokio::test]
    async fn an_output_command_to_a_reader_without_outputs_is_unsupported_not_a_broken_line() {
        let mut tag = Tag::default();
        let result = execute(
            &mut tag,
            DeviceCommand::Output(crate::OutputCommand::default()),
        )
        .await
        .unwrap();
        assert!(
            matches!(result, Err(CommandError::Unsupported(_))),
            "{result:?}"
        );
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
    fn an_answer_changes_presence_according_to_what_it_proves_about_the_field() {
        /// present before, answer, empty_is_settled, arrived, departed, changed at all
        type Row = (
            &'static [&'static str],
            TagOutcome<Vec<InventoryEntry>>,
            bool,
            &'static [&'static str],
            &'static [&'static str],
            bool,
        );
        // With depart_after = 2.
        let no_tag = Err(ReaderRefusal::NoTransponder);
        let rf_error = Err(ReaderRefusal::Status {
            code: 0x83,
            meaning: "RF communication error".into(),
        });
        let rows: Vec<Row> = vec![
            (&[], Ok(vec![entry("A1")]), false, &["A1"], &[], true),
            (&[], Ok(vec![entry("A1")]), true, &["A1"], &[], true),
            // Polling: "no transponder" is one missed poll, debounced.
            (&["A1"], no_tag.clone(), false, &[], &[], true),
            // Notify, after the whole wait: the field was empty all along.
            (
                &["A1", "B2"],
                no_tag.clone(),
                true,
                &[],
                &["A1", "B2"],
                true,
            ),
            // Notify, another tag answered: the missing one is debounced as when polling.
            (&["A1", "B2"], Ok(vec![entry("B2")]), true, &[], &[], true),
            // A reader-side failure says nothing about presence, whatever the mode.
            (&["A1"], rf_error.clone(), false, &[], &[], false),
            (&["A1"], rf_error, true, &[], &[], false),
        ];
        for (n, (before, answer, settled, arrived, departed, changed)) in
            rows.into_iter().enumerate()
        {
            let mut presence = Presence::new(2);
            presence.observe(&before.iter().map(|u| entry(u)).collect::<Vec<_>>());
            let change = presence.observe_answer(&answer, settled);
            assert_eq!(change.is_some(), changed, "row {n}");
            let change = change.unwrap_or_default();
            assert_eq!(uids(&change.arrived), arrived, "row {n}");
            let gone: Vec<String> = change.departed.iter().map(ToString::to_string).collect();
            assert_eq!(gone, departed, "row {n}");
        }
    }

    #[test]
    fn clearing_the_field_departs_every_present_tag_once_in_uid_order() {
        let mut presence = Presence::new(3);
        presence.observe(&[entry("C3"), entry("A1")]);
        let gone: Vec<String> = presence
            .clear()
            .departed
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(gone, ["A1", "C3"]);
        assert!(presence.is_empty());
        assert_eq!(presence.clear(), PresenceChange::default());
    }

    #[test]
    fn read_mode_parses_kebab_case_and_defaults_to_poll() {
        let cfg: ReadLoopConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.mode, ReadMode::Poll);
        let cfg: ReadLoopConfig =
            toml::from_str("mode = \"notify\"\nnotify_wait_ms = 3000").unwrap();
        assert_eq!(cfg.mode, ReadMode::Notify);
        assert_eq!(cfg.notify_wait(), Duration::from_secs(3));
        let err = toml::from_str::<ReadLoopConfig>("mode = \"push\"").unwrap_err();
        assert!(err.to_string().contains("push"), "{err}");
    }

    #[test]
    fn validate_checks_notify_settings_against_the_reader() {
        let feig_like = Some(Duration::from_millis(25_500));
        let notify = |wait| ReadLoopConfig {
            mode: ReadMode::Notify,
            notify_wait_ms: wait,
            ..ReadLoopConfig::default()
        };
        // (config, the reader's longest wait, the key refused or None)
        let rows: Vec<(ReadLoopConfig, Option<Duration>, Option<&str>)> = vec![
            (ReadLoopConfig::default(), None, None),
            // Poll mode ignores the notify wait, even a useless one.
            (
                ReadLoopConfig {
                    notify_wait_ms: 0,
                    ..ReadLoopConfig::default()
                },
                None,
                None,
            ),
            (notify(2_000), feig_like, None),
            (notify(MIN_NOTIFY_WAIT_MS), feig_like, None),
            (notify(25_500), feig_like, None),
            (notify(2_000), None, Some("mode")),
            (notify(99), feig_like, Some("notify_wait_ms")),
            (notify(25_501), feig_like, Some("notify_wait_ms")),
        ];
        for (n, (config, max, refused)) in rows.into_iter().enumerate() {
            let result = config.validate(max);
            assert_eq!(
                result.as_ref().err().map(|e| e.key),
                refused,
                "row {n}: {result:?}"
            );
        }
        let err = notify(2_000).validate(None).unwrap_err().to_string();
        assert!(err.starts_with("mode: \"notify\" needs"), "{err}");
        assert!(err.contains("use \"poll\""), "{err}");
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
