//! The SIP2 client face (SC → ACS): a lock-step session, one task per connection, a
//! cloneable pool handle (PROTOCOLS.md §1.2, §1.4, §1.9).
//!
//! * [`Session`] is generic over any byte stream: it numbers requests (AY), asks for a
//!   resend with 97 when a response fails its checksum, resends when the ACS answers 96,
//!   and times every wait out.
//! * A connection task owns one session: it connects (TCP, optionally TLS), logs in (93),
//!   sends 99, keeps the session alive with 99 when idle, and reconnects with capped,
//!   jittered backoff.
//! * [`Sip2Pool`] spreads requests over a few connection tasks and reports the peer state.
//!
//! A checkout (11) or checkin (09) whose answer never came is **not** sent again: the task
//! reconnects, asks Item Information (17) and reports what the ACS says actually happened
//! ([`Completion::Recovered`]); if even that fails the error says the outcome is unknown.
//!
//! Transactions accepted while the ACS was offline are replayed with
//! [`Sip2Pool::checkout_offline`] and [`Sip2Pool::checkin_offline`]: no block `Y` (it already
//! happened) and the original dates, with the same recovery when the answer is lost.
//!
//! An idle connection watches its socket: when the ACS closes it, the pool goes offline (and
//! reconnects) at once instead of finding out with the next request, which would then be a
//! checkout of unknown outcome rather than one that was never sent.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::codec::{CodecError, Sip2Codec};
use crate::dialect::{Dialect, DialectError, NbDueDate, Sip2PeerConfig};
use crate::frame::{
    AcsStatus, BLANK_DATETIME, BlockPatron, Checkin, CheckinResponse, Checkout, CheckoutResponse,
    Command, EndPatronSession, EndSessionResponse, FeePaid, FeePaidResponse, Field, FieldId,
    FrameError, Hold, HoldResponse, ItemInformation, ItemInformationResponse, ItemStatusUpdate,
    ItemStatusUpdateResponse, Login, LoginResponse, Message, PatronEnable, PatronEnableResponse,
    PatronInformation, PatronInformationResponse, PatronStatus, PatronStatusResponse, Renew,
    RenewAll, RenewAllResponse, RenewResponse, RequestAcsResend, ScStatus, Sip2Message, Trailer,
    sip_datetime,
};
use crate::secret::Secret;
use crate::tls::{Sip2Tls, TlsError, host_of};

/// Request timeout before the ACS's 98 told us one, and when it says `000`/`999` (§1.4).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a bad-checksum response is asked for again (97) or a 96 is obeyed.
pub const MAX_RESENDS: u32 = 3;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_POOL_SIZE: usize = 2;
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Requests waiting per connection before callers feel back-pressure.
const QUEUE_DEPTH: usize = 32;

/// Why a SIP2 exchange failed. "The ACS said no" is not an error: it is a response with
/// `ok = false`. No variant carries a password.
#[derive(Debug, thiserror::Error)]
pub enum Sip2Error {
    /// The peer configuration is invalid.
    #[error(transparent)]
    Config(#[from] DialectError),
    /// TCP connect failed.
    #[error("cannot connect to SIP2 server {addr}")]
    Connect {
        /// Peer address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect took too long.
    #[error("connecting to SIP2 server {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// Peer address.
        addr: String,
        /// The limit.
        after: Duration,
    },
    /// TLS setup or handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ACS answered 94 with ok = 0.
    #[error(
        "SIP2 server refused the login of user {user:?} (94 ok=0); check ils.sip2.user and password"
    )]
    LoginRefused {
        /// CN sent.
        user: String,
    },
    /// No response in time.
    #[error("no response to {command} within {after:?}")]
    Timeout {
        /// The request.
        command: Command,
        /// The limit.
        after: Duration,
    },
    /// The ACS closed the connection.
    #[error("SIP2 server closed the connection while {command} was outstanding")]
    Disconnected {
        /// The request.
        command: Command,
    },
    /// Reading or writing the socket failed.
    #[error("SIP2 connection failed during {command}")]
    Io {
        /// The request.
        command: Command,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The response stayed unreadable after asking again with 97.
    #[error("unreadable response to {command} after {MAX_RESENDS} resend requests")]
    BadResponse {
        /// The request.
        command: Command,
        /// The last problem.
        #[source]
        source: FrameError,
    },
    /// The ACS kept answering 96.
    #[error("SIP2 server asked for {command} again {MAX_RESENDS} times (96); giving up")]
    ResendLimit {
        /// The request.
        command: Command,
    },
    /// The ACS answered with another message than the request calls for.
    #[error("expected {expected} in answer, got {found}")]
    UnexpectedResponse {
        /// What the request calls for.
        expected: Command,
        /// What came.
        found: Command,
    },
    /// A request could not be encoded (e.g. a delimiter inside a value).
    #[error("cannot build the SIP2 request")]
    Encode(#[source] FrameError),
    /// A response could not be read as its typed message.
    #[error("cannot read the SIP2 response")]
    Decode(#[source] FrameError),
    /// No connection to the ACS is up; the request was not sent.
    #[error("SIP2 server is offline (last error: {last_error}); request not sent")]
    Offline {
        /// Why the last connection attempt failed.
        last_error: String,
    },
    /// A checkout/checkin was sent, the line broke, and item information could not be
    /// obtained either: whether it happened is unknown. Ask again with 17 before retrying.
    #[error(
        "outcome of {command} for item {item} is unknown: {reason}; ask item information before retrying"
    )]
    OutcomeUnknown {
        /// The request.
        command: Command,
        /// AB of the item.
        item: String,
        /// What went wrong.
        reason: String,
    },
    /// The client is shutting down.
    #[error("SIP2 client is shutting down")]
    Shutdown,
}

impl Sip2Error {
    /// Whether the connection is unusable after this error (reconnect needed).
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::Disconnected { .. }
                | Self::Io { .. }
                | Self::BadResponse { .. }
                | Self::ResendLimit { .. }
                | Self::UnexpectedResponse { .. }
        )
    }
}

/// Monotonic counters of one peer, for the daemon's metrics endpoint.
#[derive(Debug, Default)]
pub struct Sip2Metrics {
    sessions_opened: AtomicU64,
    connect_failures: AtomicU64,
    connections_lost: AtomicU64,
    requests: AtomicU64,
    request_failures: AtomicU64,
    outcomes_recovered: AtomicU64,
    resends_requested: AtomicU64,
    resends_obeyed: AtomicU64,
}

/// A copy of [`Sip2Metrics`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sip2MetricsSnapshot {
    /// Sessions logged in.
    pub sessions_opened: u64,
    /// Connect or login attempts that failed.
    pub connect_failures: u64,
    /// Sessions that broke (timeout, closed line, unreadable answers).
    pub connections_lost: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests that ended in an error.
    pub request_failures: u64,
    /// Checkouts/checkins whose outcome was found through item information.
    pub outcomes_recovered: u64,
    /// 97 Request ACS Resend sent (unreadable response).
    pub resends_requested: u64,
    /// Requests sent again because the ACS answered 96.
    pub resends_obeyed: u64,
}

impl Sip2Metrics {
    /// The current values.
    pub fn snapshot(&self) -> Sip2MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Sip2MetricsSnapshot {
            sessions_opened: get(&self.sessions_opened),
            connect_failures: get(&self.connect_failures),
            connections_lost: get(&self.connections_lost),
            requests: get(&self.requests),
            request_failures: get(&self.request_failures),
            outcomes_recovered: get(&self.outcomes_recovered),
            resends_requested: get(&self.resends_requested),
            resends_obeyed: get(&self.resends_obeyed),
        }
    }
}

