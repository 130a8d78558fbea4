//! The console's model, without a terminal: pending proposals from every
//! bottle's store, what each line and the detail pane say, and what a key
//! does. [`Console::on_key`] turns keys into [`Effect`]s the shell carries
//! out, so every flow is testable as data.

use std::path::PathBuf;

use serde_json::Value;
use supervise::{Answer, Kind, Proposal};

/// A pending proposal and the bottle it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub label: String,
    pub color: String,
    pub store: PathBuf,
    pub proposal: Proposal,
}

/// One line: kind and what is asked, safe for a terminal (the agent wrote
/// most of it). An `egress-allow` that weakens inspection says so first.
pub fn summary(p: &Proposal) -> String {
    let weakens = p.weakens_dlp();
    let text = what_is_asked(p);
    if weakens.is_empty() {
        shown::line(&text)
    } else {
        shown::line(&format!("WEAKENS DLP ({}): {text}", weakens.join("; ")))
    }
}

fn what_is_asked(p: &Proposal) -> String {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let why = if p.justification.is_empty() { String::new() } else { format!(" — {}", p.justification) };
    match p.kind {
        Kind::EgressAllow => {
            let route = p.payload.get("route").cloned().unwrap_or_default();
            let narrowed = if route.get("matches").is_some() { " (with matches)" } else { "" };
            format!("allow {}{narrowed}{why}", s(&route, "host"))
        }
        Kind::EgressBlock => format!("block {}{why}", s(&p.payload, "host")),
        Kind::AskOperator => s(&p.payload, "question"),
        Kind::EgressTokenAllow => {
            let rules: Vec<String> = p
                .payload
                .get("findings")
                .and_then(Value::as_array)
                .map(|f| f.iter().map(|f| s(f, "rule")).collect())
                .unwrap_or_default();
            format!(
                "let a value through: {} {}{} ({})",
                s(&p.payload, "method"),
                s(&p.payload, "host"),
                s(&p.payload, "path"),
                rules.join(", ")
            )
        }
        Kind::GitPushAllow => {
            let n = p.payload.get("findings").and_then(Value::as_array).map_or(0, Vec::len);
            let refs: Vec<String> = p
                .payload
                .get("refs")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            format!("push to {} {}: {n} finding(s) marked allowed", s(&p.payload, "repo"), refs.join(" "))
        }
    }
}

/// How long ago an RFC 3339 time was, shortly (`45s`, `12m`, `3h`, `2d`).
pub fn age(created_at: &str, now: std::time::SystemTime) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(created_at.trim_end_matches('Z')) else { return "?".to_string() };
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// The detail pane.
pub fn detail(p: &Pending) -> String {
    let q = &p.proposal;
    let mut out = format!("#{} {} from {} ({})\nfiled {}\n", q.id, q.kind.as_str(), p.label, q.identity, q.created_at);
    if !q.justification.is_empty() {
        out.push_str(&format!("justification: {}\n", q.justification));
    }
    if q.kind.sidecar_filed() {
        out.push_str("filed by the sidecar: a decision needs a reason; it cannot be modified\n");
    }
    if !q.weakens_dlp().is_empty() {
        out.push_str(&format!("WEAKENS DLP on this host: {}; approving needs a reason\n", q.weakens_dlp().join("; ")));
    }
    out.push('\n');
    out.push_str(&serde_json::to_string_pretty(&q.payload).unwrap_or_default());
    shown::block(&out)
}

/// What the operator is typing, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// Typing the reason (or, for ask-operator, the answer) for a decision.
    Reason {
        approve: bool,
        input: String,
    },
}

/// A key, as the console understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    Enter,
    Esc,
    Backspace,
}

/// What the shell must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    Quit,
    /// Decide this proposal.
    Decide {
        store: PathBuf,
        identity: String,
        id: i64,
        answer: Answer,
        reason: String,
    },
    /// Open the editor on this proposal's payload, then approve the edit.
    Edit {
        store: PathBuf,
        identity: String,
        id: i64,
        payload: Value,
    },
}

/// The console's state.
#[derive(Debug, Default)]
pub struct Console {
    pub items: Vec<Pending>,
    pub selected: usize,
    pub mode: Option<Mode>,
    /// A line for the operator (an error, a confirmation).
    pub status: String,
}

impl Console {
    /// Replace the list (a refresh), keeping the selection on the same
    /// proposal when it is still pending. Returns whether anything new came.
    pub fn refresh(&mut self, mut items: Vec<Pending>) -> bool {
        items.sort_by(|a, b| a.proposal.created_at.cmp(&b.proposal.created_at));
        let key = |p: &Pending| (p.store.clone(), p.proposal.id);
        let current = self.items.get(self.selected).map(key);
        let new = items.iter().any(|p| !self.items.iter().any(|q| key(q) == key(p)));
        self.items = items;
        self.selected = current
            .and_then(|c| self.items.iter().position(|p| key(p) == c))
            .unwrap_or(self.selected)
            .min(self.items.len().saturating_sub(1));
        new
    }

