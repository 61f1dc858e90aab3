//! The in-band transport (data channel), and what both transports share:
//! running a script, mapping its report to errors, cleaning up.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

use super::error::{Side, TransferError};
use super::local::{self, Framer, HashWriter, LocalDestination, SourceInfo};
use super::runner::{RemoteRunner, RunOutcome};
use super::scripts::{self, BatchFile, DownloadSink, Report, UploadArgs, UploadSource};
use super::{Reporter, TransferOptions, TransferReport, Transport};
use crate::exec::ExecError;

/// Most stderr (or unexpected stdout) kept from a script.
const COLLECT_LIMIT: usize = 64 * 1024;

/// An AsyncWrite that keeps the first [`COLLECT_LIMIT`] bytes.
#[derive(Debug, Default)]
pub(crate) struct Collector(pub Vec<u8>);

impl AsyncWrite for Collector {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let room = COLLECT_LIMIT.saturating_sub(self.0.len());
        let n = room.min(buf.len());
        self.0.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// An OS pipe: a blocking std end and a tokio end.
pub(crate) fn pipe_to_async_reader() -> Result<(std::io::PipeWriter, pipe::Receiver), TransferError>
{
    let (r, w) = std::io::pipe().map_err(|e| TransferError::local("creating a pipe", ".", e))?;
    let r = pipe::Receiver::from_owned_fd(OwnedFd::from(r))
        .map_err(|e| TransferError::local("creating a pipe", ".", e))?;
    Ok((w, r))
}

/// An OS pipe: a tokio write end and a blocking std read end.
pub(crate) fn pipe_from_async_writer() -> Result<(pipe::Sender, std::io::PipeReader), TransferError>
{
    let (r, w) = std::io::pipe().map_err(|e| TransferError::local("creating a pipe", ".", e))?;
    let w = pipe::Sender::from_owned_fd(OwnedFd::from(w))
        .map_err(|e| TransferError::local("creating a pipe", ".", e))?;
    Ok((w, r))
}

/// Runs a script; returns the outcome (or the exec error) and its parsed stderr.
pub(crate) async fn run_script(
    runner: &dyn RemoteRunner,
    argv: &[Vec<u8>],
    stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>,
    stdout: &mut (dyn AsyncWrite + Send + Unpin),
) -> (Result<RunOutcome, ExecError>, Report) {
    let mut stderr = Collector::default();
    let outcome = {
        let stdin: Option<&mut (dyn AsyncRead + Send + Unpin)> = match stdin {
            Some(s) => Some(&mut *s),
            None => None,
        };
        let stdout: &mut (dyn AsyncWrite + Send + Unpin) = &mut *stdout;
        runner.run(argv, stdin, stdout, &mut stderr).await
    };
    (outcome, scripts::parse_report(&stderr.0))
}

/// [`run_script`] for a script that reads from the environment, when only
/// its success is of use: a failed run is the script's classified failure.
pub(crate) async fn run_to_success(
    runner: &dyn RemoteRunner,
    argv: &[Vec<u8>],
    stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>,
    stdout: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<(RunOutcome, Report), TransferError> {
    let (outcome, report) = run_script(runner, argv, stdin, stdout).await;
    let outcome = outcome.map_err(|e| match e {
        ExecError::Interrupted => TransferError::Interrupted,
        e => TransferError::Exec(e),
    })?;
    if !outcome.status.success() {
        return Err(remote_error(
            &report,
            outcome.status.code(),
            "",
            Direction::Download,
        ));
    }
    Ok((outcome, report))
}

/// Whether this direction writes into the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Upload,
    Download,
}

/// Maps a script's classified failure (or an unexplained exit) to an error.
pub(crate) fn remote_error(
    report: &Report,
    status: i32,
    sent_sha256: &str,
    dir: Direction,
) -> TransferError {
    let other = report.other.join("; ");
    let Some(f) = &report.failure else {
        if status == 130 || status == 129 || status == 143 {
            return TransferError::Interrupted;
        }
        let msg = if other.is_empty() {
            format!("the transfer command exited with status {status}")
        } else {
            format!("the transfer command exited with status {status}: {other}")
        };
        return TransferError::Remote(msg);
    };
    let side = Side::Remote;
    let path = PathBuf::from(&f.detail);
    match f.kind.as_str() {
        "notfound" => TransferError::NotFound { side, path },
        "isdir" if dir == Direction::Download => TransferError::SourceIsDirectory { side, path },
        "isdir" => TransferError::DestinationIsDirectory { side, path },
        "notdir" => TransferError::NotADirectory { side, path },
        "exists" => TransferError::DestinationExists { side, path },
        "perm" => TransferError::PermissionDenied { side, path },
        "nospace" => TransferError::NoSpace { side, path },
        "notregular" => TransferError::NotRegular { side, path },
        "mismatch" => TransferError::ChecksumMismatch {
            sent: sent_sha256.to_string(),
            received: f.detail.clone(),
        },
        "short" => TransferError::Incomplete,
        "changed" => TransferError::Remote(format!(
            "{}: changed while it was being copied; nothing was written",
            f.detail
        )),
        "tool" => TransferError::RemoteToolMissing(f.detail.clone()),
        "s3" => TransferError::EnvironmentS3(if other.is_empty() {
            f.detail.clone()
        } else {
            other
        }),
        _ if other.is_empty() => TransferError::Remote(f.detail.clone()),
        _ => TransferError::Remote(format!("{}: {other}", f.detail)),
    }
}

fn is_broken_pipe(e: &TransferError) -> bool {
    matches!(e, TransferError::Local { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Best effort: remove the temporary file of a failed upload (the script's
/// trap does it when the script itself fails; this covers a lost connection).
pub(crate) async fn cleanup(runner: &dyn RemoteRunner, remote: &str, name: &[u8], nonce: &str) {
    let argv = scripts::cleanup_argv(remote, name, nonce);
    let mut out = Collector::default();
    let cleaned = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        run_script(runner, &argv, None, &mut out),
    )
    .await;
    if !matches!(cleaned, Ok((Ok(ref o), _)) if o.status.success()) {
        tracing::warn!("could not remove the temporary file of the interrupted upload");
    }
}

/// Checks the SHA-256 the environment confirmed for a file against what was
/// sent.
pub(crate) fn check_confirmed(
    confirmed: Option<&(String, Option<u64>)>,
    sent: &str,
) -> Result<(), TransferError> {
    match confirmed {
        Some((remote, _)) if remote == sent => Ok(()),
        Some((remote, _)) => Err(TransferError::ChecksumMismatch {
            sent: sent.to_string(),
            received: remote.clone(),
        }),
        None => Err(TransferError::Protocol(
            "the environment did not confirm the copy".to_string(),
        )),
    }
}

/// Why an upload run did not confirm its file (the file `name` with
/// temporary-name `nonce` in `remote`): the run itself failed (the temporary
/// file is then removed here, best effort), or the script did (its trap
/// removed it), or it ended without a word. `local` is the error that stopped
/// the sending of that file, `sent` the SHA-256 of what was sent of it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upload_failure(
    runner: &dyn RemoteRunner,
    outcome: Result<RunOutcome, ExecError>,
    report: &Report,
    local: Option<TransferError>,
    sent: &str,
    remote: &str,
    name: &[u8],
    nonce: &str,
) -> TransferError {
    match outcome {
        Ok(o) if o.status.success() && local.is_none() => {
            TransferError::Protocol("the environment did not confirm the copy".to_string())
        }
        Ok(o) if report.failure.is_none() && matches!(o.status.code(), 129 | 130 | 143) => {
            TransferError::Interrupted
        }
        Ok(o) => match local {
            // The local side stopped sending on its own (a read error, a file
            // that changed): what the remote side then saw, an input ended
            // early or an archive cut short, is its consequence. A broken
            // pipe only means the remote side stopped reading first.
            Some(local) if !is_broken_pipe(&local) => local,
            _ => remote_error(report, o.status.code(), sent, Direction::Upload),
        },
        Err(e) => {
            cleanup(runner, remote, name, nonce).await;
            match e {
                ExecError::Interrupted => TransferError::Interrupted,
                // The connection failed first; the local side then saw a closed pipe.
                e => TransferError::Exec(e),
            }
        }
    }
}

/// Produces the upload stream on a blocking thread: hashes the payload, frames
/// it, writes the trailer. Returns (sha256, payload bytes, files).
fn produce(
    src: &SourceInfo,
    out: std::io::PipeWriter,
    progress: Option<local::ProgressFn>,
) -> Result<(String, u64, u64), TransferError> {
    let mut w = HashWriter::new(Framer::new(out), progress);
    let files = if src.dir {
        let (w2, files, _skipped) = local::send_tree(src, w)?;
        w = w2;
        files
    } else {
        local::send_file(src, &mut w)?;
        1
    };
    let broken = |e| TransferError::local("sending", &src.path, e);
    w.flush().map_err(broken)?;
    let (framer, sha256, bytes) = w.finish();
    framer.finish(&sha256).map_err(broken)?;
    Ok((sha256, bytes, files))
}

pub(crate) async fn upload(
    runner: &dyn RemoteRunner,
    src: &SourceInfo,
    remote: &str,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let nonce = super::nonce();
    let name = src.name.as_encoded_bytes().to_vec();
    let argv = scripts::upload_argv(&UploadArgs {
        tree: src.dir,
        destination: remote,
        name: &name,
        into_directory: options.into_directory,
        mode: src.mode,
        times: options.preserve_times.then_some((src.atime, src.mtime)),
        nonce: &nonce,
        source: UploadSource::Stdin,
        expected_sha256: "",
    });
    let reporter = Reporter::new(options.progress.clone(), (!src.dir).then_some(src.size));
    let (writer, mut reader) = pipe_to_async_reader()?;
    let src2 = src.clone();
    let progress = reporter.as_fn();
    let producer = tokio::task::spawn_blocking(move || produce(&src2, writer, progress));
    let mut stdout = Collector::default();
    let (outcome, report) = run_script(runner, &argv, Some(&mut reader), &mut stdout).await;
    drop(reader);
    let produced = producer
        .await
        .map_err(|e| TransferError::Protocol(format!("the sending thread failed: {e}")))?;
    let finish = |outcome: RunOutcome, sha256: String, bytes: u64, files: u64| TransferReport {
        destination: remote.to_string(),
        bytes,
        files,
        tree: src.dir,
        sha256,
        transport: Transport::InBand,
        channel_bytes_sent: outcome.channel_bytes_sent,
        channel_bytes_received: outcome.channel_bytes_received,
        http_bytes: 0,
        session_ids: outcome.session_id.into_iter().collect(),
        s3_fallback: None,
    };
    match (outcome, produced) {
        (Ok(outcome), Ok((sha256, bytes, files))) if outcome.status.success() => {
            check_confirmed(report.ok.as_ref(), &sha256)?;
            Ok(finish(outcome, sha256, bytes, files))
        }
        (outcome, produced) => {
            let (local, sent) = match produced {
                Ok((sha256, ..)) => (None, sha256),
                Err(e) => (Some(e), String::new()),
            };
            let e = upload_failure(
                runner, outcome, &report, local, &sent, remote, &name, &nonce,
            );
            Err(e.await)
        }
    }
}

/// Produces the stream of a batch upload: each file framed, with its
/// trailer, in turn. Returns the (sha256, bytes) of the files sent, and the
/// local error that stopped it, if any.
fn produce_files(
    srcs: &[SourceInfo],
    mut out: std::io::PipeWriter,
    progress: Option<local::ProgressFn>,
) -> (Vec<(String, u64)>, Option<TransferError>) {
    let mut sent = Vec::with_capacity(srcs.len());
    let mut before = 0u64;
    for src in srcs {
        let file_progress = progress
            .clone()
            .map(|p| -> local::ProgressFn { std::sync::Arc::new(move |b| p(before + b)) });
        let mut w = HashWriter::new(Framer::new(out), file_progress);
        if let Err(e) = local::send_file(src, &mut w) {
            return (sent, Some(e));
        }
        let broken = |e| TransferError::local("sending", &src.path, e);
        if let Err(e) = w.flush() {
            return (sent, Some(broken(e)));
        }
        let (framer, sha256, bytes) = w.finish();
        out = match framer.finish(&sha256) {
            Ok(o) => o,
            Err(e) => return (sent, Some(broken(e))),
        };
        before += bytes;
        sent.push((sha256, bytes));
    }
    (sent, None)
}

/// What the reports of the files of one batch run share: its session and
/// its data-channel byte counts (none when the run itself failed).
struct BatchRun {
    session_ids: Vec<String>,
    channel_bytes_sent: u64,
    channel_bytes_received: u64,
}

impl BatchRun {
    fn of(outcome: &Result<RunOutcome, ExecError>) -> Self {
        match outcome {
            Ok(o) => BatchRun {
                session_ids: o.session_id.iter().cloned().collect(),
                channel_bytes_sent: o.channel_bytes_sent,
                channel_bytes_received: o.channel_bytes_received,
            },
            Err(_) => BatchRun {
                session_ids: Vec::new(),
                channel_bytes_sent: 0,
                channel_bytes_received: 0,
            },
        }
    }

    /// The report of one file of the run.
    fn report(&self, destination: String, bytes: u64, sha256: String) -> TransferReport {
        TransferReport {
            destination,
            bytes,
            files: 1,
            tree: false,
            sha256,
            transport: Transport::InBand,
            channel_bytes_sent: self.channel_bytes_sent,
            channel_bytes_received: self.channel_bytes_received,
            http_bytes: 0,
            session_ids: self.session_ids.clone(),
            s3_fallback: None,
        }
    }
}

/// The result of a batch's local thread (the files it handled, and why it
/// stopped early, if it did), or the thread's own failure.
fn joined<T>(
    thread: Result<(Vec<T>, Option<TransferError>), tokio::task::JoinError>,
    what: &str,
) -> (Vec<T>, Option<TransferError>) {
    thread.unwrap_or_else(|e| {
        (
            Vec::new(),
            Some(TransferError::Protocol(format!(
                "the {what} thread failed: {e}"
            ))),
        )
    })
}

/// Uploads the regular files `srcs` into the directory `remote` in one run
/// (one session): one result per file attempted, in order. The first failure
/// ends the batch: the files before it are in place, the ones after it are
/// not attempted.
pub(crate) async fn upload_files(
    runner: &dyn RemoteRunner,
    srcs: &[SourceInfo],
    remote: &str,
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let nonces: Vec<String> = srcs.iter().map(|_| super::nonce()).collect();
    let names: Vec<Vec<u8>> = srcs
        .iter()
        .map(|s| s.name.as_encoded_bytes().to_vec())
        .collect();
    let files: Vec<BatchFile<'_>> = srcs
        .iter()
        .zip(&names)
        .zip(&nonces)
        .map(|((s, name), nonce)| BatchFile {
            name,
            mode: s.mode,
            times: options.preserve_times.then_some((s.atime, s.mtime)),
            nonce,
        })
        .collect();
    let argv = scripts::upload_files_argv(remote, &files);
    let total = srcs.iter().map(|s| s.size).sum();
    let reporter = Reporter::new(options.progress.clone(), Some(total));
    let (writer, mut reader) = match pipe_to_async_reader() {
        Ok(p) => p,
        Err(e) => return vec![Err(e)],
    };
    let srcs2 = srcs.to_vec();
    let progress = reporter.as_fn();
    let producer = tokio::task::spawn_blocking(move || produce_files(&srcs2, writer, progress));
    let mut stdout = Collector::default();
    let (outcome, report) = run_script(runner, &argv, Some(&mut reader), &mut stdout).await;
    drop(reader);
    let (sent, local_error) = joined(producer.await, "sending");
    let run = BatchRun::of(&outcome);
    let mut results = Vec::with_capacity(srcs.len());
    // The files the environment confirmed, checked against what was sent.
    for (i, confirmed) in report.oks.iter().enumerate().take(srcs.len()) {
        let Some((sha256, bytes)) = sent.get(i) else {
            results.push(Err(TransferError::Protocol(
                "the environment confirmed a file that was not sent".into(),
            )));
            return results;
        };
        if let Err(e) = check_confirmed(Some(confirmed), sha256) {
            results.push(Err(e));
            return results;
        }
        results.push(Ok(run.report(
            join_remote(remote, &srcs[i].name.to_string_lossy()),
            *bytes,
            sha256.clone(),
        )));
    }
    let k = results.len();
    if k == srcs.len() {
        // Every file is confirmed, so in place (the script prints `CSRS-OK`
        // after the rename): how the run itself ended changes nothing.
        return results;
    }
    // File k failed (or was never confirmed). A local error is file k's
    // only when everything before it was sent.
    let local = local_error.filter(|_| sent.len() == k);
    let sha = sent.get(k).map(|(s, _)| s.as_str()).unwrap_or("");
    let error = upload_failure(
        runner, outcome, &report, local, sha, remote, &names[k], &nonces[k],
    )
    .await;
    results.push(Err(error));
    results
}

/// `dir/name` for a remote directory as given (`dir`, `dir/`, `~`).
fn join_remote(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

pub(crate) async fn download(
    runner: &dyn RemoteRunner,
    remote: &str,
    dest: &LocalDestination,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let argv = scripts::download_argv(remote, options.recursive, DownloadSink::Stdout);
    match download_run(runner, &argv, None, dest, options).await? {
        Downloaded::Here(report) => Ok(report),
        Downloaded::InS3 { .. } => Err(TransferError::Protocol(
            "the environment sent the file to S3 unasked".into(),
        )),
    }
}

/// How a download run ended.
pub(crate) enum Downloaded {
    /// The data came in-band and is in place.
    Here(TransferReport),
    /// The environment put the data into S3 (`DownloadSink::Auto`): the run
    /// and what the script reported (the META line among it).
    InS3 { outcome: RunOutcome, report: Report },
}

/// Runs the download script `argv` (with `stdin`, if any), its stdout fed
/// to the local destination.
pub(crate) async fn download_run(
    runner: &dyn RemoteRunner,
    argv: &[Vec<u8>],
    stdin: Option<&mut (dyn AsyncRead + Send + Unpin)>,
    dest: &LocalDestination,
    options: &TransferOptions,
) -> Result<Downloaded, TransferError> {
    let reporter = Reporter::new(options.progress.clone(), None);
    let (mut writer, reader) = pipe_from_async_writer()?;
    let dest2 = dest.clone();
    let rep2 = reporter.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let progress = rep2.as_fn();
        local::receive_with_meta_hook(reader, None, &dest2, progress, |m| {
            rep2.set_total((!m.dir).then_some(m.size));
        })
    });
    let (outcome, report) = run_script(runner, argv, stdin, &mut writer).await;
    drop(writer);
    let received = consumer
        .await
        .map_err(|e| TransferError::Protocol(format!("the receiving thread failed: {e}")))?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            // A local failure (destination exists, disk full) stops reading and
            // makes the run fail on a closed pipe: report the local failure.
            return Err(match received {
                Err(local) if !matches!(local, TransferError::Incomplete) => local,
                _ if matches!(e, ExecError::Interrupted) => TransferError::Interrupted,
                _ => TransferError::Exec(e),
            });
        }
    };
    if !outcome.status.success() || report.ok.is_none() {
        if let Err(local) = received
            && !matches!(local, TransferError::Incomplete)
            && report.failure.is_none()
        {
            return Err(local);
        }
        return Err(remote_error(
            &report,
            outcome.status.code(),
            "",
            Direction::Download,
        ));
    }
    if report.meta.is_some() {
        // META on stderr: the data went to S3, nothing came here.
        return Ok(Downloaded::InS3 { outcome, report });
    }
    let received = received?;
    let Some((remote_sha, _)) = &report.ok else {
        return Err(TransferError::Protocol(
            "no checksum from the environment".into(),
        ));
    };
    if *remote_sha != received.sha256 {
        return Err(TransferError::ChecksumMismatch {
            sent: remote_sha.clone(),
            received: received.sha256,
        });
    }
    let (sha256, bytes, files, tree) = (
        received.sha256.clone(),
        received.bytes,
        received.files,
        received.meta.dir,
    );
    let target = tokio::task::spawn_blocking(move || received.staged.commit())
        .await
        .map_err(|e| TransferError::Protocol(format!("the receiving thread failed: {e}")))??;
    Ok(Downloaded::Here(TransferReport {
        destination: target.display().to_string(),
        bytes,
        files,
        tree,
        sha256,
        transport: Transport::InBand,
        channel_bytes_sent: outcome.channel_bytes_sent,
        channel_bytes_received: outcome.channel_bytes_received,
        http_bytes: 0,
        session_ids: outcome.session_id.into_iter().collect(),
        s3_fallback: report
            .fallback
            .map(|why| TransferError::EnvironmentS3(why).to_string()),
    }))
}