/// A significant occurrence: `emit` writes one structured log event and bumps its counter,
/// so logs and metrics never drift apart. Never carries message contents or passwords.
enum Sip2Event<'a> {
    SessionUp {
        peer: &'a str,
    },
    ConnectFailed {
        peer: &'a str,
        error: &'a Sip2Error,
    },
    ConnectionLost {
        peer: &'a str,
        error: &'a str,
    },
    RequestAnswered,
    RequestFailed {
        command: Command,
        error: &'a Sip2Error,
    },
    AnswerLost {
        command: Command,
        item: &'a str,
        error: &'a Sip2Error,
    },
    OutcomeRecovered {
        command: Command,
        item: &'a str,
    },
    ResendRequested {
        command: Command,
        problem: &'a FrameError,
    },
    ResendObeyed {
        command: Command,
    },
}

impl Sip2Event<'_> {
    fn emit(&self, metrics: &Sip2Metrics) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match self {
            Self::SessionUp { peer } => {
                bump(&metrics.sessions_opened);
                tracing::info!(peer = %peer, "SIP2 session up");
            }
            Self::ConnectFailed { peer, error } => {
                bump(&metrics.connect_failures);
                tracing::warn!(peer = %peer, error = %error_chain(*error), "SIP2 connect failed");
            }
            Self::ConnectionLost { peer, error } => {
                bump(&metrics.connections_lost);
                tracing::warn!(peer = %peer, error = %error, "SIP2 connection lost; reconnecting");
            }
            Self::RequestAnswered => bump(&metrics.requests),
            Self::RequestFailed { command, error } => {
                bump(&metrics.request_failures);
                tracing::debug!(%command, error = %error_chain(*error), "SIP2 request failed");
            }
            Self::AnswerLost {
                command,
                item,
                error,
            } => {
                tracing::warn!(%command, item = %item, error = %error_chain(*error), "SIP2 answer lost; asking item information instead of resending");
            }
            Self::OutcomeRecovered { command, item } => {
                bump(&metrics.outcomes_recovered);
                tracing::info!(%command, item = %item, "SIP2 outcome found through item information");
            }
            Self::ResendRequested { command, problem } => {
                bump(&metrics.resends_requested);
                tracing::debug!(%command, error = %problem, "SIP2 response unreadable; asking for it again (97)");
            }
            Self::ResendObeyed { command } => {
                bump(&metrics.resends_obeyed);
                tracing::debug!(%command, "SIP2 server asked for a resend (96)");
            }
        }
    }
}

/// Which way a frame went (for the `--raw` tap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// SC → ACS.
    Sent,
    /// ACS → SC.
    Received,
}

/// One frame as it went over the wire, for a tap (`rfidgw sip2 --raw`).
#[derive(Debug, Clone, Copy)]
pub struct WireFrame<'a> {
    /// Which way it went.
    pub direction: Direction,
    /// The bytes as sent or received, in the peer's character set, without the terminator.
    /// They hold passwords (CO, AC, AD): whoever shows them redacts those.
    pub bytes: &'a [u8],
    /// The message: as built before encoding (sent), as read (received); `None` when a
    /// received frame could not be read at all.
    pub message: Option<&'a Message>,
    /// Why a received frame was not accepted (a wrong checksum, …): a 97 asks for it again.
    pub rejected: Option<&'a FrameError>,
}

/// Sees every frame of a session, sent and received, also those rejected.
pub type Tap = Arc<dyn Fn(&WireFrame<'_>) + Send + Sync>;

/// One lock-step SIP2 session over any byte stream.
pub struct Session<S> {
    framed: Framed<S, Sip2Codec>,
    dialect: Dialect,
    sequence: u8,
    request_timeout: Duration,
    tap: Option<Tap>,
    metrics: Arc<Sip2Metrics>,
}

impl<S> std::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dialect", &self.dialect)
            .field("sequence", &self.sequence)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// A session over an open stream.
    pub fn new(stream: S, dialect: Dialect, request_timeout: Duration) -> Self {
        let codec = Sip2Codec::new(dialect.wire_format(), dialect.terminator, dialect.checksum);
        Self {
            framed: Framed::new(stream, codec),
            dialect,
            sequence: 0,
            request_timeout,
            tap: None,
            metrics: Arc::default(),
        }
    }

    /// Counts this session's events into `metrics`.
    pub fn set_metrics(&mut self, metrics: Arc<Sip2Metrics>) {
        self.metrics = metrics;
    }

    /// Lets `tap` see every frame.
    pub fn set_tap(&mut self, tap: Option<Tap>) {
        self.tap = tap;
    }

    /// Sets the maximum frame length.
    pub fn set_max_frame(&mut self, max: usize) {
        let codec = self.framed.codec().clone().with_max_len(max);
        *self.framed.codec_mut() = codec;
    }

    /// The per-request timeout in use.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sets the per-request timeout.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// Shows the tap the frame the codec read last, with what was made of it.
    fn tap_received(&self, message: Option<&Message>, rejected: Option<&FrameError>) {
        if let Some(tap) = &self.tap {
            tap(&WireFrame {
                direction: Direction::Received,
                bytes: self.framed.codec().last_frame(),
                message,
                rejected,
            });
        }
    }

    async fn send(&mut self, message: &Message, command: Command) -> Result<(), Sip2Error> {
        if let Some(tap) = &self.tap {
            // Encoded here as the codec will (deterministic), only when someone looks.
            let bytes = message
                .encode(&self.dialect.wire_format())
                .unwrap_or_default();
            tap(&WireFrame {
                direction: Direction::Sent,
                bytes: &bytes,
                message: Some(message),
                rejected: None,
            });
        }
        self.framed.send(message).await.map_err(|e| match e {
            CodecError::Io(source) => Sip2Error::Io { command, source },
            CodecError::Frame(e) => Sip2Error::Encode(e),
        })
    }

    /// Waits, while no request is outstanding, until the line breaks: the ACS closed it or
    /// reading failed; returns why. A frame that arrives unasked is dropped (an ACS only
    /// answers, §1.2), so it cannot pass for the answer to the next request. Cancel-safe:
    /// bytes already read stay in the codec's buffer.
    async fn idle_until_broken(&mut self) -> String {
        loop {
            match self.framed.next().await {
                None => return "SIP2 server closed the idle connection".to_owned(),
                Some(Err(CodecError::Io(error))) => {
                    return format!("reading the idle SIP2 connection failed: {error}");
                }
                Some(Err(CodecError::Frame(error))) => {
                    return format!("unreadable data on the idle SIP2 connection: {error}");
                }
                Some(Ok(Err(error))) => {
                    self.tap_received(None, Some(&error));
                    tracing::debug!(%error, "SIP2: unreadable unsolicited frame dropped");
                }
                Some(Ok(Ok(decoded))) => {
                    self.tap_received(Some(&decoded.message), None);
                    tracing::debug!(command = %decoded.message.command, "SIP2: unsolicited frame dropped");
                }
            }
        }
    }

    /// Sends one request and returns its response: 97 on an unreadable response, resend on
    /// 96, a timeout on every wait.
    pub async fn transact(&mut self, mut request: Message) -> Result<Message, Sip2Error> {
        let command = request.command;
        if self.dialect.error_detection {
            request.trailer = Trailer::Sequence(self.sequence);
            self.sequence = (self.sequence + 1) % 10;
        } else {
            request.trailer = Trailer::None;
        }
        // Refuse to send what cannot be encoded before anything goes on the wire.
        request
            .encode(&self.dialect.wire_format())
            .map_err(Sip2Error::Encode)?;
        self.send(&request, command).await?;
        let mut asked = 0;
        let mut resent = 0;
        loop {
            let next = tokio::time::timeout(self.request_timeout, self.framed.next()).await;
            let item = match next {
                Err(_) => {
                    return Err(Sip2Error::Timeout {
                        command,
                        after: self.request_timeout,
                    });
                }
                Ok(None) => return Err(Sip2Error::Disconnected { command }),
                Ok(Some(Err(CodecError::Io(source)))) => {
                    return Err(Sip2Error::Io { command, source });
                }
                Ok(Some(Err(CodecError::Frame(e)) | Ok(Err(e)))) => Err(e),
                Ok(Some(Ok(Ok(decoded)))) => Ok(decoded.message),
            };
            match &item {
                Ok(message) => self.tap_received(Some(message), None),
                Err(problem) => self.tap_received(None, Some(problem)),
            }
            match item {
                Err(problem) => {
                    if asked >= MAX_RESENDS {
                        return Err(Sip2Error::BadResponse {
                            command,
                            source: problem,
                        });
                    }
                    asked += 1;
                    Sip2Event::ResendRequested {
                        command,
                        problem: &problem,
                    }
                    .emit(&self.metrics);
                    let mut again = RequestAcsResend::default().to_message();
                    if self.dialect.error_detection {
                        again.trailer = Trailer::Checksum;
                    }
                    self.send(&again, command).await?;
                }
                Ok(response) => {
                    if response.command == Command::RequestScResend {
                        if resent >= MAX_RESENDS {
                            return Err(Sip2Error::ResendLimit { command });
                        }
                        resent += 1;
                        Sip2Event::ResendObeyed { command }.emit(&self.metrics);
                        self.send(&request, command).await?;
                        continue;
                    }
                    let expected = command.response();
                    if let Some(expected) = expected
                        && response.command != expected
                    {
                        return Err(Sip2Error::UnexpectedResponse {
                            expected,
                            found: response.command,
                        });
                    }
                    return Ok(response);
                }
            }
        }
    }

    /// Sends a typed request and reads its typed response.
    pub async fn call<Q: Sip2Message, R: Sip2Message>(
        &mut self,
        request: &Q,
    ) -> Result<R, Sip2Error> {
        let response = self.transact(request.to_message()).await?;
        R::from_message(&response).map_err(Sip2Error::Decode)
    }

    /// 93 Login; an `ok = 0` answer is [`Sip2Error::LoginRefused`].
    pub async fn login(
        &mut self,
        user: &str,
        password: &Secret,
        location: Option<&str>,
    ) -> Result<(), Sip2Error> {
        let login = Login {
            uid_algorithm: "0".into(),
            pwd_algorithm: "0".into(),
            login_user_id: user.to_owned(),
            login_password: password.clone(),
            location_code: location.map(str::to_owned),
            extra: Vec::new(),
        };
        let response: LoginResponse = self.call(&login).await?;
        if response.ok {
            Ok(())
        } else {
            Err(Sip2Error::LoginRefused {
                user: user.to_owned(),
            })
        }
    }

    /// 99 SC Status (protocol version 2.00, §1.4) → 98 ACS Status.
    pub async fn sc_status(&mut self) -> Result<AcsStatus, Sip2Error> {
        self.sc_status_answer().await.map(|(status, _)| status)
    }

    /// 99 → 98 like [`Session::sc_status`], with the 98 as it was read: its sequence
    /// number (AY) and every field in wire order, which the typed status does not keep.
    pub async fn sc_status_answer(&mut self) -> Result<(AcsStatus, Message), Sip2Error> {
        let request = ScStatus {
            status_code: 0,
            max_print_width: 80,
            protocol_version: "2.00".into(),
            extra: Vec::new(),
        };
        let response = self.transact(request.to_message()).await?;
        let status = AcsStatus::from_message(&response).map_err(Sip2Error::Decode)?;
        Ok((status, response))
    }
}

