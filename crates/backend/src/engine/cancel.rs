//! Ctrl-C during a docker launch, without losing track of what the engine
//! is creating. Dropping the launch mid-request would not stop a create the
//! engine had already taken: it would finish after the cleanup looked, and
//! be left behind. So the launch is told to stop instead: it issues no new
//! request, its waits (image builds, the sidecar's sockets, the self-test)
//! end at once, and the cleanup runs once it has returned.

use std::future::Future;

use tokio::sync::watch;

use crate::error::BackendError;

/// Ctrl-C for a launch: set once, seen by every wait and every step that creates something (a request in flight finishes; the next is not made).
pub struct Cancel {
    cancelled: watch::Sender<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel { cancelled: watch::Sender::new(false) }
    }
}

impl Cancel {
    /// Cancel: waits end, the next step fails as interrupted.
    pub fn cancel(&self) {
        self.cancelled.send_replace(true);
    }

    /// Before a request that creates something: an error once cancelled.
    pub fn check(&self) -> Result<(), BackendError> {
        if *self.cancelled.borrow() { Err(interrupted()) } else { Ok(()) }
    }

    /// `wait` unless cancelled first. Only for waits and builds: what a
    /// dropped request was creating could be lost.
    pub async fn wait<T>(&self, wait: impl Future<Output = Result<T, BackendError>>) -> Result<T, BackendError> {
        self.check()?;
        let mut cancelled = self.cancelled.subscribe();
        tokio::select! {
            r = wait => r,
            _ = cancelled.wait_for(|c| *c) => Err(interrupted()),
        }
    }
}

/// The error a cancelled step returns.
pub fn interrupted() -> BackendError {
    BackendError::Interrupted
}
