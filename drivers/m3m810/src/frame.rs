//! 3M 810 / 3M RFID Reader Model 210 frames: plain types in the spec's words, no I/O.
//!
//! Wire layout (PROTOCOLS.md §4.3, 3M RFID Reader Model 210 Protocol Specification v1.0.0):
//!
//! ```text
//! D6 | LEN (2, big-endian) | CMD | [error byte, replies only] | [UID 8] | fields | CRC (2, big-endian)
//! ```
//!
//! LEN counts every byte after itself, CRC included. The CRC is CRC-16/GENIBUS over LEN
//! through the last data byte (everything but the start byte), sent big-endian (§5).
//! The 810 also answers `D5`-framed hardware probes with the same LEN and CRC rule.
//!
//! [`Frame`] is the envelope (start byte, command, body); [`Request`] and [`Reply`] are the
//! typed commands this crate speaks. Commands it does not model survive as `Other`, so a
//! captured frame is always described rather than refused.

use std::fmt;

/// Start byte of command and reply frames (§4.3).
pub const START: u8 = 0xD6;
/// Start byte of the hardware-version probe frames 3M software sends at start-up (§4.3).
pub const PROBE_START: u8 = 0xD5;
/// Bytes before the LEN-counted part: the start byte and the 2-byte LEN.
pub const HEADER_LEN: usize = 3;
/// Offset of the first body byte in a whole frame (start, LEN × 2, CMD).
pub const BODY_OFFSET: usize = 4;
/// Bytes of CRC at the end of every frame (§4.3).
pub const CRC_LEN: usize = 2;
/// The smallest LEN: the command byte and the CRC.
pub const MIN_LEN_FIELD: usize = 1 + CRC_LEN;
/// The largest LEN this crate accepts.
///
/// The spec's 16-bit LEN allows 65535. The largest reply a pad really sends is an
/// inventory of 255 tags with DSFID and UID (255 × 9 + 7 = 2302 bytes); 4096 leaves room
/// and bounds how long a garbage LEN can make the codec wait.
pub const MAX_LEN_FIELD: usize = 4096;
/// Length of an ISO 15693 UID; a TI Tag-it id is zero-padded to it (§4.3).
pub const UID_LEN: usize = 8;
/// Bytes per block that this crate writes (ICODE SLIX and Tag-it HF-I use 4, §4.1).
pub const BLOCK_SIZE: usize = 4;
/// The largest block size accepted when reading; it is derived from the reply's length.
pub const MAX_BLOCK_SIZE: usize = 32;

/// CRC-16/GENIBUS (poly 1021, init FFFF, not reflected, xorout FFFF), PROTOCOLS.md §5.
pub const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_GENIBUS);

/// The frame check value over `bytes` (LEN through the last data byte).
pub fn checksum(bytes: &[u8]) -> u16 {
    CRC.checksum(bytes)
}

/// A 3M frame that cannot be read, saying what and where (offsets count from the start
/// byte at offset 0).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the smallest frame.
    #[error("frame is {len} bytes; the shortest 3M frame is 6 (start, LEN, command, CRC)")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The first byte is not a start byte.
    #[error("offset 0: start byte {found:#04x} is neither D6 nor D5")]
    BadStart {
        /// The byte found.
        found: u8,
    },
    /// LEN is smaller than a command plus CRC, or larger than this crate accepts.
    #[error("offset 1: LEN {declared} is outside {MIN_LEN_FIELD}..={MAX_LEN_FIELD}")]
    LengthOutOfRange {
        /// LEN as sent.
        declared: usize,
    },
    /// LEN does not match the bytes that follow it.
    #[error("offset 1: LEN says {declared} bytes follow, {actual} do")]
    LengthMismatch {
        /// LEN as sent.
        declared: usize,
        /// Bytes after LEN.
        actual: usize,
    },
    /// The CRC does not match the frame's bytes.
    #[error("offset {offset}: CRC {found:04X} does not match the computed {computed:04X}")]
    BadCrc {
        /// Offset of the CRC.
        offset: usize,
        /// CRC as sent.
        found: u16,
        /// CRC computed over LEN through the last data byte.
        computed: u16,
    },
    /// A field runs past the end of the frame.
    #[error(
        "command {command:02X}, offset {offset}: {field} needs {needed} bytes, only {available} left"
    )]
    Truncated {
        /// The command byte.
        command: u8,
        /// The field being read.
        field: &'static str,
        /// Offset of the field in the frame.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes are left after the last field.
    #[error(
        "command {command:02X}, offset {offset}: {extra} unexpected bytes after the last field"
    )]
    Trailing {
        /// The command byte.
        command: u8,
        /// Offset of the first extra byte.
        offset: usize,
        /// How many bytes are extra.
        extra: usize,
    },
    /// A field has a value the protocol does not allow.
    #[error("command {command:02X}, offset {offset}: {field}: {message}")]
    Field {
        /// The command byte.
        command: u8,
        /// The field.
        field: &'static str,
        /// Offset of the field in the frame.
        offset: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A body too long for one frame was given to the encoder.
    #[error("a body of {len} bytes does not fit one frame (LEN at most {MAX_LEN_FIELD})")]
    TooLong {
        /// Body length.
        len: usize,
    },
}

/// Which start byte a frame has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Start {
    /// `D6`: commands and replies.
    Command,
    /// `D5`: the hardware-version probe of 3M software.
    Probe,
}

impl Start {
    /// The start byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Self::Command => START,
            Self::Probe => PROBE_START,
        }
    }

    /// The start for a byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            START => Some(Self::Command),
            PROBE_START => Some(Self::Probe),
            _ => None,
        }
    }
}

