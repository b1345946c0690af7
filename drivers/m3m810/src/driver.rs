//! The 3M 810 driver: one command at a time over any byte stream, and the
//! write-then-verify retries this hardware needs.
//!
//! * **One command at a time** (PROTOCOLS.md §4.3: the reader ignores commands while busy):
//!   every method takes `&mut self`, sends one frame and waits for the complete reply (or
//!   the per-command timeout) before it returns. A late reply to an earlier, timed-out
//!   command is recognised by its command byte or UID echo and skipped.
//! * **Write, then verify** (§3.5): 3M pads report transient `06` errors on writes, and a
//!   write answered OK is not proof the tag took it. After a write AFI, EAS control or
//!   write multiblock the driver reads the value back and retries, a bounded number of
//!   times, until it reads what it wrote; it returns what it finally read back.
//! * **Check EAS** answers error `06` both for "EAS off" and for "no tag" (§3.3, §4.3); the
//!   driver tells them apart with a get AFI, so a tag that left is never taken for an
//!   unsecured one. A success reply comes in two forms, UID + EAS byte or UID only
//!   (firmware differs); both are answers ([`Reply::eas_on`] says what each means).
//! * **An attribute the driver cannot read is a refusal, not a broken line.** A reply to
//!   get AFI, check EAS or read multiblock that has a valid CRC but fits no known form is
//!   the pad's answer about that tag: it comes back as a [`ReaderRefusal`], so the read
//!   loop marks the attribute unknown and keeps reading. A timeout, a closed line and an
//!   unreadable reply to the inventory, version or a write stay an `Err` (the device
//!   restarts).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rfidgw_driver::line::LineStats;
use rfidgw_driver::{
    DeviceError, HfReader, InventoryEntry, LineCounters, ReaderRefusal, TagOutcome, Uid,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::codec::{CodecError, M3m810Codec};
use crate::frame::{
    BLOCK_SIZE, Command, ErrorCode, FrameError, ReadStyle, Reply, Request, Start, TagUid, UID_LEN,
    inventory_options,
};

/// The longest command timeout the driver uses, whatever it is given.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_mins(1);

/// How the driver times and retries commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// How long to wait for the complete reply to one command.
    pub command_timeout: Duration,
    /// How many times a write is tried (write + read-back each) before giving up; at least 1.
    pub write_attempts: u32,
    /// Pause between write attempts, so a tag moving on the pad can settle.
    pub retry_pause: Duration,
    /// Options of the `FE` inventory (see [`inventory_options`]; `05` as 3M software sends).
    pub inventory_options: u8,
    /// Blocks asked for in one read multiblock; longer reads are split.
    pub blocks_per_read: u8,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            // At 19200 baud the longest reply (2302 bytes) takes 1.2 s on the wire; typical
            // replies take under 10 ms. Biblio-RFID waits 0.5 s.
            command_timeout: Duration::from_millis(1500),
            // Biblio-RFID retries up to 100 times; ten attempts with a re-read each cover
            // the transient 06s seen on pads without stalling a self-check for seconds.
            write_attempts: 10,
            retry_pause: Duration::from_millis(20),
            inventory_options: inventory_options::COMMON,
            // Biblio-RFID reads 8 blocks per call ("3M defaults").
            blocks_per_read: 8,
        }
    }
}

/// Why a command got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The reader did not answer in time.
    #[error("3M 810 did not answer command {command:02X} within {timeout:?}")]
    Timeout {
        /// The command byte sent.
        command: u8,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The stream ended (unplugged, pty closed, connection reset).
    #[error("3M 810 line closed")]
    Closed,
    /// Reading or writing failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The reply has a valid CRC but does not fit its command.
    #[error("3M 810 reply to command {command:02X}: {source}")]
    BadReply {
        /// The command byte.
        command: u8,
        /// What is wrong with it.
        #[source]
        source: FrameError,
    },
}

