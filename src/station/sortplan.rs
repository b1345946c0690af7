//! Sort plans: which bin of a sorter a returned item goes to (issue 9, PROTOCOLS.md §4.8).
//!
//! A sort plan is a versioned TOML file (`version = 1`) shared by every induction unit of a
//! sorter; `config/sortplan.toml` documents it key by key. It declares the bins by number
//! and name, a mandatory exception bin, and ordered first-match rules over the facts of one
//! return:
//!
//! * the 10 Checkin Response (SIP2 §1.5, §1.8): `ok`, `alert`, `magnetic_media`,
//!   `alert_type` (CV), `sort_bin` (CL), `media_type` (CK), `permanent_location` (AQ),
//!   `destination` (CT), `collection` (CR), `call_number` (CS), `hold_patron` (CY);
//! * the tag: `media_format` (ISO 28560-3 library extension, §2.3), `owner` (ours, foreign,
//!   unknown) and `type_of_usage` (the byte as stored, two hex digits, §2.1).
//!
//! Alternate plans (`[plans.NAME]`) are switched by a schedule (weekdays, times of day,
//! dates for holidays) or by a command ([`SortPlan::select`]).
//!
//! Everything here is pure. [`SortPlan::from_toml`] reads a plan and refuses one that cannot
//! work (an undeclared bin, no exception bin, a schedule naming an unknown plan), naming the
//! key or the rule; [`SortPlan::check`] finds rules that can never match; and
//! [`SortPlan::decide`] maps ([`CheckinFacts`], [`TagFacts`], local time) to a
//! [`SortDecision`] that always names a declared bin and records why.
//!
//! Semantics:
//!
//! * Rules are numbered from 1 in file order within their plan. All conditions of a rule
//!   must hold; the first rule that holds wins; when none does, the item goes to the
//!   exception bin with the reason "no rule matched".
//! * A rule without `ok` never takes a checkin the ILS rejected: rejections go to a rule
//!   that asks for them (`ok = false`) or to the exception bin, with the ILS's screen
//!   message as the reason.
//! * An offline return has no checkin response: every condition on a checkin-response fact
//!   fails (`ok = true`, `ok = false` and `alert_type = "*"` alike), so only rules over tag
//!   facts (or none at all) sort it.
//! * Text conditions compare whole values, ignoring ASCII case and surrounding blanks:
//!   `"001"` exact, `"PBK*"` prefix, `"*"` any value that is present, `""` a value that is
//!   missing or empty, and lists (`"7*,8*,9*"` or a TOML array; use the array form for
//!   values that contain a comma).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use rfidgw_sip2::frame::CheckinResponse;
use rfidgw_tag::iso28560_3::media_format_name;
use rfidgw_tag::{DecodedTag, OwnerClass, TagData};
use serde::Serialize;
use time::{Date, Month, PrimitiveDateTime};
use toml::Value;

/// The plan format version this build reads.
pub const VERSION: i64 = 1;

/// The name of the plan made of the top-level `[[rules]]`.
pub const DEFAULT_PLAN: &str = "default";

const TOP_KEYS: [&str; 6] = [
    "version",
    "exception_bin",
    "bins",
    "rules",
    "plans",
    "schedule",
];
const SCHEDULE_KEYS: [&str; 4] = ["plan", "days", "time", "dates"];

/// Why a sort plan cannot be used. Every variant says where: the key, the rule (plan,
/// number and name) or the schedule entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SortPlanError {
    /// The text is not TOML.
    #[error("not valid TOML: {message}")]
    Toml {
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A top-level key (`version`, `bins.7`, `plans.evening`, …) is missing, unknown or
    /// has a bad value.
    #[error("{key}: {message}")]
    Key {
        /// The key.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A rule is wrong.
    #[error("plan {plan:?}, {rule}{}: {message}", at_key(.key))]
    Rule {
        /// The plan the rule belongs to.
        plan: String,
        /// The rule's number (from 1) and name (empty when it has none).
        rule: RuleRef,
        /// The key in the rule (empty when the rule as a whole is wrong).
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A `[[schedule]]` entry is wrong.
    #[error("schedule entry {index}{}: {message}", at_key(.key))]
    Schedule {
        /// The entry's number, from 1.
        index: usize,
        /// The key in the entry (empty when the entry as a whole is wrong).
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A command selected a plan the file does not have.
    #[error("no plan named {name:?}; the plans are {known}")]
    UnknownPlan {
        /// The name asked for.
        name: String,
        /// The plans there are, comma-separated.
        known: String,
    },
}

fn at_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(", key `{key}`")
    }
}

/// A rule of a plan: its number (from 1, in file order) and its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RuleRef {
    /// Number of the rule in its plan, from 1.
    pub index: usize,
    /// The rule's `name`.
    pub name: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "rule {}", self.index)
        } else {
            write!(f, "rule {} {:?}", self.index, self.name)
        }
    }
}

/// Something [`SortPlan::check`] found: the plan still loads, but it does not do what its
/// author meant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The plan.
    pub plan: String,
    /// The rule, when the problem is one rule.
    pub rule: Option<RuleRef>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "plan {:?}, {rule}: {}", self.plan, self.message),
            None => write!(f, "plan {:?}: {}", self.plan, self.message),
        }
    }
}

/// What the 10 Checkin Response said about an item, or that there was none (an offline
/// return).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckinFacts {
    /// The response's facts; `None` for an offline return.
    pub ils: Option<IlsFacts>,
}

/// The sorting facts of a 10 Checkin Response (SIP2 §1.5, 3M extensions §1.8). Text values
/// are trimmed; a missing or empty field is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IlsFacts {
    /// `ok`: the ILS checked the item in.
    pub ok: bool,
    /// `alert`: the item needs attention (hold, transit…).
    pub alert: bool,
    /// `magnetic media` (`None` = unknown).
    pub magnetic_media: Option<bool>,
    /// CV alert type (3M): 01 hold here, 02 hold elsewhere, 04 transfer, 99 other.
    pub alert_type: Option<String>,
    /// CL sort bin.
    pub sort_bin: Option<String>,
    /// CK media type (`001` book, `006` CD…, SIP2 §1.7).
    pub media_type: Option<String>,
    /// AQ permanent location.
    pub permanent_location: Option<String>,
    /// CT destination location (3M).
    pub destination: Option<String>,
    /// CR collection code (3M).
    pub collection: Option<String>,
    /// CS call number (3M).
    pub call_number: Option<String>,
    /// CY hold patron id (3M).
    pub hold_patron: Option<String>,
    /// AF screen messages, the ILS's reason when it rejects a checkin.
    pub screen_message: Vec<String>,
}

fn text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl CheckinFacts {
    /// The facts of a checkin response.
    pub fn from_response(response: &CheckinResponse) -> Self {
        Self {
            ils: Some(IlsFacts {
                ok: response.ok,
                alert: response.alert,
                magnetic_media: response.magnetic_media,
                alert_type: text(response.alert_type.as_deref()),
                sort_bin: text(response.sort_bin.as_deref()),
                media_type: text(response.media_type.as_deref()),
                permanent_location: text(Some(&response.permanent_location)),
                destination: text(response.destination_location.as_deref()),
                collection: text(response.collection_code.as_deref()),
                call_number: text(response.call_number.as_deref()),
                hold_patron: text(response.hold_patron_id.as_deref()),
                screen_message: response
                    .screen_message
                    .iter()
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect(),
            }),
        }
    }

    /// An offline return: no checkin response, so only rules over tag facts apply.
    pub fn offline() -> Self {
        Self { ils: None }
    }

    /// Whether this is an offline return.
    pub fn is_offline(&self) -> bool {
        self.ils.is_none()
    }
}

impl From<&CheckinResponse> for CheckinFacts {
    fn from(response: &CheckinResponse) -> Self {
        Self::from_response(response)
    }
}

/// What the tag says that a plan can sort by. All `None` when no tag could be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TagFacts {
    /// Media format from the ISO 28560-3 library extension block (0 undefined, 1 book,
    /// 2 CD/DVD, 3 magnetic tape, 4 other, 5 careful handling, 6 very small item).
    pub media_format: Option<u8>,
    /// Whether the item is ours, another library's, or the tag does not say.
    pub owner: Option<OwnerClass>,
    /// The type-of-usage byte as stored on the tag.
    pub type_of_usage: Option<u8>,
}

impl TagFacts {
    /// The facts of a decoded tag; an unreadable tag gives none.
    pub fn from_tag(tag: &DecodedTag) -> Self {
        let Some(item) = &tag.item else {
            return Self::default();
        };
        let media_format = match &tag.data {
            Some(TagData::Iso28560_3(ddm)) => ddm.media_format(),
            _ => None,
        };
        Self {
            media_format,
            owner: Some(tag.owner_class),
            type_of_usage: item.type_of_usage,
        }
    }
}

impl From<&DecodedTag> for TagFacts {
    fn from(tag: &DecodedTag) -> Self {
        Self::from_tag(tag)
    }
}

/// Where an item goes, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SortDecision {
    /// The bin: always one declared in the plan's `[bins]`.
    pub bin: u16,
    /// The bin's name.
    pub bin_name: String,
    /// The rule that matched; `None` when the item went to the exception bin because none
    /// did.
    pub rule: Option<RuleRef>,
    /// Why, for the journal: the rule, "no rule matched", and the ILS's reason for a
    /// rejected checkin.
    pub reason: String,
    /// The plan that decided (`default` or an alternate plan's name).
    pub plan: String,
    /// Whether the bin is the exception bin.
    pub exception: bool,
}

