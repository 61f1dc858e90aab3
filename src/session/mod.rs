//! Native Session Manager sessions: an async driver over the data channel.
//!
//! [`Session::connect`] checks the `StreamUrl`, opens the WebSocket, sends the
//! open-data-channel frame and waits until the remote side is ready (the
//! session type is known). A single task then owns the protocol state machine
//! ([`ssm_channel`]), the socket and the timers, in the style of quinn's
//! connection driver: frames in, transmits out through one writer, timeouts
//! from the state machine, commands from the handles, events out through a
//! bounded queue. When the consumer is slow, the driver stops reading the
//! socket instead of buffering without limit.
//!
//! ```no_run
//! # async fn demo(target: cloudshell_rs::session::SessionTarget) -> Result<(), Box<dyn std::error::Error>> {
//! use cloudshell_rs::session::{Session, SessionEvent, SessionOptions};
//! let mut session = Session::connect(target, SessionOptions::default()).await?;
//! session.resize(120, 40).await?;
//! session.send_input(b"uname -a\r").await?;
//! while let Some(event) = session.next_event().await {
//!     match event {
//!         SessionEvent::Output(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
//!         SessionEvent::Closed { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Reconnecting
//!
//! When the WebSocket drops, the driver first dials the same `StreamUrl` again
//! and re-opens the same session on it with the sequence state kept, as the
//! official plugin does ([`SessionOptions::resume`]): unacknowledged messages
//! are resent in both directions and de-duplicated by sequence number, so
//! nothing is lost or repeated. A [`SessionOptions::resumer`] (for SSM
//! sessions: [`SsmClient`], `ssm:ResumeSession`) gets a fresh token for that
//! first. CloudShell has no `ResumeSession`; when the
//! service refuses the same session again, a [`Reconnector`] (supplied by the
//! caller) creates a new session for the same tab, which re-attaches to the
//! same shell. The driver opens a new channel and sends again every input byte
//! the old channel had not had acknowledged: none is lost and none that was
//! acknowledged is repeated, but a byte whose acknowledgement was lost in the
//! cut reaches the shell twice (a new session cannot know what the old one
//! received).

mod aws_json;
mod driver;
pub mod forward;
mod kms;
mod proxy;
mod ssm;
mod stream;
mod url;
mod ws;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use driver::CLIENT_VERSION;
pub use kms::{
    DATA_KEY_BYTES, DataKey, DataKeyProvider, DataKeyRequest, KmsClient, KmsError,
    default_kms_endpoint, kms_endpoint_from_env,
};
pub use proxy::{Proxy, ProxyError};
pub use ssm::{SsmClient, SsmError, default_ssm_endpoint};
pub use stream::SessionStream;
pub use url::HostPolicy;

use crate::Secret;

/// Installs rustls's ring provider as the process default, unless a provider
/// is already installed.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Where to connect: the three values of a CreateSession / StartSession response.
#[derive(Clone)]
pub struct SessionTarget {
    /// The data-channel WebSocket URL, used verbatim.
    pub stream_url: String,
    /// The one-time token sent in the first frame.
    pub token: Secret,
    /// The session id.
    pub session_id: String,
}

impl From<crate::types::CreateSessionOutput> for SessionTarget {
    /// The target of a CloudShell `CreateSession` response.
    fn from(out: crate::types::CreateSessionOutput) -> Self {
        Self {
            stream_url: out.stream_url,
            token: out.token_value,
            session_id: out.session_id,
        }
    }
}

impl fmt::Debug for SessionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTarget")
            .field("stream_url", &self.stream_url)
            .field("token", &self.token)
            .field("session_id", &self.session_id)
            .finish()
    }
}

/// A boxed error from caller-supplied code (a [`Reconnector`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Creates a fresh session for the same shell after the connection dropped
/// (for CloudShell: `CreateSession` with the same `TabId`).
pub trait Reconnector: Send + Sync + 'static {
    /// Returns the target of a new session; `previous_session_id` is the
    /// session that was lost (the implementation may delete it).
    fn reconnect<'a>(
        &'a self,
        previous_session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SessionTarget, BoxError>> + Send + 'a>>;
}

impl<F, Fut> Reconnector for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<SessionTarget, BoxError>> + Send + 'static,
{
    fn reconnect<'a>(
        &'a self,
        previous_session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SessionTarget, BoxError>> + Send + 'a>> {
        Box::pin(self(previous_session_id.to_string()))
    }
}

