//! The S3 transport, as the AWS Console does it: presigned POST / GET URLs from
//! GetFileUploadUrls / GetFileDownloadUrls, with a helper command in the
//! environment running `curl`. Secrets (the SSE-C key, the presigned URLs and
//! form fields) reach that `curl` as a config on its stdin, never on a command
//! line.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::error::TransferError;
use super::inband::{
    self, Collector, Downloaded, check_confirmed, pipe_from_async_writer, run_script,
    run_to_success, upload_failure,
};
use super::local::{self, HashWriter, LocalDestination, SourceInfo};
use super::runner::{Primed, RunOutcome};
use super::scripts::{self, DownloadSink, Report, UploadArgs, UploadSource};
use super::{Reporter, TransferOptions, TransferReport, Transport};
use crate::Secret;

const SSE_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";
const SSE_KEY: &str = "x-amz-server-side-encryption-customer-key";
const SSE_KEY_MD5: &str = "x-amz-server-side-encryption-customer-key-MD5";

/// Reads per request body chunk.
const READ_CHUNK: usize = 256 * 1024;

/// A string in curl config syntax (double-quoted, backslash escapes).
fn curl_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// An HTTP failure without its URL: a presigned URL grants access (and a
/// GET URL carries the session token), so it never reaches a message.
fn http_error(operation: &'static str, source: reqwest::Error) -> TransferError {
    TransferError::Http {
        operation,
        source: source.without_url(),
    }
}

fn http_client() -> Result<reqwest::Client, TransferError> {
    crate::session::ensure_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|source| http_error("client set-up", source))
}

/// `Code: Message` from an S3 XML error body.
fn s3_message(body: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&close)? + start;
        Some(body[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
}

async fn s3_error(operation: &'static str, resp: reqwest::Response) -> TransferError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    TransferError::S3 {
        operation,
        status,
        message: s3_message(&body),
    }
}

fn api_error(e: crate::Error, environment_id: &str) -> TransferError {
    if e.is_not_found() {
        TransferError::UnknownEnvironment(environment_id.to_string())
    } else {
        TransferError::Api(e)
    }
}

fn missing(what: &'static str) -> TransferError {
    TransferError::S3UrlsIncomplete(what)
}

/// What both directions need from a GetFile*Urls answer.
struct Presigned {
    post_url: String,
    get_url: String,
    key: Secret,
    key_md5: Option<String>,
}

impl Presigned {
    /// The POST and GET URLs and the SSE-C key (from `FileDownloadPresignedKey`,
    /// else from the form fields) and its MD5; a missing one is an error.
    fn from_urls(urls: &crate::types::FileUrlsOutput) -> Result<Self, TransferError> {
        let post_url = urls
            .file_upload_presigned_url
            .clone()
            .ok_or_else(|| missing("FileUploadPresignedUrl"))?;
        let get_url = urls
            .file_download_presigned_url
            .clone()
            .ok_or_else(|| missing("FileDownloadPresignedUrl"))?;
        let key = urls
            .file_download_presigned_key
            .clone()
            .or_else(|| {
                urls.file_upload_presigned_fields
                    .get(SSE_KEY)
                    .map(|k| Secret::new(k.clone()))
            })
            .ok_or_else(|| missing("the SSE-C key"))?;
        let key_md5 = urls
            .file_download_presigned_key_hash
            .clone()
            .or_else(|| urls.file_upload_presigned_fields.get(SSE_KEY_MD5).cloned());
        Ok(Self {
            post_url,
            get_url,
            key,
            key_md5,
        })
    }
}

