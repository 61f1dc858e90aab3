//! One session's task: the agent-role channel between the session's WebSockets
//! (one at a time; a client may reconnect) and its program.
//!
//! A single `select!` loop feeds WebSocket frames and timer expiries into the
//! [`Channel`], writes the channel's transmits to the socket, moves program output
//! into the channel as fast as its send window allows, sends the flags the
//! program asks for (see [`FlagQueue`](super::backend::FlagQueue)), and passes
//! channel events (input, resize, handshake steps) to the program. Fault injection sits between
//! the socket and the channel in both directions.

use futures_util::SinkExt as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use rand::RngCore;
use ssm_channel::payload::{
    ACTION_KMS_ENCRYPTION, ACTION_SESSION_TYPE, Acknowledge, ActionParameters, Flag,
    KmsEncryptionRequest, RequestedClientAction, SessionTypeRequest,
};
use ssm_channel::{
    Channel, ChannelConfig, Event, Frame, HandshakeRequest, IdSource, PayloadType, Transmit, Uuid,
    WallClock,
};
use tokio::sync::{mpsc, watch};

use super::backend::{Backend, BackendInput, PipeRead};
use super::faults::FaultInjector;
use super::metrics::LiveMetrics;
use super::options::{Direction, HandshakeMode, SessionMode, SessionOptions};
use super::{CloseReason, Gateway, GatewayConfig, Incoming, SessionGrant, TabSlot};
use ssm_channel::is_acknowledge_frame as is_ack;

/// Agent version announced in handshake requests.
pub const EMULATED_AGENT_VERSION: &str = "3.3.1142.0";

/// The agent version reported in [`SessionMode::ForwardBasic`] sessions: the
/// last one that does not multiplex port forwarding.
pub const BASIC_FORWARDING_AGENT_VERSION: &str = "3.0.196.0";

/// How long the agent side waits for each handshake step (like the real agent).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Payload sent in the gateway's WebSocket pings.
const PING_PAYLOAD: &[u8] = b"keepalive";

/// Output sent when a client re-attaches to a tab whose program has nothing new
/// to print ("show cursor": a visual no-op, standing in for the screen redraw of a
/// tmux re-attach). Without output the client would never learn that the session
/// has started.
const REATTACH_NUDGE: &[u8] = b"\x1b[?25h";

/// Activity is reported to the REST side at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// After its close frame, how long the gateway keeps reading (and dropping)
/// what the client still sends, waiting for the client's close or the end of
/// the connection. Closing a TCP connection with unread data resets it, and a
/// reset can destroy the `channel_closed` message before the client reads it.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// Message ids from UUID v4 and random bytes from the thread-local CSPRNG.
struct OsIds;

impl IdSource for OsIds {
    fn next_id(&mut self) -> Uuid {
        // From the thread's CSPRNG: `Uuid::new_v4` makes one getrandom(2)
        // system call per message sent.
        uuid::Builder::from_random_bytes(rand::random()).into_uuid()
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        rand::rng().fill_bytes(buf);
    }
}

/// `CreatedDate` from the system clock.
struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now_millis(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(1)
            .max(1)
    }
}

/// The program a session drives.
pub(crate) struct Program {
    pub backend: Arc<Backend>,
    /// `((environment id, tab id), slot)` when the program belongs to a tab.
    pub tab: Option<((String, String), Arc<TabSlot>)>,
    /// Set to true once the session has let go of the program.
    pub released: watch::Sender<bool>,
    /// The program was already running for its tab (a re-attach).
    pub reattached: bool,
}

/// Everything a session task starts with.
pub(crate) struct SessionSetup {
    pub gateway: Gateway,
    pub session_id: String,
    pub grant: SessionGrant,
    pub options: SessionOptions,
    pub config: GatewayConfig,
    pub metrics: Arc<LiveMetrics>,
    pub program: Program,
    pub connect: mpsc::UnboundedReceiver<Incoming>,
    pub close: mpsc::UnboundedReceiver<CloseReason>,
}

/// How the session ends.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Keep going.
    Running,
    /// `channel_closed` was queued; flush it, then stop.
    Closing { keep_program: bool },
    /// Stop now.
    Stop { keep_program: bool },
}

