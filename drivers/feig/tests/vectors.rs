//! Every `feig-isohost` row of tests/vectors/frames.tsv is produced from typed values and
//! parsed back exactly; the CRC rows check CRC-16/MCRF4XX.

use rfidgw_feig::frame::{
    Addressing, CRC, InventoryItem, InventoryReply, NxpCommand, OutputMode, RawFrame, Reply,
    Request, SetOutput, Status, TR_TYPE_ISO15693,
};

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

fn rows() -> Vec<Row<'static>> {
    let mut lines = FRAMES.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(header[..5], ["id", "protocol", "direction", "hex", "crc"]);
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
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

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

/// The typed value each FEIG vector stands for.
fn typed(id: &str) -> Option<Result<Request, RawFrame>> {
    let addressed = Addressing::Addressed(UID);
    Some(Ok(match id {
        "feig-inventory" => Request::Inventory {
            more: false,
            afi: None,
            notify: None,
        },
        "feig-sw-version" => Request::SoftwareVersion,
        "feig-baud-detect" => Request::BaudDetect,
        "feig-rf-reset" => Request::RfReset,
        "feig-sysinfo" => Request::GetSystemInfo {
            addressing: addressed,
        },
        "feig-read-blocks" => Request::ReadMultipleBlocks {
            addressing: addressed,
            first: 0,
            count: 8,
        },
        "feig-write-afi-07" => Request::WriteAfi {
            addressing: addressed,
            afi: 0x07,
        },
        "feig-write-afi-c2" => Request::WriteAfi {
            addressing: addressed,
            afi: 0xC2,
        },
        "feig-nxp-set-eas" => Request::Nxp {
            command: NxpCommand::SetEas,
            addressing: addressed,
        },
        "feig-nxp-reset-eas" => Request::Nxp {
            command: NxpCommand::ResetEas,
            addressing: addressed,
        },
        "feig-nxp-eas-alarm" => Request::Nxp {
            command: NxpCommand::EasAlarm,
            addressing: Addressing::NonAddressed,
        },
        "feig-set-output" => Request::SetOutput(SetOutput::new(
            OutputMode::On,
            OutputMode::Flash,
            OutputMode::Unchanged,
            30,
            30,
        )),
        "feig-get-input" => Request::GetInput,
        "feig-inventory-reply-1" => {
            return Some(Err(Reply {
                address: 0x00,
                command: 0xB0,
                status: Status::Ok,
                data: InventoryReply {
                    items: vec![InventoryItem {
                        tr_type: TR_TYPE_ISO15693,
                        dsfid: 0,
                        uid: UID,
                    }],
                }
                .to_data(),
                data_offset: 4,
            }
            .to_raw()));
        }
        "feig-inventory-reply-0" => {
            return Some(Err(Reply {
                address: 0x00,
                command: 0xB0,
                status: Status::NoTransponder,
                data: Vec::new(),
                data_offset: 4,
            }
            .to_raw()));
        }
        _ => return None,
    }))
}

#[test]
fn every_feig_vector_is_produced_from_its_typed_value_byte_for_byte() {
    let mut seen = 0;
    for row in rows().iter().filter(|r| r.protocol == "feig-isohost") {
        let want = hex::decode(row.hex).unwrap();
        let produced =
            match typed(row.id).unwrap_or_else(|| panic!("no typed value for {}", row.id)) {
                Ok(request) => request.to_raw(0xFF).to_bytes(),
                Err(reply) => reply.to_bytes(),
            };
        assert_eq!(hex::encode_upper(produced), row.hex, "{}", row.id);
        assert_eq!(
            want.len(),
            usize::from(want[0]),
            "{}: LEN counts every byte",
            row.id
        );
        seen += 1;
    }
    assert_eq!(seen, 15, "all FEIG rows of frames.tsv");
}

#[test]
fn every_feig_vector_parses_back_to_its_typed_value() {
    for row in rows().iter().filter(|r| r.protocol == "feig-isohost") {
        let bytes = hex::decode(row.hex).unwrap();
        let raw = RawFrame::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", row.id));
        match typed(row.id).unwrap() {
            Ok(request) => {
                assert_eq!(row.direction, "host->reader", "{}", row.id);
                assert_eq!(Request::from_raw(&raw).unwrap(), request, "{}", row.id);
            }
            Err(reply_raw) => {
                assert_eq!(row.direction, "reader->host", "{}", row.id);
                assert_eq!(raw, reply_raw, "{}", row.id);
                Reply::from_raw(&raw).unwrap();
            }
        }
    }
}

#[test]
fn the_crc_column_is_what_crc_16_mcrf4xx_gives_and_goes_on_the_wire_lsb_first() {
    for row in rows().iter().filter(|r| r.protocol == "feig-isohost") {
        let bytes = hex::decode(row.hex).unwrap();
        let want = u16::from_str_radix(row.crc, 16).unwrap();
        let (covered, wire) = bytes.split_at(bytes.len() - 2);
        assert_eq!(CRC.checksum(covered), want, "{}", row.id);
        assert_eq!(u16::from_le_bytes([wire[0], wire[1]]), want, "{}", row.id);
    }
}

#[test]
fn the_crc_check_rows_hold_for_the_rust_crc_constants() {
    let mut checked = 0;
    for row in rows().iter().filter(|r| r.protocol == "crc-check") {
        let data = hex::decode(row.hex).unwrap();
        let want = u16::from_str_radix(row.crc, 16).unwrap();
        let algorithm = match row.id {
            "check-ibm-3740" => &crc::CRC_16_IBM_3740,
            "check-genibus" => &crc::CRC_16_GENIBUS,
            "check-mcrf4xx" => &crc::CRC_16_MCRF4XX,
            "check-ibm-sdlc" => &crc::CRC_16_IBM_SDLC,
            _ => continue,
        };
        assert_eq!(
            crc::Crc::<u16>::new(algorithm).checksum(&data),
            want,
            "{}",
            row.id
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
    assert_eq!(CRC.checksum(b"123456789"), 0x6F91);
}

#[test]
fn the_vectors_decode_for_the_cli_with_the_right_command_and_status() {
    let cases = [
        ("feig-inventory", "B0 01 inventory", None),
        ("feig-read-blocks", "B0 23 read multiple blocks", None),
        ("feig-nxp-set-eas", "B1 04 A2 NXP set EAS", None),
        ("feig-set-output", "71 set output", None),
        ("feig-sw-version", "65 get software version", None),
        ("feig-inventory-reply-1", "B0 01 inventory", Some("00 OK")),
        (
            "feig-inventory-reply-0",
            "B0 ISO host command",
            Some("01 no transponder"),
        ),
    ];
    let rows = rows();
    for (id, command, status) in cases {
        let row = rows.iter().find(|r| r.id == id).unwrap();
        let d = rfidgw_feig::describe_frame(&hex::decode(row.hex).unwrap());
        assert_eq!(d.command, command, "{id}");
        assert_eq!(d.status.as_deref(), status, "{id}");
        assert!(d.crc_valid, "{id}");
    }
}
