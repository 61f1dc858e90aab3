//! The data-channel gateway: the emulator's stand-in for the Session Manager
//! message gateway and the agent behind it.
//!
//! A client opens `ws://…/v1/data-channel/<SessionId>` (the `StreamUrl` of
//! CreateSession) and sends the open-data-channel text frame. The gateway checks
//! its `TokenValue` against the session record, then runs an agent-role
//! [`ssm_channel`] channel between the WebSocket and the session's program (a login
//! shell on a pty, an echo loop, a byte stream, a TCP relay or an smux port
//! forwarder; see [`SessionMode`]).
//!
//! Sessions outlive their WebSocket for a grace period, so a client that lost its
//! connection can open the same `StreamUrl` again and carry on with the same
//! sequence numbers. Shells outlive their sessions for a longer grace period: a new
//! session created with the same `TabId` re-attaches to the same shell, like
//! CloudShell's tmux, and gets the output produced while nobody was attached.

pub mod backend;
pub mod faults;
mod forward;
mod glue;
pub mod metrics;
pub mod options;
mod session;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub use backend::{STREAM_LINE, stream_pattern};
pub use faults::FaultCounters;
pub use glue::EMULATED_ACCOUNT_ID;
pub(crate) use glue::follow_lifecycle;
pub use metrics::SessionMetrics;
pub use options::{
    CutRule, Direction, Directions, FaultAction, FaultSpec, FrameFault, HandshakeMode,
    OptionsParseError, Selector, SessionMode, SessionOptions,
};

use backend::{Backend, ShellSpec};
use metrics::LiveMetrics;

use crate::kms::FakeKms;

/// Path of the WebSocket route (axum syntax).
pub const DATA_CHANNEL_ROUTE: &str = "/v1/data-channel/{session_id}";

/// WebSocket close code sent when the open frame is missing, malformed or carries
/// a wrong token (RFC 6455 "policy violation").
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// Gateway-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Options of sessions that have no per-tab or per-session options.
    pub defaults: SessionOptions,
    /// How long a session waits for its client to reconnect after the WebSocket
    /// dropped (same `SessionId`, sequence numbers kept).
    pub reconnect_grace: Duration,
    /// How long a shell started for a `TabId` keeps running with no session
    /// attached (CloudShell keeps its tmux sessions alive).
    pub tab_grace: Duration,
    /// Output kept for a program while nobody reads it; a full buffer stops the
    /// program until a client drains it.
    pub output_buffer: usize,
    /// Time allowed between the WebSocket upgrade and the open-data-channel frame.
    pub open_timeout: Duration,
    /// A connection whose peer has not answered a ping for this long is dropped.
    pub pong_timeout: Duration,
    /// After the program ended, how long to wait for the client to acknowledge the
    /// remaining output before `channel_closed` is sent anyway.
    pub close_ack_wait: Duration,
    /// Run each shell inside tmux, as CloudShell does: what the client
    /// receives is then tmux's rendering of the pane (cursor movements,
    /// scrolling, a status line, output dropped and the screen redrawn when
    /// the client falls behind), not the shell's own bytes. Each shell has
    /// a tmux server of its own, its socket under `STATE_DIR/tmux/`.
    pub tmux: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            defaults: SessionOptions::default(),
            reconnect_grace: Duration::from_secs(120),
            tab_grace: Duration::from_secs(600),
            output_buffer: backend::DEFAULT_PIPE_CAPACITY,
            open_timeout: Duration::from_secs(45),
            pong_timeout: Duration::from_secs(60),
            close_ack_wait: Duration::from_secs(10),
            tmux: false,
        }
    }
}

/// What the REST side knows about a session, as the gateway needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    /// Environment the session belongs to.
    pub environment_id: String,
    /// `TabId` given to CreateSession, if any.
    pub tab_id: Option<String>,
}

/// The gateway's view of the REST side's session records.
pub trait SessionDirectory: Send + Sync + 'static {
    /// The session `session_id` if it exists and `token` is its `TokenValue`
    /// (compared in constant time); `None` otherwise.
    fn authorize(&self, session_id: &str, token: &str) -> Option<SessionGrant>;

    /// Records activity on an environment (keeps it from being suspended as idle).
    fn touch(&self, environment_id: &str);
}

