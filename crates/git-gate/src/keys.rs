//! Upstream keys. `provider: static` is a private key file on the host,
//! read by the gate only. `provider: gitea` mints an ed25519 pair at launch
//! (`ssh-keygen`), registers the public half as a deploy key through the
//! Gitea API with the bottle's provisioner token, and revokes it at
//! teardown (a key already gone, 404, counts as revoked; any other failure
//! is reported, never swallowed).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use secret::Secret;

use crate::ssh::SshUrl;

/// The environment variable that overrides a Gitea's API base URL (default
/// `https://<ssh host>`).
pub const GITEA_URL_ENV: &str = "BOT_BOTTLE_GITEA_URL";

/// Why a key could not be read, made, registered or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A repo's own key file could not be read.
    #[error("cannot read the key file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// `ssh-keygen` failed to make a pair.
    #[error("ssh-keygen failed: {0}")]
    Keygen(String),
    /// The Gitea API refused or failed a call.
    #[error("Gitea API {method} {url}: {message}")]
    Gitea {
        /// The HTTP method.
        method: &'static str,
        /// The URL (no token in it).
        url: String,
        /// What Gitea said, or why no answer came.
        message: String,
    },
}

/// A `static` key's file (`~/` expanded against `home`).
pub fn read_static(path: &str, home: Option<&Path>) -> Result<Secret<Vec<u8>>, KeyError> {
    let full: PathBuf = match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    };
    std::fs::read(&full)
        .map(Secret::new)
        .map_err(|e| KeyError::Read { path: full.display().to_string(), message: e.to_string() })
}

/// A fresh ed25519 pair: (OpenSSH private key, `ssh-ed25519 … comment`).
/// `work` is a private directory the pair is written to and removed from.
pub fn generate_ed25519(work: &Path, comment: &str) -> Result<(Secret<Vec<u8>>, String), KeyError> {
    let key = work.join(format!("keygen-{:016x}", rand::random::<u64>()));
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key)
        .output()
        .map_err(|e| KeyError::Keygen(format!("cannot run ssh-keygen (install openssh-client): {e}")))?;
    let public = key.with_extension("pub");
    let result = if out.status.success() {
        match (std::fs::read(&key), std::fs::read_to_string(&public)) {
            (Ok(private), Ok(public)) => Ok((Secret::new(private), public.trim().to_string())),
            (Err(e), _) | (_, Err(e)) => Err(KeyError::Keygen(e.to_string())),
        }
    } else {
        Err(KeyError::Keygen(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    };
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&public);
    result
}

/// A deploy key registered on a Gitea repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployKey {
    /// `owner/repo`.
    pub owner_repo: String,
    /// The key's id on the server.
    pub id: u64,
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The two Gitea API calls the gate needs.
pub struct GiteaApi {
    base: String,
    token: Secret<String>,
    client: Client,
}

impl std::fmt::Debug for GiteaApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GiteaApi").field("base", &self.base).finish_non_exhaustive()
    }
}

impl GiteaApi {
    /// The API of the Gitea serving `upstream`: [`GITEA_URL_ENV`] if set,
    /// else `https://<ssh host>`.
    pub fn for_upstream(upstream: &SshUrl, token: Secret<String>) -> Result<GiteaApi, KeyError> {
        let base = std::env::var(GITEA_URL_ENV).unwrap_or_else(|_| format!("https://{}", upstream.host));
        GiteaApi::new(&base, token)
    }

    /// The API at `base` (`https://host`), calling with `token`.
    pub fn new(base: &str, token: Secret<String>) -> Result<GiteaApi, KeyError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| KeyError::Gitea { method: "-", url: base.to_string(), message: e.to_string() })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(GiteaApi { base: base.trim_end_matches('/').to_string(), token, client })
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), KeyError> {
        let url = format!("{}/api/v1/{path}", self.base);
        let fail = |message: String| KeyError::Gitea { method, url: url.clone(), message };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("token {}", self.token.expose()))
            .header("accept", "application/json");
        let payload = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| fail(e.to_string()))?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| fail(e.to_string()))?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map_err(|e| fail(e.to_string()))?.to_bytes();
            Ok((status, bytes.to_vec()))
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), call)
            .await
            .map_err(|_| fail("no answer within 30 s".to_string()))?
    }

    /// Register `public_key` as a read-write deploy key of `owner_repo`.
    pub async fn create_deploy_key(
        &self,
        owner_repo: &str,
        title: &str,
        public_key: &str,
    ) -> Result<DeployKey, KeyError> {
        let path = format!("repos/{owner_repo}/keys");
        let body = serde_json::json!({"title": title, "key": public_key, "read_only": false});
        let (status, bytes) = self.call("POST", &path, Some(body)).await?;
        let url = format!("{}/api/v1/{path}", self.base);
        if status != 201 && status != 200 {
            return Err(KeyError::Gitea {
                method: "POST",
                url,
                message: format!("HTTP {status}: {}", excerpt(&bytes)),
            });
        }
        let id = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v["id"].as_u64()).ok_or_else(
            || KeyError::Gitea {
                method: "POST",
                url,
                message: format!("no key id in the answer: {}", excerpt(&bytes)),
            },
        )?;
        Ok(DeployKey { owner_repo: owner_repo.to_string(), id })
    }

    /// The deploy key of `owner_repo` titled `title`, if one is registered:
    /// how a key minted but not yet recorded (a crash between the two) is
    /// found again. Titles name the bottle and the repo, so one matches.
    pub async fn find_by_title(&self, owner_repo: &str, title: &str) -> Result<Option<DeployKey>, KeyError> {
        let path = format!("repos/{owner_repo}/keys");
        let (status, bytes) = self.call("GET", &path, None).await?;
        let url = format!("{}/api/v1/{path}", self.base);
        match status {
            200 => {}
            404 => return Ok(None),
            _ => {
                return Err(KeyError::Gitea {
                    method: "GET",
                    url,
                    message: format!("HTTP {status}: {}", excerpt(&bytes)),
                });
            }
        }
        let keys: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| KeyError::Gitea {
            method: "GET",
            url: url.clone(),
            message: format!("not a list of keys ({e}): {}", excerpt(&bytes)),
        })?;
        Ok(keys
            .iter()
            .find(|k| k["title"].as_str() == Some(title))
            .and_then(|k| k["id"].as_u64())
            .map(|id| DeployKey { owner_repo: owner_repo.to_string(), id }))
    }

    /// Revoke a deploy key; one already gone (404) is revoked.
    pub async fn revoke(&self, key: &DeployKey) -> Result<(), KeyError> {
        let path = format!("repos/{}/keys/{}", key.owner_repo, key.id);
        let (status, bytes) = self.call("DELETE", &path, None).await?;
        match status {
            200 | 204 | 404 => Ok(()),
            _ => Err(KeyError::Gitea {
                method: "DELETE",
                url: format!("{}/api/v1/{path}", self.base),
                message: format!("HTTP {status}: {}", excerpt(&bytes)),
            }),
        }
    }
}

/// The start of an error body, for a message.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(200).collect::<String>().trim().to_string()
}
