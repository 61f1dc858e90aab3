//! Make the local AWS credentials available inside a CloudShell environment,
//! as the standard environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_DEFAULT_REGION`), without any secret value ever crossing an echoing
//! terminal.
//!
//! # Where secrets go, and where they never go
//!
//! Typing `export AWS_SECRET_ACCESS_KEY=…` into the remote shell (even after
//! `stty -echo`, even with a leading space) leaks: the terminal echoes
//! whatever arrives before `stty -echo` has run, the echo travels back over
//! the data channel and lands in tmux's scrollback, and the line can reach the
//! history. So secret bytes are never typed into an interactive shell:
//!
//! - For [`crate::exec`] runs ([`exec_options`]), the values go into the
//!   exec script's environment block: sent only after the script has
//!   confirmed that echo is off, as base64 input that bash decodes into an
//!   array handed to the `export` builtin. No command line, no history, no
//!   echo.
//! - For interactive sessions ([`Injection`]), a separate exec run writes the
//!   variables to a file: the secret bytes are that run's stdin (never its
//!   argv), read by `cat` into a file created with `umask 077` inside a 0700
//!   directory `cloudshell-rs-$UID` on a tmpfs (`$XDG_RUNTIME_DIR`, else
//!   `/dev/shm`, else `$TMPDIR` or `/tmp`), written to a temporary name and
//!   renamed into place. Next to it goes a small hook script (no secret). The
//!   only thing typed into the user's shell is ` . <hook path>`: it sources the
//!   variables and adds a `PROMPT_COMMAND` function that re-sources the file
//!   when its generation line changed (a `read` builtin, no process per
//!   prompt).
//! - Temporary credentials are re-resolved through the credential chain and
//!   the file rewritten before they expire (5 minutes before); the shell
//!   picks them up at its next prompt without anything being typed.
//! - [`Injection::finish`] removes both files (best effort).
//!
//! # Limits
//!
//! - The values are in the environment of the remote shell and its children
//!   (readable by the same user through `/proc/<pid>/environ`, as for any
//!   exported variable) and in the file until it is removed; anybody who can
//!   run code as `cloudshell-user` can read them.
//! - A long-running program keeps the environment it started with; only the
//!   shell picks up refreshed values (at its next prompt).
//! - If the client is killed, the file stays until the environment stops
//!   (tmpfs) or the next `finish` of the same injection.
//! - The hook needs bash (it uses `PROMPT_COMMAND`).

use crate::Client;
use crate::Secret;
use crate::exec::{self, ExecError, ExecOptions};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Refresh the file this long before the credentials expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Never refresh more often than this.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Retry delay after a failed refresh.
const RETRY_DELAY: Duration = Duration::from_secs(60);

/// Errors of credential injection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    /// The local credentials could not be resolved.
    #[error("cannot resolve local AWS credentials")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The helper run that writes or removes the file failed to run.
    #[error("cannot run the credential helper in the environment")]
    Exec(#[source] ExecError),
    /// The helper ran but refused (e.g. an unsafe directory).
    #[error("the credential helper failed in the environment: {0}")]
    Remote(String),
}

/// AWS environment variables for one set of credentials. `Debug` shows no value.
#[derive(Clone)]
pub struct AwsEnv {
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    region: String,
    expiry: Option<SystemTime>,
}

impl std::fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsEnv")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| crate::secret::REDACTED),
            )
            .field("region", &self.region)
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl AwsEnv {
    /// From resolved credentials and a region.
    pub fn new(credentials: &Credentials, region: impl Into<String>) -> Self {
        AwsEnv {
            access_key_id: Secret::new(credentials.access_key_id()),
            secret_access_key: Secret::new(credentials.secret_access_key()),
            session_token: credentials.session_token().map(Secret::new),
            region: region.into(),
            expiry: credentials.expiry(),
        }
    }

    /// The credentials the client signs with (its credential chain, cached),
    /// and the client's region.
    pub async fn from_client(client: &Client) -> Result<Self, InjectError> {
        let creds = client
            .inner
            .credentials
            .get()
            .await
            .map_err(InjectError::Credentials)?;
        Ok(Self::new(&creds, client.region()))
    }

    /// When the credentials expire, if they do.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
    }

    /// The variables, in export order.
    pub fn vars(&self) -> Vec<(&'static str, Secret)> {
        let mut v = vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ];
        if let Some(t) = &self.session_token {
            v.push(("AWS_SESSION_TOKEN", t.clone()));
        }
        v.push(("AWS_REGION", Secret::new(self.region.clone())));
        v.push(("AWS_DEFAULT_REGION", Secret::new(self.region.clone())));
        v
    }

    /// The file sourced by the remote shell: a generation line, then exports.
    fn env_file(&self, generation: &str) -> Secret {
        let mut s = format!("# cloudshell-rs credentials {generation}\n");
        s.push_str(&format!(
            "__csrs_aws_env_gen='# cloudshell-rs credentials {generation}'\n"
        ));
        if self.session_token.is_none() {
            s.push_str("unset AWS_SESSION_TOKEN\n");
        }
        for (k, v) in self.vars() {
            s.push_str(&format!("export {k}={}\n", single_quote(v.expose())));
        }
        Secret::new(s)
    }
}

