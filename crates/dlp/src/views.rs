//! Decoded views: the encodings an agent can wrap a value in, undone where
//! they appear in a buffer, and undone again on what they reveal (chains
//! such as percent → base64 → hex, or base64 of gzip).
//!
//! Two kinds of decoder:
//! - in-place escapes — percent (repeated, one layer at a time), HTML
//!   entities, JS/JSON `\uXXXX` and `\xXX`, quoted-printable, and NFKC with
//!   invisible characters removed — undone on the lines around the bytes
//!   that trigger them (see [`normalize::changed_regions`]);
//! - alphabet encodings — base64 (both alphabets, padded or not, wrapped
//!   across lines, any alignment), base32 and hex (contiguous, or with
//!   `-`, `:`, space, comma, `\x` or `0x` between bytes) — decoded only on
//!   runs of their alphabet long enough to hold a credential, and kept only
//!   when what they reveal is text or a compressed stream (which is then
//!   inflated).
//!
//! Bounded: at most [`MAX_DEPTH`] layers, and all views together at most
//! [`budget`] bytes (a fixed multiple of the input): an input that would need
//! more is reported as [`Views::exhausted`], for the caller to refuse, never
//! passed half-scanned. Every decoder is linear in what it reads. Pure; no
//! input makes it panic.

use std::collections::HashSet;
use std::ops::Range;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::normalize::{self, changed_regions};

/// How many layers of encoding are undone (percent inside base64 inside
/// hex inside …): more than any benign data carries.
pub const MAX_DEPTH: usize = 6;

/// Alphabet runs shorter than this are not decoded: too short to hold a
/// credential (16 base64 characters are 12 bytes).
pub const MIN_RUN: usize = 16;

/// A decoded run must reveal at least this many bytes to be kept.
const MIN_DECODED: usize = 8;

/// The most bytes all views of one input may hold together.
pub fn budget(input_len: usize) -> usize {
    input_len.saturating_mul(4).saturating_add(1 << 20)
}

/// An encoding a view undid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Unicode,
    Percent,
    HtmlEntities,
    JsEscapes,
    QuotedPrintable,
    Base64,
    Base32,
    Hex,
    Compressed,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Unicode => "nfkc",
            Encoding::Percent => "percent",
            Encoding::HtmlEntities => "html-entities",
            Encoding::JsEscapes => "js-escapes",
            Encoding::QuotedPrintable => "quoted-printable",
            Encoding::Base64 => "base64",
            Encoding::Base32 => "base32",
            Encoding::Hex => "hex",
            Encoding::Compressed => "compressed",
        }
    }
}

/// One derived view: bytes, and the encodings undone to reach them
/// (outermost first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedView {
    pub bytes: Vec<u8>,
    pub chain: Vec<Encoding>,
}

/// Every view of an input.
#[derive(Debug, Default)]
pub struct Views {
    pub views: Vec<DecodedView>,
    /// The views would have exceeded [`budget`] or [`MAX_DEPTH`]: some
    /// encoding was left undone. The input cannot be said to be clean.
    pub exhausted: bool,
}

/// All decoded views of `data`, layer by layer.
pub fn decoded_views(data: &[u8]) -> Views {
    let mut out = Views::default();
    let mut left = budget(data.len());
    let mut seen: HashSet<u64> = HashSet::new();
    let mut frontier: Vec<DecodedView> = Vec::new();
    let (first, too_large) = one_layer(data, left);
    out.exhausted |= too_large;
    for (encoding, bytes) in first {
        keep(&mut out, &mut seen, &mut left, &mut frontier, DecodedView { bytes, chain: vec![encoding] });
    }
    let mut depth = 1;
    while !frontier.is_empty() && !out.exhausted {
        if depth == MAX_DEPTH {
            // One more layer was there to undo.
            out.exhausted = frontier.iter().any(|v| !one_layer(&v.bytes, left).0.is_empty());
            break;
        }
        let mut next = Vec::new();
        for view in &frontier {
            let (layer, too_large) = one_layer(&view.bytes, left);
            out.exhausted |= too_large;
            for (encoding, bytes) in layer {
                let mut chain = view.chain.clone();
                chain.push(encoding);
                keep(&mut out, &mut seen, &mut left, &mut next, DecodedView { bytes, chain });
                if out.exhausted {
                    break;
                }
            }
        }
        out.views.append(&mut frontier);
        frontier = next;
        depth += 1;
    }
    out.views.append(&mut frontier);
    out
}

