//! An independent AWS Signature Version 4 implementation (verifier and signer),
//! written from the AWS specification with `hmac` + `sha2` so that it checks
//! clients instead of agreeing with them by construction.
//!
//! Canonical request:
//! ```text
//! METHOD \n CANONICAL_URI \n CANONICAL_QUERY \n CANONICAL_HEADERS \n \n SIGNED_HEADERS \n HEX(SHA256(body))
//! ```
//! String to sign: `AWS4-HMAC-SHA256 \n X-Amz-Date \n date/region/service/aws4_request \n HEX(SHA256(canonical request))`.
//! Signing key: `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.

use std::fmt;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::AcceptedCredentials;
use crate::time::{format_amz_date, parse_amz_date};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature was refused. Each variant maps to the error code a
/// real AWS front door uses; messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    Missing,
    /// An `Authorization` header that cannot be parsed.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not one of the accepted keys.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// Signature mismatch, wrong scope, or a date too far from now.
    #[error("{0}")]
    Invalid(String),
}

impl AuthError {
    /// The AWS error code for this failure (all are HTTP 403).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::Invalid(_) => "InvalidSignatureException",
        }
    }
}

/// Parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id from the credential scope.
    pub access_key_id: String,
    /// `YYYYMMDD` from the credential scope.
    pub date: String,
    /// Region from the credential scope.
    pub region: String,
    /// Service from the credential scope.
    pub service: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("access_key_id", &self.access_key_id)
            .field("date", &self.date)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// Parse an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        let alg = value.split_whitespace().next().unwrap_or("");
        return Err(AuthError::Incomplete(format!(
            "Unsupported authorization algorithm '{alg}'; expected {ALGORITHM}."
        )));
    };
    if !rest.starts_with(' ') {
        return Err(AuthError::Incomplete(format!(
            "Authorization header must start with '{ALGORITHM} '."
        )));
    }
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header parameter '{part}' is not a key=value pair."
            )));
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    if credential.is_none() {
        missing.push("Authorization header requires 'Credential' parameter.");
    }
    if signed.is_none() {
        missing.push("Authorization header requires 'SignedHeaders' parameter.");
    }
    if signature.is_none() {
        missing.push("Authorization header requires 'Signature' parameter.");
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(AuthError::Incomplete(missing.join(" ")));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope.iter().any(|s| s.is_empty()) {
        return Err(AuthError::Incomplete(
            "Credential must have the form <access key id>/<date>/<region>/<service>/aws4_request."
                .into(),
        ));
    }
    if scope[4] != "aws4_request" {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            scope[4]
        )));
    }
    let signed_headers: Vec<String> = signed
        .split(';')
        .filter(|h| !h.is_empty())
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if signed_headers.is_empty() {
        return Err(AuthError::Incomplete(
            "Authorization header requires a non-empty 'SignedHeaders' parameter.".into(),
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Incomplete(
            "Signature must be 64 hexadecimal characters.".into(),
        ));
    }
    Ok(Authorization {
        access_key_id: scope[0].to_owned(),
        date: scope[1].to_owned(),
        region: scope[2].to_owned(),
        service: scope[3].to_owned(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method (`POST`).
    pub method: &'a str,
    /// Path as sent on the wire (already percent-encoded once).
    pub raw_path: &'a str,
    /// Query string as sent on the wire, without `?` (may be empty).
    pub raw_query: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a [u8],
}

/// What the verifier checks against.
#[derive(Debug, Clone, Copy)]
pub struct VerifyParams<'a> {
    /// Expected region in the credential scope.
    pub region: &'a str,
    /// Expected service in the credential scope (`cloudshell`).
    pub service: &'a str,
    /// Current time for the clock-skew check.
    pub now: SystemTime,
    /// Maximum allowed distance between `X-Amz-Date` and `now`.
    pub max_skew: Duration,
    /// Accepted keys.
    pub credentials: &'a [AcceptedCredentials],
}

/// Verify a request. Returns the access key id that signed it.
pub fn verify(req: &RequestParts<'_>, params: &VerifyParams<'_>) -> Result<String, AuthError> {
    let Some(auth) = req.headers.get("authorization") else {
        return Err(AuthError::Missing);
    };
    let auth = auth
        .to_str()
        .map_err(|_| AuthError::Incomplete("Authorization header is not valid ASCII.".into()))?;
    let auth = parse_authorization(auth)?;

    let creds = params
        .credentials
        .iter()
        .find(|c| c.access_key_id == auth.access_key_id)
        .ok_or(AuthError::UnknownKey)?;

    if auth.service != params.service {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped to correct service: '{}', not '{}'.",
            params.service, auth.service
        )));
    }
    if auth.region != params.region {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped to a valid region, not '{}'. This endpoint serves '{}'.",
            auth.region, params.region
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(AuthError::Invalid(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    for name in &auth.signed_headers {
        if !req.headers.contains_key(name.as_str()) {
            return Err(AuthError::Invalid(format!(
                "Signed header '{name}' is not present in the request."
            )));
        }
    }

    let amz_date = header_str(req.headers, "x-amz-date").ok_or_else(|| {
        AuthError::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        AuthError::Invalid(format!(
            "X-Amz-Date '{amz_date}' is not in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z'."
        ))
    })?;
    if !amz_date.starts_with(auth.date.as_str()) || auth.date.len() != 8 {
        return Err(AuthError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
            auth.date,
            &amz_date[..8],
            amz_date
        )));
    }
    let skew_minutes = params.max_skew.as_secs() / 60;
    if let Some(earliest) = params.now.checked_sub(params.max_skew)
        && signed_at < earliest
    {
        return Err(AuthError::Invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - {skew_minutes} min.)",
            format_amz_date(earliest),
            format_amz_date(params.now)
        )));
    }
    let latest = params.now + params.max_skew;
    if signed_at > latest {
        return Err(AuthError::Invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + {skew_minutes} min.)",
            format_amz_date(latest),
            format_amz_date(params.now)
        )));
    }

    let body_hash = hex::encode(Sha256::digest(req.body));
    let payload_hash = match header_str(req.headers, "x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_owned(),
        Some(claimed) => {
            if !claimed.eq_ignore_ascii_case(&body_hash) {
                return Err(AuthError::Invalid(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .into(),
                ));
            }
            claimed.to_ascii_lowercase()
        }
        None => body_hash,
    };

    let header_pairs: Vec<(String, String)> = auth
        .signed_headers
        .iter()
        .map(|name| (name.clone(), joined_header_value(req.headers, name)))
        .collect();
    let creq = canonical_request(
        req.method,
        req.raw_path,
        req.raw_query,
        &header_pairs,
        &payload_hash,
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(
        &creds.secret_access_key,
        &auth.date,
        &auth.region,
        &auth.service,
    );
    let mut mac = new_mac(&key);
    mac.update(sts.as_bytes());
    let provided = hex::decode(&auth.signature)
        .map_err(|_| AuthError::Incomplete("Signature must be hexadecimal.".into()))?;
    if mac.verify_slice(&provided).is_err() {
        return Err(AuthError::Invalid(format!(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n\
             The Canonical String for this request should have been\n'{creq}'\n\n\
             The String-to-Sign should have been\n'{sts}'\n"
        )));
    }
    Ok(auth.access_key_id)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// All values of one header, each trimmed with inner runs of spaces collapsed,
/// joined with `,`.
fn joined_header_value(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(",")
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.trim().chars() {
        if c == ' ' || c == '\t' {
            if !prev_space {
                out.push(' ');
            }
            prev_space = true;
        } else {
            out.push(c);
            prev_space = false;
        }
    }
    out
}

/// Percent-encode per SigV4: everything but `A-Z a-z 0-9 - _ . ~` (and `/` if
/// `keep_slash`) becomes `%XX` with upper-case hex.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn percent_decode(input: &str) -> Vec<u8> {
    let b = input.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Canonical URI for non-S3 services: dot segments removed, then the
/// (already once-encoded) path encoded again.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".into();
    }
    let mut segments: Vec<&str> = Vec::new();
    let trailing = raw_path.ends_with('/') && raw_path.len() > 1;
    for seg in raw_path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = String::from("/");
    path.push_str(&segments.join("/"));
    if trailing && !path.ends_with('/') {
        path.push('/');
    }
    uri_encode(path.as_bytes(), true)
}

