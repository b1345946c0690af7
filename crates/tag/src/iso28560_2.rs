//! ISO 28560-2: ISO 28560-1 data elements encoded by ISO/IEC 15962 rules on HF tags
//! (PROTOCOLS.md §2.1, §2.2).
//!
//! User memory is a sequence of data sets `precursor | [offset] | length | data | [pad]`
//! ended by a `00` byte or the end of memory.

use serde::{Deserialize, Serialize};

use crate::compaction::{self, Compaction, CompactionError};
use crate::isil::{self, IsilError};
use crate::iso28560_3;

/// Precursor bit 7: an offset byte follows (§2.2).
const OFFSET_FLAG: u8 = 0x80;
/// Precursor relOID 15: the relative OID continues in another byte (unverified, §2.2).
const REL_OID_EXTENDED: u8 = 15;
/// relOID of the primary item identifier (§2.1).
pub const REL_PRIMARY_ITEM_ID: u8 = 1;
/// relOID of the content parameter (§2.1).
pub const REL_CONTENT_PARAMETER: u8 = 2;
/// relOID of the owner institution ISIL (§2.1).
pub const REL_OWNER: u8 = 3;
/// relOID of the set information (§2.1).
pub const REL_SET: u8 = 4;
/// relOID of the type of usage (§2.1).
pub const REL_TYPE_OF_USAGE: u8 = 5;
/// relOID of the shelf location (§2.1).
pub const REL_SHELF_LOCATION: u8 = 6;
/// Highest relOID a one-byte precursor carries.
pub const MAX_REL_OID: u8 = 14;
/// The content parameter's first bit stands for relOID 3 (§2.2).
const CONTENT_PARAMETER_FIRST: u8 = 3;

/// One data set as stored: relative OID, compaction scheme and compacted bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataSet {
    /// Relative OID of the ISO 28560-1 data element (1-14).
    pub rel_oid: u8,
    /// How the data is compacted.
    pub compaction: Compaction,
    /// The compacted bytes.
    pub data: Vec<u8>,
}

impl DataSet {
    /// The data read as text, when the scheme is a text scheme.
    pub fn text(&self) -> Option<String> {
        compaction::decode_text(self.compaction, &self.data).ok()
    }
}

/// Set information: number of parts and ordinal part number (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SetInfo {
    /// Number of parts in the item.
    pub parts_in_item: u8,
    /// Ordinal part number.
    pub part_number: u8,
}

/// A decoded ISO 28560-2 tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Iso28560_2Tag {
    /// relOID 1, always first on the tag.
    pub primary_item_id: String,
    /// relOID 2: the relOIDs the tag says it carries (3 and up), ascending.
    pub content_parameter: Option<Vec<u8>>,
    /// relOID 3: owner institution ISIL.
    pub owner_isil: Option<String>,
    /// relOID 4: set information.
    pub set: Option<SetInfo>,
    /// relOID 5: type of usage (class nibble + qualifier nibble).
    pub type_of_usage: Option<u8>,
    /// relOID 6: shelf location.
    pub shelf_location: Option<String>,
    /// Every other data element (relOID 7-14), in tag order, as stored.
    pub other: Vec<DataSet>,
}

