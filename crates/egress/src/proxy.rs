//! The egress proxy server: the I/O shell around [`crate::decision`].
//!
//! An HTTP/1.1 forward proxy on TCP or a unix socket. `CONNECT host:port` to
//! a routed host is answered 200, then TLS is terminated with a leaf for
//! that host signed by the bottle's CA, and every request inside is decided
//! against the CONNECT host (an inner `Host` naming another host is refused)
//! and forwarded over a fresh TLS connection, verified against the system
//! roots plus any extra CA. Absolute-form plain-HTTP requests go through the
//! same decision. Request bodies are read (bounded) for the scan; responses
//! stream, except text-like bodies of known, bounded length, which are read
//! whole for the inbound injection check.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dlp::{KnownSecrets, RuleSet, ScanOptions, Scanner, TokenScanner};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use secret::Secret;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ca::LeafIssuer;
use crate::decision::{
    Block, Decision, Request, ResponseDecision, Safelist, Tokens, decide, decide_response, host_only, is_introspection,
    stripped_credentials,
};
use crate::holds::{DEFAULT_HOLD, NoSink, Proposal, ProposalSink, TokenAllowProposal, Verdict};
use crate::host_labels::{MAX_DISTINCT_PER_MINUTE, SubdomainRate, added_labels};
use crate::inbound::InboundCheck;
use crate::relayed::{self, RelayedBody};
use crate::route_file::RouteFile;

mod websocket;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
type Upstream = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<crate::inward::InwardGuard>>,
    Full<Bytes>,
>;

/// Largest request body scanned (larger is refused, never passed unscanned).
pub const MAX_REQUEST_BODY: usize = dlp::DEFAULT_MAX_BYTES;
/// Largest text response read whole for the injection check.
pub const MAX_SCANNED_RESPONSE: u64 = 4 * 1024 * 1024;

/// Bytes of request and response bodies the proxy holds in memory at once,
/// across all connections: a request waits for its share (then 503), so
/// many large bodies at once cannot push the sidecar out of memory. Three
/// quarters are for request bodies, one for the responses read whole to be
/// checked: apart, so that an exchange holding its request's share never
/// waits for its response's behind requests that wait for that very share.
pub const BODY_BUDGET: usize = 256 * 1024 * 1024;

/// How many bodies over [`LARGE_SCAN`] are scanned at once: a scan's
/// decoded views may take several times its body (see `dlp::Views`), and
/// scanning is work for the CPU, so more at once would only add memory.
pub const LARGE_SCANS: usize = 2;
/// A body this size or larger takes one of the [`LARGE_SCANS`] permits.
pub const LARGE_SCAN: usize = 1024 * 1024;
/// How long each phase may take: a slow client or a silent upstream is
/// answered or cut, never waited on forever.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head, from when the proxy starts reading it (slowloris);
    /// also how long an idle keep-alive connection stays open, and the TLS
    /// handshake inside a tunnel.
    pub request_head: Duration,
    /// The whole request body, after its head.
    pub request_body: Duration,
    /// From sending the request upstream to the response head (model APIs
    /// can think for minutes before the first byte).
    pub upstream_response: Duration,
    /// Silence from the upstream between two chunks of a response body
    /// (SSE streams send keep-alives well within it).
    pub response_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request_head: Duration::from_secs(30),
            request_body: Duration::from_secs(120),
            upstream_response: Duration::from_secs(600),
            response_idle: Duration::from_secs(300),
        }
    }
}

/// Client connections served at once (tunnels included).
pub const MAX_CONNECTIONS: usize = 1024;

/// The routes and the scanners built for them: replaced whole on reload,
/// so a request in flight finishes under the policy it started with.
struct Policy {
    file: RouteFile,
    scanners: HashMap<String, Scanner>,
    /// Every outbound detector, to redact what is logged.
    log_scanner: Scanner,
    /// Per route with `auth`: the credential it injects, to cut a response
    /// that hands it back.
    echo: HashMap<String, Arc<KnownSecrets>>,
}

impl Policy {
    fn new(file: RouteFile, known: &Arc<KnownSecrets>, tokens: &Tokens) -> Result<Policy, ProxyError> {
        let mut echo = HashMap::new();
        for r in file.table.routes() {
            if let Some(token) = r.auth.and_then(|a| tokens.get(a.slot)) {
                let mut k = KnownSecrets::new();
                k.register("injected-credential", token);
                echo.insert(r.route.host.clone(), Arc::new(k));
            }
        }
        // The rules compile once; each route's scanner differs only in options.
        let rules = Arc::new(TokenScanner::new(RuleSet::builtin().clone()));
        let mut scanners = HashMap::new();
        for r in file.table.routes() {
            // Never a fall-back to the default list: a route names what it runs.
            let options = ScanOptions::from_names(&r.route.dlp.outbound_detectors)
                .map_err(|detector| ProxyError::UnknownDetector { host: r.route.host.clone(), detector })?;
            scanners.insert(r.route.host.clone(), Scanner::with_tokens(rules.clone(), known.clone(), options));
        }
        let log_scanner = Scanner::with_tokens(rules, known.clone(), ScanOptions::default());
        Ok(Policy { file, scanners, log_scanner, echo })
    }
}

