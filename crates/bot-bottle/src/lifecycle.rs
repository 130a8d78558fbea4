//! Commands that act on an existing bottle by identity: `stop`, `logs`,
//! `commit`, `export`, and `cleanup` across every backend. Each asks the backend
//! that the bottle's `metadata.json` names.

use anyhow::{Result, bail};
use state::BottleMetadata;

use crate::context::{Context, check_identity};

fn owner(ctx: &Context, identity: &str) -> Result<(std::sync::Arc<dyn backend::Backend>, BottleMetadata)> {
    check_identity(identity)?;
    let env_backend = std::env::var("BOT_BOTTLE_BACKEND").ok();
    let (backend, meta) = backend::bottle_for_identity(&ctx.registry, &ctx.home, identity, env_backend.as_deref())?;
    let meta = meta.unwrap_or_else(|| BottleMetadata { identity: identity.to_string(), ..Default::default() });
    Ok((backend, meta))
}

/// Written by `stop` before the bottle goes, so that the session attached
/// to it reads the end as a stop, not as a lost component.
pub const STOPPED: &str = ".stopped";

pub fn stop(ctx: &Context, identity: &str) -> Result<i32> {
    let (backend, meta) = owner(ctx, identity)?;
    let marker = ctx.home.state_dir(identity).join(STOPPED);
    if marker.parent().is_some_and(|d| d.is_dir()) {
        let _ = std::fs::write(&marker, b"");
    }
    if let Err(e) = backend.stop(&ctx.home, &meta) {
        let _ = std::fs::remove_file(&marker);
        return Err(e.into());
    }
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
    eprintln!(
        "bot-bottle: `bot-bottle resume {identity}` boots from it; `bot-bottle export {identity} DIR` copies its workspace out"
    );
    Ok(0)
}

/// Copy a bottle's workspace to `dir`: a running bottle's as it is now,
/// otherwise the copy kept at its last session end.
pub fn export(ctx: &Context, identity: &str, dir: &std::path::Path) -> Result<i32> {
    let (backend, meta) = owner(ctx, identity)?;
    let state_dir = ctx.home.state_dir(identity);
    if !state_dir.is_dir() {
        bail!("no bottle '{identity}' in {}; see `bot-bottle list active`", ctx.home.state_root().display());
    }
    // A bottle that is not running (or a backend that cannot be reached)
    // has its kept copy.
    let live = backend.save_workspace(&ctx.home, &meta).unwrap_or(false);
    // Its work only in its commit: copied out of the commit (nothing runs).
    let mut from_commit = false;
    if !live && let Some(why) = backend::workspace::uncopied(&state_dir) {
        match backend.workspace_from_commit(&ctx.home, &meta) {
            Ok(true) => from_commit = true,
            failed => bail!(
                "bottle '{identity}''s workspace was not copied out at its last session end ({why}), so the bottle was committed with it{}: `bot-bottle resume {identity}` boots from that commit, and `bot-bottle export {identity} DIR` while it runs copies the workspace out (set {} higher if it is over the bound)",
                failed.err().map(|e| format!("; {e}")).unwrap_or_default(),
                backend::workspace::MAX_ENV
            ),
        }
    }
    let Some(kept) = backend::workspace::kept(&state_dir) else {
        bail!(
            "bottle '{identity}' has no workspace kept: it is copied out at each session end (this bottle's last session ended before bot-bottle kept workspaces, or its copy failed; see `bot-bottle logs {identity}`)"
        );
    };
    let written = backend::workspace::export(&kept, dir)?;
    eprintln!(
        "bot-bottle: {written} files of {identity}'s workspace ({}) written to {}",
        match (live, from_commit) {
            (true, _) => "as it is now",
            (false, true) => "as its last session left it, from the bottle's commit",
            (false, false) => "as its last session left it",
        },
        dir.display()
    );
    Ok(0)
}

/// An orphan whose state stays (a killed CLI's running bottle: `resume`
/// recovers it) holds the agent's work since the last copy in its agent:
/// stopped as `bot-bottle stop` would (its workspace copied out, or the
/// bottle committed when it cannot be), before its objects go.
fn keep_orphans_work(
    ctx: &Context,
    plans: &[(std::sync::Arc<dyn backend::Backend>, backend::CleanupPlan)],
    removed: &[(String, bool)],
) {
    for (b, plan) in plans {
        if plan.items.is_empty() {
            continue;
        }
        let Ok(active) = b.enumerate_active(&ctx.home) else { continue };
        for bottle in active {
            let dir = ctx.home.state_dir(&bottle.identity);
            if backend::launcher_alive(&dir) || removed.iter().any(|(id, _)| *id == bottle.identity) {
                continue;
            }
            let Ok(meta) = BottleMetadata::read(&dir) else { continue };
            eprintln!("bot-bottle: keeping the work of {} (an orphan) before its objects go", bottle.identity);
            if let Err(e) = b.stop(&ctx.home, &meta) {
                crate::context::warn(&format!("{} was not stopped in order: {e}", bottle.identity));
            }
        }
    }
}

