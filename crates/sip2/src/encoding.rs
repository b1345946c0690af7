//! Character sets per SIP2 peer (PROTOCOLS.md §1.3).
//!
//! The spec names no character set, so each peer gets its own: UTF-8 (invenio, Koha `utf8`),
//! CP850/IBM850 (FOLIO edge-sip2 and pysip2 defaults), ISO-8859-1 (Ceridwen sample),
//! GB18030/GBK (Chinese library systems such as Interlib and Huiwen) and plain ASCII with
//! transliteration (Koha `ascii`). The checksum is always computed over the encoded bytes.

use std::fmt;

use serde::Deserialize;

/// A character set for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8; invalid sequences in input are an error.
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    /// IBM code page 850 (FOLIO `IBM850`, pysip2 `cp850`).
    #[serde(alias = "ibm850")]
    Cp850,
    /// ISO-8859-1 (Latin-1).
    #[serde(alias = "iso-8859-1", alias = "iso8859-1")]
    Latin1,
    /// GB18030 (superset of GBK), via `encoding_rs`, with the 2022 edition's mapping: the
    /// private-use characters in [`GB18030_2022_REMAPPED`] come back as the standard
    /// characters that edition gave their bytes, and U+E5E5, which has no bytes, is sent
    /// as `?`. Every other character round-trips.
    Gb18030,
    /// GBK, via `encoding_rs`; characters outside GBK are sent as `?`.
    Gbk,
    /// 7-bit ASCII; accented letters are transliterated (`é` → `e`, `ß` → `ss`), anything
    /// else becomes `?`. Incoming bytes above 0x7F are read as Latin-1.
    Ascii,
}

/// Private-use characters whose GB18030-2005 bytes GB18030-2022 assigned to standard
/// characters (vertical presentation forms and CJK ideographs), as (sent, received back).
/// A peer's library system stores the received one; nothing in library data should use
/// the private-use area, so this matters only for tests and the curious.
pub const GB18030_2022_REMAPPED: [(char, char); 18] = [
    ('\u{E78D}', '\u{FE10}'),
    ('\u{E78E}', '\u{FE12}'),
    ('\u{E78F}', '\u{FE11}'),
    ('\u{E790}', '\u{FE13}'),
    ('\u{E791}', '\u{FE14}'),
    ('\u{E792}', '\u{FE15}'),
    ('\u{E793}', '\u{FE16}'),
    ('\u{E794}', '\u{FE17}'),
    ('\u{E795}', '\u{FE18}'),
    ('\u{E796}', '\u{FE19}'),
    ('\u{E81E}', '\u{9FB4}'),
    ('\u{E826}', '\u{9FB5}'),
    ('\u{E82B}', '\u{9FB6}'),
    ('\u{E82C}', '\u{9FB7}'),
    ('\u{E832}', '\u{9FB8}'),
    ('\u{E843}', '\u{9FB9}'),
    ('\u{E854}', '\u{9FBA}'),
    ('\u{E864}', '\u{9FBB}'),
];

/// A byte sequence that is not valid in the peer's character set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bytes at offset {offset} are not valid {encoding}")]
pub struct EncodingError {
    /// The character set that was expected.
    pub encoding: Encoding,
    /// Byte offset of the first bad byte (0 when the decoder cannot say).
    pub offset: usize,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Utf8 => "utf8",
            Self::Cp850 => "cp850",
            Self::Latin1 => "latin1",
            Self::Gb18030 => "gb18030",
            Self::Gbk => "gbk",
            Self::Ascii => "ascii",
        })
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Ok(Self::Utf8),
            "cp850" | "ibm850" => Ok(Self::Cp850),
            "latin1" | "iso-8859-1" | "iso8859-1" => Ok(Self::Latin1),
            "gb18030" => Ok(Self::Gb18030),
            "gbk" => Ok(Self::Gbk),
            "ascii" => Ok(Self::Ascii),
            other => Err(format!(
                "unknown encoding {other:?}; expected utf8, cp850, latin1, gb18030, gbk or ascii"
            )),
        }
    }
}