/// The envelope of one frame: start byte, command byte and the bytes between command and
/// CRC. A reply's error byte is the first body byte.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The start byte.
    pub start: Start,
    /// The command byte.
    pub command: u8,
    /// Everything between the command byte and the CRC.
    pub body: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame({:02X} {:02X} {})",
            self.start.byte(),
            self.command,
            hex::encode_upper(&self.body)
        )
    }
}

/// A CRC as sent and as computed, for tools that show bad frames instead of refusing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcCheck {
    /// The CRC the frame carries.
    pub sent: u16,
    /// The CRC computed over its bytes.
    pub computed: u16,
}

impl CrcCheck {
    /// Whether the frame's CRC is right.
    pub fn is_valid(self) -> bool {
        self.sent == self.computed
    }
}

impl Frame {
    /// A `D6` frame.
    pub fn new(command: u8, body: impl Into<Vec<u8>>) -> Self {
        Self {
            start: Start::Command,
            command,
            body: body.into(),
        }
    }

    /// The whole frame's length on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + 1 + self.body.len() + CRC_LEN
    }

    /// Appends the frame, with LEN and CRC, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len_field = 1 + self.body.len() + CRC_LEN;
        let len = u16::try_from(len_field)
            .ok()
            .filter(|_| len_field <= MAX_LEN_FIELD)
            .ok_or(FrameError::TooLong {
                len: self.body.len(),
            })?;
        out.reserve(self.wire_len());
        out.push(self.start.byte());
        let crc_from = out.len();
        out.extend_from_slice(&len.to_be_bytes());
        out.push(self.command);
        out.extend_from_slice(&self.body);
        let crc = checksum(out.get(crc_from..).unwrap_or_default());
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(())
    }

    /// The frame as bytes on the wire.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(self.wire_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Reads exactly one frame and checks its CRC.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        let (frame, crc) = Self::parse_unchecked(bytes)?;
        if crc.is_valid() {
            Ok(frame)
        } else {
            Err(FrameError::BadCrc {
                offset: bytes.len().saturating_sub(CRC_LEN),
                found: crc.sent,
                computed: crc.computed,
            })
        }
    }

    /// Reads exactly one frame, returning its CRC check instead of refusing a bad CRC
    /// (for `rfidgw frame decode` on captured traffic).
    pub fn parse_unchecked(bytes: &[u8]) -> Result<(Self, CrcCheck), FrameError> {
        let [first, len_hi, len_lo, command, ..] = *bytes else {
            return Err(FrameError::TooShort { len: bytes.len() });
        };
        let start = Start::from_byte(first).ok_or(FrameError::BadStart { found: first })?;
        let declared = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if !(MIN_LEN_FIELD..=MAX_LEN_FIELD).contains(&declared) {
            return Err(FrameError::LengthOutOfRange { declared });
        }
        let actual = bytes.len() - HEADER_LEN;
        if declared != actual {
            return Err(FrameError::LengthMismatch { declared, actual });
        }
        // `declared >= MIN_LEN_FIELD` and `actual == declared`, so these ranges exist.
        let crc_at = bytes.len() - CRC_LEN;
        let body = bytes.get(BODY_OFFSET..crc_at).unwrap_or_default().to_vec();
        let sent = match bytes.get(crc_at..) {
            Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
            _ => return Err(FrameError::TooShort { len: bytes.len() }),
        };
        let computed = checksum(bytes.get(1..crc_at).unwrap_or_default());
        Ok((
            Self {
                start,
                command,
                body,
            },
            CrcCheck { sent, computed },
        ))
    }
}

/// The commands of the Model 210 spec (§4.3 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `FE` Read Block UID: the inventory.
    Inventory,
    /// `11` reader version.
    Version,
    /// `14` ISO 15693 pass-through.
    IsoPassThrough,
    /// `01` quiet.
    Quiet,
    /// `02` read multiblock.
    ReadMultiblock,
    /// `04` write multiblock.
    WriteMultiblock,
    /// `05` write block.
    WriteBlock,
    /// `07` write and lock block.
    WriteLockBlock,
    /// `08` lock block.
    LockBlock,
    /// `0A` get AFI.
    GetAfi,
    /// `09` write AFI.
    WriteAfi,
    /// `06` lock AFI.
    LockAfi,
    /// `03` check EAS.
    CheckEas,
    /// `0C` EAS control (set / reset the NXP EAS bit).
    EasControl,
    /// `0F` get DSFID.
    GetDsfid,
    /// `0B` write DSFID.
    WriteDsfid,
    /// `0E` lock DSFID.
    LockDsfid,
    /// `0D` tag info.
    TagInfo,
    /// `13`, sent by 3M software at start-up; meaning unknown.
    StartUp,
}

impl Command {
    /// Every command, for tables and tests.
    pub const ALL: [Self; 19] = [
        Self::Inventory,
        Self::Version,
        Self::IsoPassThrough,
        Self::Quiet,
        Self::ReadMultiblock,
        Self::WriteMultiblock,
        Self::WriteBlock,
        Self::WriteLockBlock,
        Self::LockBlock,
        Self::GetAfi,
        Self::WriteAfi,
        Self::LockAfi,
        Self::CheckEas,
        Self::EasControl,
        Self::GetDsfid,
        Self::WriteDsfid,
        Self::LockDsfid,
        Self::TagInfo,
        Self::StartUp,
    ];