fn keep(out: &mut Views, seen: &mut HashSet<u64>, left: &mut usize, next: &mut Vec<DecodedView>, view: DecodedView) {
    if out.exhausted {
        return;
    }
    if view.bytes.len() > *left {
        out.exhausted = true;
        return;
    }
    if !seen.insert(fingerprint(&view.bytes)) {
        return;
    }
    *left -= view.bytes.len();
    next.push(view);
}

fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Each decoder once over `data`; a compressed stream is inflated up to
/// `inflate_limit` bytes (`true`: one was larger).
fn one_layer(data: &[u8], inflate_limit: usize) -> (Vec<(Encoding, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    let mut too_large = false;
    type Decoder = fn(&[u8]) -> Option<Vec<u8>>;
    type Trigger = fn(&[u8], usize) -> Option<usize>;
    let in_place: [(Encoding, Decoder, Trigger); 5] = [
        (Encoding::Unicode, normalize::normalized, normalize::next_non_ascii),
        (Encoding::Percent, normalize::percent_decoded, normalize::next_percent_escape),
        (Encoding::HtmlEntities, html_entities_decoded, next_html_entity),
        (Encoding::JsEscapes, js_escapes_decoded, next_js_escape),
        (Encoding::QuotedPrintable, quoted_printable_decoded, next_qp_escape),
    ];
    for (encoding, view, trigger) in in_place {
        let soft_breaks = encoding == Encoding::QuotedPrintable;
        out.extend(changed_regions(data, view, trigger, soft_breaks).into_iter().map(|v| (encoding, v)));
    }
    let runs = alphabet_runs(data);
    for run in join_wrapped(data, &runs.base64) {
        if let Some(bytes) = decode_base64(&run) {
            too_large |= push_revealed(&mut out, Encoding::Base64, bytes, inflate_limit);
        }
        // Base32 lives inside base64's alphabet: its runs are sub-runs.
        for sub in sub_runs(&run, |c| c.is_ascii_alphabetic() || (b'2'..=b'7').contains(&c)) {
            if let Some(bytes) = decode_base32(&run[sub]) {
                too_large |= push_revealed(&mut out, Encoding::Base32, bytes, inflate_limit);
            }
        }
    }
    for run in &runs.hex {
        if let Some(bytes) = decode_hex(&data[run.clone()]) {
            too_large |= push_revealed(&mut out, Encoding::Hex, bytes, inflate_limit);
        }
    }
    (out, too_large)
}

/// Keep what a run decoded to, inflated (up to `limit` bytes) when it is a
/// compressed stream. `true`: the stream inflated to more than `limit`.
fn push_revealed(out: &mut Vec<(Encoding, Vec<u8>)>, encoding: Encoding, bytes: Vec<u8>, limit: usize) -> bool {
    let mut too_large = false;
    if let Some(coding) = compression_of(&bytes) {
        match normalize::decode(&bytes, coding, limit.min(normalize::DEFAULT_MAX_BYTES)) {
            Ok(inflated) => out.push((Encoding::Compressed, inflated)),
            Err(normalize::DecodeError::TooLarge { .. }) => too_large = true,
            // Not a whole stream after all (or a raw tail): the bytes
            // themselves are still a view.
            Err(_) => {}
        }
        out.push((encoding, bytes));
    } else if is_text(&bytes) {
        out.push((encoding, bytes));
    }
    too_large
}

/// A compressed stream's magic: gzip, zlib, zstd.
fn compression_of(b: &[u8]) -> Option<&'static str> {
    match b {
        [0x1f, 0x8b, 0x08, ..] => Some("gzip"),
        [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => Some("deflate"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        _ => None,
    }
}

/// Whether decoded bytes read as text: mostly printable ASCII (a byte or two
/// of alignment garbage at the ends allowed), or UTF-8 without controls.
pub fn is_text(b: &[u8]) -> bool {
    if b.len() < MIN_DECODED {
        return false;
    }
    let printable = b.iter().filter(|&&c| (0x20..0x7f).contains(&c) || matches!(c, b'\n' | b'\r' | b'\t')).count();
    if printable * 100 >= b.len() * 85 {
        return true;
    }
    std::str::from_utf8(b).is_ok_and(|s| !s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')))
}

// ---------------------------------------------------------------- alphabets

const B64: u8 = 1;
const HEX: u8 = 2;

/// Byte classes: `B64` for the union of both base64 alphabets, `HEX` for
/// hex digits and what may sit between hex bytes (`-`, `:`, space, comma,
/// and the `x` and `\` of `\x` / `0x`).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_') {
            t[c] |= B64;
        }
        if b.is_ascii_hexdigit() || matches!(b, b'-' | b':' | b' ' | b',' | b'x' | b'X' | b'\\') {
            t[c] |= HEX;
        }
        c += 1;
    }
    t
};