/// Why a session's channel is being closed by the gateway side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// DeleteSession / the session was closed on the REST side.
    SessionClosed,
    /// The environment was suspended or deleted: the program is stopped too.
    EnvironmentStopped,
    /// Another session re-attached to the same tab.
    Replaced,
}

impl CloseReason {
    pub(crate) fn output_text(&self) -> &'static str {
        match self {
            CloseReason::SessionClosed => "",
            CloseReason::EnvironmentStopped => "The environment was stopped.",
            CloseReason::Replaced => "The tab was re-attached by another session.",
        }
    }
}

/// A live session task, as seen from outside.
struct SessionEntry {
    environment_id: String,
    connect: mpsc::UnboundedSender<Incoming>,
    close: mpsc::UnboundedSender<CloseReason>,
}

/// A new WebSocket for a session, with its (already checked) open frame.
pub(crate) struct Incoming {
    pub socket: WebSocket,
    pub open_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TabKey {
    environment_id: String,
    tab_id: String,
}

/// A program kept for a `TabId`, and who is attached to it.
pub(crate) struct TabSlot {
    pub backend: Arc<Backend>,
    owner: Mutex<Option<TabOwner>>,
    generation: AtomicU64,
}

struct TabOwner {
    session_id: String,
    close: mpsc::UnboundedSender<CloseReason>,
    released: watch::Receiver<bool>,
}

impl TabSlot {
    fn owner(&self) -> MutexGuard<'_, Option<TabOwner>> {
        self.owner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Inner {
    config: Mutex<GatewayConfig>,
    directory: Arc<dyn SessionDirectory>,
    state_dir: PathBuf,
    region: String,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    session_options: Mutex<HashMap<String, SessionOptions>>,
    tab_options: Mutex<HashMap<String, SessionOptions>>,
    tabs: Mutex<HashMap<TabKey, Arc<TabSlot>>>,
    /// Shells started at CreateSession, by session id, until the session's
    /// first connection takes its own.
    prestarted: Mutex<HashMap<String, Prestarted>>,
    metrics: Mutex<HashMap<String, Arc<LiveMetrics>>>,
    /// Sessions whose task has ended: their token opens nothing any more.
    ended: Mutex<EndedSessions>,
    pub(crate) kms: Arc<FakeKms>,
}

/// The most recent ended session ids (bounded: the oldest are forgotten).
#[derive(Default)]
struct EndedSessions {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

/// Most ended session ids remembered.
const MAX_ENDED_REMEMBERED: usize = 16_384;

impl EndedSessions {
    fn insert(&mut self, id: &str) {
        if self.ids.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            while self.order.len() > MAX_ENDED_REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

/// Most sessions whose counters are kept after they ended.
const MAX_KEPT_METRICS: usize = 4096;

/// A shell started when its session was created, before any client connected.
struct Prestarted {
    environment_id: String,
    backend: Arc<Backend>,
}

/// How long a shell started at CreateSession waits for its session's first
/// connection before it is stopped (a later connection starts a new one).
const PRESTART_UNCLAIMED: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The gateway. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("state_dir", &self.inner.state_dir)
            .field("region", &self.inner.region)
            .field("live_sessions", &lock(&self.inner.sessions).len())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway whose shells get their homes under `state_dir/homes/` and run in
    /// `region`; `kms` is the fake KMS that issues data keys for KMS handshakes.
    pub fn new(
        config: GatewayConfig,
        directory: Arc<dyn SessionDirectory>,
        state_dir: impl Into<PathBuf>,
        region: impl Into<String>,
        kms: Arc<FakeKms>,
    ) -> Self {
        let state_dir = state_dir.into();
        // The tmux sockets of an earlier run of the emulator (its servers
        // ended with it).
        let _ = std::fs::remove_dir_all(state_dir.join("tmux"));
        Self {
            inner: Arc::new(Inner {
                config: Mutex::new(config),
                directory,
                state_dir,
                region: region.into(),
                sessions: Mutex::new(HashMap::new()),
                session_options: Mutex::new(HashMap::new()),
                tab_options: Mutex::new(HashMap::new()),
                tabs: Mutex::new(HashMap::new()),
                prestarted: Mutex::new(HashMap::new()),
                metrics: Mutex::new(HashMap::new()),
                ended: Mutex::new(EndedSessions::default()),
                kms,
            }),
        }
    }

    /// The axum routes of the gateway (`GET /v1/data-channel/{session_id}`).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new()
            .route(DATA_CHANNEL_ROUTE, get(ws_route))
            .with_state(self.clone())
    }

