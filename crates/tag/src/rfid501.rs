//! The legacy 3M / Bibliotheca "RFID501" layout: 8 blocks of 4 bytes, no CRC, integers
//! big-endian (PROTOCOLS.md §2.4).

use serde::{Deserialize, Serialize};

use crate::text::{self, TextError};

/// Byte 0 of every RFID501 tag (§2.4).
pub const MARKER: u8 = 0x04;
/// Size of the layout: 8 blocks of 4 bytes.
pub const LEN: usize = 32;
/// Content (barcode), blocks 1-4.
const CONTENT_AT: usize = 4;
/// Size of the content field.
pub const CONTENT_LEN: usize = 16;
/// Branch and library, block 5.
const OWNER_AT: usize = 20;
/// Custom signed value, block 6.
const CUSTOM_AT: usize = 24;
/// Block 7, zero.
const TAIL_AT: usize = 28;
/// Largest branch number (12 bits).
pub const MAX_BRANCH: u16 = 0x0FFF;
/// Largest library number (20 bits).
pub const MAX_LIBRARY: u32 = 0x000F_FFFF;

/// A decoded RFID501 tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rfid501Tag {
    /// Set number, the part of the item (high nibble of byte 1, 0-15).
    pub set_number: u8,
    /// Total items in the set (low nibble of byte 1, 0-15).
    pub total_in_set: u8,
    /// Item type (byte 3): 0 other, 1 book, 2 magazine, 3 bound journal, 4 audio tape,
    /// 5 video, 6 CD/CD-ROM, 7 diskette, 8 book with diskette, 9 book with CD,
    /// 13 book with audio tape.
    pub item_type: u8,
    /// The barcode, printable ASCII, at most 16 bytes.
    pub content: String,
    /// Branch (high 12 bits of block 5).
    pub branch: u16,
    /// Library (low 20 bits of block 5).
    pub library: u32,
    /// Custom value (block 6, signed).
    pub custom: i32,
}

/// What went wrong reading or writing an RFID501 tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfid501Error {
    /// Fewer than 32 bytes.
    #[error("RFID501: the layout needs 32 bytes, the memory has {0}")]
    TooShort(usize),
    /// The content field is not text.
    #[error("RFID501: {0}")]
    Text(#[from] TextError),
    /// A number that does not fit its field.
    #[error("RFID501: {field} {value} is larger than {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: u32,
        /// The largest value.
        max: u32,
    },
}

fn word(memory: &[u8], at: usize) -> Option<[u8; 4]> {
    memory.get(at..at + 4)?.try_into().ok()
}

/// Decodes the layout; the reference decoder's sanity checks come back as warnings.
pub fn decode(memory: &[u8]) -> Result<(Rfid501Tag, Vec<String>), Rfid501Error> {
    let (Some(head), Some(owner), Some(custom), Some(tail)) = (
        word(memory, 0),
        word(memory, OWNER_AT),
        word(memory, CUSTOM_AT),
        word(memory, TAIL_AT),
    ) else {
        return Err(Rfid501Error::TooShort(memory.len()));
    };
    let mut warnings = Vec::new();
    if head[0] != MARKER {
        warnings.push(format!("RFID501: byte 0 is {:02X}, expected 04", head[0]));
    }
    if head[2] != 0 {
        warnings.push(format!("RFID501: byte 2 is {:02X}, expected 00", head[2]));
    }
    if tail != [0; 4] {
        warnings.push("RFID501: block 7 is not zero".to_owned());
    }
    let owner = u32::from_be_bytes(owner);
    let tag = Rfid501Tag {
        set_number: head[1] >> 4,
        total_in_set: head[1] & 0x0F,
        item_type: head[3],
        content: text::read_padded(memory, CONTENT_AT, CONTENT_LEN, "content")?,
        branch: (owner >> 20) as u16,
        library: owner & MAX_LIBRARY,
        custom: i32::from_be_bytes(custom),
    };
    Ok((tag, warnings))
}

/// True when memory has the RFID501 shape (§2.7 step 2): byte 0 = 04, block 7 zero and
/// printable NUL-padded content.
pub fn looks_like(memory: &[u8]) -> Result<(), String> {
    if memory.len() < LEN {
        return Err(format!(
            "not RFID501: {} bytes, the layout needs 32",
            memory.len()
        ));
    }
    if memory.first() != Some(&MARKER) {
        return Err(format!(
            "not RFID501: byte 0 is {:02X}, not 04",
            memory.first().copied().unwrap_or_default()
        ));
    }
    if word(memory, TAIL_AT) != Some([0; 4]) {
        return Err("not RFID501: block 7 (bytes 28-31) is not zero".to_owned());
    }
    match text::read_padded(memory, CONTENT_AT, CONTENT_LEN, "content") {
        Ok(content) if content.is_empty() => {
            Err("not RFID501: the content (bytes 4-19) is empty".to_owned())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("not RFID501: {e}")),
    }
}

impl Rfid501Tag {
    /// The 32 bytes of the layout.
    pub fn encode(&self) -> Result<Vec<u8>, Rfid501Error> {
        let nibble = |field, value: u8| {
            if value > 0x0F {
                Err(Rfid501Error::OutOfRange {
                    field,
                    value: u32::from(value),
                    max: 15,
                })
            } else {
                Ok(value)
            }
        };
        let set_number = nibble("set number", self.set_number)?;
        let total = nibble("total in set", self.total_in_set)?;
        if self.branch > MAX_BRANCH {
            return Err(Rfid501Error::OutOfRange {
                field: "branch",
                value: u32::from(self.branch),
                max: u32::from(MAX_BRANCH),
            });
        }
        if self.library > MAX_LIBRARY {
            return Err(Rfid501Error::OutOfRange {
                field: "library",
                value: self.library,
                max: MAX_LIBRARY,
            });
        }
        let mut out = vec![0u8; LEN];
        out[0] = MARKER;
        out[1] = (set_number << 4) | total;
        out[3] = self.item_type;
        text::write_padded(&mut out, CONTENT_AT, CONTENT_LEN, &self.content, "content")?;
        let owner = (u32::from(self.branch) << 20) | self.library;
        out[OWNER_AT..OWNER_AT + 4].copy_from_slice(&owner.to_be_bytes());
        out[CUSTOM_AT..CUSTOM_AT + 4].copy_from_slice(&self.custom.to_be_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_pattern_decodes_with_warnings_but_is_not_rfid501_shaped() {
        let mut blank = vec![0x55u8; 24];
        blank.extend([0u8; 8]);
        assert!(looks_like(&blank).is_err());
        let (_, warnings) = decode(&blank).unwrap_or_else(|e| panic!("{e}"));
        assert!(!warnings.is_empty());
    }

    #[test]
    fn values_out_of_range_are_refused_on_encode() {
        let tag = Rfid501Tag {
            set_number: 16,
            total_in_set: 1,
            item_type: 1,
            content: "1".into(),
            branch: 0,
            library: 0,
            custom: 0,
        };
        assert!(matches!(
            tag.encode(),
            Err(Rfid501Error::OutOfRange {
                field: "set number",
                ..
            })
        ));
        let tag = Rfid501Tag {
            set_number: 1,
            library: MAX_LIBRARY + 1,
            ..tag
        };
        assert!(matches!(
            tag.encode(),
            Err(Rfid501Error::OutOfRange {
                field: "library",
                ..
            })
        ));
    }
}
