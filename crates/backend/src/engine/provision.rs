//! What goes into the agent and the sidecar, as data: the agent's
//! environment (none of it secret), the env file that carries the values
//! the bottle gives the agent on purpose (copied in, mode 0600, sourced by
//! the exec wrapper: never in `docker inspect` or a host command line), the
//! files it gets, the exec wrapper, and the isolation self-test with the
//! parse of its result. Pure; `super::bottle` does the I/O.

use std::collections::BTreeMap;

use sidecar::config::{EGRESS_PORT, GATE_PORT, SUPERVISE_PORT};

/// The agent's user and home.
pub const AGENT_USER: &str = "node";
/// The agent's uid (and gid).
pub const AGENT_UID: u64 = 1000;
/// The agent's home.
pub const AGENT_HOME: &str = "/home/node";
/// The agent's working tree.
pub const WORKSPACE: &str = "/workspace";
/// Where the bottle CA goes in the agent (the system store picks it up).
pub const AGENT_CA: &str = "/usr/local/share/ca-certificates/bot-bottle.crt";
/// The system CA bundle every TLS client in the agent reads.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The lines around the bottle CA in [`CA_BUNDLE`]: a launch from a
/// commit finds the earlier launch's CA there and replaces it (two CAs of
/// one bottle under one name, and TLS clients check the leaf against the
/// first they find).
pub const CA_MARK_BEGIN: &str = "# bot-bottle: the bottle CA (replaced at each launch)\n";
/// The line after the bottle CA in [`CA_BUNDLE`].
pub const CA_MARK_END: &str = "# bot-bottle: end of the bottle CA\n";

/// The image's CA bundle with this launch's bottle CA: any CA an earlier
/// launch added (between the marks; or, from before the marks, the
/// `previous_ca` file's text at the bundle's end) is taken out first.
pub fn bundle_with_ca(image_bundle: &[u8], previous_ca: Option<&[u8]>, ca_pem: &str) -> Vec<u8> {
    let mut bundle = image_bundle.to_vec();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    while let Some(start) = find(&bundle, CA_MARK_BEGIN.as_bytes()) {
        let end =
            find(&bundle[start..], CA_MARK_END.as_bytes()).map_or(bundle.len(), |e| start + e + CA_MARK_END.len());
        bundle.drain(start..end);
    }
    if let Some(old) = previous_ca.filter(|c| !c.is_empty())
        && bundle.ends_with(old)
    {
        bundle.truncate(bundle.len() - old.len());
    }
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(CA_MARK_BEGIN.as_bytes());
    bundle.extend_from_slice(ca_pem.as_bytes());
    if !ca_pem.ends_with('\n') {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(CA_MARK_END.as_bytes());
    bundle
}

/// The same as [`bundle_with_ca`], as a shell step run in the agent before
/// the new CA file is written over [`AGENT_CA`] (smolmachines).
pub fn bundle_without_previous_ca_sh() -> String {
    format!(
        "sed -i '/^{}$/,/^{}$/d' {CA_BUNDLE}\n\
         if [ -s {AGENT_CA} ]; then n=$(wc -c < {AGENT_CA}); size=$(wc -c < {CA_BUNDLE}); \
         if [ \"$size\" -ge \"$n\" ] && tail -c \"$n\" {CA_BUNDLE} | cmp -s - {AGENT_CA}; then \
         truncate -s $((size - n)) {CA_BUNDLE}; fi; fi",
        regex_quote(CA_MARK_BEGIN.trim_end()),
        regex_quote(CA_MARK_END.trim_end())
    )
}

/// `text` as a sed basic regular expression matching itself.
fn regex_quote(text: &str) -> String {
    text.chars().map(|c| if "[].*^$/\\".contains(c) { format!("\\{c}") } else { c.to_string() }).collect()
}

/// Append the bottle CA at [`AGENT_CA`] to the bundle, marked (shell).
pub fn bundle_append_ca_sh() -> String {
    format!(
        "{{ echo '{}'; cat {AGENT_CA}; echo '{}'; }} >> {CA_BUNDLE}",
        CA_MARK_BEGIN.trim_end(),
        CA_MARK_END.trim_end()
    )
}

/// The env file (0600, the agent's user).
pub const ENV_FILE: &str = "/home/node/.bot-bottle/env";
/// The prompt file providers read.
pub const PROMPT_FILE: &str = "/home/node/.bot-bottle-prompt.txt";

/// Where the agent reaches the sidecar's servers: loopback, through the
/// shim in its namespace (docker), or the sidecar bundle's IP, the one
/// address its VM may reach (smolmachines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The address (loopback, or the bundle's IP).
    pub host: String,
}

