//! The interactive front end: raw terminal mode, stdin/stdout pumps, resize
//! and ssh-style escapes.
//!
//! [`RawModeGuard`] puts the local terminal into raw mode (no echo, no line
//! editing, no local signals: Ctrl-C, Ctrl-Z and Ctrl-\ reach the remote side
//! as bytes) and restores the saved modes when dropped. A panic hook restores
//! them too, before the panic message is printed, so the terminal is usable
//! on every exit path of a program that keeps the default `panic = "unwind"`.
//!
//! [`pump`] connects a [`Session`] to the process's stdin and stdout.

mod escape;

use std::io::{self, IsTerminal as _, Read as _, Write as _};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncWriteExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

pub use escape::{ESCAPE_HELP, EscapeAction, EscapeFilter};

use crate::session::{Session, SessionError, SessionEvent};

static RAW_ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Restores the terminal modes saved when raw mode was enabled. Safe to call
/// at any time and more than once.
pub fn restore_terminal() {
    if RAW_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Installs (once) a panic hook that restores the terminal before the
/// previous hook prints the panic message.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

/// Raw mode for the lifetime of the guard.
#[derive(Debug)]
pub struct RawModeGuard {
    _private: (),
}

impl RawModeGuard {
    /// Saves the terminal modes and enables raw mode. Installs the panic hook.
    pub fn enable() -> io::Result<RawModeGuard> {
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()?;
        RAW_ACTIVE.store(true, Ordering::SeqCst);
        Ok(RawModeGuard { _private: () })
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Whether raw mode is currently on (the guard is alive).
pub fn raw_mode_active() -> bool {
    RAW_ACTIVE.load(Ordering::SeqCst)
}

/// Writes the parts of one status line as they happen (a reconnect: lost,
/// attempts, back), so that one event makes one line on stderr.
#[derive(Debug, Default)]
pub struct StatusLine {
    open: bool,
}

impl StatusLine {
    /// Adds `part` to the line, starting it (on a line of its own) if needed.
    pub fn add(&mut self, part: &str) {
        let mut err = io::stderr().lock();
        if !self.open && raw_mode_active() {
            let _ = write!(err, "\r\n");
        }
        let _ = write!(err, "{part}");
        let _ = err.flush();
        self.open = true;
    }

    /// Ends the line (with `part`, if the line is open).
    pub fn end(&mut self, part: &str) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut err = io::stderr().lock();
        let nl = if raw_mode_active() { "\r\n" } else { "\n" };
        let _ = write!(err, "{part}{nl}");
        let _ = err.flush();
    }
}

/// Writes a status line to stderr, with `\r\n` while in raw mode.
pub fn status(msg: &str) {
    let mut err = io::stderr().lock();
    if raw_mode_active() {
        let _ = write!(err, "\r\n{}\r\n", msg.replace('\n', "\r\n"));
    } else {
        let _ = writeln!(err, "{msg}");
    }
    let _ = err.flush();
}

/// The size of the local terminal (on stdout, else stdin), if there is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    if !io::stdout().is_terminal() && !io::stdin().is_terminal() {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .filter(|&(c, r)| c > 0 && r > 0)
}

/// How [`pump`] behaves.
#[derive(Debug, Clone)]
pub struct PumpOptions {
    /// Recognise `~.`, `~~` and `~?` after Enter (interactive use).
    pub escapes: bool,
    /// Send the local terminal size at start and on every SIGWINCH.
    pub forward_resize: bool,
    /// What to do when stdin ends.
    pub at_eof: AtEof,
}

impl Default for PumpOptions {
    fn default() -> Self {
        Self {
            escapes: true,
            forward_resize: true,
            at_eof: AtEof::SendEot,
        }
    }
}

/// What [`pump`] does when stdin ends, once all the input before is
/// acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AtEof {
    /// Send Ctrl-D (EOT), and again whenever the remote side has been quiet
    /// for 500 ms, so that the remote shell sees the end of its input and
    /// exits, as with a local pipe; output is written until the session
    /// closes.
    #[default]
    SendEot,
    /// End the session with `TerminateSession` (a port session's bytes are
    /// not a terminal: an EOT would be data), then stop when it closes or
    /// [`TERMINATE_GRACE`] later.
    Terminate,
}

