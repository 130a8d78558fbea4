//! A bottle on the Docker Engine (DESIGN.md, Docker topology): the sidecar
//! on its own bridge (the only egress), the agent with `network_mode: none`,
//! and the shim in the agent's network namespace relaying loopback ports to
//! the sidecar's unix sockets. Every object is labelled with the identity
//! and its role. [`launch`] tears down whatever it created when any step
//! fails; a launched [`DockerBottle`] tears down on drop if nobody did.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;

use crate::engine::agent::{
    Bundle, COMMIT_FILE, WorkspaceIn, agent_files, agent_image, committed_image, forwarded_login,
    replaces_commit_workspace, workspace_files,
};
use crate::engine::cancel::Cancel;
use crate::engine::objects::{
    LABEL_AGENT, LABEL_HOME, LABEL_IDENTITY, LABEL_LABEL, LABEL_ROLE, LABEL_STARTED, Objects, Progress, create,
    docker_err, find, host_ids, io_err, is_not_found, join_extra_network, labels, limit, locked, net_name_for, remove,
    trace,
};
use crate::engine::provision::{self, AGENT_HOME, AGENT_UID, WORKSPACE};
use crate::engine::sidecar::{
    SHIM_MEMORY, forget_secrets, revoke_deploy_keys, save_sidecar_logs, sidecar_body, wait_for_sockets,
    write_sidecar_files,
};
use crate::engine::{self, exec, images};
use crate::error::BackendError;
use crate::plan::Plan;
use sidecar::config::{EGRESS_PORT, EGRESS_SOCKET, GATE_PORT, GATE_SOCKET, RUN_DIR, SUPERVISE_PORT, SUPERVISE_SOCKET};

/// A launched bottle.
pub struct DockerBottle {
    /// The runtime its async work runs on.
    pub runtime: tokio::runtime::Runtime,
    /// The Docker Engine.
    pub docker: Docker,
    /// Its containers and network.
    pub objects: Objects,
    /// Its state dir.
    pub state_dir: PathBuf,
    /// The session's command, exec'd during the launch (plain stdio only).
    armed: std::sync::Mutex<Option<exec::Armed>>,
    torn_down: bool,
}

impl DockerBottle {
    /// Run `argv` in the agent (through the env wrapper), as its user in the
    /// workspace; returns the exit code. Without a TTY the first command
    /// uses the exec the launch armed.
    pub fn exec(&self, argv: &[String], tty: bool) -> Result<i32, BackendError> {
        let agent = self.objects.agent.clone().unwrap_or_default();
        let watched: Vec<(&'static str, String)> = [("sidecar", &self.objects.sidecar), ("shim", &self.objects.shim)]
            .into_iter()
            .filter_map(|(role, id)| Some((role, id.clone()?)))
            .collect();
        let argv = provision::expand_home(argv);
        let armed = self.take_armed();
        match armed {
            Some(armed) if !tty => self.runtime.block_on(exec::run_armed(&self.docker, &agent, armed, &argv, &watched)),
            _ => self.runtime.block_on(exec::run(&self.docker, &agent, &provision::wrap(&argv), tty, &watched)),
        }
    }

    /// The armed command, once.
    fn take_armed(&self) -> Option<exec::Armed> {
        self.armed.lock().ok().and_then(|mut a| a.take())
    }

    /// Save the sidecar's logs and remove every object. Idempotent.
    pub fn teardown(&mut self) -> Result<(), BackendError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        // An unused armed command ends with its stdin.
        drop(self.take_armed());
        let (docker, objects, dir) = (&self.docker, &self.objects, &self.state_dir);
        // After a `bot-bottle stop` that ends it, not beside it.
        let _end = state::EndLock::wait(dir, state::EndLock::PATIENCE, || {});
        self.runtime.block_on(async {
            save_sidecar_logs(docker, objects, dir).await;
            snapshot_transcript(docker, objects, dir).await;
            keep_work(docker, objects, dir).await;
            let removed = remove(docker, objects).await;
            revoke_deploy_keys(dir).await;
            forget_secrets(dir);
            let _ = std::fs::remove_file(dir.join(LAUNCHER_FILE));
            removed
        })
    }
}