impl Endpoints {
    /// Through the shim, on loopback (docker).
    pub fn loopback() -> Endpoints {
        Endpoints { host: "127.0.0.1".to_string() }
    }

    /// The egress proxy (`HTTPS_PROXY`).
    pub fn proxy(&self) -> String {
        format!("http://{}:{EGRESS_PORT}", self.host)
    }

    /// The supervise MCP endpoint.
    pub fn mcp(&self) -> String {
        format!("http://{}:{SUPERVISE_PORT}/mcp", self.host)
    }

    /// git-gate's smart-HTTP endpoint.
    pub fn gate(&self) -> String {
        format!("http://{}:{GATE_PORT}", self.host)
    }

    /// Hosts reached directly, not through the proxy.
    fn no_proxy(&self) -> String {
        match self.beyond_loopback() {
            Some(host) => format!("localhost,127.0.0.1,{host}"),
            None => "localhost,127.0.0.1".to_string(),
        }
    }

    /// The host, when it is not loopback (the sidecar then also answers to
    /// it by that name).
    pub fn beyond_loopback(&self) -> Option<&str> {
        (self.host != Endpoints::loopback().host).then_some(self.host.as_str())
    }
}

/// The agent's environment: proxies, CA locations, the MCP URL. Nothing
/// here is secret.
pub fn agent_env(at: &Endpoints, extra: &[(&str, &str)]) -> Vec<String> {
    let (proxy, no_proxy) = (at.proxy(), at.no_proxy());
    let mut env = vec![
        format!("HTTP_PROXY={proxy}"),
        format!("HTTPS_PROXY={proxy}"),
        format!("http_proxy={proxy}"),
        format!("https_proxy={proxy}"),
        format!("NO_PROXY={no_proxy}"),
        format!("no_proxy={no_proxy}"),
        format!("MCP_SUPERVISE_URL={}", at.mcp()),
        format!("BOT_BOTTLE_GIT_GATE={}", at.gate()),
        format!("HOME={AGENT_HOME}"),
    ];
    for var in [
        "NODE_EXTRA_CA_CERTS",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "DENO_CERT",
        "CODEX_CA_CERTIFICATE",
    ] {
        // The system bundle, which `update-ca-certificates` extends with the
        // bottle CA; NODE_EXTRA_CA_CERTS adds to Node's own roots.
        let value = if var == "NODE_EXTRA_CA_CERTS" { AGENT_CA } else { "/etc/ssl/certs/ca-certificates.crt" };
        env.push(format!("{var}={value}"));
    }
    env.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// One shell word, single-quoted.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The env file: `export NAME='value'` lines, sourced by [`wrap`].
pub fn env_file(values: &BTreeMap<String, secret::Secret<String>>) -> secret::Secret<String> {
    let mut out = String::new();
    for (k, v) in values {
        out.push_str(&format!("export {k}={}\n", shell_quote(v.expose())));
    }
    secret::Secret::new(out)
}

/// The provider's own files in the agent's home: (path under the home,
/// content) — a plugin's `files` (or those `settings` gave a built-in), and
/// supervise's tools (`mcp__supervise__…`): for Claude Code `~/.claude.json`
/// (onboarding done, the workspace trusted, supervise as its MCP server),
/// for Codex `~/.codex/config.toml`, for pi an extension.
///
/// `login` is a forwarded host login's stand-in (Codex's `auth.json` with
/// placeholder tokens); with it Codex signs in as the host does (the
/// sidecar injects the real token) instead of using an API key.
pub fn provider_files(
    provider: &crate::provider::Provider,
    login: Option<&str>,
    at: &Endpoints,
) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = provider.files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    files.extend(builtin_files(&provider.name, login, at));
    files
}