/// Canonical query string: parameters decoded, re-encoded strictly, sorted by
/// name then value.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Build the canonical request from already-selected signed headers
/// (lower-case names, values as they appear on the wire).
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    signed_headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let mut headers: Vec<(String, String)> = signed_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let names = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{names}\n{payload_hash}",
        canonical_uri(raw_path),
        canonical_query(raw_query)
    )
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an
    // empty-key MAC rather than panic if that ever changed.
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => <HmacSha256 as KeyInit>::new(&Default::default()),
    }
}

/// `HMAC-SHA256(key, data)`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    let out = mac.finalize().into_bytes();
    let mut arr = [0u8; 32];
    arr.copy_from_slice(&out);
    arr
}

/// Derive the SigV4 signing key.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Sign a request (the signing half, for tests and tools). `headers` must hold
/// every header to sign, including `host`; `x-amz-date` is added. Returns the
/// `Authorization` header value.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &mut Vec<(String, String)>,
    body: &[u8],
    credentials: &AcceptedCredentials,
    region: &str,
    service: &str,
    at: SystemTime,
) -> String {
    let amz_date = format_amz_date(at);
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-date"));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    let payload_hash = hex::encode(Sha256::digest(body));
    let creq = canonical_request(method, raw_path, raw_query, headers, &payload_hash);
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let key = signing_key(&credentials.secret_access_key, date, region, service);
    let signature = hex::encode(hmac_sha256(&key, sts.as_bytes()));
    let mut names: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        credentials.access_key_id,
        names.join(";")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn example_creds() -> AcceptedCredentials {
        AcceptedCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    }

    fn vanilla_time() -> SystemTime {
        parse_amz_date("20150830T123600Z").unwrap()
    }

    /// The AWS SigV4 test suite's "get-vanilla" case.
    const VANILLA_SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    #[test]
    fn get_vanilla_canonical_request_and_signature() {
        let headers = vec![
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let creq = canonical_request("GET", "/", "", &headers, &hex::encode(Sha256::digest(b"")));
        assert_eq!(
            creq,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &creq,
        );
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let key = signing_key(
            &example_creds().secret_access_key,
            "20150830",
            "us-east-1",
            "service",
        );
        assert_eq!(hex::encode(hmac_sha256(&key, sts.as_bytes())), VANILLA_SIG);

        let mut hs = vec![("host".to_string(), "example.amazonaws.com".to_string())];
        let auth = sign(
            "GET",
            "/",
            "",
            &mut hs,
            b"",
            &example_creds(),
            "us-east-1",
            "service",
            vanilla_time(),
        );
        assert_eq!(
            auth,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"
            )
        );
    }

    fn header_map(pairs: &[(String, String)], auth: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map.insert("authorization", HeaderValue::from_str(auth).unwrap());
        map
    }

    fn params<'a>(creds: &'a [AcceptedCredentials], now: SystemTime) -> VerifyParams<'a> {
        VerifyParams {
            region: "us-east-1",
            service: "service",
            now,
            max_skew: Duration::from_secs(900),
            credentials: creds,
        }
    }

    #[test]
    fn verifies_the_vanilla_request() {
        let creds = [example_creds()];
        let pairs = vec![
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={VANILLA_SIG}"
        );
        let map = header_map(&pairs, &auth);
        let req = RequestParts {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &map,
            body: b"",
        };
        assert_eq!(
            verify(&req, &params(&creds, vanilla_time())).unwrap(),
            "AKIDEXAMPLE"
        );
        // Wrong method: the canonical request differs.
        let post = RequestParts {
            method: "POST",
            ..req
        };
        let err = verify(&post, &params(&creds, vanilla_time())).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
        assert!(err.to_string().starts_with(
            "The request signature we calculated does not match the signature you provided."
        ));
    }

    fn signed_post(
        body: &[u8],
        at: SystemTime,
        region: &str,
    ) -> (HeaderMap, Vec<(String, String)>) {
        let mut hs = vec![
            ("host".to_string(), "127.0.0.1:9".to_string()),
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
        ];
        let auth = sign(
            "POST",
            "/createSession",
            "",
            &mut hs,
            body,
            &example_creds(),
            region,
            "service",
            at,
        );
        (header_map(&hs, &auth), hs)
    }

    #[test]
    fn tampered_body_is_rejected() {
        let creds = [example_creds()];
        let now = vanilla_time();
        let (map, _) = signed_post(br#"{"EnvironmentId":"a"}"#, now, "us-east-1");
        let ok = RequestParts {
            method: "POST",
            raw_path: "/createSession",
            raw_query: "",
            headers: &map,
            body: br#"{"EnvironmentId":"a"}"#,
        };
        assert!(verify(&ok, &params(&creds, now)).is_ok());
        let tampered = RequestParts {
            body: br#"{"EnvironmentId":"b"}"#,
            ..ok
        };
        let err = verify(&tampered, &params(&creds, now)).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
    }

    #[test]
    fn content_sha256_header_must_match_body() {
        let creds = [example_creds()];
        let now = vanilla_time();
        let body = b"{}";
        let mut hs = vec![
            ("host".to_string(), "h".to_string()),
            (
                "x-amz-content-sha256".to_string(),
                hex::encode(Sha256::digest(body)),
            ),
        ];
        let auth = sign(
            "POST",
            "/x",
            "",
            &mut hs,
            body,
            &creds[0],
            "us-east-1",
            "service",
            now,
        );
        let map = header_map(&hs, &auth);
        let req = RequestParts {
            method: "POST",
            raw_path: "/x",
            raw_query: "",
            headers: &map,
            body,
        };
        assert!(verify(&req, &params(&creds, now)).is_ok());
        let other = RequestParts {
            body: b"{\"a\":1}",
            ..req
        };
        let err = verify(&other, &params(&creds, now)).unwrap_err();
        assert!(err.to_string().contains("x-amz-content-sha256"), "{err}");
    }

    #[test]
    fn scope_and_time_errors() {
        let creds = [example_creds()];
        let now = vanilla_time();
        let body = b"{}";
        let check = |map: &HeaderMap, now: SystemTime| {
            let req = RequestParts {
                method: "POST",
                raw_path: "/createSession",
                raw_query: "",
                headers: map,
                body,
            };
            verify(&req, &params(&creds, now))
        };

        let (map, _) = signed_post(body, now, "eu-west-1");
        let err = check(&map, now).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
        assert!(err.to_string().contains("'eu-west-1'"), "{err}");

        let (map, _) = signed_post(body, now, "us-east-1");
        let err = check(&map, now + Duration::from_secs(16 * 60)).unwrap_err();
        assert!(err.to_string().starts_with("Signature expired"), "{err}");
        let err = check(&map, now - Duration::from_secs(16 * 60)).unwrap_err();
        assert!(
            err.to_string().starts_with("Signature not yet current"),
            "{err}"
        );
        assert!(check(&map, now + Duration::from_secs(14 * 60)).is_ok());

        let other = [AcceptedCredentials::new("AKIDOTHER", "x")];
        let req = RequestParts {
            method: "POST",
            raw_path: "/createSession",
            raw_query: "",
            headers: &map,
            body,
        };
        let err = verify(&req, &params(&other, now)).unwrap_err();
        assert_eq!(err, AuthError::UnknownKey);
        assert_eq!(err.code(), "UnrecognizedClientException");

        let mut wrong_secret = [example_creds()];
        wrong_secret[0].secret_access_key = "nope".into();
        let err = verify(&req, &params(&wrong_secret, now)).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
        assert!(!err.to_string().contains("wJalr"));
    }

    #[test]
    fn service_mismatch_is_named() {
        let creds = [example_creds()];
        let now = vanilla_time();
        let (map, _) = signed_post(b"", now, "us-east-1");
        let req = RequestParts {
            method: "POST",
            raw_path: "/createSession",
            raw_query: "",
            headers: &map,
            body: b"",
        };
        let p = VerifyParams {
            service: "cloudshell",
            ..params(&creds, now)
        };
        let err = verify(&req, &p).unwrap_err();
        assert!(err.to_string().contains("'cloudshell'"), "{err}");
    }

    #[test]
    fn missing_and_malformed_headers() {
        let creds = [example_creds()];
        let now = vanilla_time();
        let map = HeaderMap::new();
        let req = RequestParts {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &map,
            body: b"",
        };
        assert_eq!(
            verify(&req, &params(&creds, now)).unwrap_err(),
            AuthError::Missing
        );
        for bad in [
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            let mut map = HeaderMap::new();
            map.insert("authorization", HeaderValue::from_str(bad).unwrap());
            let req = RequestParts {
                headers: &map,
                ..req
            };
            let err = verify(&req, &params(&creds, now)).unwrap_err();
            assert_eq!(err.code(), "IncompleteSignatureException", "{bad}: {err}");
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a%2Bb&x=%7e&e"), "e=&k=a%2Bb&x=~");
        assert_eq!(collapse_spaces("  a   b \t c "), "a b c");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
    }
}
