//! `start` and `resume`: pick, compose, resolve, prepare, show the
//! preflight, confirm, launch. State a launch did not start is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use backend::{Backend, BottleSpec, Plan};
use manifest::{AskMode, EnvValue, Library, Manifest, Resolved};
use state::BottleMetadata;

use crate::cli::{ResumeArgs, StartArgs};
use crate::context::{Context, check_identity};
use crate::describe;
use crate::terminal;

/// Removes a state dir on drop unless disarmed: a declined preflight, a
/// dry run or a failed launch leaves nothing behind.
struct StateGuard(Option<PathBuf>);

impl StateGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            // A deploy-key ledger still there lists keys the failed launch
            // could not revoke (it said which): the state that records them
            // stays, for `cleanup` to revoke once it can.
            if backend::engine::sidecar::has_unrevoked_keys(&dir) {
                crate::context::warn(&format!(
                    "kept {}: it lists deploy keys not yet revoked; `bot-bottle cleanup` revokes them",
                    dir.display()
                ));
                return;
            }
            // Best effort: a launch that failed leaves nothing to resume.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn start(ctx: &Context, args: StartArgs) -> Result<i32> {
    let mut lib = ctx.library()?;
    let tty = !args.launch.headless && terminal::interactive();
    let agent_name = match args.agent {
        Some(a) => a,
        None if args.launch.headless => {
            bail!("--headless needs the agent named: bot-bottle start AGENT --headless --prompt TEXT")
        }
        None => pick_agent(&lib)?,
    };
    let agent = lib.agent(&agent_name)?;
    // `-y` takes every default there is: the agent's bottles, a random
    // identity, the backend the registry would choose.
    let defaults = args.launch.yes;
    let bottles = if !args.bottles.is_empty() {
        args.bottles
    } else if tty && (!defaults || agent.bottles.is_empty()) {
        pick_bottles(&lib, &agent.bottles)?
    } else if !agent.bottles.is_empty() {
        agent.bottles.clone()
    } else {
        bail!("agent '{agent_name}' names no default bottle and there is no terminal to pick one; pass --bottle NAME");
    };
    if bottles.is_empty() {
        bail!("no bottle chosen; pass --bottle NAME (see `bot-bottle list bottles`)");
    }
    let label = match args.label {
        Some(l) => Some(l),
        None if tty && !defaults => ask_label(ctx, &agent_name)?,
        None => None,
    };
    if let Some(c) = &args.color
        && terminal::sgr(c).is_none()
    {
        bail!("--color '{c}' is not a colour: use red, green, yellow, blue, magenta, cyan, white, or a number 0-255");
    }
    let env_backend = std::env::var("BOT_BOTTLE_BACKEND").ok();
    let backend = match (&args.backend, env_backend.as_deref().filter(|v| !v.is_empty())) {
        (None, None) if tty && !defaults => pick_backend(ctx)?,
        (flag, env) => ctx.registry.choose(flag.as_deref(), env)?,
    };
    let manifest = lib.compose(&agent_name, &bottles)?;
    let env = resolve_env(ctx, &manifest, args.launch.dry_run, args.launch.headless)?;
    let spec = BottleSpec {
        manifest,
        env,
        identity: None,
        label: label.clone(),
        color: args.color.clone(),
        copy_cwd: args.cwd,
        uniquify_label: !tty,
        tty: session_on_terminal(args.launch.prompt.as_deref()),
        remote_control: args.launch.remote_control.clone(),
    };
    let plan = backend.prepare(&ctx.home, spec, &ctx.host)?;
    let guard = StateGuard(Some(plan.state_dir()));
    show_preflight(&plan, args.launch.json)?;
    if args.launch.dry_run {
        return Ok(0);
    }
    if !approved(args.launch.yes || args.launch.headless, "launch this agent?")? {
        return Ok(1);
    }
    let session = Session::of(&plan, false);
    let _ = std::fs::remove_file(plan.state_dir().join(crate::lifecycle::STOPPED));
    let running = backend.launch(plan)?;
    guard.disarm();
    session.run(ctx, running, args.launch.prompt.as_deref())
}

