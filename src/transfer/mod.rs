//! Copying files and directory trees between this machine and a CloudShell
//! environment, like `scp`, only safer.
//!
//! - **Verified**: the SHA-256 of the bytes is computed at both ends while they
//!   stream (`sha256sum` in the environment) and compared; on a mismatch the
//!   copy fails and nothing is left in place.
//! - **Atomic**: the destination is written under a temporary name in the same
//!   directory (`.NAME.cloudshell-rs.tmp.XXXXXX` locally,
//!   `NAME.cloudshell-rs.tmp.NONCE` in the environment, removed by a shell
//!   trap on failure) and renamed only after the hashes matched, so an
//!   interrupted copy never leaves a truncated file at the destination.
//! - **Constant memory** whatever the size: data streams through bounded
//!   buffers (1 MiB chunks in-band, 256 KiB locally).
//! - **Modes** (the `rwx` bits) are always kept; setuid, setgid and sticky bits
//!   are dropped. Access and modification times are kept with
//!   [`TransferOptions::preserve_times`].
//! - **Trees** (with [`TransferOptions::recursive`]) travel as a tar stream.
//!   Symbolic links inside a tree are copied as links (never followed);
//!   sockets, FIFOs and devices are skipped. A source given on the command
//!   line that is a link is followed. A tree is never merged into an existing
//!   directory: its destination must not exist.
//!
//! Two transports, and a choice between them ([`Transport`]):
//!
//! - [`Transport::InBand`] (default): through the data channel, as commands run
//!   with [`crate::exec`]. Works in VPC environments without internet access.
//!   Upload data is framed in 1 MiB chunks (`<len>\n<bytes>`) and carried as
//!   base64 by exec's stdin forwarding; downloads come back base64 in exec's
//!   output frames. Either way the terminal carries about 4/3 of the file size,
//!   plus the data channel's framing (see `docs/cp.md` for measured figures).
//! - [`Transport::S3`]: as the AWS Console does, through the presigned S3 URLs
//!   of GetFileUploadUrls / GetFileDownloadUrls. The file travels over HTTPS
//!   (multipart POST, then a GET with the SSE-C key headers); a helper command
//!   in the environment runs `curl`, reading the URLs, form fields and the SSE-C
//!   key from its stdin (a curl config), never from its command line.
//! - [`Transport::Auto`] (the CLI's default): S3 for a file or tree of
//!   [`AUTO_S3_MIN_BYTES`] or more to or from the public environment,
//!   in-band for the rest and again in-band when the S3 route fails. Whether
//!   the environment is the public one (no VPC configuration), the client's
//!   earlier DescribeEnvironments answers (as in [`Client::find_default`] or
//!   [`Client::resolve_environment`]); one is sent only when none was.
//!
//! Remote paths are relative to the home directory; `~` and `~/…` are
//! expanded there. Remote patterns (`logs/*.txt`) are expanded by [`glob`].
//!
//! A file that changes while it is copied is not kept at the destination
//! (a file that only grew, as a log being written to, is copied as it was
//! when the copy began).
//!
//! [`upload`] and [`download`] open their session as soon as the environment
//! is known to be running, while they ask for the S3 URLs, send the file to
//! S3 or check whether the environment is the public one: the session's
//! set-up is off the copy's critical path. A session no command used is
//! deleted before they return.
//!
//! ```no_run
//! # async fn demo(client: cloudshell_rs::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use cloudshell_rs::transfer::{self, TransferOptions};
//! let env = transfer::resolve_environment(&client, None).await?;
//! let report = transfer::upload(
//!     &client, &env, "notes.txt".as_ref(), "~/notes.txt", &TransferOptions::new(),
//! ).await?;
//! println!("{} bytes, sha256 {}", report.bytes, report.sha256);
//! # Ok(()) }
//! ```

mod error;
mod inband;
mod local;
mod runner;
mod s3;
mod scripts;
mod spec;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use error::{Side, TransferError};
use runner::Primed;
pub use runner::{ExecRunner, RemoteRunner, RunFuture, RunOutcome};
pub use spec::{Location, parse_location};

