//! ISO 28560-3 / Danish data model (DS/INF 163): the fixed basic block with its CRC, and the
//! extension blocks that follow it (PROTOCOLS.md §2.3).
//!
//! Functions here work on memory in its logical order (byte 0 of the basic block first).
//! The block-reversal trap (readers that return every 4-byte block reversed) is handled by
//! the detector, which tries both orders with [`decode`] and keeps the one whose CRC holds.

use crc::{CRC_16_IBM_3740, Crc};
use serde::{Deserialize, Serialize};

use crate::ByteOrder;
use crate::text::{self, TextError};

/// The basic block CRC: CRC-16/IBM-3740 (poly 1021, init FFFF, no reflection, no final XOR),
/// PROTOCOLS.md §2.3 and §5.
const TAG_CRC: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// Offset of the primary item id (bytes 3-18), §2.3.
const PII_AT: usize = 3;
/// Size of the primary item id field, §2.3.
pub const PII_LEN: usize = 16;
/// Offset of the CRC (bytes 19-20, LSB first), §2.3.
const CRC_AT: usize = 19;
/// Offset of the owner library's country (bytes 21-22), §2.3.
const COUNTRY_AT: usize = 21;
/// Size of the country field, §2.3.
const COUNTRY_LEN: usize = 2;
/// Offset of the owner library (bytes 23-33), §2.3.
const LIBRARY_AT: usize = 23;
/// Byte 3 = 01: the PII is longer than 16 bytes and lives in the library extension block.
const PII_IN_EXTENSION: u8 = 0x01;
/// Bytes the CRC covers: bytes 0-18 and 21-33, §2.3.
const CRC_INPUT_LEN: usize = 32;
/// Extension block length byte: end marker, §2.3.
const EXT_END: u8 = 0;
/// Extension block length byte: a single filler byte, §2.3.
const EXT_FILLER: u8 = 1;
/// Extension block id of the library extension block (§2.3).
pub const LIBRARY_EXTENSION_ID: u32 = 1;
/// Header of an extension block with a 16-bit id: len, id lo, id hi, xor.
const EXT_HEADER: usize = 4;
/// Header of an extension block with a 24-bit id: len, FF, FF, 3 id bytes, xor
/// (the placement of the 24-bit id is **unverified**, PROTOCOLS.md §2.3).
const EXT_HEADER_LONG: usize = 7;

/// Which basic block layout a tag uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockForm {
    /// The 34-byte basic block (owner library 11 bytes).
    #[default]
    Full,
    /// The truncated 32-byte basic block of 32-byte tags (owner library cut to 9 bytes).
    Truncated,
}

impl BlockForm {
    /// Size of the basic block in bytes.
    pub const fn byte_len(self) -> usize {
        match self {
            Self::Full => 34,
            Self::Truncated => 32,
        }
    }

    const fn library_len(self) -> usize {
        self.byte_len() - LIBRARY_AT
    }
}

/// The basic block's data elements (§2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BasicBlock {
    /// Byte 0 as stored: Danish model version (high nibble) and type of usage (low nibble);
    /// ISO 28560-3 content parameter and type of usage. Bibliotheca puts the usage in the
    /// high nibble, so the byte is kept whole and interpreted by the caller. Hex in JSON
    /// (`"11"`, as the decoded tag's top-level `type_of_usage`); a number reads too.
    #[serde(with = "crate::config::hex_byte")]
    pub type_of_usage: u8,
    /// Number of parts in the item (byte 1).
    pub parts_in_item: u8,
    /// Ordinal part number (byte 2).
    pub part_number: u8,
    /// Primary item id, printable ASCII, at most 16 bytes (bytes 3-18).
    pub primary_item_id: String,
    /// Country of the owner library, at most 2 characters (bytes 21-22).
    pub country: String,
    /// Owner library, at most 11 characters (9 in the truncated form) (bytes 23-33).
    pub library: String,
}

/// An extension block: `[len][id lo][id hi][xor][payload…]`, XOR of all bytes = 0 (§2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExtensionBlock {
    /// Block id: 1 library extension, 2 acquisition, 3 library supplement, 4 title, 5 ILL.
    pub id: u32,
    /// The block's data after the header.
    pub payload: Vec<u8>,
}