pub(crate) async fn upload(
    runner: &Primed,
    src: &SourceInfo,
    remote: &str,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let client = runner.client();
    let env = runner.environment_id();
    let name = src.name.to_string_lossy().into_owned();
    let urls = client
        .get_file_upload_urls()
        .environment_id(env)
        .file_upload_path(name.clone())
        .send()
        .await
        .map_err(|e| api_error(e, env))?;
    let Presigned {
        post_url,
        get_url,
        key,
        key_md5,
    } = Presigned::from_urls(&urls)?;

    // The object: the file itself, or a tree archived into an anonymous temporary file.
    let (file, len, pre) = if src.dir {
        let src2 = src.clone();
        let (file, sha, bytes, files) = tokio::task::spawn_blocking(move || {
            let tmp = tempfile::tempfile().map_err(|e| {
                TransferError::local("creating a temporary file in", std::env::temp_dir(), e)
            })?;
            let w = HashWriter::new(std::io::BufWriter::with_capacity(256 * 1024, tmp), None);
            let (w, files, _skipped) = local::send_tree(&src2, w)?;
            let (buf, sha, bytes) = w.finish();
            let f = buf
                .into_inner()
                .map_err(|e| TransferError::local("archiving", &src2.path, e.into_error()))?;
            Ok::<_, TransferError>((f, sha, bytes, files))
        })
        .await
        .map_err(|e| TransferError::Protocol(format!("the archiving thread failed: {e}")))??;
        let mut f = tokio::fs::File::from_std(file);
        f.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| TransferError::local("reading", std::env::temp_dir(), e))?;
        (f, bytes, Some((sha, files)))
    } else {
        let f = tokio::fs::File::open(&src.path)
            .await
            .map_err(|e| TransferError::local("opening", &src.path, e))?;
        (f, src.size, None)
    };

    // POST the form, the file part streamed and hashed on the way.
    let reporter = Reporter::new(options.progress.clone(), Some(len));
    let done: Arc<Mutex<Option<(String, u64)>>> = Arc::default();
    let done2 = done.clone();
    let rep = reporter.clone();
    let stream =
        futures_util::stream::unfold(Some((file, Sha256::new(), 0u64, len)), move |state| {
            let done = done2.clone();
            let rep = rep.clone();
            async move {
                let (mut file, mut hash, mut count, len) = state?;
                let want =
                    usize::try_from((len - count).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
                if want == 0 {
                    if let Ok(mut d) = done.lock() {
                        *d = Some((hex::encode(hash.finalize()), count));
                    }
                    return None;
                }
                let mut buf = vec![0u8; want];
                match file.read(&mut buf).await {
                    Ok(0) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was being copied",
                        )),
                        None,
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        hash.update(&buf);
                        count += n as u64;
                        rep.report(count);
                        Some((Ok(Bytes::from(buf)), Some((file, hash, count, len))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name.clone())
            .mime_str("application/octet-stream")
            .map_err(|source| http_error("upload", source))?;
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in &urls.file_upload_presigned_fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part("file", part);
    let http = http_client()?;
    // A session that cannot be opened (the data channel blocked, say) ends
    // the copy at once, not after the whole file has gone to S3.
    let resp = runner
        .unless_session_fails(async {
            http.post(&post_url)
                .multipart(form)
                .send()
                .await
                .map_err(|source| http_error("upload", source))
        })
        .await?;
    if !resp.status().is_success() {
        return Err(s3_error("upload", resp).await);
    }
    let (sha256, sent) =
        done.lock().ok().and_then(|mut d| d.take()).ok_or_else(|| {
            TransferError::Protocol("the upload body was not sent completely".into())
        })?;
    if sent != len {
        return Err(TransferError::Incomplete);
    }
    if pre.is_none() {
        // What S3 holds is what was read: the file must still hold it.
        let (src, now, sent) = (
            src.clone(),
            tokio::fs::metadata(&src.path).await,
            sha256.clone(),
        );
        tokio::task::spawn_blocking(move || local::check_unchanged(&src, now, &sent))
            .await
            .map_err(|e| TransferError::Protocol(format!("the checking thread failed: {e}")))??;
    }
    if let Some((pre_sha, _)) = &pre
        && *pre_sha != sha256
    {
        return Err(TransferError::ChecksumMismatch {
            sent: pre_sha.clone(),
            received: sha256,
        });
    }

    // The environment fetches the object and checks its hash.
    let mut config = format!("url = {}\n", curl_quote(&get_url));
    config.push_str(&format!(
        "header = {}\n",
        curl_quote(&format!("{SSE_ALGORITHM}: AES256"))
    ));
    config.push_str(&format!(
        "header = {}\n",
        curl_quote(&format!("{SSE_KEY}: {}", key.expose()))
    ));
    if let Some(md5) = &key_md5 {
        config.push_str(&format!(
            "header = {}\n",
            curl_quote(&format!("{SSE_KEY_MD5}: {md5}"))
        ));
    }
    let nonce = super::nonce();
    let name_bytes = src.name.as_encoded_bytes().to_vec();
    let argv = scripts::upload_argv(&UploadArgs {
        tree: src.dir,
        destination: remote,
        name: &name_bytes,
        into_directory: options.into_directory,
        mode: src.mode,
        times: options.preserve_times.then_some((src.atime, src.mtime)),
        nonce: &nonce,
        source: UploadSource::Curl,
        expected_sha256: &sha256,
    });
    let mut stdin: &[u8] = config.as_bytes();
    let mut stdout = Collector::default();
    let (outcome, report) = run_script(runner, &argv, Some(&mut stdin), &mut stdout).await;
    let outcome = match outcome {
        Ok(o) if o.status.success() => o,
        failed => {
            let e = upload_failure(
                runner,
                failed,
                &report,
                None,
                &sha256,
                remote,
                &name_bytes,
                &nonce,
            );
            return Err(e.await);
        }
    };
    check_confirmed(report.ok.as_ref(), &sha256)?;
    Ok(TransferReport {
        destination: remote.to_string(),
        bytes: len,
        files: pre.map(|(_, f)| f).unwrap_or(1),
        tree: src.dir,
        sha256,
        transport: Transport::S3,
        channel_bytes_sent: outcome.channel_bytes_sent,
        channel_bytes_received: outcome.channel_bytes_received,
        http_bytes: len,
        session_ids: outcome.session_id.into_iter().collect(),
        s3_fallback: None,
    })
}

/// The curl config of the environment's POST to the presigned form (the
/// file itself is read from fd 3).
fn post_config(post_url: &str, urls: &crate::types::FileUrlsOutput) -> String {
    let mut config = format!("url = {}\n", curl_quote(post_url));
    for (k, v) in &urls.file_upload_presigned_fields {
        config.push_str(&format!(
            "form-string = {}\n",
            curl_quote(&format!("{k}={v}"))
        ));
    }
    config.push_str("form = \"file=@/dev/fd/3\"\n");
    config
}

async fn download_urls(
    runner: &Primed,
    remote: &str,
) -> Result<(crate::types::FileUrlsOutput, Presigned), TransferError> {
    let env = runner.environment_id();
    let urls = runner
        .client()
        .get_file_download_urls()
        .environment_id(env)
        .file_download_path(remote)
        .send()
        .await
        .map_err(|e| api_error(e, env))?;
    let presigned = Presigned::from_urls(&urls)?;
    Ok((urls, presigned))
}

pub(crate) async fn download(
    runner: &Primed,
    remote: &str,
    dest: &LocalDestination,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let (urls, presigned) = download_urls(runner, remote).await?;
    // The environment POSTs the file (or a tar of the tree) to the presigned form.
    let config = post_config(&presigned.post_url, &urls);
    let argv = scripts::download_argv(remote, options.recursive, DownloadSink::S3);
    let mut stdin: &[u8] = config.as_bytes();
    let mut stdout = Collector::default();
    let (outcome, report) = run_to_success(runner, &argv, Some(&mut stdin), &mut stdout).await?;
    fetch(presigned, outcome, report, dest, options).await
}

/// [`Transport::Auto`]'s download from the public environment: one run in
/// which the environment sends a file of [`AUTO_S3_MIN_BYTES`] or more to
/// S3 and anything else (or the file, when its request to S3 fails) in-band.
/// When the S3 route fails, the copy goes in-band, with
/// [`TransferReport::s3_fallback`] saying why.
pub(crate) async fn download_auto(
    runner: &Primed,
    remote: &str,
    dest: &LocalDestination,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let in_band = |e| super::in_band_after(e, inband::download(runner, remote, dest, options));
    let (urls, presigned) = match download_urls(runner, remote).await {
        Ok(u) => u,
        Err(e) if e.is_s3_route() => return in_band(e).await,
        Err(e) => return Err(e),
    };
    let config = post_config(&presigned.post_url, &urls);
    let argv = scripts::download_argv(
        remote,
        options.recursive,
        DownloadSink::Auto(super::AUTO_S3_MIN_BYTES),
    );
    let mut stdin: &[u8] = config.as_bytes();
    match inband::download_run(runner, &argv, Some(&mut stdin), dest, options).await? {
        Downloaded::Here(report) => Ok(report),
        Downloaded::InS3 { outcome, report } => {
            match fetch(presigned, outcome, report, dest, options).await {
                Err(e) if e.is_s3_route() => in_band(e).await,
                other => other,
            }
        }
    }
}

/// GETs the object the environment put into S3 (its run `outcome` and
/// `report`) with the SSE-C headers, streaming it into the destination.
async fn fetch(
    presigned: Presigned,
    outcome: RunOutcome,
    report: Report,
    dest: &LocalDestination,
    options: &TransferOptions,
) -> Result<TransferReport, TransferError> {
    let Presigned {
        get_url,
        key,
        key_md5,
        ..
    } = presigned;
    let (Some((remote_sha, size)), Some(meta)) = (report.ok.clone(), report.meta) else {
        return Err(TransferError::Protocol(
            "the environment did not report what it uploaded".into(),
        ));
    };

    let reporter = Reporter::new(options.progress.clone(), size);
    let http = http_client()?;
    let mut req = http
        .get(&get_url)
        .header(SSE_ALGORITHM, "AES256")
        .header(SSE_KEY, key.expose());
    if let Some(md5) = &key_md5 {
        req = req.header(SSE_KEY_MD5, md5.as_str());
    }
    let mut resp = req
        .send()
        .await
        .map_err(|source| http_error("download", source))?;
    if !resp.status().is_success() {
        return Err(s3_error("download", resp).await);
    }
    let (mut writer, reader) = pipe_from_async_writer()?;
    let dest2 = dest.clone();
    let rep2 = reporter.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let progress = rep2.as_fn();
        local::receive_with_meta_hook(reader, Some(meta), &dest2, progress, |_| {})
    });
    let mut http_bytes = 0u64;
    let mut fed: Result<(), TransferError> = Ok(());
    // A file's first `size` bytes: one that grew while the environment sent
    // it (a log being written to) is longer in S3.
    let mut left = if meta.dir { u64::MAX } else { meta.size };
    while left > 0 {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                http_bytes += chunk.len() as u64;
                let take = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                left -= take as u64;
                if writer.write_all(&chunk[..take]).await.is_err() {
                    break; // the receiver stopped; its error says why
                }
            }
            Ok(None) => break,
            Err(source) => {
                fed = Err(http_error("download", source));
                break;
            }
        }
    }
    drop(writer);
    let received = consumer
        .await
        .map_err(|e| TransferError::Protocol(format!("the receiving thread failed: {e}")))?;
    let received = match (received, fed) {
        (Err(local), _) if !matches!(local, TransferError::Incomplete) => return Err(local),
        (_, Err(e)) => return Err(e),
        (r, Ok(())) => r?,
    };
    if received.sha256 != remote_sha {
        return Err(TransferError::ChecksumMismatch {
            sent: remote_sha,
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
    Ok(TransferReport {
        destination: target.display().to_string(),
        bytes,
        files,
        tree,
        sha256,
        transport: Transport::S3,
        channel_bytes_sent: outcome.channel_bytes_sent,
        channel_bytes_received: outcome.channel_bytes_received,
        http_bytes,
        session_ids: outcome.session_id.into_iter().collect(),
        s3_fallback: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn curl_quoting() {
        assert_eq!(curl_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(curl_quote("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn s3_messages() {
        assert_eq!(
            s3_message("<Error><Code>AccessDenied</Code><Message>no</Message></Error>"),
            "AccessDenied: no"
        );
        assert_eq!(s3_message("plain"), "plain");
    }

    #[tokio::test]
    async fn http_errors_never_show_the_presigned_url() {
        // A port nothing listens on: the request fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!(
            "http://127.0.0.1:{port}/obj?X-Amz-Security-Token=SECRETTOKEN&X-Amz-Signature=SECRETSIG"
        );
        let e = http_client()
            .unwrap()
            .get(&url)
            .send()
            .await
            .expect_err("nothing listens there");
        assert!(
            e.to_string().contains("SECRET"),
            "the raw error names the URL"
        );
        let shown = crate::error_chain(&http_error("download", e));
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.starts_with("S3 download request failed"), "{shown}");
    }
}
