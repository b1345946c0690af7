//! The ISIL mixed 5-bit/4-bit code of ISO 28560-2 relOID 3 (owner institution), PROTOCOLS.md
//! §2.2: three tables (upper, lower, digits), shifts for one character, latches to switch,
//! starting in upper-case mode, padded with one bits to a whole byte.

use crate::bits::{BitReader, BitWriter};

/// Longest ISIL, ISO 15511 (§2.1).
pub const MAX_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Upper,
    Lower,
    Digit,
}

impl Mode {
    const fn width(self) -> usize {
        match self {
            Self::Digit => 4,
            _ => 5,
        }
    }

    fn has(self, ch: char) -> bool {
        match self {
            Self::Upper => ch.is_ascii_uppercase() || ch == '-' || ch == ':',
            Self::Lower => ch.is_ascii_lowercase() || ch == '-' || ch == '/',
            Self::Digit => ch.is_ascii_digit() || ch == '-' || ch == ':',
        }
    }

    fn code(self, ch: char) -> Option<u16> {
        let byte = u8::try_from(ch).ok()?;
        match (self, byte) {
            (Self::Upper | Self::Lower, b'-') => Some(0),
            (Self::Upper, b'A'..=b'Z') => Some(u16::from(byte - b'A' + 1)),
            (Self::Upper, b':') | (Self::Lower, b'/') => Some(27),
            (Self::Lower, b'a'..=b'z') => Some(u16::from(byte - b'a' + 1)),
            (Self::Digit, b'0'..=b'9') => Some(u16::from(byte - b'0')),
            (Self::Digit, b'-') => Some(10),
            (Self::Digit, b':') => Some(11),
            _ => None,
        }
    }

    /// (latch, shift) codes from `self` to `target`.
    const fn switch(self, target: Self) -> (u16, u16) {
        match (self, target) {
            (Self::Upper, Self::Lower) | (Self::Lower, Self::Upper) => (28, 29),
            (Self::Upper | Self::Lower, _) => (30, 31),
            (Self::Digit, Self::Upper) => (12, 13),
            (Self::Digit, _) => (14, 15),
        }
    }
}

/// ISIL data that cannot be read, or an ISIL that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsilError {
    /// Bits left at the end that are not one-bit padding.
    #[error("ISIL code: {bits} bits left at bit {position} are not padding")]
    BadPadding {
        /// Bit position where the leftover starts.
        position: usize,
        /// Number of leftover bits.
        bits: usize,
    },
    /// A character ISO 15511 does not allow.
    #[error("ISIL: character {ch:?} at position {position} is not one of A-Z a-z 0-9 / - :")]
    BadChar {
        /// Character position.
        position: usize,
        /// The character.
        ch: char,
    },
    /// Longer than ISO 15511 allows.
    #[error("ISIL: {0} characters, at most 16 are allowed")]
    TooLong(usize),
    /// Empty ISIL.
    #[error("ISIL is empty")]
    Empty,
}

/// Decodes the mixed code.
pub fn decode(data: &[u8]) -> Result<String, IsilError> {
    let mut reader = BitReader::new(data);
    let mut mode = Mode::Upper;
    let mut shift: Option<Mode> = None;
    let mut text = String::new();
    loop {
        let remaining = reader.remaining();
        if remaining == 0 || (remaining < 8 && reader.rest_is_ones()) {
            break;
        }
        let current = shift.take().unwrap_or(mode);
        let position = data.len() * 8 - remaining;
        let Some(value) = reader.read(current.width()) else {
            return Err(IsilError::BadPadding {
                position,
                bits: remaining,
            });
        };
        let ch = match (current, value) {
            (Mode::Upper | Mode::Lower, 0) | (Mode::Digit, 10) => '-',
            (Mode::Upper, 1..=26) => char::from(b'A' + value as u8 - 1),
            (Mode::Lower, 1..=26) => char::from(b'a' + value as u8 - 1),
            (Mode::Upper, 27) | (Mode::Digit, 11) => ':',
            (Mode::Lower, 27) => '/',
            (Mode::Digit, 0..=9) => char::from(b'0' + value as u8),
            (Mode::Upper, 28) | (Mode::Digit, 14) => {
                mode = Mode::Lower;
                continue;
            }
            (Mode::Lower, 28) | (Mode::Digit, 12) => {
                mode = Mode::Upper;
                continue;
            }
            (Mode::Upper | Mode::Lower, 30) => {
                mode = Mode::Digit;
                continue;
            }
            (Mode::Upper, 29) | (Mode::Digit, 15) => {
                shift = Some(Mode::Lower);
                continue;
            }
            (Mode::Lower, 29) | (Mode::Digit, 13) => {
                shift = Some(Mode::Upper);
                continue;
            }
            _ => {
                // Only (Upper|Lower, 31) is left: shift to digits.
                shift = Some(Mode::Digit);
                continue;
            }
        };
        text.push(ch);
    }
    Ok(text)
}

