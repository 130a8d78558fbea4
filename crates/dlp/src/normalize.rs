//! Views of the input that defeat trivial evasion: NFKC with invisible
//! characters removed, and bodies decoded from their `Content-Encoding`
//! (gzip, deflate, br, zstd) under a size bound that also stops
//! decompression bombs.

use std::io::Read;

use unicode_normalization::UnicodeNormalization;

/// Bodies larger than this (raw or decoded) are not scanned: they are
/// refused as "too large to scan", never passed.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Zero-width, bidi control, invisible operator and tag characters.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

/// The text with invisible characters removed and NFKC applied, when that
/// changes anything; `None` for pure ASCII or non-UTF-8 input.
pub fn normalized(data: &[u8]) -> Option<Vec<u8>> {
    if data.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let quick = unicode_normalization::is_nfkc_quick(text.chars());
    if quick == unicode_normalization::IsNormalized::Yes && !text.chars().any(is_invisible) {
        return None;
    }
    let out: String = text.chars().filter(|c| !is_invisible(*c)).nfkc().collect();
    (out.as_bytes() != data).then(|| out.into_bytes())
}

/// How far around a trigger byte a derived view reaches: far enough for any
/// credential, bounded so long minified lines are not transformed whole.
const REGION_BEFORE: usize = 512;
const REGION_AFTER: usize = 2048;

/// The regions of `data` that `view` changes, each in its changed form.
/// `trigger(data, from)` finds the next byte at or after `from` that may
/// make a difference; a region is its line, clipped to a window around the
/// trigger (merged with the next when they touch). With `soft_breaks`, a
/// line ending in `=` goes on with the next (quoted-printable's soft line
/// break), within the same window. Only those regions are transformed,
/// which keeps derived views off the hot path for ordinary text.
pub fn changed_regions(
    data: &[u8],
    view: fn(&[u8]) -> Option<Vec<u8>>,
    trigger: fn(&[u8], usize) -> Option<usize>,
    soft_breaks: bool,
) -> Vec<Vec<u8>> {
    let mut regions: Vec<std::ops::Range<usize>> = Vec::new();
    let mut from = 0;
    while let Some(at) = trigger(data, from) {
        let lo = at.saturating_sub(REGION_BEFORE);
        let hi = (at + REGION_AFTER).min(data.len());
        let start = memchr::memrchr(b'\n', &data[lo..at]).map_or(lo, |i| lo + i + 1);
        let mut end = memchr::memchr(b'\n', &data[at..hi]).map_or(hi, |i| at + i + 1);
        while soft_breaks && end < hi && (data[..end].ends_with(b"=\n") || data[..end].ends_with(b"=\r\n")) {
            end = memchr::memchr(b'\n', &data[end..hi]).map_or(hi, |i| end + i + 1);
        }
        // Whole UTF-8 characters only.
        let start = (start..=at).find(|&i| i == data.len() || (data[i] as i8) >= -0x40).unwrap_or(at);
        let end = (end..=data.len()).find(|&i| i == data.len() || (data[i] as i8) >= -0x40).unwrap_or(data.len());
        match regions.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => regions.push(start..end),
        }
        from = end.max(at + 1);
    }
    regions.into_iter().filter_map(|r| view(&data[r])).collect()
}

/// The next non-ASCII byte (which NFKC or invisible-character removal may change).
pub fn next_non_ascii(data: &[u8], from: usize) -> Option<usize> {
    const BLOCK: usize = 64;
    let mut at = from;
    while at < data.len() {
        let end = (at + BLOCK).min(data.len());
        if !data[at..end].is_ascii() {
            return data[at..end].iter().position(|b| !b.is_ascii()).map(|i| at + i);
        }
        at = end;
    }
    None
}

/// The next `%XX` escape.
pub fn next_percent_escape(data: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'%', &data[from.min(data.len())..]).map(|i| from + i).find(|&i| {
        data.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && data.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    })
}

