//! Run one command in a CloudShell environment like `ssh host cmd` does:
//! exact argv, stdout and stderr kept apart and byte exact, stdin with EOF,
//! the remote exit status, interrupts, bounded memory.
//!
//! # Why this is not trivial
//!
//! A CloudShell session is an interactive shell on a pty (inside tmux). The
//! service reports no exit status, echoes input, mixes stdout and stderr,
//! turns `\n` into `\r\n` and adds prompts and escape sequences. So the
//! command runs under a small bash script that frames everything it sends back.
//!
//! # How it works
//!
//! 1. A dedicated session per run (its own `TabId`, deleted at the end), so
//!    concurrent runs never share a terminal.
//! 2. One bootstrap line is typed into the interactive shell. It starts with
//!    a space, puts the terminal into its default mode with echo off
//!    (`stty sane -echo noflsh`, whatever mode a profile left) and `exec`s a
//!    non-interactive `bash -c` loader, replacing the interactive shell (so the
//!    line is never written to the history file, and no job control, alias or
//!    rc file gets in the way). The loader prints a ready marker, built at run
//!    time from two halves so the echo of the bootstrap line never contains it.
//! 3. Only after that marker (echo is then known to be off) the client sends
//!    the script as base64 lines. The command's argv is inside it as base64
//!    of NUL-separated arguments, decoded by `mapfile -d ''` into an array and
//!    run as `"${argv[@]}"`: quotes, spaces, `$`, globs, newlines and empty
//!    arguments reach the command exactly; nothing is interpolated into shell
//!    text.
//! 4. The command's stdout and stderr go to two encoders (bash loops of
//!    `dd bs=65536 count=1 | base64 -w0`: dd's single read() forwards output
//!    as soon as it is written, up to 64 KiB per frame). Each frame is
//!    `<nonce>:O:<seq>:<len>:<base64>.` or `<nonce>:E:<seq>:<len>:<base64>.`
//!    written by `dd iflag=fullblock` in ONE write() so the two encoders
//!    never interleave inside a frame. Each encoder ends with
//!    `<nonce>:Z:<O|E>:<frames>:<sha256 of its text>.`, and when both are
//!    done the script writes `<nonce>:X:<$?>.`. The nonce is 128 random
//!    bits per run. The command's own output is always
//!    base64 inside a frame, so whatever it prints (fake markers included)
//!    cannot be taken for a frame.
//!
//!    CloudShell runs its shells inside tmux, so the client receives tmux's
//!    rendering of the terminal, not these bytes. The decoder (see `frame`)
//!    drops escape sequences and control characters, finds frames by their
//!    nonce anywhere, skips frames a screen redraw repeats or cuts, and
//!    checks sequence numbers, lengths, and at each stream's end its count
//!    and digest: lost or damaged output is an error, never silently wrong. And
//!    since tmux drops output for a client that falls behind, the client
//!    acknowledges frames on the terminal's input (`.O<n>`, `.E<n>`) as soon as
//!    that input is free (at once, or once stdin has ended), and each encoder
//!    keeps at most one frame unacknowledged (the session's terminal is
//!    500 x 100: tmux drops output beyond 400 KB in flight; one frame of
//!    each stream is under 180 KB).
//! 5. stdin: when forwarded, each local chunk (≤ 3069 bytes) is sent as one
//!    base64 line padded with newlines to exactly 4096 characters, the block
//!    size of GNU `base64 -d`, so the remote decoder (`stdbuf -o0 base64 -d`,
//!    reading the tty in canonical mode with echo off) passes it on at once.
//!    End of input is the tty's EOF character (^D) at the start of a line.
//!    Base64 text contains no tty control character, so it cannot trigger
//!    signals or line editing; lines stay below the 4095-character limit of a
//!    canonical tty. When stdin is not forwarded the command reads `/dev/null`.
//! 6. Interrupts: the client sends the byte 0x03; the remote line discipline
//!    sends SIGINT to the whole foreground process group. The script and its
//!    framing processes ignore SIGINT (an ignored disposition survives exec);
//!    only the command's subshell restores the default. So the command dies
//!    with status 130 and the exit frame still arrives. `noflsh` keeps queued
//!    stdin blocks intact across the interrupt. When a run is abandoned (a
//!    second interrupt, or a command still running 5 s after the timeout's
//!    interrupt) the client sends 0x1c (SIGQUIT): the script does not ignore
//!    it, and its exit hangs up the terminal, which normally ends whatever
//!    was still running there.
//!
//! Memory is bounded: the client holds at most one frame (≤ 128 KiB) and
//! one decoded frame (≤ 64 KiB) at a time; text that is not a frame is
//! skipped without being stored.
//!
//! The status is the shell's `$?`: a command killed by signal N reports
//! 128+N, like a shell does.
//!
//! Requirements on the remote side: bash ≥ 4.4, `stty`, and coreutils
//! `base64`, `dd`, `sha256sum`, `mkfifo` and `rm` (`stdbuf` is used when
//! present). A missing tool is
//! reported as [`ExecError::RemoteUnsupported`].

