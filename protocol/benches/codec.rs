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

fn time_batch(n: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Interleaved batches (SHA-256, encode, decode back to back) so that load changes on
/// a shared machine hit all three alike; reports medians of per-batch figures.
fn ratios() {
    println!(
        "\ncodec throughput relative to SHA-256 of the payload (median of 31 interleaved batches):"
    );
    for (size, name) in SIZES {
        let m = message(size);
        let frame = m.encode();
        let mut buf = Vec::with_capacity(m.encoded_len());
        let n = (2_000_000 / size as u32).max(50);
        let (mut sha, mut enc, mut dec, mut r_enc, mut r_dec) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..31 {
            let s = time_batch(n, || {
                black_box(Sha256::digest(black_box(&m.payload[..])));
            });
            let e = time_batch(n, || {
                buf.clear();
                black_box(&m).encode_into(&mut buf);
                black_box(buf.len());
            });
            let d = time_batch(n, || {
                let _ = black_box(Message::decode_bytes(black_box(frame.clone())));
            });
            let gbps = |d: Duration| size as f64 / d.as_secs_f64() / 1e9;
            sha.push(gbps(s));
            enc.push(gbps(e));
            dec.push(gbps(d));
            r_enc.push(s.as_secs_f64() / e.as_secs_f64());
            r_dec.push(s.as_secs_f64() / d.as_secs_f64());
        }
        println!(
            "  {name:>6}: sha256 {:.2} GB/s | encode_into {:.2} GB/s, ratio {:.0}% | decode_bytes {:.2} GB/s, ratio {:.0}%",
            median(sha),
            median(enc),
            100.0 * median(r_enc),
            median(dec),
            100.0 * median(r_dec),
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    ratios();
}
