//! The deploy-key ledger: every Gitea deploy key the launch or the
//! standalone gate mints is written here — on disk and fsynced — *before*
//! it is minted, and its id after. Whatever ends the run (the next repo
//! failing, a write error, Ctrl-C, a SIGKILL), the ledger lists every key
//! that may be registered, and [`revoke_all`] revokes them: by id, or for a
//! key minted but not yet recorded, found by its title. An entry that could
//! not be revoked stays listed; a ledger that cannot be read stays on disk
//! and is an error that says what to revoke by hand. Never read as empty.

use std::path::{Path, PathBuf};

use secret::Secret;
use serde::{Deserialize, Serialize};

use crate::keys::{DeployKey, GiteaApi, KeyError};
use crate::ssh::SshUrl;

/// One key the ledger answers for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The manifest's name for the repo.
    pub repo: String,
    /// The upstream SSH URL (the Gitea the key is registered on).
    pub url: String,
    /// `owner/repo` on the server.
    pub owner_repo: String,
    /// The key's title on Gitea: how an unrecorded key is found again.
    #[serde(default)]
    pub title: String,
    /// The host variable holding the provisioner token that can revoke it.
    pub token_ref: String,
    /// Known once Gitea answered the registration.
    #[serde(default)]
    pub id: Option<u64>,
}

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// It is there but not a ledger: it stays on disk, and the message says
    /// what to revoke by hand.
    #[error(
        "cannot read the deploy-key ledger {path} ({message}); it lists Gitea deploy keys that may still be \
         registered: revoke every key titled 'bot-bottle …' on the repos it names by hand, then delete the file"
    )]
    Corrupt {
        /// The ledger.
        path: String,
        /// Why it cannot be read.
        message: String,
    },
    /// It could not be written (before a mint: no key was minted).
    #[error("cannot write the deploy-key ledger {path}: {message}; no key was minted")]
    Write {
        /// The ledger.
        path: String,
        /// Why.
        message: String,
    },
}

/// The ledger file at one path.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The ledger at `path` (it may not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> Ledger {
        Ledger { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry; none when there is no file. A file that does not parse
    /// is an error, never "no keys".
    pub fn entries(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        let corrupt = |message: String| LedgerError::Corrupt { path: self.path.display().to_string(), message };
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(corrupt(e.to_string())),
        }
    }

    /// Record a key about to be minted (no id yet). Call before minting,
    /// with a title from [`unique_title`]: an entry an earlier, killed run
    /// left stays beside it.
    pub fn intend(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let mut entries = self.entries_for_write()?;
        entries.push(entry);
        self.write(&entries)
    }

    /// Record the id Gitea gave the key titled `title` on `owner_repo`.
    pub fn minted(&self, owner_repo: &str, title: &str, id: u64) -> Result<(), LedgerError> {
        let mut entries = self.entries_for_write()?;
        for e in entries.iter_mut().filter(|e| e.title == title && e.owner_repo == owner_repo) {
            e.id = Some(id);
        }
        self.write(&entries)
    }

    fn entries_for_write(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.entries().map_err(|e| LedgerError::Write { path: self.path.display().to_string(), message: e.to_string() })
    }

    /// Replace the file whole (temporary file, fsync, rename, fsync of the
    /// directory): a crash leaves the old ledger or the new, never half.
    /// No entries: no file.
    fn write(&self, entries: &[LedgerEntry]) -> Result<(), LedgerError> {
        let fail =
            |e: std::io::Error| LedgerError::Write { path: self.path.display().to_string(), message: e.to_string() };
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
                _ => Ok(()),
            };
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let text = serde_json::to_vec_pretty(entries)
            .map_err(|e| LedgerError::Write { path: self.path.display().to_string(), message: e.to_string() })?;
        let partial = self.path.with_extension("partial");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&partial).map_err(fail)?;
            f.write_all(&text).map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        std::fs::rename(&partial, &self.path).map_err(fail)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
    }
}

/// A deploy key title no other mint shares (`PREFIX <random>`): what finds
/// a key minted but not recorded, so it must name one key only — a resume
/// or a rerun mints under a new one.
pub fn unique_title(prefix: &str) -> String {
    format!("{prefix} {:08x}", rand::random::<u32>())
}

/// Why [`Ledger::mint`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The entry could not be written ahead (nothing was minted) or completed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Making or registering the key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// What to mint a deploy key for (see [`Ledger::mint`]).
#[derive(Debug, Clone, Copy)]
pub struct MintFor<'a> {
    /// The manifest's name for the repo.
    pub repo: &'a str,
    /// Its upstream SSH URL.
    pub url: &'a str,
    /// The host variable with the provisioner token.
    pub token_ref: &'a str,
    /// The title's start; a random suffix makes it unique.
    pub title_prefix: &'a str,
}

