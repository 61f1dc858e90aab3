//! The data-channel state machine, for both roles.
//!
//! ```text
//!             client                                  agent
//! open() ──► text open-data-channel ───────────────► Event::Opened
//!                                                     start_handshake() (optional)
//! Event::KmsDataKeyRequired ◄── output seq0 type5 ◄──
//! provide_data_key() ──► input seq0 type6 ─────────► Event::HandshakeResponse
//!                                                     (Event::DataKeyDecryptRequired,
//!                                                      accept_data_key(): type 8 ⇄ 9)
//! Event::Ready ◄────────── output seqN type7 ◄──────  Event::HandshakeComplete
//! send_input()/send_resize() ──► input type1/3 ────► Event::Input / Event::Resize
//! Event::Output ◄──────── output type1 ◄───────────  send_output()
//! Event::Closed ◄──────── channel_closed ◄─────────  close()
//! ```
//!
//! Without a handshake the first in-order `Output` message makes the client ready
//! with session type `Standard_Stream`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use uuid::Uuid;

use crate::config::{ChannelConfig, IdSource, Role, WallClock};
use crate::crypto::{NONCE_LEN, SessionCipher};
use crate::error::{Error, Misuse, PeerMisbehaved};
use crate::message::{ACK_FLAGS, HEADER_LENGTH, Message, MessageType, PayloadType, SYN_FLAG};
use crate::payload::{
    self, ACTION_KMS_ENCRYPTION, ACTION_SESSION_TYPE, ACTION_STATUS_FAILED, ACTION_STATUS_SUCCESS,
    ACTION_STATUS_UNSUPPORTED, Acknowledge, ActionParameters, ActionResult, ChannelClosed,
    EncChallengeRequest, EncChallengeResponse, ExitCode, Flag, HandshakeComplete, HandshakeRequest,
    HandshakeResponse, KmsEncryptionResponse, OpenDataChannel, ProcessedClientAction, Size, Token,
};
use crate::rtt::RttEstimator;

/// Session types a client accepts.
pub const SUPPORTED_SESSION_TYPES: [&str; 4] = [
    "Standard_Stream",
    "InteractiveCommands",
    "NonInteractiveCommands",
    "Port",
];

/// Session type assumed when the agent skips the handshake.
pub const DEFAULT_SESSION_TYPE: &str = "Standard_Stream";

/// `CustomerMessage` the agent role sends when a KMS session is set up.
pub const KMS_CUSTOMER_MESSAGE: &str = "This session is encrypted using AWS KMS.";

/// Size of the random challenge the agent role encrypts.
const CHALLENGE_LEN: usize = 64;

/// How many control messages (sizes, flags, exit codes) may be in flight beyond
/// the data send window.
pub const CONTROL_HEADROOM: usize = 16;

/// An incoming WebSocket data frame.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A text frame (the open-data-channel JSON, or a message the service sent as text).
    Text(&'a str),
    /// A binary frame holding one message.
    Binary(&'a [u8]),
}

/// An incoming binary frame the channel may keep without copying.
impl<'a> From<&'a [u8]> for Frame<'a> {
    fn from(b: &'a [u8]) -> Frame<'a> {
        Frame::Binary(b)
    }
}

/// A WebSocket frame to write.
#[derive(Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Text frame (only the open-data-channel frame; holds the token).
    Text(String),
    /// Binary frame holding one encoded message.
    Binary(Bytes),
}

impl fmt::Debug for Transmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transmit::Text(t) => write!(f, "Text(<{} bytes, redacted>)", t.len()),
            Transmit::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

/// Something the caller should act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Client: the session type is known; input may flow.
    Ready {
        /// Session type (`Standard_Stream`, `InteractiveCommands`, ...).
        session_type: String,
        /// Non-empty `CustomerMessage` of the handshake, if any.
        customer_message: Option<String>,
    },
    /// Client: terminal / stdout bytes (payload type 1), decrypted.
    Output(Bytes),
    /// Client: stderr bytes (payload type 11), decrypted.
    StdErr(Bytes),
    /// Client: the remote command's exit code (payload type 12).
    ExitCode(i32),
    /// Client: the agent asked for KMS encryption. Call KMS `GenerateDataKey` (64
    /// bytes) and answer with [`Channel::provide_data_key`] or
    /// [`Channel::reject_data_key`].
    KmsDataKeyRequired {
        /// `KMSKeyId` exactly as received.
        key_id: String,
        /// The agent's random challenge, if sent.
        challenge: Option<String>,
    },
    /// The service paused publication: new stream data and resends are held.
    Paused,
    /// Publication resumed.
    Resumed,
    /// The send window has room again after a short write.
    SendWindowOpen,
    /// The channel is closed (by the peer, by [`Channel::close`], or by a fatal error).
    Closed {
        /// `Output` text of `channel_closed`, or the fatal error's description.
        reason: Option<String>,
    },
    /// Agent: a client opened (or re-opened) the channel.
    Opened(OpenDataChannel),
    /// Agent: input bytes (payload type 1), decrypted.
    Input(Bytes),
    /// Agent: terminal size.
    Resize {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
    /// A flag (payload type 10), either direction.
    Flag(u32),
    /// Agent: the client's handshake response, as received.
    HandshakeResponse(HandshakeResponse),
    /// Agent: decrypt this blob with KMS and hand the 64-byte key to
    /// [`Channel::accept_data_key`].
    DataKeyDecryptRequired {
        /// Key id from the handshake request.
        key_id: String,
        /// The client's `CiphertextBlob`.
        ciphertext_blob: Vec<u8>,
    },
    /// Agent: the handshake finished; output may flow.
    HandshakeComplete,
    /// Any other delivered stream payload (types 2, 4, unknown, ...).
    Payload {
        /// Its payload type.
        payload_type: PayloadType,
        /// Its bytes (decrypted where applicable).
        data: Bytes,
    },
}

