//! Every malformed case the spec names: a one-line error naming the file, the
//! key and the fix.

use std::path::Path;

use manifest::{AgentSource, Library, ManifestError, parse_agent_text, parse_bottle_text};

const HOST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbXo7pgbcUKp1nC1ZbWyhLiSpmXd6mAeWUwxUaTeTa3";

fn bottle_err(yaml: &str) -> ManifestError {
    let text = format!("---\n{yaml}\n---\nbody\n");
    parse_bottle_text("b", Path::new("/home/u/.bot-bottle/bottles/b.md"), &text).expect_err(yaml)
}

/// (frontmatter, key the error names, words the message must contain)
const BAD_BOTTLES: &[(&str, &str, &[&str])] = &[
    ("envv: {}", "envv", &["unknown key(s) [envv]", "allowed keys are", "did you mean 'env'"]),
    ("git: {}", "git", &["removed key", "git-gate.repos", "git-gate section of bot-bottle's README"]),
    ("cred_proxy: {}", "cred_proxy", &["egress.routes[].auth"]),
    ("runtime: runsc", "runtime", &["gVisor is detected"]),
    ("git_user: {}", "git_user", &["git-gate.user"]),
    ("egress_proxy: {}", "egress_proxy", &["rename it to `egress`"]),
    ("supervise: true", "supervise", &["always on"]),
    ("env: [A, B]", "env", &["must be a map"]),
    ("env: {A: [1]}", "env.A", &["must be a string"]),
    ("env: {1A: x}", "env.1A", &["not a valid variable name"]),
    ("env: {A: '${}'}", "env.A", &["host variable"]),
    ("extends: {a: b}", "extends", &["name or a list of names"]),
    ("extends: Not_A_Name", "extends", &["not a valid name"]),
    (
        "agent_provider: {template: claude, auth_token: X, forward_host_credentials: true}",
        "agent_provider",
        &["choose one"],
    ),
    ("agent_provider: {templat: claude}", "agent_provider.templat", &["did you mean 'template'"]),
    (
        "agent_provider: {auth_token: sk-ant-abc123}",
        "agent_provider.auth_token",
        &["NAME of a host environment variable"],
    ),
    ("agent_provider: {forward_host_credentials: yes}", "agent_provider.forward_host_credentials", &["true or false"]),
    ("egress: {log: 3}", "egress.log", &["0, 1 or 2"]),
    ("egress: {routes: [{auth: {scheme: Bearer, token_ref: T}}]}", "egress.routes[0].host", &["needs one"]),
    ("egress: {routes: [{host: a.com, role: provider}]}", "egress.routes[0].role", &["removed key"]),
    ("egress: {routes: [{host: a.com, auth: {}}]}", "egress.routes[0].auth", &["is empty"]),
    (
        "egress: {routes: [{host: a.com, auth: {scheme: Basic, token_ref: T}}]}",
        "egress.routes[0].auth.scheme",
        &["Bearer or token"],
    ),
    ("egress: {routes: [{host: a.com, auth: {scheme: Bearer}}]}", "egress.routes[0].auth.token_ref", &["token_ref"]),
    (
        "egress: {routes: [{host: a.com, auth: {scheme: Bearer, token_ref: ghp_x-y}}]}",
        "egress.routes[0].auth.token_ref",
        &["NAME"],
    ),
    ("egress: {routes: [{host: 'https://a.com/x'}]}", "egress.routes[0].host", &["bare host name"]),
    ("egress: {routes: [{host: a.com}, {host: A.com}]}", "egress.routes[1].host", &["one route per host"]),
    (
        "egress: {routes: [{host: a.com, matches: [{paths: [{type: Glob, value: /x}]}]}]}",
        "egress.routes[0].matches[0].paths[0].type",
        &["PathPrefix, Exact or RegularExpression"],
    ),
    (
        "egress: {routes: [{host: a.com, matches: [{paths: [{type: regex, value: '('}]}]}]}",
        "egress.routes[0].matches[0].paths[0].value",
        &["regular expression"],
    ),
    (
        "egress: {routes: [{host: a.com, matches: [{paths: [{type: prefix, value: x}]}]}]}",
        "egress.routes[0].matches[0].paths[0].value",
        &["start with '/'"],
    ),
    (
        "egress: {routes: [{host: a.com, matches: [{methods: ['GE T']}]}]}",
        "egress.routes[0].matches[0].methods[0]",
        &["HTTP method"],
    ),
    (
        "egress: {routes: [{host: a.com, dlp: {outbound_detectors: [tokens]}}]}",
        "egress.routes[0].dlp.outbound_detectors[0]",
        &["unknown detector", "token_patterns"],
    ),
    (
        // The original's name for the inbound detector is not an outbound one.
        "egress: {routes: [{host: a.com, dlp: {outbound_detectors: [naive_injection_detection]}}]}",
        "egress.routes[0].dlp.outbound_detectors[0]",
        &["unknown detector 'naive_injection_detection'"],
    ),
    (
        "egress: {routes: [{host: a.com, dlp: {outbound_on_match: allow}}]}",
        "egress.routes[0].dlp.outbound_on_match",
        &["supervise, redact or block"],
    ),
    (
        "egress: {routes: [{host: a.com, dlp: {inbound_detectors: true}}]}",
        "egress.routes[0].dlp.inbound_detectors",
        &["or false"],
    ),
    ("egress: {routes: [{host: a.com, git: {push: true}}]}", "egress.routes[0].git.push", &["git-gate"]),
    ("egress: {routes: [{host: a.com, ports: [443, 0]}]}", "egress.routes[0].ports[1]", &["port (1-65535)"]),
    ("egress: {routes: [{host: a.com, ports: [9000-8000]}]}", "egress.routes[0].ports[0]", &["or a range"]),
    ("egress: {routes: [{host: a.com, ports: 443}]}", "egress.routes[0].ports", &["must be a list"]),
    ("git-gate: {repos: {w: {url: 'https://github.com/a/w.git', host_key: x}}}", "git-gate.repos.w.url", &["SSH only"]),
    (
        "git-gate: {repos: {w: {url: 'git@h:a/w.git', host_key: 'not a key'}}}",
        "git-gate.repos.w.host_key",
        &["ssh-keyscan"],
    ),
    (
        "git-gate: {repos: {w: {url: 'git@h:a/w.git', allow_force_push: yes please}}}",
        "git-gate.repos.w.allow_force_push",
        &["true or false"],
    ),
    (
        "git-gate: {repos: {w: {url: 'git@h:a/w.git', key: {provider: vault}}}}",
        "git-gate.repos.w.key.provider",
        &["static or gitea"],
    ),
    (
        "git-gate: {repos: {w: {url: 'git@h:a/w.git', key: {provider: static}}}}",
        "git-gate.repos.w.key.path",
        &["needs `path`"],
    ),
    ("git-gate: {repos: {Widgets: {url: 'git@h:a/w.git'}}}", "git-gate.repos.Widgets", &["repo name"]),
    ("git-gate: {user: {name: A, mail: b}}", "git-gate.user.mail", &["did you mean 'email'"]),
    ("a: &x 1", "", &["anchors"]),
    ("a: !!str 1", "", &["tags"]),
    ("[1, 2]", "", &["must be a map"]),
];

