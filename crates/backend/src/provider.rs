//! The built-in agent providers as data (spec/backends.md, providers table),
//! and lookup of a manifest's `template` among them and the user's plugins.
//!
//! This is what planning needs (names, API routes, placeholders); images and
//! provisioning of each provider come with the launch path.

use std::path::PathBuf;

use manifest::AuthScheme;
use state::Home;

/// A built-in provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: &'static str,
    pub command: &'static [&'static str],
    /// Prepended to the prompt in headless mode.
    pub headless: &'static [&'static str],
    /// Appended on resume, when the provider can continue a conversation.
    pub resume: &'static [&'static str],
    /// Hosts of the provider's own API route, injected from `auth_token`.
    pub auth_token_hosts: &'static [&'static str],
    /// Hosts reached with the host's own login (`forward_host_credentials`).
    pub host_login_hosts: &'static [&'static str],
    /// Where the host login lives, relative to `$HOME`.
    pub host_login_file: Option<&'static str>,
    /// Env the agent gets holding a placeholder, never a real value; hidden
    /// from the preflight.
    pub placeholder_env: &'static [&'static str],
    pub extra_env: &'static [(&'static str, &'static str)],
    pub auth_scheme: AuthScheme,
    /// The CLI's own session files under the agent's home: the transcript
    /// kept at session end and put back on resume.
    pub session_dir: Option<&'static str>,
}

pub const BUILTIN_PROVIDERS: &[Provider] = &[
    Provider {
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
        placeholder_env: &["CLAUDE_CODE_OAUTH_TOKEN"],
        extra_env: &[("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"), ("DISABLE_ERROR_REPORTING", "1")],
        auth_scheme: AuthScheme::Bearer,
        session_dir: Some(".claude"),
    },
    Provider {
        name: "codex",
        command: &["codex", "--dangerously-bypass-approvals-and-sandbox"],
        headless: &["exec"],
        resume: &["resume", "--last"],
        auth_token_hosts: &["api.openai.com"],
        host_login_hosts: &["api.openai.com", "chatgpt.com"],
        host_login_file: Some(".codex/auth.json"),
        placeholder_env: &["OPENAI_API_KEY"],
        extra_env: &[],
        auth_scheme: AuthScheme::Bearer,
        session_dir: Some(".codex"),
    },
    Provider {
        name: "pi",
        command: &["pi"],
        headless: &["-p"],
        resume: &["--continue"],
        auth_token_hosts: &[],
        host_login_hosts: &[],
        host_login_file: None,
        placeholder_env: &[],
        extra_env: &[],
        auth_scheme: AuthScheme::Bearer,
        session_dir: Some(".pi"),
    },
    Provider {
        name: "shell",
        command: &["bash", "-l"],
        headless: &["-c"],
        resume: &[],
        auth_token_hosts: &[],
        host_login_hosts: &[],
        host_login_file: None,
        placeholder_env: &[],
        extra_env: &[],
        auth_scheme: AuthScheme::Bearer,
        session_dir: None,
    },
];

/// Every built-in provider's session directory (what a session end copies
/// out of the agent, whichever CLI ran).
pub fn session_dirs() -> impl Iterator<Item = &'static str> {
    BUILTIN_PROVIDERS.iter().filter_map(|p| p.session_dir)
}

/// What a `template` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRef {
    Builtin(&'static Provider),
    /// `contrib/<name>/` with a `provider.toml`; shadows a built-in.
    Plugin {
        name: String,
        dir: PathBuf,
    },
}

/// Find `template` among the user's plugins, then the built-ins.
pub fn provider_for(home: &Home, template: &str) -> Option<ProviderRef> {
    let dir = home.contrib_dir().join(template);
    if dir.join("provider.toml").is_file() {
        return Some(ProviderRef::Plugin { name: template.to_string(), dir });
    }
    BUILTIN_PROVIDERS.iter().find(|p| p.name == template).map(ProviderRef::Builtin)
}
