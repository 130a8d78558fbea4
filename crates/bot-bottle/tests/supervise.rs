//! supervise with a real MCP client: the official Python SDK (`mcp` from
//! PyPI, in the venv scripts/test.sh prepares) talks to `bot-bottle
//! supervise-server`; this test plays the operator through the store API
//! (another connection to the same SQLite file, as the console is) and
//! asserts what the client receives. Approved route changes go through the
//! route file and SIGHUP to a real `bot-bottle egress`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use supervise::{Answer, Kind, ProposalStore, Status};

/// The venv with the MCP Python SDK (scripts/test.sh creates it).
fn mcp_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-venv/bin/python");
    let ok = Command::new(&python).args(["-c", "import mcp"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "the MCP Python SDK is missing: run scripts/test.sh (it creates target/test-venv with mcp)");
    python
}

struct Server {
    child: Child,
    url: String,
    store: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn a process and wait for the stderr line carrying `ready`; the rest
/// of that line.
fn spawn_until(cmd: Command, ready: &str) -> (Child, String) {
    let support::Server { child, ready, .. } = support::start(cmd, ready);
    (child, ready)
}

fn start_server(dir: &Path, identity: &str, extra: &[&str]) -> Server {
    let store = dir.join(format!("{identity}.sqlite"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
    cmd.args(["supervise-server", "--identity", identity, "--listen", "127.0.0.1:0", "--store"])
        .arg(&store)
        .args(extra);
    let (child, rest) = spawn_until(cmd, "bot-bottle: supervise MCP on ");
    Server { child, url: format!("http://{rest}"), store }
}

/// Run a Python MCP client script with `MCP_URL`; returns its output.
fn client(url: &str, script: &str) -> Child {
    Command::new(mcp_python())
        .args(["-c", script])
        .env("MCP_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (String, String, bool) {
    let o: Output = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string(), o.status.success())
}

/// Play the operator: wait for the next pending proposal of `kind` and answer it.
fn operator(store: &Path, identity: &str, kind: Kind, answer: Answer, reason: &str) -> supervise::Proposal {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = ProposalStore::open(store, identity).unwrap();
    loop {
        if let Some(p) = s.pending().unwrap().into_iter().find(|p| p.kind == kind) {
            return s.decide(p.id, &answer, reason, "test-operator").unwrap();
        }
        assert!(Instant::now() < deadline, "no {kind:?} proposal arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PRELUDE: &str = r#"
import asyncio, json, os, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

def show(name, result):
    print(name, json.dumps(result.structured_content, sort_keys=True), result.is_error, flush=True)

async def with_session(body):
    async with streamable_http_client(os.environ["MCP_URL"]) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            init = await session.initialize()
            print("init", init.protocol_version, init.server_info.name, flush=True)
            await body(session)
"#;

fn route_file(dir: &Path) -> PathBuf {
    let spec = egress::RouteSpec::from_manifest(&manifest::Route {
        host: "localhost".into(),
        auth: None,
        matches: vec![],
        dlp: manifest::Dlp { outbound_on_match: Some(manifest::OnMatch::Block), ..Default::default() },
        git: Default::default(),
        // The test upstream listens on a port picked at run time.
        ports: vec![manifest::PortRange { first: 1024, last: 65535 }],
        allow_private: false,
    });
    let path = dir.join("routes.json");
    std::fs::write(&path, egress::render(&[spec], 1).text).unwrap();
    path
}

#[test]
fn a_real_mcp_client_calls_every_tool_and_gets_the_operators_answers() {
    let dir = tempfile::tempdir().unwrap();
    let routes = route_file(dir.path());
    // The egress proxy enforcing the same route file (sidecar mode).
    let mut egress_cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
    egress_cmd
        .args(["egress", "--routes"])
        .arg(&routes)
        .arg("--ca-dir")
        .arg(dir.path().join("ca"))
        .args(["--listen", "127.0.0.1:0"]);
    let (mut egress, proxy) = spawn_until(egress_cmd, "bot-bottle: egress listening on ");
    let pid = egress.id().to_string();
    let server = start_server(dir.path(), "swift-otter", &["--routes", routes.to_str().unwrap(), "--egress-pid", &pid]);
    let script = format!(
        r#"{PRELUDE}
async def body(session):
    tools = await session.list_tools()
    print("tools", sorted(t.name for t in tools.tools), flush=True)
    show("routes", await session.call_tool("list-egress-routes", {{}}))
    show("ask", await session.call_tool("ask-operator", {{"question": "Which database?", "options": ["postgres", "sqlite"]}}))
    show("allow", await session.call_tool("egress-allow", {{"route": {{"host": "new.example", "auth": {{"scheme": "Bearer", "token_ref": "AGENT_TOKEN"}}}}, "justification": "the docs live there"}}))
    show("modified", await session.call_tool("egress-allow", {{"route": {{"host": "wide.example"}}, "justification": "more"}}))
    show("block", await session.call_tool("egress-block", {{"host": "localhost", "justification": "done with it"}}))
    show("malformed", await session.call_tool("egress-allow", {{"route": {{"host": "bad.example"}}, "justification": "x"}}))
asyncio.run(with_session(body))
"#
    );
    let running = client(&server.url, &script);
    let ask = operator(&server.store, "swift-otter", Kind::AskOperator, Answer::Approve, "sqlite, for the tests");
    assert_eq!(ask.payload, json!({"question": "Which database?", "options": ["postgres", "sqlite"]}));
    let allow = operator(&server.store, "swift-otter", Kind::EgressAllow, Answer::Approve, "fine");
    assert_eq!(allow.justification, "the docs live there");
    assert_eq!(allow.payload["route"].get("auth"), None, "the agent's auth reached the proposal");
    let narrowed = json!({"route": {"host": "wide.example", "matches": [{"methods": ["GET"]}]}});
    operator(&server.store, "swift-otter", Kind::EgressAllow, Answer::Modify(narrowed), "GET only");
    operator(&server.store, "swift-otter", Kind::EgressBlock, Answer::Reject, "still needed");
    // An edit that is not a valid route counts as a rejection.
    let broken = json!({"route": {"host": "http://not-a-host"}});
    operator(&server.store, "swift-otter", Kind::EgressAllow, Answer::Modify(broken), "");
    let (out, err, ok) = finish(running);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("init 2025-11-25 bot-bottle-supervise"), "{out}");
    assert!(out.contains("tools ['ask-operator', 'egress-allow', 'egress-block', 'list-egress-routes']"), "{out}");
    assert!(out.contains(r#"routes {"routes": [{"dlp": {"#) && out.contains(r#""host": "localhost""#), "{out}");
    assert!(out.contains(r#"ask {"notes": "sqlite, for the tests", "status": "approved"} False"#), "{out}");
    assert!(
        out.contains(r#"allow {"notes": "fine\nthe route change is in effect", "status": "approved"} False"#),
        "{out}"
    );
    assert!(
        out.contains(
            r#"modified {"applied": {"route": {"host": "wide.example", "matches": [{"methods": ["GET"]}]}}, "notes": "GET only\nthe route change is in effect", "status": "modified"} False"#
        ),
        "{out}"
    );
    assert!(out.contains(r#"block {"notes": "still needed", "status": "rejected"} False"#), "{out}");
    assert!(out.contains(r#"malformed {"notes": "the operator's edit is not a valid change: "#), "{out}");
    assert!(out.contains(r#""status": "rejected"}"#), "{out}");
    assert!(
        std::fs::read_to_string(&routes).unwrap().contains("localhost")
            && !std::fs::read_to_string(&routes).unwrap().contains("not-a-host")
    );
    // The route file changed in place, without the agent's credential, and
    // the egress proxy reloaded it.
    let file = egress::load(&std::fs::read_to_string(&routes).unwrap()).unwrap();
    let added = file.table.lookup("new.example").expect("the approved route is in the file");
    assert_eq!(added.auth, None);
    assert_eq!(file.table.lookup("wide.example").unwrap().route.matches[0].methods, ["GET"]);
    assert!(file.table.lookup("localhost").is_some(), "a rejected block removed the route");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = std::net::TcpStream::connect(&proxy).unwrap();
        s.write_all(b"GET http://_egress.local/allowlist HTTP/1.1\r\nHost: _egress.local\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut listing = String::new();
        s.read_to_string(&mut listing).unwrap();
        if listing.contains("new.example") && listing.contains("wide.example") {
            break;
        }
        assert!(Instant::now() < deadline, "egress never reloaded: {listing}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every decision and the route changes are in the audit trail.
    let audit = ProposalStore::open(&server.store, "swift-otter").unwrap().audit().unwrap();
    assert_eq!(audit.iter().filter(|a| a.event == "decision").count(), 5);
    let changes: Vec<&supervise::store::AuditEntry> = audit.iter().filter(|a| a.event == "route-change").collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].detail["before"].as_array().unwrap().len(), 1);
    assert_eq!(changes[0].detail["after"].as_array().unwrap().len(), 2);
    // What a resume applies again: the edits as granted, in order.
    let kept = ProposalStore::open(&server.store, "swift-otter").unwrap().kept_route_edits().unwrap();
    let kept: Vec<String> = kept.iter().map(|k| k.edit.summary()).collect();
    assert_eq!(kept, ["+ new.example", "+ wide.example (GET)"]);
    let _ = egress.kill();
    let _ = egress.wait();
}

/// One JSON-RPC exchange over plain HTTP: (status line, body).
fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (String, String) {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("POST /mcp HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if !headers.iter().any(|(n, _)| *n == "Host") {
        head.push_str(&format!("Host: {authority}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (h, b) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (h.lines().next().unwrap_or("").to_string(), b.to_string())
}

#[test]
fn protocol_errors_limits_and_foreign_hosts_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), "a", &[]);
    let rpc = |v: Value| post(&server.url, &[("Content-Type", "application/json")], v.to_string().as_bytes());
    let (status, body) = rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}));
    assert!(status.contains("200"), "{status}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], -32601);
    // An old client gets its own version; an unknown one gets ours.
    let (_, body) = rpc(
        json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["result"]["protocolVersion"], "2024-11-05");
    let (_, body) =
        rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}}));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["result"]["protocolVersion"], "2025-11-25");
    // Bad arguments are a JSON-RPC error, filed nowhere.
    let (_, body) = rpc(
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "egress-allow", "arguments": {"route": {"host": "http://bad"}, "justification": "x"}}}),
    );
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], -32602);
    assert!(ProposalStore::open(&server.store, "a").unwrap().pending().unwrap().is_empty());
    // A route to this machine, an IP in any spelling or a whole TLD is
    // refused before the operator is asked.
    for host in ["2130706433", "127.1", "0x7f000001", "2852039166", "localhost", "a.localhost", "com", "*.com"] {
        let (_, body) = rpc(
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "egress-allow", "arguments": {"route": {"host": host}, "justification": "x"}}}),
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], -32602, "{host}: {body}");
        assert!(v["error"]["message"].as_str().unwrap().contains(&format!("'{host}'")), "{body}");
    }
    assert!(ProposalStore::open(&server.store, "a").unwrap().pending().unwrap().is_empty());
    // A proposal too large to be read is refused, saying the bound.
    let (_, body) = rpc(
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "ask-operator", "arguments": {"question": "q".repeat(100_000)}}}),
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32000, "{body}");
    assert!(v["error"]["message"].as_str().unwrap().contains("at most 64 KiB"), "{body}");
    // At most 16 wait at once: the 17th is refused at once, saying why.
    let waiting: Vec<_> = (0..16)
        .map(|i| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "ask-operator", "arguments": {"question": format!("q{i}")}}});
                post(&url, &[("Content-Type", "application/json")], call.to_string().as_bytes())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ProposalStore::open(&server.store, "a").unwrap().pending().unwrap().len() < 16 {
        assert!(Instant::now() < deadline, "the 16 proposals never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, body) = rpc(
        json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "ask-operator", "arguments": {"question": "one more"}}}),
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32000, "{body}");
    assert!(v["error"]["message"].as_str().unwrap().contains("already wait for the operator"), "{body}");
    assert_eq!(ProposalStore::open(&server.store, "a").unwrap().pending().unwrap().len(), 16);
    drop(server);
    for w in waiting {
        let _ = w.join();
    }
    let server = start_server(dir.path(), "b", &[]);
    let rpc = |v: Value| post(&server.url, &[("Content-Type", "application/json")], v.to_string().as_bytes());
    // Notifications: 202. Not JSON: parse error. Not JSON-RPC: invalid request.
    assert!(rpc(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).0.contains("202"));
    let (status, body) = post(&server.url, &[], b"{not json");
    assert!(status.contains("400") && body.contains("-32700"), "{status} {body}");
    let (status, body) = rpc(json!([1, 2]));
    assert!(status.contains("400") && body.contains("-32600"), "{status} {body}");
    // Over 1 MiB.
    let big = vec![b' '; 2 * 1024 * 1024];
    assert!(post(&server.url, &[], &big).0.contains("413"));
    // A page that rebinds a name to loopback, or posts cross-origin: 403.
    assert!(post(&server.url, &[("Host", "evil.example")], b"{}").0.contains("403"));
    assert!(post(&server.url, &[("Origin", "http://evil.example")], b"{}").0.contains("403"));
}

