//! Shared set-up for the session tests: an emulator on 127.0.0.1:0 and a
//! client for it.
#![allow(dead_code)]

use std::time::Duration;

use cloudshell_emulator::gateway::SessionOptions as GwOptions;
use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, EmulatorHandle, Timings};
use cloudshell_rs::session::{Session, SessionEvent, SessionOptions, SessionTarget};
use cloudshell_rs::{Client, Credentials};

pub const AK: &str = "AKIDSESSIONTEST";
pub const SK: &str = "session-test-secret-key";

/// A running emulator, a client for it and its state directory.
pub struct Env {
    pub emulator: EmulatorHandle,
    pub client: Client,
    pub env_id: String,
    pub _dir: tempfile::TempDir,
    /// Printed if the test fails (dropped last).
    pub _log: crate::support::log_capture::LogCapture,
}

pub async fn start() -> Env {
    start_with(GwOptions::default()).await
}

pub async fn start_with(defaults: GwOptions) -> Env {
    start_config(|c| c.with_session_defaults(defaults)).await
}

/// An emulator on 127.0.0.1:0 (state in a temporary directory; instant
/// transitions; `configure` adds to the configuration), a client with static
/// credentials and an explicit region (so the AWS credential chain and IMDS
/// are never consulted), and the default environment RUNNING.
pub async fn start_config(configure: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> Env {
    let log = crate::support::log_capture::capture();
    cloudshell_rs::session::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let config = configure(
        EmulatorConfig::new(dir.path())
            .with_credentials(AcceptedCredentials::new(AK, SK))
            .with_timings(Timings::instant())
            .with_region("us-east-1"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = Emulator::start(config, listener).await.unwrap();
    let client = Client::builder()
        .region("us-east-1")
        .endpoint_url(emulator.endpoint())
        .credentials(Credentials::new(AK, SK, None, None, "test"))
        .build()
        .await
        .unwrap();
    let env_id = client.find_or_create_default().await.unwrap();
    client
        .wait_until_running(&env_id, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    Env {
        emulator,
        client,
        env_id,
        _dir: dir,
        _log: log,
    }
}

impl Env {
    /// CreateSession for `tab`.
    pub async fn create(&self, tab: &str) -> SessionTarget {
        let out = self
            .client
            .create_session()
            .environment_id(self.env_id.clone())
            .tab_id(tab.to_string())
            .send()
            .await
            .unwrap();
        SessionTarget::from(out)
    }

    /// CreateSession for a new tab whose session is a port session relayed
    /// to 127.0.0.1:`port` (as AWS-StartSSHSession makes one).
    pub async fn create_port(&self, port: u16) -> SessionTarget {
        let tab = new_tab();
        self.emulator.configure_tab(
            tab.clone(),
            GwOptions::default()
                .with_mode(cloudshell_emulator::gateway::SessionMode::Port { port }),
        );
        self.create(&tab).await
    }

    /// StopEnvironment: the service closes its sessions, saying why.
    pub async fn stop(&self) {
        self.client
            .stop_environment()
            .environment_id(self.env_id.clone())
            .send()
            .await
            .unwrap();
    }

    pub async fn connect(&self, tab: &str) -> Session {
        let target = self.create(tab).await;
        Session::connect(target, local_options()).await.unwrap()
    }
}

/// Options for the emulator's loopback `ws://` stream URLs.
pub fn local_options() -> SessionOptions {
    SessionOptions::default().allow_any_host()
}

pub fn new_tab() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Reads output until `needle` appears; returns everything read. Panics if the
/// session ends first (the test's own timeout bounds the wait).
pub async fn read_until(session: &mut Session, needle: &str) -> String {
    let mut out = String::new();
    loop {
        let Ok(ev) = tokio::time::timeout(Duration::from_secs(20), session.next_event()).await
        else {
            panic!("no event for 20 s while waiting for {needle:?}; output so far: {out:?}");
        };
        match ev {
            Some(SessionEvent::Output(b)) | Some(SessionEvent::StdErr(b)) => {
                out.push_str(&String::from_utf8_lossy(&b));
                if out.contains(needle) {
                    return out;
                }
            }
            Some(SessionEvent::Failed(e)) => {
                panic!("session failed: {e:?}; output so far: {out:?}")
            }
            Some(SessionEvent::Closed { reason }) => {
                panic!("session closed ({reason:?}) before {needle:?}; output: {out:?}")
            }
            None => panic!("session ended before {needle:?}; output: {out:?}"),
            Some(_) => {}
        }
    }
}

/// Reads until the session closes; returns the output.
pub async fn read_to_close(session: &mut Session) -> String {
    let mut out = String::new();
    loop {
        match session.next_event().await {
            Some(SessionEvent::Output(b)) | Some(SessionEvent::StdErr(b)) => {
                out.push_str(&String::from_utf8_lossy(&b))
            }
            Some(SessionEvent::Failed(e)) => {
                panic!("session failed: {e:?}; output so far: {out:?}")
            }
            Some(SessionEvent::Closed { .. }) | None => return out,
            Some(_) => {}
        }
    }
}

/// Bounds a test future (a hung test should fail, not stall CI).
pub async fn within<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test timed out")
}

/// Cuts the emulator's fault rules made, over all its sessions.
pub fn total_cuts(emulator: &cloudshell_emulator::EmulatorHandle) -> u64 {
    emulator
        .gateway()
        .all_session_metrics()
        .iter()
        .map(|m| m.faults.cuts)
        .sum()
}

/// What [`tcp_echo`] saw of its one connection.
#[derive(Debug)]
pub struct EchoSeen {
    /// Bytes echoed.
    pub echoed: u64,
    /// Whether the peer ended the connection (EOF) rather than the service.
    pub peer_closed: bool,
}

/// A TCP service on 127.0.0.1:0 for port sessions: it greets with `greeting`,
/// echoes what it receives, and closes when the peer does or once it has
/// echoed `limit` bytes. Returns its port and, when its (first) connection
/// ends, what it saw.
pub async fn tcp_echo(
    greeting: &'static [u8],
    limit: u64,
) -> (u16, tokio::sync::oneshot::Receiver<EchoSeen>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut seen = EchoSeen {
            echoed: 0,
            peer_closed: false,
        };
        if tcp.write_all(greeting).await.is_ok() {
            let mut buf = vec![0u8; 8192];
            while seen.echoed < limit {
                let room = usize::try_from(limit - seen.echoed).unwrap_or(usize::MAX);
                let want = buf.len().min(room);
                match tcp.read(&mut buf[..want]).await {
                    Ok(0) => {
                        seen.peer_closed = true;
                        break;
                    }
                    Ok(n) => {
                        if tcp.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        seen.echoed += n as u64;
                    }
                    Err(_) => break,
                }
            }
        }
        drop(tcp);
        let _ = tx.send(seen);
    });
    (port, rx)
}

/// `n` bytes with every value in them, the terminal's special ones
/// (`\n`, `\r`, Ctrl-C, Ctrl-D, `~`) included.
pub fn binary_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(7) % 256) as u8).collect()
}

/// A TCP service on 127.0.0.1:0 that answers only once it has all its input:
/// it reads `expect` bytes, writes `got N\n`, then waits for the peer to close.
pub async fn tcp_sink(expect: usize) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut got = 0;
        let mut buf = vec![0u8; 8192];
        while got < expect {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
        if tcp
            .write_all(format!("got {got}\n").as_bytes())
            .await
            .is_ok()
        {
            while let Ok(1..) = tcp.read(&mut buf).await {}
        }
    });
    port
}
