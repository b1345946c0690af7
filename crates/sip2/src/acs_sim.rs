//! An ACS (library system) simulator for tests and the demo.
//!
//! It keeps patrons, items, sort bins (CL), holds, transit, blocks and fines in memory and
//! answers every 2.00 request. Like a careful server face (PROTOCOLS.md §1.9) it accepts CR
//! or CRLF, any field order and unknown fields; it mirrors the request's error-detection
//! mode (or forces it on or off), answers a bad checksum with 96, and replays its cached
//! response for 97 and for a duplicate request (same AY and checksum) without running it
//! again. Faults can be injected through [`SimControl`]: drop the connection before or
//! after processing, delay or withhold the answer, corrupt its checksum, answer 96, or send
//! fields in reverse order.
//!
//! For offline store-and-forward, [`SimControl::set_available`] takes the ACS off the
//! network and back, and [`SimControl::transactions`] lists every checkout, checkin and
//! renewal that was carried out, as received, so a test can prove each replayed
//! transaction reached the ILS exactly once.
//!
//! # No block (offline transactions)
//!
//! A checkout or checkin with no block `Y` already happened at the terminal while the ACS
//! was unreachable; the simulator records it rather than deciding it:
//!
//! * a no-block **checkout** is accepted for a blocked patron, without the PIN, without
//!   acknowledging a rental fee (the fee is still billed), for an item on hold for another
//!   patron (the hold stays), and for an item charged to another patron (that loan ends
//!   and the item is charged to the new patron, as an ILS does when a checkout overrides a
//!   stale loan). The due date is the request's nb due date when it is filled, else the
//!   usual 14 days. Only an unknown patron or an unknown item is refused: there is nobody
//!   or nothing to charge.
//! * a **checkin** of a known item is always accepted and uncharges it, no block or not;
//!   an unknown item is refused. The return date is logged, not used for fines.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use crate::encoding::Encoding;
use crate::frame::{
    AcsStatus, AnyMessage, CheckinResponse, CheckoutResponse, Command, EndSessionResponse,
    FeePaidResponse, HoldResponse, ItemInformationResponse, ItemStatusUpdateResponse,
    LoginResponse, Message, PatronEnableResponse, PatronInformationResponse, PatronStatusResponse,
    RenewAllResponse, RenewResponse, RequestScResend, Sip2Message, Trailer, WireFormat,
    sip_datetime,
};
use crate::secret::Secret;

/// Whether the simulator puts AY/AZ on its responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimErrorDetection {
    /// Mirror the request: trailer in, trailer out (pysip2 and SIPServer "auto").
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// The login the simulator accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimLogin {
    /// CN.
    pub user: String,
    /// CO.
    pub password: Secret,
}

/// Sort bins (CL) the simulator hands out on checkin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimBins {
    /// Ordinary returns without a bin of their own.
    pub default: String,
    /// Items with a hold waiting.
    pub holds: String,
    /// Items in transit to another branch.
    pub transit: String,
    /// Unknown or refused items.
    pub exception: String,
}

impl Default for SimBins {
    fn default() -> Self {
        Self {
            default: "A".into(),
            holds: "H".into(),
            transit: "T".into(),
            exception: "X".into(),
        }
    }
}

/// A patron.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPatron {
    /// AA.
    pub id: String,
    /// AE.
    pub name: String,
    /// AD PIN, when the patron has one.
    #[serde(default)]
    pub pin: Option<Secret>,
    /// Blocked (charge privileges denied).
    #[serde(default)]
    pub blocked: bool,
    /// Outstanding fines in cents.
    #[serde(default)]
    pub fine_cents: u32,
}

/// An item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimItem {
    /// AB.
    pub id: String,
    /// AJ.
    pub title: String,
    /// CK media type (§1.7), default `001` book.
    #[serde(default = "default_media")]
    pub media_type: String,
    /// AQ permanent location.
    #[serde(default)]
    pub location: String,
    /// CL sort bin for ordinary returns (default: `bins.default`).
    #[serde(default)]
    pub bin: Option<String>,
    /// Patron the item is charged to.
    #[serde(default)]
    pub charged_to: Option<String>,
    /// Patron the item is on hold for.
    #[serde(default)]
    pub hold_for: Option<String>,
    /// Branch the item must travel to after checkin (CT).
    #[serde(default)]
    pub transit_to: Option<String>,
    /// Rental fee in cents; checkout needs BO=Y when set.
    #[serde(default)]
    pub fee_cents: u32,
    /// CH item properties.
    #[serde(default)]
    pub properties: String,
    /// Recorded as missing: item information says so (circulation status 13) and a checkin
    /// is refused to the exception bin, for staff to look at the item that turned up.
    #[serde(default)]
    pub missing: bool,
}

fn default_media() -> String {
    "001".into()
}