pub(crate) struct SessionTask {
    gw: Gateway,
    session_id: String,
    grant: SessionGrant,
    options: SessionOptions,
    config: GatewayConfig,
    metrics: Arc<LiveMetrics>,
    program: Program,
    connect: mpsc::UnboundedReceiver<Incoming>,
    close: mpsc::UnboundedReceiver<CloseReason>,

    channel: Channel,
    faults: FaultInjector,
    ws: Option<WebSocket>,
    /// Output handed to the channel and not yet acknowledged, by sequence number
    /// (plaintext), so that it can be put back for the tab's next session.
    inflight: BTreeMap<i64, Bytes>,
    opened: bool,
    output_enabled: bool,
    handshake_deadline: Option<Instant>,
    program_done: bool,
    program_done_at: Option<Instant>,
    /// A command's `EXIT_CODE` message has been sent.
    exit_code_sent: bool,
    detached_at: Option<Instant>,
    next_ping: Option<Instant>,
    ping_outstanding: Option<Instant>,
    last_touch: Option<Instant>,
    nudge_pending: bool,
    ending: Ending,
}

impl SessionTask {
    pub(crate) fn new(s: SessionSetup) -> Self {
        let mut cc = ChannelConfig::agent(Box::new(OsIds), Box::new(SystemWallClock));
        cc.chunk_size = s.options.effective_chunk_size();
        cc.session_id = s.session_id.clone();
        let faults = FaultInjector::new(s.options.faults.clone());
        let nudge_pending = s.program.reattached;
        Self {
            gw: s.gateway,
            session_id: s.session_id,
            grant: s.grant,
            options: s.options,
            config: s.config,
            metrics: s.metrics,
            program: s.program,
            connect: s.connect,
            close: s.close,
            channel: Channel::new(cc),
            faults,
            ws: None,
            inflight: BTreeMap::new(),
            opened: false,
            output_enabled: false,
            handshake_deadline: None,
            program_done: false,
            program_done_at: None,
            exit_code_sent: false,
            detached_at: None,
            next_ping: None,
            ping_outstanding: None,
            last_touch: None,
            nudge_pending,
            ending: Ending::Running,
        }
    }

    fn backend(&self) -> &Arc<Backend> {
        &self.program.backend
    }

    /// Runs the session until it ends, then lets go of the program.
    pub(crate) async fn run(mut self, first: Incoming) {
        self.attach(Instant::now(), first);
        let keep_program = loop {
            let now = Instant::now();
            self.process_events(now);
            self.pump_output(now);
            self.pump_flags(now);
            self.process_events(now);
            self.flush(now).await;
            self.sync_metrics();
            self.check_end(now);
            match self.ending {
                Ending::Running => {}
                Ending::Closing { keep_program } => {
                    self.flush(now).await;
                    if let Some(mut ws) = self.ws.take() {
                        let _ = ws.send(WsMessage::Close(None)).await;
                        drain_until_closed(&mut ws).await;
                    }
                    break keep_program;
                }
                Ending::Stop { keep_program } => break keep_program,
            }
            self.wait(now).await;
        };
        self.sync_metrics();
        self.release(keep_program);
    }

    // ---------------------------------------------------------------- attach

    fn attach(&mut self, now: Instant, incoming: Incoming) {
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        // A newer connection replaces an older one (dropping a socket closes it).
        self.ws = Some(incoming.socket);
        self.detached_at = None;
        self.ping_outstanding = None;
        self.next_ping = self.options.ping_interval.map(|p| now + p);
        if let Err(e) = self
            .channel
            .handle_incoming(now, Frame::Text(&incoming.open_text))
        {
            tracing::warn!(session_id = %self.session_id, "open frame rejected by the channel: {e}");
        }
        self.touch(now, true);
    }

    fn detach(&mut self, now: Instant, why: &str) {
        if self.ws.take().is_some() {
            tracing::debug!(session_id = %self.session_id, "data channel connection lost: {why}");
            self.detached_at = Some(now);
            self.ping_outstanding = None;
            self.next_ping = None;
        }
    }

    fn touch(&mut self, now: Instant, force: bool) {
        if force || self.last_touch.is_none_or(|t| now >= t + TOUCH_EVERY) {
            self.last_touch = Some(now);
            self.gw.touch(&self.grant.environment_id);
        }
    }

