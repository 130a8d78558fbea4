//! One agent file: its keys and its body, the system prompt.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::ManifestError;
use crate::fields::Ctx;
use crate::gitgate::{self, GitUser};
use crate::yaml::Node;

/// The keys an agent's frontmatter may hold.
pub const AGENT_KEYS: &[&str] = &["bottle", "skills", "git-gate"];

/// Claude Code subagent keys: accepted and ignored, so one file serves both.
pub const PASSTHROUGH_KEYS: &[&str] = &["name", "description", "model", "color", "memory", "tools"];

/// Where an agent file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// `~/.bot-bottle/agents/`
    Home,
    /// `<cwd>/.bot-bottle/agents/`, shadowing a home agent of the same name.
    Cwd,
}

/// An agent: the CLI's bottles, skills and prompt, from one Markdown file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agent {
    /// Its name (the file's stem).
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// Where it was found.
    pub source: AgentSource,
    /// Default bottles, pre-selected at start.
    pub bottles: Vec<String>,
    /// Host skill directories copied into the agent.
    pub skills: Vec<String>,
    /// Overlays the bottle's git identity field by field.
    pub git_user: GitUser,
    /// The trimmed Markdown body.
    pub prompt: String,
}

pub(crate) fn parse(
    name: &str,
    file: &Path,
    source: AgentSource,
    root: &Node,
    body: &str,
) -> Result<Agent, ManifestError> {
    let ctx = Ctx::new(file, format!("agent '{name}'"));
    let entries = ctx.map("", root)?;
    let allowed: Vec<&str> = AGENT_KEYS.iter().chain(PASSTHROUGH_KEYS).copied().collect();
    ctx.check_keys(
        "",
        root,
        entries,
        &allowed,
        &[
            ("git", "repos belong in a bottle's `git-gate.repos`; an agent may set only `git-gate.user`"),
            ("git_user", "move it to `git-gate.user` ({name, email})"),
        ],
    )?;
    let mut agent = Agent {
        name: name.to_string(),
        file: file.to_path_buf(),
        source,
        bottles: Vec::new(),
        skills: Vec::new(),
        git_user: GitUser::default(),
        prompt: body.trim().to_string(),
    };
    for (key, value) in entries {
        match key.as_str() {
            "bottle" => agent.bottles = ctx.name_or_list("bottle", value)?,
            "skills" => {
                for (i, item) in ctx.list("skills", value)?.iter().enumerate() {
                    let skill = ctx.string(&format!("skills[{i}]"), item)?;
                    if skill.is_empty() || skill.contains('/') || skill.starts_with('.') {
                        return Err(ctx.at(
                            item,
                            &format!("skills[{i}]"),
                            format!("agent '{name}' skill '{skill}' must be a directory name under ~/.claude/skills/"),
                        ));
                    }
                    agent.skills.push(skill);
                }
            }
            "git-gate" => {
                let gg = ctx.keyed_or_empty(
                    "git-gate",
                    value,
                    &["user"],
                    &[("repos", "credentials stay in bottles: move `repos` to a bottle under ~/.bot-bottle/bottles/")],
                )?;
                if let Some(user) = crate::fields::get(gg, "user") {
                    agent.git_user = gitgate::parse_user(&ctx, "git-gate.user", user)?;
                }
            }
            _ => {} // passthrough keys
        }
    }
    Ok(agent)
}