/// A client connection's share of [`MAX_CONNECTIONS`]: released when the
/// last holder (the connection, its tunnel, its WebSocket relay) ends.
#[derive(Clone)]
struct ConnectionPermit(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

/// Everything the proxy needs, shared by all connections.
pub struct Proxy {
    /// Shared with the connector's resolver (which routes allow inward addresses).
    policy: Arc<std::sync::RwLock<Arc<Policy>>>,
    known: Arc<KnownSecrets>,
    tokens: Tokens,
    safelist: std::sync::RwLock<Safelist>,
    sink: Arc<dyn ProposalSink>,
    hold_timeout: Duration,
    /// Open client connections (a permit each).
    connections: Arc<tokio::sync::Semaphore>,
    /// Body bytes held at once ([`BODY_BUDGET`]).
    bodies: BodyBudget,
    /// Scans of large bodies running at once ([`LARGE_SCANS`]).
    large_scans: Arc<tokio::sync::Semaphore>,
    /// Distinct names asked for under each wildcard route, per minute.
    subdomains: std::sync::Mutex<SubdomainRate>,
    /// Names that may resolve anywhere: what the hosts file maps.
    hosts_file: crate::inward::HostsFileNames,
    timeouts: Timeouts,
    /// Upstream TLS, also for upgraded connections.
    tls: Arc<rustls::ClientConfig>,
    issuer: LeafIssuer,
    client: Upstream,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("routes", &self.policy().file.table.routes().len()).finish_non_exhaustive()
    }
}

/// Why a proxy could not be made from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The extra upstream CA file could not be read.
    #[error("cannot read upstream CA file {path}: {message}")]
    UpstreamCa {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The route file names token slots no value was given for.
    #[error("route file needs token slot(s) {0:?}, which this proxy was not given (EGRESS_TOKEN_<n>)")]
    MissingSlots(Vec<usize>),
    /// A route names a detector this proxy does not run.
    #[error("route {host}: outbound detector '{detector}' is not one this proxy runs")]
    UnknownDetector {
        /// The route's host.
        host: String,
        /// The detector.
        detector: String,
    },
}

fn missing_slots(file: &RouteFile, tokens: &Tokens) -> Result<(), ProxyError> {
    let missing: Vec<usize> = file.slots.iter().copied().filter(|s| !tokens.0.iter().any(|(t, _)| t == s)).collect();
    if missing.is_empty() { Ok(()) } else { Err(ProxyError::MissingSlots(missing)) }
}