impl Drop for DockerBottle {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Session end: the agent's own session files into the state dir's
/// transcript (see [`super::transcript`]). Best effort: a session with none
/// has none, and a failure leaves the bottle's teardown to go on.
async fn snapshot_transcript(docker: &Docker, objects: &Objects, state_dir: &Path) {
    let Some(agent) = &objects.agent else { return };
    if !state_dir.is_dir() {
        return;
    }
    for dir in crate::engine::transcript::session_dirs(state_dir) {
        if let Some(tar) = download(docker, agent, &format!("{AGENT_HOME}/{dir}")).await {
            crate::engine::transcript::keep(state_dir, &dir, &tar);
        }
    }
}

/// Session end (and `export` of a running bottle): the agent's
/// `/workspace` into the state dir (see [`crate::workspace`]), streamed
/// through a scratch file. Best effort: a failure is the error (the copy
/// before it stays); `Ok` also when there is no agent or state to copy.
pub(crate) async fn snapshot_workspace(docker: &Docker, objects: &Objects, state_dir: &Path) -> Result<(), String> {
    let Some(agent) = &objects.agent else { return Ok(()) };
    if !state_dir.is_dir() {
        return Ok(());
    }
    copy_workspace_out(docker, agent, state_dir).await
}

/// `export` of a bottle whose workspace is only in its commit (it could
/// not be copied out at its last session end): the commit's `/workspace`
/// into the state dir as the kept copy, read from a container created
/// from the commit and never started (no network, nothing runs).
/// `Ok(false)` when the bottle has no commit.
pub(crate) async fn workspace_from_commit(
    docker: &Docker,
    home: &state::Home,
    identity: &str,
) -> Result<bool, BackendError> {
    let state_dir = home.state_dir(identity);
    let Some(image) = committed_image(&state_dir) else { return Ok(false) };
    let name = format!("bot-bottle-{identity}-export");
    let force = || RemoveContainerOptions { force: true, v: true, ..Default::default() };
    // One left by an export that was killed.
    let _ = docker.remove_container(&name, Some(force())).await;
    let container = create(
        docker,
        &name,
        ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["true".to_string()]),
            labels: Some(labels(home, identity, "export")),
            network_disabled: Some(true),
            host_config: Some(HostConfig { network_mode: Some("none".to_string()), ..Default::default() }),
            ..Default::default()
        },
    )
    .await?;
    let copied = copy_workspace_out(docker, &container, &state_dir).await;
    let _ = docker.remove_container(&container, Some(force())).await;
    copied.map(|()| true).map_err(|why| BackendError::Invalid {
        message: format!("the workspace could not be copied out of {image} either ({why})"),
    })
}

/// `container`'s `/workspace` into the state dir (see
/// [`crate::workspace`]), streamed through a scratch file and bounded.
async fn copy_workspace_out(docker: &Docker, agent: &str, state_dir: &Path) -> Result<(), String> {
    let scratch = state_dir.join("workspace.tar.partial");
    let max = crate::workspace::max_bytes();
    let copied = async {
        use std::io::Write;
        let mut file = std::fs::File::create(&scratch).map_err(|e| e.to_string())?;
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: WORKSPACE.to_string() };
        let mut stream = docker.download_from_container(agent, Some(options));
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            total += chunk.len() as u64;
            if total > crate::workspace::stream_bound(max) {
                return Err(crate::workspace::over(max));
            }
            file.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        file.sync_all().map_err(|e| e.to_string())?;
        let tar = std::fs::File::open(&scratch).map_err(|e| e.to_string())?;
        crate::workspace::keep(state_dir, std::io::BufReader::new(tar)).map(|_| ()).map_err(|e| e.to_string())
    }
    .await;
    let _ = std::fs::remove_file(&scratch);
    copied
}

/// Session end: the workspace copied out, or, when it cannot be (over the
/// bound, a full disk), the agent committed instead, so that `resume`
/// boots with the workspace as the agent left it. Said either way.
async fn keep_work(docker: &Docker, objects: &Objects, state_dir: &Path) {
    let Err(why) = snapshot_workspace(docker, objects, state_dir).await else { return };
    let (Some(agent), Some(root)) = (&objects.agent, state_dir.parent().and_then(Path::parent)) else { return };
    // Gone already: `bot-bottle stop` from another terminal copied its
    // workspace out and removed it; there is nothing left here to keep.
    if docker.inspect_container(agent, None).await.is_err_and(|e| is_not_found(&e)) {
        return;
    }
    let home = state::Home::new(root);
    eprintln!("bot-bottle: the agent's workspace was not copied out ({why}); committing the bottle instead");
    match commit_agent(docker, &home, &objects.identity, agent).await {
        Ok(image) => {
            crate::workspace::record_uncopied(state_dir, &why);
            eprintln!(
                "bot-bottle: the bottle was committed instead ({image}), and `bot-bottle resume {}` boots with its workspace as the agent left it",
                objects.identity
            );
        }
        Err(e) => eprintln!(
            "bot-bottle: the bottle could not be committed either ({e}): the agent's work since the last copy to {} is lost",
            state_dir.display()
        ),
    }
}

