//! What the client side of a channel costs per message received: decode
//! (digest check included), sequencing, the output event, and the
//! acknowledgement it sends back, for 1 KiB output messages (the agent's
//! default chunk size).
//!
//! `cargo bench -p ssm-channel --bench channel -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use ssm_channel::{
    Channel, ChannelConfig, Event, Frame, PayloadType, SeededIds, SteppingClock, Token, Transmit,
    Uuid,
};

const T0_MS: u64 = 1_718_000_000_000;

fn client() -> Channel {
    Channel::new(ChannelConfig::client(
        "1.2.0.0",
        Box::new(SeededIds::new(1)),
        Box::new(SteppingClock::new(T0_MS, 1)),
    ))
}

fn agent() -> Channel {
    Channel::new(ChannelConfig::agent(
        Box::new(SeededIds::new(2)),
        Box::new(SteppingClock::new(T0_MS, 1)),
    ))
}

fn feed(to: &mut Channel, now: Instant, t: &Transmit) {
    let r = match t {
        Transmit::Text(s) => to.handle_incoming(now, Frame::Text(s)),
        Transmit::Binary(b) => to.handle_incoming_bytes(now, b.clone()),
    };
    r.expect("a frame of our own agent");
}

/// Moves everything `from` has to send into `to`.
fn pump(from: &mut Channel, to: &mut Channel, now: Instant) {
    while let Some(t) = from.poll_transmit(now) {
        feed(to, now, &t);
    }
}

/// A client and an agent with an open channel (no handshake: plain shell).
fn pair(now: Instant) -> (Channel, Channel) {
    let (mut c, mut a) = (client(), agent());
    c.open(now, Token::new("tok"), Uuid::nil(), Uuid::nil())
        .expect("open");
    pump(&mut c, &mut a, now);
    while a.poll_event().is_some() {}
    (c, a)
}

/// The next `n` output frames of `agent`, each with `size` bytes of payload
/// (at most the agent's chunk size).
/// The agent's window is kept open by acknowledging on the client's behalf
/// (a separate client, so the measured one sees each frame for the first time).
fn frames(
    agent: &mut Channel,
    acker: &mut Channel,
    now: Instant,
    n: usize,
    size: usize,
) -> Vec<Bytes> {
    let payload = vec![b'x'; size];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        agent
            .send_output(now, PayloadType::Output, &payload)
            .expect("send_output");
        while let Some(t) = agent.poll_transmit(now) {
            if let Transmit::Binary(b) = &t {
                out.push(b.clone());
            }
            feed(acker, now, &t);
        }
        while acker.poll_event().is_some() {}
        pump(acker, agent, now);
    }
    out
}

fn bench(c: &mut Criterion) {
    const SIZE: usize = 1024;
    let mut g = c.benchmark_group("client_receive_1KiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("decode_deliver_ack", |b| {
        b.iter_custom(|iters| {
            let now = Instant::now();
            let (mut measured, mut a) = pair(now);
            let (mut acker, _) = pair(now);
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(4096);
                let batch = frames(&mut a, &mut acker, now, n, SIZE);
                let t = Instant::now();
                for f in batch {
                    measured
                        .handle_incoming_bytes(now, f)
                        .expect("in-order frame");
                    while let Some(ev) = measured.poll_event() {
                        black_box(matches!(ev, Event::Output(_)));
                    }
                    while let Some(t) = measured.poll_transmit(now) {
                        black_box(&t);
                    }
                }
                total += t.elapsed();
                left -= n;
            }
            total
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
