//! Model detection (PROTOCOLS.md §2.7) and the public [`decode`] entry point.
//!
//! Order (§2.7): ISO 28560-3 by its CRC, as read then block-reversed; RFID501 by its shape;
//! ISO 28560-2 when the site's DSFID says so, then by its structure; blank tags; UHF site EPC
//! layouts and SGTIN-96. HF steps are skipped for a UHF tag and UHF steps for an HF tag when
//! the hints say which it is.
//!
//! One tag in 65536 of any model passes the ISO 28560-3 CRC by chance, so a CRC that holds
//! over fields that do not read wins only when no other model matches, and a valid ISO
//! 28560-3 tag that also fits RFID501 or ISO 28560-2 carries a warning. An ISO 28560-3
//! look-alike whose CRC fails is reported as corrupt, never read as another model's item.

use crate::iso28560_3::{self, BlockForm, Iso28560_3Error};
use crate::security::SecuritySignals;
use crate::uhf::{SGTIN96_HEADER, SGTIN96_LEN, Sgtin96};
use crate::{
    ByteOrder, DecodeError, DecodedTag, OwnerClass, Security, SiteConfig, TagData, TagHints,
    TagModel, iso28560_2, rfid501,
};

/// First byte of an ISO 15693 UID (MSB first).
const ISO15693_UID_PREFIX: u8 = 0xE0;
/// The 3M manufacturing blank: blocks 0-5 `55 55 55 55`, block 6 zero (§2.4).
const BLANK_3M: u8 = 0x55;

impl DecodedTag {
    fn new(model: TagModel, reason: impl Into<String>, raw: &[u8]) -> Self {
        Self {
            model,
            reason: reason.into(),
            data: None,
            item: None,
            error: None,
            byte_order: ByteOrder::AsRead,
            crc_valid: None,
            crc: None,
            security: Security::Unknown,
            owner_class: OwnerClass::Unknown,
            warnings: Vec::new(),
            raw: raw.to_vec(),
        }
    }

    fn with_data(mut self, data: TagData) -> Self {
        self.item = Some(data.item());
        self.data = Some(data);
        self
    }

    fn with_error(mut self, error: impl Into<DecodeError>) -> Self {
        self.error = Some(error.into());
        self
    }
}

/// Decodes one tag: detects its model (with the reason), reads the item, and judges its
/// security state and owner under the site's rules. Never panics.
pub fn decode(memory: &[u8], hints: &TagHints, site: &SiteConfig) -> DecodedTag {
    let mut tag = detect(memory, hints, site);
    let epc_secured = match &tag.data {
        Some(TagData::SiteEpc(epc)) => epc.secured,
        _ => None,
    };
    let signals = SecuritySignals {
        afi: hints
            .afi
            .or_else(|| hints.pc.and_then(crate::uhf::PcWord::afi)),
        eas: hints.eas,
        epc_secured,
        on_loan: hints.on_loan,
    };
    tag.security = site.security.evaluate(&signals);
    tag.owner_class = site
        .owners
        .classify(tag.item.as_ref().and_then(|item| item.owner.as_ref()));
    tag
}

fn detect(memory: &[u8], hints: &TagHints, site: &SiteConfig) -> DecodedTag {
    if memory.is_empty() {
        return DecodedTag::new(TagModel::Unknown, "no memory", memory)
            .with_error(DecodeError::Empty);
    }
    let uhf = hints.uhf.or_else(|| {
        if hints.pc.is_some() {
            Some(true)
        } else if hints.uid.as_ref().and_then(|uid| uid.first()) == Some(&ISO15693_UID_PREFIX) {
            Some(false)
        } else {
            None
        }
    });
    let mut reasons = Vec::new();
    if uhf == Some(true) {
        reasons.push("HF models skipped: the tag is UHF".to_owned());
    } else if let Some(tag) = detect_hf(memory, hints, site, &mut reasons) {
        return tag;
    }
    if uhf == Some(false) {
        reasons.push("EPC models skipped: the tag is HF".to_owned());
    } else if let Some(tag) = detect_epc(memory, site, &mut reasons) {
        return tag;
    }
    DecodedTag::new(TagModel::Unknown, "no data model matched", memory)
        .with_error(DecodeError::NoModel(reasons))
}

