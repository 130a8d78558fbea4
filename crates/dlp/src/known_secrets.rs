//! The `known_secrets` detector: the actual values this bottle's sidecar
//! holds, found raw and in the encodings an agent reaches for first —
//! base64 (standard and URL-safe, every alignment, padded or not),
//! URL-encoding, hex (both cases), reversed, ROT13 — and fragmented: with separators between
//! characters removed (the alphanumeric projection), any window of 16
//! characters of a secret.
//!
//! Registration takes a [`Secret`]; the variants live only inside the
//! automata and are never logged. The [`Canary`] is a minted secret whose
//! any appearance outbound is exfiltration.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secret::Secret;

use crate::finding::{Detector, Finding, Severity, View, mask};

/// Fragment windows: any run of this many alphanumerics of a secret.
pub const FRAGMENT: usize = 16;
/// Variants shorter than this are not searched (they would match noise).
const MIN_VARIANT: usize = 8;

/// The values a bottle's DLP knows (tokens, forwarded variables, the canary), found as sent and in the variants an agent could make of them.
#[derive(Default)]
pub struct KnownSecrets {
    /// (name, value) of each registered secret; the name is what findings say.
    secrets: Vec<(String, Secret<String>)>,
    exact: Option<(AhoCorasick, Vec<(usize, &'static str)>)>,
    fragments: Option<(AhoCorasick, Vec<usize>)>,
}

impl std::fmt::Debug for KnownSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownSecrets").field("names", &self.names()).finish_non_exhaustive()
    }
}

impl KnownSecrets {
    /// None yet.
    pub fn new() -> KnownSecrets {
        KnownSecrets::default()
    }

    /// Register a value under a name (`EGRESS_TOKEN_1`, `env:GH_TOKEN`,
    /// `canary`): findings name it, never show it. Empty values are ignored.
    pub fn register(&mut self, name: &str, value: &Secret<String>) {
        if value.expose().is_empty() {
            return;
        }
        self.secrets.push((name.to_string(), value.clone()));
        self.rebuild();
    }

