//! The sidecar as the host runs it on a Docker Engine, for either backend:
//! the values it is given (host variables and logins resolved, git-gate's
//! keys put in place through `sidecar::keys`), its container, waiting for
//! its sockets, its logs, and revoking the deploy keys minted for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use secret::Secret;

use super::objects::{Objects, container_logs, find, host_ids, io_err, labels, limit, locked, state_dir};
use super::provision::{self};
use crate::error::BackendError;
use crate::plan::{AuthSource, Plan};
use sidecar::agent::Canary;
use sidecar::config::{self as sidecar_config, RUN_DIR};
use sidecar::keys::{GateKeys, GiteaMint};

pub(crate) use sidecar::keys::forget_secrets;

/// Keep the sidecar's log for `bot-bottle logs` after the container is gone.
pub(crate) async fn save_sidecar_logs(docker: &Docker, objects: &Objects, state_dir: &Path) {
    let Some(sidecar) = &objects.sidecar else { return };
    let text = container_logs(docker, sidecar, "all").await;
    if !text.is_empty() && state_dir.is_dir() {
        let _ = std::fs::write(state_dir.join("sidecar.log"), text);
    }
}

/// The shim's (a relay of a few sockets): 64 MiB.
pub const SHIM_MEMORY: i64 = 64 << 20;

/// Write what the sidecar reads: routes (approved changes re-applied),
/// secrets, keys, its config.
///
/// Minting a Gitea deploy key is a wait `cancel` ends (Ctrl-C): the key's
/// title is in the ledger before the request goes, so a registration the
/// interrupted request made is found by title and revoked on the way out.
pub(crate) async fn write_sidecar_files(
    plan: &Plan,
    login: Option<&crate::host_login::CodexLogin>,
    at: &provision::Endpoints,
    progress: super::objects::Progress<'_>,
    cancel: &super::cancel::Cancel,
) -> Result<(PathBuf, Canary), BackendError> {
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
    let text = sidecar::prepare::reapply_route_edits(
        &dir,
        &plan.identity,
        &plan.kept_route_edits,
        rendered.text.clone(),
        &mut |line| progress(line),
    )
    .map_err(|e| BackendError::Invalid { message: e.to_string() })?;
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
    let canary = Canary::mint().map_err(|e| BackendError::Launch(format!("cannot mint the canary: {e}")))?;
    secrets.canary = Some(canary.value.expose().clone());
    // git-gate: keys copied (0600) or minted.
    let mut gate_repos = Vec::new();
    let keys = GateKeys::new(&state);
    for (name, repo) in &plan.manifest.bottle.repos {
        let (Some(url), Some((_, pinned))) = (&repo.value.url, plan.host_keys.get(name)) else {
            return Err(BackendError::Invalid { message: format!("git-gate.repos.{name} needs url and a host key") });
        };
        let key_file = match &repo.value.key {
            Some(manifest::RepoKey::Static { path }) => {
                keys.copy_static(name, path, std::env::var_os("HOME").map(PathBuf::from).as_deref())?
            }
            Some(manifest::RepoKey::Gitea { provisioner_token }) => {
                let token = host(provisioner_token).ok_or_else(|| BackendError::Invalid {
                    message: format!(
                        "git-gate.repos.{name}: {provisioner_token} is not set; export it before starting"
                    ),
                })?;
                let how = GiteaMint {
                    url,
                    token_ref: provisioner_token,
                    token: Secret::new(token),
                    title_prefix: &format!("bot-bottle {} {name}", plan.identity),
                };
                let (key_file, key) = cancel.wait(async { Ok(keys.mint(name, how).await?) }).await?;
                progress(&format!("git-gate: registered deploy key {} on {}", key.id, key.owner_repo));
                key_file
            }
            None => return Err(BackendError::Invalid { message: format!("git-gate.repos.{name} needs a key") }),
        };
        gate_repos.push(sidecar::GateRepoFile {
            name: name.clone(),
            url: url.clone(),
            host_key: pinned.key.clone(),
            key_file,
            allow_force_push: repo.value.allow_force_push.unwrap_or(false),
            allow_delete: repo.value.allow_delete.unwrap_or(false),
        });
    }
    // Host keys pinned on first use: kept, so a resume pins the same.
    crate::host_keys::write_kept(&dir, &plan.host_keys, &state::BottleMetadata::now())
        .map_err(|message| BackendError::Invalid { message })?;
    let files = sidecar::SidecarFiles::prepare(
        &dir,
        sidecar::SidecarInputs {
            identity: plan.identity.clone(),
            routes: text,
            secrets,
            repos: gate_repos,
            allowed_hosts: at.beyond_loopback().map(str::to_string).into_iter().collect(),
        },
    );
    let config_path = files.write(&state).map_err(|e| BackendError::Invalid { message: e.to_string() })?;
    drop(files);
    Ok((config_path, canary))
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
    let mut env = vec![
        format!("HOME={}/sidecar-home", sidecar_config::BOTTLE_DIR),
        // glibc serves allocations of 1 MiB and more (request bodies, their
        // decoded views) from mmap and gives them back to the kernel when
        // freed. Without it, the dynamic threshold climbs after the first
        // large frees and freed bodies stay in the heap: under a flood of
        // uploads the sidecar's memory peaked at 550–680 MiB instead of
        // 410–460 and a 576 MiB sidecar was OOM-killed
        // (`fault::flooding_the_sidecar`).
        format!("MALLOC_MMAP_THRESHOLD_={}", 1 << 20),
    ];
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

pub use sidecar::keys::has_unrevoked_keys;

/// Revoke the Gitea deploy keys this bottle minted, with the provisioner
/// tokens in the host's environment (loud on failure: each key not revoked,
/// or a ledger that cannot be read, says what to remove by hand; the ledger
/// stays on disk).
pub async fn revoke_deploy_keys(state_dir: &Path) {
    let token = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match sidecar::keys::revoke_deploy_keys(state_dir, &token).await {
        Ok(lines) => {
            for line in lines {
                eprintln!("bot-bottle: {line}");
            }
        }
        Err(e) => eprintln!("bot-bottle: {e}"),
    }
}

/// The sidecar's log: live from the container, or what was kept.
pub async fn logs(docker: &Docker, home: &state::Home, identity: &str, follow: bool) -> Result<(), BackendError> {
    let state_dir = home.state_dir(identity);
    let objects = find(docker, home, identity).await?;
    // The log quotes what the agent sent (hosts, paths): on a terminal it is
    // shown, not obeyed; a pipe gets it as it is.
    let mut relay = shown::Relay::new(false, false);
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
