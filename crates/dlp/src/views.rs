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

use crate::classes::{Class, ClassRuns};
use crate::normalize::{self, changed_regions};

/// How many layers of encoding are undone (percent inside base64 inside
/// hex inside …): more than any benign data carries.
pub const MAX_DEPTH: usize = 6;

/// Alphabet runs shorter than this are not decoded: too short to hold a
/// credential (16 base64 characters are 12 bytes).
pub const MIN_RUN: usize = 16;

/// What a decoded run reveals is kept when it holds a run of printable
/// text at least this long (binary noise almost never does: 0.37^12).
const MIN_TEXT: usize = 12;

/// The most bytes all views of one input may hold together.
pub fn budget(input_len: usize) -> usize {
    input_len.saturating_mul(4).saturating_add(1 << 20)
}

/// An encoding a view undid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Unicode compatibility forms folded (NFKC).
    Unicode,
    /// Percent-encoding.
    Percent,
    /// HTML character references.
    HtmlEntities,
    /// JSON and JavaScript `\uXXXX` and `\xXX` escapes.
    JsEscapes,
    /// Quoted-printable.
    QuotedPrintable,
    /// Base64 (standard or URL alphabet).
    Base64,
    /// Base32.
    Base32,
    /// Hex (delimited or not).
    Hex,
    /// A gzip, zlib or zstd stream, inflated.
    Compressed,
}

impl Encoding {
    /// Its name in findings (`base64`).
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
    /// The decoded bytes.
    pub bytes: Vec<u8>,
    /// The encodings undone, outermost first.
    pub chain: Vec<Encoding>,
}

/// Every view of an input.
#[derive(Debug, Default)]
pub struct Views {
    /// The derived views, layer by layer (the input itself is not one).
    pub views: Vec<DecodedView>,
    /// The views would have exceeded `budget` or [`MAX_DEPTH`]: some
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
    let runs = ClassRuns::of(data, &[(Class::Base64, MIN_RUN), (Class::Hex, PAIRED_MIN), (Class::HexDigits, MIN_RUN)]);
    for run in join_wrapped(data, runs.get(Class::Base64)) {
        let kinds = RunKinds::of(&run);
        // Base64 of text mixes cases (or digits): a run of one case alone
        // (a path, a snake_case name, a constant) is not worth decoding.
        // Nor is a run of hex digits (a hash, a UUID): that is hex's.
        if kinds.has(NOT_HEX_OR_DASH)
            && kinds.has(LOWER)
            && kinds.has(UPPER | DIGIT)
            && let Some(bytes) = decode_base64(&run)
        {
            too_large |= push_revealed(&mut out, Encoding::Base64, bytes, inflate_limit);
        }
        // Base32 lives inside base64's alphabet, written in one case: its
        // runs are single-case sub-runs (camelCase names are not it).
        for case in [UPPER, LOWER] {
            if !kinds.has(case) {
                continue;
            }
            let mut from = 0;
            while let Some(sub) =
                next_run(run.len(), MIN_RUN, from, |i| RUN_KIND[run[i] as usize] & (case | B32_DIGIT) != 0)
            {
                from = sub.end + 1;
                if let Some(bytes) = decode_base32(&run[sub]) {
                    too_large |= push_revealed(&mut out, Encoding::Base32, bytes, inflate_limit);
                }
            }
        }
    }
    let mut decode_hex_digits = |digits: &[u8]| {
        if let Some(bytes) = decode_hex(digits) {
            too_large |= push_revealed(&mut out, Encoding::Hex, bytes, inflate_limit);
        }
    };
    // Delimited pairs: runs of hex digits and delimiters long enough to
    // hold eight pairs.
    for run in runs.get(Class::Hex) {
        let run = &data[run.clone()];
        let digits = run.iter().filter(|c| c.is_ascii_hexdigit()).count();
        // Eight pairs are sixteen digits with seven delimiters between
        // them (delimiters and indentation alone are most of these runs in
        // source text; digits alone, hashes, are the contiguous kind).
        if digits >= 2 * PAIRS && run.len() - digits >= PAIRS - 1 {
            for digits in paired_hex_stretches(run) {
                decode_hex_digits(&digits);
            }
        }
    }
    // Contiguous hex.
    for run in runs.get(Class::HexDigits) {
        decode_hex_digits(&data[run.clone()]);
    }
    (out, too_large)
}