/// Launch `plan`: images, sidecar, agent, shim, provisioning, self-test.
/// Anything created is removed again if a step fails.
pub async fn launch(
    docker: &Docker,
    plan: &Plan,
    progress: Progress<'_>,
    cancel: &Cancel,
) -> Result<(Objects, Option<exec::Armed>), BackendError> {
    let mut objects = Objects { identity: plan.identity.clone(), ..Default::default() };
    match launch_steps(docker, plan, progress, cancel, &mut objects).await {
        Ok(armed) => Ok((objects, armed)),
        Err(e) => {
            let dir = plan.state_dir();
            save_sidecar_logs(docker, &objects, &dir).await;
            let _ = remove(docker, &objects).await;
            revoke_deploy_keys(&dir).await;
            let _ = std::fs::remove_file(dir.join(LAUNCHER_FILE));
            Err(e)
        }
    }
}

async fn launch_steps(
    docker: &Docker,
    plan: &Plan,
    progress: Progress<'_>,
    cancel: &Cancel,
    objects: &mut Objects,
) -> Result<Option<exec::Armed>, BackendError> {
    let dir = plan.state_dir();
    let identity = &plan.identity;
    std::fs::write(dir.join(LAUNCHER_FILE), crate::registry::launcher_record())
        .map_err(io_err("cannot write the launcher pid"))?;
    // Leftovers of an earlier run of this identity (a killed launcher).
    // The agent's runtime (one `info`, and a probe when runsc is there),
    // asked while the rest is prepared: only the agent waits for it.
    let runtime = {
        let docker = docker.clone();
        tokio::spawn(async move { super::runtime::choose(&docker).await })
    };
    let stale = find(docker, &plan.home, identity).await?;
    if stale.agent.is_some() {
        // Its agent's work since the last copy is only in its container.
        progress("keeping the work of this bottle's earlier session (its bot-bottle was killed)");
        snapshot_transcript(docker, &stale, &dir).await;
        keep_work(docker, &stale, &dir).await;
    }
    remove(docker, &stale).await?;
    trace("leftovers checked");
    // Images.
    let base = cancel.wait(images::ensure_base(docker, progress)).await?;
    let sidecar_image = cancel.wait(images::ensure_sidecar(docker, &base, progress)).await?;
    let agent_image = cancel.wait(agent_image(docker, plan, &base, progress)).await?;
    crate::engine::prune::record_use(&plan.state_dir(), &[&base, &sidecar_image, &agent_image])?;
    // When the agent boots from this bottle's commit: when it was made.
    let committed_at = (committed_image(&plan.state_dir()).as_deref() == Some(agent_image.as_str()))
        .then(|| std::fs::metadata(plan.state_dir().join(COMMIT_FILE)).and_then(|m| m.modified()).ok())
        .flatten();
    trace("images ready");
    // What the sidecar reads.
    let login = forwarded_login(plan)?;
    let (config, canary) =
        write_sidecar_files(plan, login.as_ref(), &provision::Endpoints::loopback(), progress, cancel).await?;
    trace("sidecar files written");
    let (sidecar_body, run_dir) = sidecar_body(plan, &config, &sidecar_image, &net_name_for(identity))?;
    let (uid, gid) = host_ids(&dir)?;
    let user = format!("{uid}:{gid}");

    // The sidecar's own network: its only way out.
    progress("starting the sidecar and the agent");
    let net_name = net_name_for(identity);
    let mut sockets = vec![EGRESS_SOCKET, SUPERVISE_SOCKET];
    if !plan.manifest.bottle.repos.is_empty() {
        sockets.push(GATE_SOCKET);
    }
    let mut env_extra: Vec<(String, String)> = Vec::new();
    let p = plan.resolved_provider.provider();
    env_extra.extend(p.extra_env.iter().cloned());
    env_extra.extend(p.placeholder_env.iter().cloned());
    let env_extra_ref: Vec<(&str, &str)> = env_extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // The sidecar, and (at the same time: they do not wait on each other)
    // the agent with no network at all, the shim in its namespace, and the
    // agent's provisioning. The shim connects to the sidecar's sockets only
    // when the agent does, so it need not wait for them.
    let (network_slot, sidecar_slot, agent_slot, shim_slot) =
        (&mut objects.network, &mut objects.sidecar, &mut objects.agent, &mut objects.shim);
    let sidecar_side = async {
        // The sidecar is created while its network is: Docker resolves
        // the network at start. An engine that wants it at create gets a
        // second create once the network exists.
        let sidecar_name = format!("bot-bottle-{identity}-sidecar");
        cancel.check()?;
        let (net, sidecar) = tokio::join!(
            docker.create_network(NetworkCreateRequest {
                name: net_name.clone(),
                driver: Some("bridge".to_string()),
                labels: Some(labels(&plan.home, identity, "network")),
                ..Default::default()
            }),
            create(docker, &sidecar_name, sidecar_body.clone())
        );
        if let Ok(id) = &sidecar {
            *sidecar_slot = Some(id.clone());
        }
        let net = net.map_err(docker_err(format!("cannot create network {net_name}")))?;
        *network_slot = Some(net.id);
        trace("network created");
        let sidecar = match sidecar {
            Ok(id) => id,
            Err(_) => {
                cancel.check()?;
                let id = create(docker, &sidecar_name, sidecar_body).await?;
                *sidecar_slot = Some(id.clone());
                id
            }
        };
        cancel.check()?;
        docker.start_container(&sidecar, None).await.map_err(docker_err("cannot start the sidecar"))?;
        trace("sidecar started");
        join_extra_network(docker, &sidecar).await?;
        cancel.wait(wait_for_sockets(docker, &sidecar, &run_dir, &sockets)).await?;
        trace("sidecar sockets ready");
        Ok::<_, BackendError>(())
    };
    let limits = plan.manifest.bottle.limits;
    let agent_side = async {
        let runtime = runtime.await.map_err(|e| BackendError::Launch(format!("the runtime's probe failed: {e}")))?;
        cancel.check()?;
        let agent = create(
            docker,
            &format!("bot-bottle-{identity}-agent"),
            ContainerCreateBody {
                image: Some(agent_image),
                // It runs the isolation self-test, then waits: the test
                // starts with the agent and overlaps the shim's start.
                cmd: Some(provision::agent_main()),
                // A bare uid: Docker resolves it (and its group) in the image's
                // passwd when copying files in owned by the agent.
                user: Some(AGENT_UID.to_string()),
                env: Some(provision::agent_env(&provision::Endpoints::loopback(), &env_extra_ref)),
                working_dir: Some(WORKSPACE.to_string()),
                hostname: Some(identity.chars().take(63).collect()),
                labels: Some({
                    let mut l = labels(&plan.home, identity, "agent");
                    l.insert(LABEL_AGENT.to_string(), plan.metadata.agent_name.clone());
                    l.insert(LABEL_LABEL.to_string(), plan.metadata.label.clone());
                    l.insert(LABEL_STARTED.to_string(), plan.metadata.started_at.clone());
                    l
                }),
                host_config: Some(locked(HostConfig {
                    network_mode: Some("none".to_string()),
                    // The bottle's `limits` (defaults in manifest::Limits),
                    // no swap beyond the memory.
                    pids_limit: Some(limit(limits.agent_pids())),
                    memory: Some(limit(limits.agent_memory())),
                    memory_swap: Some(limit(limits.agent_memory())),
                    init: Some(true),
                    runtime,
                    ..Default::default()
                })),
                ..Default::default()
            },
        )
        .await?;
        *agent_slot = Some(agent.clone());
        trace("agent created");
        // Files go in before the agent starts (copying into a running
        // container is slower), while the shim is created.
        let map = |port: u16, socket: &str| format!("{port}={RUN_DIR}/{socket}");
        let mut shim_cmd = vec![
            "shim".to_string(),
            "--map".into(),
            map(EGRESS_PORT, EGRESS_SOCKET),
            "--map".into(),
            map(SUPERVISE_PORT, SUPERVISE_SOCKET),
        ];
        if sockets.contains(&GATE_SOCKET) {
            shim_cmd.extend(["--map".to_string(), map(GATE_PORT, GATE_SOCKET)]);
        }
        let shim_name = format!("bot-bottle-{identity}-shim");
        cancel.check()?;
        let shim = create(
            docker,
            &shim_name,
            ContainerCreateBody {
                image: Some(sidecar_image.clone()),
                cmd: Some(shim_cmd),
                user: Some(user.clone()),
                labels: Some(labels(&plan.home, identity, "shim")),
                host_config: Some(locked(HostConfig {
                    binds: Some(vec![format!("{}:{RUN_DIR}", run_dir.display())]),
                    network_mode: Some(format!("container:{agent}")),
                    pids_limit: Some(64),
                    memory: Some(SHIM_MEMORY),
                    memory_swap: Some(SHIM_MEMORY),
                    // The shim starts no processes: no init to reap them.
                    ..Default::default()
                })),
                ..Default::default()
            },
        );
        let (shim, provisioned) = tokio::join!(
            shim,
            provision_agent(docker, &agent, plan, &canary, login.as_ref().map(|l| l.stand_in.as_str()), committed_at)
        );
        let shim = shim?;
        *shim_slot = Some(shim.clone());
        provisioned?;
        trace("agent provisioned, shim created");
        cancel.check()?;
        docker.start_container(&agent, None).await.map_err(docker_err("cannot start the agent"))?;
        trace("agent started");
        if replaces_commit_workspace(plan, committed_at) {
            replace_commit_workspace(docker, &agent, plan, committed_at).await?;
            trace("committed workspace replaced by the kept one");
        }
        let self_test = tokio::spawn(self_test_output(docker.clone(), agent.clone()));
        // A session on plain stdio: its command's exec starts now, with
        // the shim's, and waits for its argv (sent only once the self-test
        // passed).
        let armed = async {
            if plan.tty {
                return Ok(None);
            }
            let armed = exec::arm(docker, &agent).await.map(Some);
            trace("session's exec armed");
            armed
        };
        let shim_started = async {
            docker.start_container(&shim, None).await.map_err(docker_err("cannot start the shim"))?;
            trace("shim started");
            Ok::<_, BackendError>(())
        };
        cancel.check()?;
        let (armed, shim_started) = tokio::join!(armed, shim_started);
        shim_started?;
        Ok::<_, BackendError>((self_test, armed?))
    };
    // Both sides run to their end even when one fails: dropping the other
    // mid-request could lose what the engine was creating for it.
    let (sidecar_side, agent_side) = tokio::join!(sidecar_side, agent_side);
    sidecar_side?;
    let (self_test, armed) = agent_side?;

    progress("isolation self-test");
    let output = cancel
        .wait(async {
            self_test.await.map_err(|e| BackendError::Launch(format!("the self-test's reader failed: {e}")))
        })
        .await?;
    trace("self-test done");
    provision::self_test_verdict(&output, &dir.join("selftest.json"))?;
    Ok(armed)
}