/// The bytes with every `%XX` escape decoded, when there is one: however a
/// value was percent-encoded (`%5F` for `_` included), it reappears here.
pub fn percent_decoded(data: &[u8]) -> Option<Vec<u8>> {
    hex_escapes_decoded(data, b'%', false)
}

/// Every `<marker>XX` escape (hex, either case) decoded; with
/// `soft_breaks`, a marker ending a line (quoted-printable's soft line
/// break) joins it to the next. `None` when nothing changed.
pub fn hex_escapes_decoded(data: &[u8], marker: u8, soft_breaks: bool) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(data.len());
    let mut changed = false;
    let mut i = 0;
    while i < data.len() {
        if data[i] == marker {
            if let (Some(h), Some(l)) = (data.get(i + 1).and_then(|&b| hex(b)), data.get(i + 2).and_then(|&b| hex(b))) {
                out.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
            let soft = match data.get(i + 1..) {
                Some([b'\n', ..]) => 2,
                Some([b'\r', b'\n', ..]) => 3,
                _ => 0,
            };
            if soft_breaks && soft > 0 {
                changed = true;
                i += soft;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// Why a body's content encoding could not be undone (a finding: it is
/// never passed unscanned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Decoded, it would exceed the bound.
    #[error("body is larger than {limit} bytes after decoding ({encoding}); too large to scan")]
    TooLarge {
        /// The content encoding.
        encoding: String,
        /// The bound, in bytes.
        limit: usize,
    },
    /// It is not what its encoding says.
    #[error("body is not valid {encoding}: {message}")]
    Corrupt {
        /// The content encoding.
        encoding: String,
        /// Why.
        message: String,
    },
    /// An encoding the scanner cannot undo (its name).
    #[error("unknown content-encoding '{0}'; cannot scan it")]
    Unknown(String),
}

/// The content codings [`decode`] undoes (`""` and `identity` change nothing).
pub const CONTENT_CODINGS: [&str; 7] = ["", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"];

/// Undo a `Content-Encoding` header value (encodings applied in order, so
/// undone in reverse). At most `limit` decoded bytes. Bytes after the end of
/// a compressed stream are an error: an upstream may read them, so the scan
/// must not skip them.
pub fn decode(data: &[u8], content_encoding: &str, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut current = data.to_vec();
    for encoding in content_encoding.split(',').map(|e| e.trim().to_ascii_lowercase()).rev() {
        let corrupt = |message: String| DecodeError::Corrupt { encoding: encoding.clone(), message };
        current = match encoding.as_str() {
            "" | "identity" => continue,
            "gzip" | "x-gzip" => {
                let mut d = flate2::bufread::MultiGzDecoder::new(&current[..]);
                let out = read_bounded(&mut d, &encoding, limit)?;
                whole(d.into_inner(), &corrupt)?;
                out
            }
            "deflate" => {
                // RFC 9110 says zlib-wrapped; some servers send raw deflate.
                let mut z = flate2::bufread::ZlibDecoder::new(&current[..]);
                match read_bounded(&mut z, &encoding, limit) {
                    Ok(out) => {
                        whole(z.into_inner(), &corrupt)?;
                        out
                    }
                    Err(DecodeError::TooLarge { .. }) => return Err(DecodeError::TooLarge { encoding, limit }),
                    Err(_) => {
                        let mut raw = flate2::bufread::DeflateDecoder::new(&current[..]);
                        let out = read_bounded(&mut raw, &encoding, limit)?;
                        whole(raw.into_inner(), &corrupt)?;
                        out
                    }
                }
            }
            "br" => {
                // The writer refuses input after the end of the stream.
                let mut out = Vec::new();
                let mut w = brotli_decompressor::DecompressorWriter::new(Bounded { out: &mut out, limit }, 4096);
                let wrote = std::io::Write::write_all(&mut w, &current).and_then(|_| w.close());
                drop(w);
                if out.len() > limit {
                    return Err(DecodeError::TooLarge { encoding, limit });
                }
                wrote.map_err(|e| corrupt(e.to_string()))?;
                out
            }
            "zstd" => {
                // Frames one after another, and nothing else.
                let mut rest = &current[..];
                let mut out = Vec::new();
                while !rest.is_empty() {
                    let decoder =
                        ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| corrupt(e.to_string()))?;
                    out.extend(read_bounded(decoder, &encoding, limit - out.len())?);
                }
                out
            }
            other => return Err(DecodeError::Unknown(other.to_string())),
        };
    }
    Ok(current)
}

/// A compressed stream's input must end where the stream does.
fn whole(rest: &[u8], corrupt: &dyn Fn(String) -> DecodeError) -> Result<(), DecodeError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(corrupt(format!("{} byte(s) after the end of the compressed stream", rest.len())))
    }
}

/// A sink that takes at most `limit` bytes (one more, to tell "too large").
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() > self.limit {
            return Err(std::io::Error::other("too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_bounded(reader: impl Read, encoding: &str, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt { encoding: encoding.to_string(), message: e.to_string() })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { encoding: encoding.to_string(), limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn strips_invisibles_and_folds_compatibility_forms() {
        assert_eq!(normalized(b"plain ascii"), None);
        let fancy = "ｇｈｐ＿abc\u{200B}def\u{202E}";
        assert_eq!(normalized(fancy.as_bytes()).unwrap(), b"ghp_abcdef");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decoded(b"a%5Fb%2fc%zz%4"), Some(b"a_b/c%zz%4".to_vec()));
        assert_eq!(percent_decoded(b"100% sure"), None);
    }

    #[test]
    fn decodes_each_encoding_and_refuses_bombs() {
        let body = b"hello hello hello".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode(&gz, "gzip", 1 << 20).unwrap(), body);
        // Bytes after the end of the stream are refused, whatever the coding.
        let mut tail = gz.clone();
        tail.extend(b"TOKEN=raw tail");
        assert!(matches!(decode(&tail, "gzip", 1 << 20), Err(DecodeError::Corrupt { .. })));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).unwrap();
        assert_eq!(decode(&z.finish().unwrap(), "deflate", 1 << 20).unwrap(), body);
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &body[..], &mut br, &Default::default()).unwrap();
        assert_eq!(decode(&br, "br", 1 << 20).unwrap(), body);
        let zs = ruzstd::encoding::compress_to_vec(&body[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decode(&zs, "zstd", 1 << 20).unwrap(), body);
        // gzip inside br, as the header lists them.
        let mut both = Vec::new();
        brotli::BrotliCompress(&mut &gz[..], &mut both, &Default::default()).unwrap();
        assert_eq!(decode(&both, "gzip, br", 1 << 20).unwrap(), body);

        // Each coding, with a raw tail after its stream: refused.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&body).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(decode(&raw, "deflate", 1 << 20).unwrap(), body);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).unwrap();
        let z = z.finish().unwrap();
        for (stream, coding) in [(&z, "deflate"), (&raw, "deflate"), (&br, "br"), (&zs, "zstd")] {
            let mut tail = stream.clone();
            tail.extend(b"TOKEN=raw tail");
            assert!(
                matches!(decode(&tail, coding, 1 << 20), Err(DecodeError::Corrupt { .. })),
                "{coding}: {:?}",
                decode(&tail, coding, 1 << 20).map(|d| d.len())
            );
        }
        // Two zstd frames, one after the other, are one body.
        let two = [zs.clone(), zs.clone()].concat();
        assert_eq!(decode(&two, "zstd", 1 << 20).unwrap(), [body.clone(), body.clone()].concat());

        let bomb = vec![0u8; 64 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bomb).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 200_000);
        assert!(matches!(decode(&gz, "gzip", DEFAULT_MAX_BYTES), Err(DecodeError::TooLarge { .. })));
        assert!(matches!(decode(b"not gzip", "gzip", 100), Err(DecodeError::Corrupt { .. })));
        assert!(matches!(decode(b"x", "compress", 100), Err(DecodeError::Unknown(_))));
    }
}
