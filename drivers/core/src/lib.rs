//! The shared vocabulary of rfidgw's device drivers.
//!
//! Every device family (FEIG ISO-Host, 3M 810, USB HID card readers, the scripted `sim`
//! reader) is a crate of its own that depends on this one. A driver turns bytes on a
//! transport into [`DeviceEvent`]s and sends them into a [`DeviceEventSink`]; the daemon
//! owns the other end of the channel, journals every event and feeds the stations.
//!
//! The daemon runs each configured device as one task: it calls [`Device::run`] and, when
//! that returns an error, calls it again after a capped backoff (see the daemon's
//! supervisor). A driver therefore never needs its own outer reconnect loop; it returns
//! `Err` when its line broke and lets the supervisor restart it.

pub mod command;
pub mod hex_serde;
pub mod line;
pub mod read_loop;
pub mod sim_script;
pub mod transport;

pub use command::{
    CommandAnswer, CommandError, CommandLease, CommandMailbox, CommandResult, DeviceCommand,
    DeviceHandle, OutputCommand, ReadBack, Signal, WriteReport,
};
pub use line::LineStats;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// An ISO 15693 / ISO 14443 UID or a UHF EPC, printed MSB first as hex (PROTOCOLS.md
/// conventions: `E0 04 …`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Uid(Vec<u8>);

impl Uid {
    /// A UID from its bytes, MSB first.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The UID's bytes, MSB first.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses upper- or lower-case hex (spaces allowed) into a UID.
    pub fn from_hex(text: &str) -> Result<Self, UidError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            return Err(UidError::Empty);
        }
        hex::decode(&compact)
            .map(Self)
            .map_err(|e| UidError::NotHex(e.to_string()))
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({self})")
    }
}

impl From<Uid> for String {
    fn from(uid: Uid) -> Self {
        uid.to_string()
    }
}

impl TryFrom<String> for Uid {
    type Error = UidError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_hex(&text)
    }
}

/// Why a text is not a UID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UidError {
    /// Nothing was given.
    #[error("UID is empty")]
    Empty,
    /// The text is not an even number of hex digits.
    #[error("UID is not hex: {0}")]
    NotHex(String),
}

/// The name a device has in the config (`[[devices]] id = "gate-1"`).
pub type DeviceId = String;

/// One tag as a reader saw it: identity plus what the tag decoder needs.
///
/// `memory` is the tag's user memory as the reader returned it (block 0 first, in the
/// reader's byte order; the decoder undoes a block reversal). A driver reads it once per
/// presence and caches it, so a tag lying on a pad is not re-read on every poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRead {
    /// The tag's UID (HF) or EPC (UHF).
    pub uid: Uid,
    /// Application family identifier, when the reader reported it (`"0x07"` in JSON).
    #[serde(default, with = "hex_serde::opt_byte_0x")]
    pub afi: Option<u8>,
    /// Data storage format identifier, when the reader reported it (`"0x00"` in JSON).
    #[serde(default, with = "hex_serde::opt_byte_0x")]
    pub dsfid: Option<u8>,
    /// The NXP EAS bit, when the reader checked it.
    pub eas: Option<bool>,
    /// User memory, block 0 first, as read; `None` when it could not be read.
    #[serde(with = "opt_hex", default)]
    pub memory: Option<Vec<u8>>,
    /// Antenna that saw the tag, for readers with several.
    pub antenna: Option<u8>,
}

impl TagRead {
    /// A read that carries only a UID.
    pub fn uid_only(uid: Uid) -> Self {
        Self {
            uid,
            afi: None,
            dsfid: None,
            eas: None,
            memory: None,
            antenna: None,
        }
    }
}

/// A patron card number typed by a keyboard-wedge reader or read from a card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRead {
    /// The card number as the reader delivered it (trimmed, without the terminator).
    pub number: String,
}

/// The state of a reader's digital inputs (light barriers, counter pulses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputState {
    /// Level of each input, bit 0 = input 1.
    pub levels: u8,
    /// Inputs that changed since the last report, bit 0 = input 1.
    pub changed: u8,
}

