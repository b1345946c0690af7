//! Library RFID tag data models: decode, encode, model detection and security state.
//!
//! A pure crate (no I/O). The daemon calls [`decode`] with a tag's user memory (HF) or EPC
//! (UHF), what the reader said about it ([`TagHints`]) and the site's [`SiteConfig`]; it
//! gets a [`DecodedTag`] that names the data model and why, the library item, the security
//! state and whether the item is ours. An unknown or corrupt tag is a [`DecodedTag`] with
//! [`TagModel::Unknown`] and an error saying why; memory that reads as two models with
//! nothing to decide between them is [`TagModel::Ambiguous`], with both readings and no
//! item. Decoding never panics and never invents an item.
//!
//! Writes go through [`encode`] or [`encode_like`], which keeps the model, layout and byte
//! order a tag was found in (PROTOCOLS.md §2.7). For every model, `decode(encode(x)) == x`
//! (property tests in `tests/roundtrip.rs`), except that a fixed layout whose bytes also
//! read as another model decodes as ambiguous, listing `x` among its readings; the ISO
//! 28560-2 writer never produces bytes that pass the ISO 28560-3 CRC.
//!
//! Models: [`iso28560_3`] (Danish data model, CRC), [`iso28560_2`] (ISO/IEC 15962 data
//! sets, with [`compaction`] and the [`isil`] code), [`rfid501`] (3M legacy) and [`uhf`]
//! (PC word, URN Code 40, SGTIN-96, site EPC layouts).

mod bits;
pub mod compaction;
pub mod config;
mod detect;
pub mod isil;
pub mod iso28560_2;
pub mod iso28560_3;
pub mod owner;
pub mod rfid501;
pub mod security;
mod text;
pub mod uhf;
mod view;

use serde::{Deserialize, Serialize};

pub use config::{ConfigError, SiteConfig};
pub use detect::decode;
pub use owner::{Owner, OwnerClass};
pub use security::{Security, SecurityConfig, SecurityMode};
pub use text::TextError;

use iso28560_2::{Iso28560_2Error, Iso28560_2Tag};
use iso28560_3::{DdmTag, Iso28560_3Error};
use rfid501::{Rfid501Error, Rfid501Tag};
use uhf::{PcWord, Sgtin96, SiteEpc, UhfError};

/// The data model a tag uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TagModel {
    /// ISO 28560-3 / Danish data model.
    #[serde(rename = "iso28560-3")]
    Iso28560_3,
    /// ISO 28560-2.
    #[serde(rename = "iso28560-2")]
    Iso28560_2,
    /// 3M / Bibliotheca RFID501.
    #[serde(rename = "rfid501")]
    Rfid501,
    /// GS1 SGTIN-96 EPC.
    #[serde(rename = "epc-sgtin96")]
    EpcSgtin96,
    /// A site EPC layout.
    #[serde(rename = "epc-site")]
    EpcSite,
    /// A blank tag (all zero, or the 3M manufacturing pattern).
    #[serde(rename = "blank")]
    Blank,
    /// No model matched.
    #[serde(rename = "unknown")]
    Unknown,
    /// The memory reads as more than one model and nothing the tag, the reader or the site
    /// said decides between them; the readings are in [`DecodedTag::readings`] and no item
    /// is taken from the tag.
    #[serde(rename = "ambiguous")]
    Ambiguous,
}

impl TagModel {
    /// The model's name in JSON, config and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Iso28560_3 => "iso28560-3",
            Self::Iso28560_2 => "iso28560-2",
            Self::Rfid501 => "rfid501",
            Self::EpcSgtin96 => "epc-sgtin96",
            Self::EpcSite => "epc-site",
            Self::Blank => "blank",
            Self::Unknown => "unknown",
            Self::Ambiguous => "ambiguous",
        }
    }
}

/// The order in which a reader returned the bytes of each 4-byte block (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ByteOrder {
    /// As stored.
    #[default]
    AsRead,
    /// Every 4-byte block reversed (FEIG ISO-Host, some CPR-M02 setups).
    BlockReversed,
}

