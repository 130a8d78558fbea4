//! The backend contract (spec/backends.md) and the registry of backends.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use state::{BottleMetadata, Home};

use crate::error::BackendError;
use crate::plan::{BottleSpec, HostEnv, Plan, plan, write_plan};

/// Whether a backend can run here, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// Whether it can.
    pub available: bool,
    /// Shown in the backend picker and in errors.
    pub reason: String,
}

/// A live bottle, as a backend enumerates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveBottle {
    /// The bottle's identity.
    pub identity: String,
    /// The backend it runs on.
    pub backend: String,
    /// The agent it runs.
    pub agent: String,
    /// The operator's label for it.
    pub label: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Its parts that are up (`sidecar`, `agent`, …).
    pub services: Vec<String>,
}

/// Orphans a backend found, to show in one plan before removing them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupPlan {
    /// The backend that found them.
    pub backend: String,
    /// Each orphan, as the plan shows it.
    pub items: Vec<String>,
}

/// A launched bottle.
pub trait RunningBottle {
    /// The bottle's identity.
    fn identity(&self) -> &str;
    /// Run `argv` in the agent; with `tty`, wired to the operator's terminal.
    fn exec(&self, argv: &[String], tty: bool) -> Result<i32, BackendError>;
    /// Copy the host file or directory `host` into the agent at `guest`.
    fn copy_in(&self, host: &std::path::Path, guest: &str) -> Result<(), BackendError>;
    /// Copy `guest` out of the agent to `host`.
    fn copy_out(&self, guest: &str, host: &std::path::Path) -> Result<(), BackendError>;
    /// Tear everything down; called on every exit path.
    fn teardown(self: Box<Self>) -> Result<(), BackendError>;
}

/// One way of isolating a bottle. The CLI never branches on backend names.
pub trait Backend: Send + Sync {
    /// The name manifests and `--backend` use.
    fn name(&self) -> &'static str;
    /// Whether it can run here, and why not.
    fn available(&self) -> Availability;
    /// The isolation runtime, for the preflight (e.g. "runc", "gVisor").
    fn runtime(&self) -> String;

    /// Resolve everything and write `metadata.json` with this backend's name.
    fn prepare(&self, home: &Home, spec: BottleSpec, host: &HostEnv) -> Result<Plan, BackendError> {
        let plan = plan(self.as_dyn(), home, spec, host)?;
        write_plan(&plan)?;
        Ok(plan)
    }

    /// `self` as a trait object (for the default methods).
    fn as_dyn(&self) -> &dyn Backend;

    // The operations below fail with `NotImplemented` naming this backend
    // until the backend provides them: an honest error, never a pretend
    // success.

    /// Launch `plan`: every part up, the self-test passed, or nothing left.
    fn launch(&self, plan: Plan) -> Result<Box<dyn RunningBottle>, BackendError> {
        let _ = plan;
        Err(self.not_implemented("launch bottles"))
    }

    /// The live bottles of `home` on this backend.
    fn enumerate_active(&self, home: &Home) -> Result<Vec<ActiveBottle>, BackendError> {
        let _ = home;
        Err(self.not_implemented("list live bottles"))
    }

    /// Stop the bottle `meta` describes and remove its parts.
    fn stop(&self, home: &Home, meta: &BottleMetadata) -> Result<(), BackendError> {
        let _ = (home, meta);
        Err(self.not_implemented("stop bottles"))
    }

    /// Snapshot a running bottle; returns what `resume` boots from.
    fn commit(&self, home: &Home, meta: &BottleMetadata) -> Result<String, BackendError> {
        let _ = (home, meta);
        Err(self.not_implemented("commit bottles"))
    }

    /// Copy the `/workspace` of the bottle's commit (what `resume` boots
    /// from) into its state dir as the kept copy, without running it: for
    /// `export` when the last session end could not copy the workspace
    /// out and committed the bottle instead. `Ok(false)`: no commit, or
    /// not done by this backend.
    fn workspace_from_commit(&self, home: &Home, meta: &BottleMetadata) -> Result<bool, BackendError> {
        let _ = (home, meta);
        Ok(false)
    }

