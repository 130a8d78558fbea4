//! Backends: how a bottle is isolated, and the plan a launch needs.
//!
//! Owns the [`Backend`] trait of the backend contract, the registry that
//! `--backend` chooses from, dispatch from an identity to the backend its
//! `metadata.json` names, and [`Backend::prepare`]: validating a composed manifest
//! against the host, minting the identity and the bottle's CA, and writing
//! the state dir. Knows nothing of terminals, pickers or how a plan is shown.

// Unsafe only where the OS is called directly, each site allowed by name
// with its SAFETY comment (engine/exec.rs, registry::launcher_alive).
#![deny(unsafe_code)]

pub mod docker;
pub mod engine;
mod error;
pub mod host_keys;
pub mod host_login;
mod plan;
mod provider;
pub mod provider_settings;
mod registry;
pub mod smolmachines;
pub mod workspace;

pub use docker::Docker;
pub use error::BackendError;
pub use plan::{AuthSource, BottleSpec, HostEnv, Plan, PlannedRoute, plan, write_plan};
pub use provider::{Provider, ProviderRef, builtin, builtin_names, provider_for};
pub use registry::{
    ActiveBottle, Availability, Backend, CleanupPlan, LAUNCHER_FILE, Registry, RunningBottle, bottle_for_identity,
    launcher_alive,
};
pub use sidecar::agent::BottleCa;
pub use smolmachines::Smolmachines;
