//! The sidecar's side of supervise: file a proposal in the store and wait
//! for the operator (the host console writes the decision into the same
//! file; the sidecar polls it, so no network path joins them), apply an
//! approved route change through the route file, and serve as the
//! [`ProposalSink`] of the egress proxy and git-gate.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proposal::{ProposalSink, Verdict, VerdictFuture};

use crate::store::{Kind, Proposal, ProposalStore, Status, StoreError};

/// How often a waiting call looks for the decision.
const POLL: Duration = Duration::from_millis(200);

/// The routes the agent may see and the operator may change.
pub trait RouteControl: Send + Sync {
    /// The current routes in manifest shape (no token values).
    fn current(&self) -> Result<serde_json::Value, String>;
    /// Apply an approved change; the routes before and after.
    fn apply(&self, change: &routes::RouteEdit) -> Result<(serde_json::Value, serde_json::Value), String>;
    /// How adding `route` would weaken the inspection of its host (see
    /// [`routes::file::dlp_weakening`]).
    fn weakening(&self, route: &manifest::Route) -> Result<Vec<String>, String>;
}

/// The sidecar's route file: rewritten in place (a bind mount pins the
/// inode, so no rename), then `reload` tells the egress proxy (SIGHUP).
pub struct RouteFileControl {
    /// The route file.
    pub path: PathBuf,
    /// Tells the proxy to read it again.
    pub reload: Box<dyn Fn() + Send + Sync>,
}

impl RouteControl for RouteFileControl {
    fn current(&self) -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        routes::file::manifest_routes(&text).map_err(|e| e.to_string())
    }

    fn apply(&self, change: &routes::RouteEdit) -> Result<(serde_json::Value, serde_json::Value), String> {
        use std::io::Write;
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let edited = routes::edit(&text, change).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        f.write_all(edited.text.as_bytes()).map_err(|e| format!("{}: {e}", self.path.display()))?;
        f.sync_all().map_err(|e| format!("{}: {e}", self.path.display()))?;
        (self.reload)();
        Ok((edited.before, edited.after))
    }

    fn weakening(&self, route: &manifest::Route) -> Result<Vec<String>, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        routes::file::dlp_weakening(&text, route).map_err(|e| e.to_string())
    }
}

/// How much a bottle may ask of its operator: proposals waiting at once,
/// and proposals filed per window. An agent cannot flood the operator's
/// queue or the host's disk (the text of each is bounded by the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilingLimits {
    /// At most this many proposals pending at once.
    pub max_pending: usize,
    /// At most this many filed per window.
    pub per_window: usize,
    /// The window.
    pub window: Duration,
}

impl Default for FilingLimits {
    fn default() -> Self {
        FilingLimits { max_pending: 16, per_window: 60, window: Duration::from_secs(600) }
    }
}

impl FilingLimits {
    /// Whether one more may be filed, given `pending` waiting and `recent`
    /// filed in the last window; if not, what to tell the agent.
    pub fn admit(&self, pending: usize, recent: usize) -> Result<(), String> {
        if pending >= self.max_pending {
            return Err(format!(
                "{pending} proposals already wait for the operator (at most {}): wait for their answers before asking more",
                self.max_pending
            ));
        }
        if recent >= self.per_window {
            return Err(format!(
                "{recent} proposals filed in the last {} s (at most {}): wait before asking again",
                self.window.as_secs(),
                self.per_window
            ));
        }
        Ok(())
    }

    fn check(&self, store: &ProposalStore) -> Result<(), StoreError> {
        let since = std::time::SystemTime::now().checked_sub(self.window).unwrap_or(std::time::UNIX_EPOCH);
        let (pending, recent) = store.load(since)?;
        self.admit(pending, recent).map_err(StoreError::Refused)
    }
}

