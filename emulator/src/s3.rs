//! File-transfer URLs and the fake S3 they point at (`/_s3/<bucket>[/<key>]`).
//!
//! GetFileUploadUrls/GetFileDownloadUrls hand out an SSE-C protected object:
//! a browser-style POST policy (fields signed with SigV4 by the emulator's own
//! S3 key) and a query-presigned GET URL for the same key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::AppState;
use crate::sigv4::{self, percent_decode, uri_encode};
use crate::state::{StoredObject, random_hex};
use crate::time::{format_amz_date, format_iso8601, parse_amz_date, to_millis};
use crate::wire::FileUrlsResponse;

/// Access key id of the emulator's internal S3 signer (its secret is random per
/// state directory).
pub(crate) const S3_ACCESS_KEY: &str = "AKIAEMULATORS3SIGNER";
/// Lifetime of presigned URLs and policies.
pub(crate) const PRESIGN_TTL: Duration = Duration::from_secs(3600);

pub(crate) fn bucket_name(region: &str) -> String {
    format!("cloudshell-emulator-{region}")
}

/// Last path component, restricted to a safe character set.
fn object_file_name(path: &str) -> String {
    let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "file".into()
    } else {
        cleaned
    }
}

/// Base64 MD5 of a byte string (the SSE-C key hash).
pub(crate) fn md5_base64(data: &[u8]) -> String {
    STANDARD.encode(Md5::digest(data))
}

/// Build the file-transfer response for one request.
pub(crate) fn presign(
    app: &AppState,
    secret: &str,
    env_id: &str,
    requested_path: &str,
    now: SystemTime,
) -> FileUrlsResponse {
    let region = &app.config.region;
    let bucket = bucket_name(region);
    let key = format!(
        "{env_id}/{}/{}",
        uuid::Uuid::new_v4(),
        object_file_name(requested_path)
    );
    let sse_key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let sse_key_b64 = STANDARD.encode(&sse_key);
    let sse_key_md5 = md5_base64(&sse_key);

    let amz_date = format_amz_date(now);
    let date = &amz_date[..8];
    let credential = format!("{S3_ACCESS_KEY}/{date}/{region}/s3/aws4_request");
    let expiration = format_iso8601(now + PRESIGN_TTL);
    let policy = serde_json::json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": bucket},
            {"key": key},
            {"x-amz-server-side-encryption-customer-algorithm": "AES256"},
            {"x-amz-server-side-encryption-customer-key": sse_key_b64},
            {"x-amz-server-side-encryption-customer-key-MD5": sse_key_md5},
            ["content-length-range", 0, app.config.max_object_size],
            {"x-amz-algorithm": sigv4::ALGORITHM},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ]
    });
    let policy_b64 = STANDARD.encode(policy.to_string());
    let signing_key = sigv4::signing_key(secret, date, region, "s3");
    let policy_signature = hex::encode(sigv4::hmac_sha256(&signing_key, policy_b64.as_bytes()));

    let mut fields = BTreeMap::new();
    fields.insert("key".to_owned(), key.clone());
    fields.insert(
        "x-amz-server-side-encryption-customer-algorithm".to_owned(),
        "AES256".to_owned(),
    );
    fields.insert(
        "x-amz-server-side-encryption-customer-key".to_owned(),
        sse_key_b64.clone(),
    );
    fields.insert(
        "x-amz-server-side-encryption-customer-key-MD5".to_owned(),
        sse_key_md5.clone(),
    );
    fields.insert("Policy".to_owned(), policy_b64);
    fields.insert("X-Amz-Algorithm".to_owned(), sigv4::ALGORITHM.to_owned());
    fields.insert("X-Amz-Credential".to_owned(), credential.clone());
    fields.insert("X-Amz-Date".to_owned(), amz_date.clone());
    fields.insert("X-Amz-Signature".to_owned(), policy_signature);

    let object_path = format!("/_s3/{bucket}/{}", uri_encode(key.as_bytes(), true));
    let mut query = format!(
        "X-Amz-Algorithm={}&X-Amz-Credential={}&X-Amz-Date={amz_date}&X-Amz-Expires={}&X-Amz-SignedHeaders=host",
        sigv4::ALGORITHM,
        uri_encode(credential.as_bytes(), false),
        PRESIGN_TTL.as_secs()
    );
    let creq = sigv4::canonical_request(
        "GET",
        &object_path,
        &query,
        &[("host".to_owned(), app.s3_host.clone())],
        "UNSIGNED-PAYLOAD",
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let sts = sigv4::string_to_sign(&amz_date, &scope, &creq);
    let signature = hex::encode(sigv4::hmac_sha256(&signing_key, sts.as_bytes()));
    query.push_str("&X-Amz-Signature=");
    query.push_str(&signature);

    FileUrlsResponse {
        file_upload_presigned_url: format!("{}/_s3/{bucket}", app.s3_base),
        file_upload_presigned_fields: fields,
        file_download_presigned_url: format!("{}{object_path}?{query}", app.s3_base),
        file_download_presigned_key: sse_key_b64,
        file_download_presigned_key_hash: sse_key_md5,
    }
}

