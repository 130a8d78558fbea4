//! Planning a launch: everything resolved up front from the composed
//! manifest and the host, so the preflight can show it and the launch needs
//! to decide nothing. [`plan`] writes nothing; [`write_plan`] creates the
//! state dir and writes `metadata.json` and the CA.

use std::collections::BTreeMap;
use std::path::PathBuf;

use manifest::{AuthScheme, Manifest, OnMatch, Resolved, Route};
use state::{BottleMetadata, Home, StateDir};

use crate::error::BackendError;
use crate::provider::{ProviderRef, provider_for};
use crate::registry::{Availability, Backend};
use sidecar::agent::BottleCa;

/// Reads one host environment variable.
pub type HostVars = dyn Fn(&str) -> Option<String>;

/// What the host offers a plan: its environment, `$HOME`, the cwd.
pub struct HostEnv {
    /// Reads one variable (unset: `None`).
    pub vars: Box<HostVars>,
    /// The operator's home, for `~/`.
    pub user_home: PathBuf,
    /// The working directory, for relative paths.
    pub cwd: PathBuf,
}

impl HostEnv {
    /// The real process environment.
    pub fn current() -> HostEnv {
        HostEnv {
            vars: Box::new(|name| std::env::var(name).ok()),
            user_home: std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/")),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    fn is_set(&self, name: &str) -> bool {
        (self.vars)(name).is_some_and(|v| !v.is_empty())
    }

    /// `~/x` → `$HOME/x`; relative paths are taken from the cwd.
    pub fn expand(&self, path: &str) -> PathBuf {
        if let Some(rest) = path.strip_prefix("~/") {
            self.user_home.join(rest)
        } else if path == "~" {
            self.user_home.clone()
        } else {
            self.cwd.join(path)
        }
    }
}

/// What the CLI asks a backend to prepare.
#[derive(Debug, Clone)]
pub struct BottleSpec {
    /// The agent's manifest with its bottle merged in.
    pub manifest: Manifest,
    /// The bottle's env, resolved (`?` asked, `${}` copied).
    pub env: BTreeMap<String, Resolved>,
    /// Set on resume: the same identity again.
    pub identity: Option<String>,
    /// The operator's label (`--label`); none: one is made up.
    pub label: Option<String>,
    /// The terminal colour the console shows the bottle in.
    pub color: Option<String>,
    /// Copy the cwd into the agent's workspace.
    pub copy_cwd: bool,
    /// Headless: a taken label gets `-2`, `-3`, … instead of an error.
    pub uniquify_label: bool,
    /// The session's command will be wired to the operator's terminal;
    /// otherwise to plain stdio (headless, or no terminal).
    pub tty: bool,
    /// `--remote-control [NAME]`: the provider's remote control on (`""`:
    /// no name). Only a provider with a remote-control flag can.
    pub remote_control: Option<String>,
}

/// Where a route's credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// A host env var, read at launch and given to the sidecar only.
    HostEnv(String),
    /// The provider's login on the host (`forward_host_credentials`).
    HostLogin(String),
}

/// One egress route as the sidecar will enforce it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRoute {
    /// The route in manifest shape.
    pub route: Route,
    /// Its credential: the scheme, and where the value comes from.
    pub auth: Option<(AuthScheme, AuthSource)>,
    /// What a DLP finding on this route does.
    pub on_match: OnMatch,
    /// The bottle that set it, or `provider <name>`.
    pub origin: String,
}

