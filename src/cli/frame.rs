//! `rfidgw frame decode --protocol feig|3m810 HEX`: a field engineer's tool for captured
//! reader traffic. Prints the parsed frame as one JSON object with at least `command`,
//! `status` (null for a request), `crc_valid`, `uids` and `data`; a frame that does not
//! parse still gets what could be said, plus `error`, and a non-zero exit.

use std::process::ExitCode;

use anyhow::Context;
use rfidgw_driver::FrameDescription;

/// Frame subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FrameCommand {
    /// Decode one captured frame and print it as JSON.
    Decode(DecodeArgs),
}

/// The protocols `frame decode` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// FEIG OBID ISO-Host (standard and advanced length).
    Feig,
    /// 3M 810 staff pad / 3M RFID Reader Model 210.
    #[value(name = "3m810")]
    M3m810,
}

/// Which way the frame went, when the capture knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Host to reader.
    Request,
    /// Reader to host.
    Reply,
}

/// Arguments of `rfidgw frame decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The reader protocol.
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// Which way the frame went (guessed from its shape when absent).
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
    /// The frame as hex; spaces, colons and dashes between bytes are allowed, and the
    /// bytes may be split over several arguments (`07 FF B0 01 00 1C 56`).
    #[arg(required = true, num_args = 1..)]
    pub hex: Vec<String>,
}

/// Runs a frame subcommand.
pub fn run(command: FrameCommand) -> anyhow::Result<ExitCode> {
    match command {
        FrameCommand::Decode(args) => decode(&args),
    }
}

/// Hex text to bytes, ignoring the separators captures use.
fn parse_hex(parts: &[String]) -> anyhow::Result<Vec<u8>> {
    let compact: String = parts
        .iter()
        .flat_map(|p| p.chars())
        .filter(|c| !c.is_whitespace() && !matches!(c, ':' | '-' | ','))
        .collect();
    let compact = compact.strip_prefix("0x").unwrap_or(&compact);
    if compact.is_empty() {
        anyhow::bail!("no frame bytes given");
    }
    if let Some((offset, c)) = compact.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        anyhow::bail!("not hex: `{c}` at character {offset} of `{compact}`");
    }
    hex::decode(compact).with_context(|| {
        format!(
            "not hex: {} digits is an odd count; each byte needs two",
            compact.len()
        )
    })
}

/// The description as one JSON object; `error` (top level) when the frame did not parse.
fn to_json(description: &FrameDescription) -> serde_json::Value {
    let mut value = serde_json::to_value(description).unwrap_or_default();
    if let (Some(error), Some(object)) = (description.fields.get("error"), value.as_object_mut()) {
        object.insert("error".into(), serde_json::Value::String(error.clone()));
    }
    value
}

fn describe(args: &DecodeArgs, bytes: &[u8]) -> FrameDescription {
    match args.protocol {
        Protocol::Feig => rfidgw_feig::describe_frame_as(
            bytes,
            args.direction.map(|d| match d {
                Direction::Request => rfidgw_feig::Direction::Request,
                Direction::Reply => rfidgw_feig::Direction::Reply,
            }),
        ),
        Protocol::M3m810 => rfidgw_3m810::describe_frame_as(
            bytes,
            args.direction.map(|d| match d {
                Direction::Request => rfidgw_3m810::Direction::Request,
                Direction::Reply => rfidgw_3m810::Direction::Reply,
            }),
        ),
    }
}

fn decode(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let bytes = parse_hex(&args.hex)?;
    let description = describe(args, &bytes);
    let json = to_json(&description);
    println!("{json}");
    Ok(if json.get("error").is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn hex_may_be_split_and_separated_as_captures_write_it() {
        let cases: [(&[&str], &[u8]); 4] = [
            (
                &["07FFB001001C56"],
                &[0x07, 0xFF, 0xB0, 0x01, 0x00, 0x1C, 0x56],
            ),
            (&["07", "ff", "b0"], &[0x07, 0xFF, 0xB0]),
            (&["07:FF:B0"], &[0x07, 0xFF, 0xB0]),
            (&["0x07FF"], &[0x07, 0xFF]),
        ];
        for (parts, want) in cases {
            assert_eq!(parse_hex(&strings(parts)).unwrap(), want, "{parts:?}");
        }
    }

    #[test]
    fn non_hex_input_is_refused_with_the_offending_character() {
        let err = parse_hex(&strings(&["07FZ"])).unwrap_err().to_string();
        assert!(err.contains("`Z` at character 3"), "{err}");
        let err = parse_hex(&strings(&["07F"])).unwrap_err().to_string();
        assert!(err.contains("odd"), "{err}");
        assert!(parse_hex(&strings(&[" "])).is_err());
    }

    #[test]
    fn a_feig_inventory_reply_prints_the_required_fields() {
        let args = DecodeArgs {
            protocol: Protocol::Feig,
            direction: None,
            hex: strings(&["1100B000010300E00401003126911738B3"]),
        };
        let json = to_json(&describe(&args, &parse_hex(&args.hex).unwrap()));
        assert_eq!(json["command"], "B0 01 inventory");
        assert_eq!(json["status"], "00 OK");
        assert_eq!(json["crc_valid"], true);
        assert_eq!(json["uids"], serde_json::json!(["E004010031269117"]));
        assert!(json.get("data").is_some());
        assert!(json.get("error").is_none());
    }

    #[test]
    fn a_request_has_a_null_status_and_a_broken_frame_an_error() {
        let args = DecodeArgs {
            protocol: Protocol::Feig,
            direction: None,
            hex: strings(&["07FFB001001C56"]),
        };
        let json = to_json(&describe(&args, &parse_hex(&args.hex).unwrap()));
        assert!(json["status"].is_null());
        let broken = to_json(&describe(&args, &[0x07, 0xFF]));
        assert!(
            broken["error"].as_str().unwrap().contains("too short"),
            "{broken}"
        );
        assert_eq!(broken["crc_valid"], false);
    }
}
