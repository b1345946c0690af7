//! The sorter's run loop: reads the bin-full and jam inputs and reports every change, serves
//! divert commands from the device's mailbox, and releases diverters on time.
//!
//! One task owns the link; every request waits for its reply before the next one is sent
//! (RTU is half duplex, and a PLC answers one request at a time). In order of precedence,
//! the loop serves: cancellation, a diverter release that is due (a coil left on diverts
//! the next item too), a waiting command, the input poll, the health report.
//!
//! Outcomes as everywhere in rfidgw: an exception reply to a divert is the PLC's "no" and
//! the command's normal answer ([`ReaderRefusal::Status`] with the exception code); a
//! timeout or broken line ends the run with `Err`, and the supervisor builds the device
//! again. Reconnecting is not done here.

use std::future::pending;

use rfidgw_driver::command::Envelope;
use rfidgw_driver::{
    CommandAnswer, CommandError, DeviceCommand, DeviceError, DeviceEvent, DeviceEventSink,
    LinkState, ReaderRefusal, SorterState,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

use crate::link::{Exception, ModbusLink};
use crate::map::{RegisterMap, Write};
use crate::settings::LoopTiming;

/// Runs the sorter until `cancel` fires (then `Ok`, with every diverter released) or the
/// line breaks (then `Err`, after a last `Health { link: Disconnected }`).
pub async fn run(
    link: &mut ModbusLink,
    map: &RegisterMap,
    timing: LoopTiming,
    sink: &DeviceEventSink,
    cancel: &CancellationToken,
    commands: Option<&mut mpsc::Receiver<Envelope>>,
) -> Result<(), DeviceError> {
    let mut sorter = Sorter {
        link,
        map,
        sink,
        pending: Vec::new(),
        last: None,
        poll_exception: None,
    };
    let result = sorter.run(timing, cancel, commands).await;
    if let Err(error) = &result
        && !matches!(error, DeviceError::SinkClosed(_))
    {
        // Best effort: the bus may be gone too.
        let _ = sink
            .send(DeviceEvent::Health {
                link: LinkState::Disconnected,
                counters: sorter.link.counters(),
            })
            .await;
    }
    result
}

/// A release that is due at `at`.
#[derive(Clone, Copy, Debug)]
struct Pending {
    at: Instant,
    write: Write,
}

struct Sorter<'a> {
    link: &'a mut ModbusLink,
    map: &'a RegisterMap,
    sink: &'a DeviceEventSink,
    /// Diverters to release, at most one per coil or register.
    pending: Vec<Pending>,
    /// The state last reported; `None` before the first read.
    last: Option<SorterState>,
    /// The exception the inputs read gets, while it keeps getting one (logged once).
    poll_exception: Option<Exception>,
}

