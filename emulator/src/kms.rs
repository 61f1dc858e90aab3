//! A fake AWS KMS, just enough for KMS-encrypted data-channel sessions:
//! `TrentService.GenerateDataKey` and `TrentService.Decrypt` (awsJson1.1).
//!
//! Data keys are random; the "ciphertext blob" is an opaque random handle under
//! which the plaintext and its encryption context are remembered in memory. The
//! gateway "decrypts" the blob a client sends in its HandshakeResponse by looking
//! it up, the way the real agent calls `kms:Decrypt`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of every ciphertext blob the fake issues.
const BLOB_MAGIC: &[u8] = b"cloudshell-emulator-kms-v1:";
/// Random bytes after the prefix.
const BLOB_RANDOM: usize = 32;
/// Most data keys remembered (the oldest are forgotten first).
const MAX_KEYS: usize = 10_000;

/// Encryption-context key that names the session.
pub const CONTEXT_SESSION_ID: &str = "aws:ssm:SessionId";
/// Encryption-context key that names the target.
pub const CONTEXT_TARGET_ID: &str = "aws:ssm:TargetId";

/// A KMS error, with the awsJson1.1 `__type` it is reported under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// Bad request body or parameters.
    #[error("{0}")]
    Validation(String),
    /// The blob was not issued here, or the context differs.
    #[error("the ciphertext is invalid or was encrypted under a different context")]
    InvalidCiphertext,
    /// An operation the fake does not implement.
    #[error("operation {0} is not supported by the emulator")]
    UnknownOperation(String),
}

impl KmsError {
    /// The awsJson1.1 error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            KmsError::Validation(_) => "ValidationException",
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::UnknownOperation(_) => "UnsupportedOperationException",
        }
    }
}

struct IssuedKey {
    plaintext: Vec<u8>,
    key_arn: String,
    context: BTreeMap<String, String>,
}

/// Issued keys by blob, and blobs in issue order (the oldest are forgotten first).
type KeyStore = (
    HashMap<Vec<u8>, IssuedKey>,
    std::collections::VecDeque<Vec<u8>>,
);

/// The fake KMS's memory of issued data keys.
pub struct FakeKms {
    region: String,
    account_id: String,
    keys: Mutex<KeyStore>,
}

impl fmt::Debug for FakeKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKms")
            .field("region", &self.region)
            .field("account_id", &self.account_id)
            .field("issued", &self.lock().0.len())
            .finish()
    }
}

/// `GenerateDataKey` request (the members the fake uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyRequest {
    /// Key id, key ARN, alias name or alias ARN.
    pub key_id: String,
    /// Data-key length in bytes (1–1024).
    #[serde(default)]
    pub number_of_bytes: Option<u32>,
    /// `AES_256` (32 bytes) or `AES_128` (16 bytes).
    #[serde(default)]
    pub key_spec: Option<String>,
    /// Encryption context.
    #[serde(default)]
    pub encryption_context: BTreeMap<String, String>,
}

/// `GenerateDataKey` response. `Debug` redacts the plaintext.
#[derive(Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    /// Base64 blob.
    pub ciphertext_blob: String,
    /// Base64 plaintext data key.
    pub plaintext: String,
    /// ARN of the key.
    pub key_id: String,
}

impl fmt::Debug for GenerateDataKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateDataKeyResponse")
            .field("ciphertext_blob", &self.ciphertext_blob)
            .field("plaintext", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: String,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    key_id: String,
    plaintext: String,
    encryption_algorithm: &'static str,
}

