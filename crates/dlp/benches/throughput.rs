//! DLP throughput and latency, with Yelp's `detect-secrets` as the baseline
//! measured in the same run on the same files. Not a test: it prints.
//!
//!     bench/dlp.sh            (installs detect-secrets into target/, then runs this)
//!     cargo bench -p bot-bottle-dlp --bench throughput   (baseline if `detect-secrets` is on PATH
//!                                                         or DETECT_SECRETS names it)
//!
//! (a) 10 MB of clean source text, (b) the same with a secret every ~100 KB,
//! (c) p50/p99 latency per 1 KB request with a known secret and a canary
//! registered, the way the egress proxy scans.

// Peak memory of the peers is read with getrusage(2): a libc call.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dlp::{Canary, KnownSecrets, RuleSet, ScanOptions, Scanner};
use secret::Secret;

mod common;
use common::{clean_text, corpus};

/// The clean text with a positive-corpus file spliced in every ~100 KB.
fn sparse_secrets(clean: &[u8]) -> (Vec<u8>, usize) {
    let positives = corpus("positives");
    let mut out = Vec::with_capacity(clean.len() + 200_000);
    let mut planted = 0;
    for (i, chunk) in clean.chunks(100 * 1024).enumerate() {
        out.extend_from_slice(chunk);
        out.push(b'\n');
        out.extend_from_slice(&positives[i % positives.len()]);
        planted += 1;
    }
    (out, planted)
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// Best of `runs`: the least disturbed by other work on the machine.
fn time_scan(scanner: &Scanner, data: &[u8], runs: usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut findings = 0;
    for _ in 0..runs {
        let start = Instant::now();
        findings = scanner.scan(data, None).len();
        best = best.min(start.elapsed());
    }
    (best, findings)
}

fn detect_secrets() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DETECT_SECRETS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("detect-secrets")).find(|p| p.is_file()))
}

/// `detect-secrets scan FILE`: wall time (best of `runs`) and the child's peak RSS.
fn baseline(bin: &Path, file: &Path, runs: usize) -> Option<(Duration, u64, usize)> {
    let mut best = Duration::MAX;
    let mut found = 0;
    for _ in 0..runs {
        let start = Instant::now();
        // Run where the file is: inside a git checkout, detect-secrets scans
        // only tracked files and would silently skip it.
        let out = std::process::Command::new(bin)
            .arg("scan")
            .arg(file.file_name()?)
            .current_dir(file.parent()?)
            .output()
            .ok()?;
        best = best.min(start.elapsed());
        if !out.status.success() {
            eprintln!("detect-secrets failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        found =
            v["results"].as_object().map(|r| r.values().map(|l| l.as_array().map_or(0, Vec::len)).sum()).unwrap_or(0);
    }
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    Some((best, usage.ru_maxrss as u64, found))
}

fn main() {
    let clean = clean_text();
    let (sparse, planted) = sparse_secrets(&clean);
    let rules = RuleSet::builtin();
    let scanner = Scanner::new(rules.clone(), KnownSecrets::new(), ScanOptions::default());
    println!("bot-bottle DLP benchmark: {} built-in rules, one thread", rules.rules.len());
    println!(
        "inputs: (a) {:.1} MB clean source text, (b) {:.1} MB with {planted} planted secrets",
        clean.len() as f64 / 1048576.0,
        sparse.len() as f64 / 1048576.0
    );

    let (a, fa) = time_scan(&scanner, &clean, 15);
    let (b, fb) = time_scan(&scanner, &sparse, 15);
    println!("bot-bottle  (a) clean : {:8.1} MB/s  ({fa} findings)", mbps(clean.len(), a));
    println!("bot-bottle  (b) sparse: {:8.1} MB/s  ({fb} findings)", mbps(sparse.len(), b));

    // (c) per-request latency, as the proxy scans: known secrets and a canary registered.
    let mut known = KnownSecrets::new();
    known.register("EGRESS_TOKEN_1", &Secret::new("tok_9fQ2xLm7Pz4Rk8Wv3Jn6Bh1Cs5Dt0".to_string()));
    let canary = Canary::mint().expect("the OS random generator works");
    known.register(Canary::NAME, &canary.value);
    let proxy = Scanner::new(rules.clone(), known, ScanOptions::default());
    let requests: Vec<&[u8]> = clean.chunks(1024).take(20_000).collect();
    let mut lat: Vec<Duration> = Vec::with_capacity(requests.len());
    for r in &requests {
        let start = Instant::now();
        std::hint::black_box(proxy.scan(r, None));
        lat.push(start.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!("bot-bottle  (c) 1 KB request: p50 {:?}  p99 {:?}  ({} requests)", pct(0.50), pct(0.99), lat.len());
    println!("bot-bottle  peak RSS: {} KB (whole benchmark process, inputs included)", peak_rss_kb());

    let Some(bin) = detect_secrets() else {
        println!(
            "baseline: detect-secrets not found; run bench/dlp.sh, or put it on PATH (pip install detect-secrets)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("bb-dlp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (fa_path, fb_path) = (dir.join("clean.txt"), dir.join("sparse.txt"));
    std::fs::write(&fa_path, &clean).unwrap();
    std::fs::write(&fb_path, &sparse).unwrap();
    for (name, path, ours, size) in
        [("(a) clean ", &fa_path, a, clean.len()), ("(b) sparse", &fb_path, b, sparse.len())]
    {
        match baseline(&bin, path, 1) {
            Some((t, rss, found)) => println!(
                "detect-secrets {name}: {:8.2} MB/s  ({found} findings, peak RSS {rss} KB)  -> bot-bottle is {:.0}x faster",
                mbps(size, t),
                t.as_secs_f64() / ours.as_secs_f64()
            ),
            None => println!("detect-secrets {name}: failed"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
