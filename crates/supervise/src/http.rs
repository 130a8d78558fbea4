//! MCP's streamable HTTP transport, server side, as much as supervise
//! needs: `POST /mcp` with one JSON-RPC message. A notification or a
//! response gets `202`; a request gets its response as JSON, or, when the
//! client accepts `text/event-stream`, as one SSE event preceded by comment
//! lines every 15 s while the operator thinks (so no client read timeout
//! fires during a 30-minute wait). No sessions, no server-initiated stream
//! (`GET` is `405`). Bodies over 1 MiB are `413`. A `Host` or `Origin` that
//! is not loopback (or a name given in `allowed_hosts`) is `403`: a web page
//! cannot rebind its way in.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::mcp::{self, Message};
use crate::supervisor::Supervisor;

/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Interval of SSE keep-alive comments while a call waits.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The MCP endpoint for one bottle.
pub struct McpHttp {
    /// The supervisor the tools file with.
    pub supervisor: Arc<Supervisor>,
    /// Host names accepted besides loopback (e.g. the name the agent uses).
    pub allowed_hosts: Vec<String>,
}

impl McpHttp {
    /// Serve one connection.
    pub async fn serve<S>(self: Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.handle(req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1")
            || self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !self.host_allowed(host) {
            return plain(StatusCode::FORBIDDEN, "supervise: this Host is not served");
        }
        if let Some(origin) = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let origin_host = origin.split("://").nth(1).unwrap_or("");
            if !self.host_allowed(origin_host) {
                return plain(StatusCode::FORBIDDEN, "supervise: cross-origin requests are refused");
            }
        }
        if req.uri().path() != "/mcp" {
            return plain(StatusCode::NOT_FOUND, "supervise: the MCP endpoint is /mcp");
        }
        match *req.method() {
            Method::POST => {}
            Method::GET | Method::DELETE => {
                let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "supervise: POST JSON-RPC messages to /mcp");
                r.headers_mut().insert(hyper::header::ALLOW, "POST".parse().expect("static"));
                return r;
            }
            _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "supervise: POST JSON-RPC messages to /mcp"),
        }
        let sse = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
        let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "supervise: request body over 1 MiB"),
        };
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let answer = mcp::response(
                    &Value::Null,
                    Err(mcp::RpcError { code: mcp::PARSE_ERROR, message: format!("not JSON: {e}") }),
                );
                return json(StatusCode::BAD_REQUEST, &answer);
            }
        };
        let (id, method, params) = match mcp::classify(&body) {
            Message::Notification => return empty(StatusCode::ACCEPTED),
            Message::Invalid(answer) => return json(StatusCode::BAD_REQUEST, &answer),
            Message::Request { id, method, params } => (id, method, params),
        };
        let supervisor = self.supervisor.clone();
        let work = async move {
            let result = mcp::handle(&supervisor, &method, &params).await;
            mcp::response(&id, result)
        };
        if !sse {
            return json(StatusCode::OK, &work.await);
        }
        // SSE: comments keep the stream alive until the answer is ready.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            let mut work = std::pin::pin!(work);
            let mut tick = tokio::time::interval(KEEPALIVE);
            tick.tick().await;
            let answer = loop {
                tokio::select! {
                    answer = &mut work => break answer,
                    _ = tick.tick() => {
                        if tx.send(Bytes::from_static(b": waiting for the operator\n\n")).await.is_err() {
                            // The client left; dropping the call expires its proposal.
                            return;
                        }
                    }
                }
            };
            let _ = tx.send(Bytes::from(format!("event: message\ndata: {answer}\n\n"))).await;
        });
        let mut r = Response::new(ChannelBody(rx).boxed());
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/event-stream".parse().expect("static"));
        r.headers_mut().insert(hyper::header::CACHE_CONTROL, "no-cache".parse().expect("static"));
        r
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static"));
    r
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// SSE events as they are produced.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
