//! Property tests: every message type round-trips through encode → decode with arbitrary
//! field values; typed conversions are stable; the codec and parser never panic and give
//! the same frames however the bytes are chunked.

use proptest::prelude::*;
use rfidgw_sip2::checksum;
use rfidgw_sip2::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use rfidgw_sip2::encoding::{Encoding, GB18030_2022_REMAPPED};
use rfidgw_sip2::frame::{
    AnyMessage, ChecksumStatus, Command, Field, FieldId, FixedKind, Message, Trailer, WireFormat,
};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

fn fixed_value(kind: FixedKind, len: usize) -> BoxedStrategy<String> {
    let one = |chars: &'static [char]| {
        proptest::sample::select(chars)
            .prop_map(String::from)
            .boxed()
    };
    match kind {
        FixedKind::YesNo => one(&['Y', 'N']),
        FixedKind::OneZero => one(&['0', '1']),
        FixedKind::YesNoUnknown => one(&['Y', 'N', 'U']),
        FixedKind::Number => proptest::string::string_regex(&format!("[0-9]{{{len}}}"))
            .unwrap()
            .boxed(),
        FixedKind::Text | FixedKind::DateTime => {
            proptest::string::string_regex(&format!("[ -~]{{{len}}}"))
                .unwrap()
                .boxed()
        }
    }
}

fn message() -> impl Strategy<Value = Message> {
    proptest::sample::select(Command::ALL.to_vec()).prop_flat_map(|command| {
        let fixed: Vec<BoxedStrategy<String>> = command
            .fixed_layout()
            .iter()
            .map(|s| fixed_value(s.kind, s.len))
            .collect();
        let field = ("[A-Z0-9]{2}", "[^|\r\n]{0,40}")
            .prop_map(|(id, value)| Field::new(FieldId::new(&id).unwrap(), value));
        let trailer = prop_oneof![
            Just(Trailer::None),
            Just(Trailer::Checksum),
            (0u8..10).prop_map(Trailer::Sequence)
        ];
        (fixed, proptest::collection::vec(field, 0..8), trailer).prop_map(
            move |(fixed, fields, trailer)| Message {
                command,
                fixed: fixed.concat(),
                fields,
                trailer,
            },
        )
    })
}

proptest! {
    #[test]
    fn every_message_type_round_trips_through_encode_and_decode(m in message()) {
        for encoding in [Encoding::Utf8, Encoding::Gb18030] {
            let format = WireFormat { encoding, delimiter: '|' };
            let bytes = m.encode(&format).unwrap();
            let decoded = Message::decode(&bytes, &format).unwrap();
            prop_assert_eq!(&decoded.message, &as_received(&m, encoding));
            let want = if m.trailer == Trailer::None { ChecksumStatus::Absent } else { ChecksumStatus::Valid };
            prop_assert_eq!(decoded.checksum, want);
        }
    }

    #[test]
    fn typed_messages_are_stable_through_raw_and_back(m in message()) {
        let typed = AnyMessage::from_message(&m).unwrap();
        let again = AnyMessage::from_message(&typed.to_message()).unwrap();
        prop_assert_eq!(again, typed);
    }

    #[test]
    fn latin_text_round_trips_in_cp850_and_latin1(value in "[ -{}~\u{a0}-\u{ff}]{0,60}") {
        let m = Message { command: Command::LoginResponse, fixed: "1".into(), fields: vec![Field::new(FieldId::AF, value)], trailer: Trailer::Sequence(1) };
        for encoding in [Encoding::Cp850, Encoding::Latin1] {
            let format = WireFormat { encoding, delimiter: '|' };
            let decoded = Message::decode(&m.encode(&format).unwrap(), &format).unwrap();
            prop_assert_eq!(&decoded.message, &m);
            prop_assert_eq!(decoded.checksum, ChecksumStatus::Valid);
        }
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for encoding in [Encoding::Utf8, Encoding::Cp850, Encoding::Latin1, Encoding::Gb18030, Encoding::Gbk, Encoding::Ascii] {
            let _ = Message::decode(&bytes, &WireFormat { encoding, delimiter: '|' });
        }
    }

    #[test]
    fn the_codec_gives_the_same_frames_however_the_bytes_are_chunked(
        bytes in proptest::collection::vec(proptest::sample::select(b"0123456789AYZ|\r\n CN1xFE".to_vec()), 0..400),
        split in any::<proptest::sample::Index>(),
    ) {
        prop_assume!(!bytes.windows(8).any(|w| w == b"96AZFEF6"));
        let whole = decode_chunks(&[&bytes]);
        let at = split.index(bytes.len() + 1);
        let (a, b) = bytes.split_at(at);
        prop_assert_eq!(decode_chunks(&[a, b]), whole);
    }

    #[test]
    fn a_computed_checksum_always_verifies(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let value = checksum::compute(&bytes);
        prop_assert!(checksum::verify(&bytes, value));
        prop_assert_eq!(checksum::parse(&checksum::format(value)), Some(value));
    }
}

/// The message a peer reads back: GB18030 carries a few private-use characters as the
/// standard characters its 2022 edition gave their bytes, and U+E5E5 not at all
/// (`Encoding::Gb18030`'s own test covers every character).
fn as_received(m: &Message, encoding: Encoding) -> Message {
    if encoding != Encoding::Gb18030 {
        return m.clone();
    }
    let received = |c: char| match GB18030_2022_REMAPPED.iter().find(|(sent, _)| *sent == c) {
        Some(&(_, received)) => received,
        None if c == '\u{E5E5}' => '?',
        None => c,
    };
    let mut m = m.clone();
    for field in &mut m.fields {
        *field = Field::new(
            field.id,
            field.value.chars().map(received).collect::<String>(),
        );
    }
    m
}

fn decode_chunks(chunks: &[&[u8]]) -> Vec<String> {
    let mut codec = Sip2Codec::new(
        WireFormat::default(),
        Terminator::Cr,
        ChecksumPolicy::Strict,
    );
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(format!("{item:?}"));
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
        out.push(format!("{item:?}"));
    }
    out
}
