//! The gate: git smart HTTP over the mirrors, and the push decision its
//! pre-receive hooks ask for.
//!
//! `GET /<name>.git/info/refs?service=…` refreshes the mirror from the
//! upstream first (an unreachable upstream becomes git's `remote error:`
//! line, never a stale answer), then lets `git upload-pack`/`receive-pack
//! --stateless-rpc --advertise-refs` answer. `POST /<name>.git/git-…-pack`
//! streams the request into the real git and its answer back. A push runs
//! the mirror's pre-receive hook, which asks [`Gate::decide_push`] through
//! the hook socket: scan what the push introduces, refuse on a finding, ask
//! the operator about suppressed findings, forward upstream, and only then
//! let git accept the push locally.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dlp::{KnownSecrets, RuleSet, ScanOptions, Scanner};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use proposal::{Proposal, ProposalSink, PushAllowProposal, PushFinding, Verdict};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::hook::{HookReply, HookRequest, MAX_REQUEST, QUARANTINE_ENV, SOCKET_ENV, TICKET_ENV};
use crate::mirror::{Mirror, RefPolicy};
use crate::push_scan::{Git, PushReport, PushScan, RefUpdate};

/// Bounds on what one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A push's request body (the pack).
    pub receive_body: u64,
    /// A fetch's request body (negotiation), after gzip is undone.
    pub upload_body: usize,
    /// A whole request, from its head to the end of git's answer.
    pub request_time: Duration,
    /// How long a push waits for the operator's word on suppressed findings.
    pub hold: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            receive_body: 2 * 1024 * 1024 * 1024,
            upload_body: 64 * 1024 * 1024,
            request_time: Duration::from_secs(30 * 60),
            hold: Duration::from_secs(300),
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The gate over its mirrors.
pub struct Gate {
    mirrors: HashMap<String, Mirror>,
    scanner: Arc<Scanner>,
    sink: Arc<dyn ProposalSink>,
    limits: Limits,
    hook_socket: PathBuf,
    /// Pushes in flight: ticket → repo name.
    tickets: Mutex<HashMap<String, String>>,
    /// One refresh of a mirror at a time: concurrent `git fetch`es into one
    /// bare repository can contend for its ref locks (defensive; git
    /// handled every concurrent refresh tried here).
    refreshing: HashMap<String, tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("repos", &self.mirrors.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate over `mirrors`, scanning with the built-in token rules plus
    /// `known` (the bottle's secrets and canary); its hooks reach it on
    /// `hook_socket` (serve it with [`Gate::serve_hooks`]).
    pub fn new(
        mirrors: Vec<Mirror>,
        known: KnownSecrets,
        sink: Arc<dyn ProposalSink>,
        limits: Limits,
        hook_socket: PathBuf,
    ) -> Gate {
        let options = ScanOptions::default();
        Gate {
            refreshing: mirrors.iter().map(|m| (m.name.clone(), tokio::sync::Mutex::new(()))).collect(),
            mirrors: mirrors.into_iter().map(|m| (m.name.clone(), m)).collect(),
            scanner: Arc::new(Scanner::new(RuleSet::builtin().clone(), known, options)),
            sink,
            limits,
            hook_socket,
            tickets: Mutex::new(HashMap::new()),
        }
    }

    /// Refresh every mirror from its upstream (at start); failures are
    /// returned per repo, not fatal: a fetch will report them to the agent.
    pub async fn refresh_all(&self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for m in self.mirrors.values() {
            if let Err(e) = m.refresh().await {
                failed.push((m.name.clone(), e.to_string()));
            }
        }
        failed
    }

    /// The repo names served.
    pub fn repos(&self) -> Vec<String> {
        let mut names: Vec<String> = self.mirrors.keys().cloned().collect();
        names.sort();
        names
    }

    /// Serve one HTTP connection.
    pub async fn serve<S>(self: Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let gate = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let gate = gate.clone();
            async move { Ok::<_, Infallible>(gate.handle(req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(64 * 1024);
        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let Some((name, rest)) = path.trim_start_matches('/').split_once('/') else {
            return text(StatusCode::NOT_FOUND, format!("git-gate: no repository at {path}"));
        };
        let name = name.strip_suffix(".git").unwrap_or(name);
        let Some(mirror) = self.mirrors.get(name).cloned() else {
            return text(
                StatusCode::NOT_FOUND,
                format!("git-gate: no repository '{name}' here; this bottle declares: {}", self.repos().join(", ")),
            );
        };
        let service = match (req.method(), rest) {
            (&Method::GET, "info/refs") => {
                let query = req.uri().query().unwrap_or("");
                match query.split('&').find_map(|kv| kv.strip_prefix("service=")) {
                    Some(s @ ("git-upload-pack" | "git-receive-pack")) => {
                        let s = s.to_string();
                        return self.advertise(&mirror, &s, protocol(&req)).await;
                    }
                    _ => {
                        return text(
                            StatusCode::FORBIDDEN,
                            "git-gate: only smart HTTP is served (info/refs?service=…)",
                        );
                    }
                }
            }
            (&Method::POST, s @ ("git-upload-pack" | "git-receive-pack")) => s.to_string(),
            _ => return text(StatusCode::NOT_FOUND, format!("git-gate: nothing at {} {path}", req.method())),
        };
        self.rpc(&mirror, &service, req).await
    }

    /// `info/refs`: refresh, then the ref advertisement.
    async fn advertise(&self, mirror: &Mirror, service: &str, protocol: Option<String>) -> Response<Body> {
        let content_type = format!("application/x-{service}-advertisement");
        let v2 = protocol.as_deref().is_some_and(|p| p.contains("version=2")) && service == "git-upload-pack";
        let mut body = crate::pktline::encode(format!("# service={service}\n").as_bytes());
        body.extend(crate::pktline::FLUSH);
        let refreshed = {
            let _one_at_a_time = match self.refreshing.get(&mirror.name) {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            mirror.refresh().await
        };
        if let Err(e) = refreshed {
            log("refresh-failed", &mirror.name, &e.to_string());
            // git shows an ERR packet as `remote error: …` and stops.
            body.extend(crate::pktline::encode(format!("ERR git-gate: {e}").as_bytes()));
            return git_response(&content_type, full(body));
        }
        if v2 {
            // Protocol v2 answers carry no service header.
            body.clear();
        }
        let mut cmd = tokio::process::Command::new("git");
        cmd.args([service.trim_start_matches("git-"), "--stateless-rpc", "--advertise-refs"])
            .arg(&mirror.path)
            .kill_on_drop(true);
        if let Some(p) = protocol {
            cmd.env("GIT_PROTOCOL", p);
        }
        match tokio::time::timeout(self.limits.request_time, cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => {
                body.extend(out.stdout);
                git_response(&content_type, full(body))
            }
            Ok(Ok(out)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git-gate: {service} failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            ),
            Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("git-gate: cannot run git: {e}")),
            Err(_) => text(StatusCode::GATEWAY_TIMEOUT, "git-gate: the advertisement took too long".to_string()),
        }
    }

    /// `POST …/git-upload-pack` or `git-receive-pack`: the request into the
    /// real git, its answer streamed back.
    async fn rpc(self: Arc<Self>, mirror: &Mirror, service: &str, req: Request<Incoming>) -> Response<Body> {
        let receive = service == "git-receive-pack";
        let length = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limit = if receive { self.limits.receive_body } else { self.limits.upload_body as u64 };
        if length.is_some_and(|l| l > limit) {
            return text(StatusCode::PAYLOAD_TOO_LARGE, format!("git-gate: request over {limit} bytes"));
        }
        let gzip = req
            .headers()
            .get(hyper::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let protocol = protocol(&req);
        let mut cmd = tokio::process::Command::new("git");
        cmd.args([service.trim_start_matches("git-"), "--stateless-rpc"])
            .arg(&mirror.path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = &protocol {
            cmd.env("GIT_PROTOCOL", p);
        }
        let ticket = receive.then(|| {
            let ticket = format!("{:032x}", rand::random::<u128>());
            self.tickets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ticket.clone(), mirror.name.clone());
            cmd.env(SOCKET_ENV, &self.hook_socket).env(TICKET_ENV, &ticket);
            ticket
        });
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("git-gate: cannot run git: {e}")),
        };
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "git-gate: git's pipes are missing".to_string());
        };
        // The request body: a fetch's (small, maybe gzipped) is read whole;
        // a push's pack streams in, counted against the limit.
        let body = req.into_body();
        let feed = match gzip.as_deref() {
            Some("gzip" | "x-gzip") => {
                let bytes = match Limited::new(body, self.limits.upload_body).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "git-gate: request too large".to_string()),
                };
                let mut decoded = Vec::new();
                let reader = flate2::read::GzDecoder::new(&bytes[..]);
                if std::io::Read::read_to_end(
                    &mut std::io::Read::take(reader, self.limits.upload_body as u64 + 1),
                    &mut decoded,
                )
                .is_err()
                    || decoded.len() > self.limits.upload_body
                {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "git-gate: the gzip request body is corrupt or too large".to_string(),
                    );
                }
                Feed::Whole(decoded)
            }
            None | Some("identity") => Feed::Stream(body),
            Some(other) => {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("git-gate: request encoding {other}"));
            }
        };
        let deadline = tokio::time::Instant::now() + self.limits.request_time;
        tokio::spawn(async move {
            match feed {
                Feed::Whole(bytes) => {
                    let _ = stdin.write_all(&bytes).await;
                }
                Feed::Stream(mut body) => {
                    let mut seen = 0u64;
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Some(data) = frame.data_ref() {
                            seen += data.len() as u64;
                            if seen > limit || stdin.write_all(data).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            drop(stdin);
        });
        let repo = mirror.name.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log("git-stderr", &repo, &line);
            }
        });
        let gate = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        tokio::spawn(async move {
            let mut stdout = stdout;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let read = tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await;
                match read {
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => {
                        if tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                    Err(_) => {
                        let _ = tx.send(Err(std::io::Error::other("git-gate: request took too long"))).await;
                        break;
                    }
                }
            }
            let _ = child.kill().await;
            if let Some(t) = ticket {
                gate.tickets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&t);
            }
        });
        git_response(&format!("application/x-{service}-result"), ChannelBody(rx).boxed())
    }

    /// Serve pre-receive hooks on `listener` until it fails.
    pub async fn serve_hooks(self: Arc<Self>, listener: tokio::net::UnixListener) {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                // Out of descriptors (EMFILE): wait for some to close
                // instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let gate = self.clone();
            tokio::spawn(async move { gate.hook_connection(conn).await });
        }
    }

    async fn hook_connection(&self, conn: tokio::net::UnixStream) {
        let (read, mut write) = conn.into_split();
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64));
        let request = match reader.read_line(&mut line).await {
            Ok(_) => serde_json::from_str::<HookRequest>(&line).ok(),
            Err(_) => None,
        };
        let (says, code) = match request {
            Some(r) => self.decide_push(r).await,
            None => (vec!["git-gate: push refused: malformed hook request".to_string()], 1),
        };
        let mut out = Vec::new();
        for s in says {
            out.push(HookReply::Say(s));
        }
        out.push(HookReply::Exit(code));
        for reply in out {
            let Ok(mut bytes) = serde_json::to_vec(&reply) else { return };
            bytes.push(b'\n');
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }

    /// Decide a push the hook relayed: the lines to show the agent and the
    /// hook's exit code (0 accepts).
    pub async fn decide_push(&self, request: HookRequest) -> (Vec<String>, i32) {
        let refuse = |lines: Vec<String>| (lines, 1);
        let name = self.tickets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&request.ticket).cloned();
        let Some(mirror) = name.and_then(|n| self.mirrors.get(&n)) else {
            return refuse(vec!["git-gate: push refused: not a push this gate is serving".to_string()]);
        };
        let updates = match RefUpdate::parse(&request.updates) {
            Ok(u) => u,
            Err(e) => return refuse(vec![format!("git-gate: push refused: {e}")]),
        };
        let env: Vec<(String, String)> =
            request.env.into_iter().filter(|(k, _)| QUARANTINE_ENV.contains(&k.as_str())).collect();
        let git = Git { dir: mirror.path.clone(), env: env.clone() };
        let (policy_git, policy_updates, policy) = (git.clone(), updates.clone(), mirror.policy);
        let beyond = tokio::task::spawn_blocking(move || {
            beyond_policy(policy, &policy_updates, |u| policy_git.is_ancestor(&u.old, &u.new))
        })
        .await
        .unwrap_or_else(|e| vec![format!("git-gate:   the ref check failed: {e}")]);
        if !beyond.is_empty() {
            log_push(&self.scanner, &mirror.name, &updates, &PushReport::default(), "refused: ref policy");
            let mut lines = vec![format!(
                "git-gate: push refused: it would delete or rewrite upstream history, which this bottle does not allow for {}:",
                mirror.name
            )];
            lines.extend(beyond);
            lines.push("git-gate: nothing was sent upstream".to_string());
            return refuse(lines);
        }
        // git log and the scan are CPU and process work: off the reactor.
        let (scanner, scanned) = (self.scanner.clone(), updates.clone());
        let scan = tokio::task::spawn_blocking(move || PushScan { git: &git, scanner: &scanner }.run(&scanned));
        let report = match scan.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return refuse(vec![format!("git-gate: push refused: cannot read the pushed commits: {e}")]),
            Err(e) => return refuse(vec![format!("git-gate: push refused: the scan failed: {e}")]),
        };
        let verdict = |v: &str| log_push(&self.scanner, &mirror.name, &updates, &report, v);
        if !report.findings.is_empty() {
            verdict("refused: findings");
            let mut lines = vec![format!(
                "git-gate: push refused: {} finding(s) in what this push introduces ({} commit(s) scanned):",
                report.findings.len(),
                report.commits
            )];
            lines.extend(report.findings.iter().map(finding_line));
            lines.push(
                "git-gate: remove the value from those commits (rewrite them) and push again; nothing was sent upstream"
                    .to_string(),
            );
            return refuse(lines);
        }
        if !report.suppressed.is_empty() {
            let proposal = PushAllowProposal {
                repo: mirror.name.clone(),
                refs: updates.iter().map(|u| u.name.clone()).collect(),
                findings: report.suppressed.clone(),
            };
            let answer = tokio::time::timeout(self.limits.hold, self.sink.propose(Proposal::GitPushAllow(proposal)));
            let why = match answer.await {
                Ok(Verdict::Approved { reason }) if !reason.trim().is_empty() => None,
                Ok(Verdict::Approved { .. }) => Some("the approval carried no reason".to_string()),
                Ok(Verdict::Rejected { reason }) => Some(format!("the operator refused: {reason}")),
                Ok(Verdict::TimedOut) | Err(_) => Some("no operator decision in time".to_string()),
                Ok(Verdict::Unavailable { why }) => Some(format!("no operator to ask: {why}")),
            };
            if let Some(why) = why {
                verdict("refused: suppressed findings not approved");
                let mut lines = vec![format!(
                    "git-gate: push refused: {} finding(s) marked allowed need the operator's approval, and {why}:",
                    report.suppressed.len()
                )];
                lines.extend(report.suppressed.iter().map(finding_line));
                return refuse(lines);
            }
        }
        match mirror.forward(&updates, &env).await {
            Ok(_) => {
                verdict("forwarded");
                (vec![format!("git-gate: {} commit(s) scanned, clean; forwarded upstream", report.commits)], 0)
            }
            Err(e) => {
                verdict("refused: upstream");
                let mut lines = vec!["git-gate: push refused by the upstream; nothing changed here:".to_string()];
                lines.extend(e.to_string().lines().map(|l| format!("git-gate:   {l}")));
                refuse(lines)
            }
        }
    }
}

