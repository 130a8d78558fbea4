//! The lock one bottle's launch and ends take in turn: its launch (from
//! start to the self-test passed), its session's own teardown, `bot-bottle
//! stop` from another terminal, and the stop that resume or cleanup gives
//! an orphan. Each keeps the agent's work and removes the bottle while
//! holding it, so whichever comes second finds the bottle gone instead of
//! half removed (and says nothing of a copy it could not make), and no
//! stop copies out the empty `/workspace` of an agent whose files are not
//! in yet. An advisory `flock` on the state dir itself: no file is added
//! to the layout, and the kernel releases it when its holder dies.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held while one end of a bottle runs; released when dropped.
#[derive(Debug)]
pub struct EndLock {
    _dir: File,
}

impl EndLock {
    /// How long an end waits for another before going on without the
    /// lock: keeping the agent's work matters more than saying it once.
    /// (A stop copying a workspace near `BOT_BOTTLE_WORKSPACE_MAX` out of
    /// a slow machine takes minutes.)
    pub const PATIENCE: Duration = Duration::from_secs(15 * 60);

    /// Wait for the lock on `state_dir` up to `patience`, calling
    /// `waiting` once if it is held (to say so). `None` when the dir does
    /// not exist (no bottle to end) or the wait ran out.
    pub fn wait(state_dir: &Path, patience: Duration, waiting: impl FnOnce()) -> Option<EndLock> {
        let dir = File::open(state_dir).ok()?;
        let deadline = Instant::now() + patience;
        let mut waiting = Some(waiting);
        loop {
            match dir.try_lock() {
                Ok(()) => return Some(EndLock { _dir: dir }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    if let Some(say) = waiting.take() {
                        say();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_end_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = EndLock::wait(dir.path(), Duration::ZERO, || panic!("a free lock waited")).expect("taken");
        let mut said = 0;
        assert!(EndLock::wait(dir.path(), Duration::from_millis(300), || said += 1).is_none(), "held twice at once");
        assert_eq!(said, 1, "the wait was not said once");
        drop(first);
        assert!(EndLock::wait(dir.path(), Duration::ZERO, || {}).is_some(), "a dropped lock stays held");
    }

    #[test]
    fn no_state_dir_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(EndLock::wait(&dir.path().join("gone"), Duration::ZERO, || {}).is_none());
    }
}