    /// Options used by sessions without per-tab or per-session options.
    pub fn set_session_defaults(&self, options: SessionOptions) {
        lock(&self.inner.config).defaults = options;
    }

    /// The current default options.
    pub fn session_defaults(&self) -> SessionOptions {
        lock(&self.inner.config).defaults.clone()
    }

    /// Options for sessions created with this `TabId` (from the next session on).
    pub fn configure_tab(&self, tab_id: impl Into<String>, options: SessionOptions) {
        lock(&self.inner.tab_options).insert(tab_id.into(), options);
    }

    /// Options for one session id (takes precedence over tab and default options;
    /// set it after CreateSession and before connecting).
    pub fn configure_session(&self, session_id: impl Into<String>, options: SessionOptions) {
        lock(&self.inner.session_options).insert(session_id.into(), options);
    }

    /// Replaces the gateway-wide settings (defaults included).
    pub fn set_config(&self, config: GatewayConfig) {
        *lock(&self.inner.config) = config;
    }

    /// The gateway-wide settings.
    pub fn config(&self) -> GatewayConfig {
        lock(&self.inner.config).clone()
    }

    /// Counters of a session (live or ended).
    pub fn session_metrics(&self, session_id: &str) -> Option<SessionMetrics> {
        lock(&self.inner.metrics)
            .get(session_id)
            .map(|m| m.snapshot(session_id))
    }

    /// Counters of every session known.
    pub fn all_session_metrics(&self) -> Vec<SessionMetrics> {
        let mut v: Vec<_> = lock(&self.inner.metrics)
            .iter()
            .map(|(id, m)| m.snapshot(id))
            .collect();
        v.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        v
    }

    /// Ids of sessions whose task is running (attached or waiting for a reconnect).
    pub fn live_sessions(&self) -> Vec<String> {
        let mut v: Vec<_> = lock(&self.inner.sessions).keys().cloned().collect();
        v.sort();
        v
    }

    /// Number of programs kept for tabs (attached or not).
    pub fn live_tabs(&self) -> usize {
        lock(&self.inner.tabs).len()
    }

    /// Process id of the shell kept for a tab, if any.
    pub fn tab_shell_pid(&self, environment_id: &str, tab_id: &str) -> Option<u32> {
        let key = TabKey {
            environment_id: environment_id.into(),
            tab_id: tab_id.into(),
        };
        lock(&self.inner.tabs).get(&key).and_then(|s| s.backend.pid)
    }

    /// Closes a session's channel (`channel_closed` to the client). Its program
    /// keeps running for its tab, if it has one. Used for DeleteSession.
    pub fn close_session(&self, session_id: &str) {
        if let Some(e) = lock(&self.inner.sessions).get(session_id) {
            let _ = e.close.send(CloseReason::SessionClosed);
        }
        // Never connected: its shell goes with it.
        drop(self.take_prestarted(session_id));
    }

    /// Closes every channel of an environment and stops its programs (the
    /// environment was suspended or deleted).
    pub fn close_environment(&self, environment_id: &str) {
        for e in lock(&self.inner.sessions).values() {
            if e.environment_id == environment_id {
                let _ = e.close.send(CloseReason::EnvironmentStopped);
            }
        }
        let removed: Vec<Arc<TabSlot>> = {
            let mut tabs = lock(&self.inner.tabs);
            let keys: Vec<TabKey> = tabs
                .keys()
                .filter(|k| k.environment_id == environment_id)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| tabs.remove(k)).collect()
        };
        for slot in removed {
            slot.backend.kill();
        }
        lock(&self.inner.prestarted).retain(|_, p| p.environment_id != environment_id);
    }

    /// Process id of the shell started for a session at CreateSession and not
    /// yet taken by a connection, if any.
    pub fn prestarted_shell_pid(&self, session_id: &str) -> Option<u32> {
        lock(&self.inner.prestarted)
            .get(session_id)
            .and_then(|p| p.backend.pid)
    }