/// Keep what a run decoded to: a compressed stream inflated (up to
/// `limit` bytes), otherwise its text (see [`revealed_text`]). `true`: the
/// stream inflated to more than `limit`.
fn push_revealed(out: &mut Vec<(Encoding, Vec<u8>)>, encoding: Encoding, bytes: Vec<u8>, limit: usize) -> bool {
    let mut too_large = false;
    if let Some(coding) = compression_of(&bytes) {
        match normalize::decode(&bytes, coding, limit.min(normalize::DEFAULT_MAX_BYTES)) {
            Ok(inflated) => out.push((Encoding::Compressed, inflated)),
            Err(normalize::DecodeError::TooLarge { .. }) => too_large = true,
            // Not a whole stream after all (or a raw tail): its text, if
            // any, is still a view.
            Err(_) => {}
        }
    }
    if let Some(text) = revealed_text(&bytes) {
        out.push((encoding, text));
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

/// The text decoded bytes reveal: all of them when they are text, else
/// their runs of printable ASCII at least [`MIN_TEXT`] long, one per line
/// (so binary put around a value does not hide it); `None` when there are
/// none.
fn revealed_text(b: &[u8]) -> Option<Vec<u8>> {
    let runs = text_runs(b, MIN_TEXT);
    match runs.as_slice() {
        [] => None,
        [one] if one.len() == b.len() => Some(b.to_vec()),
        many => {
            let mut out = Vec::with_capacity(many.iter().map(|r| r.len() + 1).sum());
            for r in many {
                out.extend_from_slice(&b[r.clone()]);
                out.push(b'\n');
            }
            Some(out)
        }
    }
}

// ---------------------------------------------------------------- alphabets

/// Printable ASCII, tab, CR and LF: what decoded bytes must hold a run of
/// to be text. (The run finders over whole inputs are [`ClassRuns`].)
fn is_text(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | b'\t' | b'\n' | b'\r')
}

/// Whether decoded bytes hold text (see [`revealed_text`]).
fn reveals_text(b: &[u8]) -> bool {
    next_text_run(b, MIN_TEXT, 0).is_some()
}

/// The maximal runs of text bytes at least `min` long. Sublinear on
/// binary with short runs: a run that long must contain the byte `min - 1`
/// ahead, so when that byte is not text the scan jumps past it.
fn text_runs(data: &[u8], min: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(run) = next_text_run(data, min, from) {
        from = run.end + 1;
        out.push(run);
    }
    out
}

/// The first run of [`text_runs`] starting at or after `from`.
fn next_text_run(data: &[u8], min: usize, from: usize) -> Option<Range<usize>> {
    next_run(data.len(), min, from, |i| is_text(data[i]))
}

/// The first maximal run of units `0..len` (bytes, hex pairs, base64
/// groups) for which `inside` holds, at least `min` long, starting at or
/// after `from`. Sublinear when runs are short: a run that long must
/// contain the unit `min - 1` ahead, so when that unit is outside, the scan
/// jumps past it.
fn next_run(len: usize, min: usize, from: usize, inside: impl Fn(usize) -> bool) -> Option<Range<usize>> {
    let mut i = from;
    while i + min <= len {
        let probe = i + min - 1;
        if !inside(probe) {
            i = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > i && inside(start - 1) {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < len && inside(end) {
            end += 1;
        }
        if end - start >= min {
            return Some(start..end);
        }
        i = end + 1;
    }
    None
}

/// What kinds of character a base64 run holds, found in one pass over it.
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DIGIT: u8 = 4;
/// `2`–`7`, base32's digits.
const B32_DIGIT: u8 = 8;
const NOT_HEX_OR_DASH: u8 = 16;

const RUN_KIND: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_lowercase() {
            t[c] |= LOWER;
        }
        if b.is_ascii_uppercase() {
            t[c] |= UPPER;
        }
        if b.is_ascii_digit() {
            t[c] |= DIGIT;
        }
        if matches!(b, b'2'..=b'7') {
            t[c] |= B32_DIGIT;
        }
        if !b.is_ascii_hexdigit() && b != b'-' {
            t[c] |= NOT_HEX_OR_DASH;
        }
        c += 1;
    }
    t
};

/// The union of [`RUN_KIND`] over a run.
#[derive(Clone, Copy)]
struct RunKinds(u8);

impl RunKinds {
    fn of(run: &[u8]) -> RunKinds {
        RunKinds(run.iter().fold(0, |k, &c| k | RUN_KIND[c as usize]))
    }

    /// Whether the run holds a character of any of `kinds`.
    fn has(self, kinds: u8) -> bool {
        self.0 & kinds != 0
    }
}

/// Base64 wrapped across lines (MIME's 76, PEM's 64, or any width of at
/// least 40): a run that long followed by a line break (or a JSON `\n`)
/// goes on with the next line's run, whatever its length (the last line of
/// a wrapped value is short).
fn join_wrapped<'d>(data: &'d [u8], runs: &[Range<usize>]) -> Vec<std::borrow::Cow<'d, [u8]>> {
    const WIDTH: usize = 40;
    let mut out = Vec::new();
    let mut done = 0;
    for r in runs {
        if r.start < done {
            continue;
        }
        let mut joined: std::borrow::Cow<'d, [u8]> = data[r.clone()].into();
        let (mut line, mut end) = (r.len(), r.end);
        while line >= WIDTH {
            let rest = &data[end..];
            // A real line break, or JSON's escaped one.
            let breaks: [&[u8]; 4] = [b"\r\n", b"\n", b"\\r\\n", b"\\n"];
            let Some(gap) = breaks.iter().find(|g| rest.starts_with(g)).map(|g| g.len()) else {
                break;
            };
            let next = end + gap;
            line = data[next..].iter().take_while(|&&c| crate::classes::contains(Class::Base64, c)).count();
            if line == 0 {
                break;
            }
            joined.to_mut().extend_from_slice(&data[next..next + line]);
            end = next + line;
        }
        done = end;
        out.push(joined);
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
    let norm: std::borrow::Cow<[u8]> = if run.iter().any(|c| matches!(c, b'-' | b'_')) {
        run.iter()
            .map(|&c| match c {
                b'-' => b'+',
                b'_' => b'/',
                c => c,
            })
            .collect::<Vec<u8>>()
            .into()
    } else {
        run.into()
    };
    for skip in 0..4 {
        let Some(s) = norm.get(skip..) else { break };
        let s = if s.len() % 4 == 1 { &s[..s.len() - 1] } else { s };
        if s.len() < MIN_RUN - 3 {
            break;
        }
        // Decoded only when the characters can hold text or a compressed
        // stream: random ids and names are rejected without decoding.
        if !b64_may_hold_text(s) && !b64_starts_compressed(s) {
            continue;
        }
        let Ok(bytes) = LENIENT.decode(s) else { continue };
        if compression_of(&bytes).is_some() || reveals_text(&bytes) {
            return Some(bytes);
        }
    }
    None
}

