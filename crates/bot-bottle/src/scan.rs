//! `scan`: the DLP engine as a command. Files, directories (recursively),
//! stdin (any size: streamed in overlapping windows), or the lines a git
//! commit range adds (read as git-gate reads a push).
//! One line per finding, or JSON lines; exit 1 when anything is found,
//! 0 when clean, 2 on usage errors.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use dlp::{Finding, KnownSecrets, RuleSet, ScanOptions, Scanner};
use serde_json::json;

use crate::cli::ScanArgs;

/// A usage error: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Where a finding was: a file (or stdin, or a commit's file) and a line.
struct Place {
    commit: Option<String>,
    path: String,
    line: usize,
}

pub fn scan(args: ScanArgs) -> Result<i32> {
    let rules = match &args.rules {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| UsageError(format!("--rules {}: {e}", file.display())))?;
            RuleSet::parse(&text, &file.display().to_string()).map_err(|e| UsageError(e.to_string()))?
        }
        None => RuleSet::builtin().clone(),
    };
    let options = ScanOptions::from_names(&args.detectors)
        .map_err(|d| UsageError(format!("--detectors: unknown detector '{d}'; use token_patterns, entropy, crypto")))?;
    let scanner = Scanner::new(rules, KnownSecrets::new(), options);
    let mut found = 0;
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut report = |place: Place, f: &Finding| -> std::io::Result<()> {
        found += 1;
        if args.json {
            let line = json!({"path": place.path, "line": place.line, "commit": place.commit, "rule": f.rule,
                              "detector": f.detector, "severity": f.severity, "snippet": f.snippet});
            writeln!(stdout, "{line}")
        } else {
            let commit = place.commit.as_deref().map(|c| format!("{}:", &c[..c.len().min(12)])).unwrap_or_default();
            writeln!(stdout, "{commit}{}:{}: {} {}", place.path, place.line, f.rule, f.snippet)
        }
    };
    match scan_into(&args, &scanner, &mut report) {
        // A closed pipe (`| head`) is not an error: stop quietly.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {}
        other => other?,
    }
    if found > 0 {
        eprintln!("bot-bottle: {found} finding(s)");
        return Ok(1);
    }
    Ok(0)
}

fn scan_into(
    args: &ScanArgs,
    scanner: &Scanner,
    report: &mut dyn FnMut(Place, &Finding) -> std::io::Result<()>,
) -> Result<()> {
    if let Some(range) = &args.git {
        if !args.paths.is_empty() {
            return Err(UsageError("--git scans a commit range; give it no paths".to_string()).into());
        }
        let git = git_gate::push_scan::Git { dir: ".".into(), env: Vec::new() };
        let changes = git.changes(std::slice::from_ref(range)).map_err(|e| UsageError(e.to_string()))?;
        for c in &changes {
            for (path, text, lines) in c.texts() {
                for f in scanner.scan(text.as_bytes(), path) {
                    let line = lines.get(line_index(text.as_bytes(), f.span.start)).copied().unwrap_or(0);
                    let path = path.unwrap_or("(commit message)").to_string();
                    report(Place { commit: Some(c.commit.clone()), path, line }, &f)?;
                }
            }
        }
    } else {
        let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
        for p in paths {
            if p.as_os_str() == "-" {
                scan_stream(scanner, std::io::stdin().lock(), None, WINDOW, &mut |line, f| {
                    report(Place { commit: None, path: "-".to_string(), line }, f)
                })
                .context("cannot read stdin")?;
                continue;
            }
            if !p.exists() {
                return Err(UsageError(format!("{}: no such file or directory", p.display())).into());
            }
            for file in walk(&p) {
                let reader = std::fs::File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let name = file.display().to_string();
                scan_stream(scanner, reader, Some(&name), WINDOW, &mut |line, f| {
                    report(Place { commit: None, path: name.clone(), line }, f)
                })
                .with_context(|| format!("cannot read {}", file.display()))?;
            }
        }
    }
    Ok(())
}

/// How much of a file is scanned at once, and how much consecutive
/// windows share: a value up to half of [`OVERLAP`] long, with as much
/// context before and after it, is inside one window whole, wherever it
/// sits.
const WINDOW: usize = 8 << 20;
const OVERLAP: usize = 64 << 10;

