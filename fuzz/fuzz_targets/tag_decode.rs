//! Fuzz the tag decoder: arbitrary memory with arbitrary hints and site settings must never
//! panic; whatever decodes must encode back (in the order found) to data that decodes the
//! same (`decode(encode(x)) == x`, the DSFID written with the data); an ISO 28560-2
//! write never passes the ISO 28560-3 CRC; and where the bytes honestly read as two
//! models, the decoder says so (`ambiguous`, both readings, no item) instead of choosing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_tag::iso28560_3::crc_could_hold;
use rfidgw_tag::uhf::EpcLayout;
use rfidgw_tag::{
    DecodeError, SecurityMode, SiteConfig, TagData, TagHints, TagModel, decode, encode_like,
};

fuzz_target!(|input: &[u8]| {
    // The first three bytes choose the hints and site settings; the rest is the memory.
    let [flags, afi, dsfid, memory @ ..] = input else {
        return;
    };
    let hints = TagHints {
        uhf: match flags & 0x03 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        afi: (flags & 0x04 != 0).then_some(*afi),
        dsfid: (flags & 0x08 != 0).then_some(*dsfid),
        eas: (flags & 0x10 != 0).then_some(flags & 0x20 != 0),
        on_loan: (flags & 0x40 != 0).then_some(flags & 0x20 != 0),
        ..TagHints::default()
    };
    let mut site = SiteConfig {
        truncated_basic_block: flags & 0x80 != 0,
        iso28560_2_dsfid: Some(0x06),
        iso28560_3_dsfid: (afi & 0x04 != 0).then_some(0x3E),
        epc_layouts: vec![EpcLayout::de290()],
        ..SiteConfig::default()
    };
    site.security.mode = match afi & 0x03 {
        0 => SecurityMode::Afi,
        1 => SecurityMode::Eas,
        2 => SecurityMode::EpcBit,
        _ => SecurityMode::Database,
    };

    let decoded = decode(memory, &hints, &site);
    // No item without a complete, unambiguous reading: stations rely on it.
    assert_eq!(decoded.item.is_some(), decoded.error.is_none());
    if decoded.model == TagModel::Ambiguous {
        assert!(decoded.item.is_none() && decoded.data.is_none());
        assert!(decoded.readings.len() >= 2, "{:?}", decoded.readings);
        assert!(matches!(decoded.error, Some(DecodeError::Ambiguous { .. })));
        return;
    }
    assert!(decoded.readings.is_empty());
    let Some(data) = decoded.data.clone() else {
        return;
    };
    // Fixed layouts always re-encode; ISO 28560-2 values may not (e.g. an ISIL over 16
    // characters read from a tag), and then there is nothing to compare.
    let encoded = match (encode_like(&decoded, &data, &site), &data) {
        (Ok(bytes), _) => bytes,
        (Err(_), TagData::Iso28560_2(_)) => return,
        (Err(e), _) => panic!("{:?} decoded but does not re-encode: {e}", decoded.model),
    };
    if let TagData::Iso28560_2(_) = data {
        assert!(
            !crc_could_hold(&encoded),
            "ISO 28560-2 write passes the ISO 28560-3 CRC"
        );
    }
    // A write of one model onto a tag whose DSFID names the other sets the DSFID too (the
    // site's for the model written, or none): a DSFID settles a tag both models read, so
    // data under the other model's DSFID is another tag (crates/tag/tests/detect.rs,
    // the campaign's DSFID flip).
    let hints = match hints.dsfid.and_then(|dsfid| site.model_of_dsfid(dsfid)) {
        Some(named) if named != decoded.model => TagHints {
            dsfid: site.dsfid_of(decoded.model),
            ..hints
        },
        _ => hints,
    };
    let again = decode(&encoded, &hints, &site);
    if again.model == TagModel::Ambiguous {
        // Honest ambiguity of a fixed layout (its bytes cannot be varied): it must be
        // reported, with what was written among the readings.
        assert_ne!(decoded.model, TagModel::Iso28560_2, "{}", again.reason);
        assert!(
            again.readings.iter().any(|r| r.model == decoded.model
                && r.data == data
                && r.byte_order == decoded.byte_order),
            "{}",
            again.reason
        );
        return;
    }
    assert_eq!(again.model, decoded.model, "{}", again.reason);
    assert_eq!(again.data, Some(data));
    assert_eq!(again.byte_order, decoded.byte_order);
});
