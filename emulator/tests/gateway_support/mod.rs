//! Test harness for the data-channel gateway: a gateway served on 127.0.0.1:0 with
//! an in-memory session directory, and a WebSocket client driving a client-role
//! `ssm_channel::Channel`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudshell_emulator::gateway::{
    Gateway, GatewayConfig, SessionDirectory, SessionGrant, SessionMode, SessionOptions,
};
use cloudshell_emulator::kms::FakeKms;
use futures_util::{SinkExt, StreamExt};
use ssm_channel::{Channel, ChannelConfig, Event, Frame, SeededIds, Token, Transmit, Uuid};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any wait in a test may take before the test fails (a guard against
/// hangs, not a timing assertion).
pub const GUARD: Duration = Duration::from_secs(30);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Default)]
pub struct TestDirectory {
    sessions: Mutex<HashMap<String, (String, SessionGrant)>>,
    pub touches: AtomicU64,
    pub authorized: AtomicU64,
}

impl SessionDirectory for TestDirectory {
    fn authorize(&self, session_id: &str, token: &str) -> Option<SessionGrant> {
        let g = self.sessions.lock().unwrap();
        let (t, grant) = g.get(session_id)?;
        if t == token {
            self.authorized.fetch_add(1, Ordering::Relaxed);
            Some(grant.clone())
        } else {
            None
        }
    }

