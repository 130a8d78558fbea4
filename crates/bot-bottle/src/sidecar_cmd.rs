//! `bot-bottle sidecar` (hidden): the bottle's only way out, as one process
//! with one async runtime and three servers on unix sockets — egress,
//! git-gate (when the bottle declares repos) and supervise — wired
//! together: holds go to supervise's store, approved route changes reload
//! the proxy. If any server fails, the process exits and the bottle fails
//! closed. SIGHUP re-reads the route file (a bad one keeps the old table).
//!
//! `bot-bottle shim` (hidden) runs in the agent's network namespace and
//! relays loopback ports to those sockets.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use backend::sidecar_config::{EGRESS_SOCKET, GATE_SOCKET, SUPERVISE_SOCKET, SidecarConfig, SidecarSecrets};
use dlp::KnownSecrets;
use egress::ca::LeafIssuer;
use egress::decision::Tokens;
use egress::proxy::Proxy;
use secret::Secret;
use supervise::http::McpHttp;
use supervise::{ProposalStore, RouteControl, RouteFileControl, Supervisor};

use crate::cli::{ShimArgs, SidecarArgs};
use crate::listen::Listener;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
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

pub fn sidecar(args: SidecarArgs) -> Result<i32> {
    // Before any thread: as PID 1, the container's init forks off here.
    crate::init_reaper::become_init_if_pid1().context("cannot start as the container's init")?;
    let config: SidecarConfig = read_json(&args.config)?;
    let secrets: SidecarSecrets = read_json(&config.secrets)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(config, secrets))?;
    Ok(0)
}

async fn run(config: SidecarConfig, secrets: SidecarSecrets) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let t0 = std::time::Instant::now();
    let trace = |what: &str| {
        if std::env::var_os("BOT_BOTTLE_TRACE").is_some() {
            eprintln!("sidecar: [{:>4} ms] {what}", t0.elapsed().as_millis());
        }
    };
    std::fs::create_dir_all(&config.run_dir).with_context(|| format!("cannot create {}", config.run_dir.display()))?;
    let socket = |name: &str| format!("unix:{}", config.run_dir.join(name).display());

    // Egress, with its route file.
    let routes_path = config.egress.routes.clone();
    let text =
        std::fs::read_to_string(&routes_path).with_context(|| format!("cannot read {}", routes_path.display()))?;
    let file = egress::load(&text).with_context(|| routes_path.display().to_string())?;
    let ca_pem = std::fs::read_to_string(config.egress.ca_dir.join("ca.pem")).context("cannot read the bottle CA")?;
    let ca_key =
        Secret::new(std::fs::read_to_string(config.egress.ca_dir.join("ca.key")).context("cannot read the CA key")?);
    let issuer = LeafIssuer::from_pem(&ca_pem, &ca_key)?;
    let upstream_ca = match std::env::var_os("BOT_BOTTLE_UPSTREAM_CA") {
        Some(p) => {
            Some(std::fs::read(&p).with_context(|| format!("cannot read BOT_BOTTLE_UPSTREAM_CA {}", p.display()))?)
        }
        None => None,
    };
    let tokens = Tokens(secrets.tokens.iter().map(|(slot, v)| (*slot, Secret::new(v.clone()))).collect());
    trace("config read");

    // Supervise: the store, and route changes applied to the live proxy.
    let store = ProposalStore::open(&config.supervise.store, &config.identity)?;
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
        Proxy::new(file, tokens, known(&secrets), issuer, upstream_ca.as_deref())?.with_sink(supervisor.clone(), hold),
    );
    let _ = live.set(proxy.clone());
    trace("proxy built");
    eprintln!("egress: loaded {} route(s): {}", proxy.hosts().len(), proxy.hosts().join(" "));

    let mcp =
        Arc::new(McpHttp { supervisor: supervisor.clone(), allowed_hosts: config.supervise.allowed_hosts.clone() });
    let egress_listener = Listener::bind(&socket(EGRESS_SOCKET)).await?;
    let mcp_listener = Listener::bind(&socket(SUPERVISE_SOCKET)).await?;

    // Servers that run beside the accept loop: if one ends, the sidecar is
    // no longer whole and exits (DESIGN.md: the session then ends).
    let mut servers: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    // git-gate, when the bottle declares repos.
    let gate = match &config.git_gate {
        Some(g) if !g.repos.is_empty() => {
            let exe = std::env::current_exe().context("cannot find this program's path for the hook")?;
            let hook = format!("'{}' git-gate-hook", exe.display());
            let mut mirrors = Vec::new();
            for r in &g.repos {
                let key = std::fs::read(&r.key).with_context(|| format!("cannot read the key {}", r.key.display()))?;
                let policy =
                    git_gate::mirror::RefPolicy { allow_force_push: r.allow_force_push, allow_delete: r.allow_delete };
                mirrors.push(
                    git_gate::Mirror::create(&g.dir, &r.name, &r.url, &r.host_key, &key, &hook)?.with_policy(policy),
                );
            }
            let (hook_socket, hooks) = git_gate::gate::bind_hook_socket(&g.dir.join("run"))?;
            let limits = git_gate::Limits { hold: hold + Duration::from_secs(5), ..Default::default() };
            let gate = Arc::new(git_gate::Gate::new(mirrors, known(&secrets), supervisor.clone(), limits, hook_socket));
            servers.spawn(gate.clone().serve_hooks(hooks));
            for (repo, why) in gate.refresh_all().await {
                eprintln!("git-gate: {repo}: {why} (fetches will fail until it is reachable)");
            }
            let listener = Listener::bind(&socket(GATE_SOCKET)).await?;
            eprintln!("git-gate: serving {}", gate.repos().join(" "));
            Some((gate, listener))
        }
        _ => None,
    };
    drop(secrets);

    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    trace("listening");
    eprintln!("bot-bottle: sidecar ready in {}", config.run_dir.display());
    // Every connection is a task here, so a stop can let them finish.
    let mut connections: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = egress_listener.accept() => {
                if let Some(s) = accepted {
                    connections.spawn(proxy.clone().serve(s));
                }
            }
            accepted = mcp_listener.accept() => {
                if let Some(s) = accepted {
                    connections.spawn(mcp.clone().serve(s));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = async {
                match &gate {
                    Some((_, l)) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Some(s), Some((g, _))) = (accepted, &gate) {
                    connections.spawn(g.clone().serve(s));
                }
            }
            _ = hup.recv() => reload_routes(&proxy, &routes_path),
            _ = term.recv() => break,
            Some(ended) = servers.join_next() => {
                let why = match ended {
                    Ok(()) => "ended".to_string(),
                    Err(e) => format!("failed: {e}"),
                };
                bail!("git-gate's hook server {why}; the sidecar stops (the session ends with it)");
            }
        }
    }
    // SIGTERM: no new connections; what waits for the operator is answered
    // `timeout`; open connections get a bounded time to finish.
    supervisor.stop();
    crate::listen::drain(connections).await;
    servers.abort_all();
    eprintln!("bot-bottle: sidecar stopped");
    Ok(())
}

