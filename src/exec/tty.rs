//! A command run on the session's terminal itself, like `ssh -t host cmd`:
//! for programs that need a terminal (editors, pagers, `top`, prompts).
//!
//! The same bootstrap as [`run`](super::run) loads a script with echo off
//! (argv and environment travel as base64, never as shell text). The script
//! then puts the terminal back into its default mode, prints a start marker
//! and runs the command in the foreground of the terminal: what it prints
//! arrives unframed, stdout and stderr together, as on any terminal, and
//! whatever is typed reaches it. When it ends, the script prints an exit
//! marker with its status; [`TtyCommand::filter`] takes the marker out of
//! the output and reports the status. Everything before the start marker
//! (the prompt, the bootstrap line's echo) is dropped.

use super::frame::{Frame, FrameDecoder, FrameError};
use super::script::{self, Nonce};
use super::{ExecError, ExecOptions, ExitStatus, INPUT_MESSAGE};
use crate::session::{Session, SessionEvent};

/// A command started on a session's terminal by [`start_tty`]. Pass every
/// later output of the session through [`filter`](Self::filter).
pub struct TtyCommand {
    /// The nonce and `:X:`: how the exit marker starts (after a `\r`).
    marker: Vec<u8>,
    /// Output not yet passed on: the start of what may be the exit marker.
    held: Vec<u8>,
    /// Set once the exit marker has passed.
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for TtyCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtyCommand")
            .field("held", &self.held.len())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Most digits of an exit status in the marker (`$?` is 0 to 255).
const STATUS_DIGITS: usize = 3;

impl TtyCommand {
    fn new(nonce: &Nonce) -> Self {
        let mut marker = nonce.as_str().as_bytes().to_vec();
        marker.extend_from_slice(b":X:");
        TtyCommand {
            marker,
            held: Vec::new(),
            status: None,
        }
    }

    /// Takes the session's output: appends to `out` what the command
    /// printed, and returns its exit status once the exit marker has
    /// arrived (output after it is not the command's and is dropped).
    ///
    /// The marker is `\r`, the run's nonce, `:X:` and the status, ended by
    /// anything but a digit (a line end, or the escape sequence a terminal
    /// multiplexer such as tmux puts there); the `\r` is taken out with it.
    /// Bytes that may start the marker are held back until the next call
    /// tells: in practice only a `\r` at the very end of a chunk.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        self.held.extend_from_slice(input);
        // Where to look for the marker next: bytes before `from` are output.
        let mut from = 0;
        loop {
            let Some(at) = find(&self.held[from..], &self.marker).map(|i| from + i) else {
                // Hold back the longest end of the buffer that could begin
                // the marker, with the `\r` before it.
                let rest = &self.held[from..];
                let mut keep = (1..self.marker.len().min(rest.len() + 1))
                    .rev()
                    .find(|&k| rest.ends_with(&self.marker[..k]))
                    .unwrap_or(0);
                if rest.len() > keep && rest[rest.len() - keep - 1] == b'\r' {
                    keep += 1;
                }
                let cut = self.held.len() - keep;
                out.extend_from_slice(&self.held[..cut]);
                self.held.drain(..cut);
                return None;
            };
            let start = if at > from && self.held[at - 1] == b'\r' {
                at - 1
            } else {
                at
            };
            let after = &self.held[at + self.marker.len()..];
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == after.len() && digits <= STATUS_DIGITS {
                // The marker so far; the rest is still on its way.
                out.extend_from_slice(&self.held[..start]);
                self.held.drain(..start);
                return None;
            }
            let code = (1..=STATUS_DIGITS)
                .contains(&digits)
                .then(|| std::str::from_utf8(&after[..digits]).ok())
                .flatten()
                .and_then(|d| d.parse::<i32>().ok())
                .filter(|c| (0..=255).contains(c));
            match code {
                Some(code) => {
                    out.extend_from_slice(&self.held[..start]);
                    self.held = Vec::new();
                    self.status = Some(ExitStatus::from_code(code));
                    return self.status;
                }
                // Not the marker after all: it is output like the rest.
                None => from = at + self.marker.len(),
            }
        }
    }

