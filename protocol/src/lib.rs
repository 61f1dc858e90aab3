//! Sans-IO implementation of the AWS Session Manager data channel: the WebSocket
//! protocol between a Session Manager client (what `session-manager-plugin` does), the
//! service, and the SSM agent.
//!
//! - [`message`]: the 120-byte-header binary frame codec (digest, UUID byte order,
//!   short `channel_closed` headers).
//! - [`payload`]: typed payloads (open-data-channel frame, acks, handshake, size, flag,
//!   exit code, `channel_closed`).
//! - [`smux`]: smux v1 framing for multiplexed port forwarding.
//! - [`version`]: agent versions and the behaviours that depend on them.
//! - [`Channel`]: the state machine for both roles: sequencing, acknowledgements,
//!   in-order exactly-once delivery, retransmission with a Jacobson/Karels RTO,
//!   handshake, KMS encryption, publication pause/resume, bounded send window.
//!
//! The crate does no I/O and reads no clock or random source: the caller feeds frames
//! and `Instant`s in and takes frames, deadlines and events out, in the style of
//! `quinn-proto`. Message ids, random bytes and `CreatedDate` timestamps come from the
//! [`IdSource`] and [`WallClock`] in the [`ChannelConfig`].
//!
//! # Driving a client channel
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ssm_channel::{
//!     Channel, ChannelConfig, Event, Frame, SeededIds, SteppingClock, Token, Transmit,
//! };
//! use uuid::Uuid;
//!
//! // Production code passes a secure id source and the system clock.
//! let config = ChannelConfig::client(
//!     "1.2.0.0",
//!     Box::new(SeededIds::new(1)),
//!     Box::new(SteppingClock::new(1_718_000_000_000, 1)),
//! );
//! let mut client = Channel::new(config);
//! let start = Instant::now();
//! client
//!     .open(start, Token::new("token from CreateSession"), Uuid::nil(), Uuid::nil())
//!     .unwrap();
//!
//! // A stand-in for the socket: frames the "agent" sends us.
//! let mut agent = Channel::new(ssm_channel::ChannelConfig::agent(
//!     Box::new(SeededIds::new(2)),
//!     Box::new(SteppingClock::new(1_718_000_000_000, 1)),
//! ));
//!
//! let mut now = start;
//! let mut output = Vec::new();
//! let mut sent_input = false;
//! for _ in 0..100 {
//!     // 1. Write everything the channel wants to send.
//!     while let Some(t) = client.poll_transmit(now) {
//!         match t {
//!             Transmit::Text(s) => agent.handle_incoming(now, Frame::Text(&s)).unwrap(),
//!             Transmit::Binary(b) => agent.handle_incoming(now, Frame::Binary(&b)).unwrap(),
//!         }
//!     }
//!     // (the fake agent echoes input and answers)
//!     while let Some(e) = agent.poll_event() {
//!         match e {
//!             Event::Opened(_) => {
//!                 agent.send_output(now, ssm_channel::PayloadType::Output, b"$ ").unwrap();
//!             }
//!             Event::Input(b) => {
//!                 agent.send_output(now, ssm_channel::PayloadType::Output, &b).unwrap();
//!                 agent.close(now);
//!             }
//!             _ => {}
//!         }
//!     }
//!     while let Some(Transmit::Binary(b)) = agent.poll_transmit(now) {
//!         // 2. Feed every received frame in.
//!         client.handle_incoming(now, Frame::Binary(&b)).unwrap();
//!     }
//!     // 3. Handle events.
//!     while let Some(e) = client.poll_event() {
//!         match e {
//!             Event::Ready { .. } if !sent_input => {
//!                 client.send_input(now, b"ls\r").unwrap();
//!                 sent_input = true;
//!             }
//!             Event::Output(b) => output.extend_from_slice(&b),
//!             _ => {}
//!         }
//!     }
//!     if client.is_closed() {
//!         break;
//!     }
//!     // 4. Sleep until the next deadline (a real driver selects on socket and timer).
//!     now = client.poll_timeout().unwrap_or(now + Duration::from_millis(10));
//!     client.handle_timeout(now);
//! }
//! assert_eq!(output, b"$ ls\r");
//! assert!(client.is_closed());
//! ```
#![forbid(unsafe_code)]

pub mod channel;
pub mod config;
pub mod crypto;
pub mod error;
pub mod message;
pub mod payload;
pub mod rtt;
pub mod smux;
pub mod version;

/// Re-exported so callers use the same `Bytes` and `Uuid` types.
pub use bytes::Bytes;
pub use channel::{CONTROL_HEADROOM, Channel, Event, Frame, Stats, Transmit};
pub use config::{ChannelConfig, IdSource, Role, SeededIds, SteppingClock, WallClock};
pub use error::{Error, Misuse, PeerMisbehaved};
pub use message::{DecodeError, Message, MessageType, PayloadType, is_acknowledge_frame};
pub use payload::{HandshakeRequest, HandshakeResponse, OpenDataChannel, Token};
pub use uuid::Uuid;