/// Code page 850, bytes 0x80..=0xFF (IBM CP850 code chart). Bytes below 0x80 are ASCII.
const CP850_HIGH: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{00E0}', '\u{00E5}', '\u{00E7}',
    '\u{00EA}', '\u{00EB}', '\u{00E8}', '\u{00EF}', '\u{00EE}', '\u{00EC}', '\u{00C4}', '\u{00C5}',
    '\u{00C9}', '\u{00E6}', '\u{00C6}', '\u{00F4}', '\u{00F6}', '\u{00F2}', '\u{00FB}', '\u{00F9}',
    '\u{00FF}', '\u{00D6}', '\u{00DC}', '\u{00F8}', '\u{00A3}', '\u{00D8}', '\u{00D7}', '\u{0192}',
    '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}', '\u{00F1}', '\u{00D1}', '\u{00AA}', '\u{00BA}',
    '\u{00BF}', '\u{00AE}', '\u{00AC}', '\u{00BD}', '\u{00BC}', '\u{00A1}', '\u{00AB}', '\u{00BB}',
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00C1}', '\u{00C2}', '\u{00C0}',
    '\u{00A9}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{00A2}', '\u{00A5}', '\u{2510}',
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{00E3}', '\u{00C3}',
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}', '\u{00A4}',
    '\u{00F0}', '\u{00D0}', '\u{00CA}', '\u{00CB}', '\u{00C8}', '\u{0131}', '\u{00CD}', '\u{00CE}',
    '\u{00CF}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{00A6}', '\u{00CC}', '\u{2580}',
    '\u{00D3}', '\u{00DF}', '\u{00D4}', '\u{00D2}', '\u{00F5}', '\u{00D5}', '\u{00B5}', '\u{00FE}',
    '\u{00DE}', '\u{00DA}', '\u{00DB}', '\u{00D9}', '\u{00FD}', '\u{00DD}', '\u{00AF}', '\u{00B4}',
    '\u{00AD}', '\u{00B1}', '\u{2017}', '\u{00BE}', '\u{00B6}', '\u{00A7}', '\u{00F7}', '\u{00B8}',
    '\u{00B0}', '\u{00A8}', '\u{00B7}', '\u{00B9}', '\u{00B3}', '\u{00B2}', '\u{25A0}', '\u{00A0}',
];

/// Replacement byte for characters the peer's character set cannot carry.
const REPLACEMENT: u8 = b'?';

impl Encoding {
    /// Decodes bytes received from the peer.
    pub fn decode(self, bytes: &[u8]) -> Result<String, EncodingError> {
        match self {
            Self::Utf8 => {
                std::str::from_utf8(bytes)
                    .map(str::to_owned)
                    .map_err(|e| EncodingError {
                        encoding: self,
                        offset: e.valid_up_to(),
                    })
            }
            Self::Cp850 => Ok(bytes
                .iter()
                .map(|&b| {
                    if b < 0x80 {
                        char::from(b)
                    } else {
                        CP850_HIGH[usize::from(b - 0x80)]
                    }
                })
                .collect()),
            Self::Latin1 | Self::Ascii => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Self::Gb18030 | Self::Gbk => {
                // encoding_rs decodes GBK labels with the GB18030 decoder (WHATWG); that is a
                // superset, so one decoder serves both.
                encoding_rs::GB18030
                    .decode_without_bom_handling_and_without_replacement(bytes)
                    .map(std::borrow::Cow::into_owned)
                    .ok_or(EncodingError {
                        encoding: self,
                        offset: 0,
                    })
            }
        }
    }

    /// Encodes text for the peer. Characters the character set cannot carry become `?`
    /// (after transliteration for [`Encoding::Ascii`]); this never fails.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Self::Utf8 => text.as_bytes().to_vec(),
            Self::Cp850 => text.chars().map(cp850_byte).collect(),
            Self::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(REPLACEMENT))
                .collect(),
            Self::Ascii => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    if c.is_ascii() {
                        out.push(c as u8);
                    } else {
                        out.extend_from_slice(transliterate(c).as_bytes());
                    }
                }
                out
            }
            Self::Gb18030 => encode_or_replace(encoding_rs::GB18030, text),
            Self::Gbk => encode_or_replace(encoding_rs::GBK, text),
        }
    }
}