    /// The names registered.
    pub fn names(&self) -> Vec<&str> {
        self.secrets.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    fn rebuild(&mut self) {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut meta: Vec<(usize, &'static str)> = Vec::new();
        let mut frag_patterns: Vec<Vec<u8>> = Vec::new();
        let mut frag_meta = Vec::new();
        for (i, (_, value)) in self.secrets.iter().enumerate() {
            for (encoding, variant) in variants(value.expose().as_bytes()) {
                if variant.len() >= MIN_VARIANT && !patterns.contains(&variant) {
                    patterns.push(variant);
                    meta.push((i, encoding));
                }
            }
            let projected: Vec<u8> = value.expose().bytes().filter(u8::is_ascii_alphanumeric).collect();
            let windows: Vec<&[u8]> =
                if projected.len() >= FRAGMENT { projected.windows(FRAGMENT).collect() } else { vec![&projected[..]] };
            for w in windows {
                if w.len() >= MIN_VARIANT && !frag_patterns.iter().any(|p| p == w) {
                    frag_patterns.push(w.to_vec());
                    frag_meta.push(i);
                }
            }
        }
        // Case-insensitive: HTTP lowercases header names, DNS folds host
        // names, and an agent can fold a value on purpose; a secret with
        // its case changed is still the secret.
        let build = |p: &[Vec<u8>]| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .ascii_case_insensitive(true)
                .build(p)
                .expect("plain byte strings")
        };
        self.exact = (!patterns.is_empty()).then(|| (build(&patterns), meta));
        self.fragments = (!frag_patterns.is_empty()).then(|| (build(&frag_patterns), frag_meta));
    }

    /// Append findings for every registered value in `data`.
    pub fn scan(&self, data: &[u8], view: View, out: &mut Vec<Finding>) {
        let mut covered: Vec<std::ops::Range<usize>> = Vec::new();
        if let Some((ac, meta)) = &self.exact {
            for m in ac.find_overlapping_iter(data) {
                let (i, encoding) = meta[m.pattern().as_usize()];
                let span = m.start()..m.end();
                if covered.iter().any(|c| c.start <= span.start && span.end <= c.end) {
                    continue;
                }
                covered.push(span.clone());
                out.push(self.finding(i, encoding, span, data, view));
            }
        }
        let Some((ac, meta)) = &self.fragments else {
            return;
        };
        // The alphanumeric projection, with each byte's original offset.
        let mut projected = Vec::with_capacity(data.len());
        let mut offsets = Vec::with_capacity(data.len());
        for (at, &b) in data.iter().enumerate() {
            if b.is_ascii_alphanumeric() {
                projected.push(b);
                offsets.push(at);
            }
        }
        for m in ac.find_overlapping_iter(&projected) {
            let span = offsets[m.start()]..offsets[m.end() - 1] + 1;
            if covered.iter().any(|c| c.start < span.end && span.start < c.end) {
                continue;
            }
            covered.push(span.clone());
            out.push(self.finding(meta[m.pattern().as_usize()], "fragment", span, data, view));
        }
    }

    fn finding(&self, i: usize, encoding: &str, span: std::ops::Range<usize>, data: &[u8], view: View) -> Finding {
        let name = &self.secrets[i].0;
        Finding {
            detector: Detector::KnownSecrets,
            rule: if name == Canary::NAME { "canary".to_string() } else { format!("known-secret:{encoding}") },
            snippet: format!("{name} ({encoding}): {}", mask(&data[span.clone()])),
            span,
            view,
            severity: Severity::Block,
        }
    }
}

/// Every encoding of `value` that is searched for, tagged with its name.
fn variants(value: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("raw", value.to_vec())];
    for (name, padded, unpadded) in
        [("base64", &STANDARD, &STANDARD_NO_PAD), ("base64url", &URL_SAFE, &URL_SAFE_NO_PAD)]
    {
        out.push((name, padded.encode(value).into_bytes()));
        // Inside a longer base64 stream the value starts at byte offset 0, 1
        // or 2 of a 3-byte group; only whole groups of its own bytes encode
        // the same whatever surrounds them.
        for skip in 0..3 {
            if value.len() > skip {
                let body = &value[skip..];
                let whole = body.len() / 3 * 3;
                out.push((name, unpadded.encode(&body[..whole]).into_bytes()));
            }
        }
    }
    let url: String = value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    // The matcher ignores ASCII case: `%2f` and `%2F`, `AB` and `ab` alike.
    if url.as_bytes() != value {
        out.push(("url", url.into_bytes()));
    }
    out.push(("hex", value.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()));
    // Two disguises that need no tool at all: the value backwards, and
    // ROT13 (the decoded views find them inside the encodings above too).
    out.push(("reversed", value.iter().rev().copied().collect()));
    out.push(("rot13", value.iter().map(|&b| rot13(b)).collect()));
    out
}

fn rot13(b: u8) -> u8 {
    match b {
        b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
        b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
        _ => b,
    }
}

/// A canary: a random secret under a random variable name, planted in the
/// agent's environment and registered with [`KnownSecrets`].
pub struct Canary {
    /// The variable's name in the agent's environment.
    pub variable: String,
    /// The value.
    pub value: Secret<String>,
}

impl Canary {
    /// The name a canary is registered under.
    pub const NAME: &'static str = "canary";

