//! End-to-end session benchmarks against an emulator running in a separate
//! process (so the client's CPU time and memory are measured alone).
//!
//! ```text
//! cargo bench --bench session_throughput
//! ```
//!
//! 1. Throughput: the emulator streams 64 MiB in 1 KiB and in 16 KiB messages;
//!    the client acknowledges them and writes the bytes to /dev/null. Prints
//!    MB/s, client CPU seconds per MiB (getrusage of this process) and peak RSS.
//! 2. Start-up: CreateSession + connect until the shell is ready, on loopback.
//! 3. 1,000 concurrent idle echo sessions from this process: memory per
//!    session and echo round-trip percentiles.
//!
//! The emulator process is this same executable started with
//! `SESSION_BENCH_ROLE=emulator`.

#![allow(unsafe_code)] // getrusage(2) / setrlimit(2)
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudshell_emulator::gateway::{GatewayConfig, SessionMode, SessionOptions as GwOptions};
use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, Timings};
use cloudshell_rs::Client;
use cloudshell_rs::session::{Session, SessionEvent, SessionOptions, SessionTarget};

mod support;

const AK: &str = "AKIDBENCH";
const SK: &str = "bench-secret-key";
const STREAM_TOTAL: u64 = 64 * 1024 * 1024;
const SESSIONS: usize = 1000;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Peak RSS of this process image (`VmHWM`). `ru_maxrss` is not used: Linux
/// keeps it across `execve`, so it would report the parent (cargo) at fork time.
fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn proc_status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Child role: run an emulator whose sessions use `SESSION_BENCH_MODE`.
fn emulator_main() {
    raise_fd_limit();
    let mode: SessionMode = std::env::var("SESSION_BENCH_MODE")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmulatorConfig::new(dir.path())
            .with_credentials(AcceptedCredentials::new(AK, SK))
            .with_timings(Timings::instant())
            .with_gateway(GatewayConfig {
                defaults: GwOptions::default().with_mode(mode),
                ..GatewayConfig::default()
            })
            .with_region("us-east-1");
        config.max_sessions = SESSIONS + 100;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let emu = Emulator::start(config, listener).await.unwrap();
        println!("ENDPOINT {}", emu.endpoint());
        std::io::stdout().flush().unwrap();
        // Run until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await
        .unwrap();
        emu.shutdown().await;
    });
}

struct EmulatorProcess {
    child: Child,
    endpoint: String,
}

