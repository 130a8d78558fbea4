//! The request decision pipeline, in the order spec/egress.md fixes:
//!
//! 1. `_egress.local` (introspection) is answered locally;
//! 2. the agent's `Authorization` / `Proxy-Authorization` are stripped, and
//!    structural attacks (CR/LF/NUL in headers, smuggling shapes) refused;
//! 3. a route must match (host, then `matches`);
//! 4. git over HTTPS: push always refused, fetch only with `git.fetch`;
//! 5. outbound DLP over host, path, query, every header and the body, and
//!    the route's `outbound_on_match` (block, redact with a re-scan, or
//!    supervise: hold for the operator);
//! 6. the route's credential is injected;
//! 7. forward. Responses go through [`decide_response`].
//!
//! A pure function: the caller owns sockets, the operator channel and the
//! approved-value safelist, and gives this module their data.

use dlp::{Finding, Scanner, Severity, View};
use manifest::OnMatch;
use secret::Secret;

use crate::routes::{RouteTable, TableRoute, Target};

/// The host the proxy answers itself.
pub const INTROSPECTION_HOST: &str = "_egress.local";

/// A request as the proxy parsed it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The authority the agent asked for (CONNECT target or absolute URI).
    pub host: &'a str,
    /// `/path?query`.
    pub path_and_query: &'a str,
    /// The headers as sent.
    pub headers: Vec<(String, String)>,
    /// The body (whole: the proxy buffers it).
    pub body: &'a [u8],
    /// Whether it came inside a CONNECT tunnel (and goes upstream over
    /// TLS): credentials are injected only then.
    pub tls: bool,
}

/// A refusal: status 403, `x-bot-bottle-block: <code>`, and a text body
/// starting `bot-bottle egress: blocked: <reason>`. The reason names the
/// rule or detector, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What refused it (`no-route`, `dlp`, …), in the header.
    pub code: &'static str,
    /// Why, naming the rule or detector.
    pub reason: String,
}

impl Block {
    /// The status a refusal has.
    pub const STATUS: u16 = 403;
    /// The header naming what refused it.
    pub const HEADER: &'static str = "x-bot-bottle-block";

    fn new(code: &'static str, reason: impl Into<String>) -> Block {
        Block { code, reason: reason.into() }
    }

    /// The first line of the body: what was refused and why.
    pub fn line(&self) -> String {
        format!("bot-bottle egress: blocked: {}", self.reason)
    }

