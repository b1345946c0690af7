//! Config layering (file, then `RFIDGW__` environment) and every kind of config error.

use std::path::PathBuf;

use rfidgw::config::{Config, ConfigError, LogFormat};

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rfidgw.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const MINIMAL: &str = r#"
[daemon]
data_dir = "/tmp/rfidgw-test"

[api]
listen = "127.0.0.1:0"

[[devices]]
id = "gate-reader"
driver = "sim"
settings = { round_ms = 1000 }

[[stations]]
id = "exit"
kind = "gate"
devices = ["gate-reader"]
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_error(text: &str) -> String {
    let (_dir, path) = write(text);
    let error = Config::load_with_env(&path, env(&[])).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("rfidgw.toml"),
        "error must name the file: {message}"
    );
    message
}

#[test]
fn a_minimal_file_loads_with_defaults_for_everything_else() {
    let (_dir, path) = write(MINIMAL);
    let config = Config::load_with_env(&path, env(&[])).unwrap();
    assert_eq!(config.devices.len(), 1);
    assert_eq!(config.station_of("gate-reader").unwrap().id, "exit");
    assert_eq!(config.daemon.log_level, "info");
    assert_eq!(config.daemon.log_format, LogFormat::Auto);
    assert_eq!(config.store.file, PathBuf::from("rfidgw.db"));
}

#[test]
fn environment_overrides_the_file_by_section_and_key() {
    let (_dir, path) = write(MINIMAL);
    let config = Config::load_with_env(
        &path,
        env(&[
            ("RFIDGW__API__LISTEN", "0.0.0.0:9000"),
            ("RFIDGW__DAEMON__SHUTDOWN_TIMEOUT_MS", "1234"),
            ("RFIDGW__DAEMON__LOG_FORMAT", "json"),
            ("OTHER__API__LISTEN", "1.2.3.4:1"),
        ]),
    )
    .unwrap();
    assert_eq!(config.api.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.daemon.shutdown_timeout_ms, 1234);
    assert_eq!(config.daemon.log_format, LogFormat::Json);
}

