//! File-transfer URLs and the fake S3 they point at (`/_s3/<bucket>[/<key>]`).
//!
//! GetFileUploadUrls/GetFileDownloadUrls hand out an SSE-C protected object:
//! a browser-style POST policy (fields signed with SigV4 by the emulator's own
//! S3 key) and a query-presigned GET URL for the same key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::Md5;
use sha2::Digest;

use crate::AppState;
use crate::sigv4::{self, uri_encode};
use crate::time::{format_amz_date, format_iso8601};
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
        &[("host".to_owned(), app.host.clone())],
        "UNSIGNED-PAYLOAD",
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let sts = sigv4::string_to_sign(&amz_date, &scope, &creq);
    let signature = hex::encode(sigv4::hmac_sha256(&signing_key, sts.as_bytes()));
    query.push_str("&X-Amz-Signature=");
    query.push_str(&signature);

    FileUrlsResponse {
        file_upload_presigned_url: format!("{}/_s3/{bucket}", app.http_base),
        file_upload_presigned_fields: fields,
        file_download_presigned_url: format!("{}{object_path}?{query}", app.http_base),
        file_download_presigned_key: sse_key_b64,
        file_download_presigned_key_hash: sse_key_md5,
    }
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
    fn md5_of_known_input() {
        // RFC 1321 test vector: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(
            md5_base64(b"abc"),
            STANDARD.encode(hex::decode("900150983cd24fb0d6963f7d28e17f72").unwrap())
        );
    }
}