/// Encodes with `encoding_rs`, sending `?` for a character the set cannot carry: its own
/// encoder would write an HTML character reference (`&#58853;`), which no SIP2 peer expects.
fn encode_or_replace(encoding: &'static encoding_rs::Encoding, text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding.encode(text);
    if !unmappable {
        return bytes.into_owned();
    }
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let (bytes, _, unmappable) = encoding.encode(c.encode_utf8(&mut buf));
        if unmappable {
            out.push(REPLACEMENT);
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    out
}

fn cp850_byte(c: char) -> u8 {
    if c.is_ascii() {
        return c as u8;
    }
    CP850_HIGH
        .iter()
        .position(|&t| t == c)
        .map_or(REPLACEMENT, |i| 0x80 + i as u8)
}

/// ASCII stand-ins for common Latin letters (Koha `ascii` accounts, self-check printers).
fn transliterate(c: char) -> &'static str {
    match c {
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'ª' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' | 'Ć' | 'Č' => "C",
        'ç' | 'ć' | 'č' => "c",
        'Ð' | 'Ď' | 'Đ' => "D",
        'ð' | 'ď' | 'đ' => "d",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => "E",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'Ğ' => "G",
        'ğ' => "g",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'İ' => "I",
        'ì' | 'í' | 'î' | 'ï' | 'ı' => "i",
        'Ł' | 'Ľ' => "L",
        'ł' | 'ľ' => "l",
        'Ñ' | 'Ń' | 'Ň' => "N",
        'ñ' | 'ń' | 'ň' => "n",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ő' => "O",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ő' | 'º' => "o",
        'Œ' => "OE",
        'œ' => "oe",
        'Ř' => "R",
        'ř' => "r",
        'Ś' | 'Š' | 'Ş' => "S",
        'ś' | 'š' | 'ş' => "s",
        'ß' => "ss",
        'Ť' | 'Ţ' => "T",
        'ť' | 'ţ' => "t",
        'Þ' => "TH",
        'þ' => "th",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ů' | 'Ű' => "U",
        'ù' | 'ú' | 'û' | 'ü' | 'ů' | 'ű' => "u",
        'Ý' | 'Ÿ' => "Y",
        'ý' | 'ÿ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        '\u{2018}' | '\u{2019}' => "'",
        '\u{201C}' | '\u{201D}' | '«' | '»' => "\"",
        '\u{2013}' | '\u{2014}' => "-",
        '\u{00A0}' => " ",
        '€' => "EUR",
        '£' => "GBP",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp850_round_trips_every_high_byte() {
        let bytes: Vec<u8> = (0x80..=0xFF).collect();
        let text = Encoding::Cp850.decode(&bytes).unwrap();
        assert_eq!(text.chars().count(), 128);
        assert_eq!(Encoding::Cp850.encode(&text), bytes);
    }

    #[test]
    fn cp850_places_common_letters_where_the_code_chart_has_them() {
        // é = 0x82, ü = 0x81, ß = 0xE1, Ø = 0x9D (IBM CP850 chart).
        assert_eq!(Encoding::Cp850.encode("éüßØ"), vec![0x82, 0x81, 0xE1, 0x9D]);
        assert_eq!(Encoding::Cp850.encode("€"), b"?".to_vec());
    }

    #[test]
    fn latin1_maps_bytes_to_the_same_code_points() {
        assert_eq!(Encoding::Latin1.decode(&[0x41, 0xE9]).unwrap(), "Aé");
        assert_eq!(Encoding::Latin1.encode("Aé中"), vec![0x41, 0xE9, b'?']);
    }

    #[test]
    fn gb18030_round_trips_chinese_titles() {
        let title = "图书馆借书";
        let bytes = Encoding::Gb18030.encode(title);
        assert_ne!(bytes, title.as_bytes());
        assert_eq!(Encoding::Gb18030.decode(&bytes).unwrap(), title);
        assert_eq!(Encoding::Gbk.encode(title), bytes);
    }

    /// Exhaustive: the whole of Unicode, one character at a time, so a change of
    /// `encoding_rs`'s tables shows here rather than as a rare property-test failure.
    #[test]
    fn gb18030_round_trips_every_character_but_the_2022_remappings_and_u_e5e5() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let back = Encoding::Gb18030
                .decode(&Encoding::Gb18030.encode(c.encode_utf8(&mut [0; 4])))
                .unwrap();
            let want = match GB18030_2022_REMAPPED.iter().find(|(sent, _)| *sent == c) {
                Some((_, received)) => received.to_string(),
                None if c == '\u{E5E5}' => "?".to_string(),
                None => c.to_string(),
            };
            assert_eq!(back, want, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn gbk_replaces_characters_outside_gbk() {
        assert_eq!(Encoding::Gbk.encode("a😀"), b"a?".to_vec());
    }

    #[test]
    fn ascii_transliterates_accented_names() {
        assert_eq!(
            Encoding::Ascii.encode("Ærø Straße Ñandú"),
            b"AEro Strasse Nandu".to_vec()
        );
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_offset() {
        let err = Encoding::Utf8.decode(b"ab\xFFcd").unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.to_string().contains("offset 2"));
    }

    #[test]
    fn encoding_names_parse_with_common_aliases() {
        assert_eq!("IBM850".parse::<Encoding>().unwrap(), Encoding::Cp850);
        assert_eq!("iso-8859-1".parse::<Encoding>().unwrap(), Encoding::Latin1);
        assert!("klingon".parse::<Encoding>().is_err());
    }
}
