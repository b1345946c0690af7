//! A simulated sorter: a PLC behind a real tokio-modbus server, with bins that fill up and
//! a jam that can be raised, for the demo (`transport.kind = "simulator"`) and tests.
//!
//! It serves the same [`RegisterMap`] the driver uses: a divert (the bin number into the
//! holding register, or a bin's coil switched on) drops one item into the bin; a bin with
//! `capacity` items turns its bin-full input on; every `jam_every`-th divert jams the
//! conveyor for `jam_clear_ms`. A cloneable [`SimHandle`] changes the world while it runs
//! (jam, fill or empty a bin), injects faults (no reply, an exception reply) and pulls the
//! cable, and shows what the PLC received.
//!
//! [`SorterSimulator::serve_tcp`] serves Modbus TCP, or RTU framing over TCP (a serial
//! server in transparent mode), on a listener; [`SorterSimulator::serve_rtu`] serves RTU
//! on a serial port, such as the master end of a pty.

use std::collections::{BTreeSet, VecDeque};
use std::future::{Ready, ready};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rfidgw_driver::SorterState;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

use crate::link::Framing;
use crate::map::{Address, Divert, MAX_READ_INPUTS, RegisterMap, Write};
use crate::settings::SimulatorSettings;

/// A fault the simulator plays on the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Do not answer (the driver times out).
    NoReply,
    /// Answer with this exception code.
    Exception(u8),
    /// Answer the next divert (a coil switched on, a bin number written) with this
    /// exception code; other requests before it are answered as usual.
    RefuseDivert(u8),
}

#[derive(Clone, Copy, Debug, Default)]
struct Bin {
    items: u32,
    /// When the bin became full; `None` while it is not.
    full_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    settings: SimulatorSettings,
    bins: Vec<Bin>,
    jam: bool,
    /// When a jam raised by `jam_every` clears itself.
    jam_until: Option<Instant>,
    faults: VecDeque<Fault>,
    writes: Vec<(Instant, Write)>,
    diverts: Vec<u16>,
    coils_on: BTreeSet<Address>,
    requests: u64,
}

impl State {
    /// Plays the time-driven changes due by `now`: emptied bins, jams that cleared.
    fn tick(&mut self, now: Instant) {
        let empty_after = Duration::from_millis(self.settings.empty_after_ms);
        if !empty_after.is_zero() {
            for bin in &mut self.bins {
                if bin
                    .full_since
                    .is_some_and(|since| now >= since + empty_after)
                {
                    *bin = Bin::default();
                }
            }
        }
        if self.jam_until.is_some_and(|until| now >= until) {
            self.jam = false;
            self.jam_until = None;
        }
    }

    fn divert(&mut self, bin: u16, now: Instant) {
        let capacity = self.settings.capacity;
        let slot = usize::from(bin).checked_sub(1);
        if let Some(state) = slot.and_then(|slot| self.bins.get_mut(slot)) {
            state.items = state.items.saturating_add(1);
            if state.items >= capacity && state.full_since.is_none() {
                state.full_since = Some(now);
            }
        }
        self.diverts.push(bin);
        let every = self.settings.jam_every as usize;
        if every > 0 && self.diverts.len().is_multiple_of(every) {
            self.jam = true;
            let clear = Duration::from_millis(self.settings.jam_clear_ms);
            self.jam_until = (!clear.is_zero()).then(|| now + clear);
        }
    }

    fn sorter_state(&self) -> SorterState {
        SorterState {
            bins_full: (1..)
                .zip(&self.bins)
                .filter(|(_, bin)| bin.full_since.is_some())
                .map(|(number, _)| number)
                .collect(),
            jam: self.jam,
        }
    }
}

/// A cloneable remote control of a simulated sorter. Its state outlives the simulator, so
/// a driver restarted by the supervisor finds the bins as it left them.
#[derive(Clone, Debug, Default)]
pub struct SimHandle {
    state: Arc<Mutex<State>>,
    unplug: Arc<Mutex<CancellationToken>>,
}

impl SimHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only be a bug here; keep serving the state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unplug_token(&self) -> CancellationToken {
        self.unplug
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Raises (`true`) or clears the jam.
    pub fn set_jam(&self, on: bool) {
        let mut state = self.lock();
        state.jam = on;
        state.jam_until = None;
    }

    /// Fills `bin` to its capacity (its bin-full input goes on).
    pub fn fill_bin(&self, bin: u16) {
        let now = Instant::now();
        let mut state = self.lock();
        let capacity = state.settings.capacity;
        if let Some(slot) = usize::from(bin).checked_sub(1)
            && let Some(state) = state.bins.get_mut(slot)
        {
            state.items = state.items.max(capacity);
            state.full_since.get_or_insert(now);
        }
    }

