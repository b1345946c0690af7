//! A virtual 3M 810 pad: scriptable ISO 15693 tags in its field, answering the commands of
//! [`crate::frame`] the way the Model 210 spec describes, with faults on request.
//!
//! [`SimPad`] is a cheap, cloneable handle on the pad's state. A test (or the demo) puts
//! tags in the field and takes them out, asks for faults, and serves the pad on any byte
//! stream with [`SimPad::serve`]: the master side of a pty pair, a TCP connection on
//! 127.0.0.1, or one end of `tokio::io::duplex` ([`SimPad::spawn_duplex`]).
//!
//! Faults: garbage bytes before the next reply, no answer to the next N requests, a
//! transient `06` on the next N writes (the write is not done), N writes answered OK but not
//! done (only a read-back shows it), and unplug (the stream is closed).
//!
//! Firmware variants are settings, not faults: [`CheckEasForm`] picks which of the two
//! check EAS success replies the pad sends ([`SimPad::set_check_eas_form`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::codec::{CodecError, M3m810Codec};
use crate::frame::{
    BLOCK_SIZE, BlockRead, ErrorCode, InventoryTag, ReadStyle, Reply, Request, TagUid,
    inventory_options,
};

/// The version the virtual pad reports (`0A` = a 3M reader, §4.3).
pub const SIM_VERSION: [u8; 4] = [0x0A, 0x05, 0x00, 0x02];

/// A virtual ISO 15693 tag (ICODE SLIX-like: 4-byte blocks, AFI, DSFID, NXP EAS bit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualTag {
    /// UID, MSB first.
    pub uid: TagUid,
    /// Application family identifier.
    pub afi: u8,
    /// Data storage format identifier.
    pub dsfid: u8,
    /// The NXP EAS bit.
    pub eas: bool,
    /// User memory, block 0 first; its length is a multiple of 4.
    pub memory: Vec<u8>,
    /// Whether the AFI is locked (write AFI answers `12`).
    pub afi_locked: bool,
}

impl VirtualTag {
    /// A tag with 28 zeroed user blocks (ICODE SLIX, §4.1), AFI `00`, DSFID `00`, EAS off.
    pub fn new(uid: TagUid) -> Self {
        Self {
            uid,
            afi: 0x00,
            dsfid: 0x00,
            eas: false,
            memory: vec![0; 28 * BLOCK_SIZE],
            afi_locked: false,
        }
    }

    fn blocks(&self) -> usize {
        self.memory.len() / BLOCK_SIZE
    }
}

/// Faults the pad produces on request; each counts down as it is used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Bytes sent before the next reply.
    pub garbage_before_next_reply: Vec<u8>,
    /// Requests left unanswered (the host times out).
    pub unanswered: u32,
    /// Writes (write AFI, EAS control, write multiblock) refused with a transient `06`.
    pub transient_write_errors: u32,
    /// Writes answered OK but not done.
    pub silent_write_failures: u32,
}

/// The form of a successful check EAS (`03`) reply; 3M firmware differs here (§4.3).
/// An EAS-off tag gets error `06` in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CheckEasForm {
    /// UID and an EAS byte `01`, as the spec's table lists.
    #[default]
    UidAndEas,
    /// The UID alone, no EAS byte (the firmware of issue 8's field report).
    UidOnly,
}

#[derive(Debug, Default)]
struct PadState {
    field: Vec<VirtualTag>,
    check_eas_form: CheckEasForm,
    faults: Faults,
    requests: u64,
    writes_refused: u64,
    last_reply_at: Option<std::time::Instant>,
}

/// A virtual 3M pad. Clones share the same field and faults.
#[derive(Clone, Debug)]
pub struct SimPad {
    state: Arc<Mutex<PadState>>,
    unplug: Arc<watch::Sender<u64>>,
}

impl Default for SimPad {
    fn default() -> Self {
        Self::new()
    }
}

/// AFI matching of an ISO 15693 inventory (PROTOCOLS.md §3.2): `00` all, `X0` family X,
/// `XY` exactly XY, `0Y` proprietary sub-family Y only.
pub fn afi_matches(requested: u8, tag: u8) -> bool {
    let (family, sub) = (requested >> 4, requested & 0x0F);
    match (family, sub) {
        (0, 0) => true,
        (_, 0) => tag >> 4 == family,
        _ => tag == requested,
    }
}