impl FakeKms {
    /// A fake serving `region` for `account_id` (used in key ARNs).
    pub fn new(region: impl Into<String>, account_id: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account_id: account_id.into(),
            keys: Mutex::new((HashMap::new(), std::collections::VecDeque::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyStore> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The encryption contexts of the data keys it remembers (at most the
    /// most recent ones), in no particular order.
    pub fn issued_contexts(&self) -> Vec<BTreeMap<String, String>> {
        self.lock().0.values().map(|k| k.context.clone()).collect()
    }

    /// The key ARN a key id / alias resolves to (stable for the same input).
    pub fn key_arn(&self, key_id: &str) -> String {
        if key_id.starts_with("arn:") && key_id.contains(":key/") {
            return key_id.to_string();
        }
        let d = Sha256::digest(key_id.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        format!(
            "arn:aws:kms:{}:{}:key/{}",
            self.region,
            self.account_id,
            uuid::Uuid::from_bytes(b)
        )
    }

    /// Issues a new data key.
    pub fn generate_data_key(
        &self,
        req: &GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        if req.key_id.trim().is_empty() {
            return Err(KmsError::Validation("KeyId is required".into()));
        }
        let len = match (req.number_of_bytes, req.key_spec.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(KmsError::Validation(
                    "specify either NumberOfBytes or KeySpec, not both".into(),
                ));
            }
            (Some(n), None) if (1..=1024).contains(&n) => n as usize,
            (Some(_), None) => {
                return Err(KmsError::Validation(
                    "NumberOfBytes must be between 1 and 1024".into(),
                ));
            }
            (None, Some("AES_256")) => 32,
            (None, Some("AES_128")) => 16,
            (None, Some(_)) => {
                return Err(KmsError::Validation(
                    "KeySpec must be AES_256 or AES_128".into(),
                ));
            }
            (None, None) => {
                return Err(KmsError::Validation(
                    "either NumberOfBytes or KeySpec is required".into(),
                ));
            }
        };
        let mut rng = rand::rng();
        let mut plaintext = vec![0u8; len];
        rng.fill_bytes(&mut plaintext);
        let mut blob = BLOB_MAGIC.to_vec();
        let mut r = [0u8; BLOB_RANDOM];
        rng.fill_bytes(&mut r);
        blob.extend_from_slice(&r);
        let key_arn = self.key_arn(&req.key_id);
        let resp = GenerateDataKeyResponse {
            ciphertext_blob: B64.encode(&blob),
            plaintext: B64.encode(&plaintext),
            key_id: key_arn.clone(),
        };
        let mut g = self.lock();
        let (map, order) = &mut *g;
        if map.len() >= MAX_KEYS
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        order.push_back(blob.clone());
        map.insert(
            blob,
            IssuedKey {
                plaintext,
                key_arn,
                context: req.encryption_context.clone(),
            },
        );
        Ok(resp)
    }

    /// `Decrypt`: the plaintext of a blob issued here, if `context` is exactly the
    /// one it was issued with. Returns (key ARN, plaintext).
    pub fn decrypt(
        &self,
        blob: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<(String, Vec<u8>), KmsError> {
        let g = self.lock();
        match g.0.get(blob) {
            Some(k) if &k.context == context => Ok((k.key_arn.clone(), k.plaintext.clone())),
            _ => Err(KmsError::InvalidCiphertext),
        }
    }

    /// What the agent side does: decrypt a blob that must have been issued for
    /// `session_id` (its `aws:ssm:SessionId` context entry). The target id in the
    /// context is not checked, since CloudShell's target id is not known.
    pub fn decrypt_for_session(&self, blob: &[u8], session_id: &str) -> Result<Vec<u8>, KmsError> {
        let g = self.lock();
        match g.0.get(blob) {
            Some(k)
                if k.context.get(CONTEXT_SESSION_ID).map(String::as_str) == Some(session_id) =>
            {
                Ok(k.plaintext.clone())
            }
            _ => Err(KmsError::InvalidCiphertext),
        }
    }

    /// Runs one awsJson1.1 operation (`X-Amz-Target` value such as
    /// `TrentService.GenerateDataKey`) on a request body; returns the JSON body of
    /// the response.
    pub fn dispatch(&self, target: &str, body: &[u8]) -> Result<Vec<u8>, KmsError> {
        let op = target.strip_prefix("TrentService.").unwrap_or(target);
        let bad_json =
            |e: serde_json::Error| KmsError::Validation(format!("invalid request body: {e}"));
        match op {
            "GenerateDataKey" => {
                let req: GenerateDataKeyRequest = serde_json::from_slice(body).map_err(bad_json)?;
                let resp = self.generate_data_key(&req)?;
                serde_json::to_vec(&resp).map_err(|e| KmsError::Validation(e.to_string()))
            }
            "Decrypt" => {
                let req: DecryptRequest = serde_json::from_slice(body).map_err(bad_json)?;
                let blob = B64
                    .decode(req.ciphertext_blob.as_bytes())
                    .map_err(|_| KmsError::InvalidCiphertext)?;
                let (key_id, plaintext) = self.decrypt(&blob, &req.encryption_context)?;
                serde_json::to_vec(&DecryptResponse {
                    key_id,
                    plaintext: B64.encode(plaintext),
                    encryption_algorithm: "SYMMETRIC_DEFAULT",
                })
                .map_err(|e| KmsError::Validation(e.to_string()))
            }
            other => Err(KmsError::UnknownOperation(other.chars().take(64).collect())),
        }
    }

    /// The awsJson1.1 error body for `e`.
    pub fn error_body(e: &KmsError) -> Vec<u8> {
        serde_json::json!({ "__type": e.error_type(), "message": e.to_string() })
            .to_string()
            .into_bytes()
    }
}

/// Largest KMS request body accepted.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
struct KmsState {
    shared: crate::AppState,
    kms: Arc<FakeKms>,
}

/// `POST /` with `X-Amz-Target: TrentService.*`, SigV4-signed for service `kms`
/// with one of the emulator's keys. Other `POST /` requests go to the REST side.
pub(crate) fn router(shared: crate::AppState, kms: Arc<FakeKms>) -> Router {
    Router::new()
        .route("/", post(http_handler))
        .with_state(KmsState { shared, kms })
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

async fn http_handler(State(st): State<KmsState>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if target.starts_with("AmazonSSM.") {
        return crate::ssm::handle(&st.shared, &target, req).await;
    }
    if !target.starts_with("TrentService.") {
        return crate::rest::handle(State(st.shared), req).await;
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let error = |status: StatusCode, kind: &str, message: String| {
        let body = serde_json::json!({ "__type": kind, "message": message })
            .to_string()
            .into_bytes();
        json_response(status, body, &request_id)
    };
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ValidationException",
            "request body too large".into(),
        );
    };
    let verified = st.shared.verify_signature(&parts, &bytes, "kms");
    if let Err(e) = verified {
        tracing::info!(operation = %target, status = 400, "KMS request refused: {e}");
        return error(StatusCode::BAD_REQUEST, e.code(), e.to_string());
    }
    match st.kms.dispatch(&target, &bytes) {
        Ok(body) => {
            tracing::info!(operation = %target, status = 200, request_id = %request_id, "KMS request");
            json_response(StatusCode::OK, body, &request_id)
        }
        Err(e) => {
            tracing::info!(operation = %target, status = 400, request_id = %request_id, "KMS request failed: {e}");
            json_response(
                StatusCode::BAD_REQUEST,
                FakeKms::error_body(&e),
                &request_id,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(session: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CONTEXT_SESSION_ID.to_string(), session.to_string()),
            (CONTEXT_TARGET_ID.to_string(), "env-1".to_string()),
        ])
    }

    #[test]
    fn generate_then_decrypt() {
        let kms = FakeKms::new("us-east-1", "123456789012");
        let body = serde_json::json!({"KeyId": "alias/x", "NumberOfBytes": 64, "EncryptionContext": ctx("s-1")});
        let out = kms
            .dispatch("TrentService.GenerateDataKey", body.to_string().as_bytes())
            .expect("generate");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let pt = B64
            .decode(v["Plaintext"].as_str().expect("pt"))
            .expect("b64");
        assert_eq!(pt.len(), 64);
        let blob = B64
            .decode(v["CiphertextBlob"].as_str().expect("blob"))
            .expect("b64");
        assert!(
            v["KeyId"]
                .as_str()
                .expect("id")
                .starts_with("arn:aws:kms:us-east-1:123456789012:key/")
        );
        assert_eq!(kms.decrypt_for_session(&blob, "s-1"), Ok(pt.clone()));
        assert_eq!(
            kms.decrypt_for_session(&blob, "s-2"),
            Err(KmsError::InvalidCiphertext)
        );
        assert_eq!(kms.decrypt(&blob, &ctx("s-1")).map(|r| r.1), Ok(pt.clone()));
        assert!(kms.decrypt(&blob, &BTreeMap::new()).is_err());
        let dec = kms
            .dispatch(
                "TrentService.Decrypt",
                serde_json::json!({"CiphertextBlob": v["CiphertextBlob"], "EncryptionContext": ctx("s-1")})
                    .to_string()
                    .as_bytes(),
            )
            .expect("decrypt");
        let d: serde_json::Value = serde_json::from_slice(&dec).expect("json");
        assert_eq!(d["Plaintext"], v["Plaintext"]);
    }

    #[test]
    fn bad_requests_are_errors() {
        let kms = FakeKms::new("us-east-1", "123456789012");
        assert!(matches!(
            kms.dispatch("TrentService.GenerateDataKey", b"{"),
            Err(KmsError::Validation(_))
        ));
        assert!(matches!(
            kms.dispatch("TrentService.GenerateDataKey", br#"{"KeyId":"k"}"#),
            Err(KmsError::Validation(_))
        ));
        assert!(matches!(
            kms.dispatch(
                "TrentService.GenerateDataKey",
                br#"{"KeyId":"k","NumberOfBytes":0}"#
            ),
            Err(KmsError::Validation(_))
        ));
        assert!(matches!(
            kms.dispatch("TrentService.Encrypt", b"{}"),
            Err(KmsError::UnknownOperation(_))
        ));
        assert_eq!(
            kms.dispatch("TrentService.Decrypt", br#"{"CiphertextBlob":"AAAA"}"#),
            Err(KmsError::InvalidCiphertext)
        );
        let body = FakeKms::error_body(&KmsError::InvalidCiphertext);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["__type"], "InvalidCiphertextException");
    }

    #[test]
    fn debug_redacts_plaintext() {
        let kms = FakeKms::new("us-east-1", "123456789012");
        let r = kms
            .generate_data_key(&GenerateDataKeyRequest {
                key_id: "k".into(),
                number_of_bytes: Some(64),
                key_spec: None,
                encryption_context: BTreeMap::new(),
            })
            .expect("key");
        assert!(!format!("{r:?}").contains(&r.plaintext));
    }
}