    fn touch(&self, _environment_id: &str) {
        self.touches.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct TestGateway {
    pub gw: Gateway,
    pub dir: Arc<TestDirectory>,
    pub kms: Arc<FakeKms>,
    pub addr: SocketAddr,
    pub state: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start(config: GatewayConfig) -> TestGateway {
        let state = tempfile::tempdir().unwrap();
        let dir = Arc::new(TestDirectory::default());
        let kms = Arc::new(FakeKms::new("us-east-1", "123456789012"));
        let gw = Gateway::new(config, dir.clone(), state.path(), "us-east-1", kms.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = gw.router::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestGateway {
            gw,
            dir,
            kms,
            addr,
            state,
        }
    }

    /// A gateway whose sessions run `mode` (the other options default).
    pub async fn with_mode(mode: SessionMode) -> TestGateway {
        Self::with_defaults(SessionOptions {
            mode,
            ..SessionOptions::default()
        })
        .await
    }

    pub async fn with_defaults(options: SessionOptions) -> TestGateway {
        Self::start(GatewayConfig {
            defaults: options,
            ..GatewayConfig::default()
        })
        .await
    }

    /// Registers a session; returns (session id, token).
    pub fn add_session(&self, env: &str, tab: Option<&str>) -> (String, String) {
        let id = format!("sess-{}", Uuid::new_v4().simple());
        let token = format!("tok-{}", Uuid::new_v4().simple());
        self.dir.sessions.lock().unwrap().insert(
            id.clone(),
            (
                token.clone(),
                SessionGrant {
                    environment_id: env.into(),
                    tab_id: tab.map(Into::into),
                },
            ),
        );
        (id, token)
    }

    pub fn url(&self, session_id: &str) -> String {
        format!(
            "ws://{}/v1/data-channel/{session_id}?role=publish_subscribe&cell-number=AAEAAQ%3D%3D",
            self.addr
        )
    }

    pub async fn client(&self, env: &str, tab: Option<&str>) -> (String, Client) {
        let (id, token) = self.add_session(env, tab);
        let c = Client::connect(&self.url(&id), &token).await;
        (id, c)
    }
}

pub async fn raw_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// A client-role channel over a real WebSocket. Reconnects (same URL and token,
/// new request id, sequence state kept) when the connection drops.
pub struct Client {
    pub ws: Option<Ws>,
    pub ch: Channel,
    url: String,
    token: String,
    client_id: Uuid,
    pub output: Vec<u8>,
    /// `StdErr` payloads (a command with separate output streams).
    pub stderr: Vec<u8>,
    /// The `EXIT_CODE` a command reported.
    pub exit_code: Option<i32>,
    pub closed: Option<Option<String>>,
    /// Flags received from the agent side, in order.
    pub flags: Vec<u32>,
    pub ready: bool,
    pub reconnects: u32,
    pub auto_reconnect: bool,
    /// `(key id, challenge)` of a KMS handshake waiting for a data key.
    pub kms_request: Option<(String, Option<String>)>,
    pending_input: VecDeque<u8>,
}

impl Client {
    pub async fn connect(url: &str, token: &str) -> Client {
        let cfg = ChannelConfig::client(
            "1.2.677.0",
            Box::new(SeededIds::new(rand_seed())),
            Box::new(ssm_channel::SteppingClock::new(1_718_000_000_000, 1)),
        );
        let mut c = Client {
            ws: None,
            ch: Channel::new(cfg),
            url: url.into(),
            token: token.into(),
            client_id: Uuid::new_v4(),
            output: Vec::new(),
            stderr: Vec::new(),
            exit_code: None,
            closed: None,
            flags: Vec::new(),
            ready: false,
            reconnects: 0,
            auto_reconnect: true,
            kms_request: None,
            pending_input: VecDeque::new(),
        };
        c.open().await;
        c
    }

    async fn open(&mut self) {
        self.ws = Some(raw_connect(&self.url).await);
        self.ch
            .open(
                Instant::now(),
                Token::new(self.token.clone()),
                self.client_id,
                Uuid::new_v4(),
            )
            .unwrap();
    }

    pub fn send_input(&mut self, data: &[u8]) {
        self.pending_input.extend(data);
    }

    pub fn resize(&mut self, cols: u32, rows: u32) {
        self.ch.send_resize(Instant::now(), cols, rows).unwrap();
    }

    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Drops the connection (the client side of a network failure).
    pub fn drop_connection(&mut self) {
        self.ws = None;
    }

    async fn flush(&mut self) {
        let now = Instant::now();
        while !self.pending_input.is_empty() && self.ready {
            let (a, b) = self.pending_input.as_slices();
            let chunk: Vec<u8> = a.iter().chain(b).copied().take(1024).collect();
            let n = self.ch.send_input(now, &chunk).unwrap_or_default();
            if n == 0 {
                break;
            }
            self.pending_input.drain(..n);
        }
        while let Some(t) = self.ch.poll_transmit(now) {
            let Some(ws) = self.ws.as_mut() else { return };
            let msg = match t {
                Transmit::Text(s) => WsMessage::Text(s.into()),
                Transmit::Binary(b) => WsMessage::Binary(b),
            };
            if ws.send(msg).await.is_err() {
                self.ws = None;
                return;
            }
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.ch.poll_event() {
            match e {
                Event::Ready { .. } => self.ready = true,
                Event::Output(b) => self.output.extend_from_slice(&b),
                Event::StdErr(b) => self.stderr.extend_from_slice(&b),
                Event::ExitCode(c) => self.exit_code = Some(c),
                Event::Closed { reason } => self.closed = Some(reason),
                Event::Flag(f) => self.flags.push(f),
                Event::KmsDataKeyRequired { key_id, challenge } => {
                    self.kms_request = Some((key_id, challenge));
                }
                _ => {}
            }
        }
    }

    /// Drives the channel until `pred` holds; panics after [`GUARD`].
    pub async fn run_until(&mut self, what: &str, mut pred: impl FnMut(&Client) -> bool) {
        let give_up = Instant::now() + GUARD;
        loop {
            self.events();
            self.flush().await;
            self.events();
            if pred(self) {
                return;
            }
            if self.ch.is_closed() {
                panic!(
                    "channel closed ({:?}) while waiting for {what}; output so far: {:?}",
                    self.closed,
                    self.output_text()
                );
            }
            assert!(
                Instant::now() < give_up,
                "gave up waiting for {what}; output so far: {:?}",
                self.output_text()
            );
            if self.ws.is_none() {
                if !self.auto_reconnect {
                    panic!("connection lost while waiting for {what}");
                }
                self.reconnects += 1;
                self.open().await;
                continue;
            }
            let deadline = self
                .ch
                .poll_timeout()
                .unwrap_or(Instant::now() + Duration::from_millis(250))
                .min(give_up);
            let ws = self.ws.as_mut().unwrap();
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(WsMessage::Binary(b))) => {
                        let _ = self.ch.handle_incoming(Instant::now(), Frame::Binary(&b));
                    }
                    Some(Ok(WsMessage::Text(t))) => {
                        let _ = self.ch.handle_incoming(Instant::now(), Frame::Text(t.as_str()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => self.ws = None,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.ch.handle_timeout(Instant::now());
                }
            }
        }
    }

    pub async fn wait_for_output(&mut self, needle: &str) {
        self.run_until(&format!("output {needle:?}"), |c| {
            c.output_text().contains(needle)
        })
        .await;
    }

    pub async fn wait_closed(&mut self) -> Option<String> {
        let give_up = Instant::now() + GUARD;
        loop {
            self.events();
            if let Some(r) = &self.closed {
                return r.clone();
            }
            assert!(Instant::now() < give_up, "channel never closed");
            self.flush().await;
            let Some(ws) = self.ws.as_mut() else {
                panic!("connection lost before channel_closed");
            };
            let deadline = self
                .ch
                .poll_timeout()
                .unwrap_or(Instant::now() + Duration::from_millis(250))
                .min(give_up);
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(WsMessage::Binary(b))) => {
                        let _ = self.ch.handle_incoming(Instant::now(), Frame::Binary(&b));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => self.ws = None,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.ch.handle_timeout(Instant::now());
                }
            }
        }
    }
}

fn rand_seed() -> u64 {
    let u = Uuid::new_v4();
    u64::from_le_bytes(u.as_bytes()[..8].try_into().unwrap())
}

pub fn captures_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/plugin-captures")
}

pub fn capture(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(captures_dir().join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
