//! Keyboard-wedge decoding: boot-keyboard reports in, card numbers out. Pure, no I/O.
//!
//! A reader "types" a card number: for each character a report with the key down (and
//! Shift if needed), then a report with it released, then Enter. [`CardAssembler`] turns
//! key-down edges into characters with the reader's [`Layout`], ends a card on the
//! terminator, and drops a half-typed number when the reader pauses longer than a person
//! could not (a reader types a whole card in a few tens of milliseconds). Times are the
//! reports' own timestamps, so recorded sequences replay exactly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layout::{Key, Layout};
use crate::report::{BootReport, modifiers};

/// What ends a card number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Terminator {
    /// Enter or keypad Enter (most readers).
    #[default]
    Enter,
    /// Tab.
    Tab,
    /// No terminator: a pause of `key_timeout` ends the card.
    None,
}

/// How the assembler reads a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WedgeConfig {
    /// The host layout the reader is set up for.
    pub layout: Layout,
    /// What ends a card.
    pub terminator: Terminator,
    /// A longer pause between keys drops (or, without terminator, ends) a number.
    pub key_timeout: Duration,
    /// Longer numbers are dropped (a stuck key or a reader typing into the void).
    pub max_length: usize,
}

impl Default for WedgeConfig {
    fn default() -> Self {
        Self {
            layout: Layout::Us,
            terminator: Terminator::Enter,
            // Readers type at 1 to 10 ms per key; 200 ms is far above that and far below
            // the time between two cards.
            key_timeout: Duration::from_millis(200),
            max_length: 64,
        }
    }
}

/// What the assembler counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WedgeCounters {
    /// Reports fed in.
    pub reports: u64,
    /// Reports that were not boot-keyboard reports, or roll-over errors.
    pub bad_reports: u64,
    /// Key presses that typed nothing (non-printing keys, shortcuts, dead keys).
    pub keys_ignored: u64,
    /// Half-typed numbers dropped (timeout, too long).
    pub partial_dropped: u64,
    /// Card numbers completed.
    pub cards: u64,
}

/// Turns a reader's reports into card numbers.
#[derive(Clone, Debug)]
pub struct CardAssembler {
    config: WedgeConfig,
    held: [u8; 6],
    typed: String,
    last_key: Option<Duration>,
    overflowed: bool,
    counters: WedgeCounters,
}

impl CardAssembler {
    /// An assembler with nothing typed yet.
    pub fn new(config: WedgeConfig) -> Self {
        Self {
            config,
            held: [0; 6],
            typed: String::new(),
            last_key: None,
            overflowed: false,
            counters: WedgeCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> WedgeCounters {
        self.counters
    }

    /// The characters of the card being typed now.
    pub fn pending(&self) -> &str {
        &self.typed
    }

    fn finish(&mut self) -> Option<String> {
        let overflowed = std::mem::take(&mut self.overflowed);
        let number = std::mem::take(&mut self.typed);
        let number = number.trim();
        if overflowed || number.is_empty() {
            return None;
        }
        self.counters.cards += 1;
        Some(number.to_owned())
    }

    fn drop_partial(&mut self) {
        if !self.typed.is_empty() || self.overflowed {
            self.counters.partial_dropped += 1;
            tracing::debug!(
                chars = self.typed.len(),
                "HID card reader: dropping a half-typed number"
            );
        }
        self.typed.clear();
        self.overflowed = false;
    }

    /// Time passed with no report up to `now` (the reports' clock): a number idle longer
    /// than the key timeout is dropped, or completed when there is no terminator.
    pub fn idle(&mut self, now: Duration) -> Option<String> {
        let last = self.last_key?;
        if now.saturating_sub(last) < self.config.key_timeout {
            return None;
        }
        self.last_key = None;
        if self.config.terminator == Terminator::None {
            self.finish()
        } else {
            self.drop_partial();
            None
        }
    }

    /// Feeds one raw transfer taken at `at`; returns the card numbers it completed (one
    /// report can hold several keys, so even two cards).
    pub fn feed_bytes(&mut self, bytes: &[u8], at: Duration) -> Vec<String> {
        match BootReport::parse(bytes) {
            Ok(report) => self.feed(report, at),
            Err(error) => {
                self.counters.reports += 1;
                self.counters.bad_reports += 1;
                tracing::debug!(%error, "HID card reader: ignoring a report");
                Vec::new()
            }
        }
    }

    /// Feeds one report taken at `at`; returns the card numbers it completed (one report
    /// can hold several keys, so even two cards).
    pub fn feed(&mut self, report: BootReport, at: Duration) -> Vec<String> {
        self.counters.reports += 1;
        if report.is_roll_over() {
            self.counters.bad_reports += 1;
            return Vec::new();
        }
        let mut done: Vec<String> = self.idle(at).into_iter().collect();
        let previous = std::mem::replace(&mut self.held, report.keys);
        for usage in report.pressed() {
            if previous.contains(&usage) {
                continue; // still held: not a new key press
            }
            self.last_key = Some(at);
            done.extend(self.press(usage, report.modifiers));
        }
        done
    }

    fn press(&mut self, usage: u8, mods: u8) -> Option<String> {
        if mods & modifiers::SHORTCUT != 0 || mods & modifiers::RIGHT_ALT != 0 {
            // Ctrl/Alt/GUI/AltGr combinations are shortcuts or symbols no card number has.
            self.counters.keys_ignored += 1;
            return None;
        }
        let key = self.config.layout.key(usage, mods & modifiers::SHIFT != 0);
        match (key, self.config.terminator) {
            (Key::Enter, Terminator::Enter) | (Key::Tab, Terminator::Tab) => {
                self.last_key = None;
                self.finish()
            }
            (Key::Char(c), _) => {
                if self.typed.chars().count() >= self.config.max_length {
                    if !self.overflowed {
                        self.counters.partial_dropped += 1;
                    }
                    self.overflowed = true;
                    self.typed.clear();
                } else if !self.overflowed {
                    self.typed.push(c);
                }
                None
            }
            _ => {
                self.counters.keys_ignored += 1;
                None
            }
        }
    }
}

/// The reports a reader set up for `layout` sends to type `text` and then `terminator`:
/// key down (with Shift when needed), all keys up, per character. Characters the layout
/// cannot type are skipped.
pub fn type_text(layout: Layout, text: &str, terminator: Terminator) -> Vec<BootReport> {
    let mut reports = Vec::new();
    for c in text.chars() {
        if let Some((shift, usage)) = layout.keystroke(c) {
            let mods = if shift { modifiers::LEFT_SHIFT } else { 0 };
            reports.push(BootReport::key(mods, usage));
            reports.push(BootReport::released());
        }
    }
    let end = match terminator {
        Terminator::Enter => Some(crate::layout::usage::ENTER),
        Terminator::Tab => Some(crate::layout::usage::TAB),
        Terminator::None => None,
    };
    if let Some(usage) = end {
        reports.push(BootReport::key(0, usage));
        reports.push(BootReport::released());
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn feed_all(asm: &mut CardAssembler, reports: &[BootReport], step: u64) -> Vec<String> {
        reports
            .iter()
            .enumerate()
            .flat_map(|(i, r)| asm.feed(*r, ms(step * i as u64)))
            .collect()
    }

    #[test]
    fn a_typed_number_and_enter_make_one_card() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        let cards = feed_all(
            &mut asm,
            &type_text(Layout::Us, "0012345678", Terminator::Enter),
            4,
        );
        assert_eq!(cards, ["0012345678"]);
        assert_eq!(asm.counters().cards, 1);
    }

    #[test]
    fn a_key_held_over_several_reports_types_once() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        let held = BootReport::key(0, 0x1E);
        let reports = [
            held,
            held,
            held,
            BootReport::released(),
            BootReport::key(0, 0x28),
        ];
        assert_eq!(feed_all(&mut asm, &reports, 2), ["1"]);
    }

    #[test]
    fn two_keys_in_one_report_type_in_slot_order() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        let both = BootReport {
            modifiers: 0,
            keys: [0x1E, 0x1F, 0, 0, 0, 0],
        };
        let reports = [both, BootReport::released(), BootReport::key(0, 0x28)];
        assert_eq!(feed_all(&mut asm, &reports, 2), ["12"]);
    }

