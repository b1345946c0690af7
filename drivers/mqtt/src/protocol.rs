//! The MQTT device protocol: topics and JSON payloads, in plain types without I/O (the
//! frame layer). The crate's README.md is the reference with every example; this module is
//! that text made code, and the fuzz target `mqtt_payload` runs it on arbitrary input.
//!
//! Every topic sits under the device's prefix (`rfidgw/devices/<device id>` by default):
//!
//! | topic                | direction        | payload                                              |
//! |----------------------|------------------|------------------------------------------------------|
//! | `<prefix>/status`    | device → gateway | `{"state":"online"}` / `{"state":"offline"}`, retained, offline as the last will |
//! | `<prefix>/tags`      | device → gateway | `{"event":"arrived","uid":"E004…","afi":"07","dsfid":"00","memory":"…"}` / `{"event":"departed","uid":"E004…"}` |
//! | `<prefix>/inputs`    | device → gateway | `{"levels":3,"changed":1}`                           |
//! | `<prefix>/sorter`    | device → gateway | `{"bins_full":[2],"jam":false}`, retained            |
//! | `<prefix>/cmd`       | gateway → device | `{"id":"…","command":"divert","bin":3,"deadline_ms":480}` |
//! | `<prefix>/cmd/reply` | device → gateway | `{"id":"…","ok":true}` / `{"id":"…","ok":false,"error":"…"}` |
//! | `<prefix>/gateway`   | gateway → device | `{"state":"online"}` / `{"state":"offline"}`, retained, offline as the gateway's last will |
//!
//! Fields the gateway does not know are ignored (room for a vendor's extras); a field it
//! knows with a wrong type or value makes the whole message a [`Problem`] that says which
//! field and why. Nothing here panics on any input.

use std::time::Duration;

use rfidgw_driver::{
    CommandAnswer, CommandError, CommandResult, DeviceCommand, OutputCommand, ReadBack,
    ReaderRefusal, Signal, SorterState, TagRead, Uid, WriteReport,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest payload read; longer ones are refused unread. The largest legitimate
/// message, a tag arrival with 255 blocks of memory in hex, is about 2.2 KiB.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// The longest UID or EPC: a UHF EPC is at most 496 bits (EPC Gen2 v2 §6.3.2.1.2), 62 bytes.
pub const MAX_UID_LEN: usize = 62;

/// The most user memory a tag arrival carries: 255 blocks of 4 bytes (ISO/IEC 15693-3 block
/// numbers are one byte).
pub const MAX_MEMORY: usize = 255 * 4;

/// The longest command id a reply may carry (the gateway's own are about 20 characters).
pub const MAX_ID_LEN: usize = 128;

/// The most bins a sorter state may list.
pub const MAX_BINS: usize = 1024;

/// One topic of a device, by what travels on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `<prefix>/status`: the device's presence (retained, with its last will).
    Status,
    /// `<prefix>/tags`: tags arriving and departing.
    Tags,
    /// `<prefix>/inputs`: digital inputs (light barriers, counters).
    Inputs,
    /// `<prefix>/sorter`: a sorter's full bins and jam (retained).
    Sorter,
    /// `<prefix>/cmd`: commands from the gateway.
    Command,
    /// `<prefix>/cmd/reply`: the device's answers to commands.
    Reply,
    /// `<prefix>/gateway`: the gateway's presence (retained, with its last will).
    Gateway,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Self; 7] = [
        Self::Status,
        Self::Tags,
        Self::Inputs,
        Self::Sorter,
        Self::Command,
        Self::Reply,
        Self::Gateway,
    ];

    /// The channels a device publishes on (the gateway subscribes to these).
    pub const FROM_DEVICE: [Self; 5] = [
        Self::Status,
        Self::Tags,
        Self::Inputs,
        Self::Sorter,
        Self::Reply,
    ];

    /// The topic below the prefix.
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Tags => "tags",
            Self::Inputs => "inputs",
            Self::Sorter => "sorter",
            Self::Command => "cmd",
            Self::Reply => "cmd/reply",
            Self::Gateway => "gateway",
        }
    }
}

/// Why a topic prefix cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Nothing was given.
    #[error("is empty; the default is rfidgw/devices/<device id>")]
    Empty,
    /// A wildcard is not allowed in a topic a client publishes to (MQTT 3.1.1 §4.7.1).
    #[error("contains the wildcard `{0}`, which no published topic may (MQTT 3.1.1 §4.7.1)")]
    Wildcard(char),
    /// The prefix ends in `/`, which would give topics with an empty level.
    #[error("ends in `/`; give it without the trailing slash")]
    TrailingSlash,
    /// U+0000 is not allowed in a topic (MQTT 3.1.1 §4.7.3).
    #[error("contains U+0000, which no topic may (MQTT 3.1.1 §4.7.3)")]
    Nul,
    /// A topic is at most 65535 bytes (MQTT 3.1.1 §1.5.3); the prefix leaves room for the
    /// longest suffix.
    #[error("is {0} bytes; a prefix can be at most 1024")]
    TooLong(usize),
}

/// The longest topic prefix accepted (MQTT allows 65535-byte topics; brokers often less).
pub const MAX_PREFIX: usize = 1024;