    /// The command byte.
    pub fn code(self) -> u8 {
        match self {
            Self::Inventory => 0xFE,
            Self::Version => 0x11,
            Self::IsoPassThrough => 0x14,
            Self::Quiet => 0x01,
            Self::ReadMultiblock => 0x02,
            Self::WriteMultiblock => 0x04,
            Self::WriteBlock => 0x05,
            Self::WriteLockBlock => 0x07,
            Self::LockBlock => 0x08,
            Self::GetAfi => 0x0A,
            Self::WriteAfi => 0x09,
            Self::LockAfi => 0x06,
            Self::CheckEas => 0x03,
            Self::EasControl => 0x0C,
            Self::GetDsfid => 0x0F,
            Self::WriteDsfid => 0x0B,
            Self::LockDsfid => 0x0E,
            Self::TagInfo => 0x0D,
            Self::StartUp => 0x13,
        }
    }

    /// The command for a byte, if the spec names it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The spec's name of the command.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inventory => "Read Block UID (inventory)",
            Self::Version => "reader version",
            Self::IsoPassThrough => "ISO pass-through",
            Self::Quiet => "quiet",
            Self::ReadMultiblock => "read multiblock",
            Self::WriteMultiblock => "write multiblock",
            Self::WriteBlock => "write block",
            Self::WriteLockBlock => "write and lock block",
            Self::LockBlock => "lock block",
            Self::GetAfi => "get AFI",
            Self::WriteAfi => "write AFI",
            Self::LockAfi => "lock AFI",
            Self::CheckEas => "check EAS",
            Self::EasControl => "EAS control",
            Self::GetDsfid => "get DSFID",
            Self::WriteDsfid => "write DSFID",
            Self::LockDsfid => "lock DSFID",
            Self::TagInfo => "tag info",
            Self::StartUp => "start-up (meaning unknown)",
        }
    }
}

/// The error byte of a reply (§4.3 error codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `00`: no error.
    Ok,
    /// `02`: command not implemented.
    NotImplemented,
    /// `06`: no transponder (the most common; also "the tag left the field").
    NoTransponder,
    /// `0F`: unknown error.
    Unknown,
    /// `11`: memory not available.
    MemoryNotAvailable,
    /// `12`: locked.
    Locked,
    /// `15`: read error.
    ReadError,
    /// `16`: write error.
    WriteError,
    /// `21`: ISO 15693 error 01 (command not supported).
    Iso01,
    /// `22`: ISO 15693 error 02 (command not recognised).
    Iso02,
    /// `23`: ISO 15693 error 03 (option not supported).
    Iso03,
    /// `30`: not supported by this tag.
    NotSupportedByTag,
    /// `31`: option not supported.
    OptionNotSupported,
    /// `32`: parameter error.
    ParameterError,
    /// `FD`: cancelled by the host.
    CancelledByHost,
    /// `FE`: the reader is out of memory.
    OutOfMemory,
    /// A code the spec does not list.
    Other(u8),
}

impl ErrorCode {
    /// The error code for a byte.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => Self::Ok,
            0x02 => Self::NotImplemented,
            0x06 => Self::NoTransponder,
            0x0F => Self::Unknown,
            0x11 => Self::MemoryNotAvailable,
            0x12 => Self::Locked,
            0x15 => Self::ReadError,
            0x16 => Self::WriteError,
            0x21 => Self::Iso01,
            0x22 => Self::Iso02,
            0x23 => Self::Iso03,
            0x30 => Self::NotSupportedByTag,
            0x31 => Self::OptionNotSupported,
            0x32 => Self::ParameterError,
            0xFD => Self::CancelledByHost,
            0xFE => Self::OutOfMemory,
            other => Self::Other(other),
        }
    }

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0x00,
            Self::NotImplemented => 0x02,
            Self::NoTransponder => 0x06,
            Self::Unknown => 0x0F,
            Self::MemoryNotAvailable => 0x11,
            Self::Locked => 0x12,
            Self::ReadError => 0x15,
            Self::WriteError => 0x16,
            Self::Iso01 => 0x21,
            Self::Iso02 => 0x22,
            Self::Iso03 => 0x23,
            Self::NotSupportedByTag => 0x30,
            Self::OptionNotSupported => 0x31,
            Self::ParameterError => 0x32,
            Self::CancelledByHost => 0xFD,
            Self::OutOfMemory => 0xFE,
            Self::Other(code) => code,
        }
    }

    /// What the spec says the code means.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NotImplemented => "command not implemented",
            Self::NoTransponder => "no transponder",
            Self::Unknown => "unknown error",
            Self::MemoryNotAvailable => "memory not available",
            Self::Locked => "locked",
            Self::ReadError => "read error",
            Self::WriteError => "write error",
            Self::Iso01 => "ISO 15693 error 01 (not supported)",
            Self::Iso02 => "ISO 15693 error 02 (not recognised)",
            Self::Iso03 => "ISO 15693 error 03 (option not supported)",
            Self::NotSupportedByTag => "not supported by this tag",
            Self::OptionNotSupported => "option not supported",
            Self::ParameterError => "parameter error",
            Self::CancelledByHost => "cancelled by host",
            Self::OutOfMemory => "reader out of memory",
            Self::Other(_) => "error code not in the spec",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X} {}", self.code(), self.meaning())
    }
}

/// Option bits of the `FE` inventory request (§4.3).
pub mod inventory_options {
    /// Bit 0: return the UID of each tag.
    pub const RETURN_UID: u8 = 0x01;
    /// Bit 1: return the DSFID of each tag (before its UID).
    pub const RETURN_DSFID: u8 = 0x02;
    /// Bit 5: skip the quiet and the second poll.
    pub const SKIP_QUIET: u8 = 0x20;
    /// Bit 6: a protocols byte follows the options.
    pub const PROTOCOLS: u8 = 0x40;
    /// The options 3M software and Biblio-RFID send (`FE 00 05`, verified frame).
    pub const COMMON: u8 = 0x05;
}

