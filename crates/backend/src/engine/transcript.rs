//! The agent's own session files (`~/.claude`, `~/.codex`, `~/.pi`, a
//! plugin's `session_dir`) at
//! session end: copied out of the agent into `state/<identity>/transcript/`
//! (spec/state.md), and put back when the bottle resumes, so the provider's
//! continue flag finds the conversation. What comes out of the agent is the
//! agent's to shape, so the copy takes regular files and directories only
//! (no links, no device files), keeps every path inside the transcript
//! directory, drops permission bits beyond the owner's, and stops at a size
//! bound.

use std::path::{Component, Path, PathBuf};

use crate::error::BackendError;

/// Where the snapshot goes in a state dir.
pub const TRANSCRIPT_DIR: &str = "transcript";
/// The plugin's session directory, when the provider is a plugin with one
/// (a line in the state dir, so `stop` from another process knows it).
pub const PLUGIN_SESSION_DIR_FILE: &str = "plugin-session-dir";

/// The session directories a snapshot copies: the built-in providers', and
/// the plugin's the launch recorded. A recorded path that is not plain is
/// ignored.
pub fn session_dirs(state_dir: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = crate::provider::session_dirs().map(str::to_string).collect();
    if let Ok(text) = std::fs::read_to_string(state_dir.join(PLUGIN_SESSION_DIR_FILE)) {
        let dir = text.trim();
        if plain(Path::new(dir)).is_some() && !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_string());
        }
    }
    dirs
}

/// The most a snapshot may hold.
pub const MAX_BYTES: u64 = 512 << 20;

/// The path of a tar entry if it is plain (normal components only).
fn plain(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The most one session directory's tar may be as it comes out of the
/// agent (a little above what the snapshot may hold).
pub const MAX_TAR: u64 = MAX_BYTES + (16 << 20);

/// Keep `tar` (the agent's session directory `dir`, as a tar of `dir/…`)
/// as that directory's transcript in `state_dir`, replacing the last.
/// Best effort: a failure is said and the session end goes on.
pub fn keep(state_dir: &Path, dir: &str, tar: &[u8]) {
    if tar.is_empty() || tar.len() as u64 > MAX_TAR {
        return;
    }
    let dest = state_dir.join(TRANSCRIPT_DIR);
    let _ = std::fs::remove_dir_all(dest.join(dir));
    if let Err(e) = unpack(tar, &dest) {
        eprintln!("bot-bottle: the transcript of {} is incomplete: {e}", state_dir.display());
    }
}

/// Unpack `tar` (as Docker's archive endpoint gives it) under `dest`:
/// returns how many files were written.
pub fn unpack(tar: &[u8], dest: &Path) -> Result<usize, BackendError> {
    let io = |what: &'static str| move |source| BackendError::Io { what: what.to_string(), source };
    std::fs::create_dir_all(dest).map_err(io("cannot create the transcript directory"))?;
    let mut archive = tar::Archive::new(tar);
    let (mut files, mut bytes) = (0, 0u64);
    for entry in archive.entries().map_err(io("cannot read the agent's session files"))? {
        let mut entry = entry.map_err(io("cannot read the agent's session files"))?;
        let Some(rel) = entry.path().ok().and_then(|p| plain(&p)) else { continue };
        let target = dest.join(rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(io("cannot write the transcript"))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                bytes += entry.header().size().unwrap_or(0);
                if bytes > MAX_BYTES {
                    return Err(BackendError::Launch(format!(
                        "the agent's session files are over {} MiB; the transcript stops there",
                        MAX_BYTES >> 20
                    )));
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io("cannot write the transcript"))?;
                }
                // Never through a link an earlier entry could not have made,
                // but a directory left from before: refuse to follow one.
                if target.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
                    continue;
                }
                let mut out = std::fs::File::create(&target).map_err(io("cannot write the transcript"))?;
                std::io::copy(&mut entry, &mut out).map_err(io("cannot write the transcript"))?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600));
                files += 1;
            }
            _ => {}
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared hostile-archive builder; links here point at `/etc`.
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let entries: Vec<_> =
            entries.iter().map(|(p, k, d)| (*p, *k, *d, (*k == tar::EntryType::Symlink).then_some("/etc"))).collect();
        crate::workspace::tests::tar_of(&entries)
    }

    #[test]
    fn only_plain_files_inside_the_directory_come_out() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            (".claude/", tar::EntryType::Directory, b""),
            (".claude/projects/a.jsonl", tar::EntryType::Regular, b"{\"m\":1}\n"),
            (".claude/link", tar::EntryType::Symlink, b""),
            (".claude/link/passwd", tar::EntryType::Regular, b"x"),
            ("../escaped", tar::EntryType::Regular, b"x"),
            ("/abs", tar::EntryType::Regular, b"x"),
        ]);
        let dest = dir.path().join("t");
        assert_eq!(unpack(&tar, &dest).unwrap(), 2);
        assert_eq!(std::fs::read(dest.join(".claude/projects/a.jsonl")).unwrap(), b"{\"m\":1}\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dest.join(".claude/projects/a.jsonl")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert!(!dir.path().join("escaped").exists());
        assert!(dest.join(".claude/link").symlink_metadata().is_ok_and(|m| m.is_dir()));
        assert!(!Path::new("/abs").exists());
    }
}
