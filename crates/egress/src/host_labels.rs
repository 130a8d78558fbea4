//! Host names as a channel: on a wildcard route (`*.example.com`) the agent
//! chooses the labels under the wildcard, and each request's name reaches
//! the upstream's DNS and logs. The labels a request adds are judged as data
//! here: encoded-looking (a long random or hex run), too long, too deep, or
//! too many distinct names per minute under one parent. Findings go through
//! the route's `outbound_on_match` like any other.
//!
//! Pure: names in, findings out; the rate is a value the caller keeps.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use dlp::{Detector, Finding, Severity, View};

/// A run of `[a-z0-9]` at least this long, with letters and digits and the
/// entropy of random text, is encoded data (CDN and preview names hash in
/// shorter pieces: `d1a2b3c4d5e6f7`, `my-app-9f8e7d6c5-team`).
const RANDOM_RUN: usize = 20;
const RANDOM_ENTROPY: f64 = 3.5;
/// A run of hex digits this long is encoded data (a hash or an encoding).
const HEX_RUN: usize = 24;
/// One label this long is a carrier, whatever it holds.
const LONG_LABEL: usize = 48;
/// More added labels than this (`dualstack.n.sni.global` under
/// `*.fastly.net` is four).
const MAX_DEPTH: usize = 4;
/// All added labels together, at most.
const MAX_ADDED: usize = 96;
/// Distinct added names under one parent per minute, at most.
pub const MAX_DISTINCT_PER_MINUTE: usize = 30;
const WINDOW: Duration = Duration::from_secs(60);

/// The labels `host` adds under a wildcard `pattern` (`*.example.com`) and
/// where they are in `host`; `None` when the pattern is not a wildcard or
/// does not cover the host.
pub fn added_labels(host: &str, pattern: &str) -> Option<Range<usize>> {
    let parent = pattern.strip_prefix("*.")?;
    let h = host.strip_suffix('.').unwrap_or(host);
    let cut = h.len().checked_sub(parent.len() + 1)?;
    (h.is_char_boundary(cut) && h[cut + 1..].eq_ignore_ascii_case(parent) && h.as_bytes()[cut] == b'.')
        .then_some(0..cut)
}

/// Findings for the added labels `host[added]`, spans in `host`.
pub fn label_findings(host: &str, added: Range<usize>) -> Vec<Finding> {
    let mut out = Vec::new();
    let text = &host[added.clone()];
    let mut at = added.start;
    let mut depth = 0;
    for label in text.split('.') {
        depth += 1;
        let span = at..at + label.len();
        at += label.len() + 1;
        if label.len() >= LONG_LABEL {
            out.push(finding(host, span.clone(), "host-label-long", "a label of {} characters", label.len()));
            continue;
        }
        let mut run_at = span.start;
        for run in label.split(['-', '_']) {
            let run_span = run_at..run_at + run.len();
            run_at += run.len() + 1;
            let lower = run.to_ascii_lowercase();
            let b = lower.as_bytes();
            if b.len() >= HEX_RUN && b.iter().all(u8::is_ascii_hexdigit) {
                out.push(finding(host, run_span, "host-label-encoded", "{} hex digits in a label", b.len()));
            } else if b.len() >= RANDOM_RUN
                && b.iter().all(u8::is_ascii_alphanumeric)
                && b.iter().any(u8::is_ascii_digit)
                && b.iter().any(u8::is_ascii_alphabetic)
                && dlp::shannon(b) >= RANDOM_ENTROPY
            {
                out.push(finding(host, run_span, "host-label-encoded", "a random run of {} in a label", b.len()));
            }
        }
    }
    if depth > MAX_DEPTH {
        out.push(finding(host, added.clone(), "host-label-deep", "{} labels under the wildcard", depth));
    } else if text.len() > MAX_ADDED {
        out.push(finding(host, added, "host-label-long", "{} characters under the wildcard", text.len()));
    }
    out
}

fn finding(host: &str, span: Range<usize>, rule: &str, what: &str, n: usize) -> Finding {
    Finding {
        detector: Detector::TokenPatterns,
        rule: rule.to_string(),
        snippet: format!("{} ({})", dlp::mask(host[span.clone()].as_bytes()), what.replace("{}", &n.to_string())),
        span,
        view: View::Raw,
        severity: Severity::Block,
    }
}