/// A decoded ISO 28560-3 tag: basic block, layout and extension blocks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DdmTag {
    /// The basic block.
    pub basic: BasicBlock,
    /// Full 34-byte or truncated 32-byte layout.
    pub form: BlockForm,
    /// Extension blocks in tag order (full form only).
    pub extensions: Vec<ExtensionBlock>,
}

/// What went wrong reading or writing an ISO 28560-3 tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Iso28560_3Error {
    /// The memory is shorter than the basic block.
    #[error("ISO 28560-3: the basic block needs {needed} bytes, the memory has {len}")]
    TooShort {
        /// Bytes the basic block needs.
        needed: usize,
        /// Bytes available.
        len: usize,
    },
    /// The stored CRC does not match the data.
    #[error(
        "ISO 28560-3: CRC mismatch: stored {stored:04X} (bytes 19-20, LSB first), computed {computed:04X}"
    )]
    CrcMismatch {
        /// CRC stored in bytes 19-20.
        stored: u16,
        /// CRC computed over bytes 0-18 and 21-33.
        computed: u16,
    },
    /// A text field of the basic block is not valid.
    #[error("ISO 28560-3: {0}")]
    Text(#[from] TextError),
    /// Byte 3 = 01 but no library extension block carries the primary item id.
    #[error(
        "ISO 28560-3: byte 3 = 01 puts the primary item id in the library extension block, but no valid library extension block carries one"
    )]
    PiiInExtension,
    /// The primary item id is empty.
    #[error("ISO 28560-3: the primary item id (bytes 3-18) is empty")]
    EmptyPii,
    /// A primary item id over 16 bytes without a library extension block carrying it.
    #[error(
        "ISO 28560-3: a primary item id of {0} bytes needs a library extension block (id 1) carrying it"
    )]
    PiiNeedsLibraryExtension(usize),
    /// A library extension block whose fields cannot be read or written.
    #[error("ISO 28560-3: library extension block: {0}")]
    LibraryExtension(String),
    /// An extension block runs past the end of memory.
    #[error(
        "ISO 28560-3: extension block at offset {offset} has length {len} but only {available} bytes remain"
    )]
    ExtensionTruncated {
        /// Offset of the block's length byte.
        offset: usize,
        /// Its length byte.
        len: usize,
        /// Bytes left in memory.
        available: usize,
    },
    /// An extension block is shorter than its header.
    #[error(
        "ISO 28560-3: extension block at offset {offset} has length {len}, shorter than its header"
    )]
    ExtensionTooShort {
        /// Offset of the block's length byte.
        offset: usize,
        /// Its length byte.
        len: usize,
    },
    /// The XOR check of an extension block fails.
    #[error(
        "ISO 28560-3: extension block at offset {offset}: XOR of its bytes is {xor:02X}, not 00"
    )]
    ExtensionXor {
        /// Offset of the block's length byte.
        offset: usize,
        /// XOR of all the block's bytes.
        xor: u8,
    },
    /// An extension block id does not fit in 24 bits.
    #[error("ISO 28560-3: extension block id {id:#x} does not fit in 24 bits")]
    ExtensionId {
        /// The id.
        id: u32,
    },
    /// An extension block payload is too long for the one-byte length.
    #[error("ISO 28560-3: extension block {id} payload of {len} bytes is longer than {max}")]
    ExtensionTooLong {
        /// The block id.
        id: u32,
        /// Payload length.
        len: usize,
        /// Longest payload that fits.
        max: usize,
    },
    /// The truncated 32-byte form has no room for extension blocks.
    #[error("ISO 28560-3: extension blocks need the full 34-byte basic block")]
    ExtensionsNeedFullForm,
}

/// CRC-16/IBM-3740 of any bytes (the check value of `RFID tag data model` is `1AEE`).
pub fn crc16(bytes: &[u8]) -> u16 {
    TAG_CRC.checksum(bytes)
}

/// The CRC the basic block should carry: over bytes 0-18 and 21-33; bytes the form (or the
/// memory) lacks count as `00` (§2.3).
pub fn basic_block_crc(memory: &[u8], form: BlockForm) -> u16 {
    let mut input = [0u8; CRC_INPUT_LEN];
    for (i, slot) in input.iter_mut().enumerate() {
        let source = if i < CRC_AT { i } else { i + 2 };
        if source < form.byte_len() {
            *slot = memory.get(source).copied().unwrap_or(0);
        }
    }
    crc16(&input)
}

