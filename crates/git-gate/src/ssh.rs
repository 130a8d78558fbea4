//! How the gate reaches an upstream over SSH: the URL's parts, the pinned
//! host key as the only known host, and the `ssh` command git runs.
//! Pure: paths in, strings out.

use std::path::Path;

/// An SSH upstream's parts: `ssh://[user@]host[:port]/path` or scp-style
/// `[user@]host:path` (port 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    /// The user (`git`), when given.
    pub user: Option<String>,
    /// The host.
    pub host: String,
    /// The port (22 when not given).
    pub port: u16,
    /// The repository path as written (no leading `/` for scp-style).
    pub path: String,
    /// Whether it was written `ssh://…`.
    pub url_form: bool,
}

impl SshUrl {
    /// Parse an upstream URL; the manifest already refused anything that
    /// is not SSH, so an error here names the URL.
    pub fn parse(url: &str) -> Result<SshUrl, String> {
        let bad = || format!("'{url}' is not an SSH URL (ssh://git@host[:port]/path or git@host:path)");
        if let Some(rest) = url.strip_prefix("ssh://") {
            let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
            let (user, host_port) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, authority),
            };
            let (host, port) = match host_port.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (host_port, 22),
            };
            if host.is_empty() || path.is_empty() {
                return Err(bad());
            }
            return Ok(SshUrl { user, host: host.to_string(), port, path: format!("/{path}"), url_form: true });
        }
        if url.contains("://") {
            return Err(bad());
        }
        let (authority, path) = url.split_once(':').ok_or_else(bad)?;
        let (user, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        if host.is_empty() || path.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(SshUrl { user, host: host.to_string(), port: 22, path: path.to_string(), url_form: false })
    }

    /// Both spellings of this upstream: `ssh://` and (when the port is 22)
    /// scp-style; what the agent's `insteadOf` rules must catch.
    pub fn spellings(&self) -> Vec<String> {
        let user = self.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let path = self.path.trim_start_matches('/');
        let mut out = Vec::new();
        if self.port == 22 {
            out.push(format!("ssh://{user}{}/{path}", self.host));
            out.push(format!("{user}{}:{path}", self.host));
        } else {
            out.push(format!("ssh://{user}{}:{}/{path}", self.host, self.port));
        }
        out
    }

    /// `owner/repo` (for forge APIs): the path without slashes at the ends
    /// or `.git`.
    pub fn owner_repo(&self) -> String {
        let p = self.path.trim_matches('/');
        p.strip_suffix(".git").unwrap_or(p).to_string()
    }

    /// The `known_hosts` line pinning `host_key` (`type base64 [comment]`)
    /// to this host and port.
    pub fn known_hosts_line(&self, host_key: &str) -> String {
        let mut parts = host_key.split_whitespace();
        let (kind, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let pattern = if self.port == 22 { self.host.clone() } else { format!("[{}]:{}", self.host, self.port) };
        format!("{pattern} {kind} {blob}\n")
    }
}

/// Seconds the gate waits for an upstream's SSH handshake.
pub const CONNECT_TIMEOUT_SECS: u32 = 10;

/// `GIT_SSH_COMMAND` for one upstream: no config files, only this key, only
/// the pinned host key, never a prompt.
pub fn ssh_command(identity: &Path, known_hosts: &Path) -> String {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    format!(
        "ssh -F /dev/null -o IdentitiesOnly=yes -o IdentityFile={} -o IdentityAgent=none \
         -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
         -o BatchMode=yes -o ConnectTimeout={CONNECT_TIMEOUT_SECS} -o LogLevel=ERROR",
        q(identity),
        q(known_hosts)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings() {
        let u = SshUrl::parse("ssh://git@git.example.com:2222/acme/widgets.git").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port, u.path.as_str()),
            (Some("git"), "git.example.com", 2222, "/acme/widgets.git")
        );
        assert_eq!(u.spellings(), ["ssh://git@git.example.com:2222/acme/widgets.git"]);
        assert_eq!(u.known_hosts_line("ssh-ed25519 AAAAC3 comment"), "[git.example.com]:2222 ssh-ed25519 AAAAC3\n");
        assert_eq!(u.owner_repo(), "acme/widgets");
        let s = SshUrl::parse("git@github.com:acme/widgets.git").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.path.as_str()), ("github.com", 22, "acme/widgets.git"));
        assert_eq!(s.spellings(), ["ssh://git@github.com/acme/widgets.git", "git@github.com:acme/widgets.git"]);
        assert_eq!(s.known_hosts_line("ssh-ed25519 AAAAC3"), "github.com ssh-ed25519 AAAAC3\n");
        for bad in ["https://x/y", "/local/path", "ssh://host", "ssh://host:port/x", "host:"] {
            assert!(SshUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ssh_command_pins_everything_and_quotes_paths() {
        let c = ssh_command(Path::new("/k/it's key"), Path::new("/k/known"));
        for opt in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "GlobalKnownHostsFile=/dev/null",
            "-F /dev/null",
        ] {
            assert!(c.contains(opt), "{c}");
        }
        assert!(c.contains(r"IdentityFile='/k/it'\''s key'"), "{c}");
    }
}
