//! The smolmachines backend end to end, through the real code path and a
//! real Docker bundle, with the `smolvm` CLI played by the stand-in
//! (tests/support/smolvm-standin.py: no microVM boots on this kind of
//! machine). Start, the agent's values and the self-test, a session ending
//! in 3, resume on smolmachines because the metadata says so, list active,
//! commit and a resume that boots the committed machine, stop, cleanup; a
//! subnet another network holds is passed over; an allowlist smolvm did not
//! apply refuses the launch; a resume that fails mid-launch keeps the
//! agent's work; Ctrl-C during the launch leaves nothing. Throughout: every
//! smolvm argv conforms to the recorded CLI surface, and no planted value is
//! on any smolvm argv or any host command line. And the recorded surface
//! against smolvm 1.32's own `--help`.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::smolvm::StandIn;

struct Home {
    root: PathBuf,
    standin: StandIn,
    planted: String,
    _tmp: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        support::docker::engine_answers();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("bb");
        support::bottle_and_agent(
            &root,
            "vm",
            "---\nagent_provider:\n  template: shell\nenv:\n  PLANTED: ${SMOL_PLANTED}\nlimits:\n  agent_memory: 3GiB\negress:\n  routes:\n    - host: example.com\n---\nA bottle on smolmachines.\n",
            "vm",
        );
        let standin = StandIn::beside(&root);
        let planted = format!("planted-{}", std::process::id()) + &"x7Qz".repeat(4);
        Home { root, standin, planted, _tmp: tmp }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
        cmd.args(args)
            .env("BOT_BOTTLE_HOME", &self.root)
            .env("SMOL_PLANTED", &self.planted)
            .env_remove("BOT_BOTTLE_BACKEND")
            .stdin(Stdio::null());
        self.standin.env(&mut cmd);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `start AGENT --backend smolmachines --label LABEL -y --headless
    /// --prompt PROMPT`.
    fn start(&self, agent: &str, label: &str, prompt: &str) -> Command {
        self.cmd(&[
            "start",
            agent,
            "--backend",
            "smolmachines",
            "--label",
            label,
            "-y",
            "--headless",
            "--prompt",
            prompt,
        ])
    }

    fn state(&self, identity: &str) -> PathBuf {
        self.root.join("state").join(identity)
    }
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every distinct host command line (this pid namespace) while it runs.
struct Sampler {
    seen: Arc<Mutex<std::collections::BTreeSet<String>>>,
    on: Arc<AtomicBool>,
}

impl Sampler {
    fn start() -> Sampler {
        let (seen, on) = (Arc::new(Mutex::new(std::collections::BTreeSet::new())), Arc::new(AtomicBool::new(true)));
        let (into, running) = (seen.clone(), on.clone());
        let ns = std::fs::read_link("/proc/self/ns/pid").ok();
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if std::fs::read_link(e.path().join("ns/pid")).ok() != ns {
                        continue;
                    }
                    if let Ok(c) = std::fs::read(e.path().join("cmdline"))
                        && !c.is_empty()
                    {
                        into.lock().unwrap().insert(String::from_utf8_lossy(&c).replace('\0', " "));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { seen, on }
    }

    fn stop(&self) -> Vec<String> {
        self.on.store(false, Ordering::Relaxed);
        self.seen.lock().unwrap().iter().cloned().collect()
    }
}

fn sha256(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn no_leftovers(identity: &str) {
    let (containers, networks) = support::docker::objects(identity);
    assert!(containers.is_empty() && networks.is_empty(), "left behind: {containers:?} {networks:?}");
    // The bottle's machine, and the one `export` boots from its commit.
    for machine in [format!("bot-bottle-{identity}"), backend::smolmachines::bottle::export_machine_name(identity)] {
        let machine = StandIn::container(&machine);
        let o = Command::new("docker").args(["ps", "-aq", "--filter", &format!("name=^{machine}$")]).output().unwrap();
        assert!(o.stdout.is_empty(), "the machine's container {machine} is left behind");
    }
}

/// A bottle `label` whose last session (ended 3) left `work` in its
/// workspace, kept in its state: the kept file.
fn with_kept_work(h: &Home, label: &str) -> std::path::PathBuf {
    let o = h.start("vm", label, "echo work > /workspace/mark; exit 3").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let mark = h.state(label).join("workspace/mark");
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "work\n");
    mark
}

/// What a session end says when it could not copy the workspace out.
const SAID_OF_A_FAILED_COPY: [&str; 3] = ["not copied out", "committed instead", "committed either"];

#[test]
fn a_bottle_lives_its_whole_life_on_smolmachines() {
    let h = Home::new();
    let sampler = Sampler::start();
    // The agent holds the planted value (checked by its hash, never shown),
    // the self-test passed, and the session ends with 3: state kept.
    let prompt = format!(
        "[ \"$(printf %s \"$PLANTED\" | sha256sum | cut -d' ' -f1)\" = {} ] && echo planted-ok; echo proxy=$HTTPS_PROXY prompt=$(stat -c %a ~/.bot-bottle-prompt.txt); echo work > /workspace/mark; exit 3",
        sha256(&h.planted)
    );
    let o = h.start("vm", "smt", &prompt).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("planted-ok"), "{out}");
    // The identity's own /28, unless another bottle of the tests running
    // beside this one holds it.
    let ip = bundle_ip(&out);
    assert!(out.contains(&format!("proxy=http://{ip}:3128 prompt=600")), "{out}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.state("smt").join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["backend"], "smolmachines");
    let selftest: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(h.state("smt").join("selftest.json")).unwrap()).unwrap();
    assert!(selftest.len() == 4 && selftest.iter().all(|c| c["passed"] == true), "{selftest:?}");
    assert!(h.state("smt").join(".preserve").exists());
    no_leftovers("smt");

