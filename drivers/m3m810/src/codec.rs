//! The 3M 810 line codec: whole [`Frame`]s out of a byte stream and back.
//!
//! Resynchronisation: bytes before a start byte (`D6` / `D5`) are dropped and counted; a
//! candidate with an impossible LEN or a bad CRC loses only its start byte, so a real frame
//! hidden behind garbage is still found. While a candidate is incomplete the codec also
//! looks for a complete, CRC-valid frame further on: a stray `D6` with a large LEN cannot
//! make it wait for bytes that will never come (mistaking data inside a real, still
//! incomplete frame for such a frame needs a start byte, a fitting LEN and a matching
//! 16-bit CRC there: about 2⁻¹⁶ per start byte in the data). It never panics and never
//! buffers more than one maximal frame ([`MAX_LEN_FIELD`]) per candidate.

use bytes::Buf;
use rfidgw_driver::line::LineStats;

/// Re-exported so tools and fuzz targets drive the codec without their own dependencies.
pub use bytes::BytesMut;
/// Re-exported so tools and fuzz targets drive the codec without their own dependencies.
pub use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{
    CRC_LEN, Frame, FrameError, HEADER_LEN, MAX_LEN_FIELD, MIN_LEN_FIELD, PROBE_START, START,
    checksum,
};

/// Why the codec could not go on.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the stream failed.
    #[error("3M 810 line: {0}")]
    Io(#[from] std::io::Error),
    /// A frame to send cannot be encoded.
    #[error("3M 810 frame to send: {0}")]
    Frame(#[from] FrameError),
}

/// A tokio-util codec for 3M 810 frames, counting what it drops in [`LineStats`].
#[derive(Clone, Debug, Default)]
pub struct M3m810Codec {
    stats: LineStats,
}

/// What the bytes at a start byte are.
enum Candidate {
    /// Not a frame: LEN out of range or CRC wrong.
    Invalid { bad_crc: bool },
    /// A complete, CRC-valid frame of this many bytes.
    Complete(usize),
    /// Possibly a frame; this many bytes are needed in total.
    Partial(usize),
}

fn is_start(byte: u8) -> bool {
    byte == START || byte == PROBE_START
}

fn candidate(bytes: &[u8]) -> Candidate {
    let [_, hi, lo, ..] = *bytes else {
        return Candidate::Partial(HEADER_LEN);
    };
    let len_field = usize::from(u16::from_be_bytes([hi, lo]));
    if !(MIN_LEN_FIELD..=MAX_LEN_FIELD).contains(&len_field) {
        return Candidate::Invalid { bad_crc: false };
    }
    let total = HEADER_LEN + len_field;
    let Some(frame) = bytes.get(..total) else {
        return Candidate::Partial(total);
    };
    let crc_at = total - CRC_LEN;
    let crc_ok = match frame.get(crc_at..) {
        Some(&[c_hi, c_lo]) => {
            checksum(frame.get(1..crc_at).unwrap_or_default()) == u16::from_be_bytes([c_hi, c_lo])
        }
        _ => false,
    };
    if crc_ok {
        Candidate::Complete(total)
    } else {
        Candidate::Invalid { bad_crc: true }
    }
}

impl M3m810Codec {
    /// A codec counting into `stats` (the driver keeps a clone for health reports).
    pub fn new(stats: LineStats) -> Self {
        Self { stats }
    }

    /// The counters this codec bumps.
    pub fn stats(&self) -> &LineStats {
        &self.stats
    }

    fn skip(&self, src: &mut BytesMut, count: usize) {
        if count > 0 {
            tracing::debug!(bytes = count, "3M 810: skipping garbage");
            self.stats.skipped(count);
            src.advance(count);
        }
    }
}

impl Decoder for M3m810Codec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            let Some(at) = src.iter().position(|b| is_start(*b)) else {
                let len = src.len();
                self.skip(src, len);
                return Ok(None);
            };
            self.skip(src, at);
            match candidate(src) {
                Candidate::Invalid { bad_crc } => {
                    if bad_crc {
                        self.stats.bad_frame();
                    }
                    self.skip(src, 1);
                }
                Candidate::Complete(total) => {
                    let bytes = src.split_to(total);
                    // `candidate` checked LEN and CRC already; count and go on if the two
                    // ever disagree rather than stopping the line.
                    if let Ok(frame) = Frame::parse(&bytes) {
                        self.stats.frame_ok();
                        return Ok(Some(frame));
                    }
                    self.stats.bad_frame();
                    self.stats.skipped(total);
                }
                Candidate::Partial(total) => {
                    // A later start byte that begins a complete, valid frame means this
                    // candidate was garbage with a plausible-looking LEN.
                    let later = src
                        .iter()
                        .enumerate()
                        .skip(1)
                        .filter(|(_, b)| is_start(**b))
                        .find_map(|(i, _)| match candidate(src.get(i..).unwrap_or_default()) {
                            Candidate::Complete(_) => Some(i),
                            _ => None,
                        });
                    if let Some(i) = later {
                        self.skip(src, i);
                        continue;
                    }
                    src.reserve(total.saturating_sub(src.len()));
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.drain_at_eof(src)
    }
}

impl M3m810Codec {
    /// At end of stream, a half frame or garbage left over is counted as skipped: the line
    /// closed, which the driver reports; the leftover bytes are not an error of their own.
    fn drain_at_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let left = src.len();
        self.skip(src, left);
        Ok(None)
    }
}

