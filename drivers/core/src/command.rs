//! The command path to running devices: a [`DeviceHandle`] sends [`DeviceCommand`]s (tag
//! operations and outputs) to whichever run of a device is current, each with a deadline.
//!
//! The shape is the one the SIP2 pool and rumqttc use for connections: the daemon's
//! supervisor owns each device's [`CommandMailbox`] for the device's whole life and *lends*
//! its receiving end ([`CommandLease`]) to every run of the device. Handles therefore keep
//! working across restarts, and nothing a station holds ever points at a dead run.
//!
//! Three promises, each tested:
//! * while the device is down or in its restart pause, a call is answered at once with
//!   [`CommandError::NotRunning`], never queued for seconds;
//! * every call ends by its deadline ([`CommandError::Expired`]), whatever the device does;
//! * a run that ends (failure, panic, cancel) gives the lease back (it is a mutex guard, so
//!   even unwinding releases it), and the supervisor answers what was left waiting.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};
use tokio::time::Instant;

use crate::{DeviceId, ReaderRefusal, TagOutcome, Uid};

/// How many commands may wait for one device. A station that needs more than this in
/// flight at once is talking faster than any reader can act.
pub const MAILBOX_CAPACITY: usize = 32;

/// A signal emitter's state during an output command (FEIG `[71]` OS modes, PROTOCOLS.md
/// §4.2: `00` unchanged, `01` on, `10` off, `11` flash).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    /// Left as it is.
    #[default]
    Unchanged,
    /// Steadily on.
    On,
    /// Off.
    Off,
    /// Flashing.
    Flash,
}

/// Drive a device's outputs for a while: a gate's beeper and lamps, and its relay (which
/// usually switches an external alarm light or sounder).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct OutputCommand {
    /// The beeper.
    pub beeper: Signal,
    /// The red lamp.
    pub red: Signal,
    /// The green lamp.
    pub green: Signal,
    /// How long the beeper and lamps keep this state (`None`: no change to them).
    pub signal_for: Option<Duration>,
    /// How long the relay is switched on (`None`: not switched).
    pub relay_for: Option<Duration>,
}

/// What a station can ask of a running device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum DeviceCommand {
    /// Read the AFI.
    ReadAfi {
        /// The tag.
        uid: Uid,
    },
    /// Write the AFI, then read it back.
    WriteAfi {
        /// The tag.
        uid: Uid,
        /// The new AFI.
        afi: u8,
    },
    /// Read the NXP EAS bit.
    ReadEas {
        /// The tag.
        uid: Uid,
    },
    /// Set (`true`) or reset the NXP EAS bit, then read it back.
    WriteEas {
        /// The tag.
        uid: Uid,
        /// `true` sets, `false` resets.
        on: bool,
    },
    /// Read `count` 4-byte blocks from `first` (reader byte order).
    ReadBlocks {
        /// The tag.
        uid: Uid,
        /// First block.
        first: u8,
        /// Number of blocks.
        count: u8,
    },
    /// Write whole 4-byte blocks from `first` (reader byte order), then read them back.
    WriteBlocks {
        /// The tag.
        uid: Uid,
        /// First block.
        first: u8,
        /// The data, a multiple of 4 bytes.
        #[serde(with = "crate::hex_serde::bytes")]
        data: Vec<u8>,
    },
    /// Drive the outputs (lamps, beeper, relay).
    Output(OutputCommand),
    /// A sorter: send the item now at the induction point to `bin` (1-based, as the sort
    /// plan and the sorter's register map number them).
    Divert {
        /// The bin.
        bin: u16,
    },
}

impl DeviceCommand {
    /// The command's name for logs and the journal.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::ReadAfi { .. } => "read_afi",
            Self::WriteAfi { .. } => "write_afi",
            Self::ReadEas { .. } => "read_eas",
            Self::WriteEas { .. } => "write_eas",
            Self::ReadBlocks { .. } => "read_blocks",
            Self::WriteBlocks { .. } => "write_blocks",
            Self::Output(_) => "output",
            Self::Divert { .. } => "divert",
        }
    }
}

/// Whether a write was read back, as every driver reports it (FEIG and 3M alike).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "read_back", rename_all = "snake_case")]
pub enum ReadBack {
    /// The tag holds what was written.
    Confirmed,
    /// The tag answered with something else after every attempt.
    Differs {
        /// What the last read-back returned, for the journal (hex or `true`/`false`).
        found: String,
    },
    /// The value could not be read back (tag gone, reader refused the read).
    NotRead {
        /// Why.
        reason: String,
    },
}

/// The result of a write: how it went when read back, and how many writes it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriteReport {
    /// What the read-back showed.
    #[serde(flatten)]
    pub read_back: ReadBack,
    /// Write attempts made (1 = the first write was confirmed).
    pub attempts: u32,
}

impl WriteReport {
    /// Whether the tag is known to hold what was written.
    pub fn confirmed(&self) -> bool {
        self.read_back == ReadBack::Confirmed
    }
}