#[test]
fn every_malformed_bottle_names_file_key_and_fix() {
    for (yaml, key, words) in BAD_BOTTLES {
        let err = bottle_err(yaml);
        let msg = err.to_string();
        assert!(msg.starts_with("/home/u/.bot-bottle/bottles/b.md:"), "{yaml}: {msg}");
        assert!(!msg.contains('\n'), "{yaml}: multi-line: {msg}");
        assert_eq!(err.key().unwrap_or(""), *key, "{yaml}: {msg}");
        for w in *words {
            assert!(msg.contains(w), "{yaml}: expected '{w}' in: {msg}");
        }
    }
}

#[test]
fn errors_point_at_the_file_line() {
    let msg = bottle_err("env:\n  A: x\negress:\n  log: 7").to_string();
    assert!(msg.starts_with("/home/u/.bot-bottle/bottles/b.md:5:"), "{msg}");
}

#[test]
fn secrets_in_values_never_appear_in_errors() {
    // A token pasted where a variable name belongs is refused without echoing it.
    let err = bottle_err("agent_provider: {auth_token: sk-ant-api03-SECRETSECRET}").to_string();
    assert!(!err.contains("SECRETSECRET"), "{err}");
    let err = bottle_err("egress: {routes: [{host: a.com, auth: {scheme: Bearer, token_ref: ghp-SECRETSECRET}}]}")
        .to_string();
    assert!(!err.contains("SECRETSECRET"), "{err}");
}

#[test]
fn frontmatter_shape() {
    let p = Path::new("/x/b.md");
    let e = parse_bottle_text("b", p, "env: {}\n").unwrap_err().to_string();
    assert!(e.contains("must start with a '---'"), "{e}");
    let e = parse_bottle_text("b", p, "---\nenv: {}\n").unwrap_err().to_string();
    assert!(e.contains("no closing '---'"), "{e}");
    let e = parse_bottle_text("b", p, "---\na: 1\n...\n--- \n").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("unknown key") || e.contains("more than one"), "{e}");
    assert!(parse_bottle_text("b", p, "---\n---\n").is_ok());
    assert!(parse_bottle_text("b", p, "---\nenv:\negress:\n---\n").is_ok());
}

