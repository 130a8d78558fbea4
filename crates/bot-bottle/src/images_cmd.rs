//! `bot-bottle images build`: the images bottles run from, built ahead of
//! time (`start` builds what is missing the same way, with the same
//! progress lines).

use anyhow::{Result, bail};
use backend::docker::{engine, images};

use crate::cli::{ImagesAction, ImagesArgs};

pub fn images(args: ImagesArgs) -> Result<i32> {
    let ImagesAction::Build { provider } = args.action;
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
        let agent = images::ensure_provider(&docker, &provider, &base, &progress)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no image recipe for provider '{provider}'"))?;
        eprintln!("bot-bottle: images ready in {:.1} s", started.elapsed().as_secs_f64());
        println!("base     {base}\nsidecar  {sidecar}\nagent    {agent}");
        anyhow::Ok(())
    })?;
    Ok(0)
}