mod frame;
pub(crate) mod remote;
mod script;
mod tty;

pub use frame::FrameError;
pub use remote::{run, run_with_io};
pub use tty::{TtyCommand, start_tty};

use crate::Secret;
use bytes::Bytes;
use frame::{Frame, FrameDecoder};
use script::{Nonce, ScriptOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

/// Largest input message sent at once (the reference clients' limit).
const INPUT_MESSAGE: usize = 1024;

/// How long to wait for a command to stop after an interrupt sent because
/// the timeout expired.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// The exit status of a remote command, as the remote shell reports it (`$?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    code: i32,
}

impl ExitStatus {
    /// Builds a status from a shell exit code.
    pub fn from_code(code: i32) -> Self {
        ExitStatus { code }
    }

    /// The exit code (0–255). A command killed by signal N has 128+N.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// Whether the command succeeded (code 0).
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// The signal that killed the command, as a shell would read the code
    /// (129–192 → 1–64). A program can also exit with such a code itself;
    /// the remote shell does not tell the two apart.
    pub fn signal(&self) -> Option<i32> {
        (129..=192).contains(&self.code).then(|| self.code - 128)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.signal() {
            Some(s) => write!(f, "exit code {} (signal {s}?)", self.code),
            None => write!(f, "exit code {}", self.code),
        }
    }
}

/// The result of [`run_collect`] and `run`: status and the captured output.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How the command ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl std::fmt::Debug for ExecOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOutput")
            .field("status", &self.status)
            .field("stdout", &String::from_utf8_lossy(&self.stdout))
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .finish()
    }
}

/// A handle to interrupt a running command, like Ctrl-C in a terminal.
///
/// The first request sends SIGINT to the remote command (through the
/// terminal's 0x03); the run then normally ends with status 130. A second
/// request gives up at once with [`ExecError::Interrupted`].
#[derive(Clone, Default)]
pub struct Interrupt(Arc<Notify>);

impl Interrupt {
    /// A new handle; clone it and give one copy to [`ExecOptions::interrupt`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests an interrupt. Requests made before the command has started
    /// are delivered when it starts.
    pub fn interrupt(&self) {
        self.0.notify_one();
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupt")
    }
}

/// Observes every byte received from the remote terminal, before any
/// decoding (auditing, debugging, tests that check what crossed the wire).
#[derive(Clone)]
pub struct Tap(pub(crate) TapFn);

/// The callback inside a [`Tap`].
pub(crate) type TapFn = Arc<dyn Fn(&[u8]) + Send + Sync>;

impl Tap {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        Tap(Arc::new(f))
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

/// Options for one run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    timeout: Option<Duration>,
    startup_timeout: Duration,
    interrupt: Option<Interrupt>,
    env: Vec<(String, Secret)>,
    stdin: Option<Bytes>,
    session_options: Option<crate::session::SessionOptions>,
    tap: Option<Tap>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            timeout: None,
            startup_timeout: Duration::from_secs(60),
            interrupt: None,
            env: Vec::new(),
            stdin: None,
            session_options: None,
            tap: None,
        }
    }
}

impl ExecOptions {
    /// Default options: no timeout, stdin `/dev/null`, no extra environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the command after this long and fails with
    /// [`ExecError::Timeout`]. Counted from when the command starts.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long to wait for the remote shell to load the script (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// A handle through which the caller can interrupt the command.
    pub fn interrupt(mut self, handle: Interrupt) -> Self {
        self.interrupt = Some(handle);
        self
    }

