//! `scan`: the DLP engine as a command. Files, directories (recursively),
//! stdin, or the lines a git commit range adds (as git-gate scans a push).
//! One line per finding, or JSON lines; exit 1 when anything is found,
//! 0 when clean, 2 on usage errors.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
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
        for (commit, path, text, lines) in git_added(range)? {
            for f in scanner.scan(text.as_bytes(), path.as_deref()) {
                let line = lines.get(line_index(text.as_bytes(), f.span.start)).copied().unwrap_or(0);
                let path = path.clone().unwrap_or_else(|| "(commit message)".to_string());
                report(Place { commit: Some(commit.clone()), path, line }, &f)?;
            }
        }
    } else {
        let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
        for p in paths {
            if p.as_os_str() == "-" {
                let mut data = Vec::new();
                std::io::stdin().read_to_end(&mut data).context("cannot read stdin")?;
                for f in scanner.scan(&data, None) {
                    report(
                        Place { commit: None, path: "-".to_string(), line: line_index(&data, f.span.start) + 1 },
                        &f,
                    )?;
                }
                continue;
            }
            if !p.exists() {
                return Err(UsageError(format!("{}: no such file or directory", p.display())).into());
            }
            for file in walk(&p) {
                let data = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let name = file.display().to_string();
                for f in scanner.scan(&data, Some(&name)) {
                    report(Place { commit: None, path: name.clone(), line: line_index(&data, f.span.start) + 1 }, &f)?;
                }
            }
        }
    }
    Ok(())
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

/// For each commit of `range`: its message, and per file the lines it adds
/// joined into one text (so multi-line secrets are seen whole) with each
/// line's number in the new file. `(commit, path or None for the message,
/// text, line numbers)`.
type Added = (String, Option<String>, String, Vec<usize>);

fn git(args: &[&str]) -> Result<String> {
    let out = Command::new("git").args(args).output().context("cannot run git (is it installed?)")?;
    if !out.status.success() {
        bail!(UsageError(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git_added(range: &str) -> Result<Vec<Added>> {
    let commits = git(&["rev-list", "--reverse", range, "--"])?;
    let mut out = Vec::new();
    for commit in commits.lines().filter(|l| !l.is_empty()) {
        let message = git(&["show", "-s", "--format=%B", commit])?;
        let lines = (1..=message.lines().count()).collect();
        out.push((commit.to_string(), None, message, lines));
        let diff = git(&[
            "show",
            "--format=",
            "--unified=0",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            "--diff-merges=first-parent",
            commit,
        ])?;
        for (path, text, lines) in added_lines(&diff) {
            out.push((commit.to_string(), Some(path), text, lines));
        }
    }
    Ok(out)
}

/// Parse a unified diff (`--unified=0`) into, per file, the added lines
/// joined by newlines and their line numbers in the new file.
pub fn added_lines(diff: &str) -> Vec<(String, String, Vec<usize>)> {
    let mut files: Vec<(String, String, Vec<usize>)> = Vec::new();
    let mut next_line = 0;
    for line in diff.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            let path = path.strip_prefix("b/").unwrap_or(path).to_string();
            files.push((path, String::new(), Vec::new()));
        } else if line.starts_with("--- ") || line.starts_with("diff ") || line.starts_with("index ") {
            continue;
        } else if let Some(hunk) = line.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            next_line = hunk
                .split_whitespace()
                .find_map(|w| w.strip_prefix('+'))
                .and_then(|w| w.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(added) = line.strip_prefix('+') {
            if let Some((_, text, lines)) = files.last_mut() {
                text.push_str(added);
                text.push('\n');
                lines.push(next_line);
            }
            next_line += 1;
        }
    }
    files.retain(|(path, text, _)| !text.is_empty() && path != "/dev/null");
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_with_numbers() {
        let diff = "diff --git a/a.txt b/a.txt\nindex 1..2 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -3,0 +4,2 @@\n+one\n+two\n@@ -9 +11 @@\n-old\n+new\ndiff --git a/gone b/gone\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n";
        let files = added_lines(diff);
        assert_eq!(files, vec![("a.txt".to_string(), "one\ntwo\nnew\n".to_string(), vec![4, 5, 11])]);
    }
}
