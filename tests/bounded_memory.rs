//! Constant memory whatever the data size: 100 MiB streams through the
//! `cloudshell-rs` binary while its peak resident set size stays small.
//!
//! The binary runs as a child process against an emulator in this process, and
//! its own peak RSS comes from wait4(2), so tests running in parallel cannot
//! disturb the measurement.

#![allow(unsafe_code)] // wait4(2)
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};

use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, EmulatorHandle, Timings};
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_cloudshell-rs");
const SIZE: u64 = 100 * 1024 * 1024;
/// Peak RSS allowed for the client while 100 MiB go through it.
const LIMIT_MIB: i64 = 40;

struct Fixture {
    emu: EmulatorHandle,
    creds: AcceptedCredentials,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let creds = AcceptedCredentials::generate();
    let config = EmulatorConfig::new(dir.path().join("state"))
        .with_credentials(creds.clone())
        .with_timings(Timings::instant());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emu = Emulator::start(config, listener).await.unwrap();
    Fixture { emu, creds, dir }
}

impl Fixture {
    fn cmd(&self) -> Command {
        let home = self.dir.path();
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", home.join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
            .env("AWS_ENDPOINT_URL_CLOUDSHELL", self.emu.endpoint())
            .env("AWS_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.creds.secret_access_key);
        c
    }
}

/// Runs `cmd`, hashing its stdout as it arrives; returns (exit code, peak RSS
/// in KiB, stdout length, stdout SHA-256 hex, stderr).
fn run_measured(mut cmd: Command) -> (i32, i64, u64, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut hasher = sha2::Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: waits for our own child, not yet reaped; `usage` is a valid
    // zeroed out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    // The child is reaped: keep `Child`'s destructor from touching it.
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        code,
        usage.ru_maxrss,
        len,
        hex::encode(hasher.finalize()),
        err_reader.join().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_100_mib_in_bounded_memory() {
    let f = fixture().await;
    let mut create = f.cmd();
    create.arg("create");
    assert!(create.status().unwrap().success());
    let mut cmd = f.cmd();
    cmd.args([
        "exec",
        "--",
        "bash",
        "-c",
        &format!("head -c {SIZE} /dev/urandom | tee >(sha256sum >&2)"),
    ]);
    let (code, rss_kib, len, sha, stderr) = tokio::task::spawn_blocking(move || run_measured(cmd))
        .await
        .unwrap();
    assert_eq!(code, 0, "exec failed: {stderr}");
    assert_eq!(len, SIZE);
    assert!(stderr.starts_with(&sha), "remote hash {stderr} local {sha}");
    assert!(
        rss_kib < LIMIT_MIB * 1024,
        "exec's peak RSS was {} MiB while streaming 100 MiB",
        rss_kib / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_copies_100_mib_both_ways_in_bounded_memory() {
    let f = fixture().await;
    // 100 MiB of pseudo-random bytes, written in 1 MiB blocks.
    let src = f.dir.path().join("big.bin");
    let mut want = sha2::Sha256::new();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&src).unwrap();
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..(SIZE >> 20) {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            want.update(&block);
            file.write_all(&block).unwrap();
        }
    }
    let want = hex::encode(want.finalize());
    let back = f.dir.path().join("back.bin");
    for args in [
        vec!["cp", "-q", "--via", "s3"]
            .into_iter()
            .map(String::from)
            .chain([src.display().to_string(), ":big.bin".into()])
            .collect::<Vec<_>>(),
        vec!["cp", "-q", "--via", "s3", ":big.bin"]
            .into_iter()
            .map(String::from)
            .chain([back.display().to_string()])
            .collect(),
    ] {
        let mut cmd = f.cmd();
        cmd.args(&args);
        let (code, rss_kib, _, _, stderr) = tokio::task::spawn_blocking(move || run_measured(cmd))
            .await
            .unwrap();
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            rss_kib < LIMIT_MIB * 1024,
            "{args:?}: peak RSS {} MiB for a 100 MiB copy",
            rss_kib / 1024
        );
    }
    let mut got = sha2::Sha256::new();
    let mut file = std::fs::File::open(&back).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.update(&buf[..n]);
    }
    assert_eq!(hex::encode(got.finalize()), want);
}
