//! The push scan (spec/git-gate.md, Push 1–4): what a push introduces,
//! through the DLP engine. Two readings of the same new objects: the diff
//! scan (`git log -p` of the new commits: every added line, named by file
//! and line) and the object scan ([`crate::objects`]: every new commit and
//! tag object raw, every tree's entry names, every blob the log did not
//! show as text read whole), plus the pushed ref names. Findings under an
//! inline allow comment are set apart as suppressed (they need the
//! operator), the rest refuse the push.
//!
//! [`scan_changes`] is pure; [`PushScan::run`] runs git in the repository
//! (with the push's quarantine environment).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use dlp::{Scanner, Severity};
use proposal::PushFinding;

use crate::diff::{COMMIT_MARK, CommitChanges, LOG_ARGS, parse_commit};
use crate::objects::{Kind, ObjectScan, shown};

/// Comments that mark a line as a known false positive.
pub const ALLOW_MARKERS: [&str; 2] = ["gitleaks:allow", "bot-bottle:allow"];

/// One line of what `git receive-pack` hands its pre-receive hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The ref's old id (all zeros: created).
    pub old: String,
    /// Its new id (all zeros: deleted).
    pub new: String,
    /// The ref.
    pub name: String,
}

impl RefUpdate {
    /// Parse the hook's stdin: `old new ref` per line.
    pub fn parse(text: &str) -> Result<Vec<RefUpdate>, String> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(old), Some(new), Some(name), None) if is_oid(old) && is_oid(new) => {
                        Ok(RefUpdate { old: old.to_string(), new: new.to_string(), name: name.to_string() })
                    }
                    _ => Err(format!("malformed ref update line '{}'", line.escape_default())),
                }
            })
            .collect()
    }

    /// The push deletes the ref.
    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }

    /// The push creates the ref.
    pub fn is_create(&self) -> bool {
        is_zero(&self.old)
    }

    /// The revisions whose commits this update introduces: `old..new`, or
    /// `new --not --all` for a new ref; none for a deletion.
    pub fn revs(&self) -> Vec<String> {
        if self.is_delete() {
            Vec::new()
        } else if self.is_create() {
            vec![self.new.clone(), "--not".into(), "--all".into()]
        } else {
            vec![format!("{}..{}", self.old, self.new)]
        }
    }
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// What a push introduces, scanned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Commits scanned.
    pub commits: usize,
    /// Findings that refuse the push.
    pub findings: Vec<PushFinding>,
    /// Findings on lines with an allow comment: the operator decides.
    pub suppressed: Vec<PushFinding>,
}

/// Scan the lines commits add (their messages are read whole, with every
/// header, by the object scan). Commits already in `seen` are skipped (a
/// commit reachable from two pushed refs is scanned once).
pub fn scan_changes(scanner: &Scanner, changes: &[CommitChanges], seen: &mut HashSet<String>, report: &mut PushReport) {
    for c in changes {
        if !seen.insert(c.commit.clone()) {
            continue;
        }
        report.commits += 1;
        for (file, text, lines) in c.texts().skip(1) {
            let shown_path = file.map(|p| shown(scanner, p));
            let path = shown_path.as_deref().unwrap_or("(commit message)");
            for f in scanner.scan(text.as_bytes(), file) {
                if f.severity != Severity::Block {
                    continue;
                }
                let index = text.as_bytes()[..f.span.start.min(text.len())].iter().filter(|&&b| b == b'\n').count();
                let source_line = text.lines().nth(index).unwrap_or("");
                let finding = PushFinding {
                    commit: c.commit.clone(),
                    path: path.to_string(),
                    line: lines.get(index).copied().unwrap_or(0),
                    rule: f.rule.clone(),
                    snippet: f.snippet.clone(),
                };
                // An allow comment cannot excuse the canary.
                if f.rule != dlp::Canary::NAME && ALLOW_MARKERS.iter().any(|m| source_line.contains(m)) {
                    report.suppressed.push(finding);
                } else {
                    report.findings.push(finding);
                }
            }
        }
    }
}

/// Runs git in one repository, with extra environment (a push's
/// quarantine: `GIT_OBJECT_DIRECTORY`, `GIT_ALTERNATE_OBJECT_DIRECTORIES`).
#[derive(Debug, Clone)]
pub struct Git {
    /// The repository.
    pub dir: PathBuf,
    /// Environment for every git call (the quarantine's).
    pub env: Vec<(String, String)>,
}

/// git failed.
#[derive(Debug, thiserror::Error)]
#[error("git {args}: {message}")]
pub struct GitError {
    /// The git arguments.
    pub args: String,
    /// What git said.
    pub message: String,
}

