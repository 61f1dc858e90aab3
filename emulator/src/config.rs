//! Emulator configuration: where state lives, which keys are accepted, how long
//! lifecycle transitions take, and the clock that drives them.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rand::Rng;

/// A SigV4 key pair the emulator accepts. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AcceptedCredentials {
    /// Access key id (`AKIA…`).
    pub access_key_id: String,
    /// Secret access key (never logged).
    pub secret_access_key: String,
}

impl AcceptedCredentials {
    /// Build a key pair.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// Generate a fresh random key pair: an `AKIA`-style id of 20 characters and a
    /// 40-character secret.
    pub fn generate() -> Self {
        const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET_ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rng();
        let mut id = String::from("AKIA");
        for _ in 0..16 {
            id.push(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char);
        }
        let secret: String = (0..40)
            .map(|_| SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())] as char)
            .collect();
        Self::new(id, secret)
    }
}

impl fmt::Debug for AcceptedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// How long each lifecycle transition takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// CREATING → RUNNING for the default environment.
    pub create_delay: Duration,
    /// CREATING → RUNNING for a VPC environment.
    pub vpc_create_delay: Duration,
    /// RESUMING → RUNNING.
    pub resume_delay: Duration,
    /// SUSPENDING → SUSPENDED.
    pub suspend_delay: Duration,
    /// DELETING → gone.
    pub delete_delay: Duration,
    /// RUNNING with no heartbeat or session activity for this long → SUSPENDING.
    pub idle_timeout: Duration,
    /// RUNNING for this long without interruption → SUSPENDING, activity or not
    /// (`None`: no cap).
    pub session_cap: Option<Duration>,
}

impl Timings {
    /// Values taken from the reference: creation ~15 s (VPC 45 s), resume 7 s,
    /// suspend 3 s, delete 3 s, idle 20 min, 12 h cap.
    pub fn realistic() -> Self {
        Self {
            create_delay: Duration::from_secs(15),
            vpc_create_delay: Duration::from_secs(45),
            resume_delay: Duration::from_secs(7),
            suspend_delay: Duration::from_secs(3),
            delete_delay: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(20 * 60),
            session_cap: Some(Duration::from_secs(12 * 3600)),
        }
    }

    /// Short but visible transitions, for interactive use of the emulator.
    pub fn fast() -> Self {
        Self {
            create_delay: Duration::from_millis(1500),
            vpc_create_delay: Duration::from_millis(2500),
            resume_delay: Duration::from_millis(1000),
            suspend_delay: Duration::from_millis(500),
            delete_delay: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(20 * 60),
            session_cap: Some(Duration::from_secs(12 * 3600)),
        }
    }

    /// Every transition completes at once (idle timeout and cap as in
    /// [`Timings::realistic`]), for tests.
    pub fn instant() -> Self {
        Self {
            create_delay: Duration::ZERO,
            vpc_create_delay: Duration::ZERO,
            resume_delay: Duration::ZERO,
            suspend_delay: Duration::ZERO,
            delete_delay: Duration::ZERO,
            idle_timeout: Duration::from_secs(20 * 60),
            session_cap: Some(Duration::from_secs(12 * 3600)),
        }
    }
}

impl Timings {
    /// Look up a preset by name: `realistic`, `fast` or `instant`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "realistic" => Some(Self::realistic()),
            "fast" => Some(Self::fast()),
            "instant" => Some(Self::instant()),
            _ => None,
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Self::fast()
    }
}

/// Source of wall-clock time for the lifecycle (timestamps are stored in the
/// state file, so processes sharing a state directory agree on every status).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to, for tests. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A manual clock starting at `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A manual clock starting at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Set the clock.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Error codes the emulator uses where the real service's code is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodes {
    /// A VPC environment name that is already in use (default `ConflictException`).
    pub duplicate_name: String,
    /// A third VPC environment (default `ServiceQuotaExceededException`).
    pub vpc_quota: String,
    /// More concurrent sessions than allowed (default `ServiceQuotaExceededException`).
    pub session_quota: String,
}

impl Default for ErrorCodes {
    fn default() -> Self {
        Self {
            duplicate_name: "ConflictException".into(),
            vpc_quota: "ServiceQuotaExceededException".into(),
            session_quota: "ServiceQuotaExceededException".into(),
        }
    }
}

/// Everything the emulator needs to run.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Environments, sessions, uploaded objects and home directories persist here.
    pub state_dir: PathBuf,
    /// The one region served; requests signed for another region get 403.
    pub region: String,
    /// SigV4 keys accepted. Environments belong to the access key that created them.
    pub credentials: Vec<AcceptedCredentials>,
    /// Lifecycle durations.
    pub timings: Timings,
    /// Maximum VPC environments per principal (reference: 2).
    pub max_vpc_environments: usize,
    /// Maximum concurrent sessions over all environments (reference: 10).
    pub max_sessions: usize,
    /// Whether DescribeEnvironments includes `Status` (real behaviour contested).
    pub describe_includes_status: bool,
    /// Maximum allowed difference between `X-Amz-Date` and the system time.
    pub max_clock_skew: Duration,
    /// Error codes for cases where the real code is unknown.
    pub error_codes: ErrorCodes,
    /// Largest object accepted by the fake S3 (1 GiB).
    pub max_object_size: u64,
    /// Clock that drives lifecycle transitions. The SigV4 clock-skew check always
    /// uses the system time, so clients may sign with their own clock while tests
    /// move this one.
    pub clock: Arc<dyn Clock>,
    /// Data-channel gateway settings (session modes, faults, grace periods).
    pub gateway: crate::gateway::GatewayConfig,
    /// The `ws://` or `wss://` base (scheme, host and port) of the stream
    /// URLs handed out, for a TLS front, a proxy or a relay in front of the
    /// gateway. Default `None`: the emulator's own listener (`ws://`).
    pub stream_base: Option<String>,
    /// The `http://` or `https://` base (scheme, host and port) of the
    /// presigned S3 URLs handed out by GetFileUploadUrls and
    /// GetFileDownloadUrls, for a relay or a proxy in front of the fake S3
    /// (the download URL is signed for that host). Default `None`: the
    /// emulator's own listener.
    pub s3_base: Option<String>,
}

