//! ISO/IEC 15962 compaction schemes as used by ISO 28560-2 (PROTOCOLS.md §2.2).
//!
//! Where PROTOCOLS.md is silent, choices are marked **unverified**: numeric compaction is
//! written as BCD nibbles with an `F` filler; the padding of 5- and 7-bit codes is all one
//! bits, that of the 6-bit code repeats `100000` (Annex D shows its first two bits, `10`).

use serde::{Deserialize, Serialize};

use crate::bits::{BitReader, BitWriter};

/// The 3-bit compaction code of a data set precursor (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compaction {
    /// 0: application-defined (the data element says how to read it).
    ApplicationDefined,
    /// 1: unsigned big-endian integer standing for a decimal digit string.
    Integer,
    /// 2: decimal digits, two per byte (unverified: BCD with `F` filler).
    Numeric,
    /// 3: 5-bit upper-case code (`@ A–Z [ \ ] ^ _`).
    FiveBit,
    /// 4: 6-bit code (ISO 646 `0x20`–`0x5F`).
    SixBit,
    /// 5: 7-bit ASCII.
    SevenBit,
    /// 6: octets, ISO 8859-1.
    Octets,
    /// 7: UTF-8.
    Utf8,
}

impl Compaction {
    /// The scheme for a 3-bit code.
    pub const fn from_code(code: u8) -> Self {
        match code & 0x07 {
            0 => Self::ApplicationDefined,
            1 => Self::Integer,
            2 => Self::Numeric,
            3 => Self::FiveBit,
            4 => Self::SixBit,
            5 => Self::SevenBit,
            6 => Self::Octets,
            _ => Self::Utf8,
        }
    }

    /// The scheme's 3-bit code.
    pub const fn code(self) -> u8 {
        match self {
            Self::ApplicationDefined => 0,
            Self::Integer => 1,
            Self::Numeric => 2,
            Self::FiveBit => 3,
            Self::SixBit => 4,
            Self::SevenBit => 5,
            Self::Octets => 6,
            Self::Utf8 => 7,
        }
    }

    /// Candidates for a text, most compact first.
    const TEXT_SCHEMES: [Self; 7] = [
        Self::Integer,
        Self::Numeric,
        Self::FiveBit,
        Self::SixBit,
        Self::SevenBit,
        Self::Octets,
        Self::Utf8,
    ];
}

/// Compacted data that cannot be read, or text that a scheme cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactionError {
    /// Application-defined data has no generic text reading.
    #[error("application-defined data has no text reading")]
    NotText,
    /// No data where some is needed.
    #[error("{0:?} compaction of empty data")]
    Empty(Compaction),
    /// A BCD nibble is not a digit (or a filler not at the end).
    #[error("numeric compaction: nibble {nibble:X} at data byte {index} is not a digit")]
    BadNibble {
        /// Index of the byte holding the nibble.
        index: usize,
        /// The nibble.
        nibble: u8,
    },
    /// The data is not UTF-8.
    #[error("UTF-8 compaction: invalid UTF-8 at data byte {0}")]
    BadUtf8(usize),
    /// A character the scheme cannot carry.
    #[error("{scheme:?} compaction cannot carry {ch:?}")]
    Unencodable {
        /// The scheme.
        scheme: Compaction,
        /// The character.
        ch: char,
    },
    /// Integer compaction needs digits without a leading zero.
    #[error("integer compaction needs a decimal number without leading zeros")]
    NotCanonicalInteger,
    /// The compacted form does not fit a one-byte length.
    #[error("compacted data of {0} bytes exceeds 255")]
    TooLong(usize),
}

/// Reads compacted data as text.
pub fn decode_text(scheme: Compaction, data: &[u8]) -> Result<String, CompactionError> {
    match scheme {
        Compaction::ApplicationDefined => Err(CompactionError::NotText),
        Compaction::Integer => {
            if data.is_empty() {
                return Err(CompactionError::Empty(scheme));
            }
            Ok(bytes_to_decimal(data))
        }
        Compaction::Numeric => decode_bcd(data),
        Compaction::FiveBit | Compaction::SixBit | Compaction::SevenBit => {
            Ok(decode_packed(scheme, data))
        }
        Compaction::Octets => Ok(data.iter().copied().map(char::from).collect()),
        Compaction::Utf8 => std::str::from_utf8(data)
            .map(str::to_owned)
            .map_err(|e| CompactionError::BadUtf8(e.valid_up_to())),
    }
}

