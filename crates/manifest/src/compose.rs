//! Composition: the effective bottle that a fold of bottle files produces.
//!
//! One fold serves both `extends` (parents left to right, then the child) and
//! the ordered bottle list chosen at `start`. Every value remembers which
//! bottle set it, so `info` and the preflight can show origins.
//!
//! | field | merge |
//! |---|---|
//! | `env` | map merge, later wins |
//! | `git-gate.user` | field by field, later non-empty wins |
//! | `git-gate.repos` | union by name; same name merges field by field, later wins |
//! | `egress.routes` | concatenated; a later route for the same host replaces the earlier one in place |
//! | `egress.log`, `agent_provider` | later wins |
//! | `limits` | field by field, later wins |

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bottle::{AgentProvider, BottleFile};
use crate::env::EnvValue;
use crate::gitgate::{GitUser, Repo};
use crate::route::Route;

/// A value and the bottle (or agent) that set it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// `bottle NAME` or `agent NAME`.
    pub origin: String,
}

impl<T> Sourced<T> {
    /// `value` as set by `origin`.
    pub fn new(value: T, origin: &str) -> Self {
        Sourced { value, origin: origin.to_string() }
    }
}

/// `git-gate.user` with the origin of each field.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SourcedGitUser {
    /// `git-gate.user.name`.
    pub name: Option<Sourced<String>>,
    /// `git-gate.user.email`.
    pub email: Option<Sourced<String>>,
}

impl SourcedGitUser {
    /// Overlay `user` field by field; an empty string does not override.
    pub fn overlay(&mut self, user: &GitUser, origin: &str) {
        for (slot, value) in [(&mut self.name, &user.name), (&mut self.email, &user.email)] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                *slot = Some(Sourced::new(v.clone(), origin));
            }
        }
    }
}

/// The effective bottle: the fold of one or more bottle files.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Bottle {
    /// Every file applied, in order (parents before children).
    pub layers: Vec<String>,
    /// `env`, each with the bottle that set it.
    pub env: BTreeMap<String, Sourced<EnvValue>>,
    /// `agent_provider`, from the last bottle that sets it.
    pub agent_provider: Option<Sourced<AgentProvider>>,
    /// `git-gate.user`, field by field.
    pub git_user: SourcedGitUser,
    /// `git-gate.repos`, each merged field by field.
    pub repos: BTreeMap<String, Sourced<Repo>>,
    /// `egress.log`.
    pub egress_log: Option<Sourced<u8>>,
    /// `egress.routes`, in order.
    pub routes: Vec<Sourced<Route>>,
    /// `limits`, field by field.
    pub limits: crate::Limits,
}

impl Bottle {
    /// One file's own keys, ignoring its `extends`.
    pub fn from_file(file: &BottleFile) -> Bottle {
        let origin = file.name.as_str();
        let mut git_user = SourcedGitUser::default();
        git_user.overlay(&file.git_user, origin);
        Bottle {
            layers: vec![file.name.clone()],
            env: file.env.iter().map(|(k, v)| (k.clone(), Sourced::new(v.clone(), origin))).collect(),
            agent_provider: file.agent_provider.clone().map(|p| Sourced::new(p, origin)),
            git_user,
            repos: file.repos.iter().map(|(k, v)| (k.clone(), Sourced::new(v.clone(), origin))).collect(),
            egress_log: file.egress_log.map(|l| Sourced::new(l, origin)),
            routes: file.routes.iter().map(|r| Sourced::new(r.clone(), origin)).collect(),
            limits: file.limits,
        }
    }

    /// Apply `later` on top of `self` (the merge table above).
    pub fn overlay(&mut self, later: &Bottle) {
        self.layers.extend(later.layers.iter().cloned());
        for (k, v) in &later.env {
            self.env.insert(k.clone(), v.clone());
        }
        if later.agent_provider.is_some() {
            self.agent_provider = later.agent_provider.clone();
        }
        for (slot, value) in
            [(&mut self.git_user.name, &later.git_user.name), (&mut self.git_user.email, &later.git_user.email)]
        {
            if value.is_some() {
                *slot = value.clone();
            }
        }
        for (name, repo) in &later.repos {
            match self.repos.get_mut(name) {
                None => {
                    self.repos.insert(name.clone(), repo.clone());
                }
                Some(existing) => {
                    let (e, l) = (&mut existing.value, &repo.value);
                    if l.url.is_some() {
                        e.url = l.url.clone();
                    }
                    if l.host_key.is_some() {
                        e.host_key = l.host_key.clone();
                    }
                    if l.key.is_some() {
                        e.key = l.key.clone();
                    }
                    if l.allow_force_push.is_some() {
                        e.allow_force_push = l.allow_force_push;
                    }
                    if l.allow_delete.is_some() {
                        e.allow_delete = l.allow_delete;
                    }
                    existing.origin = repo.origin.clone();
                }
            }
        }
        if later.egress_log.is_some() {
            self.egress_log = later.egress_log.clone();
        }
        self.limits.overlay(&later.limits);
        for route in &later.routes {
            match self.routes.iter_mut().find(|r| r.value.host == route.value.host) {
                Some(existing) => *existing = route.clone(),
                None => self.routes.push(route.clone()),
            }
        }
    }

    /// Fold bottles left to right.
    pub fn merge_all<'a>(bottles: impl IntoIterator<Item = &'a Bottle>) -> Bottle {
        let mut out = Bottle::default();
        for b in bottles {
            out.overlay(b);
        }
        out
    }

    /// The provider, with defaults when no bottle set one.
    pub fn provider(&self) -> AgentProvider {
        self.agent_provider.as_ref().map(|p| p.value.clone()).unwrap_or_default()
    }

    /// `egress.log`, default 0.
    pub fn log_level(&self) -> u8 {
        self.egress_log.as_ref().map(|l| l.value).unwrap_or(0)
    }
}
