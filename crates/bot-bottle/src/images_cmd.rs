//! `bot-bottle images build`: the images bottles run from, built ahead of
//! time (`start` builds what is missing the same way, with the same
//! progress lines); `images prune`: remove the ones nothing needs.

use anyhow::{Result, bail};
use backend::engine::{self as engine, images, prune};

use crate::cli::{ImagesAction, ImagesArgs};
use crate::context::Context;
use crate::terminal;

pub fn images(ctx: &Context, args: ImagesArgs) -> Result<i32> {
    match args.action {
        ImagesAction::Build { provider } => build(&provider),
        ImagesAction::Prune { yes, keep_recent, json } => prune(ctx, yes, keep_recent, json),
    }
}

/// Remove what [`prune::decide`] says nothing needs, after saying what.
fn prune(ctx: &Context, yes: bool, keep_recent: std::time::Duration, json: bool) -> Result<i32> {
    let keep = prune::keep_for(&ctx.home, keep_recent)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let docker = engine::connect().await?;
        let images = prune::list(&docker).await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let chosen = prune::decide(&images, &keep, now);
        if chosen.is_empty() {
            if json {
                println!("{}", serde_json::json!({"removed": [], "in_use": [], "bytes": 0}));
            } else {
                eprintln!("bot-bottle: no image to remove ({} bot-bottle image tag(s), all needed)", images.len());
            }
            return Ok(0);
        }
        if !json {
            for (tag, why) in &chosen {
                eprintln!("  {tag}  ({why})");
            }
        }
        if !yes && !terminal::confirm(&format!("remove these {} image tag(s)?", chosen.len()))? {
            return Ok(1);
        }
        let tags: Vec<String> = chosen.into_iter().map(|(t, _)| t).collect();
        let pruned = prune::remove(&docker, &images, &tags).await?;
        if json {
            println!(
                "{}",
                serde_json::json!({"removed": pruned.removed, "in_use": pruned.in_use, "bytes": pruned.bytes})
            );
        } else {
            eprintln!(
                "bot-bottle: removed {} image tag(s), {:.1} MB freed{}",
                pruned.removed.len(),
                pruned.bytes as f64 / 1e6,
                if pruned.in_use.is_empty() {
                    String::new()
                } else {
                    format!("; kept {} a container still uses: {}", pruned.in_use.len(), pruned.in_use.join(", "))
                }
            );
        }
        anyhow::Ok(0)
    })
}

fn build(provider: &str) -> Result<i32> {
    if !backend::builtin_names().any(|n| n == provider) {
        let names: Vec<&str> = backend::builtin_names().collect();
        bail!("no image recipe for provider '{provider}': this version builds {}", names.join(", "));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let docker = engine::connect().await?;
        let progress = |line: &str| eprintln!("bot-bottle: {line}");
        let started = std::time::Instant::now();
        let base = images::ensure_base(&docker, &progress).await?;
        let sidecar = images::ensure_sidecar(&docker, &base, &progress).await?;
        let agent = images::ensure_provider(&docker, provider, &base, &progress)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no image recipe for provider '{provider}'"))?;
        eprintln!("bot-bottle: images ready in {:.1} s", started.elapsed().as_secs_f64());
        println!("base     {base}\nsidecar  {sidecar}\nagent    {agent}");
        anyhow::Ok(())
    })?;
    Ok(0)
}
