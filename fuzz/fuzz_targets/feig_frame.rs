//! Fuzz the FEIG ISO-Host codec and frame parsers: any bytes, split anywhere, give frames
//! or counted skips, never a panic; every byte is either in a frame or counted as skipped;
//! a frame that parses re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_feig::codec::decode_capture;
use rfidgw_feig::frame::{BlocksReply, InventoryReply, RawFrame, Reply, Request, SystemInfoReply};

fuzz_target!(|data: (u8, &[u8])| {
    let (split, bytes) = data;
    let _ = rfidgw_feig::describe_frame(bytes);
    if let Ok(raw) = RawFrame::parse(bytes) {
        assert_eq!(raw.to_bytes(), bytes);
    }

    let cut = usize::from(split).min(bytes.len());
    let (frames, counters) = decode_capture(&[&bytes[..cut], &bytes[cut..]]);
    let mut framed = 0usize;
    for frame in &frames {
        framed += frame.wire_len();
        let _ = Request::from_raw(frame);
        if let Ok(reply) = Reply::from_raw(frame) {
            let _ = InventoryReply::parse(&reply);
            let _ = BlocksReply::parse(&reply);
            let _ = SystemInfoReply::parse(&reply);
            let _ = reply.status_text();
        }
    }
    assert_eq!(framed as u64 + counters.bytes_skipped, bytes.len() as u64);
});
