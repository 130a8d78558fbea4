//! The route table: which host a request may reach, and under which
//! `matches`. Pure: a table is data, lookups are functions.
//!
//! Hosts match case-insensitively; an exact host beats a wildcard, and a
//! longer wildcard beats a shorter one; `*.example.com` matches any depth
//! below `example.com` but neither `example.com` nor `badexample.com`.
//! Within a route, `matches` entries are ORed and the conditions of one
//! entry ANDed; no `matches` allows every request to the host. Path prefixes
//! are segment-aware (`/repos/acme` matches `/repos/acme/x`, not
//! `/repos/acmeevil`). A path that could mean something else to the
//! upstream (dot segments, encoded slashes or dots, backslashes) never
//! matches a path condition: ambiguity fails closed.

use manifest::{AuthScheme, OnMatch, PathKind, Route};

/// A request's view for matching: method, path (no query), headers.
pub struct Target<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's path (and query).
    pub path: &'a str,
    /// Header names in any case.
    pub headers: &'a [(String, String)],
}

/// The credential a route injects: the scheme and the token slot
/// (`EGRESS_TOKEN_<slot>` in the sidecar's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSlot {
    /// How the token is sent.
    pub scheme: AuthScheme,
    /// Which `EGRESS_TOKEN_<slot>` holds it.
    pub slot: usize,
}

#[derive(Debug, Clone)]
enum PathRule {
    Prefix(String),
    Exact(String),
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
struct MatchRule {
    paths: Vec<PathRule>,
    methods: Vec<String>,
    /// Lowercase name, exact value.
    headers: Vec<(String, String)>,
}

/// One route, compiled.
#[derive(Debug, Clone)]
pub struct TableRoute {
    /// The route in manifest shape (no token values).
    pub route: Route,
    /// The credential the proxy injects, if any.
    pub auth: Option<AuthSlot>,
    /// What a DLP finding on this route does.
    pub on_match: OnMatch,
    /// The provider's own API route.
    pub provider: bool,
    matches: Vec<MatchRule>,
}

/// Why routes do not make a table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("route {host}: path regex '{pattern}' is invalid: {message}")]
    /// A path regex does not compile.
    Regex {
        /// The route's host.
        host: String,
        /// The regex.
        pattern: String,
        /// The compiler's complaint.
        message: String,
    },
    #[error("two routes for host {0}; one route per host")]
    /// Two routes for one host.
    Duplicate(String),
    #[error("route host '{host}' {why}")]
    /// A host that is not a host name.
    Host {
        /// The host.
        host: String,
        /// Why not.
        why: String,
    },
}

impl TableRoute {
    /// Compile one route.
    pub fn new(
        route: Route,
        auth: Option<AuthSlot>,
        on_match: OnMatch,
        provider: bool,
    ) -> Result<TableRoute, RouteError> {
        manifest::validate_host(&route.host).map_err(|why| RouteError::Host { host: route.host.clone(), why })?;
        let mut matches = Vec::new();
        for m in &route.matches {
            let mut paths = Vec::new();
            for p in &m.paths {
                paths.push(match p.kind {
                    PathKind::PathPrefix => PathRule::Prefix(p.value.trim_end_matches('/').to_string()),
                    PathKind::Exact => PathRule::Exact(p.value.clone()),
                    PathKind::RegularExpression => {
                        PathRule::Regex(regex::Regex::new(&p.value).map_err(|e| RouteError::Regex {
                            host: route.host.clone(),
                            pattern: p.value.clone(),
                            message: e.to_string().lines().last().unwrap_or_default().to_string(),
                        })?)
                    }
                });
            }
            matches.push(MatchRule {
                paths,
                methods: m.methods.iter().map(|x| x.to_ascii_uppercase()).collect(),
                headers: m.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.clone())).collect(),
            });
        }
        Ok(TableRoute { route, auth, on_match, provider, matches })
    }

    /// Whether the route's `matches` allow this request.
    pub fn allows(&self, t: &Target<'_>) -> bool {
        if self.matches.is_empty() {
            return true;
        }
        let ambiguous = ambiguous_path(t.path);
        self.matches.iter().any(|m| {
            let path_ok = m.paths.is_empty()
                || (!ambiguous
                    && m.paths.iter().any(|p| match p {
                        PathRule::Prefix(prefix) => segment_prefix(prefix, t.path),
                        PathRule::Exact(exact) => t.path == exact,
                        PathRule::Regex(re) => re.is_match(t.path),
                    }));
            let method_ok = m.methods.is_empty() || m.methods.iter().any(|x| x.eq_ignore_ascii_case(t.method));
            let headers_ok = m
                .headers
                .iter()
                .all(|(name, value)| t.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value));
            path_ok && method_ok && headers_ok
        })
    }
}

/// `prefix` (no trailing slash) matches `path` at a segment boundary.
fn segment_prefix(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        return path.starts_with('/');
    }
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Paths an upstream might resolve differently from a literal comparison.
pub fn ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains('\\')
        || !path.starts_with('/')
    {
        return true;
    }
    path.split('/').any(|seg| seg == "." || seg == "..")
}