/// The topics of one device under its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// The topics under `prefix` (checked: no wildcards, no trailing `/`).
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        if prefix.is_empty() {
            return Err(TopicError::Empty);
        }
        if let Some(wildcard) = prefix.chars().find(|c| matches!(c, '+' | '#')) {
            return Err(TopicError::Wildcard(wildcard));
        }
        if prefix.contains('\0') {
            return Err(TopicError::Nul);
        }
        if prefix.ends_with('/') {
            return Err(TopicError::TrailingSlash);
        }
        if prefix.len() > MAX_PREFIX {
            return Err(TopicError::TooLong(prefix.len()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The default prefix of a device: `rfidgw/devices/<device id>`.
    pub fn default_prefix(device: &str) -> String {
        format!("rfidgw/devices/{device}")
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full topic of `channel`.
    pub fn topic(&self, channel: Channel) -> String {
        format!("{}/{}", self.prefix, channel.suffix())
    }

    /// Which channel `topic` is, if it is one of this device's.
    pub fn channel(&self, topic: &str) -> Option<Channel> {
        let suffix = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        Channel::ALL.into_iter().find(|c| c.suffix() == suffix)
    }
}

/// What is wrong with a payload. Says where (the field, or the line and column of the
/// JSON) and what, without echoing more than a few characters of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Longer than [`MAX_PAYLOAD`]; not read.
    #[error("{len} bytes is more than the {max}-byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Empty where a message is needed.
    #[error("empty payload")]
    Empty,
    /// Not UTF-8 (JSON is UTF-8, RFC 8259 §8.1).
    #[error("not UTF-8 (bad byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first byte that is not UTF-8.
        offset: usize,
    },
    /// Not JSON at all.
    #[error("not JSON: {message}")]
    Syntax {
        /// serde_json's message, with line and column.
        message: String,
    },
    /// JSON, but a field is missing or has a wrong type or value.
    #[error("field `{field}`: {message}")]
    Field {
        /// The field's path (`bins_full[1]`, `uid`); `.` for the whole message.
        field: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

impl Problem {
    fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Field {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// A device's presence as its status topic says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// The device is connected and working.
    Online,
    /// The device went away (its last will, or a clean goodbye).
    Offline,
}

/// One message a device publishes, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceMessage {
    /// `<prefix>/status`.
    Status(Presence),
    /// `<prefix>/tags` with `"event":"arrived"`.
    Arrived(TagRead),
    /// `<prefix>/tags` with `"event":"departed"`.
    Departed(Uid),
    /// `<prefix>/inputs`.
    Inputs {
        /// Input levels, bit 0 = input 1.
        levels: u8,
        /// Inputs that changed, when the device says; else the gateway works it out.
        changed: Option<u8>,
    },
    /// `<prefix>/sorter`: the whole state, bins ascending without repeats.
    Sorter(SorterState),
    /// `<prefix>/cmd/reply`.
    Reply(Reply),
    /// An empty payload on a retained topic (status, sorter): the retained message was
    /// cleared. Not an error, and nothing to report.
    Cleared,
}

/// A device's answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The command's id, as the gateway sent it.
    pub id: String,
    /// Done (with what it read or wrote), or refused.
    pub outcome: ReplyOutcome,
}

/// Whether the device carried a command out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// `"ok":true`, with what the command returns.
    Done(ReplyData),
    /// `"ok":false`: the device's "no".
    Refused {
        /// The kind of refusal.
        code: RefusalCode,
        /// The device's words.
        error: String,
        /// A device-specific status byte, when it gives one.
        status: Option<u8>,
    },
}

/// The kinds of "no" a device can give (`"code"` in a refusal; `refused` when absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The device tried and could not (a generic "no").
    #[default]
    Refused,
    /// No tag answered (it left the field).
    NoTransponder,
    /// The device does not do this command.
    Unsupported,
}

/// What a successful reply carries, by command: `afi` for `read_afi`, `eas` for
/// `read_eas`, `data` for `read_blocks`, and for writes the read-back (`read_back`
/// `confirmed`, `differs` with `found`, or `not_read` with `reason`; `attempts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyData {
    /// The AFI read.
    pub afi: Option<u8>,
    /// The EAS bit read.
    pub eas: Option<bool>,
    /// Blocks read, reader byte order.
    pub data: Option<Vec<u8>>,
    /// How the write's read-back went; `None` when the device did not say.
    pub read_back: Option<ReadBack>,
    /// Write attempts the device made.
    pub attempts: Option<u32>,
}

/// A command as the device receives it on `<prefix>/cmd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandMessage {
    /// The id to put in the reply.
    pub id: String,
    /// What to do.
    pub command: DeviceCommand,
    /// How long the gateway still waits for the answer, from when it sent the command; a
    /// device skips a command it cannot carry out in time (an alarm lamp switched on late
    /// is no use, a late divert sends the next item to the wrong bin).
    pub deadline: Duration,
}

/// Parses what a device published on `channel`. The gateway's own channels
/// ([`Channel::Command`], [`Channel::Gateway`]) are not device messages.
pub fn parse_device_message(channel: Channel, payload: &[u8]) -> Result<DeviceMessage, Problem> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Problem::TooLong {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return match channel {
            Channel::Status | Channel::Sorter => Ok(DeviceMessage::Cleared),
            _ => Err(Problem::Empty),
        };
    }
    match channel {
        Channel::Status => parse_status(payload).map(DeviceMessage::Status),
        Channel::Tags => parse_tag(payload),
        Channel::Inputs => {
            let wire: WireInputs = from_object(payload)?;
            Ok(DeviceMessage::Inputs {
                levels: wire.levels,
                changed: wire.changed,
            })
        }
        Channel::Sorter => parse_sorter(payload).map(DeviceMessage::Sorter),
        Channel::Reply => parse_reply(payload).map(DeviceMessage::Reply),
        Channel::Command | Channel::Gateway => Err(Problem::field(
            ".",
            format!(
                "`{}` is the gateway's topic, not the device's",
                channel.suffix()
            ),
        )),
    }
}

fn check_size(payload: &[u8]) -> Result<&str, Problem> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Problem::TooLong {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    std::str::from_utf8(payload).map_err(|e| Problem::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Deserialises a JSON object (every message but a status is one), naming the field a
/// data error is about.
fn from_object<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Problem> {
    let text = check_size(payload)?;
    if !text.trim_start().starts_with('{') {
        return Err(Problem::field(".", "expected a JSON object, {…}"));
    }
    from_json(payload)
}

/// Deserialises JSON, naming the field a data error is about.
fn from_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Problem> {
    let text = check_size(payload)?;
    let mut json = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = quote_little(&e.path().to_string());
        let inner = e.into_inner();
        if inner.is_data() {
            Problem::Field {
                field,
                message: quote_little(&inner.to_string()),
            }
        } else {
            Problem::Syntax {
                message: quote_little(&inner.to_string()),
            }
        }
    })?;
    json.end().map_err(|e| Problem::Syntax {
        message: e.to_string(),
    })?;
    Ok(value)
}