/// What went wrong reading or writing ISO 28560-2 data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Iso28560_2Error {
    /// No data sets at all.
    #[error("ISO 28560-2: no data sets (memory starts with the 00 terminator or is empty)")]
    Empty,
    /// A data set runs past the end of memory.
    #[error(
        "ISO 28560-2: data set at offset {offset} needs {needed} bytes, only {available} remain"
    )]
    Truncated {
        /// Offset of the precursor.
        offset: usize,
        /// Bytes the data set needs from its precursor on.
        needed: usize,
        /// Bytes left from the precursor on.
        available: usize,
    },
    /// relOID 0 is not a data element.
    #[error("ISO 28560-2: precursor {precursor:02X} at offset {offset} has relOID 0")]
    RelOidZero {
        /// Offset of the precursor.
        offset: usize,
        /// The precursor byte.
        precursor: u8,
    },
    /// relOID 15 (continued in another byte) is not supported.
    #[error(
        "ISO 28560-2: precursor {precursor:02X} at offset {offset} uses an extended relOID, which is not supported"
    )]
    ExtendedRelOid {
        /// Offset of the precursor.
        offset: usize,
        /// The precursor byte.
        precursor: u8,
    },
    /// The first data element is not the primary item identifier.
    #[error(
        "ISO 28560-2: the first data set (offset 0) is relOID {0}, the primary item identifier (relOID 1) must come first"
    )]
    PiiNotFirst(u8),
    /// A data element appears twice.
    #[error("ISO 28560-2: relOID {rel_oid} appears again at offset {offset}")]
    Duplicate {
        /// The relOID.
        rel_oid: u8,
        /// Offset of the second precursor.
        offset: usize,
    },
    /// A data element's value cannot be read.
    #[error("ISO 28560-2: relOID {rel_oid} at offset {offset}: {source}")]
    Compaction {
        /// The relOID.
        rel_oid: u8,
        /// Offset of the precursor.
        offset: usize,
        /// Why.
        #[source]
        source: CompactionError,
    },
    /// The owner ISIL cannot be read or written.
    #[error("ISO 28560-2: owner institution (relOID 3): {0}")]
    Isil(#[from] IsilError),
    /// Every layout the encoder tried also passes the ISO 28560-3 CRC.
    #[error(
        "ISO 28560-2: all {layouts} layouts tried also pass the ISO 28560-3 CRC, so a reader could take the tag for an ISO 28560-3 tag; change a value (e.g. add or drop an optional element) and write again"
    )]
    Iso28560_3Collision {
        /// Layouts tried.
        layouts: u8,
    },
    /// A value does not have the shape its data element needs.
    #[error("ISO 28560-2: relOID {rel_oid}: {problem}")]
    BadValue {
        /// The relOID.
        rel_oid: u8,
        /// What is wrong.
        problem: String,
    },
}

/// Splits memory into data sets, each with the offset of its precursor.
pub fn parse_data_sets(memory: &[u8]) -> Result<Vec<(usize, DataSet)>, Iso28560_2Error> {
    let mut sets = Vec::new();
    let mut pos = 0usize;
    while let Some(&precursor) = memory.get(pos) {
        if precursor == 0 {
            break;
        }
        let offset = pos;
        let rel_oid = precursor & 0x0F;
        if rel_oid == 0 {
            return Err(Iso28560_2Error::RelOidZero { offset, precursor });
        }
        if rel_oid == REL_OID_EXTENDED {
            return Err(Iso28560_2Error::ExtendedRelOid { offset, precursor });
        }
        let truncated = |needed: usize| Iso28560_2Error::Truncated {
            offset,
            needed,
            available: memory.len() - offset,
        };
        let has_offset = precursor & OFFSET_FLAG != 0;
        let header = if has_offset { 3 } else { 2 };
        let (pad, len) = if has_offset {
            match (memory.get(pos + 1), memory.get(pos + 2)) {
                (Some(&pad), Some(&len)) => (usize::from(pad), usize::from(len)),
                _ => return Err(truncated(header)),
            }
        } else {
            match memory.get(pos + 1) {
                Some(&len) => (0, usize::from(len)),
                None => return Err(truncated(header)),
            }
        };
        let start = pos + header;
        let needed = header + len + pad;
        let data = memory
            .get(start..start + len)
            .ok_or_else(|| truncated(needed))?;
        if memory.len() < pos + needed {
            return Err(truncated(needed));
        }
        sets.push((
            offset,
            DataSet {
                rel_oid,
                compaction: Compaction::from_code(precursor >> 4),
                data: data.to_vec(),
            },
        ));
        pos += needed;
    }
    Ok(sets)
}

fn text_of(offset: usize, set: &DataSet) -> Result<String, Iso28560_2Error> {
    compaction::decode_text(set.compaction, &set.data).map_err(|source| {
        Iso28560_2Error::Compaction {
            rel_oid: set.rel_oid,
            offset,
            source,
        }
    })
}

