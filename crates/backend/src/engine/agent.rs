//! The agent's side that both backends share: its image (the provider's,
//! or a bottle's commit), the files provisioned into it, and the host login
//! a provider forwards.

use std::collections::BTreeMap;
use std::path::Path;

use bollard::Docker;
use secret::Secret;

use super::images;
use super::objects::{Progress, io_err};
use super::provision::{self, AGENT_HOME, AGENT_UID, WORKSPACE};
use crate::error::BackendError;
use crate::plan::{AuthSource, Plan};

/// The host login the plan's routes forward (Codex's auth.json), read and
/// checked again at launch, once: its token goes to the sidecar, its
/// stand-in to the agent.
pub(crate) fn forwarded_login(plan: &Plan) -> Result<Option<crate::host_login::CodexLogin>, BackendError> {
    let Some(file) = plan.routes.iter().find_map(|r| match &r.auth {
        Some((_, AuthSource::HostLogin(file))) => Some(file),
        _ => None,
    }) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(io_err(format!("cannot read the host login {file}")))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    crate::host_login::codex(file, &text, now)
        .map(Some)
        .map_err(|e| BackendError::Invalid { message: format!("agent_provider.forward_host_credentials: {e}") })
}

/// The agent image: a committed snapshot of this bottle, the bottle's own
/// Dockerfile, or the provider's.
pub(crate) async fn agent_image(
    docker: &Docker,
    plan: &Plan,
    base: &str,
    progress: Progress<'_>,
) -> Result<String, BackendError> {
    if let Some(committed) = committed_image(&plan.state_dir())
        && docker.inspect_image(&committed).await.is_ok()
    {
        progress(&format!("using the committed image {committed}"));
        return Ok(committed);
    }
    let provider_cfg = plan.manifest.bottle.provider();
    if let Some(path) = &provider_cfg.dockerfile {
        let text =
            std::fs::read_to_string(path).map_err(io_err(format!("cannot read agent_provider.dockerfile {path}")))?;
        return images::ensure_agent(docker, &plan.provider, &text, base, &[], progress).await;
    }
    // A plugin's own Dockerfile, built on the shell provider's image, with
    // the files beside it in its context.
    if let Some(dockerfile) = plan.resolved_provider.plugin_dockerfile() {
        let text = std::fs::read_to_string(&dockerfile)
            .map_err(io_err(format!("cannot read the plugin's {}", dockerfile.display())))?;
        let mut context: Vec<(String, images::Source)> = Vec::new();
        for entry in std::fs::read_dir(dockerfile.parent().unwrap_or(Path::new("."))).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "Dockerfile" && entry.file_type().is_ok_and(|t| t.is_file()) {
                context.push((name, images::Source::File(entry.path())));
            }
        }
        let context: Vec<(&str, images::Source)> = context.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let shell = images::ensure_shell(docker, base, progress).await?;
        return images::ensure_agent(docker, &plan.provider, &text, &shell, &context, progress).await;
    }
    if let Some(tag) = images::ensure_provider(docker, &plan.provider, base, progress).await? {
        return Ok(tag);
    }
    Err(BackendError::NotImplemented {
        backend: "docker".to_string(),
        operation: match plan.provider.as_str() {
            "codex" => "build the codex provider's image yet (use agent_provider.dockerfile or the shell provider)",
            "pi" => "build the pi provider's image yet (use agent_provider.dockerfile or the shell provider)",
            _ => {
                "build an image for a plugin without a Dockerfile (add one beside its provider.toml: FROM ${BASE_IMAGE} is the shell provider's image)"
            }
        },
    })
}

/// The file `commit` writes: the image `resume` boots from.
pub const COMMIT_FILE: &str = "commit.json";

/// The image a bottle committed, when it did (`resume` boots from it).
pub fn committed_image(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(COMMIT_FILE)).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["image"].as_str().map(str::to_string)
}

