//! FEIG OBID ISO-Host frames in FEIG's own words (PROTOCOLS.md §4.2). Plain types, no I/O.
//!
//! Host → reader: `LEN | COM-ADR | CMD | data… | CRC-LSB | CRC-MSB`.
//! Reader → host: `LEN | COM-ADR | CMD | STATUS | data… | CRC-LSB | CRC-MSB`.
//! Advanced protocol length (replies over 255 bytes): `02 | ALEN-MSB | ALEN-LSB | COM-ADR |
//! CMD | STATUS | data… | CRC`. The CRC is CRC-16/MCRF4XX over every byte before it, sent
//! LSB first (PROTOCOLS.md §5).
//!
//! A [`RawFrame`] is the framing layer (length, address, command, body, CRC); [`Request`]
//! and [`Reply`] give the body its meaning. A reply does not echo the `B0` sub-command, so a
//! reply body is interpreted with the request it answers ([`InventoryReply::parse`],
//! [`BlocksReply::parse`], …).

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

/// CRC-16/MCRF4XX: poly 0x8408 reflected, preset FFFF, no final XOR (PROTOCOLS.md §4.2, §5).
pub const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MCRF4XX);

/// COM-ADR that always reaches the reader (PROTOCOLS.md §4.2).
pub const BROADCAST_ADDRESS: u8 = 0xFF;
/// First byte of an advanced-length frame (STX).
pub const STX: u8 = 0x02;
/// Shortest standard frame: `LEN ADR CMD CRC CRC` (a request without data, e.g. `[65]`).
pub const MIN_STANDARD_LEN: usize = 5;
/// Longest standard frame: LEN is one byte (PROTOCOLS.md §4.2, "LEN 6–255").
pub const MAX_STANDARD_LEN: usize = 255;
/// Shortest advanced frame: `02 ALEN ALEN ADR CMD CRC CRC`.
pub const MIN_ADVANCED_LEN: usize = 7;
/// Longest advanced frame: ALEN is two bytes (PROTOCOLS.md §4.2, "ALEN 8–65535").
pub const MAX_ADVANCED_LEN: usize = 65_535;
/// Largest block data one `B0 23` call returns (PROTOCOLS.md §4.2, "at most 128 data bytes").
pub const MAX_READ_BYTES: usize = 128;

/// Control command codes (PROTOCOLS.md §4.2, "Main commands").
pub mod command {
    /// `[52]` baud rate detection.
    pub const BAUD_DETECT: u8 = 0x52;
    /// `[63]` CPU reset.
    pub const CPU_RESET: u8 = 0x63;
    /// `[65]` get software version.
    pub const SOFTWARE_VERSION: u8 = 0x65;
    /// `[66]` get reader info.
    pub const READER_INFO: u8 = 0x66;
    /// `[69]` RF reset.
    pub const RF_RESET: u8 = 0x69;
    /// `[6A]` RF on/off.
    pub const RF_ON_OFF: u8 = 0x6A;
    /// `[71]` set output.
    pub const SET_OUTPUT: u8 = 0x71;
    /// `[74]` get input.
    pub const GET_INPUT: u8 = 0x74;
    /// `[B0]` ISO host commands.
    pub const ISO_HOST: u8 = 0xB0;
    /// `[B1]` custom (manufacturer) commands.
    pub const CUSTOM: u8 = 0xB1;
}

/// `B0` sub-commands (PROTOCOLS.md §4.2).
pub mod iso {
    /// Inventory.
    pub const INVENTORY: u8 = 0x01;
    /// Stay quiet.
    pub const STAY_QUIET: u8 = 0x02;
    /// Read multiple blocks.
    pub const READ_MULTIPLE_BLOCKS: u8 = 0x23;
    /// Write multiple blocks.
    pub const WRITE_MULTIPLE_BLOCKS: u8 = 0x24;
    /// Write AFI.
    pub const WRITE_AFI: u8 = 0x27;
    /// Lock AFI.
    pub const LOCK_AFI: u8 = 0x28;
    /// Write DSFID.
    pub const WRITE_DSFID: u8 = 0x29;
    /// Get system information.
    pub const GET_SYSTEM_INFO: u8 = 0x2B;
}

/// Inventory MODE bits (PROTOCOLS.md §4.2).
pub mod inventory_mode {
    /// MORE: fetch the rest of the data sets after status `94`.
    pub const MORE: u8 = 0x80;
    /// NTFC: notification mode, followed by NTFC_TIME ([`super::NtfcTime`]).
    pub const NOTIFY: u8 = 0x40;
    /// PRESC: presence check.
    pub const PRESENCE: u8 = 0x20;
    /// AFI: an AFI byte follows MODE. **\[unverified\]**: from FEIG reader manuals, not from a
    /// captured frame; PROTOCOLS.md lists only MORE/NTFC/PRESC.
    pub const AFI: u8 = 0x10;
}