    // Resume: no --backend, the metadata says smolmachines.
    let before = h.standin.calls().len();
    // The agent's work came out of the machine, and goes back in on resume.
    assert_eq!(std::fs::read_to_string(h.state("smt").join("workspace/mark")).unwrap(), "work\n");
    let o = h.run(&["resume", "smt", "-y", "--headless", "--prompt", "cat /workspace/mark; echo resumed-in-a-machine"]);
    assert!(o.status.success() && text(&o).contains("work\nresumed-in-a-machine"), "{}", text(&o));
    assert!(h.standin.calls()[before..].iter().any(|c| c[..2] == ["machine", "create"]), "resume did not use smolvm");
    assert!(!h.state("smt").exists(), "a clean exit keeps no state");
    no_leftovers("smt");

    // A running bottle: list active shows it; commit packs the machine,
    // which smolvm does only with the machine stopped, so the session in it
    // ends (its end waits for the pack, then copies the workspace out of
    // the restarted machine); resume boots the pack, and stop ends that
    // session with the state kept.
    // (The marker is written before the session's first line.)
    let mut session = held_session(&h, "live", "echo kept > ~/marker; echo more > /workspace/mark; ");
    wait_for("list active to show the machine", Duration::from_secs(240), || {
        let o = h.run(&["list", "active", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        list.as_array().into_iter().flatten().any(|b| b["identity"] == "live" && b["backend"] == "smolmachines")
    });
    // The machine runs within the bottle's memory (the stand-in applies
    // `--mem` as smolvm does).
    let memory = Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.Memory}}", "smolvm-standin-bot-bottle-live"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&memory.stdout).trim(), (3u64 << 30).to_string(), "{memory:?}");
    // The pack is slow, as on a loaded host: the session's end comes while
    // the machine is still stopped for it.
    let o = h.cmd(&["commit", "live"]).env("SMOLVM_STANDIN_SLOW", "pack create").output().unwrap();
    let said = |label: &str| std::fs::read_to_string(h.root.join(format!("{label}.stderr"))).unwrap();
    assert!(o.status.success(), "{}\nthe session said:\n{}", text(&o), said("live"));
    assert!(text(&o).contains("the agent's session in it has ended"), "{}", text(&o));
    assert!(!session.wait().unwrap().success(), "the session outlived its machine's restart");
    let ended = said("live");
    assert!(!SAID_OF_A_FAILED_COPY.iter().any(|w| ended.contains(w)), "{ended}");
    assert_eq!(std::fs::read_to_string(h.state("live").join("workspace/mark")).unwrap(), "more\n");
    assert!(h.state("live").join(".preserve").exists() && h.state("live").join("commit.smolmachine").is_file());
    no_leftovers("live");