/// How long [`AtEof::Terminate`] waits for the session to close.
pub const TERMINATE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How a pumped session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpExit {
    /// The remote side closed the session.
    Closed {
        /// The service's reason text, if any.
        reason: Option<String>,
        /// The exit status, when the session reported one.
        exit_code: Option<i32>,
    },
    /// The user typed `~.`.
    EscapeDisconnect,
    /// SIGTERM or SIGHUP arrived; the number of the signal.
    Signal(i32),
    /// Standard output was closed (broken pipe).
    StdoutClosed,
}

/// Reads stdin on a plain thread (a blocked read must not hold up the
/// runtime's shutdown) and hands chunks of up to 16 KiB over; `None` = EOF.
fn spawn_stdin_reader() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(None);
                        return;
                    }
                    Ok(n) => {
                        if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        let _ = tx.blocking_send(None);
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        // No thread: behave as if stdin were empty.
        let (tx2, rx2) = mpsc::channel(1);
        let _ = tx2.try_send(None);
        return rx2;
    }
    rx
}

/// Connects `session` to stdin/stdout until it ends.
///
/// Output goes to stdout unchanged; reconnect notices go to stderr. Input is
/// read from stdin and sent as is (through the escape filter when enabled).
/// On stdin EOF the remaining input is sent, and once it is acknowledged
/// the pump does what `options.at_eof` says.
pub async fn pump(session: Session, options: PumpOptions) -> Result<PumpExit, SessionError> {
    pump_inner(session, options, None).await
}

/// Like [`pump`], with the output passed through `filter` before it is
/// written: it appends what is to be written to its second argument, and
/// returns an exit status once the remote command has ended, which ends
/// the pump with [`PumpExit::Closed`] carrying that status (used with
/// [`crate::exec::TtyCommand::filter`]).
pub async fn pump_filtered(
    session: Session,
    options: PumpOptions,
    mut filter: impl FnMut(&[u8], &mut Vec<u8>) -> Option<i32>,
) -> Result<PumpExit, SessionError> {
    pump_inner(session, options, Some(&mut filter)).await
}

/// An output filter of [`pump_filtered`].
type OutputFilter<'a> = &'a mut dyn FnMut(&[u8], &mut Vec<u8>) -> Option<i32>;

