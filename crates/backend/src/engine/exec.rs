//! Running commands in the agent: captured (provisioning, the self-test),
//! or wired to the operator — with a TTY (raw mode, window size followed,
//! exit code returned) or plain stdio for headless runs.

// The operator's terminal (poll, read, ioctl, termios): libc, each call
// with its SAFETY comment.
#![allow(unsafe_code)]

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{ResizeExecOptions, WaitContainerOptions};
use futures_util::StreamExt;
use shown::Relay;
use tokio::io::AsyncWriteExt;

use super::provision::{self, AGENT_UID, WORKSPACE};
use crate::error::BackendError;

fn err(what: &'static str) -> impl Fn(bollard::errors::Error) -> BackendError {
    move |source| BackendError::Engine { operation: what.to_string(), source }
}

async fn create(
    docker: &Docker,
    container: &str,
    argv: &[String],
    user: Option<&str>,
    tty: bool,
    stdin: bool,
) -> Result<String, BackendError> {
    let uid = AGENT_UID.to_string();
    let options = CreateExecOptions {
        cmd: Some(argv.to_vec()),
        user: Some(user.unwrap_or(&uid).to_string()),
        working_dir: Some(WORKSPACE.to_string()),
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        ..Default::default()
    };
    Ok(docker.create_exec(container, options).await.map_err(err("cannot run a command in the agent"))?.id)
}

async fn exit_code(docker: &Docker, id: &str) -> Result<i32, BackendError> {
    let inspect = docker.inspect_exec(id).await.map_err(err("cannot read the command's exit code"))?;
    Ok(inspect.exit_code.map(|c| c as i32).unwrap_or(-1))
}

/// Run and return stdout and stderr together (the exit code is not an
/// error: callers read the output).
pub async fn capture(
    docker: &Docker,
    container: &str,
    argv: &[String],
    user: Option<&str>,
) -> Result<String, BackendError> {
    let id = create(docker, container, argv, user, false, false).await?;
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&id, None::<StartExecOptions>).await.map_err(err("cannot run a command in the agent"))?
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    Ok(out)
}