/// Option bits of the `02` read multiblock request (§4.3).
pub mod read_options {
    /// Bit 2: "new style" reply (first block, count, {lock, data}).
    pub const NEW_STYLE: u8 = 0x04;
    /// Bit 3: no lock byte in a new style reply.
    pub const NO_LOCK_BYTE: u8 = 0x08;
}

/// The layout of a read multiblock reply, chosen by the request's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadStyle {
    /// UID, count, {block number, lock/error, data}… (no options, the default).
    Old,
    /// UID, first block, count, {\[lock\], data}… (option bit 2).
    New {
        /// Whether each block carries a lock byte (option bit 3 clear).
        lock_byte: bool,
    },
}

impl ReadStyle {
    /// The style a request with these options gets.
    pub fn from_options(options: Option<u8>) -> Self {
        match options {
            Some(o) if o & read_options::NEW_STYLE != 0 => Self::New {
                lock_byte: o & read_options::NO_LOCK_BYTE == 0,
            },
            _ => Self::Old,
        }
    }
}

/// An 8-byte tag id, MSB first as the 3M reader sends it.
pub type TagUid = [u8; UID_LEN];

/// A host-to-reader command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// `FE` Read Block UID (inventory).
    Inventory {
        /// Only tags with this AFI answer; `00` = all (ISO 15693-3, PROTOCOLS.md §3.2).
        afi: u8,
        /// Option bits, see [`inventory_options`].
        options: u8,
        /// The protocols byte, present when option bit 6 is set.
        protocols: Option<u8>,
    },
    /// `11` reader version.
    Version,
    /// `02` read multiblock.
    ReadMultiblock {
        /// The tag.
        uid: TagUid,
        /// First block.
        first: u8,
        /// Number of blocks (the real number, not "number − 1").
        count: u8,
        /// Reply layout options, see [`read_options`].
        options: Option<u8>,
    },
    /// `04` write multiblock.
    WriteMultiblock {
        /// The tag.
        uid: TagUid,
        /// First block.
        first: u8,
        /// Number of blocks.
        count: u8,
        /// The flags byte (`00` in every known capture).
        flags: u8,
        /// The block data, `count` blocks.
        data: Vec<u8>,
    },
    /// `0A` get AFI.
    GetAfi {
        /// The tag.
        uid: TagUid,
    },
    /// `09` write AFI.
    WriteAfi {
        /// The tag.
        uid: TagUid,
        /// The new AFI.
        afi: u8,
    },
    /// `03` check EAS.
    CheckEas {
        /// The tag.
        uid: TagUid,
    },
    /// `0C` EAS control: set (`01`) or reset (`00`) the NXP EAS bit.
    EasControl {
        /// The tag.
        uid: TagUid,
        /// Set (true) or reset (false).
        on: bool,
    },
    /// A `D6` command this crate does not model, kept as bytes.
    Other {
        /// The command byte.
        command: u8,
        /// The bytes after it.
        body: Vec<u8>,
    },
    /// A `D5` hardware probe, kept as bytes.
    Probe {
        /// The first byte after LEN.
        command: u8,
        /// The bytes after it.
        body: Vec<u8>,
    },
}

/// One tag in an inventory reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InventoryTag {
    /// DSFID, when option bit 1 asked for it.
    pub dsfid: Option<u8>,
    /// UID, when option bit 0 asked for it.
    pub uid: Option<TagUid>,
}

/// One block of a read multiblock reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockRead {
    /// Block number.
    pub number: u8,
    /// Lock byte: `00` none, `01` user, `02` factory, `03` both, above `03` an error for this
    /// block. `None` when the request dropped it (option bit 3).
    pub lock: Option<u8>,
    /// The block's bytes as sent.
    pub data: Vec<u8>,
}

/// A reader-to-host reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `FE` inventory reply.
    Inventory {
        /// The AFI asked for, echoed.
        afi: u8,
        /// The options asked for, echoed.
        options: u8,
        /// The tags, as many as the count byte says (duplicates possible, §4.3).
        tags: Vec<InventoryTag>,
    },
    /// `11` reader version: 4 bytes, the first `0A` for 3M readers.
    Version([u8; 4]),
    /// `02` read multiblock reply.
    ReadMultiblock {
        /// The tag, echoed.
        uid: TagUid,
        /// Which layout the reply used.
        style: ReadStyle,
        /// The blocks in the order sent.
        blocks: Vec<BlockRead>,
    },
    /// `04` write multiblock reply.
    WriteMultiblock {
        /// The tag, echoed.
        uid: TagUid,
        /// The error block, or the last written block + 1.
        next_block: u8,
    },
    /// `0A` get AFI reply.
    GetAfi {
        /// The tag, echoed.
        uid: TagUid,
        /// The tag's AFI.
        afi: u8,
    },
    /// `09` write AFI reply.
    WriteAfi {
        /// The tag, echoed.
        uid: TagUid,
    },
    /// `03` check EAS reply, error byte `00`. Pads answer it in two forms (firmware
    /// differs): UID and EAS byte, or the UID alone. An EAS-off tag answers error `06`
    /// instead (a [`Reply::Refused`]); see [`Reply::eas_on`] for what each form means.
    CheckEas {
        /// The tag, echoed.
        uid: TagUid,
        /// The EAS byte as sent (non-zero = security on); `None` in the UID-only form.
        eas: Option<u8>,
    },
    /// `0C` EAS control reply.
    EasControl {
        /// The tag, echoed.
        uid: TagUid,
    },
    /// Any command answered with a non-zero error byte.
    Refused {
        /// The command byte.
        command: u8,
        /// The error byte.
        error: ErrorCode,
        /// Whatever followed the error byte (usually the UID echo).
        detail: Vec<u8>,
    },
    /// A `D6` command this crate does not model, answered OK.
    Other {
        /// The command byte.
        command: u8,
        /// The bytes after the error byte.
        body: Vec<u8>,
    },
    /// A `D5` hardware probe reply, kept as bytes.
    Probe {
        /// The first byte after LEN.
        command: u8,
        /// The bytes after it.
        body: Vec<u8>,
    },
}

