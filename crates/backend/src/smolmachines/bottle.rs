//! A bottle on smolmachines: the agent in a microVM that the `smolvm` CLI
//! runs, whose network allowlist is the sidecar bundle's IP alone; the
//! bundle (the same sidecar as on docker, and a shim serving its sockets on
//! that IP) in Docker on a bridge whose subnet derives from the identity.
//! Launch, provisioning through `machine cp`/`machine exec`, the self-test,
//! the session's exec, and teardown in reverse order on every exit path.
//! The agent's values reach the guest only in a 0600 file copied in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::ListNetworksOptions;
use futures_util::StreamExt;

use super::argv;
use super::net::BundleNet;
use crate::engine::agent::{WorkspaceIn, agent_files, forwarded_login, replaces_commit_workspace};
use crate::engine::images::{self, Progress};
use crate::engine::objects::{
    LABEL_AGENT, LABEL_HOME, LABEL_IDENTITY, LABEL_LABEL, LABEL_ROLE, LABEL_STARTED, Objects, create, docker_err, find,
    io_err, join_extra_network, labels, locked, net_name_for, remove, trace,
};
use crate::engine::provision::{self, AGENT_HOME, AGENT_UID, Endpoints, WORKSPACE};
use crate::engine::sidecar::{
    forget_secrets, revoke_deploy_keys, save_sidecar_logs, sidecar_body, wait_for_sockets, write_sidecar_files,
};
use crate::engine::{self, transcript};
use crate::error::BackendError;
use crate::plan::Plan;
use crate::registry::LAUNCHER_FILE;
use sidecar::config::{EGRESS_PORT, EGRESS_SOCKET, GATE_PORT, GATE_SOCKET, RUN_DIR, SUPERVISE_PORT, SUPERVISE_SOCKET};

/// The machine of a bottle.
pub fn machine_name(identity: &str) -> String {
    format!("bot-bottle-{identity}")
}

/// Where `commit` leaves the bottle's snapshot, which `resume` boots from.
pub const COMMIT_PACK: &str = "commit.smolmachine";

/// The most of a stream [`Smolvm::stream`] drains after its reader is done.
const STREAM_TAIL: u64 = 1 << 20;

/// The `smolvm` binary.
#[derive(Debug, Clone)]
pub struct Smolvm {
    /// Its path.
    pub bin: PathBuf,
}

impl Smolvm {
    /// A command running it with `args`.
    pub fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args);
        // As root, smolvm drops each VM to its own uid, which cannot open a
        // root-only /dev/kvm.
        if std::env::var_os("SMOLVM_VM_UID_DROP").is_none() && is_root() {
            c.env("SMOLVM_VM_UID_DROP", "off");
        }
        c
    }

    /// Run to completion; stdout on success, smolvm's own message otherwise.
    pub fn run(&self, args: &[String]) -> Result<Vec<u8>, BackendError> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BackendError::Invalid { message: format!("cannot run {} ({e})", self.bin.display()) })?;
        Self::checked(args, out)
    }

    /// [`Self::run`] for the launch: it yields while smolvm works, and
    /// dropping it (Ctrl-C) kills smolvm.
    pub async fn run_async(&self, args: &[String]) -> Result<Vec<u8>, BackendError> {
        let out = tokio::process::Command::from(self.command(args))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| BackendError::Invalid { message: format!("cannot run {} ({e})", self.bin.display()) })?;
        Self::checked(args, out)
    }

    /// Run with its stdout handed to `read` as it comes (never held
    /// whole), e.g. a tar of the workspace; smolvm's own message when it
    /// fails, else what `read` made of it. Killed when `read` stops early.
    pub fn stream<T>(
        &self,
        args: &[String],
        read: impl FnOnce(&mut dyn std::io::Read) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut child =
            self.command(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| BackendError::Invalid { message: format!("cannot run {} ({e})", self.bin.display()) })?;
        // Its stderr drains beside: a full pipe would stall it.
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut e, &mut buf);
                buf
            })
        });
        let read = match child.stdout.take() {
            Some(mut out) => {
                let read = read(&mut out);
                // What `read` left (a tar's record padding) is drained, up
                // to a bound, so smolvm does not fail writing it.
                let left = std::io::copy(&mut std::io::Read::take(&mut out, STREAM_TAIL), &mut std::io::sink());
                if read.is_err() || left.map_or(true, |n| n == STREAM_TAIL) {
                    let _ = child.kill();
                }
                read
            }
            None => Err(BackendError::Smolvm("smolvm's stdout was not captured".into())),
        };
        let status =
            child.wait().map_err(|e| BackendError::Invalid { message: format!("cannot wait for smolvm ({e})") })?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        // smolvm failing on its own (an exit code, not the kill above)
        // explains a cut-short stream better than the reader's error, and
        // fails a stream the reader took for whole.
        if status.code().is_some() {
            Self::checked(args, std::process::Output { status, stdout: Vec::new(), stderr })?;
        }
        read
    }

    fn checked(args: &[String], out: std::process::Output) -> Result<Vec<u8>, BackendError> {
        if !out.status.success() {
            return Err(BackendError::Smolvm(format!(
                "smolvm {} failed: {}",
                args.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
                error_message(&out.stderr)
            )));
        }
        Ok(out.stdout)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next() == Some("0"))))
        .unwrap_or(false)
}

