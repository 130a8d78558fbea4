//! The manifest library: where agent and bottle files are found, loaded
//! lazily, and composed into one agent plus one effective bottle.
//!
//! Trust boundary: bottles are read only from `$BOT_BOTTLE_HOME/bottles/`;
//! agents from `$BOT_BOTTLE_HOME/agents/` and `<cwd>/.bot-bottle/agents/`
//! (which shadows). A `<cwd>/.bot-bottle/bottles/` is never read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::{self, Agent, AgentSource};
use crate::bottle::{self, BottleFile};
use crate::compose::{Bottle, SourcedGitUser};
use crate::error::ManifestError;
use crate::frontmatter;
use crate::yaml;

/// A manifest file found by listing; not parsed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// For agents: where it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<AgentSource>,
}

/// One agent and the effective bottle it runs in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// The agent.
    pub agent: Agent,
    /// The bottles chosen, in merge order.
    pub bottle_names: Vec<String>,
    /// The effective bottle: the chosen bottles merged.
    pub bottle: Bottle,
}

impl Manifest {
    /// The git identity: the bottle's, overlaid field by field by the agent's.
    pub fn git_user(&self) -> SourcedGitUser {
        let mut user = self.bottle.git_user.clone();
        user.overlay(&self.agent.git_user, &format!("agent {}", self.agent.name));
        user
    }
}

/// The agents and bottles of a `~/.bot-bottle` (and of the working directory's `.bot-bottle`).
pub struct Library {
    home: PathBuf,
    cwd: Option<PathBuf>,
    warnings: Vec<String>,
    resolved: HashMap<String, Bottle>,
}

const LEGACY_FILES: &[&str] = &["bot-bottle.json", "claude-bottle.json"];

impl Library {
    /// Open the library at `home` (`$BOT_BOTTLE_HOME`). `cwd` is where repo
    /// agents are looked for; `user_home` is `$HOME`, checked for the old
    /// JSON configuration.
    pub fn open(home: &Path, cwd: Option<&Path>, user_home: Option<&Path>) -> Result<Library, ManifestError> {
        if !home.is_dir() {
            let legacy = [user_home, cwd]
                .into_iter()
                .flatten()
                .filter(|dir| !dir.join(".bot-bottle").is_dir())
                .flat_map(|dir| LEGACY_FILES.iter().map(move |f| dir.join(f)))
                .find(|f| f.is_file());
            if let Some(file) = legacy {
                return Err(ManifestError::LegacyConfig { file, home: home.to_path_buf() });
            }
        }
        let mut warnings = Vec::new();
        if let Some(cwd) = cwd {
            let repo_bottles = cwd.join(".bot-bottle").join("bottles");
            if repo_bottles.is_dir() && Some(repo_bottles.as_path()) != Some(home.join("bottles").as_path()) {
                warnings.push(format!(
                    "ignoring {}: bottles hold credentials and egress policy, so they are read only from {}",
                    repo_bottles.display(),
                    home.join("bottles").display()
                ));
            }
        }
        Ok(Library { home: home.to_path_buf(), cwd: cwd.map(Path::to_path_buf), warnings, resolved: HashMap::new() })
    }