/// What a sorter (automated material handling) reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SorterState {
    /// Bins that report full (1-based), ascending.
    pub bins_full: Vec<u16>,
    /// The conveyor or a diverter is jammed.
    pub jam: bool,
}

/// Whether a device is reachable, from the driver's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The transport is being opened or the reader has not answered yet.
    Connecting,
    /// The reader answers.
    Connected,
    /// The transport is gone (unplugged, refused, timed out).
    Disconnected,
}

/// Counters a driver keeps about its line, reported with [`DeviceEvent::Health`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCounters {
    /// Frames that decoded and checked.
    pub frames_ok: u64,
    /// Bytes dropped while resynchronising on garbage.
    pub bytes_skipped: u64,
    /// Frames with a bad CRC or length.
    pub bad_frames: u64,
    /// Requests the reader did not answer in time.
    pub timeouts: u64,
    /// Wall-clock time of the last good frame from the reader; `None` before the first.
    /// A reader that is "connected" but has not sent a frame for long is suspect.
    #[serde(default)]
    pub last_frame: Option<SystemTime>,
    /// Optional tag attributes (memory, AFI, EAS) whose answer could not be read and were
    /// reported unknown instead of failing the device (firmware differs in reply forms).
    #[serde(default)]
    pub attributes_unknown: u64,
}

/// Everything a device reports to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// A tag entered the field (reported once per presence, with its memory).
    TagArrived(TagRead),
    /// A tag that was present is no longer seen.
    TagDeparted {
        /// The tag that left.
        uid: Uid,
    },
    /// A patron card was presented.
    Card(CardRead),
    /// Digital inputs changed.
    Inputs(InputState),
    /// A sorter's bins or jam state changed (reported on change, and once at start).
    Sorter(SorterState),
    /// The device's run ended (sent by the daemon's supervisor, never by a driver): every
    /// presence on the device ends here, so no tag is left "present" on a dead reader.
    Stopped {
        /// Why the run ended (the error, or `shutdown`).
        reason: String,
    },
    /// Link state and line counters.
    Health {
        /// Whether the reader answers.
        link: LinkState,
        /// Line counters since the driver started.
        counters: LineCounters,
    },
}

/// A device event stamped with where and when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// The configured device id.
    pub device: DeviceId,
    /// Wall-clock time the driver observed it.
    pub at: SystemTime,
    /// What happened.
    pub event: DeviceEvent,
}

/// Where a driver sends its events. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DeviceEventSink {
    device: DeviceId,
    tx: mpsc::Sender<DeviceReport>,
}

/// The daemon stopped listening; the driver should return.
#[derive(Debug, thiserror::Error)]
#[error("the daemon's event bus is closed")]
pub struct SinkClosed;

impl DeviceEventSink {
    /// A sink that stamps every event with `device` and sends it into `tx`.
    pub fn new(device: impl Into<DeviceId>, tx: mpsc::Sender<DeviceReport>) -> Self {
        Self {
            device: device.into(),
            tx,
        }
    }

    /// The device id this sink stamps on events.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Sends one event, waiting while the bus is full (back-pressure, never dropping).
    pub async fn send(&self, event: DeviceEvent) -> Result<(), SinkClosed> {
        let report = DeviceReport {
            device: self.device.clone(),
            at: SystemTime::now(),
            event,
        };
        self.tx.send(report).await.map_err(|_| SinkClosed)
    }
}

