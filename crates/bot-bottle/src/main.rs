//! `bot-bottle`: the host CLI. Commands, pickers, the preflight; everything
//! else lives in the library crates (manifest, state, backend).

mod cli;
mod console;
mod context;
mod describe;
mod edit;
mod egress_cmd;
mod gate_cmd;
mod images_cmd;
mod init;
mod init_reaper;
mod launch;
mod lifecycle;
mod list;
mod scan;
mod sidecar_cmd;
mod supervise_cmd;
mod terminal;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::context::Context;

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<scan::UsageError>().is_some() => {
            eprintln!("bot-bottle: {e}");
            2
        }
        Err(e) => {
            let mut message = e.to_string();
            // Ctrl-C during a launch ends as a shell reports an interrupt.
            let interrupted = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<backend::BackendError>(), Some(backend::BackendError::Interrupted)));
            for cause in e.chain().skip(1) {
                message.push_str(&format!(": {cause}"));
            }
            eprintln!("bot-bottle: {message}");
            if interrupted { 130 } else { 1 }
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    // These need no home and no manifest library.
    let command = match cli.command {
        Command::Scan(args) => return scan::scan(args),
        Command::Egress(args) => return egress_cmd::egress(args),
        Command::GitGate(args) => return gate_cmd::git_gate(args),
        Command::GitGateHook => return Ok(git_gate::hook::run_hook()),
        Command::SuperviseServer(args) => return supervise_cmd::server(args),
        Command::Sidecar(args) => return sidecar_cmd::sidecar(args),
        Command::Shim(args) => return sidecar_cmd::shim(args),
        other => other,
    };
    let ctx = Context::from_env()?;
    match command {
        Command::Start(args) => launch::start(&ctx, args),
        Command::Resume(args) => launch::resume(&ctx, args),
        Command::List(args) => list::list(&ctx, args),
        Command::Info(args) => list::info(&ctx, args),
        Command::Images(args) => images_cmd::images(&ctx, args),
        Command::Init(args) => init::init(&ctx, args),
        Command::Edit(args) => edit::edit(&ctx, args),
        Command::Stop(args) => lifecycle::stop(&ctx, &args.identity),
        Command::Logs(args) => lifecycle::logs(&ctx, &args.identity, args.follow),
        Command::Commit(args) => lifecycle::commit(&ctx, args.identity.as_deref()),
        Command::Export(args) => lifecycle::export(&ctx, &args.identity, &args.dir),
        Command::Cleanup(args) => lifecycle::cleanup(&ctx, args.all, args.yes),
        Command::Supervise(args) => console::supervise(&ctx, args),
        Command::Scan(_)
        | Command::Egress(_)
        | Command::GitGate(_)
        | Command::GitGateHook
        | Command::SuperviseServer(_)
        | Command::Sidecar(_)
        | Command::Shim(_) => {
            unreachable!("handled above")
        }
    }
}