/// All routes, looked up by host.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<TableRoute>,
}

impl RouteTable {
    /// A table of `routes`, one per host.
    pub fn new(routes: Vec<TableRoute>) -> Result<RouteTable, RouteError> {
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].iter().any(|o| o.route.host == r.route.host) {
                return Err(RouteError::Duplicate(r.route.host.clone()));
            }
        }
        Ok(RouteTable { routes })
    }

    /// Every route, in order.
    pub fn routes(&self) -> &[TableRoute] {
        &self.routes
    }

    /// The route for `host` (a port, a trailing dot and case are ignored).
    pub fn lookup(&self, host: &str) -> Option<&TableRoute> {
        let host = normalize_host(host)?;
        if let Some(exact) = self.routes.iter().find(|r| r.route.host == host) {
            return Some(exact);
        }
        self.routes
            .iter()
            .filter_map(|r| r.route.host.strip_prefix("*.").map(|suffix| (r, suffix)))
            .filter(|(_, suffix)| {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            })
            .max_by_key(|(_, suffix)| suffix.len())
            .map(|(r, _)| r)
    }
}

/// Lowercase, without port or trailing dot; `None` for what is not a DNS
/// name (IP literals included: routes name hosts).
pub fn normalize_host(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => name.to_string(),
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(&name).to_string();
    let ip = name.parse::<std::net::Ipv4Addr>().is_ok();
    (!ip && manifest::validate_host(&name).is_ok() && !name.starts_with("*.")).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::{Dlp, GitPolicy, HeaderMatch, Match, PathMatch};

    fn route(host: &str, matches: Vec<Match>) -> TableRoute {
        let r = Route {
            host: host.into(),
            auth: None,
            matches,
            dlp: Dlp::default(),
            git: GitPolicy::default(),
            ports: vec![],
            allow_private: false,
        };
        TableRoute::new(r, None, OnMatch::Block, false).unwrap()
    }

    fn t<'a>(method: &'a str, path: &'a str, headers: &'a [(String, String)]) -> Target<'a> {
        Target { method, path, headers }
    }

    #[test]
    fn host_lookup() {
        let table = RouteTable::new(vec![
            route("api.example.com", vec![]),
            route("*.example.com", vec![]),
            route("*.deep.example.com", vec![]),
        ])
        .unwrap();
        let host = |h: &str| table.lookup(h).map(|r| r.route.host.clone());
        assert_eq!(host("API.Example.com").as_deref(), Some("api.example.com"));
        assert_eq!(host("api.example.com:443").as_deref(), Some("api.example.com"));
        assert_eq!(host("api.example.com.").as_deref(), Some("api.example.com"));
        assert_eq!(host("a.b.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(host("x.deep.example.com").as_deref(), Some("*.deep.example.com"));
        assert_eq!(host("example.com"), None);
        assert_eq!(host("badexample.com"), None);
        assert_eq!(host("example.com.evil.net"), None);
        assert_eq!(host("93.184.216.34"), None);
        assert_eq!(host("[::1]:443"), None);
        assert!(RouteTable::new(vec![route("a.com", vec![]), route("a.com", vec![])]).is_err());
    }

    #[test]
    fn matches_and_paths() {
        let m = Match {
            paths: vec![PathMatch { kind: PathKind::PathPrefix, value: "/repos/acme/".into() }],
            methods: vec!["GET".into(), "post".into()],
            headers: vec![HeaderMatch { name: "Accept".into(), value: "application/json".into() }],
        };
        let r = route(
            "api.github.com",
            vec![
                m,
                Match { paths: vec![PathMatch { kind: PathKind::Exact, value: "/user".into() }], ..Default::default() },
            ],
        );
        let json = vec![("accept".to_string(), "application/json".to_string())];
        assert!(r.allows(&t("GET", "/repos/acme/widgets", &json)));
        assert!(r.allows(&t("post", "/repos/acme", &json)));
        assert!(!r.allows(&t("DELETE", "/repos/acme/widgets", &json)));
        assert!(!r.allows(&t("GET", "/repos/acme/widgets", &[])));
        assert!(!r.allows(&t("GET", "/repos/acmeevil/x", &json)));
        assert!(!r.allows(&t("GET", "/repos/acme/../other/x", &json)));
        assert!(!r.allows(&t("GET", "/repos/acme/%2e%2e/other", &json)));
        assert!(!r.allows(&t("GET", "/repos/acme/x%2F..%2Fy", &json)));
        assert!(r.allows(&t("DELETE", "/user", &[])));
        assert!(!r.allows(&t("GET", "/user/keys", &[])));
        assert!(route("a.com", vec![]).allows(&t("PATCH", "/anything/../x", &[])));
    }

    #[test]
    fn regex_paths() {
        let m = Match {
            paths: vec![PathMatch { kind: PathKind::RegularExpression, value: "^/v1/(models|chat)$".into() }],
            ..Default::default()
        };
        let r = route("api.x.com", vec![m]);
        assert!(r.allows(&t("GET", "/v1/models", &[])));
        assert!(!r.allows(&t("GET", "/v1/models/extra", &[])));
    }
}
