//! Persistent emulator state and the environment lifecycle.
//!
//! Every status is derived lazily from wall-clock timestamps kept in the state
//! file (`phase` + `phase_since_ms` + `last_activity_ms`), so any process that
//! loads the file at any time computes the same status without a timer having
//! fired. The file is rewritten atomically after each mutation and re-read
//! whenever another process has replaced it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::{EmulatorConfig, Timings, create_private_dir, write_private_file};
use crate::time::{from_millis, to_millis};

/// File name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;

/// Environment status values, as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnvironmentStatus {
    /// Being created; becomes RUNNING by itself.
    Creating,
    /// Usable.
    Running,
    /// Being resumed after StartEnvironment.
    Resuming,
    /// Being suspended (StopEnvironment, inactivity or the session cap).
    Suspending,
    /// Suspended; StartEnvironment resumes it.
    Suspended,
    /// Being deleted; disappears by itself.
    Deleting,
}

impl EnvironmentStatus {
    /// The wire value (`RUNNING`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Running => "RUNNING",
            Self::Resuming => "RESUMING",
            Self::Suspending => "SUSPENDING",
            Self::Suspended => "SUSPENDED",
            Self::Deleting => "DELETING",
        }
    }
}

impl fmt::Display for EnvironmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// VPC settings of a VPC environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfig {
    /// `vpc-…`
    pub vpc_id: String,
    /// `subnet-…`, at least one.
    pub subnet_ids: Vec<String>,
    /// `sg-…`, one to five.
    pub security_group_ids: Vec<String>,
}

/// The data-channel token of a session. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionToken(String);

impl SessionToken {
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One session created by CreateSession.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `<19 digits>-<17 hex>`.
    pub session_id: String,
    /// Environment the session belongs to.
    pub environment_id: String,
    /// `TabId` from the request, if any.
    pub tab_id: Option<String>,
    /// `SessionType` from the request, if any.
    pub session_type: Option<String>,
    /// `QCliDisabled` from the request, if any.
    pub q_cli_disabled: Option<bool>,
    /// The data-channel token (secret).
    pub token: SessionToken,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl SessionRecord {
    /// Creation time.
    pub fn created(&self) -> SystemTime {
        from_millis(self.created_ms)
    }
}

/// What the emulator knows about one environment at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvironmentSnapshot {
    /// `EnvironmentId`.
    pub environment_id: String,
    /// Access key id of the principal that owns it.
    pub owner: String,
    /// `EnvironmentName` (VPC environments).
    pub name: Option<String>,
    /// `VpcConfig` (VPC environments).
    pub vpc_config: Option<VpcConfig>,
    /// Current status.
    pub status: EnvironmentStatus,
    /// Creation time.
    pub created: SystemTime,
    /// SendHeartBeat calls received.
    pub heartbeats: u64,
    /// Time of the last SendHeartBeat.
    pub last_heartbeat: Option<SystemTime>,
    /// Last heartbeat, session creation or reported session traffic.
    pub last_activity: SystemTime,
    /// Whether PutCredentials succeeded for it.
    pub has_credentials: bool,
    /// Live sessions.
    pub sessions: Vec<SessionRecord>,
}

