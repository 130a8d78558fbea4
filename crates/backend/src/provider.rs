//! The agent providers as data (spec/backends.md, providers table): the
//! built-ins, and the user's plugins — `~/.bot-bottle/contrib/<name>/
//! provider.toml` with the same fields, validated with errors naming the
//! file and key, plus an optional `Dockerfile`. A plugin shadows a built-in
//! of the same name. Pure apart from reading a plugin's file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use manifest::AuthScheme;
use state::Home;

use crate::error::BackendError;
use crate::host_login::PLACEHOLDER;

/// A provider: how its CLI runs, what it reaches, what it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The template's name.
    pub name: String,
    /// The CLI's command line.
    pub command: Vec<String>,
    /// Prepended to the prompt in headless mode.
    pub headless: Vec<String>,
    /// Appended on resume, when the provider can continue a conversation.
    pub resume: Vec<String>,
    /// Hosts of the provider's own API route, injected from `auth_token`.
    pub auth_token_hosts: Vec<String>,
    /// Hosts reached with the host's own login (`forward_host_credentials`).
    pub host_login_hosts: Vec<String>,
    /// Where the host login lives, relative to `$HOME`.
    pub host_login_file: Option<String>,
    /// Env the agent gets holding a placeholder (name, value), never a
    /// real value; hidden from the preflight.
    pub placeholder_env: Vec<(String, String)>,
    /// More environment the agent gets (name, value): plain values, never secrets.
    pub extra_env: Vec<(String, String)>,
    /// How the API route's credential is sent.
    pub auth_scheme: AuthScheme,
    /// The CLI's own session files under the agent's home: the transcript
    /// kept at session end and put back on resume.
    pub session_dir: Option<String>,
    /// Where the bottle's skills go, under the agent's home.
    pub skills_dir: Option<String>,
    /// The flag that shows the bottle's label in the CLI (Claude Code's
    /// session name: prompt box and terminal title).
    pub label_flag: Option<String>,
    /// The flag that starts the CLI with remote control on (Claude Code's
    /// `--remote-control [NAME]`: the session is also driven from
    /// claude.ai/code and the Claude app, through the provider's own API).
    pub remote_control_flag: Option<String>,
    /// Where the API route goes when settings moved it off 443 / onto a
    /// private address (pi's `base_url`): its port, and whether it may
    /// resolve inward.
    pub api_port: Option<u16>,
    /// Whether the API route may resolve to a private address.
    pub api_allow_private: bool,
    /// The host variable whose value the API route injects when the
    /// settings name one (pi's `api_key`); `agent_provider.auth_token` wins.
    pub token_ref: Option<String>,
    /// Files put in the agent's home: path under the home → content.
    pub files: BTreeMap<String, String>,
}

impl Provider {
    /// The CLI's argv: interactive, or one-shot with `prompt`; on `resume`
    /// with its continue flags (the transcript was put back). The headless
    /// flags, then the continue flags, then the prompt: `claude … -p
    /// --continue TEXT`, `codex … exec --skip-git-repo-check resume --last
    /// TEXT`.
    pub fn argv(&self, prompt: Option<&str>, resume: bool) -> Vec<String> {
        let mut argv = self.command.clone();
        if prompt.is_some() {
            argv.extend(self.headless.iter().cloned());
        }
        if resume {
            argv.extend(self.resume.iter().cloned());
        }
        argv.extend(prompt.map(str::to_string));
        argv
    }
}

/// A built-in provider, as constants.
struct Builtin {
    name: &'static str,
    command: &'static [&'static str],
    headless: &'static [&'static str],
    resume: &'static [&'static str],
    auth_token_hosts: &'static [&'static str],
    host_login_hosts: &'static [&'static str],
    host_login_file: Option<&'static str>,
    placeholder_env: &'static [(&'static str, &'static str)],
    extra_env: &'static [(&'static str, &'static str)],
    session_dir: Option<&'static str>,
    skills_dir: Option<&'static str>,
    label_flag: Option<&'static str>,
    remote_control_flag: Option<&'static str>,
}