impl SimPad {
    /// A pad with an empty field and no faults.
    pub fn new() -> Self {
        let (unplug, _) = watch::channel(0);
        Self {
            state: Arc::new(Mutex::new(PadState::default())),
            unplug: Arc::new(unplug),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PadState> {
        // The state stays consistent across a panic in a test thread; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a tag in the field (replacing one with the same UID).
    pub fn place(&self, tag: VirtualTag) {
        let mut state = self.lock();
        state.field.retain(|t| t.uid != tag.uid);
        state.field.push(tag);
    }

    /// Takes a tag out of the field, returning it as it is now.
    pub fn remove(&self, uid: &TagUid) -> Option<VirtualTag> {
        let mut state = self.lock();
        let at = state.field.iter().position(|t| &t.uid == uid)?;
        Some(state.field.remove(at))
    }

    /// A tag in the field as it is now.
    pub fn tag(&self, uid: &TagUid) -> Option<VirtualTag> {
        self.lock().field.iter().find(|t| &t.uid == uid).cloned()
    }

    /// The UIDs in the field.
    pub fn uids(&self) -> Vec<TagUid> {
        self.lock().field.iter().map(|t| t.uid).collect()
    }

    /// Sends `bytes` before the next reply.
    pub fn inject_garbage(&self, bytes: &[u8]) {
        self.lock()
            .faults
            .garbage_before_next_reply
            .extend_from_slice(bytes);
    }

    /// Leaves the next `n` requests unanswered.
    pub fn leave_unanswered(&self, n: u32) {
        self.lock().faults.unanswered += n;
    }

    /// Refuses the next `n` writes with a transient `06` (not done).
    pub fn fail_next_writes(&self, n: u32) {
        self.lock().faults.transient_write_errors += n;
    }

    /// Answers the next `n` writes OK without doing them.
    pub fn drop_next_writes_silently(&self, n: u32) {
        self.lock().faults.silent_write_failures += n;
    }

    /// Answers check EAS for a secured tag in `form` from now on (a firmware variant, so
    /// it stays until changed).
    pub fn set_check_eas_form(&self, form: CheckEasForm) {
        self.lock().check_eas_form = form;
    }

    /// The form of check EAS success replies the pad sends.
    pub fn check_eas_form(&self) -> CheckEasForm {
        self.lock().check_eas_form
    }

    /// The faults still pending.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Requests answered or ignored so far.
    pub fn requests_seen(&self) -> u64 {
        self.lock().requests
    }

    /// Writes refused by the transient-`06` fault so far.
    pub fn writes_refused(&self) -> u64 {
        self.lock().writes_refused
    }

    /// When the last byte of the latest reply was handed to the stream (for latency
    /// benchmarks: reply sent → event on the bus).
    pub fn last_reply_at(&self) -> Option<std::time::Instant> {
        self.lock().last_reply_at
    }

    /// Closes every stream the pad serves now, as if its USB cable was pulled.
    pub fn unplug(&self) {
        self.unplug
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// The reply to one request, changing the virtual tags as the reader would.
    pub fn answer(&self, request: &Request) -> Reply {
        let mut state = self.lock();
        state.requests += 1;
        answer(&mut state, request)
    }

    /// Serves the pad on `stream` until the host closes it, the pad is unplugged, or the
    /// line fails. Requests that do not parse get error `32` (parameter error).
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<(), CodecError> {
        let mut unplugged = self.unplug.subscribe();
        unplugged.mark_unchanged();
        let mut framed = Framed::new(stream, M3m810Codec::default());
        loop {
            let frame = tokio::select! {
                // An unplug wins over a request that arrived at the same time.
                biased;
                _ = unplugged.changed() => return Ok(()),
                next = framed.next() => match next {
                    None => return Ok(()),
                    Some(frame) => frame?,
                },
            };
            let (reply, garbage, silent) = {
                let mut state = self.lock();
                state.requests += 1;
                let reply = match Request::parse(&frame) {
                    Ok(request) => answer(&mut state, &request),
                    Err(error) => {
                        tracing::debug!(%error, "3M sim: request does not parse");
                        Reply::Refused {
                            command: frame.command,
                            error: ErrorCode::ParameterError,
                            detail: Vec::new(),
                        }
                    }
                };
                let silent = state.faults.unanswered > 0;
                if silent {
                    state.faults.unanswered -= 1;
                }
                (
                    reply,
                    std::mem::take(&mut state.faults.garbage_before_next_reply),
                    silent,
                )
            };
            if silent {
                continue;
            }
            if !garbage.is_empty() {
                // Framed flushed the previous reply, so raw bytes land between frames.
                framed
                    .get_mut()
                    .write_all(&garbage)
                    .await
                    .map_err(CodecError::Io)?;
            }
            framed.send(reply.to_frame()).await?;
            self.lock().last_reply_at = Some(std::time::Instant::now());
        }
    }

    /// Serves the pad on an in-memory stream and returns the host's end.
    pub fn spawn_duplex(&self) -> DuplexStream {
        let (host, pad) = tokio::io::duplex(8 * 1024);
        let sim = self.clone();
        tokio::spawn(async move {
            if let Err(error) = sim.serve(pad).await {
                tracing::debug!(%error, "3M sim: stream ended");
            }
        });
        host
    }

    /// Serves the pad on the master side of a new pseudo-terminal pair and returns the
    /// slave's path, which a driver opens like any serial port (PROTOCOLS.md §6). The pty
    /// closes when the pad is unplugged or the host's side hangs up.
    #[cfg(unix)]
    pub fn serve_on_pty(&self) -> std::io::Result<std::path::PathBuf> {
        use tokio_serial::SerialPort;
        let (master, slave) = tokio_serial::SerialStream::pair().map_err(std::io::Error::from)?;
        let path = slave
            .name()
            .ok_or_else(|| std::io::Error::other("the pty slave has no path"))?;
        let sim = self.clone();
        tokio::spawn(async move {
            // The original slave stays open while the pad runs, so the master does not see
            // a hang-up between two opens of the path by the driver.
            let _slave = slave;
            if let Err(error) = sim.serve(master).await {
                tracing::debug!(%error, "3M sim: pty ended");
            }
        });
        Ok(path.into())
    }

    /// Plays `script` (tags entering and leaving the field) once or forever. Runs on
    /// `tokio::time`, so tests drive it with paused time.
    pub async fn play(&self, script: &[ScriptedTag], round: Duration, repeat: bool) {
        let timeline: Vec<_> = script.iter().map(|s| (s.at, s.stay)).collect();
        rfidgw_driver::sim_script::play_timeline(&timeline, round, repeat, |index, entered| {
            let tag = &script[index].tag;
            if entered {
                self.place(tag.clone());
            } else {
                self.remove(&tag.uid);
            }
        })
        .await;
    }
}

/// One tag of a script: when it enters the field and how long it stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedTag {
    /// The tag.
    pub tag: VirtualTag,
    /// When it enters, from the start of the round.
    pub at: Duration,
    /// How long it stays; `None` = it stays.
    pub stay: Option<Duration>,
}

fn refused(request: &Request, error: ErrorCode) -> Reply {
    let detail = match request {
        Request::ReadMultiblock { uid, .. }
        | Request::WriteMultiblock { uid, .. }
        | Request::GetAfi { uid }
        | Request::WriteAfi { uid, .. }
        | Request::CheckEas { uid }
        | Request::EasControl { uid, .. } => uid.to_vec(),
        _ => Vec::new(),
    };
    Reply::Refused {
        command: request.command(),
        error,
        detail,
    }
}

/// Whether this write is eaten by a fault: `Some(reply)` to send instead of doing it.
fn write_fault(state: &mut PadState, request: &Request, ok: Reply) -> Option<Reply> {
    if state.faults.transient_write_errors > 0 {
        state.faults.transient_write_errors -= 1;
        state.writes_refused += 1;
        return Some(refused(request, ErrorCode::NoTransponder));
    }
    if state.faults.silent_write_failures > 0 {
        state.faults.silent_write_failures -= 1;
        return Some(ok);
    }
    None
}

#[allow(clippy::too_many_lines)] // one arm per command of the spec's table reads best as one match
fn answer(state: &mut PadState, request: &Request) -> Reply {
    let uid_of = |request: &Request| match request {
        Request::ReadMultiblock { uid, .. }
        | Request::WriteMultiblock { uid, .. }
        | Request::GetAfi { uid }
        | Request::WriteAfi { uid, .. }
        | Request::CheckEas { uid }
        | Request::EasControl { uid, .. } => Some(*uid),
        _ => None,
    };
    let addressed = uid_of(request);
    let tag_at = addressed.and_then(|uid| state.field.iter().position(|t| t.uid == uid));
    if addressed.is_some() && tag_at.is_none() {
        return refused(request, ErrorCode::NoTransponder);
    }
    match request {
        Request::Inventory { afi, options, .. } => {
            let tags = state
                .field
                .iter()
                .filter(|t| afi_matches(*afi, t.afi))
                .take(usize::from(u8::MAX))
                .map(|t| InventoryTag {
                    dsfid: (options & inventory_options::RETURN_DSFID != 0).then_some(t.dsfid),
                    uid: (options & inventory_options::RETURN_UID != 0).then_some(t.uid),
                })
                .collect();
            Reply::Inventory {
                afi: *afi,
                options: *options,
                tags,
            }
        }
        Request::Version => Reply::Version(SIM_VERSION),
        Request::ReadMultiblock {
            uid,
            first,
            count,
            options,
        } => {
            let Some(tag) = tag_at.and_then(|i| state.field.get(i)) else {
                return refused(request, ErrorCode::NoTransponder);
            };
            let start = usize::from(*first);
            let end = start + usize::from(*count);
            if end > tag.blocks() {
                return refused(request, ErrorCode::MemoryNotAvailable);
            }
            let blocks: Vec<BlockRead> = (*first..)
                .zip(start..end)
                .map(|(number, i)| BlockRead {
                    number,
                    lock: Some(0x00),
                    data: tag
                        .memory
                        .get(i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE)
                        .unwrap_or_default()
                        .to_vec(),
                })
                .collect();
            let style = ReadStyle::from_options(*options);
            let blocks = match style {
                ReadStyle::New { lock_byte: false } => blocks
                    .into_iter()
                    .map(|b: BlockRead| BlockRead { lock: None, ..b })
                    .collect(),
                _ => blocks,
            };
            Reply::ReadMultiblock {
                uid: *uid,
                style,
                blocks,
            }
        }
        Request::WriteMultiblock {
            uid,
            first,
            count,
            data,
            ..
        } => {
            let start = usize::from(*first);
            let end = start + usize::from(*count);
            if data.len() != usize::from(*count) * BLOCK_SIZE {
                return refused(request, ErrorCode::ParameterError);
            }
            let Some(blocks) = tag_at
                .and_then(|i| state.field.get(i))
                .map(VirtualTag::blocks)
            else {
                return refused(request, ErrorCode::NoTransponder);
            };
            if end > blocks {
                return refused(request, ErrorCode::MemoryNotAvailable);
            }
            let ok = Reply::WriteMultiblock {
                uid: *uid,
                // `end` ≤ the tag's block count, which a virtual tag keeps within a byte.
                next_block: u8::try_from(end).unwrap_or(u8::MAX),
            };
            if let Some(reply) = write_fault(state, request, ok.clone()) {
                return reply;
            }
            if let Some(slot) = tag_at
                .and_then(|i| state.field.get_mut(i))
                .and_then(|t| t.memory.get_mut(start * BLOCK_SIZE..end * BLOCK_SIZE))
            {
                slot.copy_from_slice(data);
            }
            ok
        }
        Request::GetAfi { uid } => match tag_at.and_then(|i| state.field.get(i)) {
            Some(tag) => Reply::GetAfi {
                uid: *uid,
                afi: tag.afi,
            },
            None => refused(request, ErrorCode::NoTransponder),
        },
        Request::WriteAfi { uid, afi } => {
            if tag_at
                .and_then(|i| state.field.get(i))
                .is_some_and(|t| t.afi_locked)
            {
                return refused(request, ErrorCode::Locked);
            }
            let ok = Reply::WriteAfi { uid: *uid };
            if let Some(reply) = write_fault(state, request, ok.clone()) {
                return reply;
            }
            if let Some(tag) = tag_at.and_then(|i| state.field.get_mut(i)) {
                tag.afi = *afi;
            }
            ok
        }
        Request::CheckEas { uid } => match tag_at.and_then(|i| state.field.get(i)) {
            Some(tag) if tag.eas => Reply::CheckEas {
                uid: *uid,
                eas: match state.check_eas_form {
                    CheckEasForm::UidAndEas => Some(0x01),
                    CheckEasForm::UidOnly => None,
                },
            },
            // The spec: error 06 means EAS 0 (§4.3).
            _ => refused(request, ErrorCode::NoTransponder),
        },
        Request::EasControl { uid, on } => {
            let ok = Reply::EasControl { uid: *uid };
            if let Some(reply) = write_fault(state, request, ok.clone()) {
                return reply;
            }
            if let Some(tag) = tag_at.and_then(|i| state.field.get_mut(i)) {
                tag.eas = *on;
            }
            ok
        }
        Request::Probe { command, body } => {
            // The hardware-version probe `04 00 11` gets the version (Biblio-RFID capture).
            let mut reply = body.clone();
            if *command == 0x04 && body.as_slice() == [0x00, 0x11] {
                reply.extend_from_slice(&SIM_VERSION);
            }
            Reply::Probe {
                command: *command,
                body: reply,
            }
        }
        Request::Other { .. } => refused(request, ErrorCode::NotImplemented),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: TagUid = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

    #[test]
    fn afi_matching_follows_iso_15693_families() {
        let cases = [
            (0x00, 0x07, true),
            (0x00, 0xC2, true),
            (0x00, 0x00, true),
            (0xC0, 0xC2, true),
            (0xC0, 0x07, false),
            (0x07, 0x07, true),
            (0x07, 0xC2, false),
            (0xC2, 0xC2, true),
            (0xC2, 0xC3, false),
        ];
        for (requested, tag, want) in cases {
            assert_eq!(
                afi_matches(requested, tag),
                want,
                "{requested:02X} vs {tag:02X}"
            );
        }
    }

    #[test]
    fn inventory_with_an_afi_returns_only_matching_tags() {
        let pad = SimPad::new();
        pad.place(VirtualTag {
            afi: 0x07,
            ..VirtualTag::new(UID)
        });
        let mut other = UID;
        other[7] = 0x18;
        pad.place(VirtualTag {
            afi: 0xC2,
            ..VirtualTag::new(other)
        });
        let reply = pad.answer(&Request::Inventory {
            afi: 0x07,
            options: 0x05,
            protocols: None,
        });
        let Reply::Inventory { tags, .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].uid, Some(UID));
        assert_eq!(tags[0].dsfid, None);
    }

    #[test]
    fn check_eas_answers_06_when_the_bit_is_off_and_01_when_on() {
        let pad = SimPad::new();
        pad.place(VirtualTag::new(UID));
        assert_eq!(
            pad.answer(&Request::CheckEas { uid: UID }).error(),
            ErrorCode::NoTransponder
        );
        pad.answer(&Request::EasControl { uid: UID, on: true });
        assert_eq!(
            pad.answer(&Request::CheckEas { uid: UID }),
            Reply::CheckEas {
                uid: UID,
                eas: Some(1)
            }
        );
    }

    #[test]
    fn the_uid_only_firmware_form_drops_the_eas_byte_and_still_answers_06_when_off() {
        let pad = SimPad::new();
        pad.set_check_eas_form(CheckEasForm::UidOnly);
        pad.place(VirtualTag::new(UID));
        assert_eq!(
            pad.answer(&Request::CheckEas { uid: UID }).error(),
            ErrorCode::NoTransponder
        );
        pad.answer(&Request::EasControl { uid: UID, on: true });
        let reply = pad.answer(&Request::CheckEas { uid: UID });
        assert_eq!(
            reply,
            Reply::CheckEas {
                uid: UID,
                eas: None
            }
        );
        assert_eq!(
            hex::encode_upper(&reply.to_frame().body),
            "00E004010031269117"
        );
        assert_eq!(pad.check_eas_form(), CheckEasForm::UidOnly);
    }

    #[test]
    fn a_transient_write_fault_refuses_without_writing() {
        let pad = SimPad::new();
        pad.place(VirtualTag::new(UID));
        pad.fail_next_writes(1);
        let reply = pad.answer(&Request::WriteAfi {
            uid: UID,
            afi: 0x07,
        });
        assert_eq!(reply.error(), ErrorCode::NoTransponder);
        assert_eq!(pad.tag(&UID).unwrap().afi, 0x00);
        pad.answer(&Request::WriteAfi {
            uid: UID,
            afi: 0x07,
        });
        assert_eq!(pad.tag(&UID).unwrap().afi, 0x07);
        assert_eq!(pad.writes_refused(), 1);
    }

    #[test]
    fn reads_past_the_end_of_memory_answer_memory_not_available() {
        let pad = SimPad::new();
        pad.place(VirtualTag::new(UID));
        let reply = pad.answer(&Request::ReadMultiblock {
            uid: UID,
            first: 27,
            count: 2,
            options: None,
        });
        assert_eq!(reply.error(), ErrorCode::MemoryNotAvailable);
    }

    #[test]
    fn commands_for_an_absent_tag_answer_no_transponder_with_the_uid() {
        let pad = SimPad::new();
        let reply = pad.answer(&Request::GetAfi { uid: UID });
        assert_eq!(
            reply,
            Reply::Refused {
                command: 0x0A,
                error: ErrorCode::NoTransponder,
                detail: UID.to_vec()
            }
        );
    }
}