/// Which plan a sorter follows: the schedule's choice, or one a command named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "by", content = "plan")]
pub enum PlanSelection {
    /// The `[[schedule]]` entries decide; the default plan when none applies.
    #[default]
    Schedule,
    /// A plan chosen by command, until the next command.
    Named(String),
}

/// A sort plan: bins, exception bin, the default and alternate rule lists, and the
/// schedule. Build it with [`SortPlan::from_toml`].
///
/// Invariants (upheld by the parser, relied on by [`SortPlan::decide`]): every bin a rule
/// or the exception bin names is declared; the default plan is the first; every schedule
/// entry names an existing plan.
#[derive(Clone, Debug)]
pub struct SortPlan {
    bins: BTreeMap<u16, String>,
    exception_bin: u16,
    plans: Vec<Plan>,
    schedule: Vec<ScheduleEntry>,
}

#[derive(Clone, Debug)]
struct Plan {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    bin: u16,
    when: Conditions,
}

/// A fact a text condition looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Facet {
    AlertType,
    SortBin,
    MediaType,
    PermanentLocation,
    Destination,
    Collection,
    CallNumber,
    HoldPatron,
    MediaFormat,
    Owner,
    TypeOfUsage,
}

const FACETS: usize = 11;

impl Facet {
    const ALL: [Facet; FACETS] = [
        Facet::AlertType,
        Facet::SortBin,
        Facet::MediaType,
        Facet::PermanentLocation,
        Facet::Destination,
        Facet::Collection,
        Facet::CallNumber,
        Facet::HoldPatron,
        Facet::MediaFormat,
        Facet::Owner,
        Facet::TypeOfUsage,
    ];

    const fn key(self) -> &'static str {
        match self {
            Facet::AlertType => "alert_type",
            Facet::SortBin => "sort_bin",
            Facet::MediaType => "media_type",
            Facet::PermanentLocation => "permanent_location",
            Facet::Destination => "destination",
            Facet::Collection => "collection",
            Facet::CallNumber => "call_number",
            Facet::HoldPatron => "hold_patron",
            Facet::MediaFormat => "media_format",
            Facet::Owner => "owner",
            Facet::TypeOfUsage => "type_of_usage",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }

    /// Whether the fact comes from the checkin response (unknown for offline returns).
    const fn is_ils(self) -> bool {
        !matches!(self, Facet::MediaFormat | Facet::Owner | Facet::TypeOfUsage)
    }

    /// The fact for these facts of one return.
    fn fact<'a>(self, ils: Option<&'a IlsFacts>, tag: TagFacts) -> Fact<'a> {
        let borrowed = |value: &'a Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(Cow::Borrowed)
        };
        if self.is_ils() {
            let Some(ils) = ils else {
                return Fact::Unknown;
            };
            return Fact::Known(borrowed(match self {
                Facet::AlertType => &ils.alert_type,
                Facet::SortBin => &ils.sort_bin,
                Facet::MediaType => &ils.media_type,
                Facet::PermanentLocation => &ils.permanent_location,
                Facet::Destination => &ils.destination,
                Facet::Collection => &ils.collection,
                Facet::CallNumber => &ils.call_number,
                _ => &ils.hold_patron,
            }));
        }
        Fact::Known(match self {
            Facet::MediaFormat => tag.media_format.map(|f| Cow::Owned(f.to_string())),
            Facet::Owner => tag.owner.map(|o| Cow::Borrowed(owner_word(o))),
            _ => tag.type_of_usage.map(|u| Cow::Owned(format!("{u:02X}"))),
        })
    }
}

/// A fact as a text condition sees it.
enum Fact<'a> {
    /// A checkin-response fact of an offline return: no condition on it holds.
    Unknown,
    /// The value; `None` when the field is missing or empty.
    Known(Option<Cow<'a, str>>),
}

const fn owner_word(owner: OwnerClass) -> &'static str {
    match owner {
        OwnerClass::Ours => "ours",
        OwnerClass::Foreign => "foreign",
        OwnerClass::Unknown => "unknown",
    }
}

/// What a rule asks of the `ok` fixed field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OkCondition {
    /// No `ok` key: the ILS did not reject the item (it said ok, or the return is offline).
    #[default]
    NotRejected,
    /// `ok = true`.
    Ok,
    /// `ok = false`.
    Rejected,
}

#[derive(Clone, Debug, Default)]
struct Conditions {
    ok: OkCondition,
    alert: Option<bool>,
    magnetic_media: Option<bool>,
    text: [Option<Pattern>; FACETS],
}

impl Conditions {
    fn matches(&self, ils: Option<&IlsFacts>, tag: TagFacts) -> bool {
        let ok = ils.map(|f| f.ok);
        let ok_holds = match self.ok {
            OkCondition::NotRejected => ok != Some(false),
            OkCondition::Ok => ok == Some(true),
            OkCondition::Rejected => ok == Some(false),
        };
        if !ok_holds {
            return false;
        }
        if let Some(want) = self.alert
            && ils.map(|f| f.alert) != Some(want)
        {
            return false;
        }
        if let Some(want) = self.magnetic_media
            && ils.and_then(|f| f.magnetic_media) != Some(want)
        {
            return false;
        }
        Facet::ALL
            .into_iter()
            .zip(&self.text)
            .all(|(facet, pattern)| {
                pattern
                    .as_ref()
                    .is_none_or(|pattern| match facet.fact(ils, tag) {
                        Fact::Unknown => false,
                        Fact::Known(value) => pattern.matches(value.as_deref()),
                    })
            })
    }

    fn needs_ils(&self) -> bool {
        self.alert.is_some()
            || self.magnetic_media.is_some()
            || Facet::ALL
                .into_iter()
                .zip(&self.text)
                .any(|(facet, pattern)| facet.is_ils() && pattern.is_some())
    }

    /// `ok` as it acts: a rule with any other condition on the checkin response cannot
    /// match an offline return, so "not rejected" means "ok" for it.
    fn effective_ok(&self) -> OkCondition {
        if self.ok == OkCondition::NotRejected && self.needs_ils() {
            OkCondition::Ok
        } else {
            self.ok
        }
    }

    /// Whether every item these conditions take is also taken by `self` (sound, not
    /// complete: `true` is certain, `false` may miss a cover).
    fn covers(&self, other: &Conditions) -> bool {
        let (mine, theirs) = (self.effective_ok(), other.effective_ok());
        let ok = mine == theirs || (mine == OkCondition::NotRejected && theirs == OkCondition::Ok);
        let flag = |mine: Option<bool>, theirs: Option<bool>| mine.is_none() || mine == theirs;
        ok && flag(self.alert, other.alert)
            && flag(self.magnetic_media, other.magnetic_media)
            && self
                .text
                .iter()
                .zip(&other.text)
                .all(|(mine, theirs)| match (mine, theirs) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(mine), Some(theirs)) => mine.covers(theirs),
                })
    }
}

/// One alternative of a text condition.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// `""`: the value is missing or empty.
    Empty,
    /// `*`: any value that is present.
    Any,
    /// The whole value, ignoring ASCII case.
    Exact(String),
    /// `PBK*`: values starting with this, ignoring ASCII case.
    Prefix(String),
}

fn starts_with_ignore_case(value: &str, prefix: &str) -> bool {
    value
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

impl Item {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Item::Empty, value) => value.is_none(),
            (Item::Any, value) => value.is_some(),
            (Item::Exact(want), Some(value)) => value.eq_ignore_ascii_case(want),
            (Item::Prefix(prefix), Some(value)) => starts_with_ignore_case(value, prefix),
            (_, None) => false,
        }
    }

    fn covers(&self, other: &Item) -> bool {
        match (self, other) {
            (Item::Empty, Item::Empty) => true,
            (Item::Any, other) => *other != Item::Empty,
            (Item::Exact(mine), Item::Exact(theirs)) => mine.eq_ignore_ascii_case(theirs),
            (Item::Prefix(mine), Item::Exact(theirs) | Item::Prefix(theirs)) => {
                starts_with_ignore_case(theirs, mine)
            }
            _ => false,
        }
    }
}

/// A text condition: any of its items.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern(Vec<Item>);

impl Pattern {
    fn matches(&self, value: Option<&str>) -> bool {
        self.0.iter().any(|item| item.matches(value))
    }

    fn covers(&self, other: &Pattern) -> bool {
        other
            .0
            .iter()
            .all(|theirs| self.0.iter().any(|mine| mine.covers(theirs)))
    }
}

/// A `[[schedule]]` entry.
#[derive(Clone, Debug)]
struct ScheduleEntry {
    plan: usize,
    /// Monday first; `None` = every day.
    days: Option<[bool; 7]>,
    /// Empty = all day.
    times: Vec<TimeRange>,
    /// Empty = every date.
    dates: Vec<DateRange>,
}

impl ScheduleEntry {
    fn applies(&self, now: PrimitiveDateTime) -> bool {
        let weekday = usize::from(now.weekday().number_days_from_monday());
        let minute = u16::from(now.hour()) * 60 + u16::from(now.minute());
        self.days
            .is_none_or(|days| days.get(weekday).copied().unwrap_or(false))
            && (self.times.is_empty() || self.times.iter().any(|t| t.contains(minute)))
            && (self.dates.is_empty() || self.dates.iter().any(|d| d.contains(now.date())))
    }
}