impl Proxy {
    /// Build from a loaded route file, the token values by slot, the secrets
    /// to watch for, the CA, and extra upstream roots (PEM).
    pub fn new(
        file: RouteFile,
        tokens: Tokens,
        known: KnownSecrets,
        issuer: LeafIssuer,
        upstream_ca_pem: Option<&[u8]>,
    ) -> Result<Proxy, ProxyError> {
        let known = Arc::new(known);
        missing_slots(&file, &tokens)?;
        let policy = Arc::new(std::sync::RwLock::new(Arc::new(Policy::new(file, &known, &tokens)?)));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = upstream_ca_pem {
            let mut reader = std::io::BufReader::new(pem);
            for cert in rustls_pemfile_certs(&mut reader) {
                roots.add(cert).map_err(|e| ProxyError::Tls(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = Arc::new(tls);
        let hosts_file: crate::inward::HostsFileNames = Arc::new(std::sync::RwLock::new(
            crate::inward::hosts_file_names(&std::fs::read_to_string("/etc/hosts").unwrap_or_default()),
        ));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                // Names resolve to the internet only, unless their route or
                // the hosts file says otherwise.
                let routes = policy.clone();
                let may: crate::inward::MayResolveInward = Arc::new(move |host: &str| {
                    let policy = routes.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    policy.file.table.lookup(host).is_some_and(|r| r.route.allow_private)
                });
                let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
                    crate::inward::InwardGuard::new(hosts_file.clone(), may),
                );
                // Small writes (TLS records, request heads) must not wait for ACKs.
                http.set_nodelay(true);
                http.enforce_http(false);
                http.set_connect_timeout(Some(Duration::from_secs(10)));
                http
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .http1_max_buf_size(64 * 1024)
            .build(connector);
        Ok(Proxy {
            policy,
            known,
            tokens,
            safelist: Default::default(),
            sink: Arc::new(NoSink),
            hold_timeout: DEFAULT_HOLD,
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            bodies: BodyBudget::new(BODY_BUDGET),
            large_scans: Arc::new(tokio::sync::Semaphore::new(LARGE_SCANS)),
            subdomains: Default::default(),
            hosts_file,
            timeouts: Timeouts::default(),
            tls,
            issuer,
            client,
        })
    }

    /// Replace the names that may resolve to any address (by default, the
    /// names `/etc/hosts` maps) with those `text`, a hosts file, maps.
    pub fn with_hosts_file(self, text: &str) -> Proxy {
        *self.hosts_file.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            crate::inward::hosts_file_names(text);
        self
    }

    /// Replace the phase timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Proxy {
        self.timeouts = timeouts;
        self
    }

    /// Hold at most `bytes` of bodies at once (default [`BODY_BUDGET`]).
    pub fn with_body_budget(mut self, bytes: usize) -> Proxy {
        self.bodies = BodyBudget::new(bytes);
        self
    }

    /// Scan a body of `len` bytes with `scan`. A large one takes one of the
    /// [`LARGE_SCANS`] permits (held while it is scanned, never while the
    /// request waits on anything else) and, on a multi-threaded runtime,
    /// runs with `block_in_place`: the worker's other connections move to
    /// another thread for the ~100 ms a 16 MiB scan takes, so handshakes and
    /// small requests are not held up behind it.
    async fn scanned<T>(&self, len: usize, scan: impl FnOnce() -> T) -> T {
        if len < LARGE_SCAN {
            return scan();
        }
        let _permit = self.large_scans.clone().acquire_owned().await;
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(scan),
            _ => scan(),
        }
    }

    /// Serve at most `n` client connections at once; more are answered 503.
    pub fn with_max_connections(mut self, n: usize) -> Proxy {
        self.connections = Arc::new(tokio::sync::Semaphore::new(n));
        self
    }

    /// Send `supervise` holds to `sink`, waiting at most `timeout`.
    pub fn with_sink(mut self, sink: Arc<dyn ProposalSink>, timeout: Duration) -> Proxy {
        self.sink = sink;
        self.hold_timeout = timeout;
        self
    }

    fn safelist(&self) -> std::sync::RwLockReadGuard<'_, Safelist> {
        self.safelist.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// File a hold with the operator and wait (bounded). Approved: `values`
    /// are safe for the rest of this proxy's life. Anything else: the block
    /// to answer with.
    async fn ask_operator(&self, proposal: TokenAllowProposal, values: Vec<Secret<Vec<u8>>>) -> Result<(), Block> {
        // The approval covers the host the operator was shown, nothing else.
        let host = proposal.host.clone();
        let verdict = match tokio::time::timeout(
            self.hold_timeout,
            self.sink.propose(Proposal::EgressTokenAllow(proposal)),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => Verdict::TimedOut,
        };
        let refused = |why: String| Block { code: "supervise", reason: why };
        match verdict {
            Verdict::Approved { .. } => {
                self.safelist.write().unwrap_or_else(std::sync::PoisonError::into_inner).approve(&host, values);
                Ok(())
            }
            Verdict::Rejected { reason } => Err(refused(format!("the operator refused: {reason}"))),
            Verdict::TimedOut => Err(refused("no operator decision in time".to_string())),
            Verdict::Unavailable { why } => {
                Err(Block { code: "supervise-unavailable", reason: format!("needs operator approval: {why}") })
            }
        }
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The hosts currently routed.
    pub fn hosts(&self) -> Vec<String> {
        self.policy().file.table.routes().iter().map(|r| r.route.host.clone()).collect()
    }

    /// The line an operator reads on start-up (`loaded`) and after a reload
    /// (`reloaded`): the hosts now routed.
    pub fn routes_report(&self, verb: &str) -> String {
        let hosts = self.hosts();
        format!("egress: {verb} {} route(s): {}", hosts.len(), hosts.join(" "))
    }

    /// What a reload's `outcome` tells the operator: the routes now
    /// served, or why the old ones stay.
    pub fn reload_report(&self, outcome: Result<(), impl std::fmt::Display>) -> String {
        match outcome {
            Ok(()) => self.routes_report("reloaded"),
            Err(e) => format!("egress: reload refused, keeping the old routes: {e}"),
        }
    }

    /// Replace the routes (SIGHUP). A file whose routes need a token slot
    /// this proxy was not given is refused, and the old routes stay.
    pub fn reload(&self, file: RouteFile) -> Result<(), ProxyError> {
        missing_slots(&file, &self.tokens)?;
        let policy = Arc::new(Policy::new(file, &self.known, &self.tokens)?);
        *self.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
        Ok(())
    }

    /// Serve one client connection until it closes.
    pub async fn serve<S>(self: Arc<Self>, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Past the connection limit, a refusal is still an answer.
        let Ok(held) = self.connections.clone().try_acquire_owned() else {
            use tokio::io::AsyncWriteExt;
            let body = "bot-bottle egress: too many connections\n";
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        };
        // The permit lives as long as the connection does, and as long as
        // any tunnel or WebSocket relay it was upgraded into: each request
        // carries a share, and each task that outlives the HTTP layer keeps
        // one.
        let permit = ConnectionPermit(Arc::new(held));
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |mut req: HttpRequest<Incoming>| {
            req.extensions_mut().insert(permit.clone());
            proxy.clone().outer(req)
        });
        let head = self.timeouts.request_head;
        let _ = http1_server(head).serve_connection(TokioIo::new(stream), service).with_upgrades().await;
    }

    /// A request on the proxy connection: CONNECT, or absolute-form HTTP.
    async fn outer(self: Arc<Self>, req: HttpRequest<Incoming>) -> Result<Response<Body>, Infallible> {
        if req.method() == Method::CONNECT {
            return Ok(self.connect(req));
        }
        let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(block(&Block {
                code: "not-a-proxy-request",
                reason: "requests must be absolute-form (http://host/path) or CONNECT".into(),
            }));
        };
        if req.uri().scheme_str() != Some("http") {
            return Ok(block(&Block {
                code: "scheme",
                reason: "only http:// is proxied in absolute form; use CONNECT for https".into(),
            }));
        }
        Ok(self.exchange(req, authority, false).await)
    }

