//! The binary message format ("ClientMessage" / "AgentMessage").
//!
//! Layout (all integers big-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | header length (116; the offset of the payload-length field) |
//! | 4 | 32 | message type, ASCII, space padded |
//! | 36 | 4 | schema version |
//! | 40 | 8 | created date, epoch milliseconds |
//! | 48 | 8 | sequence number (signed) |
//! | 56 | 8 | flags |
//! | 64 | 16 | message id, the two 8-byte halves of the UUID swapped |
//! | 80 | 32 | SHA-256 of the payload |
//! | 112 | 4 | payload type (absent when the header length is 112) |
//! | HL | 4 | payload length |
//! | HL+4 | n | payload |

use std::fmt;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The header length every sender writes: the offset of the payload-length field.
pub const HEADER_LENGTH: u32 = 116;
/// The short header length some `channel_closed` frames carry (no payload-type field).
pub const SHORT_HEADER_LENGTH: u32 = 112;
/// Bytes before the payload in a frame with the standard header (116 + 4).
pub const FRAME_OVERHEAD: usize = 120;
/// Width of the message-type field.
pub const MESSAGE_TYPE_LEN: usize = 32;

const OFF_TYPE: usize = 4;
const OFF_SCHEMA: usize = 36;
const OFF_CREATED: usize = 40;
const OFF_SEQ: usize = 48;
const OFF_FLAGS: usize = 56;
const OFF_ID: usize = 64;
const OFF_DIGEST: usize = 80;
const OFF_PAYLOAD_TYPE: usize = 112;

/// Flags value of an acknowledgement (SYN|FIN, as both reference peers send it).
pub const ACK_FLAGS: u64 = 3;
/// Flags value the agent puts on its first output message (sequence 0).
pub const SYN_FLAG: u64 = 1;

/// The 32-byte message type name. Unknown names are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `input_stream_data`: client to agent, sequenced.
    InputStreamData,
    /// `output_stream_data`: agent to client, sequenced.
    OutputStreamData,
    /// `acknowledge`: acknowledgement of one stream message.
    Acknowledge,
    /// `channel_closed`: the service ends the channel.
    ChannelClosed,
    /// `start_publication`: the peer is attached again; sending may resume.
    StartPublication,
    /// `pause_publication`: the peer is detached; hold stream data.
    PausePublication,
    /// Any other name (at most 32 bytes are sent).
    Unknown(String),
}

/// Whether a raw frame is an `acknowledge` message, read from its message-type
/// field alone (bytes 4..36) without decoding or checking the rest: for
/// routing and counting frames cheaply. A short frame is not one.
pub fn is_acknowledge_frame(frame: &[u8]) -> bool {
    frame.get(4..4 + MESSAGE_TYPE_LEN).is_some_and(|t| {
        t.starts_with(b"acknowledge") && t[11..].iter().all(|&b| b == b' ' || b == 0)
    })
}

impl MessageType {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            MessageType::InputStreamData => "input_stream_data",
            MessageType::OutputStreamData => "output_stream_data",
            MessageType::Acknowledge => "acknowledge",
            MessageType::ChannelClosed => "channel_closed",
            MessageType::StartPublication => "start_publication",
            MessageType::PausePublication => "pause_publication",
            MessageType::Unknown(s) => s,
        }
    }

    /// Maps a (trimmed) wire name to a type.
    pub fn from_name(name: &str) -> MessageType {
        match name {
            "input_stream_data" => MessageType::InputStreamData,
            "output_stream_data" => MessageType::OutputStreamData,
            "acknowledge" => MessageType::Acknowledge,
            "channel_closed" => MessageType::ChannelClosed,
            "start_publication" => MessageType::StartPublication,
            "pause_publication" => MessageType::PausePublication,
            other => MessageType::Unknown(other.to_owned()),
        }
    }

    /// True for the two sequenced stream types.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            MessageType::InputStreamData | MessageType::OutputStreamData
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload type (u32 at offset 112).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// 0: no typed payload (acks, `channel_closed`).
    None,
    /// 1: raw bytes (keystrokes, terminal output, port data).
    Output,
    /// 2: defined, unused.
    Error,
    /// 3: terminal size JSON.
    Size,
    /// 4: defined, unused.
    Parameter,
    /// 5: handshake request (agent to client).
    HandshakeRequest,
    /// 6: handshake response (client to agent).
    HandshakeResponse,
    /// 7: handshake complete (agent to client).
    HandshakeComplete,
    /// 8: encryption challenge request (agent to client).
    EncChallengeRequest,
    /// 9: encryption challenge response (client to agent).
    EncChallengeResponse,
    /// 10: a u32 flag.
    Flag,
    /// 11: stderr bytes.
    StdErr,
    /// 12: `EXIT_CODE: n`.
    ExitCode,
    /// Any other value.
    Unknown(u32),
}

