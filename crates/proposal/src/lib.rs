//! What the sidecar asks the operator (spec/supervise.md): the proposals
//! its components file on their own (`egress-token-allow` from the egress
//! proxy, `git-push-allow` from git-gate), the operator's verdict, and the
//! [`ProposalSink`] trait through which they travel.
//!
//! Data and a trait only. The real sink (a durable store the operator's
//! console reads) is the supervise component; until one is wired,
//! [`NoSink`] answers every proposal `Unavailable`, and the caller refuses
//! (fail closed). Proposals never carry a secret value: findings hold
//! redacted snippets only.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;

use finding::Finding;
use serde::Serialize;

/// `egress-token-allow`: a request held because outbound DLP found
/// something on a `supervise` route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenAllowProposal {
    /// The request's host.
    pub host: String,
    /// Its method.
    pub method: String,
    /// Its path.
    pub path: String,
    /// Detector, rule and redacted snippet of each finding.
    pub findings: Vec<Finding>,
}

/// `git-push-allow`: a push whose findings were all suppressed in the source
/// by an inline allow comment; it goes on only with the operator's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushAllowProposal {
    /// The repo name the gate exposes.
    pub repo: String,
    /// The refs the push updates.
    pub refs: Vec<String>,
    /// Each finding, value redacted.
    pub findings: Vec<PushFinding>,
}

/// One finding in a pushed commit, value redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushFinding {
    /// The commit it is in.
    pub commit: String,
    /// The file, or `(commit message)`.
    pub path: String,
    /// The line in the file.
    pub line: usize,
    /// The rule that found it.
    pub rule: String,
    /// The matched line with the value masked.
    pub snippet: String,
}

/// A proposal a sidecar component files by itself.
/// What is asked of the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Proposal {
    /// Let one request carrying a finding through egress.
    EgressTokenAllow(TokenAllowProposal),
    /// Let a push carrying findings through git-gate.
    GitPushAllow(PushAllowProposal),
}

/// The operator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Approved {
        /// The operator's reason.
        reason: String,
    },
    /// Refuse it.
    Rejected {
        /// The operator's reason.
        reason: String,
    },
    /// Nobody answered in time: refused.
    TimedOut,
    /// No operator channel, or it failed.
    Unavailable {
        /// What failed.
        why: String,
    },
}

/// A verdict to wait for.
pub type VerdictFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// Files proposals with the operator and waits for the verdict. The caller
/// bounds the wait.
pub trait ProposalSink: Send + Sync {
    /// File `proposal` and wait for its verdict.
    fn propose(&self, proposal: Proposal) -> VerdictFuture;
}

/// No operator channel: every proposal is unanswered.
#[derive(Debug, Default)]
pub struct NoSink;

impl ProposalSink for NoSink {
    fn propose(&self, _proposal: Proposal) -> VerdictFuture {
        Box::pin(async { Verdict::Unavailable { why: "no operator channel is connected".to_string() } })
    }
}
