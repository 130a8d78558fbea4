//! The sandbox-escape suite (spec/testing.md): real bottles on a real
//! Docker Engine, attacked from inside — as the agent user and as root in
//! the agent container — on a simulated internet (scripts/world.sh: an API
//! and an attacker's collector that record exactly what reached them, an
//! SSH git upstream). Every attack asserts that it failed *and* that
//! nothing arrived at the collector or the upstream. Then the allowed
//! paths, the faults (shim, sidecar, upstream, disk, a broken reload), and
//! a secrets audit over everything a session leaves behind.
//!
//! Three phases, each printing libtest's summary: the attacks and allowed
//! paths (in parallel), the faults (one at a time: they break things), the
//! audit (after the sessions ended).
//!
//! Each test fails when its defence is off. `ESCAPE_WEAKEN=<defence>`
//! weakens one without touching the product (see `world::Weaken`); the
//! defences that have no such knob name the one-line source change that
//! turns them off. The command for each is in a comment by the test, and
//! the outcome of running them is in SECURITY.md.

mod attacks;
mod faults;
mod leak;
#[path = "../support/mod.rs"]
mod support;
mod world;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use world::{Bottle, Launch, User, Weaken, World};

/// Everything the phases share, set up on first use.
pub struct Suite {
    pub world: World,
    pub home: PathBuf,
    pub a: Bottle,
    pub b: Bottle,
    pub api_token: String,
    pub planted: String,
    pub weaken: Weaken,
    /// Every distinct command line seen on this host during the suite.
    pub cmdlines: Arc<Mutex<std::collections::BTreeSet<String>>>,
    pub inspects: Mutex<Vec<String>>,
    tmp: tempfile::TempDir,
}

static SUITE: OnceLock<Result<Suite, String>> = OnceLock::new();
static SAMPLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Sample `/proc/*/cmdline` every few milliseconds: the host's process
/// table history for the audit. Only the host's own processes: what the
/// attacks run inside containers (the planted secret on a `curl` command
/// line) is the attacker's, not something bot-bottle exposed.
fn sample_cmdlines(into: Arc<Mutex<std::collections::BTreeSet<String>>>) {
    let host_ns = std::fs::read_link("/proc/self/ns/pid").ok();
    std::thread::spawn(move || {
        while SAMPLING.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(dir) = std::fs::read_dir("/proc") {
                let mut seen = Vec::new();
                for e in dir.flatten() {
                    if std::fs::read_link(e.path().join("ns/pid")).ok() != host_ns {
                        continue;
                    }
                    if let Ok(c) = std::fs::read(e.path().join("cmdline"))
                        && !c.is_empty()
                    {
                        seen.push(String::from_utf8_lossy(&c).replace('\0', " "));
                    }
                }
                into.lock().unwrap().extend(seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// The shared fixtures; set up once (a failed setup fails every test with
/// its message instead of being retried by each).
pub fn suite() -> Result<&'static Suite, Failed> {
    SUITE
        .get_or_init(|| {
            std::panic::catch_unwind(set_up).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the suite's setup panicked".to_string())
            })
        })
        .as_ref()
        .map_err(|e| Failed::from(format!("setup failed: {e}")))
}

fn set_up() -> Suite {
    support::docker::engine_answers();
    leak::self_check();
    let cmdlines = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    sample_cmdlines(cmdlines.clone());
    let weaken = Weaken::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("bb");
    let o = Command::new(world::bin()).args(["images", "build"]).env("BOT_BOTTLE_HOME", &home).output().unwrap();
    assert!(o.status.success(), "images build: {}", String::from_utf8_lossy(&o.stderr));
    let base = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("base").map(|t| t.trim().to_string()))
        .expect("images build names the base image");
    let world = World::up(&tmp.path().join("world"), &format!("bb-escape-{}", &world::random_hex(3)), &base);
    world::write_manifests(&home, &world, weaken);
    let api_token = world.get("WORLD_API_TOKEN").to_string();
    let planted = format!("pl4nted{}", world::random_hex(16));
    // Labels of their own: a leftover bottle cannot take them.
    let run = world::random_hex(2);
    let (label_a, label_b) = (format!("escape-a-{run}"), format!("escape-b-{run}"));
    let launch = |label: &str| Launch {
        home: &home,
        label: label.to_string(),
        world: &world,
        api_token: &api_token,
        planted: &planted,
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Bottle::start(launch(&label_a), weaken));
        let b = s.spawn(|| Bottle::start(launch(&label_b), weaken));
        let (a, b) = (a.join(), b.join());
        match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
        }
    });
    Suite { world, home, a, b, api_token, planted, weaken, cmdlines, inspects: Mutex::new(Vec::new()), tmp }
}

