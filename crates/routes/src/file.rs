//! The sidecar's route file: the bottle's effective routes as the sidecar
//! enforces them, rendered on the host and loaded (and validated) in the
//! sidecar. It holds no token values: a route with auth names a slot, and
//! the value arrives in the sidecar's environment as `EGRESS_TOKEN_<slot>`.
//!
//! Format: JSON, `{"version": 1, "log": 0|1|2, "routes": [{"route": <manifest
//! shape>, "auth": {"scheme", "slot"} | null, "on_match", "provider"}]}`.

use manifest::{AuthScheme, OnMatch, Route};
use serde::{Deserialize, Serialize};

use crate::table::{AuthSlot, RouteTable, TableRoute};

/// The route file format this version writes and reads.
pub const VERSION: u32 = 1;

/// One route as the host hands it over: the token named by its host variable.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The route in manifest shape.
    pub route: Route,
    /// (scheme, NAME of the host variable or login that holds the token).
    pub auth: Option<(AuthScheme, String)>,
    /// What a DLP finding on this route does.
    pub on_match: OnMatch,
    /// The provider's own API route (neither replaced nor removed by edits).
    pub provider: bool,
}

impl RouteSpec {
    /// A route from a bottle's `egress.routes`: its own `auth`, and
    /// `outbound_on_match` defaulting to `supervise`.
    pub fn from_manifest(route: &Route) -> RouteSpec {
        RouteSpec {
            route: route.clone(),
            auth: route.auth.as_ref().map(|a| (a.scheme, a.token_ref.clone())),
            on_match: route.dlp.outbound_on_match.unwrap_or(OnMatch::Supervise),
            provider: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    version: u32,
    log: u8,
    routes: Vec<RouteJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteJson {
    route: serde_json::Value,
    auth: Option<AuthJson>,
    on_match: String,
    provider: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthJson {
    scheme: String,
    slot: usize,
}

/// The rendered file and the slot of each distinct token source, in slot
/// order: the launcher puts source `name`'s value in `EGRESS_TOKEN_<slot>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The route file's text.
    pub text: String,
    /// Each slot with the name of the source its value comes from.
    pub slots: Vec<(usize, String)>,
}

/// Render routes for the sidecar; one slot per distinct token source.
pub fn render(routes: &[RouteSpec], log: u8) -> Rendered {
    render_keeping(routes, log, &[])
}

/// As [`render`], keeping the slot each source already has in `existing`
/// (a reload must not move a token to another slot); new sources get new
/// slots after them. The result lists every slot the routes use.
pub fn render_keeping(routes: &[RouteSpec], log: u8, existing: &[(usize, String)]) -> Rendered {
    let mut slots: Vec<(usize, String)> = Vec::new();
    let mut next = existing.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut out = Vec::new();
    for r in routes {
        let auth = r.auth.as_ref().map(|(scheme, source)| {
            let slot = match slots.iter().chain(existing).find(|(_, s)| s == source) {
                Some((n, _)) => *n,
                None => {
                    next += 1;
                    next
                }
            };
            if !slots.iter().any(|(n, _)| *n == slot) {
                slots.push((slot, source.clone()));
            }
            AuthJson { scheme: scheme.as_str().to_string(), slot }
        });
        let mut route = serde_json::to_value(&r.route).unwrap_or_default();
        if let Some(obj) = route.as_object_mut() {
            obj.remove("auth");
        }
        out.push(RouteJson { route, auth, on_match: r.on_match.as_str().to_string(), provider: r.provider });
    }
    let file = FileJson { version: VERSION, log, routes: out };
    let text = serde_json::to_string_pretty(&file).unwrap_or_default() + "\n";
    Rendered { text, slots }
}

/// Why a route file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteFileError {
    /// Not the format's JSON.
    #[error("route file is not valid: {0}")]
    Syntax(String),
    #[error("route file version {0} is not supported (this sidecar reads version {VERSION})")]
    /// Another version of the format.
    Version(u32),
    #[error("route file: routes[{index}]: {message}")]
    /// One route is not a route.
    Route {
        /// Its place in `routes`.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The routes do not make a table.
    #[error(transparent)]
    Table(#[from] crate::table::RouteError),
}

/// A loaded route file: the table and the log level.
#[derive(Debug, Clone)]
pub struct RouteFile {
    /// The routes, compiled.
    pub table: RouteTable,
    /// `egress.log`: 0, 1 or 2.
    pub log: u8,
    /// Slots the routes use (their values must be in the environment).
    pub slots: Vec<usize>,
}

/// Parse and validate a route file.
pub fn load(text: &str) -> Result<RouteFile, RouteFileError> {
    let file: FileJson = serde_json::from_str(text).map_err(|e| RouteFileError::Syntax(e.to_string()))?;
    if file.version != VERSION {
        return Err(RouteFileError::Version(file.version));
    }
    if file.log > 2 {
        return Err(RouteFileError::Syntax(format!("log is {}; use 0, 1 or 2", file.log)));
    }
    let mut routes = Vec::new();
    let mut slots = Vec::new();
    for (index, r) in file.routes.into_iter().enumerate() {
        let bad = |message: String| RouteFileError::Route { index, message };
        let route: Route = route_from_json(r.route).map_err(bad)?;
        let on_match = match r.on_match.as_str() {
            "supervise" => OnMatch::Supervise,
            "redact" => OnMatch::Redact,
            "block" => OnMatch::Block,
            other => {
                return Err(bad(format!("on_match '{other}' is not supervise, redact or block")));
            }
        };
        let auth = match r.auth {
            None => None,
            Some(a) => {
                let scheme = match a.scheme.as_str() {
                    "Bearer" => AuthScheme::Bearer,
                    "token" => AuthScheme::Token,
                    other => {
                        return Err(bad(format!("auth scheme '{other}' is not Bearer or token")));
                    }
                };
                if a.slot == 0 {
                    return Err(bad("auth slot 0 does not exist; slots start at 1".to_string()));
                }
                if !slots.contains(&a.slot) {
                    slots.push(a.slot);
                }
                Some(AuthSlot { scheme, slot: a.slot })
            }
        };
        routes.push(TableRoute::new(route, auth, on_match, r.provider)?);
    }
    slots.sort_unstable();
    Ok(RouteFile { table: RouteTable::new(routes)?, log: file.log, slots })
}

/// An operator-approved change to the routes (supervise's `egress-allow`
/// and `egress-block`).
#[derive(Debug, Clone, PartialEq)]
pub enum RouteEdit {
    /// Add this route, or replace the one for its host. The route's own
    /// `auth` is ignored (the operator decides credentials): a replaced
    /// route keeps its credential slot, a new one has none.
    Allow(Route),
    /// Remove the route for this host.
    Block {
        /// The host whose route goes.
        host: String,
    },
}

impl RouteEdit {
    /// The edit as the audit trail keeps it: `{"allow": ROUTE}` (manifest
    /// shape, no `auth`) or `{"block": HOST}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            RouteEdit::Allow(route) => {
                let mut value = serde_json::to_value(route).unwrap_or_default();
                if let Some(obj) = value.as_object_mut() {
                    obj.remove("auth");
                }
                serde_json::json!({ "allow": value })
            }
            RouteEdit::Block { host } => serde_json::json!({ "block": host }),
        }
    }

    /// Read back what [`RouteEdit::to_json`] wrote; the route is validated
    /// again by the manifest parser.
    pub fn from_json(value: &serde_json::Value) -> Result<RouteEdit, String> {
        if let Some(route) = value.get("allow") {
            return route_from_json(route.clone()).map(RouteEdit::Allow);
        }
        match value.get("block").and_then(serde_json::Value::as_str) {
            Some(host) => Ok(RouteEdit::Block { host: host.to_string() }),
            None => Err(format!("not a route edit: {value}")),
        }
    }

    /// One line for the operator: `+ HOST (GET, POST /v1)` or `- HOST`.
    pub fn summary(&self) -> String {
        match self {
            RouteEdit::Allow(route) => {
                let methods: Vec<String> = route
                    .matches
                    .iter()
                    .flat_map(|m| m.methods.iter().cloned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if methods.is_empty() {
                    format!("+ {}", route.host)
                } else {
                    format!("+ {} ({})", route.host, methods.join(", "))
                }
            }
            RouteEdit::Block { host } => format!("- {host}"),
        }
    }
}

/// The result of [`edit`]: the new file text (already validated), and the
/// routes before and after in manifest shape (no token values), for the
/// audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    /// The route file's new text.
    pub text: String,
    /// The host's route before (null when there was none).
    pub before: serde_json::Value,
    /// The host's route after (null when it was removed).
    pub after: serde_json::Value,
}

/// Apply `edit` to a route file's text. Provider routes (the agent's own
/// model API) can be neither replaced nor removed here.
pub fn edit(text: &str, change: &RouteEdit) -> Result<Edited, RouteFileError> {
    load(text)?;
    let mut file: FileJson = serde_json::from_str(text).map_err(|e| RouteFileError::Syntax(e.to_string()))?;
    let before = manifest_shape(&file);
    let host_of = |r: &RouteJson| r.route.get("host").and_then(|h| h.as_str()).unwrap_or("").to_ascii_lowercase();
    let refuse = |message: String| RouteFileError::Route { index: 0, message };
    match change {
        RouteEdit::Allow(route) => {
            let host = route.host.to_ascii_lowercase();
            let mut value = serde_json::to_value(route).map_err(|e| RouteFileError::Syntax(e.to_string()))?;
            if let Some(obj) = value.as_object_mut() {
                obj.remove("auth");
            }
            let on_match = route.dlp.outbound_on_match.unwrap_or(OnMatch::Supervise).as_str().to_string();
            match file.routes.iter_mut().find(|r| host_of(r) == host) {
                Some(existing) if existing.provider => {
                    return Err(refuse(format!("{host} is the agent's provider route; it cannot be changed here")));
                }
                Some(existing) => {
                    existing.route = value;
                    existing.on_match = on_match;
                }
                None => file.routes.push(RouteJson { route: value, auth: None, on_match, provider: false }),
            }
        }
        RouteEdit::Block { host } => {
            let host = host.to_ascii_lowercase();
            match file.routes.iter().position(|r| host_of(r) == host) {
                Some(i) if file.routes[i].provider => {
                    return Err(refuse(format!("{host} is the agent's provider route; it cannot be removed")));
                }
                Some(i) => {
                    file.routes.remove(i);
                }
                None => return Err(refuse(format!("no route for {host} to remove"))),
            }
        }
    }
    let after = manifest_shape(&file);
    let text = serde_json::to_string_pretty(&file).map_err(|e| RouteFileError::Syntax(e.to_string()))? + "\n";
    load(&text)?;
    Ok(Edited { text, before, after })
}

/// How `proposed` (an `egress-allow` the agent filed) would weaken the
/// inspection that now guards its host: the route it would replace, or for
/// a new host the defaults a new route gets. One line each: a detector it
/// drops, an `outbound_on_match` that lets more through (block, then redact,
/// then supervise). Empty when it weakens nothing. The operator sees these
/// lines in red, and approving needs a reason.
pub fn dlp_weakening(text: &str, proposed: &Route) -> Result<Vec<String>, RouteFileError> {
    let file = load(text)?;
    let fresh = manifest::Dlp::default();
    let (before, before_match) = match file.table.lookup(&proposed.host) {
        Some(r) => (&r.route.dlp, r.on_match),
        None => (&fresh, OnMatch::Supervise),
    };
    let after_match = proposed.dlp.outbound_on_match.unwrap_or(OnMatch::Supervise);
    let mut out = Vec::new();
    for (way, was, now) in [
        ("outbound", &before.outbound_detectors, &proposed.dlp.outbound_detectors),
        ("inbound", &before.inbound_detectors, &proposed.dlp.inbound_detectors),
    ] {
        for d in was.iter().filter(|d| !now.contains(d)) {
            out.push(format!("drops the {way} detector {d}"));
        }
    }
    let strictness = |m: OnMatch| match m {
        OnMatch::Block => 2,
        OnMatch::Redact => 1,
        OnMatch::Supervise => 0,
    };
    if strictness(after_match) < strictness(before_match) {
        out.push(format!("outbound_on_match {} becomes {}", before_match.as_str(), after_match.as_str()));
    }
    let (was, now) = (before.inbound_policy(), proposed.dlp.inbound_policy());
    if strictness(now) < strictness(was) {
        out.push(format!("inbound_on_match {} becomes {}", was.as_str(), now.as_str()));
    }
    Ok(out)
}

/// The routes of a route file's text in manifest shape, credentials shown
/// by scheme only (what `list-egress-routes` answers).
pub fn manifest_routes(text: &str) -> Result<serde_json::Value, RouteFileError> {
    load(text)?;
    let file: FileJson = serde_json::from_str(text).map_err(|e| RouteFileError::Syntax(e.to_string()))?;
    Ok(manifest_shape(&file))
}

/// The routes of a file in manifest shape, credentials shown by scheme only.
fn manifest_shape(file: &FileJson) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = file
        .routes
        .iter()
        .map(|r| {
            let mut v = r.route.clone();
            if let (Some(obj), Some(a)) = (v.as_object_mut(), &r.auth) {
                obj.insert("auth".into(), serde_json::json!({"scheme": a.scheme}));
            }
            v
        })
        .collect();
    serde_json::Value::Array(routes)
}

