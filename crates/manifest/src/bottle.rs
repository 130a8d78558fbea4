//! One bottle file as written: its keys, typed and validated. Composition
//! (`extends`, the multi-bottle merge) is in `compose`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::env::EnvValue;
use crate::error::ManifestError;
use crate::fields::{Ctx, join};
use crate::gitgate::{self, GitUser, Repo};
use crate::route::{self, Route};
use crate::yaml::Node;

/// The keys a bottle's frontmatter may hold.
pub const BOTTLE_KEYS: &[&str] = &["extends", "env", "agent_provider", "git-gate", "egress", "limits"];

/// Keys that older versions accepted, with what to write instead.
pub const REMOVED_BOTTLE_KEYS: &[(&str, &str)] = &[
    ("git", "move each repo to `git-gate.repos` (see the git-gate section of bot-bottle's README)"),
    ("cred_proxy", "move each credential to `egress.routes[].auth` ({scheme, token_ref})"),
    ("runtime", "delete it: gVisor is detected and used automatically"),
    ("git_user", "move it to `git-gate.user` ({name, email})"),
    ("egress_proxy", "rename it to `egress`"),
    ("supervise", "delete it: supervise is always on"),
];

pub const PROVIDER_KEYS: &[&str] = &["template", "dockerfile", "auth_token", "forward_host_credentials", "settings"];

/// `agent_provider`: which agent CLI runs in the bottle and how it logs in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentProvider {
    /// The provider template (`claude`, `codex`, `pi`, `shell`, a plugin).
    pub template: String,
    /// A Dockerfile of the operator's for the agent image.
    pub dockerfile: Option<String>,
    /// NAME of a host env var holding the provider's API token.
    pub auth_token: Option<String>,
    /// Give the agent the host's own login for the provider (the sidecar injects it).
    pub forward_host_credentials: bool,
    /// Provider settings (pi's `base_url`, `api_key`, …), as written.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Default for AgentProvider {
    fn default() -> Self {
        AgentProvider {
            template: "claude".to_string(),
            dockerfile: None,
            auth_token: None,
            forward_host_credentials: false,
            settings: serde_json::Map::new(),
        }
    }
}

/// One bottle file, before `extends` is applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BottleFile {
    /// Its name (the file's stem).
    pub name: String,
    /// The bottles it extends, applied first.
    pub extends: Vec<String>,
    /// `env`.
    pub env: BTreeMap<String, EnvValue>,
    /// `agent_provider`.
    pub agent_provider: Option<AgentProvider>,
    /// `git-gate.user`.
    pub git_user: GitUser,
    /// `git-gate.repos`.
    pub repos: BTreeMap<String, Repo>,
    /// `egress.log`.
    pub egress_log: Option<u8>,
    /// `egress.routes`.
    pub routes: Vec<Route>,
    /// `limits`.
    pub limits: crate::Limits,
}

/// Parse a bottle's frontmatter. `file` is only used in errors.
pub(crate) fn parse(name: &str, file: &Path, root: &Node) -> Result<BottleFile, ManifestError> {
    let ctx = Ctx::new(file, format!("bottle '{name}'"));
    let entries = ctx.map("", root).map_err(|_| {
        ctx.at(root, "", format!("bottle '{name}': the frontmatter must be a map of keys ({})", BOTTLE_KEYS.join(", ")))
    })?;
    ctx.check_keys("", root, entries, BOTTLE_KEYS, REMOVED_BOTTLE_KEYS)?;
    let mut bottle = BottleFile { name: name.to_string(), ..Default::default() };
    for (key, value) in entries {
        match key.as_str() {
            "extends" => bottle.extends = ctx.name_or_list("extends", value)?,
            "env" => bottle.env = parse_env(&ctx, value)?,
            "agent_provider" => bottle.agent_provider = Some(parse_provider(&ctx, value)?),
            "git-gate" => {
                let gg = ctx.keyed_or_empty("git-gate", value, &["user", "repos"], &[])?;
                for (k, v) in gg {
                    match k.as_str() {
                        "user" => bottle.git_user = gitgate::parse_user(&ctx, "git-gate.user", v)?,
                        "repos" => bottle.repos = gitgate::parse_repos(&ctx, "git-gate.repos", v)?,
                        _ => unreachable!("check_keys admitted only known keys"),
                    }
                }
            }
            "egress" => (bottle.egress_log, bottle.routes) = route::parse_egress(&ctx, value)?,
            "limits" => bottle.limits = crate::limits::parse(&ctx, value)?,
            _ => unreachable!("check_keys admitted only known keys"),
        }
    }
    Ok(bottle)
}

fn parse_env(ctx: &Ctx, node: &Node) -> Result<BTreeMap<String, EnvValue>, ManifestError> {
    let mut env = BTreeMap::new();
    for (name, value) in ctx.map_or_empty("env", node)? {
        let key = join("env", name);
        if !crate::env::is_env_name(name) {
            return Err(ctx.at(value, &key, format!(
                "{} env name '{name}' is not a valid variable name (letters, digits and '_', not starting with a digit)",
                ctx.what
            )));
        }
        let text = ctx.string(&key, value)?;
        let parsed =
            EnvValue::parse(&text).map_err(|why| ctx.at(value, &key, format!("{} `{key}`: {why}", ctx.what)))?;
        env.insert(name.clone(), parsed);
    }
    Ok(env)
}

fn parse_provider(ctx: &Ctx, node: &Node) -> Result<AgentProvider, ManifestError> {
    let entries = ctx.keyed_or_empty("agent_provider", node, PROVIDER_KEYS, &[])?;
    let mut p = AgentProvider::default();
    for (k, v) in entries {
        let key = join("agent_provider", k);
        match k.as_str() {
            "template" => {
                p.template = ctx.string(&key, v)?;
                if !crate::is_valid_name(&p.template) {
                    return Err(ctx.at(v, &key, format!(
                        "{} `{key}` '{}' is not a provider name (claude, codex, pi, shell, or a plugin under contrib/)",
                        ctx.what, p.template
                    )));
                }
            }
            // `""` is the original's README spelling of "no Dockerfile".
            "dockerfile" => p.dockerfile = Some(ctx.string(&key, v)?).filter(|d| !d.is_empty()),
            "auth_token" => p.auth_token = Some(ctx.var_name(&key, v)?),
            "forward_host_credentials" => p.forward_host_credentials = ctx.bool(&key, v)?,
            "settings" => match v.to_json() {
                serde_json::Value::Object(map) => p.settings = map,
                serde_json::Value::Null => {}
                _ => return Err(ctx.at(v, &key, format!("{} `{key}` must be a map", ctx.what))),
            },
            _ => unreachable!("check_keys admitted only known keys"),
        }
    }
    if p.auth_token.is_some() && p.forward_host_credentials {
        return Err(ctx.at(
            node,
            "agent_provider",
            format!(
                "{} sets both `agent_provider.auth_token` and `agent_provider.forward_host_credentials`; choose one",
                ctx.what
            ),
        ));
    }
    Ok(p)
}
