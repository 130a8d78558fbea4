//! git-gate with real peers: a real `sshd` (Debian's openssh-server, its own
//! host key) serving bare repos as the upstream, the gate run as
//! `bot-bottle git-gate` from a bottle file, and real `git` clients whose
//! `~/.gitconfig` is what the gate renders for an agent. Every refused push
//! is checked on the upstream repository itself: nothing reached it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::gitea::{fake_gitea, fake_gitea_with};
use support::sshd::{Sshd, keygen};

const LEAK: &str = "ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio";

/// The pushes a red team used to carry a value past `git log -p`.
const RED_TEAM: &str = include_str!("support/git-red-team.sh");

/// Everything a repository stores: every object's content and every ref's
/// name.
fn stored(repo: &Path) -> Vec<u8> {
    let mut all = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch", "--unordered"])
        .current_dir(repo)
        .output()
        .unwrap()
        .stdout;
    all.extend(run(repo, "git", &["for-each-ref", "--format=%(refname)"]).stdout);
    all
}

fn holds(repo: &Path, value: &str) -> bool {
    stored(repo).windows(value.len()).any(|w| w == value.as_bytes())
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// An upstream bare repo with one commit on `main`.
fn upstream_repo(dir: &Path, name: &str) -> PathBuf {
    let bare = dir.join(format!("{name}.git"));
    ok(run(dir, "git", &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()]));
    let seed = dir.join(format!("{name}-seed"));
    ok(run(dir, "git", &["init", "-q", "-b", "main", seed.to_str().unwrap()]));
    std::fs::write(seed.join("README.md"), "widgets\n").unwrap();
    for args in [
        &["add", "."][..],
        &["-c", "user.name=Seed", "-c", "user.email=seed@example.com", "commit", "-qm", "seed"],
        &["push", "-q", bare.to_str().unwrap(), "main"],
    ] {
        ok(run(&seed, "git", args));
    }
    bare
}

