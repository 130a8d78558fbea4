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
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use futures_util::StreamExt;
use secret::Secret;

use super::cancel::Cancel;
use super::provision::{self, AGENT_HOME, AGENT_UID, WORKSPACE};
use super::{engine, exec, images};
use crate::error::BackendError;
use crate::plan::{AuthSource, Plan};
use sidecar::config::{
    self as sidecar_config, EGRESS_PORT, EGRESS_SOCKET, GATE_PORT, GATE_SOCKET, RUN_DIR, SUPERVISE_PORT,
    SUPERVISE_SOCKET,
};

pub const LABEL_IDENTITY: &str = "dev.bot-bottle.identity";
pub const LABEL_ROLE: &str = "dev.bot-bottle.role";

/// The sidecar's secret values, in the state dir while a session runs.
const SECRETS_FILE: &str = "sidecar-secrets.json";
/// git-gate's SSH keys, likewise.
const GATE_KEYS_DIR: &str = "git-gate/keys";

/// Progress lines for the operator.
pub type Progress<'a> = images::Progress<'a>;

static TRACE_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// With `BOT_BOTTLE_TRACE` set, a timestamped line per launch phase (where
/// a slow launch spends its time).
pub fn trace(what: &str) {
    let start = *TRACE_START.get_or_init(std::time::Instant::now);
    if std::env::var_os("BOT_BOTTLE_TRACE").is_some() {
        eprintln!("bot-bottle: [{:>5} ms] {what}", start.elapsed().as_millis());
    }
}

pub(crate) fn docker_err(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> BackendError {
    let what = what.into();
    move |source| BackendError::Engine { operation: what, source }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
    let what = what.into();
    move |source| BackendError::Io { what, source }
}

/// Which `$BOT_BOTTLE_HOME` a bottle belongs to: `cleanup` in one home
/// never touches another's bottles.
pub const LABEL_HOME: &str = "dev.bot-bottle.home";

pub(crate) fn labels(home: &state::Home, identity: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_IDENTITY.to_string(), identity.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
        (LABEL_HOME.to_string(), home.root().display().to_string()),
    ])
}

/// The Docker objects of one bottle.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub identity: String,
    pub network: Option<String>,
    pub sidecar: Option<String>,
    pub agent: Option<String>,
    pub shim: Option<String>,
}

