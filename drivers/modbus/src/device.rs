//! [`ModbusDevice`]: a configured Modbus sorter as a daemon task.
//!
//! `run` opens the transport (or starts the simulated sorter on a loopback port), attaches
//! a [`ModbusLink`] and runs the sorter loop. It returns `Err` when the line breaks; the
//! daemon's supervisor then builds a fresh device from the same settings and calls `run`
//! again after a capped backoff.

use rfidgw_driver::transport::{self, BoxTransport, TransportConfig, TransportError};
use rfidgw_driver::{CommandLease, Device, DeviceError, DeviceEventSink, DeviceFuture, LineStats};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::link::ModbusLink;
use crate::map::RegisterMap;
use crate::settings::{LINE_DEFAULTS, ModbusSettings};
use crate::sim::{SimHandle, SorterSimulator};
use crate::sorter;

/// A Modbus sorter built from its settings.
#[derive(Debug)]
pub struct ModbusDevice {
    settings: ModbusSettings,
    map: RegisterMap,
    commands: Option<CommandLease>,
    simulator: Option<SimHandle>,
}

impl ModbusDevice {
    /// A device from checked settings; a [`DeviceError::Config`] names the key
    /// (`map.divert.coils: …`).
    pub fn new(settings: ModbusSettings) -> Result<Self, DeviceError> {
        let map = settings
            .validate()
            .map_err(|e| DeviceError::Config(e.to_string()))?;
        Ok(Self {
            settings,
            map,
            commands: None,
            simulator: None,
        })
    }

    /// The checked register map.
    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    /// For `transport.kind = "simulator"`: the remote control of the simulated sorter that
    /// `run` starts (tests and the demo fill bins and raise jams with it).
    pub fn simulator(&mut self) -> SimHandle {
        self.simulator
            .get_or_insert_with(SimHandle::default)
            .clone()
    }

    /// Starts the simulated sorter for this run and connects to it.
    async fn open_simulator(&self, cancel: CancellationToken) -> Result<BoxTransport, DeviceError> {
        let simulator = SorterSimulator::with_handle(
            self.simulator.clone().unwrap_or_default(),
            self.map.clone(),
            self.settings.driver.unit,
            self.settings.simulator.clone(),
        );
        let addr = simulator
            .spawn_loopback(self.settings.framing(), cancel)
            .await?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

impl Device for ModbusDevice {
    /// Divert commands are served between input reads.
    fn lend_commands(&mut self, lease: CommandLease) -> Option<CommandLease> {
        self.commands = Some(lease);
        None
    }

    fn run(mut self: Box<Self>, sink: DeviceEventSink, cancel: CancellationToken) -> DeviceFuture {
        Box::pin(async move {
            // The simulator stops with this run, so a restart does not leave it behind.
            let this_run = cancel.child_token();
            let _stop_simulator = this_run.clone().drop_guard();
            let stream = if matches!(self.settings.transport, TransportConfig::Simulator {}) {
                self.open_simulator(this_run).await?
            } else {
                transport::open(&self.settings.transport, LINE_DEFAULTS, || {
                    Err(TransportError::NoSimulator)
                })
                .await?
            };
            let framing = self.settings.framing();
            tracing::info!(
                device = sink.device(),
                transport = %self.settings.transport,
                %framing,
                unit = self.settings.driver.unit,
                "Modbus sorter opened"
            );
            let mut link = ModbusLink::attach(
                stream,
                framing,
                self.settings.driver.unit,
                self.settings.link_timing(),
                LineStats::new(),
            );
            let timing = self.settings.loop_timing();
            sorter::run(
                &mut link,
                &self.map,
                timing,
                &sink,
                &cancel,
                self.commands.as_deref_mut(),
            )
            .await
        })
    }
}