/// The agent's files for `plan`, reaching the sidecar `at`, as one tar to
/// unpack at `/` keeping its owners: root's (the bottle CA), the agent's
/// home (owned by the agent's user), and the workspace when the cwd is
/// copied in (`committed_at`: when the snapshot the agent boots from was
/// committed, if it does). With the image's CA bundle (and the CA file an
/// earlier launch left in a commit), the bundle with this launch's bottle
/// CA replaces it; without, only the CA certificate goes in (the caller
/// appends it).
pub(crate) fn agent_files(
    plan: &Plan,
    canary: &sidecar::agent::Canary,
    login_stand_in: Option<&str>,
    image_ca_bundle: Option<(Vec<u8>, Option<Vec<u8>>)>,
    at: &provision::Endpoints,
    committed_at: Option<std::time::SystemTime>,
    workspace: WorkspaceIn,
) -> Result<Vec<u8>, BackendError> {
    let mut files = Bundle::new();
    for d in
        ["usr", "usr/local", "usr/local/share", "usr/local/share/ca-certificates", "etc", "etc/ssl", "etc/ssl/certs"]
    {
        files.dir(d, 0o755, 0)?;
    }
    files.file(provision::AGENT_CA.trim_start_matches('/'), plan.ca.cert_pem.as_bytes(), 0o644, 0)?;
    if let Some((bundle, previous_ca)) = image_ca_bundle {
        let bundle = provision::bundle_with_ca(&bundle, previous_ca.as_deref(), &plan.ca.cert_pem);
        files.file(provision::CA_BUNDLE.trim_start_matches('/'), &bundle, 0o644, 0)?;
    }
    // Home: the env file (0600), .gitconfig, the prompt, skills.
    let uid = AGENT_UID;
    files.enter(AGENT_HOME);
    files.dir(".bot-bottle", 0o700, uid)?;
    let mut values: BTreeMap<String, Secret<String>> = plan
        .env
        .iter()
        .filter_map(|(k, v)| match v {
            manifest::Resolved::Forwarded(v) => Some((k.clone(), v.clone())),
            manifest::Resolved::Literal(v) => Some((k.clone(), Secret::new(v.clone()))),
            _ => None,
        })
        .collect();
    values.entry(canary.variable.clone()).or_insert_with(|| canary.value.clone());
    files.file(".bot-bottle/env", provision::env_file(&values).expose().as_bytes(), 0o600, uid)?;
    let user = &plan.manifest.bottle.git_user;
    let repos: Vec<(String, String)> = plan
        .manifest
        .bottle
        .repos
        .iter()
        .filter_map(|(name, r)| r.value.url.clone().map(|u| (name.clone(), u)))
        .collect();
    let gitconfig = sidecar::agent::agent_gitconfig(
        user.name.as_ref().map(|s| s.value.as_str()),
        user.email.as_ref().map(|s| s.value.as_str()),
        &repos,
        &at.gate(),
    );
    files.file(".gitconfig", gitconfig.as_bytes(), 0o644, uid)?;
    // Always written (empty when the agent has none), the agent's alone.
    files.file(".bot-bottle-prompt.txt", plan.manifest.agent.prompt.as_bytes(), 0o600, uid)?;
    // A resumed bottle gets its transcript back, for the continue flag;
    // then the provider's files, so its configuration is this launch's.
    let provider = plan.resolved_provider.provider();
    let state_dir = plan.state_dir();
    if let (crate::ProviderRef::Plugin { .. }, Some(dir)) = (&plan.resolved_provider, &provider.session_dir) {
        std::fs::write(state_dir.join(super::transcript::PLUGIN_SESSION_DIR_FILE), dir)
            .map_err(io_err("cannot record the plugin's session directory"))?;
    }
    let transcript = state_dir.join(super::transcript::TRANSCRIPT_DIR);
    for dir in super::transcript::session_dirs(&state_dir) {
        if transcript.join(&dir).is_dir() {
            files.tree(&transcript.join(&dir), &dir, uid)?;
        }
    }
    for (path, text) in provision::provider_files(provider, login_stand_in, at) {
        // Parent directories the agent owns (its CLI writes beside them).
        if let Some(parent) = Path::new(&path).parent() {
            files.dirs(&parent.to_string_lossy(), 0o700, uid)?;
        }
        files.file(&path, text.as_bytes(), 0o600, uid)?;
    }
    if let (false, Some(skills)) = (plan.skills.is_empty(), &provider.skills_dir) {
        files.dirs(skills, 0o755, uid)?;
        for skill in &plan.skills {
            let name = skill.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.tree(skill, &format!("{skills}/{name}"), uid)?;
        }
    }
    if workspace == WorkspaceIn::WithTheRest {
        add_workspace(&mut files, plan, committed_at)?;
    }
    files.finish()
}