/// A bottle resolved and ready to launch: everything a backend needs, nothing read again.
#[derive(Debug)]
pub struct Plan {
    /// The bottle's identity (its state dir's name).
    pub identity: String,
    /// The backend that will run it.
    pub backend: String,
    /// The isolation runtime (`runc`, `runsc`, `smolvm`).
    pub runtime: String,
    /// Whether the backend can run here.
    pub availability: Availability,
    /// The `~/.bot-bottle` it lives in.
    pub home: Home,
    /// What `metadata.json` says of it.
    pub metadata: BottleMetadata,
    /// The agent's manifest with its bottle merged in.
    pub manifest: Manifest,
    /// The agent's environment, resolved.
    pub env: BTreeMap<String, Resolved>,
    /// Provider placeholder variables: set in the agent, hidden from the preflight.
    pub hidden_env: Vec<String>,
    /// The provider's name (`claude`, `codex`, a plugin).
    pub provider: String,
    /// What `provider` names: a built-in, or the user's plugin.
    pub resolved_provider: ProviderRef,
    /// The egress routes the sidecar enforces.
    pub routes: Vec<PlannedRoute>,
    /// Each git-gate repo's upstream (`host:port`) and the host key pinned
    /// for it: the manifest's, or one fetched on first use / kept since.
    pub host_keys: BTreeMap<String, (String, crate::host_keys::Pinned)>,
    /// Route changes an operator approved in this bottle's earlier
    /// sessions, applied again over `routes` (a resume fills them in from
    /// the bottle's store; a new bottle has none).
    pub kept_route_edits: Vec<sidecar::prepare::KeptRouteEdit>,
    /// Host skill directories copied into the agent.
    pub skills: Vec<PathBuf>,
    /// The bottle CA the sidecar mints leaves from and the agent trusts.
    pub ca: BottleCa,
    /// Things the operator should know that do not stop the launch.
    pub warnings: Vec<String>,
    /// The session runs on the operator's terminal (else plain stdio): a
    /// backend may prepare the session's command during the launch.
    pub tty: bool,
    /// Remote control is on (`--remote-control`; its name, or `""`).
    pub remote_control: Option<String>,
}

impl Plan {
    /// The bottle's state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.home.state_dir(&self.identity)
    }
}

/// The host key each git-gate repo's upstream is pinned to (see
/// [`crate::host_keys`]): the manifest's, else the one kept in the
/// bottle's state, else fetched now.
fn pin_host_keys(
    m: &Manifest,
    state_dir: &std::path::Path,
) -> Result<BTreeMap<String, (String, crate::host_keys::Pinned)>, String> {
    use crate::host_keys::{Pinned, Source, fetch, fingerprint, pin, read_kept};
    let mut out = BTreeMap::new();
    let mut kept = None;
    for (name, repo) in &m.bottle.repos {
        let Some(url) = &repo.value.url else { continue };
        let upstream = sidecar::agent::SshUrl::parse(url).map_err(|e| format!("git-gate.repos.{name}.url: {e}"))?;
        let at = format!("{}:{}", upstream.host, upstream.port);
        let pinned = match &repo.value.host_key {
            Some(key) => Pinned {
                fingerprint: fingerprint(key).map_err(|e| format!("git-gate.repos.{name}.host_key: {e}"))?,
                key: key.clone(),
                source: Source::Manifest,
            },
            None => {
                if kept.is_none() {
                    kept = Some(read_kept(state_dir)?);
                }
                let kept_key = kept.as_ref().and_then(|k| k.get(name));
                pin(name, &at, kept_key, fetch(&upstream.host, upstream.port))?
            }
        };
        out.insert(name.clone(), (at, pinned));
    }
    Ok(out)
}