#[test]
fn malformed_agents() {
    let p = Path::new("/h/agents/a.md");
    let cases: &[(&str, &str, &str)] = &[
        ("git-gate: {repos: {}}", "git-gate.repos", "credentials stay in bottles"),
        ("skills: [../../etc]", "skills[0]", "directory name"),
        ("bottle: {a: 1}", "bottle", "name or a list of names"),
        ("bottel: dev", "bottel", "did you mean 'bottle'"),
        ("git: {}", "git", "git-gate.repos"),
    ];
    for (yaml, key, word) in cases {
        let err = parse_agent_text("a", p, AgentSource::Home, &format!("---\n{yaml}\n---\n")).expect_err(yaml);
        assert_eq!(err.key(), Some(*key), "{yaml}: {err}");
        assert!(err.to_string().contains(word), "{yaml}: {err}");
        assert!(err.to_string().starts_with("/h/agents/a.md:"), "{err}");
    }
}

fn home_with(bottles: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bottles")).unwrap();
    for (name, yaml) in bottles {
        std::fs::write(dir.path().join("bottles").join(format!("{name}.md")), format!("---\n{yaml}\n---\n")).unwrap();
    }
    dir
}

#[test]
fn extends_errors() {
    let home = home_with(&[
        ("a", "extends: b"),
        ("b", "extends: [c]"),
        ("c", "extends: a"),
        ("self", "extends: self"),
        ("orphan", "extends: nope"),
    ]);
    let mut lib = Library::open(home.path(), None, None).unwrap();
    let e = lib.bottle("a").unwrap_err().to_string();
    assert!(e.contains("cycle: a -> b -> c -> a"), "{e}");
    assert!(e.contains("bottles/c.md"), "{e}");
    let e = lib.bottle("self").unwrap_err().to_string();
    assert!(e.contains("extends itself"), "{e}");
    let e = lib.bottle("orphan").unwrap_err().to_string();
    assert!(
        e.contains("extends 'nope', which does not exist") && e.contains("available bottles: a, b, c, self"),
        "{e}"
    );
    let e = lib.bottle("missing").unwrap_err().to_string();
    assert!(e.contains("no bottle named 'missing'") && e.contains("available bottles: a, b, c, orphan, self"), "{e}");
}

#[test]
fn diamond_resolves_and_incomplete_repos_fail_when_used() {
    let repo = format!("git-gate: {{repos: {{w: {{url: 'git@h:a/w.git', host_key: '{HOST_KEY}'}}}}}}");
    let home = home_with(&[
        ("root", "env: {A: root, B: root}"),
        ("left", "extends: root\nenv: {A: left}"),
        ("right", "extends: root\nenv: {B: right}"),
        ("child", "extends: [left, right]"),
        ("partial", "git-gate: {repos: {w: {host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbXo7pgbcUKp1nC1Zb'}}}"),
        // No host_key: the original's spelling; pinned on first use at launch.
        ("tofu", "git-gate: {repos: {w: {url: 'git@h:a/w.git'}}}"),
        ("whole", &repo),
        ("completes", "extends: partial\ngit-gate: {repos: {w: {url: 'git@h:a/w.git', allow_delete: true}}}"),
    ]);
    let mut lib = Library::open(home.path(), None, None).unwrap();
    let child = lib.bottle("child").unwrap();
    assert_eq!(child.layers, ["root", "left", "root", "right", "child"]);
    // right's fold re-applies root, then right: later parent wins.
    assert_eq!(child.env["A"].origin, "root");
    assert_eq!(child.env["B"].origin, "right");
    let e = lib.bottle("partial").unwrap_err();
    assert_eq!(e.key(), Some("git-gate.repos.w.url"));
    assert_eq!(lib.bottle("tofu").unwrap().repos["w"].value.host_key, None);
    assert!(lib.bottle("whole").is_ok());
    let completes = lib.bottle("completes").unwrap();
    // The ref policy is off unless a layer turns it on, field by field.
    assert_eq!(completes.repos["w"].value.allow_force_push, None);
    assert_eq!(completes.repos["w"].value.allow_delete, Some(true));
}

#[test]
fn legacy_json_points_to_the_new_format() {
    let user = tempfile::tempdir().unwrap();
    std::fs::write(user.path().join("bot-bottle.json"), "{}").unwrap();
    let e = Library::open(&user.path().join(".bot-bottle"), None, Some(user.path())).err().unwrap().to_string();
    assert!(e.contains("bot-bottle.json") && e.contains("bottles/<name>.md"), "{e}");
    std::fs::create_dir(user.path().join(".bot-bottle")).unwrap();
    assert!(Library::open(&user.path().join(".bot-bottle"), None, Some(user.path())).is_ok());
}
