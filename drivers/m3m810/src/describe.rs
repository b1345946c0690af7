//! Captured 3M 810 frames explained for a field engineer (`rfidgw frame decode --protocol 3m810`).
//!
//! A captured frame does not say which way it went, and requests and replies share the
//! command byte. [`describe_frame`] tries both readings; when both fit (write AFI and EAS
//! control requests and their replies are both 9 bytes; `FE 07 05` is an inventory request
//! or a refusal with error `07`), an `E0` first byte means a request (an ISO 15693 UID
//! starts with `E0`, and no error code is `E0`), and so does an error byte the spec does
//! not list; otherwise it is a reply.

use std::collections::BTreeMap;

use rfidgw_driver::FrameDescription;

use crate::frame::{Command, ErrorCode, Frame, ReadStyle, Reply, Request, Start};

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Host to reader.
    Request,
    /// Reader to host.
    Reply,
}

/// Describes one captured frame, guessing its direction (see the module docs).
pub fn describe_frame(bytes: &[u8]) -> FrameDescription {
    describe_frame_as(bytes, None)
}

/// Describes one captured frame; `direction` overrides the guess when the capture knows it.
pub fn describe_frame_as(bytes: &[u8], direction: Option<Direction>) -> FrameDescription {
    let (frame, crc) = match Frame::parse_unchecked(bytes) {
        Ok(parsed) => parsed,
        Err(error) => {
            return FrameDescription {
                command: "unreadable frame".into(),
                direction: "unknown".into(),
                fields: BTreeMap::from([("error".into(), error.to_string())]),
                ..FrameDescription::default()
            };
        }
    };
    let mut description = FrameDescription {
        command: command_name(&frame),
        crc_valid: crc.is_valid(),
        ..FrameDescription::default()
    };
    if !crc.is_valid() {
        description.fields.insert(
            "crc".into(),
            format!("{:04X} sent, {:04X} computed", crc.sent, crc.computed),
        );
    }
    let request = Request::parse(&frame);
    let reply = parse_reply_any_style(&frame);
    let chosen = match (direction, request, reply) {
        (Some(Direction::Request), Ok(request), _) | (None, Ok(request), Err(_)) => {
            Ok(Reading::Request(request))
        }
        (Some(Direction::Reply), _, Ok(reply)) | (None, Err(_), Ok(reply)) => {
            Ok(Reading::Reply(reply))
        }
        (None, Ok(request), Ok(reply)) => {
            let unknown_error = matches!(
                reply,
                Reply::Refused {
                    error: ErrorCode::Other(_),
                    ..
                }
            );
            if frame.body.first() == Some(&0xE0) || unknown_error {
                Ok(Reading::Request(request))
            } else {
                Ok(Reading::Reply(reply))
            }
        }
        (Some(Direction::Request), Err(e), _) => Err(("request", e.to_string())),
        (Some(Direction::Reply), _, Err(e)) => Err(("reply", e.to_string())),
        (None, Err(request_error), Err(reply_error)) => {
            description
                .fields
                .insert("request_error".into(), request_error.to_string());
            Err(("unknown", reply_error.to_string()))
        }
    };
    match chosen {
        Ok(Reading::Request(request)) => {
            description.direction = "request".into();
            fill_request(&mut description, &request);
        }
        Ok(Reading::Reply(reply)) => {
            description.direction = "reply".into();
            fill_reply(&mut description, &reply);
        }
        Err((direction, error)) => {
            description.direction = direction.into();
            let key = if direction == "unknown" {
                "reply_error"
            } else {
                "error"
            };
            description.fields.insert(key.into(), error);
            description
                .fields
                .insert("body".into(), hex::encode_upper(&frame.body));
        }
    }
    description
}

enum Reading {
    Request(Request),
    Reply(Reply),
}

fn command_name(frame: &Frame) -> String {
    match (frame.start, Command::from_code(frame.command)) {
        (Start::Probe, _) => format!("D5 {:02X} hardware probe", frame.command),
        (Start::Command, Some(command)) => format!("{:02X} {}", frame.command, command.name()),
        (Start::Command, None) => format!("{:02X} unknown command", frame.command),
    }
}

