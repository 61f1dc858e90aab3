//! KMS `GenerateDataKey` for encrypted sessions.
//!
//! When the agent asks for KMS encryption, the client generates a 64-byte data
//! key under the agent's key id and hands the ciphertext blob back in the
//! handshake. This is one awsJson1.1 POST
//! (`X-Amz-Target: TrentService.GenerateDataKey`) signed with SigV4, so no KMS
//! SDK is needed.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
#[cfg(test)]
use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::aws_json::{AwsJson, from_call_error};

/// Number of key bytes Session Manager asks for (two AES-256 keys).
pub const DATA_KEY_BYTES: usize = 64;

/// What the agent asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRequest {
    /// The KMS key id or ARN, exactly as the agent sent it.
    pub key_id: String,
    /// The encryption context (`aws:ssm:SessionId`, `aws:ssm:TargetId`, ...).
    pub encryption_context: BTreeMap<String, String>,
}

/// A generated data key. The plaintext is redacted in `Debug`.
#[derive(Clone)]
pub struct DataKey {
    /// The 64 plaintext key bytes.
    pub plaintext: Vec<u8>,
    /// The encrypted key, returned to the agent.
    pub ciphertext_blob: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"***")
            .field("ciphertext_blob_len", &self.ciphertext_blob.len())
            .finish()
    }
}

/// Errors of a KMS call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// Credentials could not be loaded.
    #[error("cannot load AWS credentials for KMS")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The request could not be signed.
    #[error("cannot sign the KMS request")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request did not get a response.
    #[error("KMS request to {endpoint} failed")]
    Dispatch {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// KMS answered with an error.
    #[error("KMS returned {code} (HTTP {status}): {message}")]
    Service {
        /// Error code, e.g. `AccessDeniedException`.
        code: String,
        /// Error message.
        message: String,
        /// HTTP status.
        status: u16,
    },
    /// The response could not be understood.
    #[error("unexpected KMS response: {0}")]
    BadResponse(String),
    /// The AWS configuration (region, profile, credentials) could not be loaded.
    #[error("cannot load the AWS configuration for KMS")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No data-key provider was configured for an encrypted session.
    #[error("the session asks for KMS encryption but no KMS client is configured")]
    NotConfigured,
}

from_call_error!(KmsError);

/// Something that can generate a data key (KMS, or a test double).
pub trait DataKeyProvider: Send + Sync + 'static {
    /// Generates a 64-byte data key.
    fn generate_data_key(
        &self,
        request: DataKeyRequest,
    ) -> Pin<Box<dyn Future<Output = Result<DataKey, KmsError>> + Send + '_>>;
}

/// A minimal KMS client: `GenerateDataKey` only.
#[derive(Clone, Debug)]
pub struct KmsClient {
    inner: AwsJson,
}

/// The default KMS endpoint of a region.
pub fn default_kms_endpoint(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("https://kms.{region}.amazonaws.com.cn")
    } else {
        format!("https://kms.{region}.amazonaws.com")
    }
}

/// The KMS endpoint: `AWS_ENDPOINT_URL_KMS`, then `AWS_ENDPOINT_URL`, then the
/// regional default.
pub fn kms_endpoint_from_env(region: &str) -> String {
    ["AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| default_kms_endpoint(region))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyInput<'a> {
    key_id: &'a str,
    number_of_bytes: usize,
    encryption_context: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyOutput {
    ciphertext_blob: Option<String>,
    plaintext: Option<String>,
}

impl KmsClient {
    /// A client for `region` at `endpoint` (see [`kms_endpoint_from_env`]).
    pub fn new(
        region: impl Into<String>,
        endpoint: impl Into<String>,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            inner: AwsJson::new("kms", region.into(), endpoint.into(), credentials),
        }
    }

    /// A client that signs with the credentials (and region) of a CloudShell
    /// [`Client`](crate::Client) and sends to `endpoint`.
    pub fn for_client(client: &crate::Client, endpoint: impl Into<String>) -> Self {
        Self {
            inner: AwsJson::for_client("kms", client, endpoint.into()),
        }
    }

    fn input(request: &DataKeyRequest) -> GenerateDataKeyInput<'_> {
        GenerateDataKeyInput {
            key_id: &request.key_id,
            number_of_bytes: DATA_KEY_BYTES,
            encryption_context: &request.encryption_context,
        }
    }

    /// Builds the signed HTTP request (exposed for tests).
    #[cfg(test)]
    pub(crate) async fn build_request(
        &self,
        request: &DataKeyRequest,
        now: SystemTime,
    ) -> Result<http::Request<Vec<u8>>, KmsError> {
        let body = serde_json::to_vec(&Self::input(request))
            .map_err(|e| KmsError::BadResponse(e.to_string()))?;
        self.inner
            .build_request(GENERATE_DATA_KEY, body, now)
            .await
            .map_err(|e| KmsError::from_call(e, &self.inner.endpoint))
    }

    /// Calls `GenerateDataKey` for 64 bytes.
    pub async fn generate_data_key(&self, request: &DataKeyRequest) -> Result<DataKey, KmsError> {
        let out = self
            .inner
            .call_json(GENERATE_DATA_KEY, &Self::input(request))
            .await
            .map_err(|e| KmsError::from_call(e, &self.inner.endpoint))?;
        data_key(out)
    }
}