/// Hex with delimiters needs more characters for the same bytes.
const MIN_HEX_RUN: usize = MIN_RUN;

#[derive(Debug, Default)]
struct Runs {
    base64: Vec<Range<usize>>,
    hex: Vec<Range<usize>>,
}

/// Maximal runs of each class long enough to decode: one pass.
fn alphabet_runs(data: &[u8]) -> Runs {
    let mut runs = Runs::default();
    let (mut b64, mut hex) = (0usize, 0usize);
    for (i, &c) in data.iter().enumerate() {
        let k = CLASS[c as usize];
        if k & B64 == 0 {
            if i - b64 >= MIN_RUN {
                runs.base64.push(b64..i);
            }
            b64 = i + 1;
        }
        if k & HEX == 0 {
            if i - hex >= MIN_HEX_RUN {
                runs.hex.push(hex..i);
            }
            hex = i + 1;
        }
    }
    if data.len().saturating_sub(b64) >= MIN_RUN {
        runs.base64.push(b64..data.len());
    }
    if data.len().saturating_sub(hex) >= MIN_HEX_RUN {
        runs.hex.push(hex..data.len());
    }
    runs
}

/// Base64 wrapped across lines (MIME's 76, PEM's 64, or any width of at
/// least 40): a run that long followed by a line break (or a JSON `\n`)
/// goes on with the next line's run, whatever its length (the last line of
/// a wrapped value is short).
fn join_wrapped(data: &[u8], runs: &[Range<usize>]) -> Vec<Vec<u8>> {
    const WIDTH: usize = 40;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut done = 0;
    for r in runs {
        if r.start < done {
            continue;
        }
        let mut joined = data[r.clone()].to_vec();
        let (mut line, mut end) = (r.len(), r.end);
        while line >= WIDTH {
            let rest = &data[end..];
            // A real line break, or JSON's escaped one.
            let breaks: [&[u8]; 4] = [b"\r\n", b"\n", b"\\r\\n", b"\\n"];
            let Some(gap) = breaks.iter().find(|g| rest.starts_with(g)).map(|g| g.len()) else {
                break;
            };
            let next = end + gap;
            line = data[next..].iter().take_while(|&&c| CLASS[c as usize] & B64 != 0).count();
            if line == 0 {
                break;
            }
            joined.extend_from_slice(&data[next..next + line]);
            end = next + line;
        }
        done = end;
        out.push(joined);
    }
    out
}

/// Sub-runs of `run` whose bytes satisfy `inside`, at least [`MIN_RUN`] long.
fn sub_runs(run: &[u8], inside: impl Fn(u8) -> bool) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in run.iter().enumerate() {
        if !inside(c) {
            if i - start >= MIN_RUN {
                out.push(start..i);
            }
            start = i + 1;
        }
    }
    if run.len() - start >= MIN_RUN {
        out.push(start..run.len());
    }
    out
}

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Base64 in either alphabet (even mixed), at the first of the four
/// alignments that reveals text or a compressed stream.
fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    let norm: Vec<u8> = run
        .iter()
        .map(|&c| match c {
            b'-' => b'+',
            b'_' => b'/',
            c => c,
        })
        .collect();
    for skip in 0..4 {
        let Some(s) = norm.get(skip..) else { break };
        let s = if s.len() % 4 == 1 { &s[..s.len() - 1] } else { s };
        if s.len() < MIN_RUN - 3 {
            break;
        }
        let Ok(bytes) = LENIENT.decode(s) else { continue };
        if compression_of(&bytes).is_some() || is_text(&bytes) {
            return Some(bytes);
        }
    }
    None
}