/// Resolve everything a launch needs on `backend`. Writes nothing.
pub fn plan(backend: &dyn Backend, home: &Home, spec: BottleSpec, host: &HostEnv) -> Result<Plan, BackendError> {
    let m = &spec.manifest;
    let invalid = |message: String| BackendError::Invalid { message };
    let provider_cfg = m.bottle.provider();
    let provider_origin = m.bottle.agent_provider.as_ref().map(|p| p.origin.clone()).unwrap_or_default();
    let provider_file = bottle_file(home, &provider_origin);
    let provider = provider_for(home, &provider_cfg.template)?.ok_or_else(|| {
        invalid(format!(
            "{}: agent_provider.template '{}' is not a provider: use claude, codex, pi or shell, or add {}",
            provider_file.display(),
            provider_cfg.template,
            home.contrib_dir().join(&provider_cfg.template).join("provider.toml").display()
        ))
    })?;

    let mut warnings = Vec::new();
    let settings_error = |e: String| invalid(format!("{}: {e}", provider_file.display()));
    let provider = match provider {
        ProviderRef::Builtin(p) => {
            let (p, w) = crate::provider_settings::configure(p, &provider_cfg.settings).map_err(settings_error)?;
            warnings.extend(w);
            ProviderRef::Builtin(p)
        }
        plugin => {
            warnings.extend(provider_cfg.settings.keys().map(|k| {
                format!("agent_provider.settings.{k} is ignored: plugin '{}' takes no settings", provider_cfg.template)
            }));
            plugin
        }
    };
    let mut routes = Vec::new();
    let mut hidden_env = Vec::new();
    let p = provider.provider();
    hidden_env.extend(p.placeholder_env.iter().map(|(k, _)| k.clone()));
    let provider_route = |host: &str, source: Option<AuthSource>| PlannedRoute {
        route: Route {
            host: host.to_string(),
            auth: None,
            matches: Vec::new(),
            dlp: manifest::Dlp::default(),
            git: manifest::GitPolicy::default(),
            ports: p
                .api_port
                .filter(|&port| port != manifest::DEFAULT_PORT)
                .map(manifest::PortRange::one)
                .into_iter()
                .collect(),
            allow_private: p.api_allow_private,
        },
        auth: source.map(|s| (p.auth_scheme, s)),
        on_match: OnMatch::Redact,
        origin: format!("provider {}", p.name),
    };
    let token_var = provider_cfg.auth_token.clone().or_else(|| p.token_ref.clone());
    if let Some(var) = &token_var {
        if p.auth_token_hosts.is_empty() {
            return Err(invalid(format!(
                "{}: agent_provider.auth_token is set, but provider '{}' has no API route to inject it into; remove it",
                provider_file.display(),
                p.name
            )));
        }
        if !host.is_set(var) {
            let key = if provider_cfg.auth_token.is_some() { "auth_token" } else { "settings.api_key" };
            return Err(invalid(format!(
                "{}: agent_provider.{key} names the host variable {var}, which is not set; export {var} before starting",
                provider_file.display()
            )));
        }
        routes.extend(p.auth_token_hosts.iter().map(|h| provider_route(h, Some(AuthSource::HostEnv(var.clone())))));
    } else if p.api_port.is_some() {
        // A keyless endpoint the settings named (a local model server):
        // routed, nothing injected.
        routes.extend(p.auth_token_hosts.iter().map(|h| provider_route(h, None)));
    }
    if provider_cfg.forward_host_credentials {
        let Some(file) = &p.host_login_file else {
            return Err(invalid(format!(
                "{}: agent_provider.forward_host_credentials is set, but provider '{}' has no host login to forward; remove it",
                provider_file.display(),
                p.name
            )));
        };
        let login = host.user_home.join(file);
        if !login.is_file() {
            return Err(invalid(format!(
                "{}: agent_provider.forward_host_credentials reads {}, which does not exist; log in with `{} login` on this host first",
                provider_file.display(),
                login.display(),
                p.name
            )));
        }
        // Usable now (not API-key mode, not malformed, not expired)?
        let text = std::fs::read_to_string(&login)
            .map_err(|e| invalid(format!("{}: cannot read {}: {e}", provider_file.display(), login.display())))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        crate::host_login::codex(&login.display().to_string(), &text, now).map_err(|e| {
            invalid(format!("{}: agent_provider.forward_host_credentials: {e}", provider_file.display()))
        })?;
        routes.extend(
            p.host_login_hosts
                .iter()
                .map(|h| provider_route(h, Some(AuthSource::HostLogin(login.display().to_string())))),
        );
    }
    if let Some(dockerfile) = &provider_cfg.dockerfile {
        let path = host.expand(dockerfile);
        if !path.is_file() {
            return Err(invalid(format!(
                "{}: agent_provider.dockerfile {} does not exist (relative paths are taken from the current directory)",
                provider_file.display(),
                path.display()
            )));
        }
    }

    // Manifest routes fill in the hosts the provider does not own.
    for r in &m.bottle.routes {
        let file = bottle_file(home, &r.origin);
        if routes.iter().any(|p: &PlannedRoute| p.route.host == r.value.host) {
            warnings.push(format!(
                "{}: the route for {} is ignored: the provider's own route owns that host",
                file.display(),
                r.value.host
            ));
            continue;
        }
        let auth = match &r.value.auth {
            Some(a) => {
                if !host.is_set(&a.token_ref) {
                    return Err(invalid(format!(
                        "{}: egress route {} has auth.token_ref {}, which is not set on the host; export {} before starting",
                        file.display(),
                        r.value.host,
                        a.token_ref,
                        a.token_ref
                    )));
                }
                Some((a.scheme, AuthSource::HostEnv(a.token_ref.clone())))
            }
            None => None,
        };
        routes.push(PlannedRoute {
            route: r.value.clone(),
            auth,
            on_match: r.value.dlp.outbound_on_match.unwrap_or(OnMatch::Supervise),
            origin: r.origin.clone(),
        });
    }

    for (name, repo) in &m.bottle.repos {
        let file = bottle_file(home, &repo.origin);
        match &repo.value.key {
            Some(manifest::RepoKey::Static { path }) => {
                let key = host.expand(path);
                if !key.is_file() {
                    return Err(invalid(format!(
                        "{}: git-gate.repos.{name}.key.path {} does not exist; point it at the deploy key's private key file",
                        file.display(),
                        key.display()
                    )));
                }
            }
            Some(manifest::RepoKey::Gitea { provisioner_token }) if !host.is_set(provisioner_token) => {
                return Err(invalid(format!(
                    "{}: git-gate.repos.{name}.key.provisioner_token names {provisioner_token}, which is not set on the host; export it before starting",
                    file.display()
                )));
            }
            _ => {}
        }
    }

    let mut skills = Vec::new();
    for skill in &m.agent.skills {
        let dir = host.user_home.join(".claude").join("skills").join(skill);
        if !dir.is_dir() {
            return Err(invalid(format!(
                "{}: skills names '{skill}', but {} does not exist; create it or remove the skill",
                m.agent.file.display(),
                dir.display()
            )));
        }
        skills.push(dir);
    }
    if !skills.is_empty() && provider.provider().skills_dir.is_none() {
        warnings.push(format!(
            "provider '{}' has no skills directory (skills_dir in its provider.toml): the agent's skills are not copied in",
            provider.provider().name
        ));
    }

    let identity = match &spec.identity {
        Some(id) => id.clone(),
        None => state::mint_identity(&m.agent.name, spec.label.as_deref(), spec.uniquify_label, &|id| {
            home.identity_taken(id)
        })?,
    };
    // What the image build will fetch: a built-in provider's CLI from npm,
    // unless a Dockerfile or a commit (docker's image, smolmachines' pack)
    // stands in for it.
    let state_dir = home.state_dir(&identity);
    let committed = crate::engine::agent::committed_image(&state_dir).is_some()
        || crate::smolmachines::bottle::committed_pack(&state_dir).is_some();
    if provider_cfg.dockerfile.is_none() && matches!(provider, ProviderRef::Builtin(_)) && !committed {
        crate::engine::npm::check_launch_needs(&provider_cfg.template).map_err(|e| {
            let whose = if provider_origin.is_empty() {
                format!("{}: no agent_provider, so the default {}", m.agent.file.display(), provider_cfg.template)
            } else {
                format!("{}: agent_provider.template {}", provider_file.display(), provider_cfg.template)
            };
            invalid(format!("{whose}: {e}"))
        })?;
    }
    let host_keys = pin_host_keys(m, &state_dir).map_err(invalid)?;
    let ca = BottleCa::mint(&identity).map_err(|e| BackendError::Ca(e.to_string()))?;
    let metadata = BottleMetadata {
        identity: identity.clone(),
        agent_name: m.agent.name.clone(),
        cwd: if spec.copy_cwd { host.cwd.display().to_string() } else { String::new() },
        copy_cwd: spec.copy_cwd,
        started_at: BottleMetadata::now(),
        compose_project: if backend.name() == "docker" { format!("bot-bottle-{identity}") } else { String::new() },
        backend: backend.name().to_string(),
        label: spec.label.clone().unwrap_or_default(),
        color: spec.color.clone().unwrap_or_default(),
        bottle_names: m.bottle_names.clone(),
    };
    let mut provider = provider;
    let p = provider.provider_mut();
    if let (Some(flag), false) = (p.label_flag.clone(), metadata.label.is_empty()) {
        p.command.extend([flag, metadata.label.clone()]);
    }
    if let Some(name) = &spec.remote_control {
        let flag = p.remote_control_flag.clone().ok_or_else(|| {
            invalid(format!(
                "--remote-control: provider '{}' has no remote control (Claude Code's is the one built in; a plugin declares remote_control_flag in its provider.toml)",
                p.name
            ))
        })?;
        p.command.push(flag);
        if !name.is_empty() {
            p.command.push(name.clone());
        }
    }
    Ok(Plan {
        identity,
        backend: backend.name().to_string(),
        runtime: backend.runtime(),
        availability: backend.available(),
        home: home.clone(),
        metadata,
        manifest: spec.manifest,
        env: spec.env,
        hidden_env,
        provider: provider_cfg.template.clone(),
        resolved_provider: provider,
        routes,
        skills,
        ca,
        warnings,
        tty: spec.tty,
        remote_control: spec.remote_control.clone(),
        kept_route_edits: Vec::new(),
        host_keys,
    })
}