    /// The body: [`Block::line`], then, for what the operator can allow,
    /// how to ask (the MCP tool the agent has).
    pub fn body(&self) -> String {
        match self.code {
            "no-route" => format!(
                "{}\nto ask the operator for this host, use the `egress-allow` tool of the bot-bottle MCP server (`list-egress-routes` shows what is allowed)\n",
                self.line()
            ),
            _ => format!("{}\n", self.line()),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer locally with this JSON.
    Introspect {
        /// The answer.
        body: String,
    },
    /// Refuse it.
    Block(Block),
    /// Hold for the operator (`supervise`): file an `egress-token-allow`
    /// proposal with these (redacted) findings. Approved: add `values` to the
    /// safelist and decide again. Anything else: 403.
    Hold {
        /// The request's host.
        host: String,
        /// Its method.
        method: String,
        /// Its path.
        path: String,
        /// What was found, redacted.
        findings: Vec<Finding>,
        /// The matched values as sent (raw views only), for the safelist;
        /// never shown to anyone.
        values: Vec<Secret<Vec<u8>>>,
    },
    /// Send upstream, as rewritten.
    Forward {
        /// The request target.
        path_and_query: String,
        /// The headers, credential injected.
        headers: Vec<(String, String)>,
        /// The body, redactions applied.
        body: Vec<u8>,
    },
}

/// Token values by slot (`EGRESS_TOKEN_<slot>`), held as secrets.
#[derive(Default)]
pub struct Tokens(pub Vec<(usize, Secret<String>)>);

impl Tokens {
    pub(crate) fn get(&self, slot: usize) -> Option<&Secret<String>> {
        self.0.iter().find(|(s, _)| *s == slot).map(|(_, v)| v)
    }
}

/// Values the operator approved for the sidecar's life, each for the host
/// it was asked for: an approval to send a value to one host says nothing
/// about any other.
#[derive(Default)]
pub struct Safelist(Vec<(String, Secret<Vec<u8>>)>);

impl Safelist {
    /// Approve `values` for requests to `host` (an authority; the port and
    /// the case do not matter).
    pub fn approve(&mut self, host: &str, values: impl IntoIterator<Item = Secret<Vec<u8>>>) {
        let key = safelist_key(host);
        self.0.extend(values.into_iter().map(|v| (key.clone(), v)));
    }

    fn allows(&self, host: &str, value: &[u8]) -> bool {
        let key = safelist_key(host);
        self.0.iter().any(|(h, v)| *h == key && v.expose() == value)
    }
}

fn safelist_key(authority: &str) -> String {
    let host = host_only(authority);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Decide one request. `scanner` gives the outbound scanner for a route
/// (its detectors); `safelist` holds operator-approved values.
pub fn decide<'s>(
    table: &RouteTable,
    scanner: &dyn Fn(&TableRoute) -> &'s Scanner,
    tokens: &Tokens,
    safelist: &Safelist,
    req: &Request<'_>,
) -> Decision {
    // 1. Introspection.
    if is_introspection(req.host) {
        return introspect(table, req);
    }
    // An upstream that echoes the request hands back what was injected.
    if ["TRACE", "TRACK"].iter().any(|m| req.method.eq_ignore_ascii_case(m)) {
        return Decision::Block(Block::new(
            "method",
            format!("{} is refused: it echoes the request, injected credentials included", req.method),
        ));
    }
    // 2. Strip the agent's credentials; refuse structural attacks.
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization") && !n.eq_ignore_ascii_case("proxy-authorization"))
        .cloned()
        .collect();
    if let Some(block) = structural(&req.headers) {
        return Decision::Block(block);
    }
    // 3. Route.
    let Some(route) = table.lookup(req.host) else {
        return Decision::Block(Block::new("no-route", format!("no route for host {}", host_only(req.host))));
    };
    // Per port: a routed host's other ports are other services.
    let port = port_of(req.host, req.tls);
    if !route.route.allows_port(port) {
        return Decision::Block(Block::new(
            "port",
            format!(
                "port {port} of {} is not routed (the route allows {}); add it to the route's `ports`",
                host_only(req.host),
                route.route.ports_text()
            ),
        ));
    }
    let (path, query) = req.path_and_query.split_once('?').unwrap_or((req.path_and_query, ""));
    if !route.allows(&Target { method: req.method, path, headers: &headers }) {
        return Decision::Block(Block::new(
            "no-match",
            format!("{} {path} matches no rule of the route for {}", req.method, route.route.host),
        ));
    }
    // 4. Git smart HTTP.
    let service =
        |name: &str| path.ends_with(&format!("/{name}")) || query.split('&').any(|kv| kv == format!("service={name}"));
    if service("git-receive-pack") {
        return Decision::Block(Block::new("git-push", "git push over HTTPS is refused; pushes go through git-gate"));
    }
    if service("git-upload-pack") && !route.route.git.fetch {
        return Decision::Block(Block::new(
            "git-fetch",
            format!("git fetch from {} needs `git: {{fetch: true}}` on its route", route.route.host),
        ));
    }
    // 5. Outbound DLP.
    let scan = scanner(route);
    let mut path_and_query = req.path_and_query.to_string();
    let mut body = req.body.to_vec();
    let content_encoding = header(&headers, "content-encoding").map(str::to_string);
    let message =
        Message { method: req.method, host: req.host, target: &path_and_query, headers: &headers, body: &body };
    let mut findings = scan_parts(scan, safelist, &message, content_encoding.as_deref());
    // On a wildcard route the agent writes the labels under it.
    if let Some(added) = crate::host_labels::added_labels(host_only(req.host), &route.route.host) {
        findings.extend(
            crate::host_labels::label_findings(host_only(req.host), added)
                .into_iter()
                .filter(|f| counts(f, req.host.as_bytes(), safelist, req.host))
                .map(|f| (Part::Host, f)),
        );
    }
    // The canary is exfiltration beyond doubt: refused whatever the route
    // says, never held for the operator or redacted and let through.
    if findings.iter().any(|(_, f)| f.rule == dlp::Canary::NAME) {
        return Decision::Block(canary_block());
    }
    // A body that cannot be read whole (corrupt, trailing bytes after the
    // compressed stream, too large) is refused: what the scan cannot read,
    // the upstream might.
    if let Some((_, f)) = findings.iter().find(|(_, f)| f.detector == dlp::Detector::Unscannable) {
        return Decision::Block(Block::new(
            "unscannable",
            format!("the request body cannot be scanned: {}", f.snippet),
        ));
    }
    if !findings.is_empty() {
        match route.on_match {
            OnMatch::Block => return Decision::Block(dlp_block(&findings)),
            OnMatch::Supervise => {
                let values = findings
                    .iter()
                    .filter(|(_, f)| f.view == View::Raw)
                    .filter_map(|(part, f)| {
                        let data = match part {
                            Part::Method => req.method.as_bytes(),
                            Part::HeaderName(i) => headers.get(*i).map(|(n, _)| n.as_bytes())?,
                            Part::Host => req.host.as_bytes(),
                            Part::Target => path_and_query.as_bytes(),
                            Part::Header(i) => headers.get(*i).map(|(_, v)| v.as_bytes())?,
                            Part::Body => &body[..],
                        };
                        data.get(f.span.clone()).map(|v| Secret::new(v.to_vec()))
                    })
                    .collect();
                return Decision::Hold {
                    host: host_only(req.host).to_string(),
                    method: req.method.to_string(),
                    path: path.to_string(),
                    findings: findings.into_iter().map(|(_, f)| f).collect(),
                    values,
                };
            }
            OnMatch::Redact => {
                for (part, f) in &findings {
                    // What cannot be rewritten in place cannot be redacted: refuse it.
                    if matches!(part, Part::Host | Part::Method | Part::HeaderName(_))
                        || f.view != View::Raw
                        || (*part == Part::Body && content_encoding.is_some())
                    {
                        return Decision::Block(dlp_block(&findings));
                    }
                }
                path_and_query =
                    redact_text(&path_and_query, findings.iter().filter(|(p, _)| *p == Part::Target).map(|(_, f)| f));
                for (i, (_, value)) in headers.iter_mut().enumerate() {
                    *value = redact_text(value, findings.iter().filter(|(p, _)| *p == Part::Header(i)).map(|(_, f)| f));
                }
                let body_findings: Vec<Finding> =
                    findings.iter().filter(|(p, _)| *p == Part::Body).map(|(_, f)| f.clone()).collect();
                body = dlp::redact(&body, &body_findings).0;
                let redacted = Message {
                    method: req.method,
                    host: req.host,
                    target: &path_and_query,
                    headers: &headers,
                    body: &body,
                };
                if !scan_parts(scan, safelist, &redacted, None).is_empty() {
                    return Decision::Block(Block::new("dlp", "outbound secret left after redaction"));
                }
                if !body_findings.is_empty() {
                    set_content_length(&mut headers, body.len());
                }
            }
        }
    }
    // The inbound checks (injection; the injected credential echoed back)
    // must be able to read what comes back as it streams.
    if route.auth.is_some() || route.route.dlp.inbound_detectors.iter().any(|d| d == "injection") {
        checkable_encodings(&mut headers);
    }
    // 6. Inject the route's credential: over TLS only.
    if let Some(auth) = route.auth {
        if !req.tls {
            return Decision::Block(Block::new(
                "credential-over-http",
                format!(
                    "the route for {} injects a credential, which is sent over TLS only: use https://",
                    route.route.host
                ),
            ));
        }
        let Some(token) = tokens.get(auth.slot) else {
            return Decision::Block(Block::new(
                "missing-credential",
                format!("the credential for {} is not configured", route.route.host),
            ));
        };
        headers.push(("authorization".to_string(), format!("{} {}", auth.scheme.as_str(), token.expose())));
    }
    // 7. Forward.
    Decision::Forward { path_and_query, headers, body }
}

/// Where in a request a finding is: every part the upstream sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Method,
    Host,
    Target,
    HeaderName(usize),
    Header(usize),
    Body,
}

/// A request as it would go upstream (after stripping, or after redaction).
struct Message<'m> {
    method: &'m str,
    host: &'m str,
    target: &'m str,
    headers: &'m [(String, String)],
    body: &'m [u8],
}