/// RFC 4648 base32 (either case, padding ignored), at the first of the
/// eight alignments that reveals text.
fn decode_base32(run: &[u8]) -> Option<Vec<u8>> {
    for skip in 0..8 {
        let s = run.get(skip..)?;
        if s.len() < MIN_RUN {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() * 5 / 8);
        let (mut acc, mut bits) = (0u64, 0u32);
        for &c in s {
            let v = match c.to_ascii_uppercase() {
                u @ b'A'..=b'Z' => u - b'A',
                d @ b'2'..=b'7' => d - b'2' + 26,
                _ => return None,
            };
            acc = (acc << 5) | u64::from(v);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        if compression_of(&out).is_some() || is_text(&out) {
            return Some(out);
        }
    }
    None
}

/// Hex digits with any of the delimiters and prefixes between bytes
/// removed, at either alignment.
fn decode_hex(run: &[u8]) -> Option<Vec<u8>> {
    let mut digits = Vec::with_capacity(run.len());
    let mut i = 0;
    while i < run.len() {
        match run[i] {
            b'\\' if matches!(run.get(i + 1), Some(b'x' | b'X')) => i += 2,
            b'0' if matches!(run.get(i + 1), Some(b'x' | b'X')) => i += 2,
            b'-' | b':' | b' ' | b',' => i += 1,
            c if c.is_ascii_hexdigit() => {
                digits.push(c);
                i += 1;
            }
            // A stray `x` or `\`: not a hex encoding.
            _ => return None,
        }
    }
    if digits.len() < MIN_RUN {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map_or(0, |d| d as u8);
    for skip in 0..2 {
        let bytes: Vec<u8> = digits[skip..].chunks_exact(2).map(|p| nibble(p[0]) << 4 | nibble(p[1])).collect();
        if compression_of(&bytes).is_some() || is_text(&bytes) {
            return Some(bytes);
        }
    }
    None
}

// ------------------------------------------------------- in-place escapes

/// The next `&#…` or `&name;` that may be an entity.
fn next_html_entity(data: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'&', &data[from.min(data.len())..])
        .map(|i| from + i)
        .find(|&i| data.get(i + 1).is_some_and(|&c| c == b'#' || c.is_ascii_alphabetic()))
}

/// Named entities for the characters credentials and URLs are made of.
const NAMED: [(&str, char); 36] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", ' '),
    ("lowbar", '_'),
    ("UnderBar", '_'),
    ("period", '.'),
    ("colon", ':'),
    ("sol", '/'),
    ("bsol", '\\'),
    ("equals", '='),
    ("plus", '+'),
    ("hyphen", '-'),
    ("dash", '-'),
    ("num", '#'),
    ("excl", '!'),
    ("quest", '?'),
    ("commat", '@'),
    ("lsqb", '['),
    ("rsqb", ']'),
    ("lcub", '{'),
    ("rcub", '}'),
    ("dollar", '$'),
    ("percnt", '%'),
    ("ast", '*'),
    ("comma", ','),
    ("semi", ';'),
    ("tilde", '~'),
    ("grave", '`'),
    ("Hat", '^'),
    ("verbar", '|'),
    ("lpar", '('),
    ("rpar", ')'),
    ("Tab", '\t'),
];

