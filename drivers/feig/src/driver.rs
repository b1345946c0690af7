//! [`FeigReader`]: the ISO-Host host side over any byte stream.
//!
//! One request at a time: send, wait for the reply to the same CMD (or time out). Before
//! each request the driver keeps the PSST silence (PROTOCOLS.md §4.2: at least 5 ms after
//! the last frame) with its own timer, because a pty or a USB-serial adapter does not
//! reproduce line timing (§6).
//!
//! Block byte order: blocks are returned and written exactly as ISO-Host carries them (MSB
//! first, so each 4-byte block is byte-reversed against tag memory); the tag decoder
//! undoes the reversal.

use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use rfidgw_driver::{
    DeviceError, DeviceEvent, HfReader, InputState, InventoryEntry, LineCounters, LineStats,
    OutputCommand, ReaderRefusal, Signal, TagOutcome, Uid,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::codec::{CodecError, FeigCodec};
use crate::frame::{
    Addressing, BROADCAST_ADDRESS, BlocksReply, FrameError, InventoryReply, MAX_READ_BYTES,
    NTFC_TIME_UNIT, NtfcTime, NxpCommand, OutputMode, Reply, Request, SetOutput, Status,
    SystemInfoReply, UidBytes, parse_inputs,
};

/// Bytes per block of the ISO 15693 library tags this driver reads (ICODE SLIX: 4).
pub const BLOCK_SIZE: u8 = 4;
/// Blocks per `B0 23`/`B0 24` call: 128 data bytes at most (PROTOCOLS.md §4.2).
const BLOCKS_PER_CALL: usize = MAX_READ_BYTES / BLOCK_SIZE as usize;
/// Upper bound on MORE rounds of one inventory, against a reader that always says `94`.
const MAX_MORE_ROUNDS: usize = 64;
/// The longest notification wait one NTFC_TIME byte can say (255 × 100 ms,
/// **\[unverified\]**: see [`NtfcTime`]); what [`HfReader::max_notify_wait`] reports.
pub const MAX_NOTIFY_WAIT: Duration = NTFC_TIME_UNIT.saturating_mul(255);

/// The timing rules the driver enforces with its own timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for a reply.
    pub reply_timeout: Duration,
    /// Silence kept after the last received frame before the next request (PSST, 0–5 ms).
    pub psst: Duration,
    /// Inter-character gap after which a partial frame is dropped; `None` on TCP and
    /// in-memory streams, where segments may legitimately be apart.
    pub inter_char_gap: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_secs(1),
            psst: Duration::from_millis(5),
            inter_char_gap: Some(crate::codec::INTER_CHARACTER_GAP),
        }
    }
}

/// What went wrong on the line (the reader's "no" is a [`ReaderRefusal`] instead).
#[derive(Debug, thiserror::Error)]
pub enum FeigError {
    /// The transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The transport ended (unplugged, connection closed).
    #[error("the reader's line closed")]
    Closed,
    /// No reply within the timeout.
    #[error("no reply to {request} within {timeout:?}")]
    Timeout {
        /// The request's name.
        request: String,
        /// The timeout.
        timeout: Duration,
    },
    /// A reply that does not fit its request.
    #[error("reply to {request}: {source}")]
    BadReply {
        /// The request's name.
        request: String,
        /// What is wrong with it.
        #[source]
        source: FrameError,
    },
    /// A reply whose content contradicts the request (e.g. fewer blocks than asked for).
    #[error("reply to {request}: {message}")]
    Inconsistent {
        /// The request's name.
        request: String,
        /// What does not match.
        message: String,
    },
}

impl From<CodecError> for FeigError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Io(e) => Self::Io(e),
        }
    }
}

impl From<FeigError> for DeviceError {
    fn from(error: FeigError) -> Self {
        match error {
            FeigError::Io(e) => DeviceError::Transport(e),
            FeigError::Closed => DeviceError::Transport(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the reader's line closed",
            )),
            FeigError::Timeout { timeout, .. } => DeviceError::Timeout(timeout),
            other @ (FeigError::BadReply { .. } | FeigError::Inconsistent { .. }) => {
                DeviceError::Protocol(other.to_string())
            }
        }
    }
}

