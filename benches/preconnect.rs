//! What `session::preconnect` saves on a network with latency.
//!
//! ```text
//! cargo bench --bench preconnect
//! ```
//!
//! The path from the first API call to a ready session, as `exec`, `cp` and
//! `connect` take it for the default environment: DescribeEnvironments (the
//! wait for RUNNING then asks nothing more), CreateSession, then the data
//! channel (TCP, TLS, WebSocket upgrade, open frame, handshake). The API and
//! the data channel are each reached through a relay that holds every chunk
//! for half the round-trip time in each direction; the data channel is
//! `wss://` (TLS 1.3, a certificate from fixtures/tls), as on AWS. Each run
//! is made with and without a preconnect started before the first API call,
//! alternating, and the medians are printed for a few round-trip times.
//! Then the same for `exec -- true` as the CLI runs it for the default
//! environment (DescribeEnvironments, then `exec::run_with_io`: a login
//! shell on a new tab, the bootstrap, the command, its status,
//! DeleteSession). Last, `cp` of a small file through S3 each way, and
//! down with the default transport (in-band for a small file).
//!
//! The relays delay data, not TCP's own handshake (which completes on
//! loopback at once), so on a real network a preconnect saves one round trip
//! more than here, plus the name lookup and, in a new process, the load of
//! the system's trusted roots (which the relay set-up cannot show: the roots
//! are loaded once per process).

#![allow(unsafe_code)] // set_var before any thread starts
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cloudshell_emulator::gateway::{SessionMode, SessionOptions as GwOptions};
use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, Timings};
use cloudshell_rs::exec::ExecOptions;
use cloudshell_rs::session::{Session, SessionOptions, SessionTarget, preconnect};
use cloudshell_rs::transfer::{self, TransferOptions, Transport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

mod support;
#[path = "../tests/it/support/tls_front.rs"]
mod tls_front;
use tls_front::{TLS_DIR, tls_front};

const AK: &str = "AKIDBENCH";
const SK: &str = "bench-secret-key";
const RUNS: usize = 15;

/// Copies `from` to `to`, each chunk `delay` after it was read; the delay
/// is a pipe's latency, not a limit on its throughput.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    while let Some((at, chunk)) = rx.recv().await {
        tokio::time::sleep_until((at + delay).into()).await;
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// A relay from `listener` to `backend` whose every chunk arrives `delay`
/// after it was sent, both ways.
fn latency_relay(listener: TcpListener, backend: std::net::SocketAddr, delay: Duration) {
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = (down.set_nodelay(true), up.set_nodelay(true));
                let (down_r, down_w) = down.into_split();
                let (up_r, up_w) = up.into_split();
                tokio::join!(
                    delayed_copy(down_r, up_w, delay),
                    delayed_copy(up_r, down_w, delay)
                );
            });
        }
    });
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