// ------------------------------------------------------------------ fake S3

/// Routes of the fake S3: `POST /_s3/<bucket>` (browser-style form upload) and
/// `GET /_s3/<bucket>/<key>` (query-presigned download with SSE-C headers).
pub(crate) fn router(max_object_size: u64) -> Router<AppState> {
    let limit = usize::try_from(max_object_size.saturating_add(1 << 20)).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/_s3/{bucket}",
            post(upload).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/_s3/{bucket}/{*key}", get(download))
}

const SSE_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";
const SSE_KEY: &str = "x-amz-server-side-encryption-customer-key";
const SSE_KEY_MD5: &str = "x-amz-server-side-encryption-customer-key-md5";

/// An S3-style error (XML body).
#[derive(Debug)]
struct S3Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn s3err(status: StatusCode, code: &'static str, message: impl Into<String>) -> S3Error {
    S3Error {
        status,
        code,
        message: message.into(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        let request_id = random_hex(8).to_uppercase();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId></Error>",
            self.code,
            xml_escape(&self.message)
        );
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        resp
    }
}

fn objects_dir(app: &AppState) -> PathBuf {
    app.config.state_dir.join("objects")
}

/// Check a credential scope of the emulator's S3 signer; returns its date.
fn check_credential(app: &AppState, credential: &str) -> Result<String, S3Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            format!("Error parsing the X-Amz-Credential parameter: '{credential}'"),
        ));
    }
    if parts[0] != S3_ACCESS_KEY {
        return Err(s3err(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    }
    if parts[2] != app.config.region {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            format!(
                "Error parsing the X-Amz-Credential parameter; the region '{}' is wrong; expecting '{}'",
                parts[2], app.config.region
            ),
        ));
    }
    Ok(parts[1].to_owned())
}

fn signatures_match(expected: &[u8; 32], provided_hex: &str) -> bool {
    let Ok(provided) = hex::decode(provided_hex) else {
        return false;
    };
    provided.len() == 32
        && expected
            .iter()
            .zip(&provided)
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0
}

fn parse_iso8601(s: &str) -> Option<SystemTime> {
    // 2015-08-30T12:36:00.000Z or 2015-08-30T12:36:00Z
    let trimmed = s.strip_suffix('Z')?;
    let main = trimmed.split('.').next()?;
    let basic: String = main.chars().filter(|c| *c != '-' && *c != ':').collect();
    parse_amz_date(&format!("{basic}Z"))
}

/// Decode and check the SSE-C customer key (base64 of 32 bytes) against an
/// optional base64 MD5.
fn check_sse_key(key_b64: &str, md5_b64: Option<&str>) -> Result<Vec<u8>, S3Error> {
    let key = STANDARD
        .decode(key_b64.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            s3err(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "The secret key was invalid for the specified algorithm.",
            )
        })?;
    if let Some(md5) = md5_b64
        && md5.trim() != md5_base64(&key)
    {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        ));
    }
    Ok(key)
}