/// A FEIG ISO-Host reader over the transport `T`.
pub struct FeigReader<T> {
    framed: Framed<T, FeigCodec>,
    address: u8,
    timing: Timing,
    stats: LineStats,
    last_rx: Option<Instant>,
    poll_inputs: bool,
}

impl<T> std::fmt::Debug for FeigReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeigReader")
            .field("address", &self.address)
            .field("timing", &self.timing)
            .field("counters", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// The refusal a non-OK status means.
fn refusal(reply: &Reply) -> ReaderRefusal {
    match reply.status {
        Status::NoTransponder => ReaderRefusal::NoTransponder,
        status => ReaderRefusal::Status {
            code: status.code(),
            meaning: reply.status_text(),
        },
    }
}

/// A refusal for a request this driver will not send (bad UID, block range).
fn parameter_refusal(message: String) -> ReaderRefusal {
    ReaderRefusal::Status {
        code: Status::ParameterRangeError.code(),
        meaning: message,
    }
}

fn uid_bytes(uid: &Uid) -> TagOutcome<UidBytes> {
    UidBytes::try_from(uid.as_bytes())
        .map_err(|_| parameter_refusal(format!("UID {uid} is not 8 bytes (ISO 15693)")))
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> FeigReader<T> {
    /// A reader at COM-ADR `address` (`FF` reaches any reader), counting into `stats`.
    pub fn new(transport: T, address: u8, timing: Timing, stats: LineStats) -> Self {
        let codec = FeigCodec::new(stats.clone()).with_inter_char_gap(timing.inter_char_gap);
        Self {
            framed: Framed::new(transport, codec),
            address,
            timing,
            stats,
            last_rx: None,
            poll_inputs: false,
        }
    }

    /// A reader at the broadcast address with default timing.
    pub fn with_defaults(transport: T) -> Self {
        Self::new(
            transport,
            BROADCAST_ADDRESS,
            Timing::default(),
            LineStats::new(),
        )
    }

    /// Also reads the digital inputs (`[74]`, light barriers) after each inventory of the
    /// read loop and reports changes as `DeviceEvent::Inputs`.
    #[must_use]
    pub fn with_input_polling(mut self, on: bool) -> Self {
        self.poll_inputs = on;
        self
    }

    /// The line counters shared with the codec.
    pub fn stats(&self) -> &LineStats {
        &self.stats
    }

    /// Sends one request and returns the reader's reply to it.
    pub async fn transact(&mut self, request: &Request) -> Result<Reply, FeigError> {
        self.transact_within(request, self.timing.reply_timeout)
            .await
    }

    /// Sends one request and waits up to `reply_timeout` for the reply (longer than the
    /// usual timeout for a notification inventory the reader holds).
    async fn transact_within(
        &mut self,
        request: &Request,
        reply_timeout: Duration,
    ) -> Result<Reply, FeigError> {
        // Replies that arrived after an earlier timeout would be taken for this request's.
        // (`now_or_never`: a zero timeout would wait for the next 1 ms timer tick.)
        while let Some(Some(stale)) = self.framed.next().now_or_never() {
            let stale = stale?;
            tracing::debug!(?stale, "FEIG: dropping a late reply");
        }
        // PSST: silence after the last reply. Only sleep when there is time left: a sleep
        // whose deadline has passed still waits for the timer's next 1 ms tick.
        if let Some(quiet_until) = self.last_rx.map(|last| last + self.timing.psst)
            && quiet_until > Instant::now()
        {
            tokio::time::sleep_until(quiet_until).await;
        }
        self.framed.send(request.to_raw(self.address)).await?;
        let deadline = Instant::now() + reply_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.framed.next()).await;
            let raw = match next {
                Err(_) => {
                    self.stats.timeout();
                    return Err(FeigError::Timeout {
                        request: request.name(),
                        timeout: reply_timeout,
                    });
                }
                Ok(None) => return Err(FeigError::Closed),
                Ok(Some(frame)) => frame?,
            };
            self.last_rx = Some(Instant::now());
            if raw.command != request.command() {
                tracing::debug!(?raw, "FEIG: reply to another command, ignored");
                continue;
            }
            return Reply::from_raw(&raw).map_err(|source| FeigError::BadReply {
                request: request.name(),
                source,
            });
        }
    }

    fn bad(request: &Request, source: FrameError) -> FeigError {
        FeigError::BadReply {
            request: request.name(),
            source,
        }
    }

    /// `[71]` set output: lamp, buzzer, relay.
    pub async fn set_output(&mut self, output: SetOutput) -> Result<TagOutcome<()>, FeigError> {
        let reply = self.transact(&Request::SetOutput(output)).await?;
        Ok(match reply.status {
            Status::Ok => Ok(()),
            _ => Err(refusal(&reply)),
        })
    }

    /// `[74]` get input: light barriers and their changes since the last call.
    pub async fn get_input(&mut self) -> Result<TagOutcome<InputState>, FeigError> {
        let request = Request::GetInput;
        let reply = self.transact(&request).await?;
        match reply.status {
            Status::Ok => Ok(Ok(parse_inputs(&reply).map_err(|e| Self::bad(&request, e))?)),
            _ => Ok(Err(refusal(&reply))),
        }
    }

    /// `[65]` software version, as the reader sends it.
    pub async fn software_version(&mut self) -> Result<TagOutcome<Vec<u8>>, FeigError> {
        let reply = self.transact(&Request::SoftwareVersion).await?;
        Ok(match reply.status {
            Status::Ok => Ok(reply.data),
            _ => Err(refusal(&reply)),
        })
    }

    /// `B0 01` inventory with MORE handling: while the reader answers `94`, the rest is
    /// fetched with the MORE bit.
    pub async fn inventory_items(
        &mut self,
        afi: Option<u8>,
    ) -> Result<TagOutcome<Vec<InventoryEntry>>, FeigError> {
        self.inventory_rounds(afi, None).await
    }

    /// `B0 01` inventory in notification mode (MODE NTFC): the reader holds the request
    /// until a tag is in the field, or answers `01` (no transponder) after `wait`. `wait`
    /// is rounded up to whole NTFC_TIME steps and capped at [`MAX_NOTIFY_WAIT`]; the reply
    /// timeout is the wait plus the usual reply timeout. The rest of a MORE sequence is
    /// fetched without NTFC: those tags are already known to be there.
    pub async fn notify_inventory_items(
        &mut self,
        afi: Option<u8>,
        wait: Duration,
    ) -> Result<TagOutcome<Vec<InventoryEntry>>, FeigError> {
        self.inventory_rounds(afi, Some(NtfcTime::at_least(wait)))
            .await
    }

    async fn inventory_rounds(
        &mut self,
        afi: Option<u8>,
        notify: Option<NtfcTime>,
    ) -> Result<TagOutcome<Vec<InventoryEntry>>, FeigError> {
        let mut entries = Vec::new();
        for round in 0..MAX_MORE_ROUNDS {
            let notify = notify.filter(|_| round == 0);
            let request = Request::Inventory {
                more: round > 0,
                afi,
                notify,
            };
            let timeout = match notify {
                // The reader answers within NTFC_TIME; the usual timeout covers the rest.
                Some(ntfc_time) => ntfc_time.wait() + self.timing.reply_timeout,
                None => self.timing.reply_timeout,
            };
            let reply = self.transact_within(&request, timeout).await?;
            match reply.status {
                Status::Ok | Status::MoreData => {
                    let parsed =
                        InventoryReply::parse(&reply).map_err(|e| Self::bad(&request, e))?;
                    entries.extend(parsed.items.iter().map(|item| InventoryEntry {
                        uid: Uid::new(item.uid.to_vec()),
                        dsfid: Some(item.dsfid),
                    }));
                    if reply.status == Status::Ok {
                        return Ok(Ok(entries));
                    }
                }
                Status::NoTransponder if entries.is_empty() => {
                    return Ok(Err(ReaderRefusal::NoTransponder));
                }
                // The rest of a MORE sequence was empty.
                Status::NoTransponder => return Ok(Ok(entries)),
                _ => return Ok(Err(refusal(&reply))),
            }
        }
        Err(FeigError::Inconsistent {
            request: "B0 01 inventory".into(),
            message: format!("still status 94 (more data) after {MAX_MORE_ROUNDS} rounds"),
        })
    }

    async fn read_blocks_raw(
        &mut self,
        uid: &Uid,
        first: u8,
        count: u8,
    ) -> Result<TagOutcome<Vec<u8>>, FeigError> {
        let uid = match uid_bytes(uid) {
            Ok(uid) => uid,
            Err(refused) => return Ok(Err(refused)),
        };
        if usize::from(first) + usize::from(count) > 256 {
            return Ok(Err(parameter_refusal(format!(
                "blocks {first}..{} are beyond block 255",
                usize::from(first) + usize::from(count)
            ))));
        }
        let mut data = Vec::with_capacity(usize::from(count) * usize::from(BLOCK_SIZE));
        let mut next = usize::from(first);
        let end = next + usize::from(count);
        while next < end {
            let n = (end - next).min(BLOCKS_PER_CALL);
            let request = Request::ReadMultipleBlocks {
                addressing: Addressing::Addressed(uid),
                first: next as u8,
                count: n as u8,
            };
            let reply = self.transact(&request).await?;
            if reply.status != Status::Ok {
                return Ok(Err(refusal(&reply)));
            }
            let blocks = BlocksReply::parse(&reply).map_err(|e| Self::bad(&request, e))?;
            if blocks.blocks.len() != n {
                return Err(FeigError::Inconsistent {
                    request: request.name(),
                    message: format!("{} blocks returned, {n} asked for", blocks.blocks.len()),
                });
            }
            data.extend(blocks.concat());
            next += n;
        }
        Ok(Ok(data))
    }

    async fn write_blocks_raw(
        &mut self,
        uid: &Uid,
        first: u8,
        data: &[u8],
    ) -> Result<TagOutcome<()>, FeigError> {
        let uid = match uid_bytes(uid) {
            Ok(uid) => uid,
            Err(refused) => return Ok(Err(refused)),
        };
        let size = usize::from(BLOCK_SIZE);
        if !data.len().is_multiple_of(size) || usize::from(first) + data.len() / size > 256 {
            return Ok(Err(parameter_refusal(format!(
                "{} bytes from block {first} are not whole 4-byte blocks within block 255",
                data.len()
            ))));
        }
        for (i, chunk) in data.chunks(BLOCKS_PER_CALL * size).enumerate() {
            let request = Request::WriteMultipleBlocks {
                addressing: Addressing::Addressed(uid),
                first: (usize::from(first) + i * BLOCKS_PER_CALL) as u8,
                block_size: BLOCK_SIZE,
                data: chunk.to_vec(),
            };
            let reply = self.transact(&request).await?;
            if reply.status != Status::Ok {
                return Ok(Err(refusal(&reply)));
            }
        }
        Ok(Ok(()))
    }

    /// `B0 2B` get system information of one tag.
    pub async fn system_info(
        &mut self,
        uid: &Uid,
    ) -> Result<TagOutcome<SystemInfoReply>, FeigError> {
        let uid = match uid_bytes(uid) {
            Ok(uid) => uid,
            Err(refused) => return Ok(Err(refused)),
        };
        let request = Request::GetSystemInfo {
            addressing: Addressing::Addressed(uid),
        };
        let reply = self.transact(&request).await?;
        if reply.status != Status::Ok {
            return Ok(Err(refusal(&reply)));
        }
        Ok(Ok(
            SystemInfoReply::parse(&reply).map_err(|e| Self::bad(&request, e))?
        ))
    }

    async fn simple(&mut self, request: Request) -> Result<TagOutcome<()>, FeigError> {
        let reply = self.transact(&request).await?;
        Ok(match reply.status {
            Status::Ok => Ok(()),
            _ => Err(refusal(&reply)),
        })
    }

    async fn nxp(&mut self, uid: &Uid, command: NxpCommand) -> Result<TagOutcome<()>, FeigError> {
        match uid_bytes(uid) {
            Ok(uid) => {
                self.simple(Request::Nxp {
                    command,
                    addressing: Addressing::Addressed(uid),
                })
                .await
            }
            Err(refused) => Ok(Err(refused)),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> HfReader for FeigReader<T> {
    async fn inventory(
        &mut self,
        afi: Option<u8>,
    ) -> Result<TagOutcome<Vec<InventoryEntry>>, DeviceError> {
        Ok(self.inventory_items(afi).await?)
    }

    async fn read_blocks(
        &mut self,
        uid: &Uid,
        first: u8,
        count: u8,
    ) -> Result<TagOutcome<Vec<u8>>, DeviceError> {
        Ok(self.read_blocks_raw(uid, first, count).await?)
    }

    async fn write_blocks(
        &mut self,
        uid: &Uid,
        first: u8,
        data: &[u8],
    ) -> Result<TagOutcome<()>, DeviceError> {
        Ok(self.write_blocks_raw(uid, first, data).await?)
    }

    async fn read_afi(&mut self, uid: &Uid) -> Result<TagOutcome<u8>, DeviceError> {
        Ok(self.system_info(uid).await?.map(|info| info.afi))
    }

    async fn write_afi(&mut self, uid: &Uid, afi: u8) -> Result<TagOutcome<()>, DeviceError> {
        let uid = match uid_bytes(uid) {
            Ok(uid) => uid,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(self
            .simple(Request::WriteAfi {
                addressing: Addressing::Addressed(uid),
                afi,
            })
            .await?)
    }

    /// NXP EAS alarm, addressed: only a tag with EAS set answers, so "no transponder" means
    /// EAS = 0 (PROTOCOLS.md §3.3).
    async fn read_eas(&mut self, uid: &Uid) -> Result<TagOutcome<bool>, DeviceError> {
        Ok(match self.nxp(uid, NxpCommand::EasAlarm).await? {
            Ok(()) => Ok(true),
            Err(ReaderRefusal::NoTransponder) => Ok(false),
            Err(refused) => Err(refused),
        })
    }

    async fn write_eas(&mut self, uid: &Uid, on: bool) -> Result<TagOutcome<()>, DeviceError> {
        let command = if on {
            NxpCommand::SetEas
        } else {
            NxpCommand::ResetEas
        };
        Ok(self.nxp(uid, command).await?)
    }

    fn line_counters(&self) -> LineCounters {
        self.stats.snapshot()
    }

    fn has_outputs(&self) -> bool {
        true
    }

    /// `[71]` Set Output: beeper and LEDs for `signal_for`, the relay for `relay_for`, in
    /// FEIG's 100 ms units (rounded up, so a short pulse is never lost as 0).
    async fn set_output(&mut self, output: &OutputCommand) -> Result<TagOutcome<()>, DeviceError> {
        Ok(self.set_output(feig_output(output)).await?)
    }

    fn max_notify_wait(&self) -> Option<Duration> {
        Some(MAX_NOTIFY_WAIT)
    }

    async fn notify_inventory(
        &mut self,
        afi: Option<u8>,
        wait: Duration,
    ) -> Result<TagOutcome<Vec<InventoryEntry>>, DeviceError> {
        Ok(self.notify_inventory_items(afi, wait).await?)
    }

    /// With `poll_inputs` on: `[74]` after each inventory, reported when an input changed.
    async fn poll_extras(&mut self) -> Result<Vec<DeviceEvent>, DeviceError> {
        if !self.poll_inputs {
            return Ok(Vec::new());
        }
        Ok(match self.get_input().await? {
            Ok(inputs) if inputs.changed != 0 => vec![DeviceEvent::Inputs(inputs)],
            Ok(_) => Vec::new(),
            Err(refusal) => {
                tracing::debug!(%refusal, "FEIG: get input refused");
                Vec::new()
            }
        })
    }
}

/// A driver-agnostic output command in `[71]` terms.
fn feig_output(output: &OutputCommand) -> SetOutput {
    let mode = |signal: Signal| match signal {
        Signal::Unchanged => OutputMode::Unchanged,
        Signal::On => OutputMode::On,
        Signal::Off => OutputMode::Off,
        Signal::Flash => OutputMode::Flash,
    };
    // 100 ms units, rounded up; FFFF means "permanent" on the reader, so stop below it.
    let units = |d: Option<Duration>| {
        d.map_or(0, |d| {
            u16::try_from(d.as_millis().div_ceil(100)).map_or(0xFFFE, |u| u.min(0xFFFE))
        })
    };
    SetOutput::new(
        mode(output.beeper),
        mode(output.red),
        mode(output.green),
        units(output.signal_for),
        units(output.relay_for),
    )
}
