//! The `crypto` detector (on by default): values whose structure proves what
//! they are, by checksum — BIP-39 seed phrases, Bitcoin private keys in WIF,
//! payment card numbers (Luhn, with a known issuer prefix) and IBANs
//! (mod 97). A card number also needs context — a word of payment near it
//! (`card`, `pan`, `visa`, `cvv`, `exp`, …) — so that a 16-digit id in a
//! path or a table is not one; the issuers' published test numbers are not
//! cards. `data/bip39-english.txt` is the BIP-39 standard English list.

use std::sync::OnceLock;

use regex::bytes::Regex;
use sha2::{Digest, Sha256};

use crate::classes::{Class, ClassRuns, phrase_separator};
use crate::finding::{Detector, Finding, Severity, View, snippet};

pub fn scan(data: &[u8], view: View, out: &mut Vec<Finding>) {
    let mut push = |rule: &str, span: std::ops::Range<usize>| {
        out.push(Finding {
            detector: Detector::Crypto,
            rule: rule.to_string(),
            snippet: snippet(data, &span),
            span,
            view,
            severity: Severity::Block,
        })
    };
    // Stretches of the bytes a phrase is made of, found a block at a time,
    // then read a word at a time.
    let runs = ClassRuns::of(
        data,
        &[(Class::Phrase, PHRASE_MIN), (Class::Card, CARD_MIN), (Class::Iban, IBAN_MIN), (Class::Wif, WIF_MIN)],
    );
    for outer in runs.get(Class::Phrase) {
        // A word cut by the run's edge (`abandonX`) is not a list word.
        let (mut lo, mut hi) = (outer.start, outer.end);
        if lo > 0 && data[lo - 1].is_ascii_alphabetic() {
            while lo < hi && data[lo].is_ascii_alphabetic() {
                lo += 1;
            }
        }
        if hi < data.len() && data[hi].is_ascii_alphabetic() {
            while hi > lo && data[hi - 1].is_ascii_alphabetic() {
                hi -= 1;
            }
        }
        let text = &data[lo..hi];
        for stretch in phrase_stretches(text) {
            for span in bip39_phrases(&text[stretch.clone()]) {
                let at = lo + stretch.start;
                push("bip39-seed-phrase", at + span.start..at + span.end);
            }
        }
    }
    // Each shape's regex runs only on the runs of its alphabet long enough
    // to hold it (found sublinearly), with one byte of context either side
    // for its boundaries: a regex over the whole input cost more than the
    // rest of the scan.
    let within = |run: &std::ops::Range<usize>| run.start.saturating_sub(1)..(run.end + 1).min(data.len());
    for run in runs.get(Class::Card) {
        if data[run.clone()].iter().filter(|b| b.is_ascii_digit()).count() < CARD_MIN {
            continue;
        }
        let w = within(run);
        for c in card_shape().captures_iter(&data[w.clone()]) {
            let Some(m) = c.name("card") else { continue };
            let span = w.start + m.start()..w.start + m.end();
            if is_card(m.as_bytes()) && payment_context(data, span.clone()) && !is_test_card(m.as_bytes()) {
                push("payment-card-number", span);
            }
        }
    }
    for run in runs.get(Class::Iban) {
        let bytes = &data[run.clone()];
        if !bytes.windows(4).any(|q| q[..2].iter().all(u8::is_ascii_uppercase) && q[2..].iter().all(u8::is_ascii_digit))
        {
            continue;
        }
        let w = within(run);
        for m in iban_shape().find_iter(&data[w.clone()]) {
            if is_iban(m.as_bytes()) {
                push("iban", w.start + m.start()..w.start + m.end());
            }
        }
    }
    for run in runs.get(Class::Wif) {
        let w = within(run);
        for m in wif_shape().find_iter(&data[w.clone()]) {
            if is_wif(m.as_bytes()) {
                push("bitcoin-wif-private-key", w.start + m.start()..w.start + m.end());
            }
        }
    }
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// The fewest characters of each shape: a card's digits, an IBAN written
/// compactly with its shortest country length (Norway's 15), a WIF key.
const CARD_MIN: usize = 13;
const IBAN_MIN: usize = 15;
const WIF_MIN: usize = 51;

// The alphabets of the shapes (the runs each regex is run on) are
// `classes::Class::{Card, Iban, Wif, Phrase}`.

fn card_shape() -> &'static Regex {
    static CARD: OnceLock<Regex> = OnceLock::new();
    CARD.get_or_init(|| {
        Regex::new(r"(?:^|[^0-9\-])(?P<card>[0-9](?:[ \-]?[0-9]){12,18})(?:[^0-9\-]|$)").expect("valid")
    })
}

