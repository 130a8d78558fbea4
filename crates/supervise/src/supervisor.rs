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
    fn apply(&self, change: &egress::RouteEdit) -> Result<(serde_json::Value, serde_json::Value), String>;
}

/// The sidecar's route file: rewritten in place (a bind mount pins the
/// inode, so no rename), then `reload` tells the egress proxy (SIGHUP).
pub struct RouteFileControl {
    pub path: PathBuf,
    pub reload: Box<dyn Fn() + Send + Sync>,
}

impl RouteControl for RouteFileControl {
    fn current(&self) -> Result<serde_json::Value, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        egress::route_file::manifest_routes(&text).map_err(|e| e.to_string())
    }

    fn apply(&self, change: &egress::RouteEdit) -> Result<(serde_json::Value, serde_json::Value), String> {
        use std::io::Write;
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let edited = egress::edit(&text, change).map_err(|e| e.to_string())?;
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
}

/// One bottle's supervise state in the sidecar.
pub struct Supervisor {
    store: Arc<Mutex<ProposalStore>>,
    routes: Option<Arc<dyn RouteControl>>,
    /// How long an agent's tool call waits for the operator.
    pub tool_timeout: Duration,
    /// How long a sidecar-filed proposal (DLP hold, push allow) waits.
    pub hold_timeout: Duration,
}

impl Supervisor {
    pub fn new(store: ProposalStore, routes: Option<Arc<dyn RouteControl>>) -> Supervisor {
        Supervisor {
            store: Arc::new(Mutex::new(store)),
            routes,
            tool_timeout: Duration::from_secs(30 * 60),
            hold_timeout: Duration::from_secs(300),
        }
    }

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
        let id = self.with_store(move |s| s.file(kind, &payload, &justification)).await?;
        let mut guard = ExpireOnDrop { store: Some(self.store.clone()), id };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.with_store(move |s| s.get(id)).await?.ok_or(StoreError::Missing(id))?;
            if current.status != Status::Pending {
                guard.store = None;
                return Ok(current);
            }
            if tokio::time::Instant::now() >= deadline {
                guard.store = None;
                return self.with_store(move |s| s.expire(id)).await;
            }
            tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
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
        let payload = payload.unwrap_or_default();
        let store = self.store.clone();
        let timeout = self.hold_timeout;
        let this = Supervisor { store, routes: None, tool_timeout: self.tool_timeout, hold_timeout: timeout };
        Box::pin(async move {
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