/// NTFC_TIME of a notification inventory (MODE bit NTFC, PROTOCOLS.md §4.2): how long the
/// reader holds the request while no transponder is in the field before it answers status
/// `01`. It answers at once when a transponder is (or comes) into the field.
///
/// **\[unverified\]**: PROTOCOLS.md §4.2 says only that NTFC is "followed by NTFC_TIME".
/// Assumed here: one byte right after MODE (before an AFI byte), in steps of
/// [`NTFC_TIME_UNIT`] (100 ms, FEIG's usual time unit, as OS_TIME of `[71]`). Check against
/// the reader family's manual or a capture; the encoding lives in [`Request::body`] and
/// [`Request::from_raw`], the unit in [`NTFC_TIME_UNIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NtfcTime(pub u8);

/// One step of [`NtfcTime`]. **\[unverified\]**, see there.
pub const NTFC_TIME_UNIT: Duration = Duration::from_millis(100);

impl NtfcTime {
    /// The longest wait the byte can say (255 steps).
    pub const MAX: Self = Self(u8::MAX);

    /// The NTFC_TIME for at least `wait`: rounded up to whole steps, at most [`Self::MAX`].
    pub fn at_least(wait: Duration) -> Self {
        let steps = wait.as_nanos().div_ceil(NTFC_TIME_UNIT.as_nanos());
        Self(u8::try_from(steps).unwrap_or(u8::MAX))
    }

    /// The wait this NTFC_TIME stands for.
    pub fn wait(self) -> Duration {
        NTFC_TIME_UNIT * u32::from(self.0)
    }
}

/// The IC manufacturer code of NXP, used with `B1` custom commands.
pub const MFR_NXP: u8 = 0x04;
/// TR-TYPE of an ISO 15693 transponder in an inventory data set.
pub const TR_TYPE_ISO15693: u8 = 0x03;

/// An ISO 15693 UID as ISO-Host sends it: 8 bytes, MSB first.
pub type UidBytes = [u8; 8];

/// Why bytes are not a FEIG frame. Offsets count from the frame's first byte.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the smallest frame or than LEN says.
    #[error("frame too short: {got} bytes, need {need}")]
    TooShort {
        /// Bytes given.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// LEN/ALEN is outside the allowed range.
    #[error("offset {offset}: length {declared} is outside {min}..={max}")]
    BadLength {
        /// Offset of the length field.
        offset: usize,
        /// The length the frame declares.
        declared: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Bytes after the declared length.
    #[error("offset {offset}: {extra} bytes after the frame's declared length")]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many.
        extra: usize,
    },
    /// The CRC does not match.
    #[error(
        "offset {offset}: CRC {found:04X} on the wire, {expected:04X} computed (CRC-16/MCRF4XX)"
    )]
    BadCrc {
        /// Offset of the CRC.
        offset: usize,
        /// What the bytes give.
        expected: u16,
        /// What the frame carries.
        found: u16,
    },
    /// A field is missing at the end of the body.
    #[error("offset {offset}: {field} missing (frame ends)")]
    Missing {
        /// Offset where the field should start.
        offset: usize,
        /// The field's name as in FEIG's manual.
        field: &'static str,
    },
    /// A field has a value this implementation does not know.
    #[error("offset {offset}: {field} {value:#04x} is not supported")]
    Unsupported {
        /// Offset of the field.
        offset: usize,
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// Data left over after all fields were read.
    #[error("offset {offset}: {extra} unexpected bytes after {after}")]
    Unexpected {
        /// Where the extra bytes start.
        offset: usize,
        /// How many.
        extra: usize,
        /// The last field read.
        after: &'static str,
    },
}

/// One frame at the framing layer: what is between the length and the CRC.
#[derive(Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Sent with the advanced protocol length (`02 ALEN`).
    pub advanced: bool,
    /// COM-ADR.
    pub address: u8,
    /// CMD.
    pub command: u8,
    /// Everything after CMD and before the CRC (a reply starts with STATUS).
    pub body: Vec<u8>,
}

impl fmt::Debug for RawFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RawFrame({}{:02X} cmd {:02X} body {})",
            if self.advanced { "advanced, " } else { "adr " },
            self.address,
            self.command,
            hex::encode_upper(&self.body)
        )
    }
}

/// What the first bytes of a buffer say about the frame that starts there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// Not a frame start (length out of range).
    Invalid,
    /// A frame may start here; this many bytes are needed to know more.
    Incomplete(usize),
    /// A frame of this total length starts here (CRC not yet checked).
    Complete(usize),
}

/// Looks at the length field(s) at the start of `bytes`.
pub fn candidate(bytes: &[u8], max_len: usize) -> Candidate {
    match bytes.first() {
        None => Candidate::Incomplete(1),
        Some(&STX) => match (bytes.get(1), bytes.get(2)) {
            (Some(&msb), Some(&lsb)) => {
                let len = usize::from(u16::from_be_bytes([msb, lsb]));
                if !(MIN_ADVANCED_LEN..=max_len.min(MAX_ADVANCED_LEN)).contains(&len) {
                    Candidate::Invalid
                } else if bytes.len() >= len {
                    Candidate::Complete(len)
                } else {
                    Candidate::Incomplete(len)
                }
            }
            _ => Candidate::Incomplete(3),
        },
        Some(&len) => {
            let len = usize::from(len);
            if !(MIN_STANDARD_LEN..=max_len.min(MAX_STANDARD_LEN)).contains(&len) {
                Candidate::Invalid
            } else if bytes.len() >= len {
                Candidate::Complete(len)
            } else {
                Candidate::Incomplete(len)
            }
        }
    }
}