impl EmulatorConfig {
    /// Defaults: region `us-east-1`, no accepted keys (add some), fast timings,
    /// 2 VPC environments, 10 sessions, `Status` in DescribeEnvironments.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            region: "us-east-1".into(),
            credentials: Vec::new(),
            timings: Timings::fast(),
            max_vpc_environments: 2,
            max_sessions: 10,
            describe_includes_status: true,
            max_clock_skew: Duration::from_secs(15 * 60),
            error_codes: ErrorCodes::default(),
            max_object_size: 1 << 30,
            clock: Arc::new(SystemClock),
            gateway: crate::gateway::GatewayConfig::default(),
            stream_base: None,
            s3_base: None,
        }
    }

    /// Builder-style: accept this key pair too.
    pub fn with_credentials(mut self, credentials: AcceptedCredentials) -> Self {
        self.credentials.push(credentials);
        self
    }

    /// Builder-style: use these timings.
    pub fn with_timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// Builder-style: use this clock for the lifecycle.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builder-style: use these data-channel gateway settings.
    pub fn with_gateway(mut self, gateway: crate::gateway::GatewayConfig) -> Self {
        self.gateway = gateway;
        self
    }

    /// Builder-style: options of data-channel sessions (mode, handshake, faults).
    pub fn with_session_defaults(mut self, options: crate::gateway::SessionOptions) -> Self {
        self.gateway.defaults = options;
        self
    }

    /// Builder-style: serve this region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
}

/// The default state directory: `$XDG_DATA_HOME/cloudshell-rs/emulator`, else
/// `~/.local/share/cloudshell-rs/emulator` (macOS:
/// `~/Library/Application Support/cloudshell-rs/emulator`). `None` when no home
/// directory is known.
pub fn default_state_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = if cfg!(target_os = "macos") {
        non_empty("HOME").map(|h| PathBuf::from(h).join("Library/Application Support"))
    } else {
        non_empty("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".local/share")))
    }?;
    Some(base.join("cloudshell-rs").join("emulator"))
}

const CREDENTIALS_FILE: &str = "credentials";

/// Load the emulator's key pair from `state_dir/credentials`, or generate one and
/// store it there (mode 0600) the first time. The file holds two lines:
/// `aws_access_key_id = …` and `aws_secret_access_key = …`.
pub fn load_or_create_credentials(state_dir: &Path) -> io::Result<AcceptedCredentials> {
    let path = state_dir.join(CREDENTIALS_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => parse_credentials(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a valid emulator credentials file (delete it to generate new keys)",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_private_dir(state_dir)?;
            let creds = AcceptedCredentials::generate();
            let text = format!(
                "aws_access_key_id = {}\naws_secret_access_key = {}\n",
                creds.access_key_id, creds.secret_access_key
            );
            write_private_file(&path, text.as_bytes())?;
            Ok(creds)
        }
        Err(e) => Err(e),
    }
}

fn parse_credentials(text: &str) -> Option<AcceptedCredentials> {
    let mut id = None;
    let mut secret = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "aws_access_key_id" => id = Some(v.trim().to_owned()),
            "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            Some(AcceptedCredentials::new(id, secret))
        }
        _ => None,
    }
}

/// Create a directory (and its parents); a directory created here is private
/// to its owner (0700), since it holds keys and session tokens.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Write a file readable only by its owner, atomically (temporary file + rename).
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(
        ".{file_name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret() {
        let c = AcceptedCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let s = format!("{c:?}");
        assert!(s.contains("AKIDEXAMPLE"));
        assert!(!s.contains("wJalr"));
    }

    #[test]
    fn generated_keys_have_aws_shape() {
        let c = AcceptedCredentials::generate();
        assert_eq!(c.access_key_id.len(), 20);
        assert!(c.access_key_id.starts_with("AKIA"));
        assert_eq!(c.secret_access_key.len(), 40);
    }

    #[test]
    fn credentials_are_created_once_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested");
        let a = load_or_create_credentials(&dir).unwrap();
        let b = load_or_create_credentials(&dir).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(CREDENTIALS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.join(CREDENTIALS_FILE), "garbage").unwrap();
        let err = load_or_create_credentials(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!err.to_string().contains(&a.secret_access_key));
    }

    #[test]
    fn timing_presets_by_name() {
        assert_eq!(Timings::from_name("instant"), Some(Timings::instant()));
        assert_eq!(Timings::from_name("realistic"), Some(Timings::realistic()));
        assert_eq!(Timings::from_name("fast"), Some(Timings::fast()));
        assert_eq!(Timings::from_name("slow"), None);
        assert_eq!(Timings::realistic().resume_delay, Duration::from_secs(7));
        assert_eq!(Timings::instant().create_delay, Duration::ZERO);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = ManualClock::new(start);
        let c2 = c.clone();
        assert_eq!(c.now(), start);
        c2.advance(Duration::from_secs(5));
        assert_eq!(c.now(), start + Duration::from_secs(5));
    }
}