/// Everything `start AGENT --dry-run` checks, without printing its
/// preflight: `info` holds an agent to the same rules, so an agent `info`
/// accepts is one `start` accepts. The plan's warnings are said.
pub fn check_like_dry_run(ctx: &Context, manifest: &Manifest) -> Result<()> {
    let env = resolve_env(ctx, manifest, true, false)?;
    let env_backend = std::env::var("BOT_BOTTLE_BACKEND").ok();
    let backend = ctx.registry.choose(None, env_backend.as_deref())?;
    let spec = BottleSpec {
        manifest: manifest.clone(),
        env,
        identity: None,
        label: None,
        color: None,
        copy_cwd: false,
        uniquify_label: true,
        tty: false,
        remote_control: None,
    };
    let plan = backend::plan(backend.as_dyn(), &ctx.home, spec, &ctx.host)?;
    for w in &plan.warnings {
        crate::context::warn(w);
    }
    Ok(())
}

pub fn resume(ctx: &Context, args: ResumeArgs) -> Result<i32> {
    check_identity(&args.identity)?;
    let dir = ctx.home.state_dir(&args.identity);
    let env_backend = std::env::var("BOT_BOTTLE_BACKEND").ok();
    let chosen = args.backend.as_deref().or(env_backend.as_deref());
    let (backend, meta) = backend::bottle_for_identity(&ctx.registry, &ctx.home, &args.identity, chosen)?;
    if let (Some(flag), Some(meta)) = (&args.backend, &meta)
        && !meta.backend.is_empty()
        && *flag != meta.backend
    {
        bail!(
            "{} runs on {} ({} says so); --backend {flag} cannot move it: drop --backend",
            args.identity,
            meta.backend,
            dir.join(BottleMetadata::FILE).display()
        );
    }
    let Some(meta) = meta else {
        bail!(
            "no preserved bottle '{}' in {}; see `bot-bottle list active`, or start a new one with `bot-bottle start`",
            args.identity,
            ctx.home.state_root().display()
        );
    };
    // A resume replaces the bottle's containers: never a live session's.
    if backend::launcher_alive(&dir) {
        bail!(
            "bottle '{}' is running: its session (bot-bottle pid {}) is alive; end it, or `bot-bottle stop {}`, then resume",
            args.identity,
            std::fs::read_to_string(dir.join(backend::LAUNCHER_FILE)).unwrap_or_default().trim(),
            args.identity
        );
    }
    let mut lib = ctx.library()?;
    let manifest = lib.compose(&meta.agent_name, &meta.bottle_names).with_context(|| {
        format!("cannot rebuild bottle '{}' from {}", args.identity, dir.join(BottleMetadata::FILE).display())
    })?;
    let env = resolve_env(ctx, &manifest, args.launch.dry_run, args.launch.headless)?;
    let spec = BottleSpec {
        manifest,
        env,
        identity: Some(meta.identity.clone()),
        label: Some(meta.label.clone()).filter(|l| !l.is_empty()),
        color: Some(meta.color.clone()).filter(|c| !c.is_empty()),
        copy_cwd: meta.copy_cwd,
        uniquify_label: false,
        tty: session_on_terminal(args.launch.prompt.as_deref()),
        remote_control: args.launch.remote_control.clone(),
    };
    let mut host = backend::HostEnv::current();
    if meta.copy_cwd && !meta.cwd.is_empty() {
        host.cwd = PathBuf::from(&meta.cwd);
    }
    // Plan first and write only once the operator said yes: a dry run or a
    // declined resume leaves the preserved state exactly as it was.
    let mut plan = backend::plan(backend.as_dyn(), &ctx.home, spec, &host)?;
    plan.kept_route_edits = kept_route_edits(&dir)?;
    show_preflight(&plan, args.launch.json)?;
    if args.launch.dry_run {
        return Ok(0);
    }
    if !approved(args.launch.yes || args.launch.headless, "resume this agent?")? {
        return Ok(1);
    }
    backend::write_plan(&plan)?;
    let session = Session::of(&plan, true);
    let _ = std::fs::remove_file(plan.state_dir().join(crate::lifecycle::STOPPED));
    let running = match backend.launch(plan) {
        Ok(r) => r,
        Err(e) => {
            // The preserved state stays preserved when a resume fails.
            if let Some(d) = state::StateDir::open(&ctx.home, &args.identity) {
                let _ = d.set_preserved(true);
            }
            return Err(e.into());
        }
    };
    session.run(ctx, running, args.launch.prompt.as_deref())
}

