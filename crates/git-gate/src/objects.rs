//! The object scan: what a push introduces, object by object, as the
//! upstream will store it — not as `git log -p` chooses to show it.
//!
//! `git rev-list --objects <tips> --not --all` names every new object;
//! `git cat-file --batch` hands each over. Commits and tags are scanned as
//! their raw text (every header: author, committer, tagger, extra headers,
//! and the whole message, past a NUL); trees by their entry names (a file
//! or directory name is a channel); blobs whole, binary included, in
//! overlapping windows so no size is too large — except those the log
//! already showed as a text diff, whose added lines the diff scan read
//! with their line numbers.
//!
//! [`ObjectScan`] is pure (objects in, findings out); [`Git::for_each_object`]
//! runs git.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use dlp::{Finding, Scanner, Severity};
use proposal::PushFinding;

use crate::push_scan::{ALLOW_MARKERS, Git, GitError, PushReport};

/// What a path shows as when the path itself holds a finding (the report
/// reaches the agent, the log and the operator: never the value).
pub const HIDDEN_PATH: &str = "(a name that itself holds a finding)";

/// A name (a path, a ref) as a report or a log line may show it: itself,
/// unless it holds a finding.
pub fn shown(scanner: &Scanner, name: &str) -> String {
    if scanner.scan(name.as_bytes(), None).iter().any(|f| f.severity == Severity::Block) {
        HIDDEN_PATH.to_string()
    } else {
        name.to_string()
    }
}

/// The kinds of object git stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A commit.
    Commit,
    /// An annotated tag.
    Tag,
    /// A tree: a directory listing.
    Tree,
    /// A blob: a file's content.
    Blob,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "commit" => Some(Kind::Commit),
            "tag" => Some(Kind::Tag),
            "tree" => Some(Kind::Tree),
            "blob" => Some(Kind::Blob),
            _ => None,
        }
    }
}

/// One new object as rev-list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    /// Its id.
    pub oid: String,
    /// The path rev-list first reached a tree or blob by.
    pub path: Option<String>,
}

/// Parse `git rev-list --objects` output. A path with a newline in it
/// continues on the next line (which does not start with an object id).
pub fn parse_rev_list(out: &[u8]) -> Vec<NewObject> {
    let mut objects: Vec<NewObject> = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = String::from_utf8_lossy(line);
        let (first, rest) = text.split_once(' ').map_or((&*text, None), |(a, b)| (a, Some(b)));
        if is_hex_oid(first) {
            objects.push(NewObject { oid: first.to_string(), path: rest.map(str::to_string) });
        } else if let Some(last) = objects.last_mut() {
            let path = last.path.get_or_insert_with(String::new);
            path.push('\n');
            path.push_str(&text);
        }
    }
    objects
}

fn is_hex_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The entry names of a raw tree object (`<mode> <name>\0<binary id>`…),
/// `oid_len` bytes per id (20 for SHA-1, 32 for SHA-256). A tree that does
/// not parse yields what parsed plus the rest as one name: scanned, never
/// skipped.
pub fn tree_names(data: &[u8], oid_len: usize) -> Vec<&[u8]> {
    let mut names = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            names.push(rest);
            break;
        };
        let after_mode = &rest[space + 1..];
        let Some(nul) = after_mode.iter().position(|&b| b == 0) else {
            names.push(after_mode);
            break;
        };
        names.push(&after_mode[..nul]);
        let next = nul + 1 + oid_len;
        if next > after_mode.len() {
            break;
        }
        rest = &after_mode[next..];
    }
    names
}

/// Where an offset in a raw commit or tag object is: in its headers (line
/// counted from the object's start) or its message (line counted from the
/// message's first line).
pub fn place_in_object(raw: &[u8], offset: usize) -> (&'static str, usize) {
    let offset = offset.min(raw.len());
    let line_of = |from: usize| raw[from..offset].iter().filter(|&&b| b == b'\n').count() + 1;
    match raw.windows(2).position(|w| w == b"\n\n") {
        Some(split) if offset >= split + 2 => ("(commit message)", line_of(split + 2)),
        _ => ("(commit header)", line_of(0)),
    }
}