fn iban_shape() -> &'static Regex {
    static IBAN: OnceLock<Regex> = OnceLock::new();
    IBAN.get_or_init(|| {
        Regex::new(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)").expect("valid")
    })
}

fn wif_shape() -> &'static Regex {
    static WIF: OnceLock<Regex> = OnceLock::new();
    WIF.get_or_init(|| Regex::new(r"(?-u:\b)[5KL9c][1-9A-HJ-NP-Za-km-z]{50,51}(?-u:\b)").expect("valid"))
}

/// The shortest seed phrase: 12 words of at least 3 letters, 11 separators.
const PHRASE_MIN: usize = 12 * 4 - 1;

/// The unit of text holding byte `at` — a separator byte, or the whole
/// word of letters around it — and whether a phrase may contain it (a
/// separator, or a lowercase word of the BIP-39 list).
fn phrase_unit(data: &[u8], at: usize) -> (std::ops::Range<usize>, bool) {
    let b = data[at];
    if phrase_separator(b) {
        return (at..at + 1, true);
    }
    if !b.is_ascii_alphabetic() {
        return (at..at + 1, false);
    }
    let start = data[..at].iter().rposition(|c| !c.is_ascii_alphabetic()).map_or(0, |i| i + 1);
    let end = data[at..].iter().position(|c| !c.is_ascii_alphabetic()).map_or(data.len(), |i| at + i);
    let word = &data[start..end];
    let listed = word[0].is_ascii_lowercase() && packed(word).is_some_and(|w| wordlist().contains_key(&w));
    (start..end, listed)
}

/// The stretches of list words and separators long enough to hold a
/// phrase, found a word at a time and sublinearly: a stretch that long
/// must contain the unit [`PHRASE_MIN`] bytes ahead, so when that unit
/// cannot be in a phrase, the search jumps past it.
fn phrase_stretches(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + PHRASE_MIN <= data.len() {
        let (unit, inside) = phrase_unit(data, i + PHRASE_MIN - 1);
        if !inside {
            i = unit.end;
            continue;
        }
        let mut start = unit.start;
        while start > i {
            let (before, ok) = phrase_unit(data, start - 1);
            if !ok || before.start < i {
                break;
            }
            start = before.start;
        }
        let mut end = unit.end;
        let mut next = data.len();
        while end < data.len() {
            let (after, ok) = phrase_unit(data, end);
            if !ok {
                next = after.end;
                break;
            }
            end = after.end;
        }
        if end - start >= PHRASE_MIN {
            out.push(start..end);
        }
        i = next;
    }
    out
}