/// Scan `reader` of any size in windows of `window` bytes that overlap by
/// [`OVERLAP`] (the scanner's own bound is never reached, so no file is a
/// `too-large` finding); each finding is reported once with its 1-based
/// line. A raw finding belongs to the window it starts in, windows cut at
/// the middle of their overlap (so a value and up to half the overlap of
/// context around it are in its window); a finding in a decoded view,
/// found again in the next window's overlap, is reported once.
fn scan_stream(
    scanner: &Scanner,
    mut reader: impl Read,
    name: Option<&str>,
    window: usize,
    emit: &mut dyn FnMut(usize, &Finding) -> std::io::Result<()>,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(window.min(1 << 20));
    let mut lines_before = 0usize;
    let mut previous_derived: Vec<(String, String)> = Vec::new();
    let mut first = true;
    loop {
        // Fill the window (a short read is not the end).
        let mut eof = false;
        while buf.len() < window {
            let start = buf.len();
            buf.resize(window, 0);
            let n = reader.read(&mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                eof = true;
                break;
            }
        }
        // This window answers for findings starting in the middle of what
        // it shares with its neighbours: half the overlap of context on
        // either side (a keyword before a value counts).
        let from = if first { 0 } else { OVERLAP / 2 };
        let to = if eof { buf.len() } else { buf.len() - OVERLAP / 2 };
        let mut derived = Vec::new();
        for f in scanner.scan(&buf, name) {
            let line = lines_before + line_index(&buf, f.span.start) + 1;
            match f.view {
                dlp::View::Raw if (from..to).contains(&f.span.start) => emit(line, &f)?,
                dlp::View::Raw => {}
                dlp::View::Derived => {
                    let key = (f.rule.clone(), f.snippet.clone());
                    if !previous_derived.contains(&key) {
                        emit(line, &f)?;
                    }
                    derived.push(key);
                }
            }
        }
        if eof {
            return Ok(());
        }
        previous_derived = derived;
        let kept = buf.len() - OVERLAP;
        lines_before += buf[..kept].iter().filter(|&&b| b == b'\n').count();
        buf.drain(..kept);
        first = false;
    }
}

/// 0-based line of a byte offset.
fn line_index(data: &[u8], offset: usize) -> usize {
    data[..offset.min(data.len())].iter().filter(|&&b| b == b'\n').count()
}

/// Files under `root` (itself when a file), sorted; `.git` directories and
/// symlinked directories are skipped.
fn walk(root: &Path) -> Vec<PathBuf> {
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if entry.file_name() != ".git" {
                    stack.push(path);
                }
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAT: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

    /// Every finding a whole-buffer scan makes, once, on the same line,
    /// wherever the window edges fall.
    #[test]
    fn windows_find_what_one_whole_scan_finds_once() {
        let window = 256 << 10;
        let mut data = Vec::new();
        // `token=PAT` starting at `at` (the filler before it cut there).
        let line = |data: &mut Vec<u8>, at: usize| {
            assert!(data.len() <= at, "positions must grow: {at}");
            while data.len() < at {
                data.extend_from_slice(b"lorem ipsum dolor sit amet\n");
            }
            data.truncate(at);
            data.extend_from_slice(format!("token={PAT}\n").as_bytes());
        };
        // Around each window's edges and the middle of each overlap.
        let step = window - OVERLAP;
        let middle = step + OVERLAP / 2;
        for at in [10, step - 5, step + 60, middle - 50, middle + 5, window - 20, step + middle - 3, 3 * step + 7] {
            line(&mut data, at);
        }
        line(&mut data, 4 * step + 100);
        let whole = {
            let options = ScanOptions { max_bytes: data.len() + 1, ..ScanOptions::default() };
            Scanner::new(RuleSet::builtin().clone(), KnownSecrets::new(), options)
        };
        let mut expected: Vec<(usize, String)> =
            whole.scan(&data, None).into_iter().map(|f| (line_index(&data, f.span.start) + 1, f.rule)).collect();
        expected.sort();
        assert_eq!(expected.iter().filter(|(_, r)| r == "github-pat").count(), 9, "{expected:?}");
        let mut got = Vec::new();
        scan_stream(&Scanner::builtin(), &data[..], None, window, &mut |line, f| {
            got.push((line, f.rule.clone()));
            Ok(())
        })
        .unwrap();
        got.sort();
        assert_eq!(got, expected);
    }
}
