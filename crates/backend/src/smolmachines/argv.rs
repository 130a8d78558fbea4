//! Every `smolvm` command line the backend runs, as data: one builder per
//! call, each checked against the CLI surface smolvm 1.32 prints
//! (`smolvm-surface.txt`). Secrets never appear here: the agent's values
//! travel in a 0600 file copied in with `machine cp` and sourced by the exec
//! wrapper, and `-e` carries only the agent's plain environment (proxy
//! addresses, CA paths, placeholders). Pure.

/// Options every call takes: failures as JSON (`{"error":{"code","message"}}`).
fn head(command: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    v.extend(["--error-format".to_string(), "json".to_string()]);
    v
}

fn owned(items: &[&str]) -> impl Iterator<Item = String> {
    items.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter()
}

/// `pack create --image ARCHIVE --output OUT`: a `docker save` archive
/// packed into a `.smolmachine` (no registry).
pub fn pack_image(archive: &str, out: &str) -> Vec<String> {
    let mut v = head(&["pack", "create"]);
    v.extend(owned(&["--image", archive, "--output", out]));
    v
}

/// `pack create --from-vm NAME --output OUT` (`commit`).
pub fn pack_vm(machine: &str, out: &str) -> Vec<String> {
    let mut v = head(&["pack", "create"]);
    v.extend(owned(&["--from-vm", machine, "--output", out]));
    v
}

/// The agent's machine: from the pack, its network the bundle's /32 alone,
/// its resolver the bundle (where nothing answers DNS), its memory at most
/// `mem_mib` MiB (smolvm's `--mem` unit), labelled so that `list active`
/// and `cleanup` find it.
pub fn create(
    machine: &str,
    pack: &str,
    allow_cidr: &str,
    dns: &str,
    mem_mib: u64,
    labels: &[(String, String)],
) -> Vec<String> {
    let mut v = head(&["machine", "create"]);
    v.extend(owned(&["--name", machine, "--from", pack, "--allow-cidr", allow_cidr, "--dns", dns]));
    v.extend(["--mem".to_string(), mem_mib.to_string()]);
    for (k, val) in labels {
        v.extend(["--label".to_string(), format!("{k}={val}")]);
    }
    v
}

/// `machine create --name NAME --from PACK --label K=V…` with no network
/// at all (smolvm's default: no `--net`, nor the flags that imply it):
/// a commit booted only to read its files.
pub fn create_offline(machine: &str, pack: &str, labels: &[(String, String)]) -> Vec<String> {
    let mut v = head(&["machine", "create"]);
    v.extend(owned(&["--name", machine, "--from", pack]));
    for (k, val) in labels {
        v.extend(["--label".to_string(), format!("{k}={val}")]);
    }
    v
}

/// `machine start`.
pub fn start(machine: &str) -> Vec<String> {
    let mut v = head(&["machine", "start"]);
    v.extend(owned(&["--name", machine]));
    v
}

/// `machine stop`.
pub fn stop(machine: &str) -> Vec<String> {
    let mut v = head(&["machine", "stop"]);
    v.extend(owned(&["--name", machine]));
    v
}

/// `machine delete -f` (no prompt: stdin is not a terminal).
pub fn delete(machine: &str) -> Vec<String> {
    let mut v = head(&["machine", "delete"]);
    v.extend(owned(&["--name", machine, "--force"]));
    v
}

/// `machine status --json`.
pub fn status(machine: &str) -> Vec<String> {
    let mut v = head(&["machine", "status"]);
    v.extend(owned(&["--name", machine, "--json"]));
    v
}

/// `machine ls --json`.
pub fn list() -> Vec<String> {
    let mut v = head(&["machine", "ls"]);
    v.push("--json".to_string());
    v
}

/// How a command runs in the machine.
#[derive(Debug, Clone, Default)]
pub struct Exec<'a> {
    /// `uid` or a name; none: the machine's default (root).
    pub user: Option<&'a str>,
    /// The working directory; none: the machine's default.
    pub workdir: Option<&'a str>,
    /// Plain environment only: never a secret.
    pub env: &'a [String],
    /// Give the command a terminal.
    pub tty: bool,
    /// Pass stdin through.
    pub stdin: bool,
}

/// `machine exec` of `argv`, as `how` says.
pub fn exec(machine: &str, how: &Exec<'_>, argv: &[String]) -> Vec<String> {
    let mut v = head(&["machine", "exec"]);
    v.extend(owned(&["--name", machine]));
    if let Some(u) = how.user {
        v.extend(owned(&["--user", u]));
    }
    if let Some(w) = how.workdir {
        v.extend(owned(&["--workdir", w]));
    }
    for e in how.env {
        v.extend(["--env".to_string(), e.clone()]);
    }
    if how.stdin {
        v.push("--interactive".to_string());
    }
    if how.tty {
        v.push("--tty".to_string());
    }
    v.push("--".to_string());
    v.extend(argv.iter().cloned());
    v
}

