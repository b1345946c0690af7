//! Fuzz what the Modbus sorter driver makes of its input. Arbitrary bytes as the PLC's
//! reply to one request, in RTU and in TCP framing, must never panic the link (tokio-modbus's
//! framing plus rfidgw's reply checks) and are accepted only when they answer the request:
//! a read returns exactly the inputs asked for, a write only passes as its echo. An
//! arbitrary register map must be checked without panicking, and a map that passes turns
//! any bin into a write inside the map (or a refusal) and any input bits into a state that
//! names only the map's bins.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw_modbus::link::{Framing, Replayed, replay};
use rfidgw_modbus::map::{
    DivertSettings, InputWindow, MAX_READ_INPUTS, MapSettings, RegisterMap, Write,
};
use rfidgw_modbus::reply::{Op, Reply};

fuzz_target!(|input: &[u8]| {
    // Seven bytes choose the request, the framing and the map; the rest is the reply.
    let [selector, unit, a0, a1, b0, b1, shape, reply @ ..] = input else {
        return;
    };
    let a = u16::from_be_bytes([*a0, *a1]);
    let b = u16::from_be_bytes([*b0, *b1]);
    check_map(*selector, *shape, a, b, reply);

    let framing = if selector & 0x01 == 0 {
        Framing::Rtu
    } else {
        Framing::Tcp
    };
    let op = match (selector >> 1) & 0x03 {
        0 | 1 => Op::ReadInputs(InputWindow {
            first: a,
            count: 1 + b % MAX_READ_INPUTS,
        }),
        2 => Op::Write(Write::Register {
            address: a,
            value: b,
        }),
        _ => Op::Write(Write::Coil {
            address: a,
            on: b & 1 == 1,
        }),
    };
    let Ok(Replayed { outcome, .. }) = replay(framing, *unit, op, reply) else {
        return;
    };
    match (op, outcome) {
        (Op::ReadInputs(window), Ok(Ok(Reply::Inputs(bits)))) => {
            assert_eq!(bits.len(), usize::from(window.count));
        }
        (Op::Write(_), Ok(Ok(Reply::Written))) | (_, Ok(Err(_)) | Err(_)) => {}
        (op, Ok(Ok(reply))) => panic!("{op} accepted {reply:?}"),
    }
});

/// A register map from the fuzzer's bytes: whatever it is, checking it never panics; when
/// it passes, its plans and states stay inside it.
fn check_map(selector: u8, shape: u8, a: u16, b: u16, bytes: &[u8]) {
    let bins = u16::from(shape & 0x0F);
    let addresses: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let take = |from: usize| -> Vec<u16> {
        addresses
            .iter()
            .copied()
            .skip(from)
            .take(usize::from(bins))
            .collect()
    };
    let divert = if shape & 0x10 == 0 {
        DivertSettings::Register {
            register: a,
            clear_after_ms: u64::from(b % 3),
        }
    } else {
        DivertSettings::Coils {
            coils: take(0),
            pulse_ms: u64::from(b),
        }
    };
    let settings = MapSettings {
        bins,
        divert,
        bin_full: if shape & 0x20 == 0 {
            Vec::new()
        } else {
            take(usize::from(bins))
        },
        jam: (shape & 0x40 != 0).then_some(a ^ b),
        active_low: shape & 0x80 != 0,
    };
    let Ok(map) = RegisterMap::new(&settings) else {
        return;
    };
    if let Some(window) = map.input_window() {
        assert!((1..=MAX_READ_INPUTS).contains(&window.count));
    }
    for bin in [
        0,
        1,
        bins,
        bins.saturating_add(1),
        u16::from(selector),
        u16::MAX,
    ] {
        match map.divert_plan(bin) {
            Ok(plan) => {
                assert!((1..=bins).contains(&bin));
                for write in [Some(plan.write), plan.release.map(|(_, w)| w)]
                    .into_iter()
                    .flatten()
                {
                    match (write, &settings.divert) {
                        (
                            Write::Register { address, value },
                            DivertSettings::Register { register, .. },
                        ) => {
                            assert_eq!(address, *register);
                            assert!(value == bin || value == 0);
                        }
                        (Write::Coil { address, .. }, DivertSettings::Coils { coils, .. }) => {
                            assert_eq!(address, coils[usize::from(bin) - 1]);
                        }
                        (write, divert) => panic!("{write} for {divert:?}"),
                    }
                }
            }
            Err(refused) => assert!(bin == 0 || bin > bins, "{refused}"),
        }
    }
    let bits: Vec<bool> = bytes.iter().map(|byte| byte & 1 == 1).collect();
    let state = map.sorter_state(&bits);
    assert!(state.bins_full.windows(2).all(|w| w[0] < w[1]));
    assert!(state.bins_full.iter().all(|bin| (1..=bins).contains(bin)));
    assert!(!state.jam || settings.jam.is_some());
}