fn bottle_file(home: &Home, name: &str) -> PathBuf {
    if name.is_empty() { home.bottles_dir() } else { home.bottles_dir().join(format!("{name}.md")) }
}

/// Create (or, on resume, reuse) the state dir; write `metadata.json`, the
/// CA certificate and its key (0600). `.preserve` is left alone: only a
/// launch that actually starts may clear it.
pub fn write_plan(plan: &Plan) -> Result<StateDir, BackendError> {
    let dir = match StateDir::open(&plan.home, &plan.identity) {
        Some(existing) if existing.path().join(BottleMetadata::FILE).is_file() => existing,
        _ => StateDir::create(&plan.home, &plan.identity)?,
    };
    plan.metadata.write(dir.path())?;
    // From now on this process owns the bottle: `cleanup` leaves it alone
    // (even while the preflight waits for the operator's yes).
    std::fs::write(dir.path().join(crate::registry::LAUNCHER_FILE), crate::registry::launcher_record()).map_err(
        |source| state::StateError::Io {
            path: dir.path().join(crate::registry::LAUNCHER_FILE),
            action: "write",
            source,
        },
    )?;
    let egress = dir.component("egress")?;
    std::fs::write(egress.join("ca.pem"), &plan.ca.cert_pem).map_err(|source| state::StateError::Io {
        path: egress.join("ca.pem"),
        action: "write",
        source,
    })?;
    dir.write_secret_file("egress/ca.key", plan.ca.key_pem.expose().as_bytes())?;
    Ok(dir)
}

