//! Codec throughput against plain SHA-256 of the same payload (the digest is the
//! floor: every encode and decode hashes the payload once).
//!
//! `cargo bench -p ssm-channel --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use sha2::{Digest, Sha256};
use ssm_channel::{Message, MessageType, PayloadType, Uuid};

fn message(size: usize) -> Message {
    Message {
        message_type: MessageType::OutputStreamData,
        header_length: 116,
        schema_version: 1,
        created_date: 1_718_000_000_000,
        sequence_number: 42,
        flags: 0,
        message_id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        payload_type: PayloadType::Output,
        payload: Bytes::from((0..size).map(|i| (i * 31) as u8).collect::<Vec<u8>>()),
    }
}

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (16 * 1024, "16KiB")];

fn bench(c: &mut Criterion) {
    for (size, name) in SIZES {
        let m = message(size);
        let frame = m.encode();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("sha256", |b| {
            b.iter(|| Sha256::digest(black_box(&m.payload[..])))
        });
        let mut buf = Vec::with_capacity(m.encoded_len());
        g.bench_function("encode_into", |b| {
            b.iter(|| {
                buf.clear();
                black_box(&m).encode_into(&mut buf);
                black_box(buf.len())
            })
        });
        g.bench_function("encode", |b| b.iter(|| black_box(&m).encode()));
        g.bench_function("decode_bytes", |b| {
            b.iter(|| Message::decode_bytes(black_box(frame.clone())).map(|m| m.payload.len()))
        });
        g.bench_function("decode_copy", |b| {
            b.iter(|| Message::decode(black_box(&frame[..])).map(|m| m.payload.len()))
        });
        g.finish();
    }
}

/// Median time per call over several timed batches.
fn per_call(mut f: impl FnMut()) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..15 {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        samples.push(t.elapsed() / n);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn ratios() {
    println!("\ncodec throughput relative to SHA-256 of the payload (median of 15 batches):");
    for (size, name) in SIZES {
        let m = message(size);
        let frame = m.encode();
        let mut buf = Vec::with_capacity(m.encoded_len());
        let sha = per_call(|| {
            black_box(Sha256::digest(black_box(&m.payload[..])));
        });
        let enc = per_call(|| {
            buf.clear();
            black_box(&m).encode_into(&mut buf);
            black_box(buf.len());
        });
        let dec = per_call(|| {
            let _ = black_box(Message::decode_bytes(black_box(frame.clone())));
        });
        let gbps = |d: Duration| size as f64 / d.as_secs_f64() / 1e9;
        println!(
            "  {name:>6}: sha256 {:.2} GB/s | encode_into {:.2} GB/s = {:.0}% | decode_bytes {:.2} GB/s = {:.0}%",
            gbps(sha),
            gbps(enc),
            100.0 * sha.as_secs_f64() / enc.as_secs_f64(),
            gbps(dec),
            100.0 * sha.as_secs_f64() / dec.as_secs_f64(),
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    ratios();
}
