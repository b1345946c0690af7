//! Fuzz the MQTT device protocol. Arbitrary bytes as a payload on any of a device's topics
//! must never panic the parsers or the gateway's session, and come back as a message or a
//! problem that quotes little of the input. What parses is consistent: a sorter state is
//! sorted without repeats or bin 0, a reply fits any command or is refused as malformed, and
//! a command or tag arrival the parser accepts encodes to one that parses the same.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rfidgw_driver::{DeviceCommand, LineStats, OutputCommand, Uid};
use rfidgw_mqtt::protocol::{self, Channel, DeviceMessage, Topics};
use rfidgw_mqtt::session::Session;
use rfidgw_mqtt::settings::Role;

fuzz_target!(|input: &[u8]| {
    // One byte chooses the topic; the rest is the payload.
    let [selector, payload @ ..] = input else {
        return;
    };
    let channel = Channel::ALL[usize::from(*selector) % Channel::ALL.len()];

    match protocol::parse_device_message(channel, payload) {
        Ok(DeviceMessage::Sorter(state)) => {
            assert!(state.bins_full.windows(2).all(|w| w[0] < w[1]));
            assert!(!state.bins_full.contains(&0));
        }
        Ok(DeviceMessage::Arrived(read)) => {
            let again =
                protocol::parse_device_message(Channel::Tags, &protocol::encode_arrived(&read));
            assert_eq!(again, Ok(DeviceMessage::Arrived(read)));
        }
        Ok(DeviceMessage::Reply(reply)) => {
            assert!(!reply.id.is_empty());
            let uid = Uid::new([0xE0, 0x04]);
            for command in [
                DeviceCommand::ReadAfi { uid: uid.clone() },
                DeviceCommand::WriteEas {
                    uid: uid.clone(),
                    on: true,
                },
                DeviceCommand::ReadBlocks {
                    uid,
                    first: 0,
                    count: 2,
                },
                DeviceCommand::Output(OutputCommand::default()),
                DeviceCommand::Divert { bin: 1 },
            ] {
                // Either an answer for the caller, or refused as malformed: never a panic.
                let _ = reply.result_for(&command);
            }
            let again =
                protocol::parse_device_message(Channel::Reply, &protocol::encode_reply(&reply));
            assert_eq!(again, Ok(DeviceMessage::Reply(reply)));
        }
        Ok(_) => {}
        Err(problem) => assert!(problem.to_string().len() < 600, "{problem}"),
    }

    match protocol::parse_command(payload) {
        Ok(message) => {
            let encoded = protocol::encode_command(&message.id, &message.command, message.deadline);
            assert_eq!(protocol::parse_command(&encoded), Ok(message));
        }
        Err(problem) => assert!(problem.to_string().len() < 600, "{problem}"),
    }

    // The gateway's session takes it on every topic without panicking.
    let topics = Topics::new("fuzz/dev").unwrap();
    let topic = topics.topic(channel);
    let mut session = Session::new(
        "fuzz",
        topics,
        if selector & 0x80 == 0 {
            Role::Gate
        } else {
            Role::Sorter
        },
        Duration::from_secs(1),
        "f".into(),
        LineStats::new(),
    );
    let _ = session.on_publish(&topic, payload);
    let counters = session.counters();
    assert!(counters.frames_ok + counters.bad_frames <= 1);
});