/// A device's answer to a command that reached it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum CommandAnswer {
    /// The AFI read.
    Afi {
        /// Its value.
        afi: u8,
    },
    /// The EAS bit read.
    Eas {
        /// Its value.
        on: bool,
    },
    /// Blocks read.
    Blocks {
        /// The data, reader byte order.
        #[serde(with = "crate::hex_serde::bytes")]
        data: Vec<u8>,
    },
    /// A write, with its read-back.
    Written(WriteReport),
    /// An output command was carried out.
    Done,
}

/// Why a command got no answer from the device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum CommandError {
    /// The device is down, restarting, or stopped.
    #[error("the device is not running")]
    NotRunning,
    /// The deadline passed before the device answered.
    #[error("no answer within the deadline")]
    Expired,
    /// The device cannot do this (a card reader asked to write an AFI).
    #[error("the device cannot do this: {0}")]
    Unsupported(String),
    /// The line broke while the command ran; the device restarts.
    #[error("the line broke: {0}")]
    Line(String),
}

/// What a call returns: the device's answer (done or refused), or why there was none.
pub type CommandResult = Result<TagOutcome<CommandAnswer>, CommandError>;

/// One command in a mailbox, with its deadline and where the answer goes.
#[derive(Debug)]
pub struct Envelope {
    /// What to do.
    pub command: DeviceCommand,
    /// When the caller stops waiting; a driver skips a command whose deadline passed.
    pub deadline: Instant,
    reply: oneshot::Sender<CommandResult>,
}

impl Envelope {
    /// Whether the caller has stopped waiting (deadline passed, or the caller went away).
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline || self.reply.is_closed()
    }

    /// Sends the answer (a caller that stopped waiting is fine).
    pub fn answer(self, result: CommandResult) {
        let _ = self.reply.send(result);
    }
}

/// The receiving end of a device's mailbox, lent to one run of the device.
///
/// It is a mutex guard: when the run ends in any way (including a panic unwinding through
/// the driver) the lease is dropped and the supervisor can lend it to the next run.
#[derive(Debug)]
pub struct CommandLease(OwnedMutexGuard<mpsc::Receiver<Envelope>>);

