//! The host's half of the contract: what the sidecar will read, prepared as
//! a value ([`SidecarFiles::prepare`]: pure, from values the host has
//! already resolved — the route file's text, the secrets, the repos whose
//! keys are in the state dir) and written into a bottle's state dir in one
//! step ([`SidecarFiles::write`]). The route changes approved in earlier
//! sessions are applied again to the route file here
//! ([`reapply_route_edits`]); git-gate's keys are put in place by
//! [`crate::keys`]. Reading the host's environment and logins is the
//! backend's.

use std::path::{Path, PathBuf};

use crate::config::{
    EgressConfig, GateConfig, GateRepo, RUN_DIR, SidecarConfig, SidecarSecrets, SuperviseConfig, in_sidecar,
};

/// The route file, under the state dir.
pub const ROUTES_FILE: &str = "egress/routes.json";
/// The bottle CA (`ca.pem`, `ca.key`), under the state dir.
pub const CA_DIR: &str = "egress";
/// The secrets file (0600), under the state dir.
pub const SECRETS_FILE: &str = "sidecar-secrets.json";
/// The config, under the state dir.
pub const CONFIG_FILE: &str = "sidecar.json";
/// git-gate's mirrors, keys and hook socket, under the state dir.
pub const GATE_DIR: &str = "git-gate";
/// How long an agent's call to the operator may wait: 30 minutes.
pub const TOOL_TIMEOUT_SECS: u64 = 30 * 60;

pub use supervise::KeptRouteEdit;

/// Apply the route changes approved in earlier sessions (a resume) over
/// the route file `text`, in the order they were approved, and audit each
/// in the bottle's store (at `state_dir`, as `identity`). One that no
/// longer applies (its route left the manifest) is skipped, told to
/// `skipped` and audited as such; the others still apply.
pub fn reapply_route_edits(
    state_dir: &Path,
    identity: &str,
    kept: &[KeptRouteEdit],
    mut text: String,
    skipped: &mut dyn FnMut(&str),
) -> Result<String, supervise::StoreError> {
    if kept.is_empty() {
        return Ok(text);
    }
    let store = supervise::ProposalStore::open(&supervise::store_path(state_dir), identity)?;
    for kept in kept {
        match routes::edit(&text, &kept.edit) {
            Ok(edited) => {
                text = edited.text;
                store.audit_route_reapplied(kept, Ok(()))?;
            }
            Err(e) => {
                skipped(&format!("approved route change {} is not applied again: {e}", kept.edit.summary()));
                store.audit_route_reapplied(kept, Err(&e.to_string()))?;
            }
        }
    }
    Ok(text)
}

/// A repo git-gate serves, its private key already written (0600) at
/// `key_file` under the state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRepoFile {
    /// The repo's name in the bottle.
    pub name: String,
    /// The upstream, `ssh://…`.
    pub url: String,
    /// The upstream's pinned host key.
    pub host_key: String,
    /// The private key's path under the state dir.
    pub key_file: String,
    /// Whether a push may rewrite upstream history.
    pub allow_force_push: bool,
    /// Whether a push may delete an upstream ref.
    pub allow_delete: bool,
}

/// What the host resolved for one bottle's sidecar.
#[derive(Debug)]
pub struct SidecarInputs {
    /// The bottle's identity.
    pub identity: String,
    /// The route file's text: rendered, approved changes re-applied.
    pub routes: String,
    /// Token values by slot, the known values, the canary.
    pub secrets: SidecarSecrets,
    /// The repos git-gate serves.
    pub repos: Vec<GateRepoFile>,
    /// Host names the MCP endpoint accepts besides loopback.
    pub allowed_hosts: Vec<String>,
}

/// Everything the sidecar reads, as it will be written.
#[derive(Debug)]
pub struct SidecarFiles {
    /// The route file's text.
    pub routes: String,
    /// The secrets file's content.
    pub secrets: SidecarSecrets,
    /// Paths in it are the sidecar's (the state dir at [`crate::config::BOTTLE_DIR`]).
    pub config: SidecarConfig,
}