/// Options of [`Session::connect`].
#[derive(Clone)]
pub struct SessionOptions {
    /// Which hosts may receive the token (default: AWS message gateways only).
    pub host_policy: HostPolicy,
    /// When set, an AWS `StreamUrl` must name this region.
    pub expected_region: Option<String>,
    /// WebSocket opening-handshake timeout (default 45 s).
    pub connect_timeout: Duration,
    /// How long to wait for the remote side to become ready (default 60 s).
    pub ready_timeout: Duration,
    /// Interval of WebSocket keepalive pings (default 30 s).
    pub ping_interval: Duration,
    /// Declare the peer dead when nothing (not even a pong) arrived for this
    /// long (default 75 s). Raised to twice `ping_interval` if smaller.
    pub dead_peer_timeout: Duration,
    /// Creates a new session when the connection drops; `None` = no reconnect.
    pub reconnector: Option<Arc<dyn Reconnector>>,
    /// After the WebSocket dropped, first dial the same `StreamUrl` again and
    /// re-open the same session with its sequence state, so nothing is lost or
    /// repeated; only when the service refuses that, use the `reconnector`
    /// (default true).
    pub resume: bool,
    /// Gets a fresh token and stream URL for the same session before it is
    /// dialed again after a drop, as `ssm:ResumeSession` does ([`SsmClient`]);
    /// `None`, or a failure, dials with the token it has (default `None`).
    pub resumer: Option<Arc<dyn Reconnector>>,
    /// Reconnect attempts before giving up, for each of the two ways (default 5).
    pub max_reconnect_attempts: u32,
    /// First reconnect delay; doubled after each failure (default 200 ms).
    pub reconnect_delay: Duration,
    /// Generates data keys for KMS-encrypted sessions.
    pub data_key_provider: Option<Arc<dyn DataKeyProvider>>,
    /// `aws:ssm:TargetId` in the KMS encryption context (default: the session id).
    pub kms_target_id: Option<String>,
    /// Capacity of the event queue (default 64 events).
    pub event_queue: usize,
    /// Client id sent in every open-data-channel frame (default: a new UUID v4).
    pub client_id: Option<uuid::Uuid>,
    /// The proxy the WebSocket goes through (default: from `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as for the REST calls).
    pub proxy: Proxy,
    /// Whether [`preconnect`] opens a connection to the gateway ahead of the
    /// session (default true).
    pub preconnect: bool,
    /// The message gateway the stream URL is expected to name
    /// (`wss://host[:port]`), for [`preconnect`]. Default `None`: the AWS
    /// gateway of `expected_region` (`wss://ssmmessages.<region>.amazonaws.com`)
    /// under [`HostPolicy::AwsOnly`], and none otherwise.
    pub gateway: Option<String>,
}

impl fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionOptions")
            .field("host_policy", &self.host_policy)
            .field("expected_region", &self.expected_region)
            .field("connect_timeout", &self.connect_timeout)
            .field("ready_timeout", &self.ready_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("dead_peer_timeout", &self.dead_peer_timeout)
            .field("reconnect", &self.reconnector.is_some())
            .field("resume", &self.resume)
            .field("resumer", &self.resumer.is_some())
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("kms", &self.data_key_provider.is_some())
            .field("proxy", &self.proxy)
            .field("preconnect", &self.preconnect)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            host_policy: HostPolicy::AwsOnly,
            expected_region: None,
            connect_timeout: Duration::from_secs(45),
            ready_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(30),
            dead_peer_timeout: Duration::from_secs(75),
            reconnector: None,
            resume: true,
            resumer: None,
            max_reconnect_attempts: 5,
            reconnect_delay: Duration::from_millis(200),
            data_key_provider: None,
            kms_target_id: None,
            event_queue: 64,
            client_id: None,
            proxy: Proxy::default(),
            preconnect: true,
            gateway: None,
        }
    }
}

impl SessionOptions {
    /// The options for sessions created through `client`: with an AWS
    /// endpoint (`*.amazonaws.com`, `*.amazonaws.com.cn`, `*.api.aws`), only
    /// `wss://` to the message gateway of the client's region is accepted;
    /// with any other endpoint (the emulator, a custom one), any host.
    pub fn for_client(client: &crate::Client) -> Self {
        let host = client
            .endpoint()
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if host.ends_with(".amazonaws.com")
            || host.ends_with(".amazonaws.com.cn")
            || host.ends_with(".api.aws")
        {
            SessionOptions {
                expected_region: Some(client.region().to_string()),
                ..SessionOptions::default()
            }
        } else {
            SessionOptions::default().allow_any_host()
        }
    }

