//! Existing users' files load unchanged: the fixture home under
//! `tests/fixtures/` is written in the format of the spec's examples.

use std::path::PathBuf;

use manifest::{AgentSource, AuthScheme, EnvValue, Library, ManifestError, OnMatch, PathKind, RepoKey};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn library() -> Library {
    Library::open(&fixtures().join("home"), None, None).unwrap()
}

#[test]
fn listing_scans_names_only_and_lists_broken_files() {
    let lib = library();
    let bottles: Vec<String> = lib.bottles().into_iter().map(|e| e.name).collect();
    assert_eq!(bottles, ["base", "broken", "claude", "codex", "github", "plugin", "strict"]);
    let agents: Vec<String> = lib.agents().into_iter().map(|e| e.name).collect();
    assert_eq!(agents, ["broken", "nobottle", "reviewer", "shell"]);
    // Broken files fail only when used, naming file, line and key.
    let err = lib.agent("broken").unwrap_err().to_string();
    assert!(err.contains("agents/broken.md:"), "{err}");
    let err = lib.bottle_file("broken").unwrap_err();
    assert_eq!(err.key(), Some("envv"));
    let msg = err.to_string();
    assert!(msg.contains("bottles/broken.md:2") && msg.contains("did you mean 'env'"), "{msg}");
}

#[test]
fn agent_with_passthrough_keys() {
    let agent = library().agent("reviewer").unwrap();
    assert_eq!(agent.bottles, ["github", "claude"]);
    assert_eq!(agent.skills, ["review"]);
    assert_eq!(agent.prompt, "You are a careful code reviewer.\nPoint out bugs before style.");
    assert_eq!(agent.git_user.email.as_deref(), Some("reviewer@example.com"));
    assert_eq!(agent.source, AgentSource::Home);
}

#[test]
fn extends_chain_with_diamond_and_list_fold() {
    let mut lib = library();
    let strict = lib.bottle("strict").unwrap();
    // strict extends [github, claude]; github extends base.
    assert_eq!(strict.layers, ["base", "github", "claude", "strict"]);
    assert_eq!(strict.env["LOG_LEVEL"].value, EnvValue::Literal { value: "debug".into() });
    assert_eq!(strict.env["LOG_LEVEL"].origin, "strict");
    assert_eq!(strict.env["EDITOR"].origin, "base");
    assert_eq!(strict.env["GH_USER"].value, EnvValue::Host { name: "GH_USER".into() });
    assert_eq!(
        strict.env["DEPLOY_PASSWORD"].value,
        EnvValue::Ask { prompt: Some("Deploy password for staging".into()) }
    );
    // git user: field by field.
    assert_eq!(strict.git_user.name.as_ref().unwrap().value, "Strict Bot");
    assert_eq!(strict.git_user.email.as_ref().unwrap().origin, "base");
    // repos: same name merges field by field.
    let widgets = &strict.repos["widgets"].value;
    assert_eq!(widgets.url.as_deref(), Some("ssh://git@git.example.com:2222/acme/widgets.git"));
    assert_eq!(widgets.key, Some(RepoKey::Gitea { provisioner_token: "GITEA_TOKEN".into() }));
    assert!(strict.repos.contains_key("gadgets"));
    // routes: concatenated, a later route for the same host replaces in place.
    let hosts: Vec<&str> = strict.routes.iter().map(|r| r.value.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["registry.npmjs.org", "*.pythonhosted.org", "pypi.org", "api.github.com", "github.com", "api.anthropic.com"]
    );
    let gh = &strict.routes[3];
    assert_eq!(gh.origin, "strict");
    assert_eq!(gh.value.auth.as_ref().unwrap().scheme, AuthScheme::Token);
    assert!(gh.value.matches.is_empty());
    assert_eq!(gh.value.dlp.outbound_on_match, Some(OnMatch::Block));
    assert_eq!(strict.log_level(), 2);
    assert_eq!(strict.provider().template, "claude");
    assert_eq!(strict.provider().auth_token.as_deref(), Some("ANTHROPIC_TOKEN"));
}

#[test]
fn routes_keep_matches_dlp_and_git() {
    let mut lib = library();
    let github = lib.bottle("github").unwrap();
    let api = &github.routes.iter().find(|r| r.value.host == "api.github.com").unwrap().value;
    assert_eq!(api.matches.len(), 2);
    assert_eq!(api.matches[0].methods, ["GET", "POST"]);
    assert_eq!(api.matches[0].paths[0].kind, PathKind::PathPrefix);
    assert_eq!(api.matches[1].paths[0].kind, PathKind::RegularExpression);
    assert_eq!(api.matches[0].headers[0].name, "Accept");
    let git = &github.routes.iter().find(|r| r.value.host == "github.com").unwrap().value;
    assert!(git.git.fetch);
    assert!(git.dlp.inbound_detectors.is_empty());
    assert_eq!(git.dlp.outbound_detectors, ["token_patterns", "known_secrets", "crypto"]);
}

#[test]
fn compose_uses_agent_defaults_and_agent_git_overlay() {
    let mut lib = library();
    let m = lib.compose("reviewer", &[]).unwrap();
    assert_eq!(m.bottle_names, ["github", "claude"]);
    let user = m.git_user();
    assert_eq!(user.name.unwrap().value, "Ada Bot");
    let email = user.email.unwrap();
    assert_eq!((email.value.as_str(), email.origin.as_str()), ("reviewer@example.com", "agent reviewer"));
    let m = lib.compose("reviewer", &["claude".into(), "base".into()]).unwrap();
    assert_eq!(m.bottle_names, ["claude", "base"]);
}

#[test]
fn cwd_agents_shadow_home_agents_and_cwd_bottles_are_never_read() {
    let repo = fixtures().join("repo");
    let lib = Library::open(&fixtures().join("home"), Some(&repo), None).unwrap();
    let agent = lib.agent("reviewer").unwrap();
    assert_eq!(agent.source, AgentSource::Cwd);
    assert_eq!(agent.bottles, ["base"]);
    assert!(lib.warnings().iter().any(|w| w.contains(".bot-bottle/bottles") && w.contains("ignoring")));
    assert!(!lib.bottles().iter().any(|e| e.name == "evil"));
    assert!(matches!(lib.bottle_file("evil"), Err(ManifestError::NotFound { .. })));
}