impl Builtin {
    fn provider(&self) -> Provider {
        let owned = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Provider {
            name: self.name.to_string(),
            command: owned(self.command),
            headless: owned(self.headless),
            resume: owned(self.resume),
            auth_token_hosts: owned(self.auth_token_hosts),
            host_login_hosts: owned(self.host_login_hosts),
            host_login_file: self.host_login_file.map(str::to_string),
            placeholder_env: pairs(self.placeholder_env),
            extra_env: pairs(self.extra_env),
            auth_scheme: AuthScheme::Bearer,
            session_dir: self.session_dir.map(str::to_string),
            skills_dir: self.skills_dir.map(str::to_string),
            label_flag: self.label_flag.map(str::to_string),
            remote_control_flag: self.remote_control_flag.map(str::to_string),
            api_port: None,
            api_allow_private: false,
            token_ref: None,
            files: BTreeMap::new(),
        }
    }
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "claude",
        command: &[
            "claude",
            "--dangerously-skip-permissions",
            "--append-system-prompt-file",
            "~/.bot-bottle-prompt.txt",
        ],
        headless: &["-p"],
        resume: &["--continue"],
        auth_token_hosts: &["api.anthropic.com"],
        host_login_hosts: &[],
        host_login_file: None,
        placeholder_env: &[("CLAUDE_CODE_OAUTH_TOKEN", PLACEHOLDER)],
        extra_env: &[("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"), ("DISABLE_ERROR_REPORTING", "1")],
        session_dir: Some(".claude"),
        skills_dir: Some(".claude/skills"),
        label_flag: Some("--name"),
        remote_control_flag: Some("--remote-control"),
    },
    Builtin {
        name: "codex",
        command: &["codex", "--dangerously-bypass-approvals-and-sandbox"],
        // The workspace need not be a git repository.
        headless: &["exec", "--skip-git-repo-check"],
        resume: &["resume", "--last"],
        auth_token_hosts: &["api.openai.com"],
        host_login_hosts: &["api.openai.com", "chatgpt.com"],
        host_login_file: Some(".codex/auth.json"),
        placeholder_env: &[("OPENAI_API_KEY", PLACEHOLDER)],
        extra_env: &[],
        session_dir: Some(".codex"),
        skills_dir: Some(".codex/skills"),
        label_flag: None,
        remote_control_flag: None,
    },
    Builtin {
        name: "pi",
        // pi reads the file when the argument names one.
        command: &["pi", "--append-system-prompt", "~/.bot-bottle-prompt.txt"],
        headless: &["-p"],
        resume: &["--continue"],
        // The API route and its placeholder come from `settings`
        // (crate::provider_settings).
        auth_token_hosts: &[],
        host_login_hosts: &[],
        host_login_file: None,
        placeholder_env: &[],
        // No update checks or install telemetry (egress would refuse them).
        extra_env: &[("PI_OFFLINE", "1"), ("PI_SKIP_VERSION_CHECK", "1"), ("PI_TELEMETRY", "0")],
        session_dir: Some(".pi"),
        skills_dir: Some(".pi/agent/skills"),
        label_flag: None,
        remote_control_flag: None,
    },
    Builtin {
        name: "shell",
        command: &["bash", "-l"],
        headless: &["-c"],
        resume: &[],
        auth_token_hosts: &[],
        host_login_hosts: &[],
        host_login_file: None,
        placeholder_env: &[],
        extra_env: &[],
        session_dir: None,
        // Where a bottled Claude Code looks, as before providers had their
        // own.
        skills_dir: Some(".claude/skills"),
        label_flag: None,
        remote_control_flag: None,
    },
];

fn pairs(xs: &[(&str, &str)]) -> Vec<(String, String)> {
    xs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The built-in provider names.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

/// A built-in provider.
pub fn builtin(name: &str) -> Option<Provider> {
    BUILTINS.iter().find(|b| b.name == name).map(Builtin::provider)
}

/// Every built-in provider's session directory (what a session end copies
/// out of the agent, whichever CLI ran).
pub fn session_dirs() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().filter_map(|p| p.session_dir)
}