/// One bottle's supervise state in the sidecar.
pub struct Supervisor {
    store: Arc<Mutex<ProposalStore>>,
    routes: Option<Arc<dyn RouteControl>>,
    /// How much the bottle may ask.
    pub limits: FilingLimits,
    /// How long an agent's tool call waits for the operator.
    pub tool_timeout: Duration,
    /// How long a sidecar-filed proposal (DLP hold, push allow) waits.
    pub hold_timeout: Duration,
    /// Set by [`Supervisor::stop`]: every waiting proposal is answered
    /// `timeout` at once (the sidecar is going away).
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Supervisor {
    /// A supervisor over `store`; with `routes`, approved route changes are applied.
    pub fn new(store: ProposalStore, routes: Option<Arc<dyn RouteControl>>) -> Supervisor {
        Supervisor {
            store: Arc::new(Mutex::new(store)),
            routes,
            limits: FilingLimits::default(),
            tool_timeout: Duration::from_secs(30 * 60),
            hold_timeout: Duration::from_secs(300),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Stop: every proposal waiting now or filed later is answered
    /// `timeout` (and marked so in the store) instead of being cut off.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// The route control, when there is one.
    pub fn routes(&self) -> Option<&Arc<dyn RouteControl>> {
        self.routes.as_ref()
    }

    /// Run `f` on the store off the reactor.
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ProposalStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Refused(format!("the store task failed: {e}")))?
    }

    /// File a proposal and wait for its decision, at most `timeout` (then
    /// it is marked `timeout`). If the waiting future is dropped (the
    /// caller gave up, the connection closed), the proposal expires too.
    pub async fn ask(
        &self,
        kind: Kind,
        payload: serde_json::Value,
        justification: String,
        timeout: Duration,
    ) -> Result<Proposal, StoreError> {
        let limits = self.limits;
        let id = self
            .with_store(move |s| {
                limits.check(s)?;
                s.file(kind, &payload, &justification)
            })
            .await?;
        let mut guard = ExpireOnDrop { store: Some(self.store.clone()), id };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stopping = self.stopping.subscribe();
        loop {
            let current = self.with_store(move |s| s.get(id)).await?.ok_or(StoreError::Missing(id))?;
            if current.status != Status::Pending {
                guard.store = None;
                return Ok(current);
            }
            if tokio::time::Instant::now() >= deadline || *stopping.borrow() {
                guard.store = None;
                return self.with_store(move |s| s.expire(id)).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())) => {}
                _ = stopping.changed() => {}
            }
        }
    }
}

/// Marks a proposal `timeout` when its waiter goes away undecided.
struct ExpireOnDrop {
    store: Option<Arc<Mutex<ProposalStore>>>,
    id: i64,
}

impl Drop for ExpireOnDrop {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let id = self.id;
            // Blocking work off whatever thread drops this.
            std::thread::spawn(move || {
                let mut s = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = s.expire(id);
            });
        }
    }
}

/// The egress proxy's and git-gate's operator channel.
impl ProposalSink for Supervisor {
    fn propose(&self, p: proposal::Proposal) -> VerdictFuture {
        let (kind, payload) = match &p {
            proposal::Proposal::EgressTokenAllow(t) => (Kind::EgressTokenAllow, serde_json::to_value(t)),
            proposal::Proposal::GitPushAllow(g) => (Kind::GitPushAllow, serde_json::to_value(g)),
        };
        let store = self.store.clone();
        let timeout = self.hold_timeout;
        let this = Supervisor {
            store,
            routes: None,
            limits: self.limits,
            tool_timeout: self.tool_timeout,
            hold_timeout: timeout,
            stopping: self.stopping.clone(),
        };
        Box::pin(async move {
            // Never filed as `null`: the operator must see what is asked.
            let payload = match payload {
                Ok(p) => p,
                Err(e) => return Verdict::Unavailable { why: format!("the proposal cannot be written down: {e}") },
            };
            match this.ask(kind, payload, String::new(), timeout).await {
                Ok(decided) => verdict(&decided),
                Err(e) => Verdict::Unavailable { why: e.to_string() },
            }
        })
    }
}

/// A decided proposal as the proposing component sees it.
pub fn verdict(p: &Proposal) -> Verdict {
    let reason = p.decision.as_ref().map(|d| d.reason.clone()).unwrap_or_default();
    match p.status {
        Status::Approved | Status::Modified => Verdict::Approved { reason },
        Status::Rejected => Verdict::Rejected { reason },
        Status::Timeout | Status::Pending => Verdict::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filing_is_bounded_by_pending_and_rate() {
        let l = FilingLimits { max_pending: 2, per_window: 3, window: Duration::from_secs(60) };
        assert!(l.admit(0, 0).is_ok() && l.admit(1, 2).is_ok());
        let too_many = l.admit(2, 0).unwrap_err();
        assert!(too_many.contains("wait for their answers"), "{too_many}");
        let too_fast = l.admit(0, 3).unwrap_err();
        assert!(too_fast.contains("in the last 60 s"), "{too_fast}");
    }

    #[test]
    fn the_store_bounds_what_a_bottle_files() {
        let dir = std::env::temp_dir().join(format!("supervise-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = ProposalStore::open(&dir.join("p.sqlite"), "b").unwrap();
        let huge = "x".repeat(crate::store::MAX_PROPOSAL_TEXT);
        let e = store.file(Kind::AskOperator, &serde_json::json!({"question": huge}), "").unwrap_err();
        assert!(e.to_string().contains("at most 64 KiB"), "{e}");
        let l = FilingLimits { max_pending: 3, per_window: 100, window: Duration::from_secs(60) };
        for i in 0..3 {
            l.check(&store).unwrap();
            store.file(Kind::AskOperator, &serde_json::json!({"question": i.to_string()}), "").unwrap();
        }
        assert!(matches!(l.check(&store), Err(StoreError::Refused(_))));
        let fast = FilingLimits { max_pending: 100, per_window: 3, window: Duration::from_secs(60) };
        assert!(matches!(fast.check(&store), Err(StoreError::Refused(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
