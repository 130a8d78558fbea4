//! A response body relayed as it arrives: the upstream's body, with an
//! idle bound between chunks and (for text the route checks) the inbound
//! injection check run on each chunk before it is passed on.
//!
//! A cut (injection, corrupt encoding) or an upstream that goes silent for
//! longer than the idle bound ends the body with an error, so the agent's
//! client sees a broken response rather than a complete one; what happened
//! goes to the log through the [`Report`] callback.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::inbound::{ChunkVerdict, InboundCheck};

/// Why a relayed body ended early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The inbound check cut the response (why).
    #[error("response cut: {0}")]
    Cut(String),
    /// The upstream went quiet for longer than the bound.
    #[error("upstream sent nothing for {0:?}")]
    Idle(Duration),
    /// The upstream connection failed.
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
}

/// What a relayed body tells the log: `(event, reason)`, e.g.
/// `("block", "injection")` or `("warning", "suspicious-request")`.
pub type Report = Box<dyn Fn(&str, &str) + Send + Sync>;

/// The upstream body, bounded and checked.
pub struct RelayedBody {
    inner: Incoming,
    check: Option<InboundCheck>,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Whether `deadline` counts down for the frame being waited on.
    waiting: bool,
    done: bool,
    report: Report,
}

impl RelayedBody {
    /// Relay `inner`, checked by `check` when there is one, cut when the upstream is quiet for `idle`; what happens goes to `report`.
    pub fn new(inner: Incoming, check: Option<InboundCheck>, idle: Duration, report: Report) -> RelayedBody {
        RelayedBody {
            inner,
            check,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            done: false,
            report,
        }
    }

    fn verdict(&mut self, verdict: ChunkVerdict) -> Option<RelayError> {
        match verdict {
            ChunkVerdict::Pass => None,
            ChunkVerdict::Warn(rules) => {
                for rule in rules {
                    (self.report)("warning", &rule);
                }
                None
            }
            ChunkVerdict::Cut(block) => {
                (self.report)("block", block.code);
                self.done = true;
                Some(RelayError::Cut(block.reason))
            }
        }
    }
}

impl Body for RelayedBody {
    type Data = Bytes;
    type Error = RelayError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RelayError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.waiting {
            // The bound counts from when the next chunk is asked for, so a
            // slow reader on the agent's side never counts against upstream.
            let idle = this.idle;
            this.deadline.as_mut().reset(tokio::time::Instant::now() + idle);
            this.waiting = true;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let (Some(data), Some(check)) = (frame.data_ref(), this.check.as_mut()) {
                    let verdict = check.push(data);
                    if let Some(e) = this.verdict(verdict) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.done = true;
                if let Some(verdict) = this.check.as_mut().map(InboundCheck::finish)
                    && let Some(e) = this.verdict(verdict)
                {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.done = true;
                    (this.report)("upstream-idle", "upstream-idle");
                    return Poll::Ready(Some(Err(RelayError::Idle(this.idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // With a check, the end is seen by polling, so the decoder is flushed.
        self.done || (self.check.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