    pub fn current(&self) -> Option<&Pending> {
        self.items.get(self.selected)
    }

    pub fn on_key(&mut self, key: Key) -> Effect {
        match self.mode.clone().unwrap_or(Mode::Browse) {
            Mode::Browse => self.browse(key),
            Mode::Reason { approve, mut input } => match key {
                // Typing clears an old complaint.
                Key::Char(_) | Key::Backspace if !self.status.is_empty() => {
                    self.status.clear();
                    self.mode = Some(Mode::Reason { approve, input });
                    self.on_key(key)
                }
                Key::Esc => {
                    self.mode = None;
                    self.status = "cancelled".to_string();
                    Effect::None
                }
                Key::Backspace => {
                    input.pop();
                    self.mode = Some(Mode::Reason { approve, input });
                    Effect::None
                }
                Key::Char(c) => {
                    input.push(c);
                    self.mode = Some(Mode::Reason { approve, input });
                    Effect::None
                }
                Key::Enter => {
                    let Some(p) = self.current().cloned() else {
                        self.mode = None;
                        return Effect::None;
                    };
                    let needs_text =
                        p.proposal.needs_reason(approve) || !approve || p.proposal.kind == Kind::AskOperator;
                    if needs_text && input.trim().is_empty() {
                        self.status = if p.proposal.kind == Kind::AskOperator && approve {
                            "type the answer (Esc cancels)".to_string()
                        } else {
                            "a reason is required (Esc cancels)".to_string()
                        };
                        self.mode = Some(Mode::Reason { approve, input });
                        return Effect::None;
                    }
                    self.mode = None;
                    Effect::Decide {
                        store: p.store.clone(),
                        identity: p.proposal.identity.clone(),
                        id: p.proposal.id,
                        answer: if approve { Answer::Approve } else { Answer::Reject },
                        reason: input.trim().to_string(),
                    }
                }
                Key::Up | Key::Down => {
                    self.mode = Some(Mode::Reason { approve, input });
                    Effect::None
                }
            },
        }
    }