/// Resolves when the first of `watched` (role, container) exits, with its
/// role and status; never when `watched` is empty. A wait that fails for
/// another reason (the engine's connection) only counts when the container
/// is then found not running.
pub(crate) async fn first_exit(docker: &Docker, watched: &[(&'static str, String)]) -> (&'static str, i64) {
    let waits = watched.iter().map(|(role, id)| {
        Box::pin(async move {
            let mut wait = docker.wait_container(id, None::<WaitContainerOptions>);
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                _ if running(docker, id).await => std::future::pending().await,
                _ => -1,
            };
            (*role, code)
        })
    });
    let waits: Vec<_> = waits.collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(waits).await.0
}

/// Whether `container` exists and runs.
async fn running(docker: &Docker, container: &str) -> bool {
    docker.inspect_container(container, None).await.ok().and_then(|c| c.state).and_then(|s| s.running).unwrap_or(false)
}

/// Run wired to this process's stdio; with `tty`, the operator's terminal
/// in raw mode. Returns the command's exit code. If one of `watched` (the
/// sidecar, the shim) exits first, the agent has lost its only way out:
/// the session ends with an error saying which.
pub async fn run(
    docker: &Docker,
    container: &str,
    argv: &[String],
    tty: bool,
    watched: &[(&'static str, String)],
) -> Result<i32, BackendError> {
    let id = create(docker, container, argv, None, tty, true).await?;
    let (output, input) = start(docker, &id, tty).await?;
    drive(docker, container, &id, output, input, tty, watched).await
}

type Output = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
type Input = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

async fn start(docker: &Docker, id: &str, tty: bool) -> Result<(Output, Input), BackendError> {
    let started = docker
        .start_exec(id, Some(StartExecOptions { detach: false, tty, output_capacity: None }))
        .await
        .map_err(err("cannot start the agent's command"))?;
    match started {
        StartExecResults::Attached { output, input } => Ok((output, input)),
        StartExecResults::Detached => Err(BackendError::Launch("the agent's command detached".to_string())),
    }
}

/// The session's command, already exec'd (as the agent's user, in the
/// workspace, with plain stdio) and waiting on stdin for its argv
/// ([`provision::wrap_armed`]): the launch starts it while the bottle comes
/// up, so the first command does not wait for an exec. Dropped unused,
/// its stdin closes and it exits having run nothing.
pub struct Armed {
    id: String,
    output: Output,
    input: Input,
}

/// Start the armed command in `container`.
pub async fn arm(docker: &Docker, container: &str) -> Result<Armed, BackendError> {
    let id = create(docker, container, &provision::wrap_armed(), None, false, true).await?;
    let (output, input) = start(docker, &id, false).await?;
    Ok(Armed { id, output, input })
}

/// [`run`] for a headless session whose exec was armed: the argv goes down
/// its stdin, then it runs as `run` would.
pub async fn run_armed(
    docker: &Docker,
    container: &str,
    armed: Armed,
    argv: &[String],
    watched: &[(&'static str, String)],
) -> Result<i32, BackendError> {
    let Armed { id, output, mut input } = armed;
    let frame = provision::argv_frame(argv).map_err(BackendError::Launch)?;
    input
        .write_all(&frame)
        .await
        .map_err(|e| BackendError::Launch(format!("cannot start the agent's command: {e}")))?;
    drive(docker, container, &id, output, input, false, watched).await
}

/// Wire a started exec to this process's stdio until it ends (see [`run`]).
async fn drive(
    docker: &Docker,
    container: &str,
    id: &str,
    mut output: Output,
    mut input: Input,
    tty: bool,
    watched: &[(&'static str, String)],
) -> Result<i32, BackendError> {
    let _raw = if tty { RawMode::enable() } else { None };
    if tty {
        resize(docker, id).await;
    }
    // Stdin on its own thread (a blocking read must not hold the runtime),
    // stopped when the session ends: a reader left behind would swallow
    // the operator's next keystroke (the question after the session).
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let _pump = StdinPump::start(tx);
    // Bound after the pump, so dropped before it: a send blocked on a full
    // channel then fails, and the pump's join cannot wait on it.
    let mut rx = rx;
    // Headless output that lands on the operator's terminal is shown, not
    // obeyed: the agent cannot drive that terminal (a TTY session's
    // terminal is the agent's own screen, and a pipe gets the bytes as
    // they are, for scripts).
    let (mut to_stdout, mut to_stderr) = (Relay::new(false, tty), Relay::new(true, tty));
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut stdin_open = true;
    let died = first_exit(docker, watched);
    tokio::pin!(died);
    loop {
        tokio::select! {
            (role, code) = &mut died => {
                // Everything going at once (`bot-bottle stop`) is the
                // agent's end, not a lost sidecar.
                if !running(docker, container).await {
                    break;
                }
                drop(_raw);
                return Err(BackendError::Ended(format!(
                    "the {role} exited (status {code}) while the agent ran: the agent has no way out any more, so the session ends"
                )));
            }
            // Headless, Ctrl-C ends the session (130, as a shell reports it);
            // the caller tears the bottle down. On a TTY it reaches the agent.
            _ = tokio::signal::ctrl_c(), if !tty => return Ok(130),
            chunk = output.next() => {
                match chunk {
                    Some(Ok(LogOutput::StdErr { message })) => to_stderr.write(&mut std::io::stderr(), &message),
                    Some(Ok(other)) => to_stdout.write(&mut std::io::stdout(), &other.into_bytes()),
                    Some(Err(_)) | None => break,
                }
            }
            data = rx.recv(), if stdin_open => {
                match data {
                    Some(bytes) => {
                        if input.write_all(&bytes).await.is_err() {
                            stdin_open = false;
                        }
                    }
                    None => {
                        stdin_open = false;
                        let _ = input.shutdown().await;
                    }
                }
            }
            _ = async {
                match winch.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            }, if tty => resize(docker, id).await,
        }
    }
    drop(_raw);
    exit_code(docker, id).await
}

/// This process's stdin relayed into a channel by a thread that polls
/// (so it can stop), and is stopped and joined when dropped.
struct StdinPump {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StdinPump {
    fn start(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> StdinPump {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let mut fd = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
                // SAFETY: poll on one pollfd we own, 100 ms.
                let ready = unsafe { libc::poll(&mut fd, 1, 100) };
                if ready < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if ready <= 0 || stopped.load(Ordering::Relaxed) {
                    if ready < 0 {
                        break;
                    }
                    continue;
                }
                // SAFETY: read into a buffer we own, at most its length.
                let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if n <= 0 || tx.blocking_send(buf[..n as usize].to_vec()).is_err() {
                    break;
                }
            }
        });
        StdinPump { stop, thread: Some(thread) }
    }
}

impl Drop for StdinPump {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Follow the operator's window size.
async fn resize(docker: &Docker, id: &str) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we own.
    if unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
        let _ = docker.resize_exec(id, ResizeExecOptions { h: i32::from(ws.ws_row), w: i32::from(ws.ws_col) }).await;
    }
}

/// The operator's terminal in raw mode until dropped.
struct RawMode(libc::termios);

impl RawMode {
    fn enable() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
        unsafe {
            if libc::isatty(libc::STDIN_FILENO) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved in enable().
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
        }
    }
}
