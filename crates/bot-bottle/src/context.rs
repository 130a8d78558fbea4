//! What every command needs: the home, the backend registry, the host.

use anyhow::{Result, bail};
use backend::{HostEnv, Registry};
use manifest::Library;
use state::Home;

pub struct Context {
    pub home: Home,
    pub registry: Registry,
    pub host: HostEnv,
}

impl Context {
    pub fn from_env() -> Result<Context> {
        Ok(Context { home: Home::from_env()?, registry: Registry::default(), host: HostEnv::current() })
    }

    /// The manifest library; its warnings are printed once here.
    pub fn library(&self) -> Result<Library> {
        let lib = Library::open(self.home.root(), Some(&self.host.cwd), Some(&self.host.user_home))?;
        for w in lib.warnings() {
            warn(&w);
        }
        Ok(lib)
    }
}

pub fn warn(message: &str) {
    eprintln!("bot-bottle: warning: {message}");
}

/// An identity given on the command line must be a slug: it names a
/// directory under `state/`, so anything else (`..`, `/`) is refused.
pub fn check_identity(identity: &str) -> Result<()> {
    if identity.is_empty() || state::slugify(identity) != identity {
        bail!(
            "'{identity}' is not a bottle identity (lowercase letters, digits and '-'); see `bot-bottle list active`"
        );
    }
    Ok(())
}
