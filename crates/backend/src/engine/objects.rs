//! A bottle's Docker objects, for either backend (each runs its sidecar in
//! Docker): names and labels, creating, finding and removing them, the
//! locked-down host config every container gets, and the errors they raise.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions,
};
use futures_util::StreamExt;

use super::images;
use crate::error::BackendError;
use crate::plan::Plan;

/// The label holding the bottle's identity on each of its Docker objects.
pub const LABEL_IDENTITY: &str = "dev.bot-bottle.identity";
/// The label saying which part an object is (`sidecar`, `agent`, `shim`).
pub const LABEL_ROLE: &str = "dev.bot-bottle.role";

/// Progress lines for the operator.
pub type Progress<'a> = images::Progress<'a>;

pub(crate) static TRACE_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

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
    /// The bottle's identity.
    pub identity: String,
    /// Its network's name.
    pub network: Option<String>,
    /// The sidecar container's id.
    pub sidecar: Option<String>,
    /// The agent container's id.
    pub agent: Option<String>,
    /// The shim container's id.
    pub shim: Option<String>,
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
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
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
pub(crate) fn state_dir(plan: &Plan) -> Result<state::StateDir, BackendError> {
    state::StateDir::open(&plan.home, &plan.identity).ok_or_else(|| BackendError::Invalid {
        message: format!("the state of {} is gone ({})", plan.identity, plan.state_dir().display()),
    })
}

/// A limit for the Engine, which takes `i64` (the manifest bounds every
/// limit far below `i64::MAX`).
pub(crate) fn limit(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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

pub(crate) async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> Result<String, BackendError> {
    let options = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(docker_err(format!("cannot create container {name}")))?;
    Ok(created.id)
}

/// The label holding the agent's name.
pub const LABEL_AGENT: &str = "dev.bot-bottle.agent";
/// The label holding the operator's label.
pub const LABEL_LABEL: &str = "dev.bot-bottle.label";
/// The label holding when the bottle started.
pub const LABEL_STARTED: &str = "dev.bot-bottle.started";