fn rev(repo: &Path, name: &str) -> Option<String> {
    let o = run(repo, "git", &["rev-parse", "--verify", "-q", name]);
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The gate run as a user (or the sidecar) runs it.
struct GateProcess {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gate(dir: &Path, bottle: &str, env: &[(&str, &str)]) -> GateProcess {
    start_gate_on(dir, bottle, env, "127.0.0.1:0")
}

fn start_gate_on(dir: &Path, bottle: &str, env: &[(&str, &str)], listen: &str) -> GateProcess {
    let file = dir.join("gate.md");
    std::fs::write(&file, bottle).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
    cmd.args(["git-gate", "--bottle"])
        .arg(&file)
        .arg("--dir")
        .arg(dir.join("gate"))
        .args(["--listen", listen])
        .envs(env.iter().copied());
    let server = support::start(cmd, "bot-bottle: git-gate serving ");
    let addr = server.ready.split_once(" on ").map(|(_, a)| a.to_string()).expect("the address");
    let support::Server { child, log, .. } = server;
    GateProcess { child, addr, log }
}

fn bottle(url: &str, host_key: &str, key: &Path) -> String {
    bottle_with(url, host_key, key, "")
}

/// A bottle whose repo has `extra` keys (each line indented as a repo key).
fn bottle_with(url: &str, host_key: &str, key: &Path, extra: &str) -> String {
    format!(
        "---\ngit-gate:\n  user: {{name: Test Bot, email: bot@example.com}}\n  repos:\n    widgets:\n      url: {url}\n      host_key: \"{host_key}\"\n      key: {{provider: static, path: {}}}\n{extra}---\n",
        key.display()
    )
}

/// An agent's git: only the config the gate renders (no system or user
/// config, no SSH agent), in `home`.
struct Agent {
    home: PathBuf,
}

impl Agent {
    fn new(dir: &Path, gate: &str, upstream: &str) -> Agent {
        let home = dir.join("agent-home");
        std::fs::create_dir_all(&home).unwrap();
        let config = git_gate::gitconfig::agent_gitconfig(
            Some("Test Bot"),
            Some("bot@example.com"),
            &[("widgets".to_string(), upstream.to_string())],
            &format!("http://{gate}"),
        );
        std::fs::write(home.join(".gitconfig"), config).unwrap();
        Agent { home }
    }

    /// `program` in `cwd` with this agent's home and no other git config.
    fn run(&self, program: &str, cwd: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_CONFIG_GLOBAL")
            .env_remove("SSH_AUTH_SOCK")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> Output {
        self.run("git", cwd, args)
    }

    /// Bash with this agent's git, `script` after the red team's functions.
    fn sh(&self, cwd: &Path, script: &str) -> Output {
        self.run("bash", cwd, &["-c", &format!("{RED_TEAM}\n{script}")])
    }

    fn commit(&self, work: &Path, file: &str, text: &str, message: &str) {
        std::fs::write(work.join(file), text).unwrap();
        ok(self.git(work, &["add", file]));
        ok(self.git(work, &["commit", "-qm", message]));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// One test's peers; dropped in order: the gate and sshd stop before
/// their directory goes.
struct World {
    gate: GateProcess,
    sshd_url: String,
    _sshd: Sshd,
    upstream: PathBuf,
    agent: Agent,
    work: PathBuf,
    dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let upstream = upstream_repo(dir.path(), "widgets");
    let url = sshd.url(&upstream);
    let gate = start_gate(dir.path(), &bottle(&url, &sshd.host_key, &sshd.client_key), &[]);
    let agent = Agent::new(dir.path(), &gate.addr, &url);
    let work = dir.path().join("work");
    let o = agent.git(dir.path(), &["clone", "-q", &url, work.to_str().unwrap()]);
    ok(o);
    World { gate, sshd_url: url, _sshd: sshd, upstream, agent, work, dir }
}

#[test]
fn clone_fetch_and_a_clean_push_reach_the_upstream_through_the_gate() {
    let w = world();
    // The clone came through the gate, not over SSH: its remote is rewritten.
    let remote = ok(w.agent.git(&w.work, &["remote", "get-url", "origin"]));
    assert_eq!(remote, format!("http://{}/widgets.git", w.gate.addr));
    w.agent.commit(&w.work, "a.txt", "hello\n", "add a");
    let o = w.agent.git(&w.work, &["push", "origin", "main"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("git-gate: 1 commit(s) scanned, clean; forwarded upstream"), "{}", stderr(&o));
    assert_eq!(rev(&w.upstream, "main"), rev(&w.work, "HEAD"));
    // Work done upstream by someone else arrives with a fetch.
    let other = w.dir.path().join("other");
    ok(run(w.dir.path(), "git", &["clone", "-q", w.upstream.to_str().unwrap(), other.to_str().unwrap()]));
    std::fs::write(other.join("b.txt"), "from upstream\n").unwrap();
    ok(run(&other, "git", &["add", "."]));
    ok(run(&other, "git", &["-c", "user.name=O", "-c", "user.email=o@example.com", "commit", "-qm", "upstream work"]));
    ok(run(&other, "git", &["push", "-q", "origin", "main"]));
    ok(w.agent.git(&w.work, &["pull", "-q", "--ff-only"]));
    assert_eq!(rev(&w.work, "HEAD"), rev(&w.upstream, "main"));
    // The decision is logged, with no value.
    let log = w.gate.log.lock().unwrap().join("\n");
    assert!(log.contains("\"event\":\"push\"") && log.contains("\"verdict\":\"forwarded\""), "{log}");
}

#[test]
fn a_secret_anywhere_in_what_a_push_introduces_refuses_the_whole_push() {
    let w = world();
    let before = rev(&w.upstream, "main");
    let refused = |args: &[&str], what: &str| {
        let o = w.agent.git(&w.work, args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{what}: pushed\n{err}");
        assert!(err.contains("git-gate: push refused"), "{what}: {err}");
        assert!(err.contains("github-pat"), "{what}: {err}");
        assert!(!err.contains(&LEAK[8..]), "{what}: the value reached the agent's terminal: {err}");
        err
    };
    // In the 2nd of 3 commits on an existing branch.
    w.agent.commit(&w.work, "one.txt", "one\n", "one");
    w.agent.commit(&w.work, "config.env", &format!("A=1\nGH_TOKEN={LEAK}\n"), "two");
    w.agent.commit(&w.work, "three.txt", "three\n", "three");
    let err = refused(&["push", "origin", "main"], "existing branch");
    assert!(err.contains("config.env:2"), "names file and line: {err}");
    // The same commits on a new branch.
    refused(&["push", "origin", "main:refs/heads/feature"], "new branch");
    assert_eq!(rev(&w.upstream, "feature"), None);
    ok(w.agent.git(&w.work, &["reset", "-q", "--hard", "origin/main"]));
    // In a commit message.
    w.agent.commit(&w.work, "m.txt", "m\n", &format!("deploy with {LEAK}"));
    let err = refused(&["push", "origin", "main"], "commit message");
    assert!(err.contains("(commit message)"), "{err}");
    ok(w.agent.git(&w.work, &["reset", "-q", "--hard", "origin/main"]));
    // In a merge commit's own change (an "evil merge").
    ok(w.agent.git(&w.work, &["checkout", "-q", "-b", "side"]));
    w.agent.commit(&w.work, "side.txt", "side\n", "side");
    ok(w.agent.git(&w.work, &["checkout", "-q", "main"]));
    w.agent.commit(&w.work, "main.txt", "main\n", "main");
    ok(w.agent.git(&w.work, &["merge", "-q", "--no-commit", "side"]));
    std::fs::write(w.work.join("merge.env"), format!("K={LEAK}\n")).unwrap();
    ok(w.agent.git(&w.work, &["add", "merge.env"]));
    ok(w.agent.git(&w.work, &["commit", "-qm", "merge side"]));
    let err = refused(&["push", "origin", "main"], "merge commit");
    assert!(err.contains("merge.env:1"), "{err}");
    ok(w.agent.git(&w.work, &["reset", "-q", "--hard", "origin/main"]));
    // In an annotated tag's message, and in a commit only a tag reaches.
    ok(w.agent.git(&w.work, &["tag", "-a", "v1", "-m", &format!("release {LEAK}")]));
    refused(&["push", "origin", "v1"], "tag message");
    ok(w.agent.git(&w.work, &["checkout", "-q", "--detach"]));
    w.agent.commit(&w.work, "t.env", &format!("T={LEAK}\n"), "tagged only");
    ok(w.agent.git(&w.work, &["tag", "v2"]));
    refused(&["push", "origin", "v2"], "tagged commit");
    // Nothing reached the upstream, and the gate's mirror is unchanged too.
    assert_eq!(rev(&w.upstream, "main"), before);
    for tag in ["v1", "v2", "feature"] {
        assert_eq!(rev(&w.upstream, tag), None, "{tag} reached the upstream");
    }
    let mirror = w.dir.path().join("gate/mirrors/widgets.git");
    assert_eq!(rev(&mirror, "main"), before);
    for line in w.gate.log.lock().unwrap().iter() {
        assert!(!line.contains(&LEAK[8..]), "{line}");
    }
}

#[test]
fn every_object_a_push_introduces_is_scanned_not_only_what_git_log_shows() {
    let w = world();
    let cases = RED_TEAM
        .lines()
        .find_map(|l| l.strip_prefix("SMUGGLING=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the red team names its smuggling pushes");
    let mut failures = Vec::new();
    for (i, case) in cases.split_whitespace().enumerate() {
        let clone = w.dir.path().join(format!("red-{i}"));
        ok(w.agent.git(w.dir.path(), &["clone", "-q", &w.sshd_url, clone.to_str().unwrap()]));
        // A value of its own: one case's leak does not fail the next.
        let value = format!("{}{i:04}", &LEAK[..36]);
        let o = w.agent.sh(&clone, &format!("export V='{value}' R={i}\n{case}; echo PUSH-EXIT $?"));
        let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
        let gate_lines: Vec<&str> = err.lines().filter(|l| l.contains("git-gate:")).collect();
        if !out.contains("PUSH-EXIT") || out.contains("PUSH-EXIT 9") {
            failures.push(format!("{case}: the push was never made\n{out}{err}"));
        } else if out.contains("PUSH-EXIT 0") || holds(&w.upstream, &value) {
            failures.push(format!("{case}: reached the upstream\n{err}"));
        } else if !err.contains("git-gate: push refused") {
            failures.push(format!("{case}: refused, but not by the gate's scan\n{err}"));
        } else if gate_lines.iter().any(|l| l.contains(&value[8..])) {
            failures.push(format!("{case}: the gate's answer shows the value\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let mirror = w.dir.path().join("gate/mirrors/widgets.git");
    assert!(!holds(&mirror, &LEAK[..36]), "the gate's mirror kept a refused object or ref");
    for line in w.gate.log.lock().unwrap().iter() {
        assert!(!line.contains(&LEAK[8..36]), "the gate logged the value: {line}");
    }
    // A clean push of the same shapes goes through (the scan is not just
    // refusing what it cannot read).
    let clean = w.dir.path().join("clean");
    ok(w.agent.git(w.dir.path(), &["clone", "-q", &w.sshd_url, clean.to_str().unwrap()]));
    let o = w.agent.sh(
        &clean,
        "export V=nothing-to-see R=clean\n\
         octopus_merge && tag_of_a_blob && a_nul_byte_in_a_file && a_tag_of_a_tag && echo ALL-PUSHED",
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("ALL-PUSHED"), "{}", stderr(&o));
    assert!(rev(&w.upstream, "refs/tags/outer-clean").is_some());
}

#[test]
fn deleting_or_rewriting_upstream_history_needs_the_repo_to_allow_it() {
    let w = world();
    let before = rev(&w.upstream, "main");
    for case in ["delete_upstream_main", "rewrite_upstream_main"] {
        let o = w.agent.sh(&w.work, &format!("{case}; echo PUSH-EXIT $?"));
        let err = stderr(&o);
        assert!(!String::from_utf8_lossy(&o.stdout).contains("PUSH-EXIT 0"), "{case}: pushed\n{err}");
        assert!(err.contains("git-gate: push refused: it would delete or rewrite upstream history"), "{case}: {err}");
        let key = if case.starts_with("delete") { "allow_delete: true" } else { "allow_force_push: true" };
        assert!(err.contains(key), "{case}: the refusal names the key that would allow it: {err}");
        assert_eq!(rev(&w.upstream, "main"), before, "{case}: upstream main changed");
    }
}

#[test]
fn allow_comments_need_the_operator_and_there_is_none_here() {
    let w = world();
    let before = rev(&w.upstream, "main");
    w.agent.commit(&w.work, "fixture.env", &format!("GH={LEAK} # bot-bottle:allow test fixture\n"), "fixture");
    let o = w.agent.git(&w.work, &["push", "origin", "main"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("marked allowed need the operator's approval"), "{err}");
    assert!(err.contains("no operator to ask"), "{err}");
    assert_eq!(rev(&w.upstream, "main"), before);
}

#[test]
fn force_push_deletion_and_a_large_binary_are_forwarded_when_allowed_and_upstream_refusals_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let upstream = upstream_repo(dir.path(), "widgets");
    let url = sshd.url(&upstream);
    let allowing =
        bottle_with(&url, &sshd.host_key, &sshd.client_key, "      allow_force_push: true\n      allow_delete: true\n");
    let gate = start_gate(dir.path(), &allowing, &[]);
    let agent = Agent::new(dir.path(), &gate.addr, &url);
    let work = dir.path().join("work");
    ok(agent.git(dir.path(), &["clone", "-q", &url, work.to_str().unwrap()]));
    let w = World { gate, sshd_url: url, _sshd: sshd, upstream, agent, work, dir };
    // A 50 MB binary file.
    let big: Vec<u8> = (0..50 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(w.work.join("blob.bin"), &big).unwrap();
    ok(w.agent.git(&w.work, &["add", "blob.bin"]));
    ok(w.agent.git(&w.work, &["commit", "-qm", "big binary"]));
    let o = w.agent.git(&w.work, &["push", "origin", "main"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rev(&w.upstream, "main"), rev(&w.work, "HEAD"));
    // A force push (history rewritten) goes through, with a lease.
    ok(w.agent.git(&w.work, &["commit", "-q", "--amend", "-m", "big binary, reworded"]));
    let o = w.agent.git(&w.work, &["push", "--force", "origin", "main"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rev(&w.upstream, "main"), rev(&w.work, "HEAD"));
    // A branch, then its deletion.
    ok(w.agent.git(&w.work, &["push", "-q", "origin", "main:refs/heads/topic"]));
    assert!(rev(&w.upstream, "topic").is_some());
    let o = w.agent.git(&w.work, &["push", "origin", "--delete", "topic"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rev(&w.upstream, "topic"), None);
    // The upstream refuses a protected branch: relayed, and the gate's
    // mirror keeps its old value.
    let hook = w.upstream.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\nwhile read old new ref; do\n  [ \"$ref\" = refs/heads/protected ] && { echo 'protected branch' >&2; exit 1; }\ndone\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = w.agent.git(&w.work, &["push", "origin", "main:refs/heads/protected"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("push refused by the upstream") && err.contains("protected branch"), "{err}");
    assert_eq!(rev(&w.dir.path().join("gate/mirrors/widgets.git"), "protected"), None);
}

#[test]
fn a_wrong_host_key_or_a_down_upstream_fails_the_fetch_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let upstream = upstream_repo(dir.path(), "widgets");
    let url = sshd.url(&upstream);
    // Pinned to another key: the gate refuses to talk to this upstream.
    let other = keygen(&dir.path().join("other_host_key"));
    let gate = start_gate(dir.path(), &bottle(&url, &other, &sshd.client_key), &[]);
    let agent = Agent::new(dir.path(), &gate.addr, &url);
    let o = agent.git(dir.path(), &["clone", "-q", &url, dir.path().join("w").to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("remote error: git-gate: upstream") && err.contains("Host key verification failed"), "{err}");
    drop(gate);
    // The right key, then the upstream goes down.
    let gate = start_gate(dir.path(), &bottle(&url, &sshd.host_key, &sshd.client_key), &[]);
    let agent = Agent::new(dir.path(), &gate.addr, &url);
    let work = dir.path().join("work");
    ok(agent.git(dir.path(), &["clone", "-q", &url, work.to_str().unwrap()]));
    drop(sshd);
    let o = agent.git(&work, &["fetch"]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("remote error: git-gate: upstream") && err.contains("unreachable"), "{err}");
}

#[test]
fn malformed_requests_are_answered_and_the_gate_keeps_serving() {
    use std::io::{Read, Write};
    let w = world();
    let bodies: [&[u8]; 5] = [
        b"zzzz",
        b"0004",
        b"ffff\x00\x01garbage",
        b"0032want 0000000000000000000000000000000000000000\n00000009done\n",
        &[0xff; 300],
    ];
    for service in ["git-upload-pack", "git-receive-pack"] {
        for body in bodies {
            let mut s = std::net::TcpStream::connect(&w.gate.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let head = format!(
                "POST /widgets.git/{service} HTTP/1.1\r\nHost: gate\r\nContent-Type: application/x-{service}-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            assert!(out.starts_with(b"HTTP/1.1 "), "{service}: {}", String::from_utf8_lossy(&out));
        }
    }
    for path in ["/nope.git/info/refs?service=git-upload-pack", "/widgets.git/info/refs", "/widgets.git/HEAD", "/"] {
        let mut s = std::net::TcpStream::connect(&w.gate.addr).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 403") || out.starts_with("HTTP/1.1 404"), "{path}: {out}");
    }
    // Still serving.
    ok(w.agent.git(&w.work, &["fetch", "-q"]));
}

/// An operator that answers every proposal the same way, and remembers.
struct Operator {
    answer: proposal::Verdict,
    seen: Mutex<Vec<proposal::Proposal>>,
}

impl proposal::ProposalSink for Operator {
    fn propose(&self, p: proposal::Proposal) -> proposal::VerdictFuture {
        self.seen.lock().unwrap().push(p);
        let answer = self.answer.clone();
        Box::pin(async move { answer })
    }
}

/// The gate in this process, with `operator` as its proposal sink; the
/// mirrors' hook is the real binary. Returns the gate's address.
fn gate_with_operator(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    sshd: &Sshd,
    url: &str,
    operator: Arc<Operator>,
) -> String {
    let hook = format!("'{}' git-gate-hook", env!("CARGO_BIN_EXE_bot-bottle"));
    let key = std::fs::read(&sshd.client_key).unwrap();
    let gate_dir = dir.join("gate");
    let mirror = git_gate::Mirror::create(&gate_dir, "widgets", url, &sshd.host_key, &key, &hook).unwrap();
    runtime.block_on(async {
        let (socket, hooks) = git_gate::gate::bind_hook_socket(&gate_dir.join("run")).unwrap();
        let gate = Arc::new(git_gate::Gate::new(
            vec![mirror],
            dlp::KnownSecrets::new(),
            operator,
            git_gate::Limits::default(),
            socket,
        ));
        tokio::spawn(gate.clone().serve_hooks(hooks));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        test_support::accept_each(listener, move |tcp| gate.clone().serve(tcp));
        addr
    })
}

#[test]
fn an_operator_approval_with_a_reason_lets_a_marked_push_through() {
    use proposal::{Proposal, Verdict};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cases = [
        (Verdict::Approved { reason: "test fixture, not a live token".into() }, true),
        (Verdict::Approved { reason: " ".into() }, false),
        (Verdict::Rejected { reason: "rotate it".into() }, false),
    ];
    for (answer, passes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let sshd = Sshd::start(dir.path());
        let upstream = upstream_repo(dir.path(), "widgets");
        let url = sshd.url(&upstream);
        let operator = Arc::new(Operator { answer: answer.clone(), seen: Mutex::new(Vec::new()) });
        let addr = gate_with_operator(&runtime, dir.path(), &sshd, &url, operator.clone());
        let agent = Agent::new(dir.path(), &addr, &url);
        let work = dir.path().join("work");
        ok(agent.git(dir.path(), &["clone", "-q", &url, work.to_str().unwrap()]));
        agent.commit(&work, "fixture.env", &format!("GH={LEAK} # gitleaks:allow\n"), "fixture");
        let o = agent.git(&work, &["push", "origin", "main"]);
        assert_eq!(o.status.success(), passes, "{answer:?}: {}", stderr(&o));
        assert_eq!(rev(&upstream, "main") == rev(&work, "HEAD"), passes, "{answer:?}");
        // One proposal, naming the place and never the value.
        let seen = operator.seen.lock().unwrap();
        let Some(Proposal::GitPushAllow(p)) = seen.first() else { panic!("{seen:?}") };
        assert_eq!((p.repo.as_str(), p.refs.as_slice()), ("widgets", &["refs/heads/main".to_string()][..]));
        assert_eq!((p.findings[0].path.as_str(), p.findings[0].line), ("fixture.env", 1));
        assert!(!format!("{p:?}").contains(&LEAK[8..]));
    }
}

#[test]
fn a_gitea_deploy_key_is_minted_at_start_used_and_revoked_at_stop() {
    for (delete_status, clean_exit) in [(204, true), (404, true), (500, false)] {
        let dir = tempfile::tempdir().unwrap();
        let sshd = Sshd::start(dir.path());
        // Only the deploy key will open the upstream.
        std::fs::write(dir.path().join("authorized_keys"), "").unwrap();
        let upstream = upstream_repo(dir.path(), "widgets");
        let url = sshd.url(&upstream);
        let gitea = fake_gitea(dir.path().join("authorized_keys"), delete_status);
        let bottle = format!(
            "---\ngit-gate:\n  repos:\n    widgets:\n      url: {url}\n      host_key: \"{}\"\n      key: {{provider: gitea, provisioner_token: GITEA_TOKEN}}\n---\n",
            sshd.host_key
        );
        let gitea_url = format!("http://127.0.0.1:{}", gitea.port);
        let mut gate = start_gate(
            dir.path(),
            &bottle,
            &[("GITEA_TOKEN", "provisioner-secret-123"), ("BOT_BOTTLE_GITEA_URL", gitea_url.as_str())],
        );
        let agent = Agent::new(dir.path(), &gate.addr, &url);
        let work = dir.path().join("work");
        ok(agent.git(dir.path(), &["clone", "-q", &url, work.to_str().unwrap()]));
        let calls = gitea.calls.lock().unwrap().clone();
        let owner_repo = upstream.display().to_string();
        let owner_repo = owner_repo.trim_matches('/').trim_end_matches(".git");
        assert_eq!(calls[0].0, format!("POST /api/v1/repos/{owner_repo}/keys HTTP/1.1"));
        assert_eq!(calls[0].1, "token provisioner-secret-123");
        assert!(calls[0].2.contains("ssh-ed25519 ") && calls[0].2.contains("\"read_only\":false"), "{}", calls[0].2);
        // Stop: the key is revoked; a failure to revoke is loud.
        unsafe { libc::kill(gate.child.id() as i32, libc::SIGTERM) };
        let status = gate.child.wait().unwrap();
        let calls = gitea.calls.lock().unwrap().clone();
        assert_eq!(calls.last().unwrap().0, format!("DELETE /api/v1/repos/{owner_repo}/keys/42 HTTP/1.1"));
        assert_eq!(status.success(), clean_exit, "DELETE {delete_status}");
        if !clean_exit {
            // The log reader may still be draining the exited process's stderr.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let log = gate.log.lock().unwrap().join("\n");
                if log.contains("REVOKE FAILED") && log.contains("HTTP 500") {
                    break;
                }
                assert!(Instant::now() < deadline, "{log}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The gate mints one repo's key, then the second registration fails: the
/// first key is revoked on the way out. A key an earlier run minted and
/// was killed before recording (the ledger has its title, no id) is found
/// by title and revoked too. No key is left registered.
#[test]
fn a_failed_mint_and_a_killed_earlier_run_leave_no_deploy_key() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    std::fs::write(dir.path().join("authorized_keys"), "").unwrap();
    // Whichever repo the gate mints second, its registration fails.
    let widgets = upstream_repo(dir.path(), "alpha");
    let gadgets = upstream_repo(dir.path(), "beta");
    let stale_title = "bot-bottle git-gate alpha 0badc0de";
    let gitea = fake_gitea_with(dir.path().join("authorized_keys"), 204, Some(2), vec![(7, stale_title.to_string())]);
    // The earlier run wrote its intent, minted key 7, and was killed.
    let gate_dir = dir.path().join("gate");
    std::fs::create_dir_all(&gate_dir).unwrap();
    let owner_repo = |p: &Path| p.display().to_string().trim_matches('/').trim_end_matches(".git").to_string();
    let stale = serde_json::json!([{"repo": "alpha", "url": sshd.url(&widgets), "owner_repo": owner_repo(&widgets),
        "title": stale_title, "token_ref": "GITEA_TOKEN", "id": null}]);
    std::fs::write(gate_dir.join("deploy-keys.json"), stale.to_string()).unwrap();
    let repo = |name: &str, url: &str| {
        format!(
            "    {name}:\n      url: {url}\n      host_key: \"{}\"\n      key: {{provider: gitea, provisioner_token: GITEA_TOKEN}}\n",
            sshd.host_key
        )
    };
    let bottle = format!(
        "---\ngit-gate:\n  repos:\n{}{}---\n",
        repo("widgets", &sshd.url(&widgets)),
        repo("gadgets", &sshd.url(&gadgets))
    );
    std::fs::write(dir.path().join("gate.md"), bottle).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bot-bottle"))
        .args(["git-gate", "--bottle"])
        .arg(dir.path().join("gate.md"))
        .arg("--dir")
        .arg(&gate_dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("GITEA_TOKEN", "provisioner-secret-123")
        .env("BOT_BOTTLE_GITEA_URL", format!("http://127.0.0.1:{}", gitea.port))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
    let calls: Vec<String> = gitea.calls.lock().unwrap().iter().map(|c| c.0.clone()).collect();
    assert!(calls.iter().any(|c| c.starts_with("DELETE ") && c.contains("/keys/7 ")), "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("DELETE ") && c.contains("/keys/42 ")), "{calls:?}");
    assert!(gitea.keys.lock().unwrap().is_empty(), "left registered: {:?}", gitea.keys.lock().unwrap());
    assert!(!gate_dir.join("deploy-keys.json").exists(), "everything revoked, nothing left to list");
}

#[test]
fn the_gate_listens_on_a_unix_socket_and_refuses_oversized_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path());
    let upstream = upstream_repo(dir.path(), "widgets");
    let socket = dir.path().join("gate.sock");
    let listen = format!("unix:{}", socket.display());
    let gate = start_gate_on(dir.path(), &bottle(&sshd.url(&upstream), &sshd.host_key, &sshd.client_key), &[], &listen);
    assert_eq!(gate.addr, listen);
    let curl = |args: &[&str]| {
        let o =
            Command::new("curl").args(["-sS", "--max-time", "20", "--unix-socket"]).arg(&socket).args(args).output();
        String::from_utf8_lossy(&o.unwrap().stdout).to_string()
    };
    let advert = curl(&["http://gate/widgets.git/info/refs?service=git-upload-pack"]);
    assert!(
        advert.starts_with("001e# service=git-upload-pack\n0000") && advert.contains("refs/heads/main"),
        "{advert}"
    );
    // A push body declared over the limit is refused before git sees it.
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Length: 99999999999",
        "http://gate/widgets.git/git-receive-pack",
    ]);
    assert_eq!(status, "413");
}

#[test]
fn fetches_at_the_same_moment_all_succeed() {
    let w = world();
    // Four clones fetch at once while the upstream has new refs for each
    // refresh to write. (The gate also refreshes a mirror one at a time; a
    // failure without that could not be provoked here, so this test asserts
    // the behaviour, not the lock.)
    let clones: Vec<PathBuf> = (0..4)
        .map(|i| {
            let c = w.dir.path().join(format!("clone{i}"));
            ok(w.agent.git(w.dir.path(), &["clone", "-q", &w.sshd_url, c.to_str().unwrap()]));
            c
        })
        .collect();
    // New work upstream, so every refresh has refs to write.
    let other = w.dir.path().join("other");
    ok(run(w.dir.path(), "git", &["clone", "-q", w.upstream.to_str().unwrap(), other.to_str().unwrap()]));
    for i in 0..40 {
        ok(run(&other, "git", &["branch", &format!("topic-{i}")]));
    }
    ok(run(&other, "git", &["push", "-q", "origin", "refs/heads/*:refs/heads/*"]));
    let handles: Vec<_> = clones
        .into_iter()
        .map(|c| {
            let home = w.agent.home.clone();
            std::thread::spawn(move || Agent { home }.git(&c, &["fetch", "-q"]))
        })
        .collect();
    for h in handles {
        let o = h.join().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
}
