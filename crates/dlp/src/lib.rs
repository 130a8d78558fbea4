//! Data-loss prevention for bottles: one detector engine for the egress
//! proxy (requests out, responses in) and git-gate (pushed commits), so a
//! secret that cannot leave by HTTPS cannot leave by `git push` either.
//!
//! Owns: the detectors (`token_patterns`, `known_secrets` with the canary,
//! `entropy`, `crypto`, `injection`), rules as data in the gitleaks format,
//! normalisation (NFKC, invisible characters, content encodings, size
//! bounds), findings and redaction.
//!
//! No I/O: every function takes bytes and returns findings. Knows nothing of
//! HTTP, git, files or where a secret came from.

// Allowed only at the calls into the SIMD byte classifiers (`classes.rs`).
#![deny(unsafe_code)]

mod classes;
mod crypto;
mod entropy;
mod finding;
mod injection;
mod keywords;
mod known_secrets;
mod normalize;
pub mod positions;
mod rules;
mod token_patterns;
mod views;

pub use entropy::shannon;
pub use finding::{Detector, Finding, Severity, View, mask, redact};
pub use injection::{COMBINATION, HIDDEN, MARKER, cuts_stream, defuse, must_block};
pub use keywords::KeywordDfa;
pub use known_secrets::{Canary, KnownSecrets};
pub use normalize::{CONTENT_CODINGS, DEFAULT_MAX_BYTES, DecodeError, decode, normalized, percent_decoded};
pub use positions::PLACEHOLDER;
pub use rules::{Rule, RuleError, RuleSet};
pub use token_patterns::TokenScanner;
pub use views::{DecodedView, Encoding, MAX_DEPTH, Views, decoded_views};

/// Which outbound detectors run, and the size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions {
    /// Provider token formats (gitleaks' rules).
    pub token_patterns: bool,
    /// The values the sidecar knows.
    pub known_secrets: bool,
    /// Runs of token characters with high Shannon entropy (opt-in, warn-only).
    pub entropy: bool,
    /// Card numbers, IBANs, WIF keys and BIP-39 phrases.
    pub crypto: bool,
    /// Larger inputs are a finding ("too large to scan"), never a pass.
    pub max_bytes: usize,
}