/// A word of 3–8 lowercase letters packed into a `u64` (the BIP-39 list's
/// words are all that shape), so a lookup hashes one integer.
fn packed(word: &[u8]) -> Option<u64> {
    (3..=8).contains(&word.len()).then(|| word.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A multiply-shift hasher for packed words: SipHash on every word of a
/// large input costs more than the rest of the scan.
#[derive(Default)]
struct PackedHasher(u64);

impl std::hash::Hasher for PackedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

type Words = std::collections::HashMap<u64, u16, std::hash::BuildHasherDefault<PackedHasher>>;

fn wordlist() -> &'static Words {
    static WORDS: OnceLock<Words> = OnceLock::new();
    WORDS.get_or_init(|| {
        include_str!("../data/bip39-english.txt")
            .lines()
            .enumerate()
            .filter_map(|(i, w)| Some((packed(w.trim().as_bytes())?, i as u16)))
            .collect()
    })
}

fn bip39_phrases(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let words = wordlist();
    // Runs of consecutive list words separated only by spaces, commas,
    // newlines or numbering.
    let mut found = Vec::new();
    let mut run: Vec<(u16, std::ops::Range<usize>)> = Vec::new();
    let mut i = 0;
    let flush = |run: &mut Vec<(u16, std::ops::Range<usize>)>, found: &mut Vec<std::ops::Range<usize>>| {
        let mut start = 0;
        while run.len() - start >= 12 {
            let hit = [24, 21, 18, 15, 12]
                .into_iter()
                .find(|&n| run.len() - start >= n && checksum_ok(&run[start..start + n]));
            match hit {
                Some(n) => {
                    found.push(run[start].1.start..run[start + n - 1].1.end);
                    start += n;
                }
                None => start += 1,
            }
        }
        run.clear();
    };
    while i < data.len() {
        if data[i].is_ascii_lowercase() {
            let s = i;
            while i < data.len() && data[i].is_ascii_alphabetic() {
                i += 1;
            }
            match packed(&data[s..i]).and_then(|w| words.get(&w)) {
                Some(&index) => run.push((index, s..i)),
                None => flush(&mut run, &mut found),
            }
        } else if data[i].is_ascii_whitespace()
            || matches!(data[i], b',' | b'.' | b')' | b'-' | b'"' | b'\'')
            || data[i].is_ascii_digit()
        {
            i += 1;
        } else {
            flush(&mut run, &mut found);
            i += 1;
        }
    }
    flush(&mut run, &mut found);
    found
}

fn checksum_ok(words: &[(u16, std::ops::Range<usize>)]) -> bool {
    let n = words.len();
    let total_bits = n * 11;
    let cs_bits = n / 3;
    let ent_bits = total_bits - cs_bits;
    let mut bits = Vec::with_capacity(total_bits);
    for (index, _) in words {
        for b in (0..11).rev() {
            bits.push((index >> b) & 1 == 1);
        }
    }
    let entropy: Vec<u8> =
        bits[..ent_bits].chunks(8).map(|c| c.iter().fold(0u8, |acc, &b| (acc << 1) | u8::from(b))).collect();
    let hash = Sha256::digest(&entropy);
    (0..cs_bits).all(|k| ((hash[k / 8] >> (7 - k % 8)) & 1 == 1) == bits[ent_bits + k])
}

fn base58_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    for &c in s {
        let mut carry = BASE58.iter().position(|&a| a == c)? as u32;
        for byte in out.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            out.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.iter().take_while(|&&c| c == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend(out);
    Some(full)
}

fn is_wif(s: &[u8]) -> bool {
    let Some(raw) = base58_decode(s) else {
        return false;
    };
    if !(raw.len() == 37 || raw.len() == 38 && raw[33] == 0x01) || !matches!(raw[0], 0x80 | 0xef) {
        return false;
    }
    let (body, check) = raw.split_at(raw.len() - 4);
    Sha256::digest(Sha256::digest(body))[..4] == *check
}

/// How far before and after a card number its word of payment may be.
const CONTEXT_BEFORE: usize = 48;
const CONTEXT_AFTER: usize = 24;

fn payment_words() -> &'static Regex {
    static CONTEXT: OnceLock<Regex> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        Regex::new(r"(?i-u)card|credit|debit|\bpan\b|\bcc[_\-]?(?:num|number|no)?\b|visa|master\s?card|amex|american\s+express|discover|diners|jcb|payment|billing|cvv|cvc|\bexp(?:iry|iration)?\b")
            .expect("valid")
    })
}

/// A word of payment within a short distance of the number.
fn payment_context(data: &[u8], span: std::ops::Range<usize>) -> bool {
    let lo = span.start.saturating_sub(CONTEXT_BEFORE);
    let hi = (span.end + CONTEXT_AFTER).min(data.len());
    payment_words().is_match(&data[lo..span.start]) || payment_words().is_match(&data[span.end..hi])
}

/// The issuers' published test numbers (Stripe, Adyen, Braintree docs):
/// in documentation everywhere, never a card.
fn is_test_card(s: &[u8]) -> bool {
    const TEST: &[&str] = &[
        "4242424242424242",
        "4000056655665556",
        "4111111111111111",
        "4012888888881881",
        "5555555555554444",
        "5200828282828210",
        "5105105105105100",
        "2223003122003222",
        "378282246310005",
        "371449635398431",
        "6011111111111117",
        "6011000990139424",
        "3056930009020004",
        "36227206271667",
        "3566002020360505",
        "6200000000000005",
        "4000000000000002",
        "4000000000009995",
    ];
    let digits: String = s.iter().filter(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
    TEST.contains(&digits.as_str())
}

fn is_card(s: &[u8]) -> bool {
    let digits: Vec<u8> = s.iter().filter(|b| b.is_ascii_digit()).map(|b| b - b'0').collect();
    let n = digits.len();
    if !(13..=19).contains(&n) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let prefix = |k: usize| digits[..k].iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d));
    let issuer = match digits[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => (51..=55).contains(&prefix(2)) && n == 16,
        2 => (2221..=2720).contains(&prefix(4)) && n == 16,
        3 => {
            (matches!(prefix(2), 34 | 37) && n == 15)
                || (prefix(2) == 35 && (16..=19).contains(&n))
                || (matches!(prefix(2), 36 | 38) && n == 14)
        }
        6 => (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3))) && (16..=19).contains(&n),
        _ => false,
    };
    issuer
        && digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| {
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .map(u32::from)
            .sum::<u32>()
            % 10
            == 0
}

