//! Manifest errors. Every message names the file, the key and the fix, and
//! never a value that could be a secret.

use std::path::PathBuf;

/// Why agents and bottles could not be read into a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file that parsed but breaks a rule; `key` is the dotted key path.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The line, when known.
        line: Option<usize>,
        /// The dotted key path.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// An agent or bottle that is not in the library.
    #[error("no {kind} named '{name}'; available {kind}s: {}{}", list_or_none(available), hint)]
    NotFound {
        /// `agent` or `bottle`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The names there are.
        available: Vec<String>,
        /// What to do (may be empty).
        hint: String,
    },
    /// A file that could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The original's old JSON configuration, which this version does not read.
    #[error(
        "{} is the old JSON configuration, which this version does not read; \
         move each bottle to {}/bottles/<name>.md and each agent to {}/agents/<name>.md \
         (Markdown with YAML frontmatter; see `bot-bottle init`)",
        file.display(), home.display(), home.display()
    )]
    LegacyConfig {
        /// The old configuration file.
        file: PathBuf,
        /// The home the new files go in.
        home: PathBuf,
    },
    /// An env value could not be resolved; names the variable, never a value.
    #[error("{message}")]
    Env {
        /// The variable.
        variable: String,
        /// What is wrong.
        message: String,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
}

impl ManifestError {
    /// The dotted key path of an `Invalid` error, for tests and tooling.
    pub fn key(&self) -> Option<&str> {
        match self {
            ManifestError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}
