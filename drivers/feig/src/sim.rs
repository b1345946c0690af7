//! A virtual FEIG ISO-Host reader with scriptable ISO 15693 tags, for tests and the demo.
//!
//! [`FeigSimulator::serve`] answers requests on any byte stream (the master end of a pty,
//! a TCP socket, one half of `tokio::io::duplex`). A cloneable [`SimHandle`] changes the
//! world while it runs: tags enter and leave the field, inputs change, and faults are
//! injected (garbage bytes before a reply, no reply, a corrupted CRC, unplug = the stream
//! is closed).
//!
//! A notification inventory (MODE NTFC) is held like a real reader holds it: answered as soon
//! as a matching tag is in the field, or with `01` (no transponder) after its NTFC_TIME.
//!
//! The tag model keeps memory in tag order; like a real reader, the simulator sends each
//! block MSB first (byte-reversed) and reverses written blocks back (PROTOCOLS.md §4.2).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use rfidgw_driver::{LineStats, Uid};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::codec::Framed;

use crate::codec::FeigCodec;
use crate::frame::{
    Addressing, Block, BlocksReply, InventoryItem, InventoryReply, MAX_READ_BYTES, NxpCommand,
    RawFrame, Reply, Request, SetOutput, Status, SystemInfoReply, TR_TYPE_ISO15693, UidBytes,
};

/// Bytes per block of the simulated tags (ICODE SLIX).
const BLOCK: usize = 4;
/// ISO 15693 error code "block not available" (PROTOCOLS.md §4.1).
const ISO_BLOCK_NOT_AVAILABLE: u8 = 0x10;

/// One virtual ISO 15693 tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualTag {
    /// UID, MSB first (`E004…`).
    pub uid: Uid,
    /// AFI.
    pub afi: u8,
    /// DSFID.
    pub dsfid: u8,
    /// NXP EAS bit.
    pub eas: bool,
    /// User memory in tag order (block 0 first), whole 4-byte blocks.
    pub memory: Vec<u8>,
    /// Whether the tag is in the reader's field.
    pub in_field: bool,
}

/// ICODE SLIX: 28 user blocks of 4 bytes (PROTOCOLS.md §4.1).
const SLIX_USER_BLOCKS: usize = 28;

impl VirtualTag {
    /// A tag in the field with AFI `07`, DSFID `00`, EAS off and 28 empty blocks.
    pub fn new(uid: Uid) -> Self {
        Self {
            uid,
            afi: 0x07,
            dsfid: 0,
            eas: false,
            memory: vec![0; SLIX_USER_BLOCKS * BLOCK],
            in_field: true,
        }
    }

    fn uid_bytes(&self) -> Option<UidBytes> {
        UidBytes::try_from(self.uid.as_bytes()).ok()
    }

    fn block_count(&self) -> usize {
        self.memory.len().div_ceil(BLOCK)
    }
}

/// A fault the simulator plays on the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send these bytes before the reply.
    Garbage(Vec<u8>),
    /// Do not answer (the host times out).
    NoReply,
    /// Send the reply with a broken CRC.
    CorruptCrc,
}

#[derive(Debug, Default)]
struct State {
    tags: Vec<VirtualTag>,
    faults: VecDeque<Fault>,
    outputs: Vec<SetOutput>,
    inputs: u8,
    changed: u8,
    requests: u64,
    /// Data sets per inventory reply before status 94 (more data); 0 = no limit.
    max_per_reply: usize,
    pending_more: Vec<InventoryItem>,
    /// When the latest reply was handed to the stream.
    last_reply: Option<tokio::time::Instant>,
}

/// A cloneable remote control of a running simulator.
#[derive(Clone, Debug, Default)]
pub struct SimHandle {
    state: Arc<Mutex<State>>,
    unplug: Arc<Notify>,
    /// Wakes a held notification inventory when tags enter or leave the field.
    field_changed: Arc<Notify>,
}