fn scan_parts(
    scan: &Scanner,
    safelist: &Safelist,
    m: &Message<'_>,
    content_encoding: Option<&str>,
) -> Vec<(Part, Finding)> {
    let mut out = Vec::new();
    let mut add = |part: Part, data: &[u8], findings: Vec<Finding>| {
        out.extend(findings.into_iter().filter(|f| counts(f, data, safelist, m.host)).map(|f| (part, f)));
    };
    add(Part::Method, m.method.as_bytes(), scan.scan(m.method.as_bytes(), None));
    add(Part::Host, m.host.as_bytes(), scan.scan(m.host.as_bytes(), None));
    // Credential positions go with the provider formats (`token_patterns`).
    let positions_on = scan.options().token_patterns;
    let mut target = scan.scan(m.target.as_bytes(), None);
    if positions_on && let Some(q) = m.target.find('?') {
        target.extend(positions(&m.target.as_bytes()[q + 1..], q + 1, dlp::positions::scan_params));
    }
    add(Part::Target, m.target.as_bytes(), target);
    for (i, (name, value)) in m.headers.iter().enumerate() {
        // The value with its name as context (keyword rules must see
        // `x-api-key: VALUE`); a finding in the name is the name's.
        let line = format!("{name}: {value}");
        let at = name.len() + 2;
        let (mut in_name, mut in_value) = (Vec::new(), Vec::new());
        for f in scan.scan(line.as_bytes(), None) {
            if f.view != View::Raw {
                in_value.push(f);
            } else if f.span.start >= at {
                in_value.push(Finding { span: f.span.start - at..f.span.end - at, ..f });
            } else if f.span.end <= name.len() {
                in_name.push(f);
            } else {
                // Across the two: neither can be rewritten alone.
                in_name.push(Finding { view: View::Derived, ..f });
            }
        }
        add(Part::HeaderName(i), name.as_bytes(), in_name);
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        if positions_on {
            in_value.extend(positions(value.as_bytes(), 0, |v, out| dlp::positions::scan_header(name, v, out)));
        }
        add(Part::Header(i), value.as_bytes(), in_value);
    }
    let mut body = scan.scan_body(m.body, content_encoding);
    if positions_on
        && content_encoding.is_none()
        && header(m.headers, "content-type")
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
    {
        body.extend(positions(m.body, 0, dlp::positions::scan_params));
    }
    add(Part::Body, m.body, body);
    out
}