    /// Copy a running bottle's `/workspace` into its state dir now
    /// (`Ok(false)`: the bottle is not running here, or the copy failed,
    /// which is said).
    fn save_workspace(&self, home: &Home, meta: &BottleMetadata) -> Result<bool, BackendError> {
        let _ = (home, meta);
        Err(self.not_implemented("copy a running bottle's workspace"))
    }

    /// The sidecar's log lines.
    fn logs(&self, home: &Home, meta: &BottleMetadata, follow: bool) -> Result<(), BackendError> {
        let _ = (home, meta, follow);
        Err(self.not_implemented("show sidecar logs"))
    }

    /// Find what a killed launch or session left of `home`'s bottles.
    fn prepare_cleanup(&self, home: &Home) -> Result<CleanupPlan, BackendError> {
        let _ = home;
        Err(self.not_implemented("find orphaned bottles"))
    }

    /// Remove what `plan` lists.
    fn cleanup(&self, home: &Home, plan: &CleanupPlan) -> Result<(), BackendError> {
        let _ = (home, plan);
        Err(self.not_implemented("clean up"))
    }

    /// The error for an operation this backend does not provide.
    fn not_implemented(&self, operation: &'static str) -> BackendError {
        BackendError::NotImplemented { backend: self.name().to_string(), operation }
    }
}

/// The registered backends, by name.
#[derive(Clone)]
pub struct Registry {
    backends: Vec<Arc<dyn Backend>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { backends: vec![Arc::new(crate::Docker), Arc::new(crate::Smolmachines)] }
    }
}

impl Registry {
    /// The registered backends' names.
    pub fn names(&self) -> Vec<String> {
        self.backends.iter().map(|b| b.name().to_string()).collect()
    }

    /// Every registered backend.
    pub fn all(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The backend called `name`; an unknown one is an error naming the known ones.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Backend>, BackendError> {
        self.backends.iter().find(|b| b.name() == name).cloned().ok_or_else(|| {
            let (name, origin, known) = (name.to_string(), None, self.names());
            if NOT_IN_THIS_BUILD.contains(&name.as_str()) {
                BackendError::MissingBackend { name, origin, known }
            } else {
                BackendError::UnknownBackend { name, origin, known }
            }
        })
    }

    /// `docker` on Linux (and wherever nothing else is the default).
    pub fn platform_default(&self) -> &'static str {
        "docker"
    }

    /// `--backend`, then `BOT_BOTTLE_BACKEND`, then the platform default.
    pub fn choose(&self, flag: Option<&str>, env: Option<&str>) -> Result<Arc<dyn Backend>, BackendError> {
        let name = flag.or(env.filter(|v| !v.is_empty())).unwrap_or(self.platform_default());
        self.get(name)
    }
}

/// Backends the original bot-bottle has and this build does not: a
/// metadata file or flag naming one gets "this build has no …", not
/// "unknown".
const NOT_IN_THIS_BUILD: &[&str] = &["macos-container"];

/// The backend that owns `identity`: the one its `metadata.json` records,
/// whatever `BOT_BOTTLE_BACKEND` says. Metadata written before the field
/// existed (no `backend`) falls to `chosen` (`--backend`, then
/// `BOT_BOTTLE_BACKEND`), then the platform default, as the original
/// does. An identity with no metadata: the platform default, and `None`.
pub fn bottle_for_identity(
    registry: &Registry,
    home: &Home,
    identity: &str,
    chosen: Option<&str>,
) -> Result<(Arc<dyn Backend>, Option<BottleMetadata>), BackendError> {
    let dir = home.state_dir(identity);
    let chosen = chosen.filter(|c| !c.is_empty());
    match BottleMetadata::read(&dir) {
        Ok(meta) if meta.backend.is_empty() => Ok((registry.choose(chosen, None)?, Some(meta))),
        Ok(meta) => {
            let backend = registry.get(&meta.backend).map_err(|e| {
                let origin = Some(dir.join(BottleMetadata::FILE));
                match e {
                    BackendError::UnknownBackend { name, known, .. } => {
                        BackendError::UnknownBackend { name, origin, known }
                    }
                    BackendError::MissingBackend { name, known, .. } => {
                        BackendError::MissingBackend { name, origin, known }
                    }
                    other => other,
                }
            })?;
            Ok((backend, Some(meta)))
        }
        Err(state::MetadataError::Missing { .. }) => Ok((registry.get(registry.platform_default())?, None)),
        Err(e) => Err(e.into()),
    }
}

