//! The `entropy` detector (opt-in, warn-only): runs of token characters
//! whose Shannon entropy is at least 5.5 bits per character over a window.

use crate::finding::{Detector, Finding, Severity, View, snippet};

/// Shannon entropy of `bytes`, in bits per byte.
pub fn shannon(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

pub const THRESHOLD: f64 = 5.5;
const WINDOW: usize = 64;

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
}

/// Warn on every run of token characters with a high-entropy window.
pub fn scan(data: &[u8], view: View, out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < data.len() {
        if !token_byte(data[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < data.len() && token_byte(data[i]) {
            i += 1;
        }
        let run = &data[start..i];
        if run.len() < WINDOW {
            continue;
        }
        let hot = (0..=run.len() - WINDOW).step_by(WINDOW / 2).any(|o| shannon(&run[o..o + WINDOW]) >= THRESHOLD)
            || shannon(&run[run.len() - WINDOW..]) >= THRESHOLD;
        if hot {
            let span = start..i;
            out.push(Finding {
                detector: Detector::Entropy,
                rule: "high-entropy".to_string(),
                snippet: snippet(data, &span),
                span,
                view,
                severity: Severity::Warn,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert!((shannon(b"ab") - 1.0).abs() < 1e-9);
        let all: Vec<u8> = (0..64u8)
            .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i as usize])
            .collect();
        assert!((shannon(&all) - 6.0).abs() < 1e-9);
    }

    #[test]
    fn warns_on_random_base64_not_on_prose_or_hex() {
        let mut out = Vec::new();
        scan(b"key: Kx9/Qm2+Lr7Zt4Wb8Nc1Vy5Hs3Ja6Pd0Fg+Ue/TiXoRkEwMqYnBlCvGzSpDhAf9817263542", View::Raw, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Warn);
        out.clear();
        scan(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123", View::Raw, &mut out);
        scan(b"the_quick_brown_fox_jumps_over_the_lazy_dog_again_and_again_and_again", View::Raw, &mut out);
        assert!(out.is_empty());
    }
}
