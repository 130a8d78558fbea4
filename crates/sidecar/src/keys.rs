//! git-gate's keys for one bottle, on the host: a repo's own key copied
//! into the state dir (0600), or a Gitea deploy key minted for the bottle
//! through git-gate's ledger (on disk, fsynced, before the key exists), and
//! at the end revoking every key that ledger lists. The state dir holds the
//! private halves only while a session runs ([`forget_secrets`]).
//!
//! Not here: reading the host's environment (the caller passes the
//! provisioner token's value), or cancelling a mint (the caller's wait).

use std::path::Path;

use secret::Secret;

use crate::prepare::SECRETS_FILE;

/// git-gate's private keys, under the state dir: `NAME.key` per repo.
pub const GATE_KEYS_DIR: &str = "git-gate/keys";

/// The ledger of Gitea deploy keys minted for the bottle, under the state
/// dir: an entry is written before its key is minted and leaves once the
/// key is revoked.
pub const DEPLOY_KEYS_FILE: &str = "git-gate/deploy-keys.json";

/// A repo key that could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The repo's own key could not be read.
    #[error("git-gate.repos.{repo}: {message}")]
    Static {
        /// The manifest's name for the repo.
        repo: String,
        /// Why.
        message: String,
    },
    /// Minting (or writing ahead) a Gitea deploy key failed.
    #[error("git-gate.repos.{repo}: cannot mint a deploy key: {message}")]
    DeployKey {
        /// The manifest's name for the repo.
        repo: String,
        /// Why.
        message: String,
    },
    /// The state dir refused the key file.
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// A Gitea deploy key registered for the bottle (its ledger entry holds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedKey {
    /// The key's id on the server.
    pub id: u64,
    /// `owner/repo` it can push to.
    pub owner_repo: String,
}

/// What to mint a deploy key with.
#[derive(Debug)]
pub struct GiteaMint<'a> {
    /// The repo's upstream, `ssh://…`.
    pub url: &'a str,
    /// The host variable holding the provisioner token (recorded in the
    /// ledger: revoking asks the environment for it again).
    pub token_ref: &'a str,
    /// Its value.
    pub token: Secret<String>,
    /// The key title's start (a random suffix makes it unique).
    pub title_prefix: &'a str,
}

/// git-gate's keys in one bottle's state dir.
pub struct GateKeys<'a> {
    state: &'a state::StateDir,
    ledger: git_gate::ledger::Ledger,
}

