//! `init`: write a new agent (and a starter bottle when none exists) as
//! Markdown under `$BOT_BOTTLE_HOME`, check that it loads, print next steps.
//! Every answer can also be given as a flag, for scripts.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use crate::cli::InitArgs;
use crate::context::Context;
use crate::terminal;

pub fn init(ctx: &Context, args: InitArgs) -> Result<i32> {
    let lib = ctx.library()?;
    let asking = args.agent.is_none();
    let mut agent = args.agent;
    // On a terminal a bad or taken name is asked again; a flag is refused.
    let (agent, agent_file) = loop {
        let name = match agent.take() {
            Some(a) => a,
            None => terminal::text("agent name (lowercase letters, digits, '-'):", None, "--agent NAME")?,
        };
        let file = lib.agents_dir().join(format!("{name}.md"));
        let problem = if !manifest::is_valid_name(&name) {
            Some(format!("agent name '{name}' must match ^[a-z][a-z0-9-]*$ (it is also the file name)"))
        } else if file.exists() {
            Some(format!("{} already exists; edit it with `bot-bottle edit {name}`", file.display()))
        } else {
            None
        };
        match problem {
            None => break (name, file),
            Some(p) if asking => eprintln!("bot-bottle: {p}"),
            Some(p) => bail!(p),
        }
    };
    let prompt = match args.prompt {
        Some(p) => p,
        None => terminal::text(
            "system prompt (one line; edit the file for more):",
            Some("You are a careful software engineer."),
            "--prompt TEXT",
        )?,
    };
    let existing: Vec<String> = lib.bottles().into_iter().map(|e| e.name).collect();
    let bottle = match args.bottle {
        Some(b) => b,
        None if existing.is_empty() => {
            terminal::text("name of the starter bottle to create:", Some("dev"), "--bottle NAME")?
        }
        None => terminal::pick("default bottle:", existing.clone(), "--bottle NAME")?,
    };
    if !manifest::is_valid_name(&bottle) {
        bail!("bottle name '{bottle}' must match ^[a-z][a-z0-9-]*$ (it is also the file name)");
    }
    // A name one typo away from a bottle that exists is that typo, not a
    // new bottle.
    if !existing.contains(&bottle) {
        let names: Vec<&str> = existing.iter().map(String::as_str).collect();
        if let Some(near) = manifest::closest(&bottle, &names) {
            bail!(
                "there is no bottle '{bottle}'; did you mean '{near}'? (init writes a new starter bottle only under a name no bottle is close to)"
            );
        }
    }
    let mut written = Vec::new();
    let mut provider = None;
    if !existing.contains(&bottle) {
        let chosen = match args.provider {
            Some(p) => p,
            None if terminal::interactive() => terminal::pick(
                "provider of the starter bottle:",
                PROVIDERS.iter().map(|p| p.to_string()).collect(),
                "--provider",
            )?,
            None => "claude".to_string(),
        };
        let file = lib.bottles_dir().join(format!("{bottle}.md"));
        write_new(&file, &starter_bottle(&chosen)?)?;
        written.push(file);
        provider = Some(chosen);
    }
    write_new(&agent_file, &format!("---\nbottle: {bottle}\n---\n{}\n", prompt.trim()))?;
    written.push(agent_file);

    // What init writes must load: check it the way `start` will.
    let mut check = ctx.library()?;
    check.compose(&agent, &[]).context("the files init wrote do not load (a bug in bot-bottle; please report it)")?;
    for f in &written {
        eprintln!("bot-bottle: wrote {}", f.display());
    }
    let mut steps = String::from("next steps:\n");
    if let Some(login) = provider.as_deref().and_then(login_step) {
        steps.push_str(&format!("  {login}\n"));
    }
    steps.push_str(&format!(
        "  bot-bottle info {agent}\n  bot-bottle start {agent} --dry-run\n  bot-bottle edit {agent}"
    ));
    eprintln!("{steps}");
    Ok(0)
}

/// The providers a starter bottle can have, the default first.
const PROVIDERS: &[&str] = &["claude", "codex", "pi", "shell"];

/// What the user does on this host before the first start, for the
/// credential the starter bottle names.
fn login_step(provider: &str) -> Option<&'static str> {
    match provider {
        "claude" => Some(
            "export CLAUDE_CODE_OAUTH_TOKEN=...   (from `claude setup-token`; the bottle reads it at start, the agent gets a placeholder)",
        ),
        "codex" => {
            Some("codex login   (on this host: the bottle forwards ~/.codex/auth.json's token through the sidecar)")
        }
        "pi" => Some("export PI_MODEL_TOKEN=...   (your model provider's API key; the agent gets a placeholder)"),
        _ => None,
    }
}

fn starter_bottle(provider: &str) -> Result<String> {
    let provider_block = match provider {
        "claude" => {
            "agent_provider:\n  template: claude\n  auth_token: CLAUDE_CODE_OAUTH_TOKEN   # name of a host variable; the agent gets a placeholder\n"
        }
        "codex" => {
            "agent_provider:\n  template: codex\n  forward_host_credentials: true   # uses ~/.codex/auth.json on this host\n"
        }
        "pi" => {
            "agent_provider:\n  template: pi\n  auth_token: PI_MODEL_TOKEN   # name of a host variable; the agent gets a placeholder\n  settings:\n    provider: anthropic   # pi's model provider: anthropic, openai, openrouter, groq, xai, deepseek, mistral, cerebras\n"
        }
        "shell" => "agent_provider:\n  template: shell\n",
        other => {
            bail!("--provider '{other}' is not a built-in provider: use claude, codex, pi or shell")
        }
    };
    Ok(format!(
        "---\n{provider_block}egress:\n  log: 1\n  routes:\n    - host: registry.npmjs.org\n    - host: pypi.org\n    - host: files.pythonhosted.org\n---\n\
         Starter bottle written by `bot-bottle init`. Add `env`, `git-gate` repos and more\n\
         `egress.routes` as the agent needs them; everything else stays blocked.\n"
    ))
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
