//! The driver and the virtual pad over a real pseudo-terminal pair (PROTOCOLS.md §6): the
//! pad serves the master side, the driver opens the slave by its path through the serial
//! transport, exactly as it opens `/dev/serial/by-id/…` on a site.
//!
//! A pty does real I/O, so these tests run on real time (paused time would advance past
//! the command timeouts while the kernel moves bytes); nothing sleeps, every wait is bounded.

use std::time::Duration;

use rfidgw_3m810::settings::LINE_DEFAULTS;
use rfidgw_3m810::{DriverConfig, M3m810Reader, SimPad, VirtualTag};
use rfidgw_driver::transport::{SerialConfig, serial};
use rfidgw_driver::{HfReader, ReaderRefusal, Uid};
use tokio_serial::SerialStream;

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];

fn pad_on_pty(pad: &SimPad) -> String {
    pad.serve_on_pty().expect("pty pair").display().to_string()
}

fn open(path: &str) -> M3m810Reader<SerialStream> {
    let config = SerialConfig {
        path: path.into(),
        baud: None,
        parity: None,
        data_bits: None,
        stop_bits: None,
    };
    let stream = serial::open(&config, LINE_DEFAULTS).expect("open the pty slave");
    M3m810Reader::new(
        stream,
        DriverConfig {
            command_timeout: Duration::from_secs(2),
            retry_pause: Duration::from_millis(1),
            ..DriverConfig::default()
        },
    )
}

#[tokio::test]
async fn afi_and_eas_writes_cross_the_pty_reach_the_tag_and_read_back_despite_transient_06() {
    let pad = SimPad::new();
    pad.place(VirtualTag {
        afi: 0x07,
        ..VirtualTag::new(UID)
    });
    let mut reader = open(&pad_on_pty(&pad));
    let uid = Uid::new(UID);

    let seen = reader.inventory(None).await.unwrap().unwrap();
    assert_eq!(seen[0].uid, uid);

    pad.fail_next_writes(2);
    let afi = reader
        .write_afi_verified(&uid, 0xC2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((afi.read_back, afi.attempts), (Some(0xC2), 3));
    assert_eq!(pad.tag(&UID).unwrap().afi, 0xC2);
    assert_eq!(reader.read_afi(&uid).await.unwrap(), Ok(0xC2));

    pad.fail_next_writes(1);
    let eas = reader
        .write_eas_verified(&uid, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((eas.read_back, eas.attempts), (Some(true), 2));
    assert!(pad.tag(&UID).unwrap().eas);
    assert_eq!(reader.read_eas(&uid).await.unwrap(), Ok(true));
    assert_eq!(pad.writes_refused(), 3);
}

#[tokio::test]
async fn garbage_on_the_pty_is_skipped_and_counted() {
    let pad = SimPad::new();
    pad.place(VirtualTag::new(UID));
    let mut reader = open(&pad_on_pty(&pad));
    pad.inject_garbage(b"\x00\x13noise\xD6");
    let uid = Uid::new(UID);
    assert_eq!(reader.read_afi(&uid).await.unwrap(), Ok(0x00));
    let counters = reader.stats().snapshot();
    assert_eq!(counters.bytes_skipped, 8);
    assert_eq!(counters.frames_ok, 1);
}

#[tokio::test]
async fn a_tag_taken_off_the_pad_answers_no_transponder() {
    let pad = SimPad::new();
    pad.place(VirtualTag::new(UID));
    let mut reader = open(&pad_on_pty(&pad));
    pad.remove(&UID);
    let uid = Uid::new(UID);
    assert_eq!(
        reader.read_afi(&uid).await.unwrap(),
        Err(ReaderRefusal::NoTransponder)
    );
    assert_eq!(reader.inventory(None).await.unwrap(), Ok(Vec::new()));
}
