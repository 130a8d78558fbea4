//! The proposal store on a real SQLite file: the life of a proposal, the
//! rules for sidecar-filed kinds, concurrent writers (threads with their own
//! connections, as the sidecar and the console are), timeouts of abandoned
//! waits, the audit trail and its archive.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use supervise::{Answer, AuditArchive, Kind, ProposalStore, Status, StoreError, Supervisor};

fn store(dir: &std::path::Path) -> ProposalStore {
    ProposalStore::open(&dir.join("proposals.sqlite"), "swift-otter").unwrap()
}

#[test]
fn a_proposal_is_filed_decided_once_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    let id = s.file(Kind::EgressAllow, &json!({"route": {"host": "pypi.org"}}), "install deps").unwrap();
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, pending[0].kind, pending[0].status), (id, Kind::EgressAllow, Status::Pending));
    let edited = json!({"route": {"host": "pypi.org", "matches": [{"methods": ["GET"]}]}});
    let decided = s.decide(id, &Answer::Modify(edited.clone()), "GET only", "ada").unwrap();
    assert_eq!(decided.status, Status::Modified);
    let d = decided.decision.unwrap();
    assert_eq!((d.reason.as_str(), d.operator.as_str(), d.payload), ("GET only", "ada", Some(edited)));
    assert!(s.pending().unwrap().is_empty());
    // Decided is final.
    assert!(matches!(s.decide(id, &Answer::Reject, "no", "bob"), Err(StoreError::Decided { .. })));
    assert!(matches!(s.decide(999, &Answer::Reject, "no", "bob"), Err(StoreError::Missing(999))));
    let audit = s.audit().unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].event.as_str(), audit[0].proposal_id), ("decision", Some(id)));
    assert_eq!(audit[0].detail["verdict"], "modified");
    // Reopening migrates nothing and keeps everything.
    drop(s);
    let s = store(dir.path());
    assert_eq!(s.get(id).unwrap().unwrap().status, Status::Modified);
}

#[test]
fn sidecar_filed_proposals_need_a_reason_and_cannot_be_modified() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    let id = s.file(Kind::GitPushAllow, &json!({"repo": "widgets"}), "").unwrap();
    assert!(matches!(s.decide(id, &Answer::Modify(json!({})), "x", "ada"), Err(StoreError::Refused(_))));
    assert!(matches!(s.decide(id, &Answer::Approve, "  ", "ada"), Err(StoreError::Refused(_))));
    assert_eq!(s.decide(id, &Answer::Approve, "test fixture", "ada").unwrap().status, Status::Approved);
}

#[test]
fn approving_a_route_change_that_weakens_dlp_needs_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    let weak = json!({"route": {"host": "a.com", "dlp": {"outbound_detectors": []}},
                      "weakens_dlp": ["drops the outbound detector known_secrets"]});
    let id = s.file(Kind::EgressAllow, &weak, "need it").unwrap();
    assert_eq!(s.get(id).unwrap().unwrap().weakens_dlp(), ["drops the outbound detector known_secrets"]);
    let e = s.decide(id, &Answer::Approve, " ", "ada").unwrap_err();
    assert!(e.to_string().contains("weakens DLP"), "{e}");
    assert!(matches!(s.decide(id, &Answer::Modify(weak.clone()), "", "ada"), Err(StoreError::Refused(_))));
    assert_eq!(s.decide(id, &Answer::Approve, "the vendor's API echoes ids", "ada").unwrap().status, Status::Approved);
    // One that weakens nothing needs none.
    let id = s.file(Kind::EgressAllow, &json!({"route": {"host": "b.com"}}), "need it").unwrap();
    assert_eq!(s.decide(id, &Answer::Approve, "", "ada").unwrap().status, Status::Approved);
}

