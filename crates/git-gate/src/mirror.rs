//! One declared repo: its bare mirror in the gate's directory, refreshed
//! from the upstream before a fetch, and the forward of a scanned push to
//! the upstream over SSH (pinned host key, one identity, no prompts).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::push_scan::RefUpdate;
use crate::ssh::{SshUrl, ssh_command};

/// How long an upstream fetch or push may take.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// A declared repo and where the gate keeps its pieces.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// The name the gate exposes (`/<name>.git`).
    pub name: String,
    /// The upstream URL as the manifest wrote it.
    pub upstream: String,
    /// The bare repository.
    pub path: PathBuf,
    /// The private key git's ssh uses (mode 0600).
    pub identity: PathBuf,
    /// A known_hosts file holding only the pinned host key.
    pub known_hosts: PathBuf,
    /// What a push may do to refs beyond adding history.
    pub policy: RefPolicy,
}

/// What a push may do to the upstream's refs beyond adding history
/// (`git-gate.repos.<name>.allow_force_push` / `allow_delete`). Both off
/// by default: an agent cannot wipe or rewrite upstream work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefPolicy {
    /// A push may rewrite a ref's history.
    pub allow_force_push: bool,
    /// A push may delete a ref.
    pub allow_delete: bool,
}

/// Something about the upstream failed; the text is for the agent.
/// Why a mirror could not be made, fetched or pushed upstream.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The upstream refused or could not be reached.
    #[error("upstream {url} unreachable or refused: {message}")]
    Upstream {
        /// The upstream.
        url: String,
        /// What git or ssh said.
        message: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream {url} did not answer within {secs} s")]
    Timeout {
        /// The upstream.
        url: String,
        /// The bound, in seconds.
        secs: u64,
    },
    /// A local git step failed.
    #[error("{0}")]
    Local(String),
}

impl Mirror {
    /// Lay out a mirror under `dir` for a repo: the bare repository, the
    /// identity (copied, 0600) and the pinned host key. The pre-receive
    /// hook runs `hook_command`. Idempotent.
    pub fn create(
        dir: &Path,
        name: &str,
        upstream: &str,
        host_key: &str,
        identity_pem: &[u8],
        hook_command: &str,
    ) -> Result<Mirror, MirrorError> {
        let local = |what: &str, e: std::io::Error| MirrorError::Local(format!("{what}: {e}"));
        let url = SshUrl::parse(upstream).map_err(MirrorError::Local)?;
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).map_err(|e| local("cannot create the key directory", e))?;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| local("cannot protect the key directory", e))?;
        let identity = keys.join(format!("{name}.key"));
        write_private(&identity, identity_pem).map_err(|e| local("cannot write the upstream key", e))?;
        let known_hosts = keys.join(format!("{name}.known_hosts"));
        std::fs::write(&known_hosts, url.known_hosts_line(host_key))
            .map_err(|e| local("cannot write the pinned host key", e))?;
        let path = dir.join("mirrors").join(format!("{name}.git"));
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(&path).map_err(|e| local("cannot create the mirror", e))?;
            run_sync(&path, &["init", "--quiet", "--bare"])?;
        }
        // Mirror branches and tags; the agent's pushes land in the same refs.
        run_sync(&path, &["config", "remote.origin.url", upstream])?;
        run_sync(&path, &["config", "--replace-all", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"])?;
        run_sync(&path, &["config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*"])?;
        run_sync(&path, &["config", "receive.denyDeleteCurrent", "false"])?;
        run_sync(&path, &["config", "uploadpack.allowFilter", "true"])?;
        let hook = path.join("hooks").join("pre-receive");
        std::fs::create_dir_all(path.join("hooks")).map_err(|e| local("cannot create hooks", e))?;
        std::fs::write(&hook, format!("#!/bin/sh\nexec {hook_command}\n"))
            .map_err(|e| local("cannot write hook", e))?;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| local("cannot make the hook executable", e))?;
        Ok(Mirror {
            name: name.to_string(),
            upstream: upstream.to_string(),
            path,
            identity,
            known_hosts,
            policy: RefPolicy::default(),
        })
    }

    /// The same mirror under `policy`.
    pub fn with_policy(self, policy: RefPolicy) -> Mirror {
        Mirror { policy, ..self }
    }

    fn git(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("git");
        c.arg("-C")
            .arg(&self.path)
            .env("GIT_SSH_COMMAND", ssh_command(&self.identity, &self.known_hosts))
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true);
        c
    }

    /// `git fetch origin --prune`: the mirror matches the upstream. The
    /// mirror's `HEAD` follows the upstream's default branch when it does
    /// not name a branch the mirror has (a fresh mirror, a renamed branch).
    pub async fn refresh(&self) -> Result<(), MirrorError> {
        let mut c = self.git();
        c.args(["fetch", "--quiet", "--prune", "origin"]);
        self.upstream_run(c).await?;
        let mut head = self.git();
        head.args(["rev-parse", "--verify", "-q", "HEAD"]);
        if head.output().await.is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        let mut c = self.git();
        c.args(["ls-remote", "--symref", "origin", "HEAD"]);
        let listing = self.upstream_run(c).await?;
        let target =
            listing.lines().find_map(|l| l.strip_prefix("ref: ")?.split_once('\t').map(|(r, _)| r.to_string()));
        if let Some(target) = target.filter(|t| t.starts_with("refs/heads/")) {
            let mut c = self.git();
            c.args(["symbolic-ref", "HEAD", &target]);
            let _ = c.output().await;
        }
        Ok(())
    }

    /// Send `updates` upstream, atomically, each only if the upstream still
    /// has the value the agent's push replaced (a lease): the gate never
    /// overwrites upstream work the agent did not see. `env` is the push's
    /// quarantine, where the new objects are. Returns git's report.
    pub async fn forward(&self, updates: &[RefUpdate], env: &[(String, String)]) -> Result<String, MirrorError> {
        let mut c = self.git();
        c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.args(["push", "--porcelain", "--atomic"]);
        for u in updates {
            let expect = if u.is_create() { String::new() } else { u.old.clone() };
            c.arg(format!("--force-with-lease={}:{expect}", u.name));
        }
        c.arg(&self.upstream);
        for u in updates {
            c.arg(if u.is_delete() { format!(":{}", u.name) } else { format!("{}:{}", u.new, u.name) });
        }
        self.upstream_run(c).await
    }

    async fn upstream_run(&self, mut c: tokio::process::Command) -> Result<String, MirrorError> {
        c.stdin(std::process::Stdio::null());
        let out = match tokio::time::timeout(UPSTREAM_TIMEOUT, c.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(MirrorError::Local(format!("cannot run git: {e}"))),
            Err(_) => {
                return Err(MirrorError::Timeout { url: self.upstream.clone(), secs: UPSTREAM_TIMEOUT.as_secs() });
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = [stdout.trim(), stderr.trim()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>();
        Err(MirrorError::Upstream { url: self.upstream.clone(), message: message.join("\n") })
    }
}

fn run_sync(dir: &Path, args: &[&str]) -> Result<(), MirrorError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| MirrorError::Local(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(MirrorError::Local(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Write a file only its owner can read.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    // ssh refuses a key without a final newline in some versions.
    if !data.ends_with(b"\n") {
        f.write_all(b"\n")?;
    }
    Ok(())
}