/// Check the POST form's policy, signature and SSE-C fields. Returns the
/// object key, the SSE-C key and the largest allowed size.
fn check_form(
    app: &AppState,
    secret: &str,
    bucket: &str,
    fields: &BTreeMap<String, String>,
    now: SystemTime,
) -> Result<(String, Vec<u8>, u64), S3Error> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let required = |name: &str| {
        field(name).ok_or_else(|| {
            s3err(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                format!("Bucket POST must contain a field named '{name}'."),
            )
        })
    };
    let policy_b64 = required("policy")?;
    let algorithm = required("x-amz-algorithm")?;
    let credential = required("x-amz-credential")?;
    required("x-amz-date")?;
    let signature = required("x-amz-signature")?;
    let key = required("key")?.to_owned();
    if algorithm != sigv4::ALGORITHM {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("Unsupported x-amz-algorithm '{algorithm}'."),
        ));
    }
    let date = check_credential(app, credential)?;
    let signing_key = sigv4::signing_key(secret, &date, &app.config.region, "s3");
    if !signatures_match(
        &sigv4::hmac_sha256(&signing_key, policy_b64.as_bytes()),
        signature,
    ) {
        return Err(s3err(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        ));
    }
    let policy: Value = STANDARD
        .decode(policy_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            s3err(
                StatusCode::BAD_REQUEST,
                "InvalidPolicyDocument",
                "Invalid Policy: Invalid JSON.",
            )
        })?;
    let expiration = policy["expiration"]
        .as_str()
        .and_then(parse_iso8601)
        .ok_or_else(|| {
            s3err(
                StatusCode::BAD_REQUEST,
                "InvalidPolicyDocument",
                "Invalid Policy: Invalid 'expiration' value.",
            )
        })?;
    if now > expiration {
        return Err(s3err(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Invalid according to Policy: Policy expired.",
        ));
    }
    let mut max_size = app.config.max_object_size;
    let conditions = policy["conditions"].as_array().cloned().unwrap_or_default();
    let failed = |c: &Value| {
        s3err(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!("Invalid according to Policy: Policy Condition failed: {c}"),
        )
    };
    for c in &conditions {
        match c {
            Value::Object(map) => {
                for (name, want) in map {
                    let name = name.to_ascii_lowercase();
                    let have = if name == "bucket" {
                        Some(bucket)
                    } else {
                        field(&name)
                    };
                    if have != want.as_str() {
                        return Err(failed(c));
                    }
                }
            }
            Value::Array(items) => match items.first().and_then(Value::as_str) {
                Some("content-length-range") => {
                    if let Some(max) = items.get(2).and_then(Value::as_u64) {
                        max_size = max_size.min(max);
                    }
                }
                Some(op @ ("eq" | "starts-with")) => {
                    let name = items
                        .get(1)
                        .and_then(Value::as_str)
                        .map(|n| n.trim_start_matches('$').to_ascii_lowercase())
                        .unwrap_or_default();
                    let want = items.get(2).and_then(Value::as_str).unwrap_or_default();
                    let have = field(&name).unwrap_or_default();
                    let ok = if op == "eq" {
                        have == want
                    } else {
                        have.starts_with(want)
                    };
                    if !ok {
                        return Err(failed(c));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    let algorithm = field(SSE_ALGORITHM).ok_or_else(|| {
        s3err(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Server Side Encryption with Customer provided key is required: the x-amz-server-side-encryption-customer-algorithm field is missing.",
        )
    })?;
    if algorithm != "AES256" {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "InvalidEncryptionAlgorithmError",
            "The encryption request that you specified is not valid. The valid value is AES256.",
        ));
    }
    let sse_key = field(SSE_KEY).ok_or_else(|| {
        s3err(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.",
        )
    })?;
    let sse_key = check_sse_key(sse_key, field(SSE_KEY_MD5))?;
    Ok((key, sse_key, max_size))
}

/// Read a small text field (at most 64 KiB).
async fn small_text(field: &mut Field<'_>) -> Result<String, S3Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > 64 * 1024 {
            return Err(s3err(
                StatusCode::BAD_REQUEST,
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceding the upload file were too large.",
            ));
        }
    }
    String::from_utf8(buf).map_err(|_| {
        s3err(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Form fields must be UTF-8.",
        )
    })
}

fn bad_form(e: impl std::fmt::Display) -> S3Error {
    s3err(
        StatusCode::BAD_REQUEST,
        "MalformedPOSTRequest",
        format!("The body of your POST request is not well-formed multipart/form-data: {e}"),
    )
}

