//! End to end: `rfidgw tag decode|encode` on the vectors of `tests/vectors/tags.tsv`.

use std::process::{Command, Output};

use serde_json::{Value, json};

fn rfidgw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfidgw"))
        .args(args)
        .output()
        .expect("run rfidgw")
}

fn decode(args: &[&str]) -> Value {
    let mut all = vec!["tag", "decode"];
    all.extend_from_slice(args);
    let output = rfidgw(&all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).expect("JSON")
}

fn vector_hex(id: &str) -> String {
    let tsv = include_str!("vectors/tags.tsv");
    let line = tsv
        .lines()
        .find(|line| line.split('\t').next() == Some(id))
        .expect("vector row");
    line.split('\t').nth(2).expect("hex column").to_owned()
}

/// The keys the issue asks for, with the values a vector must give.
fn assert_keys(value: &Value, expected: &Value) {
    for key in [
        "model",
        "primary_item_id",
        "owner_institution",
        "parts_in_item",
        "part_number",
        "type_of_usage",
        "crc_valid",
        "security",
        "error",
    ] {
        assert_eq!(value[key], expected[key], "key {key} in {value}");
    }
}

#[test]
fn tag_decode_prints_the_expected_json_for_every_tag_vector() {
    let cases = [
        (
            "ddm-libdanrfid",
            vec!["--afi", "07"],
            json!({"model": "iso28560-3", "primary_item_id": "11223344",
                   "owner_institution": {"country": "DE", "library": "705"}, "parts_in_item": 1,
                   "part_number": 1, "type_of_usage": "11", "crc_valid": true, "security": "secured",
                   "error": null}),
        ),
        (
            "ddm-synthetic-dk",
            vec!["--afi", "C2", "--uid", "E004010012345678"],
            json!({"model": "iso28560-3", "primary_item_id": "1234567890",
                   "owner_institution": {"country": "DK", "library": "715700"}, "parts_in_item": 1,
                   "part_number": 1, "type_of_usage": "11", "crc_valid": true,
                   "security": "unsecured", "error": null}),
        ),
        (
            "ddm-libdanrfid-block-reversed",
            vec![],
            json!({"model": "iso28560-3", "primary_item_id": "11223344",
                   "owner_institution": {"country": "DE", "library": "705"}, "parts_in_item": 1,
                   "part_number": 1, "type_of_usage": "11", "crc_valid": true, "security": "unknown",
                   "error": null}),
        ),
        (
            "iso28560-2-annex-d",
            vec!["--afi", "07"],
            json!({"model": "iso28560-2", "primary_item_id": "123456789012",
                   "owner_institution": "US-InU-Mu", "parts_in_item": 12, "part_number": 3,
                   "type_of_usage": null, "crc_valid": null, "security": "secured", "error": null}),
        ),
        (
            "rfid501-t05-a",
            vec![],
            json!({"model": "rfid501", "primary_item_id": "200901010123",
                   "owner_institution": {"branch": 4095, "library": 1_048_575}, "parts_in_item": 1,
                   "part_number": 1, "type_of_usage": null, "crc_valid": null, "security": "unknown",
                   "error": null}),
        ),
        (
            "rfid501-t05-b",
            vec![],
            // Library number 0: the tag names no owner.
            json!({"model": "rfid501", "primary_item_id": "1302003767",
                   "owner_institution": null, "parts_in_item": 1,
                   "part_number": 1, "type_of_usage": null, "crc_valid": null, "security": "unknown",
                   "error": null}),
        ),
        (
            "sgtin96-gs1-tds",
            vec!["--pc", "3107"],
            json!({"model": "epc-sgtin96",
                   "primary_item_id": "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
                   "owner_institution": null, "parts_in_item": null, "part_number": null,
                   "type_of_usage": null, "crc_valid": null, "security": "secured", "error": null}),
        ),
    ];
    for (id, args, expected) in cases {
        let hex = vector_hex(id);
        let mut all = vec![hex.as_str()];
        all.extend(args);
        let value = decode(&all);
        assert_keys(&value, &expected);
        if id == "ddm-libdanrfid-block-reversed" {
            assert_eq!(value["byte_order"], "block-reversed");
        }
        if id == "sgtin96-gs1-tds" {
            assert_eq!(value["data"]["partition"], 5);
            // GS1 digits are significant: the leading zero stays.
            assert_eq!(value["data"]["company_prefix"], "0614141");
            assert_eq!(value["data"]["item_reference"], "812345");
        }
        // Without a site owner list nothing is foreign; a tag naming no owner never is.
        assert_eq!(value["foreign"], Value::Null, "{id}");
    }
}

