//! Backend errors, each saying what to do.

use std::path::PathBuf;

/// Every way a backend operation fails. Callers match on the kind (Ctrl-C
/// is [`BackendError::Interrupted`], not an engine failure); each message
/// says what to do. New kinds may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// Ctrl-C: the launch stopped at its next step and removed what it had
    /// created.
    #[error("interrupted: the launch was cancelled and everything it created removed")]
    Interrupted,
    /// The Docker Engine could not be reached; the message says what to do.
    #[error("{0}")]
    EngineUnreachable(String),
    /// The Docker Engine refused or failed an operation.
    #[error("{operation}: {source}")]
    Engine {
        operation: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// An image could not be built, or a provider's CLI fetched for it.
    #[error("{0}")]
    Image(String),
    /// smolvm refused or failed (or printed what this version cannot read).
    #[error("{0}")]
    Smolvm(String),
    /// A Gitea deploy key for `repo` could not be minted.
    #[error("git-gate.repos.{repo}: {message}")]
    DeployKey { repo: String, message: String },
    /// The isolation self-test failed: the checks that did, each with what
    /// it saw.
    #[error("the isolation self-test failed, so the agent was not started: {}{hint}", failed.join(", "))]
    SelfTest { failed: Vec<String>, hint: &'static str },
    /// A sidecar, shim or agent ended when it must not have.
    #[error("{0}")]
    Ended(String),
    /// A step of the launch or the session failed in a way none of the
    /// above names.
    #[error("{0}")]
    Launch(String),
    /// Teardown or cleanup could not remove everything; what is left.
    #[error("{what} left: {}", left.join("; "))]
    Leftovers { what: String, left: Vec<String> },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}
