//! Sans-IO decoder for the frames the remote script writes to the terminal.
//!
//! The terminal stream carries anything: the echo of the bootstrap line,
//! prompts, escape sequences, CRLF line endings. On CloudShell it is not
//! even the shell's own output but tmux's rendering of it: newlines may come
//! as cursor movements, long lines wrap with scrolling sequences in between,
//! a status line is redrawn now and then, and a screen redraw repeats what
//! is visible. So frames do not depend on lines. The decoder drops every
//! escape sequence and control character (CR and LF included), looks for the
//! run's nonce anywhere in what is left, and reads a frame up to its `.`:
//!
//! ```text
//! <nonce>:R.                           ready: echo is off, the loader reads the script
//! <nonce>:S.                           the command is about to start
//! <nonce>:O:<seq>:<len>:<base64>.      bytes for stdout (seq counts from 0 per stream;
//! <nonce>:E:<seq>:<len>:<base64>.      len is the length of the base64 text), stderr
//! <nonce>:Z:<O|E>:<n>:<sha256>.        that stream ended after n frames whose base64
//!                                      text has this SHA-256
//! <nonce>:X:<status>.                  the command ended with this status ($?)
//! <nonce>:F:<text>.                    the script cannot run (e.g. a missing tool)
//! ```
//!
//! A frame that does not parse (a screen redraw cut it, its length is
//! wrong) is skipped, and so is a frame seen twice (a redraw repeated it):
//! what is lost shows up as a gap in the sequence numbers, or at the end of
//! a stream as a count or digest that does not match (or as a missing end),
//! always an error, never silently wrong output. Memory stays bounded by [`MAX_FRAME_LINE`] whatever arrives.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// Longest frame accepted (an O/E frame carries at most 64 KiB).
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

