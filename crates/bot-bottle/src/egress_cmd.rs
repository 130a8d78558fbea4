//! `bot-bottle egress`: the egress proxy standalone, from a bottle file, for
//! developers who want the allowlist, DLP and credential injection without
//! a sandbox. Tokens come from this process's environment (`token_ref`);
//! the CA is minted into `--ca-dir` when absent.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use dlp::KnownSecrets;
use egress::ca::{BottleCa, LeafIssuer};
use egress::decision::Tokens;
use egress::proxy::Proxy;
use egress::{RouteFile, RouteSpec, load, render_keeping};
use secret::Secret;

use crate::cli::EgressArgs;
use sidecar::listen::Listener;

pub fn egress(args: EgressArgs) -> Result<i32> {
    let source = match (&args.bottle, &args.routes) {
        (Some(bottle), None) => Source::Bottle(bottle.clone()),
        (None, Some(routes)) => Source::RouteFile(routes.clone()),
        _ => bail!("give --bottle FILE.md (or, in a sidecar, --routes FILE)"),
    };
    // Tokens: by token_ref from this environment (bottle), or by slot as
    // EGRESS_TOKEN_<n> (route file, as the sidecar receives them).
    let (file, names) = source.load(&[])?;
    let mut tokens = Vec::new();
    let mut known = KnownSecrets::new();
    for (slot, name) in &names {
        let var = if matches!(source, Source::Bottle(_)) { name.clone() } else { format!("EGRESS_TOKEN_{slot}") };
        let value = std::env::var(&var).ok().filter(|v| !v.is_empty()).with_context(|| {
            format!(
                "{}: token {var} is not set in this environment; export it before starting",
                source.path().display()
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
    // The store's own hold timeout decides first (a clean `timeout` record).
    let sink = crate::supervise_cmd::sink(&args.operator)?;
    let hold = egress::holds::DEFAULT_HOLD + std::time::Duration::from_secs(5);
    let proxy =
        Arc::new(Proxy::new(file, Tokens(tokens), known, issuer, upstream_ca.as_deref())?.with_sink(sink, hold));
    eprintln!("{}", proxy.routes_report("loaded"));
    let reload = move |proxy: &Proxy| -> Result<()> {
        let (file, _) = source.load(&names)?;
        proxy.reload(file)?;
        Ok(())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(proxy, &args.listen, reload))?;
    Ok(0)
}

/// Where the routes come from; read again on SIGHUP.
enum Source {
    Bottle(PathBuf),
    RouteFile(PathBuf),
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Bottle(p) | Source::RouteFile(p) => p,
        }
    }

    /// The route file, and each token slot with the name of its source.
    /// `keep` holds the slots already handed out (a reload keeps them).
    fn load(&self, keep: &[(usize, String)]) -> Result<(RouteFile, Vec<(usize, String)>)> {
        match self {
            Source::Bottle(path) => {
                let bottle = read_bottle(path)?;
                let specs: Vec<RouteSpec> = bottle.routes.iter().map(|r| RouteSpec::from_manifest(&r.value)).collect();
                let rendered = render_keeping(&specs, bottle.log_level(), keep);
                // The same loader and validator the sidecar uses.
                let file = load(&rendered.text).context("the bottle's routes do not make a valid route file")?;
                Ok((file, rendered.slots))
            }
            Source::RouteFile(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                let file = load(&text).with_context(|| path.display().to_string())?;
                let slots = file.slots.iter().map(|s| (*s, format!("EGRESS_TOKEN_{s}"))).collect();
                Ok((file, slots))
            }
        }
    }
}

/// The effective bottle of a file: with `extends` resolved when the file
/// sits in a `bottles/` directory, else it must stand alone.
pub(crate) fn read_bottle(path: &Path) -> Result<manifest::Bottle> {
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

/// Accept on `listen` (`HOST:PORT` or `unix:PATH`) until SIGTERM or
/// SIGINT; on SIGHUP, `reload` (a failure keeps the old routes and says why).
async fn serve(proxy: Arc<Proxy>, listen: &str, reload: impl Fn(&Proxy) -> Result<()>) -> Result<()> {
    // `{:#}`: the whole chain of causes on one line.
    let mut on_hup = || eprintln!("{}", proxy.reload_report(reload(&proxy).map_err(|e| format!("{e:#}"))));
    let listener = Listener::bind(listen).await?;
    let ready = format!("bot-bottle: egress listening on {}", listener.name()?);
    listener.serve_until_stopped(&ready, |stream| proxy.clone().serve(stream), Some(&mut on_hup), None).await?;
    drop(listener);
    eprintln!("bot-bottle: egress stopped");
    Ok(())
}
