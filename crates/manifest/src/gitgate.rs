//! The `git-gate` section: the git identity and the SSH upstream repos the
//! gate mirrors. Parsing and validation only; the gate itself lives elsewhere.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::ManifestError;
use crate::fields::{Ctx, get, join};
use crate::yaml::Node;

/// `git-gate.user`; each field is optional so layers can overlay field by field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GitUser {
    /// The author name of the agent's commits.
    pub name: Option<String>,
    /// Their email.
    pub email: Option<String>,
}

/// One repo as a layer writes it: fields optional, merged field by field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Repo {
    /// The upstream, `ssh://…`.
    pub url: Option<String>,
    /// Its host key (`type base64`); none: pinned on first use.
    pub host_key: Option<String>,
    /// The key git-gate pushes with.
    pub key: Option<RepoKey>,
    /// A push may rewrite a ref's history (non-fast-forward). Default no.
    pub allow_force_push: Option<bool>,
    /// A push may delete a ref upstream. Default no.
    pub allow_delete: Option<bool>,
}

/// How git-gate gets the key it pushes upstream with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum RepoKey {
    /// A private key file on the host, read by the gate only.
    Static {
        /// The key file (`~/` is the operator's home).
        path: String,
    },
    /// A deploy key minted at launch with the Gitea token named here.
    Gitea {
        /// The host variable holding the Gitea token that may add deploy keys.
        provisioner_token: String,
    },
}

pub(crate) fn parse_user(ctx: &Ctx, key: &str, node: &Node) -> Result<GitUser, ManifestError> {
    let entries = ctx.keyed_or_empty(key, node, &["name", "email"], &[])?;
    let mut user = GitUser::default();
    for (k, v) in entries {
        let value = ctx.string(&join(key, k), v)?;
        match k.as_str() {
            "name" => user.name = Some(value),
            "email" => user.email = Some(value),
            _ => unreachable!("check_keys admitted only known keys"),
        }
    }
    Ok(user)
}

pub(crate) fn parse_repos(ctx: &Ctx, key: &str, node: &Node) -> Result<BTreeMap<String, Repo>, ManifestError> {
    let mut repos = BTreeMap::new();
    for (name, value) in ctx.map_or_empty(key, node)? {
        let rkey = join(key, name);
        if !crate::is_valid_name(name) {
            return Err(ctx.at(
                value,
                &rkey,
                format!(
                    "{} repo name '{name}' must be lowercase letters, digits and '-', starting with a letter",
                    ctx.what
                ),
            ));
        }
        let entries = ctx.keyed(&rkey, value, &["url", "host_key", "key", "allow_force_push", "allow_delete"], &[])?;
        let mut repo = Repo::default();
        for (k, v) in entries {
            let fkey = join(&rkey, k);
            match k.as_str() {
                "url" => {
                    let url = ctx.string(&fkey, v)?;
                    ssh_host(&url).map_err(|why| ctx.at(v, &fkey, format!("{} `{fkey}` {why}", ctx.what)))?;
                    repo.url = Some(url);
                }
                "host_key" => {
                    let host_key = ctx.string(&fkey, v)?;
                    validate_host_key(&host_key)
                        .map_err(|why| ctx.at(v, &fkey, format!("{} `{fkey}` {why}", ctx.what)))?;
                    repo.host_key = Some(host_key);
                }
                "key" => repo.key = Some(parse_key(ctx, &fkey, v)?),
                "allow_force_push" => repo.allow_force_push = Some(ctx.bool(&fkey, v)?),
                "allow_delete" => repo.allow_delete = Some(ctx.bool(&fkey, v)?),
                _ => unreachable!("check_keys admitted only known keys"),
            }
        }
        repos.insert(name.clone(), repo);
    }
    Ok(repos)
}

fn parse_key(ctx: &Ctx, key: &str, node: &Node) -> Result<RepoKey, ManifestError> {
    let entries = ctx.keyed(key, node, &["provider", "path", "provisioner_token"], &[])?;
    let misplaced = |field: &str, owner: &str| {
        ctx.at(node, &join(key, field), format!("{} `{key}`: `{field}` is for provider {owner}", ctx.what))
    };
    let provider_node = ctx.required(key, node, entries, "provider", "use `provider: static` or `provider: gitea`")?;
    match ctx.string(&join(key, "provider"), provider_node)?.as_str() {
        "static" => {
            if get(entries, "provisioner_token").is_some() {
                return Err(misplaced("provisioner_token", "gitea"));
            }
            let path =
                ctx.required(key, node, entries, "path", "provider static needs `path`, the private key file")?;
            Ok(RepoKey::Static { path: ctx.string(&join(key, "path"), path)? })
        }
        "gitea" => {
            if get(entries, "path").is_some() {
                return Err(misplaced("path", "static"));
            }
            let hint = "provider gitea needs `provisioner_token`, the host variable holding a Gitea API token";
            let token = ctx.required(key, node, entries, "provisioner_token", hint)?;
            Ok(RepoKey::Gitea { provisioner_token: ctx.var_name(&join(key, "provisioner_token"), token)? })
        }
        other => Err(ctx.at(
            provider_node,
            &join(key, "provider"),
            format!("{} `{key}.provider` is '{other}'; use static or gitea", ctx.what),
        )),
    }
}

/// The host of an SSH upstream (`ssh://[user@]host[:port]/path` or scp-style
/// `[user@]host:path`); anything else is refused with the reason.
pub fn ssh_host(url: &str) -> Result<String, String> {
    let host = if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next().unwrap_or("");
        if rest.len() <= authority.len() + 1 {
            return Err(format!("'{url}' has no repository path"));
        }
        let host_port = authority.rsplit('@').next().unwrap_or("");
        host_port.split(':').next().unwrap_or("").to_string()
    } else if url.contains("://") {
        return Err(format!(
            "'{url}' is not an SSH URL; git-gate forwards over SSH only (ssh://git@host/path or git@host:path)"
        ));
    } else if let Some((authority, path)) = url.split_once(':') {
        if path.is_empty() || authority.contains('/') {
            return Err(format!("'{url}' is not an SSH URL (ssh://git@host/path or git@host:path)"));
        }
        authority.rsplit('@').next().unwrap_or("").to_string()
    } else {
        return Err(format!("'{url}' is not an SSH URL; a local path cannot be a git-gate upstream"));
    };
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    Ok(host)
}

fn validate_host_key(key: &str) -> Result<(), String> {
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("must be a public key line such as 'ssh-ed25519 AAAA…' (from ssh-keyscan)".to_string());
    };
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    if !known || blob.len() < 16 || !blob.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
        return Err("must be a public key line such as 'ssh-ed25519 AAAA…' (from ssh-keyscan)".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        assert_eq!(ssh_host("ssh://git@git.example.com:2222/acme/w.git").unwrap(), "git.example.com");
        assert_eq!(ssh_host("git@github.com:acme/w.git").unwrap(), "github.com");
        assert!(ssh_host("https://github.com/acme/w.git").is_err());
        assert!(ssh_host("/srv/git/w.git").is_err());
        assert!(ssh_host("ssh://git@host").is_err());
    }
}
