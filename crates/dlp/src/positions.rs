//! Credential positions: the places in an HTTP request where credentials
//! go — `Authorization`, `X-Api-Key` and the other `*-key` / `*-token` /
//! `*-secret` headers, cookies, and query or form keys such as `token` or
//! `api_key` — and whether a value there is one.
//!
//! An agent in a bottle holds no real credential (the sidecar injects
//! them), so a credential-shaped value in such a position is exfiltration
//! unless it is the bottle's placeholder, whatever provider format it has
//! or lacks. "Credential-shaped": long enough, from a token alphabet, with
//! letters and digits and the entropy of a random string. Names and values
//! only: knows nothing of requests or routes. Pure.

use std::ops::Range;

use crate::entropy::shannon;
use crate::finding::{Detector, Finding, Severity, View, snippet};

/// The rule id every finding here carries.
pub const RULE: &str = "credential-position";

/// What the agent holds where a credential would be: the sidecar puts the
/// real one in place of it.
pub const PLACEHOLDER: &str = "bot-bottle-placeholder";

/// Shorter values are not credentials (nor useful exfiltration per request).
const MIN_LEN: usize = 16;
/// Shannon entropy (bits per character) of a random token of that length
/// and up; English words and identifiers stay below it.
const MIN_ENTROPY: f64 = 3.2;

/// Whether a header carries credentials by its name (any case).
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    // Chosen by the client stack, never by the agent's secrets.
    if n.starts_with("sec-") || n.contains("idempotency") {
        return false;
    }
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "apikey" | "api-key" | "private-token")
        || ["-key", "_key", "-token", "_token", "-secret", "_secret", "-password", "-passwd", "-auth", "-signature"]
            .iter()
            .any(|s| n.ends_with(s))
}

/// Whether a query or form key names a credential (any case; `-` and `_`
/// alike). Exact names only: `page_token` and `next_key` are cursors.
pub fn is_credential_param(key: &str) -> bool {
    let k: String = key.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_lowercase() }).collect();
    matches!(
        k.as_str(),
        "key"
            | "apikey"
            | "api_key"
            | "token"
            | "access_token"
            | "accesstoken"
            | "auth"
            | "auth_token"
            | "authtoken"
            | "id_token"
            | "refresh_token"
            | "secret"
            | "client_secret"
            | "secret_key"
            | "private_key"
            | "private_token"
            | "password"
            | "passwd"
            | "pwd"
            | "pass"
            | "session"
            | "sessionid"
            | "session_id"
            | "sig"
            | "signature"
            | "bearer"
            | "jwt"
            | "credential"
            | "credentials"
    )
}

/// Whether `value` is shaped like a credential (and is not the placeholder).
pub fn credential_shaped(value: &[u8]) -> bool {
    let v = trim_quotes(value);
    if v.len() < MIN_LEN || v.len() > 4096 || holds_placeholder(v) {
        return false;
    }
    let token_char = |c: &u8| c.is_ascii_alphanumeric() || b"-_.=:/+~%!@#$^*".contains(c);
    if !v.iter().all(token_char) {
        return false;
    }
    // A UUID is an id, not a credential.
    if is_uuid(v) {
        return false;
    }
    v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_alphabetic) && shannon(v) >= MIN_ENTROPY
}

/// Whether a value carries the placeholder (alone, or inside a JWT-shaped
/// one the host login writes).
fn holds_placeholder(v: &[u8]) -> bool {
    v.windows(PLACEHOLDER.len()).any(|w| w == PLACEHOLDER.as_bytes())
}

fn trim_quotes(v: &[u8]) -> &[u8] {
    let v = v.trim_ascii();
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

/// Findings for a header value in a credential position: the value after
/// an auth scheme (`Bearer`, `token`, …), or for `Basic`, the decoded
/// password. Spans are in `value`. `Cookie` goes to [`scan_cookie`].
pub fn scan_header(name: &str, value: &[u8], out: &mut Vec<Finding>) {
    if name.eq_ignore_ascii_case("cookie") {
        return scan_cookie(value, out);
    }
    if !is_credential_header(name) {
        return;
    }
    let (scheme, rest) = split_scheme(value);
    if scheme.is_some_and(|s| s.eq_ignore_ascii_case(b"basic")) {
        use base64::Engine;
        let cred = base64::engine::general_purpose::STANDARD.decode(rest.trim_ascii()).unwrap_or_default();
        let password = cred.iter().position(|&c| c == b':').map(|i| &cred[i + 1..]).unwrap_or_default();
        if password.len() >= 8 && !holds_placeholder(password) {
            out.push(finding(value, offset(value, rest)..value.len(), View::Raw));
        }
        return;
    }
    let start = offset(value, rest);
    let v = &value[start..];
    if credential_shaped(v) {
        out.push(finding(value, start..value.len(), View::Raw));
    }
}

/// `Scheme rest`, when the value starts with an auth scheme word.
fn split_scheme(value: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let v = value.trim_ascii_start();
    match v.iter().position(|&c| c == b' ') {
        Some(i) if i > 0 && v[..i].iter().all(u8::is_ascii_alphabetic) && i <= 16 => {
            (Some(&v[..i]), v[i + 1..].trim_ascii_start())
        }
        _ => (None, v),
    }
}

fn offset(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize).min(whole.len())
}