fn reload_routes(proxy: &Proxy, path: &Path) {
    let result = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| egress::load(&text).map_err(|e| e.to_string()))
        .and_then(|file| proxy.reload(file).map_err(|e| e.to_string()));
    match result {
        Ok(()) => eprintln!("egress: reloaded {} route(s): {}", proxy.hosts().len(), proxy.hosts().join(" ")),
        Err(e) => eprintln!("egress: reload refused, keeping the old routes: {e}"),
    }
}

/// `bot-bottle shim [--listen ADDR] --map PORT=SOCKET ...`: relay each port
/// to its unix socket, until killed.
pub fn shim(args: ShimArgs) -> Result<i32> {
    let mut maps = Vec::new();
    for m in &args.map {
        let Some((port, path)) = m.split_once('=') else { bail!("--map takes PORT=SOCKET, not '{m}'") };
        let port: u16 = port.parse().with_context(|| format!("--map {m}: '{port}' is not a port"))?;
        maps.push((port, path.to_string()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (port, path) in maps {
            let listener = tokio::net::TcpListener::bind((args.listen, port))
                .await
                .with_context(|| format!("cannot listen on {}:{port}", args.listen))?;
            tasks.spawn(async move {
                loop {
                    let Ok((mut tcp, _)) = listener.accept().await else {
                        // Out of descriptors: wait instead of spinning.
                        tokio::time::sleep(crate::listen::ACCEPT_BACKOFF).await;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let path = path.clone();
                    tokio::spawn(async move {
                        if let Ok(mut unix) = tokio::net::UnixStream::connect(&path).await {
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                        }
                    });
                }
            });
        }
        eprintln!("bot-bottle: shim relaying {}", args.map.join(" "));
        while tasks.join_next().await.is_some() {}
        anyhow::Ok(())
    })?;
    Ok(0)
}
