//! Operator holds: where a `supervise` finding goes. The proxy files an
//! `egress-token-allow` proposal through a [`ProposalSink`] and waits for the
//! verdict. The real sink is the supervise channel; until one is wired,
//! [`NoSink`] answers every proposal `Unavailable`, and the request is
//! refused (fail closed).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dlp::Finding;

/// What the operator sees: where the request went and what was found, with
/// every value redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAllowProposal {
    pub host: String,
    pub method: String,
    pub path: String,
    /// Detector, rule and redacted snippet of each finding.
    pub findings: Vec<Finding>,
}

/// The operator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approved {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    TimedOut,
    /// No operator channel, or it failed.
    Unavailable {
        why: String,
    },
}

/// How long a request is held before it is refused.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(300);

pub type VerdictFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// Files proposals with the operator and waits for the verdict.
pub trait ProposalSink: Send + Sync {
    fn propose(&self, proposal: TokenAllowProposal) -> VerdictFuture;
}

/// No operator channel: every proposal is unanswered.
#[derive(Debug, Default)]
pub struct NoSink;

impl ProposalSink for NoSink {
    fn propose(&self, _proposal: TokenAllowProposal) -> VerdictFuture {
        Box::pin(async { Verdict::Unavailable { why: "no operator channel is connected".to_string() } })
    }
}
