//! What a replacement session resends: exactly the input the old channel had
//! not had acknowledged, in order.

use std::time::{Duration, Instant};

use ssm_channel::{
    Channel, ChannelConfig, Event, Frame, PayloadType, SeededIds, SteppingClock, Token, Transmit,
    Uuid,
};

fn pair() -> (Channel, Channel) {
    let client = Channel::new(ChannelConfig::client(
        "1.2.677.0",
        Box::new(SeededIds::new(1)),
        Box::new(SteppingClock::new(1_718_000_000_000, 1)),
    ));
    let agent = Channel::new(ChannelConfig::agent(
        Box::new(SeededIds::new(2)),
        Box::new(SteppingClock::new(1_718_000_000_000, 1)),
    ));
    (client, agent)
}

fn binaries(ch: &mut Channel, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(t) = ch.poll_transmit(now) {
        if let Transmit::Binary(b) = t {
            out.push(b.to_vec());
        }
    }
    out
}

#[test]
fn unacked_input_is_exactly_what_the_agent_did_not_acknowledge() {
    let now = Instant::now();
    let (mut client, mut agent) = pair();
    client
        .open(now, Token::new("t"), Uuid::nil(), Uuid::nil())
        .unwrap();
    while let Some(t) = client.poll_transmit(now) {
        if let Transmit::Text(s) = t {
            agent.handle_incoming(now, Frame::Text(&s)).unwrap();
        }
    }
    // The agent's first output makes the client ready.
    agent.send_output(now, PayloadType::Output, b"$ ").unwrap();
    for f in binaries(&mut agent, now) {
        client.handle_incoming(now, Frame::Binary(&f)).unwrap();
    }
    assert!(matches!(client.poll_event(), Some(Event::Ready { .. })));
    for f in binaries(&mut client, now) {
        agent.handle_incoming(now, Frame::Binary(&f)).unwrap(); // acks of "$ "
    }

    // Five keystroke messages; only the first two reach the agent.
    for k in [b"a", b"b", b"c", b"d", b"e"] {
        assert_eq!(client.send_input(now, k).unwrap(), 1);
    }
    let sent = binaries(&mut client, now);
    assert_eq!(sent.len(), 5);
    for f in &sent[..2] {
        agent.handle_incoming(now, Frame::Binary(f)).unwrap();
    }
    // Its acks come back.
    for f in binaries(&mut agent, now) {
        client.handle_incoming(now, Frame::Binary(&f)).unwrap();
    }
    let unacked: Vec<u8> = client.unacked_input().concat();
    assert_eq!(unacked, b"cde");

    // Resends do not change the set; a late ack for "d" removes only "d".
    client.handle_timeout(now + Duration::from_secs(2));
    let resent = binaries(&mut client, now + Duration::from_secs(2));
    assert!(!resent.is_empty());
    agent.handle_incoming(now, Frame::Binary(&sent[3])).unwrap();
    for f in binaries(&mut agent, now) {
        client.handle_incoming(now, Frame::Binary(&f)).unwrap();
    }
    assert_eq!(client.unacked_input().concat(), b"ce");
}

#[test]
fn input_queued_before_ready_counts_as_unacknowledged() {
    let now = Instant::now();
    let (mut client, _) = pair();
    client
        .open(now, Token::new("t"), Uuid::nil(), Uuid::nil())
        .unwrap();
    client.send_input(now, b"early").unwrap();
    client.send_resize(now, 80, 24).ok();
    assert_eq!(client.unacked_input().concat(), b"early");
}