/// Something that happened to the state that live connections must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateEvent {
    /// CreateSession made a session (no client has connected yet). Sent as
    /// soon as the session is decided, before the state is written to disk,
    /// so that its shell can start meanwhile; if the write fails (the
    /// CreateSession call then fails), [`StateEvent::SessionClosed`] follows.
    SessionCreated {
        /// The session.
        session_id: String,
        /// Its environment.
        environment_id: String,
        /// Its `TabId`, if it was given one.
        tab_id: Option<String>,
    },
    /// A session was deleted or closed by suspension/deletion of its environment.
    SessionClosed {
        /// The session.
        session_id: String,
        /// Its environment.
        environment_id: String,
    },
    /// An environment left RUNNING for SUSPENDING.
    Suspended {
        /// The environment.
        environment_id: String,
    },
    /// An environment is gone.
    Deleted {
        /// The environment.
        environment_id: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredEnv {
    pub id: String,
    pub owner: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub vpc: Option<VpcConfig>,
    pub phase: EnvironmentStatus,
    pub phase_since_ms: u64,
    pub created_ms: u64,
    pub last_activity_ms: u64,
    #[serde(default)]
    pub heartbeats: u64,
    #[serde(default)]
    pub last_heartbeat_ms: Option<u64>,
    #[serde(default)]
    pub has_credentials: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRefreshToken {
    /// Hex SHA-256 of the token (the token itself is not kept).
    pub token_sha256: String,
    /// Hex SHA-256 of the KeyBase it was issued for.
    pub key_base_sha256: String,
    pub owner: String,
    pub issued_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredObject {
    pub bucket: String,
    pub key: String,
    /// Hex SHA-256 of the SSE-C key bytes.
    pub sse_key_sha256: String,
    pub size: u64,
    /// File name under `state_dir/objects/`.
    pub file: String,
    pub stored_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub version: u32,
    #[serde(default)]
    pub environments: Vec<StoredEnv>,
    #[serde(default)]
    pub sessions: Vec<SessionRecord>,
    #[serde(default)]
    pub refresh_tokens: Vec<StoredRefreshToken>,
    #[serde(default)]
    pub objects: Vec<StoredObject>,
    /// Secret used to sign the fake S3's presigned URLs and POST policies.
    #[serde(default)]
    pub s3_secret: String,
}

impl StateFile {
    fn empty() -> Self {
        Self {
            version: STATE_VERSION,
            environments: Vec::new(),
            sessions: Vec::new(),
            refresh_tokens: Vec::new(),
            objects: Vec::new(),
            s3_secret: random_hex(32),
        }
    }

    pub fn env(&self, id: &str) -> Option<&StoredEnv> {
        self.environments.iter().find(|e| e.id == id)
    }

    pub fn env_mut(&mut self, id: &str) -> Option<&mut StoredEnv> {
        self.environments.iter_mut().find(|e| e.id == id)
    }

    /// Move an environment into a new phase, closing its sessions when it
    /// leaves RUNNING for SUSPENDING or DELETING.
    pub fn enter_phase(
        &mut self,
        id: &str,
        phase: EnvironmentStatus,
        at_ms: u64,
        events: &mut Vec<StateEvent>,
    ) {
        let Some(env) = self.env_mut(id) else {
            return;
        };
        env.phase = phase;
        env.phase_since_ms = at_ms;
        if phase == EnvironmentStatus::Running {
            env.last_activity_ms = env.last_activity_ms.max(at_ms);
        }
        if matches!(
            phase,
            EnvironmentStatus::Suspending | EnvironmentStatus::Deleting
        ) {
            if phase == EnvironmentStatus::Suspending {
                events.push(StateEvent::Suspended {
                    environment_id: id.to_owned(),
                });
            }
            self.close_sessions_of(id, events);
        }
    }

    pub fn close_sessions_of(&mut self, env_id: &str, events: &mut Vec<StateEvent>) {
        self.close_sessions(events, |s| s.environment_id == env_id);
    }

    /// Removes the sessions `which` selects, each with a `SessionClosed`
    /// event (its channel is closed).
    pub fn close_sessions(
        &mut self,
        events: &mut Vec<StateEvent>,
        which: impl Fn(&SessionRecord) -> bool,
    ) {
        self.sessions.retain(|s| {
            if which(s) {
                events.push(StateEvent::SessionClosed {
                    session_id: s.session_id.clone(),
                    environment_id: s.environment_id.clone(),
                });
                false
            } else {
                true
            }
        });
    }

    /// Apply every transition due at `now_ms`. Returns whether anything changed.
    pub fn advance(
        &mut self,
        now_ms: u64,
        timings: &Timings,
        events: &mut Vec<StateEvent>,
    ) -> bool {
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let mut changed = false;
        let ids: Vec<String> = self.environments.iter().map(|e| e.id.clone()).collect();
        for id in ids {
            // Each environment passes through at most a handful of phases.
            for _ in 0..8 {
                let Some(env) = self.env(&id) else { break };
                let since = env.phase_since_ms;
                let next = match env.phase {
                    EnvironmentStatus::Creating => {
                        let d = if env.vpc.is_some() {
                            timings.vpc_create_delay
                        } else {
                            timings.create_delay
                        };
                        Some((EnvironmentStatus::Running, since.saturating_add(ms(d))))
                    }
                    EnvironmentStatus::Resuming => Some((
                        EnvironmentStatus::Running,
                        since.saturating_add(ms(timings.resume_delay)),
                    )),
                    EnvironmentStatus::Running => {
                        let idle = env
                            .last_activity_ms
                            .max(since)
                            .saturating_add(ms(timings.idle_timeout));
                        let cap = timings
                            .session_cap
                            .map_or(u64::MAX, |c| since.saturating_add(ms(c)));
                        Some((EnvironmentStatus::Suspending, idle.min(cap)))
                    }
                    EnvironmentStatus::Suspending => Some((
                        EnvironmentStatus::Suspended,
                        since.saturating_add(ms(timings.suspend_delay)),
                    )),
                    EnvironmentStatus::Deleting => {
                        let at = since.saturating_add(ms(timings.delete_delay));
                        if now_ms >= at {
                            self.close_sessions_of(&id, events);
                            self.environments.retain(|e| e.id != id);
                            events.push(StateEvent::Deleted {
                                environment_id: id.clone(),
                            });
                            changed = true;
                        }
                        None
                    }
                    EnvironmentStatus::Suspended => None,
                };
                match next {
                    Some((phase, at)) if now_ms >= at => {
                        self.enter_phase(&id, phase, at, events);
                        changed = true;
                    }
                    _ => break,
                }
            }
        }
        changed
    }

    pub fn snapshot(&self, env: &StoredEnv) -> EnvironmentSnapshot {
        EnvironmentSnapshot {
            environment_id: env.id.clone(),
            owner: env.owner.clone(),
            name: env.name.clone(),
            vpc_config: env.vpc.clone(),
            status: env.phase,
            created: from_millis(env.created_ms),
            heartbeats: env.heartbeats,
            last_heartbeat: env.last_heartbeat_ms.map(from_millis),
            last_activity: from_millis(env.last_activity_ms),
            has_credentials: env.has_credentials,
            sessions: self
                .sessions
                .iter()
                .filter(|s| s.environment_id == env.id)
                .cloned()
                .collect(),
        }
    }
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

struct Inner {
    state: StateFile,
    /// The file's bytes as last read or written by this process. Another
    /// process's write shows up as different bytes (timestamps are too coarse
    /// to tell two quick writes apart).
    seen: Vec<u8>,
}

/// Why an operation on the store failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError<E> {
    /// The operation refused (nothing changed).
    #[error(transparent)]
    Rejected(E),
    /// The change could not be written to disk (and was rolled back).
    #[error("could not persist emulator state")]
    Persist(#[source] io::Error),
}

/// The state, guarded by a mutex and mirrored to `state_dir/state.json`.
pub(crate) struct Store {
    path: PathBuf,
    timings: Timings,
    inner: Mutex<Inner>,
    events: broadcast::Sender<StateEvent>,
}

impl Store {
    /// Load (or create) the state file. A corrupt file is renamed aside and the
    /// emulator starts fresh.
    pub fn open(config: &EmulatorConfig) -> io::Result<Self> {
        create_private_dir(&config.state_dir)?;
        let path = config.state_dir.join(STATE_FILE);
        let state = match load(&path) {
            Ok(Some(state)) => state,
            Ok(None) => StateFile::empty(),
            Err(LoadError::Corrupt(reason)) => {
                let aside = config.state_dir.join(format!(
                    "{STATE_FILE}.corrupt-{}",
                    to_millis(SystemTime::now())
                ));
                match fs::rename(&path, &aside) {
                    Ok(()) => tracing::error!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        "emulator state file is corrupt ({reason}); starting with empty state"
                    ),
                    Err(e) => tracing::error!(
                        path = %path.display(),
                        "emulator state file is corrupt ({reason}) and could not be moved aside ({e}); starting with empty state"
                    ),
                }
                StateFile::empty()
            }
            Err(LoadError::Io(e)) => return Err(e),
        };
        let mut state = state;
        if state.s3_secret.is_empty() {
            state.s3_secret = random_hex(32);
        }
        let store = Self {
            path,
            timings: config.timings.clone(),
            inner: Mutex::new(Inner {
                state,
                seen: Vec::new(),
            }),
            events: broadcast::channel(1024).0,
        };
        {
            let mut inner = store.lock();
            store.persist(&mut inner)?;
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribe to state events.
    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.events.subscribe()
    }

    fn refresh(&self, inner: &mut Inner) {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), "could not re-read state file: {e}");
                }
                return;
            }
        };
        if bytes == inner.seen {
            return;
        }
        match parse(&bytes) {
            Ok(state) => inner.state = state,
            Err(reason) => {
                tracing::warn!(path = %self.path.display(), "ignoring unreadable state file written by another process ({reason})");
            }
        }
        inner.seen = bytes;
    }

    fn persist(&self, inner: &mut Inner) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(&inner.state).map_err(io::Error::other)?;
        write_private_file(&self.path, &text)?;
        inner.seen = text;
        Ok(())
    }

    fn publish(&self, events: Vec<StateEvent>) {
        for e in events {
            // No subscribers is fine.
            let _ = self.events.send(e);
        }
    }

    /// Read the state as of `now` (persisting transitions that became due).
    pub fn read<R>(&self, now: SystemTime, f: impl FnOnce(&StateFile) -> R) -> R {
        let mut events = Vec::new();
        let r = {
            let mut inner = self.lock();
            self.refresh(&mut inner);
            if inner
                .state
                .advance(to_millis(now), &self.timings, &mut events)
                && let Err(e) = self.persist(&mut inner)
            {
                tracing::error!(path = %self.path.display(), "could not persist emulator state: {e}");
            }
            f(&inner.state)
        };
        self.publish(events);
        r
    }

    /// Mutate the state as of `now`. On `Err` nothing is changed; on `Ok` the
    /// new state is written to disk (and rolled back if that fails).
    pub fn write<R, E>(
        &self,
        now: SystemTime,
        f: impl FnOnce(&mut StateFile, u64, &mut Vec<StateEvent>) -> Result<R, E>,
    ) -> Result<R, StoreError<E>> {
        let now_ms = to_millis(now);
        let mut events = Vec::new();
        let result = {
            let mut inner = self.lock();
            self.refresh(&mut inner);
            let advanced = inner.state.advance(now_ms, &self.timings, &mut events);
            let before = inner.state.clone();
            let mut op_events = Vec::new();
            match f(&mut inner.state, now_ms, &mut op_events) {
                Ok(r) => {
                    // A new session's shell starts up while the state is
                    // written (a file write and an fsync, about a
                    // millisecond), not after.
                    let (early, later): (Vec<_>, Vec<_>) = op_events
                        .into_iter()
                        .partition(|e| matches!(e, StateEvent::SessionCreated { .. }));
                    self.publish(early.clone());
                    match self.persist(&mut inner) {
                        Ok(()) => {
                            events.extend(later);
                            Ok(r)
                        }
                        Err(e) => {
                            inner.state = before;
                            // The sessions announced early do not exist.
                            events.extend(early.into_iter().filter_map(|e| match e {
                                StateEvent::SessionCreated {
                                    session_id,
                                    environment_id,
                                    ..
                                } => Some(StateEvent::SessionClosed {
                                    session_id,
                                    environment_id,
                                }),
                                _ => None,
                            }));
                            Err(StoreError::Persist(e))
                        }
                    }
                }
                Err(e) => {
                    inner.state = before;
                    if advanced && let Err(pe) = self.persist(&mut inner) {
                        tracing::error!(path = %self.path.display(), "could not persist emulator state: {pe}");
                    }
                    Err(StoreError::Rejected(e))
                }
            }
        };
        self.publish(events);
        result
    }

    /// Record activity on a RUNNING environment without necessarily writing the
    /// file (written when the stored value is at least a second old).
    pub fn touch(&self, env_id: &str, now: SystemTime) -> bool {
        let now_ms = to_millis(now);
        let mut events = Vec::new();
        let found = {
            let mut inner = self.lock();
            self.refresh(&mut inner);
            let mut dirty = inner.state.advance(now_ms, &self.timings, &mut events);
            let found = match inner.state.env_mut(env_id) {
                Some(env) => {
                    if env.phase == EnvironmentStatus::Running && now_ms > env.last_activity_ms {
                        if now_ms - env.last_activity_ms >= 1000 {
                            dirty = true;
                        }
                        env.last_activity_ms = now_ms;
                    }
                    true
                }
                None => false,
            };
            if dirty && let Err(e) = self.persist(&mut inner) {
                tracing::error!(path = %self.path.display(), "could not persist emulator state: {e}");
            }
            found
        };
        self.publish(events);
        found
    }
}

