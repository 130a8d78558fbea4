//! The `token_patterns` detector: provider credential formats.
//!
//! Speed by construction: one Aho-Corasick pass ([`KeywordDfa`]) finds every
//! rule keyword (ASCII case-insensitive); a rule's regex then runs only in windows around
//! its keyword hits (merged per rule, so each byte is searched at most once
//! per rule). Rules without keywords run together as one `RegexSet` pass,
//! and individually only when the set says they match. Every regex is a
//! finite automaton (the `regex` crate): no backtracking, linear time.

use std::ops::Range;

use regex::bytes::RegexSet;

use crate::entropy::shannon;
use crate::finding::{Detector, Finding, Severity, View, snippet};
use crate::keywords::KeywordDfa;
use crate::rules::{Rule, RuleSet, WINDOW_BEFORE};

/// A rule set compiled for scanning.
#[derive(Debug)]
pub struct TokenScanner {
    set: RuleSet,
    keywords: Option<KeywordDfa>,
    /// For each keyword pattern, the rules it gates.
    keyword_rules: Vec<Vec<usize>>,
    keywordless: Vec<usize>,
    keywordless_set: Option<RegexSet>,
}

impl TokenScanner {
    /// A scanner for `set`.
    pub fn new(set: RuleSet) -> TokenScanner {
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut keywordless = Vec::new();
        for (i, rule) in set.rules.iter().enumerate() {
            if rule.regex.is_none() {
                continue;
            }
            if rule.keywords.is_empty() {
                keywordless.push(i);
            }
            for k in &rule.keywords {
                match patterns.iter().position(|p| p == k) {
                    Some(at) => keyword_rules[at].push(i),
                    None => {
                        patterns.push(k.clone());
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let keywords = (!patterns.is_empty()).then(|| KeywordDfa::new(&patterns));
        let keywordless_set = (!keywordless.is_empty()).then(|| {
            RegexSet::new(keywordless.iter().map(|&i| set.rules[i].regex.as_ref().map(|r| r.as_str()).unwrap_or("")))
                .expect("each pattern compiled alone")
        });
        TokenScanner { set, keywords, keyword_rules, keywordless, keywordless_set }
    }

    /// Its rules.
    pub fn rules(&self) -> &RuleSet {
        &self.set
    }

    /// Append the findings in `data` (a file at `path`, when known). A
    /// generic rule (id `generic…`) yields to any other rule that found the
    /// same value, and to an earlier generic rule.
    pub fn scan(&self, data: &[u8], path: Option<&str>, view: View, out: &mut Vec<Finding>) {
        let mut found = Vec::new();
        self.scan_all(data, path, view, &mut found);
        let generic = |f: &Finding| f.rule.starts_with("generic");
        for (i, f) in found.iter().enumerate() {
            let shadowed = generic(f)
                && !f.span.is_empty()
                && found.iter().enumerate().any(|(j, g)| {
                    j != i
                        && g.rule != f.rule
                        && (!generic(g) || j < i)
                        && g.span.start <= f.span.start
                        && f.span.end <= g.span.end
                });
            if !shadowed {
                out.push(f.clone());
            }
        }
    }

    fn scan_all(&self, data: &[u8], path: Option<&str>, view: View, out: &mut Vec<Finding>) {
        let mut windows: Vec<Vec<Range<usize>>> = vec![Vec::new(); self.set.rules.len()];
        if let Some(dfa) = &self.keywords {
            for (pattern, start, end) in dfa.find(data) {
                for &r in &self.keyword_rules[pattern] {
                    let w = start.saturating_sub(WINDOW_BEFORE)..(end + self.set.rules[r].window_after).min(data.len());
                    let list = &mut windows[r];
                    match list.last_mut() {
                        Some(last) if w.start <= last.end => last.end = last.end.max(w.end),
                        _ => list.push(w),
                    }
                }
            }
        }
        if let Some(set) = &self.keywordless_set {
            for i in set.matches(data).iter() {
                windows[self.keywordless[i]].push(0..data.len());
            }
        }
        for (r, list) in windows.iter().enumerate() {
            let rule = &self.set.rules[r];
            if list.is_empty() || !path_applies(rule, path) {
                continue;
            }
            for w in list {
                self.scan_window(rule, data, w.clone(), path, view, out);
            }
        }
        // Rules with a path and no regex flag the file itself.
        if let Some(p) = path {
            for rule in &self.set.rules {
                if rule.regex.is_none() && rule.path.as_ref().is_some_and(|re| re.is_match(p)) {
                    out.push(Finding {
                        detector: Detector::TokenPatterns,
                        rule: rule.id.clone(),
                        span: 0..0,
                        view,
                        snippet: format!("file {p}"),
                        severity: Severity::Block,
                    });
                }
            }
        }
    }

    fn scan_window(
        &self,
        rule: &Rule,
        data: &[u8],
        w: Range<usize>,
        path: Option<&str>,
        view: View,
        out: &mut Vec<Finding>,
    ) {
        let Some(re) = rule.regex.as_ref().map(|p| p.regex()) else { return };
        let hay = &data[w.clone()];
        for caps in re.captures_iter(hay) {
            let Some(whole) = caps.get(0) else { continue };
            let secret = match rule.secret_group {
                Some(g) => caps.get(g),
                None => caps.iter().skip(1).flatten().next().or(Some(whole)),
            };
            let Some(secret) = secret else { continue };
            if secret.is_empty() {
                continue;
            }
            let span = (w.start + secret.start())..(w.start + secret.end());
            let value = &data[span.clone()];
            if rule.entropy.is_some_and(|min| shannon(value) < min) {
                continue;
            }
            let whole_span = (w.start + whole.start())..(w.start + whole.end());
            let line = line_of(data, &whole_span);
            let allowed = rule.allowlists.iter().any(|a| a.allows(value, &data[whole_span.clone()], line, path))
                || self.set.global.iter().any(|a| {
                    (a.target_rules.is_empty() || a.target_rules.contains(&rule.id))
                        && a.allows(value, &data[whole_span.clone()], line, path)
                });
            if allowed {
                continue;
            }
            out.push(Finding {
                detector: Detector::TokenPatterns,
                rule: rule.id.clone(),
                snippet: snippet(data, &span),
                span,
                view,
                severity: Severity::Block,
            });
        }
    }
}

fn path_applies(rule: &Rule, path: Option<&str>) -> bool {
    match (&rule.path, path) {
        (None, _) => true,
        (Some(re), Some(p)) => re.is_match(p),
        (Some(_), None) => false,
    }
}

fn line_of<'d>(data: &'d [u8], span: &Range<usize>) -> &'d [u8] {
    let start = data[..span.start].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = data[span.end..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| span.end + i);
    &data[start..end]
}
