//! ssh-style escape sequences typed on the local keyboard.
//!
//! Like ssh, the escape character `~` is recognised only right after a line
//! break (Enter) or at the very start of the session:
//!
//! - `~.` disconnects;
//! - `~~` sends one literal `~`;
//! - `~?` shows the list of escapes;
//! - `~` followed by anything else sends both characters unchanged.

/// What the keyboard filter asks the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscapeAction {
    /// Send these bytes to the remote side.
    Send(Vec<u8>),
    /// Disconnect (`~.`).
    Disconnect,
    /// Print the escape help on stderr (`~?`).
    Help,
}

/// The help text printed for `~?`.
pub const ESCAPE_HELP: &str = "Supported escape sequences (after Enter):\r\n  ~.  disconnect\r\n  ~~  send a literal ~\r\n  ~?  this message\r\n";

/// Scans keyboard bytes for escape sequences.
#[derive(Debug, Clone)]
pub struct EscapeFilter {
    at_line_start: bool,
    pending_tilde: bool,
}

impl Default for EscapeFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl EscapeFilter {
    /// A filter at the start of a line.
    pub fn new() -> Self {
        Self {
            at_line_start: true,
            pending_tilde: false,
        }
    }

    /// Whether a `~` is being held back, waiting for the next key.
    pub fn is_pending(&self) -> bool {
        self.pending_tilde
    }

    /// Feeds keyboard bytes; returns the actions in order. Bytes that are not
    /// part of an escape are passed through unchanged, in as few `Send`
    /// actions as possible.
    pub fn feed(&mut self, input: &[u8]) -> Vec<EscapeAction> {
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending_tilde {
                self.pending_tilde = false;
                match b {
                    b'.' => {
                        if !buf.is_empty() {
                            out.push(EscapeAction::Send(std::mem::take(&mut buf)));
                        }
                        out.push(EscapeAction::Disconnect);
                        return out;
                    }
                    b'~' => {
                        buf.push(b'~');
                        self.at_line_start = false;
                        continue;
                    }
                    b'?' => {
                        if !buf.is_empty() {
                            out.push(EscapeAction::Send(std::mem::take(&mut buf)));
                        }
                        out.push(EscapeAction::Help);
                        // Still at the start of a line, as in ssh.
                        self.at_line_start = true;
                        continue;
                    }
                    _ => buf.push(b'~'),
                }
            } else if self.at_line_start && b == b'~' {
                self.pending_tilde = true;
                continue;
            }
            buf.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        if !buf.is_empty() {
            out.push(EscapeAction::Send(buf));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use EscapeAction::*;

    fn send(s: &str) -> EscapeAction {
        Send(s.as_bytes().to_vec())
    }

    #[test]
    fn plain_bytes_pass_through() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"ls -l\r"), vec![send("ls -l\r")]);
        assert_eq!(f.feed(b"a~b"), vec![send("a~b")]);
        assert_eq!(f.feed(b"\x03\x1a\x1c"), vec![Send(vec![3, 0x1a, 0x1c])]);
    }

    #[test]
    fn enter_tilde_dot_disconnects() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"echo hi\r~."), vec![send("echo hi\r"), Disconnect]);
        // At the very start too, and split across reads.
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"~"), vec![]);
        assert!(f.is_pending());
        assert_eq!(f.feed(b"."), vec![Disconnect]);
    }

    #[test]
    fn double_tilde_sends_one() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"\r~~."), vec![send("\r~.")]);
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"~"), vec![]);
        assert_eq!(f.feed(b"~"), vec![send("~")]);
    }

    #[test]
    fn tilde_then_other_sends_both() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"~x"), vec![send("~x")]);
        assert_eq!(f.feed(b"\n~/bin\r"), vec![send("\n~/bin\r")]);
    }

    #[test]
    fn help_keeps_line_start() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"~?~."), vec![Help, Disconnect]);
    }
}
