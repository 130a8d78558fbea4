//! The smolmachines backend (spec/backends.md): the agent in a libkrun
//! microVM driven through the `smolvm` CLI ([`argv`], [`bottle`]), the
//! sidecar bundle in Docker at an IP derived from the identity ([`net`]).
//! `resume` comes here because `metadata.backend` says so.

pub mod argv;
pub mod bottle;
pub mod net;

use std::path::PathBuf;

use state::{BottleMetadata, Home};

use crate::engine::blocking;
use crate::engine::objects::{LABEL_AGENT, LABEL_HOME, LABEL_IDENTITY, LABEL_LABEL, LABEL_ROLE, LABEL_STARTED};
use crate::error::BackendError;
use crate::plan::Plan;
use crate::registry::{
    ActiveBottle, Availability, Backend, CleanupPlan, RunningBottle, is_executable, launcher_alive, which,
};

/// The smolmachines backend: the agent in a smolvm microVM whose only reachable address is its sidecar's, the sidecar in a container on the host's Docker Engine.
pub struct Smolmachines;

impl Smolmachines {
    /// `BOT_BOTTLE_SMOLVM`, else `smolvm` on `PATH`.
    pub fn binary() -> Option<PathBuf> {
        match std::env::var_os("BOT_BOTTLE_SMOLVM") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)).filter(|p| is_executable(p)),
            _ => which("smolvm"),
        }
    }

    fn smolvm(&self) -> Result<bottle::Smolvm, BackendError> {
        let availability = self.available();
        match Self::binary() {
            Some(bin) if availability.available => Ok(bottle::Smolvm { bin }),
            _ => Err(BackendError::Invalid {
                message: format!("the smolmachines backend is unavailable: {}", availability.reason),
            }),
        }
    }

    /// This home's machines (by their labels).
    fn own_machines(&self, home: &Home) -> Result<Vec<serde_json::Value>, BackendError> {
        let root = home.root().display().to_string();
        Ok(bottle::machines(&self.smolvm()?)?
            .into_iter()
            .filter(|m| m["labels"][LABEL_HOME].as_str() == Some(root.as_str()))
            .collect())
    }
}

