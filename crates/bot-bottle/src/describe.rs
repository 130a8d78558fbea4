//! How manifests and plans are shown to people: the `info` view and the
//! preflight, as aligned text or JSON. Never a value that could be a secret.

use std::collections::BTreeMap;

use backend::{AuthSource, Plan, PlannedRoute};
use manifest::{EnvValue, Manifest, Route, Sourced};
use serde_json::{Value, json};

/// One `name  value` row; multi-line values continue under the value column.
pub struct Rows(Vec<(String, Vec<String>)>);

impl Rows {
    pub fn new() -> Rows {
        Rows(Vec::new())
    }

    pub fn add(&mut self, name: &str, values: Vec<String>) {
        let values = if values.is_empty() { vec!["(none)".to_string()] } else { values };
        self.0.push((name.to_string(), values));
    }

    pub fn render(&self, title: &str) -> String {
        let width = self.0.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut out = format!("{title}\n");
        for (name, values) in &self.0 {
            for (i, v) in values.iter().enumerate() {
                let label = if i == 0 { name.as_str() } else { "" };
                out.push_str(&format!("  {label:<width$}  {v}\n"));
            }
        }
        out
    }
}

fn env_kind(value: &EnvValue) -> String {
    match value {
        EnvValue::Literal { .. } => "literal".to_string(),
        EnvValue::Host { name } => format!("copied from ${name}"),
        EnvValue::Ask { .. } => "asked at launch".to_string(),
    }
}

pub fn env_rows(m: &Manifest, hidden: &[String]) -> Vec<String> {
    m.bottle
        .env
        .iter()
        .filter(|(name, _)| !hidden.contains(name))
        .map(|(name, v)| format!("{name}  ({}; from {})", env_kind(&v.value), v.origin))
        .collect()
}

pub fn git_identity(m: &Manifest) -> Vec<String> {
    let user = m.git_user();
    let field = |f: &Option<Sourced<String>>| f.as_ref().map(|s| (s.value.clone(), s.origin.clone()));
    match (field(&user.name), field(&user.email)) {
        (None, None) => Vec::new(),
        (name, email) => {
            let show = |f: &Option<(String, String)>, what: &str| match f {
                Some((v, o)) => (v.clone(), format!("{what} from {o}")),
                None => (format!("(no {what})"), format!("{what} unset")),
            };
            let (n, no) = show(&name, "name");
            let (e, eo) = show(&email, "email");
            vec![format!("{n} <{e}>  ({no}; {eo})")]
        }
    }
}

/// One line per git-gate repo; with `pins` (a plan's), the host key each
/// upstream is pinned to and where it came from.
pub fn repos(m: &Manifest, pins: Option<&BTreeMap<String, (String, backend::host_keys::Pinned)>>) -> Vec<String> {
    use backend::host_keys::Source;
    m.bottle
        .repos
        .iter()
        .map(|(name, repo)| {
            // `host:port` when the upstream is not on 22: the port is part
            // of where the pushes go.
            let host = match repo.value.url.as_deref().map(git_gate::ssh::SshUrl::parse) {
                Some(Ok(u)) if u.port != 22 => format!("{}:{}", u.host, u.port),
                Some(Ok(u)) => u.host,
                _ => String::new(),
            };
            let key = match &repo.value.key {
                Some(manifest::RepoKey::Static { .. }) => "static key",
                Some(manifest::RepoKey::Gitea { .. }) => "gitea deploy key",
                None => "no key",
            };
            let pinned = match (pins.and_then(|p| p.get(name)), &repo.value.host_key) {
                (Some((_, p)), _) => match &p.source {
                    Source::Manifest => format!("host key {} pinned by the manifest", p.fingerprint),
                    Source::FirstUse => format!(
                        "host key {} pinned on first use: fetched now, kept for this bottle; a host_key in the manifest is stronger",
                        p.fingerprint
                    ),
                    Source::Kept { at } => format!(
                        "host key {} pinned on first use ({at}); a host_key in the manifest is stronger",
                        p.fingerprint
                    ),
                },
                (None, Some(_)) => "host key pinned by the manifest".to_string(),
                (None, None) => {
                    "no host_key: pinned on first use at start (a host_key in the manifest is stronger)".to_string()
                }
            };
            format!("{name} → {host}  ({key}; {pinned}; from {})", repo.origin)
        })
        .collect()
}

