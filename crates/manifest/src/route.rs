//! The `egress` section of a bottle: log level and routes, in manifest shape.
//!
//! This module parses and validates; matching requests against routes is the
//! egress proxy's job.

use serde::Serialize;

use crate::error::ManifestError;
use crate::fields::{Ctx, join};
use crate::yaml::Node;

/// An egress route: a host the agent may reach, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Lowercase; exact, or `*.example.com`.
    pub host: String,
    /// The credential the sidecar injects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// The requests it allows (none: every request).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// What its DLP scans and does.
    pub dlp: Dlp,
    /// Whether git may fetch over it.
    pub git: GitPolicy,
    /// The ports a request may go to; empty means [`DEFAULT_PORT`] only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// Whether the host may resolve to a loopback, private or link-local
    /// address (off: such an address is refused, so a routed name that
    /// resolves inward is not a way in).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_private: bool,
}

/// The port a route allows when it names none: HTTPS.
pub const DEFAULT_PORT: u16 = 443;

/// One entry of a route's `ports`: a port (`8443`) or a range (`"8000-8099"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port (the same for one port).
    pub last: u16,
}

impl PortRange {
    /// One port.
    pub fn one(port: u16) -> PortRange {
        PortRange { first: port, last: port }
    }

    fn parse(text: &str) -> Option<PortRange> {
        let port = |s: &str| s.trim().parse::<u16>().ok().filter(|&n| n > 0);
        match text.split_once('-') {
            Some((a, b)) => Some(PortRange { first: port(a)?, last: port(b)? }).filter(|r| r.first <= r.last),
            None => port(text).map(PortRange::one),
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last { s.serialize_u16(self.first) } else { s.serialize_str(&self.to_string()) }
    }
}

impl Route {
    /// Whether a request may go to `port` of this route's host.
    pub fn allows_port(&self, port: u16) -> bool {
        if self.ports.is_empty() {
            port == DEFAULT_PORT
        } else {
            self.ports.iter().any(|r| (r.first..=r.last).contains(&port))
        }
    }

    /// The ports as a manifest would write them.
    pub fn ports_text(&self) -> String {
        if self.ports.is_empty() {
            DEFAULT_PORT.to_string()
        } else {
            self.ports.iter().map(PortRange::to_string).collect::<Vec<_>>().join(", ")
        }
    }
}

/// A route's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// How it is sent.
    pub scheme: AuthScheme,
    /// The NAME of a host env var; the value is read at launch.
    pub token_ref: String,
}

/// How a credential is sent in `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthScheme {
    /// `Bearer TOKEN`.
    Bearer,
    /// `token TOKEN` (Gitea, GitHub).
    #[serde(rename = "token")]
    Token,
}

impl AuthScheme {
    /// The word before the token.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Token => "token",
        }
    }
}

/// One allowed shape of request: every listed part must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Match {
    /// Paths (any one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// Methods (any one); none: any method.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers (all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathMatch {
    /// How `value` matches.
    #[serde(rename = "type")]
    pub kind: PathKind,
    /// The path, prefix or regular expression.
    pub value: String,
}

/// How a path condition matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PathKind {
    /// The path starts with the value at a segment boundary.
    PathPrefix,
    /// The path is the value.
    Exact,
    /// The value is a regular expression the whole path matches.
    RegularExpression,
}

/// A header the request must carry with this value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderMatch {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// A route's DLP: the detectors each way and what a finding does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dlp {
    /// The detectors scanning requests.
    pub outbound_detectors: Vec<String>,
    /// The detectors scanning responses.
    pub inbound_detectors: Vec<String>,
    /// `None`: the default for the route's kind (manifest routes `supervise`,
    /// provider routes `redact`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_on_match: Option<OnMatch>,
    /// What an injection finding in a response does: `Redact` (the default:
    /// the span is replaced by a marker and the page goes through) or
    /// `Block` (the response is refused). Combinations of injection families
    /// and hidden instructions refuse the response either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_on_match: Option<OnMatch>,
}