/// The CRC stored in bytes 19-20 (LSB first), if the memory has them.
pub fn stored_crc(memory: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([
        *memory.get(CRC_AT)?,
        *memory.get(CRC_AT + 1)?,
    ]))
}

/// Checks the basic block's CRC in the given form: `Ok(crc)` when it holds.
pub fn check_crc(memory: &[u8], form: BlockForm) -> Result<u16, Iso28560_3Error> {
    let needed = form.byte_len();
    if memory.len() < needed {
        return Err(Iso28560_3Error::TooShort {
            needed,
            len: memory.len(),
        });
    }
    let stored = stored_crc(memory).unwrap_or_default();
    let computed = basic_block_crc(memory, form);
    if stored == computed {
        Ok(stored)
    } else {
        Err(Iso28560_3Error::CrcMismatch { stored, computed })
    }
}

/// True when the basic block CRC holds for `memory` in any byte order and either form, as
/// given or with the rest of a 34-byte memory zero-filled (a short write on a tag whose
/// other bytes are cleared). Writers of other models use it to stay clear of ISO 28560-3.
pub fn crc_could_hold(memory: &[u8]) -> bool {
    let mut zero_filled = memory.to_vec();
    if zero_filled.len() < BlockForm::Full.byte_len() {
        zero_filled.resize(BlockForm::Full.byte_len(), 0);
    }
    [memory, zero_filled.as_slice()].into_iter().any(|bytes| {
        [ByteOrder::AsRead, ByteOrder::BlockReversed]
            .into_iter()
            .any(|order| {
                let logical = order.apply(bytes);
                [BlockForm::Full, BlockForm::Truncated]
                    .into_iter()
                    .any(|form| check_crc(&logical, form).is_ok())
            })
    })
}

/// Decodes memory (logical order) in the given form. The CRC must hold. Problems in the
/// extension area after a valid basic block are returned as warnings, with the blocks
/// read before them.
pub fn decode(memory: &[u8], form: BlockForm) -> Result<(DdmTag, Vec<String>), Iso28560_3Error> {
    check_crc(memory, form)?;
    let mut basic = decode_basic(memory, form)?;
    let mut warnings = Vec::new();
    let extensions = match form {
        BlockForm::Full => {
            let (blocks, problem) = decode_extensions(memory, form.byte_len());
            if let Some(problem) = problem {
                warnings.push(problem.to_string());
            }
            blocks
        }
        BlockForm::Truncated => Vec::new(),
    };
    let tag_without_pii = DdmTag {
        basic: basic.clone(),
        form,
        extensions,
    };
    if memory.get(PII_AT) == Some(&PII_IN_EXTENSION) {
        basic.primary_item_id = tag_without_pii
            .library_extension()
            .and_then(Result::ok)
            .and_then(|ext| ext.item_id)
            .ok_or(Iso28560_3Error::PiiInExtension)?;
    }
    if basic.primary_item_id.is_empty() {
        return Err(Iso28560_3Error::EmptyPii);
    }
    Ok((
        DdmTag {
            basic,
            ..tag_without_pii
        },
        warnings,
    ))
}

/// Reads the basic block's fields without checking the CRC (used for diagnostics too). When
/// byte 3 = 01 the primary item id is left empty (it is in the library extension block).
pub fn decode_basic(memory: &[u8], form: BlockForm) -> Result<BasicBlock, Iso28560_3Error> {
    let needed = form.byte_len();
    let (Some(&type_of_usage), Some(&parts_in_item), Some(&part_number), Some(&pii_first)) = (
        memory.first(),
        memory.get(1),
        memory.get(2),
        memory.get(PII_AT),
    ) else {
        return Err(Iso28560_3Error::TooShort {
            needed,
            len: memory.len(),
        });
    };
    // Byte 3 = 01: the PII lives in the library extension block; `decode` fills it in.
    let primary_item_id = if pii_first == PII_IN_EXTENSION {
        String::new()
    } else {
        text::read_padded(memory, PII_AT, PII_LEN, "primary item id")?
    };
    Ok(BasicBlock {
        type_of_usage,
        parts_in_item,
        part_number,
        primary_item_id,
        country: text::read_padded(memory, COUNTRY_AT, COUNTRY_LEN, "owner country")?,
        library: text::read_padded(memory, LIBRARY_AT, form.library_len(), "owner library")?,
    })
}