fn bad(rel_oid: u8, problem: impl Into<String>) -> Iso28560_2Error {
    Iso28560_2Error::BadValue {
        rel_oid,
        problem: problem.into(),
    }
}

/// Decodes ISO 28560-2 user memory.
pub fn decode(memory: &[u8]) -> Result<Iso28560_2Tag, Iso28560_2Error> {
    let sets = parse_data_sets(memory)?;
    let Some((_, first)) = sets.first() else {
        return Err(Iso28560_2Error::Empty);
    };
    if first.rel_oid != REL_PRIMARY_ITEM_ID {
        return Err(Iso28560_2Error::PiiNotFirst(first.rel_oid));
    }
    let mut seen = [false; 16];
    let mut tag = Iso28560_2Tag {
        primary_item_id: String::new(),
        content_parameter: None,
        owner_isil: None,
        set: None,
        type_of_usage: None,
        shelf_location: None,
        other: Vec::new(),
    };
    for (offset, set) in &sets {
        let rel_oid = set.rel_oid;
        if let Some(flag) = seen.get_mut(usize::from(rel_oid)) {
            if *flag {
                return Err(Iso28560_2Error::Duplicate {
                    rel_oid,
                    offset: *offset,
                });
            }
            *flag = true;
        }
        match rel_oid {
            REL_PRIMARY_ITEM_ID => {
                tag.primary_item_id = text_of(*offset, set)?;
                if tag.primary_item_id.is_empty() {
                    return Err(bad(rel_oid, "the primary item identifier is empty"));
                }
            }
            REL_CONTENT_PARAMETER => tag.content_parameter = Some(decode_content_parameter(set)),
            REL_OWNER => {
                tag.owner_isil = Some(if set.compaction == Compaction::ApplicationDefined {
                    isil::decode(&set.data)?
                } else {
                    text_of(*offset, set)?
                });
            }
            REL_SET => tag.set = Some(decode_set(&text_of(*offset, set)?)?),
            REL_TYPE_OF_USAGE => tag.type_of_usage = Some(decode_usage(*offset, set)?),
            REL_SHELF_LOCATION => tag.shelf_location = Some(text_of(*offset, set)?),
            _ => tag.other.push(set.clone()),
        }
    }
    Ok(tag)
}

fn decode_content_parameter(set: &DataSet) -> Vec<u8> {
    let mut rel_oids = Vec::new();
    for (i, byte) in set.data.iter().enumerate() {
        for bit in 0..8u8 {
            if byte & (0x80 >> bit) != 0 {
                // i < 255 and bit < 8: the sum stays far below usize::MAX, but not below 256.
                if let Ok(rel) =
                    u8::try_from(usize::from(CONTENT_PARAMETER_FIRST) + i * 8 + usize::from(bit))
                {
                    rel_oids.push(rel);
                }
            }
        }
    }
    rel_oids
}

fn encode_content_parameter(rel_oids: &[u8]) -> Result<Vec<u8>, Iso28560_2Error> {
    let mut data = vec![0u8];
    for &rel in rel_oids {
        let Some(index) = rel.checked_sub(CONTENT_PARAMETER_FIRST) else {
            return Err(bad(
                REL_CONTENT_PARAMETER,
                format!("relOID {rel} cannot be listed (the bitmap starts at 3)"),
            ));
        };
        let byte = usize::from(index / 8);
        if data.len() <= byte {
            data.resize(byte + 1, 0);
        }
        data[byte] |= 0x80 >> (index % 8);
    }
    Ok(data)
}

