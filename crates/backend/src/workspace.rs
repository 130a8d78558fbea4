//! The agent's workspace out of a bottle, so a user's work is never lost.
//!
//! At every session end (and on `export` of a running bottle) `/workspace`
//! is copied out of the agent into `state/<identity>/workspace/`; `resume`
//! copies it back in (unless a commit is newer), and `bot-bottle export`
//! copies it to a directory the user names. What comes out of the agent is
//! the agent's to shape, so the copy takes regular files, directories and
//! symbolic links (created last, never followed or written through), keeps
//! every path inside the workspace, drops set-id and group/other write
//! bits, and stops at a size bound (4 GiB, or `BOT_BOTTLE_WORKSPACE_MAX`).
//! A workspace that cannot be copied out (over the bound, a full disk) is
//! not lost with its bottle: the backend commits the bottle instead, and
//! [`UNCOPIED`] in the state dir says so until a later copy succeeds.
//!
//! Backend-neutral: each backend hands a tar of `workspace/…` (as `docker
//! cp` or `tar -C / workspace` writes it).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use crate::error::BackendError;

/// Where the kept workspace goes in a state dir.
pub const KEPT_DIR: &str = "workspace";
/// Written when a copy is complete: its mtime is the copy's time.
const KEPT_RECORD: &str = "workspace.kept";
/// The most a kept workspace may hold unless [`MAX_ENV`] says otherwise:
/// an agent cannot fill the host's disk through it.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// The environment variable that sets the bound (a size: `16GiB`).
pub const MAX_ENV: &str = "BOT_BOTTLE_WORKSPACE_MAX";
/// Written in the state dir when a session end could not copy the
/// workspace out and committed the bottle instead; holds why. Removed by
/// the next copy that succeeds.
pub const UNCOPIED: &str = "workspace.uncopied";

/// The most a kept workspace may hold: [`MAX_ENV`] when it is a size, else
/// [`DEFAULT_MAX_BYTES`] (a value that is not a size is said, once per
/// copy, and the default holds).
pub fn max_bytes() -> u64 {
    match std::env::var(MAX_ENV) {
        Ok(text) => manifest::parse_size(&text).unwrap_or_else(|e| {
            eprintln!(
                "bot-bottle: {MAX_ENV}: {e}; the workspace bound stays {}",
                manifest::show_size(DEFAULT_MAX_BYTES)
            );
            DEFAULT_MAX_BYTES
        }),
        Err(_) => DEFAULT_MAX_BYTES,
    }
}

/// Why the last session end could not copy the workspace out (and
/// committed the bottle instead), while that is so.
pub fn uncopied(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(state_dir.join(UNCOPIED)).ok()
}

/// Record that the workspace could not be copied out (`why`) and the
/// bottle was committed instead.
pub fn record_uncopied(state_dir: &Path, why: &str) {
    let _ = std::fs::write(state_dir.join(UNCOPIED), why);
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
    let what = what.into();
    move |source| BackendError::Io { what, source }
}

/// The kept workspace of a state dir, when a complete copy exists.
pub fn kept(state_dir: &Path) -> Option<PathBuf> {
    let dir = state_dir.join(KEPT_DIR);
    (dir.is_dir() && state_dir.join(KEPT_RECORD).is_file()).then_some(dir)
}

/// When the kept workspace was copied out.
pub fn kept_at(state_dir: &Path) -> Option<SystemTime> {
    kept(state_dir)?;
    std::fs::metadata(state_dir.join(KEPT_RECORD)).ok()?.modified().ok()
}

/// What a launch puts in `/workspace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The copy kept at the last session end: the agent's latest work.
    Kept(PathBuf),
    /// The host's cwd (`--cwd` on a bottle with no work of its own yet).
    HostCwd(PathBuf),
    /// Nothing: the image's own `/workspace` (a committed snapshot's, or
    /// an empty one).
    Nothing,
}