/// Distinct names asked for under each wildcard parent in the last minute.
#[derive(Debug, Default)]
pub struct SubdomainRate {
    seen: std::collections::HashMap<String, VecDeque<(Instant, String)>>,
}

impl SubdomainRate {
    /// Record `added` under `parent` at `now`; the distinct names in the
    /// window, this one included.
    pub fn observe(&mut self, parent: &str, added: &str, now: Instant) -> usize {
        let q = self.seen.entry(parent.to_ascii_lowercase()).or_default();
        while q.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
            q.pop_front();
        }
        let added = added.to_ascii_lowercase();
        if !q.iter().any(|(_, a)| *a == added) {
            q.push_back((now, added));
        }
        // Bounded: past the limit the answer does not change.
        while q.len() > MAX_DISTINCT_PER_MINUTE + 1 {
            q.pop_front();
        }
        q.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(host: &str, pattern: &str) -> Vec<String> {
        let added = added_labels(host, pattern).expect("covered");
        label_findings(host, added).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn the_added_labels() {
        assert_eq!(added_labels("a.b.example.com", "*.example.com"), Some(0..3));
        assert_eq!(added_labels("A.Example.COM.", "*.example.com"), Some(0..1));
        assert_eq!(added_labels("example.com", "*.example.com"), None);
        assert_eq!(added_labels("badexample.com", "*.example.com"), None);
        assert_eq!(added_labels("api.example.com", "api.example.com"), None);
    }

    #[test]
    fn encoded_labels_are_findings() {
        let p = "*.leak.example.com";
        // base32 of a token, hex of a secret, random data
        assert_eq!(rules("m5ihaxzsgz2hcwzsozmdq3jrmjrvqmlq.leak.example.com", p), ["host-label-encoded"]);
        assert_eq!(rules("676870f5236747471b32765a386d42.leak.example.com", p), ["host-label-encoded"]);
        assert_eq!(rules("q8zr2lwp0xvn5tgk7cybm3.leak.example.com", p), ["host-label-encoded"]);
        let long = "a".repeat(50);
        assert_eq!(rules(&format!("{long}.leak.example.com"), p), ["host-label-long"]);
        assert_eq!(rules("a.b.c.d.e.leak.example.com", p), ["host-label-deep"]);
        let many = ["abcdefghij"; 10].join(".");
        assert!(rules(&format!("{many}.leak.example.com"), p).contains(&"host-label-deep".to_string()));
    }

    #[test]
    fn cdn_and_preview_names_are_not() {
        for (host, p) in [
            ("d1a2b3c4d5e6f7.cloudfront.net", "*.cloudfront.net"),
            ("dualstack.n.sni.global.fastly.net", "*.fastly.net"),
            ("my-app-9f8e7d6c5-teamname.vercel.app", "*.vercel.app"),
            ("my-bucket.s3.us-west-2.amazonaws.com", "*.amazonaws.com"),
            ("ec2-54-123-45-67.compute-1.amazonaws.com", "*.amazonaws.com"),
            ("objects.githubusercontent.com", "*.githubusercontent.com"),
            ("registry-1.docker.io", "*.docker.io"),
            ("europe-west1-docker.pkg.dev", "*.pkg.dev"),
        ] {
            assert!(rules(host, p).is_empty(), "{host}: {:?}", rules(host, p));
        }
    }

    #[test]
    fn the_rate_counts_distinct_names_per_parent_per_minute() {
        let mut r = SubdomainRate::default();
        let t = Instant::now();
        for i in 0..40 {
            r.observe("leak.example.com", &format!("chunk{i}"), t);
        }
        assert!(r.observe("leak.example.com", "chunk41", t) > MAX_DISTINCT_PER_MINUTE);
        assert_eq!(r.observe("other.example.com", "a", t), 1);
        // The same name again does not count twice; a minute later the window is empty.
        let mut r = SubdomainRate::default();
        assert_eq!(r.observe("p", "a", t), 1);
        assert_eq!(r.observe("p", "A", t), 1);
        assert_eq!(r.observe("p", "b", t + Duration::from_secs(61)), 1);
    }
}