impl Encoder<Frame> for M3m810Codec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let bytes = frame.to_bytes()?;
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

impl Encoder<&Frame> for M3m810Codec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let bytes = frame.to_bytes()?;
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut M3m810Codec, bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    const INVENTORY: &str = "D60005FE0005FA40";

    #[test]
    fn a_frame_split_anywhere_decodes_once_complete() {
        let bytes = hex::decode(INVENTORY).unwrap();
        for split in 0..bytes.len() {
            let mut codec = M3m810Codec::default();
            let mut buf = BytesMut::from(&bytes[..split]);
            assert_eq!(codec.decode(&mut buf).unwrap(), None, "split {split}");
            buf.extend_from_slice(&bytes[split..]);
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(frame.command, 0xFE);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn garbage_before_between_and_inside_frames_is_skipped_and_counted() {
        let mut codec = M3m810Codec::default();
        let stream = format!("0102D6FF{INVENTORY}D60005FE0005FA41{INVENTORY}33");
        let frames = decode_all(&mut codec, &hex::decode(stream).unwrap());
        assert_eq!(frames.len(), 2);
        let counters = codec.stats().snapshot();
        assert_eq!(counters.frames_ok, 2);
        assert_eq!(counters.bad_frames, 1);
        // 01 02 D6 FF, the 8 bytes of the bad-CRC frame, the trailing 33.
        assert_eq!(counters.bytes_skipped, 4 + 8 + 1);
    }

    #[test]
    fn a_stray_start_byte_with_a_huge_len_does_not_hide_the_next_frame() {
        let mut codec = M3m810Codec::default();
        let stream = format!("D60F00{INVENTORY}");
        let frames = decode_all(&mut codec, &hex::decode(stream).unwrap());
        assert_eq!(frames.len(), 1);
        assert_eq!(codec.stats().snapshot().bytes_skipped, 3);
    }

    #[test]
    fn a_half_frame_at_end_of_stream_is_counted_as_skipped_not_an_error() {
        let mut codec = M3m810Codec::default();
        let mut buf = BytesMut::from(&hex::decode("D60005FE00").unwrap()[..]);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert_eq!(codec.stats().snapshot().bytes_skipped, 5);
    }

    #[test]
    fn frames_encode_to_their_wire_bytes() {
        let mut codec = M3m810Codec::default();
        let mut out = BytesMut::new();
        codec
            .encode(Frame::new(0xFE, vec![0x00, 0x05]), &mut out)
            .unwrap();
        assert_eq!(hex::encode_upper(&out), INVENTORY);
    }
}
