//! The process inside the sidecar: egress, git-gate (when the bottle
//! declares repos) and supervise on unix sockets, each server a task of one
//! `JoinSet`. If any of them ends, [`run`] returns an error (the bottle
//! fails closed: the session ends with it). SIGHUP re-reads the route file
//! (a bad one keeps the old table). When `shutdown` resolves: no new
//! connections, what waits for the operator is answered `timeout`, open
//! connections get [`crate::listen::DRAIN`] to finish.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dlp::KnownSecrets;
use egress::ca::LeafIssuer;
use egress::decision::Tokens;
use egress::proxy::Proxy;
use secret::Secret;
use supervise::http::McpHttp;
use supervise::{ProposalStore, RouteControl, RouteFileControl, Supervisor};

use crate::config::{EGRESS_SOCKET, GATE_SOCKET, SUPERVISE_SOCKET, SidecarConfig, SidecarSecrets};
use crate::listen::{ListenError, Listener};

/// Why the sidecar could not start, or stopped before it was told to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// A file the host wrote could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file the host wrote (route file, CA, key) or a server's setup was
    /// refused; `what` names it.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: String,
        /// Why it was refused.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A socket could not be made.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// SIGHUP could not be watched.
    #[error("cannot watch for signals: {0}")]
    Signals(#[source] std::io::Error),
    /// A server ended while the sidecar was serving.
    #[error("{server} {why}; the sidecar stops (the session ends with it)")]
    ServerEnded {
        /// Which server.
        server: &'static str,
        /// How it ended.
        why: String,
    },
}

fn read(path: &Path) -> Result<String, SidecarError> {
    std::fs::read_to_string(path).map_err(|source| SidecarError::Read { path: path.to_path_buf(), source })
}

fn setup(what: impl Into<String>) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> SidecarError {
    let what = what.into();
    move |source| SidecarError::Setup { what, source }
}

/// The DLP's known secrets from the secrets file (built per server: each
/// owns its scanner).
fn known(secrets: &SidecarSecrets) -> KnownSecrets {
    let mut k = KnownSecrets::new();
    for (slot, v) in &secrets.tokens {
        k.register(&format!("EGRESS_TOKEN_{slot}"), &Secret::new(v.clone()));
    }
    for (name, v) in &secrets.known {
        k.register(&format!("env:{name}"), &Secret::new(v.clone()));
    }
    if let Some(c) = &secrets.canary {
        k.register("canary", &Secret::new(c.clone()));
    }
    k
}