    fn connect(self: Arc<Self>, req: HttpRequest<Incoming>) -> Response<Body> {
        let permit = req.extensions().get::<ConnectionPermit>().cloned();
        // RFC 9110 9.3.6: a CONNECT target is a host and a port, always.
        let Some(authority) = req.uri().authority().filter(|a| a.port().is_some()).map(|a| a.to_string()) else {
            return block(&Block { code: "bad-connect", reason: "CONNECT needs host:port".into() });
        };
        let host = host_only(&authority).to_string();
        if !is_introspection(&authority) {
            let policy = self.policy();
            let refusal = match policy.file.table.lookup(&host) {
                None => Some(Block { code: "no-route", reason: format!("no route for host {host}") }),
                Some(r) if !r.route.allows_port(crate::decision::port_of(&authority, true)) => Some(Block {
                    code: "port",
                    reason: format!("port {} of {host} is not routed", crate::decision::port_of(&authority, true)),
                }),
                Some(_) => None,
            };
            if let Some(b) = refusal {
                let refused = block(&b);
                self.log(&authority, "CONNECT", "", &refused);
                // A name with no route, on 443: the refusal is answered
                // inside the tunnel, where an HTTPS client shows it (its
                // body names `egress-allow`), not as a CONNECT status it
                // reduces to "tunnel failed". The leaf is minted for this
                // tunnel only (never cached: names the agent makes up
                // cannot grow the cache), and no upstream is ever dialled
                // or resolved.
                let dns_name = manifest::validate_host(&host).is_ok() && !host.starts_with("*.");
                if b.code == "no-route" && dns_name && crate::decision::port_of(&authority, true) == 443 {
                    match self.issuer.leaf_uncached(&host) {
                        Ok(certified) => {
                            let service = hyper::service::service_fn(move |_: HttpRequest<Incoming>| {
                                let b = b.clone();
                                async move { Ok::<_, Infallible>(block(&b)) }
                            });
                            self.tunnel(req, certified, permit, service);
                            return Response::new(empty());
                        }
                        Err(_) => return refused,
                    }
                }
                return refused;
            }
        }
        let certified = match self.issuer.leaf(&host) {
            Ok(c) => c,
            Err(e) => {
                return block(&Block { code: "tls", reason: e.to_string() });
            }
        };
        let proxy = self.clone();
        let inner_permit = permit.clone();
        let service = hyper::service::service_fn(move |mut inner: HttpRequest<Incoming>| {
            // A WebSocket inside the tunnel holds the same share.
            if let Some(p) = &inner_permit {
                inner.extensions_mut().insert(p.clone());
            }
            let proxy = proxy.clone();
            let authority = authority.clone();
            async move { Ok::<_, Infallible>(proxy.exchange(inner, authority, true).await) }
        });
        self.tunnel(req, certified, permit, service);
        Response::new(empty())
    }