fn builtin_files(provider: &str, login: Option<&str>, at: &Endpoints) -> Vec<(String, String)> {
    match provider {
        "claude" => {
            let config = serde_json::json!({
                "hasCompletedOnboarding": true,
                "bypassPermissionsModeAccepted": true,
                "projects": {WORKSPACE: {"hasTrustDialogAccepted": true, "hasCompletedProjectOnboarding": true}},
                "mcpServers": {"supervise": {"type": "http", "url": at.mcp()}},
            });
            vec![(".claude.json".to_string(), serde_json::to_string_pretty(&config).unwrap_or_default())]
        }
        "codex" => {
            let mcp = format!("[mcp_servers.supervise]\nurl = \"{}\"\n", at.mcp());
            match login {
                // Signed in as the host is: ChatGPT's backend, through the sidecar.
                Some(auth) => {
                    vec![(".codex/config.toml".to_string(), mcp), (".codex/auth.json".to_string(), auth.to_string())]
                }
                // The OpenAI API through the sidecar with the placeholder
                // key (the route injects the real one).
                None => {
                    let config = format!(
                        "model_provider = \"bottle\"\n\n[model_providers.bottle]\nname = \"OpenAI, through the bottle's sidecar\"\n\
                         base_url = \"https://api.openai.com/v1\"\nenv_key = \"OPENAI_API_KEY\"\nwire_api = \"responses\"\n\n{mcp}"
                    );
                    vec![(".codex/config.toml".to_string(), config)]
                }
            }
        }
        // pi speaks no MCP: an extension of its own registers supervise's
        // tools (it reads MCP_SUPERVISE_URL).
        "pi" => vec![(".pi/agent/extensions/supervise.ts".to_string(), PI_SUPERVISE.to_string())],
        _ => Vec::new(),
    }
}

/// The pi extension that bridges supervise's MCP tools.
const PI_SUPERVISE: &str = include_str!("../../../../images/pi/supervise.ts");

/// A provider command's `~/…` arguments with the agent's home written out
/// (the command is exec'd, not read by a shell).
pub fn expand_home(argv: &[String]) -> Vec<String> {
    argv.iter()
        .map(|a| match a.strip_prefix("~/") {
            Some(rest) => format!("{AGENT_HOME}/{rest}"),
            None => a.clone(),
        })
        .collect()
}

/// Shell that sources the agent's env file when it is there.
fn source_env() -> String {
    format!("[ -r {ENV_FILE} ] && . {ENV_FILE}")
}

/// `argv` run with the env file sourced first.
pub fn wrap(argv: &[String]) -> Vec<String> {
    let mut out =
        vec!["bash".to_string(), "-c".to_string(), format!("{}; exec \"$@\"", source_env()), "bot-bottle".to_string()];
    out.extend(argv.iter().cloned());
    out
}

/// A command started before it is known (the session's, during the
/// launch): the env file sourced, then the argv read from stdin as
/// [`argv_frame`] writes it, then exec'd. Bash's `read` takes a pipe byte
/// by byte, so what follows the frame stays the command's stdin. Stdin
/// closed before a whole frame: exit 125, nothing run.
pub fn wrap_armed() -> Vec<String> {
    vec![
        "bash".to_string(),
        "-c".to_string(),
        format!(
            "{}; IFS= read -r -d '' n || exit 125; a=(); \
             for ((i = 0; i < n; i++)); do IFS= read -r -d '' x || exit 125; a+=(\"$x\"); done; exec \"${{a[@]}}\"",
            source_env()
        ),
        "bot-bottle".to_string(),
    ]
}

/// `argv` as [`wrap_armed`] reads it: the count, then each argument, each
/// ended by NUL. An argument holding NUL cannot be passed to a process.
pub fn argv_frame(argv: &[String]) -> Result<Vec<u8>, String> {
    if argv.is_empty() {
        return Err("the agent's command is empty".to_string());
    }
    let mut frame = format!("{}\0", argv.len()).into_bytes();
    for a in argv {
        if a.contains('\0') {
            return Err(format!("the agent's command has an argument with a NUL byte: {a:?}"));
        }
        frame.extend_from_slice(a.as_bytes());
        frame.push(0);
    }
    Ok(frame)
}

