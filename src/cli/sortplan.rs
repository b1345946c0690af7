//! `rfidgw sort-plan check|test` (issue 9): check a sort plan, and see which bin a checkin
//! response goes to, without a sorter or an ILS.
//!
//! ```text
//! rfidgw sort-plan check config/sortplan.toml
//! rfidgw sort-plan test config/sortplan.toml --checkin '101YNN19980821    085721AO…|CLsort bin A1|AY2AZA3FF'
//! rfidgw sort-plan test config/sortplan.toml --offline --tag 1101013132… --site config/rfidgw.toml
//! ```
//!
//! `check` exits 0 with a one-line summary when the plan is fine; otherwise it names the
//! key or the rule (plan, number from 1, name) of each problem and exits 1. `test` prints
//! one JSON object: `bin`, `bin_name`, `rule` (`index`, `name`, or null), `reason`, `plan`,
//! `exception`, and the `facts` the rules looked at.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rfidgw_sip2::Encoding;
use rfidgw_sip2::codec::{ChecksumPolicy, Sip2Codec, Terminator};
use rfidgw_sip2::frame::{CheckinResponse, Command, Sip2Message, WireFormat};
use rfidgw_tag::{SiteConfig, TagHints, parse_hex};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::station::sortplan::{CheckinFacts, PlanSelection, SortPlan, TagFacts};

/// Sort-plan subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SortPlanCommand {
    /// Check a sort plan: unknown bins, rules that can never match, a missing exception
    /// bin. Exits 0 with a one-line summary when it is fine.
    Check(CheckArgs),
    /// Show where one item goes: the bin, the rule and the reason, as JSON.
    Test(TestArgs),
}

/// Arguments of `rfidgw sort-plan check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The sort plan (TOML).
    plan: PathBuf,
}

/// Arguments of `rfidgw sort-plan test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The sort plan (TOML).
    plan: PathBuf,
    /// A raw SIP2 10 Checkin Response frame, with or without its trailing CR.
    #[arg(long, required_unless_present = "offline", conflicts_with = "offline")]
    checkin: Option<String>,
    /// An offline return: no checkin response, only the tag's facts.
    #[arg(long)]
    offline: bool,
    /// The tag's memory (HF user memory or UHF EPC) as hex.
    #[arg(long)]
    tag: Option<String>,
    /// A TOML file with the site's `[tags]` settings (a daemon config, or the section
    /// alone); it says which owners are ours.
    #[arg(long)]
    site: Option<PathBuf>,
    /// The moment to decide at (RFC 3339, e.g. 2026-12-24T10:00:00+01:00); its wall-clock
    /// date and time pick the scheduled plan. Default: now, local time.
    #[arg(long)]
    at: Option<String>,
    /// Sort by this plan instead of the schedule (as the plan-switching command does).
    #[arg(long)]
    plan_name: Option<String>,
    /// Character set of the frame: utf8, cp850, latin1, gb18030, gbk or ascii.
    #[arg(long, default_value = "utf8")]
    encoding: Encoding,
}

/// Runs a sort-plan subcommand.
pub fn run(command: SortPlanCommand) -> anyhow::Result<ExitCode> {
    match command {
        SortPlanCommand::Check(args) => check(&args),
        SortPlanCommand::Test(args) => test(&args),
    }
}

fn load(path: &Path) -> anyhow::Result<SortPlan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SortPlan::from_toml(&text).with_context(|| path.display().to_string())
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = load(&args.plan)?;
    let problems = plan.check();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{}: {problem}", args.plan.display());
        }
        eprintln!(
            "{}: {} problem{}",
            args.plan.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    let exception = plan.exception_bin();
    let plans: Vec<String> = plan
        .plans()
        .map(|(name, rules)| format!("{name} ({rules} rules)"))
        .collect();
    println!(
        "{}: ok: {} bins, exception bin {exception} {:?}, plans {}, {} schedule entries",
        args.plan.display(),
        plan.bins().len(),
        plan.bins().get(&exception).map_or("", String::as_str),
        plans.join(", "),
        plan.schedule_len()
    );
    Ok(ExitCode::SUCCESS)
}

fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let plan = load(&args.plan)?;
    let checkin = match &args.checkin {
        Some(frame) => CheckinFacts::from_response(&parse_checkin(frame, args.encoding)?),
        None => CheckinFacts::offline(),
    };
    let tag = match &args.tag {
        Some(hex) => {
            let memory = parse_hex(hex).map_err(|e| anyhow::anyhow!("--tag is not hex: {e}"))?;
            if memory.is_empty() {
                bail!("--tag is empty: give the tag memory as hex");
            }
            let site = load_site(args.site.as_deref())?;
            TagFacts::from_tag(&rfidgw_tag::decode(&memory, &TagHints::default(), &site))
        }
        None => TagFacts::default(),
    };
    let now = match &args.at {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339).with_context(|| {
            format!("--at {text:?} is not an RFC 3339 time like 2026-12-24T10:00:00+01:00")
        })?,
        None => OffsetDateTime::now_local().unwrap_or_else(|_| OffsetDateTime::now_utc()),
    };
    let now = PrimitiveDateTime::new(now.date(), now.time());
    let selection = match &args.plan_name {
        Some(name) => plan.select(name)?,
        None => PlanSelection::Schedule,
    };
    let decision = plan.decide_with(&selection, &checkin, &tag, now);
    let mut value = serde_json::to_value(&decision)?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "facts".into(),
            json!({ "checkin": checkin.ils, "tag": tag }),
        );
    }
    println!("{value}");
    Ok(ExitCode::SUCCESS)
}

/// Reads a raw 10 Checkin Response frame; a wrong checksum is accepted (this is a test of
/// the plan, not of the line).
fn parse_checkin(frame: &str, encoding: Encoding) -> anyhow::Result<CheckinResponse> {
    let format = WireFormat {
        encoding,
        ..WireFormat::default()
    };
    let mut buf = BytesMut::from(encoding.encode(frame).as_slice());
    if !buf.ends_with(b"\r") && !buf.ends_with(b"\r\n") {
        buf.extend_from_slice(b"\r");
    }
    let mut codec = Sip2Codec::new(format, Terminator::Cr, ChecksumPolicy::Lenient);
    let decoded = codec
        .decode(&mut buf)?
        .context("--checkin: no SIP2 frame in the input")?
        .context("--checkin: not a valid SIP2 frame")?;
    if decoded.message.command != Command::CheckinResponse {
        bail!(
            "--checkin: the frame is a {}, not a 10 Checkin Response",
            decoded.message.command
        );
    }
    CheckinResponse::from_message(&decoded.message).context("--checkin")
}

/// The site's `[tags]` settings from a daemon config or the section alone.
fn load_site(path: Option<&Path>) -> anyhow::Result<SiteConfig> {
    let Some(path) = path else {
        return Ok(SiteConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let section = table
        .get("tags")
        .cloned()
        .unwrap_or(toml::Value::Table(table));
    let site: SiteConfig = section
        .try_into()
        .with_context(|| format!("{}: the [tags] settings", path.display()))?;
    site.validate()
        .with_context(|| path.display().to_string())?;
    Ok(site)
}
