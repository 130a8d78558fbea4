//! The MCP protocol as supervise speaks it: JSON-RPC 2.0 messages in,
//! responses out (the HTTP transport is [`crate::http`]). `initialize`
//! negotiates the protocol version (the client's, if this server speaks it;
//! else the newest this server speaks), `tools/list` lists the four tools
//! with their JSON schemas, `tools/call` files a proposal and waits for the
//! operator, `ping` answers; anything else is `-32601`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::store::{Kind, Proposal, Status};
use crate::supervisor::Supervisor;

/// Protocol revisions reachable with the `initialize` handshake, oldest
/// first.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// JSON-RPC: no such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: the parameters are wrong.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: not a request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: not JSON.
pub const PARSE_ERROR: i64 = -32700;

/// The tools, as `tools/list` shows them.
pub fn tools() -> Value {
    json!([
        {
            "name": "list-egress-routes",
            "description": "The egress routes this bottle enforces now (manifest shape; credentials shown by scheme only).",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false}
        },
        {
            "name": "egress-allow",
            "description": "Ask the operator to add or widen an egress route. Waits for the decision. Any `auth` you give is ignored: the operator decides credentials. When the operator modifies the request, `applied` holds the route as granted.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "route": {"type": "object", "description": "One route in manifest shape: {host, matches?, dlp?, git?}",
                              "properties": {"host": {"type": "string"}}, "required": ["host"]},
                    "justification": {"type": "string", "description": "Why the task needs it."}
                },
                "required": ["route", "justification"]
            }
        },
        {
            "name": "egress-block",
            "description": "Ask the operator to remove an egress route. Waits for the decision.",
            "inputSchema": {
                "type": "object",
                "properties": {"host": {"type": "string"}, "justification": {"type": "string"}},
                "required": ["host", "justification"]
            }
        },
        {
            "name": "ask-operator",
            "description": "Ask the operator a free-form question; returns the answer. Waits for it.",
            "inputSchema": {
                "type": "object",
                "properties": {"question": {"type": "string"}, "options": {"type": "array", "items": {"type": "string"}}},
                "required": ["question"]
            }
        }
    ])
}

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// What is wrong.
    pub message: String,
}

fn error(code: i64, message: impl Into<String>) -> RpcError {
    RpcError { code, message: message.into() }
}

/// The response to one message (`None` for a notification).
pub fn response(id: &Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}}),
    }
}

/// What a message is.
pub enum Message {
    /// A request with this id and method.
    Request {
        /// Its id, echoed in the answer.
        id: Value,
        /// The method.
        method: String,
        /// Its parameters (`null` when none).
        params: Value,
    },
    /// A notification or a response: nothing to answer.
    Notification,
    /// Not a JSON-RPC message: answer this error.
    Invalid(Value),
}

/// Classify a parsed body.
pub fn classify(body: &Value) -> Message {
    let Some(obj) = body.as_object() else {
        return Message::Invalid(response(&Value::Null, Err(error(INVALID_REQUEST, "expected one JSON-RPC object"))));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        let id = obj.get("id").cloned().unwrap_or(Value::Null);
        return Message::Invalid(response(&id, Err(error(INVALID_REQUEST, "jsonrpc must be \"2.0\""))));
    }
    match (obj.get("id"), obj.get("method").and_then(Value::as_str)) {
        (Some(id), Some(method)) if !id.is_null() => Message::Request {
            id: id.clone(),
            method: method.to_string(),
            params: obj.get("params").cloned().unwrap_or(Value::Null),
        },
        (None, Some(_)) => Message::Notification,
        (Some(_), None) if obj.contains_key("result") || obj.contains_key("error") => Message::Notification,
        _ => Message::Invalid(response(
            &obj.get("id").cloned().unwrap_or(Value::Null),
            Err(error(INVALID_REQUEST, "not a request")),
        )),
    }
}

/// Answer a request.
pub async fn handle(sup: &Arc<Supervisor>, method: &str, params: &Value) -> Result<Value, RpcError> {
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or("");
            let version = if PROTOCOL_VERSIONS.contains(&asked) { asked } else { PROTOCOL_VERSIONS[3] };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "bot-bottle-supervise", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "Ask the operator of this bottle: for an egress route (egress-allow, egress-block) or anything else (ask-operator). Each call waits for the operator's decision."
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools()})),
        "tools/call" => {
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| error(INVALID_PARAMS, "tools/call needs `name`"))?;
            let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
            call(sup, name, &args).await
        }
        other => Err(error(METHOD_NOT_FOUND, format!("method not found: {other}"))),
    }
}

/// A tool result: the outcome as text and as structured content.
fn tool_result(outcome: Value, is_error: bool) -> Value {
    json!({
        "content": [{"type": "text", "text": outcome.to_string()}],
        "structuredContent": outcome,
        "isError": is_error
    })
}

fn text_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, RpcError> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| error(INVALID_PARAMS, format!("`{key}` is required (a non-empty string)")))
}

