//! Recorded report sequences (tests/fixtures/*.reports, byte-accurate boot-keyboard
//! transfers with their times) decoded per layout, directly and through the daemon device.

use std::time::Duration;

use proptest::prelude::*;
use rfidgw_driver::{CardRead, Device, DeviceError, DeviceEvent, DeviceEventSink};
use rfidgw_hid::{
    CardAssembler, HidCardReader, HidSettings, Layout, RecordedSource, Terminator, TimedReport,
    WedgeConfig, WedgeCounters, type_text,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Reads a fixture: `at_ms hex bytes…` per line, `#` comments.
fn fixture(name: &str) -> Vec<TimedReport> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let at: u64 = words.next().unwrap().parse().unwrap();
            let bytes = words.map(|w| u8::from_str_radix(w, 16).unwrap()).collect();
            TimedReport {
                at: Duration::from_millis(at),
                bytes,
            }
        })
        .collect()
}

fn decode(layout: Layout, reports: &[TimedReport]) -> (Vec<String>, WedgeCounters) {
    let mut assembler = CardAssembler::new(WedgeConfig {
        layout,
        ..WedgeConfig::default()
    });
    let cards = reports
        .iter()
        .flat_map(|r| assembler.feed_bytes(&r.bytes, r.at))
        .collect();
    (cards, assembler.counters())
}

#[test]
fn each_layouts_recording_decodes_to_its_card_number() {
    let cases: &[(&str, Layout, &[&str])] = &[
        ("us-0012345678.reports", Layout::Us, &["0012345678"]),
        ("fr-0012345678.reports", Layout::Fr, &["0012345678"]),
        ("de-LB-0815Y.reports", Layout::De, &["LB-0815Y"]),
        ("uk-LIB#0042.reports", Layout::Uk, &["LIB#0042"]),
        // A US-set reader on an AZERTY host: the layout must match the reader.
        ("fr-unshifted-digits.reports", Layout::Fr, &["&éà"]),
        ("fr-unshifted-digits.reports", Layout::Us, &["120"]),
        // The same keys mean other things on other layouts.
        ("de-LB-0815Y.reports", Layout::Us, &["LB/0815Z"]),
        ("uk-LIB#0042.reports", Layout::Us, &["LIB\\0042"]),
    ];
    for (name, layout, want) in cases {
        let (cards, counters) = decode(*layout, &fixture(name));
        assert_eq!(cards, *want, "{name} as {layout:?}");
        assert_eq!(counters.cards, want.len() as u64, "{name}");
        assert_eq!(counters.bad_reports, 0, "{name}");
    }
}

#[test]
fn a_noisy_session_drops_the_interrupted_number_and_counts_what_it_ignored() {
    let (cards, counters) = decode(Layout::Us, &fixture("us-noisy-session.reports"));
    assert_eq!(cards, ["021", "78"]);
    assert_eq!(
        counters,
        WedgeCounters {
            reports: 22,
            bad_reports: 2,
            keys_ignored: 2,
            partial_dropped: 1,
            cards: 2,
        }
    );
}

#[test]
fn the_recordings_match_what_a_reader_for_that_layout_would_type() {
    for (name, layout, card) in [
        ("us-0012345678.reports", Layout::Us, "0012345678"),
        ("de-LB-0815Y.reports", Layout::De, "LB-0815Y"),
        ("uk-LIB#0042.reports", Layout::Uk, "LIB#0042"),
    ] {
        let recorded: Vec<Vec<u8>> = fixture(name).into_iter().map(|r| r.bytes).collect();
        let typed: Vec<Vec<u8>> = type_text(layout, card, Terminator::Enter)
            .into_iter()
            .map(|r| r.to_bytes().to_vec())
            .collect();
        assert_eq!(recorded, typed, "{name}");
    }
}

#[tokio::test]
async fn the_device_sends_each_recorded_card_to_the_bus_then_reports_the_end() {
    let mut reports = fixture("fr-0012345678.reports");
    let second = fixture("fr-0012345678.reports")
        .into_iter()
        .map(|r| TimedReport {
            at: r.at + Duration::from_secs(5),
            ..r
        });
    reports.extend(second);
    let config = WedgeConfig {
        layout: Layout::Fr,
        ..WedgeConfig::default()
    };
    let device = Box::new(HidCardReader::with_source(
        config,
        RecordedSource::new(reports),
    ));
    let (tx, mut rx) = mpsc::channel(32);
    let result = device
        .run(
            DeviceEventSink::new("patron-card", tx),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(result, Err(DeviceError::Transport(_))),
        "{result:?}"
    );
    let mut cards = Vec::new();
    while let Ok(report) = rx.try_recv() {
        assert_eq!(report.device, "patron-card");
        if let DeviceEvent::Card(CardRead { number }) = report.event {
            cards.push(number);
        }
    }
    assert_eq!(cards, ["0012345678", "0012345678"]);
}

#[tokio::test]
async fn a_device_from_settings_replays_its_configured_cards() {
    let settings: HidSettings = toml::from_str(
        r#"
        vid = "08FF"
        pid = "0009"
        layout = "de"
        [recorded]
        cards = ["Z-42"]
        key_interval_ms = 1
        card_interval_ms = 1
        "#,
    )
    .unwrap();
    let device = Box::new(HidCardReader::from_settings(&settings).unwrap());
    let (tx, mut rx) = mpsc::channel(32);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(device.run(DeviceEventSink::new("pad", tx), cancel.clone()));
    let card = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let DeviceEvent::Card(card) = rx.recv().await.unwrap().event {
                return card;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(card.number, "Z-42");
    cancel.cancel();
    let _ = task.await.unwrap();
}

fn card_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[0-9A-Za-z][0-9A-Za-z\\-/.]{0,30}").unwrap()
}

proptest! {
    #[test]
    fn any_card_typed_on_any_layout_decodes_back(card in card_text(), layout in 0usize..4) {
        let layout = Layout::ALL[layout];
        let reports = type_text(layout, &card, Terminator::Enter);
        let mut assembler = CardAssembler::new(WedgeConfig { layout, ..WedgeConfig::default() });
        let cards: Vec<String> = reports
            .iter()
            .enumerate()
            .flat_map(|(i, r)| assembler.feed(*r, Duration::from_millis(i as u64)))
            .collect();
        prop_assert_eq!(cards, vec![card]);
    }

    #[test]
    fn any_transfers_never_panic_and_cards_are_never_empty(
        transfers in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), 0u64..300), 0..60),
        layout in 0usize..4,
    ) {
        let mut assembler = CardAssembler::new(WedgeConfig { layout: Layout::ALL[layout], ..WedgeConfig::default() });
        let mut at = Duration::ZERO;
        for (bytes, step) in transfers {
            at += Duration::from_millis(step);
            for card in assembler.feed_bytes(&bytes, at) {
                prop_assert!(!card.is_empty());
                prop_assert!(card.chars().count() <= 64);
            }
        }
    }
}
