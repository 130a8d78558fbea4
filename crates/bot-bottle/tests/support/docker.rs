//! What the tests on a real Docker Engine share: the check that one
//! answers, and a bottle's labelled objects.

use std::process::Command;

/// Panics with what to do when no Docker Engine answers.
pub fn engine_answers() {
    let ping = Command::new("curl")
        .args(["-fsS", "--max-time", "5", "--unix-socket", "/var/run/docker.sock", "http://docker/_ping"])
        .output();
    assert!(
        ping.is_ok_and(|o| o.status.success()),
        "no Docker Engine answers: run scripts/docker.sh (scripts/test.sh does)"
    );
}

/// Docker objects labelled with `identity`: (containers, networks).
pub fn objects(identity: &str) -> (Vec<String>, Vec<String>) {
    let list = |what: &[&str], format: &str| -> Vec<String> {
        let o = Command::new("docker")
            .args(what)
            .args(["--filter", &format!("label=dev.bot-bottle.identity={identity}"), "--format", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
    };
    (list(&["ps", "-a"], "{{.Names}}"), list(&["network", "ls"], "{{.Name}}"))
}