impl SimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a bug in this module; keep
        // serving the state as it was rather than poisoning every later call.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts a tag into the field (replacing one with the same UID).
    pub fn insert_tag(&self, mut tag: VirtualTag) {
        tag.in_field = true;
        let mut state = self.lock();
        state.tags.retain(|t| t.uid != tag.uid);
        state.tags.push(tag);
        drop(state);
        self.field_changed.notify_waiters();
    }

    /// Moves a tag out of the field (it keeps its state and can come back).
    pub fn remove_tag(&self, uid: &Uid) {
        self.set_in_field(uid, false);
    }

    /// Moves a known tag into or out of the field.
    pub fn set_in_field(&self, uid: &Uid, in_field: bool) {
        if let Some(tag) = self.lock().tags.iter_mut().find(|t| &t.uid == uid) {
            tag.in_field = in_field;
        }
        self.field_changed.notify_waiters();
    }

    /// Holds a notification inventory for tags with `afi` until one is in the field or
    /// `wait` passed (then the inventory answers `01`). `false` when unplugged meanwhile.
    async fn hold_until_present(&self, afi: Option<u8>, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a change right after it is not missed.
            let mut changed = std::pin::pin!(self.field_changed.notified());
            changed.as_mut().enable();
            if self.lock().tags.iter().any(|t| answers_inventory(t, afi)) {
                return true;
            }
            tokio::select! {
                () = self.unplug.notified() => {
                    // Keep the unplug for the serving loop, which closes the stream.
                    self.unplug.notify_one();
                    return false;
                }
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => return true,
            }
        }
    }

    /// The tag's current state.
    pub fn tag(&self, uid: &Uid) -> Option<VirtualTag> {
        self.lock().tags.iter().find(|t| &t.uid == uid).cloned()
    }

    /// Queues a fault for the next request.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Closes the stream now, like pulling the reader's cable.
    pub fn unplug(&self) {
        self.unplug.notify_one();
    }

    /// Sets the input levels (bits 0–2 = IN1–IN3); changed bits are tracked for `[74]`.
    pub fn set_inputs(&self, levels: u8) {
        let mut state = self.lock();
        state.changed |= (state.inputs ^ levels) & 0x07;
        state.inputs = levels & 0x07;
    }

    /// Every `[71]` set output received, oldest first.
    pub fn outputs(&self) -> Vec<SetOutput> {
        self.lock().outputs.clone()
    }

    /// Requests answered or swallowed so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// When the latest reply was handed to the stream (latency benchmarks).
    pub fn last_reply_at(&self) -> Option<tokio::time::Instant> {
        self.lock().last_reply
    }

    /// Limits the data sets per inventory reply, so the host must fetch the rest with MORE.
    pub fn set_max_per_reply(&self, max: usize) {
        self.lock().max_per_reply = max;
    }

    /// Plays a script: each tag enters the field at its `at` from the start of the round
    /// and leaves after its `stay` (or stays); with `repeat` the script starts again every
    /// `round` (as the 3M simulator's `SimPad::play`). The tags must be known to the
    /// simulator ([`FeigSimulator::with_handle`]); they keep their state (a written AFI)
    /// from one presence to the next, like a real book. Tags not in the script are left
    /// alone.
    pub async fn play(&self, script: &[ScriptedTag], round: Duration, repeat: bool) {
        let timeline: Vec<_> = script.iter().map(|s| (s.at, s.stay)).collect();
        rfidgw_driver::sim_script::play_timeline(&timeline, round, repeat, |index, entered| {
            self.set_in_field(&script[index].tag.uid, entered);
        })
        .await;
    }
}

/// One tag of a script: when it enters the field and how long it stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedTag {
    /// The tag, in its state at the start (`in_field` only if it enters at 0).
    pub tag: VirtualTag,
    /// When it enters, from the start of the round.
    pub at: Duration,
    /// How long it stays; `None` = it stays.
    pub stay: Option<Duration>,
}

/// How a serving session ended.
enum Ended {
    /// [`SimHandle::unplug`] was called.
    Unplugged,
    /// The host side closed the stream.
    Closed,
}

/// A virtual FEIG reader.
#[derive(Debug, Default)]
pub struct FeigSimulator {
    handle: SimHandle,
    address: u8,
}

/// Whether a tag answers an inventory for `afi`: it is in the field and its AFI matches.
fn answers_inventory(tag: &VirtualTag, afi: Option<u8>) -> bool {
    tag.in_field && afi.is_none_or(|a| afi_matches(a, tag.afi))
}

/// ISO 15693 AFI matching (PROTOCOLS.md §3.2).
fn afi_matches(request: u8, tag: u8) -> bool {
    match (request >> 4, request & 0x0F) {
        (0, 0) => true,
        (family, 0) => tag >> 4 == family,
        _ => tag == request,
    }
}

impl FeigSimulator {
    /// A simulator at COM-ADR `00` with these tags.
    pub fn new(tags: Vec<VirtualTag>) -> Self {
        Self::with_handle(SimHandle::default(), tags)
    }

