//! The agent's container runtime: gVisor (`runsc`) when the daemon has it
//! and it provably works, else the default (runc). On some machines runsc
//! registers but its sandboxes hang; so the proof is a bounded `true`
//! container, and a hang means runc. Decided once per process.

use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions, WaitContainerOptions};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

static CHOICE: OnceCell<Option<String>> = OnceCell::const_new();

/// `Some("runsc")` when gVisor works here, `None` for the default.
pub async fn choose(docker: &Docker) -> Option<String> {
    CHOICE.get_or_init(|| probe(docker)).await.clone()
}

async fn probe(docker: &Docker) -> Option<String> {
    if std::env::var("BOT_BOTTLE_RUNTIME").is_ok_and(|r| r == "runc") {
        return None;
    }
    let info = docker.info().await.ok()?;
    if !info.runtimes.as_ref().is_some_and(|r| r.contains_key("runsc")) {
        return None;
    }
    let base = crate::engine::images::ensure_base(docker, &|_| {}).await.ok()?;
    let name = format!("bot-bottle-runsc-probe-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(base),
        cmd: Some(vec!["true".to_string()]),
        host_config: Some(HostConfig {
            runtime: Some("runsc".to_string()),
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }), body)
        .await
        .ok()?;
    let ok = async {
        docker.start_container(&created.id, None).await.ok()?;
        let mut wait = docker.wait_container(&created.id, None::<WaitContainerOptions>);
        let status = wait.next().await?.ok()?;
        (status.status_code == 0).then_some(())
    };
    let worked = tokio::time::timeout(Duration::from_secs(20), ok).await.ok().flatten().is_some();
    // A hung sandbox may refuse removal; try, and never wait on it.
    let remove =
        docker.remove_container(&created.id, Some(RemoveContainerOptions { force: true, ..Default::default() }));
    let _ = tokio::time::timeout(Duration::from_secs(10), remove).await;
    worked.then(|| "runsc".to_string())
}
