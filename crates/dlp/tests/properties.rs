//! Properties of the detectors over generated inputs: a registered secret
//! is found however it is encoded or split, redaction removes what was
//! found, and no input makes a detector panic.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use dlp::{KnownSecrets, RuleSet, ScanOptions, Scanner, View, redact};
use proptest::prelude::*;
use secret::Secret;

fn scanner_for(value: &str) -> Scanner {
    let mut known = KnownSecrets::new();
    known.register("env:SECRET", &Secret::new(value.to_string()));
    let options = ScanOptions { token_patterns: false, ..ScanOptions::default() };
    Scanner::new(RuleSet::default(), known, options)
}

fn secret_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{8}[A-Za-z0-9_./+@!-]{8,48}"
}

fn encode(value: &str, how: u8, prefix: &str, suffix: &str) -> String {
    let payload = format!("{prefix}{value}{suffix}");
    match how % 8 {
        0 => payload,
        1 => STANDARD.encode(&payload),
        2 => STANDARD_NO_PAD.encode(&payload),
        3 => URL_SAFE.encode(&payload),
        4 => URL_SAFE_NO_PAD.encode(&payload),
        5 => payload.bytes().map(|b| format!("{b:02x}")).collect(),
        6 => payload.bytes().map(|b| format!("{b:02X}")).collect(),
        _ => payload
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect(),
    }
}

proptest! {
    #[test]
    fn a_registered_secret_is_found_in_every_encoding(
        value in secret_value(),
        how in 0u8..8,
        prefix in "[a-z ]{0,5}",
        suffix in "[a-z ]{0,5}",
        around in "[A-Za-z =:]{0,20}",
    ) {
        let data = format!("{around}{}{around}", encode(&value, how, &prefix, &suffix));
        let findings = scanner_for(&value).scan(data.as_bytes(), None);
        prop_assert!(!findings.is_empty(), "encoding {how} not found: {data}");
        for f in &findings {
            prop_assert!(!f.snippet.contains(&value), "snippet shows the value");
        }
    }

    #[test]
    fn fragments_with_any_separators_are_found(
        value in "[A-Za-z0-9]{16,40}",
        seps in prop::collection::vec("[ ._,:/|-]{0,3}", 40),
    ) {
        let split: String = value.chars().zip(seps.iter().cycle()).map(|(c, s)| format!("{c}{s}")).collect();
        let findings = scanner_for(&value).scan(split.as_bytes(), None);
        prop_assert!(!findings.is_empty(), "not found: {split}");
    }

    #[test]
    fn redaction_leaves_nothing_to_find(value in secret_value(), before in "[a-z ]{0,30}", after in "[a-z ]{0,30}") {
        let scanner = scanner_for(&value);
        let data = format!("{before}{value}{after} and again: {value}");
        let findings = scanner.scan(data.as_bytes(), None);
        prop_assert!(findings.len() >= 2);
        let (clean, unrewritable) = redact(data.as_bytes(), &findings);
        prop_assert!(unrewritable.is_empty());
        prop_assert!(scanner.scan(&clean, None).is_empty(), "{}", String::from_utf8_lossy(&clean));
    }

    #[test]
    fn no_input_makes_the_scanner_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let options = ScanOptions { entropy: true, crypto: true, ..ScanOptions::default() };
        let scanner = Scanner::new(RuleSet::builtin().clone(), KnownSecrets::new(), options);
        let findings = scanner.scan(&data, Some("x/y.txt"));
        for f in findings {
            if f.view == View::Raw {
                prop_assert!(f.span.end <= data.len());
            }
        }
        let _ = dlp::scan_inbound(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The decoded views of any input stay within the budget, never panic,
    /// and a chain of encodings of any value up to the depth bound is undone.
    #[test]
    fn decoded_views_are_bounded(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let v = dlp::decoded_views(&data);
        let total: usize = v.views.iter().map(|v| v.bytes.len()).sum();
        prop_assert!(total <= data.len() * 4 + (1 << 20));
        prop_assert!(v.views.iter().all(|v| v.chain.len() <= dlp::MAX_DEPTH));
    }

    #[test]
    fn decoded_views_of_encoding_alphabets_are_bounded(data in "[A-Za-z0-9+/=%&#;\\\\xu\\- :]{0,3000}") {
        let v = dlp::decoded_views(data.as_bytes());
        let total: usize = v.views.iter().map(|v| v.bytes.len()).sum();
        prop_assert!(total <= data.len() * 4 + (1 << 20));
    }

    #[test]
    fn chains_of_encodings_are_undone(value in secret_value(), layers in proptest::collection::vec(0u8..5, 1..4)) {
        let mut s = format!("secret={value}");
        for how in &layers {
            s = match how {
                0 => STANDARD.encode(&s),
                1 => URL_SAFE_NO_PAD.encode(&s),
                2 => s.bytes().map(|b| format!("{b:02x}")).collect(),
                3 => s.bytes().map(|b| format!("%{b:02X}")).collect(),
                _ => s.bytes().map(|b| format!("&#{b};")).collect(),
            };
        }
        let found = dlp::decoded_views(s.as_bytes())
            .views
            .iter()
            .any(|v| v.bytes.windows(value.len()).any(|w| w == value.as_bytes()));
        prop_assert!(found, "{layers:?}: {s}");
    }
}
