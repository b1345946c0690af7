//! Keyboard layouts: which character a key usage id types, per reader.
//!
//! A keyboard-wedge reader sends key positions (HID usage ids, page 07), not characters;
//! the host's layout turns them into text. A reader set up for an AZERTY host types a `1`
//! as Shift + the key US keyboards label `1` (PROTOCOLS.md §4.5), so the layout is a
//! per-reader setting. Dead keys (`^` on de/fr, `´` on de) and keys outside the tables type
//! nothing.

use serde::{Deserialize, Serialize};

/// A host keyboard layout a reader is set up for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// US English (QWERTY).
    #[default]
    Us,
    /// UK English (QWERTY, `"` on Shift+2, `£` on Shift+3, `#` key).
    Uk,
    /// German (QWERTZ; Shift for `!"§$%&/()=`).
    De,
    /// French (AZERTY; digits need Shift).
    Fr,
}

/// What one key press means for a card number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character.
    Char(char),
    /// Enter or keypad Enter.
    Enter,
    /// Tab.
    Tab,
    /// A key that types nothing (arrows, F-keys, Escape, dead keys, unknown usages).
    NonPrinting,
}

/// Usage ids (HID Usage Tables, keyboard page 07).
pub mod usage {
    /// `a`/`A` on a US keyboard; letters run to `z` at 0x1D.
    pub const A: u8 = 0x04;
    /// `z`/`Z` on a US keyboard.
    pub const Z: u8 = 0x1D;
    /// `1`/`!` on a US keyboard; the digit row runs to `0` at 0x27.
    pub const DIGIT_1: u8 = 0x1E;
    /// `0`/`)` on a US keyboard.
    pub const DIGIT_0: u8 = 0x27;
    /// Enter.
    pub const ENTER: u8 = 0x28;
    /// Tab.
    pub const TAB: u8 = 0x2B;
    /// Space.
    pub const SPACE: u8 = 0x2C;
    /// Keypad Enter.
    pub const KEYPAD_ENTER: u8 = 0x58;
    /// Keypad 1; the keypad digits run to keypad 0 at 0x62.
    pub const KEYPAD_1: u8 = 0x59;
    /// Keypad 0.
    pub const KEYPAD_0: u8 = 0x62;
    /// The key left of `z` on ISO keyboards (`<` on de/fr, `\` on uk).
    pub const NON_US_BACKSLASH: u8 = 0x64;
}

/// `(unshifted, shifted)` of the digit row, usage 0x1E (`1`) to 0x27 (`0`).
fn digit_row(layout: Layout) -> (&'static str, &'static str) {
    match layout {
        Layout::Us => ("1234567890", "!@#$%^&*()"),
        Layout::Uk => ("1234567890", "!\"£$%^&*()"),
        Layout::De => ("1234567890", "!\"§$%&/()="),
        Layout::Fr => ("&é\"'(-è_çà", "1234567890"),
    }
}

