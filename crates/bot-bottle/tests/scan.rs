//! `bot-bottle scan` as a pre-commit user runs it: files, directories,
//! stdin, a real git commit range, a gitleaks rule file; exit 0 clean,
//! 1 found, 2 usage.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

fn bb(args: &[&str], cwd: &Path, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn files_directories_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
    std::fs::write(dir.path().join("src/clean.rs"), "fn main() { println!(\"hi\"); }\n").unwrap();
    std::fs::write(dir.path().join("src/deep/config.env"), format!("A=1\nGITHUB_TOKEN={TOKEN}\n")).unwrap();
    std::fs::create_dir_all(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/ignored"), TOKEN).unwrap();

    let o = bb(&["scan", "src/clean.rs"], dir.path(), None);
    assert_eq!(o.status.code(), Some(0));
    assert!(out(&o).is_empty());

    let o = bb(&["scan"], dir.path(), None);
    assert_eq!(o.status.code(), Some(1));
    let text = out(&o);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("./src/deep/config.env:2: github-pat GITHUB_TOKEN=ghp_…[40 redacted]"), "{text}");
    assert!(!text.contains(TOKEN));

    let o = bb(&["scan", "--json", "src"], dir.path(), None);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(out(&o).lines().next().unwrap()).unwrap();
    assert_eq!(v["rule"], "github-pat");
    assert_eq!(v["line"], 2);
    assert!(!out(&o).contains(TOKEN));

    let o = bb(&["scan", "missing.txt"], dir.path(), None);
    assert_eq!(o.status.code(), Some(2));
    let o = bb(&["scan", "--detectors", "magic"], dir.path(), None);
    assert_eq!(o.status.code(), Some(2));
    let o = bb(&["scan", "--bogus"], dir.path(), None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn stdin_and_opt_in_detectors() {
    let dir = tempfile::tempdir().unwrap();
    let o = bb(
        &["scan", "-"],
        dir.path(),
        Some(&format!("curl -H 'Authorization: token {TOKEN}' https://api.github.com\n")),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).starts_with("-:1: github-pat"), "{}", out(&o));
    // A Luhn-valid number beside a word of payment (not one of the
    // issuers' published test numbers, which are never cards).
    let card = "card 4539 1488 0343 6467 exp 12/29\n";
    assert_eq!(bb(&["scan", "-"], dir.path(), Some(card)).status.code(), Some(0));
    let o = bb(&["scan", "--detectors", "token_patterns,crypto", "-"], dir.path(), Some(card));
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("payment-card-number"));
}

#[test]
fn gitleaks_rule_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("only.toml"),
        "[[rules]]\nid = \"acme-key\"\nregex = '''acme_[0-9a-f]{16}'''\nkeywords = [\"acme_\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("extend.toml"),
        "[extend]\nuseDefault = true\n[[rules]]\nid = \"acme-key\"\nregex = '''acme_[0-9a-f]{16}'''\n",
    )
    .unwrap();
    let input = format!("k=acme_0123456789abcdef\nt={TOKEN}\n");
    let o = bb(&["scan", "--rules", "only.toml", "-"], dir.path(), Some(&input));
    assert_eq!(out(&o).lines().map(|l| l.split(' ').nth(1).unwrap()).collect::<Vec<_>>(), ["acme-key"]);
    let o = bb(&["scan", "--rules", "extend.toml", "-"], dir.path(), Some(&input));
    let text = out(&o);
    assert!(text.contains("acme-key") && text.contains("github-pat"), "{text}");
    std::fs::write(dir.path().join("bad.toml"), "[[rules]]\nid = \"x\"\nregex = '''(unclosed'''\n").unwrap();
    let o = bb(&["scan", "--rules", "bad.toml", "-"], dir.path(), Some(""));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.toml: rule 'x'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn git_ranges_scan_only_what_the_range_adds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("old.env"), format!("OLD={TOKEN}\n")).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "old secret, before the range"]);
    let base = git(d, &["rev-parse", "HEAD"]);
    std::fs::write(d.join("a.txt"), "one\ntwo\n").unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "clean"]);
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDxq0h2Hn7bF1Yf2Yx1mQe6v2Vx9m1lW7oXqg3sZzvG5AAAAJiJ8X7diJ\n-----END OPENSSH PRIVATE KEY-----\n";
    std::fs::write(d.join("a.txt"), format!("one\ntwo\n{key}")).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "add a key"]);
    git(
        d,
        &["commit", "-q", "--allow-empty", "-m", &format!("message with sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc9xKf")],
    );
    let head = git(d, &["rev-parse", "HEAD"]);

    let o = bb(&["scan", "--git", &format!("{base}..HEAD")], d, None);
    assert_eq!(o.status.code(), Some(1));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(":a.txt:3: private-key"), "{text}");
    assert!(lines[1].starts_with(&head[..12]) && lines[1].contains("(commit message):1: stripe-secret-key"), "{text}");
    assert!(!text.contains("OLD="), "history before the range is not scanned: {text}");

    let o = bb(&["scan", "--git", "nonsense..HEAD"], d, None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn files_and_stdin_of_any_size_are_streamed_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 24 MiB of text (above the 16 MiB the scanner takes at once), a token
    // near the start, one across the first window edge (8 MiB), one at the
    // end.
    let filler = "the quick brown fox jumps over the lazy dog\n";
    let mut text = String::new();
    let mut lines = 0;
    let put = |text: &mut String, at: usize, lines: &mut usize| -> usize {
        while text.len() + filler.len() < at {
            text.push_str(filler);
            *lines += 1;
        }
        text.push_str(&format!("key {TOKEN}\n"));
        *lines += 1;
        *lines
    };
    let want: Vec<usize> =
        [100, (8 << 20) - 20, 24 << 20].into_iter().map(|at| put(&mut text, at, &mut lines)).collect();
    std::fs::write(dir.path().join("big.log"), &text).unwrap();
    let o = bb(&["scan", "big.log"], dir.path(), None);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let found: Vec<String> = out(&o).lines().map(str::to_string).collect();
    let expect: Vec<String> = want.iter().map(|l| format!("big.log:{l}: github-pat")).collect();
    assert_eq!(found.iter().filter(|l| l.contains("github-pat")).count(), 3, "{found:?}");
    for e in &expect {
        assert!(found.iter().any(|l| l.starts_with(e.as_str())), "no {e} in {found:?}");
    }
    assert!(!out(&o).contains("too-large"), "{}", out(&o));
    // The same through stdin.
    let o = bb(&["scan", "-"], dir.path(), Some(&text));
    assert_eq!(out(&o).lines().filter(|l| l.contains("github-pat")).count(), 3, "{}", out(&o));
    assert!(out(&o).contains(&format!("-:{}: github-pat", want[2])), "{}", out(&o));
}