impl Backend for Smolmachines {
    fn name(&self) -> &'static str {
        "smolmachines"
    }

    fn as_dyn(&self) -> &dyn Backend {
        self
    }

    fn available(&self) -> Availability {
        let Some(bin) = Self::binary() else {
            return Availability {
                available: false,
                reason: "smolvm not found: install it (pip install smolmachines) or set BOT_BOTTLE_SMOLVM".to_string(),
            };
        };
        // A stand-in for smolvm (tests, on hosts where no microVM boots)
        // needs no hypervisor.
        if std::env::var_os("BOT_BOTTLE_SMOLVM_STANDIN").is_some_and(|v| v == "1") {
            return Availability { available: true, reason: format!("smolvm stand-in at {}", bin.display()) };
        }
        if cfg!(target_os = "linux") && !std::path::Path::new("/dev/kvm").exists() {
            return Availability {
                available: false,
                reason: "/dev/kvm is missing: enable KVM on this host".to_string(),
            };
        }
        if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            return Availability {
                available: false,
                reason: "KVM here is the nested kvm_pvm hypervisor, on which microVMs do not boot".to_string(),
            };
        }
        Availability { available: true, reason: format!("smolvm at {}", bin.display()) }
    }

    fn runtime(&self) -> String {
        "libkrun microVM (smolvm), network allowlist = the sidecar's /32".to_string()
    }

    fn launch(&self, plan: Plan) -> Result<Box<dyn RunningBottle>, BackendError> {
        let progress = |line: &str| eprintln!("bot-bottle: {line}");
        Ok(Box::new(bottle::launch_blocking(&plan, self.smolvm()?, &progress)?))
    }

    /// Unavailable here: an error, so `list` names the backend it could
    /// not check rather than skipping it.
    fn enumerate_active(&self, home: &Home) -> Result<Vec<ActiveBottle>, BackendError> {
        let text = |m: &serde_json::Value, k: &str| m["labels"][k].as_str().unwrap_or_default().to_string();
        Ok(self
            .own_machines(home)?
            .iter()
            .filter(|m| m["state"] == "running" && m["labels"][LABEL_ROLE] != bottle::ROLE_EXPORT)
            .map(|m| ActiveBottle {
                identity: text(m, LABEL_IDENTITY),
                backend: self.name().to_string(),
                agent: text(m, LABEL_AGENT),
                label: text(m, LABEL_LABEL),
                started: text(m, LABEL_STARTED),
                services: vec!["agent".to_string(), "sidecar".to_string()],
            })
            .collect())
    }

    fn stop(&self, home: &Home, meta: &BottleMetadata) -> Result<(), BackendError> {
        let smolvm = self.smolvm()?;
        let machine = bottle::machine_name(&meta.identity);
        // After the session's own end when that came first: then there is
        // no bottle left to stop.
        let _end = crate::registry::wait_turn(home, &meta.identity);
        if !bottle::machines(&smolvm)?.iter().any(|m| m["name"] == machine.as_str()) {
            return Err(BackendError::Invalid {
                message: format!("the smolmachines backend has no running bottle {}", meta.identity),
            });
        }
        blocking(async {
            let docker = crate::engine::connect().await?;
            bottle::stop(&docker, &smolvm, home, &meta.identity).await
        })
    }

    fn save_workspace(&self, home: &Home, meta: &BottleMetadata) -> Result<bool, BackendError> {
        let smolvm = self.smolvm()?;
        let machine = bottle::machine_name(&meta.identity);
        // Not beside a session end copying the same workspace into the
        // same state dir; after it, the kept copy is the one to export.
        let _end = crate::registry::wait_turn(home, &meta.identity);
        if !bottle::machines(&smolvm)?.iter().any(|m| m["name"] == machine.as_str()) {
            return Ok(false);
        }
        // `false` (not as it is now) when the copy failed.
        let copied = bottle::snapshot_workspace(&smolvm, &machine, &home.state_dir(&meta.identity));
        if let Err(e) = &copied {
            eprintln!("bot-bottle: the running agent's workspace was not copied out ({e})");
        }
        Ok(copied.is_ok())
    }

    fn workspace_from_commit(&self, home: &Home, meta: &BottleMetadata) -> Result<bool, BackendError> {
        let smolvm = self.smolvm()?;
        // Not beside a launch or session end writing the same kept copy.
        let _turn = crate::registry::wait_turn(home, &meta.identity);
        blocking(bottle::workspace_from_commit(&smolvm, home, &meta.identity))
    }

    /// `pack create --from-vm` needs the machine stopped: it is stopped,
    /// packed into the state dir and started again (its files are kept,
    /// its processes are not). The session running the agent in it ends
    /// with its agent; its end waits for the pack (so that it copies the
    /// workspace out of the restarted machine instead of finding it
    /// stopped) and keeps the state. `resume` boots from the pack.
    fn commit(&self, home: &Home, meta: &BottleMetadata) -> Result<String, BackendError> {
        let smolvm = self.smolvm()?;
        let machine = bottle::machine_name(&meta.identity);
        let dir = home.state_dir(&meta.identity);
        let attached = launcher_alive(&dir);
        let pack = {
            let _end = crate::registry::wait_turn(home, &meta.identity);
            bottle::commit_machine(&smolvm, &machine, &dir, true)?
        };
        if attached {
            eprintln!(
                "bot-bottle: {}'s machine was stopped to be packed (smolvm packs only a stopped machine): the agent's session in it has ended, its state kept",
                meta.identity
            );
        }
        Ok(pack.display().to_string())
    }

    /// The bundle's sidecar is a Docker container, as on docker.
    fn logs(&self, home: &Home, meta: &BottleMetadata, follow: bool) -> Result<(), BackendError> {
        blocking(async {
            let docker = crate::engine::connect().await?;
            crate::engine::sidecar::logs(&docker, home, &meta.identity, follow).await
        })
    }

    fn prepare_cleanup(&self, home: &Home) -> Result<CleanupPlan, BackendError> {
        let mut items = Vec::new();
        if self.available().available {
            for m in self.own_machines(home)? {
                let identity = m["labels"][LABEL_IDENTITY].as_str().unwrap_or_default();
                if !launcher_alive(&home.state_dir(identity)) {
                    items.push(format!("machine {}", m["name"].as_str().unwrap_or_default()));
                }
            }
        }
        Ok(CleanupPlan { backend: self.name().to_string(), items })
    }

    fn cleanup(&self, _home: &Home, plan: &CleanupPlan) -> Result<(), BackendError> {
        let smolvm = self.smolvm()?;
        for item in &plan.items {
            if let Some(name) = item.strip_prefix("machine ") {
                let _ = smolvm.run(&argv::stop(name));
                smolvm.run(&argv::delete(name))?;
            }
        }
        Ok(())
    }
}

impl RunningBottle for bottle::SmolBottle {
    fn identity(&self) -> &str {
        &self.objects.identity
    }

    fn exec(&self, argv: &[String], tty: bool) -> Result<i32, BackendError> {
        bottle::SmolBottle::exec(self, argv, tty)
    }

    fn copy_in(&self, host: &std::path::Path, guest: &str) -> Result<(), BackendError> {
        let name = host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let uid = crate::engine::provision::AGENT_UID as u32;
        self.smolvm.run(&argv::copy_in(
            &self.machine,
            &host.display().to_string(),
            &format!("{guest}/{name}"),
            0o644,
            uid,
        ))?;
        Ok(())
    }

    fn copy_out(&self, guest: &str, host: &std::path::Path) -> Result<(), BackendError> {
        let script = "tar -cf - -C \"$(dirname \"$1\")\" \"$(basename \"$1\")\"".to_string();
        let argv = ["sh".to_string(), "-c".into(), script, "sh".into(), guest.to_string()];
        let data = self.smolvm.run(&argv::exec(&self.machine, &argv::Exec::default(), &argv))?;
        std::fs::create_dir_all(host)
            .map_err(|source| BackendError::Io { what: format!("cannot create {}", host.display()), source })?;
        let mut archive = tar::Archive::new(&data[..]);
        archive.set_preserve_permissions(false);
        archive
            .unpack(host)
            .map_err(|source| BackendError::Io { what: format!("cannot unpack into {}", host.display()), source })
    }

    fn teardown(mut self: Box<Self>) -> Result<(), BackendError> {
        bottle::SmolBottle::teardown(&mut self)
    }
}
