//! The sidecar: a bottle's only way out, on either backend.
//!
//! Owns the host↔sidecar contract ([`config`]: `sidecar.json` and the
//! secrets file, the socket names and the agent's loopback ports), the
//! host's half of it ([`prepare`]: those files as a value, then one write;
//! [`keys`]: git-gate's keys put in place, deploy keys minted written-ahead
//! and revoked; [`agent`]: what the agent's side takes from the servers), where
//! its servers listen ([`listen`]: TCP or unix sockets, accept back-off,
//! the bounded drain on stop), and the process that runs inside the
//! sidecar ([`run`]): egress, git-gate (when the bottle declares repos) and
//! supervise, wired together — holds go to supervise's store, approved
//! route changes reload the proxy — each server a task of one `JoinSet`,
//! so that if one ends the sidecar exits and the bottle fails closed.
//!
//! Not here: what a bottle is made of on an engine (containers, machines,
//! images: the `backend` crate), the servers' own logic (`egress`,
//! `git-gate`, `supervise`), the command line (the `bot-bottle` binary).

#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod keys;
pub mod listen;
pub mod prepare;
mod run;

pub use prepare::{GateRepoFile, SidecarFiles, SidecarInputs};
pub use run::{SidecarError, run};