/// A credential-position check's findings on `data`, their spans moved by `at`.
fn positions(data: &[u8], at: usize, check: impl Fn(&[u8], &mut Vec<Finding>)) -> Vec<Finding> {
    let mut found = Vec::new();
    check(data, &mut found);
    found.into_iter().map(|f| Finding { span: f.span.start + at..f.span.end + at, ..f }).collect()
}

/// What the agent sent in the `Authorization` and `Proxy-Authorization`
/// headers the proxy strips: a credential there is an attempt, logged (the
/// request goes on without it). Findings name rules, never values.
pub fn stripped_credentials(scan: &Scanner, headers: &[(String, String)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("proxy-authorization") {
            continue;
        }
        out.extend(scan.scan(format!("{name}: {value}").as_bytes(), None));
        dlp::positions::scan_header(name, value.as_bytes(), &mut out);
    }
    out
}

/// Narrow `Accept-Encoding` to what the inbound check decodes as a body
/// streams (a server may then still answer `identity`).
fn checkable_encodings(headers: &mut Vec<(String, String)>) {
    let Some(i) = headers.iter().position(|(n, _)| n.eq_ignore_ascii_case("accept-encoding")) else { return };
    let kept: Vec<&str> = headers[i]
        .1
        .split(',')
        .map(str::trim)
        .filter(|e| {
            let name = e.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            name == "identity" || crate::inbound::STREAM_ENCODINGS.contains(&name.as_str())
        })
        .collect();
    if kept.is_empty() {
        headers.remove(i);
    } else {
        headers[i].1 = kept.join(", ");
    }
}

/// Whether a finding in `data` stops the data: it blocks, and it is not a
/// value the operator approved.
fn counts(f: &Finding, data: &[u8], safelist: &Safelist, host: &str) -> bool {
    let value = if f.view == View::Raw { data.get(f.span.clone()).unwrap_or_default() } else { &[][..] };
    f.severity == Severity::Block && !(f.view == View::Raw && safelist.allows(host, value))
}

fn redact_text<'f>(text: &str, findings: impl Iterator<Item = &'f Finding>) -> String {
    let findings: Vec<Finding> = findings.cloned().collect();
    if findings.is_empty() {
        return text.to_string();
    }
    String::from_utf8_lossy(&dlp::redact(text.as_bytes(), &findings).0).into_owned()
}

fn dlp_block(findings: &[(Part, Finding)]) -> Block {
    let mut rules: Vec<&str> = findings.iter().map(|(_, f)| f.rule.as_str()).collect();
    rules.dedup();
    Block::new("dlp", format!("outbound secret ({})", rules.join(", ")))
}