impl<'a> GateKeys<'a> {
    /// The keys of the bottle whose state dir is `state`.
    pub fn new(state: &'a state::StateDir) -> GateKeys<'a> {
        GateKeys { state, ledger: git_gate::ledger::Ledger::at(state.path().join(DEPLOY_KEYS_FILE)) }
    }

    /// Copy `repo`'s own private key from `path` (`~/` is `home`) into the
    /// state dir; its path there, relative.
    pub fn copy_static(&self, repo: &str, path: &str, home: Option<&Path>) -> Result<String, KeyError> {
        let key = git_gate::keys::read_static(path, home)
            .map_err(|e| KeyError::Static { repo: repo.to_string(), message: e.to_string() })?;
        let key_file = key_file(repo);
        self.state.write_secret_file(&key_file, key.expose())?;
        Ok(key_file)
    }

    /// Mint a deploy key for `repo` on its Gitea: written ahead in the
    /// ledger, so no exit path (an error, Ctrl-C dropping this future, a
    /// killed process) leaves a registered key nobody knows to revoke. The
    /// private key's path under the state dir, and the key.
    pub async fn mint(&self, repo: &str, how: GiteaMint<'_>) -> Result<(String, MintedKey), KeyError> {
        let failed = |message: String| KeyError::DeployKey { repo: repo.to_string(), message };
        let upstream = git_gate::ssh::SshUrl::parse(how.url).map_err(failed)?;
        let api = git_gate::keys::GiteaApi::for_upstream(&upstream, how.token).map_err(|e| failed(e.to_string()))?;
        let what =
            git_gate::ledger::MintFor { repo, url: how.url, token_ref: how.token_ref, title_prefix: how.title_prefix };
        let work = self.state.component(GATE_KEYS_DIR)?;
        let (private, key) = self.ledger.mint(&api, &upstream, what, &work).await.map_err(|e| failed(e.to_string()))?;
        let key_file = key_file(repo);
        self.state.write_secret_file(&key_file, private.expose())?;
        Ok((key_file, MintedKey { id: key.id, owner_repo: key.owner_repo }))
    }
}

fn key_file(repo: &str) -> String {
    format!("{GATE_KEYS_DIR}/{repo}.key")
}

/// Whether the bottle at `state_dir` has deploy keys not yet revoked: its
/// ledger goes only once every key in it is (a state holding one must not
/// be deleted with it).
pub fn has_unrevoked_keys(state_dir: &Path) -> bool {
    state_dir.join(DEPLOY_KEYS_FILE).exists()
}

/// Revoke every deploy key the bottle's ledger lists, each with the token
/// `token(variable)` gives. One line per key for the operator (a failure
/// says what to remove by hand, and its entry stays); an unreadable ledger
/// stays on disk and is the error.
pub async fn revoke_deploy_keys(
    state_dir: &Path,
    token: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, git_gate::ledger::LedgerError> {
    let ledger = git_gate::ledger::Ledger::at(state_dir.join(DEPLOY_KEYS_FILE));
    Ok(git_gate::ledger::revoke_all(&ledger, token).await?.lines)
}

/// The session is over: the secret values the sidecar was given (tokens,
/// forwarded values, the canary) and git-gate's private keys leave the
/// state dir. A resume resolves and writes them again.
pub fn forget_secrets(state_dir: &Path) {
    // Best effort: absent is the usual case after a clean stop.
    let _ = std::fs::remove_file(state_dir.join(SECRETS_FILE));
    if let Ok(keys) = std::fs::read_dir(state_dir.join(GATE_KEYS_DIR)) {
        for key in keys.flatten() {
            let _ = std::fs::remove_file(key.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_static_key_is_copied_0600_and_forgotten_with_the_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let state = state::StateDir::create(&state::Home::new(tmp.path().join("home")), "b-1").unwrap();
        std::fs::write(tmp.path().join("id"), b"PRIVATE KEY").unwrap();
        let keys = GateKeys::new(&state);
        let file = keys.copy_static("widgets", "~/id", Some(tmp.path())).unwrap();
        assert_eq!(file, "git-gate/keys/widgets.key");
        let on_host = state.path().join(&file);
        assert_eq!(std::fs::read(&on_host).unwrap(), b"PRIVATE KEY");
        assert_eq!(std::fs::metadata(&on_host).unwrap().permissions().mode() & 0o777, 0o600);
        let missing = keys.copy_static("gadgets", "~/absent", Some(tmp.path())).unwrap_err();
        assert!(missing.to_string().starts_with("git-gate.repos.gadgets: "), "{missing}");
        state.write_secret_file(SECRETS_FILE, b"{}").unwrap();
        forget_secrets(state.path());
        assert!(!on_host.exists() && !state.path().join(SECRETS_FILE).exists());
        assert!(!has_unrevoked_keys(state.path()), "no ledger, nothing to revoke");
    }

    #[tokio::test]
    async fn a_mint_refused_before_any_request_leaves_no_ledger_entry_to_chase() {
        let tmp = tempfile::tempdir().unwrap();
        let state = state::StateDir::create(&state::Home::new(tmp.path()), "b-1").unwrap();
        let keys = GateKeys::new(&state);
        let how = GiteaMint {
            url: "https://not-ssh.example/w.git",
            token_ref: "TOKEN",
            token: Secret::new("t".into()),
            title_prefix: "bot-bottle b-1 widgets",
        };
        let e = keys.mint("widgets", how).await.unwrap_err();
        assert!(matches!(e, KeyError::DeployKey { ref repo, .. } if repo == "widgets"), "{e}");
        assert!(!has_unrevoked_keys(state.path()));
    }
}
