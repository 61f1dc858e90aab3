//! Sans-IO decoder for the frames the remote script writes to the terminal.
//!
//! The terminal stream carries anything: the echo of the bootstrap line,
//! prompts, escape sequences, CRLF line endings. A frame is a line that
//! starts with the run's nonce:
//!
//! ```text
//! <nonce>:R                 ready: echo is off, the loader reads the script
//! <nonce>:S                 the command is about to start
//! <nonce>:O:<seq>:<base64>  bytes for stdout (seq counts from 0 per stream)
//! <nonce>:E:<seq>:<base64>  bytes for stderr
//! <nonce>:X:<status>        the command ended with this status ($?)
//! <nonce>:F:<text>          the script cannot run (e.g. a missing tool)
//! ```
//!
//! Lines that do not start with the nonce are skipped without being stored,
//! so memory stays bounded by [`MAX_FRAME_LINE`] whatever arrives. Sequence
//! numbers make a lost or damaged frame an error instead of silently wrong
//! output.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest frame line accepted (an O/E frame carries at most 64 KiB).
pub(crate) const MAX_FRAME_LINE: usize = 128 * 1024;

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Ready,
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    Fatal(String),
}

/// What went wrong with a line that carried the nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame line was longer than any frame the script writes.
    #[error("frame line longer than {MAX_FRAME_LINE} bytes")]
    TooLong,
    /// A frame did not follow the format.
    #[error("malformed frame ({0})")]
    Malformed(&'static str),
    /// A frame arrived out of sequence: output was lost or damaged on the way.
    #[error(
        "{stream} frame {got} arrived where {expected} was expected: output was lost on the way"
    )]
    OutOfSequence {
        /// "stdout" or "stderr".
        stream: &'static str,
        /// Expected sequence number.
        expected: u64,
        /// Received sequence number.
        got: u64,
    },
}

enum State {
    /// At the start of a line; `n` bytes of the nonce matched so far.
    Matching(usize),
    /// The nonce matched; collecting the rest of the line.
    Collecting,
    /// Not a frame: skipping to the end of the line.
    Skipping,
}

/// Incremental frame decoder.
pub(crate) struct FrameDecoder {
    nonce: Vec<u8>,
    state: State,
    line: Vec<u8>,
    next_out: u64,
    next_err: u64,
}

impl FrameDecoder {
    pub(crate) fn new(nonce: &str) -> Self {
        FrameDecoder {
            nonce: nonce.as_bytes().to_vec(),
            state: State::Matching(0),
            line: Vec::new(),
            next_out: 0,
            next_err: 0,
        }
    }