/// Compacts text with one scheme. The result always decodes back to `text` (checked).
pub fn encode_text(scheme: Compaction, text: &str) -> Result<Vec<u8>, CompactionError> {
    let data = match scheme {
        Compaction::ApplicationDefined => return Err(CompactionError::NotText),
        Compaction::Integer => {
            let canonical = !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit())
                && (text == "0" || !text.starts_with('0'));
            if !canonical {
                return Err(CompactionError::NotCanonicalInteger);
            }
            decimal_to_bytes(text)
        }
        Compaction::Numeric => encode_bcd(text)?,
        Compaction::FiveBit | Compaction::SixBit | Compaction::SevenBit => {
            encode_packed(scheme, text)?
        }
        Compaction::Octets => text
            .chars()
            .map(|ch| u8::try_from(ch).map_err(|_| CompactionError::Unencodable { scheme, ch }))
            .collect::<Result<_, _>>()?,
        Compaction::Utf8 => text.as_bytes().to_vec(),
    };
    if data.len() > usize::from(u8::MAX) {
        return Err(CompactionError::TooLong(data.len()));
    }
    // A padding ambiguity (a text ending in the pad character) must not pass silently.
    if decode_text(scheme, &data).as_deref() != Ok(text) {
        return Err(CompactionError::Unencodable {
            scheme,
            ch: text.chars().last().unwrap_or(' '),
        });
    }
    Ok(data)
}

/// Compacts text with the most compact scheme that carries it exactly.
pub fn encode_best(text: &str) -> Result<(Compaction, Vec<u8>), CompactionError> {
    let mut best: Option<(Compaction, Vec<u8>)> = None;
    let mut last_error = CompactionError::Empty(Compaction::Utf8);
    for scheme in Compaction::TEXT_SCHEMES {
        match encode_text(scheme, text) {
            Ok(data) if best.as_ref().is_none_or(|(_, b)| data.len() < b.len()) => {
                best = Some((scheme, data));
            }
            Ok(_) => {}
            Err(e) => last_error = e,
        }
    }
    best.ok_or(last_error)
}

