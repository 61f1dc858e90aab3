//! Channel errors, grouped by fault: malformed bytes from the peer, a peer that broke
//! the protocol, caller misuse, and local limits.

use crate::config::Role;
use crate::crypto::CryptoError;
use crate::message::{DecodeError, PayloadType};
use crate::payload::PayloadError;

/// An error from a [`Channel`](crate::Channel) call.
///
/// Fatal errors ([`Error::is_fatal`]) close the channel and are returned again by
/// every later call (sticky). Other errors leave the channel usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent a frame that does not decode. The frame was dropped without an
    /// acknowledgement, so the peer will resend it. Not fatal.
    #[error("malformed frame from peer")]
    Malformed(#[source] DecodeError),
    /// The peer sent a payload that does not parse. Fatal for handshake payloads
    /// (types 5 to 9); otherwise the message was consumed and the channel goes on.
    #[error("invalid {payload_type} payload from peer")]
    InvalidPayload {
        /// Payload type of the offending message.
        payload_type: PayloadType,
        /// What was wrong.
        #[source]
        source: PayloadError,
    },
    /// The peer broke the protocol. Fatal.
    #[error("peer broke the protocol")]
    PeerMisbehaved(#[source] PeerMisbehaved),
    /// The oldest unacknowledged message hit the resend limit. Fatal.
    #[error("message {sequence_number} was not acknowledged after {resends} resends")]
    ResendLimit {
        /// Its sequence number.
        sequence_number: i64,
        /// Resends made.
        resends: u32,
    },
    /// The caller used the API wrongly. Not fatal.
    #[error("API misuse")]
    Misuse(#[source] Misuse),
    /// The send window is full; retry after [`Event::SendWindowOpen`](crate::Event).
    /// Not fatal.
    #[error("send window is full")]
    SendWindowFull,
    /// The channel was closed normally; nothing more can be sent.
    #[error("the channel is closed")]
    Closed,
}

impl Error {
    /// Whether this error ended the channel.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::PeerMisbehaved(_) | Error::ResendLimit { .. } => true,
            Error::InvalidPayload { payload_type, .. } => matches!(
                payload_type,
                PayloadType::HandshakeRequest
                    | PayloadType::HandshakeResponse
                    | PayloadType::HandshakeComplete
                    | PayloadType::EncChallengeRequest
                    | PayloadType::EncChallengeResponse
            ),
            _ => false,
        }
    }

    /// The error and all its sources, joined with `": "`.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    }
}

/// Ways a peer can break the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// HandshakeComplete arrived but no session type was agreed.
    #[error("handshake completed without a session type")]
    NoSessionType,
    /// The client rejected one or more handshake actions.
    #[error("handshake failed: {}", errors.join("; "))]
    HandshakeFailed {
        /// Error texts from the response.
        errors: Vec<String>,
    },
    /// The handshake response does not answer the requested actions.
    #[error("handshake response has {got} actions, {expected} were requested")]
    HandshakeActionCount {
        /// Requested.
        expected: usize,
        /// Answered.
        got: usize,
    },
    /// An encryption challenge arrived but no data key is in place.
    #[error("encryption challenge without an agreed data key")]
    ChallengeWithoutKey,
    /// The challenge answer did not match.
    #[error("encryption challenge answer does not match")]
    ChallengeMismatch,
    /// Encrypted data could not be decrypted.
    #[error("could not decrypt a {0} payload: {1}")]
    Decrypt(PayloadType, CryptoError),
    /// A handshake message arrived when none was expected.
    #[error("unexpected {0} message")]
    Unexpected(PayloadType),
}

/// Ways a caller can misuse the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// The method belongs to the other role.
    #[error("{method} is not available in the {role:?} role")]
    WrongRole {
        /// Method name.
        method: &'static str,
        /// This channel's role.
        role: Role,
    },
    /// No data key was asked for.
    #[error("no data key was requested")]
    NoDataKeyRequested,
    /// The data key is unusable.
    #[error("unusable data key: {0}")]
    DataKey(CryptoError),
    /// The handshake must come before any stream data and only once.
    #[error("handshake can only start once, before any stream data")]
    HandshakeTooLate,
}