impl ByteOrder {
    /// The name used in JSON and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AsRead => "as-read",
            Self::BlockReversed => "block-reversed",
        }
    }

    /// Converts between logical order and this order (its own inverse). A trailing partial
    /// block is left as it is.
    pub fn apply(self, memory: &[u8]) -> Vec<u8> {
        let mut out = memory.to_vec();
        if self == Self::BlockReversed {
            for block in out.chunks_exact_mut(4) {
                block.reverse();
            }
        }
        out
    }
}

/// What the reader knows about a tag besides its memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagHints {
    /// UID (HF, MSB first; `E0…` = ISO 15693) or EPC.
    pub uid: Option<Vec<u8>>,
    /// The tag's AFI (HF).
    pub afi: Option<u8>,
    /// The tag's DSFID (HF).
    pub dsfid: Option<u8>,
    /// The NXP EAS bit.
    pub eas: Option<bool>,
    /// The UHF PC word.
    pub pc: Option<PcWord>,
    /// `Some(true)`: the memory is a UHF EPC; `Some(false)`: HF user memory; `None`:
    /// unknown (an `E0` UID or a PC word settles it).
    pub uhf: Option<bool>,
    /// The loans cache's answer (security mode `database`): on loan or not.
    pub on_loan: Option<bool>,
}

/// A tag's data in its own model's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "model", content = "data")]
pub enum TagData {
    /// ISO 28560-3.
    Iso28560_3(DdmTag),
    /// ISO 28560-2.
    Iso28560_2(Iso28560_2Tag),
    /// RFID501.
    Rfid501(Rfid501Tag),
    /// SGTIN-96.
    Sgtin96(Sgtin96),
    /// A site EPC layout.
    SiteEpc(SiteEpc),
}

/// What every model says about the item, in ISO 28560-1 terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LibraryItem {
    /// The primary item identifier (barcode; for SGTIN-96 the EPC tag URI).
    pub primary_item_id: String,
    /// The owner institution, when the tag names one.
    pub owner: Option<Owner>,
    /// Number of parts in the item.
    pub parts_in_item: Option<u8>,
    /// Ordinal part number.
    pub part_number: Option<u8>,
    /// Type of usage byte (ISO 28560-3: byte 0 as stored).
    pub type_of_usage: Option<u8>,
}

impl TagData {
    /// The model of this data.
    pub const fn model(&self) -> TagModel {
        match self {
            Self::Iso28560_3(_) => TagModel::Iso28560_3,
            Self::Iso28560_2(_) => TagModel::Iso28560_2,
            Self::Rfid501(_) => TagModel::Rfid501,
            Self::Sgtin96(_) => TagModel::EpcSgtin96,
            Self::SiteEpc(_) => TagModel::EpcSite,
        }
    }

    /// The library item the data describes.
    pub fn item(&self) -> LibraryItem {
        match self {
            Self::Iso28560_3(tag) => {
                let basic = &tag.basic;
                // A country alone names no institution: such an item has no owner, which a
                // gate must not mistake for another library's item.
                let owner = if basic.library.is_empty() {
                    None
                } else if !basic.country.is_empty() && basic.library.starts_with('-') {
                    Some(Owner::Isil {
                        isil: format!("{}{}", basic.country, basic.library),
                    })
                } else {
                    Some(Owner::CountryLibrary {
                        country: basic.country.clone(),
                        library: basic.library.clone(),
                    })
                };
                LibraryItem {
                    primary_item_id: basic.primary_item_id.clone(),
                    owner,
                    parts_in_item: Some(basic.parts_in_item),
                    part_number: Some(basic.part_number),
                    type_of_usage: Some(basic.type_of_usage),
                }
            }
            Self::Iso28560_2(tag) => LibraryItem {
                primary_item_id: tag.primary_item_id.clone(),
                owner: tag.owner_isil.clone().map(|isil| Owner::Isil { isil }),
                parts_in_item: tag.set.map(|s| s.parts_in_item),
                part_number: tag.set.map(|s| s.part_number),
                type_of_usage: tag.type_of_usage,
            },
            Self::Rfid501(tag) => LibraryItem {
                primary_item_id: tag.content.clone(),
                // Library number 0 is what RFID501 tags without an owner carry (many older
                // tags name none): no owner, never "another library's item".
                owner: (tag.library != 0).then_some(Owner::LibraryNumber {
                    branch: tag.branch,
                    library: tag.library,
                }),
                parts_in_item: Some(tag.total_in_set),
                part_number: Some(tag.set_number),
                type_of_usage: None,
            },
            Self::Sgtin96(sgtin) => LibraryItem {
                primary_item_id: sgtin.tag_uri(),
                owner: None,
                parts_in_item: None,
                part_number: None,
                type_of_usage: None,
            },
            Self::SiteEpc(epc) => LibraryItem {
                primary_item_id: epc.item_id.clone(),
                owner: None,
                parts_in_item: None,
                part_number: None,
                type_of_usage: None,
            },
        }
    }
}