/// Orphaned containers and networks (their launcher is gone), and state
/// without a live launcher: state that cannot be resumed (no metadata)
/// always; resumable state (preserved, or an orphan's) only with `--all`.
/// One plan, asked once (or `-y`).
pub fn cleanup(ctx: &Context, all: bool, yes: bool) -> Result<i32> {
    let mut plans = Vec::new();
    let mut blind: Vec<String> = Vec::new();
    for b in ctx.registry.all() {
        match b.prepare_cleanup(&ctx.home) {
            Ok(plan) => plans.push((b.clone(), plan)),
            Err(backend::BackendError::NotImplemented { .. }) => blind.push(b.name().to_string()),
            Err(e) => return Err(e.into()),
        }
    }
    let mut dirs = Vec::new();
    let mut ledgers: Vec<String> = Vec::new();
    for identity in ctx.home.identities() {
        let dir = ctx.home.state_dir(&identity);
        if backend::launcher_alive(&dir) {
            continue;
        }
        let meta = BottleMetadata::read(&dir).ok();
        // A backend that cannot say what it runs keeps its bottles' state.
        if let Some(m) = &meta
            && blind.iter().any(|b| b == m.backend_name())
        {
            continue;
        }
        // Preserved state, and an orphan's (its launcher killed: `resume`
        // recovers it), go only with --all; a dir without metadata cannot
        // be resumed and always goes.
        // Deploy keys a dead launcher minted are revoked whether the state
        // stays or goes: a resume mints its own, and a key that can push
        // must not outlive the session it was for.
        if backend::engine::sidecar::has_unrevoked_keys(&dir) {
            ledgers.push(identity.clone());
        }
        let preserved = dir.join(state::StateDir::PRESERVE).exists();
        let resumable = preserved || meta.is_some();
        if resumable && !all {
            continue;
        }
        dirs.push((identity, resumable));
    }
    let objects: usize = plans.iter().map(|(_, p)| p.items.len()).sum();
    if objects == 0 && dirs.is_empty() && ledgers.is_empty() {
        println!("nothing to clean up");
        for b in &blind {
            eprintln!("bot-bottle: the {b} backend cannot list its bottles yet; its state was left alone");
        }
        return Ok(0);
    }
    println!("cleanup will remove:");
    for (_, plan) in &plans {
        for item in &plan.items {
            println!("  {}: {item}", plan.backend);
        }
    }
    for identity in &ledgers {
        println!("  the Gitea deploy key(s) {identity} minted (revoked)");
    }
    for (identity, resumable) in &dirs {
        println!("  state {identity}{}", if *resumable { " (resumable)" } else { "" });
    }
    // A removed bottle's commit goes with it: nothing can boot it after.
    let commits_of: Vec<(String, String)> = dirs
        .iter()
        .filter_map(|(identity, _)| {
            backend::engine::agent::committed_image(&ctx.home.state_dir(identity)).map(|c| (identity.clone(), c))
        })
        .collect();
    let mut commits: Vec<String> = commits_of.iter().map(|(_, c)| c.clone()).collect();
    for image in &commits {
        println!("  image {image} (its commit)");
    }
    if !yes {
        crate::terminal::require("-y", "confirmation")?;
        if !crate::terminal::confirm("remove all of this?")? {
            eprintln!("bot-bottle: nothing removed");
            return Ok(1);
        }
    }
    keep_orphans_work(ctx, &plans, &dirs);
    // One backend's objects can hold another's (a smolmachines machine sits
    // on its bundle's Docker network): a backend whose cleanup failed is
    // tried once more after the others have run.
    let mut failed = Vec::new();
    for (b, plan) in &plans {
        if !plan.items.is_empty()
            && let Err(e) = b.cleanup(&ctx.home, plan)
        {
            failed.push((b, e));
        }
    }
    let mut errors = Vec::new();
    for (b, first) in failed {
        if let Err(e) = b.prepare_cleanup(&ctx.home).and_then(|plan| b.cleanup(&ctx.home, &plan)) {
            errors.push(format!("{}: {e} (first: {first})", b.name()));
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("some objects could not be removed: {}", errors.join("; "));
    }
    if !ledgers.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        for identity in &ledgers {
            runtime.block_on(backend::engine::sidecar::revoke_deploy_keys(&ctx.home.state_dir(identity)));
        }
    }
    let mut kept_for_keys = 0;
    for (identity, _) in &dirs {
        // A ledger still there lists keys not revoked (said above): the
        // state that records them stays until they are.
        if backend::engine::sidecar::has_unrevoked_keys(&ctx.home.state_dir(identity)) {
            crate::context::warn(&format!(
                "kept the state of {identity}: its deploy keys could not all be revoked (see above); run cleanup again once they can be"
            ));
            kept_for_keys += 1;
            commits.retain(|c| !commits_of.iter().any(|(i, ci)| i == identity && ci == c));
            continue;
        }
        if let Some(d) = state::StateDir::open(&ctx.home, identity) {
            d.remove()?;
        }
    }
    let mut images = 0;
    if !commits.is_empty() {
        match remove_images(&commits) {
            Ok(pruned) => {
                images = pruned.removed.len();
                if !pruned.in_use.is_empty() {
                    crate::context::warn(&format!(
                        "kept image(s) a container still uses: {}",
                        pruned.in_use.join(", ")
                    ));
                }
            }
            Err(e) => {
                crate::context::warn(&format!("the commit image(s) were not removed ({e}): {}", commits.join(", ")))
            }
        }
    }
    println!("removed {objects} object(s), {} state dir(s) and {images} commit image(s)", dirs.len() - kept_for_keys);
    Ok(0)
}

/// Remove image tags through the Docker Engine (their sizes are not
/// needed here: nothing is listed first).
fn remove_images(tags: &[String]) -> Result<backend::engine::prune::Pruned> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let docker = backend::engine::connect().await?;
        Ok(backend::engine::prune::remove(&docker, &[], tags).await?)
    })
}