fn bytes_to_decimal(data: &[u8]) -> String {
    let mut number: Vec<u8> = data.iter().copied().skip_while(|&b| b == 0).collect();
    let mut digits = Vec::new();
    while !number.is_empty() {
        let mut remainder = 0u16;
        for byte in &mut number {
            let value = (remainder << 8) | u16::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
        let zeros = number.iter().take_while(|&&b| b == 0).count();
        number.drain(..zeros);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

fn decimal_to_bytes(digits: &str) -> Vec<u8> {
    let mut number: Vec<u8> = Vec::new();
    for digit in digits.bytes() {
        let mut carry = u16::from(digit - b'0');
        for byte in number.iter_mut().rev() {
            let value = u16::from(*byte) * 10 + carry;
            *byte = value as u8;
            carry = value >> 8;
        }
        while carry > 0 {
            number.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    if number.is_empty() {
        number.push(0);
    }
    number
}

/// BCD filler nibble ending an odd number of digits (unverified).
const BCD_FILLER: u8 = 0xF;

fn decode_bcd(data: &[u8]) -> Result<String, CompactionError> {
    let mut text = String::with_capacity(data.len() * 2);
    for (index, byte) in data.iter().enumerate() {
        for (k, nibble) in [byte >> 4, byte & 0x0F].into_iter().enumerate() {
            let last = index + 1 == data.len() && k == 1;
            match nibble {
                0..=9 => text.push(char::from(b'0' + nibble)),
                BCD_FILLER if last => {}
                _ => return Err(CompactionError::BadNibble { index, nibble }),
            }
        }
    }
    Ok(text)
}

fn encode_bcd(text: &str) -> Result<Vec<u8>, CompactionError> {
    let mut nibbles = Vec::with_capacity(text.len() + 1);
    for ch in text.chars() {
        let digit = ch.to_digit(10).ok_or(CompactionError::Unencodable {
            scheme: Compaction::Numeric,
            ch,
        })?;
        nibbles.push(digit as u8);
    }
    if nibbles.len() % 2 == 1 {
        nibbles.push(BCD_FILLER);
    }
    Ok(nibbles
        .chunks(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect())
}

fn width(scheme: Compaction) -> usize {
    match scheme {
        Compaction::FiveBit => 5,
        Compaction::SixBit => 6,
        _ => 7,
    }
}

/// The pad value of a packed code (unverified for 5 and 7 bits, §2.2 Annex D for 6 bits).
fn pad_value(scheme: Compaction) -> u16 {
    match scheme {
        Compaction::FiveBit => 0x1F,
        Compaction::SixBit => 0x20,
        _ => 0x7F,
    }
}

fn value_to_char(scheme: Compaction, value: u16) -> char {
    let byte = match scheme {
        Compaction::FiveBit => 0x40 + value as u8,
        Compaction::SixBit if value < 0x20 => value as u8 + 0x40,
        _ => value as u8,
    };
    char::from(byte)
}

fn char_to_value(scheme: Compaction, ch: char) -> Option<u16> {
    let byte = u8::try_from(ch).ok()?;
    match scheme {
        Compaction::FiveBit => (0x40..=0x5F)
            .contains(&byte)
            .then(|| u16::from(byte - 0x40)),
        Compaction::SixBit => match byte {
            0x20..=0x3F => Some(u16::from(byte)),
            0x40..=0x5F => Some(u16::from(byte - 0x40)),
            _ => None,
        },
        _ => (byte < 0x80).then_some(u16::from(byte)),
    }
}

fn decode_packed(scheme: Compaction, data: &[u8]) -> String {
    let width = width(scheme);
    // Fewest characters that need this many bytes; a character beyond that count that
    // equals the pad value is padding.
    let min_chars = match data.len() {
        0 => 0,
        n => (8 * (n - 1)) / width + 1,
    };
    let mut reader = BitReader::new(data);
    let mut values = Vec::new();
    while let Some(value) = reader.read(width) {
        values.push(value);
    }
    while values.len() > min_chars && values.last() == Some(&pad_value(scheme)) {
        values.pop();
    }
    values
        .into_iter()
        .map(|v| value_to_char(scheme, v))
        .collect()
}

fn encode_packed(scheme: Compaction, text: &str) -> Result<Vec<u8>, CompactionError> {
    let width = width(scheme);
    let mut writer = BitWriter::default();
    for ch in text.chars() {
        let value = char_to_value(scheme, ch).ok_or(CompactionError::Unencodable { scheme, ch })?;
        writer.push(value, width);
    }
    let pad = writer.bits_to_byte();
    if pad > 0 {
        let pattern = pad_value(scheme);
        let value = if pad <= width {
            pattern >> (width - pad)
        } else {
            // More pad bits than one character: a whole pad character, then its prefix.
            (pattern << (pad - width)) | (pattern >> (2 * width - pad))
        };
        writer.push(value, pad);
    }
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_compaction_reads_the_annex_d_item_id() {
        let data = [0x1C, 0xBE, 0x99, 0x1A, 0x14];
        assert_eq!(
            decode_text(Compaction::Integer, &data).unwrap(),
            "123456789012"
        );
        assert_eq!(
            encode_text(Compaction::Integer, "123456789012").unwrap(),
            data
        );
    }

    #[test]
    fn six_bit_compaction_reads_the_annex_d_shelf_location_with_two_pad_bits() {
        let data = [0x44, 0x1C, 0xB6, 0xE2, 0xE3, 0x35, 0xD6];
        assert_eq!(decode_text(Compaction::SixBit, &data).unwrap(), "QA268.L55");
        assert_eq!(encode_text(Compaction::SixBit, "QA268.L55").unwrap(), data);
    }

    #[test]
    fn integer_compaction_refuses_leading_zeros_and_numeric_keeps_them() {
        assert_eq!(
            encode_text(Compaction::Integer, "0012"),
            Err(CompactionError::NotCanonicalInteger)
        );
        let data = encode_text(Compaction::Numeric, "0012").unwrap();
        assert_eq!(decode_text(Compaction::Numeric, &data).unwrap(), "0012");
    }

    #[test]
    fn the_best_scheme_for_digits_is_integer_and_for_mixed_text_a_packed_code() {
        assert_eq!(encode_best("1203").unwrap().0, Compaction::Integer);
        assert_eq!(encode_best("QA268.L55").unwrap().0, Compaction::SixBit);
        assert_eq!(encode_best("ABC").unwrap().0, Compaction::FiveBit);
        assert_eq!(encode_best("äb").unwrap().0, Compaction::Octets);
        assert_eq!(encode_best("Ωmega").unwrap().0, Compaction::Utf8);
    }

    #[test]
    fn packed_codes_round_trip_every_length_up_to_twenty() {
        for scheme in [
            Compaction::FiveBit,
            Compaction::SixBit,
            Compaction::SevenBit,
        ] {
            for n in 0..20 {
                let text: String = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".chars().take(n).collect();
                let data = encode_text(scheme, &text).unwrap();
                assert_eq!(decode_text(scheme, &data).unwrap(), text, "{scheme:?} {n}");
            }
        }
    }

    #[test]
    fn bad_bcd_nibbles_are_reported_with_their_position() {
        assert_eq!(
            decode_text(Compaction::Numeric, &[0x12, 0xA3]),
            Err(CompactionError::BadNibble {
                index: 1,
                nibble: 0xA
            })
        );
    }
}
