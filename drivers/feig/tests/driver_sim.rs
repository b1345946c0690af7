//! The driver against the simulator over an in-memory stream: every operation reaches the
//! virtual tag, refusals are values, faults are errors or counted skips.

use std::time::Duration;

use rfidgw_driver::{HfReader, LineStats, ReaderRefusal, Uid};
use rfidgw_feig::driver::Timing;
use rfidgw_feig::frame::{OutputMode, SetOutput};
use rfidgw_feig::sim::Fault;
use rfidgw_feig::{FeigReader, FeigSimulator, SimHandle, VirtualTag};
use tokio::io::DuplexStream;

fn uid(text: &str) -> Uid {
    Uid::from_hex(text).unwrap()
}

const BOOK: &str = "E004010031269117";

fn book() -> VirtualTag {
    let mut tag = VirtualTag::new(uid(BOOK));
    tag.memory[..8].copy_from_slice(&[0x11, 0x01, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36]);
    tag
}

fn reader_with(tags: Vec<VirtualTag>) -> (FeigReader<DuplexStream>, SimHandle) {
    let sim = FeigSimulator::new(tags);
    let handle = sim.handle();
    let timing = Timing {
        reply_timeout: Duration::from_millis(300),
        psst: Duration::from_millis(5),
        inter_char_gap: None,
    };
    let reader = FeigReader::new(sim.spawn_duplex(), 0xFF, timing, LineStats::new());
    (reader, handle)
}

#[tokio::test(start_paused = true)]
async fn inventory_lists_the_tags_in_the_field_and_fetches_the_rest_with_more() {
    let tags: Vec<VirtualTag> = ["E004010000000001", "E004010000000002", "E004010000000003"]
        .iter()
        .map(|u| VirtualTag::new(uid(u)))
        .collect();
    let (mut reader, sim) = reader_with(tags);
    sim.set_max_per_reply(1);
    let seen = reader.inventory(None).await.unwrap().unwrap();
    let uids: Vec<String> = seen.iter().map(|e| e.uid.to_string()).collect();
    assert_eq!(
        uids,
        ["E004010000000001", "E004010000000002", "E004010000000003"]
    );
    assert_eq!(sim.requests(), 3, "one inventory plus two MORE rounds");

    sim.remove_tag(&uid("E004010000000002"));
    sim.set_max_per_reply(0);
    assert_eq!(reader.inventory(None).await.unwrap().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_empty_field_is_a_no_transponder_answer_not_an_error() {
    let (mut reader, _sim) = reader_with(Vec::new());
    assert_eq!(
        reader.inventory(None).await.unwrap(),
        Err(ReaderRefusal::NoTransponder)
    );
}

#[tokio::test(start_paused = true)]
async fn an_afi_filtered_inventory_sees_only_matching_tags() {
    let mut on_loan = VirtualTag::new(uid("E004010000000009"));
    on_loan.afi = 0xC2;
    let (mut reader, _sim) = reader_with(vec![book(), on_loan]);
    let secured = reader.inventory(Some(0x07)).await.unwrap().unwrap();
    assert_eq!(secured.len(), 1);
    assert_eq!(secured[0].uid, uid(BOOK));
}

#[tokio::test(start_paused = true)]
async fn blocks_arrive_byte_reversed_as_iso_host_sends_them_and_write_back_the_same_way() {
    let (mut reader, sim) = reader_with(vec![book()]);
    let data = reader.read_blocks(&uid(BOOK), 0, 2).await.unwrap().unwrap();
    // Tag memory 11 01 31 32 | 33 34 35 36, sent MSB first per block.
    assert_eq!(data, [0x32, 0x31, 0x01, 0x11, 0x36, 0x35, 0x34, 0x33]);

    // 40 blocks take two B0 23 calls (at most 128 data bytes each).
    let before = sim.requests();
    let all = reader
        .read_blocks(&uid(BOOK), 0, 28)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 28 * 4);
    assert_eq!(sim.requests() - before, 1);

    reader
        .write_blocks(&uid(BOOK), 2, &[0x44, 0x43, 0x42, 0x41])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.tag(&uid(BOOK)).unwrap().memory[8..12],
        [0x41, 0x42, 0x43, 0x44]
    );
    assert_eq!(
        reader.read_blocks(&uid(BOOK), 2, 1).await.unwrap().unwrap(),
        [0x44, 0x43, 0x42, 0x41]
    );
}