/// A file the host could not write for its sidecar.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state dir refused a directory or the secrets file.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Never written half: a file the sidecar cannot read is an error now,
    /// not a bottle without its tokens.
    #[error("cannot serialise the sidecar's {what}: {source}")]
    Serialise {
        /// Which file.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl SidecarFiles {
    /// The files for the bottle whose state dir is `state_dir`.
    pub fn prepare(state_dir: &Path, inputs: SidecarInputs) -> SidecarFiles {
        let inside = |relative: &str| in_sidecar(state_dir, &state_dir.join(relative));
        let repos: Vec<GateRepo> = inputs
            .repos
            .into_iter()
            .map(|r| GateRepo {
                key: inside(&r.key_file),
                name: r.name,
                url: r.url,
                host_key: r.host_key,
                allow_force_push: r.allow_force_push,
                allow_delete: r.allow_delete,
            })
            .collect();
        let config = SidecarConfig {
            identity: inputs.identity,
            run_dir: PathBuf::from(RUN_DIR),
            egress: EgressConfig { routes: inside(ROUTES_FILE), ca_dir: inside(CA_DIR) },
            git_gate: (!repos.is_empty()).then(|| GateConfig { dir: inside(GATE_DIR), repos }),
            supervise: SuperviseConfig {
                store: in_sidecar(state_dir, &supervise::store_path(state_dir)),
                tool_timeout_secs: TOOL_TIMEOUT_SECS,
                allowed_hosts: inputs.allowed_hosts,
            },
            secrets: inside(SECRETS_FILE),
        };
        SidecarFiles { routes: inputs.routes, secrets: inputs.secrets, config }
    }

    /// Write them into `state` (the secrets file 0600, the directories the
    /// sidecar writes in created); the config's path on the host.
    pub fn write(&self, state: &state::StateDir) -> Result<PathBuf, WriteError> {
        let dir = state.path();
        let secrets =
            serde_json::to_vec(&self.secrets).map_err(|source| WriteError::Serialise { what: "secrets", source })?;
        let config = serde_json::to_vec_pretty(&self.config)
            .map_err(|source| WriteError::Serialise { what: "config", source })?;
        let write = |relative: &str, bytes: &[u8]| {
            let path = dir.join(relative);
            std::fs::write(&path, bytes).map_err(|source| WriteError::Io { path, source })
        };
        state.component(CA_DIR)?;
        write(ROUTES_FILE, self.routes.as_bytes())?;
        state.write_secret_file(SECRETS_FILE, &secrets)?;
        state.component("supervise")?;
        state.component("sidecar-home")?;
        write(CONFIG_FILE, &config)?;
        Ok(dir.join(CONFIG_FILE))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn inputs(repos: Vec<GateRepoFile>) -> SidecarInputs {
        SidecarInputs {
            identity: "b-1".into(),
            routes: "{\"version\": 1}\n".into(),
            secrets: SidecarSecrets {
                tokens: BTreeMap::from([(1, "token-value-Qx81".into())]),
                known: BTreeMap::from([("API".into(), "known-value-Zp27".into())]),
                canary: Some("canary-value-Lm93".into()),
            },
            repos,
            allowed_hosts: vec!["10.1.2.3".into()],
        }
    }

    #[test]
    fn paths_are_the_sidecars_and_no_value_is_in_the_config() {
        let repo = GateRepoFile {
            name: "widgets".into(),
            url: "ssh://git@example.com/w.git".into(),
            host_key: "ssh-ed25519 AAAA".into(),
            key_file: "git-gate/keys/widgets.key".into(),
            allow_force_push: false,
            allow_delete: true,
        };
        let files = SidecarFiles::prepare(Path::new("/h/state/b-1"), inputs(vec![repo]));
        let c = &files.config;
        assert_eq!(c.egress.routes, Path::new("/bottle/egress/routes.json"));
        assert_eq!(c.egress.ca_dir, Path::new("/bottle/egress"));
        assert_eq!(c.secrets, Path::new("/bottle/sidecar-secrets.json"));
        assert_eq!(c.run_dir, Path::new(RUN_DIR));
        let gate = c.git_gate.as_ref().unwrap();
        assert_eq!(gate.dir, Path::new("/bottle/git-gate"));
        assert_eq!(gate.repos[0].key, Path::new("/bottle/git-gate/keys/widgets.key"));
        assert!(gate.repos[0].allow_delete && !gate.repos[0].allow_force_push);
        assert!(c.supervise.store.starts_with("/bottle/"));
        let json = serde_json::to_string(c).unwrap();
        for value in ["token-value-Qx81", "known-value-Zp27", "canary-value-Lm93"] {
            assert!(!json.contains(value), "{value} in sidecar.json");
        }
        let none = SidecarFiles::prepare(Path::new("/h/state/b-1"), inputs(Vec::new()));
        assert!(none.config.git_gate.is_none(), "no repos, no git-gate");
    }

    #[test]
    fn approved_route_changes_apply_again_in_order_and_each_is_audited() {
        let tmp = tempfile::tempdir().unwrap();
        let state = state::StateDir::create(&state::Home::new(tmp.path()), "b-1").unwrap();
        let route = |host: &str| routes::RouteSpec {
            route: manifest::Route {
                host: host.into(),
                auth: None,
                matches: Vec::new(),
                dlp: Default::default(),
                git: Default::default(),
                ports: Vec::new(),
                allow_private: false,
            },
            auth: None,
            on_match: manifest::OnMatch::Block,
            provider: false,
        };
        let text = routes::render(&[route("a.example"), route("b.example")], 0).text;
        let kept = |id: i64, host: &str| KeptRouteEdit {
            proposal_id: Some(id),
            at: "2026-12-07T00:00:00Z".into(),
            edit: routes::RouteEdit::Block { host: host.into() },
        };
        let mut said = Vec::new();
        let edited = reapply_route_edits(
            state.path(),
            "b-1",
            &[kept(1, "a.example"), kept(2, "gone.example")],
            text,
            &mut |line| said.push(line.to_string()),
        )
        .unwrap();
        assert!(!edited.contains("a.example") && edited.contains("b.example"), "{edited}");
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("gone.example"), "{said:?}");
        let store = supervise::ProposalStore::open(&supervise::store_path(state.path()), "b-1").unwrap();
        let audited: Vec<_> = store
            .audit()
            .unwrap()
            .into_iter()
            .filter(|a| a.event == "route-reapplied")
            .map(|a| a.proposal_id)
            .collect();
        assert_eq!(audited, [Some(1), Some(2)]);
    }

    #[test]
    fn written_files_are_what_the_sidecar_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let state = state::StateDir::create(&state::Home::new(tmp.path()), "b-1").unwrap();
        let files = SidecarFiles::prepare(state.path(), inputs(Vec::new()));
        let config_path = files.write(&state).unwrap();
        let config: SidecarConfig = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        assert_eq!(config, files.config);
        let secrets = state.path().join(SECRETS_FILE);
        assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o600);
        let read: SidecarSecrets = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
        assert_eq!(read.tokens[&1], "token-value-Qx81");
        assert_eq!(std::fs::read_to_string(state.path().join(ROUTES_FILE)).unwrap(), files.routes);
        assert!(state.path().join("sidecar-home").is_dir() && state.path().join("supervise").is_dir());
    }
}
