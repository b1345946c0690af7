//! [`FeigDevice`]: a configured FEIG reader as a daemon task.
//!
//! `run` opens the transport, wraps it in a [`FeigReader`] and runs the shared read loop.
//! It returns `Err` when the line breaks; the daemon's supervisor then builds a fresh
//! device from the same settings and calls `run` again after a capped backoff, which is
//! how an unplugged and re-plugged reader comes back.

use std::time::Duration;

use rfidgw_driver::read_loop;
use rfidgw_driver::transport::{self, BoxTransport, TransportConfig};
use rfidgw_driver::{CommandLease, Device, DeviceError, DeviceEventSink, DeviceFuture, LineStats};
use tokio_util::sync::CancellationToken;

use crate::driver::FeigReader;
use crate::settings::{FeigSettings, LINE_DEFAULTS, SimulatorScript};
use crate::sim::{FeigSimulator, ScriptedTag, SimHandle};

/// A FEIG reader built from its settings.
#[derive(Debug)]
pub struct FeigDevice {
    settings: FeigSettings,
    script: Vec<ScriptedTag>,
    commands: Option<CommandLease>,
    simulator: Option<SimHandle>,
}

impl FeigDevice {
    /// A device from checked settings; a [`DeviceError::Config`] names the key
    /// (`driver.psst_ms: …`).
    pub fn new(settings: FeigSettings) -> Result<Self, DeviceError> {
        let config_error = |e: crate::settings::SettingsError| DeviceError::Config(e.to_string());
        settings.validate().map_err(config_error)?;
        let script = settings.simulator.script().map_err(config_error)?;
        Ok(Self {
            settings,
            script,
            commands: None,
            simulator: None,
        })
    }

    /// For `transport.kind = "simulator"`: the remote control of the simulator `run` starts
    /// (tests and the demo move tags with it).
    pub fn simulator(&mut self) -> SimHandle {
        self.simulator
            .get_or_insert_with(SimHandle::default)
            .clone()
    }

    fn start_simulator(&mut self, cancel: &CancellationToken) -> BoxTransport {
        // A handle asked for before `run` (tests, demo) controls this simulator.
        let simulator = FeigSimulator::with_handle(
            self.simulator.clone().unwrap_or_default(),
            self.script.iter().map(|s| s.tag.clone()).collect(),
        );
        let inputs = self.settings.simulator.inputs.clone();
        if !inputs.is_empty() {
            let round = Duration::from_millis(self.settings.simulator.round_ms);
            let cancel = cancel.clone();
            let handle = simulator.handle();
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = play_inputs(&handle, &inputs, round) => {}
                }
            });
        }
        if !self.script.is_empty() {
            let script = self.script.clone();
            let round = Duration::from_millis(self.settings.simulator.round_ms);
            let repeat = self.settings.simulator.round_ms > 0;
            let cancel = cancel.clone();
            let handle = simulator.handle();
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = handle.play(&script, round, repeat) => {}
                }
            });
        }
        Box::new(simulator.spawn_duplex())
    }
}

impl Device for FeigDevice {
    /// Tag commands and outputs are served between inventories.
    fn lend_commands(&mut self, lease: CommandLease) -> Option<CommandLease> {
        self.commands = Some(lease);
        None
    }

    fn run(mut self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture {
        Box::pin(async move {
            // The simulator's script stops with this run, so a restart does not leave it behind.
            let this_run = cancel.child_token();
            let _stop_script = this_run.clone().drop_guard();
            let stream = if matches!(self.settings.transport, TransportConfig::Simulator {}) {
                self.start_simulator(&this_run)
            } else {
                transport::open(&self.settings.transport, LINE_DEFAULTS, || {
                    Err(transport::TransportError::NoSimulator)
                })
                .await?
            };
            tracing::info!(device = sink.device(), transport = %self.settings.transport, "FEIG reader opened");
            let mut reader = FeigReader::new(
                stream,
                self.settings.driver.address,
                self.settings.timing(),
                LineStats::new(),
            )
            .with_input_polling(self.settings.driver.poll_inputs);
            let poll = &self.settings.poll;
            read_loop::run(
                &mut reader,
                poll,
                &sink,
                &cancel,
                self.commands.as_deref_mut(),
            )
            .await
        })
    }
}

/// Plays the scripted light-barrier levels, round after round (once when `round` is 0).
async fn play_inputs(
    handle: &SimHandle,
    steps: &[rfidgw_driver::sim_script::SimInputStep],
    round: Duration,
) {
    let mut steps = steps.to_vec();
    steps.sort_by_key(|s| s.at_ms);
    loop {
        let start = tokio::time::Instant::now();
        for step in &steps {
            tokio::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
            handle.set_inputs(step.levels);
        }
        if round.is_zero() {
            return;
        }
        tokio::time::sleep_until(start + round).await;
    }
}
