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
//!
//! The relays delay data, not TCP's own handshake (which completes on
//! loopback at once), so on a real network a preconnect saves one round trip
//! more than here, plus the name lookup and, in a new process, the load of
//! the system's trusted roots (which the relay set-up cannot show: the roots
//! are loaded once per process).

#![allow(unsafe_code)] // set_var before any thread starts
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudshell_emulator::gateway::{GatewayConfig, SessionMode, SessionOptions as GwOptions};
use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, Timings};
use cloudshell_rs::session::{Session, SessionOptions, SessionTarget, preconnect};
use cloudshell_rs::{Client, Credentials};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const AK: &str = "AKIDBENCH";
const SK: &str = "bench-secret-key";
const RUNS: usize = 15;
const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");

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

/// A relay on 127.0.0.1:0 to `backend` whose every chunk arrives `delay`
/// after it was sent, both ways. Returns its port.
async fn latency_relay(backend: std::net::SocketAddr, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
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
    port
}

/// A TLS front on 127.0.0.1:0 for the emulator's plain listener, with the
/// certificate for `localhost` in fixtures/tls. Returns its address.
async fn tls_front(backend: std::net::SocketAddr) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(format!("{TLS_DIR}/localhost.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{TLS_DIR}/localhost.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = plain.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// The `host:port` of a `ws://` stream URL, and its path.
fn split_url(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("ws://").unwrap();
    let slash = rest.find('/').unwrap();
    (rest[..slash].parse().unwrap(), rest[slash..].to_string())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(rtt_ms: u64) {
    let delay = Duration::from_micros(rtt_ms * 500);
    let dir = tempfile::tempdir().unwrap();
    let config = EmulatorConfig::new(dir.path())
        .with_credentials(AcceptedCredentials::new(AK, SK))
        .with_timings(Timings::instant())
        .with_gateway(GatewayConfig {
            defaults: GwOptions::default().with_mode(SessionMode::Echo),
            ..GatewayConfig::default()
        })
        .with_region("us-east-1");
    let emu = Emulator::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let rest: std::net::SocketAddr = emu
        .endpoint()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let api_port = latency_relay(rest, delay).await;
    let client = Client::builder()
        .region("us-east-1")
        .endpoint_url(format!("http://127.0.0.1:{api_port}"))
        .credentials(Credentials::new(AK, SK, None, None, "bench"))
        .build()
        .await
        .unwrap();
    let env = client.find_or_create_default().await.unwrap();
    client
        .wait_until_running(&env, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    // The gateway: the emulator's listener behind TLS behind the latency.
    let first = client
        .create_session()
        .environment_id(env.clone())
        .send()
        .await
        .unwrap();
    let (gateway, _) = split_url(&first.stream_url);
    let front = tls_front(gateway).await;
    let gw_port = latency_relay(front, delay).await;
    let gateway_url = format!("wss://localhost:{gw_port}");

    let mut times = [Vec::new(), Vec::new()];
    for i in 0..RUNS * 2 {
        let pre = i % 2 == 1;
        let mut options = SessionOptions::default().allow_any_host();
        options.gateway = Some(gateway_url.clone());
        options.preconnect = pre;
        let t0 = Instant::now();
        preconnect(&options);
        let env = client.find_or_create_default().await.unwrap();
        client
            .wait_until_running(&env, Duration::from_secs(30), |_| {})
            .await
            .unwrap();
        let created = client
            .create_session()
            .environment_id(env.clone())
            .tab_id(uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
        let (_, path) = split_url(&created.stream_url);
        let mut target = SessionTarget::from(created);
        target.stream_url = format!("{gateway_url}{path}");
        let session = Session::connect(target.clone(), options).await.unwrap();
        times[usize::from(pre)].push(t0.elapsed().as_secs_f64() * 1000.0);
        session.close().await.unwrap();
        client
            .delete_session()
            .environment_id(env.clone())
            .session_id(target.session_id)
            .send()
            .await
            .unwrap();
    }
    let [mut without, mut with] = times;
    let (a, b) = (median(&mut without), median(&mut with));
    println!(
        "round trip {rtt_ms:>3} ms: first API call to a ready session, median of {RUNS}: \
         {a:7.1} ms without preconnect, {b:7.1} ms with it ({:+.1} ms)",
        b - a
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
