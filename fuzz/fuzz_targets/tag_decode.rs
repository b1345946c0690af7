//! Fuzz the tag decoder: arbitrary memory with arbitrary hints and site settings must never
//! panic, and whatever decodes must encode back (in the order found) to data that decodes
//! the same (`decode(encode(x)) == x`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_tag::uhf::EpcLayout;
use rfidgw_tag::{SecurityMode, SiteConfig, TagData, TagHints, decode, encode_like};

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
    assert_eq!(decoded.item.is_some(), decoded.error.is_none());
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
    let again = decode(&encoded, &hints, &site);
    assert_eq!(again.model, decoded.model, "{}", again.reason);
    assert_eq!(again.data, Some(data));
    assert_eq!(again.byte_order, decoded.byte_order);
});