/// Shell single quoting: `'` → `'\''`.
fn single_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// Adds the variables of `env` to an exec run: sent through the exec
/// script's environment block (after echo is off, never in argv or history).
pub fn exec_options(options: ExecOptions, env: &AwsEnv) -> ExecOptions {
    env.vars()
        .into_iter()
        .fold(options, |o, (k, v)| o.env(k, v))
}

/// Writes (or rewrites) the env file and the hook; prints the hook's path.
/// `$1` is the injection id (hex). The file content is stdin.
const WRITE_SCRIPT: &str = r#"set -e
umask 077
b=${XDG_RUNTIME_DIR:-}
if [ -z "$b" ] || [ ! -d "$b" ] || [ ! -w "$b" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then b=/dev/shm; else b=${TMPDIR:-/tmp}; fi
fi
d=$b/cloudshell-rs-$(id -u)
mkdir -p -m 700 "$d" 2>/dev/null || true
if [ ! -d "$d" ] || [ -L "$d" ] || [ ! -O "$d" ]; then echo "unsafe directory $d" >&2; exit 3; fi
chmod 700 "$d"
f=$d/aws-$1.env
t=$(mktemp "$d/.aws-$1.XXXXXX")
cat > "$t"
mv -f "$t" "$f"
h=$d/aws-$1.sh
if [ ! -e "$h" ]; then
  t=$(mktemp "$d/.aws-$1.XXXXXX")
  {
    printf "__csrs_aws_env_file='%s'\n" "$f"
    cat <<'HOOK'
__csrs_aws_env() {
  local g
  { IFS= read -r g; } < "$__csrs_aws_env_file" 2>/dev/null || return 0
  [ "$g" = "${__csrs_aws_env_gen-}" ] || . "$__csrs_aws_env_file"
}
__csrs_aws_env
case ";${PROMPT_COMMAND-};" in
  *";__csrs_aws_env;"*) ;;
  *) PROMPT_COMMAND="__csrs_aws_env${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;;
esac
HOOK
  } > "$t"
  mv -f "$t" "$h"
fi
printf '%s\n' "$h"
"#;

/// Removes the files of injection `$1`.
const REMOVE_SCRIPT: &str = r#"for b in "${XDG_RUNTIME_DIR:-}" /dev/shm "${TMPDIR:-/tmp}" /tmp; do
  [ -n "$b" ] || continue
  d=$b/cloudshell-rs-$(id -u)
  if [ -d "$d" ] && [ -O "$d" ]; then rm -f "$d/aws-$1.env" "$d/aws-$1.sh"; rmdir "$d" 2>/dev/null; fi
done
exit 0
"#;

/// Options of [`Injection::start`].
#[derive(Clone, Default)]
pub struct InjectOptions {
    provider: Option<SharedCredentialsProvider>,
    region: Option<String>,
    exec: ExecOptions,
}

