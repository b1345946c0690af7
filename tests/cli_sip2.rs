//! `rfidgw sip2 …` end to end: decode the public vectors, and run real exchanges against
//! the in-project ACS simulator started on 127.0.0.1:0.

use std::process::{Command, Output};

use rfidgw_sip2::acs_sim::{AcsSimulator, Fault};
use rfidgw_sip2::frame::Command as Sip2Command;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const GOOD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/sip2-good.tsv"
));
const BAD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/sip2-bad-checksum.tsv"
));

fn rows(tsv: &str) -> Vec<Vec<&str>> {
    tsv.lines()
        .skip(1)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect()
}

fn rfidgw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfidgw"))
        .args(args)
        .env_remove("RFIDGW_SIP2_PASS")
        .output()
        .expect("run rfidgw")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[test]
fn decode_prints_every_good_vector_as_json_with_a_valid_checksum() {
    for row in rows(GOOD) {
        let (id, msg, frame) = (row[0], row[1], row[3]);
        let value = json(&rfidgw(&["sip2", "decode", frame]));
        assert_eq!(value["command"], msg, "{id}");
        assert_eq!(value["checksum_valid"], true, "{id}");
        assert!(
            value["fixed"].is_object() && value["fields"].is_object(),
            "{id}"
        );
    }
}

#[test]
fn decode_shows_fixed_fields_by_name_and_repeated_fields_as_arrays() {
    let row = rows(GOOD).into_iter().find(|r| r[0] == "good-18").unwrap();
    let value = json(&rfidgw(&["sip2", "decode", row[3]]));
    assert_eq!(value["fixed"]["end_session"], "Y");
    assert_eq!(value["fixed"]["transaction_date"], "19980723    110658");
    assert_eq!(value["fields"]["AA patron_identifier"], "PatronID");
    assert_eq!(
        value["fields"]["AF screen_message"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(value["sequence"], 5);
}

#[test]
fn decode_reports_a_wrong_checksum_as_false_and_no_trailer_as_null() {
    for row in rows(BAD) {
        let value = json(&rfidgw(&["sip2", "decode", row[3]]));
        assert_eq!(value["checksum_valid"], false, "{}", row[0]);
        assert_eq!(value["checksum_expected"], row[5], "{}", row[0]);
    }
    let value = json(&rfidgw(&["sip2", "decode", "941"]));
    assert_eq!(value["checksum_valid"], Value::Null);
    assert_eq!(value["fixed"]["ok"], "1");
}

#[test]
fn decode_hides_the_login_password() {
    let row = rows(GOOD).into_iter().find(|r| r[0] == "good-01").unwrap();
    let output = rfidgw(&["sip2", "decode", row[3]]);
    let value = json(&output);
    assert_eq!(value["fields"]["CN login_user_id"], "LoginUserID");
    assert_eq!(value["fields"]["CO login_password"], "***");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("LoginPassword"));
}

#[test]
fn decode_of_garbage_fails_with_the_reason() {
    let output = rfidgw(&["sip2", "decode", "42hello"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown SIP2 command code"));
}

async fn simulator() -> (String, CancellationToken) {
    let token = CancellationToken::new();
    let (addr, serve) = AcsSimulator::demo()
        .bind("127.0.0.1:0", token.clone())
        .await
        .unwrap();
    tokio::spawn(serve);
    (addr.to_string(), token)
}

async fn run_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rfidgw(&args)
    })
    .await
    .unwrap()
}

