//! USB HID boot-keyboard input reports (HID 1.11, appendix B.1): 8 bytes, no I/O.
//!
//! ```text
//! byte 0: modifiers (bit 0 LCtrl, 1 LShift, 2 LAlt, 3 LGUI, 4 RCtrl, 5 RShift, 6 RAlt/AltGr, 7 RGUI)
//! byte 1: reserved
//! bytes 2..8: up to six usage ids of keys held down (HID Usage Tables, page 07)
//! ```

/// Length of a boot-keyboard input report (HID 1.11 appendix B.1).
pub const REPORT_LEN: usize = 8;

/// Usage id 01: "ErrorRollOver", sent in every key slot when too many keys are held
/// (HID Usage Tables §10, keyboard page).
pub const ERROR_ROLL_OVER: u8 = 0x01;

/// Modifier bits of byte 0.
pub mod modifiers {
    /// Left Control.
    pub const LEFT_CTRL: u8 = 0x01;
    /// Left Shift.
    pub const LEFT_SHIFT: u8 = 0x02;
    /// Left Alt.
    pub const LEFT_ALT: u8 = 0x04;
    /// Left GUI.
    pub const LEFT_GUI: u8 = 0x08;
    /// Right Control.
    pub const RIGHT_CTRL: u8 = 0x10;
    /// Right Shift.
    pub const RIGHT_SHIFT: u8 = 0x20;
    /// Right Alt (AltGr on European layouts).
    pub const RIGHT_ALT: u8 = 0x40;
    /// Right GUI.
    pub const RIGHT_GUI: u8 = 0x80;
    /// Either Shift.
    pub const SHIFT: u8 = LEFT_SHIFT | RIGHT_SHIFT;
    /// Modifiers that make a key a shortcut rather than a character.
    pub const SHORTCUT: u8 = LEFT_CTRL | RIGHT_CTRL | LEFT_ALT | LEFT_GUI | RIGHT_GUI;
}

/// A report that is not a boot-keyboard report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The transfer was not 8 bytes.
    #[error("HID report is {len} bytes; a boot-keyboard report is {REPORT_LEN}")]
    Length {
        /// Bytes received.
        len: usize,
    },
}

/// One boot-keyboard input report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BootReport {
    /// Modifier bits (byte 0).
    pub modifiers: u8,
    /// Usage ids of keys held down (bytes 2..8); `00` = empty slot.
    pub keys: [u8; 6],
}

impl BootReport {
    /// Reads a report from one interrupt transfer.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReportError> {
        let [modifiers, _reserved, k0, k1, k2, k3, k4, k5] = *bytes else {
            return Err(ReportError::Length { len: bytes.len() });
        };
        Ok(Self {
            modifiers,
            keys: [k0, k1, k2, k3, k4, k5],
        })
    }

    /// The report's 8 bytes.
    pub fn to_bytes(self) -> [u8; REPORT_LEN] {
        let [k0, k1, k2, k3, k4, k5] = self.keys;
        [self.modifiers, 0, k0, k1, k2, k3, k4, k5]
    }

    /// A report with one key held and these modifiers.
    pub fn key(modifiers: u8, usage: u8) -> Self {
        Self {
            modifiers,
            keys: [usage, 0, 0, 0, 0, 0],
        }
    }

    /// The report for "all keys released".
    pub fn released() -> Self {
        Self::default()
    }

    /// Whether the keyboard reports a roll-over error (too many keys; the report carries no
    /// key state and must be ignored).
    pub fn is_roll_over(&self) -> bool {
        self.keys.iter().all(|k| *k == ERROR_ROLL_OVER)
    }

    /// Usage ids held down, without empty slots.
    pub fn pressed(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().copied().filter(|k| *k != 0)
    }

    /// Whether Shift is held.
    pub fn shift(&self) -> bool {
        self.modifiers & modifiers::SHIFT != 0
    }

    /// Whether AltGr (right Alt) is held.
    pub fn alt_gr(&self) -> bool {
        self.modifiers & modifiers::RIGHT_ALT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eight_byte_report_parses_and_round_trips() {
        let bytes = [0x02, 0x00, 0x1E, 0x00, 0x00, 0x00, 0x00, 0x00];
        let report = BootReport::parse(&bytes).unwrap();
        assert!(report.shift());
        assert_eq!(report.pressed().collect::<Vec<_>>(), [0x1E]);
        assert_eq!(report.to_bytes(), bytes);
    }

    #[test]
    fn reports_of_other_lengths_are_refused_with_the_length() {
        for len in [0, 1, 7, 9, 64] {
            let err = BootReport::parse(&vec![0; len]).unwrap_err();
            assert_eq!(err, ReportError::Length { len });
            assert!(err.to_string().contains(&format!("{len} bytes")));
        }
    }

    #[test]
    fn a_roll_over_report_is_recognised() {
        let report = BootReport::parse(&[0, 0, 1, 1, 1, 1, 1, 1]).unwrap();
        assert!(report.is_roll_over());
        assert!(!BootReport::released().is_roll_over());
    }
}