/// A byte stream the connector can hand out (TCP or TLS over TCP).
pub trait Sip2Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Sip2Stream for T {}

/// A boxed stream.
pub type BoxStream = Box<dyn Sip2Stream>;

/// Opens the byte stream to the ACS in place of TCP (tests use `tokio::io::duplex`).
pub type Dialer = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<BoxStream>> + Send>>
        + Send
        + Sync,
>;

/// Builds requests the way a peer wants them (AO, AC, nb due date per dialect).
#[derive(Debug, Clone)]
pub struct Requests {
    institution: String,
    terminal_password: Secret,
    location: String,
    dialect: Dialect,
}

/// Hold mode of a 15 Hold request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMode {
    /// `+` place.
    Add,
    /// `-` cancel.
    Delete,
    /// `*` change.
    Change,
}

/// `at` in the library's local time; UTC when the local offset cannot be found (as for
/// [`Requests`]' own "now"), and clamped to what `time` can represent.
fn local_time(at: SystemTime) -> time::OffsetDateTime {
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let utc = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => time::Duration::try_from(after)
            .ok()
            .and_then(|d| epoch.checked_add(d))
            .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc()),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(|d| epoch.checked_sub(d))
            .unwrap_or_else(|| time::PrimitiveDateTime::MIN.assume_utc()),
    };
    time::UtcOffset::local_offset_at(utc)
        .ok()
        .and_then(|offset| utc.checked_to_offset(offset))
        .unwrap_or(utc)
}

impl Requests {
    fn now() -> String {
        sip_datetime(
            time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
        )
    }

    /// `at` as an 18-character SIP2 date in the library's local time, like [`Self::now`].
    fn at(at: SystemTime) -> String {
        sip_datetime(local_time(at))
    }

    fn ac(&self) -> Option<Secret> {
        (self.dialect.always_send_ac_ad || !self.terminal_password.is_empty())
            .then(|| self.terminal_password.clone())
    }

    fn nb_due_date(&self, date: &str) -> String {
        match self.dialect.nb_due_date {
            NbDueDate::Blank => BLANK_DATETIME.to_owned(),
            NbDueDate::Filled => date.to_owned(),
        }
    }