/// Why a device task ended. The supervisor restarts it with backoff unless it was cancelled.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The transport could not be opened or broke (unplugged, refused, reset).
    #[error("transport: {0}")]
    Transport(#[from] std::io::Error),
    /// The reader stopped answering.
    #[error("reader did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The reader answered with something the driver cannot work with.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The daemon's bus is closed (shutdown).
    #[error(transparent)]
    SinkClosed(#[from] SinkClosed),
    /// The device's configuration cannot work (bad path, unknown option).
    #[error("configuration: {0}")]
    Config(String),
}

/// The boxed future a device task runs.
pub type DeviceFuture = Pin<Box<dyn Future<Output = Result<(), DeviceError>> + Send>>;

/// A device the daemon can run as a task.
///
/// `run` opens the transport, talks to the reader, sends events until `cancel` fires (then
/// returns `Ok(())`) or the line breaks (then returns `Err`). The daemon builds a fresh
/// `Device` from config for every restart, so `run` consumes `self`.
pub trait Device: Send {
    /// Runs the device until it is cancelled or fails.
    fn run(self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture;

    /// Takes the device's command mailbox for the coming run, or gives it back (`Some`)
    /// when the device takes no commands; the supervisor then answers every command with
    /// [`CommandError::Unsupported`]. Called by the supervisor before every [`Device::run`].
    fn lend_commands(&mut self, lease: CommandLease) -> Option<CommandLease> {
        Some(lease)
    }
}

/// One tag in an inventory reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The tag's UID, MSB first.
    pub uid: Uid,
    /// The DSFID the tag reported, when the reader returns it.
    pub dsfid: Option<u8>,
}

/// A reader's "no" to a tag operation: a normal answer, not a broken line (STYLE.md).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReaderRefusal {
    /// No tag answered (it left the field, or never was there).
    #[error("no transponder")]
    NoTransponder,
    /// The reader or tag refused with a protocol status code.
    #[error("reader status {code:#04x}: {meaning}")]
    Status {
        /// The status or error code as sent.
        code: u8,
        /// What the protocol says the code means.
        meaning: String,
    },
}

/// The result of a tag operation that reached the reader: done, or refused.
pub type TagOutcome<T> = Result<T, ReaderRefusal>;

/// What a polled ISO 15693 (HF) reader offers the shared read loop and the stations.
///
/// Implemented by each HF driver (FEIG ISO-Host, 3M 810) over any transport. The outer
/// `Result` is the line (timeout, bad frame: the task restarts); the inner [`TagOutcome`]
/// is the reader's answer about the tag.
pub trait HfReader: Send {
    /// Lists the tags in the field, optionally only those with `afi` (ISO 15693-3 §AFI).
    fn inventory(
        &mut self,
        afi: Option<u8>,
    ) -> impl Future<Output = Result<TagOutcome<Vec<InventoryEntry>>, DeviceError>> + Send;

    /// Reads `count` 4-byte blocks from `first`, returned block 0 first in the reader's
    /// byte order (the tag decoder undoes a reader's block reversal).
    fn read_blocks(
        &mut self,
        uid: &Uid,
        first: u8,
        count: u8,
    ) -> impl Future<Output = Result<TagOutcome<Vec<u8>>, DeviceError>> + Send;

    /// Writes whole 4-byte blocks starting at `first`.
    fn write_blocks(
        &mut self,
        uid: &Uid,
        first: u8,
        data: &[u8],
    ) -> impl Future<Output = Result<TagOutcome<()>, DeviceError>> + Send;

    /// Reads the tag's AFI.
    fn read_afi(
        &mut self,
        uid: &Uid,
    ) -> impl Future<Output = Result<TagOutcome<u8>, DeviceError>> + Send;

    /// Writes the tag's AFI.
    fn write_afi(
        &mut self,
        uid: &Uid,
        afi: u8,
    ) -> impl Future<Output = Result<TagOutcome<()>, DeviceError>> + Send;

    /// Reads the NXP EAS bit.
    fn read_eas(
        &mut self,
        uid: &Uid,
    ) -> impl Future<Output = Result<TagOutcome<bool>, DeviceError>> + Send;

    /// Sets (`true`) or resets (`false`) the NXP EAS bit.
    fn write_eas(
        &mut self,
        uid: &Uid,
        on: bool,
    ) -> impl Future<Output = Result<TagOutcome<()>, DeviceError>> + Send;

    /// Whether [`HfReader::set_output`] drives anything (a FEIG gate's lamps, beeper and
    /// relay). `false` by default: an output command is then answered "unsupported".
    fn has_outputs(&self) -> bool {
        false
    }