impl Dlp {
    /// The inbound policy, its default applied.
    pub fn inbound_policy(&self) -> OnMatch {
        self.inbound_on_match.unwrap_or(OnMatch::Redact)
    }
}

impl Default for Dlp {
    fn default() -> Self {
        Dlp {
            outbound_detectors: DEFAULT_OUTBOUND.iter().map(|s| s.to_string()).collect(),
            inbound_detectors: DEFAULT_INBOUND.iter().map(|s| s.to_string()).collect(),
            outbound_on_match: None,
            inbound_on_match: None,
        }
    }
}

/// What a finding does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMatch {
    /// Hold the request and ask the operator.
    Supervise,
    /// Replace the finding in place and let the rest through.
    Redact,
    /// Refuse.
    Block,
}

impl OnMatch {
    /// As written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            OnMatch::Supervise => "supervise",
            OnMatch::Redact => "redact",
            OnMatch::Block => "block",
        }
    }
}

/// What git may do over a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct GitPolicy {
    /// Fetch (git-gate's mirrors fetch through it).
    pub fetch: bool,
}

/// The outbound detectors there are.
pub const OUTBOUND_DETECTORS: &[&str] = &["token_patterns", "known_secrets", "entropy", "crypto"];
/// The inbound detectors there are.
pub const INBOUND_DETECTORS: &[&str] = &["injection"];
/// Names the original bot-bottle gives detectors, read as this version's:
/// `naive_injection_detection` is its name for the inbound `injection`.
/// Read where the detector list is parsed, so every reader after sees
/// only the current name.
pub const DETECTOR_ALIASES: &[(&str, &str)] = &[("naive_injection_detection", "injection")];
const DEFAULT_OUTBOUND: &[&str] = &["token_patterns", "known_secrets", "crypto"];
const DEFAULT_INBOUND: &[&str] = &["injection"];

/// Parse `egress` into (log level, routes).
pub(crate) fn parse_egress(ctx: &Ctx, node: &Node) -> Result<(Option<u8>, Vec<Route>), ManifestError> {
    let entries = ctx.keyed_or_empty("egress", node, &["log", "routes"], &[])?;
    let mut log = None;
    let mut routes: Vec<Route> = Vec::new();
    for (key, value) in entries {
        match key.as_str() {
            "log" => log = Some(ctx.choice("egress.log", value, &[(&["0"], 0), (&["1"], 1), (&["2"], 2)])?),
            "routes" => {
                for (i, item) in ctx.list("egress.routes", value)?.iter().enumerate() {
                    let key = format!("egress.routes[{i}]");
                    let route = parse_route(ctx, &key, item)?;
                    if routes.iter().any(|r| r.host == route.host) {
                        return Err(ctx.at(
                            item,
                            &join(&key, "host"),
                            format!(
                                "{} has two routes for host '{}'; one route per host: merge their `matches`",
                                ctx.what, route.host
                            ),
                        ));
                    }
                    routes.push(route);
                }
            }
            _ => unreachable!("check_keys admitted only known keys"),
        }
    }
    Ok((log, routes))
}