impl PayloadType {
    /// Maps the wire value to a type.
    pub fn from_u32(v: u32) -> PayloadType {
        match v {
            0 => PayloadType::None,
            1 => PayloadType::Output,
            2 => PayloadType::Error,
            3 => PayloadType::Size,
            4 => PayloadType::Parameter,
            5 => PayloadType::HandshakeRequest,
            6 => PayloadType::HandshakeResponse,
            7 => PayloadType::HandshakeComplete,
            8 => PayloadType::EncChallengeRequest,
            9 => PayloadType::EncChallengeResponse,
            10 => PayloadType::Flag,
            11 => PayloadType::StdErr,
            12 => PayloadType::ExitCode,
            other => PayloadType::Unknown(other),
        }
    }

    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            PayloadType::None => 0,
            PayloadType::Output => 1,
            PayloadType::Error => 2,
            PayloadType::Size => 3,
            PayloadType::Parameter => 4,
            PayloadType::HandshakeRequest => 5,
            PayloadType::HandshakeResponse => 6,
            PayloadType::HandshakeComplete => 7,
            PayloadType::EncChallengeRequest => 8,
            PayloadType::EncChallengeResponse => 9,
            PayloadType::Flag => 10,
            PayloadType::StdErr => 11,
            PayloadType::ExitCode => 12,
            PayloadType::Unknown(v) => v,
        }
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadType::Unknown(v) => write!(f, "payload type {v}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is shorter than the fixed header.
    #[error("frame of {len} bytes is shorter than the {needed}-byte header")]
    TooShort {
        /// Frame length.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The header length is outside what the format allows.
    #[error("header length {header_length} is invalid (expected 112 or at least 116)")]
    BadHeaderLength {
        /// The value read at offset 0.
        header_length: u32,
    },
    /// The message type field is empty after trimming.
    #[error("message type is empty")]
    EmptyMessageType,
    /// The message type field is not UTF-8.
    #[error("message type is not valid UTF-8")]
    MessageTypeNotUtf8,
    /// The created date is zero.
    #[error("created date is 0")]
    ZeroCreatedDate,
    /// The payload-length field disagrees with the bytes present.
    #[error("payload length field says {declared} bytes but {actual} follow the header")]
    PayloadLengthMismatch {
        /// The payload-length field.
        declared: u32,
        /// Bytes after the header.
        actual: usize,
    },
    /// SHA-256 of the payload differs from the digest field.
    #[error("payload digest mismatch")]
    DigestMismatch,
}

/// One decoded (or to-be-encoded) message.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Message type name.
    pub message_type: MessageType,
    /// Header length; 116 normally, 112 for short `channel_closed` frames. Kept so that
    /// re-encoding reproduces a received frame. Values 113–115 encode as 116; values
    /// above 116 are written with zero bytes between offset 116 and the payload length.
    pub header_length: u32,
    /// Schema version, 1.
    pub schema_version: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_date: u64,
    /// Sequence number (stream messages) or 0.
    pub sequence_number: i64,
    /// Flags (0 data, 1 agent's first output, 3 acks).
    pub flags: u64,
    /// Message id in canonical byte order (the wire swaps the halves).
    pub message_id: Uuid,
    /// Payload type.
    pub payload_type: PayloadType,
    /// Payload bytes as on the wire (ciphertext when encrypted).
    pub payload: Bytes,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("message_type", &self.message_type)
            .field("header_length", &self.header_length)
            .field("schema_version", &self.schema_version)
            .field("created_date", &self.created_date)
            .field("sequence_number", &self.sequence_number)
            .field("flags", &self.flags)
            .field("message_id", &self.message_id)
            .field("payload_type", &self.payload_type)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

fn be_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// Converts a canonical UUID to its 16 wire bytes (halves swapped).
pub fn uuid_to_wire(id: &Uuid) -> [u8; 16] {
    let c = id.as_bytes();
    let mut w = [0u8; 16];
    w[..8].copy_from_slice(&c[8..]);
    w[8..].copy_from_slice(&c[..8]);
    w
}

/// Converts 16 wire bytes (halves swapped) to a canonical UUID.
pub fn uuid_from_wire(w: &[u8; 16]) -> Uuid {
    let mut c = [0u8; 16];
    c[..8].copy_from_slice(&w[8..]);
    c[8..].copy_from_slice(&w[..8]);
    Uuid::from_bytes(c)
}

/// Fields of a parsed header, payload located but not yet copied.
struct Parsed {
    message_type: MessageType,
    header_length: u32,
    schema_version: u32,
    created_date: u64,
    sequence_number: i64,
    flags: u64,
    message_id: Uuid,
    payload_type: PayloadType,
    payload_start: usize,
}

fn parse(frame: &[u8]) -> Result<Parsed, DecodeError> {
    // Everything up to and including the digest is fixed.
    let min = SHORT_HEADER_LENGTH as usize + 4;
    if frame.len() < min {
        return Err(DecodeError::TooShort {
            len: frame.len(),
            needed: min,
        });
    }
    let header_length = be_u32(frame, 0);
    if header_length != SHORT_HEADER_LENGTH && header_length < HEADER_LENGTH {
        return Err(DecodeError::BadHeaderLength { header_length });
    }
    let hl = header_length as usize;
    let payload_start = hl
        .checked_add(4)
        .ok_or(DecodeError::BadHeaderLength { header_length })?;
    if frame.len() < payload_start {
        return Err(DecodeError::TooShort {
            len: frame.len(),
            needed: payload_start,
        });
    }

    let type_field = &frame[OFF_TYPE..OFF_TYPE + MESSAGE_TYPE_LEN];
    let message_type = parse_type_name(type_field)?;

    let created_date = be_u64(frame, OFF_CREATED);
    let payload_type = if header_length >= HEADER_LENGTH {
        PayloadType::from_u32(be_u32(frame, OFF_PAYLOAD_TYPE))
    } else {
        PayloadType::None
    };
    let declared = be_u32(frame, hl);
    let payload = &frame[payload_start..];

    // start/pause_publication skip validation entirely, as the reference client does.
    let lenient = matches!(
        message_type,
        MessageType::StartPublication | MessageType::PausePublication
    );
    if !lenient {
        if created_date == 0 {
            return Err(DecodeError::ZeroCreatedDate);
        }
        if declared as usize != payload.len() {
            return Err(DecodeError::PayloadLengthMismatch {
                declared,
                actual: payload.len(),
            });
        }
        if declared != 0 {
            let digest = Sha256::digest(payload);
            if digest.as_slice() != &frame[OFF_DIGEST..OFF_DIGEST + 32] {
                return Err(DecodeError::DigestMismatch);
            }
        }
    }

    let mut wire_id = [0u8; 16];
    wire_id.copy_from_slice(&frame[OFF_ID..OFF_ID + 16]);
    Ok(Parsed {
        message_type,
        header_length,
        schema_version: be_u32(frame, OFF_SCHEMA),
        created_date,
        sequence_number: be_u64(frame, OFF_SEQ) as i64,
        flags: be_u64(frame, OFF_FLAGS),
        message_id: uuid_from_wire(&wire_id),
        payload_type,
        payload_start,
    })
}

fn parse_type_name(field: &[u8]) -> Result<MessageType, DecodeError> {
    // Remove NULs anywhere, then surrounding whitespace.
    let mut buf = [0u8; MESSAGE_TYPE_LEN];
    let mut n = 0;
    for &b in field.iter().filter(|&&b| b != 0) {
        buf[n] = b;
        n += 1;
    }
    let s = std::str::from_utf8(&buf[..n]).map_err(|_| DecodeError::MessageTypeNotUtf8)?;
    // Names are ASCII padded with spaces: trim those bytewise, and look for
    // Unicode white space only when something other than a visible ASCII
    // character is left at an edge.
    let t = s.trim_ascii();
    let s = match (t.as_bytes().first(), t.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => t,
        _ => s.trim(),
    };
    if s.is_empty() {
        return Err(DecodeError::EmptyMessageType);
    }
    Ok(MessageType::from_name(s))
}

impl Message {
    /// Decodes one frame, copying the payload.
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        let p = parse(frame)?;
        let payload = Bytes::copy_from_slice(&frame[p.payload_start..]);
        Ok(p.into_message(payload))
    }

    /// Decodes one frame without copying: the payload is a slice of `frame`.
    pub fn decode_bytes(frame: Bytes) -> Result<Message, DecodeError> {
        let p = parse(&frame)?;
        let payload = frame.slice(p.payload_start..);
        Ok(p.into_message(payload))
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        self.effective_header_length() as usize + 4 + self.payload.len()
    }

    fn effective_header_length(&self) -> u32 {
        if self.header_length == SHORT_HEADER_LENGTH || self.header_length >= HEADER_LENGTH {
            self.header_length
        } else {
            HEADER_LENGTH
        }
    }

    /// Encodes into a new buffer (computes the digest).
    pub fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        Bytes::from(v)
    }

    /// Appends the encoded frame to `out` (computes the digest).
    ///
    /// Message-type names longer than 32 bytes are truncated to 32 bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let hl = self.effective_header_length();
        out.reserve(self.encoded_len());
        out.extend_from_slice(&hl.to_be_bytes());
        let name = self.message_type.as_str().as_bytes();
        let name = &name[..name.len().min(MESSAGE_TYPE_LEN)];
        out.extend_from_slice(name);
        out.extend(std::iter::repeat_n(b' ', MESSAGE_TYPE_LEN - name.len()));
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&uuid_to_wire(&self.message_id));
        let digest = Sha256::digest(&self.payload);
        out.extend_from_slice(digest.as_slice());
        if hl >= HEADER_LENGTH {
            out.extend_from_slice(&self.payload_type.to_u32().to_be_bytes());
            out.extend(std::iter::repeat_n(0u8, (hl - HEADER_LENGTH) as usize));
        }
        // Payloads are bounded by what the transport carries; a length beyond u32 cannot
        // be represented and is saturated (such a frame would not decode).
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