/// Whether [`agent_files`] holds the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkspaceIn {
    /// In the same tar.
    WithTheRest,
    /// Not: it goes in on its own ([`workspace_files`]), after the image's
    /// `/workspace` was emptied.
    OnItsOwn,
}

/// Whether the launch of `plan` must empty the image's `/workspace` before
/// the workspace goes in: it boots from a commit, and puts in a copy kept
/// after that commit (the commit's files would otherwise show through it,
/// and files the agent removed since would come back).
pub(crate) fn replaces_commit_workspace(plan: &Plan, committed_at: Option<std::time::SystemTime>) -> bool {
    committed_at.is_some()
        && matches!(crate::workspace::source(&plan.state_dir(), committed_at, None), crate::workspace::Source::Kept(_))
}

/// The workspace alone, as a tar rooted at `/` (see [`WorkspaceIn::OnItsOwn`]).
pub(crate) fn workspace_files(
    plan: &Plan,
    committed_at: Option<std::time::SystemTime>,
) -> Result<Vec<u8>, BackendError> {
    let mut files = Bundle::new();
    add_workspace(&mut files, plan, committed_at)?;
    files.finish()
}

/// The workspace: the agent's kept work, the host's cwd, or nothing (see
/// `workspace::source`).
fn add_workspace(
    files: &mut Bundle,
    plan: &Plan,
    committed_at: Option<std::time::SystemTime>,
) -> Result<(), BackendError> {
    let host_cwd = (plan.metadata.copy_cwd && !plan.metadata.cwd.is_empty()).then(|| Path::new(&plan.metadata.cwd));
    if let crate::workspace::Source::Kept(dir) | crate::workspace::Source::HostCwd(dir) =
        crate::workspace::source(&plan.state_dir(), committed_at, host_cwd)
    {
        files.enter(WORKSPACE);
        let mut entries: Vec<_> =
            std::fs::read_dir(&dir).map_err(io_err(format!("cannot read {}", dir.display())))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            files.tree(&e.path(), &name, AGENT_UID)?;
        }
    }
    Ok(())
}

/// A tar of the agent's files, rooted at `/`, each entry's owner in its
/// header; paths are taken relative to the directory [`Bundle::enter`]ed.
pub(crate) struct Bundle {
    tar: tar::Builder<Vec<u8>>,
    at: String,
}

impl Bundle {
    pub(crate) fn new() -> Bundle {
        Bundle { tar: tar::Builder::new(Vec::new()), at: String::new() }
    }

    /// Later paths are under `dir` (an absolute path in the agent).
    pub(crate) fn enter(&mut self, dir: &str) {
        self.at = dir.trim_matches('/').to_string();
    }

    pub(crate) fn path(&self, path: &str) -> String {
        if self.at.is_empty() { path.to_string() } else { format!("{}/{path}", self.at) }
    }

    pub(crate) fn header(size: u64, mode: u32, uid: u64, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_entry_type(kind);
        h.set_mtime(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        );
        h
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32, uid: u64) -> Result<(), BackendError> {
        let mut h = Self::header(0, mode, uid, tar::EntryType::Directory);
        let path = self.path(path);
        self.tar.append_data(&mut h, path, std::io::empty()).map_err(io_err("cannot pack files for the agent"))
    }