    // ---------------------------------------------------------------- events

    fn process_events(&mut self, now: Instant) {
        while let Some(ev) = self.channel.poll_event() {
            match ev {
                Event::Opened(_) if !self.opened => {
                    self.opened = true;
                    self.start_handshake(now);
                }
                Event::Input(bytes) => {
                    LiveMetrics::add(&self.metrics.input_bytes, bytes.len() as u64);
                    self.backend().send(BackendInput::Bytes(bytes));
                }
                Event::Resize { cols, rows } => {
                    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX).max(1);
                    self.backend().send(BackendInput::Resize {
                        cols: clamp(cols),
                        rows: clamp(rows),
                    });
                }
                Event::DataKeyDecryptRequired {
                    ciphertext_blob, ..
                } => {
                    match self
                        .gw
                        .inner
                        .kms
                        .decrypt_for_session(&ciphertext_blob, &self.session_id)
                    {
                        Ok(key) => {
                            if let Err(e) = self.channel.accept_data_key(now, &key) {
                                tracing::warn!(session_id = %self.session_id, "data key not usable: {e}");
                                self.close_channel(now, "KMS data key is not usable", false);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(session_id = %self.session_id, "KMS decrypt failed: {e}");
                            self.close_channel(now, "KMS decrypt failed", false);
                        }
                    }
                }
                Event::HandshakeComplete => {
                    self.output_enabled = true;
                    self.handshake_deadline = None;
                }
                Event::Closed { reason } if self.ending == Ending::Running => {
                    if let Some(e) = self.channel.error() {
                        tracing::warn!(session_id = %self.session_id, "channel failed: {}", e.chain());
                    } else {
                        tracing::debug!(session_id = %self.session_id, ?reason, "channel closed");
                    }
                    // A fatal error: nothing more can be sent on this channel.
                    self.ending = Ending::Stop { keep_program: true };
                }
                // A port session ends at the client's TerminateSession (agents
                // after 2.3.722.0); shell sessions ignore flags, like the agent.
                Event::Flag(flag)
                    if flag == Flag::TERMINATE_SESSION.0
                        && self.options.takes_terminate_flag()
                        && matches!(
                            self.options.mode,
                            SessionMode::Port { .. }
                                | SessionMode::Forward { .. }
                                | SessionMode::ForwardBasic { .. }
                        ) =>
                {
                    tracing::debug!(session_id = %self.session_id, "TerminateSession");
                    self.backend().send(BackendInput::Terminate);
                }
                // Basic port forwarding: the client's local connection closed.
                Event::Flag(flag)
                    if flag == Flag::DISCONNECT_TO_PORT.0
                        && matches!(self.options.mode, SessionMode::ForwardBasic { .. }) =>
                {
                    tracing::debug!(session_id = %self.session_id, "DisconnectToPort");
                    self.backend().send(BackendInput::Disconnect);
                }
                // Handshake responses are checked by the channel.
                _ => {}
            }
        }
    }