/// The simulator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// AO institution id.
    #[serde(default = "default_institution")]
    pub institution: String,
    /// Accepted login; `None` accepts any.
    #[serde(default)]
    pub login: Option<SimLogin>,
    /// Close the connection when anything but 93 comes first (pysip2 behaviour).
    #[serde(default)]
    pub login_required: bool,
    /// Error detection on responses.
    #[serde(default)]
    pub error_detection: SimErrorDetection,
    /// Character set.
    #[serde(default)]
    pub encoding: Encoding,
    /// Variable-field delimiter (Koha/SIPServer and FOLIO allow another one per account).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// 98 timeout period in tenths of a second.
    #[serde(default = "default_timeout_period")]
    pub timeout_period: u32,
    /// Sort bins.
    #[serde(default)]
    pub bins: SimBins,
    /// Patrons.
    #[serde(default)]
    pub patrons: Vec<SimPatron>,
    /// Items.
    #[serde(default)]
    pub items: Vec<SimItem>,
}

fn default_institution() -> String {
    "DEMO".into()
}

fn default_delimiter() -> char {
    '|'
}

fn default_timeout_period() -> u32 {
    100
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            institution: default_institution(),
            login: None,
            login_required: false,
            error_detection: SimErrorDetection::Auto,
            encoding: Encoding::Utf8,
            delimiter: default_delimiter(),
            timeout_period: default_timeout_period(),
            bins: SimBins::default(),
            patrons: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl SimConfig {
    /// The demo library: login `demo`/`demo`, institution `DEMO`.
    ///
    /// Patrons: `P1001` Alice Reader (PIN 1234), `P1002` Bob Blocked (blocked), `P1003`
    /// Carol Fines (5.50 owed), `P1004` Dora Distant. Items: `I0001`–`I0003` on the shelf (bins A, A, B),
    /// `I0004` charged to P1001, `I0005` on hold for P1003, `I0006` in transit to `BR2`,
    /// `I0007` a DVD with a 2.00 rental fee; and the items on the demo's tags
    /// (config/demo.toml): `11223344` on the shelf, `11223355` charged to P1004,
    /// `1234567890` an interlibrary loan from DK-715700 charged to P1004, `X0099` recorded
    /// as missing (its checkin is refused to the exception bin).
    pub fn demo() -> Self {
        let item = |id: &str, title: &str| SimItem {
            id: id.into(),
            title: title.into(),
            media_type: default_media(),
            location: "Main Library".into(),
            bin: None,
            charged_to: None,
            hold_for: None,
            transit_to: None,
            fee_cents: 0,
            properties: String::new(),
            missing: false,
        };
        let patron = |id: &str, name: &str| SimPatron {
            id: id.into(),
            name: name.into(),
            pin: None,
            blocked: false,
            fine_cents: 0,
        };
        Self {
            login: Some(SimLogin {
                user: "demo".into(),
                password: Secret::new("demo"),
            }),
            patrons: vec![
                SimPatron {
                    pin: Some(Secret::new("1234")),
                    ..patron("P1001", "Alice Reader")
                },
                SimPatron {
                    blocked: true,
                    ..patron("P1002", "Bob Blocked")
                },
                SimPatron {
                    fine_cents: 550,
                    ..patron("P1003", "Carol Fines")
                },
                // Has the demo's borrowed items that walk past the gate.
                patron("P1004", "Dora Distant"),
            ],
            items: vec![
                item("I0001", "The Rust Programming Language"),
                item("I0002", "Moby Dick"),
                SimItem {
                    bin: Some("B".into()),
                    ..item("I0003", "A Field Guide to Birds")
                },
                SimItem {
                    charged_to: Some("P1001".into()),
                    ..item("I0004", "Dune")
                },
                SimItem {
                    hold_for: Some("P1003".into()),
                    ..item("I0005", "The Hobbit")
                },
                SimItem {
                    transit_to: Some("BR2".into()),
                    ..item("I0006", "World Atlas")
                },
                SimItem {
                    media_type: "005".into(),
                    fee_cents: 200,
                    ..item("I0007", "Documentary DVD")
                },
                // The items on the demo's tags (config/demo.toml), so that each can be
                // looked up with `rfidgw sip2 item` against the demo.
                item("11223344", "The Name of the Rose"),
                SimItem {
                    charged_to: Some("P1004".into()),
                    ..item("11223355", "Pride and Prejudice")
                },
                SimItem {
                    charged_to: Some("P1004".into()),
                    location: "Interlibrary loan (DK-715700)".into(),
                    ..item("1234567890", "Kongens Fald")
                },
                SimItem {
                    missing: true,
                    ..item("X0099", "Lost in the Stacks")
                },
            ],
            ..Self::default()
        }
    }
}

/// A fault to inject into the next matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without processing the request.
    DropBeforeProcessing,
    /// Process the request (a checkout is done!) and close the connection without answering.
    DropAfterProcessing,
    /// Answer after this delay.
    Delay(Duration),
    /// Never answer; keep the connection open.
    Silence,
    /// Send the answer with a wrong checksum (a 97 then gets the right bytes).
    BadChecksum,
    /// Answer 96 (request SC resend) without processing.
    AskResend,
    /// Send the variable fields in reverse order.
    OddFieldOrder,
}

#[derive(Debug, Default)]
struct Faults {
    queue: VecDeque<(Option<Command>, Fault)>,
}

#[derive(Debug)]
struct Item {
    config: SimItem,
    due_date: Option<String>,
}

/// How many transactions [`SimControl::transactions`] keeps (the oldest go first), so a
/// demo simulator running for weeks does not grow without bound.
pub const TRANSACTION_LOG_LIMIT: usize = 10_000;