/// A launched bottle.
pub struct DockerBottle {
    pub runtime: tokio::runtime::Runtime,
    pub docker: Docker,
    pub objects: Objects,
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
        self.runtime.block_on(async {
            save_sidecar_logs(docker, objects, dir).await;
            snapshot_transcript(docker, objects, dir).await;
            snapshot_workspace(docker, objects, dir).await;
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

/// The host login the plan's routes forward (Codex's auth.json), read and
/// checked again at launch, once: its token goes to the sidecar, its
/// stand-in to the agent.
pub(crate) fn forwarded_login(plan: &Plan) -> Result<Option<crate::host_login::CodexLogin>, BackendError> {
    let Some(file) = plan.routes.iter().find_map(|r| match &r.auth {
        Some((_, AuthSource::HostLogin(file))) => Some(file),
        _ => None,
    }) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(io_err(format!("cannot read the host login {file}")))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::host_login::codex(file, &text, now)
        .map(Some)
        .map_err(|e| BackendError::Invalid { message: format!("agent_provider.forward_host_credentials: {e}") })
}

/// Session end: the agent's own session files into the state dir's
/// transcript (see [`super::transcript`]). Best effort: a session with none
/// has none, and a failure leaves the bottle's teardown to go on.
async fn snapshot_transcript(docker: &Docker, objects: &Objects, state_dir: &Path) {
    let Some(agent) = &objects.agent else { return };
    if !state_dir.is_dir() {
        return;
    }
    for dir in super::transcript::session_dirs(state_dir) {
        if let Some(tar) = download(docker, agent, &format!("{AGENT_HOME}/{dir}")).await {
            super::transcript::keep(state_dir, &dir, &tar);
        }
    }
}

/// Session end (and `export` of a running bottle): the agent's
/// `/workspace` into the state dir (see [`crate::workspace`]), streamed
/// through a scratch file. Best effort: a failure is said, the copy before
/// it stays, and the bottle's teardown goes on.
pub(crate) async fn snapshot_workspace(docker: &Docker, objects: &Objects, state_dir: &Path) {
    let Some(agent) = &objects.agent else { return };
    if !state_dir.is_dir() {
        return;
    }
    let scratch = state_dir.join("workspace.tar.partial");
    let copied = async {
        use std::io::Write;
        let mut file = std::fs::File::create(&scratch).map_err(|e| e.to_string())?;
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: WORKSPACE.to_string() };
        let mut stream = docker.download_from_container(agent, Some(options));
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            total += chunk.len() as u64;
            if total > crate::workspace::MAX_BYTES + (64 << 20) {
                return Err(format!("it is over {} GiB", crate::workspace::MAX_BYTES >> 30));
            }
            file.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        file.sync_all().map_err(|e| e.to_string())?;
        let tar = std::fs::File::open(&scratch).map_err(|e| e.to_string())?;
        crate::workspace::keep(state_dir, std::io::BufReader::new(tar)).map_err(|e| e.to_string())
    }
    .await;
    let _ = std::fs::remove_file(&scratch);
    if let Err(e) = copied {
        eprintln!("bot-bottle: the agent's workspace was not copied out of {}: {e}", state_dir.display());
    }
}

/// The session is over: the secret values the sidecar was given (tokens,
/// forwarded values, the canary) and its git keys leave the state dir. A
/// resume resolves and writes them again.
pub(crate) fn forget_secrets(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(SECRETS_FILE));
    if let Ok(keys) = std::fs::read_dir(state_dir.join(GATE_KEYS_DIR)) {
        for key in keys.flatten() {
            let _ = std::fs::remove_file(key.path());
        }
    }
}

/// Keep the sidecar's log for `bot-bottle logs` after the container is gone.
pub(crate) async fn save_sidecar_logs(docker: &Docker, objects: &Objects, state_dir: &Path) {
    let Some(sidecar) = &objects.sidecar else { return };
    let text = container_logs(docker, sidecar, "all").await;
    if !text.is_empty() && state_dir.is_dir() {
        let _ = std::fs::write(state_dir.join("sidecar.log"), text);
    }
}

/// A container's stdout and stderr so far: its last `tail` lines, or "all".
pub(crate) async fn container_logs(docker: &Docker, id: &str, tail: &str) -> Vec<u8> {
    let options = LogsOptions { stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
    let mut stream = docker.logs(id, Some(options));
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.extend_from_slice(&chunk.into_bytes());
    }
    text
}

/// Remove a bottle's containers and network (missing ones are fine).
pub async fn remove(docker: &Docker, objects: &Objects) -> Result<(), BackendError> {
    let mut failed = Vec::new();
    for id in [&objects.shim, &objects.agent, &objects.sidecar].into_iter().flatten() {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(e) = docker.remove_container(id, Some(options)).await
            && !is_not_found(&e)
        {
            failed.push(format!("container {id}: {e}"));
        }
    }
    // Someone else may be removing the containers (the launcher's own
    // teardown racing `stop`): the network goes once they are gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for id in [&objects.shim, &objects.agent, &objects.sidecar].into_iter().flatten() {
        while docker.inspect_container(id, None).await.is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if let Some(net) = &objects.network {
        loop {
            match docker.remove_network(net).await {
                Ok(()) => break,
                Err(e) if is_not_found(&e) => break,
                Err(e) if tokio::time::Instant::now() < deadline && e.to_string().contains("active endpoints") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    failed.push(format!("network {net}: {e}"));
                    break;
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BackendError::Leftovers { what: format!("teardown of {}", objects.identity), left: failed })
    }
}

/// Gone already, or being removed by someone else (the launcher's own
/// teardown racing `stop`): either way it is going away.
fn is_not_found(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => true,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message } => {
            message.contains("already in progress")
        }
        _ => false,
    }
}

/// The objects Docker has for `identity` in `home` (by label), running or not.
pub async fn find(docker: &Docker, home: &state::Home, identity: &str) -> Result<Objects, BackendError> {
    let filter = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_IDENTITY}={identity}"), format!("{LABEL_HOME}={}", home.root().display())],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filter.clone()), ..Default::default() }))
        .await
        .map_err(docker_err("cannot list containers"))?;
    let mut objects = Objects { identity: identity.to_string(), ..Default::default() };
    for c in containers {
        let role = c.labels.as_ref().and_then(|l| l.get(LABEL_ROLE)).cloned().unwrap_or_default();
        let id = c.id.unwrap_or_default();
        match role.as_str() {
            "sidecar" => objects.sidecar = Some(id),
            "agent" => objects.agent = Some(id),
            "shim" => objects.shim = Some(id),
            _ => {}
        }
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: Some(filter) }))
        .await
        .map_err(docker_err("cannot list networks"))?;
    objects.network = networks.into_iter().find_map(|n| n.id);
    Ok(objects)
}

/// The host user's uid and gid (the sidecar and shim run as them, so what
/// they write in the state dir stays the user's).
pub(crate) fn host_ids(dir: &Path) -> Result<(u32, u32), BackendError> {
    use std::os::unix::fs::MetadataExt;
    // Never a fall-back to root: the sidecar would run as uid 0.
    std::fs::metadata(dir)
        .map(|m| (m.uid(), m.gid()))
        .map_err(|source| BackendError::Io { what: format!("cannot read the owner of {}", dir.display()), source })
}

/// The bottle's state dir, which `prepare` wrote.
fn state_dir(plan: &Plan) -> Result<state::StateDir, BackendError> {
    state::StateDir::open(&plan.home, &plan.identity).ok_or_else(|| BackendError::Invalid {
        message: format!("the state of {} is gone ({})", plan.identity, plan.state_dir().display()),
    })
}

