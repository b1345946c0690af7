//! Shared line counters: codecs bump them as they skip garbage or reject frames, the
//! driver adds timeouts, and the read loop reports a snapshot in [`DeviceEvent::Health`].
//! Every good frame also stamps the wall-clock time, so the health report says when the
//! reader was last heard (issue 5: "last frame").
//!
//! [`DeviceEvent::Health`]: crate::DeviceEvent::Health

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Wall-clock time of the last good frame, in ms since the Unix epoch; 0 = none yet.
    /// (An atomic rather than a lock: the codec stamps it on every frame.)
    last_frame_ms: AtomicU64,
}

/// Now in ms since the Unix epoch, at least 1 so that 0 keeps meaning "never".
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

impl LineStats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// One frame decoded and its check value matched; stamps the time of the last frame.
    pub fn frame_ok(&self) {
        self.inner.frames_ok.fetch_add(1, Ordering::Relaxed);
        self.inner.last_frame_ms.store(now_ms(), Ordering::Relaxed);
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
            last_frame: match self.inner.last_frame_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => UNIX_EPOCH.checked_add(Duration::from_millis(ms)),
            },
            attributes_unknown: 0,
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
        let snapshot = stats.snapshot();
        assert!(
            snapshot.last_frame.is_some(),
            "a good frame stamps the time"
        );
        assert_eq!(
            snapshot,
            LineCounters {
                frames_ok: 1,
                bytes_skipped: 3,
                bad_frames: 1,
                timeouts: 1,
                last_frame: snapshot.last_frame,
                attributes_unknown: 0,
            }
        );
    }

    #[test]
    fn last_frame_is_unset_until_a_good_frame_and_bad_frames_do_not_set_it() {
        let stats = LineStats::new();
        assert_eq!(stats.snapshot().last_frame, None);
        stats.bad_frame();
        stats.skipped(7);
        stats.timeout();
        assert_eq!(stats.snapshot().last_frame, None);
        let before = SystemTime::now();
        stats.frame_ok();
        let stamped = stats.snapshot().last_frame.expect("stamped");
        // Stored with ms resolution: the stamp may be up to 1 ms before `before`.
        assert!(
            stamped + Duration::from_millis(1) >= before,
            "{stamped:?} {before:?}"
        );
    }
}
