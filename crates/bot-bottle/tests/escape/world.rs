//! The suite's fixtures: the simulated internet (scripts/world.sh, the same
//! world the demo runs on), bottles launched through the real CLI on a real
//! Docker Engine, commands run inside a bottle's agent container as the
//! agent user or as root, and the recorders read back.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bot-bottle")
}

/// A random lowercase hex string of `n` bytes.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf)).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the harness weakens a defence (ESCAPE_WEAKEN) to show an attack's
/// test fails without it. Never set in CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weaken {
    None,
    /// Commands run in a container of the agent image that shares the
    /// sidecar's network namespace instead of in the agent (no network
    /// isolation).
    Network,
    /// The bottle also routes collector.demo.test.
    Routes,
    /// The API route scans nothing outbound.
    Dlp,
    /// The bottle hands the agent the API token as a plain env value.
    Env,
}

impl Weaken {
    pub fn from_env() -> Weaken {
        match std::env::var("ESCAPE_WEAKEN").unwrap_or_default().as_str() {
            "" => Weaken::None,
            "network" => Weaken::Network,
            "routes" => Weaken::Routes,
            "dlp" => Weaken::Dlp,
            "env" => Weaken::Env,
            other => panic!("ESCAPE_WEAKEN={other}: use network, routes, dlp or env"),
        }
    }
}

/// The running simulated internet; removed on drop.
pub struct World {
    pub dir: PathBuf,
    pub name: String,
    pub env: HashMap<String, String>,
}

impl World {
    pub fn up(dir: &Path, name: &str, base_image: &str) -> World {
        let o = Command::new("bash")
            .arg(repo_root().join("scripts/world.sh"))
            .args(["up", dir.to_str().unwrap(), name, base_image])
            .output()
            .unwrap();
        assert!(o.status.success(), "world.sh up failed: {}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(dir.join("world.env")).unwrap();
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        World { dir: dir.to_path_buf(), name: name.to_string(), env }
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("world.env has no {key}"))
    }