/// What a launch of the bottle in `state_dir` puts in `/workspace`:
/// its kept workspace, unless it boots from a commit made after that copy
/// (a resume copies nothing over a committed workspace); the host's cwd
/// only when the bottle has neither (never over the agent's work).
pub fn source(state_dir: &Path, committed_at: Option<SystemTime>, host_cwd: Option<&Path>) -> Source {
    match (kept(state_dir), kept_at(state_dir), committed_at) {
        (Some(dir), Some(at), Some(commit)) if at > commit => Source::Kept(dir),
        (Some(dir), _, None) => Source::Kept(dir),
        (_, _, Some(_)) => Source::Nothing,
        (None, _, None) => host_cwd.map_or(Source::Nothing, |d| Source::HostCwd(d.to_path_buf())),
    }
}

/// What one copy brought out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Files copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Entries left behind: device files, paths leaving the workspace.
    pub skipped: usize,
}

/// Replace the kept workspace of `state_dir` with `tar` (entries under
/// `workspace/`). The old copy is replaced only once the new one is
/// complete; a failure leaves the old one and says why.
pub fn keep(state_dir: &Path, tar: impl Read) -> Result<Kept, BackendError> {
    let kept = unpack_beside(state_dir, tar)?;
    replace_with_unpacked(state_dir)?;
    Ok(kept)
}

/// Where a new copy is unpacked before it replaces the kept one.
fn fresh(state_dir: &Path) -> PathBuf {
    state_dir.join(format!("{KEPT_DIR}.partial"))
}

/// The first half of [`keep`]: `tar` unpacked beside the kept copy, which
/// is left as it is (a failure removes what was unpacked).
pub fn unpack_beside(state_dir: &Path, tar: impl Read) -> Result<Kept, BackendError> {
    let fresh = fresh(state_dir);
    let _ = std::fs::remove_dir_all(&fresh);
    unpack(tar, &fresh).inspect_err(|_| discard_unpacked(state_dir))
}

/// Remove what [`unpack_beside`] unpacked (the copy it came from failed).
pub fn discard_unpacked(state_dir: &Path) {
    let _ = std::fs::remove_dir_all(fresh(state_dir));
}

/// The second half of [`keep`]: what [`unpack_beside`] unpacked replaces
/// the kept copy.
pub fn replace_with_unpacked(state_dir: &Path) -> Result<(), BackendError> {
    let fresh = fresh(state_dir);
    let dest = state_dir.join(KEPT_DIR);
    let old = state_dir.join(format!("{KEPT_DIR}.old"));
    let _ = std::fs::remove_dir_all(&old);
    if dest.exists() {
        std::fs::rename(&dest, &old).map_err(io("cannot replace the kept workspace"))?;
    }
    std::fs::rename(&fresh, &dest).map_err(io("cannot keep the workspace"))?;
    let _ = std::fs::remove_dir_all(&old);
    std::fs::write(state_dir.join(KEPT_RECORD), b"").map_err(io("cannot record the kept workspace"))?;
    let _ = std::fs::remove_file(state_dir.join(UNCOPIED));
    Ok(())
}

/// The most a tar of a workspace whose files hold at most `max` bytes may
/// take: its headers and padding on top (a tar of many empty files is
/// bounded too).
pub fn stream_bound(max: u64) -> u64 {
    max + max / 8 + (64 << 20)
}

/// A reader that fails (`FileTooLarge`) past `left` bytes.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or(std::io::ErrorKind::FileTooLarge)?;
        Ok(n)
    }
}

/// The error of a workspace over the bound `max`.
pub fn over(max: u64) -> String {
    format!("the agent's workspace is over {} ({MAX_ENV} sets the bound)", manifest::show_size(max))
}