/// Reads extension blocks from `start` to the end marker (or the end of memory).
fn decode_extensions(
    memory: &[u8],
    start: usize,
) -> (Vec<ExtensionBlock>, Option<Iso28560_3Error>) {
    let mut blocks = Vec::new();
    let mut pos = start;
    while let Some(&len_byte) = memory.get(pos) {
        match len_byte {
            EXT_END => break,
            EXT_FILLER => {
                pos += 1;
                continue;
            }
            _ => {}
        }
        let len = usize::from(len_byte);
        let Some(block) = memory.get(pos..pos + len) else {
            let available = memory.len().saturating_sub(pos);
            return (
                blocks,
                Some(Iso28560_3Error::ExtensionTruncated {
                    offset: pos,
                    len,
                    available,
                }),
            );
        };
        match decode_extension(block, pos) {
            Ok(ext) => blocks.push(ext),
            Err(e) => return (blocks, Some(e)),
        }
        pos += len;
    }
    (blocks, None)
}

fn decode_extension(block: &[u8], offset: usize) -> Result<ExtensionBlock, Iso28560_3Error> {
    let too_short = Iso28560_3Error::ExtensionTooShort {
        offset,
        len: block.len(),
    };
    let [_len, id_lo, id_hi, rest @ ..] = block else {
        return Err(too_short);
    };
    let xor = block.iter().fold(0u8, |acc, b| acc ^ b);
    if xor != 0 {
        return Err(Iso28560_3Error::ExtensionXor { offset, xor });
    }
    if *id_hi == 0xFF {
        // [len][FF][FF][id0][id1][id2][xor][payload]: 24-bit id LSB first (unverified).
        let [a, b, c, _xor, payload @ ..] = rest else {
            return Err(too_short);
        };
        Ok(ExtensionBlock {
            id: u32::from_le_bytes([*a, *b, *c, 0]),
            payload: payload.to_vec(),
        })
    } else {
        let [_xor, payload @ ..] = rest else {
            return Err(too_short);
        };
        Ok(ExtensionBlock {
            id: u32::from(u16::from_le_bytes([*id_lo, *id_hi])),
            payload: payload.to_vec(),
        })
    }
}

impl ExtensionBlock {
    /// The block's bytes, XOR check included.
    pub fn encode(&self) -> Result<Vec<u8>, Iso28560_3Error> {
        let id_bytes = self.id.to_le_bytes();
        let mut out = if id_bytes[3] != 0 {
            return Err(Iso28560_3Error::ExtensionId { id: self.id });
        } else if id_bytes[1] == 0xFF || id_bytes[2] != 0 {
            vec![0, 0xFF, 0xFF, id_bytes[0], id_bytes[1], id_bytes[2], 0]
        } else {
            vec![0, id_bytes[0], id_bytes[1], 0]
        };
        let header = out.len();
        let max = usize::from(u8::MAX) - header;
        if self.payload.len() > max {
            return Err(Iso28560_3Error::ExtensionTooLong {
                id: self.id,
                len: self.payload.len(),
                max,
            });
        }
        out.extend_from_slice(&self.payload);
        out[0] = out.len() as u8;
        let xor = out.iter().fold(0u8, |acc, b| acc ^ b);
        out[header - 1] = xor;
        debug_assert!(header == EXT_HEADER || header == EXT_HEADER_LONG);
        Ok(out)
    }
}

/// The library extension block's fields (§2.3): NUL-terminated media format, item id and
/// owner institution. The field layout follows one public decoder
/// (BibliothekTHWildau/ISO28560) and is **unverified** against the standard; the media
/// format is read as an ASCII digit or a binary value 1-9 and written as an ASCII digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LibraryExtension {
    /// Media format: 0 undefined, 1 book, 2 CD/DVD, 3 magnetic tape, 4 other, 5 other with
    /// careful handling, 6 very small item needing special handling.
    pub media_format: Option<u8>,
    /// Primary item id longer than 16 bytes (byte 3 = 01), or an alternative item id.
    pub item_id: Option<String>,
    /// Owner ISIL or alternative owner institution.
    pub owner: Option<String>,
}

/// The name of a library extension media format value (§2.3).
pub const fn media_format_name(value: u8) -> Option<&'static str> {
    match value {
        0 => Some("undefined"),
        1 => Some("book"),
        2 => Some("cd-dvd"),
        3 => Some("magnetic-tape"),
        4 => Some("other"),
        5 => Some("other-careful-handling"),
        6 => Some("very-small-item"),
        _ => None,
    }
}

