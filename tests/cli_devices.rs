//! `rfidgw devices` and `rfidgw frame decode` as a user runs them: the real binary.

use std::process::Command;

fn rfidgw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rfidgw"))
        .args(args)
        .output()
        .expect("the rfidgw binary runs")
}

#[test]
fn devices_runs_and_exits_0_without_a_usb_bus() {
    let out = rfidgw(&["devices"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Serial ports:"), "{text}");
    assert!(text.contains("USB devices:"), "{text}");
    // Here libusb cannot start; on a machine with USB the list is printed instead.
    assert!(
        text.contains("no USB bus (") || text.contains(" bus ") || text.contains("(none found)"),
        "{text}"
    );
}

#[test]
fn devices_json_is_one_object_with_ports_and_usb() {
    let out = rfidgw(&["devices", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["serial_ports"].is_array(), "{json}");
    assert!(json["usb"]["devices"].is_array(), "{json}");
    assert!(
        json["usb"]["error"].is_string() || json["usb"]["error"].is_null(),
        "{json}"
    );
}

#[test]
fn frame_decode_prints_a_feig_inventory_reply_as_json() {
    let out = rfidgw(&[
        "frame",
        "decode",
        "--protocol",
        "feig",
        "1100B000010300E00401003126911738B3",
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["command"], "B0 01 inventory");
    assert_eq!(json["status"], "00 OK");
    assert_eq!(json["crc_valid"], true);
    assert_eq!(json["uids"][0], "E004010031269117");
    assert!(json.as_object().unwrap().contains_key("data"));
}

#[test]
fn frame_decode_refuses_non_hex_with_a_reason_and_a_non_zero_exit() {
    let out = rfidgw(&["frame", "decode", "--protocol", "feig", "07FFZZ"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not hex"), "{err}");
}

#[test]
fn frame_decode_of_a_broken_frame_prints_what_it_can_with_an_error() {
    let out = rfidgw(&["frame", "decode", "--protocol", "feig", "07 FF B0"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["crc_valid"], false);
    assert!(
        json["error"].as_str().unwrap().contains("too short"),
        "{json}"
    );
}