/// A read reply does not say its style; try the default first, then the new styles.
fn parse_reply_any_style(frame: &Frame) -> Result<Reply, crate::frame::FrameError> {
    let old_style = match Reply::parse(frame, ReadStyle::Old) {
        Ok(reply) => return Ok(reply),
        Err(error) => error,
    };
    if frame.command != Command::ReadMultiblock.code() {
        return Err(old_style);
    }
    [
        ReadStyle::New { lock_byte: true },
        ReadStyle::New { lock_byte: false },
    ]
    .into_iter()
    .find_map(|style| Reply::parse(frame, style).ok())
    .ok_or(old_style)
}

fn hex_byte(b: u8) -> String {
    format!("{b:02X}")
}

fn fill_request(d: &mut FrameDescription, request: &Request) {
    d.status = None;
    let f = &mut d.fields;
    match request {
        Request::Inventory {
            afi,
            options,
            protocols,
        } => {
            f.insert("afi".into(), hex_byte(*afi));
            f.insert("options".into(), hex_byte(*options));
            if let Some(p) = protocols {
                f.insert("protocols".into(), hex_byte(*p));
            }
        }
        Request::Version => {}
        Request::ReadMultiblock {
            uid,
            first,
            count,
            options,
        } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("first_block".into(), first.to_string());
            f.insert("block_count".into(), count.to_string());
            if let Some(o) = options {
                f.insert("options".into(), hex_byte(*o));
                let style = match ReadStyle::from_options(Some(*o)) {
                    ReadStyle::Old => "old",
                    ReadStyle::New { lock_byte: true } => "new",
                    ReadStyle::New { lock_byte: false } => "new without lock byte",
                };
                f.insert("reply_style".into(), style.into());
            }
        }
        Request::WriteMultiblock {
            uid,
            first,
            count,
            flags,
            data,
        } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("first_block".into(), first.to_string());
            f.insert("block_count".into(), count.to_string());
            f.insert("flags".into(), hex_byte(*flags));
            d.data = Some(hex::encode_upper(data));
        }
        Request::GetAfi { uid } | Request::CheckEas { uid } => {
            f.insert("uid".into(), hex::encode_upper(uid));
        }
        Request::WriteAfi { uid, afi } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("afi".into(), hex_byte(*afi));
        }
        Request::EasControl { uid, on } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("eas".into(), if *on { "01 set" } else { "00 reset" }.into());
        }
        Request::Other { body, .. } | Request::Probe { body, .. } => {
            f.insert("body".into(), hex::encode_upper(body));
        }
    }
}

