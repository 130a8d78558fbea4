//! The docker backend: the agent in a container with no network, the sidecar
//! on its own bridge (DESIGN.md). Planning is real; the Engine-API launch
//! path is not implemented yet and says so.

pub mod engine;
pub mod images;
pub mod rootfs;

use crate::registry::{Availability, Backend};

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
                    "no Docker Engine socket at {}: install docker.io and start dockerd, or set DOCKER_HOST",
                    path.display()
                ),
            },
            Err(host) => Availability { available: true, reason: format!("DOCKER_HOST={host}") },
        }
    }

    fn runtime(&self) -> String {
        "runc container, network none (gVisor used when the daemon proves runsc works)".to_string()
    }
}
