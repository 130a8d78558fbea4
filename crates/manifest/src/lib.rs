//! bot-bottle manifests: the Markdown files under `~/.bot-bottle/` that
//! describe agents and bottles.
//!
//! Owns: where manifests are read from (the trust boundary), strict YAML
//! frontmatter, the schema of every key with errors that name the file, key
//! and fix, `extends` resolution, the multi-bottle merge, and env value
//! resolution into [`secret::Secret`]s.
//!
//! Knows nothing of Docker, networks, state directories or how a bottle runs.

#![forbid(unsafe_code)]

mod agent;
mod bottle;
mod compose;
mod env;
mod error;
mod fields;
pub mod frontmatter;
mod gitgate;
mod library;
mod limits;
mod route;
pub mod yaml;

pub use agent::{AGENT_KEYS, Agent, AgentSource, PASSTHROUGH_KEYS};
pub use bottle::{AgentProvider, BOTTLE_KEYS, BottleFile, REMOVED_BOTTLE_KEYS};
pub use compose::{Bottle, Sourced, SourcedGitUser};
pub use env::{AskMode, EnvValue, Resolved, is_env_name, resolve as resolve_env};
pub use error::ManifestError;
pub use fields::closest;
pub use gitgate::{GitUser, Repo, RepoKey, ssh_host};
pub use library::{Entry, Library, Manifest, parse_agent_text, parse_bottle_text};
pub use limits::{LIMIT_KEYS, Limits, parse_size, show_size};
pub use route::{
    Auth, AuthScheme, DEFAULT_PORT, Dlp, GitPolicy, HeaderMatch, INBOUND_DETECTORS, Match, OUTBOUND_DETECTORS, OnMatch,
    PathKind, PathMatch, PortRange, Route, is_numeric_host, validate_host, validate_proposed_host,
};

/// The file-name rule for agents, bottles, repos and providers: `^[a-z][a-z0-9-]*$`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}