#[test]
fn an_environment_override_with_a_wrong_type_names_the_key() {
    let (_dir, path) = write(MINIMAL);
    let error = Config::load_with_env(
        &path,
        env(&[("RFIDGW__DAEMON__SHUTDOWN_TIMEOUT_MS", "soon")]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("shutdown_timeout_ms"), "{error}");
}

#[test]
fn a_misspelt_key_is_rejected_and_named() {
    let message = load_error(&MINIMAL.replace("listen =", "listne ="));
    assert!(message.contains("listne"), "{message}");
}

#[test]
fn an_unknown_section_is_rejected_and_named() {
    let message = load_error(&format!("{MINIMAL}\n[gatez]\nx = 1\n"));
    assert!(message.contains("gatez"), "{message}");
}

#[test]
fn a_wrong_type_names_the_key() {
    let message = load_error(&MINIMAL.replace(
        "data_dir = \"/tmp/rfidgw-test\"",
        "data_dir = \"/tmp\"\nshutdown_timeout_ms = \"five\"",
    ));
    assert!(message.contains("shutdown_timeout_ms"), "{message}");
}

#[test]
fn a_bad_socket_address_names_the_key() {
    let message = load_error(&MINIMAL.replace("127.0.0.1:0", "localhost"));
    assert!(message.contains("listen"), "{message}");
}

#[test]
fn a_missing_required_value_names_the_key() {
    let message = load_error(&MINIMAL.replace("id = \"gate-reader\"\n", ""));
    assert!(message.contains("id"), "{message}");
}

#[test]
fn an_unknown_driver_is_rejected_and_named() {
    let message = load_error(&MINIMAL.replace("driver = \"sim\"", "driver = \"teleport\""));
    assert!(message.contains("teleport"), "{message}");
}

#[test]
fn bad_driver_settings_name_the_device_and_the_key() {
    let message = load_error(&MINIMAL.replace("round_ms = 1000", "round_ms = 1000, speed = 3"));
    assert!(
        message.contains("devices.gate-reader.settings"),
        "{message}"
    );
    assert!(message.contains("speed"), "{message}");
    let message = load_error(&MINIMAL.replace("round_ms = 1000", "round_ms = \"soon\""));
    assert!(
        message.contains("devices.gate-reader.settings: round_ms"),
        "{message}"
    );
}

#[test]
fn duplicate_device_ids_are_rejected() {
    let twice = MINIMAL.replace(
        "[[stations]]",
        "[[devices]]\nid = \"gate-reader\"\ndriver = \"sim\"\nsettings = { round_ms = 5 }\n\n[[stations]]",
    );
    let message = load_error(&twice);
    assert!(message.contains("devices.gate-reader"), "{message}");
    assert!(message.contains("unique"), "{message}");
}

#[test]
fn a_station_naming_an_unknown_device_is_rejected() {
    let message =
        load_error(&MINIMAL.replace("devices = [\"gate-reader\"]", "devices = [\"nope\"]"));
    assert!(message.contains("stations.exit.devices"), "{message}");
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn a_bad_log_filter_is_rejected() {
    let message = load_error(&MINIMAL.replace(
        "data_dir = \"/tmp/rfidgw-test\"",
        "data_dir = \"/tmp\"\nlog_level = \"info,=[\"",
    ));
    assert!(message.contains("daemon.log_level"), "{message}");
}

#[test]
fn a_file_that_is_not_toml_says_where() {
    let message = load_error("[daemon\nlog_level = 1");
    assert!(!message.is_empty());
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let error = Config::load_with_env(std::path::Path::new("/nonexistent/rfidgw.toml"), env(&[]))
        .unwrap_err();
    assert!(matches!(error, ConfigError::Load { .. }));
    assert!(
        error.to_string().contains("/nonexistent/rfidgw.toml"),
        "{error}"
    );
}

#[test]
fn the_documented_example_and_the_demo_config_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["config/rfidgw.toml", "config/demo.toml"] {
        let path = PathBuf::from(root).join(file);
        if let Err(error) = Config::load_with_env(&path, env(&[])) {
            panic!("{file} is not valid: {error}");
        }
    }
}

#[test]
fn state_directory_from_systemd_wins_over_data_dir() {
    use rfidgw::config::resolve_state_dir;
    let data_dir = std::path::Path::new("/srv/rfidgw");
    let table = [
        (None, "/srv/rfidgw"),
        (Some(""), "/srv/rfidgw"),
        (Some("/var/lib/rfidgw"), "/var/lib/rfidgw"),
        (Some("/var/lib/rfidgw:/var/lib/other"), "/var/lib/rfidgw"),
    ];
    for (env, expected) in table {
        assert_eq!(
            resolve_state_dir(env, data_dir),
            PathBuf::from(expected),
            "{env:?}"
        );
    }
}

mod properties {
    use proptest::prelude::*;
    use rfidgw::config::Config;

    proptest! {
        #[test]
        fn any_text_is_a_config_or_an_error_naming_the_file(text in ".{0,400}") {
            if let Err(error) = Config::parse("prop.toml", &text, Vec::new()) {
                prop_assert!(error.to_string().starts_with("prop.toml"));
            }
        }

        #[test]
        fn any_value_of_a_known_key_is_accepted_or_rejected_by_name(value in "[ -~]{0,40}") {
            let text = format!("[daemon]\nshutdown_timeout_ms = {value:?}\n");
            match Config::parse("prop.toml", &text, Vec::new()) {
                Ok(config) => prop_assert_eq!(Ok(config.daemon.shutdown_timeout_ms), value.trim().parse::<u64>()),
                Err(error) => prop_assert!(error.to_string().contains("shutdown_timeout_ms"), "{}", error),
            }
        }
    }
}

/// A gate config with a FEIG reader limited to AFI 07, for the gate checks below.
const GATE: &str = r#"
[daemon]
data_dir = "/tmp/rfidgw-test"

[[devices]]
id = "left"
driver = "feig"
[devices.settings.transport]
kind = "simulator"
[devices.settings.poll]
inventory_afi = "07"

[[devices]]
id = "desk"
driver = "sim"
settings = { round_ms = 1000 }

[[stations]]
id = "exit"
kind = "gate"
devices = ["left"]
[stations.gate]
leave_window_ms = 1000
"#;

#[test]
fn gate_mistakes_name_the_key_and_say_what_would_work() {
    // (what to append or replace, the key named, words of the explanation)
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{GATE}[[stations.gate.alarm.outputs]]\ndevice = \"desk\"\n"),
            "stations.exit.gate.alarm.outputs[0].device",
            "not one of this gate's devices",
        ),
        (
            format!("{GATE}[stations.gate.counting]\ndevice = \"left\"\nouter_input = 4\n"),
            "stations.exit.gate.counting.outer_input",
            "1 to 3",
        ),
        (
            format!("{GATE}[stations.gate.counting]\ndevice = \"left\"\nouter_input = 2\n"),
            "stations.exit.gate.counting.inner_input",
            "two different inputs",
        ),
        (
            format!("{GATE}[stations.gate.policy]\nforeign = \"alarm\"\n"),
            "devices.left.settings.poll.inventory_afi",
            "needs every tag",
        ),
        (
            format!("{GATE}[tags.security]\nmode = \"database\"\n"),
            "devices.left.settings.poll.inventory_afi",
            "CFG4",
        ),
        (
            format!("{GATE}[stations.gate.alarm]\ncommand_deadline_ms = 0\n"),
            "stations.exit.gate.alarm.command_deadline_ms",
            "at least 1",
        ),
        (
            GATE.replace("kind = \"gate\"", "kind = \"staff\""),
            "stations.exit.gate",
            "kind \"gate\"",
        ),
        (
            format!("{GATE}[stations.gate.policy]\nforeign = \"sound\"\n"),
            "foreign",
            "sound",
        ),
        (
            GATE.replace("leave_window_ms", "leave_ms"),
            "leave_ms",
            "unknown field",
        ),
    ];
    for (text, key, words) in cases {
        let message = load_error(&text);
        assert!(
            message.contains(key) && message.contains(words),
            "{key}: {message}"
        );
    }
    // The AFI limit is fine when the policies need only secured items.
    let (_dir, path) = write(GATE);
    Config::load_with_env(&path, env(&[])).unwrap();
}

