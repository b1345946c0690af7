//! Fuzzes the keyboard-wedge decoder: any sequence of transfers of any length, on any
//! layout and terminator, never panics, never yields an empty or over-long card, and the
//! counters add up.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rfidgw_hid::{CardAssembler, Layout, Terminator, WedgeConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let layout = Layout::ALL[usize::from(control & 3)];
    let terminator = match (control >> 2) & 3 {
        0 => Terminator::Enter,
        1 => Terminator::Tab,
        _ => Terminator::None,
    };
    let config = WedgeConfig {
        layout,
        terminator,
        key_timeout: Duration::from_millis(50),
        max_length: 16,
    };
    let mut assembler = CardAssembler::new(config);
    let mut at = Duration::ZERO;
    let mut cards = 0u64;
    // Each transfer: one byte of length (0..=15), one byte of time step in ms, then the bytes.
    let mut rest = data;
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len & 0x0F).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        at += Duration::from_millis(u64::from(*step));
        let idle = assembler.idle(at);
        for card in idle.into_iter().chain(assembler.feed_bytes(bytes, at)) {
            assert!(!card.is_empty());
            assert!(card.chars().count() <= 16);
            cards += 1;
        }
        rest = tail;
    }
    let counters = assembler.counters();
    assert_eq!(counters.cards, cards);
    assert!(counters.bad_reports <= counters.reports);
});
