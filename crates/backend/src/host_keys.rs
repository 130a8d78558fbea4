//! Upstream SSH host keys for git-gate repos whose manifest pins none (the
//! original bot-bottle makes `host_key` optional): fetched on first use
//! with `ssh-keyscan`, kept in the bottle's state
//! (`git-gate/host-keys.json`), and pinned exactly for the bottle's life. A
//! resume uses the kept key, and a key the upstream now offers instead is an
//! error naming both fingerprints. A `host_key` in the manifest always wins
//! and is the stronger choice: first use trusts whatever answered then.
//!
//! The choice and the comparison are functions over data ([`choose`],
//! [`pin`]); running `ssh-keyscan` and the state file sit at the edge.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the first-use keys are kept, in the bottle's state dir.
pub const FILE: &str = "git-gate/host-keys.json";

/// Where a repo's pinned key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `git-gate.repos.NAME.host_key`.
    Manifest,
    /// Fetched now, on first use; kept when the launch writes its state.
    FirstUse,
    /// Kept from the first use (`at`).
    Kept {
        /// When it was first pinned.
        at: String,
    },
}

/// A repo's pinned host key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinned {
    /// `type base64` as known_hosts holds it.
    pub key: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// Where the key came from.
    pub source: Source,
}

/// One kept key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptKey {
    /// The upstream, `host:port`.
    pub upstream: String,
    /// Its host key, `type base64`.
    pub key: String,
    /// When it was first pinned.
    pub at: String,
}

/// `SHA256:<unpadded base64 of the key blob's SHA-256>`.
pub fn fingerprint(key: &str) -> Result<String, String> {
    let blob = key.split_whitespace().nth(1).ok_or_else(|| format!("'{key}' is not a public key line"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|e| format!("the key's base64 does not decode: {e}"))?;
    Ok(format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&raw))))
}

/// The key to pin from `ssh-keyscan` output: the strongest type offered
/// (ed25519, then ECDSA, then RSA), as `type base64`.
pub fn choose(keyscan: &str) -> Option<String> {
    let offered: Vec<(String, String)> = keyscan
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_host, kind, blob) = (parts.next()?, parts.next()?, parts.next()?);
            Some((kind.to_string(), blob.to_string()))
        })
        .collect();
    let rank = |kind: &str| match kind {
        "ssh-ed25519" => 0,
        k if k.starts_with("ecdsa-sha2-") => 1,
        "rsa-sha2-512" | "rsa-sha2-256" | "ssh-rsa" => 2,
        _ => 3,
    };
    offered.into_iter().filter(|(k, _)| rank(k) < 3).min_by_key(|(k, _)| rank(k)).map(|(k, b)| format!("{k} {b}"))
}

/// Decide the pin for one repo: the kept key when there is one (checked
/// against what the upstream offers `now`, when it answered), else what it
/// offers now.
pub fn pin(repo: &str, upstream: &str, kept: Option<&KeptKey>, now: Result<String, String>) -> Result<Pinned, String> {
    match (kept, now) {
        (Some(k), Ok(now)) if same_key(&k.key, &now) => Ok(Pinned {
            fingerprint: fingerprint(&k.key)?,
            key: k.key.clone(),
            source: Source::Kept { at: k.at.clone() },
        }),
        (Some(k), Ok(now)) => Err(format!(
            "git-gate.repos.{repo}: the host key of {upstream} changed: pinned on first use ({}) {}, offered now {}. \
             If you expect the change, set git-gate.repos.{repo}.host_key to the new key, or remove {FILE} from the bottle's state",
            k.at,
            fingerprint(&k.key)?,
            fingerprint(&now)?
        )),
        // Unreachable now: the kept key still pins (ssh checks it).
        (Some(k), Err(_)) => Ok(Pinned {
            fingerprint: fingerprint(&k.key)?,
            key: k.key.clone(),
            source: Source::Kept { at: k.at.clone() },
        }),
        (None, Ok(now)) => Ok(Pinned { fingerprint: fingerprint(&now)?, key: now, source: Source::FirstUse }),
        (None, Err(e)) => Err(format!(
            "git-gate.repos.{repo} has no host_key and the host key of {upstream} could not be fetched ({e}); \
             set host_key to the upstream's key (ssh-keyscan -p PORT HOST)"
        )),
    }
}

fn same_key(a: &str, b: &str) -> bool {
    let parts = |k: &str| k.split_whitespace().take(2).map(str::to_string).collect::<Vec<_>>();
    parts(a) == parts(b)
}

