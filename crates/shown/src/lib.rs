//! Text an agent wrote, made safe to show on the operator's terminal:
//! proposal text in the console and `supervise --once`, and a headless
//! agent's output relayed to a terminal. A control character (C0, DEL, C1)
//! or a bidirectional override would let the agent drive the terminal —
//! set the clipboard (OSC 52), retitle the window, return the cursor and
//! rewrite what the operator reads — so each is shown escaped (`\r`,
//! `\u{1b}`), never sent. One set of rules, used everywhere agent text
//! reaches the operator.
//!
//! Not here: colour and layout (the binary's console), or what the text
//! means (the servers that received it).

#![forbid(unsafe_code)]

/// Whether `c` must not reach a terminal as itself.
fn hazardous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(c: char, out: &mut String) {
    out.extend(c.escape_default());
}

/// One line: every hazardous character escaped, newlines and tabs too (a
/// summary row cannot become two rows, or overwrite itself).
pub fn line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hazardous(c) { escape(c, &mut out) } else { out.push(c) }
    }
    out
}

/// A block of lines: newlines and tabs kept, every other hazardous
/// character escaped.
pub fn block(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hazardous(c) && c != '\n' && c != '\t' { escape(c, &mut out) } else { out.push(c) }
    }
    out
}

/// [`block`] over a byte stream that arrives in pieces (a UTF-8 character
/// may be split between two); bytes that are not UTF-8 become U+FFFD.
#[derive(Debug, Default)]
pub struct ShownStream {
    carry: Vec<u8>,
}

impl ShownStream {
    /// What to write for `bytes`, holding back an unfinished character.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(&block(s));
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(&block(std::str::from_utf8(good).unwrap_or_default()));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{fffd}');
                            rest = &bad[n..];
                        }
                        // An unfinished character: wait for the rest.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }

    /// What is left at the end (an unfinished character).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.carry);
        if rest.is_empty() { String::new() } else { "\u{fffd}".to_string() }
    }
}

/// Relays agent bytes to one of this process's outputs: shown (through a
/// [`ShownStream`]) when that output is a terminal, as they are otherwise
/// (a pipe or a file keeps the exact bytes, for scripts).
pub struct Relay {
    shown: Option<ShownStream>,
}

impl Relay {
    /// For stdout (`false`) or stderr (`true`); `raw` relays as they are
    /// whatever the output is (a TTY session: the terminal is the agent's).
    pub fn new(stderr: bool, raw: bool) -> Relay {
        use std::io::IsTerminal as _;
        let terminal = if stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
        Relay { shown: (terminal && !raw).then(ShownStream::default) }
    }

    /// Write `bytes` to `sink` (the output this relay was made for) and flush.
    pub fn write(&mut self, sink: &mut dyn std::io::Write, bytes: &[u8]) {
        let _ = match &mut self.shown {
            Some(s) => sink.write_all(s.push(bytes).as_bytes()),
            None => sink.write_all(bytes),
        };
        let _ = sink.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_control_is_shown_not_sent() {
        // The red team's: the clipboard (OSC 52), the title, CR + clear-line.
        let osc52 = "ok\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}";
        assert_eq!(line(osc52), "ok\\u{1b}]52;c;ZWNobyBwd25lZA==\\u{7}");
        let title = "\u{1b}]0;innocent\u{7}allow pypi.org";
        assert!(!line(title).contains('\u{1b}') && !line(title).contains('\u{7}'));
        let rewrite = "allow evil.example.com\r\u{1b}[2Kallow pypi.org";
        assert_eq!(line(rewrite), "allow evil.example.com\\r\\u{1b}[2Kallow pypi.org");
        // C1 CSI, DEL, bidi overrides, newlines in one line.
        for c in ['\u{9b}', '\u{7f}', '\u{202e}', '\u{2066}', '\n', '\t', '\u{8}'] {
            assert!(!line(&format!("a{c}b")).contains(c), "{c:?}");
        }
        assert_eq!(line("plain text — ünïcode ok"), "plain text — ünïcode ok");
        // A block keeps its lines.
        assert_eq!(block("a\n\tb\r\u{1b}[1A"), "a\n\tb\\r\\u{1b}[1A");
    }

    #[test]
    fn a_stream_split_anywhere_shows_the_same() {
        let text = "héllo \u{1b}[31mred\u{1b}[0m\r\nnext ✓ \u{9b}2J end";
        let whole = block(text);
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut s = ShownStream::default();
            let got = s.push(&bytes[..cut]) + &s.push(&bytes[cut..]) + &s.finish();
            assert_eq!(got, whole, "cut at {cut}");
        }
        let mut s = ShownStream::default();
        assert_eq!(s.push(b"a\x9bb\xff"), "a\u{fffd}b\u{fffd}");
        assert_eq!(s.push(&"é".as_bytes()[..1]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