    /// Allows any `ws://`/`wss://` host (an emulator or a custom endpoint).
    pub fn allow_any_host(mut self) -> Self {
        self.host_policy = HostPolicy::AllowAny;
        self
    }

    /// Sets the reconnector.
    pub fn reconnector(mut self, r: impl Reconnector) -> Self {
        self.reconnector = Some(Arc::new(r));
        self
    }

    /// Sets the resumer (see [`SessionOptions::resumer`]).
    pub fn resumer(mut self, r: impl Reconnector) -> Self {
        self.resumer = Some(Arc::new(r));
        self
    }

    /// The gateway [`preconnect`] connects to: [`SessionOptions::gateway`],
    /// or the AWS one of `expected_region` under [`HostPolicy::AwsOnly`].
    pub fn gateway_url(&self) -> Option<String> {
        if let Some(g) = &self.gateway {
            return Some(g.clone());
        }
        match (self.host_policy, self.expected_region.as_deref()) {
            (HostPolicy::AwsOnly, Some(region)) => url::aws_gateway(region),
            _ => None,
        }
    }

    /// Sets the data-key provider for KMS-encrypted sessions.
    pub fn data_key_provider(mut self, p: impl DataKeyProvider) -> Self {
        self.data_key_provider = Some(Arc::new(p));
        self
    }
}

/// Starts opening a connection to the message gateway `options` expect
/// ([`SessionOptions::gateway_url`]) in the background: the name lookup, the
/// TCP handshake, the proxy's tunnel and the TLS handshake then overlap the
/// API calls that come before a session (GetEnvironmentStatus,
/// CreateSession), instead of following them. The next session whose stream
/// URL names that host and port (through the same proxy) within 20 s takes
/// the connection; otherwise it is dropped, unused. No token or session data
/// is sent on it before that. Does nothing when `options.preconnect` is
/// false, when no gateway is known, or outside a Tokio runtime.
///
/// `exec`, the `transfer` functions and [`Session::connect`]'s callers in
/// this crate call it themselves; call it before CreateSession when you open
/// sessions yourself.
pub fn preconnect(options: &SessionOptions) {
    if !options.preconnect {
        return;
    }
    if let Some(gateway) = options.gateway_url() {
        ws::preconnect(&gateway, &options.proxy);
    }
}

/// Something that happened in the session.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Output of the remote terminal or command (stdout).
    Output(Bytes),
    /// Separate standard error (NonInteractiveCommands only).
    StdErr(Bytes),
    /// Exit status of a NonInteractiveCommands session.
    ExitCode(i32),
    /// The service paused publication (the agent is not attached).
    Paused,
    /// The service resumed publication.
    Resumed,
    /// The connection dropped; a new session is being created.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why the connection was lost.
        reason: String,
    },
    /// Re-attached through a new session; unacknowledged input was sent again.
    Reconnected {
        /// The new session id.
        session_id: String,
        /// Input bytes sent again on the new channel.
        resent_bytes: usize,
    },
    /// The session ended normally (the remote side closed it, or [`Session::close`]).
    Closed {
        /// The reason text given by the service, if any.
        reason: Option<String>,
    },
    /// A flag from the agent (payload type 10), such as 3, `ConnectToPortError`,
    /// when a forwarded port cannot be reached.
    Flag(u32),
    /// The session failed. This is the last event.
    Failed(SessionError),
}

