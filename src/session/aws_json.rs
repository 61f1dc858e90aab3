//! Signed awsJson1.1 calls (KMS `GenerateDataKey`, SSM `ResumeSession`): one
//! POST each with an `X-Amz-Target` header, signed with SigV4, so no service
//! SDK is needed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where a client gets its credentials.
#[derive(Clone)]
pub(crate) enum CredentialSource {
    Provider(SharedCredentialsProvider),
    /// A CloudShell client's cached credentials (same identity, same cache).
    Client(crate::Client),
}

/// Why a call failed. Each client maps it onto its own public error type.
pub(crate) enum CallError {
    /// Credentials could not be loaded.
    Credentials(CredentialsError),
    /// The request could not be built or signed.
    Signing(Box<dyn std::error::Error + Send + Sync>),
    /// The request did not get a response.
    Dispatch(reqwest::Error),
    /// The service answered with an error status.
    Service {
        code: String,
        message: String,
        status: u16,
    },
    /// The request could not be encoded or the response decoded (serde's
    /// message: it names a field or a position, never a value).
    BadResponse(String),
}

/// Implements `from_call(CallError, endpoint)` for a client's public error
/// enum, whose `Credentials`, `Signing`, `Dispatch`, `Service` and
/// `BadResponse` variants mirror [`CallError`]'s.
macro_rules! from_call_error {
    ($error:ident) => {
        impl $error {
            fn from_call(e: super::aws_json::CallError, endpoint: &str) -> Self {
                use super::aws_json::CallError;
                match e {
                    CallError::Credentials(e) => Self::Credentials(e),
                    CallError::Signing(e) => Self::Signing(e),
                    CallError::Dispatch(source) => Self::Dispatch {
                        endpoint: endpoint.to_owned(),
                        source,
                    },
                    CallError::Service {
                        code,
                        message,
                        status,
                    } => Self::Service {
                        code,
                        message,
                        status,
                    },
                    CallError::BadResponse(m) => Self::BadResponse(m),
                }
            }
        }
    };
}
pub(crate) use from_call_error;

/// One service endpoint, signed for one SigV4 service name.
#[derive(Clone)]
pub(crate) struct AwsJson {
    /// The HTTP client, or why it could not be made (an unreadable
    /// `AWS_CA_BUNDLE`), reported at the first call.
    http: Result<reqwest::Client, Arc<str>>,
    pub(crate) endpoint: String,
    pub(crate) region: String,
    service: &'static str,
    credentials: CredentialSource,
}

impl std::fmt::Debug for AwsJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsJson")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsJson {
    /// Its own HTTP client (10 s timeout; trusted roots chosen as for a
    /// CloudShell client: none for `http://`, else the compiled-in ones plus
    /// `AWS_CA_BUNDLE`) and credentials from `credentials`.
    pub(crate) fn new(
        service: &'static str,
        region: String,
        endpoint: String,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        super::ensure_crypto_provider();
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        let http = crate::client::tls::configure(builder, &endpoint)
            .and_then(|b| b.build().map_err(|e| crate::error_chain(&e)))
            .map_err(Arc::from);
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region,
            service,
            credentials: CredentialSource::Provider(credentials),
        }
    }

    /// The HTTP client, region and credentials of a CloudShell client.
    pub(crate) fn for_client(
        service: &'static str,
        client: &crate::Client,
        endpoint: String,
    ) -> Self {
        Self {
            http: Ok(client.inner.http.clone()),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: client.region().to_string(),
            service,
            credentials: CredentialSource::Client(client.clone()),
        }
    }

    /// The signed request for `target` with `body`.
    pub(crate) async fn build_request(
        &self,
        target: &str,
        body: Vec<u8>,
        now: SystemTime,
    ) -> Result<http::Request<Vec<u8>>, CallError> {
        let url = format!("{}/", self.endpoint);
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(body)
            .map_err(|e| CallError::Signing(Box::new(e)))?;
        let creds = match &self.credentials {
            CredentialSource::Provider(p) => p.provide_credentials().await,
            CredentialSource::Client(c) => c.inner.credentials.get().await,
        }
        .map_err(CallError::Credentials)?;
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::Signing(Box::new(e)))?
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(req.body()),
        )
        .map_err(|e| CallError::Signing(Box::new(e)))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| CallError::Signing(Box::new(e)))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut req);
        Ok(req)
    }

    /// Calls `target` with `input`; the decoded response of a 2xx answer,
    /// the service's error code and message otherwise.
    pub(crate) async fn call_json<O: DeserializeOwned>(
        &self,
        target: &str,
        input: &impl Serialize,
    ) -> Result<O, CallError> {
        let body = serde_json::to_vec(input).map_err(|e| CallError::BadResponse(e.to_string()))?;
        let (status, body) = self.call(target, body).await?;
        decode_response(status, &body)
    }

    /// Sends `target` with `body`; the HTTP status and the response body.
    async fn call(&self, target: &str, body: Vec<u8>) -> Result<(u16, bytes::Bytes), CallError> {
        let req = self.build_request(target, body, SystemTime::now()).await?;
        let (parts, body) = req.into_parts();
        let http = self
            .http
            .as_ref()
            .map_err(|e| CallError::Signing(e.to_string().into()))?;
        let resp = http
            .post(parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(CallError::Dispatch)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(CallError::Dispatch)?;
        Ok((status, bytes))
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// A response: decoded when the status is 2xx, else the service's error.
pub(crate) fn decode_response<O: DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<O, CallError> {
    if !(200..300).contains(&status) {
        let (code, message) = error_code_and_message(body);
        return Err(CallError::Service {
            code,
            message,
            status,
        });
    }
    serde_json::from_slice(body).map_err(|e| CallError::BadResponse(e.to_string()))
}

/// The error code (`__type` without its namespace) and message of an error
/// response body; `UnknownError` when the body says nothing usable.
fn error_code_and_message(body: &[u8]) -> (String, String) {
    let err: ErrorBody = serde_json::from_slice(body).unwrap_or(ErrorBody {
        kind: None,
        message: None,
    });
    let code = err
        .kind
        .map(|k| k.rsplit('#').next().unwrap_or_default().to_string())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "UnknownError".into());
    (code, err.message.unwrap_or_default())
}
