//! `bot-bottle git-gate` (hidden): git-gate standalone from a bottle file,
//! as the sidecar runs it. Mirrors, keys and the hook socket go in `--dir`;
//! `static` keys are read from the host, `gitea` keys are minted and
//! registered at start and revoked at stop. Known secrets for the push scan:
//! the values of every `token_ref` and `provisioner_token` the bottle names
//! that is set here, and `BOT_BOTTLE_CANARY`.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use dlp::KnownSecrets;
use git_gate::keys::{GiteaApi, read_static};
use git_gate::ledger::Ledger;
use git_gate::ssh::SshUrl;
use git_gate::{Gate, Limits, Mirror};
use manifest::RepoKey;
use secret::Secret;

use crate::cli::GitGateArgs;
use sidecar::listen::Listener;

/// The deploy keys this gate minted, in its directory (see git_gate::ledger).
const DEPLOY_KEY_LEDGER: &str = "deploy-keys.json";

pub fn git_gate(args: GitGateArgs) -> Result<i32> {
    let bottle = crate::egress_cmd::read_bottle(&args.bottle)?;
    if bottle.repos.is_empty() {
        bail!("{}: declares no git-gate repos", args.bottle.display());
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut known = KnownSecrets::new();
    let env_names = bottle.routes.iter().filter_map(|r| r.value.auth.as_ref().map(|a| a.token_ref.clone())).chain(
        bottle.repos.values().filter_map(|r| match &r.value.key {
            Some(RepoKey::Gitea { provisioner_token }) => Some(provisioner_token.clone()),
            _ => None,
        }),
    );
    for name in env_names {
        if let Some(v) = std::env::var(&name).ok().filter(|v| !v.is_empty()) {
            known.register(&format!("env:{name}"), &Secret::new(v));
        }
    }
    if let Some(canary) = std::env::var("BOT_BOTTLE_CANARY").ok().filter(|v| !v.is_empty()) {
        known.register("canary", &Secret::new(canary));
    }
    let exe = std::env::current_exe().context("cannot find this program's path for the hook")?;
    let hook = format!("'{}' git-gate-hook", exe.display().to_string().replace('\'', r"'\''"));
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut mirrors = Vec::new();
    let ledger = Ledger::at(args.dir.join(DEPLOY_KEY_LEDGER));
    let result = runtime.block_on(async {
        for (name, repo) in &bottle.repos {
            let where_ = format!("{}: git-gate.repos.{name}", args.bottle.display());
            let (Some(url), Some(host_key)) = (&repo.value.url, &repo.value.host_key) else {
                bail!(
                    "{where_} needs `url` and `host_key` here: the standalone git-gate keeps no bottle state to pin a key on first use in (ssh-keyscan -p PORT HOST gives the key)"
                );
            };
            let identity = match &repo.value.key {
                Some(RepoKey::Static { path }) => read_static(path, home.as_deref()).context(where_.clone())?,
                Some(RepoKey::Gitea { provisioner_token }) => {
                    let token = std::env::var(provisioner_token).ok().filter(|v| !v.is_empty()).with_context(|| {
                        format!("{where_}: provisioner_token {provisioner_token} is not set in this environment")
                    })?;
                    let upstream = SshUrl::parse(url).map_err(anyhow::Error::msg).context(where_.clone())?;
                    let api = GiteaApi::for_upstream(&upstream, Secret::new(token))?;
                    // Written ahead of the mint (see git_gate::ledger).
                    let what = git_gate::ledger::MintFor {
                        repo: name,
                        url,
                        token_ref: provisioner_token,
                        title_prefix: &format!("bot-bottle git-gate {name}"),
                    };
                    let (private, key) =
                        ledger.mint(&api, &upstream, what, &args.dir).await.context(where_.clone())?;
                    eprintln!("git-gate: registered deploy key {} on {}", key.id, key.owner_repo);
                    private
                }
                None => bail!("{where_} needs `key` (provider static or gitea)"),
            };
            let policy = git_gate::mirror::RefPolicy {
                allow_force_push: repo.value.allow_force_push.unwrap_or(false),
                allow_delete: repo.value.allow_delete.unwrap_or(false),
            };
            mirrors.push(Mirror::create(&args.dir, name, url, host_key, identity.expose(), &hook)?.with_policy(policy));
        }
        serve(&args, mirrors, known).await
    });
    // Teardown: revoke everything the ledger lists (this run's keys, and
    // any an earlier run in this directory was killed before revoking),
    // loudly on failure.
    let token = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let revoked = runtime.block_on(git_gate::ledger::revoke_all(&ledger, &token));
    let revoke_failed = match revoked {
        Ok(r) => {
            for line in &r.lines {
                eprintln!("git-gate: {line}");
            }
            !r.all
        }
        Err(e) => {
            eprintln!("git-gate: {e}");
            true
        }
    };
    result?;
    Ok(if revoke_failed { 1 } else { 0 })
}

async fn serve(args: &GitGateArgs, mirrors: Vec<Mirror>, known: KnownSecrets) -> Result<()> {
    let (socket, hooks) = git_gate::gate::bind_hook_socket(&args.dir.join("run"))
        .with_context(|| format!("cannot bind the hook socket in {}", args.dir.join("run").display()))?;
    let sink = crate::supervise_cmd::sink(&args.operator)?;
    let limits = Limits { hold: Limits::default().hold + std::time::Duration::from_secs(5), ..Limits::default() };
    let gate = Arc::new(Gate::new(mirrors, known, sink, limits, socket));
    tokio::spawn(gate.clone().serve_hooks(hooks));
    for (repo, why) in gate.refresh_all().await {
        eprintln!("git-gate: {repo}: {why} (fetches will fail until it is reachable)");
    }
    let listener = Listener::bind(&args.listen).await?;
    let ready = format!("bot-bottle: git-gate serving {} on {}", gate.repos().join(" "), listener.name()?);
    listener.serve_until_stopped(&ready, |stream| gate.clone().serve(stream), None, None).await?;
    eprintln!("bot-bottle: git-gate stopped");
    Ok(())
}
