//! The programs behind sessions: a login shell on a pty, an echo loop, a byte
//! stream, a TCP relay or an smux port forwarder. Each one writes into an
//! [`OutputPipe`], a bounded buffer the session task reads from as fast as the
//! channel's send window allows. A full pipe stops the producer (the shell
//! blocks on its terminal), so no output is ever dropped, whether a client is
//! attached or not. A program can also ask its session to send data-channel
//! flags to the client through its [`FlagQueue`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};

use super::options::SessionMode;

/// Size of the buffer between a program and its session (the output kept while
/// no client is attached).
pub const DEFAULT_PIPE_CAPACITY: usize = 256 * 1024;

/// How long output may keep coming after the shell process exits (from background
/// jobs still holding the terminal) before the session ends anyway.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The repeating 64-byte line that stream mode sends: byte `i` of the stream is
/// `STREAM_LINE[i % 64]`.
pub const STREAM_LINE: &[u8; 64] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_\n";

/// The first `total` bytes that stream mode sends.
pub fn stream_pattern(total: usize) -> Vec<u8> {
    STREAM_LINE.iter().copied().cycle().take(total).collect()
}

#[derive(Debug, Default)]
struct PipeInner {
    buf: VecDeque<u8>,
    closed: bool,
}

/// What a read from the pipe found.
#[derive(Debug, PartialEq, Eq)]
pub enum PipeRead {
    /// Some bytes.
    Data(Bytes),
    /// Nothing yet; wait on [`OutputPipe::readable`].
    Empty,
    /// The producer is done and everything was read.
    Eof,
}

/// Bounded single-producer / single-consumer byte buffer with async wake-ups.
#[derive(Debug)]
pub struct OutputPipe {
    inner: Mutex<PipeInner>,
    readable: Notify,
    writable: Notify,
    capacity: usize,
}

impl OutputPipe {
    /// A pipe holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(PipeInner::default()),
            readable: Notify::new(),
            writable: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends all of `data`, waiting for room as needed. Returns early (dropping
    /// the rest) only if the pipe was closed.
    pub async fn write_all(&self, mut data: &[u8]) {
        while !data.is_empty() {
            {
                let mut g = self.lock();
                if g.closed {
                    return;
                }
                let room = self.capacity.saturating_sub(g.buf.len());
                if room > 0 {
                    let n = room.min(data.len());
                    g.buf.extend(&data[..n]);
                    data = &data[n..];
                    drop(g);
                    self.readable.notify_one();
                    continue;
                }
            }
            self.writable.notified().await;
        }
    }

    /// Takes up to `max` bytes. A trailing incomplete UTF-8 sequence is held back
    /// (like the agent, which never splits a character across messages) unless
    /// nothing else is available or the producer is done.
    pub fn read(&self, max: usize) -> PipeRead {
        let mut g = self.lock();
        if g.buf.is_empty() {
            return if g.closed {
                PipeRead::Eof
            } else {
                PipeRead::Empty
            };
        }
        let mut n = g.buf.len().min(max.max(1));
        if n < g.buf.len() || !g.closed {
            let held = incomplete_utf8_tail(g.buf.range(..n));
            if held < n {
                n -= held;
            }
        }
        let out: Vec<u8> = g.buf.drain(..n).collect();
        drop(g);
        self.writable.notify_one();
        PipeRead::Data(Bytes::from(out))
    }

    /// Puts bytes back at the front (output that was taken but never acknowledged
    /// by a client that went away).
    pub fn unread(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut g = self.lock();
        for &b in data.iter().rev() {
            g.buf.push_front(b);
        }
        drop(g);
        self.readable.notify_one();
    }

    /// Marks the producer as done; readers see [`PipeRead::Eof`] after the rest.
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_one();
        self.writable.notify_one();
    }

    /// Whether the producer is done.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        self.lock().buf.len()
    }

    /// Whether no bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes when data may be available (single consumer).
    pub async fn readable(&self) {
        self.readable.notified().await;
    }
}

/// Length of an incomplete UTF-8 sequence at the end of `bytes` (0 if none).
fn incomplete_utf8_tail<'a>(bytes: impl DoubleEndedIterator<Item = &'a u8>) -> usize {
    for (i, &b) in bytes.rev().take(4).enumerate() {
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let need = if b & 0xE0 == 0xC0 {
            2
        } else if b & 0xF0 == 0xE0 {
            3
        } else if b & 0xF8 == 0xF0 {
            4
        } else {
            return 0; // ASCII or invalid: nothing to hold back
        };
        let have = i + 1;
        return if have < need { have } else { 0 };
    }
    0
}