    /// Drives the reader's outputs (FEIG `[71]`). Only called when
    /// [`HfReader::has_outputs`] is true.
    fn set_output(
        &mut self,
        output: &OutputCommand,
    ) -> impl Future<Output = Result<TagOutcome<()>, DeviceError>> + Send {
        let _ = output;
        std::future::ready(Ok(Ok(())))
    }

    /// The line counters so far (frames, skipped bytes, bad frames, timeouts), reported in
    /// [`DeviceEvent::Health`]. Drivers that count share a [`LineStats`] with their codec.
    fn line_counters(&self) -> LineCounters {
        LineCounters::default()
    }

    /// The longest wait this reader can hold a notification inventory
    /// ([`HfReader::notify_inventory`]); `None` (the default) means it has no notification
    /// mode, and the read loop refuses `mode = "notify"` with a configuration error rather
    /// than running plain inventories back to back without a pause.
    fn max_notify_wait(&self) -> Option<Duration> {
        None
    }

    /// Inventory in notification mode: the reader holds the request and answers as soon as
    /// a tag is in the field, or with "no transponder" once `wait` has passed with none
    /// (FEIG `B0 01` MODE NTFC, PROTOCOLS.md §4.2). Only called when
    /// [`HfReader::max_notify_wait`] is `Some` and `wait` is within it; the default is a
    /// plain [`HfReader::inventory`].
    fn notify_inventory(
        &mut self,
        afi: Option<u8>,
        wait: Duration,
    ) -> impl Future<Output = Result<TagOutcome<Vec<InventoryEntry>>, DeviceError>> + Send {
        let _ = wait;
        self.inventory(afi)
    }

    /// Reader-specific reports the read loop sends after each inventory (a FEIG gate's
    /// light barriers as [`DeviceEvent::Inputs`]). None by default.
    fn poll_extras(
        &mut self,
    ) -> impl Future<Output = Result<Vec<DeviceEvent>, DeviceError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

/// A captured reader frame explained for a field engineer (`rfidgw frame decode`).
///
/// Each protocol crate fills this from its own frame types; the CLI prints it as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameDescription {
    /// The protocol's name for the frame's command, with its code (`"B0 01 inventory"`).
    pub command: String,
    /// The reply's status with its meaning; `None` for a request.
    pub status: Option<String>,
    /// Whether the frame's CRC checks.
    pub crc_valid: bool,
    /// UIDs in an inventory reply, hex MSB first.
    pub uids: Vec<String>,
    /// Block data in a read reply, hex, in the order on the wire.
    pub data: Option<String>,
    /// Whether this is a request (host to reader) or a reply.
    pub direction: String,
    /// Other decoded fields by name (MODE, AFI, block address …).
    pub fields: std::collections::BTreeMap<String, String>,
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&hex::encode_upper(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| hex::decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_prints_msb_first_upper_case_hex() {
        let uid = Uid::from_hex("e0 04 01 00 31 26 91 17").unwrap();
        assert_eq!(uid.to_string(), "E004010031269117");
        assert_eq!(uid.as_bytes()[0], 0xE0);
    }

    #[test]
    fn uid_rejects_odd_and_empty_text() {
        assert_eq!(Uid::from_hex(""), Err(UidError::Empty));
        assert!(matches!(Uid::from_hex("E00"), Err(UidError::NotHex(_))));
    }

    #[test]
    fn tag_read_round_trips_through_json_with_hex_memory() {
        let read = TagRead {
            memory: Some(vec![0x11, 0x01]),
            afi: Some(0x07),
            ..TagRead::uid_only(Uid::new([0xE0, 0x04]))
        };
        let json = serde_json::to_string(&read).unwrap();
        assert!(json.contains("\"memory\":\"1101\""), "{json}");
        assert!(json.contains("\"uid\":\"E004\""), "{json}");
        assert_eq!(serde_json::from_str::<TagRead>(&json).unwrap(), read);
    }
}
