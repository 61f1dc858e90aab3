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
use tokio::sync::mpsc;

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
    /// On stdin EOF, after all input is acknowledged, send Ctrl-D (EOT) so
    /// the remote shell sees end of input and exits, as with a local pipe.
    pub eof_sends_eot: bool,
}

impl Default for PumpOptions {
    fn default() -> Self {
        Self {
            escapes: true,
            forward_resize: true,
            eof_sends_eot: true,
        }
    }
}

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
/// runtime's shutdown) and hands chunks of up to 1024 bytes over; `None` = EOF.
fn spawn_stdin_reader() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 1024];
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
/// On stdin EOF the remaining input is sent, and (with `eof_sends_eot`) a
/// Ctrl-D follows once it is acknowledged, then again whenever the remote
/// side has been quiet for 500 ms; the pump keeps writing output until the
/// remote side closes.
pub async fn pump(mut session: Session, options: PumpOptions) -> Result<PumpExit, SessionError> {
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
    let eot = options.eof_sends_eot;
    let input_task = tokio::spawn(async move {
        while let Some(chunk) = in_rx.recv().await {
            match chunk {
                Some(bytes) => input_writer.send_input(&bytes).await?,
                None => {
                    input_writer.flush().await?;
                    if eot {
                        input_writer.send_input(b"\x04").await?;
                    }
                }
            }
        }
        Ok::<(), SessionError>(())
    });

    // After stdin EOF: when the remote side has been quiet for a while, send
    // another Ctrl-D, since one that arrives while a command runs can be lost
    // when the shell switches its terminal modes back for the prompt.
    let quiet = std::time::Duration::from_millis(500);
    let mut last_output = tokio::time::Instant::now();
    let mut reconnect_line = StatusLine::default();
    let result = loop {
        let eot_due = !stdin_open && options.eof_sends_eot;
        tokio::select! {
            _ = tokio::time::sleep_until(last_output + quiet), if eot_due => {
                last_output = tokio::time::Instant::now();
                let _ = in_tx.try_send(Some(vec![0x04]));
            },
            ev = session.next_event() => match ev {
                None => break Ok(PumpExit::Closed { reason: None, exit_code }),
                Some(SessionEvent::Output(b)) | Some(SessionEvent::StdErr(b)) => {
                    last_output = tokio::time::Instant::now();
                    let w = async {
                        stdout.write_all(&b).await?;
                        stdout.flush().await
                    };
                    if let Err(e) = w.await {
                        if e.kind() == io::ErrorKind::BrokenPipe {
                            break Ok(PumpExit::StdoutClosed);
                        }
                        break Ok(PumpExit::StdoutClosed);
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
            // Read stdin only when the input task can take a chunk without
            // waiting, so output keeps flowing while input is held back.
            chunk = stdin.recv(), if stdin_open && in_tx.capacity() > 0 => {
                match chunk.flatten() {
                    None => {
                        stdin_open = false;
                        let _ = in_tx.try_send(None);
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
                            let _ = in_tx.try_send(Some(send));
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
