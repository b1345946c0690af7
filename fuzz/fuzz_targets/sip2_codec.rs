//! Fuzzes the SIP2 codec: arbitrary bytes in arbitrary chunks never panic, and every
//! decoded message can be encoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_sip2::codec::{BytesMut, ChecksumPolicy, Decoder, Encoder, Sip2Codec, Terminator};
use rfidgw_sip2::frame::WireFormat;

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let policy = if control & 1 == 0 {
        ChecksumPolicy::Strict
    } else {
        ChecksumPolicy::Lenient
    };
    let chunk = usize::from(control >> 1).max(1);
    let mut codec = Sip2Codec::new(WireFormat::default(), Terminator::Cr, policy).with_max_len(256);
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).expect("no I/O in memory") {
            if let Ok(decoded) = item {
                let _ = codec.encode(&decoded.message, &mut out);
            }
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("no I/O in memory") {
        drop(item);
    }
});