    fn browse(&mut self, key: Key) -> Effect {
        match key {
            Key::Char('q') | Key::Esc => Effect::Quit,
            Key::Up | Key::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Effect::None
            }
            Key::Down | Key::Char('j') => {
                if self.selected + 1 < self.items.len() {
                    self.selected += 1;
                }
                Effect::None
            }
            Key::Char('a') if self.current().is_some() => {
                self.mode = Some(Mode::Reason { approve: true, input: String::new() });
                self.status.clear();
                Effect::None
            }
            Key::Char('r') if self.current().is_some() => {
                self.mode = Some(Mode::Reason { approve: false, input: String::new() });
                self.status.clear();
                Effect::None
            }
            Key::Char('m') => match self.current() {
                Some(p) if p.proposal.kind.sidecar_filed() => {
                    self.status = format!("a {} proposal cannot be modified", p.proposal.kind.as_str());
                    Effect::None
                }
                Some(p) => Effect::Edit {
                    store: p.store.clone(),
                    identity: p.proposal.identity.clone(),
                    id: p.proposal.id,
                    payload: p.proposal.payload.clone(),
                },
                None => Effect::None,
            },
            _ => Effect::None,
        }
    }

    /// The prompt line while typing.
    pub fn prompt(&self) -> Option<String> {
        let Some(Mode::Reason { approve, input }) = &self.mode else { return None };
        let p = self.current()?;
        let what = match (approve, p.proposal.kind) {
            (true, Kind::AskOperator) => "answer",
            (true, _) if p.proposal.needs_reason(true) => "approve; reason",
            (true, _) => "approve; reason (optional)",
            (false, _) => "reject; reason",
        };
        Some(format!("{what}: {input}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use supervise::Status;

    fn pending(id: i64, kind: Kind, payload: Value, created_at: &str) -> Pending {
        Pending {
            label: "otter".into(),
            color: "green".into(),
            store: PathBuf::from(format!("/s/{id}")),
            proposal: Proposal {
                id,
                identity: "swift-otter".into(),
                kind,
                payload,
                justification: "because".into(),
                created_at: created_at.into(),
                status: Status::Pending,
                decision: None,
            },
        }
    }

    fn typed(c: &mut Console, text: &str) {
        for ch in text.chars() {
            assert_eq!(c.on_key(Key::Char(ch)), Effect::None);
        }
    }

    #[test]
    fn summaries_say_what_is_asked() {
        let allow = pending(1, Kind::EgressAllow, json!({"route": {"host": "pypi.org"}}), "t");
        assert_eq!(summary(&allow.proposal), "allow pypi.org — because");
        let push =
            pending(2, Kind::GitPushAllow, json!({"repo": "w", "refs": ["refs/heads/main"], "findings": [{}]}), "t");
        assert_eq!(summary(&push.proposal), "push to w refs/heads/main: 1 finding(s) marked allowed");
        // What weakens inspection says so first; approving it needs a reason.
        let weak = pending(
            3,
            Kind::EgressAllow,
            json!({"route": {"host": "api.example.com", "dlp": {"outbound_detectors": []}},
                   "weakens_dlp": ["drops the outbound detector known_secrets"]}),
            "t",
        );
        assert_eq!(
            summary(&weak.proposal),
            "WEAKENS DLP (drops the outbound detector known_secrets): allow api.example.com — because"
        );
        assert!(detail(&weak).contains("approving needs a reason"));
        let mut c = Console::default();
        c.refresh(vec![weak]);
        c.on_key(Key::Char('a'));
        assert_eq!(c.prompt().unwrap(), "approve; reason: ");
        assert_eq!(c.on_key(Key::Enter), Effect::None);
        assert!(c.status.contains("reason is required"));
    }

    #[test]
    fn agent_text_cannot_drive_the_terminal() {
        let mut p = pending(1, Kind::EgressAllow, json!({"route": {"host": "evil.example.com"}}), "t");
        p.proposal.justification = "x\r\u{1b}[2Kallow pypi.org\u{1b}]52;c;cHduZWQ=\u{7}".into();
        let q = pending(2, Kind::AskOperator, json!({"question": "ok?\u{1b}]0;title\u{7}\nsecond row"}), "t");
        for text in [summary(&p.proposal), summary(&q.proposal), detail(&p), detail(&q)] {
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        }
        assert!(!summary(&q.proposal).contains('\n'));
    }

    #[test]
    fn oldest_first_and_the_selection_follows_its_proposal() {
        let mut c = Console::default();
        assert!(c.refresh(vec![
            pending(2, Kind::AskOperator, json!({"question": "b"}), "2026-01-01T00:00:02Z"),
            pending(1, Kind::AskOperator, json!({"question": "a"}), "2026-01-01T00:00:01Z"),
        ]));
        assert_eq!(c.current().unwrap().proposal.id, 1);
        c.on_key(Key::Down);
        assert_eq!(c.current().unwrap().proposal.id, 2);
        // #1 decided elsewhere: the selection stays on #2; nothing new.
        assert!(!c.refresh(vec![pending(2, Kind::AskOperator, json!({}), "2026-01-01T00:00:02Z")]));
        assert_eq!(c.current().unwrap().proposal.id, 2);
    }

    #[test]
    fn approve_reject_and_modify_flows() {
        let mut c = Console::default();
        c.refresh(vec![
            pending(1, Kind::AskOperator, json!({"question": "db?"}), "1"),
            pending(2, Kind::GitPushAllow, json!({"repo": "w"}), "2"),
            pending(3, Kind::EgressAllow, json!({"route": {"host": "x.org"}}), "3"),
        ]);
        // ask-operator: approving asks for the answer, which is required.
        c.on_key(Key::Char('a'));
        assert_eq!(c.prompt().unwrap(), "answer: ");
        assert_eq!(c.on_key(Key::Enter), Effect::None);
        assert!(c.status.contains("answer"));
        typed(&mut c, "sqlitX");
        c.on_key(Key::Backspace);
        typed(&mut c, "e");
        let Effect::Decide { id, answer, reason, .. } = c.on_key(Key::Enter) else { panic!() };
        assert_eq!((id, answer, reason.as_str()), (1, Answer::Approve, "sqlite"));
        // A sidecar-filed proposal cannot be modified and needs a reason.
        c.on_key(Key::Down);
        assert_eq!(c.on_key(Key::Char('m')), Effect::None);
        assert!(c.status.contains("cannot be modified"));
        c.on_key(Key::Char('r'));
        assert_eq!(c.on_key(Key::Enter), Effect::None);
        typed(&mut c, "rotate it");
        let Effect::Decide { id, answer, reason, .. } = c.on_key(Key::Enter) else { panic!() };
        assert_eq!((id, answer, reason.as_str()), (2, Answer::Reject, "rotate it"));
        // An egress-allow: modify opens the editor on its payload; approve
        // needs no reason; Esc cancels a prompt.
        c.on_key(Key::Down);
        let Effect::Edit { id, payload, .. } = c.on_key(Key::Char('m')) else { panic!() };
        assert_eq!((id, payload), (3, json!({"route": {"host": "x.org"}})));
        c.on_key(Key::Char('a'));
        c.on_key(Key::Esc);
        assert_eq!(c.mode, None);
        c.on_key(Key::Char('a'));
        let Effect::Decide { id, answer, .. } = c.on_key(Key::Enter) else { panic!() };
        assert_eq!((id, answer), (3, Answer::Approve));
        assert_eq!(c.on_key(Key::Char('q')), Effect::Quit);
    }

    #[test]
    fn ages_are_short() {
        let now = humantime::parse_rfc3339("2026-01-01T01:00:00Z").unwrap();
        assert_eq!(age("2026-01-01T00:59:15.123Z", now), "44s");
        assert_eq!(age("2026-01-01T00:48:00Z", now), "12m");
        assert_eq!(age("2025-12-30T01:00:00Z", now), "2d");
        assert_eq!(age("garbage", now), "?");
    }
}
