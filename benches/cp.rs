//! End-to-end benchmark of `cloudshell-rs cp`.
//!
//! 1. Against an emulator in its own process (`cloudshell-rs emulator --port 0`),
//!    so only the client process is measured: a `CP_BENCH_MIB` MiB file
//!    (default 100) is uploaded and downloaded with each transport. For each
//!    copy: wall time, MB/s (10^6 bytes per second), the client's CPU seconds
//!    (user + system, from wait4) per MiB, its peak RSS, and the data-channel
//!    payload it moved (from the JSON report of `--output json`) per file byte.
//! 2. Wire overhead: the same copies through an emulator inside this process,
//!    whose counters give the bytes of every WebSocket binary frame in both
//!    directions (SSM headers, acks and retransmissions included) per file byte.
//!
//! 3. Many small files: 20 files of 1 KiB into a directory with one `cp`
//!    (one session), against one `cp` per file (a session each), five runs
//!    of each, alternating; then the same files back down both ways.
//!
//! Every copy is checked: the SHA-256 reported must equal the file's.
//! Run with `cargo bench --bench cp`. Only loopback traffic is involved.

#![allow(unsafe_code)] // wait4(2) for per-child resource usage
#![allow(clippy::unwrap_used)]

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;
use support::{BIN, Emulator, wait_rusage};

struct Run {
    wall: Duration,
    cpu: f64,
    rss_kib: i64,
    report: serde_json::Value,
}

/// Runs a `cp` with `--output json`: wall time, CPU, peak RSS and its report.
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_rusage
fn run(mut cmd: Command) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let usage = wait_rusage(&child);
    let (code, cpu, rss_kib) = (usage.code, usage.cpu_secs, usage.max_rss_kib);
    let wall = start.elapsed();
    let text = reader.join().expect("reader");
    assert_eq!(code, 0, "command failed: {cmd:?}");
    let report = serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null);
    Run {
        wall,
        cpu,
        rss_kib,
        report,
    }
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A file of `len` pseudo-random bytes (incompressible, all byte values).
fn make_file(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = len;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

fn print_run(what: &str, r: &Run, size: u64, want_sha: &str) {
    assert_eq!(r.report["Sha256"], want_sha, "{what}: hash");
    assert_eq!(r.report["Bytes"], size, "{what}: size");
    let mib = size as f64 / (1024.0 * 1024.0);
    let payload = r.report["ChannelBytesSent"].as_u64().unwrap_or(0)
        + r.report["ChannelBytesReceived"].as_u64().unwrap_or(0);
    println!(
        "{what:<22} {:>7.2} s {:>7.1} MB/s  CPU {:>6.4} s/MiB  peak RSS {:>6.1} MiB  data-channel payload {:.3} x file",
        r.wall.as_secs_f64(),
        size as f64 / 1e6 / r.wall.as_secs_f64(),
        r.cpu / mib,
        r.rss_kib as f64 / 1024.0,
        payload as f64 / size as f64,
    );
}

/// Part 2: wire bytes per file byte from the emulator's own counters.
fn wire_overhead(file: &Path, size: u64, want_sha: &str) {
    use cloudshell_rs::transfer::{self, TransferOptions, Transport};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, Timings};
        let state = tempfile::tempdir().unwrap();
        let config = EmulatorConfig::new(state.path())
            .with_credentials(AcceptedCredentials::new("AKIDCPBENCH", "cp-bench-secret"))
            .with_timings(Timings::instant())
            .with_region("us-east-1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emu = Emulator::start(config, listener).await.unwrap();
        let (client, env) = support::client_and_default_env(
            &emu.endpoint(),
            "AKIDCPBENCH",
            "cp-bench-secret",
        )
        .await;
        let back_dir = tempfile::tempdir().unwrap();
        for t in [Transport::InBand, Transport::S3] {
            let o = TransferOptions::new().transport(t);
            let name = format!("wire-{t}.bin");
            let up = transfer::upload(&client, &env, file, &name, &o).await.unwrap();
            let back: PathBuf = back_dir.path().join(&name);
            let down = transfer::download(&client, &env, &name, &back, &o)
                .await
                .unwrap();
            assert_eq!(up.sha256, want_sha);
            assert_eq!(down.sha256, want_sha);
            for (dir, r) in [("upload", &up), ("download", &down)] {
                let (mut inb, mut out) = (0u64, 0u64);
                for id in &r.session_ids {
                    let m = emu.gateway().session_metrics(id).unwrap();
                    inb += m.bytes_in;
                    out += m.bytes_out;
                }
                println!(
                    "wire {t:<7} {dir:<8}  client->gateway {inb:>11} B  gateway->client {out:>11} B  = {:.3} x file bytes on the data channel{}",
                    (inb + out) as f64 / size as f64,
                    if t == Transport::S3 {
                        format!(" (+ {} B of file data over HTTP)", r.http_bytes)
                    } else {
                        String::new()
                    }
                );
            }
            std::fs::remove_file(&back).unwrap();
            std::fs::remove_file(emu.gateway().home_dir(&env).join(&name)).unwrap();
        }
        emu.shutdown().await;
    });
}

