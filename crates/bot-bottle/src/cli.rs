//! The command line surface (spec/cli.md), as clap definitions only.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bot-bottle",
    version,
    about = "Run coding agents unattended in bottles whose only way out is a sidecar they cannot touch.",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Launch a bottle and attach the agent.
    Start(StartArgs),
    /// Relaunch a preserved bottle: same identity, bottles and backend.
    Resume(ResumeArgs),
    /// What can be started (agents, bottles) and what runs (active).
    List(ListArgs),
    /// The resolved agent and effective bottle (env names, never values).
    Info(InfoArgs),
    /// Interactively write a new agent (and a starter bottle when none exists).
    Init(InitArgs),
    /// Open an agent (or with --bottle, a bottle) file in $VISUAL/$EDITOR, then validate it; reopen while invalid.
    Edit(EditArgs),
    /// Tear a running bottle down, preserving its state.
    Stop(IdentityArgs),
    /// The sidecar's egress / git-gate / supervise log lines.
    Logs(LogsArgs),
    /// Snapshot a running bottle so `resume` boots from it.
    Commit(CommitArgs),
    /// Copy a bottle's workspace (its /workspace, kept at every session end) to a new directory.
    Export(ExportArgs),
    /// Remove orphaned containers, networks, VMs and unpreserved state.
    Cleanup(CleanupArgs),
    /// The operator console: pending proposals from every bottle; approve, modify, reject.
    Supervise(SuperviseArgs),
    /// Build the images bottles run from (base, sidecar, agent), reusing unchanged ones.
    Images(ImagesArgs),
    /// Scan files, directories, stdin or a git commit range for secrets.
    Scan(ScanArgs),
    /// Run the egress proxy standalone from a bottle file (no sandbox).
    Egress(EgressArgs),
    /// Run git-gate from a bottle file: smart-HTTP git over mirrors of its repos.
    #[command(hide = true)]
    GitGate(GitGateArgs),
    /// The git-gate mirrors' pre-receive hook (git runs it).
    #[command(hide = true)]
    GitGateHook,
    /// Run the supervise MCP server over one bottle's proposal store.
    #[command(hide = true)]
    SuperviseServer(SuperviseServerArgs),
    /// The sidecar: egress, git-gate and supervise in one process (inside the sidecar container).
    #[command(hide = true)]
    Sidecar(SidecarArgs),
    /// Relay the agent's loopback ports to the sidecar's sockets (in the agent's network namespace).
    #[command(hide = true)]
    Shim(ShimArgs),
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The agent to run (picked interactively when omitted on a terminal).
    pub agent: Option<String>,
    /// A bottle to use; repeat for more, in merge order (later wins).
    #[arg(long = "bottle", value_name = "NAME")]
    pub bottles: Vec<String>,
    /// How to isolate the bottle (default: BOT_BOTTLE_BACKEND, else docker).
    #[arg(long, value_name = "docker|smolmachines")]
    pub backend: Option<String>,
    /// A display name; also the identity (slugified).
    #[arg(long)]
    pub label: Option<String>,
    /// The label's colour (red, green, yellow, blue, magenta, cyan, white, or 0-255).
    #[arg(long)]
    pub color: Option<String>,
    /// Copy the current directory (with .git) into the agent's workspace.
    #[arg(long)]
    pub cwd: bool,
    #[command(flatten)]
    pub launch: LaunchFlags,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The bottle to resume (see `bot-bottle list active`).
    pub identity: String,
    /// For a bottle whose metadata.json records no backend (written before
    /// the field existed): where to resume it (default: BOT_BOTTLE_BACKEND,
    /// else docker). A recorded backend always wins; naming another is an error.
    #[arg(long, value_name = "docker|smolmachines")]
    pub backend: Option<String>,
    #[command(flatten)]
    pub launch: LaunchFlags,
}

