//! `rfidgw tag decode|encode`: read and write library tag data from the command line.
//!
//! `decode` prints one JSON object (`model`, `primary_item_id`, `owner_institution`,
//! `parts_in_item`, `part_number`, `type_of_usage`, `crc_valid`, `security`, `error`, plus
//! `reason`, `byte_order`, `foreign` and the model's own fields under `data`) and exits 0
//! for any hex, also for an unknown tag; input that is not hex exits non-zero.
//! `encode` prints the tag memory (or EPC) as hex.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rfidgw_tag::iso28560_2::{Iso28560_2Tag, SetInfo};
use rfidgw_tag::iso28560_3::{BasicBlock, BlockForm, DdmTag, LibraryExtension};
use rfidgw_tag::rfid501::Rfid501Tag;
use rfidgw_tag::uhf::{PcWord, Sgtin96, SiteEpc};
use rfidgw_tag::{ByteOrder, SiteConfig, TagData, TagHints, parse_hex};

/// Tag subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TagCommand {
    /// Decode tag memory (HF user memory, block 0 first) or a UHF EPC given as hex; prints
    /// one JSON object.
    Decode(DecodeArgs),
    /// Encode an item for a tag model; prints hex.
    Encode(EncodeArgs),
}

/// Arguments of `rfidgw tag decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The memory or EPC as hex (spaces allowed).
    hex: String,
    /// The tag's AFI, two hex digits (gives the security state in AFI mode).
    #[arg(long, value_parser = parse_byte)]
    afi: Option<u8>,
    /// The tag's UID as hex (an `E0…` UID marks an HF tag).
    #[arg(long)]
    uid: Option<String>,
    /// The tag's DSFID, two hex digits.
    #[arg(long, value_parser = parse_byte)]
    dsfid: Option<u8>,
    /// The UHF PC word, four hex digits (marks a UHF tag; T=1 carries an AFI).
    #[arg(long, value_parser = parse_word)]
    pc: Option<u16>,
    /// The input is a UHF EPC.
    #[arg(long, conflicts_with = "hf")]
    uhf: bool,
    /// The input is HF user memory.
    #[arg(long)]
    hf: bool,
    /// The EAS bit (security mode `eas`).
    #[arg(long)]
    eas: Option<bool>,
    /// The loans cache's answer (security mode `database`).
    #[arg(long)]
    on_loan: Option<bool>,
    /// A TOML file with the site's `[tags]` settings (a daemon config, or the section alone).
    #[arg(long)]
    site: Option<PathBuf>,
}

/// The models `tag encode` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodeModel {
    /// ISO 28560-3 / Danish data model.
    #[value(name = "iso28560-3")]
    Iso28560_3,
    /// ISO 28560-2.
    #[value(name = "iso28560-2")]
    Iso28560_2,
    /// 3M RFID501.
    #[value(name = "rfid501")]
    Rfid501,
    /// SGTIN-96 (`--item` is the EPC tag URI).
    #[value(name = "epc-sgtin96")]
    EpcSgtin96,
    /// A site EPC layout (`--layout`, from `--site`).
    #[value(name = "epc-site")]
    EpcSite,
}