/// `machine cp HOST NAME:GUEST` with the file's mode and owner.
pub fn copy_in(machine: &str, host: &str, guest: &str, mode: u32, uid: u32) -> Vec<String> {
    let mut v = head(&["machine", "cp"]);
    v.extend([
        "--mode".to_string(),
        format!("{mode:o}"),
        "--uid".to_string(),
        uid.to_string(),
        "--gid".to_string(),
        uid.to_string(),
        host.to_string(),
        format!("{machine}:{guest}"),
    ]);
    v
}

/// One command of the recorded surface: its options (and whether each
/// takes a value) and its positionals.
#[derive(Debug)]
pub struct Command {
    /// The command's words (`machine create`).
    pub name: String,
    /// (spellings, takes a value)
    pub options: Vec<(Vec<String>, bool)>,
    /// Their shape (`SRC DST`, `-- COMMAND...`, or none).
    pub positionals: String,
}

/// The recorded surface.
pub const SURFACE: &str = include_str!("smolvm-surface.txt");

/// The recorded surface, parsed.
pub fn surface() -> Vec<Command> {
    SURFACE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            // `name | options | positionals`; an option's spellings are
            // joined by a bare `|` (`-n|--name=`), fields by ` |`.
            let mut fields = l.split(" |").map(str::trim);
            let name = fields.next()?.to_string();
            let options = fields.next()?;
            let positionals = fields.next().unwrap_or("").to_string();
            let options = options
                .split_whitespace()
                .map(|o| {
                    let value = o.ends_with('=');
                    (o.trim_end_matches('=').split('|').map(str::to_string).collect(), value)
                })
                .collect();
            Some(Command { name, options, positionals })
        })
        .collect()
}

/// Check one argv (without the binary) against the surface: a known
/// command, known options with their values, then positionals.
pub fn conforms(argv: &[String]) -> Result<(), String> {
    let commands = surface();
    let command = commands
        .iter()
        .find(|c| {
            let words: Vec<&str> = c.name.split(' ').collect();
            argv.len() >= words.len() && argv[..words.len()].iter().zip(&words).all(|(a, w)| a == w)
        })
        .ok_or_else(|| format!("unknown command: {argv:?}"))?;
    let mut rest = argv[command.name.split(' ').count()..].iter();
    let mut positionals = Vec::new();
    while let Some(a) = rest.next() {
        if a == "--" {
            positionals.push(a.clone());
            positionals.extend(rest.by_ref().cloned());
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            let (flag, inline) = match a.split_once('=') {
                Some((f, _)) => (f, true),
                None => (a.as_str(), false),
            };
            let (_, takes) = command
                .options
                .iter()
                .find(|(names, _)| names.iter().any(|n| n == flag))
                .ok_or_else(|| format!("`{}` has no option {flag}", command.name))?;
            if *takes && !inline && rest.next().is_none() {
                return Err(format!("`{} {flag}` needs a value", command.name));
            }
            continue;
        }
        positionals.push(a.clone());
    }
    let shape = command.positionals.as_str();
    let ok = match shape {
        "" => positionals.is_empty(),
        "SRC DST" => positionals.len() == 2,
        "COMMAND..." => !positionals.is_empty(),
        "-- COMMAND..." => positionals.is_empty() || positionals[0] == "--",
        _ => false,
    };
    if !ok {
        return Err(format!("`{}` takes {shape:?}, got {positionals:?}", command.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builder_conforms_to_the_recorded_surface() {
        let env = vec!["HTTPS_PROXY=http://10.213.0.2:3128".to_string()];
        let labels = vec![("dev.bot-bottle.identity".to_string(), "x".to_string())];
        let all = [
            pack_image("/tmp/a.tar", "/c/x.smolmachine"),
            pack_vm("bot-bottle-x", "/s/commit.smolmachine"),
            create("bot-bottle-x", "/c/x.smolmachine", "10.213.0.2/32", "10.213.0.2", 8192, &labels),
            start("bot-bottle-x"),
            stop("bot-bottle-x"),
            delete("bot-bottle-x"),
            status("bot-bottle-x"),
            list(),
            exec(
                "bot-bottle-x",
                &Exec { user: Some("1000"), workdir: Some("/workspace"), env: &env, tty: true, stdin: true },
                &["bash".into(), "-l".into()],
            ),
            exec("bot-bottle-x", &Exec::default(), &["true".into()]),
            copy_in("bot-bottle-x", "/tmp/home.tar", "/tmp/home.tar", 0o600, 0),
        ];
        for argv in &all {
            conforms(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        assert_eq!(all[10][all[10].len() - 2..], ["/tmp/home.tar", "bot-bottle-x:/tmp/home.tar"]);
    }

    #[test]
    fn the_check_refuses_what_smolvm_would() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(conforms(&v("machine create bot-bottle-x")).unwrap_err().contains("takes"));
        assert!(conforms(&v("machine exec --name x --bogus -- true")).unwrap_err().contains("--bogus"));
        assert!(conforms(&v("machine exec --name x")).is_err());
        assert!(conforms(&v("machine cp a")).is_err());
        assert!(conforms(&v("machine stop --name")).unwrap_err().contains("needs a value"));
        assert!(conforms(&v("machine teleport --name x")).unwrap_err().contains("unknown command"));
        assert!(conforms(&v("machine ls --json")).is_ok());
    }
}
