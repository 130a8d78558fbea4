//! The command line as a user meets it: real processes, no controlling
//! terminal (as in CI and scripts), a temporary `BOT_BOTTLE_HOME`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod support;
const SECRET: &str = "s3cr3t-host-value-7Qx9";

struct World {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    user: PathBuf,
    cwd: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl World {
    /// A home holding `source` (a directory in the repo), a `$HOME` with the
    /// skills and keys the fixtures name, and an empty cwd.
    fn new(source: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("bb");
        copy_dir(&repo_root().join(source), &home);
        let user = tmp.path().join("user");
        std::fs::create_dir_all(user.join(".claude/skills/review")).unwrap();
        std::fs::create_dir_all(user.join(".ssh")).unwrap();
        std::fs::write(user.join(".ssh/id_ed25519_widgets"), "not a real key").unwrap();
        let cwd = tmp.path().join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        World { _tmp: tmp, home, user, cwd }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
        cmd.args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BOT_BOTTLE_HOME", &self.home)
            .env("HOME", &self.user)
            .env("DEMO_API_TOKEN", SECRET)
            .env("GH_TOKEN", SECRET)
            .env("GH_USER", SECRET)
            .env("ANTHROPIC_TOKEN", SECRET)
            .env("GITEA_TOKEN", SECRET)
            .stdin(std::process::Stdio::null());
        // No controlling terminal: /dev/tty cannot be opened, as in CI.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn state_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.home.join("state"))
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    fn write_metadata(&self, identity: &str, json: &str) -> PathBuf {
        let dir = self.home.join("state").join(identity);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metadata.json"), json).unwrap();
        dir.join("metadata.json")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_secret(o: &Output) {
    assert!(
        !stdout(o).contains(SECRET) && !stderr(o).contains(SECRET),
        "secret printed:\n{}\n{}",
        stdout(o),
        stderr(o)
    );
}

#[test]
fn no_arguments_is_usage_and_exit_2() {
    let w = World::new("examples");
    let o = w.run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage: bot-bottle"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn help_on_every_command() {
    let w = World::new("examples");
    for cmd in ["start", "resume", "list", "info", "init", "edit", "stop", "logs", "commit", "export", "cleanup"] {
        let o = w.run(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        assert!(stdout(&o).contains("Usage: bot-bottle"), "{cmd}");
    }
}

#[test]
fn example_agent_dry_run_prints_the_preflight_and_leaves_no_state() {
    let w = World::new("examples");
    let o = w.run(&["start", "demo", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for row in [
        "bot-bottle preflight",
        "agent",
        "bottles",
        "backend",
        "identity",
        "env",
        "skills",
        "git",
        "git-gate",
        "egress",
        "CA",
    ] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(row)), "no '{row}' row in:\n{out}");
    }
    assert!(out.contains("demo  (merge order: base → demo)"), "{out}");
    assert!(out.contains("docker"), "{out}");
    assert!(out.contains("api.github.com [auth:Bearer]"), "{out}");
    assert!(out.contains("on-match=block"), "{out}");
    assert!(out.contains("Demo Bot <demo-bot@example.com>"), "{out}");
    assert!(out.contains("SHA-256 ") && out.contains("(minted for this launch; a resume mints a new one)"), "{out}");
    assert_no_secret(&o);
    assert!(w.state_entries().is_empty(), "state left: {:?}", w.state_entries());

    let o = w.run_env(&["start", "demo"], &[("BOT_BOTTLE_DRY_RUN", "1")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("bot-bottle preflight"));
    assert!(w.state_entries().is_empty());
}

#[test]
fn preflight_shows_origins_and_never_values() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["start", "reviewer", "--dry-run", "--label", "Review PR #12", "--color", "cyan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_no_secret(&o);
    assert!(out.contains("GH_USER  (copied from $GH_USER; from github)"), "{out}");
    assert!(out.contains("DEPLOY_PASSWORD  (asked at launch; from github)"), "{out}");
    assert!(out.contains("identity  review-pr-12  (label Review PR #12)"), "{out}");
    assert!(out.contains("widgets → git.example.com:2222  (static key"), "{out}");
    assert!(out.contains("gadgets → git.example.com  (gitea"), "{out}");
    assert!(out.contains("email from agent reviewer"), "{out}");
    // The provider route owns api.anthropic.com and redacts by default.
    assert!(out.contains("api.anthropic.com [auth:Bearer]  dlp out=token_patterns,known_secrets,crypto on-match=redact in=injection  (from provider claude)"), "{out}");
    assert!(stderr(&o).contains("the route for api.anthropic.com is ignored"), "{}", stderr(&o));
    assert!(!out.contains("CLAUDE_CODE_OAUTH_TOKEN"), "placeholder shown: {out}");
    assert!(w.state_entries().is_empty());
}

#[test]
fn preflight_shows_ports_private_addresses_and_the_inbound_policy() {
    let w = World::new("tests/fixtures/home");
    let bottle = "---\negress:\n  routes:\n    - host: wiki.internal.example\n      ports: [8443]\n      allow_private: true\n      dlp: {inbound_on_match: block}\n---\nAn internal wiki.\n";
    std::fs::write(w.home.join("bottles/inner.md"), bottle).unwrap();
    let o = w.run(&["start", "reviewer", "--dry-run", "--bottle", "inner"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("wiki.internal.example ports 8443 allow-private  dlp out=token_patterns,known_secrets,crypto on-match=supervise in=injection in-on-match=block"),
        "{out}"
    );
    // A key this version does not know is an error naming the file and key.
    let bad = bottle.replace("allow_private: true", "allow_privates: true");
    std::fs::write(w.home.join("bottles/inner.md"), bad).unwrap();
    let o = w.run(&["start", "reviewer", "--dry-run", "--bottle", "inner"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("inner.md") && stderr(&o).contains("allow_privates"), "{}", stderr(&o));
}

#[test]
fn dry_run_json_is_data() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["start", "reviewer", "--dry-run", "--json", "--bottle", "base"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["backend"], "docker");
    assert_eq!(v["metadata"]["backend"], "docker");
    assert_eq!(v["bottles"], serde_json::json!(["base"]));
    assert_eq!(v["env"]["EDITOR"]["kind"], "literal");
    assert!(v["env"]["EDITOR"].get("value").is_none());
    assert_no_secret(&o);
}

#[test]
fn backend_precedence_flag_then_env_then_default() {
    let w = World::new("examples");
    let backend_of = |o: &Output| -> String {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["metadata"]["backend"].as_str().unwrap().to_string()
    };
    let args = ["start", "demo", "--dry-run", "--json"];
    assert_eq!(backend_of(&w.run(&args)), "docker");
    assert_eq!(backend_of(&w.run_env(&args, &[("BOT_BOTTLE_BACKEND", "smolmachines")])), "smolmachines");
    let mut with_flag = args.to_vec();
    with_flag.extend(["--backend", "docker"]);
    assert_eq!(backend_of(&w.run_env(&with_flag, &[("BOT_BOTTLE_BACKEND", "smolmachines")])), "docker");
    let o = w.run(&["start", "demo", "--dry-run", "--backend", "vmware"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown backend 'vmware'") && stderr(&o).contains("docker, smolmachines"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn metadata_without_backend_resumes_on_docker() {
    let w = World::new("examples");
    let file = w.write_metadata("demo-old01", r#"{"identity": "demo-old01", "agent_name": "demo", "bottle_names": ["demo"], "compose_project": "bot-bottle-demo-old01"}"#);
    let before = std::fs::read(&file).unwrap();
    let o = w.run(&["resume", "demo-old01", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["backend"], "docker");
    assert_eq!(v["identity"], "demo-old01");
    assert_eq!(std::fs::read(&file).unwrap(), before, "a dry run must not rewrite metadata");
    assert_eq!(w.state_entries(), ["demo-old01"]);
}

#[test]
fn metadata_backend_wins_over_bot_bottle_backend() {
    let w = World::new("examples");
    w.write_metadata(
        "demo-smol1",
        r#"{"identity": "demo-smol1", "agent_name": "demo", "backend": "smolmachines", "bottle_names": ["demo"]}"#,
    );
    let o = w.run_env(&["resume", "demo-smol1", "--dry-run"], &[("BOT_BOTTLE_BACKEND", "docker")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("backend   smolmachines"), "{}", stdout(&o));
    // Every identity command dispatches the same way.
    // (No smolvm here: the smolmachines backend says so.)
    for cmd in ["stop", "commit"] {
        let o =
            w.run_env(&[cmd, "demo-smol1"], &[("BOT_BOTTLE_BACKEND", "docker"), ("BOT_BOTTLE_SMOLVM", "/nonexistent")]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("the smolmachines backend is unavailable"), "{cmd}: {}", stderr(&o));
    }
    // No metadata: docker (which answers, or says there is no Engine).
    let o = w.run_env(&["stop", "ghost-abcde"], &[("BOT_BOTTLE_BACKEND", "smolmachines")]);
    let e = stderr(&o);
    assert!(
        e.contains("the docker backend has no running bottle ghost-abcde") || e.contains("no Docker Engine"),
        "{e}"
    );
}

#[test]
fn metadata_without_backend_resumes_where_the_user_chooses() {
    let w = World::new("examples");
    let legacy = r#"{"identity": "demo-old02", "agent_name": "demo", "bottle_names": ["demo"]}"#;
    w.write_metadata("demo-old02", legacy);
    // As the original: metadata.backend or None, then --backend, then the
    // environment, then docker.
    let o = w.run_env(&["resume", "demo-old02", "--dry-run"], &[("BOT_BOTTLE_BACKEND", "smolmachines")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("backend   smolmachines"), "{}", stdout(&o));
    let o = w.run_env(
        &["resume", "demo-old02", "--dry-run", "--backend", "smolmachines"],
        &[("BOT_BOTTLE_BACKEND", "docker")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("backend   smolmachines"), "{}", stdout(&o));
    // A recorded backend is not moved by a flag.
    w.write_metadata("demo-smol2", r#"{"agent_name": "demo", "backend": "smolmachines", "bottle_names": ["demo"]}"#);
    let o = w.run(&["resume", "demo-smol2", "--dry-run", "--backend", "docker"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("demo-smol2 runs on smolmachines") && stderr(&o).contains("drop --backend"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_backend_of_the_original_this_build_lacks_is_named_as_such() {
    let w = World::new("examples");
    w.write_metadata("demo-mac01", r#"{"agent_name": "demo", "backend": "macos-container", "bottle_names": ["demo"]}"#);
    for args in [&["resume", "demo-mac01", "--dry-run"][..], &["stop", "demo-mac01"]] {
        let o = w.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("this build of bot-bottle has no macos-container backend")
                && e.contains("demo-mac01/metadata.json"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("unknown backend"), "{e}");
    }
    let o = w.run(&["start", "demo", "--dry-run", "--backend", "macos-container"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no macos-container backend"), "{}", stderr(&o));
    // Not offered where backends are listed.
    let o = w.run(&["start", "--help"]);
    assert!(!stdout(&o).contains("macos-container"), "{}", stdout(&o));
}

#[test]
fn unknown_backend_in_metadata_is_named() {
    let w = World::new("examples");
    w.write_metadata("demo-bad01", r#"{"agent_name": "demo", "backend": "nonsense"}"#);
    for args in [&["resume", "demo-bad01", "--dry-run"][..], &["stop", "demo-bad01"], &["logs", "demo-bad01"]] {
        let o = w.run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains("unknown backend 'nonsense'") && e.contains("demo-bad01/metadata.json"), "{args:?}: {e}");
    }
}

#[test]
fn resume_errors() {
    let w = World::new("examples");
    let o = w.run(&["resume", "nope-12345", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("state") && stderr(&o).contains("bot-bottle start"), "{}", stderr(&o));
    let o = w.run(&["resume", "../../etc", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a bottle identity"), "{}", stderr(&o));
}

#[test]
fn missing_choices_without_a_terminal_name_the_flag() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["start", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bot-bottle start AGENT"), "{}", stderr(&o));
    let o = w.run(&["start", "nobottle", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--bottle NAME"), "{}", stderr(&o));
    // Without -y and without a terminal, nothing launches and nothing is kept.
    let o = w.run(&["start", "shell"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pass -y"), "{}", stderr(&o));
    assert!(w.state_entries().is_empty());
}

#[test]
fn headless_cannot_ask_and_names_the_variable() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["start", "reviewer", "--headless", "--prompt", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("DEPLOY_PASSWORD") && stderr(&o).contains("headless"), "{}", stderr(&o));
    assert_no_secret(&o);
    assert!(w.state_entries().is_empty());
    let o = w.run(&["start", "reviewer", "-y"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("DEPLOY_PASSWORD") && stderr(&o).contains("no terminal to ask on"), "{}", stderr(&o));
}

#[test]
fn unset_host_variables_are_named() {
    let w = World::new("tests/fixtures/home");
    let mut cmd = w.cmd(&["start", "reviewer", "--dry-run"]);
    cmd.env_remove("GH_USER");
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("GH_USER"), "{}", stderr(&o));
    let mut cmd = w.cmd(&["start", "reviewer", "--dry-run"]);
    cmd.env_remove("GH_TOKEN");
    let o = cmd.output().unwrap();
    assert!(stderr(&o).contains("bottles/github.md") && stderr(&o).contains("token_ref GH_TOKEN"), "{}", stderr(&o));
}

#[test]
fn without_a_docker_engine_the_launch_says_what_to_do_and_keeps_nothing() {
    let w = World::new("examples");
    let o = w.run_env(&["start", "demo", "-y"], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no Docker Engine answers at unix:///nonexistent/docker.sock")
            && e.contains("apt-get install docker.io")
            && !e.contains("scripts/"),
        "{e}"
    );
    assert!(w.state_entries().is_empty(), "{:?}", w.state_entries());
    assert_no_secret(&o);
}

#[test]
fn manifest_errors_exit_1_and_write_nothing() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["start", "shell", "--bottle", "broken", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("bot-bottle: ") && e.contains("bottles/broken.md:2") && e.contains("did you mean 'env'"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(w.state_entries().is_empty());
    let o = w.run(&["start", "broken", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("agents/broken.md"), "{}", stderr(&o));
}

#[test]
fn list_is_lazy_and_has_json() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["list", "agents"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "broken\nnobottle\nreviewer\nshell\n");
    let o = w.run(&["list", "bottles", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 7);
    assert_eq!(v[1]["name"], "broken");
    w.write_metadata("dev-aaaaa", r#"{"agent_name": "reviewer", "backend": "smolmachines", "label": "Dev", "color": "cyan", "started_at": "2026-11-01T10:00:00Z"}"#);
    std::fs::write(w.home.join("state/dev-aaaaa/.preserve"), "").unwrap();
    w.write_metadata("old-bbbbb", r#"{"agent_name": "shell"}"#);
    let o = w.run(&["list", "active", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["identity"], "dev-aaaaa");
    assert_eq!(v[0]["backend"], "smolmachines");
    assert_eq!(v[0]["state"], "preserved");
    assert_eq!(v[1]["backend"], "docker");
    assert!(stderr(&o).contains("live bottles not checked"), "{}", stderr(&o));
    let o = w.run(&["list"]);
    let out = stdout(&o);
    assert!(out.contains("agents:") && out.contains("bottles:") && out.contains("active:"), "{out}");
    assert!(!out.contains('\x1b'), "colour without a TTY: {out:?}");
    // A table under a header, its columns aligned, a state for each bottle.
    let o = w.run(&["list", "active"]);
    assert_eq!(
        stdout(&o),
        "BACKEND       IDENTITY   LABEL  AGENT     STARTED               STATE\n\
         smolmachines  dev-aaaaa  Dev    reviewer  2026-11-01T10:00:00Z  preserved\n\
         docker        old-bbbbb         shell                           orphaned (resume or cleanup)\n"
    );
    // Nobody here uses smolmachines (and it is not installed): no word of it.
    std::fs::remove_dir_all(w.home.join("state/dev-aaaaa")).unwrap();
    let o = w.run(&["list", "active"]);
    assert!(!stderr(&o).contains("smolmachines"), "{}", stderr(&o));
}

#[test]
fn info_shows_names_and_origins_never_values() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["info", "reviewer"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "GH_USER",
        "DEPLOY_PASSWORD",
        "review",
        "You are a careful code reviewer.",
        "Ada Bot <reviewer@example.com>",
        "widgets → git.example.com:2222",
        "api.github.com [auth:Bearer]",
        "github.com git-fetch",
    ] {
        assert!(out.contains(want), "no '{want}' in:\n{out}");
    }
    assert!(!out.contains("Point out bugs"), "only the first prompt line: {out}");
    assert_no_secret(&o);
    let o = w.run(&["info", "reviewer", "--bottle", "strict", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"], serde_json::json!(["base", "github", "claude", "strict"]));
    assert_eq!(v["env"]["LOG_LEVEL"]["origin"], "strict");
}

#[test]
fn cwd_bottles_are_ignored_with_a_warning() {
    let w = World::new("tests/fixtures/home");
    copy_dir(&repo_root().join("tests/fixtures/repo/.bot-bottle"), &w.cwd.join(".bot-bottle"));
    let o = w.run(&["list", "bottles"]);
    assert!(stderr(&o).contains("warning: ignoring") && stderr(&o).contains(".bot-bottle/bottles"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("evil"));
    let o = w.run(&["list", "agents"]);
    assert!(stdout(&o).contains("reviewer  (this repo:"), "{}", stdout(&o));
}

#[test]
fn init_writes_files_that_load() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World {
        home: tmp.path().join("fresh"),
        user: tmp.path().to_path_buf(),
        cwd: tmp.path().to_path_buf(),
        _tmp: tmp,
    };
    let o = w.run(&["init"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--agent NAME"), "{}", stderr(&o));
    let o = w.run(&["init", "--agent", "helper", "--prompt", "Be helpful.", "--bottle", "dev", "--provider", "shell"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("bot-bottle start helper --dry-run"), "{}", stderr(&o));
    let o = w.run(&["start", "helper", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("provider  shell"));
    let o = w.run(&["init", "--agent", "helper", "--prompt", "x", "--bottle", "dev"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // A second agent reuses the existing bottle and writes no new one.
    let o = w.run(&["init", "--agent", "second", "--prompt", "x", "--bottle", "dev"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(w.home.join("bottles")).unwrap().count(), 1);
    // pi's starter routes its model provider's API with the operator's token.
    let o = w.run(&["init", "--agent", "pi-helper", "--prompt", "x", "--bottle", "pi-dev", "--provider", "pi"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = w.run_env(&["start", "pi-helper", "--dry-run"], &[("PI_MODEL_TOKEN", "sk-ant-oat01-x")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("api.anthropic.com [auth:Bearer]") && stdout(&o).contains("(from provider pi)"));
}

#[test]
fn edit_validates_after_the_editor() {
    let w = World::new("tests/fixtures/home");
    let script = w.user.join("break.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf -- '---\\nbottel: base\\n---\\n' > \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = w.run_env(&["edit", "shell"], &[("EDITOR", "true")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("is valid"));
    let o = w.run_env(&["edit", "shell"], &[("VISUAL", script.to_str().unwrap()), ("EDITOR", "true")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("did you mean 'bottle'"), "{}", stderr(&o));
    let o = w.run_env(&["edit", "ghost"], &[("EDITOR", "true")]);
    assert!(stderr(&o).contains("no agent named 'ghost'"), "{}", stderr(&o));
    // Bottles too.
    let o = w.run_env(&["edit", "--bottle", "base"], &[("EDITOR", "true")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("bottles/base.md is valid"), "{}", stderr(&o));
    let o = w.run_env(&["edit", "base"], &[("EDITOR", "true")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`bot-bottle edit --bottle base`"), "{}", stderr(&o));
    let o = w.run_env(&["edit", "--bottle", "github"], &[("VISUAL", script.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bottel"), "{}", stderr(&o));
}

#[test]
fn headless_labels_get_a_numeric_suffix_when_taken() {
    let w = World::new("tests/fixtures/home");
    let taken = w.write_metadata("review-pr-12", r#"{"agent_name": "reviewer"}"#);
    let before = std::fs::read(&taken).unwrap();
    let o = w.run(&["start", "shell", "--headless", "--prompt", "hi", "--label", "Review PR #12", "--dry-run"]);
    assert!(stdout(&o).contains("identity  review-pr-12-2  (label Review PR #12)"), "{}", stdout(&o));
    // The dry run prepares nothing; the bottle holding the label is untouched.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(w.state_entries(), ["review-pr-12"]);
    assert_eq!(std::fs::read(&taken).unwrap(), before);
}

#[test]
fn supervise_once_and_json_print_what_is_pending_and_the_console_needs_a_terminal() {
    use supervise::{Kind, ProposalStore};
    let w = World::new("tests/fixtures/home");
    w.write_metadata("swift-otter", r#"{"identity": "swift-otter", "label": "otter", "color": "green"}"#);
    let store = supervise::store_path(&w.home.join("state/swift-otter"));
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    let s = ProposalStore::open(&store, "swift-otter").unwrap();
    s.file(Kind::EgressAllow, &serde_json::json!({"route": {"host": "pypi.org"}}), "install deps").unwrap();
    let o = w.run(&["supervise", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("otter  #1 egress-allow  allow pypi.org — install deps"), "{out}");
    assert!(!out.contains('\x1b'), "colour without a terminal: {out:?}");
    let o = w.run(&["supervise", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["kind"], "egress-allow");
    assert_eq!(v[0]["label"], "otter");
    assert_eq!(v[0]["identity"], "swift-otter");
    assert_eq!(v[0]["payload"]["route"]["host"], "pypi.org");
    let o = w.run(&["supervise"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("use --once or --json"), "{}", stderr(&o));
}

/// A home written in the original bot-bottle's format (its README's
/// spellings): it lists, `info`s, `start --dry-run`s and `resume --dry-run`s
/// cleanly, and each legacy spelling means what the current one does.
#[test]
fn a_home_in_the_originals_format_works_unedited() {
    let w = World::new("tests/fixtures/original-home");
    for args in [&["list", "agents"][..], &["list", "bottles"], &["list", "active"], &["info", "legacy"]] {
        let o = w.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("warning"), "{args:?}: {}", stderr(&o));
    }
    let o = w.run(&["start", "legacy", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let routes = v["routes"].as_array().unwrap();
    // naive_injection_detection is the injection detector, once.
    for host in ["api.github.com", "docs.example.com"] {
        let r = routes.iter().find(|r| r["host"] == host).unwrap();
        assert_eq!(r["inbound_detectors"], serde_json::json!(["injection"]), "{host}: {r}");
    }
    // dockerfile: "" is no Dockerfile.
    assert_eq!(v["provider"], "shell", "{v}");
    assert!(v["agent"].to_string().contains("legacy"), "{v}");
    let o = w.run(&["info", "legacy", "--json"]);
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["provider"]["value"]["template"], "shell", "{info}");
    assert_eq!(info["provider"]["value"]["dockerfile"], Value::Null, "{info}");
    // A bottle preserved before metadata had `backend`.
    let o = w.run(&["resume", "legacy-old01", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("backend   docker"), "{}", stdout(&o));
    assert!(w.state_entries() == ["legacy-old01"], "a dry run wrote state");
}

#[test]
fn info_refuses_what_start_refuses() {
    let w = World::new("tests/fixtures/home");
    // GH_USER is copied from the host: without it `start` cannot launch,
    // and `info` says so the same way.
    let run = |args: &[&str]| w.cmd(args).env_remove("GH_USER").output().unwrap();
    let start = run(&["start", "reviewer", "--dry-run"]);
    let info = run(&["info", "reviewer"]);
    assert_eq!(start.status.code(), Some(1), "{}", stderr(&start));
    assert_eq!(info.status.code(), Some(1), "{}", stderr(&info));
    assert!(stderr(&info).contains("GH_USER"), "{}", stderr(&info));
    assert_eq!(stderr(&info), stderr(&start));
}

#[test]
fn a_dry_run_checks_that_the_launch_can_fetch_the_providers_cli() {
    let w = World::new("tests/fixtures/home");
    // No npm on PATH and nothing kept: the launch could not build claude's
    // image, and the dry run (and info) say so now.
    let bare = w.user.join("bin");
    std::fs::create_dir_all(&bare).unwrap();
    let no_npm = [("PATH", bare.to_str().unwrap())];
    for args in [&["start", "reviewer", "--dry-run"][..], &["info", "reviewer"]] {
        let o = w.run_env(args, &no_npm);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains("@anthropic-ai/claude-code-linux-") && e.contains("npm is not installed"), "{e}");
        assert!(e.contains("bottles/claude.md"), "names the file: {e}");
    }
    // An agent with no agent_provider anywhere gets claude: said so.
    let o = w.run_env(&["start", "shell", "--dry-run"], &no_npm);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("agents/shell.md: no agent_provider, so the default claude:"), "{}", stderr(&o));
    // The shell provider fetches nothing.
    let demo = World::new("examples");
    let o = demo.run_env(&["start", "demo", "--dry-run"], &no_npm);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Kept in $XDG_CACHE_HOME already: npm is not needed.
    let xdg = w.user.join("xdg");
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "x64" };
    let kept = xdg.join(format!("bot-bottle/npm/anthropic-ai-claude-code-linux-{arch}-2.1.332"));
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("claude"), "#!/bin/sh\n").unwrap();
    let o = w.run_env(&["start", "reviewer", "--dry-run"], &[no_npm[0], ("XDG_CACHE_HOME", xdg.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The original makes `host_key` optional: the launch pins what the
/// upstream (a real sshd) offers on first use, a resume is held to it, and a
/// changed key is an error naming both fingerprints.
#[test]
fn a_repo_without_host_key_is_pinned_on_first_use_and_held_to_it() {
    let w = World::new("tests/fixtures/original-home");
    let dir = w.user.join("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    let sshd = support::sshd::Sshd::start(&dir);
    let fingerprint = sshd.fingerprint(&dir);
    let url = format!("ssh://git@127.0.0.1:{}/srv/widgets.git", sshd.port);
    std::fs::write(
        w.home.join("bottles/tofu.md"),
        format!("---\nagent_provider: {{template: shell}}\ngit-gate:\n  repos:\n    widgets:\n      url: {url}\n---\n"),
    )
    .unwrap();
    std::fs::write(w.home.join("agents/tofu.md"), "---\nbottle: tofu\n---\nPush widgets.\n").unwrap();
    let o = w.run(&["start", "tofu", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want =
        format!("widgets → 127.0.0.1:{}  (no key; host key {fingerprint} pinned on first use: fetched now", sshd.port);
    assert!(stdout(&o).contains(&want), "{}", stdout(&o));
    assert!(stdout(&o).contains("a host_key in the manifest is stronger"), "{}", stdout(&o));
    assert_eq!(w.state_entries(), ["legacy-old01"], "a dry run kept nothing");
    let o = w.run(&["info", "tofu"]);
    assert!(stdout(&o).contains("no host_key: pinned on first use at start"), "{}", stdout(&o));
    // A bottle that pinned this key on its first start: resume pins it again.
    w.write_metadata("tofu-old01", r#"{"agent_name": "tofu", "bottle_names": ["tofu"], "backend": "docker"}"#);
    let kept = w.home.join("state/tofu-old01/git-gate/host-keys.json");
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    let keep = |key: &str| {
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let json = serde_json::json!({"widgets": {"upstream": format!("127.0.0.1:{}", sshd.port), "key": key.join(" "), "at": "2026-12-01T00:00:00Z"}});
        std::fs::write(&kept, json.to_string()).unwrap();
    };
    keep(&sshd.host_key);
    let o = w.run(&["resume", "tofu-old01", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("host key {fingerprint} pinned on first use (2026-12-01T00:00:00Z)")),
        "{}",
        stdout(&o)
    );
    // The bottle pinned another key: the upstream's changed. Refused.
    let other = support::sshd::keygen(&dir.join("other_key"));
    keep(&other);
    let o = w.run(&["resume", "tofu-old01", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    let other_fp = {
        let line = std::process::Command::new("ssh-keygen").arg("-lf").arg(dir.join("other_key.pub")).output().unwrap();
        String::from_utf8_lossy(&line.stdout).split_whitespace().nth(1).unwrap().to_string()
    };
    assert!(e.contains("the host key of 127.0.0.1") && e.contains("changed"), "{e}");
    assert!(e.contains(&fingerprint) && e.contains(&other_fp), "{e}");
    // Nothing answers: a first use cannot pin, and says what to do.
    drop(sshd);
    let o = w.run(&["start", "tofu", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("git-gate.repos.widgets has no host_key") && stderr(&o).contains("set host_key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn remote_control_on_start_and_resume_for_claude_only() {
    let w = World::new("tests/fixtures/home");
    let o = w.run(&["start", "reviewer", "--dry-run", "--remote-control", "phone"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("claude; remote control 'phone' on"), "{}", stdout(&o));
    let o = w.run(&["start", "reviewer", "--dry-run", "--json", "--remote-control"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["remote_control"], "");
    w.write_metadata(
        "rev-aaaaa",
        r#"{"agent_name": "reviewer", "bottle_names": ["github", "claude"], "backend": "docker"}"#,
    );
    let o = w.run(&["resume", "rev-aaaaa", "--dry-run", "--remote-control"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("remote control on"), "{}", stdout(&o));
    // A provider without it, and a headless run, are refused.
    let demo = World::new("examples");
    let o = demo.run(&["start", "demo", "--dry-run", "--remote-control"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("provider 'shell' has no remote control"), "{}", stderr(&o));
    let o = w.run(&["start", "reviewer", "--headless", "--prompt", "x", "--remote-control", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--remote-control") && stderr(&o).contains("--headless"), "{}", stderr(&o));
}

/// The original's pi settings: a custom OpenAI-compatible endpoint gets a
/// route for its host and port, the key its `api_key` names injected.
#[test]
fn pi_on_a_custom_endpoint_as_the_original_writes_it() {
    let w = World::new("tests/fixtures/original-home");
    std::fs::write(
        w.home.join("bottles/pi-vllm.md"),
        "---\nagent_provider:\n  template: pi\n  settings:\n    provider: vllm\n    base_url: https://llm.example.com:8443/v1\n    api_key: VLLM_KEY\n    models: [qwen3-coder]\n    supports_developer_role: false\n---\n",
    )
    .unwrap();
    std::fs::write(w.home.join("agents/pi-vllm.md"), "---\nbottle: pi-vllm\n---\nhi\n").unwrap();
    let o = w.run_env(&["start", "pi-vllm", "--dry-run"], &[("VLLM_KEY", SECRET)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("llm.example.com [auth:Bearer] ports 8443") && stdout(&o).contains("(from provider pi)"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("ignored"), "{}", stderr(&o));
    assert_no_secret(&o);
    let o = w.run(&["start", "pi-vllm", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("agent_provider.settings.api_key names the host variable VLLM_KEY"), "{}", stderr(&o));
}
