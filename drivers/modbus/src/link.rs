//! [`ModbusLink`]: one Modbus client on one transport, with a reply timeout on every
//! request, the RTU silent interval between frames, and line counters.
//!
//! The link is generic over the byte stream (serial port, TCP socket, pty, in-memory
//! duplex) and over the framing: RTU (`address | PDU | CRC-16/MODBUS`, on a serial line or
//! through a transparent TCP serial server) or Modbus TCP (MBAP header, PROTOCOLS.md §4.6).
//!
//! Three outcomes, kept apart as everywhere in rfidgw: the reply (`Ok(Ok(_))`), the PLC's
//! exception reply (`Ok(Err(code))`, a normal "no"), and a broken line (`Err`: timeout,
//! I/O error, a reply that does not answer the request). After an `Err` the link is not
//! used again: an RTU line has no transaction id, so a late reply would be taken for the
//! next request's.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rfidgw_driver::transport::Transport;
use rfidgw_driver::{DeviceError, LineCounters, LineStats};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_modbus::client::Client;
use tokio_modbus::{ExceptionCode, Slave};

use crate::map::{InputWindow, Write};
use crate::reply::{Op, Reply, ReplyError};

/// How requests and replies are framed on the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Modbus RTU: unit address, PDU, CRC-16/MODBUS LSB first.
    Rtu,
    /// Modbus TCP: MBAP header (transaction id, protocol 0, length, unit id) and PDU.
    Tcp,
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rtu => "RTU",
            Self::Tcp => "TCP",
        })
    }
}

/// The link's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTiming {
    /// How long to wait for each reply.
    pub reply_timeout: Duration,
    /// RTU: the silence kept between a reply and the next request (t3.5); `None` on TCP.
    pub frame_gap: Option<Duration>,
}

/// The RTU silent interval t3.5 at `baud`: 3.5 characters of 11 bits, and a fixed 1.75 ms
/// above 19200 baud (Modbus over Serial Line V1.02 §2.5.1.1).
pub fn rtu_frame_gap(baud: u32) -> Duration {
    if baud == 0 || baud > 19_200 {
        return Duration::from_micros(1750);
    }
    // 3.5 × 11 bits = 38.5 bits.
    Duration::from_micros(38_500_000 / u64::from(baud) + 1)
}

/// Why the line broke.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No reply within the reply timeout.
    #[error("{op}: no reply within {after:?} (driver.reply_timeout_ms)")]
    Timeout {
        /// The request.
        op: Op,
        /// The timeout.
        after: Duration,
    },
    /// The transport failed, or the bytes were not a frame.
    #[error("{op}: {source}")]
    Transport {
        /// The request.
        op: Op,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A frame came that does not belong to the request (another unit, transaction or
    /// function).
    #[error("{op}: {source}")]
    Protocol {
        /// The request.
        op: Op,
        /// What tokio-modbus found.
        #[source]
        source: tokio_modbus::ProtocolError,
    },
    /// The reply does not answer the request.
    #[error("{0}")]
    Reply(#[from] ReplyError),
}

impl From<LinkError> for DeviceError {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::Timeout { after, .. } => DeviceError::Timeout(after),
            LinkError::Transport { source, op } => {
                DeviceError::Transport(io::Error::new(source.kind(), format!("{op}: {source}")))
            }
            other @ (LinkError::Protocol { .. } | LinkError::Reply(_)) => {
                DeviceError::Protocol(other.to_string())
            }
        }
    }
}

/// An exception reply: the PLC understood the request and said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception(pub ExceptionCode);

impl Exception {
    /// The exception code as sent (`02` illegal data address …).
    pub fn code(self) -> u8 {
        self.0.into()
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meaning = match self.0 {
            ExceptionCode::Custom(_) => "exception",
            known => return write!(f, "exception {:02X} {known}", self.code()),
        };
        write!(f, "{meaning} {:02X}", self.code())
    }
}

/// What one request came to when the line held: the reply, or the PLC's exception.
pub type Outcome<T> = Result<T, Exception>;