/// Data-channel flags (payload type 10, e.g. `ConnectToPortError` = 3) a
/// program asks its session to send to the client, in order. The program
/// [`push`](Self::push)es; the session (the single consumer) waits on
/// [`pending`](Self::pending) beside the output pipe and [`pop`](Self::pop)s
/// each flag into the channel once output is enabled, [`put_back`](Self::put_back)
/// one the channel cannot take yet.
#[derive(Debug, Default)]
pub struct FlagQueue {
    flags: Mutex<VecDeque<u32>>,
    pending: Notify,
}

impl FlagQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u32>> {
        self.flags.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a flag for the client and wakes the session.
    pub fn push(&self, flag: u32) {
        self.lock().push_back(flag);
        self.pending.notify_one();
    }

    /// Takes the oldest queued flag.
    pub fn pop(&self) -> Option<u32> {
        self.lock().pop_front()
    }

    /// Puts a flag taken with [`pop`](Self::pop) back at the front (the
    /// channel could not send it yet).
    pub fn put_back(&self, flag: u32) {
        self.lock().push_front(flag);
    }

    /// Flags waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no flag is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes when a flag may have been queued since the last wake-up
    /// (single consumer; check with [`pop`](Self::pop)).
    pub async fn pending(&self) {
        self.pending.notified().await;
    }
}

/// Input for a program.
#[derive(Debug)]
pub enum BackendInput {
    /// Bytes typed by the client.
    Bytes(Bytes),
    /// New terminal size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// The client's `TerminateSession`: a port session ends once the input
    /// before it is written, a port-forwarding session ends at once (other
    /// programs ignore it, as the agent's shell sessions do).
    Terminate,
    /// The client's `DisconnectToPort` (basic port forwarding: its local
    /// connection closed): the connection to the destination is closed and
    /// the next input opens a new one. Other programs ignore it.
    Disconnect,
}

/// A connection to `127.0.0.1:port` for the port programs: its write half,
/// and the task that copies what the destination sends into the output pipe
/// (it ends at the destination's end of file; dropping the connection stops
/// it).
pub(super) struct DestConnection {
    pub(super) writer: tokio::net::tcp::OwnedWriteHalf,
    pub(super) reader: tokio::task::JoinHandle<()>,
}

impl DestConnection {
    pub(super) async fn open(port: u16, pipe: &Arc<OutputPipe>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = tcp.set_nodelay(true);
        let (mut rd, writer) = tcp.into_split();
        let pipe = pipe.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; super::forward::READ_BUFFER];
            while let Ok(n @ 1..) = rd.read(&mut buf).await {
                pipe.write_all(&buf[..n]).await;
            }
        });
        Ok(DestConnection { writer, reader })
    }

    /// The destination has closed its side.
    pub(super) fn ended(&self) -> bool {
        self.reader.is_finished()
    }
}

impl Drop for DestConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// How to start a shell.
#[derive(Debug, Clone)]
pub struct ShellSpec {
    /// The home directory (created if missing); also the working directory.
    pub home: PathBuf,
    /// Region exported as `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: String,
    /// Initial terminal size (cols, rows).
    pub size: (u16, u16),
    /// Run the shell inside tmux (see [`GatewayConfig::tmux`](super::GatewayConfig::tmux)),
    /// with its server's socket in a new directory under this one.
    pub tmux: Option<PathBuf>,
}

impl ShellSpec {
    /// Creates the home directory if it is missing.
    fn create_home(&self) -> Result<(), BackendError> {
        std::fs::create_dir_all(&self.home).map_err(|source| BackendError::Home {
            path: self.home.clone(),
            source,
        })
    }

    /// The whole environment of a program started for a session (a shell or
    /// a command): the emulator's own variables (credentials included) never
    /// reach it, as on the real service.
    fn environment(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let inherited = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.into())
        };
        vec![
            ("HOME", self.home.clone().into_os_string()),
            ("USER", "cloudshell-user".into()),
            ("LOGNAME", "cloudshell-user".into()),
            ("PATH", inherited("PATH", "/usr/local/bin:/usr/bin:/bin")),
            ("LANG", inherited("LANG", "C.UTF-8")),
            ("AWS_REGION", self.region.clone().into()),
            ("AWS_DEFAULT_REGION", self.region.clone().into()),
            ("AWS_EXECUTION_ENV", "CloudShell".into()),
        ]
    }
}

