//! Property: the write-then-verify loop against the virtual pad, for any mix of transient
//! `06` refusals and silently dropped writes, ends confirmed exactly when the faults left
//! an attempt to succeed, after exactly that many attempts, and never writes anything else.

use proptest::prelude::*;
use rfidgw_3m810::{DriverConfig, M3m810Reader, SimPad, VirtualTag};
use rfidgw_driver::{ReaderRefusal, Uid};

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn write_afi_is_confirmed_iff_an_attempt_was_left_after_the_faults(
        refused in 0u32..6,
        dropped in 0u32..6,
        attempts in 1u32..8,
        afi in any::<u8>(),
    ) {
        let (outcome, tag_afi) = run(async move {
            let pad = SimPad::new();
            pad.place(VirtualTag { afi: afi.wrapping_add(1), ..VirtualTag::new(UID) });
            pad.fail_next_writes(refused);
            pad.drop_next_writes_silently(dropped);
            let config = DriverConfig { write_attempts: attempts, ..DriverConfig::default() };
            let mut reader = M3m810Reader::new(pad.spawn_duplex(), config);
            let outcome = reader.write_afi_verified(&Uid::new(UID), afi).await.unwrap();
            (outcome, pad.tag(&UID).unwrap().afi)
        });
        let needed = refused + dropped + 1;
        if needed <= attempts {
            let check = outcome.unwrap();
            prop_assert!(check.confirmed());
            prop_assert_eq!(check.attempts, needed);
            prop_assert_eq!(tag_afi, afi);
        } else if dropped == 0 || refused >= attempts {
            // Every attempt was refused: nothing was read back.
            prop_assert_eq!(outcome, Err(ReaderRefusal::NoTransponder));
            prop_assert_eq!(tag_afi, afi.wrapping_add(1));
        } else {
            // Some writes "succeeded" without effect: the read-back shows the old AFI.
            let check = outcome.unwrap();
            prop_assert!(!check.confirmed());
            prop_assert_eq!(check.read_back, Some(afi.wrapping_add(1)));
            prop_assert_eq!(check.attempts, attempts);
        }
    }
}
