//! The smolvm stand-in (`smolvm-standin.py` beside this file): the
//! environment that points the CLI at it, and what it recorded.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The stand-in's state and its log of every argv, under `dir`.
pub struct StandIn {
    pub dir: PathBuf,
}

impl StandIn {
    pub fn new(dir: &Path) -> StandIn {
        std::fs::create_dir_all(dir.join("machines")).unwrap();
        StandIn { dir: dir.to_path_buf() }
    }

    /// The stand-in of the bot-bottle home `home`, in a directory beside it.
    pub fn beside(home: &Path) -> StandIn {
        StandIn::new(&home.with_file_name("smolvm"))
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("argv.jsonl")
    }

    /// Point `cmd` (the bot-bottle CLI) at the stand-in.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("BOT_BOTTLE_SMOLVM", repo_root().join("crates/bot-bottle/tests/support/smolvm-standin.py"))
            .env("BOT_BOTTLE_SMOLVM_STANDIN", "1")
            .env("SMOLVM_STANDIN_DIR", self.dir.join("machines"))
            .env("SMOLVM_STANDIN_LOG", self.log())
            .env("SMOLVM_STANDIN_SURFACE", repo_root().join("crates/backend/src/smolmachines/smolvm-surface.txt"))
    }

    /// Every argv the backend ran, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The plain environment the backend gives the agent in `machine`
    /// (the `--env` of its last exec as the agent's user).
    pub fn agent_env(&self, machine: &str) -> Vec<String> {
        let calls = self.calls();
        let Some(call) = calls.iter().rev().find(|c| {
            c[..2] == ["machine", "exec"]
                && c.windows(2).any(|w| w == ["--name", machine])
                && c.windows(2).any(|w| w == ["--user", "1000"])
        }) else {
            return Vec::new();
        };
        let end = call.iter().position(|a| a == "--").unwrap_or(call.len());
        call[..end].windows(2).filter(|w| w[0] == "--env").map(|w| w[1].clone()).collect()
    }

    /// The container that plays `machine`.
    pub fn container(machine: &str) -> String {
        format!("smolvm-standin-{machine}")
    }
}