/// Serve one bottle until `shutdown` resolves (or a server ends: an
/// error). `hook_command` is what git-gate's mirrors run as their hook
/// (this program's `git-gate-hook`).
pub async fn run(
    config: SidecarConfig,
    secrets: SidecarSecrets,
    hook_command: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SidecarError> {
    use tokio::signal::unix::{SignalKind, signal};
    let t0 = std::time::Instant::now();
    let trace = |what: &str| {
        if std::env::var_os("BOT_BOTTLE_TRACE").is_some() {
            eprintln!("sidecar: [{:>4} ms] {what}", t0.elapsed().as_millis());
        }
    };
    std::fs::create_dir_all(&config.run_dir)
        .map_err(|e| setup(format!("cannot create {}", config.run_dir.display()))(e.into()))?;
    let socket = |name: &str| format!("unix:{}", config.run_dir.join(name).display());

    // Egress, with its route file.
    let routes_path = config.egress.routes.clone();
    let file = routes::load(&read(&routes_path)?).map_err(|e| setup(routes_path.display().to_string())(e.into()))?;
    let ca_pem = read(&config.egress.ca_dir.join("ca.pem"))?;
    let ca_key = Secret::new(read(&config.egress.ca_dir.join("ca.key"))?);
    let issuer = LeafIssuer::from_pem(&ca_pem, &ca_key).map_err(|e| setup("the bottle CA")(e.into()))?;
    let upstream_ca = match std::env::var_os("BOT_BOTTLE_UPSTREAM_CA") {
        Some(p) => Some(read(Path::new(&p))?.into_bytes()),
        None => None,
    };
    let tokens = Tokens(secrets.tokens.iter().map(|(slot, v)| (*slot, Secret::new(v.clone()))).collect());
    trace("config read");

    // Supervise: the store, and route changes applied to the live proxy.
    let store = ProposalStore::open(&config.supervise.store, &config.identity)
        .map_err(|e| setup(format!("the proposal store {}", config.supervise.store.display()))(e.into()))?;
    trace("store open");
    let live: Arc<OnceLock<Arc<Proxy>>> = Arc::new(OnceLock::new());
    let reload_target = live.clone();
    let reload_path = routes_path.clone();
    let reload = move || {
        if let Some(proxy) = reload_target.get() {
            reload_routes(proxy, &reload_path);
        }
    };
    let control: Arc<dyn RouteControl> =
        Arc::new(RouteFileControl { path: routes_path.clone(), reload: Box::new(reload) });
    let mut supervisor = Supervisor::new(store, Some(control));
    supervisor.tool_timeout = Duration::from_secs(config.supervise.tool_timeout_secs);
    let supervisor = Arc::new(supervisor);

    let hold = egress::holds::DEFAULT_HOLD + Duration::from_secs(5);
    let proxy = Arc::new(
        Proxy::new(file, tokens, known(&secrets), issuer, upstream_ca.as_deref())
            .map_err(|e| setup("the egress proxy")(e.into()))?
            .with_sink(supervisor.clone(), hold),
    );
    // The cell is new: the first set cannot fail.
    let _ = live.set(proxy.clone());
    trace("proxy built");
    eprintln!("{}", proxy.routes_report("loaded"));

    let mcp =
        Arc::new(McpHttp { supervisor: supervisor.clone(), allowed_hosts: config.supervise.allowed_hosts.clone() });

    // Every server is a task here; when `stop` turns true they stop
    // accepting and drain.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            // A dropped sender means stop too.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut servers: tokio::task::JoinSet<&'static str> = tokio::task::JoinSet::new();
    let egress_listener = Listener::bind(&socket(EGRESS_SOCKET)).await?;
    let mcp_listener = Listener::bind(&socket(SUPERVISE_SOCKET)).await?;
    {
        let (proxy, stop) = (proxy.clone(), stopped());
        servers.spawn(async move {
            crate::listen::serve(&egress_listener, |s| proxy.clone().serve(s), stop).await;
            "egress"
        });
        let (mcp, stop) = (mcp.clone(), stopped());
        servers.spawn(async move {
            crate::listen::serve(&mcp_listener, |s| mcp.clone().serve(s), stop).await;
            "supervise"
        });
    }
    // Servers the others need while they drain (git-gate's hooks): they
    // end only when the others have.
    let mut helpers: tokio::task::JoinSet<&'static str> = tokio::task::JoinSet::new();
    match &config.git_gate {
        Some(g) if !g.repos.is_empty() => {
            let mut mirrors = Vec::new();
            for r in &g.repos {
                let key = std::fs::read(&r.key).map_err(|source| SidecarError::Read { path: r.key.clone(), source })?;
                let policy =
                    git_gate::mirror::RefPolicy { allow_force_push: r.allow_force_push, allow_delete: r.allow_delete };
                mirrors.push(
                    git_gate::Mirror::create(&g.dir, &r.name, &r.url, &r.host_key, &key, hook_command)
                        .map_err(|e| setup(format!("the mirror of {}", r.name))(e.into()))?
                        .with_policy(policy),
                );
            }
            let run_dir = g.dir.join("run");
            let (hook_socket, hooks) = git_gate::gate::bind_hook_socket(&run_dir)
                .map_err(|source| ListenError { address: run_dir.display().to_string(), source })?;
            let limits = git_gate::Limits { hold: hold + Duration::from_secs(5), ..Default::default() };
            let gate = Arc::new(git_gate::Gate::new(mirrors, known(&secrets), supervisor.clone(), limits, hook_socket));
            let hook_server = gate.clone();
            helpers.spawn(async move {
                hook_server.serve_hooks(hooks).await;
                "git-gate's hook server"
            });
            for (repo, why) in gate.refresh_all().await {
                eprintln!("git-gate: {repo}: {why} (fetches will fail until it is reachable)");
            }
            let listener = Listener::bind(&socket(GATE_SOCKET)).await?;
            eprintln!("git-gate: serving {}", gate.repos().join(" "));
            let stop = stopped();
            servers.spawn(async move {
                crate::listen::serve(&listener, |s| gate.clone().serve(s), stop).await;
                "git-gate"
            });
        }
        _ => {}
    }
    drop(secrets);

    let mut hup = signal(SignalKind::hangup()).map_err(SidecarError::Signals)?;
    tokio::pin!(shutdown);
    trace("listening");
    eprintln!("bot-bottle: sidecar ready in {}", config.run_dir.display());
    let ended = loop {
        tokio::select! {
            _ = hup.recv() => reload_routes(&proxy, &routes_path),
            () = &mut shutdown => break None,
            Some(ended) = servers.join_next() => break Some(ended),
            Some(ended) = helpers.join_next() => break Some(ended),
        }
    };
    if let Some(ended) = ended {
        // A server ended on its own: the sidecar is no longer whole.
        servers.abort_all();
        helpers.abort_all();
        let (server, why) = match ended {
            Ok(server) => (server, "ended".to_string()),
            Err(e) => ("a server", format!("failed: {e}")),
        };
        return Err(SidecarError::ServerEnded { server, why });
    }
    // Stop: no new connections; what waits for the operator is answered
    // `timeout`; each server lets its open connections finish (bounded).
    supervisor.stop();
    // Every receiver may be gone already (their servers ended): nothing to tell.
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    helpers.abort_all();
    eprintln!("bot-bottle: sidecar stopped");
    Ok(())
}

fn reload_routes(proxy: &Proxy, path: &Path) {
    let result = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| routes::load(&text).map_err(|e| e.to_string()))
        .and_then(|file| proxy.reload(file).map_err(|e| e.to_string()));
    eprintln!("{}", proxy.reload_report(result));
}
