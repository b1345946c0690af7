//! Interop with pysip2 0.1.0 (PyPI) as a real third-party ACS: log in, SC status, checkout,
//! checkin and item information against `tests/interop/pysip2_acs.py`.
//!
//! The interpreter comes from `RFIDGW_PYSIP2_PYTHON`, else `<workspace>/.venv/bin/python`.
//! When it or pysip2 is missing the test prints a SKIP line and passes, unless
//! `RFIDGW_REQUIRE_INTEROP=1` is set (as in `.ci/run`): then it fails.
//!
//! Set-up: `python3 -m venv .venv && .venv/bin/pip install pysip2==0.1.0`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};

use rfidgw_sip2::client::{Completion, Sip2Pool};
use rfidgw_sip2::dialect::{Profile, Sip2PeerConfig};
use tokio_util::sync::CancellationToken;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Kills the ACS when the test ends, however it ends.
struct Acs(Child);

impl Drop for Acs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip_or_fail(reason: &str) {
    assert!(
        std::env::var("RFIDGW_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "pysip2 interop required (RFIDGW_REQUIRE_INTEROP=1) but {reason}"
    );
    println!(
        "SKIP pysip2 interop: {reason} (set up with: python3 -m venv .venv && .venv/bin/pip install pysip2==0.1.0)"
    );
}

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RFIDGW_PYSIP2_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(WORKSPACE).join(".venv/bin/python");
    venv.exists().then_some(venv)
}

fn start_acs() -> Result<(Acs, u16), String> {
    let python = python().ok_or("no interpreter (RFIDGW_PYSIP2_PYTHON unset and no .venv)")?;
    let has_pysip2 = Process::new(&python)
        .args([
            "-c",
            "import pysip2, sys; sys.exit(0 if pysip2.__version__ == '0.1.0' else 1)",
        ])
        .status()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !has_pysip2.success() {
        return Err(format!(
            "pysip2 0.1.0 is not installed for {}",
            python.display()
        ));
    }
    let script = PathBuf::from(WORKSPACE).join("tests/interop/pysip2_acs.py");
    let mut child = Process::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let acs = Acs(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the port: {e}"))?;
    let port = line
        .trim()
        .parse()
        .map_err(|_| format!("the ACS printed {line:?} instead of its port"))?;
    Ok((acs, port))
}

#[tokio::test]
async fn the_client_logs_in_checks_out_checks_in_and_asks_item_information_against_pysip2() {
    let (_acs, port) = match start_acs() {
        Ok(started) => started,
        Err(reason) => return skip_or_fail(&reason),
    };
    for error_detection in [true, false] {
        let mut config = Sip2PeerConfig::new(format!("127.0.0.1:{port}"), "rfidgw", "interop-pw");
        config.institution = "INTEROP".into();
        // pysip2 rejects a blank nb due date and a missing AC (PROTOCOLS.md §1.9): the
        // generic profile fills the date and always sends AC.
        config.profile = Profile::Generic;
        config.encoding = Some(rfidgw_sip2::Encoding::Cp850);
        config.error_detection = Some(error_detection);
        config.pool_size = Some(1);
        config.request_timeout_ms = Some(5_000);
        let token = CancellationToken::new();
        let pool = Sip2Pool::start(config, token.clone()).unwrap();

        let status = pool.acs_status().await.unwrap();
        assert!(status.online_status);
        assert!(status.checkout_ok && status.checkin_ok);
        assert_eq!(status.institution_id, "INTEROP");
        assert_eq!(status.library_name.as_deref(), Some("pysip2 interop ACS"));

        let Completion::Answered(out) = pool.checkout("PT-1", "IT-1", None, false).await.unwrap()
        else {
            panic!("checkout was not answered");
        };
        assert!(out.ok, "{out:?}");
        assert_eq!(out.desensitize, Some(true));
        assert_eq!(out.title_identifier, "Interop Book");

        let info = pool.item_information("IT-1").await.unwrap();
        assert_eq!(info.circulation_status, 4, "charged after the checkout");

        let Completion::Answered(back) = pool.checkin("IT-1").await.unwrap() else {
            panic!("checkin was not answered");
        };
        assert!(back.ok && back.resensitize);
        assert_eq!(back.sort_bin.as_deref(), Some("B7"));
        assert_eq!(back.patron_identifier.as_deref(), Some("PT-1"));

        let info = pool.item_information("IT-1").await.unwrap();
        assert_eq!(info.circulation_status, 3, "available after the checkin");

        let Completion::Answered(refused) =
            pool.checkout("PT-9", "IT-2", None, false).await.unwrap()
        else {
            panic!("refused checkout was not answered");
        };
        assert!(!refused.ok);
        token.cancel();
    }
}

#[tokio::test]
async fn pysip2_refuses_a_wrong_password_and_the_error_says_so_without_the_password() {
    let (_acs, port) = match start_acs() {
        Ok(started) => started,
        Err(reason) => return skip_or_fail(&reason),
    };
    let config = Sip2PeerConfig::new(format!("127.0.0.1:{port}"), "rfidgw", "not-the-Password");
    let connector = rfidgw_sip2::client::Connector::new(config).unwrap();
    let err = connector.connect(None).await.unwrap_err();
    let text = rfidgw_sip2::client::error_chain(&err);
    assert!(text.contains("refused the login"), "{text}");
    assert!(!text.contains("not-the-Password"));
}
