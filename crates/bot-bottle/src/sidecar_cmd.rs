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

use anyhow::{Context as _, Result, bail};
use sidecar::config::{SidecarConfig, SidecarSecrets};

use crate::cli::{ShimArgs, SidecarArgs};

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

pub fn sidecar(args: SidecarArgs) -> Result<i32> {
    // Before any thread: as PID 1, the container's init forks off here.
    crate::init_reaper::become_init_if_pid1().context("cannot start as the container's init")?;
    let config: SidecarConfig = read_json(&args.config)?;
    let secrets: SidecarSecrets = read_json(&config.secrets)?;
    let exe = std::env::current_exe().context("cannot find this program's path for the hook")?;
    let hook = format!("'{}' git-gate-hook", exe.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        sidecar::run(config, secrets, &hook, async move {
            term.recv().await;
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(0)
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
                        tokio::time::sleep(sidecar::listen::ACCEPT_BACKOFF).await;
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