/// A limit for the Engine, which takes `i64` (the manifest bounds every
/// limit far below `i64::MAX`).
fn limit(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The shim's (a relay of a few sockets): 64 MiB.
pub const SHIM_MEMORY: i64 = 64 << 20;

/// Gitea deploy keys minted for this launch, revoked at teardown.
pub const DEPLOY_KEYS_FILE: &str = "git-gate/deploy-keys.json";

/// Apply the route changes approved in earlier sessions (a resume) over
/// the manifest's routes, in the order they were approved, and audit each
/// in the bottle's store. One that no longer applies (its route left the
/// manifest) is skipped, said and audited; the others still apply.
fn reapply_route_edits(plan: &Plan, mut text: String, progress: Progress<'_>) -> Result<String, BackendError> {
    if plan.kept_route_edits.is_empty() {
        return Ok(text);
    }
    let store = supervise::ProposalStore::open(&supervise::store_path(&plan.state_dir()), &plan.identity)
        .map_err(|e| BackendError::Invalid { message: e.to_string() })?;
    for kept in &plan.kept_route_edits {
        let outcome = routes::edit(&text, &kept.edit);
        let audited = match &outcome {
            Ok(edited) => {
                text = edited.text.clone();
                store.audit_route_reapplied(kept, Ok(()))
            }
            Err(e) => {
                progress(&format!("approved route change {} is not applied again: {e}", kept.edit.summary()));
                store.audit_route_reapplied(kept, Err(&e.to_string()))
            }
        };
        audited.map_err(|e| BackendError::Invalid { message: e.to_string() })?;
    }
    Ok(text)
}

/// Write what the sidecar reads: routes, secrets, keys, its config.
pub(crate) async fn write_sidecar_files(
    plan: &Plan,
    login: Option<&crate::host_login::CodexLogin>,
    at: &provision::Endpoints,
    progress: Progress<'_>,
) -> Result<(PathBuf, dlp::Canary), BackendError> {
    let dir = plan.state_dir();
    let state = state_dir(plan)?;
    let host = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    // Routes: token slots only; the values go in the secrets file.
    let specs: Vec<routes::RouteSpec> = plan
        .routes
        .iter()
        .map(|r| routes::RouteSpec {
            route: r.route.clone(),
            auth: r.auth.as_ref().map(|(scheme, source)| {
                let name = match source {
                    AuthSource::HostEnv(v) => v.clone(),
                    AuthSource::HostLogin(f) => format!("login:{f}"),
                };
                (*scheme, name)
            }),
            on_match: r.on_match,
            provider: r.origin.starts_with("provider "),
        })
        .collect();
    let rendered = routes::render(&specs, plan.manifest.bottle.log_level());
    let text = reapply_route_edits(plan, rendered.text.clone(), progress)?;
    let routes = state.component("egress")?.join("routes.json");
    std::fs::write(&routes, &text).map_err(io_err("cannot write the route file"))?;
    let mut secrets = sidecar_config::SidecarSecrets::default();
    for (slot, source) in &rendered.slots {
        let value = match source.strip_prefix("login:") {
            Some(file) => login
                .ok_or_else(|| BackendError::Invalid { message: format!("the host login {file} was not read") })?
                .access_token
                .expose()
                .clone(),
            None => host(source).ok_or_else(|| BackendError::Invalid {
                message: format!("the host variable {source} is not set; export it before starting"),
            })?,
        };
        secrets.tokens.insert(*slot, value);
    }
    for (name, value) in &plan.env {
        // Values forwarded from the host (or asked) are secrets the DLP
        // watches for; literals written in the manifest are not.
        if let manifest::Resolved::Forwarded(v) = value {
            secrets.known.insert(name.clone(), v.expose().clone());
        }
    }
    // The canary: a random secret under a random name in the agent's
    // environment, known to the sidecar's DLP.
    let canary = dlp::Canary::mint().map_err(|e| BackendError::Launch(format!("cannot mint the canary: {e}")))?;
    secrets.canary = Some(canary.value.expose().clone());
    // git-gate: keys copied (0600) or minted.
    let mut gate_repos = Vec::new();
    let ledger = git_gate::ledger::Ledger::at(dir.join(DEPLOY_KEYS_FILE));
    for (name, repo) in &plan.manifest.bottle.repos {
        let (Some(url), Some((_, pinned))) = (&repo.value.url, plan.host_keys.get(name)) else {
            return Err(BackendError::Invalid { message: format!("git-gate.repos.{name} needs url and a host key") });
        };
        let host_key = &pinned.key;
        let key_file = format!("{GATE_KEYS_DIR}/{name}.key");
        match &repo.value.key {
            Some(manifest::RepoKey::Static { path }) => {
                let key = git_gate::keys::read_static(path, std::env::var_os("HOME").map(PathBuf::from).as_deref())
                    .map_err(|e| BackendError::Invalid { message: format!("git-gate.repos.{name}: {e}") })?;
                state.write_secret_file(&key_file, key.expose())?;
            }
            Some(manifest::RepoKey::Gitea { provisioner_token }) => {
                let token = host(provisioner_token).ok_or_else(|| BackendError::Invalid {
                    message: format!(
                        "git-gate.repos.{name}: {provisioner_token} is not set; export it before starting"
                    ),
                })?;
                let upstream =
                    git_gate::ssh::SshUrl::parse(url).map_err(|message| BackendError::Invalid { message })?;
                let api = git_gate::keys::GiteaApi::for_upstream(&upstream, Secret::new(token))
                    .map_err(|e| BackendError::DeployKey { repo: name.clone(), message: e.to_string() })?;
                // Written ahead: on disk before the key exists, so no exit
                // path can leave a registered key nobody knows to revoke.
                let what = git_gate::ledger::MintFor {
                    repo: name,
                    url,
                    token_ref: provisioner_token,
                    title_prefix: &format!("bot-bottle {} {name}", plan.identity),
                };
                let (private, key) = ledger
                    .mint(&api, &upstream, what, &state.component(GATE_KEYS_DIR)?)
                    .await
                    .map_err(|e| BackendError::DeployKey { repo: name.clone(), message: e.to_string() })?;
                progress(&format!("git-gate: registered deploy key {} on {}", key.id, key.owner_repo));
                state.write_secret_file(&key_file, private.expose())?;
            }
            None => return Err(BackendError::Invalid { message: format!("git-gate.repos.{name} needs a key") }),
        }
        gate_repos.push(sidecar_config::GateRepo {
            name: name.clone(),
            url: url.clone(),
            host_key: host_key.clone(),
            key: sidecar_config::in_sidecar(&dir, &dir.join(&key_file)),
            allow_force_push: repo.value.allow_force_push.unwrap_or(false),
            allow_delete: repo.value.allow_delete.unwrap_or(false),
        });
    }
    // Host keys pinned on first use: kept, so a resume pins the same.
    crate::host_keys::write_kept(&dir, &plan.host_keys, &state::BottleMetadata::now())
        .map_err(|message| BackendError::Invalid { message })?;
    // Never written empty: a secrets file the sidecar cannot use is an error
    // now, not a bottle without its tokens.
    let secrets_json = serde_json::to_vec(&secrets)
        .map_err(|e| BackendError::Invalid { message: format!("cannot serialise the sidecar's secrets: {e}") })?;
    let secrets_path = state.write_secret_file(SECRETS_FILE, &secrets_json)?;
    drop(secrets);
    state.component("supervise")?;
    state.component("sidecar-home")?;
    let inside = |p: &Path| sidecar_config::in_sidecar(&dir, p);
    let config = sidecar_config::SidecarConfig {
        identity: plan.identity.clone(),
        run_dir: PathBuf::from(RUN_DIR),
        egress: sidecar_config::EgressConfig { routes: inside(&routes), ca_dir: inside(&dir.join("egress")) },
        git_gate: (!gate_repos.is_empty())
            .then(|| sidecar_config::GateConfig { dir: inside(&dir.join("git-gate")), repos: gate_repos }),
        supervise: sidecar_config::SuperviseConfig {
            store: inside(&supervise::store_path(&dir)),
            tool_timeout_secs: 30 * 60,
            allowed_hosts: at.beyond_loopback().map(str::to_string).into_iter().collect(),
        },
        secrets: inside(&secrets_path),
    };
    let config_path = dir.join("sidecar.json");
    let config_json = serde_json::to_vec_pretty(&config)
        .map_err(|e| BackendError::Invalid { message: format!("cannot serialise the sidecar's config: {e}") })?;
    std::fs::write(&config_path, config_json).map_err(io_err("cannot write sidecar.json"))?;
    Ok((config_path, canary))
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
    std::fs::write(dir.join(LAUNCHER_FILE), std::process::id().to_string())
        .map_err(io_err("cannot write the launcher pid"))?;
    // Leftovers of an earlier run of this identity (a killed launcher).
    // The agent's runtime (one `info`, and a probe when runsc is there),
    // asked while the rest is prepared: only the agent waits for it.
    let runtime = {
        let docker = docker.clone();
        tokio::spawn(async move { super::runtime::choose(&docker).await })
    };
    let stale = find(docker, &plan.home, identity).await?;
    remove(docker, &stale).await?;
    trace("leftovers checked");
    // Images.
    let base = cancel.wait(images::ensure_base(docker, progress)).await?;
    let sidecar_image = cancel.wait(images::ensure_sidecar(docker, &base, progress)).await?;
    let agent_image = cancel.wait(agent_image(docker, plan, &base, progress)).await?;
    super::prune::record_use(&plan.state_dir(), &[&base, &sidecar_image, &agent_image])?;
    // When the agent boots from this bottle's commit: when it was made.
    let committed_at = (committed_image(&plan.state_dir()).as_deref() == Some(agent_image.as_str()))
        .then(|| std::fs::metadata(plan.state_dir().join(COMMIT_FILE)).and_then(|m| m.modified()).ok())
        .flatten();
    trace("images ready");
    // What the sidecar reads.
    let login = forwarded_login(plan)?;
    let (config, canary) =
        write_sidecar_files(plan, login.as_ref(), &provision::Endpoints::loopback(), progress).await?;
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

/// The bottle's own network: the sidecar's only way out.
pub(crate) fn net_name_for(identity: &str) -> String {
    format!("bot-bottle-{identity}")
}

/// No capabilities, no privilege gain.
pub(crate) fn locked(mut h: HostConfig) -> HostConfig {
    h.cap_drop = Some(vec!["ALL".to_string()]);
    h.security_opt = Some(vec!["no-new-privileges".to_string()]);
    h
}

/// The sidecar container on `network` running `bot-bottle sidecar` with
/// `config`, as the host user, the state dir and a fresh run dir (its
/// sockets) mounted; and that run dir.
pub(crate) fn sidecar_body(
    plan: &Plan,
    config: &Path,
    image: &str,
    network: &str,
) -> Result<(ContainerCreateBody, PathBuf), BackendError> {
    let dir = plan.state_dir();
    let _ = std::fs::remove_dir_all(dir.join("run"));
    let run_dir = state_dir(plan)?.component("run")?;
    let (uid, gid) = host_ids(&dir)?;
    let mut binds =
        vec![format!("{}:{}", dir.display(), sidecar_config::BOTTLE_DIR), format!("{}:{RUN_DIR}", run_dir.display())];
    let mut env = vec![format!("HOME={}/sidecar-home", sidecar_config::BOTTLE_DIR)];
    if std::env::var_os("BOT_BOTTLE_TRACE").is_some() {
        env.push("BOT_BOTTLE_TRACE=1".to_string());
    }
    if uid != 0 {
        // ssh needs a passwd entry for the user it runs as.
        let passwd = dir.join("sidecar-passwd");
        std::fs::write(
            &passwd,
            format!(
                "root:x:0:0:root:/root:/bin/sh\nbottle:x:{uid}:{gid}::{}/sidecar-home:/bin/sh\n",
                sidecar_config::BOTTLE_DIR
            ),
        )
        .map_err(io_err("cannot write the sidecar's passwd"))?;
        binds.push(format!("{}:/etc/passwd:ro", passwd.display()));
    }
    if let Some(ca) = std::env::var_os("BOT_BOTTLE_UPSTREAM_CA").filter(|v| !v.is_empty()) {
        binds.push(format!("{}:/etc/bot-bottle/upstream-ca.pem:ro", Path::new(&ca).display()));
        env.push("BOT_BOTTLE_UPSTREAM_CA=/etc/bot-bottle/upstream-ca.pem".to_string());
    }
    let extra_hosts: Vec<String> = std::env::var("BOT_BOTTLE_SIDECAR_HOSTS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec![
            "sidecar".into(),
            "--config".into(),
            sidecar_config::in_sidecar(&dir, config).display().to_string(),
        ]),
        user: Some(format!("{uid}:{gid}")),
        env: Some(env),
        labels: Some(labels(&plan.home, &plan.identity, "sidecar")),
        host_config: Some(locked(HostConfig {
            binds: Some(binds),
            network_mode: Some(network.to_string()),
            extra_hosts: Some(extra_hosts),
            pids_limit: Some(512),
            // Bounded memory, no swap beyond it: the proxy's own bounds
            // (connections, a 256 MiB body budget) fit well inside, and an
            // agent that finds a way past them kills its sidecar (the session
            // ends, fail closed), not the host.
            memory: Some(limit(plan.manifest.bottle.limits.sidecar_memory())),
            memory_swap: Some(limit(plan.manifest.bottle.limits.sidecar_memory())),
            // `bot-bottle sidecar` is its own init (it reaps git's and
            // ssh's orphans): Docker's costs the launch ~45 ms.
            init: Some(false),
            ..Default::default()
        })),
        ..Default::default()
    };
    Ok((body, run_dir))
}