    /// `path` and every directory above it, up to the entered directory.
    pub(crate) fn dirs(&mut self, path: &str, mode: u32, uid: u64) -> Result<(), BackendError> {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = if at.is_empty() { part.to_string() } else { format!("{at}/{part}") };
            self.dir(&at, mode, uid)?;
        }
        Ok(())
    }

    pub(crate) fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64) -> Result<(), BackendError> {
        let mut h = Self::header(data.len() as u64, mode, uid, tar::EntryType::Regular);
        let path = self.path(path);
        self.tar.append_data(&mut h, path, data).map_err(io_err("cannot pack files for the agent"))
    }

    /// A host directory tree (regular files, dirs and symlinks).
    pub(crate) fn tree(&mut self, host: &Path, under: &str, uid: u64) -> Result<(), BackendError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(host).map_err(io_err(format!("cannot read {}", host.display())))?;
        if meta.is_dir() {
            self.dir(under, 0o755, uid)?;
            let mut entries: Vec<_> =
                std::fs::read_dir(host).map_err(io_err(format!("cannot read {}", host.display())))?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                self.tree(&e.path(), &format!("{under}/{name}"), uid)?;
            }
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(host).map_err(io_err(format!("cannot read {}", host.display())))?;
            let mut h = Self::header(0, 0o777, uid, tar::EntryType::Symlink);
            let path = self.path(under);
            self.tar.append_link(&mut h, path, target).map_err(io_err("cannot pack files for the agent"))?;
        } else if meta.is_file() {
            let data = std::fs::read(host).map_err(io_err(format!("cannot read {}", host.display())))?;
            self.file(under, &data, meta.permissions().mode() & 0o777, uid)?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, BackendError> {
        self.tar.into_inner().map_err(io_err("cannot pack files for the agent"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::*;
    use crate::Backend;

    /// Each entry of a tar: path, mode, uid, content.
    fn entries(tar: &[u8]) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut archive = tar::Archive::new(tar);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let (mode, uid) = (e.header().mode().unwrap(), e.header().uid().unwrap());
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            out.insert(path, (mode, uid, body));
        }
        out
    }

    #[test]
    fn the_agents_files_hold_its_ca_its_env_and_its_git_identity_and_nothing_of_the_sidecars() {
        let tmp = tempfile::tempdir().unwrap();
        let home = state::Home::new(tmp.path());
        let bottle = "env:\n  GREETING: hello\ngit-gate:\n  user: {name: Ada, email: ada@example.com}\n";
        let mut spec = crate::plan::test_plans::spec_in(&home, "shell", Some("files"), bottle);
        // As the CLI resolves the bottle's env.
        spec.env.insert("GREETING".into(), manifest::Resolved::Literal("hello".into()));
        let plan = crate::Docker.prepare(&home, spec, &crate::plan::test_plans::host()).unwrap();
        let canary = sidecar::agent::Canary::mint().unwrap();
        let tar =
            agent_files(&plan, &canary, None, None, &provision::Endpoints::loopback(), None, WorkspaceIn::WithTheRest)
                .unwrap();
        let files = entries(&tar);
        let ca = &files[provision::AGENT_CA.trim_start_matches('/')];
        assert_eq!(ca.2, plan.ca.cert_pem.as_bytes());
        assert_eq!((ca.0 & 0o777, ca.1), (0o644, 0));
        let home_path = |p: &str| format!("{}/{p}", AGENT_HOME.trim_start_matches('/'));
        let (mode, uid, env) = &files[&home_path(".bot-bottle/env")];
        assert_eq!((mode & 0o777, *uid), (0o600, AGENT_UID));
        let env = String::from_utf8_lossy(env);
        assert!(env.contains("GREETING") && env.contains("hello"), "{env}");
        assert!(
            env.contains(&canary.variable) && env.contains(canary.value.expose().as_str()),
            "the canary is in the agent's env"
        );
        let gitconfig = String::from_utf8_lossy(&files[&home_path(".gitconfig")].2).into_owned();
        assert!(gitconfig.contains("Ada") && gitconfig.contains("ada@example.com"), "{gitconfig}");
        // The bottle CA's key never goes in; nor does anything under the
        // state dir but what is listed here.
        let key = std::fs::read_to_string(plan.state_dir().join("egress/ca.key")).unwrap();
        let everything: Vec<u8> = files.values().flat_map(|(_, _, b)| b.clone()).collect();
        assert!(!String::from_utf8_lossy(&everything).contains(key.trim()), "the CA key is in the agent's files");
        assert!(
            !files.keys().any(|p| p.starts_with(WORKSPACE.trim_start_matches('/'))),
            "no workspace: none was asked"
        );
    }
}