fn fill_reply(d: &mut FrameDescription, reply: &Reply) {
    d.status = Some(reply.error().to_string());
    let f = &mut d.fields;
    match reply {
        Reply::Inventory { afi, options, tags } => {
            f.insert("afi".into(), hex_byte(*afi));
            f.insert("options".into(), hex_byte(*options));
            f.insert("count".into(), tags.len().to_string());
            d.uids = tags
                .iter()
                .filter_map(|t| t.uid.as_ref().map(hex::encode_upper))
                .collect();
            let dsfids: Vec<String> = tags.iter().filter_map(|t| t.dsfid.map(hex_byte)).collect();
            if !dsfids.is_empty() {
                f.insert("dsfids".into(), dsfids.join(" "));
            }
        }
        Reply::Version(version) => {
            f.insert("version".into(), hex::encode_upper(version));
            f.insert("3m_reader".into(), (version[0] == 0x0A).to_string());
        }
        Reply::ReadMultiblock { uid, style, blocks } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("block_count".into(), blocks.len().to_string());
            if let Some(first) = blocks.first() {
                f.insert("first_block".into(), first.number.to_string());
            }
            let style = match style {
                ReadStyle::Old => "old",
                ReadStyle::New { lock_byte: true } => "new",
                ReadStyle::New { lock_byte: false } => "new without lock byte",
            };
            f.insert("reply_style".into(), style.into());
            let locks: Vec<String> = blocks.iter().filter_map(|b| b.lock.map(hex_byte)).collect();
            if !locks.is_empty() {
                f.insert("locks".into(), locks.join(" "));
            }
            d.data = Some(
                blocks
                    .iter()
                    .map(|b| hex::encode_upper(&b.data))
                    .collect::<String>(),
            );
        }
        Reply::WriteMultiblock { uid, next_block } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("next_block".into(), next_block.to_string());
        }
        Reply::GetAfi { uid, afi } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            f.insert("afi".into(), hex_byte(*afi));
        }
        Reply::WriteAfi { uid } | Reply::EasControl { uid } => {
            f.insert("uid".into(), hex::encode_upper(uid));
        }
        Reply::CheckEas { uid, eas } => {
            f.insert("uid".into(), hex::encode_upper(uid));
            let eas = match eas {
                Some(byte) => hex_byte(*byte),
                // Reply::eas_on gives the reasoning.
                None => "none: UID-only reply, read as EAS on [unverified]".into(),
            };
            f.insert("eas".into(), eas);
        }
        Reply::Refused {
            command,
            error,
            detail,
        } => {
            if !detail.is_empty() {
                f.insert("detail".into(), hex::encode_upper(detail));
            }
            if *command == Command::CheckEas.code() && *error == ErrorCode::NoTransponder {
                f.insert("eas".into(), "00 (error 06 means EAS off, §4.3)".into());
            }
        }
        Reply::Other { body, .. } | Reply::Probe { body, .. } => {
            f.insert("body".into(), hex::encode_upper(body));
        }
    }
    if matches!(reply, Reply::Probe { .. }) {
        d.status = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(hex: &str) -> FrameDescription {
        describe_frame(&hex::decode(hex).unwrap())
    }

    #[test]
    fn an_inventory_request_is_described_as_a_request_without_status() {
        let d = describe("D60005FE0005FA40");
        assert_eq!(d.command, "FE Read Block UID (inventory)");
        assert_eq!(d.direction, "request");
        assert_eq!(d.status, None);
        assert!(d.crc_valid);
        assert_eq!(d.fields["afi"], "00");
        assert_eq!(d.fields["options"], "05");
    }

    #[test]
    fn an_inventory_reply_lists_its_uids() {
        let d = describe("D60007FE00000500C97B");
        assert_eq!(d.direction, "reply");
        assert_eq!(d.status.as_deref(), Some("00 OK"));
        assert!(d.uids.is_empty());
        assert_eq!(d.fields["count"], "0");
    }

    #[test]
    fn a_write_afi_request_and_its_reply_are_told_apart() {
        let request = describe("D6000C09E004010031269117C2C7D1");
        assert_eq!(request.direction, "request");
        assert_eq!(request.fields["afi"], "C2");
        let reply = crate::frame::Reply::WriteAfi {
            uid: [0xE0, 4, 1, 0, 0x31, 0x26, 0x91, 0x17],
        }
        .to_frame()
        .to_bytes()
        .unwrap();
        let reply = describe_frame(&reply);
        assert_eq!(reply.direction, "reply");
        assert_eq!(reply.fields["uid"], "E004010031269117");
    }

    #[test]
    fn both_check_eas_reply_forms_are_described_as_replies() {
        let uid = [0xE0, 4, 1, 0, 0x31, 0x26, 0x91, 0x17];
        for (eas, want) in [
            (Some(0x01), "01"),
            (None, "none: UID-only reply, read as EAS on [unverified]"),
        ] {
            let bytes = Reply::CheckEas { uid, eas }.to_frame().to_bytes().unwrap();
            let d = describe_frame(&bytes);
            assert_eq!(d.command, "03 check EAS");
            assert_eq!(d.direction, "reply", "{eas:?}");
            assert_eq!(d.status.as_deref(), Some("00 OK"));
            assert_eq!(d.fields["uid"], "E004010031269117");
            assert_eq!(d.fields["eas"], want);
        }
    }

    #[test]
    fn a_bad_crc_is_reported_not_refused() {
        let d = describe("D60005FE0005FA41");
        assert!(!d.crc_valid);
        assert_eq!(d.fields["crc"], "FA41 sent, FA40 computed");
        assert_eq!(d.direction, "request");
    }

    #[test]
    fn garbage_gets_a_description_with_the_error() {
        let d = describe("0102");
        assert_eq!(d.command, "unreadable frame");
        assert!(d.fields["error"].contains("shortest"), "{:?}", d.fields);
    }
}