/// Errors of a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The `StreamUrl` is not a usable WebSocket URL.
    #[error("invalid stream URL: {reason}")]
    InvalidStreamUrl {
        /// What is wrong.
        reason: String,
    },
    /// The `StreamUrl` points somewhere the token must not go.
    #[error("refusing to send the session token to {host}: {reason}")]
    RefusedHost {
        /// The host of the URL.
        host: String,
        /// Why it was refused.
        reason: String,
    },
    /// The WebSocket could not be opened.
    #[error("cannot open the data channel WebSocket to {host}")]
    Connect {
        /// The host.
        host: String,
        /// The cause.
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// Opening the WebSocket took too long.
    #[error("timed out after {0:?} opening the data channel WebSocket")]
    ConnectTimeout(Duration),
    /// The service closed the channel before the session started; usually a
    /// bad or expired token.
    #[error("the service closed the data channel before the session started (is the session token valid and unused?){}", fmt_reason(.reason))]
    Rejected {
        /// Text from the service, if any.
        reason: Option<String>,
    },
    /// The remote side did not become ready in time.
    #[error("the session did not start within {0:?}")]
    NotReady(Duration),
    /// Nothing arrived from the peer, not even a pong, for too long.
    #[error("the data channel peer stopped responding (nothing received for {0:?})")]
    PeerDead(Duration),
    /// The WebSocket failed.
    #[error("data channel connection lost")]
    ConnectionLost(#[source] tokio_tungstenite::tungstenite::Error),
    /// The WebSocket was closed by the peer without a protocol close.
    #[error("the data channel WebSocket was closed by the peer{}", fmt_reason(.0))]
    SocketClosed(Option<String>),
    /// The data-channel protocol failed (see the source for who is at fault).
    #[error("data channel protocol error")]
    Protocol(#[source] ssm_channel::Error),
    /// KMS encryption was requested and could not be set up.
    #[error("cannot set up KMS encryption for the session")]
    Kms(#[source] KmsError),
    /// Reconnecting failed after the given number of attempts.
    #[error("could not reconnect after {attempts} attempt(s)")]
    Reconnect {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: BoxError,
    },
    /// The session is closed (the driver has stopped).
    #[error("the session is closed")]
    Closed,
}

fn fmt_reason(r: &Option<String>) -> String {
    match r {
        Some(r) if !r.trim().is_empty() => format!(": {}", r.trim()),
        _ => String::new(),
    }
}

/// Input commands, ordered with the data.
#[derive(Debug)]
pub(crate) enum InputCmd {
    Data(Bytes),
    /// Resolve once every input byte sent so far is acknowledged.
    Flush(oneshot::Sender<()>),
    /// A `Flag` message, in sequence after the input before it.
    Flag(u32),
}

/// Control commands, handled at once (never behind input back-pressure).
#[derive(Debug)]
pub(crate) enum CtlCmd {
    Resize(u16, u16),
    Close(oneshot::Sender<()>),
}

/// Information known once the session is ready.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadyInfo {
    pub session_type: String,
    pub session_properties: serde_json::Value,
    pub customer_message: Option<String>,
    pub agent_version: Option<String>,
}

/// Sending half of a session: input, resize, close. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionWriter {
    input: mpsc::Sender<InputCmd>,
    ctl: mpsc::UnboundedSender<CtlCmd>,
}

impl SessionWriter {
    /// Queues input bytes (keystrokes, a paste). Waits while the send window
    /// and the queue are full. Cancel-safe: if the future is dropped before it
    /// completes, none of the bytes were queued.
    pub async fn send_input(&self, data: &[u8]) -> Result<(), SessionError> {
        if data.is_empty() {
            return Ok(());
        }
        let permit = self
            .input
            .reserve()
            .await
            .map_err(|_| SessionError::Closed)?;
        permit.send(InputCmd::Data(Bytes::copy_from_slice(data)));
        Ok(())
    }

    /// Tells the remote terminal its new size.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), SessionError> {
        self.ctl
            .send(CtlCmd::Resize(cols, rows))
            .map_err(|_| SessionError::Closed)
    }

    /// Waits until every input byte queued so far has been acknowledged by
    /// the remote side.
    pub async fn flush(&self) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        self.input
            .send(InputCmd::Flush(tx))
            .await
            .map_err(|_| SessionError::Closed)?;
        rx.await.map_err(|_| SessionError::Closed)
    }

    /// Sends a `Flag` message (payload type 10) in sequence after the input
    /// queued so far, e.g. `DisconnectToPort` (1) in basic port forwarding.
    /// Waits like [`send_input`](Self::send_input) while the queue is full.
    pub async fn send_flag(&self, flag: u32) -> Result<(), SessionError> {
        self.input
            .send(InputCmd::Flag(flag))
            .await
            .map_err(|_| SessionError::Closed)
    }

    /// Asks the agent to end a port session (the `TerminateSession` flag),
    /// after the input queued so far, once all of it is acknowledged. The
    /// session then closes from the remote side; shell sessions ignore it.
    pub async fn terminate(&self) -> Result<(), SessionError> {
        self.flush().await?;
        self.send_flag(ssm_channel::payload::Flag::TERMINATE_SESSION.0)
            .await
    }

    /// Closes the session now and waits for the driver to stop.
    pub async fn close(&self) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(CtlCmd::Close(tx)).is_err() {
            return Ok(()); // already stopped
        }
        let _ = rx.await;
        Ok(())
    }
}