/// One circulation transaction the simulator carried out (checkout, checkin, renew), with
/// its fields as received. A request answered from the replay cache (a duplicate or a 97)
/// or dropped before processing is not a transaction; one dropped after processing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTransaction {
    /// [`Command::Checkout`], [`Command::Checkin`] or [`Command::Renew`].
    pub command: Command,
    /// AB item identifier.
    pub item: String,
    /// AA patron identifier (`None` for a checkin).
    pub patron: Option<String>,
    /// No block `Y`: an offline transaction being replayed.
    pub no_block: bool,
    /// Transaction date, as received.
    pub transaction_date: String,
    /// Return date of a checkin, as received.
    pub return_date: Option<String>,
    /// nb due date of a checkout or renewal, as received.
    pub nb_due_date: Option<String>,
    /// Whether the simulator accepted it (the response's ok).
    pub ok: bool,
}

impl SimTransaction {
    /// The log entry for a request, before its outcome is known; `None` for requests that
    /// are not circulation transactions.
    fn of(request: &AnyMessage) -> Option<Self> {
        let entry = |command, item: &str, patron: Option<&str>, no_block, date: &str| Self {
            command,
            item: item.to_owned(),
            patron: patron.map(str::to_owned),
            no_block,
            transaction_date: date.to_owned(),
            return_date: None,
            nb_due_date: None,
            ok: false,
        };
        Some(match request {
            AnyMessage::Checkout(r) => Self {
                nb_due_date: Some(r.nb_due_date.clone()),
                ..entry(
                    Command::Checkout,
                    &r.item_identifier,
                    Some(&r.patron_identifier),
                    r.no_block,
                    &r.transaction_date,
                )
            },
            AnyMessage::Checkin(r) => Self {
                return_date: Some(r.return_date.clone()),
                ..entry(
                    Command::Checkin,
                    &r.item_identifier,
                    None,
                    r.no_block,
                    &r.transaction_date,
                )
            },
            AnyMessage::Renew(r) => Self {
                nb_due_date: Some(r.nb_due_date.clone()),
                ..entry(
                    Command::Renew,
                    r.item_identifier.as_deref().unwrap_or_default(),
                    Some(&r.patron_identifier),
                    r.no_block,
                    &r.transaction_date,
                )
            },
            _ => return None,
        })
    }
}

#[derive(Debug)]
struct State {
    config: SimConfig,
    patrons: BTreeMap<String, SimPatron>,
    items: BTreeMap<String, Item>,
    executed: HashMap<Command, u64>,
    connections: u64,
    transactions: VecDeque<SimTransaction>,
}

/// Handle to observe and steer a running simulator.
#[derive(Debug, Clone)]
pub struct SimControl {
    state: Arc<Mutex<State>>,
    faults: Arc<Mutex<Faults>>,
    /// Whether the ACS is reachable; connections watch it.
    available: Arc<tokio::sync::watch::Sender<bool>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that
    // matters to a simulator; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimControl {
    /// Applies `fault` to the next request with `command` (any command when `None`).
    pub fn inject(&self, command: Option<Command>, fault: Fault) {
        lock(&self.faults).queue.push_back((command, fault));
    }

    /// Who the item is charged to.
    pub fn charged_to(&self, item: &str) -> Option<String> {
        lock(&self.state)
            .items
            .get(item)
            .and_then(|i| i.config.charged_to.clone())
    }

    /// How many requests of this command were executed (replays and faults not counted).
    pub fn executed(&self, command: Command) -> u64 {
        lock(&self.state)
            .executed
            .get(&command)
            .copied()
            .unwrap_or(0)
    }

    /// Connections accepted so far (including those closed at once while unavailable).
    pub fn connections(&self) -> u64 {
        lock(&self.state).connections
    }

    /// Every checkout, checkin and renewal carried out so far, oldest first (at most
    /// [`TRANSACTION_LOG_LIMIT`]).
    pub fn transactions(&self) -> Vec<SimTransaction> {
        lock(&self.state).transactions.iter().cloned().collect()
    }

    /// Takes the ACS off the network (`false`) or puts it back (`true`). While unavailable,
    /// every open connection is closed (also one whose request is being answered, right
    /// after that answer), and each new connection is accepted and closed at once, before
    /// reading anything: a client sees its line drop and its login fail, as with an ILS
    /// that is down behind a live load balancer. The library's state is kept.
    pub fn set_available(&self, available: bool) {
        self.available.send_replace(available);
    }

    /// Whether the ACS is on the network (see [`SimControl::set_available`]).
    pub fn available(&self) -> bool {
        *self.available.borrow()
    }

    /// A patron's outstanding fines in cents.
    pub fn fine_cents(&self, patron: &str) -> Option<u32> {
        lock(&self.state).patrons.get(patron).map(|p| p.fine_cents)
    }

    /// Whether a patron is blocked.
    pub fn blocked(&self, patron: &str) -> Option<bool> {
        lock(&self.state).patrons.get(patron).map(|p| p.blocked)
    }

    /// Who holds the item.
    pub fn hold_for(&self, item: &str) -> Option<String> {
        lock(&self.state)
            .items
            .get(item)
            .and_then(|i| i.config.hold_for.clone())
    }

    fn take_fault(&self, command: Command) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults
            .queue
            .iter()
            .position(|(c, _)| c.is_none_or(|c| c == command))?;
        faults.queue.remove(index).map(|(_, f)| f)
    }
}