impl Suite {
    /// The values an attack script gets (on stdin, never a command line).
    pub fn prelude(&self) -> String {
        let other_ip = world::inspect_field(
            &self.b.container("sidecar"),
            &format!("{{{{(index .NetworkSettings.Networks \"bot-bottle-{}\").IPAddress}}}}", self.b.identity),
        );
        let other_world_ip = world::inspect_field(
            &self.b.container("sidecar"),
            &format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", self.world.get("WORLD_NET")),
        );
        format!(
            "export PLANTED='{}' CANARY='{}' API_IP='{}' COLLECTOR_IP='{}' GIT_IP='{}' OTHER_SIDECAR_IP='{}' OTHER_SIDECAR_WORLD_IP='{}' OTHER='{}'\n{}",
            self.planted,
            self.a.canary,
            self.world.get("WORLD_API_IP"),
            self.world.get("WORLD_COLLECTOR_IP"),
            self.world.get("WORLD_GIT_IP"),
            other_ip,
            other_world_ip,
            self.b.identity,
            attacks::HELPERS,
        )
    }

    /// The secrets nobody but the sidecar may hold, with what they are.
    pub fn sidecar_only_secrets(&self) -> Vec<(&'static str, String)> {
        let key_line = |path: PathBuf| -> String {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            text.lines().nth(1).unwrap_or_default().to_string()
        };
        vec![
            ("the API token", self.api_token.clone()),
            ("the git deploy key", key_line(PathBuf::from(self.world.get("WORLD_GIT_KEY")))),
        ]
    }

    /// Nothing ever reaches the attacker's collector.
    pub fn collector_untouched(&self) -> Result<(), Failed> {
        let got = self.world.records("collector");
        if got.is_empty() {
            Ok(())
        } else {
            Err(format!("the collector received {} arrival(s): {:?}", got.len(), &got[..got.len().min(3)]).into())
        }
    }

    /// No request for `path` reached the API.
    pub fn api_never_got(&self, path: &str) -> Result<(), Failed> {
        match self.world.records("api").iter().find(|r| r["path"].as_str().is_some_and(|p| p.starts_with(path))) {
            Some(r) => Err(format!("{path} reached the API: {r}").into()),
            None => Ok(()),
        }
    }

    /// None of `values` reached the API in any encoding.
    pub fn api_never_saw(&self, values: &[&str]) -> Result<(), Failed> {
        self.never_saw("api", values)
    }

    /// None of `values` reached the recorder `role` in any encoding.
    pub fn never_saw(&self, role: &str, values: &[&str]) -> Result<(), Failed> {
        for r in self.world.records(role) {
            let mut blobs = vec![
                r["method"].as_str().unwrap_or_default().as_bytes().to_vec(),
                r["path"].as_str().unwrap_or_default().as_bytes().to_vec(),
            ];
            blobs.push(r["headers"].to_string().into_bytes());
            use base64::Engine as _;
            blobs.push(
                base64::engine::general_purpose::STANDARD
                    .decode(r["body"].as_str().unwrap_or_default())
                    .unwrap_or_default(),
            );
            for v in values {
                if blobs.iter().any(|b| leak::found(b, v)) {
                    let whom = if role == "api" { "the API".to_string() } else { format!("the {role} recorder") };
                    return Err(format!("a secret reached {whom}: {} {}", r["method"], r["path"]).into());
                }
            }
        }
        Ok(())
    }
}

fn trial(name: String, f: impl FnOnce() -> Result<(), Failed> + Send + 'static) -> Trial {
    Trial::test(name, f)
}

fn main() {
    let args = Arguments::from_args();
    let mut phase1 = Vec::new();
    for user in [User::Agent, User::Root] {
        for (name, attack) in attacks::ATTACKS {
            let attack = *attack;
            phase1.push(trial(format!("attack::{}::{name}", user.name()), move || attack(suite()?, user)));
        }
    }
    for (name, check) in attacks::ALLOWED {
        let check = *check;
        phase1.push(trial(format!("allowed::{name}"), move || check(suite()?)));
    }
    for (name, check) in attacks::HOST_SIDE {
        let check = *check;
        phase1.push(trial(format!("host::{name}"), move || check(suite()?)));
    }
    let mut faults = Vec::new();
    for (name, fault) in faults::FAULTS {
        let fault = *fault;
        faults.push(trial(format!("fault::{name}"), move || fault(suite()?)));
    }
    let audit =
        vec![trial("audit::no_secret_anywhere_after_a_full_session".to_string(), || faults::secrets_audit(suite()?))];

    let mut failed = false;
    let one_at_a_time = Arguments { test_threads: Some(1), ..args.clone() };
    for (trials, args) in [(phase1, &args), (faults, &one_at_a_time), (audit, &one_at_a_time)] {
        failed |= libtest_mimic::run(args, trials).has_failed();
    }
    SAMPLING.store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(Ok(s)) = SUITE.get() {
        // The bottles and the world go (Drop does not run for statics).
        s.a.finish();
        s.b.finish();
        s.world.down();
        // Nor for its temporary directory, which holds the world's files
        // (the flood's uploads alone are 1 GiB): each run left one behind.
        let _ = std::fs::remove_dir_all(s.tmp.path());
    }
    std::process::exit(if failed { 101 } else { 0 });
}
