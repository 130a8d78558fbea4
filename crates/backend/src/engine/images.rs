//! Images without a registry (spec/testing.md): the base assembled from
//! this host's Debian packages ([`super::rootfs`]), then the sidecar and
//! the agent images built from the project's Dockerfiles (`images/`,
//! compiled into the binary) with `ARG BASE_IMAGE`. Every image is tagged
//! by a hash of what went into it, so an unchanged image is never rebuilt.
//! `BOT_BOTTLE_SIDECAR_IMAGE` / `BOT_BOTTLE_IMAGE` override.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::rootfs;
use crate::error::BackendError;

/// The sidecar image's Dockerfile.
pub const SIDECAR_DOCKERFILE: &str = include_str!("../../../../images/sidecar.Dockerfile");
/// The shell agent image's Dockerfile.
pub const SHELL_DOCKERFILE: &str = include_str!("../../../../images/shell.Dockerfile");
/// The Claude Code agent image's Dockerfile.
pub const CLAUDE_DOCKERFILE: &str = include_str!("../../../../images/claude.Dockerfile");
/// The Codex agent image's Dockerfile.
pub const CODEX_DOCKERFILE: &str = include_str!("../../../../images/codex.Dockerfile");
/// The pi agent image's Dockerfile.
pub const PI_DOCKERFILE: &str = include_str!("../../../../images/pi.Dockerfile");

/// Labels on every image bot-bottle builds.
pub const IMAGE_LABEL: &str = "dev.bot-bottle.image";

/// Progress lines for the operator (image builds are slow).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

async fn exists(docker: &Docker, tag: &str) -> bool {
    docker.inspect_image(tag).await.is_ok()
}

/// The base image: `BOT_BOTTLE_BASE_IMAGE`, or `bot-bottle-base:<hash of the
/// host's package set>`, assembled when absent.
pub async fn ensure_base(docker: &Docker, progress: Progress<'_>) -> Result<String, BackendError> {
    if let Ok(tag) = std::env::var("BOT_BOTTLE_BASE_IMAGE")
        && !tag.is_empty()
    {
        return Ok(tag);
    }
    let status_path = std::path::Path::new(DPKG_STATUS);
    // The tag of an unchanged package database is remembered (parsing it
    // takes longer than the rest of a launch's checks).
    if let Some(tag) = cached("base", status_path)
        && exists(docker, &tag).await
    {
        return Ok(tag);
    }
    let installed = dpkg_installed()?;
    let (packages, missing) = rootfs::closure(&installed, rootfs::BASE_PACKAGES);
    let tag = base_tag(&packages);
    if exists(docker, &tag).await {
        remember("base", status_path, &tag);
        return Ok(tag);
    }
    if !missing.is_empty() {
        progress(&format!("base image: not installed on this host, left out: {}", missing.join(", ")));
    }
    progress(&format!("base image: assembling {tag} from {} host packages", packages.len()));
    let work = scratch("base")?;
    let rootfs_path = work.path().join("rootfs.tar");
    {
        let file = std::fs::File::create(&rootfs_path).map_err(io("cannot write the base rootfs"))?;
        let mut out = std::io::BufWriter::new(file);
        rootfs::write_rootfs(&packages, &mut out).map_err(io("cannot assemble the base rootfs"))?;
        out.flush().map_err(io("cannot write the base rootfs"))?;
    }
    let dockerfile = "FROM scratch\nADD rootfs.tar /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8\nCMD [\"/bin/bash\"]\n";
    build(docker, &tag, dockerfile, &[("rootfs.tar", Source::File(rootfs_path))], &HashMap::new(), progress).await?;
    remember("base", status_path, &tag);
    Ok(tag)
}

const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// This host's installed packages, from its dpkg database.
fn dpkg_installed() -> Result<Vec<rootfs::Installed>, BackendError> {
    let status = std::fs::read_to_string(DPKG_STATUS).map_err(|e| {
        BackendError::Image(format!(
            "no base image, and this host has no dpkg database to assemble one from ({e}); set BOT_BOTTLE_BASE_IMAGE to a Debian image"
        ))
    })?;
    Ok(rootfs::parse_status(&status))
}

/// The base image's tag: a hash of the packages it holds.
fn base_tag(packages: &[&rootfs::Installed]) -> String {
    format!("bot-bottle-base:{}", rootfs::fingerprint(packages))
}

/// The tags this binary builds and runs from, as far as they can be known
/// without building or fetching anything: the base, the sidecar, and each
/// built-in provider's image whose inputs are already kept. What `images
/// prune` never removes.
pub fn current_tags() -> Result<Vec<String>, BackendError> {
    let base = match std::env::var("BOT_BOTTLE_BASE_IMAGE").ok().filter(|t| !t.is_empty()) {
        Some(tag) => tag,
        None => match cached("base", std::path::Path::new(DPKG_STATUS)) {
            Some(tag) => tag,
            None => {
                let installed = dpkg_installed()?;
                base_tag(&rootfs::closure(&installed, rootfs::BASE_PACKAGES).0)
            }
        },
    };
    let mut tags = vec![base.clone(), sidecar_tag(&base)?];
    let shell = agent_tag("shell", SHELL_DOCKERFILE, &base, &[])?;
    tags.push(shell.clone());
    for provider in ["claude", "codex", "pi"] {
        if let Some((dockerfile, files)) = super::npm::kept_inputs(provider)? {
            tags.push(agent_tag(provider, dockerfile, &shell, &files)?);
        }
    }
    Ok(tags)
}