async fn pump_inner(
    mut session: Session,
    options: PumpOptions,
    mut output_filter: Option<OutputFilter<'_>>,
) -> Result<PumpExit, SessionError> {
    let mut filtered = Vec::new();
    let writer = session.writer();
    let mut stdin = spawn_stdin_reader();
    let mut stdin_open = true;
    let mut stdout = tokio::io::stdout();
    let mut filter = EscapeFilter::new();
    let mut exit_code = None;

    let mut winch = if options.forward_resize {
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    if options.forward_resize
        && let Some((c, r)) = terminal_size()
    {
        writer.resize(c, r).await?;
    }
    // Input goes through its own task so that waiting for the send window
    // never stops output from being written.
    let (in_tx, mut in_rx) = mpsc::channel::<Option<Vec<u8>>>(4);
    let input_writer = writer.clone();
    let at_eof = options.at_eof;
    let (terminated_tx, terminated_rx) = oneshot::channel::<()>();
    let mut terminated_tx = Some(terminated_tx);
    let input_task = tokio::spawn(async move {
        while let Some(chunk) = in_rx.recv().await {
            match chunk {
                Some(bytes) => input_writer.send_input(&bytes).await?,
                None => match at_eof {
                    AtEof::SendEot => {
                        input_writer.flush().await?;
                        input_writer.send_input(b"\x04").await?;
                    }
                    AtEof::Terminate => {
                        input_writer.terminate().await?;
                        if let Some(tx) = terminated_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                },
            }
        }
        Ok::<(), SessionError>(())
    });
    // After TerminateSession: the moment to stop waiting for the close.
    let mut terminated_rx = Some(terminated_rx);
    let mut give_up: Option<tokio::time::Instant> = None;

    // After stdin EOF: when the remote side has been quiet for a while, send
    // another Ctrl-D, since one that arrives while a command runs can be lost
    // when the shell switches its terminal modes back for the prompt.
    let quiet = std::time::Duration::from_millis(500);
    let mut last_output = tokio::time::Instant::now();
    let mut reconnect_line = StatusLine::default();
    let result = loop {
        let eot_due = !stdin_open && options.at_eof == AtEof::SendEot;
        tokio::select! {
            sent = async { match terminated_rx.as_mut() { Some(rx) => rx.await, None => std::future::pending().await } } => {
                terminated_rx = None;
                if sent.is_ok() {
                    give_up = Some(tokio::time::Instant::now() + TERMINATE_GRACE);
                }
            },
            _ = async { match give_up { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                break Ok(PumpExit::Closed { reason: None, exit_code });
            },
            _ = tokio::time::sleep_until(last_output + quiet), if eot_due => {
                last_output = tokio::time::Instant::now();
                let _ = in_tx.try_send(Some(vec![0x04]));
            },
            ev = session.next_event() => match ev {
                None => break Ok(PumpExit::Closed { reason: None, exit_code }),
                Some(SessionEvent::Output(b)) | Some(SessionEvent::StdErr(b)) => {
                    last_output = tokio::time::Instant::now();
                    let (data, ended) = match output_filter.as_mut() {
                        None => (&b[..], None),
                        Some(f) => {
                            filtered.clear();
                            let ended = f(&b, &mut filtered);
                            (&filtered[..], ended)
                        }
                    };
                    let w = async {
                        stdout.write_all(data).await?;
                        stdout.flush().await
                    };
                    if w.await.is_err() {
                        break Ok(PumpExit::StdoutClosed);
                    }
                    if let Some(code) = ended {
                        let _ = writer.close().await;
                        break Ok(PumpExit::Closed { reason: None, exit_code: Some(code) });
                    }
                }
                Some(SessionEvent::ExitCode(c)) => exit_code = Some(c),
                Some(SessionEvent::Reconnecting { attempt: 1, reason }) => {
                    reconnect_line.end("");
                    reconnect_line.add(&format!("[cloudshell-rs] connection lost ({reason}); reconnecting..."));
                }
                Some(SessionEvent::Reconnecting { attempt, .. }) => {
                    reconnect_line.add(&format!(" attempt {attempt}..."));
                }
                Some(SessionEvent::Reconnected { .. }) => reconnect_line.end(" reconnected"),
                Some(SessionEvent::Closed { reason }) => {
                    reconnect_line.end("");
                    break Ok(PumpExit::Closed { reason, exit_code });
                }
                Some(SessionEvent::Failed(e)) => {
                    reconnect_line.end("");
                    break Err(e);
                }
                Some(_) => {}
            },
            // Read stdin only once the input task can take a chunk, so that
            // output keeps flowing while input is held back. The permit and
            // the chunk are taken together: a select that only checked the
            // queue's room would not wake up when the room came back, and
            // with a remote side that waits for all the input before it
            // answers (a port session, `cat` without echo), nothing else
            // would wake it either.
            (permit, chunk) = async { (in_tx.reserve().await, stdin.recv().await) }, if stdin_open => {
                let Ok(permit) = permit else {
                    // The input task has stopped (its error comes with the session's events).
                    stdin_open = false;
                    continue;
                };
                match chunk.flatten() {
                    None => {
                        stdin_open = false;
                        permit.send(None);
                    }
                    Some(bytes) => {
                        let actions = if options.escapes { filter.feed(&bytes) } else { vec![EscapeAction::Send(bytes)] };
                        let mut send = Vec::new();
                        let mut disconnect = false;
                        for a in actions {
                            match a {
                                EscapeAction::Send(b) => send.extend_from_slice(&b),
                                EscapeAction::Help => {
                                    let mut err = io::stderr().lock();
                                    let _ = err.write_all(ESCAPE_HELP.as_bytes());
                                    let _ = err.flush();
                                }
                                EscapeAction::Disconnect => disconnect = true,
                            }
                        }
                        if !send.is_empty() {
                            permit.send(Some(send));
                        }
                        if disconnect {
                            break Ok(PumpExit::EscapeDisconnect);
                        }
                    }
                }
            },
            Some(()) = async { match winch.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                if let Some((c, r)) = terminal_size() {
                    let _ = writer.resize(c, r).await;
                }
            },
            Some(()) = async { match term.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                break Ok(PumpExit::Signal(15));
            },
            Some(()) = async { match hup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                break Ok(PumpExit::Signal(1));
            },
        }
    };
    input_task.abort();
    if !matches!(result, Ok(PumpExit::Closed { .. }) | Err(_)) {
        let _ = writer.close().await;
    }
    result
}
