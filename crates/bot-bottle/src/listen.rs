//! Where the sidecar's servers listen: `HOST:PORT` (TCP, no Nagle delay) or
//! `unix:PATH` (a stale socket file is replaced, and removed on drop).

use anyhow::{Context as _, Result};
use tokio::io::{AsyncRead, AsyncWrite};

/// An accepted connection of either kind.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TCP or unix listener.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, String),
}

impl Listener {
    pub async fn bind(listen: &str) -> Result<Listener> {
        Ok(match listen.strip_prefix("unix:") {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                let l = tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on {listen}"))?;
                Listener::Unix(l, path.to_string())
            }
            None => Listener::Tcp(
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?,
            ),
        })
    }

    /// `HOST:PORT` as bound (the real port when 0 was asked), or `unix:PATH`.
    pub fn name(&self) -> Result<String> {
        Ok(match self {
            Listener::Tcp(l) => l.local_addr()?.to_string(),
            Listener::Unix(_, path) => format!("unix:{path}"),
        })
    }

    /// The next connection (`None` when an accept failed; keep going). A
    /// failed accept (out of file descriptors: EMFILE) waits a moment
    /// before it returns, so a caller that loops does not spin while
    /// connections close.
    pub async fn accept(&self) -> Option<Box<dyn Io>> {
        let accepted: std::io::Result<Box<dyn Io>> = match self {
            Listener::Tcp(l) => l.accept().await.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                Box::new(stream) as Box<dyn Io>
            }),
            Listener::Unix(l, _) => l.accept().await.map(|(stream, _)| Box::new(stream) as Box<dyn Io>),
        };
        match accepted {
            Ok(io) => Some(io),
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                None
            }
        }
    }
}

/// How long open connections may take to finish once a server stops.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Let `connections` finish, for at most [`DRAIN`]; then cut the rest.
pub async fn drain(mut connections: tokio::task::JoinSet<()>) {
    let _ = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    connections.abort_all();
}

/// How long a failed accept waits before the next try.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

impl Listener {
    /// Say `ready` on stderr, then hand each connection to `serve` on its
    /// own task until SIGTERM or Ctrl-C. With `on_hup`, SIGHUP calls it
    /// (otherwise SIGHUP keeps its default: it ends the process). The
    /// signals are caught before `ready` is said, so a peer that waits for
    /// that line may signal at once.
    ///
    /// On SIGTERM or Ctrl-C it stops accepting, calls `on_stop` (which
    /// answers what waits, e.g. [`supervise::Supervisor::stop`]), and lets
    /// the open connections finish for at most [`DRAIN`] before it returns.
    pub async fn serve_until_stopped<F>(
        &self,
        ready: &str,
        serve: impl Fn(Box<dyn Io>) -> F,
        mut on_hup: Option<&mut dyn FnMut()>,
        on_stop: Option<&dyn Fn()>,
    ) -> Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = match on_hup {
            Some(_) => Some(signal(SignalKind::hangup())?),
            None => None,
        };
        eprintln!("{ready}");
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.accept() => {
                    if let Some(stream) = accepted {
                        connections.spawn(serve(stream));
                    }
                }
                // Finished connections are reaped as they end.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = async {
                    match hup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    if let Some(f) = on_hup.as_mut() {
                        f();
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        if let Some(stop) = on_stop {
            stop();
        }
        drain(connections).await;
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
