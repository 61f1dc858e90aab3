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

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cloudshell-rs");

struct Sample {
    wall: Duration,
    max_rss_kib: i64,
}

/// Waits for `child` with wait4(2) so its own peak RSS is known.
fn wait_rusage(child: &Child) -> (i32, i64) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall on a child we spawned and have not waited for;
    // `usage` is a valid, zeroed out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss)
}

#[allow(clippy::zombie_processes)] // reaped by wait_rusage (wait4)
fn run(cmd: &mut Command) -> Sample {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cloudshell-rs");
    let (code, rss) = wait_rusage(&child);
    let wall = start.elapsed();
    assert_eq!(code, 0, "command failed: {cmd:?}");
    Sample {
        wall,
        max_rss_kib: rss,
    }
}

fn base(state: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", state)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", state.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", state.join("no-credentials"));
    c
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
    let mut emu = base(&state)
        .args(["emulator", "--port", "0", "--state-dir"])
        .arg(state.join("emu"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emulator");
    let stdout = emu.stdout.take().expect("emulator stdout");
    let mut endpoint = None;
    let mut key = None;
    let mut secret = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read emulator output");
        if let Some(v) = line.strip_prefix("export AWS_ENDPOINT_URL_CLOUDSHELL=") {
            endpoint = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("export AWS_ACCESS_KEY_ID=") {
            key = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("export AWS_SECRET_ACCESS_KEY=") {
            secret = Some(v.to_string());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let (endpoint, key, secret) = (
        endpoint.expect("endpoint"),
        key.expect("access key"),
        secret.expect("secret key"),
    );
    // Create the default environment once so describe has something to print.
    run(base(&state)
        .env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .arg("create"));

    report("cloudshell-rs describe (running emulator)", runs, || {
        run(base(&state)
            .env("AWS_ENDPOINT_URL_CLOUDSHELL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", &key)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .arg("describe"))
    });

    report("cloudshell-rs --local describe", runs, || {
        run(base(&state)
            .args(["--local", "--state-dir"])
            .arg(state.join("local"))
            .arg("describe"))
    });

    let _ = emu.kill();
    let _ = emu.wait();
}