impl Parsed {
    fn into_message(self, payload: Bytes) -> Message {
        Message {
            message_type: self.message_type,
            header_length: self.header_length,
            schema_version: self.schema_version,
            created_date: self.created_date,
            sequence_number: self.sequence_number,
            flags: self.flags,
            message_id: self.message_id,
            payload_type: self.payload_type,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    const LS_FRAME: &str = "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000019000c79c7b00000000000000030000000000000000a508b5f073f31b16dd01e56bff48483e1d887ce0f8672e4914d9000e801cd74ecd805dd9366c0bc42dc16adc0197dc2f00000001000000036c730d";

    #[test]
    fn acknowledge_frames_are_told_by_their_type_field() {
        let input = hex::decode(LS_FRAME).unwrap();
        assert!(!is_acknowledge_frame(&input));
        let mut ack = input.clone();
        ack[4..36].copy_from_slice(b"acknowledge                     ");
        assert!(is_acknowledge_frame(&ack));
        // A longer name that starts the same way is something else.
        ack[4..36].copy_from_slice(b"acknowledge_more                ");
        assert!(!is_acknowledge_frame(&ack));
        assert!(!is_acknowledge_frame(&input[..20]));
    }

    #[test]
    fn worked_example_1_keystrokes() {
        let m = Message {
            message_type: MessageType::InputStreamData,
            header_length: 116,
            schema_version: 1,
            created_date: 1_718_000_000_123,
            sequence_number: 3,
            flags: 0,
            message_id: uuid("dd01e56b-ff48-483e-a508-b5f073f31b16"),
            payload_type: PayloadType::Output,
            payload: Bytes::from_static(b"ls\r"),
        };
        let enc = m.encode();
        assert_eq!(enc.len(), 123);
        assert_eq!(hex::encode(&enc), LS_FRAME);
        let d = Message::decode(&enc).unwrap();
        assert_eq!(d, m);
        let d2 = Message::decode_bytes(enc.clone()).unwrap();
        assert_eq!(d2, m);
    }

    #[test]
    fn worked_example_2_acknowledge_frame() {
        let want = "0000007461636b6e6f776c65646765202020202020202020202020202020202020202020000000010000019000c79dc8000000000000000000000000000000038271605f4e3d2c1b0f8e7d6c5b4a493823c430d25c3c3be5662a848bb4c019a1f5027264082ae9efca81ec0db20806f000000000000000b07b2241636b6e6f776c65646765644d65737361676554797065223a226f75747075745f73747265616d5f64617461222c2241636b6e6f776c65646765644d6573736167654964223a2235623164326533662d346135622d346336642d386537662d383039316132623363346435222c2241636b6e6f776c65646765644d65737361676553657175656e63654e756d626572223a352c22497353657175656e7469616c4d657373616765223a747275657d";
        let ack = crate::payload::Acknowledge {
            acknowledged_message_type: "output_stream_data".into(),
            acknowledged_message_id: "5b1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5".into(),
            acknowledged_message_sequence_number: 5,
            is_sequential_message: true,
        };
        let m = Message {
            message_type: MessageType::Acknowledge,
            header_length: 116,
            schema_version: 1,
            created_date: 1_718_000_000_456,
            sequence_number: 0,
            flags: ACK_FLAGS,
            message_id: uuid("0f8e7d6c-5b4a-4938-8271-605f4e3d2c1b"),
            payload_type: PayloadType::None,
            payload: Bytes::from(crate::payload::to_json(&ack)),
        };
        let e = m.encode();
        assert_eq!(e.len(), 296);
        assert_eq!(hex::encode(&e), want);
    }

    #[test]
    fn uuid_swap_example() {
        let id = uuid("dd01e56b-ff48-483e-a508-b5f073f31b16");
        assert_eq!(
            hex::encode(uuid_to_wire(&id)),
            "a508b5f073f31b16dd01e56bff48483e"
        );
        assert_eq!(uuid_from_wire(&uuid_to_wire(&id)), id);
    }

    #[test]
    fn worked_example_2_size_frame() {
        let want = "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000019000c79cc8000000000000000000000000000000008caf4136c566a9623b241101e2bb4255edf7359c89077b608a6b3e8b19e63bbfc7aa724989a05ea371a9966a6e9db7cc00000003000000167b22636f6c73223a3132302c22726f7773223a34307d";
        let payload = serde_json::to_vec(&crate::payload::Size {
            cols: 120,
            rows: 40,
        })
        .unwrap();
        let m = Message {
            message_type: MessageType::InputStreamData,
            header_length: 116,
            schema_version: 1,
            created_date: 1_718_000_000_200,
            sequence_number: 0,
            flags: 0,
            message_id: uuid("3b241101-e2bb-4255-8caf-4136c566a962"),
            payload_type: PayloadType::Size,
            payload: Bytes::from(payload),
        };
        assert_eq!(hex::encode(m.encode()), want);
    }

    #[test]
    fn big_endian_vectors_2_6() {
        // The reference's integer vectors, through the header fields that carry them.
        let cases64: [(u64, &str); 3] = [
            (5_747_283, "000000000057b253"),
            (92_837_273, "0000000005889599"),
            (4_294_967_296, "0000000100000000"),
        ];
        for (v, hexs) in cases64 {
            let m = Message {
                message_type: MessageType::Acknowledge,
                header_length: 116,
                schema_version: 1,
                created_date: v,
                sequence_number: v as i64,
                flags: v,
                message_id: Uuid::nil(),
                payload_type: PayloadType::None,
                payload: Bytes::new(),
            };
            let e = m.encode();
            assert_eq!(hex::encode(&e[40..48]), hexs);
            assert_eq!(hex::encode(&e[48..56]), hexs);
            assert_eq!(hex::encode(&e[56..64]), hexs);
        }
        let cases32: [(u32, &str); 3] =
            [(324, "00000144"), (520_392, "0007f0c8"), (256, "00000100")];
        for (v, hexs) in cases32 {
            let m = Message {
                message_type: MessageType::Acknowledge,
                header_length: 116,
                schema_version: v,
                created_date: 1,
                sequence_number: 0,
                flags: 0,
                message_id: Uuid::nil(),
                payload_type: PayloadType::from_u32(v),
                payload: Bytes::new(),
            };
            let e = m.encode();
            assert_eq!(hex::encode(&e[36..40]), hexs);
            assert_eq!(hex::encode(&e[112..116]), hexs);
        }
    }

    #[test]
    fn empty_payload_digest_is_sha256_of_nothing() {
        let m = Message {
            message_type: MessageType::Acknowledge,
            header_length: 116,
            schema_version: 1,
            created_date: 1,
            sequence_number: 0,
            flags: 3,
            message_id: Uuid::nil(),
            payload_type: PayloadType::None,
            payload: Bytes::new(),
        };
        let e = m.encode();
        assert_eq!(
            hex::encode(&e[80..112]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn ls() -> Vec<u8> {
        hex::decode(LS_FRAME).unwrap()
    }

    #[test]
    fn errors_are_specific() {
        assert!(matches!(
            Message::decode(&[0u8; 10]),
            Err(DecodeError::TooShort { len: 10, .. })
        ));
        let mut f = ls();
        f[3] = 0x50;
        assert_eq!(
            Message::decode(&f),
            Err(DecodeError::BadHeaderLength {
                header_length: 0x50
            })
        );
        let mut f = ls();
        f[3] = 0xff; // HL 255 > frame
        assert!(matches!(
            Message::decode(&f),
            Err(DecodeError::TooShort { .. })
        ));
        let mut f = ls();
        *f.last_mut().unwrap() = b'x';
        assert_eq!(Message::decode(&f), Err(DecodeError::DigestMismatch));
        let mut f = ls();
        f.push(b'!');
        assert_eq!(
            Message::decode(&f),
            Err(DecodeError::PayloadLengthMismatch {
                declared: 3,
                actual: 4
            })
        );
        let mut f = ls();
        f[4..36].fill(b' ');
        assert_eq!(Message::decode(&f), Err(DecodeError::EmptyMessageType));
        let mut f = ls();
        f[4] = 0xff;
        assert_eq!(Message::decode(&f), Err(DecodeError::MessageTypeNotUtf8));
        let mut f = ls();
        f[40..48].fill(0);
        assert_eq!(Message::decode(&f), Err(DecodeError::ZeroCreatedDate));
    }

    #[test]
    fn type_names_are_trimmed_like_str_trim() {
        // The bytewise fast path must give what removing NULs and `str::trim`
        // give, for ASCII padding and for white space only Unicode knows.
        let names = [
            "output_stream_data",
            "  output_stream_data  ",
            "\0\0acknowledge\0 \t",
            "\x0bchannel_closed\x0b",
            "\x0c\r\nstart_publication",
            "\u{a0}pause_publication\u{3000}",
            "\u{85}x",
            "mi\0xed name ",
            "\u{e9}t\u{e9}",
            "a",
            " \x0b ",
            "\u{a0}",
        ];
        for name in names {
            let mut field = [b' '; MESSAGE_TYPE_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            let stripped: String = name.chars().filter(|&c| c != '\0').collect();
            let want = match stripped.trim() {
                "" => Err(DecodeError::EmptyMessageType),
                t => Ok(MessageType::from_name(t)),
            };
            assert_eq!(parse_type_name(&field), want, "{name:?}");
        }
    }

    #[test]
    fn publication_messages_skip_validation() {
        let m = Message {
            message_type: MessageType::PausePublication,
            header_length: 116,
            schema_version: 1,
            created_date: 0,
            sequence_number: 0,
            flags: 0,
            message_id: Uuid::nil(),
            payload_type: PayloadType::None,
            payload: Bytes::from_static(b"x"),
        };
        let mut f = m.encode().to_vec();
        f[80] ^= 1; // break the digest
        let d = Message::decode(&f).unwrap();
        assert_eq!(d.message_type, MessageType::PausePublication);
        assert_eq!(d.created_date, 0);
    }

    #[test]
    fn short_header_nul_padded_channel_closed() {
        let payload = br#"{"MessageType":"channel_closed","Output":"bye"}"#;
        let mut f = Vec::new();
        f.extend_from_slice(&112u32.to_be_bytes());
        let mut name = [0u8; 32];
        name[..14].copy_from_slice(b"channel_closed");
        f.extend_from_slice(&name);
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&1_718_000_000_000u64.to_be_bytes());
        f.extend_from_slice(&0u64.to_be_bytes());
        f.extend_from_slice(&0u64.to_be_bytes());
        f.extend_from_slice(&[7u8; 16]);
        f.extend_from_slice(Sha256::digest(payload).as_slice());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        let m = Message::decode(&f).unwrap();
        assert_eq!(m.message_type, MessageType::ChannelClosed);
        assert_eq!(m.header_length, 112);
        assert_eq!(m.payload_type, PayloadType::None);
        assert_eq!(&m.payload[..], payload);
        // Re-encoding keeps the short header (padding becomes spaces).
        let e = m.encode();
        assert_eq!(e.len(), f.len());
        assert_eq!(Message::decode(&e).unwrap(), m);
    }

    #[test]
    fn unknown_types_survive_round_trip() {
        let m = Message {
            message_type: MessageType::Unknown("agent_session_state".into()),
            header_length: 116,
            schema_version: 1,
            created_date: 5,
            sequence_number: -1,
            flags: 3,
            message_id: Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            payload_type: PayloadType::Unknown(99),
            payload: Bytes::from_static(b"{}"),
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn longer_header_length_is_tolerated() {
        let m = Message {
            message_type: MessageType::OutputStreamData,
            header_length: 124,
            schema_version: 1,
            created_date: 5,
            sequence_number: 2,
            flags: 0,
            message_id: Uuid::nil(),
            payload_type: PayloadType::Output,
            payload: Bytes::from_static(b"abc"),
        };
        let e = m.encode();
        assert_eq!(e.len(), 128 + 3);
        assert_eq!(Message::decode(&e).unwrap(), m);
    }
}