fn route_text(route: &Route, auth: Option<String>, on_match: &str, origin: &str) -> String {
    let mut s = route.host.clone();
    if let Some(a) = auth {
        s.push_str(&format!(" [auth:{a}]"));
    }
    if !route.matches.is_empty() {
        s.push_str(&format!(" {} match rule(s)", route.matches.len()));
    }
    if route.git.fetch {
        s.push_str(" git-fetch");
    }
    if !route.ports.is_empty() {
        s.push_str(&format!(" ports {}", route.ports_text()));
    }
    if route.allow_private {
        s.push_str(" allow-private");
    }
    let out = if route.dlp.outbound_detectors.is_empty() {
        "off".to_string()
    } else {
        route.dlp.outbound_detectors.join(",")
    };
    let inb =
        if route.dlp.inbound_detectors.is_empty() { "off".to_string() } else { route.dlp.inbound_detectors.join(",") };
    // The inbound policy is shown when it is not the default (`redact`).
    let inbound_block = if route.dlp.inbound_policy() == manifest::OnMatch::Block { " in-on-match=block" } else { "" };
    s.push_str(&format!("  dlp out={out} on-match={on_match} in={inb}{inbound_block}  (from {origin})"));
    s
}

pub fn manifest_routes(m: &Manifest) -> Vec<String> {
    m.bottle
        .routes
        .iter()
        .map(|r| {
            let on_match = r.value.dlp.outbound_on_match.map(|o| o.as_str()).unwrap_or("supervise");
            route_text(&r.value, r.value.auth.as_ref().map(|a| a.scheme.as_str().to_string()), on_match, &r.origin)
        })
        .collect()
}

pub fn planned_routes(routes: &[PlannedRoute]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            let auth = r.auth.as_ref().map(|(scheme, source)| match source {
                AuthSource::HostEnv(_) => scheme.as_str().to_string(),
                AuthSource::HostLogin(_) => format!("{} host login", scheme.as_str()),
            });
            route_text(&r.route, auth, r.on_match.as_str(), &r.origin)
        })
        .collect()
}

fn prompt_first_line(m: &Manifest) -> String {
    m.agent.prompt.lines().next().unwrap_or("").to_string()
}

fn bottles_line(m: &Manifest) -> Vec<String> {
    if m.bottle_names.is_empty() {
        return Vec::new();
    }
    let mut line = m.bottle_names.join(", ");
    if m.bottle.layers.len() > m.bottle_names.len() {
        line.push_str(&format!("  (merge order: {})", m.bottle.layers.join(" → ")));
    }
    vec![line]
}

/// `bot-bottle info`.
pub fn info_text(m: &Manifest) -> String {
    let p = m.bottle.provider();
    let provider_origin = m.bottle.agent_provider.as_ref().map(|s| format!(" (from {})", s.origin)).unwrap_or_default();
    let mut rows = Rows::new();
    rows.add("agent", vec![format!("{}  ({})", m.agent.name, m.agent.file.display())]);
    rows.add("bottles", bottles_line(m));
    let mut provider = format!("{}{provider_origin}", p.template);
    if let Some(t) = &p.auth_token {
        provider.push_str(&format!("; auth_token from ${t}"));
    }
    if p.forward_host_credentials {
        provider.push_str("; forwards host login");
    }
    rows.add("provider", vec![provider]);
    rows.add("env", env_rows(m, &[]));
    rows.add("skills", m.agent.skills.clone());
    rows.add("prompt", vec![prompt_first_line(m)]);
    rows.add("git", git_identity(m));
    rows.add("git-gate", repos(m, None));
    rows.add("egress", manifest_routes(m));
    rows.add("egress log", vec![m.bottle.log_level().to_string()]);
    rows.render(&format!("agent {}", m.agent.name))
}