/// The ACS simulator.
#[derive(Debug, Clone)]
pub struct AcsSimulator {
    control: SimControl,
}

impl AcsSimulator {
    /// A simulator with this configuration.
    pub fn new(config: SimConfig) -> Self {
        let patrons = config
            .patrons
            .iter()
            .map(|p| (p.id.clone(), p.clone()))
            .collect();
        let items = config
            .items
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    Item {
                        due_date: i.charged_to.as_ref().map(|_| due_in_days(14)),
                        config: i.clone(),
                    },
                )
            })
            .collect();
        Self {
            control: SimControl {
                state: Arc::new(Mutex::new(State {
                    config,
                    patrons,
                    items,
                    executed: HashMap::new(),
                    connections: 0,
                    transactions: VecDeque::new(),
                })),
                faults: Arc::new(Mutex::new(Faults::default())),
                available: Arc::new(tokio::sync::watch::Sender::new(true)),
            },
        }
    }

    /// The demo simulator ([`SimConfig::demo`]).
    pub fn demo() -> Self {
        Self::new(SimConfig::demo())
    }

    /// The control handle.
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Binds a TCP listener (use `127.0.0.1:0` in tests) and returns its address and the
    /// future that serves it until `shutdown`.
    pub async fn bind(
        self,
        addr: &str,
        shutdown: CancellationToken,
    ) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((local, self.run(listener, shutdown)))
    }

    /// Accepts connections until `shutdown`; one task per connection.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let sim = self.clone();
                        let token = shutdown.clone();
                        tokio::spawn(async move {
                            tracing::debug!(%peer, "ACS simulator: connection");
                            tokio::select! {
                                () = token.cancelled() => {}
                                () = sim.serve(stream) => {}
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ACS simulator: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Serves one connection (any byte stream) until the peer closes it or a fault drops it.
    // One linear request loop (decode, resend/replay, faults, answer) reads best in one place.
    #[allow(clippy::too_many_lines)]
    pub async fn serve<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (config_format, login_required, error_detection) = {
            let mut state = lock(&self.control.state);
            state.connections += 1;
            (
                WireFormat {
                    encoding: state.config.encoding,
                    delimiter: state.config.delimiter,
                },
                state.config.login_required,
                state.config.error_detection,
            )
        };
        let mut available = self.control.available.subscribe();
        if !*available.borrow_and_update() {
            tracing::debug!("ACS simulator: unavailable, closing a new connection");
            return;
        }
        let (read, mut write) = tokio::io::split(stream);
        let mut frames = FramedRead::new(
            read,
            Sip2Codec::new(config_format, Terminator::Cr, ChecksumPolicy::Strict),
        );
        let mut logged_in = false;
        let mut last_request: Option<Vec<u8>> = None;
        let mut last_response: Option<Vec<u8>> = None;
        loop {
            let next = tokio::select! {
                next = frames.next() => next,
                () = until_unavailable(&mut available) => {
                    tracing::debug!("ACS simulator: unavailable, closing a connection");
                    return;
                }
            };
            let Some(item) = next else { return };
            let decoded = match item {
                Err(_) => return,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "ACS simulator: bad frame, asking for a resend");
                    let resend = Self::encode_resend(error_detection, config_format);
                    if write.write_all(&resend).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Ok(decoded)) => decoded,
            };
            let request = decoded.message;
            if request.command == Command::RequestAcsResend {
                if let Some(bytes) = &last_response
                    && write.write_all(bytes).await.is_err()
                {
                    return;
                }
                continue;
            }
            let raw = request.encode(&config_format).unwrap_or_default();
            if request.trailer != Trailer::None
                && last_request.as_ref() == Some(&raw)
                && let Some(bytes) = &last_response
            {
                // Duplicate (same AY and checksum): replay, do not run it again (§1.2).
                if write.write_all(bytes).await.is_err() {
                    return;
                }
                continue;
            }
            if login_required && !logged_in && request.command != Command::Login {
                tracing::debug!("ACS simulator: request before login, closing");
                return;
            }
            let fault = self.control.take_fault(request.command);
            match fault {
                Some(Fault::DropBeforeProcessing) => return,
                Some(Fault::Silence) => continue,
                Some(Fault::AskResend) => {
                    let resend = Self::encode_resend(error_detection, config_format);
                    if write.write_all(&resend).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ => {}
            }
            let Some(response) = self.respond(&request) else {
                continue;
            };
            if request.command == Command::Login {
                logged_in = response.fixed == "1";
            }
            let mut response = response;
            if fault == Some(Fault::OddFieldOrder) {
                response.fields.reverse();
            }
            response.trailer = match (error_detection, request.trailer) {
                (SimErrorDetection::Off, _) | (SimErrorDetection::Auto, Trailer::None) => {
                    Trailer::None
                }
                (_, Trailer::Sequence(seq)) => Trailer::Sequence(seq),
                (SimErrorDetection::On | SimErrorDetection::Auto, _) => Trailer::Sequence(0),
            };
            let Ok(mut bytes) = response.encode(&config_format) else {
                continue;
            };
            bytes.push(b'\r');
            last_request = Some(raw);
            last_response = Some(bytes.clone());
            match fault {
                Some(Fault::DropAfterProcessing) => return,
                Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
                Some(Fault::BadChecksum) if response.trailer != Trailer::None => {
                    // Flip the last checksum digit: a strict client asks again with 97.
                    if let Some(digit) = bytes.len().checked_sub(2).and_then(|i| bytes.get_mut(i)) {
                        *digit = if *digit == b'0' { b'1' } else { b'0' };
                    }
                }
                _ => {}
            }
            if write.write_all(&bytes).await.is_err() {
                return;
            }
            if request.command == Command::Login && !logged_in && login_required {
                return;
            }
        }
    }

    fn encode_resend(mode: SimErrorDetection, format: WireFormat) -> Vec<u8> {
        let mut message = RequestScResend::default().to_message();
        if mode != SimErrorDetection::Off {
            message.trailer = Trailer::Checksum;
        }
        let mut bytes = message.encode(&format).unwrap_or_else(|_| b"96".to_vec());
        bytes.push(b'\r');
        bytes
    }

    /// Runs one request against the in-memory library and builds the response.
    fn respond(&self, request: &Message) -> Option<Message> {
        let typed = match AnyMessage::from_message(request) {
            Ok(typed) => typed,
            Err(error) => {
                tracing::debug!(%error, "ACS simulator: cannot read request");
                return Some(RequestScResend::default().to_message());
            }
        };
        let entry = SimTransaction::of(&typed);
        let mut state = lock(&self.control.state);
        *state.executed.entry(request.command).or_default() += 1;
        let response = state.handle(typed)?;
        if let Some(mut entry) = entry {
            entry.ok = match &response {
                AnyMessage::CheckoutResponse(r) => r.ok,
                AnyMessage::CheckinResponse(r) => r.ok,
                AnyMessage::RenewResponse(r) => r.ok,
                _ => false,
            };
            if state.transactions.len() >= TRANSACTION_LOG_LIMIT {
                state.transactions.pop_front();
            }
            state.transactions.push_back(entry);
        }
        Some(response.to_message())
    }
}