#[test]
fn concurrent_writers_on_separate_connections_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proposals.sqlite");
    drop(ProposalStore::open(&path, "a").unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = ProposalStore::open(&path, "a").unwrap();
                for i in 0..50 {
                    let id = s.file(Kind::AskOperator, &json!({"question": format!("{t}-{i}")}), "").unwrap();
                    // The console may have decided it first: then this loses.
                    if i % 2 == 0 {
                        match s.decide(id, &Answer::Approve, "ok", "op") {
                            Ok(_) | Err(StoreError::Decided { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    // Meanwhile a console decides whatever is pending, racing the writers.
    let console = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut s = ProposalStore::open(&path, "a").unwrap();
            let mut decided = 0;
            for _ in 0..200 {
                for p in s.pending().unwrap() {
                    match s.decide(p.id, &Answer::Reject, "no", "console") {
                        Ok(_) => decided += 1,
                        Err(StoreError::Decided { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            decided
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    console.join().unwrap();
    let s = ProposalStore::open(&path, "a").unwrap();
    let audit = s.audit().unwrap();
    // Every proposal filed; each decided at most once, each decision audited.
    let decisions = audit.iter().filter(|a| a.event == "decision").count();
    let mut ids: Vec<i64> = audit.iter().filter_map(|a| a.proposal_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), decisions, "a proposal was decided twice");
    assert_eq!(decisions + s.pending().unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_call_sees_the_decision_or_times_out_and_an_abandoned_one_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proposals.sqlite");
    let sup = Arc::new(Supervisor::new(ProposalStore::open(&path, "a").unwrap(), None));
    // The console (another connection) answers while the call waits.
    let console = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = ProposalStore::open(&path, "a").unwrap();
            loop {
                if let Some(p) = s.pending().unwrap().first() {
                    return s.decide(p.id, &Answer::Approve, "42", "ada").unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let answered = sup
        .ask(Kind::AskOperator, json!({"question": "answer?"}), String::new(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answered.status, Status::Approved);
    assert_eq!(answered.decision.unwrap().reason, "42");
    console.await.unwrap();
    // Nobody answers: timeout, recorded.
    let late = sup.ask(Kind::AskOperator, json!({}), String::new(), Duration::from_millis(300)).await.unwrap();
    assert_eq!(late.status, Status::Timeout);
    // The caller goes away mid-wait: the proposal does not stay pending.
    let waiting = sup.ask(Kind::AskOperator, json!({"question": "gone"}), String::new(), Duration::from_secs(60));
    let _ = tokio::time::timeout(Duration::from_millis(300), waiting).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = ProposalStore::open(&path, "a").unwrap();
    assert!(s.pending().unwrap().is_empty());
    assert_eq!(s.audit().unwrap().iter().filter(|a| a.detail["verdict"] == "timeout").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_turns_decisions_into_verdicts() {
    use proposal::{Proposal, ProposalSink, PushAllowProposal, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proposals.sqlite");
    let mut sup = Supervisor::new(ProposalStore::open(&path, "a").unwrap(), None);
    sup.hold_timeout = Duration::from_secs(10);
    let answer = |verdict: Answer, reason: &'static str| {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut s = ProposalStore::open(&path, "a").unwrap();
            loop {
                if let Some(p) = s.pending().unwrap().first() {
                    assert_eq!(p.kind, Kind::GitPushAllow);
                    s.decide(p.id, &verdict, reason, "ada").unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let proposal = || Proposal::GitPushAllow(PushAllowProposal { repo: "w".into(), refs: vec![], findings: vec![] });
    let t = answer(Answer::Approve, "fixture");
    assert_eq!(sup.propose(proposal()).await, Verdict::Approved { reason: "fixture".into() });
    t.join().unwrap();
    let t = answer(Answer::Reject, "rotate it");
    assert_eq!(sup.propose(proposal()).await, Verdict::Rejected { reason: "rotate it".into() });
    t.join().unwrap();
}

#[test]
fn the_archive_keeps_every_bottles_audit_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = ProposalStore::open(&dir.path().join("a.sqlite"), "bottle-a").unwrap();
    let mut b = ProposalStore::open(&dir.path().join("b.sqlite"), "bottle-b").unwrap();
    let id = a.file(Kind::AskOperator, &json!({}), "").unwrap();
    a.decide(id, &Answer::Approve, "yes", "ada").unwrap();
    a.audit_route_change(
        None,
        &routes::RouteEdit::Block { host: "y.org".into() },
        &json!([]),
        &json!([{"host": "x.org"}]),
    )
    .unwrap();
    let id = b.file(Kind::EgressBlock, &json!({"host": "x.org"}), "done").unwrap();
    b.decide(id, &Answer::Reject, "keep it", "ada").unwrap();
    let mut archive = AuditArchive::open(&dir.path().join("audit.sqlite")).unwrap();
    assert_eq!(archive.absorb(&dir.path().join("a.sqlite")).unwrap(), 2);
    assert_eq!(archive.absorb(&dir.path().join("b.sqlite")).unwrap(), 1);
    assert_eq!(archive.absorb(&dir.path().join("a.sqlite")).unwrap(), 0, "absorbing again duplicates nothing");
    let entries = archive.entries().unwrap();
    let who: Vec<(&str, &str)> = entries.iter().map(|e| (e.identity.as_str(), e.event.as_str())).collect();
    assert_eq!(who, [("bottle-a", "decision"), ("bottle-a", "route-change"), ("bottle-b", "decision")]);
    // The bottle's own files can go; the archive stays.
    drop((a, b));
    std::fs::remove_file(dir.path().join("a.sqlite")).unwrap();
    assert_eq!(AuditArchive::open(&dir.path().join("audit.sqlite")).unwrap().entries().unwrap().len(), 3);
}

#[test]
fn approved_route_changes_are_kept_for_a_resume_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let s = ProposalStore::open(&path, "bottle-a").unwrap();
    let route =
        routes::file::route_from_json(json!({"host": "wide.example", "matches": [{"methods": ["GET"]}]})).unwrap();
    s.audit_route_change(Some(3), &routes::RouteEdit::Allow(route.clone()), &json!([]), &json!([])).unwrap();
    // A change audited before edits were kept: nothing to apply again.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO audit (identity, at, event, proposal_id, kind, detail) VALUES ('bottle-a', 'then', 'route-change', 4, NULL, '{\"before\": [], \"after\": []}')",
            [],
        )
        .unwrap();
    s.audit_route_change(Some(5), &routes::RouteEdit::Block { host: "old.example".into() }, &json!([]), &json!([]))
        .unwrap();
    drop(s);
    let s = ProposalStore::open(&path, "bottle-a").unwrap();
    let kept = s.kept_route_edits().unwrap();
    let edits: Vec<(Option<i64>, routes::RouteEdit)> = kept.iter().map(|k| (k.proposal_id, k.edit.clone())).collect();
    assert_eq!(
        edits,
        [
            (Some(3), routes::RouteEdit::Allow(route)),
            (Some(5), routes::RouteEdit::Block { host: "old.example".into() })
        ]
    );
    assert_eq!(kept[0].edit.summary(), "+ wide.example (GET)");
    assert_eq!(kept[1].edit.summary(), "- old.example");
    // Applying them again is audited, and is not itself a change to keep.
    s.audit_route_reapplied(&kept[0], Ok(())).unwrap();
    s.audit_route_reapplied(&kept[1], Err("no route for old.example to remove")).unwrap();
    assert_eq!(s.kept_route_edits().unwrap().len(), 2);
    let audit = s.audit().unwrap();
    let last = audit.last().unwrap();
    assert_eq!((last.event.as_str(), last.proposal_id), ("route-reapplied", Some(5)));
    assert_eq!(last.detail["applied"], json!(false));
    assert_eq!(last.detail["reason"], json!("no route for old.example to remove"));
}

#[test]
fn a_proposal_the_store_cannot_read_is_an_error_never_a_null_or_another_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let s = ProposalStore::open(&path, "bottle-a").unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let insert = |kind: &str, payload: &str| {
        raw.execute(
            "INSERT INTO proposals (identity, kind, payload, justification, created_at) VALUES ('bottle-a', ?1, ?2, '', 'now')",
            [kind, payload],
        )
        .unwrap();
        raw.last_insert_rowid()
    };
    let bad_payload = insert("egress-allow", "{\"route\": {\"host\": ");
    let e = s.get(bad_payload).unwrap_err().to_string();
    assert!(e.contains("not JSON"), "{e}");
    let bad_kind = insert("egress-allow-everything", "{}");
    let e = s.get(bad_kind).unwrap_err().to_string();
    assert!(e.contains("unknown proposal kind 'egress-allow-everything'"), "{e}");
    let good = insert("ask-operator", "{\"question\": \"ok?\"}");
    assert_eq!(s.get(good).unwrap().unwrap().payload, json!({"question": "ok?"}));
}
