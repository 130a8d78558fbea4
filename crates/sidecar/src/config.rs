//! What the host hands the sidecar: `sidecar.json` (paths and settings, no
//! values) and the secrets file (mode 0600: route tokens by slot, the values
//! the DLP must recognise, the canary), both in the bottle's state dir,
//! which the sidecar sees at [`BOTTLE_DIR`]. Secrets never travel in the
//! container's environment or command line, so `docker inspect` shows none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the state dir is mounted in the sidecar.
pub const BOTTLE_DIR: &str = "/bottle";
/// Where the sockets shared with the shim are, in the sidecar and the shim.
pub const RUN_DIR: &str = "/run/bot-bottle";
/// The egress proxy's socket in [`RUN_DIR`].
pub const EGRESS_SOCKET: &str = "egress.sock";
/// git-gate's socket in [`RUN_DIR`].
pub const GATE_SOCKET: &str = "git-gate.sock";
/// supervise's MCP socket in [`RUN_DIR`].
pub const SUPERVISE_SOCKET: &str = "supervise.sock";
/// The loopback port the agent reaches egress on (through the shim).
pub const EGRESS_PORT: u16 = 3128;
/// The loopback port the agent reaches git-gate on.
pub const GATE_PORT: u16 = 8421;
/// The loopback port the agent reaches supervise's MCP endpoint on.
pub const SUPERVISE_PORT: u16 = 8422;

/// `sidecar.json`: paths (as the sidecar sees them) and settings, no values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// The bottle's identity.
    pub identity: String,
    /// Directory for the unix sockets.
    pub run_dir: PathBuf,
    /// The proxy's files.
    pub egress: EgressConfig,
    /// git-gate, when the bottle declares repos.
    pub git_gate: Option<GateConfig>,
    /// The operator channel.
    pub supervise: SuperviseConfig,
    /// The secrets file.
    pub secrets: PathBuf,
}

/// The egress proxy's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// The route file (rewritten in place on approved changes).
    pub routes: PathBuf,
    /// `ca.pem` and `ca.key`.
    pub ca_dir: PathBuf,
}

/// git-gate's directory and repos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Mirrors, keys and the hook socket.
    pub dir: PathBuf,
    /// The repos it mirrors.
    pub repos: Vec<GateRepo>,
}

/// One repo git-gate mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateRepo {
    /// The repo's name in the bottle (`git-gate.repos.<name>`).
    pub name: String,
    /// The upstream, `ssh://…`.
    pub url: String,
    /// The upstream's pinned host key.
    pub host_key: String,
    /// The private key file (0600), read by the gate only.
    pub key: PathBuf,
    /// What a push may do to the upstream's refs beyond adding history.
    #[serde(default)]
    pub allow_force_push: bool,
    /// Whether a push may delete an upstream ref.
    #[serde(default)]
    pub allow_delete: bool,
}

/// supervise's store and bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    /// The proposal store (SQLite).
    pub store: PathBuf,
    /// How long an agent's call may wait for the operator.
    pub tool_timeout_secs: u64,
    /// Host names the MCP endpoint accepts besides loopback (the sidecar
    /// bundle's IP, where the agent's VM reaches it).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// The secrets file's content. Read it, wrap every value in a `Secret`,
/// drop this.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarSecrets {
    /// `EGRESS_TOKEN_<slot>` values by slot.
    pub tokens: BTreeMap<usize, String>,
    /// Values the agent was given on purpose (and other credentials), by
    /// name: outbound DLP recognises them.
    pub known: BTreeMap<String, String>,
    /// The canary's value: refused on every route.
    pub canary: Option<String>,
}

impl std::fmt::Debug for SidecarSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarSecrets")
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("known", &self.known.keys().collect::<Vec<_>>())
            .field("canary", &self.canary.is_some())
            .finish()
    }
}

/// The path a host path under the state dir has inside the sidecar.
pub fn in_sidecar(state_dir: &Path, host_path: &Path) -> PathBuf {
    match host_path.strip_prefix(state_dir) {
        Ok(rel) => Path::new(BOTTLE_DIR).join(rel),
        Err(_) => host_path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_and_paths_map_into_the_sidecar() {
        let s = SidecarSecrets {
            tokens: BTreeMap::from([(1, "tok-value-1".to_string())]),
            known: BTreeMap::from([("API".to_string(), "known-value-2".to_string())]),
            canary: Some("canary-value-3".into()),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("value"), "{shown}");
        assert_eq!(
            in_sidecar(Path::new("/h/state/x"), Path::new("/h/state/x/egress/routes.json")),
            Path::new("/bottle/egress/routes.json")
        );
    }
}
