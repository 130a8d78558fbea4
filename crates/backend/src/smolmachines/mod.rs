//! The smolmachines backend: the agent in a libkrun microVM driven through
//! the `smolvm` CLI, the sidecar bundle in Docker. Planning and availability
//! are real; the launch path is not implemented yet and says so.

pub mod argv;
pub mod net;

use std::path::PathBuf;

use crate::registry::{Availability, Backend, is_executable, which};

pub struct Smolmachines;

impl Smolmachines {
    /// `BOT_BOTTLE_SMOLVM`, else `smolvm` on `PATH`.
    pub fn binary() -> Option<PathBuf> {
        match std::env::var_os("BOT_BOTTLE_SMOLVM") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)).filter(|p| is_executable(p)),
            _ => which("smolvm"),
        }
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
}