use crate::Client;
use crate::exec::Interrupt;

/// How long to wait for the environment to be RUNNING.
const ENVIRONMENT_WAIT: Duration = Duration::from_secs(300);

/// How the bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Through the data channel (works without internet access in the environment).
    #[default]
    InBand,
    /// Through S3 presigned URLs, as the AWS Console does.
    S3,
    /// A file or tree of [`AUTO_S3_MIN_BYTES`] or more goes through S3 to or
    /// from the public (non-VPC) environment, everything else in-band:
    /// smaller ones, several files copied together while all are small, and
    /// VPC environments (they may have no route to S3). If the S3 route
    /// fails (GetFile*Urls refused, S3 refusing a request, the environment
    /// unable to reach S3), the file is copied in-band and
    /// [`TransferReport::s3_fallback`] says why. CloudShell runs its shells
    /// in tmux, which takes typed-in data at well under 1 MB/s and passes
    /// output on at a few MB/s: through S3 a large file travels many times
    /// faster. A download asks the environment for the file once: it sends
    /// it to S3 or, when small (or when it cannot reach S3), in-band in the
    /// same run.
    Auto,
}

/// The size (of a file, or of the files in a tree) from which
/// [`Transport::Auto`] copies through S3.
pub const AUTO_S3_MIN_BYTES: u64 = 1 << 20;

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::InBand => "in-band",
            Transport::S3 => "s3",
            Transport::Auto => "auto",
        })
    }
}

/// Progress of one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done so far (file bytes, or tar stream bytes for a tree).
    pub bytes: u64,
    /// Expected total, when known (single files).
    pub total: Option<u64>,
}

/// Receives [`Progress`] updates (often: rate-limit the display).
pub type ProgressCallback = Arc<dyn Fn(Progress) + Send + Sync>;

/// Options of one transfer.
#[derive(Clone, Default)]
pub struct TransferOptions {
    recursive: bool,
    preserve_times: bool,
    into_directory: bool,
    transport: Transport,
    progress: Option<ProgressCallback>,
    interrupt: Option<Interrupt>,
    session_options: Option<crate::session::SessionOptions>,
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("recursive", &self.recursive)
            .field("preserve_times", &self.preserve_times)
            .field("into_directory", &self.into_directory)
            .field("transport", &self.transport)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

impl TransferOptions {
    /// Defaults: files only, in-band, times not kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copy directories (as trees).
    pub fn recursive(mut self, yes: bool) -> Self {
        self.recursive = yes;
        self
    }

    /// Keep access and modification times.
    pub fn preserve_times(mut self, yes: bool) -> Self {
        self.preserve_times = yes;
        self
    }

    /// The destination must be an existing directory; the source keeps its
    /// name inside it (as with several sources).
    pub fn into_directory(mut self, yes: bool) -> Self {
        self.into_directory = yes;
        self
    }

    /// The transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Progress updates.
    pub fn progress(mut self, callback: ProgressCallback) -> Self {
        self.progress = Some(callback);
        self
    }

