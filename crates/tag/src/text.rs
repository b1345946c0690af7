//! NUL-padded ASCII fields of the fixed-layout HF models (ISO 28560-3, RFID501).

/// A fixed-layout text field that could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The memory ends inside the field.
    #[error("{field}: memory ends before offset {end}")]
    Missing {
        /// The field's name.
        field: &'static str,
        /// The offset one past the field's last byte.
        end: usize,
    },
    /// A byte before the NUL padding is not printable ASCII.
    #[error("{field}: byte {byte:#04x} at offset {offset} is not printable ASCII")]
    NotPrintable {
        /// The field's name.
        field: &'static str,
        /// Offset of the byte in tag memory.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// The text to write contains a character that is not printable ASCII.
    #[error("{field}: character {ch:?} at position {position} is not printable ASCII")]
    BadChar {
        /// The field's name.
        field: &'static str,
        /// Character position in the text.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The text to write is longer than the field.
    #[error("{field}: {len} characters do not fit in {max} bytes")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// Length of the text.
        len: usize,
        /// The field's size.
        max: usize,
    },
}

pub(crate) fn is_printable(byte: u8) -> bool {
    (0x20..=0x7E).contains(&byte)
}

/// Reads printable ASCII up to the first NUL (or the field's end).
pub(crate) fn read_padded(
    memory: &[u8],
    start: usize,
    len: usize,
    field: &'static str,
) -> Result<String, TextError> {
    let end = start + len;
    let bytes = memory
        .get(start..end)
        .ok_or(TextError::Missing { field, end })?;
    let mut text = String::with_capacity(len);
    for (i, &byte) in bytes.iter().enumerate() {
        if byte == 0 {
            break;
        }
        if !is_printable(byte) {
            return Err(TextError::NotPrintable {
                field,
                offset: start + i,
                byte,
            });
        }
        text.push(char::from(byte));
    }
    Ok(text)
}

/// Checks that `text` is printable ASCII of at most `max` bytes.
pub(crate) fn check_ascii(text: &str, max: usize, field: &'static str) -> Result<(), TextError> {
    if let Some((position, ch)) = text
        .chars()
        .enumerate()
        .find(|&(_, ch)| !u8::try_from(ch).is_ok_and(is_printable))
    {
        return Err(TextError::BadChar {
            field,
            position,
            ch,
        });
    }
    if text.len() > max {
        return Err(TextError::TooLong {
            field,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

/// Writes `text` into `out[start..start + max]`; the rest of the field stays NUL.
pub(crate) fn write_padded(
    out: &mut [u8],
    start: usize,
    max: usize,
    text: &str,
    field: &'static str,
) -> Result<(), TextError> {
    check_ascii(text, max, field)?;
    let end = start + text.len();
    let slot = out
        .get_mut(start..end)
        .ok_or(TextError::Missing { field, end })?;
    slot.copy_from_slice(text.as_bytes());
    Ok(())
}