/// smolvm's `--error-format json` message, or its stderr as text.
fn error_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    for line in text.lines().rev() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim())
            && let Some(m) = v["error"]["message"].as_str()
        {
            return m.to_string();
        }
    }
    text.lines().filter(|l| !l.starts_with("note:")).collect::<Vec<_>>().join(" ").trim().to_string()
}

/// The machine's record from `machine ls --json` / `status --json`.
pub fn machines(smolvm: &Smolvm) -> Result<Vec<serde_json::Value>, BackendError> {
    let out = smolvm.run(&argv::list())?;
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| BackendError::Smolvm(format!("smolvm machine ls --json printed something else: {e}")))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// A launched bottle.
pub struct SmolBottle {
    /// The runtime its async work runs on.
    pub runtime: tokio::runtime::Runtime,
    /// The Docker Engine (the sidecar's container, the bundle's network).
    pub docker: Docker,
    /// The `smolvm` binary.
    pub smolvm: Smolvm,
    /// The agent's machine.
    pub machine: String,
    /// The sidecar's Docker objects.
    pub objects: Objects,
    /// Its state dir.
    pub state_dir: PathBuf,
    /// The agent's plain environment, given to every exec.
    pub env: Vec<String>,
    torn_down: bool,
}

impl SmolBottle {
    /// Run `argv` in the agent (through the env wrapper), as its user in the
    /// workspace; the exit code.
    /// If the sidecar or the shim exits first, the agent has lost its only
    /// way out: the command is killed and the session ends saying which.
    pub fn exec(&self, argv: &[String], tty: bool) -> Result<i32, BackendError> {
        let wrapped = provision::wrap(&provision::expand_home(argv));
        let uid = AGENT_UID.to_string();
        let how = argv::Exec { user: Some(&uid), workdir: Some(WORKSPACE), env: &self.env, tty, stdin: tty };
        let mut child = tokio::process::Command::from(self.smolvm.command(&argv::exec(&self.machine, &how, &wrapped)));
        let watched: Vec<(&'static str, String)> = [("sidecar", &self.objects.sidecar), ("shim", &self.objects.shim)]
            .into_iter()
            .filter_map(|(role, id)| Some((role, id.clone()?)))
            .collect();
        self.runtime.block_on(async {
            let mut child = child
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| BackendError::Invalid { message: format!("cannot run {} ({e})", self.smolvm.bin.display()) })?;
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(io_err("cannot wait for the agent's command"))?;
                    Ok(status.code().unwrap_or(128 + 9))
                }
                // Headless, Ctrl-C ends the session (130, as a shell reports
                // it), as on docker; on a terminal it reaches the agent.
                _ = tokio::signal::ctrl_c(), if !tty => {
                    let _ = child.kill().await;
                    Ok(130)
                }
                (role, code) = crate::engine::exec::first_exit(&self.docker, &watched) => {
                    let _ = child.kill().await;
                    Err(BackendError::Ended(format!(
                        "the {role} exited (status {code}) while the agent ran: the agent has no way out any more, so the session ends"
                    )))
                }
            }
        })
    }

    /// Keep the logs, the transcript and the workspace, remove the machine
    /// and the bundle, forget the secrets. Idempotent.
    pub fn teardown(&mut self) -> Result<(), BackendError> {
        self.remove_all(true)
    }

    /// Remove the machine and the bundle, keeping the agent's transcript
    /// and workspace only when `keep`. A launch that failed keeps
    /// neither (as on docker): its machine may not have the agent's files
    /// yet, and its empty `/workspace` must not replace the kept one.
    fn remove_all(&mut self, keep: bool) -> Result<(), BackendError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let (docker, objects, dir) = (&self.docker, &self.objects, &self.state_dir);
        // After a `bot-bottle stop` that ends it, not beside it.
        let _end = state::EndLock::wait(dir, state::EndLock::PATIENCE, || {});
        if keep {
            snapshot_transcript(&self.smolvm, &self.machine, dir);
            keep_work(&self.smolvm, &self.machine, dir, &self.objects.identity);
        }
        let _ = self.smolvm.run(&argv::stop(&self.machine));
        let _ = self.smolvm.run(&argv::delete(&self.machine));
        self.runtime.block_on(async {
            save_sidecar_logs(docker, objects, dir).await;
            let removed = remove(docker, objects).await;
            revoke_deploy_keys(dir).await;
            forget_secrets(dir);
            let _ = std::fs::remove_file(dir.join(LAUNCHER_FILE));
            removed
        })
    }
}

