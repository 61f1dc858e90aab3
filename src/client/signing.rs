//! SigV4 signing of CloudShell requests (service `cloudshell`).
//!
//! The signed headers are `content-type`, `host`, `x-amz-date` and, for temporary
//! credentials, `x-amz-security-token` — the same set botocore's `SigV4Auth` signs
//! for this request (checked by a golden test against `fixtures/sigv4/`).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::client::error::BoxError;

/// The SigV4 service name.
pub(crate) const SERVICE: &str = "cloudshell";

/// The content type of every request body.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A header produced by signing. `sensitive` marks the authorization header and
/// the security token so they are never logged.
#[derive(Clone)]
pub(crate) struct SignedHeader {
    pub name: &'static str,
    pub value: String,
    pub sensitive: bool,
}

impl std::fmt::Debug for SignedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.sensitive {
            "***"
        } else {
            self.value.as_str()
        };
        write!(f, "{}: {}", self.name, value)
    }
}

/// Signs `POST url` with a JSON body at `time`; returns the headers to add
/// (`x-amz-date`, `x-amz-security-token` when present, `authorization`).
pub(crate) fn sign_request(
    url: &str,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<SignedHeader>, BoxError> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", CONTENT_TYPE)];
    let request =
        SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| SignedHeader {
            name: h.name(),
            value: h.value().to_owned(),
            sensitive: h.sensitive() || h.name().eq_ignore_ascii_case("authorization"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_with_scope_and_redacts_in_debug() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "SECRETKEY",
            Some("TOKEN".into()),
            None,
            "test",
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_164_645);
        let headers = sign_request(
            "https://cloudshell.us-east-1.amazonaws.com/describeEnvironments",
            b"{}",
            &creds,
            "us-east-1",
            t,
        )
        .unwrap();
        let auth = headers.iter().find(|h| h.name == "authorization").unwrap();
        assert!(auth.value.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/cloudshell/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
        ), "{}", auth.value);
        let dbg = format!("{headers:?}");
        assert!(
            !dbg.contains("TOKEN") && !dbg.contains("Signature"),
            "{dbg}"
        );
        assert!(dbg.contains("20240102T030405Z"));
    }
}