    fn start_handshake(&mut self, now: Instant) {
        let mut handshake = self.options.handshake.clone();
        let (session_type, properties) = match (&self.options.mode, &handshake) {
            // AWS-StartSSHSession's properties: no `type`, so the client
            // forwards its standard streams.
            (SessionMode::Port { port }, _) => (
                "Port",
                serde_json::json!({ "portNumber": port.to_string() }),
            ),
            // AWS-StartPortForwardingSession's properties; the agent version
            // tells the client to multiplex with smux.
            (SessionMode::Forward { port } | SessionMode::ForwardBasic { port }, _) => (
                "Port",
                serde_json::json!({
                    "portNumber": port.to_string(),
                    "type": "LocalPortForwarding",
                    "localPortNumber": "0",
                }),
            ),
            // Announced only (the program is whatever the mode says):
            // AWS-StartPortForwardingSession's properties.
            (_, HandshakeMode::Port) => (
                "Port",
                serde_json::json!({
                    "portNumber": "22",
                    "type": "LocalPortForwarding",
                    "localPortNumber": "0",
                }),
            ),
            // AWS-StartNonInteractiveCommand's, with separate output streams.
            (SessionMode::Command { command }, _) => (
                "NonInteractiveCommands",
                serde_json::json!({
                    "commands": command,
                    "separateOutputStream": true,
                }),
            ),
            _ => ("Standard_Stream", serde_json::Value::Null),
        };
        let session_type = RequestedClientAction {
            action_type: ACTION_SESSION_TYPE.into(),
            action_parameters: ActionParameters::SessionType(SessionTypeRequest {
                session_type: session_type.into(),
                properties,
            }),
        };
        let always_handshake = matches!(
            self.options.mode,
            SessionMode::Echo
                | SessionMode::Port { .. }
                | SessionMode::Forward { .. }
                | SessionMode::ForwardBasic { .. }
                | SessionMode::Command { .. }
        );
        if handshake == HandshakeMode::None && always_handshake {
            // Echo: nothing would tell the client the session type before its
            // first input. Port sessions always start with a handshake.
            handshake = HandshakeMode::SessionType;
        }
        let actions = match &handshake {
            HandshakeMode::None => {
                self.output_enabled = true;
                return;
            }
            HandshakeMode::SessionType | HandshakeMode::Port => vec![session_type],
            HandshakeMode::Kms { key_id } => {
                let mut challenge = [0u8; 16];
                rand::rng().fill_bytes(&mut challenge);
                vec![
                    session_type,
                    RequestedClientAction {
                        action_type: ACTION_KMS_ENCRYPTION.into(),
                        action_parameters: ActionParameters::KmsEncryption(KmsEncryptionRequest {
                            kms_key_id: key_id.clone(),
                            challenge: Some(B64.encode(challenge)),
                        }),
                    },
                ]
            }
        };
        let request = HandshakeRequest {
            agent_version: self.options.agent_version().into(),
            requested_client_actions: actions,
        };
        match self.channel.start_handshake(now, request) {
            Ok(()) => self.handshake_deadline = Some(now + 2 * HANDSHAKE_TIMEOUT),
            Err(e) => {
                tracing::warn!(session_id = %self.session_id, "cannot start the handshake: {e}");
                self.output_enabled = true;
            }
        }
    }

    // ---------------------------------------------------------------- output

    /// Moves program output into the channel while its send window has room.
    fn pump_output(&mut self, now: Instant) {
        if !self.output_enabled || self.ending != Ending::Running || self.ws.is_none() {
            return;
        }
        let chunk = self.options.effective_chunk_size();
        if std::mem::take(&mut self.nudge_pending) && self.backend().output.is_empty() {
            let seq = self.channel.next_sequence_number();
            if let Ok(n) = self
                .channel
                .send_output(now, PayloadType::Output, REATTACH_NUDGE)
                && n > 0
            {
                self.inflight
                    .insert(seq, Bytes::from_static(&REATTACH_NUDGE[..n]));
            }
        }
        // Borrowed field by field (the channel is written to meanwhile).
        let output = &self.program.backend.output;
        let errors = self.program.backend.errors.as_deref();
        loop {
            let room = self.channel.send_window_room();
            if room == 0 {
                return;
            }
            // stdout first, then stderr (sent as StdErr messages); the program
            // is done when both have ended.
            let (data, payload_type, pipe) = match output.read(chunk.min(room)) {
                PipeRead::Data(d) => (d, PayloadType::Output, &**output),
                out => match errors.map(|e| (e.read(chunk.min(room)), e)) {
                    Some((PipeRead::Data(d), e)) => (d, PayloadType::StdErr, e),
                    Some((PipeRead::Empty, _)) => return,
                    None | Some((PipeRead::Eof, _)) => {
                        if matches!(out, PipeRead::Eof) && !self.program_done {
                            self.program_done = true;
                            self.program_done_at = Some(now);
                        }
                        return;
                    }
                },
            };
            let seq = self.channel.next_sequence_number();
            match self.channel.send_output(now, payload_type, &data) {
                Ok(n) => {
                    LiveMetrics::add(&self.metrics.output_bytes, n as u64);
                    if n < data.len() {
                        // Not expected (the window had room): keep the rest.
                        pipe.unread(&data[n..]);
                    }
                    if n > 0 && payload_type == PayloadType::Output {
                        self.inflight.insert(seq, data.slice(..n));
                    }
                }
                Err(e) => {
                    pipe.unread(&data);
                    tracing::debug!(session_id = %self.session_id, "output not accepted: {e}");
                    return;
                }
            }
        }
    }