    /// Warnings found while opening or listing (shown once by the CLI).
    pub fn warnings(&self) -> Vec<String> {
        let mut all = self.warnings.clone();
        for dir in self.agent_dirs().into_iter().map(|(d, _)| d).chain([self.bottles_dir()]) {
            all.extend(scan(&dir).1);
        }
        all
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where the home's bottles are.
    pub fn bottles_dir(&self) -> PathBuf {
        self.home.join("bottles")
    }

    /// Where the home's agents are.
    pub fn agents_dir(&self) -> PathBuf {
        self.home.join("agents")
    }

    fn agent_dirs(&self) -> Vec<(PathBuf, AgentSource)> {
        let mut dirs = vec![(self.agents_dir(), AgentSource::Home)];
        if let Some(cwd) = &self.cwd {
            let repo = cwd.join(".bot-bottle").join("agents");
            if repo != self.agents_dir() {
                dirs.push((repo, AgentSource::Cwd));
            }
        }
        dirs
    }

    /// Bottle names, from file names only.
    pub fn bottles(&self) -> Vec<Entry> {
        scan(&self.bottles_dir()).0.into_iter().map(|(name, path)| Entry { name, path, source: None }).collect()
    }

    /// Agent names, from file names only; a cwd agent shadows a home agent.
    pub fn agents(&self) -> Vec<Entry> {
        let mut by_name: std::collections::BTreeMap<String, Entry> = Default::default();
        for (dir, source) in self.agent_dirs() {
            for (name, path) in scan(&dir).0 {
                by_name.insert(name.clone(), Entry { name, path, source: Some(source) });
            }
        }
        by_name.into_values().collect()
    }

    /// Load and validate one agent.
    pub fn agent(&self, name: &str) -> Result<Agent, ManifestError> {
        let hint = format!("; create one with `bot-bottle init` or add {}/{name}.md", self.agents_dir().display());
        let entry = find(self.agents(), "agent", name, hint)?;
        let text = read(&entry.path)?;
        parse_agent_text(name, &entry.path, entry.source.unwrap_or(AgentSource::Home), &text)
    }

    /// One bottle file as written (its `extends` not applied).
    pub fn bottle_file(&self, name: &str) -> Result<BottleFile, ManifestError> {
        let entry = find(self.bottles(), "bottle", name, format!("; add {}/{name}.md", self.bottles_dir().display()))?;
        parse_bottle_text(name, &entry.path, &read(&entry.path)?)
    }

    /// A bottle with its `extends` resolved, validated as complete.
    pub fn bottle(&mut self, name: &str) -> Result<Bottle, ManifestError> {
        let bottle = self.resolve(name, &mut Vec::new())?;
        self.validate_complete(&bottle)?;
        Ok(bottle)
    }

    /// Each bottle's chain of `extends` as `child <- parent <- …` for pickers;
    /// a bottle that fails to load shows its name only.
    pub fn extends_chain(&self, name: &str) -> String {
        let mut chain = vec![name.to_string()];
        let mut current = name.to_string();
        while let Ok(file) = self.bottle_file(&current) {
            let Some(parent) = file.extends.first() else {
                break;
            };
            if chain.contains(parent) || chain.len() > 16 {
                break;
            }
            let shown = if file.extends.len() > 1 { format!("[{}]", file.extends.join(", ")) } else { parent.clone() };
            chain.push(shown);
            current = parent.clone();
        }
        chain.join(" <- ")
    }

    fn resolve(&mut self, name: &str, stack: &mut Vec<String>) -> Result<Bottle, ManifestError> {
        if let Some(done) = self.resolved.get(name) {
            return Ok(done.clone());
        }
        let file = self.bottle_file(name)?;
        let path = self.bottles_dir().join(format!("{name}.md"));
        stack.push(name.to_string());
        let mut merged = Bottle::default();
        for parent in &file.extends {
            let invalid = |message: String| ManifestError::Invalid {
                file: path.clone(),
                line: None,
                key: "extends".to_string(),
                message,
            };
            if parent == name {
                return Err(invalid(format!("bottle '{name}' extends itself; remove '{name}' from its `extends`")));
            }
            if let Some(at) = stack.iter().position(|s| s == parent) {
                let mut cycle: Vec<&str> = stack[at..].iter().map(String::as_str).collect();
                cycle.push(parent);
                return Err(invalid(format!(
                    "bottle '{name}' closes an extends cycle: {}; remove one link",
                    cycle.join(" -> ")
                )));
            }
            if !self.bottles().iter().any(|e| &e.name == parent) {
                let available: Vec<String> = self.bottles().into_iter().map(|e| e.name).filter(|n| n != name).collect();
                return Err(invalid(format!(
                    "bottle '{name}' extends '{parent}', which does not exist in {}; available bottles: {}",
                    self.bottles_dir().display(),
                    if available.is_empty() { "(none)".to_string() } else { available.join(", ") }
                )));
            }
            let resolved = self.resolve(parent, stack)?;
            merged.overlay(&resolved);
        }
        stack.pop();
        merged.overlay(&Bottle::from_file(&file));
        self.resolved.insert(name.to_string(), merged.clone());
        Ok(merged)
    }

    /// Repos need `url` once every layer is applied. `host_key` may be
    /// left out, as in the original: the launch pins the key the upstream
    /// offers on first use (weaker than a pinned `host_key`).
    fn validate_complete(&self, bottle: &Bottle) -> Result<(), ManifestError> {
        for (name, repo) in &bottle.repos {
            if repo.value.url.is_none() {
                return Err(ManifestError::Invalid {
                    file: self.bottles_dir().join(format!("{}.md", repo.origin)),
                    line: None,
                    key: format!("git-gate.repos.{name}.url"),
                    message: format!(
                        "bottle '{}' repo '{name}' has no `url`; add the SSH upstream, e.g. ssh://git@host/org/repo.git",
                        repo.origin
                    ),
                });
            }
        }
        Ok(())
    }

    /// The agent and the fold of `bottles` (or the agent's default bottles
    /// when `bottles` is empty).
    pub fn compose(&mut self, agent_name: &str, bottles: &[String]) -> Result<Manifest, ManifestError> {
        let agent = self.agent(agent_name)?;
        let names = if bottles.is_empty() { agent.bottles.clone() } else { bottles.to_vec() };
        let mut resolved = Vec::new();
        for name in &names {
            resolved.push(self.bottle(name)?);
        }
        Ok(Manifest { agent, bottle_names: names, bottle: Bottle::merge_all(&resolved) })
    }
}

/// The entry named `name`, or a not-found error listing what exists.
fn find(entries: Vec<Entry>, kind: &'static str, name: &str, hint: String) -> Result<Entry, ManifestError> {
    let available = entries.iter().map(|e| e.name.clone()).collect();
    entries.into_iter().find(|e| e.name == name).ok_or_else(|| ManifestError::NotFound {
        kind,
        name: name.to_string(),
        available,
        hint,
    })
}

fn read(path: &Path) -> Result<String, ManifestError> {
    let meta = std::fs::metadata(path).map_err(|source| ManifestError::Io { file: path.to_path_buf(), source })?;
    if meta.len() > frontmatter::MAX_FILE_BYTES as u64 {
        return Err(ManifestError::Invalid {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!(
                "is larger than {} bytes; manifests are small Markdown files",
                frontmatter::MAX_FILE_BYTES
            ),
        });
    }
    std::fs::read_to_string(path).map_err(|source| ManifestError::Io { file: path.to_path_buf(), source })
}

/// `(name, path)` of each `<name>.md` in `dir`, sorted, and warnings for
/// Markdown files whose names break the rule.
fn scan(dir: &Path) -> (Vec<(String, PathBuf)>, Vec<String>) {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return (found, warnings);
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".md")) else {
            continue;
        };
        if crate::is_valid_name(stem) {
            found.push((stem.to_string(), path));
        } else {
            warnings.push(format!(
                "ignoring {}: a manifest file name must match ^[a-z][a-z0-9-]*$ (rename it)",
                path.display()
            ));
        }
    }
    found.sort();
    warnings.sort();
    (found, warnings)
}