/// `(unshifted, shifted)` of a punctuation key; `None` = dead key or no character.
#[allow(clippy::match_same_arms)] // one row per layout and key, as printed on the keycaps
fn punctuation(layout: Layout, usage: u8) -> (Option<char>, Option<char>) {
    let pair = |a: char, b: char| (Some(a), Some(b));
    match (layout, usage) {
        (Layout::Us | Layout::Uk, 0x2D) => pair('-', '_'),
        (Layout::Us | Layout::Uk | Layout::Fr, 0x2E) => pair('=', '+'),
        (Layout::Us | Layout::Uk, 0x2F) => pair('[', '{'),
        (Layout::Us | Layout::Uk, 0x30) => pair(']', '}'),
        (Layout::Us, 0x31 | 0x32 | 0x64) => pair('\\', '|'),
        (Layout::Uk, 0x31 | 0x32) => pair('#', '~'),
        (Layout::Uk, 0x64) => pair('\\', '|'),
        (Layout::Us | Layout::Uk, 0x33) => pair(';', ':'),
        (Layout::Us, 0x34) => pair('\'', '"'),
        (Layout::Uk, 0x34) => pair('\'', '@'),
        (Layout::Us, 0x35) => pair('`', '~'),
        (Layout::Uk, 0x35) => pair('`', '¬'),
        (Layout::Us | Layout::Uk, 0x36) => pair(',', '<'),
        (Layout::Us | Layout::Uk, 0x37) => pair('.', '>'),
        (Layout::Us | Layout::Uk, 0x38) => pair('/', '?'),

        (Layout::De, 0x2D) => pair('ß', '?'),
        (Layout::De, 0x2F) => pair('ü', 'Ü'),
        (Layout::De, 0x30) => pair('+', '*'),
        (Layout::De, 0x31 | 0x32) => pair('#', '\''),
        (Layout::De, 0x33) => pair('ö', 'Ö'),
        (Layout::De, 0x34) => pair('ä', 'Ä'),
        (Layout::De, 0x35) => (None, Some('°')),
        (Layout::De, 0x36) => pair(',', ';'),
        (Layout::De, 0x37) => pair('.', ':'),
        (Layout::De, 0x38) => pair('-', '_'),
        (Layout::De | Layout::Fr, 0x64) => pair('<', '>'),

        (Layout::Fr, 0x2D) => pair(')', '°'),
        (Layout::Fr, 0x30) => pair('$', '£'),
        (Layout::Fr, 0x31 | 0x32) => pair('*', 'µ'),
        (Layout::Fr, 0x33) => pair('m', 'M'),
        (Layout::Fr, 0x34) => pair('ù', '%'),
        (Layout::Fr, 0x35) => (Some('²'), None),
        (Layout::Fr, 0x36) => pair(';', '.'),
        (Layout::Fr, 0x37) => pair(':', '/'),
        (Layout::Fr, 0x38) => pair('!', '§'),
        // Dead keys: ´ ` on de, ^ ¨ on fr.
        _ => (None, None),
    }
}

/// The lower-case letter a letter key types; `None` when the layout puts no letter there
/// (AZERTY's `,` sits where QWERTY has `m`).
#[allow(clippy::match_same_arms)] // one row per moved letter reads like the keyboard
fn letter(layout: Layout, usage: u8) -> Option<char> {
    let offset = usage.checked_sub(usage::A)?;
    let qwerty = char::from(b'a'.checked_add(offset)?);
    Some(match (layout, qwerty) {
        (Layout::De, 'y') => 'z',
        (Layout::De, 'z') => 'y',
        (Layout::Fr, 'a') => 'q',
        (Layout::Fr, 'q') => 'a',
        (Layout::Fr, 'w') => 'z',
        (Layout::Fr, 'z') => 'w',
        (Layout::Fr, 'm') => return None,
        (_, c) => c,
    })
}

impl Layout {
    /// Every layout, for tables and tests.
    pub const ALL: [Self; 4] = [Self::Us, Self::Uk, Self::De, Self::Fr];

    /// What pressing `usage` with or without Shift types.
    pub fn key(self, usage: u8, shift: bool) -> Key {
        let pick = |(plain, shifted): (Option<char>, Option<char>)| match if shift {
            shifted
        } else {
            plain
        } {
            Some(c) => Key::Char(c),
            None => Key::NonPrinting,
        };
        match usage {
            usage::A..=usage::Z => match letter(self, usage) {
                Some(c) if shift => Key::Char(c.to_ascii_uppercase()),
                Some(c) => Key::Char(c),
                // AZERTY: the QWERTY `m` position types `,` / `?`.
                None => pick((Some(','), Some('?'))),
            },
            usage::DIGIT_1..=usage::DIGIT_0 => {
                let (plain, shifted) = digit_row(self);
                let row = if shift { shifted } else { plain };
                row.chars()
                    .nth(usize::from(usage - usage::DIGIT_1))
                    .map_or(Key::NonPrinting, Key::Char)
            }
            usage::ENTER | usage::KEYPAD_ENTER => Key::Enter,
            usage::TAB => Key::Tab,
            usage::SPACE => Key::Char(' '),
            0x2D..=0x38 | usage::NON_US_BACKSLASH => pick(punctuation(self, usage)),
            // Keypad digits type digits on every layout (Num Lock on, as readers assume).
            usage::KEYPAD_1..=usage::KEYPAD_0 => "1234567890"
                .chars()
                .nth(usize::from(usage - usage::KEYPAD_1))
                .map_or(Key::NonPrinting, Key::Char),
            0x54 => Key::Char('/'),
            0x55 => Key::Char('*'),
            0x56 => Key::Char('-'),
            0x57 => Key::Char('+'),
            0x63 => Key::Char('.'),
            _ => Key::NonPrinting,
        }
    }