fn parse_route(ctx: &Ctx, key: &str, node: &Node) -> Result<Route, ManifestError> {
    let entries = ctx.keyed(
        key,
        node,
        &["host", "auth", "matches", "dlp", "git", "ports", "allow_private"],
        &[(
            "role",
            "routes have no `role`; the provider's own API route is added from `agent_provider`, so delete this key",
        )],
    )?;
    let host_node = ctx.required(key, node, entries, "host", "every route needs one")?;
    let host = ctx.string(&join(key, "host"), host_node)?.to_ascii_lowercase();
    validate_host(&host)
        .map_err(|why| ctx.at(host_node, &join(key, "host"), format!("{} `{key}.host` {why}", ctx.what)))?;
    let mut route = Route {
        host,
        auth: None,
        matches: Vec::new(),
        dlp: Dlp::default(),
        git: GitPolicy::default(),
        ports: Vec::new(),
        allow_private: false,
    };
    for (k, v) in entries {
        let path = join(key, k);
        match k.as_str() {
            "host" => {}
            "auth" => route.auth = Some(parse_auth(ctx, &path, v)?),
            "matches" => {
                for (i, m) in ctx.list(&path, v)?.iter().enumerate() {
                    route.matches.push(parse_match(ctx, &format!("{path}[{i}]"), m)?);
                }
            }
            "dlp" => route.dlp = parse_dlp(ctx, &path, v)?,
            "allow_private" => route.allow_private = ctx.bool(&path, v)?,
            "ports" => {
                for (i, p) in ctx.list(&path, v)?.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    let text = ctx.string(&at, p)?;
                    let range = PortRange::parse(&text).ok_or_else(|| {
                        ctx.at(
                            p,
                            &at,
                            format!(
                                "{} `{at}` must be a port (1-65535) or a range such as \"8000-8099\", found '{text}'",
                                ctx.what
                            ),
                        )
                    })?;
                    if !route.ports.contains(&range) {
                        route.ports.push(range);
                    }
                }
            }
            "git" => {
                let git =
                    ctx.keyed(&path, v, &["fetch"], &[("push", "pushes always go through git-gate; delete `push`")])?;
                for (gk, gv) in git {
                    route.git.fetch = ctx.bool(&join(&path, gk), gv)?;
                }
            }
            _ => unreachable!("check_keys admitted only known keys"),
        }
    }
    Ok(route)
}

/// A host is a DNS name, optionally with a leading `*.` wildcard label.
pub fn validate_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if is_numeric_host(name) {
        return Err(format!(
            "'{host}' is an IP address; routes name hosts (requests to IP literals are always refused)"
        ));
    }
    if name.is_empty() || name.contains('*') {
        return Err(format!("'{host}' is not a host: use an exact name or '*.example.com'"));
    }
    if host.starts_with("*.") && !name.contains('.') {
        return Err(format!("'{host}' covers a whole top-level domain; name a domain under it ('*.example.{name}')"));
    }
    if name.contains("://") || name.contains('/') || name.contains(':') {
        return Err(format!("'{host}' must be a bare host name, without scheme, port or path"));
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !ok || name.len() > 253 {
        return Err(format!("'{host}' is not a valid host name"));
    }
    Ok(())
}

/// Whether `name` is an IPv4 address in a spelling some URL parser or
/// resolver takes (`10.0.0.1`, `127.1`, `2130706433`, `0x7f000001`,
/// `0177.0.0.1`): its last label is a number, decimal or `0x` hex (the
/// WHATWG URL standard's "ends in a number").
pub fn is_numeric_host(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or("");
    let hex = last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"))
        && last.get(2..).is_some_and(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || hex)
}

/// A host an agent may propose a route to: a valid route host (see
/// [`validate_host`]) that is not this machine (`localhost`,
/// `*.localhost`) and not a single label (`intranet`, `com`): the operator
/// would be approving more than a name on the internet.
pub fn validate_proposed_host(host: &str) -> Result<(), String> {
    validate_host(host)?;
    let name = host.strip_prefix("*.").unwrap_or(host).trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") || name == "localhost.localdomain" {
        return Err(format!("'{host}' is this machine; a bottle's route cannot be proposed to it"));
    }
    if !name.contains('.') {
        return Err(format!("'{host}' is a single label, not a name on the internet; propose a full host name"));
    }
    Ok(())
}

