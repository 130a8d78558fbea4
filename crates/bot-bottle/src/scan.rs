//! `scan`: the DLP engine as a command. Files, directories (recursively),
//! stdin, or the lines a git commit range adds (read as git-gate reads a push).
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