    /// 23 Patron Status.
    pub fn patron_status(&self, patron: &str, pin: Option<&Secret>) -> Message {
        PatronStatus {
            language: 0,
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            terminal_password: self.terminal_password.clone(),
            patron_password: pin.cloned().unwrap_or_default(),
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 63 Patron Information; `summary` selects one list (§1.7 positions 0–5).
    pub fn patron_information(
        &self,
        patron: &str,
        pin: Option<&Secret>,
        summary: Option<usize>,
    ) -> Message {
        let (start_item, end_item) = summary_range(summary.is_some());
        let summary: String = (0..10)
            .map(|i| if Some(i) == summary { 'Y' } else { ' ' })
            .collect();
        PatronInformation {
            language: 0,
            transaction_date: Self::now(),
            summary,
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            terminal_password: self.ac(),
            patron_password: pin.cloned(),
            start_item,
            end_item,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 11 Checkout.
    pub fn checkout(
        &self,
        patron: &str,
        item: &str,
        pin: Option<&Secret>,
        fee_acknowledged: bool,
    ) -> Message {
        let date = Self::now();
        Checkout {
            sc_renewal_policy: true,
            no_block: false,
            nb_due_date: self.nb_due_date(&date),
            transaction_date: date,
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            item_identifier: item.to_owned(),
            terminal_password: self.terminal_password.clone(),
            item_properties: None,
            patron_password: pin.cloned(),
            fee_acknowledged: fee_acknowledged.then(|| "Y".into()),
            cancel: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 11 Checkout of a loan made while the ACS was offline: no block `Y` (the ACS must
    /// record it, not decide it), the original transaction date `at`, and as nb due date
    /// the due date the patron was given, `due`. The nb due date is filled whatever the
    /// dialect sends on online checkouts: it is what the spec has the field for. No PIN
    /// and no fee acknowledgement: the patron is no longer at the terminal.
    pub fn checkout_offline(
        &self,
        patron: &str,
        item: &str,
        at: SystemTime,
        due: SystemTime,
    ) -> Message {
        Checkout {
            sc_renewal_policy: true,
            no_block: true,
            nb_due_date: Self::at(due),
            transaction_date: Self::at(at),
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            item_identifier: item.to_owned(),
            terminal_password: self.terminal_password.clone(),
            item_properties: None,
            patron_password: None,
            fee_acknowledged: None,
            cancel: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 09 Checkin.
    pub fn checkin(&self, item: &str) -> Message {
        let date = Self::now();
        self.checkin_message(item, false, date.clone(), date)
    }

    /// 09 Checkin of a return taken while the ACS was offline: no block `Y`, and both the
    /// transaction date and the return date are the original moment `at` (so the ACS
    /// charges no fine for the days the ILS was unreachable).
    pub fn checkin_offline(&self, item: &str, at: SystemTime) -> Message {
        let date = Self::at(at);
        self.checkin_message(item, true, date.clone(), date)
    }

    fn checkin_message(
        &self,
        item: &str,
        no_block: bool,
        transaction_date: String,
        return_date: String,
    ) -> Message {
        Checkin {
            no_block,
            transaction_date,
            return_date,
            current_location: self.location.clone(),
            institution_id: self.institution.clone(),
            item_identifier: item.to_owned(),
            terminal_password: self.terminal_password.clone(),
            item_properties: None,
            cancel: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 17 Item Information.
    pub fn item_information(&self, item: &str) -> Message {
        ItemInformation {
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            item_identifier: item.to_owned(),
            terminal_password: self.ac(),
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 19 Item Status Update.
    pub fn item_status_update(&self, item: &str, properties: &str) -> Message {
        ItemStatusUpdate {
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            item_identifier: item.to_owned(),
            terminal_password: self.ac(),
            item_properties: properties.to_owned(),
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 29 Renew.
    pub fn renew(&self, patron: &str, item: &str, pin: Option<&Secret>) -> Message {
        let date = Self::now();
        Renew {
            third_party_allowed: false,
            no_block: false,
            nb_due_date: self.nb_due_date(&date),
            transaction_date: date,
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            patron_password: pin.cloned(),
            item_identifier: Some(item.to_owned()),
            title_identifier: None,
            terminal_password: self.ac(),
            item_properties: None,
            fee_acknowledged: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 65 Renew All.
    pub fn renew_all(&self, patron: &str, pin: Option<&Secret>) -> Message {
        RenewAll {
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            patron_password: pin.cloned(),
            terminal_password: self.ac(),
            fee_acknowledged: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 15 Hold.
    pub fn hold(
        &self,
        mode: HoldMode,
        patron: &str,
        item: &str,
        pickup: Option<&str>,
        pin: Option<&Secret>,
    ) -> Message {
        Hold {
            hold_mode: match mode {
                HoldMode::Add => "+",
                HoldMode::Delete => "-",
                HoldMode::Change => "*",
            }
            .into(),
            transaction_date: Self::now(),
            expiration_date: None,
            pickup_location: pickup.map(str::to_owned),
            hold_type: None,
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            patron_password: pin.cloned(),
            item_identifier: Some(item.to_owned()),
            title_identifier: None,
            terminal_password: self.ac(),
            fee_acknowledged: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 37 Fee Paid (fee type and payment type codes per §1.7).
    pub fn fee_paid(
        &self,
        patron: &str,
        amount: &str,
        currency: &str,
        fee_type: u32,
        payment_type: u32,
        pin: Option<&Secret>,
    ) -> Message {
        FeePaid {
            transaction_date: Self::now(),
            fee_type,
            payment_type,
            currency_type: currency.to_owned(),
            fee_amount: amount.to_owned(),
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            terminal_password: self.ac(),
            patron_password: pin.cloned(),
            fee_identifier: None,
            transaction_id: None,
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 35 End Patron Session.
    pub fn end_patron_session(&self, patron: &str, pin: Option<&Secret>) -> Message {
        EndPatronSession {
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            terminal_password: self.ac(),
            patron_password: pin.cloned(),
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 01 Block Patron.
    pub fn block_patron(&self, patron: &str, message: &str, card_retained: bool) -> Message {
        BlockPatron {
            card_retained,
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            blocked_card_message: message.to_owned(),
            patron_identifier: patron.to_owned(),
            terminal_password: self.terminal_password.clone(),
            extra: Vec::new(),
        }
        .to_message()
    }

    /// 25 Patron Enable.
    pub fn patron_enable(&self, patron: &str, pin: Option<&Secret>) -> Message {
        PatronEnable {
            transaction_date: Self::now(),
            institution_id: self.institution.clone(),
            patron_identifier: patron.to_owned(),
            terminal_password: self.ac(),
            patron_password: pin.cloned(),
            extra: Vec::new(),
        }
        .to_message()
    }
}

impl Requests {
    /// A request another SC sent, made fit for this peer (see [`Sip2Pool::relay`]).
    pub fn adapt(&self, mut message: Message) -> Message {
        let mut has_ac = false;
        for field in &mut message.fields {
            if field.id == FieldId::AO {
                field.value.clone_from(&self.institution);
            } else if field.id == FieldId::AC {
                self.terminal_password.expose().clone_into(&mut field.value);
                has_ac = true;
            }
        }
        // Requests whose spec layout carries AC: send it when this peer wants it always.
        let carries_ac = !matches!(
            message.command,
            Command::Login | Command::ScStatus | Command::RequestAcsResend
        );
        if carries_ac && !has_ac && self.ac().is_some() {
            message
                .fields
                .push(Field::new(FieldId::AC, self.terminal_password.expose()));
        }
        // nb due date (11, 29): fixed field 4 (after 1 + 1 + 18 characters).
        if matches!(message.command, Command::Checkout | Command::Renew)
            && self.dialect.nb_due_date == NbDueDate::Filled
        {
            let chars: Vec<char> = message.fixed.chars().collect();
            if chars.len() == 38 && chars[20..].iter().all(|c| *c == ' ') {
                let date: String = chars[2..20].iter().collect();
                let date = if date.trim().is_empty() {
                    Self::now()
                } else {
                    date
                };
                message.fixed = chars[..20].iter().collect::<String>() + &date;
            }
        }
        message
    }
}

/// BP/BQ: the first 20 entries of the selected list (only sent when a list is selected).
fn summary_range(selected: bool) -> (Option<String>, Option<String>) {
    if selected {
        (Some("1".into()), Some("20".into()))
    } else {
        (None, None)
    }
}

/// Opens sessions to one peer: TCP (optionally TLS), login, SC status.
#[derive(Clone)]
pub struct Connector {
    config: Sip2PeerConfig,
    dialect: Dialect,
    tls: Option<Sip2Tls>,
    requests: Requests,
    dialer: Option<Dialer>,
    metrics: Arc<Sip2Metrics>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("dialer", &self.dialer.is_some())
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Validates the configuration and prepares TLS.
    pub fn new(config: Sip2PeerConfig) -> Result<Self, Sip2Error> {
        config.validate()?;
        let dialect = config.dialect();
        let tls = match &config.tls {
            None => None,
            Some(tls) => Some(Sip2Tls::new(tls, host_of(&config.addr))?),
        };
        let requests = Requests {
            institution: config.institution.clone(),
            terminal_password: config.terminal_password.clone().unwrap_or_default(),
            location: config.location.clone().unwrap_or_default(),
            dialect: dialect.clone(),
        };
        Ok(Self {
            config,
            dialect,
            tls,
            requests,
            dialer: None,
            metrics: Arc::default(),
        })
    }

    /// Uses `dialer` instead of a TCP connection to `addr` (TLS still applies when set).
    #[must_use]
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = Some(dialer);
        self
    }

    async fn open(&self) -> Result<BoxStream, Sip2Error> {
        let addr = self.config.addr.clone();
        let connect_timeout = self
            .config
            .connect_timeout_ms
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_millis);
        let timed_out = || Sip2Error::ConnectTimeout {
            addr: addr.clone(),
            after: connect_timeout,
        };
        let failed = |source| Sip2Error::Connect {
            addr: addr.clone(),
            source,
        };
        let plain: BoxStream = if let Some(dial) = &self.dialer {
            tokio::time::timeout(connect_timeout, dial())
                .await
                .map_err(|_| timed_out())?
                .map_err(failed)?
        } else {
            let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr.as_str()))
                .await
                .map_err(|_| timed_out())?
                .map_err(failed)?;
            // Lock-step request/response: Nagle would only add latency.
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        };
        Ok(match &self.tls {
            None => plain,
            Some(tls) => Box::new(
                tokio::time::timeout(connect_timeout, tls.connect(plain))
                    .await
                    .map_err(|_| timed_out())??,
            ),
        })
    }

    /// The request builder for this peer.
    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    /// The resolved dialect.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// The peer address.
    pub fn addr(&self) -> &str {
        &self.config.addr
    }

    fn configured_timeout(&self) -> Option<Duration> {
        self.config.request_timeout_ms.map(Duration::from_millis)
    }

    /// Connects, logs in (when the dialect wants it) and exchanges 99/98. The request
    /// timeout comes from config, else from the 98 timeout period.
    pub async fn connect(
        &self,
        tap: Option<Tap>,
    ) -> Result<(Session<BoxStream>, AcsStatus), Sip2Error> {
        self.connect_answered(tap)
            .await
            .map(|(session, status, _)| (session, status))
    }

    /// [`Connector::connect`], also returning the 98 as it was read (see
    /// [`Session::sc_status_answer`]).
    pub async fn connect_answered(
        &self,
        tap: Option<Tap>,
    ) -> Result<(Session<BoxStream>, AcsStatus, Message), Sip2Error> {
        let stream = self.open().await?;
        let mut session = Session::new(
            stream,
            self.dialect.clone(),
            self.configured_timeout().unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        );
        if let Some(max) = self.config.max_frame {
            session.set_max_frame(max);
        }
        session.set_tap(tap);
        session.set_metrics(self.metrics.clone());
        if self.dialect.login_required {
            session
                .login(
                    &self.config.user,
                    &self.config.password,
                    self.config.location.as_deref(),
                )
                .await?;
        }
        let (status, answer) = session.sc_status_answer().await?;
        if self.configured_timeout().is_none() {
            session.set_request_timeout(timeout_from_acs(status.timeout_period));
        }
        Ok((session, status, answer))
    }
}

/// The request timeout an ACS's 98 timeout period (tenths of a second) asks for; `000`
/// (off-line) and `999` (unknown) fall back to the default (§1.4).
pub fn timeout_from_acs(period: u32) -> Duration {
    match period {
        0 | 999 => DEFAULT_REQUEST_TIMEOUT,
        tenths => Duration::from_millis(u64::from(tenths) * 100).max(Duration::from_millis(500)),
    }
}

/// State of a peer (or one connection) for the status API and systemd `STATUS=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Connecting or logging in.
    Connecting,
    /// Logged in and answering.
    Online,
    /// Down; waiting to retry.
    Offline,
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connecting => "connecting",
            Self::Online => "online",
            Self::Offline => "offline",
        })
    }
}

/// A peer's state with its last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Overall state: online when any connection is.
    pub state: PeerState,
    /// Connections online.
    pub online: usize,
    /// Connections configured.
    pub total: usize,
    /// The most recent connection error, if any.
    pub last_error: Option<String>,
}

/// One line for systemd `STATUS=` and logs: `online 2/2`, `connecting 0/2`,
/// `offline 0/2 (last error: …)`.
impl std::fmt::Display for PeerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.state, self.online, self.total)?;
        match (&self.state, &self.last_error) {
            (PeerState::Online, _) | (_, None) => Ok(()),
            (_, Some(error)) => write!(f, " (last error: {error})"),
        }
    }
}

#[derive(Debug, Clone)]
struct ConnStatus {
    state: PeerState,
    last_error: Option<(Instant, String)>,
}

/// What the connection task answers.
#[derive(Debug)]
enum Reply {
    Answered(Message),
    Recovered(Message),
}

struct Job {
    message: Message,
    /// AB of a checkout/checkin: never resent, recovered through 17.
    recover_item: Option<String>,
    reply: oneshot::Sender<Result<Reply, Sip2Error>>,
}

/// The answer to a checkout or checkin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion<T> {
    /// The ACS answered the request.
    Answered(T),
    /// The answer was lost (timeout or dropped line); item information afterwards says
    /// whether it happened (`applied`). For a checkout, applied = the item is charged
    /// (circulation status 04/05); for a checkin, applied = it is not charged.
    Recovered {
        /// The 18 response (boxed: it is much larger than most answers).
        item: Box<ItemInformationResponse>,
        /// Whether the transaction took effect.
        applied: bool,
    },
}

#[derive(Clone)]
struct Conn {
    tx: mpsc::Sender<Job>,
    status: Arc<StatusCell>,
}

struct StatusCell {
    inner: Mutex<ConnStatus>,
    changed: Arc<tokio::sync::Notify>,
}

impl StatusCell {
    fn get(&self) -> ConnStatus {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn state(&self) -> PeerState {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .state
    }
}

fn set_status(status: &StatusCell, state: PeerState, error: Option<String>) {
    {
        let mut s = status
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.state = state;
        if let Some(e) = error {
            s.last_error = Some((Instant::now(), e));
        }
    }
    status.changed.notify_waiters();
}

/// The error with its causes, one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }

    /// Capped exponential backoff with ±25 % jitter, so a fleet does not reconnect in step.
    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random_range(0.75..1.25);
        base.mul_f64(jitter).min(self.max)
    }
}

enum ServeEnd {
    Shutdown,
    /// Why the session broke (error chain text).
    Broken(String),
}

async fn connection_task(
    connector: Arc<Connector>,
    mut rx: mpsc::Receiver<Job>,
    status: Arc<StatusCell>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff {
        next: MIN_BACKOFF,
        max: connector
            .config
            .max_backoff_ms
            .map_or(DEFAULT_MAX_BACKOFF, Duration::from_millis)
            .max(MIN_BACKOFF),
    };
    let peer = connector.addr().to_owned();
    loop {
        set_status(&status, PeerState::Connecting, None);
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return,
            attempt = connector.connect(None) => attempt,
        };
        match attempt {
            Ok((mut session, _)) => {
                backoff.reset();
                set_status(&status, PeerState::Online, None);
                Sip2Event::SessionUp { peer: &peer }.emit(&connector.metrics);
                match serve(&connector, &mut session, &mut rx, &shutdown).await {
                    ServeEnd::Shutdown => return,
                    ServeEnd::Broken(error) => {
                        Sip2Event::ConnectionLost {
                            peer: &peer,
                            error: &error,
                        }
                        .emit(&connector.metrics);
                        set_status(&status, PeerState::Offline, Some(error));
                    }
                }
            }
            Err(error) => {
                Sip2Event::ConnectFailed {
                    peer: &peer,
                    error: &error,
                }
                .emit(&connector.metrics);
                set_status(&status, PeerState::Offline, Some(error_chain(&error)));
            }
        }
        let deadline = Instant::now() + backoff.step();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => break,
                job = rx.recv() => match job {
                    None => return,
                    Some(job) => {
                        let last_error = status
                            .get()
                            .last_error
                            .as_ref()
                            .map_or_else(|| "not connected yet".to_owned(), |(_, e)| e.clone());
                        let _ = job.reply.send(Err(Sip2Error::Offline { last_error }));
                    }
                },
            }
        }
    }
}

/// What woke an idle connection.
enum Idle {
    Shutdown,
    /// The ACS closed the line or reading it failed.
    Broken(String),
    Job(Option<Job>),
    KeepAlive,
}

async fn serve(
    connector: &Connector,
    session: &mut Session<BoxStream>,
    rx: &mut mpsc::Receiver<Job>,
    shutdown: &CancellationToken,
) -> ServeEnd {
    let keepalive = connector.dialect.keepalive;
    let mut idle_until = Instant::now() + keepalive;
    loop {
        // Biased: a line the ACS closed is noticed before a waiting job is sent down it, so
        // that job is answered "offline" (not sent) instead of "outcome unknown".
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => Idle::Shutdown,
            reason = session.idle_until_broken() => Idle::Broken(reason),
            job = rx.recv() => Idle::Job(job),
            () = tokio::time::sleep_until(idle_until) => Idle::KeepAlive,
        };
        match next {
            Idle::Shutdown | Idle::Job(None) => return ServeEnd::Shutdown,
            Idle::Broken(reason) => return ServeEnd::Broken(reason),
            Idle::KeepAlive => {
                // Keep the session alive (§1.4: 99 every few minutes).
                if let Err(error) = session.sc_status().await {
                    return ServeEnd::Broken(error_chain(&error));
                }
                idle_until = Instant::now() + keepalive;
            }
            Idle::Job(Some(job)) => {
                let command = job.message.command;
                match session.transact(job.message).await {
                    Ok(response) => {
                        Sip2Event::RequestAnswered.emit(&connector.metrics);
                        let _ = job.reply.send(Ok(Reply::Answered(response)));
                    }
                    Err(error) if error.breaks_connection() => {
                        let Some(item) = job.recover_item else {
                            Sip2Event::RequestFailed {
                                command,
                                error: &error,
                            }
                            .emit(&connector.metrics);
                            let text = error_chain(&error);
                            let _ = job.reply.send(Err(error));
                            return ServeEnd::Broken(text);
                        };
                        Sip2Event::AnswerLost {
                            command,
                            item: &item,
                            error: &error,
                        }
                        .emit(&connector.metrics);
                        match recover(connector, &item, shutdown).await {
                            Ok((fresh, info)) => {
                                *session = fresh;
                                Sip2Event::OutcomeRecovered {
                                    command,
                                    item: &item,
                                }
                                .emit(&connector.metrics);
                                let _ = job.reply.send(Ok(Reply::Recovered(info)));
                            }
                            Err(second) => {
                                let unknown = Sip2Error::OutcomeUnknown {
                                    command,
                                    item,
                                    reason: format!(
                                        "{}; then {}",
                                        error_chain(&error),
                                        error_chain(&second)
                                    ),
                                };
                                Sip2Event::RequestFailed {
                                    command,
                                    error: &unknown,
                                }
                                .emit(&connector.metrics);
                                let _ = job.reply.send(Err(unknown));
                                return ServeEnd::Broken(error_chain(&error));
                            }
                        }
                    }
                    Err(error) => {
                        Sip2Event::RequestFailed {
                            command,
                            error: &error,
                        }
                        .emit(&connector.metrics);
                        let _ = job.reply.send(Err(error));
                    }
                }
                idle_until = Instant::now() + keepalive;
            }
        }
    }
}

/// Reconnects once and asks 17 for the item.
async fn recover(
    connector: &Connector,
    item: &str,
    shutdown: &CancellationToken,
) -> Result<(Session<BoxStream>, Message), Sip2Error> {
    let attempt = async {
        let (mut session, _) = connector.connect(None).await?;
        let info = session
            .transact(connector.requests.item_information(item))
            .await?;
        Ok((session, info))
    };
    tokio::select! {
        () = shutdown.cancelled() => Err(Sip2Error::Shutdown),
        result = attempt => result,
    }
}

/// A lost checkout took effect when the item is charged: §1.7 circulation status 04
/// charged, 05 charged (not to be recalled).
fn charged(status: u32) -> bool {
    matches!(status, 4 | 5)
}

/// A lost checkin took effect when the item is known (not 01 other) and no longer charged.
fn discharged(status: u32) -> bool {
    !matches!(status, 1 | 4 | 5)
}

/// A small pool of SIP2 connections to one ACS; cheap to clone.
#[derive(Clone)]
pub struct Sip2Pool {
    connector: Arc<Connector>,
    conns: Arc<Vec<Conn>>,
    next: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Sip2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sip2Pool")
            .field("peer", &self.connector.addr())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Sip2Pool {
    /// Validates the config and starts `pool_size` connection tasks (on the current tokio
    /// runtime). They stop when `shutdown` is cancelled.
    pub fn start(config: Sip2PeerConfig, shutdown: CancellationToken) -> Result<Self, Sip2Error> {
        Ok(Self::start_with(Connector::new(config)?, shutdown))
    }

    /// Like [`Sip2Pool::start`] with a prepared connector (e.g. one with a test dialer).
    pub fn start_with(connector: Connector, shutdown: CancellationToken) -> Self {
        let size = connector
            .config
            .pool_size
            .unwrap_or(DEFAULT_POOL_SIZE)
            .max(1);
        let connector = Arc::new(connector);
        let changed = Arc::new(tokio::sync::Notify::new());
        let conns = (0..size)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                let status = Arc::new(StatusCell {
                    inner: Mutex::new(ConnStatus {
                        state: PeerState::Connecting,
                        last_error: None,
                    }),
                    changed: changed.clone(),
                });
                tokio::spawn(connection_task(
                    connector.clone(),
                    rx,
                    status.clone(),
                    shutdown.clone(),
                ));
                Conn { tx, status }
            })
            .collect();
        Self {
            connector,
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
            changed,
            shutdown,
        }
    }

    /// Stops every connection task of this pool (the token given to `start` does too).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until at least one connection is online (e.g. for readiness or after a
    /// reconnect); combine with `tokio::time::timeout`.
    pub async fn wait_online(&self) {
        self.wait_for(PeerState::Online).await;
    }

    /// Waits until the pool's overall state is `state`.
    pub async fn wait_for(&self, state: PeerState) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.status().state == state {
                return;
            }
            notified.await;
        }
    }

    /// Whether at least one connection is logged in (no I/O; a line the ACS closed counts
    /// as down as soon as the connection task sees it).
    pub fn is_online(&self) -> bool {
        self.conns
            .iter()
            .any(|c| c.status.state() == PeerState::Online)
    }

    /// The peer's state for the status API and systemd `STATUS=`.
    pub fn status(&self) -> PeerStatus {
        let snapshot: Vec<ConnStatus> = self.conns.iter().map(|c| c.status.get()).collect();
        let online = snapshot
            .iter()
            .filter(|s| s.state == PeerState::Online)
            .count();
        let state = if online > 0 {
            PeerState::Online
        } else if snapshot.iter().any(|s| s.state == PeerState::Connecting) {
            PeerState::Connecting
        } else {
            PeerState::Offline
        };
        let last_error = snapshot
            .iter()
            .filter_map(|s| s.last_error.clone())
            .max_by_key(|(at, _)| *at)
            .map(|(_, e)| e);
        PeerStatus {
            state,
            online,
            total: snapshot.len(),
            last_error,
        }
    }

    /// The request builder (institution, passwords and dialect of this peer).
    pub fn requests(&self) -> &Requests {
        self.connector.requests()
    }

    /// Counters of this peer (sessions, failures, recoveries, resends).
    pub fn metrics(&self) -> Sip2MetricsSnapshot {
        self.connector.metrics.snapshot()
    }

    /// An online connection (round robin), else one still connecting, else any.
    fn pick(&self) -> Option<&Conn> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let state = |c: &Conn| c.status.get().state;
        let order = (0..n).map(|i| (start + i) % n);
        order
            .clone()
            .find(|&i| {
                self.conns
                    .get(i)
                    .is_some_and(|c| state(c) == PeerState::Online)
            })
            .or_else(|| {
                order.clone().find(|&i| {
                    self.conns
                        .get(i)
                        .is_some_and(|c| state(c) == PeerState::Connecting)
                })
            })
            .and_then(|i| self.conns.get(i))
            .or_else(|| self.conns.first())
    }

    async fn submit(
        &self,
        message: Message,
        recover_item: Option<String>,
    ) -> Result<Reply, Sip2Error> {
        let (reply, rx) = oneshot::channel();
        self.pick()
            .ok_or(Sip2Error::Shutdown)?
            .tx
            .send(Job {
                message,
                recover_item,
                reply,
            })
            .await
            .map_err(|_| Sip2Error::Shutdown)?;
        rx.await.map_err(|_| Sip2Error::Shutdown)?
    }

    /// Sends any request and returns the raw response.
    pub async fn send(&self, message: Message) -> Result<Message, Sip2Error> {
        match self.submit(message, None).await? {
            Reply::Answered(m) | Reply::Recovered(m) => Ok(m),
        }
    }

    async fn typed<R: Sip2Message>(&self, message: Message) -> Result<R, Sip2Error> {
        let response = self.send(message).await?;
        R::from_message(&response).map_err(Sip2Error::Decode)
    }

    async fn circulation<R: Sip2Message>(
        &self,
        message: Message,
        item: &str,
        applied: fn(u32) -> bool,
    ) -> Result<Completion<R>, Sip2Error> {
        match self.submit(message, Some(item.to_owned())).await? {
            Reply::Answered(m) => R::from_message(&m)
                .map(Completion::Answered)
                .map_err(Sip2Error::Decode),
            Reply::Recovered(m) => {
                let item = ItemInformationResponse::from_message(&m).map_err(Sip2Error::Decode)?;
                let applied = applied(item.circulation_status);
                Ok(Completion::Recovered {
                    item: Box::new(item),
                    applied,
                })
            }
        }
    }

    /// Relays a request another SC sent (the server face): the message goes to this ACS
    /// with this peer's institution (AO) and terminal password (AC) in place of the
    /// kiosk's, AC added where this peer's dialect wants it, and a blank nb due date
    /// filled where this peer refuses blanks; every other field (the patron's PIN too)
    /// goes as it came, and the answer comes back as the ACS sent it. A checkout or checkin
    /// is never resent blindly: a lost answer is recovered through item information, as
    /// for [`Sip2Pool::checkout`].
    pub async fn relay(&self, message: Message) -> Result<Completion<Message>, Sip2Error> {
        let message = self.requests().adapt(message);
        let command = message.command;
        let item = matches!(command, Command::Checkout | Command::Checkin)
            .then(|| message.field(FieldId::AB).unwrap_or_default().to_owned());
        match self.submit(message, item).await? {
            Reply::Answered(m) => Ok(Completion::Answered(m)),
            Reply::Recovered(m) => {
                let item = ItemInformationResponse::from_message(&m).map_err(Sip2Error::Decode)?;
                let applied = if command == Command::Checkout {
                    charged(item.circulation_status)
                } else {
                    discharged(item.circulation_status)
                };
                Ok(Completion::Recovered {
                    item: Box::new(item),
                    applied,
                })
            }
        }
    }

    /// 99 → 98 ACS Status.
    pub async fn acs_status(&self) -> Result<AcsStatus, Sip2Error> {
        self.typed(
            ScStatus {
                status_code: 0,
                max_print_width: 80,
                protocol_version: "2.00".into(),
                extra: Vec::new(),
            }
            .to_message(),
        )
        .await
    }

    /// 23 → 24 Patron Status.
    pub async fn patron_status(
        &self,
        patron: &str,
        pin: Option<&Secret>,
    ) -> Result<PatronStatusResponse, Sip2Error> {
        self.typed(self.requests().patron_status(patron, pin)).await
    }

    /// 63 → 64 Patron Information; `summary` selects one item list (§1.7 positions 0–5).
    pub async fn patron_information(
        &self,
        patron: &str,
        pin: Option<&Secret>,
        summary: Option<usize>,
    ) -> Result<PatronInformationResponse, Sip2Error> {
        self.typed(self.requests().patron_information(patron, pin, summary))
            .await
    }

    /// 11 → 12 Checkout; never resent blindly (see [`Completion`]).
    pub async fn checkout(
        &self,
        patron: &str,
        item: &str,
        pin: Option<&Secret>,
        fee_acknowledged: bool,
    ) -> Result<Completion<CheckoutResponse>, Sip2Error> {
        let message = self
            .requests()
            .checkout(patron, item, pin, fee_acknowledged);
        self.circulation(message, item, charged).await
    }

    /// 11 → 12 Checkout of a loan made offline at `at`, due at `due` (no block `Y`, see
    /// [`Requests::checkout_offline`]); never resent blindly (see [`Completion`]).
    pub async fn checkout_offline(
        &self,
        patron: &str,
        item: &str,
        at: SystemTime,
        due: SystemTime,
    ) -> Result<Completion<CheckoutResponse>, Sip2Error> {
        let message = self.requests().checkout_offline(patron, item, at, due);
        self.circulation(message, item, charged).await
    }

    /// 09 → 10 Checkin; never resent blindly (see [`Completion`]).
    pub async fn checkin(&self, item: &str) -> Result<Completion<CheckinResponse>, Sip2Error> {
        let message = self.requests().checkin(item);
        self.circulation(message, item, discharged).await
    }

    /// 09 → 10 Checkin of a return taken offline at `at` (no block `Y`, see
    /// [`Requests::checkin_offline`]); never resent blindly (see [`Completion`]).
    pub async fn checkin_offline(
        &self,
        item: &str,
        at: SystemTime,
    ) -> Result<Completion<CheckinResponse>, Sip2Error> {
        let message = self.requests().checkin_offline(item, at);
        self.circulation(message, item, discharged).await
    }

    /// 17 → 18 Item Information.
    pub async fn item_information(&self, item: &str) -> Result<ItemInformationResponse, Sip2Error> {
        self.typed(self.requests().item_information(item)).await
    }

    /// 19 → 20 Item Status Update.
    pub async fn item_status_update(
        &self,
        item: &str,
        properties: &str,
    ) -> Result<ItemStatusUpdateResponse, Sip2Error> {
        self.typed(self.requests().item_status_update(item, properties))
            .await
    }

    /// 29 → 30 Renew.
    pub async fn renew(
        &self,
        patron: &str,
        item: &str,
        pin: Option<&Secret>,
    ) -> Result<RenewResponse, Sip2Error> {
        self.typed(self.requests().renew(patron, item, pin)).await
    }

    /// 65 → 66 Renew All.
    pub async fn renew_all(
        &self,
        patron: &str,
        pin: Option<&Secret>,
    ) -> Result<RenewAllResponse, Sip2Error> {
        self.typed(self.requests().renew_all(patron, pin)).await
    }

    /// 15 → 16 Hold.
    pub async fn hold(
        &self,
        mode: HoldMode,
        patron: &str,
        item: &str,
        pickup: Option<&str>,
        pin: Option<&Secret>,
    ) -> Result<HoldResponse, Sip2Error> {
        self.typed(self.requests().hold(mode, patron, item, pickup, pin))
            .await
    }

    /// 37 → 38 Fee Paid.
    pub async fn fee_paid(
        &self,
        patron: &str,
        amount: &str,
        currency: &str,
        fee_type: u32,
        payment_type: u32,
        pin: Option<&Secret>,
    ) -> Result<FeePaidResponse, Sip2Error> {
        self.typed(
            self.requests()
                .fee_paid(patron, amount, currency, fee_type, payment_type, pin),
        )
        .await
    }

    /// 35 → 36 End Patron Session.
    pub async fn end_patron_session(
        &self,
        patron: &str,
        pin: Option<&Secret>,
    ) -> Result<EndSessionResponse, Sip2Error> {
        self.typed(self.requests().end_patron_session(patron, pin))
            .await
    }

    /// 01 → 24 Block Patron.
    pub async fn block_patron(
        &self,
        patron: &str,
        message: &str,
        card_retained: bool,
    ) -> Result<PatronStatusResponse, Sip2Error> {
        self.typed(self.requests().block_patron(patron, message, card_retained))
            .await
    }

    /// 25 → 26 Patron Enable.
    pub async fn patron_enable(
        &self,
        patron: &str,
        pin: Option<&Secret>,
    ) -> Result<PatronEnableResponse, Sip2Error> {
        self.typed(self.requests().patron_enable(patron, pin)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Profile;
    use crate::frame::WireFormat;

    fn requests(profile: Profile) -> Requests {
        Requests {
            institution: "DEMO".into(),
            terminal_password: Secret::default(),
            location: "BR1".into(),
            dialect: Dialect::preset(profile),
        }
    }

    /// 2024-03-05 10:20:30 UTC and 2024-03-26 (three weeks later).
    fn moments() -> (SystemTime, SystemTime) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_634_030);
        (at, at + Duration::from_hours(21 * 24))
    }

    fn expected(at: SystemTime) -> String {
        let utc = time::OffsetDateTime::from(at);
        let offset = time::UtcOffset::local_offset_at(utc).unwrap_or(time::UtcOffset::UTC);
        sip_datetime(utc.to_offset(offset))
    }

    fn wire(message: &Message) -> String {
        String::from_utf8(message.encode(&WireFormat::default()).unwrap()).unwrap()
    }

    #[test]
    fn an_offline_checkout_says_no_block_and_carries_its_original_and_due_dates() {
        let (at, due) = moments();
        let message = requests(Profile::Generic).checkout_offline("P1001", "I0001", at, due);
        let frame = wire(&message);
        // 11, SC renewal policy Y, no block Y, transaction date, nb due date (§2.00 11).
        assert_eq!(frame.get(..4), Some("11YY"), "{frame}");
        assert_eq!(frame.get(4..22), Some(expected(at).as_str()), "{frame}");
        assert_eq!(frame.get(22..40), Some(expected(due).as_str()), "{frame}");
        assert!(frame.get(4..10) == Some("202403"), "{frame}");
        assert!(
            frame.contains("|AAP1001|") && frame.contains("|ABI0001|"),
            "{frame}"
        );
        assert!(!frame.contains("|AD"), "no PIN on a replay: {frame}");
        assert!(!frame.contains("|BO"), "no fee acknowledgement: {frame}");
        let typed = Checkout::from_message(&message).unwrap();
        assert!(typed.no_block);
        assert_eq!(typed.transaction_date, expected(at));
        assert_eq!(typed.nb_due_date, expected(due));
    }

    #[test]
    fn an_offline_checkout_sends_its_due_date_even_where_online_checkouts_leave_it_blank() {
        let (at, due) = moments();
        let koha = requests(Profile::Koha);
        let online = Checkout::from_message(&koha.checkout("P1001", "I0001", None, false)).unwrap();
        assert_eq!(online.nb_due_date, BLANK_DATETIME);
        assert!(!online.no_block);
        let offline =
            Checkout::from_message(&koha.checkout_offline("P1001", "I0001", at, due)).unwrap();
        assert_eq!(offline.nb_due_date, expected(due));
        assert!(offline.no_block);
    }

    #[test]
    fn an_offline_checkin_says_no_block_and_returns_on_its_original_date() {
        let (at, _) = moments();
        let message = requests(Profile::Generic).checkin_offline("I0004", at);
        let frame = wire(&message);
        // 09, no block Y, transaction date, return date (§2.00 09).
        assert_eq!(frame.get(..3), Some("09Y"), "{frame}");
        assert_eq!(frame.get(3..21), Some(expected(at).as_str()), "{frame}");
        assert_eq!(frame.get(21..39), Some(expected(at).as_str()), "{frame}");
        assert!(
            frame.contains("APBR1|") && frame.contains("|ABI0004|"),
            "{frame}"
        );
        let typed = Checkin::from_message(&message).unwrap();
        assert!(typed.no_block);
        assert_eq!(typed.return_date, typed.transaction_date);
    }

    #[test]
    fn online_checkins_and_checkouts_keep_no_block_off() {
        let r = requests(Profile::Generic);
        assert_eq!(wire(&r.checkin("I0001")).get(..3), Some("09N"));
        assert_eq!(
            wire(&r.checkout("P1001", "I0001", None, false)).get(..4),
            Some("11YN")
        );
    }

    #[test]
    fn moments_out_of_range_become_clamped_dates_not_panics() {
        let far = Duration::from_secs(1 << 50);
        let future = SystemTime::UNIX_EPOCH.checked_add(far).unwrap();
        let past = SystemTime::UNIX_EPOCH.checked_sub(far).unwrap();
        assert_eq!(Requests::at(future).len(), 18);
        assert!(Requests::at(future).starts_with("9999"));
        assert_eq!(Requests::at(past).len(), 18);
        let epoch = Requests::at(SystemTime::UNIX_EPOCH);
        assert!(
            epoch.starts_with("1970") || epoch.starts_with("1969"),
            "{epoch}"
        );
    }

    #[test]
    fn lost_checkouts_count_when_charged_and_lost_checkins_when_not() {
        for (status, out, back) in [
            (1, false, false),
            (3, false, true),
            (4, true, false),
            (5, true, false),
            (8, false, true),
            (10, false, true),
        ] {
            assert_eq!(
                (charged(status), discharged(status)),
                (out, back),
                "{status}"
            );
        }
    }
}