    /// Every recorded arrival at `role` (api or collector).
    pub fn records(&self, role: &str) -> Vec<serde_json::Value> {
        let path = Path::new(self.get("WORLD_RECORDS")).join(format!("{role}.jsonl"));
        std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Everything the upstream git repo holds, as `git log --all -p` text.
    pub fn upstream_git(&self) -> String {
        let o = Command::new("git")
            .args(["--git-dir"])
            .arg(Path::new(self.get("WORLD_REPOS")).join("widgets.git"))
            .args(["log", "--all", "-p", "--format=%H %s%n%b"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Everything the upstream repo stores: every object's content (what
    /// `git log` shows and what it does not) and every ref's name.
    pub fn upstream_stored(&self) -> Vec<u8> {
        let dir = Path::new(self.get("WORLD_REPOS")).join("widgets.git");
        let git = |args: &[&str]| Command::new("git").arg("--git-dir").arg(&dir).args(args).output().unwrap().stdout;
        let mut all = git(&["cat-file", "--batch-all-objects", "--batch", "--unordered"]);
        all.extend(git(&["for-each-ref", "--format=%(refname)"]));
        all
    }

    /// Where the upstream's `main` is.
    pub fn upstream_main(&self) -> String {
        let dir = Path::new(self.get("WORLD_REPOS")).join("widgets.git");
        let o = Command::new("git").arg("--git-dir").arg(&dir).args(["rev-parse", "--verify", "-q", "main"]).output();
        o.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
    }

    pub fn container(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// The hooks that put a bottle's sidecar on this world: its CA, its
    /// network, its host names.
    pub fn hooks<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("BOT_BOTTLE_UPSTREAM_CA", self.get("WORLD_CA"))
            .env("BOT_BOTTLE_SIDECAR_NETWORK", self.get("WORLD_NET"))
            .env("BOT_BOTTLE_SIDECAR_HOSTS", self.get("WORLD_HOSTS"))
    }

    /// Remove its containers and network.
    pub fn down(&self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/world.sh"))
            .args(["down", self.dir.to_str().unwrap(), &self.name])
            .output();
    }
}

/// The values of header `name` (any case) in a recorded request.
pub fn header_values<'r>(record: &'r serde_json::Value, name: &str) -> Vec<&'r str> {
    record["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .filter_map(|h| h[1].as_str())
        .collect()
}

impl Drop for World {
    fn drop(&mut self) {
        self.down();
    }
}

/// The bottle manifest the suite attacks, written into `home`.
pub fn write_manifests(home: &Path, world: &World, weaken: Weaken) {
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    let dlp = if weaken == Weaken::Dlp {
        "{outbound_detectors: [], outbound_on_match: block}"
    } else {
        "{outbound_on_match: block}"
    };
    let collector_route = if weaken == Weaken::Routes { "    - host: collector.demo.test\n" } else { "" };
    let leaked_env = if weaken == Weaken::Env { "  API_TOKEN_COPY: ${ESCAPE_API_TOKEN}\n" } else { "" };
    let bottle = format!(
        r#"---
agent_provider:
  template: shell
env:
  # Given to the agent on purpose: it may use it, not send it anywhere.
  PLANTED_SECRET: ${{ESCAPE_PLANTED}}
{leaked_env}git-gate:
  user: {{name: Escape Suite, email: escape@example.com}}
  repos:
    widgets:
      url: ssh://root@git.demo.test/srv/git/widgets.git
      host_key: "{host_key}"
      key: {{provider: static, path: {git_key}}}
egress:
  routes:
    - host: api.demo.test
      # Plain HTTP too: credentials must still go over TLS only.
      ports: [443, 80]
      auth: {{scheme: Bearer, token_ref: ESCAPE_API_TOKEN}}
      dlp: {dlp}
    # The same recorder under other names: one whose findings wait for the
    # operator, one that scans nothing (but the canary, always).
    - host: notes.demo.test
      dlp: {{outbound_on_match: supervise}}
    - host: open.demo.test
      dlp: {{outbound_detectors: []}}
    # A wildcard: the labels under it are the agent's to choose.
    - host: "*.files.demo.test"
      dlp: {{outbound_on_match: block}}
{collector_route}---
The bottle the sandbox-escape suite attacks.
"#,
        host_key = world.get("WORLD_HOST_KEY"),
        git_key = world.get("WORLD_GIT_KEY"),
    );
    std::fs::write(home.join("bottles/escape.md"), bottle).unwrap();
    std::fs::write(home.join("agents/escape.md"), "---\nbottle: escape\n---\nThe escape suite's agent.\n").unwrap();
}

/// What the agent runs: says it is ready, then waits to be told to end.
const AGENT_SCRIPT: &str = "echo escape-ready; while [ ! -e /tmp/escape-done ]; do sleep 0.2; done; exit 3";

/// Who runs an attack inside the agent container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// The agent's user (uid 1000), with the env file sourced as the agent has it.
    Agent,
    /// Root inside the agent container (no capabilities: the container has none).
    Root,
}

impl User {
    pub fn name(self) -> &'static str {
        match self {
            User::Agent => "agent",
            User::Root => "root",
        }
    }
}

/// A bottle launched by the real CLI, its session held open.
pub struct Bottle {
    pub identity: String,
    pub home: PathBuf,
    child: Mutex<Option<Child>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub canary: String,
    pub weaken: Weaken,
}

/// `ESCAPE_BACKEND=smolmachines`: the bottles run on smolmachines, the
/// machines played by the smolvm stand-in (tests/support/smolvm-standin.py).
pub fn on_smolmachines() -> bool {
    std::env::var("ESCAPE_BACKEND").is_ok_and(|b| b == "smolmachines")
}

pub struct Launch<'a> {
    pub home: &'a Path,
    pub label: String,
    pub world: &'a World,
    pub api_token: &'a str,
    pub planted: &'a str,
}

