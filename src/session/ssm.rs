//! Systems Manager `ResumeSession`: a fresh token and stream URL for a session
//! whose connection dropped, as the official plugin asks for before it dials
//! again; and `TerminateSession`, with which the plugin ends a session whose
//! agent ignores the `TerminateSession` flag. Each one awsJson1.1 POST
//! (`X-Amz-Target: AmazonSSM.ResumeSession`, `AmazonSSM.TerminateSession`).

use std::future::Future;
use std::pin::Pin;

use aws_credential_types::provider::SharedCredentialsProvider;
use serde::{Deserialize, Serialize};

use super::aws_json::{AwsJson, from_call_error};
use super::{BoxError, Reconnector, SessionTarget};
use crate::Secret;

/// Errors of an SSM call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SsmError {
    /// Credentials could not be loaded.
    #[error("cannot load AWS credentials for SSM")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The request could not be signed.
    #[error("cannot sign the SSM request")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request did not get a response.
    #[error("SSM request to {endpoint} failed")]
    Dispatch {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// SSM answered with an error.
    #[error("SSM returned {code} (HTTP {status}): {message}")]
    Service {
        /// Error code, e.g. `DoesNotExistException`.
        code: String,
        /// Error message.
        message: String,
        /// HTTP status.
        status: u16,
    },
    /// The response could not be understood.
    #[error("unexpected SSM response: {0}")]
    BadResponse(String),
}

from_call_error!(SsmError);

/// The default Systems Manager endpoint of a region.
pub fn default_ssm_endpoint(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("https://ssm.{region}.amazonaws.com.cn")
    } else {
        format!("https://ssm.{region}.amazonaws.com")
    }
}

/// A minimal Systems Manager client: `ResumeSession` and `TerminateSession`. As a
/// [`Reconnector`] it is a [`SessionOptions::resumer`](super::SessionOptions::resumer).
#[derive(Clone, Debug)]
pub struct SsmClient {
    inner: AwsJson,
}

/// The input of `ResumeSession` and of `TerminateSession`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdInput<'a> {
    session_id: &'a str,
}

/// The output of `TerminateSession` (its `SessionId` is not needed).
#[derive(Deserialize)]
struct TerminateSessionOutput {}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResumeSessionOutput {
    session_id: Option<String>,
    token_value: Option<Secret>,
    stream_url: Option<String>,
}

impl SsmClient {
    /// A client for `region` at `endpoint` (see [`default_ssm_endpoint`]).
    pub fn new(
        region: impl Into<String>,
        endpoint: impl Into<String>,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            inner: AwsJson::new("ssm", region.into(), endpoint.into(), credentials),
        }
    }

    /// A client that signs with the credentials (and region) of a CloudShell
    /// [`Client`](crate::Client) and sends to `endpoint`.
    pub fn for_client(client: &crate::Client, endpoint: impl Into<String>) -> Self {
        Self {
            inner: AwsJson::for_client("ssm", client, endpoint.into()),
        }
    }

    /// Calls `ResumeSession`: the session's new token and stream URL.
    pub async fn resume_session(&self, session_id: &str) -> Result<SessionTarget, SsmError> {
        let out = self
            .inner
            .call_json("AmazonSSM.ResumeSession", &SessionIdInput { session_id })
            .await
            .map_err(|e| SsmError::from_call(e, &self.inner.endpoint))?;
        resumed_target(out, session_id)
    }

    /// Calls `TerminateSession`: the service ends the session (its data
    /// channel gets `channel_closed`) and the agent stops what it runs for it.
    pub async fn terminate_session(&self, session_id: &str) -> Result<(), SsmError> {
        let _: TerminateSessionOutput = self
            .inner
            .call_json("AmazonSSM.TerminateSession", &SessionIdInput { session_id })
            .await
            .map_err(|e| SsmError::from_call(e, &self.inner.endpoint))?;
        Ok(())
    }
}

/// The session target of a `ResumeSession` response for `session_id`.
fn resumed_target(out: ResumeSessionOutput, session_id: &str) -> Result<SessionTarget, SsmError> {
    let (Some(token), Some(stream_url)) = (out.token_value, out.stream_url) else {
        return Err(SsmError::BadResponse(
            "TokenValue or StreamUrl is missing".into(),
        ));
    };
    if token.expose().is_empty() || stream_url.is_empty() {
        return Err(SsmError::BadResponse(
            "TokenValue or StreamUrl is empty".into(),
        ));
    }
    Ok(SessionTarget {
        stream_url,
        token,
        session_id: out.session_id.unwrap_or_else(|| session_id.to_owned()),
    })
}

impl Reconnector for SsmClient {
    fn reconnect<'a>(
        &'a self,
        previous_session_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SessionTarget, BoxError>> + Send + 'a>> {
        Box::pin(async move {
            self.resume_session(previous_session_id)
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::session::aws_json::decode_response;

    /// A response as `resume_session` reads it.
    fn parse_resume_response(
        status: u16,
        body: &[u8],
        session_id: &str,
    ) -> Result<SessionTarget, SsmError> {
        let c = SsmClient::new(
            "eu-west-1",
            default_ssm_endpoint("eu-west-1"),
            SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "secretkey",
                None,
                None,
                "test",
            )),
        );
        decode_response(status, body)
            .map_err(|e| SsmError::from_call(e, &c.inner.endpoint))
            .and_then(|out| resumed_target(out, session_id))
    }

    #[test]
    fn resume_responses() {
        let t = parse_resume_response(
            200,
            br#"{"SessionId":"s-1","TokenValue":"tok-secret","StreamUrl":"wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe"}"#,
            "s-1",
        )
        .unwrap();
        assert_eq!(t.session_id, "s-1");
        assert_eq!(t.token.expose(), "tok-secret");
        assert!(t.stream_url.starts_with("wss://ssmmessages.eu-west-1"));
        assert!(!format!("{t:?}").contains("tok-secret"));

        let e = parse_resume_response(
            400,
            br#"{"__type":"com.amazonaws.ssm#DoesNotExistException","message":"no such session"}"#,
            "s-1",
        )
        .unwrap_err();
        assert!(
            matches!(&e, SsmError::Service { code, status: 400, .. } if code == "DoesNotExistException"),
            "{e:?}"
        );
        let e = parse_resume_response(200, br#"{"SessionId":"s-1","StreamUrl":"wss://x"}"#, "s-1")
            .unwrap_err();
        assert!(matches!(e, SsmError::BadResponse(_)), "{e:?}");
        let e = parse_resume_response(200, br#"{"TokenValue":"tok-secret""#, "s-1").unwrap_err();
        assert!(!e.to_string().contains("tok-secret"), "{e}");
        let e = parse_resume_response(503, b"<html>", "s-1").unwrap_err();
        assert!(matches!(&e, SsmError::Service { code, .. } if code == "UnknownError"));
    }

    #[test]
    fn default_endpoints() {
        assert_eq!(
            default_ssm_endpoint("eu-west-1"),
            "https://ssm.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            default_ssm_endpoint("cn-north-1"),
            "https://ssm.cn-north-1.amazonaws.com.cn"
        );
    }
}
