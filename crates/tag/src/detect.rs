//! Model detection (PROTOCOLS.md §2.7) and the public [`decode`] entry point.
//!
//! HF memory is read under every model that can read it completely: ISO 28560-3 by its CRC
//! (as read, then block-reversed) over fields that read, RFID501 by its shape, ISO 28560-2
//! by its data sets. One reading is the answer. Several readings are settled by what the
//! tag and reader say, never by a CRC that may hold by chance (one memory in 65536 of any
//! model passes it): a DSFID that the site's settings (`tags.iso28560_2_dsfid`,
//! `tags.iso28560_3_dsfid`) assign to a model decides; a DSFID that differs from a model's
//! setting rules that model out. When more than one reading remains, the tag is
//! [`TagModel::Ambiguous`]: both readings are kept in [`DecodedTag::readings`] and no item
//! is taken from it (PROTOCOLS.md §2.7, issue 14).
//!
//! Without a complete reading: a partial one (an RFID501 shape, a DSFID-named ISO 28560-2
//! tag whose data sets fail, an ISO 28560-3 CRC over unreadable fields), then blank tags,
//! then an ISO 28560-3 look-alike whose CRC fails (corrupt, never read as another model's
//! item), then UHF site EPC layouts and SGTIN-96. HF steps are skipped for a UHF tag and
//! UHF steps for an HF tag when the hints say which it is.