#[test]
fn timeouts_restarts_and_two_bottles() {
    let dir = tempfile::tempdir().unwrap();
    // A call nobody answers times out with that status.
    let quick = start_server(dir.path(), "quick", &["--tool-timeout", "1"]);
    let script = format!(
        "{PRELUDE}\nasync def body(session):\n    show('late', await session.call_tool('ask-operator', {{'question': 'anyone?'}}))\nasyncio.run(with_session(body))\n"
    );
    let (out, err, ok) = finish(client(&quick.url, &script));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(r#"late {"notes": "no decision from the operator in time", "status": "timeout"}"#), "{out}");
    drop(quick);

    // Two bottles: each one's proposals stay in its own store.
    let a = start_server(dir.path(), "bottle-a", &[]);
    let b = start_server(dir.path(), "bottle-b", &[]);
    let ask = |q: &str| {
        format!(
            "{PRELUDE}\nasync def body(session):\n    show('x', await session.call_tool('ask-operator', {{'question': '{q}'}}))\nasyncio.run(with_session(body))\n"
        )
    };
    let ca = client(&a.url, &ask("from a"));
    let cb = client(&b.url, &ask("from b"));
    let pa = operator(&a.store, "bottle-a", Kind::AskOperator, Answer::Approve, "answer for a");
    let pb = operator(&b.store, "bottle-b", Kind::AskOperator, Answer::Approve, "answer for b");
    assert_eq!((pa.identity.as_str(), pa.payload["question"].as_str()), ("bottle-a", Some("from a")));
    assert_eq!((pb.identity.as_str(), pb.payload["question"].as_str()), ("bottle-b", Some("from b")));
    assert!(finish(ca).0.contains("answer for a"));
    assert!(finish(cb).0.contains("answer for b"));

    // The sidecar dies while a call waits: the client gets an error, not a
    // hang, and the proposal survives for the operator to see.
    let mut restarting = start_server(dir.path(), "restart", &[]);
    let waiting = client(&restarting.url, &ask("still there?"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while ProposalStore::open(&restarting.store, "restart").unwrap().pending().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the proposal never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    restarting.child.kill().unwrap();
    restarting.child.wait().unwrap();
    let started = Instant::now();
    let (out, err, ok) = finish(waiting);
    assert!(!ok, "the client did not notice: {out}");
    assert!(started.elapsed() < Duration::from_secs(20), "the client hung");
    assert!(!err.is_empty());
    let survivors = ProposalStore::open(&restarting.store, "restart").unwrap().pending().unwrap();
    assert_eq!(survivors.len(), 1);
    assert_eq!(survivors[0].status, Status::Pending);
}

/// SIGTERM while the agent waits for the operator: the agent's pending
/// call gets its answer (`timeout`, as when the operator never came), not a
/// cut connection; the store says so; the server exits cleanly. (curl as the
/// peer: it shows exactly what the server sent before it went away.)
#[test]
fn a_stop_answers_what_waits_for_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_server(dir.path(), "calm-heron", &[]);
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ask-operator","arguments":{"question":"Still there?"}}}"#;
    let waiting = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "60", "-H", "content-type: application/json"])
        .args(["-H", "accept: application/json, text/event-stream", "-d", call])
        .arg(&server.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = ProposalStore::open(&server.store, "calm-heron").unwrap();
    while store.pending().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the question never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let (out, err, ok) = finish(waiting);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(r#""structuredContent":{"notes":"no decision from the operator in time","status":"timeout"}"#),
        "{out}"
    );
    assert!(server.child.wait().unwrap().success());
    assert!(store.pending().unwrap().is_empty());
    assert_eq!(store.get(1).unwrap().unwrap().status, Status::Timeout);
}