impl LibraryExtension {
    /// Reads the payload of a library extension block.
    pub fn parse(payload: &[u8]) -> Result<Self, Iso28560_3Error> {
        let mut fields = payload.split(|&b| b == 0);
        let media_format = match fields.next().unwrap_or_default() {
            [] => None,
            [digit @ b'0'..=b'9'] => Some(digit - b'0'),
            [value @ 1..=9] => Some(*value),
            other => {
                return Err(Iso28560_3Error::LibraryExtension(format!(
                    "media format {other:02X?} is not one digit"
                )));
            }
        };
        let mut text_field = |name: &'static str| -> Result<Option<String>, Iso28560_3Error> {
            let bytes = fields.next().unwrap_or_default();
            if bytes.is_empty() {
                return Ok(None);
            }
            text::read_padded(bytes, 0, bytes.len(), name)
                .map(Some)
                .map_err(Iso28560_3Error::from)
        };
        let item_id = text_field("library extension item id")?;
        let owner = text_field("library extension owner")?;
        Ok(Self {
            media_format,
            item_id,
            owner,
        })
    }

    /// The extension block carrying these fields.
    pub fn to_block(&self) -> Result<ExtensionBlock, Iso28560_3Error> {
        let mut payload = Vec::new();
        if let Some(format) = self.media_format {
            if format > 9 {
                return Err(Iso28560_3Error::LibraryExtension(format!(
                    "media format {format} is not one digit"
                )));
            }
            payload.push(b'0' + format);
        }
        payload.push(0);
        for (value, name) in [
            (&self.item_id, "library extension item id"),
            (&self.owner, "library extension owner"),
        ] {
            if let Some(text) = value {
                if text.is_empty() {
                    return Err(Iso28560_3Error::LibraryExtension(format!(
                        "{name} is empty"
                    )));
                }
                text::check_ascii(text, usize::from(u8::MAX), name)?;
                payload.extend_from_slice(text.as_bytes());
            }
            payload.push(0);
        }
        Ok(ExtensionBlock {
            id: LIBRARY_EXTENSION_ID,
            payload,
        })
    }
}

impl DdmTag {
    /// The first library extension block's fields, if the tag has one.
    pub fn library_extension(&self) -> Option<Result<LibraryExtension, Iso28560_3Error>> {
        self.extensions
            .iter()
            .find(|block| block.id == LIBRARY_EXTENSION_ID)
            .map(|block| LibraryExtension::parse(&block.payload))
    }

    /// The media format from the library extension block (sorter defaults, §4.8).
    pub fn media_format(&self) -> Option<u8> {
        self.library_extension()
            .and_then(Result::ok)
            .and_then(|ext| ext.media_format)
    }

