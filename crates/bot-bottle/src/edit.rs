//! `edit`: open an agent file in the operator's editor, then validate it.

use anyhow::{Context as _, Result, bail};

use crate::cli::EditArgs;
use crate::context::Context;
use crate::terminal;

pub fn edit(ctx: &Context, args: EditArgs) -> Result<i32> {
    let lib = ctx.library()?;
    let entry = lib.agents().into_iter().find(|e| e.name == args.agent);
    let Some(entry) = entry else {
        // Reuse the loader's not-found error, which lists what exists.
        lib.agent(&args.agent)?;
        unreachable!("an agent that is not listed cannot load");
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
            .arg(&entry.path)
            .status()
            .with_context(|| format!("cannot run the editor '{editor}' (set VISUAL or EDITOR)"))?;
        if !status.success() {
            bail!("the editor '{editor}' exited with {status}; {} was not checked", entry.path.display());
        }
        match lib.agent(&args.agent) {
            Ok(agent) => {
                for bottle in &agent.bottles {
                    if let Err(e) = ctx.library()?.bottle(bottle) {
                        crate::context::warn(&format!(
                            "agent '{}' uses bottle '{bottle}', which does not load: {e}",
                            agent.name
                        ));
                    }
                }
                eprintln!("bot-bottle: {} is valid", entry.path.display());
                return Ok(0);
            }
            Err(e) if terminal::interactive() => {
                eprintln!("bot-bottle: {e}");
                if !terminal::confirm("edit again?")? {
                    return Ok(1);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
