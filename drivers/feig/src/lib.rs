//! FEIG OBID ISO-Host readers (CPR, MR, LR, PR series) for rfidgw (PROTOCOLS.md §4.2).
//!
//! Four layers, as in the rest of rfidgw:
//!
//! * [`frame`]: requests and replies in FEIG's words, CRC-16/MCRF4XX, no I/O;
//! * [`codec`]: the byte-stream codec (partial frames, resync on garbage, 12 ms rule);
//! * [`driver`]: [`FeigReader`] over any `AsyncRead + AsyncWrite` transport, implementing
//!   the shared [`rfidgw_driver::HfReader`] plus outputs and inputs;
//! * [`sim`]: a virtual FEIG reader with scriptable ISO 15693 tags and faults.
//!
//! [`settings`] holds the `[devices.settings]` of a `driver = "feig"` device and
//! [`FeigDevice`] runs it under the daemon's supervisor.
//!
//! Block byte order: ISO-Host sends data MSB first, so 4-byte blocks arrive byte-reversed
//! relative to tag memory. This crate keeps blocks exactly as the reader sent them (in
//! reads and in writes); the tag decoder undoes the reversal.

pub mod codec;
pub mod device;
pub mod driver;
pub mod frame;
pub mod settings;
pub mod sim;

pub use device::FeigDevice;
pub use driver::{FeigError, FeigReader};
pub use settings::FeigSettings;
pub use sim::{FeigSimulator, SimHandle, VirtualTag};

use rfidgw_driver::FrameDescription;

use crate::frame::{
    BlocksReply, InventoryReply, RawFrame, Reply, Request, Status, SystemInfoReply, command, crc_ok,
};

/// Explains one captured ISO-Host frame for a field engineer (`rfidgw frame decode`).
///
/// Requests and replies share the framing; the direction is told from the shape (a request
/// to `B0` starts with a known sub-command and has its exact length, a reply starts with a
/// status, and only some statuses carry data). A frame that does not parse still gets what
/// could be said, with the reason in `fields["error"]`.
pub fn describe_frame(bytes: &[u8]) -> FrameDescription {
    describe_frame_as(bytes, None)
}

/// Which way a captured frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Host to reader.
    Request,
    /// Reader to host.
    Reply,
}

/// Like [`describe_frame`], with the direction given when the capture knows it.
pub fn describe_frame_as(bytes: &[u8], direction: Option<Direction>) -> FrameDescription {
    let mut d = FrameDescription {
        crc_valid: crc_ok(bytes),
        ..FrameDescription::default()
    };
    let raw = match RawFrame::parse(bytes) {
        Ok(raw) => raw,
        Err(frame::FrameError::BadCrc { .. }) => RawFrame::split(bytes),
        Err(error) => {
            d.command = "unknown".into();
            d.direction = "unknown".into();
            d.fields.insert("error".into(), error.to_string());
            return d;
        }
    };
    d.fields
        .insert("com_adr".into(), format!("{:02X}", raw.address));
    if raw.advanced {
        d.fields.insert("length".into(), "advanced".into());
    }
    let request = Request::from_raw(&raw);
    let as_request = match (direction, &request) {
        (Some(Direction::Request), Ok(_)) => true,
        (Some(Direction::Request), Err(e)) => {
            d.command = format!("{:02X} {}", raw.command, frame::command_name(raw.command));
            d.direction = "request".into();
            d.fields.insert("error".into(), e.to_string());
            return d;
        }
        (None, Ok(parsed)) => looks_like_request(&raw, parsed),
        (Some(Direction::Reply), _) | (None, Err(_)) => false,
    };
    match request {
        Ok(request) if as_request => describe_request(&mut d, &request),
        request => {
            if let Err(reply_error) = describe_reply(&mut d, &raw) {
                // Neither reading fits: report the request reading's error when there was one.
                d.fields.insert(
                    "error".into(),
                    match request {
                        Err(e) => format!("as a request: {e}; as a reply: {reply_error}"),
                        Ok(_) => reply_error.to_string(),
                    },
                );
            }
        }
    }
    d
}

