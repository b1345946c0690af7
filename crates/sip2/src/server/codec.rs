//! Request framing for the server face: one raw frame per CR (PROTOCOLS.md §1.1, §1.9).
//!
//! Unlike the client's [`crate::codec::Sip2Codec`], this keeps each frame's bytes as they
//! came: the face needs them to recognise a duplicate request (same AY and content, §1.2),
//! and a kiosk's character set and delimiter are only known after its 93 Login names its
//! account. Parsing is [`super::request::parse_request`], over the shared frame layer.
//!
//! A following LF (CRLF kiosks), NULs and blanks between frames are dropped silently;
//! other bytes before a frame's two-digit code are junk, counted. A frame longer than the
//! maximum is an error item (the face then closes the connection); so is a buffer that
//! grows past the maximum without a CR.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Why a frame could not be cut from the stream. I/O errors end the stream.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The transport failed.
    #[error("SIP2 connection I/O failed")]
    Io(#[from] std::io::Error),
    /// The peer sent more than `max` bytes without a frame end.
    #[error("SIP2 frame of {len} bytes exceeds the face's maximum of {max} bytes")]
    TooLong {
        /// Bytes seen.
        len: usize,
        /// The limit (`sip2_server.max_frame`).
        max: usize,
    },
}

/// Cuts raw request frames (without terminator or leading junk) from a byte stream.
#[derive(Debug, Clone)]
pub struct RequestCodec {
    max_len: usize,
    scanned: usize,
    junk_bytes: u64,
}

impl RequestCodec {
    /// A codec refusing frames longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len: max_len.max(8),
            scanned: 0,
            junk_bytes: 0,
        }
    }

    /// Junk bytes dropped so far (outside any frame).
    pub fn junk_bytes(&self) -> u64 {
        self.junk_bytes
    }

    /// The frame inside one line: from the first digit on, a trailing LF or NUL dropped.
    /// `None` when the line holds no frame at all.
    fn frame_of(&mut self, line: &[u8]) -> Option<Bytes> {
        let start = line.iter().position(u8::is_ascii_digit);
        let junk_end = start.unwrap_or(line.len());
        let junk = line
            .get(..junk_end)
            .unwrap_or_default()
            .iter()
            .filter(|b| !is_filler(**b))
            .count();
        self.junk_bytes = self.junk_bytes.saturating_add(junk as u64);
        let Some(start) = start else {
            // No frame at all: blank lines are nothing, anything else is an unreadable
            // frame (it counts towards the face's garbage limit).
            return (junk > 0).then(|| Bytes::copy_from_slice(line));
        };
        let mut frame = line.get(start..).unwrap_or_default();
        while let Some((last, rest)) = frame.split_last() {
            if matches!(last, b'\n' | b'\0') {
                frame = rest;
            } else {
                break;
            }
        }
        Some(Bytes::copy_from_slice(frame))
    }
}

/// Bytes that may sit between frames without being junk (CRLF peers, padding).
fn is_filler(b: u8) -> bool {
    matches!(b, b'\n' | b'\r' | b'\0' | b' ' | b'\t')
}

impl Decoder for RequestCodec {
    type Item = Bytes;
    type Error = FramingError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        loop {
            let from = self.scanned.min(buf.len());
            let cr = buf
                .get(from..)
                .and_then(|tail| tail.iter().position(|&b| b == b'\r'))
                .map(|i| i + from);
            let Some(cr) = cr else {
                if buf.len() > self.max_len {
                    return Err(FramingError::TooLong {
                        len: buf.len(),
                        max: self.max_len,
                    });
                }
                self.scanned = buf.len();
                return Ok(None);
            };
            self.scanned = 0;
            if cr > self.max_len {
                return Err(FramingError::TooLong {
                    len: cr,
                    max: self.max_len,
                });
            }
            let line = buf.split_to(cr);
            buf.advance(1);
            if let Some(frame) = self.frame_of(&line) {
                return Ok(Some(frame));
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A last frame without its CR (Ceridwen sends 96 so, §1.9): take it.
        if buf.is_empty() {
            return Ok(None);
        }
        let line = buf.split();
        Ok(self.frame_of(&line).filter(|f| !f.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(codec: &mut RequestCodec, bytes: &[u8]) -> Vec<Result<Bytes, String>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn crlf_leading_junk_and_blank_lines_give_the_bare_frames() {
        let mut codec = RequestCodec::new(1024);
        let got = frames(&mut codec, b"\r\n\0xx9300CNa|COb|\r\n\r\n9900302.00\r");
        assert_eq!(
            got,
            vec![
                Ok(Bytes::from_static(b"9300CNa|COb|")),
                Ok(Bytes::from_static(b"9900302.00"))
            ]
        );
        assert_eq!(codec.junk_bytes(), 2);
    }

    #[test]
    fn a_frame_waits_for_its_cr_and_an_endless_one_is_an_error() {
        let mut codec = RequestCodec::new(16);
        let mut buf = BytesMut::from(&b"99003"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"02.00\r");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"9900302.00");
        let mut buf = BytesMut::from(&[b'x'; 40][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FramingError::TooLong { len: 40, max: 16 })
        ));
    }

    #[test]
    fn a_last_frame_without_cr_is_taken_at_end_of_stream() {
        let mut codec = RequestCodec::new(64);
        let mut buf = BytesMut::from(&b"97AZFEF5"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(
            &codec.decode_eof(&mut buf).unwrap().unwrap()[..],
            b"97AZFEF5"
        );
    }
}