/// `PATH` lookup of an executable.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The launcher's pid file in a state dir: a bottle whose launcher is gone
/// (a killed CLI, a crash) is an orphan for `cleanup`.
pub const LAUNCHER_FILE: &str = "launcher.pid";

/// What this process writes in [`LAUNCHER_FILE`]: its pid and, where
/// `/proc` tells it, its start time, so that a pid reused since (after a
/// reboot) is not taken for the launcher.
pub fn launcher_record() -> String {
    let pid = std::process::id();
    match start_time(pid) {
        Some(t) => format!("{pid} {t}"),
        None => pid.to_string(),
    }
}

/// A process's start time (clock ticks after boot; `/proc/PID/stat`'s
/// 22nd field).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count from the last.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that launched the bottle in `state_dir` still runs
/// (a pid alone, as older launchers wrote, is taken at its word).
#[allow(unsafe_code)] // kill(pid, 0): see the SAFETY comment below.
pub fn launcher_alive(state_dir: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(state_dir.join(LAUNCHER_FILE)) else { return false };
    let mut fields = text.split_whitespace();
    let Some(pid) = fields.next().and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0) else { return false };
    let started = fields.next().and_then(|t| t.parse::<u64>().ok());
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists && started.is_none_or(|t| start_time(pid as u32).is_none_or(|now| now == t))
}

/// A command on a bottle (stop, commit, export) waits its turn behind
/// the bottle's launch or session end ([`state::EndLock`]), saying so.
pub(crate) fn wait_turn(home: &Home, identity: &str) -> Option<state::EndLock> {
    state::EndLock::wait(&home.state_dir(identity), state::EndLock::PATIENCE, || {
        eprintln!("bot-bottle: waiting for {identity}'s launch or session end to finish first")
    })
}

/// The bottle's turn to launch, after a stop or session end of its
/// earlier run still under way; held through the launch (the agent's
/// files in, the self-test passed).
pub(crate) fn launch_turn(plan: &Plan, progress: crate::engine::images::Progress<'_>) -> Option<state::EndLock> {
    state::EndLock::wait(&plan.state_dir(), state::EndLock::PATIENCE, || {
        progress("waiting for this bottle's stop or session end in another terminal to finish")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launcher_is_alive_only_as_the_process_that_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(LAUNCHER_FILE);
        assert!(!launcher_alive(dir.path()), "no file");
        std::fs::write(&file, launcher_record()).unwrap();
        assert!(launcher_alive(dir.path()), "{}", launcher_record());
        // This pid with another start time: a pid reused after a reboot.
        let (pid, start) = launcher_record().split_once(' ').map(|(p, t)| (p.to_string(), t.to_string())).unwrap();
        let other = start.parse::<u64>().unwrap() + 1;
        std::fs::write(&file, format!("{pid} {other}")).unwrap();
        assert!(!launcher_alive(dir.path()));
        // A pid alone (as older launchers wrote) is taken at its word.
        std::fs::write(&file, &pid).unwrap();
        assert!(launcher_alive(dir.path()));
        for junk in ["", "0", "-1", "x", "4194305000"] {
            std::fs::write(&file, junk).unwrap();
            assert!(!launcher_alive(dir.path()), "{junk:?}");
        }
    }
}