/// Whether the last two bytes of `frame` are its CRC-16/MCRF4XX, LSB first.
pub fn crc_ok(frame: &[u8]) -> bool {
    crc_parts(frame).is_some_and(|(expected, found)| expected == found)
}

/// `(computed, carried)` CRC of a frame, `None` when it is shorter than a CRC.
fn crc_parts(frame: &[u8]) -> Option<(u16, u16)> {
    let split = frame.len().checked_sub(2)?;
    let (covered, crc) = frame.split_at(split);
    let found = u16::from_le_bytes([*crc.first()?, *crc.get(1)?]);
    Some((CRC.checksum(covered), found))
}

impl RawFrame {
    /// Header length before the body: 3 (`LEN ADR CMD`) or 5 (`02 ALEN ALEN ADR CMD`).
    pub fn header_len(&self) -> usize {
        if self.advanced { 5 } else { 3 }
    }

    /// Total length on the wire.
    pub fn wire_len(&self) -> usize {
        self.header_len() + self.body.len() + 2
    }

    /// Parses exactly one frame occupying all of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        let len = match candidate(bytes, MAX_ADVANCED_LEN) {
            Candidate::Complete(len) => len,
            Candidate::Incomplete(need) => {
                return Err(FrameError::TooShort {
                    got: bytes.len(),
                    need: need.max(MIN_STANDARD_LEN),
                });
            }
            Candidate::Invalid => {
                let advanced = bytes.first() == Some(&STX);
                let declared = if advanced {
                    usize::from(u16::from_be_bytes([
                        bytes.get(1).copied().unwrap_or(0),
                        bytes.get(2).copied().unwrap_or(0),
                    ]))
                } else {
                    bytes.first().copied().map_or(0, usize::from)
                };
                let (min, max) = if advanced {
                    (MIN_ADVANCED_LEN, MAX_ADVANCED_LEN)
                } else {
                    (MIN_STANDARD_LEN, MAX_STANDARD_LEN)
                };
                return Err(FrameError::BadLength {
                    offset: 0,
                    declared,
                    min,
                    max,
                });
            }
        };
        if bytes.len() > len {
            return Err(FrameError::TrailingBytes {
                offset: len,
                extra: bytes.len() - len,
            });
        }
        if let Some((expected, found)) = crc_parts(bytes)
            && expected != found
        {
            return Err(FrameError::BadCrc {
                offset: len - 2,
                expected,
                found,
            });
        }
        Ok(Self::split(bytes))
    }

    /// Splits a frame whose length and CRC were checked (never panics on any input).
    pub(crate) fn split(frame: &[u8]) -> Self {
        let advanced = frame.first() == Some(&STX);
        let header = if advanced { 5 } else { 3 };
        let end = frame.len().saturating_sub(2);
        Self {
            advanced,
            address: frame.get(header - 2).copied().unwrap_or(0),
            command: frame.get(header - 1).copied().unwrap_or(0),
            body: frame.get(header..end).unwrap_or_default().to_vec(),
        }
    }

    /// Writes the frame with its length and CRC. The advanced length is used when asked for
    /// or when the frame does not fit a one-byte LEN.
    pub fn encode(&self, dst: &mut BytesMut) {
        let start = dst.len();
        let standard_len = 3 + self.body.len() + 2;
        if self.advanced || standard_len > MAX_STANDARD_LEN {
            let len = (5 + self.body.len() + 2).min(MAX_ADVANCED_LEN) as u16;
            dst.reserve(usize::from(len));
            dst.put_u8(STX);
            dst.put_u16(len);
        } else {
            dst.reserve(standard_len);
            dst.put_u8(standard_len as u8);
        }
        dst.put_u8(self.address);
        dst.put_u8(self.command);
        dst.extend_from_slice(&self.body);
        let crc = CRC.checksum(dst.get(start..).unwrap_or_default());
        dst.put_u16_le(crc);
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.to_vec()
    }
}

/// How an ISO 15693 command picks its tag (MODE bits 2-0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `000`: whichever single tag answers.
    NonAddressed,
    /// `001`: the tag with this UID (MSB first on the wire).
    Addressed(UidBytes),
    /// `010`: the tag selected earlier with `B0 25`.
    Selected,
}

impl Addressing {
    fn mode_bits(self) -> u8 {
        match self {
            Self::NonAddressed => 0b000,
            Self::Addressed(_) => 0b001,
            Self::Selected => 0b010,
        }
    }

    fn put(self, mode_flags: u8, out: &mut Vec<u8>) {
        out.push(mode_flags | self.mode_bits());
        if let Self::Addressed(uid) = self {
            out.extend_from_slice(&uid);
        }
    }
}

/// The NXP custom commands carried by `B1 04` (PROTOCOLS.md §3.3, §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NxpCommand {
    /// `A2` set EAS.
    SetEas,
    /// `A3` reset EAS.
    ResetEas,
    /// `A4` lock EAS.
    LockEas,
    /// `A5` EAS alarm (only tags with EAS set answer).
    EasAlarm,
}

