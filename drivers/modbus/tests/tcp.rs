//! The Modbus sorter driver against a real tokio-modbus server (the simulated sorter) over
//! loopback TCP, with Modbus TCP and with RTU framing through a "serial server", in paused
//! time: diverts reach the PLC, bins fill, a jam is raised and cleared and every change
//! reaches the event sink; refusals are answers, a silent or unplugged PLC ends the run.

mod common;

use std::time::Duration;

use common::{Running, settings, start, state};
use rfidgw_driver::{
    CommandAnswer, CommandError, DeviceCommand, DeviceError, DeviceEvent, LinkState, ReaderRefusal,
    Uid,
};
use rfidgw_modbus::map::Write;
use rfidgw_modbus::{Fault, ModbusDevice, ModbusSettings, RegisterMap, SimHandle, SorterSimulator};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WITHIN: Duration = Duration::from_secs(2);

/// Six bins, the bin number into holding register 100, bin-full on inputs 0–5, jam on 8.
fn register_sorter(addr: &str, framing: &str) -> ModbusSettings {
    settings(&format!(
        r#"
        [transport]
        kind = "tcp"
        addr = "{addr}"
        [map]
        bins = 6
        bin_full = [0, 1, 2, 3, 4, 5]
        jam = 8
        divert = {{ kind = "register", register = 100 }}
        [driver]
        unit = 3
        {framing}
        reply_timeout_ms = 400
        poll_interval_ms = 100
        health_interval_ms = 1000
        "#
    ))
}

/// Starts a simulated sorter for `settings` on a loopback port; returns its remote
/// control and the port's address.
async fn plc(settings: &ModbusSettings, handle: SimHandle, capacity: u32) -> (SimHandle, String) {
    let map = RegisterMap::new(&settings.map).unwrap();
    let sim = settings.simulator.clone();
    let simulator = SorterSimulator::with_handle(
        handle,
        map,
        settings.driver.unit,
        rfidgw_modbus::settings::SimulatorSettings { capacity, ..sim },
    );
    let handle = simulator.handle();
    let addr = simulator
        .spawn_loopback(settings.framing(), CancellationToken::new())
        .await
        .unwrap();
    (handle, addr.to_string())
}

/// A register sorter over TCP with its PLC, running.
async fn running(framing: &str, capacity: u32) -> (Running, SimHandle) {
    let template = register_sorter("127.0.0.1:1", framing);
    let (sim, addr) = plc(&template, SimHandle::default(), capacity).await;
    let device = ModbusDevice::new(register_sorter(&addr, framing)).unwrap();
    (start(device).await, sim)
}

async fn divert(sorter: &Running, bin: u16) -> rfidgw_driver::CommandResult {
    sorter
        .handle
        .call(DeviceCommand::Divert { bin }, WITHIN)
        .await
}

