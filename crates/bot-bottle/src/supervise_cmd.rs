//! `bot-bottle supervise-server` (hidden): the supervise MCP server over one
//! bottle's proposal store, as the sidecar runs it. Approved route changes
//! rewrite `--routes` in place and send SIGHUP to `--egress-pid`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use supervise::http::McpHttp;
use supervise::{ProposalStore, RouteControl, RouteFileControl, Supervisor};

use crate::cli::SuperviseServerArgs;
use sidecar::listen::Listener;

pub fn server(args: SuperviseServerArgs) -> Result<i32> {
    if let Some(dir) = args.store.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let store = ProposalStore::open(&args.store, &args.identity)?;
    let routes = args.routes.clone().map(|path| {
        let pid = args.egress_pid;
        let reload = Box::new(move || {
            if let Some(pid) = pid {
                // SAFETY: kill(2) with a pid and a signal number has no memory effects.
                unsafe { libc::kill(pid, libc::SIGHUP) };
            }
        });
        Arc::new(RouteFileControl { path, reload }) as Arc<dyn RouteControl>
    });
    let mut supervisor = Supervisor::new(store, routes);
    supervisor.tool_timeout = Duration::from_secs(args.tool_timeout);
    let endpoint = Arc::new(McpHttp { supervisor: Arc::new(supervisor), allowed_hosts: Vec::new() });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = Listener::bind(&args.listen).await?;
        let ready = format!("bot-bottle: supervise MCP on {}/mcp", listener.name()?);
        let stop = || endpoint.supervisor.stop();
        listener.serve_until_stopped(&ready, |stream| endpoint.clone().serve(stream), None, Some(&stop)).await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// The operator channel `args` name: a [`Supervisor`] over the proposal
/// store, or the fail-closed [`proposal::NoSink`].
pub fn sink(args: &crate::cli::OperatorArgs) -> Result<Arc<dyn proposal::ProposalSink>> {
    match (&args.proposals, &args.identity) {
        (Some(path), Some(identity)) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Ok(Arc::new(Supervisor::new(ProposalStore::open(path, identity)?, None)))
        }
        _ => Ok(Arc::new(proposal::NoSink)),
    }
}