#[test]
fn memory_that_reads_as_two_models_is_ambiguous_with_both_readings_unless_the_dsfid_decides() {
    // Issue 14: valid ISO 28560-2 data sets (item 68) that also pass the ISO 28560-3 CRC
    // over readable fields (item hhhhhhhhhhhhhhhh).
    let memory = format!("110144{}{}", "68".repeat(31), "00".repeat(78));
    let value = decode(&[memory.as_str(), "--hf"]);
    assert_eq!(value["model"], "ambiguous");
    assert_eq!(value["primary_item_id"], Value::Null);
    let models: Vec<&Value> = value["readings"]
        .as_array()
        .expect("readings")
        .iter()
        .map(|r| &r["model"])
        .collect();
    assert_eq!(models, [&json!("iso28560-3"), &json!("iso28560-2")]);
    assert_eq!(value["readings"][1]["primary_item_id"], "68");

    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "[tags]\niso28560_2_dsfid = \"06\"\n").unwrap();
    let site = site.to_str().unwrap();
    let value = decode(&[memory.as_str(), "--hf", "--dsfid", "06", "--site", site]);
    assert_eq!(value["model"], "iso28560-2");
    assert_eq!(value["primary_item_id"], "68");
    assert_eq!(value["readings"], json!([]));
}

#[test]
fn an_unknown_tag_exits_zero_with_model_unknown_and_a_reason() {
    let value = decode(&["FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"]);
    assert_eq!(value["model"], "unknown");
    assert_eq!(value["primary_item_id"], Value::Null);
    let error = value["error"].as_str().expect("error message");
    assert!(error.contains("ISO 28560-3"), "{error}");
}

#[test]
fn a_corrupt_danish_tag_is_unknown_with_crc_valid_false() {
    let mut hex = vector_hex("ddm-libdanrfid");
    hex.replace_range(38..40, "52");
    let value = decode(&[&hex]);
    assert_eq!(value["model"], "unknown");
    assert_eq!(value["crc_valid"], false);
    assert!(value["error"].as_str().expect("error").contains("CRC"));
}

#[test]
fn input_that_is_not_hex_exits_non_zero_with_the_reason() {
    let output = rfidgw(&["tag", "decode", "11G0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not hex"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn tag_encode_writes_the_vector_bytes_back() {
    let cases = [
        (
            vec![
                "--model",
                "iso28560-3",
                "--item",
                "1234567890",
                "--country",
                "DK",
                "--library",
                "715700",
            ],
            "ddm-synthetic-dk",
        ),
        (
            vec![
                "--model",
                "iso28560-3",
                "--item",
                "11223344",
                "--country",
                "DE",
                "--library",
                "705",
                "--truncated",
                "--block-reversed",
            ],
            "ddm-libdanrfid-block-reversed",
        ),
        (
            vec![
                "--model",
                "rfid501",
                "--item",
                "200901010123",
                "--library",
                "1048575",
                "--branch",
                "4095",
                "--custom",
                "2147483647",
            ],
            "rfid501-t05-a",
        ),
        (
            vec![
                "--model",
                "epc-sgtin96",
                "--item",
                "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
            ],
            "sgtin96-gs1-tds",
        ),
    ];
    for (args, id) in cases {
        let mut all = vec!["tag", "encode"];
        all.extend(args);
        let output = rfidgw(&all);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hex = String::from_utf8(output.stdout).expect("utf-8");
        let expected = vector_hex(id);
        assert!(
            hex.trim().starts_with(&expected),
            "{id}: {hex} vs {expected}"
        );
    }
}

#[test]
fn an_iso28560_2_item_encoded_by_the_cli_decodes_to_the_same_fields() {
    let output = rfidgw(&[
        "tag",
        "encode",
        "--model",
        "iso28560-2",
        "--item",
        "123456789012",
        "--parts",
        "12",
        "--part",
        "3",
        "--shelf",
        "QA268.L55",
        "--owner",
        "US-InU-Mu",
        "--content-parameter",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hex = String::from_utf8(output.stdout).expect("utf-8");
    let value = decode(&[hex.trim()]);
    assert_eq!(value["model"], "iso28560-2");
    assert_eq!(value["owner_institution"], "US-InU-Mu");
    assert_eq!(value["data"]["shelf_location"], "QA268.L55");
    assert_eq!(value["data"]["content_parameter"], json!([3, 4, 6]));
}

#[test]
fn a_long_item_id_and_a_media_format_go_to_the_library_extension_block() {
    let output = rfidgw(&[
        "tag",
        "encode",
        "--model",
        "iso28560-3",
        "--item",
        "12345678901234567890",
        "--country",
        "DK",
        "--library",
        "715700",
        "--media-format",
        "2",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hex = String::from_utf8(output.stdout).expect("utf-8");
    let value = decode(&[hex.trim()]);
    assert_eq!(value["model"], "iso28560-3");
    assert_eq!(value["primary_item_id"], "12345678901234567890");
    assert_eq!(value["media_format"], json!({"value": 2, "name": "cd-dvd"}));
}

#[test]
fn tag_encode_refuses_an_item_id_that_does_not_fit() {
    let output = rfidgw(&[
        "tag",
        "encode",
        "--model",
        "iso28560-3",
        "--item",
        "12345678901234567",
        "--truncated",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("primary item id"), "{stderr}");
}