impl EmulatorProcess {
    fn start(mode: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("SESSION_BENCH_ROLE", "emulator")
            .env("SESSION_BENCH_MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line.trim().strip_prefix("ENDPOINT ").unwrap().to_string();
        EmulatorProcess { child, endpoint }
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

async fn client_for(endpoint: &str) -> (Client, String) {
    support::client_and_default_env(endpoint, AK, SK).await
}

/// CreateSession for a new tab.
async fn create(client: &Client, env: &str) -> SessionTarget {
    create_for_tab(client, env, &uuid::Uuid::new_v4().to_string()).await
}

fn options() -> SessionOptions {
    SessionOptions::default().allow_any_host()
}

async fn throughput(chunk: usize) {
    let emu = EmulatorProcess::start(&format!("stream:{STREAM_TOTAL}:{chunk}"));
    let (client, env) = client_for(&emu.endpoint).await;
    let target = create(&client, &env).await;
    let mut devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let rss_before = current_rss_kib();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut s = Session::connect(target, options()).await.unwrap();
    let mut got = 0u64;
    let mut events = 0u64;
    loop {
        match s.next_event().await {
            Some(SessionEvent::Output(b)) => {
                got += b.len() as u64;
                events += 1;
                devnull.write_all(&b).unwrap();
            }
            Some(SessionEvent::Closed { .. }) | None => break,
            Some(SessionEvent::Failed(e)) => panic!("{e}"),
            Some(_) => {}
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let rss_after = current_rss_kib();
    assert_eq!(got, STREAM_TOTAL, "bytes received");
    let mib = got as f64 / (1024.0 * 1024.0);
    println!(
        "stream {:>5} B messages: {:>7.1} MB/s  {:>6.2} ms CPU/MiB  ({} MiB in {:.2} s, {} messages in {} output events, client CPU {:.2} s, RSS {:.1} -> {:.1} MiB, peak {:.1} MiB)",
        chunk,
        got as f64 / 1e6 / wall,
        cpu * 1000.0 / mib,
        mib,
        wall,
        got.div_ceil(chunk as u64),
        events,
        cpu,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        peak_rss_kib() as f64 / 1024.0
    );
}

/// CreateSession for a given tab.
async fn create_for_tab(client: &Client, env: &str, tab: &str) -> SessionTarget {
    let out = client
        .create_session()
        .environment_id(env.to_string())
        .tab_id(tab.to_string())
        .send()
        .await
        .unwrap();
    SessionTarget::from(out)
}

async fn delete_session(client: &Client, env: &str, session_id: String) {
    client
        .delete_session()
        .environment_id(env.to_string())
        .session_id(session_id)
        .send()
        .await
        .unwrap();
}

const STARTUP_RUNS: usize = 21;

fn summary(name: &str, v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name:<58} median {:>6.2} ms  min {:>6.2} ms  max {:>6.2} ms  ({} runs)",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

/// Session start-up: `Session::connect` returns once the remote side is ready,
/// which for a shell without a handshake is its first output (the prompt).
async fn startup() {
    let emu = EmulatorProcess::start("shell");
    let (client, env) = client_for(&emu.endpoint).await;
    let mut connect_ms = Vec::new();
    let mut total_ms = Vec::new();
    let mut reattach_ms = Vec::new();
    for _ in 0..STARTUP_RUNS {
        // A new tab: the emulator starts a login bash on a pty for it.
        let tab = uuid::Uuid::new_v4().to_string();
        let t0 = Instant::now();
        let target = create_for_tab(&client, &env, &tab).await;
        let t1 = Instant::now();
        let s = Session::connect(target.clone(), options()).await.unwrap();
        let t2 = Instant::now();
        connect_ms.push((t2 - t1).as_secs_f64() * 1000.0);
        total_ms.push((t2 - t0).as_secs_f64() * 1000.0);
        drop(s);
        // The same tab again: its shell is running (CloudShell's tmux re-attach).
        let target = create_for_tab(&client, &env, &tab).await;
        let t3 = Instant::now();
        let s = Session::connect(target.clone(), options()).await.unwrap();
        reattach_ms.push(t3.elapsed().as_secs_f64() * 1000.0);
        s.close().await.unwrap();
        delete_session(&client, &env, target.session_id).await;
    }
    summary(
        "shell ready, new tab (connect, open, login bash's prompt)",
        &mut connect_ms,
    );
    summary("CreateSession + shell ready, new tab", &mut total_ms);
    summary(
        "shell ready, re-attach (connect, open, first output)",
        &mut reattach_ms,
    );
    // The binary as `session-manager-plugin`, given a CreateSession response
    // the way the AWS CLI gives the official plugin a StartSession response:
    // from exec to the first byte of shell output on its stdout (process
    // start-up, runtime, connect, open, handshake included).
    let mut plugin_new_ms = Vec::new();
    let mut plugin_reattach_ms = Vec::new();
    for _ in 0..STARTUP_RUNS {
        let tab = uuid::Uuid::new_v4().to_string();
        let first = create_for_tab(&client, &env, &tab).await;
        plugin_new_ms.push(plugin_first_output(&first, &emu.endpoint));
        let second = create_for_tab(&client, &env, &tab).await;
        plugin_reattach_ms.push(plugin_first_output(&second, &emu.endpoint));
        for target in [first, second] {
            delete_session(&client, &env, target.session_id).await;
        }
    }
    summary(
        "binary as session-manager-plugin, exec to output, new tab",
        &mut plugin_new_ms,
    );
    summary(
        "binary as session-manager-plugin, exec to output, re-attach",
        &mut plugin_reattach_ms,
    );
    // For scale: the login shell alone, started the way the emulator starts
    // it (fork and exec on a new pty) until its first output.
    let mut bash_ms = Vec::new();
    let home = tempfile::tempdir().unwrap();
    for _ in 0..STARTUP_RUNS {
        bash_ms.push(login_shell_first_output(home.path()).await);
    }
    summary(
        "bash -l on a pty alone (spawn to first output)",
        &mut bash_ms,
    );
    // Also for scale: what a `wss://` stream URL adds once per process (the
    // emulator's stream URLs are `ws://`): reading the system's trusted roots.
    let mut roots_ms = Vec::new();
    for _ in 0..STARTUP_RUNS {
        let t0 = Instant::now();
        let found = rustls_native_certs::load_native_certs();
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(found.certs);
        roots_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert!(added > 0, "no system roots");
    }
    summary(
        "system trust store load (wss:// only, once per process)",
        &mut roots_ms,
    );
}

/// Runs `cloudshell-rs session-manager-plugin` for `target` (stdin kept
/// open) and returns the milliseconds from exec to its first byte of output.
fn plugin_first_output(target: &SessionTarget, endpoint: &str) -> f64 {
    use std::io::Read as _;
    let json = serde_json::json!({
        "SessionId": target.session_id,
        "TokenValue": target.token.expose(),
        "StreamUrl": target.stream_url,
    })
    .to_string();
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudshell-rs"))
        .args([
            "session-manager-plugin",
            &json,
            "us-east-1",
            "StartSession",
            "",
            "{}",
            endpoint,
        ])
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut byte = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut byte)
        .unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let _ = child.kill();
    let _ = child.wait();
    ms
}

async fn login_shell_first_output(home: &std::path::Path) -> f64 {
    use tokio::io::AsyncReadExt as _;
    let t0 = Instant::now();
    let (mut pty, pts) = pty_process::open().unwrap();
    let mut child = pty_process::Command::new("bash")
        .arg("-l")
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8")
        .current_dir(home)
        .kill_on_drop(true)
        .spawn(pts)
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = pty.read(&mut buf).await.unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert!(n > 0);
    let _ = child.kill().await;
    ms
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn many_sessions() {
    let emu = EmulatorProcess::start("echo");
    let (client, env) = client_for(&emu.endpoint).await;
    let mut targets = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        targets.push(create(&client, &env).await);
    }
    let rss0 = current_rss_kib();
    let mut sessions = Vec::with_capacity(SESSIONS);
    for t in targets {
        sessions.push(Session::connect(t, options()).await.unwrap());
    }
    // Let every driver settle (initial pings answered, buffers drained).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = current_rss_kib();
    let per = (rss1.saturating_sub(rss0)) as f64 / SESSIONS as f64;
    println!(
        "{SESSIONS} idle echo sessions: RSS +{:.1} MiB, {:.1} KiB per session",
        (rss1 - rss0) as f64 / 1024.0,
        per
    );
    // Echo round trips, one session after the other.
    let mut rtts = Vec::with_capacity(SESSIONS);
    for s in sessions.iter_mut() {
        let t0 = Instant::now();
        s.send_input(b"x").await.unwrap();
        loop {
            match s.next_event().await {
                Some(SessionEvent::Output(b)) if b.as_ref() == b"x" => break,
                Some(SessionEvent::Output(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        rtts.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    rtts.sort_by(f64::total_cmp);
    println!(
        "echo round trip over {SESSIONS} open sessions (sequential): p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        pct(&rtts, 0.5),
        pct(&rtts, 0.9),
        pct(&rtts, 0.99),
        rtts[rtts.len() - 1]
    );
    // All sessions at once.
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut s in sessions {
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            s.send_input(b"y").await.unwrap();
            loop {
                match s.next_event().await {
                    Some(SessionEvent::Output(b)) if b.as_ref() == b"y" => break,
                    Some(SessionEvent::Output(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
            (t.elapsed().as_secs_f64() * 1000.0, s)
        }));
    }
    let mut burst = Vec::new();
    let mut keep = Vec::new();
    for t in tasks {
        let (ms, s) = t.await.unwrap();
        burst.push(ms);
        keep.push(s);
    }
    burst.sort_by(f64::total_cmp);
    println!(
        "echo round trip, {SESSIONS} sessions at once: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  (all done in {:.1} ms)",
        pct(&burst, 0.5),
        pct(&burst, 0.9),
        pct(&burst, 0.99),
        t0.elapsed().as_secs_f64() * 1000.0
    );
    drop(keep);
}

fn main() {
    if std::env::var("SESSION_BENCH_ROLE").as_deref() == Ok("emulator") {
        return emulator_main();
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // special, so keep the run identical either way.
    raise_fd_limit();
    cloudshell_rs::session::ensure_crypto_provider();
    let which = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = |name: &str| which.as_deref().is_none_or(|w| name.contains(w));
        if run("throughput") {
            throughput(1024).await;
            throughput(16 * 1024).await;
            println!(
                "peak RSS after the throughput runs: {:.1} MiB",
                peak_rss_kib() as f64 / 1024.0
            );
        }
        if run("startup") {
            startup().await;
        }
        if run("sessions") {
            many_sessions().await;
        }
    });
}