/// A return station with a sorter and its plan (written next to the config), for the
/// return and self-check checks below.
const RETURNS: &str = r#"
[daemon]
data_dir = "/tmp/rfidgw-test"

[[devices]]
id = "reader"
driver = "feig"
[devices.settings.transport]
kind = "simulator"

[[devices]]
id = "sorter"
driver = "modbus"
[devices.settings.transport]
kind = "simulator"
[devices.settings.map]
bins = 2
divert = { kind = "register", register = 100 }

[[devices]]
id = "pad"
driver = "feig"
[devices.settings.transport]
kind = "simulator"

[[stations]]
id = "drop"
kind = "return"
devices = ["reader", "sorter"]
[stations.returns]
sorter = "sorter"
sort_plan = "plan.toml"
[stations.offline]
mode = "checkin"

[[stations]]
id = "kiosk"
kind = "self-check"
devices = ["pad"]
"#;

const PLAN: &str = "version = 1\nexception_bin = 2\n[bins]\n1 = \"Shelving\"\n2 = \"Exceptions\"\n[[rules]]\nname = \"all\"\nok = true\nbin = 1\n";

fn returns_error(text: &str, plan: &str) -> String {
    let (dir, path) = write(text);
    std::fs::write(dir.path().join("plan.toml"), plan).unwrap();
    match Config::load_with_env(&path, env(&[])) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn return_and_self_check_mistakes_name_the_key() {
    // The plan is found next to the config, wherever the daemon was started from.
    assert_eq!(returns_error(RETURNS, PLAN), "");
    // (config, plan, the key named, words of the explanation)
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            RETURNS.replace("sorter = \"sorter\"", "sorter = \"pad\""),
            PLAN,
            "stations.drop.returns.sorter",
            "not one of this station's devices",
        ),
        (
            RETURNS.replace("sort_plan = \"plan.toml\"\n", ""),
            PLAN,
            "stations.drop.returns.sort_plan",
            "needs a sort plan",
        ),
        (
            RETURNS.replace("plan.toml", "missing.toml"),
            PLAN,
            "stations.drop.returns.sort_plan",
            "cannot read",
        ),
        (
            RETURNS.to_owned(),
            "version = 1\n[bins]\n1 = \"A\"\n",
            "stations.drop.returns.sort_plan",
            "exception_bin",
        ),
        (
            RETURNS.replace("kind = \"return\"", "kind = \"staff\""),
            PLAN,
            "stations.drop.returns",
            "kind \"return\"",
        ),
        (
            RETURNS.replace("mode = \"checkin\"", "mode = \"always\""),
            PLAN,
            "mode",
            "always",
        ),
        (
            format!(
                "{RETURNS}[stations.offline]\nmode = \"checkin-checkout\"\nmax_items_per_patron = 0\n"
            ),
            PLAN,
            "stations.kiosk.offline.max_items_per_patron",
            "at least 1",
        ),
        (
            format!("{RETURNS}[stations.selfcheck]\nidle_ms = 5\n"),
            PLAN,
            "idle_ms",
            "unknown field",
        ),
        (
            format!("{RETURNS}[tags.security]\nmode = \"epc-bit\"\n"),
            PLAN,
            "tags.security.mode",
            "writes tag security",
        ),
        (
            format!("{RETURNS}[circulation]\ncommand_deadline_ms = 0\n"),
            PLAN,
            "circulation.command_deadline_ms",
            "at least 1",
        ),
    ];
    for (text, plan, key, words) in cases {
        let message = returns_error(&text, plan);
        assert!(
            message.contains("rfidgw.toml") && message.contains(key) && message.contains(words),
            "{key}: {message}"
        );
    }
}

