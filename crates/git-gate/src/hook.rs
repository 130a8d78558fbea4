//! The pre-receive hook's line to the gate.
//!
//! `git receive-pack` runs each mirror's `pre-receive` hook with the pushed
//! objects in a quarantine and the ref updates on stdin. The hook (this
//! binary, `bot-bottle git-gate-hook`) only relays: it sends the updates,
//! its ticket and the quarantine's environment to the gate over a private
//! unix socket, prints what the gate says (git relays a hook's stderr to the
//! pushing client as `remote:` lines), and exits with the gate's verdict.
//! Everything that decides runs in the gate, which holds the scanner, the
//! operator channel and the upstream key. Unreachable gate: refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

/// The socket the hook reaches the gate on.
pub const SOCKET_ENV: &str = "BOT_BOTTLE_GATE_SOCKET";
/// The ticket naming the push the gate is serving.
pub const TICKET_ENV: &str = "BOT_BOTTLE_GATE_TICKET";
/// The quarantine's environment, passed through.
pub const QUARANTINE_ENV: [&str; 3] =
    ["GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH"];
/// Largest request the gate reads from a hook.
pub const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// What the hook sends: one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookRequest {
    /// The push's ticket (which repo, which connection).
    pub ticket: String,
    /// The hook's stdin: `old new ref` lines.
    pub updates: String,
    /// The hook's environment (git's quarantine variables).
    pub env: Vec<(String, String)>,
}

/// What the gate answers: any number of lines to show, then the exit code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HookReply {
    /// A line for the pusher (git prints it as `remote: …`).
    Say(String),
    /// The hook's exit code: 0 lets the push through.
    Exit(i32),
}

/// Run as the hook: relay stdin and the environment to the gate, print
/// what it says on stderr, and return its exit code (1 on any failure).
pub fn run_hook() -> i32 {
    let fail = |why: String| {
        eprintln!("git-gate: push refused: {why}");
        1
    };
    let (Some(socket), Some(ticket)) = (std::env::var_os(SOCKET_ENV), std::env::var(TICKET_ENV).ok()) else {
        return fail("this hook only runs under git-gate".to_string());
    };
    let mut updates = String::new();
    if let Err(e) = std::io::stdin().take(MAX_REQUEST as u64).read_to_string(&mut updates) {
        return fail(format!("cannot read the ref updates: {e}"));
    }
    let env = QUARANTINE_ENV.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    let request = HookRequest { ticket, updates, env };
    let mut stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot reach the gate: {e}")),
    };
    let Ok(mut line) = serde_json::to_vec(&request) else { return fail("cannot encode the request".into()) };
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        return fail(format!("cannot reach the gate: {e}"));
    }
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<HookReply>(&line) {
            Ok(HookReply::Say(text)) => eprintln!("{text}"),
            Ok(HookReply::Exit(code)) => return code,
            Err(_) => break,
        }
    }
    fail("the gate ended without a verdict".to_string())
}