fn detect_hf(
    memory: &[u8],
    hints: &TagHints,
    site: &SiteConfig,
    reasons: &mut Vec<String>,
) -> Option<DecodedTag> {
    // 1. ISO 28560-3 by its CRC. A CRC that holds over fields that do not read (one tag in
    //    65536 of any other model passes the CRC by chance) only wins when nothing else does.
    let mut unreadable_iso28560_3 = None;
    match detect_iso28560_3(memory, site) {
        Ok(mut tag) if tag.error.is_none() => {
            // Never guess silently: say when the bytes also fit another model.
            if rfid501::looks_like(memory).is_ok() {
                tag.warnings.push(
                    "the memory also has the RFID501 shape; the valid ISO 28560-3 CRC decided"
                        .to_owned(),
                );
            }
            if iso28560_2::decode(memory).is_ok() {
                tag.warnings.push("the memory also parses as ISO 28560-2 data sets; the valid ISO 28560-3 CRC decided".to_owned());
            }
            return Some(tag);
        }
        Ok(tag) => {
            let why = tag
                .error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            reasons.push(format!("ISO 28560-3 CRC holds but: {why}"));
            unreadable_iso28560_3 = Some(tag);
        }
        Err(reason) => reasons.push(reason),
    }
    // 2. RFID501 by its shape.
    match rfid501::looks_like(memory) {
        Ok(()) => {
            let tag = DecodedTag::new(
                TagModel::Rfid501,
                "byte 0 = 04, block 7 zero, printable content in blocks 1-4 (RFID501)",
                memory,
            );
            return Some(match rfid501::decode(memory) {
                Ok((data, warnings)) => {
                    let mut tag = tag.with_data(TagData::Rfid501(data));
                    tag.warnings = warnings;
                    tag
                }
                Err(e) => tag.with_error(e),
            });
        }
        Err(reason) => reasons.push(reason),
    }
    // 3. ISO 28560-2 when the DSFID says so.
    if let (Some(dsfid), Some(ours)) = (hints.dsfid, site.iso28560_2_dsfid)
        && dsfid == ours
    {
        let tag = DecodedTag::new(
            TagModel::Iso28560_2,
            format!("DSFID {dsfid:02X} marks ISO 28560-2 (tags.iso28560_2_dsfid)"),
            memory,
        );
        return Some(match iso28560_2::decode(memory) {
            Ok(data) => tag.with_data(TagData::Iso28560_2(data)),
            Err(e) => tag.with_error(e),
        });
    }
    // 4. ISO 28560-2 by its structure (a full parse is strong evidence).
    match iso28560_2::decode(memory) {
        Ok(data) => return Some(
            DecodedTag::new(
                TagModel::Iso28560_2,
                "data sets parse from the primary item id to the terminator (ISO 28560-2; DSFID not used)",
                memory,
            )
            .with_data(TagData::Iso28560_2(data)),
        ),
        Err(e) => reasons.push(format!("not ISO 28560-2: {e}")),
    }

    if let Some(tag) = unreadable_iso28560_3 {
        return Some(tag);
    }
    // 5. Blank tags.
    if memory.iter().all(|&b| b == 0) {
        return Some(
            DecodedTag::new(TagModel::Blank, "every byte is 00", memory)
                .with_error(DecodeError::Blank("every byte is 00")),
        );
    }
    if is_3m_blank(memory) {
        let what = "3M manufacturing pattern (blocks 0-5 = 55, block 6 = 00)";
        return Some(
            DecodedTag::new(TagModel::Blank, what, memory).with_error(DecodeError::Blank(what)),
        );
    }
    // 6. An ISO 28560-3 look-alike with a broken CRC is corrupt, not another model.
    if let Some(error) = iso28560_3_lookalike(memory) {
        let mut tag = DecodedTag::new(
            TagModel::Unknown,
            "ISO 28560-3 layout without a valid CRC",
            memory,
        )
        .with_error(DecodeError::CorruptIso28560_3(error));
        tag.crc_valid = Some(false);
        tag.crc = iso28560_3::stored_crc(memory);
        return Some(tag);
    }
    None
}

fn is_3m_blank(memory: &[u8]) -> bool {
    memory.len() >= 28
        && memory.iter().take(24).all(|&b| b == BLANK_3M)
        && memory.iter().skip(24).all(|&b| b == 0)
}