    /// A handle to interrupt the transfer: the remote command gets Ctrl-C, its
    /// trap removes the temporary file, and the transfer fails with
    /// [`TransferError::Interrupted`] (or [`TransferError::Exec`] if interrupted twice).
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// Data-channel options of the sessions [`upload`] and [`download`] open
    /// (default: AWS gateways only for an AWS endpoint, any host for another
    /// endpoint such as the emulator; no KMS data-key provider).
    pub fn session_options(mut self, options: crate::session::SessionOptions) -> Self {
        self.session_options = Some(options);
        self
    }
}

/// What a finished transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferReport {
    /// Where the copy was written (a local path or a remote path as given).
    pub destination: String,
    /// Bytes moved: the file size, or the size of the tar stream for a tree.
    pub bytes: u64,
    /// Entries copied (1 for a file).
    pub files: u64,
    /// Whether a directory tree was copied.
    pub tree: bool,
    /// SHA-256 (hex) of those bytes, equal at both ends.
    pub sha256: String,
    /// The transport used.
    pub transport: Transport,
    /// Bytes typed into the remote terminal (data-channel input payload).
    /// For files copied together by [`upload_files`] or [`download_files`],
    /// the whole run's.
    pub channel_bytes_sent: u64,
    /// Bytes printed by the remote terminal (data-channel output payload).
    /// For files copied together by [`upload_files`] or [`download_files`],
    /// the whole run's.
    pub channel_bytes_received: u64,
    /// Bytes of file data sent to or received from S3 (S3 transport).
    pub http_bytes: u64,
    /// The data-channel sessions used, in order.
    pub session_ids: Vec<String>,
    /// With [`Transport::Auto`], when S3 was tried and failed: what failed.
    /// The copy then went in-band ([`TransferReport::transport`]).
    pub s3_fallback: Option<String>,
}

/// Progress reporting with a total that may become known on the way.
#[derive(Clone)]
pub(crate) struct Reporter {
    callback: Option<ProgressCallback>,
    total: Arc<AtomicU64>,
}

impl Reporter {
    fn new(callback: Option<ProgressCallback>, total: Option<u64>) -> Self {
        Self {
            callback,
            total: Arc::new(AtomicU64::new(total.unwrap_or(u64::MAX))),
        }
    }

    pub(crate) fn set_total(&self, total: Option<u64>) {
        self.total
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.report(0);
    }

    pub(crate) fn report(&self, bytes: u64) {
        if let Some(cb) = &self.callback {
            let t = self.total.load(Ordering::Relaxed);
            cb(Progress {
                bytes,
                total: (t != u64::MAX).then_some(t),
            });
        }
    }

    pub(crate) fn as_fn(&self) -> Option<local::ProgressFn> {
        self.callback.as_ref()?;
        let me = self.clone();
        Some(Arc::new(move |b| me.report(b)))
    }
}

/// The environment named by `environment` (an id or an environment name), or
/// the default environment for `None` ([`Client::find_default`]: one being
/// deleted does not count). Nothing is created: a caller without an
/// environment gets [`TransferError::UnknownEnvironment`].
pub async fn resolve_environment(
    client: &Client,
    environment: Option<&str>,
) -> Result<String, TransferError> {
    match environment {
        None => client
            .find_default()
            .await
            .map_err(TransferError::Api)?
            .ok_or_else(|| TransferError::UnknownEnvironment("(default)".to_string())),
        Some(want) => client.resolve_environment(want).await.map_err(|e| match e {
            crate::Error::UnknownEnvironment { given, .. } => {
                TransferError::UnknownEnvironment(given)
            }
            e => TransferError::Api(e),
        }),
    }
}

async fn runner_for(
    client: &Client,
    environment_id: &str,
    options: &TransferOptions,
) -> Result<ExecRunner, TransferError> {
    let session_options = options
        .session_options
        .clone()
        .unwrap_or_else(|| crate::session::SessionOptions::for_client(client));
    crate::session::preconnect(&session_options);
    client
        .wait_until_running(environment_id, ENVIRONMENT_WAIT, |_| {})
        .await
        .map_err(|e| {
            if e.is_not_found() {
                TransferError::UnknownEnvironment(environment_id.to_string())
            } else {
                TransferError::Api(e)
            }
        })?;
    let mut runner = ExecRunner::new(client, environment_id).session_options(session_options);
    if let Some(i) = &options.interrupt {
        runner = runner.interrupt(i.clone());
    }
    Ok(runner)
}

/// [`runner_for`], with the session of its first command opening at once:
/// while the copy asks for S3 URLs, sends the file to S3 or learns whether
/// the environment is the public one.
async fn primed_runner_for(
    client: &Client,
    environment_id: &str,
    options: &TransferOptions,
) -> Result<Primed, TransferError> {
    runner_for(client, environment_id, options)
        .await
        .map(Primed::new)
}

