//! The server face (ACS side): kiosks and sorters log in to rfidgw as if it were the
//! library system (PROTOCOLS.md §1.1–§1.9, "server face").
//!
//! This half of the crate does the protocol; what a request *means* (relay it, answer it
//! offline, journal it) is the [`Handler`]'s business, supplied by the daemon:
//!
//! * [`codec`]: raw request frames (CR or CRLF, leading junk, a size limit);
//! * [`request`]: lenient parsing over the shared frame layer (any field order, unknown
//!   fields, blank or missing nb due date, missing AC, with or without trailer);
//! * [`session`]: one connection's state without I/O: login and its attempt limit, 96 for
//!   a bad checksum, cached bytes for 97 and duplicates (same AY and bytes; a request
//!   without AY is never taken for a duplicate, see [`session`]), garbage limit, the
//!   trailer and terminator of each answer;
//! * [`responses`]: refusals in the right response type, BX as the account may see it;
//! * [`auth`]: hashed or file-held kiosk passwords;
//! * [`supported`]: the BX set;
//! * [`tls`]: rustls on the listening side;
//! * [`events`]: one place that logs and counts.
//!
//! [`Server`] accepts connections (TCP, optionally TLS) and runs one task per kiosk; a
//! kiosk that sends garbage is disconnected with one log line and nobody else notices.

pub mod auth;
pub mod codec;
pub mod events;
pub mod request;
pub mod responses;
pub mod session;
pub mod supported;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{ChecksumPolicy, Terminator};
use crate::encoding::Encoding;
use crate::frame::{DEFAULT_DELIMITER, Message, WireFormat};

pub use auth::Credential;
pub use codec::{FramingError, RequestCodec};
pub use events::{FaceEvent, FaceMetrics, FaceMetricsSnapshot};
pub use request::{Repair, Request, RequestError, parse_request};
pub use session::{CloseReason, SessionLimits, SessionState, Step};
pub use supported::Supported;
pub use tls::{ServerTls, ServerTlsConfig, ServerTlsError};

/// Error detection on the face's answers (§1.2: configured per account, not negotiated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorDetection {
    /// Mirror each request: trailer in, trailer out (pysip2 and SIPServer "auto").
    #[default]
    Auto,
    /// Always send AY/AZ.
    On,
    /// Never send AY/AZ.
    Off,
}

/// How one account's kiosk writes and wants frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDialect {
    /// Terminator on answers (CR or CRLF); requests may end either way.
    pub terminator: Terminator,
    /// Character set.
    pub encoding: Encoding,
    /// Variable-field delimiter.
    pub delimiter: char,
    /// AY/AZ on answers.
    pub error_detection: ErrorDetection,
    /// A bad request checksum gets 96 (`strict`) or is let through (`lenient`, for kiosks
    /// that print wrong checksums).
    pub checksum: ChecksumPolicy,
}

impl Default for AccountDialect {
    fn default() -> Self {
        Self {
            terminator: Terminator::Cr,
            encoding: Encoding::Utf8,
            delimiter: DEFAULT_DELIMITER,
            error_detection: ErrorDetection::Auto,
            checksum: ChecksumPolicy::Strict,
        }
    }
}

impl AccountDialect {
    /// Character set and delimiter.
    pub fn wire_format(&self) -> WireFormat {
        WireFormat {
            encoding: self.encoding,
            delimiter: self.delimiter,
        }
    }
}

/// One kiosk account.
#[derive(Debug, Clone)]
pub struct ServerAccount {
    /// Login user id (CN).
    pub login: String,
    /// How its password (CO) is checked.
    pub credential: Credential,
    /// Its wire format.
    pub dialect: AccountDialect,
    /// What it may send.
    pub allowed: Supported,
}

/// Limits on each connection and on the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame in bytes.
    pub max_frame: usize,
    /// A connection without a frame for this long is closed (kiosks send 99 every few
    /// minutes to keep it, §1.4).
    pub idle_timeout: Duration,
    /// Failed logins before the connection is closed.
    pub max_login_attempts: u32,
    /// Unreadable frames in a row before the connection is closed.
    pub max_bad_frames: u32,
    /// Connections at once; more are closed at once with a log line.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 4096,
            idle_timeout: Duration::from_mins(15),
            max_login_attempts: 3,
            max_bad_frames: 3,
            max_connections: 256,
        }
    }
}

/// The kiosk a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// Connection id (unique while the server runs).
    pub id: u64,
    /// Peer address.
    pub peer: String,
    /// The account logged in (`None` for a 99 before login).
    pub login: Option<String>,
}

/// Answers requests from logged-in kiosks (and 99 before login). The answer goes through
/// the session: trailer, terminator, BX restriction and caching are done there.
pub trait Handler: Send + Sync + 'static {
    /// The answer to `request` (never an error: say no in the response type, see
    /// [`responses::refusal`]).
    fn handle<'a>(&'a self, terminal: &'a Terminal, request: &'a Request)
    -> BoxFuture<'a, Message>;
}