#[tokio::test(start_paused = true)]
async fn afi_and_eas_writes_reach_the_tag_and_read_back() {
    let (mut reader, sim) = reader_with(vec![book()]);
    let book = uid(BOOK);
    reader.write_afi(&book, 0xC2).await.unwrap().unwrap();
    assert_eq!(sim.tag(&book).unwrap().afi, 0xC2);
    assert_eq!(reader.read_afi(&book).await.unwrap(), Ok(0xC2));

    assert_eq!(reader.read_eas(&book).await.unwrap(), Ok(false));
    reader.write_eas(&book, true).await.unwrap().unwrap();
    assert!(sim.tag(&book).unwrap().eas);
    assert_eq!(reader.read_eas(&book).await.unwrap(), Ok(true));
    reader.write_eas(&book, false).await.unwrap().unwrap();
    assert_eq!(reader.read_eas(&book).await.unwrap(), Ok(false));
}

#[tokio::test(start_paused = true)]
async fn the_reader_s_no_is_a_typed_refusal() {
    let (mut reader, _sim) = reader_with(vec![book()]);
    let absent = uid("E0040100FFFFFFFF");
    assert_eq!(
        reader.write_afi(&absent, 0x07).await.unwrap(),
        Err(ReaderRefusal::NoTransponder)
    );
    let Err(ReaderRefusal::Status { code, meaning }) =
        reader.read_blocks(&uid(BOOK), 27, 2).await.unwrap()
    else {
        panic!("reading past the last block must be refused");
    };
    assert_eq!(code, 0x95);
    assert!(meaning.contains("block not available"), "{meaning}");
    let Err(ReaderRefusal::Status { code, .. }) = reader.write_afi(&uid("E004"), 7).await.unwrap()
    else {
        panic!("a short UID is refused before anything is sent");
    };
    assert_eq!(code, 0x11);
}

#[tokio::test(start_paused = true)]
async fn garbage_before_a_reply_is_skipped_and_counted() {
    let (mut reader, sim) = reader_with(vec![book()]);
    sim.inject(Fault::Garbage(vec![0xFF, 0x00, 0x13, 0x37]));
    assert_eq!(reader.inventory(None).await.unwrap().unwrap().len(), 1);
    let counters = reader.line_counters();
    assert_eq!(counters.bytes_skipped, 4);
    assert_eq!(counters.frames_ok, 1);
}

#[tokio::test(start_paused = true)]
async fn a_missing_reply_is_a_timeout_error_and_the_next_request_works() {
    let (mut reader, sim) = reader_with(vec![book()]);
    sim.inject(Fault::NoReply);
    let err = reader.inventory(None).await.unwrap_err();
    assert!(
        matches!(err, rfidgw_driver::DeviceError::Timeout(_)),
        "{err}"
    );
    assert_eq!(reader.line_counters().timeouts, 1);
    assert_eq!(reader.inventory(None).await.unwrap().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reply_with_a_broken_crc_is_counted_and_not_believed() {
    let (mut reader, sim) = reader_with(vec![book()]);
    sim.inject(Fault::CorruptCrc);
    assert!(reader.inventory(None).await.is_err());
    let counters = reader.line_counters();
    assert_eq!(counters.bad_frames, 1);
    assert_eq!(counters.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn unplugging_the_reader_ends_the_line_with_an_error() {
    let (mut reader, sim) = reader_with(vec![book()]);
    assert!(reader.inventory(None).await.is_ok());
    sim.unplug();
    let err = reader.inventory(None).await.unwrap_err();
    assert!(
        matches!(err, rfidgw_driver::DeviceError::Transport(_)),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn outputs_reach_the_reader_and_light_barrier_inputs_read_back_with_changes() {
    let (mut reader, sim) = reader_with(Vec::new());
    let alarm = SetOutput::new(OutputMode::On, OutputMode::Flash, OutputMode::Off, 30, 30);
    reader.set_output(alarm).await.unwrap().unwrap();
    assert_eq!(sim.outputs(), [alarm]);

    sim.set_inputs(0b001);
    let inputs = reader.get_input().await.unwrap().unwrap();
    assert_eq!((inputs.levels, inputs.changed), (0b001, 0b001));
    let again = reader.get_input().await.unwrap().unwrap();
    assert_eq!((again.levels, again.changed), (0b001, 0b000));
    assert!(!reader.software_version().await.unwrap().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn requests_keep_the_psst_silence_after_each_reply() {
    let (mut reader, _sim) = reader_with(vec![book()]);
    let start = tokio::time::Instant::now();
    for _ in 0..10 {
        reader.inventory(None).await.unwrap().unwrap();
    }
    // Nine gaps of at least 5 ms between ten requests (paused clock: exact, not a timing test).
    assert!(tokio::time::Instant::now() - start >= Duration::from_millis(45));
}