/// Checks an ISIL's characters and length (ISO 15511, §2.1).
pub fn validate(isil: &str) -> Result<(), IsilError> {
    if isil.is_empty() {
        return Err(IsilError::Empty);
    }
    if let Some((position, ch)) = isil
        .chars()
        .enumerate()
        .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '/' | '-' | ':')))
    {
        return Err(IsilError::BadChar { position, ch });
    }
    let len = isil.chars().count();
    if len > MAX_LEN {
        return Err(IsilError::TooLong(len));
    }
    Ok(())
}

/// Encodes an ISIL, latching when the next character stays in the new table and shifting
/// otherwise (this reproduces the Annex D example).
pub fn encode(isil: &str) -> Result<Vec<u8>, IsilError> {
    validate(isil)?;
    let chars: Vec<char> = isil.chars().collect();
    let mut writer = BitWriter::default();
    let mut mode = Mode::Upper;
    for (i, &ch) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let char_mode = if mode.has(ch) {
            mode
        } else {
            let candidates = [Mode::Upper, Mode::Digit, Mode::Lower];
            let fits = candidates.into_iter().filter(|m| m.has(ch));
            let with_next = fits.clone().find(|m| next.is_some_and(|n| m.has(n)));
            let Some(target) = with_next.or_else(|| fits.clone().next()) else {
                return Err(IsilError::BadChar { position: i, ch });
            };
            let (latch, shift) = mode.switch(target);
            if next.is_some_and(|n| target.has(n)) {
                writer.push(latch, mode.width());
                mode = target;
            } else {
                writer.push(shift, mode.width());
            }
            target
        };
        let Some(code) = char_mode.code(ch) else {
            return Err(IsilError::BadChar { position: i, ch });
        };
        writer.push(code, char_mode.width());
    }
    let pad = writer.bits_to_byte();
    writer.push(u16::MAX, pad);
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annex_d_isil_decodes_and_encodes_to_the_same_bytes() {
        let data = [0xAC, 0xC0, 0x9E, 0xBA, 0xA0, 0x6F, 0x6B];
        assert_eq!(decode(&data).unwrap(), "US-InU-Mu");
        assert_eq!(encode("US-InU-Mu").unwrap(), data);
    }

    #[test]
    fn isils_with_digits_and_slashes_round_trip() {
        for isil in [
            "DK-715700",
            "DE-705",
            "DE-Tue1/a",
            "GB-UkLoBL",
            "X-a:9",
            "DE-101:b-7",
        ] {
            assert_eq!(decode(&encode(isil).unwrap()).unwrap(), isil);
        }
    }

    #[test]
    fn characters_outside_iso_15511_are_refused() {
        assert_eq!(
            encode("DE 705"),
            Err(IsilError::BadChar {
                position: 2,
                ch: ' '
            })
        );
        assert_eq!(encode(""), Err(IsilError::Empty));
        assert_eq!(encode("ABCDEFGHIJKLMNOPQ"), Err(IsilError::TooLong(17)));
    }
}