    let resumed = h.cmd(&["resume", "live", "-y", "--headless", "--prompt", "echo session-up; sleep 120"]);
    let mut session = hold(&h, "live-resumed", resumed);
    // Its machine removed slowly: the session's own end (its agent
    // stopped) comes while the stop is still removing it.
    let o = h.cmd(&["stop", "live"]).env("SMOLVM_STANDIN_SLOW", "machine delete").output().unwrap();
    assert!(o.status.success(), "{}\nthe session said:\n{}", text(&o), said("live-resumed"));
    assert!(!session.wait().unwrap().success(), "the session outlived stop");
    // The stop copied the workspace out; the session's own end waits for
    // it, finds the machine gone and says nothing of a copy or a commit.
    let ended = said("live-resumed");
    assert!(!SAID_OF_A_FAILED_COPY.iter().any(|w| ended.contains(w)), "{ended}");
    assert!(h.state("live").join(".preserve").exists() && h.state("live").join("commit.smolmachine").is_file());
    no_leftovers("live");
    let before = h.standin.calls().len();
    let o = h.run(&["resume", "live", "-y", "--headless", "--prompt", "cat ~/marker"]);
    assert!(o.status.success() && text(&o).contains("kept"), "the committed machine was not booted: {}", text(&o));
    let create = h.standin.calls()[before..].iter().find(|c| c[..2] == ["machine", "create"]).cloned().unwrap();
    let from = create.iter().position(|a| a == "--from").map(|i| create[i + 1].clone()).unwrap();
    assert!(from.ends_with("state/live/commit.smolmachine"), "{create:?}");

    // Cleanup: preserved state of a bottle that runs no more, with --all.
    let o = h.start("vm", "gone", "exit 4").output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!h.state("gone").exists());

    // Every smolvm call: in the recorded surface, no secret on it, and the
    // machine's allowlist the bundle's /32 alone with the bundle as its
    // resolver.
    let calls = h.standin.calls();
    assert!(calls.len() > 20, "{} calls", calls.len());
    for c in &calls {
        backend::smolmachines::argv::conforms(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(!c.join(" ").contains(&h.planted), "a planted value on a smolvm command line: {c:?}");
    }
    for create in calls.iter().filter(|c| c[..2] == ["machine", "create"]) {
        let values = |flag: &str| -> Vec<&String> {
            create.iter().enumerate().filter(|(_, a)| *a == flag).map(|(i, _)| &create[i + 1]).collect()
        };
        let (allow, dns) = (values("--allow-cidr"), values("--dns"));
        assert_eq!(allow.len(), 1, "{create:?}");
        // The bottle's `limits.agent_memory` (3GiB), in smolvm's MiB.
        assert_eq!(values("--mem"), [&"3072".to_string()], "{create:?}");
        assert_eq!(allow[0], &format!("{}/32", dns[0]), "{create:?}");
    }
    let cmdlines = sampler.stop();
    assert!(cmdlines.iter().any(|c| c.contains("smolvm-standin.py")), "the sampler saw no smolvm call");
    let leaked: Vec<&String> = cmdlines.iter().filter(|c| c.contains(&h.planted)).collect();
    assert!(leaked.is_empty(), "a planted value on a host command line: {leaked:?}");
}

/// The bundle IP the agent was given (`proxy=http://IP:3128` in its
/// output), checked to be a bundle address: the `.2` of a /28 in the pool.
fn bundle_ip(out: &str) -> std::net::Ipv4Addr {
    let at = out.find("proxy=http://").expect("the agent printed no proxy") + "proxy=http://".len();
    let ip: std::net::Ipv4Addr = out[at..].split(':').next().unwrap().parse().unwrap();
    assert!(ip.octets()[..2] == [10, 213] && ip.octets()[3] % 16 == 2, "not a bundle address: {ip}");
    ip
}

#[test]
fn a_held_subnet_is_passed_over_and_an_allowlist_not_applied_refuses_the_launch() {
    let h = Home::new();
    // Another network already holds the bottle's subnet (as another
    // bottle's does when both identities hash to the same /28): the bottle
    // takes the next free one.
    let net = backend::smolmachines::net::BundleNet::derive("clash");
    let squatter = format!("smol-squatter-{}", std::process::id());
    let made = Command::new("docker").args(["network", "create", "--subnet", &net.cidr(), &squatter]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let o = h
        .start(
            "vm",
            "clash",
            "echo proxy=$HTTPS_PROXY; curl -sS -o /dev/null -w 'code=%{http_code}' https://example.com/",
        )
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["network", "rm", &squatter]).output();
    assert!(o.status.success(), "{}", text(&o));
    let ip = bundle_ip(&text(&o));
    assert_ne!(ip, net.ip, "the launch took the held subnet");
    // The agent reaches its sidecar there (the route answers or the
    // sidecar refuses upstream; either way not a connection failure).
    assert!(text(&o).contains("code=") && !text(&o).contains("code=000"), "{}", text(&o));
    no_leftovers("clash");

    // smolvm reports an allowlist other than the bundle's /32: the machine
    // never starts.
    let before = h.standin.calls().len();
    let o = h.start("vm", "open", "true").env("SMOLVM_STANDIN_IGNORE_ALLOW", "1").output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("refusing to start it"), "{}", text(&o));
    assert!(!h.standin.calls()[before..].iter().any(|c| c[..2] == ["machine", "start"]), "a machine was started");
    no_leftovers("open");
}