impl Drop for SmolBottle {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Session end: the CLI's session directories out of the machine (a tar
/// on the exec's stdout) into the state dir's transcript. Best effort.
pub fn snapshot_transcript(smolvm: &Smolvm, machine: &str, state_dir: &Path) {
    if !state_dir.is_dir() {
        return;
    }
    for dir in transcript::session_dirs(state_dir) {
        let script = format!("[ -d {AGENT_HOME}/{dir} ] && tar -cf - -C {AGENT_HOME} {dir}");
        let how = argv::Exec::default();
        if let Ok(tar) = smolvm.run(&argv::exec(machine, &how, &["sh".into(), "-c".into(), script])) {
            transcript::keep(state_dir, &dir, &tar);
        }
    }
}

/// Session end (and `export` of a running bottle): the machine's
/// `/workspace` (a tar on the exec's stdout) into the state dir (see
/// [`crate::workspace`]). A failure is the error; the copy before it stays.
pub fn snapshot_workspace(smolvm: &Smolvm, machine: &str, state_dir: &Path) -> Result<(), String> {
    if !state_dir.is_dir() {
        return Ok(());
    }
    let script = format!("tar -cf - -C / {}", WORKSPACE.trim_start_matches('/'));
    let how = argv::Exec::default();
    // Unpacked beside the kept copy as it streams; it replaces that copy
    // only once smolvm has ended well (a stream cut short at an entry's
    // end would read as a whole, shorter workspace).
    let unpacked = smolvm.stream(&argv::exec(machine, &how, &["sh".into(), "-c".into(), script]), |tar| {
        crate::workspace::unpack_beside(state_dir, tar)
    });
    match unpacked {
        Ok(_) => crate::workspace::replace_with_unpacked(state_dir).map_err(|e| e.to_string()),
        Err(e) => {
            crate::workspace::discard_unpacked(state_dir);
            Err(e.to_string())
        }
    }
}

/// Session end: the workspace copied out, or, when it cannot be (over the
/// bound, a full disk), the machine packed into the state dir instead (as
/// `commit` does), so that `resume` boots with the workspace as the agent
/// left it. Said either way. The machine is left stopped.
pub fn keep_work(smolvm: &Smolvm, machine: &str, state_dir: &Path, identity: &str) {
    let Err(why) = snapshot_workspace(smolvm, machine, state_dir) else { return };
    // Gone already: `bot-bottle stop` from another terminal copied its
    // workspace out and removed it; there is nothing left here to keep.
    if machines(smolvm).is_ok_and(|all| !all.iter().any(|m| m["name"] == machine)) {
        return;
    }
    eprintln!("bot-bottle: the agent's workspace was not copied out ({why}); committing the machine instead");
    match commit_machine(smolvm, machine, state_dir, false) {
        Ok(pack) => {
            crate::workspace::record_uncopied(state_dir, &why);
            eprintln!(
                "bot-bottle: the machine was committed instead ({}), and `bot-bottle resume {identity}` boots with its workspace as the agent left it",
                pack.display()
            );
        }
        Err(e) => eprintln!(
            "bot-bottle: the machine could not be committed either ({e}): the agent's work since the last copy to {} is lost",
            state_dir.display()
        ),
    }
}

/// Pack `machine` (stopped for it; started again when `restart`) into
/// the state dir's commit pack, which `resume` boots from.
pub fn commit_machine(
    smolvm: &Smolvm,
    machine: &str,
    state_dir: &Path,
    restart: bool,
) -> Result<PathBuf, BackendError> {
    let pack = state_dir.join(COMMIT_PACK);
    let scratch = tempfile::Builder::new()
        .prefix("commit-")
        .tempdir_in(state_dir)
        .map_err(|source| BackendError::Io { what: "cannot create a scratch directory".into(), source })?;
    let out = scratch.path().join("commit");
    smolvm.run(&argv::stop(machine))?;
    let packed = smolvm.run(&argv::pack_vm(machine, &out.display().to_string()));
    if restart {
        smolvm.run(&argv::start(machine))?;
    }
    packed?;
    keep_pack(&out, &pack)?;
    Ok(pack)
}

/// Launch `plan` on smolmachines; anything created is removed again if a
/// step fails, or on Ctrl-C during the launch.
pub fn launch_blocking(plan: &Plan, smolvm: Smolvm, progress: Progress<'_>) -> Result<SmolBottle, BackendError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("cannot start the async runtime"))?;
    let machine = machine_name(&plan.identity);
    let docker = runtime.block_on(engine::connect())?;
    let mut objects = Objects { identity: plan.identity.clone(), ..Default::default() };
    let mut env = Vec::new();
    let cancel = crate::engine::cancel::Cancel::default();
    // A stop meanwhile waits for the launch (see docker's); released
    // before a failed launch's removal, which takes it again.
    let launching = crate::registry::launch_turn(plan, progress);
    let launched = runtime.block_on(async {
        // A panic mid-launch is caught so what was created can be removed.
        let steps = launch_steps(&docker, &smolvm, plan, progress, &cancel, &mut objects, &mut env);
        let guarded = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(steps));
        tokio::pin!(guarded);
        tokio::select! {
            r = &mut guarded => r,
            _ = tokio::signal::ctrl_c() => {
                // As on docker: the launch is told to stop, not dropped — a
                // machine or container smolvm or the engine is creating
                // right now would otherwise appear after the cleanup looked.
                // It stops at its next step; then the cleanup below runs.
                cancel.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(60), &mut guarded).await;
                Ok(Err(crate::engine::cancel::interrupted()))
            }
        }
    });
    drop(launching);
    let (launched, panic) = match launched {
        Ok(r) => (r, None),
        Err(p) => (Err(BackendError::Launch("the launch panicked".to_string())), Some(p)),
    };
    let mut bottle =
        SmolBottle { runtime, docker, smolvm, machine, objects, state_dir: plan.state_dir(), env, torn_down: false };
    match launched {
        Ok(()) => Ok(bottle),
        Err(e) => {
            // Whatever exists by label, also what a cancelled step created.
            let found = bottle.runtime.block_on(find(&bottle.docker, &plan.home, &plan.identity));
            if let Ok(found) = found {
                bottle.objects = found;
            }
            let _ = bottle.remove_all(false);
            if let Some(p) = panic {
                std::panic::resume_unwind(p);
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn launch_steps(
    docker: &Docker,
    smolvm: &Smolvm,
    plan: &Plan,
    progress: Progress<'_>,
    cancel: &crate::engine::cancel::Cancel,
    objects: &mut Objects,
    agent_env: &mut Vec<String>,
) -> Result<(), BackendError> {
    let dir = plan.state_dir();
    let identity = &plan.identity;
    let machine = machine_name(identity);
    std::fs::write(dir.join(LAUNCHER_FILE), crate::registry::launcher_record())
        .map_err(io_err("cannot write the launcher pid"))?;
    // Leftovers of an earlier run of this identity (a killed launcher).
    let stale = find(docker, &plan.home, identity).await?;
    if machines(smolvm).is_ok_and(|all| all.iter().any(|m| m["name"] == machine.as_str())) {
        // Its agent's work since the last copy is only in its machine.
        progress("keeping the work of this bottle's earlier session (its bot-bottle was killed)");
        snapshot_transcript(smolvm, &machine, &dir);
        keep_work(smolvm, &machine, &dir, identity);
        let _ = smolvm.run_async(&argv::stop(&machine)).await;
    }
    remove(docker, &stale).await?;
    let _ = smolvm.run_async(&argv::delete(&machine)).await;
    // Images: the agent's is built with Docker and packed for smolvm.
    let base = cancel.wait(images::ensure_base(docker, progress)).await?;
    let sidecar_image = cancel.wait(images::ensure_sidecar(docker, &base, progress)).await?;
    // When the machine boots from this bottle's commit: when it was made.
    let committed_at = committed_pack(&dir).and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let pack = match committed_pack(&dir) {
        Some(p) => {
            progress(&format!("using the committed machine {}", p.display()));
            p
        }
        None => {
            let agent_image = cancel.wait(crate::engine::agent::agent_image(docker, plan, &base, progress)).await?;
            crate::engine::prune::record_use(&dir, &[&base, &sidecar_image, &agent_image])?;
            cancel.wait(ensure_pack(docker, smolvm, &agent_image, progress)).await?
        }
    };
    trace("images ready");
    // The bundle's network: the identity's /28 while it is free, else the
    // next free one (see `BundleNet::choose`).
    let net_name = net_name_for(identity);
    let (net, created) = create_bundle_network(docker, plan, identity, &net_name).await?;
    objects.network = Some(created);
    let at = Endpoints { host: net.ip.to_string() };
    let login = forwarded_login(plan)?;
    let (config, canary) = write_sidecar_files(plan, login.as_ref(), &at, progress, cancel).await?;

    progress("starting the sidecar bundle");
    let (mut body, run_dir) = sidecar_body(plan, &config, &sidecar_image, &net_name)?;
    body.networking_config = Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            net_name.clone(),
            EndpointSettings {
                ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(net.ip.to_string()), ..Default::default() }),
                ..Default::default()
            },
        )])),
    });
    cancel.check()?;
    let sidecar = create(docker, &format!("bot-bottle-{identity}-sidecar"), body).await?;
    objects.sidecar = Some(sidecar.clone());
    docker.start_container(&sidecar, None).await.map_err(docker_err("cannot start the sidecar"))?;
    join_extra_network(docker, &sidecar).await?;
    let mut sockets = vec![EGRESS_SOCKET, SUPERVISE_SOCKET];
    if !plan.manifest.bottle.repos.is_empty() {
        sockets.push(GATE_SOCKET);
    }
    cancel.wait(wait_for_sockets(docker, &sidecar, &run_dir, &sockets)).await?;
    // The shim serves the sockets on the bundle IP, in the sidecar's
    // namespace: the one address the machine may reach.
    let map = |port: u16, socket: &str| format!("{port}={RUN_DIR}/{socket}");
    let mut shim_cmd = vec![
        "shim".to_string(),
        "--listen".into(),
        net.ip.to_string(),
        "--map".into(),
        map(EGRESS_PORT, EGRESS_SOCKET),
    ];
    shim_cmd.extend(["--map".to_string(), map(SUPERVISE_PORT, SUPERVISE_SOCKET)]);
    if sockets.contains(&GATE_SOCKET) {
        shim_cmd.extend(["--map".to_string(), map(GATE_PORT, GATE_SOCKET)]);
    }
    let (uid, gid) = crate::engine::objects::host_ids(&dir)?;
    cancel.check()?;
    let shim = create(
        docker,
        &format!("bot-bottle-{identity}-shim"),
        bollard::models::ContainerCreateBody {
            image: Some(sidecar_image.clone()),
            cmd: Some(shim_cmd),
            user: Some(format!("{uid}:{gid}")),
            labels: Some(labels(&plan.home, identity, "shim")),
            host_config: Some(locked(HostConfig {
                binds: Some(vec![format!("{}:{RUN_DIR}", run_dir.display())]),
                network_mode: Some(format!("container:{sidecar}")),
                pids_limit: Some(64),
                ..Default::default()
            })),
            ..Default::default()
        },
    )
    .await?;
    objects.shim = Some(shim.clone());
    docker.start_container(&shim, None).await.map_err(docker_err("cannot start the shim"))?;
    trace("bundle started");

    // The machine: its allowlist the bundle alone, confirmed before
    // anything runs in it.
    progress("starting the agent's machine");
    let p = plan.resolved_provider.provider();
    let mut machine_labels = vec![
        (LABEL_IDENTITY.to_string(), identity.clone()),
        (LABEL_HOME.to_string(), plan.home.root().display().to_string()),
        (LABEL_AGENT.to_string(), plan.metadata.agent_name.clone()),
        (LABEL_STARTED.to_string(), plan.metadata.started_at.clone()),
    ];
    if !plan.metadata.label.is_empty() {
        machine_labels.push((LABEL_LABEL.to_string(), plan.metadata.label.clone()));
    }
    let ip = net.ip.to_string();
    cancel.check()?;
    smolvm
        .run_async(&argv::create(
            &machine,
            &pack.display().to_string(),
            &net.allow_cidr(),
            &ip,
            // `limits` are bytes; smolvm takes MiB (at least 256 here).
            plan.manifest.bottle.limits.agent_memory() >> 20,
            &machine_labels,
        ))
        .await?;
    let status: serde_json::Value = serde_json::from_slice(&smolvm.run_async(&argv::status(&machine)).await?)
        .map_err(|e| BackendError::Smolvm(format!("smolvm machine status --json printed something else: {e}")))?;
    let allowed: Vec<&str> =
        status["allowed_cidrs"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    if allowed != [net.allow_cidr().as_str()] {
        return Err(BackendError::Smolvm(format!(
            "smolvm reports the machine's network allowlist as {allowed:?}, not [{}]: refusing to start it",
            net.allow_cidr()
        )));
    }
    cancel.check()?;
    smolvm.run_async(&argv::start(&machine)).await?;
    cancel.wait(wait_ready(smolvm, &machine)).await?;
    trace("machine ready");

    progress("provisioning the agent");
    let mut env_extra: Vec<(String, String)> = p.extra_env.clone();
    env_extra.extend(p.placeholder_env.iter().cloned());
    let env_ref: Vec<(&str, &str)> = env_extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    *agent_env = provision::agent_env(&at, &env_ref);
    let files = agent_files(
        plan,
        &canary,
        login.as_ref().map(|l| l.stand_in.as_str()),
        None,
        &at,
        committed_at,
        WorkspaceIn::WithTheRest,
    )?;
    let scratch = tempfile::Builder::new()
        .prefix("bot-bottle-smol-")
        .tempdir()
        .map_err(io_err("cannot create a scratch directory"))?;
    let host = scratch.path().join("files.tar");
    write_private(&host, &files)?;
    let guest = "/tmp/bot-bottle-files.tar";
    cancel.check()?;
    smolvm.run_async(&argv::copy_in(&machine, &host.display().to_string(), guest, 0o600, 0)).await?;
    // A committed machine holds the CA of the launch it was made in: out
    // of the bundle before the new one is written, then the new one in.
    let mut unpack = vec!["set -e".to_string()];
    // A kept workspace newer than the committed machine replaces its
    // `/workspace` whole (files the agent removed since stay removed).
    if replaces_commit_workspace(plan, committed_at) {
        unpack.push(format!("find {WORKSPACE} -mindepth 1 -delete"));
    }
    unpack.extend([
        provision::bundle_without_previous_ca_sh(),
        format!("tar -xpf {guest} -C / --same-owner --numeric-owner && rm -f {guest}"),
        // The bottle CA joins the system bundle every TLS client reads.
        provision::bundle_append_ca_sh(),
    ]);
    drop(scratch);
    smolvm
        .run_async(&argv::exec(&machine, &argv::Exec::default(), &["sh".into(), "-c".into(), unpack.join("\n")]))
        .await?;
    trace("agent provisioned");

    progress("isolation self-test");
    let uid = AGENT_UID.to_string();
    let how = argv::Exec { user: Some(&uid), workdir: Some(WORKSPACE), env: agent_env, tty: false, stdin: false };
    let test = provision::wrap(&["bash".into(), "-c".into(), provision::SELF_TEST.into()]);
    let output = String::from_utf8_lossy(&smolvm.run_async(&argv::exec(&machine, &how, &test)).await?).into_owned();
    provision::self_test_verdict(&output, &dir.join("selftest.json"))?;
    Ok(())
}