/// A cursor over a frame's body that names fields and offsets in its errors.
struct Fields<'a> {
    command: u8,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(frame: &'a Frame) -> Self {
        Self {
            command: frame.command,
            bytes: &frame.body,
            pos: 0,
        }
    }

    fn offset(&self) -> usize {
        BODY_OFFSET + self.pos
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, needed: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        let end = self.pos.checked_add(needed);
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += needed;
                Ok(slice)
            }
            None => Err(FrameError::Truncated {
                command: self.command,
                field,
                offset: self.offset(),
                needed,
                available: self.remaining(),
            }),
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        match self.take(1, field)? {
            [b] => Ok(*b),
            _ => Err(self.field_error(field, "missing".into())),
        }
    }

    fn uid(&mut self) -> Result<TagUid, FrameError> {
        let bytes = self.take(UID_LEN, "UID")?;
        TagUid::try_from(bytes).map_err(|_| self.field_error("UID", "not 8 bytes".into()))
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos = self.bytes.len();
        rest
    }

    fn field_error(&self, field: &'static str, message: String) -> FrameError {
        FrameError::Field {
            command: self.command,
            field,
            offset: self.offset(),
            message,
        }
    }

    fn finish(&self) -> Result<(), FrameError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(FrameError::Trailing {
                command: self.command,
                offset: self.offset(),
                extra,
            }),
        }
    }
}

impl Request {
    /// The command byte.
    pub fn command(&self) -> u8 {
        match self {
            Self::Inventory { .. } => Command::Inventory.code(),
            Self::Version => Command::Version.code(),
            Self::ReadMultiblock { .. } => Command::ReadMultiblock.code(),
            Self::WriteMultiblock { .. } => Command::WriteMultiblock.code(),
            Self::GetAfi { .. } => Command::GetAfi.code(),
            Self::WriteAfi { .. } => Command::WriteAfi.code(),
            Self::CheckEas { .. } => Command::CheckEas.code(),
            Self::EasControl { .. } => Command::EasControl.code(),
            Self::Other { command, .. } | Self::Probe { command, .. } => *command,
        }
    }

    /// The frame carrying this request.
    pub fn to_frame(&self) -> Frame {
        let mut body = Vec::new();
        match self {
            Self::Inventory {
                afi,
                options,
                protocols,
            } => {
                body.extend([*afi, *options]);
                body.extend(*protocols);
            }
            Self::Version => {}
            Self::ReadMultiblock {
                uid,
                first,
                count,
                options,
            } => {
                body.extend_from_slice(uid);
                body.extend([*first, *count]);
                body.extend(*options);
            }
            Self::WriteMultiblock {
                uid,
                first,
                count,
                flags,
                data,
            } => {
                body.extend_from_slice(uid);
                body.extend([*first, *count, *flags]);
                body.extend_from_slice(data);
            }
            Self::GetAfi { uid } | Self::CheckEas { uid } => body.extend_from_slice(uid),
            Self::WriteAfi { uid, afi } => {
                body.extend_from_slice(uid);
                body.push(*afi);
            }
            Self::EasControl { uid, on } => {
                body.extend_from_slice(uid);
                body.push(u8::from(*on));
            }
            Self::Other { body: b, .. } => body.extend_from_slice(b),
            Self::Probe { command, body: b } => {
                return Frame {
                    start: Start::Probe,
                    command: *command,
                    body: b.clone(),
                };
            }
        }
        Frame::new(self.command(), body)
    }

    /// Reads a request from a frame (CRC already checked by the caller).
    pub fn parse(frame: &Frame) -> Result<Self, FrameError> {
        if frame.start == Start::Probe {
            return Ok(Self::Probe {
                command: frame.command,
                body: frame.body.clone(),
            });
        }
        let mut f = Fields::new(frame);
        let request = match Command::from_code(frame.command) {
            Some(Command::Inventory) => {
                let afi = f.u8("AFI")?;
                let options = f.u8("options")?;
                let protocols = if options & inventory_options::PROTOCOLS != 0 {
                    Some(f.u8("protocols")?)
                } else {
                    None
                };
                Self::Inventory {
                    afi,
                    options,
                    protocols,
                }
            }
            Some(Command::Version) => Self::Version,
            Some(Command::ReadMultiblock) => {
                let uid = f.uid()?;
                let first = f.u8("first block")?;
                let count = f.u8("block count")?;
                let options = if f.remaining() > 0 {
                    Some(f.u8("options")?)
                } else {
                    None
                };
                Self::ReadMultiblock {
                    uid,
                    first,
                    count,
                    options,
                }
            }
            Some(Command::WriteMultiblock) => {
                let uid = f.uid()?;
                let first = f.u8("first block")?;
                let count = f.u8("block count")?;
                let flags = f.u8("flags")?;
                let at = f.offset();
                let data = f.rest().to_vec();
                let fits = match usize::from(count) {
                    0 => data.is_empty(),
                    n => !data.is_empty() && data.len().is_multiple_of(n),
                };
                if !fits {
                    return Err(FrameError::Field {
                        command: frame.command,
                        field: "block data",
                        offset: at,
                        message: format!("{} bytes do not divide into {count} blocks", data.len()),
                    });
                }
                Self::WriteMultiblock {
                    uid,
                    first,
                    count,
                    flags,
                    data,
                }
            }
            Some(Command::GetAfi) => Self::GetAfi { uid: f.uid()? },
            Some(Command::WriteAfi) => {
                let uid = f.uid()?;
                Self::WriteAfi {
                    uid,
                    afi: f.u8("AFI")?,
                }
            }
            Some(Command::CheckEas) => Self::CheckEas { uid: f.uid()? },
            Some(Command::EasControl) => {
                let uid = f.uid()?;
                let value = f.u8("EAS value")?;
                let on = match value {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(FrameError::Field {
                            command: frame.command,
                            field: "EAS value",
                            offset: f.offset() - 1,
                            message: format!("{other:02X} is neither 00 (reset) nor 01 (set)"),
                        });
                    }
                };
                Self::EasControl { uid, on }
            }
            _ => Self::Other {
                command: frame.command,
                body: f.rest().to_vec(),
            },
        };
        f.finish()?;
        Ok(request)
    }
}

