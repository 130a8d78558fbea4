//! A listener out of file descriptors does not spin: with a connection
//! waiting and every descriptor taken, each accept fails (EMFILE) at once,
//! and without the back-off the sidecar's accept loops would burn a core
//! until connections close. Its own test binary: it lowers the process's
//! descriptor limit.

// The descriptor limit is set with setrlimit(2): a libc call.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use sidecar::listen::{ACCEPT_BACKOFF, Listener};

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit
}

fn set_nofile(limit: &libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit through a valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) }, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn accept_out_of_descriptors_backs_off_and_recovers() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.name().unwrap();
    let saved = nofile();
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    set_nofile(&libc::rlimit { rlim_cur: open_now + 32, rlim_max: saved.rlim_max });

    // Take every descriptor but one; the client takes that one.
    let mut held = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    held.pop();
    let _client = std::net::TcpStream::connect(&address).unwrap();

    // A connection waits and accept cannot take it: each try fails.
    let started = Instant::now();
    let window = Duration::from_secs(1);
    let mut failed = 0u32;
    while started.elapsed() < window {
        assert!(listener.accept().await.is_none(), "accepted with no descriptor free");
        failed += 1;
    }
    let most = (window.as_millis() / ACCEPT_BACKOFF.as_millis()) as u32 + 2;
    assert!(failed <= most, "{failed} failed accepts in {window:?}: the listener spins (at most {most} expected)");
    assert!(failed >= 2, "only {failed} accept tries in {window:?}");

    // Descriptors free again: the waiting connection is taken.
    held.truncate(held.len() - 4);
    let accepted = tokio::time::timeout(ACCEPT_BACKOFF * 3, async {
        loop {
            if let Some(io) = listener.accept().await {
                return io;
            }
        }
    })
    .await;
    assert!(accepted.is_ok(), "the waiting connection was not accepted once descriptors were free");
    drop(held);
    set_nofile(&saved);
}