impl Ledger {
    /// Mint a deploy key, the one way the launch and the standalone gate do
    /// it: a fresh ed25519 pair in `work` under a unique title, the ledger
    /// entry written ahead, the key registered, its id recorded. The private
    /// half and the key.
    pub async fn mint(
        &self,
        api: &GiteaApi,
        upstream: &SshUrl,
        what: MintFor<'_>,
        work: &Path,
    ) -> Result<(Secret<Vec<u8>>, DeployKey), MintError> {
        let title = unique_title(what.title_prefix);
        let (private, public) = crate::keys::generate_ed25519(work, &title)?;
        self.intend(LedgerEntry {
            repo: what.repo.to_string(),
            url: what.url.to_string(),
            owner_repo: upstream.owner_repo(),
            title: title.clone(),
            token_ref: what.token_ref.to_string(),
            id: None,
        })?;
        let key = api.create_deploy_key(&upstream.owner_repo(), &title, &public).await?;
        self.minted(&key.owner_repo, &title, key.id)?;
        Ok((private, key))
    }
}

/// What [`revoke_all`] did: one line per key for the operator, and whether
/// every key is gone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// One line per key for the operator.
    pub lines: Vec<String>,
    /// Whether every key is gone.
    pub all: bool,
}

/// Revoke every key the ledger lists, with the token `token(token_ref)`
/// gives (the host environment). Revoked and never-minted entries leave
/// the ledger; the others stay, each with a line saying to remove it by
/// hand.
pub async fn revoke_all(ledger: &Ledger, token: &dyn Fn(&str) -> Option<String>) -> Result<Revoked, LedgerError> {
    let entries = ledger.entries()?;
    let mut remaining = Vec::new();
    let mut out = Revoked { lines: Vec::new(), all: true };
    for entry in entries {
        match revoke_one(&entry, token).await {
            Ok(Some(id)) => out.lines.push(format!("revoked deploy key {id} on {}", entry.owner_repo)),
            Ok(None) => {}
            Err(e) => {
                out.all = false;
                let which = entry.id.map(|i| format!("{i}")).unwrap_or_else(|| format!("titled '{}'", entry.title));
                out.lines.push(format!(
                    "REVOKE FAILED for deploy key {which} on {}; remove it by hand: {e}",
                    entry.owner_repo
                ));
                remaining.push(entry);
            }
        }
    }
    ledger.write(&remaining)?;
    Ok(out)
}

/// The id revoked; `None` when the key was never minted (no id recorded,
/// none registered under its title).
async fn revoke_one(entry: &LedgerEntry, token: &dyn Fn(&str) -> Option<String>) -> Result<Option<u64>, String> {
    let value = token(&entry.token_ref).ok_or_else(|| format!("{} is not set in this environment", entry.token_ref))?;
    let upstream = SshUrl::parse(&entry.url)?;
    let api = GiteaApi::for_upstream(&upstream, Secret::new(value)).map_err(|e: KeyError| e.to_string())?;
    let key = match entry.id {
        Some(id) => DeployKey { owner_repo: entry.owner_repo.clone(), id },
        None => match api.find_by_title(&entry.owner_repo, &entry.title).await.map_err(|e| e.to_string())? {
            Some(key) => key,
            None => return Ok(None),
        },
    };
    api.revoke(&key).await.map_err(|e| e.to_string())?;
    Ok(Some(key.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(repo: &str, id: Option<u64>) -> LedgerEntry {
        LedgerEntry {
            repo: repo.into(),
            url: format!("git@gitea.example:acme/{repo}.git"),
            owner_repo: format!("acme/{repo}"),
            title: format!("bot-bottle dev-abcde {repo}"),
            token_ref: "GITEA_TOKEN".into(),
            id,
        }
    }

    #[test]
    fn written_ahead_then_completed_and_strict_to_read() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::at(dir.path().join("git-gate/deploy-keys.json"));
        assert!(ledger.entries().unwrap().is_empty());
        ledger.intend(entry("widgets", None)).unwrap();
        // On disk before any key exists.
        assert_eq!(Ledger::at(ledger.path()).entries().unwrap(), [entry("widgets", None)]);
        ledger.minted("acme/widgets", "bot-bottle dev-abcde widgets", 42).unwrap();
        ledger.intend(entry("gadgets", None)).unwrap();
        assert_eq!(ledger.entries().unwrap(), [entry("widgets", Some(42)), entry("gadgets", None)]);
        // The previous format (no title) still reads.
        std::fs::write(
            ledger.path(),
            r#"[{"repo": "w", "url": "git@h:a/w.git", "owner_repo": "a/w", "id": 7, "token_ref": "T"}]"#,
        )
        .unwrap();
        assert_eq!(ledger.entries().unwrap()[0].id, Some(7));
        // Unreadable: an error that says what to do, and nothing is
        // written over it.
        std::fs::write(ledger.path(), "[{not json").unwrap();
        let e = ledger.entries().unwrap_err().to_string();
        assert!(e.contains("revoke every key titled 'bot-bottle …'") && e.contains("by hand"), "{e}");
        assert!(ledger.intend(entry("x", None)).is_err());
        assert_eq!(std::fs::read_to_string(ledger.path()).unwrap(), "[{not json");
    }
}