/// Copies the local file (or, with `recursive`, directory) `local` to `remote`
/// in the environment. When `remote` is an existing directory the source keeps
/// its name inside it.
pub async fn upload(
    client: &Client,
    environment_id: &str,
    local: &Path,
    remote: &str,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let src = local::inspect_source(local, options.recursive)?;
    let large = options.transport == Transport::Auto
        && if src.dir {
            let path = src.path.clone();
            tokio::task::spawn_blocking(move || local::tree_size(&path, AUTO_S3_MIN_BYTES))
                .await
                .unwrap_or(0)
                >= AUTO_S3_MIN_BYTES
        } else {
            src.size >= AUTO_S3_MIN_BYTES
        };
    let (runner, public) = tokio::join!(
        primed_runner_for(client, environment_id, options),
        is_public_if(large, client, environment_id),
    );
    let runner = runner?;
    let copied = match options.transport {
        Transport::InBand => inband::upload(&runner, &src, remote, options).await,
        Transport::S3 => s3::upload(&runner, &src, remote, options).await,
        Transport::Auto if !public => inband::upload(&runner, &src, remote, options).await,
        Transport::Auto => match s3::upload(&runner, &src, remote, options).await {
            Err(e) if e.is_s3_route() => {
                in_band_after(e, inband::upload(&runner, &src, remote, options)).await
            }
            other => other,
        },
    };
    runner.finish().await;
    copied
}

/// With `ask`, whether the environment is the public one (no VPC
/// configuration: it has internet access, so it reaches S3); unknown counts
/// as no. A listing the client made before (to find the environment)
/// answers it; else DescribeEnvironments. Without `ask`, false and no
/// request.
async fn is_public_if(ask: bool, client: &Client, environment_id: &str) -> bool {
    if !ask {
        return false;
    }
    match client.is_public_environment(environment_id).await {
        Ok(public) => public,
        Err(e) => {
            tracing::debug!(error = %e, "DescribeEnvironments failed; copying in-band");
            false
        }
    }
}

/// [`Transport::Auto`] after the S3 route failed with `e`: the copy made
/// in-band instead, its report saying why.
pub(crate) async fn in_band_after(
    e: TransferError,
    copy: impl std::future::Future<Output = Result<TransferReport, TransferError>>,
) -> Result<TransferReport, TransferError> {
    let why = crate::error_chain(&e);
    tracing::info!(error = %why, "S3 not usable, copying in-band");
    let mut report = copy.await?;
    report.s3_fallback = Some(why);
    Ok(report)
}

/// Whether all these local files are under [`AUTO_S3_MIN_BYTES`] (one that
/// cannot be read counts as small: the copy reports it).
fn all_small(locals: &[impl AsRef<Path>]) -> bool {
    locals.iter().all(|l| {
        std::fs::metadata(l.as_ref()).map_or(true, |m| m.is_dir() || m.len() < AUTO_S3_MIN_BYTES)
    })
}

/// Copies several local sources into the directory `remote` of the
/// environment, as `cp a b c ENV:dir/` does. One result per source attempted,
/// in order; the first failure ends the copy (the sources before it are in
/// place, the ones after it are not attempted).
///
/// With the in-band transport and without `recursive`, the files travel one
/// after the other through a single session and a single remote command,
/// instead of a session each: against AWS that saves several round trips
/// per file. Each file is still verified and renamed into place on its own.
/// Otherwise each source is copied by [`upload`] in turn. For files copied
/// together, the `channel_bytes_*` and `session_ids` of each report are
/// those of the whole run. A source with the same name as an earlier one
/// would replace it: the copy stops there with [`TransferError::SameName`].
pub async fn upload_files(
    client: &Client,
    environment_id: &str,
    locals: &[impl AsRef<Path>],
    remote: &str,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let options = options.clone().into_directory(true);
    let (locals, clash) = before_name_clash(locals, remote);
    let batch = match options.transport {
        Transport::InBand => true,
        Transport::Auto => all_small(locals),
        _ => false,
    };
    let results = if options.recursive || !batch {
        one_by_one(locals.len(), |i| {
            upload(client, environment_id, locals[i].as_ref(), remote, &options)
        })
        .await
    } else {
        let runner = async || runner_for(client, environment_id, &options).await;
        upload_batch(runner, locals, remote, &options).await
    };
    with_stop_error(results, clash)
}