/// `HH:MM-HH:MM` in minutes since midnight; start inclusive, end exclusive; an end before
/// the start runs past midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TimeRange {
    start: u16,
    end: u16,
}

impl TimeRange {
    fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// Inclusive date ranges: fixed (`2026-12-24..2026-12-27`) or every year (`12-24..01-01`,
/// which may run over the new year).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateRange {
    Fixed(Date, Date),
    Annual(u16, u16),
}

fn month_day(date: Date) -> u16 {
    u16::from(u8::from(date.month())) * 100 + u16::from(date.day())
}

impl DateRange {
    fn contains(self, date: Date) -> bool {
        match self {
            DateRange::Fixed(start, end) => (start..=end).contains(&date),
            DateRange::Annual(start, end) => {
                let day = month_day(date);
                if start <= end {
                    (start..=end).contains(&day)
                } else {
                    day >= start || day <= end
                }
            }
        }
    }
}

impl SortPlan {
    /// Reads a sort plan from TOML text.
    ///
    /// Refuses a plan that cannot work: not TOML, `version` missing or not 1, an unknown
    /// key, no `[bins]`, a missing or undeclared exception bin, a rule without name or bin,
    /// a rule naming an undeclared bin, a malformed condition, a schedule entry naming an
    /// unknown plan or malformed days, times or dates. The error names the key or the rule
    /// (plan, number from 1, name).
    pub fn from_toml(text: &str) -> Result<Self, SortPlanError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e: toml::de::Error| SortPlanError::Toml {
                message: e.to_string().trim_end().to_owned(),
            })?;
        Self::from_table(&table)
    }

    /// Reads a sort plan from a parsed TOML table (e.g. a section of a larger file).
    pub fn from_table(table: &toml::Table) -> Result<Self, SortPlanError> {
        match table.get("version") {
            Some(Value::Integer(VERSION)) => {}
            Some(Value::Integer(other)) => {
                return Err(key_error(
                    "version",
                    format!(
                        "version {other} is not supported; this rfidgw reads version {VERSION}"
                    ),
                ));
            }
            Some(_) => {
                return Err(key_error(
                    "version",
                    format!("expected the integer {VERSION}"),
                ));
            }
            None => {
                return Err(key_error(
                    "version",
                    format!("missing: a sort plan starts with `version = {VERSION}`"),
                ));
            }
        }
        if let Some(key) = table.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
            return Err(key_error(
                key,
                format!("unknown key; a sort plan has {}", TOP_KEYS.join(", ")),
            ));
        }
        let bins = parse_bins(table.get("bins"))?;
        let exception_bin = match table.get("exception_bin") {
            Some(value) => resolve_bin(&bins, value).map_err(|m| key_error("exception_bin", m))?,
            None => {
                return Err(key_error(
                    "exception_bin",
                    "missing: every sort plan needs an exception bin (a bin declared in [bins]) \
                     for the items no rule takes"
                        .into(),
                ));
            }
        };
        let mut plans = vec![Plan {
            name: DEFAULT_PLAN.to_owned(),
            rules: parse_rules(DEFAULT_PLAN, "rules", table.get("rules"), &bins)?,
        }];
        if let Some(value) = table.get("plans") {
            let Value::Table(alternates) = value else {
                return Err(key_error(
                    "plans",
                    "expected tables of rules, like [[plans.evening.rules]]".into(),
                ));
            };
            for (name, value) in alternates {
                let key = format!("plans.{name}");
                if name == DEFAULT_PLAN {
                    return Err(key_error(
                        &key,
                        "\"default\" is the plan of the top-level [[rules]]; give this plan \
                         another name"
                            .into(),
                    ));
                }
                if name.trim().is_empty() {
                    return Err(key_error(&key, "a plan needs a name".into()));
                }
                let Value::Table(plan) = value else {
                    return Err(key_error(
                        &key,
                        format!("expected a table with [[plans.{name}.rules]]"),
                    ));
                };
                if let Some(other) = plan.keys().find(|k| *k != "rules") {
                    return Err(key_error(
                        &format!("{key}.{other}"),
                        "unknown key; a plan has only `rules`".into(),
                    ));
                }
                plans.push(Plan {
                    name: name.clone(),
                    rules: parse_rules(name, &format!("{key}.rules"), plan.get("rules"), &bins)?,
                });
            }
        }
        let schedule = parse_schedule(table.get("schedule"), &plans)?;
        Ok(Self {
            bins,
            exception_bin,
            plans,
            schedule,
        })
    }

    /// What is legal but surely not meant: a rule that can never match because an earlier
    /// rule of its plan matches every item it would, and a plan without rules. Empty when
    /// the plan is fine.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for plan in &self.plans {
            if plan.rules.is_empty() {
                problems.push(Problem {
                    plan: plan.name.clone(),
                    rule: None,
                    message: "has no rules: every item would go to the exception bin; add a \
                              rule (a catch-all rule may name the exception bin)"
                        .into(),
                });
            }
            for (j, later) in plan.rules.iter().enumerate() {
                let shadow = plan
                    .rules
                    .iter()
                    .take(j)
                    .position(|earlier| earlier.when.covers(&later.when));
                if let Some(i) = shadow {
                    let earlier = rule_ref(i, &plan.rules[i]);
                    problems.push(Problem {
                        plan: plan.name.clone(),
                        rule: Some(rule_ref(j, later)),
                        message: format!(
                            "can never match: {earlier} before it takes every item it would; \
                             move this rule up or narrow rule {}",
                            i + 1
                        ),
                    });
                }
            }
        }
        problems
    }

    /// The declared bins: number → name.
    pub fn bins(&self) -> &BTreeMap<u16, String> {
        &self.bins
    }

    /// The exception bin.
    pub fn exception_bin(&self) -> u16 {
        self.exception_bin
    }

    /// The plans, default first, with their number of rules.
    pub fn plans(&self) -> impl Iterator<Item = (&str, usize)> {
        self.plans.iter().map(|p| (p.name.as_str(), p.rules.len()))
    }

    /// The number of `[[schedule]]` entries.
    pub fn schedule_len(&self) -> usize {
        self.schedule.len()
    }

    /// The command that switches plans: a selection of the named plan (`default` included),
    /// to be passed to [`SortPlan::decide_with`]. Back to the schedule with
    /// [`PlanSelection::Schedule`].
    pub fn select(&self, name: &str) -> Result<PlanSelection, SortPlanError> {
        if self.plan_index(name).is_some() {
            Ok(PlanSelection::Named(name.to_owned()))
        } else {
            Err(SortPlanError::UnknownPlan {
                name: name.to_owned(),
                known: self
                    .plans
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// The plan that sorts at `now` (local wall-clock time) under `selection`.
    pub fn active_plan(&self, selection: &PlanSelection, now: PrimitiveDateTime) -> &str {
        &self.plans[self.active(selection, now).0].name
    }

    /// Where an item goes, following the schedule. `now` is the local wall-clock time (the
    /// schedule's days, times and dates are the library's).
    pub fn decide(
        &self,
        checkin: &CheckinFacts,
        tag: &TagFacts,
        now: PrimitiveDateTime,
    ) -> SortDecision {
        self.decide_with(&PlanSelection::Schedule, checkin, tag, now)
    }

    /// Where an item goes under `selection`. Always a declared bin; never panics.
    pub fn decide_with(
        &self,
        selection: &PlanSelection,
        checkin: &CheckinFacts,
        tag: &TagFacts,
        now: PrimitiveDateTime,
    ) -> SortDecision {
        let (index, note) = self.active(selection, now);
        let plan = &self.plans[index];
        let ils = checkin.ils.as_ref();
        let mut reason: Vec<String> = note.into_iter().collect();
        match ils {
            None => reason.push("offline return (no checkin response)".into()),
            Some(facts) if !facts.ok => reason.push(if facts.screen_message.is_empty() {
                "ILS rejected the checkin (no screen message)".into()
            } else {
                format!(
                    "ILS rejected the checkin: {:?}",
                    facts.screen_message.join(" / ")
                )
            }),
            Some(_) => {}
        }
        let matched = plan
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.when.matches(ils, *tag));
        let (bin, rule) = if let Some((i, rule)) = matched {
            reason.push(format!("{} matched", rule_ref(i, rule)));
            (rule.bin, Some(rule_ref(i, rule)))
        } else {
            reason.push("no rule matched".into());
            (self.exception_bin, None)
        };
        SortDecision {
            bin,
            bin_name: self.bins.get(&bin).cloned().unwrap_or_default(),
            rule,
            reason: reason.join("; "),
            plan: plan.name.clone(),
            exception: bin == self.exception_bin,
        }
    }

    fn plan_index(&self, name: &str) -> Option<usize> {
        self.plans.iter().position(|p| p.name == name)
    }

    /// The active plan's index, and a note when a named plan is not (or no longer) there.
    fn active(&self, selection: &PlanSelection, now: PrimitiveDateTime) -> (usize, Option<String>) {
        let mut note = None;
        if let PlanSelection::Named(name) = selection {
            match self.plan_index(name) {
                Some(index) => return (index, None),
                None => {
                    note = Some(format!(
                        "plan {name:?} selected by command is not in this sort plan; \
                         the schedule chose"
                    ));
                }
            }
        }
        let index = self
            .schedule
            .iter()
            .find(|entry| entry.applies(now))
            .map_or(0, |entry| entry.plan);
        (index, note)
    }
}

fn rule_ref(index: usize, rule: &Rule) -> RuleRef {
    RuleRef {
        index: index + 1,
        name: rule.name.clone(),
    }
}

fn key_error(key: &str, message: String) -> SortPlanError {
    SortPlanError::Key {
        key: key.to_owned(),
        message,
    }
}

fn parse_bins(value: Option<&Value>) -> Result<BTreeMap<u16, String>, SortPlanError> {
    let Some(value) = value else {
        return Err(key_error(
            "bins",
            "missing: declare the sorter's bins, e.g. [bins] 1 = \"Holds\"".into(),
        ));
    };
    let Value::Table(table) = value else {
        return Err(key_error(
            "bins",
            "expected a table of bin number = \"name\", e.g. [bins] 1 = \"Holds\"".into(),
        ));
    };
    if table.is_empty() {
        return Err(key_error("bins", "declares no bins".into()));
    }
    let mut bins = BTreeMap::new();
    for (key, value) in table {
        let at = format!("bins.{key}");
        let number: u16 = key.trim().parse().map_err(|_| {
            key_error(
                &at,
                format!("{key:?} is not a bin number (a whole number 0-65535)"),
            )
        })?;
        let Value::String(name) = value else {
            return Err(key_error(&at, "expected the bin's name as a string".into()));
        };
        if name.trim().is_empty() {
            return Err(key_error(&at, "the bin's name is empty".into()));
        }
        if bins.insert(number, name.clone()).is_some() {
            return Err(key_error(&at, format!("bin {number} is declared twice")));
        }
    }
    Ok(bins)
}

fn declared(bins: &BTreeMap<u16, String>) -> String {
    bins.keys()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bin by number or by its name in `[bins]`.
fn resolve_bin(bins: &BTreeMap<u16, String>, value: &Value) -> Result<u16, String> {
    match value {
        Value::Integer(number) => {
            let bin = u16::try_from(*number)
                .map_err(|_| format!("{number} is not a bin number (0-65535)"))?;
            if bins.contains_key(&bin) {
                Ok(bin)
            } else {
                Err(format!(
                    "bin {bin} is not declared in [bins] (declared: {})",
                    declared(bins)
                ))
            }
        }
        Value::String(name) => {
            let mut found = bins.iter().filter(|(_, n)| *n == name).map(|(b, _)| *b);
            match (found.next(), found.next()) {
                (Some(bin), None) => Ok(bin),
                (Some(_), Some(_)) => Err(format!(
                    "several bins are named {name:?}; name the bin by number"
                )),
                (None, _) => Err(format!(
                    "no bin is named {name:?} in [bins] (declared: {})",
                    declared(bins)
                )),
            }
        }
        _ => Err("expected a bin number or a bin name from [bins]".into()),
    }
}

fn parse_rules(
    plan: &str,
    key: &str,
    value: Option<&Value>,
    bins: &BTreeMap<u16, String>,
) -> Result<Vec<Rule>, SortPlanError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(key_error(key, format!("expected rule tables, [[{key}]]")));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_rule(plan, i + 1, item, bins))
        .collect()
}

fn parse_rule(
    plan: &str,
    index: usize,
    item: &Value,
    bins: &BTreeMap<u16, String>,
) -> Result<Rule, SortPlanError> {
    let mut rule = RuleRef {
        index,
        name: String::new(),
    };
    let error = |rule: &RuleRef, key: &str, message: String| SortPlanError::Rule {
        plan: plan.to_owned(),
        rule: rule.clone(),
        key: key.to_owned(),
        message,
    };
    let Value::Table(table) = item else {
        return Err(error(&rule, "", "expected a table ([[rules]])".into()));
    };
    match table.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => rule.name.clone_from(name),
        Some(Value::String(_)) => return Err(error(&rule, "name", "the name is empty".into())),
        Some(_) => return Err(error(&rule, "name", "expected a string".into())),
        None => {
            return Err(error(
                &rule,
                "name",
                "missing: every rule needs a name (it is recorded with each item it sorts)".into(),
            ));
        }
    }
    let mut when = Conditions::default();
    let mut bin = None;
    for (key, value) in table {
        let flag = || match value {
            Value::Boolean(b) => Ok(*b),
            _ => Err(error(&rule, key, "expected true or false".into())),
        };
        match key.as_str() {
            "name" => {}
            "bin" => bin = Some(resolve_bin(bins, value).map_err(|m| error(&rule, key, m))?),
            "ok" => {
                when.ok = if flag()? {
                    OkCondition::Ok
                } else {
                    OkCondition::Rejected
                };
            }
            "alert" => when.alert = Some(flag()?),
            "magnetic_media" => when.magnetic_media = Some(flag()?),
            other => {
                let Some(facet) = Facet::from_key(other) else {
                    let keys: Vec<_> = Facet::ALL.iter().map(|f| f.key()).collect();
                    return Err(error(
                        &rule,
                        other,
                        format!(
                            "unknown key; a rule has name, bin, ok, alert, magnetic_media, {}",
                            keys.join(", ")
                        ),
                    ));
                };
                let pattern = parse_pattern(facet, value).map_err(|m| error(&rule, other, m))?;
                when.text[Facet::ALL.iter().position(|f| *f == facet).unwrap_or(0)] = Some(pattern);
            }
        }
    }
    let Some(bin) = bin else {
        return Err(error(
            &rule,
            "bin",
            "missing: every rule names the bin it sends items to".into(),
        ));
    };
    Ok(Rule {
        name: rule.name,
        bin,
        when,
    })
}