impl NxpCommand {
    /// The ISO 15693 custom command code.
    pub fn code(self) -> u8 {
        match self {
            Self::SetEas => 0xA2,
            Self::ResetEas => 0xA3,
            Self::LockEas => 0xA4,
            Self::EasAlarm => 0xA5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0xA2 => Self::SetEas,
            0xA3 => Self::ResetEas,
            0xA4 => Self::LockEas,
            0xA5 => Self::EasAlarm,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::SetEas => "set EAS",
            Self::ResetEas => "reset EAS",
            Self::LockEas => "lock EAS",
            Self::EasAlarm => "EAS alarm",
        }
    }
}

/// What one emitter of `[71]` Set Output does (2-bit OS field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputMode {
    /// `00` leave as is.
    #[default]
    Unchanged,
    /// `01` on.
    On,
    /// `10` off.
    Off,
    /// `11` flash.
    Flash,
}

impl OutputMode {
    fn bits(self) -> u16 {
        match self {
            Self::Unchanged => 0b00,
            Self::On => 0b01,
            Self::Off => 0b10,
            Self::Flash => 0b11,
        }
    }
}

/// `[71]` Set Output: `OS(2) OSF(2) OS_TIME(2) OUT_TIME(2)`, MSB first (PROTOCOLS.md §4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetOutput {
    /// OS: 2-bit modes, bits 5-4 beeper, 3-2 red LED, 1-0 green LED.
    pub os: u16,
    /// OSF: flash rate per emitter (`00` 5 Hz … `11` 0.625 Hz), same bit positions.
    pub osf: u16,
    /// How long the OS state lasts, in 100 ms units (`FFFF` permanent, `1` resets it).
    pub os_time: u16,
    /// How long the relay is driven, in 100 ms units.
    pub out_time: u16,
}

impl SetOutput {
    /// Beeper, red and green LED modes for `os_time` × 100 ms, relay for `out_time` × 100 ms.
    pub fn new(
        beeper: OutputMode,
        red: OutputMode,
        green: OutputMode,
        os_time: u16,
        out_time: u16,
    ) -> Self {
        Self {
            os: beeper.bits() << 4 | red.bits() << 2 | green.bits(),
            osf: 0,
            os_time,
            out_time,
        }
    }
}

/// A host → reader request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `[52] 00` baud rate detection.
    BaudDetect,
    /// `[63]` CPU reset.
    CpuReset,
    /// `[65]` get software version.
    SoftwareVersion,
    /// `[69]` RF reset.
    RfReset,
    /// `[71]` set output.
    SetOutput(SetOutput),
    /// `[74]` get input.
    GetInput,
    /// `B0 01` inventory.
    Inventory {
        /// MORE: fetch the rest after a status `94` reply.
        more: bool,
        /// Only tags with this AFI answer (AFI flag, see [`inventory_mode::AFI`]).
        afi: Option<u8>,
        /// NTFC: hold the request until a tag is in the field, at most this long.
        notify: Option<NtfcTime>,
    },
    /// `B0 23` read multiple blocks.
    ReadMultipleBlocks {
        /// Which tag.
        addressing: Addressing,
        /// DB_ADR: first block.
        first: u8,
        /// DB-N: number of blocks (the real number, not "n − 1").
        count: u8,
    },
    /// `B0 24` write multiple blocks.
    WriteMultipleBlocks {
        /// Which tag.
        addressing: Addressing,
        /// DB_ADR: first block.
        first: u8,
        /// DB-SIZE: bytes per block.
        block_size: u8,
        /// The blocks, DB-N × DB-SIZE bytes, in ISO-Host byte order (MSB first).
        data: Vec<u8>,
    },
    /// `B0 27` write AFI.
    WriteAfi {
        /// Which tag.
        addressing: Addressing,
        /// The new AFI.
        afi: u8,
    },
    /// `B0 2B` get system information.
    GetSystemInfo {
        /// Which tag.
        addressing: Addressing,
    },
    /// `B1 04 Ax` NXP custom command.
    Nxp {
        /// Which command.
        command: NxpCommand,
        /// Which tag.
        addressing: Addressing,
    },
    /// Any other command, kept as bytes.
    Other {
        /// CMD.
        command: u8,
        /// The data after CMD.
        data: Vec<u8>,
    },
}

impl Request {
    /// CMD of this request.
    pub fn command(&self) -> u8 {
        match self {
            Self::BaudDetect => command::BAUD_DETECT,
            Self::CpuReset => command::CPU_RESET,
            Self::SoftwareVersion => command::SOFTWARE_VERSION,
            Self::RfReset => command::RF_RESET,
            Self::SetOutput(_) => command::SET_OUTPUT,
            Self::GetInput => command::GET_INPUT,
            Self::Inventory { .. }
            | Self::ReadMultipleBlocks { .. }
            | Self::WriteMultipleBlocks { .. }
            | Self::WriteAfi { .. }
            | Self::GetSystemInfo { .. } => command::ISO_HOST,
            Self::Nxp { .. } => command::CUSTOM,
            Self::Other { command, .. } => *command,
        }
    }

