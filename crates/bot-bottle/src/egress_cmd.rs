//! `bot-bottle egress`: the egress proxy standalone, from a bottle file, for
//! developers who want the allowlist, DLP and credential injection without
//! a sandbox. Tokens come from this process's environment (`token_ref`);
//! the CA is minted into `--ca-dir` when absent.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use dlp::KnownSecrets;
use egress::ca::{BottleCa, LeafIssuer};
use egress::decision::Tokens;
use egress::proxy::Proxy;
use egress::{RouteSpec, load, render};
use manifest::OnMatch;
use secret::Secret;

use crate::cli::EgressArgs;

pub fn egress(args: EgressArgs) -> Result<i32> {
    let bottle = read_bottle(&args.bottle)?;
    let specs: Vec<RouteSpec> = bottle
        .routes
        .iter()
        .map(|r| RouteSpec {
            route: r.value.clone(),
            auth: r.value.auth.as_ref().map(|a| (a.scheme, a.token_ref.clone())),
            on_match: r.value.dlp.outbound_on_match.unwrap_or(OnMatch::Supervise),
            provider: false,
        })
        .collect();
    let rendered = render(&specs, bottle.log_level());
    // The same loader and validator the sidecar uses.
    let file = load(&rendered.text).context("the bottle's routes do not make a valid route file")?;
    let mut tokens = Vec::new();
    let mut known = KnownSecrets::new();
    for (slot, name) in &rendered.slots {
        let value = std::env::var(name).ok().filter(|v| !v.is_empty()).with_context(|| {
            format!(
                "{}: token_ref {name} is not set in this environment; export it before starting",
                args.bottle.display()
            )
        })?;
        let value = Secret::new(value);
        known.register(&format!("EGRESS_TOKEN_{slot}"), &value);
        tokens.push((*slot, value));
    }
    let issuer = ca(&args.ca_dir)?;
    let upstream_ca =
        match args.upstream_ca.clone().or_else(|| std::env::var_os("BOT_BOTTLE_UPSTREAM_CA").map(Into::into)) {
            Some(p) => Some(std::fs::read(&p).with_context(|| format!("cannot read --upstream-ca {}", p.display()))?),
            None => None,
        };
    let hosts: Vec<&str> = file.table.routes().iter().map(|r| r.route.host.as_str()).collect();
    eprintln!("egress: loaded {} route(s): {}", hosts.len(), hosts.join(" "));
    let proxy = Arc::new(Proxy::new(file, Tokens(tokens), known, issuer, upstream_ca.as_deref())?);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(proxy, &args.listen))?;
    Ok(0)
}

/// The effective bottle of a file: with `extends` resolved when the file
/// sits in a `bottles/` directory, else it must stand alone.
fn read_bottle(path: &Path) -> Result<manifest::Bottle> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let dir = path.parent().filter(|d| d.file_name().is_some_and(|n| n == "bottles"));
    if let Some(home) = dir.and_then(Path::parent) {
        let mut lib = manifest::Library::open(home, None, None)?;
        return Ok(lib.bottle(&name)?);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = manifest::parse_bottle_text(&name, path, &text)?;
    if !file.extends.is_empty() {
        bail!("{}: `extends` needs the parent bottles beside it in a bottles/ directory", path.display());
    }
    Ok(manifest::Bottle::from_file(&file))
}

/// The CA in `dir` (`ca.pem`, `ca.key`), minted there when absent.
fn ca(dir: &Path) -> Result<LeafIssuer> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if !cert.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ca = BottleCa::mint("egress")?;
        std::fs::write(&cert, &ca.cert_pem).with_context(|| format!("cannot write {}", cert.display()))?;
        write_private(&key, ca.key_pem.expose().as_bytes())?;
        eprintln!("bot-bottle: minted a CA; trust {} in your client", cert.display());
    } else {
        eprintln!("bot-bottle: CA certificate {}", cert.display());
    }
    let cert_pem = std::fs::read_to_string(&cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = Secret::new(std::fs::read_to_string(&key).with_context(|| format!("cannot read {}", key.display()))?);
    Ok(LeafIssuer::from_pem(&cert_pem, &key_pem)?)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Accept on `listen` (`HOST:PORT` or `unix:PATH`) until SIGTERM or SIGINT.
async fn serve(proxy: Arc<Proxy>, listen: &str) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("bot-bottle: egress listening on {listen}");
        loop {
            tokio::select! {
                accepted = listener.accept() => if let Ok((stream, _)) = accepted { tokio::spawn(proxy.clone().serve(stream)); },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let _ = std::fs::remove_file(path);
    } else {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("bot-bottle: egress listening on {}", listener.local_addr()?);
        loop {
            tokio::select! {
                accepted = listener.accept() => if let Ok((stream, _)) = accepted { tokio::spawn(proxy.clone().serve(stream)); },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    eprintln!("bot-bottle: egress stopped");
    Ok(())
}
