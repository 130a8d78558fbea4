//! The sidecar as its container's PID 1: a forked child runs the sidecar,
//! and PID 1 stays behind as the container's init — it reaps every
//! orphan (a `git` or `ssh` whose parent exited is re-parented to it),
//! passes the signals Docker sends on to the sidecar, and exits as the
//! sidecar exits. This is what Docker's own init (`--init`) would do, done
//! in-process: that init costs a bottle's launch about 45 ms.
//!
//! It is not a general init: one child, the signals listed in `FORWARDED`.

use std::io;

/// Signals PID 1 passes on to the sidecar (Docker's stop is SIGTERM;
/// SIGHUP reloads the route table).
const FORWARDED: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// When this process is PID 1, fork: the child returns (and runs the
/// sidecar); PID 1 never returns — it reaps and forwards until the child
/// exits, then exits with its status. Elsewhere, returns at once. Call it
/// before any thread starts.
pub fn become_init_if_pid1() -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        return Ok(());
    }
    // SAFETY: the signal set is ours; the masks are restored in the child
    // before it returns, and only PID 1 keeps them blocked (sigtimedwait
    // takes them: blocked signals reach an init even without a handler).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        match libc::fork() {
            -1 => {
                let e = io::Error::last_os_error();
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                Err(e)
            }
            0 => {
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                Ok(())
            }
            child => init_loop(child, &set),
        }
    }
}

/// PID 1's loop: take each signal; reap on SIGCHLD, forward the rest.
unsafe fn init_loop(child: libc::pid_t, set: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: `set` is a valid, initialised signal set.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(child) {
                std::process::exit(code);
            }
        } else if sig > 0 {
            // SAFETY: kill with a pid we forked.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Reap every exited child; the sidecar's exit code once it is among them
/// (128 + the signal when a signal ended it, as a shell reports it).
fn reap(child: libc::pid_t) -> Option<i32> {
    let mut code = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return code;
        }
        if pid == child {
            code = Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) });
        }
    }
}