/// What went wrong with the frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame was longer than any frame the script writes.
    #[error("frame line longer than {MAX_FRAME_LINE} bytes")]
    TooLong,
    /// A frame did not follow the format.
    #[error("malformed frame ({0})")]
    Malformed(&'static str),
    /// A frame arrived out of sequence: output was lost on the way.
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
    /// The end of a stream says more was sent than arrived, or other bytes,
    /// or the run ended without the end of a stream.
    #[error("the {0} that arrived is not what the command wrote: output was lost on the way")]
    Incomplete(&'static str),
}

/// Where the escape-sequence filter is.
#[derive(Clone, Copy)]
enum Esc {
    /// Plain text.
    Text,
    /// After ESC.
    Escape,
    /// Inside a control sequence (`ESC [`), up to its final byte.
    Csi,
    /// Inside a string (`ESC ]`, `ESC P`, `ESC _`, `ESC ^`, `ESC X`), up to
    /// BEL or `ESC \`.
    Str,
    /// ESC inside a string.
    StrEscape,
    /// After `ESC` and an intermediate byte (`ESC ( B`), up to the final byte.
    Intermediate,
}

impl Esc {
    /// Takes one byte; returns it when it is text.
    fn text(&mut self, b: u8) -> Option<u8> {
        match *self {
            Esc::Text => match b {
                0x1b => {
                    *self = Esc::Escape;
                    None
                }
                0..0x20 | 0x7f => None,
                _ => Some(b),
            },
            Esc::Escape => {
                *self = match b {
                    b'[' => Esc::Csi,
                    b']' | b'P' | b'_' | b'^' | b'X' => Esc::Str,
                    0x1b => Esc::Escape,
                    0x20..0x30 => Esc::Intermediate,
                    _ => Esc::Text,
                };
                None
            }
            Esc::Csi => {
                match b {
                    0x40..0x7f => *self = Esc::Text,
                    0x1b => *self = Esc::Escape,
                    _ => {}
                }
                None
            }
            Esc::Str => {
                match b {
                    0x07 => *self = Esc::Text,
                    0x1b => *self = Esc::StrEscape,
                    _ => {}
                }
                None
            }
            Esc::StrEscape => {
                if b == b'\\' {
                    *self = Esc::Text;
                } else {
                    // An ESC ends the string; this byte follows that ESC.
                    *self = Esc::Escape;
                    return self.text(b);
                }
                None
            }
            Esc::Intermediate => {
                match b {
                    0x20..0x30 => {}
                    0x1b => *self = Esc::Escape,
                    _ => *self = Esc::Text,
                }
                None
            }
        }
    }
}

/// Incremental matching of the nonce (Knuth-Morris-Pratt).
struct Matcher {
    nonce: Vec<u8>,
    /// Fast search for whole nonces in long runs.
    finder: memchr::memmem::FinderRev<'static>,
    /// `fail[i]`: length of the longest proper border of `nonce[..=i]`.
    fail: Vec<usize>,
    /// Bytes of the nonce matched so far.
    matched: usize,
}

impl Matcher {
    fn new(nonce: &[u8]) -> Self {
        let mut fail = vec![0; nonce.len()];
        let mut k = 0;
        for i in 1..nonce.len() {
            while k > 0 && nonce[i] != nonce[k] {
                k = fail[k - 1];
            }
            if nonce[i] == nonce[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Matcher {
            nonce: nonce.to_vec(),
            finder: memchr::memmem::FinderRev::new(nonce).into_owned(),
            fail,
            matched: 0,
        }
    }

    /// Takes a run of bytes: returns where the text after the last whole
    /// nonce in it starts (0 when there is none), and counts in `found` the
    /// nonces seen. The state afterwards is as if each byte had been taken
    /// by [`step`](Self::step), for runs of any length at far less cost.
    fn scan(&mut self, run: &[u8], found: &mut u64) -> usize {
        let n = self.nonce.len();
        let mut after = 0;
        // A partial match carried in from before the run: byte by byte.
        let mut k = 0;
        while self.matched > 0 && k < run.len() {
            if self.step(run[k]) {
                *found += 1;
                after = k + 1;
            }
            k += 1;
        }
        if k == run.len() {
            return after;
        }
        if let Some(p) = self.finder.rfind(&run[k..]) {
            *found += 1;
            after = k + p + n;
        }
        // The state at the end: only the last n - 1 bytes can begin a match.
        self.matched = 0;
        for &b in &run[k.max(run.len().saturating_sub(n - 1))..] {
            self.step(b);
        }
        after
    }

    /// Takes one byte; true when the whole nonce has just been seen.
    fn step(&mut self, b: u8) -> bool {
        while self.matched > 0 && self.nonce[self.matched] != b {
            self.matched = self.fail[self.matched - 1];
        }
        if self.nonce[self.matched] == b {
            self.matched += 1;
        }
        if self.matched == self.nonce.len() {
            self.matched = self.fail[self.matched - 1];
            return true;
        }
        false
    }
}

/// Incremental frame decoder.
pub(crate) struct FrameDecoder {
    esc: Esc,
    matcher: Matcher,
    /// Inside a frame (after its nonce): its bytes so far.
    collecting: bool,
    line: Vec<u8>,
    next_out: u64,
    next_err: u64,
    /// SHA-256 of the base64 text of each stream's frames, as the script
    /// hashes what it sends.
    sha_out: Sha256,
    sha_err: Sha256,
    /// Whether each stream's end frame (`Z`) has arrived and matched.
    ended: (bool, bool),
    /// Frames skipped because they did not parse.
    skipped: u64,
}

impl FrameDecoder {
    pub(crate) fn new(nonce: &str) -> Self {
        FrameDecoder {
            esc: Esc::Text,
            matcher: Matcher::new(nonce.as_bytes()),
            collecting: false,
            line: Vec::new(),
            next_out: 0,
            next_err: 0,
            sha_out: Sha256::new(),
            sha_err: Sha256::new(),
            ended: (false, false),
            skipped: 0,
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
        let mut i = 0;
        while i < data.len() {
            if self.collecting && matches!(self.esc, Esc::Text) && is_plain(data[i]) {
                // Fast path: a run of plain bytes inside a frame (its base64)
                // goes in at once; the matcher still sees every byte, so a
                // nonce inside the run (a frame cut by a redraw, then a new
                // one) still restarts the frame.
                let end = data[i..]
                    .iter()
                    .position(|&b| !is_plain(b))
                    .map_or(data.len(), |p| i + p);
                let start = i + self.matcher.scan(&data[i..end], &mut self.skipped);
                if start > i {
                    self.line.clear();
                }
                self.collect(&data[start..end]);
                i = end;
                continue;
            }
            let raw = data[i];
            i += 1;
            let Some(b) = self.esc.text(raw) else {
                continue;
            };
            if self.matcher.step(b) {
                // A nonce starts a frame, even inside another one: that one
                // was cut (by a redraw) and is skipped.
                if self.collecting {
                    self.skipped += 1;
                }
                self.collecting = true;
                self.line.clear();
                continue;
            }
            if !self.collecting {
                continue;
            }
            if b != b'.' {
                self.collect(&[b]);
                continue;
            }
            self.collecting = false;
            let line = std::mem::take(&mut self.line);
            let frame = self.parse(&line);
            self.line = line;
            self.line.clear();
            match frame {
                Ok(Some(f)) => return Ok((Some(f), i)),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((None, data.len()))
    }

    /// A frame's body (after the nonce, without the final `.`): the frame,
    /// `None` for one to skip (damaged or seen before), or an error when
    /// output is known to be lost.
    fn parse(&mut self, line: &[u8]) -> Result<Option<Frame>, FrameError> {
        let Some(rest) = line.strip_prefix(b":") else {
            self.skipped += 1;
            return Ok(None);
        };
        let frame = match rest {
            b"R" => Frame::Ready,
            b"S" => Frame::Started,
            [k @ (b'O' | b'E'), b':', body @ ..] => return self.output(*k, body),
            [b'Z', b':', k @ (b'O' | b'E'), b':', body @ ..] => return self.end(*k, body),
            [b'X', b':', body @ ..] => {
                let Some(status) = std::str::from_utf8(body)
                    .ok()
                    .and_then(|t| t.parse::<i32>().ok())
                else {
                    self.skipped += 1;
                    return Ok(None);
                };
                if !self.ended.0 {
                    return Err(FrameError::Incomplete("stdout"));
                }
                if !self.ended.1 {
                    return Err(FrameError::Incomplete("stderr"));
                }
                Frame::Exit(status)
            }
            [b'F', b':', body @ ..] => Frame::Fatal(
                String::from_utf8_lossy(body)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect(),
            ),
            _ => {
                self.skipped += 1;
                return Ok(None);
            }
        };
        Ok(Some(frame))
    }

    fn output(&mut self, kind: u8, body: &[u8]) -> Result<Option<Frame>, FrameError> {
        let mut fields = body.splitn(3, |&c| c == b':');
        let (Some(seq), Some(len), Some(text)) = (
            fields.next().and_then(parse_u64),
            fields.next().and_then(parse_u64),
            fields.next(),
        ) else {
            self.skipped += 1;
            return Ok(None);
        };
        if len != text.len() as u64 {
            self.skipped += 1;
            return Ok(None);
        }
        let Ok(bytes) = STANDARD.decode(text) else {
            self.skipped += 1;
            return Ok(None);
        };
        let (expected, stream, sha) = if kind == b'O' {
            (&mut self.next_out, "stdout", &mut self.sha_out)
        } else {
            (&mut self.next_err, "stderr", &mut self.sha_err)
        };
        if seq < *expected {
            // Seen before: a redraw of the screen shows it again.
            return Ok(None);
        }
        if seq > *expected {
            return Err(FrameError::OutOfSequence {
                stream,
                expected: *expected,
                got: seq,
            });
        }
        *expected += 1;
        sha.update(text);
        Ok(Some(if kind == b'O' {
            Frame::Stdout(bytes)
        } else {
            Frame::Stderr(bytes)
        }))
    }

    /// Adds frame text to the frame being collected; text longer than any
    /// frame is not one, and is dropped.
    fn collect(&mut self, text: &[u8]) {
        if self.line.len() + text.len() > MAX_FRAME_LINE {
            self.collecting = false;
            self.skipped += 1;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(text);
        }
    }

    /// A stream's end: `<n>:<sha256>` must be what arrived.
    fn end(&mut self, kind: u8, body: &[u8]) -> Result<Option<Frame>, FrameError> {
        let text = std::str::from_utf8(body).ok();
        let Some((n, sha)) = text.and_then(|t| t.split_once(':')) else {
            self.skipped += 1;
            return Ok(None);
        };
        let (Some(n), true) = (
            parse_u64(n.as_bytes()),
            sha.len() == 64 && sha.bytes().all(|c| c.is_ascii_hexdigit()),
        ) else {
            self.skipped += 1;
            return Ok(None);
        };
        let (count, digest, ended, stream) = if kind == b'O' {
            (self.next_out, &self.sha_out, &mut self.ended.0, "stdout")
        } else {
            (self.next_err, &self.sha_err, &mut self.ended.1, "stderr")
        };
        if *ended {
            // A redraw shows it again.
            return Ok(None);
        }
        if n != count || !sha.eq_ignore_ascii_case(&hex::encode(digest.clone().finalize())) {
            return Err(FrameError::Incomplete(stream));
        }
        *ended = true;
        Ok(None)
    }

    /// Frames of each stream accepted so far (stdout, stderr).
    pub(crate) fn accepted(&self) -> (u64, u64) {
        (self.next_out, self.next_err)
    }

    /// Frames skipped because they did not parse.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// A byte that is frame text as it stands: not a control character, not
/// the end of a frame.
fn is_plain(b: u8) -> bool {
    !(b < 0x20 || b == 0x7f || b == b'.')
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

    fn out(seq: u64, data: &[u8]) -> String {
        let b = STANDARD.encode(data);
        format!("\n{N}:O:{seq}:{}:{b}.\n", b.len())
    }

    /// The end frame of a stream whose frames carried `texts`.
    fn end(kind: char, texts: &[&str]) -> String {
        let mut h = Sha256::new();
        for t in texts {
            h.update(t.as_bytes());
        }
        format!(
            "\n{N}:Z:{kind}:{}:{}.\n",
            texts.len(),
            hex::encode(h.finalize())
        )
    }

    #[test]
    fn decodes_frames_among_noise_split_anywhere() {
        let stream = format!(
            "$ stty -echo ... {a} \"{b}\"\r\n\r\n{N}:R.\r\nnoise {N}:X:1\r\n{o}\r\n{N}:E:0:4:AP8=.\r\n{zo}{ze}\r\n{N}:X:7.\r\n",
            a = &N[..16],
            b = &N[16..],
            o = out(0, b"hi"),
            zo = end('O', &["aGk="]),
            ze = end('E', &["AP8="]),
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

    /// What tmux makes of frames: newlines as cursor movements, a wrapped
    /// frame with scrolling sequences in it, a status line drawn between
    /// frames, a redraw that shows frames again and cuts one.
    #[test]
    fn frames_survive_a_terminal_multiplexer() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let b = STANDARD.encode(&data);
        let (b1, b2) = b.split_at(1500);
        let stream = format!(
            "\x1b[?2004l\x1b[1;23r\x1b[1;1H{N}:R.\x1b[K\x1b[5;1H\
             {N}:O:0:{len}:{b1}\x1b[1;24r\x1b[23;1H\x1b[4S\x1b[19d{b2}.\
             \x1b7\x1b[24;1H\x1b[30m\x1b[42m[0] 0:bash* \"vm\" 10:17\x1b(B\x1b[m\x1b8\
             \x1b]0;title\x07\x1bP\x1b\\\
             \x1b[2J\x1b[H{N}:O:0:{len}:{b}.\r\n{N}:O:1:8:{cut}\x1b[2;1H{N}:O:1:4:YWJj.\x1b[3;1H{zo}{ze}{zo}{N}:X:0.",
            len = b.len(),
            cut = &b[..5],
            zo = end('O', &[&b, "YWJj"]),
            ze = end('E', &[]),
        );
        let bytes = stream.as_bytes();
        for split in [0, 10, 100, 1000, 1600, bytes.len() - 3] {
            let mut d = FrameDecoder::new(N);
            let frames = feed_all(&mut d, &[&bytes[..split], &bytes[split..]]).unwrap();
            assert_eq!(
                frames,
                vec![
                    Frame::Ready,
                    Frame::Stdout(data.clone()),
                    Frame::Stdout(b"abc".to_vec()),
                    Frame::Exit(0)
                ]
            );
            assert_eq!(d.skipped(), 1, "the cut frame");
        }
    }

    #[test]
    fn other_nonces_and_prefixes_are_ignored() {
        let mut d = FrameDecoder::new(N);
        let s = format!(
            "{}:X:0.\n{}:X:0.\n:X:0.\n{}\n",
            &N[..31],
            N.replace('0', "1"),
            &N[..20]
        );
        assert_eq!(feed_all(&mut d, &[s.as_bytes()]).unwrap(), vec![]);
    }

    #[test]
    fn a_nonce_that_overlaps_itself_is_still_found() {
        let n = "aab";
        let mut d = FrameDecoder::new(n);
        assert_eq!(
            feed_all(&mut d, &[b"aaab:R.", b"aa", b"aab:S."]).unwrap(),
            vec![Frame::Ready, Frame::Started]
        );
    }

    #[test]
    fn lost_output_is_an_error() {
        let mut d = FrameDecoder::new(N);
        let s = format!("{}{}", out(0, b"a"), out(2, b"a"));
        assert!(matches!(
            feed_all(&mut d, &[s.as_bytes()]),
            Err(FrameError::OutOfSequence {
                expected: 1,
                got: 2,
                ..
            })
        ));
        // The end says two frames were sent; one arrived.
        let mut d = FrameDecoder::new(N);
        let s = format!("{}{}", out(0, b"a"), end('O', &["YQ==", "YQ=="]));
        assert_eq!(
            feed_all(&mut d, &[s.as_bytes()]),
            Err(FrameError::Incomplete("stdout"))
        );
        // The right count, but not the bytes that were sent.
        let mut d = FrameDecoder::new(N);
        let s = format!("{}{}", out(0, b"a"), end('O', &["YQ=x"]));
        assert_eq!(
            feed_all(&mut d, &[s.as_bytes()]),
            Err(FrameError::Incomplete("stdout"))
        );
        // The run ended without the end of a stream.
        let mut d = FrameDecoder::new(N);
        let s = format!("{}{}{N}:X:0.", out(0, b"a"), end('O', &["YQ=="]));
        assert_eq!(
            feed_all(&mut d, &[s.as_bytes()]),
            Err(FrameError::Incomplete("stderr"))
        );
        let mut d = FrameDecoder::new(N);
        let s = format!(
            "{}{}{}{N}:X:3.",
            out(0, b"a"),
            end('O', &["YQ=="]),
            end('E', &[])
        );
        assert_eq!(
            feed_all(&mut d, &[s.as_bytes()]).unwrap(),
            vec![Frame::Stdout(b"a".to_vec()), Frame::Exit(3)]
        );
    }

    #[test]
    fn damaged_frames_are_skipped_not_taken() {
        for tail in [
            ":",
            ":O",
            ":O:",
            ":O:x:1:",
            ":O:0:4:@@@@",
            ":O:0:5:YQ==",
            ":X:",
            ":X:abc",
            ":Q:1",
            "zz",
            ":O:99999999999999999999:",
            ":X:0:1",
        ] {
            let mut d = FrameDecoder::new(N);
            let s = format!("{N}{tail}.");
            assert_eq!(feed_all(&mut d, &[s.as_bytes()]), Ok(vec![]), "{tail}");
            assert_eq!(d.skipped(), 1, "{tail}");
        }
    }

    #[test]
    fn long_noise_uses_no_memory_and_long_frames_are_skipped() {
        let mut d = FrameDecoder::new(N);
        let noise = vec![b'x'; 10 * MAX_FRAME_LINE];
        assert_eq!(feed_all(&mut d, &[&noise, b"\n"]).unwrap(), vec![]);
        assert!(d.line.capacity() == 0);
        let mut big = format!("{N}:O:0:").into_bytes();
        big.resize(MAX_FRAME_LINE + 100, b'A');
        big.extend_from_slice(format!(".{N}:R.").as_bytes());
        assert_eq!(feed_all(&mut d, &[&big]), Ok(vec![Frame::Ready]));
        assert_eq!(d.skipped(), 1);
    }

    proptest::proptest! {
        /// `scan` over a run ends where stepping byte by byte ends, and
        /// finds the same last nonce.
        #[test]
        fn scanning_a_run_is_stepping_each_byte(
            before in proptest::collection::vec(0usize..4, 0..6),
            run in proptest::collection::vec(0usize..4, 0..40),
        ) {
            // Pieces that make partial and whole nonces likely: "aab" overlaps itself.
            let pieces: [&[u8]; 4] = [b"a", b"aab", b"b", b"x"];
            let bytes = |v: &[usize]| v.iter().flat_map(|&p| pieces[p].iter().copied()).collect::<Vec<u8>>();
            let (before, run) = (bytes(&before), bytes(&run));
            let mut fast = Matcher::new(b"aab");
            let mut slow = Matcher::new(b"aab");
            for &b in &before {
                fast.step(b);
                slow.step(b);
            }
            let mut found = 0;
            let after = fast.scan(&run, &mut found);
            let mut slow_after = 0;
            let mut slow_found = 0;
            for (i, &b) in run.iter().enumerate() {
                if slow.step(b) {
                    slow_found += 1;
                    slow_after = i + 1;
                }
            }
            proptest::prop_assert_eq!(after, slow_after);
            proptest::prop_assert_eq!(found > 0, slow_found > 0);
            proptest::prop_assert_eq!(fast.matched, slow.matched);
        }

        #[test]
        fn never_panics(data: Vec<u8>, cut in 0usize..64) {
            let mut d = FrameDecoder::new(N);
            let mut prefix = N.as_bytes().to_vec();
            prefix.truncate(cut.min(prefix.len()));
            prefix.extend_from_slice(&data);
            let mut v = Vec::new();
            let _ = d.feed(&prefix, &mut v);
        }

        #[test]
        fn escape_sequences_anywhere_change_nothing(data: Vec<u8>, at in proptest::collection::vec(0usize..4096, 0..8)) {
            let frame = out(0, &data).into_bytes();
            let mut noisy = frame.clone();
            // Positions in the frame, from the end, so that no sequence
            // lands inside another.
            let mut at: Vec<usize> = at.iter().map(|p| p % (frame.len() + 1)).collect();
            at.sort_unstable();
            for (i, &p) in at.iter().enumerate().rev() {
                let seq: &[u8] = [&b"\x1b[12;1H"[..], b"\r\n", b"\x1b[K", b"\x1b(B"][i % 4];
                noisy.splice(p..p, seq.iter().copied());
            }
            let mut d = FrameDecoder::new(N);
            let frames = feed_all(&mut d, &[&noisy]).unwrap();
            proptest::prop_assert_eq!(frames, vec![Frame::Stdout(data)]);
        }
    }
}