/// The bundle's network, created on a free /28 of the pool: the engine's
/// networks are listed, a subnet chosen among them, and the network
/// created; when another launch took that subnet in between (the engine
/// refuses an overlapping pool), the choice is made again.
async fn create_bundle_network(
    docker: &Docker,
    plan: &Plan,
    identity: &str,
    net_name: &str,
) -> Result<(BundleNet, String), BackendError> {
    const TRIES: usize = 4;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing: Vec<(String, String)> = docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(docker_err("cannot list networks"))?
            .into_iter()
            .filter(|n| n.name.as_deref() != Some(net_name))
            .flat_map(|n| {
                let name = n.name.clone().unwrap_or_default();
                n.ipam
                    .and_then(|i| i.config)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |c| Some((name.clone(), c.subnet?)))
            })
            .collect();
        let net = BundleNet::choose(identity, &existing).map_err(|message| BackendError::Invalid { message })?;
        let created = docker
            .create_network(NetworkCreateRequest {
                name: net_name.to_string(),
                driver: Some("bridge".to_string()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(net.cidr()),
                        gateway: Some(net.gateway.to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                labels: Some(labels(&plan.home, identity, "network")),
                ..Default::default()
            })
            .await;
        match created {
            Ok(created) => return Ok((net, created.id)),
            Err(e) if attempt < TRIES && e.to_string().contains("overlaps") => {
                trace(&format!("bundle subnet {} taken meanwhile ({e}); choosing again", net.cidr()));
            }
            Err(e) => return Err(docker_err(format!("cannot create network {net_name} ({})", net.cidr()))(e)),
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), BackendError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("cannot write {}", path.display())))?;
    f.write_all(data).map_err(io_err(format!("cannot write {}", path.display())))
}