/// Arguments of `rfidgw tag encode`.
#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// The data model.
    #[arg(long)]
    model: EncodeModel,
    /// Primary item id (SGTIN-96: `urn:epc:tag:sgtin-96:F.CCC.III.S`).
    #[arg(long)]
    item: String,
    /// Number of parts in the item.
    #[arg(long)]
    parts: Option<u8>,
    /// Ordinal part number.
    #[arg(long)]
    part: Option<u8>,
    /// Owner ISIL (ISO 28560-2; ISO 28560-3 stores it in bytes 21-33).
    #[arg(long, conflicts_with_all = ["country"])]
    owner: Option<String>,
    /// Owner country (ISO 28560-3).
    #[arg(long)]
    country: Option<String>,
    /// Owner library (ISO 28560-3 text; RFID501 library number).
    #[arg(long)]
    library: Option<String>,
    /// Type of usage, two hex digits (ISO 28560-3 byte 0, default 11).
    #[arg(long, value_parser = parse_byte)]
    usage: Option<u8>,
    /// Shelf location (ISO 28560-2).
    #[arg(long)]
    shelf: Option<String>,
    /// Write a content parameter listing the elements present (ISO 28560-2).
    #[arg(long)]
    content_parameter: bool,
    /// Media format for the library extension block (ISO 28560-3): 0 undefined, 1 book,
    /// 2 CD/DVD, 3 magnetic tape, 4 other, 5 careful handling, 6 very small item.
    #[arg(long)]
    media_format: Option<u8>,
    /// Write the truncated 32-byte basic block (ISO 28560-3).
    #[arg(long)]
    truncated: bool,
    /// Write every 4-byte block reversed, for readers that reverse them.
    #[arg(long)]
    block_reversed: bool,
    /// RFID501 item type.
    #[arg(long, default_value_t = 0)]
    item_type: u8,
    /// RFID501 branch.
    #[arg(long, default_value_t = 0)]
    branch: u16,
    /// RFID501 custom value.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    custom: i32,
    /// Site EPC layout name (epc-site).
    #[arg(long)]
    layout: Option<String>,
    /// Security bit of a site EPC layout.
    #[arg(long)]
    secured: Option<bool>,
    /// A TOML file with the site's `[tags]` settings (for `--layout`).
    #[arg(long)]
    site: Option<PathBuf>,
}

fn parse_byte(text: &str) -> Result<u8, String> {
    match parse_hex(text)?.as_slice() {
        [byte] => Ok(*byte),
        _ => Err(format!("{text:?} is not one byte as two hex digits")),
    }
}

fn parse_word(text: &str) -> Result<u16, String> {
    match parse_hex(text)?.as_slice() {
        [high, low] => Ok(u16::from_be_bytes([*high, *low])),
        _ => Err(format!("{text:?} is not a 16-bit word as four hex digits")),
    }
}

