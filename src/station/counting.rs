//! People counting from a gate's two light barriers (PROTOCOLS.md §4.7: direction from the
//! order in which the barriers break). Pure: fed input levels and time, it says when a
//! person went in or out and closes counting intervals.
//!
//! A passage is: one barrier breaks, then the other, then both clear. The barrier that
//! broke first gives the direction (outer first = in). Someone who steps into the first
//! barrier and turns back clears it before the second breaks: not counted.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Counting settings (`[stations.gate.counting]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CountingConfig {
    /// The device whose inputs carry the light barriers (a FEIG reader with
    /// `driver.poll_inputs = true`).
    pub device: String,
    /// The input (1–3) of the barrier on the street side.
    #[serde(default = "one")]
    pub outer_input: u8,
    /// The input (1–3) of the barrier on the library side.
    #[serde(default = "two")]
    pub inner_input: u8,
    /// Counts are journaled per interval of this many seconds (default 900).
    #[serde(default = "default_interval")]
    pub interval_s: u64,
}

fn one() -> u8 {
    1
}
fn two() -> u8 {
    2
}
fn default_interval() -> u64 {
    900
}

/// Which way a person went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Into the library (outer barrier first).
    In,
    /// Out of the library (inner barrier first).
    Out,
}

/// One closed counting interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PeopleCount {
    /// People in during the interval.
    pub entered: u64,
    /// People out during the interval.
    pub left: u64,
    /// The interval's length in seconds.
    pub interval_s: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Clear,
    /// One barrier broke; the other has not yet.
    First(Direction),
    /// Both have broken, the first one first.
    Crossing(Direction),
}

/// A gate's people counter.
#[derive(Clone, Debug)]
pub struct PeopleCounter {
    config: CountingConfig,
    phase: Phase,
    interval_started: Instant,
    entered: u64,
    left: u64,
    total_entered: u64,
    total_left: u64,
}

impl PeopleCounter {
    /// A counter with nothing counted; the first interval starts `now`.
    pub fn new(config: CountingConfig, now: Instant) -> Self {
        Self {
            config,
            phase: Phase::Clear,
            interval_started: now,
            entered: 0,
            left: 0,
            total_entered: 0,
            total_left: 0,
        }
    }

    /// People in and out since the daemon started.
    pub fn totals(&self) -> (u64, u64) {
        (self.total_entered, self.total_left)
    }

    /// People in and out in the interval running now.
    pub fn current(&self) -> (u64, u64) {
        (self.entered, self.left)
    }

    /// New input levels from `device` (bit 0 = input 1). Returns a completed passage.
    pub fn levels(&mut self, device: &str, levels: u8, _now: Instant) -> Option<Direction> {
        if device != self.config.device {
            return None;
        }
        let broken = |input: u8| input >= 1 && levels & (1 << (input - 1)) != 0;
        let outer = broken(self.config.outer_input);
        let inner = broken(self.config.inner_input);
        let (phase, passed) = match (self.phase, outer, inner) {
            (Phase::Clear, true, false) => (Phase::First(Direction::In), None),
            (Phase::Clear, false, true) => (Phase::First(Direction::Out), None),
            // Both at once from clear: no order to tell the direction by. Or one barrier
            // broke and cleared again before the other: someone turned back.
            (Phase::Clear, _, _) | (Phase::First(_), false, false) => (Phase::Clear, None),
            (Phase::First(direction) | Phase::Crossing(direction), true, true) => {
                (Phase::Crossing(direction), None)
            }
            (Phase::First(direction), _, _) => (Phase::First(direction), None),
            (Phase::Crossing(direction), false, false) => (Phase::Clear, Some(direction)),
            (Phase::Crossing(direction), _, _) => (Phase::Crossing(direction), None),
        };
        self.phase = phase;
        match passed {
            Some(Direction::In) => {
                self.entered += 1;
                self.total_entered += 1;
            }
            Some(Direction::Out) => {
                self.left += 1;
                self.total_left += 1;
            }
            None => {}
        }
        passed
    }

    /// Closes the interval when it is over.
    pub fn tick(&mut self, now: Instant) -> Option<PeopleCount> {
        let interval = Duration::from_secs(self.config.interval_s.max(1));
        if now.duration_since(self.interval_started) < interval {
            return None;
        }
        let count = PeopleCount {
            entered: self.entered,
            left: self.left,
            interval_s: self.config.interval_s,
        };
        self.entered = 0;
        self.left = 0;
        self.interval_started = now;
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(now: Instant) -> PeopleCounter {
        PeopleCounter::new(
            CountingConfig {
                device: "gate".into(),
                outer_input: 1,
                inner_input: 2,
                interval_s: 60,
            },
            now,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_order_the_barriers_break_in_gives_the_direction() {
        // (levels sequence, passages completed)
        let rows: &[(&[u8], &[Option<Direction>])] = &[
            (
                &[0b01, 0b11, 0b10, 0b00],
                &[None, None, None, Some(Direction::In)],
            ),
            (
                &[0b10, 0b11, 0b01, 0b00],
                &[None, None, None, Some(Direction::Out)],
            ),
            (&[0b01, 0b00], &[None, None]), // stepped in and turned back
            (&[0b11, 0b00], &[None, None]), // both at once: no direction
            (&[0b01, 0b11, 0b00], &[None, None, Some(Direction::In)]),
            (&[0b100, 0b000], &[None, None]), // a third input is not a barrier
        ];
        let now = Instant::now();
        for (n, (levels, want)) in rows.iter().enumerate() {
            let mut c = counter(now);
            let got: Vec<_> = levels.iter().map(|l| c.levels("gate", *l, now)).collect();
            assert_eq!(got, *want, "row {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_devices_are_ignored_and_intervals_close_with_their_counts() {
        let start = Instant::now();
        let mut c = counter(start);
        for levels in [0b01, 0b11, 0b10, 0b00, 0b10, 0b11, 0b00] {
            c.levels("gate", levels, start);
        }
        assert_eq!(c.levels("other", 0b01, start), None);
        assert_eq!(c.current(), (1, 1));
        assert_eq!(c.tick(start + Duration::from_secs(59)), None);
        let count = c.tick(start + Duration::from_mins(1)).unwrap();
        assert_eq!((count.entered, count.left, count.interval_s), (1, 1, 60));
        assert_eq!(c.current(), (0, 0));
        assert_eq!(c.totals(), (1, 1));
    }
}