/// `BOT_BOTTLE_SIDECAR_NETWORK`: a further network the sidecar joins (the
/// tests' simulated internet).
pub(crate) async fn join_extra_network(docker: &Docker, sidecar: &str) -> Result<(), BackendError> {
    if let Ok(extra) = std::env::var("BOT_BOTTLE_SIDECAR_NETWORK")
        && !extra.is_empty()
    {
        docker
            .connect_network(
                &extra,
                bollard::models::NetworkConnectRequest { container: sidecar.to_string(), ..Default::default() },
            )
            .await
            .map_err(docker_err(format!("cannot join the sidecar to network {extra}")))?;
    }
    Ok(())
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

pub(crate) async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<String, BackendError> {
    let options = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(docker_err(format!("cannot create container {name}")))?;
    Ok(created.id)
}

/// The agent image: a committed snapshot of this bottle, the bottle's own
/// Dockerfile, or the provider's.
pub(crate) async fn agent_image(
    docker: &Docker,
    plan: &Plan,
    base: &str,
    progress: Progress<'_>,
) -> Result<String, BackendError> {
    if let Some(committed) = committed_image(&plan.state_dir())
        && docker.inspect_image(&committed).await.is_ok()
    {
        progress(&format!("using the committed image {committed}"));
        return Ok(committed);
    }
    let provider_cfg = plan.manifest.bottle.provider();
    if let Some(path) = &provider_cfg.dockerfile {
        let text =
            std::fs::read_to_string(path).map_err(io_err(format!("cannot read agent_provider.dockerfile {path}")))?;
        return images::ensure_agent(docker, &plan.provider, &text, base, &[], progress).await;
    }
    // A plugin's own Dockerfile, built on the shell provider's image, with
    // the files beside it in its context.
    if let Some(dockerfile) = plan.resolved_provider.plugin_dockerfile() {
        let text = std::fs::read_to_string(&dockerfile)
            .map_err(io_err(format!("cannot read the plugin's {}", dockerfile.display())))?;
        let mut context: Vec<(String, images::Source)> = Vec::new();
        for entry in std::fs::read_dir(dockerfile.parent().unwrap_or(Path::new("."))).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "Dockerfile" && entry.file_type().is_ok_and(|t| t.is_file()) {
                context.push((name, images::Source::File(entry.path())));
            }
        }
        let context: Vec<(&str, images::Source)> = context.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let shell = images::ensure_shell(docker, base, progress).await?;
        return images::ensure_agent(docker, &plan.provider, &text, &shell, &context, progress).await;
    }
    if let Some(tag) = images::ensure_provider(docker, &plan.provider, base, progress).await? {
        return Ok(tag);
    }
    Err(BackendError::NotImplemented {
        backend: "docker".to_string(),
        operation: match plan.provider.as_str() {
            "codex" => "build the codex provider's image yet (use agent_provider.dockerfile or the shell provider)",
            "pi" => "build the pi provider's image yet (use agent_provider.dockerfile or the shell provider)",
            _ => {
                "build an image for a plugin without a Dockerfile (add one beside its provider.toml: FROM ${BASE_IMAGE} is the shell provider's image)"
            }
        },
    })
}