/// Plans for unit tests: a home with one bottle and one agent.
#[cfg(test)]
pub(crate) mod test_plans {
    use super::*;

    /// A spec for agent `a` on bottle `b` (frontmatter `bottle_yaml` plus
    /// the provider `template`), labelled `label`.
    pub(crate) fn spec_in(home: &Home, template: &str, label: Option<&str>, bottle_yaml: &str) -> BottleSpec {
        std::fs::create_dir_all(home.bottles_dir()).unwrap();
        std::fs::create_dir_all(home.agents_dir()).unwrap();
        let bottle = format!("---\nagent_provider: {{template: {template}}}\n{bottle_yaml}---\n");
        std::fs::write(home.bottles_dir().join("b.md"), bottle).unwrap();
        std::fs::write(home.agents_dir().join("a.md"), "---\nbottle: b\n---\nhi\n").unwrap();
        let mut lib = manifest::Library::open(home.root(), None, None).unwrap();
        BottleSpec {
            manifest: lib.compose("a", &[]).unwrap(),
            env: BTreeMap::new(),
            identity: None,
            label: label.map(str::to_string),
            color: None,
            copy_cwd: false,
            uniquify_label: true,
            tty: false,
            remote_control: None,
        }
    }

    /// A host with no variables, no home and `/` as the cwd.
    pub(crate) fn host() -> HostEnv {
        HostEnv { vars: Box::new(|_| None), user_home: "/nonexistent".into(), cwd: "/".into() }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::test_plans::host;
    use super::*;
    use crate::{Backend, Docker, Smolmachines};

    fn spec(home: &Home) -> BottleSpec {
        spec_with(home, "shell", Some("My Label"))
    }

    fn spec_with(home: &Home, template: &str, label: Option<&str>) -> BottleSpec {
        super::test_plans::spec_in(home, template, label, "")
    }

    #[test]
    fn prepare_writes_metadata_with_its_own_backend_name_and_a_private_ca_key() {
        for backend in [&Docker as &dyn Backend, &Smolmachines] {
            let tmp = tempfile::tempdir().unwrap();
            let home = Home::new(tmp.path());
            let plan = backend.prepare(&home, spec(&home), &host()).unwrap();
            assert_eq!(plan.identity, "my-label");
            let meta = BottleMetadata::read(&plan.state_dir()).unwrap();
            assert_eq!(meta.backend, backend.name());
            assert_eq!(meta.bottle_names, ["b"]);
            assert_eq!(meta.agent_name, "a");
            let key = plan.state_dir().join("egress/ca.key");
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(plan.state_dir()).unwrap().permissions().mode() & 0o777, 0o700);
            assert!(
                std::fs::read_to_string(plan.state_dir().join("egress/ca.pem")).unwrap().contains("BEGIN CERTIFICATE")
            );
            // This process owns it from prepare on: cleanup leaves it alone.
            assert!(crate::registry::launcher_alive(&plan.state_dir()));
            // A second start with the same label is uniquified.
            let again = backend.prepare(&home, spec(&home), &host()).unwrap();
            assert_eq!(again.identity, "my-label-2");
        }
    }