    /// A simulator controlled by an existing handle, its field set to `tags`.
    pub fn with_handle(handle: SimHandle, tags: Vec<VirtualTag>) -> Self {
        handle.lock().tags = tags;
        Self { handle, address: 0 }
    }

    /// Its remote control.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// A simulator for the world an existing handle controls, as it is (re-plugging keeps
    /// the tags and their state).
    pub fn from_handle(handle: SimHandle) -> Self {
        Self { handle, address: 0 }
    }

    /// Serves the master end of a pty pair until unplugged; the driver opens the slave
    /// path. While no host has the slave open (before the first open, or after the host
    /// closed it) the master reads fail; the simulator waits, like a reader left plugged in.
    pub async fn serve_pty(self, pty: rfidgw_driver::transport::PtyPair) -> std::io::Result<()> {
        let mut master = pty.into_master();
        loop {
            if let Ok(Ended::Unplugged) = self.serve_on(&mut master).await {
                return Ok(());
            }
            tokio::select! {
                () = self.handle.unplug.notified() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// Spawns the simulator on one end of an in-memory stream and returns the other end.
    pub fn spawn_duplex(self) -> tokio::io::DuplexStream {
        let (host, reader) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let _ = self.serve(reader).await;
        });
        host
    }

    /// Answers requests on `io` until the host closes it, an I/O error, or [`SimHandle::unplug`].
    pub async fn serve<T: AsyncRead + AsyncWrite + Unpin>(self, mut io: T) -> std::io::Result<()> {
        self.serve_on(&mut io).await.map(drop)
    }

    async fn serve_on<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut T,
    ) -> std::io::Result<Ended> {
        let mut framed = Framed::new(io, FeigCodec::new(LineStats::new()));
        loop {
            let next = tokio::select! {
                () = self.handle.unplug.notified() => {
                    let _ = framed.get_mut().shutdown().await;
                    return Ok(Ended::Unplugged);
                }
                next = framed.next() => next,
            };
            let raw = match next {
                None => return Ok(Ended::Closed),
                Some(Err(crate::codec::CodecError::Io(e))) => return Err(e),
                Some(Ok(raw)) => raw,
            };
            if raw.address != self.address && raw.address != crate::frame::BROADCAST_ADDRESS {
                continue;
            }
            // NTFC: hold the inventory until a matching tag is there or NTFC_TIME passed.
            if let Ok(Request::Inventory {
                more: false,
                afi,
                notify: Some(ntfc_time),
            }) = Request::from_raw(&raw)
                && !self.handle.hold_until_present(afi, ntfc_time.wait()).await
            {
                continue;
            }
            let (fault, reply) = {
                let mut state = self.handle.lock();
                state.requests += 1;
                let fault = state.faults.pop_front();
                (fault, self.answer(&mut state, &raw))
            };
            let mut bytes = reply.to_raw().to_bytes();
            match fault {
                Some(Fault::NoReply) => continue,
                Some(Fault::Garbage(garbage)) => {
                    framed.get_mut().write_all(&garbage).await?;
                }
                Some(Fault::CorruptCrc) => {
                    if let Some(last) = bytes.last_mut() {
                        *last ^= 0xFF;
                    }
                }
                None => {}
            }
            // Stamped just before the write: the host cannot have the reply any earlier.
            self.handle.lock().last_reply = Some(tokio::time::Instant::now());
            framed.get_mut().write_all(&bytes).await?;
            framed.get_mut().flush().await?;
        }
    }

    fn reply(&self, raw: &RawFrame, status: Status, data: Vec<u8>) -> Reply {
        Reply {
            address: self.address,
            command: raw.command,
            status,
            data,
            data_offset: 4,
        }
    }