/// What the agent's main process printed of the self-test: its log, up
/// to the end marker (or the process's end; bounded in time, and the
/// missing checks then count as failed).
async fn self_test_output(docker: Docker, agent: String) -> String {
    let options = LogsOptions { stdout: true, stderr: true, follow: true, ..Default::default() };
    let mut stream = docker.logs(&agent, Some(options));
    let mut out = String::new();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if out.lines().any(|l| l == provision::SELF_TEST_END) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
    out
}

/// The CA bundle `path` of the agent's image: read from the container once
/// per image and kept in `~/.cache/bot-bottle/` (an image never changes).
async fn image_bundle(docker: &Docker, container: &str, path: &str) -> Vec<u8> {
    let image = docker.inspect_container(container, None).await.ok().and_then(|c| c.image).unwrap_or_default();
    let cache =
        (!image.is_empty()).then(|| images::cache_path(&format!("ca-bundles/{}", image.replace(':', "-")))).flatten();
    if let Some(c) = &cache
        && let Ok(data) = std::fs::read(c)
    {
        return data;
    }
    let data = download_file(docker, container, path).await.unwrap_or_default();
    if let Some(c) = &cache
        && !data.is_empty()
    {
        images::write_cache(c, &data);
    }
    data
}

/// A path in a container as Docker's tar (none when it is missing),
/// bounded a little above what a transcript may hold.
async fn download(docker: &Docker, container: &str, path: &str) -> Option<Vec<u8>> {
    let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
    let mut stream = docker.download_from_container(container, Some(options));
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.ok()?);
        if data.len() as u64 > crate::engine::transcript::MAX_TAR {
            return None;
        }
    }
    Some(data)
}

