//! A real terminal for the interactive paths: a private tmux server runs a
//! shell script, `send-keys` types, `capture-pane` reads the screen.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Run `script` (written to `dir/run.sh`, given `dir` as `$1`) in a
    /// fresh tmux server on a 220x50 terminal.
    pub fn run(name: &str, dir: &Path, script: &str) -> Tmux {
        std::fs::write(dir.join("run.sh"), script).unwrap();
        let socket = format!("bbtest-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "220", "-y", "50", "sh"])
            .arg(dir.join("run.sh"))
            .arg(dir)
            .status()
            .expect("tmux must be installed to test the terminal paths (scripts/test.sh installs it)");
        assert!(status.success());
        Tmux { socket }
    }

    pub fn screen(&self, escapes: bool) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "capture-pane", "-p", "-J"]);
        if escapes {
            cmd.arg("-e");
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    }

    /// Wait until the screen shows `text` (bounded: 20 s).
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_for_within(text, Duration::from_secs(20))
    }

    /// Wait until the screen shows `text`, for at most `bound`.
    pub fn wait_for_within(&self, text: &str, bound: Duration) -> String {
        let deadline = Instant::now() + bound;
        loop {
            let s = self.screen(false);
            if s.contains(text) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {text:?}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A tmux format of the window (`#{window_bell_flag}`).
    pub fn window(&self, format: &str) -> String {
        let o = Command::new("tmux").args(["-L", &self.socket, "display-message", "-p", format]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(
                Command::new("tmux")
                    .args(["-L", &self.socket, "send-keys", "-t", "0"])
                    .arg(k)
                    .status()
                    .unwrap()
                    .success()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}
