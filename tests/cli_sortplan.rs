//! End to end: `rfidgw sort-plan check|test` on the example plan `config/sortplan.toml`,
//! with the public checkin-response vector of `tests/vectors/sip2-good.tsv` and frames
//! built with the SIP2 crate.

use std::path::Path;
use std::process::{Command, Output};

use rfidgw_sip2::frame::{CheckinResponse, Sip2Message, WireFormat};
use rfidgw_tag::iso28560_3::{BasicBlock, BlockForm, DdmTag, LibraryExtension};
use rfidgw_tag::{ByteOrder, SiteConfig, TagData};
use serde_json::{Value, json};

const PLAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sortplan.toml");
/// A Tuesday morning: the default plan.
const MORNING: &str = "2026-03-03T10:00:00+01:00";

fn rfidgw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfidgw"))
        .args(args)
        .output()
        .expect("run rfidgw")
}

/// Runs `sort-plan test` on the example plan; the one JSON line it prints.
fn sort(args: &[&str]) -> Value {
    let mut all = vec!["sort-plan", "test", PLAN];
    all.extend_from_slice(args);
    let output = rfidgw(&all);
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).expect("JSON")
}

fn vector(id: &str) -> String {
    include_str!("vectors/sip2-good.tsv")
        .lines()
        .find(|line| line.split('\t').next() == Some(id))
        .and_then(|line| line.split('\t').nth(3))
        .expect("vector row")
        .to_owned()
}

/// A 10 Checkin Response frame built with the SIP2 crate.
fn frame(response: CheckinResponse) -> String {
    let response = CheckinResponse {
        transaction_date: "20260303    100000".into(),
        institution_id: "DEMO".into(),
        item_identifier: "I0001".into(),
        permanent_location: "Main".into(),
        ..response
    };
    let bytes = response
        .to_message()
        .encode(&WireFormat::default())
        .expect("encode");
    String::from_utf8(bytes).expect("utf-8")
}

/// An ISO 28560-3 tag of DE/705 with a media format, as hex.
fn tag_hex(media_format: Option<u8>) -> String {
    let mut tag = DdmTag {
        basic: BasicBlock {
            type_of_usage: 0x11,
            parts_in_item: 1,
            part_number: 1,
            primary_item_id: "I0001".into(),
            country: "DE".into(),
            library: "705".into(),
        },
        form: BlockForm::Full,
        extensions: Vec::new(),
    };
    if media_format.is_some() {
        let extension = LibraryExtension {
            media_format,
            ..LibraryExtension::default()
        };
        tag.extensions
            .push(extension.to_block().expect("extension"));
    }
    let memory = rfidgw_tag::encode(
        &TagData::Iso28560_3(tag),
        ByteOrder::AsRead,
        &SiteConfig::default(),
    )
    .expect("encode tag");
    hex::encode_upper(memory)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn check_accepts_the_example_plan_with_a_one_line_summary() {
    let output = rfidgw(&["sort-plan", "check", PLAN]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(
            "ok: 9 bins, exception bin 9 \"Exceptions\", plans default (11 rules), evening (4 rules), holiday (2 rules), 3 schedule entries"
        ),
        "{text}"
    );
}

#[test]
fn check_rejects_an_unknown_bin_naming_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.toml",
        "version = 1\nexception_bin = 9\n[bins]\n1 = \"Holds\"\n9 = \"Exceptions\"\n\
         [[rules]]\nname = \"Holds\"\nalert_type = \"01\"\nbin = 1\n\
         [[rules]]\nname = \"Media\"\nmedia_type = \"006\"\nbin = 6\n",
    );
    let output = rfidgw(&["sort-plan", "check", &plan]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "plan \"default\", rule 2 \"Media\", key `bin`: bin 6 is not declared in [bins] (declared: 1, 9)"
        ),
        "{stderr}"
    );
}

#[test]
fn check_rejects_a_rule_an_earlier_rule_makes_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.toml",
        "version = 1\nexception_bin = 9\n[bins]\n1 = \"Holds\"\n3 = \"Shelving\"\n9 = \"Exceptions\"\n\
         [[rules]]\nname = \"Everything\"\nok = true\nbin = 3\n\
         [[rules]]\nname = \"Holds\"\nalert_type = \"01\"\nbin = 1\n\
         [plans.evening]\n[[plans.evening.rules]]\nname = \"Non-fiction\"\ncall_number = \"5*\"\nbin = 3\n\
         [[plans.evening.rules]]\nname = \"Maths\"\ncall_number = \"51*,510\"\nbin = 1\n",
    );
    let output = rfidgw(&["sort-plan", "check", &plan]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "plan \"default\", rule 2 \"Holds\": can never match: rule 1 \"Everything\" before it takes every item it would; move this rule up or narrow rule 1"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "plan \"evening\", rule 2 \"Maths\": can never match: rule 1 \"Non-fiction\""
        ),
        "{stderr}"
    );
    assert!(stderr.contains(": 2 problems"), "{stderr}");
}

#[test]
fn check_rejects_a_plan_without_an_exception_bin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.toml",
        "version = 1\n[bins]\n1 = \"Holds\"\n[[rules]]\nname = \"Holds\"\nalert = true\nbin = 1\n",
    );
    let output = rfidgw(&["sort-plan", "check", &plan]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("plan.toml: exception_bin: missing: every sort plan needs an exception bin"),
        "{stderr}"
    );
}