/// One file's bytes from a container.
async fn download_file(docker: &Docker, container: &str, path: &str) -> Option<Vec<u8>> {
    let data = download(docker, container, path).await?;
    let mut archive = tar::Archive::new(&data[..]);
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut out).ok()?;
    Some(out)
}

/// Copy a tar into a container at `path`, owners as its headers say.
async fn upload(docker: &Docker, container: &str, path: &str, tar: Vec<u8>) -> Result<(), BackendError> {
    let options = UploadToContainerOptions { path: path.to_string(), ..Default::default() };
    docker
        .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
        .await
        .map_err(docker_err(format!("cannot copy files into the agent at {path}")))
}

/// Files, CA and environment into the agent. `login_stand_in`: a forwarded
/// host login's `auth.json` with placeholder tokens.
async fn provision_agent(
    docker: &Docker,
    agent: &str,
    plan: &Plan,
    canary: &sidecar::agent::Canary,
    login_stand_in: Option<&str>,
    committed_at: Option<std::time::SystemTime>,
) -> Result<(), BackendError> {
    // The image's own CA bundle, read once per image, extended with the
    // bottle CA (what `update-ca-certificates` would do, without its second
    // of rehashing).
    let bundle = image_bundle(docker, agent, provision::CA_BUNDLE).await;
    // A commit holds the CA of the launch it was made in: replaced.
    let previous_ca = match committed_at {
        Some(_) => download_file(docker, agent, provision::AGENT_CA).await,
        None => None,
    };
    let files = agent_files(
        plan,
        canary,
        login_stand_in,
        Some((bundle, previous_ca)),
        &provision::Endpoints::loopback(),
        committed_at,
        if replaces_commit_workspace(plan, committed_at) { WorkspaceIn::OnItsOwn } else { WorkspaceIn::WithTheRest },
    )?;
    // One copy: each costs Docker a mount of the container's filesystem.
    upload(docker, agent, "/", files).await
}