/// Why a tag could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("the tag memory is empty")]
    Empty,
    /// A blank tag.
    #[error("blank tag: {0}")]
    Blank(&'static str),
    /// No model matched; one reason per model tried.
    #[error("unknown tag data: {}", .0.join("; "))]
    NoModel(Vec<String>),
    /// Looks like ISO 28560-3 but the CRC holds in neither byte order.
    #[error(
        "looks like ISO 28560-3 (printable item id and owner country) but the CRC fails in both byte orders: {0}"
    )]
    CorruptIso28560_3(Iso28560_3Error),
    /// ISO 28560-3 data that cannot be read.
    #[error(transparent)]
    Iso28560_3(#[from] Iso28560_3Error),
    /// ISO 28560-2 data that cannot be read.
    #[error(transparent)]
    Iso28560_2(#[from] Iso28560_2Error),
    /// RFID501 data that cannot be read.
    #[error(transparent)]
    Rfid501(#[from] Rfid501Error),
    /// A UHF identity that cannot be read.
    #[error(transparent)]
    Uhf(#[from] UhfError),
    /// The memory reads as several models and no hint decides (see [`TagModel::Ambiguous`]).
    #[error(
        "ambiguous tag data: the memory reads as {} and nothing the tag or reader said decides ({why}); the item is not taken from it. Let the reader report DSFIDs and set tags.iso28560_2_dsfid / tags.iso28560_3_dsfid",
        models.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" and ")
    )]
    Ambiguous {
        /// The models the memory reads as, in detection order.
        models: Vec<TagModel>,
        /// What was considered and why it did not decide.
        why: String,
    },
}