#[tokio::test(start_paused = true)]
async fn a_bin_fills_and_a_jam_is_raised_and_cleared_and_each_state_reaches_the_sink() {
    for framing in ["", "framing = \"rtu\""] {
        let (mut sorter, sim) = running(framing, 2).await;
        assert_eq!(sorter.next_state().await, state(&[], false), "{framing}");
        let health = sorter
            .next_matching(|e| matches!(e, DeviceEvent::Health { .. }))
            .await;
        assert!(
            matches!(
                health,
                DeviceEvent::Health {
                    link: LinkState::Connected,
                    ..
                }
            ),
            "{health:?}"
        );

        for _ in 0..2 {
            assert_eq!(divert(&sorter, 4).await, Ok(Ok(CommandAnswer::Done)));
        }
        assert_eq!(sim.diverts(), [4, 4]);
        assert_eq!(sorter.next_state().await, state(&[4], false), "{framing}");

        sim.set_jam(true);
        assert_eq!(sorter.next_state().await, state(&[4], true));
        sim.set_jam(false);
        assert_eq!(sorter.next_state().await, state(&[4], false));
        sim.empty_bin(4);
        assert_eq!(sorter.next_state().await, state(&[], false));
        sorter.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_coil_per_bin_is_pulsed_on_for_pulse_ms_then_released() {
    let text = |addr: &str| {
        format!(
            r#"
            transport = {{ kind = "tcp", addr = "{addr}" }}
            [map]
            bins = 3
            bin_full = [10, 11, 12]
            divert = {{ kind = "coils", coils = [16, 17, 18], pulse_ms = 250 }}
            [driver]
            poll_interval_ms = 100
            "#
        )
    };
    let (sim, addr) = plc(&settings(&text("127.0.0.1:1")), SimHandle::default(), 5).await;
    let mut sorter = start(ModbusDevice::new(settings(&text(&addr))).unwrap()).await;
    sorter.next_state().await;
    let off = |address| Write::Coil { address, on: false };
    let on = |address| Write::Coil { address, on: true };
    // At start every diverter is put at rest: a run that ended mid-pulse left one on.
    let rest: Vec<Write> = sim.writes().iter().map(|(_, w)| *w).collect();
    assert_eq!(rest, [off(16), off(17), off(18)]);

    assert_eq!(divert(&sorter, 3).await, Ok(Ok(CommandAnswer::Done)));
    assert_eq!(divert(&sorter, 1).await, Ok(Ok(CommandAnswer::Done)));
    // Long enough for both releases, and some polls.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let writes = sim.writes();
    let after_rest = &writes[3..];
    let kinds: Vec<Write> = after_rest.iter().map(|(_, w)| *w).collect();
    assert_eq!(kinds, [on(18), on(16), off(18), off(16)]);
    let pulse = |on_at: Instant, off_at: Instant| off_at - on_at;
    assert_eq!(
        pulse(after_rest[0].0, after_rest[2].0),
        Duration::from_millis(250)
    );
    assert_eq!(
        pulse(after_rest[1].0, after_rest[3].0),
        Duration::from_millis(250)
    );
    assert_eq!(sim.diverts(), [3, 1]);
    sorter.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_coil_still_on_at_shutdown_is_released() {
    let text = |addr: &str| {
        format!(
            "transport = {{ kind = \"tcp\", addr = \"{addr}\" }}\n[map]\nbins = 2\n\
             divert = {{ kind = \"coils\", coils = [1, 2], pulse_ms = 5000 }}"
        )
    };
    let (sim, addr) = plc(&settings(&text("127.0.0.1:1")), SimHandle::default(), 5).await;
    let mut sorter = start(ModbusDevice::new(settings(&text(&addr))).unwrap()).await;
    // No inputs mapped: the state is reported once, never full, never jammed.
    assert_eq!(sorter.next_state().await, state(&[], false));
    assert_eq!(divert(&sorter, 2).await, Ok(Ok(CommandAnswer::Done)));
    sorter.stop().await;
    let last = sim.writes().last().map(|(_, w)| *w);
    assert_eq!(
        last,
        Some(Write::Coil {
            address: 2,
            on: false
        })
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_are_answers_and_the_run_goes_on() {
    let (mut sorter, sim) = running("", 20).await;
    sorter.next_state().await;

    let out_of_range = divert(&sorter, 7).await;
    assert_eq!(
        out_of_range,
        Err(CommandError::Unsupported(
            "bin 7 is not on this sorter (its map has bins 1 to 6)".into()
        ))
    );
    let other = sorter
        .handle
        .call(
            DeviceCommand::ReadAfi {
                uid: Uid::new([0xE0, 0x04]),
            },
            WITHIN,
        )
        .await;
    assert_eq!(
        other,
        Err(CommandError::Unsupported(
            "read_afi: a Modbus sorter only diverts".into()
        ))
    );

    sim.inject(Fault::RefuseDivert(0x04));
    let refused = divert(&sorter, 1).await;
    let Ok(Err(ReaderRefusal::Status { code, meaning })) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(code, 0x04);
    assert_eq!(
        meaning,
        "write holding register 100 = 1: exception 04 Server device failure"
    );

    // The run is still there and serves the next divert; nothing reached the bins before.
    assert_eq!(divert(&sorter, 1).await, Ok(Ok(CommandAnswer::Done)));
    assert_eq!(sim.diverts(), [1]);
    // A busy PLC skips one poll and is asked again.
    sim.inject(Fault::Exception(0x06));
    sim.fill_bin(6);
    assert_eq!(sorter.next_state().await, state(&[6], false));
    sorter.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_command_whose_caller_gave_up_is_answered_expired_and_not_carried_out() {
    let (mut sorter, sim) = running("", 20).await;
    sorter.next_state().await;
    // A caller that waits no time at all: the envelope is in the mailbox, already expired.
    let result = sorter
        .handle
        .call(DeviceCommand::Divert { bin: 2 }, Duration::ZERO)
        .await;
    assert_eq!(result, Err(CommandError::Expired));
    // Give the loop time to take it out of the mailbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.diverts(), [] as [u16; 0]);
    assert_eq!(divert(&sorter, 2).await, Ok(Ok(CommandAnswer::Done)));
    assert_eq!(sim.diverts(), [2]);
    sorter.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_plc_that_stops_answering_ends_the_run_and_the_waiting_divert_by_its_deadline() {
    let (mut sorter, sim) = running("", 20).await;
    sorter.next_state().await;
    sim.inject(Fault::NoReply);
    let started = Instant::now();
    // Whichever request meets the silence (this divert's write, or a poll it waits
    // behind), the caller has its answer by its deadline: the broken line, or "expired"
    // when the run ended first (the supervisor then answers what is left).
    let result = divert(&sorter, 5).await;
    assert!(
        matches!(result, Err(CommandError::Line(_) | CommandError::Expired)),
        "{result:?}"
    );
    assert!(started.elapsed() <= WITHIN, "{:?}", started.elapsed());
    let err = sorter.failure().await;
    assert!(
        matches!(err, DeviceError::Timeout(d) if d == Duration::from_millis(400)),
        "{err}"
    );
    let health = sorter
        .next_matching(|e| {
            matches!(
                e,
                DeviceEvent::Health {
                    link: LinkState::Disconnected,
                    ..
                }
            )
        })
        .await;
    let DeviceEvent::Health { counters, .. } = health else {
        unreachable!()
    };
    assert_eq!(counters.timeouts, 1);
    assert!(counters.frames_ok >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_divert_with_a_short_deadline_is_answered_by_it_even_when_the_plc_is_silent() {
    let (mut sorter, sim) = running("", 20).await;
    sorter.next_state().await;
    // Let the next poll go through first, then make the divert's write get no reply.
    tokio::time::sleep(Duration::from_millis(150)).await;
    sim.inject(Fault::NoReply);
    let started = Instant::now();
    let result = sorter
        .handle
        .call(DeviceCommand::Divert { bin: 2 }, Duration::from_millis(150))
        .await;
    assert_eq!(result, Err(CommandError::Expired));
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    assert!(matches!(sorter.failure().await, DeviceError::Timeout(_)));
}

#[tokio::test(start_paused = true)]
async fn an_unplugged_plc_ends_the_run_and_a_rebuilt_device_finds_the_bins_as_they_were() {
    let template = register_sorter("127.0.0.1:1", "");
    let (sim, addr) = plc(&template, SimHandle::default(), 1).await;
    let mut sorter = start(ModbusDevice::new(register_sorter(&addr, "")).unwrap()).await;
    sorter.next_state().await;
    assert_eq!(divert(&sorter, 3).await, Ok(Ok(CommandAnswer::Done)));
    assert_eq!(sorter.next_state().await, state(&[3], false));

    sim.unplug();
    let err = sorter.failure().await;
    assert!(matches!(err, DeviceError::Transport(_)), "{err}");

    // The supervisor builds the device again; the PLC is back, on another port.
    let (_, addr) = plc(&template, sim.clone(), 1).await;
    let mut sorter = start(ModbusDevice::new(register_sorter(&addr, "")).unwrap()).await;
    assert_eq!(sorter.next_state().await, state(&[3], false));
    sorter.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_simulator_transport_is_a_sorter_that_fills_and_jams_by_itself() {
    let text = r#"
        transport = { kind = "simulator" }
        [map]
        bins = 3
        bin_full = [0, 1, 2]
        jam = 3
        divert = { kind = "register", register = 40 }
        [driver]
        poll_interval_ms = 100
        [simulator]
        capacity = 2
        jam_every = 3
        jam_clear_ms = 1000
        empty_after_ms = 5000
    "#;
    let mut device = ModbusDevice::new(settings(text)).unwrap();
    let sim = device.simulator();
    let mut sorter = start(device).await;
    assert_eq!(sorter.next_state().await, state(&[], false));
    divert(&sorter, 1).await.unwrap().unwrap();
    divert(&sorter, 1).await.unwrap().unwrap();
    assert_eq!(sorter.next_state().await, state(&[1], false));
    let jammed_at = Instant::now();
    divert(&sorter, 2).await.unwrap().unwrap(); // the third divert jams the conveyor
    assert_eq!(sorter.next_state().await, state(&[1], true));
    assert_eq!(sorter.next_state().await, state(&[1], false));
    let cleared = jammed_at.elapsed();
    assert!(
        cleared >= Duration::from_secs(1) && cleared <= Duration::from_millis(1200),
        "{cleared:?}"
    );
    assert_eq!(
        sorter.next_state().await,
        state(&[], false),
        "staff emptied bin 1"
    );
    assert_eq!(sim.diverts(), [1, 1, 2]);
    sorter.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cleared_register_goes_back_to_0_and_a_repeated_bin_is_written_afresh() {
    let text = |addr: &str| {
        format!(
            "transport = {{ kind = \"tcp\", addr = \"{addr}\" }}\n[map]\nbins = 4\n\
             divert = {{ kind = \"register\", register = 7, clear_after_ms = 100 }}"
        )
    };
    let (sim, addr) = plc(&settings(&text("127.0.0.1:1")), SimHandle::default(), 5).await;
    let mut sorter = start(ModbusDevice::new(settings(&text(&addr))).unwrap()).await;
    sorter.next_state().await;
    assert_eq!(divert(&sorter, 2).await, Ok(Ok(CommandAnswer::Done)));
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(divert(&sorter, 2).await, Ok(Ok(CommandAnswer::Done)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let register = |value| Write::Register { address: 7, value };
    let writes: Vec<(Duration, Write)> = {
        let all = sim.writes();
        let first = all[0].0;
        all.iter().map(|(at, w)| (*at - first, *w)).collect()
    };
    let ms = Duration::from_millis;
    assert_eq!(
        writes,
        [
            (ms(0), register(0)), // at rest when the run starts
            (ms(0), register(2)),
            (ms(40), register(0)), // the earlier divert's clear, sent early
            (ms(40), register(2)),
            (ms(140), register(0)),
        ]
    );
    assert_eq!(sim.diverts(), [2, 2]);
    sorter.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_plc_without_the_mapped_inputs_ends_the_run_naming_the_map_keys() {
    let (mut sorter, sim) = running("", 20).await;
    sorter.next_state().await;
    sim.inject(Fault::Exception(0x02));
    let err = sorter.failure().await;
    assert_eq!(
        err.to_string(),
        "configuration: the PLC answers read discrete inputs 0 to 8 with exception 02 \
         Illegal data address: check map.bin_full and map.jam against its program"
    );
}