    /// The request body (after CMD).
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::BaudDetect => out.push(0x00),
            Self::CpuReset | Self::SoftwareVersion | Self::RfReset | Self::GetInput => {}
            Self::SetOutput(o) => {
                for v in [o.os, o.osf, o.os_time, o.out_time] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            Self::Inventory { more, afi, notify } => {
                out.push(iso::INVENTORY);
                let mut mode = 0;
                if *more {
                    mode |= inventory_mode::MORE;
                }
                if notify.is_some() {
                    mode |= inventory_mode::NOTIFY;
                }
                if afi.is_some() {
                    mode |= inventory_mode::AFI;
                }
                out.push(mode);
                // [unverified] field order, see `NtfcTime`.
                out.extend(notify.map(|t| t.0));
                out.extend(afi);
            }
            Self::ReadMultipleBlocks {
                addressing,
                first,
                count,
            } => {
                out.push(iso::READ_MULTIPLE_BLOCKS);
                addressing.put(0, &mut out);
                out.extend_from_slice(&[*first, *count]);
            }
            Self::WriteMultipleBlocks {
                addressing,
                first,
                block_size,
                data,
            } => {
                out.push(iso::WRITE_MULTIPLE_BLOCKS);
                addressing.put(0, &mut out);
                let count = if *block_size == 0 {
                    0
                } else {
                    data.len() / usize::from(*block_size)
                };
                out.extend_from_slice(&[*first, count as u8, *block_size]);
                out.extend_from_slice(data);
            }
            Self::WriteAfi { addressing, afi } => {
                out.push(iso::WRITE_AFI);
                addressing.put(0, &mut out);
                out.push(*afi);
            }
            Self::GetSystemInfo { addressing } => {
                out.push(iso::GET_SYSTEM_INFO);
                addressing.put(0, &mut out);
            }
            Self::Nxp {
                command,
                addressing,
            } => {
                out.extend_from_slice(&[MFR_NXP, command.code()]);
                addressing.put(0, &mut out);
            }
            Self::Other { data, .. } => out.extend_from_slice(data),
        }
        out
    }

    /// The request as a frame to `address`.
    pub fn to_raw(&self, address: u8) -> RawFrame {
        RawFrame {
            advanced: false,
            address,
            command: self.command(),
            body: self.body(),
        }
    }

    /// Interprets a frame's body as a request (the simulator's side).
    pub fn from_raw(raw: &RawFrame) -> Result<Self, FrameError> {
        let base = raw.header_len();
        let mut r = Reader::new(&raw.body, base);
        let request = match raw.command {
            command::BAUD_DETECT => {
                r.u8("baud detection byte")?;
                Self::BaudDetect
            }
            command::CPU_RESET => Self::CpuReset,
            command::SOFTWARE_VERSION => Self::SoftwareVersion,
            command::RF_RESET => Self::RfReset,
            command::GET_INPUT => Self::GetInput,
            command::SET_OUTPUT => Self::SetOutput(SetOutput {
                os: r.u16("OS")?,
                osf: r.u16("OSF")?,
                os_time: r.u16("OS_TIME")?,
                out_time: r.u16("OUT_TIME")?,
            }),
            command::ISO_HOST => Self::iso_from_reader(&mut r)?,
            command::CUSTOM => {
                let mfr_offset = r.offset();
                let mfr = r.u8("MFR")?;
                if mfr != MFR_NXP {
                    return Err(FrameError::Unsupported {
                        offset: mfr_offset,
                        field: "MFR",
                        value: mfr,
                    });
                }
                let code_offset = r.offset();
                let code = r.u8("custom command")?;
                let command = NxpCommand::from_code(code).ok_or(FrameError::Unsupported {
                    offset: code_offset,
                    field: "custom command",
                    value: code,
                })?;
                Self::Nxp {
                    command,
                    addressing: r.addressing()?,
                }
            }
            other => {
                return Ok(Self::Other {
                    command: other,
                    data: raw.body.clone(),
                });
            }
        };
        r.finish("the last field")?;
        Ok(request)
    }

    /// The `B0` sub-commands.
    fn iso_from_reader(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let sub_offset = r.offset();
        Ok(match r.u8("ISO command")? {
            iso::INVENTORY => {
                let mode = r.u8("MODE")?;
                // [unverified] field order, see `NtfcTime`.
                let notify = if mode & inventory_mode::NOTIFY == 0 {
                    None
                } else {
                    Some(NtfcTime(r.u8("NTFC_TIME")?))
                };
                let afi = if mode & inventory_mode::AFI == 0 {
                    None
                } else {
                    Some(r.u8("AFI")?)
                };
                Self::Inventory {
                    more: mode & inventory_mode::MORE != 0,
                    afi,
                    notify,
                }
            }
            iso::READ_MULTIPLE_BLOCKS => {
                let addressing = r.addressing()?;
                Self::ReadMultipleBlocks {
                    addressing,
                    first: r.u8("DB_ADR")?,
                    count: r.u8("DB-N")?,
                }
            }
            iso::WRITE_MULTIPLE_BLOCKS => {
                let addressing = r.addressing()?;
                let first = r.u8("DB_ADR")?;
                let count = r.u8("DB-N")?;
                let block_size = r.u8("DB-SIZE")?;
                let data = r.take(usize::from(count) * usize::from(block_size), "DB")?;
                Self::WriteMultipleBlocks {
                    addressing,
                    first,
                    block_size,
                    data: data.to_vec(),
                }
            }
            iso::WRITE_AFI => {
                let addressing = r.addressing()?;
                Self::WriteAfi {
                    addressing,
                    afi: r.u8("AFI")?,
                }
            }
            iso::GET_SYSTEM_INFO => Self::GetSystemInfo {
                addressing: r.addressing()?,
            },
            other => {
                return Err(FrameError::Unsupported {
                    offset: sub_offset,
                    field: "ISO command",
                    value: other,
                });
            }
        })
    }

    /// FEIG's name for the request, with its codes (`"B0 01 inventory"`).
    pub fn name(&self) -> String {
        match self {
            Self::BaudDetect => "52 baud rate detection".into(),
            Self::CpuReset => "63 CPU reset".into(),
            Self::SoftwareVersion => "65 get software version".into(),
            Self::RfReset => "69 RF reset".into(),
            Self::SetOutput(_) => "71 set output".into(),
            Self::GetInput => "74 get input".into(),
            Self::Inventory { .. } => "B0 01 inventory".into(),
            Self::ReadMultipleBlocks { .. } => "B0 23 read multiple blocks".into(),
            Self::WriteMultipleBlocks { .. } => "B0 24 write multiple blocks".into(),
            Self::WriteAfi { .. } => "B0 27 write AFI".into(),
            Self::GetSystemInfo { .. } => "B0 2B get system information".into(),
            Self::Nxp { command, .. } => {
                format!("B1 04 {:02X} NXP {}", command.code(), command.name())
            }
            Self::Other { command, .. } => format!("{command:02X} {}", command_name(*command)),
        }
    }
}