/// Whether a frame that parses as a request should be shown as one. Replies to data-less
/// commands (`[65]` …) carry a status byte that a request never has.
fn looks_like_request(raw: &RawFrame, request: &Request) -> bool {
    match request {
        Request::Other { .. } => false,
        Request::CpuReset | Request::SoftwareVersion | Request::RfReset | Request::GetInput => {
            raw.body.is_empty()
        }
        _ => true,
    }
}

fn describe_request(d: &mut FrameDescription, request: &Request) {
    d.direction = "request".into();
    d.command = request.name();
    d.status = None;
    let f = &mut d.fields;
    match request {
        Request::Inventory { more, afi, notify } => {
            f.insert("more".into(), more.to_string());
            if let Some(ntfc_time) = notify {
                f.insert(
                    "ntfc_time_ms".into(),
                    ntfc_time.wait().as_millis().to_string(),
                );
            }
            if let Some(afi) = afi {
                f.insert("afi".into(), format!("{afi:02X}"));
            }
        }
        Request::ReadMultipleBlocks {
            addressing,
            first,
            count,
        } => {
            insert_addressing(f, *addressing);
            f.insert("db_adr".into(), first.to_string());
            f.insert("db_n".into(), count.to_string());
        }
        Request::WriteMultipleBlocks {
            addressing,
            first,
            block_size,
            data,
        } => {
            insert_addressing(f, *addressing);
            f.insert("db_adr".into(), first.to_string());
            f.insert("db_size".into(), block_size.to_string());
            d.data = Some(hex::encode_upper(data));
        }
        Request::WriteAfi { addressing, afi } => {
            insert_addressing(f, *addressing);
            f.insert("afi".into(), format!("{afi:02X}"));
        }
        Request::GetSystemInfo { addressing } | Request::Nxp { addressing, .. } => {
            insert_addressing(f, *addressing);
        }
        Request::SetOutput(o) => {
            f.insert("os".into(), format!("{:04X}", o.os));
            f.insert("osf".into(), format!("{:04X}", o.osf));
            f.insert("os_time_100ms".into(), o.os_time.to_string());
            f.insert("out_time_100ms".into(), o.out_time.to_string());
        }
        Request::BaudDetect
        | Request::CpuReset
        | Request::SoftwareVersion
        | Request::RfReset
        | Request::GetInput
        | Request::Other { .. } => {}
    }
}

fn insert_addressing(
    f: &mut std::collections::BTreeMap<String, String>,
    addressing: frame::Addressing,
) {
    let mode = match addressing {
        frame::Addressing::NonAddressed => "non-addressed",
        frame::Addressing::Addressed(uid) => {
            f.insert("uid".into(), hex::encode_upper(uid));
            "addressed"
        }
        frame::Addressing::Selected => "selected",
    };
    f.insert("mode".into(), mode.into());
}

