//! supervise (spec/supervise.md): the agent's channel to the operator.
//!
//! In the sidecar: an MCP server ([`http`], [`mcp`]) whose tools file
//! proposals ([`store`]) and wait for the operator's decision
//! ([`supervisor`]), the [`proposal::ProposalSink`] the egress proxy and
//! git-gate file their holds through, and the application of approved route
//! changes through the route file. On the host: the same store, read and
//! decided by the console (`bot-bottle supervise`), and the audit archive
//! that outlives bottles.
//!
//! Not an enforcement plane: egress and git-gate enforce; this only asks.

#![forbid(unsafe_code)]

pub mod http;
pub mod mcp;
pub mod store;
pub mod supervisor;

pub use store::{
    Answer, AuditArchive, KeptRouteEdit, Kind, Proposal, ProposalStore, Status, StoreError, archive_path, store_path,
};
pub use supervisor::{FilingLimits, RouteControl, RouteFileControl, Supervisor};