    /// Once the CONNECT is answered: TLS as `certified` on the upgraded
    /// connection, then HTTP/1.1 requests to `service`.
    fn tunnel<S>(
        self: Arc<Self>,
        req: HttpRequest<Incoming>,
        certified: Arc<rustls::sign::CertifiedKey>,
        permit: Option<ConnectionPermit>,
        service: S,
    ) where
        S: hyper::service::Service<HttpRequest<Incoming>, Response = Response<Body>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        tokio::spawn(async move {
            // The tunnel counts against the connection limit until it ends.
            let _permit = permit;
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let Ok(config) =
                rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
            else {
                return;
            };
            let mut config = config.with_no_client_auth().with_cert_resolver(Arc::new(FixedCert(certified)));
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let Ok(Ok(tls)) =
                tokio::time::timeout(self.timeouts.request_head, acceptor.accept(TokioIo::new(upgraded))).await
            else {
                return;
            };
            let _ = http1_server(self.timeouts.request_head)
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await;
        });
    }

    /// Decide one request for `authority` and, if allowed, forward it.
    async fn exchange(self: Arc<Self>, req: HttpRequest<Incoming>, authority: String, tls: bool) -> Response<Body> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let response = self.clone().exchange_inner(req, authority.clone(), tls).await;
        self.log(&authority, &method, &path, &response);
        response
    }

    /// `egress.log`: 1 adds a JSON line per block or upstream failure, 2 a
    /// line per forwarded request and per response. Host and path are
    /// redacted by the DLP scanner and the query is never logged, so no value
    /// reaches a log.
    fn log(&self, authority: &str, method: &str, path: &str, response: &Response<Body>) {
        let blocked = response.headers().get(Block::HEADER).and_then(|v| v.to_str().ok());
        let failed = response.status() == StatusCode::BAD_GATEWAY;
        let event = if blocked.is_some() {
            "block"
        } else if failed {
            "upstream-error"
        } else {
            "response"
        };
        // The canary is logged at every level: an exfiltration attempt.
        let level = match (event, blocked) {
            ("response", _) => 2,
            (_, Some("canary")) => 0,
            _ => 1,
        };
        self.log_line(level, event, authority, method, path, Some(response.status().as_u16()), blocked);
    }

    #[allow(clippy::too_many_arguments)]
    fn log_line(
        &self,
        level: u8,
        event: &str,
        authority: &str,
        method: &str,
        path: &str,
        status: Option<u16>,
        reason: Option<&str>,
    ) {
        let policy = self.policy();
        if policy.file.log < level {
            return;
        }
        let clean = |text: &str| {
            let findings = policy.log_scanner.scan(text.as_bytes(), None);
            let (out, unrewritable) = dlp::redact(text.as_bytes(), &findings);
            if unrewritable.is_empty() { String::from_utf8_lossy(&out).into_owned() } else { "[REDACTED]".to_string() }
        };
        let line = serde_json::json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "event": event,
            "reason": reason,
            "host": clean(authority),
            "method": clean(method),
            "path": clean(path),
            "status": status,
        });
        eprintln!("{line}");
    }

    async fn exchange_inner(
        self: Arc<Self>,
        req: HttpRequest<Incoming>,
        authority: String,
        tls: bool,
    ) -> Response<Body> {
        // One policy for the whole exchange, even if a reload lands meanwhile.
        let policy = self.policy();
        let (mut parts, body) = req.into_parts();
        // Inside a tunnel the CONNECT host decides; a Host naming another is a spoof.
        if tls
            && let Some(h) = parts.headers.get(hyper::header::HOST).and_then(|v| v.to_str().ok())
            && !same_host(h, &authority)
        {
            linger(body, self.timeouts.request_body);
            return block(&Block { code: "host-mismatch", reason: format!("Host {h} inside a tunnel to {authority}") });
        }
        // Its share of the body budget before a byte is read: the length
        // it declares, none for an empty body, the most a body may be for
        // one whose length is unknown. Held until the body has gone
        // upstream (or the exchange ends).
        let declared = hyper::body::Body::size_hint(&body).exact();
        let expected = match (declared, hyper::body::Body::is_end_stream(&body)) {
            (Some(n), _) => usize::try_from(n).unwrap_or(usize::MAX).min(MAX_REQUEST_BODY + 1),
            (None, true) => 0,
            (None, false) => MAX_REQUEST_BODY,
        };
        let body_share = if expected > 0 {
            match self.bodies.requests.reserve(expected, self.timeouts.request_body).await {
                Some(share) => Some(share),
                None => {
                    linger(body, self.timeouts.request_body);
                    return answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the sidecar holds as many request bodies as it may; retry shortly".to_string(),
                    );
                }
            }
        } else {
            None
        };
        let mut body = body;
        let read = tokio::time::timeout(self.timeouts.request_body, read_whole(&mut body, MAX_REQUEST_BODY, declared));
        let body = match read.await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                linger(body, self.timeouts.request_body);
                return block(&Block {
                    code: "too-large",
                    reason: format!("request body over {MAX_REQUEST_BODY} bytes cannot be scanned"),
                });
            }
            Err(_) => {
                return answer(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time".to_string());
            }
        };
        // A protocol upgrade (WebSocket): decided like any request at upgrade
        // time; if the route allows it, the bytes are relayed afterwards.
        let upgrade =
            parts.headers.get(hyper::header::UPGRADE).and_then(|v| v.to_str().ok()).map(str::to_string).filter(|_| {
                parts
                    .headers
                    .get_all(hyper::header::CONNECTION)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
            });
        let mut headers = Vec::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            let Ok(v) = value.to_str() else {
                return block(&Block { code: "structural", reason: format!("non-text value in header {name}") });
            };
            if !is_hop_by_hop(name.as_str()) {
                headers.push((name.as_str().to_string(), v.to_string()));
            }
        }
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string();
        let request = Request {
            method: parts.method.as_str(),
            host: &authority,
            path_and_query: &target,
            headers,
            body: &body,
            tls,
        };
        // Many distinct names under one wildcard in a minute: names as a
        // channel, one request at a time.
        let host = host_only(&authority);
        if let Some(route) = policy.file.table.lookup(host)
            && let Some(added) = added_labels(host, &route.route.host)
        {
            let parent = route.route.host.trim_start_matches("*.");
            let distinct = self.subdomains.lock().unwrap_or_else(std::sync::PoisonError::into_inner).observe(
                parent,
                &host[added],
                std::time::Instant::now(),
            );
            if distinct > MAX_DISTINCT_PER_MINUTE {
                return block(&Block {
                    code: "dlp",
                    reason: format!(
                        "more than {MAX_DISTINCT_PER_MINUTE} distinct names under {parent} in a minute (host-label-rate)"
                    ),
                });
            }
        }
        // The agent's own credential headers are stripped; one holding a
        // credential is an attempt, logged at every level (rules, never values).
        let attempts = stripped_credentials(&policy.log_scanner, &request.headers);
        if !attempts.is_empty() {
            let mut rules: Vec<&str> = attempts.iter().map(|f| f.rule.as_str()).collect();
            rules.dedup();
            let path = target.split('?').next().unwrap_or("/");
            let reason = format!("a credential in the agent's own Authorization header ({})", rules.join(", "));
            self.log_line(0, "credential-attempt", &authority, parts.method.as_str(), path, None, Some(&reason));
        }
        let decide_now = |safelist: &Safelist| {
            decide(&policy.file.table, &|r| &policy.scanners[&r.route.host], &self.tokens, safelist, &request)
        };
        let mut decision = self.scanned(body.len(), || decide_now(&self.safelist())).await;
        if let Decision::Hold { host, method, path, findings, values } = decision {
            // The request waits for the operator; approved, it is decided
            // again, so any other finding still counts.
            if let Err(b) = self.ask_operator(TokenAllowProposal { host, method, path, findings }, values).await {
                return block(&b);
            }
            decision = self.scanned(body.len(), || decide_now(&self.safelist())).await;
            if matches!(decision, Decision::Hold { .. }) {
                return block(&Block {
                    code: "supervise",
                    reason: "the approval does not cover every finding in this request".to_string(),
                });
            }
        }
        // What goes upstream is the decision's copy (redactions applied):
        // the body as read goes now, so a body in flight is held once, as
        // its share of the budget counts it.
        drop(body);
        let (path_and_query, headers, body) = match decision {
            Decision::Introspect { body } => {
                let mut r = Response::new(full(body));
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("static"));
                return r;
            }
            Decision::Block(b) => return block(&b),
            Decision::Hold { .. } => unreachable!("holds are resolved above"),
            Decision::Forward { path_and_query, headers, body } => (path_and_query, headers, body),
        };
        if let Some(protocol) = upgrade {
            // Only WebSocket, whose frames the relay reads; any other protocol
            // would be an unscanned channel.
            if !protocol.eq_ignore_ascii_case("websocket") {
                return block(&Block {
                    code: "upgrade",
                    reason: format!(
                        "protocol upgrade to {} is not relayed (only websocket)",
                        protocol.escape_default()
                    ),
                });
            }
            let client_side = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            let permit = parts.extensions.get::<ConnectionPermit>().cloned();
            let upgrade =
                Upgrade { authority: &authority, tls, method: &parts.method, path_and_query: &path_and_query };
            return self.relay_upgrade(&policy, upgrade, headers, client_side, permit).await;
        }
        let path_only = path_and_query.split('?').next().unwrap_or("/");
        self.log_line(2, "request", &authority, parts.method.as_str(), path_only, None, None);
        let scheme = if tls { "https" } else { "http" };
        let uri = format!("{scheme}://{authority}{path_and_query}");
        let mut builder = HttpRequest::builder().method(parts.method.clone()).uri(&uri);
        for (n, v) in &headers {
            if !n.eq_ignore_ascii_case("host") {
                builder = builder.header(n.as_str(), v.as_str());
            }
        }
        let Ok(upstream_req) = builder.body(Full::new(Bytes::from(body))) else {
            return block(&Block { code: "structural", reason: "request could not be rebuilt".into() });
        };
        let response =
            match tokio::time::timeout(self.timeouts.upstream_response, self.client.request(upstream_req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return bad_gateway(&authority, &e),
                Err(_) => {
                    return answer(StatusCode::GATEWAY_TIMEOUT, format!("upstream {authority} did not answer in time"));
                }
            };
        // The request body went upstream: its share goes back before the
        // response asks for one (holding one while waiting for another, in
        // a fair queue, could deadlock).
        drop(body_share);
        self.respond(&policy, &authority, parts.method.as_str(), path_only, response).await
    }

    /// Forward a WebSocket upgrade request on a connection of its own (no
    /// extensions offered, so frames are plain); on `101`, relay frames both
    /// ways through [`websocket`] until either side closes.
    async fn relay_upgrade(
        self: &Arc<Self>,
        policy: &Arc<Policy>,
        Upgrade { authority, tls, method, path_and_query }: Upgrade<'_>,
        headers: Vec<(String, String)>,
        client_side: Option<hyper::upgrade::OnUpgrade>,
        permit: Option<ConnectionPermit>,
    ) -> Response<Body> {
        let failed = |why: String| answer(StatusCode::BAD_GATEWAY, format!("upstream {authority} failed: {why}"));
        let Some(client_side) = client_side else { return failed("this connection cannot be upgraded".into()) };
        let host = host_only(authority).to_string();
        let address = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&address).await.map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn UpgradeIo> = if tls {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
                Box::new(
                    tokio_rustls::TlsConnector::from(self.tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            } else {
                Box::new(tcp)
            };
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn.with_upgrades());
            let mut builder = HttpRequest::builder()
                .method(method.clone())
                .uri(path_and_query)
                .header(hyper::header::HOST, authority);
            for (n, v) in &headers {
                if !n.eq_ignore_ascii_case("host") && !n.eq_ignore_ascii_case("sec-websocket-extensions") {
                    builder = builder.header(n.as_str(), v.as_str());
                }
            }
            let req = builder
                .header(hyper::header::CONNECTION, "upgrade")
                .header(hyper::header::UPGRADE, "websocket")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            sender.send_request(req).await.map_err(|e| e.to_string())
        };
        let mut upstream = match tokio::time::timeout(self.timeouts.upstream_response, connect).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return failed(e),
            Err(_) => return failed("no answer in time".into()),
        };
        if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = upstream.into_parts();
            return Response::from_parts(parts, body.map_err(Into::into).boxed());
        }
        let upstream_side = hyper::upgrade::on(&mut upstream);
        let relay = websocket::Relay {
            proxy: self.clone(),
            policy: policy.clone(),
            authority: authority.to_string(),
            path: path_and_query.split('?').next().unwrap_or("/").to_string(),
        };
        tokio::spawn(async move {
            // The relay counts against the connection limit until it ends.
            let _permit = permit;
            let (Ok(client), Ok(server)) = (client_side.await, upstream_side.await) else { return };
            relay.run(TokioIo::new(client), TokioIo::new(server)).await;
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.headers_mut() = upstream.headers().clone();
        response
    }

    /// Relay a response. Text the route checks for injection is either read
    /// whole (known length up to [`MAX_SCANNED_RESPONSE`], not an event
    /// stream: a hit becomes a clean 403) or checked chunk by chunk as it
    /// streams (a hit cuts the stream); everything streams under the idle
    /// bound.
    async fn respond(
        self: &Arc<Self>,
        policy: &Policy,
        authority: &str,
        method: &str,
        path: &str,
        response: Response<Incoming>,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        let hop: Vec<hyper::header::HeaderName> =
            parts.headers.keys().filter(|n| is_hop_by_hop(n.as_str())).cloned().collect();
        for name in hop {
            parts.headers.remove(name);
        }
        let host = host_only(authority);
        let Some(route) = policy.file.table.lookup(host) else {
            return block(&Block { code: "no-route", reason: format!("no route for host {host}") });
        };
        let text =
            |name: hyper::header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = text(hyper::header::CONTENT_TYPE);
        let encoding = text(hyper::header::CONTENT_ENCODING);
        let length = text(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let event_stream = content_type.as_deref().is_some_and(|c| c.contains("event-stream"));
        let report: relayed::Report = {
            let (proxy, authority, method, path) =
                (self.clone(), authority.to_string(), method.to_string(), path.to_string());
            Box::new(move |event, reason| proxy.log_line(1, event, &authority, &method, &path, None, Some(reason)))
        };
        let idle = self.timeouts.response_idle;
        // The credential this route injects never comes back to the agent:
        // not in a header, not in the body.
        let echo = policy.echo.get(&route.route.host).cloned();
        if let Some(known) = &echo {
            for value in parts.headers.values() {
                let mut found = Vec::new();
                known.scan(value.as_bytes(), dlp::View::Raw, &mut found);
                if !found.is_empty() {
                    return block(&crate::inbound::echo_block());
                }
            }
        }
        let injection = crate::decision::checks_response(route, content_type.as_deref());
        if !injection && echo.is_none() {
            return Response::from_parts(parts, relay(RelayedBody::new(body, None, idle, report)));
        }
        if !injection || event_stream || length.is_none_or(|l| l > MAX_SCANNED_RESPONSE) {
            let check = match InboundCheck::new(encoding.as_deref()) {
                Ok(c) => {
                    let c = if injection { c } else { c.without_injection() };
                    Some(match &echo {
                        Some(known) => c.with_echo(known.clone()),
                        None => c,
                    })
                }
                // What cannot be checked for the echo is not relayed.
                Err(e) if echo.is_some() => {
                    return block(&Block { code: "credential-echo", reason: e.to_string() });
                }
                Err(e) => {
                    report("warning", &e.to_string());
                    None
                }
            };
            return Response::from_parts(parts, relay(RelayedBody::new(body, check, idle, report)));
        }
        // Read whole to be checked: its share of the body budget first.
        let declared = length.map_or(MAX_SCANNED_RESPONSE, |l| l.min(MAX_SCANNED_RESPONSE)) as usize;
        let Some(_response_share) = self.bodies.responses.reserve(declared, self.timeouts.upstream_response).await
        else {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the sidecar holds as many bodies as it may; retry shortly".to_string(),
            );
        };
        let mut body = RelayedBody::new(body, None, idle, report);
        let bytes = match read_whole(&mut body, MAX_SCANNED_RESPONSE as usize, length).await {
            Ok(b) => b,
            Err(_) => {
                return block(&Block { code: "upstream", reason: format!("response from {host} broke off") });
            }
        };
        let decoded = match encoding.as_deref() {
            None => std::borrow::Cow::Borrowed(&bytes[..]),
            Some(e) => match dlp::decode(&bytes, e, dlp::DEFAULT_MAX_BYTES) {
                Ok(d) => std::borrow::Cow::Owned(d),
                Err(e) => {
                    return block(&Block {
                        code: "injection",
                        reason: format!("the response cannot be checked for prompt injection: {e}"),
                    });
                }
            },
        };
        let decision = self
            .scanned(decoded.len(), || {
                let mut found = Vec::new();
                if let Some(known) = &echo {
                    known.scan(&bytes, dlp::View::Raw, &mut found);
                    known.scan(&decoded, dlp::View::Derived, &mut found);
                }
                match found.is_empty() {
                    true => decide_response(route, content_type.as_deref(), &decoded),
                    false => ResponseDecision::Block(crate::inbound::echo_block()),
                }
            })
            .await;
        match decision {
            ResponseDecision::Block(b) => block(&b),
            ResponseDecision::Warn(findings) => {
                for f in &findings {
                    self.log_line(1, "warning", authority, method, path, None, Some(&f.rule));
                }
                Response::from_parts(parts, full(bytes))
            }
            ResponseDecision::Defuse { body, findings } => {
                for f in &findings {
                    self.log_line(1, "defused", authority, method, path, None, Some(&f.rule));
                }
                // The decoded body, defused: no coding, its own length.
                let mut parts = parts;
                parts.headers.remove(hyper::header::CONTENT_ENCODING);
                parts.headers.insert(hyper::header::CONTENT_LENGTH, body.len().into());
                Response::from_parts(parts, full(body))
            }
            ResponseDecision::Pass => Response::from_parts(parts, full(bytes)),
        }
    }
}