/// How big a piece of a blob one scan call takes, and how much of the end
/// of each piece the next one sees again (a secret cut by a piece border is
/// whole in the overlap; the longest built-in format, a private key block,
/// is a few KiB).
pub const WINDOW: usize = 8 * 1024 * 1024;
/// How much of each piece the next one sees again.
pub const OVERLAP: usize = 64 * 1024;

/// The scan of new objects, adding to a push's report.
pub struct ObjectScan<'a> {
    /// The detectors.
    pub scanner: &'a Scanner,
    /// Blobs whose added lines the diff scan read.
    pub text_blobs: &'a HashSet<String>,
    /// Bytes in a binary object id.
    pub oid_len: usize,
}

impl ObjectScan<'_> {
    /// Whether the blob `oid` must be read whole.
    pub fn wants_blob(&self, oid: &str) -> bool {
        !self.text_blobs.contains(oid)
    }

    /// Scan a commit or tag object's raw text.
    pub fn commit_or_tag(&self, oid: &str, raw: &[u8], report: &mut PushReport) {
        for f in self.blocking(raw, None) {
            let (path, line) = place_in_object(raw, f.span.start);
            let path = if path == "(commit message)" && raw.starts_with(b"object ") { "(tag message)" } else { path };
            let path = if path == "(commit header)" && raw.starts_with(b"object ") { "(tag header)" } else { path };
            // Headers and messages carry no allow comment that counts.
            report.findings.push(self.finding(oid, path.to_string(), line, &f));
        }
    }

    /// Scan a tree's entry names.
    pub fn tree(&self, oid: &str, raw: &[u8], report: &mut PushReport) {
        let names = tree_names(raw, self.oid_len).join(&b'\n');
        for f in self.blocking(&names, None) {
            let line = names[..f.span.start.min(names.len())].iter().filter(|&&b| b == b'\n').count() + 1;
            report.findings.push(self.finding(oid, "(a file name in a tree)".to_string(), line, &f));
        }
    }

    /// Scan a pushed ref's name.
    pub fn ref_name(&self, new: &str, name: &str, report: &mut PushReport) {
        for f in self.blocking(name.as_bytes(), None) {
            report.findings.push(self.finding(new, "(the name of a pushed ref)".to_string(), 1, &f));
        }
    }

    /// Scan a blob read from `from` (`size` bytes), window by window.
    pub fn blob(
        &self,
        oid: &str,
        path: Option<&str>,
        size: u64,
        from: &mut (impl Read + ?Sized),
        report: &mut PushReport,
    ) -> std::io::Result<()> {
        let shown = path.map_or_else(|| "(a blob no path names)".to_string(), |p| self.shown_path(p));
        let window = WINDOW.min(self.scanner.options().max_bytes).max(2 * OVERLAP);
        let mut buf: Vec<u8> = Vec::with_capacity((size as usize).min(window));
        let mut left = size;
        // Lines before the window's first byte; the window's offset.
        let (mut lines_before, mut start) = (0usize, 0u64);
        let mut seen: HashSet<(u64, String)> = HashSet::new();
        loop {
            let want = (window - buf.len()).min(left as usize);
            let at = buf.len();
            buf.resize(at + want, 0);
            from.read_exact(&mut buf[at..])?;
            left -= want as u64;
            for f in self.blocking(&buf, path) {
                if !seen.insert((start + f.span.start as u64, f.rule.clone())) {
                    continue;
                }
                let before = &buf[..f.span.start.min(buf.len())];
                let line = lines_before + before.iter().filter(|&&b| b == b'\n').count() + 1;
                let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                let line_end = buf[line_start..].iter().position(|&b| b == b'\n').map_or(buf.len(), |p| line_start + p);
                let source = String::from_utf8_lossy(&buf[line_start..line_end]);
                let finding = self.finding(oid, shown.clone(), line, &f);
                if f.rule != dlp::Canary::NAME && ALLOW_MARKERS.iter().any(|m| source.contains(m)) {
                    report.suppressed.push(finding);
                } else {
                    report.findings.push(finding);
                }
            }
            if left == 0 {
                return Ok(());
            }
            let drop = buf.len() - OVERLAP.min(buf.len());
            lines_before += buf[..drop].iter().filter(|&&b| b == b'\n').count();
            start += drop as u64;
            buf.drain(..drop);
        }
    }

    /// A path as the report shows it: itself, unless it holds a finding.
    pub fn shown_path(&self, path: &str) -> String {
        shown(self.scanner, path)
    }

    fn blocking(&self, data: &[u8], path: Option<&str>) -> Vec<Finding> {
        let mut found = self.scanner.scan(data, path);
        found.retain(|f| f.severity == Severity::Block);
        found
    }

    fn finding(&self, oid: &str, path: String, line: usize, f: &Finding) -> PushFinding {
        PushFinding { commit: oid.to_string(), path, line, rule: f.rule.clone(), snippet: f.snippet.clone() }
    }
}

