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
    let agent = match args.agent {
        Some(a) => a,
        None => terminal::text("agent name (lowercase letters, digits, '-'):", None, "--agent NAME")?,
    };
    if !manifest::is_valid_name(&agent) {
        bail!("agent name '{agent}' must match ^[a-z][a-z0-9-]*$ (it is also the file name)");
    }
    let agent_file = lib.agents_dir().join(format!("{agent}.md"));
    if agent_file.exists() {
        bail!("{} already exists; edit it with `bot-bottle edit {agent}`", agent_file.display());
    }
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
    let mut written = Vec::new();
    if !existing.contains(&bottle) {
        let file = lib.bottles_dir().join(format!("{bottle}.md"));
        write_new(&file, &starter_bottle(&args.provider)?)?;
        written.push(file);
    }
    write_new(&agent_file, &format!("---\nbottle: {bottle}\n---\n{}\n", prompt.trim()))?;
    written.push(agent_file);

    // What init writes must load: check it the way `start` will.
    let mut check = ctx.library()?;
    check.compose(&agent, &[]).context("the files init wrote do not load (a bug in bot-bottle; please report it)")?;
    for f in &written {
        eprintln!("bot-bottle: wrote {}", f.display());
    }
    eprintln!(
        "next steps:\n  bot-bottle info {agent}\n  bot-bottle start {agent} --dry-run\n  bot-bottle edit {agent}"
    );
    Ok(0)
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