/// Where an upgrade request goes.
struct Upgrade<'a> {
    authority: &'a str,
    tls: bool,
    method: &'a Method,
    path_and_query: &'a str,
}

/// A byte stream an upgraded upstream connection runs over.
trait UpgradeIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> UpgradeIo for T {}

/// The leaf for one tunnel, whatever SNI the client sends.
#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn rustls_pemfile_certs(reader: &mut dyn std::io::BufRead) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut text = Vec::new();
    let _ = reader.read_to_end(&mut text);
    rustls::pki_types::CertificateDer::pem_slice_iter(&text).flatten().collect()
}

fn same_host(host_header: &str, authority: &str) -> bool {
    host_only(host_header).eq_ignore_ascii_case(host_only(authority))
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection" | "proxy-connection" | "keep-alive" | "te" | "trailer" | "upgrade" | "proxy-authenticate"
    )
}

fn empty() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

fn relay(body: RelayedBody) -> Body {
    body.map_err(Into::into).boxed()
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A block as the spec shapes it.
pub fn block(b: &Block) -> Response<Body> {
    let mut r = Response::new(full(b.body()));
    *r.status_mut() = StatusCode::FORBIDDEN;
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static"));
    if let Ok(v) = b.code.parse() {
        h.insert(Block::HEADER, v);
    }
    r
}

/// The body budget: request bodies and checked responses, each in KiB
/// permits (see [`BODY_BUDGET`]).
struct BodyBudget {
    requests: Share,
    responses: Share,
}

impl BodyBudget {
    fn new(bytes: usize) -> BodyBudget {
        let responses = bytes / 4;
        BodyBudget { requests: Share::new(bytes - responses), responses: Share::new(responses) }
    }
}

/// One part of the body budget.
struct Share {
    permits: Arc<tokio::sync::Semaphore>,
    capacity: u32,
}

impl Share {
    fn new(bytes: usize) -> Share {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).max(1);
        Share { permits: Arc::new(tokio::sync::Semaphore::new(kib as usize)), capacity: kib }
    }

    /// Room for `bytes`, waited for at most `wait`; `None` when the proxy
    /// is too busy. A body larger than the whole share takes all of it.
    async fn reserve(&self, bytes: usize, wait: Duration) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let want = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.capacity);
        tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(want)).await.ok()?.ok()
    }
}