/// HTML character references undone: decimal and hex (the `;` optional, as
/// browsers read them) and the named ones above.
pub fn html_entities_decoded(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut changed = false;
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'&'
            && let Some((c, used)) = html_entity(&data[i + 1..])
        {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            changed = true;
            i += 1 + used;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// The character an entity after `&` names, and the bytes it used.
fn html_entity(rest: &[u8]) -> Option<(char, usize)> {
    if let Some(num) = rest.strip_prefix(b"#") {
        let (radix, digits_at) = if matches!(num.first(), Some(b'x' | b'X')) { (16, 2) } else { (10, 1) };
        let digits = rest[digits_at..].iter().take(8).take_while(|c| (**c as char).is_digit(radix)).count();
        if digits == 0 {
            return None;
        }
        let text = std::str::from_utf8(&rest[digits_at..digits_at + digits]).ok()?;
        let c = char::from_u32(u32::from_str_radix(text, radix).ok()?)?;
        let semi = usize::from(rest.get(digits_at + digits) == Some(&b';'));
        return Some((c, digits_at + digits + semi));
    }
    let name_len = rest.iter().take(9).take_while(|c| c.is_ascii_alphabetic()).count();
    if rest.get(name_len) != Some(&b';') {
        return None;
    }
    let name = std::str::from_utf8(&rest[..name_len]).ok()?;
    NAMED.iter().find(|(n, _)| *n == name).map(|&(_, c)| (c, name_len + 1))
}

/// The next `\u` or `\x` escape.
fn next_js_escape(data: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\\', &data[from.min(data.len())..])
        .map(|i| from + i)
        .find(|&i| matches!(data.get(i + 1), Some(b'u' | b'x')))
}

/// JS/JSON string escapes undone: `\uXXXX` (surrogate pairs joined),
/// `\u{…}`, `\xXX`, and the one-character escapes beside them.
pub fn js_escapes_decoded(data: &[u8]) -> Option<Vec<u8>> {
    let hex_at = |at: usize, n: usize| -> Option<u32> {
        let s = std::str::from_utf8(data.get(at..at + n)?).ok()?;
        if s.bytes().all(|b| b.is_ascii_hexdigit()) { u32::from_str_radix(s, 16).ok() } else { None }
    };
    let mut out = Vec::with_capacity(data.len());
    let mut changed = false;
    let mut i = 0;
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    while i < data.len() {
        if data[i] != b'\\' {
            out.push(data[i]);
            i += 1;
            continue;
        }
        match data.get(i + 1) {
            Some(b'u') if data.get(i + 2) == Some(&b'{') => {
                let digits = data[i + 3..].iter().take(7).take_while(|c| c.is_ascii_hexdigit()).count();
                if let Some(c) = hex_at(i + 3, digits).and_then(char::from_u32)
                    && digits > 0
                    && data.get(i + 3 + digits) == Some(&b'}')
                {
                    push(&mut out, c);
                    changed = true;
                    i += 4 + digits;
                    continue;
                }
            }
            Some(b'u') => {
                if let Some(hi) = hex_at(i + 2, 4) {
                    if (0xD800..0xDC00).contains(&hi)
                        && data.get(i + 6..i + 8) == Some(b"\\u")
                        && let Some(lo) = hex_at(i + 8, 4).filter(|lo| (0xDC00..0xE000).contains(lo))
                    {
                        let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
                        push(&mut out, c.unwrap_or('\u{FFFD}'));
                        changed = true;
                        i += 12;
                        continue;
                    }
                    push(&mut out, char::from_u32(hi).unwrap_or('\u{FFFD}'));
                    changed = true;
                    i += 6;
                    continue;
                }
            }
            Some(b'x') => {
                if let Some(v) = hex_at(i + 2, 2) {
                    out.push(v as u8);
                    changed = true;
                    i += 4;
                    continue;
                }
            }
            Some(&c @ (b'/' | b'"' | b'\'' | b'\\')) => {
                out.push(c);
                i += 2;
                continue;
            }
            Some(b'n') => {
                out.push(b'\n');
                i += 2;
                continue;
            }
            Some(b't') => {
                out.push(b'\t');
                i += 2;
                continue;
            }
            _ => {}
        }
        out.push(b'\\');
        i += 1;
    }
    changed.then_some(out)
}

/// The next `=XX` or soft line break.
fn next_qp_escape(data: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'=', &data[from.min(data.len())..]).map(|i| from + i).find(|&i| {
        matches!(data.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
            || matches!(data.get(i + 1), Some(b'\n'))
            || data.get(i + 1..i + 3) == Some(b"\r\n")
    })
}

/// Quoted-printable undone: `=XX` escapes (either case) and soft line
/// breaks (`=` at the end of a line).
pub fn quoted_printable_decoded(data: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(data.len());
    let mut changed = false;
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'=' {
            if let (Some(h), Some(l)) = (data.get(i + 1).and_then(|&b| hex(b)), data.get(i + 2).and_then(|&b| hex(b))) {
                out.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
            if data.get(i + 1) == Some(&b'\n') {
                changed = true;
                i += 2;
                continue;
            }
            if data.get(i + 1..i + 3) == Some(b"\r\n") {
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const TOKEN: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

    fn reveals(data: &[u8], needle: &str) -> bool {
        decoded_views(data).views.iter().any(|v| v.bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }

    fn hex(s: &[u8]) -> String {
        s.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn b32(data: &[u8]) -> String {
        const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::new();
        let (mut acc, mut bits) = (0u32, 0);
        for &b in data {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(A[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(A[((acc << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    #[test]
    fn each_encoding_alone() {
        let t = TOKEN.as_bytes();
        let cases = [
            format!("x={}", STANDARD.encode(t)),
            format!("x={}", URL_SAFE_NO_PAD.encode(format!("id:{TOKEN}"))),
            format!("q=z{}", STANDARD.encode(t)), // misaligned by one
            format!("label.{}.example.com", b32(t).to_lowercase()),
            format!("x={}", hex(t)),
            format!("x={}", hex(t).to_uppercase()),
            t.iter().map(|b| format!("\\x{b:02x}")).collect(),
            t.iter().map(|b| format!("0x{b:02x}, ")).collect(),
            t.iter().map(|b| format!("{b:02x}:")).collect(),
            t.iter().map(|b| format!("{b:02x}-")).collect(),
            t.iter().map(|b| format!("{b:02x} ")).collect(),
            t.iter().map(|b| format!("&#{b};")).collect(),
            t.iter().map(|b| format!("&#x{b:x}")).collect(),
            "ghp&lowbar;R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio".to_string(),
            t.iter().map(|b| format!("\\u{b:04x}")).collect(),
            t.iter().map(|b| format!("={b:02X}")).collect(),
            "ghp_R6tqk2vZ8mBc=\r\nX1pLw9sJ4nHd0yFa7uEe3Qio".to_string(),
        ];
        for case in cases {
            assert!(reveals(case.as_bytes(), TOKEN), "{case}");
        }
    }

    #[test]
    fn chains_and_wrapping() {
        let t = TOKEN.as_bytes();
        // percent → base64 → hex
        let inner = STANDARD.encode(hex(t));
        let outer: String = inner.bytes().map(|b| format!("%{b:02X}")).collect();
        assert!(reveals(outer.as_bytes(), TOKEN));
        // double percent
        let twice: String = t.iter().map(|b| format!("%25{b:02X}")).collect();
        assert!(reveals(twice.as_bytes(), TOKEN));
        // base64 of gzip
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, format!("token={TOKEN}").as_bytes()).unwrap();
        let b64 = STANDARD.encode(gz.finish().unwrap());
        assert!(reveals(format!("{{\"data\":\"{b64}\"}}").as_bytes(), TOKEN));
        // base64 wrapped at 40 and at 76, with CRLF and with JSON's \n
        let long = format!("{TOKEN} {TOKEN} {TOKEN}");
        let enc = STANDARD.encode(&long);
        for (width, sep) in [(40, "\n"), (76, "\r\n"), (44, "\\n")] {
            let wrapped: Vec<&str> = enc.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
            assert!(reveals(wrapped.join(sep).as_bytes(), &long), "{width}");
        }
        // Four layers: hex(base64(base32(percent(token)))).
        let pct: String = t.iter().map(|b| format!("%{b:02X}")).collect();
        let layered = hex(STANDARD.encode(b32(pct.as_bytes())).as_bytes());
        assert!(reveals(layered.as_bytes(), TOKEN));
    }

    #[test]
    fn clean_inputs_make_no_views() {
        for clean in [
            &b"fn main() { println!(\"hello, world\"); }"[..],
            b"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            b"550e8400-e29b-41d4-a716-446655440000",
            b"integrity sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+5MNnMU4D7g8O1Gpq4E+Gxoxjy3hbKe2CdOYV0g==",
            b"getElementsByTagNameNS and createDocumentFragment",
        ] {
            let v = decoded_views(clean);
            assert!(v.views.is_empty(), "{}: {:?}", String::from_utf8_lossy(clean), v.views);
        }
    }

    #[test]
    fn deep_nesting_is_bounded_and_reported() {
        // Base64 of base64 of … twelve deep: more layers than MAX_DEPTH.
        let mut s = format!("token={TOKEN}").into_bytes();
        for _ in 0..12 {
            s = STANDARD.encode(&s).into_bytes();
        }
        let v = decoded_views(&s);
        assert!(v.exhausted);
        assert!(v.views.len() <= MAX_DEPTH * 4);
        // A bomb inside base64: inflated only up to the scan limit, and the
        // views together stay within the budget.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &vec![b'a'; 8 << 20]).unwrap();
        let bomb = STANDARD.encode(gz.finish().unwrap());
        let v = decoded_views(bomb.as_bytes());
        let total: usize = v.views.iter().map(|v| v.bytes.len()).sum();
        assert!(total <= budget(bomb.len()), "{total}");
        assert!(v.exhausted);
    }

    #[test]
    fn escapes_decode_exactly() {
        assert_eq!(html_entities_decoded(b"a&amp;b&#65;&#x42;&lowbar;&bogus;&"), Some(b"a&bAB_&bogus;&".to_vec()));
        assert_eq!(
            js_escapes_decoded(br#"\u0041\x42\ud83d\ude00\u{43}\q"#),
            Some("AB\u{1F600}C\\q".as_bytes().to_vec())
        );
        assert_eq!(quoted_printable_decoded(b"a=3Db=\nc=\r\nd==x"), Some(b"a=bcd==x".to_vec()));
        assert_eq!(js_escapes_decoded(b"\\u12"), None);
    }
}
