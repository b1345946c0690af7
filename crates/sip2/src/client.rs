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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    Command, EndPatronSession, EndSessionResponse, FeePaid, FeePaidResponse, FrameError, Hold,
    HoldResponse, ItemInformation, ItemInformationResponse, ItemStatusUpdate,
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

/// Sees every frame of a session (already redacted when printed with `Display`).
pub type Tap = Arc<dyn Fn(Direction, &Message) + Send + Sync>;

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

    async fn send(&mut self, message: &Message, command: Command) -> Result<(), Sip2Error> {
        if let Some(tap) = &self.tap {
            tap(Direction::Sent, message);
        }
        self.framed.send(message).await.map_err(|e| match e {
            CodecError::Io(source) => Sip2Error::Io { command, source },
            CodecError::Frame(e) => Sip2Error::Encode(e),
        })
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
                    if let Some(tap) = &self.tap {
                        tap(Direction::Received, &response);
                    }
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
        self.call(&ScStatus {
            status_code: 0,
            max_print_width: 80,
            protocol_version: "2.00".into(),
            extra: Vec::new(),
        })
        .await
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

impl Requests {
    fn now() -> String {
        sip_datetime(
            time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
        )
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

    /// 09 Checkin.
    pub fn checkin(&self, item: &str) -> Message {
        Checkin {
            no_block: false,
            transaction_date: Self::now(),
            return_date: Self::now(),
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
        let status = session.sc_status().await?;
        if self.configured_timeout().is_none() {
            session.set_request_timeout(timeout_from_acs(status.timeout_period));
        }
        Ok((session, status))
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

async fn serve(
    connector: &Connector,
    session: &mut Session<BoxStream>,
    rx: &mut mpsc::Receiver<Job>,
    shutdown: &CancellationToken,
) -> ServeEnd {
    let keepalive = connector.dialect.keepalive;
    let mut idle_until = Instant::now() + keepalive;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return ServeEnd::Shutdown,
            () = tokio::time::sleep_until(idle_until) => {
                // Keep the session alive (§1.4: 99 every few minutes).
                if let Err(error) = session.sc_status().await {
                    return ServeEnd::Broken(error_chain(&error));
                }
                idle_until = Instant::now() + keepalive;
            }
            job = rx.recv() => {
                let Some(job) = job else { return ServeEnd::Shutdown };
                let command = job.message.command;
                match session.transact(job.message).await {
                    Ok(response) => {
                        Sip2Event::RequestAnswered.emit(&connector.metrics);
                        let _ = job.reply.send(Ok(Reply::Answered(response)));
                    }
                    Err(error) if error.breaks_connection() => {
                        let Some(item) = job.recover_item else {
                            Sip2Event::RequestFailed { command, error: &error }.emit(&connector.metrics);
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
                                Sip2Event::OutcomeRecovered { command, item: &item }.emit(&connector.metrics);
                                let _ = job.reply.send(Ok(Reply::Recovered(info)));
                            }
                            Err(second) => {
                                let unknown = Sip2Error::OutcomeUnknown {
                                    command,
                                    item,
                                    reason: format!("{}; then {}", error_chain(&error), error_chain(&second)),
                                };
                                Sip2Event::RequestFailed { command, error: &unknown }.emit(&connector.metrics);
                                let _ = job.reply.send(Err(unknown));
                                return ServeEnd::Broken(error_chain(&error));
                            }
                        }
                    }
                    Err(error) => {
                        Sip2Event::RequestFailed { command, error: &error }.emit(&connector.metrics);
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
        // §1.7 circulation status 04 charged, 05 charged (not to be recalled).
        self.circulation(message, item, |s| matches!(s, 4 | 5))
            .await
    }

    /// 09 → 10 Checkin; never resent blindly (see [`Completion`]).
    pub async fn checkin(&self, item: &str) -> Result<Completion<CheckinResponse>, Sip2Error> {
        let message = self.requests().checkin(item);
        // Known (not 01 other) and no longer charged.
        self.circulation(message, item, |s| !matches!(s, 1 | 4 | 5))
            .await
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