    /// Sends the flags the program asked for, once output may flow.
    fn pump_flags(&mut self, now: Instant) {
        if !self.flags_enabled() {
            return;
        }
        while let Some(flag) = self.backend().flags.pop() {
            if let Err(e) = self.channel.send_flag(now, flag) {
                // The window is full even for control messages: retry after
                // the next acknowledgement.
                self.backend().flags.put_back(flag);
                tracing::debug!(session_id = %self.session_id, flag, "flag not accepted yet: {e}");
                return;
            }
            tracing::debug!(session_id = %self.session_id, flag, "flag sent");
        }
    }

    /// Whether program flags can go into the channel now.
    fn flags_enabled(&self) -> bool {
        self.output_enabled && self.ending == Ending::Running && self.ws.is_some()
    }

    // ---------------------------------------------------------------- frames

    /// Writes everything the channel wants to send (through fault injection):
    /// all frames into the socket's buffer, then one flush, so a burst leaves
    /// in as few writes (and TCP segments) as it fits.
    async fn flush(&mut self, now: Instant) {
        if self.ws.is_none() {
            return;
        }
        let mut fed = false;
        while let Some(t) = self.channel.poll_transmit(now) {
            let frame = match t {
                Transmit::Binary(b) => b,
                // The agent role sends no text frames; pass one through unchanged.
                Transmit::Text(s) => {
                    fed |= self.feed_ws(now, WsMessage::Text(s.into())).await;
                    continue;
                }
            };
            for f in self.faults.on_frame(now, Direction::Out, frame) {
                fed |= self.feed_binary(now, f).await;
            }
            if self.faults.take_cut() {
                // What was fed before the cut still goes out.
                self.flush_ws(now).await;
                self.cut(now);
            }
            if self.ws.is_none() {
                return;
            }
        }
        if fed {
            self.flush_ws(now).await;
        }
    }

    /// Sends one binary frame now (frames held back by fault injection).
    async fn send_binary(&mut self, now: Instant, frame: Bytes) {
        if self.feed_binary(now, frame).await {
            self.flush_ws(now).await;
        }
    }

    async fn feed_binary(&mut self, now: Instant, frame: Bytes) -> bool {
        let len = frame.len() as u64;
        if is_ack(&frame) {
            self.metrics.acks_out.fetch_add(1, Ordering::Relaxed);
        }
        let fed = self.feed_ws(now, WsMessage::Binary(frame)).await;
        if fed {
            self.metrics.frames_out.fetch_add(1, Ordering::Relaxed);
            self.metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
        }
        fed
    }

    async fn send_ws(&mut self, now: Instant, msg: WsMessage) -> bool {
        self.feed_ws(now, msg).await && self.flush_ws(now).await
    }