    /// A session was created: start its shell now, so that the shell starts
    /// up while the client connects instead of after. Only for sessions
    /// whose program is a shell, and not for a tab whose shell is running.
    pub(crate) async fn session_created(
        &self,
        session_id: &str,
        environment_id: &str,
        tab_id: Option<&str>,
    ) {
        let options = self.options_for(session_id, tab_id);
        if options.mode != SessionMode::Shell || self.is_connected_or_ended(session_id) {
            return;
        }
        if let Some(tab_id) = tab_id {
            let key = TabKey {
                environment_id: environment_id.to_owned(),
                tab_id: tab_id.to_owned(),
            };
            if lock(&self.inner.tabs)
                .get(&key)
                .is_some_and(|s| !s.backend.output.is_closed())
            {
                return; // a re-attach
            }
        }
        // Starting it forks the emulator: on a blocking thread, not on an
        // async worker, which meanwhile sends CreateSession's answer.
        let spec = self.shell_spec(environment_id);
        let pipe_capacity = self.config().output_buffer;
        let started = tokio::task::spawn_blocking(move || {
            Backend::start(&options.mode, Some(&spec), pipe_capacity)
        })
        .await;
        let backend = match started {
            Ok(Ok(b)) => Arc::new(b),
            Err(e) => {
                tracing::warn!(%session_id, "starting the shell failed: {e}");
                return;
            }
            Ok(Err(e)) => {
                // The first connection tries again (and reports it).
                tracing::debug!(%session_id, "shell not started at CreateSession: {e}");
                return;
            }
        };
        {
            let sessions = lock(&self.inner.sessions);
            // A client that connected meanwhile has started its own program.
            if sessions.contains_key(session_id) || lock(&self.inner.ended).ids.contains(session_id)
            {
                return;
            }
            lock(&self.inner.prestarted).insert(
                session_id.to_owned(),
                Prestarted {
                    environment_id: environment_id.to_owned(),
                    backend,
                },
            );
        }
        let gw = self.clone();
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(PRESTART_UNCLAIMED).await;
            drop(gw.take_prestarted(&session_id));
        });
    }

    fn is_connected_or_ended(&self, session_id: &str) -> bool {
        let sessions = lock(&self.inner.sessions);
        sessions.contains_key(session_id) || lock(&self.inner.ended).ids.contains(session_id)
    }

    /// The shell started for `session_id` at CreateSession (dropping it stops it).
    fn take_prestarted(&self, session_id: &str) -> Option<Arc<Backend>> {
        lock(&self.inner.prestarted)
            .remove(session_id)
            .map(|p| p.backend)
    }

    fn shell_spec(&self, environment_id: &str) -> ShellSpec {
        ShellSpec {
            home: self.home_dir(environment_id),
            region: self.inner.region.clone(),
            size: (80, 24),
            tmux: lock(&self.inner.config)
                .tmux
                .then(|| self.inner.state_dir.join("tmux")),
        }
    }

    /// The home directory of an environment's shells.
    pub fn home_dir(&self, environment_id: &str) -> PathBuf {
        self.inner
            .state_dir
            .join("homes")
            .join(sanitize_path_component(environment_id))
    }

