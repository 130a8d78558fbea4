//! Measured quality: recall on the positive corpus (one realistic synthetic
//! value per built-in rule, in context) and false positives on the negative
//! corpus (real-world source, docs, lockfiles, a model-API conversation,
//! inline images, ids and hashes). Fails below 100% recall or above 0 false
//! positives, and prints what it missed or wrongly found.

use std::path::{Path, PathBuf};

use dlp::{KnownSecrets, RuleSet, ScanOptions, Scanner};

fn corpus(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn recall_is_100_percent_on_the_positive_corpus() {
    let scanner = Scanner::builtin();
    let positives = corpus("positives");
    let mut missed = Vec::new();
    for (path, bytes) in &positives {
        let text = String::from_utf8_lossy(bytes);
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("positive files start with '# expect: <rule>'");
        let findings = scanner.scan(bytes, None);
        if !findings.iter().any(|f| f.rule == expect) {
            missed.push(format!(
                "{}: expected {expect}, found {:?}",
                path.display(),
                findings.iter().map(|f| &f.rule).collect::<Vec<_>>()
            ));
        }
    }
    let recall = 100.0 * (positives.len() - missed.len()) as f64 / positives.len() as f64;
    println!("recall: {recall:.1}% of {} positives", positives.len());
    assert!(missed.is_empty(), "recall {recall:.1}%; missed:\n{}", missed.join("\n"));
}

#[test]
fn every_builtin_rule_has_a_positive() {
    let names: Vec<String> =
        corpus("positives").iter().map(|(p, _)| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for rule in &RuleSet::builtin().rules {
        assert!(names.contains(&rule.id), "rule {} has no positives/{}.txt", rule.id, rule.id);
    }
}

#[test]
fn no_false_positives_on_the_negative_corpus() {
    let options = ScanOptions { crypto: true, ..ScanOptions::default() };
    let scanner = Scanner::new(RuleSet::builtin().clone(), KnownSecrets::new(), options);
    let negatives = corpus("negatives");
    let mut total = 0;
    let mut wrong = Vec::new();
    for (path, bytes) in &negatives {
        total += bytes.len();
        for f in scanner.scan(bytes, Some(&path.to_string_lossy())) {
            wrong.push(format!("{}: {} {}", path.file_name().unwrap().to_string_lossy(), f.rule, f.snippet));
        }
    }
    println!("false positives: {} in {} files, {} bytes", wrong.len(), negatives.len(), total);
    assert!(negatives.len() >= 20 && total > 500_000, "the negative corpus is too small to mean anything");
    assert!(wrong.is_empty(), "{} false positive(s):\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn a_real_gitleaks_config_loads_and_runs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gitleaks-default.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let set = RuleSet::parse(&text, &path.display().to_string()).unwrap();
    assert!(set.rules.len() >= 200, "{}", set.rules.len());
    assert!(!set.global.is_empty(), "its global allowlist");
    let scanner = Scanner::new(set, KnownSecrets::new(), ScanOptions::default());
    let findings = scanner.scan(b"export GITHUB_TOKEN=ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio\n", None);
    assert!(findings.iter().any(|f| f.rule.contains("github")), "{findings:?}");
    for (_, bytes) in corpus("positives") {
        let _ = scanner.scan(&bytes, None);
    }
}