impl Git {
    /// The objects reachable from `tips` and from no ref the repository
    /// has: what a push introduces.
    pub fn new_objects(&self, tips: &[String]) -> Result<Vec<NewObject>, GitError> {
        let mut args = vec!["rev-list", "--objects"];
        args.extend(tips.iter().map(String::as_str));
        args.extend(["--not", "--all"]);
        Ok(parse_rev_list(&self.run(&args)?))
    }

    /// Hand each of `oids` to `each` as `git cat-file --batch` reads it: its
    /// kind, size and a reader of exactly its content. An id git does not
    /// have is an error (a push's objects are all there).
    pub fn for_each_object(
        &self,
        oids: Vec<String>,
        mut each: impl FnMut(&str, Kind, u64, &mut dyn Read) -> std::io::Result<()>,
    ) -> Result<(), GitError> {
        let failed = |message: String| GitError { args: "cat-file --batch".to_string(), message };
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["cat-file", "--batch"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run git: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(failed("git's pipes are missing".to_string()));
        };
        let count = oids.len();
        let writer = std::thread::spawn(move || {
            for oid in oids {
                if writeln!(stdin, "{oid}").is_err() {
                    return;
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut out = BufReader::with_capacity(256 * 1024, stdout);
        let mut result = Ok(());
        for _ in 0..count {
            let mut header = String::new();
            if let Err(e) = out.read_line(&mut header) {
                result = Err(failed(format!("reading git's output: {e}")));
                break;
            }
            let parts: Vec<&str> = header.split_whitespace().collect();
            let (oid, kind, size) = match parts[..] {
                [oid, kind, size] => match (Kind::parse(kind), size.parse::<u64>()) {
                    (Some(k), Ok(n)) => (oid.to_string(), k, n),
                    _ => {
                        result = Err(failed(format!("unexpected object header '{}'", header.trim())));
                        break;
                    }
                },
                _ => {
                    result = Err(failed(format!("object not readable: '{}'", header.trim())));
                    break;
                }
            };
            let mut content = (&mut out).take(size);
            let read = each(&oid, kind, size, &mut content);
            // Whatever the callback left unread, and the newline after it.
            let drained = std::io::copy(&mut content, &mut std::io::sink()).and_then(|_| {
                let mut nl = [0u8; 1];
                out.read_exact(&mut nl)
            });
            if let Err(e) = read.and(drained) {
                result = Err(failed(format!("reading object {oid}: {e}")));
                break;
            }
        }
        drop(out);
        let _ = writer.join();
        let status = child.wait().map_err(|e| failed(e.to_string()))?;
        let stderr = errors.join().unwrap_or_default();
        result?;
        if !status.success() {
            return Err(failed(stderr.trim().to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAT: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

    fn scan(text_blobs: &HashSet<String>) -> (Scanner, HashSet<String>) {
        (Scanner::builtin(), text_blobs.clone())
    }

    #[test]
    fn rev_list_lines_with_and_without_paths_and_a_path_with_a_newline() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let out = format!("{a}\n{b} src/x y.rs\n{c} odd\nname\n");
        let objects = parse_rev_list(out.as_bytes());
        assert_eq!(
            objects,
            [
                NewObject { oid: a, path: None },
                NewObject { oid: b, path: Some("src/x y.rs".into()) },
                NewObject { oid: c, path: Some("odd\nname".into()) },
            ]
        );
    }

    #[test]
    fn tree_entry_names_and_a_truncated_tree() {
        let mut raw = b"100644 a.txt\0".to_vec();
        raw.extend([7u8; 20]);
        raw.extend(b"40000 dir name\0");
        raw.extend([0u8; 20]);
        raw.extend(b"100644 cut\0");
        raw.extend([1u8; 5]);
        assert_eq!(tree_names(&raw, 20), [&b"a.txt"[..], b"dir name", b"cut"]);
        assert_eq!(tree_names(b"garbage without structure", 20), [&b"without structure"[..]]);
        assert!(tree_names(b"", 20).is_empty());
    }

    #[test]
    fn places_in_a_commit_object() {
        let raw = b"tree t\nauthor A\nx-extra v\n\nsubject\n\nbody line\n";
        assert_eq!(place_in_object(raw, 20), ("(commit header)", 3));
        let body = raw.windows(4).position(|w| w == b"body").unwrap();
        assert_eq!(place_in_object(raw, body), ("(commit message)", 3));
    }

    #[test]
    fn every_part_of_a_commit_and_tag_object_is_scanned() {
        let (scanner, text_blobs) = scan(&HashSet::new());
        let s = ObjectScan { scanner: &scanner, text_blobs: &text_blobs, oid_len: 20 };
        let cases = [
            (format!("tree t\nauthor {PAT} <a@b> 1 +0000\ncommitter c <c@d> 1 +0000\n\nm\n"), "(commit header)"),
            (format!("tree t\nauthor a <a@b> 1 +0000\nx-data {PAT}\n\nm\n"), "(commit header)"),
            (format!("tree t\nauthor a <a@b> 1 +0000\n\nsubject\0{PAT}\n"), "(commit message)"),
            (format!("object o\ntype tag\ntag t\ntagger x <x@y> 1 +0000\n\nrelease {PAT}\n"), "(tag message)"),
        ];
        for (raw, place) in cases {
            let mut report = PushReport::default();
            s.commit_or_tag("c0ffee", raw.as_bytes(), &mut report);
            assert_eq!(report.findings.len(), 1, "{raw:?}");
            assert_eq!(report.findings[0].path, place, "{raw:?}");
            assert!(!report.findings[0].snippet.contains(&PAT[8..]));
        }
    }

    #[test]
    fn a_tree_entry_name_and_a_ref_name_are_findings_without_showing_the_value() {
        let (scanner, text_blobs) = scan(&HashSet::new());
        let s = ObjectScan { scanner: &scanner, text_blobs: &text_blobs, oid_len: 20 };
        let mut raw = format!("100644 {PAT}.txt\0").into_bytes();
        raw.extend([9u8; 20]);
        let mut report = PushReport::default();
        s.tree("t", &raw, &mut report);
        s.ref_name("n", &format!("refs/heads/{PAT}"), &mut report);
        let paths: Vec<&str> = report.findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["(a file name in a tree)", "(the name of a pushed ref)"]);
        assert_eq!(s.shown_path(&format!("dir/{PAT}")), HIDDEN_PATH);
        assert_eq!(s.shown_path("src/main.rs"), "src/main.rs");
    }

    #[test]
    fn a_blob_is_scanned_whole_binary_included_across_window_borders() {
        let (scanner, text_blobs) = scan(&HashSet::new());
        let s = ObjectScan { scanner: &scanner, text_blobs: &text_blobs, oid_len: 20 };
        // Binary: a NUL before the secret.
        let mut data = b"\x00\x01\x02binary\n".to_vec();
        data.extend(format!("k={PAT}\n").as_bytes());
        let mut report = PushReport::default();
        s.blob("b", Some("img.bin"), data.len() as u64, &mut &data[..], &mut report).unwrap();
        assert_eq!(report.findings.len(), 1);
        assert_eq!((report.findings[0].path.as_str(), report.findings[0].line), ("img.bin", 2));
        // Larger than a window, the secret straddling the first border, and
        // again near the end; each found once, with its line.
        let mut big = vec![b'.'; WINDOW - 10];
        big.push(b'\n');
        big.extend(format!("{PAT}\n").as_bytes());
        big.extend(vec![b'x'; WINDOW]);
        big.extend(format!("\n{PAT} # bot-bottle:allow\n").as_bytes());
        let mut report = PushReport::default();
        s.blob("b", Some("big"), big.len() as u64, &mut &big[..], &mut report).unwrap();
        assert_eq!(report.findings.iter().map(|f| f.line).collect::<Vec<_>>(), [2]);
        assert_eq!(report.suppressed.iter().map(|f| f.line).collect::<Vec<_>>(), [4]);
    }
}