impl From<DriverError> for DeviceError {
    fn from(error: DriverError) -> Self {
        match error {
            DriverError::Timeout { timeout, .. } => DeviceError::Timeout(timeout),
            DriverError::Closed => DeviceError::Transport(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "3M 810 line closed",
            )),
            DriverError::Codec(CodecError::Io(io)) => DeviceError::Transport(io),
            other => DeviceError::Protocol(other.to_string()),
        }
    }
}

/// The result of a verified write: what was wanted, what was finally read back, and how
/// many write attempts it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteCheck<T> {
    /// The value written.
    pub wanted: T,
    /// The value read back after the last attempt; `None` if the tag did not answer it.
    pub read_back: Option<T>,
    /// Write attempts made (1 = the first write was confirmed).
    pub attempts: u32,
}

impl<T: PartialEq> WriteCheck<T> {
    /// Whether the tag now holds what was written.
    pub fn confirmed(&self) -> bool {
        self.read_back.as_ref() == Some(&self.wanted)
    }
}

/// A 3M 810 / Model 210 reader on any byte stream.
pub struct M3m810Reader<T> {
    framed: Framed<T, M3m810Codec>,
    stats: LineStats,
    config: DriverConfig,
}

impl<T> std::fmt::Debug for M3m810Reader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M3m810Reader")
            .field("config", &self.config)
            .field("counters", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// What a write changes, and what reading it back returns.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Afi(u8),
    Eas(bool),
    Blocks { first: u8, data: Vec<u8> },
}

fn refusal(error: ErrorCode) -> ReaderRefusal {
    match error {
        ErrorCode::NoTransponder => ReaderRefusal::NoTransponder,
        other => ReaderRefusal::Status {
            code: other.code(),
            meaning: other.meaning().to_owned(),
        },
    }
}

/// Refusals worth another write attempt: the tag was not reached this time (§3.5).
fn is_transient(refusal: &ReaderRefusal) -> bool {
    match refusal {
        ReaderRefusal::NoTransponder => true,
        ReaderRefusal::Status { code, .. } => {
            matches!(
                ErrorCode::from_code(*code),
                ErrorCode::ReadError | ErrorCode::WriteError
            )
        }
    }
}

/// The 8-byte id the reader addresses, or a refusal naming the UID that does not fit.
fn tag_uid(uid: &Uid) -> Result<TagUid, ReaderRefusal> {
    TagUid::try_from(uid.as_bytes()).map_err(|_| ReaderRefusal::Status {
        code: ErrorCode::ParameterError.code(),
        meaning: format!(
            "UID {uid} is {} bytes; the 3M reader addresses {UID_LEN}-byte ISO 15693 UIDs",
            uid.as_bytes().len()
        ),
    })
}

fn reply_uid(reply: &Reply) -> Option<&TagUid> {
    match reply {
        Reply::ReadMultiblock { uid, .. }
        | Reply::WriteMultiblock { uid, .. }
        | Reply::GetAfi { uid, .. }
        | Reply::WriteAfi { uid }
        | Reply::CheckEas { uid, .. }
        | Reply::EasControl { uid } => Some(uid),
        _ => None,
    }
}

