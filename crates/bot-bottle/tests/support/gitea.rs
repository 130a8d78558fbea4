//! A fake Gitea for deploy-key tests: the two deploy-key endpoints, a
//! registered key added to an sshd's authorized keys (so it really opens
//! the upstream), a revoked one removed; failures and stalls on demand.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fake Gitea: the two deploy-key endpoints. A registered key is added
/// to the sshd's authorized keys (so it really opens the upstream), a
/// revoked one removed. `delete_status` is what DELETE answers.
pub struct Gitea {
    pub port: u16,
    /// Every request: (request line, authorization, body).
    pub calls: Arc<Mutex<Vec<(String, String, String)>>>,
    /// The keys registered now: (id, title).
    pub keys: Arc<Mutex<Vec<(u64, String)>>>,
}

pub fn fake_gitea(authorized_keys: PathBuf, delete_status: u16) -> Gitea {
    fake_gitea_with(authorized_keys, delete_status, None, Vec::new())
}

/// As [`fake_gitea`], refusing (500) the `fail_post`th registration (1 is
/// the first), with `registered` keys (id, title) already there.
/// Registered keys are listed (GET) and deleted (DELETE) by id; new ids
/// count from 42.
pub fn fake_gitea_with(
    authorized_keys: PathBuf,
    delete_status: u16,
    fail_post: Option<usize>,
    registered: Vec<(u64, String)>,
) -> Gitea {
    fake_gitea_stalling(authorized_keys, delete_status, fail_post, registered, None)
}

/// As [`fake_gitea_with`], answering a registration only `stall` after
/// making it (the key is registered, the client has not heard yet): what a
/// client killed or interrupted mid-mint leaves behind. Each connection is
/// served on its own thread, so a stalled one holds up no other.
pub fn fake_gitea_stalling(
    authorized_keys: PathBuf,
    delete_status: u16,
    fail_post: Option<usize>,
    registered: Vec<(u64, String)>,
    stall: Option<Duration>,
) -> Gitea {
    use std::io::{Read, Write};
    let keys = Arc::new(Mutex::new(registered));
    let keys_seen = keys.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let record = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (record, keys, authorized_keys) = (record.clone(), keys.clone(), authorized_keys.clone());
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break (String::new(), String::new());
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (head.to_string(), body.to_string());
                        }
                    }
                };
                let request_line = head.lines().next().unwrap_or("").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                    .unwrap_or("")
                    .to_string();
                record.lock().unwrap().push((request_line.clone(), auth, body.clone()));
                let posts = record.lock().unwrap().iter().filter(|c| c.0.starts_with("POST ")).count();
                let failing = request_line.starts_with("POST ") && fail_post == Some(posts);
                let (status, answer) = if request_line.starts_with("POST /api/v1/repos/") && failing {
                    (500, "{\"message\": \"no\"}".to_string())
                } else if request_line.starts_with("POST /api/v1/repos/") {
                    let key: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let line = format!("{}\n", key["key"].as_str().unwrap_or(""));
                    let mut f = std::fs::OpenOptions::new().append(true).open(&authorized_keys).unwrap();
                    f.write_all(line.as_bytes()).unwrap();
                    let mut keys = keys.lock().unwrap();
                    let id = keys.iter().map(|(i, _)| *i + 1).max().unwrap_or(42).max(42);
                    keys.push((id, key["title"].as_str().unwrap_or("").to_string()));
                    drop(keys);
                    if let Some(stall) = stall {
                        std::thread::sleep(stall);
                    }
                    (201, format!("{{\"id\": {id}, \"read_only\": false}}"))
                } else if request_line.starts_with("GET /api/v1/repos/") {
                    let list: Vec<serde_json::Value> = keys
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(id, title)| serde_json::json!({"id": id, "title": title, "key": "ssh-ed25519 AAAA"}))
                        .collect();
                    (200, serde_json::Value::Array(list).to_string())
                } else if request_line.starts_with("DELETE /api/v1/repos/") {
                    let id: Option<u64> = request_line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.rsplit('/').next())
                        .and_then(|i| i.parse().ok());
                    if delete_status < 300 {
                        keys.lock().unwrap().retain(|(i, _)| Some(*i) != id);
                    }
                    (delete_status, String::new())
                } else {
                    (404, "{}".to_string())
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(reply.as_bytes());
            });
        }
    });
    Gitea { port, calls, keys: keys_seen }
}