impl Sorter<'_> {
    async fn run(
        &mut self,
        timing: LoopTiming,
        cancel: &CancellationToken,
        mut commands: Option<&mut mpsc::Receiver<Envelope>>,
    ) -> Result<(), DeviceError> {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            started = self.start() => started?,
        }
        let start = Instant::now();
        let mut poll = interval_at(start + timing.poll_interval, timing.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut health = interval_at(start + timing.health_interval, timing.health_interval);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let polled = self.map.input_window().is_some();
        loop {
            let release_at = self.pending.iter().map(|p| p.at).min();
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    self.release_all().await;
                    return Ok(());
                }
                () = sleep_until_some(release_at) => self.release_due().await?,
                envelope = next_command(&mut commands) => self.serve(envelope).await?,
                _ = poll.tick(), if polled => self.poll().await?,
                _ = health.tick() => self.report_health().await?,
            }
        }
    }

    /// Puts every diverter at rest (a run that ended mid-pulse left a coil on), reads the
    /// inputs once and reports the state and the link.
    async fn start(&mut self) -> Result<(), DeviceError> {
        for write in self.map.rest_writes() {
            self.release(write).await?;
        }
        if self.map.input_window().is_some() {
            self.poll().await?;
        } else {
            // No inputs mapped: the sorter never reports full or jammed.
            self.report(SorterState::default()).await?;
        }
        self.report_health().await
    }

    async fn report_health(&mut self) -> Result<(), DeviceError> {
        self.sink
            .send(DeviceEvent::Health {
                link: LinkState::Connected,
                counters: self.link.counters(),
            })
            .await?;
        Ok(())
    }

    async fn report(&mut self, state: SorterState) -> Result<(), DeviceError> {
        if self.last.as_ref() == Some(&state) {
            return Ok(());
        }
        tracing::info!(
            device = self.sink.device(),
            bins_full = ?state.bins_full,
            jam = state.jam,
            "sorter state"
        );
        self.last = Some(state.clone());
        self.sink.send(DeviceEvent::Sorter(state)).await?;
        Ok(())
    }

    /// Reads the inputs and reports a change. An exception that says the inputs do not
    /// exist ends the run (the map does not fit the PLC); a passing one (busy, gateway)
    /// keeps the last state and is logged once.
    async fn poll(&mut self) -> Result<(), DeviceError> {
        let Some(window) = self.map.input_window() else {
            return Ok(());
        };
        match self.link.read_inputs(window).await? {
            Ok(bits) => {
                self.poll_exception = None;
                self.report(self.map.sorter_state(&bits)).await
            }
            Err(exception) => match exception.0 {
                ExceptionCode::IllegalFunction
                | ExceptionCode::IllegalDataAddress
                | ExceptionCode::IllegalDataValue => Err(DeviceError::Config(format!(
                    "the PLC answers {} with {exception}: check map.bin_full and map.jam \
                     against its program",
                    crate::reply::Op::ReadInputs(window)
                ))),
                _ => {
                    if self.poll_exception != Some(exception) {
                        tracing::warn!(
                            device = self.sink.device(),
                            %exception,
                            "the PLC did not give its inputs; keeping the last state"
                        );
                        self.poll_exception = Some(exception);
                    }
                    Ok(())
                }
            },
        }
    }

    /// Carries out one command and answers it; a broken line is answered and ends the run.
    async fn serve(&mut self, envelope: Envelope) -> Result<(), DeviceError> {
        // A divert nobody waits for any more would send the next item to this bin.
        if envelope.expired() {
            envelope.answer(Err(CommandError::Expired));
            return Ok(());
        }
        let bin = match envelope.command {
            DeviceCommand::Divert { bin } => bin,
            ref other => {
                let refusal = format!("{}: a Modbus sorter only diverts", other.name());
                envelope.answer(Err(CommandError::Unsupported(refusal)));
                return Ok(());
            }
        };
        let plan = match self.map.divert_plan(bin) {
            Ok(plan) => plan,
            Err(out_of_range) => {
                envelope.answer(Err(CommandError::Unsupported(out_of_range.to_string())));
                return Ok(());
            }
        };
        // A diverter still on from the last item to this bin is released first, so the
        // PLC sees a fresh edge (coil off then on, register 0 then the bin) for this one.
        if let Some(index) = self
            .pending
            .iter()
            .position(|p| same_target(p.write, plan.write))
        {
            let earlier = self.pending.remove(index);
            if let Err(error) = self.release(earlier.write).await {
                envelope.answer(Err(CommandError::Line(error.to_string())));
                return Err(error);
            }
        }
        match self.link.write(plan.write).await {
            Ok(Ok(())) => {
                if let Some((after, release)) = plan.release {
                    self.schedule(Instant::now() + after, release);
                }
                tracing::debug!(device = self.sink.device(), bin, write = %plan.write, "diverted");
                envelope.answer(Ok(Ok(CommandAnswer::Done)));
                Ok(())
            }
            Ok(Err(exception)) => {
                tracing::warn!(device = self.sink.device(), bin, %exception, "divert refused");
                envelope.answer(Ok(Err(ReaderRefusal::Status {
                    code: exception.code(),
                    meaning: format!("{}: {exception}", plan.write),
                })));
                Ok(())
            }
            Err(error) => {
                envelope.answer(Err(CommandError::Line(error.to_string())));
                Err(error.into())
            }
        }
    }

    /// Schedules `write` at `at`, replacing a release of the same coil or register.
    fn schedule(&mut self, at: Instant, write: Write) {
        self.pending.retain(|p| !same_target(p.write, write));
        self.pending.push(Pending { at, write });
    }

    async fn release_due(&mut self) -> Result<(), DeviceError> {
        let now = Instant::now();
        let (due, later): (Vec<Pending>, Vec<Pending>) =
            self.pending.iter().partition(|p| p.at <= now);
        self.pending = later;
        for pending in due {
            self.release(pending.write).await?;
        }
        Ok(())
    }

    /// Sends a release; the PLC's refusal is logged (the diverter may stay on), a broken
    /// line ends the run.
    async fn release(&mut self, write: Write) -> Result<(), DeviceError> {
        if let Err(exception) = self.link.write(write).await? {
            tracing::error!(
                device = self.sink.device(),
                %write,
                %exception,
                "the PLC refused to release a diverter"
            );
        }
        Ok(())
    }

    /// On shutdown: releases what is still on now, stopping at the first broken request.
    async fn release_all(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            if let Err(error) = self.link.write(pending.write).await {
                tracing::warn!(device = self.sink.device(), %error, "diverter not released at shutdown");
                return;
            }
        }
    }
}

fn same_target(a: Write, b: Write) -> bool {
    match (a, b) {
        (Write::Register { address: a, .. }, Write::Register { address: b, .. })
        | (Write::Coil { address: a, .. }, Write::Coil { address: b, .. }) => a == b,
        _ => false,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

/// The next command; never ready once every handle is gone (or with no mailbox).
async fn next_command(commands: &mut Option<&mut mpsc::Receiver<Envelope>>) -> Envelope {
    loop {
        let Some(rx) = commands.as_deref_mut() else {
            return pending().await;
        };
        match rx.recv().await {
            Some(envelope) => return envelope,
            None => *commands = None,
        }
    }
}
