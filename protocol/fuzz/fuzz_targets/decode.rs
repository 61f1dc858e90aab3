//! Decoder fuzz target: decoding arbitrary bytes never panics; whatever decodes
//! re-encodes to a frame that decodes to the same message; a channel of either role
//! fed the bytes never panics.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ssm_channel::{Channel, ChannelConfig, Frame, Message, SeededIds, SteppingClock, Token};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode()).expect("re-encoded frame must decode");
        assert_eq!(again, m);
        let z = Message::decode_bytes(bytes::Bytes::copy_from_slice(data)).expect("zero-copy");
        assert_eq!(z, m);
    }
    let now = Instant::now();
    let mut client = Channel::new(ChannelConfig::client(
        "1.0.0.0",
        Box::new(SeededIds::new(1)),
        Box::new(SteppingClock::new(1, 1)),
    ));
    let _ = client.open(now, Token::new("t"), uuid_nil(), uuid_nil());
    let _ = client.handle_incoming(now, Frame::Binary(data));
    while client.poll_transmit(now).is_some() {}
    let mut agent = Channel::new(ChannelConfig::agent(
        Box::new(SeededIds::new(2)),
        Box::new(SteppingClock::new(1, 1)),
    ));
    let _ = agent.handle_incoming(now, Frame::Binary(data));
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = agent.handle_incoming(now, Frame::Text(s));
    }
});

fn uuid_nil() -> ssm_channel::Uuid {
    ssm_channel::Uuid::nil()
}