fn parse_auth(ctx: &Ctx, key: &str, node: &Node) -> Result<Auth, ManifestError> {
    let entries = ctx.map(key, node)?;
    if entries.is_empty() {
        return Err(ctx.at(
            node,
            key,
            format!("{} `{key}` is empty; give `scheme` and `token_ref`, or remove `auth`", ctx.what),
        ));
    }
    ctx.check_keys(key, node, entries, &["scheme", "token_ref"], &[])?;
    const HINT: &str = "auth needs `scheme` (Bearer or token) and `token_ref`";
    let scheme_node = ctx.required(key, node, entries, "scheme", HINT)?;
    let scheme = ctx.choice(
        &join(key, "scheme"),
        scheme_node,
        &[(&["Bearer", "bearer"], AuthScheme::Bearer), (&["token", "Token"], AuthScheme::Token)],
    )?;
    let token_node = ctx.required(key, node, entries, "token_ref", HINT)?;
    let token_ref = ctx.var_name(&join(key, "token_ref"), token_node)?;
    Ok(Auth { scheme, token_ref })
}

fn parse_match(ctx: &Ctx, key: &str, node: &Node) -> Result<Match, ManifestError> {
    let entries = ctx.keyed(key, node, &["paths", "methods", "headers"], &[])?;
    let mut m = Match::default();
    for (k, v) in entries {
        let path = join(key, k);
        let items = ctx.list(&path, v)?;
        for (i, item) in items.iter().enumerate() {
            let ikey = format!("{path}[{i}]");
            match k.as_str() {
                "methods" => {
                    let method = ctx.string(&ikey, item)?.to_ascii_uppercase();
                    if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
                        return Err(ctx.at(
                            item,
                            &ikey,
                            format!("{} `{ikey}` '{method}' is not an HTTP method", ctx.what),
                        ));
                    }
                    m.methods.push(method);
                }
                "paths" => m.paths.push(parse_path_match(ctx, &ikey, item)?),
                "headers" => {
                    let h = ctx.keyed(&ikey, item, &["name", "value"], &[])?;
                    let field = |f: &str| -> Result<String, ManifestError> {
                        let n = ctx.required(&ikey, item, h, f, "a header match needs `name` and `value`")?;
                        ctx.string(&join(&ikey, f), n)
                    };
                    let name = field("name")?;
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                    {
                        return Err(ctx.at(
                            item,
                            &join(&ikey, "name"),
                            format!("{} `{ikey}.name` is not a valid header name", ctx.what),
                        ));
                    }
                    m.headers.push(HeaderMatch { name, value: field("value")? });
                }
                _ => unreachable!("check_keys admitted only known keys"),
            }
        }
    }
    Ok(m)
}

fn parse_path_match(ctx: &Ctx, key: &str, node: &Node) -> Result<PathMatch, ManifestError> {
    let entries = ctx.keyed(key, node, &["type", "value"], &[])?;
    let hint = "a path match needs `type` (PathPrefix, Exact or RegularExpression) and `value`";
    let kind = ctx.choice(
        &join(key, "type"),
        ctx.required(key, node, entries, "type", hint)?,
        &[
            (&["PathPrefix", "prefix"], PathKind::PathPrefix),
            (&["Exact", "exact"], PathKind::Exact),
            (&["RegularExpression", "regex"], PathKind::RegularExpression),
        ],
    )?;
    let value_node = ctx.required(key, node, entries, "value", hint)?;
    let value = ctx.string(&join(key, "value"), value_node)?;
    match kind {
        PathKind::RegularExpression => {
            if let Err(e) = regex::Regex::new(&value) {
                // The regex crate draws a multi-line caret diagram; keep its last line.
                let text = e.to_string();
                let why = text.lines().last().unwrap_or("").trim_start_matches("error: ").to_string();
                return Err(ctx.at(
                    value_node,
                    &join(key, "value"),
                    format!("{} `{key}.value` is not a valid regular expression: {why}", ctx.what),
                ));
            }
        }
        _ if !value.starts_with('/') => {
            return Err(ctx.at(
                value_node,
                &join(key, "value"),
                format!("{} `{key}.value` must start with '/'", ctx.what),
            ));
        }
        _ => {}
    }
    Ok(PathMatch { kind, value })
}