    fn answer(&self, state: &mut State, raw: &RawFrame) -> Reply {
        let Ok(request) = Request::from_raw(raw) else {
            return self.reply(raw, Status::LengthError, Vec::new());
        };
        let ok = |data: Vec<u8>| self.reply(raw, Status::Ok, data);
        let status = |status: Status| self.reply(raw, status, Vec::new());
        match request {
            Request::BaudDetect | Request::CpuReset | Request::RfReset => ok(Vec::new()),
            Request::SoftwareVersion => ok(vec![0x03, 0x01, 0x00, 0x00, 0x00, 0x78]),
            Request::SetOutput(output) => {
                state.outputs.push(output);
                ok(Vec::new())
            }
            Request::GetInput => {
                let inputs = state.inputs | state.changed << 4;
                state.changed = 0;
                ok(vec![inputs])
            }
            Request::Inventory { more, afi, .. } => self.inventory(state, raw, more, afi),
            Request::ReadMultipleBlocks {
                addressing,
                first,
                count,
            } => self.read_blocks(state, raw, addressing, first, count),
            Request::WriteMultipleBlocks {
                addressing,
                first,
                block_size,
                data,
            } => self.write_blocks(state, raw, addressing, first, block_size, &data),
            Request::WriteAfi { addressing, afi } => match find(state, addressing) {
                Some(tag) => {
                    tag.afi = afi;
                    ok(Vec::new())
                }
                None => status(Status::NoTransponder),
            },
            Request::GetSystemInfo { addressing } => match find(state, addressing) {
                Some(tag) => {
                    let blocks = tag.block_count().clamp(1, 256) - 1;
                    ok(SystemInfoReply {
                        dsfid: tag.dsfid,
                        uid: tag.uid_bytes().unwrap_or_default(),
                        afi: tag.afi,
                        mem_size: ((BLOCK as u16 - 1) << 8) | blocks as u16,
                        ic_ref: 0x01,
                    }
                    .to_data())
                }
                None => status(Status::NoTransponder),
            },
            Request::Nxp {
                command,
                addressing,
            } => self.nxp(state, raw, command, addressing),
            Request::Other { .. } => status(Status::UnknownCommand),
        }
    }

    fn inventory(&self, state: &mut State, raw: &RawFrame, more: bool, afi: Option<u8>) -> Reply {
        let status = |status: Status| self.reply(raw, status, Vec::new());
        if !more {
            state.pending_more = state
                .tags
                .iter()
                .filter(|t| answers_inventory(t, afi))
                .filter_map(|t| {
                    Some(InventoryItem {
                        tr_type: TR_TYPE_ISO15693,
                        dsfid: t.dsfid,
                        uid: t.uid_bytes()?,
                    })
                })
                .collect();
            if state.pending_more.is_empty() {
                return status(Status::NoTransponder);
            }
        }
        let take = match state.max_per_reply {
            0 => state.pending_more.len(),
            max => max.min(state.pending_more.len()),
        };
        let items: Vec<InventoryItem> = state.pending_more.drain(..take).collect();
        let reply_status = if state.pending_more.is_empty() {
            Status::Ok
        } else {
            Status::MoreData
        };
        if items.is_empty() {
            return status(Status::NoTransponder);
        }
        self.reply(raw, reply_status, InventoryReply { items }.to_data())
    }

    fn read_blocks(
        &self,
        state: &mut State,
        raw: &RawFrame,
        addressing: Addressing,
        first: u8,
        count: u8,
    ) -> Reply {
        let ok = |data: Vec<u8>| self.reply(raw, Status::Ok, data);
        let status = |status: Status| self.reply(raw, status, Vec::new());
        let Some(tag) = find(state, addressing) else {
            return status(Status::NoTransponder);
        };
        let count = usize::from(count);
        if count == 0 || count * BLOCK > MAX_READ_BYTES {
            return status(Status::ParameterRangeError);
        }
        let first = usize::from(first);
        if first + count > tag.block_count() {
            return self.reply(raw, Status::Iso15693Error, vec![ISO_BLOCK_NOT_AVAILABLE]);
        }
        let blocks = (first..first + count)
            .map(|n| {
                let mut data = tag
                    .memory
                    .get(n * BLOCK..(n + 1) * BLOCK)
                    .unwrap_or_default()
                    .to_vec();
                data.resize(BLOCK, 0);
                // ISO-Host sends block data MSB first: reversed against tag memory.
                data.reverse();
                Block { security: 0, data }
            })
            .collect();
        ok(BlocksReply {
            block_size: BLOCK as u8,
            blocks,
        }
        .to_data())
    }

    fn write_blocks(
        &self,
        state: &mut State,
        raw: &RawFrame,
        addressing: Addressing,
        first: u8,
        block_size: u8,
        data: &[u8],
    ) -> Reply {
        let ok = |data: Vec<u8>| self.reply(raw, Status::Ok, data);
        let status = |status: Status| self.reply(raw, status, Vec::new());
        let Some(tag) = find(state, addressing) else {
            return status(Status::NoTransponder);
        };
        if usize::from(block_size) != BLOCK {
            return status(Status::ParameterRangeError);
        }
        let first = usize::from(first);
        let count = data.len() / BLOCK;
        if first + count > tag.block_count() {
            // [unverified] order of the ISO error code and the failing block number.
            let failing = tag.block_count().min(255) as u8;
            return self.reply(
                raw,
                Status::Iso15693Error,
                vec![ISO_BLOCK_NOT_AVAILABLE, failing],
            );
        }
        for (n, block) in data.chunks(BLOCK).enumerate() {
            let start = (first + n) * BLOCK;
            if let Some(target) = tag.memory.get_mut(start..start + BLOCK) {
                target.copy_from_slice(block);
                target.reverse();
            }
        }
        ok(Vec::new())
    }

