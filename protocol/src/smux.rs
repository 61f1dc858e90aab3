//! smux version 1 framing, as multiplexed port forwarding uses it inside a
//! `Port` session (`AWS-StartPortForwardingSession`): the client is the smux
//! client, the agent the smux server, and the smux byte stream is the
//! concatenation of the session's `output_stream_data` payloads in sequence
//! order (message boundaries mean nothing).
//!
//! A frame is an 8-byte header, `ver (1) | cmd (1) | length (2, little-endian)
//! | stream id (4, little-endian)`, then `length` data bytes. Unlike the data
//! channel's own framing, smux is little-endian. Version 1 has no flow-control
//! frames (`UPD` is version 2 only).
//!
//! ```
//! use ssm_channel::smux::{Decoder, Frame};
//!
//! let mut wire = Vec::new();
//! Frame::syn(3).encode(&mut wire);
//! Frame::psh(3, &b"hello"[..]).encode(&mut wire);
//!
//! let mut d = Decoder::default();
//! d.feed(&wire[..5]); // any split works
//! assert_eq!(d.next_frame().unwrap(), None);
//! d.feed(&wire[5..]);
//! assert_eq!(d.next_frame().unwrap(), Some(Frame::syn(3)));
//! assert_eq!(d.next_frame().unwrap(), Some(Frame::psh(3, &b"hello"[..])));
//! assert_eq!(d.next_frame().unwrap(), None);
//! ```

use bytes::{Buf, Bytes, BytesMut};

/// The smux protocol version the agent and the plugin speak.
pub const VERSION: u8 = 1;
/// Length of a frame header.
pub const HEADER_LENGTH: usize = 8;
/// Largest data length a frame can carry (the length field is 16 bits).
pub const MAX_DATA: usize = u16::MAX as usize;
/// Data size the reference library uses at most per frame (`MaxFrameSize`).
pub const DEFAULT_MAX_FRAME_DATA: usize = 32 * 1024;
/// The first stream id a client opens (its counter starts at 1 and adds 2
/// before each open, so client ids are odd from 3).
pub const FIRST_CLIENT_STREAM_ID: u32 = 3;

/// Frame commands of version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// 0: open a stream.
    Syn,
    /// 1: the sender will send no more data on the stream.
    Fin,
    /// 2: data.
    Psh,
    /// 3: keep-alive, no stream.
    Nop,
}

impl Command {
    /// The command byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Command::Syn => 0,
            Command::Fin => 1,
            Command::Psh => 2,
            Command::Nop => 3,
        }
    }

    /// The command for a byte, if version 1 has it.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Command::Syn),
            1 => Some(Command::Fin),
            2 => Some(Command::Psh),
            3 => Some(Command::Nop),
            _ => None,
        }
    }
}

/// One smux frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame does.
    pub command: Command,
    /// The stream it belongs to (0 for `Nop`).
    pub stream_id: u32,
    /// Data (`Psh` only; at most [`MAX_DATA`] bytes).
    pub data: Bytes,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The data is whatever the forwarded connection carries: its length only.
        f.debug_struct("Frame")
            .field("command", &self.command)
            .field("stream_id", &self.stream_id)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Frame {
    /// Opens stream `id`.
    pub fn syn(id: u32) -> Self {
        Self::control(Command::Syn, id)
    }

    /// Closes the sending side of stream `id`.
    pub fn fin(id: u32) -> Self {
        Self::control(Command::Fin, id)
    }

    /// Data for stream `id`. Longer data must be split by the caller (see
    /// [`encode_data`]).
    pub fn psh(id: u32, data: impl Into<Bytes>) -> Self {
        Frame {
            command: Command::Psh,
            stream_id: id,
            data: data.into(),
        }
    }

    fn control(command: Command, stream_id: u32) -> Self {
        Frame {
            command,
            stream_id,
            data: Bytes::new(),
        }
    }

    /// Appends the encoded frame to `out`.
    ///
    /// # Panics
    ///
    /// If the data is longer than [`MAX_DATA`] (a caller bug; [`encode_data`]
    /// splits data for you).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame(self.command, self.stream_id, &self.data, out);
    }

    /// The encoded frame in a buffer of its own (panics like [`encode`](Self::encode)).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LENGTH + self.data.len());
        self.encode(&mut out);
        out
    }
}