impl std::fmt::Debug for InjectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectOptions")
            .field("provider", &self.provider.as_ref().map(|_| "custom"))
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl InjectOptions {
    /// Default: the client's credentials and region.
    pub fn new() -> Self {
        Self::default()
    }

    /// Credentials from this provider instead of the client's chain.
    pub fn provider(mut self, provider: SharedCredentialsProvider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Region exported (default: the client's region).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Options of the helper exec runs (session options, a tap, ...).
    pub fn exec_options(mut self, options: ExecOptions) -> Self {
        self.exec = options;
        self
    }
}

struct Shared {
    client: Client,
    environment_id: String,
    id: String,
    options: InjectOptions,
    generation: std::sync::atomic::AtomicU64,
}

/// Credentials made available to interactive shells of one environment,
/// kept fresh while it lives. See the [module documentation](self).
pub struct Injection {
    shared: Arc<Shared>,
    hook_path: String,
    refresher: Option<tokio::task::JoinHandle<()>>,
    lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injection")
            .field("hook_path", &self.hook_path)
            .finish_non_exhaustive()
    }
}

impl Injection {
    /// Resolves the credentials, writes the file in the environment through a
    /// helper exec run, and starts refreshing it before expiry.
    pub async fn start(
        client: &Client,
        environment_id: &str,
        options: InjectOptions,
    ) -> Result<Self, InjectError> {
        let shared = Arc::new(Shared {
            client: client.clone(),
            environment_id: environment_id.to_string(),
            id: format!("{:032x}", rand::random::<u128>()),
            options,
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        let lock = Arc::new(Mutex::new(()));
        let (hook_path, expiry) = write(&shared).await?;
        let refresher = expiry.map(|e| tokio::spawn(refresh_loop(shared.clone(), lock.clone(), e)));
        Ok(Injection {
            shared,
            hook_path,
            refresher,
            lock,
        })
    }

    /// The line to type into an interactive bash in that environment (a
    /// leading space, the hook path, CR). It holds no secret.
    pub fn shell_line(&self) -> Vec<u8> {
        format!(" . {}\r", single_quote(&self.hook_path)).into_bytes()
    }

    /// The remote path of the hook script.
    pub fn hook_path(&self) -> &str {
        &self.hook_path
    }

    /// Re-resolves the credentials and rewrites the file now; shells pick the
    /// new values up at their next prompt.
    pub async fn refresh_now(&self) -> Result<(), InjectError> {
        let _g = self.lock.lock().await;
        write(&self.shared).await.map(|_| ())
    }

    /// Stops refreshing and removes the files (best effort).
    pub async fn finish(mut self) -> Result<(), InjectError> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let _g = self.lock.lock().await;
        let argv = [
            "bash",
            "-c",
            REMOVE_SCRIPT,
            "cloudshell-rs-credentials",
            &self.shared.id,
        ];
        let out = exec::run(
            &self.shared.client,
            &self.shared.environment_id,
            &argv,
            self.shared.options.exec.clone(),
        )
        .await
        .map_err(InjectError::Exec)?;
        if !out.status.success() {
            return Err(InjectError::Remote(remote_message(&out.stderr)));
        }
        Ok(())
    }
}

impl Drop for Injection {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
    }
}

async fn resolve(shared: &Shared) -> Result<AwsEnv, InjectError> {
    let region = shared
        .options
        .region
        .clone()
        .unwrap_or_else(|| shared.client.region().to_string());
    match &shared.options.provider {
        Some(p) => {
            let c = p
                .provide_credentials()
                .await
                .map_err(InjectError::Credentials)?;
            Ok(AwsEnv::new(&c, region))
        }
        None => {
            let c = shared
                .client
                .inner
                .credentials
                .get()
                .await
                .map_err(InjectError::Credentials)?;
            Ok(AwsEnv::new(&c, region))
        }
    }
}

/// One helper run: the file content is its stdin (never its argv).
async fn write(shared: &Shared) -> Result<(String, Option<SystemTime>), InjectError> {
    let env = resolve(shared).await?;
    let generation = format!(
        "{}-{}",
        shared.id,
        shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let content = env.env_file(&generation);
    let argv = [
        "bash",
        "-c",
        WRITE_SCRIPT,
        "cloudshell-rs-credentials",
        &shared.id,
    ];
    let options = shared
        .options
        .exec
        .clone()
        .stdin(content.expose().as_bytes().to_vec());
    let out = exec::run(&shared.client, &shared.environment_id, &argv, options)
        .await
        .map_err(InjectError::Exec)?;
    if !out.status.success() {
        return Err(InjectError::Remote(remote_message(&out.stderr)));
    }
    let path = String::from_utf8(out.stdout)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
        .filter(|p| p.starts_with('/') && !p.contains('\n') && p.chars().all(|c| !c.is_control()))
        .ok_or_else(|| InjectError::Remote("the helper returned no usable path".into()))?;
    tracing::debug!(path = %path, "credentials file written");
    Ok((path, env.expiry()))
}

async fn refresh_loop(shared: Arc<Shared>, lock: Arc<Mutex<()>>, mut expiry: SystemTime) {
    loop {
        let wait = expiry
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(REFRESH_BEFORE_EXPIRY)
            .max(MIN_REFRESH_INTERVAL);
        tokio::time::sleep(wait).await;
        let _g = lock.lock().await;
        match write(&shared).await {
            Ok((_, Some(e))) => expiry = e,
            Ok((_, None)) => return,
            Err(e) => {
                tracing::warn!(error = %crate::credentials::ErrorChain(&e), "refreshing the injected credentials failed; retrying");
                expiry = SystemTime::now() + REFRESH_BEFORE_EXPIRY + RETRY_DELAY;
            }
        }
    }
}

/// The helper's stderr, shortened and stripped of control characters.
fn remote_message(stderr: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(stderr)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(300)
        .collect();
    if s.is_empty() { "no message".into() } else { s }
}

/// Displays an error and its sources on one line.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut s = self.0.source();
        while let Some(e) = s {
            write!(f, ": {e}")?;
            s = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn env_file_quotes_and_debug_redacts() {
        let c = Credentials::new("AKIDX", "se'cr$et", Some("tok\"en".into()), None, "t");
        let env = AwsEnv::new(&c, "eu-west-1");
        let f = env.env_file("g1");
        assert!(
            f.expose()
                .contains("export AWS_SECRET_ACCESS_KEY='se'\\''cr$et'\n")
        );
        assert!(f.expose().contains("export AWS_SESSION_TOKEN='tok\"en'\n"));
        assert!(f.expose().starts_with("# cloudshell-rs credentials g1\n"));
        let dbg = format!("{env:?} {f:?}");
        assert!(
            !dbg.contains("se'cr") && !dbg.contains("tok\"en") && !dbg.contains("AKIDX"),
            "{dbg}"
        );
    }

    #[test]
    fn scripts_hold_no_value_placeholders() {
        // The scripts are fixed text: values only ever arrive on stdin.
        assert!(!WRITE_SCRIPT.contains("AWS_SECRET"));
        assert!(!REMOVE_SCRIPT.contains("AWS_SECRET"));
    }
}