/// Split and parse YAML, mapping YAML lines to file lines (YAML starts on line 2).
fn frontmatter_yaml(path: &Path, text: &str) -> Result<(yaml::Node, String), ManifestError> {
    let invalid = |line: Option<usize>, message: String| ManifestError::Invalid {
        file: path.to_path_buf(),
        line,
        key: String::new(),
        message,
    };
    let (yaml_text, body) = frontmatter::split(text).map_err(|why| invalid(None, why))?;
    let mut root = yaml::parse(yaml_text)
        .map_err(|e| invalid(Some(e.line + 1), format!("invalid YAML frontmatter: {}", e.message)))?;
    shift_lines(&mut root, 1);
    Ok((root, body.to_string()))
}

fn shift_lines(node: &mut yaml::Node, by: usize) {
    node.line += by;
    match &mut node.value {
        yaml::Value::Seq(items) => items.iter_mut().for_each(|n| shift_lines(n, by)),
        yaml::Value::Map(entries) => entries.iter_mut().for_each(|(_, n)| shift_lines(n, by)),
        yaml::Value::Scalar { .. } => {}
    }
}

/// Parse a bottle file's text. `path` is used in errors only.
pub fn parse_bottle_text(name: &str, path: &Path, text: &str) -> Result<BottleFile, ManifestError> {
    let (root, _body) = frontmatter_yaml(path, text)?;
    bottle::parse(name, path, &root)
}

/// Parse an agent file's text. `path` is used in errors only.
pub fn parse_agent_text(name: &str, path: &Path, source: AgentSource, text: &str) -> Result<Agent, ManifestError> {
    let (root, body) = frontmatter_yaml(path, text)?;
    agent::parse(name, path, source, &root, &body)
}