/// The plumbing every program starts with, as its [`Backend`] holds it:
/// output pipe, flags, input sender, kill switch and exit status.
struct Plumbing {
    output: Arc<OutputPipe>,
    flags: Arc<FlagQueue>,
    input: mpsc::UnboundedSender<BackendInput>,
    kill: watch::Sender<bool>,
    exit: watch::Receiver<Option<ExitStatusInfo>>,
}

/// The ends of the plumbing the program's own tasks take.
type ProgramEnds = (
    mpsc::UnboundedReceiver<BackendInput>,
    watch::Sender<Option<ExitStatusInfo>>,
);

impl Plumbing {
    fn new(pipe_capacity: usize) -> (Plumbing, ProgramEnds) {
        let (input, in_rx) = mpsc::unbounded_channel();
        let (kill, _) = watch::channel(false);
        let (exit_tx, exit) = watch::channel(None);
        let plumbing = Plumbing {
            output: Arc::new(OutputPipe::new(pipe_capacity)),
            flags: Arc::new(FlagQueue::new()),
            input,
            kill,
            exit,
        };
        (plumbing, (in_rx, exit_tx))
    }

    fn into_backend(self, pid: Option<u32>, errors: Option<Arc<OutputPipe>>) -> Backend {
        Backend {
            output: self.output,
            flags: self.flags,
            input: self.input,
            kill: self.kill,
            exit: self.exit,
            pid,
            errors,
        }
    }
}