/// Flags shared by `start` and `resume`.
#[derive(Args, Debug)]
pub struct LaunchFlags {
    /// Print the preflight and exit; launch nothing, leave no state.
    #[arg(long, env = "BOT_BOTTLE_DRY_RUN", value_parser = clap::builder::FalseyValueParser::new())]
    pub dry_run: bool,
    /// Take the defaults without asking: the agent's bottles, a random identity, the default backend, launch.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// No pickers, no questions; run the provider's one-shot mode.
    #[arg(long, requires = "prompt")]
    pub headless: bool,
    /// The prompt for --headless.
    #[arg(long, requires = "headless")]
    pub prompt: Option<String>,
    /// Print the preflight as JSON (with --dry-run).
    #[arg(long)]
    pub json: bool,
    /// Start the agent with remote control on (Claude Code's Remote Control: drive the session from claude.ai/code or the Claude app), optionally naming the session.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "", conflicts_with = "headless")]
    pub remote_control: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this section (default: all three).
    #[arg(value_enum)]
    pub what: Option<ListWhat>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListWhat {
    Agents,
    Bottles,
    Active,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The agent to describe (see `bot-bottle list agents`).
    pub agent: String,
    /// A bottle to use instead of the agent's own; repeat for more, in merge order.
    #[arg(long = "bottle", value_name = "NAME")]
    pub bottles: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The new agent's name (asked when omitted).
    #[arg(long)]
    pub agent: Option<String>,
    /// Its system prompt (asked when omitted).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Its default bottle (asked when omitted; created when none exists).
    #[arg(long)]
    pub bottle: Option<String>,
    /// The provider of a starter bottle: claude, codex, pi or shell (asked when omitted; default claude).
    #[arg(long)]
    pub provider: Option<String>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The agent to edit (see `bot-bottle list agents`).
    #[arg(required_unless_present = "bottle", conflicts_with = "bottle")]
    pub agent: Option<String>,
    /// Edit this bottle instead (see `bot-bottle list bottles`).
    #[arg(long, value_name = "NAME")]
    pub bottle: Option<String>,
}

#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// The bottle (see `bot-bottle list active`).
    pub identity: String,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The bottle (see `bot-bottle list active`).
    pub identity: String,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// The running bottle to snapshot (picked when omitted on a terminal).
    pub identity: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The bottle (see `bot-bottle list active`).
    pub identity: String,
    /// Where to write it: a new or empty directory (nothing is overwritten).
    pub dir: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Also remove preserved state (asks first).
    #[arg(long)]
    pub all: bool,
    /// Remove without asking.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files or directories to scan (recursively), or - for stdin. Default: .
    pub paths: Vec<std::path::PathBuf>,
    /// Print findings as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// A gitleaks-format rule file; `[extend] useDefault = true` keeps the
    /// built-in rules, otherwise only the file's rules run.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<std::path::PathBuf>,
    /// Scan the lines (and commit messages) a commit range adds, e.g. main..HEAD.
    #[arg(long, value_name = "RANGE")]
    pub git: Option<String>,
    /// Detectors to run: token_patterns, entropy, crypto.
    #[arg(long, value_delimiter = ',', default_value = "token_patterns")]
    pub detectors: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EgressArgs {
    /// The bottle file whose `egress` routes to enforce.
    #[arg(long, value_name = "FILE.md", required_unless_present = "routes")]
    pub bottle: Option<std::path::PathBuf>,
    /// A generated route file (inside the sidecar); tokens come from `EGRESS_TOKEN_<n>`.
    #[arg(long, value_name = "FILE", hide = true, conflicts_with = "bottle")]
    pub routes: Option<std::path::PathBuf>,
    /// Where the CA lives (ca.pem, ca.key); minted there when absent.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: std::path::PathBuf,
    /// HOST:PORT or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Extra trusted roots for upstream TLS (PEM); also BOT_BOTTLE_UPSTREAM_CA.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// Where `supervise` holds go: a bottle's proposal store (the sidecar's
/// wiring). Without it, holds fail closed.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// The bottle's proposal store.
    #[arg(long, value_name = "FILE", hide = true, requires = "identity")]
    pub proposals: Option<std::path::PathBuf>,
    /// The bottle's identity, recorded with each proposal.
    #[arg(long, hide = true, requires = "proposals")]
    pub identity: Option<String>,
}

#[derive(Args, Debug)]
pub struct GitGateArgs {
    /// The bottle file whose `git-gate` repos to serve.
    #[arg(long, value_name = "FILE.md")]
    pub bottle: std::path::PathBuf,
    /// Where the mirrors, keys and the hook socket live.
    #[arg(long, value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// HOST:PORT or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

#[derive(Args, Debug)]
pub struct SuperviseServerArgs {
    /// The bottle's proposal store (created when absent).
    #[arg(long, value_name = "FILE")]
    pub store: std::path::PathBuf,
    /// The bottle's identity, recorded with each proposal.
    #[arg(long)]
    pub identity: String,
    /// HOST:PORT or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The egress route file that approved route changes rewrite.
    #[arg(long, value_name = "FILE")]
    pub routes: Option<std::path::PathBuf>,
    /// The egress process to send SIGHUP after a route change.
    #[arg(long, value_name = "PID")]
    pub egress_pid: Option<i32>,
    /// Seconds a tool call waits for the operator.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub tool_timeout: u64,
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// Print what is pending and exit.
    #[arg(long)]
    pub once: bool,
    /// Print what is pending as JSON and exit.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub action: ImagesAction,
}

#[derive(Subcommand, Debug)]
pub enum ImagesAction {
    /// Assemble the base image from this host's Debian packages when absent,
    /// then build the sidecar and agent images.
    Build {
        /// The agent provider whose image to build: claude, codex, pi or shell.
        #[arg(long, default_value = "shell")]
        provider: String,
    },
    /// Remove bot-bottle images nothing needs: keeps what this bot-bottle runs from, what bottles with state here use, their commits, and recent builds.
    Prune {
        /// Remove without asking.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        /// Keep images built more recently than this (a launch may be about to use one).
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
        keep_recent: std::time::Duration,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct SidecarArgs {
    /// The sidecar's config (sidecar.json in the bottle's state dir).
    #[arg(long, value_name = "FILE")]
    pub config: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct ShimArgs {
    /// PORT=SOCKET: listen on ADDR:PORT, relay to the unix socket.
    #[arg(long, value_name = "PORT=SOCKET", required = true)]
    pub map: Vec<String>,
    /// The address to listen on: loopback in the agent's namespace (docker),
    /// the sidecar bundle's own IP (smolmachines).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub listen: std::net::IpAddr,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command, flag and argument a user can see says what it is in
    /// `--help`.
    #[test]
    fn every_visible_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if !cmd.is_hide_set() && cmd.get_about().is_none() && !path.is_empty() {
                missing.push(format!("{path} (the command)"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if !sub.is_hide_set() {
                    walk(sub, format!("{path} {}", sub.get_name()).trim(), missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text for: {missing:#?}");
    }
}
