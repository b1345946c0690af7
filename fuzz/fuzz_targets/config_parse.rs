//! Fuzz the config parser: any text (and any RFIDGW__ override) gives a config or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, &str)| {
    let (text, override_value) = data;
    let env = [("RFIDGW__API__LISTEN".to_owned(), override_value.to_owned())];
    if let Err(error) = rfidgw::config::Config::parse("fuzz.toml", text, env) {
        // Every error names what it is about: the file, or the environment variable
        // whose value is wrong.
        let text = error.to_string();
        assert!(
            text.starts_with("fuzz.toml")
                || text.starts_with("environment variable RFIDGW__API__LISTEN"),
            "{text}"
        );
    }
});