/// Counters and estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stream messages transmitted for the first time.
    pub sent: u64,
    /// Stream payload bytes transmitted for the first time.
    pub sent_bytes: u64,
    /// Stream messages delivered in order.
    pub received: u64,
    /// Stream messages resent on timeout or after a reconnect.
    pub resent: u64,
    /// Duplicate stream messages received (re-acknowledged and dropped).
    pub duplicates: u64,
    /// Early stream messages received and held.
    pub out_of_order: u64,
    /// Early stream messages dropped because the hold buffer was full.
    pub dropped_out_of_order: u64,
    /// Acknowledgements sent.
    pub acks_sent: u64,
    /// Acknowledgements received that matched an outstanding message.
    pub acks_received: u64,
    /// Frames that failed to decode.
    pub malformed: u64,
    /// Smoothed RTT.
    pub srtt: Duration,
    /// RTT variation.
    pub rttvar: Duration,
    /// Current RTO.
    pub rto: Duration,
}

struct Outgoing {
    frame: Bytes,
    payload_len: usize,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    resends: u32,
    /// Sent more than once: no RTT sample (Karn).
    ambiguous: bool,
    /// Client input (payload type 1) in clear text, for [`Channel::unacked_input`].
    input: Option<Bytes>,
}

/// Client side: a handshake request waiting for the caller's data key.
struct PendingKms {
    results: Vec<ProcessedClientAction>,
    errors: Vec<String>,
    kms_index: usize,
}

/// What the agent role waits for.
enum AgentAwaits {
    Response,
    DataKey,
    Challenge { plaintext: Vec<u8> },
}

struct AgentHandshake {
    started: Instant,
    request: HandshakeRequest,
    kms_key_id: Option<String>,
    state: AgentAwaits,
}

/// A Session Manager data channel without I/O: feed it frames and time, take frames,
/// timeouts and events out.
///
/// Every method that depends on time takes `now`; the channel never reads a clock,
/// a socket or a random source itself. See the [crate documentation](crate) for a
/// driving loop.
pub struct Channel {
    role: Role,
    client_version: String,
    ids: Box<dyn IdSource>,
    clock: Box<dyn WallClock>,
    backoff: bool,
    max_resends: u32,
    max_unacked_messages: usize,
    max_unacked_bytes: usize,
    max_out_of_order: usize,
    chunk_size: usize,
    rewrite_lone_lf: bool,
    honour_pause: bool,
    session_id: String,

    linked: bool,
    ready: bool,
    session_type: Option<String>,
    session_properties: serde_json::Value,
    agent_version: Option<String>,
    handshake_seen: bool,
    pending_kms: Option<PendingKms>,
    agent_hs: Option<AgentHandshake>,
    cipher: Option<SessionCipher>,

    next_seq: i64,
    pre_ready: VecDeque<(PayloadType, Bytes)>,
    pre_ready_bytes: usize,
    unacked: BTreeMap<i64, Outgoing>,
    unacked_bytes: usize,
    next_to_send: i64,
    control: VecDeque<Transmit>,
    final_frame: Option<Bytes>,
    window_blocked: bool,
    paused: bool,
    rtt: RttEstimator,

    expected: i64,
    held: BTreeMap<i64, Message>,
    events: VecDeque<Event>,
    closed: bool,
    error: Option<Error>,
    stats: Stats,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("role", &self.role)
            .field("ready", &self.ready)
            .field("session_type", &self.session_type)
            .field("next_seq", &self.next_seq)
            .field("expected", &self.expected)
            .field("unacked", &self.unacked.len())
            .field("paused", &self.paused)
            .field("closed", &self.closed)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

fn utf8_cut(data: &[u8], max: usize) -> usize {
    if data.len() <= max {
        return data.len();
    }
    // Back off to the start of a UTF-8 sequence that would straddle the cut.
    for back in 1..=3.min(max) {
        let i = max - back;
        let b = data[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < need && i > 0 { i } else { max };
    }
    max
}

impl Channel {
    /// Creates a channel. A client then calls [`open`](Self::open); an agent waits for
    /// [`Event::Opened`].
    pub fn new(config: ChannelConfig) -> Channel {
        let rtt = RttEstimator::new(
            config.initial_rtt,
            config.initial_rto,
            config.min_rto,
            config.max_rto,
        );
        Channel {
            role: config.role,
            client_version: config.client_version,
            ids: config.ids,
            clock: config.wall_clock,
            backoff: config.backoff,
            max_resends: config.max_resends,
            max_unacked_messages: config.max_unacked_messages.max(1),
            max_unacked_bytes: config.max_unacked_bytes.max(1),
            max_out_of_order: config.max_out_of_order,
            chunk_size: config.chunk_size.max(1),
            rewrite_lone_lf: config.rewrite_lone_lf,
            honour_pause: config.honour_pause,
            session_id: config.session_id,
            linked: false,
            // The agent may send output at once unless it starts a handshake.
            ready: config.role == Role::Agent,
            session_type: None,
            session_properties: serde_json::Value::Null,
            agent_version: None,
            handshake_seen: false,
            pending_kms: None,
            agent_hs: None,
            cipher: None,
            next_seq: 0,
            pre_ready: VecDeque::new(),
            pre_ready_bytes: 0,
            unacked: BTreeMap::new(),
            unacked_bytes: 0,
            next_to_send: 0,
            control: VecDeque::new(),
            final_frame: None,
            window_blocked: false,
            paused: false,
            rtt,
            expected: 0,
            held: BTreeMap::new(),
            events: VecDeque::new(),
            closed: false,
            error: None,
            stats: Stats::default(),
        }
    }

    // ----------------------------------------------------------------- accessors

    /// This channel's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the session type is known and stream data flows.
    pub fn is_ready(&self) -> bool {
        self.ready && !self.closed
    }

    /// The agreed session type, once known.
    pub fn session_type(&self) -> Option<&str> {
        self.session_type.as_deref()
    }

    /// `Properties` of the `SessionType` action (port sessions), `null` otherwise.
    pub fn session_properties(&self) -> &serde_json::Value {
        &self.session_properties
    }

    /// The agent version from the handshake request, if there was one.
    pub fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }

    /// Whether encryption is on.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether publication is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the channel is closed (normally or by a fatal error).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The fatal error that ended the channel, if any.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Stream messages queued or unacknowledged.
    pub fn unacked_messages(&self) -> usize {
        self.unacked.len() + self.pre_ready.len()
    }

    /// Client: the input bytes (payload type 1) not acknowledged yet, in order: those
    /// in flight, then those queued before the session was ready. For carrying input
    /// over to a *new* channel when the session itself is replaced (CloudShell
    /// re-attaches a tab through a new session); reconnecting this channel with
    /// [`open`](Self::open) resends them by itself.
    pub fn unacked_input(&self) -> Vec<Bytes> {
        let in_flight = self.unacked.values().filter_map(|o| o.input.clone());
        let queued = self
            .pre_ready
            .iter()
            .filter(|(pt, _)| *pt == PayloadType::Output)
            .map(|(_, b)| b.clone());
        in_flight.chain(queued).collect()
    }

    /// True when every stream message sent has been acknowledged and nothing waits.
    pub fn all_acked(&self) -> bool {
        self.unacked.is_empty() && self.pre_ready.is_empty()
    }

    /// Payload bytes [`send_input`](Self::send_input) / [`send_output`](Self::send_output)
    /// would accept now.
    pub fn send_window_room(&self) -> usize {
        let msgs = self
            .max_unacked_messages
            .saturating_sub(self.unacked_messages());
        let bytes = self
            .max_unacked_bytes
            .saturating_sub(self.unacked_bytes + self.pre_ready_bytes);
        bytes.min(msgs.saturating_mul(self.chunk_size))
    }

    /// Next outgoing sequence number.
    pub fn next_sequence_number(&self) -> i64 {
        self.next_seq
    }

    /// Next incoming sequence number expected.
    pub fn expected_sequence_number(&self) -> i64 {
        self.expected
    }

    /// Counters and RTT estimates.
    pub fn stats(&self) -> Stats {
        Stats {
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            rto: self.rtt.rto(),
            ..self.stats
        }
    }

    // ----------------------------------------------------------------- outputs

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame to write, if any. Call until it returns `None` after every
    /// other call.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if !self.linked {
            return None;
        }
        if let Some(t) = self.control.pop_front() {
            return Some(t);
        }
        if self.error.is_some() {
            return None;
        }
        if !self.paused {
            let next = self
                .unacked
                .range_mut(self.next_to_send..)
                .next()
                .map(|(s, o)| (*s, o));
            if let Some((seq, o)) = next {
                if o.first_sent.is_none() {
                    o.first_sent = Some(now);
                    self.stats.sent += 1;
                    self.stats.sent_bytes += o.payload_len as u64;
                } else {
                    // Resent on a new link after a reconnect.
                    o.ambiguous = true;
                    self.stats.resent += 1;
                }
                o.last_sent = Some(now);
                self.next_to_send = seq + 1;
                return Some(Transmit::Binary(o.frame.clone()));
            }
        }
        if self.unacked.range(self.next_to_send..).next().is_none()
            && let Some(f) = self.final_frame.take()
        {
            return Some(Transmit::Binary(f));
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed || self.paused {
            return None;
        }
        let (_, o) = self.unacked.range(..self.next_to_send).next()?;
        let last = o.last_sent?;
        Some(last + self.rtt.backoff_rto(o.resends, self.backoff))
    }