/// One Modbus client on one transport.
pub struct ModbusLink {
    client: Box<dyn Client>,
    timing: LinkTiming,
    last_reply: Option<Instant>,
    stats: LineStats,
}

impl fmt::Debug for ModbusLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModbusLink")
            .field("timing", &self.timing)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ModbusLink {
    /// A client speaking `framing` to unit `unit` over `transport`.
    pub fn attach<T: Transport + 'static>(
        transport: T,
        framing: Framing,
        unit: u8,
        timing: LinkTiming,
        stats: LineStats,
    ) -> Self {
        let slave = Slave(unit);
        let context = match framing {
            Framing::Rtu => tokio_modbus::client::rtu::attach_slave(transport, slave),
            Framing::Tcp => tokio_modbus::client::tcp::attach_slave(Named(transport), slave),
        };
        Self {
            client: context.into(),
            timing,
            last_reply: None,
            stats,
        }
    }

    /// Sends `op` and checks its reply.
    pub async fn exchange(&mut self, op: Op) -> Result<Outcome<Reply>, LinkError> {
        if let (Some(gap), Some(last)) = (self.timing.frame_gap, self.last_reply) {
            tokio::time::sleep_until(last + gap).await;
        }
        let after = self.timing.reply_timeout;
        let result = tokio::time::timeout(after, self.client.call(op.request())).await;
        self.last_reply = Some(Instant::now());
        let result = match result {
            Err(_) => {
                self.stats.timeout();
                return Err(LinkError::Timeout { op, after });
            }
            Ok(Err(tokio_modbus::Error::Transport(source))) => {
                if source.kind() == io::ErrorKind::InvalidData {
                    self.stats.bad_frame();
                }
                return Err(LinkError::Transport { op, source });
            }
            Ok(Err(tokio_modbus::Error::Protocol(source))) => {
                self.stats.bad_frame();
                return Err(LinkError::Protocol { op, source });
            }
            Ok(Ok(result)) => result,
        };
        match result {
            Ok(response) => match op.check(response) {
                Ok(reply) => {
                    self.stats.frame_ok();
                    Ok(Ok(reply))
                }
                Err(error) => {
                    self.stats.bad_frame();
                    Err(error.into())
                }
            },
            Err(code) => {
                self.stats.frame_ok();
                Ok(Err(Exception(code)))
            }
        }
    }

    /// Reads the discrete inputs of `window`, first input first.
    pub async fn read_inputs(
        &mut self,
        window: InputWindow,
    ) -> Result<Outcome<Vec<bool>>, LinkError> {
        let op = Op::ReadInputs(window);
        Ok(match self.exchange(op).await? {
            Ok(Reply::Inputs(bits)) => Ok(bits),
            // `Op::check` answers a read with inputs only; kept an error all the same.
            Ok(Reply::Written) => {
                return Err(LinkError::Reply(ReplyError::Mismatch {
                    op,
                    response: "a write echo".into(),
                }));
            }
            Err(exception) => Err(exception),
        })
    }

    /// Sends one write.
    pub async fn write(&mut self, write: Write) -> Result<Outcome<()>, LinkError> {
        Ok(self.exchange(Op::Write(write)).await?.map(drop))
    }

    /// The line counters so far.
    pub fn counters(&self) -> LineCounters {
        self.stats.snapshot()
    }
}

/// tokio-modbus's TCP client wants a `Debug` stream; a boxed transport is not one.
struct Named<T>(T);

impl<T> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("transport")
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Named<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Named<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// What [`replay`] saw: the request's bytes as sent, and what the link made of the reply.
#[derive(Debug)]
pub struct Replayed {
    /// The request on the wire.
    pub request: Vec<u8>,
    /// The link's result.
    pub outcome: Result<Outcome<Reply>, LinkError>,
}