/// A kept workspace newer than the commit the agent booted from, into the
/// started agent once the commit's own `/workspace` is emptied (files
/// cannot be removed from a container before it starts). Emptied as the
/// agent's user, whose files they are (root here holds no capability to
/// override their modes); what cannot be removed is said, and the kept
/// copy still goes in over it.
async fn replace_commit_workspace(
    docker: &Docker,
    agent: &str,
    plan: &Plan,
    committed_at: Option<std::time::SystemTime>,
) -> Result<(), BackendError> {
    let script = format!("chmod -R u+w {WORKSPACE} 2>/dev/null; find {WORKSPACE} -mindepth 1 -delete && echo emptied");
    let emptied = exec::capture(docker, agent, &["sh".into(), "-c".into(), script], None).await?;
    if !emptied.trim_end().ends_with("emptied") {
        eprintln!(
            "bot-bottle: the committed {WORKSPACE} was not emptied before the kept workspace went in ({}): files removed since the commit may be back",
            emptied.trim()
        );
    }
    upload(docker, agent, "/", workspace_files(plan, committed_at)?).await
}

/// Connect, then launch, with Ctrl-C during the launch tearing down what
/// was created.
pub fn launch_blocking(plan: &Plan, progress: Progress<'_>) -> Result<DockerBottle, BackendError> {
    // A stop meanwhile waits for the launch, so it never copies out the
    // empty `/workspace` of an agent whose files are not in yet.
    let _launching = crate::registry::launch_turn(plan, progress);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("cannot start the async runtime"))?;
    let (docker, (objects, armed)) = runtime.block_on(async {
        trace("launch");
        let docker = engine::connect().await?;
        trace("engine connected");
        // A panic mid-launch is caught so what was created can be removed.
        let launched = {
            let cancel = Cancel::default();
            let guarded = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(launch(
                &docker, plan, progress, &cancel,
            )));
            tokio::pin!(guarded);
            tokio::select! {
                r = &mut guarded => match r {
                    Ok(r) => r,
                    Err(panic) => {
                        let found = find(&docker, &plan.home, &plan.identity).await?;
                        let _ = remove(&docker, &found).await;
                        std::panic::resume_unwind(panic);
                    }
                },
                _ = tokio::signal::ctrl_c() => {
                    // The launch stops at its next step (the requests the
                    // engine is serving finish first), then what it created is
                    // found by label and removed.
                    cancel.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(60), &mut guarded).await;
                    let found = find(&docker, &plan.home, &plan.identity).await?;
                    let _ = remove(&docker, &found).await;
                    Err(crate::engine::cancel::interrupted())
                }
            }
        }?;
        Ok::<_, BackendError>((docker, launched))
    })?;
    Ok(DockerBottle {
        runtime,
        docker,
        objects,
        state_dir: plan.state_dir(),
        armed: std::sync::Mutex::new(armed),
        torn_down: false,
    })
}