/// A base64 character's value (either alphabet).
fn b64_value(c: u8) -> u8 {
    B64_VALUE[c as usize]
}

/// [`b64_value`] as a table (it is asked of every character a decode is
/// considered for, at each alignment).
const B64_VALUE: [u8; 256] = {
    let mut t = [63u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            _ => 63,
        };
        c += 1;
    }
    t
};

/// Whether base64 characters, read from their start, can hold a run of
/// printable text: three groups in a row each of whose bytes is in
/// 0x20..0x7f ([`next_run`] on groups).
fn b64_may_hold_text(s: &[u8]) -> bool {
    const GROUPS: usize = 3;
    let printable = |g: usize| {
        let (c0, c1, c2) = (b64_value(s[4 * g]), b64_value(s[4 * g + 1]), b64_value(s[4 * g + 2]));
        (8..32).contains(&c0) && (2..8).contains(&(c1 & 15)) && (c2 & 3) <= 1
    };
    next_run(s.len() / 4, GROUPS, 0, printable).is_some()
}

/// gzip (`H4sI`), zlib (`eA`, `eF`, `eJ`, `eN`) or zstd (`KLUv`) in base64.
fn b64_starts_compressed(s: &[u8]) -> bool {
    s.starts_with(b"H4sI") || s.starts_with(b"KLUv") || matches!(s, [b'e', b'A' | b'F' | b'J' | b'N', ..])
}

/// RFC 4648 base32 (either case, padding ignored), at the first of the
/// eight alignments that reveals text.
fn decode_base32(run: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(run.len() * 5 / 8);
    for skip in 0..8 {
        let s = run.get(skip..)?;
        if s.len() < MIN_RUN {
            return None;
        }
        out.clear();
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
        if compression_of(&out).is_some() || reveals_text(&out) {
            return Some(out);
        }
    }
    None
}

