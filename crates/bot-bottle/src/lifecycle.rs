//! Commands that act on an existing bottle by identity: `stop`, `logs`,
//! `commit`, and `cleanup` across every backend. Each asks the backend
//! that the bottle's `metadata.json` names.

use anyhow::{Result, bail};
use state::BottleMetadata;

use crate::context::{Context, check_identity};

fn owner(ctx: &Context, identity: &str) -> Result<(std::sync::Arc<dyn backend::Backend>, BottleMetadata)> {
    check_identity(identity)?;
    let (backend, meta) = backend::bottle_for_identity(&ctx.registry, &ctx.home, identity)?;
    let meta = meta.unwrap_or_else(|| BottleMetadata { identity: identity.to_string(), ..Default::default() });
    Ok((backend, meta))
}

pub fn stop(ctx: &Context, identity: &str) -> Result<i32> {
    let (backend, meta) = owner(ctx, identity)?;
    backend.stop(&ctx.home, &meta)?;
    eprintln!("bot-bottle: stopped {identity}; its state is kept (resume with `bot-bottle resume {identity}`)");
    Ok(0)
}

pub fn logs(ctx: &Context, identity: &str, follow: bool) -> Result<i32> {
    let (backend, meta) = owner(ctx, identity)?;
    backend.logs(&ctx.home, &meta, follow)?;
    Ok(0)
}

pub fn commit(ctx: &Context, identity: Option<&str>) -> Result<i32> {
    let Some(identity) = identity else {
        bail!("name the bottle to commit: bot-bottle commit IDENTITY (see `bot-bottle list active`)");
    };
    let (backend, meta) = owner(ctx, identity)?;
    let snapshot = backend.commit(&ctx.home, &meta)?;
    println!("{snapshot}");
    Ok(0)
}

pub fn cleanup(ctx: &Context, all: bool, yes: bool) -> Result<i32> {
    let _ = (all, yes);
    // Without every backend's view of what is live, no state dir may be
    // judged orphaned: each backend is asked first, and refusing beats guessing.
    for b in ctx.registry.all() {
        b.prepare_cleanup(&ctx.home)?;
    }
    bail!("cleanup is not implemented in this version of bot-bottle")
}