pub use crate::registry::{LAUNCHER_FILE, launcher_alive};

/// Live bottles: running agent containers, by their labels.
pub async fn active(docker: &Docker, home: &state::Home) -> Result<Vec<crate::registry::ActiveBottle>, BackendError> {
    let filter = HashMap::from([(
        "label".to_string(),
        vec![LABEL_IDENTITY.to_string(), format!("{LABEL_HOME}={}", home.root().display())],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions { all: false, filters: Some(filter), ..Default::default() }))
        .await
        .map_err(docker_err("cannot list containers"))?;
    let mut by_identity: BTreeMap<String, crate::registry::ActiveBottle> = BTreeMap::new();
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        let Some(identity) = labels.get(LABEL_IDENTITY).cloned() else { continue };
        let role = labels.get(LABEL_ROLE).cloned().unwrap_or_default();
        let entry = by_identity.entry(identity.clone()).or_insert_with(|| crate::registry::ActiveBottle {
            identity: identity.clone(),
            backend: "docker".to_string(),
            agent: String::new(),
            label: String::new(),
            started: String::new(),
            services: Vec::new(),
        });
        if role == "agent" {
            entry.agent = labels.get(LABEL_AGENT).cloned().unwrap_or_default();
            entry.label = labels.get(LABEL_LABEL).cloned().unwrap_or_default();
            entry.started = labels.get(LABEL_STARTED).cloned().unwrap_or_default();
        }
        entry.services.push(role);
    }
    Ok(by_identity.into_values().filter(|b| b.services.iter().any(|s| s == "agent")).collect())
}

/// Stop: keep the logs and the state (preserved), remove the objects.
pub async fn stop(docker: &Docker, objects: &Objects, state_dir: &Path) -> Result<(), BackendError> {
    save_sidecar_logs(docker, objects, state_dir).await;
    snapshot_transcript(docker, objects, state_dir).await;
    keep_work(docker, objects, state_dir).await;
    remove(docker, objects).await?;
    if state_dir.is_dir() {
        std::fs::write(state_dir.join(state::StateDir::PRESERVE), b"")
            .map_err(io_err("cannot mark the state preserved"))?;
    }
    revoke_deploy_keys(state_dir).await;
    forget_secrets(state_dir);
    Ok(())
}

/// Snapshot the running agent as an image `resume` boots from.
pub async fn commit(docker: &Docker, home: &state::Home, identity: &str) -> Result<String, BackendError> {
    let objects = find(docker, home, identity).await?;
    let Some(agent) = objects.agent else {
        return Err(BackendError::Invalid { message: format!("bottle {identity} has no running agent to commit") });
    };
    commit_agent(docker, home, identity, &agent).await
}

/// Commit the container `agent` as `bot-bottle-commit:IDENTITY` and record
/// it in the state dir, so `resume` boots from it.
async fn commit_agent(
    docker: &Docker,
    home: &state::Home,
    identity: &str,
    agent: &str,
) -> Result<String, BackendError> {
    let state_dir = home.state_dir(identity);
    let state_dir = state_dir.as_path();
    let options = bollard::query_parameters::CommitContainerOptions {
        container: Some(agent.to_string()),
        repo: Some("bot-bottle-commit".to_string()),
        tag: Some(identity.to_string()),
        comment: Some(format!("bot-bottle commit of {identity}")),
        pause: true,
        // Whose it is: `images prune` removes only its own home's commits.
        changes: Some(format!("LABEL {LABEL_HOME}=\"{}\"", home.root().display())),
        ..Default::default()
    };
    docker
        .commit_container(options, bollard::models::ContainerConfig::default())
        .await
        .map_err(docker_err(format!("cannot commit {identity}")))?;
    let image = format!("bot-bottle-commit:{identity}");
    let record = serde_json::json!({"image": image, "at": state::BottleMetadata::now()});
    let record = serde_json::to_vec_pretty(&record)
        .map_err(|e| BackendError::Invalid { message: format!("cannot record the commit: {e}") })?;
    std::fs::write(state_dir.join(COMMIT_FILE), record).map_err(io_err("cannot record the commit"))?;
    Ok(image)
}