const GENERATE_DATA_KEY: &str = "TrentService.GenerateDataKey";

/// The data key of a `GenerateDataKey` response.
fn data_key(out: GenerateDataKeyOutput) -> Result<DataKey, KmsError> {
    let decode = |name: &str, v: Option<String>| -> Result<Vec<u8>, KmsError> {
        let v = v.ok_or_else(|| KmsError::BadResponse(format!("{name} is missing")))?;
        B64.decode(v.as_bytes())
            .map_err(|_| KmsError::BadResponse(format!("{name} is not base64")))
    };
    let plaintext = decode("Plaintext", out.plaintext)?;
    let ciphertext_blob = decode("CiphertextBlob", out.ciphertext_blob)?;
    if plaintext.len() != DATA_KEY_BYTES {
        return Err(KmsError::BadResponse(format!(
            "Plaintext has {} bytes, expected {DATA_KEY_BYTES}",
            plaintext.len()
        )));
    }
    Ok(DataKey {
        plaintext,
        ciphertext_blob,
    })
}

impl DataKeyProvider for KmsClient {
    fn generate_data_key(
        &self,
        request: DataKeyRequest,
    ) -> Pin<Box<dyn Future<Output = Result<DataKey, KmsError>> + Send + '_>> {
        Box::pin(async move { KmsClient::generate_data_key(self, &request).await })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use std::time::Duration;

    fn client() -> KmsClient {
        KmsClient::new(
            "us-east-1",
            "https://kms.us-east-1.amazonaws.com",
            SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secretkey",
                None,
                None,
                "test",
            )),
        )
    }

    #[tokio::test]
    async fn request_is_signed_awsjson11() {
        let mut ctx = BTreeMap::new();
        ctx.insert("aws:ssm:SessionId".to_string(), "s-1".to_string());
        ctx.insert("aws:ssm:TargetId".to_string(), "env-1".to_string());
        let req = client()
            .build_request(
                &DataKeyRequest {
                    key_id: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
                    encryption_context: ctx,
                },
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            )
            .await
            .unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(
            req.uri().to_string(),
            "https://kms.us-east-1.amazonaws.com/"
        );
        let h = req.headers();
        assert_eq!(h["x-amz-target"], "TrentService.GenerateDataKey");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/kms/aws4_request"
            ),
            "{auth}"
        );
        assert!(auth.contains("x-amz-target"), "{auth}");
        assert!(!auth.contains("secretkey"));
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "KeyId": "arn:aws:kms:us-east-1:111122223333:key/k",
                "NumberOfBytes": 64,
                "EncryptionContext": {"aws:ssm:SessionId": "s-1", "aws:ssm:TargetId": "env-1"}
            })
        );
    }

    use crate::session::aws_json::decode_response;

    /// A response as `generate_data_key` reads it.
    fn parse_response(status: u16, body: &[u8]) -> Result<DataKey, KmsError> {
        let c = client();
        decode_response(status, body)
            .map_err(|e| KmsError::from_call(e, &c.inner.endpoint))
            .and_then(data_key)
    }

    #[test]
    fn parses_success_and_errors() {
        let body = serde_json::json!({
            "CiphertextBlob": B64.encode([9u8; 20]),
            "Plaintext": B64.encode([7u8; 64]),
            "KeyId": "k"
        });
        let k = parse_response(200, body.to_string().as_bytes()).unwrap();
        assert_eq!(k.plaintext, vec![7u8; 64]);
        assert_eq!(k.ciphertext_blob, vec![9u8; 20]);
        assert!(!format!("{k:?}").contains('7'));

        let e = parse_response(
            400,
            br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"no key"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "KMS returned NotFoundException (HTTP 400): no key"
        );
        assert!(matches!(
            parse_response(500, b"<html>"),
            Err(KmsError::Service { status: 500, .. })
        ));
        let short =
            serde_json::json!({"CiphertextBlob": "AA==", "Plaintext": B64.encode([1u8; 32])});
        assert!(matches!(
            parse_response(200, short.to_string().as_bytes()),
            Err(KmsError::BadResponse(_))
        ));
        assert!(parse_response(200, b"not json").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            default_kms_endpoint("eu-west-1"),
            "https://kms.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            default_kms_endpoint("cn-north-1"),
            "https://kms.cn-north-1.amazonaws.com.cn"
        );
    }
}