/// The path of a tar entry inside the workspace: `workspace/a/b` → `a/b`;
/// `None` for the workspace itself or anything that is not plain.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut parts = path.components().filter(|c| !matches!(c, Component::CurDir));
    match parts.next() {
        Some(Component::Normal(top)) if top == KEPT_DIR => {}
        _ => return None,
    }
    let mut out = PathBuf::new();
    for c in parts {
        match c {
            Component::Normal(p) => out.push(p),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Whether any directory between `root` and `path` is a symbolic link (so
/// that a write there would land outside).
fn through_link(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_path_buf();
    let parents: Vec<_> = rel.parent().map(|p| p.components().collect()).unwrap_or_default();
    for c in parents {
        at.push(c);
        if at.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            return true;
        }
    }
    false
}

/// Unpack a tar of `workspace/…` into `dest` (created).
pub fn unpack(tar: impl Read, dest: &Path) -> Result<Kept, BackendError> {
    unpack_within(tar, dest, max_bytes())
}

/// [`unpack`] with its files holding at most `max` bytes.
fn unpack_within(tar: impl Read, dest: &Path, max: u64) -> Result<Kept, BackendError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest).map_err(io(format!("cannot create {}", dest.display())))?;
    let mut archive = tar::Archive::new(Bounded { inner: tar, left: stream_bound(max) });
    let mut kept = Kept::default();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut saw_top = false;
    let read = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::FileTooLarge => BackendError::Invalid { message: over(max) },
        _ => BackendError::Io { what: "cannot read the agent's workspace".into(), source: e },
    };
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let Some(rel) = entry.path().ok().and_then(|p| inside(&p)) else {
            // The top directory itself, or a path that would leave it.
            match entry.path() {
                Ok(p)
                    if p.components()
                        .filter(|c| !matches!(c, Component::CurDir))
                        .eq([Component::Normal(KEPT_DIR.as_ref())]) =>
                {
                    saw_top = true
                }
                _ => kept.skipped += 1,
            }
            continue;
        };
        if through_link(dest, &rel) {
            kept.skipped += 1;
            continue;
        }
        let target = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(io(format!("cannot write {}", target.display())))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                kept.bytes += entry.header().size().unwrap_or(0);
                if kept.bytes > max {
                    return Err(BackendError::Invalid { message: over(max) });
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io(format!("cannot write {}", parent.display())))?;
                }
                if target.symlink_metadata().is_ok() {
                    let _ = std::fs::remove_file(&target);
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io(format!("cannot write {}", target.display())))?;
                std::io::copy(&mut entry, &mut out).map_err(io(format!("cannot write {}", target.display())))?;
                // The owner's bits, and read for others; no set-id, no
                // group or world write.
                let mode = (mode & 0o755) | 0o600;
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
                kept.files += 1;
            }
            tar::EntryType::Symlink => match entry.link_name() {
                Ok(Some(to)) => links.push((rel, to.into_owned())),
                _ => kept.skipped += 1,
            },
            _ => kept.skipped += 1,
        }
    }
    if !saw_top {
        // Not an archive of the workspace (a download cut short, an
        // error's text): the copy before it stays.
        return Err(BackendError::Invalid {
            message: "the copy of the agent's workspace is not an archive of it".into(),
        });
    }
    // Links last: no entry was written through one.
    for (rel, to) in links {
        if through_link(dest, &rel) {
            kept.skipped += 1;
            continue;
        }
        let at = dest.join(&rel);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("cannot write {}", parent.display())))?;
        }
        if at.symlink_metadata().is_ok() {
            kept.skipped += 1;
            continue;
        }
        std::os::unix::fs::symlink(&to, &at).map_err(io(format!("cannot write {}", at.display())))?;
        kept.files += 1;
    }
    Ok(kept)
}

/// The relative paths under `root` with what each is (file bytes, a link's
/// target, or a directory), sorted; never follows a link.
fn listing(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Option<Vec<u8>>)>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else { return };
        for e in entries.flatten() {
            let rel = rel.join(e.file_name());
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                out.push((rel.clone(), None));
                walk(root, &rel, out);
            } else if meta.file_type().is_symlink() {
                let to = std::fs::read_link(e.path()).unwrap_or_default();
                out.push((rel, Some(format!("link:{}", to.display()).into_bytes())));
            } else if meta.is_file() {
                out.push((rel, Some(std::fs::read(e.path()).unwrap_or_default())));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// How many paths differ between the kept workspace and what was copied in
/// (`original`: the host cwd, or nothing): added, removed or changed.
pub fn changes(kept: &Path, original: Option<&Path>) -> usize {
    let now = listing(kept);
    let before = original.map(listing).unwrap_or_default();
    let mut i = 0;
    let mut j = 0;
    let mut changed = 0;
    while i < now.len() || j < before.len() {
        match (now.get(i), before.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                changed += usize::from(a.1 != b.1);
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                changed += 1;
                i += 1;
            }
            (Some(_), None) => {
                changed += 1;
                i += 1;
            }
            _ => {
                changed += 1;
                j += 1;
            }
        }
    }
    changed
}