/// FEIG's name for a control command code.
pub fn command_name(code: u8) -> &'static str {
    match code {
        command::BAUD_DETECT => "baud rate detection",
        command::CPU_RESET => "CPU reset",
        command::SOFTWARE_VERSION => "get software version",
        command::READER_INFO => "get reader info",
        command::RF_RESET => "RF reset",
        command::RF_ON_OFF => "RF on/off",
        command::SET_OUTPUT => "set output",
        command::GET_INPUT => "get input",
        0x80 => "read configuration",
        0x81 => "write configuration",
        0x82 => "save configuration",
        0x83 => "set default configuration",
        command::ISO_HOST => "ISO host command",
        command::CUSTOM => "custom command",
        0xBF => "transparent command",
        _ => "unknown command",
    }
}

/// A reply's STATUS byte (PROTOCOLS.md §4.2, "STATUS bytes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `00` OK.
    Ok,
    /// `01` no transponder.
    NoTransponder,
    /// `02` data false (CRC, parity, framing on the air).
    DataFalse,
    /// `03` write error.
    WriteError,
    /// `04` address error.
    AddressError,
    /// `05` wrong transponder type.
    WrongTransponderType,
    /// `08` authentication error.
    AuthenticationError,
    /// `0E` general error.
    GeneralError,
    /// `10` EEPROM failure.
    EepromFailure,
    /// `11` parameter range error.
    ParameterRangeError,
    /// `80` unknown command.
    UnknownCommand,
    /// `81` length error.
    LengthError,
    /// `82` not available in scan mode.
    NotInScanMode,
    /// `83` RF communication error.
    RfCommunicationError,
    /// `93` data buffer overflow.
    BufferOverflow,
    /// `94` more data (fetch the rest with MORE).
    MoreData,
    /// `95` ISO 15693 error; the error code is the first data byte.
    Iso15693Error,
    /// `96` ISO 14443 error.
    Iso14443Error,
    /// `F1` hardware warning.
    HardwareWarning,
    /// A code this table does not know.
    Other(u8),
}

impl Status {
    /// The status for a byte.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => Self::Ok,
            0x01 => Self::NoTransponder,
            0x02 => Self::DataFalse,
            0x03 => Self::WriteError,
            0x04 => Self::AddressError,
            0x05 => Self::WrongTransponderType,
            0x08 => Self::AuthenticationError,
            0x0E => Self::GeneralError,
            0x10 => Self::EepromFailure,
            0x11 => Self::ParameterRangeError,
            0x80 => Self::UnknownCommand,
            0x81 => Self::LengthError,
            0x82 => Self::NotInScanMode,
            0x83 => Self::RfCommunicationError,
            0x93 => Self::BufferOverflow,
            0x94 => Self::MoreData,
            0x95 => Self::Iso15693Error,
            0x96 => Self::Iso14443Error,
            0xF1 => Self::HardwareWarning,
            other => Self::Other(other),
        }
    }

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0x00,
            Self::NoTransponder => 0x01,
            Self::DataFalse => 0x02,
            Self::WriteError => 0x03,
            Self::AddressError => 0x04,
            Self::WrongTransponderType => 0x05,
            Self::AuthenticationError => 0x08,
            Self::GeneralError => 0x0E,
            Self::EepromFailure => 0x10,
            Self::ParameterRangeError => 0x11,
            Self::UnknownCommand => 0x80,
            Self::LengthError => 0x81,
            Self::NotInScanMode => 0x82,
            Self::RfCommunicationError => 0x83,
            Self::BufferOverflow => 0x93,
            Self::MoreData => 0x94,
            Self::Iso15693Error => 0x95,
            Self::Iso14443Error => 0x96,
            Self::HardwareWarning => 0xF1,
            Self::Other(code) => code,
        }
    }

    /// FEIG's meaning of the code.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NoTransponder => "no transponder",
            Self::DataFalse => "data false",
            Self::WriteError => "write error",
            Self::AddressError => "address error",
            Self::WrongTransponderType => "wrong transponder type",
            Self::AuthenticationError => "authentication error",
            Self::GeneralError => "general error",
            Self::EepromFailure => "EEPROM failure",
            Self::ParameterRangeError => "parameter range error",
            Self::UnknownCommand => "unknown command",
            Self::LengthError => "length error",
            Self::NotInScanMode => "not available in scan mode",
            Self::RfCommunicationError => "RF communication error",
            Self::BufferOverflow => "data buffer overflow",
            Self::MoreData => "more data",
            Self::Iso15693Error => "ISO 15693 error",
            Self::Iso14443Error => "ISO 14443 error",
            Self::HardwareWarning => "hardware warning",
            Self::Other(_) => "unknown status",
        }
    }

    /// Whether data follows this status (PROTOCOLS.md §4.2: only `00`, `83`, `94`, `95`).
    pub fn carries_data(self) -> bool {
        matches!(
            self,
            Self::Ok | Self::RfCommunicationError | Self::MoreData | Self::Iso15693Error
        )
    }
}