/// The fewest delimited hex pairs read as a value.
const PAIRS: usize = 8;

/// The shortest run of hex digits and delimiters that can hold
/// [`PAIRS`] pairs: each two digits, a delimiter between each.
const PAIRED_MIN: usize = 3 * PAIRS - 1;

/// Hex byte pairs with a delimiter or prefix between each (`41 42`,
/// `41:42`, `41-42`, `\x41\x42`, `0x41, 0x42`): the digits of each stretch
/// of at least eight pairs. A group that is not a pair (a UUID's, a hash's,
/// a word's hex letters before the value) ends a stretch.
fn paired_hex_stretches(run: &[u8]) -> Vec<Vec<u8>> {
    let mut stretches = Vec::new();
    // Where each pair of the current stretch starts.
    let mut pairs: Vec<usize> = Vec::new();
    let mut end_group = |start: usize, len: usize, pairs: &mut Vec<usize>| match len {
        0 => {}
        2 => pairs.push(start),
        _ => {
            if pairs.len() >= PAIRS {
                stretches.push(pairs.iter().flat_map(|&p| [run[p], run[p + 1]]).collect());
            }
            pairs.clear();
        }
    };
    let (mut group, mut len) = (0, 0);
    let mut i = 0;
    while i < run.len() {
        let c = run[i];
        let prefix = matches!(run.get(i + 1), Some(b'x' | b'X')) && (c == b'\\' || (c == b'0' && len == 0));
        if prefix {
            end_group(group, len, &mut pairs);
            len = 0;
            i += 2;
        } else if c.is_ascii_hexdigit() {
            if len == 0 {
                group = i;
            }
            len += 1;
            i += 1;
        } else {
            end_group(group, len, &mut pairs);
            len = 0;
            i += 1;
        }
    }
    end_group(group, len, &mut pairs);
    // The end of the run ends the stretch as a group that is not a pair does.
    end_group(0, 1, &mut pairs);
    stretches
}

/// Hex digits (an even or odd count) decoded at the first of the two
/// alignments that can hold text or a compressed stream.
fn decode_hex(digits: &[u8]) -> Option<Vec<u8>> {
    if digits.len() < MIN_RUN {
        return None;
    }
    for skip in 0..2 {
        let d = &digits[skip..];
        // Decoded only when the digits can hold text or a compressed
        // stream: a hash or an id is rejected without decoding.
        if !hex_may_hold_text(d) && !hex_starts_compressed(d) {
            continue;
        }
        return Some(d.chunks_exact(2).map(|p| (nibble(p[0]) << 4) | nibble(p[1])).collect());
    }
    None
}

/// A hex digit's value (0 for anything else: callers pass hex digits).
fn nibble(c: u8) -> u8 {
    (c as char).to_digit(16).map_or(0, |d| d as u8)
}

/// Whether hex digit pairs hold a run of [`MIN_TEXT`] printable bytes
/// (their high digit 2–7, or tab, LF, CR): [`next_run`] on pairs.
fn hex_may_hold_text(d: &[u8]) -> bool {
    let printable = |p: usize| {
        let (h, l) = (d[2 * p], d[2 * p + 1].to_ascii_lowercase());
        matches!(h, b'2'..=b'7') || (h == b'0' && matches!(l, b'9' | b'a' | b'd'))
    };
    next_run(d.len() / 2, MIN_TEXT, 0, printable).is_some()
}

fn hex_starts_compressed(d: &[u8]) -> bool {
    let head: Vec<u8> = d.iter().take(8).map(u8::to_ascii_lowercase).collect();
    head.starts_with(b"1f8b08")
        || head.starts_with(b"28b52ffd")
        || (head.starts_with(b"78") && ["01", "5e", "9c", "da"].iter().any(|m| head[2..].starts_with(m.as_bytes())))
}

// ------------------------------------------------------- in-place escapes

/// The next `&#…` or `&name;` that may be an entity.
fn next_html_entity(data: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'&', &data[from.min(data.len())..])
        .map(|i| from + i)
        .find(|&i| html_entity(&data[i + 1..]).is_some())
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
    memchr::memchr_iter(b'\\', &data[from.min(data.len())..]).map(|i| from + i).find(|&i| match data.get(i + 1) {
        Some(b'u') => {
            data.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
                || data.get(i + 2) == Some(&b'{')
        }
        Some(b'x') => data.get(i + 2..i + 4).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
        _ => false,
    })
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
                changed = true;
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