/// Copy the kept workspace to `dest`, which must not exist or be an empty
/// directory: nothing of the user's is ever overwritten. Links are copied
/// as links. Returns how many files and links were written.
pub fn export(kept: &Path, dest: &Path) -> Result<usize, BackendError> {
    if let Ok(mut entries) = std::fs::read_dir(dest) {
        if entries.next().is_some() {
            return Err(BackendError::Invalid {
                message: format!("{} is not empty; export writes only into a new or empty directory", dest.display()),
            });
        }
    } else if dest.exists() {
        return Err(BackendError::Invalid {
            message: format!("{} exists and is not a directory; name a new directory", dest.display()),
        });
    }
    std::fs::create_dir_all(dest).map_err(io(format!("cannot create {}", dest.display())))?;
    let mut written = 0;
    for (rel, _) in listing(kept) {
        let from = kept.join(&rel);
        let to = dest.join(&rel);
        let meta = from.symlink_metadata().map_err(io(format!("cannot read {}", from.display())))?;
        if meta.is_dir() {
            std::fs::create_dir_all(&to).map_err(io(format!("cannot create {}", to.display())))?;
        } else if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&from).map_err(io(format!("cannot read {}", from.display())))?;
            std::os::unix::fs::symlink(link, &to).map_err(io(format!("cannot write {}", to.display())))?;
            written += 1;
        } else {
            std::fs::copy(&from, &to).map_err(io(format!("cannot write {}", to.display())))?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar of `(path, kind, data, link target)` entries with set-uid mode
    /// bits and raw path bytes, so `..` and absolute paths can be written:
    /// the hostile archives the unpackers must refuse.
    pub(crate) fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o6777);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Raw path bytes: the builder's own checks would refuse `..`.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn files_dirs_and_links_come_out_and_nothing_leaves_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        use tar::EntryType::{Directory, Regular, Symlink};
        let tar = tar_of(&[
            ("workspace/", Directory, b"", None),
            ("workspace/src/", Directory, b"", None),
            ("workspace/src/main.rs", Regular, b"fn main() {}\n", None),
            ("workspace/run.sh", Regular, b"#!/bin/sh\n", None),
            // A link to outside, then a file "through" it.
            ("workspace/out", Symlink, b"", Some(outside.to_str().unwrap())),
            ("workspace/out/planted", Regular, b"x", None),
            ("workspace/../escaped", Regular, b"x", None),
            ("workspace/a/../../escaped2", Regular, b"x", None),
            ("/abs", Regular, b"x", None),
            ("workspace/dev", tar::EntryType::Char, b"", None),
        ]);
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let k = keep(&state, &tar[..]).unwrap();
        let ws = kept(&state).unwrap();
        assert_eq!(std::fs::read(ws.join("src/main.rs")).unwrap(), b"fn main() {}\n");
        // The file was written where its path says, inside; the link that
        // would have claimed the same path is left out.
        assert!(!outside.join("planted").exists(), "written through a link");
        assert_eq!(std::fs::read(ws.join("out/planted")).unwrap(), b"x");
        assert!(!dir.path().join("escaped").exists() && !state.join("escaped2").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ws.join("run.sh")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "set-id and group/world write dropped, exec kept");
        assert_eq!(k.files, 3);
        assert_eq!(k.skipped, 5, "{k:?}");
        // A link alone comes out as a link, never followed.
        let state2 = dir.path().join("state2");
        std::fs::create_dir(&state2).unwrap();
        let tar = tar_of(&[
            ("workspace/", Directory, b"", None),
            ("workspace/out", Symlink, b"", Some(outside.to_str().unwrap())),
        ]);
        keep(&state2, &tar[..]).unwrap();
        assert_eq!(std::fs::read_link(kept(&state2).unwrap().join("out")).unwrap(), outside);
    }

    #[test]
    fn a_new_copy_replaces_the_old_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        use tar::EntryType::Directory;
        use tar::EntryType::Regular;
        keep(dir.path(), &tar_of(&[("workspace/", Directory, b"", None), ("workspace/a", Regular, b"1", None)])[..])
            .unwrap();
        let ws = kept(dir.path()).unwrap();
        assert!(keep(dir.path(), &b"not a tar at all, truncated"[..]).is_err());
        assert!(keep(dir.path(), &[][..]).is_err(), "an empty download is not an empty workspace");
        assert_eq!(std::fs::read(ws.join("a")).unwrap(), b"1");
        keep(dir.path(), &tar_of(&[("workspace/", Directory, b"", None), ("workspace/b", Regular, b"2", None)])[..])
            .unwrap();
        assert!(!ws.join("a").exists() && ws.join("b").exists());
    }

    #[test]
    fn a_workspace_over_the_bound_is_an_error_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        use tar::EntryType::{Directory, Regular};
        let tar = tar_of(&[("workspace/", Directory, b"", None), ("workspace/a", Regular, b"12345", None)]);
        assert!(unpack_within(&tar[..], &dir.path().join("fits"), 5).is_ok());
        let e = unpack_within(&tar[..], &dir.path().join("over"), 4).unwrap_err().to_string();
        assert!(e.contains("over 1 MiB") && e.contains(MAX_ENV), "{e}");
        // The stream itself is bounded too (headers, empty files).
        let mut r = Bounded { inner: &[0u8; 100][..], left: 99 };
        let e = std::io::Read::read_to_end(&mut r, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        let mut r = Bounded { inner: &[0u8; 100][..], left: 100 };
        assert_eq!(std::io::Read::read_to_end(&mut r, &mut Vec::new()).unwrap(), 100);
        assert!(stream_bound(DEFAULT_MAX_BYTES) > DEFAULT_MAX_BYTES);
    }

    #[test]
    fn what_a_launch_copies_in() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Path::new("/home/me/project");
        // A first launch: the host's cwd (or nothing without --cwd).
        assert_eq!(source(dir.path(), None, Some(cwd)), Source::HostCwd(cwd.into()));
        assert_eq!(source(dir.path(), None, None), Source::Nothing);
        // A commit and nothing kept since: nothing over the committed workspace.
        let commit = SystemTime::now();
        assert_eq!(source(dir.path(), Some(commit), Some(cwd)), Source::Nothing);
        // Kept work wins over the host's cwd, and over an older commit.
        let tar = tar_of(&[("workspace/", tar::EntryType::Directory, b"", None)]);
        keep(dir.path(), &tar[..]).unwrap();
        let ws = dir.path().join(KEPT_DIR);
        assert_eq!(source(dir.path(), None, Some(cwd)), Source::Kept(ws.clone()));
        let before = commit - std::time::Duration::from_secs(60);
        assert_eq!(source(dir.path(), Some(before), Some(cwd)), Source::Kept(ws));
        // A commit newer than the kept copy: the commit's workspace.
        let after = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(source(dir.path(), Some(after), Some(cwd)), Source::Nothing);
    }

    #[test]
    fn changes_against_what_was_copied_in() {
        let dir = tempfile::tempdir().unwrap();
        let (cwd, ws) = (dir.path().join("cwd"), dir.path().join("ws"));
        for d in [&cwd, &ws] {
            std::fs::create_dir_all(d.join("src")).unwrap();
            std::fs::write(d.join("src/lib.rs"), "same").unwrap();
        }
        assert_eq!(changes(&ws, Some(&cwd)), 0);
        std::fs::write(ws.join("src/lib.rs"), "edited").unwrap();
        std::fs::write(ws.join("new.txt"), "n").unwrap();
        std::fs::write(cwd.join("gone.txt"), "g").unwrap();
        assert_eq!(changes(&ws, Some(&cwd)), 3);
        assert_eq!(changes(&ws, None), 3, "src/, src/lib.rs, new.txt");
    }

    #[test]
    fn export_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("d")).unwrap();
        std::fs::write(ws.join("d/f"), "work").unwrap();
        std::os::unix::fs::symlink("d/f", ws.join("l")).unwrap();
        let dest = dir.path().join("out");
        assert_eq!(export(&ws, &dest).unwrap(), 2);
        assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"work");
        assert_eq!(std::fs::read_link(dest.join("l")).unwrap(), Path::new("d/f"));
        let e = export(&ws, &dest).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, "mine").unwrap();
        assert!(export(&ws, &file).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    }
}