fn request_uid(request: &Request) -> Option<&TagUid> {
    match request {
        Request::ReadMultiblock { uid, .. }
        | Request::WriteMultiblock { uid, .. }
        | Request::GetAfi { uid }
        | Request::WriteAfi { uid, .. }
        | Request::CheckEas { uid }
        | Request::EasControl { uid, .. } => Some(uid),
        _ => None,
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> M3m810Reader<T> {
    /// A reader on `io` (a serial port, a TCP stream, a pty, an in-memory duplex).
    pub fn new(io: T, config: DriverConfig) -> Self {
        let stats = LineStats::new();
        Self {
            framed: Framed::new(io, M3m810Codec::new(stats.clone())),
            stats,
            config,
        }
    }

    /// The line counters shared with the codec.
    pub fn stats(&self) -> &LineStats {
        &self.stats
    }

    /// The driver's timing and retry settings.
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// Sends one request and waits for its complete reply: the heart of "one command at a
    /// time". A refusal (non-zero error byte) is a normal [`Reply::Refused`].
    pub async fn transact(&mut self, request: &Request) -> Result<Reply, DriverError> {
        let command = request.command();
        let style = match request {
            Request::ReadMultiblock { options, .. } => ReadStyle::from_options(*options),
            _ => ReadStyle::Old,
        };
        self.framed.send(request.to_frame()).await?;
        // Capped so no configured value can overflow the clock.
        let deadline = Instant::now() + self.config.command_timeout.min(MAX_COMMAND_TIMEOUT);
        loop {
            let next = tokio::time::timeout_at(deadline, self.framed.next()).await;
            let frame = match next {
                Err(_) => {
                    self.stats.timeout();
                    // Whatever half frame is buffered belongs to the unanswered command.
                    let leftover = self.framed.read_buffer().len();
                    if leftover > 0 {
                        self.stats.skipped(leftover);
                        self.framed.read_buffer_mut().clear();
                    }
                    return Err(DriverError::Timeout {
                        command,
                        timeout: self.config.command_timeout,
                    });
                }
                Ok(None) => return Err(DriverError::Closed),
                Ok(Some(frame)) => frame?,
            };
            if frame.start != Start::Command || frame.command != command {
                tracing::debug!(?frame, "3M 810: skipping a reply to another command");
                continue;
            }
            let reply = Reply::parse(&frame, style)
                .map_err(|source| DriverError::BadReply { command, source })?;
            if let (Some(sent), Some(echoed)) = (request_uid(request), reply_uid(&reply))
                && sent != echoed
            {
                tracing::debug!(?frame, "3M 810: skipping a reply about another tag");
                continue;
            }
            return Ok(reply);
        }
    }

    /// [`Self::transact`] for reading one tag attribute (AFI, EAS, memory). A reply with a
    /// valid CRC that does not fit the command came whole from the pad, so it is an answer
    /// about this tag: it becomes a refusal (code `00`, the error byte it carried, and the
    /// frame error as meaning) and the device keeps reading. Line errors stay `Err`.
    async fn transact_attribute(
        &mut self,
        request: &Request,
    ) -> Result<TagOutcome<Reply>, DriverError> {
        match self.transact(request).await {
            Ok(reply) => Ok(Ok(reply)),
            Err(DriverError::BadReply { command, source }) => {
                let name = Command::from_code(command).map_or("command", Command::name);
                tracing::debug!(
                    command = format_args!("{command:02X}"),
                    error = %source,
                    "3M 810: reply fits no known form; the attribute stays unknown"
                );
                Ok(Err(ReaderRefusal::Status {
                    code: ErrorCode::Ok.code(),
                    meaning: format!("unreadable reply to {name}: {source}"),
                }))
            }
            Err(error) => Err(error),
        }
    }

    /// Asks the reader's version (`11`): 4 bytes, the first `0A` for 3M readers.
    pub async fn version(&mut self) -> Result<TagOutcome<[u8; 4]>, DriverError> {
        match self.transact(&Request::Version).await? {
            Reply::Version(version) => Ok(Ok(version)),
            other => Ok(Err(unexpected(&other))),
        }
    }

    async fn get_afi(&mut self, uid: TagUid) -> Result<TagOutcome<u8>, DriverError> {
        match self.transact_attribute(&Request::GetAfi { uid }).await? {
            Ok(Reply::GetAfi { afi, .. }) => Ok(Ok(afi)),
            Ok(other) => Ok(Err(unexpected(&other))),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    async fn check_eas(&mut self, uid: TagUid) -> Result<TagOutcome<bool>, DriverError> {
        let reply = match self.transact_attribute(&Request::CheckEas { uid }).await? {
            Ok(reply) => reply,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let Some(on) = reply.eas_on() {
            // Either success form: UID + EAS byte, or UID only (read as EAS on).
            return Ok(Ok(on));
        }
        match reply {
            Reply::Refused {
                error: ErrorCode::NoTransponder,
                ..
            } => {
                // Error 06 means "EAS off" or "no tag" (§4.3); a tag that answers get AFI
                // is there, so its EAS is off.
                match self.get_afi(uid).await? {
                    Err(ReaderRefusal::NoTransponder) => Ok(Err(ReaderRefusal::NoTransponder)),
                    // Any other answer (even a refusal such as "not supported") came from
                    // the tag.
                    _ => Ok(Ok(false)),
                }
            }
            other => Ok(Err(unexpected(&other))),
        }
    }

    async fn read_range(
        &mut self,
        uid: TagUid,
        first: u8,
        count: u8,
    ) -> Result<TagOutcome<Vec<u8>>, DriverError> {
        let per_call = self.config.blocks_per_read.max(1);
        let mut memory = Vec::with_capacity(usize::from(count) * BLOCK_SIZE);
        let mut done: u8 = 0;
        while done < count {
            let n = per_call.min(count - done);
            let Some(at) = first.checked_add(done) else {
                return Ok(Err(ReaderRefusal::Status {
                    code: ErrorCode::MemoryNotAvailable.code(),
                    meaning: format!("blocks {first}+{count} pass block 255"),
                }));
            };
            let request = Request::ReadMultiblock {
                uid,
                first: at,
                count: n,
                options: None,
            };
            let blocks = match self.transact_attribute(&request).await? {
                Ok(Reply::ReadMultiblock { blocks, .. }) => blocks,
                Ok(other) => return Ok(Err(unexpected(&other))),
                Err(refusal) => return Ok(Err(refusal)),
            };
            if blocks.len() != usize::from(n) {
                return Ok(Err(ReaderRefusal::Status {
                    code: ErrorCode::MemoryNotAvailable.code(),
                    meaning: format!("asked for {n} blocks from {at}, got {}", blocks.len()),
                }));
            }
            for (i, block) in (at..).zip(&blocks) {
                if block.number != i {
                    return Ok(Err(ReaderRefusal::Status {
                        code: ErrorCode::ReadError.code(),
                        meaning: format!("block {i} came back as block {}", block.number),
                    }));
                }
                if let Some(lock) = block.lock.filter(|l| *l > 0x03) {
                    return Ok(Err(ReaderRefusal::Status {
                        code: lock,
                        meaning: format!("block {i}: {}", ErrorCode::from_code(lock).meaning()),
                    }));
                }
                memory.extend_from_slice(&block.data);
            }
            done += n;
        }
        Ok(Ok(memory))
    }

    async fn write_once(
        &mut self,
        uid: TagUid,
        value: &Value,
    ) -> Result<TagOutcome<()>, DriverError> {
        let request = match value {
            Value::Afi(afi) => Request::WriteAfi { uid, afi: *afi },
            Value::Eas(on) => Request::EasControl { uid, on: *on },
            Value::Blocks { first, data } => Request::WriteMultiblock {
                uid,
                first: *first,
                // `write_blocks` checked that the count fits a byte.
                count: u8::try_from(data.len() / BLOCK_SIZE).unwrap_or(u8::MAX),
                flags: 0x00,
                data: data.clone(),
            },
        };
        Ok(match (self.transact(&request).await?, value) {
            (Reply::WriteAfi { .. }, Value::Afi(_)) | (Reply::EasControl { .. }, Value::Eas(_)) => {
                Ok(())
            }
            (Reply::WriteMultiblock { next_block, .. }, Value::Blocks { first, data }) => {
                let end = usize::from(*first) + data.len() / BLOCK_SIZE;
                if usize::from(next_block) == end {
                    Ok(())
                } else {
                    Err(ReaderRefusal::Status {
                        code: ErrorCode::WriteError.code(),
                        meaning: format!("write stopped at block {next_block}, before {end}"),
                    })
                }
            }
            (other, _) => Err(unexpected(&other)),
        })
    }

    async fn read_value(
        &mut self,
        uid: TagUid,
        value: &Value,
    ) -> Result<TagOutcome<Value>, DriverError> {
        Ok(match value {
            Value::Afi(_) => self.get_afi(uid).await?.map(Value::Afi),
            Value::Eas(_) => self.check_eas(uid).await?.map(Value::Eas),
            Value::Blocks { first, data } => {
                let count = u8::try_from(data.len() / BLOCK_SIZE).unwrap_or(u8::MAX);
                self.read_range(uid, *first, count)
                    .await?
                    .map(|data| Value::Blocks {
                        first: *first,
                        data,
                    })
            }
        })
    }

    /// Write, read back, retry (§3.5). A final refusal (locked, not supported) ends it at
    /// once; a transient one or a mismatching read-back is retried up to `write_attempts`.
    async fn verified_write(
        &mut self,
        uid: TagUid,
        wanted: Value,
    ) -> Result<TagOutcome<WriteCheck<Value>>, DriverError> {
        let attempts = self.config.write_attempts.max(1);
        let mut read_back = None;
        let mut last_refusal = ReaderRefusal::NoTransponder;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.config.retry_pause.min(MAX_COMMAND_TIMEOUT)).await;
            }
            match self.write_once(uid, &wanted).await? {
                Ok(()) => {}
                Err(refusal) if is_transient(&refusal) => {
                    tracing::debug!(attempt, %refusal, "3M 810: write not done, retrying");
                    last_refusal = refusal;
                    continue;
                }
                Err(refusal) => return Ok(Err(refusal)),
            }
            match self.read_value(uid, &wanted).await? {
                Ok(value) if value == wanted => {
                    return Ok(Ok(WriteCheck {
                        wanted,
                        read_back: Some(value),
                        attempts: attempt,
                    }));
                }
                Ok(value) => {
                    tracing::debug!(attempt, ?value, "3M 810: read back differs, retrying");
                    read_back = Some(value);
                }
                Err(refusal) if is_transient(&refusal) => last_refusal = refusal,
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        if read_back.is_none() {
            return Ok(Err(last_refusal));
        }
        Ok(Ok(WriteCheck {
            wanted,
            read_back,
            attempts,
        }))
    }

    /// Writes the AFI and reads it back, retrying; returns what was finally read back.
    pub async fn write_afi_verified(
        &mut self,
        uid: &Uid,
        afi: u8,
    ) -> Result<TagOutcome<WriteCheck<u8>>, DriverError> {
        let uid = match tag_uid(uid) {
            Ok(uid) => uid,
            Err(refusal) => return Ok(Err(refusal)),
        };
        Ok(self
            .verified_write(uid, Value::Afi(afi))
            .await?
            .map(|check| WriteCheck {
                wanted: afi,
                read_back: match check.read_back {
                    Some(Value::Afi(v)) => Some(v),
                    _ => None,
                },
                attempts: check.attempts,
            }))
    }

    /// Sets or resets the NXP EAS bit and checks it, retrying; returns what was finally
    /// read back.
    pub async fn write_eas_verified(
        &mut self,
        uid: &Uid,
        on: bool,
    ) -> Result<TagOutcome<WriteCheck<bool>>, DriverError> {
        let uid = match tag_uid(uid) {
            Ok(uid) => uid,
            Err(refusal) => return Ok(Err(refusal)),
        };
        Ok(self
            .verified_write(uid, Value::Eas(on))
            .await?
            .map(|check| WriteCheck {
                wanted: on,
                read_back: match check.read_back {
                    Some(Value::Eas(v)) => Some(v),
                    _ => None,
                },
                attempts: check.attempts,
            }))
    }

    /// Writes whole 4-byte blocks from `first` and reads them back, retrying; returns what
    /// was finally read back.
    pub async fn write_blocks_verified(
        &mut self,
        uid: &Uid,
        first: u8,
        data: &[u8],
    ) -> Result<TagOutcome<WriteCheck<Vec<u8>>>, DriverError> {
        let uid = match tag_uid(uid) {
            Ok(uid) => uid,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let blocks = data.len() / BLOCK_SIZE;
        let fits = usize::from(first) + blocks <= usize::from(u8::MAX) + 1;
        if data.is_empty() || !data.len().is_multiple_of(BLOCK_SIZE) || blocks > 255 || !fits {
            return Ok(Err(ReaderRefusal::Status {
                code: ErrorCode::ParameterError.code(),
                meaning: format!(
                    "{} bytes from block {first} are not 1 to 255 whole {BLOCK_SIZE}-byte blocks",
                    data.len()
                ),
            }));
        }
        let wanted = Value::Blocks {
            first,
            data: data.to_vec(),
        };
        Ok(self
            .verified_write(uid, wanted)
            .await?
            .map(|check| WriteCheck {
                wanted: data.to_vec(),
                read_back: match check.read_back {
                    Some(Value::Blocks { data, .. }) => Some(data),
                    _ => None,
                },
                attempts: check.attempts,
            }))
    }
}

fn unexpected(reply: &Reply) -> ReaderRefusal {
    match reply {
        Reply::Refused { error, .. } => refusal(*error),
        other => ReaderRefusal::Status {
            code: other.error().code(),
            meaning: format!("unexpected reply {:?}", other.to_frame()),
        },
    }
}

/// A write that read back something else after every attempt, as a refusal.
fn unconfirmed<V: std::fmt::Debug + PartialEq>(check: &WriteCheck<V>) -> ReaderRefusal {
    ReaderRefusal::Status {
        code: ErrorCode::WriteError.code(),
        meaning: format!(
            "not confirmed after {} attempts: wrote {:?}, read back {:?}",
            check.attempts, check.wanted, check.read_back
        ),
    }
}

fn checked<V: std::fmt::Debug + PartialEq>(outcome: TagOutcome<WriteCheck<V>>) -> TagOutcome<()> {
    match outcome {
        Ok(check) if check.confirmed() => Ok(()),
        Ok(check) => Err(unconfirmed(&check)),
        Err(refusal) => Err(refusal),
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> HfReader for M3m810Reader<T> {
    async fn inventory(
        &mut self,
        afi: Option<u8>,
    ) -> Result<TagOutcome<Vec<InventoryEntry>>, DeviceError> {
        let request = Request::Inventory {
            afi: afi.unwrap_or(0x00),
            options: self.config.inventory_options,
            protocols: None,
        };
        Ok(match self.transact(&request).await? {
            Reply::Inventory { tags, .. } => Ok(tags
                .into_iter()
                .filter_map(|tag| {
                    tag.uid.map(|uid| InventoryEntry {
                        uid: Uid::new(uid),
                        dsfid: tag.dsfid,
                    })
                })
                .collect()),
            other => Err(unexpected(&other)),
        })
    }

    async fn read_blocks(
        &mut self,
        uid: &Uid,
        first: u8,
        count: u8,
    ) -> Result<TagOutcome<Vec<u8>>, DeviceError> {
        match tag_uid(uid) {
            Ok(uid) => Ok(self.read_range(uid, first, count).await?),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    async fn write_blocks(
        &mut self,
        uid: &Uid,
        first: u8,
        data: &[u8],
    ) -> Result<TagOutcome<()>, DeviceError> {
        Ok(checked(self.write_blocks_verified(uid, first, data).await?))
    }

    async fn read_afi(&mut self, uid: &Uid) -> Result<TagOutcome<u8>, DeviceError> {
        match tag_uid(uid) {
            Ok(uid) => Ok(self.get_afi(uid).await?),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    async fn write_afi(&mut self, uid: &Uid, afi: u8) -> Result<TagOutcome<()>, DeviceError> {
        Ok(checked(self.write_afi_verified(uid, afi).await?))
    }

    async fn read_eas(&mut self, uid: &Uid) -> Result<TagOutcome<bool>, DeviceError> {
        match tag_uid(uid) {
            Ok(uid) => Ok(self.check_eas(uid).await?),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    async fn write_eas(&mut self, uid: &Uid, on: bool) -> Result<TagOutcome<()>, DeviceError> {
        Ok(checked(self.write_eas_verified(uid, on).await?))
    }

    fn line_counters(&self) -> LineCounters {
        self.stats.snapshot()
    }
}