fn load_site(path: Option<&Path>) -> anyhow::Result<SiteConfig> {
    let Some(path) = path else {
        return Ok(SiteConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let section = match table.get("tags") {
        Some(tags) => tags.clone(),
        None => toml::Value::Table(table),
    };
    let site: SiteConfig = section
        .try_into()
        .with_context(|| format!("{}: the [tags] settings", path.display()))?;
    site.validate()
        .with_context(|| path.display().to_string())?;
    Ok(site)
}

/// Runs a tag subcommand.
pub fn run(command: TagCommand) -> anyhow::Result<ExitCode> {
    match command {
        TagCommand::Decode(args) => decode(&args),
        TagCommand::Encode(args) => encode(&args),
    }
}

fn decode(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let memory = parse_hex(&args.hex).map_err(|e| anyhow::anyhow!("tag memory is not hex: {e}"))?;
    if memory.is_empty() {
        bail!("tag memory is empty: give the memory as hex");
    }
    let uid = args
        .uid
        .as_deref()
        .map(parse_hex)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--uid is not hex: {e}"))?;
    let site = load_site(args.site.as_deref())?;
    let hints = TagHints {
        uid,
        afi: args.afi,
        dsfid: args.dsfid,
        eas: args.eas,
        pc: args.pc.map(PcWord),
        uhf: if args.uhf {
            Some(true)
        } else if args.hf {
            Some(false)
        } else {
            None
        },
        on_loan: args.on_loan,
    };
    let tag = rfidgw_tag::decode(&memory, &hints, &site);
    println!("{}", serde_json::to_string(&tag)?);
    Ok(ExitCode::SUCCESS)
}

fn encode(args: &EncodeArgs) -> anyhow::Result<ExitCode> {
    let site = load_site(args.site.as_deref())?;
    let order = if args.block_reversed {
        ByteOrder::BlockReversed
    } else {
        ByteOrder::AsRead
    };
    let data = tag_data(args, &site)?;
    let bytes = rfidgw_tag::encode(&data, order, &site)?;
    println!("{}", hex::encode_upper(bytes));
    Ok(ExitCode::SUCCESS)
}

/// The tag data the arguments describe.
fn tag_data(args: &EncodeArgs, site: &SiteConfig) -> anyhow::Result<TagData> {
    let set = match (args.parts, args.part) {
        (Some(parts_in_item), Some(part_number)) => Some(SetInfo {
            parts_in_item,
            part_number,
        }),
        (None, None) => None,
        _ => bail!("--parts and --part go together"),
    };
    let data = match args.model {
        EncodeModel::Iso28560_3 => ddm_data(args, set, site)?,
        EncodeModel::Iso28560_2 => {
            let mut tag = Iso28560_2Tag {
                primary_item_id: args.item.clone(),
                content_parameter: None,
                owner_isil: args.owner.clone(),
                set,
                type_of_usage: args.usage,
                shelf_location: args.shelf.clone(),
                other: Vec::new(),
            };
            if args.content_parameter {
                let present = [
                    (3, tag.owner_isil.is_some()),
                    (4, tag.set.is_some()),
                    (5, tag.type_of_usage.is_some()),
                    (6, tag.shelf_location.is_some()),
                ];
                tag.content_parameter = Some(
                    present
                        .iter()
                        .filter(|(_, p)| *p)
                        .map(|(rel, _)| *rel)
                        .collect(),
                );
            }
            TagData::Iso28560_2(tag)
        }
        EncodeModel::Rfid501 => {
            let library = match &args.library {
                Some(text) => text
                    .parse()
                    .with_context(|| format!("--library {text:?} is not a library number"))?,
                None => 0,
            };
            let set = set.unwrap_or(SetInfo {
                parts_in_item: 1,
                part_number: 1,
            });
            TagData::Rfid501(Rfid501Tag {
                set_number: set.part_number,
                total_in_set: set.parts_in_item,
                item_type: args.item_type,
                content: args.item.clone(),
                branch: args.branch,
                library,
                custom: args.custom,
            })
        }
        EncodeModel::EpcSgtin96 => TagData::Sgtin96(Sgtin96::from_tag_uri(&args.item)?),
        EncodeModel::EpcSite => {
            let layout = args
                .layout
                .clone()
                .context("--model epc-site needs --layout (and --site with that layout)")?;
            TagData::SiteEpc(SiteEpc {
                layout,
                item_id: args.item.clone(),
                secured: args.secured,
            })
        }
    };
    Ok(data)
}

/// ISO 28560-3 data from the arguments (set defaults to 1 of 1, usage to 11).
fn ddm_data(args: &EncodeArgs, set: Option<SetInfo>, site: &SiteConfig) -> anyhow::Result<TagData> {
    let (country, library) = match (&args.owner, &args.country) {
        (Some(isil), _) => {
            let (country, rest) = isil.split_at(isil.find('-').unwrap_or(isil.len()));
            (country.to_owned(), rest.to_owned())
        }
        (None, country) => (
            country.clone().unwrap_or_default(),
            args.library.clone().unwrap_or_default(),
        ),
    };
    let set = set.unwrap_or(SetInfo {
        parts_in_item: 1,
        part_number: 1,
    });
    // A primary item id over 16 bytes, or a media format, goes in the library extension block.
    let long_pii = args.item.len() > rfidgw_tag::iso28560_3::PII_LEN;
    let extensions = if long_pii || args.media_format.is_some() {
        let ext = LibraryExtension {
            media_format: args.media_format,
            item_id: long_pii.then(|| args.item.clone()),
            owner: None,
        };
        vec![ext.to_block()?]
    } else {
        Vec::new()
    };
    Ok(TagData::Iso28560_3(DdmTag {
        basic: BasicBlock {
            type_of_usage: args.usage.unwrap_or(0x11),
            parts_in_item: set.parts_in_item,
            part_number: set.part_number,
            primary_item_id: args.item.clone(),
            country,
            library,
        },
        form: if args.truncated || site.truncated_basic_block {
            BlockForm::Truncated
        } else {
            BlockForm::Full
        },
        extensions,
    }))
}
