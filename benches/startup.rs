//! Start-up benchmark of the `cloudshell-rs` binary.
//!
//! Measures, over many runs, the wall time and the peak resident set size of:
//! - `cloudshell-rs --help`;
//! - `cloudshell-rs describe` against an emulator already running in another
//!   process (client start-up, configuration, one signed request, output);
//! - `cloudshell-rs --local describe` (the emulator started in-process).
//!
//! Run with `cargo bench --bench startup`. It prints a table; the README's
//! figures come from it. Only loopback traffic is involved.

#![allow(unsafe_code)] // wait4(2) for per-child resource usage

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::{BIN, Emulator, base, wait_rusage};

struct Sample {
    wall: Duration,
    max_rss_kib: i64,
}

#[allow(clippy::zombie_processes)] // reaped by wait_rusage (wait4)
fn run(cmd: &mut Command) -> Sample {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cloudshell-rs");
    let usage = wait_rusage(&child);
    let (code, rss) = (usage.code, usage.max_rss_kib);
    let wall = start.elapsed();
    assert_eq!(code, 0, "command failed: {cmd:?}");
    Sample {
        wall,
        max_rss_kib: rss,
    }
}

fn report(name: &str, runs: usize, mut f: impl FnMut() -> Sample) {
    for _ in 0..5 {
        f(); // warm-up: page cache, emulator connection set-up
    }
    let mut samples: Vec<Sample> = (0..runs).map(|_| f()).collect();
    samples.sort_by_key(|s| s.wall);
    let median = samples[runs / 2].wall;
    let p90 = samples[runs * 9 / 10].wall;
    let rss = samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
    println!(
        "{name:<44} median {:>7.2} ms   p90 {:>7.2} ms   peak RSS {:>6.1} MB   ({runs} runs)",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        rss as f64 / 1024.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let runs: usize = std::env::var("STARTUP_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_path_buf();

    let size = std::fs::metadata(BIN).map(|m| m.len()).unwrap_or(0);
    println!("binary: {BIN}");
    println!("binary size: {:.2} MB ({size} bytes)", size as f64 / 1e6);

    report("cloudshell-rs --help", runs, || {
        run(base(&state).arg("--help"))
    });

    // An emulator in its own process, so only the client is measured.
    let emu = Emulator::start(&state);
    // Create the default environment once so describe has something to print.
    run(emu.client(&state).arg("create"));

    report("cloudshell-rs describe (running emulator)", runs, || {
        run(emu.client(&state).arg("describe"))
    });

    report("cloudshell-rs --local describe", runs, || {
        run(base(&state)
            .args(["--local", "--state-dir"])
            .arg(state.join("local"))
            .arg("describe"))
    });
}
