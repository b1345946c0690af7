//! Every `3m810` row of tests/vectors/frames.tsv is produced or parsed exactly, and the
//! GENIBUS check value matches (PROTOCOLS.md §4.3, §5, §7).

use rfidgw_3m810::frame::{self, Frame, ReadStyle, Reply, Request, inventory_options};

const FRAMES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/frames.tsv"
));

struct Row<'a> {
    id: &'a str,
    protocol: &'a str,
    direction: &'a str,
    hex: &'a str,
    crc: &'a str,
}

/// The rows, split on tabs only: the file's blanks are significant and must not be trimmed.
fn rows() -> Vec<Row<'static>> {
    FRAMES
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(cols.len() >= 5, "short row: {line}");
            Row {
                id: cols[0],
                protocol: cols[1],
                direction: cols[2],
                hex: cols[3],
                crc: cols[4],
            }
        })
        .collect()
}

fn m3m_rows() -> Vec<Row<'static>> {
    rows()
        .into_iter()
        .filter(|r| r.protocol == "3m810")
        .collect()
}

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];
const SPEC_UID: [u8; 8] = [0xE0, 0x04, 0x00, 0x00, 0x01, 0x23, 0x45, 0x67];

/// What this crate builds for each row it can produce (the spec's CRC example is a bare
/// CRC illustration whose fields fit no command, so it is checked as a frame only).
fn produced(id: &str) -> Option<Frame> {
    let request = match id {
        "3m-inventory" => Request::Inventory {
            afi: 0x00,
            options: inventory_options::COMMON,
            protocols: None,
        },
        "3m-version" => Request::Version,
        "3m-inventory-afi-07" => Request::Inventory {
            afi: 0x07,
            options: inventory_options::COMMON,
            protocols: None,
        },
        "3m-write-afi-c2" => Request::WriteAfi {
            uid: UID,
            afi: 0xC2,
        },
        "3m-check-eas" => Request::CheckEas { uid: SPEC_UID },
        "3m-eas-on" => Request::EasControl {
            uid: SPEC_UID,
            on: true,
        },
        "3m-inventory-no-tag" => {
            return Some(
                Reply::Inventory {
                    afi: 0x00,
                    options: inventory_options::COMMON,
                    tags: Vec::new(),
                }
                .to_frame(),
            );
        }
        _ => return None,
    };
    Some(request.to_frame())
}

#[test]
fn the_vector_file_has_every_3m810_row_this_test_knows() {
    let ids: Vec<&str> = m3m_rows().iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "3m-spec-crc-example",
            "3m-inventory",
            "3m-inventory-no-tag",
            "3m-version",
            "3m-inventory-afi-07",
            "3m-write-afi-c2",
            "3m-check-eas",
            "3m-eas-on"
        ]
    );
}

#[test]
fn every_3m810_row_parses_with_the_crc_the_file_gives() {
    for row in m3m_rows() {
        let bytes = hex::decode(row.hex).unwrap();
        let frame = Frame::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", row.id));
        let crc = u16::from_str_radix(row.crc, 16).unwrap();
        let last_two = &bytes[bytes.len() - 2..];
        assert_eq!(
            last_two,
            crc.to_be_bytes(),
            "{}: CRC is big-endian on the wire",
            row.id
        );
        assert_eq!(
            frame::checksum(&bytes[1..bytes.len() - 2]),
            crc,
            "{}",
            row.id
        );
        assert_eq!(frame.to_bytes().unwrap(), bytes, "{}: re-encodes", row.id);
    }
}

#[test]
fn every_3m810_row_but_the_crc_example_is_produced_exactly_from_typed_values() {
    for row in m3m_rows() {
        let Some(frame) = produced(row.id) else {
            assert_eq!(row.id, "3m-spec-crc-example");
            continue;
        };
        assert_eq!(
            hex::encode_upper(frame.to_bytes().unwrap()),
            row.hex,
            "{}",
            row.id
        );
    }
}

#[test]
fn every_3m810_row_parses_into_the_typed_value_of_its_direction() {
    for row in m3m_rows() {
        let Some(want) = produced(row.id) else {
            continue;
        };
        let frame = Frame::parse(&hex::decode(row.hex).unwrap()).unwrap();
        match row.direction {
            "host->reader" => {
                let request = Request::parse(&frame).unwrap();
                assert_eq!(request.to_frame(), want, "{}", row.id);
            }
            "reader->host" => {
                let reply = Reply::parse(&frame, ReadStyle::Old).unwrap();
                assert_eq!(reply.to_frame(), want, "{}", row.id);
            }
            other => panic!("{}: direction {other}", row.id),
        }
    }
}

#[test]
fn the_genibus_check_value_matches_the_catalogue() {
    let row = rows()
        .into_iter()
        .find(|r| r.id == "check-genibus")
        .unwrap();
    let input = hex::decode(row.hex).unwrap();
    assert_eq!(input, b"123456789");
    assert_eq!(format!("{:04X}", frame::checksum(&input)), row.crc);
}

#[test]
fn every_3m810_row_is_described_with_its_direction_and_a_valid_crc() {
    for row in m3m_rows() {
        let d = rfidgw_3m810::describe_frame(&hex::decode(row.hex).unwrap());
        assert!(d.crc_valid, "{}", row.id);
        if row.id == "3m-spec-crc-example" {
            continue;
        }
        let want = if row.direction == "host->reader" {
            "request"
        } else {
            "reply"
        };
        assert_eq!(d.direction, want, "{}: {d:?}", row.id);
        assert_eq!(d.status.is_none(), want == "request", "{}", row.id);
    }
}

#[test]
fn the_biblio_rfid_hardware_probe_uses_the_same_len_and_crc_rule() {
    // D5 probe and its reply as 3M software exchanges them (dpavlin/Biblio-RFID 3M810.pm).
    for hex in ["D500050400118C66", "D500090400110A0500027250"] {
        let frame = Frame::parse(&hex::decode(hex).unwrap()).unwrap();
        assert_eq!(frame.start, frame::Start::Probe, "{hex}");
    }
}
