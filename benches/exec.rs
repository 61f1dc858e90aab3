//! End-to-end benchmark of `cloudshell-rs exec` against an emulator running
//! in its own process (`cloudshell-rs emulator --port 0`), so that only the
//! client process is measured:
//!
//! - `exec -- true`: median and p90 wall time and peak RSS over
//!   `EXEC_RUNS` runs (default 30) after 3 warm-up runs;
//! - `exec -- head -c 104857600 /dev/zero`: output throughput in MB/s
//!   (10^6 bytes per second; every byte is counted by the benchmark) and the
//!   client's peak RSS, `EXEC_THROUGHPUT_RUNS` runs (default 3).
//!
//! Run with `cargo bench --bench exec`. Only loopback traffic is involved.

#![allow(unsafe_code)] // wait4(2) for per-child resource usage

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cloudshell-rs");

/// Waits for `child` with wait4(2): exit code and the child's own peak RSS (KiB).
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

struct Emulator {
    child: Child,
    endpoint: String,
    key: String,
    secret: String,
}

fn base(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"));
    c
}

fn start_emulator(home: &Path) -> Emulator {
    let mut child = base(home)
        .args(["emulator", "--port", "0", "--state-dir"])
        .arg(home.join("emu"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emulator");
    let stdout = child.stdout.take().expect("emulator stdout");
    let (mut endpoint, mut key, mut secret) = (None, None, None);
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
    Emulator {
        child,
        endpoint: endpoint.expect("endpoint"),
        key: key.expect("access key"),
        secret: secret.expect("secret key"),
    }
}

fn client(home: &Path, emu: &Emulator) -> Command {
    let mut c = base(home);
    c.env("AWS_ENDPOINT_URL_CLOUDSHELL", &emu.endpoint)
        .env("AWS_ACCESS_KEY_ID", &emu.key)
        .env("AWS_SECRET_ACCESS_KEY", &emu.secret);
    c
}

/// Runs the command, counting its stdout: (wall, bytes, peak RSS KiB).
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_rusage
fn run(mut cmd: Command) -> (Duration, u64, i64) {
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
    let (code, rss) = wait_rusage(&child);
    let bytes = counter.join().expect("counter");
    let wall = start.elapsed();
    assert_eq!(code, 0, "command failed: {cmd:?}");
    (wall, bytes, rss)
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
    let mut emu = start_emulator(&home);
    let mut create = client(&home, &emu);
    create.arg("create");
    run(create);

    println!("binary: {BIN}");
    println!("emulator: {} (separate process)", emu.endpoint);

    let exec_true = || {
        let mut c = client(&home, &emu);
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

    for i in 0..tp_runs {
        let mut c = client(&home, &emu);
        c.args(["exec", "--", "head", "-c", "104857600", "/dev/zero"]);
        let (wall, bytes, rss) = run(c);
        assert_eq!(bytes, 104_857_600, "every byte arrived");
        println!(
            "cloudshell-rs exec -- head -c 104857600 /dev/zero: run {}: {:.2} s, {:.1} MB/s, peak RSS {:.1} MB",
            i + 1,
            wall.as_secs_f64(),
            bytes as f64 / 1e6 / wall.as_secs_f64(),
            rss as f64 / 1024.0
        );
    }
    let _ = emu.child.kill();
    let _ = emu.child.wait();
}