/// How the request body reaches git.
enum Feed {
    Whole(Vec<u8>),
    Stream(Incoming),
}

/// The updates `policy` does not allow, one line each naming the manifest
/// key that would: a deletion, or a non-fast-forward update (`is_ff` says
/// whether `new` descends from `old`; tags count too: moving one rewrites
/// what others fetched).
pub fn beyond_policy(policy: RefPolicy, updates: &[RefUpdate], is_ff: impl Fn(&RefUpdate) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    for u in updates {
        if u.is_delete() {
            if !policy.allow_delete {
                lines.push(format!("git-gate:   delete {}: set `allow_delete: true` on this repo to allow it", u.name));
            }
        } else if !u.is_create() && !policy.allow_force_push && !is_ff(u) {
            lines.push(format!(
                "git-gate:   {} is not a fast-forward of what upstream has (history rewritten): set `allow_force_push: true` on this repo to allow it",
                u.name
            ));
        }
    }
    lines
}

fn finding_line(f: &PushFinding) -> String {
    format!("git-gate:   {} {}:{} {} {}", &f.commit[..f.commit.len().min(12)], f.path, f.line, f.rule, f.snippet)
}

fn protocol(req: &Request<Incoming>) -> Option<String> {
    req.headers().get("git-protocol").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// One JSON line on stderr; no value reaches it (snippets are masked).
fn log(event: &str, repo: &str, message: &str) {
    let line = serde_json::json!({
        "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "component": "git-gate", "event": event, "repo": repo, "message": message,
    });
    eprintln!("{line}");
}

/// One JSON line per push decision; a ref name holding a finding is not
/// written.
fn log_push(scanner: &Scanner, repo: &str, updates: &[RefUpdate], report: &PushReport, verdict: &str) {
    let refs: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| {
            let name = crate::objects::shown(scanner, &u.name);
            serde_json::json!({"ref": name, "range": u.revs().join(" "), "delete": u.is_delete()})
        })
        .collect();
    let line = serde_json::json!({
        "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "component": "git-gate", "event": "push", "repo": repo, "refs": refs,
        "commits": report.commits, "findings": report.findings.len(),
        "suppressed": report.suppressed.len(), "verdict": verdict,
    });
    eprintln!("{line}");
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(format!("{}\n", message.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static"));
    r
}

fn git_response(content_type: &str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, "no-cache".parse().expect("static"));
    r
}

/// git's stdout as a response body.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

/// Bind the hook socket in a directory only this user can enter.
pub fn bind_hook_socket(dir: &Path) -> std::io::Result<(PathBuf, tokio::net::UnixListener)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join("hook.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    Ok((path, listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn deletions_and_rewrites_need_the_repo_to_allow_them() {
        let updates = RefUpdate::parse(&format!(
            "{A} {Z} refs/heads/gone\n{A} {B} refs/heads/rewritten\n{A} {B} refs/heads/ahead\n{Z} {B} refs/heads/new\n"
        ))
        .unwrap();
        let is_ff = |u: &RefUpdate| u.name == "refs/heads/ahead";
        let lines = beyond_policy(RefPolicy::default(), &updates, is_ff);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("delete refs/heads/gone") && lines[0].contains("allow_delete: true"));
        assert!(lines[1].contains("refs/heads/rewritten") && lines[1].contains("allow_force_push: true"));
        let both = RefPolicy { allow_force_push: true, allow_delete: true };
        assert!(beyond_policy(both, &updates, is_ff).is_empty());
        let only_delete = RefPolicy { allow_delete: true, ..RefPolicy::default() };
        assert_eq!(beyond_policy(only_delete, &updates, is_ff).len(), 1);
    }
}