fn exchange_args(addr: &str, pass: &str, rest: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "sip2",
        "--addr",
        addr,
        "--user",
        "demo",
        "--pass",
        pass,
        "--institution",
        "DEMO",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(rest.iter().map(|s| (*s).to_owned()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_against_the_simulator_print_the_response_as_json() {
    let (addr, token) = simulator().await;
    let status = json(&run_async(exchange_args(&addr, "demo", &["status"])).await);
    assert_eq!(status["command"], "98");
    assert_eq!(status["fields"]["AO institution_id"], "DEMO");
    // The 98 as read: the login took sequence number 0, the 99 → 98 number 1.
    assert_eq!(status["sequence"], 1, "{status}");

    let checkout = json(
        &run_async(exchange_args(
            &addr,
            "demo",
            &["--raw", "checkout", "P1001", "I0001"],
        ))
        .await,
    );
    assert_eq!(checkout["command"], "12");
    assert_eq!(checkout["fixed"]["ok"], "1");

    let item = json(
        &run_async(exchange_args(
            &addr,
            "demo",
            &["--no-error-detection", "item", "I0001"],
        ))
        .await,
    );
    assert_eq!(item["command"], "18");
    assert_eq!(item["fixed"]["circulation_status"], "04");

    let checkin = json(
        &run_async(exchange_args(
            &addr,
            "demo",
            &["--profile", "koha", "checkin", "I0001"],
        ))
        .await,
    );
    assert_eq!(checkin["fields"]["CL sort_bin"], "A");

    let refused = json(
        &run_async(exchange_args(
            &addr,
            "demo",
            &["checkout", "P1002", "I0002"],
        ))
        .await,
    );
    assert_eq!(
        refused["fixed"]["ok"], "0",
        "a refusal is an answer, exit 0"
    );

    for rest in [
        &["patron", "P1001", "--summary", "2"][..],
        &["renew", "P1001", "I0004"],
        &["hold", "P1001", "I0002"],
        &["fee", "P1003", "1.00"],
        &["end", "P1001"],
    ] {
        let value = json(&run_async(exchange_args(&addr, "demo", rest)).await);
        assert!(value["command"].is_string(), "{rest:?}");
    }
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_go_to_stderr_with_the_password_hidden() {
    let (addr, token) = simulator().await;
    let output = run_async(exchange_args(&addr, "demo", &["--raw", "status"])).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(">> 9300CNdemo|CO***|"), "{stderr}");
    assert!(stderr.contains("<< 98"), "{stderr}");
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_shows_the_wire_with_checksums_and_a_rejected_answer_before_the_97() {
    let token = CancellationToken::new();
    let simulator = AcsSimulator::demo();
    simulator
        .control()
        .inject(Some(Sip2Command::ItemInformation), Fault::BadChecksum);
    let (addr, serve) = simulator.bind("127.0.0.1:0", token.clone()).await.unwrap();
    tokio::spawn(serve);
    let output = run_async(exchange_args(
        &addr.to_string(),
        "demo",
        &["--raw", "item", "I0001"],
    ))
    .await;
    let item = json(&output);
    assert_eq!(item["fields"]["AB item_identifier"], "I0001");
    assert_eq!(item["sequence"], 2, "login 0, status 1, item 2: {item}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{stderr}"))
    };
    // Every frame's trailer with its checksum; the login with the password hidden.
    assert!(
        lines[at(">> 9300CNdemo|CO***|") + 1].contains("AY 0 · AZ "),
        "{stderr}"
    );
    assert!(lines[at("<< 941") + 1].ends_with(" ok"), "{stderr}");
    // The corrupted 18 is shown with both checksums, then the 97, then the good 18.
    let bad = at("wrong (computed");
    assert!(lines[bad - 1].starts_with("<< 18"), "{stderr}");
    assert!(lines[bad].contains("not accepted"), "{stderr}");
    let resend = at(">> 97AZ");
    assert!(resend > bad, "{stderr}");
    assert!(lines[resend + 2].starts_with("<< 18"), "{stderr}");
    assert!(lines[resend + 3].ends_with(" ok"), "{stderr}");
    assert!(!stderr.contains("COdemo"), "{stderr}");
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_exchange_exits_non_zero_with_the_reason_and_no_password() {
    let (addr, token) = simulator().await;
    let output = run_async(exchange_args(&addr, "Wrong-Pass-42", &["status"])).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused the login"), "{stderr}");
    assert!(!stderr.contains("Wrong-Pass-42"));

    let closed = run_async(exchange_args("127.0.0.1:1", "demo", &["status"])).await;
    assert!(!closed.status.success());
    assert!(String::from_utf8_lossy(&closed.stderr).contains("cannot connect"));
    token.cancel();
}

#[test]
fn decode_reads_the_frame_in_the_given_character_set() {
    // "é" is 0x82 in CP850; the frame is re-encoded before the checksum is checked.
    let value = json(&rfidgw(&[
        "sip2",
        "decode",
        "941AFCaf\u{e9}|",
        "--encoding",
        "cp850",
    ]));
    assert_eq!(value["fields"]["AF screen_message"], "Caf\u{e9}");
    assert_eq!(value["checksum_valid"], Value::Null);
}