/// What a build context holds besides the Dockerfile.
#[derive(Debug, Clone)]
pub enum Source {
    /// A host file, copied in.
    File(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
}

/// Build `dockerfile` with `files` into `tag` (when `tag` is absent).
pub async fn build(
    docker: &Docker,
    tag: &str,
    dockerfile: &str,
    files: &[(&str, Source)],
    args: &HashMap<String, String>,
    progress: Progress<'_>,
) -> Result<(), BackendError> {
    let work = scratch("context")?;
    let context = work.path().join("context.tar");
    {
        let file = std::fs::File::create(&context).map_err(io("cannot write the build context"))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes()).map_err(io("cannot write the context"))?;
        for (name, source) in files {
            match source {
                Source::File(path) => {
                    let mut f = std::fs::File::open(path).map_err(io("cannot read a context file"))?;
                    tar.append_file(name, &mut f).map_err(io("cannot write the context"))?;
                }
                Source::Bytes(data) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_size(data.len() as u64);
                    header.set_mode(0o755);
                    tar.append_data(&mut header, name, &data[..]).map_err(io("cannot write the context"))?;
                }
            }
        }
        tar.into_inner().and_then(|mut w| w.flush()).map_err(io("cannot write the context"))?;
    }
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_string(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(args.clone()),
        labels: Some(HashMap::from([(IMAGE_LABEL.to_string(), tag.to_string())])),
        ..Default::default()
    };
    let file = tokio::fs::File::open(&context).await.map_err(io("cannot read the build context"))?;
    let body = file_stream(file);
    let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
    let mut last_error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = info.stream.as_deref().map(str::trim).filter(|l| l.starts_with("Step ")) {
                    progress(&format!("{tag}: {line}"));
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    last_error = Some(e);
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    if let Some(e) = last_error {
        return Err(BackendError::Image(format!("building {tag} failed: {e}")));
    }
    if !exists(docker, tag).await {
        return Err(BackendError::Image(format!("building {tag} produced no image")));
    }
    Ok(())
}

