//! The WebSocket relay: after a `101`, every frame both ways is parsed
//! ([`crate::ws_frame`]) and decided before it is passed on.
//!
//! Agent → upstream: each data frame's payload goes through
//! [`decide_frame`] with the route's outbound scanner (the tail of what was
//! sent before rides along, so a value split across frames is still seen),
//! under the route's `outbound_on_match`: `redact` rewrites the frame,
//! `supervise` holds the connection for the operator, and a block closes
//! it (close code 1008 to the agent, naming the rule, never the value).
//! Upstream → agent: text messages go through the inbound injection check,
//! which closes the connection the same way on a hit. Control frames pass
//! as they are. A protocol error or an oversized frame closes with 1002 or
//! 1009.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::{MAX_REQUEST_BODY, Policy, Proxy};
use crate::decision::{Block, FrameDecision, decide_frame, host_only};
use crate::holds::TokenAllowProposal;
use crate::inbound::{ChunkVerdict, InboundCheck, OVERLAP};
use crate::ws_frame::{self, Frame, FrameError};

/// One upgraded connection's context.
pub(super) struct Relay {
    pub proxy: Arc<Proxy>,
    /// The policy the upgrade was decided under, for the connection's life.
    pub policy: Arc<Policy>,
    pub authority: String,
    pub path: String,
}

/// Why a direction stopped.
enum End {
    /// The sender closed its side.
    Closed,
    /// Close the agent's side with this code and reason.
    Refuse(u16, String),
}

impl Relay {
    /// Relay until either side ends; then both are closed.
    pub async fn run<C, U>(self, client: C, upstream: U)
    where
        C: AsyncRead + AsyncWrite + Unpin + Send,
        U: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (client_read, client_write) = tokio::io::split(client);
        let (upstream_read, upstream_write) = tokio::io::split(upstream);
        let (to_client, to_upstream) = (Mutex::new(client_write), Mutex::new(upstream_write));
        let end = tokio::select! {
            end = self.outbound(client_read, &to_upstream) => end,
            end = self.inbound(upstream_read, &to_client) => end,
        };
        if let End::Refuse(code, reason) = end {
            // The agent learns why; the upstream is told the client is going.
            let close = ws_frame::encode(&Frame::close(code, &reason, None));
            let mut w = to_client.lock().await;
            let _ = w.write_all(&close).await;
            let _ = w.shutdown().await;
            let close = ws_frame::encode(&Frame::close(ws_frame::GOING_AWAY, "", Some(mask_key())));
            let mut w = to_upstream.lock().await;
            let _ = w.write_all(&close).await;
            let _ = w.shutdown().await;
        }
    }

    fn log_block(&self, code: &str) {
        self.proxy.log_line(1, "block", &self.authority, "WEBSOCKET", &self.path, None, Some(code));
    }

    fn refuse(&self, b: &Block) -> End {
        self.log_block(b.code);
        End::Refuse(ws_frame::POLICY_VIOLATION, b.line())
    }

    /// Agent → upstream.
    async fn outbound<R, W>(&self, mut from: R, to: &Mutex<W>) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let host = host_only(&self.authority);
        let Some(route) = self.policy.file.table.lookup(host) else {
            return self.refuse(&Block { code: "no-route", reason: format!("no route for host {host}") });
        };
        let scanner = &self.policy.scanners[&route.route.host];
        let mut frames = FrameReader::default();
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let mut frame = match frames.next(&mut from).await {
                Ok(Some(f)) => f,
                Ok(None) => return End::Closed,
                Err(e) => return self.protocol_error(&e),
            };
            if frame.is_data() {
                loop {
                    let decision = decide_frame(route, scanner, (&self.proxy.safelist(), host), &carry, &frame.payload);
                    match decision {
                        FrameDecision::Pass => break,
                        FrameDecision::Rewrite(payload) => {
                            frame.payload = payload;
                            break;
                        }
                        FrameDecision::Block(b) => return self.refuse(&b),
                        FrameDecision::Hold { findings, values } => {
                            let proposal = TokenAllowProposal {
                                host: host.to_string(),
                                method: "WEBSOCKET".to_string(),
                                path: self.path.clone(),
                                findings,
                            };
                            if let Err(b) = self.proxy.ask_operator(proposal, values).await {
                                return self.refuse(&b);
                            }
                            // Approved: decide again; other findings still count.
                        }
                    }
                }
                carry.extend_from_slice(&frame.payload);
                let keep = carry.len().min(OVERLAP);
                carry.drain(..carry.len() - keep);
            }
            if to.lock().await.write_all(&ws_frame::encode(&frame)).await.is_err() {
                return End::Closed;
            }
        }
    }

    /// Upstream → agent.
    async fn inbound<R, W>(&self, mut from: R, to: &Mutex<W>) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let host = host_only(&self.authority);
        let checks = self
            .policy
            .file
            .table
            .lookup(host)
            .is_some_and(|r| r.route.dlp.inbound_detectors.iter().any(|d| d == "injection"));
        let mut check = InboundCheck::new(None).expect("identity is always checkable");
        let mut frames = FrameReader::default();
        // The opcode of the message being received (continuations inherit it).
        let mut message = ws_frame::TEXT;
        loop {
            let frame = match frames.next(&mut from).await {
                Ok(Some(f)) => f,
                Ok(None) => return End::Closed,
                Err(e) => return self.protocol_error(&e),
            };
            if frame.opcode == ws_frame::TEXT || frame.opcode == ws_frame::BINARY {
                message = frame.opcode;
            }
            if checks && frame.is_data() && message == ws_frame::TEXT {
                match check.push(&frame.payload) {
                    ChunkVerdict::Cut(b) => return self.refuse(&b),
                    ChunkVerdict::Warn(rules) => {
                        for rule in rules {
                            self.proxy.log_line(
                                1,
                                "warning",
                                &self.authority,
                                "WEBSOCKET",
                                &self.path,
                                None,
                                Some(&rule),
                            );
                        }
                    }
                    ChunkVerdict::Pass => {}
                }
            }
            if to.lock().await.write_all(&ws_frame::encode(&frame)).await.is_err() {
                return End::Closed;
            }
        }
    }

    fn protocol_error(&self, e: &FrameError) -> End {
        self.log_block("websocket-protocol");
        End::Refuse(e.close_code(), format!("bot-bottle egress: {e}"))
    }
}

/// A masking key for a frame the proxy itself sends upstream (clients must
/// mask; the key only has to vary).
fn mask_key() -> [u8; 4] {
    use std::hash::BuildHasher;
    let v = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    (v as u32).to_be_bytes()
}

/// Frames from a byte stream, each at most [`MAX_REQUEST_BODY`] bytes.
#[derive(Default)]
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// The next frame; `None` when the stream ends.
    async fn next<R: AsyncRead + Unpin>(&mut self, from: &mut R) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some((frame, used)) = ws_frame::parse(&self.buf, MAX_REQUEST_BODY as u64)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 16 * 1024];
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
