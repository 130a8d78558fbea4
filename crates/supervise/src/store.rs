//! The proposal store: one SQLite file per bottle (`state/<identity>/
//! supervise/proposals.sqlite`) that the sidecar (through a mount) and the
//! host CLI both open. Proposals, decisions, and the audit trail of every
//! decision and route change. Correct under concurrent writers: WAL, a busy
//! timeout, and every check-then-write in one immediate transaction. The
//! schema is versioned (`PRAGMA user_version`) and migrated on open.
//!
//! [`AuditArchive`] is the host's copy of every bottle's audit trail
//! (`$BOT_BOTTLE_HOME/audit.sqlite`), which outlives the bottles.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

/// Where a bottle's store lives in its state dir (`state/<identity>/`).
pub fn store_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("supervise").join("proposals.sqlite")
}

/// Where the host keeps every bottle's audit trail (`$BOT_BOTTLE_HOME`).
pub fn archive_path(home: &Path) -> std::path::PathBuf {
    home.join("audit.sqlite")
}

/// What the agent (or the sidecar) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `egress-allow`: add or change a route.
    EgressAllow,
    /// `egress-block`: remove a route.
    EgressBlock,
    /// `ask-operator`: a question.
    AskOperator,
    /// Filed by the sidecar: an egress DLP hold.
    EgressTokenAllow,
    /// Filed by the sidecar: suppressed findings in a push.
    GitPushAllow,
}

impl Kind {
    /// As stored (`egress-allow`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EgressAllow => "egress-allow",
            Kind::EgressBlock => "egress-block",
            Kind::AskOperator => "ask-operator",
            Kind::EgressTokenAllow => "egress-token-allow",
            Kind::GitPushAllow => "git-push-allow",
        }
    }

    /// From its stored name.
    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::EgressAllow, Kind::EgressBlock, Kind::AskOperator, Kind::EgressTokenAllow, Kind::GitPushAllow]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// Filed by the sidecar itself: a decision needs a reason and the
    /// proposal cannot be modified.
    pub fn sidecar_filed(self) -> bool {
        matches!(self, Kind::EgressTokenAllow | Kind::GitPushAllow)
    }
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the operator.
    Pending,
    /// Approved as filed.
    Approved,
    /// Approved as the operator edited it.
    Modified,
    /// Refused.
    Rejected,
    /// Nobody answered in time: refused.
    Timeout,
}

impl Status {
    /// As stored (`pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Modified => "modified",
            Status::Rejected => "rejected",
            Status::Timeout => "timeout",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "approved" => Status::Approved,
            "modified" => Status::Modified,
            "rejected" => Status::Rejected,
            "timeout" => Status::Timeout,
            _ => Status::Pending,
        }
    }
}

/// A proposal as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// Its id in the store.
    pub id: i64,
    /// The bottle that filed it.
    pub identity: String,
    /// What it asks for.
    pub kind: Kind,
    /// What it asks, as filed (JSON).
    pub payload: serde_json::Value,
    /// The agent's reason.
    pub justification: String,
    /// When it was filed.
    pub created_at: String,
    /// Where it stands.
    pub status: Status,
    /// The operator's decision, once made.
    pub decision: Option<Decision>,
}

impl Proposal {
    /// For an `egress-allow`: how it would weaken the inspection of its
    /// host (worked out by the sidecar when it was filed). Empty otherwise.
    pub fn weakens_dlp(&self) -> Vec<&str> {
        if self.kind != Kind::EgressAllow {
            return Vec::new();
        }
        self.payload
            .get("weakens_dlp")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether deciding it needs a reason: anything the sidecar filed, and
    /// approving a change that weakens inspection.
    pub fn needs_reason(&self, approve: bool) -> bool {
        self.kind.sidecar_filed() || (approve && !self.weakens_dlp().is_empty())
    }
}

/// The operator's decision on a proposal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Status,
    /// The operator's reason.
    pub reason: String,
    /// Who decided (the host user).
    pub operator: String,
    /// When.
    pub decided_at: String,
    /// The operator's edit, for `modified`.
    pub payload: Option<serde_json::Value>,
}

/// What the operator decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// As filed.
    Approve,
    /// Approve this edited payload instead.
    Modify(serde_json::Value),
    /// Refuse.
    Reject,
}

