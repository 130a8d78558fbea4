//! What a detector reports: which detector, which rule, where in which
//! view of the input, a snippet with the value masked, and how sure it is.
//!
//! The vocabulary the detectors (`dlp`), the egress proxy, git-gate and the
//! operator's proposals share; a crate of its own so that a proposal can
//! carry findings without depending on the detectors. Types only: finding,
//! masking and redacting are `dlp`'s.

#![forbid(unsafe_code)]

use std::ops::Range;

use serde::Serialize;

/// Which detector produced a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Provider token formats and keyword rules (gitleaks-format rules).
    TokenPatterns,
    /// The bottle's own values (tokens, forwarded env, the canary), in any
    /// encoding.
    KnownSecrets,
    /// High-entropy strings.
    Entropy,
    /// Seed phrases, WIF keys, card numbers, IBANs (by checksum).
    Crypto,
    /// Prompt injection in what comes back.
    Injection,
    /// Not a detector: the input could not be scanned (too large, a
    /// decompression bomb, a corrupt encoding). Always blocks.
    Unscannable,
}

impl Detector {
    /// The detector's name as manifests and logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::TokenPatterns => "token_patterns",
            Detector::KnownSecrets => "known_secrets",
            Detector::Entropy => "entropy",
            Detector::Crypto => "crypto",
            Detector::Injection => "injection",
            Detector::Unscannable => "unscannable",
        }
    }
}

/// How sure a detector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Log a warning; let the data through.
    Warn,
    /// Apply the policy (block, redact, supervise).
    Block,
}

/// Which view of the input the span refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The bytes as given: the span can be rewritten in place.
    Raw,
    /// After NFKC and removing invisible characters, or after decoding a
    /// `Content-Encoding`: the span is in that derived text, so the value
    /// cannot be rewritten in the original and must be blocked instead.
    Derived,
}

/// One match: where, by what, and a masked snippet (never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What found it.
    pub detector: Detector,
    /// The rule id (`github-pat`, `known-secret:base64`, `canary`, …).
    pub rule: String,
    /// Byte span of the matched value in the view.
    pub span: Range<usize>,
    /// Which view `span` is in.
    pub view: View,
    /// The match with its value masked: safe to log and show.
    pub snippet: String,
    /// Whether it is applied or only warned about.
    pub severity: Severity,
}