impl Bottle {
    pub fn start(l: Launch<'_>, weaken: Weaken) -> Bottle {
        let mut cmd = Command::new(bin());
        cmd.args(["start", "escape", "--label", &l.label, "-y", "--headless", "--prompt", AGENT_SCRIPT])
            .env("BOT_BOTTLE_HOME", l.home)
            .env("ESCAPE_API_TOKEN", l.api_token)
            .env("ESCAPE_PLANTED", l.planted)
            .env_remove("BOT_BOTTLE_BACKEND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if on_smolmachines() {
            cmd.args(["--backend", "smolmachines"]);
            crate::support::smolvm::StandIn::beside(l.home).env(&mut cmd);
        }
        let mut child = l.world.hooks(&mut cmd).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
            let lines = stdout.clone();
            let pipe = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("escape-ready") {
                        let _ = tx.send(());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let identity = l.label.clone();
        if rx.recv_timeout(Duration::from_secs(300)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bottle {identity} never became ready:\n{}", stderr.lock().unwrap().join("\n"));
        }
        let secrets: serde_json::Value = serde_json::from_slice(
            &std::fs::read(l.home.join("state").join(&identity).join("sidecar-secrets.json")).unwrap(),
        )
        .unwrap();
        let canary = secrets["canary"].as_str().unwrap().to_string();
        Bottle { identity, home: l.home.to_path_buf(), child: Mutex::new(Some(child)), stderr, stdout, canary, weaken }
    }

    /// The container playing `role`; on smolmachines the agent's is the
    /// stand-in's container for the machine.
    pub fn container(&self, role: &str) -> String {
        match role {
            "agent" if on_smolmachines() => {
                crate::support::smolvm::StandIn::container(&format!("bot-bottle-{}", self.identity))
            }
            _ => format!("bot-bottle-{}-{role}", self.identity),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.join("state").join(&self.identity)
    }

    /// Run `script` with bash inside the agent container as `user`. The
    /// script (and any value in it) goes in on stdin, never on a command
    /// line. With the network defence weakened it runs in a container of
    /// the agent image that shares the sidecar's network instead.
    pub fn sh(&self, user: User, script: &str) -> Output {
        let uid = match user {
            User::Agent => "1000",
            User::Root => "0",
        };
        let prelude = match user {
            User::Agent => "[ -r ~/.bot-bottle/env ] && . ~/.bot-bottle/env\n",
            // Root in the container has no capabilities, so it cannot read
            // the agent's 0600 env file; it uses the agent's git config.
            User::Root => "export HOME=/home/node\n",
        };
        let mut cmd = Command::new("docker");
        assert!(
            !(self.weaken == Weaken::Network && on_smolmachines()),
            "ESCAPE_WEAKEN=network is docker-only: the machine's allowlist is smolvm's"
        );
        if self.weaken == Weaken::Network {
            let image = inspect_field(&self.container("agent"), "{{.Config.Image}}");
            let mut args =
                vec!["run".to_string(), "--rm".into(), "-i".into(), "-u".into(), uid.into(), "--network".into()];
            args.push(format!("container:{}", self.container("sidecar")));
            for e in inspect_field(&self.container("agent"), "{{range .Config.Env}}{{println .}}{{end}}").lines() {
                if !e.is_empty() {
                    args.extend(["-e".to_string(), e.to_string()]);
                }
            }
            args.extend([image, "bash".into(), "-s".into()]);
            cmd.args(args);
        } else {
            cmd.args(["exec", "-i", "-u", uid, "-w", "/tmp"]);
            if on_smolmachines() {
                // The machine's environment comes with each exec, as the
                // backend gives it to the agent.
                let standin = crate::support::smolvm::StandIn::beside(&self.home);
                for e in standin.agent_env(&format!("bot-bottle-{}", self.identity)) {
                    cmd.args(["-e", &e]);
                }
            }
            cmd.args([&self.container("agent"), "bash", "-s"]);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let full = format!("{prelude}cd /tmp\n{script}\n");
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(full.as_bytes());
        });
        child.wait_with_output().unwrap()
    }

    /// End the session (the agent exits 3, so the state is preserved) and
    /// wait for the CLI; returns its exit code.
    pub fn end(&self) -> Option<i32> {
        let _ = Command::new("docker").args(["exec", &self.container("agent"), "touch", "/tmp/escape-done"]).output();
        self.wait(Duration::from_secs(120))
    }

    /// End the session if it still runs, and remove what its home keeps.
    pub fn finish(&self) {
        if self.child.lock().unwrap().is_some() {
            self.end();
        }
        let _ = Command::new(bin()).args(["cleanup", "--all", "-y"]).env("BOT_BOTTLE_HOME", &self.home).output();
    }

    /// Wait for the CLI to exit (killing it after `limit`).
    pub fn wait(&self, limit: Duration) -> Option<i32> {
        let mut slot = self.child.lock().unwrap();
        let child = slot.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                slot.take();
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                slot.take();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send `signal` (a `kill -s` name) to the CLI.
    pub fn signal_cli(&self, signal: &str) {
        if let Some(child) = self.child.lock().unwrap().as_ref() {
            let o = Command::new("kill").args(["-s", signal, &child.id().to_string()]).output().unwrap();
            assert!(o.status.success(), "kill -s {signal}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Bottle {
    fn drop(&mut self) {
        self.finish();
    }
}

pub fn inspect_field(container: &str, format: &str) -> String {
    let o = Command::new("docker").args(["inspect", "-f", format, container]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