pub fn info_json(m: &Manifest) -> Value {
    let env: Value = m
        .bottle
        .env
        .iter()
        .map(|(k, v)| (k.clone(), json!({"kind": env_kind(&v.value), "origin": v.origin})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    json!({
        "agent": {"name": m.agent.name, "file": m.agent.file, "source": m.agent.source,
                  "skills": m.agent.skills, "prompt_first_line": prompt_first_line(m)},
        "bottles": m.bottle_names,
        "layers": m.bottle.layers,
        "provider": m.bottle.agent_provider,
        "env": env,
        "git_user": m.git_user(),
        "repos": m.bottle.repos,
        "routes": m.bottle.routes,
        "egress_log": m.bottle.log_level(),
    })
}

/// The preflight (spec/cli.md): everything the launch will do, never a value.
pub fn preflight_text(plan: &Plan) -> String {
    let m = &plan.manifest;
    let mut rows = Rows::new();
    rows.add("agent", vec![format!("{}  ({})", m.agent.name, m.agent.file.display())]);
    rows.add("bottles", bottles_line(m));
    let mut backend = format!("{} — {}", plan.backend, plan.runtime);
    if !plan.availability.available {
        backend.push_str(&format!("  [not available here: {}]", plan.availability.reason));
    }
    rows.add("backend", vec![backend]);
    let mut identity = plan.identity.clone();
    if !plan.metadata.label.is_empty() {
        identity.push_str(&format!("  (label {})", plan.metadata.label));
    }
    rows.add("identity", vec![identity]);
    let mut provider = plan.provider.clone();
    if let Some(name) = &plan.remote_control {
        let name = if name.is_empty() { String::new() } else { format!(" '{name}'") };
        provider.push_str(&format!(
            "; remote control{name} on: the session is also driven from claude.ai/code and the Claude app, through its API route"
        ));
    }
    rows.add("provider", vec![provider]);
    rows.add("env", env_rows(m, &plan.hidden_env));
    rows.add("skills", m.agent.skills.clone());
    rows.add("git", git_identity(m));
    rows.add("git-gate", repos(m, Some(&plan.host_keys)));
    rows.add("egress", planned_routes(&plan.routes));
    if !plan.kept_route_edits.is_empty() {
        let kept = plan.kept_route_edits.iter().map(|k| {
            let by = k.proposal_id.map(|id| format!("proposal #{id}, ")).unwrap_or_default();
            format!("{}  ({by}approved {}; applied again over the routes above)", k.edit.summary(), k.at)
        });
        rows.add("approved", kept.collect());
    }
    rows.add("CA", vec![format!("SHA-256 {} (minted for this launch; a resume mints a new one)", plan.ca.fingerprint)]);
    if plan.metadata.copy_cwd {
        rows.add("workspace", vec![format!("copy of {}", plan.metadata.cwd)]);
    }
    rows.render("bot-bottle preflight")
}

pub fn preflight_json(plan: &Plan) -> Value {
    let m = &plan.manifest;
    let mut info = info_json(m);
    let env = info["env"].as_object_mut().map(|e| {
        e.retain(|k, _| !plan.hidden_env.contains(k));
        e.clone()
    });
    let routes: Vec<Value> = plan
        .routes
        .iter()
        .map(|r| {
            json!({
                "host": r.route.host,
                "auth_scheme": r.auth.as_ref().map(|(s, _)| s.as_str()),
                "outbound_detectors": r.route.dlp.outbound_detectors,
                "inbound_detectors": r.route.dlp.inbound_detectors,
                "outbound_on_match": r.on_match.as_str(),
                "matches": r.route.matches,
                "git": r.route.git,
                "origin": r.origin,
            })
        })
        .collect();
    json!({
        "identity": plan.identity,
        "backend": plan.backend,
        "runtime": plan.runtime,
        "available": plan.availability,
        "agent": info["agent"],
        "bottles": m.bottle_names,
        "provider": plan.provider,
        "remote_control": plan.remote_control,
        "env": env,
        "git_user": m.git_user(),
        "repos": info["repos"],
        "host_keys": plan.host_keys.iter().map(|(name, (upstream, p))| (name.clone(), json!({
            "upstream": upstream, "fingerprint": p.fingerprint, "source": p.source,
        }))).collect::<serde_json::Map<_, _>>(),
        "routes": routes,
        "approved_route_edits": plan.kept_route_edits.iter().map(|k| json!({
            "proposal_id": k.proposal_id,
            "approved_at": k.at,
            "edit": k.edit.to_json(),
        })).collect::<Vec<_>>(),
        "ca_sha256": plan.ca.fingerprint,
        "metadata": plan.metadata,
        "warnings": plan.warnings,
    })
}
