//! Per-session traffic counters, readable while the session runs.

use std::sync::atomic::{AtomicU64, Ordering};

use super::faults::FaultCounters;

/// A snapshot of one session's counters. "In" is client → gateway, "out" is
/// gateway → client; frames and bytes are counted on the wire (after fault
/// injection on the way out, before it on the way in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionMetrics {
    /// Session id.
    pub session_id: String,
    /// WebSocket connections accepted for this session (reconnects included).
    pub connections: u64,
    /// Binary frames received.
    pub frames_in: u64,
    /// Bytes of binary frames received.
    pub bytes_in: u64,
    /// Binary frames sent.
    pub frames_out: u64,
    /// Bytes of binary frames sent.
    pub bytes_out: u64,
    /// `input_stream_data` messages received whose sequence number had already
    /// been seen (client retransmissions and duplicates).
    pub duplicates_in: u64,
    /// `output_stream_data` messages sent again (retransmissions).
    pub resends_out: u64,
    /// Acks received.
    pub acks_in: u64,
    /// Acks sent.
    pub acks_out: u64,
    /// Input payload bytes delivered to the program (each sequence number once).
    pub input_bytes: u64,
    /// Output payload bytes handed to the channel.
    pub output_bytes: u64,
    /// Frames that failed to decode.
    pub malformed_in: u64,
    /// What fault injection did.
    pub faults: FaultCounters,
}

/// Live counters shared between the session task and the handle.
#[derive(Debug, Default)]
pub(crate) struct LiveMetrics {
    pub connections: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub duplicates_in: AtomicU64,
    pub resends_out: AtomicU64,
    pub acks_in: AtomicU64,
    pub acks_out: AtomicU64,
    pub input_bytes: AtomicU64,
    pub output_bytes: AtomicU64,
    pub malformed_in: AtomicU64,
    pub faults: std::sync::Mutex<FaultCounters>,
}

impl LiveMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, session_id: &str) -> SessionMetrics {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SessionMetrics {
            session_id: session_id.to_string(),
            connections: g(&self.connections),
            frames_in: g(&self.frames_in),
            bytes_in: g(&self.bytes_in),
            frames_out: g(&self.frames_out),
            bytes_out: g(&self.bytes_out),
            duplicates_in: g(&self.duplicates_in),
            resends_out: g(&self.resends_out),
            acks_in: g(&self.acks_in),
            acks_out: g(&self.acks_out),
            input_bytes: g(&self.input_bytes),
            output_bytes: g(&self.output_bytes),
            malformed_in: g(&self.malformed_in),
            faults: *self
                .faults
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }
}