/// The canary left (or tried to): the block says so plainly.
fn canary_block() -> Block {
    Block::new("canary", "the bottle's canary secret: exfiltration attempt")
}

fn set_content_length(headers: &mut [(String, String)], len: usize) {
    for (n, v) in headers.iter_mut() {
        if n.eq_ignore_ascii_case("content-length") {
            *v = len.to_string();
        }
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Whether an authority names the introspection host (any port or case).
pub fn is_introspection(authority: &str) -> bool {
    crate::routes::normalize_host(authority).as_deref() == Some(INTROSPECTION_HOST)
}

/// The port an authority names, or the scheme's default (443 in a tunnel,
/// 80 for plain HTTP). A port that does not parse is 0, which no route allows.
pub fn port_of(authority: &str, tls: bool) -> u16 {
    match authority.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => {
            if tls {
                443
            } else {
                80
            }
        }
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => port.parse().unwrap_or(0),
        Some((_, _)) => 0,
        None => {
            if tls {
                443
            } else {
                80
            }
        }
    }
}

/// The host of an authority (`host:port` or `host`).
pub(crate) fn host_only(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// Header shapes that smuggle requests or split responses: always refused.
fn structural(headers: &[(String, String)]) -> Option<Block> {
    for (name, value) in headers {
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            || name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Some(Block::new("structural", format!("malformed header {}", name.escape_default())));
        }
    }
    let lengths: Vec<&str> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim()).collect();
    if lengths.len() > 1 || lengths.iter().any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit())) {
        return Some(Block::new("structural", "ambiguous Content-Length"));
    }
    // One Content-Encoding header, of codings the scan undoes: the scan
    // must read the body as the upstream will.
    let codings: Vec<&str> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding")).map(|(_, v)| v.as_str()).collect();
    if codings.len() > 1 {
        return Some(Block::new("structural", "several Content-Encoding headers"));
    }
    if let Some(unknown) = codings.first().and_then(|v| {
        v.split(',').map(str::trim).find(|c| !dlp::CONTENT_CODINGS.iter().any(|k| k.eq_ignore_ascii_case(c)))
    }) {
        return Some(Block::new("structural", format!("unknown Content-Encoding {}", unknown.escape_default())));
    }
    let te: Vec<&str> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")).map(|(_, v)| v.trim()).collect();
    if !te.is_empty() && (!lengths.is_empty() || te.len() > 1 || !te[0].eq_ignore_ascii_case("chunked")) {
        return Some(Block::new("structural", "ambiguous Transfer-Encoding"));
    }
    None
}

fn introspect(table: &RouteTable, req: &Request<'_>) -> Decision {
    let (path, _) = req.path_and_query.split_once('?').unwrap_or((req.path_and_query, ""));
    if req.method != "GET" || path != "/allowlist" {
        return Decision::Block(Block::new(
            "introspection",
            format!("{INTROSPECTION_HOST} answers GET /allowlist only"),
        ));
    }
    let routes: Vec<serde_json::Value> = table
        .routes()
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r.route).unwrap_or_default();
            if let (Some(obj), Some(auth)) = (v.as_object_mut(), r.auth) {
                obj.insert("auth".to_string(), serde_json::json!({"scheme": auth.scheme.as_str()}));
            }
            v
        })
        .collect();
    Decision::Introspect {
        body: serde_json::to_string_pretty(&serde_json::json!({"routes": routes})).unwrap_or_default(),
    }
}

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDecision {
    /// Forward it as it is.
    Pass,
    /// Forward, and log these medium-confidence findings.
    Warn(Vec<Finding>),
    /// Forward this body instead (the decoded body with each injection
    /// replaced by [`dlp::MARKER`]), and log the findings.
    Defuse {
        /// The defused body.
        body: Vec<u8>,
        /// What was found.
        findings: Vec<Finding>,
    },
    /// Replace the response with this block.
    Block(Block),
}

/// Whether the route checks responses of this content type for injection:
/// the route has the `injection` detector and the type is text-like
/// (a missing type counts as text).
pub fn checks_response(route: &TableRoute, content_type: Option<&str>) -> bool {
    let text_like = content_type.is_none_or(|ct| {
        let ct = ct.to_ascii_lowercase();
        ["text/", "json", "xml", "javascript", "event-stream", "yaml"].iter().any(|t| ct.contains(t))
    });
    text_like && route.route.dlp.inbound_detectors.iter().any(|d| d == "injection")
}