/// Until `exec true` answers, with backoff; bounded.
async fn wait_ready(smolvm: &Smolvm, machine: &str) -> Result<(), BackendError> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pause = Duration::from_millis(50);
    loop {
        match smolvm.run_async(&argv::exec(machine, &argv::Exec::default(), &["true".into()])).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(BackendError::Smolvm(format!("the machine {machine} never answered an exec: {e}")));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The machine `export` boots a bottle's commit in to read its files
/// (`_` never occurs in an identity, so it is no bottle's machine).
pub fn export_machine_name(identity: &str) -> String {
    format!("bot-bottle-export_{identity}")
}

/// `export` of a bottle whose workspace is only in its commit (it could
/// not be copied out at its last session end): the commit's `/workspace`
/// into the state dir as the kept copy, read from a machine booted from
/// the pack with no network at all, in which nothing else runs; the
/// machine is removed after. `Ok(false)` when the bottle has no commit.
pub async fn workspace_from_commit(smolvm: &Smolvm, home: &state::Home, identity: &str) -> Result<bool, BackendError> {
    let dir = home.state_dir(identity);
    let Some(pack) = committed_pack(&dir) else { return Ok(false) };
    let machine = export_machine_name(identity);
    let remove = || async {
        let _ = smolvm.run_async(&argv::stop(&machine)).await;
        let _ = smolvm.run_async(&argv::delete(&machine)).await;
    };
    // One left by an export that was killed.
    remove().await;
    let labels = [
        (LABEL_HOME.to_string(), home.root().display().to_string()),
        (LABEL_IDENTITY.to_string(), identity.to_string()),
        (LABEL_ROLE.to_string(), ROLE_EXPORT.to_string()),
    ];
    let copied = async {
        smolvm.run_async(&argv::create_offline(&machine, &pack.display().to_string(), &labels)).await?;
        smolvm.run_async(&argv::start(&machine)).await?;
        wait_ready(smolvm, &machine).await?;
        snapshot_workspace(smolvm, &machine, &dir).map_err(|why| {
            BackendError::Smolvm(format!("the workspace could not be copied out of {} either ({why})", pack.display()))
        })
    }
    .await;
    remove().await;
    copied.map(|()| true)
}

/// The role label of the machine [`workspace_from_commit`] boots: not a
/// bottle for `list active`; removed by `cleanup` when left behind.
pub const ROLE_EXPORT: &str = "export";

/// The committed pack `resume` boots from, while it exists.
pub fn committed_pack(state_dir: &Path) -> Option<PathBuf> {
    Some(state_dir.join(COMMIT_PACK)).filter(|p| p.is_file())
}

/// The agent image packed as a `.smolmachine`, cached by image id in
/// `~/.cache/bot-bottle/smolmachines/`: `docker save` to a scratch archive,
/// then `smolvm pack create --image`.
async fn ensure_pack(
    docker: &Docker,
    smolvm: &Smolvm,
    image: &str,
    progress: Progress<'_>,
) -> Result<PathBuf, BackendError> {
    let id = docker.inspect_image(image).await.map_err(docker_err(format!("cannot inspect {image}")))?.id;
    let id = id.unwrap_or_default().trim_start_matches("sha256:").chars().take(16).collect::<String>();
    let pack = images::cache_path(&format!("smolmachines/{id}.smolmachine"))
        .ok_or_else(|| BackendError::Invalid { message: "HOME is not set: nowhere to keep the machine pack".into() })?;
    if pack.is_file() {
        return Ok(pack);
    }
    progress(&format!("packing {image} for smolvm (once per image)"));
    if let Some(parent) = pack.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("cannot create the pack cache"))?;
    }
    let scratch = tempfile::Builder::new()
        .prefix("bot-bottle-pack-")
        .tempdir()
        .map_err(io_err("cannot create a scratch directory"))?;
    let archive = scratch.path().join("image.tar");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&archive).map_err(io_err("cannot write the image archive"))?;
        let mut stream = docker.export_image(image);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(docker_err(format!("cannot save {image}")))?;
            file.write_all(&chunk).map_err(io_err("cannot write the image archive"))?;
        }
    }
    // `pack create -o OUT` writes the executable OUT and its sidecar
    // OUT.smolmachine, which machines are created from.
    let out = scratch.path().join("agent");
    smolvm.run_async(&argv::pack_image(&archive.display().to_string(), &out.display().to_string())).await?;
    keep_pack(&out, &pack)?;
    Ok(pack)
}