    /// Empties `bin` (staff took the items out).
    pub fn empty_bin(&self, bin: u16) {
        let mut state = self.lock();
        if let Some(slot) = usize::from(bin).checked_sub(1)
            && let Some(state) = state.bins.get_mut(slot)
        {
            *state = Bin::default();
        }
    }

    /// Items in `bin` now.
    pub fn items(&self, bin: u16) -> u32 {
        let mut state = self.lock();
        state.tick(Instant::now());
        usize::from(bin)
            .checked_sub(1)
            .and_then(|slot| state.bins.get(slot))
            .map_or(0, |bin| bin.items)
    }

    /// The state the PLC's inputs show now.
    pub fn sorter_state(&self) -> SorterState {
        let mut state = self.lock();
        state.tick(Instant::now());
        state.sorter_state()
    }

    /// Every bin an item was diverted to, oldest first.
    pub fn diverts(&self) -> Vec<u16> {
        self.lock().diverts.clone()
    }

    /// Every divert write the PLC accepted, with when it arrived, oldest first.
    pub fn writes(&self) -> Vec<(Instant, Write)> {
        self.lock().writes.clone()
    }

    /// Queues a fault for the next request.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Requests received so far (answered or not).
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Closes the connection now, like pulling the PLC's cable; a simulator started later
    /// (the driver's next run) serves again.
    pub fn unplug(&self) {
        let mut token = self
            .unplug
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        token.cancel();
        *token = CancellationToken::new();
    }
}

/// The PLC's request handling, shared by every connection of one simulator.
#[derive(Debug)]
pub struct SorterService {
    handle: SimHandle,
    map: RegisterMap,
    unit: u8,
}

