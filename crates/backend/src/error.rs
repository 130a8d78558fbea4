//! Backend errors, each saying what to do.

use std::path::PathBuf;

/// Every way a backend operation fails. Callers match on the kind (Ctrl-C
/// is [`BackendError::Interrupted`], not an engine failure); each message
/// says what to do. New kinds may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The manifest is not a bottle (its error names the file and key).
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The state dir could not be made or written.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// A bottle's `metadata.json` could not be read or written.
    #[error(transparent)]
    Metadata(#[from] state::MetadataError),
    /// An identity is malformed or taken.
    #[error(transparent)]
    Identity(#[from] state::IdentityError),
    /// An operation this backend does not implement yet; never pretend.
    #[error("the {backend} backend cannot {operation} yet: not implemented in this version of bot-bottle")]
    NotImplemented {
        /// The backend's name.
        backend: String,
        /// What was asked of it.
        operation: &'static str,
    },
    /// A backend name no registered backend answers to.
    #[error("unknown backend '{name}'{}; known backends: {}", origin.as_ref().map(|o| format!(" (named by {})", o.display())).unwrap_or_default(), known.join(", "))]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// The file that named it, if one did.
        origin: Option<PathBuf>,
        /// The backends this build has.
        known: Vec<String>,
    },
    /// A backend the original bot-bottle names (`macos-container`) that
    /// this build does not have.
    #[error("this build of bot-bottle has no {name} backend{}; known backends: {}", origin.as_ref().map(|o| format!(" (named by {})", o.display())).unwrap_or_default(), known.join(", "))]
    MissingBackend {
        /// The original's backend name.
        name: String,
        /// The file that named it, if one did.
        origin: Option<PathBuf>,
        /// The backends this build has.
        known: Vec<String>,
    },
    /// A plan or its inputs cannot make a bottle; the message says which
    /// and what to change.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the key or variable.
        message: String,
    },
    /// The bottle CA could not be minted or written.
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
        /// What was asked of the engine (`create container X`).
        operation: String,
        /// The engine's answer.
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
    DeployKey {
        /// The manifest's name for the repo.
        repo: String,
        /// Why.
        message: String,
    },
    /// The isolation self-test failed: the checks that did, each with what
    /// it saw.
    #[error("the isolation self-test failed, so the agent was not started: {}{hint}", failed.join(", "))]
    SelfTest {
        /// Each failed check with what it saw.
        failed: Vec<String>,
        /// What to do about it (may be empty).
        hint: &'static str,
    },
    /// A sidecar, shim or agent ended when it must not have.
    #[error("{0}")]
    Ended(String),
    /// A step of the launch or the session failed in a way none of the
    /// above names.
    #[error("{0}")]
    Launch(String),
    /// Teardown or cleanup could not remove everything; what is left.
    #[error("{what} left: {}", left.join("; "))]
    Leftovers {
        /// What was being removed.
        what: String,
        /// Each object still there.
        left: Vec<String>,
    },
    /// A host file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// A repo key the sidecar's host side could not put in place: a deploy key
/// keeps its kind (and its repo), a state dir error its own; a key file
/// that cannot be read is the plan's to fix.
impl From<sidecar::keys::KeyError> for BackendError {
    fn from(e: sidecar::keys::KeyError) -> BackendError {
        match e {
            sidecar::keys::KeyError::DeployKey { repo, message } => BackendError::DeployKey { repo, message },
            sidecar::keys::KeyError::State(e) => e.into(),
            other => BackendError::Invalid { message: other.to_string() },
        }
    }
}