    /// The key stroke (Shift, usage id) that types `c` on this layout, main keys first:
    /// what a reader set up for this layout sends. Used to build recorded reports.
    pub fn keystroke(self, c: char) -> Option<(bool, u8)> {
        if c == '\n' || c == '\r' {
            return Some((false, usage::ENTER));
        }
        // ISO keyboards (uk, de, fr) have the "non-US #" key (0x32) where ANSI keyboards
        // have backslash (0x31); a reader for an ISO layout sends 0x32.
        let (first, second) = match self {
            Self::Us => (0x31, 0x32),
            Self::Uk | Self::De | Self::Fr => (0x32, 0x31),
        };
        let keys = (usage::A..=0x30)
            .chain([first, second])
            .chain(0x33..=0x38)
            .chain([usage::NON_US_BACKSLASH]);
        for usage in keys {
            for shift in [false, true] {
                if self.key(usage, shift) == Key::Char(c) {
                    return Some((shift, usage));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_need_shift_on_azerty_only() {
        for layout in Layout::ALL {
            let (shift, usage) = layout.keystroke('1').unwrap();
            assert_eq!(usage, usage::DIGIT_1, "{layout:?}");
            assert_eq!(shift, layout == Layout::Fr, "{layout:?}");
        }
    }

    #[test]
    fn the_same_key_types_the_layouts_characters() {
        let cases = [
            (Layout::Us, 0x1C, false, Key::Char('y')),
            (Layout::De, 0x1C, false, Key::Char('z')),
            (Layout::De, 0x1D, true, Key::Char('Y')),
            (Layout::Fr, 0x04, false, Key::Char('q')),
            (Layout::Fr, 0x14, true, Key::Char('A')),
            (Layout::Fr, 0x10, false, Key::Char(',')),
            (Layout::Fr, 0x33, false, Key::Char('m')),
            (Layout::Fr, 0x1F, false, Key::Char('é')),
            (Layout::Fr, 0x27, true, Key::Char('0')),
            (Layout::Uk, 0x1F, true, Key::Char('"')),
            (Layout::Us, 0x1F, true, Key::Char('@')),
            (Layout::Uk, 0x34, true, Key::Char('@')),
            (Layout::De, 0x24, true, Key::Char('/')),
            (Layout::De, 0x38, false, Key::Char('-')),
            (Layout::De, 0x2E, false, Key::NonPrinting),
            (Layout::Fr, 0x2F, false, Key::NonPrinting),
            (Layout::Us, usage::KEYPAD_ENTER, false, Key::Enter),
            (Layout::Fr, 0x62, false, Key::Char('0')),
            (Layout::Us, 0x3A, false, Key::NonPrinting),
            (Layout::Us, 0xFF, true, Key::NonPrinting),
        ];
        for (layout, usage, shift, want) in cases {
            assert_eq!(
                layout.key(usage, shift),
                want,
                "{layout:?} {usage:02X} shift={shift}"
            );
        }
    }

    #[test]
    fn every_printable_ascii_character_a_layout_has_types_back_to_itself() {
        for layout in Layout::ALL {
            for c in (b' '..=b'~').map(char::from) {
                if let Some((shift, usage)) = layout.keystroke(c) {
                    assert_eq!(layout.key(usage, shift), Key::Char(c), "{layout:?} {c:?}");
                }
            }
            for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-".chars() {
                assert!(
                    layout.keystroke(c).is_some(),
                    "{layout:?} cannot type {c:?}"
                );
            }
        }
    }
}