async fn call(sup: &Arc<Supervisor>, name: &str, args: &Value) -> Result<Value, RpcError> {
    match name {
        "list-egress-routes" => {
            let Some(routes) = sup.routes() else {
                return Ok(tool_result(json!({"routes": [], "notes": "this bottle has no egress route file"}), false));
            };
            match routes.current() {
                Ok(r) => Ok(tool_result(json!({"routes": r}), false)),
                Err(e) => Ok(tool_result(json!({"error": e}), true)),
            }
        }
        "egress-allow" => {
            let justification = text_arg(args, "justification")?.to_string();
            let mut route = args.get("route").cloned().ok_or_else(|| error(INVALID_PARAMS, "`route` is required"))?;
            if let Some(obj) = route.as_object_mut() {
                // The operator decides credentials.
                obj.remove("auth");
            }
            let parsed = routes::file::route_from_json(route.clone())
                .map_err(|e| error(INVALID_PARAMS, format!("`route` is not a valid route: {e}")))?;
            manifest::validate_proposed_host(&parsed.host)
                .map_err(|e| error(INVALID_PARAMS, format!("`route.host`: {e}")))?;
            // What the change would turn off is part of what the operator
            // is asked, worked out here (not taken from the agent).
            let mut payload = json!({"route": route});
            if let Some(routes) = sup.routes() {
                let weakens = routes
                    .weakening(&parsed)
                    .map_err(|e| error(-32603, format!("cannot read the current routes: {e}")))?;
                if !weakens.is_empty() {
                    payload["weakens_dlp"] = json!(weakens);
                }
            }
            let decided = ask(sup, Kind::EgressAllow, payload, justification).await?;
            let change = |payload: &Value| {
                let route = payload.get("route").cloned().unwrap_or_default();
                routes::file::route_from_json(route).map(routes::RouteEdit::Allow)
            };
            Ok(apply_route_change(sup, &decided, change).await)
        }
        "egress-block" => {
            let justification = text_arg(args, "justification")?.to_string();
            let host = text_arg(args, "host")?.to_string();
            let decided = ask(sup, Kind::EgressBlock, json!({"host": host}), justification).await?;
            let change = |payload: &Value| {
                let host = payload.get("host").and_then(Value::as_str).unwrap_or("").to_string();
                Ok(routes::RouteEdit::Block { host })
            };
            Ok(apply_route_change(sup, &decided, change).await)
        }
        "ask-operator" => {
            let question = text_arg(args, "question")?.to_string();
            let options = args.get("options").cloned().unwrap_or_else(|| json!([]));
            if !options.as_array().is_some_and(|o| o.iter().all(Value::is_string)) {
                return Err(error(INVALID_PARAMS, "`options` must be a list of strings"));
            }
            let decided =
                ask(sup, Kind::AskOperator, json!({"question": question, "options": options}), String::new()).await?;
            Ok(tool_result(outcome(&decided, None), false))
        }
        other => Err(error(INVALID_PARAMS, format!("unknown tool: {other}"))),
    }
}

/// A refusal the agent can act on (too large, too many, too fast).
pub const REFUSED: i64 = -32000;

async fn ask(sup: &Arc<Supervisor>, kind: Kind, payload: Value, justification: String) -> Result<Proposal, RpcError> {
    sup.ask(kind, payload, justification, sup.tool_timeout).await.map_err(|e| match e {
        crate::store::StoreError::Refused(why) => error(REFUSED, why),
        e => error(-32603, format!("the proposal store failed: {e}")),
    })
}

/// `{status, notes}` for the agent.
fn outcome(p: &Proposal, extra: Option<String>) -> Value {
    let reason = p.decision.as_ref().map(|d| d.reason.clone()).unwrap_or_default();
    let notes = match (p.status, extra) {
        (Status::Timeout, _) => "no decision from the operator in time".to_string(),
        (_, Some(extra)) if reason.is_empty() => extra,
        (_, Some(extra)) => format!("{reason}\n{extra}"),
        (_, None) => reason,
    };
    json!({"status": p.status.as_str(), "notes": notes})
}

/// After an approved (or modified) route proposal: apply it, audit the
/// change, and say what happened.
async fn apply_route_change(
    sup: &Arc<Supervisor>,
    decided: &Proposal,
    change: impl Fn(&Value) -> Result<routes::RouteEdit, String>,
) -> Value {
    if !matches!(decided.status, Status::Approved | Status::Modified) {
        return tool_result(outcome(decided, None), false);
    }
    let payload = decided.decision.as_ref().and_then(|d| d.payload.clone()).unwrap_or_else(|| decided.payload.clone());
    // A malformed edit from the operator counts as a rejection.
    let edit = match change(&payload) {
        Ok(e) => e,
        Err(e) => {
            return tool_result(
                json!({"status": "rejected", "notes": format!("the operator's edit is not a valid change: {e}")}),
                false,
            );
        }
    };
    let applied = match sup.routes() {
        Some(routes) => routes.apply(&edit),
        None => Err("this bottle has no egress route file to change".to_string()),
    };
    match applied {
        Ok((before, after)) => {
            let id = decided.id;
            let audited = sup.with_store(move |s| s.audit_route_change(Some(id), &edit, &before, &after)).await;
            let note = match audited {
                Ok(()) => "the route change is in effect".to_string(),
                Err(e) => format!("the route change is in effect, but auditing it failed: {e}"),
            };
            let mut result = outcome(decided, Some(note));
            // A modified decision: the agent learns what was granted, not
            // only that something was.
            if decided.status == Status::Modified {
                result["applied"] = payload;
            }
            tool_result(result, false)
        }
        Err(e) => {
            tool_result(outcome(decided, Some(format!("approved, but the change could not be applied: {e}"))), true)
        }
    }
}
