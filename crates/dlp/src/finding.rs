//! How matched values are hidden: a finding (the type lives in the
//! `finding` crate, shared with proposals) carries a redacted snippet,
//! never the value; [`redact`] rewrites values in a buffer.

use std::ops::Range;

pub use finding::{Detector, Finding, Severity, View};

/// Mask a value: keep a short prefix when the value is long enough that the
/// prefix names the format (`ghp_…`), never more than a quarter of it.
pub fn mask(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let chars: Vec<char> = text.chars().collect();
    let keep = if chars.len() >= 16 { (chars.len() / 4).min(4) } else { 0 };
    let shown: String = chars[..keep].iter().collect();
    format!("{shown}…[{} redacted]", chars.len())
}

/// A one-line snippet of `data` around `span` with the span masked.
pub fn snippet(data: &[u8], span: &Range<usize>) -> String {
    let start =
        data[..span.start].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1).max(span.start.saturating_sub(24));
    let end = data[span.end..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| span.end + i).min(span.end + 24);
    let before = String::from_utf8_lossy(&data[start..span.start]);
    let after = String::from_utf8_lossy(&data[span.end..end]);
    let clean = |s: &str| s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
    format!("{}{}{}", clean(&before), mask(&data[span.clone()]), clean(&after))
}

/// Replace every raw-view finding's span in `data` with
/// `[REDACTED:<rule>]`. Overlapping spans are merged; derived-view findings
/// cannot be rewritten here and are returned for the caller to block on.
pub fn redact<'f>(data: &[u8], findings: &'f [Finding]) -> (Vec<u8>, Vec<&'f Finding>) {
    let mut raw: Vec<&Finding> = findings.iter().filter(|f| f.view == View::Raw).collect();
    let unrewritable = findings.iter().filter(|f| f.view != View::Raw).collect();
    raw.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    for f in raw {
        if f.span.end <= pos {
            continue;
        }
        let start = f.span.start.max(pos);
        out.extend_from_slice(&data[pos..start]);
        out.extend_from_slice(format!("[REDACTED:{}]", f.rule).as_bytes());
        pos = f.span.end;
    }
    out.extend_from_slice(&data[pos..]);
    (out, unrewritable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rule: &str, span: Range<usize>) -> Finding {
        Finding {
            detector: Detector::TokenPatterns,
            rule: rule.into(),
            span,
            view: View::Raw,
            snippet: String::new(),
            severity: Severity::Block,
        }
    }

    #[test]
    fn masks_keep_at_most_a_short_prefix() {
        assert_eq!(mask(b"ghp_abcdefghijklmnopqrstuvwxyz0123456789"), "ghp_…[40 redacted]");
        assert_eq!(mask(b"short"), "…[5 redacted]");
        let s = snippet(b"line one\nexport TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789 # ok\nnext", &(22..62));
        assert_eq!(s, "export TOKEN=ghp_…[40 redacted] # ok");
        assert!(!s.contains("abcdef"));
    }

    #[test]
    fn redacts_overlapping_spans_once() {
        let data = b"a=SECRET1 b=SECRET2";
        let findings = [f("x", 2..9), f("y", 4..9), f("z", 12..19)];
        let (out, left) = redact(data, &findings);
        assert_eq!(String::from_utf8(out).unwrap(), "a=[REDACTED:x] b=[REDACTED:z]");
        assert!(left.is_empty());
    }
}