/// Why tag data could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// ISO 28560-3.
    #[error(transparent)]
    Iso28560_3(#[from] Iso28560_3Error),
    /// ISO 28560-2.
    #[error(transparent)]
    Iso28560_2(#[from] Iso28560_2Error),
    /// RFID501.
    #[error(transparent)]
    Rfid501(#[from] Rfid501Error),
    /// UHF.
    #[error(transparent)]
    Uhf(#[from] UhfError),
    /// The site has no EPC layout of that name.
    #[error("no EPC layout named {0:?} in tags.epc_layouts")]
    UnknownLayout(String),
    /// Block reversal applies to HF memory only.
    #[error("block-reversed byte order applies to HF user memory, not to a UHF EPC")]
    ReversedEpc,
}

/// One complete reading of a tag's memory under one model. An ambiguous tag keeps every
/// reading, so an operator (or a later, better-informed decode) can see both candidates;
/// none of them becomes the tag's item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The model of this reading.
    pub model: TagModel,
    /// Why the memory reads as this model.
    pub reason: String,
    /// The data under this model.
    pub data: TagData,
    /// The byte order this reading found the data in.
    pub byte_order: ByteOrder,
    /// The CRC stored on the tag, for models with a CRC.
    pub crc: Option<u16>,
    /// Oddities of this reading.
    pub warnings: Vec<String>,
}

impl Reading {
    /// The library item this reading would give.
    pub fn item(&self) -> LibraryItem {
        self.data.item()
    }
}

/// The result of decoding one tag. Serialises to the JSON object `rfidgw tag decode`
/// prints (`model`, `primary_item_id`, `owner_institution`, `parts_in_item`, `part_number`,
/// `type_of_usage`, `crc_valid`, `security`, `error`, `byte_order`, `foreign`, `data`,
/// `readings`, …).
///
/// Invariant: `item` is `Some` exactly when `error` is `None`. An unknown, blank, corrupt
/// or ambiguous tag has no item, so a station treats it as unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedTag {
    /// The model found ([`TagModel::Unknown`] when none matched, [`TagModel::Ambiguous`]
    /// when several did and nothing decided).
    pub model: TagModel,
    /// Why this model was chosen (or why none was).
    pub reason: String,
    /// The data in the model's own terms.
    pub data: Option<TagData>,
    /// The library item, when the data could be read.
    pub item: Option<LibraryItem>,
    /// Why the data could not be read, if it could not.
    pub error: Option<DecodeError>,
    /// Byte order the data was found in (writes reuse it).
    pub byte_order: ByteOrder,
    /// `Some(true)` CRC holds, `Some(false)` it fails, `None` the model has no CRC.
    pub crc_valid: Option<bool>,
    /// The CRC stored on the tag, for models with a CRC.
    pub crc: Option<u16>,
    /// Security state under the site's rules.
    pub security: Security,
    /// Whether the owner is one of ours.
    pub owner_class: OwnerClass,
    /// Things that are odd but did not stop decoding.
    pub warnings: Vec<String>,
    /// The memory or EPC as read (writes of site EPCs keep the bytes they do not describe).
    pub raw: Vec<u8>,
    /// Every reading of an ambiguous tag ([`TagModel::Ambiguous`]); empty otherwise.
    pub readings: Vec<Reading>,
}

/// Encodes data in `order` (HF only). Site EPCs start from zeros; see [`encode_like`] to
/// keep the bytes of a tag already read.
pub fn encode(data: &TagData, order: ByteOrder, site: &SiteConfig) -> Result<Vec<u8>, EncodeError> {
    encode_with_base(data, order, site, None)
}

/// Encodes data the way `original` was found: same byte order, same ISO 28560-3 layout
/// (full or truncated), and for site EPCs the original bytes outside the item id and
/// security bit.
///
/// The bytes only: a writer that puts one ISO 28560 model on a tag whose DSFID names the
/// other must write the DSFID as well ([`SiteConfig::dsfid_of`] the model written), since
/// the DSFID settles a tag that both models read and an ISO 28560-3 layout cannot be
/// varied to keep it from reading as ISO 28560-2 data.
pub fn encode_like(
    original: &DecodedTag,
    data: &TagData,
    site: &SiteConfig,
) -> Result<Vec<u8>, EncodeError> {
    let data = match (&original.data, data) {
        (Some(TagData::Iso28560_3(old)), TagData::Iso28560_3(new)) => TagData::Iso28560_3(DdmTag {
            form: old.form,
            ..new.clone()
        }),
        _ => data.clone(),
    };
    encode_with_base(&data, original.byte_order, site, Some(&original.raw))
}

fn encode_with_base(
    data: &TagData,
    order: ByteOrder,
    site: &SiteConfig,
    base: Option<&[u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let hf = |bytes: Vec<u8>| order.apply(&bytes);
    let uhf = |bytes: Vec<u8>| match order {
        ByteOrder::AsRead => Ok(bytes),
        ByteOrder::BlockReversed => Err(EncodeError::ReversedEpc),
    };
    match data {
        TagData::Iso28560_3(tag) => Ok(hf(tag.encode()?)),
        TagData::Iso28560_2(tag) => Ok(hf(tag.encode()?)),
        TagData::Rfid501(tag) => Ok(hf(tag.encode()?)),
        TagData::Sgtin96(sgtin) => uhf(sgtin.encode()?.to_vec()),
        TagData::SiteEpc(epc) => {
            let layout = site
                .epc_layouts
                .iter()
                .find(|l| l.name == epc.layout)
                .ok_or_else(|| EncodeError::UnknownLayout(epc.layout.clone()))?;
            uhf(layout.encode(epc, base)?)
        }
    }
}

/// Parses hex (upper or lower case; spaces, `:` and `-` between bytes allowed).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':' && *b != b'-')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{} hex digits is an odd number", digits.len()));
    }
    let value = |position: usize, digit: u8| {
        char::from(digit)
            .to_digit(16)
            .map(|v| v as u8)
            .ok_or_else(|| {
                format!(
                    "{:?} at position {position} is not a hex digit",
                    char::from(digit)
                )
            })
    };
    digits
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| Ok((value(2 * i, pair[0])? << 4) | value(2 * i + 1, pair[1])?))
        .collect()
}