/// What a `template` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRef {
    /// One this build has.
    Builtin(Provider),
    /// `contrib/<name>/` with a `provider.toml`; shadows a built-in.
    Plugin {
        /// The plugin's provider.
        provider: Provider,
        /// Its directory.
        dir: PathBuf,
    },
}

impl ProviderRef {
    /// The provider, either way.
    pub fn provider(&self) -> &Provider {
        match self {
            ProviderRef::Builtin(p) | ProviderRef::Plugin { provider: p, .. } => p,
        }
    }

    /// The provider, either way, to change.
    pub fn provider_mut(&mut self) -> &mut Provider {
        match self {
            ProviderRef::Builtin(p) | ProviderRef::Plugin { provider: p, .. } => p,
        }
    }

    /// The plugin's own Dockerfile, when it has one.
    pub fn plugin_dockerfile(&self) -> Option<PathBuf> {
        match self {
            ProviderRef::Plugin { dir, .. } => Some(dir.join("Dockerfile")).filter(|p| p.is_file()),
            ProviderRef::Builtin(_) => None,
        }
    }
}

/// `provider.toml`, as a plugin writes it (every field but `command`
/// optional; unknown keys refused).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginFile {
    command: Vec<String>,
    #[serde(default)]
    headless: Vec<String>,
    #[serde(default)]
    resume: Vec<String>,
    #[serde(default)]
    auth_token_hosts: Vec<String>,
    #[serde(default)]
    auth_scheme: Option<String>,
    #[serde(default)]
    placeholder_env: Vec<String>,
    #[serde(default)]
    extra_env: BTreeMap<String, String>,
    #[serde(default)]
    session_dir: Option<String>,
    #[serde(default)]
    skills_dir: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// The CLI's flag for remote control (`--remote-control`), if it has one.
    #[serde(default)]
    remote_control_flag: Option<String>,
}

/// Parse a plugin's `provider.toml`; errors name the file and the key.
pub fn parse_plugin(name: &str, path: &std::path::Path, text: &str) -> Result<Provider, BackendError> {
    let invalid = |message: String| BackendError::Invalid { message: format!("{}: {message}", path.display()) };
    let f: PluginFile = toml::from_str(text).map_err(|e| invalid(e.to_string().trim().replace('\n', " ")))?;
    if f.command.is_empty() || f.command[0].trim().is_empty() {
        return Err(invalid("`command` needs the program to run, e.g. command = [\"mycli\"]".to_string()));
    }
    let auth_scheme = match f.auth_scheme.as_deref() {
        None | Some("Bearer") => AuthScheme::Bearer,
        Some("token") => AuthScheme::Token,
        Some(other) => return Err(invalid(format!("`auth_scheme` is '{other}': use Bearer or token"))),
    };
    for host in &f.auth_token_hosts {
        if host.is_empty() || host.contains(['/', ':', ' ']) {
            return Err(invalid(format!("`auth_token_hosts` has '{host}': give bare host names")));
        }
    }
    for key in f.placeholder_env.iter().chain(f.extra_env.keys()) {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(format!("'{key}' is not an environment variable name")));
        }
    }
    let plain = |p: &str| {
        let path = std::path::Path::new(p);
        !p.is_empty() && path.components().all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    for file in f.files.keys().chain(f.session_dir.iter()).chain(f.skills_dir.iter()) {
        if !plain(file) {
            return Err(invalid(format!("'{file}' must be a relative path under the agent's home")));
        }
    }
    Ok(Provider {
        name: name.to_string(),
        command: f.command,
        headless: f.headless,
        resume: f.resume,
        auth_token_hosts: f.auth_token_hosts,
        host_login_hosts: Vec::new(),
        host_login_file: None,
        placeholder_env: f.placeholder_env.into_iter().map(|k| (k, PLACEHOLDER.to_string())).collect(),
        extra_env: f.extra_env.into_iter().collect(),
        auth_scheme,
        session_dir: f.session_dir,
        skills_dir: f.skills_dir,
        label_flag: None,
        remote_control_flag: f.remote_control_flag,
        api_port: None,
        api_allow_private: false,
        token_ref: None,
        files: f.files,
    })
}