impl Git {
    /// `git -C dir args…`: stdout, or the error with git's stderr.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .map_err(|e| GitError { args: args.join(" "), message: format!("cannot run git: {e}") })?;
        if !out.status.success() {
            return Err(GitError {
                args: args.join(" "),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// Whether `new` has `old` in its history (a fast-forward). Anything
    /// git cannot answer (an object that is no commit, a failure) is no.
    pub fn is_ancestor(&self, old: &str, new: &str) -> bool {
        Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["merge-base", "--is-ancestor", old, new])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The changes `revs` selects, oldest first.
    pub fn changes(&self, revs: &[String]) -> Result<Vec<CommitChanges>, GitError> {
        let mut out = Vec::new();
        self.for_each_change(revs, |c| out.push(c))?;
        Ok(out)
    }

    /// Each change `revs` selects, oldest first, handed to `each` while git
    /// is still producing the rest (git on one core, the caller on another).
    pub fn for_each_change(&self, revs: &[String], mut each: impl FnMut(CommitChanges)) -> Result<(), GitError> {
        let mut args: Vec<&str> = LOG_ARGS.to_vec();
        args.push("--reverse");
        args.extend(revs.iter().map(String::as_str));
        args.push("--");
        let failed = |message: String| GitError { args: args.join(" "), message };
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(&args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run git: {e}")))?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(failed("git's pipes are missing".to_string()));
        };
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
        let reader = std::thread::spawn(move || split_commits(stdout, &tx));
        for piece in rx {
            if let Some(c) = parse_commit(&String::from_utf8_lossy(&piece)) {
                each(c);
            }
        }
        let read = reader.join().unwrap_or_else(|_| Err(std::io::Error::other("the reader panicked")));
        let status = child.wait().map_err(|e| failed(e.to_string()))?;
        let stderr = errors.join().unwrap_or_default();
        if !status.success() {
            return Err(failed(stderr.trim().to_string()));
        }
        read.map_err(|e| failed(format!("reading git's output: {e}")))
    }
}

/// Cut git's output into commit pieces as it arrives.
fn split_commits(mut from: impl std::io::Read, to: &std::sync::mpsc::SyncSender<Vec<u8>>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    // Where to look for the next mark (marks before it were handled).
    let mut searched = 0;
    loop {
        let n = from.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(at) = find(&buf[searched.max(start)..], COMMIT_MARK).map(|p| p + searched.max(start)) {
            if at > start {
                let _ = to.send(buf[start..at].to_vec());
            }
            start = at + COMMIT_MARK.len();
        }
        buf.drain(..start);
        // A mark may straddle the next read.
        searched = buf.len().saturating_sub(COMMIT_MARK.len() - 1);
    }
    if !buf.is_empty() {
        let _ = to.send(buf);
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The scan of one push.
pub struct PushScan<'a> {
    /// The repository the push is in.
    pub git: &'a Git,
    /// The detectors.
    pub scanner: &'a Scanner,
}

impl PushScan<'_> {
    /// Scan what `updates` introduce: the objects reachable from the new
    /// values and from no ref the repository already has.
    pub fn run(&self, updates: &[RefUpdate]) -> Result<PushReport, GitError> {
        let mut report = PushReport::default();
        let mut tips: Vec<String> = Vec::new();
        for u in updates.iter().filter(|u| !u.is_delete()) {
            if !tips.contains(&u.new) {
                tips.push(u.new.clone());
            }
        }
        if tips.is_empty() {
            return Ok(report);
        }
        let mut revs = tips.clone();
        revs.extend(["--not".to_string(), "--all".to_string()]);
        // The diff scan: added lines by file and line; which blobs it saw
        // as text.
        let mut seen = HashSet::new();
        let mut text_blobs = HashSet::new();
        self.git.for_each_change(&revs, |c| {
            text_blobs.extend(c.text_blobs.iter().cloned());
            scan_changes(self.scanner, std::slice::from_ref(&c), &mut seen, &mut report);
        })?;
        // The object scan: everything else the upstream will store.
        let oid_len = tips[0].len() / 2;
        let scan = ObjectScan { scanner: self.scanner, text_blobs: &text_blobs, oid_len };
        for u in updates.iter().filter(|u| !u.is_delete()) {
            scan.ref_name(&u.new, &u.name, &mut report);
        }
        let objects = self.git.new_objects(&tips)?;
        let paths: std::collections::HashMap<String, String> =
            objects.iter().filter_map(|o| Some((o.oid.clone(), o.path.clone()?))).collect();
        let wanted: Vec<String> = objects.into_iter().map(|o| o.oid).filter(|oid| scan.wants_blob(oid)).collect();
        self.git.for_each_object(wanted, |oid, kind, size, content| {
            match kind {
                Kind::Blob => return scan.blob(oid, paths.get(oid).map(String::as_str), size, content, &mut report),
                Kind::Commit | Kind::Tag | Kind::Tree => {
                    let mut raw = Vec::with_capacity(size as usize);
                    content.read_to_end(&mut raw)?;
                    if kind == Kind::Tree {
                        scan.tree(oid, &raw, &mut report);
                    } else {
                        scan.commit_or_tag(oid, &raw, &mut report);
                    }
                }
            }
            Ok(())
        })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::AddedText;

    const Z: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const PAT: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

    #[test]
    fn git_output_is_cut_into_commits_whatever_the_read_sizes() {
        /// Hands out `step` bytes per read.
        struct Trickle<'a>(&'a [u8], usize);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(self.0.len()).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let log = b"\x00\x01aaaa\nfirst\n\x00\ndiff\n+x\n\x00\x01bbbb\nsecond\n\x00\n\x00\x01cccc\nthird\n\x00\n";
        for step in [1, 2, 3, 7, 1000] {
            let (tx, rx) = std::sync::mpsc::sync_channel(64);
            split_commits(Trickle(log, step), &tx).unwrap();
            drop(tx);
            let pieces: Vec<Vec<u8>> = rx.into_iter().collect();
            assert_eq!(
                pieces,
                [&b"aaaa\nfirst\n\x00\ndiff\n+x\n"[..], b"bbbb\nsecond\n\x00\n", b"cccc\nthird\n\x00\n"],
                "step {step}"
            );
        }
    }

    #[test]
    fn an_allow_comment_cannot_excuse_the_canary() {
        let mut known = dlp::KnownSecrets::new();
        let canary = "Zk3Jq9Wm2Lp8Xr5Tv7Nb4Hc6Gd1Fs0Ae";
        known.register(dlp::Canary::NAME, &secret::Secret::new(canary.to_string()));
        let scanner = Scanner::new(dlp::RuleSet::builtin().clone(), known, dlp::ScanOptions::default());
        let changes = vec![CommitChanges {
            commit: "c1".into(),
            text_blobs: Vec::new(),
            message: "m".into(),
            files: vec![AddedText {
                path: "a".into(),
                text: format!("K={canary} # bot-bottle:allow\n"),
                lines: vec![1],
            }],
        }];
        let mut report = PushReport::default();
        scan_changes(&scanner, &changes, &mut HashSet::new(), &mut report);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].rule, "canary");
        assert!(report.suppressed.is_empty());
    }

    #[test]
    fn ref_updates_and_their_ranges() {
        let u =
            RefUpdate::parse(&format!("{A} {B} refs/heads/main\n{Z} {B} refs/heads/new\n{A} {Z} refs/heads/gone\n"))
                .unwrap();
        assert_eq!(u[0].revs(), [format!("{A}..{B}")]);
        assert_eq!(u[1].revs(), [B, "--not", "--all"]);
        assert!(u[2].revs().is_empty() && u[2].is_delete());
        assert!(RefUpdate::parse("x y z").is_err());
        assert!(RefUpdate::parse(&format!("{A} {B} refs/heads/main extra")).is_err());
    }

    #[test]
    fn findings_name_commit_file_and_line_and_allow_comments_are_set_apart() {
        let scanner = Scanner::builtin();
        let changes = vec![CommitChanges {
            commit: "c1".into(),
            text_blobs: Vec::new(),
            message: format!("add config\n\ntoken {PAT}\n"),
            files: vec![
                AddedText { path: "app.env".into(), text: format!("A=1\nGH={PAT}\n"), lines: vec![7, 8] },
                AddedText {
                    path: "test.env".into(),
                    text: format!("GH={PAT} # bot-bottle:allow test fixture\n"),
                    lines: vec![3],
                },
            ],
        }];
        let mut report = PushReport::default();
        scan_changes(&scanner, &changes, &mut HashSet::new(), &mut report);
        // The message is the object scan's (with the commit's headers).
        let places: Vec<(&str, usize)> = report.findings.iter().map(|f| (f.path.as_str(), f.line)).collect();
        assert_eq!(places, [("app.env", 8)]);
        assert_eq!(report.suppressed.len(), 1);
        assert_eq!((report.suppressed[0].path.as_str(), report.suppressed[0].line), ("test.env", 3));
        assert!(report.findings.iter().all(|f| !f.snippet.contains(&PAT[8..])));
        // The same commit through another ref is not scanned twice.
        let mut seen: HashSet<String> = ["c1".to_string()].into();
        let mut again = PushReport::default();
        scan_changes(&scanner, &changes, &mut seen, &mut again);
        assert_eq!(again, PushReport::default());
    }
}
