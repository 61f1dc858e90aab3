//! End-to-end benchmark of `cloudshell-rs exec` against an emulator running
//! in its own process (`cloudshell-rs emulator --port 0`), so that only the
//! client process is measured:
//!
//! - `exec -- true`: median and p90 wall time and peak RSS over
//!   `EXEC_RUNS` runs (default 30) after 3 warm-up runs;
//! - `exec -- head -c 104857600 /dev/zero`: output throughput in MB/s
//!   (10^6 bytes per second; every byte is counted by the benchmark) and the
//!   client's peak RSS and CPU, `EXEC_THROUGHPUT_RUNS` runs (default 3);
//! - the same through tmux (`emulator --tmux`, as CloudShell runs its
//!   shells), when tmux is installed.
//!
//! Run with `cargo bench --bench exec`. Only loopback traffic is involved.

#![allow(unsafe_code)] // wait4(2) for per-child resource usage

#[path = "support/mod.rs"]
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Emulator, wait_rusage};

/// Runs the command, counting its stdout: (wall, bytes, peak RSS KiB).
fn run(cmd: Command) -> (Duration, u64, i64) {
    let (wall, bytes, rss, _) = run_cpu(cmd);
    (wall, bytes, rss)
}

/// The same, with the client's CPU seconds.
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_rusage
fn run_cpu(mut cmd: Command) -> (Duration, u64, i64, f64) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k as u64,
            }
        }
    });
    let usage = wait_rusage(&child);
    let (code, rss) = (usage.code, usage.max_rss_kib);
    let bytes = counter.join().expect("counter");
    let wall = start.elapsed();
    assert_eq!(code, 0, "command failed: {cmd:?}");
    (wall, bytes, rss, usage.cpu_secs)
}

/// `exec -- head -c 100 MiB /dev/zero` `runs` times against `emu`.
fn throughput(emu: &Emulator, home: &std::path::Path, runs: usize, label: &str) {
    for i in 0..runs {
        let mut c = emu.client(home);
        c.args(["exec", "--", "head", "-c", "104857600", "/dev/zero"]);
        let (wall, bytes, rss, cpu) = run_cpu(c);
        assert_eq!(bytes, 104_857_600, "every byte arrived");
        println!(
            "cloudshell-rs exec -- head -c 104857600 /dev/zero{label}: run {}: {:.2} s, {:.1} MB/s, {:.1} ms CPU per MiB, peak RSS {:.1} MB",
            i + 1,
            wall.as_secs_f64(),
            bytes as f64 / 1e6 / wall.as_secs_f64(),
            cpu * 1e3 / 100.0,
            rss as f64 / 1024.0
        );
    }
}

fn main() {
    let runs: usize = std::env::var("EXEC_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let tp_runs: usize = std::env::var("EXEC_THROUGHPUT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().to_path_buf();
    let emu = Emulator::start(&home);
    let mut create = emu.client(&home);
    create.arg("create");
    run(create);

    println!("binary: {BIN}");
    println!("emulator: {} (separate process)", emu.endpoint);

    let exec_true = || {
        let mut c = emu.client(&home);
        c.args(["exec", "--", "true"]);
        run(c)
    };
    for _ in 0..3 {
        exec_true();
    }
    let mut samples: Vec<(Duration, u64, i64)> = (0..runs).map(|_| exec_true()).collect();
    samples.sort_by_key(|s| s.0);
    let rss = samples.iter().map(|s| s.2).max().unwrap_or(0);
    println!(
        "cloudshell-rs exec -- true: median {:.1} ms, p90 {:.1} ms, peak RSS {:.1} MB ({runs} runs)",
        samples[runs / 2].0.as_secs_f64() * 1e3,
        samples[runs * 9 / 10].0.as_secs_f64() * 1e3,
        rss as f64 / 1024.0
    );

    throughput(&emu, &home, tp_runs, "");
    drop(emu);

    let tmux = Command::new("tmux").arg("-V").output();
    if tmux.is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_path_buf();
        let emu = Emulator::start_with(&home, &["--tmux"]);
        let mut create = emu.client(&home);
        create.arg("create");
        run(create);
        throughput(&emu, &home, tp_runs, " through tmux");
    } else {
        println!("tmux not found: the runs through tmux are skipped");
    }
}