/// Returns once the simulator is (or becomes) unavailable.
async fn until_unavailable(available: &mut tokio::sync::watch::Receiver<bool>) {
    if available.wait_for(|up| !*up).await.is_err() {
        // The control handle is gone (it cannot be while serving): never unavailable.
        std::future::pending::<()>().await;
    }
}

fn now() -> String {
    sip_datetime(time::OffsetDateTime::now_utc())
}

fn due_in_days(days: i64) -> String {
    sip_datetime(time::OffsetDateTime::now_utc() + time::Duration::days(days))
}

fn cents(value: u32) -> String {
    format!("{}.{:02}", value / 100, value % 100)
}

fn parse_cents(amount: &str) -> u32 {
    let (whole, frac) = amount
        .trim()
        .split_once('.')
        .unwrap_or((amount.trim(), "0"));
    let whole: u32 = whole.parse().unwrap_or(0);
    let frac: u32 = format!("{frac:0<2}")
        .get(..2)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    whole.saturating_mul(100).saturating_add(frac)
}

fn status_flags(patron: Option<&SimPatron>) -> String {
    let mut flags = [' '; 14];
    match patron {
        None => flags = ['Y'; 14],
        Some(p) => {
            if p.blocked {
                // Charge, renewal, recall and hold privileges denied (§1.7 positions 0–3).
                flags[..4].fill('Y');
            }
            if p.fine_cents > 0 {
                flags[10] = 'Y';
            }
        }
    }
    flags.iter().collect()
}

impl State {
    fn patron(&self, id: &str) -> Option<&SimPatron> {
        self.patrons.get(id)
    }

    fn password_ok(patron: &SimPatron, given: Option<&Secret>) -> Option<String> {
        given.map(|g| {
            let ok = patron
                .pin
                .as_ref()
                .is_none_or(|pin| pin.expose() == g.expose());
            if ok { "Y" } else { "N" }.to_owned()
        })
    }

