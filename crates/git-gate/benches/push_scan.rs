//! Push-scan benchmark: a push of 1,000 commits adding ~50 MB of text,
//! scanned as the gate scans it (`PushScan::run`: git log of the range plus
//! the DLP scan), against the time plain `git log -p` takes to print that
//! diff, measured in the same run. Best of 3 for each.
//!
//! `cargo bench -p bot-bottle-git-gate --bench push_scan` (or bench/git-gate.sh).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dlp::Scanner;
use git_gate::push_scan::{Git, PushScan, RefUpdate};

const COMMITS: usize = 1000;
const BYTES_PER_COMMIT: usize = 50 * 1024;

/// Code-like text: identifiers, strings, numbers, and now and then a word
/// the token rules key on (`token`, `key`, `secret`, `password`), so their
/// regexes run as they would on real code.
fn text(seed: usize, len: usize) -> String {
    let words = ["config", "value", "token", "request", "handler", "key", "client", "secret", "buffer", "password"];
    let mut out = String::with_capacity(len + 100);
    let mut x = seed as u64 * 6_364_136_223_846_793_005 + 1;
    let mut i = 0;
    while out.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let w = words[(x >> 33) as usize % words.len()];
        let n = (x >> 40) % 100_000;
        out.push_str(&format!("    let {w}_{i} = build_{w}(\"{w}-{n}\", {n}); // step {i} of {seed}\n"));
        i += 1;
    }
    out
}

/// A repo whose `main` is 1,000 commits past `base`, built with fast-import.
fn build_repo(dir: &Path) -> (String, String) {
    let git = |args: &[&str]| {
        let o = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    let mut child =
        Command::new("git").arg("-C").arg(dir).args(["fast-import", "--quiet"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stream = Vec::new();
    for c in 0..=COMMITS {
        let body = if c == 0 { "base\n".to_string() } else { text(c, BYTES_PER_COMMIT) };
        let message = format!("commit {c}\n");
        write!(
            stream,
            "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}",
            1_700_000_000 + c,
            message.len()
        )
        .unwrap();
        // Each commit adds a file: ~50 KB of added lines, nothing removed.
        write!(stream, "M 100644 inline src/file_{c}.rs\ndata {}\n{body}\n", body.len()).unwrap();
        if c == 0 {
            write!(stream, "reset refs/heads/base\nfrom refs/heads/main\n\n").unwrap();
        }
    }
    stdin.write_all(&stream).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    (git(&["rev-parse", "base"]), git(&["rev-parse", "main"]))
}

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..n {
        let t = Instant::now();
        let out = f();
        best = best.min(t.elapsed());
        last = Some(out);
    }
    (best, last.unwrap())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    eprintln!("building a repo of {COMMITS} commits x {} KB ...", BYTES_PER_COMMIT / 1024);
    let (base, tip) = build_repo(dir.path());
    let range = format!("{base}..{tip}");
    let (log_time, bytes) = best_of(3, || {
        let o = Command::new("git").arg("-C").arg(dir.path()).args(["log", "-p", &range]).output().unwrap();
        assert!(o.status.success());
        o.stdout.len()
    });
    let git = Git { dir: dir.path().to_path_buf(), env: Vec::new() };
    let scanner = Scanner::builtin();
    let update = RefUpdate { old: base.clone(), new: tip.clone(), name: "refs/heads/main".into() };
    let (scan_time, report) =
        best_of(3, || PushScan { git: &git, scanner: &scanner }.run(std::slice::from_ref(&update)).unwrap());
    assert_eq!(report.commits, COMMITS);
    println!("push scan benchmark: {COMMITS} commits, `git log -p` prints {:.1} MB", bytes as f64 / 1e6);
    println!("git log -p (baseline)      {:>8.2} s", log_time.as_secs_f64());
    println!("PushScan (log -U0 + scan)  {:>8.2} s", scan_time.as_secs_f64());
    println!("ratio                      {:>8.2}x (target <= 2x)", scan_time.as_secs_f64() / log_time.as_secs_f64());
    println!("findings: {} (the text holds no secrets)", report.findings.len());
}