/// A resume whose launch fails after its machine started but before the
/// agent's files went in (the copy into the machine fails): the machine's
/// empty `/workspace` is not copied out over the work kept from the last
/// session, and the next resume has it.
#[test]
fn a_resume_that_fails_mid_launch_keeps_the_agents_work() {
    let h = Home::new();
    let mark = with_kept_work(&h, "keepwork");

    let o = h
        .cmd(&["resume", "keepwork", "-y", "--headless", "--prompt", "true"])
        .env("SMOLVM_STANDIN_FAIL", "machine cp")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the copy failed but the launch went on: {}", text(&o));
    assert!(text(&o).contains("SMOLVM_STANDIN_FAIL"), "{}", text(&o));
    assert!(!text(&o).contains("not copied out"), "a failed launch tried to copy its workspace out: {}", text(&o));
    assert_eq!(std::fs::read_to_string(&mark).ok().as_deref(), Some("work\n"), "the kept work was replaced");
    no_leftovers("keepwork");

    let o = h.run(&["resume", "keepwork", "-y", "--headless", "--prompt", "cat /workspace/mark"]);
    assert!(o.status.success() && text(&o).contains("work"), "{}", text(&o));
    no_leftovers("keepwork");
}

/// A workspace over the copy bound at a session end: the machine is
/// packed into the state dir instead of losing the agent's work with it,
/// `export` writes the work from the pack, and the resume boots from that
/// pack with the work; a later resume puts
/// the newer kept copy in place of the pack's workspace.
#[test]
fn a_workspace_too_large_to_copy_out_is_kept_by_a_commit() {
    let h = Home::new();
    let big = "head -c 3000000 /dev/urandom > /workspace/big; echo latest > /workspace/mark";
    let o = h.start("vm", "bulky", &format!("{big}; exit 3")).env("BOT_BOTTLE_WORKSPACE_MAX", "2MiB").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("over 2 MiB") && text(&o).contains("committed instead"), "{}", text(&o));
    assert!(
        h.state("bulky").join("commit.smolmachine").is_file() && h.state("bulky").join("workspace.uncopied").exists()
    );
    no_leftovers("bulky");
    // Export under the same bound: over it in the pack too, so it says
    // where the work is; under the default bound it is written from the
    // pack, booted with no network and nothing run in it, then removed.
    let dest = h.root.join("bulky-out");
    let o =
        h.cmd(&["export", "bulky", dest.to_str().unwrap()]).env("BOT_BOTTLE_WORKSPACE_MAX", "2MiB").output().unwrap();
    assert!(!o.status.success() && text(&o).contains("over 2 MiB"), "{}", text(&o));
    assert!(text(&o).contains("bot-bottle resume bulky") && !dest.join("mark").exists(), "{}", text(&o));
    let before = h.standin.calls().len();
    let o = h.run(&["export", "bulky", dest.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("from the bottle's commit"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(dest.join("mark")).unwrap(), "latest\n");
    assert_eq!(std::fs::metadata(dest.join("big")).unwrap().len(), 3_000_000);
    assert!(!h.state("bulky").join("workspace.uncopied").exists());
    let create = h.standin.calls()[before..].iter().find(|c| c[..2] == ["machine", "create"]).cloned().unwrap();
    assert!(!create.iter().any(|a| a.starts_with("--net") || a == "--allow-cidr" || a == "--dns"), "{create:?}");
    for c in &h.standin.calls()[before..] {
        backend::smolmachines::argv::conforms(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
    no_leftovers("bulky");
    let o =
        h.run(&["resume", "bulky", "-y", "--headless", "--prompt", "cat /workspace/mark; rm /workspace/big; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("latest"), "the agent's work was lost: {}", text(&o));
    assert!(!h.state("bulky").join("workspace.uncopied").exists());
    assert_eq!(std::fs::read_to_string(h.state("bulky").join("workspace/mark")).unwrap(), "latest\n");
    no_leftovers("bulky");
    // The next resume boots the pack again, with the newer kept copy in
    // place of its workspace: the file removed since stays removed.
    let o =
        h.run(&["resume", "bulky", "-y", "--headless", "--prompt", "cat /workspace/mark; ls -A /workspace; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(text(&o).contains("latest") && !text(&o).contains("big\n"), "{}", text(&o));
    no_leftovers("bulky");
}

/// A CLI killed (SIGKILL: no session end ran) leaves its machine with the
/// agent's work since the last copy: the resume keeps it before it
/// replaces the machine.
#[test]
fn a_killed_clis_work_survives_its_resume() {
    let h = Home::new();
    let mut session = held_session(&h, "slain", "echo precious > /workspace/one; ");
    session.kill().unwrap();
    session.wait().unwrap();
    let o = h.run(&["resume", "slain", "-y", "--headless", "--prompt", "cat /workspace/one; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("earlier session") && text(&o).contains("precious"), "{}", text(&o));
    no_leftovers("slain");
}

/// Ctrl-C as the machine is being created, twenty times: the launch is told
/// to stop (never dropped mid-request, as on docker), so nothing smolvm or
/// the engine was creating appears after the cleanup looked.
#[test]
fn ctrl_c_during_the_launch_leaves_nothing() {
    let h = Home::new();
    for round in 0..20 {
        let label = format!("intr{round}");
        let mut child = h.start("vm", &label, "true").stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let (rx, reader) = watch(child.stderr.take().unwrap(), "starting the agent's machine");
        rx.recv_timeout(Duration::from_secs(240)).expect("the launch never reached the machine");
        let o = Command::new("kill").args(["-INT", &child.id().to_string()]).output().unwrap();
        assert!(o.status.success());
        let status = child.wait().unwrap();
        let seen = reader.join().unwrap();
        assert_eq!(status.code(), Some(130), "round {round}: the launch did not end as interrupted: {seen:?}");
        assert!(seen.iter().any(|l| l.contains("interrupted")), "round {round}: not ended by the interrupt: {seen:?}");
        no_leftovers(&label);
        let machines = std::fs::read_dir(h.standin.dir.join("machines")).unwrap().count();
        assert_eq!(machines, 0, "round {round}: a machine was left behind");
    }
}

/// smolvm 1.32 itself (from PyPI's `smolmachines`, which scripts/test.sh
/// installs into target/test-venv; `SMOLVM_REAL` names another): every
/// option of the recorded surface is in its own `--help`, taking a value
/// exactly when the surface says so. The stand-in checks the backend
/// against that surface; this checks the surface against smolvm.
#[test]
fn the_recorded_surface_is_smolvms_own() {
    let real = std::env::var_os("SMOLVM_REAL").map(PathBuf::from).or_else(|| {
        let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/lib");
        std::fs::read_dir(lib)
            .ok()?
            .flatten()
            .map(|d| d.path().join("site-packages/smol/smol-vmm"))
            .find(|p| p.is_file())
    });
    let real = real.expect("no smolvm binary: run scripts/test.sh (it installs smolmachines), or set SMOLVM_REAL");
    for command in backend::smolmachines::argv::surface() {
        let o = Command::new(&real).args(command.name.split(' ')).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "smolvm {} --help failed", command.name);
        for (spellings, takes) in &command.options {
            let long = spellings.iter().find(|n| n.starts_with("--")).unwrap();
            let line = help
                .lines()
                .map(str::trim_start)
                .find(|l| {
                    // An option's own line: its spellings come first.
                    l.starts_with('-')
                        && l.split([',', ' ']).take_while(|w| w.is_empty() || w.starts_with('-')).any(|w| w == long)
                })
                .unwrap_or_else(|| panic!("smolvm {} has no {long}", command.name));
            assert_eq!(line.contains(&format!("{long} <")), *takes, "smolvm {}: {line}", command.name);
        }
    }
}

/// A route where the self-test expects none: the self-test in the machine
/// sees the host was not refused, the launch stops before the agent runs.
#[test]
fn a_failing_self_test_aborts_the_launch_on_smolmachines() {
    let h = Home::new();
    support::bottle_and_agent(&h.root, "leaky", support::SELF_TEST_HOLE, "leaky");
    let o = h.start("leaky", "leaky", "echo the-agent-ran").output().unwrap();
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("the isolation self-test failed") && out.contains("unrouted-host-refused"), "{out}");
    assert!(!out.contains("the-agent-ran"), "{out}");
    no_leftovers("leaky");
}

/// `stop` while a resume is still putting the agent's files into its
/// machine: it waits for the launch, so the empty `/workspace` of a
/// machine not yet provisioned is never copied out over the work kept
/// from the last session.
#[test]
fn a_stop_during_a_launch_waits_for_it_and_keeps_the_work() {
    let h = Home::new();
    let mark = with_kept_work(&h, "midlaunch");

    // The copy of the agent's files into the machine takes 10 s.
    let mut session = h
        .cmd(&["resume", "midlaunch", "-y", "--headless", "--prompt", "echo session-up; sleep 120"])
        .env("SMOLVM_STANDIN_SLOW", "machine cp")
        .env("SMOLVM_STANDIN_SLOW_SECS", "10")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(h.root.join("midlaunch.stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_for("the resumed machine to run", Duration::from_secs(240), || {
        let o = Command::new("docker")
            .args(["ps", "-q", "--filter", &format!("name=^{}$", StandIn::container("bot-bottle-midlaunch"))])
            .output()
            .unwrap();
        !o.stdout.is_empty()
    });
    let o = h.run(&["stop", "midlaunch"]);
    let said = || std::fs::read_to_string(h.root.join("midlaunch.stderr")).unwrap();
    assert!(!session.wait().unwrap().success(), "the session outlived stop");
    assert_eq!(
        std::fs::read_to_string(&mark).ok().as_deref(),
        Some("work\n"),
        "the kept work was replaced by an unprovisioned machine's workspace"
    );
    assert!(o.status.success(), "{}\nthe session said:\n{}", text(&o), said());
    assert!(text(&o).contains("waiting for midlaunch's launch"), "{}", text(&o));
    assert!(said().contains("isolation self-test"), "the launch did not finish: {}", said());
    no_leftovers("midlaunch");
}

/// A headless session of `label` that has run `first` and then started
/// waiting (its line seen); what bot-bottle says goes to `LABEL.stderr`
/// in the home.
fn held_session(h: &Home, label: &str, first: &str) -> std::process::Child {
    hold(h, label, h.start("vm", label, &format!("{first}echo session-up; sleep 120")))
}

/// Spawn `session` (whose prompt prints `session-up`, then sleeps) and
/// wait for that line; its stderr goes to `<home>/LABEL.stderr`.
fn hold(h: &Home, label: &str, mut session: Command) -> std::process::Child {
    let mut child = session
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(h.root.join(format!("{label}.stderr"))).unwrap())
        .spawn()
        .unwrap();
    let (rx, _) = watch(child.stdout.take().unwrap(), "session-up");
    rx.recv_timeout(Duration::from_secs(240)).expect("the session never started");
    child
}

/// Read `pipe` to its end on a thread (a closed pipe would end the CLI
/// itself): a signal when a line holds `marker`, and every line at the end.
fn watch(
    pipe: impl std::io::Read + Send + 'static,
    marker: &'static str,
) -> (std::sync::mpsc::Receiver<()>, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains(marker) {
                let _ = tx.send(());
            }
            seen.push(line);
        }
        seen
    });
    (rx, reader)
}

/// A killed CLI leaves its machine on its bundle's network: cleanup removes
/// the machine before that network can go.
#[test]
fn a_killed_cli_leaves_what_cleanup_removes() {
    let h = Home::new();
    let mut child = held_session(&h, "orphan", "");
    child.kill().unwrap();
    let _ = child.wait();
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("machine bot-bottle-orphan"), "{}", text(&o));
    no_leftovers("orphan");
    assert_eq!(std::fs::read_dir(h.standin.dir.join("machines")).unwrap().count(), 0);
    assert!(!h.state("orphan").exists());
}

/// Headless, Ctrl-C ends the session (130) and tears the bottle down, its
/// state kept for resume — as on docker.
#[test]
fn ctrl_c_during_a_headless_session_ends_it_and_tears_down() {
    let h = Home::new();
    let mut child = held_session(&h, "held", "");
    let o = Command::new("kill").args(["-INT", &child.id().to_string()]).output().unwrap();
    assert!(o.status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    no_leftovers("held");
    assert!(h.state("held").join(".preserve").exists());
    let o = h.run(&["cleanup", "--all", "-y"]);
    assert!(o.status.success(), "{}", text(&o));
}