/// Header and data of one frame; `data` is at most [`MAX_DATA`] bytes.
fn encode_frame(command: Command, id: u32, data: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(data.len()).expect("smux frame data over 65535 bytes");
    out.reserve(HEADER_LENGTH + data.len());
    out.push(VERSION);
    out.push(command.to_byte());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(data);
}

/// Appends `data` for stream `id` as `Psh` frames of at most `max_frame_data`
/// bytes each (clamped to 1..=[`MAX_DATA`]), copying it once.
pub fn encode_data(id: u32, data: &[u8], max_frame_data: usize, out: &mut Vec<u8>) {
    let max = max_frame_data.clamp(1, MAX_DATA);
    for chunk in data.chunks(max) {
        encode_frame(Command::Psh, id, chunk, out);
    }
}

/// A byte stream that is not smux version 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmuxError {
    /// A header with another protocol version.
    #[error("smux frame of version {0}, expected 1")]
    Version(u8),
    /// A command byte version 1 does not have.
    #[error("unknown smux command {0}")]
    Command(u8),
}

/// Splits a byte stream, fed in pieces of any size, into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// Adds received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` until one is complete. After an error
    /// the stream cannot be resynchronised: stop using it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SmuxError> {
        if self.buf.len() < HEADER_LENGTH {
            return Ok(None);
        }
        let h = &self.buf[..HEADER_LENGTH];
        if h[0] != VERSION {
            return Err(SmuxError::Version(h[0]));
        }
        let command = Command::from_byte(h[1]).ok_or(SmuxError::Command(h[1]))?;
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        let stream_id = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if self.buf.len() < HEADER_LENGTH + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LENGTH);
        let data = self.buf.split_to(len).freeze();
        Ok(Some(Frame {
            command,
            stream_id,
            data,
        }))
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_is_little_endian() {
        let mut out = Vec::new();
        Frame::psh(0x0403_0201, &b"xy"[..]).encode(&mut out);
        assert_eq!(out, [1, 2, 2, 0, 1, 2, 3, 4, b'x', b'y']);
        out.clear();
        Frame::syn(3).encode(&mut out);
        assert_eq!(out, [1, 0, 0, 0, 3, 0, 0, 0]);
        out.clear();
        Frame::fin(5).encode(&mut out);
        assert_eq!(out, [1, 1, 0, 0, 5, 0, 0, 0]);
        assert_eq!(Frame::fin(5).to_vec(), out);
        assert_eq!(
            Frame::psh(0x0403_0201, &b"xy"[..]).to_vec(),
            [1, 2, 2, 0, 1, 2, 3, 4, b'x', b'y']
        );
    }

    #[test]
    fn bad_version_and_command_are_errors() {
        let mut d = Decoder::default();
        d.feed(&[2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(SmuxError::Version(2)));
        let mut d = Decoder::default();
        d.feed(&[1, 4, 0, 0, 3, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(SmuxError::Command(4)));
    }

    #[test]
    fn long_data_is_split() {
        let data = vec![7u8; 70_000];
        let mut out = Vec::new();
        encode_data(3, &data, DEFAULT_MAX_FRAME_DATA, &mut out);
        let mut d = Decoder::default();
        d.feed(&out);
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(f) = d.next_frame().unwrap() {
            assert!(f.data.len() <= DEFAULT_MAX_FRAME_DATA);
            got.extend_from_slice(&f.data);
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(got, data);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn debug_shows_no_data() {
        let f = Frame::psh(3, &b"secret-bytes"[..]);
        assert!(!format!("{f:?}").contains("secret"));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames(
            frames in proptest::collection::vec((0u8..4, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
            cuts in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let frames: Vec<Frame> = frames
                .into_iter()
                .map(|(c, id, data)| Frame {
                    command: Command::from_byte(c).unwrap(),
                    stream_id: id,
                    data: data.into(),
                })
                .collect();
            let mut wire = Vec::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                d.feed(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(d.buffered(), 0);
        }
    }
}
