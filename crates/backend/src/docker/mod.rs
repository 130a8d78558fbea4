//! The docker backend (spec/backends.md): the agent in a container with no
//! network, the sidecar on its own bridge, the shim between them
//! ([`bottle`]); gVisor detected ([`runtime`]). What it shares with the
//! smolmachines backend (the Engine, images, the sidecar's container) is
//! [`crate::engine`].

pub mod bottle;
pub mod runtime;

use state::{BottleMetadata, Home};

use crate::engine::{self, blocking};
use crate::error::BackendError;
use crate::plan::Plan;
use crate::registry::{ActiveBottle, Availability, Backend, CleanupPlan, RunningBottle};

/// The docker backend: the agent and its sidecar in containers on the host's Docker Engine.
pub struct Docker;

impl Docker {
    /// The Engine socket: `DOCKER_HOST` (unix:// only is checked here), else
    /// `/var/run/docker.sock`.
    fn socket() -> Result<std::path::PathBuf, String> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
                Some(path) => Ok(path.into()),
                None => Err(host),
            },
            _ => Ok("/var/run/docker.sock".into()),
        }
    }
}

impl Backend for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn as_dyn(&self) -> &dyn Backend {
        self
    }

    fn available(&self) -> Availability {
        match Self::socket() {
            Ok(path) if path.exists() => {
                Availability { available: true, reason: format!("Docker Engine socket at {}", path.display()) }
            }
            Ok(path) => Availability {
                available: false,
                reason: format!(
                    "no Docker Engine socket at {}: install Docker and start it, or set DOCKER_HOST",
                    path.display()
                ),
            },
            Err(host) => Availability { available: true, reason: format!("DOCKER_HOST={host}") },
        }
    }

    fn runtime(&self) -> String {
        "runc container, network none (gVisor used when the daemon proves runsc works)".to_string()
    }

    fn launch(&self, plan: Plan) -> Result<Box<dyn RunningBottle>, BackendError> {
        let progress = |line: &str| eprintln!("bot-bottle: {line}");
        let launched = bottle::launch_blocking(&plan, &progress)?;
        Ok(Box::new(launched))
    }

    fn enumerate_active(&self, home: &Home) -> Result<Vec<ActiveBottle>, BackendError> {
        blocking(async {
            let docker = engine::connect().await?;
            bottle::active(&docker, home).await
        })
    }

    fn stop(&self, home: &Home, meta: &BottleMetadata) -> Result<(), BackendError> {
        let dir = home.state_dir(&meta.identity);
        // After the session's own end when that came first: then there is
        // no bottle left to stop.
        let _end = crate::registry::wait_turn(home, &meta.identity);
        blocking(async {
            let docker = engine::connect().await?;
            let objects = crate::engine::objects::find(&docker, home, &meta.identity).await?;
            if objects.agent.is_none() && objects.sidecar.is_none() {
                return Err(BackendError::Invalid {
                    message: format!("the docker backend has no running bottle {}", meta.identity),
                });
            }
            bottle::stop(&docker, &objects, &dir).await
        })
    }

    fn save_workspace(&self, home: &Home, meta: &BottleMetadata) -> Result<bool, BackendError> {
        let dir = home.state_dir(&meta.identity);
        // Not beside a session end copying the same workspace into the
        // same state dir; after it, the kept copy is the one to export.
        let _end = crate::registry::wait_turn(home, &meta.identity);
        blocking(async {
            let docker = engine::connect().await?;
            let objects = crate::engine::objects::find(&docker, home, &meta.identity).await?;
            if objects.agent.is_none() {
                return Ok(false);
            }
            // `false` (not as it is now) when the copy failed.
            let copied = bottle::snapshot_workspace(&docker, &objects, &dir).await;
            if let Err(e) = &copied {
                eprintln!("bot-bottle: the running agent's workspace was not copied out ({e})");
            }
            Ok(copied.is_ok())
        })
    }

    fn workspace_from_commit(&self, home: &Home, meta: &BottleMetadata) -> Result<bool, BackendError> {
        // Not beside a launch or session end writing the same kept copy.
        let _turn = crate::registry::wait_turn(home, &meta.identity);
        blocking(async {
            let docker = engine::connect().await?;
            bottle::workspace_from_commit(&docker, home, &meta.identity).await
        })
    }

    fn commit(&self, home: &Home, meta: &BottleMetadata) -> Result<String, BackendError> {
        // A provisioned agent, not one a launch is still putting files in;
        // after a session end, none (said as such).
        let _turn = crate::registry::wait_turn(home, &meta.identity);
        blocking(async {
            let docker = engine::connect().await?;
            bottle::commit(&docker, home, &meta.identity).await
        })
    }

    fn logs(&self, home: &Home, meta: &BottleMetadata, follow: bool) -> Result<(), BackendError> {
        blocking(async {
            let docker = engine::connect().await?;
            crate::engine::sidecar::logs(&docker, home, &meta.identity, follow).await
        })
    }

    fn prepare_cleanup(&self, home: &Home) -> Result<CleanupPlan, BackendError> {
        blocking(async {
            let docker = engine::connect().await?;
            bottle::orphans(&docker, home).await
        })
    }

    fn cleanup(&self, home: &Home, plan: &CleanupPlan) -> Result<(), BackendError> {
        let _ = home;
        blocking(async {
            let docker = engine::connect().await?;
            bottle::remove_orphans(&docker, plan).await
        })
    }
}

impl RunningBottle for bottle::DockerBottle {
    fn identity(&self) -> &str {
        &self.objects.identity
    }

    fn exec(&self, argv: &[String], tty: bool) -> Result<i32, BackendError> {
        bottle::DockerBottle::exec(self, argv, tty)
    }

    fn copy_in(&self, host: &std::path::Path, guest: &str) -> Result<(), BackendError> {
        bottle::DockerBottle::copy_in(self, host, guest)
    }

    fn copy_out(&self, guest: &str, host: &std::path::Path) -> Result<(), BackendError> {
        bottle::DockerBottle::copy_out(self, guest, host)
    }

    fn teardown(mut self: Box<Self>) -> Result<(), BackendError> {
        bottle::DockerBottle::teardown(&mut self)
    }
}
