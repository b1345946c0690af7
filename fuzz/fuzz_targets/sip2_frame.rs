//! Fuzzes the SIP2 frame parser: never panics, and whatever parses re-encodes to bytes
//! that parse to the same message (for the byte-exact character sets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_sip2::encoding::Encoding;
use rfidgw_sip2::frame::{AnyMessage, Message, WireFormat};

fuzz_target!(|data: &[u8]| {
    for encoding in [
        Encoding::Utf8,
        Encoding::Cp850,
        Encoding::Latin1,
        Encoding::Gb18030,
        Encoding::Ascii,
    ] {
        let format = WireFormat {
            encoding,
            delimiter: '|',
        };
        let Ok(decoded) = Message::decode(data, &format) else {
            continue;
        };
        let _ = AnyMessage::from_message(&decoded.message).map(|typed| typed.to_message());
        if !matches!(
            encoding,
            Encoding::Utf8 | Encoding::Cp850 | Encoding::Latin1
        ) {
            continue;
        }
        let Ok(bytes) = decoded.message.encode(&format) else {
            continue;
        };
        let again = Message::decode(&bytes, &format).expect("re-encoded frame parses");
        assert_eq!(again.message, decoded.message);
    }
});