async fn run(rtt_ms: u64) {
    let delay = Duration::from_micros(rtt_ms * 500);
    // The gateway: the emulator's listener behind TLS behind the latency;
    // its stream URLs name the relay.
    let (gw_listener, gw_port) = listener().await;
    let gateway_url = format!("wss://localhost:{gw_port}");
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path())
        .with_credentials(AcceptedCredentials::new(AK, SK))
        .with_timings(Timings::instant())
        .with_region("us-east-1");
    config.stream_base = Some(gateway_url.clone());
    // S3 too: the presigned URLs name a relay.
    let (s3_listener, s3_port) = listener().await;
    config.s3_base = Some(format!("http://127.0.0.1:{s3_port}"));
    let (emu_listener, _) = listener().await;
    let emu = Emulator::start(config, emu_listener).await.unwrap();
    let emu_addr: std::net::SocketAddr = emu
        .endpoint()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    latency_relay(gw_listener, tls_front(emu_addr).await, delay);
    let (api_listener, api_port) = listener().await;
    latency_relay(api_listener, emu_addr, delay);
    latency_relay(s3_listener, emu_addr, delay);
    let (client, _) =
        support::client_and_default_env(&format!("http://127.0.0.1:{api_port}"), AK, SK).await;

    let options = |pre: bool| {
        let mut options = SessionOptions::default().allow_any_host();
        options.gateway = Some(gateway_url.clone());
        options.preconnect = pre;
        options
    };
    // Up to a ready session (echo mode: no shell to wait for).
    let mut ready = [Vec::new(), Vec::new()];
    for i in 0..RUNS * 2 {
        let pre = i % 2 == 1;
        let tab = uuid::Uuid::new_v4().to_string();
        emu.configure_tab(
            tab.clone(),
            GwOptions::default().with_mode(SessionMode::Echo),
        );
        let t0 = Instant::now();
        preconnect(&options(pre));
        let env = client.find_or_create_default().await.unwrap();
        client
            .wait_until_running(&env, Duration::from_secs(30), |_| {})
            .await
            .unwrap();
        let created = client
            .create_session()
            .environment_id(env.clone())
            .tab_id(tab)
            .send()
            .await
            .unwrap();
        let target = SessionTarget::from(created);
        let session = Session::connect(target.clone(), options(pre))
            .await
            .unwrap();
        ready[usize::from(pre)].push(t0.elapsed().as_secs_f64() * 1000.0);
        session.close().await.unwrap();
        client
            .delete_session()
            .environment_id(env.clone())
            .session_id(target.session_id)
            .send()
            .await
            .unwrap();
    }
    // `exec -- true` as the CLI runs it for the default environment: the
    // lookup, then exec (a login shell on a new tab, the bootstrap, the
    // command, its status, DeleteSession).
    let mut exec_ms = [Vec::new(), Vec::new()];
    for i in 0..RUNS * 2 {
        let pre = i % 2 == 1;
        let t0 = Instant::now();
        preconnect(&options(pre));
        let env = client.find_or_create_default().await.unwrap();
        let status = cloudshell_rs::exec::run_with_io(
            &client,
            &env,
            &["true"],
            ExecOptions::new().session_options(options(pre)),
            None::<tokio::io::Empty>,
            &mut tokio::io::sink(),
            &mut tokio::io::sink(),
        )
        .await
        .unwrap();
        assert!(status.success());
        exec_ms[usize::from(pre)].push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let report = |what: &str, [mut without, mut with]: [Vec<f64>; 2]| {
        let (a, b) = (median(&mut without), median(&mut with));
        println!(
            "round trip {rtt_ms:>3} ms, {what}, median of {RUNS}: {a:7.1} ms without \
             preconnect, {b:7.1} ms with it ({:+.1} ms)",
            b - a
        );
    };
    report("first API call to a ready session", ready);
    report("exec -- true", exec_ms);

    // `cp` of a 64 KiB file through S3 each way, as the CLI runs it for the
    // default environment (the lookup, then the transfer: GetFile*Urls, the
    // object to or from S3, a session whose command moves it, DeleteSession).
    // S3 is behind a relay too (also for the environment's `curl`, which on
    // AWS reaches S3 within the region).
    // With the preconnect only: these rows time the transfer's own order.
    let local = dir.path().join("file.bin");
    std::fs::write(&local, vec![7u8; 64 * 1024]).unwrap();
    let copy_options = TransferOptions::new()
        .transport(Transport::S3)
        .session_options(options(true));
    let auto_options = TransferOptions::new()
        .transport(Transport::Auto)
        .session_options(options(true));
    let mut up_ms = Vec::new();
    let mut down_ms = Vec::new();
    let mut auto_ms = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        preconnect(&options(true));
        let env = client.find_or_create_default().await.unwrap();
        transfer::upload(&client, &env, &local, "file.bin", &copy_options)
            .await
            .unwrap();
        up_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Down through S3, then with the default transport: the public
        // environment is asked to send the file to S3 if large, and sends
        // this one in-band in the same run.
        let back = dir.path().join("back.bin");
        for (times, copy_options) in [(&mut down_ms, &copy_options), (&mut auto_ms, &auto_options)]
        {
            let t0 = Instant::now();
            preconnect(&options(true));
            let env = client.find_or_create_default().await.unwrap();
            transfer::download(&client, &env, "file.bin", &back, copy_options)
                .await
                .unwrap();
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            std::fs::remove_file(&back).unwrap();
        }
    }
    println!(
        "round trip {rtt_ms:>3} ms, cp of 64 KiB through S3, median of {RUNS}: up {:7.1} ms, \
         down {:7.1} ms; down by default (in-band) {:7.1} ms",
        median(&mut up_ms),
        median(&mut down_ms),
        median(&mut auto_ms)
    );
    emu.shutdown().await;
}

fn main() {
    // The fixtures' CA, for the gateway's certificate; set before any thread.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("SSL_CERT_FILE", format!("{TLS_DIR}/ca.pem")) };
    // SAFETY: as above.
    unsafe { std::env::set_var("AWS_EC2_METADATA_DISABLED", "true") };
    cloudshell_rs::session::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for rtt in [0, 20, 60] {
            run(rtt).await;
        }
    });
}