impl Default for ScanOptions {
    /// The manifest default: `token_patterns`, `known_secrets`, `crypto`.
    fn default() -> Self {
        ScanOptions {
            token_patterns: true,
            known_secrets: true,
            entropy: false,
            crypto: true,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl ScanOptions {
    /// From manifest detector names (`outbound_detectors`); unknown names
    /// are returned as the error.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<ScanOptions, String> {
        // Exactly the names given: none on by default here.
        let mut o = ScanOptions {
            token_patterns: false,
            known_secrets: false,
            entropy: false,
            crypto: false,
            ..ScanOptions::default()
        };
        for name in names {
            match name.as_ref() {
                "token_patterns" => o.token_patterns = true,
                "known_secrets" => o.known_secrets = true,
                "entropy" => o.entropy = true,
                "crypto" => o.crypto = true,
                other => return Err(other.to_string()),
            }
        }
        Ok(o)
    }
}

/// The outbound scanner: compiled rules, registered secrets, options.
#[derive(Debug)]
pub struct Scanner {
    tokens: std::sync::Arc<TokenScanner>,
    known: std::sync::Arc<KnownSecrets>,
    options: ScanOptions,
}

impl Scanner {
    /// `known` may be shared (an `Arc`) by the scanners of several routes.
    pub fn new(rules: RuleSet, known: impl Into<std::sync::Arc<KnownSecrets>>, options: ScanOptions) -> Scanner {
        Scanner::with_tokens(std::sync::Arc::new(TokenScanner::new(rules)), known, options)
    }

    /// A scanner over rules already compiled: scanners with different
    /// options (one per route) share one `TokenScanner`.
    pub fn with_tokens(
        tokens: std::sync::Arc<TokenScanner>,
        known: impl Into<std::sync::Arc<KnownSecrets>>,
        options: ScanOptions,
    ) -> Scanner {
        Scanner { tokens, known: known.into(), options }
    }

    /// The built-in rules, no registered secrets, default detectors.
    pub fn builtin() -> Scanner {
        Scanner::new(RuleSet::builtin().clone(), KnownSecrets::new(), ScanOptions::default())
    }

    /// The options it scans with.
    pub fn options(&self) -> ScanOptions {
        self.options
    }

    /// Its token rules.
    pub fn rules(&self) -> &RuleSet {
        self.tokens.rules()
    }

    /// Scan one buffer (a file at `path`, when known): the raw bytes, then
    /// every decoded view of it ([`decoded_views`]: escapes, base64, base32,
    /// hex, compressed streams, and chains of them), with every detector. A
    /// value found only in a decoded view is reported in [`View::Derived`],
    /// its span within that view. Encodings nested deeper than the views
    /// undo are a finding ("too-deep"), never a pass.
    pub fn scan(&self, data: &[u8], path: Option<&str>) -> Vec<Finding> {
        if data.len() > self.options.max_bytes {
            return vec![too_large(data.len(), self.options.max_bytes)];
        }
        let mut out = Vec::new();
        self.scan_view(data, path, View::Raw, &mut out);
        let mut seen: Vec<(String, Vec<u8>)> =
            out.iter().map(|f| (f.rule.clone(), data[f.span.clone()].to_vec())).collect();
        let views = decoded_views(data);
        for view in &views.views {
            let mut derived = Vec::new();
            self.scan_view(&view.bytes, path, View::Derived, &mut derived);
            for f in derived {
                let key = (f.rule.clone(), view.bytes[f.span.clone()].to_vec());
                if !seen.contains(&key) {
                    seen.push(key);
                    let chain: Vec<&str> = view.chain.iter().map(|e| e.as_str()).collect();
                    out.push(Finding { snippet: format!("{} (decoded: {})", f.snippet, chain.join(" → ")), ..f });
                }
            }
        }
        if views.exhausted {
            out.push(Finding {
                detector: Detector::Unscannable,
                rule: "too-deep".to_string(),
                span: 0..0,
                view: View::Raw,
                snippet: format!(
                    "encodings nested deeper than {MAX_DEPTH} layers, or decoding to more than the scan bound; cannot scan it"
                ),
                severity: Severity::Block,
            });
        }
        out
    }

    /// Scan a body sent with `content_encoding`: the bytes as sent, and
    /// decoded (bounded). A body that cannot be decoded whole, or is too
    /// large, is a finding.
    pub fn scan_body(&self, data: &[u8], content_encoding: Option<&str>) -> Vec<Finding> {
        match content_encoding.map(str::trim).filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity")) {
            None => self.scan(data, None),
            Some(encoding) => {
                let mut findings = self.scan(data, None);
                match decode(data, encoding, self.options.max_bytes) {
                    Ok(decoded) => findings
                        .extend(self.scan(&decoded, None).into_iter().map(|f| Finding { view: View::Derived, ..f })),
                    Err(e) => findings.push(unscannable(&e)),
                }
                findings
            }
        }
    }

    fn scan_view(&self, data: &[u8], path: Option<&str>, view: View, out: &mut Vec<Finding>) {
        if self.options.token_patterns {
            self.tokens.scan(data, path, view, out);
        }
        if self.options.known_secrets {
            self.known.scan(data, view, out);
        } else {
            // The canary is exfiltration beyond doubt: found on every route,
            // whatever its detectors say.
            let mut found = Vec::new();
            self.known.scan(data, view, &mut found);
            out.extend(found.into_iter().filter(|f| f.rule == Canary::NAME));
        }
        if self.options.entropy {
            entropy::scan(data, view, out);
        }
        if self.options.crypto {
            crypto::scan(data, view, out);
        }
    }
}

/// Scan a response body for prompt injection (invisible characters are
/// examined by the detector itself).
pub fn scan_inbound(data: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    injection::scan(data, View::Raw, &mut out);
    out
}

fn too_large(len: usize, limit: usize) -> Finding {
    Finding {
        detector: Detector::Unscannable,
        rule: "too-large".to_string(),
        span: 0..0,
        view: View::Raw,
        snippet: format!("{len} bytes is more than the {limit}-byte scan limit; too large to scan"),
        severity: Severity::Block,
    }
}

fn unscannable(e: &DecodeError) -> Finding {
    Finding {
        detector: Detector::Unscannable,
        rule: match e {
            DecodeError::TooLarge { .. } => "too-large",
            DecodeError::Corrupt { .. } => "corrupt-encoding",
            DecodeError::Unknown(_) => "unknown-encoding",
        }
        .to_string(),
        span: 0..0,
        view: View::Raw,
        snippet: e.to_string(),
        severity: Severity::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::ScanOptions;

    #[test]
    fn detector_names_mean_exactly_those_detectors() {
        let o = ScanOptions::from_names(&["token_patterns"]).unwrap();
        assert!(o.token_patterns && !o.known_secrets && !o.entropy && !o.crypto);
        let none = ScanOptions::from_names::<&str>(&[]).unwrap();
        assert!(!none.token_patterns && !none.known_secrets && !none.entropy && !none.crypto);
        let d = ScanOptions::default();
        assert!(d.token_patterns && d.known_secrets && d.crypto && !d.entropy);
        assert_eq!(ScanOptions::from_names(&["magic"]), Err("magic".to_string()));
    }
}