/// Find `template` among the user's plugins, then the built-ins. A plugin
/// whose `provider.toml` does not validate is an error (naming its file
/// and key), not a fall-back to the built-in it shadows.
pub fn provider_for(home: &Home, template: &str) -> Result<Option<ProviderRef>, BackendError> {
    let dir = home.contrib_dir().join(template);
    let file = dir.join("provider.toml");
    if file.is_file() {
        let text = std::fs::read_to_string(&file)
            .map_err(|source| BackendError::Io { what: format!("cannot read {}", file.display()), source })?;
        let provider = parse_plugin(template, &file, &text)?;
        return Ok(Some(ProviderRef::Plugin { provider, dir }));
    }
    Ok(builtin(template).map(ProviderRef::Builtin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Provider, String> {
        parse_plugin("mine", std::path::Path::new("/h/contrib/mine/provider.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_plugin_takes_the_tables_fields() {
        let p = parse(
            r#"
command = ["aider", "--yes"]
headless = ["--message"]
resume = ["--restore-chat-history"]
auth_token_hosts = ["api.example.com"]
placeholder_env = ["EXAMPLE_API_KEY"]
extra_env = { AIDER_ANALYTICS = "false" }
session_dir = ".aider"
files = { ".aider.conf.yml" = "auto-commits: false\n" }
"#,
        )
        .unwrap();
        assert_eq!(p.command, ["aider", "--yes"]);
        assert_eq!(p.extra_env, [("AIDER_ANALYTICS".to_string(), "false".to_string())]);
        assert_eq!(p.auth_scheme, AuthScheme::Bearer);
        assert_eq!(p.files[".aider.conf.yml"], "auto-commits: false\n");
    }

    #[test]
    fn the_argv_puts_the_continue_flags_between_the_headless_ones_and_the_prompt() {
        let claude = builtin("claude").unwrap();
        assert_eq!(claude.argv(Some("go"), true)[4..], ["-p", "--continue", "go"]);
        assert_eq!(claude.argv(None, true)[4..], ["--continue"]);
        assert_eq!(claude.argv(None, false).len(), 4);
        let codex = builtin("codex").unwrap();
        assert_eq!(codex.argv(Some("go"), true)[2..], ["exec", "--skip-git-repo-check", "resume", "--last", "go"]);
        assert_eq!(builtin("shell").unwrap().argv(Some("echo hi"), false), ["bash", "-l", "-c", "echo hi"]);
    }

    #[test]
    fn plugin_errors_name_the_file_and_key() {
        let e = parse("command = [\"x\"]\nheadles = [\"-p\"]\n").unwrap_err();
        assert!(e.contains("/h/contrib/mine/provider.toml") && e.contains("headles"), "{e}");
        let e = parse("headless = [\"-p\"]\n").unwrap_err();
        assert!(e.contains("command"), "{e}");
        let e = parse("command = [\"x\"]\nauth_scheme = \"Basic\"\n").unwrap_err();
        assert!(e.contains("auth_scheme") && e.contains("Basic"), "{e}");
        let e = parse("command = [\"x\"]\nfiles = { \"../.ssh/authorized_keys\" = \"k\" }\n").unwrap_err();
        assert!(e.contains("relative path under the agent's home"), "{e}");
        let e = parse("command = [\"x\"]\nextra_env = { \"A B\" = \"1\" }\n").unwrap_err();
        assert!(e.contains("not an environment variable name"), "{e}");
        let e = parse("command = \"x\"").unwrap_err();
        assert!(e.contains("command"), "{e}");
    }
}