/// The remote paths each of `patterns` expands to, in order (the
/// environment's shell expands them: see `scripts::GLOB`).
pub(crate) async fn glob(
    runner: &dyn RemoteRunner,
    patterns: &[&str],
) -> Result<Vec<Vec<String>>, TransferError> {
    let argv = scripts::glob_argv(patterns);
    let mut out = Collector::default();
    run_to_success(runner, &argv, None, &mut out).await?;
    // Each pattern's paths, each ended by a NUL, then an empty record.
    let mut groups = Vec::with_capacity(patterns.len());
    let mut group = Vec::new();
    let mut records = out.0.split(|&b| b == 0);
    while groups.len() < patterns.len() {
        match records.next() {
            Some([]) => groups.push(std::mem::take(&mut group)),
            Some(name) => group.push(String::from_utf8(name.to_vec()).map_err(|_| {
                TransferError::Remote(format!(
                    "{}: the name is not valid UTF-8; name it with a pattern that does not match it, or rename it",
                    String::from_utf8_lossy(name)
                ))
            })?),
            None => {
                return Err(TransferError::Protocol(
                    "the expansion of the remote patterns ended early".into(),
                ));
            }
        }
    }
    Ok(groups)
}

/// Downloads the regular files `remotes` into `dests` (one each, in order) in
/// one run (one session): one result per file attempted. Each file is
/// verified and renamed into place as soon as it has arrived; the first
/// failure ends the batch (the files before it are in place, the ones after
/// it are not attempted).
pub(crate) async fn download_files(
    runner: &dyn RemoteRunner,
    remotes: &[&str],
    dests: &[LocalDestination],
    options: &TransferOptions,
) -> Vec<Result<TransferReport, TransferError>> {
    let argv = scripts::download_files_argv(remotes);
    let reporter = Reporter::new(options.progress.clone(), None);
    let (mut writer, reader) = match pipe_from_async_writer() {
        Ok(p) => p,
        Err(e) => return vec![Err(e)],
    };
    let dests2 = dests.to_vec();
    let progress = reporter.as_fn();
    let consumer =
        tokio::task::spawn_blocking(move || local::receive_files(reader, &dests2, progress));
    let (outcome, report) = run_script(runner, &argv, None, &mut writer).await;
    drop(writer);
    let (received, local_error) = joined(consumer.await, "receiving");
    let run = BatchRun::of(&outcome);
    let mut results: Vec<Result<TransferReport, TransferError>> = received
        .into_iter()
        .map(|f| Ok(run.report(f.target.display().to_string(), f.bytes, f.sha256)))
        .collect();
    if results.len() == remotes.len() {
        // Every file is verified and in place: how the run ended changes nothing.
        return results;
    }
    // The file the batch stopped at. A failure of this side (the
    // destination, the disk, a bad checksum) stops the reading, and the run
    // then fails on a closed pipe: the local failure is the one to report.
    let error = match (local_error, outcome) {
        (Some(local), _) if !matches!(local, TransferError::Incomplete) => local,
        (_, Err(ExecError::Interrupted)) => TransferError::Interrupted,
        (_, Err(e)) if report.failure.is_none() => TransferError::Exec(e),
        (_, Err(_)) => remote_error(&report, 1, "", Direction::Download),
        (_, Ok(o)) => {
            if o.status.success() && report.failure.is_none() {
                TransferError::Incomplete
            } else {
                remote_error(&report, o.status.code(), "", Direction::Download)
            }
        }
    };
    results.push(Err(error));
    results
}