    /// Feeds terminal bytes; complete frames are appended to `frames`.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        frames: &mut Vec<Frame>,
    ) -> Result<(), FrameError> {
        while !data.is_empty() {
            let (frame, used) = self.feed_one(data)?;
            data = &data[used..];
            frames.extend(frame);
        }
        Ok(())
    }

    /// Feeds terminal bytes up to the end of the first complete frame:
    /// returns it (if one was completed) and how many bytes were taken. The
    /// bytes after a frame are left to the caller (with `exec -t` they are
    /// the command's own output, not frames).
    pub(crate) fn feed_one(&mut self, data: &[u8]) -> Result<(Option<Frame>, usize), FrameError> {
        let mut rest = data;
        while !rest.is_empty() {
            match self.state {
                State::Skipping => match memchr(b'\n', rest) {
                    Some(i) => {
                        rest = &rest[i + 1..];
                        self.state = State::Matching(0);
                    }
                    None => rest = &rest[rest.len()..],
                },
                State::Matching(n) => {
                    let b = rest[0];
                    rest = &rest[1..];
                    if b == self.nonce[n] {
                        if n + 1 == self.nonce.len() {
                            self.state = State::Collecting;
                            self.line.clear();
                        } else {
                            self.state = State::Matching(n + 1);
                        }
                    } else if b == b'\n' || (n == 0 && b == b'\r') {
                        self.state = State::Matching(0);
                    } else {
                        self.state = State::Skipping;
                    }
                }
                State::Collecting => {
                    let (part, after, done) = match memchr(b'\n', rest) {
                        Some(i) => (&rest[..i], &rest[i + 1..], true),
                        None => (rest, &rest[rest.len()..], false),
                    };
                    if self.line.len() + part.len() > MAX_FRAME_LINE {
                        return Err(FrameError::TooLong);
                    }
                    self.line.extend_from_slice(part);
                    rest = after;
                    if done {
                        self.state = State::Matching(0);
                        let mut line = std::mem::take(&mut self.line);
                        while line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        let frame = self.parse(&line);
                        line.clear();
                        self.line = line;
                        return Ok((Some(frame?), data.len() - rest.len()));
                    }
                }
            }
        }
        Ok((None, data.len()))
    }

    fn parse(&mut self, line: &[u8]) -> Result<Frame, FrameError> {
        let rest = line
            .strip_prefix(b":")
            .ok_or(FrameError::Malformed("no separator after nonce"))?;
        match rest {
            b"R" => Ok(Frame::Ready),
            b"S" => Ok(Frame::Started),
            _ => {
                let (kind, body) = match rest {
                    [k, b':', body @ ..] => (*k, body),
                    _ => return Err(FrameError::Malformed("unknown frame")),
                };
                match kind {
                    b'O' | b'E' => {
                        let sep = memchr(b':', body)
                            .ok_or(FrameError::Malformed("no sequence number"))?;
                        let seq = parse_u64(&body[..sep])
                            .ok_or(FrameError::Malformed("bad sequence number"))?;
                        let (expected, stream) = if kind == b'O' {
                            (&mut self.next_out, "stdout")
                        } else {
                            (&mut self.next_err, "stderr")
                        };
                        if seq != *expected {
                            return Err(FrameError::OutOfSequence {
                                stream,
                                expected: *expected,
                                got: seq,
                            });
                        }
                        *expected += 1;
                        let bytes = STANDARD
                            .decode(&body[sep + 1..])
                            .map_err(|_| FrameError::Malformed("invalid base64 payload"))?;
                        Ok(if kind == b'O' {
                            Frame::Stdout(bytes)
                        } else {
                            Frame::Stderr(bytes)
                        })
                    }
                    b'X' => {
                        let s = std::str::from_utf8(body)
                            .map_err(|_| FrameError::Malformed("bad status"))?;
                        let code: i32 =
                            s.parse().map_err(|_| FrameError::Malformed("bad status"))?;
                        Ok(Frame::Exit(code))
                    }
                    b'F' => Ok(Frame::Fatal(
                        String::from_utf8_lossy(body)
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(200)
                            .collect(),
                    )),
                    _ => Err(FrameError::Malformed("unknown frame type")),
                }
            }
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const N: &str = "0123456789abcdef0123456789abcdef";

    fn feed_all(d: &mut FrameDecoder, chunks: &[&[u8]]) -> Result<Vec<Frame>, FrameError> {
        let mut v = Vec::new();
        for c in chunks {
            d.feed(c, &mut v)?;
        }
        Ok(v)
    }

    #[test]
    fn decodes_frames_among_noise_split_anywhere() {
        let stream = format!(
            "$ stty -echo ... {a} {b}\r\n\r\n{N}:R\r\nnoise {N}:X:1\r\n\r\n{N}:O:0:aGk=\r\n\r\n{N}:E:0:AP8=\r\n\r\n{N}:X:7\r\n",
            a = &N[..16],
            b = &N[16..]
        );
        let bytes = stream.as_bytes();
        for split in 0..bytes.len() {
            let mut d = FrameDecoder::new(N);
            let frames = feed_all(&mut d, &[&bytes[..split], &bytes[split..]]).unwrap();
            assert_eq!(
                frames,
                vec![
                    Frame::Ready,
                    Frame::Stdout(b"hi".to_vec()),
                    Frame::Stderr(vec![0, 255]),
                    Frame::Exit(7)
                ]
            );
        }
    }

    #[test]
    fn other_nonces_and_prefixes_are_ignored() {
        let mut d = FrameDecoder::new(N);
        let s = format!(
            "{}:X:0\n{}:X:0\n:X:0\n{}\n",
            &N[..31],
            N.replace('0', "1"),
            &N[..20]
        );
        assert_eq!(feed_all(&mut d, &[s.as_bytes()]).unwrap(), vec![]);
    }

    #[test]
    fn lost_frame_is_an_error() {
        let mut d = FrameDecoder::new(N);
        let s = format!("{N}:O:0:YQ==\n{N}:O:2:YQ==\n");
        assert!(matches!(
            feed_all(&mut d, &[s.as_bytes()]),
            Err(FrameError::OutOfSequence {
                expected: 1,
                got: 2,
                ..
            })
        ));
    }

    #[test]
    fn garbage_after_nonce_is_an_error_not_a_panic() {
        for tail in [
            ":",
            ":O",
            ":O:",
            ":O:x:",
            ":O:0:@@@",
            ":X:",
            ":X:abc",
            ":Q:1",
            "zz",
            ":O:99999999999999999999:",
        ] {
            let mut d = FrameDecoder::new(N);
            let s = format!("{N}{tail}\n");
            assert!(feed_all(&mut d, &[s.as_bytes()]).is_err(), "{tail}");
        }
    }

    #[test]
    fn long_noise_lines_use_no_memory_and_long_frames_fail() {
        let mut d = FrameDecoder::new(N);
        let noise = vec![b'x'; 10 * MAX_FRAME_LINE];
        assert_eq!(feed_all(&mut d, &[&noise, b"\n"]).unwrap(), vec![]);
        assert!(d.line.capacity() == 0);
        let mut big = format!("{N}:O:0:").into_bytes();
        big.resize(MAX_FRAME_LINE + 100, b'A');
        assert_eq!(feed_all(&mut d, &[&big]), Err(FrameError::TooLong));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>, cut in 0usize..64) {
            let mut d = FrameDecoder::new(N);
            let mut prefix = N.as_bytes().to_vec();
            prefix.truncate(cut.min(prefix.len()));
            prefix.extend_from_slice(&data);
            let mut v = Vec::new();
            let _ = d.feed(&prefix, &mut v);
        }
    }
}
