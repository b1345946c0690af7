//! The operator commands as an operator runs them (issue 13): `check-config` catching
//! mistakes before a start, `status` and `journal` against a running daemon and a stopped
//! one, the record of an unclean stop after a real SIGKILL, and the generated completions
//! and man page. Waits are bounded only to turn a hang into a failure.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const HANG_GUARD: Duration = Duration::from_secs(30);
const TOKEN: &str = "ops-token";

fn rfidgw() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rfidgw"));
    command
        .env_remove("RFIDGW_CONFIG")
        .env_remove("RFIDGW_TOKEN")
        .env_remove("STATE_DIRECTORY")
        .env_remove("NOTIFY_SOCKET");
    command
}

fn output(args: &[&str], config: Option<&Path>) -> (Option<i32>, String, String) {
    let mut command = rfidgw();
    command.args(args);
    if let Some(config) = config {
        command
            .env("RFIDGW_CONFIG", config)
            .env("RFIDGW_TOKEN", TOKEN);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gate with one simulated reader: one tag that stays in the field (a presence the
/// daemon cannot close if it is killed) and one that passes now and then.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let digest = token_digest();
    let text = format!(
        r#"
[daemon]
data_dir = "{}"
log_format = "json"

[api]
listen = "127.0.0.1:{port}"
[[api.tokens]]
name = "ops"
role = "operate"
sha256 = "{digest}"

[[devices]]
id = "gate-reader"
driver = "sim"
[devices.settings]
round_ms = 100
[[devices.settings.tags]]
uid = "E004010000000001"
afi = "07"
memory = "11010131313232333334340000000000000000513E4445373035000000000000"
at_ms = 0
stay_ms = 3600000

[[stations]]
id = "exit"
kind = "gate"
devices = ["gate-reader"]
"#,
        dir.join("state").display()
    );
    let path = dir.join("rfidgw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The digest of [`TOKEN`], as `rfidgw token hash` makes it.
fn token_digest() -> String {
    let mut child = rfidgw()
        .args(["token", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), TOKEN.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(digest.len(), 64);
    digest
}

fn spawn_daemon(config: &Path) -> Child {
    rfidgw()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `status` until its exit code is `code`; its stdout.
fn status_until(config: &Path, code: i32) -> String {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let (got, out, err) = output(&["status"], Some(config));
        if got == Some(code) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "status never exited {code}: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of a running `journal --follow`, as they come.
fn follow(config: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = rfidgw()
        .args(["journal", "--follow", "--json", "-n", "1000"])
        .env("RFIDGW_CONFIG", config)
        .env("RFIDGW_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Reads followed lines until one has `kind`; that event.
fn next_of_kind(lines: &mpsc::Receiver<String>, kind: &str) -> serde_json::Value {
    let deadline = Instant::now() + HANG_GUARD;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["kind"] == kind {
            return event;
        }
    }
    panic!("journal --follow showed no {kind} within {HANG_GUARD:?}");
}

#[test]
#[allow(clippy::too_many_lines)] // one operator's session, read top to bottom
fn status_and_journal_follow_the_daemon_across_a_sigkill_and_its_unclean_stop_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port());
    let (code, out, err) = output(&["check-config"], Some(&config));
    assert_eq!(code, Some(0), "{out}{err}");

    let mut daemon = spawn_daemon(&config);
    let running = status_until(&config, 0);
    assert!(running.contains("running since"), "{running}");
    assert!(
        running.contains("gate-reader") && running.contains("exit"),
        "{running}"
    );

    let (mut follower, lines) = follow(&config);
    let arrived = next_of_kind(&lines, "tag_arrived");
    assert_eq!(arrived["uid"], "E004010000000001");

    // A real SIGKILL: no shutdown, the tag's presence is left open.
    kill(
        Pid::from_raw(daemon.id().try_into().unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    daemon.wait().unwrap();
    let stopped = status_until(&config, 3);
    assert!(stopped.contains("not running"), "{stopped}");
    assert!(stopped.contains("ended without a clean stop"), "{stopped}");
    assert!(
        stopped.contains("tag_arrived"),
        "the store's last events: {stopped}"
    );
    let (code, out, err) = output(
        &["journal", "--kind", "daemon_started", "--json"],
        Some(&config),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("showing the store"), "{err}");
    let started: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();

    // The next start says so and closes the presence; the follower, which waited, goes on.
    let mut daemon = spawn_daemon(&config);
    let unclean = next_of_kind(&lines, "unclean_stop");
    assert_eq!(unclean["data"]["previous_start"], started["time"]);
    assert_eq!(unclean["data"]["previous_start_id"], started["id"]);
    assert!(unclean["data"]["last_journal_id"].as_i64() >= started["id"].as_i64());
    let departed = next_of_kind(&lines, "tag_departed");
    assert_eq!(
        (departed["uid"].as_str(), departed["reason"].as_str()),
        (Some("E004010000000001"), Some("unclean_stop"))
    );
    assert!(departed["id"].as_i64() > unclean["id"].as_i64());
    next_of_kind(&lines, "daemon_started");

    // A clean stop this time: the next start records nothing unclean.
    kill(
        Pid::from_raw(daemon.id().try_into().unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(daemon.wait().unwrap().success());
    let stopped = status_until(&config, 3);
    assert!(stopped.contains("stopped cleanly"), "{stopped}");
    let mut daemon = spawn_daemon(&config);
    status_until(&config, 0);
    let (code, out, _) = output(
        &[
            "journal",
            "--kind",
            "unclean_stop",
            "--kind",
            "daemon_stopped",
        ],
        Some(&config),
    );
    assert_eq!(code, Some(0));
    let kinds: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(kinds, ["unclean_stop", "daemon_stopped"], "{out}");
    kill(
        Pid::from_raw(daemon.id().try_into().unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn a_bad_since_is_refused_with_the_forms_it_takes() {
    // RFIDGW_CONFIG set and --api given: both are taken (the config for the store and a
    // token file, the address from --api), no clash.
    let (code, _, err) = output(
        &["journal", "--since", "yesterday", "--api", "127.0.0.1:1"],
        Some(Path::new("/nonexistent/rfidgw.toml")),
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--since `yesterday`") && err.contains("RFC 3339"),
        "{err}"
    );
}

#[test]
fn check_config_catches_what_run_would_refuse_and_warns_about_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    let (code, out, err) = output(&["check-config", "--config", empty.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("warning") && err.contains("sets nothing"),
        "{err}"
    );

    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[[api.tokens]]\nname = \"desk\"\n\
             role = \"read\"\ntoken_file = \"desk.token\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("rfidgw.db"), "not a database, only text").unwrap();
    // The same through RFIDGW_CONFIG and through the positional file; run refuses alike.
    let (code, _, err) = output(&["check-config"], Some(&broken));
    assert_eq!(code, Some(1));
    assert!(err.contains("would not start"), "{err}");
    assert!(err.contains("api.tokens[0].token_file"), "{err}");
    assert!(err.contains("is not an SQLite database"), "{err}");
    let (code, _, positional) = output(&["check-config", broken.to_str().unwrap()], None);
    assert_eq!(
        (code, positional.contains("token_file")),
        (Some(1), true),
        "{positional}"
    );
    let (code, _, run) = output(&["run"], Some(&broken));
    assert_eq!(code, Some(1));
    assert!(run.contains("api.tokens[0].token_file"), "{run}");

    // An environment override at fault is named, on check-config as on run.
    let mut command = rfidgw();
    let out = command
        .args(["check-config", "-c", empty.to_str().unwrap()])
        .env("RFIDGW__API__LISTEN", "everywhere")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable RFIDGW__API__LISTEN"),
        "{err}"
    );
}

#[test]
fn without_config_every_command_looks_in_etc() {
    if Path::new("/etc/rfidgw/rfidgw.toml").exists() {
        return; // an installed package: the default is there, which is the point
    }
    for args in [&["check-config"][..], &["run"], &["journal"]] {
        let (code, _, err) = output(args, None);
        assert_eq!(code, Some(1), "{args:?}");
        assert!(err.contains("/etc/rfidgw/rfidgw.toml"), "{args:?}: {err}");
    }
}

/// Every subcommand `rfidgw --help` lists.
fn subcommands() -> Vec<String> {
    let (_, help, _) = output(&["--help"], None);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    let commands = subcommands();
    for expected in [
        "run",
        "check-config",
        "status",
        "journal",
        "alarms",
        "completions",
        "man",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected}: {commands:?}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = output(&["completions", shell], None);
        assert_eq!(code, Some(0), "{err}");
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell} lacks {command}");
        }
    }
    let (code, page, err) = output(&["man"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH rfidgw 1"),
        "{page}"
    );
    for command in &commands {
        let heading = format!(".SH \"RFIDGW {}\"", command.to_uppercase());
        assert!(page.contains(&heading), "the man page lacks {heading}");
    }
    assert!(
        page.contains("RFIDGW_CONFIG") && page.contains("Examples"),
        "man page"
    );
}
