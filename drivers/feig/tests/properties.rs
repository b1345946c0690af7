//! Property tests: the codec and the frame parsers never panic, and what is encoded
//! decodes back to the same value.

use bytes::BytesMut;
use proptest::prelude::*;
use rfidgw_feig::codec::FeigCodec;
use rfidgw_feig::frame::{
    self, Addressing, BlocksReply, InventoryReply, NtfcTime, NxpCommand, RawFrame, Reply, Request,
    SetOutput, SystemInfoReply,
};
use tokio_util::codec::Decoder;

fn addressing() -> impl Strategy<Value = Addressing> {
    prop_oneof![
        Just(Addressing::NonAddressed),
        Just(Addressing::Selected),
        any::<[u8; 8]>().prop_map(Addressing::Addressed),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::BaudDetect),
        Just(Request::SoftwareVersion),
        Just(Request::GetInput),
        (any::<bool>(), any::<Option<u8>>(), any::<Option<u8>>()).prop_map(
            |(more, afi, notify)| Request::Inventory {
                more,
                afi,
                notify: notify.map(NtfcTime),
            }
        ),
        (addressing(), any::<u8>(), any::<u8>()).prop_map(|(addressing, first, count)| {
            Request::ReadMultipleBlocks {
                addressing,
                first,
                count,
            }
        }),
        (
            addressing(),
            any::<u8>(),
            proptest::collection::vec(any::<[u8; 4]>(), 0..32)
        )
            .prop_map(|(addressing, first, blocks)| Request::WriteMultipleBlocks {
                addressing,
                first,
                block_size: 4,
                data: blocks.concat(),
            }),
        (addressing(), any::<u8>())
            .prop_map(|(addressing, afi)| Request::WriteAfi { addressing, afi }),
        addressing().prop_map(|addressing| Request::GetSystemInfo { addressing }),
        (
            prop_oneof![
                Just(NxpCommand::SetEas),
                Just(NxpCommand::ResetEas),
                Just(NxpCommand::LockEas),
                Just(NxpCommand::EasAlarm)
            ],
            addressing()
        )
            .prop_map(|(command, addressing)| Request::Nxp {
                command,
                addressing
            }),
        any::<[u16; 4]>().prop_map(
            |[os, osf, os_time, out_time]| Request::SetOutput(SetOutput {
                os,
                osf,
                os_time,
                out_time
            })
        ),
    ]
}

fn decode_all(codec: &mut FeigCodec, bytes: &[u8]) -> Vec<RawFrame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        out.push(frame);
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        out.push(frame);
    }
    assert!(buf.is_empty(), "decode_eof leaves nothing behind");
    out
}

/// Whether bytes before `end` start a frame, with a valid CRC, that runs past `end`.
/// CRC-16 framing can be forged by chance (about 1 in 65,536 per candidate length): such a
/// stream is ambiguous on the wire itself, and a reader rightly takes the first frame.
fn forges_a_frame_into(stream: &[u8], end: usize) -> bool {
    (0..end).any(
        |start| match frame::candidate(&stream[start..], frame::MAX_ADVANCED_LEN) {
            frame::Candidate::Complete(len) => {
                start + len > end && frame::crc_ok(&stream[start..start + len])
            }
            _ => false,
        },
    )
}

proptest! {
    #[test]
    fn every_request_survives_encode_and_parse(request in request(), address in any::<u8>()) {
        let bytes = request.to_raw(address).to_bytes();
        let raw = RawFrame::parse(&bytes).unwrap();
        prop_assert_eq!(raw.address, address);
        prop_assert_eq!(Request::from_raw(&raw).unwrap(), request);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_every_byte_is_accounted_for(
        bytes in proptest::collection::vec(any::<u8>(), 0..600)
    ) {
        let mut codec = FeigCodec::default();
        let frames = decode_all(&mut codec, &bytes);
        let counters = codec.stats().snapshot();
        let framed: usize = frames.iter().map(RawFrame::wire_len).sum();
        prop_assert_eq!(framed as u64 + counters.bytes_skipped, bytes.len() as u64);
        prop_assert_eq!(counters.frames_ok, frames.len() as u64);
        for frame in &frames {
            // What the codec accepts, the parsers take without panicking.
            let _ = Request::from_raw(frame);
            if let Ok(reply) = Reply::from_raw(frame) {
                let _ = InventoryReply::parse(&reply);
                let _ = BlocksReply::parse(&reply);
                let _ = SystemInfoReply::parse(&reply);
            }
        }
        let _ = rfidgw_feig::describe_frame(&bytes);
    }

    #[test]
    fn a_frame_after_garbage_is_still_found(
        garbage in proptest::collection::vec(any::<u8>(), 0..40),
        request in request(),
    ) {
        let frame = request.to_raw(0xFF).to_bytes();
        let mut stream = garbage.clone();
        stream.extend_from_slice(&frame);
        prop_assume!(!forges_a_frame_into(&stream, garbage.len()));
        let mut codec = FeigCodec::default();
        let frames = decode_all(&mut codec, &stream);
        prop_assert_eq!(frames.last().map(RawFrame::to_bytes), Some(frame));
    }
}
