//! Shared line counters: codecs bump them as they skip garbage or reject frames, the
//! driver adds timeouts, and the read loop reports a snapshot in [`DeviceEvent::Health`].
//!
//! [`DeviceEvent::Health`]: crate::DeviceEvent::Health

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::LineCounters;

/// A cheap, cloneable handle on one line's counters.
///
/// A codec owns one clone and the driver another, so the codec can count what it drops
/// without the driver having to reach into the `Framed` that wraps it.
#[derive(Clone, Debug, Default)]
pub struct LineStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    frames_ok: AtomicU64,
    bytes_skipped: AtomicU64,
    bad_frames: AtomicU64,
    timeouts: AtomicU64,
}

impl LineStats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// One frame decoded and its check value matched.
    pub fn frame_ok(&self) {
        self.inner.frames_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` bytes were dropped while resynchronising.
    pub fn skipped(&self, count: usize) {
        self.inner
            .bytes_skipped
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    /// A complete frame had a bad CRC or an impossible length.
    pub fn bad_frame(&self) {
        self.inner.bad_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// A request got no answer in time.
    pub fn timeout(&self) {
        self.inner.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub fn snapshot(&self) -> LineCounters {
        LineCounters {
            frames_ok: self.inner.frames_ok.load(Ordering::Relaxed),
            bytes_skipped: self.inner.bytes_skipped.load(Ordering::Relaxed),
            bad_frames: self.inner.bad_frames.load(Ordering::Relaxed),
            timeouts: self.inner.timeouts.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_count_into_the_same_snapshot() {
        let stats = LineStats::new();
        let codec_side = stats.clone();
        codec_side.skipped(3);
        codec_side.bad_frame();
        codec_side.frame_ok();
        stats.timeout();
        assert_eq!(
            stats.snapshot(),
            LineCounters {
                frames_ok: 1,
                bytes_skipped: 3,
                bad_frames: 1,
                timeouts: 1
            }
        );
    }
}