/// The isolation self-test, run in the agent as its user: each check prints
/// `check <name> <pass|fail> <detail>`. A host with no route must get the
/// proxy's 403; a direct IP connection and a DNS lookup must fail (there is
/// no interface but loopback); the introspection endpoint must answer.
pub const SELF_TEST: &str = r#"
check() { printf 'check %s %s %s\n' "$1" "$2" "$3"; }
# What needs nothing of the sidecar starts at once.
{
  if timeout 5 bash -c 'exec 3<>/dev/tcp/1.1.1.1/443' 2>/dev/null; then check direct-ip-fails fail "connected to 1.1.1.1:443"; else check direct-ip-fails pass "no route"; fi
} &
{
  if timeout 5 getent hosts deb.debian.org >/dev/null 2>&1; then check dns-fails fail "resolved deb.debian.org"; else check dns-fails pass "no resolver"; fi
} &
# The shim and the sidecar come up beside the agent: ask the proxy for its
# allowlist until it answers (bounded, 10 s), with bash's own sockets (no
# process per try while the sidecar starts). The answer is the
# introspection check.
proxy=${HTTP_PROXY#http://}; proxy=${proxy%/}
list=
# A shim whose sidecar is not up yet closes at once: no SIGPIPE for that.
trap '' PIPE
for _ in $(seq 1 1000); do
  if exec 3<>"/dev/tcp/${proxy%:*}/${proxy##*:}"; then
    printf 'GET http://_egress.local/allowlist HTTP/1.1\r\nHost: _egress.local\r\nConnection: close\r\n\r\n' >&3
    IFS= read -r -d '' -t 2 list <&3
    exec 3<&-
    case "$list" in "HTTP/1."?" 200"*) break;; esac
  fi 2>/dev/null
  sleep 0.01
done
trap - PIPE
case "$list" in *'"routes"'*) check introspection-answers pass "ok";; *) check introspection-answers fail "no allowlist";; esac
# A refused CONNECT shows in %{http_connect}, a refused request in %{http_code}.
codes=$(curl -s -o /dev/null -w '%{http_code} %{http_connect}' --max-time 20 https://no-route.bot-bottle.invalid/ 2>/dev/null)
case " $codes " in *" 403 "*) check unrouted-host-refused pass "$codes";; *) check unrouted-host-refused fail "got $codes, expected the proxy's 403";; esac
wait
"#;

/// The line that ends the self-test in the agent's log.
pub const SELF_TEST_END: &str = "bot-bottle-self-test-end";

/// The agent container's main process (docker): the self-test, its end
/// marker, then nothing but waiting — the agent's commands are execs.
pub fn agent_main() -> Vec<String> {
    vec!["bash".into(), "-c".into(), format!("{SELF_TEST}\necho {SELF_TEST_END}\nexec sleep infinity")]
}

/// One self-test check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it saw.
    pub detail: String,
}

/// The self-test's verdict on `output`, recorded in `record`
/// (`selftest.json`): an error naming each failed check and why, which is
/// all the operator gets when the failed launch removes the state.
pub fn self_test_verdict(output: &str, record: &std::path::Path) -> Result<(), crate::error::BackendError> {
    let checks = parse_self_test(output);
    let _ = std::fs::write(record, serde_json::to_vec_pretty(&checks).unwrap_or_default());
    let failed: Vec<String> =
        checks.iter().filter(|c| !c.passed).map(|c| format!("{} ({})", c.name, c.detail)).collect();
    if failed.is_empty() {
        return Ok(());
    }
    // Checks that never ran usually mean the image lacks the tools.
    let hint = if checks.iter().any(|c| c.detail == "did not run") {
        " (the agent image needs bash, curl, timeout and getent for the self-test)"
    } else {
        ""
    };
    Err(crate::error::BackendError::SelfTest { failed, hint })
}

