//! Channel configuration and the caller-supplied sources of ids, randomness and
//! wall-clock time.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

/// Which end of the data channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The client (what `session-manager-plugin` does): sends `input_stream_data`.
    Client,
    /// The agent (the target side; the emulator's gateway): sends `output_stream_data`.
    Agent,
}

/// Source of message ids and random bytes (AES-GCM nonces, challenges).
///
/// The crate never draws randomness itself. Production callers supply a
/// cryptographically secure source (e.g. UUID v4 from the OS generator); tests use
/// [`SeededIds`].
pub trait IdSource: Send {
    /// A fresh message id.
    fn next_id(&mut self) -> Uuid;
    /// Fills `buf` with random bytes.
    fn fill_random(&mut self, buf: &mut [u8]);
}

/// Source of the wall-clock time written into `CreatedDate`.
pub trait WallClock: Send {
    /// Milliseconds since the Unix epoch. Must not be 0 (peers reject it).
    fn now_millis(&mut self) -> u64;
}

/// Deterministic, **not cryptographically secure** id and byte source (SplitMix64).
/// Meant for tests and simulations only.
#[derive(Debug, Clone)]
pub struct SeededIds {
    state: u64,
}

impl SeededIds {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> SeededIds {
        SeededIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl IdSource for SeededIds {
    fn next_id(&mut self) -> Uuid {
        let mut b = [0u8; 16];
        self.fill_random(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A wall clock that starts at a fixed time and advances by `step_ms` per reading.
/// Deterministic; for tests and simulations.
#[derive(Debug, Clone)]
pub struct SteppingClock {
    now_ms: u64,
    step_ms: u64,
}

impl SteppingClock {
    /// Starts at `start_ms` (must be non-zero) and adds `step_ms` after every reading.
    pub fn new(start_ms: u64, step_ms: u64) -> SteppingClock {
        SteppingClock {
            now_ms: start_ms.max(1),
            step_ms,
        }
    }
}

impl WallClock for SteppingClock {
    fn now_millis(&mut self) -> u64 {
        let t = self.now_ms;
        self.now_ms = self.now_ms.saturating_add(self.step_ms);
        t
    }
}

/// Configuration of a [`Channel`](crate::Channel).
pub struct ChannelConfig {
    /// Client or agent.
    pub role: Role,
    /// Version reported in the open frame and the handshake response (client), four
    /// dotted numbers. Note: ≥ 1.1.70 commits a client to smux in port sessions.
    pub client_version: String,
    /// Message ids and random bytes.
    pub ids: Box<dyn IdSource>,
    /// `CreatedDate` source.
    pub wall_clock: Box<dyn WallClock>,
    /// Initial smoothed RTT (100 ms).
    pub initial_rtt: Duration,
    /// Initial retransmission timeout (200 ms).
    pub initial_rto: Duration,
    /// Lower bound of the RTO (10 ms).
    pub min_rto: Duration,
    /// Upper bound of the RTO, also the cap of the resend back-off (1 s).
    pub max_rto: Duration,
    /// Double the timeout for each further resend of the same message (capped at
    /// `max_rto`). Default true.
    pub backoff: bool,
    /// Resends of one message before the channel fails (300: about 5 minutes at the
    /// 1 s cap).
    pub max_resends: u32,
    /// Send window: stream messages queued or in flight (256).
    pub max_unacked_messages: usize,
    /// Send window: payload bytes queued or in flight (256 KiB).
    pub max_unacked_bytes: usize,
    /// Early (out-of-order) messages held until the gap fills (1024).
    pub max_out_of_order: usize,
    /// Largest stream payload before encryption (1024).
    pub chunk_size: usize,
    /// Rewrite a payload that is exactly `\n` to `\r`, like the reference client.
    /// Default false (raw mode already sends CR).
    pub rewrite_lone_lf: bool,
    /// Hold new stream data and resends between `pause_publication` and
    /// `start_publication`. Default true.
    pub honour_pause: bool,
    /// Session id written into `channel_closed` by the agent role.
    pub session_id: String,
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("role", &self.role)
            .field("client_version", &self.client_version)
            .field("initial_rtt", &self.initial_rtt)
            .field("initial_rto", &self.initial_rto)
            .field("min_rto", &self.min_rto)
            .field("max_rto", &self.max_rto)
            .field("backoff", &self.backoff)
            .field("max_resends", &self.max_resends)
            .field("max_unacked_messages", &self.max_unacked_messages)
            .field("max_unacked_bytes", &self.max_unacked_bytes)
            .field("max_out_of_order", &self.max_out_of_order)
            .field("chunk_size", &self.chunk_size)
            .field("rewrite_lone_lf", &self.rewrite_lone_lf)
            .field("honour_pause", &self.honour_pause)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl ChannelConfig {
    fn base(
        role: Role,
        client_version: String,
        ids: Box<dyn IdSource>,
        wall_clock: Box<dyn WallClock>,
    ) -> ChannelConfig {
        ChannelConfig {
            role,
            client_version,
            ids,
            wall_clock,
            initial_rtt: Duration::from_millis(100),
            initial_rto: Duration::from_millis(200),
            min_rto: Duration::from_millis(10),
            max_rto: Duration::from_secs(1),
            backoff: true,
            max_resends: 300,
            max_unacked_messages: 256,
            max_unacked_bytes: 256 * 1024,
            max_out_of_order: 1024,
            chunk_size: 1024,
            rewrite_lone_lf: false,
            honour_pause: true,
            session_id: String::new(),
        }
    }

    /// Client defaults.
    pub fn client(
        client_version: impl Into<String>,
        ids: Box<dyn IdSource>,
        wall_clock: Box<dyn WallClock>,
    ) -> ChannelConfig {
        Self::base(Role::Client, client_version.into(), ids, wall_clock)
    }

    /// Agent defaults.
    pub fn agent(ids: Box<dyn IdSource>, wall_clock: Box<dyn WallClock>) -> ChannelConfig {
        Self::base(Role::Agent, String::new(), ids, wall_clock)
    }
}
