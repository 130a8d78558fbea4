//! Properties of the merge fold: child wins, later parent wins, and folding
//! a list equals nesting the folds (either way round).

use std::collections::BTreeMap;

use manifest::{AgentProvider, Bottle, BottleFile, Dlp, EnvValue, GitPolicy, GitUser, Limits, Repo, Route};
use proptest::prelude::*;

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec!["", "x", "y", "z"]).prop_map(String::from))
}

fn route() -> impl Strategy<Value = Route> {
    (prop::sample::select(vec!["a.com", "b.com", "*.c.com", "d.com"]), any::<bool>()).prop_map(|(host, fetch)| Route {
        host: host.to_string(),
        auth: None,
        matches: Vec::new(),
        dlp: Dlp::default(),
        git: GitPolicy { fetch },
        ports: vec![],
        allow_private: false,
    })
}

fn bottle(name: &'static str) -> impl Strategy<Value = Bottle> {
    (
        prop::collection::btree_map(prop::sample::select(vec!["A", "B", "C", "D"]), "[a-z]{0,3}", 0..4),
        (opt_string(), opt_string()),
        prop::collection::btree_map(prop::sample::select(vec!["w", "v"]), (opt_string(), opt_string()), 0..3),
        prop::collection::vec(route(), 0..4),
        prop::option::of(0u8..3),
        prop::option::of(prop::sample::select(vec!["claude", "shell"])),
        (prop::option::of(1u64..4), prop::option::of(64u64..70), prop::option::of(1u64..4)),
    )
        .prop_map(move |(env, (uname, email), repos, routes, log, template, (mem, pids, side))| {
            let mut unique: Vec<Route> = Vec::new();
            for r in routes {
                if !unique.iter().any(|u| u.host == r.host) {
                    unique.push(r);
                }
            }
            Bottle::from_file(&BottleFile {
                name: name.to_string(),
                extends: Vec::new(),
                env: env.into_iter().map(|(k, v)| (k.to_string(), EnvValue::Literal { value: v })).collect(),
                agent_provider: template.map(|t| AgentProvider { template: t.to_string(), ..Default::default() }),
                git_user: GitUser { name: uname, email },
                repos: repos
                    .into_iter()
                    .map(|(k, (url, host_key))| (k.to_string(), Repo { url, host_key, ..Repo::default() }))
                    .collect::<BTreeMap<_, _>>(),
                egress_log: log,
                routes: unique,
                limits: Limits {
                    agent_memory: mem.map(|g| g << 30),
                    agent_pids: pids,
                    sidecar_memory: side.map(|g| g << 30),
                },
            })
        })
}

proptest! {
    #[test]
    fn list_fold_equals_nested_fold(a in bottle("a"), b in bottle("b"), c in bottle("c")) {
        let list = Bottle::merge_all([&a, &b, &c]);
        let mut left = Bottle::merge_all([&a, &b]);
        left.overlay(&c);
        let mut right = a.clone();
        right.overlay(&Bottle::merge_all([&b, &c]));
        prop_assert_eq!(&list, &left);
        prop_assert_eq!(&list, &right);
    }

    #[test]
    fn child_wins(parent in bottle("a"), child in bottle("b")) {
        let merged = Bottle::merge_all([&parent, &child]);
        for (k, v) in &child.env {
            prop_assert_eq!(&merged.env[k], v);
        }
        for (k, v) in &parent.env {
            if !child.env.contains_key(k) {
                prop_assert_eq!(&merged.env[k], v);
            }
        }
        if let Some(p) = &child.agent_provider {
            prop_assert_eq!(merged.agent_provider.as_ref(), Some(p));
        }
        if let Some(l) = &child.egress_log {
            prop_assert_eq!(merged.egress_log.as_ref(), Some(l));
        }
        prop_assert_eq!(merged.limits.agent_memory, child.limits.agent_memory.or(parent.limits.agent_memory));
        prop_assert_eq!(merged.limits.agent_pids, child.limits.agent_pids.or(parent.limits.agent_pids));
        prop_assert_eq!(merged.limits.sidecar_memory, child.limits.sidecar_memory.or(parent.limits.sidecar_memory));
        if let Some(n) = &child.git_user.name {
            prop_assert_eq!(merged.git_user.name.as_ref(), Some(n));
        }
        for r in &child.routes {
            let found: Vec<_> = merged.routes.iter().filter(|m| m.value.host == r.value.host).collect();
            prop_assert_eq!(found, vec![r]);
        }
        for (name, repo) in &child.repos {
            let m = &merged.repos[name].value;
            if repo.value.url.is_some() { prop_assert_eq!(&m.url, &repo.value.url); }
            if repo.value.host_key.is_some() { prop_assert_eq!(&m.host_key, &repo.value.host_key); }
            if repo.value.url.is_none() {
                let from_parent = parent.repos.get(name).and_then(|p| p.value.url.clone());
                prop_assert_eq!(&m.url, &from_parent);
            }
        }
    }

    #[test]
    fn later_parent_wins_and_empty_never_overrides(p1 in bottle("a"), p2 in bottle("b")) {
        let merged = Bottle::merge_all([&p1, &p2]);
        for (k, v) in &p2.env {
            prop_assert_eq!(&merged.env[k].origin, &v.origin);
        }
        prop_assert!(merged.git_user.name.as_ref().is_none_or(|n| !n.value.is_empty()));
        let hosts: Vec<&str> = merged.routes.iter().map(|r| r.value.host.as_str()).collect();
        let mut dedup = hosts.clone();
        dedup.sort();
        dedup.dedup();
        prop_assert_eq!(hosts.len(), dedup.len(), "one route per host");
    }
}