    fn nxp(
        &self,
        state: &mut State,
        raw: &RawFrame,
        command: NxpCommand,
        addressing: Addressing,
    ) -> Reply {
        let ok = |data: Vec<u8>| self.reply(raw, Status::Ok, data);
        let status = |status: Status| self.reply(raw, status, Vec::new());
        if command == NxpCommand::EasAlarm && addressing == Addressing::NonAddressed {
            let any = state.tags.iter().any(|t| t.in_field && t.eas);
            return status(if any {
                Status::Ok
            } else {
                Status::NoTransponder
            });
        }
        let Some(tag) = find(state, addressing) else {
            return status(Status::NoTransponder);
        };
        match command {
            NxpCommand::SetEas => tag.eas = true,
            NxpCommand::ResetEas => tag.eas = false,
            // Only a tag whose EAS bit is set answers the alarm (PROTOCOLS.md §3.3).
            NxpCommand::EasAlarm if !tag.eas => return status(Status::NoTransponder),
            NxpCommand::LockEas | NxpCommand::EasAlarm => {}
        }
        ok(Vec::new())
    }
}

/// The tag a request addresses, if it is in the field.
fn find(state: &mut State, addressing: Addressing) -> Option<&mut VirtualTag> {
    match addressing {
        Addressing::Addressed(uid) => state
            .tags
            .iter_mut()
            .find(|t| t.in_field && t.uid.as_bytes() == uid),
        Addressing::NonAddressed => state.tags.iter_mut().find(|t| t.in_field),
        Addressing::Selected => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripted(uid: &str, at_ms: u64, stay_ms: Option<u64>) -> ScriptedTag {
        let mut tag = VirtualTag::new(Uid::from_hex(uid).unwrap());
        tag.in_field = at_ms == 0;
        ScriptedTag {
            tag,
            at: Duration::from_millis(at_ms),
            stay: stay_ms.map(Duration::from_millis),
        }
    }

    fn in_field(handle: &SimHandle, uid: &str) -> bool {
        handle
            .tag(&Uid::from_hex(uid).unwrap())
            .is_some_and(|t| t.in_field)
    }

    #[tokio::test(start_paused = true)]
    async fn a_script_plays_once_or_again_every_round() {
        const BOOK: &str = "E004010031269117";
        const SHELF: &str = "E004010031269118";
        let script = [scripted(BOOK, 1000, Some(800)), scripted(SHELF, 0, None)];
        for repeat in [false, true] {
            let handle = SimHandle::default();
            let _sim = FeigSimulator::with_handle(
                handle.clone(),
                script.iter().map(|s| s.tag.clone()).collect(),
            );
            let player = handle.clone();
            let script = script.clone();
            let play = tokio::spawn(async move {
                player.play(&script, Duration::from_secs(6), repeat).await;
            });
            let start = tokio::time::Instant::now();
            let mut seen = Vec::new();
            for at_ms in [500, 1500, 2500, 7500, 8500] {
                tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
                seen.push(in_field(&handle, BOOK));
                assert!(
                    in_field(&handle, SHELF),
                    "a tag at 0 ms without a stay stays"
                );
            }
            let again = if repeat {
                [true, false]
            } else {
                [false, false]
            };
            assert_eq!(
                seen,
                [false, true, false, again[0], again[1]],
                "repeat {repeat}"
            );
            if repeat {
                play.abort();
            } else {
                play.await.unwrap();
            }
        }
    }

    #[test]
    fn afi_matching_follows_iso_15693_families() {
        let cases = [
            (0x00, 0x07, true),
            (0x00, 0xC2, true),
            (0xC0, 0xC2, true),
            (0xC0, 0x07, false),
            (0x07, 0x07, true),
            (0x07, 0xC2, false),
            (0xC2, 0xC2, true),
            (0xC2, 0xC3, false),
        ];
        for (request, tag, want) in cases {
            assert_eq!(
                afi_matches(request, tag),
                want,
                "{request:02X} vs {tag:02X}"
            );
        }
    }
}