/// The route changes the operator approved in the bottle's earlier
/// sessions, from its store (none when it never had one).
fn kept_route_edits(dir: &std::path::Path) -> Result<Vec<supervise::KeptRouteEdit>> {
    let path = supervise::store_path(dir);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let identity = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let store = supervise::ProposalStore::open(&path, &identity)?;
    store.kept_route_edits().with_context(|| format!("the approved routes of {identity} cannot be kept"))
}

/// `-y` and headless runs are approved; otherwise ask `[y/N]`.
fn approved(preapproved: bool, question: &str) -> Result<bool> {
    if preapproved || terminal::confirm(question)? {
        return Ok(true);
    }
    eprintln!("bot-bottle: not launched");
    Ok(false)
}

fn show_preflight(plan: &Plan, json: bool) -> Result<()> {
    for w in &plan.warnings {
        crate::context::warn(w);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&describe::preflight_json(plan))?);
    } else {
        print!("{}", describe::preflight_text(plan));
    }
    Ok(())
}

/// Resolve `?` and `${}` values: preview in a dry run, refuse `?` headless,
/// otherwise ask on the terminal without echo.
pub(crate) fn resolve_env(
    ctx: &Context,
    m: &Manifest,
    dry_run: bool,
    headless: bool,
) -> Result<BTreeMap<String, Resolved>> {
    let values: BTreeMap<String, EnvValue> = m.bottle.env.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
    let mut ask = |name: &str, prompt: Option<&str>| {
        terminal::secret(&format!("{}:", prompt.unwrap_or(name))).map_err(|e| e.to_string())
    };
    let mode = if dry_run {
        AskMode::Preview
    } else if headless {
        AskMode::Headless
    } else {
        AskMode::Interactive(&mut ask)
    };
    Ok(manifest::resolve_env(&values, &*ctx.host.vars, mode)?)
}

/// One session in a launched bottle: the provider's command on the
/// operator's terminal (or headless), then the session end of
/// spec/state.md: teardown, the audit trail archived, the state deleted on
/// exit 0 and preserved otherwise.
struct Session {
    identity: String,
    provider: backend::Provider,
    resume: bool,
    tty: bool,
    /// The host directory `--cwd` copied in, to tell the agent's changes.
    copied_from: Option<PathBuf>,
}

/// Whether the session's command is wired to the operator's terminal: only
/// without a prompt, and only when stdin is one.
fn session_on_terminal(prompt: Option<&str>) -> bool {
    prompt.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdin())
}

impl Session {
    fn of(plan: &Plan, resume: bool) -> Session {
        Session {
            identity: plan.identity.clone(),
            provider: plan.resolved_provider.provider().clone(),
            resume,
            tty: plan.tty,
            copied_from: (plan.metadata.copy_cwd && !plan.metadata.cwd.is_empty())
                .then(|| PathBuf::from(&plan.metadata.cwd)),
        }
    }

    /// After an interactive session that ended 0: whether to keep the
    /// state because the agent's workspace holds work not copied out (the
    /// operator is asked; anything but "y" keeps it).
    fn keeps_work(&self, dir: &std::path::Path) -> bool {
        if !self.tty {
            return false;
        }
        if let Some(why) = backend::workspace::uncopied(dir) {
            let question = format!(
                "{}'s workspace was not copied out ({why}) and is kept only in the bottle's commit; remove the bottle and it?",
                self.identity
            );
            return !terminal::confirm(&question).unwrap_or(false);
        }
        let Some(kept) = backend::workspace::kept(dir) else { return false };
        let changes = backend::workspace::changes(&kept, self.copied_from.as_deref());
        if changes == 0 {
            return false;
        }
        let question = format!(
            "{}'s workspace has {changes} change(s) not copied out; remove the bottle and them?",
            self.identity
        );
        !terminal::confirm(&question).unwrap_or(false)
    }