/// Plays `reply` as the peer's bytes to one request `op` on a fresh link over an in-memory
/// stream, and returns what the link made of it, with the request's bytes as sent. For
/// fuzzing and tests: it runs its own single-threaded runtime, so call it outside one.
pub fn replay(framing: Framing, unit: u8, op: Op, reply: &[u8]) -> io::Result<Replayed> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let (ours, mut peer) = tokio::io::duplex(64);
        let timing = LinkTiming {
            reply_timeout: Duration::from_secs(5),
            frame_gap: None,
        };
        let mut link = ModbusLink::attach(ours, framing, unit, timing, LineStats::new());
        let peer = async move {
            // Every request of the driver has a 5-byte PDU: 8 bytes with the RTU unit and
            // CRC, 12 with the MBAP header. Read it whole, then answer and hang up, so a
            // reply that never completes ends at end-of-stream.
            let length = match framing {
                Framing::Rtu => 8,
                Framing::Tcp => 12,
            };
            let mut request = vec![0; length];
            peer.read_exact(&mut request).await?;
            // The link stops reading once it has a frame; what it leaves is not an error.
            let _ = peer.write_all(reply).await;
            drop(peer);
            io::Result::Ok(request)
        };
        let ours = async move {
            let outcome = link.exchange(op).await;
            // Hang up, so a peer still writing the rest of a long reply stops.
            drop(link);
            outcome
        };
        let (outcome, request) = tokio::join!(ours, peer);
        Ok(Replayed {
            request: request?,
            outcome,
        })
    })
}

#[cfg(test)]
mod tests {
    use tokio_modbus::ExceptionCode;

    use super::*;

    const MODBUS: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