    /// Queues a message in the socket's write buffer (written when it fills).
    async fn feed_ws(&mut self, now: Instant, msg: WsMessage) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        match ws.feed(msg).await {
            Ok(()) => true,
            Err(e) => {
                self.detach(now, &e.to_string());
                false
            }
        }
    }

    async fn flush_ws(&mut self, now: Instant) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        match ws.flush().await {
            Ok(()) => true,
            Err(e) => {
                self.detach(now, &e.to_string());
                false
            }
        }
    }

    fn cut(&mut self, now: Instant) {
        if self.ws.is_some() {
            tracing::debug!(session_id = %self.session_id, "fault injection: cutting the connection");
            // Dropping the socket closes the TCP connection without a close frame.
            self.detach(now, "cut by fault injection");
        }
    }

    /// One binary frame from the client, after fault injection.
    fn feed(&mut self, now: Instant, frame: Bytes) {
        if let Some(seq) = acked_sequence(&frame) {
            self.inflight.remove(&seq);
        }
        if let Err(e) = self.channel.handle_incoming_bytes(now, frame) {
            if e.is_fatal() {
                tracing::warn!(session_id = %self.session_id, "fatal channel error: {}", e.chain());
            } else {
                tracing::debug!(session_id = %self.session_id, "frame ignored: {e}");
            }
        }
    }

    fn on_ws_message(&mut self, now: Instant, msg: Option<Result<WsMessage, axum::Error>>) {
        match msg {
            Some(Ok(WsMessage::Binary(b))) => {
                self.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .bytes_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                self.touch(now, false);
                for f in self.faults.on_frame(now, Direction::In, b) {
                    self.feed(now, f);
                }
                if self.faults.take_cut() {
                    self.cut(now);
                }
            }
            Some(Ok(WsMessage::Text(t))) => {
                // A repeated open frame on the same socket, or a message sent as text.
                self.touch(now, false);
                if let Err(e) = self.channel.handle_incoming(now, Frame::Text(t.as_str())) {
                    tracing::debug!(session_id = %self.session_id, "text frame ignored: {e}");
                }
            }
            Some(Ok(WsMessage::Pong(_))) => self.ping_outstanding = None,
            // Pings are answered by the WebSocket layer.
            Some(Ok(WsMessage::Ping(_))) => {}
            Some(Ok(WsMessage::Close(_))) | None => self.detach(now, "closed by the client"),
            Some(Err(e)) => self.detach(now, &e.to_string()),
        }
    }

    // ---------------------------------------------------------------- ending

    fn close_channel(&mut self, now: Instant, reason: &str, keep_program: bool) {
        if self.ending == Ending::Running {
            self.channel.close_with_reason(now, reason);
            self.ending = Ending::Closing { keep_program };
            // The Closed event this produces is ours, not a failure.
            while let Some(ev) = self.channel.poll_event() {
                if let Event::Input(bytes) = ev {
                    self.backend().send(BackendInput::Bytes(bytes));
                }
            }
        }
    }

    fn on_close_request(&mut self, now: Instant, reason: CloseReason) {
        let keep = reason != CloseReason::EnvironmentStopped;
        tracing::debug!(session_id = %self.session_id, ?reason, "closing the channel");
        if self.ws.is_none() {
            self.ending = Ending::Stop { keep_program: keep };
        } else {
            self.close_channel(now, reason.output_text(), keep);
        }
    }

    fn check_end(&mut self, now: Instant) {
        if self.ending != Ending::Running {
            return;
        }
        if let Some(at) = self.detached_at
            && now >= at + self.config.reconnect_grace
        {
            tracing::debug!(session_id = %self.session_id, "client did not reconnect; session ends");
            self.ending = Ending::Stop { keep_program: true };
            return;
        }
        if let Some(d) = self.handshake_deadline
            && now >= d
        {
            tracing::warn!(session_id = %self.session_id, "handshake timed out");
            self.close_channel(now, "Handshake timed out.", true);
            return;
        }
        if self.program_done && self.ws.is_some() {
            // A program stopped by a close request (the environment was
            // stopped) ends with that request's reason, not as if it exited.
            if let Ok(reason) = self.close.try_recv() {
                self.on_close_request(now, reason);
                return;
            }
            // A command's status, after all its output (as the agent sends it
            // with separate output streams); then the close waits for its ack.
            if matches!(self.options.mode, SessionMode::Command { .. }) && !self.exit_code_sent {
                let code = self
                    .backend()
                    .exit_status()
                    .and_then(|s| s.code)
                    .unwrap_or(-1);
                match self.channel.send_exit_code(now, code) {
                    Ok(()) => {
                        self.exit_code_sent = true;
                        self.program_done_at = Some(now);
                    }
                    Err(e) => {
                        tracing::debug!(session_id = %self.session_id, "exit code not accepted yet: {e}");
                    }
                }
                return;
            }
            let waited = self
                .program_done_at
                .is_some_and(|t| now >= t + self.config.close_ack_wait);
            if self.channel.all_acked() || waited {
                tracing::debug!(session_id = %self.session_id, "program ended; closing the channel");
                self.close_channel(now, "", false);
            }
        }
    }

    fn release(mut self, keep_program: bool) {
        let leftover: Vec<u8> = std::mem::take(&mut self.inflight)
            .into_values()
            .flat_map(|b| b.to_vec())
            .collect();
        if keep_program && self.program.tab.is_some() {
            // Output the client never acknowledged goes to the tab's next session.
            self.backend().output.unread(&leftover);
        }
        let _ = self.program.released.send(true);
        if let Some((key, slot)) = &self.program.tab {
            if keep_program {
                self.gw.release_tab(&self.session_id, key, slot);
            } else {
                slot.backend.kill();
                self.gw.release_tab(&self.session_id, key, slot);
            }
        }
        // Without a tab the program stops when the last reference goes away.
    }

    // ---------------------------------------------------------------- waiting

    fn sync_metrics(&mut self) {
        let s = self.channel.stats();
        self.metrics.resends_out.store(s.resent, Ordering::Relaxed);
        self.metrics
            .duplicates_in
            .store(s.duplicates, Ordering::Relaxed);
        self.metrics
            .acks_in
            .store(s.acks_received, Ordering::Relaxed);
        self.metrics
            .malformed_in
            .store(s.malformed, Ordering::Relaxed);
        if self.faults.is_active()
            && let Ok(mut f) = self.metrics.faults.lock()
        {
            *f = self.faults.counters();
        }
    }

    async fn wait(&mut self, now: Instant) {
        let attached = self.ws.is_some();
        let mut deadline: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        if attached {
            consider(self.channel.poll_timeout());
            consider(self.next_ping);
            consider(self.ping_outstanding.map(|t| t + self.config.pong_timeout));
            consider(self.program_done_at.map(|t| t + self.config.close_ack_wait));
        } else {
            consider(self.detached_at.map(|t| t + self.config.reconnect_grace));
        }
        consider(self.faults.next_release());
        consider(self.handshake_deadline);

        let want_output = attached
            && self.output_enabled
            && !self.program_done
            && self.channel.send_window_room() > 0;
        let pipe = self.program.backend.output.clone();
        let errors = self.program.backend.errors.clone();
        let errors_readable = async {
            match &errors {
                Some(e) => e.readable().await,
                None => std::future::pending().await,
            }
        };
        let want_flags = self.flags_enabled();
        let flags = self.program.backend.flags.clone();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let ws = self.ws.as_mut();
        let recv = async {
            match ws {
                Some(ws) => ws.recv().await,
                None => std::future::pending().await,
            }
        };

        tokio::select! {
            biased;
            reason = self.close.recv() => {
                let now = Instant::now();
                if let Some(reason) = reason {
                    self.on_close_request(now, reason);
                }
            }
            incoming = self.connect.recv() => {
                if let Some(incoming) = incoming {
                    self.attach(Instant::now(), incoming);
                }
            }
            msg = recv => {
                self.on_ws_message(Instant::now(), msg);
            }
            _ = pipe.readable(), if want_output => {}
            _ = errors_readable, if want_output => {}
            _ = flags.pending(), if want_flags => {}
            _ = sleep => {
                let now = Instant::now();
                self.on_timer(now).await;
            }
        }
        let _ = now;
    }

    async fn on_timer(&mut self, now: Instant) {
        for (dir, frame) in self.faults.poll_released(now) {
            match dir {
                Direction::In => self.feed(now, frame),
                Direction::Out => self.send_binary(now, frame).await,
            }
        }
        if self.ws.is_none() {
            return;
        }
        self.channel.handle_timeout(now);
        if let Some(sent) = self.ping_outstanding
            && now >= sent + self.config.pong_timeout
        {
            self.detach(now, "no pong");
            return;
        }
        if let (Some(at), Some(every)) = (self.next_ping, self.options.ping_interval)
            && now >= at
        {
            self.next_ping = Some(now + every);
            if self
                .send_ws(now, WsMessage::Ping(Bytes::from_static(PING_PAYLOAD)))
                .await
                && self.ping_outstanding.is_none()
            {
                self.ping_outstanding = Some(now);
            }
        }
    }
}

/// The sequence number an incoming `acknowledge` frame acknowledges.
fn acked_sequence(frame: &[u8]) -> Option<i64> {
    if !is_ack(frame) {
        return None;
    }
    let msg = ssm_channel::Message::decode(frame).ok()?;
    let ack: Acknowledge = serde_json::from_slice(&msg.payload).ok()?;
    Some(ack.acknowledged_message_sequence_number)
}

/// Reads and drops what the client still sends until it closes its side (a
/// close frame or the end of the connection), for at most [`CLOSE_DRAIN`].
async fn drain_until_closed(ws: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while let Some(Ok(m)) = ws.recv().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}
