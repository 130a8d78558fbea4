//! The interactive paths on a real terminal: tmux runs the CLI, send-keys
//! types, capture-pane reads the screen. Pickers, the secret prompt (no
//! echo), the launch question and colour rules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

/// The CLI on a terminal with a copy of the fixture home.
struct Tmux {
    term: support::tmux::Tmux,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Tmux {
    /// Run `args` of bot-bottle in a fresh tmux server with a copy of the
    /// fixture home; `env` is exported first.
    fn start(name: &str, args: &str, env: &[(&str, &str)]) -> Tmux {
        Self::start_with(name, args, env, |_| {})
    }

    /// As `start`, with `setup` run on the home before the command starts.
    fn start_with(name: &str, args: &str, env: &[(&str, &str)], setup: impl FnOnce(&Path)) -> Tmux {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/home");
        assert!(Command::new("cp").arg("-r").arg(&fixtures).arg(dir.join("bb")).status().unwrap().success());
        std::fs::create_dir_all(dir.join("user/.claude/skills/review")).unwrap();
        std::fs::create_dir_all(dir.join("user/.ssh")).unwrap();
        std::fs::write(dir.join("user/.ssh/id_ed25519_widgets"), "not a real key").unwrap();
        setup(&dir.join("bb"));
        let mut script = String::from(
            "cd \"$1\"\nexport BOT_BOTTLE_HOME=\"$1/bb\" HOME=\"$1/user\"\nunset BOT_BOTTLE_BACKEND NO_COLOR\n",
        );
        for (k, v) in env {
            script.push_str(&format!("export {k}='{v}'\n"));
        }
        script.push_str(&format!("{} {args}\necho \"EXIT=$?\"\nsleep 60\n", env!("CARGO_BIN_EXE_bot-bottle")));
        let term = support::tmux::Tmux::run(name, &dir, &script);
        Tmux { term, _tmp: tmp, dir }
    }

    fn screen(&self, escapes: bool) -> String {
        self.term.screen(escapes)
    }

    fn wait_for(&self, text: &str) -> String {
        self.term.wait_for(text)
    }

    fn keys(&self, keys: &[&str]) {
        self.term.keys(keys)
    }

    fn home(&self) -> PathBuf {
        self.dir.join("bb")
    }
}

fn state_entries(home: &Path) -> usize {
    std::fs::read_dir(home.join("state")).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn pickers_choose_agent_bottles_label_and_backend() {
    let t = Tmux::start(
        "pickers",
        "start --dry-run",
        &[("GH_TOKEN", "x"), ("GH_USER", "x"), ("ANTHROPIC_TOKEN", "x"), ("GITEA_TOKEN", "x")],
    );
    t.wait_for("agent:");
    t.keys(&["shel", "Enter"]);
    // The bottle picker starts from the agent's default and shows extends chains.
    let s = t.wait_for("bottles, in merge order");
    assert!(s.contains("done (use: base)"), "{s}");
    assert!(s.contains("strict <- [github, claude]"), "{s}");
    assert!(s.contains("github <- base"), "{s}");
    // Add `claude` after `base`: type to filter, pick it, then done.
    t.keys(&["claude", "Enter"]);
    let s = t.wait_for("done (use: base, claude)");
    assert!(s.contains("start over"), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("label");
    t.keys(&["Night Shift", "Enter"]);
    let s = t.wait_for("backend:");
    assert!(s.contains("smolmachines"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("bot-bottle preflight"), "{s}");
    assert!(s.contains("bottles   base, claude"), "{s}");
    assert!(s.contains("identity  night-shift"), "{s}");
    assert!(s.contains("EXIT=0"), "{s}");
    assert_eq!(state_entries(&t.home()), 0);
}

#[test]
fn secrets_are_asked_without_echo_and_declining_keeps_nothing() {
    let secret = "typed-secret-Zq81";
    let t = Tmux::start(
        "secret",
        "start reviewer --label x",
        &[("GH_TOKEN", "x"), ("GH_USER", "x"), ("ANTHROPIC_TOKEN", "x"), ("GITEA_TOKEN", "x")],
    );
    t.wait_for("bottles, in merge order");
    t.keys(&["Enter"]);
    t.wait_for("backend:");
    t.keys(&["Enter"]);
    t.wait_for("Deploy password for staging");
    t.keys(&[secret, "Enter"]);
    let s = t.wait_for("launch this agent? [y/N]");
    assert!(!s.contains(secret), "the secret was echoed:\n{s}");
    assert!(s.contains("DEPLOY_PASSWORD"), "{s}");
    assert_eq!(state_entries(&t.home()), 1, "prepare wrote the state dir");
    t.keys(&["n", "Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("not launched") && s.contains("EXIT=1"), "{s}");
    assert!(!s.contains(secret));
    assert_eq!(state_entries(&t.home()), 0, "declining removes the prepared state");
}

#[test]
fn labels_are_coloured_on_a_terminal_unless_no_color() {
    let setup = |home: &Path| {
        std::fs::create_dir_all(home.join("state/dev-aaaaa")).unwrap();
        std::fs::write(home.join("state/dev-aaaaa/metadata.json"), r#"{"label": "Dev", "color": "cyan"}"#).unwrap();
    };
    let t = Tmux::start_with("colour", "list active", &[], setup);
    t.wait_for("EXIT=0");
    assert!(t.screen(true).contains("\x1b[36mDev"), "{:?}", t.screen(true));
    let t = Tmux::start_with("nocolour", "list active", &[("NO_COLOR", "1")], setup);
    t.wait_for("EXIT=0");
    let s = t.screen(true);
    assert!(s.contains("Dev") && !s.contains("\x1b[36m"), "{s:?}");
}

#[test]
fn init_asks_and_writes_files_that_load() {
    let t = Tmux::start_with("init", "init", &[], |home| {
        std::fs::remove_dir_all(home).unwrap();
    });
    t.wait_for("agent name");
    // An invalid name is said and asked again.
    t.keys(&["Night Owl", "Enter"]);
    t.wait_for("must match ^[a-z][a-z0-9-]*$");
    t.keys(&["night-owl", "Enter"]);
    t.wait_for("system prompt");
    t.keys(&["You review code at night.", "Enter"]);
    t.wait_for("starter bottle");
    t.keys(&["Enter"]);
    // The starter bottle's provider is asked (typed keys wait for the
    // picker's help line: it is drawn once the picker reads keys).
    t.wait_for("type to filter");
    t.keys(&["pi", "Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("next steps") && s.contains("export PI_MODEL_TOKEN="), "{s}");
    assert!(std::fs::read_to_string(t.home().join("bottles/dev.md")).unwrap().contains("template: pi"));
    let agent = std::fs::read_to_string(t.home().join("agents/night-owl.md")).unwrap();
    assert_eq!(agent, "---\nbottle: dev\n---\nYou review code at night.\n");
    assert!(t.home().join("bottles/dev.md").is_file());
}

#[test]
fn edit_reopens_an_invalid_bottle_until_it_loads() {
    // The editor breaks the file the first time and mends it the second,
    // counting its runs in a file beside the home (its working directory).
    let editor = "#!/bin/sh\nn=$(cat runs 2>/dev/null || echo 0)\necho $((n+1)) > runs\n\
        if [ $n = 0 ]; then sed -i s/^egress:/egres:/ \"$1\"; else sed -i s/^egres:/egress:/ \"$1\"; fi\n";
    let t = Tmux::start_with("edit", "edit --bottle base", &[("EDITOR", "./editor.sh")], |home| {
        let script = home.parent().unwrap().join("editor.sh");
        std::fs::write(&script, editor).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    });
    let s = t.wait_for("edit again? [y/N]");
    assert!(s.contains("did you mean 'egress'"), "{s}");
    t.keys(&["y", "Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("bottles/base.md is valid") && s.contains("EXIT=0"), "{s}");
    assert_eq!(std::fs::read_to_string(t.dir.join("runs")).unwrap().trim(), "2");
    assert!(std::fs::read_to_string(t.home().join("bottles/base.md")).unwrap().contains("\negress:"));
}

/// A bottle with state and a proposal store, as a running sidecar leaves
/// them; returns the store's path.
fn bottle_with_store(home: &Path, identity: &str, label: &str, color: &str) -> PathBuf {
    let dir = home.join("state").join(identity);
    std::fs::create_dir_all(dir.join("supervise")).unwrap();
    let meta = state::BottleMetadata {
        identity: identity.into(),
        label: label.into(),
        color: color.into(),
        ..Default::default()
    };
    meta.write(&dir).unwrap();
    supervise::store_path(&dir)
}

#[test]
fn the_console_approves_modifies_and_rejects_and_rings_for_new_proposals() {
    use serde_json::json;
    use supervise::{Kind, ProposalStore, Status};
    let stores = std::cell::RefCell::new(Vec::new());
    let editor = "sed -i s/x.org/y.org/";
    let t = Tmux::start_with("console", "supervise", &[("EDITOR", editor), ("USER", "ada")], |home| {
        let otter = bottle_with_store(home, "swift-otter", "otter", "green");
        let heron = bottle_with_store(home, "calm-heron", "heron", "blue");
        let s = ProposalStore::open(&otter, "swift-otter").unwrap();
        s.file(Kind::AskOperator, &json!({"question": "Which database?"}), "").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        s.file(Kind::GitPushAllow, &json!({"repo": "widgets", "refs": ["refs/heads/main"], "findings": [{}]}), "")
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let h = ProposalStore::open(&heron, "calm-heron").unwrap();
        h.file(Kind::EgressAllow, &json!({"route": {"host": "x.org"}}), "docs").unwrap();
        stores.borrow_mut().extend([otter, heron]);
    });
    let (otter, heron) = (stores.borrow()[0].clone(), stores.borrow()[1].clone());
    let s = t.wait_for("3 pending");
    assert!(s.contains("otter") && s.contains("heron") && s.contains("Which database?"), "{s}");
    // The oldest first: answer the question.
    t.keys(&["a"]);
    t.wait_for("answer:");
    t.keys(&["sqlite", "Enter"]);
    t.wait_for("#1 approved");
    // Next: the sidecar's push proposal cannot be modified and needs a reason.
    t.keys(&["m"]);
    t.wait_for("cannot be modified");
    t.keys(&["r", "Enter"]);
    t.wait_for("a reason is required");
    t.keys(&["rotate the key", "Enter"]);
    t.wait_for("#2 rejected");
    // Then the other bottle's route: modified in the editor, then approved.
    t.keys(&["m"]);
    t.wait_for("#1 modified");
    // A new proposal arrives while the console runs: listed, and the bell rang.
    let bell = || t.term.window("#{window_bell_flag}");
    ProposalStore::open(&otter, "swift-otter")
        .unwrap()
        .file(Kind::EgressBlock, &json!({"host": "old.example"}), "not needed")
        .unwrap();
    t.wait_for("block old.example");
    let deadline = Instant::now() + Duration::from_secs(10);
    while bell() != "1" {
        assert!(Instant::now() < deadline, "no bell for the new proposal");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.keys(&["q"]);
    t.wait_for("EXIT=0");
    // What the console wrote is in the stores, with the operator's name.
    let o = ProposalStore::open(&otter, "swift-otter").unwrap();
    let answered = o.get(1).unwrap().unwrap();
    assert_eq!(answered.status, Status::Approved);
    let decision = answered.decision.unwrap();
    assert_eq!((decision.reason.as_str(), decision.operator.as_str()), ("sqlite", "ada"));
    assert_eq!(o.get(2).unwrap().unwrap().decision.unwrap().reason, "rotate the key");
    assert_eq!(o.pending().unwrap().len(), 1);
    let h = ProposalStore::open(&heron, "calm-heron").unwrap().get(1).unwrap().unwrap();
    assert_eq!(h.status, Status::Modified);
    assert_eq!(h.decision.unwrap().payload, Some(json!({"route": {"host": "y.org"}})));
}