impl Reply {
    /// The command byte.
    pub fn command(&self) -> u8 {
        match self {
            Self::Inventory { .. } => Command::Inventory.code(),
            Self::Version(_) => Command::Version.code(),
            Self::ReadMultiblock { .. } => Command::ReadMultiblock.code(),
            Self::WriteMultiblock { .. } => Command::WriteMultiblock.code(),
            Self::GetAfi { .. } => Command::GetAfi.code(),
            Self::WriteAfi { .. } => Command::WriteAfi.code(),
            Self::CheckEas { .. } => Command::CheckEas.code(),
            Self::EasControl { .. } => Command::EasControl.code(),
            Self::Refused { command, .. }
            | Self::Other { command, .. }
            | Self::Probe { command, .. } => *command,
        }
    }

    /// The error byte (`00` unless refused).
    pub fn error(&self) -> ErrorCode {
        match self {
            Self::Refused { error, .. } => *error,
            _ => ErrorCode::Ok,
        }
    }

    /// What a check EAS reply says about the tag's EAS bit; `None` for any other reply.
    ///
    /// * UID + EAS byte: the byte decides (non-zero = on).
    /// * UID only: **on**. The spec gives check EAS no "EAS off" success answer: an
    ///   EAS-off tag answers error `06` (§4.3, "error 06 ⇒ EAS 0"), so an error `00`
    ///   answer without an EAS byte can only mean the tag answered with its EAS set.
    ///   The field report in issue 8 agrees: that pad failed on every secured tag and on
    ///   no other, so it sent this form exactly for secured tags. **[unverified]**: no
    ///   capture or document of that firmware settles it.
    /// * Error `06` is not decided here: it means "EAS off" or "no tag"; the driver asks
    ///   the tag's AFI to tell them apart.
    pub fn eas_on(&self) -> Option<bool> {
        match self {
            Self::CheckEas {
                eas: Some(byte), ..
            } => Some(*byte != 0),
            Self::CheckEas { eas: None, .. } => Some(true),
            _ => None,
        }
    }

    /// The frame carrying this reply.
    pub fn to_frame(&self) -> Frame {
        let mut body = vec![self.error().code()];
        match self {
            Self::Inventory { afi, options, tags } => {
                body.extend([*afi, *options]);
                // A reply longer than 255 tags cannot be expressed; the simulator never
                // puts more tags in its field than the count byte can carry.
                body.push(u8::try_from(tags.len()).unwrap_or(u8::MAX));
                for tag in tags.iter().take(usize::from(u8::MAX)) {
                    body.extend(tag.dsfid);
                    if let Some(uid) = &tag.uid {
                        body.extend_from_slice(uid);
                    }
                }
            }
            Self::Version(version) => body.extend_from_slice(version),
            Self::ReadMultiblock { uid, style, blocks } => {
                body.extend_from_slice(uid);
                let count = u8::try_from(blocks.len()).unwrap_or(u8::MAX);
                let blocks = blocks.iter().take(usize::from(u8::MAX));
                match style {
                    ReadStyle::Old => {
                        body.push(count);
                        for block in blocks {
                            body.push(block.number);
                            body.push(block.lock.unwrap_or(0));
                            body.extend_from_slice(&block.data);
                        }
                    }
                    ReadStyle::New { lock_byte } => {
                        let first = self.first_block();
                        body.extend([first, count]);
                        for block in blocks {
                            if *lock_byte {
                                body.push(block.lock.unwrap_or(0));
                            }
                            body.extend_from_slice(&block.data);
                        }
                    }
                }
            }
            Self::WriteMultiblock { uid, next_block } => {
                body.extend_from_slice(uid);
                body.push(*next_block);
            }
            Self::GetAfi { uid, afi } => {
                body.extend_from_slice(uid);
                body.push(*afi);
            }
            Self::WriteAfi { uid } | Self::EasControl { uid } => body.extend_from_slice(uid),
            Self::CheckEas { uid, eas } => {
                body.extend_from_slice(uid);
                body.extend(*eas);
            }
            Self::Refused { detail, .. } => body.extend_from_slice(detail),
            Self::Other { body: b, .. } => body.extend_from_slice(b),
            Self::Probe { command, body: b } => {
                return Frame {
                    start: Start::Probe,
                    command: *command,
                    body: b.clone(),
                };
            }
        }
        Frame::new(self.command(), body)
    }

    fn first_block(&self) -> u8 {
        match self {
            Self::ReadMultiblock { blocks, .. } => blocks.first().map_or(0, |b| b.number),
            _ => 0,
        }
    }

