//! A local emulator of AWS CloudShell.
//!
//! The REST side serves the control-plane operations (`POST /<lowerCamelOp>`,
//! SigV4-verified) with a persistent, lazily evaluated environment lifecycle,
//! sessions whose `StreamUrl` points back at the emulator's own listener, and a
//! fake S3 for file transfer URLs.
//!
//! Lifecycle statuses are computed from timestamps stored in
//! `state_dir/state.json` and the configured [`Clock`], so a test can move a
//! [`ManualClock`] instead of sleeping, and several processes can share one
//! state directory.
//!
//! Hooks for the data-channel gateway (crate-internal, on the router state):
//! `Shared::session`, `Shared::validate_token`, `Shared::touch`,
//! `Shared::subscribe` (session closures) and `Shared::home_dir`; its router
//! merges into `app()` beside the fake S3 routes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloudshell_emulator::Error> {
//! use cloudshell_emulator::{AcceptedCredentials, Emulator, EmulatorConfig, Timings};
//!
//! let config = EmulatorConfig::new("/tmp/emulator-state")
//!     .with_credentials(AcceptedCredentials::new("AKIDEXAMPLE", "secret"))
//!     .with_timings(Timings::instant());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let emulator = Emulator::start(config, listener).await?;
//! println!("endpoint: {}", emulator.endpoint());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

mod config;
mod faults;
pub mod gateway;
pub mod kms;
mod rest;
mod s3;
pub mod sigv4;
mod ssm;
mod state;
mod time;
mod wire;

pub use config::{
    AcceptedCredentials, Clock, EmulatorConfig, ErrorCodes, ManualClock, SystemClock, Timings,
    default_state_dir, load_or_create_credentials,
};
pub use faults::{FaultKind, RecordedRequest, RestFault};
/// Gives a program started on a pty the signal state of a fresh login: every
/// signal handled by default and none blocked, whatever the emulator inherited.
///
/// A process started in the background by a non-interactive shell
/// (`cloudshell-rs emulator &` in a script) has SIGINT and SIGQUIT ignored, and
/// an ignored disposition survives `exec`: without this, Ctrl-C would never
/// reach a command in the emulator's shells (bash cannot undo a signal ignored
/// when it started). `login` and `sshd` reset the same way. The emulator uses
/// it for its shells; test harnesses that start their own shell on a pty can
/// use it too.
#[allow(unsafe_code)]
pub fn default_signals(cmd: pty_process::Command) -> pty_process::Command {
    // SAFETY: the closure runs in the child between fork and exec. It calls
    // only sigemptyset, sigprocmask and signal, which are async-signal-safe,
    // touches no lock and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The classic signals (1 to 31 on Linux and macOS); real-time
            // ones are never ignored by shells.
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    // A number the kernel does not use fails harmlessly.
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            Ok(())
        })
    }
}

pub use rest::{OPERATIONS, SERVICE};
pub use state::{
    EnvironmentSnapshot, EnvironmentStatus, STATE_FILE, SessionRecord, SessionToken, StateEvent,
    VpcConfig,
};

/// Errors starting or running the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state directory could not be created or its state file written.
    #[error("cannot use state directory {path}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Socket-level failure (local address, accept loop).
    #[error("emulator I/O error")]
    Io(#[from] io::Error),
    /// The configuration cannot work.
    #[error("invalid emulator configuration: {0}")]
    Config(String),
}

/// Why a data-channel token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No such session (never created, deleted, or closed with its environment).
    #[error("unknown session")]
    UnknownSession,
    /// The token does not belong to that session.
    #[error("token does not match the session")]
    WrongToken,
    /// The session's environment is not RUNNING.
    #[error("environment is not running")]
    EnvironmentNotRunning,
}

const MAX_RECORDED: usize = 10_000;