impl Deref for CommandLease {
    type Target = mpsc::Receiver<Envelope>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for CommandLease {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl CommandLease {
    /// Answers every command waiting now with `error`, without waiting for more.
    pub fn refuse_waiting(&mut self, error: &CommandError) -> usize {
        let mut refused = 0;
        while let Ok(envelope) = self.0.try_recv() {
            envelope.answer(Err(error.clone()));
            refused += 1;
        }
        refused
    }

    /// Answers every command with `error` as it comes, until the caller stops polling this
    /// future (for devices that take no commands: a card reader, the scripted reader).
    pub async fn refuse_all(&mut self, error: CommandError) {
        while let Some(envelope) = self.0.recv().await {
            envelope.answer(Err(error.clone()));
        }
    }
}

/// A device's mailbox, owned by the supervisor for the device's whole life.
#[derive(Debug)]
pub struct CommandMailbox {
    device: DeviceId,
    tx: mpsc::Sender<Envelope>,
    rx: Arc<Mutex<mpsc::Receiver<Envelope>>>,
    running: Arc<AtomicBool>,
}

impl CommandMailbox {
    /// An empty mailbox for `device`, not running.
    pub fn new(device: impl Into<DeviceId>) -> Self {
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        Self {
            device: device.into(),
            tx,
            rx: Arc::new(Mutex::new(rx)),
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A handle for stations and the API. Cheap to clone; valid for the device's life.
    pub fn handle(&self) -> DeviceHandle {
        DeviceHandle {
            device: self.device.clone(),
            tx: self.tx.clone(),
            running: self.running.clone(),
        }
    }

    /// Takes the receiving end for one run; waits only while a previous run still holds it.
    pub async fn lend(&self) -> CommandLease {
        CommandLease(self.rx.clone().lock_owned().await)
    }

    /// Runs a device outside the supervisor (tests, benchmarks, tools): lends the mailbox
    /// to `device` and marks it running. False when the device takes no commands.
    pub async fn attach(&self, device: &mut dyn crate::Device) -> bool {
        let taken = device.lend_commands(self.lend().await).is_none();
        self.set_running(taken);
        taken
    }

    /// Marks the device as running (calls go through) or not (calls are refused at once).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }
}

/// A cheap, cloneable way to send commands to one device, whichever run is current.
#[derive(Clone, Debug)]
pub struct DeviceHandle {
    device: DeviceId,
    tx: mpsc::Sender<Envelope>,
    running: Arc<AtomicBool>,
}

impl DeviceHandle {
    /// The device this handle reaches.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether the device is running now (a call may still find it gone a moment later).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Sends `command` and waits for the answer, at most `within`.
    ///
    /// Answers at once with [`CommandError::NotRunning`] while the device is down; a full
    /// mailbox counts against the same deadline.
    pub async fn call(&self, command: DeviceCommand, within: Duration) -> CommandResult {
        if !self.is_running() {
            return Err(CommandError::NotRunning);
        }
        let deadline = Instant::now() + within;
        let (reply, answer) = oneshot::channel();
        let envelope = Envelope {
            command,
            deadline,
            reply,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(envelope)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(CommandError::NotRunning),
            Err(_) => return Err(CommandError::Expired),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            // The run that held it ended without answering: the supervisor drains what a
            // dead run left, so this is a race with a restart.
            Ok(Err(_)) => Err(CommandError::NotRunning),
            Err(_) => Err(CommandError::Expired),
        }
    }

    /// Writes the AFI and reads it back.
    pub async fn write_afi(&self, uid: &Uid, afi: u8, within: Duration) -> CommandResult {
        let command = DeviceCommand::WriteAfi {
            uid: uid.clone(),
            afi,
        };
        self.call(command, within).await
    }

    /// Sets or resets the EAS bit and reads it back.
    pub async fn write_eas(&self, uid: &Uid, on: bool, within: Duration) -> CommandResult {
        let command = DeviceCommand::WriteEas {
            uid: uid.clone(),
            on,
        };
        self.call(command, within).await
    }

    /// Reads the AFI.
    pub async fn read_afi(
        &self,
        uid: &Uid,
        within: Duration,
    ) -> Result<TagOutcome<u8>, CommandError> {
        match self
            .call(DeviceCommand::ReadAfi { uid: uid.clone() }, within)
            .await?
        {
            Ok(CommandAnswer::Afi { afi }) => Ok(Ok(afi)),
            Ok(other) => Err(CommandError::Line(format!("unexpected answer {other:?}"))),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    /// Reads the EAS bit.
    pub async fn read_eas(
        &self,
        uid: &Uid,
        within: Duration,
    ) -> Result<TagOutcome<bool>, CommandError> {
        match self
            .call(DeviceCommand::ReadEas { uid: uid.clone() }, within)
            .await?
        {
            Ok(CommandAnswer::Eas { on }) => Ok(Ok(on)),
            Ok(other) => Err(CommandError::Line(format!("unexpected answer {other:?}"))),
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    /// Drives the outputs.
    pub async fn output(&self, output: OutputCommand, within: Duration) -> CommandResult {
        self.call(DeviceCommand::Output(output), within).await
    }
}

/// A refusal for a command a driver does not offer, as the normal "no" of the device.
pub fn unsupported(what: &str) -> CommandError {
    CommandError::Unsupported(what.to_owned())
}

/// Reads a refusal back as text for a [`ReadBack::NotRead`].
pub fn not_read(refusal: &ReaderRefusal) -> ReadBack {
    ReadBack::NotRead {
        reason: refusal.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid() -> Uid {
        Uid::new([0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17])
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_is_not_running_is_refused_at_once() {
        let mailbox = CommandMailbox::new("gate");
        let handle = mailbox.handle();
        let started = Instant::now();
        let result = handle
            .write_afi(&uid(), 0x07, Duration::from_secs(30))
            .await;
        assert_eq!(result, Err(CommandError::NotRunning));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_device_that_never_answers_expires_at_the_deadline() {
        let mailbox = CommandMailbox::new("gate");
        mailbox.set_running(true);
        let _lease = mailbox.lend().await; // held but never served
        let started = Instant::now();
        let result = mailbox
            .handle()
            .output(OutputCommand::default(), Duration::from_millis(250))
            .await;
        assert_eq!(result, Err(CommandError::Expired));
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_serves_commands_and_returns_to_the_mailbox_when_dropped() {
        let mailbox = CommandMailbox::new("gate");
        mailbox.set_running(true);
        let handle = mailbox.handle();
        for round in 0..2 {
            let mut lease = mailbox.lend().await;
            let server = tokio::spawn(async move {
                let envelope = lease.recv().await.unwrap();
                assert!(!envelope.expired());
                envelope.answer(Ok(Ok(CommandAnswer::Done)));
            });
            let result = handle
                .output(OutputCommand::default(), Duration::from_secs(1))
                .await;
            assert_eq!(result, Ok(Ok(CommandAnswer::Done)), "round {round}");
            server.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_holder_gives_the_lease_back_and_waiting_commands_are_refused() {
        let mailbox = CommandMailbox::new("gate");
        mailbox.set_running(true);
        let handle = mailbox.handle();
        let lease = mailbox.lend().await;
        let run = tokio::spawn(async move {
            let _lease = lease;
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("driver bug");
        });
        let call = tokio::spawn({
            let handle = handle.clone();
            async move { handle.write_eas(&uid(), true, Duration::from_secs(5)).await }
        });
        assert!(run.await.unwrap_err().is_panic());
        mailbox.set_running(false);
        let mut lease = mailbox.lend().await;
        assert_eq!(lease.refuse_waiting(&CommandError::NotRunning), 1);
        assert_eq!(call.await.unwrap(), Err(CommandError::NotRunning));
    }

    #[test]
    fn a_write_report_serialises_flat_for_the_journal() {
        let report = WriteReport {
            read_back: ReadBack::Differs { found: "C2".into() },
            attempts: 3,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["read_back"], "differs");
        assert_eq!(json["found"], "C2");
        assert_eq!(json["attempts"], 3);
        assert!(!report.confirmed());
    }
}