    /// Reads a reply from a frame (CRC already checked by the caller). `style` is the
    /// layout the read multiblock request asked for; other replies ignore it.
    pub fn parse(frame: &Frame, style: ReadStyle) -> Result<Self, FrameError> {
        if frame.start == Start::Probe {
            return Ok(Self::Probe {
                command: frame.command,
                body: frame.body.clone(),
            });
        }
        let mut f = Fields::new(frame);
        let error = ErrorCode::from_code(f.u8("error")?);
        if error != ErrorCode::Ok {
            return Ok(Self::Refused {
                command: frame.command,
                error,
                detail: f.rest().to_vec(),
            });
        }
        let reply = match Command::from_code(frame.command) {
            Some(Command::Inventory) => {
                let afi = f.u8("AFI")?;
                let options = f.u8("options")?;
                let count = f.u8("tag count")?;
                let with_dsfid = options & inventory_options::RETURN_DSFID != 0;
                let with_uid = options & inventory_options::RETURN_UID != 0;
                let mut tags = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let dsfid = if with_dsfid {
                        Some(f.u8("DSFID")?)
                    } else {
                        None
                    };
                    let uid = if with_uid { Some(f.uid()?) } else { None };
                    tags.push(InventoryTag { dsfid, uid });
                }
                Self::Inventory { afi, options, tags }
            }
            Some(Command::Version) => {
                let bytes = f.take(4, "version")?;
                let version = <[u8; 4]>::try_from(bytes)
                    .map_err(|_| f.field_error("version", "not 4 bytes".into()))?;
                Self::Version(version)
            }
            Some(Command::ReadMultiblock) => parse_read_reply(&mut f, style)?,
            Some(Command::WriteMultiblock) => {
                let uid = f.uid()?;
                Self::WriteMultiblock {
                    uid,
                    next_block: f.u8("next block")?,
                }
            }
            Some(Command::GetAfi) => {
                let uid = f.uid()?;
                Self::GetAfi {
                    uid,
                    afi: f.u8("AFI")?,
                }
            }
            Some(Command::WriteAfi) => Self::WriteAfi { uid: f.uid()? },
            Some(Command::CheckEas) => {
                let uid = f.uid()?;
                // Both firmware forms (UID + EAS byte, UID only) are answers; more bytes
                // than one EAS byte are refused by `finish` below.
                let eas = if f.remaining() > 0 {
                    Some(f.u8("EAS")?)
                } else {
                    None
                };
                Self::CheckEas { uid, eas }
            }
            Some(Command::EasControl) => Self::EasControl { uid: f.uid()? },
            _ => Self::Other {
                command: frame.command,
                body: f.rest().to_vec(),
            },
        };
        f.finish()?;
        Ok(reply)
    }
}