use crate::iso28560_3::{self, BlockForm, Iso28560_3Error};
use crate::security::SecuritySignals;
use crate::uhf::{SGTIN96_HEADER, SGTIN96_LEN, Sgtin96};
use crate::{
    ByteOrder, DecodeError, DecodedTag, OwnerClass, Reading, Security, SiteConfig, TagData,
    TagHints, TagModel, iso28560_2, rfid501,
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
            readings: Vec::new(),
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
    // Every complete reading the bytes allow; the evidence below chooses among them.
    let mut readings = Vec::new();
    // Partial findings, used only when no model reads completely.
    let mut fallbacks = Vec::new();
    let dsfid_model = dsfid_model(hints, site);

    // ISO 28560-3 by its CRC. A CRC that holds over fields that do not read (one tag in
    // 65536 of any other model passes the CRC by chance) is no reading at all.
    let mut unreadable_iso28560_3 = None;
    match detect_iso28560_3(memory, site) {
        Ok(tag) if tag.error.is_none() => readings.push(tag),
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
    // RFID501 by its shape.
    match rfid501::looks_like(memory) {
        Ok(()) => {
            let tag = DecodedTag::new(
                TagModel::Rfid501,
                "byte 0 = 04, block 7 zero, printable content in blocks 1-4 (RFID501)",
                memory,
            );
            match rfid501::decode(memory) {
                Ok((data, warnings)) => {
                    let mut tag = tag.with_data(TagData::Rfid501(data));
                    tag.warnings = warnings;
                    readings.push(tag);
                }
                Err(e) => fallbacks.push(tag.with_error(e)),
            }
        }
        Err(reason) => reasons.push(reason),
    }
    // ISO 28560-2 by its data sets (named by the DSFID or found by structure).
    let reason = if dsfid_model == Some(TagModel::Iso28560_2) {
        format!(
            "DSFID {:02X} marks ISO 28560-2 (tags.iso28560_2_dsfid)",
            hints.dsfid.unwrap_or_default()
        )
    } else {
        "data sets parse from the primary item id to the terminator (ISO 28560-2; DSFID not used)"
            .to_owned()
    };
    match iso28560_2::decode(memory) {
        Ok(data) => readings.push(
            DecodedTag::new(TagModel::Iso28560_2, reason, memory)
                .with_data(TagData::Iso28560_2(data)),
        ),
        Err(e) => {
            reasons.push(format!("not ISO 28560-2: {e}"));
            if dsfid_model == Some(TagModel::Iso28560_2) {
                fallbacks.push(DecodedTag::new(TagModel::Iso28560_2, reason, memory).with_error(e));
            }
        }
    }

    if readings.len() > 1 {
        return Some(choose(memory, readings, hints, site));
    }
    if let Some(mut tag) = readings.pop() {
        if let Some(model) = dsfid_model
            && model != tag.model
        {
            tag.warnings.push(format!(
                "DSFID {:02X} marks {}, but the memory does not read as that model",
                hints.dsfid.unwrap_or_default(),
                model.as_str()
            ));
        }
        return Some(tag);
    }
    if !fallbacks.is_empty() {
        return Some(fallbacks.remove(0));
    }
    if let Some(tag) = unreadable_iso28560_3 {
        return Some(tag);
    }
    detect_no_reading(memory)
}

/// What memory with no complete reading (and no partial one) is: blank, a corrupt ISO
/// 28560-3 look-alike, or nothing HF.
fn detect_no_reading(memory: &[u8]) -> Option<DecodedTag> {
    // Blank tags.
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
    // An ISO 28560-3 look-alike with a broken CRC is corrupt, not another model.
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

/// The model the tag's DSFID names under the site's settings
/// ([`SiteConfig::model_of_dsfid`]).
fn dsfid_model(hints: &TagHints, site: &SiteConfig) -> Option<TagModel> {
    site.model_of_dsfid(hints.dsfid?)
}

/// Why the tag's DSFID rules `model` out: the site configures a DSFID for the model, and
/// the tag reports another one (00, "not programmed", rules nothing out).
fn dsfid_rules_out(model: TagModel, hints: &TagHints, site: &SiteConfig) -> Option<String> {
    let dsfid = hints.dsfid.filter(|&d| d != 0)?;
    let configured = site.dsfid_of(model)?;
    let key = match model {
        TagModel::Iso28560_2 => "tags.iso28560_2_dsfid",
        _ => "tags.iso28560_3_dsfid",
    };
    (dsfid != configured).then(|| {
        format!(
            "DSFID {dsfid:02X} is not the site's {} DSFID {configured:02X} ({key})",
            model.as_str()
        )
    })
}

/// Chooses among several complete readings of one memory by what the tag and the reader
/// said, never by a CRC that may hold by chance; when nothing decides, the tag is
/// ambiguous and gives no item.
///
/// Evidence, strongest first: the DSFID names a model (the site's configured DSFIDs); the
/// DSFID differs from a model's configured DSFID and so rules it out. The UHF/HF question
/// was settled before HF models were tried. The AFI does not enter: ISO 28560-2 and
/// ISO 28560-3 tags share the library AFIs (PROTOCOLS.md §2.3, §3.1), and sites pick their
/// own pair, so the AFI cannot tell the models apart.
fn choose(
    memory: &[u8],
    readings: Vec<DecodedTag>,
    hints: &TagHints,
    site: &SiteConfig,
) -> DecodedTag {
    let all: Vec<TagModel> = readings.iter().map(|tag| tag.model).collect();
    let also = |chosen: TagModel| {
        all.iter()
            .filter(|&&m| m != chosen)
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    };
    if let Some(model) = dsfid_model(hints, site)
        && let Some(mut tag) = readings.iter().find(|tag| tag.model == model).cloned()
    {
        tag.warnings.push(format!(
            "the memory also reads as {}; DSFID {:02X} decided",
            also(model),
            hints.dsfid.unwrap_or_default()
        ));
        return tag;
    }
    let verdicts: Vec<Option<String>> = readings
        .iter()
        .map(|tag| dsfid_rules_out(tag.model, hints, site))
        .collect();
    let mut remaining = readings
        .iter()
        .zip(&verdicts)
        .filter(|(_, why)| why.is_none());
    if let (Some((only, _)), None) = (remaining.next(), remaining.next()) {
        let mut tag = only.clone();
        for (other, why) in readings.iter().zip(&verdicts) {
            if let Some(why) = why {
                tag.warnings.push(format!(
                    "the memory also reads as {}, ruled out: {why}",
                    other.model.as_str()
                ));
            }
        }
        return tag;
    }
    // Nothing decided (or everything was ruled out): keep every reading, take no item.
    let mut considered: Vec<String> = verdicts.into_iter().flatten().collect();
    if considered.is_empty() {
        considered.push(match hints.dsfid {
            None => "the reader reported no DSFID".to_owned(),
            Some(dsfid) => format!("DSFID {dsfid:02X} names none of them"),
        });
    }
    let why = considered.join("; ");
    let readings: Vec<Reading> = readings
        .into_iter()
        .filter_map(|tag| {
            Some(Reading {
                model: tag.model,
                reason: tag.reason,
                data: tag.data?,
                byte_order: tag.byte_order,
                crc: tag.crc,
                warnings: tag.warnings,
            })
        })
        .collect();
    let models: Vec<TagModel> = readings.iter().map(|r| r.model).collect();
    let mut tag = DecodedTag::new(
        TagModel::Ambiguous,
        format!(
            "the memory reads as {} and nothing the tag or reader said decides",
            models
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        memory,
    )
    .with_error(DecodeError::Ambiguous { models, why });
    tag.readings = readings;
    tag
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
