//! The ISO-Host byte-stream codec: splits a stream into [`RawFrame`]s and writes them.
//!
//! * `Ok(None)` on a partial frame; a hard maximum length (LEN is one byte, ALEN two, and
//!   [`FeigCodec::with_max_len`] can lower it).
//! * Resynchronises on garbage: a byte that cannot start a frame is dropped, a complete
//!   candidate with a bad CRC is counted as a bad frame and its first byte dropped, and a
//!   partial candidate is abandoned early when a complete, CRC-valid frame starts later in
//!   the buffer. Every dropped byte is counted in the shared [`LineStats`].
//! * The inter-character rule (PROTOCOLS.md §4.2: characters of one frame at most 12 ms
//!   apart): a partial frame whose last byte is older than the gap when new bytes arrive is
//!   dropped, unless the new bytes complete it into a valid frame.
//! * Never panics, on any input (fuzzed: `fuzz/fuzz_targets/feig_frame.rs`).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use rfidgw_driver::LineStats;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{self, Candidate, MAX_ADVANCED_LEN, MAX_STANDARD_LEN, RawFrame};

/// The ISO-Host inter-character gap (PROTOCOLS.md §4.2: at most 12 ms within one frame).
pub const INTER_CHARACTER_GAP: Duration = Duration::from_millis(12);

/// Why the codec stopped: only I/O errors end a stream; bad bytes are skipped and counted.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Decoder and encoder of ISO-Host frames, usable on both ends (driver and simulator).
#[derive(Debug)]
pub struct FeigCodec {
    stats: LineStats,
    max_len: usize,
    inter_char_gap: Option<Duration>,
    /// Length of the partial frame left in the buffer by the last `decode`, and when.
    partial: Option<(usize, Instant)>,
    warned: bool,
}

impl Default for FeigCodec {
    fn default() -> Self {
        Self::new(LineStats::new())
    }
}

impl FeigCodec {
    /// A codec counting into `stats`, with no inter-character timing.
    pub fn new(stats: LineStats) -> Self {
        Self {
            stats,
            max_len: MAX_ADVANCED_LEN,
            inter_char_gap: None,
            partial: None,
            warned: false,
        }
    }

    /// Drops a partial frame older than `gap` when new bytes arrive (serial lines).
    #[must_use]
    pub fn with_inter_char_gap(mut self, gap: Option<Duration>) -> Self {
        self.inter_char_gap = gap;
        self
    }

    /// Lowers the largest accepted frame (at least a standard frame's 255 bytes).
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.clamp(MAX_STANDARD_LEN, MAX_ADVANCED_LEN);
        self
    }

    /// The counters this codec writes to.
    pub fn stats(&self) -> &LineStats {
        &self.stats
    }

    fn skip(&mut self, src: &mut BytesMut, count: usize) {
        let count = count.min(src.len());
        if count == 0 {
            return;
        }
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                bytes = count,
                "FEIG line: skipping bytes that are not a frame (further skips are only counted)"
            );
        }
        src.advance(count);
        self.stats.skipped(count);
    }

    /// The offset of the first complete, CRC-valid frame after the start of `src`.
    fn later_valid_frame(&self, src: &[u8]) -> Option<usize> {
        // Look only as far as a standard frame can reach: a partial advanced frame is left to
        // the inter-character timer, so the scan stays cheap.
        let limit = src.len().min(MAX_STANDARD_LEN + 1);
        (1..limit).find(|&offset| {
            let rest = src.get(offset..).unwrap_or_default();
            match frame::candidate(rest, self.max_len) {
                Candidate::Complete(len) => rest.get(..len).is_some_and(frame::crc_ok),
                _ => false,
            }
        })
    }

    /// Whether a complete valid frame starts at the beginning of `src`.
    fn valid_at_start(&self, src: &[u8]) -> bool {
        match frame::candidate(src, self.max_len) {
            Candidate::Complete(len) => src.get(..len).is_some_and(frame::crc_ok),
            _ => false,
        }
    }

    fn drop_stale_partial(&mut self, src: &mut BytesMut) {
        let (Some(gap), Some((len, at))) = (self.inter_char_gap, self.partial) else {
            return;
        };
        let now = Instant::now();
        if src.len() > len && now.duration_since(at) > gap && !self.valid_at_start(src) {
            tracing::debug!(
                bytes = len,
                "FEIG line: partial frame timed out (12 ms rule)"
            );
            self.stats.bad_frame();
            self.skip(src, len);
        }
    }
}

impl Decoder for FeigCodec {
    type Item = RawFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        self.drop_stale_partial(src);
        self.partial = None;
        loop {
            if src.is_empty() {
                return Ok(None);
            }
            match frame::candidate(src, self.max_len) {
                Candidate::Invalid => self.skip(src, 1),
                Candidate::Incomplete(need) => {
                    if let Some(offset) = self.later_valid_frame(src) {
                        self.skip(src, offset);
                        continue;
                    }
                    src.reserve(need.saturating_sub(src.len()));
                    self.partial = Some((src.len(), Instant::now()));
                    return Ok(None);
                }
                Candidate::Complete(len) => {
                    let bytes = src.get(..len).unwrap_or_default();
                    if frame::crc_ok(bytes) {
                        let raw = RawFrame::split(bytes);
                        src.advance(len);
                        self.stats.frame_ok();
                        return Ok(Some(raw));
                    }
                    self.stats.bad_frame();
                    self.skip(src, 1);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        // A partial frame at the end of the stream can never complete.
        let left = src.len();
        if left > 0 {
            self.stats.bad_frame();
            self.skip(src, left);
        }
        Ok(None)
    }
}

impl Encoder<RawFrame> for FeigCodec {
    type Error = CodecError;

    fn encode(&mut self, item: RawFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode(dst);
        Ok(())
    }
}

impl Encoder<&RawFrame> for FeigCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &RawFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode(dst);
        Ok(())
    }
}