/// A route change an operator approved in an earlier session, kept in the
/// bottle's store and applied again on resume.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRouteEdit {
    /// The proposal that asked for it (none for a change made otherwise).
    pub proposal_id: Option<i64>,
    /// When it was approved.
    pub at: String,
    /// The change.
    pub edit: routes::RouteEdit,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The bottle.
    pub identity: String,
    /// When.
    pub at: String,
    /// `decision`, `route-change` or `route-reapplied`.
    pub event: String,
    /// The proposal it concerns, if any.
    pub proposal_id: Option<i64>,
    /// Its kind, if any.
    pub kind: Option<String>,
    /// What happened (JSON).
    pub detail: serde_json::Value,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("proposal store {path}: {message}")]
    Sql {
        /// The store's file.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// No proposal has this id.
    #[error("proposal {0} does not exist")]
    Missing(i64),
    /// The proposal has its verdict already.
    #[error("proposal {id} was already decided ({status})")]
    Decided {
        /// The proposal.
        id: i64,
        /// Its verdict.
        status: &'static str,
    },
    /// A bound refused it (too many pending, too large); the message says which.
    #[error("{0}")]
    Refused(String),
}

/// Schema migrations, in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &["CREATE TABLE proposals (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        justification TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
    );
    CREATE INDEX proposals_status ON proposals (status, id);
    CREATE TABLE decisions (
        proposal_id INTEGER PRIMARY KEY REFERENCES proposals (id),
        verdict TEXT NOT NULL,
        reason TEXT NOT NULL,
        operator TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        payload TEXT
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL,
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        proposal_id INTEGER,
        kind TEXT,
        detail TEXT NOT NULL
    );"];

/// The most text (payload and justification) one proposal may hold.
pub const MAX_PROPOSAL_TEXT: usize = 64 << 10;

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// One bottle's store.
pub struct ProposalStore {
    conn: Connection,
    path: String,
    identity: String,
}

impl std::fmt::Debug for ProposalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProposalStore").field("path", &self.path).field("identity", &self.identity).finish()
    }
}