#[test]
fn the_public_checkin_vector_goes_to_the_shelving_bin() {
    let value = sort(&["--checkin", &vector("good-17"), "--at", MORNING]);
    assert_eq!(value["bin"], 3);
    assert_eq!(value["bin_name"], "Shelving");
    assert_eq!(
        value["rule"],
        json!({"index": 10, "name": "Everything else the ILS took"})
    );
    assert_eq!(
        value["reason"],
        "rule 10 \"Everything else the ILS took\" matched"
    );
    assert_eq!(value["plan"], "default");
    assert_eq!(value["exception"], false);
    assert_eq!(value["facts"]["checkin"]["sort_bin"], "sort bin A1");
    assert_eq!(value["facts"]["checkin"]["media_type"], "001");
}

#[test]
fn an_ils_rejection_goes_to_the_exception_bin_with_the_ils_reason() {
    let rejected = frame(CheckinResponse {
        ok: false,
        screen_message: vec!["Item not checked out".into()],
        ..CheckinResponse::default()
    });
    let value = sort(&["--checkin", &rejected, "--at", MORNING]);
    assert_eq!(value["bin"], 9);
    assert_eq!(value["exception"], true);
    assert_eq!(value["rule"], json!({"index": 1, "name": "ILS rejections"}));
    assert_eq!(
        value["reason"],
        "ILS rejected the checkin: \"Item not checked out\"; rule 1 \"ILS rejections\" matched"
    );
}

#[test]
fn a_hold_goes_to_the_holds_bin() {
    let hold = frame(CheckinResponse {
        ok: true,
        alert: true,
        alert_type: Some("01".into()),
        hold_patron_id: Some("P1001".into()),
        ..CheckinResponse::default()
    });
    let value = sort(&["--checkin", &hold, "--at", MORNING]);
    assert_eq!(value["bin"], 1);
    assert_eq!(value["rule"]["name"], "Holds for this library");
    // In the evening plan too, by the alert flag.
    let evening = sort(&["--checkin", &hold, "--at", "2026-03-03T19:30:00+01:00"]);
    assert_eq!(
        (evening["bin"].clone(), evening["plan"].clone()),
        (json!(1), json!("evening"))
    );
    assert_eq!(evening["rule"], json!({"index": 2, "name": "Holds"}));
}

#[test]
fn the_tag_sends_careful_handling_items_to_the_exception_bin() {
    let ok = frame(CheckinResponse {
        ok: true,
        ..CheckinResponse::default()
    });
    let careful = sort(&[
        "--checkin",
        &ok,
        "--tag",
        &tag_hex(Some(5)),
        "--at",
        MORNING,
    ]);
    assert_eq!(careful["bin"], 9);
    assert_eq!(
        careful["rule"],
        json!({"index": 2, "name": "Careful handling"})
    );
    assert_eq!(careful["facts"]["tag"]["media_format"], 5);
    let book = sort(&[
        "--checkin",
        &ok,
        "--tag",
        &tag_hex(Some(1)),
        "--at",
        MORNING,
    ]);
    assert_eq!(book["bin"], 3);
}

#[test]
fn an_offline_return_is_sorted_by_the_tag_rules_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = write(
        dir.path(),
        "site.toml",
        "[tags.owners]\nlibraries = [{ country = \"DE\", library = \"705\" }]\n",
    );
    let tag = tag_hex(None);
    let ours = sort(&["--offline", "--tag", &tag, "--site", &site, "--at", MORNING]);
    assert_eq!(ours["bin"], 8);
    assert_eq!(
        ours["rule"],
        json!({"index": 11, "name": "Offline returns of our items"})
    );
    assert_eq!(
        ours["reason"],
        "offline return (no checkin response); rule 11 \"Offline returns of our items\" matched"
    );
    assert_eq!(ours["facts"]["checkin"], Value::Null);
    // Without the site's owners the item's owner is unknown: no rule takes it.
    let unknown = sort(&["--offline", "--tag", &tag, "--at", MORNING]);
    assert_eq!(unknown["bin"], 9);
    assert_eq!(unknown["rule"], Value::Null);
    assert_eq!(
        unknown["reason"],
        "offline return (no checkin response); no rule matched"
    );
}

#[test]
fn the_schedule_and_the_plan_command_choose_the_plan() {
    let frame = vector("good-17");
    for (at, plan) in [
        (MORNING, "default"),
        ("2026-03-03T18:00:00+01:00", "evening"),
        ("2026-03-04T07:59:00Z", "evening"),
        ("2026-03-07T12:00:00+01:00", "evening"),
        ("2026-12-25T10:00:00+01:00", "holiday"),
        ("2027-01-01T10:00:00+01:00", "holiday"),
    ] {
        let value = sort(&["--checkin", &frame, "--at", at]);
        assert_eq!(value["plan"], plan, "{at}");
    }
    let value = sort(&[
        "--checkin",
        &frame,
        "--at",
        MORNING,
        "--plan-name",
        "holiday",
    ]);
    assert_eq!(value["plan"], "holiday");
    assert_eq!(
        value["rule"],
        json!({"index": 2, "name": "All checked-in items"})
    );
    let unknown = rfidgw(&[
        "sort-plan",
        "test",
        PLAN,
        "--checkin",
        &frame,
        "--plan-name",
        "summer",
    ]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no plan named \"summer\"; the plans are default, evening, holiday")
    );
}

#[test]
fn test_refuses_a_frame_that_is_not_a_checkin_response() {
    let output = rfidgw(&["sort-plan", "test", PLAN, "--checkin", &vector("good-02")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--checkin: the frame is a 99 SC Status, not a 10 Checkin Response"),
        "{stderr}"
    );
    let neither = rfidgw(&["sort-plan", "test", PLAN]);
    assert!(!neither.status.success());
}
