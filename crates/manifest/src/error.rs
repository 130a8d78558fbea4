//! Manifest errors. Every message names the file, the key and the fix, and
//! never a value that could be a secret.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file that parsed but breaks a rule; `key` is the dotted key path.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { file: PathBuf, line: Option<usize>, key: String, message: String },
    #[error("no {kind} named '{name}'; available {kind}s: {}{}", list_or_none(available), hint)]
    NotFound { kind: &'static str, name: String, available: Vec<String>, hint: String },
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is the old JSON configuration, which this version does not read; \
         move each bottle to {}/bottles/<name>.md and each agent to {}/agents/<name>.md \
         (Markdown with YAML frontmatter; see `bot-bottle init`)",
        file.display(), home.display(), home.display()
    )]
    LegacyConfig { file: PathBuf, home: PathBuf },
    /// An env value could not be resolved; names the variable, never a value.
    #[error("{message}")]
    Env { variable: String, message: String },
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