/// The in-band batch upload of the files `locals` into `remote` in one run,
/// up to the first source that cannot be copied as a file; the runner is
/// made (the environment checked) only when there is a file to send.
async fn upload_batch<R: RemoteRunner>(
    runner: impl AsyncFnOnce() -> Result<R, TransferError>,
    locals: &[impl AsRef<Path>],
    remote: &str,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let (srcs, bad) = inspect_files(locals);
    let results = if srcs.is_empty() {
        Vec::new()
    } else {
        match runner().await {
            Ok(runner) => inband::upload_files(&runner, &srcs, remote, options).await,
            Err(e) => return vec![Err(e)],
        }
    };
    with_stop_error(results, bad)
}

/// The local sources up to the first one with the same name as an earlier
/// one (both would land on the same path in the remote directory `remote`),
/// and that one's error.
fn before_name_clash<'a, P: AsRef<Path>>(
    locals: &'a [P],
    remote: &str,
) -> (&'a [P], Option<TransferError>) {
    let names: Vec<_> = locals
        .iter()
        .map(|l| local::source_name(l.as_ref()))
        .collect();
    let Some((first, second)) = first_repeat(names.iter().map(Option::as_ref)) else {
        return (locals, None);
    };
    let name = names[second].as_deref().unwrap_or_default();
    let error = TransferError::SameName {
        side: Side::Remote,
        path: format!(
            "{}/{}",
            remote.trim_end_matches('/'),
            name.to_string_lossy()
        )
        .into(),
        first: locals[first].as_ref().display().to_string(),
        second: locals[second].as_ref().display().to_string(),
    };
    (&locals[..second], Some(error))
}

/// The remote sources up to the first one with the same name as an earlier
/// one (both would land on the same path in the local directory `local`),
/// and that one's error.
fn before_remote_name_clash<'a, S: AsRef<str>>(
    remotes: &'a [S],
    local: &Path,
) -> (&'a [S], Option<TransferError>) {
    let Some((first, second)) = first_repeat(remotes.iter().map(|r| remote_name(r.as_ref())))
    else {
        return (remotes, None);
    };
    let error = TransferError::SameName {
        side: Side::Local,
        path: local.join(remote_name(remotes[second].as_ref()).unwrap_or_default()),
        first: remotes[first].as_ref().to_owned(),
        second: remotes[second].as_ref().to_owned(),
    };
    (&remotes[..second], Some(error))
}