fn open_db(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Sql { path: path.display().to_string(), message: e.to_string() };
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Sql { path: path.display().to_string(), message: e.to_string() };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql)?;
    if version > migrations.len() {
        return Err(StoreError::Sql {
            path: path.display().to_string(),
            message: format!(
                "schema version {version} is newer than this bot-bottle knows ({}); upgrade bot-bottle",
                migrations.len()
            ),
        });
    }
    for (i, m) in migrations.iter().enumerate().skip(version) {
        tx.execute_batch(m).map_err(sql)?;
        tx.pragma_update(None, "user_version", i + 1).map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

impl ProposalStore {
    /// Open (creating and migrating) the store at `path` for `identity`.
    pub fn open(path: &Path, identity: &str) -> Result<ProposalStore, StoreError> {
        let mut conn = open_db(path)?;
        migrate(&mut conn, path, MIGRATIONS)?;
        Ok(ProposalStore { conn, path: path.display().to_string(), identity: identity.to_string() })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::Sql { path: self.path.clone(), message: e.to_string() }
    }

    /// The bottle whose store this is.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// File a proposal; its id.
    pub fn file(&self, kind: Kind, payload: &serde_json::Value, justification: &str) -> Result<i64, StoreError> {
        let payload = payload.to_string();
        let size = payload.len() + justification.len();
        if size > MAX_PROPOSAL_TEXT {
            return Err(StoreError::Refused(format!(
                "a proposal is at most {} KiB of text and this one is {} KiB: ask with less",
                MAX_PROPOSAL_TEXT >> 10,
                size.div_ceil(1024)
            )));
        }
        self.conn
            .execute(
                "INSERT INTO proposals (identity, kind, payload, justification, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![self.identity, kind.as_str(), payload, justification, now()],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// How many proposals wait for the operator, and how many were filed
    /// since `since` (a time as `now` writes them).
    pub fn load(&self, since: std::time::SystemTime) -> Result<(usize, usize), StoreError> {
        let since = humantime::format_rfc3339_millis(since).to_string();
        let (pending, recent): (i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM proposals WHERE status = 'pending'),
                        (SELECT COUNT(*) FROM proposals WHERE created_at > ?1)",
                [since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql())?;
        Ok((pending as usize, recent as usize))
    }

    const SELECT: &'static str = "SELECT p.id, p.identity, p.kind, p.payload, p.justification, p.created_at, p.status,
            d.verdict, d.reason, d.operator, d.decided_at, d.payload
        FROM proposals p LEFT JOIN decisions d ON d.proposal_id = p.id";

    /// One proposal. A payload that is not JSON or a kind this version
    /// does not know is an error, never a `null` payload or an
    /// `ask-operator` (an operator would decide something else than what
    /// was filed).
    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Proposal> {
        let bad = |column: usize, why: String| {
            rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, why.into())
        };
        let json = |column: usize, s: Option<String>| -> rusqlite::Result<Option<serde_json::Value>> {
            s.map(|s| serde_json::from_str(&s).map_err(|e| bad(column, format!("not JSON: {e}")))).transpose()
        };
        let kind: String = r.get(2)?;
        let verdict: Option<String> = r.get(7)?;
        Ok(Proposal {
            id: r.get(0)?,
            identity: r.get(1)?,
            kind: Kind::parse(&kind).ok_or_else(|| bad(2, format!("unknown proposal kind '{kind}'")))?,
            payload: json(3, r.get(3)?)?.unwrap_or_default(),
            justification: r.get(4)?,
            created_at: r.get(5)?,
            status: Status::parse(&r.get::<_, String>(6)?),
            decision: match verdict {
                Some(v) => Some(Decision {
                    verdict: Status::parse(&v),
                    reason: r.get(8)?,
                    operator: r.get(9)?,
                    decided_at: r.get(10)?,
                    payload: json(11, r.get(11)?)?,
                }),
                None => None,
            },
        })
    }

    /// Proposal `id`, if it exists.
    pub fn get(&self, id: i64) -> Result<Option<Proposal>, StoreError> {
        self.conn
            .query_row(&format!("{} WHERE p.id = ?1", Self::SELECT), [id], Self::row)
            .optional()
            .map_err(self.sql())
    }

    /// Pending proposals, oldest first.
    pub fn pending(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{} WHERE p.status = 'pending' ORDER BY p.id", Self::SELECT))
            .map_err(self.sql())?;
        let rows = stmt.query_map([], Self::row).map_err(self.sql())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sql())
    }

    /// Record the operator's decision (and audit it), if the proposal is
    /// still pending. Sidecar-filed kinds need a reason and cannot be
    /// modified.
    pub fn decide(&mut self, id: i64, answer: &Answer, reason: &str, operator: &str) -> Result<Proposal, StoreError> {
        let path = self.path.clone();
        let sql = |e: rusqlite::Error| StoreError::Sql { path: path.clone(), message: e.to_string() };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let current = tx
            .query_row(&format!("{} WHERE p.id = ?1", Self::SELECT), [id], Self::row)
            .optional()
            .map_err(sql)?
            .ok_or(StoreError::Missing(id))?;
        if current.status != Status::Pending {
            return Err(StoreError::Decided { id, status: current.status.as_str() });
        }
        if current.kind.sidecar_filed() && matches!(answer, Answer::Modify(_)) {
            return Err(StoreError::Refused(format!("a {} proposal cannot be modified", current.kind.as_str())));
        }
        if current.needs_reason(!matches!(answer, Answer::Reject)) && reason.trim().is_empty() {
            let what = if current.kind.sidecar_filed() { "decision" } else { "approval, which weakens DLP," };
            return Err(StoreError::Refused(format!("a {} {what} needs a reason", current.kind.as_str())));
        }
        let (verdict, payload) = match answer {
            Answer::Approve => (Status::Approved, None),
            Answer::Modify(p) => (Status::Modified, Some(p.to_string())),
            Answer::Reject => (Status::Rejected, None),
        };
        let at = now();
        tx.execute(
            "INSERT INTO decisions (proposal_id, verdict, reason, operator, decided_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, verdict.as_str(), reason, operator, at, payload],
        )
        .map_err(sql)?;
        tx.execute("UPDATE proposals SET status = ?1 WHERE id = ?2", params![verdict.as_str(), id]).map_err(sql)?;
        let detail = serde_json::json!({"verdict": verdict.as_str(), "reason": reason, "operator": operator,
            "payload": current.payload, "modified": payload.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())});
        tx.execute(
            "INSERT INTO audit (identity, at, event, proposal_id, kind, detail) VALUES (?1, ?2, 'decision', ?3, ?4, ?5)",
            params![current.identity, at, id, current.kind.as_str(), detail.to_string()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.get(id)?.ok_or(StoreError::Missing(id))
    }

    /// A pending proposal nobody answered in time becomes `timeout`
    /// (audited). Returns the proposal as it now stands (decided meanwhile:
    /// that decision).
    pub fn expire(&mut self, id: i64) -> Result<Proposal, StoreError> {
        let path = self.path.clone();
        let sql = |e: rusqlite::Error| StoreError::Sql { path: path.clone(), message: e.to_string() };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let changed = tx
            .execute("UPDATE proposals SET status = 'timeout' WHERE id = ?1 AND status = 'pending'", [id])
            .map_err(sql)?;
        if changed == 1 {
            let kind: String =
                tx.query_row("SELECT kind FROM proposals WHERE id = ?1", [id], |r| r.get(0)).map_err(sql)?;
            tx.execute(
                "INSERT INTO audit (identity, at, event, proposal_id, kind, detail) VALUES (?1, ?2, 'decision', ?3, ?4, ?5)",
                params![self.identity, now(), id, kind, serde_json::json!({"verdict": "timeout"}).to_string()],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.get(id)?.ok_or(StoreError::Missing(id))
    }

    /// Audit a route change with the routes before and after.
    /// Audit a route change the operator approved: the edit itself (so a
    /// resume can apply it again, see [`ProposalStore::kept_route_edits`])
    /// and the routes before and after.
    pub fn audit_route_change(
        &self,
        proposal_id: Option<i64>,
        edit: &routes::RouteEdit,
        before: &serde_json::Value,
        after: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let detail = serde_json::json!({"edit": edit.to_json(), "before": before, "after": after});
        self.conn
            .execute(
                "INSERT INTO audit (identity, at, event, proposal_id, kind, detail) VALUES (?1, ?2, 'route-change', ?3, NULL, ?4)",
                params![self.identity, now(), proposal_id, detail.to_string()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The route changes approved in this bottle's sessions, oldest first:
    /// what a resume applies again over the manifest's routes. Changes
    /// audited before edits were kept (no `edit` in the detail) are not
    /// among them.
    pub fn kept_route_edits(&self) -> Result<Vec<KeptRouteEdit>, StoreError> {
        let mut kept = Vec::new();
        for entry in self.audit()?.into_iter().filter(|a| a.event == "route-change") {
            let Some(edit) = entry.detail.get("edit") else { continue };
            let edit = routes::RouteEdit::from_json(edit).map_err(|message| StoreError::Sql {
                path: self.path.clone(),
                message: format!("the route change audited at {} cannot be read: {message}", entry.at),
            })?;
            kept.push(KeptRouteEdit { proposal_id: entry.proposal_id, at: entry.at, edit });
        }
        Ok(kept)
    }

    /// Audit that a resume applied a kept route change again (or could
    /// not: `applied` false with the reason).
    pub fn audit_route_reapplied(&self, kept: &KeptRouteEdit, outcome: Result<(), &str>) -> Result<(), StoreError> {
        let detail = serde_json::json!({
            "edit": kept.edit.to_json(),
            "approved_at": kept.at,
            "applied": outcome.is_ok(),
            "reason": outcome.err(),
        });
        self.conn
            .execute(
                "INSERT INTO audit (identity, at, event, proposal_id, kind, detail) VALUES (?1, ?2, 'route-reapplied', ?3, NULL, ?4)",
                params![self.identity, now(), kept.proposal_id, detail.to_string()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        read_audit(&self.conn, &self.path)
    }
}

fn read_audit(conn: &Connection, path: &str) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Sql { path: path.to_string(), message: e.to_string() };
    let mut stmt =
        conn.prepare("SELECT identity, at, event, proposal_id, kind, detail FROM audit ORDER BY id").map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(AuditEntry {
                identity: r.get(0)?,
                at: r.get(1)?,
                event: r.get(2)?,
                proposal_id: r.get(3)?,
                kind: r.get(4)?,
                detail: serde_json::from_str(&r.get::<_, String>(5)?).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
                })?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

const ARCHIVE_MIGRATIONS: &[&str] = &["CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL,
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        proposal_id INTEGER,
        kind TEXT,
        detail TEXT NOT NULL,
        source_id INTEGER NOT NULL,
        UNIQUE (identity, source_id)
    );"];

/// The host's audit trail across bottles (`$BOT_BOTTLE_HOME/audit.sqlite`).
pub struct AuditArchive {
    conn: Connection,
    path: String,
}

impl AuditArchive {
    /// Open (or create) the archive at `path`.
    pub fn open(path: &Path) -> Result<AuditArchive, StoreError> {
        let mut conn = open_db(path)?;
        migrate(&mut conn, path, ARCHIVE_MIGRATIONS)?;
        Ok(AuditArchive { conn, path: path.display().to_string() })
    }

    /// Copy a bottle's audit trail in (again is harmless: rows already
    /// archived are skipped). Returns how many rows were new.
    pub fn absorb(&mut self, store: &Path) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let sql = |e: rusqlite::Error| StoreError::Sql { path: path.clone(), message: e.to_string() };
        self.conn.execute("ATTACH DATABASE ?1 AS bottle", [store.display().to_string()]).map_err(sql)?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO audit (identity, at, event, proposal_id, kind, detail, source_id)
                 SELECT identity, at, event, proposal_id, kind, detail, id FROM bottle.audit ORDER BY id",
                [],
            )
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.conn.execute("DETACH DATABASE bottle", []).map_err(sql)?;
        Ok(n)
    }

    /// Every archived entry, oldest first.
    pub fn entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        read_audit(&self.conn, &self.path)
    }
}