// Issue 13: the mistakes check-config must catch before a start, in words.

#[test]
fn a_log_level_typo_is_refused_with_the_level_it_resembles() {
    let message = load_error(&MINIMAL.replace(
        "data_dir = \"/tmp/rfidgw-test\"",
        "data_dir = \"/tmp\"\nlog_level = \"inof\"",
    ));
    assert!(
        message.contains("daemon.log_level") && message.contains("did you mean \"info\""),
        "{message}"
    );
    let message = load_error(&MINIMAL.replace(
        "data_dir = \"/tmp/rfidgw-test\"",
        "data_dir = \"/tmp\"\nlog_level = \"rfidgw=loud,info\"",
    ));
    assert!(message.contains("\"loud\" is not a level"), "{message}");
}

#[test]
fn an_unknown_driver_lists_the_drivers_in_words() {
    let message = load_error(&MINIMAL.replace("driver = \"sim\"", "driver = \"fieg\""));
    assert!(message.contains("unknown driver \"fieg\""), "{message}");
    for driver in ["sim", "feig", "3m810", "hid", "modbus", "mqtt"] {
        assert!(message.contains(driver), "{driver} missing: {message}");
    }
    assert!(message.contains("devices[0].driver"), "{message}");
    assert!(
        !message.contains("DriverKind") && !message.contains("enum"),
        "{message}"
    );
}

#[test]
fn a_wrong_environment_override_names_the_variable_not_the_file() {
    let (_dir, path) = write(MINIMAL);
    for (variable, value) in [
        ("RFIDGW__DAEMON__SHUTDOWN_TIMEOUT_MS", "soon"),
        ("RFIDGW__API__LISTEN", "everywhere"),
        ("RFIDGW__API__LISTN", "127.0.0.1:1"),
        ("RFIDGW__STORE__BATCH_MAX", "0"),
    ] {
        let error = Config::load_with_env(&path, env(&[(variable, value)])).unwrap_err();
        assert!(
            matches!(error, ConfigError::Env { .. }),
            "{variable}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("environment variable {variable}:")),
            "{message}"
        );
    }
    // A mistake in the file stays the file's, overrides or not.
    let (_dir, path) = write(&MINIMAL.replace("driver = \"sim\"", "driver = \"fieg\""));
    let error =
        Config::load_with_env(&path, env(&[("RFIDGW__API__LISTEN", "127.0.0.1:0")])).unwrap_err();
    assert!(matches!(error, ConfigError::Load { .. }), "{error:?}");
}