/// The file `commit` writes: the image `resume` boots from.
pub const COMMIT_FILE: &str = "commit.json";

pub fn committed_image(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(COMMIT_FILE)).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["image"].as_str().map(str::to_string)
}

/// Wait until the sidecar's sockets exist; a sidecar that exits first is an
/// error with its last log lines.
pub(crate) async fn wait_for_sockets(
    docker: &Docker,
    sidecar: &str,
    run_dir: &Path,
    names: &[&str],
) -> Result<(), BackendError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut polls = 0u32;
    loop {
        if names.iter().all(|n| run_dir.join(n).exists()) {
            return Ok(());
        }
        // The sockets are files: look often; ask Docker about the sidecar
        // only now and then.
        polls += 1;
        if !polls.is_multiple_of(20) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let state = docker.inspect_container(sidecar, None).await.ok().and_then(|c| c.state);
        let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if !running || tokio::time::Instant::now() >= deadline {
            let logs = String::from_utf8_lossy(&container_logs(docker, sidecar, "20").await).into_owned();
            let why = if running { "did not open its sockets within 90 s" } else { "exited" };
            return Err(BackendError::Ended(format!("the sidecar {why}:\n{}", logs.trim_end())));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A tar of the agent's files, rooted at `/`, each entry's owner in its
/// header; paths are taken relative to the directory [`Bundle::enter`]ed.
struct Bundle {
    tar: tar::Builder<Vec<u8>>,
    at: String,
}

impl Bundle {
    fn new() -> Bundle {
        Bundle { tar: tar::Builder::new(Vec::new()), at: String::new() }
    }

    /// Later paths are under `dir` (an absolute path in the agent).
    fn enter(&mut self, dir: &str) {
        self.at = dir.trim_matches('/').to_string();
    }

    fn path(&self, path: &str) -> String {
        if self.at.is_empty() { path.to_string() } else { format!("{}/{path}", self.at) }
    }

    fn header(size: u64, mode: u32, uid: u64, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_entry_type(kind);
        h.set_mtime(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        );
        h
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64) -> Result<(), BackendError> {
        let mut h = Self::header(0, mode, uid, tar::EntryType::Directory);
        let path = self.path(path);
        self.tar.append_data(&mut h, path, std::io::empty()).map_err(io_err("cannot pack files for the agent"))
    }

    /// `path` and every directory above it, up to the entered directory.
    fn dirs(&mut self, path: &str, mode: u32, uid: u64) -> Result<(), BackendError> {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = if at.is_empty() { part.to_string() } else { format!("{at}/{part}") };
            self.dir(&at, mode, uid)?;
        }
        Ok(())
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64) -> Result<(), BackendError> {
        let mut h = Self::header(data.len() as u64, mode, uid, tar::EntryType::Regular);
        let path = self.path(path);
        self.tar.append_data(&mut h, path, data).map_err(io_err("cannot pack files for the agent"))
    }

    /// A host directory tree (regular files, dirs and symlinks).
    fn tree(&mut self, host: &Path, under: &str, uid: u64) -> Result<(), BackendError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(host).map_err(io_err(format!("cannot read {}", host.display())))?;
        if meta.is_dir() {
            self.dir(under, 0o755, uid)?;
            let mut entries: Vec<_> =
                std::fs::read_dir(host).map_err(io_err(format!("cannot read {}", host.display())))?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                self.tree(&e.path(), &format!("{under}/{name}"), uid)?;
            }
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(host).map_err(io_err(format!("cannot read {}", host.display())))?;
            let mut h = Self::header(0, 0o777, uid, tar::EntryType::Symlink);
            let path = self.path(under);
            self.tar.append_link(&mut h, path, target).map_err(io_err("cannot pack files for the agent"))?;
        } else if meta.is_file() {
            let data = std::fs::read(host).map_err(io_err(format!("cannot read {}", host.display())))?;
            self.file(under, &data, meta.permissions().mode() & 0o777, uid)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, BackendError> {
        self.tar.into_inner().map_err(io_err("cannot pack files for the agent"))
    }
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
        if data.len() as u64 > super::transcript::MAX_TAR {
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
    canary: &dlp::Canary,
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
    )?;
    // One copy: each costs Docker a mount of the container's filesystem.
    upload(docker, agent, "/", files).await
}

/// The agent's files for `plan`, reaching the sidecar `at`, as one tar to
/// unpack at `/` keeping its owners: root's (the bottle CA), the agent's
/// home (owned by the agent's user), and the workspace when the cwd is
/// copied in (`committed_at`: when the snapshot the agent boots from was
/// committed, if it does). With the image's CA bundle (and the CA file an
/// earlier launch left in a commit), the bundle with this launch's bottle
/// CA replaces it; without, only the CA certificate goes in (the caller
/// appends it).
pub(crate) fn agent_files(
    plan: &Plan,
    canary: &dlp::Canary,
    login_stand_in: Option<&str>,
    image_ca_bundle: Option<(Vec<u8>, Option<Vec<u8>>)>,
    at: &provision::Endpoints,
    committed_at: Option<std::time::SystemTime>,
) -> Result<Vec<u8>, BackendError> {
    let mut files = Bundle::new();
    for d in
        ["usr", "usr/local", "usr/local/share", "usr/local/share/ca-certificates", "etc", "etc/ssl", "etc/ssl/certs"]
    {
        files.dir(d, 0o755, 0)?;
    }
    files.file(provision::AGENT_CA.trim_start_matches('/'), plan.ca.cert_pem.as_bytes(), 0o644, 0)?;
    if let Some((bundle, previous_ca)) = image_ca_bundle {
        let bundle = provision::bundle_with_ca(&bundle, previous_ca.as_deref(), &plan.ca.cert_pem);
        files.file(provision::CA_BUNDLE.trim_start_matches('/'), &bundle, 0o644, 0)?;
    }
    // Home: the env file (0600), .gitconfig, the prompt, skills.
    let uid = AGENT_UID;
    files.enter(AGENT_HOME);
    files.dir(".bot-bottle", 0o700, uid)?;
    let mut values: BTreeMap<String, Secret<String>> = plan
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            manifest::Resolved::Forwarded(v) => Some((k.clone(), v.clone())),
            manifest::Resolved::Literal(v) => Some((k.clone(), Secret::new(v.clone()))),
            _ => None,
        })
        .collect();
    values.entry(canary.variable.clone()).or_insert_with(|| canary.value.clone());
    files.file(".bot-bottle/env", provision::env_file(&values).expose().as_bytes(), 0o600, uid)?;
    let user = &plan.manifest.bottle.git_user;
    let repos: Vec<(String, String)> = plan
        .manifest
        .bottle
        .repos
        .iter()
        .filter_map(|(name, r)| r.value.url.clone().map(|u| (name.clone(), u)))
        .collect();
    let gitconfig = git_gate::gitconfig::agent_gitconfig(
        user.name.as_ref().map(|s| s.value.as_str()),
        user.email.as_ref().map(|s| s.value.as_str()),
        &repos,
        &at.gate(),
    );
    files.file(".gitconfig", gitconfig.as_bytes(), 0o644, uid)?;
    // Always written (empty when the agent has none), the agent's alone.
    files.file(".bot-bottle-prompt.txt", plan.manifest.agent.prompt.as_bytes(), 0o600, uid)?;
    // A resumed bottle gets its transcript back, for the continue flag;
    // then the provider's files, so its configuration is this launch's.
    let provider = plan.resolved_provider.provider();
    let state_dir = plan.state_dir();
    if let (crate::ProviderRef::Plugin { .. }, Some(dir)) = (&plan.resolved_provider, &provider.session_dir) {
        std::fs::write(state_dir.join(super::transcript::PLUGIN_SESSION_DIR_FILE), dir)
            .map_err(io_err("cannot record the plugin's session directory"))?;
    }
    let transcript = state_dir.join(super::transcript::TRANSCRIPT_DIR);
    for dir in super::transcript::session_dirs(&state_dir) {
        if transcript.join(&dir).is_dir() {
            files.tree(&transcript.join(&dir), &dir, uid)?;
        }
    }
    for (path, text) in provision::provider_files(provider, login_stand_in, at) {
        // Parent directories the agent owns (its CLI writes beside them).
        if let Some(parent) = Path::new(&path).parent() {
            files.dirs(&parent.to_string_lossy(), 0o700, uid)?;
        }
        files.file(&path, text.as_bytes(), 0o600, uid)?;
    }
    if let (false, Some(skills)) = (plan.skills.is_empty(), &provider.skills_dir) {
        files.dirs(skills, 0o755, uid)?;
        for skill in &plan.skills {
            let name = skill.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.tree(skill, &format!("{skills}/{name}"), uid)?;
        }
    }
    // The workspace: the agent's kept work, the host's cwd, or nothing
    // (see `workspace::source`).
    let host_cwd = (plan.metadata.copy_cwd && !plan.metadata.cwd.is_empty()).then(|| Path::new(&plan.metadata.cwd));
    if let crate::workspace::Source::Kept(dir) | crate::workspace::Source::HostCwd(dir) =
        crate::workspace::source(&state_dir, committed_at, host_cwd)
    {
        files.enter(WORKSPACE);
        let mut entries: Vec<_> =
            std::fs::read_dir(&dir).map_err(io_err(format!("cannot read {}", dir.display())))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            files.tree(&e.path(), &name, uid)?;
        }
    }
    files.finish()
}

