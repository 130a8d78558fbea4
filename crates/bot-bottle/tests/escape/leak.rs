//! Finding a secret in what reached a recorder, a log or a file, in the
//! encodings an attacker would use — written here, independently of the
//! DLP crate, so a blind spot there is not a blind spot here: the bytes as
//! they are, percent-decoded, gunzipped, every base64 or hex run decoded,
//! and the alphanumeric projection (separators between characters gone);
//! in any ASCII case.

use base64::Engine as _;

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

fn gunzip(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 2 || b[0] != 0x1f || b[1] != 0x8b {
        return None;
    }
    let mut out = Vec::new();
    // At most 64 MiB out: a bomb is not a leak.
    let mut bounded = std::io::Read::take(flate2::read::MultiGzDecoder::new(b), 64 << 20);
    std::io::Read::read_to_end(&mut bounded, &mut out).ok()?;
    Some(out)
}

/// Runs of bytes from `class` at least `min` long.
fn runs(b: &[u8], class: impl Fn(u8) -> bool, min: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &c) in b.iter().enumerate().chain(std::iter::once((b.len(), &b' '))) {
        match (class(c) && i < b.len(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= min {
                    out.push(&b[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn decoded_views(b: &[u8]) -> Vec<Vec<u8>> {
    let mut views = Vec::new();
    // With and without '/' in the alphabet: a path glues runs together.
    let with_slash = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_');
    let without = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'_');
    let runs_b64 = runs(b, with_slash, 12).into_iter().chain(runs(b, without, 12));
    for run in runs_b64 {
        for engine in
            [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
        {
            // Every alignment: something may be glued before the value.
            for skip in 0..4.min(run.len()) {
                let mut t = run[skip..].to_vec();
                if t.len() % 4 == 1 {
                    t.pop();
                }
                if let Ok(v) = engine.decode(&t) {
                    views.push(v);
                }
            }
        }
    }
    for run in runs(b, |c| c.is_ascii_hexdigit(), 16) {
        for skip in 0..2 {
            let r = &run[skip..];
            let v: Option<Vec<u8>> =
                r.chunks_exact(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect();
            if let Some(v) = v {
                views.push(v);
            }
        }
    }
    views
}

fn alnum(b: &[u8]) -> Vec<u8> {
    b.iter().copied().filter(u8::is_ascii_alphanumeric).collect()
}

/// Ignoring ASCII case: HTTP lowercases header names, and a folded secret
/// is still the secret.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether `secret` is in `data` in any of the encodings above (nested
/// once: base64 of a gzip, a percent-encoded base64, ...).
pub fn found(data: &[u8], secret: &str) -> bool {
    let s = secret.as_bytes();
    let mut views = vec![data.to_vec(), percent_decode(data)];
    if let Some(g) = gunzip(data) {
        views.push(g);
    }
    let first: Vec<Vec<u8>> = views.iter().flat_map(|v| decoded_views(v)).collect();
    views.extend(first.iter().filter_map(|v| gunzip(v)));
    views.extend(first);
    let projected = alnum(s);
    views.iter().any(|v| contains(v, s) || (projected.len() >= 16 && contains(&alnum(v), &projected)))
}

/// The harness checks itself: every encoding the attacks use is found.
pub fn self_check() {
    let secret = "pl4nted0123456789abcdef0123456789";
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x{secret}"));
    let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
    let url: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
    let split = format!("{}-{}", &secret[..16], &secret[16..]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, secret.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    for (what, data) in [
        ("raw", format!("a={secret}").into_bytes()),
        ("base64", b64.into_bytes()),
        ("hex", hex.into_bytes()),
        ("url", url.into_bytes()),
        ("split", split.into_bytes()),
        ("gzip", gz),
        ("case-folded", format!("{}: 1", secret.to_uppercase()).into_bytes()),
    ] {
        assert!(found(&data, secret), "the leak finder misses {what}");
    }
    assert!(!found(b"nothing here at all, base64 aGVsbG8gd29ybGQ=", secret));
}