/// Tries both byte orders and the forms the memory and site allow; keeps the order whose
/// CRC holds (as read first).
fn detect_iso28560_3(memory: &[u8], site: &SiteConfig) -> Result<DecodedTag, String> {
    let forms: &[BlockForm] = if memory.len() >= BlockForm::Full.byte_len() {
        if site.truncated_basic_block {
            &[BlockForm::Full, BlockForm::Truncated]
        } else {
            &[BlockForm::Full]
        }
    } else if memory.len() >= BlockForm::Truncated.byte_len() {
        &[BlockForm::Truncated]
    } else {
        return Err(format!(
            "not ISO 28560-3: {} bytes, the basic block needs 32 or 34",
            memory.len()
        ));
    };
    let mut found = Vec::new();
    let mut unreadable: Option<(ByteOrder, u16, Iso28560_3Error)> = None;
    let mut mismatches = Vec::new();
    for order in [ByteOrder::AsRead, ByteOrder::BlockReversed] {
        let logical = order.apply(memory);
        for &form in forms {
            match iso28560_3::check_crc(&logical, form) {
                Ok(crc) => match iso28560_3::decode(&logical, form) {
                    Ok((data, warnings)) => {
                        found.push((order, crc, data, warnings));
                        break;
                    }
                    Err(e) => {
                        unreadable.get_or_insert((order, crc, e));
                    }
                },
                Err(e) => mismatches.push(format!("{} {:?}: {e}", order.as_str(), form)),
            }
        }
    }
    let both = found.len() > 1;
    if let Some((order, crc, data, mut warnings)) = found.into_iter().next() {
        if both {
            warnings.push("the CRC holds in both byte orders; kept the order as read".to_owned());
        }
        let reason = match order {
            ByteOrder::AsRead => "ISO 28560-3 CRC holds as read",
            ByteOrder::BlockReversed => "ISO 28560-3 CRC holds with every 4-byte block reversed",
        };
        let mut tag = DecodedTag::new(TagModel::Iso28560_3, reason, memory)
            .with_data(TagData::Iso28560_3(data));
        tag.byte_order = order;
        tag.crc_valid = Some(true);
        tag.crc = Some(crc);
        tag.warnings = warnings;
        return Ok(tag);
    }
    if let Some((order, crc, error)) = unreadable {
        let mut tag = DecodedTag::new(TagModel::Iso28560_3, "ISO 28560-3 CRC holds", memory)
            .with_error(error);
        tag.byte_order = order;
        tag.crc_valid = Some(true);
        tag.crc = Some(crc);
        return Ok(tag);
    }
    Err(format!("not ISO 28560-3: {}", mismatches.join(", ")))
}

/// The CRC error when memory has the ISO 28560-3 shape (printable item id, owner country of
/// two capital letters) in either byte order, although its CRC failed.
fn iso28560_3_lookalike(memory: &[u8]) -> Option<Iso28560_3Error> {
    let form = if memory.len() >= BlockForm::Full.byte_len() {
        BlockForm::Full
    } else {
        BlockForm::Truncated
    };
    [ByteOrder::AsRead, ByteOrder::BlockReversed]
        .into_iter()
        .find_map(|order| {
            let logical = order.apply(memory);
            let basic = iso28560_3::decode_basic(&logical, form).ok()?;
            let shaped = !basic.primary_item_id.is_empty()
                && basic.country.len() == 2
                && basic.country.bytes().all(|b| b.is_ascii_uppercase())
                && (1..=0x9F).contains(&basic.type_of_usage);
            if !shaped {
                return None;
            }
            iso28560_3::check_crc(&logical, form).err()
        })
}

fn detect_epc(memory: &[u8], site: &SiteConfig, reasons: &mut Vec<String>) -> Option<DecodedTag> {
    for layout in &site.epc_layouts {
        if layout.matches(memory) {
            let tag = DecodedTag::new(
                TagModel::EpcSite,
                format!("EPC length and header match site layout {:?}", layout.name),
                memory,
            );
            return Some(match layout.decode(memory) {
                Ok(epc) => tag.with_data(TagData::SiteEpc(epc)),
                Err(e) => tag.with_error(e),
            });
        }
    }
    if !site.epc_layouts.is_empty() {
        reasons.push("no site EPC layout matches length and header".to_owned());
    }
    if memory.len() == SGTIN96_LEN && memory.first() == Some(&SGTIN96_HEADER) {
        let tag = DecodedTag::new(
            TagModel::EpcSgtin96,
            "12-byte EPC with header 30 (SGTIN-96)",
            memory,
        );
        return Some(match Sgtin96::decode(memory) {
            Ok(sgtin) => tag.with_data(TagData::Sgtin96(sgtin)),
            Err(e) => tag.with_error(e),
        });
    }
    reasons.push(format!(
        "not SGTIN-96: {} bytes with header {:02X} (SGTIN-96 is 12 bytes with header 30)",
        memory.len(),
        memory.first().copied().unwrap_or_default()
    ));
    None
}
