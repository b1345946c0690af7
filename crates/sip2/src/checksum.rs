//! The SIP2 error-detection trailer `AY<seq>AZ<checksum>` (PROTOCOLS.md §1.2).
//!
//! The checksum is computed over the *encoded bytes actually sent*, from the first byte of
//! the message up to and including the letters `AZ`: add the bytes, keep the low 16 bits,
//! negate (two's complement) and print 4 uppercase hex digits.

/// Length of the checksum value after `AZ` (4 hex digits, §1.2).
pub const CHECKSUM_LEN: usize = 4;

/// The checksum for `bytes`, which must run from the first byte of the message up to and
/// including the letters `AZ`.
pub fn compute(bytes: &[u8]) -> u16 {
    let sum = bytes
        .iter()
        .fold(0u16, |acc, &b| acc.wrapping_add(u16::from(b)));
    sum.wrapping_neg()
}

/// Whether `printed` is the right checksum for `bytes` (through `AZ`): the 16-bit sum of
/// the bytes plus the checksum value is zero.
pub fn verify(bytes: &[u8], printed: u16) -> bool {
    compute(bytes) == printed
}

/// The 4 uppercase hex digits for a checksum value.
pub fn format(value: u16) -> [u8; CHECKSUM_LEN] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digit = |shift: u16| HEX[usize::from((value >> shift) & 0xF)];
    [digit(12), digit(8), digit(4), digit(0)]
}

/// Parses 4 hex digits (either case) into a checksum value.
pub fn parse(digits: &[u8]) -> Option<u16> {
    if digits.len() != CHECKSUM_LEN {
        return None;
    }
    digits.iter().try_fold(0u16, |acc, &b| {
        let nibble = (b as char).to_digit(16)?;
        Some((acc << 4) | nibble as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_sums_to_fca5() {
        // PROTOCOLS.md §1.2: `9900401.00AY1AZ` sums to 0x035B, checksum FCA5.
        assert_eq!(compute(b"9900401.00AY1AZ"), 0xFCA5);
        assert_eq!(&format(0xFCA5), b"FCA5");
    }

    #[test]
    fn resend_messages_have_their_published_checksums() {
        assert_eq!(&format(compute(b"96AZ")), b"FEF6");
        assert_eq!(&format(compute(b"97AZ")), b"FEF5");
    }

    #[test]
    fn hex_digits_are_read_in_either_case() {
        assert_eq!(parse(b"fca5"), Some(0xFCA5));
        assert_eq!(parse(b"FCA5"), Some(0xFCA5));
        assert_eq!(parse(b"FCAG"), None);
        assert_eq!(parse(b"FCA"), None);
    }

    #[test]
    fn verification_accepts_the_right_value_and_rejects_others() {
        assert!(verify(b"9900401.00AY1AZ", 0xFCA5));
        assert!(!verify(b"9900401.00AY1AZ", 0xFCA4));
    }
}
