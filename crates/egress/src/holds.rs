//! Operator holds: where a `supervise` finding goes. The proxy files an
//! `egress-token-allow` proposal through a [`ProposalSink`] (the `proposal`
//! crate) and waits, at most [`DEFAULT_HOLD`] unless configured. With no
//! sink wired, [`NoSink`] answers `Unavailable` and the request is refused.

use std::time::Duration;

pub use proposal::{NoSink, Proposal, ProposalSink, TokenAllowProposal, Verdict, VerdictFuture};

/// How long a request is held before it is refused.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(300);
