//! Fuzzes the 3M 810 frame parser and codec: arbitrary bytes in arbitrary chunks never
//! panic, every decoded frame parses (or is refused) as a request and as a reply, every
//! byte is accounted for, and every frame decoded re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_3m810::codec::{BytesMut, Decoder, M3m810Codec};
use rfidgw_3m810::frame::{Frame, ReadStyle, Reply, Request};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let _ = rfidgw_3m810::describe_frame(data);
    if let Ok((frame, _)) = Frame::parse_unchecked(data) {
        let _ = Request::parse(&frame);
        let _ = Reply::parse(&frame, ReadStyle::Old);
        let _ = Reply::parse(
            &frame,
            ReadStyle::New {
                lock_byte: control & 1 == 0,
            },
        );
    }

    let chunk = usize::from(control).max(1);
    let mut codec = M3m810Codec::default();
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec
            .decode(&mut buf)
            .expect("decoding bytes in memory never fails")
        {
            let bytes = frame.to_bytes().expect("a decoded frame re-encodes");
            consumed += bytes.len();
            assert_eq!(
                Frame::parse(&bytes).expect("re-encoded frame parses"),
                frame
            );
            let _ = Request::parse(&frame);
            let _ = Reply::parse(&frame, ReadStyle::Old);
        }
    }
    let skipped = usize::try_from(codec.stats().snapshot().bytes_skipped).unwrap_or(usize::MAX);
    assert_eq!(
        consumed + skipped + buf.len(),
        data.len(),
        "every byte is accounted for"
    );
});