/// Reads the blocks of a read multiblock reply. The block size is what the reply's length
/// gives (4 on ICODE SLIX and Tag-it, 8 on some other tags), so it is derived, not assumed.
fn parse_read_reply(f: &mut Fields<'_>, style: ReadStyle) -> Result<Reply, FrameError> {
    let uid = f.uid()?;
    let first = match style {
        ReadStyle::Old => None,
        ReadStyle::New { .. } => Some(f.u8("first block")?),
    };
    let count = f.u8("block count")?;
    let per_block_overhead = match style {
        ReadStyle::Old => 2,
        ReadStyle::New { lock_byte: true } => 1,
        ReadStyle::New { lock_byte: false } => 0,
    };
    let size = if count == 0 {
        0
    } else {
        let remaining = f.remaining();
        let n = usize::from(count);
        let per = remaining / n;
        let size = per.saturating_sub(per_block_overhead);
        if !remaining.is_multiple_of(n) || size == 0 || size > MAX_BLOCK_SIZE {
            return Err(f.field_error(
                "blocks",
                format!(
                    "{remaining} bytes do not make {count} blocks of 1 to {MAX_BLOCK_SIZE} bytes"
                ),
            ));
        }
        size
    };
    let mut blocks = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let block = if let (ReadStyle::New { lock_byte }, Some(first)) = (style, first) {
            let number = first.checked_add(i).ok_or_else(|| {
                f.field_error(
                    "first block",
                    format!("{first} + {count} blocks passes block 255"),
                )
            })?;
            let lock = if lock_byte { Some(f.u8("lock")?) } else { None };
            BlockRead {
                number,
                lock,
                data: f.take(size, "block data")?.to_vec(),
            }
        } else {
            let number = f.u8("block number")?;
            let lock = Some(f.u8("lock")?);
            BlockRead {
                number,
                lock,
                data: f.take(size, "block data")?.to_vec(),
            }
        };
        blocks.push(block);
    }
    Ok(Reply::ReadMultiblock { uid, style, blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: TagUid = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

    #[test]
    fn crc_of_the_spec_example_is_12e6() {
        let bytes = hex::decode("0009030002000000 03".replace(' ', "")).unwrap();
        assert_eq!(checksum(&bytes), 0x12E6);
    }

    #[test]
    fn every_command_code_maps_back_to_its_command() {
        for command in Command::ALL {
            assert_eq!(
                Command::from_code(command.code()),
                Some(command),
                "{command:?}"
            );
        }
        assert_eq!(Command::from_code(0x55), None);
    }

    #[test]
    fn every_error_code_maps_back_to_its_byte() {
        for code in 0..=u8::MAX {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert_eq!(ErrorCode::from_code(0x06), ErrorCode::NoTransponder);
        assert_eq!(ErrorCode::from_code(0x06).to_string(), "06 no transponder");
    }

    #[test]
    fn malformed_frames_are_refused_with_what_and_where() {
        let cases: &[(&str, &str)] = &[
            ("D600", "shortest 3M frame"),
            ("AA0005FE0005FA40", "offset 0: start byte 0xaa"),
            ("D60002FE0005FA40", "LEN 2 is outside"),
            ("D60006FE0005FA40", "LEN says 6 bytes follow, 5 do"),
            (
                "D60005FE0005FA41",
                "offset 6: CRC FA41 does not match the computed FA40",
            ),
        ];
        for (hex, needle) in cases {
            let err = Frame::parse(&hex::decode(hex).unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{hex}: {err}");
        }
    }

    #[test]
    fn field_errors_name_the_command_field_and_offset() {
        let short = Frame::new(0x09, UID[..5].to_vec());
        let err = Request::parse(&short).unwrap_err().to_string();
        assert_eq!(err, "command 09, offset 4: UID needs 8 bytes, only 5 left");
        let mut body = UID.to_vec();
        body.extend([0x07, 0x99]);
        let err = Request::parse(&Frame::new(0x09, body))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "command 09, offset 13: 1 unexpected bytes after the last field"
        );
        let mut body = UID.to_vec();
        body.push(0x05);
        let err = Request::parse(&Frame::new(0x0C, body))
            .unwrap_err()
            .to_string();
        assert!(err.contains("offset 12: EAS value: 05 is neither"), "{err}");
    }

    #[test]
    fn read_replies_of_both_styles_round_trip() {
        let blocks = |lock: Option<u8>| {
            (3..6)
                .map(|n| BlockRead {
                    number: n,
                    lock,
                    data: vec![n, n, n, n],
                })
                .collect::<Vec<_>>()
        };
        for (style, lock) in [
            (ReadStyle::Old, Some(0)),
            (ReadStyle::New { lock_byte: true }, Some(1)),
            (ReadStyle::New { lock_byte: false }, None),
        ] {
            let reply = Reply::ReadMultiblock {
                uid: UID,
                style,
                blocks: blocks(lock),
            };
            let frame = reply.to_frame();
            assert_eq!(Reply::parse(&frame, style).unwrap(), reply, "{style:?}");
        }
    }

    #[test]
    fn a_read_reply_whose_length_does_not_divide_into_blocks_is_refused() {
        let mut body = vec![0x00];
        body.extend_from_slice(&UID);
        body.extend([0x02, 0, 0, 1, 2, 3, 4, 1, 0, 1, 2, 3]);
        let err = Reply::parse(&Frame::new(0x02, body), ReadStyle::Old).unwrap_err();
        assert!(
            err.to_string().contains("11 bytes do not make 2 blocks"),
            "{err}"
        );
    }

    #[test]
    fn check_eas_replies_of_both_firmware_forms_and_error_06_are_answers() {
        let uid = hex::encode_upper(UID);
        // (body after the command byte, reply, what it says about EAS)
        let cases: &[(String, Reply, Option<bool>)] = &[
            (
                format!("00{uid}01"),
                Reply::CheckEas {
                    uid: UID,
                    eas: Some(0x01),
                },
                Some(true),
            ),
            (
                format!("00{uid}00"),
                Reply::CheckEas {
                    uid: UID,
                    eas: Some(0x00),
                },
                Some(false),
            ),
            (
                format!("00{uid}"),
                Reply::CheckEas {
                    uid: UID,
                    eas: None,
                },
                Some(true),
            ),
            (
                format!("06{uid}"),
                Reply::Refused {
                    command: 0x03,
                    error: ErrorCode::NoTransponder,
                    detail: UID.to_vec(),
                },
                None,
            ),
            (
                "06".to_owned(),
                Reply::Refused {
                    command: 0x03,
                    error: ErrorCode::NoTransponder,
                    detail: Vec::new(),
                },
                None,
            ),
        ];
        for (body, want, eas_on) in cases {
            let frame = Frame::new(0x03, hex::decode(body).unwrap());
            let bytes = frame.to_bytes().unwrap();
            let reply = Reply::parse(&Frame::parse(&bytes).unwrap(), ReadStyle::Old)
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(&reply, want, "{body}");
            assert_eq!(reply.eas_on(), *eas_on, "{body}");
            assert_eq!(reply.to_frame(), frame, "{body} round-trips");
        }
    }

    #[test]
    fn check_eas_replies_that_fit_neither_form_are_refused_with_the_offset() {
        let uid = hex::encode_upper(UID);
        let cases: &[(String, &str)] = &[
            (
                format!("00{}", &uid[..10]),
                "command 03, offset 5: UID needs 8 bytes, only 5 left",
            ),
            (
                format!("00{uid}0102"),
                "command 03, offset 14: 1 unexpected bytes after the last field",
            ),
            (
                "00".to_owned(),
                "command 03, offset 5: UID needs 8 bytes, only 0 left",
            ),
        ];
        for (body, message) in cases {
            let frame = Frame::new(0x03, hex::decode(body).unwrap());
            let err = Reply::parse(&frame, ReadStyle::Old).unwrap_err();
            assert_eq!(err.to_string(), *message, "{body}");
        }
    }

    #[test]
    fn an_inventory_reply_with_dsfid_puts_it_before_the_uid() {
        let reply = Reply::Inventory {
            afi: 0,
            options: 0x07,
            tags: vec![InventoryTag {
                dsfid: Some(0x3E),
                uid: Some(UID),
            }],
        };
        let bytes = reply.to_frame().to_bytes().unwrap();
        assert_eq!(
            hex::encode_upper(&bytes[4..17]),
            "000007013EE004010031269117"
        );
    }
}
