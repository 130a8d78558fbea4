//! Backend errors, each saying what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Metadata(#[from] state::MetadataError),
    #[error(transparent)]
    Identity(#[from] state::IdentityError),
    /// An operation this backend does not implement yet; never pretend.
    #[error("the {backend} backend cannot {operation} yet: not implemented in this version of bot-bottle")]
    NotImplemented { backend: String, operation: &'static str },
    #[error("unknown backend '{name}'{}; known backends: {}", origin.as_ref().map(|o| format!(" (named by {})", o.display())).unwrap_or_default(), known.join(", "))]
    UnknownBackend { name: String, origin: Option<PathBuf>, known: Vec<String> },
    /// A backend the original bot-bottle names (`macos-container`) that
    /// this build does not have.
    #[error("this build of bot-bottle has no {name} backend{}; known backends: {}", origin.as_ref().map(|o| format!(" (named by {})", o.display())).unwrap_or_default(), known.join(", "))]
    MissingBackend { name: String, origin: Option<PathBuf>, known: Vec<String> },
    #[error("{message}")]
    Invalid { message: String },
    #[error("cannot mint the bottle CA: {0}")]
    Ca(String),
    /// The Docker Engine refused or failed; the message says what to do.
    #[error("{0}")]
    Docker(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}
