//! git-gate (spec/git-gate.md): the agent's only way to an upstream git
//! repository.
//!
//! The agent's remotes point at the gate, a git smart-HTTP server
//! ([`gate`]) over one bare mirror per declared repo ([`mirror`]). Fetches
//! are served from the mirror after refreshing it from the upstream; a push
//! is accepted only after [`push_scan`] found nothing in exactly what it
//! introduces (or the operator approved what was marked allowed), and after
//! the refs were forwarded upstream over SSH with a pinned host key
//! ([`ssh`]). The real `git` does all protocol work; the gate decides
//! through the mirrors' pre-receive hook ([`hook`]). [`keys`] provisions
//! upstream keys (a static file, or a Gitea deploy key); [`gitconfig`]
//! renders what the agent's git sees.
//!
//! Not here: the operator channel (a [`proposal::ProposalSink`] is handed
//! in), launching the sidecar, the egress proxy.

#![forbid(unsafe_code)]

pub mod diff;
pub mod gate;
pub mod gitconfig;
pub mod hook;
pub mod keys;
pub mod ledger;
pub mod mirror;
pub mod objects;
pub mod pktline;
pub mod push_scan;
pub mod ssh;

pub use gate::{Gate, Limits};
pub use mirror::Mirror;
pub use push_scan::{PushReport, PushScan, RefUpdate};