/// The alternatives of a condition: a string split at commas, or an array of strings
/// (and integers, for media formats).
fn parse_pattern(facet: Facet, value: &Value) -> Result<Pattern, String> {
    let words: Vec<String> = match value {
        Value::String(text) if text.trim().is_empty() => vec![String::new()],
        Value::String(text) => text
            .split(',')
            .map(|w| {
                let w = w.trim();
                if w.is_empty() {
                    Err(format!(
                        "empty item in the list {text:?}; write \"\" alone to match a missing value"
                    ))
                } else {
                    Ok(w.to_owned())
                }
            })
            .collect::<Result<_, _>>()?,
        Value::Integer(number) if facet == Facet::MediaFormat => vec![number.to_string()],
        Value::Array(items) if items.is_empty() => {
            return Err("the list is empty, so it would match nothing".into());
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.trim().to_owned()),
                Value::Integer(number) if facet == Facet::MediaFormat => Ok(number.to_string()),
                _ => Err(expected(facet)),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(expected(facet)),
    };
    words
        .iter()
        .map(|word| parse_item(facet, word))
        .collect::<Result<_, _>>()
        .map(Pattern)
}

fn expected(facet: Facet) -> String {
    match facet {
        Facet::MediaFormat => {
            "expected a media format (0-9 or a name like \"other-careful-handling\"), \
             \"*\", or a list"
                .into()
        }
        Facet::MediaType => {
            "expected a string like \"001\" (leading zeros matter), \"00*\", \"*\", \
             or a list"
                .into()
        }
        _ => "expected a string like \"ABC\", \"PBK*\", \"*\", \"\", or a list of them".into(),
    }
}

fn parse_item(facet: Facet, word: &str) -> Result<Item, String> {
    let item = if word.is_empty() {
        Item::Empty
    } else if word == "*" {
        Item::Any
    } else if let Some(prefix) = word.strip_suffix('*')
        && !prefix.contains('*')
    {
        Item::Prefix(prefix.to_owned())
    } else if word.contains('*') {
        return Err(format!(
            "{word:?}: a * may only end a prefix (\"PBK*\") or stand alone (\"*\")"
        ));
    } else {
        Item::Exact(word.to_owned())
    };
    match (facet, item) {
        (_, item @ (Item::Empty | Item::Any)) => Ok(item),
        (Facet::Owner, Item::Exact(word)) => {
            let word = word.to_ascii_lowercase();
            if ["ours", "foreign", "unknown"].contains(&word.as_str()) {
                Ok(Item::Exact(word))
            } else {
                Err(format!(
                    "{word:?} is not an owner: use ours, foreign or unknown"
                ))
            }
        }
        (Facet::MediaFormat, Item::Exact(word)) => word
            .parse::<u8>()
            .ok()
            .or_else(|| (0..=9).find(|v| media_format_name(*v) == Some(word.as_str())))
            .map(|v| Item::Exact(v.to_string()))
            .ok_or_else(|| {
                format!(
                    "{word:?} is not a media format: 0 undefined, 1 book, 2 cd-dvd, \
                     3 magnetic-tape, 4 other, 5 other-careful-handling, 6 very-small-item"
                )
            }),
        (Facet::TypeOfUsage, Item::Exact(word))
            if word.len() == 2 && word.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Item::Exact(word.to_ascii_uppercase()))
        }
        (Facet::TypeOfUsage, Item::Prefix(word))
            if word.len() == 1 && word.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Item::Prefix(word.to_ascii_uppercase()))
        }
        (Facet::TypeOfUsage, _) => Err(format!(
            "{word:?} is not a type of usage: two hex digits as stored on the tag (\"11\"), \
             or one and a * (\"1*\")"
        )),
        (Facet::Owner | Facet::MediaFormat, Item::Prefix(_)) => Err(format!(
            "{word:?}: {} takes whole values, not prefixes; list them",
            facet.key()
        )),
        (_, item) => Ok(item),
    }
}