/// A body read whole into one buffer the size it `declared` (64 KiB to
/// start with when it declared none): no second copy of it, as collecting
/// its chunks and joining them would make. At most `limit` bytes: `Err`
/// when it is longer or breaks off.
async fn read_whole<B>(body: &mut B, limit: usize, declared: Option<u64>) -> Result<Bytes, ()>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let capacity = declared.map_or(64 * 1024, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut buf = Vec::with_capacity(capacity.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// The most of a refused request's body [`linger`] reads and drops.
const LINGER_BYTES: usize = MAX_REQUEST_BODY;

/// What is left of the body of a request refused before it was read whole
/// (no share of the body budget in time, too large, a spoofed Host) is read
/// and dropped as it comes, for at most [`LINGER_BYTES`] and `wait`, on a
/// task of its own, while the answer goes out. Closing the connection with
/// the body unread would make the kernel reset it, and a client still
/// sending (most send the whole body before reading) would see the reset
/// instead of the answer — "retry shortly" lost as a broken pipe. Nothing is
/// kept, so the budget is not touched; the bounds stop a client from
/// holding the task.
fn linger(mut body: Incoming, wait: Duration) {
    tokio::spawn(async move {
        let drain = async {
            let mut left = LINGER_BYTES;
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                let Some(rest) = left.checked_sub(data.len()) else { break };
                left = rest;
            }
        };
        let _ = tokio::time::timeout(wait, drain).await;
    });
}

/// The agent-facing HTTP/1.1 server: bounded head time and buffers.
fn http1_server(head_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(head_timeout).max_buf_size(64 * 1024);
    builder
}

/// A plain-text answer from the proxy itself (not a policy block).
fn answer(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(full(format!("bot-bottle egress: {text}\n")));
    *r.status_mut() = status;
    r
}

/// 502, naming the innermost cause.
fn bad_gateway(authority: &str, e: &dyn std::error::Error) -> Response<Body> {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    answer(StatusCode::BAD_GATEWAY, format!("upstream {authority} failed: {cause}"))
}