    /// Exports `name=value` for the command. The value is sent after echo is
    /// off, as base64 input read by the `export` builtin: it never appears in
    /// the terminal output, a command line or the history.
    pub fn env(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.env.push((name.into(), value));
        self
    }

    /// Data-channel options for [`run`] (default: AWS gateways only for an
    /// AWS endpoint, any host for another endpoint such as the emulator).
    pub fn session_options(mut self, options: crate::session::SessionOptions) -> Self {
        self.session_options = Some(options);
        self
    }

    /// Observes every byte received from the remote terminal (see [`Tap`]).
    pub fn tap(mut self, tap: Tap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// For [`run_collect`] and [`run`]: bytes given to the command's stdin, followed by EOF.
    pub fn stdin(mut self, data: impl Into<Bytes>) -> Self {
        self.stdin = Some(data.into());
        self
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// No command was given.
    #[error("no command given")]
    EmptyCommand,
    /// An environment variable name that is not a shell identifier.
    #[error("invalid environment variable name {0:?}")]
    InvalidEnvName(String),
    /// The remote side lacks something the exec script needs.
    #[error("the remote environment cannot run commands: {0}")]
    RemoteUnsupported(String),
    /// The remote shell did not load the script in time.
    #[error(
        "the remote shell did not start the command within {0:?} (it needs bash, stty, base64 and dd)"
    )]
    StartupTimeout(Duration),
    /// The command did not finish within the timeout (it was interrupted).
    #[error("the command did not finish within {0:?}")]
    Timeout(Duration),
    /// The session ended before the command's exit status arrived.
    #[error("the session closed before the command finished")]
    SessionClosed,
    /// The service closed the session before the command's exit status
    /// arrived, and said why (e.g. the environment was stopped).
    #[error("the service closed the session before the command finished: {0}")]
    ClosedByService(String),
    /// The frames coming back were damaged or incomplete.
    #[error("unexpected output from the remote side")]
    Frame(#[source] FrameError),
    /// Writing the command's output locally failed.
    #[error("writing the command's output failed")]
    Output(#[source] std::io::Error),
    /// Reading local stdin failed.
    #[error("reading stdin failed")]
    Stdin(#[source] std::io::Error),
    /// Interrupted twice: the run was abandoned without an exit status.
    #[error("interrupted")]
    Interrupted,
    /// Setting up or tearing down the session failed.
    #[error("session error")]
    Session(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A terminal connection to a remote interactive shell: bytes typed into its
/// pty go to `input`; everything the pty prints arrives on `output`, which
/// ends when the session is closed.
///
/// Build one from a data-channel session (see [`crate::exec::run`]) or, for
/// tests, from a local shell on a pty.
#[derive(Debug)]
pub struct TerminalLink {
    /// Bytes typed into the remote terminal.
    pub input: mpsc::Sender<Bytes>,
    /// Bytes the remote terminal prints.
    pub output: mpsc::Receiver<Bytes>,
}

/// Runs `argv` through `link` and collects its output in memory.
pub async fn run_collect(
    link: TerminalLink,
    argv: &[impl AsRef<[u8]>],
    options: ExecOptions,
) -> Result<ExecOutput, ExecError> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let stdin = options.stdin.clone();
    let status = match stdin {
        Some(data) => {
            run_streaming(
                link,
                argv,
                options,
                Some(&data[..]),
                &mut stdout,
                &mut stderr,
            )
            .await?
        }
        None => {
            run_streaming(
                link,
                argv,
                options,
                None::<tokio::io::Empty>,
                &mut stdout,
                &mut stderr,
            )
            .await?
        }
    };
    Ok(ExecOutput {
        status,
        stdout,
        stderr,
    })
}

/// Runs `argv` through `link`, streaming: `stdin` (if any) feeds the command
/// and its end is delivered as EOF (`None`: the command reads `/dev/null`);
/// the command's stdout and stderr are written to `stdout` and `stderr` as
/// they arrive. Returns the command's exit status.
pub async fn run_streaming<I, O, E>(
    mut link: TerminalLink,
    argv: &[impl AsRef<[u8]>],
    options: ExecOptions,
    stdin: Option<I>,
    stdout: &mut O,
    stderr: &mut E,
) -> Result<ExitStatus, ExecError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    let argv = checked_argv(argv, &options)?;
    let nonce = Nonce::random();
    let mut decoder = FrameDecoder::new(nonce.as_str());
    let interrupt = options.interrupt.clone().unwrap_or_default();
    let sopts = ScriptOptions {
        forward_stdin: stdin.is_some(),
        with_env: !options.env.is_empty(),
    };
    let input = link.input.clone();

    let mut line = script::bootstrap_line(&nonce).into_bytes();
    line.push(b'\r');
    send(&input, &line).await?;

    // Phase 1: wait for the loader's ready marker (echo is off from then on).
    let startup = tokio::time::sleep(options.startup_timeout);
    tokio::pin!(startup);
    let mut frames = Vec::new();
    'ready: loop {
        tokio::select! {
            chunk = link.output.recv() => {
                let chunk = chunk.ok_or(ExecError::SessionClosed)?;
                decoder.feed(&chunk, &mut frames).map_err(ExecError::Frame)?;
                if let Some(first) = frames.first() {
                    match first {
                        Frame::Ready => {
                            frames.remove(0);
                            break 'ready;
                        }
                        Frame::Fatal(m) => return Err(ExecError::RemoteUnsupported(m.clone())),
                        _ => return Err(ExecError::Frame(FrameError::Malformed("frame before ready marker"))),
                    }
                }
            }
            () = &mut startup => return Err(ExecError::StartupTimeout(options.startup_timeout)),
        }
    }
    // Anything after the ready marker in the same chunk belongs to phase 2.
    let mut pending: Vec<Frame> = std::mem::take(&mut frames);

    send(&input, &script::script_lines(&nonce, &argv, sopts)).await?;
    if sopts.with_env {
        send(&input, &env_block(&options)).await?;
    }
    if !sopts.forward_stdin {
        // The terminal's input is free: acknowledgements travel from the start.
        send(&input, acknowledgements((0, 0), None).as_bytes()).await?;
    }

    // Phase 2: stream.
    let stdin_pump = pump_stdin(stdin, input.clone());
    tokio::pin!(stdin_pump);
    let mut stdin_done = !sopts.forward_stdin;
    let mut started = false;
    let mut interrupts_requested = 0u32;
    let mut interrupts_sent = 0u32;
    let far = Duration::from_secs(365 * 24 * 3600);
    let deadline = tokio::time::sleep(far);
    tokio::pin!(deadline);
    let mut timed_out = false;
    // Frames of each stream acknowledged to the script so far; whether the
    // terminal's input is free for acknowledgements (not carrying stdin).
    let mut acked = (0u64, 0u64);
    let mut acks_on = !sopts.forward_stdin;

    loop {
        for f in pending.drain(..) {
            match f {
                // A screen redraw (tmux) shows the ready marker again.
                Frame::Ready => {}
                Frame::Started if started => {}
                Frame::Started => {
                    started = true;
                    if let Some(t) = options.timeout {
                        deadline.as_mut().reset(tokio::time::Instant::now() + t);
                    }
                }
                Frame::Stdout(b) => stdout.write_all(&b).await.map_err(ExecError::Output)?,
                Frame::Stderr(b) => stderr.write_all(&b).await.map_err(ExecError::Output)?,
                Frame::Exit(code) => {
                    stdout.flush().await.map_err(ExecError::Output)?;
                    stderr.flush().await.map_err(ExecError::Output)?;
                    if timed_out {
                        // Timeout is known to be set when timed_out is true.
                        return Err(ExecError::Timeout(options.timeout.unwrap_or_default()));
                    }
                    if decoder.skipped() > 0 {
                        tracing::debug!(
                            skipped = decoder.skipped(),
                            "damaged or cut frames skipped"
                        );
                    }
                    // The script waits for this before it ends (its end
                    // could take its last output with it under tmux).
                    let _ = send(&input, b".X\n").await;
                    return Ok(ExitStatus::from_code(code));
                }
                Frame::Fatal(m) => return Err(ExecError::RemoteUnsupported(m)),
            }
        }
        if started && interrupts_sent < interrupts_requested.min(1) {
            // If the input side is closed, the command has ended: its exit
            // status (or the end of the output) decides the result.
            let _ = send(&input, script::INTERRUPT).await;
            interrupts_sent += 1;
        }
        tokio::select! {
            chunk = link.output.recv() => {
                let chunk = chunk.ok_or(ExecError::SessionClosed)?;
                decoder.feed(&chunk, &mut pending).map_err(ExecError::Frame)?;
                if !pending.is_empty() {
                    stdout.flush().await.map_err(ExecError::Output)?;
                }
                if acks_on {
                    // Flow control: tell the script which frames arrived.
                    let now = decoder.accepted();
                    let ack = acknowledgements(now, Some(acked));
                    if !ack.is_empty() {
                        acked = now;
                        // A closed input means the command has ended: its
                        // exit frame decides.
                        let _ = send(&input, ack.as_bytes()).await;
                    }
                }
            }
            r = &mut stdin_pump, if !stdin_done => {
                stdin_done = true;
                match r {
                    Ok(()) => {
                        // The command's stdin has ended: the terminal's
                        // input now carries acknowledgements, starting with
                        // what has arrived so far.
                        acks_on = true;
                        acked = decoder.accepted();
                        let ack = acknowledgements(acked, None);
                        let _ = send(&input, ack.as_bytes()).await;
                    }
                    // The remote side stopped taking input: a command that
                    // exits without reading all of its stdin ends the session
                    // while input is still on its way. Its exit status is
                    // then already in the output (or the output ends and the
                    // run fails there), as `ssh host true < big` exits 0.
                    Err(ExecError::SessionClosed) => {}
                    Err(e) => return Err(e),
                }
            }
            () = interrupt.0.notified() => {
                interrupts_requested += 1;
                if interrupts_requested >= 2 {
                    let _ = send(&input, script::QUIT).await;
                    return Err(ExecError::Interrupted);
                }
            }
            () = &mut deadline => {
                if timed_out {
                    let _ = send(&input, script::QUIT).await;
                    return Err(ExecError::Timeout(options.timeout.unwrap_or_default()));
                }
                timed_out = true;
                let _ = send(&input, script::INTERRUPT).await;
                deadline.as_mut().reset(tokio::time::Instant::now() + TIMEOUT_GRACE);
            }
        }
    }
}

/// The acknowledgement lines for frames `now` (stdout, stderr) arrived:
/// those that moved since `since`, or both.
fn acknowledgements(now: (u64, u64), since: Option<(u64, u64)>) -> String {
    let mut ack = String::new();
    if since.is_none_or(|s| now.0 > s.0) {
        ack.push_str(&format!(".O{}\n", now.0));
    }
    if since.is_none_or(|s| now.1 > s.1) {
        ack.push_str(&format!(".E{}\n", now.1));
    }
    ack
}

/// The command line as bytes, checked with the variables to export: not
/// empty, and every name a shell identifier.
fn checked_argv(
    argv: &[impl AsRef<[u8]>],
    options: &ExecOptions,
) -> Result<Vec<Vec<u8>>, ExecError> {
    let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_ref().to_vec()).collect();
    if argv.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    for (name, _) in &options.env {
        if !script::is_env_name(name) {
            return Err(ExecError::InvalidEnvName(name.clone()));
        }
    }
    Ok(argv)
}

/// The lines that carry the variables to export (see `script::env_lines`).
fn env_block(options: &ExecOptions) -> Vec<u8> {
    let vars: Vec<(String, Vec<u8>)> = options
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().as_bytes().to_vec()))
        .collect();
    script::env_lines(&vars)
}

/// Sends `data` in messages of at most [`INPUT_MESSAGE`] bytes.
async fn send(input: &mpsc::Sender<Bytes>, data: &[u8]) -> Result<(), ExecError> {
    for chunk in data.chunks(INPUT_MESSAGE) {
        input
            .send(Bytes::copy_from_slice(chunk))
            .await
            .map_err(|_| ExecError::SessionClosed)?;
    }
    Ok(())
}

async fn pump_stdin<I: AsyncRead + Unpin>(
    stdin: Option<I>,
    input: mpsc::Sender<Bytes>,
) -> Result<(), ExecError> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    let mut buf = vec![0u8; script::STDIN_CHUNK];
    loop {
        let n = stdin.read(&mut buf).await.map_err(ExecError::Stdin)?;
        if n == 0 {
            break;
        }
        send(&input, &script::stdin_block(&buf[..n])).await?;
    }
    send(&input, script::STDIN_EOF).await
}