/// State shared by every route of the emulator's router.
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) store: state::Store,
    /// `http://127.0.0.1:PORT`
    pub(crate) http_base: String,
    /// `ws://127.0.0.1:PORT`, or the configured `stream_base`
    pub(crate) ws_base: String,
    /// Base of the presigned S3 URLs: `http_base`, or the configured `s3_base`.
    pub(crate) s3_base: String,
    /// The host (and port) of `s3_base`, which presigned downloads are signed for.
    pub(crate) s3_host: String,
    faults: Mutex<Vec<RestFault>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// The axum state type of every route.
pub(crate) type AppState = Arc<Shared>;

impl Shared {
    fn new(config: EmulatorConfig, addr: SocketAddr) -> Result<Self, Error> {
        if config.credentials.is_empty() {
            return Err(Error::Config(
                "no credentials configured: every request would be refused".into(),
            ));
        }
        let store = state::Store::open(&config).map_err(|source| Error::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let ip = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        let host = SocketAddr::new(ip, addr.port()).to_string();
        let ws_base = config
            .stream_base
            .clone()
            .unwrap_or_else(|| format!("ws://{host}"));
        let (s3_base, s3_host) = match &config.s3_base {
            None => (format!("http://{host}"), host.clone()),
            Some(base) => {
                let base = base.trim_end_matches('/');
                let authority = base
                    .strip_prefix("http://")
                    .or_else(|| base.strip_prefix("https://"))
                    .filter(|a| !a.is_empty() && !a.contains('/'))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "s3_base {base:?} is not an http:// or https:// scheme, host and port"
                        ))
                    })?;
                (base.to_owned(), authority.to_owned())
            }
        };
        Ok(Self {
            config,
            store,
            http_base: format!("http://{host}"),
            ws_base,
            s3_base,
            s3_host,
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        let mut list = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() >= MAX_RECORDED {
            list.remove(0);
        }
        list.push(req);
    }

    pub(crate) fn take_fault(&self, operation: &str) -> Option<FaultKind> {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let i = faults.iter().position(|f| f.matches(operation))?;
        faults[i].times -= 1;
        let kind = faults[i].kind.clone();
        if faults[i].times == 0 {
            faults.remove(i);
        }
        Some(kind)
    }

    /// Snapshot of one environment as of now.
    pub(crate) fn environment(&self, id: &str) -> Option<EnvironmentSnapshot> {
        self.store.read(self.config.clock.now(), |s| {
            s.env(id).map(|e| s.snapshot(e))
        })
    }

    /// Report session traffic (or other activity) on an environment: postpones
    /// the inactivity suspension. Returns false for an unknown environment.
    pub(crate) fn touch(&self, env_id: &str) -> bool {
        self.store.touch(env_id, self.config.clock.now())
    }

    /// Look up a live session.
    #[allow(dead_code)]
    pub(crate) fn session(&self, session_id: &str) -> Option<SessionRecord> {
        self.store.read(self.config.clock.now(), |s| {
            s.sessions
                .iter()
                .find(|r| r.session_id == session_id)
                .cloned()
        })
    }

    /// Check a data-channel token for a session (constant-time comparison) and
    /// that its environment is RUNNING. Counts as activity on success.
    #[allow(dead_code)]
    pub(crate) fn validate_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<SessionRecord, TokenRejection> {
        let found = self.store.read(self.config.clock.now(), |s| {
            let record = s
                .sessions
                .iter()
                .find(|r| r.session_id == session_id)
                .cloned()
                .ok_or(TokenRejection::UnknownSession)?;
            if !record.token.matches(token) {
                return Err(TokenRejection::WrongToken);
            }
            match s.env(&record.environment_id) {
                Some(e) if e.phase == EnvironmentStatus::Running => Ok(record),
                _ => Err(TokenRejection::EnvironmentNotRunning),
            }
        })?;
        self.touch(&found.environment_id);
        Ok(found)
    }

    /// Subscribe to session closures and lifecycle events.
    /// Checks the SigV4 signature of a request (method, URI and headers from
    /// `parts`) signed for `service` with one of the accepted credentials; the
    /// access key id that signed it.
    pub(crate) fn verify_signature(
        &self,
        parts: &axum::http::request::Parts,
        body: &[u8],
        service: &str,
    ) -> Result<String, sigv4::AuthError> {
        sigv4::verify(
            &sigv4::RequestParts {
                method: parts.method.as_str(),
                raw_path: parts.uri.path(),
                raw_query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                body,
            },
            &sigv4::VerifyParams {
                region: &self.config.region,
                service,
                now: std::time::SystemTime::now(),
                max_skew: self.config.max_clock_skew,
                credentials: &self.config.credentials,
            },
        )
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.store.subscribe()
    }

    /// Directory for an environment's home (created on demand by its user).
    #[allow(dead_code)]
    pub(crate) fn home_dir(&self, env_id: &str) -> std::path::PathBuf {
        self.config.state_dir.join("homes").join(env_id)
    }
}

