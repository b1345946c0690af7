//! Property tests for the MQTT device protocol: no payload panics the parser or makes it
//! quote the input at length, and whatever either side encodes, the other reads back the
//! same.

use std::time::Duration;

use proptest::prelude::*;
use rfidgw_driver::{DeviceCommand, OutputCommand, ReadBack, Signal, SorterState, TagRead, Uid};
use rfidgw_mqtt::protocol::{
    self, Channel, CommandMessage, DeviceMessage, MAX_MEMORY, MAX_UID_LEN, RefusalCode, Reply,
    ReplyData, ReplyOutcome,
};

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

fn uid() -> impl Strategy<Value = Uid> {
    prop::collection::vec(any::<u8>(), 1..=MAX_UID_LEN).prop_map(Uid::new)
}

fn signal() -> impl Strategy<Value = Signal> {
    prop::sample::select(vec![
        Signal::Unchanged,
        Signal::On,
        Signal::Off,
        Signal::Flash,
    ])
}

fn tag_read() -> impl Strategy<Value = TagRead> {
    (
        uid(),
        any::<Option<u8>>(),
        any::<Option<u8>>(),
        any::<Option<bool>>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..=MAX_MEMORY)),
        any::<Option<u8>>(),
    )
        .prop_map(|(uid, afi, dsfid, eas, memory, antenna)| TagRead {
            uid,
            afi,
            dsfid,
            eas,
            memory,
            antenna,
        })
}

fn command() -> impl Strategy<Value = DeviceCommand> {
    let blocks =
        prop::collection::vec(any::<[u8; 4]>(), 1..=255).prop_map(|blocks| blocks.concat());
    let ms = prop::option::of(0..=u64::from(u32::MAX));
    prop_oneof![
        uid().prop_map(|uid| DeviceCommand::ReadAfi { uid }),
        (uid(), any::<u8>()).prop_map(|(uid, afi)| DeviceCommand::WriteAfi { uid, afi }),
        uid().prop_map(|uid| DeviceCommand::ReadEas { uid }),
        (uid(), any::<bool>()).prop_map(|(uid, on)| DeviceCommand::WriteEas { uid, on }),
        (uid(), any::<u8>(), any::<u8>())
            .prop_map(|(uid, first, count)| DeviceCommand::ReadBlocks { uid, first, count }),
        (uid(), any::<u8>(), blocks).prop_map(|(uid, first, data)| DeviceCommand::WriteBlocks {
            uid,
            first,
            data
        }),
        (signal(), signal(), signal(), ms.clone(), ms).prop_map(
            |(beeper, red, green, signal_ms, relay_ms)| {
                DeviceCommand::Output(OutputCommand {
                    beeper,
                    red,
                    green,
                    signal_for: signal_ms.map(Duration::from_millis),
                    relay_for: relay_ms.map(Duration::from_millis),
                })
            }
        ),
        (1..=u16::MAX).prop_map(|bin| DeviceCommand::Divert { bin }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,60}".prop_filter("not blank", |t| !t.trim().is_empty())
}

fn reply() -> impl Strategy<Value = Reply> {
    let read_back = prop_oneof![
        Just(None),
        Just(Some(ReadBack::Confirmed)),
        "[ -~]{0,40}".prop_map(|found| Some(ReadBack::Differs { found })),
        "[ -~]{0,40}".prop_map(|reason| Some(ReadBack::NotRead { reason })),
    ];
    let done = (
        any::<Option<u8>>(),
        any::<Option<bool>>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        read_back,
        any::<Option<u32>>(),
    )
        .prop_map(|(afi, eas, data, read_back, attempts)| {
            ReplyOutcome::Done(ReplyData {
                afi,
                eas,
                data,
                read_back,
                attempts,
            })
        });
    let code = prop::sample::select(vec![
        RefusalCode::Refused,
        RefusalCode::NoTransponder,
        RefusalCode::Unsupported,
    ]);
    let refused = (code, text(), any::<Option<u8>>()).prop_map(|(code, error, status)| {
        ReplyOutcome::Refused {
            code,
            error,
            status,
        }
    });
    ("[a-z0-9-]{1,40}", prop_oneof![done, refused]).prop_map(|(id, outcome)| Reply { id, outcome })
}

proptest! {
    #[test]
    fn no_payload_panics_the_parsers_or_is_quoted_at_length(
        channel in channel(),
        payload in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let Err(problem) = protocol::parse_device_message(channel, &payload) {
            prop_assert!(problem.to_string().len() < 600, "{problem}");
        }
        if let Err(problem) = protocol::parse_command(&payload) {
            prop_assert!(problem.to_string().len() < 600, "{problem}");
        }
    }

    #[test]
    fn json_shaped_noise_never_panics_and_a_parsed_sorter_state_is_tidy(
        channel in channel(),
        payload in r#"\{("[a-z_]{1,9}":(-?[0-9]{1,6}|"[0-9A-Fa-f ]{0,12}"|true|null|\[[0-9,]{0,12}\]),?){0,6}\}"#,
    ) {
        match protocol::parse_device_message(channel, payload.as_bytes()) {
            Ok(DeviceMessage::Sorter(state)) => {
                prop_assert!(state.bins_full.windows(2).all(|w| w[0] < w[1]), "{state:?}");
                prop_assert!(!state.bins_full.contains(&0));
            }
            Ok(DeviceMessage::Reply(reply)) => prop_assert!(!reply.id.is_empty()),
            Ok(_) | Err(_) => {}
        }
        let _ = protocol::parse_command(payload.as_bytes());
    }

    #[test]
    fn a_tag_arrival_reads_back_as_sent(read in tag_read()) {
        let payload = protocol::encode_arrived(&read);
        prop_assert!(payload.len() <= protocol::MAX_PAYLOAD);
        prop_assert_eq!(
            protocol::parse_device_message(Channel::Tags, &payload),
            Ok(DeviceMessage::Arrived(read.clone()))
        );
        prop_assert_eq!(
            protocol::parse_device_message(Channel::Tags, &protocol::encode_departed(&read.uid)),
            Ok(DeviceMessage::Departed(read.uid))
        );
    }

    #[test]
    fn a_command_reads_back_as_sent(command in command(), id in "[a-f0-9]{8}-[0-9]{1,6}", ms in 0..600_000u64) {
        let deadline = Duration::from_millis(ms);
        let payload = protocol::encode_command(&id, &command, deadline);
        prop_assert_eq!(
            protocol::parse_command(&payload),
            Ok(CommandMessage { id, command, deadline })
        );
    }

    #[test]
    fn a_reply_reads_back_as_sent(reply in reply()) {
        let payload = protocol::encode_reply(&reply);
        prop_assert_eq!(
            protocol::parse_device_message(Channel::Reply, &payload),
            Ok(DeviceMessage::Reply(reply))
        );
    }

    #[test]
    fn a_sorter_state_reads_back_sorted_without_repeats(
        bins in prop::collection::vec(1..=u16::MAX, 0..40),
        jam in any::<bool>(),
    ) {
        let sent = SorterState { bins_full: bins.clone(), jam };
        let mut tidy = bins;
        tidy.sort_unstable();
        tidy.dedup();
        prop_assert_eq!(
            protocol::parse_device_message(Channel::Sorter, &protocol::encode_sorter(&sent)),
            Ok(DeviceMessage::Sorter(SorterState { bins_full: tidy, jam }))
        );
    }
}
