//! What the integration tests share: starting a bot-bottle server process
//! and waiting for the line that says it is ready, while everything it
//! writes on stderr is kept for the test to read.

#![allow(dead_code)]

pub mod docker;
pub mod gitea;
pub mod smolvm;
pub mod sshd;
pub mod tmux;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A started server: the child, what followed the ready marker on its line,
/// and its stderr so far (a thread keeps appending).
pub struct Server {
    pub child: Child,
    pub ready: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Spawn `cmd` (stdin closed, stderr captured) and wait for a stderr line
/// containing `marker`; `ready` is what follows the marker on that line.
/// Panics with everything the process said if it exits first.
pub fn start(mut cmd: Command, marker: &str) -> Server {
    let mut child = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut startup = Vec::new();
    let ready = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("exited before '{marker}':\n{}", startup.join("\n"))
        };
        startup.push(line.clone());
        if let Some((_, rest)) = line.split_once(marker) {
            break rest.to_string();
        }
    };
    let log = Arc::new(Mutex::new(startup));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Server { child, ready, log }
}

/// A bottle `bottle` (its Markdown, frontmatter and all) and an agent
/// `agent` using it, written into the home `home`.
pub fn bottle_and_agent(home: &Path, bottle: &str, bottle_md: &str, agent: &str) {
    std::fs::create_dir_all(home.join("bottles")).unwrap();
    std::fs::create_dir_all(home.join("agents")).unwrap();
    std::fs::write(home.join(format!("bottles/{bottle}.md")), bottle_md).unwrap();
    std::fs::write(home.join(format!("agents/{agent}.md")), format!("---\nbottle: {bottle}\n---\nA test agent.\n"))
        .unwrap();
}

/// A bottle that routes the very host the isolation self-test expects to be
/// refused: its self-test must fail.
pub const SELF_TEST_HOLE: &str = "---\nagent_provider:\n  template: shell\negress:\n  routes:\n    - host: no-route.bot-bottle.invalid\n---\nA route where the self-test expects none.\n";