    /// The command's exit status, once [`filter`](Self::filter) has seen it.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Starts `argv` on the terminal of `session` (a fresh shell, such as a new
/// tab's) and returns once it runs, with the command's first output already
/// given to the returned [`TtyCommand`] (call `filter(&[], ..)` to get it).
///
/// From [`ExecOptions`] this uses the environment variables
/// ([`ExecOptions::env`]: exported to the command, never on the terminal)
/// and the start-up timeout; stdin, interrupts and the timeout are the
/// caller's, who now drives the terminal: send keystrokes (a `^C` is
/// interrupt), resizes, and pass the output through
/// [`TtyCommand::filter`]. Output printed before the command started (the
/// prompt, the echo of the bootstrap line) is dropped.
pub async fn start_tty(
    session: &mut Session,
    argv: &[impl AsRef<[u8]>],
    options: &ExecOptions,
) -> Result<TtyCommand, ExecError> {
    let argv = super::checked_argv(argv, options)?;
    let nonce = Nonce::random();
    let mut decoder = FrameDecoder::new(nonce.as_str());
    let mut command = TtyCommand::new(&nonce);
    let startup = options.startup_timeout;
    let run = async {
        let mut line = script::bootstrap_line(&nonce).into_bytes();
        line.push(b'\r');
        send(session, &line).await?;
        let mut ready = false;
        loop {
            let chunk = next_output(session).await?;
            let mut data = &chunk[..];
            while !data.is_empty() {
                let (frame, used) = decoder.feed_one(data).map_err(ExecError::Frame)?;
                data = &data[used..];
                match frame {
                    None => {}
                    Some(Frame::Ready) if !ready => {
                        ready = true;
                        let with_env = !options.env.is_empty();
                        send(session, &script::tty_script_lines(&nonce, &argv, with_env)).await?;
                        if with_env {
                            send(session, &super::env_block(options)).await?;
                        }
                    }
                    Some(Frame::Started) if ready => {
                        // What follows the start marker is the command's.
                        command.held.extend_from_slice(data);
                        return Ok(());
                    }
                    Some(Frame::Fatal(m)) => return Err(ExecError::RemoteUnsupported(m)),
                    Some(_) => {
                        return Err(ExecError::Frame(FrameError::Malformed(
                            "unexpected frame before the command started",
                        )));
                    }
                }
            }
        }
    };
    match tokio::time::timeout(startup, run).await {
        Ok(Ok(())) => Ok(command),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ExecError::StartupTimeout(startup)),
    }
}

async fn send(session: &Session, data: &[u8]) -> Result<(), ExecError> {
    for chunk in data.chunks(INPUT_MESSAGE) {
        session
            .send_input(chunk)
            .await
            .map_err(|e| ExecError::Session(Box::new(e)))?;
    }
    Ok(())
}