    #[test]
    fn a_pause_longer_than_the_key_timeout_drops_the_half_typed_number() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        asm.feed(BootReport::key(0, 0x1E), ms(0));
        asm.feed(BootReport::released(), ms(5));
        assert_eq!(asm.pending(), "1");
        asm.feed(BootReport::key(0, 0x1F), ms(500));
        asm.feed(BootReport::released(), ms(505));
        let cards = asm.feed(BootReport::key(0, 0x28), ms(510));
        assert_eq!(cards, ["2"]);
        assert_eq!(asm.counters().partial_dropped, 1);
    }

    #[test]
    fn without_terminator_a_pause_ends_the_card() {
        let config = WedgeConfig {
            terminator: Terminator::None,
            ..WedgeConfig::default()
        };
        let mut asm = CardAssembler::new(config);
        feed_all(&mut asm, &type_text(Layout::Us, "42", Terminator::None), 3);
        assert_eq!(asm.idle(ms(100)), None);
        assert_eq!(asm.idle(ms(400)).as_deref(), Some("42"));
    }

    #[test]
    fn non_printing_keys_and_shortcuts_are_ignored_and_counted() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        let reports = [
            BootReport::key(0, 0x3A), // F1
            BootReport::released(),
            BootReport::key(modifiers::LEFT_CTRL, 0x06), // Ctrl+C
            BootReport::released(),
            BootReport::key(0, 0x22), // 5
            BootReport::released(),
            BootReport::key(0, 0x28),
        ];
        assert_eq!(feed_all(&mut asm, &reports, 2), ["5"]);
        assert_eq!(asm.counters().keys_ignored, 2);
    }

    #[test]
    fn one_report_holding_two_enters_completes_two_cards() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        let report = BootReport {
            modifiers: 0,
            keys: [0x1E, 0x28, 0x1F, 0x28, 0, 0],
        };
        assert_eq!(asm.feed(report, ms(0)), ["1", "2"]);
        assert_eq!(asm.counters().cards, 2);
    }

    #[test]
    fn a_runaway_number_longer_than_the_maximum_is_dropped() {
        let config = WedgeConfig {
            max_length: 4,
            ..WedgeConfig::default()
        };
        let mut asm = CardAssembler::new(config);
        let cards = feed_all(
            &mut asm,
            &type_text(Layout::Us, "123456", Terminator::Enter),
            2,
        );
        assert!(cards.is_empty());
        assert_eq!(asm.counters().partial_dropped, 1);
        let cards = feed_all(
            &mut asm,
            &type_text(Layout::Us, "1234", Terminator::Enter),
            2,
        );
        assert_eq!(cards, ["1234"]);
    }

    #[test]
    fn roll_over_and_short_reports_are_counted_as_bad() {
        let mut asm = CardAssembler::new(WedgeConfig::default());
        assert!(asm.feed_bytes(&[0, 0, 1, 1, 1, 1, 1, 1], ms(0)).is_empty());
        assert!(asm.feed_bytes(&[0, 0, 0x1E], ms(1)).is_empty());
        assert_eq!(asm.counters().bad_reports, 2);
        assert_eq!(asm.counters().reports, 2);
    }
}