async fn upload(
    State(app): State<AppState>,
    Path(bucket): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    match upload_inner(&app, &bucket, multipart).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(code = e.code, "fake S3 upload refused");
            e.into_response()
        }
    }
}

async fn upload_inner(
    app: &AppState,
    bucket: &str,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, S3Error> {
    if bucket != bucket_name(&app.config.region) {
        return Err(s3err(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        ));
    }
    let mut multipart = multipart.map_err(bad_form)?;
    let now = app.config.clock.now();
    let secret = app.store.read(now, |s| s.s3_secret.clone());
    let mut fields = BTreeMap::new();
    loop {
        let Some(mut field) = multipart.next_field().await.map_err(bad_form)? else {
            return Err(s3err(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "POST requires exactly one file upload per request.",
            ));
        };
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        if name == "file" {
            let (key, sse_key, max_size) = check_form(app, &secret, bucket, &fields, now)?;
            return store_object(app, bucket, key, &sse_key, max_size, &mut field).await;
        }
        let value = small_text(&mut field).await?;
        fields.insert(name, value);
    }
}

async fn store_object(
    app: &AppState,
    bucket: &str,
    key: String,
    sse_key: &[u8],
    max_size: u64,
    field: &mut Field<'_>,
) -> Result<Response, S3Error> {
    let internal = |e: std::io::Error| {
        tracing::error!("fake S3 could not store an object: {e}");
        s3err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    };
    let dir = objects_dir(app);
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let file_name = format!("{}.obj", random_hex(16));
    let tmp = dir.join(format!(".{file_name}.part"));
    let result = async {
        let mut out = tokio::fs::File::create(&tmp).await.map_err(internal)?;
        let mut size: u64 = 0;
        let mut md5 = Md5::new();
        while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
            size += chunk.len() as u64;
            if size > max_size {
                return Err(s3err(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    format!(
                        "Your proposed upload exceeds the maximum allowed size of {max_size} bytes."
                    ),
                ));
            }
            md5.update(&chunk);
            out.write_all(&chunk).await.map_err(internal)?;
        }
        out.sync_all().await.map_err(internal)?;
        Ok((size, hex::encode(md5.finalize())))
    }
    .await;
    let (size, etag) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let final_path = dir.join(&file_name);
    if let Err(e) = tokio::fs::rename(&tmp, &final_path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(internal(e));
    }
    let record = StoredObject {
        bucket: bucket.to_owned(),
        key: key.clone(),
        sse_key_sha256: hex::encode(Sha256::digest(sse_key)),
        size,
        file: file_name,
        stored_ms: to_millis(app.config.clock.now()),
    };
    let replaced = app.store.write(app.config.clock.now(), |s, _, _| {
        let mut replaced = Vec::new();
        s.objects.retain(|o| {
            if o.bucket == record.bucket && o.key == record.key {
                replaced.push(o.file.clone());
                false
            } else {
                true
            }
        });
        s.objects.push(record);
        Ok::<_, std::convert::Infallible>(replaced)
    });
    match replaced {
        Ok(old) => {
            for f in old {
                let _ = tokio::fs::remove_file(dir.join(f)).await;
            }
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&final_path).await;
            return Err(internal(std::io::Error::other(e.to_string())));
        }
    }
    tracing::info!(%bucket, size, "fake S3 stored an object");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&percent_decode(k)).into_owned(),
                String::from_utf8_lossy(&percent_decode(v)).into_owned(),
            )
        })
        .collect()
}

fn header_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn download(
    State(app): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match download_inner(&app, &bucket, &key, &uri, &headers).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(code = e.code, "fake S3 download refused");
            e.into_response()
        }
    }
}