fn main() {
    let mib: u64 = std::env::var("CP_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let size = mib * 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().to_path_buf();
    let file = home.join("payload.bin");
    make_file(&file, size);
    let want = sha256_file(&file);
    let emu = Emulator::start(&home);
    println!("binary: {BIN}");
    println!(
        "emulator: {} (separate process); file: {mib} MiB ({size} bytes), sha256 {want}",
        emu.endpoint
    );
    // The default environment is created (and waited for) before anything
    // is timed: the first copy would otherwise include its creation.
    let mut c = emu.client(&home);
    c.args(["exec", "--", "true"]);
    assert!(c.status().unwrap().success());
    for (via, label) in [("in-band", "in-band"), ("s3", "s3")] {
        let remote = format!(":bench-{via}.bin");
        let mut c = emu.client(&home);
        c.args(["--output", "json", "cp", "-q", "--via", via])
            .arg(&file)
            .arg(&remote);
        let r = run(c);
        print_run(&format!("upload   {label}"), &r, size, &want);
        let back = home.join(format!("back-{via}.bin"));
        let mut c = emu.client(&home);
        c.args(["--output", "json", "cp", "-q", "--via", via, &remote])
            .arg(&back);
        let r = run(c);
        print_run(&format!("download {label}"), &r, size, &want);
        assert_eq!(sha256_file(&back), want);
        std::fs::remove_file(&back).unwrap();
    }
    small_files(&emu, &home);
    drop(emu);
    wire_overhead(&file, size, &want);
}

/// 20 files of 1 KiB into a remote directory: one `cp` for all of them, and
/// one `cp` per file, alternating; prints the wall time of each run.
fn small_files(emu: &Emulator, home: &Path) {
    let dir = home.join("small");
    std::fs::create_dir(&dir).unwrap();
    let files: Vec<PathBuf> = (0..20).map(|i| dir.join(format!("f{i:02}"))).collect();
    for (i, f) in files.iter().enumerate() {
        make_file(f, 1024 + i as u64);
    }
    let mkdir = |name: &str| {
        let mut c = emu.client(home);
        c.args(["exec", "--", "mkdir", "-p", name]);
        assert!(c.status().unwrap().success());
    };
    mkdir("small-one");
    mkdir("small-each");
    let mut one = Vec::new();
    let mut each = Vec::new();
    let mut down_one = Vec::new();
    let mut down_each = Vec::new();
    let remotes: Vec<String> = (0..20).map(|i| format!(":small-one/f{i:02}")).collect();
    let back_one = home.join("back-one");
    let back_each = home.join("back-each");
    std::fs::create_dir(&back_one).unwrap();
    std::fs::create_dir(&back_each).unwrap();
    for _ in 0..5 {
        let start = Instant::now();
        let mut c = emu.client(home);
        c.args(["--output", "json", "cp", "-q"])
            .args(&files)
            .arg(":small-one/");
        let out = c.output().unwrap();
        assert!(out.status.success());
        let reports = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(reports, files.len(), "one report per file");
        one.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        for f in &files {
            let mut c = emu.client(home);
            c.args(["cp", "-q"]).arg(f).arg(":small-each/");
            assert!(c.status().unwrap().success());
        }
        each.push(start.elapsed().as_secs_f64() * 1000.0);
        // And back down.
        let start = Instant::now();
        let mut c = emu.client(home);
        c.args(["--output", "json", "cp", "-q"])
            .args(&remotes)
            .arg(&back_one);
        let out = c.output().unwrap();
        assert!(out.status.success());
        let reports = String::from_utf8_lossy(&out.stdout).lines().count();
        assert_eq!(reports, files.len(), "one report per file");
        down_one.push(start.elapsed().as_secs_f64() * 1000.0);
        let start = Instant::now();
        for r in &remotes {
            let mut c = emu.client(home);
            c.args(["cp", "-q", r]).arg(&back_each);
            assert!(c.status().unwrap().success());
        }
        down_each.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    for (i, f) in files.iter().enumerate() {
        let want = std::fs::read(f).unwrap();
        let name = format!("f{i:02}");
        assert_eq!(std::fs::read(back_one.join(&name)).unwrap(), want);
        assert_eq!(std::fs::read(back_each.join(&name)).unwrap(), want);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|ms| format!("{ms:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("20 files of 1 KiB, one cp (one session): {} ms", show(&one));
    println!(
        "20 files of 1 KiB, one cp per file (a session each): {} ms",
        show(&each)
    );
    println!(
        "20 files of 1 KiB down, one cp (one session): {} ms",
        show(&down_one)
    );
    println!(
        "20 files of 1 KiB down, one cp per file (a session each): {} ms",
        show(&down_each)
    );
}
