//! Where the sidecar's servers listen: `HOST:PORT` (TCP, no Nagle delay) or
//! `unix:PATH` (a stale socket file is replaced, and removed on drop).

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};

/// A listener that could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct ListenError {
    /// What was asked: `HOST:PORT` or `unix:PATH`.
    pub address: String,
    /// Why it failed.
    #[source]
    pub source: std::io::Error,
}

/// An accepted connection of either kind.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TCP or unix listener.
pub enum Listener {
    /// `HOST:PORT`.
    Tcp(tokio::net::TcpListener),
    /// `unix:PATH`, with its path (removed on drop).
    Unix(tokio::net::UnixListener, String),
}

impl Listener {
    /// Listen on `HOST:PORT` or `unix:PATH` (a stale socket file there is
    /// replaced).
    pub async fn bind(listen: &str) -> Result<Listener, ListenError> {
        let failed = |source| ListenError { address: listen.to_string(), source };
        Ok(match listen.strip_prefix("unix:") {
            Some(path) => {
                // A stale socket from an earlier run; absent is the usual case.
                let _ = std::fs::remove_file(path);
                Listener::Unix(tokio::net::UnixListener::bind(path).map_err(failed)?, path.to_string())
            }
            None => Listener::Tcp(tokio::net::TcpListener::bind(listen).await.map_err(failed)?),
        })
    }

    /// `HOST:PORT` as bound (the real port when 0 was asked), or `unix:PATH`.
    pub fn name(&self) -> std::io::Result<String> {
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
    // Timing out is the bound working: what is left is cut below.
    let _ = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    connections.abort_all();
}

/// How long a failed accept waits before the next try.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Accept on `listener`, each connection on its own task running
/// `handler`, until `stop` resolves; then stop accepting and let the open
/// connections finish for at most [`DRAIN`].
pub async fn serve<F>(listener: &Listener, handler: impl Fn(Box<dyn Io>) -> F, stop: impl Future<Output = ()>)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Some(stream) = accepted {
                    connections.spawn(handler(stream));
                }
            }
            // Finished connections are reaped as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut stop => break,
        }
    }
    drain(connections).await;
}

impl Listener {
    /// Say `ready` on stderr, then [`serve`] until SIGTERM or Ctrl-C. With
    /// `on_hup`, SIGHUP calls it (otherwise SIGHUP keeps its default: it
    /// ends the process). The signals are caught before `ready` is said, so
    /// a peer that waits for that line may signal at once.
    ///
    /// On SIGTERM or Ctrl-C it calls `on_stop` (which answers what waits,
    /// e.g. [`supervise::Supervisor::stop`]) as it stops accepting.
    pub async fn serve_until_stopped<F>(
        &self,
        ready: &str,
        handler: impl Fn(Box<dyn Io>) -> F,
        mut on_hup: Option<&mut dyn FnMut()>,
        on_stop: Option<&dyn Fn()>,
    ) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = match on_hup {
            Some(_) => Some(signal(SignalKind::hangup())?),
            None => None,
        };
        eprintln!("{ready}");
        let stop = async {
            loop {
                tokio::select! {
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
        };
        serve(self, handler, stop).await;
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
