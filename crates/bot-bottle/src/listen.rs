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

    /// The next connection (`None` when an accept failed; keep going).
    pub async fn accept(&self) -> Option<Box<dyn Io>> {
        match self {
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await.ok()?;
                let _ = stream.set_nodelay(true);
                Some(Box::new(stream))
            }
            Listener::Unix(l, _) => {
                let (stream, _) = l.accept().await.ok()?;
                Some(Box::new(stream))
            }
        }
    }
}

impl Listener {
    /// Say `ready` on stderr, then hand each connection to `serve` on its
    /// own task until SIGTERM or Ctrl-C. With `on_hup`, SIGHUP calls it
    /// (otherwise SIGHUP keeps its default: it ends the process). The
    /// signals are caught before `ready` is said, so a peer that waits for
    /// that line may signal at once.
    pub async fn serve_until_stopped<F>(
        &self,
        ready: &str,
        serve: impl Fn(Box<dyn Io>) -> F,
        mut on_hup: Option<&mut dyn FnMut()>,
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
        loop {
            tokio::select! {
                accepted = self.accept() => {
                    if let Some(stream) = accepted {
                        tokio::spawn(serve(stream));
                    }
                }
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
                _ = term.recv() => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
