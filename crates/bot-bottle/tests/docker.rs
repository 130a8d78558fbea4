//! The docker backend on a real Docker Engine (scripts/test.sh starts one):
//! the whole lifecycle as a user drives it — headless start, exit codes
//! deciding what state is kept, resume under the same identity, commit and
//! resume from the snapshot, stop, cleanup — plus Ctrl-C during a launch,
//! a killed CLI, and two bottles at once. Every test checks Docker itself
//! for leftovers by label.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::docker::objects;

const LIFE_SECRET: &str = "life-secret-value-Zq7Lm2Px9";

struct Home {
    _tmp: tempfile::TempDir,
    home: PathBuf,
}

impl Home {
    fn new() -> Home {
        support::docker::engine_answers();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bb");
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/docker");
        assert!(Command::new("cp").arg("-r").arg(&fixtures).arg(&home).status().unwrap().success());
        Home { _tmp: tmp, home }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
        cmd.args(args)
            .env("BOT_BOTTLE_HOME", &self.home)
            .env("LIFE_SECRET", LIFE_SECRET)
            .env_remove("BOT_BOTTLE_BACKEND")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn state(&self, identity: &str) -> PathBuf {
        self.home.join("state").join(identity)
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_gone(identity: &str) {
    let (containers, networks) = objects(identity);
    assert!(containers.is_empty() && networks.is_empty(), "{identity} left {containers:?} {networks:?}");
}

/// Start a headless run in the background; returns the child and a reader
/// of its stderr lines.
fn spawn(h: &Home, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    spawn_cmd(h.cmd(args))
}

/// As [`spawn`], for a command the caller has set up further.
fn spawn_cmd(mut cmd: Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("never saw {needle:?}:\n{}", seen.join("\n")),
        }
    }
}

fn wait_running(identity: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while !objects(identity).0.iter().any(|c| c.ends_with("-agent")) {
        assert!(Instant::now() < deadline, "the agent of {identity} never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_lifecycle_as_a_user_drives_it() {
    let h = Home::new();
    // Exit 0: the state goes, and so does every container and network.
    // The command has the env file sourced and exactly the CLI's stdin.
    let prompt = "echo \"$GREETING\"; printf '<%s>' \"$(cat)\"; exit 0";
    let mut child = h
        .cmd(&["start", "life", "--label", "life one", "--headless", "--prompt", prompt])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"3\0piped\n  input\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("hello"), "the env file was not sourced: {}", out(&o));
    assert!(out(&o).contains("<3piped\n  input>"), "the command's stdin was not the CLI's: {}", out(&o));
    assert!(!h.state("life-one").exists());
    assert_gone("life-one");

    // A non-zero exit keeps the state, preserved, and removes the objects.
    let o =
        h.run(&["start", "life", "--label", "keeper", "--headless", "--prompt", "echo kept > /workspace/mark; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(h.state("keeper").join(".preserve").exists());
    assert!(err(&o).contains("resume with `bot-bottle resume keeper`"), "{}", err(&o));
    assert_gone("keeper");
    // The self-test ran and passed before the agent did.
    let checks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.state("keeper").join("selftest.json")).unwrap()).unwrap();
    assert!(checks.as_array().unwrap().iter().all(|c| c["passed"] == true), "{checks}");
    // The sidecar's log was kept for `logs`.
    let logs = h.run(&["logs", "keeper"]);
    assert!(out(&logs).contains("sidecar ready"), "{}{}", out(&logs), err(&logs));

    // The agent's work was copied out at the session end: the user can
    // export it, into a new directory only.
    assert!(err(&o).contains("bot-bottle export keeper DIR"), "{}", err(&o));
    let export = h._tmp.path().join("exported");
    let o = h.run(&["export", "keeper", export.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(export.join("mark")).unwrap(), "kept\n");
    let o = h.run(&["export", "keeper", export.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "export overwrote a directory: {}", err(&o));
    assert!(err(&o).contains("not empty"), "{}", err(&o));

    // The operator approved a route in that session (written as the
    // sidecar writes it): the resume's preflight shows it and the resumed
    // sidecar enforces it again, audited.
    let store = supervise::ProposalStore::open(&supervise::store_path(&h.state("keeper")), "keeper").unwrap();
    let route = egress::route_file::route_from_json(
        serde_json::json!({"host": "approved.example", "matches": [{"methods": ["GET"]}]}),
    )
    .unwrap();
    store
        .audit_route_change(Some(7), &egress::RouteEdit::Allow(route), &serde_json::json!([]), &serde_json::json!([]))
        .unwrap();
    drop(store);
    let o = h.run(&["resume", "keeper", "--dry-run"]);
    assert!(out(&o).contains("+ approved.example (GET)  (proposal #7, approved "), "{}", out(&o));

    // Resume: same identity, fresh containers, the agent's work back.
    let o = h.run(&[
        "resume",
        "keeper",
        "--headless",
        "--prompt",
        "test -f /workspace/mark && echo found || echo fresh; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(out(&o).contains("found"), "the agent's work did not come back: {}", out(&o));
    let routes = std::fs::read_to_string(h.state("keeper").join("egress/routes.json")).unwrap();
    assert!(routes.contains("approved.example"), "{routes}");
    let audit =
        supervise::ProposalStore::open(&supervise::store_path(&h.state("keeper")), "keeper").unwrap().audit().unwrap();
    assert!(audit.iter().any(|a| a.event == "route-reapplied" && a.proposal_id == Some(7)), "{audit:?}");

    // Commit a running bottle, stop it, resume from the snapshot.
    let (mut child, rx) =
        spawn(&h, &["resume", "keeper", "--headless", "--prompt", "echo committed > /workspace/mark; sleep 120"]);
    wait_line(&rx, "isolation self-test");
    wait_running("keeper");
    std::thread::sleep(Duration::from_secs(1));
    let o = h.run(&["list", "active", "--json"]);
    let active: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(active.to_string().contains("keeper"), "{active}");
    let o = h.run(&["commit", "keeper"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "bot-bottle-commit:keeper");
    let o = h.run(&["stop", "keeper"]);
    assert!(o.status.success(), "{}", err(&o));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "a stopped session ends as SIGTERM would");
    // It reads as the stop it was, not as a lost component.
    let said: Vec<String> = rx.iter().collect();
    assert!(said.iter().any(|l| l.contains("keeper was stopped with `bot-bottle stop`")), "{said:?}");
    assert!(!said.iter().any(|l| l.contains("exited (status")), "{said:?}");
    // The stop copied the workspace out; the session's own end finds the
    // agent gone and says nothing of a copy or a commit.
    assert!(!said.iter().any(|l| l.contains("not copied out") || l.contains("commit")), "{said:?}");
    assert_gone("keeper");
    assert!(h.state("keeper").join(".preserve").exists());
    // TLS through the sidecar works from the commit: its CA bundle held the
    // earlier launch's CA, replaced by this launch's (the refusal below
    // comes from inside a TLS tunnel the agent had to trust).
    let o = h.run(&[
        "resume",
        "keeper",
        "--headless",
        "--prompt",
        "cat /workspace/mark; curl -sS https://example.com/; grep -c 'bot-bottle: the bottle CA' /etc/ssl/certs/ca-certificates.crt; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(out(&o).contains("committed"), "resume did not boot the committed image: {}", out(&o));
    assert!(out(&o).contains("no route for host example.com"), "no TLS from the commit: {}{}", out(&o), err(&o));
    assert!(out(&o).lines().any(|l| l.trim() == "1"), "one bottle CA in the bundle: {}", out(&o));

    // Cleanup keeps preserved state unless --all.
    let o = h.run(&["cleanup", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(h.state("keeper").exists());
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!h.state("keeper").exists());
    // Its commit went with it: nothing could boot it any more.
    assert!(out(&o).contains("image bot-bottle-commit:keeper (its commit)"), "{}", out(&o));
    assert!(!image_exists("bot-bottle-commit:keeper"));
}

#[test]
fn a_resume_never_copies_the_host_cwd_over_the_agents_work() {
    let h = Home::new();
    let project = h._tmp.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("orig"), "from the host\n").unwrap();
    let o = h
        .cmd(&[
            "start",
            "life",
            "--label",
            "cwd keeper",
            "--cwd",
            "--headless",
            "--prompt",
            "cat /workspace/orig; echo by the agent > /workspace/orig; exit 3",
        ])
        .current_dir(&project)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(out(&o).contains("from the host"), "--cwd did not copy in: {}", out(&o));
    // The user edits the project meanwhile; the bottle's work is its own.
    std::fs::write(project.join("orig"), "edited on the host\n").unwrap();
    let o = h.run(&["resume", "cwd-keeper", "--headless", "--prompt", "cat /workspace/orig; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(out(&o).contains("by the agent"), "the host's cwd was copied over the agent's work: {}", out(&o));
    assert_eq!(std::fs::read_to_string(project.join("orig")).unwrap(), "edited on the host\n");
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_gone("cwd-keeper");
}

/// A workspace over the copy bound (set low here; 4 GiB by default, which
/// a build directory passes) at a session end: the bottle is committed
/// instead of losing the agent's work with its container, `export` writes
/// it from the commit (or says where it is, when it is over the bound
/// there too), and a resume boots with it; once a copy succeeds
/// again, the kept copy is the latest, `export` writes it, and the next
/// resume puts it in place of the commit's workspace.
#[test]
fn a_workspace_too_large_to_copy_out_is_kept_by_a_commit() {
    let h = Home::new();
    let big = "head -c 3000000 /dev/urandom > /workspace/big; echo latest > /workspace/mark";
    let o = h
        .cmd(&["start", "life", "--label", "bulky", "--headless", "--prompt", &format!("{big}; exit 3")])
        .env("BOT_BOTTLE_WORKSPACE_MAX", "2MiB")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("over 2 MiB") && err(&o).contains("committed instead"), "{}", err(&o));
    assert!(image_exists("bot-bottle-commit:bulky"));
    assert!(h.state("bulky").join("workspace.uncopied").exists());
    assert_gone("bulky");
    // Export under the same bound: the commit's workspace is over it too,
    // so export says where the work is rather than writing an older copy.
    let dest = h._tmp.path().join("bulky-out");
    let o =
        h.cmd(&["export", "bulky", dest.to_str().unwrap()]).env("BOT_BOTTLE_WORKSPACE_MAX", "2MiB").output().unwrap();
    assert!(!o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("bot-bottle resume bulky") && err(&o).contains("over 2 MiB"), "{}", err(&o));
    assert!(!dest.join("mark").exists());
    assert_gone("bulky");
    // Under the default bound it is written from the commit, which is not
    // run for it; that copy is the kept one now.
    let from_commit = h._tmp.path().join("bulky-commit-out");
    let o = h.run(&["export", "bulky", from_commit.to_str().unwrap()]);
    assert!(o.status.success() && err(&o).contains("from the bottle's commit"), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(from_commit.join("mark")).unwrap(), "latest\n");
    assert_eq!(std::fs::metadata(from_commit.join("big")).unwrap().len(), 3_000_000);
    assert!(!h.state("bulky").join("workspace.uncopied").exists());
    assert_gone("bulky");
    // The resume has the work; with the big file gone the copy succeeds.
    let o = h
        .cmd(&["resume", "bulky", "--headless", "--prompt", "cat /workspace/mark; rm /workspace/big; exit 4"])
        .env("BOT_BOTTLE_WORKSPACE_MAX", "2MiB")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(out(&o).contains("latest"), "the agent's work was lost: {}{}", out(&o), err(&o));
    assert!(!h.state("bulky").join("workspace.uncopied").exists());
    let o = h.run(&["export", "bulky", dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(dest.join("mark")).unwrap(), "latest\n");
    assert!(!dest.join("big").exists());
    // The next resume boots the commit again, with the newer kept copy
    // replacing its workspace whole: the file removed since stays removed
    // (else it would come back, and be too large to copy out again).
    let o = h.run(&["resume", "bulky", "--headless", "--prompt", "cat /workspace/mark; ls -A /workspace; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(out(&o).contains("latest") && !out(&o).contains("big"), "{}", out(&o));
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_gone("bulky");
    assert!(!image_exists("bot-bottle-commit:bulky"));
}

/// An interactive session on a real terminal that ends 0: asked before the
/// agent's work goes (also when it is kept only in a commit, too large to
/// copy out); not asked when there is none.
#[test]
fn an_interactive_exit_0_asks_before_the_agents_work_goes() {
    let h = Home::new();
    let session = |name: &str, typed: &str| {
        let script = format!(
            "export BOT_BOTTLE_HOME='{}' LIFE_SECRET=x BOT_BOTTLE_WORKSPACE_MAX=2MiB\nunset BOT_BOTTLE_BACKEND\n{} start life --label {name} -y\necho \"EXIT=$?\"\nsleep 120\n",
            h.home.display(),
            env!("CARGO_BIN_EXE_bot-bottle")
        );
        let dir = h._tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let t = support::tmux::Tmux::run(name, &dir, &script);
        t.wait_for_within("isolation self-test", Duration::from_secs(240));
        wait_running(name);
        std::thread::sleep(Duration::from_secs(2));
        t.keys(&[typed, "Enter"]);
        t
    };
    // Work in the workspace, and Enter at the question: kept.
    let t = session("ask-keep", "echo work > /workspace/new; exit 0");
    let s = t.wait_for_within("remove the bottle and them? [y/N]", Duration::from_secs(60));
    assert!(s.contains("1 change(s) not copied out"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for_within("EXIT=", Duration::from_secs(60));
    assert!(s.contains("EXIT=0") && s.contains("ask-keep's state is kept in"), "{s}");
    assert!(s.contains("bot-bottle export ask-keep DIR"), "{s}");
    assert!(h.state("ask-keep").join(".preserve").exists());
    assert_eq!(std::fs::read_to_string(h.state("ask-keep").join("workspace/new")).unwrap(), "work\n");
    drop(t);
    // Answered "y": removed.
    let t = session("ask-remove", "echo work > /workspace/new; exit 0");
    t.wait_for_within("remove the bottle and them? [y/N]", Duration::from_secs(60));
    t.keys(&["y", "Enter"]);
    let s = t.wait_for_within("EXIT=", Duration::from_secs(60));
    assert!(s.contains("EXIT=0") && s.contains("ask-remove ended with 0: its bottle, workspace and state"), "{s}");
    assert!(!h.state("ask-remove").exists());
    drop(t);
    // Nothing in the workspace: not asked, removed as before.
    let t = session("no-work", "exit 0");
    let s = t.wait_for_within("EXIT=", Duration::from_secs(60));
    assert!(s.contains("EXIT=0") && !s.contains("not copied out"), "{s}");
    assert!(!h.state("no-work").exists());
    drop(t);
    // Work too large to copy out (over the 2 MiB bound set here): kept by
    // a commit, and asked about too; Enter keeps it.
    let t = session("ask-big", "head -c 3000000 /dev/urandom > /workspace/big; exit 0");
    let s = t.wait_for_within("remove the bottle and it? [y/N]", Duration::from_secs(60));
    assert!(s.contains("is kept only in the bottle's commit"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for_within("EXIT=", Duration::from_secs(60));
    assert!(s.contains("EXIT=0") && s.contains("ask-big's state is kept in"), "{s}");
    assert!(h.state("ask-big").join(".preserve").exists() && image_exists("bot-bottle-commit:ask-big"));
    drop(t);
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    for id in ["ask-keep", "ask-remove", "no-work", "ask-big"] {
        assert_gone(id);
    }
}

#[test]
fn the_agent_has_no_network_and_no_secret_in_docker_inspect() {
    let h = Home::new();
    let (mut child, rx) = spawn(
        &h,
        &[
            "start",
            "life",
            "--label",
            "inspected",
            "--headless",
            "--prompt",
            "test \"$FORWARDED_SECRET\" = \"$LIFE_SECRET_EXPECTED\" || true; sleep 60",
        ],
    );
    wait_line(&rx, "isolation self-test");
    wait_running("inspected");
    for role in ["agent", "sidecar", "shim"] {
        let o = Command::new("docker").args(["inspect", &format!("bot-bottle-inspected-{role}")]).output().unwrap();
        let text = out(&o);
        assert!(o.status.success(), "{role}");
        assert!(!text.contains(LIFE_SECRET), "the secret shows in docker inspect of the {role}");
        if role == "agent" {
            // The agent's memory at its default (8 GiB, swap included), its
            // processes as the bottle's `limits` set them.
            assert!(text.contains("\"Memory\": 8589934592") && text.contains("\"MemorySwap\": 8589934592"), "{text}");
            assert!(text.contains("\"PidsLimit\": 777"), "{text}");
            assert!(text.contains("\"NetworkMode\": \"none\""), "{text}");
            assert!(text.contains("no-new-privileges"), "{text}");
            assert!(text.contains("\"User\": \"1000\""), "{text}");
        }
        // The sidecar's memory is bounded (swap included) as the bottle's
        // `limits` set it (1536 MiB), the shim's too.
        if role == "sidecar" {
            assert!(text.contains("\"Memory\": 1610612736") && text.contains("\"MemorySwap\": 1610612736"), "{text}");
        }
        if role == "shim" {
            assert!(text.contains("\"Memory\": 67108864"), "{text}");
        }
    }
    // The sidecar is its container's init (no Docker init): orphans (a git
    // or ssh whose parent exited) are reaped, not left as zombies.
    let sidecar = |script: &str| {
        let o =
            Command::new("docker").args(["exec", "bot-bottle-inspected-sidecar", "sh", "-c", script]).output().unwrap();
        assert!(o.status.success(), "{}", err(&o));
        out(&o)
    };
    assert!(sidecar("tr '\\0' ' ' < /proc/1/cmdline").contains("bot-bottle sidecar"));
    sidecar("for i in 1 2 3 4 5; do (sleep 0.1 &); done");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sidecar("grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l").trim(), "0", "zombies in the sidecar");
    // The host command lines of the bottle's processes carry no secret.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!out(&ps).contains(LIFE_SECRET));
    // Yet the agent has it in its session (forwarded on purpose).
    let o = Command::new("docker")
        .args([
            "exec",
            "bot-bottle-inspected-agent",
            "bash",
            "-c",
            ". ~/.bot-bottle/env; printf %s \"$FORWARDED_SECRET\"",
        ])
        .output()
        .unwrap();
    assert_eq!(out(&o), LIFE_SECRET);
    // The canary: planted in the agent's environment under a random name,
    // known to the sidecar; sending it anywhere is refused and logged even
    // at log level 0.
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.state("inspected").join("sidecar-secrets.json")).unwrap()).unwrap();
    let canary = secrets["canary"].as_str().unwrap().to_string();
    let o = Command::new("docker")
        .args(["exec", "-u", "1000", "bot-bottle-inspected-agent", "bash", "-c"])
        .arg(format!(
            ". ~/.bot-bottle/env; env | grep -c '={canary}$'; curl -s -o /dev/null -w '%{{http_code}}' -d 'x={canary}' https://pypi.org/upload"
        ))
        .output()
        .unwrap();
    assert_eq!(out(&o), "1\n403", "{}", err(&o));
    let logs = Command::new("docker").args(["logs", "bot-bottle-inspected-sidecar"]).output().unwrap();
    let log = format!("{}{}", out(&logs), err(&logs));
    assert!(log.contains("\"reason\":\"canary\""), "{log}");
    assert!(!log.contains(&canary));
    let _ = child.kill();
    let _ = child.wait();
    let o = h.run(&["cleanup", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_gone("inspected");
}

#[test]
fn ctrl_c_during_the_launch_leaves_nothing() {
    let h = Home::new();
    let (mut child, rx) = spawn(&h, &["start", "life", "--label", "interrupted", "--headless", "--prompt", "sleep 60"]);
    wait_line(&rx, "starting the sidecar and the agent");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    // Ctrl-C ends the launch as a shell reports an interrupt.
    assert_eq!(status.code(), Some(130));
    assert_gone("interrupted");
    assert!(!h.state("interrupted").exists(), "an interrupted launch kept state");
}

/// A bottle whose repo's deploy key is minted on a stand-in Gitea that
/// registers the key and then keeps the launch waiting for a minute; the
/// launch, spawned, and the Gitea. The launch is past its images once the
/// key is registered.
fn launch_mid_mint(h: &Home, label: &str) -> (Child, std::sync::mpsc::Receiver<String>, support::gitea::Gitea) {
    let gitea = support::gitea::fake_gitea_stalling(
        minted_bottle(h, label, &["widgets"]),
        204,
        None,
        Vec::new(),
        Some(Duration::from_secs(60)),
    );
    let (mut child, rx) = spawn_cmd(minted_start(h, label, &gitea, "sleep 60"));
    let deadline = Instant::now() + Duration::from_secs(240);
    while gitea.keys.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the launch never registered its deploy key");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the launch ended before minting: {:?}",
            rx.try_iter().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, rx, gitea)
}

/// The bottle `minted` (`life` with `repos`, each key minted on Gitea
/// with the token in `MINT_TOKEN`); the stand-in's authorized-keys file.
fn minted_bottle(h: &Home, label: &str, repos: &[&str]) -> PathBuf {
    let dir = h.home.join(format!("mint-{label}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("authorized_keys"), "").unwrap();
    let public = support::sshd::keygen(&dir.join("host_key"));
    let host_key: String = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let repos: String = repos
        .iter()
        .map(|name| {
            format!(
                "    {name}:\n      url: ssh://git@git.example.test/owner/{name}.git\n      host_key: \"{host_key}\"\n      key: {{provider: gitea, provisioner_token: MINT_TOKEN}}\n"
            )
        })
        .collect();
    std::fs::write(
        h.home.join("bottles/minted.md"),
        format!("---\nextends: life\ngit-gate:\n  repos:\n{repos}---\nlife, with repos whose keys are minted.\n"),
    )
    .unwrap();
    dir.join("authorized_keys")
}

/// `start life --bottle minted` headless with `prompt`, its keys minted on
/// `gitea`.
fn minted_start(h: &Home, label: &str, gitea: &support::gitea::Gitea, prompt: &str) -> Command {
    let mut cmd = h.cmd(&["start", "life", "--bottle", "minted", "--label", label, "--headless", "--prompt", prompt]);
    cmd.env("MINT_TOKEN", "provisioner-token-Xk41")
        .env("BOT_BOTTLE_GITEA_URL", format!("http://127.0.0.1:{}", gitea.port));
    cmd
}

/// Two repos, the second's registration refused: the launch fails saying
/// why, the first repo's key — registered — is revoked on the way out, and
/// with nothing left to revoke the state goes too.
#[test]
fn a_launch_whose_second_mint_fails_leaves_no_deploy_key() {
    let h = Home::new();
    let gitea =
        support::gitea::fake_gitea_with(minted_bottle(&h, "half minted", &["alpha", "beta"]), 204, Some(2), Vec::new());
    let o = minted_start(&h, "half minted", &gitea, "true").output().unwrap();
    assert!(!o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("HTTP 500"), "{}", err(&o));
    let calls: Vec<String> = gitea.calls.lock().unwrap().iter().map(|c| c.0.clone()).collect();
    assert_eq!(calls.iter().filter(|c| c.starts_with("POST ")).count(), 2, "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("DELETE ") && c.contains("/keys/42 ")), "{calls:?}");
    assert!(gitea.keys.lock().unwrap().is_empty(), "left registered: {:?}\n{}", gitea.keys.lock().unwrap(), err(&o));
    assert_gone("half-minted");
    assert!(!h.state("half-minted").exists(), "a failed launch kept state with nothing to revoke");
}

/// Ctrl-C while the deploy key's registration is unanswered: the launch
/// stops at once (not after the Gitea call's 30 s), ends as interrupted, and
/// the key — registered, its id never heard — is found by its title in the
/// ledger and revoked. Nothing is left.
#[test]
fn ctrl_c_mid_mint_leaves_no_deploy_key() {
    let h = Home::new();
    let (mut child, rx, gitea) = launch_mid_mint(&h, "mid mint");
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let said: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{said:?}");
    assert!(t0.elapsed() < Duration::from_secs(20), "the interrupt waited on the registration: {:?}", t0.elapsed());
    assert!(gitea.keys.lock().unwrap().is_empty(), "left registered: {:?}\n{said:?}", gitea.keys.lock().unwrap());
    assert_gone("mid-mint");
    assert!(!h.state("mid-mint").exists(), "an interrupted launch kept state");
}

/// The CLI killed (SIGKILL: nothing of it runs again) while the key's
/// registration is unanswered: the key stays registered, listed by title in
/// the state's ledger; `cleanup` revokes it (the state, resumable, stays).
#[test]
fn a_cli_killed_mid_mint_leaves_a_key_cleanup_revokes() {
    let h = Home::new();
    let (mut child, _rx, gitea) = launch_mid_mint(&h, "killed mint");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(gitea.keys.lock().unwrap().len(), 1, "the registration the killed CLI made");
    let o = h
        .cmd(&["cleanup", "-y"])
        .env("MINT_TOKEN", "provisioner-token-Xk41")
        .env("BOT_BOTTLE_GITEA_URL", format!("http://127.0.0.1:{}", gitea.port))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("deploy key(s) killed-mint minted (revoked)"), "{}", out(&o));
    assert!(gitea.keys.lock().unwrap().is_empty(), "left registered: {:?}\n{}", gitea.keys.lock().unwrap(), err(&o));
    assert!(!h.state("killed-mint").join("git-gate/deploy-keys.json").exists(), "the ledger outlived its keys");
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_gone("killed-mint");
}

/// The agent's work since the last copy is only in its container: `cat
/// /workspace/NAME` in the agent, once it is there.
fn wait_for_work(identity: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    let agent = format!("bot-bottle-{identity}-agent");
    let path = format!("/workspace/{name}");
    while !Command::new("docker").args(["exec", &agent, "cat", &path]).output().unwrap().status.success() {
        assert!(Instant::now() < deadline, "the agent never wrote {path}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A CLI killed (SIGKILL: no session end ran) leaves its bottle running,
/// with the agent's work since the last copy only in its container: a
/// resume refuses while the session lives, and once it is gone keeps that
/// work before it replaces the containers; `cleanup` keeps it too.
#[test]
fn a_killed_cli_leaves_what_resume_and_cleanup_handle() {
    let h = Home::new();
    let (mut child, _rx) = spawn(
        &h,
        &["start", "life", "--label", "killed", "--headless", "--prompt", "echo precious > /workspace/one; sleep 120"],
    );
    wait_for_work("killed", "one");
    // Alive: a resume would pull the containers from under it.
    let o = h.run(&["resume", "killed", "--headless", "--prompt", "true"]);
    assert!(!o.status.success() && err(&o).contains("is running"), "{}", err(&o));
    child.kill().unwrap();
    child.wait().unwrap();
    // The bottle outlived its launcher.
    assert!(!objects("killed").0.is_empty());
    // Resume takes the identity over (the stale objects are replaced),
    // keeping the killed session's work first.
    let o = h.run(&["resume", "killed", "--headless", "--prompt", "cat /workspace/one; echo again; exit 6"]);
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(err(&o).contains("earlier session"), "{}", err(&o));
    assert!(out(&o).contains("precious"), "the killed session's work was lost: {}", out(&o));
    assert!(out(&o).contains("again"));
    assert_gone("killed");
    // Killed again; now cleanup removes the orphans and the state.
    let (mut child, _rx) =
        spawn(&h, &["resume", "killed", "--headless", "--prompt", "echo also > /workspace/two; sleep 120"]);
    wait_for_work("killed", "two");
    child.kill().unwrap();
    child.wait().unwrap();
    // Listed as the orphan it is, not as running.
    let o = h.run(&["list", "active", "--json"]);
    let active: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let killed = active.as_array().unwrap().iter().find(|b| b["identity"] == "killed").cloned().unwrap();
    assert_eq!(killed["state"], "orphaned (resume or cleanup)", "{active}");
    // Cleanup removes what still runs and keeps what resume recovers.
    let o = h.run(&["cleanup", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("bot-bottle-killed-agent"), "{}", out(&o));
    assert_gone("killed");
    assert!(h.state("killed").join("metadata.json").is_file(), "cleanup removed resumable state");
    assert_eq!(
        std::fs::read_to_string(h.state("killed").join("workspace/two")).ok().as_deref(),
        Some("also\n"),
        "cleanup removed the orphan's work: {}",
        err(&o)
    );
    // --all removes it.
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("state killed (resumable)"), "{}", out(&o));
    assert!(!h.state("killed").exists());
}

#[test]
fn two_bottles_at_once_share_nothing() {
    let h = Home::new();
    let probe = "cat /etc/hostname; ip -o addr | awk '{print $2}' | sort -u | tr '\\n' ' '; echo; sleep 30";
    let (a, rx_a) = spawn(&h, &["start", "life", "--label", "twin a", "--headless", "--prompt", probe]);
    let (b, rx_b) = spawn(&h, &["start", "life", "--label", "twin b", "--headless", "--prompt", probe]);
    wait_line(&rx_a, "isolation self-test");
    wait_line(&rx_b, "isolation self-test");
    wait_running("twin-a");
    wait_running("twin-b");
    // Each has its own sidecar network; the agents have only loopback.
    let (_, net_a) = objects("twin-a");
    let (_, net_b) = objects("twin-b");
    assert_eq!(net_a, ["bot-bottle-twin-a"]);
    assert_eq!(net_b, ["bot-bottle-twin-b"]);
    let sidecar_b_ip = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "bot-bottle-twin-b-sidecar",
        ])
        .output()
        .unwrap();
    let ip = out(&sidecar_b_ip).trim().to_string();
    assert!(!ip.is_empty());
    // A's sidecar cannot reach B's sidecar: different bridges.
    let o = Command::new("docker")
        .args([
            "exec",
            "bot-bottle-twin-a-sidecar",
            "bash",
            "-c",
            &format!("timeout 3 bash -c '</dev/tcp/{ip}/80' && echo reached || echo unreachable"),
        ])
        .output()
        .unwrap();
    assert!(out(&o).contains("unreachable"), "{}{}", out(&o), err(&o));
    for (child, name) in [(a, "twin-a"), (b, "twin-b")] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{name}");
        // The agent's only interface is loopback.
        assert!(out(&o).contains(&format!("{name}\nlo \n")), "{name}: {}", out(&o));
        assert_gone(name);
    }
}

/// The README's main command, as a user runs it (with this build's binary).
#[test]
fn the_demo_shows_every_promise() {
    Home::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("bash")
        .arg(root.join("scripts/demo.sh"))
        .current_dir(&root)
        .env("BOT_BOTTLE_BIN", env!("CARGO_BIN_EXE_bot-bottle"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", out(&o), err(&o));
    assert!(o.status.success(), "{text}");
    for line in [
        "agent's DEMO_API_TOKEN: (not set)",
        "authorized: yes",
        "bot-bottle egress: blocked: no route for host example.com",
        "to ask the operator for this host, use the `egress-allow` tool",
        "bot-bottle egress: blocked: outbound secret (known-secret:raw)",
        "git-gate: 1 commit(s) scanned, clean; forwarded upstream",
        ".env:1 github-pat GITHUB_TOKEN=ghp_…[40 redacted]",
        "[remote rejected] HEAD -> main (pre-receive hook declined)",
        "say hello;",
    ] {
        assert!(text.contains(line), "the demo did not show {line:?}:\n{text}");
    }
    // The secret commit never reached the upstream; the upload never arrived.
    assert!(!text.contains("add config;"), "{text}");
    assert!(!text.contains("POST /upload"), "{text}");
    assert!(!text.contains("ghp_R6tqk2vZ8mBcX1pLw9sJ4nHd0yFa7uEe3Qio"), "{text}");
}

#[test]
fn ctrl_c_during_a_headless_session_ends_it_and_tears_down() {
    let h = Home::new();
    let (mut child, rx) =
        spawn(&h, &["start", "life", "--label", "stopped by hand", "--headless", "--prompt", "sleep 120"]);
    wait_line(&rx, "isolation self-test");
    wait_running("stopped-by-hand");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_gone("stopped-by-hand");
    // A non-zero end: the state is kept for resume.
    assert!(h.state("stopped-by-hand").join(".preserve").exists());
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", err(&o));
}

/// A bottle whose egress lets the self-test's unrouted host through: the
/// self-test sees it was not refused, the launch is aborted with what
/// failed, the agent's command never runs, nothing is left behind.
#[test]
fn a_failing_self_test_aborts_the_launch_before_the_agent_runs() {
    let h = Home::new();
    support::bottle_and_agent(&h.home, "leaky", support::SELF_TEST_HOLE, "leaky");
    let o = h.run(&["start", "leaky", "--label", "leaky", "-y", "--headless", "--prompt", "echo the-agent-ran"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success());
    assert!(err.contains("the isolation self-test failed") && err.contains("unrouted-host-refused"), "{err}");
    assert!(!out.contains("the-agent-ran"), "the agent's command ran: {out}");
    // The failed launch leaves nothing: what failed is in the error.
    assert!(err.contains("expected the proxy's 403"), "{err}");
    assert!(!h.state("leaky").exists());
    let (containers, networks) = objects("leaky");
    assert!(containers.is_empty() && networks.is_empty(), "left behind: {containers:?} {networks:?}");
}

/// Load an image `tag` made in 2001 (a config with that `created`, one
/// tiny layer), with `labels`: an old image without waiting for one.
fn old_image(tag: &str, labels: &[(&str, &str)]) {
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    let script = r#"
import hashlib, io, json, sys, tarfile
tag, labels = sys.argv[1], json.loads(sys.argv[2])
def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files:
            info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 978307200
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
layer = tar_of([("stale", tag.encode())])
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2001-01-01T00:00:00Z",
    "config": {"Labels": labels}, "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
sys.stdout.buffer.write(tar_of([("manifest.json", manifest), ("config.json", config), ("layer.tar", layer)]))
"#;
    let tar = Command::new("python3")
        .args(["-c", script, tag, &serde_json::Value::Object(labels).to_string()])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let mut load =
        Command::new("docker").args(["load", "-q"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    load.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    assert!(load.wait().unwrap().success(), "docker load {tag}");
}

fn image_exists(tag: &str) -> bool {
    Command::new("docker").args(["image", "inspect", tag]).output().unwrap().status.success()
}

#[test]
fn images_prune_removes_only_what_nothing_needs() {
    let h = Home::new();
    let o = h.run(&["images", "build"]);
    assert!(o.status.success(), "{}", err(&o));
    let current: Vec<String> =
        out(&o).lines().filter_map(|l| l.split_whitespace().nth(1)).map(str::to_string).collect();
    assert_eq!(current.len(), 3, "{}", out(&o));
    let id = format!("{:08x}", rand_u32());
    let home = h.home.display().to_string();
    let label = "dev.bot-bottle.home";
    // Old and needed by nothing: go.
    let stale_sidecar = format!("bot-bottle-sidecar:stale{id}");
    let stale_agent = format!("bot-bottle-agent-shell:stale{id}");
    let gone_commit = format!("bot-bottle-commit:gone{id}");
    // Old but needed (recorded by a bottle here, its commit), or not this
    // home's to judge: stay.
    let used_agent = format!("bot-bottle-agent-shell:used{id}");
    let kept_commit = format!("bot-bottle-commit:kept{id}");
    let other_commit = format!("bot-bottle-commit:other{id}");
    old_image(&stale_sidecar, &[]);
    old_image(&stale_agent, &[]);
    old_image(&used_agent, &[]);
    old_image(&gone_commit, &[(label, &home)]);
    old_image(&kept_commit, &[(label, &home)]);
    old_image(&other_commit, &[(label, "/another/home")]);
    let kept_state = h.state(&format!("kept{id}"));
    std::fs::create_dir_all(&kept_state).unwrap();
    std::fs::write(kept_state.join("images.json"), format!(r#"{{"images": ["{used_agent}"]}}"#)).unwrap();
    let o = h.run(&["images", "prune", "-y", "--json"]);
    assert!(o.status.success(), "{}", err(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let removed: Vec<&str> = report["removed"].as_array().unwrap().iter().filter_map(|t| t.as_str()).collect();
    for tag in [&stale_sidecar, &stale_agent, &gone_commit] {
        assert!(removed.contains(&tag.as_str()) && !image_exists(tag), "{tag} was not removed: {report}");
    }
    for tag in current.iter().chain([&used_agent, &kept_commit, &other_commit]) {
        assert!(!removed.contains(&tag.as_str()) && image_exists(tag), "{tag} was removed: {report}");
    }
    // Without -y and without a terminal, nothing is removed.
    old_image(&stale_sidecar, &[]);
    let o = h.run(&["images", "prune"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains(&stale_sidecar) && err(&o).contains("-y"), "{}", err(&o));
    assert!(image_exists(&stale_sidecar));
    let _ = Command::new("docker").args(["rmi", &stale_sidecar, &used_agent, &kept_commit, &other_commit]).output();
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).unwrap();
    u32::from_le_bytes(b)
}
