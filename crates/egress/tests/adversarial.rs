//! Measured containment: the project's adversarial corpus
//! (`tests/adversarial/cases.jsonl`, written by `generate.py` from public
//! knowledge of exfiltration and injection techniques, with benign
//! look-alikes) through the egress decision pipeline, every destination
//! routed so that only inspection can contain an attack. Prints the figures
//! per class, the held-back third apart; fails when benign traffic is
//! refused more than the target allows or containment falls below what the
//! detectors reached when this corpus was written (a regression floor, not
//! the 95 % target: docs/benchmarks.md says which classes are short of it).

use std::collections::BTreeMap;

use dlp::{KnownSecrets, RuleSet, ScanOptions, Scanner};
use egress::decision::{ResponseDecision, Safelist};
use egress::{Decision, Request, RouteSpec, Tokens, decide, decide_response, load, render};
use manifest::{Dlp, GitPolicy, OnMatch, Route};
use secret::Secret;

const PLANTED: &str = "planted-Qx81Lm2Pz7Rk4Wv9Tn3Bc6";
const CANARY: &str = "Zk3Jq9Wm2Lp8Xr5Tv7Nb4Hc6Gd1Fs0Ae";

/// Benign traffic refused, at most (the target).
const MAX_BENIGN_BLOCKED: f64 = 2.0;
/// Containment on each split, at least (the target; both splits
/// reached it once reversed and ROT13 known values were matched).
const MIN_CONTAINED: f64 = 95.0;

fn route(host: &str) -> RouteSpec {
    let route = Route {
        host: host.into(),
        auth: None,
        matches: vec![],
        dlp: Dlp { outbound_on_match: Some(OnMatch::Block), ..Dlp::default() },
        git: GitPolicy::default(),
        ports: vec![],
        allow_private: false,
    };
    RouteSpec { route, auth: None, on_match: OnMatch::Block, provider: false }
}

#[derive(Default)]
struct Tally {
    total: usize,
    contained: usize,
    defused: usize,
}

#[test]
fn the_adversarial_corpus() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/adversarial/cases.jsonl")).unwrap();
    let file = load(&render(&[route("api.example.com"), route("*.cdn.example.net")], 0).text).unwrap();
    let mut known = KnownSecrets::new();
    known.register("env:PLANTED", &Secret::new(PLANTED.to_string()));
    known.register(dlp::Canary::NAME, &Secret::new(CANARY.to_string()));
    let scanner = Scanner::new(RuleSet::builtin().clone(), known, ScanOptions::default());
    let safelist = Safelist::default();
    let tokens = Tokens::default();

    // (kind, split, class) -> tally
    let mut tallies: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    let mut misses = Vec::new();
    for line in text.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        let (contained, defused) = if s("direction") == "request" {
            let r = &c["request"];
            let headers: Vec<(String, String)> = r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_str().unwrap().to_string()))
                .collect();
            let req = Request {
                method: r["method"].as_str().unwrap(),
                host: r["host"].as_str().unwrap(),
                path_and_query: r["target"].as_str().unwrap(),
                headers,
                body: r["body"].as_str().unwrap().as_bytes(),
                tls: true,
            };
            let d = decide(&file.table, &|_| &scanner, &tokens, &safelist, &req);
            (matches!(d, Decision::Block(_) | Decision::Hold { .. }), false)
        } else {
            let r = &c["response"];
            let route = file.table.lookup("api.example.com").unwrap();
            match decide_response(route, r["content_type"].as_str(), r["body"].as_str().unwrap().as_bytes()) {
                ResponseDecision::Block(_) => (true, false),
                ResponseDecision::Defuse { .. } => (true, true),
                ResponseDecision::Warn(_) | ResponseDecision::Pass => (false, false),
            }
        };
        let t = tallies.entry((s("kind"), s("split"), s("cls"))).or_default();
        t.total += 1;
        let attack = s("kind") == "attack";
        // For a benign case "contained" means refused: a defused benign page
        // went through, changed, and is counted apart.
        let counted = if attack { contained } else { contained && !defused };
        t.contained += usize::from(counted);
        t.defused += usize::from(defused);
        // The held-back third's misses are counted, never listed: what is
        // tuned against is the design split alone.
        if s("split") == "design" && (attack != counted || (!attack && defused)) {
            misses.push(format!(
                "{} {} ({}): {}",
                s("split"),
                s("id"),
                s("cls"),
                if attack {
                    "not contained"
                } else if defused {
                    "benign, defused"
                } else {
                    "benign, refused"
                }
            ));
        }
    }

    let mut sums: BTreeMap<(String, String), Tally> = BTreeMap::new();
    println!("{:<7} {:<8} {:<34} {:>6} {:>9} {:>8}", "kind", "split", "class", "cases", "contained", "defused");
    for ((kind, split, class), t) in &tallies {
        let word = if kind == "attack" { "contained" } else { "refused" };
        println!("{kind:<7} {split:<8} {class:<34} {:>6} {:>9} {:>8}  ({word})", t.total, t.contained, t.defused);
        let sum = sums.entry((kind.clone(), split.clone())).or_default();
        sum.total += t.total;
        sum.contained += t.contained;
        sum.defused += t.defused;
    }
    let pct = |t: &Tally| 100.0 * t.contained as f64 / t.total.max(1) as f64;
    for ((kind, split), t) in &sums {
        let what = if kind == "attack" { "contained" } else { "benign refused" };
        println!("{kind} {split}: {what} {:.1}% of {} ({} defused)", pct(t), t.total, t.defused);
    }
    println!("design cases not handled as expected:\n  {}", misses.join("\n  "));
    for ((kind, split), t) in &sums {
        if kind == "attack" {
            assert!(pct(t) >= MIN_CONTAINED, "{split}: containment {:.1}% < {MIN_CONTAINED}%", pct(t));
        } else {
            assert!(pct(t) <= MAX_BENIGN_BLOCKED, "{split}: benign refused {:.1}% > {MAX_BENIGN_BLOCKED}%", pct(t));
        }
    }
}