/// A route in manifest shape, re-validated by the manifest parser itself.
pub fn route_from_json(value: serde_json::Value) -> Result<Route, String> {
    let yaml = serde_json::to_string(&serde_json::json!({"egress": {"routes": [value]}})).map_err(|e| e.to_string())?;
    let text = format!("---\n{yaml}\n---\n");
    let file =
        manifest::parse_bottle_text("route-file", std::path::Path::new("route-file"), &text).map_err(|e| match e {
            manifest::ManifestError::Invalid { message, .. } => message.replace("bottle 'route-file' ", ""),
            other => other.to_string(),
        })?;
    file.routes.into_iter().next().ok_or_else(|| "empty route".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest::{Dlp, GitPolicy, Match, PathKind, PathMatch};

    fn spec(host: &str, token: Option<&str>) -> RouteSpec {
        RouteSpec {
            route: Route {
                host: host.into(),
                auth: None,
                matches: vec![Match {
                    paths: vec![PathMatch { kind: PathKind::PathPrefix, value: "/v1".into() }],
                    ..Default::default()
                }],
                dlp: Dlp { outbound_on_match: Some(OnMatch::Redact), ..Dlp::default() },
                git: GitPolicy { fetch: true },
                ports: vec![],
                allow_private: false,
            },
            auth: token.map(|t| (AuthScheme::Bearer, t.to_string())),
            on_match: OnMatch::Redact,
            provider: false,
        }
    }

    #[test]
    fn renders_slots_not_values_and_loads_back() {
        let r = render(
            &[
                spec("a.com", Some("GH_TOKEN")),
                spec("b.com", None),
                spec("c.com", Some("GH_TOKEN")),
                spec("d.com", Some("OTHER")),
            ],
            1,
        );
        assert_eq!(r.slots, vec![(1, "GH_TOKEN".to_string()), (2, "OTHER".to_string())]);
        assert!(!r.text.contains("GH_TOKEN"), "the file names slots, not variables: {}", r.text);
        let f = load(&r.text).unwrap();
        assert_eq!(f.log, 1);
        assert_eq!(f.slots, vec![1, 2]);
        let c = f.table.lookup("c.com").unwrap();
        assert_eq!(c.auth, Some(AuthSlot { scheme: AuthScheme::Bearer, slot: 1 }));
        assert!(c.route.git.fetch);
        assert_eq!(c.route.matches[0].paths[0].value, "/v1");
    }

    #[test]
    fn reload_keeps_slots() {
        let first = render(&[spec("a.com", Some("A")), spec("b.com", Some("B"))], 0);
        let again = render_keeping(
            &[spec("b.com", Some("B")), spec("c.com", Some("C")), spec("a.com", Some("A"))],
            0,
            &first.slots,
        );
        assert_eq!(again.slots, vec![(2, "B".to_string()), (3, "C".to_string()), (1, "A".to_string())]);
        let f = load(&again.text).unwrap();
        assert_eq!(f.table.lookup("a.com").unwrap().auth.unwrap().slot, 1);
        assert_eq!(f.table.lookup("b.com").unwrap().auth.unwrap().slot, 2);
    }

    #[test]
    fn edits_add_replace_and_remove_routes_keeping_credentials_out_of_agent_hands() {
        let mut provider = spec("api.model.example", Some("MODEL"));
        provider.provider = true;
        let text = render(&[spec("a.com", Some("GH_TOKEN")), provider], 1).text;
        // Replacing a.com: the agent's auth is ignored, the slot stays.
        let mut wider = spec("a.com", None).route;
        wider.matches.clear();
        wider.auth = Some(manifest::Auth { scheme: AuthScheme::Token, token_ref: "AGENT_PICKED".into() });
        let e = edit(&text, &RouteEdit::Allow(wider)).unwrap();
        let f = load(&e.text).unwrap();
        let a = f.table.lookup("a.com").unwrap();
        assert_eq!(a.auth, Some(AuthSlot { scheme: AuthScheme::Bearer, slot: 1 }));
        assert!(a.route.matches.is_empty());
        assert!(!e.text.contains("AGENT_PICKED"));
        assert_eq!(e.before[0]["matches"][0]["paths"][0]["value"], "/v1");
        assert_eq!(e.after[0]["auth"], serde_json::json!({"scheme": "Bearer"}));
        // A new host: no credential.
        let e = edit(&e.text, &RouteEdit::Allow(spec("new.example", Some("X")).route)).unwrap();
        assert_eq!(load(&e.text).unwrap().table.lookup("new.example").unwrap().auth, None);
        // Remove it again; the provider's route stays put.
        let e = edit(&e.text, &RouteEdit::Block { host: "NEW.example".into() }).unwrap();
        assert!(load(&e.text).unwrap().table.lookup("new.example").is_none());
        assert!(edit(&e.text, &RouteEdit::Block { host: "api.model.example".into() }).is_err());
        assert!(edit(&e.text, &RouteEdit::Allow(spec("api.model.example", None).route)).is_err());
        assert!(edit(&e.text, &RouteEdit::Block { host: "absent.example".into() }).is_err());
    }

    #[test]
    fn a_proposal_that_weakens_inspection_says_how() {
        let text = render(
            &[RouteSpec {
                route: route_from_json(serde_json::json!({"host": "a.com", "dlp": {
                    "outbound_detectors": ["token_patterns", "known_secrets", "entropy"],
                    "outbound_on_match": "block"}}))
                .unwrap(),
                auth: None,
                on_match: OnMatch::Block,
                provider: false,
            }],
            0,
        )
        .text;
        let proposed = |v: serde_json::Value| route_from_json(v).unwrap();
        // Off entirely, on the existing route: every detector and the block.
        let off = proposed(serde_json::json!({"host": "a.com", "dlp": {"outbound_detectors": []}}));
        let w = dlp_weakening(&text, &off).unwrap();
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w.iter().any(|l| l == "drops the outbound detector known_secrets"));
        assert!(w.iter().any(|l| l == "outbound_on_match block becomes supervise"));
        // The same, stricter or equal: nothing.
        let same = proposed(
            serde_json::json!({"host": "a.com", "matches": [{"paths": [{"type": "PathPrefix", "value": "/v1"}]}],
            "dlp": {"outbound_detectors": ["token_patterns", "known_secrets", "entropy", "crypto"], "outbound_on_match": "block"}}),
        );
        assert!(dlp_weakening(&text, &same).unwrap().is_empty());
        // A new host is compared with a new route's defaults.
        assert!(dlp_weakening(&text, &proposed(serde_json::json!({"host": "b.com"}))).unwrap().is_empty());
        let bare = proposed(
            serde_json::json!({"host": "b.com", "dlp": {"outbound_detectors": ["token_patterns"], "inbound_detectors": []}}),
        );
        assert_eq!(
            dlp_weakening(&text, &bare).unwrap(),
            vec![
                "drops the outbound detector known_secrets".to_string(),
                "drops the outbound detector crypto".to_string(),
                "drops the inbound detector injection".to_string()
            ]
        );
    }

    #[test]
    fn invalid_files_are_refused_with_the_reason() {
        assert!(matches!(load("{"), Err(RouteFileError::Syntax(_))));
        assert_eq!(load(r#"{"version": 2, "log": 0, "routes": []}"#).unwrap_err(), RouteFileError::Version(2));
        let bad_host = r#"{"version": 1, "log": 0, "routes": [{"route": {"host": "http://x"}, "auth": null, "on_match": "block", "provider": false}]}"#;
        assert!(load(bad_host).unwrap_err().to_string().contains("routes[0]"));
        let role = r#"{"version": 1, "log": 0, "routes": [{"route": {"host": "a.com", "role": "x"}, "auth": null, "on_match": "block", "provider": false}]}"#;
        assert!(load(role).is_err());
        let dup = r#"{"version": 1, "log": 0, "routes": [{"route": {"host": "a.com"}, "auth": null, "on_match": "block", "provider": false}, {"route": {"host": "A.com"}, "auth": null, "on_match": "block", "provider": false}]}"#;
        assert!(load(dup).is_err());
        let slot0 = r#"{"version": 1, "log": 0, "routes": [{"route": {"host": "a.com"}, "auth": {"scheme": "Bearer", "slot": 0}, "on_match": "block", "provider": false}]}"#;
        assert!(load(slot0).is_err());
        let extra = r#"{"version": 1, "log": 0, "routes": [], "tokens": {"1": "x"}}"#;
        assert!(load(extra).is_err(), "unknown fields (a token table) are refused");
    }
}