/// The session's next output, or why there is none.
async fn next_output(session: &mut Session) -> Result<bytes::Bytes, ExecError> {
    loop {
        match session.next_event().await {
            Some(SessionEvent::Output(b) | SessionEvent::StdErr(b)) => return Ok(b),
            Some(SessionEvent::Closed { reason: Some(r) }) => {
                return Err(ExecError::ClosedByService(r));
            }
            Some(SessionEvent::Closed { reason: None }) | None => {
                return Err(ExecError::SessionClosed);
            }
            Some(SessionEvent::Failed(e)) => return Err(ExecError::Session(Box::new(e))),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const N: &str = "0123456789abcdef0123456789abcdef";

    fn command() -> TtyCommand {
        TtyCommand::new(&Nonce::fixed(N))
    }

    /// Feeds `chunks` one by one; returns the output and the status.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<i32>) {
        let mut c = command();
        let mut out = Vec::new();
        let mut status = None;
        for ch in chunks {
            if let Some(s) = c.filter(ch, &mut out) {
                status = Some(s.code());
                break;
            }
        }
        (out, status)
    }

    #[test]
    fn the_marker_is_taken_out_wherever_the_stream_is_cut() {
        for (output, code) in [
            (&b"hello\r\nworld\r\n"[..], 0),
            (b"no newline at the end", 3),
            (b"", 255),
            (b"a\rprogress\r", 42),
            (b"\r\r\r", 1),
        ] {
            let mut stream = output.to_vec();
            stream.extend_from_slice(format!("\r{N}:X:{code}\r\nafter the end").as_bytes());
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                assert_eq!(run(&[a, b]), (output.to_vec(), Some(code)), "cut at {cut}");
            }
            // One byte at a time.
            let bytes: Vec<[u8; 1]> = stream.iter().map(|&b| [b]).collect();
            let chunks: Vec<&[u8]> = bytes.iter().map(|b| &b[..]).collect();
            assert_eq!(run(&chunks), (output.to_vec(), Some(code)));
        }
    }

    #[test]
    fn output_is_not_held_back_unless_it_may_start_the_marker() {
        let mut c = command();
        let mut out = Vec::new();
        assert_eq!(c.filter(b"typed x", &mut out), None);
        assert_eq!(out, b"typed x");
        out.clear();
        assert_eq!(c.filter(b"line\r\n", &mut out), None);
        assert_eq!(out, b"line\r\n");
        out.clear();
        // A lone trailing \r waits for the next byte.
        assert_eq!(c.filter(b"x\r", &mut out), None);
        assert_eq!(out, b"x");
        assert_eq!(c.filter(b"\n", &mut out), None);
        assert_eq!(out, b"x\r\n");
    }

    #[test]
    fn things_like_the_marker_are_output() {
        let fakes = [
            format!("\r{N}:X:\r\n"),
            format!("\r{N}:X:1234\r\n"),
            format!("\r{N}:X:256\r\n"),
            format!("\r{N}:X:x1\r\n"),
            format!("\r{}:X:0\r\n", N.replace('0', "1")),
        ];
        for fake in fakes {
            let real = format!("\r{N}:X:9\r\n");
            let stream = format!("{fake}{real}");
            assert_eq!(
                run(&[stream.as_bytes()]),
                (fake.clone().into_bytes(), Some(9)),
                "{fake:?}"
            );
        }
    }

    /// The marker as tmux draws it: moved to its row by an escape sequence
    /// instead of `\r`, the line cleared after it.
    #[test]
    fn the_marker_as_a_multiplexer_draws_it() {
        let stream = format!("done\x1b[5;1H{N}:X:3\x1b[K\x1b[6;1H");
        let bytes = stream.as_bytes();
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(
                run(&[a, b]),
                (b"done\x1b[5;1H".to_vec(), Some(3)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn nothing_after_the_status() {
        let mut c = command();
        let mut out = Vec::new();
        let s = format!("ok\r{N}:X:0\r\n");
        assert_eq!(c.filter(s.as_bytes(), &mut out).map(|s| s.code()), Some(0));
        assert_eq!(c.filter(b"more", &mut out).map(|s| s.code()), Some(0));
        assert_eq!(out, b"ok");
        assert_eq!(c.status().map(|s| s.code()), Some(0));
        assert!(!format!("{c:?}").contains(N));
    }

    proptest::proptest! {
        #[test]
        fn any_output_comes_through_exactly(output: Vec<u8>, cut in 0usize..200, code in 0i32..256) {
            let mut stream = output.clone();
            stream.extend_from_slice(format!("\r{N}:X:{code}\n").as_bytes());
            let cut = cut.min(stream.len());
            let (a, b) = stream.split_at(cut);
            proptest::prop_assert_eq!(run(&[a, b]), (output, Some(code)));
        }
    }
}
