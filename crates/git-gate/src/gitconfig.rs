//! The agent's `~/.gitconfig` (spec/git-gate.md, "What the agent sees"):
//! the bottle's git identity, and per repo `insteadOf` rules that send
//! every spelling of the upstream URL to the gate. Pure: data in, text out.

use crate::ssh::SshUrl;

/// `gate` is the gate's base URL as the agent reaches it
/// (`http://127.0.0.1:<port>`); `repos` are (name, upstream URL).
pub fn agent_gitconfig(name: Option<&str>, email: Option<&str>, repos: &[(String, String)], gate: &str) -> String {
    let mut out = String::new();
    if name.is_some() || email.is_some() {
        out.push_str("[user]\n");
        if let Some(n) = name {
            out.push_str(&format!("\tname = {}\n", quote(n)));
        }
        if let Some(e) = email {
            out.push_str(&format!("\temail = {}\n", quote(e)));
        }
    }
    for (repo, upstream) in repos {
        let spellings = SshUrl::parse(upstream).map(|u| u.spellings()).unwrap_or_else(|_| vec![upstream.clone()]);
        out.push_str(&format!("[url {}]\n", quote(&format!("{}/{repo}.git", gate.trim_end_matches('/')))));
        for s in spellings {
            out.push_str(&format!("\tinsteadOf = {}\n", quote(&s)));
        }
    }
    out
}

/// A git config value in double quotes.
fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_both_spellings_of_each_upstream() {
        let text = agent_gitconfig(
            Some("Ada \"Bot\""),
            Some("ada@example.com"),
            &[("widgets".into(), "git@git.example.com:acme/widgets.git".into())],
            "http://127.0.0.1:9420/",
        );
        assert_eq!(
            text,
            "[user]\n\tname = \"Ada \\\"Bot\\\"\"\n\temail = \"ada@example.com\"\n[url \"http://127.0.0.1:9420/widgets.git\"]\n\tinsteadOf = \"ssh://git@git.example.com/acme/widgets.git\"\n\tinsteadOf = \"git@git.example.com:acme/widgets.git\"\n"
        );
    }

    #[test]
    fn real_git_reads_it_and_rewrites_the_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gitconfig");
        let text = agent_gitconfig(
            Some("Ada"),
            None,
            &[("w".into(), "ssh://git@h.example:2222/acme/w.git".into())],
            "http://127.0.0.1:1",
        );
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new("git")
            .args(["ls-remote", "--get-url", "ssh://git@h.example:2222/acme/w.git"])
            .env("GIT_CONFIG_GLOBAL", &file)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "http://127.0.0.1:1/w.git");
    }
}
