//! Serde helpers for bytes written as hex in config files (`afi = "07"`, `address = "FF"`).
//!
//! Config authors copy these values from protocol manuals, where they are hex; a plain
//! integer (`address = 255`) is accepted too, so either habit works.

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteText {
    Number(i64),
    Text(String),
}

fn parse_byte<E: serde::de::Error>(value: ByteText) -> Result<u8, E> {
    match value {
        ByteText::Number(n) => u8::try_from(n).map_err(|_| {
            E::custom(format!(
                "{n} is not a byte (0 to 255, or hex text such as \"07\")"
            ))
        }),
        ByteText::Text(t) => {
            let digits = t.trim().trim_start_matches("0x").trim_start_matches("0X");
            if digits.is_empty() || digits.len() > 2 {
                return Err(E::custom(format!("`{t}` is not a hex byte such as \"07\"")));
            }
            u8::from_str_radix(digits, 16)
                .map_err(|_| E::custom(format!("`{t}` is not a hex byte such as \"07\"")))
        }
    }
}

/// A required byte given as hex text (`"C2"`, `"0xC2"`) or an integer.
pub mod byte {
    use super::{ByteText, Deserialize, Deserializer, Serializer, parse_byte};

    /// Reads a byte.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        parse_byte(ByteText::deserialize(d)?)
    }

    /// Writes a byte as two upper-case hex digits.
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:02X}"))
    }
}

/// An optional byte given as hex text or an integer.
pub mod opt_byte {
    use super::{ByteText, Deserialize, Deserializer, Serializer, parse_byte};

    /// Reads an optional byte.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        Option::<ByteText>::deserialize(d)?
            .map(parse_byte)
            .transpose()
    }

    /// Writes an optional byte as two upper-case hex digits.
    #[allow(clippy::ref_option)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&format!("{v:02X}")),
            None => s.serialize_none(),
        }
    }
}

/// An optional byte shown to people, as in journal rows and API answers: written `"0x07"`
/// (a bare `"21"` could be read as decimal), read from any form [`opt_byte`] takes.
pub mod opt_byte_0x {
    use super::{ByteText, Deserialize, Deserializer, Serializer, parse_byte};

    /// Reads an optional byte (`"0x07"`, `"07"` or `7`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        Option::<ByteText>::deserialize(d)?
            .map(parse_byte)
            .transpose()
    }

    /// Writes an optional byte as `0x` and two upper-case hex digits.
    #[allow(clippy::ref_option)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&super::show(*v)),
            None => s.serialize_none(),
        }
    }
}

/// A byte as people read it in the journal and the API: `0x07`.
pub fn show(byte: u8) -> String {
    format!("0x{byte:02X}")
}

/// A byte string given as hex text (spaces allowed): tag memory in config files.
pub mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads hex text into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(&compact)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not hex bytes: {e}")))
    }

    /// Writes bytes as upper-case hex.
    pub fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(value))
    }
}

/// An optional byte string given as hex text.
pub mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads optional hex text into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::bytes")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    /// Writes optional bytes as upper-case hex.
    #[allow(clippy::ref_option)] // serde's `with` fixes this signature
    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&hex::encode_upper(v)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[serde(with = "super::byte")]
        address: u8,
        #[serde(default, with = "super::opt_byte")]
        afi: Option<u8>,
        #[serde(default, with = "super::bytes")]
        memory: Vec<u8>,
    }

    #[test]
    fn hex_text_and_integers_both_give_the_byte() {
        let cases = [
            ("address = \"FF\"", 0xFF),
            ("address = \"0x07\"", 0x07),
            ("address = \"c2\"", 0xC2),
            ("address = 255", 0xFF),
            ("address = 0", 0x00),
        ];
        for (text, want) in cases {
            let sample: Sample = toml::from_str(text).unwrap();
            assert_eq!(sample.address, want, "{text}");
        }
    }

    #[test]
    fn bad_bytes_are_refused_with_the_offending_text() {
        for (text, needle) in [
            ("address = \"zz\"", "zz"),
            ("address = 256", "256"),
            ("address = \"123\"", "123"),
            ("address = -1", "-1"),
            ("address = 1\nafi = \"\"", "not a hex byte"),
            ("address = 1\nmemory = \"0\"", "not hex bytes"),
        ] {
            let err = toml::from_str::<Sample>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_gives_a_byte_or_an_error_never_a_panic(text in ".{0,8}", n in proptest::prelude::any::<i64>()) {
            let quoted = toml::Value::String(text.clone()).to_string();
            let _ = toml::from_str::<Sample>(&format!("address = {quoted}"));
            let parsed = toml::from_str::<Sample>(&format!("address = {n}"));
            proptest::prop_assert_eq!(parsed.is_ok(), (0..=255).contains(&n));
        }
    }

    #[test]
    fn bytes_shown_to_people_are_0x_hex_and_every_form_reads_back() {
        #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
        struct Shown {
            #[serde(default, with = "super::opt_byte_0x")]
            afi: Option<u8>,
        }
        // (JSON read, byte, JSON written)
        for (read, byte, written) in [
            (r#"{"afi":"0x07"}"#, Some(0x07), r#"{"afi":"0x07"}"#),
            (r#"{"afi":"C2"}"#, Some(0xC2), r#"{"afi":"0xC2"}"#),
            (r#"{"afi":7}"#, Some(0x07), r#"{"afi":"0x07"}"#),
            (r#"{"afi":null}"#, None, r#"{"afi":null}"#),
        ] {
            let shown: Shown = serde_json::from_str(read).unwrap();
            assert_eq!(shown.afi, byte, "{read}");
            assert_eq!(serde_json::to_string(&shown).unwrap(), written);
        }
        assert!(serde_json::from_str::<Shown>(r#"{"afi":300}"#).is_err());
    }

    #[test]
    fn memory_hex_may_contain_spaces() {
        let sample: Sample = toml::from_str("address = 1\nmemory = \"11 01 0a\"").unwrap();
        assert_eq!(sample.memory, [0x11, 0x01, 0x0A]);
        assert_eq!(sample.afi, None);
    }
}