/// The face's listener.
#[derive(Clone)]
pub struct Server {
    accounts: Arc<[ServerAccount]>,
    limits: Limits,
    handler: Arc<dyn Handler>,
    tls: Option<ServerTls>,
    metrics: Arc<FaceMetrics>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("accounts", &self.accounts.len())
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for these accounts.
    pub fn new(accounts: Vec<ServerAccount>, limits: Limits, handler: Arc<dyn Handler>) -> Self {
        Self {
            accounts: Arc::from(accounts),
            limits,
            handler,
            tls: None,
            metrics: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Speaks TLS on every connection.
    #[must_use]
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The face's counters.
    pub fn metrics(&self) -> Arc<FaceMetrics> {
        self.metrics.clone()
    }

    /// Binds `addr` (port 0 in tests) and returns the address and the future that serves
    /// until `shutdown`.
    pub async fn bind(
        self,
        addr: &str,
        shutdown: CancellationToken,
    ) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((local, self.run(listener, shutdown)))
    }

    /// Accepts connections until `shutdown`, then waits for each kiosk's request under way
    /// to be answered and closes every connection.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections.max(1)));
        let tasks = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "SIP2 face: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = peer.to_string();
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                FaceEvent::Refused {
                    peer: &peer,
                    reason: "too many connections (sip2_server.max_connections)",
                }
                .emit(&self.metrics);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let token = shutdown.clone();
            tasks.spawn(async move {
                let _slot = slot;
                match &server.tls {
                    None => server.serve_connection(stream, peer, token).await,
                    Some(tls) => {
                        let handshake = tokio::time::timeout(
                            server.limits.idle_timeout.min(Duration::from_secs(10)),
                            tls.acceptor().accept(stream),
                        )
                        .await;
                        match handshake {
                            Ok(Ok(stream)) => server.serve_connection(stream, peer, token).await,
                            Ok(Err(error)) => FaceEvent::Refused {
                                peer: &peer,
                                reason: &format!("TLS handshake failed: {error}"),
                            }
                            .emit(&server.metrics),
                            Err(_) => FaceEvent::Refused {
                                peer: &peer,
                                reason: "TLS handshake timed out",
                            }
                            .emit(&server.metrics),
                        }
                    }
                }
            });
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Serves one kiosk over any byte stream until it closes, breaks a limit, or
    /// `shutdown` (after answering the request under way).
    // One linear loop: read, decide, answer, log; splitting it scatters the limits.
    #[allow(clippy::too_many_lines)]
    pub async fn serve_connection<S>(&self, stream: S, peer: String, shutdown: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        FaceEvent::Connected {
            terminal: id,
            peer: &peer,
        }
        .emit(&self.metrics);
        let mut terminal = Terminal {
            id,
            peer,
            login: None,
        };
        let mut session = SessionState::new(
            self.accounts.clone(),
            SessionLimits {
                max_login_attempts: self.limits.max_login_attempts.max(1),
                max_bad_frames: self.limits.max_bad_frames.max(1),
            },
        );
        let (read, mut write) = tokio::io::split(stream);
        let mut frames = FramedRead::new(read, RequestCodec::new(self.limits.max_frame));
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                next = tokio::time::timeout(self.limits.idle_timeout, frames.next()) => next,
            };
            let raw = match next {
                Err(_) => {
                    FaceEvent::Idle {
                        terminal: id,
                        login: terminal.login.as_deref(),
                    }
                    .emit(&self.metrics);
                    return;
                }
                Ok(None | Some(Err(FramingError::Io(_)))) => return,
                Ok(Some(Err(error @ FramingError::TooLong { .. }))) => {
                    FaceEvent::TooLong {
                        terminal: id,
                        peer: &terminal.peer,
                        login: terminal.login.as_deref(),
                        problem: &error.to_string(),
                    }
                    .emit(&self.metrics);
                    return;
                }
                Ok(Some(Ok(raw))) => raw,
            };
            let step = session.on_frame(&raw);
            if let Some(outcome) = session.take_login() {
                match outcome {
                    session::LoginOutcome::Accepted(login) => {
                        FaceEvent::LoggedIn {
                            terminal: id,
                            login: &login,
                        }
                        .emit(&self.metrics);
                        terminal.login = Some(login);
                    }
                    session::LoginOutcome::Refused(login) => FaceEvent::LoginRefused {
                        terminal: id,
                        login: &login,
                        peer: &terminal.peer,
                    }
                    .emit(&self.metrics),
                }
            }
            let (bytes, close) = match step {
                Step::Send(bytes) => {
                    if bytes.starts_with(b"96") {
                        FaceEvent::ResendRequested { terminal: id }.emit(&self.metrics);
                    }
                    (Some(bytes), None)
                }
                Step::Replay(bytes) => {
                    FaceEvent::Replayed { terminal: id }.emit(&self.metrics);
                    (Some(bytes), None)
                }
                Step::SendAndClose(bytes, reason) => (Some(bytes), Some(reason)),
                Step::Close(reason) => (None, Some(reason)),
                Step::Handle(request) => {
                    FaceEvent::Request.emit(&self.metrics);
                    let response = self.handler.handle(&terminal, &request).await;
                    (Some(session.respond(&request, response)), None)
                }
            };
            if let Some(bytes) = bytes
                && (write.write_all(&bytes).await.is_err() || write.flush().await.is_err())
            {
                return;
            }
            if let Some(reason) = close {
                FaceEvent::Closed {
                    terminal: id,
                    peer: &terminal.peer,
                    login: terminal.login.as_deref(),
                    reason: &reason,
                }
                .emit(&self.metrics);
                let _ = write.shutdown().await;
                return;
            }
        }
    }
}