    /// A fresh canary from the system's random source.
    pub fn mint() -> Result<Canary, getrandom::Error> {
        const PREFIXES: &[&str] = &["DEPLOY", "SERVICE", "INTERNAL", "BACKUP", "LEGACY", "ADMIN", "CI", "RELEASE"];
        const SUFFIXES: &[&str] = &["TOKEN", "API_KEY", "SECRET", "ACCESS_KEY", "PASSWORD"];
        let mut bytes = [0u8; 48];
        getrandom::fill(&mut bytes)?;
        let alnum =
            |b: u8| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(b % 62) as usize] as char;
        let tag: String = bytes[2..6].iter().map(|&b| alnum(b).to_ascii_uppercase()).collect();
        let variable = format!(
            "{}_{}_{}",
            PREFIXES[bytes[0] as usize % PREFIXES.len()],
            tag.replace(|c: char| c.is_ascii_digit(), "X"),
            SUFFIXES[bytes[1] as usize % SUFFIXES.len()]
        );
        let value: String = bytes[8..48].iter().map(|&b| alnum(b)).collect();
        Ok(Canary { variable, value: Secret::new(value) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(value: &str) -> KnownSecrets {
        let mut k = KnownSecrets::new();
        k.register("env:TOKEN", &Secret::new(value.to_string()));
        k
    }

    fn found(k: &KnownSecrets, data: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        k.scan(data, View::Raw, &mut out);
        out
    }

    const VALUE: &str = "tok_9fQ2xLm7Pz4Rk8Wv3Jn6Bh1Cs5Dt0";

    #[test]
    fn raw_hex_url() {
        let k = known(VALUE);
        assert_eq!(found(&k, format!("x={VALUE}&y").as_bytes())[0].rule, "known-secret:raw");
        let hex: String = VALUE.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(found(&k, hex.as_bytes())[0].rule, "known-secret:hex");
        assert_eq!(found(&k, hex.to_lowercase().as_bytes())[0].rule, "known-secret:hex");
        let k2 = known("p@ss/word+with spaces&more");
        assert_eq!(found(&k2, b"q=p%40ss%2Fword%2Bwith%20spaces%26more")[0].rule, "known-secret:url");
        assert_eq!(found(&k2, b"q=p%40ss%2fword%2bwith%20spaces%26more")[0].rule, "known-secret:url");
    }

    #[test]
    fn reversed_and_rot13() {
        let k = known(VALUE);
        let reversed: String = VALUE.chars().rev().collect();
        assert_eq!(found(&k, format!("x={reversed}").as_bytes())[0].rule, "known-secret:reversed");
        let rot13: String = VALUE.bytes().map(|b| super::rot13(b) as char).collect();
        assert_ne!(rot13, VALUE);
        assert_eq!(found(&k, format!("x={rot13}").as_bytes())[0].rule, "known-secret:rot13");
    }

    #[test]
    fn a_value_with_its_case_changed_is_still_found() {
        // HTTP lowercases header names; an agent can fold case on purpose.
        let k = known(VALUE);
        assert_eq!(found(&k, format!("{}: 1", VALUE.to_lowercase()).as_bytes())[0].rule, "known-secret:raw");
        assert_eq!(found(&k, VALUE.to_uppercase().as_bytes())[0].rule, "known-secret:raw");
        let split = format!("{}-{}", &VALUE[..16].to_lowercase(), &VALUE[16..].to_uppercase());
        assert_eq!(found(&k, split.as_bytes())[0].rule, "known-secret:fragment");
    }

    #[test]
    fn base64_at_every_alignment_inside_longer_streams() {
        let k = known(VALUE);
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            for suffix in ["", "x", "xy", "xyz"] {
                let payload = format!("{prefix}{VALUE}{suffix}");
                for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD] {
                    let enc = engine.encode(&payload);
                    let f = found(&k, format!("data: {enc}").as_bytes());
                    assert!(!f.is_empty(), "{prefix}|{suffix}: {enc}");
                }
            }
        }
    }

    #[test]
    fn fragments_with_separators() {
        let k = known(VALUE);
        let spaced: String = VALUE.chars().flat_map(|c| [c, ' ']).collect();
        let f = found(&k, spaced.as_bytes());
        assert_eq!(f[0].rule, "known-secret:fragment");
        let dashed: String = VALUE[..20].chars().flat_map(|c| [c, '-', '.']).collect();
        assert_eq!(found(&k, dashed.as_bytes()).len(), 1);
        // Fifteen characters are not enough to say.
        assert!(found(&k, &VALUE.as_bytes()[..15]).is_empty());
    }

    #[test]
    fn findings_never_show_the_value() {
        let k = known(VALUE);
        let f = &found(&k, VALUE.as_bytes())[0];
        assert!(!f.snippet.contains(&VALUE[4..]), "{}", f.snippet);
        assert!(!format!("{k:?}").contains(VALUE));
    }

    #[test]
    fn canary_is_random_and_found() {
        let a = Canary::mint().unwrap();
        let b = Canary::mint().unwrap();
        assert_ne!(a.value.expose(), b.value.expose());
        assert_eq!(a.value.expose().len(), 40);
        assert!(a.variable.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{}", a.variable);
        let mut k = KnownSecrets::new();
        k.register(Canary::NAME, &a.value);
        assert_eq!(found(&k, a.value.expose().as_bytes())[0].rule, "canary");
    }
}