/// A running program. Dropping it stops the program.
#[derive(Debug)]
pub struct Backend {
    /// Where the program's output goes.
    pub output: Arc<OutputPipe>,
    /// Flags the program asks the session to send to the client.
    pub flags: Arc<FlagQueue>,
    input: mpsc::UnboundedSender<BackendInput>,
    kill: watch::Sender<bool>,
    exit: watch::Receiver<Option<ExitStatusInfo>>,
    /// Process id, for shells.
    pub pid: Option<u32>,
    /// Where the program's stderr goes, for programs whose stderr is sent on
    /// its own (`StdErr` messages): [`SessionMode::Command`].
    pub errors: Option<Arc<OutputPipe>>,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatusInfo {
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
}

impl From<ExitStatus> for ExitStatusInfo {
    fn from(s: ExitStatus) -> Self {
        Self { code: s.code() }
    }
}

/// Starting a program failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The command could not be started.
    #[error("cannot start the command")]
    Command(#[source] std::io::Error),
    /// The home directory could not be created.
    #[error("cannot create home directory {path}")]
    Home {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No pty could be opened, or the shell could not be spawned.
    #[error("cannot start the shell on a pty")]
    Pty(#[source] pty_process::Error),
}

impl Backend {
    /// Starts the program for `mode`. `shell` is needed for [`SessionMode::Shell`].
    pub fn start(
        mode: &SessionMode,
        shell: Option<&ShellSpec>,
        pipe_capacity: usize,
    ) -> Result<Backend, BackendError> {
        match mode {
            SessionMode::Echo => Ok(Self::echo(pipe_capacity)),
            SessionMode::Stream { total_bytes, .. } => {
                Ok(Self::stream(*total_bytes, pipe_capacity))
            }
            SessionMode::Port { port } => Ok(Self::port(*port, pipe_capacity)),
            SessionMode::Forward { port } => Ok(Self::forward(*port, pipe_capacity)),
            SessionMode::ForwardBasic { port } => Ok(Self::forward_basic(*port, pipe_capacity)),
            SessionMode::Shell | SessionMode::Command { .. } => {
                let spec = shell.cloned().unwrap_or_else(|| ShellSpec {
                    home: std::env::temp_dir(),
                    region: "us-east-1".into(),
                    size: (80, 24),
                    tmux: None,
                });
                match mode {
                    SessionMode::Command { command } => {
                        Self::command(command, &spec, pipe_capacity)
                    }
                    _ => Self::shell(&spec, pipe_capacity),
                }
            }
        }
    }

    /// A command as the agent runs one for `NonInteractiveCommands` with
    /// separate output streams: `sh -c command` in the home directory, with
    /// no terminal and no input, its stdout into `output` and its stderr into
    /// `errors`. Its exit status is known before the pipes close (once it
    /// has exited and both are drained).
    pub fn command(
        command: &str,
        spec: &ShellSpec,
        pipe_capacity: usize,
    ) -> Result<Backend, BackendError> {
        spec.create_home()?;
        let (parts, (in_rx, exit_tx)) = Plumbing::new(pipe_capacity);
        // Input is not read (the command has none).
        drop(in_rx);
        let errors = Arc::new(OutputPipe::new(pipe_capacity));
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env_clear()
            .envs(spec.environment())
            .current_dir(&spec.home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(BackendError::Command)?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .map(|o| tokio::spawn(drain_into(o, parts.output.clone())));
        let stderr = child
            .stderr
            .take()
            .map(|e| tokio::spawn(drain_into(e, errors.clone())));
        let (out_pipe, err_pipe) = (parts.output.clone(), errors.clone());
        let mut killed = parts.kill.subscribe();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s.ok(),
                _ = killed.changed() => {
                    let _ = child.start_kill();
                    child.wait().await.ok()
                }
            };
            for reader in [stdout, stderr].into_iter().flatten() {
                let _ = reader.await;
            }
            let _ = exit_tx.send(Some(
                status.map_or(ExitStatusInfo { code: None }, Into::into),
            ));
            out_pipe.close();
            err_pipe.close();
        });
        Ok(parts.into_backend(pid, Some(errors)))
    }

    /// A program played by a task: `run` gets the output pipe, the flag queue
    /// and the input and returns the exit code; a kill ends it with 0 (dropping
    /// its future). The pipe is closed when it ends.
    fn task<F, Fut>(pipe_capacity: usize, run: F) -> Backend
    where
        F: FnOnce(Arc<OutputPipe>, Arc<FlagQueue>, mpsc::UnboundedReceiver<BackendInput>) -> Fut,
        Fut: std::future::Future<Output = i32> + Send + 'static,
    {
        let (parts, (in_rx, exit_tx)) = Plumbing::new(pipe_capacity);
        let pipe = parts.output.clone();
        let work = run(parts.output.clone(), parts.flags.clone(), in_rx);
        let mut killed = parts.kill.subscribe();
        tokio::spawn(async move {
            let code = tokio::select! {
                c = work => c,
                _ = killed.changed() => 0,
            };
            pipe.close();
            let _ = exit_tx.send(Some(ExitStatusInfo { code: Some(code) }));
        });
        parts.into_backend(None, None)
    }

    /// Input comes back as output.
    pub fn echo(pipe_capacity: usize) -> Backend {
        Self::task(pipe_capacity, |pipe, _flags, mut in_rx| async move {
            while let Some(m) = in_rx.recv().await {
                if let BackendInput::Bytes(b) = m {
                    pipe.write_all(&b).await;
                }
            }
            0
        })
    }

    /// `total` bytes of [`stream_pattern`], then the end.
    pub fn stream(total: u64, pipe_capacity: usize) -> Backend {
        Self::task(pipe_capacity, move |pipe, _flags, _in_rx| async move {
            let block: Vec<u8> = stream_pattern(64 * 256);
            let mut sent: u64 = 0;
            while sent < total {
                let n = (total - sent).min(block.len() as u64) as usize;
                pipe.write_all(&block[..n]).await;
                sent += n as u64;
            }
            0
        })
    }

    /// A relay to and from `127.0.0.1:port`, as the agent's port session
    /// does: input bytes are written to the connection, what it sends is
    /// output; the end of either stops both. Exit code 0 when the destination
    /// closed the connection, 1 when it could not be reached.
    pub fn port(port: u16, pipe_capacity: usize) -> Backend {
        Self::task(pipe_capacity, move |pipe, _flags, mut in_rx| async move {
            let mut conn = match DestConnection::open(port, &pipe).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(port, "port session: cannot connect to the destination: {e}");
                    return 1;
                }
            };
            let writer = &mut conn.writer;
            let to = async {
                while let Some(m) = in_rx.recv().await {
                    match m {
                        BackendInput::Bytes(b) => {
                            if writer.write_all(&b).await.is_err() {
                                break;
                            }
                        }
                        BackendInput::Resize { .. } | BackendInput::Disconnect => {}
                        BackendInput::Terminate => {
                            let _ = writer.shutdown().await;
                            return;
                        }
                    }
                }
                // The session is gone: no more input, the destination may
                // still answer.
                let _ = writer.shutdown().await;
                std::future::pending::<()>().await
            };
            tokio::select! {
                // The destination closed: everything it sent is in the pipe.
                _ = &mut conn.reader => {}
                _ = to => {}
            }
            0
        })
    }

    /// The agent's side of an `AWS-StartPortForwardingSession` session with
    /// smux multiplexing: the input is an smux v1 byte stream, each stream
    /// the client opens is relayed to a new TCP connection to
    /// `127.0.0.1:port`, and the output carries the streams' data back as
    /// smux frames (see [`SessionMode::Forward`]). A stream whose connection
    /// fails pushes flag 3 (`ConnectToPortError`) into [`Backend::flags`] and
    /// gets a `FIN`. Runs until [`BackendInput::Terminate`] (exit code 0) or
    /// an input that is not smux v1 (exit code 1).
    pub fn forward(port: u16, pipe_capacity: usize) -> Backend {
        Self::task(pipe_capacity, move |pipe, flags, in_rx| {
            super::forward::run(port, pipe, flags, in_rx)
        })
    }

    /// The agent's side of an `AWS-StartPortForwardingSession` session in
    /// basic mode (agents up to 3.0.196.0, one local connection at a time):
    /// the session's bytes are relayed to and from a connection to
    /// `127.0.0.1:port`, made at start. [`BackendInput::Disconnect`] closes
    /// it, and so does the destination's end; the next input then opens a
    /// new one (see [`SessionMode::ForwardBasic`]). Runs until
    /// [`BackendInput::Terminate`] (exit code 0); exit code 1 when the first
    /// connection cannot be made.
    pub fn forward_basic(port: u16, pipe_capacity: usize) -> Backend {
        Self::task(pipe_capacity, move |pipe, _flags, in_rx| {
            super::forward::run_basic(port, pipe, in_rx)
        })
    }

    /// A login shell on a pty.
    pub fn shell(spec: &ShellSpec, pipe_capacity: usize) -> Result<Backend, BackendError> {
        spec.create_home()?;
        let (pty, pts) = pty_process::open().map_err(BackendError::Pty)?;
        let (cols, rows) = spec.size;
        pty.resize(pty_process::Size::new(rows.max(1), cols.max(1)))
            .map_err(BackendError::Pty)?;
        let program = find_shell();
        let mut tmux_dir = None;
        let cmd = if let Some(base) = &spec.tmux {
            // A tmux server of its own (its socket in a directory of its
            // own), ending with the shell: the session is destroyed when its
            // client goes (the pty hangs up), and the server with its last
            // session.
            let dir = base.join(uuid::Uuid::new_v4().simple().to_string());
            let conf = dir.join("tmux.conf");
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&conf, "set -g destroy-unattached on\n"))
                .map_err(|source| BackendError::Home {
                    path: dir.clone(),
                    source,
                })?;
            tmux_dir = Some(dir.clone());
            pty_process::Command::new("tmux")
                .arg("-S")
                .arg(dir.join("socket"))
                .arg("-f")
                .arg(&conf)
                .arg("new-session")
                .arg(&program)
                .arg("-l")
        } else {
            pty_process::Command::new(&program).arg("-l")
        };
        let cmd = cmd
            .env_clear()
            .envs(spec.environment())
            .env("SHELL", &program)
            .env("TERM", "xterm-256color")
            .current_dir(&spec.home)
            .kill_on_drop(true);
        let cmd = crate::default_signals(cmd);
        let mut child = cmd.spawn(pts).map_err(BackendError::Pty)?;
        let pid = child.id();
        let (mut reader, mut writer) = pty.into_split();

        let (parts, (mut in_rx, exit_tx)) = Plumbing::new(pipe_capacity);

        // Output: pty → pipe, until EIO (every holder of the terminal has gone).
        let pipe = parts.output.clone();
        let mut killed = parts.kill.subscribe();
        let (read_done_tx, mut read_done) = watch::channel(false);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                tokio::select! {
                    r = reader.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => pipe.write_all(&buf[..n]).await,
                    },
                    _ = killed.changed() => break,
                }
            }
            let _ = read_done_tx.send(true);
        });

        // Input: channel → pty; resizes applied to the pty.
        let mut killed = parts.kill.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = in_rx.recv() => match m {
                        Some(BackendInput::Bytes(b)) => {
                            if writer.write_all(&b).await.is_err() {
                                break;
                            }
                        }
                        Some(BackendInput::Resize { cols, rows }) => {
                            let _ = writer.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
                        }
                        Some(BackendInput::Terminate | BackendInput::Disconnect) => {}
                        None => break,
                    },
                    _ = killed.changed() => break,
                }
            }
            // Dropping the write half (and the read half in the other task) hangs
            // up the terminal: the shell and its jobs get SIGHUP.
        });

        // The process: wait for it, then let the last output drain.
        let pipe = parts.output.clone();
        let mut killed = parts.kill.subscribe();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s.ok(),
                _ = killed.changed() => {
                    // Give SIGHUP (from the hang-up) a moment, then kill.
                    match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
                        Ok(s) => s.ok(),
                        Err(_) => {
                            let _ = child.start_kill();
                            child.wait().await.ok()
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, read_done.wait_for(|d| *d)).await;
            if let Some(dir) = tmux_dir {
                // The server has gone with its last session.
                let _ = std::fs::remove_dir_all(dir);
            }
            pipe.close();
            let _ = exit_tx.send(Some(
                status.map_or(ExitStatusInfo { code: None }, Into::into),
            ));
        });

        Ok(parts.into_backend(pid, None))
    }

    /// Passes input to the program (ignored once it has ended).
    pub fn send(&self, input: BackendInput) {
        let _ = self.input.send(input);
    }

    /// Whether the program has ended and all its output was read.
    pub fn is_finished(&self) -> bool {
        self.output.is_closed() && self.output.is_empty()
    }

    /// How the program ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatusInfo> {
        *self.exit.borrow()
    }

    /// Waits until the program has ended, and tells how.
    pub async fn wait_exit(&self) -> Option<ExitStatusInfo> {
        let mut exit = self.exit.clone();
        exit.wait_for(Option::is_some).await.ok().and_then(|s| *s)
    }

    /// Stops the program.
    pub fn kill(&self) {
        let _ = self.kill.send(true);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `from` into `to` until end of file or an error.
async fn drain_into(mut from: impl tokio::io::AsyncRead + Unpin, to: Arc<OutputPipe>) {
    let mut buf = vec![0u8; 4096];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => to.write_all(&buf[..n]).await,
        }
    }
}