impl SorterService {
    /// Answers one request: `Ok(None)` is no reply at all (a request for another unit, or
    /// an injected fault).
    pub fn answer(&self, request: &SlaveRequest<'_>) -> Result<Option<Response>, ExceptionCode> {
        let now = Instant::now();
        let mut state = self.handle.lock();
        state.requests += 1;
        let divert = matches!(
            request.request,
            Request::WriteSingleCoil(_, true) | Request::WriteSingleRegister(_, 1..)
        );
        match state.faults.front().copied() {
            Some(Fault::RefuseDivert(_)) if !divert => {}
            Some(fault) => {
                state.faults.pop_front();
                match fault {
                    Fault::NoReply => return Ok(None),
                    Fault::Exception(code) | Fault::RefuseDivert(code) => {
                        return Err(ExceptionCode::new(code));
                    }
                }
            }
            None => {}
        }
        if request.slave != self.unit {
            // Another unit's request: on a shared line, not this PLC's to answer.
            return Ok(None);
        }
        state.tick(now);
        match request.request {
            Request::ReadDiscreteInputs(first, count) => {
                if count == 0 || count > MAX_READ_INPUTS {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                let Some(last) = first.checked_add(count - 1) else {
                    return Err(ExceptionCode::IllegalDataAddress);
                };
                let sorter = state.sorter_state();
                let bits = (first..=last)
                    .map(|address| self.map.input_level(address, &sorter))
                    .collect();
                Ok(Some(Response::ReadDiscreteInputs(bits)))
            }
            Request::WriteSingleRegister(address, value) => {
                let Divert::Register { register, .. } = self.map.divert() else {
                    return Err(ExceptionCode::IllegalDataAddress);
                };
                if *register != address {
                    return Err(ExceptionCode::IllegalDataAddress);
                }
                if value > self.map.bins() {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                state.writes.push((now, Write::Register { address, value }));
                if value > 0 {
                    state.divert(value, now);
                }
                Ok(Some(Response::WriteSingleRegister(address, value)))
            }
            Request::WriteSingleCoil(address, on) => {
                let Some(bin) = self.map.bin_of_coil(address) else {
                    return Err(ExceptionCode::IllegalDataAddress);
                };
                state.writes.push((now, Write::Coil { address, on }));
                // The item is diverted on the coil's rising edge.
                if on && state.coils_on.insert(address) {
                    state.divert(bin, now);
                } else if !on {
                    state.coils_on.remove(&address);
                }
                Ok(Some(Response::WriteSingleCoil(address, on)))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

impl tokio_modbus::server::Service for SorterService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        ready(self.answer(&request))
    }
}

/// A simulated sorter, ready to serve.
#[derive(Debug)]
pub struct SorterSimulator {
    service: Arc<SorterService>,
    unplugged: CancellationToken,
}

impl SorterSimulator {
    /// A sorter with empty bins serving `map` as unit `unit`.
    pub fn new(map: RegisterMap, unit: u8, settings: SimulatorSettings) -> Self {
        Self::with_handle(SimHandle::default(), map, unit, settings)
    }

    /// A sorter controlled by `handle`; bins the handle already knows keep their items.
    pub fn with_handle(
        handle: SimHandle,
        map: RegisterMap,
        unit: u8,
        settings: SimulatorSettings,
    ) -> Self {
        {
            let mut state = handle.lock();
            state.bins.resize(usize::from(map.bins()), Bin::default());
            state.settings = settings;
        }
        let unplugged = handle.unplug_token();
        Self {
            service: Arc::new(SorterService { handle, map, unit }),
            unplugged,
        }
    }

    /// The remote control.
    pub fn handle(&self) -> SimHandle {
        self.service.handle.clone()
    }

    /// Serves every connection on `listener` with `framing` until unplugged.
    pub async fn serve_tcp(self, listener: TcpListener, framing: Framing) -> io::Result<()> {
        let service = self.service;
        let on_connected = |stream: TcpStream, _peer: SocketAddr| {
            let service = service.clone();
            async move { io::Result::Ok(Some((service, stream))) }
        };
        let on_error = |error: io::Error| {
            tracing::debug!(%error, "simulated sorter: connection ended");
        };
        let serve = async {
            match framing {
                Framing::Tcp => {
                    tokio_modbus::server::tcp::Server::new(listener)
                        .serve(&on_connected, on_error)
                        .await
                }
                Framing::Rtu => {
                    tokio_modbus::server::rtu_over_tcp::Server::new(listener)
                        .serve(&on_connected, on_error)
                        .await
                }
            }
        };
        tokio::select! {
            result = serve => result,
            () = self.unplugged.cancelled() => Ok(()),
        }
    }

    /// Serves RTU on a serial port (the master end of a pty) until unplugged.
    pub async fn serve_rtu(self, port: SerialStream) -> io::Result<()> {
        let server = tokio_modbus::server::rtu::Server::new(port);
        tokio::select! {
            result = server.serve_forever(self.service) => result,
            () = self.unplugged.cancelled() => Ok(()),
        }
    }

    /// Serves on a new loopback port until `cancel` fires or the cable is pulled, and
    /// returns the address to connect to.
    pub async fn spawn_loopback(
        self,
        framing: Framing,
        cancel: CancellationToken,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                result = self.serve_tcp(listener, framing) => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "simulated sorter stopped");
                    }
                }
            }
        });
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::MapSettings;

    fn map(divert: &str) -> RegisterMap {
        let settings: MapSettings = toml::from_str(&format!(
            "bins = 3\nbin_full = [0, 1, 2]\njam = 3\ndivert = {divert}"
        ))
        .unwrap();
        RegisterMap::new(&settings).unwrap()
    }

    fn service(divert: &str, settings: SimulatorSettings) -> SorterService {
        let sim = SorterSimulator::new(map(divert), 1, settings);
        Arc::try_unwrap(sim.service).unwrap()
    }

    fn to(unit: u8, request: Request<'static>) -> SlaveRequest<'static> {
        SlaveRequest {
            slave: unit,
            request,
        }
    }

    fn inputs(service: &SorterService) -> Vec<bool> {
        match service.answer(&to(1, Request::ReadDiscreteInputs(0, 4))) {
            Ok(Some(Response::ReadDiscreteInputs(bits))) => bits,
            other => panic!("{other:?}"),
        }
    }

    const REGISTER: &str = "{ kind = \"register\", register = 100 }";

    #[tokio::test(start_paused = true)]
    async fn a_bin_fills_after_capacity_diverts_and_is_emptied_later() {
        let settings = SimulatorSettings {
            capacity: 2,
            empty_after_ms: 1000,
            ..SimulatorSettings::default()
        };
        let plc = service(REGISTER, settings);
        let divert = |bin| to(1, Request::WriteSingleRegister(100, bin));
        assert_eq!(
            plc.answer(&divert(2)),
            Ok(Some(Response::WriteSingleRegister(100, 2)))
        );
        assert_eq!(inputs(&plc), [false; 4]);
        plc.answer(&divert(0)).unwrap(); // cleared: no item
        plc.answer(&divert(2)).unwrap();
        assert_eq!(inputs(&plc), [false, true, false, false]);
        assert_eq!(plc.handle.items(2), 2);
        assert_eq!(plc.handle.diverts(), [2, 2]);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(inputs(&plc), [false; 4], "staff emptied it");
    }

    #[tokio::test(start_paused = true)]
    async fn every_nth_divert_jams_until_the_jam_clears() {
        let settings = SimulatorSettings {
            jam_every: 2,
            jam_clear_ms: 500,
            ..SimulatorSettings::default()
        };
        let plc = service("{ kind = \"coils\", coils = [16, 17, 18] }", settings);
        let coil = |address, on| to(1, Request::WriteSingleCoil(address, on));
        plc.answer(&coil(16, true)).unwrap();
        plc.answer(&coil(16, true)).unwrap(); // still on: no second item
        assert_eq!(plc.handle.diverts(), [1]);
        plc.answer(&coil(16, false)).unwrap();
        plc.answer(&coil(18, true)).unwrap();
        assert_eq!(plc.handle.diverts(), [1, 3]);
        assert_eq!(inputs(&plc), [false, false, false, true]);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(inputs(&plc), [false; 4]);
        plc.handle.set_jam(true);
        tokio::time::advance(Duration::from_mins(1)).await;
        assert_eq!(
            inputs(&plc),
            [false, false, false, true],
            "a raised jam stays"
        );
    }

    #[test]
    fn requests_outside_the_map_get_the_exception_a_plc_sends() {
        let plc = service(REGISTER, SimulatorSettings::default());
        let cases = [
            (
                Request::WriteSingleRegister(101, 1),
                ExceptionCode::IllegalDataAddress,
            ),
            (
                Request::WriteSingleRegister(100, 4),
                ExceptionCode::IllegalDataValue,
            ),
            (
                Request::WriteSingleCoil(16, true),
                ExceptionCode::IllegalDataAddress,
            ),
            (
                Request::ReadDiscreteInputs(0, 0),
                ExceptionCode::IllegalDataValue,
            ),
            (
                Request::ReadDiscreteInputs(0, 2001),
                ExceptionCode::IllegalDataValue,
            ),
            (
                Request::ReadDiscreteInputs(65535, 2),
                ExceptionCode::IllegalDataAddress,
            ),
            (
                Request::ReadHoldingRegisters(100, 1),
                ExceptionCode::IllegalFunction,
            ),
        ];
        for (request, exception) in cases {
            assert_eq!(
                plc.answer(&to(1, request.clone())),
                Err(exception),
                "{request:?}"
            );
        }
        assert!(plc.handle.writes().is_empty());
        // Another unit's request is not answered at all.
        assert_eq!(
            plc.answer(&to(2, Request::ReadDiscreteInputs(0, 1))),
            Ok(None)
        );
    }

    #[test]
    fn injected_faults_play_once_in_order() {
        let plc = service(REGISTER, SimulatorSettings::default());
        plc.handle.inject(Fault::Exception(0x06));
        plc.handle.inject(Fault::NoReply);
        plc.handle.inject(Fault::RefuseDivert(0x04));
        let read = to(1, Request::ReadDiscreteInputs(0, 1));
        let clear = to(1, Request::WriteSingleRegister(100, 0));
        let divert = to(1, Request::WriteSingleRegister(100, 1));
        assert_eq!(plc.answer(&read), Err(ExceptionCode::ServerDeviceBusy));
        assert_eq!(plc.answer(&read), Ok(None));
        assert!(
            matches!(plc.answer(&read), Ok(Some(_))),
            "reads pass a divert fault"
        );
        assert!(matches!(plc.answer(&clear), Ok(Some(_))), "so do releases");
        assert_eq!(plc.answer(&divert), Err(ExceptionCode::ServerDeviceFailure));
        assert!(matches!(plc.answer(&divert), Ok(Some(_))));
        assert_eq!(plc.handle.requests(), 6);
        assert_eq!(plc.handle.diverts(), [1]);
    }

    #[test]
    fn the_handle_fills_empties_and_ignores_bins_it_does_not_have() {
        let plc = service(REGISTER, SimulatorSettings::default());
        plc.handle.fill_bin(3);
        plc.handle.fill_bin(0);
        plc.handle.fill_bin(9);
        assert_eq!(
            plc.handle.sorter_state(),
            SorterState {
                bins_full: vec![3],
                jam: false
            }
        );
        assert_eq!(plc.handle.items(3), 20);
        plc.handle.empty_bin(3);
        plc.handle.empty_bin(0);
        assert_eq!(plc.handle.sorter_state(), SorterState::default());
    }
}