/// The meaning of an ISO 15693 error code (PROTOCOLS.md §4.1).
pub fn iso15693_error_meaning(code: u8) -> &'static str {
    match code {
        0x01 => "command not supported",
        0x02 => "command not recognised",
        0x03 => "option not supported",
        0x0F => "unknown error",
        0x10 => "block not available",
        0x11 => "block already locked",
        0x12 => "block locked, content cannot change",
        0x13 => "block programming failed",
        0x14 => "block lock failed",
        0xA0..=0xDF => "custom command error",
        _ => "unknown ISO 15693 error",
    }
}

/// A reader → host reply at the framing layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// COM-ADR of the reader.
    pub address: u8,
    /// CMD it answers.
    pub command: u8,
    /// STATUS.
    pub status: Status,
    /// Data after STATUS.
    pub data: Vec<u8>,
    /// Offset of `data` in the frame, for error messages.
    pub data_offset: usize,
}

impl Reply {
    /// Splits STATUS from the data.
    pub fn from_raw(raw: &RawFrame) -> Result<Self, FrameError> {
        let header = raw.header_len();
        let (&status, data) = raw.body.split_first().ok_or(FrameError::Missing {
            offset: header,
            field: "STATUS",
        })?;
        Ok(Self {
            address: raw.address,
            command: raw.command,
            status: Status::from_code(status),
            data: data.to_vec(),
            data_offset: header + 1,
        })
    }

    /// A reply frame (the simulator's side); long replies use the advanced length.
    pub fn to_raw(&self) -> RawFrame {
        let mut body = Vec::with_capacity(1 + self.data.len());
        body.push(self.status.code());
        body.extend_from_slice(&self.data);
        RawFrame {
            advanced: 3 + body.len() + 2 > MAX_STANDARD_LEN,
            address: self.address,
            command: self.command,
            body,
        }
    }

    /// The ISO 15693 error code of a status `95` reply.
    pub fn iso_error(&self) -> Option<u8> {
        match self.status {
            Status::Iso15693Error => self.data.first().copied(),
            _ => None,
        }
    }

    /// The status with its meaning, e.g. `"95 ISO 15693 error 10 (block not available)"`.
    pub fn status_text(&self) -> String {
        match self.iso_error() {
            Some(code) => format!(
                "{:02X} {} {code:02X} ({})",
                self.status.code(),
                self.status.meaning(),
                iso15693_error_meaning(code)
            ),
            None => format!("{:02X} {}", self.status.code(), self.status.meaning()),
        }
    }
}

/// One data set of an inventory reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InventoryItem {
    /// TR-TYPE (`03` = ISO 15693).
    pub tr_type: u8,
    /// DSFID.
    pub dsfid: u8,
    /// UID, MSB first.
    pub uid: UidBytes,
}

/// `B0 01` reply data: `DATA-SETS { TR-TYPE DSFID UID(8) }…`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryReply {
    /// The data sets.
    pub items: Vec<InventoryItem>,
}

impl InventoryReply {
    /// Parses the data of a status `00`/`94` reply.
    pub fn parse(reply: &Reply) -> Result<Self, FrameError> {
        let mut r = Reader::new(&reply.data, reply.data_offset);
        let count = r.u8("DATA-SETS")?;
        let mut items = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let type_offset = r.offset();
            let tr_type = r.u8("TR-TYPE")?;
            if tr_type != TR_TYPE_ISO15693 {
                return Err(FrameError::Unsupported {
                    offset: type_offset,
                    field: "TR-TYPE",
                    value: tr_type,
                });
            }
            let dsfid = r.u8("DSFID")?;
            let uid = r.uid()?;
            items.push(InventoryItem {
                tr_type,
                dsfid,
                uid,
            });
        }
        r.finish("the last data set")?;
        Ok(Self { items })
    }

    /// The reply data for these items.
    pub fn to_data(&self) -> Vec<u8> {
        let mut out = vec![self.items.len() as u8];
        for item in &self.items {
            out.extend_from_slice(&[item.tr_type, item.dsfid]);
            out.extend_from_slice(&item.uid);
        }
        out
    }
}