async fn download_inner(
    app: &AppState,
    bucket: &str,
    key: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, S3Error> {
    let raw_query = uri.query().unwrap_or("");
    let raw_path = uri.path();
    let params = query_pairs(raw_query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                s3err(
                    StatusCode::FORBIDDEN,
                    "AccessDenied",
                    format!("Query-string authentication requires the {name} parameter."),
                )
            })
    };
    if param("X-Amz-Algorithm")? != sigv4::ALGORITHM {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let date = check_credential(app, param("X-Amz-Credential")?)?;
    let amz_date = param("X-Amz-Date")?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        s3err(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        )
    })?;
    let expires: u64 = param("X-Amz-Expires")?.parse().map_err(|_| {
        s3err(
            StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires should be a number",
        )
    })?;
    let signed_headers = param("X-Amz-SignedHeaders")?;
    let signature = param("X-Amz-Signature")?;
    let now = app.config.clock.now();
    if now > signed_at + Duration::from_secs(expires) {
        return Err(s3err(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired",
        ));
    }
    let unsigned_query: String = raw_query
        .split('&')
        .filter(|p| !p.starts_with("X-Amz-Signature="))
        .collect::<Vec<_>>()
        .join("&");
    let signed: Vec<(String, String)> = signed_headers
        .split(';')
        .map(|h| {
            let h = h.to_ascii_lowercase();
            let v = header_value(headers, &h).unwrap_or_default().to_owned();
            (h, v)
        })
        .collect();
    let creq = sigv4::canonical_request(
        "GET",
        raw_path,
        &unsigned_query,
        &signed,
        "UNSIGNED-PAYLOAD",
    );
    let scope = format!("{date}/{}/s3/aws4_request", app.config.region);
    let sts = sigv4::string_to_sign(amz_date, &scope, &creq);
    let (secret, object) = app.store.read(now, |s| {
        (
            s.s3_secret.clone(),
            s.objects
                .iter()
                .find(|o| o.bucket == bucket && o.key == key)
                .cloned(),
        )
    });
    let signing_key = sigv4::signing_key(&secret, &date, &app.config.region, "s3");
    if !signatures_match(&sigv4::hmac_sha256(&signing_key, sts.as_bytes()), signature) {
        return Err(s3err(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        ));
    }
    let object = object.ok_or_else(|| {
        s3err(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    })?;
    let key_b64 = header_value(headers, SSE_KEY).ok_or_else(|| {
        s3err(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
        )
    })?;
    if let Some(alg) = header_value(headers, SSE_ALGORITHM)
        && alg != "AES256"
    {
        return Err(s3err(
            StatusCode::BAD_REQUEST,
            "InvalidEncryptionAlgorithmError",
            "The encryption request that you specified is not valid. The valid value is AES256.",
        ));
    }
    let sse_key = check_sse_key(key_b64, header_value(headers, SSE_KEY_MD5))?;
    if hex::encode(Sha256::digest(&sse_key)) != object.sse_key_sha256 {
        return Err(s3err(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "The provided customer key does not match the key used to encrypt the object.",
        ));
    }
    let path = objects_dir(app).join(&object.file);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), "fake S3 object file is missing: {e}");
        s3err(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    })?;
    let stream = futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Response::new(HttpBody::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(object.size));
    h.insert(SSE_ALGORITHM, HeaderValue::from_static("AES256"));
    if let Ok(v) = HeaderValue::from_str(&md5_base64(&sse_key)) {
        h.insert(SSE_KEY_MD5, v);
    }
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_sanitised() {
        assert_eq!(
            object_file_name("/home/cloudshell-user/Cloud.svg"),
            "Cloud.svg"
        );
        assert_eq!(object_file_name("/tmp/"), "tmp");
        assert_eq!(object_file_name("a b?.txt"), "a_b_.txt");
        assert_eq!(object_file_name(".."), "file");
        assert_eq!(object_file_name(""), "file");
    }

    #[test]
    fn iso8601_policy_dates() {
        let t = parse_iso8601("2015-08-30T12:36:00.000Z").unwrap();
        assert_eq!(format_iso8601(t), "2015-08-30T12:36:00.000Z");
        assert_eq!(parse_iso8601("2015-08-30T12:36:00Z"), Some(t));
        assert!(parse_iso8601("yesterday").is_none());
    }

    #[test]
    fn md5_of_known_input() {
        // RFC 1321 test vector: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(
            md5_base64(b"abc"),
            STANDARD.encode(hex::decode("900150983cd24fb0d6963f7d28e17f72").unwrap())
        );
    }
}
