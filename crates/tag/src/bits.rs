//! Bit-level reading and writing, most significant bit first, for the packed codes of
//! ISO/IEC 15962 (5/6/7-bit compaction, the ISIL mixed code).

/// Reads fixed-width groups of bits from a byte slice, MSB first. Never panics: reads past
/// the end return `None`.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bits not yet read.
    pub(crate) fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    fn bit(&self, index: usize) -> Option<u8> {
        let byte = self.data.get(index / 8)?;
        Some((byte >> (7 - index % 8)) & 1)
    }

    /// Reads `width` (at most 16) bits as an unsigned value.
    pub(crate) fn read(&mut self, width: usize) -> Option<u16> {
        if width > 16 || self.remaining() < width {
            return None;
        }
        let mut value = 0u16;
        for i in 0..width {
            value = (value << 1) | u16::from(self.bit(self.pos + i)?);
        }
        self.pos += width;
        Some(value)
    }

    /// True when every bit not yet read is a one (the padding of the ISIL code).
    pub(crate) fn rest_is_ones(&self) -> bool {
        (self.pos..self.data.len() * 8).all(|i| self.bit(i) == Some(1))
    }
}

/// Appends fixed-width groups of bits, MSB first.
#[derive(Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    /// Appends the low `width` bits of `value`, most significant first.
    pub(crate) fn push(&mut self, value: u16, width: usize) {
        for i in (0..width).rev() {
            let bit = ((value >> i) & 1) as u8;
            if self.bits.is_multiple_of(8) {
                self.out.push(0);
            }
            if let Some(last) = self.out.last_mut() {
                *last |= bit << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }

    /// How many bits are missing to the next byte boundary.
    pub(crate) fn bits_to_byte(&self) -> usize {
        (8 - self.bits % 8) % 8
    }

    /// The bytes written so far; a partial last byte is padded with zero bits.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}