    fn run(self, ctx: &Context, running: Box<dyn backend::RunningBottle>, prompt: Option<&str>) -> Result<i32> {
        let dir = ctx.home.state_dir(&self.identity);
        let outcome = running.exec(&self.provider.argv(prompt, self.resume), self.tty).map_err(anyhow::Error::from);
        let teardown = running.teardown();
        // `bot-bottle stop` from another terminal: the end is a stop (143,
        // as for SIGTERM), whatever component went first.
        let stopped = std::fs::remove_file(dir.join(crate::lifecycle::STOPPED)).is_ok();
        let outcome = if stopped {
            eprintln!("bot-bottle: {} was stopped with `bot-bottle stop`", self.identity);
            Ok(143)
        } else {
            outcome
        };
        // The audit trail outlives the bottle.
        let store = supervise::store_path(&dir);
        if store.exists()
            && let Err(e) = supervise::AuditArchive::open(&supervise::archive_path(ctx.home.root()))
                .and_then(|mut a| a.absorb(&store))
        {
            crate::context::warn(&format!("the audit trail of {} was not archived: {e}", self.identity));
        }
        let code = match &outcome {
            Ok(code) => *code,
            Err(_) => 1,
        };
        let export_hint = |id: &str| {
            if backend::workspace::kept(&dir).is_some() {
                format!("; its workspace: `bot-bottle export {id} DIR`")
            } else {
                String::new()
            }
        };
        match state::StateDir::open(&ctx.home, &self.identity) {
            Some(d) if code == 0 && teardown.is_ok() && !self.keeps_work(&dir) => {
                d.remove()?;
                eprintln!(
                    "bot-bottle: {} ended with 0: its bottle, workspace and state ({}) are removed",
                    self.identity,
                    dir.display()
                );
            }
            Some(d) => {
                d.set_preserved(true)?;
                let ended = if code == 0 {
                    format!("{}'s", self.identity)
                } else {
                    format!("{} ended with {code}; its", self.identity)
                };
                eprintln!(
                    "bot-bottle: {ended} state is kept in {} (resume with `bot-bottle resume {id}`{})",
                    dir.display(),
                    export_hint(&self.identity),
                    id = self.identity
                );
            }
            None => {}
        }
        teardown?;
        outcome
    }
}

/// Ask for a label until it is free (a live or preserved bottle may hold
/// it); empty means a random identity.
fn ask_label(ctx: &Context, agent: &str) -> Result<Option<String>> {
    loop {
        let label = terminal::text("label (empty for a random identity):", None, "--label")?;
        if label.trim().is_empty() {
            return Ok(None);
        }
        match state::mint_identity(agent, Some(&label), false, &|id| ctx.home.identity_taken(id)) {
            Ok(_) => return Ok(Some(label)),
            Err(e) => eprintln!("bot-bottle: {e}"),
        }
    }
}

fn pick_agent(lib: &Library) -> Result<String> {
    let names: Vec<String> = lib.agents().into_iter().map(|e| e.name).collect();
    if names.is_empty() {
        bail!("no agents in {}; create one with `bot-bottle init`", lib.agents_dir().display());
    }
    terminal::pick("agent:", names, "the agent name: bot-bottle start AGENT")
}

/// An ordered multi-select: bottles are added one at a time, in merge order,
/// starting from the agent's defaults.
fn pick_bottles(lib: &Library, defaults: &[String]) -> Result<Vec<String>> {
    const DONE: &str = "✓ done";
    const RESET: &str = "↺ start over";
    let all: Vec<String> = lib.bottles().into_iter().map(|e| e.name).collect();
    let mut chosen: Vec<String> = defaults.to_vec();
    loop {
        let mut options =
            vec![format!("{DONE} (use: {})", if chosen.is_empty() { "none".into() } else { chosen.join(", ") })];
        options.extend(all.iter().filter(|b| !chosen.contains(b)).map(|b| lib.extends_chain(b)));
        if !chosen.is_empty() {
            options.push(RESET.to_string());
        }
        let pick = terminal::pick("bottles, in merge order (later wins):", options, "--bottle NAME")?;
        if pick.starts_with(DONE) {
            return Ok(chosen);
        } else if pick == RESET {
            chosen.clear();
        } else {
            let name = pick.split(" <- ").next().unwrap_or(&pick).to_string();
            chosen.push(name);
        }
    }
}

fn pick_backend(ctx: &Context) -> Result<Arc<dyn Backend>> {
    let options: Vec<String> = ctx
        .registry
        .all()
        .iter()
        .map(|b| {
            let a = b.available();
            format!(
                "{}{}",
                b.name(),
                if a.available { String::new() } else { format!("  (unavailable: {})", a.reason) }
            )
        })
        .collect();
    let pick = terminal::pick("backend:", options, "--backend")?;
    Ok(ctx.registry.get(pick.split_whitespace().next().unwrap_or(&pick))?)
}