/// Connect, then launch, with Ctrl-C during the launch tearing down what
/// was created.
pub fn launch_blocking(plan: &Plan, progress: Progress<'_>) -> Result<DockerBottle, BackendError> {
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
                    Err(super::cancel::interrupted())
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

pub const LABEL_AGENT: &str = "dev.bot-bottle.agent";
pub const LABEL_LABEL: &str = "dev.bot-bottle.label";
pub const LABEL_STARTED: &str = "dev.bot-bottle.started";

/// Stop: keep the logs and the state (preserved), remove the objects.
pub async fn stop(docker: &Docker, objects: &Objects, state_dir: &Path) -> Result<(), BackendError> {
    save_sidecar_logs(docker, objects, state_dir).await;
    snapshot_transcript(docker, objects, state_dir).await;
    snapshot_workspace(docker, objects, state_dir).await;
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
    let state_dir = home.state_dir(identity);
    let state_dir = state_dir.as_path();
    let objects = find(docker, home, identity).await?;
    let Some(agent) = objects.agent else {
        return Err(BackendError::Invalid { message: format!("bottle {identity} has no running agent to commit") });
    };
    let options = bollard::query_parameters::CommitContainerOptions {
        container: Some(agent),
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

/// The sidecar's log: live from the container, or what was kept.
pub async fn logs(docker: &Docker, home: &state::Home, identity: &str, follow: bool) -> Result<(), BackendError> {
    let state_dir = home.state_dir(identity);
    let objects = find(docker, home, identity).await?;
    // The log quotes what the agent sent (hosts, paths): on a terminal it is
    // shown, not obeyed; a pipe gets it as it is.
    let mut relay = supervise::shown::Relay::new(false, false);
    let mut write = |bytes: &[u8]| relay.write(&mut std::io::stdout(), bytes);
    if let Some(sidecar) = objects.sidecar {
        let options = LogsOptions { stdout: true, stderr: true, follow, tail: "all".to_string(), ..Default::default() };
        let mut stream = docker.logs(&sidecar, Some(options));
        while let Some(Ok(chunk)) = stream.next().await {
            write(&chunk.into_bytes());
        }
        return Ok(());
    }
    match std::fs::read(state_dir.join("sidecar.log")) {
        Ok(text) => {
            write(&text);
            Ok(())
        }
        Err(_) => Err(BackendError::Invalid {
            message: format!("no sidecar logs for {identity}: it is not running and none were kept"),
        }),
    }
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

/// Revoke the Gitea deploy keys this bottle minted (loud on failure).
pub async fn revoke_deploy_keys(state_dir: &Path) {
    let ledger = git_gate::ledger::Ledger::at(state_dir.join(DEPLOY_KEYS_FILE));
    let token = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match git_gate::ledger::revoke_all(&ledger, &token).await {
        Ok(revoked) => {
            for line in revoked.lines {
                eprintln!("bot-bottle: {line}");
            }
        }
        // The ledger stays on disk; the message says what to do by hand.
        Err(e) => eprintln!("bot-bottle: {e}"),
    }
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