    /// Handles one upgraded WebSocket: checks the open frame, then hands the socket
    /// to the session's task (starting it if needed).
    async fn accept(self, session_id: String, mut socket: WebSocket) {
        let open_timeout = lock(&self.inner.config).open_timeout;
        let first = tokio::time::timeout(open_timeout, async {
            loop {
                match socket.recv().await {
                    Some(Ok(WsMessage::Text(t))) => return Some(t.as_str().to_owned()),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    _ => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(open_text) = first else {
            tracing::warn!(%session_id, "data channel closed: no open-data-channel text frame");
            reject(socket, "expected open-data-channel").await;
            return;
        };
        let open: OpenFrame = match serde_json::from_str(&open_text) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(%session_id, "data channel closed: malformed open-data-channel frame ({e})");
                reject(socket, "malformed open-data-channel").await;
                return;
            }
        };
        let Some(grant) = self
            .inner
            .directory
            .authorize(&session_id, &open.token_value)
        else {
            tracing::warn!(%session_id, "data channel closed: unknown session or invalid token");
            reject(socket, "authentication failed").await;
            return;
        };
        self.inner.directory.touch(&grant.environment_id);
        tracing::debug!(%session_id, request_id = %open.request_id, "data channel opened");

        let incoming = Incoming { socket, open_text };
        let refused = {
            let sessions = lock(&self.inner.sessions);
            // (`ended` is updated under the `sessions` lock.)
            let ended = lock(&self.inner.ended).ids.contains(&session_id);
            match sessions.get(&session_id) {
                // Like a terminated SSM session: it cannot be resumed.
                _ if ended => incoming,
                // A reconnect: the running task takes the new socket.
                Some(entry) => match entry.connect.send(incoming) {
                    Ok(()) => return,
                    // The task ended between the lookup and now.
                    Err(mpsc::error::SendError(inc)) => inc,
                },
                None => {
                    drop(sessions);
                    self.start_session(session_id, grant, incoming);
                    return;
                }
            }
        };
        tracing::warn!(%session_id, "data channel closed: the session has ended");
        reject(refused.socket, "session ended").await;
    }

    fn options_for(&self, session_id: &str, tab_id: Option<&str>) -> SessionOptions {
        if let Some(o) = lock(&self.inner.session_options).get(session_id) {
            return o.clone();
        }
        if let Some(t) = tab_id
            && let Some(o) = lock(&self.inner.tab_options).get(t)
        {
            return o.clone();
        }
        lock(&self.inner.config).defaults.clone()
    }

    fn start_session(&self, session_id: String, grant: SessionGrant, incoming: Incoming) {
        let options = self.options_for(&session_id, grant.tab_id.as_deref());
        let config = self.config();
        let (connect_tx, connect_rx) = mpsc::unbounded_channel();
        let (close_tx, close_rx) = mpsc::unbounded_channel();
        {
            let mut sessions = lock(&self.inner.sessions);
            if let Some(entry) = sessions.get(&session_id) {
                // Lost a race with a concurrent open of the same session.
                let _ = entry.connect.send(incoming);
                return;
            }
            sessions.insert(
                session_id.clone(),
                SessionEntry {
                    environment_id: grant.environment_id.clone(),
                    connect: connect_tx,
                    close: close_tx.clone(),
                },
            );
        }
        let metrics = Arc::new(LiveMetrics::default());
        {
            let mut all = lock(&self.inner.metrics);
            if all.len() >= MAX_KEPT_METRICS {
                let live = lock(&self.inner.sessions);
                all.retain(|id, _| live.contains_key(id));
            }
            all.insert(session_id.clone(), metrics.clone());
        }
        let gw = self.clone();
        tokio::spawn(async move {
            let attach = gw.attach_program(&session_id, &grant, &options, &config, close_tx);
            let attach = attach.await;
            match attach {
                Ok(program) => {
                    let task = session::SessionTask::new(session::SessionSetup {
                        gateway: gw.clone(),
                        session_id: session_id.clone(),
                        grant: grant.clone(),
                        options,
                        config,
                        metrics,
                        program,
                        connect: connect_rx,
                        close: close_rx,
                    });
                    task.run(incoming).await;
                }
                Err(e) => {
                    tracing::error!(%session_id, "cannot start the session's program: {e}");
                    reject(incoming.socket, "cannot start the session").await;
                }
            }
            let mut sessions = lock(&gw.inner.sessions);
            lock(&gw.inner.ended).insert(&session_id);
            sessions.remove(&session_id);
        });
    }

    /// Finds or starts the program for a new session.
    async fn attach_program(
        &self,
        session_id: &str,
        grant: &SessionGrant,
        options: &SessionOptions,
        config: &GatewayConfig,
        close: mpsc::UnboundedSender<CloseReason>,
    ) -> Result<session::Program, backend::BackendError> {
        let (released_tx, released_rx) = watch::channel(false);
        // The shell started at CreateSession, if the session's options still
        // ask for a shell (they may have been set after CreateSession). Not
        // used for a re-attach: dropped, it stops.
        let mut prestarted = self
            .take_prestarted(session_id)
            .filter(|_| options.mode == SessionMode::Shell);
        let mut start = || match prestarted.take() {
            Some(backend) => Ok(backend),
            None => Backend::start(
                &options.mode,
                Some(&self.shell_spec(&grant.environment_id)),
                config.output_buffer,
            )
            .map(Arc::new),
        };
        let Some(tab_id) = grant.tab_id.clone() else {
            return Ok(session::Program {
                backend: start()?,
                tab: None,
                released: released_tx,
                reattached: false,
            });
        };
        let key = TabKey {
            environment_id: grant.environment_id.clone(),
            tab_id,
        };
        let (slot, previous, reattached) = {
            let mut tabs = lock(&self.inner.tabs);
            let existing = tabs
                .get(&key)
                .filter(|s| !s.backend.output.is_closed())
                .cloned();
            let reattached = existing.is_some();
            let slot = match existing {
                Some(s) => s,
                None => {
                    let s = Arc::new(TabSlot {
                        backend: start()?,
                        owner: Mutex::new(None),
                        generation: AtomicU64::new(0),
                    });
                    tabs.insert(key.clone(), s.clone());
                    s
                }
            };
            slot.generation.fetch_add(1, Ordering::SeqCst);
            let previous = slot.owner().replace(TabOwner {
                session_id: session_id.to_owned(),
                close,
                released: released_rx,
            });
            (slot, previous, reattached)
        };
        if let Some(prev) = previous {
            // Take the tab over: the previous session closes and puts back the
            // output its client never acknowledged, before this one reads any.
            tracing::debug!(%session_id, previous = %prev.session_id, "re-attaching tab");
            let _ = prev.close.send(CloseReason::Replaced);
            let mut released = prev.released;
            let _ = tokio::time::timeout(Duration::from_secs(5), released.wait_for(|r| *r)).await;
        }
        Ok(session::Program {
            backend: slot.backend.clone(),
            tab: Some((key_to_pair(&key), slot)),
            released: released_tx,
            reattached,
        })
    }

    /// Called by a session task when it lets go of a tab's program.
    pub(crate) fn release_tab(
        &self,
        session_id: &str,
        env_and_tab: &(String, String),
        slot: &Arc<TabSlot>,
    ) {
        {
            let mut owner = slot.owner();
            if owner.as_ref().is_some_and(|o| o.session_id == session_id) {
                *owner = None;
            } else {
                return; // already taken over by another session
            }
        }
        let key = TabKey {
            environment_id: env_and_tab.0.clone(),
            tab_id: env_and_tab.1.clone(),
        };
        if slot.backend.output.is_closed() {
            // The shell exited: its tab ends with it.
            self.remove_tab_if_same(&key, slot);
            return;
        }
        let generation = slot.generation.load(Ordering::SeqCst);
        let grace = lock(&self.inner.config).tab_grace;
        let gw = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let mut exited = false;
            let deadline = tokio::time::sleep(grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if slot.backend.output.is_closed() {
                            exited = true;
                            break;
                        }
                        if slot.generation.load(Ordering::SeqCst) != generation {
                            return; // re-attached
                        }
                    }
                }
            }
            if slot.generation.load(Ordering::SeqCst) == generation && slot.owner().is_none() {
                tracing::debug!(tab = %key.tab_id, exited, "tab ended");
                gw.remove_tab_if_same(&key, &slot);
                slot.backend.kill();
            }
        });
    }

    fn remove_tab_if_same(&self, key: &TabKey, slot: &Arc<TabSlot>) {
        let mut tabs = lock(&self.inner.tabs);
        if tabs.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            tabs.remove(key);
        }
    }

    pub(crate) fn touch(&self, environment_id: &str) {
        self.inner.directory.touch(environment_id);
    }
}

fn key_to_pair(k: &TabKey) -> (String, String) {
    (k.environment_id.clone(), k.tab_id.clone())
}

/// The fields of the open frame the gateway checks itself.
#[derive(Deserialize)]
struct OpenFrame {
    #[serde(rename = "TokenValue")]
    token_value: String,
    #[serde(rename = "RequestId", default)]
    request_id: String,
}

async fn ws_route(
    State(gw): State<Gateway>,
    Path(session_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| gw.accept(session_id, socket))
}

async fn reject(mut socket: WebSocket, reason: &'static str) {
    let _ = socket
        .send(WsMessage::Close(Some(CloseFrame {
            code: CLOSE_POLICY_VIOLATION,
            reason: reason.into(),
        })))
        .await;
}

/// Keeps an id usable as one path component.
fn sanitize_path_component(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_safe() {
        assert_eq!(sanitize_path_component("env-1234"), "env-1234");
        assert_eq!(sanitize_path_component("../x"), ".._x");
        assert_eq!(sanitize_path_component(".."), "_");
        assert_eq!(sanitize_path_component(""), "_");
        assert_eq!(sanitize_path_component("a/b"), "a_b");
    }
}