/// Move the `.smolmachine` that `pack create -o OUT` wrote beside OUT to
/// `dest` (copied first if it lives on another filesystem).
pub fn keep_pack(out: &Path, dest: &Path) -> Result<(), BackendError> {
    let written = out.with_extension("smolmachine");
    if !written.is_file() {
        return Err(BackendError::Smolvm(format!("smolvm pack create wrote no {}", written.display())));
    }
    let partial = dest.with_extension("partial");
    if std::fs::rename(&written, &partial).is_err() {
        std::fs::copy(&written, &partial).map_err(io_err(format!("cannot keep {}", dest.display())))?;
    }
    std::fs::rename(&partial, dest).map_err(io_err(format!("cannot keep {}", dest.display())))
}

/// Stop: keep the logs, the transcript and the state (preserved); remove
/// the machine and the bundle.
pub async fn stop(docker: &Docker, smolvm: &Smolvm, home: &state::Home, identity: &str) -> Result<(), BackendError> {
    let dir = home.state_dir(identity);
    let machine = machine_name(identity);
    let objects = find(docker, home, identity).await?;
    snapshot_transcript(smolvm, &machine, &dir);
    keep_work(smolvm, &machine, &dir, identity);
    let _ = smolvm.run(&argv::stop(&machine));
    let _ = smolvm.run(&argv::delete(&machine));
    save_sidecar_logs(docker, &objects, &dir).await;
    remove(docker, &objects).await?;
    if dir.is_dir() {
        std::fs::write(dir.join(state::StateDir::PRESERVE), b"").map_err(io_err("cannot mark the state preserved"))?;
    }
    revoke_deploy_keys(&dir).await;
    forget_secrets(&dir);
    Ok(())
}
