//! The SIP2 line codec (PROTOCOLS.md §1.1, §1.2, §1.9).
//!
//! Frames end with CR; a following LF (CRLF peers) and leading junk are dropped. The AZ
//! checksum of an incoming frame is checked strictly (a bad one is an error item) or
//! leniently (accepted, as for the widely copied 3M examples with wrong checksums). A frame
//! longer than the maximum is discarded up to its CR and reported once, then decoding goes
//! on: a bad frame is an `Err` *item*, never the end of the stream, so the client can answer
//! it with 97.

use bytes::Buf;
use serde::Deserialize;

/// Re-exported so users (the fuzz targets, the CLI) need no direct `bytes`/`tokio-util`.
pub use bytes::BytesMut;
pub use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{ChecksumStatus, Decoded, FrameError, Message, WireFormat};

/// Default maximum frame length in bytes. The spec sets none; pysip2 caps a field at 255
/// bytes and real 64 responses with item lists stay well under this.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024;

/// The frame terminator a peer expects on frames we send (§1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Terminator {
    /// CR (0x0D), the spec.
    #[default]
    Cr,
    /// CR LF (Koha/FOLIO option).
    Crlf,
}

impl Terminator {
    fn bytes(self) -> &'static [u8] {
        match self {
            Self::Cr => b"\r",
            Self::Crlf => b"\r\n",
        }
    }
}

/// What to do with a received frame whose AZ checksum is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumPolicy {
    /// Reject it (the client then asks for a resend with 97; a server answers 96).
    #[default]
    Strict,
    /// Accept it (peers that print wrong checksums, §1.9).
    Lenient,
}

/// Why the codec failed. Only I/O ends a stream; frame problems are `Err` items.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The transport failed.
    #[error("SIP2 connection I/O failed")]
    Io(#[from] std::io::Error),
    /// A message to send could not be encoded.
    #[error("cannot encode SIP2 message")]
    Frame(#[from] FrameError),
}

/// A `tokio_util` codec for SIP2 frames.
#[derive(Debug, Clone)]
pub struct Sip2Codec {
    format: WireFormat,
    terminator: Terminator,
    checksum: ChecksumPolicy,
    max_len: usize,
    /// Bytes already scanned for CR in the buffer (avoids rescanning partial frames).
    scanned: usize,
    /// Dropping the rest of an over-long frame until its CR.
    discarding: bool,
    junk_bytes: u64,
    junk_logged: bool,
    /// The bytes of the last frame decoded (without junk and terminator), for a wire tap:
    /// kept also when the frame was rejected, so that what failed can be shown.
    last_frame: bytes::Bytes,
}

/// One frame received: the message and its checksum verdict, or why it was rejected.
pub type Received = Result<Decoded, FrameError>;

impl Sip2Codec {
    /// A codec for a peer's wire format.
    pub fn new(format: WireFormat, terminator: Terminator, checksum: ChecksumPolicy) -> Self {
        Self {
            format,
            terminator,
            checksum,
            max_len: DEFAULT_MAX_FRAME,
            scanned: 0,
            discarding: false,
            junk_bytes: 0,
            junk_logged: false,
            last_frame: bytes::Bytes::new(),
        }
    }

    /// Sets the maximum frame length in bytes.
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(8);
        self
    }

    /// The wire format.
    pub fn format(&self) -> &WireFormat {
        &self.format
    }

    /// Bytes dropped so far as leading junk or over-long frames.
    pub fn junk_bytes(&self) -> u64 {
        self.junk_bytes
    }

    /// The bytes of the frame the last decoded item came from, as received (leading junk
    /// and the terminator removed), whether it was accepted or not; empty after a frame
    /// too long to keep.
    pub fn last_frame(&self) -> &[u8] {
        &self.last_frame
    }

    fn count_junk(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.junk_bytes = self.junk_bytes.saturating_add(n as u64);
        if !self.junk_logged {
            self.junk_logged = true;
            tracing::warn!(
                bytes = n,
                "SIP2 peer sent bytes outside any frame; dropping them (logged once per connection)"
            );
        }
    }

    fn parse(&mut self, line: &bytes::Bytes) -> Option<Received> {
        // Leading junk: line breaks and NULs silently (CRLF peers), anything else counted.
        let start = line.iter().position(u8::is_ascii_digit)?;
        let junk = line
            .get(..start)
            .unwrap_or_default()
            .iter()
            .filter(|b| !matches!(b, b'\n' | b'\r' | b'\0' | b' ' | b'\t'))
            .count();
        self.count_junk(junk);
        let mut end = line.len();
        if line.ends_with(b"\n") {
            end -= 1;
        }
        // A cheap clone (a reference count), so the tap costs nothing when unused.
        self.last_frame = line.slice(start.min(end)..end);
        let frame = self.last_frame.as_ref();
        Some(
            Message::decode(frame, &self.format).and_then(|decoded| match decoded.checksum {
                ChecksumStatus::Invalid { printed, computed }
                    if self.checksum == ChecksumPolicy::Strict =>
                {
                    Err(FrameError::BadChecksum { printed, computed })
                }
                _ => Ok(decoded),
            }),
        )
    }
}

impl Default for Sip2Codec {
    fn default() -> Self {
        Self::new(
            WireFormat::default(),
            Terminator::Cr,
            ChecksumPolicy::Strict,
        )
    }
}

/// `96AZFEF6` as Ceridwen sends it: without the CR (§1.9). Recognised without terminator.
const SC_RESEND_NO_CR: &[u8] = b"96AZFEF6";

