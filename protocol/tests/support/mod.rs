//! Shared helpers for the channel tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use ssm_channel::{
    Channel, ChannelConfig, Event, Frame, Message, SeededIds, SteppingClock, Transmit,
};

pub const T0_MS: u64 = 1_718_000_000_000;

pub fn client_config(seed: u64) -> ChannelConfig {
    ChannelConfig::client(
        "1.2.0.0",
        Box::new(SeededIds::new(seed)),
        Box::new(SteppingClock::new(T0_MS, 1)),
    )
}

pub fn agent_config(seed: u64) -> ChannelConfig {
    ChannelConfig::agent(
        Box::new(SeededIds::new(seed)),
        Box::new(SteppingClock::new(T0_MS, 1)),
    )
}

pub fn client(seed: u64) -> Channel {
    Channel::new(client_config(seed))
}

pub fn agent(seed: u64) -> Channel {
    Channel::new(agent_config(seed))
}

pub fn drain_transmits(ch: &mut Channel, now: Instant) -> Vec<Transmit> {
    let mut v = Vec::new();
    while let Some(t) = ch.poll_transmit(now) {
        v.push(t);
    }
    v
}

pub fn drain_events(ch: &mut Channel) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = ch.poll_event() {
        v.push(e);
    }
    v
}

pub fn feed(ch: &mut Channel, now: Instant, t: &Transmit) {
    match t {
        Transmit::Text(s) => ch.handle_incoming(now, Frame::Text(s)).unwrap(),
        Transmit::Binary(b) => ch.handle_incoming(now, Frame::Binary(b)).unwrap(),
    }
}

pub fn decode(t: &Transmit) -> Message {
    match t {
        Transmit::Binary(b) => Message::decode(b).unwrap(),
        Transmit::Text(_) => panic!("text frame"),
    }
}

/// Moves every pending frame from `from` to `to` (lossless), returns how many.
pub fn pump(from: &mut Channel, to: &mut Channel, now: Instant) -> usize {
    let ts = drain_transmits(from, now);
    for t in &ts {
        feed(to, now, t);
    }
    ts.len()
}

pub fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/plugin-captures")
}

pub fn capture(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(captures_dir().join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn record_bytes(r: &serde_json::Value) -> Vec<u8> {
    hex::decode(r["hex"].as_str().unwrap()).unwrap()
}