/// Run the route's inbound detectors on a text-like response body (decoded):
/// a combination of injection families or hidden instructions refuses it;
/// other findings follow the route's `inbound_on_match` (`redact`, the
/// default: defused in place; `block`: refused).
pub fn decide_response(route: &TableRoute, content_type: Option<&str>, body: &[u8]) -> ResponseDecision {
    if !checks_response(route, content_type) {
        return ResponseDecision::Pass;
    }
    let findings = dlp::scan_inbound(body);
    let refuse = |f: &Finding| {
        ResponseDecision::Block(Block::new("injection", format!("prompt injection in the response ({})", f.rule)))
    };
    if dlp::must_block(&findings)
        && let Some(f) = findings.iter().find(|f| f.rule == dlp::COMBINATION || f.rule == dlp::HIDDEN)
    {
        return refuse(f);
    }
    if let Some(high) = findings.iter().find(|f| f.severity == Severity::Block) {
        return match route.route.dlp.inbound_policy() {
            OnMatch::Block | OnMatch::Supervise => refuse(high),
            OnMatch::Redact => ResponseDecision::Defuse { body: dlp::defuse(body, &findings), findings },
        };
    }
    if findings.is_empty() { ResponseDecision::Pass } else { ResponseDecision::Warn(findings) }
}

/// What to do with one outbound WebSocket data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameDecision {
    /// Send it as it is.
    Pass,
    /// Send this payload instead (redacted, and clean on a re-scan).
    Rewrite(Vec<u8>),
    /// Close the connection.
    Block(Block),
    /// Ask the operator, as [`Decision::Hold`]; approved: safelist `values`
    /// and decide the frame again.
    Hold {
        /// What was found, redacted.
        findings: Vec<Finding>,
        /// The matched values as sent, for the safelist; never shown.
        values: Vec<Secret<Vec<u8>>>,
    },
}

/// Decide an outbound WebSocket frame's payload under the route's
/// `outbound_on_match`. `carry` is the tail of what the connection sent
/// before (already decided), scanned again with the payload so a value split
/// across frames is seen; findings wholly inside it are not counted twice.
pub fn decide_frame(
    route: &TableRoute,
    scan: &Scanner,
    approved: (&Safelist, &str),
    carry: &[u8],
    payload: &[u8],
) -> FrameDecision {
    let (data, findings) = frame_findings(scan, approved, carry, payload);
    if findings.is_empty() {
        return FrameDecision::Pass;
    }
    if findings.iter().any(|f| f.rule == dlp::Canary::NAME) {
        return FrameDecision::Block(canary_block());
    }
    let blocked = || {
        let tagged: Vec<(Part, Finding)> = findings.iter().map(|f| (Part::Body, f.clone())).collect();
        FrameDecision::Block(dlp_block(&tagged))
    };
    match route.on_match {
        OnMatch::Block => blocked(),
        OnMatch::Supervise => FrameDecision::Hold {
            values: findings
                .iter()
                .filter(|f| f.view == View::Raw)
                .filter_map(|f| data.get(f.span.clone()).map(|v| Secret::new(v.to_vec())))
                .collect(),
            findings,
        },
        OnMatch::Redact => {
            // A value that began in an earlier frame was already sent: it
            // cannot be taken back, so the connection closes.
            if findings.iter().any(|f| f.view != View::Raw || f.span.start < carry.len()) {
                return blocked();
            }
            let shifted: Vec<Finding> = findings
                .iter()
                .map(|f| Finding { span: f.span.start - carry.len()..f.span.end - carry.len(), ..f.clone() })
                .collect();
            let redacted = dlp::redact(payload, &shifted).0;
            if frame_findings(scan, approved, carry, &redacted).1.is_empty() {
                FrameDecision::Rewrite(redacted)
            } else {
                FrameDecision::Block(Block::new("dlp", "outbound secret left after redaction"))
            }
        }
    }
}

/// `carry + payload`, and the findings in it that count and are not wholly
/// inside `carry`.
fn frame_findings(
    scan: &Scanner,
    (safelist, host): (&Safelist, &str),
    carry: &[u8],
    payload: &[u8],
) -> (Vec<u8>, Vec<Finding>) {
    let data = [carry, payload].concat();
    let findings = scan
        .scan(&data, None)
        .into_iter()
        .filter(|f| counts(f, &data, safelist, host) && !(f.view == View::Raw && f.span.end <= carry.len()))
        .collect();
    (data, findings)
}