    /// Advances timers: resends the oldest unacknowledged message when its timeout
    /// has passed, or fails the channel at the resend limit.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed || self.paused {
            return;
        }
        let backoff = self.backoff;
        let rto = |r: u32| self.rtt.backoff_rto(r, backoff);
        let Some((&seq, o)) = self.unacked.range(..self.next_to_send).next() else {
            return;
        };
        let Some(last) = o.last_sent else { return };
        if now < last + rto(o.resends) {
            return;
        }
        if o.resends >= self.max_resends {
            let resends = o.resends;
            self.fail(Error::ResendLimit {
                sequence_number: seq,
                resends,
            });
            return;
        }
        if let Some(o) = self.unacked.get_mut(&seq) {
            o.resends += 1;
            o.ambiguous = true;
            o.last_sent = Some(now);
            self.stats.resent += 1;
            self.control.push_back(Transmit::Binary(o.frame.clone()));
        }
    }

    // ----------------------------------------------------------------- inputs

    fn check_usable(&self) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn require_role(&self, role: Role, method: &'static str) -> Result<(), Error> {
        if self.role != role {
            return Err(Error::Misuse(Misuse::WrongRole {
                method,
                role: self.role,
            }));
        }
        Ok(())
    }

    /// Client: queues the open-data-channel text frame. Call once after the WebSocket
    /// opens, and again after every reconnect with the new token and a new request id:
    /// sequence state is kept and everything unacknowledged is resent on the new link.
    pub fn open(
        &mut self,
        now: Instant,
        token: Token,
        client_id: Uuid,
        request_id: Uuid,
    ) -> Result<(), Error> {
        let _ = now;
        self.check_usable()?;
        self.require_role(Role::Client, "open")?;
        let o = OpenDataChannel {
            message_schema_version: "1.0".into(),
            request_id: request_id.hyphenated().to_string(),
            token_value: token,
            client_id: Some(client_id.hyphenated().to_string()),
            client_version: Some(self.client_version.clone()),
        };
        let text = String::from_utf8(payload::to_json(&o)).unwrap_or_default();
        self.new_link();
        self.control.push_front(Transmit::Text(text));
        Ok(())
    }

    /// A new transport link: resend everything in flight on it.
    fn new_link(&mut self) {
        if self.linked {
            self.next_to_send = self.unacked.keys().next().copied().unwrap_or(self.next_seq);
            if self.paused {
                self.paused = false;
                self.events.push_back(Event::Resumed);
            }
        }
        self.linked = true;
    }

    /// Feeds one received WebSocket data frame.
    ///
    /// Non-fatal errors (a malformed frame, a bad non-handshake payload) leave the
    /// channel usable; fatal ones close it ([`Error::is_fatal`]). Frames arriving
    /// after a normal close are ignored.
    pub fn handle_incoming(&mut self, now: Instant, frame: Frame<'_>) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.closed {
            return Ok(());
        }
        let bytes = match frame {
            Frame::Text(t) => {
                if self.role == Role::Agent
                    && let Ok(o) = serde_json::from_str::<OpenDataChannel>(t)
                {
                    self.new_link();
                    self.events.push_back(Event::Opened(o));
                    return Ok(());
                }
                t.as_bytes()
            }
            Frame::Binary(b) => b,
        };
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(Error::Malformed(e));
            }
        };
        self.handle_message(now, msg)
    }

    /// Feeds one received binary frame without copying its payload.
    pub fn handle_incoming_bytes(&mut self, now: Instant, frame: Bytes) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.closed {
            return Ok(());
        }
        let msg = match Message::decode_bytes(frame) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(Error::Malformed(e));
            }
        };
        self.handle_message(now, msg)
    }

    fn incoming_stream_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::OutputStreamData,
            Role::Agent => MessageType::InputStreamData,
        }
    }

    fn outgoing_stream_type(&self) -> MessageType {
        match self.role {
            Role::Client => MessageType::InputStreamData,
            Role::Agent => MessageType::OutputStreamData,
        }
    }

    fn handle_message(&mut self, now: Instant, msg: Message) -> Result<(), Error> {
        match &msg.message_type {
            MessageType::Acknowledge => {
                self.resume_on_traffic();
                let ack: Acknowledge =
                    payload::from_json(&msg.payload).map_err(|source| Error::InvalidPayload {
                        payload_type: msg.payload_type,
                        source,
                    })?;
                self.on_ack(now, ack.acknowledged_message_sequence_number);
                Ok(())
            }
            t if *t == self.incoming_stream_type() => {
                self.resume_on_traffic();
                self.on_stream(now, msg)
            }
            MessageType::ChannelClosed => {
                let cc: ChannelClosed = payload::from_json(&msg.payload).unwrap_or_default();
                self.closed = true;
                self.held.clear();
                self.events.push_back(Event::Closed {
                    reason: Some(cc.output).filter(|s| !s.is_empty()),
                });
                Ok(())
            }
            MessageType::PausePublication => {
                if self.honour_pause && !self.paused {
                    self.paused = true;
                    self.events.push_back(Event::Paused);
                }
                Ok(())
            }
            MessageType::StartPublication => {
                self.resume_on_traffic();
                Ok(())
            }
            // Unknown types (and stream data in the wrong direction) are ignored.
            _ => Ok(()),
        }
    }

    fn resume_on_traffic(&mut self) {
        if self.paused {
            self.paused = false;
            self.events.push_back(Event::Resumed);
        }
    }

    fn on_ack(&mut self, now: Instant, seq: i64) {
        let Some(o) = self.unacked.remove(&seq) else {
            return;
        };
        self.unacked_bytes -= o.payload_len;
        self.stats.acks_received += 1;
        if let (Some(first), false) = (o.first_sent, o.ambiguous) {
            self.rtt.on_sample(now.saturating_duration_since(first));
        }
        self.check_window_open();
    }

    fn check_window_open(&mut self) {
        if self.window_blocked && self.send_window_room() > 0 {
            self.window_blocked = false;
            self.events.push_back(Event::SendWindowOpen);
        }
    }

    fn queue_ack(&mut self, msg: &Message) {
        let ack = payload::ack_json(
            msg.message_type.as_str(),
            &msg.message_id,
            msg.sequence_number,
        );
        let m = Message {
            message_type: MessageType::Acknowledge,
            header_length: HEADER_LENGTH,
            schema_version: 1,
            created_date: self.clock.now_millis(),
            sequence_number: 0,
            flags: ACK_FLAGS,
            message_id: self.ids.next_id(),
            payload_type: PayloadType::None,
            payload: Bytes::from(ack),
        };
        self.stats.acks_sent += 1;
        self.control.push_back(Transmit::Binary(m.encode()));
    }

    fn on_stream(&mut self, now: Instant, msg: Message) -> Result<(), Error> {
        let seq = msg.sequence_number;
        if seq < self.expected {
            self.stats.duplicates += 1;
            self.queue_ack(&msg);
            return Ok(());
        }
        if seq > self.expected {
            if self.held.contains_key(&seq) || self.held.len() < self.max_out_of_order {
                self.queue_ack(&msg);
                self.stats.out_of_order += 1;
                self.held.insert(seq, msg);
            } else {
                self.stats.dropped_out_of_order += 1;
            }
            return Ok(());
        }
        self.queue_ack(&msg);
        let mut first_err = None;
        let mut next = Some(msg);
        while let Some(m) = next {
            self.expected += 1;
            self.stats.received += 1;
            if let Err(e) = self.deliver(now, m) {
                if e.is_fatal() {
                    return Err(self.fail(e));
                }
                first_err.get_or_insert(e);
            }
            if self.closed {
                break;
            }
            next = self.held.remove(&self.expected);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn decrypt_if(&self, encrypted: bool, msg: &Message) -> Result<Bytes, Error> {
        match (&self.cipher, encrypted) {
            (Some(c), true) => c
                .open(&msg.payload)
                .map(Bytes::from)
                .map_err(|e| Error::PeerMisbehaved(PeerMisbehaved::Decrypt(msg.payload_type, e))),
            _ => Ok(msg.payload.clone()),
        }
    }

    fn deliver(&mut self, now: Instant, msg: Message) -> Result<(), Error> {
        match self.role {
            Role::Client => self.deliver_client(now, msg),
            Role::Agent => self.deliver_agent(now, msg),
        }
    }

    fn invalid(payload_type: PayloadType) -> impl FnOnce(payload::PayloadError) -> Error {
        move |source| Error::InvalidPayload {
            payload_type,
            source,
        }
    }

    fn deliver_client(&mut self, now: Instant, msg: Message) -> Result<(), Error> {
        let pt = msg.payload_type;
        match pt {
            PayloadType::HandshakeRequest => {
                let req: HandshakeRequest =
                    payload::from_json(&msg.payload).map_err(Self::invalid(pt))?;
                self.client_handshake_request(now, req)
            }
            PayloadType::EncChallengeRequest => {
                let req: EncChallengeRequest =
                    payload::from_json(&msg.payload).map_err(Self::invalid(pt))?;
                self.client_challenge(now, req)
            }
            PayloadType::HandshakeComplete => {
                let hc: HandshakeComplete =
                    payload::from_json(&msg.payload).map_err(Self::invalid(pt))?;
                let Some(st) = self.session_type.clone() else {
                    return Err(Error::PeerMisbehaved(PeerMisbehaved::NoSessionType));
                };
                self.become_ready(now, st, Some(hc.customer_message));
                Ok(())
            }
            PayloadType::Output => {
                let data = self.decrypt_if(true, &msg)?;
                if !self.ready && !self.handshake_seen {
                    self.become_ready(now, DEFAULT_SESSION_TYPE.to_owned(), None);
                }
                self.events.push_back(Event::Output(data));
                Ok(())
            }
            PayloadType::StdErr => {
                let data = self.decrypt_if(true, &msg)?;
                self.events.push_back(Event::StdErr(data));
                Ok(())
            }
            PayloadType::ExitCode => {
                let data = self.decrypt_if(true, &msg)?;
                let code = ExitCode::from_bytes(&data).map_err(Self::invalid(pt))?;
                self.events.push_back(Event::ExitCode(code.0));
                Ok(())
            }
            PayloadType::Flag => {
                let f = Flag::from_bytes(&msg.payload).map_err(Self::invalid(pt))?;
                self.events.push_back(Event::Flag(f.0));
                Ok(())
            }
            other => {
                self.events.push_back(Event::Payload {
                    payload_type: other,
                    data: msg.payload,
                });
                Ok(())
            }
        }
    }

    fn deliver_agent(&mut self, now: Instant, msg: Message) -> Result<(), Error> {
        let pt = msg.payload_type;
        let handshaking = !self.ready;
        match pt {
            PayloadType::HandshakeResponse => {
                let resp: HandshakeResponse =
                    payload::from_json(&msg.payload).map_err(Self::invalid(pt))?;
                self.agent_handshake_response(now, resp)
            }
            PayloadType::EncChallengeResponse => {
                let resp: EncChallengeResponse =
                    payload::from_json(&msg.payload).map_err(Self::invalid(pt))?;
                self.agent_challenge_response(now, resp)
            }
            // During a handshake the agent acknowledges and discards other input.
            _ if handshaking => Ok(()),
            PayloadType::Output => {
                let data = self.decrypt_if(true, &msg)?;
                self.events.push_back(Event::Input(data));
                Ok(())
            }
            PayloadType::Size => {
                let s: Size = payload::from_json(&msg.payload).map_err(Self::invalid(pt))?;
                self.events.push_back(Event::Resize {
                    cols: s.cols,
                    rows: s.rows,
                });
                Ok(())
            }
            PayloadType::Flag => {
                let f = Flag::from_bytes(&msg.payload).map_err(Self::invalid(pt))?;
                self.events.push_back(Event::Flag(f.0));
                Ok(())
            }
            other => {
                self.events.push_back(Event::Payload {
                    payload_type: other,
                    data: msg.payload,
                });
                Ok(())
            }
        }
    }

    fn become_ready(&mut self, now: Instant, session_type: String, message: Option<String>) {
        self.ready = true;
        self.session_type = Some(session_type.clone());
        if self.role == Role::Client {
            self.events.push_back(Event::Ready {
                session_type,
                customer_message: message.filter(|m| !m.is_empty()),
            });
        } else {
            self.events.push_back(Event::HandshakeComplete);
        }
        while let Some((pt, data)) = self.pre_ready.pop_front() {
            self.pre_ready_bytes -= data.len();
            self.sequence_now(now, pt, &data);
        }
    }

    // ---------------------------------------------------------- client handshake

    fn client_handshake_request(
        &mut self,
        now: Instant,
        req: HandshakeRequest,
    ) -> Result<(), Error> {
        self.handshake_seen = true;
        self.ready = false;
        self.agent_version = Some(req.agent_version.clone());
        let mut results = Vec::with_capacity(req.requested_client_actions.len());
        let mut errors = Vec::new();
        let mut kms = None;
        for (i, action) in req.requested_client_actions.iter().enumerate() {
            let at = action.action_type.clone();
            let mut r = ProcessedClientAction {
                action_type: at.clone(),
                action_status: ACTION_STATUS_SUCCESS,
                action_result: ActionResult::default(),
                error: String::new(),
            };
            match (at.as_str(), &action.action_parameters) {
                (ACTION_SESSION_TYPE, ActionParameters::SessionType(st)) => {
                    if SUPPORTED_SESSION_TYPES.contains(&st.session_type.as_str()) {
                        self.session_type = Some(st.session_type.clone());
                        self.session_properties = st.properties.clone();
                    } else {
                        let e = format!("Unknown session type {}", st.session_type);
                        r.action_status = ACTION_STATUS_FAILED;
                        r.error = format!("Failed to process action SessionType: {e}");
                        errors.push(e);
                    }
                }
                (ACTION_KMS_ENCRYPTION, ActionParameters::KmsEncryption(k)) => {
                    if kms.is_none() {
                        kms = Some(i);
                        self.events.push_back(Event::KmsDataKeyRequired {
                            key_id: k.kms_key_id.clone(),
                            challenge: k.challenge.clone(),
                        });
                    }
                }
                (ACTION_SESSION_TYPE | ACTION_KMS_ENCRYPTION, _) => {
                    let e = "invalid action parameters".to_owned();
                    r.action_status = ACTION_STATUS_FAILED;
                    r.error = format!("Failed to process action {at}: {e}");
                    errors.push(e);
                }
                _ => {
                    // The reference client's encoding of an unsupported action.
                    let e = format!("Unsupported action {at}");
                    r.action_status = 0;
                    r.action_result =
                        ActionResult::Other(serde_json::Value::from(ACTION_STATUS_UNSUPPORTED));
                    r.error = e.clone();
                    errors.push(e);
                }
            }
            results.push(r);
        }
        let pending = PendingKms {
            results,
            errors,
            kms_index: kms.unwrap_or(usize::MAX),
        };
        if kms.is_some() {
            self.pending_kms = Some(pending);
        } else {
            self.send_handshake_response(now, pending);
        }
        Ok(())
    }

    fn send_handshake_response(&mut self, now: Instant, p: PendingKms) {
        let resp = HandshakeResponse {
            client_version: self.client_version.clone(),
            processed_client_actions: p.results,
            errors: if p.errors.is_empty() {
                None
            } else {
                Some(p.errors)
            },
        };
        let json = payload::to_json(&resp);
        self.sequence_now(now, PayloadType::HandshakeResponse, &json);
    }

    /// Client: answers a [`Event::KmsDataKeyRequired`] with the 64-byte plaintext data
    /// key and the `CiphertextBlob` from KMS `GenerateDataKey`. Encryption starts now
    /// and the handshake response is sent.
    pub fn provide_data_key(
        &mut self,
        now: Instant,
        plaintext: &[u8],
        ciphertext_blob: &[u8],
    ) -> Result<(), Error> {
        self.check_usable()?;
        self.require_role(Role::Client, "provide_data_key")?;
        if self.pending_kms.is_none() {
            return Err(Error::Misuse(Misuse::NoDataKeyRequested));
        }
        let cipher =
            SessionCipher::client(plaintext).map_err(|e| Error::Misuse(Misuse::DataKey(e)))?;
        let Some(mut p) = self.pending_kms.take() else {
            return Err(Error::Misuse(Misuse::NoDataKeyRequested));
        };
        if let Some(r) = p.results.get_mut(p.kms_index) {
            r.action_result = ActionResult::KmsEncryption(KmsEncryptionResponse {
                kms_cipher_text_key: B64.encode(ciphertext_blob),
                kms_cipher_text_hash: None,
                challenge_acknowledgement: None,
            });
        }
        self.cipher = Some(cipher);
        self.send_handshake_response(now, p);
        Ok(())
    }

    /// Client: reports that the data key could not be obtained. The action is answered
    /// as failed (the agent will end the session).
    pub fn reject_data_key(&mut self, now: Instant, reason: &str) -> Result<(), Error> {
        self.check_usable()?;
        self.require_role(Role::Client, "reject_data_key")?;
        let Some(mut p) = self.pending_kms.take() else {
            return Err(Error::Misuse(Misuse::NoDataKeyRequested));
        };
        if let Some(r) = p.results.get_mut(p.kms_index) {
            r.action_status = ACTION_STATUS_FAILED;
            r.error = format!("Failed to process action {ACTION_KMS_ENCRYPTION}: {reason}");
        }
        p.errors.push(reason.to_owned());
        self.send_handshake_response(now, p);
        Ok(())
    }

    fn client_challenge(&mut self, now: Instant, req: EncChallengeRequest) -> Result<(), Error> {
        let Some(cipher) = &self.cipher else {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ChallengeWithoutKey));
        };
        let pt = PayloadType::EncChallengeRequest;
        let raw = B64
            .decode(req.challenge.as_bytes())
            .map_err(|_| Self::invalid(pt)(payload::PayloadError::Base64))?;
        let plain = cipher
            .open(&raw)
            .map_err(|e| Error::PeerMisbehaved(PeerMisbehaved::Decrypt(pt, e)))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.ids.fill_random(&mut nonce);
        let sealed = cipher.seal(nonce, &plain);
        let resp = EncChallengeResponse {
            challenge: B64.encode(sealed),
        };
        let json = payload::to_json(&resp);
        self.sequence_now(now, PayloadType::EncChallengeResponse, &json);
        Ok(())
    }

    // ----------------------------------------------------------- agent handshake

    /// Agent: starts a handshake by sending `request` (payload type 5). Must come
    /// before any output. Output sent before the handshake completes is queued.
    pub fn start_handshake(
        &mut self,
        now: Instant,
        request: HandshakeRequest,
    ) -> Result<(), Error> {
        self.check_usable()?;
        self.require_role(Role::Agent, "start_handshake")?;
        if self.next_seq != 0 || self.agent_hs.is_some() {
            return Err(Error::Misuse(Misuse::HandshakeTooLate));
        }
        let kms_key_id =
            request
                .requested_client_actions
                .iter()
                .find_map(|a| match &a.action_parameters {
                    ActionParameters::KmsEncryption(k)
                        if a.action_type == ACTION_KMS_ENCRYPTION =>
                    {
                        Some(k.kms_key_id.clone())
                    }
                    _ => None,
                });
        for a in &request.requested_client_actions {
            if let ActionParameters::SessionType(st) = &a.action_parameters {
                self.session_type = Some(st.session_type.clone());
                self.session_properties = st.properties.clone();
            }
        }
        self.ready = false;
        self.agent_version = Some(request.agent_version.clone());
        let json = payload::to_json(&request);
        self.agent_hs = Some(AgentHandshake {
            started: now,
            request,
            kms_key_id,
            state: AgentAwaits::Response,
        });
        self.sequence_now(now, PayloadType::HandshakeRequest, &json);
        Ok(())
    }

    fn agent_handshake_response(
        &mut self,
        now: Instant,
        resp: HandshakeResponse,
    ) -> Result<(), Error> {
        let Some(hs) = &mut self.agent_hs else {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::Unexpected(
                PayloadType::HandshakeResponse,
            )));
        };
        if !matches!(hs.state, AgentAwaits::Response) {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::Unexpected(
                PayloadType::HandshakeResponse,
            )));
        }
        self.events
            .push_back(Event::HandshakeResponse(resp.clone()));
        let expected = hs.request.requested_client_actions.len();
        if resp.processed_client_actions.len() != expected {
            return Err(Error::PeerMisbehaved(
                PeerMisbehaved::HandshakeActionCount {
                    expected,
                    got: resp.processed_client_actions.len(),
                },
            ));
        }
        let failed: Vec<String> = resp
            .processed_client_actions
            .iter()
            .filter(|a| a.action_status != ACTION_STATUS_SUCCESS)
            .map(|a| {
                if a.error.is_empty() {
                    format!("{} status {}", a.action_type, a.action_status)
                } else {
                    a.error.clone()
                }
            })
            .collect();
        if !failed.is_empty() {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::HandshakeFailed {
                errors: failed,
            }));
        }
        if let Some(key_id) = hs.kms_key_id.clone() {
            let blob = resp
                .processed_client_actions
                .iter()
                .find_map(|a| match &a.action_result {
                    ActionResult::KmsEncryption(k) if a.action_type == ACTION_KMS_ENCRYPTION => {
                        Some(k.kms_cipher_text_key.clone())
                    }
                    _ => None,
                })
                .ok_or(Error::InvalidPayload {
                    payload_type: PayloadType::HandshakeResponse,
                    source: payload::PayloadError::Json("missing KMSCipherTextKey".into()),
                })?;
            let blob = B64
                .decode(blob.as_bytes())
                .map_err(|_| Error::InvalidPayload {
                    payload_type: PayloadType::HandshakeResponse,
                    source: payload::PayloadError::Base64,
                })?;
            hs.state = AgentAwaits::DataKey;
            self.events.push_back(Event::DataKeyDecryptRequired {
                key_id,
                ciphertext_blob: blob,
            });
            Ok(())
        } else {
            self.agent_complete(now, String::new());
            Ok(())
        }
    }

    /// Agent: answers [`Event::DataKeyDecryptRequired`] with the decrypted 64-byte
    /// data key. Sends the encryption challenge (payload type 8).
    pub fn accept_data_key(&mut self, now: Instant, plaintext: &[u8]) -> Result<(), Error> {
        self.check_usable()?;
        self.require_role(Role::Agent, "accept_data_key")?;
        if !matches!(
            self.agent_hs.as_ref().map(|h| &h.state),
            Some(AgentAwaits::DataKey)
        ) {
            return Err(Error::Misuse(Misuse::NoDataKeyRequested));
        }
        let cipher =
            SessionCipher::agent(plaintext).map_err(|e| Error::Misuse(Misuse::DataKey(e)))?;
        let mut challenge = vec![0u8; CHALLENGE_LEN];
        self.ids.fill_random(&mut challenge);
        let mut nonce = [0u8; NONCE_LEN];
        self.ids.fill_random(&mut nonce);
        let sealed = cipher.seal(nonce, &challenge);
        self.cipher = Some(cipher);
        if let Some(hs) = &mut self.agent_hs {
            hs.state = AgentAwaits::Challenge {
                plaintext: challenge,
            };
        }
        let json = payload::to_json(&EncChallengeRequest {
            challenge: B64.encode(sealed),
        });
        self.sequence_now(now, PayloadType::EncChallengeRequest, &json);
        Ok(())
    }

    fn agent_challenge_response(
        &mut self,
        now: Instant,
        resp: EncChallengeResponse,
    ) -> Result<(), Error> {
        let pt = PayloadType::EncChallengeResponse;
        let expected = match self.agent_hs.as_ref().map(|h| &h.state) {
            Some(AgentAwaits::Challenge { plaintext }) => plaintext.clone(),
            _ => return Err(Error::PeerMisbehaved(PeerMisbehaved::Unexpected(pt))),
        };
        let Some(cipher) = &self.cipher else {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ChallengeWithoutKey));
        };
        let raw = B64
            .decode(resp.challenge.as_bytes())
            .map_err(|_| Self::invalid(pt)(payload::PayloadError::Base64))?;
        let got = cipher
            .open(&raw)
            .map_err(|e| Error::PeerMisbehaved(PeerMisbehaved::Decrypt(pt, e)))?;
        if got != expected {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::ChallengeMismatch));
        }
        self.agent_complete(now, KMS_CUSTOMER_MESSAGE.to_owned());
        Ok(())
    }

    fn agent_complete(&mut self, now: Instant, customer_message: String) {
        let started = self.agent_hs.as_ref().map_or(now, |h| h.started);
        let took = now.saturating_duration_since(started);
        let hc = HandshakeComplete {
            handshake_time_to_complete: i64::try_from(took.as_nanos()).unwrap_or(i64::MAX),
            customer_message,
        };
        self.agent_hs = None;
        let json = payload::to_json(&hc);
        self.sequence_now(now, PayloadType::HandshakeComplete, &json);
        let st = self
            .session_type
            .clone()
            .unwrap_or_else(|| DEFAULT_SESSION_TYPE.to_owned());
        self.become_ready(now, st, None);
    }

    // ----------------------------------------------------------------- sending

    /// Assigns the next sequence number and queues the message for transmission.
    fn sequence_now(&mut self, _now: Instant, pt: PayloadType, plaintext: &[u8]) {
        let encrypt = match self.role {
            Role::Client => pt == PayloadType::Output,
            Role::Agent => matches!(
                pt,
                PayloadType::Output | PayloadType::StdErr | PayloadType::ExitCode
            ),
        };
        let payload = match (&self.cipher, encrypt) {
            (Some(c), true) => {
                let mut nonce = [0u8; NONCE_LEN];
                self.ids.fill_random(&mut nonce);
                Bytes::from(c.seal(nonce, plaintext))
            }
            _ => Bytes::copy_from_slice(plaintext),
        };
        let seq = self.next_seq;
        let m = Message {
            message_type: self.outgoing_stream_type(),
            header_length: HEADER_LENGTH,
            schema_version: 1,
            created_date: self.clock.now_millis(),
            sequence_number: seq,
            flags: if self.role == Role::Agent && seq == 0 {
                SYN_FLAG
            } else {
                0
            },
            message_id: self.ids.next_id(),
            payload_type: pt,
            payload,
        };
        self.unacked_bytes += plaintext.len();
        self.unacked.insert(
            seq,
            Outgoing {
                frame: m.encode(),
                payload_len: plaintext.len(),
                first_sent: None,
                last_sent: None,
                resends: 0,
                ambiguous: false,
                input: (self.role == Role::Client && pt == PayloadType::Output)
                    .then(|| Bytes::copy_from_slice(plaintext)),
            },
        );
        self.next_seq += 1;
    }

    /// Queues one stream message: sequenced now when ready, held otherwise.
    fn enqueue(&mut self, now: Instant, pt: PayloadType, data: &[u8]) {
        if self.ready {
            self.sequence_now(now, pt, data);
        } else {
            self.pre_ready_bytes += data.len();
            self.pre_ready.push_back((pt, Bytes::copy_from_slice(data)));
        }
    }

    fn send_chunked(&mut self, now: Instant, pt: PayloadType, data: &[u8]) -> usize {
        let mut accepted = 0;
        while accepted < data.len() {
            let room = self.send_window_room();
            if room == 0 {
                break;
            }
            let rest = &data[accepted..];
            let max = self.chunk_size.min(room);
            let n = if matches!(pt, PayloadType::Output | PayloadType::StdErr) {
                utf8_cut(rest, max)
            } else {
                rest.len().min(max)
            };
            self.enqueue(now, pt, &rest[..n]);
            accepted += n;
        }
        if accepted < data.len() {
            self.window_blocked = true;
        }
        accepted
    }

    /// Client: sends input bytes (payload type 1), split into messages of at most
    /// `chunk_size` bytes. Returns how many bytes were accepted: fewer than given (maybe
    /// 0) when the send window is full; [`Event::SendWindowOpen`] follows when there is
    /// room again. Input given before the session is ready is queued (it counts against
    /// the window) and sent once it is.
    pub fn send_input(&mut self, now: Instant, data: &[u8]) -> Result<usize, Error> {
        self.check_usable()?;
        self.require_role(Role::Client, "send_input")?;
        if self.rewrite_lone_lf && data == b"\n" {
            return Ok(self.send_chunked(now, PayloadType::Output, b"\r"));
        }
        Ok(self.send_chunked(now, PayloadType::Output, data))
    }

    /// Control messages (sizes, flags, exit codes) are tiny and must not wait behind
    /// bulk data: they may exceed the send window by [`CONTROL_HEADROOM`] messages.
    fn send_small(&mut self, now: Instant, pt: PayloadType, data: &[u8]) -> Result<(), Error> {
        if self.unacked_messages() >= self.max_unacked_messages + CONTROL_HEADROOM {
            self.window_blocked = true;
            return Err(Error::SendWindowFull);
        }
        self.enqueue(now, pt, data);
        Ok(())
    }

    /// Client: sends a terminal size (payload type 3). Accepted even when the window
    /// is full of data; fails with [`Error::SendWindowFull`] (not fatal) only when
    /// the control headroom is used up too.
    pub fn send_resize(&mut self, now: Instant, cols: u32, rows: u32) -> Result<(), Error> {
        self.check_usable()?;
        self.require_role(Role::Client, "send_resize")?;
        let json = payload::to_json(&Size { cols, rows });
        self.send_small(now, PayloadType::Size, &json)
    }

    /// Either role: sends a flag (payload type 10), e.g. [`Flag::TERMINATE_SESSION`].
    pub fn send_flag(&mut self, now: Instant, flag: u32) -> Result<(), Error> {
        self.check_usable()?;
        self.send_small(now, PayloadType::Flag, &Flag(flag).to_bytes())
    }

    /// Agent: sends output of the given payload type (1 stdout/terminal, 11 stderr,
    /// 12 exit code, ...), chunked at `chunk_size` without splitting UTF-8 sequences
    /// (types 1 and 11). Returns bytes accepted, like [`send_input`](Self::send_input).
    pub fn send_output(
        &mut self,
        now: Instant,
        payload_type: PayloadType,
        data: &[u8],
    ) -> Result<usize, Error> {
        self.check_usable()?;
        self.require_role(Role::Agent, "send_output")?;
        Ok(self.send_chunked(now, payload_type, data))
    }

    /// Agent: sends `EXIT_CODE: n` (payload type 12).
    pub fn send_exit_code(&mut self, now: Instant, code: i32) -> Result<(), Error> {
        self.check_usable()?;
        self.require_role(Role::Agent, "send_exit_code")?;
        self.send_small(now, PayloadType::ExitCode, &ExitCode(code).to_bytes())
    }

    /// Closes the channel. Client: marks it closed (nothing more is sent). Agent: sends
    /// `channel_closed` after any stream data not yet transmitted.
    pub fn close(&mut self, now: Instant) {
        self.close_with_reason(now, "");
    }

    /// Like [`close`](Self::close); the agent puts `reason` into the `Output` field of
    /// `channel_closed`.
    pub fn close_with_reason(&mut self, _now: Instant, reason: &str) {
        if self.closed {
            return;
        }
        if self.role == Role::Agent {
            let created = self.clock.now_millis();
            let id = self.ids.next_id();
            let cc = ChannelClosed {
                message_id: id.hyphenated().to_string(),
                created_date: created.to_string(),
                destination_id: self.session_id.clone(),
                session_id: self.session_id.clone(),
                message_type: MessageType::ChannelClosed.as_str().to_owned(),
                schema_version: 1,
                output: reason.to_owned(),
            };
            let m = Message {
                message_type: MessageType::ChannelClosed,
                header_length: HEADER_LENGTH,
                schema_version: 1,
                created_date: created,
                sequence_number: 0,
                flags: 0,
                message_id: id,
                payload_type: PayloadType::None,
                payload: Bytes::from(payload::to_json(&cc)),
            };
            self.final_frame = Some(m.encode());
        }
        self.closed = true;
        self.events.push_back(Event::Closed {
            reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
        });
    }

    fn fail(&mut self, e: Error) -> Error {
        if self.error.is_none() {
            self.error = Some(e.clone());
            let was_closed = self.closed;
            self.closed = true;
            if !was_closed {
                self.events.push_back(Event::Closed {
                    reason: Some(e.chain()),
                });
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_cut_never_splits() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(utf8_cut(s, 100), s.len());
        assert_eq!(utf8_cut(s, 1), 1);
        assert_eq!(utf8_cut(s, 2), 1); // would split é
        assert_eq!(utf8_cut(s, 3), 3);
        assert_eq!(utf8_cut(s, 4), 3); // would split €
        assert_eq!(utf8_cut(s, 5), 3);
        assert_eq!(utf8_cut(s, 6), 6);
        assert_eq!(utf8_cut(s, 8), 6);
        assert_eq!(utf8_cut(s, 9), 6);
        // Invalid bytes are cut anywhere.
        assert_eq!(utf8_cut(&[0xff; 10], 4), 4);
        // A lone lead byte at the very start is not an infinite loop.
        assert_eq!(utf8_cut(&[0xF0, b'a', b'b', b'c', b'd'], 1), 1);
    }
}