/// A file as a stream of chunks.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// A hash of the things an image is built from: its tag.
pub(crate) fn content_tag(repo: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    format!("{repo}:{}", d.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

/// The sidecar image with this very binary in it.
pub async fn ensure_sidecar(docker: &Docker, base: &str, progress: Progress<'_>) -> Result<String, BackendError> {
    if let Ok(tag) = std::env::var("BOT_BOTTLE_SIDECAR_IMAGE")
        && !tag.is_empty()
    {
        return Ok(tag);
    }
    let tag = sidecar_tag(base)?;
    if exists(docker, &tag).await {
        return Ok(tag);
    }
    let exe = std::env::current_exe().map_err(io("cannot find this program to put in the sidecar"))?;
    let key = format!("sidecar {base}");
    let binary = std::fs::read(&exe).map_err(io("cannot read this program"))?;
    progress(&format!("building {tag}"));
    let args = HashMap::from([("BASE_IMAGE".to_string(), base.to_string())]);
    build(docker, &tag, SIDECAR_DOCKERFILE, &[("bot-bottle", Source::Bytes(binary))], &args, progress).await?;
    remember(&key, &exe, &tag);
    Ok(tag)
}

/// The sidecar image's tag on `base`: a hash of its Dockerfile, the base
/// and this very binary (remembered per binary stamp).
fn sidecar_tag(base: &str) -> Result<String, BackendError> {
    if let Ok(tag) = std::env::var("BOT_BOTTLE_SIDECAR_IMAGE")
        && !tag.is_empty()
    {
        return Ok(tag);
    }
    let exe = std::env::current_exe().map_err(io("cannot find this program to put in the sidecar"))?;
    let key = format!("sidecar {base}");
    if let Some(tag) = cached(&key, &exe) {
        return Ok(tag);
    }
    let binary = std::fs::read(&exe).map_err(io("cannot read this program"))?;
    let tag = content_tag("bot-bottle-sidecar", &[SIDECAR_DOCKERFILE.as_bytes(), base.as_bytes(), &binary]);
    remember(&key, &exe, &tag);
    Ok(tag)
}

/// An agent image's tag: a hash of the Dockerfile, the base and the
/// context files (by name and content).
fn agent_tag(provider: &str, dockerfile: &str, base: &str, files: &[(&str, Source)]) -> Result<String, BackendError> {
    let mut parts: Vec<Vec<u8>> = vec![dockerfile.as_bytes().to_vec(), base.as_bytes().to_vec()];
    for (name, source) in files {
        parts.push(name.as_bytes().to_vec());
        parts.push(match source {
            // The file's content: the same CLI fetched again (a new path or
            // mtime) is the same image, an edited file a new one.
            Source::File(p) => file_digest(p)?.into_bytes(),
            Source::Bytes(b) => b.clone(),
        });
    }
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(content_tag(&format!("bot-bottle-agent-{provider}"), &parts))
}

/// An agent image from a Dockerfile text (`images/<provider>.Dockerfile`,
/// or the bottle's own) and the files its context needs; the tag hashes the
/// Dockerfile, the base and the files (by name and stamp).
pub async fn ensure_agent(
    docker: &Docker,
    provider: &str,
    dockerfile: &str,
    base: &str,
    files: &[(&str, Source)],
    progress: Progress<'_>,
) -> Result<String, BackendError> {
    if let Ok(tag) = std::env::var("BOT_BOTTLE_IMAGE")
        && !tag.is_empty()
    {
        return Ok(tag);
    }
    let tag = agent_tag(provider, dockerfile, base, files)?;
    if exists(docker, &tag).await {
        return Ok(tag);
    }
    progress(&format!("building {tag}"));
    let args = HashMap::from([("BASE_IMAGE".to_string(), base.to_string())]);
    build(docker, &tag, dockerfile, files, &args, progress).await?;
    Ok(tag)
}

/// The shell provider's image: the base with the `node` user and the
/// workspace; the other providers' images and plugins build on it.
pub async fn ensure_shell(docker: &Docker, base: &str, progress: Progress<'_>) -> Result<String, BackendError> {
    ensure_agent(docker, "shell", SHELL_DOCKERFILE, base, &[], progress).await
}

/// A built-in provider's image: `shell` on the base; `claude`, `codex` and
/// `pi` on the shell image with their CLIs (and pi's Node.js) from npm.
pub async fn ensure_provider(
    docker: &Docker,
    provider: &str,
    base: &str,
    progress: Progress<'_>,
) -> Result<Option<String>, BackendError> {
    if provider == "shell" {
        return Ok(Some(ensure_shell(docker, base, progress).await?));
    }
    let Some((dockerfile, files)) = super::npm::provider_inputs(provider, progress)? else { return Ok(None) };
    let on = ensure_shell(docker, base, progress).await?;
    Ok(Some(ensure_agent(docker, provider, dockerfile, &on, &files, progress).await?))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> BackendError {
    move |source| BackendError::Io { what: what.to_string(), source }
}

/// A private scratch directory (0700), removed on drop.
fn scratch(what: &str) -> Result<tempfile::TempDir, BackendError> {
    tempfile::Builder::new()
        .prefix(&format!("bot-bottle-{what}-"))
        .tempdir()
        .map_err(io("cannot create a scratch directory"))
}

/// The tag last derived from `file` for `what`, while the file is unchanged
/// (same size, modification time and inode). A cache in
/// `~/.cache/bot-bottle/`; a miss only costs re-reading the file.
fn cached(what: &str, file: &std::path::Path) -> Option<String> {
    let (path, stamp) = (cache_file()?, file_stamp(file)?);
    let text = std::fs::read_to_string(path).ok()?;
    let map: serde_json::Value = serde_json::from_str(&text).ok()?;
    let entry = &map[what];
    (entry["stamp"].as_str() == Some(stamp.as_str())).then(|| entry["tag"].as_str().map(str::to_string)).flatten()
}

fn remember(what: &str, file: &std::path::Path, tag: &str) {
    let (Some(path), Some(stamp)) = (cache_file(), file_stamp(file)) else { return };
    let mut map: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    map[what] = serde_json::json!({"stamp": stamp, "tag": tag});
    write_cache(&path, map.to_string().as_bytes());
}

fn cache_file() -> Option<PathBuf> {
    cache_path("image-tags.json")
}

/// `~/.cache/bot-bottle/<relative>` (none without a `HOME`).
pub(crate) fn cache_path(relative: &str) -> Option<PathBuf> {
    // XDG: `$XDG_CACHE_HOME` when set to an absolute path, else
    // `~/.cache`.
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let root = match xdg {
        Some(dir) => dir,
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".cache"),
    };
    Some(root.join("bot-bottle").join(relative))
}

/// Write a cache file whole, under a temporary name and then renamed, so a
/// reader never sees half of it. Failures are ignored: a missing cache
/// entry only costs time.
pub(crate) fn write_cache(path: &std::path::Path, data: &[u8]) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The SHA-256 of `file`'s content, hex. Remembered per file stamp, so an
/// unchanged file (a 200 MB CLI) is read once.
fn file_digest(file: &std::path::Path) -> Result<String, BackendError> {
    let key = format!("sha256 {}", file.display());
    if let Some(digest) = cached(&key, file) {
        return Ok(digest);
    }
    let mut f = std::fs::File::open(file).map_err(io("cannot read a file the image is built with"))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io("cannot read a file the image is built with"))?;
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    remember(&key, file, &digest);
    Ok(digest)
}

fn file_stamp(file: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(file).ok()?;
    Some(format!("{}:{}:{}:{}", file.display(), m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000, m.ino()))
}