/// `bash` if it can be found on PATH (or in /bin, /usr/bin), else `sh`.
fn find_shell() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/bin".into());
    dirs.push("/usr/bin".into());
    for name in ["bash", "sh"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("/bin/sh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_tail_detection() {
        let t = |b: &[u8]| incomplete_utf8_tail(b.iter());
        assert_eq!(t(b"abc"), 0);
        assert_eq!(t("é".as_bytes()), 0);
        assert_eq!(t(&"é".as_bytes()[..1]), 1);
        assert_eq!(t(&"€".as_bytes()[..2]), 2);
        assert_eq!(t(&"😀".as_bytes()[..3]), 3);
        assert_eq!(t("😀".as_bytes()), 0);
        assert_eq!(t(&[0xff]), 0);
    }

    #[test]
    fn pipe_reads_in_chunks_and_keeps_characters_whole() {
        let pipe = OutputPipe::new(1024);
        futures_util::FutureExt::now_or_never(pipe.write_all("ab€".as_bytes())).expect("room");
        // 'a' 'b' + first two bytes of € would split the character: hold it back.
        assert_eq!(pipe.read(4), PipeRead::Data(Bytes::from_static(b"ab")));
        assert_eq!(pipe.read(4), PipeRead::Data(Bytes::from("€")));
        assert_eq!(pipe.read(4), PipeRead::Empty);
        pipe.unread(b"xy");
        assert_eq!(pipe.read(1), PipeRead::Data(Bytes::from_static(b"x")));
        pipe.close();
        assert_eq!(pipe.read(9), PipeRead::Data(Bytes::from_static(b"y")));
        assert_eq!(pipe.read(9), PipeRead::Eof);
    }

    #[tokio::test]
    async fn pipe_applies_backpressure() {
        let pipe = Arc::new(OutputPipe::new(8));
        let p = pipe.clone();
        let writer = tokio::spawn(async move { p.write_all(&[7u8; 20]).await });
        let mut got = Vec::new();
        while got.len() < 20 {
            match pipe.read(5) {
                PipeRead::Data(d) => {
                    assert!(pipe.len() <= 8);
                    got.extend_from_slice(&d);
                }
                PipeRead::Empty => pipe.readable().await,
                PipeRead::Eof => unreachable!(),
            }
        }
        writer.await.expect("writer");
        assert_eq!(got, vec![7u8; 20]);
    }

    #[test]
    fn stream_pattern_repeats_the_line() {
        let p = stream_pattern(130);
        assert_eq!(&p[..64], STREAM_LINE);
        assert_eq!(&p[64..128], STREAM_LINE);
        assert_eq!(&p[128..], b"01");
    }
}
