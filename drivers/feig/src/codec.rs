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

/// Decodes a finished capture as it arrived, chunk by chunk: the frames found, and the
/// counters (bytes skipped, bad frames). Every byte ends up in a frame or in
/// `bytes_skipped`.
pub fn decode_capture(chunks: &[&[u8]]) -> (Vec<RawFrame>, rfidgw_driver::LineCounters) {
    let mut codec = FeigCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        // Decoding only fails on I/O, which a byte slice cannot have.
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            frames.push(frame);
        }
    }
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        frames.push(frame);
    }
    (frames, codec.stats().snapshot())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Reply, Request, Status};

    fn inventory() -> Vec<u8> {
        vec![0x07, 0xFF, 0xB0, 0x01, 0x00, 0x1C, 0x56]
    }

    fn no_transponder() -> Vec<u8> {
        vec![0x06, 0x00, 0xB0, 0x01, 0x5C, 0x63]
    }

    /// Feeds `chunks` one at a time and collects every frame (with EOF at the end).
    fn run(chunks: &[Vec<u8>]) -> (Vec<Vec<u8>>, rfidgw_driver::LineCounters) {
        let mut codec = FeigCodec::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame.to_bytes());
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            frames.push(frame.to_bytes());
        }
        (frames, codec.stats().snapshot())
    }

    /// (case, chunks, frames out, bytes skipped, bad frames)
    type Case = (&'static str, Vec<Vec<u8>>, Vec<Vec<u8>>, u64, u64);

    #[test]
    fn frames_are_split_and_garbage_is_skipped_and_counted() {
        let bad_crc = {
            let mut f = inventory();
            f[6] ^= 0x01;
            f
        };
        let cases: Vec<Case> = vec![
            (
                "one clean frame",
                vec![inventory()],
                vec![inventory()],
                0,
                0,
            ),
            (
                "a frame split across reads",
                vec![inventory()[..3].to_vec(), inventory()[3..].to_vec()],
                vec![inventory()],
                0,
                0,
            ),
            (
                "two frames in one read",
                vec![[inventory(), no_transponder()].concat()],
                vec![inventory(), no_transponder()],
                0,
                0,
            ),
            (
                "bytes that cannot start a frame",
                vec![[vec![0x00, 0x01, 0x03, 0x04], inventory()].concat()],
                vec![inventory()],
                4,
                0,
            ),
            (
                "garbage that looks like a long frame",
                vec![[vec![0xFF, 0xAA], inventory()].concat()],
                vec![inventory()],
                2,
                0,
            ),
            (
                "a frame with a bad CRC before a good one",
                vec![[bad_crc.clone(), no_transponder()].concat()],
                vec![no_transponder()],
                7,
                1,
            ),
            (
                "a partial frame at the end of the stream",
                vec![inventory()[..4].to_vec()],
                vec![],
                4,
                1,
            ),
        ];
        for (case, chunks, want, skipped, bad) in cases {
            let (frames, counters) = run(&chunks);
            assert_eq!(frames, want, "{case}");
            assert_eq!(counters.bytes_skipped, skipped, "{case}: skipped");
            assert_eq!(counters.bad_frames, bad, "{case}: bad frames");
            assert_eq!(counters.frames_ok, want.len() as u64, "{case}: frames ok");
        }
    }

    #[test]
    fn an_advanced_length_reply_over_255_bytes_round_trips() {
        let reply = Reply {
            address: 0,
            command: 0xB0,
            status: Status::Ok,
            data: (0..=255u8).chain(0..50).collect(),
            data_offset: 6,
        };
        let raw = reply.to_raw();
        assert!(raw.advanced);
        let bytes = raw.to_bytes();
        assert_eq!(bytes[0], 0x02);
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[1], bytes[2]])),
            bytes.len()
        );
        let (frames, _) = run(std::slice::from_ref(&bytes));
        assert_eq!(frames, [bytes]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_frame_older_than_12_ms_is_dropped_when_new_bytes_arrive() {
        let mut codec = FeigCodec::default().with_inter_char_gap(Some(INTER_CHARACTER_GAP));
        let mut buf = BytesMut::from(&inventory()[..4]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        tokio::time::advance(Duration::from_millis(20)).await;
        buf.extend_from_slice(&no_transponder());
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.to_bytes(), no_transponder());
        let counters = codec.stats().snapshot();
        assert_eq!((counters.bytes_skipped, counters.bad_frames), (4, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_frame_that_still_completes_validly_is_kept() {
        let mut codec = FeigCodec::default().with_inter_char_gap(Some(INTER_CHARACTER_GAP));
        let mut buf = BytesMut::from(&inventory()[..4]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        tokio::time::advance(Duration::from_millis(20)).await;
        buf.extend_from_slice(&inventory()[4..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap().unwrap().to_bytes(),
            inventory()
        );
        assert_eq!(codec.stats().snapshot().bytes_skipped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn within_12_ms_a_partial_frame_waits_for_its_rest() {
        let mut codec = FeigCodec::default().with_inter_char_gap(Some(INTER_CHARACTER_GAP));
        let mut buf = BytesMut::from(&[0x06, 0x00, 0xB0][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        tokio::time::advance(Duration::from_millis(5)).await;
        buf.extend_from_slice(&[0x01, 0x5C]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        tokio::time::advance(Duration::from_millis(5)).await;
        buf.extend_from_slice(&[0x63]);
        assert_eq!(
            codec.decode(&mut buf).unwrap().unwrap().to_bytes(),
            no_transponder()
        );
    }

    #[test]
    fn the_encoder_writes_requests_with_len_and_crc() {
        let mut codec = FeigCodec::default();
        let mut out = BytesMut::new();
        codec
            .encode(
                Request::Inventory {
                    more: false,
                    afi: None,
                    notify: None,
                }
                .to_raw(0xFF),
                &mut out,
            )
            .unwrap();
        assert_eq!(&out[..], &inventory()[..]);
    }
}