/// Parse the self-test's output; every expected check must be present.
pub fn parse_self_test(output: &str) -> Vec<Check> {
    let mut checks: Vec<Check> = output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("check ")?;
            let mut parts = rest.splitn(3, ' ');
            let name = parts.next()?.to_string();
            let passed = parts.next()? == "pass";
            Some(Check { name, passed, detail: parts.next().unwrap_or("").to_string() })
        })
        .collect();
    for expected in ["unrouted-host-refused", "direct-ip-fails", "dns-fails", "introspection-answers"] {
        if !checks.iter().any(|c| c.name == expected) {
            checks.push(Check { name: expected.to_string(), passed: false, detail: "did not run".to_string() });
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    /// The shell steps (smolmachines) do what [`super::bundle_with_ca`]
    /// does (docker), run by a real `sh` on files.
    #[test]
    fn the_shell_steps_replace_the_ca_as_the_rust_one_does() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let (bundle, ca) = (dir.path().join("bundle.crt"), dir.path().join("ca.crt"));
        let run = |old_ca: &str, new_ca: &str, before: &[u8]| {
            std::fs::write(&bundle, before).unwrap();
            std::fs::write(&ca, old_ca).unwrap();
            let script = format!(
                "set -e\n{}\nprintf '%s' '{new_ca}' > {AGENT_CA}\n{}",
                bundle_without_previous_ca_sh(),
                bundle_append_ca_sh()
            )
            .replace(CA_BUNDLE, &bundle.display().to_string())
            .replace(AGENT_CA, &ca.display().to_string());
            let o = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            std::fs::read(&bundle).unwrap()
        };
        let system = b"-----BEGIN CERTIFICATE-----\nSYS\n-----END CERTIFICATE-----\n".to_vec();
        let old = "-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----\n";
        let new = "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n";
        // A first launch (no earlier CA file), a launch from its commit,
        // and one from a commit made before the marks.
        let first = run("", old, &system);
        assert_eq!(first, bundle_with_ca(&system, None, old));
        assert_eq!(run(old, new, &first), bundle_with_ca(&first, Some(old.as_bytes()), new));
        let legacy = [system.as_slice(), old.as_bytes()].concat();
        assert_eq!(run(old, new, &legacy), bundle_with_ca(&legacy, Some(old.as_bytes()), new));
    }

    #[test]
    fn a_launch_from_a_commit_replaces_the_earlier_bottle_ca() {
        use super::bundle_with_ca;
        let system = b"-----BEGIN CERTIFICATE-----\nSYS\n-----END CERTIFICATE-----\n";
        let old = "-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----\n";
        let new = "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n";
        let first = bundle_with_ca(system, None, old);
        assert!(first.starts_with(system));
        // A commit keeps `first`; the next launch finds it.
        let second = bundle_with_ca(&first, Some(old.as_bytes()), new);
        let text = String::from_utf8(second.clone()).unwrap();
        assert!(text.contains("SYS") && text.contains("NEW") && !text.contains("OLD"), "{text}");
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2);
        // Again: still one bottle CA.
        let third = bundle_with_ca(&second, Some(new.as_bytes()), old);
        assert_eq!(String::from_utf8(third).unwrap().matches("BEGIN CERTIFICATE").count(), 2);
        // A commit from before the marks: the old CA appended bare.
        let legacy = [system.as_slice(), old.as_bytes()].concat();
        let text = String::from_utf8(bundle_with_ca(&legacy, Some(old.as_bytes()), new)).unwrap();
        assert!(!text.contains("OLD") && text.contains("NEW"), "{text}");
    }

    use super::*;

    /// The armed wrapper in a real bash: stdin carries the frame, then the
    /// command's own input.
    fn run_armed(stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let w = wrap_armed();
        let mut child = std::process::Command::new(&w[0])
            .args(&w[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn the_armed_wrapper_runs_exactly_the_framed_argv_and_leaves_stdin_to_it() {
        let argv: Vec<String> =
            ["sh", "-c", "printf '[%s]' \"$@\"; cat", "sh", "a b", "", "two\nlines", "$HOME", "'q'"]
                .map(String::from)
                .to_vec();
        let mut stdin = argv_frame(&argv).unwrap();
        stdin.extend_from_slice(b"the command's own input\n");
        let out = run_armed(&stdin);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[a b][][two\nlines][$HOME]['q']the command's own input\n");
        // A frame cut short runs nothing.
        let frame = argv_frame(&["echo".to_string(), "ran".to_string()]).unwrap();
        let cut = &frame[..frame.len() - 1];
        let out = run_armed(cut);
        assert_eq!(out.status.code(), Some(125));
        assert!(out.stdout.is_empty());
        assert!(argv_frame(&[]).is_err());
        assert!(argv_frame(&["a\0b".to_string()]).is_err());
    }

    #[test]
    fn the_env_file_quotes_and_the_wrapper_sources_it() {
        let values = BTreeMap::from([("A".to_string(), secret::Secret::new("it's $HOME".to_string()))]);
        assert_eq!(env_file(&values).expose(), "export A='it'\\''s $HOME'\n");
        let w = wrap(&["echo".into(), "x".into()]);
        assert_eq!(&w[..2], ["bash", "-c"]);
        assert_eq!(&w[3..], ["bot-bottle", "echo", "x"]);
        let lo = Endpoints::loopback();
        assert!(agent_env(&lo, &[]).iter().any(|e| e == "HTTPS_PROXY=http://127.0.0.1:3128"));
        assert!(agent_env(&lo, &[]).iter().all(|e| !e.contains("TOKEN")));
        let bundle = Endpoints { host: "10.213.4.2".into() };
        let env = agent_env(&bundle, &[]);
        assert!(env.iter().any(|e| e == "HTTPS_PROXY=http://10.213.4.2:3128"));
        assert!(env.iter().any(|e| e == "NO_PROXY=localhost,127.0.0.1,10.213.4.2"));
        assert!(env.iter().any(|e| e == "MCP_SUPERVISE_URL=http://10.213.4.2:8422/mcp"));
    }

    #[test]
    fn claude_gets_its_config_and_home_paths_are_written_out() {
        let files = provider_files(&crate::provider::builtin("claude").unwrap(), None, &Endpoints::loopback());
        let config: serde_json::Value = serde_json::from_str(&files[0].1).unwrap();
        assert_eq!(files[0].0, ".claude.json");
        assert_eq!(config["mcpServers"]["supervise"]["url"], "http://127.0.0.1:8422/mcp");
        assert_eq!(config["projects"]["/workspace"]["hasTrustDialogAccepted"], true);
        assert!(provider_files(&crate::provider::builtin("shell").unwrap(), None, &Endpoints::loopback()).is_empty());
        let codex = crate::provider::builtin("codex").unwrap();
        assert!(provider_files(&codex, None, &Endpoints::loopback())[0].1.contains("model_provider = \"bottle\""));
        let signed_in = provider_files(&codex, Some("{}"), &Endpoints::loopback());
        assert!(!signed_in[0].1.contains("model_provider") && signed_in[1].0 == ".codex/auth.json");
        let (pi, _) =
            crate::provider_settings::configure(crate::provider::builtin("pi").unwrap(), &Default::default()).unwrap();
        let paths: Vec<String> =
            provider_files(&pi, None, &Endpoints::loopback()).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, [".pi/agent/settings.json", ".pi/agent/extensions/supervise.ts"]);
        let argv =
            expand_home(&["claude".into(), "--append-system-prompt-file".into(), "~/.bot-bottle-prompt.txt".into()]);
        assert_eq!(argv[2], "/home/node/.bot-bottle-prompt.txt");
    }

    #[test]
    fn a_missing_check_counts_as_failed() {
        let checks = parse_self_test("check unrouted-host-refused pass 403\ncheck dns-fails fail resolved x\n");
        assert_eq!(checks.len(), 4);
        assert!(checks[0].passed);
        assert!(!checks[1].passed);
        assert!(checks.iter().any(|c| c.name == "direct-ip-fails" && !c.passed && c.detail == "did not run"));
    }
}
