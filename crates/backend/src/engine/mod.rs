//! The Docker Engine as both backends use it (each runs its sidecar, and
//! builds its images, in Docker): connecting ([`connect`]), images built
//! without a registry ([`images`], [`rootfs`], [`npm`]), a bottle's objects
//! ([`objects`]), the sidecar's container and files ([`sidecar`]), the
//! agent's image and files ([`agent`], [`provision`]), exec ([`exec`]),
//! cancellation ([`cancel`]), transcripts and pruning.
//!
//! The Docker Engine connection: `DOCKER_HOST` honoured, the API version
//! negotiated (Debian's daemon speaks 1.41; the client defaults newer), and
//! a clear instruction when nothing answers.

pub mod agent;
pub mod cancel;
pub mod exec;
pub mod images;
pub mod npm;
pub mod objects;
pub mod provision;
pub mod prune;
pub mod rootfs;
pub mod sidecar;
pub mod transcript;

use std::time::Duration;

use bollard::Docker;

use crate::error::BackendError;

/// How long one Engine call may take (builds and pulls stream within it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Connect and check the Engine answers.
pub async fn connect() -> Result<Docker, BackendError> {
    let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let where_ = host.clone().unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
    let socket = where_.strip_prefix("unix://").map(std::path::PathBuf::from);
    let unreachable = |why: String| {
        let found = socket.as_deref().map(|p| p.exists());
        BackendError::EngineUnreachable(diagnosis(&where_, &why, found))
    };
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?.with_timeout(CALL_TIMEOUT);
    let docker = docker.negotiate_version().await.map_err(|e| unreachable(e.to_string()))?;
    docker.ping().await.map_err(|e| unreachable(e.to_string()))?;
    Ok(docker)
}

/// What to tell a user whose Engine at `where_` did not answer (`why`);
/// `socket_exists`: whether its unix socket is there (`None`: not a unix
/// socket). Points at commands a user has, never at this repository.
pub fn diagnosis(where_: &str, why: &str, socket_exists: Option<bool>) -> String {
    if why.contains("Permission denied") || why.contains("permission denied") {
        return format!(
            "the Docker Engine at {where_} refuses this user (permission denied on its socket): add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again), or run bot-bottle as root"
        );
    }
    match socket_exists {
        Some(false) => format!(
            "no Docker Engine answers at {where_} (there is no socket): install Docker and start it (Debian and Ubuntu: `sudo apt-get install docker.io && sudo systemctl start docker`), or point DOCKER_HOST at one"
        ),
        _ => format!(
            "no Docker Engine answers at {where_} ({why}): start it (`sudo systemctl start docker`), or point DOCKER_HOST at one"
        ),
    }
}

/// Run one Engine conversation to completion on a small runtime.
pub(crate) fn blocking<T>(work: impl std::future::Future<Output = Result<T, BackendError>>) -> Result<T, BackendError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BackendError::Io { what: "cannot start the async runtime".into(), source })?
        .block_on(work)
}

#[cfg(test)]
mod tests {
    use super::diagnosis;

    #[test]
    fn each_failure_says_its_own_fix() {
        let denied = diagnosis(
            "unix:///var/run/docker.sock",
            "error trying to connect: Permission denied (os error 13)",
            Some(true),
        );
        assert!(denied.contains("docker group") && !denied.contains("no Docker Engine"), "{denied}");
        let missing = diagnosis("unix:///nonexistent/docker.sock", "No such file or directory", Some(false));
        assert!(missing.contains("there is no socket") && missing.contains("apt-get install docker.io"), "{missing}");
        let silent = diagnosis("tcp://10.0.0.1:2375", "connection refused", None);
        assert!(silent.contains("connection refused") && silent.contains("systemctl start docker"), "{silent}");
        for text in [denied, missing, silent] {
            assert!(!text.contains("scripts/"), "a repository path: {text}");
        }
    }
}
