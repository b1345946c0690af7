//! Every row of `tests/vectors/tags.tsv` decodes to its expected values (PROTOCOLS.md §7).

use rfidgw_tag::iso28560_3::crc16;
use rfidgw_tag::{
    ByteOrder, DecodedTag, Owner, SiteConfig, TagData, TagHints, TagModel, decode, encode_like,
    parse_hex,
};

const TAGS_TSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/tags.tsv"
));

struct Row<'a> {
    id: &'a str,
    model: &'a str,
    hex: &'a str,
    primary_item_id: &'a str,
    parts: &'a str,
    part: &'a str,
    usage: &'a str,
    country_or_isil: &'a str,
    library: &'a str,
    crc: &'a str,
    extra: &'a str,
}

fn rows() -> Vec<Row<'static>> {
    let mut lines = TAGS_TSV
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty());
    let header: Vec<&str> = lines.next().expect("header line").split('\t').collect();
    assert_eq!(
        header,
        [
            "id",
            "model",
            "hex",
            "primary_item_id",
            "parts",
            "part",
            "usage",
            "country_or_isil",
            "library",
            "crc",
            "extra",
            "status",
            "source"
        ]
    );
    lines
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 13, "row {line:?}");
            Row {
                id: f[0],
                model: f[1],
                hex: f[2],
                primary_item_id: f[3],
                parts: f[4],
                part: f[5],
                usage: f[6],
                country_or_isil: f[7],
                library: f[8],
                crc: f[9],
                extra: f[10],
            }
        })
        .collect()
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// The value of an `extra` key as the decoded tag states it.
fn extra(tag: &DecodedTag, key: &str) -> String {
    let data = tag.data.as_ref().expect("decoded data");
    match (key, data) {
        ("byte_order", _) => tag.byte_order.as_str().to_owned(),
        ("shelf_location", TagData::Iso28560_2(t)) => or_dash(t.shelf_location.clone()),
        ("content_parameter", TagData::Iso28560_2(t)) => {
            or_dash(t.content_parameter.as_ref().map(|list| {
                list.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }))
        }
        ("type", TagData::Rfid501(t)) => t.item_type.to_string(),
        ("branch", TagData::Rfid501(t)) => t.branch.to_string(),
        ("custom", TagData::Rfid501(t)) => t.custom.to_string(),
        ("filter", TagData::Sgtin96(s)) => s.filter.to_string(),
        ("partition", TagData::Sgtin96(s)) => s.partition.to_string(),
        ("company_prefix", TagData::Sgtin96(s)) => s.company_prefix_digits(),
        ("item_reference", TagData::Sgtin96(s)) => s.item_reference_digits(),
        ("serial", TagData::Sgtin96(s)) => s.serial.to_string(),
        ("gtin", TagData::Sgtin96(s)) => s.gtin(),
        _ => panic!("extra key {key} is not compared for {:?}", tag.model),
    }
}

fn expected_model(model: &str) -> TagModel {
    match model {
        "iso28560-3" => TagModel::Iso28560_3,
        "iso28560-2" => TagModel::Iso28560_2,
        "rfid501" => TagModel::Rfid501,
        "sgtin-96" => TagModel::EpcSgtin96,
        other => panic!("model {other} has no decoder"),
    }
}

#[test]
fn every_vector_in_tags_tsv_decodes_to_its_expected_values() {
    let site = SiteConfig::default();
    let rows = rows();
    assert_eq!(rows.len(), 8, "PROTOCOLS.md §7 lists 8 tag vectors");
    for row in &rows {
        let bytes = parse_hex(row.hex).expect("vector hex");
        if row.model == "crc-ref" {
            assert_eq!(format!("{:04X}", crc16(&bytes)), row.crc, "{}", row.id);
            continue;
        }
        // No hints: detection alone must find the model.
        let tag = decode(&bytes, &TagHints::default(), &site);
        assert_eq!(
            tag.model,
            expected_model(row.model),
            "{}: {}",
            row.id,
            tag.reason
        );
        assert_eq!(tag.error, None, "{}", row.id);
        let item = tag.item.as_ref().expect("item");
        let (owner, library) = match (&item.owner, &tag.data) {
            // Library number 0 names no owner, but the vector's column is the raw field.
            (None, Some(TagData::Rfid501(t))) => ("-".to_owned(), t.library.to_string()),
            (None, _) => ("-".to_owned(), "-".to_owned()),
            (Some(Owner::Isil { isil }), _) => (isil.clone(), "-".to_owned()),
            (Some(Owner::CountryLibrary { country, library }), _) => {
                (country.clone(), library.clone())
            }
            (Some(Owner::LibraryNumber { library, .. }), _) => {
                ("-".to_owned(), library.to_string())
            }
        };
        let actual = [
            item.primary_item_id.clone(),
            or_dash(item.parts_in_item.map(|v| v.to_string())),
            or_dash(item.part_number.map(|v| v.to_string())),
            or_dash(item.type_of_usage.map(|v| format!("{v:02X}"))),
            owner,
            library,
            or_dash(tag.crc.map(|crc| format!("{crc:04X}"))),
        ];
        let expected = [
            row.primary_item_id,
            row.parts,
            row.part,
            row.usage,
            row.country_or_isil,
            row.library,
            row.crc,
        ];
        assert_eq!(actual, expected.map(str::to_owned), "{}", row.id);
        assert_eq!(
            tag.crc_valid,
            (row.crc != "-").then_some(true),
            "{}",
            row.id
        );
        if row.extra != "-" {
            for pair in row.extra.split(';') {
                let (key, value) = pair.split_once('=').expect("key=value");
                assert_eq!(extra(&tag, key), value, "{}: {key}", row.id);
            }
        }
        if !row.extra.contains("byte_order") {
            assert_eq!(tag.byte_order, ByteOrder::AsRead, "{}", row.id);
        }
    }
}

#[test]
fn re_encoding_a_vector_like_it_was_found_gives_back_its_bytes() {
    let site = SiteConfig::default();
    for row in rows().iter().filter(|row| row.model != "crc-ref") {
        let bytes = parse_hex(row.hex).expect("vector hex");
        let tag = decode(&bytes, &TagHints::default(), &site);
        let data = tag.data.clone().expect("data");
        let written = encode_like(&tag, &data, &site).expect("encode");
        let decoded_again = decode(&written, &TagHints::default(), &site);
        assert_eq!(decoded_again.data, tag.data, "{}", row.id);
        assert_eq!(decoded_again.byte_order, tag.byte_order, "{}", row.id);
        // Fixed layouts come back byte for byte; ISO 28560-2 may choose other compactions.
        if row.model != "iso28560-2" {
            assert_eq!(written[..bytes.len()], bytes[..], "{}", row.id);
        }
    }
}
