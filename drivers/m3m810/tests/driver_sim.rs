//! The driver against the virtual pad over an in-memory stream: real frames both ways.

use rfidgw_3m810::driver::DriverError;
use rfidgw_3m810::frame::{Frame, Reply, Request};
use rfidgw_3m810::{CheckEasForm, DriverConfig, M3m810Reader, SimPad, VirtualTag};
use rfidgw_driver::{HfReader, ReaderRefusal, Uid};
use tokio::io::DuplexStream;

const UID: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x17];
const OTHER: [u8; 8] = [0xE0, 0x04, 0x01, 0x00, 0x31, 0x26, 0x91, 0x18];

fn uid() -> Uid {
    Uid::new(UID)
}

fn tag_with_memory() -> VirtualTag {
    let memory: Vec<u8> = (0u8..112).collect();
    VirtualTag {
        afi: 0x07,
        dsfid: 0x3E,
        memory,
        ..VirtualTag::new(UID)
    }
}

fn reader(pad: &SimPad) -> M3m810Reader<DuplexStream> {
    M3m810Reader::new(pad.spawn_duplex(), DriverConfig::default())
}

#[tokio::test(start_paused = true)]
async fn inventory_lists_the_tags_on_the_pad_and_only_matching_afis_when_asked() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.place(VirtualTag {
        afi: 0xC2,
        ..VirtualTag::new(OTHER)
    });
    let mut reader = reader(&pad);
    let all = reader.inventory(None).await.unwrap().unwrap();
    let uids: Vec<String> = all.iter().map(|e| e.uid.to_string()).collect();
    assert_eq!(uids, ["E004010031269117", "E004010031269118"]);
    assert_eq!(all[0].dsfid, None, "options 05 do not ask for DSFIDs");
    let secured = reader.inventory(Some(0x07)).await.unwrap().unwrap();
    assert_eq!(secured.len(), 1);
    assert_eq!(secured[0].uid, uid());
}

#[tokio::test(start_paused = true)]
async fn inventory_with_dsfid_option_reports_each_tags_dsfid() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    let config = DriverConfig {
        inventory_options: 0x07,
        ..DriverConfig::default()
    };
    let mut reader = M3m810Reader::new(pad.spawn_duplex(), config);
    let all = reader.inventory(None).await.unwrap().unwrap();
    assert_eq!(all[0].dsfid, Some(0x3E));
}

#[tokio::test(start_paused = true)]
async fn a_long_read_is_split_into_commands_and_returns_memory_in_block_order() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    let mut reader = reader(&pad);
    let memory = reader.read_blocks(&uid(), 2, 12).await.unwrap().unwrap();
    assert_eq!(memory, (8u8..56).collect::<Vec<_>>());
    // Two read commands (8 + 4 blocks).
    assert_eq!(pad.requests_seen(), 2);
}

#[tokio::test(start_paused = true)]
async fn reading_past_the_end_of_memory_is_a_refusal_not_a_line_error() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    let mut reader = reader(&pad);
    let refusal = reader
        .read_blocks(&uid(), 26, 4)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refusal, ReaderRefusal::Status { code: 0x11, .. }),
        "{refusal:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn write_afi_retries_transient_06_and_returns_what_it_read_back() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.fail_next_writes(2);
    let mut reader = reader(&pad);
    let check = reader
        .write_afi_verified(&uid(), 0xC2)
        .await
        .unwrap()
        .unwrap();
    assert!(check.confirmed());
    assert_eq!(check.read_back, Some(0xC2));
    assert_eq!(check.attempts, 3);
    assert_eq!(pad.writes_refused(), 2);
    assert_eq!(pad.tag(&UID).unwrap().afi, 0xC2);
}