/// The next soft line break, or pair of quoted-printable escapes (`=` and
/// two upper-case hex digits naming a printable character, twice: one
/// alone is `id=45` in a query string far more often than an encoding; a
/// value with one escaped character is still found by its registered
/// fragments).
fn next_qp_escape(data: &[u8], from: usize) -> Option<usize> {
    let escape = |i: usize| -> Option<u8> {
        match data.get(i..i + 3) {
            Some([b'=', h, l]) if is_upper_hex(*h) && is_upper_hex(*l) => {
                let v = (nibble(*h) << 4) | nibble(*l);
                (0x20..0x7f).contains(&v).then_some(v)
            }
            _ => None,
        }
    };
    memchr::memchr_iter(b'=', &data[from.min(data.len())..]).map(|i| from + i).find(|&i| {
        matches!(data.get(i + 1), Some(b'\n'))
            || data.get(i + 1..i + 3) == Some(b"\r\n")
            || (escape(i).is_some() && escape(i + 3).is_some())
    })
}

fn is_upper_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'A'..=b'F').contains(&c)
}

/// Quoted-printable undone: `=XX` escapes (either case) and soft line
/// breaks (`=` at the end of a line).
pub fn quoted_printable_decoded(data: &[u8]) -> Option<Vec<u8>> {
    normalize::hex_escapes_decoded(data, b'=', true)
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
            // Binary around the value does not hide it.
            format!(
                "x={}",
                STANDARD.encode([&[0x93u8, 0x01, 0xfe, 0x7f, 0x00, 0xc4, 0x8a][..], t, &[0xff, 0x00]].concat())
            ),
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
    fn the_shortest_hex_that_can_reveal_text_is_read() {
        // MIN_TEXT bytes: the fewest that are kept as text.
        let t = b"sk_live_1234";
        assert_eq!(t.len(), MIN_TEXT);
        for sep in [":", " ", "-", ","] {
            let pairs: Vec<String> = t.iter().map(|b| format!("{b:02x}")).collect();
            assert!(reveals(format!("v = \"{}\";", pairs.join(sep)).as_bytes(), "sk_live_1234"), "{sep:?}");
        }
        assert!(reveals(format!("v = {};", hex(t)).as_bytes(), "sk_live_1234"));
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

/// A diagnostic, not a test: what views the negative corpus makes and how
/// long they take, per file (`cargo test --release -p bot-bottle-dlp --lib
/// stats -- --ignored --nocapture`; `SHOW=<file part>` prints the views).
#[cfg(test)]
mod stats {
    #[test]
    #[ignore]
    fn view_bytes_on_the_negative_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/negatives");
        let mut by: std::collections::HashMap<String, (usize, usize)> = Default::default();
        let mut input = 0;
        let mut all = std::time::Duration::ZERO;
        for e in std::fs::read_dir(root).unwrap().flatten() {
            let data = std::fs::read(e.path()).unwrap();
            input += data.len();
            let mut el = std::time::Duration::MAX;
            for _ in 0..20 {
                let t = std::time::Instant::now();
                std::hint::black_box(super::decoded_views(&data));
                el = el.min(t.elapsed());
            }
            let v = super::decoded_views(&data);
            all += el;
            let total: usize = v.views.iter().map(|v| v.bytes.len()).sum();
            println!("{:?}: {} bytes, views {} bytes in {:?}", e.file_name(), data.len(), total, el);
            if std::env::var("SHOW").is_ok_and(|f| e.file_name().to_string_lossy().contains(&f)) {
                for view in &v.views {
                    println!(
                        "  {:?} {:?}",
                        view.chain,
                        String::from_utf8_lossy(&view.bytes[..view.bytes.len().min(120)])
                    );
                }
            }
            for view in v.views {
                let k: Vec<&str> = view.chain.iter().map(|e| e.as_str()).collect();
                let s = by.entry(k.join(">")).or_default();
                s.0 += 1;
                s.1 += view.bytes.len();
            }
        }
        println!("input {input}, views {:?} in all, {:.0} MB/s", all, input as f64 / all.as_secs_f64() / 1e6);
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1.1));
        for (k, (n, b)) in v.iter().take(20) {
            println!("{k}: {n} views, {b} bytes");
        }
    }
}