    #[test]
    fn claude_shows_the_bottles_label_as_its_session_name() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let p = plan(&Docker, &home, spec_with(&home, "claude", Some("My Label")), &host()).unwrap();
        assert_eq!(p.resolved_provider.provider().command[4..], ["--name", "My Label"]);
        let p = plan(&Docker, &home, spec_with(&home, "claude", None), &host()).unwrap();
        assert_eq!(p.resolved_provider.provider().command.len(), 4);
    }

    #[test]
    fn remote_control_is_claudes_flag_and_no_one_elses() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let with = |template: &str, name: &str| {
            let mut spec = spec_with(&home, template, None);
            spec.remote_control = Some(name.to_string());
            plan(&Docker, &home, spec, &host())
        };
        let p = with("claude", "phone").unwrap();
        assert_eq!(p.resolved_provider.provider().argv(None, false)[4..], ["--remote-control", "phone"]);
        assert_eq!(p.remote_control.as_deref(), Some("phone"));
        let p = with("claude", "").unwrap();
        assert_eq!(p.resolved_provider.provider().argv(None, true)[4..], ["--remote-control", "--continue"]);
        let e = with("shell", "").unwrap_err().to_string();
        assert!(e.contains("--remote-control: provider 'shell' has no remote control"), "{e}");
    }

    #[test]
    fn plan_alone_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        let p = plan(&Docker, &home, spec(&home), &host()).unwrap();
        assert!(!p.state_dir().exists());
        assert!(!home.state_root().exists());
    }
}