#[tokio::test(start_paused = true)]
async fn a_write_answered_ok_but_not_done_is_caught_by_the_read_back_and_retried() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.drop_next_writes_silently(1);
    let mut reader = reader(&pad);
    let check = reader
        .write_eas_verified(&uid(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((check.read_back, check.attempts), (Some(true), 2));
    assert!(pad.tag(&UID).unwrap().eas);
}

#[tokio::test(start_paused = true)]
async fn blocks_written_are_read_back_and_reach_the_tag() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.fail_next_writes(1);
    let mut reader = reader(&pad);
    let data = [0xAA, 0xBB, 0xCC, 0xDD, 1, 2, 3, 4];
    reader
        .write_blocks(&uid(), 5, &data)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pad.tag(&UID).unwrap().memory[20..28], &data);
    let refusal = reader
        .write_blocks(&uid(), 0, &[1, 2, 3])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refusal, ReaderRefusal::Status { code: 0x32, .. }),
        "{refusal:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn eas_off_and_tag_gone_are_told_apart_although_both_answer_06() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    let mut reader = reader(&pad);
    assert_eq!(reader.read_eas(&uid()).await.unwrap(), Ok(false));
    reader.write_eas(&uid(), true).await.unwrap().unwrap();
    assert_eq!(reader.read_eas(&uid()).await.unwrap(), Ok(true));
    reader.write_eas(&uid(), false).await.unwrap().unwrap();
    assert_eq!(reader.read_eas(&uid()).await.unwrap(), Ok(false));
    pad.remove(&UID);
    assert_eq!(
        reader.read_eas(&uid()).await.unwrap(),
        Err(ReaderRefusal::NoTransponder)
    );
    assert_eq!(
        reader.write_eas(&uid(), false).await.unwrap(),
        Err(ReaderRefusal::NoTransponder),
        "a reset EAS on a tag that left must not look confirmed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_locked_afi_is_refused_at_once_without_retries() {
    let pad = SimPad::new();
    pad.place(VirtualTag {
        afi_locked: true,
        ..tag_with_memory()
    });
    let mut reader = reader(&pad);
    let refusal = reader.write_afi(&uid(), 0xC2).await.unwrap().unwrap_err();
    assert_eq!(
        refusal,
        ReaderRefusal::Status {
            code: 0x12,
            meaning: "locked".into()
        }
    );
    assert_eq!(pad.requests_seen(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_are_bounded_and_end_in_no_transponder() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.fail_next_writes(1000);
    let config = DriverConfig {
        write_attempts: 4,
        ..DriverConfig::default()
    };
    let mut reader = M3m810Reader::new(pad.spawn_duplex(), config);
    let outcome = reader.write_afi_verified(&uid(), 0xC2).await.unwrap();
    assert_eq!(outcome, Err(ReaderRefusal::NoTransponder));
    assert_eq!(pad.writes_refused(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_command_times_out_is_counted_and_the_next_one_works() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.leave_unanswered(1);
    let mut reader = reader(&pad);
    let err = reader.transact(&Request::Version).await.unwrap_err();
    assert!(
        matches!(err, DriverError::Timeout { command: 0x11, .. }),
        "{err}"
    );
    assert_eq!(reader.stats().snapshot().timeouts, 1);
    assert_eq!(
        reader.version().await.unwrap(),
        Ok([0x0A, 0x05, 0x00, 0x02])
    );
}

#[tokio::test(start_paused = true)]
async fn garbage_before_a_reply_is_skipped_and_counted() {
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    pad.inject_garbage(&[0x00, 0xFF, 0xD6, 0x00]);
    let mut reader = reader(&pad);
    assert_eq!(reader.read_afi(&uid()).await.unwrap(), Ok(0x07));
    let counters = reader.stats().snapshot();
    assert_eq!(counters.bytes_skipped, 4);
    assert_eq!(counters.frames_ok, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unplugged_pad_closes_the_line() {
    let pad = SimPad::new();
    let mut reader = reader(&pad);
    assert!(reader.version().await.unwrap().is_ok());
    pad.unplug();
    let err = reader.transact(&Request::Version).await.unwrap_err();
    assert!(
        matches!(err, DriverError::Closed | DriverError::Codec(_)),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reply_for_another_tag_is_not_taken_as_the_answer() {
    // A late reply about OTHER (from an earlier, timed-out command) sits in front of the
    // real one; the driver skips it by its UID echo.
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    let stale = Reply::GetAfi {
        uid: OTHER,
        afi: 0x99,
    }
    .to_frame()
    .to_bytes()
    .unwrap();
    pad.inject_garbage(&stale);
    let mut reader = reader(&pad);
    assert_eq!(reader.read_afi(&uid()).await.unwrap(), Ok(0x07));
}

#[tokio::test(start_paused = true)]
async fn a_pad_answering_check_eas_with_the_uid_only_keeps_reading_and_reports_eas() {
    // The firmware of issue 8: a secured tag's check EAS reply carries no EAS byte. Before
    // the fix every such reply was a line error and the device restarted forever.
    let pad = SimPad::new();
    pad.set_check_eas_form(CheckEasForm::UidOnly);
    pad.place(VirtualTag {
        eas: true,
        ..tag_with_memory()
    });
    pad.place(VirtualTag::new(OTHER));
    let mut reader = reader(&pad);
    for round in 0..5 {
        let seen = reader.inventory(None).await.unwrap().unwrap();
        assert_eq!(seen.len(), 2, "round {round}");
        assert_eq!(
            reader.read_eas(&uid()).await.unwrap(),
            Ok(true),
            "round {round}: secured tag"
        );
        assert_eq!(
            reader.read_eas(&Uid::new(OTHER)).await.unwrap(),
            Ok(false),
            "round {round}: unsecured tag (error 06, tag present)"
        );
    }
    // EAS writes read back through the same reply form.
    let check = reader
        .write_eas_verified(&uid(), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((check.read_back, check.attempts), (Some(false), 1));
    reader.write_eas(&uid(), true).await.unwrap().unwrap();
    assert!(pad.tag(&UID).unwrap().eas);
    let counters = reader.stats().snapshot();
    assert_eq!((counters.timeouts, counters.bytes_skipped), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_check_eas_reply_that_fits_no_form_is_a_refusal_and_the_next_command_works() {
    // UID, then two bytes where at most one EAS byte belongs: the attribute is unknown,
    // the line is fine.
    let pad = SimPad::new();
    pad.place(tag_with_memory());
    let mut odd = vec![0x00];
    odd.extend_from_slice(&UID);
    odd.extend([0x01, 0x02]);
    let mut reader = reader(&pad);
    // The pad's real answer to the request below follows the odd one; the driver takes
    // the odd one as the answer and skips the real one on the next command.
    pad.inject_garbage(&Frame::new(0x03, odd).to_bytes().unwrap());
    let refusal = reader.read_eas(&uid()).await.unwrap().unwrap_err();
    let ReaderRefusal::Status { code, meaning } = &refusal else {
        panic!("{refusal:?}")
    };
    assert_eq!(*code, 0x00);
    assert!(
        meaning.contains("check EAS") && meaning.contains("unexpected bytes"),
        "{meaning}"
    );
    assert_eq!(reader.read_afi(&uid()).await.unwrap(), Ok(0x07));
    assert_eq!(reader.read_eas(&uid()).await.unwrap(), Ok(false));
}