    fn rtu(frame: &[u8]) -> Vec<u8> {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&MODBUS.checksum(frame).to_le_bytes());
        bytes
    }

    fn inputs(first: u16, count: u16) -> Op {
        Op::ReadInputs(InputWindow { first, count })
    }

    #[test]
    fn the_crc_is_the_one_of_the_verified_vector() {
        // PROTOCOLS.md §4.6, shared/vectors/frames.tsv `modbus-rtu-read-hr`.
        assert_eq!(
            rtu(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]),
            [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]
        );
    }

    #[test]
    fn rtu_requests_and_replies_are_the_bytes_the_spec_gives() {
        // Read 10 inputs from 0 of unit 1; the reply sets inputs 0 and 9 (bytes 01 02).
        let Replayed { request, outcome } = replay(
            Framing::Rtu,
            1,
            inputs(0, 10),
            &rtu(&[0x01, 0x02, 0x02, 0x01, 0x02]),
        )
        .unwrap();
        assert_eq!(request, rtu(&[0x01, 0x02, 0x00, 0x00, 0x00, 0x0A]));
        let mut expected = vec![false; 10];
        expected[0] = true;
        expected[9] = true;
        assert_eq!(outcome.unwrap(), Ok(Reply::Inputs(expected)));

        // Write bin 3 into holding register 100 of unit 7; the reply echoes it.
        let write = Op::Write(Write::Register {
            address: 100,
            value: 3,
        });
        let frame = rtu(&[0x07, 0x06, 0x00, 0x64, 0x00, 0x03]);
        let Replayed { request, outcome } = replay(Framing::Rtu, 7, write, &frame).unwrap();
        assert_eq!(request, frame);
        assert_eq!(outcome.unwrap(), Ok(Reply::Written));

        // Coil 16 on is FF00 (§6.5).
        let write = Op::Write(Write::Coil {
            address: 16,
            on: true,
        });
        let frame = rtu(&[0x01, 0x05, 0x00, 0x10, 0xFF, 0x00]);
        let Replayed { request, outcome } = replay(Framing::Rtu, 1, write, &frame).unwrap();
        assert_eq!(request, frame);
        assert_eq!(outcome.unwrap(), Ok(Reply::Written));
    }

    #[test]
    fn tcp_requests_carry_the_mbap_header() {
        let Replayed { request, outcome } = replay(
            Framing::Tcp,
            1,
            inputs(0, 10),
            &[0, 0, 0, 0, 0, 5, 1, 0x02, 0x02, 0x00, 0x00],
        )
        .unwrap();
        // transaction 0, protocol 0, 6 bytes follow, unit 1, PDU 02 0000 000A
        assert_eq!(request, [0, 0, 0, 0, 0, 6, 1, 0x02, 0, 0, 0, 0x0A]);
        assert_eq!(outcome.unwrap(), Ok(Reply::Inputs(vec![false; 10])));
    }

    #[test]
    fn an_exception_reply_is_the_plcs_no_and_not_a_broken_line() {
        let write = Op::Write(Write::Register {
            address: 100,
            value: 9,
        });
        // 86 = 06 | 80, exception 03 illegal data value.
        let Replayed { outcome, .. } =
            replay(Framing::Rtu, 1, write, &rtu(&[0x01, 0x86, 0x03])).unwrap();
        let exception = outcome.unwrap().unwrap_err();
        assert_eq!(exception, Exception(ExceptionCode::IllegalDataValue));
        assert_eq!(exception.to_string(), "exception 03 Illegal data value");
        assert_eq!(
            Exception(ExceptionCode::Custom(0x42)).to_string(),
            "exception 42"
        );
    }

    #[test]
    fn replies_that_do_not_answer_the_request_break_the_line() {
        let read = inputs(0, 10);
        let write = Op::Write(Write::Register {
            address: 100,
            value: 3,
        });
        let cases: [(Op, Vec<u8>, &str); 6] = [
            // CRC wrong: the codec drops bytes looking for a frame, and the stream ends
            (
                read,
                vec![0x01, 0x02, 0x02, 0x01, 0x02, 0x00, 0x00],
                "bytes remaining",
            ),
            // another unit answered
            (
                read,
                rtu(&[0x02, 0x02, 0x02, 0x01, 0x02]),
                "mismatching headers",
            ),
            // one byte of inputs for ten inputs
            (
                read,
                rtu(&[0x01, 0x02, 0x01, 0x01]),
                "asked for 10 discrete inputs",
            ),
            // the echo names another value
            (
                write,
                rtu(&[0x01, 0x06, 0x00, 0x64, 0x00, 0x04]),
                "the echo says",
            ),
            // another function
            (
                write,
                rtu(&[0x01, 0x05, 0x00, 0x64, 0xFF, 0x00]),
                "mismatching function",
            ),
            // nothing at all, then end of stream
            (read, vec![], "read discrete inputs 0 to 9:"),
        ];
        for (n, (op, reply, needle)) in cases.into_iter().enumerate() {
            let Replayed { outcome, .. } = replay(Framing::Rtu, 1, op, &reply).unwrap();
            let err = outcome.expect_err(&format!("case {n}"));
            let text = err.to_string();
            assert!(text.contains(needle), "case {n}: {text}");
        }
    }

    #[test]
    fn the_silent_interval_follows_the_baud_rate() {
        assert_eq!(rtu_frame_gap(9600), Duration::from_micros(4011));
        assert_eq!(rtu_frame_gap(19_200), Duration::from_micros(2006));
        assert_eq!(rtu_frame_gap(38_400), Duration::from_micros(1750));
        assert_eq!(rtu_frame_gap(115_200), Duration::from_micros(1750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_answers_times_out_and_is_counted() {
        let (ours, _peer) = tokio::io::duplex(64);
        let timing = LinkTiming {
            reply_timeout: Duration::from_millis(300),
            frame_gap: None,
        };
        let mut link = ModbusLink::attach(ours, Framing::Tcp, 1, timing, LineStats::new());
        let started = Instant::now();
        let err = link
            .read_inputs(InputWindow { first: 0, count: 4 })
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert!(err.to_string().contains("no reply within 300ms"), "{err}");
        assert_eq!(link.counters().timeouts, 1);
        assert!(matches!(
            DeviceError::from(err),
            DeviceError::Timeout(d) if d == Duration::from_millis(300)
        ));
    }
}