/// Receiving half of a session: events.
#[derive(Debug)]
pub struct SessionReader {
    events: mpsc::Receiver<SessionEvent>,
}

impl SessionReader {
    /// The next event; `None` after the last one. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    pub(crate) fn poll_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<SessionEvent>> {
        self.events.poll_recv(cx)
    }
}

/// A connected session.
#[derive(Debug)]
pub struct Session {
    writer: SessionWriter,
    reader: SessionReader,
    session_id: String,
    info: ReadyInfo,
}

impl Session {
    /// Connects to a session and waits until it is ready.
    ///
    /// The `StreamUrl` is checked against `options.host_policy` before
    /// anything is sent.
    pub async fn connect(
        target: SessionTarget,
        options: SessionOptions,
    ) -> Result<Session, SessionError> {
        let session_id = target.session_id.clone();
        let (writer, reader, info) = driver::start(target, options).await?;
        Ok(Session {
            writer: SessionWriter {
                input: writer.0,
                ctl: writer.1,
            },
            reader: SessionReader { events: reader },
            session_id,
            info,
        })
    }

    /// The id of the session this handle connected to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The session type announced by the agent (`Standard_Stream` when there
    /// was no handshake).
    pub fn session_type(&self) -> &str {
        &self.info.session_type
    }

    /// The `Properties` of the agent's session type (`Null` when there were
    /// none): for a `Port` session, `portNumber` and, when it forwards a local
    /// port rather than the standard streams, `"type": "LocalPortForwarding"`.
    pub fn session_properties(&self) -> &serde_json::Value {
        &self.info.session_properties
    }

    /// The message the agent asked to show the user, if any.
    pub fn customer_message(&self) -> Option<&str> {
        self.info.customer_message.as_deref()
    }

    /// The agent's version from its handshake (`None` without a handshake).
    /// Port forwarding decides between its modes on it.
    pub fn agent_version(&self) -> Option<&str> {
        self.info.agent_version.as_deref()
    }

    /// See [`SessionWriter::send_input`].
    pub async fn send_input(&self, data: &[u8]) -> Result<(), SessionError> {
        self.writer.send_input(data).await
    }

    /// See [`SessionWriter::resize`].
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), SessionError> {
        self.writer.resize(cols, rows).await
    }

    /// See [`SessionWriter::flush`].
    pub async fn flush(&self) -> Result<(), SessionError> {
        self.writer.flush().await
    }

    /// See [`SessionWriter::terminate`].
    pub async fn terminate(&self) -> Result<(), SessionError> {
        self.writer.terminate().await
    }

    /// See [`SessionWriter::close`].
    pub async fn close(&self) -> Result<(), SessionError> {
        self.writer.close().await
    }

    /// The next event; `None` after the last one. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.reader.next_event().await
    }

    /// A clone of the sending half.
    pub fn writer(&self) -> SessionWriter {
        self.writer.clone()
    }

    /// Splits into a sending and a receiving half.
    pub fn into_split(self) -> (SessionWriter, SessionReader) {
        (self.writer, self.reader)
    }

    /// A byte stream: reading gives the remote output (stdout and stderr in
    /// arrival order, EOF when the session closes), writing sends input, and
    /// shutting down waits until all input is acknowledged.
    pub fn into_stream(self) -> SessionStream {
        SessionStream::new(self.writer, self.reader)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn client(endpoint: &str) -> crate::Client {
        crate::Client::builder()
            .region("eu-west-1")
            .credentials(aws_credential_types::Credentials::new(
                "AK", "SK", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build()
            .await
            .unwrap()
    }

    /// AWS endpoints get their region's gateways only; others any host.
    #[tokio::test]
    async fn options_for_a_client_follow_its_endpoint() {
        for aws in [
            "https://cloudshell.eu-west-1.amazonaws.com",
            "https://cloudshell.cn-north-1.amazonaws.com.cn/",
            "https://cloudshell.eu-west-1.api.aws",
        ] {
            let o = SessionOptions::for_client(&client(aws).await);
            assert_eq!(o.host_policy, HostPolicy::AwsOnly, "{aws}");
            assert_eq!(o.expected_region.as_deref(), Some("eu-west-1"), "{aws}");
        }
        for other in ["http://127.0.0.1:4566", "https://amazonaws.com.example.org"] {
            let o = SessionOptions::for_client(&client(other).await);
            assert_eq!(o.host_policy, HostPolicy::AllowAny, "{other}");
            assert_eq!(o.expected_region, None, "{other}");
        }
    }
}