/// The whole HTTP application: fake S3 routes, then the REST fallback that
/// answers every other path. Further routers (the data-channel gateway) merge
/// in here.
fn app(shared: AppState, gateway: &gateway::Gateway) -> Router {
    let max_object_size = shared.config.max_object_size;
    Router::new()
        .merge(s3::router(max_object_size))
        .fallback(rest::handle)
        .with_state(Arc::clone(&shared))
        .merge(gateway.router())
        .merge(kms::router(shared, gateway.kms()))
}

/// How often the lifecycle is evaluated in the background (so suspensions and
/// deletions close live sessions even when no request arrives).
const TICK: Duration = Duration::from_millis(250);

async fn serve(
    shared: AppState,
    gateway: gateway::Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let ticker = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                shared.store.read(shared.config.clock.now(), |_| ());
            }
        })
    };
    let events = gateway::follow_lifecycle(&shared, gateway.clone());
    // Small frames (keystrokes, acks) must not wait for Nagle's algorithm and
    // the peer's delayed ACK: that costs ~40 ms per round trip on loopback.
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let result = axum::serve(listener, app(shared, &gateway))
        .with_graceful_shutdown(shutdown)
        .await;
    ticker.abort();
    events.abort();
    result.map_err(Error::Io)
}

/// Serve on `listener` until `shutdown` completes (mini-redis style).
pub async fn run(
    config: EmulatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config, addr)?);
    let gateway = gateway::Gateway::for_emulator(&shared);
    serve(shared, gateway, listener, shutdown).await
}

/// Entry point: [`Emulator::start`].
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Load the state, then serve on `listener` in a task on the current tokio
    /// runtime. Returns once the emulator is accepting connections.
    pub async fn start(
        config: EmulatorConfig,
        listener: TcpListener,
    ) -> Result<EmulatorHandle, Error> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, addr)?);
        let (tx, mut rx) = watch::channel(false);
        let signal = async move {
            // Either an explicit shutdown or every handle dropped.
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let gateway = gateway::Gateway::for_emulator(&shared);
        let task = tokio::spawn(serve(
            Arc::clone(&shared),
            gateway.clone(),
            listener,
            signal,
        ));
        Ok(EmulatorHandle {
            shared,
            gateway,
            addr,
            stop: Arc::new(tx),
            task: Arc::new(Mutex::new(Some(task))),
        })
    }
}

type ServerTask = JoinHandle<Result<(), Error>>;