fn is_iban(s: &[u8]) -> bool {
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AT", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"CH", 21),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DK", 18),
        (b"EE", 20),
        (b"ES", 24),
        (b"FI", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GR", 27),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IS", 26),
        (b"IT", 27),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"MC", 27),
        (b"MT", 31),
        (b"NL", 18),
        (b"NO", 15),
        (b"PL", 28),
        (b"PT", 25),
        (b"RO", 24),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"TR", 26),
        (b"UA", 29),
        (b"AE", 23),
        (b"SA", 24),
        (b"BR", 29),
    ];
    let compact: Vec<u8> = s.iter().copied().filter(|b| *b != b' ').collect();
    let Some((_, len)) = LENGTHS.iter().find(|(c, _)| compact.starts_with(&c[..])) else {
        return false;
    };
    if compact.len() != *len {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &c in rearranged {
        let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        scan(text.as_bytes(), View::Raw, &mut out);
        out.into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn bip39_needs_a_valid_checksum() {
        // The BIP-39 test vector for all-zero entropy.
        let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        assert_eq!(rules(&format!("seed: {phrase}\n")), ["bip39-seed-phrase"]);
        let wrong = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
        assert!(rules(wrong).is_empty());
        assert!(rules("the quick brown fox jumps over the lazy dog again and again and again").is_empty());
        // Numbered, on lines, in quotes, inside other text: still a phrase.
        let numbered: String =
            phrase.split(' ').enumerate().map(|(i, w)| format!("{}. {w}\n", i + 1)).collect::<Vec<_>>().concat();
        assert_eq!(rules(&format!("Backup:\n{numbered}Keep it safe")), ["bip39-seed-phrase"]);
        assert_eq!(rules(&format!("{{\"mnemonic\": \"{phrase}\"}}")), ["bip39-seed-phrase"]);
        // A word cut by capitals is not a list word, at either edge.
        assert!(rules(&format!("Xabandon{}", &phrase["abandon".len()..])).is_empty());
        assert!(rules(&format!("{phrase}X")).is_empty());
    }

    #[test]
    fn wif_cards_iban() {
        assert_eq!(rules("key=5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"), ["bitcoin-wif-private-key"]);
        assert!(rules("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTK").is_empty());
        assert_eq!(rules("card 4539 1488 0343 6467 exp 12/29"), ["payment-card-number"]);
        assert_eq!(rules("{\"pan\": \"5425233430109903\"}"), ["payment-card-number"]);
        assert!(rules("card 4539 1488 0343 6468").is_empty(), "not Luhn");
        assert!(rules("id 1234567890123456").is_empty());
        // Needs a word of payment nearby: a valid number as an id is not a card.
        assert!(rules("/v1/orders/4539148803436467/items").is_empty());
        // The issuers' published test numbers are not cards.
        assert!(rules("Use the test card 4242 4242 4242 4242 in test mode.").is_empty());
        assert!(rules("amex: 378282246310005").is_empty());
        assert_eq!(rules("IBAN DE89 3704 0044 0532 0130 00 please"), ["iban"]);
        assert_eq!(rules("GB82WEST12345698765432"), ["iban"]);
        assert!(rules("DE89 3704 0044 0532 0130 01").is_empty());
        // Shapes at the very edges of the input, and glued to other text.
        assert_eq!(rules("4539148803436467 card"), ["payment-card-number"]);
        assert_eq!(rules("ref:4539148803436467 card"), ["payment-card-number"]);
        assert!(rules("12-4539148803436467 card").is_empty(), "part of a longer number");
        assert!(rules("AB12GB82WEST12345698765432").is_empty(), "no word boundary before the IBAN");
        assert!(
            rules("x5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ").is_empty(),
            "no word boundary before the key"
        );
    }
}
