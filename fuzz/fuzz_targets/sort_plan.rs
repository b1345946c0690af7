//! Fuzz sort plans: any text gives a plan or an error, never a panic; a plan that parses
//! decides on arbitrary facts without panicking, always into a declared bin, and never by a
//! rule `check` calls unreachable.
//!
//! Input: the plan text, a NUL byte, then the facts: flags, media format, owner, type of
//! usage, minute of the week (2 bytes, little-endian), plan selection, and the eight text
//! facts of the checkin response separated by 0x1F.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw::station::sortplan::{CheckinFacts, IlsFacts, PlanSelection, SortPlan, TagFacts};
use rfidgw_tag::OwnerClass;
use time::macros::datetime;

fuzz_target!(|input: &[u8]| {
    let (text, facts) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(plan) = SortPlan::from_toml(text) else {
        return;
    };
    let unreachable: Vec<(String, usize)> = plan
        .check()
        .into_iter()
        .filter_map(|p| p.rule.map(|r| (p.plan, r.index)))
        .collect();

    let byte = |i: usize| facts.get(i).copied().unwrap_or(0);
    let flags = byte(0);
    let mut fields = facts
        .get(7..)
        .unwrap_or_default()
        .split(|&b| b == 0x1F)
        .map(|f| (!f.is_empty()).then(|| String::from_utf8_lossy(f).into_owned()));
    let mut next = || fields.next().flatten();
    let ils = (flags & 0x01 != 0).then(|| IlsFacts {
        ok: flags & 0x02 != 0,
        alert: flags & 0x04 != 0,
        magnetic_media: match (flags >> 3) & 0x03 {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        },
        alert_type: next(),
        sort_bin: next(),
        media_type: next(),
        permanent_location: next(),
        destination: next(),
        collection: next(),
        call_number: next(),
        hold_patron: next(),
        screen_message: vec!["fuzz".into()],
    });
    let checkin = CheckinFacts { ils };
    let tag = TagFacts {
        media_format: (flags & 0x20 != 0).then_some(byte(1)),
        owner: (flags & 0x40 != 0).then_some(match byte(2) % 3 {
            0 => OwnerClass::Ours,
            1 => OwnerClass::Foreign,
            _ => OwnerClass::Unknown,
        }),
        type_of_usage: (flags & 0x80 != 0).then_some(byte(3)),
    };
    let minute = u16::from_le_bytes([byte(4), byte(5)]) % (7 * 24 * 60);
    let now = datetime!(2026-03-02 00:00) + time::Duration::minutes(i64::from(minute));
    let names: Vec<String> = plan.plans().map(|(name, _)| name.to_owned()).collect();
    let selection = match usize::from(byte(6)) {
        0 => PlanSelection::Schedule,
        n => names
            .get(n - 1)
            .map_or(PlanSelection::Named("not a plan".into()), |name| {
                plan.select(name).expect("a plan's own name selects it")
            }),
    };

    let decision = plan.decide_with(&selection, &checkin, &tag, now);
    assert!(plan.bins().contains_key(&decision.bin), "{decision:?}");
    assert_eq!(decision.exception, decision.bin == plan.exception_bin());
    assert_eq!(
        decision.rule.is_none(),
        decision.reason.ends_with("no rule matched")
    );
    if let Some(rule) = &decision.rule {
        assert!(
            !unreachable.contains(&(decision.plan.clone(), rule.index)),
            "check called {rule} unreachable, but it decided {decision:?}"
        );
    }
    let _ = plan.active_plan(&selection, now);
});