    #[allow(clippy::too_many_lines)]
    fn handle(&mut self, request: AnyMessage) -> Option<AnyMessage> {
        let institution = self.config.institution.clone();
        Some(match request {
            AnyMessage::Login(login) => {
                let ok = self.config.login.as_ref().is_none_or(|l| {
                    l.user == login.login_user_id
                        && l.password.expose() == login.login_password.expose()
                });
                AnyMessage::LoginResponse(LoginResponse {
                    ok,
                    ..Default::default()
                })
            }
            AnyMessage::ScStatus(_) => AnyMessage::AcsStatus(AcsStatus {
                online_status: true,
                checkin_ok: true,
                checkout_ok: true,
                acs_renewal_policy: true,
                status_update_ok: true,
                offline_ok: false,
                timeout_period: self.config.timeout_period,
                retries_allowed: 3,
                date_time_sync: now(),
                protocol_version: "2.00".into(),
                institution_id: institution,
                library_name: Some("rfidgw ACS simulator".into()),
                // All 16 messages supported (§1.7 BX positions 0–15).
                supported_messages: "YYYYYYYYYYYYYYYY".into(),
                ..Default::default()
            }),
            AnyMessage::PatronStatus(r) => {
                let patron = self.patron(&r.patron_identifier);
                AnyMessage::PatronStatusResponse(PatronStatusResponse {
                    patron_status: status_flags(patron),
                    language: 1,
                    transaction_date: now(),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    personal_name: patron.map(|p| p.name.clone()).unwrap_or_default(),
                    valid_patron: Some(if patron.is_some() { "Y" } else { "N" }.into()),
                    valid_patron_password: patron.and_then(|p| {
                        Self::password_ok(
                            p,
                            (!r.patron_password.is_empty()).then_some(&r.patron_password),
                        )
                    }),
                    currency_type: Some("USD".into()),
                    fee_amount: patron.map(|p| cents(p.fine_cents)),
                    screen_message: if patron.is_none() {
                        vec!["Unknown patron".into()]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                })
            }
            AnyMessage::PatronInformation(r) => {
                let patron = self.patron(&r.patron_identifier).cloned();
                let charged: Vec<String> = self
                    .items
                    .values()
                    .filter(|i| i.config.charged_to.as_deref() == Some(&r.patron_identifier))
                    .map(|i| i.config.id.clone())
                    .collect();
                let holds: Vec<String> = self
                    .items
                    .values()
                    .filter(|i| i.config.hold_for.as_deref() == Some(&r.patron_identifier))
                    .map(|i| i.config.id.clone())
                    .collect();
                let summary: Vec<char> = r.summary.chars().collect();
                let wants = |pos: usize| summary.get(pos) == Some(&'Y');
                AnyMessage::PatronInformationResponse(PatronInformationResponse {
                    patron_status: status_flags(patron.as_ref()),
                    language: 1,
                    transaction_date: now(),
                    hold_items_count: holds.len() as u32,
                    charged_items_count: charged.len() as u32,
                    fine_items_count: u32::from(patron.as_ref().is_some_and(|p| p.fine_cents > 0)),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    personal_name: patron.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                    valid_patron: Some(if patron.is_some() { "Y" } else { "N" }.into()),
                    valid_patron_password: patron
                        .as_ref()
                        .and_then(|p| Self::password_ok(p, r.patron_password.as_ref())),
                    currency_type: Some("USD".into()),
                    fee_amount: patron.as_ref().map(|p| cents(p.fine_cents)),
                    hold_items: if wants(0) { holds } else { vec![] },
                    charged_items: if wants(2) { charged } else { vec![] },
                    ..Default::default()
                })
            }
            AnyMessage::Checkout(r) => {
                let date = now();
                let mut response = CheckoutResponse {
                    ok: false,
                    renewal_ok: false,
                    magnetic_media: Some(false),
                    desensitize: Some(false),
                    transaction_date: date,
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    item_identifier: r.item_identifier.clone(),
                    ..Default::default()
                };
                let refusal = match (
                    self.patrons.get(&r.patron_identifier),
                    self.items.get(&r.item_identifier),
                ) {
                    (None, _) => Some("Unknown patron"),
                    (_, None) => Some("Unknown item"),
                    // No block: it already happened at the terminal; record it (module docs).
                    _ if r.no_block => None,
                    (Some(p), _) if p.blocked => Some("Patron blocked"),
                    (Some(p), Some(_))
                        if p.pin.is_some()
                            && r.patron_password
                                .as_ref()
                                .is_some_and(|g| Some(g) != p.pin.as_ref()) =>
                    {
                        Some("Wrong patron password")
                    }
                    (_, Some(i))
                        if i.config
                            .charged_to
                            .as_ref()
                            .is_some_and(|c| c != &r.patron_identifier) =>
                    {
                        Some("Item charged to another patron")
                    }
                    (_, Some(i))
                        if i.config
                            .hold_for
                            .as_ref()
                            .is_some_and(|h| h != &r.patron_identifier) =>
                    {
                        Some("Item on hold for another patron")
                    }
                    (_, Some(i))
                        if i.config.fee_cents > 0 && r.fee_acknowledged.as_deref() != Some("Y") =>
                    {
                        response.fee_type = Some("06".into());
                        response.currency_type = Some("USD".into());
                        response.fee_amount = Some(cents(i.config.fee_cents));
                        Some("Rental fee must be acknowledged")
                    }
                    _ => None,
                };
                if let Some(item) = self.items.get_mut(&r.item_identifier) {
                    response.title_identifier.clone_from(&item.config.title);
                    response.media_type = Some(item.config.media_type.clone());
                    if refusal.is_none() {
                        let previous = item.config.charged_to.take();
                        response.renewal_ok = previous.as_deref() == Some(&r.patron_identifier);
                        if previous.is_some() && !response.renewal_ok {
                            // Only a no-block checkout gets here: the stale loan ends.
                            response.screen_message.push("Previous loan ended".into());
                        }
                        item.config.charged_to = Some(r.patron_identifier.clone());
                        if item.config.hold_for.as_deref() == Some(&r.patron_identifier) {
                            item.config.hold_for = None;
                        } else if item.config.hold_for.is_some() {
                            response
                                .screen_message
                                .push("Item on hold for another patron".into());
                        }
                        item.config.transit_to = None;
                        let given = r.nb_due_date.trim();
                        let due = if r.no_block && !given.is_empty() {
                            r.nb_due_date.clone()
                        } else {
                            due_in_days(14)
                        };
                        item.due_date = Some(due.clone());
                        response.due_date = due;
                        response.ok = true;
                        response.desensitize = Some(true);
                        if item.config.fee_cents > 0
                            && let Some(p) = self.patrons.get_mut(&r.patron_identifier)
                        {
                            p.fine_cents = p.fine_cents.saturating_add(item.config.fee_cents);
                        }
                    }
                }
                if let Some(reason) = refusal {
                    response.screen_message = vec![reason.into()];
                }
                AnyMessage::CheckoutResponse(response)
            }
            AnyMessage::Checkin(r) => {
                let bins = self.config.bins.clone();
                let mut response = CheckinResponse {
                    ok: false,
                    resensitize: false,
                    magnetic_media: Some(false),
                    alert: true,
                    transaction_date: now(),
                    institution_id: institution,
                    item_identifier: r.item_identifier.clone(),
                    ..Default::default()
                };
                let hold_names: HashMap<String, String> = self
                    .patrons
                    .values()
                    .map(|p| (p.id.clone(), p.name.clone()))
                    .collect();
                match self.items.get_mut(&r.item_identifier) {
                    None => {
                        response.sort_bin = Some(bins.exception);
                        response.alert_type = Some("99".into());
                        response.screen_message = vec!["Unknown item".into()];
                    }
                    Some(item) if item.config.missing => {
                        response.sort_bin = Some(bins.exception);
                        response.alert_type = Some("99".into());
                        response.title_identifier = Some(item.config.title.clone());
                        response.screen_message =
                            vec!["Item is recorded as missing: give it to staff".into()];
                    }
                    Some(item) => {
                        response.ok = true;
                        response.resensitize = true;
                        response.alert = false;
                        response.patron_identifier = item.config.charged_to.take();
                        item.due_date = None;
                        response
                            .permanent_location
                            .clone_from(&item.config.location);
                        response.title_identifier = Some(item.config.title.clone());
                        response.media_type = Some(item.config.media_type.clone());
                        if let Some(holder) = &item.config.hold_for {
                            response.alert = true;
                            response.alert_type = Some("01".into());
                            response.sort_bin = Some(bins.holds);
                            response.hold_patron_id = Some(holder.clone());
                            response.hold_patron_name = hold_names.get(holder).cloned();
                        } else if let Some(branch) = &item.config.transit_to {
                            response.alert = true;
                            response.alert_type = Some("04".into());
                            response.sort_bin = Some(bins.transit);
                            response.destination_location = Some(branch.clone());
                        } else {
                            response.sort_bin =
                                Some(item.config.bin.clone().unwrap_or(bins.default));
                        }
                    }
                }
                AnyMessage::CheckinResponse(response)
            }
            AnyMessage::ItemInformation(r) => {
                let mut response = ItemInformationResponse {
                    circulation_status: 1,
                    security_marker: 2,
                    fee_type: 1,
                    transaction_date: now(),
                    item_identifier: r.item_identifier.clone(),
                    ..Default::default()
                };
                match self.items.get(&r.item_identifier) {
                    None => response.screen_message = vec!["Unknown item".into()],
                    Some(item) => {
                        // §1.7: 13 missing, 04 charged, 08 waiting on hold shelf, 10 in
                        // transit, 03 available.
                        response.circulation_status = if item.config.missing {
                            13
                        } else if item.config.charged_to.is_some() {
                            4
                        } else if item.config.hold_for.is_some() {
                            8
                        } else if item.config.transit_to.is_some() {
                            10
                        } else {
                            3
                        };
                        response.title_identifier.clone_from(&item.config.title);
                        response.due_date.clone_from(&item.due_date);
                        response.media_type = Some(item.config.media_type.clone());
                        response.permanent_location = Some(item.config.location.clone());
                        response.current_location = Some(item.config.location.clone());
                        response
                            .destination_location
                            .clone_from(&item.config.transit_to);
                        response.hold_queue_length =
                            Some(u32::from(item.config.hold_for.is_some()).to_string());
                        if !item.config.properties.is_empty() {
                            response.item_properties = Some(item.config.properties.clone());
                        }
                        if item.config.fee_cents > 0 {
                            response.fee_type = 6;
                            response.currency_type = Some("USD".into());
                            response.fee_amount = Some(cents(item.config.fee_cents));
                        }
                    }
                }
                AnyMessage::ItemInformationResponse(response)
            }
            AnyMessage::ItemStatusUpdate(r) => {
                let item = self.items.get_mut(&r.item_identifier);
                let ok = item.is_some();
                let title = item.map(|i| {
                    i.config.properties.clone_from(&r.item_properties);
                    i.config.title.clone()
                });
                AnyMessage::ItemStatusUpdateResponse(ItemStatusUpdateResponse {
                    item_properties_ok: ok,
                    transaction_date: now(),
                    item_identifier: r.item_identifier.clone(),
                    title_identifier: title,
                    item_properties: ok.then(|| r.item_properties.clone()),
                    ..Default::default()
                })
            }
            AnyMessage::Renew(r) => {
                let item_id = r.item_identifier.clone().unwrap_or_default();
                let mut response = RenewResponse {
                    magnetic_media: Some(false),
                    desensitize: Some(false),
                    transaction_date: now(),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    item_identifier: item_id.clone(),
                    ..Default::default()
                };
                let blocked = self.patron(&r.patron_identifier).is_none_or(|p| p.blocked);
                match self.items.get_mut(&item_id) {
                    Some(item)
                        if !blocked
                            && item.config.charged_to.as_deref() == Some(&r.patron_identifier)
                            && item.config.hold_for.is_none() =>
                    {
                        let due = due_in_days(14);
                        item.due_date = Some(due.clone());
                        response.ok = true;
                        response.renewal_ok = true;
                        response.desensitize = Some(true);
                        response.title_identifier.clone_from(&item.config.title);
                        response.due_date = due;
                    }
                    _ => response.screen_message = vec!["Item cannot be renewed".into()],
                }
                AnyMessage::RenewResponse(response)
            }
            AnyMessage::RenewAll(r) => {
                let blocked = self.patron(&r.patron_identifier).is_none_or(|p| p.blocked);
                let mut renewed = Vec::new();
                let mut unrenewed = Vec::new();
                for item in self.items.values_mut() {
                    if item.config.charged_to.as_deref() != Some(&r.patron_identifier) {
                        continue;
                    }
                    if blocked || item.config.hold_for.is_some() {
                        unrenewed.push(item.config.id.clone());
                    } else {
                        item.due_date = Some(due_in_days(14));
                        renewed.push(item.config.id.clone());
                    }
                }
                AnyMessage::RenewAllResponse(RenewAllResponse {
                    ok: !blocked,
                    renewed_count: renewed.len() as u32,
                    unrenewed_count: unrenewed.len() as u32,
                    transaction_date: now(),
                    institution_id: institution,
                    renewed_items: renewed,
                    unrenewed_items: unrenewed,
                    ..Default::default()
                })
            }
            AnyMessage::Hold(r) => {
                let item_id = r.item_identifier.clone().unwrap_or_default();
                let known_patron = self.patrons.contains_key(&r.patron_identifier);
                let mut response = HoldResponse {
                    transaction_date: now(),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    item_identifier: r.item_identifier.clone(),
                    pickup_location: r.pickup_location.clone(),
                    expiration_date: r.expiration_date.clone(),
                    ..Default::default()
                };
                match self.items.get_mut(&item_id) {
                    Some(item) if known_patron => {
                        response.title_identifier = Some(item.config.title.clone());
                        match r.hold_mode.as_str() {
                            "+" | "*"
                                if item
                                    .config
                                    .hold_for
                                    .as_ref()
                                    .is_none_or(|h| h == &r.patron_identifier) =>
                            {
                                item.config.hold_for = Some(r.patron_identifier.clone());
                                response.ok = true;
                                response.available = item.config.charged_to.is_none();
                                response.queue_position = Some("1".into());
                            }
                            "-" if item.config.hold_for.as_deref()
                                == Some(&r.patron_identifier) =>
                            {
                                item.config.hold_for = None;
                                response.ok = true;
                            }
                            _ => response.screen_message = vec!["Hold not possible".into()],
                        }
                    }
                    _ => response.screen_message = vec!["Unknown patron or item".into()],
                }
                AnyMessage::HoldResponse(response)
            }
            AnyMessage::FeePaid(r) => {
                let paid = parse_cents(&r.fee_amount);
                let accepted = match self.patrons.get_mut(&r.patron_identifier) {
                    Some(p) if paid > 0 && paid <= p.fine_cents => {
                        p.fine_cents -= paid;
                        true
                    }
                    _ => false,
                };
                AnyMessage::FeePaidResponse(FeePaidResponse {
                    payment_accepted: accepted,
                    transaction_date: now(),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    transaction_id: r.transaction_id.clone(),
                    ..Default::default()
                })
            }
            AnyMessage::EndPatronSession(r) => AnyMessage::EndSessionResponse(EndSessionResponse {
                end_session: true,
                transaction_date: now(),
                institution_id: institution,
                patron_identifier: r.patron_identifier,
                ..Default::default()
            }),
            AnyMessage::BlockPatron(r) => {
                if let Some(p) = self.patrons.get_mut(&r.patron_identifier) {
                    p.blocked = true;
                }
                let patron = self.patron(&r.patron_identifier);
                AnyMessage::PatronStatusResponse(PatronStatusResponse {
                    patron_status: status_flags(patron),
                    language: 1,
                    transaction_date: now(),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    personal_name: patron.map(|p| p.name.clone()).unwrap_or_default(),
                    valid_patron: Some(if patron.is_some() { "Y" } else { "N" }.into()),
                    screen_message: vec![r.blocked_card_message.clone()],
                    ..Default::default()
                })
            }
            AnyMessage::PatronEnable(r) => {
                if let Some(p) = self.patrons.get_mut(&r.patron_identifier) {
                    p.blocked = false;
                }
                let patron = self.patron(&r.patron_identifier);
                AnyMessage::PatronEnableResponse(PatronEnableResponse {
                    patron_status: status_flags(patron),
                    language: 1,
                    transaction_date: now(),
                    institution_id: institution,
                    patron_identifier: r.patron_identifier.clone(),
                    personal_name: patron.map(|p| p.name.clone()).unwrap_or_default(),
                    valid_patron: Some(if patron.is_some() { "Y" } else { "N" }.into()),
                    ..Default::default()
                })
            }
            // Responses and resend requests are not requests an ACS answers.
            _ => return None,
        })
    }
}
