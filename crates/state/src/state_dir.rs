//! One bottle's state directory: `state/<identity>/` with its component
//! subdirectories, `.preserve` marker and secret files.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::home::Home;

/// Per-component scratch directories.
/// The directories every state dir holds, one per part of the bottle.
pub const COMPONENTS: &[&str] = &["agent", "egress", "git-gate", "supervise"];

/// Why a state dir or a file in it could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done (`create directory`).
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The identity's state dir is there already.
    #[error("{}: already exists; another bottle has this identity", path.display())]
    Exists {
        /// The state dir.
        path: PathBuf,
    },
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io { path: path.to_path_buf(), action, source }
}

/// One bottle's state dir (`~/.bot-bottle/state/IDENTITY`), 0700.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// The marker file that keeps a state dir after its session ends.
    pub const PRESERVE: &'static str = ".preserve";

    /// Create a new state dir (mode 0700, and its component dirs); it must
    /// not exist yet.
    pub fn create(home: &Home, identity: &str) -> Result<StateDir, StateError> {
        let root = home.state_root();
        DirBuilder::new().recursive(true).mode(0o700).create(&root).map_err(io(&root, "create directory"))?;
        let path = home.state_dir(identity);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists { path });
            }
            Err(e) => return Err(io(&path, "create directory")(e)),
        }
        let dir = StateDir { path };
        for c in COMPONENTS {
            dir.component(c)?;
        }
        Ok(dir)
    }

    /// An existing state dir.
    pub fn open(home: &Home, identity: &str) -> Option<StateDir> {
        let path = home.state_dir(identity);
        path.is_dir().then_some(StateDir { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/<name>/`, created with mode 0700 if missing.
    pub fn component(&self, name: &str) -> Result<PathBuf, StateError> {
        let p = self.path.join(name);
        DirBuilder::new().recursive(true).mode(0o700).create(&p).map_err(io(&p, "create directory"))?;
        Ok(p)
    }

    /// Write a file only the owner can read (0600), created that way so it is
    /// never readable by others, even briefly.
    pub fn write_secret_file(&self, relative: &str, bytes: &[u8]) -> Result<PathBuf, StateError> {
        let p = self.path.join(relative);
        if let Some(parent) = p.parent() {
            DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io(parent, "create directory"))?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .map_err(io(&p, "create file"))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io(&p, "set mode 0600"))?;
        f.write_all(bytes).map_err(io(&p, "write"))?;
        Ok(p)
    }

    /// Whether it is kept after the session.
    pub fn is_preserved(&self) -> bool {
        self.path.join(Self::PRESERVE).exists()
    }

    /// Keep it after the session (or not).
    pub fn set_preserved(&self, keep: bool) -> Result<(), StateError> {
        let marker = self.path.join(Self::PRESERVE);
        if keep {
            std::fs::write(&marker, b"").map_err(io(&marker, "write marker"))
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&marker, "remove marker")(e)),
                _ => Ok(()),
            }
        }
    }

    /// Delete the whole directory.
    pub fn remove(self) -> Result<(), StateError> {
        std::fs::remove_dir_all(&self.path).map_err(io(&self.path, "remove directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes_components_and_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("bb"));
        let dir = StateDir::create(&home, "dev-x1y2z").unwrap();
        assert_eq!(mode(dir.path()), 0o700);
        for c in COMPONENTS {
            assert_eq!(mode(&dir.path().join(c)), 0o700, "{c}");
        }
        let key = dir.write_secret_file("egress/ca.key", b"k").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert!(matches!(StateDir::create(&home, "dev-x1y2z"), Err(StateError::Exists { .. })));
        assert!(!dir.is_preserved());
        dir.set_preserved(true).unwrap();
        assert!(StateDir::open(&home, "dev-x1y2z").unwrap().is_preserved());
        dir.set_preserved(false).unwrap();
        dir.set_preserved(false).unwrap();
        assert_eq!(home.identities(), vec!["dev-x1y2z".to_string()]);
        dir.remove().unwrap();
        assert!(home.identities().is_empty());
    }
}