fn describe_reply(d: &mut FrameDescription, raw: &RawFrame) -> Result<(), frame::FrameError> {
    d.direction = "reply".into();
    let reply = Reply::from_raw(raw)?;
    d.status = Some(reply.status_text());
    d.command = format!("{:02X} {}", raw.command, frame::command_name(raw.command));
    if reply.data.is_empty() {
        return Ok(());
    }
    d.data = Some(hex::encode_upper(&reply.data));
    if !matches!(reply.status, Status::Ok | Status::MoreData) {
        return Ok(());
    }
    match raw.command {
        command::ISO_HOST => {
            // The sub-command is not echoed: try the reply shapes in turn.
            if let Ok(inventory) = InventoryReply::parse(&reply) {
                d.command = "B0 01 inventory".into();
                d.uids = inventory
                    .items
                    .iter()
                    .map(|i| hex::encode_upper(i.uid))
                    .collect();
                d.fields
                    .insert("data_sets".into(), inventory.items.len().to_string());
                d.data = None;
            } else if let Ok(blocks) = BlocksReply::parse(&reply) {
                d.command = "B0 23 read multiple blocks".into();
                d.fields
                    .insert("db_n".into(), blocks.blocks.len().to_string());
                d.fields
                    .insert("db_size".into(), blocks.block_size.to_string());
                d.fields.insert(
                    "byte_order".into(),
                    "ISO-Host, MSB first (blocks byte-reversed)".into(),
                );
                d.data = Some(hex::encode_upper(blocks.concat()));
            } else if let Ok(info) = SystemInfoReply::parse(&reply) {
                d.command = "B0 2B get system information".into();
                d.uids = vec![hex::encode_upper(info.uid)];
                d.fields
                    .insert("dsfid".into(), format!("{:02X}", info.dsfid));
                d.fields.insert("afi".into(), format!("{:02X}", info.afi));
                d.fields
                    .insert("mem_size".into(), format!("{:04X}", info.mem_size));
                d.fields
                    .insert("ic_ref".into(), format!("{:02X}", info.ic_ref));
            } else {
                d.fields.insert(
                    "note".into(),
                    "B0 reply data matches no known sub-command".into(),
                );
            }
        }
        command::GET_INPUT => {
            let inputs = frame::parse_inputs(&reply)?;
            d.fields
                .insert("inputs".into(), format!("{:03b}", inputs.levels));
            d.fields
                .insert("changed".into(), format!("{:03b}", inputs.changed));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(hex_text: &str) -> FrameDescription {
        describe_frame(&hex::decode(hex_text).unwrap())
    }

    #[test]
    fn an_inventory_request_is_described_as_a_request_without_status() {
        let d = describe("07FFB001001C56");
        assert_eq!(d.command, "B0 01 inventory");
        assert_eq!(d.direction, "request");
        assert_eq!(d.status, None);
        assert!(d.crc_valid);
    }

    #[test]
    fn an_inventory_reply_lists_its_uids() {
        let d = describe("1100B000010300E00401003126911738B3");
        assert_eq!(d.command, "B0 01 inventory");
        assert_eq!(d.status.as_deref(), Some("00 OK"));
        assert_eq!(d.uids, ["E004010031269117"]);
        assert!(d.crc_valid);
    }

    #[test]
    fn a_no_transponder_reply_is_a_reply_with_status_01() {
        let d = describe("0600B0015C63");
        assert_eq!(d.direction, "reply");
        assert_eq!(d.status.as_deref(), Some("01 no transponder"));
        assert!(d.uids.is_empty());
    }

    #[test]
    fn a_frame_with_a_bad_crc_is_still_described_with_crc_valid_false() {
        let d = describe("07FFB001001C57");
        assert!(!d.crc_valid);
        assert_eq!(d.command, "B0 01 inventory");
    }

    #[test]
    fn a_given_direction_overrides_the_guess() {
        let bytes = hex::decode("0600B0015C63").unwrap();
        let d = describe_frame_as(&bytes, Some(Direction::Request));
        assert_eq!(d.direction, "request");
        assert!(d.fields["error"].contains("MODE"), "{:?}", d.fields);
        let d = describe_frame_as(
            &hex::decode("07FFB001001C56").unwrap(),
            Some(Direction::Reply),
        );
        assert_eq!(d.direction, "reply");
        assert_eq!(d.status.as_deref(), Some("01 no transponder"));
    }

    #[test]
    fn a_truncated_frame_says_why() {
        let d = describe("07FFB0");
        assert!(!d.crc_valid);
        assert!(d.fields["error"].contains("too short"), "{:?}", d.fields);
    }

    #[test]
    fn a_read_blocks_reply_gives_the_data_in_wire_order() {
        let reply = Reply {
            address: 0,
            command: command::ISO_HOST,
            status: Status::Ok,
            data: BlocksReply {
                block_size: 4,
                blocks: vec![
                    frame::Block {
                        security: 0,
                        data: vec![1, 2, 3, 4],
                    },
                    frame::Block {
                        security: 0,
                        data: vec![5, 6, 7, 8],
                    },
                ],
            }
            .to_data(),
            data_offset: 4,
        };
        let d = describe_frame(&reply.to_raw().to_bytes());
        assert_eq!(d.command, "B0 23 read multiple blocks");
        assert_eq!(d.data.as_deref(), Some("0102030405060708"));
    }
}