/// What the upstream `host:port` offers now (`ssh-keyscan`, bounded).
pub fn fetch(host: &str, port: u16) -> Result<String, String> {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "10", "-p", &port.to_string(), "-t", "ed25519,ecdsa,rsa", host])
        .output()
        .map_err(|e| format!("cannot run ssh-keyscan: {e}; install openssh-client"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    choose(&text).ok_or_else(|| {
        let why = String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no answer").trim().to_string();
        format!("ssh-keyscan {host}:{port} found no key: {why}")
    })
}

/// The kept keys of the bottle whose state is `state_dir`.
pub fn read_kept(state_dir: &Path) -> Result<BTreeMap<String, KeptKey>, String> {
    let path = state_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            format!("{}: {e}; it pins the upstreams' host keys: fix it, or remove it to pin again", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Keep the keys pinned on first use, beside those kept before.
pub fn write_kept(state_dir: &Path, pinned: &BTreeMap<String, (String, Pinned)>, at: &str) -> Result<(), String> {
    // Nothing pinned on first use: nothing to keep, no file written.
    if !pinned.values().any(|(_, p)| p.source == Source::FirstUse) {
        return Ok(());
    }
    let mut kept = read_kept(state_dir)?;
    for (repo, (upstream, p)) in pinned {
        if p.source == Source::FirstUse {
            kept.insert(repo.clone(), KeptKey { upstream: upstream.clone(), key: p.key.clone(), at: at.to_string() });
        }
    }
    let path = state_dir.join(FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_vec_pretty(&kept).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbXo7pgbcUKp1nC1ZbWyhLiSpmXd6mAeWUwxUaTeTa3";
    const OTHER: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOw1pSyBPo2TXLUPfSQzjc3bGnkA9TJiWxuiVPlf0EMS";

    #[test]
    fn the_strongest_offered_key_is_chosen() {
        let scan = format!(
            "# git.example.com:22 SSH-2.0-OpenSSH_9.2\n[git.example.com]:2222 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ\n\
             [git.example.com]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY\n[git.example.com]:2222 {ED}\n"
        );
        assert_eq!(choose(&scan).as_deref(), Some(ED));
        assert_eq!(choose("# nothing\n"), None);
        assert!(choose("h ssh-rsa AAAAB3NzaC1yc2E\n").unwrap().starts_with("ssh-rsa "));
    }

    #[test]
    fn first_use_keys_are_kept_and_read_back_and_others_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_kept(dir.path()).unwrap().is_empty());
        let first = pin("w", "h:22", None, Ok(ED.into())).unwrap();
        let manifest = Pinned { key: OTHER.into(), fingerprint: fingerprint(OTHER).unwrap(), source: Source::Manifest };
        let pinned = BTreeMap::from([
            ("w".to_string(), ("h:22".to_string(), first)),
            ("m".to_string(), ("h:22".to_string(), manifest)),
        ]);
        write_kept(dir.path(), &pinned, "2026-12-06T00:00:00Z").unwrap();
        let kept = read_kept(dir.path()).unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["w"]);
        assert_eq!(kept["w"].key, ED);
        // A kept key is not written over by a later launch that kept it.
        let again = pin("w", "h:22", Some(&kept["w"]), Ok(ED.into())).unwrap();
        write_kept(dir.path(), &BTreeMap::from([("w".to_string(), ("h:22".to_string(), again))]), "later").unwrap();
        assert_eq!(read_kept(dir.path()).unwrap()["w"].at, "2026-12-06T00:00:00Z");
        // A file that cannot be read is an error, never "nothing pinned".
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        assert!(read_kept(dir.path()).unwrap_err().contains("pins the upstreams' host keys"));
    }

    #[test]
    fn first_use_kept_and_changed() {
        let first = pin("w", "git.example.com:22", None, Ok(ED.into())).unwrap();
        assert_eq!(first.source, Source::FirstUse);
        assert!(first.fingerprint.starts_with("SHA256:") && !first.fingerprint.ends_with('='));
        let kept = KeptKey { upstream: "git.example.com:22".into(), key: ED.into(), at: "2026-12-01T00:00:00Z".into() };
        let again = pin("w", "git.example.com:22", Some(&kept), Ok(format!("{ED} comment"))).unwrap();
        assert_eq!(again.source, Source::Kept { at: kept.at.clone() });
        // Offline: the kept key still pins.
        assert_eq!(pin("w", "u", Some(&kept), Err("down".into())).unwrap().key, ED);
        let changed = pin("w", "git.example.com:22", Some(&kept), Ok(OTHER.into())).unwrap_err();
        assert!(
            changed.contains(&fingerprint(ED).unwrap()) && changed.contains(&fingerprint(OTHER).unwrap()),
            "{changed}"
        );
        assert!(pin("w", "u", None, Err("refused".into())).unwrap_err().contains("set host_key"));
    }
}