fn parse_dlp(ctx: &Ctx, key: &str, node: &Node) -> Result<Dlp, ManifestError> {
    let entries = ctx.keyed(
        key,
        node,
        &["outbound_detectors", "inbound_detectors", "outbound_on_match", "inbound_on_match"],
        &[],
    )?;
    let mut dlp = Dlp::default();
    for (k, v) in entries {
        let path = join(key, k);
        match k.as_str() {
            "outbound_detectors" => dlp.outbound_detectors = detectors(ctx, &path, v, OUTBOUND_DETECTORS)?,
            "inbound_detectors" => dlp.inbound_detectors = detectors(ctx, &path, v, INBOUND_DETECTORS)?,
            "outbound_on_match" => {
                let options = [
                    (&["supervise"][..], OnMatch::Supervise),
                    (&["redact"], OnMatch::Redact),
                    (&["block"], OnMatch::Block),
                ];
                dlp.outbound_on_match = Some(ctx.choice(&path, v, &options)?);
            }
            "inbound_on_match" => {
                let options = [(&["redact"][..], OnMatch::Redact), (&["block"], OnMatch::Block)];
                dlp.inbound_on_match = Some(ctx.choice(&path, v, &options)?);
            }
            _ => unreachable!("check_keys admitted only known keys"),
        }
    }
    Ok(dlp)
}

/// A detector list, or `false` for none.
fn detectors(ctx: &Ctx, key: &str, node: &Node, known: &[&str]) -> Result<Vec<String>, ManifestError> {
    if let Ok(enabled) = ctx.bool(key, node) {
        if enabled {
            return Err(ctx.at(node, key, format!("{} `{key}` is a list of detectors or false, not true", ctx.what)));
        }
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, item) in ctx.list(key, node)?.iter().enumerate() {
        let mut name = ctx.string(&format!("{key}[{i}]"), item)?;
        if let Some((_, current)) =
            DETECTOR_ALIASES.iter().find(|(old, current)| *old == name && known.contains(current))
        {
            name = current.to_string();
        }
        if !known.contains(&name.as_str()) {
            let hint =
                crate::fields::closest(&name, known).map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default();
            return Err(ctx.at(
                item,
                &format!("{key}[{i}]"),
                format!("{} `{key}` names unknown detector '{name}'; known: {}{hint}", ctx.what, known.join(", ")),
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(validate_host("api.github.com").is_ok());
        assert!(validate_host("*.example.com").is_ok());
        assert!(validate_host("*").is_err());
        assert!(validate_host("a.*.com").is_err());
        assert!(validate_host("https://x.com").is_err());
        assert!(validate_host("x.com:443").is_err());
        assert!(validate_host("x..com").is_err());
        assert!(validate_host("10.0.0.1").is_err());
        // Every spelling of an IPv4 address a URL parser or resolver takes.
        for ip in ["2130706433", "127.1", "0x7f000001", "0X7F.1", "0177.0.0.1", "2852039166", "10.0.0.1.", "*.10.0.0.1"]
        {
            assert!(validate_host(ip).is_err(), "{ip}");
            assert!(validate_proposed_host(ip).is_err(), "{ip}");
        }
        assert!(validate_host("*.com").is_err());
        assert!(validate_host("123.example.com").is_ok() && validate_host("0x.example.com").is_ok());
        // Proposals: not this machine, not a bare label.
        for host in ["localhost", "LOCALHOST", "a.localhost", "*.localhost", "intranet", "com", "localhost.localdomain"]
        {
            assert!(validate_proposed_host(host).is_err(), "{host}");
        }
        assert!(validate_proposed_host("pypi.org").is_ok() && validate_proposed_host("*.github.com").is_ok());
    }
}