/// Set information `1203` = 12 parts, part 3: the digit string split in two halves (§2.1).
fn decode_set(digits: &str) -> Result<SetInfo, Iso28560_2Error> {
    let half = digits.len() / 2;
    if digits.is_empty()
        || !digits.len().is_multiple_of(2)
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad(
            REL_SET,
            format!("{digits:?} is not an even number of digits"),
        ));
    }
    let parse = |s: &str| {
        s.parse::<u8>().map_err(|_| {
            bad(
                REL_SET,
                format!("{s} in {digits:?} is not a number from 0 to 255"),
            )
        })
    };
    Ok(SetInfo {
        parts_in_item: parse(&digits[..half])?,
        part_number: parse(&digits[half..])?,
    })
}

fn encode_set(set: SetInfo) -> Result<String, Iso28560_2Error> {
    if set.parts_in_item == 0 {
        return Err(bad(REL_SET, "the number of parts must be at least 1"));
    }
    let width = set
        .parts_in_item
        .to_string()
        .len()
        .max(set.part_number.to_string().len());
    Ok(format!(
        "{:0width$}{:0width$}",
        set.parts_in_item, set.part_number
    ))
}

/// Type of usage: one application-defined byte, or two hex digits as text (unverified).
fn decode_usage(offset: usize, set: &DataSet) -> Result<u8, Iso28560_2Error> {
    if set.compaction == Compaction::ApplicationDefined {
        return match set.data.as_slice() {
            [byte] => Ok(*byte),
            other => Err(bad(
                REL_TYPE_OF_USAGE,
                format!("{} bytes, expected 1", other.len()),
            )),
        };
    }
    let text = text_of(offset, set)?;
    u8::from_str_radix(&text, 16)
        .ok()
        .filter(|_| text.len() == 2)
        .ok_or_else(|| bad(REL_TYPE_OF_USAGE, format!("{text:?} is not two hex digits")))
}

fn push_set(
    out: &mut Vec<u8>,
    rel_oid: u8,
    compaction: Compaction,
    data: &[u8],
) -> Result<(), Iso28560_2Error> {
    push_set_padded(out, rel_oid, compaction, data, None)
}

/// Writes one data set; `Some(pad)` sets the offset flag and appends `pad` zero pad bytes
/// (the offset byte counts them, §2.2), which readers skip.
fn push_set_padded(
    out: &mut Vec<u8>,
    rel_oid: u8,
    compaction: Compaction,
    data: &[u8],
    pad: Option<u8>,
) -> Result<(), Iso28560_2Error> {
    let len = u8::try_from(data.len())
        .map_err(|_| bad(rel_oid, format!("{} bytes of data exceed 255", data.len())))?;
    let precursor = (compaction.code() << 4) | rel_oid;
    match pad {
        None => out.extend([precursor, len]),
        Some(pad) => out.extend([precursor | OFFSET_FLAG, pad, len]),
    }
    out.extend_from_slice(data);
    out.resize(out.len() + usize::from(pad.unwrap_or(0)), 0);
    Ok(())
}

fn compact(out: &[u8], rel_oid: u8, text: &str) -> Result<(Compaction, Vec<u8>), Iso28560_2Error> {
    compaction::encode_best(text).map_err(|source| Iso28560_2Error::Compaction {
        rel_oid,
        offset: out.len(),
        source,
    })
}

fn push_text(out: &mut Vec<u8>, rel_oid: u8, text: &str) -> Result<(), Iso28560_2Error> {
    let (scheme, data) = compact(out, rel_oid, text)?;
    push_set(out, rel_oid, scheme, &data)
}

/// Layouts tried before the encoder gives up on avoiding the ISO 28560-3 CRC: the plain
/// one, then the primary item id with an offset byte and 0, 1, 2, … pad bytes. Each layout
/// shifts the bytes the CRC covers, so each passes it by chance with odds of 1 in 65536;
/// eight in a row would be 1 in 2^128.
const LAYOUTS: u8 = 8;