/// At most `max` characters of `text`, `…` marking a cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// serde's messages quote what they did not take (``unknown variant `…` ``, `string "…"`),
/// and that can be as long as the payload; a problem goes to the log, so each quoted
/// part keeps its first 32 characters and the whole at most 300.
fn quote_little(text: &str) -> String {
    const QUOTED: usize = 32;
    const MESSAGE: usize = 300;
    let mut out = String::new();
    let mut open: Option<char> = None;
    let mut inside = 0;
    for c in text.chars() {
        match open {
            Some(quote) if c == quote => {
                open = None;
                out.push(c);
            }
            Some(_) => {
                inside += 1;
                if inside <= QUOTED {
                    out.push(c);
                } else if inside == QUOTED + 1 {
                    out.push('…');
                }
            }
            None => {
                if c == '`' || c == '"' {
                    open = Some(c);
                    inside = 0;
                }
                out.push(c);
            }
        }
    }
    shorten(&out, MESSAGE)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireStatus {
    Object { state: Presence },
    Word(Presence),
}

fn parse_status(payload: &[u8]) -> Result<Presence, Problem> {
    // A bare word is accepted too: many devices configure their last will as plain text.
    let text = check_size(payload)?.trim();
    for (word, presence) in [("online", Presence::Online), ("offline", Presence::Offline)] {
        if text.eq_ignore_ascii_case(word) {
            return Ok(presence);
        }
    }
    let value: serde_json::Value = from_json(payload)?;
    serde_json::from_value::<WireStatus>(value)
        .map(|status| match status {
            WireStatus::Object { state } | WireStatus::Word(state) => state,
        })
        .map_err(|_| {
            Problem::field(
                "state",
                "the status is {\"state\":\"online\"} or {\"state\":\"offline\"}",
            )
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum TagEvent {
    Arrived,
    Departed,
}

#[derive(Deserialize)]
struct WireTag {
    event: TagEvent,
    uid: Uid,
    #[serde(default, with = "rfidgw_driver::hex_serde::opt_byte")]
    afi: Option<u8>,
    #[serde(default, with = "rfidgw_driver::hex_serde::opt_byte")]
    dsfid: Option<u8>,
    #[serde(default)]
    eas: Option<bool>,
    #[serde(default, with = "opt_hex")]
    memory: Option<Vec<u8>>,
    #[serde(default)]
    antenna: Option<u8>,
}

fn parse_tag(payload: &[u8]) -> Result<DeviceMessage, Problem> {
    let wire: WireTag = from_object(payload)?;
    if wire.uid.as_bytes().len() > MAX_UID_LEN {
        return Err(Problem::field(
            "uid",
            format!(
                "{} bytes is longer than any UID or EPC ({MAX_UID_LEN} bytes)",
                wire.uid.as_bytes().len()
            ),
        ));
    }
    match wire.event {
        TagEvent::Departed => Ok(DeviceMessage::Departed(wire.uid)),
        TagEvent::Arrived => {
            if let Some(memory) = &wire.memory
                && memory.len() > MAX_MEMORY
            {
                return Err(Problem::field(
                    "memory",
                    format!(
                        "{} bytes is more than 255 blocks of 4 ({MAX_MEMORY})",
                        memory.len()
                    ),
                ));
            }
            Ok(DeviceMessage::Arrived(TagRead {
                uid: wire.uid,
                afi: wire.afi,
                dsfid: wire.dsfid,
                eas: wire.eas,
                memory: wire.memory,
                antenna: wire.antenna,
            }))
        }
    }
}

#[derive(Deserialize)]
struct WireInputs {
    levels: u8,
    #[serde(default)]
    changed: Option<u8>,
}

#[derive(Deserialize)]
struct WireSorter {
    bins_full: Vec<u16>,
    jam: bool,
}

fn parse_sorter(payload: &[u8]) -> Result<SorterState, Problem> {
    let wire: WireSorter = from_object(payload)?;
    if wire.bins_full.len() > MAX_BINS {
        return Err(Problem::field(
            "bins_full",
            format!(
                "{} bins is more than a sorter has ({MAX_BINS} at most)",
                wire.bins_full.len()
            ),
        ));
    }
    if let Some(index) = wire.bins_full.iter().position(|&bin| bin == 0) {
        return Err(Problem::field(
            &format!("bins_full[{index}]"),
            "bins count from 1, as the sort plan numbers them",
        ));
    }
    let mut bins_full = wire.bins_full;
    bins_full.sort_unstable();
    bins_full.dedup();
    Ok(SorterState {
        bins_full,
        jam: wire.jam,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireReadBackKind {
    Confirmed,
    Differs,
    NotRead,
}

#[derive(Deserialize)]
struct WireReply {
    id: String,
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<RefusalCode>,
    #[serde(default, with = "rfidgw_driver::hex_serde::opt_byte")]
    status: Option<u8>,
    #[serde(default, with = "rfidgw_driver::hex_serde::opt_byte")]
    afi: Option<u8>,
    #[serde(default)]
    eas: Option<bool>,
    #[serde(default, with = "opt_hex")]
    data: Option<Vec<u8>>,
    #[serde(default)]
    read_back: Option<WireReadBackKind>,
    #[serde(default)]
    found: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    attempts: Option<u32>,
}

/// The longest text taken from a device into a refusal or read-back (longer is cut).
const MAX_TEXT: usize = 200;

fn short(text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn parse_reply(payload: &[u8]) -> Result<Reply, Problem> {
    let wire: WireReply = from_object(payload)?;
    if wire.id.is_empty() || wire.id.len() > MAX_ID_LEN {
        return Err(Problem::field(
            "id",
            format!("the id of the command answered, as sent (1 to {MAX_ID_LEN} characters)"),
        ));
    }
    let outcome = if wire.ok {
        let read_back = match wire.read_back {
            None => None,
            Some(WireReadBackKind::Confirmed) => Some(ReadBack::Confirmed),
            Some(WireReadBackKind::Differs) => Some(ReadBack::Differs {
                found: short(wire.found.unwrap_or_default()),
            }),
            Some(WireReadBackKind::NotRead) => Some(ReadBack::NotRead {
                reason: short(wire.reason.unwrap_or_default()),
            }),
        };
        if wire.data.as_ref().is_some_and(|d| d.len() > MAX_MEMORY) {
            return Err(Problem::field(
                "data",
                format!("more than 255 blocks of 4 ({MAX_MEMORY} bytes)"),
            ));
        }
        ReplyOutcome::Done(ReplyData {
            afi: wire.afi,
            eas: wire.eas,
            data: wire.data,
            read_back,
            attempts: wire.attempts,
        })
    } else {
        let Some(error) = wire.error.filter(|e| !e.trim().is_empty()) else {
            return Err(Problem::field(
                "error",
                "a refusal (\"ok\":false) says why in `error`",
            ));
        };
        ReplyOutcome::Refused {
            code: wire.code.unwrap_or_default(),
            error: short(error),
            status: wire.status,
        }
    };
    Ok(Reply {
        id: wire.id,
        outcome,
    })
}

impl Reply {
    /// What the caller of `command` gets from this reply. `Err` when the reply does not fit
    /// the command (a `read_afi` answered without `afi`): a malformed reply, which the
    /// session counts and answers as a broken line.
    pub fn result_for(&self, command: &DeviceCommand) -> Result<CommandResult, String> {
        let data = match &self.outcome {
            ReplyOutcome::Refused {
                code: RefusalCode::NoTransponder,
                ..
            } => return Ok(Ok(Err(ReaderRefusal::NoTransponder))),
            ReplyOutcome::Refused {
                code: RefusalCode::Unsupported,
                error,
                ..
            } => return Ok(Err(CommandError::Unsupported(error.clone()))),
            ReplyOutcome::Refused {
                code: RefusalCode::Refused,
                error,
                status,
            } => {
                return Ok(Ok(Err(ReaderRefusal::Status {
                    code: status.unwrap_or(0),
                    meaning: error.clone(),
                })));
            }
            ReplyOutcome::Done(data) => data,
        };
        let missing = |field: &str| {
            format!(
                "the reply to {} has \"ok\":true but no `{field}`",
                command.name()
            )
        };
        let answer = match command {
            DeviceCommand::ReadAfi { .. } => CommandAnswer::Afi {
                afi: data.afi.ok_or_else(|| missing("afi"))?,
            },
            DeviceCommand::ReadEas { .. } => CommandAnswer::Eas {
                on: data.eas.ok_or_else(|| missing("eas"))?,
            },
            DeviceCommand::ReadBlocks { count, .. } => {
                let bytes = data.data.clone().ok_or_else(|| missing("data"))?;
                let expected = usize::from(*count) * 4;
                if bytes.len() != expected {
                    return Err(format!(
                        "the reply to read_blocks has {} bytes of `data` for {count} blocks ({expected} bytes)",
                        bytes.len()
                    ));
                }
                CommandAnswer::Blocks { data: bytes }
            }
            DeviceCommand::WriteAfi { .. }
            | DeviceCommand::WriteEas { .. }
            | DeviceCommand::WriteBlocks { .. } => CommandAnswer::Written(WriteReport {
                // A device that does not say it read the value back has not confirmed it:
                // the station then keeps the write owed (transaction first, tag second).
                read_back: data.read_back.clone().unwrap_or_else(|| ReadBack::NotRead {
                    reason: "the device did not report a read-back".into(),
                }),
                attempts: data.attempts.unwrap_or(1).max(1),
            }),
            DeviceCommand::Output(_) | DeviceCommand::Divert { .. } => CommandAnswer::Done,
        };
        Ok(Ok(Ok(answer)))
    }
}

/// A command on the wire: flat, so an error names the field.
#[derive(Serialize, Deserialize)]
struct WireCommand {
    id: String,
    command: CommandName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<Uid>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfidgw_driver::hex_serde::opt_byte"
    )]
    afi: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    data: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    beeper: Option<Signal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    red: Option<Signal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    green: Option<Signal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signal_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bin: Option<u16>,
    deadline_ms: u64,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CommandName {
    ReadAfi,
    WriteAfi,
    ReadEas,
    WriteEas,
    ReadBlocks,
    WriteBlocks,
    Output,
    Divert,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The payload of a command for `<prefix>/cmd`; `deadline` is how long the gateway waits.
pub fn encode_command(id: &str, command: &DeviceCommand, deadline: Duration) -> Vec<u8> {
    let mut wire = WireCommand {
        id: id.to_owned(),
        command: CommandName::Output,
        uid: None,
        afi: None,
        on: None,
        first: None,
        count: None,
        data: None,
        beeper: None,
        red: None,
        green: None,
        signal_ms: None,
        relay_ms: None,
        bin: None,
        deadline_ms: millis(deadline),
    };
    match command {
        DeviceCommand::ReadAfi { uid } => {
            wire.command = CommandName::ReadAfi;
            wire.uid = Some(uid.clone());
        }
        DeviceCommand::WriteAfi { uid, afi } => {
            wire.command = CommandName::WriteAfi;
            wire.uid = Some(uid.clone());
            wire.afi = Some(*afi);
        }
        DeviceCommand::ReadEas { uid } => {
            wire.command = CommandName::ReadEas;
            wire.uid = Some(uid.clone());
        }
        DeviceCommand::WriteEas { uid, on } => {
            wire.command = CommandName::WriteEas;
            wire.uid = Some(uid.clone());
            wire.on = Some(*on);
        }
        DeviceCommand::ReadBlocks { uid, first, count } => {
            wire.command = CommandName::ReadBlocks;
            wire.uid = Some(uid.clone());
            wire.first = Some(*first);
            wire.count = Some(*count);
        }
        DeviceCommand::WriteBlocks { uid, first, data } => {
            wire.command = CommandName::WriteBlocks;
            wire.uid = Some(uid.clone());
            wire.first = Some(*first);
            wire.data = Some(data.clone());
        }
        DeviceCommand::Output(output) => {
            wire.command = CommandName::Output;
            wire.beeper = Some(output.beeper);
            wire.red = Some(output.red);
            wire.green = Some(output.green);
            wire.signal_ms = output.signal_for.map(millis);
            wire.relay_ms = output.relay_for.map(millis);
        }
        DeviceCommand::Divert { bin } => {
            wire.command = CommandName::Divert;
            wire.bin = Some(*bin);
        }
    }
    to_vec(&wire)
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    // Serialising these plain structs into a Vec cannot fail (no maps with non-string keys,
    // no I/O); an empty payload would be refused by the peer, never a panic here.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Parses a command as a device receives it (the simulated device, and devices written in
/// Rust).
pub fn parse_command(payload: &[u8]) -> Result<CommandMessage, Problem> {
    let wire: WireCommand = from_object(payload)?;
    if wire.id.is_empty() || wire.id.len() > MAX_ID_LEN {
        return Err(Problem::field(
            "id",
            format!("1 to {MAX_ID_LEN} characters"),
        ));
    }
    let uid = || {
        wire.uid
            .clone()
            .ok_or_else(|| Problem::field("uid", "this command needs the tag's uid"))
    };
    let need = |value: Option<u8>, field: &str| {
        value.ok_or_else(|| Problem::field(field, "this command needs it"))
    };
    let command = match wire.command {
        CommandName::ReadAfi => DeviceCommand::ReadAfi { uid: uid()? },
        CommandName::WriteAfi => DeviceCommand::WriteAfi {
            uid: uid()?,
            afi: need(wire.afi, "afi")?,
        },
        CommandName::ReadEas => DeviceCommand::ReadEas { uid: uid()? },
        CommandName::WriteEas => DeviceCommand::WriteEas {
            uid: uid()?,
            on: wire
                .on
                .ok_or_else(|| Problem::field("on", "write_eas needs true or false"))?,
        },
        CommandName::ReadBlocks => DeviceCommand::ReadBlocks {
            uid: uid()?,
            first: need(wire.first, "first")?,
            count: need(wire.count, "count")?,
        },
        CommandName::WriteBlocks => {
            let data = wire
                .data
                .clone()
                .ok_or_else(|| Problem::field("data", "write_blocks needs the data, hex"))?;
            if data.is_empty() || data.len() % 4 != 0 || data.len() > MAX_MEMORY {
                return Err(Problem::field(
                    "data",
                    format!(
                        "{} bytes is not whole 4-byte blocks (1 to 255 of them)",
                        data.len()
                    ),
                ));
            }
            DeviceCommand::WriteBlocks {
                uid: uid()?,
                first: need(wire.first, "first")?,
                data,
            }
        }
        CommandName::Output => DeviceCommand::Output(OutputCommand {
            beeper: wire.beeper.unwrap_or_default(),
            red: wire.red.unwrap_or_default(),
            green: wire.green.unwrap_or_default(),
            signal_for: wire.signal_ms.map(Duration::from_millis),
            relay_for: wire.relay_ms.map(Duration::from_millis),
        }),
        CommandName::Divert => {
            let bin = wire
                .bin
                .ok_or_else(|| Problem::field("bin", "divert needs the bin, from 1"))?;
            if bin == 0 {
                return Err(Problem::field("bin", "bins count from 1"));
            }
            DeviceCommand::Divert { bin }
        }
    };
    Ok(CommandMessage {
        id: wire.id,
        command,
        deadline: Duration::from_millis(wire.deadline_ms),
    })
}

#[derive(Serialize)]
struct WireState {
    state: Presence,
}

/// The payload of a status (device) or gateway message.
pub fn encode_presence(presence: Presence) -> Vec<u8> {
    to_vec(&WireState { state: presence })
}

#[derive(Serialize)]
struct WireTagOut<'a> {
    event: &'static str,
    uid: &'a Uid,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rfidgw_driver::hex_serde::opt_byte"
    )]
    afi: Option<u8>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rfidgw_driver::hex_serde::opt_byte"
    )]
    dsfid: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_hex")]
    memory: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    antenna: Option<u8>,
}

/// The payload of a tag arrival for `<prefix>/tags`.
pub fn encode_arrived(read: &TagRead) -> Vec<u8> {
    to_vec(&WireTagOut {
        event: "arrived",
        uid: &read.uid,
        afi: read.afi,
        dsfid: read.dsfid,
        eas: read.eas,
        memory: read.memory.clone(),
        antenna: read.antenna,
    })
}

/// The payload of a tag departure for `<prefix>/tags`.
pub fn encode_departed(uid: &Uid) -> Vec<u8> {
    to_vec(&WireTagOut {
        event: "departed",
        uid,
        afi: None,
        dsfid: None,
        eas: None,
        memory: None,
        antenna: None,
    })
}

/// The payload of an inputs report for `<prefix>/inputs`.
pub fn encode_inputs(levels: u8, changed: u8) -> Vec<u8> {
    to_vec(&serde_json::json!({ "levels": levels, "changed": changed }))
}

/// The payload of a sorter state for `<prefix>/sorter`.
pub fn encode_sorter(state: &SorterState) -> Vec<u8> {
    to_vec(&serde_json::json!({ "bins_full": state.bins_full, "jam": state.jam }))
}

/// The payload of a reply for `<prefix>/cmd/reply`.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut out = serde_json::Map::new();
    out.insert("id".into(), reply.id.clone().into());
    match &reply.outcome {
        ReplyOutcome::Done(data) => {
            out.insert("ok".into(), true.into());
            if let Some(afi) = data.afi {
                out.insert("afi".into(), format!("{afi:02X}").into());
            }
            if let Some(eas) = data.eas {
                out.insert("eas".into(), eas.into());
            }
            if let Some(bytes) = &data.data {
                out.insert("data".into(), hex::encode_upper(bytes).into());
            }
            match &data.read_back {
                None => {}
                Some(ReadBack::Confirmed) => {
                    out.insert("read_back".into(), "confirmed".into());
                }
                Some(ReadBack::Differs { found }) => {
                    out.insert("read_back".into(), "differs".into());
                    out.insert("found".into(), found.clone().into());
                }
                Some(ReadBack::NotRead { reason }) => {
                    out.insert("read_back".into(), "not_read".into());
                    out.insert("reason".into(), reason.clone().into());
                }
            }
            if let Some(attempts) = data.attempts {
                out.insert("attempts".into(), attempts.into());
            }
        }
        ReplyOutcome::Refused {
            code,
            error,
            status,
        } => {
            out.insert("ok".into(), false.into());
            out.insert("error".into(), error.clone().into());
            out.insert(
                "code".into(),
                serde_json::to_value(code).unwrap_or_default(),
            );
            if let Some(status) = status {
                out.insert("status".into(), format!("{status:02X}").into());
            }
        }
    }
    to_vec(&out)
}

/// Hex text (upper or lower case, spaces allowed) for tag memory and block data, with an
/// error that quotes at most a few characters of the input.
mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(&compact).map(Some).map_err(|e| {
            let head: String = compact.chars().take(16).collect();
            let more = if compact.chars().count() > 16 {
                "…"
            } else {
                ""
            };
            serde::de::Error::custom(format!("`{head}{more}` is not hex bytes: {e}"))
        })
    }

    #[allow(clippy::ref_option)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&hex::encode_upper(bytes)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A tag event whose `event` is 305 characters long.
    const LONG_VARIANT: &str = r#"{"event":"arrivDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD","uid":"E004010000000001"}"#;
    use super::*;

    fn uid(text: &str) -> Uid {
        Uid::from_hex(text).unwrap()
    }

    #[test]
    fn topics_sit_under_the_prefix_and_are_told_apart() {
        let topics = Topics::new("rfidgw/devices/gate-1").unwrap();
        assert_eq!(
            topics.topic(Channel::Reply),
            "rfidgw/devices/gate-1/cmd/reply"
        );
        for channel in Channel::ALL {
            assert_eq!(topics.channel(&topics.topic(channel)), Some(channel));
        }
        for other in [
            "rfidgw/devices/gate-1",
            "rfidgw/devices/gate-10/tags",
            "rfidgw/devices/gate-1/tags/x",
            "rfidgw/devices/gate-1tags",
            "rfidgw/devices/gate-1/",
        ] {
            assert_eq!(topics.channel(other), None, "{other}");
        }
        for (prefix, error) in [
            ("", TopicError::Empty),
            ("a/#", TopicError::Wildcard('#')),
            ("a/+/b", TopicError::Wildcard('+')),
            ("a/b/", TopicError::TrailingSlash),
            ("a\0b", TopicError::Nul),
        ] {
            assert_eq!(Topics::new(prefix), Err(error), "{prefix:?}");
        }
        assert_eq!(
            Topics::new(&"a".repeat(MAX_PREFIX + 1)),
            Err(TopicError::TooLong(MAX_PREFIX + 1))
        );
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table of every documented example
    fn the_documented_device_messages_parse() {
        let arrived = TagRead {
            afi: Some(0x07),
            dsfid: Some(0x00),
            eas: Some(true),
            memory: Some(vec![0x11, 0x01, 0xAB, 0xCD]),
            antenna: Some(2),
            ..TagRead::uid_only(uid("E004010031269117"))
        };
        let cases: Vec<(Channel, &str, DeviceMessage)> = vec![
            (
                Channel::Status,
                r#"{"state":"online"}"#,
                DeviceMessage::Status(Presence::Online),
            ),
            (
                Channel::Status,
                r#"{"state":"offline","firmware":"2.1"}"#,
                DeviceMessage::Status(Presence::Offline),
            ),
            (
                Channel::Status,
                " Offline\n",
                DeviceMessage::Status(Presence::Offline),
            ),
            (
                Channel::Status,
                r#""online""#,
                DeviceMessage::Status(Presence::Online),
            ),
            (Channel::Status, "", DeviceMessage::Cleared),
            (
                Channel::Tags,
                r#"{"event":"arrived","uid":"E004010031269117","afi":"07","dsfid":"00","eas":true,"memory":"1101 abcd","antenna":2,"rssi":-51}"#,
                DeviceMessage::Arrived(arrived),
            ),
            (
                Channel::Tags,
                r#"{"event":"arrived","uid":"e004010031269117","afi":7}"#,
                DeviceMessage::Arrived(TagRead {
                    afi: Some(7),
                    ..TagRead::uid_only(uid("E004010031269117"))
                }),
            ),
            (
                Channel::Tags,
                r#"{"event":"departed","uid":"E004010031269117"}"#,
                DeviceMessage::Departed(uid("E004010031269117")),
            ),
            (
                Channel::Inputs,
                r#"{"levels":3,"changed":1}"#,
                DeviceMessage::Inputs {
                    levels: 3,
                    changed: Some(1),
                },
            ),
            (
                Channel::Inputs,
                r#"{"levels":0}"#,
                DeviceMessage::Inputs {
                    levels: 0,
                    changed: None,
                },
            ),
            (
                Channel::Sorter,
                r#"{"bins_full":[4,2,4],"jam":true}"#,
                DeviceMessage::Sorter(SorterState {
                    bins_full: vec![2, 4],
                    jam: true,
                }),
            ),
            (Channel::Sorter, "", DeviceMessage::Cleared),
            (
                Channel::Reply,
                r#"{"id":"ab-1","ok":true}"#,
                DeviceMessage::Reply(Reply {
                    id: "ab-1".into(),
                    outcome: ReplyOutcome::Done(ReplyData::default()),
                }),
            ),
            (
                Channel::Reply,
                r#"{"id":"ab-2","ok":false,"error":"diverter 3 blocked"}"#,
                DeviceMessage::Reply(Reply {
                    id: "ab-2".into(),
                    outcome: ReplyOutcome::Refused {
                        code: RefusalCode::Refused,
                        error: "diverter 3 blocked".into(),
                        status: None,
                    },
                }),
            ),
            (
                Channel::Reply,
                r#"{"id":"ab-3","ok":true,"read_back":"differs","found":"C2","attempts":3}"#,
                DeviceMessage::Reply(Reply {
                    id: "ab-3".into(),
                    outcome: ReplyOutcome::Done(ReplyData {
                        read_back: Some(ReadBack::Differs { found: "C2".into() }),
                        attempts: Some(3),
                        ..ReplyData::default()
                    }),
                }),
            ),
        ];
        for (channel, payload, expected) in cases {
            assert_eq!(
                parse_device_message(channel, payload.as_bytes()),
                Ok(expected),
                "{channel:?} {payload}"
            );
        }
    }

    /// Each malformed payload is refused with a problem that names where it is.
    #[test]
    #[allow(clippy::too_many_lines)] // one table of malformed payloads
    fn malformed_device_messages_say_what_and_where() {
        let long_uid = format!(r#"{{"event":"departed","uid":"{}"}}"#, "AB".repeat(63));
        let huge = format!(r#"{{"levels":1,"pad":"{}"}}"#, " ".repeat(MAX_PAYLOAD));
        let many_bins = format!(
            r#"{{"bins_full":[{}],"jam":false}}"#,
            vec!["1"; MAX_BINS + 1].join(",")
        );
        let cases: Vec<(Channel, &[u8], &str)> = vec![
            (Channel::Tags, b"", "empty payload"),
            (Channel::Tags, b"\xff{}", "not UTF-8 (bad byte at offset 0)"),
            (Channel::Tags, b"{\"event\":", "not JSON: EOF while parsing"),
            (
                Channel::Tags,
                br#"{"event":"departed","uid":"E0"} {}"#,
                "not JSON: trailing characters",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived"}"#,
                "field `.`: missing field `uid`",
            ),
            (
                Channel::Tags,
                br#"{"event":"left","uid":"E0"}"#,
                "field `event`: unknown variant `left`",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived","uid":"E0G1"}"#,
                "field `uid`: UID is not hex",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived","uid":""}"#,
                "field `uid`: UID is empty",
            ),
            (
                Channel::Tags,
                long_uid.as_bytes(),
                "field `uid`: 63 bytes is longer",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived","uid":"E0","afi":"7G"}"#,
                "field `afi`: `7G` is not a hex byte",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived","uid":"E0","afi":300}"#,
                "field `afi`: 300 is not a byte",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived","uid":"E0","memory":"0g0000000000000000000000"}"#,
                "field `memory`: `0g00000000000000…` is not hex bytes",
            ),
            (
                Channel::Tags,
                br#"{"event":"arrived","uid":"E0","eas":"yes"}"#,
                "field `eas`: invalid type: string",
            ),
            (Channel::Tags, b"[1,2]", "field `.`: expected a JSON object"),
            (Channel::Tags, b"null", "field `.`: expected a JSON object"),
            (
                Channel::Inputs,
                br#"{"levels":256}"#,
                "field `levels`: invalid value: integer `256`",
            ),
            (
                Channel::Inputs,
                br#"{"levels":-1}"#,
                "field `levels`: invalid value: integer `-1`",
            ),
            (
                Channel::Inputs,
                huge.as_bytes(),
                "16405 bytes is more than the 16384-byte limit",
            ),
            (
                Channel::Sorter,
                br#"{"bins_full":[1,0],"jam":false}"#,
                "field `bins_full[1]`: bins count from 1",
            ),
            (
                Channel::Sorter,
                br#"{"bins_full":[1]}"#,
                "field `.`: missing field `jam`",
            ),
            (
                Channel::Sorter,
                br#"{"bins_full":[70000],"jam":false}"#,
                "field `bins_full[0]`: invalid value",
            ),
            (
                Channel::Sorter,
                many_bins.as_bytes(),
                "field `bins_full`: 1025 bins",
            ),
            (Channel::Status, b"maybe", "not JSON"),
            (
                Channel::Status,
                br#"{"state":"asleep"}"#,
                "field `state`: the status is",
            ),
            (
                Channel::Reply,
                br#"{"ok":true}"#,
                "field `.`: missing field `id`",
            ),
            (
                Channel::Reply,
                br#"{"id":"","ok":true}"#,
                "field `id`: the id of the command",
            ),
            (
                Channel::Reply,
                br#"{"id":"a","ok":false}"#,
                "field `error`: a refusal",
            ),
            (
                Channel::Reply,
                br#"{"id":"a","ok":"yes"}"#,
                "field `ok`: invalid type",
            ),
            (
                Channel::Reply,
                br#"{"id":"a","ok":false,"error":"x","code":"busy"}"#,
                "field `code`: unknown variant `busy`",
            ),
            (
                Channel::Command,
                b"{}",
                "field `.`: `cmd` is the gateway's topic",
            ),
            // A fuzz find: serde quoted the whole unknown variant, 500 characters of it.
            (
                Channel::Tags,
                LONG_VARIANT.as_bytes(),
                "field `event`: unknown variant `arrivDDDDDDDDDDDDDDDDDDDDDDDDDDD…`, expected `arrived` or `departed`",
            ),
        ];
        for (channel, payload, needle) in cases {
            let problem = parse_device_message(channel, payload)
                .expect_err(&format!("{channel:?} {}", String::from_utf8_lossy(payload)));
            let text = problem.to_string();
            assert!(
                text.starts_with(needle),
                "{channel:?} {}\n  got: {text}\n want: {needle}",
                String::from_utf8_lossy(payload)
            );
            assert!(text.len() < 400, "the problem quotes too much: {text}");
        }
    }

    #[test]
    fn a_reply_is_read_as_the_answer_to_its_command() {
        let tag = uid("E004010000000001");
        let reply = |json: &str| match parse_device_message(Channel::Reply, json.as_bytes()) {
            Ok(DeviceMessage::Reply(reply)) => reply,
            other => panic!("{json}: {other:?}"),
        };
        let write = DeviceCommand::WriteAfi {
            uid: tag.clone(),
            afi: 0xC2,
        };
        let read_blocks = DeviceCommand::ReadBlocks {
            uid: tag.clone(),
            first: 0,
            count: 2,
        };
        let read_eas = DeviceCommand::ReadEas { uid: tag.clone() };
        let cases: Vec<(&DeviceCommand, &str, Result<CommandResult, &str>)> = vec![
            (
                &write,
                r#"{"id":"a","ok":true,"read_back":"confirmed"}"#,
                Ok(Ok(Ok(CommandAnswer::Written(WriteReport {
                    read_back: ReadBack::Confirmed,
                    attempts: 1,
                })))),
            ),
            (
                &write,
                r#"{"id":"a","ok":true}"#,
                Ok(Ok(Ok(CommandAnswer::Written(WriteReport {
                    read_back: ReadBack::NotRead {
                        reason: "the device did not report a read-back".into(),
                    },
                    attempts: 1,
                })))),
            ),
            (
                &write,
                r#"{"id":"a","ok":true,"read_back":"not_read","reason":"tag left","attempts":2}"#,
                Ok(Ok(Ok(CommandAnswer::Written(WriteReport {
                    read_back: ReadBack::NotRead {
                        reason: "tag left".into(),
                    },
                    attempts: 2,
                })))),
            ),
            (
                &read_blocks,
                r#"{"id":"a","ok":true,"data":"0102030405060708"}"#,
                Ok(Ok(Ok(CommandAnswer::Blocks {
                    data: vec![1, 2, 3, 4, 5, 6, 7, 8],
                }))),
            ),
            (
                &read_blocks,
                r#"{"id":"a","ok":true,"data":"01020304"}"#,
                Err("the reply to read_blocks has 4 bytes of `data` for 2 blocks (8 bytes)"),
            ),
            (
                &read_eas,
                r#"{"id":"a","ok":true,"eas":false}"#,
                Ok(Ok(Ok(CommandAnswer::Eas { on: false }))),
            ),
            (
                &read_eas,
                r#"{"id":"a","ok":true,"afi":"07"}"#,
                Err("the reply to read_eas has \"ok\":true but no `eas`"),
            ),
            (
                &DeviceCommand::Divert { bin: 2 },
                r#"{"id":"a","ok":true}"#,
                Ok(Ok(Ok(CommandAnswer::Done))),
            ),
            (
                &DeviceCommand::Divert { bin: 2 },
                r#"{"id":"a","ok":false,"error":"bin 2 full","status":3}"#,
                Ok(Ok(Err(ReaderRefusal::Status {
                    code: 3,
                    meaning: "bin 2 full".into(),
                }))),
            ),
        ];
        for (command, json, expected) in cases {
            assert_eq!(
                reply(json).result_for(command),
                expected.map_err(str::to_owned),
                "{json}"
            );
        }
    }

    #[test]
    fn every_command_goes_out_and_comes_back_the_same() {
        let tag = uid("E004010000000001");
        let commands = [
            DeviceCommand::ReadAfi { uid: tag.clone() },
            DeviceCommand::WriteAfi {
                uid: tag.clone(),
                afi: 0xC2,
            },
            DeviceCommand::ReadEas { uid: tag.clone() },
            DeviceCommand::WriteEas {
                uid: tag.clone(),
                on: false,
            },
            DeviceCommand::ReadBlocks {
                uid: tag.clone(),
                first: 3,
                count: 2,
            },
            DeviceCommand::WriteBlocks {
                uid: tag.clone(),
                first: 1,
                data: vec![1, 2, 3, 4],
            },
            DeviceCommand::Output(OutputCommand {
                beeper: Signal::Flash,
                red: Signal::On,
                green: Signal::Off,
                signal_for: Some(Duration::from_secs(3)),
                relay_for: Some(Duration::from_millis(1500)),
            }),
            DeviceCommand::Output(OutputCommand::default()),
            DeviceCommand::Divert { bin: 3 },
        ];
        for command in commands {
            let payload = encode_command("c-1", &command, Duration::from_millis(480));
            let parsed = parse_command(&payload)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&payload)));
            assert_eq!(
                parsed,
                CommandMessage {
                    id: "c-1".into(),
                    command,
                    deadline: Duration::from_millis(480),
                }
            );
        }
        let divert = encode_command(
            "c-2",
            &DeviceCommand::Divert { bin: 3 },
            Duration::from_secs(2),
        );
        assert_eq!(
            String::from_utf8(divert).unwrap(),
            r#"{"id":"c-2","command":"divert","bin":3,"deadline_ms":2000}"#
        );
        let write = encode_command(
            "c-3",
            &DeviceCommand::WriteAfi {
                uid: tag,
                afi: 0xC2,
            },
            Duration::from_millis(900),
        );
        assert_eq!(
            String::from_utf8(write).unwrap(),
            r#"{"id":"c-3","command":"write_afi","uid":"E004010000000001","afi":"C2","deadline_ms":900}"#
        );
    }

    #[test]
    fn a_command_missing_what_it_needs_is_refused_by_field() {
        for (json, needle) in [
            (
                r#"{"id":"a","command":"divert","deadline_ms":5}"#,
                "field `bin`",
            ),
            (
                r#"{"id":"a","command":"divert","bin":0,"deadline_ms":5}"#,
                "field `bin`: bins count from 1",
            ),
            (
                r#"{"id":"a","command":"write_afi","uid":"E0","deadline_ms":5}"#,
                "field `afi`",
            ),
            (
                r#"{"id":"a","command":"write_eas","uid":"E0","deadline_ms":5}"#,
                "field `on`",
            ),
            (
                r#"{"id":"a","command":"read_afi","deadline_ms":5}"#,
                "field `uid`",
            ),
            (
                r#"{"id":"a","command":"write_blocks","uid":"E0","first":0,"data":"010203","deadline_ms":5}"#,
                "field `data`: 3 bytes",
            ),
            (
                r#"{"id":"a","command":"output","beeper":"loud","deadline_ms":5}"#,
                "field `beeper`: unknown variant `loud`",
            ),
            (
                r#"{"id":"a","command":"reboot","deadline_ms":5}"#,
                "field `command`: unknown variant `reboot`",
            ),
            (
                r#"{"id":"a","command":"output"}"#,
                "field `.`: missing field `deadline_ms`",
            ),
            (
                r#"{"id":"","command":"output","deadline_ms":5}"#,
                "field `id`",
            ),
        ] {
            let problem = parse_command(json.as_bytes()).unwrap_err().to_string();
            assert!(problem.starts_with(needle), "{json}\n  got: {problem}");
        }
    }

    #[test]
    fn the_device_side_encoders_write_what_the_gateway_reads() {
        let read = TagRead {
            afi: Some(0x07),
            dsfid: Some(0x06),
            eas: Some(false),
            memory: Some(vec![0x11, 0x01]),
            antenna: None,
            ..TagRead::uid_only(uid("E004010031269117"))
        };
        let parse = |channel, payload: Vec<u8>| parse_device_message(channel, &payload).unwrap();
        assert_eq!(
            String::from_utf8(encode_arrived(&read)).unwrap(),
            r#"{"event":"arrived","uid":"E004010031269117","afi":"07","dsfid":"06","eas":false,"memory":"1101"}"#
        );
        assert_eq!(
            parse(Channel::Tags, encode_arrived(&read)),
            DeviceMessage::Arrived(read.clone())
        );
        assert_eq!(
            parse(Channel::Tags, encode_departed(&read.uid)),
            DeviceMessage::Departed(read.uid.clone())
        );
        assert_eq!(
            parse(Channel::Inputs, encode_inputs(5, 4)),
            DeviceMessage::Inputs {
                levels: 5,
                changed: Some(4)
            }
        );
        let state = SorterState {
            bins_full: vec![1, 3],
            jam: false,
        };
        assert_eq!(
            parse(Channel::Sorter, encode_sorter(&state)),
            DeviceMessage::Sorter(state)
        );
        for presence in [Presence::Online, Presence::Offline] {
            assert_eq!(
                parse(Channel::Status, encode_presence(presence)),
                DeviceMessage::Status(presence)
            );
        }
        for outcome in [
            ReplyOutcome::Done(ReplyData {
                afi: Some(0xC2),
                eas: Some(true),
                data: Some(vec![9, 8, 7, 6]),
                read_back: Some(ReadBack::Differs { found: "07".into() }),
                attempts: Some(2),
            }),
            ReplyOutcome::Refused {
                code: RefusalCode::NoTransponder,
                error: "gone".into(),
                status: Some(0x01),
            },
        ] {
            let reply = Reply {
                id: "x-9".into(),
                outcome,
            };
            assert_eq!(
                parse(Channel::Reply, encode_reply(&reply)),
                DeviceMessage::Reply(reply)
            );
        }
    }
}