impl Decoder for Sip2Codec {
    type Item = Received;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Received>, CodecError> {
        loop {
            let from = self.scanned.min(buf.len());
            let cr = buf
                .get(from..)
                .and_then(|tail| tail.iter().position(|&b| b == b'\r'))
                .map(|i| i + from);
            let Some(cr) = cr else {
                if self.discarding {
                    self.count_junk(buf.len());
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                let trimmed = buf
                    .iter()
                    .position(|b| !matches!(b, b'\n' | b'\0'))
                    .and_then(|s| buf.get(s..));
                if trimmed == Some(SC_RESEND_NO_CR) {
                    let line = buf.split().freeze();
                    self.scanned = 0;
                    if let Some(item) = self.parse(&line) {
                        return Ok(Some(item));
                    }
                    continue;
                }
                if buf.len() > self.max_len {
                    let len = buf.len();
                    self.count_junk(len);
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    self.last_frame = bytes::Bytes::new();
                    return Ok(Some(Err(FrameError::TooLong {
                        len,
                        max: self.max_len,
                    })));
                }
                self.scanned = buf.len();
                return Ok(None);
            };
            let line = buf.split_to(cr).freeze();
            buf.advance(1);
            if buf.first() == Some(&b'\n') {
                buf.advance(1);
            }
            self.scanned = 0;
            if self.discarding {
                self.discarding = false;
                self.count_junk(line.len());
                continue;
            }
            if line.len() > self.max_len {
                self.count_junk(line.len());
                self.last_frame = bytes::Bytes::new();
                return Ok(Some(Err(FrameError::TooLong {
                    len: line.len(),
                    max: self.max_len,
                })));
            }
            if let Some(item) = self.parse(&line) {
                return Ok(Some(item));
            }
            // Blank line or only junk: keep reading.
            let junk = line
                .iter()
                .filter(|b| !matches!(b, b'\n' | b'\r' | b'\0' | b' ' | b'\t'))
                .count();
            self.count_junk(junk);
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Received>, CodecError> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        // A partial frame at end of stream is dropped: the line broke mid-frame.
        let rest = buf.len();
        if rest > 0 {
            self.count_junk(rest);
            buf.clear();
        }
        Ok(None)
    }
}

impl Encoder<&Message> for Sip2Codec {
    type Error = CodecError;

    fn encode(&mut self, message: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut out = Vec::with_capacity(128);
        message.encode_into(&self.format, &mut out)?;
        dst.extend_from_slice(&out);
        dst.extend_from_slice(self.terminator.bytes());
        Ok(())
    }
}

impl Encoder<Message> for Sip2Codec {
    type Error = CodecError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        Encoder::<&Message>::encode(self, &message, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Command, Trailer};

    fn decode_all(codec: &mut Sip2Codec, bytes: &[u8]) -> Vec<Received> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn a_partial_frame_waits_for_its_terminator() {
        let mut codec = Sip2Codec::default();
        let mut buf = BytesMut::from(&b"9900401.00AY1"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"AZFCA5\r");
        let item = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(item.message.command, Command::ScStatus);
        assert!(buf.is_empty());
    }

    #[test]
    fn crlf_and_leading_junk_are_accepted_and_junk_is_counted() {
        let mut codec = Sip2Codec::default();
        let items = decode_all(&mut codec, b"\n\0xx941\r\n941\r\n");
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(codec.junk_bytes(), 2);
    }

    #[test]
    fn a_bad_checksum_is_an_error_item_in_strict_mode_and_the_stream_goes_on() {
        let mut codec = Sip2Codec::default();
        let items = decode_all(&mut codec, b"941AY3AZFDFB\r941AY3AZFDFA\r");
        assert!(matches!(items[0], Err(FrameError::BadChecksum { .. })));
        assert!(items[1].is_ok());
    }

    #[test]
    fn a_bad_checksum_is_accepted_in_lenient_mode() {
        let mut codec = Sip2Codec::new(
            WireFormat::default(),
            Terminator::Cr,
            ChecksumPolicy::Lenient,
        );
        let items = decode_all(&mut codec, b"941AY3AZFDFB\r");
        assert_eq!(items.len(), 1);
        assert!(matches!(
            items[0].as_ref().unwrap().checksum,
            ChecksumStatus::Invalid { .. }
        ));
    }

    #[test]
    fn an_over_long_frame_is_reported_once_and_the_next_frame_is_read() {
        let mut codec = Sip2Codec::default().with_max_len(16);
        let mut bytes = vec![b'9'; 40];
        bytes.extend_from_slice(b"\r941\r");
        let mut buf = BytesMut::from(&bytes[..20]);
        let first = codec.decode(&mut buf).unwrap().unwrap();
        assert!(matches!(first, Err(FrameError::TooLong { .. })));
        buf.extend_from_slice(&bytes[20..]);
        let next = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(next.message.command, Command::LoginResponse);
    }

    #[test]
    fn a_resend_request_without_cr_is_recognised() {
        let mut codec = Sip2Codec::default();
        let items = decode_all(&mut codec, b"96AZFEF6");
        assert_eq!(items.len(), 1);
        let d = items[0].as_ref().unwrap();
        assert_eq!(d.message.command, Command::RequestScResend);
        assert_eq!(d.message.trailer, Trailer::Checksum);
    }

    #[test]
    fn the_encoder_appends_the_configured_terminator() {
        let mut codec = Sip2Codec::new(
            WireFormat::default(),
            Terminator::Crlf,
            ChecksumPolicy::Strict,
        );
        let message = Message::decode(b"941", &WireFormat::default())
            .unwrap()
            .message;
        let mut dst = BytesMut::new();
        codec.encode(&message, &mut dst).unwrap();
        assert_eq!(&dst[..], b"941\r\n");
    }
}