impl Iso28560_2Tag {
    /// Encodes the tag: data sets in relOID order (1 first, `other` last, as given), each
    /// text in its most compact scheme, a `00` terminator, zero-padded to whole 4-byte blocks.
    ///
    /// The bytes never pass the ISO 28560-3 CRC (in either byte order or basic block form,
    /// also with the rest of a 34-byte memory zero-filled): a reader could otherwise take
    /// them for an ISO 28560-3 tag with another item id (issue 14). When the plain layout
    /// passes it by chance, the primary item id gets an offset byte and pad bytes, which
    /// every reader skips; the decoded tag is the same.
    pub fn encode(&self) -> Result<Vec<u8>, Iso28560_2Error> {
        for layout in 0..LAYOUTS {
            let pii_pad = layout.checked_sub(1);
            let out = self.encode_layout(pii_pad)?;
            if !iso28560_3::crc_could_hold(&out) {
                return Ok(out);
            }
        }
        Err(Iso28560_2Error::Iso28560_3Collision { layouts: LAYOUTS })
    }

    /// Encodes with the primary item id plain (`None`) or with an offset byte and `pii_pad`
    /// pad bytes.
    fn encode_layout(&self, pii_pad: Option<u8>) -> Result<Vec<u8>, Iso28560_2Error> {
        let mut out = Vec::new();
        if self.primary_item_id.is_empty() {
            return Err(bad(
                REL_PRIMARY_ITEM_ID,
                "the primary item identifier is empty",
            ));
        }
        let (scheme, pii) = compact(&out, REL_PRIMARY_ITEM_ID, &self.primary_item_id)?;
        push_set_padded(&mut out, REL_PRIMARY_ITEM_ID, scheme, &pii, pii_pad)?;
        if let Some(rel_oids) = &self.content_parameter {
            let data = encode_content_parameter(rel_oids)?;
            push_set(
                &mut out,
                REL_CONTENT_PARAMETER,
                Compaction::ApplicationDefined,
                &data,
            )?;
        }
        if let Some(owner) = &self.owner_isil {
            push_set(
                &mut out,
                REL_OWNER,
                Compaction::ApplicationDefined,
                &isil::encode(owner)?,
            )?;
        }
        if let Some(set) = self.set {
            push_text(&mut out, REL_SET, &encode_set(set)?)?;
        }
        if let Some(usage) = self.type_of_usage {
            push_set(
                &mut out,
                REL_TYPE_OF_USAGE,
                Compaction::ApplicationDefined,
                &[usage],
            )?;
        }
        if let Some(shelf) = &self.shelf_location {
            push_text(&mut out, REL_SHELF_LOCATION, shelf)?;
        }
        let mut seen = [false; 16];
        for set in &self.other {
            let rel = set.rel_oid;
            if !(REL_SHELF_LOCATION + 1..=MAX_REL_OID).contains(&rel) {
                return Err(bad(rel, "other data elements must have relOID 7 to 14"));
            }
            if std::mem::replace(&mut seen[usize::from(rel)], true) {
                return Err(bad(rel, "appears twice"));
            }
            push_set(&mut out, rel, set.compaction, &set.data)?;
        }
        out.push(0);
        out.resize(out.len().div_ceil(4) * 4, 0);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::{SiteConfig, TagData, TagHints, TagModel};

    /// ISO 28560-2 tags, short ones (checked as the start of a zero-filled memory) and ones
    /// that cover the whole ISO 28560-3 basic block.
    fn some_tag() -> impl Strategy<Value = Iso28560_2Tag> {
        (
            "[0-9]{1,8}",
            proptest::option::of("[A-Z]{2}-[A-Za-z0-9]{1,8}"),
            proptest::option::of(any::<u8>()),
            proptest::option::of(vec(any::<u8>(), 8..30)),
        )
            .prop_map(|(pii, owner_isil, type_of_usage, local)| Iso28560_2Tag {
                primary_item_id: pii,
                content_parameter: None,
                owner_isil,
                set: None,
                type_of_usage,
                shelf_location: None,
                // A supplier identifier (relOID 9) as octets: cheap to encode, so the search
                // for a collision stays fast.
                other: local
                    .map(|data| DataSet {
                        rel_oid: 9,
                        compaction: Compaction::Octets,
                        data,
                    })
                    .into_iter()
                    .collect(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3))]

        /// Issue 14: among tags that differ only in their item id, find one whose plain
        /// layout passes the ISO 28560-3 CRC by chance (about one in 10^4), then show that
        /// the encoder writes it in another layout that decodes to the same tag and reads
        /// as ISO 28560-2 through the detector.
        #[test]
        fn the_encoder_steps_around_a_chance_iso28560_3_crc(base in some_tag()) {
            let collision = (0u32..1_000_000)
                .map(|n| Iso28560_2Tag {
                    primary_item_id: format!("{}{n}", base.primary_item_id),
                    ..base.clone()
                })
                .find(|tag| iso28560_3::crc_could_hold(&tag.encode_layout(None).unwrap()))
                .expect("a chance collision within a million item ids");
            let plain = collision.encode_layout(None).unwrap();
            let written = collision.encode().unwrap();
            prop_assert_ne!(&written, &plain);
            prop_assert!(!iso28560_3::crc_could_hold(&written));
            prop_assert_eq!(decode(&written).unwrap(), collision.clone());
            let hf = TagHints { uhf: Some(false), ..TagHints::default() };
            let detected = crate::decode(&written, &hf, &SiteConfig::default());
            prop_assert_eq!(detected.model, TagModel::Iso28560_2, "{}", detected.reason);
            prop_assert_eq!(detected.data, Some(TagData::Iso28560_2(collision)));
        }
    }

    fn annex_d() -> Vec<u8> {
        [
            0x91, 0x00, 0x05, 0x1C, 0xBE, 0x99, 0x1A, 0x14, 0x02, 0x01, 0xD0, 0x14, 0x02, 0x04,
            0xB3, 0x46, 0x07, 0x44, 0x1C, 0xB6, 0xE2, 0xE3, 0x35, 0xD6, 0x83, 0x02, 0x07, 0xAC,
            0xC0, 0x9E, 0xBA, 0xA0, 0x6F, 0x6B, 0x00, 0x00,
        ]
        .to_vec()
    }

    #[test]
    fn annex_d_decodes_every_element() {
        let tag = decode(&annex_d()).unwrap();
        assert_eq!(tag.primary_item_id, "123456789012");
        assert_eq!(tag.content_parameter, Some(vec![3, 4, 6]));
        assert_eq!(
            tag.set,
            Some(SetInfo {
                parts_in_item: 12,
                part_number: 3
            })
        );
        assert_eq!(tag.shelf_location.as_deref(), Some("QA268.L55"));
        assert_eq!(tag.owner_isil.as_deref(), Some("US-InU-Mu"));
        assert_eq!(tag.type_of_usage, None);
        assert!(tag.other.is_empty());
    }

    #[test]
    fn annex_d_re_encodes_to_a_tag_that_decodes_the_same() {
        let tag = decode(&annex_d()).unwrap();
        assert_eq!(decode(&tag.encode().unwrap()).unwrap(), tag);
    }

    #[test]
    fn a_data_set_running_past_memory_end_names_its_offset() {
        let mut memory = annex_d();
        memory.truncate(30);
        assert_eq!(
            decode(&memory),
            Err(Iso28560_2Error::Truncated {
                offset: 24,
                needed: 12,
                available: 6
            })
        );
    }

    #[test]
    fn a_tag_not_starting_with_the_item_id_is_refused() {
        assert_eq!(
            decode(&[0x02, 0x01, 0xD0, 0x00]),
            Err(Iso28560_2Error::PiiNotFirst(2))
        );
    }

    #[test]
    fn set_information_with_an_odd_digit_count_is_refused() {
        assert!(matches!(
            decode_set("123"),
            Err(Iso28560_2Error::BadValue { rel_oid: 4, .. })
        ));
        assert_eq!(
            encode_set(SetInfo {
                parts_in_item: 12,
                part_number: 3
            })
            .unwrap(),
            "1203"
        );
        assert_eq!(
            encode_set(SetInfo {
                parts_in_item: 2,
                part_number: 1
            })
            .unwrap(),
            "21"
        );
    }
}