/// Words of a schedule key: a string split at commas, or an array of such strings.
fn words(value: &Value, what: &str) -> Result<Vec<String>, String> {
    let split = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let words: Vec<String> = match value {
        Value::String(text) => split(text),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(text) => out.extend(split(text)),
                    Value::Datetime(dt) if dt.date.is_some() && dt.time.is_none() => {
                        out.push(dt.to_string());
                    }
                    _ => return Err(format!("expected {what}")),
                }
            }
            out
        }
        Value::Datetime(dt) if dt.date.is_some() && dt.time.is_none() => vec![dt.to_string()],
        _ => return Err(format!("expected {what}")),
    };
    if words.is_empty() {
        return Err(format!("empty; expected {what}"));
    }
    Ok(words)
}

fn parse_schedule(
    value: Option<&Value>,
    plans: &[Plan],
) -> Result<Vec<ScheduleEntry>, SortPlanError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(key_error("schedule", "expected [[schedule]] tables".into()));
    };
    let mut entries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let index = i + 1;
        let error = |key: &str, message: String| SortPlanError::Schedule {
            index,
            key: key.to_owned(),
            message,
        };
        let Value::Table(table) = item else {
            return Err(error("", "expected a table ([[schedule]])".into()));
        };
        if let Some(key) = table.keys().find(|k| !SCHEDULE_KEYS.contains(&k.as_str())) {
            return Err(error(
                key,
                format!(
                    "unknown key; a schedule entry has {}",
                    SCHEDULE_KEYS.join(", ")
                ),
            ));
        }
        let known = || {
            plans
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let plan = match table.get("plan") {
            Some(Value::String(name)) => {
                plans.iter().position(|p| p.name == *name).ok_or_else(|| {
                    error(
                        "plan",
                        format!("no plan named {name:?} (plans: {})", known()),
                    )
                })?
            }
            Some(_) => return Err(error("plan", "expected a plan's name".into())),
            None => {
                return Err(error(
                    "plan",
                    format!("missing: which plan applies ({})", known()),
                ));
            }
        };
        let days = table
            .get("days")
            .map(|v| parse_days(v).map_err(|m| error("days", m)))
            .transpose()?;
        let times = match table.get("time") {
            Some(v) => words(v, "times of day like \"18:00-22:00\"")
                .and_then(|ws| ws.iter().map(|w| parse_time_range(w)).collect())
                .map_err(|m| error("time", m))?,
            None => Vec::new(),
        };
        let dates = match table.get("dates") {
            Some(v) => words(v, "dates like \"2026-12-24..2026-12-26\" or \"12-24\"")
                .and_then(|ws| ws.iter().map(|w| parse_date_range(w)).collect())
                .map_err(|m| error("dates", m))?,
            None => Vec::new(),
        };
        if days.is_none() && times.is_empty() && dates.is_empty() {
            return Err(error(
                "",
                "has none of days, time and dates, so it would always apply; put that plan's \
                 rules at the top level instead"
                    .into(),
            ));
        }
        entries.push(ScheduleEntry {
            plan,
            days,
            times,
            dates,
        });
    }
    Ok(entries)
}

fn parse_weekday(word: &str) -> Result<usize, String> {
    const NAMES: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = word.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .position(|name| lower.len() >= 3 && name.starts_with(&lower))
        .ok_or_else(|| {
            format!("{word:?} is not a weekday (mon, tue, … sun, or a range \"mon-fri\")")
        })
}

fn parse_days(value: &Value) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for word in words(value, "weekdays like [\"mon-fri\", \"sat\"]")? {
        let (first, last) = if let Some((first, last)) = word.split_once('-') {
            (parse_weekday(first)?, parse_weekday(last)?)
        } else {
            let day = parse_weekday(&word)?;
            (day, day)
        };
        // A range may run over the weekend: "fri-mon".
        let mut day = first;
        loop {
            days[day] = true;
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    Ok(days)
}

/// `HH:MM` in minutes since midnight; `24:00` only as an end.
fn parse_clock(text: &str, end: bool) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time of day HH:MM");
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if minutes > 59 || hours > 24 || (hours == 24 && (minutes != 0 || !end)) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

fn parse_time_range(text: &str) -> Result<TimeRange, String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a time range like \"18:00-22:00\""))?;
    let range = TimeRange {
        start: parse_clock(start, false)?,
        end: parse_clock(end, true)?,
    };
    if range.start == range.end % (24 * 60) {
        return Err(format!(
            "{text:?} is empty or the whole day; leave `time` out for the whole day"
        ));
    }
    Ok(range)
}

fn parse_date(text: &str) -> Result<DateRange, String> {
    let bad = || format!("{text:?} is not a date YYYY-MM-DD (one day) or MM-DD (every year)");
    let number = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let parts: Vec<&str> = text.trim().split('-').collect();
    let (year, month, day) = match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            (Some(number(y)?), number(m)?, number(d)?)
        }
        [m, d] if m.len() == 2 && d.len() == 2 => (None, number(m)?, number(d)?),
        _ => return Err(bad()),
    };
    let month_of_year = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day_of_month = u8::try_from(day).map_err(|_| bad())?;
    // Every-year dates are checked against a leap year, so 02-29 is allowed.
    let date =
        Date::from_calendar_date(i32::from(year.unwrap_or(2024)), month_of_year, day_of_month)
            .map_err(|_| bad())?;
    Ok(match year {
        Some(_) => DateRange::Fixed(date, date),
        None => DateRange::Annual(month * 100 + day, month * 100 + day),
    })
}

