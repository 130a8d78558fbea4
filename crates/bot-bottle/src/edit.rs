//! `edit`: open an agent or bottle file in the operator's editor, then
//! validate it; reopen it while it is invalid (on a terminal).

use anyhow::{Context as _, Result, bail};

use crate::cli::EditArgs;
use crate::context::Context;
use crate::terminal;

pub fn edit(ctx: &Context, args: EditArgs) -> Result<i32> {
    let mut lib = ctx.library()?;
    let (what, name, path) = match (&args.agent, &args.bottle) {
        (_, Some(bottle)) => {
            let Some(entry) = lib.bottles().into_iter().find(|e| e.name == *bottle) else {
                // The loader's not-found error lists what exists.
                lib.bottle(bottle)?;
                bail!("bottle '{bottle}' is not in {}", ctx.home.root().display());
            };
            ("bottle", bottle.clone(), entry.path)
        }
        (Some(agent), None) => {
            let Some(entry) = lib.agents().into_iter().find(|e| e.name == *agent) else {
                if lib.bottles().iter().any(|e| e.name == *agent) {
                    bail!("'{agent}' is a bottle, not an agent: `bot-bottle edit --bottle {agent}`");
                }
                lib.agent(agent)?;
                bail!("agent '{agent}' is not in {}", ctx.home.root().display());
            };
            ("agent", agent.clone(), entry.path)
        }
        (None, None) => bail!("name an agent, or a bottle with --bottle NAME"),
    };
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    loop {
        let mut words = editor.split_whitespace();
        let program = words.next().unwrap_or("vi");
        let status = std::process::Command::new(program)
            .args(words)
            .arg(&path)
            .status()
            .with_context(|| format!("cannot run the editor '{editor}' (set VISUAL or EDITOR)"))?;
        if !status.success() {
            bail!("the editor '{editor}' exited with {status}; {} was not checked", path.display());
        }
        // A fresh library each round: the file just changed.
        match check(ctx, what, &name) {
            Ok(()) => {
                eprintln!("bot-bottle: {} is valid", path.display());
                return Ok(0);
            }
            // Like visudo: an invalid file is reopened, not left behind.
            Err(e) if terminal::interactive() => {
                eprintln!("bot-bottle: {e}");
                if !terminal::confirm("edit again?")? {
                    return Ok(1);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Load what was edited. An agent whose bottles do not load is valid
/// with a warning (the bottle file is the one to fix); a bottle is loaded
/// with its `extends` chain.
fn check(ctx: &Context, what: &str, name: &str) -> Result<()> {
    let mut lib = ctx.library()?;
    if what == "bottle" {
        lib.bottle(name)?;
        return Ok(());
    }
    let agent = lib.agent(name)?;
    for bottle in &agent.bottles {
        if let Err(e) = ctx.library()?.bottle(bottle) {
            crate::context::warn(&format!("agent '{}' uses bottle '{bottle}', which does not load: {e}", agent.name));
        }
    }
    Ok(())
}
