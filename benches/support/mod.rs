//! Shared by the process-level benches: run the `cloudshell-rs` binary in a
//! clean environment, measure a child with wait4(2), and run the emulator in
//! its own process so that only the client is measured.

// Each bench uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cloudshell-rs");

/// What wait4(2) reports about one child.
pub struct ChildUsage {
    /// Exit code, or -1 when killed by a signal.
    pub code: i32,
    /// User + system CPU seconds of the child itself.
    pub cpu_secs: f64,
    /// The child's own peak resident set size, KiB.
    pub max_rss_kib: i64,
}

/// Waits for `child` with wait4(2), so its own resource usage is known.
pub fn wait_rusage(child: &Child) -> ChildUsage {
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
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    ChildUsage {
        code,
        cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// The binary with a clean environment: no AWS configuration from the
/// machine, no instance-metadata probing, an explicit region.
pub fn base(home: &Path) -> Command {
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

/// `cloudshell-rs emulator` in its own process; killed on drop.
pub struct Emulator {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    key: String,
    secret: String,
}

impl Emulator {
    /// Starts it with its state under `home/emu` and reads the endpoint and
    /// credentials it prints.
    pub fn start(home: &Path) -> Emulator {
        Self::start_with(home, &[])
    }

    /// The same, with more arguments for `emulator` (such as `--tmux`).
    pub fn start_with(home: &Path, args: &[&str]) -> Emulator {
        let mut child = base(home)
            .args(["emulator", "--port", "0", "--state-dir"])
            .arg(home.join("emu"))
            .args(args)
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

    /// The binary, pointed at this emulator with its credentials.
    pub fn client(&self, home: &Path) -> Command {
        let mut c = base(home);
        c.env("AWS_ENDPOINT_URL_CLOUDSHELL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret);
        c
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A library client for the emulator at `endpoint` (plain HTTP, the given
/// key pair) and the id of its default environment, RUNNING.
pub async fn client_and_default_env(
    endpoint: &str,
    key: &str,
    secret: &str,
) -> (cloudshell_rs::Client, String) {
    let client = cloudshell_rs::Client::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(cloudshell_rs::Credentials::new(
            key, secret, None, None, "bench",
        ))
        .build()
        .await
        .expect("client");
    let env = client
        .find_or_create_default()
        .await
        .expect("default environment");
    client
        .wait_until_running(&env, std::time::Duration::from_secs(30), |_| {})
        .await
        .expect("environment running");
    (client, env)
}
