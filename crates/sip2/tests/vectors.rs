//! The public SIP2 vectors (tests/vectors/sip2-good.tsv, sip2-bad-checksum.tsv): every good
//! frame parses and re-encodes byte for byte; the bad-checksum frames are rejected in strict
//! mode and accepted in lenient mode.

use bytes::BytesMut;
use rfidgw_sip2::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use rfidgw_sip2::frame::{AnyMessage, ChecksumStatus, Command, FrameError, WireFormat};
use tokio_util::codec::Decoder;

const GOOD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/sip2-good.tsv"
));
const BAD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/sip2-bad-checksum.tsv"
));

/// Rows as column lists: header skipped, `#` comments skipped, nothing trimmed.
fn rows(tsv: &str) -> Vec<Vec<&str>> {
    tsv.lines()
        .skip(1)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect()
}

fn decode_with(
    policy: ChecksumPolicy,
    frame: &str,
) -> Result<rfidgw_sip2::frame::Decoded, FrameError> {
    let mut codec = Sip2Codec::new(WireFormat::default(), Terminator::Cr, policy);
    let mut buf = BytesMut::from(frame.as_bytes());
    buf.extend_from_slice(b"\r");
    codec
        .decode(&mut buf)
        .expect("no I/O error")
        .expect("a whole frame")
}

#[test]
fn every_good_vector_parses_and_re_encodes_byte_for_byte() {
    let rows = rows(GOOD);
    assert_eq!(rows.len(), 20, "PROTOCOLS.md §7 lists 20 good vectors");
    for row in rows {
        let (id, msg, frame, expect) = (row[0], row[1], row[3], row[4]);
        let decoded =
            decode_with(ChecksumPolicy::Strict, frame).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(decoded.message.command.code(), msg, "{id}");
        let want = if expect == "valid" {
            ChecksumStatus::Valid
        } else {
            ChecksumStatus::Absent
        };
        assert_eq!(decoded.checksum, want, "{id}");
        let again = decoded.message.encode(&WireFormat::default()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&again),
            frame,
            "{id} re-encodes byte for byte"
        );
    }
}

#[test]
fn every_good_vector_has_a_typed_form_that_round_trips() {
    for row in rows(GOOD) {
        let (id, frame) = (row[0], row[3]);
        let message = decode_with(ChecksumPolicy::Strict, frame).unwrap().message;
        let typed = AnyMessage::from_message(&message).unwrap_or_else(|e| panic!("{id}: {e}"));
        let rebuilt = AnyMessage::from_message(&typed.to_message()).unwrap();
        assert_eq!(rebuilt, typed, "{id}");
    }
}

#[test]
fn the_checkin_response_vector_carries_its_sort_bin() {
    let row = rows(GOOD).into_iter().find(|r| r[0] == "good-17").unwrap();
    let message = decode_with(ChecksumPolicy::Strict, row[3]).unwrap().message;
    let AnyMessage::CheckinResponse(r) = AnyMessage::from_message(&message).unwrap() else {
        panic!("not a checkin response");
    };
    assert!(r.ok && r.resensitize && !r.alert);
    assert_eq!(r.magnetic_media, Some(false));
    assert_eq!(r.sort_bin.as_deref(), Some("sort bin A1"));
    assert_eq!(r.screen_message, vec!["Screen Message for CheckInBook"]);
}

#[test]
fn the_acs_status_vector_gives_timeout_and_retries() {
    let row = rows(GOOD).into_iter().find(|r| r[0] == "good-14").unwrap();
    let message = decode_with(ChecksumPolicy::Strict, row[3]).unwrap().message;
    let AnyMessage::AcsStatus(s) = AnyMessage::from_message(&message).unwrap() else {
        panic!("not an ACS status");
    };
    assert_eq!((s.timeout_period, s.retries_allowed), (100, 5));
    assert_eq!(s.protocol_version, "2.00");
    assert_eq!(s.institution_id, "NEX");
}

#[test]
fn repeated_screen_messages_are_kept_in_order() {
    let row = rows(GOOD).into_iter().find(|r| r[0] == "good-18").unwrap();
    let message = decode_with(ChecksumPolicy::Strict, row[3]).unwrap().message;
    assert_eq!(message.command, Command::EndSessionResponse);
    let af: Vec<&str> = message.field_values(rfidgw_sip2::FieldId::AF).collect();
    assert_eq!(af.len(), 3);
    assert!(af[2].starts_with("Screen Message 2"));
}

#[test]
fn bad_checksum_vectors_are_rejected_when_strict() {
    let rows = rows(BAD);
    assert_eq!(rows.len(), 7);
    for row in rows {
        let (id, frame, printed, correct) = (row[0], row[3], row[4], row[5]);
        match decode_with(ChecksumPolicy::Strict, frame) {
            Err(FrameError::BadChecksum {
                printed: p,
                computed,
            }) => {
                assert_eq!(format!("{p:04X}"), printed, "{id}");
                assert_eq!(format!("{computed:04X}"), correct, "{id}");
            }
            other => panic!("{id}: expected a checksum error, got {other:?}"),
        }
    }
}

#[test]
fn bad_checksum_vectors_are_accepted_when_lenient() {
    for row in rows(BAD) {
        let (id, msg, frame) = (row[0], row[1], row[3]);
        let decoded =
            decode_with(ChecksumPolicy::Lenient, frame).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(decoded.message.command.code(), msg, "{id}");
        assert!(
            matches!(decoded.checksum, ChecksumStatus::Invalid { .. }),
            "{id}"
        );
    }
}

#[test]
fn re_encoding_a_bad_checksum_vector_writes_the_correct_checksum() {
    for row in rows(BAD) {
        let (id, frame, printed, correct) = (row[0], row[3], row[4], row[5]);
        let decoded = decode_with(ChecksumPolicy::Lenient, frame).unwrap();
        let again =
            String::from_utf8(decoded.message.encode(&WireFormat::default()).unwrap()).unwrap();
        let fixed = format!("{}{}", frame.strip_suffix(printed).unwrap(), correct);
        assert_eq!(again, fixed, "{id}");
    }
}