/// The `key=value` pairs of `text` split at any of `separators`: each key
/// and the span of its value in `text` (pairs without `=` skipped).
fn pairs<'t>(text: &'t [u8], separators: &'static [u8]) -> impl Iterator<Item = (&'t [u8], Range<usize>)> {
    let mut at = 0;
    text.split(move |c| separators.contains(c)).filter_map(move |pair| {
        let start = at;
        at += pair.len() + 1;
        let eq = pair.iter().position(|&c| c == b'=')?;
        Some((&pair[..eq], start + eq + 1..start + pair.len()))
    })
}

/// Each `name=value` of a `Cookie` header whose value is credential-shaped.
pub fn scan_cookie(value: &[u8], out: &mut Vec<Finding>) {
    for (_, span) in pairs(value, b";") {
        if credential_shaped(&value[span.clone()]) {
            out.push(finding(value, span, View::Raw));
        }
    }
}

/// Each `key=value` of a query string or form body (`&`- or `;`-separated,
/// percent-encoded keys decoded) whose key names a credential and whose
/// value is credential-shaped. Spans are in `text`.
pub fn scan_params(text: &[u8], out: &mut Vec<Finding>) {
    for (key, span) in pairs(text, b"&;") {
        let key = crate::normalize::percent_decoded(key).unwrap_or_else(|| key.to_vec());
        let key = String::from_utf8_lossy(&key).replace('+', " ");
        if !is_credential_param(key.trim()) {
            continue;
        }
        let raw = &text[span.clone()];
        let value = crate::normalize::percent_decoded(raw).unwrap_or_else(|| raw.to_vec());
        if credential_shaped(&value) {
            out.push(finding(text, span, View::Raw));
        }
    }
}

fn finding(data: &[u8], span: Range<usize>, view: View) -> Finding {
    Finding {
        detector: Detector::TokenPatterns,
        rule: RULE.to_string(),
        snippet: snippet(data, &span),
        span,
        view,
        severity: Severity::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Vec<String> {
        let mut out = Vec::new();
        scan_header(name, value.as_bytes(), &mut out);
        out.iter().map(|f| value[f.span.clone()].to_string()).collect()
    }

    fn params(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        scan_params(text.as_bytes(), &mut out);
        out.iter().map(|f| text[f.span.clone()].to_string()).collect()
    }

    const RANDOM: &str = "q8Zr2LwP0xVn5TgK7cYb";

    #[test]
    fn random_values_in_credential_headers_are_findings() {
        assert_eq!(header("X-Api-Key", RANDOM), [RANDOM]);
        assert_eq!(header("x-goog-api-key", RANDOM), [RANDOM]);
        assert_eq!(header("Authorization", &format!("Bearer {RANDOM}")), [RANDOM]);
        assert_eq!(header("X-Upload-Token", RANDOM), [RANDOM]);
        assert_eq!(header("X-Client-Secret", RANDOM), [RANDOM]);
        // Basic: the decoded password decides.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("me:hunter2-but-longer");
        assert_eq!(header("Authorization", &format!("Basic {basic}")), [basic]);
        // Cookies, one pair at a time.
        assert_eq!(header("Cookie", &format!("theme=dark; x={RANDOM}; lang=en")), [RANDOM]);
    }

    #[test]
    fn what_is_not_a_credential() {
        assert!(header("X-Api-Key", PLACEHOLDER).is_empty());
        assert!(header("Authorization", &format!("Bearer {PLACEHOLDER}")).is_empty());
        assert!(header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==").is_empty());
        assert!(header("Idempotency-Key", RANDOM).is_empty());
        assert!(header("X-Api-Key", "550e8400-e29b-41d4-a716-446655440000").is_empty());
        assert!(header("X-Request-Id", RANDOM).is_empty());
        assert!(header("X-Api-Key", "short1").is_empty());
        assert!(header("X-Api-Key", "aaaaaaaaaaaaaaaaaaaaaaaa1").is_empty());
        assert!(header("Cookie", "theme=dark; lang=en-GB; consent=yes_all_cookies").is_empty());
    }

    #[test]
    fn credential_params() {
        assert_eq!(params(&format!("q=rust&api_key={RANDOM}&page=2")), [RANDOM]);
        assert_eq!(params(&format!("access-token={RANDOM}")), [RANDOM]);
        assert_eq!(params(&format!("%74oken={RANDOM}")), [RANDOM]);
        assert!(params(&format!("page_token={RANDOM}&q={RANDOM}")).is_empty());
        assert!(params(&format!("token={PLACEHOLDER}")).is_empty());
        assert!(params("token=abc").is_empty());
    }
}