/// The index of the first item equal to an earlier one, with the earlier
/// one's index (`None` items match nothing).
fn first_repeat<T: Eq + std::hash::Hash>(
    items: impl Iterator<Item = Option<T>>,
) -> Option<(usize, usize)> {
    let mut seen = std::collections::HashMap::new();
    for (i, item) in items.enumerate() {
        let Some(item) = item else { continue };
        match seen.entry(item) {
            std::collections::hash_map::Entry::Occupied(e) => return Some((*e.get(), i)),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
    }
    None
}

/// Runs `copy(0)`, `copy(1)`, ... `copy(n - 1)` in turn, up to the first
/// failure: one result per copy attempted.
async fn one_by_one<F, Fut>(n: usize, mut copy: F) -> Vec<Result<TransferReport, TransferError>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<TransferReport, TransferError>>,
{
    let mut results = Vec::with_capacity(n);
    for i in 0..n {
        let r = copy(i).await;
        let failed = r.is_err();
        results.push(r);
        if failed {
            break;
        }
    }
    results
}

/// [`upload_files`] in-band through any [`RemoteRunner`] (files only, one run).
pub async fn upload_files_with(
    runner: &dyn RemoteRunner,
    locals: &[impl AsRef<Path>],
    remote: &str,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let options = options.clone().into_directory(true);
    let (locals, clash) = before_name_clash(locals, remote);
    let results = upload_batch(async || Ok(runner), locals, remote, &options).await;
    with_stop_error(results, clash)
}

/// The sources up to the first one that cannot be copied as a file, and
/// that one's error.
fn inspect_files(locals: &[impl AsRef<Path>]) -> (Vec<local::SourceInfo>, Option<TransferError>) {
    let mut srcs = Vec::with_capacity(locals.len());
    for l in locals {
        match local::inspect_source(l.as_ref(), false) {
            Ok(s) => srcs.push(s),
            Err(e) => return (srcs, Some(e)),
        }
    }
    (srcs, None)
}

/// The batch's results, then `bad`, the error of the source the batch
/// stopped before, unless the batch failed before reaching it.
fn with_stop_error(
    mut results: Vec<Result<TransferReport, TransferError>>,
    bad: Option<TransferError>,
) -> Vec<Result<TransferReport, TransferError>> {
    if let Some(e) = bad
        && results.iter().all(Result::is_ok)
    {
        results.push(Err(e));
    }
    results
}

/// Copies `remote` (a file or, with `recursive`, a directory) from the
/// environment to `local`. When `local` is an existing directory the source
/// keeps its name inside it.
pub async fn download(
    client: &Client,
    environment_id: &str,
    remote: &str,
    local: &Path,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let dest = destination(remote, local, options);
    dest.precheck()?;
    let (runner, public) = tokio::join!(
        primed_runner_for(client, environment_id, options),
        is_public_if(options.transport == Transport::Auto, client, environment_id),
    );
    let runner = runner?;
    let copied = match options.transport {
        Transport::S3 => s3::download(&runner, remote, &dest, options).await,
        Transport::Auto if public => s3::download_auto(&runner, remote, &dest, options).await,
        _ => inband::download(&runner, remote, &dest, options).await,
    };
    runner.finish().await;
    copied
}

/// Copies several remote sources into the local directory `local`, as
/// `cp ENV:a ENV:b dir/` does. One result per source attempted, in order;
/// the first failure ends the copy (the sources before it are in place, the
/// ones after it are not attempted).
///
/// With the in-band transport (or [`Transport::Auto`]: the sizes are not
/// known beforehand) and without `recursive`, the files come one
/// after the other through a single session and a single remote command,
/// instead of a session each; each file is verified and renamed into place
/// as soon as it has arrived. Otherwise each source is copied by
/// [`download`] in turn. For files copied together, the `channel_bytes_*`
/// and `session_ids` of each report are those of the whole run. A source
/// with the same name as an earlier one would replace it: the copy stops
/// there with [`TransferError::SameName`].
pub async fn download_files(
    client: &Client,
    environment_id: &str,
    remotes: &[impl AsRef<str>],
    local: &Path,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let options = options.clone().into_directory(true);
    let (remotes, clash) = before_remote_name_clash(remotes, local);
    let results = if options.recursive || options.transport == Transport::S3 {
        one_by_one(remotes.len(), |i| {
            download(client, environment_id, remotes[i].as_ref(), local, &options)
        })
        .await
    } else {
        let runner = async || runner_for(client, environment_id, &options).await;
        download_batch(runner, remotes, local, &options).await
    };
    with_stop_error(results, clash)
}

/// The in-band batch download of the files `remotes` into the directory
/// `local` in one run; the runner is made (the environment checked) only
/// once the local directory passed its checks.
async fn download_batch<R: RemoteRunner>(
    runner: impl AsyncFnOnce() -> Result<R, TransferError>,
    remotes: &[impl AsRef<str>],
    local: &Path,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let dests = match destinations(remotes, local, options) {
        Ok(d) => d,
        Err(e) => return vec![Err(e)],
    };
    match runner().await {
        Ok(runner) => {
            let remotes: Vec<&str> = remotes.iter().map(AsRef::as_ref).collect();
            inband::download_files(&runner, &remotes, &dests, options).await
        }
        Err(e) => vec![Err(e)],
    }
}

/// [`download_files`] in-band through any [`RemoteRunner`] (files only, one run).
pub async fn download_files_with(
    runner: &dyn RemoteRunner,
    remotes: &[impl AsRef<str>],
    local: &Path,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let options = options.clone().into_directory(true);
    let (remotes, clash) = before_remote_name_clash(remotes, local);
    let results = download_batch(async || Ok(runner), remotes, local, &options).await;
    with_stop_error(results, clash)
}

/// Where each of several remote sources goes in the directory `local`
/// (which must exist).
fn destinations(
    remotes: &[impl AsRef<str>],
    local: &Path,
    options: &TransferOptions,
) -> Result<Vec<local::LocalDestination>, TransferError> {
    let dests: Vec<_> = remotes
        .iter()
        .map(|r| destination(r.as_ref(), local, options))
        .collect();
    if let Some(d) = dests.first() {
        d.precheck()?;
    }
    Ok(dests)
}

/// Whether the remote path `remote` is a pattern for [`glob`]: it holds `*`,
/// `?` or `[`. (A backslash before one of them makes it literal, as in the
/// shell.)
pub fn is_pattern(remote: &str) -> bool {
    remote.contains(['*', '?', '['])
}

/// The remote paths that each of `patterns` names, as the environment's
/// shell expands them after `~` (as `scp ENV:'logs/*.txt' .` lets the remote
/// side expand its pattern): one list per pattern, in order, of the existing
/// paths it matches in the shell's order (C locale; `*` does not match a
/// leading dot), with `~/` kept in front when the pattern started with it.
/// A pattern that matches nothing fails with [`TransferError::NotFound`]; a
/// path without pattern characters names itself if it exists. One remote
/// command for all the patterns.
pub async fn glob(
    client: &Client,
    environment_id: &str,
    patterns: &[impl AsRef<str>],
    options: &TransferOptions,
) -> Result<Vec<Vec<String>>, TransferError> {
    let runner = runner_for(client, environment_id, options).await?;
    glob_with(&runner, patterns).await
}

/// [`glob`] through any [`RemoteRunner`].
pub async fn glob_with(
    runner: &dyn RemoteRunner,
    patterns: &[impl AsRef<str>],
) -> Result<Vec<Vec<String>>, TransferError> {
    let patterns: Vec<&str> = patterns.iter().map(AsRef::as_ref).collect();
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    inband::glob(runner, &patterns).await
}

/// [`upload`] in-band through any [`RemoteRunner`].
pub async fn upload_with(
    runner: &dyn RemoteRunner,
    local: &Path,
    remote: &str,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let src = local::inspect_source(local, options.recursive)?;
    inband::upload(runner, &src, remote, options).await
}

/// [`download`] in-band through any [`RemoteRunner`].
pub async fn download_with(
    runner: &dyn RemoteRunner,
    remote: &str,
    local: &Path,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let dest = destination(remote, local, options);
    dest.precheck()?;
    inband::download(runner, remote, &dest, options).await
}

/// The name a remote source keeps in a local directory: its last path
/// component (`None` for `.`, `..`, `~` or nothing).
fn remote_name(remote: &str) -> Option<&str> {
    remote
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != ".." && *n != "~")
}

fn destination(remote: &str, local: &Path, options: &TransferOptions) -> local::LocalDestination {
    let name = remote_name(remote).map(std::ffi::OsString::from);
    local::LocalDestination {
        dest: local.to_path_buf(),
        name,
        into_directory: options.into_directory,
        preserve_times: options.preserve_times,
    }
}

/// 128 random bits as hex: names the remote temporary file.
fn nonce() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex::encode(b)
}