enum LoadError {
    Corrupt(String),
    Io(io::Error),
}

fn load(path: &Path) -> Result<Option<StateFile>, LoadError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoadError::Io(e)),
    };
    parse(&bytes).map(Some).map_err(LoadError::Corrupt)
}

fn parse(bytes: &[u8]) -> Result<StateFile, String> {
    let state: StateFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if state.version != STATE_VERSION {
        return Err(format!("unsupported state version {}", state.version));
    }
    Ok(state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(id: &str, phase: EnvironmentStatus, since: u64) -> StoredEnv {
        StoredEnv {
            id: id.into(),
            owner: "AKID".into(),
            name: None,
            vpc: None,
            phase,
            phase_since_ms: since,
            created_ms: since,
            last_activity_ms: since,
            heartbeats: 0,
            last_heartbeat_ms: None,
            has_credentials: false,
        }
    }

    fn timings() -> Timings {
        Timings {
            create_delay: Duration::from_secs(10),
            vpc_create_delay: Duration::from_secs(40),
            resume_delay: Duration::from_secs(7),
            suspend_delay: Duration::from_secs(3),
            delete_delay: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(1200),
            session_cap: Some(Duration::from_secs(43_200)),
        }
    }

    #[test]
    fn lifecycle_is_a_function_of_time() {
        let mut s = StateFile::empty();
        s.environments
            .push(env("e", EnvironmentStatus::Creating, 0));
        let mut ev = Vec::new();
        s.advance(9_999, &timings(), &mut ev);
        assert_eq!(s.env("e").unwrap().phase, EnvironmentStatus::Creating);
        s.advance(10_000, &timings(), &mut ev);
        assert_eq!(s.env("e").unwrap().phase, EnvironmentStatus::Running);
        // Idle 20 min after becoming RUNNING, then 3 s of SUSPENDING — all in one
        // evaluation long after the fact.
        let mut late = s.clone();
        late.advance(10_000 + 1_200_000 + 3_000, &timings(), &mut ev);
        assert_eq!(late.env("e").unwrap().phase, EnvironmentStatus::Suspended);
        assert_eq!(
            late.env("e").unwrap().phase_since_ms,
            10_000 + 1_200_000 + 3_000
        );
        let mut mid = s.clone();
        mid.advance(10_000 + 1_200_000 + 2_999, &timings(), &mut ev);
        assert_eq!(mid.env("e").unwrap().phase, EnvironmentStatus::Suspending);
    }

    #[test]
    fn activity_postpones_idle_but_not_the_cap() {
        let mut s = StateFile::empty();
        s.environments.push(env("e", EnvironmentStatus::Running, 0));
        let t = timings();
        let mut ev = Vec::new();
        // Activity every 10 minutes for 13 hours.
        let mut now = 0;
        while now < 13 * 3_600_000 {
            s.advance(now, &t, &mut ev);
            if s.env("e").unwrap().phase != EnvironmentStatus::Running {
                break;
            }
            s.env_mut("e").unwrap().last_activity_ms = now;
            now += 600_000;
        }
        let e = s.env("e").unwrap();
        assert_eq!(e.phase, EnvironmentStatus::Suspending);
        assert_eq!(e.phase_since_ms, 43_200_000);
    }

    #[test]
    fn deletion_removes_env_and_sessions() {
        let mut s = StateFile::empty();
        s.environments
            .push(env("e", EnvironmentStatus::Deleting, 0));
        s.sessions.push(session("1-a", "e", 0));
        let mut ev = Vec::new();
        s.advance(3_000, &timings(), &mut ev);
        assert!(s.env("e").is_none());
        assert!(s.sessions.is_empty());
        assert!(ev.contains(&StateEvent::Deleted {
            environment_id: "e".into()
        }));
    }

    fn session(id: &str, env_id: &str, created_ms: u64) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            environment_id: env_id.into(),
            tab_id: None,
            session_type: None,
            q_cli_disabled: None,
            token: SessionToken::new("t".into()),
            created_ms,
        }
    }

    /// A write that adds a session the way CreateSession does.
    fn create_session(store: &Store) -> Result<(), StoreError<()>> {
        store.write(SystemTime::now(), |s, now_ms, events| {
            s.sessions.push(session("1-a", "e", now_ms));
            events.push(StateEvent::SessionCreated {
                session_id: "1-a".into(),
                environment_id: "e".into(),
                tab_id: None,
            });
            Ok(())
        })
    }

    fn drain(rx: &mut broadcast::Receiver<StateEvent>) -> Vec<StateEvent> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_new_session_is_announced_before_the_state_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&EmulatorConfig::new(dir.path())).unwrap();
        let mut rx = store.subscribe();
        create_session(&store).unwrap();
        let created = StateEvent::SessionCreated {
            session_id: "1-a".into(),
            environment_id: "e".into(),
            tab_id: None,
        };
        assert_eq!(drain(&mut rx), vec![created.clone()]);

        // The file cannot be replaced (a directory holds its name): the
        // session was announced before that was known, so it is closed again
        // and the state rolled back.
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(&EmulatorConfig::new(store_dir.path())).unwrap();
        let mut rx = store.subscribe();
        let path = store_dir.path().join(STATE_FILE);
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("in-the-way"), b"x").unwrap();
        assert!(matches!(
            create_session(&store),
            Err(StoreError::Persist(_))
        ));
        assert_eq!(
            drain(&mut rx),
            vec![
                created,
                StateEvent::SessionClosed {
                    session_id: "1-a".into(),
                    environment_id: "e".into(),
                },
            ]
        );
        assert!(store.read(SystemTime::now(), |s| s.sessions.is_empty()));
    }

    #[test]
    fn token_debug_is_redacted_and_compare_works() {
        let t = SessionToken::new("secret-token".into());
        assert!(!format!("{t:?} {t}").contains("secret"));
        assert!(t.matches("secret-token"));
        assert!(!t.matches("secret-tokem"));
        assert!(!t.matches("secret"));
    }
}