/// A running emulator. Clones refer to the same emulator; the server stops on
/// [`EmulatorHandle::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct EmulatorHandle {
    shared: AppState,
    gateway: gateway::Gateway,
    addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    task: Arc<Mutex<Option<ServerTask>>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`, the REST endpoint to give a client.
    pub fn endpoint(&self) -> String {
        self.shared.http_base.clone()
    }

    /// The data-channel gateway (session options, faults, metrics).
    pub fn gateway(&self) -> &gateway::Gateway {
        &self.gateway
    }

    /// The listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The region served.
    pub fn region(&self) -> &str {
        &self.shared.config.region
    }

    /// Every request answered so far (oldest first, at most the last 10 000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The operation names of [`requests`](Self::requests), in the same order
    /// (`"CreateSession"`, or the path of an unknown operation).
    pub fn operations(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| r.operation.clone())
            .collect()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Inject a fault into upcoming requests. Faults are consumed in the order
    /// they were injected.
    pub fn inject(&self, fault: RestFault) {
        if fault.times == 0 {
            return;
        }
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
    }

    /// Remove every pending fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// What the emulator knows about an environment now, or `None` if it does
    /// not exist (any owner).
    pub fn environment(&self, id: &str) -> Option<EnvironmentSnapshot> {
        self.shared.environment(id)
    }

    /// Every live environment (any owner).
    pub fn environments(&self) -> Vec<EnvironmentSnapshot> {
        self.shared.store.read(self.shared.config.clock.now(), |s| {
            s.environments.iter().map(|e| s.snapshot(e)).collect()
        })
    }

    /// Report activity on an environment (postpones inactivity suspension).
    /// Returns false if the environment does not exist.
    pub fn touch(&self, env_id: &str) -> bool {
        self.shared.touch(env_id)
    }

    /// Subscribe to lifecycle events (session closed, suspended, deleted).
    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.shared.subscribe()
    }

    /// Stop accepting connections, finish in-flight requests and wait for the
    /// server task (at most 5 s, then it is aborted).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut task) = task {
            match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("emulator stopped with an error: {e}"),
                Ok(Err(e)) => tracing::warn!("emulator task failed: {e}"),
                Err(_) => task.abort(),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::{SessionToken, StoredEnv};

    fn shared(dir: &std::path::Path) -> Shared {
        let config = EmulatorConfig::new(dir)
            .with_credentials(AcceptedCredentials::new("AKID", "secret"))
            .with_timings(Timings::instant());
        Shared::new(config, "127.0.0.1:9".parse().unwrap()).unwrap()
    }

    fn add_running_env_with_session(s: &Shared, token: &str) {
        s.store
            .write(s.config.clock.now(), |st, now, _| {
                st.environments.push(StoredEnv {
                    id: "env".into(),
                    owner: "AKID".into(),
                    name: None,
                    vpc: None,
                    phase: EnvironmentStatus::Running,
                    phase_since_ms: now,
                    created_ms: now,
                    last_activity_ms: now,
                    heartbeats: 0,
                    last_heartbeat_ms: None,
                    has_credentials: false,
                });
                st.sessions.push(SessionRecord {
                    session_id: "1700000000000000000-0123456789abcdef0".into(),
                    environment_id: "env".into(),
                    tab_id: None,
                    session_type: Some("TMUX".into()),
                    q_cli_disabled: None,
                    token: SessionToken::new(token.into()),
                    created_ms: now,
                });
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap();
    }

    #[test]
    fn gateway_token_validation() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path());
        add_running_env_with_session(&s, "tok");
        let sid = "1700000000000000000-0123456789abcdef0";
        assert_eq!(s.session(sid).unwrap().environment_id, "env");
        assert_eq!(s.validate_token(sid, "tok").unwrap().session_id, sid);
        assert_eq!(
            s.validate_token(sid, "tok2"),
            Err(TokenRejection::WrongToken)
        );
        assert_eq!(
            s.validate_token("1-0", "tok"),
            Err(TokenRejection::UnknownSession)
        );
        let mut events = s.subscribe();
        s.store
            .write(s.config.clock.now(), |st, now, ev| {
                st.enter_phase("env", EnvironmentStatus::Suspending, now, ev);
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap();
        assert_eq!(
            s.validate_token(sid, "tok"),
            Err(TokenRejection::UnknownSession)
        );
        assert_eq!(
            events.try_recv().unwrap(),
            StateEvent::Suspended {
                environment_id: "env".into()
            }
        );
        assert_eq!(
            events.try_recv().unwrap(),
            StateEvent::SessionClosed {
                session_id: sid.into(),
                environment_id: "env".into()
            }
        );
        assert!(s.home_dir("env").ends_with("homes/env"));
    }

    #[test]
    fn state_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let _s = shared(&nested);
        let file_mode = std::fs::metadata(nested.join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&nested).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }
}