/// Containers and networks whose launcher is gone (a killed CLI, a crash).
pub async fn orphans(docker: &Docker, home: &state::Home) -> Result<crate::registry::CleanupPlan, BackendError> {
    let filter = HashMap::from([(
        "label".to_string(),
        vec![LABEL_IDENTITY.to_string(), format!("{LABEL_HOME}={}", home.root().display())],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filter.clone()), ..Default::default() }))
        .await
        .map_err(docker_err("cannot list containers"))?;
    let mut items = Vec::new();
    for c in containers {
        let identity = c.labels.as_ref().and_then(|l| l.get(LABEL_IDENTITY)).cloned().unwrap_or_default();
        if !launcher_alive(&home.state_dir(&identity)) {
            let name = c.names.unwrap_or_default().first().cloned().unwrap_or_default();
            items.push(format!("container {} {}", c.id.unwrap_or_default(), name.trim_start_matches('/')));
        }
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: Some(filter) }))
        .await
        .map_err(docker_err("cannot list networks"))?;
    for n in networks {
        let identity = n.labels.as_ref().and_then(|l| l.get(LABEL_IDENTITY)).cloned().unwrap_or_default();
        if !launcher_alive(&home.state_dir(&identity)) {
            items.push(format!("network {} {}", n.id.unwrap_or_default(), n.name.unwrap_or_default()));
        }
    }
    Ok(crate::registry::CleanupPlan { backend: "docker".to_string(), items })
}

/// Remove what [`orphans`] found.
pub async fn remove_orphans(docker: &Docker, plan: &crate::registry::CleanupPlan) -> Result<(), BackendError> {
    let mut failed = Vec::new();
    // Containers before the networks they sit on.
    for kind in ["container", "network"] {
        for item in plan.items.iter().filter(|i| i.starts_with(kind)) {
            let id = item.split_whitespace().nth(1).unwrap_or("");
            let result = if kind == "container" {
                docker
                    .remove_container(id, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }))
                    .await
            } else {
                docker.remove_network(id).await
            };
            if let Err(e) = result
                && !is_not_found(&e)
            {
                failed.push(format!("{item}: {e}"));
            }
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(BackendError::Leftovers { what: "cleanup".to_string(), left: failed }) }
}

impl DockerBottle {
    /// Copy a host file or directory into the agent at `guest` (a directory).
    pub fn copy_in(&self, host: &Path, guest: &str) -> Result<(), BackendError> {
        let agent = self.objects.agent.clone().unwrap_or_default();
        let name = host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let mut b = Bundle::new();
        b.tree(host, &name, AGENT_UID)?;
        let tar = b.finish()?;
        self.runtime.block_on(upload(&self.docker, &agent, guest, tar))
    }

    /// Copy `guest` (a file or directory in the agent) into the host directory `host`.
    pub fn copy_out(&self, guest: &str, host: &Path) -> Result<(), BackendError> {
        let agent = self.objects.agent.clone().unwrap_or_default();
        let data = self.runtime.block_on(async {
            let options = bollard::query_parameters::DownloadFromContainerOptions { path: guest.to_string() };
            let mut stream = self.docker.download_from_container(&agent, Some(options));
            let mut data = Vec::new();
            while let Some(chunk) = stream.next().await {
                data.extend_from_slice(&chunk.map_err(docker_err(format!("cannot copy {guest} out of the agent")))?);
            }
            Ok::<_, BackendError>(data)
        })?;
        std::fs::create_dir_all(host).map_err(io_err(format!("cannot create {}", host.display())))?;
        let mut archive = tar::Archive::new(&data[..]);
        archive.set_preserve_permissions(false);
        archive.unpack(host).map_err(io_err(format!("cannot unpack into {}", host.display())))
    }
}