    /// The tag memory in logical order: basic block with CRC, extension blocks and an end
    /// marker when there are any, zero-padded to whole 4-byte blocks.
    pub fn encode(&self) -> Result<Vec<u8>, Iso28560_3Error> {
        let basic = &self.basic;
        let mut out = vec![0u8; self.form.byte_len()];
        out[0] = basic.type_of_usage;
        out[1] = basic.parts_in_item;
        out[2] = basic.part_number;
        let pii = &basic.primary_item_id;
        if pii.is_empty() {
            return Err(Iso28560_3Error::EmptyPii);
        }
        if self.form == BlockForm::Truncated {
            // The truncated form has no room for the library extension block (§2.3).
            text::check_ascii(pii, PII_LEN, "primary item id")?;
        }
        if pii.len() > PII_LEN {
            text::check_ascii(pii, usize::from(u8::MAX), "primary item id")?;
            let carried = self
                .library_extension()
                .and_then(Result::ok)
                .and_then(|ext| ext.item_id);
            if carried.as_ref() != Some(pii) {
                return Err(Iso28560_3Error::PiiNeedsLibraryExtension(pii.len()));
            }
            out[PII_AT] = PII_IN_EXTENSION;
        } else {
            text::write_padded(&mut out, PII_AT, PII_LEN, pii, "primary item id")?;
        }
        text::write_padded(
            &mut out,
            COUNTRY_AT,
            COUNTRY_LEN,
            &basic.country,
            "owner country",
        )?;
        text::write_padded(
            &mut out,
            LIBRARY_AT,
            self.form.library_len(),
            &basic.library,
            "owner library",
        )?;
        let crc = basic_block_crc(&out, self.form);
        out[CRC_AT..CRC_AT + 2].copy_from_slice(&crc.to_le_bytes());
        if !self.extensions.is_empty() {
            if self.form == BlockForm::Truncated {
                return Err(Iso28560_3Error::ExtensionsNeedFullForm);
            }
            for ext in &self.extensions {
                out.extend(ext.encode()?);
            }
            out.push(EXT_END);
        }
        out.resize(out.len().div_ceil(4) * 4, 0);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value_of_the_reference_string_is_1aee() {
        assert_eq!(crc16(b"RFID tag data model"), 0x1AEE);
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn extension_blocks_round_trip_with_short_and_long_ids() {
        for id in [1, 5, 0xFEFF, 0xFF00, 0x12_3456] {
            let tag = DdmTag {
                basic: BasicBlock {
                    type_of_usage: 0x11,
                    parts_in_item: 1,
                    part_number: 1,
                    primary_item_id: "1234".into(),
                    country: "DK".into(),
                    library: "715700".into(),
                },
                form: BlockForm::Full,
                extensions: vec![ExtensionBlock {
                    id,
                    payload: vec![1, 2, 3],
                }],
            };
            let bytes = tag.encode().unwrap();
            let (back, warnings) = decode(&bytes, BlockForm::Full).unwrap();
            assert_eq!(back, tag);
            assert!(warnings.is_empty());
        }
    }

    #[test]
    fn an_extension_block_with_a_bad_xor_is_reported_as_a_warning() {
        let tag = DdmTag {
            basic: BasicBlock {
                type_of_usage: 0x11,
                parts_in_item: 1,
                part_number: 1,
                primary_item_id: "1234".into(),
                country: "DK".into(),
                library: "715700".into(),
            },
            form: BlockForm::Full,
            extensions: vec![ExtensionBlock {
                id: 1,
                payload: vec![1, 2, 3],
            }],
        };
        let mut bytes = tag.encode().unwrap();
        bytes[36] ^= 0x40;
        let (back, warnings) = decode(&bytes, BlockForm::Full).unwrap();
        assert!(back.extensions.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("offset 34"), "{warnings:?}");
    }

    #[test]
    fn a_long_item_id_moves_to_the_library_extension_block_and_back() {
        let pii = "1234567890ABCDEFGHIJ".to_owned();
        let ext = LibraryExtension {
            media_format: Some(2),
            item_id: Some(pii.clone()),
            owner: None,
        };
        let tag = DdmTag {
            basic: BasicBlock {
                type_of_usage: 0x11,
                parts_in_item: 1,
                part_number: 1,
                primary_item_id: pii.clone(),
                country: "DK".into(),
                library: "715700".into(),
            },
            form: BlockForm::Full,
            extensions: vec![ext.to_block().unwrap()],
        };
        let bytes = tag.encode().unwrap();
        assert_eq!(bytes[3], PII_IN_EXTENSION);
        let (back, _) = decode(&bytes, BlockForm::Full).unwrap();
        assert_eq!(back, tag);
        assert_eq!(back.media_format(), Some(2));
        let without = DdmTag {
            extensions: Vec::new(),
            ..tag
        };
        assert_eq!(
            without.encode(),
            Err(Iso28560_3Error::PiiNeedsLibraryExtension(20))
        );
    }

    #[test]
    fn library_extension_fields_read_ascii_or_binary_media_formats() {
        assert_eq!(
            LibraryExtension::parse(b"1\0\0DK-715700\0").unwrap(),
            LibraryExtension {
                media_format: Some(1),
                item_id: None,
                owner: Some("DK-715700".into())
            }
        );
        assert_eq!(
            LibraryExtension::parse(&[6, 0]).unwrap().media_format,
            Some(6)
        );
        assert!(LibraryExtension::parse(b"12\0").is_err());
    }

    #[test]
    fn the_truncated_form_refuses_extension_blocks() {
        let tag = DdmTag {
            basic: BasicBlock {
                type_of_usage: 0x11,
                parts_in_item: 1,
                part_number: 1,
                primary_item_id: "1".into(),
                country: String::new(),
                library: String::new(),
            },
            form: BlockForm::Truncated,
            extensions: vec![ExtensionBlock {
                id: 1,
                payload: vec![],
            }],
        };
        assert_eq!(tag.encode(), Err(Iso28560_3Error::ExtensionsNeedFullForm));
    }
}