fn parse_date_range(text: &str) -> Result<DateRange, String> {
    let Some((start, end)) = text.split_once("..") else {
        return parse_date(text);
    };
    match (parse_date(start)?, parse_date(end)?) {
        (DateRange::Fixed(start, _), DateRange::Fixed(end, _)) if start <= end => {
            Ok(DateRange::Fixed(start, end))
        }
        (DateRange::Fixed(..), DateRange::Fixed(..)) => {
            Err(format!("{text:?} ends before it starts"))
        }
        (DateRange::Annual(start, _), DateRange::Annual(end, _)) => {
            Ok(DateRange::Annual(start, end))
        }
        _ => Err(format!(
            "{text:?} mixes a one-off date (YYYY-MM-DD) with an every-year date (MM-DD)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const PLAN: &str = r#"
version = 1
exception_bin = 9

[bins]
1 = "Holds"
2 = "Transit"
3 = "Shelves"
4 = "Media"
5 = "Foreign"
8 = "Offline"
9 = "Exceptions"

[[rules]]
name = "ILS rejections"
ok = false
bin = 9

[[rules]]
name = "Careful handling"
media_format = ["other-careful-handling", 6]
bin = "Exceptions"

[[rules]]
name = "Holds here"
alert_type = "01"
bin = 1

[[rules]]
name = "Holds by patron"
hold_patron = "*"
bin = 1

[[rules]]
name = "Transit"
alert_type = "02,04"
bin = 2

[[rules]]
name = "Media"
media_type = "004,005,006"
bin = 4

[[rules]]
name = "Interlibrary loans"
owner = "foreign"
bin = 5

[[rules]]
name = "Shelves"
ok = true
bin = 3

[[rules]]
name = "Offline returns of our items"
owner = "ours"
type_of_usage = "1*"
bin = 8

[plans.evening]
[[plans.evening.rules]]
name = "Holds"
alert = true
bin = 1
[[plans.evening.rules]]
name = "Everything the ILS took"
ok = true
bin = 3

[plans.holiday]
[[plans.holiday.rules]]
name = "All to the shelves bin"
bin = 3

[[schedule]]
plan = "holiday"
dates = ["12-24..12-26", "2026-04-03..2026-04-06"]

[[schedule]]
plan = "evening"
days = "mon-fri"
time = "18:00-08:00"

[[schedule]]
plan = "evening"
days = ["sat", "sun"]
"#;

    /// A weekday morning: the default plan.
    const MORNING: PrimitiveDateTime = datetime!(2026-03-03 10:00);

    fn plan() -> SortPlan {
        SortPlan::from_toml(PLAN).expect("test plan parses")
    }

    fn ok() -> IlsFacts {
        IlsFacts {
            ok: true,
            ..IlsFacts::default()
        }
    }

    fn online(facts: IlsFacts) -> CheckinFacts {
        CheckinFacts { ils: Some(facts) }
    }

    #[test]
    fn the_test_plan_has_no_problems() {
        assert_eq!(plan().check(), Vec::<Problem>::new());
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table of cases
    fn checkins_go_to_the_bin_of_the_first_matching_rule() {
        let tag = TagFacts::default();
        let ours = TagFacts {
            owner: Some(OwnerClass::Ours),
            type_of_usage: Some(0x11),
            media_format: Some(1),
        };
        let foreign = TagFacts {
            owner: Some(OwnerClass::Foreign),
            ..TagFacts::default()
        };
        let careful = TagFacts {
            media_format: Some(5),
            ..ours
        };
        let cases: Vec<(&str, CheckinFacts, TagFacts, u16, Option<usize>)> = vec![
            ("plain ok", online(ok()), tag, 3, Some(8)),
            (
                "hold here",
                online(IlsFacts {
                    alert: true,
                    alert_type: Some("01".into()),
                    ..ok()
                }),
                tag,
                1,
                Some(3),
            ),
            (
                "hold patron without alert type",
                online(IlsFacts {
                    hold_patron: Some("P1001".into()),
                    ..ok()
                }),
                tag,
                1,
                Some(4),
            ),
            (
                "transfer",
                online(IlsFacts {
                    alert_type: Some("04".into()),
                    ..ok()
                }),
                tag,
                2,
                Some(5),
            ),
            (
                "media type, blanks around the value",
                online(IlsFacts {
                    media_type: Some(" 006 ".into()),
                    ..ok()
                }),
                tag,
                4,
                Some(6),
            ),
            ("foreign item", online(ok()), foreign, 5, Some(7)),
            (
                "careful handling before holds",
                online(IlsFacts {
                    alert_type: Some("01".into()),
                    ..ok()
                }),
                careful,
                9,
                Some(2),
            ),
            (
                "rejected with a hold still goes to the rejection rule",
                online(IlsFacts {
                    ok: false,
                    alert_type: Some("01".into()),
                    ..IlsFacts::default()
                }),
                tag,
                9,
                Some(1),
            ),
            (
                "offline, our circulating item",
                CheckinFacts::offline(),
                ours,
                8,
                Some(9),
            ),
            (
                "offline, no tag facts",
                CheckinFacts::offline(),
                tag,
                9,
                None,
            ),
            (
                "offline, foreign: ILS rules do not apply",
                CheckinFacts::offline(),
                foreign,
                5,
                Some(7),
            ),
        ];
        let plan = plan();
        for (what, checkin, tag, bin, rule) in cases {
            let decision = plan.decide(&checkin, &tag, MORNING);
            assert_eq!(decision.bin, bin, "{what}: {decision:?}");
            assert_eq!(decision.rule.map(|r| r.index), rule, "{what}");
            assert_eq!(decision.plan, "default", "{what}");
        }
    }

    #[test]
    fn checkin_goes_to_exception_bin_when_ils_rejects_it() {
        let mut plan = plan();
        plan.plans[0].rules.remove(0);
        let rejected = online(IlsFacts {
            ok: false,
            screen_message: vec!["Item not checked out".into()],
            ..IlsFacts::default()
        });
        let decision = plan.decide(&rejected, &TagFacts::default(), MORNING);
        assert_eq!(decision.bin, 9);
        assert!(decision.exception);
        assert_eq!(decision.rule, None);
        assert_eq!(
            decision.reason,
            "ILS rejected the checkin: \"Item not checked out\"; no rule matched"
        );
    }

    #[test]
    fn the_reason_names_the_rule_and_the_ils_reason() {
        let decision = plan().decide(
            &online(IlsFacts {
                screen_message: vec!["Unknown item".into()],
                ..IlsFacts::default()
            }),
            &TagFacts::default(),
            MORNING,
        );
        assert_eq!(
            decision.reason,
            "ILS rejected the checkin: \"Unknown item\"; rule 1 \"ILS rejections\" matched"
        );
        assert_eq!(decision.bin_name, "Exceptions");
        let offline = plan().decide(&CheckinFacts::offline(), &TagFacts::default(), MORNING);
        assert_eq!(
            offline.reason,
            "offline return (no checkin response); no rule matched"
        );
    }

    #[test]
    fn patterns_match_exact_prefix_wildcard_empty_and_lists() {
        let cases: [(&str, Option<&str>, bool); 18] = [
            ("PBK", Some("PBK"), true),
            ("PBK", Some("pbk"), true),
            ("PBK", Some("PBK1"), false),
            ("PBK*", Some("PBK1"), true),
            ("PBK*", Some("pbk"), true),
            ("PBK*", Some("PB"), false),
            ("PBK*", None, false),
            ("*", Some("x"), true),
            ("*", None, false),
            ("", None, true),
            ("", Some("x"), false),
            ("7*,8*,9*", Some("823.9"), true),
            ("7*,8*,9*", Some("641"), false),
            ("7*, 8* ,9*", Some("9"), true),
            ("Ä*", Some("Äpfel"), true),
            ("Äpfel", Some("äpfel"), false),
            ("001", Some("1"), false),
            ("A1", Some("A1 "), false),
        ];
        for (pattern, value, expected) in cases {
            let pattern = parse_pattern(Facet::SortBin, &Value::String(pattern.into())).unwrap();
            assert_eq!(pattern.matches(value), expected, "{pattern:?} on {value:?}");
        }
        let list = parse_pattern(
            Facet::PermanentLocation,
            &toml::Value::Array(vec!["A, B".into(), "".into()]),
        )
        .unwrap();
        assert!(list.matches(Some("a, b")));
        assert!(list.matches(None));
        assert!(!list.matches(Some("A")));
    }

    #[test]
    fn tag_conditions_are_normalised() {
        let cases: [(Facet, Value, Option<&str>, bool); 8] = [
            (Facet::MediaFormat, Value::Integer(5), Some("5"), true),
            (Facet::MediaFormat, "05".into(), Some("5"), true),
            (Facet::MediaFormat, "cd-dvd".into(), Some("2"), true),
            (Facet::Owner, "Foreign".into(), Some("foreign"), true),
            (Facet::Owner, "ours".into(), Some("foreign"), false),
            (Facet::TypeOfUsage, "1*".into(), Some("12"), true),
            (Facet::TypeOfUsage, "7a".into(), Some("7A"), true),
            (Facet::TypeOfUsage, "71".into(), Some("17"), false),
        ];
        for (facet, value, fact, expected) in cases {
            let pattern = parse_pattern(facet, &value).unwrap();
            assert_eq!(
                pattern.matches(fact),
                expected,
                "{facet:?} {value} on {fact:?}"
            );
        }
        for (facet, bad) in [
            (Facet::Owner, "mine"),
            (Facet::Owner, "our*"),
            (Facet::MediaFormat, "vinyl"),
            (Facet::MediaFormat, "1*"),
            (Facet::TypeOfUsage, "1"),
            (Facet::TypeOfUsage, "1G"),
            (Facet::TypeOfUsage, "11*"),
            (Facet::SortBin, "A*B"),
            (Facet::SortBin, "A,,B"),
        ] {
            assert!(
                parse_pattern(facet, &bad.into()).is_err(),
                "{facet:?} {bad:?}"
            );
        }
    }

    #[test]
    fn the_schedule_picks_plans_by_day_time_and_date() {
        let plan = plan();
        let cases = [
            (datetime!(2026-03-03 10:00), "default"), // Tuesday morning
            (datetime!(2026-03-03 17:59), "default"),
            (datetime!(2026-03-03 18:00), "evening"), // start inclusive
            (datetime!(2026-03-03 23:59), "evening"),
            (datetime!(2026-03-04 07:59), "evening"), // over midnight
            (datetime!(2026-03-04 08:00), "default"), // end exclusive
            (datetime!(2026-03-07 12:00), "evening"), // Saturday, all day
            (datetime!(2026-12-24 12:00), "holiday"), // every year
            (datetime!(2027-12-26 23:00), "holiday"), // earlier entries win
            (datetime!(2027-12-27 12:00), "default"),
            (datetime!(2026-04-06 12:00), "holiday"), // one-off range, inclusive
            (datetime!(2027-04-06 12:00), "default"), // not next year
        ];
        for (now, expected) in cases {
            assert_eq!(
                plan.active_plan(&PlanSelection::Schedule, now),
                expected,
                "{now}"
            );
        }
    }

    #[test]
    fn a_command_selects_a_plan_until_the_schedule_is_selected_again() {
        let plan = plan();
        let holiday = plan.select("holiday").unwrap();
        assert_eq!(plan.active_plan(&holiday, MORNING), "holiday");
        let decision = plan.decide_with(&holiday, &online(ok()), &TagFacts::default(), MORNING);
        assert_eq!((decision.bin, decision.plan.as_str()), (3, "holiday"));
        assert_eq!(
            plan.active_plan(
                &plan.select("default").unwrap(),
                datetime!(2026-03-07 12:00)
            ),
            "default"
        );
        let err = plan.select("summer").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no plan named \"summer\"; the plans are default, evening, holiday"
        );
        let stale = PlanSelection::Named("summer".into());
        let decision = plan.decide_with(&stale, &online(ok()), &TagFacts::default(), MORNING);
        assert_eq!(decision.plan, "default");
        assert!(
            decision
                .reason
                .starts_with("plan \"summer\" selected by command")
        );
    }

    #[test]
    fn schedule_entries_are_parsed_strictly() {
        let base = "version = 1\nexception_bin = 1\n[bins]\n1 = \"x\"\n\
                    [[rules]]\nname = \"r\"\nbin = 1\n[plans.p]\n";
        let cases = [
            ("plan = \"p\"\ndays = \"mon-fri\"", None),
            (
                "plan = \"p\"\ndays = \"fri-mon\"\ntime = [\"22:00-24:00\", \"00:00-02:00\"]",
                None,
            ),
            ("plan = \"p\"\ndates = 2026-12-24", None),
            ("plan = \"p\"\ndates = \"02-29\"", None),
            (
                "plan = \"q\"\ndays = \"mon\"",
                Some("schedule entry 1, key `plan`: no plan named \"q\" (plans: default, p)"),
            ),
            ("plan = \"p\"", Some("schedule entry 1: has none of days")),
            (
                "plan = \"p\"\ndays = \"mo\"",
                Some("key `days`: \"mo\" is not a weekday"),
            ),
            (
                "plan = \"p\"\ntime = \"18:00\"",
                Some("key `time`: \"18:00\" is not a time range"),
            ),
            (
                "plan = \"p\"\ntime = \"18:00-18:00\"",
                Some("is empty or the whole day"),
            ),
            (
                "plan = \"p\"\ntime = \"24:00-02:00\"",
                Some("\"24:00\" is not a time of day"),
            ),
            (
                "plan = \"p\"\ntime = \"7:60-8:00\"",
                Some("\"7:60\" is not a time of day"),
            ),
            (
                "plan = \"p\"\ndates = \"2026-02-30\"",
                Some("key `dates`: \"2026-02-30\" is not a date"),
            ),
            (
                "plan = \"p\"\ndates = \"2026-12-26..2026-12-24\"",
                Some("ends before it starts"),
            ),
            (
                "plan = \"p\"\ndates = \"12-24..2026-12-26\"",
                Some("mixes a one-off date"),
            ),
            (
                "plan = \"p\"\nweekdays = \"mon\"",
                Some("schedule entry 1, key `weekdays`: unknown key"),
            ),
        ];
        for (entry, expected) in cases {
            let text =
                format!("{base}[[plans.p.rules]]\nname = \"r\"\nbin = 1\n[[schedule]]\n{entry}\n");
            match (SortPlan::from_toml(&text), expected) {
                (Ok(_), None) => {}
                (Err(err), Some(want)) => assert!(err.to_string().contains(want), "{entry}: {err}"),
                (result, _) => panic!("{entry}: {result:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_key_or_the_rule() {
        let base = "version = 1\nexception_bin = 9\n[bins]\n1 = \"Holds\"\n9 = \"Exceptions\"\n";
        let cases = [
            ("", "", "no problem"),
            (
                "",
                "[[rules]]\nname = \"Holds\"\nbin = 12",
                "plan \"default\", rule 1 \"Holds\", key `bin`: bin 12 is not declared in [bins] (declared: 1, 9)",
            ),
            (
                "",
                "[[rules]]\nname = \"A\"\nbin = 1\n[[rules]]\nbin = 1",
                "plan \"default\", rule 2, key `name`: missing",
            ),
            (
                "",
                "[[rules]]\nname = \"A\"",
                "rule 1 \"A\", key `bin`: missing",
            ),
            (
                "",
                "[[rules]]\nname = \"A\"\nbin = \"Shelves\"",
                "no bin is named \"Shelves\"",
            ),
            (
                "",
                "[[rules]]\nname = \"A\"\nbin = 1\ncolour = \"red\"",
                "rule 1 \"A\", key `colour`: unknown key",
            ),
            (
                "",
                "[[rules]]\nname = \"A\"\nbin = 1\nok = \"yes\"",
                "key `ok`: expected true or false",
            ),
            (
                "",
                "[[rules]]\nname = \"A\"\nbin = 1\nmedia_type = 1",
                "key `media_type`: expected a string like \"001\"",
            ),
            (
                "",
                "[plans.evening]\n[[plans.evening.rules]]\nname = \"E\"\nbin = 2",
                "plan \"evening\", rule 1 \"E\", key `bin`: bin 2 is not declared",
            ),
            (
                "",
                "[plans.default]",
                "plans.default: \"default\" is the plan",
            ),
            ("version = 2\n", "", "version: version 2 is not supported"),
        ];
        for (head, tail, expected) in cases {
            let text = if head.is_empty() {
                format!("{base}{tail}")
            } else {
                format!("{head}{}", base.replace("version = 1\n", ""))
            };
            match SortPlan::from_toml(&text) {
                Ok(_) => assert_eq!(expected, "no problem", "{text}"),
                Err(err) => assert!(err.to_string().contains(expected), "{text}\n→ {err}"),
            }
        }
        let missing = SortPlan::from_toml("version = 1\n[bins]\n1 = \"a\"").unwrap_err();
        assert!(
            missing.to_string().starts_with("exception_bin: missing"),
            "{missing}"
        );
        let undeclared =
            SortPlan::from_toml("version = 1\nexception_bin = 2\n[bins]\n1 = \"a\"").unwrap_err();
        assert!(
            undeclared.to_string().contains("bin 2 is not declared"),
            "{undeclared}"
        );
        let no_version = SortPlan::from_toml("exception_bin = 1\n[bins]\n1 = \"a\"").unwrap_err();
        assert!(
            no_version.to_string().starts_with("version: missing"),
            "{no_version}"
        );
        assert!(matches!(
            SortPlan::from_toml("version = "),
            Err(SortPlanError::Toml { .. })
        ));
        let bins = SortPlan::from_toml("version = 1\nexception_bin = 1\nbins = 1").unwrap_err();
        assert!(
            bins.to_string().starts_with("bins: expected a table"),
            "{bins}"
        );
        let unknown = SortPlan::from_toml("version = 1\ncolour = 1").unwrap_err();
        assert!(
            unknown.to_string().starts_with("colour: unknown key"),
            "{unknown}"
        );
        let bad_bin = SortPlan::from_toml("version = 1\n[bins]\nA = \"a\"").unwrap_err();
        assert!(
            bad_bin
                .to_string()
                .starts_with("bins.A: \"A\" is not a bin number"),
            "{bad_bin}"
        );
    }

    #[test]
    fn check_finds_rules_an_earlier_rule_makes_unreachable() {
        let base = "version = 1\nexception_bin = 9\n[bins]\n1 = \"a\"\n9 = \"x\"\n";
        let rule = |name: &str, conditions: &str| {
            format!("[[rules]]\nname = \"{name}\"\nbin = 1\n{conditions}\n")
        };
        // (earlier conditions, later conditions, later unreachable?)
        let cases = [
            ("", "", true),
            ("", "alert_type = \"01\"", true),
            ("alert_type = \"01\"", "", false),
            ("call_number = \"7*\"", "call_number = \"72*,7\"", true),
            ("call_number = \"7*\"", "call_number = \"72*,8\"", false),
            ("call_number = \"*\"", "call_number = \"\"", false),
            ("call_number = [\"*\", \"\"]", "", false),
            ("call_number = [\"*\", \"\"]", "call_number = \"x\"", true),
            ("ok = true", "alert = true", true),
            ("ok = true", "owner = \"ours\"", false),
            ("", "ok = true", true),
            ("", "ok = false", false),
            ("ok = false", "ok = false\nalert = true", true),
            ("ok = true", "ok = false", false),
            ("owner = \"*\"", "owner = \"ours\"", true),
            ("owner = \"ours\"", "owner = \"*\"", false),
            ("type_of_usage = \"1*\"", "type_of_usage = \"11,12\"", true),
            (
                "media_format = \"book\"",
                "media_format = 1\nalert = true",
                true,
            ),
            ("alert = true", "alert = false", false),
            (
                "magnetic_media = true",
                "magnetic_media = true\nsort_bin = \"A\"",
                true,
            ),
        ];
        for (earlier, later, unreachable) in cases {
            let text = format!("{base}{}{}", rule("first", earlier), rule("second", later));
            let plan = SortPlan::from_toml(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let problems = plan.check();
            if unreachable {
                assert_eq!(problems.len(), 1, "{earlier} / {later}: {problems:?}");
                assert_eq!(
                    problems[0].to_string(),
                    "plan \"default\", rule 2 \"second\": can never match: rule 1 \"first\" \
                     before it takes every item it would; move this rule up or narrow rule 1"
                );
            } else {
                assert_eq!(problems, vec![], "{earlier} / {later}");
            }
        }
        let empty = SortPlan::from_toml(&format!("{base}[plans.night]\n")).unwrap();
        let problems: Vec<_> = empty.check().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].starts_with("plan \"night\": has no rules"));
    }

    #[test]
    fn facts_come_from_a_checkin_response_frame() {
        use rfidgw_sip2::frame::{Message, Sip2Message, WireFormat};
        let frame = b"101YNY19980821    085721AOInst|ABI1|AQ Main |CK006|CLA1|CRAV|CSQA76 .73|CTBR3|CV01|CYP1001|CY|AFHold for P1001|XXvendor|AY2AZ0000";
        let decoded = Message::decode(frame, &WireFormat::default()).unwrap();
        let response = CheckinResponse::from_message(&decoded.message).unwrap();
        let facts = CheckinFacts::from(&response);
        let ils = facts.ils.as_ref().unwrap();
        assert!(ils.ok && ils.alert);
        assert_eq!(ils.magnetic_media, Some(false));
        assert_eq!(ils.permanent_location.as_deref(), Some("Main"));
        assert_eq!(
            [
                &ils.alert_type,
                &ils.sort_bin,
                &ils.media_type,
                &ils.destination,
                &ils.collection,
                &ils.call_number,
                &ils.hold_patron
            ]
            .map(|v| v.as_deref()),
            [
                Some("01"),
                Some("A1"),
                Some("006"),
                Some("BR3"),
                Some("AV"),
                Some("QA76 .73"),
                Some("P1001")
            ]
        );
        assert_eq!(ils.screen_message, ["Hold for P1001"]);
        assert!(!facts.is_offline() && CheckinFacts::offline().is_offline());
    }

    #[test]
    fn tag_facts_come_from_a_decoded_tag() {
        use rfidgw_tag::iso28560_3::{BasicBlock, BlockForm, DdmTag, LibraryExtension};
        use rfidgw_tag::owner::{CountryLibrary, OwnerConfig};
        use rfidgw_tag::{ByteOrder, SiteConfig, TagHints};
        let mut tag = DdmTag {
            form: BlockForm::Full,
            basic: BasicBlock {
                type_of_usage: 0x11,
                parts_in_item: 1,
                part_number: 1,
                primary_item_id: "1234".into(),
                country: "DE".into(),
                library: "705".into(),
            },
            extensions: Vec::new(),
        };
        tag.extensions.push(
            LibraryExtension {
                media_format: Some(5),
                ..LibraryExtension::default()
            }
            .to_block()
            .unwrap(),
        );
        let site = SiteConfig {
            owners: OwnerConfig {
                libraries: vec![CountryLibrary {
                    country: "DE".into(),
                    library: "705".into(),
                }],
                ..OwnerConfig::default()
            },
            ..SiteConfig::default()
        };
        let memory =
            rfidgw_tag::encode(&TagData::Iso28560_3(tag), ByteOrder::AsRead, &site).unwrap();
        let decoded = rfidgw_tag::decode(&memory, &TagHints::default(), &site);
        assert_eq!(
            TagFacts::from(&decoded),
            TagFacts {
                media_format: Some(5),
                owner: Some(OwnerClass::Ours),
                type_of_usage: Some(0x11)
            }
        );
        let unreadable = rfidgw_tag::decode(&[0xFF; 8], &TagHints::default(), &site);
        assert_eq!(TagFacts::from(&unreadable), TagFacts::default());
    }

    fn facts() -> impl Strategy<Value = (CheckinFacts, TagFacts)> {
        let value = || {
            proptest::option::of(prop_oneof![
                Just(String::new()),
                "[0-9A-Za-z ]{0,4}",
                Just("01".to_owned()),
                Just("PBK1".to_owned()),
            ])
        };
        let ils = (
            any::<(bool, bool, Option<bool>)>(),
            (value(), value(), value(), value()),
            (value(), value(), value(), value()),
        )
            .prop_map(
                |((ok, alert, magnetic_media), (a, b, c, d), (e, f, g, h))| IlsFacts {
                    ok,
                    alert,
                    magnetic_media,
                    alert_type: a,
                    sort_bin: b,
                    media_type: c,
                    permanent_location: d,
                    destination: e,
                    collection: f,
                    call_number: g,
                    hold_patron: h,
                    screen_message: Vec::new(),
                },
            );
        let owner = proptest::option::of(prop_oneof![
            Just(OwnerClass::Ours),
            Just(OwnerClass::Foreign),
            Just(OwnerClass::Unknown),
        ]);
        (
            proptest::option::of(ils),
            (any::<Option<u8>>(), owner, any::<Option<u8>>()),
        )
            .prop_map(|(ils, (media_format, owner, type_of_usage))| {
                (
                    CheckinFacts { ils },
                    TagFacts {
                        media_format,
                        owner,
                        type_of_usage,
                    },
                )
            })
    }

    fn condition() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "alert_type",
            "sort_bin",
            "media_type",
            "permanent_location",
            "destination",
            "collection",
            "call_number",
            "hold_patron",
        ]);
        let text = prop::sample::select(vec![
            "\"01\"",
            "\"PBK*\"",
            "\"*\"",
            "\"\"",
            "\"7*,8*,9*\"",
            "[\"a, b\", \"\"]",
        ]);
        prop_oneof![
            (key, text).prop_map(|(k, v)| format!("{k} = {v}")),
            prop::sample::select(vec![
                "ok = true",
                "ok = false",
                "alert = true",
                "alert = false",
                "magnetic_media = true",
                "owner = \"ours\"",
                "owner = \"foreign,unknown\"",
                "media_format = [5, 6]",
                "media_format = \"*\"",
                "type_of_usage = \"1*\"",
                "type_of_usage = \"\"",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn push_rules(
        text: &mut String,
        table: &str,
        rules: &[(Vec<String>, prop::sample::Index)],
        bins: &[u16],
    ) {
        for (i, (conditions, bin)) in rules.iter().enumerate() {
            let _ = write!(
                text,
                "[[{table}]]\nname = \"r{i}\"\nbin = {}\n",
                bin.get(bins)
            );
            // A key may appear once per table: keep the first of each.
            let mut seen = Vec::new();
            for condition in conditions {
                let key = condition.split(' ').next().unwrap_or_default().to_owned();
                if !seen.contains(&key) {
                    text.push_str(condition);
                    text.push('\n');
                    seen.push(key);
                }
            }
        }
    }

    /// A valid plan: bins, exception bin, rules over random conditions naming declared
    /// bins, an alternate plan and a schedule.
    fn valid_plan() -> impl Strategy<Value = (String, Vec<u16>)> {
        let rules = |conditions: usize, rules: usize| {
            prop::collection::vec(
                (
                    prop::collection::vec(condition(), 0..conditions),
                    any::<prop::sample::Index>(),
                ),
                0..rules,
            )
        };
        (
            prop::collection::btree_set(0u16..40, 1..6),
            rules(4, 8),
            rules(3, 3),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(bins, rules, evening, exception)| {
                let bins: Vec<u16> = bins.into_iter().collect();
                let mut text = format!(
                    "version = 1\nexception_bin = {}\n[bins]\n",
                    exception.get(&bins)
                );
                for bin in &bins {
                    let _ = writeln!(text, "{bin} = \"bin {bin}\"");
                }
                push_rules(&mut text, "rules", &rules, &bins);
                text.push_str("[plans.evening]\n");
                push_rules(&mut text, "plans.evening.rules", &evening, &bins);
                text.push_str("[[schedule]]\nplan = \"evening\"\n");
                text.push_str("days = \"mon-fri\"\ntime = \"18:00-08:00\"\n");
                (text, bins)
            })
    }

    fn parse(text: &str) -> Result<SortPlan, TestCaseError> {
        SortPlan::from_toml(text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))
    }

    proptest! {
        #[test]
        fn any_text_gives_a_plan_or_an_error(text in "\\PC{0,200}") {
            if let Ok(plan) = SortPlan::from_toml(&text) {
                let _ = plan.check();
            }
        }

        #[test]
        fn tomlish_text_gives_a_plan_or_an_error_never_a_panic(
            lines in prop::collection::vec(prop_oneof![
                Just("version = 1".to_owned()),
                Just("exception_bin = 1".to_owned()),
                Just("[bins]".to_owned()),
                Just("1 = \"a\"".to_owned()),
                Just("[[rules]]".to_owned()),
                Just("name = \"r\"".to_owned()),
                Just("bin = 1".to_owned()),
                Just("[plans.x]".to_owned()),
                Just("[[plans.x.rules]]".to_owned()),
                Just("[[schedule]]".to_owned()),
                Just("plan = \"x\"".to_owned()),
                Just("days = \"sat-mon\"".to_owned()),
                Just("time = \"23:00-01:00\"".to_owned()),
                Just("dates = [\"12-31..01-01\", 2026-01-01]".to_owned()),
                condition(),
                "[a-z_]{1,12} = (\"[ -~]{0,8}\"|[0-9]{1,6}|true|\\[\\])",
            ], 0..24),
            (checkin, tag) in facts(),
        ) {
            let text = lines.join("\n");
            if let Ok(plan) = SortPlan::from_toml(&text) {
                let _ = plan.check();
                let decision = plan.decide(&checkin, &tag, MORNING);
                prop_assert!(plan.bins().contains_key(&decision.bin));
            }
        }

        #[test]
        fn decide_always_returns_a_declared_bin(
            (text, bins) in valid_plan(),
            (checkin, tag) in facts(),
            minute in 0u32..(7 * 24 * 60),
        ) {
            let plan = parse(&text)?;
            let _ = plan.check();
            let now = MORNING + time::Duration::minutes(i64::from(minute));
            let decision = plan.decide(&checkin, &tag, now);
            prop_assert!(bins.contains(&decision.bin), "{decision:?}");
            prop_assert_eq!(decision.exception, decision.bin == plan.exception_bin());
            prop_assert_eq!(
                decision.rule.is_none(),
                decision.reason.ends_with("no rule matched")
            );
            for name in ["evening", "gone"] {
                let selection = PlanSelection::Named(name.into());
                let decision = plan.decide_with(&selection, &checkin, &tag, now);
                prop_assert!(bins.contains(&decision.bin));
            }
        }

        #[test]
        fn a_rule_check_calls_unreachable_never_matches_first(
            (text, _) in valid_plan(),
            (checkin, tag) in facts(),
        ) {
            // Soundness of the unreachable-rule analysis: no item is ever decided by a rule
            // `check` says can never match.
            let plan = parse(&text)?;
            let unreachable: Vec<_> = plan
                .check()
                .into_iter()
                .filter_map(|p| p.rule.map(|r| (p.plan, r.index)))
                .collect();
            for name in ["default", "evening"] {
                let selection = PlanSelection::Named(name.into());
                let decision = plan.decide_with(&selection, &checkin, &tag, MORNING);
                if let Some(rule) = &decision.rule {
                    let key = (decision.plan.clone(), rule.index);
                    prop_assert!(!unreachable.contains(&key), "{text}\n{decision:?}");
                }
            }
        }
    }
}