/// One block of a read reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// SEC-STATUS (lock state) of the block.
    pub security: u8,
    /// The block's bytes as ISO-Host sends them (MSB first: byte-reversed against tag memory).
    pub data: Vec<u8>,
}

/// `B0 23` reply data: `DB-N DB-SIZE { SEC-STATUS DB }…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlocksReply {
    /// DB-SIZE.
    pub block_size: u8,
    /// The blocks.
    pub blocks: Vec<Block>,
}

impl BlocksReply {
    /// Parses the data of a status `00` reply.
    pub fn parse(reply: &Reply) -> Result<Self, FrameError> {
        let mut r = Reader::new(&reply.data, reply.data_offset);
        let count = r.u8("DB-N")?;
        let block_size = r.u8("DB-SIZE")?;
        let mut blocks = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let security = r.u8("SEC-STATUS")?;
            let data = r.take(usize::from(block_size), "DB")?.to_vec();
            blocks.push(Block { security, data });
        }
        r.finish("the last block")?;
        Ok(Self { block_size, blocks })
    }

    /// The reply data for these blocks.
    pub fn to_data(&self) -> Vec<u8> {
        let mut out = vec![self.blocks.len() as u8, self.block_size];
        for block in &self.blocks {
            out.push(block.security);
            out.extend_from_slice(&block.data);
        }
        out
    }

    /// All block data concatenated, block 0 first, in ISO-Host byte order.
    pub fn concat(&self) -> Vec<u8> {
        self.blocks
            .iter()
            .flat_map(|b| b.data.iter().copied())
            .collect()
    }
}

/// `B0 2B` reply data: `DSFID UID(8) AFI MEM-SIZE(2) IC-REF`.
///
/// The layout follows a public ISO-Host driver for the CPR-M02 (Biblio-RFID `CPRM02.pm`);
/// MEM-SIZE's split into block size and count is **\[unverified\]**, so it is kept whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemInfoReply {
    /// DSFID.
    pub dsfid: u8,
    /// UID, MSB first.
    pub uid: UidBytes,
    /// AFI.
    pub afi: u8,
    /// MEM-SIZE as sent.
    pub mem_size: u16,
    /// IC reference.
    pub ic_ref: u8,
}

impl SystemInfoReply {
    /// Parses the data of a status `00` reply.
    pub fn parse(reply: &Reply) -> Result<Self, FrameError> {
        let mut r = Reader::new(&reply.data, reply.data_offset);
        let info = Self {
            dsfid: r.u8("DSFID")?,
            uid: r.uid()?,
            afi: r.u8("AFI")?,
            mem_size: r.u16("MEM-SIZE")?,
            ic_ref: r.u8("IC-REF")?,
        };
        r.finish("IC-REF")?;
        Ok(info)
    }

    /// The reply data.
    pub fn to_data(&self) -> Vec<u8> {
        let mut out = vec![self.dsfid];
        out.extend_from_slice(&self.uid);
        out.push(self.afi);
        out.extend_from_slice(&self.mem_size.to_be_bytes());
        out.push(self.ic_ref);
        out
    }
}

/// `[74]` reply data: `INPUTS`; bits 0–2 = IN1–IN3 level, bits 4–6 = changed since the last
/// call (PROTOCOLS.md §4.2).
pub fn parse_inputs(reply: &Reply) -> Result<rfidgw_driver::InputState, FrameError> {
    let mut r = Reader::new(&reply.data, reply.data_offset);
    let inputs = r.u8("INPUTS")?;
    r.finish("INPUTS")?;
    Ok(rfidgw_driver::InputState {
        levels: inputs & 0x07,
        changed: (inputs >> 4) & 0x07,
    })
}

/// A cursor over a body that reports missing fields with their frame offset.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Self {
            bytes,
            pos: 0,
            base,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        let end = self.pos.checked_add(n).ok_or(FrameError::Missing {
            offset: self.offset(),
            field,
        })?;
        let slice = self.bytes.get(self.pos..end).ok_or(FrameError::Missing {
            offset: self.offset(),
            field,
        })?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        let b = self.take(1, field)?;
        Ok(b.first().copied().unwrap_or(0))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    fn uid(&mut self) -> Result<UidBytes, FrameError> {
        let b = self.take(8, "UID")?;
        let mut uid = [0u8; 8];
        uid.copy_from_slice(b);
        Ok(uid)
    }

    fn addressing(&mut self) -> Result<Addressing, FrameError> {
        let mode_offset = self.offset();
        let mode = self.u8("MODE")?;
        match mode & 0x07 {
            0b000 => Ok(Addressing::NonAddressed),
            0b001 => Ok(Addressing::Addressed(self.uid()?)),
            0b010 => Ok(Addressing::Selected),
            _ => Err(FrameError::Unsupported {
                offset: mode_offset,
                field: "MODE",
                value: mode,
            }),
        }
    }

    fn finish(&self, after: &'static str) -> Result<(), FrameError> {
        let extra = self.bytes.len().saturating_sub(self.pos);
        if extra == 0 {
            Ok(())
        } else {
            Err(FrameError::Unexpected {
                offset: self.offset(),
                extra,
                after,
            })
        }
    }
}
