//! `list` and `info`: what can be started, what runs, and what an agent
//! resolves to.

use anyhow::Result;
use serde_json::{Value, json};
use state::{BottleMetadata, StateDir};

use crate::cli::{InfoArgs, ListArgs, ListWhat};
use crate::context::{Context, warn};
use crate::describe;
use crate::terminal;

pub fn list(ctx: &Context, args: ListArgs) -> Result<i32> {
    let lib = ctx.library()?;
    let agents = || -> Value {
        lib.agents().iter().map(|e| json!({"name": e.name, "source": e.source, "path": e.path})).collect()
    };
    let bottles = || -> Value { lib.bottles().iter().map(|e| json!({"name": e.name, "path": e.path})).collect() };
    let sections: Vec<(&str, Value)> = match args.what {
        Some(ListWhat::Agents) => vec![("agents", agents())],
        Some(ListWhat::Bottles) => vec![("bottles", bottles())],
        Some(ListWhat::Active) => vec![("active", active(ctx))],
        None => vec![("agents", agents()), ("bottles", bottles()), ("active", active(ctx))],
    };
    if args.json {
        let out: Value = if sections.len() == 1 {
            sections[0].1.clone()
        } else {
            sections.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<serde_json::Map<_, _>>().into()
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let color = terminal::color_stdout();
    let many = sections.len() > 1;
    for (name, items) in sections {
        if many {
            println!("{name}:");
        }
        let indent = if many { "  " } else { "" };
        let items = items.as_array().cloned().unwrap_or_default();
        if items.is_empty() && many {
            println!("{indent}(none)");
        }
        if name == "active" {
            for line in active_table(&items, color) {
                println!("{indent}{line}");
            }
            continue;
        }
        for item in items {
            let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            match name {
                "agents" if s("source") == "cwd" => {
                    println!("{indent}{}  (this repo: {})", s("name"), s("path"))
                }
                _ => println!("{indent}{}", s("name")),
            }
        }
    }
    Ok(0)
}

/// `list active` as a table under a header: one row per bottle, columns
/// aligned on their plain text (a label's colour does not count).
fn active_table(items: &[Value], color: bool) -> Vec<String> {
    const COLUMNS: [(&str, &str); 6] = [
        ("BACKEND", "backend"),
        ("IDENTITY", "identity"),
        ("LABEL", "label"),
        ("AGENT", "agent"),
        ("STARTED", "started"),
        ("STATE", "state"),
    ];
    if items.is_empty() {
        return Vec::new();
    }
    let cell = |item: &Value, key: &str| item.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .map(|(head, key)| items.iter().map(|i| cell(i, key).chars().count()).chain([head.len()]).max().unwrap_or(0))
        .collect();
    let row = |cells: Vec<(String, String)>| {
        let padded: Vec<String> = cells
            .into_iter()
            .zip(&widths)
            .map(|((shown, plain), w)| format!("{shown}{}", " ".repeat(w - plain.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut lines = vec![row(COLUMNS.iter().map(|(h, _)| (h.to_string(), h.to_string())).collect())];
    for item in items {
        lines.push(row(COLUMNS
            .iter()
            .map(|(_, key)| {
                let plain = cell(item, key);
                let shown = if *key == "label" && !plain.is_empty() {
                    terminal::paint(&plain, &cell(item, "color"), color)
                } else {
                    plain.clone()
                };
                (shown, plain)
            })
            .collect()));
    }
    lines
}

/// Bottles with state on disk, and what each backend says is live. A
/// backend that cannot enumerate is named, unless it is not installed and
/// no bottle here uses it.
fn active(ctx: &Context) -> Value {
    let mut live = Vec::new();
    // The backends some bottle here was launched on (no name: docker).
    let used: Vec<String> = ctx
        .home
        .identities()
        .into_iter()
        .map(|id| BottleMetadata::read(&ctx.home.state_dir(&id)).unwrap_or_default().backend)
        .map(|b| if b.is_empty() { "docker".to_string() } else { b })
        .collect();
    for b in ctx.registry.all() {
        match b.enumerate_active(&ctx.home) {
            Ok(found) => live.extend(found),
            // A backend that is not installed and that no bottle here uses
            // has nothing to check: not worth a warning to someone who
            // never chose it.
            Err(_) if !b.available().available && !used.iter().any(|u| u == b.name()) => {}
            Err(e) => warn(&format!("{}: live bottles not checked: {e}", b.name())),
        }
    }
    ctx.home
        .identities()
        .into_iter()
        .map(|id| {
            let dir = ctx.home.state_dir(&id);
            let meta = BottleMetadata::read(&dir).unwrap_or_default();
            let preserved = StateDir::open(&ctx.home, &id).is_some_and(|d| d.is_preserved());
            let running = live.iter().any(|l| l.identity == id);
            let has_metadata = dir.join(BottleMetadata::FILE).is_file();
            // A launcher gone without a session end (a killed CLI) leaves
            // an orphan: `resume` takes it over, `cleanup` removes what
            // still runs.
            let launcher = backend::launcher_alive(&dir);
            let state = match (running, launcher) {
                (true, true) => "running",
                (false, true) => "starting",
                (_, false) if running || !preserved => {
                    if has_metadata {
                        "orphaned (resume or cleanup)"
                    } else {
                        "no metadata"
                    }
                }
                _ => "preserved",
            };
            json!({
                "identity": id,
                "backend": meta.backend_name(),
                "label": meta.label,
                "color": meta.color,
                "agent": meta.agent_name,
                "started": meta.started_at,
                "state": state,
                "bottles": meta.bottle_names,
            })
        })
        .collect()
}

pub fn info(ctx: &Context, args: InfoArgs) -> Result<i32> {
    let mut lib = ctx.library()?;
    let m = lib.compose(&args.agent, &args.bottles)?;
    crate::launch::check_like_dry_run(ctx, &m)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&describe::info_json(&m))?);
    } else {
        print!("{}", describe::info_text(&m));
    }
    Ok(0)
}
