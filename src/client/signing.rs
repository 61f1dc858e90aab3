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
#[allow(clippy::unwrap_used)]
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

    /// Golden test: the same request signed by botocore's `SigV4Auth`
    /// (`fixtures/sigv4/generate.py`) gives the identical headers.
    #[test]
    fn matches_botocore_golden_signature() {
        let golden: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/sigv4/describe_environments.json"
        ))
        .unwrap();
        let s = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        let c = &golden["credentials"];
        let creds = Credentials::new(
            s(&c["access_key_id"]),
            s(&c["secret_access_key"]),
            Some(s(&c["session_token"])),
            None,
            "golden",
        );
        assert_eq!(golden["request"]["headers"]["Content-Type"], CONTENT_TYPE);
        assert_eq!(golden["service"], SERVICE);
        assert_eq!(golden["request"]["method"], "POST");
        let time: SystemTime = {
            // "2024-01-02T03:04:05Z"
            let t = s(&golden["time"]);
            let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
            let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
            let (h, mi, se) = (n(11..13), n(14..16), n(17..19));
            // Days from civil date (proleptic Gregorian), Howard Hinnant's algorithm.
            let y2 = if mo <= 2 { y - 1 } else { y };
            let era = y2.div_euclid(400);
            let yoe = y2 - era * 400;
            let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            let secs = days * 86_400 + h * 3600 + mi * 60 + se;
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
        };
        let headers = sign_request(
            &s(&golden["request"]["url"]),
            s(&golden["request"]["body"]).as_bytes(),
            &creds,
            &s(&golden["region"]),
            time,
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.clone())
                .unwrap_or_else(|| panic!("{name} not produced"))
        };
        let expected = &golden["signed_headers"];
        assert_eq!(get("x-amz-date"), s(&expected["X-Amz-Date"]));
        assert_eq!(
            get("x-amz-security-token"),
            s(&expected["X-Amz-Security-Token"])
        );
        assert_eq!(get("authorization"), s(&expected["Authorization"]));
        assert_eq!(headers.len(), 3, "{headers:?}");
    }
}
