//! `$BOT_BOTTLE_HOME`: where manifests and state live.

use std::path::{Path, PathBuf};

/// Why there is no home to keep bot-bottle's files in.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `BOT_BOTTLE_HOME` nor `HOME` is set.
    #[error("cannot find the home directory: set HOME, or BOT_BOTTLE_HOME to where bot-bottle keeps its files")]
    NoHome,
}

/// The root of bot-bottle's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `BOT_BOTTLE_HOME` if set and non-empty, else `$HOME/.bot-bottle`.
    pub fn from_env() -> Result<Home, HomeError> {
        Self::from_vars(std::env::var_os("BOT_BOTTLE_HOME"), std::env::var_os("HOME"))
    }

    fn from_vars(bb_home: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Result<Home, HomeError> {
        if let Some(root) = bb_home.filter(|v| !v.is_empty()) {
            return Ok(Home::new(root));
        }
        let home = home.filter(|v| !v.is_empty()).ok_or(HomeError::NoHome)?;
        Ok(Home::new(Path::new(&home).join(".bot-bottle")))
    }

    /// Its root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where its bottles are (`bottles/`).
    pub fn bottles_dir(&self) -> PathBuf {
        self.root.join("bottles")
    }

    /// Where its agents are (`agents/`).
    pub fn agents_dir(&self) -> PathBuf {
        self.root.join("agents")
    }

    /// Where provider plugins are (`contrib/`).
    pub fn contrib_dir(&self) -> PathBuf {
        self.root.join("contrib")
    }

    /// Where bottles' state dirs are (`state/`).
    pub fn state_root(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `state/<identity>/`. The identity must already be a valid slug.
    pub fn state_dir(&self, identity: &str) -> PathBuf {
        self.state_root().join(identity)
    }

    /// Whether a new bottle may not take `identity`: a running or preserved
    /// bottle has its state directory.
    pub fn identity_taken(&self, identity: &str) -> bool {
        self.state_dir(identity).exists()
    }

    /// Identities with a state directory, sorted.
    pub fn identities(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state_root())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_bottle_home_wins_then_home() {
        let h = Home::from_vars(Some("/x".into()), Some("/home/u".into())).unwrap();
        assert_eq!(h.root(), Path::new("/x"));
        let h = Home::from_vars(Some("".into()), Some("/home/u".into())).unwrap();
        assert_eq!(h.root(), Path::new("/home/u/.bot-bottle"));
        assert!(Home::from_vars(None, None).is_err());
    }
}
