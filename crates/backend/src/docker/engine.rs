//! The Docker Engine connection: `DOCKER_HOST` honoured, the API version
//! negotiated (Debian's daemon speaks 1.41; the client defaults newer), and
//! a clear instruction when nothing answers.

use std::time::Duration;

use bollard::Docker;

use crate::error::BackendError;

/// How long one Engine call may take (builds and pulls stream within it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Connect and check the Engine answers.
pub async fn connect() -> Result<Docker, BackendError> {
    let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let where_ = host.clone().unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
    let unreachable = |why: String| {
        BackendError::Docker(format!(
            "no Docker Engine answers at {where_} ({why}); run scripts/docker.sh as root (installs Debian's docker.io and starts dockerd), or set DOCKER_HOST"
        ))
    };
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?.with_timeout(CALL_TIMEOUT);
    let docker = docker.negotiate_version().await.map_err(|e| unreachable(e.to_string()))?;
    docker.ping().await.map_err(|e| unreachable(e.to_string()))?;
    Ok(docker)
}
